/*
 * datascan.h - the large data: URIs of a provider's webhook, found in its
 * raw JSON text without parsing it into objects.
 *
 * Cog, and Replicate at times, send a prediction's files inside the
 * webhook as base64 data: URIs: a 1024x1024 PNG is a 2-3 MB delivery, a
 * 4000x3000 photo about 30 MB. Parsed with json-c such a string is copied
 * twice more (the tokenizer's buffer, then the string object), and the
 * adapter's copy, the job's stored prediction and the output row would
 * each hold it again. Instead the app scans the body once: each string
 * that is the value under the document's top-level "output" member (at
 * any depth below it), starts "data:", declares ";base64" and is at least
 * DATASCAN_MIN_BYTES long is replaced, in a copy of the document, by a
 * reference of a few dozen bytes,
 *
 *     data:<media type>;darkroom-blob=<26 characters>,
 *
 * itself a data: URI (an empty one), so adapters classify it as the file
 * output it stands for. The bytes are decoded from the body in pieces
 * (datascan_decode) and kept in MariaDB by blobs.h until the worker has
 * stored them. Strings elsewhere (e.g. the prediction's `input`, which
 * the provider echoes) and strings that are not plain base64 (an escape
 * other than "\/", a character outside the standard alphabet, padding
 * before the end) stay in the document as they were.
 *
 * The scan reads any bytes: a document that is not JSON gives a copy the
 * adapter then refuses, never a crash or a read past `len`.
 */
#ifndef DR_DATASCAN_H
#define DR_DATASCAN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "darkroom-plugin.h"
#include "error.h"

/* Strings shorter than this (bytes of JSON text) stay in the document. */
#define DATASCAN_MIN_BYTES 4096

/* Most data: URIs taken out of one document; later ones stay. */
#define DATASCAN_MAX_ITEMS 256

/* Characters of a reference's id (lower-case base32 of 128 random bits,
 * padded to 26 with the alphabet's zero digit). */
#define DATASCAN_ID_LEN 26

/* The media type kept from a data: URI (before ";base64"), at most. */
#define DATASCAN_MEDIA_MAX 127

/* One data: URI taken out of the document. */
typedef struct {
	char id[DATASCAN_ID_LEN + 1];
	char media[DATASCAN_MEDIA_MAX + 1]; /* e.g. "image/png"; may be "" */
	size_t start;	/* offset of the base64 text in the body */
	size_t end;	/* offset of its closing quote */
	uint64_t bytes; /* decoded length */
} dr_datascan_item;

typedef struct {
	dr_buf doc; /* with n > 0: the document with the references,
		     * NUL-terminated; with n == 0: empty (use the body) */
	size_t n;
	dr_datascan_item items[DATASCAN_MAX_ITEMS];
} dr_datascan;

/*
 * Scan body[0..len) and fill *s (initialised here; datascan_free
 * releases it). DR_OK with s->n possibly 0 (then s->doc is a copy of the
 * body); DR_ERR_INTERNAL when no random id can be had.
 */
dr_status datascan_run(const unsigned char *body, size_t len, dr_datascan *s,
		       dr_error *err) DR_WARN_UNUSED;

void datascan_free(dr_datascan *s);

/*
 * Whether the string s[0..len) (a data: URI as text, not JSON) is one the
 * scan would take: *taken 1 with *it filled (offsets into s, a new id),
 * else 0. DR_ERR_INTERNAL when no random id can be had.
 */
dr_status datascan_one(const char *s, size_t len, dr_datascan_item *it,
		       int *taken, dr_error *err) DR_WARN_UNUSED;

/*
 * Decode item `it` of the body `body` from base64 character offset *pos
 * (start with it->start): at most `cap` bytes (a multiple of 3 of at least
 * 3) into out, *n set to how many, *pos advanced. *n is 0 once the item
 * is done. The scan has checked the text, so this cannot fail.
 */
void datascan_decode(const unsigned char *body, const dr_datascan_item *it,
		     size_t *pos, unsigned char *out, size_t cap, size_t *n);

/*
 * Whether `s` is a reference made by datascan_run. On 1, id (DATASCAN_ID_LEN
 * + 1 bytes) holds its id and media (mediasz bytes) its media type.
 */
int datascan_reference(const char *s, char *id, char *media, size_t mediasz);

/*
 * A delivery as the app hands it to an adapter: the request, then the
 * document the host's webhook_document gives for it. Only such a
 * delivery may be passed to an adapter in the core.
 */
typedef struct {
	struct dr_webhook_request req; /* first */
	const char *doc;	       /* NULL: the body as it is */
	size_t doc_len;
} dr_webhook_delivery;

/* The host's webhook_document (darkroom-plugin.h): the document of the
 * dr_webhook_delivery whose `req` this is. */
const char *datascan_document(const struct dr_webhook_request *req,
			      size_t *len);

#endif
