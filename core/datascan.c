/*
 * datascan.c - the large data: URIs of a webhook's JSON text (see
 * datascan.h).
 *
 * One pass over the bytes keeps just enough of JSON's structure to know
 * where a string is, whether it is an object's key (the next character
 * after blanks is ':'), how deep it lies, and whether the top-level
 * member it belongs to is "output". A string is never copied: a taken
 * one is remembered by its offsets in the body, which the caller keeps
 * until the pieces are decoded.
 */
#include "datascan.h"

#include <string.h>
#include <strings.h>

#include "ids.h"
#include "webhook.h"

#define REF_PARAM ";darkroom-blob="
/* Room the scanned copy needs per reference, over the media type. */
#define REF_EXTRA (sizeof("data:" REF_PARAM ",") + DATASCAN_ID_LEN)

static const char id_alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

/* A character a data: URI's media type may hold here: a token
 * character, '/', ';' or '=' (what adapters accept before the comma). */
static int media_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') ||
	       (c && strchr("!#$&^_.+-/;=", c) != NULL);
}

static dr_status new_id(char id[DATASCAN_ID_LEN + 1], dr_error *err)
{
	unsigned char r[16];
	unsigned acc = 0, bits = 0;
	size_t k = 0;

	if (ids_random(r, sizeof(r)) != DR_OK)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "no random bytes for a blob id");
	for (size_t i = 0; i < sizeof(r); i++) {
		acc = (acc << 8) | r[i];
		bits += 8;
		while (bits >= 5 && k < DATASCAN_ID_LEN) {
			bits -= 5;
			id[k++] = id_alphabet[(acc >> bits) & 31];
		}
	}
	if (bits > 0 && k < DATASCAN_ID_LEN)
		id[k++] = id_alphabet[(acc << (5 - bits)) & 31];
	while (k < DATASCAN_ID_LEN)
		id[k++] = '0';
	id[k] = '\0';
	return DR_OK;
}

/*
 * Whether the string text b[a..z) (between its quotes) is a data: URI to
 * take: fills it->media, it->start, it->end and it->bytes when it is.
 */
static int candidate(const unsigned char *b, size_t a, size_t z,
		     dr_datascan_item *it)
{
	size_t comma, mlen, chars = 0, pad = 0;

	if (z - a < DATASCAN_MIN_BYTES ||
	    strncasecmp((const char *)b + a, "data:", 5) != 0)
		return 0;
	for (comma = a + 5; comma < z && b[comma] != ','; comma++)
		if (!media_char(b[comma]) ||
		    comma - a > DATASCAN_MEDIA_MAX + 12)
			return 0;
	if (comma >= z || comma - (a + 5) < 7 ||
	    strncasecmp((const char *)b + comma - 7, ";base64", 7) != 0)
		return 0;
	mlen = comma - 7 - (a + 5);
	if (mlen > DATASCAN_MEDIA_MAX)
		return 0;
	for (size_t i = comma + 1; i < z; i++) {
		unsigned char c = b[i];

		if (c == '\\') {
			if (i + 1 >= z || b[i + 1] != '/' || pad)
				return 0;
			i++;
			chars++;
		} else if (c == '=') {
			if (++pad > 2)
				return 0;
			chars++;
		} else if (webhook_b64_value(c) < 0 || pad) {
			return 0;
		} else {
			chars++;
		}
	}
	if (chars == 0 || chars % 4 != 0)
		return 0;
	memcpy(it->media, b + a + 5, mlen);
	it->media[mlen] = '\0';
	it->start = comma + 1;
	it->end = z;
	it->bytes = (uint64_t)chars / 4 * 3 - pad;
	return 1;
}

/* Index of the closing quote of the string opening at b[i] == '"', or
 * len when it is not closed. */
static size_t string_end(const unsigned char *b, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (b[i] == '\\')
			i++;
		else if (b[i] == '"')
			return i;
	}
	return len;
}

/* Whether the string closing at b[q] is an object's key. */
static int is_key(const unsigned char *b, size_t len, size_t q)
{
	for (q++; q < len; q++)
		if (!b[q] || !strchr(" \t\r\n", b[q]))
			return b[q] == ':';
	return 0;
}

static dr_status take(dr_datascan *s, const unsigned char *body, size_t *copied,
		      size_t open, dr_datascan_item *it, dr_error *err)
{
	dr_status st = new_id(it->id, err);

	if (st != DR_OK)
		return st;
	if (dr_buf_append(&s->doc, body + *copied, open + 1 - *copied) !=
		    DR_OK ||
	    dr_buf_printf(&s->doc, "data:%s" REF_PARAM "%s,", it->media,
			  it->id) != DR_OK)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "the scanned document does not fit");
	*copied = it->end;
	s->items[s->n++] = *it;
	return DR_OK;
}

dr_status datascan_run(const unsigned char *body, size_t len, dr_datascan *s,
		       dr_error *err)
{
	size_t depth = 0, copied = 0, i = 0;
	int in_output = 0;
	dr_status st;

	memset(s, 0, sizeof(*s));
	/* The copy is never longer than the body plus the references. */
	dr_buf_init(&s->doc, len + 1 +
				     DATASCAN_MAX_ITEMS *
					     (REF_EXTRA + DATASCAN_MEDIA_MAX));
	while (i < len) {
		unsigned char c = body[i];

		if (c == '"') {
			size_t q = string_end(body, len, i);
			dr_datascan_item it;

			if (q >= len)
				break;
			if (is_key(body, len, q)) {
				if (depth == 1)
					in_output = q - i - 1 == 6 &&
						    memcmp(body + i + 1,
							   "output", 6) == 0;
			} else if (in_output && depth >= 1 &&
				   s->n < DATASCAN_MAX_ITEMS &&
				   candidate(body, i + 1, q, &it)) {
				st = take(s, body, &copied, i, &it, err);
				if (st != DR_OK) {
					datascan_free(s);
					return st;
				}
			}
			i = q + 1;
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && depth > 0)
			depth--;
		i++;
	}
	if (s->n == 0) {
		dr_buf_free(&s->doc); /* the adapter reads the body itself */
		return DR_OK;
	}
	if (dr_buf_append(&s->doc, body + copied, len - copied) != DR_OK ||
	    dr_buf_append(&s->doc, "", 1) != DR_OK) {
		datascan_free(s);
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "the scanned document does not fit");
	}
	s->doc.len--; /* the NUL is not part of the document */
	return DR_OK;
}

dr_status datascan_one(const char *s, size_t len, dr_datascan_item *it,
		       int *taken, dr_error *err)
{
	const unsigned char *b = (const unsigned char *)s;

	*taken = 0;
	/* Text, not JSON: a quote or a backslash makes it no candidate. */
	if (memchr(s, '"', len) || memchr(s, '\\', len) ||
	    !candidate(b, 0, len, it))
		return DR_OK;
	*taken = 1;
	return new_id(it->id, err);
}

void datascan_free(dr_datascan *s)
{
	dr_buf_free(&s->doc);
	s->n = 0;
}

void datascan_decode(const unsigned char *body, const dr_datascan_item *it,
		     size_t *pos, unsigned char *out, size_t cap, size_t *n)
{
	size_t i = *pos, k = 0;

	while (i < it->end && k + 3 <= cap) {
		unsigned v[4];
		int m = 0, pad = 0;

		while (m < 4 && i < it->end) {
			unsigned char c = body[i++];

			if (c == '\\')
				c = body[i++]; /* "\/" */
			if (c == '=') {
				pad++;
				v[m++] = 0;
			} else {
				v[m++] = (unsigned)webhook_b64_value(c);
			}
		}
		if (m < 4)
			break; /* cannot happen: the scan counted quads */
		out[k++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[k++] =
				(unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[k++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	*pos = i;
	*n = k;
}

int datascan_reference(const char *s, char *id, char *media, size_t mediasz)
{
	const char *p, *q;
	size_t mlen;

	if (strncmp(s, "data:", 5) != 0)
		return 0;
	p = strstr(s + 5, REF_PARAM);
	if (!p)
		return 0;
	q = p + strlen(REF_PARAM);
	if (strspn(q, id_alphabet) != DATASCAN_ID_LEN ||
	    strcmp(q + DATASCAN_ID_LEN, ",") != 0)
		return 0;
	mlen = (size_t)(p - (s + 5));
	if (mlen >= mediasz || memchr(s + 5, ',', mlen))
		return 0;
	memcpy(id, q, DATASCAN_ID_LEN);
	id[DATASCAN_ID_LEN] = '\0';
	memcpy(media, s + 5, mlen);
	media[mlen] = '\0';
	return 1;
}

const char *datascan_document(const struct dr_webhook_request *req, size_t *len)
{
	const dr_webhook_delivery *d = (const dr_webhook_delivery *)req;

	if (d->doc) {
		*len = d->doc_len;
		return d->doc;
	}
	*len = req->body_len;
	return (const char *)req->body;
}
