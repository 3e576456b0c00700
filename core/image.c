/*
 * image.c - images through libvips, hardened.
 *
 * Owns turning an image into metadata and renditions (image_process from
 * memory, image_process_fd from a file, which libvips then reads as it
 * decodes) without trusting the bytes. What a file is comes from sniff.c
 * (the loader is chosen by it), the BlurHash, dominant colour and pHash
 * of the decoded pixels from imagehash.c; this file is the libvips glue.
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
#include "imagehash.h"

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
	imagehash_dominant_color(px, n / (size_t)vips_image_get_bands(base),
				 vips_image_get_bands(base),
				 info->dominant_color);
	g_free(px), px = NULL;

	if (!(im = analysis_image(base, 32, 32, 0, 1)) ||
	    !(px = pixels(im, &n)))
		goto fail;
	imagehash_blurhash(px, vips_image_get_width(im),
			   vips_image_get_height(im),
			   (size_t)vips_image_get_width(im) * 3, 4, 3,
			   info->blurhash);
	g_free(px), px = NULL;
	g_object_unref(im), im = NULL;

	if (!(im = analysis_image(base, 32, 32, 1, 1)) ||
	    !(px = pixels(im, &n)))
		goto fail;
	imagehash_phash(px, vips_image_get_bands(im), info->phash);
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

	sniff_head(head, nh, &type);
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
