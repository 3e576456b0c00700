/*
 * fuzz_datascan.c - the scan of a webhook's raw JSON for large data: URIs
 * (datascan_run, core/datascan.c) over any bytes, and datascan_one over
 * the same bytes as one string. Checks the contract of datascan.h: every
 * item lies inside the input, decodes in pieces to exactly its `bytes`,
 * and is named by a reference datascan_reference reads back from the
 * document, which is never longer than the input plus the references.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datascan.h"
#include "fuzz.h"

#define FUZZ_MAX_INPUT (4u << 20)

static void check_item(const uint8_t *data, size_t size,
		       const dr_datascan_item *it)
{
	unsigned char piece[3 * 1024];
	size_t pos = it->start, n, cap;
	uint64_t total = 0;

	FUZZ_CHECK(it->start <= it->end && it->end <= size);
	FUZZ_CHECK(strlen(it->id) == DATASCAN_ID_LEN);
	FUZZ_CHECK(strlen(it->media) <= DATASCAN_MEDIA_MAX);
	/* An odd multiple of 3 as the piece, so quads straddle pieces. */
	cap = 3 * (1 + (it->end - it->start) % 1021);
	for (;;) {
		datascan_decode(data, it, &pos, piece, cap, &n);
		if (n == 0)
			break;
		FUZZ_CHECK(n <= cap);
		total += n;
		FUZZ_CHECK(pos <= it->end);
	}
	FUZZ_CHECK(total == it->bytes);
	FUZZ_CHECK(pos == it->end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char id[DATASCAN_ID_LEN + 1], media[DATASCAN_MEDIA_MAX + 1];
	dr_datascan_item one;
	dr_datascan *s;
	dr_error err;
	size_t found = 0;
	int taken = 0;
	char *text;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	s = malloc(sizeof(*s));
	if (!s)
		abort();
	memset(&err, 0, sizeof(err));
	FUZZ_CHECK(datascan_run(data, size, s, &err) == DR_OK);
	FUZZ_CHECK(s->n <= DATASCAN_MAX_ITEMS);
	if (s->n == 0) {
		FUZZ_CHECK(s->doc.data == NULL || s->doc.len == 0);
	} else {
		FUZZ_CHECK(s->doc.data[s->doc.len] == '\0');
		FUZZ_CHECK(s->doc.len < size + s->n * (DATASCAN_MEDIA_MAX + 64));
	}
	for (size_t i = 0; i < s->n; i++) {
		const char *p;

		check_item(data, size, &s->items[i]);
		/* Its reference is in the document (which may hold any
		 * bytes, NUL too), and reads back. */
		p = memmem(s->doc.data, s->doc.len, s->items[i].id,
			   DATASCAN_ID_LEN);
		FUZZ_CHECK(p != NULL);
		while (p > s->doc.data && p[-1] != '"')
			p--;
		{
			const char *end = s->doc.data + s->doc.len;
			const char *q = memchr(p, '"', (size_t)(end - p));
			char *ref;

			FUZZ_CHECK(q != NULL);
			ref = strndup(p, (size_t)(q - p));
			if (!ref)
				abort();
			FUZZ_CHECK(datascan_reference(ref, id, media,
						      sizeof(media)));
			FUZZ_CHECK(strcmp(id, s->items[i].id) == 0);
			FUZZ_CHECK(strcmp(media, s->items[i].media) == 0);
			free(ref);
		}
		found++;
	}
	FUZZ_CHECK(found == s->n);
	datascan_free(s);
	free(s);

	text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	FUZZ_CHECK(datascan_one(text, size, &one, &taken, &err) == DR_OK);
	if (taken)
		check_item(data, size, &one);
	free(text);
	return 0;
}
