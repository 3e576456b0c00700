/*
 * test_buf.c - dr_buf: content, the hard limit, and the memory it takes.
 *
 * The limit names the most bytes of content a buffer may hold; the
 * memory behind it is at most that plus the NUL terminator, whatever the
 * growth pattern (one byte at a time, large appends, printf), so a
 * buffer limited to 16 MiB never allocates 32 MiB.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Content fits; the limit is exact; a refused append changes nothing. */
static void test_limit_exact(void **state)
{
	dr_buf b;

	(void)state;
	dr_buf_init(&b, 10);
	assert_int_equal(dr_buf_puts(&b, "0123456789"), DR_OK);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "0123456789");
	assert_int_equal(dr_buf_append(&b, "x", 1), DR_ERR_TOO_LARGE);
	assert_int_equal(dr_buf_printf(&b, "%d", 7), DR_ERR_TOO_LARGE);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "0123456789");
	dr_buf_free(&b);
}

/* Growth never allocates more than limit + 1 (the NUL), at the edge of
 * each doubling and just past it. */
static void test_capacity_bound(void **state)
{
	static const size_t limits[] = {1,    255,  256,  257,  300,  511,
					512,  513,  1000, 4095, 4096, 4097,
					5000, 65536, 100000};
	char chunk[777];

	(void)state;
	memset(chunk, 'a', sizeof(chunk));
	for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
		size_t limit = limits[k];
		dr_buf b;

		/* One byte at a time up to the limit. */
		dr_buf_init(&b, limit);
		for (size_t i = 0; i < limit; i++) {
			assert_int_equal(dr_buf_append(&b, "a", 1), DR_OK);
			assert_true(b.cap <= limit + 1);
		}
		assert_int_equal(b.len, limit);
		assert_int_equal(dr_buf_append(&b, "a", 1), DR_ERR_TOO_LARGE);
		assert_true(b.cap <= limit + 1);
		assert_int_equal(b.data[limit], '\0');
		dr_buf_free(&b);

		/* Large appends. */
		dr_buf_init(&b, limit);
		while (b.len < limit) {
			size_t n = limit - b.len < sizeof(chunk)
					   ? limit - b.len
					   : sizeof(chunk);

			assert_int_equal(dr_buf_append(&b, chunk, n), DR_OK);
			assert_true(b.cap <= limit + 1);
		}
		assert_int_equal(b.len, limit);
		dr_buf_free(&b);

		/* printf to just under the limit, then to it. */
		dr_buf_init(&b, limit);
		if (limit > 1)
			assert_int_equal(dr_buf_printf(&b, "%0*d",
						       (int)(limit - 1), 0),
					 DR_OK);
		assert_true(b.cap <= limit + 1);
		assert_int_equal(dr_buf_printf(&b, "%s", limit > 1 ? "1" : "z"),
				 DR_OK);
		assert_int_equal(b.len, limit);
		assert_true(b.cap <= limit + 1);
		dr_buf_free(&b);
	}
}

/* The case that matters in production: a 16 MiB response buffer filled
 * to its limit stays within 16 MiB + 1, not 32 MiB. */
static void test_large_limit(void **state)
{
	const size_t limit = (size_t)16 << 20;
	char *chunk = malloc(1u << 20);
	dr_buf b;

	(void)state;
	assert_non_null(chunk);
	memset(chunk, 'z', 1u << 20);
	dr_buf_init(&b, limit);
	/* 1 byte first, so later appends cross each power of two. */
	assert_int_equal(dr_buf_append(&b, "z", 1), DR_OK);
	while (b.len + (1u << 20) <= limit) {
		assert_int_equal(dr_buf_append(&b, chunk, 1u << 20), DR_OK);
		assert_true(b.cap <= limit + 1);
	}
	assert_int_equal(dr_buf_append(&b, chunk, limit - b.len), DR_OK);
	assert_int_equal(b.len, limit);
	assert_true(b.cap <= limit + 1);
	assert_int_equal(dr_buf_append(&b, "z", 1), DR_ERR_TOO_LARGE);
	dr_buf_free(&b);
	free(chunk);
}

/* A limit of SIZE_MAX (no practical limit) neither overflows the size
 * arithmetic nor the growth. */
static void test_unbounded_limit(void **state)
{
	dr_buf b;

	(void)state;
	dr_buf_init(&b, SIZE_MAX);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(dr_buf_puts(&b, "0123456789"), DR_OK);
	assert_int_equal(b.len, 10000);
	assert_true(b.cap >= 10001);
	assert_int_equal(dr_buf_append(&b, "x", SIZE_MAX), DR_ERR_TOO_LARGE);
	assert_int_equal(b.len, 10000);
	dr_buf_free(&b);
}

/* json_string rolls back on overflow; reset keeps memory; steal empties. */
static void test_json_reset_steal(void **state)
{
	dr_buf b;
	char *s;

	(void)state;
	dr_buf_init(&b, 8);
	assert_int_equal(dr_buf_json_string(&b, "a\"b"), DR_OK);
	assert_string_equal(b.data, "\"a\\\"b\"");
	assert_int_equal(dr_buf_json_string(&b, "long"), DR_ERR_TOO_LARGE);
	assert_string_equal(b.data, "\"a\\\"b\"");
	dr_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	assert_int_equal(dr_buf_puts(&b, "xy"), DR_OK);
	s = dr_buf_steal(&b);
	assert_string_equal(s, "xy");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	free(s);
	s = dr_buf_steal(&b);
	assert_string_equal(s, "");
	free(s);
}

/* JSON strings are always well-formed UTF-8: bytes that start no valid
 * sequence (stray continuation bytes, overlong forms, surrogates, cut
 * sequences, > U+10FFFF) become \ufffd; valid ones pass as they are. */
static void test_json_string_utf8(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
		 "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""},
		{"a\xff" "b", "\"a\\ufffd" "b\""},
		{"\x80", "\"\\ufffd\""},
		{"\xc0\xaf", "\"\\ufffd\\ufffd\""},             /* overlong '/' */
		{"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""}, /* surrogate */
		{"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
		{"x\xe2\x82", "\"x\\ufffd\\ufffd\""},             /* cut short */
		{"\xe2\x82\xac\xe2", "\"\xe2\x82\xac\\ufffd\""},
	};
	dr_buf b;

	(void)state;
	dr_buf_init(&b, 1024);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		dr_buf_reset(&b);
		assert_int_equal(dr_buf_json_string(&b, cases[i].in), DR_OK);
		assert_string_equal(b.data, cases[i].out);
	}
	dr_buf_free(&b);
}

/* dr_buf_utf8: well-formed text cut at a character count. */
static void test_utf8_cut(void **state)
{
	dr_buf b;

	(void)state;
	dr_buf_init(&b, 64);
	assert_int_equal(dr_buf_utf8(&b, "\xc3\xa9\xc3\xa8\xc3\xaa\xc3\xab", 3),
			 DR_OK);
	assert_string_equal(b.data, "\xc3\xa9\xc3\xa8\xc3\xaa");
	dr_buf_reset(&b);
	assert_int_equal(dr_buf_utf8(&b, "ab\xff\xc3", 10), DR_OK);
	assert_string_equal(b.data, "ab\xef\xbf\xbd\xef\xbf\xbd");
	dr_buf_reset(&b);
	assert_int_equal(dr_buf_utf8(&b, "abc", 0), DR_OK);
	assert_string_equal(b.data, "");
	dr_buf_reset(&b);
	assert_int_equal(dr_buf_utf8(&b, "xyz", 100), DR_OK);
	assert_string_equal(b.data, "xyz");
	/* Over the buffer's limit: unchanged. */
	dr_buf_free(&b);
	dr_buf_init(&b, 4);
	assert_int_equal(dr_buf_puts(&b, "ab"), DR_OK);
	assert_int_equal(dr_buf_utf8(&b, "\xe2\x82\xac", 5), DR_ERR_TOO_LARGE);
	assert_string_equal(b.data, "ab");
	dr_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit_exact),
		cmocka_unit_test(test_capacity_bound),
		cmocka_unit_test(test_large_limit),
		cmocka_unit_test(test_unbounded_limit),
		cmocka_unit_test(test_json_reset_steal),
		cmocka_unit_test(test_json_string_utf8),
		cmocka_unit_test(test_utf8_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
