/*
 * test_imagehash.c - the image hashes on pixels: BlurHash against the
 * reference encoder's and the npm package's vectors, pHash bits on cosine
 * images, dominant colour. (Hashes of decoded images, stable across codecs
 * and sizes, are tested in test_image.c.)
 *
 * Includes imagehash.c to reach its statics (the BlurHash encoder without
 * the 64-byte cap, the pHash of a luma block).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/imagehash.c"

static uint32_t lcg_next(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s;
}

/* ------------------------------------------------------------- BlurHash */

enum { BH_MAX = 2 + 4 + 80 * 2 + 1 };

typedef struct bh_vector {
	const char *pattern;
	int w, h, xc, yc;
	uint32_t seed;
	const char *hash;
} bh_vector;

/*
 * From the reference C encoder (woltapp/blurhash C/encode.c, as compiled
 * into Debian's python3-blurhash 1.1.4):
 *   /usr/bin/python3 tests/core/blurhash_vectors.py
 */
static const bh_vector ref_vectors[] = {
	{ "hgrad", 32, 24, 4, 3, 0, "L$HevY2rwxX7l|WDjte;gJfjfQfj" },
	{ "hgrad_rev", 32, 24, 4, 3, 0, "L;HoIj|_$5xGq9oejtkBgvfjfQfj" },
	{ "noise", 32, 32, 4, 3, 1, "L6HVC*^j#D%N.lM}Mzoh-lV|TB%C" },
	{ "noise", 17, 9, 9, 9, 42, "|GHoRQ-=By%#q-TJ-4-js$~VNKWqPAI;KtJWV*xIviwPQ^Ng$@s$VzrMozuOO?EwIUROIvJ7P3aJa*VHc5O*9[I]I0IKrw~p#HrhxZVGNFmuIpS^kjcErhrZi~JDyDKOb-}=#GIwrzv,#D,;Q[s;y2M}EMZkq|orEwFvob" },
	{ "solid", 8, 8, 4, 3, 0, "LNM^#v|zfQ|z|zsVfQsVfQfQfQfQ" },
	{ "solid", 8, 8, 1, 1, 0, "00M^#v" },
	{ "stripes", 40, 20, 5, 4, 0, "VEJ8$?gxGncUGn-ufibGfibGfUfRfQfRfQ-*fjbGfjbG" },
	{ "radial", 31, 31, 4, 3, 0, "LhKR^Rsi3xf|sijqW=fT3xW=xtbb" },
	{ "radial", 64, 48, 9, 9, 0, "|sKk?foH3zbWTVf#XNf#bqoHfObEfPfifPfRfRfRB}bEt4fkoeflj]flj]k8fPbHfRflfRfkfQfQS]fPoeflj[fkfififOk8fQbIfRfkfPfifOfPX4fRj[fRfjfOfOfPfSk8fRbIfRfifOfifRfSbXfRj]fPfOfPfRfSfR" },
	{ "noise", 1, 1, 4, 3, 7, "L~77}jy?y?y?y?y?y?y?y?y?y?y?" },
	{ "hgrad", 2, 2, 2, 2, 0, "A~LqcphY|ffS" },
	{ "noise", 32, 24, 1, 9, 3, "=6HV0Z.RsFysxn^npQy=r4" },
	{ "stripes", 3, 50, 9, 1, 0, "8~2X1Kl*fQl*fQl*qFl*fQ" },
	{ "radial", 20, 30, 4, 3, 0, "LxKbnBs$GQousijsbJfT3yW?t6X3" },
};

/*
 * From the npm package blurhash 2.0.5 (the TypeScript encoder, an
 * independent implementation in double precision):
 *   npm install --no-save blurhash@2.0.5 && node tests/core/blurhash_vectors.js
 * It differs from the C reference in one documented way: it quantises the
 * largest *signed* AC value where the C encoder takes the largest absolute
 * value, so on images whose strongest AC coefficient is negative (dark to
 * light gradients, bright centres: the `diverges` rows) the AC part of
 * the hash differs. Size flag and DC must still agree there.
 */
static const struct {
	bh_vector v;
	int diverges;
} npm_vectors[] = {
	{ { "hgrad", 32, 24, 4, 3, 0, "LEHevY39|cO;z2NJo1aNhVf%fQf%" }, 1 },
	{ { "hgrad_rev", 32, 24, 4, 3, 0, "L;HoIj|_$5xGq9oejtkBgvfjfQfj" }, 0 },
	{ { "noise", 32, 32, 4, 3, 1, "L6HVC*^j#D%N.lM}Mzoh-lV|TB%C" }, 0 },
	{ { "noise", 17, 9, 9, 9, 42, "|GHoRQ-=By%#q-TJ-4-js$~VNKWqPAI;KtJWV*xIviwPQ^Ng$@s$VzrMozuOO?EwIUROIvJ7P3aJa*VHc5O*9[I]I0IKrw~p#HrhxZVGNFmuIpS^kjcErhrZi~JDyDKOb-}=#GIwrzv,#D,;Q[s;y2M}EMZkq|orEwFvob" }, 0 },
	{ { "solid", 8, 8, 4, 3, 0, "LNM^#v|zfQ|z|zsVfQsVfQfQfQfQ" }, 0 },
	{ { "solid", 8, 8, 1, 1, 0, "00M^#v" }, 0 },
	{ { "stripes", 40, 20, 5, 4, 0, "V6J8$?l$4Jd54J~Yf#X6f#X6fVfRfQfRfQ~gf%X6f%X6" }, 1 },
	{ { "radial", 31, 31, 4, 3, 0, "LOKR^Rx74DkPx7jpW?fn4DW?%Mbc" }, 1 },
	{ { "radial", 64, 48, 9, 9, 0, "|UKk?fsj4FbVPKf|XfkQXMsjfNW-fObFfPflfRfS3ybE$}bHofbIkCbIj]oafObafSflfSflfQfiO*a{offlj]flj?fhfhoafRbbfSfkfhfhfhfhXMfRkCfSj?fOfhfifSobfSbbfRfhfhfiflflX3fSj]fPfhfPfSfSfS" }, 1 },
	{ { "noise", 1, 1, 4, 3, 7, "L~77}jy?y?y?y?y?y?y?y?y?y?y?" }, 0 },
	{ { "hgrad", 2, 2, 2, 2, 0, "A~LqcphY|ffS" }, 0 },
	{ { "noise", 32, 24, 1, 9, 3, "=6HV0Z.RsFysxn^npQy=r4" }, 0 },
	{ { "stripes", 3, 50, 9, 1, 0, "8~2X1Kl*fQl*fQl*qFl*fQ" }, 0 },
	{ { "radial", 20, 30, 4, 3, 0, "LaKbnBx87.t1w=jsW@jx4ES%xtX2" }, 1 },
};

/* The pixels of blurhash_vectors.{js,py}: integer arithmetic only. Rows of
 * `stride` bytes (>= 3 * w); padding is filled with junk. */
static unsigned char *pattern(const char *name, int w, int h, uint32_t seed,
			      size_t stride)
{
	unsigned char *px = malloc(stride * (size_t)h);
	uint32_t s = seed;

	assert_non_null(px);
	memset(px, 0xA5, stride * (size_t)h);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			unsigned char *p = px + (size_t)y * stride + 3 * x;
			int r, g, b;

			if (strncmp(name, "hgrad", 5) == 0) {
				r = x * 255 / (w - 1 > 1 ? w - 1 : 1);
				g = y * 255 / (h - 1 > 1 ? h - 1 : 1);
				b = 64;
				if (strcmp(name, "hgrad_rev") == 0)
					r = 255 - r, g = 255 - g, b = 192;
			} else if (strcmp(name, "noise") == 0) {
				r = (int)(lcg_next(&s) >> 24);
				g = (int)(lcg_next(&s) >> 24);
				b = (int)(lcg_next(&s) >> 24);
			} else if (strcmp(name, "solid") == 0) {
				r = 200, g = 30, b = 90;
			} else if (strcmp(name, "stripes") == 0) {
				int v = (x / 3) % 2 ? 230 : 20;

				r = v, g = 255 - v, b = (y * 7) % 256;
			} else {
				int dx = 2 * x - (w - 1), dy = 2 * y - (h - 1);
				int d2 = dx * dx + dy * dy;
				int m = (w - 1) * (w - 1) + (h - 1) * (h - 1) +
					1;

				r = 255 - d2 * 255 / m, g = d2 * 255 / m;
				b = (x * y) % 256;
			}
			p[0] = (unsigned char)r, p[1] = (unsigned char)g;
			p[2] = (unsigned char)b;
		}
	return px;
}

/* Through imagehash_blurhash() when the hash fits its 64 bytes, else the
 * encoder behind it with a larger buffer (up to 9x9: 167 bytes). */
static void hash_of(const bh_vector *v, size_t stride, char *out)
{
	unsigned char *px = pattern(v->pattern, v->w, v->h, v->seed, stride);

	if (bh_length(v->xc, v->yc) < 64)
		imagehash_blurhash(px, v->w, v->h, stride, v->xc, v->yc, out);
	else
		blurhash_encode(px, v->w, v->h, stride, v->xc, v->yc, out,
				BH_MAX);
	free(px);
}

static void test_blurhash_reference(void **state)
{
	char got[BH_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(ref_vectors) / sizeof(*ref_vectors);
	     i++) {
		const bh_vector *v = &ref_vectors[i];

		hash_of(v, (size_t)v->w * 3, got);
		if (strcmp(got, v->hash) != 0)
			fail_msg("%s %dx%d %dx%d: got %s want %s", v->pattern,
				 v->w, v->h, v->xc, v->yc, got, v->hash);
		/* Row padding must not matter. */
		hash_of(v, (size_t)v->w * 3 + 13, got);
		assert_string_equal(got, v->hash);
	}
}

static void test_blurhash_npm(void **state)
{
	char got[BH_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(npm_vectors) / sizeof(*npm_vectors);
	     i++) {
		const bh_vector *v = &npm_vectors[i].v;

		hash_of(v, (size_t)v->w * 3, got);
		assert_int_equal(strlen(got), strlen(v->hash));
		if (!npm_vectors[i].diverges) {
			assert_string_equal(got, v->hash);
			continue;
		}
		/* Size flag and DC agree; the AC maximum does not. */
		assert_int_equal(got[0], v->hash[0]);
		assert_memory_equal(got + 2, v->hash + 2, 4);
		assert_int_not_equal(got[1], v->hash[1]);
	}
}

static void test_blurhash_bad_args(void **state)
{
	unsigned char px[3] = { 1, 2, 3 };
	char out[64] = "x";

	(void)state;
	imagehash_blurhash(px, 1, 1, 3, 0, 3, out);
	assert_string_equal(out, "");
	imagehash_blurhash(px, 1, 1, 3, 4, 10, out);
	assert_string_equal(out, "");
	imagehash_blurhash(px, 0, 1, 3, 4, 3, out);
	assert_string_equal(out, "");
	imagehash_blurhash(NULL, 1, 1, 3, 4, 3, out);
	assert_string_equal(out, "");
	/* 6x5 needs 65 bytes: more than imagehash_blurhash's 64. */
	imagehash_blurhash(px, 1, 1, 3, 6, 5, out);
	assert_string_equal(out, "");
	imagehash_blurhash(px, 1, 1, 3, 7, 4, out);
	assert_int_equal(strlen(out), 60);
}

/* Cosine basis images have exactly one non-zero DCT coefficient besides
 * DC: the DCT, the block layout and the bit order are checked exactly. */
static void test_phash_known_bits(void **state)
{
	static double luma[32][32];
	unsigned char px[32 * 32 * 3];
	char out[17], again[17];

	(void)state;
	/* Flat: only DC is above the median (0). Black: nothing is. */
	memset(px, 77, sizeof(px));
	imagehash_phash(px, 3, out);
	assert_string_equal(out, "8000000000000000");
	memset(px, 0, sizeof(px));
	imagehash_phash(px, 3, out);
	assert_string_equal(out, "0000000000000000");

	/* 128 + 100 cos(u) cos(v) with (v, u) = (1, 2): bit 63 - (8 + 2). */
	for (int y = 0; y < 32; y++)
		for (int x = 0; x < 32; x++)
			luma[y][x] = 128 + 100 * cos((2 * x + 1) * 2 * M_PI / 64) *
						   cos((2 * y + 1) * 1 * M_PI / 64);
	phash_luma((const double(*)[32])luma, out);
	assert_string_equal(out, "8020000000000000");
	/* A negative coefficient sets nothing; (0, 7) and (7, 0) are the
	 * corners of the first row and column. */
	for (int y = 0; y < 32; y++)
		for (int x = 0; x < 32; x++)
			luma[y][x] = 128 - 50 * cos((2 * x + 1) * 3 * M_PI / 64) +
				     40 * cos((2 * x + 1) * 7 * M_PI / 64) +
				     30 * cos((2 * y + 1) * 7 * M_PI / 64);
	phash_luma((const double(*)[32])luma, out);
	assert_string_equal(out, "8100000000000080");

	/* Left half bright: bits in the first row; the hash does not change
	 * with brightness or contrast (DCT is linear, DC is always set). */
	for (int y = 0; y < 32; y++)
		for (int x = 0; x < 32; x++)
			memset(px + (y * 32 + x) * 3, x < 16 ? 200 : 20, 3);
	imagehash_phash(px, 3, out);
	assert_int_equal(strtoull(out, NULL, 16) & 0x00FFFFFFFFFFFFFFull, 0);
	assert_string_not_equal(out, "8000000000000000");
	for (int y = 0; y < 32; y++)
		for (int x = 0; x < 32; x++)
			memset(px + (y * 32 + x) * 3, x < 16 ? 250 : 0, 3);
	imagehash_phash(px, 3, again);
	assert_string_equal(out, again);
}

static void test_dominant_color_pixels(void **state)
{
	unsigned char img[100 * 4];
	char out[8];

	(void)state;
	/* Mostly blue with a red minority: blue. */
	for (int i = 0; i < 100; i++) {
		img[i * 3] = i < 30 ? 250 : 0;
		img[i * 3 + 1] = 0;
		img[i * 3 + 2] = i < 30 ? 0 : 240;
	}
	imagehash_dominant_color(img, 100, 3, out);
	assert_string_equal(out, "#0000f0");
	/* With alpha: transparent pixels do not count; none left, white. */
	for (int i = 0; i < 100; i++) {
		img[i * 4] = i < 30 ? 250 : 0;
		img[i * 4 + 1] = 0;
		img[i * 4 + 2] = i < 30 ? 0 : 240;
		img[i * 4 + 3] = i < 30 ? 255 : 0;
	}
	imagehash_dominant_color(img, 100, 4, out);
	assert_string_equal(out, "#fa0000");
	memset(img, 0, sizeof(img));
	imagehash_dominant_color(img, 100, 4, out);
	assert_string_equal(out, "#ffffff");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blurhash_reference),
		cmocka_unit_test(test_blurhash_npm),
		cmocka_unit_test(test_blurhash_bad_args),
		cmocka_unit_test(test_phash_known_bits),
		cmocka_unit_test(test_dominant_color_pixels),
	};

	return cmocka_run_group_tests_name("imagehash", tests, NULL, NULL);
}
