/*
 * digest.c - the byte-level helpers of the `s3` sink: digests of a source,
 * encodings, and the little XML reading S3 error bodies need.
 *
 * Every PUT carries Content-MD5 (S3 refuses a body that does not match)
 * and, with SigV4, x-amz-content-sha256 (signed, so it also protects the
 * body). Both must be known before the first byte is sent, so a file
 * source is read once here to digest it and again while uploading.
 *
 * S3 error bodies are small XML documents whose <Code> and <Message>
 * elements are all the sink needs; a full XML parser would be a large
 * dependency for two fields, so s3_xml_text() finds the first element of a
 * name and decodes the predefined entities. It never has to be right
 * about arbitrary XML: a body it cannot read only makes the error less
 * specific.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "s3.h"

static const char hexdig[] = "0123456789abcdef";
static const char hexdig_upper[] = "0123456789ABCDEF";

static void to_hex(const unsigned char *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdig[in[i] >> 4];
		out[2 * i + 1] = hexdig[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Out of memory in OpenSSL: the house rule is to abort with a message. */
static EVP_MD_CTX *md_new(const EVP_MD *md)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!ctx || EVP_DigestInit_ex(ctx, md, NULL) != 1) {
		fputs("darkroom s3: cannot set up a digest\n", stderr);
		abort();
	}
	return ctx;
}

static void md_update(EVP_MD_CTX *ctx, const void *p, size_t n)
{
	if (ctx && n > 0 && EVP_DigestUpdate(ctx, p, n) != 1) {
		fputs("darkroom s3: digest update failed\n", stderr);
		abort();
	}
}

static unsigned md_final(EVP_MD_CTX *ctx, unsigned char *out)
{
	unsigned n = 0;

	if (EVP_DigestFinal_ex(ctx, out, &n) != 1) {
		fputs("darkroom s3: digest final failed\n", stderr);
		abort();
	}
	return n;
}

static void md5_to_b64(EVP_MD_CTX *ctx, char out[S3_MD5_B64_SIZE])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned n = md_final(ctx, d);

	/* 16 bytes encode to 24 characters and a NUL. */
	EVP_EncodeBlock((unsigned char *)out, d, (int)n);
}

static void sha256_to_hex(EVP_MD_CTX *ctx, char out[S3_SHA256_HEX_SIZE])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned n = md_final(ctx, d);

	to_hex(d, n, out);
}

int s3_digest_source(const dr_source *src, char *md5, char *sha256)
{
	EVP_MD_CTX *m = md_new(EVP_md5());
	EVP_MD_CTX *h = sha256 ? md_new(EVP_sha256()) : NULL;
	unsigned char *buf = NULL;
	uint64_t off = 0;
	int rc = -1, e = 0;

	if (src->data) {
		md_update(m, src->data, (size_t)src->size);
		md_update(h, src->data, (size_t)src->size);
		goto done;
	}
	buf = malloc(S3_IO_CHUNK);
	if (!buf) {
		e = ENOMEM;
		goto out;
	}
	while (off < src->size) {
		uint64_t left = src->size - off;
		size_t want = left < S3_IO_CHUNK ? (size_t)left : S3_IO_CHUNK;
		ssize_t n = pread(src->fd, buf, want, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e = errno;
			goto out;
		}
		if (n == 0) {
			e = EIO;
			goto out;
		}
		md_update(m, buf, (size_t)n);
		md_update(h, buf, (size_t)n);
		off += (uint64_t)n;
	}
done:
	md5_to_b64(m, md5);
	if (h)
		sha256_to_hex(h, sha256);
	rc = 0;
out:
	free(buf);
	EVP_MD_CTX_free(m);
	EVP_MD_CTX_free(h);
	errno = e;
	return rc;
}

void s3_sha256_hex(const void *data, size_t len, char out[S3_SHA256_HEX_SIZE])
{
	EVP_MD_CTX *h = md_new(EVP_sha256());

	md_update(h, data, len);
	sha256_to_hex(h, out);
	EVP_MD_CTX_free(h);
}

void s3_md5_b64(const void *data, size_t len, char out[S3_MD5_B64_SIZE])
{
	EVP_MD_CTX *m = md_new(EVP_md5());

	md_update(m, data, len);
	md5_to_b64(m, out);
	EVP_MD_CTX_free(m);
}

int s3_is_sha256_hex(const char *hex)
{
	size_t n = 0;

	if (!hex)
		return 0;
	for (; hex[n]; n++)
		if (!((hex[n] >= '0' && hex[n] <= '9') ||
		      (hex[n] >= 'a' && hex[n] <= 'f') ||
		      (hex[n] >= 'A' && hex[n] <= 'F')))
			return 0;
	return n == 64;
}

/* ------------------------------------------------------------------------
 * Encodings
 */

static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

int s3_encode_path(const char *in, char *buf, size_t bufsz, size_t *len)
{
	size_t n = *len;

	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (unreserved(*p) || *p == '/') {
			if (n + 1 >= bufsz)
				return -1;
			buf[n++] = (char)*p;
			continue;
		}
		if (n + 3 >= bufsz)
			return -1;
		buf[n++] = '%';
		buf[n++] = hexdig_upper[*p >> 4];
		buf[n++] = hexdig_upper[*p & 15];
	}
	if (n >= bufsz)
		return -1;
	buf[n] = '\0';
	*len = n;
	return 0;
}

int s3_meta_name_ok(const char *name)
{
	size_t n = 0;

	if (!name)
		return 0;
	for (; name[n]; n++)
		if (!((name[n] >= 'a' && name[n] <= 'z') ||
		      (name[n] >= '0' && name[n] <= '9') || name[n] == '-'))
			return 0;
	return n > 0 && n <= S3_META_NAME_MAX;
}

int s3_meta_encode(const char *in, char *out, size_t outsz)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t n = 0;

	for (size_t i = 0; p[i]; i++) {
		unsigned char c = p[i];
		int esc;

		if (c == ' ')
			/* SigV4 trims header values and squeezes runs of
			 * spaces before signing; a value that such
			 * normalisation changes is escaped instead. */
			esc = i == 0 || p[i + 1] == '\0' || p[i - 1] == ' ';
		else
			esc = c < 0x21 || c > 0x7e || c == '%';
		if (!esc) {
			if (n + 1 >= outsz)
				return -1;
			out[n++] = (char)c;
			continue;
		}
		if (n + 3 >= outsz)
			return -1;
		out[n++] = '%';
		out[n++] = hexdig_upper[c >> 4];
		out[n++] = hexdig_upper[c & 15];
	}
	if (n >= outsz)
		return -1;
	out[n] = '\0';
	return (int)n;
}

int s3_header_value_ok(const char *v)
{
	if (!v)
		return 0;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return 0;
	return 1;
}

/* ------------------------------------------------------------------------
 * XML
 */

/* The first occurrence of needle (nlen bytes) in hay[0..len), or NULL. */
static const char *find(const char *hay, size_t len, const char *needle,
			size_t nlen)
{
	if (nlen == 0 || len < nlen)
		return NULL;
	for (size_t i = 0; i + nlen <= len; i++)
		if (hay[i] == needle[0] && memcmp(hay + i, needle, nlen) == 0)
			return hay + i;
	return NULL;
}

int s3_xml_text(const char *body, size_t len, const char *tag, char *out,
		size_t outsz)
{
	static const struct {
		const char *name;
		char c;
	} entities[] = {
		{ "&amp;", '&' },  { "&lt;", '<' },    { "&gt;", '>' },
		{ "&quot;", '"' }, { "&apos;", '\'' },
	};
	char open[80], close[80];
	const char *start, *end;
	size_t n = 0, tlen = strlen(tag);

	if (!body || outsz == 0 || tlen == 0 || tlen > 64)
		return -1;
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	start = find(body, len, open, tlen + 2);
	if (!start)
		return -1;
	start += tlen + 2;
	end = find(start, len - (size_t)(start - body), close, tlen + 3);
	if (!end)
		return -1;
	for (const char *p = start; p < end && n + 1 < outsz;) {
		char c = *p;

		if (c == '&') {
			size_t k;

			for (k = 0; k < sizeof(entities) / sizeof(entities[0]);
			     k++) {
				size_t el = strlen(entities[k].name);

				if ((size_t)(end - p) >= el &&
				    memcmp(p, entities[k].name, el) == 0) {
					out[n++] = entities[k].c;
					p += el;
					break;
				}
			}
			if (k < sizeof(entities) / sizeof(entities[0]))
				continue;
		}
		if (c == '\n' || c == '\r' || c == '\t')
			c = ' ';
		if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
			out[n++] = c;
		p++;
	}
	out[n] = '\0';
	return 0;
}
