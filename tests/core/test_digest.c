/*
 * test_digest.c - SHA-256 and hex spelling against FIPS 180-2 vectors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"

static void test_sha256_hex_vectors(void **state)
{
	char hex[DR_SHA256_HEX_LEN + 1];

	(void)state;
	digest_sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
				 "b00361a396177a9cb410ff61f20015ad");
	digest_sha256_hex("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb924"
				 "27ae41e4649b934ca495991b7852b855");
}

static void test_sha256_raw_matches_hex(void **state)
{
	unsigned char d[DR_SHA256_LEN];
	char a[DR_SHA256_HEX_LEN + 1], b[DR_SHA256_HEX_LEN + 1];

	(void)state;
	digest_sha256("darkroom", 8, d);
	digest_hex(d, sizeof(d), a);
	digest_sha256_hex("darkroom", 8, b);
	assert_string_equal(a, b);
}

static void test_hex_prefix(void **state)
{
	const unsigned char in[] = {0x00, 0x0f, 0xa5, 0xff};
	char out[9];

	(void)state;
	memset(out, 'x', sizeof(out));
	digest_hex(in, sizeof(in), out);
	assert_string_equal(out, "000fa5ff");
	digest_hex(in, 0, out);
	assert_string_equal(out, "");
}

/* A file of `n` bytes "abc" repeated, unlinked; its descriptor. */
static int abc_file(size_t n)
{
	FILE *f = tmpfile();
	int fd;

	assert_non_null(f);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(fputc("abc"[i % 3], f), "abc"[i % 3]);
	assert_int_equal(fflush(f), 0);
	fd = dup(fileno(f));
	fclose(f);
	assert_true(fd >= 0);
	return fd;
}

static void test_sha256_fd_matches_memory(void **state)
{
	/* Over one 64 KiB read, and not a multiple of it. */
	size_t n = 65536 * 2 + 7;
	char *mem = malloc(n);
	char a[DR_SHA256_HEX_LEN + 1], b[DR_SHA256_HEX_LEN + 1];
	int fd = abc_file(n);
	dr_error err;

	(void)state;
	assert_non_null(mem);
	for (size_t i = 0; i < n; i++)
		mem[i] = "abc"[i % 3];
	assert_int_equal(digest_sha256_fd_hex(fd, n, a, &err), DR_OK);
	digest_sha256_hex(mem, n, b);
	assert_string_equal(a, b);
	/* Only the first `size` bytes count, and the offset stays. */
	assert_int_equal(digest_sha256_fd_hex(fd, 3, a, &err), DR_OK);
	assert_string_equal(a, "ba7816bf8f01cfea414140de5dae2223"
			       "b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)n);
	assert_int_equal(digest_sha256_fd_hex(fd, 0, a, &err), DR_OK);
	assert_string_equal(a, "e3b0c44298fc1c149afbf4c8996fb924"
			       "27ae41e4649b934ca495991b7852b855");
	close(fd);
	free(mem);
}

static void test_sha256_fd_short_or_bad(void **state)
{
	char hex[DR_SHA256_HEX_LEN + 1];
	int fd = abc_file(10);
	dr_error err;

	(void)state;
	dr_error_clear(&err);
	assert_int_equal(digest_sha256_fd_hex(fd, 11, hex, &err), DR_ERR_IO);
	assert_string_equal(err.code, "io_error");
	close(fd);
	dr_error_clear(&err);
	assert_int_equal(digest_sha256_fd_hex(fd, 1, hex, &err), DR_ERR_IO);
	assert_string_equal(err.code, "io_error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_hex_vectors),
		cmocka_unit_test(test_sha256_raw_matches_hex),
		cmocka_unit_test(test_hex_prefix),
		cmocka_unit_test(test_sha256_fd_matches_memory),
		cmocka_unit_test(test_sha256_fd_short_or_bad),
	};
	return cmocka_run_group_tests_name("digest", tests, NULL, NULL);
}
