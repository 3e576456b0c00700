/*
 * sigv2.c - the `s3` sink's transport for AWS Signature V2, on libs3 2.0.
 *
 * This file is built into a companion object of its own, s3/sigv2.so in
 * the plugin folder, not into s3.so: it is the only part of the sink that
 * links libs3 (and, through libs3, the GnuTLS flavour of libcurl). s3.so
 * loads it (sigv2_load.c) only when an instance says signature = v2, so a
 * process that stores with V4, or does not store through s3 at all, maps
 * neither library. Like a plugin it exports one symbol, s3_sigv2_entry,
 * which returns the table of its operations; the structs it shares with
 * s3.so are in s3.h, and the table carries their sizes so that s3.so
 * refuses a companion from another build.
 *
 * libs3 2.0 (Debian's) signs with V2 only and has its quirks, each
 * handled here:
 *   - S3_initialize() is once per process and not thread-safe: it runs
 *     when the first v2 instance is created (creation happens on one
 *     thread; sigv2_load.c counts the instances) and S3_deinitialize()
 *     when the last is destroyed;
 *   - a zero-initialised S3PutProperties sends "Expires: Thu, 01 Jan 1970"
 *     (expires 0 means the epoch): expires is set to -1;
 *   - its PUT properties callback never fires, so nothing here needs an
 *     ETag back;
 *   - it has no timeout settings: requests run in an S3RequestContext
 *     driven here with select() up to the sink's `timeout`, then the
 *     context is destroyed, which interrupts them;
 *   - it sets CURLOPT_SSL_VERIFYPEER to 0 (create() warns about https);
 *   - it hides the HTTP status: S3Status values are mapped back to the
 *     status and S3 error Code s3_classify() expects.
 * libs3 URL-encodes the key itself, so it is given the key unencoded.
 *
 * libs3 links the GnuTLS flavour of libcurl; the V4 transport uses the
 * OpenSSL one. Debian builds the two with versioned symbols so that both
 * can live in one process.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <libs3.h>

#include "../s3.h"

/* Longest single wait in the select loop, so the deadline is seen. */
#define WAIT_MAX_MS 100

static int v2_init(const s3_sink *s, dr_error *err)
{
	S3Status st = S3_initialize("darkroom", S3_INIT_ALL, NULL);

	if (st != S3StatusOK) {
		s->host->fail(err, DR_ERR_PLUGIN, "sink_init",
			      "cannot initialise libs3: %s",
			      S3_get_status_name(st));
		return -1;
	}
	return 0;
}

static void v2_deinit(void)
{
	S3_deinitialize();
}

typedef struct v2call {
	const s3_request *req;
	s3_result *r;
	uint64_t off; /* next byte of the upload */
	size_t cap;   /* of r->body */
	int done;     /* the complete callback ran */
	S3Status status;
} v2call;

static S3Status props_cb(const S3ResponseProperties *p, void *cd)
{
	v2call *c = cd;

	c->r->content_length = (int64_t)p->contentLength;
	if (c->req->op == S3_GET && !c->req->probe &&
	    p->contentLength > c->req->max_bytes) {
		c->r->abort = S3_ABORT_TOO_LARGE;
		return S3StatusAbortedByCallback;
	}
	return S3StatusOK;
}

static void complete_cb(S3Status status, const S3ErrorDetails *d, void *cd)
{
	v2call *c = cd;

	c->done = 1;
	c->status = status;
	if (d && d->message)
		snprintf(c->r->message, sizeof(c->r->message), "%s",
			 d->message);
}

static int put_cb(int size, char *buf, void *cd)
{
	v2call *c = cd;
	const dr_source *src = c->req->src;
	uint64_t left = src->size - c->off;
	size_t room = size > 0 ? (size_t)size : 0;
	ssize_t n;

	if (left == 0)
		return 0;
	if (room > left)
		room = (size_t)left;
	if (src->data) {
		memcpy(buf, (const unsigned char *)src->data + c->off, room);
		c->off += room;
		return (int)room;
	}
	do
		n = pread(src->fd, buf, room, (off_t)c->off);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		c->r->abort = S3_ABORT_SOURCE;
		return -1;
	}
	c->off += (uint64_t)n;
	return (int)n;
}

static S3Status get_cb(int size, const char *buf, void *cd)
{
	v2call *c = cd;
	s3_result *r = c->r;
	size_t n = size > 0 ? (size_t)size : 0;

	if ((uint64_t)r->body_len + n > c->req->max_bytes) {
		r->abort = S3_ABORT_TOO_LARGE;
		return S3StatusAbortedByCallback;
	}
	if (r->body_len + n > c->cap) {
		uint64_t want = c->cap ? (uint64_t)c->cap * 2 : 64 * 1024;
		unsigned char *nb;

		if (want < r->body_len + n)
			want = r->body_len + n;
		if (want > c->req->max_bytes)
			want = c->req->max_bytes;
		nb = realloc(r->body, (size_t)want);
		if (!nb)
			return S3StatusOutOfMemory;
		r->body = nb;
		c->cap = (size_t)want;
	}
	memcpy(r->body + r->body_len, buf, n);
	r->body_len += n;
	return S3StatusOK;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000 + (double)ts.tv_nsec / 1e6;
}

/*
 * Run the context until its request completes or `timeout_ms` passes.
 * Returns 0 when it completed, 1 on timeout, -1 when libs3 failed.
 */
static int run(S3RequestContext *ctx, long timeout_ms)
{
	double deadline = now_ms() + (double)timeout_ms;

	for (;;) {
		fd_set rd, wr, ex;
		struct timeval tv;
		int remaining = 0, maxfd = -1;
		int64_t wait;
		double left;

		if (S3_runonce_request_context(ctx, &remaining) != S3StatusOK)
			return -1;
		if (remaining == 0)
			return 0;
		left = deadline - now_ms();
		if (left <= 0)
			return 1;
		FD_ZERO(&rd);
		FD_ZERO(&wr);
		FD_ZERO(&ex);
		if (S3_get_request_context_fdsets(ctx, &rd, &wr, &ex, &maxfd) !=
			    S3StatusOK ||
		    maxfd >= FD_SETSIZE)
			return -1;
		wait = S3_get_request_context_timeout(ctx);
		if (wait < 0 || wait > WAIT_MAX_MS)
			wait = WAIT_MAX_MS;
		if ((double)wait > left)
			wait = (int64_t)left + 1;
		if (maxfd < 0 && wait > 10)
			wait = 10; /* curl has nothing to wait on yet */
		tv.tv_sec = (time_t)(wait / 1000);
		tv.tv_usec = (suseconds_t)((wait % 1000) * 1000);
		if (select(maxfd + 1, &rd, &wr, &ex, &tv) < 0 && errno != EINTR)
			return -1;
	}
}

/* The HTTP status S3 answers with for an error code libs3 parsed. */
static long http_of(S3Status st)
{
	switch (st) {
	case S3StatusErrorAccessDenied:
	case S3StatusErrorAccountProblem:
	case S3StatusErrorInvalidAccessKeyId:
	case S3StatusErrorSignatureDoesNotMatch:
	case S3StatusErrorRequestTimeTooSkewed:
	case S3StatusErrorInvalidSecurity:
	case S3StatusErrorNotSignedUp:
	case S3StatusErrorInvalidPayer:
	case S3StatusErrorMissingSecurityHeader:
	case S3StatusHttpErrorForbidden:
		return 403;
	case S3StatusErrorNoSuchBucket:
	case S3StatusErrorNoSuchKey:
	case S3StatusErrorNoLoggingStatusForKey:
	case S3StatusHttpErrorNotFound:
		return 404;
	case S3StatusErrorMethodNotAllowed:
		return 405;
	case S3StatusErrorBucketAlreadyExists:
	case S3StatusErrorBucketAlreadyOwnedByYou:
	case S3StatusErrorBucketNotEmpty:
	case S3StatusErrorOperationAborted:
	case S3StatusHttpErrorConflict:
		return 409;
	case S3StatusErrorMissingContentLength:
		return 411;
	case S3StatusErrorPreconditionFailed:
		return 412;
	case S3StatusErrorInvalidRange:
		return 416;
	case S3StatusErrorNotImplemented:
		return 501;
	case S3StatusErrorSlowDown:
		return 503;
	case S3StatusErrorInternalError:
	/* Codes libs3 2.0 does not know (ServiceUnavailable among them)
	 * and statuses it could not name (502, 504 from a proxy): likely
	 * the server's trouble, so they are retried. */
	case S3StatusErrorUnknown:
	case S3StatusHttpErrorUnknown:
		return 500;
	case S3StatusErrorPermanentRedirect:
		return 301;
	case S3StatusErrorRedirect:
	case S3StatusErrorTemporaryRedirect:
	case S3StatusHttpErrorMovedTemporarily:
		return 307;
	default:
		return 400;
	}
}

/* Fill r from the final S3Status of a call. */
static void map_status(const s3_sink *s, S3Status st, int timed_out,
		       s3_result *r)
{
	const char *name = S3_get_status_name(st);

	if (r->abort != S3_ABORT_NONE)
		return;
	if (timed_out) {
		r->transport = 1;
		snprintf(r->message, sizeof(r->message),
			 "timed out (timeout %ld ms)", s->timeout_ms);
		return;
	}
	switch (st) {
	case S3StatusOK:
		r->http = 200;
		return;
	case S3StatusNameLookupError:
	case S3StatusFailedToConnect:
	case S3StatusConnectionFailed:
	case S3StatusServerFailedVerification:
	case S3StatusInterrupted:
		r->transport = 1;
		snprintf(r->message, sizeof(r->message), "%s",
			 name ? name : "connection failed");
		return;
	default:
		break;
	}
	if (st >= S3StatusErrorAccessDenied) {
		r->http = http_of(st);
		/* "ErrorNoSuchBucket" is S3's "NoSuchBucket". */
		if (st < S3StatusHttpErrorMovedTemporarily && name &&
		    strncmp(name, "Error", 5) == 0)
			snprintf(r->code, sizeof(r->code), "%s", name + 5);
		return;
	}
	/* libs3 refused or failed locally (bad metadata, out of memory). */
	snprintf(r->message, sizeof(r->message), "libs3: %s",
		 name ? name : "failed");
}

static void v2_perform(s3_sink *s, const s3_request *req, s3_result *r)
{
	S3BucketContext bucket;
	S3PutProperties props;
	S3NameValue meta[S3_META_COUNT_MAX];
	S3ResponseHandler rh;
	S3RequestContext *ctx = NULL;
	v2call c;
	int rc;

	memset(&c, 0, sizeof(c));
	c.req = req;
	c.r = r;
	r->content_length = -1;
	if (req->n_meta > sizeof(meta) / sizeof(meta[0])) {
		snprintf(r->message, sizeof(r->message),
			 "too many metadata entries for libs3");
		return;
	}
	if (S3_create_request_context(&ctx) != S3StatusOK) {
		snprintf(r->message, sizeof(r->message),
			 "libs3: cannot create a request context");
		return;
	}
	memset(&bucket, 0, sizeof(bucket));
	bucket.hostName = s->host_port;
	bucket.bucketName = s->bucket;
	bucket.protocol = s->https ? S3ProtocolHTTPS : S3ProtocolHTTP;
	bucket.uriStyle =
		s->virtual_host ? S3UriStyleVirtualHost : S3UriStylePath;
	bucket.accessKeyId = s->access_key;
	bucket.secretAccessKey = s->secret_key;
	rh.propertiesCallback = props_cb;
	rh.completeCallback = complete_cb;

	switch (req->op) {
	case S3_PUT: {
		S3PutObjectHandler h = { rh, put_cb };

		memset(&props, 0, sizeof(props));
		props.contentType = req->content_type;
		props.md5 = req->md5_b64;
		props.cacheControl = req->cache_control;
		props.expires = -1; /* 0 would send Expires: 1970 */
		props.cannedAcl = S3CannedAclPrivate;
		for (size_t i = 0; i < req->n_meta; i++) {
			meta[i].name = req->meta_names[i];
			meta[i].value = req->meta_values[i];
		}
		props.metaDataCount = (int)req->n_meta;
		props.metaData = req->n_meta ? meta : NULL;
		S3_put_object(&bucket, req->key, req->src->size, &props, ctx,
			      &h, &c);
		break;
	}
	case S3_GET: {
		S3GetObjectHandler h = { rh, get_cb };

		S3_get_object(&bucket, req->key, NULL, 0, req->probe ? 1 : 0,
			      ctx, &h, &c);
		break;
	}
	case S3_HEAD:
		S3_head_object(&bucket, req->key, ctx, &rh, &c);
		break;
	case S3_DELETE:
		S3_delete_object(&bucket, req->key, ctx, &rh, &c);
		break;
	}

	rc = c.done ? 0 : run(ctx, s->timeout_ms);
	/* Interrupts a request still running; its complete callback then
	 * reports S3StatusInterrupted. */
	S3_destroy_request_context(ctx);
	if (rc < 0 && !c.done) {
		snprintf(r->message, sizeof(r->message),
			 "libs3: the request context failed");
		r->transport = 1;
		return;
	}
	if (!c.done) {
		/* Not expected: libs3 promises the callback. */
		r->transport = 1;
		snprintf(r->message, sizeof(r->message),
			 "libs3 did not complete the request");
		return;
	}
	map_status(s, c.status, rc == 1, r);
	if (r->http < 200 || r->http >= 300) {
		free(r->body);
		r->body = NULL;
		r->body_len = 0;
	}
}

static const s3_sigv2_ops sigv2_ops = {
	.version = S3_SIGV2_VERSION,
	.sink_size = sizeof(s3_sink),
	.request_size = sizeof(s3_request),
	.result_size = sizeof(s3_result),
	.init = v2_init,
	.deinit = v2_deinit,
	.perform = v2_perform,
};

/* The one exported symbol (S3_SIGV2_ENTRY_SYMBOL, of type
 * s3_sigv2_entry_fn); everything else is hidden. */
#define SIGV2_EXPORT __attribute__((visibility("default")))
SIGV2_EXPORT const s3_sigv2_ops *s3_sigv2_entry(void);
SIGV2_EXPORT const s3_sigv2_ops *s3_sigv2_entry(void)
{
	return &sigv2_ops;
}
