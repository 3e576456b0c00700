/*
 * digest.c - SHA-256 and hex spelling (see digest.h).
 */
#include "digest.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>
#include <unistd.h>

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

dr_status digest_sha256_fd_hex(int fd, uint64_t size,
			       char out[DR_SHA256_HEX_LEN + 1], dr_error *err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char buf[65536], d[DR_SHA256_LEN];
	unsigned int n = 0;
	uint64_t off = 0;

	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		dr_die("SHA-256 failed");
	while (off < size) {
		size_t want = size - off < sizeof(buf) ? (size_t)(size - off)
						       : sizeof(buf);
		ssize_t r = pread(fd, buf, want, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : 0;

			EVP_MD_CTX_free(md);
			return dr_fail(err, DR_ERR_IO, "io_error",
				       "reading the file to hash failed: %s",
				       e ? strerror(e) : "it is shorter");
		}
		if (!EVP_DigestUpdate(md, buf, (size_t)r))
			dr_die("SHA-256 failed");
		off += (uint64_t)r;
	}
	if (!EVP_DigestFinal_ex(md, d, &n) || n != DR_SHA256_LEN)
		dr_die("SHA-256 failed");
	EVP_MD_CTX_free(md);
	digest_hex(d, sizeof(d), out);
	return DR_OK;
}
