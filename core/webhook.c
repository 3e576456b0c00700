/*
 * webhook.c - Standard Webhooks signatures (see webhook.h).
 *
 * Everything that comes from the network is bounded before it is looked
 * at: the id (WH_ID_MAX), the timestamp (WH_TS_MAX), the signature header
 * (WH_SIG_HEADER_MAX) and the number of its entries examined
 * (WH_SIG_ENTRIES_MAX). Signatures are compared as decoded MACs with
 * CRYPTO_memcmp(), never as text, and base64 characters are decoded
 * without branches or table lookups on their value, because secrets go
 * through the same decoder (libsodium does the same). Error messages name
 * headers, lengths and secret positions, never a secret or a MAC.
 *
 * The file needs nothing from the core but the types of darkroom-plugin.h,
 * error.c's dr_fail() and libcrypto: the plugin tests' mock host
 * (tests/plugins/mock_host.c) compiles it in as it is, so a plugin's
 * webhook handling is tested against the real verifier without the core's
 * plugin host.
 */
#include "webhook.h"

#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define WH_PREFIX     "whsec_"
#define WH_PREFIX_LEN 6
/* Longest webhook-id, and the longest webhook-timestamp text. */
#define WH_ID_MAX 256
#define WH_TS_MAX 32
/* Timestamps at or above this (about the year 31.7 million) are not
 * accumulated further: they are stale whatever the clock says. */
#define WH_TS_HUGE 1000000000000000ULL
/* Longest webhook-signature header, and the most entries examined. */
#define WH_SIG_HEADER_MAX  4096
#define WH_SIG_ENTRIES_MAX 16
/* HMAC-SHA256 length, its padded base64 length, and "v1," + that. */
#define WH_MAC_LEN     32
#define WH_MAC_B64_LEN 44
#define WH_SIG_LEN     (3 + WH_MAC_B64_LEN)
/* Longest base64 text of a secret (after "whsec_") worth decoding. */
#define WH_SECRET_B64_MAX (((DR_WEBHOOK_MAX_SECRET + 2) / 3) * 4)

/* ------------------------------------------------------------------------
 * Base64
 */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0xff when a == b, else 0; for values below 256, without branches. */
static unsigned ct_eq(unsigned a, unsigned b)
{
	return (((0u - (a ^ b)) >> 8) & 0xff) ^ 0xff;
}

/* 0xff when a > b, else 0; for values below 256, without branches. */
static unsigned ct_gt(unsigned a, unsigned b)
{
	return ((b - a) >> 8) & 0xff;
}

/* The 6-bit value of base64 character c, or 0xff when c is not one. */
static unsigned b64_value(unsigned char ch)
{
	unsigned c = ch;
	unsigned ge_A = ct_gt(c, 'A' - 1), le_Z = ct_gt('Z' + 1, c);
	unsigned ge_a = ct_gt(c, 'a' - 1), le_z = ct_gt('z' + 1, c);
	unsigned ge_0 = ct_gt(c, '0' - 1), le_9 = ct_gt('9' + 1, c);
	unsigned v;

	v = (ge_A & le_Z & (c - 'A')) | (ge_a & le_z & (c - 'a' + 26)) |
	    (ge_0 & le_9 & (c - '0' + 52)) | (ct_eq(c, '+') & 62) |
	    (ct_eq(c, '/') & 63);
	/* v is 0 both for 'A' and for anything outside the alphabet. */
	return v | (ct_eq(v, 0) & (ct_eq(c, 'A') ^ 0xff));
}

int webhook_b64_value(unsigned char c)
{
	unsigned v = b64_value(c);

	return v == 0xff ? -1 : (int)v;
}

/*
 * Encode n bytes of `in` as padded base64 into out, NUL-terminated.
 * Returns the length written (without the NUL), or 0 with out set to ""
 * (when outsz > 0) if outsz cannot hold the result and its NUL.
 */
size_t webhook_b64_encode(const unsigned char *in, size_t n, char *out,
			  size_t outsz)
{
	size_t len, o = 0, i = 0;

	if (n > (SIZE_MAX - 1) / 4 * 3 - 3) {
		if (outsz > 0)
			out[0] = '\0';
		return 0;
	}
	len = (n + 2) / 3 * 4;
	if (outsz < len + 1) {
		if (outsz > 0)
			out[0] = '\0';
		return 0;
	}
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];

		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/*
 * Decode n characters of base64 at `in` into out (at most cap bytes).
 * Padding is optional, but when present it must complete the last group
 * of four; anything outside the standard alphabet (whitespace, the URL
 * alphabet, a NUL, '=' elsewhere) is refused, and so are bits left over
 * in the last character (RFC 4648 3.5), so every byte string has exactly
 * one accepted spelling with padding and one without. Returns the decoded
 * length, or -1 on bad input or when cap is too small.
 */
long webhook_b64_decode(const char *in, size_t n, unsigned char *out,
			size_t cap)
{
	size_t full, rest, len, o = 0, i = 0;
	unsigned bad = 0;

	if (n > 0 && in[n - 1] == '=') {
		if (n % 4 != 0)
			return -1;
		n--;
		if (in[n - 1] == '=')
			n--;
	}
	full = n / 4;
	rest = n % 4;
	if (rest == 1)
		return -1;
	len = full * 3 + (rest ? rest - 1 : 0);
	if (len > cap || len > (size_t)LONG_MAX)
		return -1;
	for (; i < full * 4; i += 4) {
		unsigned a = b64_value((unsigned char)in[i]);
		unsigned b = b64_value((unsigned char)in[i + 1]);
		unsigned c = b64_value((unsigned char)in[i + 2]);
		unsigned d = b64_value((unsigned char)in[i + 3]);

		bad |= (a | b | c | d) & 0x80;
		out[o++] = (unsigned char)(a << 2 | b >> 4);
		out[o++] = (unsigned char)(b << 4 | c >> 2);
		out[o++] = (unsigned char)(c << 6 | d);
	}
	if (rest == 2) {
		unsigned a = b64_value((unsigned char)in[i]);
		unsigned b = b64_value((unsigned char)in[i + 1]);

		bad |= (a | b) & 0x80;
		bad |= b & 0x0f; /* bits past the last byte must be zero */
		out[o++] = (unsigned char)(a << 2 | b >> 4);
	} else if (rest == 3) {
		unsigned a = b64_value((unsigned char)in[i]);
		unsigned b = b64_value((unsigned char)in[i + 1]);
		unsigned c = b64_value((unsigned char)in[i + 2]);

		bad |= (a | b | c) & 0x80;
		bad |= c & 0x03;
		out[o++] = (unsigned char)(a << 2 | b >> 4);
		out[o++] = (unsigned char)(b << 4 | c >> 2);
	}
	if (bad) {
		OPENSSL_cleanse(out, o);
		return -1;
	}
	return (long)len;
}

/* ------------------------------------------------------------------------
 * Signing
 */

/*
 * Decode a secret ("whsec_<base64>" or bare base64) into key. Returns
 * the key length (1..DR_WEBHOOK_MAX_SECRET) or -1 when it is NULL, empty,
 * not base64 or too long.
 */
static long secret_decode(const char *secret,
			  unsigned char key[DR_WEBHOOK_MAX_SECRET])
{
	size_t n;
	long len;

	if (!secret)
		return -1;
	if (strncmp(secret, WH_PREFIX, WH_PREFIX_LEN) == 0)
		secret += WH_PREFIX_LEN;
	n = strnlen(secret, WH_SECRET_B64_MAX + 1);
	if (n > WH_SECRET_B64_MAX)
		return -1;
	len = webhook_b64_decode(secret, n, key, DR_WEBHOOK_MAX_SECRET);
	return len > 0 ? len : -1;
}

/*
 * HMAC-SHA256 with key over "<id>.<ts>.<body>" into mac, fed in pieces so
 * the body is never copied. DR_OK, or DR_ERR_INTERNAL when libcrypto
 * fails (no SHA-256 in the loaded providers, or out of memory).
 */
static dr_status compute_mac(const unsigned char *key, size_t keylen,
			     const char *id, size_t idlen, const char *ts,
			     size_t tslen, const void *body, size_t len,
			     unsigned char mac[WH_MAC_LEN])
{
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest,
						 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = NULL;
	size_t outlen = 0;
	dr_status st = DR_ERR_INTERNAL;

	if (!hmac)
		goto out;
	ctx = EVP_MAC_CTX_new(hmac);
	if (!ctx)
		goto out;
	if (!EVP_MAC_init(ctx, key, keylen, params) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)id, idlen) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)ts, tslen) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
	    (len > 0 && !EVP_MAC_update(ctx, body, len)) ||
	    !EVP_MAC_final(ctx, mac, &outlen, WH_MAC_LEN) ||
	    outlen != WH_MAC_LEN)
		goto out;
	st = DR_OK;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(hmac);
	return st;
}

/*
 * Sign id, timestamp and body with secret: "v1,<base64 MAC>" into sig.
 * DR_ERR_CONFIG for a bad secret, DR_ERR_INVALID for an empty or too
 * long id (over WH_ID_MAX), a negative timestamp or a NULL body with a
 * length, DR_ERR_TOO_LARGE when sigsz is under WH_SIG_LEN + 1 (48),
 * DR_ERR_INTERNAL when libcrypto fails. sig is "" on failure.
 */
dr_status webhook_sign(const char *secret, const char *id, long long timestamp,
		       const void *body, size_t len, char *sig, size_t sigsz)
{
	unsigned char key[DR_WEBHOOK_MAX_SECRET];
	unsigned char mac[WH_MAC_LEN];
	char ts[24];
	size_t idlen;
	long keylen;
	dr_status st;

	if (sig && sigsz > 0)
		sig[0] = '\0';
	if (!sig || sigsz < WH_SIG_LEN + 1)
		return DR_ERR_TOO_LARGE;
	if (!id || timestamp < 0 || (!body && len > 0))
		return DR_ERR_INVALID;
	idlen = strnlen(id, WH_ID_MAX + 1);
	if (idlen == 0 || idlen > WH_ID_MAX)
		return DR_ERR_INVALID;
	keylen = secret_decode(secret, key);
	if (keylen < 0)
		return DR_ERR_CONFIG;
	snprintf(ts, sizeof(ts), "%lld", timestamp);
	st = compute_mac(key, (size_t)keylen, id, idlen, ts, strlen(ts), body,
			 len, mac);
	OPENSSL_cleanse(key, sizeof(key));
	if (st == DR_OK) {
		memcpy(sig, "v1,", 3);
		webhook_b64_encode(mac, sizeof(mac), sig + 3, sigsz - 3);
	}
	OPENSSL_cleanse(mac, sizeof(mac));
	return st;
}

/* ------------------------------------------------------------------------
 * Verification
 */

/*
 * The value of header `name` in req: the first one whose name matches
 * (ASCII case-insensitively, although the core hands over lower-case
 * names), or NULL when there is none. Borrowed from req.
 */
const char *webhook_header(const dr_webhook_request *req, const char *name)
{
	if (!req || !name || !req->header_names || !req->header_values)
		return NULL;
	for (size_t i = 0; i < req->n_headers; i++)
		if (req->header_names[i] &&
		    strcasecmp(req->header_names[i], name) == 0)
			return req->header_values[i];
	return NULL;
}

static double wall_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Parse webhook-timestamp: decimal digits only (no sign, no space, no
 * fraction), at most WH_TS_MAX of them. Values from WH_TS_HUGE up are
 * clamped there. Returns 0 and sets *out, or -1.
 */
static int parse_timestamp(const char *s, size_t n, double *out)
{
	unsigned long long v = 0;

	if (n == 0 || n > WH_TS_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v < WH_TS_HUGE)
			v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = (double)(v < WH_TS_HUGE ? v : WH_TS_HUGE);
	return 0;
}

/* The v1 MACs of a webhook-signature header, decoded. */
typedef struct sig_list {
	unsigned char mac[WH_SIG_ENTRIES_MAX][WH_MAC_LEN];
	size_t n;
} sig_list;

/*
 * Collect the v1 entries of `header` (n bytes, space-separated
 * "<version>,<base64>" entries) whose value decodes to a MAC-sized byte
 * string. Entries of other versions, without a comma, or that do not
 * decode are skipped; only the first WH_SIG_ENTRIES_MAX non-empty entries
 * are looked at.
 */
static void parse_signatures(const char *header, size_t n, sig_list *out)
{
	size_t i = 0, seen = 0;

	out->n = 0;
	while (i < n && seen < WH_SIG_ENTRIES_MAX) {
		size_t start, end;
		const char *comma;

		while (i < n && header[i] == ' ')
			i++;
		if (i == n)
			break;
		start = i;
		while (i < n && header[i] != ' ')
			i++;
		end = i;
		seen++;
		comma = memchr(header + start, ',', end - start);
		if (!comma || comma - (header + start) != 2 ||
		    memcmp(header + start, "v1", 2) != 0)
			continue;
		if (webhook_b64_decode(
			    comma + 1, (size_t)(header + end - comma - 1),
			    out->mac[out->n], WH_MAC_LEN) == WH_MAC_LEN)
			out->n++;
	}
}

/*
 * Verify req against each of the n secrets (see webhook.h and
 * dr_host.webhook_verify). The checks run in this order, and the first
 * that fails decides: the secrets (DR_ERR_CONFIG "bad_secret", also for
 * n == 0) and the tolerance (DR_ERR_CONFIG "bad_tolerance" when negative
 * or NaN), then the three headers (DR_ERR_AUTH "missing_header" when one
 * is absent, empty or malformed: an id over WH_ID_MAX bytes, a timestamp
 * that is not plain digits), then the clock (DR_ERR_AUTH
 * "stale_timestamp"), then the signatures (DR_ERR_AUTH "bad_signature",
 * also for a header over WH_SIG_HEADER_MAX bytes or without a usable v1
 * entry). DR_ERR_INTERNAL when libcrypto fails. err is left alone on
 * DR_OK.
 */
dr_status webhook_verify(const dr_webhook_request *req,
			 const char *const *secrets, size_t n, double tolerance,
			 dr_error *err)
{
	unsigned char key[DR_WEBHOOK_MAX_SECRET];
	unsigned char mac[WH_MAC_LEN];
	const char *id, *ts, *sig;
	size_t idlen, tslen, siglen;
	double stamp, now;
	sig_list sigs;
	unsigned match = 0;
	dr_status st = DR_OK;

	if (!req || (!req->body && req->body_len > 0))
		return dr_fail(err, DR_ERR_INVALID, NULL,
			       "no webhook request to verify");
	if (n == 0 || !secrets)
		return dr_fail(err, DR_ERR_CONFIG, "bad_secret",
			       "no webhook secret is configured");
	for (size_t i = 0; i < n; i++) {
		long keylen = secret_decode(secrets[i], key);

		OPENSSL_cleanse(key, sizeof(key));
		if (keylen < 0)
			return dr_fail(err, DR_ERR_CONFIG, "bad_secret",
				       "webhook secret %zu of %zu is not "
				       "\"whsec_\" and base64 of 1 to %d bytes",
				       i + 1, n, DR_WEBHOOK_MAX_SECRET);
	}
	if (!(tolerance >= 0))
		return dr_fail(err, DR_ERR_CONFIG, "bad_tolerance",
			       "webhook timestamp tolerance is not a "
			       "non-negative number of seconds");

	id = webhook_header(req, "webhook-id");
	ts = webhook_header(req, "webhook-timestamp");
	sig = webhook_header(req, "webhook-signature");
	if (!id || !*id || !ts || !*ts || !sig || !*sig)
		return dr_fail(err, DR_ERR_AUTH, "missing_header",
			       "missing header %s",
			       !id || !*id   ? "webhook-id"
			       : !ts || !*ts ? "webhook-timestamp"
					     : "webhook-signature");
	idlen = strnlen(id, WH_ID_MAX + 1);
	if (idlen > WH_ID_MAX)
		return dr_fail(err, DR_ERR_AUTH, "missing_header",
			       "header webhook-id is longer than %d bytes",
			       WH_ID_MAX);
	tslen = strnlen(ts, WH_TS_MAX + 1);
	if (parse_timestamp(ts, tslen, &stamp) < 0)
		return dr_fail(err, DR_ERR_AUTH, "missing_header",
			       "header webhook-timestamp is not an integer "
			       "number of seconds");

	/* received_at is the core's clock when the request came in; 0 (or
	 * anything not positive, NaN included) means "now". */
	now = req->received_at > 0 ? req->received_at : wall_clock();
	if (now - stamp > tolerance)
		return dr_fail(err, DR_ERR_AUTH, "stale_timestamp",
			       "webhook-timestamp is %.0f s old; at most %g s "
			       "are allowed",
			       now - stamp, tolerance);
	if (stamp - now > tolerance)
		return dr_fail(err, DR_ERR_AUTH, "stale_timestamp",
			       "webhook-timestamp is %.0f s ahead; at most %g "
			       "s are allowed",
			       stamp - now, tolerance);

	siglen = strnlen(sig, WH_SIG_HEADER_MAX + 1);
	if (siglen > WH_SIG_HEADER_MAX)
		return dr_fail(err, DR_ERR_AUTH, "bad_signature",
			       "header webhook-signature is longer than %d "
			       "bytes",
			       WH_SIG_HEADER_MAX);
	parse_signatures(sig, siglen, &sigs);
	if (sigs.n == 0)
		return dr_fail(err, DR_ERR_AUTH, "bad_signature",
			       "header webhook-signature has no v1 signature");

	/* Every secret against every entry: the time taken depends on the
	 * counts only, not on where (or whether) a MAC matched. */
	for (size_t i = 0; i < n && st == DR_OK; i++) {
		long keylen = secret_decode(secrets[i], key);

		st = compute_mac(key, (size_t)keylen, id, idlen, ts, tslen,
				 req->body, req->body_len, mac);
		for (size_t j = 0; j < sigs.n && st == DR_OK; j++)
			match |= CRYPTO_memcmp(mac, sigs.mac[j], WH_MAC_LEN) ==
				 0;
	}
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(mac, sizeof(mac));
	if (st != DR_OK)
		return dr_fail(err, st, "crypto",
			       "HMAC-SHA256 is not available from libcrypto");
	if (!match)
		return dr_fail(err, DR_ERR_AUTH, "bad_signature",
			       "no webhook-signature entry matches (%zu v1 "
			       "entr%s, %zu secret%s)",
			       sigs.n, sigs.n == 1 ? "y" : "ies", n,
			       n == 1 ? "" : "s");
	return DR_OK;
}
