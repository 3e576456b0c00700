/*
 * plugin_http.c - the HTTP client behind host->http_request (see
 * plugin_http.h and the contract in darkroom-plugin.h).
 *
 * One client per plugin instance, so an adapter's connection to its API
 * stays alive between calls (instances are called from one thread at a
 * time). Each request starts from curl_easy_reset(), which keeps live
 * connections, DNS and TLS session caches but forgets every option, so
 * no header, body or method of one request leaks into the next.
 * Connections idle for more than HTTP_CONN_MAX_AGE seconds are not reused,
 * well under the idle timeouts of servers and load balancers, which makes
 * curl's silent resend on a dead kept-alive connection rare.
 *
 * Was the request sent? curl calls CURLOPT_PREREQFUNCTION once the
 * connection (TCP, proxy tunnel, TLS handshake) is ready and just before
 * it writes the request; a try that fails without having called it failed
 * while resolving, connecting or handshaking, whatever the CURLcode, and
 * surely reached no server: resp->sent = 0, and only then is a failed try
 * repeated. Any failure after it may have reached the server.
 *
 * Untrusted URLs get a second, separate handle, so a connection opened
 * for a trusted URL (to a private address, say) never serves one: the
 * URL's scheme and host are checked before the request (with curl_url(),
 * curl's own parser), and every address curl is about to connect to in
 * the open-socket callback, by download.c's functions passed in the
 * policy; no proxy is used for them.
 *
 * This file needs nothing from the core but the types of
 * darkroom-plugin.h, curl and the policy's functions: the mock host of
 * the plugin tests compiles it in. That is why it fills dr_error itself.
 */
#include "plugin_http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

/* Seconds a kept-alive connection may sit idle and still be reused. */
#define HTTP_CONN_MAX_AGE 30L
/* Defaults of dr_http_request. */
#define HTTP_TIMEOUT 30.0
#define HTTP_CONNECT_TIMEOUT 10.0
#define HTTP_MAX_RESPONSE (1u << 20)
#define HTTP_MAX_RETRY_WAIT 30.0
/* Longest Retry-After value read. */
#define HTTP_RETRY_AFTER_MAX 128

struct plugin_http {
	CURL *trusted;
	CURL *untrusted;
};

/* The state of one try, for the callbacks. */
typedef struct http_try {
	char *body;
	size_t len, cap, max;
	int too_large;
	int sent;
	char retry_after[HTTP_RETRY_AFTER_MAX];
	const plugin_http_policy *pol; /* untrusted tries only */
	int refused_address;
	char errbuf[CURL_ERROR_SIZE];
} http_try;

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q) {
		fputs("darkroom: out of memory in the HTTP client\n", stderr);
		abort();
	}
	return q;
}

static dr_status http_fail(dr_error *err, dr_status status, const char *code,
			   const char *fmt, ...) DR_PRINTF(4, 5);

static dr_status http_fail(dr_error *err, dr_status status, const char *code,
			   const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return status;
	err->status = status;
	err->retryable = 0;
	err->retry_after = 0;
	snprintf(err->code, sizeof(err->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return status;
}

plugin_http *plugin_http_new(void)
{
	plugin_http *c = xrealloc(NULL, sizeof(*c));

	/* Once per process; curl makes the later calls no-ops. */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c->trusted = NULL;
	c->untrusted = NULL;
	return c;
}

void plugin_http_free(plugin_http *c)
{
	if (!c)
		return;
	if (c->trusted)
		curl_easy_cleanup(c->trusted);
	if (c->untrusted)
		curl_easy_cleanup(c->untrusted);
	free(c);
}

void plugin_http_response_free(dr_http_response *resp)
{
	if (!resp)
		return;
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
}

double plugin_http_retry_after(const char *value, double now)
{
	const char *p;
	double v = 0;
	time_t t;

	if (!value)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	if (*value >= '0' && *value <= '9') {
		for (p = value; *p >= '0' && *p <= '9'; p++) {
			v = v * 10 + (*p - '0');
			if (v > 1e9)
				return -1;
		}
		while (*p == ' ' || *p == '\t')
			p++;
		return *p ? -1 : v;
	}
	if (*value == '\0')
		return -1;
	/* An HTTP-date (IMF-fixdate, RFC 850 or asctime); curl reads all. */
	t = curl_getdate(value, NULL);
	if (t == (time_t)-1)
		return -1;
	return (double)t > now ? (double)t - now : 0;
}

/* ------------------------------------------------------------------------
 * Callbacks
 */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	http_try *t = userdata;
	size_t n = size * nmemb;

	if (n > t->max - t->len) {
		t->too_large = 1;
		return 0; /* aborts with CURLE_WRITE_ERROR */
	}
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 16384;

		while (cap < t->len + n + 1)
			cap *= 2;
		t->body = xrealloc(t->body, cap);
		t->cap = cap;
	}
	memcpy(t->body + t->len, ptr, n);
	t->len += n;
	t->body[t->len] = '\0';
	return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
	http_try *t = userdata;
	size_t n = size * nitems, i = 12, end;

	/* A new status line (after a 100 Continue): forget the last one's. */
	if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		t->retry_after[0] = '\0';
		return n;
	}
	if (n < 12 || strncasecmp(buf, "retry-after:", 12) != 0)
		return n;
	while (i < n && (buf[i] == ' ' || buf[i] == '\t'))
		i++;
	end = n;
	while (end > i && (buf[end - 1] == '\r' || buf[end - 1] == '\n' ||
			   buf[end - 1] == ' ' || buf[end - 1] == '\t'))
		end--;
	if (end - i >= sizeof(t->retry_after))
		return n; /* no date or number is that long: ignore it */
	memcpy(t->retry_after, buf + i, end - i);
	t->retry_after[end - i] = '\0';
	return n;
}

/* Called just before the request is written: it may be sent from now on. */
static int on_prereq(void *userdata, char *conn_primary_ip, char *conn_local_ip,
		     int conn_primary_port, int conn_local_port)
{
	http_try *t = userdata;

	(void)conn_primary_ip;
	(void)conn_local_ip;
	(void)conn_primary_port;
	(void)conn_local_port;
	t->sent = 1;
	return CURL_PREREQFUNC_OK;
}

/* Untrusted URLs: every address curl is about to connect to is judged. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
				    struct curl_sockaddr *address)
{
	http_try *t = clientp;

	if (purpose != CURLSOCKTYPE_IPCXN || !t->pol ||
	    !t->pol->address_allowed ||
	    !t->pol->address_allowed(&address->addr, t->pol->allow_private)) {
		t->refused_address = 1;
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/* ------------------------------------------------------------------------
 * One try
 */

static long to_ms(double seconds)
{
	if (seconds > 86400)
		return 86400L * 1000;
	return (long)(seconds * 1000 + 0.5);
}

/* The scheme and host rules for an untrusted URL. */
static dr_status check_untrusted(const plugin_http_policy *pol,
				 const char *url, dr_error *err)
{
	char *scheme = NULL, *host = NULL;
	CURLU *u = curl_url();
	dr_status st = DR_OK;

	if (!u) {
		fputs("darkroom: out of memory in the HTTP client\n", stderr);
		abort();
	}
	if (!pol || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		st = http_fail(err, DR_ERR_INVALID, "url_not_allowed",
			       "not an http(s) URL");
	else if (strcmp(scheme, "https") != 0 &&
		 !(strcmp(scheme, "http") == 0 && pol->allow_http))
		st = http_fail(err, DR_ERR_INVALID, "url_not_allowed",
			       "the scheme %s is not allowed", scheme);
	else if (!pol->host_allowed || !pol->host_allowed(host, pol->hosts))
		st = http_fail(err, DR_ERR_INVALID, "url_not_allowed",
			       "the host %s is not allowed", host);
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return st;
}

/* The options of one try; CURLE_OK or the first failure. */
static CURLcode set_options(CURL *h, const dr_http_request *req,
			    struct curl_slist *hdrs, http_try *t)
{
	const char *method = req->method ? req->method : "GET";
	CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                          \
	do {                                                                   \
		if (rc == CURLE_OK)                                            \
			rc = curl_easy_setopt(h, opt, val);                    \
	} while (0)

	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_PROTOCOLS_STR, "https,http");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS,
	    to_ms(req->connect_timeout > 0 ? req->connect_timeout
					   : HTTP_CONNECT_TIMEOUT));
	SET(CURLOPT_TIMEOUT_MS,
	    to_ms(req->timeout > 0 ? req->timeout : HTTP_TIMEOUT));
	SET(CURLOPT_HTTPHEADER, hdrs);
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_MAXAGE_CONN, HTTP_CONN_MAX_AGE);
	SET(CURLOPT_ERRORBUFFER, t->errbuf);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, t);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, t);
	SET(CURLOPT_PREREQFUNCTION, on_prereq);
	SET(CURLOPT_PREREQDATA, t);
	if (req->untrusted) {
		SET(CURLOPT_PROXY, "");
		SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
		SET(CURLOPT_OPENSOCKETDATA, t);
	}
	if (strcmp(method, "GET") == 0) {
		SET(CURLOPT_HTTPGET, 1L);
	} else if (strcmp(method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else {
		/* POST, or another method carrying a body (maybe empty). */
		SET(CURLOPT_POSTFIELDS,
		    req->body ? (const char *)req->body : "");
		SET(CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)(req->body ? req->body_len : 0));
		if (strcmp(method, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, method);
	}
#undef SET
	return rc;
}

/* One try: DR_OK with resp filled, or the failure (resp->sent set). */
static dr_status try_once(CURL *h, const plugin_http_policy *pol,
			  const dr_http_request *req, struct curl_slist *hdrs,
			  dr_http_response *resp, dr_error *err)
{
	http_try t;
	const char *ct = NULL;
	long status = 0;
	CURLcode rc;

	memset(&t, 0, sizeof(t));
	resp->status = 0;
	resp->content_type[0] = '\0';
	resp->retry_after = -1;
	t.max = req->max_response ? req->max_response : HTTP_MAX_RESPONSE;
	if (t.max > DR_HTTP_MAX_RESPONSE)
		t.max = DR_HTTP_MAX_RESPONSE;
	t.pol = req->untrusted ? pol : NULL;
	curl_easy_reset(h);
	rc = set_options(h, req, hdrs, &t);
	if (rc != CURLE_OK)
		return http_fail(err, DR_ERR_INTERNAL, "internal",
				 "cannot set up the request: %s",
				 curl_easy_strerror(rc));
	rc = curl_easy_perform(h);
	resp->sent = t.sent;
	if (rc == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
		resp->status = status;
		resp->body = t.body ? t.body : xrealloc(NULL, 1);
		resp->body[t.len] = '\0';
		resp->body_len = t.len;
		snprintf(resp->content_type, sizeof(resp->content_type), "%s",
			 ct ? ct : "");
		resp->retry_after =
			plugin_http_retry_after(t.retry_after, (double)time(NULL));
		return DR_OK;
	}
	free(t.body);
	if (t.too_large)
		return http_fail(err, DR_ERR_TOO_LARGE, "http_too_large",
				 "the answer is larger than %zu bytes", t.max);
	if (t.refused_address)
		return http_fail(err, DR_ERR_INVALID, "address_not_allowed",
				 "the host resolves to an address that is "
				 "not allowed");
	/* curl's messages name hosts and ports, never headers. */
	if (!t.sent) {
		dr_status st = http_fail(err, DR_ERR_NETWORK, "http_not_sent",
					 "nothing was sent: %s",
					 t.errbuf[0] ? t.errbuf
						     : curl_easy_strerror(rc));

		err->retryable = 1;
		return st;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return http_fail(err, DR_ERR_TIMEOUT, "http_timeout", "%s",
				 t.errbuf[0] ? t.errbuf
					     : curl_easy_strerror(rc));
	return http_fail(err, DR_ERR_NETWORK, "http_failed", "%s",
			 t.errbuf[0] ? t.errbuf : curl_easy_strerror(rc));
}

static void sleep_seconds(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

dr_status plugin_http_request(plugin_http *c, const plugin_http_policy *pol,
			      const dr_http_request *req,
			      dr_http_response *resp, dr_error *err)
{
	struct curl_slist *hdrs = NULL;
	double max_wait = req->max_retry_wait > 0 ? req->max_retry_wait
						  : HTTP_MAX_RETRY_WAIT;
	int retries = req->retries < 0 ? 0 : req->retries;
	double backoff = 1;
	CURL **h;
	dr_status st;

	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
	if (retries > DR_HTTP_MAX_RETRIES)
		retries = DR_HTTP_MAX_RETRIES;
	if (!req->url)
		return http_fail(err, DR_ERR_INVALID, "url_not_allowed",
				 "no URL");
	if (req->untrusted) {
		st = check_untrusted(pol, req->url, err);
		if (st != DR_OK)
			return st;
	}
	h = req->untrusted ? &c->untrusted : &c->trusted;
	if (!*h && !(*h = curl_easy_init()))
		return http_fail(err, DR_ERR_INTERNAL, "internal",
				 "libcurl could not make a handle");
	for (const char *const *l = req->headers; l && *l; l++) {
		struct curl_slist *tmp = curl_slist_append(hdrs, *l);

		if (!tmp) {
			fputs("darkroom: out of memory in the HTTP client\n",
			      stderr);
			abort();
		}
		hdrs = tmp;
	}
	for (;;) {
		double wait;

		resp->tries++;
		st = try_once(*h, pol, req, hdrs, resp, err);
		if (resp->tries > retries)
			break;
		if (st == DR_OK && resp->status != 429 && resp->status != 503)
			break;
		if (st != DR_OK && !(st == DR_ERR_NETWORK && !resp->sent))
			break;
		wait = st == DR_OK && resp->retry_after >= 0 ? resp->retry_after
							     : backoff;
		if (wait > max_wait)
			break;
		if (st == DR_OK)
			plugin_http_response_free(resp);
		sleep_seconds(wait);
		backoff *= 2;
	}
	curl_slist_free_all(hdrs);
	return st;
}

const plugin_http_ops plugin_http_client = {
	.new_client = plugin_http_new,
	.free_client = plugin_http_free,
	.request = plugin_http_request,
};
