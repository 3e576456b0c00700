/*
 * test_error.c - dr_fail() and dr_vfail(): what they leave in a dr_error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "error.h"

static dr_status vfail_via(dr_error *err, dr_status st, const char *code,
			   const char *fmt, ...) DR_PRINTF(4, 5);

static dr_status vfail_via(dr_error *err, dr_status st, const char *code,
			   const char *fmt, ...)
{
	va_list ap;
	dr_status r;

	va_start(ap, fmt);
	r = dr_vfail(err, st, code, fmt, ap);
	va_end(ap);
	return r;
}

static void test_fail_fills_and_resets(void **state)
{
	dr_error err;

	(void)state;
	memset(&err, 0, sizeof(err));
	err.retryable = 1;
	err.retry_after = 5;
	assert_int_equal(dr_fail(&err, DR_ERR_IO, "io_error", "%s %d", "x", 7),
			 DR_ERR_IO);
	assert_int_equal(err.status, DR_ERR_IO);
	assert_int_equal(err.retryable, 0);
	assert_true(err.retry_after == 0);
	assert_string_equal(err.code, "io_error");
	assert_string_equal(err.message, "x 7");
	/* A NULL code leaves an empty one; NULL err only returns. */
	assert_int_equal(vfail_via(&err, DR_ERR_INVALID, NULL, "n=%d", 3),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "");
	assert_string_equal(err.message, "n=3");
	assert_int_equal(dr_fail(NULL, DR_ERR_CONFIG, "c", "m"), DR_ERR_CONFIG);
	assert_int_equal(vfail_via(NULL, DR_ERR_CONFIG, "c", "m"),
			 DR_ERR_CONFIG);
}

static void test_fail_truncates(void **state)
{
	char long_text[2000];
	char long_code[200];
	dr_error err;

	(void)state;
	memset(long_text, 'a', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	memset(long_code, 'c', sizeof(long_code) - 1);
	long_code[sizeof(long_code) - 1] = '\0';
	vfail_via(&err, DR_ERR_INTERNAL, long_code, "%s", long_text);
	assert_int_equal(strlen(err.message), sizeof(err.message) - 1);
	assert_int_equal(strlen(err.code), sizeof(err.code) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fail_fills_and_resets),
		cmocka_unit_test(test_fail_truncates),
	};
	return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
