/*
 * test_webhook.c - Standard Webhooks signing and verification, and the
 * base64 underneath: the reference test vector, each way a delivery can
 * be wrong (tampered, stale, missing or garbled headers, bad secrets),
 * secret rotation, sign/verify round trips and RFC 4648 vectors.
 *
 * tests/webhook/cross_check.js checks the same code against an
 * independent implementation (npm standardwebhooks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "webhook.h"

/* The reference vector of the Standard Webhooks libraries. */
#define VEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VEC_ID	   "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VEC_TS	   "1614265330"
#define VEC_NOW	   1614265330.0
#define VEC_BODY   "{\"test\": 2432232314}"
#define VEC_MAC	   "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
#define VEC_SIG	   "v1," VEC_MAC

/* Another secret, for rotation: base64 of 24 bytes. */
#define OTHER_SECRET "whsec_c2Vjb25kIHNlY3JldCBmb3Igcm90YXRpb24="

/* A delivery: up to three headers (NULL values are left out). */
typedef struct delivery {
	const char *names[3];
	const char *values[3];
	dr_webhook_request req;
} delivery;

static void delivery_init(delivery *d, const char *id, const char *ts,
			  const char *sig, const char *body, double now)
{
	const char *names[3] = { "webhook-id", "webhook-timestamp",
				 "webhook-signature" };
	const char *values[3] = { id, ts, sig };
	size_t n = 0;

	memset(d, 0, sizeof(*d));
	for (int i = 0; i < 3; i++)
		if (values[i]) {
			d->names[n] = names[i];
			d->values[n] = values[i];
			n++;
		}
	d->req.header_names = d->names;
	d->req.header_values = d->values;
	d->req.n_headers = n;
	d->req.body = (const unsigned char *)body;
	d->req.body_len = body ? strlen(body) : 0;
	d->req.received_at = now;
}

/* webhook_verify() of one delivery against one secret. */
static dr_status verify1(const char *secret, const char *id, const char *ts,
			 const char *sig, const char *body, double now,
			 dr_error *err)
{
	delivery d;
	const char *secrets[1] = { secret };

	delivery_init(&d, id, ts, sig, body, now);
	memset(err, 0, sizeof(*err));
	return webhook_verify(&d.req, secrets, 1, DR_WEBHOOK_TOLERANCE, err);
}

/* Assert that err is `status` with `code` and says nothing secret. */
static void assert_failed(dr_status got, const dr_error *err, dr_status status,
			  const char *code)
{
	assert_int_equal(got, status);
	assert_int_equal(err->status, status);
	assert_string_equal(err->code, code);
	assert_true(err->message[0] != '\0');
	assert_null(strstr(err->message, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
	assert_null(strstr(err->message, "c2Vjb25k"));
	assert_null(strstr(err->message, "g0hM9SsE"));
}

/* ------------------------------------------------------------------------
 * The reference vector
 */

static void test_reference_vector(void **state)
{
	dr_error err;
	char sig[64];

	(void)state;
	assert_int_equal(verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY,
				 VEC_NOW, &err),
			 DR_OK);
	assert_int_equal(webhook_sign(VEC_SECRET, VEC_ID, 1614265330LL,
				      VEC_BODY, strlen(VEC_BODY), sig,
				      sizeof(sig)),
			 DR_OK);
	assert_string_equal(sig, VEC_SIG);
}

static void test_reference_vector_last_char(void **state)
{
	dr_error err;
	char sig[] = VEC_SIG;

	(void)state;
	assert_int_equal(sig[strlen(sig) - 2], 'E');
	sig[strlen(sig) - 2] = 'A';
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, sig, VEC_BODY,
			      VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
}

static void test_tampered_body(void **state)
{
	dr_error err;

	(void)state;
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG,
			      "{\"test\": 2432232315}", VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG,
			      "{\"test\": 2432232314} ", VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
	assert_failed(
		verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG, "", VEC_NOW, &err),
		&err, DR_ERR_AUTH, "bad_signature");
}

static void test_tampered_id(void **state)
{
	dr_error err;

	(void)state;
	assert_failed(verify1(VEC_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJel",
			      VEC_TS, VEC_SIG, VEC_BODY, VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
	/* The timestamp is signed too: a replay with a fresh one fails. */
	assert_failed(verify1(VEC_SECRET, VEC_ID, "1614265331", VEC_SIG,
			      VEC_BODY, VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
	/* ...and its text is signed as sent, leading zeros included. */
	assert_failed(verify1(VEC_SECRET, VEC_ID, "01614265330", VEC_SIG,
			      VEC_BODY, VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
}

/* ------------------------------------------------------------------------
 * The clock
 */

static void test_timestamp_tolerance(void **state)
{
	dr_error err;

	(void)state;
	/* The receiver's clock 301 s ahead: the delivery is too old. */
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY,
			      VEC_NOW + 301, &err),
		      &err, DR_ERR_AUTH, "stale_timestamp");
	/* 301 s behind: the delivery claims to come from the future. */
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY,
			      VEC_NOW - 301, &err),
		      &err, DR_ERR_AUTH, "stale_timestamp");
	assert_int_equal(verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY,
				 VEC_NOW + 299, &err),
			 DR_OK);
	assert_int_equal(verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY,
				 VEC_NOW - 299, &err),
			 DR_OK);
	/* "More than 300 s" is stale; exactly 300 s is not. */
	assert_int_equal(verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY,
				 VEC_NOW + 300, &err),
			 DR_OK);
	assert_int_equal(verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY,
				 VEC_NOW - 300, &err),
			 DR_OK);
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY,
			      VEC_NOW + 300.5, &err),
		      &err, DR_ERR_AUTH, "stale_timestamp");
}

static void test_timestamp_stale_before_signature(void **state)
{
	dr_error err;

	(void)state;
	/* A stale delivery is refused as stale even with a bad MAC. */
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, "v1,AAAA", VEC_BODY,
			      VEC_NOW + 1000, &err),
		      &err, DR_ERR_AUTH, "stale_timestamp");
}

static void test_timestamp_custom_tolerance(void **state)
{
	delivery d;
	const char *secrets[] = { VEC_SECRET };
	dr_error err;

	(void)state;
	delivery_init(&d, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY, VEC_NOW + 10);
	assert_int_equal(webhook_verify(&d.req, secrets, 1, 10, &err), DR_OK);
	assert_failed(webhook_verify(&d.req, secrets, 1, 9.5, &err), &err,
		      DR_ERR_AUTH, "stale_timestamp");
	d.req.received_at = VEC_NOW;
	assert_int_equal(webhook_verify(&d.req, secrets, 1, 0, &err), DR_OK);
	assert_failed(webhook_verify(&d.req, secrets, 1, -1, &err), &err,
		      DR_ERR_CONFIG, "bad_tolerance");
	assert_failed(webhook_verify(&d.req, secrets, 1, NAN, &err), &err,
		      DR_ERR_CONFIG, "bad_tolerance");
}

static void test_timestamp_real_clock(void **state)
{
	long long now = (long long)time(NULL);
	char ts[24], sig[64];
	dr_error err;

	(void)state;
	/* received_at 0: the current time. The vector is from 2021. */
	assert_failed(
		verify1(VEC_SECRET, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY, 0, &err),
		&err, DR_ERR_AUTH, "stale_timestamp");
	snprintf(ts, sizeof(ts), "%lld", now);
	assert_int_equal(webhook_sign(VEC_SECRET, VEC_ID, now, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_OK);
	assert_int_equal(
		verify1(VEC_SECRET, VEC_ID, ts, sig, VEC_BODY, 0, &err), DR_OK);
}

static void test_timestamp_malformed(void **state)
{
	static const char *const bad[] = {
		"+1614265330",
		"-1614265330",
		" 1614265330",
		"1614265330 ",
		"1614265330.0",
		"1614265330s",
		"0x60381df2",
		"1.6e9",
		"16142 65330",
		"\t1614265330",
		/* 33 digits: longer than any timestamp worth parsing */
		"000000000000000000000001614265330",
	};
	dr_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_failed(verify1(VEC_SECRET, VEC_ID, bad[i], VEC_SIG,
				      VEC_BODY, VEC_NOW, &err),
			      &err, DR_ERR_AUTH, "missing_header");
	/* Plain digits but absurd: stale, and no overflow on the way. */
	assert_failed(verify1(VEC_SECRET, VEC_ID, "99999999999999999999999999",
			      VEC_SIG, VEC_BODY, VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "stale_timestamp");
	assert_failed(verify1(VEC_SECRET, VEC_ID, "0", VEC_SIG, VEC_BODY,
			      VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "stale_timestamp");
}

/* ------------------------------------------------------------------------
 * The signature header
 */

static void test_several_entries(void **state)
{
	dr_error err;

	(void)state;
	/* The second v1 entry matches. */
	assert_int_equal(
		verify1(VEC_SECRET, VEC_ID, VEC_TS,
			"v1,Ao9/"
			"KmPw0nfCbNHJdVRnBLqpmLMGAXSKyDqWHtNUY2E= " VEC_SIG,
			VEC_BODY, VEC_NOW, &err),
		DR_OK);
	/* Other versions are skipped, wherever they stand. */
	assert_int_equal(verify1(VEC_SECRET, VEC_ID, VEC_TS,
				 "v2,abc v1a,xyz " VEC_SIG " v1b,zzz", VEC_BODY,
				 VEC_NOW, &err),
			 DR_OK);
	/* Extra spaces around and between entries are harmless. */
	assert_int_equal(verify1(VEC_SECRET, VEC_ID, VEC_TS,
				 "  v2,abc   " VEC_SIG "  ", VEC_BODY, VEC_NOW,
				 &err),
			 DR_OK);
	/* Padding is optional: the MACs are compared, not their text. */
	assert_int_equal(
		verify1(VEC_SECRET, VEC_ID, VEC_TS,
			"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
			VEC_BODY, VEC_NOW, &err),
		DR_OK);
}

static void test_other_version_only(void **state)
{
	dr_error err;

	(void)state;
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, "v2," VEC_MAC,
			      VEC_BODY, VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, "V1," VEC_MAC,
			      VEC_BODY, VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, "v1a," VEC_MAC,
			      VEC_BODY, VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
}

static void test_garbage_signatures(void **state)
{
	static const char *const bad[] = {
		"v1g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", /* no comma */
		VEC_MAC,   /* no version */
		"v1,",	   /* nothing after the comma */
		",",	   /* nothing at all */
		"v1",	   /* a version alone */
		"v1,!!!!", /* not base64 */
		"v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=", /* URL */
		"v1, " VEC_MAC,	   /* the MAC became its own entry */
		"v1," VEC_MAC "=", /* too much padding */
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=", /* bits */
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O",   /* short */
		"v1," VEC_MAC "AAAA",				   /* long */
		"v1," VEC_MAC ",v1", /* a second comma */
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ\t1OE=",
	};
	dr_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, bad[i],
				      VEC_BODY, VEC_NOW, &err),
			      &err, DR_ERR_AUTH, "bad_signature");
}

/* A header of `count` filler entries, then the reference signature. */
static char *entries_then_vector(size_t count, const char *filler)
{
	size_t flen = strlen(filler);
	char *s = malloc(count * (flen + 1) + sizeof(VEC_SIG));
	char *p = s;

	assert_non_null(s);
	for (size_t i = 0; i < count; i++) {
		memcpy(p, filler, flen);
		p += flen;
		*p++ = ' ';
	}
	memcpy(p, VEC_SIG, sizeof(VEC_SIG));
	return s;
}

static void test_long_signature_header(void **state)
{
	dr_error err;
	char *sig;

	(void)state;
	/* The 16th entry is still looked at, the 17th is not. */
	sig = entries_then_vector(15, "v2,x");
	assert_int_equal(verify1(VEC_SECRET, VEC_ID, VEC_TS, sig, VEC_BODY,
				 VEC_NOW, &err),
			 DR_OK);
	free(sig);
	sig = entries_then_vector(16, "v2,x");
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, sig, VEC_BODY,
			      VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
	free(sig);
	/* Up to 4096 bytes are read... */
	sig = malloc(4097 + 1);
	assert_non_null(sig);
	memset(sig, ' ', 4096 - strlen(VEC_SIG));
	memcpy(sig + 4096 - strlen(VEC_SIG), VEC_SIG, sizeof(VEC_SIG));
	assert_int_equal(strlen(sig), 4096);
	assert_int_equal(verify1(VEC_SECRET, VEC_ID, VEC_TS, sig, VEC_BODY,
				 VEC_NOW, &err),
			 DR_OK);
	/* ...and a longer header is refused whole. */
	memset(sig, ' ', 4097 - strlen(VEC_SIG));
	memcpy(sig + 4097 - strlen(VEC_SIG), VEC_SIG, sizeof(VEC_SIG));
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, sig, VEC_BODY,
			      VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
	free(sig);
	/* One very long entry. */
	sig = malloc(100001);
	assert_non_null(sig);
	memcpy(sig, "v1,", 3);
	memset(sig + 3, 'A', 100000 - 3);
	sig[100000] = '\0';
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, sig, VEC_BODY,
			      VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "bad_signature");
	free(sig);
}

/* ------------------------------------------------------------------------
 * Headers
 */

static void test_missing_headers(void **state)
{
	dr_error err;

	(void)state;
	assert_failed(verify1(VEC_SECRET, NULL, VEC_TS, VEC_SIG, VEC_BODY,
			      VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "missing_header");
	assert_non_null(strstr(err.message, "webhook-id"));
	assert_failed(verify1(VEC_SECRET, VEC_ID, NULL, VEC_SIG, VEC_BODY,
			      VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "missing_header");
	assert_non_null(strstr(err.message, "webhook-timestamp"));
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, NULL, VEC_BODY,
			      VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "missing_header");
	assert_non_null(strstr(err.message, "webhook-signature"));
	assert_failed(
		verify1(VEC_SECRET, NULL, NULL, NULL, VEC_BODY, VEC_NOW, &err),
		&err, DR_ERR_AUTH, "missing_header");
	/* An empty header is as good as none. */
	assert_failed(verify1(VEC_SECRET, "", VEC_TS, VEC_SIG, VEC_BODY,
			      VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "missing_header");
	assert_failed(verify1(VEC_SECRET, VEC_ID, "", VEC_SIG, VEC_BODY,
			      VEC_NOW, &err),
		      &err, DR_ERR_AUTH, "missing_header");
	assert_failed(verify1(VEC_SECRET, VEC_ID, VEC_TS, "", VEC_BODY, VEC_NOW,
			      &err),
		      &err, DR_ERR_AUTH, "missing_header");
}

static void test_header_lookup(void **state)
{
	const char *names[] = { "content-type", "Webhook-Id", "webhook-id",
				NULL };
	const char *values[] = { "application/json", "first", "second",
				 "orphan" };
	dr_webhook_request req = { names, values, 4, NULL, 0, 0 };

	(void)state;
	assert_string_equal(webhook_header(&req, "content-type"),
			    "application/json");
	assert_string_equal(webhook_header(&req, "webhook-id"), "first");
	assert_null(webhook_header(&req, "webhook-timestamp"));
	assert_null(webhook_header(&req, ""));
	assert_null(webhook_header(NULL, "webhook-id"));
	assert_null(webhook_header(&req, NULL));
	req.n_headers = 0;
	assert_null(webhook_header(&req, "content-type"));
}

static void test_id_length(void **state)
{
	char id[258], sig[64];
	dr_error err;

	(void)state;
	memset(id, 'i', 256);
	id[256] = '\0';
	assert_int_equal(webhook_sign(VEC_SECRET, id, 1614265330LL, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_OK);
	assert_int_equal(
		verify1(VEC_SECRET, id, VEC_TS, sig, VEC_BODY, VEC_NOW, &err),
		DR_OK);
	id[256] = 'i';
	id[257] = '\0';
	assert_failed(
		verify1(VEC_SECRET, id, VEC_TS, sig, VEC_BODY, VEC_NOW, &err),
		&err, DR_ERR_AUTH, "missing_header");
	assert_int_equal(webhook_sign(VEC_SECRET, id, 1614265330LL, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_ERR_INVALID);
}

static void test_bad_request(void **state)
{
	delivery d;
	const char *secrets[] = { VEC_SECRET };
	dr_error err;

	(void)state;
	assert_int_equal(webhook_verify(NULL, secrets, 1, 300, &err),
			 DR_ERR_INVALID);
	delivery_init(&d, VEC_ID, VEC_TS, VEC_SIG, NULL, VEC_NOW);
	d.req.body_len = 3;
	assert_int_equal(webhook_verify(&d.req, secrets, 1, 300, &err),
			 DR_ERR_INVALID);
	/* No body: the MAC of an empty one. */
	d.req.body_len = 0;
	assert_failed(webhook_verify(&d.req, secrets, 1, 300, &err), &err,
		      DR_ERR_AUTH, "bad_signature");
	/* err may be NULL. */
	assert_int_equal(webhook_verify(&d.req, secrets, 1, 300, NULL),
			 DR_ERR_AUTH);
}

/* ------------------------------------------------------------------------
 * Secrets
 */

static void test_rotation(void **state)
{
	delivery d;
	const char *both[] = { OTHER_SECRET, VEC_SECRET };
	const char *both_rev[] = { VEC_SECRET, OTHER_SECRET };
	const char *new_only[] = { OTHER_SECRET };
	dr_error err;

	(void)state;
	delivery_init(&d, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY, VEC_NOW);
	/* Signed with the old secret, which is still accepted. */
	assert_int_equal(webhook_verify(&d.req, both, 2, 300, &err), DR_OK);
	assert_int_equal(webhook_verify(&d.req, both_rev, 2, 300, &err), DR_OK);
	/* Once it is dropped, the delivery fails. */
	assert_failed(webhook_verify(&d.req, new_only, 1, 300, &err), &err,
		      DR_ERR_AUTH, "bad_signature");
}

static void test_secret_without_prefix(void **state)
{
	dr_error err;
	char sig[64];

	(void)state;
	assert_int_equal(verify1("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", VEC_ID,
				 VEC_TS, VEC_SIG, VEC_BODY, VEC_NOW, &err),
			 DR_OK);
	assert_int_equal(webhook_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
				      VEC_ID, 1614265330LL, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_OK);
	assert_string_equal(sig, VEC_SIG);
}

static void test_bad_secret(void **state)
{
	static const char *const bad[] = {
		"",
		"whsec_",
		"whsec_!!!!",
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw ",
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwA", /* 33 % 4 == 1 */
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=",
		"whsec_MfKQ9r8GKYqrTwjUPD8I-PZIo2LaLaSw",
		"whsec:MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	};
	const char *list[2] = { VEC_SECRET, NULL };
	delivery d;
	dr_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_failed(verify1(bad[i], VEC_ID, VEC_TS, VEC_SIG, VEC_BODY,
				      VEC_NOW, &err),
			      &err, DR_ERR_CONFIG, "bad_secret");
	assert_failed(
		verify1(NULL, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY, VEC_NOW, &err),
		&err, DR_ERR_CONFIG, "bad_secret");
	/* A bad secret anywhere in the list is a configuration error, even
	 * when another one matches, and whatever the delivery. */
	delivery_init(&d, VEC_ID, VEC_TS, VEC_SIG, VEC_BODY, VEC_NOW);
	list[1] = "whsec_!!!!";
	assert_failed(webhook_verify(&d.req, list, 2, 300, &err), &err,
		      DR_ERR_CONFIG, "bad_secret");
	assert_non_null(strstr(err.message, "2 of 2"));
	assert_null(strstr(err.message, "!!!!"));
	assert_failed(webhook_verify(&d.req, list, 0, 300, &err), &err,
		      DR_ERR_CONFIG, "bad_secret");
	assert_failed(webhook_verify(&d.req, NULL, 1, 300, &err), &err,
		      DR_ERR_CONFIG, "bad_secret");
	delivery_init(&d, NULL, NULL, NULL, NULL, VEC_NOW);
	assert_failed(webhook_verify(&d.req, list, 2, 300, &err), &err,
		      DR_ERR_CONFIG, "bad_secret");
}

static void test_secret_length(void **state)
{
	unsigned char key[DR_WEBHOOK_MAX_SECRET + 3];
	char secret[6 + 400], sig[64];
	dr_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(i * 7 + 1);
	/* DR_WEBHOOK_MAX_SECRET bytes are fine... */
	memcpy(secret, "whsec_", 6);
	webhook_b64_encode(key, DR_WEBHOOK_MAX_SECRET, secret + 6,
			   sizeof(secret) - 6);
	assert_int_equal(webhook_sign(secret, VEC_ID, 1614265330LL, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_OK);
	assert_int_equal(
		verify1(secret, VEC_ID, VEC_TS, sig, VEC_BODY, VEC_NOW, &err),
		DR_OK);
	/* ...one more is not. */
	webhook_b64_encode(key, DR_WEBHOOK_MAX_SECRET + 1, secret + 6,
			   sizeof(secret) - 6);
	assert_failed(
		verify1(secret, VEC_ID, VEC_TS, sig, VEC_BODY, VEC_NOW, &err),
		&err, DR_ERR_CONFIG, "bad_secret");
	assert_int_equal(webhook_sign(secret, VEC_ID, 1614265330LL, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_ERR_CONFIG);
	/* One byte is the least. */
	assert_int_equal(verify1("whsec_AQ==", VEC_ID, VEC_TS, VEC_SIG,
				 VEC_BODY, VEC_NOW, &err),
			 DR_ERR_AUTH);
}

/* ------------------------------------------------------------------------
 * Signing
 */

static void test_sign_round_trip(void **state)
{
	unsigned char key[40], body[300];
	char secret[80], sig[64], id[40], ts[24], bad[64];
	uint32_t x = 12345;
	dr_error err;

	(void)state;
	for (int round = 0; round < 200; round++) {
		size_t keylen = 1 + (size_t)round % sizeof(key);
		size_t len = (size_t)round * 37 % sizeof(body);
		long long stamp = 1700000000LL + round * 1000;
		const char *secrets[1] = { secret };
		delivery d;

		for (size_t i = 0; i < keylen; i++)
			key[i] = (unsigned char)((x = x * 1103515245 + 12345) >>
						 16);
		for (size_t i = 0; i < len; i++)
			body[i] =
				(unsigned char)((x = x * 1103515245 + 12345) >>
						16);
		snprintf(secret, sizeof(secret), "%s",
			 round % 2 ? "whsec_" : "");
		webhook_b64_encode(key, keylen, secret + strlen(secret),
				   sizeof(secret) - strlen(secret));
		snprintf(id, sizeof(id), "msg_%d", round);
		snprintf(ts, sizeof(ts), "%lld", stamp);
		assert_int_equal(webhook_sign(secret, id, stamp, body, len, sig,
					      sizeof(sig)),
				 DR_OK);
		assert_int_equal(strlen(sig), 47);
		assert_memory_equal(sig, "v1,", 3);

		delivery_init(&d, id, ts, sig, NULL, (double)stamp);
		d.req.body = body;
		d.req.body_len = len;
		assert_int_equal(webhook_verify(&d.req, secrets, 1, 300, &err),
				 DR_OK);
		/* Any flipped bit of the body breaks it. */
		if (len > 0) {
			body[round % len] ^= (unsigned char)(1u << (round % 8));
			assert_int_equal(
				webhook_verify(&d.req, secrets, 1, 300, &err),
				DR_ERR_AUTH);
			body[round % len] ^= (unsigned char)(1u << (round % 8));
		}
		/* So does any change to a MAC character. */
		snprintf(bad, sizeof(bad), "%s", sig);
		bad[3 + round % 43] = bad[3 + round % 43] == 'B' ? 'C' : 'B';
		d.values[2] = bad;
		assert_int_equal(webhook_verify(&d.req, secrets, 1, 300, &err),
				 DR_ERR_AUTH);
	}
}

static void test_sign_errors(void **state)
{
	char sig[64];

	(void)state;
	/* 48 bytes hold "v1," + 44 + NUL; 47 do not. */
	assert_int_equal(webhook_sign(VEC_SECRET, VEC_ID, 1614265330LL,
				      VEC_BODY, strlen(VEC_BODY), sig, 48),
			 DR_OK);
	assert_string_equal(sig, VEC_SIG);
	assert_int_equal(webhook_sign(VEC_SECRET, VEC_ID, 1614265330LL,
				      VEC_BODY, strlen(VEC_BODY), sig, 47),
			 DR_ERR_TOO_LARGE);
	assert_string_equal(sig, "");
	assert_int_equal(webhook_sign(VEC_SECRET, VEC_ID, 1614265330LL,
				      VEC_BODY, strlen(VEC_BODY), NULL, 0),
			 DR_ERR_TOO_LARGE);
	assert_int_equal(webhook_sign("whsec_!", VEC_ID, 1614265330LL, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_ERR_CONFIG);
	assert_int_equal(webhook_sign(NULL, VEC_ID, 1614265330LL, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_ERR_CONFIG);
	assert_int_equal(webhook_sign(VEC_SECRET, "", 1614265330LL, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_ERR_INVALID);
	assert_int_equal(webhook_sign(VEC_SECRET, NULL, 1614265330LL, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_ERR_INVALID);
	assert_int_equal(webhook_sign(VEC_SECRET, VEC_ID, -1, VEC_BODY,
				      strlen(VEC_BODY), sig, sizeof(sig)),
			 DR_ERR_INVALID);
	assert_int_equal(webhook_sign(VEC_SECRET, VEC_ID, 1614265330LL, NULL, 1,
				      sig, sizeof(sig)),
			 DR_ERR_INVALID);
	assert_int_equal(webhook_sign(VEC_SECRET, VEC_ID, 1614265330LL, NULL, 0,
				      sig, sizeof(sig)),
			 DR_OK);
}

/* ------------------------------------------------------------------------
 * Base64
 */

static void test_b64_rfc4648(void **state)
{
	/* RFC 4648 section 10. */
	static const char *const vec[][2] = {
		{ "", "" },
		{ "f", "Zg==" },
		{ "fo", "Zm8=" },
		{ "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" },
	};
	char enc[16];
	unsigned char dec[16];

	(void)state;
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		const char *plain = vec[i][0], *b64 = vec[i][1];
		size_t plen = strlen(plain), blen = strlen(b64), unpadded;

		assert_int_equal(
			webhook_b64_encode((const unsigned char *)plain, plen,
					   enc, sizeof(enc)),
			blen);
		assert_string_equal(enc, b64);
		assert_int_equal(
			webhook_b64_decode(b64, blen, dec, sizeof(dec)),
			(long)plen);
		assert_memory_equal(dec, plain, plen);
		/* Without padding. */
		unpadded = blen;
		while (unpadded > 0 && b64[unpadded - 1] == '=')
			unpadded--;
		assert_int_equal(
			webhook_b64_decode(b64, unpadded, dec, sizeof(dec)),
			(long)plen);
		assert_memory_equal(dec, plain, plen);
		/* Exactly enough room, then one byte short. */
		assert_int_equal(webhook_b64_decode(b64, blen, dec, plen),
				 (long)plen);
		if (plen > 0)
			assert_int_equal(
				webhook_b64_decode(b64, blen, dec, plen - 1),
				-1);
		assert_int_equal(
			webhook_b64_encode((const unsigned char *)plain, plen,
					   enc, blen + 1),
			blen);
		assert_int_equal(
			webhook_b64_encode((const unsigned char *)plain, plen,
					   enc, blen),
			0);
		assert_string_equal(enc, "");
	}
}

static void test_b64_alphabet(void **state)
{
	unsigned char all[48], dec[48];
	char enc[72];

	(void)state;
	/* 0x00 0x10 0x83 ... spells the whole alphabet in order. */
	for (int i = 0; i < 48; i++) {
		unsigned v = (unsigned)(4 * (i / 3));

		/* Four 6-bit values 4k..4k+3 packed into three bytes. */
		if (i % 3 == 0)
			all[i] = (unsigned char)(v << 2 | (v + 1) >> 4);
		else if (i % 3 == 1)
			all[i] = (unsigned char)((v + 1) << 4 | (v + 2) >> 2);
		else
			all[i] = (unsigned char)((v + 2) << 6 | (v + 3));
	}
	assert_int_equal(webhook_b64_encode(all, 48, enc, sizeof(enc)), 64);
	assert_string_equal(enc,
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvw"
			    "xyz0123456789+/");
	assert_int_equal(webhook_b64_decode(enc, 64, dec, sizeof(dec)), 48);
	assert_memory_equal(dec, all, 48);
}

static void test_b64_round_trip(void **state)
{
	unsigned char in[70], out[70];
	char enc[100];
	uint32_t x = 99;

	(void)state;
	for (size_t n = 0; n < sizeof(in); n++) {
		size_t len;

		for (size_t i = 0; i < n; i++)
			in[i] = (unsigned char)((x = x * 1664525 +
						     1013904223) >>
						24);
		len = webhook_b64_encode(in, n, enc, sizeof(enc));
		assert_int_equal(len, (n + 2) / 3 * 4);
		assert_int_equal(webhook_b64_decode(enc, len, out, sizeof(out)),
				 (long)n);
		assert_memory_equal(out, in, n);
	}
}

static void test_b64_bad_input(void **state)
{
	static const char *const bad[] = {
		"Z",	      /* a lone character is no byte */
		"Zm9vY",      /* nor is a fifth */
		"Zg=",	      /* padding that does not complete the group */
		"Zm8==",      /* too much padding */
		"Zg===",      /* even more */
		"====",	      /* padding alone */
		"Z===",	      /* padding for a lone character */
		"=Zg=",	      /* padding first */
		"Zg==Zg==",   /* padding in the middle */
		"Zm9v\n",     /* whitespace */
		"Zm 9v",      /* inside */
		" Zm9v",      /* in front */
		"Zm9v-_",     /* the URL alphabet */
		"Zm9v*",      /* a stray character */
		"Zh==",	      /* bits past the byte: 'h' */
		"Zm9=",	      /* ...and '9' */
		"Zm9vYh",     /* unpadded, leftover bits */
		"Zm9vYmF",    /* the same with two bytes */
		"\xc3\xa9xx", /* not ASCII */
	};
	unsigned char out[16];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(webhook_b64_decode(bad[i], strlen(bad[i]), out,
						    sizeof(out)),
				 -1);
	/* A NUL inside the length is a bad character too. */
	assert_int_equal(webhook_b64_decode("Zm\0v", 4, out, sizeof(out)), -1);
	/* Only n characters are read. */
	assert_int_equal(webhook_b64_decode("Zm9v!!!!", 4, out, sizeof(out)),
			 3);
	assert_int_equal(webhook_b64_decode("", 0, out, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_vector),
		cmocka_unit_test(test_reference_vector_last_char),
		cmocka_unit_test(test_tampered_body),
		cmocka_unit_test(test_tampered_id),
		cmocka_unit_test(test_timestamp_tolerance),
		cmocka_unit_test(test_timestamp_stale_before_signature),
		cmocka_unit_test(test_timestamp_custom_tolerance),
		cmocka_unit_test(test_timestamp_real_clock),
		cmocka_unit_test(test_timestamp_malformed),
		cmocka_unit_test(test_several_entries),
		cmocka_unit_test(test_other_version_only),
		cmocka_unit_test(test_garbage_signatures),
		cmocka_unit_test(test_long_signature_header),
		cmocka_unit_test(test_missing_headers),
		cmocka_unit_test(test_header_lookup),
		cmocka_unit_test(test_id_length),
		cmocka_unit_test(test_bad_request),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_secret_without_prefix),
		cmocka_unit_test(test_bad_secret),
		cmocka_unit_test(test_secret_length),
		cmocka_unit_test(test_sign_round_trip),
		cmocka_unit_test(test_sign_errors),
		cmocka_unit_test(test_b64_rfc4648),
		cmocka_unit_test(test_b64_alphabet),
		cmocka_unit_test(test_b64_round_trip),
		cmocka_unit_test(test_b64_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
