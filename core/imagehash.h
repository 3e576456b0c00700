/*
 * imagehash.h - the hashes darkroom keeps per image: BlurHash, dominant
 * colour and a 64-bit perceptual hash (DCT pHash).
 *
 * Owns the arithmetic of those hashes over 8-bit sRGB pixels. Below the
 * image module (which decodes, reduces and hands the pixels over) and
 * free of libvips.
 */
#ifndef DR_IMAGEHASH_H
#define DR_IMAGEHASH_H

#include <stddef.h>

/* BlurHash of an sRGB image (3 bytes per pixel, rows of `stride` bytes),
 * with x_comp by y_comp components (1..9), into out (at least 64 bytes):
 * the reference encoder's string bit for bit, or "" when the arguments
 * are out of range or the hash would not fit 64 bytes. */
void imagehash_blurhash(const unsigned char *rgb, int width, int height,
			size_t stride, int x_comp, int y_comp, char *out);

/* Dominant colour "#rrggbb" of n_px pixels of `bands` (3, or 4 with
 * alpha: pixels under half opacity do not count) bytes each: the mean of
 * the fullest bin of a 4-bit-per-channel histogram; white when no pixel
 * counts. Aborts on out of memory. */
void imagehash_dominant_color(const unsigned char *px, size_t n_px,
			      int bands, char out[8]);

/* DCT pHash (the layout of Python's imagehash.phash) of 32x32 pixels of
 * `bands` (3 or 4) bytes, as 16 hex digits into out. */
void imagehash_phash(const unsigned char *rgb, int bands, char out[17]);

#endif
