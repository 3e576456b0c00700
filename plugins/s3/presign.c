/*
 * presign.c - presigned GET URLs of the `s3` sink: AWS Signature V4 with
 * query-string authentication, so that whoever holds the URL (a model
 * provider fetching an uploaded input file) can read one private object
 * until it expires, without credentials.
 *
 * libcurl signs request headers only (CURLOPT_AWS_SIGV4), so the query
 * form is computed here with libcrypto, step by step as AWS documents it
 * ("Authenticating Requests: Using Query Parameters"): the canonical
 * request (method, the URL's already encoded path, the X-Amz-* query
 * parameters in order, the host header, UNSIGNED-PAYLOAD), the string to
 * sign, the signing key derived from the secret, date, region and
 * service, and the signature. tests/plugins/test_s3.c checks it against
 * AWS's published example.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "s3.h"

/* Percent-encode `in` as SigV4 wants a query value: unreserved
 * characters stay, everything else (slashes too) is %XX. 0 or -1. */
static int encode_value(const char *in, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		int keep = (*p >= 'A' && *p <= 'Z') ||
			   (*p >= 'a' && *p <= 'z') ||
			   (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
			   *p == '.' || *p == '~';

		if (o + (keep ? 1 : 3) >= outsz)
			return -1;
		if (keep) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return 0;
}

static void hmac256(const void *key, size_t keylen, const char *msg,
		    unsigned char out[32])
{
	unsigned int len = 0;

	if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg,
		  strlen(msg), out, &len) ||
	    len != 32) {
		fputs("darkroom s3: HMAC-SHA256 failed\n", stderr);
		abort();
	}
}

int s3_presign_v4(const char *url, const char *region, const char *access_key,
		  const char *secret_key, time_t now, long expires, char *out,
		  size_t outsz)
{
	char amz_date[17], date[9], scope[128], cred[256], cred_enc[384];
	char host[256], query[1024], canon[4096], sts[512], hash[65];
	char ksecret[256];
	unsigned char k[32], sig[32];
	const char *h, *path;
	struct tm tm;
	size_t hlen;
	int n;

	h = strstr(url, "://");
	if (!h || expires < 1 || expires > 604800)
		return -1;
	h += 3;
	path = strchr(h, '/');
	if (!path)
		return -1;
	hlen = (size_t)(path - h);
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (!gmtime_r(&now, &tm) ||
	    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm) == 0 ||
	    strftime(date, sizeof(date), "%Y%m%d", &tm) == 0)
		return -1;
	n = snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", date,
		     region);
	if (n < 0 || (size_t)n >= sizeof(scope))
		return -1;
	n = snprintf(cred, sizeof(cred), "%s/%s", access_key, scope);
	if (n < 0 || (size_t)n >= sizeof(cred) ||
	    encode_value(cred, cred_enc, sizeof(cred_enc)) != 0)
		return -1;
	/* The parameters in code-point order, as the canonical query. */
	n = snprintf(query, sizeof(query),
		     "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s"
		     "&X-Amz-Date=%s&X-Amz-Expires=%ld"
		     "&X-Amz-SignedHeaders=host",
		     cred_enc, amz_date, expires);
	if (n < 0 || (size_t)n >= sizeof(query))
		return -1;
	n = snprintf(canon, sizeof(canon),
		     "GET\n%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD", path,
		     query, host);
	if (n < 0 || (size_t)n >= sizeof(canon))
		return -1;
	s3_sha256_hex(canon, (size_t)n, hash);
	n = snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date,
		     scope, hash);
	if (n < 0 || (size_t)n >= sizeof(sts))
		return -1;
	n = snprintf(ksecret, sizeof(ksecret), "AWS4%s", secret_key);
	if (n < 0 || (size_t)n >= sizeof(ksecret))
		return -1;
	hmac256(ksecret, (size_t)n, date, k);
	OPENSSL_cleanse(ksecret, sizeof(ksecret));
	hmac256(k, 32, region, k);
	hmac256(k, 32, "s3", k);
	hmac256(k, 32, "aws4_request", k);
	hmac256(k, 32, sts, sig);
	OPENSSL_cleanse(k, sizeof(k));
	for (int i = 0; i < 32; i++)
		snprintf(hash + 2 * i, 3, "%02x", sig[i]);
	n = snprintf(out, outsz, "%s?%s&X-Amz-Signature=%s", url, query, hash);
	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}
