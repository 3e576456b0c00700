/*
 * sigv4.c - the `s3` sink's transport for AWS Signature V4, on libcurl.
 *
 * libcurl (7.75 and later) signs requests itself with CURLOPT_AWS_SIGV4
 * "aws:amz:<region>:s3" and the key pair as user name and password. It
 * does not hash an uploaded body, so every request carries an explicit
 * x-amz-content-sha256 header (the body's SHA-256, or that of the empty
 * string), which curl signs like the other x-amz-* headers and S3 checks
 * against the bytes it receives. tests/plugins/test_s3.c recomputes the
 * signature of a captured request independently of curl.
 *
 * One easy handle per sink instance is reused (curl_easy_reset between
 * requests keeps its connection cache), so consecutive requests to the
 * same endpoint share a connection.
 *
 * Bodies: a PUT streams from memory or from the source's fd with pread (a
 * seek callback lets curl rewind when it must resend, e.g. on a reused
 * connection that turned out dead). A GET is collected into a buffer that
 * never grows past max_bytes; the answer's Content-Length is checked
 * before the first byte is stored. An error answer's body is kept up to
 * S3_ERRBODY_MAX for its <Code> and <Message>.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3.h"

/* SHA-256 of no bytes: the payload hash of GET, HEAD and DELETE. */
static const char empty_sha256[] =
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* A GET body buffer grows from this size (or the announced length). */
#define BODY_MIN_ALLOC (64 * 1024)

/*
 * curl sends "Expect: 100-continue" before every upload and waits for the
 * server's "100 Continue" (up to a second: servers that never answer it)
 * before the body. The header cannot be removed the usual way ("Expect:"
 * in the list): curl 7.88 then signs an "expect" header it does not send,
 * and S3 refuses the signature (test_s3.c caught it). So below this size,
 * where a refusal before the body saves little, curl does not wait at all
 * (RFC 9110 lets a client send the body at once): the body follows the
 * headers without a round trip (most of the time a small rendition's
 * upload takes) nor the stall a busy server's late "100 Continue" adds.
 */
#define EXPECT_MIN     (1024 * 1024)
#define EXPECT_WAIT_MS 0L

/* Longest header line built here: a metadata value and its name. */
#define HEADER_MAX (S3_META_VALUE_MAX + S3_META_NAME_MAX + 32)

typedef struct xfer {
	CURL *c;
	const s3_request *req;
	s3_result *r;
	uint64_t off; /* next byte of the upload */
	size_t cap;   /* of r->body */
	int started;  /* the GET body's first bytes were seen */
	char *err;    /* error answer body, S3_ERRBODY_MAX + 1 */
	size_t err_len;
} xfer;

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ud)
{
	xfer *x = ud;
	const dr_source *src = x->req->src;
	size_t room = size * nitems;
	uint64_t left = src->size - x->off;
	ssize_t n;

	if (left == 0)
		return 0;
	if (room > left)
		room = (size_t)left;
	if (src->data) {
		memcpy(buf, (const unsigned char *)src->data + x->off, room);
		x->off += room;
		return room;
	}
	do
		n = pread(src->fd, buf, room, (off_t)x->off);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		x->r->abort = S3_ABORT_SOURCE;
		return CURL_READFUNC_ABORT;
	}
	x->off += (uint64_t)n;
	return (size_t)n;
}

static int seek_cb(void *ud, curl_off_t offset, int origin)
{
	xfer *x = ud;

	if (origin != SEEK_SET || offset < 0 ||
	    (uint64_t)offset > x->req->src->size)
		return CURL_SEEKFUNC_CANTSEEK;
	x->off = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* Keep the start of an error answer. */
static void keep_error(xfer *x, const char *p, size_t n)
{
	size_t room;

	if (!x->err) {
		x->err = malloc(S3_ERRBODY_MAX + 1);
		if (!x->err)
			return; /* the error stays less specific */
	}
	room = S3_ERRBODY_MAX - x->err_len;
	if (n > room)
		n = room;
	memcpy(x->err + x->err_len, p, n);
	x->err_len += n;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
	xfer *x = ud;
	s3_result *r = x->r;
	size_t n = size * nmemb;
	long code = 0;

	curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &code);
	if (code < 200 || code >= 300 || x->req->op != S3_GET) {
		keep_error(x, p, n);
		return n;
	}
	if (!x->started) {
		curl_off_t cl = -1;

		x->started = 1;
		curl_easy_getinfo(x->c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
				  &cl);
		if (cl >= 0 && (uint64_t)cl > x->req->max_bytes) {
			r->abort = S3_ABORT_TOO_LARGE;
			return 0;
		}
		if (cl > 0 && (uint64_t)cl < SIZE_MAX) {
			r->body = malloc((size_t)cl);
			if (!r->body)
				return 0;
			x->cap = (size_t)cl;
		}
	}
	if ((uint64_t)r->body_len + n > x->req->max_bytes) {
		r->abort = S3_ABORT_TOO_LARGE;
		return 0;
	}
	if (r->body_len + n > x->cap) {
		/* Double, but never past the limit (which bounds any
		 * answer, chunked or lying about its length). */
		uint64_t want = x->cap ? (uint64_t)x->cap * 2 : BODY_MIN_ALLOC;
		unsigned char *nb;

		if (want < r->body_len + n)
			want = r->body_len + n;
		if (want > x->req->max_bytes)
			want = x->req->max_bytes;
		nb = realloc(r->body, (size_t)want);
		if (!nb)
			return 0;
		r->body = nb;
		x->cap = (size_t)want;
	}
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	return n;
}

static int add_header(struct curl_slist **list, const char *name,
		      const char *value)
{
	char line[HEADER_MAX];
	struct curl_slist *l;
	int n;

	/* "Name;" is curl's way to send a header with an empty value
	 * ("Name:" would remove it). */
	if (value[0])
		n = snprintf(line, sizeof(line), "%s: %s", name, value);
	else
		n = snprintf(line, sizeof(line), "%s;", name);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	l = curl_slist_append(*list, line);
	if (!l)
		return -1;
	*list = l;
	return 0;
}

static struct curl_slist *build_headers(const s3_request *req)
{
	struct curl_slist *h = NULL;
	char name[S3_META_NAME_MAX + 16];
	int bad = 0;

	if (req->op == S3_PUT) {
		bad |= add_header(&h, "x-amz-content-sha256", req->sha256_hex);
		bad |= add_header(&h, "Content-Type", req->content_type);
		bad |= add_header(&h, "Content-MD5", req->md5_b64);
		if (req->cache_control)
			bad |= add_header(&h, "Cache-Control",
					  req->cache_control);
		for (size_t i = 0; i < req->n_meta; i++) {
			snprintf(name, sizeof(name), "x-amz-meta-%s",
				 req->meta_names[i]);
			bad |= add_header(&h, name, req->meta_values[i]);
		}
	} else {
		bad |= add_header(&h, "x-amz-content-sha256", empty_sha256);
	}
	if (req->probe)
		bad |= add_header(&h, "Range", "bytes=0-0");
	if (bad) {
		curl_slist_free_all(h);
		return NULL;
	}
	return h;
}

/* Describe a transfer that got no usable answer. */
static void transport_failure(const s3_sink *s, s3_result *r, CURLcode rc,
			      const char *errbuf)
{
	r->transport = 1;
	if (rc == CURLE_OPERATION_TIMEDOUT)
		snprintf(r->message, sizeof(r->message),
			 "timed out (timeout %ld ms, connect_timeout %ld ms)",
			 s->timeout_ms, s->connect_timeout_ms);
	else
		snprintf(r->message, sizeof(r->message), "%.60s%s%.180s",
			 curl_easy_strerror(rc), errbuf[0] ? ": " : "", errbuf);
}

void s3v4_perform(s3_sink *s, const s3_request *req, s3_result *r)
{
	char url[S3_URL_MAX];
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *headers = NULL;
	xfer x;
	CURLcode rc;
	CURL *c;

	memset(&x, 0, sizeof(x));
	r->content_length = -1;
	if (s3_object_url(s, req->key, url, sizeof(url)) != 0) {
		snprintf(r->message, sizeof(r->message),
			 "the request URL is too long");
		return;
	}
	if (!s->curl)
		s->curl = curl_easy_init();
	c = s->curl;
	headers = build_headers(req);
	if (!c || !headers) {
		snprintf(r->message, sizeof(r->message),
			 "cannot set up the request (out of memory or a "
			 "header too long)");
		curl_slist_free_all(headers);
		return;
	}
	curl_easy_reset(c);
	x.c = c;
	x.req = req;
	x.r = r;
	errbuf[0] = '\0';

	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "darkroom-s3/1.0");
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4_param);
	curl_easy_setopt(c, CURLOPT_USERNAME, s->access_key);
	curl_easy_setopt(c, CURLOPT_PASSWORD, s->secret_key);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
	switch (req->op) {
	case S3_PUT:
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)req->src->size);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(c, CURLOPT_READDATA, &x);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_cb);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, &x);
		if (req->src->size < EXPECT_MIN)
			curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS,
					 EXPECT_WAIT_MS);
		break;
	case S3_GET:
		break;
	case S3_HEAD:
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
		break;
	case S3_DELETE:
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
		break;
	}

	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->http);
	if (r->abort != S3_ABORT_NONE) {
		/* Our own callback stopped it; r says why. */
	} else if (rc != CURLE_OK) {
		r->http = 0;
		transport_failure(s, r, rc, errbuf);
	} else {
		curl_off_t cl = -1;

		curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
		r->content_length = cl;
		if (x.err_len > 0) {
			s3_xml_text(x.err, x.err_len, "Code", r->code,
				    sizeof(r->code));
			s3_xml_text(x.err, x.err_len, "Message", r->message,
				    sizeof(r->message));
		}
		if (r->http < 200 || r->http >= 300) {
			free(r->body);
			r->body = NULL;
			r->body_len = 0;
		}
	}
	/* Do not leave pointers to this frame in the reused handle. */
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(headers);
	free(x.err);
}

void s3v4_close(s3_sink *s)
{
	if (s->curl) {
		curl_easy_cleanup(s->curl);
		s->curl = NULL;
	}
}
