/*
 * test_json.c - parsing untrusted JSON: limits, UTF-8, trailing data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

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
		cmocka_unit_test(test_append_and_get),
	};
	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
