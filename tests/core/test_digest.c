/*
 * test_digest.c - SHA-256 and hex spelling against FIPS 180-2 vectors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_hex_vectors),
		cmocka_unit_test(test_sha256_raw_matches_hex),
		cmocka_unit_test(test_hex_prefix),
	};
	return cmocka_run_group_tests_name("digest", tests, NULL, NULL);
}
