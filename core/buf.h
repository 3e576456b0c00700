/*
 * buf.h - a growable byte buffer with a hard limit.
 *
 * Every buffer that grows from outside input (request bodies, responses,
 * downloads, JSON text) is a dr_buf with a named maximum, so no input can
 * make the process allocate without bound. The content is always
 * NUL-terminated for convenience; `len` excludes the terminator.
 */
#ifndef DR_BUF_H
#define DR_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "error.h"

typedef struct dr_buf {
	char *data;   /* NULL until the first append */
	size_t len;   /* bytes used, excluding the NUL */
	size_t cap;   /* bytes allocated, never more than limit + 1 */
	size_t limit; /* len never exceeds this */
} dr_buf;

/* Prepare an empty buffer that refuses to grow past `limit` bytes of
 * content; its memory never exceeds limit + 1 bytes (the NUL). */
void dr_buf_init(dr_buf *b, size_t limit);

/* Append bytes. DR_ERR_TOO_LARGE (buffer unchanged) past the limit. */
dr_status dr_buf_append(dr_buf *b, const void *data, size_t n) DR_WARN_UNUSED;

/* Append a NUL-terminated string. */
dr_status dr_buf_puts(dr_buf *b, const char *s) DR_WARN_UNUSED;

/* Append printf-formatted text. */
dr_status dr_buf_printf(dr_buf *b, const char *fmt, ...) DR_PRINTF(2, 3)
	DR_WARN_UNUSED;
dr_status dr_buf_vprintf(dr_buf *b, const char *fmt, va_list ap)
	DR_WARN_UNUSED;

/* Append `s` as well-formed UTF-8 of at most `max_chars` characters: each
 * byte that starts no well-formed sequence (RFC 3629) becomes U+FFFD, and
 * the text is cut at a character boundary. For text from outside that
 * goes into a utf8mb4 column of a fixed size. On failure b is unchanged. */
dr_status dr_buf_utf8(dr_buf *b, const char *s, size_t max_chars)
	DR_WARN_UNUSED;

/* Append `s` as a JSON string literal, quotes included; bytes that are
 * not well-formed UTF-8 become \ufffd, so the result is always valid
 * JSON text. */
dr_status dr_buf_json_string(dr_buf *b, const char *s) DR_WARN_UNUSED;

/* Cut the content back to its first `len` bytes (an append's undo); a
 * `len` at or past the end changes nothing. */
void dr_buf_truncate(dr_buf *b, size_t len);

/* Forget the content, keep the memory and the limit. */
void dr_buf_reset(dr_buf *b);

/* Release the memory; the buffer is empty again, limit kept. */
void dr_buf_free(dr_buf *b);

/* Take the content as a malloc'd string (never NULL) and empty b. */
char *dr_buf_steal(dr_buf *b);

#endif
