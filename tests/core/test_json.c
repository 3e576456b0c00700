/*
 * test_json.c - parsing untrusted JSON: limits, UTF-8, trailing data,
 * duplicate member names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonutil.h"

static dr_status parse(const char *s, int depth, const char **code)
{
	static dr_error err; /* *code points into it */
	json_object *obj = NULL;
	dr_status st;

	dr_error_clear(&err);
	st = json_parse_limited(s, strlen(s), depth, &obj, &err);
	*code = st == DR_OK ? "" : err.code;
	json_object_put(obj);
	return st;
}

static void test_valid(void **state)
{
	const char *code;

	(void)state;
	assert_int_equal(parse("{\"a\": [1, 2.5, \"x\", null, true]}", 8,
			       &code),
			 DR_OK);
	assert_int_equal(parse("  {}  \n", 8, &code), DR_OK);
	assert_int_equal(parse("42", 8, &code), DR_OK);
	assert_int_equal(parse("-1.5e3", 8, &code), DR_OK);
	assert_int_equal(parse("\"x\"", 8, &code), DR_OK);
	assert_int_equal(parse("{\"s\": \"\\u00e9\\ud83d\\ude00\"}", 8, &code),
			 DR_OK);
	assert_int_equal(parse("{\"s\": \"caf\xc3\xa9\"}", 8, &code), DR_OK);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"{",          "{\"a\":}",   "{\"a\" 1}", "[1,]",
		"{'a': 1}",   "{\"a\":1}x", "{} {}",     "nul",
		"{\"a\":NaN}", "\"abc",
	};
	const char *code;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i], 8, &code), DR_ERR_INVALID);
		assert_string_equal(code, "malformed_json");
	}
	assert_int_equal(parse("", 8, &code), DR_ERR_INVALID);
	assert_string_equal(code, "empty_body");
}

static void test_invalid_utf8(void **state)
{
	static const char *const bad[] = {
		"{\"s\": \"\xff\"}",         /* never valid */
		"{\"s\": \"\xc3\"}",         /* truncated sequence */
		"{\"s\": \"\xc0\xaf\"}",     /* overlong '/' */
		"{\"s\": \"\xed\xa0\x80\"}", /* UTF-16 surrogate */
	};
	const char *code;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i], 8, &code), DR_ERR_INVALID);
		assert_string_equal(code, "invalid_utf8");
	}
}

static void test_depth(void **state)
{
	char deep[2100];
	const char *code;
	size_t n = 0;

	(void)state;
	for (int i = 0; i < 1000; i++)
		deep[n++] = '[';
	for (int i = 0; i < 1000; i++)
		deep[n++] = ']';
	deep[n] = '\0';
	assert_int_equal(parse(deep, 32, &code), DR_ERR_INVALID);
	assert_string_equal(code, "too_deep");
	assert_int_equal(parse("[[[[1]]]]", 4, &code), DR_OK);
	assert_int_equal(parse("[[[[[1]]]]]", 4, &code), DR_ERR_INVALID);
	assert_string_equal(code, "too_deep");
}

/* The error of parsing `s` (which must fail), for its code and message. */
static dr_error parse_error(const char *s)
{
	json_object *obj = NULL;
	dr_error err;

	dr_error_clear(&err);
	assert_int_equal(json_parse_limited(s, strlen(s), 32, &obj, &err),
			 DR_ERR_INVALID);
	assert_null(obj);
	return err;
}

static void expect_duplicate(const char *s, const char *detail)
{
	dr_error err = parse_error(s);

	assert_string_equal(err.code, "duplicate_key");
	if (!strstr(err.message, detail))
		fail_msg("%s: message \"%s\" lacks \"%s\"", s, err.message,
			 detail);
}

static void test_duplicate_keys(void **state)
{
	(void)state;
	/* Every level: top, input, metadata, nested objects and objects
	 * inside arrays. The detail names the key and its JSON pointer. */
	expect_duplicate("{\"model\":\"a/b\",\"model\":\"c/d\"}",
			 "duplicate key \"model\" at /model (byte 15)");
	expect_duplicate("{\"input\":{\"prompt\":\"x\",\"seed\":1,"
			 "\"prompt\":\"y\"}}",
			 "duplicate key \"prompt\" at /input/prompt");
	expect_duplicate("{\"metadata\":{\"a\":\"1\",\"a\":\"1\"}}",
			 "\"a\" at /metadata/a");
	expect_duplicate("{\"input\":{\"x\":{\"y\":{\"z\":1,\"z\":2}}}}",
			 "at /input/x/y/z");
	expect_duplicate("{\"input\":{\"list\":[{\"k\":1},[0,{\"k\":1,"
			 "\"k\":2}]]}}",
			 "at /input/list/1/1/k");
	/* Names are compared as json-c stores them: escapes decoded, cut at
	 * a NUL. */
	expect_duplicate("{\"a\":1,\"\\u0061\":2}", "\"a\" at /a");
	expect_duplicate("{\"\xf0\x9f\x98\x80\":1,\"\\ud83d\\ude00\":2}",
			 "at /\xf0\x9f\x98\x80");
	expect_duplicate("{\"a\\/b\":1,\"a/b\":2}", "at /a~1b");
	expect_duplicate("{\"a\":1,\"a\\u0000x\":2}", "\"a\" at /a");
	/* Pointer tokens escape '~' and '/'. */
	expect_duplicate("{\"a/b\":{\"~\":1,\"~\":2}}", "at /a~1b/~0");
	expect_duplicate("{\"\":1,\"\":2}", "duplicate key \"\" at / ");
	/* A long name is cut in the message, which stays short. */
	{
		char big[1200];
		dr_error err;

		snprintf(big, sizeof(big),
			 "{\"%0300d\":{\"%0300d\":1,\"%0300d\":2}}", 1, 2,
			 2);
		err = parse_error(big);
		assert_string_equal(err.code, "duplicate_key");
		assert_true(strlen(err.message) < 400);
		assert_non_null(strstr(err.message, "(byte "));
	}
}

static void test_distinct_keys(void **state)
{
	const char *code;

	(void)state;
	assert_int_equal(parse("{\"a\":1,\"b\":{\"a\":1},\"c\":[{\"a\":1},"
			       "{\"a\":1}]}",
			       8, &code),
			 DR_OK);
	assert_int_equal(parse("{\"a\":1,\"A\":1,\"a \":1,\"ab\":1,"
			       "\"z\\u0000b\":{\"b\":1}}",
			       8, &code),
			 DR_OK);
	/* Unicode names are not normalised: two spellings, two names. */
	assert_int_equal(parse("{\"\xc3\xa9\":1,\"e\\u0301\":1}", 8, &code),
			 DR_OK);
	/* The same name in sibling and nested objects is fine. */
	assert_int_equal(parse("[{\"k\":{\"k\":{\"k\":1}}},{\"k\":2}]", 8,
			       &code),
			 DR_OK);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An object of `n` distinct names (a duplicate of the first as the last
 * when `dup`), nested `depth` objects down. */
static char *many_keys(size_t n, int dup, int depth)
{
	size_t cap = n * 16 + 64, len = 0;
	char *s = malloc(cap);

	assert_non_null(s);
	for (int d = 0; d < depth; d++)
		len += (size_t)snprintf(s + len, cap - len, "{\"d%d\":", d);
	s[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s\"k%zu\":%zu",
					i ? "," : "", (i * 7919) % n, i);
	if (dup)
		len += (size_t)snprintf(s + len, cap - len, ",\"k0\":0");
	s[len++] = '}';
	for (int d = 0; d < depth; d++)
		s[len++] = '}';
	s[len] = '\0';
	return s;
}

static void test_many_keys(void **state)
{
	/* 100,000 names in one object (about the most a 1 MiB body holds):
	 * the duplicate check must not be quadratic. Measured at about
	 * 0.05 s here; a quadratic check takes minutes. */
	char *ok = many_keys(100000, 0, 2), *bad = many_keys(100000, 1, 2);
	const char *code;
	double t0, t1, t2;

	(void)state;
	t0 = now_s();
	assert_int_equal(parse(ok, 32, &code), DR_OK);
	t1 = now_s();
	assert_int_equal(parse(bad, 32, &code), DR_ERR_INVALID);
	assert_string_equal(code, "duplicate_key");
	t2 = now_s();
	printf("# 100000 keys: %.3f s distinct, %.3f s with a duplicate\n",
	       t1 - t0, t2 - t1);
	assert_true(t1 - t0 < 5.0);
	assert_true(t2 - t1 < 5.0);
	free(ok);
	free(bad);
}

static void test_append_and_get(void **state)
{
	json_object *obj = NULL;
	dr_error err;
	dr_buf b;
	const char *s = "{\"prompt\":\"a \\\"b\\\" / c\",\"n\":3}";

	(void)state;
	assert_int_equal(json_parse_limited(s, strlen(s), 8, &obj, &err), DR_OK);
	assert_string_equal(json_get_string(obj, "prompt"), "a \"b\" / c");
	assert_null(json_get_string(obj, "n"));
	assert_null(json_get_string(obj, "missing"));
	dr_buf_init(&b, 1024);
	assert_int_equal(json_append(&b, obj), DR_OK);
	assert_string_equal(b.data, s);
	dr_buf_free(&b);
	json_object_put(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_distinct_keys),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_append_and_get),
	};
	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
