/*
 * image.c - file types from bytes, and images through libvips, hardened.
 *
 * Owns two things: deciding what a downloaded file is from its first bytes
 * (image_sniff), and turning an image into metadata and renditions
 * (image_process from memory, image_process_fd from a file, which libvips
 * then reads as it decodes) without trusting the bytes.
 *
 * Hardening (see REFERENCE.md, "libvips 8.14 for untrusted input"): every
 * loader is blocked except JPEG, PNG, WebP, GIF, TIFF and HEIF/AVIF, on top
 * of vips_block_untrusted_set(); a file is only ever handed to the loader
 * of the type its magic bytes name, never to libvips' own guess; loads use
 * fail_on=error and sequential access; the pixel, page and byte limits are
 * checked on the header alone, before any pixel is decoded. There is no
 * operation cache and one worker thread per process.
 *
 * Processing shares one decode between every preset: the image is decoded
 * once (with JPEG/WebP shrink-on-load towards the largest size any
 * consumer needs, see jpeg_shrink) and reduced to that size, oriented
 * (EXIF), converted to 8-bit sRGB (embedded ICC profiles honoured) and kept
 * in memory; each rendition is then cut from that intermediate with
 * vips_thumbnail_image(). The intermediate is never smaller than a target
 * box, so the second reduction costs no visible quality: against a full
 * decode reduced once with Lanczos 3, a 4000x3000 JPEG's renditions are
 * within 44-47 dB PSNR. `make bench` (renditions) times the whole of
 * image_process() against sharp, vipsthumbnail and ImageMagick making the
 * same presets from the same file; the codecs dominate (libwebp encoding
 * the card is about half the time, then decoding), so what is left to
 * win here is decoding less: one decode for every preset, as small as
 * they allow.
 * All decoding happens while the intermediate is built, so a corrupt file
 * fails there.
 *
 * Choices: a cover box larger than the image shrinks to the largest box of
 * its aspect that fits (never enlarged, a card stays 16:9); cover crops by
 * attention; info width/height are as displayed (after EXIF orientation);
 * only the first page or frame is rendered, but every page counts against
 * the limits.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vips/vips.h>

#include "image.h"

/* ------------------------------------------------------------ sniffing */

enum sniff_type {
	T_BIN,
	T_TEXT,
	T_PNG,
	T_JPEG,
	T_GIF,
	T_WEBP,
	T_AVIF,
	T_HEIC,
	T_TIFF,
	T_BMP,
	T_SVG,
	T_HTML,
	T_XML,
	T_PDF,
	T_ZIP,
	T_GZIP,
	T_MP4,
	T_MOV,
	T_3GP,
	T_WEBM,
	T_MKV,
	T_AVI,
	T_MP3,
	T_AAC,
	T_M4A,
	T_WAV,
	T_OGG,
	T_OGV,
	T_FLAC,
	T_COUNT
};

/* kind, mime, ext, format, decodable. BMP is an image but is not decoded
 * (no hardened loader); SVG never is: it is a program, not pixels. */
static const dr_sniff sniff_types[T_COUNT] = {
	[T_BIN] = { "file", "application/octet-stream", "bin", "bin", 0 },
	[T_TEXT] = { "text", "text/plain", "txt", "text", 0 },
	[T_PNG] = { "image", "image/png", "png", "png", 1 },
	[T_JPEG] = { "image", "image/jpeg", "jpg", "jpeg", 1 },
	[T_GIF] = { "image", "image/gif", "gif", "gif", 1 },
	[T_WEBP] = { "image", "image/webp", "webp", "webp", 1 },
	[T_AVIF] = { "image", "image/avif", "avif", "avif", 1 },
	[T_HEIC] = { "image", "image/heic", "heic", "heic", 1 },
	[T_TIFF] = { "image", "image/tiff", "tiff", "tiff", 1 },
	[T_BMP] = { "file", "image/bmp", "bmp", "bmp", 0 },
	[T_SVG] = { "file", "image/svg+xml", "svg", "svg", 0 },
	[T_HTML] = { "text", "text/html", "html", "html", 0 },
	[T_XML] = { "text", "application/xml", "xml", "xml", 0 },
	[T_PDF] = { "file", "application/pdf", "pdf", "pdf", 0 },
	[T_ZIP] = { "file", "application/zip", "zip", "zip", 0 },
	[T_GZIP] = { "file", "application/gzip", "gz", "gzip", 0 },
	[T_MP4] = { "video", "video/mp4", "mp4", "mp4", 0 },
	[T_MOV] = { "video", "video/quicktime", "mov", "mov", 0 },
	[T_3GP] = { "video", "video/3gpp", "3gp", "3gp", 0 },
	[T_WEBM] = { "video", "video/webm", "webm", "webm", 0 },
	[T_MKV] = { "video", "video/x-matroska", "mkv", "mkv", 0 },
	[T_AVI] = { "video", "video/x-msvideo", "avi", "avi", 0 },
	[T_MP3] = { "audio", "audio/mpeg", "mp3", "mp3", 0 },
	[T_AAC] = { "audio", "audio/aac", "aac", "aac", 0 },
	[T_M4A] = { "audio", "audio/mp4", "m4a", "m4a", 0 },
	[T_WAV] = { "audio", "audio/wav", "wav", "wav", 0 },
	[T_OGG] = { "audio", "audio/ogg", "ogg", "ogg", 0 },
	[T_OGV] = { "video", "video/ogg", "ogv", "ogv", 0 },
	[T_FLAC] = { "audio", "audio/flac", "flac", "flac", 0 },
};

/* Does head[off..] start with the m bytes of s? */
static int at(const unsigned char *head, size_t n, size_t off, const char *s,
	      size_t m)
{
	return n >= off && n - off >= m && memcmp(head + off, s, m) == 0;
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Case-insensitive prefix test of the NUL-terminated s at p[0..n). */
static int at_nocase(const unsigned char *p, size_t n, const char *s)
{
	size_t m = strlen(s);

	if (n < m)
		return 0;
	for (size_t i = 0; i < m; i++)
		if (lower(p[i]) != lower((unsigned char)s[i]))
			return 0;
	return 1;
}

/* Case-insensitive search for s anywhere in p[0..n). */
static int contains_nocase(const unsigned char *p, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (at_nocase(p + i, n - i, s))
			return 1;
	return 0;
}

/* ISO BMFF brands we know. */
static enum sniff_type bmff_brand(const unsigned char *b)
{
	static const struct {
		char brand[5];
		enum sniff_type type;
	} brands[] = {
		{ "avif", T_AVIF }, { "avis", T_AVIF }, { "heic", T_HEIC },
		{ "heix", T_HEIC }, { "heim", T_HEIC }, { "heis", T_HEIC },
		{ "hevc", T_HEIC }, { "hevx", T_HEIC }, { "qt  ", T_MOV },
		{ "M4A ", T_M4A },  { "M4B ", T_M4A },	{ "M4P ", T_M4A },
		{ "3gp4", T_3GP },  { "3gp5", T_3GP },	{ "3gp6", T_3GP },
		{ "3g2a", T_3GP },  { "isom", T_MP4 },	{ "iso2", T_MP4 },
		{ "iso3", T_MP4 },  { "iso4", T_MP4 },	{ "iso5", T_MP4 },
		{ "iso6", T_MP4 },  { "iso8", T_MP4 },	{ "mp41", T_MP4 },
		{ "mp42", T_MP4 },  { "mp71", T_MP4 },	{ "avc1", T_MP4 },
		{ "M4V ", T_MP4 },  { "M4VH", T_MP4 },	{ "M4VP", T_MP4 },
		{ "dash", T_MP4 },  { "f4v ", T_MP4 },	{ "mmp4", T_MP4 },
		{ "MSNV", T_MP4 },  { "NDAS", T_MP4 },	{ "XAVC", T_MP4 },
	};

	for (size_t i = 0; i < sizeof(brands) / sizeof(brands[0]); i++)
		if (memcmp(b, brands[i].brand, 4) == 0)
			return brands[i].type;
	return T_BIN;
}

/*
 * An ISO BMFF file: `ftyp` box with a major brand at 8 and compatible
 * brands from 16 to the end of the box. The major brand decides, except
 * the generic HEIF brands mif1/msf1, which are AVIF when an AV1 brand is
 * compatible and HEIC otherwise. An unknown major brand takes the first
 * known compatible one (AVIF first).
 */
static enum sniff_type sniff_bmff(const unsigned char *head, size_t n)
{
	uint32_t size = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 |
			(uint32_t)head[2] << 8 | head[3];
	size_t end = size < n ? size : n;
	enum sniff_type major = bmff_brand(head + 8);
	enum sniff_type found = T_BIN;
	int generic_heif =
		at(head, n, 8, "mif1", 4) || at(head, n, 8, "msf1", 4);

	if (major != T_BIN)
		return major;
	for (size_t off = 16; off + 4 <= end; off += 4) {
		enum sniff_type t = bmff_brand(head + off);

		if (t == T_AVIF)
			return T_AVIF;
		if (found == T_BIN && t != T_BIN)
			found = t;
	}
	if (generic_heif)
		return T_HEIC;
	return found;
}

/* An MPEG audio frame header (MP3, or ADTS AAC when the layer is 0). */
static enum sniff_type sniff_mpeg_audio(const unsigned char *h, size_t n)
{
	if (n < 4 || h[0] != 0xFF || (h[1] & 0xE0) != 0xE0)
		return T_BIN;
	if ((h[1] & 0x16) == 0x10) /* MPEG-4/2 ADTS: layer 00 */
		return (h[2] >> 2 & 0x0F) < 13 ? T_AAC : T_BIN;
	if ((h[1] >> 3 & 3) == 1 || (h[1] >> 1 & 3) == 0) /* reserved */
		return T_BIN;
	if ((h[2] >> 4) == 0 || (h[2] >> 4) == 15 || (h[2] >> 2 & 3) == 3)
		return T_BIN;
	return T_MP3;
}

/*
 * Printable UTF-8: no control characters but tab, newline, form feed and
 * carriage return, no C1 controls, no overlong forms or surrogates. A
 * sequence cut off by the end of the head is accepted (the head is usually
 * the first 64 bytes of a longer file).
 */
static int is_text(const unsigned char *p, size_t n)
{
	size_t i = 0;

	if (at(p, n, 0, "\xEF\xBB\xBF", 3))
		i = 3;
	while (i < n) {
		unsigned c = p[i];
		size_t len;
		uint32_t cp, min;

		if (c < 0x80) {
			if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' &&
			     c != '\f') ||
			    c == 0x7F)
				return 0;
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			len = 2, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			len = 3, cp = c & 0x0F, min = 0x800;
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		for (size_t k = 1; k < len; k++) {
			if (i + k >= n)
				return 1;
			if ((p[i + k] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF) ||
		    (cp >= 0x80 && cp <= 0x9F))
			return 0;
		i += len;
	}
	return 1;
}

/*
 * Markup, after a BOM and white space: the HTML patterns of the WHATWG MIME
 * sniffing standard (a tag name followed by space or '>'), SVG, and XML
 * (an XML declaration; SVG when "<svg" follows within the head).
 */
static enum sniff_type sniff_markup(const unsigned char *p, size_t n)
{
	static const char *const html[] = {
		"<!doctype html",
		"<html",
		"<head",
		"<script",
		"<iframe",
		"<h1",
		"<div",
		"<font",
		"<table",
		"<a",
		"<style",
		"<title",
		"<b",
		"<body",
		"<br",
		"<p",
		"<!--",
	};
	size_t i = 0;

	if (at(p, n, 0, "\xEF\xBB\xBF", 3))
		i = 3;
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' ||
			 p[i] == '\r' || p[i] == '\f'))
		i++;
	p += i, n -= i;
	if (n == 0 || p[0] != '<')
		return T_BIN;
	if (at_nocase(p, n, "<svg") || at_nocase(p, n, "<!doctype svg"))
		return T_SVG;
	if (at_nocase(p, n, "<?xml"))
		return contains_nocase(p, n, "<svg") ? T_SVG : T_XML;
	for (size_t k = 0; k < sizeof(html) / sizeof(html[0]); k++) {
		size_t m = strlen(html[k]);

		if (at_nocase(p, n, html[k]) && n > m &&
		    (p[m] == ' ' || p[m] == '>'))
			return T_HTML;
	}
	return T_BIN;
}

static enum sniff_type sniff_type(const unsigned char *h, size_t n)
{
	enum sniff_type t;

	if (at(h, n, 0, "\x89PNG\r\n\x1A\n", 8))
		return T_PNG;
	if (at(h, n, 0, "\xFF\xD8\xFF", 3))
		return T_JPEG;
	if (at(h, n, 0, "GIF87a", 6) || at(h, n, 0, "GIF89a", 6))
		return T_GIF;
	if (at(h, n, 0, "RIFF", 4)) {
		if (at(h, n, 8, "WEBP", 4))
			return T_WEBP;
		if (at(h, n, 8, "WAVE", 4))
			return T_WAV;
		if (at(h, n, 8, "AVI ", 4))
			return T_AVI;
		return T_BIN;
	}
	if (at(h, n, 4, "ftyp", 4) && n >= 12)
		return sniff_bmff(h, n);
	if (at(h, n, 0, "II*\0", 4) || at(h, n, 0, "MM\0*", 4) ||
	    at(h, n, 0, "II+\0", 4) || at(h, n, 0, "MM\0+", 4))
		return T_TIFF;
	/* "BM" and a known DIB header size, so text starting "BM" is text. */
	if (at(h, n, 0, "BM", 2) && n >= 18 && h[15] == 0 && h[16] == 0 &&
	    h[17] == 0 &&
	    (h[14] == 12 || h[14] == 40 || h[14] == 52 || h[14] == 56 ||
	     h[14] == 64 || h[14] == 108 || h[14] == 124))
		return T_BMP;
	if (at(h, n, 0, "%PDF-", 5))
		return T_PDF;
	if (at(h, n, 0, "PK\x03\x04", 4) || at(h, n, 0, "PK\x05\x06", 4))
		return T_ZIP;
	if (at(h, n, 0, "\x1F\x8B", 2))
		return T_GZIP;
	if (at(h, n, 0, "\x1A\x45\xDF\xA3", 4))
		return contains_nocase(h, n, "matroska") ? T_MKV : T_WEBM;
	if (at(h, n, 0, "OggS", 4))
		return contains_nocase(h, n, "\x80theora") ? T_OGV : T_OGG;
	if (at(h, n, 0, "fLaC", 4))
		return T_FLAC;
	if (at(h, n, 0, "ID3", 3))
		return T_MP3;
	if ((t = sniff_mpeg_audio(h, n)) != T_BIN)
		return t;
	if ((t = sniff_markup(h, n)) != T_BIN)
		return t;
	if (is_text(h, n))
		return T_TEXT;
	return T_BIN;
}

void image_sniff(const unsigned char *head, size_t n, dr_sniff *out)
{
	static const unsigned char none[1];

	*out = sniff_types[sniff_type(head ? head : none, head ? n : 0)];
}

/* ------------------------------------------------------------ BlurHash */

/*
 * The reference C encoder of github.com/woltapp/blurhash (C/encode.c and
 * C/common.h), rewritten in house style with the same arithmetic: single
 * precision accumulation, the same mixed float/double expressions, and
 * truncating conversions, so the strings match the reference bit for bit
 * (checked in tests/core/test_image.c against the reference encoder as
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

/* image.h promises 64 bytes of `out`: that holds x_comp * y_comp <= 29
 * (the 4x3 used here needs 28 + 1); larger counts give "". */
void image_blurhash(const unsigned char *rgb, int width, int height,
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
static void dominant_color(const unsigned char *px, size_t n_px, int bands,
			   char out[8])
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
static void phash(const unsigned char *rgb, int bands, char out[17])
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

/* --------------------------------------------------------- libvips glue */

/* Loaders left open; every other VipsForeignLoad subclass is blocked. */
static const char *const allowed_loaders[] = {
	"VipsForeignLoadJpeg",	"VipsForeignLoadPng",  "VipsForeignLoadWebp",
	"VipsForeignLoadNsgif", "VipsForeignLoadTiff", "VipsForeignLoadHeif",
};

static int vips_ready;
static int avif_state; /* 0 not probed, 1 encoder works, -1 missing */

/* libvips reports every bad tile of a hostile file as a g_warning on
 * stderr, multi-line and unstructured; the failure itself comes back to
 * the caller as an error with libvips' message. Critical and fatal
 * messages still go to glib's default handler. */
static void drop_vips_log(const gchar *domain, GLogLevelFlags level,
			  const gchar *message, gpointer data)
{
	(void)domain, (void)level, (void)message, (void)data;
}

dr_status image_init(const char *argv0)
{
	if (vips_ready)
		return DR_OK;
	if (VIPS_INIT(argv0 && *argv0 ? argv0 : "darkroom")) {
		vips_error_clear();
		return DR_ERR_INTERNAL;
	}
	g_log_set_handler("VIPS",
			  G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE |
				  G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG,
			  drop_vips_log, NULL);
	/* Worker processes are single-threaded and see each file once. */
	vips_cache_set_max(0);
	vips_cache_set_max_mem(0);
	vips_cache_set_max_files(0);
	vips_concurrency_set(1);
	/* What VIPS_BLOCK_UNTRUSTED=1 does, then everything but our six:
	 * vips_operation_block_set() walks the class tree below the name. */
	vips_block_untrusted_set(TRUE);
	vips_operation_block_set("VipsForeignLoad", TRUE);
	for (size_t i = 0;
	     i < sizeof(allowed_loaders) / sizeof(*allowed_loaders); i++)
		vips_operation_block_set(allowed_loaders[i], FALSE);
	vips_ready = 1;
	return DR_OK;
}

/* Fail with libvips' error text as one line, and clear it. */
static dr_status vips_fail(dr_error *err, dr_status status, const char *code,
			   const char *what)
{
	char msg[400];
	const char *v = vips_error_buffer();
	size_t n = 0;

	for (; v && *v && n + 1 < sizeof(msg); v++) {
		if (*v == '\n') {
			if (v[1] && n + 3 < sizeof(msg))
				msg[n++] = ';', msg[n++] = ' ';
			continue;
		}
		msg[n++] = *v;
	}
	msg[n] = '\0';
	vips_error_clear();
	return dr_fail(err, status, code, "%s: %s", what,
		       n ? msg : "libvips failed");
}

/* Where an image's bytes are: `buf` in memory, or (buf NULL) the file
 * open as `fd`, read as the decoder needs it. `len` bytes either way. */
typedef struct image_input {
	const void *buf;
	int fd;
	size_t len;
} image_input;

/*
 * Open the input with the loader of the sniffed `format` only: header now,
 * pixels when something reads them. `scale` (at most 1) is the loader's
 * own reduction: JPEG shrink-on-load (1, 1/2, 1/4 or 1/8; libjpeg rounds
 * the size up), WebP any scale (libwebp's rescaler, the size rounded to
 * nearest); other formats ignore it. Every load goes through a VipsSource
 * (what libvips' _buffer loaders do themselves), so memory and files take
 * the same code. The image refers to the buffer or a duplicate of the
 * descriptor; a buffer must outlive it. NULL with the libvips error set.
 */
static VipsImage *load(const char *format, const image_input *in, double scale)
{
	VipsSource *src =
		in->buf ? vips_source_new_from_memory(in->buf, in->len)
			: vips_source_new_from_descriptor(in->fd);
	VipsImage *im = NULL;
	int r;

	if (!src)
		return NULL;
	if (strcmp(format, "jpeg") == 0)
		r = vips_jpegload_source(src, &im, "access",
					 VIPS_ACCESS_SEQUENTIAL, "fail_on",
					 VIPS_FAIL_ON_ERROR, "shrink",
					 (int)lround(1 / scale), NULL);
	else if (strcmp(format, "webp") == 0)
		r = vips_webpload_source(
			src, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
			VIPS_FAIL_ON_ERROR, "scale", scale, NULL);
	else if (strcmp(format, "png") == 0)
		r = vips_pngload_source(src, &im, "access",
					VIPS_ACCESS_SEQUENTIAL, "fail_on",
					VIPS_FAIL_ON_ERROR, NULL);
	else if (strcmp(format, "gif") == 0)
		r = vips_gifload_source(src, &im, "access",
					VIPS_ACCESS_SEQUENTIAL, "fail_on",
					VIPS_FAIL_ON_ERROR, NULL);
	else if (strcmp(format, "tiff") == 0)
		r = vips_tiffload_source(src, &im, "access",
					 VIPS_ACCESS_SEQUENTIAL, "fail_on",
					 VIPS_FAIL_ON_ERROR, NULL);
	else if (strcmp(format, "avif") == 0 || strcmp(format, "heic") == 0)
		r = vips_heifload_source(src, &im, "access",
					 VIPS_ACCESS_SEQUENTIAL, "fail_on",
					 VIPS_FAIL_ON_ERROR, NULL);
	else
		r = (vips_error("darkroom", "no loader for %s", format), -1);
	g_object_unref(src); /* the image holds its own reference */
	if (r) {
		if (im)
			g_object_unref(im);
		return NULL;
	}
	return im;
}

/*
 * The limits, from the header only. A progressive JPEG counts three times
 * its pixels: libjpeg keeps every DCT coefficient of the whole image until
 * the last scan, several times the memory of a baseline decode that
 * streams a few rows at a time.
 */
static dr_status check_header(VipsImage *hdr, const dr_image_limits *lim,
			      dr_error *err)
{
	uint64_t w = (uint64_t)vips_image_get_width(hdr);
	uint64_t h = (uint64_t)vips_image_get_height(hdr);
	int pages = 1, multiscan = 0, factor = 1;
	uint64_t cost;

	/* The raw field: vips_image_get_n_pages() answers 1 for 10000
	 * pages or more, which would wave the largest files through. */
	if (vips_image_get_typeof(hdr, VIPS_META_N_PAGES) &&
	    vips_image_get_int(hdr, VIPS_META_N_PAGES, &pages) == 0 &&
	    pages < 1)
		pages = 1;
	if (pages > lim->max_pages)
		return dr_fail(err, DR_ERR_TOO_LARGE, "image_too_large",
			       "image has %d pages, more than %d", pages,
			       lim->max_pages);
	if (vips_image_get_typeof(hdr, "jpeg-multiscan") &&
	    vips_image_get_int(hdr, "jpeg-multiscan", &multiscan) == 0 &&
	    multiscan)
		factor = 3;
	/* w and h are at most VIPS_MAX_COORD (1e7): w * h fits in 64 bits. */
	cost = w * h;
	if (cost > UINT64_MAX / (uint64_t)pages / (uint64_t)factor)
		cost = UINT64_MAX;
	else
		cost *= (uint64_t)pages * (uint64_t)factor;
	if (cost > lim->max_pixels)
		return dr_fail(err, DR_ERR_TOO_LARGE, "image_too_large",
			       "image is %llux%llu, %d page(s)%s: %llu pixels, "
			       "more than %llu",
			       (unsigned long long)w, (unsigned long long)h,
			       pages,
			       factor > 1 ? ", progressive JPEG (x3)" : "",
			       (unsigned long long)cost,
			       (unsigned long long)lim->max_pixels);
	return DR_OK;
}

/* How much of the original (oriented size ow x oh) a box needs: at most 1,
 * never enlarging. */
static double box_scale(int bw, int bh, dr_fit fit, int ow, int oh)
{
	double sx = (double)bw / ow, sy = (double)bh / oh;
	double s = fit == DR_FIT_COVER ? fmax(sx, sy) : fmin(sx, sy);

	return s < 1 ? s : 1;
}

/* The metadata reads an image whose shorter side is 64 px: the
 * intermediate must have at least that much where the image has it. */
enum { ANALYSIS_BOX = 64 };

/*
 * JPEG shrink-on-load factor (1, 2, 4 or 8) for an image needed at `scale`
 * of its size: the largest one not above the shrink itself, one step less
 * when the shrink is exactly that integer (libjpeg rounds scaled sizes;
 * sharp has the same guard). The rest of the reduction is Lanczos 3.
 *
 * This is sharp's default rule, not vips_thumbnail()'s, which keeps a
 * factor of two for the final resize (shrink 2 only from 4x down). Both
 * load at least the needed size, so nothing is ever enlarged, and
 * libjpeg's scaled IDCT drops high frequencies rather than averaging
 * blocks: against a full decode reduced once with Lanczos 3, a 4000x3000
 * JPEG's card (decoded at 2000x1500 instead of in full) is within 45 dB
 * PSNR, its 960x720 inside rendition 44.3 dB (43.9 with the old rule).
 * What it buys: a third less decoding time there (152 -> 100 ms of CPU).
 */
static int jpeg_shrink(double scale)
{
	double shrink = 1 / scale;
	int s = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;

	if (s > 1 && (int)shrink == s)
		s /= 2;
	return s;
}

/*
 * WebP scale-on-load factor: vips_thumbnail()'s rule, a power of two that
 * leaves at least a factor of two for Lanczos 3. libwebp's rescaler is an
 * area average: asked for the exact size (as sharp does), it took the
 * thumb of a 1344x768 WebP from 47.6 to 38.6 dB PSNR against Lanczos 3 to
 * save a few ms, so it only does the coarse part.
 */
static int webp_shrink(double scale)
{
	double shrink = 1 / scale;

	return shrink >= 16 ? 8 : shrink >= 8 ? 4 : shrink >= 4 ? 2 : 1;
}

/*
 * Make `in` 8-bit sRGB with an optional alpha band. An embedded ICC
 * profile (still attached after vips_thumbnail_image, which does not
 * colour-manage in 8.14) is applied; a profile lcms rejects is ignored,
 * as browsers do. Returns a new reference or NULL.
 */
static VipsImage *to_srgb8(VipsImage *in, int has_icc)
{
	VipsImage *a = NULL, *b = NULL;

	if (has_icc && vips_image_get_typeof(in, VIPS_META_ICC_NAME) &&
	    vips_image_get_interpretation(in) != VIPS_INTERPRETATION_CMYK) {
		if (vips_icc_transform(in, &a, "srgb", "embedded", TRUE,
				       "intent", VIPS_INTENT_RELATIVE, "depth",
				       8, NULL)) {
			vips_error_clear();
			a = NULL;
		}
	}
	if (!a) {
		a = in;
		g_object_ref(a);
	}
	if (vips_colourspace(a, &b, VIPS_INTERPRETATION_sRGB, NULL)) {
		g_object_unref(a);
		return NULL;
	}
	g_object_unref(a);
	if (vips_image_get_format(b) != VIPS_FORMAT_UCHAR) {
		a = b;
		if (vips_cast(a, &b, VIPS_FORMAT_UCHAR, NULL)) {
			g_object_unref(a);
			return NULL;
		}
		g_object_unref(a);
	}
	return b;
}

/*
 * Decode once: load at `load_scale` (see load), reduce to `iw` x `ih`
 * (oriented), orient, make sRGB 8-bit, and keep it in memory. NULL with
 * the libvips error set.
 */
static VipsImage *decode_intermediate(const char *format, const image_input *in,
				      VipsImage *hdr, double load_scale, int iw,
				      int ih)
{
	VipsImage *src = NULL, *small = NULL, *srgb = NULL, *mem = NULL;
	int has_icc = vips_image_get_typeof(hdr, VIPS_META_ICC_NAME) != 0;

	if (load_scale < 1) {
		if (!(src = load(format, in, load_scale)))
			return NULL;
	} else {
		src = hdr;
		g_object_ref(src);
	}
	if (vips_thumbnail_image(src, &small, iw, "height", ih, "size",
				 VIPS_SIZE_DOWN, NULL))
		goto out;
	if (!(srgb = to_srgb8(small, has_icc)))
		goto out;
	mem = vips_image_copy_memory(srgb);
out:
	if (srgb)
		g_object_unref(srgb);
	if (small)
		g_object_unref(small);
	g_object_unref(src);
	return mem;
}

/* Pixels of `in` as packed bytes (g_free), or NULL. */
static unsigned char *pixels(VipsImage *in, size_t *len)
{
	return vips_image_write_to_memory(in, len);
}

/* `in` over a white background, alpha removed: a new reference or NULL. */
static VipsImage *flatten_white(VipsImage *in)
{
	VipsArrayDouble *white = vips_array_double_newv(3, 255.0, 255.0, 255.0);
	VipsImage *out = NULL;

	if (vips_flatten(in, &out, "background", white, NULL))
		out = NULL;
	vips_area_unref(VIPS_AREA(white));
	return out;
}

/*
 * `in` reduced for the metadata: inside a w x h box, or exactly w x h
 * when `force` (which may enlarge), flattened over white when `flatten`.
 * NULL on error.
 */
static VipsImage *analysis_image(VipsImage *in, int w, int h, int force,
				 int flatten)
{
	VipsImage *t = NULL, *f = NULL;

	if (vips_thumbnail_image(in, &t, w, "height", h, "size",
				 force ? VIPS_SIZE_FORCE : VIPS_SIZE_DOWN,
				 "no_rotate", TRUE, NULL))
		return NULL;
	if (!flatten || !vips_image_hasalpha(t))
		return t;
	f = flatten_white(t);
	g_object_unref(t);
	return f;
}

/*
 * Metadata from one small base image: `inter` reduced until its shorter
 * side is ANALYSIS_BOX (64) px (a 64 px box would squash a long strip to
 * one row). BlurHash reads a 32 px copy of it flattened over white, the
 * dominant colour the base itself (alpha kept, to skip clear pixels),
 * pHash a 32x32 copy (aspect ignored) flattened over white.
 */
static dr_status analyse(VipsImage *inter, dr_image_info *info, dr_error *err)
{
	int iw = vips_image_get_width(inter), ih = vips_image_get_height(inter);
	double s = fmin(
		1, fmax((double)ANALYSIS_BOX / iw, (double)ANALYSIS_BOX / ih));
	VipsImage *base = NULL, *im = NULL;
	unsigned char *px = NULL;
	size_t n;

	/* Kept in memory: there is no operation cache, so each image
	 * derived from a lazy base would reduce `inter` again. */
	if (vips_thumbnail_image(inter, &im, (int)ceil(iw * s - 1e-9), "height",
				 (int)ceil(ih * s - 1e-9), "size",
				 VIPS_SIZE_DOWN, "no_rotate", TRUE, NULL) ||
	    !(base = vips_image_copy_memory(im)))
		goto fail;
	g_object_unref(im), im = NULL;
	if (!(px = pixels(base, &n)))
		goto fail;
	dominant_color(px, n / (size_t)vips_image_get_bands(base),
		       vips_image_get_bands(base), info->dominant_color);
	g_free(px), px = NULL;

	if (!(im = analysis_image(base, 32, 32, 0, 1)) ||
	    !(px = pixels(im, &n)))
		goto fail;
	image_blurhash(px, vips_image_get_width(im), vips_image_get_height(im),
		       (size_t)vips_image_get_width(im) * 3, 4, 3,
		       info->blurhash);
	g_free(px), px = NULL;
	g_object_unref(im), im = NULL;

	if (!(im = analysis_image(base, 32, 32, 1, 1)) ||
	    !(px = pixels(im, &n)))
		goto fail;
	phash(px, vips_image_get_bands(im), info->phash);
	g_free(px);
	g_object_unref(im);
	g_object_unref(base);
	return DR_OK;
fail:
	g_free(px);
	if (im)
		g_object_unref(im);
	if (base)
		g_object_unref(base);
	return vips_fail(err, DR_ERR_INVALID, "image_corrupt", "analyse");
}

/*
 * A copy of `in` with every metadata item removed (EXIF, XMP, IPTC, ICC,
 * comments, orientation...). Savers get `strip` too, but libvips 8.14.1's
 * webpsave ignores it and writes the EXIF chunk, so nothing is left for a
 * saver to copy. A new reference, or NULL.
 */
static VipsImage *without_metadata(VipsImage *in)
{
	VipsImage *out = NULL;
	gchar **fields;

	if (vips_copy(in, &out, NULL))
		return NULL;
	fields = vips_image_get_fields(out);
	for (gchar **f = fields; f && *f; f++)
		(void)vips_image_remove(out, *f); /* FALSE for header fields */
	g_strfreev(fields);
	return out;
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/*
 * Drop the EXIF, XMP and ICCP chunks of a WebP file in place, clear their
 * VP8X flags, and drop a VP8X chunk left with no flags (the file is then a
 * simple one: just VP8 or VP8L). libvips 8.14.1's webpsave writes a fresh
 * EXIF chunk (resolution, dimensions) whatever `strip` says. -1 when the
 * container is not what libwebp writes.
 */
static int webp_strip(unsigned char *d, size_t *len)
{
	size_t in = 12, out = 12, vp8x = 0;
	int has_vp8x = 0;

	if (*len < 12 || memcmp(d, "RIFF", 4) != 0 ||
	    memcmp(d + 8, "WEBP", 4) != 0)
		return -1;
	while (in < *len) {
		uint32_t size;
		size_t total;

		if (*len - in < 8)
			return -1;
		size = get_le32(d + in + 4);
		total = 8 + (size_t)size + (size & 1);
		if (total > *len - in)
			return -1;
		if (memcmp(d + in, "EXIF", 4) == 0 ||
		    memcmp(d + in, "XMP ", 4) == 0 ||
		    memcmp(d + in, "ICCP", 4) == 0) {
			in += total;
			continue;
		}
		if (memcmp(d + in, "VP8X", 4) == 0 && size >= 1)
			has_vp8x = 1, vp8x = out;
		memmove(d + out, d + in, total);
		out += total, in += total;
	}
	if (has_vp8x) {
		size_t total = 8 + (size_t)get_le32(d + vp8x + 4);

		total += total & 1;
		d[vp8x + 8] &= (unsigned char)~(0x20 | 0x08 | 0x04);
		if (d[vp8x + 8] == 0) {
			memmove(d + vp8x, d + vp8x + total, out - vp8x - total);
			out -= total;
		}
	}
	d[4] = (unsigned char)(out - 8), d[5] = (unsigned char)((out - 8) >> 8);
	d[6] = (unsigned char)((out - 8) >> 16);
	d[7] = (unsigned char)((out - 8) >> 24);
	*len = out;
	return 0;
}

/* Is AV1 encoding available? Probed once, on first need. */
static int avif_available(void)
{
	VipsImage *im = NULL;
	void *data = NULL;
	size_t len = 0;

	if (avif_state)
		return avif_state > 0;
	avif_state = -1;
	if (vips_black(&im, 16, 16, "bands", 3, NULL) == 0 &&
	    vips_heifsave_buffer(im, &data, &len, "compression",
				 VIPS_FOREIGN_HEIF_COMPRESSION_AV1,
				 NULL) == 0 &&
	    len > 0)
		avif_state = 1;
	g_free(data);
	if (im)
		g_object_unref(im);
	vips_error_clear();
	return avif_state > 0;
}

/*
 * One rendition of the in-memory sRGB image `inter` (size iw x ih, already
 * the right way up): inside the box, or filling it (attention crop) for
 * cover; never enlarged. A cover box larger than the image shrinks to the
 * largest box of the same aspect that fits, so a card stays a card.
 */
static dr_status render(VipsImage *inter, const dr_preset *p, dr_rendition *r,
			dr_error *err)
{
	int iw = vips_image_get_width(inter), ih = vips_image_get_height(inter);
	VipsImage *t = NULL, *f;
	int ok;
	void *data = NULL;
	size_t len = 0;

	if (p->fit == DR_FIT_COVER) {
		int bw = p->width, bh = p->height;

		if ((double)bw / iw > 1 || (double)bh / ih > 1) {
			double k = fmin((double)iw / bw, (double)ih / bh);

			bw = (int)lround(bw * k), bh = (int)lround(bh * k);
			bw = bw < 1 ? 1 : bw > iw ? iw : bw;
			bh = bh < 1 ? 1 : bh > ih ? ih : bh;
		}
		ok = vips_thumbnail_image(inter, &t, bw, "height", bh, "size",
					  VIPS_SIZE_DOWN, "crop",
					  VIPS_INTERESTING_ATTENTION,
					  "no_rotate", TRUE, NULL) == 0;
	} else {
		ok = vips_thumbnail_image(inter, &t, p->width, "height",
					  p->height, "size", VIPS_SIZE_DOWN,
					  "no_rotate", TRUE, NULL) == 0;
	}
	if (ok) {
		f = without_metadata(t);
		g_object_unref(t);
		t = f;
		ok = t != NULL;
	}
	if (!ok)
		return vips_fail(err, DR_ERR_INVALID, "image_corrupt",
				 p->name ? p->name : "rendition");

	switch (p->format) {
	case DR_FORMAT_WEBP:
		ok = vips_webpsave_buffer(t, &data, &len, "Q", p->quality,
					  "strip", TRUE, NULL) == 0;
		if (ok && webp_strip(data, &len) != 0) {
			vips_error("darkroom", "webpsave wrote no RIFF/WEBP");
			ok = 0;
		}
		r->mime = "image/webp", r->ext = "webp";
		break;
	case DR_FORMAT_AVIF:
		ok = vips_heifsave_buffer(
			     t, &data, &len, "Q", p->quality, "compression",
			     VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "bitdepth", 8,
			     "strip", TRUE, NULL) == 0;
		r->mime = "image/avif", r->ext = "avif";
		break;
	case DR_FORMAT_JPEG:
		/* JPEG has no alpha: flatten over white, not libvips'
		 * default black. */
		if (vips_image_hasalpha(t)) {
			if (!(f = flatten_white(t))) {
				ok = 0;
				break;
			}
			g_object_unref(t);
			t = f;
		}
		ok = vips_jpegsave_buffer(t, &data, &len, "Q", p->quality,
					  "optimize_coding", TRUE, "interlace",
					  FALSE, "strip", TRUE, NULL) == 0;
		r->mime = "image/jpeg", r->ext = "jpg";
		break;
	case DR_FORMAT_PNG:
		ok = vips_pngsave_buffer(t, &data, &len, "compression", 6,
					 "interlace", FALSE, "strip", TRUE,
					 NULL) == 0;
		r->mime = "image/png", r->ext = "png";
		break;
	default:
		ok = 0;
		vips_error("darkroom", "unknown output format %d", p->format);
		break;
	}
	if (!ok) {
		g_free(data);
		g_object_unref(t);
		r->mime = r->ext = NULL;
		return vips_fail(err, DR_ERR_INVALID, "image_corrupt",
				 p->name ? p->name : "rendition");
	}
	r->preset = p;
	r->data = data;
	r->len = len;
	r->width = vips_image_get_width(t);
	r->height = vips_image_get_height(t);
	g_object_unref(t);
	return DR_OK;
}

/*
 * The checks every entry point makes before reading the image: arguments,
 * presets (each out[] cleared), image_init(). DR_OK or the failure.
 */
static dr_status check_call(const dr_image_limits *limits,
			    const dr_preset *const *presets, size_t n,
			    dr_image_info *info, dr_rendition *out,
			    dr_error *err)
{
	if (!limits || !info || (n > 0 && (!presets || !out)))
		return dr_fail(err, DR_ERR_INVALID, "invalid_argument",
			       "image_process: missing argument");
	for (size_t i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		const dr_preset *p = presets[i];

		if (!p || p->width < 1 || p->height < 1 ||
		    (p->fit != DR_FIT_INSIDE && p->fit != DR_FIT_COVER) ||
		    p->format < DR_FORMAT_WEBP || p->format > DR_FORMAT_PNG ||
		    p->quality < 1 || p->quality > 100)
			return dr_fail(err, DR_ERR_INVALID, "invalid_argument",
				       "image_process: bad preset %zu", i);
	}
	memset(info, 0, sizeof(*info));
	if (!vips_ready)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "image_init() was not called");
	return DR_OK;
}

/* image_process() of an input whose first bytes (up to 64) are head[0..nh)
 * and whose call check_call() passed. */
static dr_status process(const image_input *in, const unsigned char *head,
			 size_t nh, const dr_image_limits *limits,
			 const dr_preset *const *presets, size_t n,
			 dr_image_info *info, dr_rendition *out, dr_error *err)
{
	size_t len = in->len;
	dr_sniff type;
	VipsImage *hdr = NULL, *inter = NULL;
	dr_status st;
	int w, h, ow, oh, swap, iw, ih;
	double scale, load_scale;
	size_t done = 0;

	image_sniff(head, nh, &type);
	if (!type.decodable)
		return dr_fail(err, DR_ERR_UNSUPPORTED, "unsupported_type",
			       "not an image type that is decoded: %s",
			       type.mime);
	if (len > limits->max_bytes)
		return dr_fail(err, DR_ERR_TOO_LARGE, "image_too_large",
			       "image is %zu bytes, more than %llu", len,
			       (unsigned long long)limits->max_bytes);
	for (size_t i = 0; i < n; i++)
		if (presets[i]->format == DR_FORMAT_AVIF && !avif_available())
			return dr_fail(
				err, DR_ERR_UNSUPPORTED, "avif_unavailable",
				"preset %s wants AVIF, but libheif has "
				"no AV1 encoder here",
				presets[i]->name ? presets[i]->name : "?");

	/* Header only: no pixel is decoded until the intermediate. */
	if (!(hdr = load(type.format, in, 1.0)))
		return vips_fail(err, DR_ERR_INVALID, "image_corrupt",
				 "header");
	if ((st = check_header(hdr, limits, err)) != DR_OK)
		goto fail;

	w = vips_image_get_width(hdr);
	h = vips_image_get_height(hdr);
	swap = vips_image_get_orientation(hdr) >= 5;
	ow = swap ? h : w, oh = swap ? w : h;

	/* The largest scale any consumer needs decides the intermediate. */
	scale = box_scale(ANALYSIS_BOX, ANALYSIS_BOX, DR_FIT_COVER, ow, oh);
	for (size_t i = 0; i < n; i++)
		scale = fmax(scale,
			     box_scale(presets[i]->width, presets[i]->height,
				       presets[i]->fit, ow, oh));
	iw = (int)ceil(ow * scale - 1e-9), ih = (int)ceil(oh * scale - 1e-9);
	iw = iw < 1 ? 1 : iw, ih = ih < 1 ? 1 : ih;
	if (strcmp(type.format, "jpeg") == 0)
		load_scale = 1.0 / jpeg_shrink(scale);
	else if (strcmp(type.format, "webp") == 0)
		load_scale = 1.0 / webp_shrink(scale);
	else
		load_scale = 1;
	inter = decode_intermediate(type.format, in, hdr, load_scale, iw, ih);
	g_object_unref(hdr), hdr = NULL;
	if (!inter) {
		st = vips_fail(err, DR_ERR_INVALID, "image_corrupt", "decode");
		goto fail;
	}

	info->width = ow;
	info->height = oh;
	snprintf(info->format, sizeof(info->format), "%s", type.format);
	if ((st = analyse(inter, info, err)) != DR_OK)
		goto fail;
	for (done = 0; done < n; done++)
		if ((st = render(inter, presets[done], &out[done], err)) !=
		    DR_OK)
			goto fail;
	g_object_unref(inter);
	return DR_OK;

fail:
	for (size_t i = 0; i < done; i++)
		image_rendition_free(&out[i]);
	if (inter)
		g_object_unref(inter);
	if (hdr)
		g_object_unref(hdr);
	memset(info, 0, sizeof(*info));
	return st;
}

dr_status image_process(const void *buf, size_t len,
			const dr_image_limits *limits,
			const dr_preset *const *presets, size_t n,
			dr_image_info *info, dr_rendition *out, dr_error *err)
{
	image_input in = { buf, -1, len };
	dr_status st;

	if (!buf)
		return dr_fail(err, DR_ERR_INVALID, "invalid_argument",
			       "image_process: missing argument");
	if ((st = check_call(limits, presets, n, info, out, err)) != DR_OK)
		return st;
	return process(&in, buf, len < 64 ? len : 64, limits, presets, n, info,
		       out, err);
}

dr_status image_process_fd(int fd, const dr_image_limits *limits,
			   const dr_preset *const *presets, size_t n,
			   dr_image_info *info, dr_rendition *out,
			   dr_error *err)
{
	unsigned char head[64];
	image_input in = { NULL, fd, 0 };
	struct stat sb;
	ssize_t nh;
	dr_status st;

	if ((st = check_call(limits, presets, n, info, out, err)) != DR_OK)
		return st;
	if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
		return dr_fail(err, DR_ERR_INVALID, "invalid_argument",
			       "image_process_fd: not a regular file");
	do
		nh = pread(fd, head, sizeof(head), 0);
	while (nh < 0 && errno == EINTR);
	if (nh < 0)
		return dr_fail(err, DR_ERR_IO, "io_error",
			       "image_process_fd: %s", strerror(errno));
	in.len = (size_t)sb.st_size;
	return process(&in, head, (size_t)nh, limits, presets, n, info, out,
		       err);
}

void image_rendition_free(dr_rendition *r)
{
	if (!r)
		return;
	g_free(r->data);
	memset(r, 0, sizeof(*r));
}
