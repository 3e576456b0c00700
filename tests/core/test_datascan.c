/*
 * test_datascan.c - large data: URIs taken out of a webhook's JSON text:
 * which strings are taken (under "output" only, values not keys, plain
 * base64 only, from DATASCAN_MIN_BYTES), the document left (parsed back
 * with json-c), the bytes decoded in pieces, the reference recognised.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datascan.h"
#include "webhook.h"

/* `n` bytes of a pattern every value of which occurs. */
static unsigned char *pattern(size_t n)
{
	unsigned char *p = malloc(n ? n : 1);

	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 131 + i / 251);
	return p;
}

/* "data:<media>;base64,<base64 of bytes>" (malloc). With `escape`, each
 * '/' of the base64 is written "\/" as some JSON encoders do. */
static char *data_uri(const char *media, const unsigned char *bytes, size_t n,
		      int escape)
{
	size_t cap = (n + 2) / 3 * 4 + 1;
	char *b64 = malloc(cap), *out;
	size_t len = webhook_b64_encode(bytes, n, b64, cap), k;

	out = malloc(strlen(media) + 20 + len * 2);
	k = (size_t)sprintf(out, "data:%s;base64,", media);
	for (size_t i = 0; i < len; i++) {
		if (escape && b64[i] == '/')
			out[k++] = '\\';
		out[k++] = b64[i];
	}
	out[k] = '\0';
	free(b64);
	return out;
}

/* Decode item i of s fully, in pieces of `cap`, and compare with want. */
static void expect_bytes(const char *body, const dr_datascan *s, size_t i,
			 const unsigned char *want, size_t n, size_t cap)
{
	unsigned char *got = malloc(n + cap), *piece = malloc(cap);
	size_t pos = s->items[i].start, total = 0, k;

	for (;;) {
		datascan_decode((const unsigned char *)body, &s->items[i], &pos,
				piece, cap, &k);
		if (k == 0)
			break;
		assert_true(total + k <= n);
		memcpy(got + total, piece, k);
		total += k;
	}
	assert_int_equal(total, n);
	assert_int_equal(s->items[i].bytes, n);
	assert_memory_equal(got, want, n);
	free(got);
	free(piece);
}

static void test_takes_outputs(void **state)
{
	size_t n1 = 100000, n2 = 5000;
	unsigned char *b1 = pattern(n1), *b2 = pattern(n2);
	char *u1 = data_uri("image/png", b1, n1, 0);
	char *u2 = data_uri("image/webp", b2, n2, 1);
	char *input = data_uri("image/png", b1, n1, 0);
	char *body = malloc(strlen(u1) + strlen(u2) + strlen(input) + 200);
	dr_datascan s;
	dr_error err;
	json_object *doc, *out, *v;
	char id[DATASCAN_ID_LEN + 1], media[64];

	(void)state;
	sprintf(body,
		"{\"id\": \"p1\", \"input\": {\"image\": \"%s\"},"
		" \"output\": [\"%s\", {\"mask\": \"%s\"}],"
		" \"status\": \"succeeded\"}",
		input, u1, u2);
	assert_int_equal(datascan_run((unsigned char *)body, strlen(body), &s,
				      &err),
			 DR_OK);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.items[0].media, "image/png");
	assert_string_equal(s.items[1].media, "image/webp");
	assert_true(s.doc.len < strlen(input) + 500);
	expect_bytes(body, &s, 0, b1, n1, 3 * 1024);
	expect_bytes(body, &s, 1, b2, n2, 3);
	expect_bytes(body, &s, 1, b2, n2, 999999);

	/* The document is JSON, the input untouched, each output a
	 * reference naming its item. */
	doc = json_tokener_parse(s.doc.data);
	assert_non_null(doc);
	assert_int_equal(strlen(s.doc.data), s.doc.len);
	assert_true(json_object_object_get_ex(doc, "input", &v));
	assert_string_equal(json_object_get_string(
				    json_object_object_get(v, "image")),
			    input);
	assert_true(json_object_object_get_ex(doc, "output", &out));
	assert_true(datascan_reference(
		json_object_get_string(json_object_array_get_idx(out, 0)), id,
		media, sizeof(media)));
	assert_string_equal(id, s.items[0].id);
	assert_string_equal(media, "image/png");
	v = json_object_object_get(json_object_array_get_idx(out, 1), "mask");
	assert_true(datascan_reference(json_object_get_string(v), id, media,
				       sizeof(media)));
	assert_string_equal(id, s.items[1].id);
	assert_string_equal(json_object_get_string(
				    json_object_object_get(doc, "status")),
			    "succeeded");
	assert_string_not_equal(s.items[0].id, s.items[1].id);
	json_object_put(doc);
	datascan_free(&s);
	free(body);
	free(u1);
	free(u2);
	free(input);
	free(b1);
	free(b2);
}

/* What stays in the document: small, not base64, a key, not under
 * "output", bad base64 of every kind, an escape other than "\/". */
static void test_leaves_others(void **state)
{
	size_t n = 6000;
	unsigned char *b = pattern(n);
	char *u = data_uri("image/png", b, n, 0);
	char *small = data_uri("image/png", b, 100, 0);
	const char *ofs = strchr(u, ',') + 1;
	char body[65536];
	const char *variants[] = {
		"{\"output\": \"%s\"}",			  /* taken */
		"{\"output\": \"%.100s\"}",		  /* too short */
		"{\"logs\": \"%s\"}",			  /* not output */
		"{\"output\": {\"%s\": 1}}",		  /* a key */
		"{\"input\": {\"output\": \"%s\"}}",	  /* nested output */
		"[\"output\", \"%s\"]",			  /* no object */
	};
	const int taken[] = {1, 0, 0, 0, 0, 0};
	dr_datascan s;
	dr_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(variants) / sizeof(*variants); i++) {
		snprintf(body, sizeof(body), variants[i], i == 1 ? small : u);
		assert_int_equal(datascan_run((unsigned char *)body,
					      strlen(body), &s, &err),
				 DR_OK);
		if ((int)s.n != taken[i])
			fail_msg("variant %zu: %zu taken", i, s.n);
		datascan_free(&s);
	}
	/* Not base64: percent-encoded, a bad character, padding inside,
	 * a length not a multiple of 4, an escape other than \/. */
	{
		const char *bad[] = { "data:text/plain,%s",
				      "data:image/png;base64,%s*",
				      "data:image/png;base64,AA==%s",
				      "data:image/png;base64,%sA",
				      "data:image/png;base64,%s\\u0041AAA",
				      "data:image/png;base64;x,%s" };

		for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
			char uri[20000];

			snprintf(uri, sizeof(uri), bad[i], ofs);
			snprintf(body, sizeof(body), "{\"output\": \"%s\"}",
				 uri);
			assert_int_equal(datascan_run((unsigned char *)body,
						      strlen(body), &s, &err),
					 DR_OK);
			if (s.n != 0)
				fail_msg("bad %zu was taken", i);
			datascan_free(&s);
		}
	}
	free(u);
	free(small);
	free(b);
}

/* Any bytes: cut documents, stray quotes and brackets, never a read past
 * the end (ASan) and never a crash. */
static void test_any_bytes(void **state)
{
	size_t n = 5000;
	unsigned char *b = pattern(n);
	char *u = data_uri("image/png", b, n, 0);
	char *body = malloc(strlen(u) + 64);
	dr_datascan s;
	dr_error err;
	size_t len;

	(void)state;
	len = (size_t)sprintf(body, "{\"output\": [\"%s\"]}", u);
	for (size_t cut = 0; cut <= len; cut += (cut < 40 || cut > len - 40)
							? 1
							: 997) {
		unsigned char *copy = malloc(cut ? cut : 1);

		memcpy(copy, body, cut);
		assert_int_equal(datascan_run(copy, cut, &s, &err), DR_OK);
		assert_true(s.n == (cut > len - 3 ? 1u : 0u));
		datascan_free(&s);
		free(copy);
	}
	assert_int_equal(datascan_run((const unsigned char *)"]]]}}}\"", 7, &s,
				      &err),
			 DR_OK);
	assert_int_equal(s.n, 0);
	datascan_free(&s);
	free(body);
	free(u);
	free(b);
}

static void test_reference(void **state)
{
	char id[DATASCAN_ID_LEN + 1], media[16];

	(void)state;
	assert_true(datascan_reference(
		"data:image/png;darkroom-blob=0123456789abcdefghjkmnpqrs,", id,
		media, sizeof(media)));
	assert_string_equal(id, "0123456789abcdefghjkmnpqrs");
	assert_string_equal(media, "image/png");
	assert_true(datascan_reference(
		"data:;darkroom-blob=0123456789abcdefghjkmnpqrs,", id, media,
		sizeof(media)));
	assert_string_equal(media, "");
	/* Short id, a letter outside the alphabet, data after the comma,
	 * a media type too long for the buffer, not data:. */
	assert_false(datascan_reference(
		"data:image/png;darkroom-blob=0123456789abcdefghjkmnpqr,", id,
		media, sizeof(media)));
	assert_false(datascan_reference(
		"data:image/png;darkroom-blob=0123456789abcdefghjkmnpqri,", id,
		media, sizeof(media)));
	assert_false(datascan_reference(
		"data:image/png;darkroom-blob=0123456789abcdefghjkmnpqrs,AAAA",
		id, media, sizeof(media)));
	assert_false(datascan_reference("data:application/x-very-long-type;"
					"darkroom-blob="
					"0123456789abcdefghjkmnpqrs,",
					id, media, sizeof(media)));
	assert_false(datascan_reference(
		"http://x/;darkroom-blob=0123456789abcdefghjkmnpqrs,", id,
		media, sizeof(media)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_takes_outputs),
		cmocka_unit_test(test_leaves_others),
		cmocka_unit_test(test_any_bytes),
		cmocka_unit_test(test_reference),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
