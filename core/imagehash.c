/*
 * imagehash.c - BlurHash, dominant colour and pHash of pixels (see
 * imagehash.h).
 *
 * Plain arithmetic on 8-bit sRGB pixels that the image module has already
 * decoded and reduced; nothing here knows libvips, so every hash is tested
 * bit for bit against reference encoders without decoding an image.
 */
#include "imagehash.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* ------------------------------------------------------------ BlurHash */

/*
 * The reference C encoder of github.com/woltapp/blurhash (C/encode.c and
 * C/common.h), rewritten in house style with the same arithmetic: single
 * precision accumulation, the same mixed float/double expressions, and
 * truncating conversions, so the strings match the reference bit for bit
 * (checked in tests/core/test_imagehash.c against the reference encoder as
 * packaged by Debian in python3-blurhash, and against the npm package).
 */
static float bh_srgb_to_linear(int value)
{
	float v = (float)value / 255;

	if (v <= 0.04045)
		return v / 12.92;
	return powf((v + 0.055) / 1.055, 2.4);
}

static int bh_linear_to_srgb(float value)
{
	float v = fmaxf(0, fminf(1, value));

	if (v <= 0.0031308)
		return v * 12.92 * 255 + 0.5;
	return (1.055 * powf(v, 1 / 2.4) - 0.055) * 255 + 0.5;
}

static float bh_sign_pow(float value, float exp)
{
	return copysignf(powf(fabsf(value), exp), value);
}

static char *bh_base83(int value, int length, char *dst)
{
	static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				     "abcdefghijklmnopqrstuvwxyz"
				     "#$%*+,-.:;=?@[]^_{|}~";
	int divisor = 1;

	for (int i = 0; i < length - 1; i++)
		divisor *= 83;
	for (int i = 0; i < length; i++) {
		*dst++ = digits[(value / divisor) % 83];
		divisor /= 83;
	}
	return dst;
}

static void bh_factor(int xc, int yc, int width, int height,
		      const unsigned char *rgb, size_t stride, float out[3])
{
	float r = 0, g = 0, b = 0;
	float normalisation = (xc == 0 && yc == 0) ? 1 : 2;
	float scale;

	for (int y = 0; y < height; y++) {
		const unsigned char *row = rgb + (size_t)y * stride;

		for (int x = 0; x < width; x++) {
			float basis = cosf(M_PI * xc * x / width) *
				      cosf(M_PI * yc * y / height);

			r += basis * bh_srgb_to_linear(row[3 * x + 0]);
			g += basis * bh_srgb_to_linear(row[3 * x + 1]);
			b += basis * bh_srgb_to_linear(row[3 * x + 2]);
		}
	}
	scale = normalisation / (width * height);
	out[0] = r * scale;
	out[1] = g * scale;
	out[2] = b * scale;
}

static int bh_encode_ac(const float c[3], float maximum)
{
	int q[3];

	for (int i = 0; i < 3; i++)
		q[i] = fmaxf(
			0,
			fminf(18, floorf(bh_sign_pow(c[i] / maximum, 0.5) * 9 +
					 9.5)));
	return q[0] * 19 * 19 + q[1] * 19 + q[2];
}

/* Length of a hash with this many components, without the NUL. */
static size_t bh_length(int x_comp, int y_comp)
{
	return 1 + 1 + 4 + 2 * ((size_t)x_comp * (size_t)y_comp - 1);
}

/*
 * The encoder proper, into out[0..size). Writes "" when the arguments are
 * out of range or the hash (up to 166 characters for 9x9) does not fit.
 */
static void blurhash_encode(const unsigned char *rgb, int width, int height,
			    size_t stride, int x_comp, int y_comp, char *out,
			    size_t size)
{
	float factors[9 * 9][3];
	int n_ac = x_comp * y_comp - 1;
	float maximum = 1;
	char *p = out;

	if (size == 0)
		return;
	out[0] = '\0';
	if (!rgb || width < 1 || height < 1 || x_comp < 1 || x_comp > 9 ||
	    y_comp < 1 || y_comp > 9 || bh_length(x_comp, y_comp) >= size)
		return;
	for (int y = 0; y < y_comp; y++)
		for (int x = 0; x < x_comp; x++)
			bh_factor(x, y, width, height, rgb, stride,
				  factors[y * x_comp + x]);

	p = bh_base83((x_comp - 1) + (y_comp - 1) * 9, 1, p);
	if (n_ac > 0) {
		float actual = 0;
		int quantised;

		for (int i = 1; i <= n_ac; i++)
			for (int c = 0; c < 3; c++)
				actual = fmaxf(fabsf(factors[i][c]), actual);
		quantised = fmaxf(0, fminf(82, floorf(actual * 166 - 0.5)));
		maximum = ((float)quantised + 1) / 166;
		p = bh_base83(quantised, 1, p);
	} else {
		p = bh_base83(0, 1, p);
	}
	p = bh_base83((bh_linear_to_srgb(factors[0][0]) << 16) +
			      (bh_linear_to_srgb(factors[0][1]) << 8) +
			      bh_linear_to_srgb(factors[0][2]),
		      4, p);
	for (int i = 1; i <= n_ac; i++)
		p = bh_base83(bh_encode_ac(factors[i], maximum), 2, p);
	*p = '\0';
}

/* imagehash.h promises 64 bytes of `out`: that holds x_comp * y_comp <=
 * 29 (the 4x3 the image module uses needs 28 + 1); larger counts give "". */
void imagehash_blurhash(const unsigned char *rgb, int width, int height,
		    size_t stride, int x_comp, int y_comp, char *out)
{
	if (out)
		blurhash_encode(rgb, width, height, stride, x_comp, y_comp, out,
				64);
}

/* ------------------------------------------------- other image hashes */

/*
 * Dominant colour: a 4-bit-per-channel histogram (4096 bins) of the opaque
 * pixels (alpha >= 128) of a small sRGB image; the fullest bin wins (the
 * lowest bin on a tie, for determinism) and its mean colour, rounded, is
 * the answer. A fully transparent image is white. `bands` is 3 or 4.
 */
void imagehash_dominant_color(const unsigned char *px, size_t n_px,
			      int bands, char out[8])
{
	uint32_t *count = dr_xcalloc(4096, sizeof(*count));
	uint64_t(*sum)[3] = dr_xcalloc(4096, sizeof(*sum));
	size_t best = 0;
	unsigned rgb[3] = { 255, 255, 255 };

	for (size_t i = 0; i < n_px; i++) {
		const unsigned char *p = px + i * (size_t)bands;
		size_t bin;

		if (bands == 4 && p[3] < 128)
			continue;
		bin = (size_t)(p[0] >> 4) << 8 | (size_t)(p[1] >> 4) << 4 |
		      (size_t)(p[2] >> 4);
		count[bin]++;
		for (int c = 0; c < 3; c++)
			sum[bin][c] += p[c];
	}
	for (size_t bin = 1; bin < 4096; bin++)
		if (count[bin] > count[best])
			best = bin;
	if (count[best] > 0)
		for (int c = 0; c < 3; c++)
			rgb[c] = (unsigned)((sum[best][c] + count[best] / 2) /
					    count[best]);
	snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
	free(count);
	free(sum);
}

/*
 * DCT pHash in the layout of the widely used Python imagehash.phash: the
 * 2-D DCT-II of a 32x32 luma image, the top-left 8x8 block of coefficients
 * (DC included, rows are vertical frequencies), bit i (row-major, most
 * significant first) set when coefficient i exceeds the median of the 64.
 * The DC term stays in the block and in the median as imagehash has it: it
 * is nearly always the one largest value, so it shifts the median by half
 * a rank and its bit is set for any image that is not black. (The pHash
 * library's variant skips row and column 0 instead, which makes an image
 * that varies along one axis only hash to zero.) Coefficients are rounded
 * to 1e-6 so that exact zeros stay zeros rather than rounding noise.
 */
static void phash_luma(const double luma[32][32], char out[17])
{
	double cosine[8][32], tmp[32][8], coef[64], sorted[64], median;
	uint64_t bits = 0;

	for (int u = 0; u < 8; u++)
		for (int x = 0; x < 32; x++)
			cosine[u][x] = cos((2 * x + 1) * u * M_PI / 64);
	for (int y = 0; y < 32; y++)
		for (int u = 0; u < 8; u++) {
			double s = 0;

			for (int x = 0; x < 32; x++)
				s += luma[y][x] * cosine[u][x];
			tmp[y][u] = s;
		}
	for (int v = 0; v < 8; v++)
		for (int u = 0; u < 8; u++) {
			double s = 0;

			for (int y = 0; y < 32; y++)
				s += tmp[y][u] * cosine[v][y];
			coef[v * 8 + u] = nearbyint(s * 1e6) / 1e6;
		}
	memcpy(sorted, coef, sizeof(sorted));
	for (int i = 1; i < 64; i++) { /* insertion sort of 64 values */
		double key = sorted[i];
		int j = i - 1;

		while (j >= 0 && sorted[j] > key) {
			sorted[j + 1] = sorted[j];
			j--;
		}
		sorted[j + 1] = key;
	}
	median = (sorted[31] + sorted[32]) / 2;
	for (int i = 0; i < 64; i++)
		if (coef[i] > median)
			bits |= (uint64_t)1 << (63 - i);
	snprintf(out, 17, "%016llx", (unsigned long long)bits);
}

/* pHash of 32x32 pixels of `bands` (3 or 4) bytes: Rec. 601 luma. */
void imagehash_phash(const unsigned char *rgb, int bands, char out[17])
{
	double luma[32][32];

	for (int y = 0; y < 32; y++)
		for (int x = 0; x < 32; x++) {
			const unsigned char *p =
				rgb + (size_t)(y * 32 + x) * bands;

			luma[y][x] = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
		}
	phash_luma((const double(*)[32])luma, out);
}
