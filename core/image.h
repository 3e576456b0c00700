/*
 * image.h - images through libvips, hardened.
 *
 * File types come from sniff.h (included here: the loader is picked by
 * the sniffed type), image hashes from imagehash.h. Images are decoded by
 * libvips with untrusted loaders blocked (only JPEG, PNG, WebP, GIF,
 * TIFF, HEIF/AVIF stay), fail_on error, sequential access, no operation
 * cache, and the pixel limit checked from the header before any decoding. One decode serves every
 * preset where quality allows (shrink-on-load from the largest needed
 * size). Renditions are sRGB, EXIF orientation applied, metadata stripped.
 * Metadata per image: size, format, BlurHash, dominant colour, a 64-bit
 * perceptual hash (DCT pHash).
 */
#ifndef DR_IMAGE_H
#define DR_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "sniff.h"

typedef struct dr_image_limits {
	uint64_t max_pixels; /* width * height * pages */
	uint64_t max_bytes;  /* largest image file decoded */
	int max_pages;       /* frames of animated images */
} dr_image_limits;

typedef struct dr_image_info {
	int width, height;
	char format[16];
	char blurhash[64];
	char dominant_color[8]; /* "#rrggbb" */
	char phash[17];         /* 16 hex digits */
} dr_image_info;

typedef struct dr_rendition {
	const dr_preset *preset;
	void *data;   /* g_malloc'd by libvips: free with image_rendition_free */
	size_t len;
	int width, height;
	const char *mime;
	const char *ext;
} dr_rendition;

/* Initialise libvips for untrusted input; once per process, before use.
 * `argv0` for vips_init. DR_ERR_INTERNAL when libvips will not start. */
dr_status image_init(const char *argv0) DR_WARN_UNUSED;

/*
 * Decode the image in buf once, fill *info, and make one rendition per
 * preset into out[0..n). Codes: image_too_large (pixels, pages or bytes
 * over the limits: checked from the header before decoding),
 * image_corrupt (truncated or invalid data), unsupported_type (not an
 * allowed image type). On failure nothing is left allocated in out.
 */
dr_status image_process(const void *buf, size_t len,
			const dr_image_limits *limits,
			const dr_preset *const *presets, size_t n,
			dr_image_info *info, dr_rendition *out,
			dr_error *err) DR_WARN_UNUSED;

/*
 * image_process() of the regular file open as `fd`, read by the decoder as
 * it goes instead of held in memory: a 78 MiB PNG costs its decode, not
 * 78 MiB more. Same codes and ownership, plus invalid_argument when fd is
 * not a regular file and io_error when it cannot be read. The caller keeps
 * fd (libvips reads a duplicate, so its file offset moves: use pread) and
 * must not change the file during the call.
 */
dr_status image_process_fd(int fd, const dr_image_limits *limits,
			   const dr_preset *const *presets, size_t n,
			   dr_image_info *info, dr_rendition *out,
			   dr_error *err) DR_WARN_UNUSED;

void image_rendition_free(dr_rendition *r);

#endif
