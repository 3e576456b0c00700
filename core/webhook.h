/*
 * webhook.h - Standard Webhooks signatures (https://www.standardwebhooks.com).
 *
 * Used both ways: to verify provider deliveries (Replicate signs with this
 * scheme; plugins reach webhook_verify through the host table) and to sign
 * darkroom's own callbacks to clients. The signed content is
 * "<webhook-id>.<webhook-timestamp>.<raw body>", the MAC HMAC-SHA256 with
 * the base64-decoded secret (after its "whsec_" prefix), the header
 * "webhook-signature" a space-separated list of "v1,<base64 MAC>" entries.
 */
#ifndef DR_WEBHOOK_H
#define DR_WEBHOOK_H

#include <stddef.h>

#include "darkroom-plugin.h"
#include "error.h"

#define DR_WEBHOOK_TOLERANCE 300.0 /* seconds either way */
#define DR_WEBHOOK_MAX_SECRET 256  /* decoded secret bytes */

/* The value of header `name` (lower case) in req, or NULL. */
const char *webhook_header(const dr_webhook_request *req, const char *name);

/*
 * Verify req against each of the `n` secrets; see dr_host.webhook_verify
 * in darkroom-plugin.h for the contract. The verifier's clock is
 * req->received_at, or the current time when that is 0.
 */
dr_status webhook_verify(const dr_webhook_request *req,
			 const char *const *secrets, size_t n, double tolerance,
			 dr_error *err) DR_WARN_UNUSED;

/*
 * Sign: write "v1,<base64 HMAC>" for id, timestamp and body with `secret`
 * into sig (NUL-terminated). DR_ERR_CONFIG for a bad secret,
 * DR_ERR_TOO_LARGE when sigsz is too small (64 bytes always suffice).
 */
dr_status webhook_sign(const char *secret, const char *id, long long timestamp,
		       const void *body, size_t len, char *sig, size_t sigsz)
	DR_WARN_UNUSED;

/*
 * Base64 (RFC 4648, standard alphabet, padded). webhook_b64_decode accepts
 * input with or without padding, returns the decoded length or -1 on bad
 * input or when `cap` is too small.
 */
/* The 6-bit value of character c of the standard base64 alphabet, -1
 * for any other (in constant time). */
int webhook_b64_value(unsigned char c);

size_t webhook_b64_encode(const unsigned char *in, size_t n, char *out,
			  size_t outsz);
long webhook_b64_decode(const char *in, size_t n, unsigned char *out,
			size_t cap);

#endif
