/*
 * test_files.c - uploaded files without a database: the signed content
 * URLs (key from [files] url_secret or the first API key, expiry,
 * constant-time check) and the type check of an upload's bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files.h"

#define ID "f_01JD0000000000000000000000"

static void test_url_signature(void **unused)
{
	dr_config cfg;
	char *keys[] = { "drk_test_0123456789abcdef" };
	char sig[DR_SHA256_HEX_LEN + 1], sig2[DR_SHA256_HEX_LEN + 1];
	char exp[32], bad[DR_SHA256_HEX_LEN + 1];
	(void)unused;

	memset(&cfg, 0, sizeof(cfg));
	/* no secret and no API key: nothing to sign with */
	assert_int_equal(files_url_sig(&cfg, ID, 2000000000, sig), -1);
	assert_int_equal(files_url_check(&cfg, ID, "2000000000", sig, 1e9), 0);

	cfg.server.api_keys = keys;
	cfg.server.n_api_keys = 1;
	assert_int_equal(files_url_sig(&cfg, ID, 2000000000, sig), 0);
	assert_int_equal(strlen(sig), DR_SHA256_HEX_LEN);
	assert_int_equal(files_url_check(&cfg, ID, "2000000000", sig, 1e9), 1);
	/* expired: exp before now */
	assert_int_equal(
		files_url_check(&cfg, ID, "2000000000", sig, 2000000001.0), 0);
	/* another expiry, another file, a changed signature */
	assert_int_equal(files_url_check(&cfg, ID, "2000000001", sig, 1e9), 0);
	assert_int_equal(files_url_check(&cfg, "f_01JD0000000000000000000001",
					 "2000000000", sig, 1e9),
			 0);
	memcpy(bad, sig, sizeof(bad));
	bad[10] = bad[10] == 'a' ? 'b' : 'a';
	assert_int_equal(files_url_check(&cfg, ID, "2000000000", bad, 1e9), 0);
	/* malformed expiries and signatures */
	assert_int_equal(files_url_check(&cfg, ID, "", sig, 1e9), 0);
	assert_int_equal(files_url_check(&cfg, ID, "-2000000000", sig, 1e9), 0);
	assert_int_equal(files_url_check(&cfg, ID, "2000000000x", sig, 1e9), 0);
	assert_int_equal(files_url_check(&cfg, ID, NULL, sig, 1e9), 0);
	assert_int_equal(files_url_check(&cfg, ID, "2000000000", "abc", 1e9),
			 0);
	assert_int_equal(files_url_check(&cfg, ID, "2000000000", NULL, 1e9), 0);

	/* url_secret replaces the key derived from the API key */
	cfg.files.url_secret = "a secret of sixteen+ bytes";
	assert_int_equal(files_url_sig(&cfg, ID, 2000000000, sig2), 0);
	assert_string_not_equal(sig, sig2);
	assert_int_equal(files_url_check(&cfg, ID, "2000000000", sig, 1e9), 0);
	snprintf(exp, sizeof(exp), "%d", 2000000000);
	assert_int_equal(files_url_check(&cfg, ID, exp, sig2, 1e9), 1);
}

static dr_status check(const void *bytes, size_t n, const char *declared,
		       const char **mime)
{
	dr_upload up;
	dr_error err;

	memset(&up, 0, sizeof(up));
	up.fd = -1;
	up.size = n;
	up.head_len = n < DR_FILE_HEAD ? n : DR_FILE_HEAD;
	memcpy(up.head, bytes, up.head_len);
	*mime = NULL;
	return files_check_type(&up, declared, mime, &err);
}

static void test_check_type(void **unused)
{
	static const unsigned char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
	static const unsigned char jpeg[] = "\xff\xd8\xff\xe0\0\x10JFIF\0";
	static const unsigned char zip[] = "PK\x03\x04\x14\0\0\0";
	const char *mime;
	(void)unused;

	assert_int_equal(check(png, sizeof(png), "image/png", &mime), DR_OK);
	assert_string_equal(mime, "image/png");
	assert_int_equal(check(png, sizeof(png), NULL, &mime), DR_OK);
	assert_int_equal(check(png, sizeof(png), "", &mime), DR_OK);
	assert_int_equal(
		check(png, sizeof(png), "application/octet-stream", &mime),
		DR_OK);
	assert_int_equal(check(png, sizeof(png), " IMAGE/PNG; q=1", &mime),
			 DR_OK);
	assert_int_equal(check(png, sizeof(png), "image/jpeg", &mime),
			 DR_ERR_INVALID);
	assert_int_equal(check(jpeg, sizeof(jpeg), "image/jpg", &mime), DR_OK);
	assert_string_equal(mime, "image/jpeg");
	assert_int_equal(check(zip, sizeof(zip), "application/zip", &mime),
			 DR_OK);
	assert_int_equal(
		check(zip, sizeof(zip), "application/x-zip-compressed", &mime),
		DR_OK);
	assert_int_equal(check(zip, sizeof(zip), "image/png", &mime),
			 DR_ERR_INVALID);
	assert_int_equal(check("<svg xmlns='http://www.w3.org/2000/svg'/>", 41,
			       "image/svg+xml", &mime),
			 DR_ERR_UNSUPPORTED);
	assert_int_equal(check("hello", 5, "text/plain", &mime),
			 DR_ERR_UNSUPPORTED);
	assert_int_equal(check("", 0, "image/png", &mime), DR_ERR_UNSUPPORTED);
}

/* The spool: every byte written reaches the file and the hash. */
static void test_spool(void **unused)
{
	dr_upload up;
	dr_error err;
	char buf[16];
	(void)unused;

	assert_int_equal(files_spool_open(&up, NULL, &err), DR_OK);
	assert_int_equal(files_spool_write(&up, "ab", 2, &err), DR_OK);
	assert_int_equal(files_spool_write(&up, "c", 1, &err), DR_OK);
	files_spool_finish(&up);
	assert_int_equal(up.size, 3);
	assert_string_equal(up.sha256, "ba7816bf8f01cfea414140de5dae2223"
				       "b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(pread(up.fd, buf, sizeof(buf), 0), 3);
	assert_memory_equal(buf, "abc", 3);
	assert_memory_equal(up.head, "abc", 3);
	files_spool_close(&up);
	assert_int_equal(up.fd, -1);
	files_spool_close(&up); /* twice: a no-op */
	assert_int_equal(files_spool_open(&up, "/nonexistent/dir", &err),
			 DR_ERR_IO);
	files_spool_close(&up);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_signature),
		cmocka_unit_test(test_check_type),
		cmocka_unit_test(test_spool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
