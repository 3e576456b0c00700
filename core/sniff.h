/*
 * sniff.h - what a downloaded file is, decided from its first bytes.
 *
 * Owns content type detection: kind, MIME type, extension and format of a
 * file from its first up-to-64 bytes, never from a header or an extension,
 * and whether it is an image type the image module may decode. A
 * foundation with no library behind it (no libvips), so anything that
 * needs a file's type can link it without the image code.
 */
#ifndef DR_SNIFF_H
#define DR_SNIFF_H

#include <stddef.h>

/* What the bytes are. */
typedef struct dr_sniff {
	const char *kind;   /* "image", "video", "audio", "text", "file" */
	const char *mime;   /* e.g. "image/png", "application/octet-stream" */
	const char *ext;    /* e.g. "png", "bin" */
	const char *format; /* e.g. "png", "jpeg", "webp", "avif", "mp4" */
	int decodable;      /* an image type libvips may decode here */
} dr_sniff;

/* Classify `head` (the first up-to-64 bytes of a file, n = how many;
 * NULL counts as empty). *out points to static strings. Never fails:
 * what is recognised as nothing else is application/octet-stream. */
void sniff_head(const unsigned char *head, size_t n, dr_sniff *out);

#endif
