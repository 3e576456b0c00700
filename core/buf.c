/*
 * buf.c - growable byte buffer with a hard limit (see buf.h).
 */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dr_buf_init(dr_buf *b, size_t limit)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->limit = limit;
}

/*
 * Make room for `extra` more bytes and the NUL. Capacity doubles (from
 * 256) for amortised appends but never past limit + 1: the limit bounds
 * the memory, not only the content, so a 16 MiB buffer never takes 32.
 */
static dr_status reserve(dr_buf *b, size_t extra)
{
	size_t need, cap, most;

	/* len + extra + 1 must not exceed limit + 1 nor wrap around. */
	if (extra > b->limit || b->len > b->limit - extra ||
	    b->len + extra == SIZE_MAX)
		return DR_ERR_TOO_LARGE;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return DR_OK;
	most = b->limit < SIZE_MAX ? b->limit + 1 : SIZE_MAX;
	cap = b->cap ? b->cap : 256;
	while (cap < need) {
		if (cap > most / 2) {
			cap = most;
			break;
		}
		cap *= 2;
	}
	if (cap > most)
		cap = most; /* need <= most, so the content still fits */
	b->data = dr_xrealloc(b->data, cap);
	b->cap = cap;
	return DR_OK;
}

dr_status dr_buf_append(dr_buf *b, const void *data, size_t n)
{
	dr_status st = reserve(b, n);

	if (st != DR_OK)
		return st;
	if (n)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
	return DR_OK;
}

dr_status dr_buf_puts(dr_buf *b, const char *s)
{
	return dr_buf_append(b, s, strlen(s));
}

dr_status dr_buf_vprintf(dr_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	dr_status st;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return DR_ERR_INVALID;
	st = reserve(b, (size_t)n);
	if (st != DR_OK)
		return st;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return DR_OK;
}

dr_status dr_buf_printf(dr_buf *b, const char *fmt, ...)
{
	va_list ap;
	dr_status st;

	va_start(ap, fmt);
	st = dr_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return st;
}

/*
 * The length (1..4) of the well-formed UTF-8 sequence at p, or 0 when the
 * bytes there are not one (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF). p is NUL-terminated: a NUL is never a
 * continuation byte, so the checks stop at it.
 */
static size_t utf8_len(const unsigned char *p)
{
	unsigned c = p[0], lo, hi;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3
									   : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 &&
				       (p[3] & 0xc0) == 0x80
			       ? 4
			       : 0;
	}
	return 0;
}

dr_status dr_buf_utf8(dr_buf *b, const char *s, size_t max_chars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t start = b->len, chars = 0;
	dr_status st = DR_OK;

	for (; st == DR_OK && *p && chars < max_chars; chars++) {
		size_t n = utf8_len(p);

		if (n) {
			st = dr_buf_append(b, p, n);
			p += n;
		} else {
			st = dr_buf_append(b, "\xef\xbf\xbd", 3); /* U+FFFD */
			p++;
		}
	}
	if (st == DR_OK && b->len == 0)
		st = dr_buf_append(b, "", 0); /* "" has its buffer too */
	if (st != DR_OK)
		dr_buf_truncate(b, start);
	return st;
}

dr_status dr_buf_json_string(dr_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t start = b->len;
	dr_status st = dr_buf_append(b, "\"", 1);

	for (; st == DR_OK && *p; p++) {
		char esc[7];

		switch (*p) {
		case '"':
			st = dr_buf_append(b, "\\\"", 2);
			break;
		case '\\':
			st = dr_buf_append(b, "\\\\", 2);
			break;
		case '\n':
			st = dr_buf_append(b, "\\n", 2);
			break;
		case '\r':
			st = dr_buf_append(b, "\\r", 2);
			break;
		case '\t':
			st = dr_buf_append(b, "\\t", 2);
			break;
		default:
			if (*p < 0x20) {
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[*p >> 4];
				esc[5] = hex[*p & 15];
				st = dr_buf_append(b, esc, 6);
			} else if (*p < 0x80) {
				st = dr_buf_append(b, p, 1);
			} else {
				/* JSON text is UTF-8: a byte that starts no
				 * well-formed sequence becomes U+FFFD. */
				size_t n = utf8_len(p);

				if (n) {
					st = dr_buf_append(b, p, n);
					p += n - 1;
				} else {
					st = dr_buf_append(b, "\\ufffd", 6);
				}
			}
		}
	}
	if (st == DR_OK)
		st = dr_buf_append(b, "\"", 1);
	if (st != DR_OK)
		dr_buf_truncate(b, start);
	return st;
}

void dr_buf_truncate(dr_buf *b, size_t len)
{
	if (len >= b->len)
		return;
	b->len = len;
	b->data[len] = '\0';
}

void dr_buf_reset(dr_buf *b)
{
	dr_buf_truncate(b, 0);
}

void dr_buf_free(dr_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

char *dr_buf_steal(dr_buf *b)
{
	char *s = b->data ? b->data : dr_xstrdup("");

	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return s;
}
