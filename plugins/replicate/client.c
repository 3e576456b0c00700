/*
 * client.c - the HTTP client of the `replicate` adapter, on the host's
 * HTTP service (host->http_request).
 *
 * The host keeps one connection per instance alive between requests,
 * follows no redirects (the token must never travel to another host and
 * the API does not redirect), speaks only http and https, raises no
 * signals and reads at most REP_MAX_RESPONSE bytes of answer. This file
 * adds the API's fixed headers and the User-Agent, keeps the current
 * answer until the next request, and turns the host's failures into the
 * transport outcomes the adapter reasons about.
 *
 * Was the request sent? A create has no idempotency key at Replicate, so
 * the caller may only try it again when the request surely never left:
 * the host reports that (resp.sent = 0, code http_not_sent) when the try
 * failed while resolving, connecting or handshaking; that is
 * REP_TRANSPORT_NOT_SENT. Any failure after it may have reached the
 * server, even a send error. The host retries nothing here (retries = 0):
 * the adapter decides (replicate.c).
 *
 * Proxies: curl's usual environment variables (https_proxy, no_proxy)
 * apply, as for any API client (the API base is configuration, a trusted
 * URL).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "replicate.h"

/* Headers a request carries besides the caller's. */
#define REP_FIXED_HEADERS 3
/* Most caller headers taken. */
#define REP_EXTRA_HEADERS 12

struct rep_client {
	const dr_host *host;
	const dr_instance *inst;
	char *user_agent; /* "User-Agent: ..." */
	double connect_timeout;
	dr_http_response resp; /* the current answer */
};

rep_client *rep_client_new(const rep_client_config *cfg)
{
	const dr_host *h = cfg->host;
	rep_client *c = h->mem_calloc(1, sizeof(*c));
	size_t n = strlen(cfg->user_agent) + sizeof("User-Agent: ");

	c->host = h;
	c->inst = cfg->inst;
	c->user_agent = h->mem_alloc(n);
	snprintf(c->user_agent, n, "User-Agent: %s", cfg->user_agent);
	c->connect_timeout = cfg->connect_timeout;
	return c;
}

void rep_client_free(rep_client *c)
{
	if (!c)
		return;
	c->host->mem_free(c->resp.body);
	c->host->mem_free(c->user_agent);
	c->host->mem_free(c);
}

/* ------------------------------------------------------------------------
 * Requests
 */

rep_transport rep_client_request(rep_client *c, const char *method,
				 const char *url, const char *const *headers,
				 const char *body, double timeout,
				 rep_response *resp, char *why, size_t whysz)
{
	const char *list[REP_FIXED_HEADERS + REP_EXTRA_HEADERS + 1];
	dr_http_request req;
	dr_error err;
	size_t n = 0;
	dr_status st;

	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
	why[0] = '\0';
	c->host->mem_free(c->resp.body);
	memset(&c->resp, 0, sizeof(c->resp));
	list[n++] = "Accept: application/json";
	list[n++] = "Expect:"; /* no 100-continue round trip */
	list[n++] = c->user_agent;
	for (; headers && *headers && n < REP_FIXED_HEADERS + REP_EXTRA_HEADERS;
	     headers++)
		list[n++] = *headers;
	list[n] = NULL;

	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = url;
	req.headers = list;
	req.body = body;
	req.body_len = body ? strlen(body) : 0;
	req.timeout = timeout;
	req.connect_timeout = c->connect_timeout;
	req.max_response = REP_MAX_RESPONSE;
	req.retries = 0;
	memset(&err, 0, sizeof(err));
	st = c->host->http_request(c->inst, &req, &c->resp, &err);
	if (st == DR_OK) {
		resp->status = c->resp.status;
		resp->body = c->resp.body;
		resp->len = c->resp.body_len;
		resp->retry_after = c->resp.retry_after;
		return REP_TRANSPORT_OK;
	}
	if (st == DR_ERR_TOO_LARGE) {
		snprintf(why, whysz, "the answer is larger than %u MiB",
			 REP_MAX_RESPONSE >> 20);
		return REP_TRANSPORT_TOO_LARGE;
	}
	/* The host's messages name hosts and ports, never headers. */
	snprintf(why, whysz, "%s", err.message);
	if (!c->resp.sent)
		return REP_TRANSPORT_NOT_SENT;
	if (st == DR_ERR_TIMEOUT)
		return REP_TRANSPORT_TIMEOUT;
	return REP_TRANSPORT_FAILED;
}

/* ------------------------------------------------------------------------
 * Reading answers
 */

double rep_rate_limit_wait(const rep_response *resp)
{
	double body = -1, header = resp->retry_after;
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
