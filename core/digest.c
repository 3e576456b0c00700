/*
 * digest.c - SHA-256 and hex spelling (see digest.h).
 */
#include "digest.h"

#include <openssl/evp.h>

#include "error.h"

void digest_sha256(const void *data, size_t len,
		   unsigned char out[DR_SHA256_LEN])
{
	unsigned int n = 0;

	if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) ||
	    n != DR_SHA256_LEN)
		dr_die("SHA-256 failed");
}

void digest_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void digest_sha256_hex(const void *data, size_t len,
		       char out[DR_SHA256_HEX_LEN + 1])
{
	unsigned char d[DR_SHA256_LEN];

	digest_sha256(data, len, d);
	digest_hex(d, sizeof(d), out);
}
