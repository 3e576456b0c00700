/*
 * s3.c - the `s3` sink: stores objects in an S3-compatible bucket.
 *
 * Two transports sign requests (s3.h says which file does what):
 *   - signature = v4 (the default): libcurl's built-in AWS Signature V4
 *     (CURLOPT_AWS_SIGV4), which AWS, MinIO, Ceph, R2, B2 and the rest
 *     accept;
 *   - signature = v2: libs3 2.0, Debian's libs3, which signs with AWS
 *     Signature V2 only, in the companion object s3/sigv2.so that
 *     create() loads for the first v2 instance (sigv2_load.c): s3.so
 *     itself does not link libs3. Kept for older MinIO and Ceph RGW setups. AWS
 *     refuses V2 for buckets made after 2020-06-24; R2 and B2 never took it.
 *     libs3 2.0 also does not verify TLS certificates (it sets
 *     CURLOPT_SSL_VERIFYPEER to 0), so create() logs a warning for v2 over
 *     https.
 *
 * Everything around the transport is shared: key and metadata checks, the
 * digests (Content-MD5 on every PUT, x-amz-content-sha256 for V4), the
 * 5 GiB single-PUT limit (there is no multipart upload here), retries and
 * the mapping of S3 answers to darkroom errors:
 *
 *   sink_unavailable  no answer, a timeout or 5xx/429 after the retries
 *                     (DR_ERR_UNAVAILABLE, retryable)
 *   sink_auth         401/403 and the credential codes (DR_ERR_AUTH)
 *   sink_no_bucket    404 NoSuchBucket (DR_ERR_CONFIG)
 *   not_found         the object is absent on get/stat (DR_ERR_NOT_FOUND)
 *   too_large         over 5 GiB on put, over max_bytes on get
 *   sink_error        any other refusal, with S3's error Code
 *   sink_io           the local source could not be read (DR_ERR_IO)
 *   invalid_key, invalid_meta, invalid_source    the caller's input
 *
 * Retries: up to `retries` more attempts after 0.2, 0.5, then 1 s, for
 * transport failures, 5xx, 429 and 400 RequestTimeout. A PUT is safe to
 * repeat: darkroom's keys are content-addressed, so a repeat writes the
 * same bytes.
 *
 * `timeout` bounds a whole request, transfer included (raise it for large
 * objects on slow links); `connect_timeout` the connection set-up (v4
 * only: libs3 has no such setting, and its requests are bounded by
 * `timeout` alone).
 *
 * Messages name the operation, key, endpoint, HTTP status and S3's own
 * Code and Message; never credentials or signatures (a Message that
 * happens to contain either key is dropped).
 *
 * The plugin uses only the host table: no core symbol.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "s3.h"

/* Delays before the 1st, 2nd and later retries, in milliseconds. */
static const long retry_delay_ms[] = { 200, 500, 1000 };

static const dr_config_key s3_keys[] = {
	{ "endpoint", DR_CFG_URL, NULL, "DARKROOM_S3_ENDPOINT", 0,
	  "S3 endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com or "
	  "http://127.0.0.1:9000 (default: "
	  "https://s3.<region>.amazonaws.com)" },
	{ "bucket", DR_CFG_STRING, NULL, "DARKROOM_S3_BUCKET", DR_CFG_REQUIRED,
	  "bucket the objects are stored in" },
	{ "region", DR_CFG_STRING, "us-east-1", "DARKROOM_S3_REGION", 0,
	  "region of the bucket, signed into every V4 request" },
	{ "access_key", DR_CFG_STRING, NULL, "DARKROOM_S3_ACCESS_KEY",
	  DR_CFG_SECRET, "access key id" },
	{ "secret_key", DR_CFG_STRING, NULL, "DARKROOM_S3_SECRET_KEY",
	  DR_CFG_SECRET, "secret access key" },
	{ "signature", DR_CFG_STRING, "v4", "DARKROOM_S3_SIGNATURE", 0,
	  "v4 (AWS Signature V4, libcurl) or v2 (AWS Signature V2, libs3; "
	  "older MinIO and Ceph only)" },
	{ "addressing", DR_CFG_STRING, "path", NULL, 0,
	  "path (endpoint/bucket/key) or virtual (bucket.endpoint/key)" },
	{ "public_base_url", DR_CFG_URL, NULL, "DARKROOM_CDN_BASE_URL", 0,
	  "public URL objects are served under (default: the bucket's own "
	  "URL)" },
	{ "timeout", DR_CFG_DURATION, "60s", NULL, 0,
	  "longest time one request may take, transfer included" },
	{ "connect_timeout", DR_CFG_DURATION, "10s", NULL, 0,
	  "longest time to connect (v4 only)" },
	{ "retries", DR_CFG_INT, "3", NULL, 0,
	  "attempts after the first on network errors and 5xx, 0 to 10" },
	{ "prefix", DR_CFG_STRING, NULL, NULL, 0,
	  "key prefix inside the bucket, e.g. media/ (a '/' is added)" },
	{ NULL, 0, NULL, NULL, 0, NULL },
};

static const char *op_name(s3_op op)
{
	switch (op) {
	case S3_PUT:
		return "PUT";
	case S3_GET:
		return "GET";
	case S3_HEAD:
		return "HEAD";
	case S3_DELETE:
		return "DELETE";
	}
	return "?";
}

/* ------------------------------------------------------------------------
 * Keys and URLs
 */

static int key_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
	       c == '/';
}

/*
 * 1 when `key` is a relative path of [A-Za-z0-9._/-] with non-empty
 * segments none of which is "." or "..", of 1..max bytes. Dot segments
 * are refused because HTTP clients and servers may fold them.
 */
static int valid_path(const char *key, size_t max)
{
	const char *seg = key;
	size_t n = 0;

	if (!key || !key[0])
		return 0;
	for (const char *p = key;; p++, n++) {
		if (*p == '/' || *p == '\0') {
			size_t len = (size_t)(p - seg);

			if (len == 0 || (len == 1 && seg[0] == '.') ||
			    (len == 2 && seg[0] == '.' && seg[1] == '.'))
				return 0;
			if (*p == '\0')
				break;
			seg = p + 1;
			continue;
		}
		if (n >= max || !key_char_ok(*p))
			return 0;
	}
	return 1;
}

static dr_status check_key(const s3_sink *s, const char *key, dr_error *err)
{
	char shown[65];
	size_t i = 0;

	if (valid_path(key, S3_KEY_MAX - strlen(s->prefix)))
		return DR_OK;
	for (; key && key[i] && i < sizeof(shown) - 1; i++)
		shown[i] = (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
	shown[i] = '\0';
	return s->host->fail(err, DR_ERR_INVALID, "invalid_key",
			     "invalid object key '%s%s': keys are relative "
			     "paths of A-Z a-z 0-9 . _ - / without empty, '.' "
			     "or '..' segments, at most %zu bytes",
			     shown, key && key[i] ? "..." : "",
			     S3_KEY_MAX - strlen(s->prefix));
}

/* prefix + key into buf (the key already checked to fit). */
static void full_key(const s3_sink *s, const char *key, char *buf, size_t bufsz)
{
	snprintf(buf, bufsz, "%s%s", s->prefix, key);
}

int s3_object_url(const s3_sink *s, const char *key, char *buf, size_t bufsz)
{
	size_t len;
	int n;

	if (s->virtual_host)
		n = snprintf(buf, bufsz, "%s://%s.%s/",
			     s->https ? "https" : "http", s->bucket,
			     s->host_port);
	else
		n = snprintf(buf, bufsz, "%s/%s/", s->base_url, s->bucket);
	if (n < 0 || (size_t)n >= bufsz)
		return -1;
	len = (size_t)n;
	return s3_encode_path(key, buf, bufsz, &len);
}

/* ------------------------------------------------------------------------
 * Errors
 */

/* S3 error codes that mean the credentials or the signature are wrong. */
static int auth_code(const char *code)
{
	static const char *const codes[] = {
		"AccessDenied",
		"SignatureDoesNotMatch",
		"InvalidAccessKeyId",
		"AuthorizationHeaderMalformed",
		"InvalidToken",
		"ExpiredToken",
		"TokenRefreshRequired",
		"RequestTimeTooSkewed",
		"AccountProblem",
		"MissingSecurityHeader",
		NULL,
	};

	for (size_t i = 0; codes[i]; i++)
		if (strcmp(code, codes[i]) == 0)
			return 1;
	return 0;
}

int s3_retryable(const s3_result *r)
{
	if (r->abort != S3_ABORT_NONE)
		return 0;
	if (r->transport)
		return 1;
	if (r->http >= 500 || r->http == 429)
		return 1;
	/* "Your socket connection to the server was not read from or
	 * written to within the timeout period": the SDKs retry it. */
	return r->http == 400 && strcmp(r->code, "RequestTimeout") == 0;
}

/* Drop S3's message when it mentions a credential (it should not, but a
 * proxy or an odd server might echo a header). */
static const char *safe_message(const s3_sink *s, const char *msg)
{
	if (!msg[0])
		return "";
	if ((s->access_key && s->access_key[0] && strstr(msg, s->access_key)) ||
	    (s->secret_key && s->secret_key[0] && strstr(msg, s->secret_key)))
		return "(message withheld: it quotes a credential)";
	return msg;
}

static dr_status fail_answer(const s3_sink *s, dr_error *err, dr_status st,
			     const char *code, s3_op op, const char *key,
			     const s3_result *r)
{
	const char *m = safe_message(s, r->message);

	return s->host->fail(err, st, code,
			     "S3 %s of '%s' in bucket '%s' failed: HTTP %ld%s%s"
			     "%s%s",
			     op_name(op), key, s->bucket, r->http,
			     r->code[0] ? " " : "", r->code, m[0] ? ": " : "",
			     m);
}

dr_status s3_classify(const s3_sink *s, s3_op op, const char *key,
		      const s3_result *r, int attempts, dr_error *err)
{
	dr_status st;

	if (r->abort == S3_ABORT_SOURCE)
		return s->host->fail(err, DR_ERR_IO, "sink_io",
				     "cannot upload '%s': the source could not "
				     "be read to its declared size",
				     key);
	if (r->abort == S3_ABORT_TOO_LARGE)
		return s->host->fail(err, DR_ERR_TOO_LARGE, "too_large",
				     "object '%s' is over the size limit", key);
	if (r->transport) {
		st = s->host->fail(err, DR_ERR_UNAVAILABLE, "sink_unavailable",
				   "S3 %s of '%s' at %s failed after %d "
				   "attempt%s: %s",
				   op_name(op), key,
				   s->virtual_host ? s->host_port : s->base_url,
				   attempts, attempts == 1 ? "" : "s",
				   r->message[0] ? r->message : "no answer");
		if (err)
			err->retryable = 1;
		return st;
	}
	if (r->http == 0)
		/* Never sent: refused locally (libs3's own checks, a URL
		 * over S3_URL_MAX, out of memory). */
		return s->host->fail(err, DR_ERR_INTERNAL, "sink_error",
				     "S3 %s of '%s' could not be sent: %s",
				     op_name(op), key,
				     r->message[0] ? r->message : "unknown");
	if (r->http >= 200 && r->http < 300)
		return DR_OK;
	if (r->http >= 500 || r->http == 429) {
		st = fail_answer(s, err, DR_ERR_UNAVAILABLE, "sink_unavailable",
				 op, key, r);
		if (err)
			err->retryable = 1;
		return st;
	}
	if (r->http == 401 || r->http == 403 || auth_code(r->code))
		return fail_answer(s, err, DR_ERR_AUTH, "sink_auth", op, key,
				   r);
	if (strcmp(r->code, "NoSuchBucket") == 0)
		return s->host->fail(
			err, DR_ERR_CONFIG, "sink_no_bucket",
			"S3 bucket '%s' does not exist at %s", s->bucket,
			s->virtual_host ? s->host_port : s->base_url);
	if (r->http == 404 && op == S3_DELETE)
		return DR_OK;
	if (r->http == 404 && (op == S3_GET || op == S3_HEAD))
		return s->host->fail(err, DR_ERR_NOT_FOUND, "not_found",
				     "no object '%s'", key);
	if (strcmp(r->code, "EntityTooLarge") == 0)
		return fail_answer(s, err, DR_ERR_TOO_LARGE, "too_large", op,
				   key, r);
	return fail_answer(s, err, DR_ERR_PROVIDER, "sink_error", op, key, r);
}

/* ------------------------------------------------------------------------
 * Performing with retries
 */

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void result_clear(s3_result *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
	r->content_length = -1;
}

/*
 * Perform `req` up to 1 + retries times. On return r holds the last
 * outcome; *attempts how many were made.
 */
static void perform(s3_sink *s, const s3_request *req, s3_result *r,
		    int *attempts)
{
	int n = 0;

	for (;;) {
		result_clear(r);
		if (s->sigv2)
			s3v2_perform(s, req, r);
		else
			s3v4_perform(s, req, r);
		n++;
		if (n > s->retries || !s3_retryable(r))
			break;
		s->host->log(s->inst, DR_LOG_INFO,
			     "event=s3.retry op=%s key=%s attempt=%d http=%ld "
			     "code=%s",
			     op_name(req->op), req->key, n, r->http,
			     r->code[0] ? r->code
					: (r->transport ? "transport" : "-"));
		sleep_ms(retry_delay_ms[n - 1 < 2 ? n - 1 : 2]);
	}
	*attempts = n;
}

/* ------------------------------------------------------------------------
 * Operations
 */

/* User metadata ready for a request: names borrowed from the caller,
 * values encoded (malloc). */
typedef struct meta_set {
	size_t n;
	const char **names;
	char **values;
} meta_set;

static void meta_set_free(meta_set *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->values[i]);
	free(m->names);
	free(m->values);
	memset(m, 0, sizeof(*m));
}

/*
 * Check the metadata and encode its values into `out` (release with
 * meta_set_free, also after a failure). Entries with an empty value are
 * left out: S3 keeps nothing different for them, and curl 7.88 signs an
 * empty header wrongly. DR_ERR_INVALID "invalid_meta" for a bad name, a
 * content type or cache control that is not a safe header value, or
 * metadata over S3's 2 KiB.
 */
static dr_status prepare_meta(const s3_sink *s, const dr_object_meta *meta,
			      meta_set *out, dr_error *err)
{
	char buf[S3_META_VALUE_MAX];
	size_t total = 0;

	memset(out, 0, sizeof(*out));
	if (!meta)
		return DR_OK;
	if (meta->content_type && !s3_header_value_ok(meta->content_type))
		return s->host->fail(err, DR_ERR_INVALID, "invalid_meta",
				     "the content type has characters outside "
				     "printable ASCII");
	if (meta->cache_control && !s3_header_value_ok(meta->cache_control))
		return s->host->fail(err, DR_ERR_INVALID, "invalid_meta",
				     "the cache control has characters "
				     "outside printable ASCII");
	if (meta->content_type && strlen(meta->content_type) > S3_HEADER_MAX)
		return s->host->fail(err, DR_ERR_INVALID, "invalid_meta",
				     "the content type is over %d bytes",
				     S3_HEADER_MAX);
	if (meta->cache_control && strlen(meta->cache_control) > S3_HEADER_MAX)
		return s->host->fail(err, DR_ERR_INVALID, "invalid_meta",
				     "the cache control is over %d bytes",
				     S3_HEADER_MAX);
	if (meta->n_meta == 0)
		return DR_OK;
	if (meta->n_meta > S3_META_COUNT_MAX)
		return s->host->fail(err, DR_ERR_INVALID, "invalid_meta",
				     "%zu metadata entries, over the limit "
				     "of %d",
				     meta->n_meta, S3_META_COUNT_MAX);
	if (!meta->meta_names || !meta->meta_values)
		return s->host->fail(err, DR_ERR_INVALID, "invalid_meta",
				     "metadata without names or values");
	out->names = calloc(meta->n_meta, sizeof(*out->names));
	out->values = calloc(meta->n_meta, sizeof(*out->values));
	if (!out->names || !out->values)
		return s->host->fail(err, DR_ERR_NOMEM, "out_of_memory",
				     "out of memory");
	for (size_t i = 0; i < meta->n_meta; i++) {
		const char *name = meta->meta_names[i];
		const char *value = meta->meta_values[i];
		int n;

		if (!s3_meta_name_ok(name))
			return s->host->fail(
				err, DR_ERR_INVALID, "invalid_meta",
				"metadata name '%.64s' is not 1 to %d of "
				"a-z 0-9 -",
				name ? name : "(null)", S3_META_NAME_MAX);
		if (!value || !value[0])
			continue;
		n = s3_meta_encode(value, buf, sizeof(buf));
		total += strlen(name) + (n < 0 ? sizeof(buf) : (size_t)n);
		if (n < 0 || total > S3_META_MAX)
			return s->host->fail(err, DR_ERR_INVALID,
					     "invalid_meta",
					     "metadata is over S3's limit of "
					     "%d bytes",
					     S3_META_MAX);
		out->values[out->n] = strdup(buf);
		if (!out->values[out->n])
			return s->host->fail(err, DR_ERR_NOMEM, "out_of_memory",
					     "out of memory");
		out->names[out->n++] = name;
	}
	return DR_OK;
}

static dr_status s3_put(void *state, const char *key, const dr_source *src,
			const dr_object_meta *meta, dr_error *err)
{
	s3_sink *s = state;
	char fkey[S3_KEY_MAX + 1];
	char md5[S3_MD5_B64_SIZE], sha[S3_SHA256_HEX_SIZE];
	meta_set ms;
	s3_request req;
	s3_result r;
	int attempts = 0, want_sha;
	dr_status st;

	st = check_key(s, key, err);
	if (st != DR_OK)
		return st;
	if (!src || (!src->data && src->fd < 0 && src->size > 0))
		return s->host->fail(err, DR_ERR_INVALID, "invalid_source",
				     "no bytes given for '%s'", key);
	if (src->size > S3_MAX_PUT)
		return s->host->fail(err, DR_ERR_TOO_LARGE, "too_large",
				     "'%s' has %" PRIu64 " bytes: objects "
				     "above 5 GiB need multipart upload, "
				     "which this sink does not do",
				     key, src->size);
	st = prepare_meta(s, meta, &ms, err);
	if (st != DR_OK) {
		meta_set_free(&ms);
		return st;
	}

	/* The core gives the SHA-256 it computed anyway; only V4 needs it. */
	want_sha = !s->sigv2 && !(meta && s3_is_sha256_hex(meta->sha256_hex));
	if (!s->sigv2 && !want_sha) {
		for (size_t i = 0; i < 64; i++) {
			char c = meta->sha256_hex[i];

			sha[i] = (c >= 'A' && c <= 'F') ? (char)(c + 32) : c;
		}
		sha[64] = '\0';
	}
	if (s3_digest_source(src, md5, want_sha ? sha : NULL) != 0) {
		int e = errno;

		meta_set_free(&ms);
		if (e == ENOMEM)
			return s->host->fail(err, DR_ERR_NOMEM, "out_of_memory",
					     "out of memory");
		return s->host->fail(err, DR_ERR_IO, "sink_io",
				     "cannot read the source of '%s': %s", key,
				     e == EIO ? "shorter than its size"
					      : strerror(e));
	}

	full_key(s, key, fkey, sizeof(fkey));
	memset(&req, 0, sizeof(req));
	req.op = S3_PUT;
	req.key = fkey;
	req.src = src;
	req.content_type = meta && meta->content_type && meta->content_type[0]
				   ? meta->content_type
				   : "application/octet-stream";
	req.cache_control =
		meta && meta->cache_control && meta->cache_control[0]
			? meta->cache_control
			: NULL;
	req.md5_b64 = md5;
	req.sha256_hex = s->sigv2 ? NULL : sha;
	req.n_meta = ms.n;
	req.meta_names = ms.names;
	req.meta_values = (const char *const *)ms.values;

	memset(&r, 0, sizeof(r));
	perform(s, &req, &r, &attempts);
	st = s3_classify(s, S3_PUT, key, &r, attempts, err);
	if (st == DR_OK)
		s->host->log(s->inst, DR_LOG_DEBUG,
			     "event=s3.put key=%s bytes=%" PRIu64
			     " attempts=%d",
			     fkey, src->size, attempts);
	result_clear(&r);
	meta_set_free(&ms);
	return st;
}

static dr_status s3_get(void *state, const char *key, uint64_t max_bytes,
			void **data, size_t *len, dr_error *err)
{
	s3_sink *s = state;
	char fkey[S3_KEY_MAX + 1];
	s3_request req;
	s3_result r;
	int attempts = 0;
	dr_status st;

	*data = NULL;
	*len = 0;
	st = check_key(s, key, err);
	if (st != DR_OK)
		return st;
	full_key(s, key, fkey, sizeof(fkey));
	memset(&req, 0, sizeof(req));
	req.op = S3_GET;
	req.key = fkey;
	req.max_bytes = max_bytes;

	memset(&r, 0, sizeof(r));
	perform(s, &req, &r, &attempts);
	if (r.abort == S3_ABORT_TOO_LARGE) {
		st = s->host->fail(err, DR_ERR_TOO_LARGE, "too_large",
				   "object '%s' is over the limit of %" PRIu64
				   " bytes",
				   key, max_bytes);
	} else {
		st = s3_classify(s, S3_GET, key, &r, attempts, err);
	}
	if (st == DR_OK) {
		/* An empty object still gets a real buffer. */
		if (!r.body)
			r.body = malloc(1);
		if (!r.body) {
			st = s->host->fail(err, DR_ERR_NOMEM, "out_of_memory",
					   "out of memory");
		} else {
			*data = r.body;
			*len = r.body_len;
			r.body = NULL;
		}
	}
	result_clear(&r);
	return st;
}

/*
 * After a HEAD answered 404 (HEAD answers have no body): a one-byte GET
 * of the same key tells NoSuchKey from NoSuchBucket.
 */
static dr_status probe_missing(s3_sink *s, const char *key, const char *fkey,
			       dr_error *err)
{
	s3_request req;
	s3_result r;
	int attempts = 0;
	dr_status st;

	memset(&req, 0, sizeof(req));
	req.op = S3_GET;
	req.key = fkey;
	req.max_bytes = 1;
	req.probe = 1;
	memset(&r, 0, sizeof(r));
	perform(s, &req, &r, &attempts);
	if (r.http >= 200 && r.http < 300)
		/* Created in between: the HEAD's answer stands. */
		st = s->host->fail(err, DR_ERR_NOT_FOUND, "not_found",
				   "no object '%s'", key);
	else
		st = s3_classify(s, S3_HEAD, key, &r, attempts, err);
	result_clear(&r);
	return st;
}

static dr_status s3_stat(void *state, const char *key, uint64_t *size,
			 dr_error *err)
{
	s3_sink *s = state;
	char fkey[S3_KEY_MAX + 1];
	s3_request req;
	s3_result r;
	int attempts = 0;
	dr_status st;

	st = check_key(s, key, err);
	if (st != DR_OK)
		return st;
	full_key(s, key, fkey, sizeof(fkey));
	memset(&req, 0, sizeof(req));
	req.op = S3_HEAD;
	req.key = fkey;

	memset(&r, 0, sizeof(r));
	perform(s, &req, &r, &attempts);
	if (r.http == 404 && !r.code[0]) {
		result_clear(&r);
		return probe_missing(s, key, fkey, err);
	}
	st = s3_classify(s, S3_HEAD, key, &r, attempts, err);
	if (st == DR_OK) {
		if (r.content_length < 0)
			st = s->host->fail(err, DR_ERR_PROVIDER, "sink_error",
					   "S3 HEAD of '%s' answered without "
					   "a Content-Length",
					   key);
		else
			*size = (uint64_t)r.content_length;
	}
	result_clear(&r);
	return st;
}

static dr_status s3_remove(void *state, const char *key, dr_error *err)
{
	s3_sink *s = state;
	char fkey[S3_KEY_MAX + 1];
	s3_request req;
	s3_result r;
	int attempts = 0;
	dr_status st;

	st = check_key(s, key, err);
	if (st != DR_OK)
		return st;
	full_key(s, key, fkey, sizeof(fkey));
	memset(&req, 0, sizeof(req));
	req.op = S3_DELETE;
	req.key = fkey;

	memset(&r, 0, sizeof(r));
	perform(s, &req, &r, &attempts);
	st = s3_classify(s, S3_DELETE, key, &r, attempts, err);
	result_clear(&r);
	return st;
}

static dr_status s3_public_url(void *state, const char *key, char *buf,
			       size_t bufsz)
{
	s3_sink *s = state;
	size_t len;
	int n;

	if (bufsz > 0)
		buf[0] = '\0';
	if (!valid_path(key, S3_KEY_MAX - strlen(s->prefix)))
		return DR_ERR_INVALID;
	if (bufsz == 0)
		return DR_ERR_TOO_LARGE;
	n = snprintf(buf, bufsz, "%s/", s->public_base);
	if (n < 0 || (size_t)n >= bufsz)
		goto too_large;
	len = (size_t)n;
	if (s3_encode_path(s->prefix, buf, bufsz, &len) != 0 ||
	    s3_encode_path(key, buf, bufsz, &len) != 0)
		goto too_large;
	return DR_OK;

too_large:
	buf[0] = '\0';
	return DR_ERR_TOO_LARGE;
}

/* ------------------------------------------------------------------------
 * Instances
 */

/*
 * S3 bucket naming rules: 3 to 63 of a-z 0-9 . -, starting and ending with
 * a letter or digit, no "..", not an IPv4 address, none of the reserved
 * prefixes and suffixes. NULL when valid, else why not.
 */
static const char *bucket_problem(const char *b)
{
	size_t n = strlen(b);
	int digits_dots = 1;

	if (n < 3 || n > 63)
		return "must be 3 to 63 characters long";
	for (size_t i = 0; i < n; i++) {
		char c = b[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-'))
			return "may only have a-z, 0-9, '.' and '-'";
		if (!((c >= '0' && c <= '9') || c == '.'))
			digits_dots = 0;
	}
	if (!((b[0] >= 'a' && b[0] <= 'z') || (b[0] >= '0' && b[0] <= '9')) ||
	    !((b[n - 1] >= 'a' && b[n - 1] <= 'z') ||
	      (b[n - 1] >= '0' && b[n - 1] <= '9')))
		return "must start and end with a letter or digit";
	if (strstr(b, "..") || strstr(b, ".-") || strstr(b, "-."))
		return "may not have '..', '.-' or '-.'";
	if (digits_dots) {
		int dots = 0;

		for (size_t i = 0; i < n; i++)
			dots += b[i] == '.';
		if (dots == 3)
			return "may not look like an IP address";
	}
	if (strncmp(b, "xn--", 4) == 0 || strncmp(b, "sthree-", 7) == 0)
		return "may not start with 'xn--' or 'sthree-'";
	if ((n > 8 && strcmp(b + n - 8, "-s3alias") == 0) ||
	    (n > 7 && strcmp(b + n - 7, "--ol-s3") == 0))
		return "may not end with '-s3alias' or '--ol-s3'";
	return NULL;
}

/* 1 when `s` is 1..max of a-z 0-9 '-' (a region: it is signed). */
static int region_ok(const char *r)
{
	size_t n = 0;

	for (; r[n]; n++)
		if (!((r[n] >= 'a' && r[n] <= 'z') ||
		      (r[n] >= '0' && r[n] <= '9') || r[n] == '-'))
			return 0;
	return n > 0 && n <= 32;
}

/* An access key is sent as is: printable ASCII without spaces or ':'
 * (the SigV2 Authorization header is "AWS <key>:<signature>"). */
static int access_key_ok(const char *k)
{
	for (const char *p = k; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == ':')
			return 0;
	return k[0] != '\0';
}

static int secret_ok(const char *k)
{
	for (const char *p = k; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			return 0;
	return k[0] != '\0';
}

/* 1 when the host is an IP literal (no bucket subdomain possible). */
static int host_is_ip(const char *h)
{
	if (h[0] == '[')
		return 1;
	for (const char *p = h; *p; p++)
		if (!((*p >= '0' && *p <= '9') || *p == '.'))
			return 0;
	return 1;
}

static char *strip_slashes(const char *u)
{
	size_t len = strlen(u);

	while (len > 0 && u[len - 1] == '/')
		len--;
	return strndup(u, len);
}

/*
 * Parse the endpoint with libcurl's URL parser into scheme, host[:port]
 * and base URL. It must be http(s) with a host and nothing after it but
 * an optional "/": no user, path, query or fragment (libs3 could not
 * follow a path, and credentials belong in their own keys).
 */
static dr_status parse_endpoint(s3_sink *s, const char *endpoint, dr_error *err)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	char *user = NULL, *query = NULL, *frag = NULL;
	const char *problem = NULL;
	dr_status st = DR_OK;
	size_t len;

	if (!u)
		return s->host->fail(err, DR_ERR_NOMEM, "out_of_memory",
				     "out of memory");
	if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		problem = "is not a URL";
		goto out;
	}
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	curl_url_get(u, CURLUPART_USER, &user, 0);
	curl_url_get(u, CURLUPART_QUERY, &query, 0);
	curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
	if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)
		problem = "must start with http:// or https://";
	else if (!host[0])
		problem = "has no host";
	else if (user)
		problem = "may not carry credentials: use access_key and "
			  "secret_key";
	else if ((path && strcmp(path, "/") != 0 && path[0]) || query || frag)
		problem = "may not have a path, query or fragment";
	if (problem)
		goto out;

	s->https = strcmp(scheme, "https") == 0;
	s->host_name = strdup(host);
	len = strlen(host) + (port ? strlen(port) + 1 : 0) + 1;
	s->host_port = malloc(len);
	s->base_url = malloc(len + 8);
	if (!s->host_name || !s->host_port || !s->base_url) {
		st = s->host->fail(err, DR_ERR_NOMEM, "out_of_memory",
				   "out of memory");
		goto out;
	}
	snprintf(s->host_port, len, "%s%s%s", host, port ? ":" : "",
		 port ? port : "");
	snprintf(s->base_url, len + 8, "%s://%s", scheme, s->host_port);

out:
	if (problem)
		st = s->host->fail(err, DR_ERR_CONFIG, "invalid_config",
				   "endpoint '%.200s' %s", endpoint, problem);
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(user);
	curl_free(query);
	curl_free(frag);
	curl_url_cleanup(u);
	return st;
}

static void s3_destroy(void *state)
{
	s3_sink *s = state;

	if (!s)
		return;
	s3v4_close(s);
	if (s->sigv2)
		s3v2_release();
	free(s->host_name);
	free(s->host_port);
	free(s->base_url);
	free(s->public_base);
	free(s->prefix);
	free(s);
}

#define CONFIG_FAIL(...)                                                       \
	host->fail(err, DR_ERR_CONFIG, "invalid_config", __VA_ARGS__)

/* The prefix without one trailing '/', checked; NULL when invalid. */
static char *normal_prefix(const char *prefix)
{
	size_t len = strlen(prefix);
	char *p;

	if (len > S3_PREFIX_MAX)
		return NULL;
	if (len > 0 && prefix[len - 1] == '/')
		len--;
	p = strndup(prefix, len);
	if (p && len > 0 && !valid_path(p, S3_PREFIX_MAX)) {
		free(p);
		return NULL;
	}
	return p;
}

/* Read and check the keys into s (see the key table). */
static dr_status configure(s3_sink *s, dr_error *err)
{
	const dr_host *host = s->host;
	const dr_instance *inst = s->inst;
	const char *endpoint = host->config_get(inst, "endpoint");
	const char *signature = host->config_get(inst, "signature");
	const char *addressing = host->config_get(inst, "addressing");
	const char *public_base = host->config_get(inst, "public_base_url");
	const char *prefix = host->config_get(inst, "prefix");
	const char *problem;
	char def[128], *p;
	size_t n;
	double t;
	int64_t retries;
	dr_status st;

	s->bucket = host->config_get(inst, "bucket");
	s->region = host->config_get(inst, "region");
	s->access_key = host->config_get(inst, "access_key");
	s->secret_key = host->config_get(inst, "secret_key");
	if (!s->region || !s->region[0])
		s->region = "us-east-1";

	if (!s->bucket || !s->bucket[0])
		return CONFIG_FAIL("bucket must be set (or "
				   "DARKROOM_S3_BUCKET)");
	problem = bucket_problem(s->bucket);
	if (problem)
		return CONFIG_FAIL("bucket '%.64s' %s", s->bucket, problem);
	if (!region_ok(s->region))
		return CONFIG_FAIL("region '%.40s' must be 1 to 32 of a-z "
				   "0-9 -",
				   s->region);
	if (!signature || strcasecmp(signature, "v4") == 0)
		s->sigv2 = 0;
	else if (strcasecmp(signature, "v2") == 0)
		s->sigv2 = 1;
	else
		return CONFIG_FAIL("signature '%.16s' must be v4 or v2",
				   signature);
	if (!addressing || strcmp(addressing, "path") == 0)
		s->virtual_host = 0;
	else if (strcmp(addressing, "virtual") == 0)
		s->virtual_host = 1;
	else
		return CONFIG_FAIL("addressing '%.16s' must be path or "
				   "virtual",
				   addressing);
	if (!s->access_key || !s->access_key[0] || !s->secret_key ||
	    !s->secret_key[0])
		return CONFIG_FAIL("access_key and secret_key must be set (or "
				   "DARKROOM_S3_ACCESS_KEY and "
				   "DARKROOM_S3_SECRET_KEY)");
	/* The values are secret: say what is wrong, not what they are. */
	if (!access_key_ok(s->access_key))
		return CONFIG_FAIL("access_key must be printable ASCII "
				   "without spaces or ':'");
	if (!secret_ok(s->secret_key))
		return CONFIG_FAIL("secret_key must be printable ASCII");

	if (!endpoint || !endpoint[0]) {
		snprintf(def, sizeof(def), "https://s3.%s.amazonaws.com",
			 s->region);
		endpoint = def;
	}
	st = parse_endpoint(s, endpoint, err);
	if (st != DR_OK)
		return st;
	if (s->virtual_host && host_is_ip(s->host_name))
		return CONFIG_FAIL("addressing = virtual needs a host name, "
				   "not the address %.64s: use path",
				   s->host_name);
	if (s->virtual_host && s->https && strchr(s->bucket, '.'))
		host->log(inst, DR_LOG_WARNING,
			  "event=s3.config_warning reason=\"a bucket name with "
			  "'.' under virtual addressing does not match "
			  "wildcard TLS certificates\" bucket=%s",
			  s->bucket);

	/* "media" and "media/" both mean the folder media/. */
	p = normal_prefix(prefix ? prefix : "");
	if (!p)
		return CONFIG_FAIL("prefix '%.64s' must be a relative path of "
				   "A-Z a-z 0-9 . _ - / without empty, '.' or "
				   "'..' segments, at most %d bytes",
				   prefix, S3_PREFIX_MAX);
	n = strlen(p);
	s->prefix = malloc(n + 2);
	if (!s->prefix) {
		free(p);
		return host->fail(err, DR_ERR_NOMEM, "out_of_memory",
				  "out of memory");
	}
	snprintf(s->prefix, n + 2, "%s%s", p, n ? "/" : "");
	free(p);

	if (public_base && public_base[0]) {
		s->public_base = strip_slashes(public_base);
	} else if (s->virtual_host) {
		n = strlen(s->bucket) + strlen(s->host_port) + 16;
		s->public_base = malloc(n);
		if (s->public_base)
			snprintf(s->public_base, n, "%s://%s.%s",
				 s->https ? "https" : "http", s->bucket,
				 s->host_port);
	} else {
		n = strlen(s->base_url) + strlen(s->bucket) + 2;
		s->public_base = malloc(n);
		if (s->public_base)
			snprintf(s->public_base, n, "%s/%s", s->base_url,
				 s->bucket);
	}
	if (!s->public_base)
		return host->fail(err, DR_ERR_NOMEM, "out_of_memory",
				  "out of memory");

	t = host->config_seconds(inst, "timeout");
	if (t < 0.001 || t > 86400)
		return CONFIG_FAIL("timeout must be between 1ms and 24h");
	s->timeout_ms = (long)(t * 1000 + 0.5);
	t = host->config_seconds(inst, "connect_timeout");
	if (t < 0.001 || t > 3600)
		return CONFIG_FAIL("connect_timeout must be between 1ms and "
				   "1h");
	s->connect_timeout_ms = (long)(t * 1000 + 0.5);
	retries = host->config_int(inst, "retries");
	if (retries < 0 || retries > S3_RETRIES_MAX)
		return CONFIG_FAIL("retries must be between 0 and %d",
				   S3_RETRIES_MAX);
	s->retries = (int)retries;
	snprintf(s->sigv4_param, sizeof(s->sigv4_param), "aws:amz:%s:s3",
		 s->region);
	return DR_OK;
}

#undef CONFIG_FAIL

static dr_status s3_create(const dr_host *host, const dr_instance *inst,
			   void **state, dr_error *err)
{
	s3_sink *s;
	dr_status st;

	*state = NULL;
	/* The core refuses plugins of another ABI, so this only guards
	 * against a host table that is not what it says; err is filled by
	 * hand since the table itself is in doubt. */
	if (host->abi_version != DR_PLUGIN_ABI_VERSION ||
	    host->size < sizeof(dr_host)) {
		if (err) {
			memset(err, 0, sizeof(*err));
			err->status = DR_ERR_PLUGIN;
			snprintf(err->code, sizeof(err->code), "plugin_abi");
			snprintf(err->message, sizeof(err->message),
				 "the s3 sink needs plugin ABI %u",
				 DR_PLUGIN_ABI_VERSION);
		}
		return DR_ERR_PLUGIN;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return host->fail(err, DR_ERR_NOMEM, "out_of_memory",
				  "out of memory");
	s->host = host;
	s->inst = inst;
	st = configure(s, err);
	if (st != DR_OK) {
		s->sigv2 = 0; /* libs3 was not acquired */
		goto err_state;
	}
	if (s->sigv2) {
		if (s3v2_acquire(s, err) != 0) {
			s->sigv2 = 0;
			st = err ? err->status : DR_ERR_PLUGIN;
			goto err_state;
		}
		if (s->https)
			host->log(inst, DR_LOG_WARNING,
				  "event=s3.config_warning reason=\"libs3 2.0 "
				  "(signature = v2) does not verify TLS "
				  "certificates; prefer signature = v4\"");
	}
	host->log(inst, DR_LOG_DEBUG,
		  "event=s3.ready endpoint=%s bucket=%s signature=%s "
		  "addressing=%s prefix=%s",
		  s->base_url, s->bucket, s->sigv2 ? "v2" : "v4",
		  s->virtual_host ? "virtual" : "path",
		  s->prefix[0] ? s->prefix : "-");
	*state = s;
	return DR_OK;

err_state:
	s3_destroy(s);
	return st;
}

/* A presigned GET URL of `key` (presign.c): SigV4 only. */
static dr_status s3_presign(void *state, const char *key, double at, double ttl,
			    char *buf, size_t bufsz, dr_error *err)
{
	s3_sink *s = state;
	char full[S3_KEY_MAX + 1], url[S3_KEY_MAX * 3 + 512];
	dr_status st;

	st = check_key(s, key, err);
	if (st != DR_OK)
		return st;
	if (s->sigv2)
		return s->host->fail(err, DR_ERR_UNSUPPORTED, "unsupported",
				     "presigned URLs need signature = v4");
	if (!(ttl >= 1 && ttl <= 604800))
		return s->host->fail(err, DR_ERR_INVALID, "invalid_ttl",
				     "a presigned URL lasts 1 s to 7 days");
	full_key(s, key, full, sizeof(full));
	if (s3_object_url(s, full, url, sizeof(url)) != 0 ||
	    s3_presign_v4(url, s->region, s->access_key, s->secret_key,
			  (time_t)at, (long)ttl, buf, bufsz) != 0)
		return s->host->fail(err, DR_ERR_TOO_LARGE, "too_large",
				     "the presigned URL of '%s' does not fit",
				     key);
	return DR_OK;
}

static const dr_sink_ops s3_ops = {
	.size = sizeof(dr_sink_ops),
	.put = s3_put,
	.get = s3_get,
	.remove = s3_remove,
	.public_url = s3_public_url,
	.stat = s3_stat,
	.presign = s3_presign,
};

static const dr_plugin s3_plugin = {
	.abi_version = DR_PLUGIN_ABI_VERSION,
	.size = sizeof(dr_plugin),
	.name = "s3",
	.kind = DR_PLUGIN_SINK,
	.version = "1.0",
	.description = "stores outputs in an S3-compatible bucket (SigV4 "
		       "with libcurl, SigV2 with libs3)",
	.config_keys = s3_keys,
	.create = s3_create,
	.destroy = s3_destroy,
	.sink = &s3_ops,
};

DR_PLUGIN_DEFINE(s3_plugin)
