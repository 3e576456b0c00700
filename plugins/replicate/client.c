/*
 * client.c - the HTTP client of the `replicate` adapter.
 *
 * One curl easy handle per instance, reused for every request so the
 * connection to the API stays alive (instances are called from one thread
 * at a time, darkroom-plugin.h). Each request starts from
 * curl_easy_reset(), which keeps the live connections, DNS and TLS
 * session caches but forgets every option, so no header, body or method
 * of one request can leak into the next.
 *
 * Requests follow no redirects (the token must never travel to another
 * host and the API does not redirect), speak only http and https, do not
 * raise signals, and read at most REP_MAX_RESPONSE bytes of answer: the
 * write callback counts and aborts the transfer beyond that.
 *
 * Was the request sent? A create has no idempotency key at Replicate, so
 * the caller may only try it again when the request surely never left.
 * curl calls CURLOPT_PREREQFUNCTION once the connection (TCP, proxy
 * tunnel and TLS handshake included) is ready and just before it writes
 * the request; a transfer that fails without having called it failed
 * while resolving, connecting or handshaking, whatever the CURLcode
 * (COULDNT_RESOLVE_HOST/PROXY, COULDNT_CONNECT, SSL_CONNECT_ERROR,
 * PEER_FAILED_VERIFICATION, OPERATION_TIMEDOUT during connect, ...): that
 * is REP_TRANSPORT_NOT_SENT. Any failure after it may have reached the
 * server, even a send error (part of the request may have arrived).
 *
 * One residual case: when a kept-alive connection turns out to be dead
 * and nothing came back, curl itself sends the request again on a new
 * connection; if the server had in fact received it, the create would be
 * made twice. Connections idle for more than REP_CONN_MAX_AGE seconds are
 * not reused (well under the idle timeouts of HTTP servers and load
 * balancers, which is what closes them), which makes this rare; the core
 * reconciles on the job id in the webhook URL if it happens.
 *
 * Proxies: curl's usual environment variables (https_proxy, no_proxy)
 * apply, as for any API client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "replicate.h"

/* Seconds a kept-alive connection may sit idle and still be reused. */
#define REP_CONN_MAX_AGE 30L
/* Longest Retry-After header value kept. */
#define RETRY_AFTER_MAX 128

struct rep_client {
	CURL *curl;
	char *user_agent;
	double connect_timeout;
	/* The current response: body, its cap flag and Retry-After. */
	char *body;
	size_t len;
	size_t cap;
	int too_large;
	int prereq_called;
	int have_retry_after;
	char retry_after[RETRY_AFTER_MAX];
	char errbuf[CURL_ERROR_SIZE];
};

rep_client *rep_client_new(const rep_client_config *cfg)
{
	rep_client *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->curl = curl_easy_init();
	if (!c->curl)
		goto err_client;
	c->user_agent = strdup(cfg->user_agent);
	if (!c->user_agent)
		goto err_curl;
	c->connect_timeout = cfg->connect_timeout;
	return c;

err_curl:
	curl_easy_cleanup(c->curl);
err_client:
	free(c);
	return NULL;
}

void rep_client_free(rep_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c->user_agent);
	free(c->body);
	free(c);
}

/* ------------------------------------------------------------------------
 * Callbacks
 */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	rep_client *c = userdata;
	size_t n = size * nmemb;

	if (n > REP_MAX_RESPONSE - c->len) {
		c->too_large = 1;
		return 0; /* aborts with CURLE_WRITE_ERROR */
	}
	if (c->len + n + 1 > c->cap) {
		size_t cap = c->cap ? c->cap : 16384;
		char *b;

		while (cap < c->len + n + 1)
			cap *= 2;
		b = realloc(c->body, cap);
		if (!b)
			return 0;
		c->body = b;
		c->cap = cap;
	}
	memcpy(c->body + c->len, ptr, n);
	c->len += n;
	c->body[c->len] = '\0';
	return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
	rep_client *c = userdata;
	size_t n = size * nitems, i = 12, end;

	/* A new status line (after a 100 Continue): forget the last one's. */
	if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		c->have_retry_after = 0;
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
	if (end - i >= sizeof(c->retry_after))
		return n; /* no date or number is that long: ignore it */
	memcpy(c->retry_after, buf + i, end - i);
	c->retry_after[end - i] = '\0';
	c->have_retry_after = 1;
	return n;
}

/* Called just before the request is written: it may be sent from now on. */
static int on_prereq(void *userdata, char *conn_primary_ip, char *conn_local_ip,
		     int conn_primary_port, int conn_local_port)
{
	rep_client *c = userdata;

	(void)conn_primary_ip;
	(void)conn_local_ip;
	(void)conn_primary_port;
	(void)conn_local_port;
	c->prereq_called = 1;
	return CURL_PREREQFUNC_OK;
}

/* ------------------------------------------------------------------------
 * Requests
 */

static long to_ms(double seconds)
{
	if (seconds <= 0)
		return 0;
	if (seconds > 86400)
		return 86400L * 1000;
	return (long)(seconds * 1000 + 0.5);
}

/* The options of one request; CURLE_OK or the first failure. */
static CURLcode set_options(rep_client *c, const char *method, const char *url,
			    struct curl_slist *hdrs, const char *body,
			    double timeout)
{
	CURL *h = c->curl;
	CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                          \
	do {                                                                   \
		if (rc == CURLE_OK)                                            \
			rc = curl_easy_setopt(h, opt, val);                    \
	} while (0)

	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "https,http");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, to_ms(c->connect_timeout));
	SET(CURLOPT_TIMEOUT_MS, to_ms(timeout));
	SET(CURLOPT_USERAGENT, c->user_agent);
	SET(CURLOPT_HTTPHEADER, hdrs);
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_MAXAGE_CONN, REP_CONN_MAX_AGE);
	SET(CURLOPT_ERRORBUFFER, c->errbuf);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, c);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, c);
	SET(CURLOPT_PREREQFUNCTION, on_prereq);
	SET(CURLOPT_PREREQDATA, c);
	if (strcmp(method, "POST") == 0) {
		SET(CURLOPT_POST, 1L);
		SET(CURLOPT_POSTFIELDS, body ? body : "");
		SET(CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)(body ? strlen(body) : 0));
	} else {
		SET(CURLOPT_HTTPGET, 1L);
	}
#undef SET
	return rc;
}

rep_transport rep_client_request(rep_client *c, const char *method,
				 const char *url, const char *const *headers,
				 const char *body, double timeout,
				 rep_response *resp, char *why, size_t whysz)
{
	struct curl_slist *hdrs = NULL, *tmp;
	rep_transport t = REP_TRANSPORT_NOT_SENT;
	static const char *const fixed[] = {
		"Accept: application/json",
		"Expect:", /* no 100-continue round trip for larger bodies */
		NULL,
	};
	CURLcode rc;
	long status = 0;

	memset(resp, 0, sizeof(*resp));
	why[0] = '\0';
	curl_easy_reset(c->curl);
	c->len = 0;
	c->too_large = 0;
	c->prereq_called = 0;
	c->have_retry_after = 0;
	c->errbuf[0] = '\0';
	for (const char *const *list = fixed; *list; list++) {
		tmp = curl_slist_append(hdrs, *list);
		if (!tmp)
			goto err_nomem;
		hdrs = tmp;
	}
	for (const char *const *list = headers; list && *list; list++) {
		tmp = curl_slist_append(hdrs, *list);
		if (!tmp)
			goto err_nomem;
		hdrs = tmp;
	}
	rc = set_options(c, method, url, hdrs, body, timeout);
	if (rc != CURLE_OK) {
		snprintf(why, whysz, "cannot set up the request: %s",
			 curl_easy_strerror(rc));
		goto out;
	}
	rc = curl_easy_perform(c->curl);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
		resp->status = status;
		resp->body = c->body ? c->body : "";
		resp->len = c->len;
		resp->retry_after = c->have_retry_after ? c->retry_after : NULL;
		t = REP_TRANSPORT_OK;
		goto out;
	}
	if (c->too_large) {
		snprintf(why, whysz, "the answer is larger than %u MiB",
			 REP_MAX_RESPONSE >> 20);
		t = REP_TRANSPORT_TOO_LARGE;
	} else if (!c->prereq_called) {
		t = REP_TRANSPORT_NOT_SENT;
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		t = REP_TRANSPORT_TIMEOUT;
	} else {
		t = REP_TRANSPORT_FAILED;
	}
	if (t != REP_TRANSPORT_TOO_LARGE)
		/* curl's messages name hosts and ports, never headers. */
		snprintf(why, whysz, "%s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
out:
	curl_slist_free_all(hdrs);
	return t;

err_nomem:
	snprintf(why, whysz, "out of memory");
	curl_slist_free_all(hdrs);
	return REP_TRANSPORT_NOT_SENT;
}

/* ------------------------------------------------------------------------
 * Reading answers
 */

double rep_parse_retry_after(const char *value, double now)
{
	const char *p = value;
	double v = 0;
	time_t t;

	if (!value || !*value)
		return -1;
	if (*p >= '0' && *p <= '9') {
		for (; *p >= '0' && *p <= '9'; p++) {
			v = v * 10 + (*p - '0');
			if (v > 1e9)
				return -1;
		}
		return *p ? -1 : v;
	}
	/* An HTTP-date (IMF-fixdate, RFC 850 or asctime); curl parses all. */
	t = curl_getdate(value, NULL);
	if (t == (time_t)-1)
		return -1;
	return (double)t > now ? (double)t - now : 0;
}

double rep_rate_limit_wait(const rep_response *resp, double now)
{
	double body = -1,
	       header = rep_parse_retry_after(resp->retry_after, now);
	json_object *doc = rep_parse_json(resp->body, resp->len), *v;
	double wait;

	if (doc && json_object_object_get_ex(doc, "retry_after", &v) &&
	    (json_object_is_type(v, json_type_int) ||
	     json_object_is_type(v, json_type_double)))
		body = json_object_get_double(v);
	json_object_put(doc);
	wait = body > header ? body : header;
	if (wait < 0)
		wait = REP_RETRY_AFTER_DEFAULT;
	if (wait < 1)
		wait = 1;
	if (wait > REP_RETRY_AFTER_MAX)
		wait = REP_RETRY_AFTER_MAX;
	return wait;
}

/* Copy s[0..n) into buf as printable text, trimmed, cut at
 * REP_DETAIL_MAX bytes but never inside a UTF-8 sequence. */
static void clean_text(const char *s, size_t n, char *buf, size_t bufsz)
{
	size_t max = bufsz - 1 < REP_DETAIL_MAX ? bufsz - 1 : REP_DETAIL_MAX;
	size_t len;

	while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' ||
			 s[n - 1] == '\r' || s[n - 1] == '\n'))
		n--;
	len = n;
	if (len > max) {
		len = max;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	buf[len] = '\0';
}

/* Replace every `secret` in buf by "[redacted]" (in place, cut to fit). */
static void redact(char *buf, size_t bufsz, const char *secret)
{
	static const char mark[] = "[redacted]";
	size_t slen, mlen = sizeof(mark) - 1;
	char *from = buf;

	if (!secret || !*secret)
		return;
	slen = strlen(secret);
	for (;;) {
		char *hit = strstr(from, secret);
		size_t tail, at;

		if (!hit)
			return;
		tail = strlen(hit + slen);
		at = (size_t)(hit - buf);
		if (at + mlen >= bufsz) {
			*hit = '\0';
			return;
		}
		if (at + mlen + tail >= bufsz)
			tail = bufsz - 1 - at - mlen;
		memmove(hit + mlen, hit + slen, tail);
		memcpy(hit, mark, mlen);
		hit[mlen + tail] = '\0';
		from = hit + mlen; /* the mark itself is never searched */
	}
}

void rep_error_detail(const rep_response *resp, const char *secret, char *buf,
		      size_t bufsz)
{
	json_object *doc, *v = NULL;
	const char *text;

	if (bufsz == 0)
		return;
	buf[0] = '\0';
	if (!resp->body || resp->len == 0)
		return;
	doc = rep_parse_json(resp->body, resp->len);
	if (!doc) {
		clean_text(resp->body, resp->len, buf, bufsz);
		redact(buf, bufsz, secret);
		return;
	}
	if (!json_object_object_get_ex(doc, "detail", &v) || !v)
		json_object_object_get_ex(doc, "title", &v);
	if (json_object_is_type(v, json_type_string)) {
		clean_text(json_object_get_string(v),
			   (size_t)json_object_get_string_len(v), buf, bufsz);
	} else if (v) {
		/* 422s may carry a list of field errors. */
		text = json_object_to_json_string_ext(v,
						      JSON_C_TO_STRING_PLAIN);
		if (text)
			clean_text(text, strlen(text), buf, bufsz);
	}
	json_object_put(doc);
	redact(buf, bufsz, secret);
}
