/*
 * test_ids.c - job ids: format, known encodings, order, uniqueness.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"

static void test_known_encoding(void **state)
{
	unsigned char zero[10] = {0};
	unsigned char ones[10];
	char id[DR_JOB_ID_LEN + 1];

	(void)state;
	ids_format_job_id(id, 0, zero);
	assert_string_equal(id, "j_00000000000000000000000000");
	memset(ones, 0xff, sizeof(ones));
	ids_format_job_id(id, 0xffffffffffffULL, ones);
	assert_string_equal(id, "j_7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
	/* The ULID spec's example time 1469918176385 encodes as 01ARYZ6S41. */
	ids_format_job_id(id, 1469918176385ULL, zero);
	assert_memory_equal(id + 2, "01ARYZ6S41", 10);
}

static void test_shape(void **state)
{
	char id[DR_JOB_ID_LEN + 1];

	(void)state;
	assert_int_equal(ids_new_job_id(id), DR_OK);
	assert_int_equal(strlen(id), DR_JOB_ID_LEN);
	assert_true(ids_is_job_id(id));
	assert_false(ids_is_job_id("j_0000000000000000000000000"));
	assert_false(ids_is_job_id("j_000000000000000000000000000"));
	assert_false(ids_is_job_id("x_00000000000000000000000000"));
	assert_false(ids_is_job_id("j_0000000000000000000000000I"));
	assert_false(ids_is_job_id("j_0000000000000000000000000u"));
	assert_false(ids_is_job_id("j_80000000000000000000000000"));
	assert_false(ids_is_job_id(""));
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_sorted_and_unique(void **state)
{
	enum { N = 20000 };
	static char ids[N][DR_JOB_ID_LEN + 1];
	static char *sorted[N];

	(void)state;
	for (int i = 0; i < N; i++) {
		assert_int_equal(ids_new_job_id(ids[i]), DR_OK);
		sorted[i] = ids[i];
		if (i)
			assert_true(strcmp(ids[i - 1], ids[i]) < 0);
	}
	qsort(sorted, N, sizeof(sorted[0]), cmp);
	for (int i = 1; i < N; i++)
		assert_true(strcmp(sorted[i - 1], sorted[i]) != 0);
}

static void test_random_part_differs(void **state)
{
	char a[DR_JOB_ID_LEN + 1], b[DR_JOB_ID_LEN + 1];
	unsigned char r1[10], r2[10];

	(void)state;
	assert_int_equal(ids_random(r1, sizeof(r1)), DR_OK);
	assert_int_equal(ids_random(r2, sizeof(r2)), DR_OK);
	assert_memory_not_equal(r1, r2, sizeof(r1));
	ids_format_job_id(a, 1000, r1);
	ids_format_job_id(b, 1000, r2);
	/* Same millisecond prefix, different random tails. */
	assert_memory_equal(a, b, 2 + 10);
	assert_string_not_equal(a, b);
}

/* getrandom() hands out at most 32 MiB - 1 per call (and may stop
 * early on a signal): a bigger buffer is filled to its last byte. */
static void test_random_fills_large_buffers(void **state)
{
	size_t len = (size_t)40 << 20;
	unsigned char *buf = calloc(1, len);
	unsigned char zero[64] = {0};

	(void)state;
	assert_non_null(buf);
	assert_int_equal(ids_random(buf, len), DR_OK);
	assert_memory_not_equal(buf + len - sizeof(zero), zero, sizeof(zero));
	free(buf);
	assert_int_equal(ids_random(NULL, 0), DR_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_encoding),
		cmocka_unit_test(test_shape),
		cmocka_unit_test(test_sorted_and_unique),
		cmocka_unit_test(test_random_part_differs),
		cmocka_unit_test(test_random_fills_large_buffers),
	};
	return cmocka_run_group_tests_name("ids", tests, NULL, NULL);
}
