/*
 * http.c - request/response structs, query parsing, and the one mapping
 * from dr_status to HTTP status and problem documents (see http.h).
 */
#include "http.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void http_response_init(dr_response *resp)
{
	resp->status = 200;
	resp->content_type = NULL;
	resp->cache_control = NULL;
	resp->extra_headers[0] = '\0';
	dr_buf_init(&resp->body, DR_MAX_RESPONSE);
	resp->body_fd = -1;
	resp->body_fd_len = 0;
}

/* Close the response's file body, if any. */
static void drop_body_fd(dr_response *resp)
{
	if (resp->body_fd >= 0)
		close(resp->body_fd);
	resp->body_fd = -1;
	resp->body_fd_len = 0;
}

void http_response_reset(dr_response *resp)
{
	resp->status = 200;
	resp->content_type = NULL;
	resp->cache_control = NULL;
	resp->extra_headers[0] = '\0';
	dr_buf_reset(&resp->body);
	drop_body_fd(resp);
}

void http_response_free(dr_response *resp)
{
	dr_buf_free(&resp->body);
	drop_body_fd(resp);
}

/* The line of header `name` in `lines` ("Name: value\r\n"...), or NULL. */
static char *header_line(char *lines, const char *name)
{
	size_t n = strlen(name);

	for (char *l = lines; *l;) {
		char *eol = strstr(l, "\r\n");

		if (strncasecmp(l, name, n) == 0 && l[n] == ':')
			return l;
		if (!eol)
			break;
		l = eol + 2;
	}
	return NULL;
}

void http_add_header(dr_response *resp, const char *name, const char *value)
{
	char *old = header_line(resp->extra_headers, name);
	size_t used, room;
	int n;

	assert(strcasecmp(name, "Content-Type") != 0 &&
	       strcasecmp(name, "Content-Length") != 0 &&
	       strcasecmp(name, "Cache-Control") != 0 &&
	       strcasecmp(name, "Status") != 0);
	if (old) {
		char *eol = strstr(old, "\r\n");
		char *next = eol ? eol + 2 : old + strlen(old);

		memmove(old, next, strlen(next) + 1);
	}
	used = strlen(resp->extra_headers);
	room = sizeof(resp->extra_headers) - used;
	n = snprintf(resp->extra_headers + used, room, "%s: %s\r\n", name,
		     value);
	if (n < 0 || (size_t)n >= room)
		resp->extra_headers[used] = '\0';
}

const char *http_header(const dr_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode s[0..n) into arena memory; NULL on a bad escape or a NUL byte. */
static char *decode(dr_arena *arena, const char *s, size_t n)
{
	char *out = arena_alloc(arena, n + 1);
	size_t j = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			out[j++] = ' ';
		} else if (s[i] == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return NULL;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return NULL;
			out[j++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[j++] = s[i];
		}
	}
	out[j] = '\0';
	return out;
}

int http_parse_query(dr_arena *arena, const char *query, dr_param *params,
		     size_t max)
{
	size_t n = 0;
	const char *p = query;

	while (p && *p) {
		const char *end = strchr(p, '&');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		char *name, *value;

		if (len > 0) {
			size_t nlen = eq ? (size_t)(eq - p) : len;
			dr_param *seen = NULL;

			name = decode(arena, p, nlen);
			value = eq ? decode(arena, eq + 1, len - nlen - 1)
				   : arena_strdup(arena, "");
			if (!name || !value)
				return -1;
			for (size_t i = 0; i < n && !seen; i++)
				if (strcmp(params[i].name, name) == 0)
					seen = &params[i];
			if (seen) {
				seen->repeated = 1;
			} else {
				if (n == max)
					return -1;
				params[n].name = name;
				params[n].value = value;
				params[n].repeated = 0;
				n++;
			}
		}
		p = end ? end + 1 : NULL;
	}
	return (int)n;
}

const char *http_param(const dr_param *params, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(params[i].name, name) == 0)
			return params[i].value;
	return NULL;
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	case 507:
		return "Insufficient Storage";
	default: return "Unknown";
	}
}

static void problem_v(dr_response *resp, int status, const char *slug,
		      const char *field, const char *fmt, va_list ap)
{
	char detail[1024];
	dr_buf *b = &resp->body;
	dr_status st = DR_OK;

	vsnprintf(detail, sizeof(detail), fmt, ap);
	http_response_reset(resp);
	resp->status = status;
	resp->content_type = "application/problem+json";
	st = dr_buf_printf(b, "{\"type\":\"urn:darkroom:problem:%s\","
			      "\"title\":\"%s\",\"status\":%d,\"detail\":",
			   slug, http_reason(status), status);
	if (st == DR_OK)
		st = dr_buf_json_string(b, detail);
	if (st == DR_OK && field) {
		st = dr_buf_puts(b, ",\"field\":");
		if (st == DR_OK)
			st = dr_buf_json_string(b, field);
	}
	if (st == DR_OK)
		st = dr_buf_puts(b, "}");
	if (st != DR_OK)
		dr_die("problem document does not fit the response buffer");
}

void http_problem(dr_response *resp, int status, const char *slug,
		  const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	problem_v(resp, status, slug, field, fmt, ap);
	va_end(ap);
}

int http_server_error_status(const char *redirect_status)
{
	const char *s = redirect_status;

	if (!s || strlen(s) != 3 || strspn(s, "0123456789") != 3)
		return 0;
	if (s[0] != '4' && s[0] != '5')
		return 0;
	return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/* The web server's own errors. conf/problems/ (lighttpd, when the app
 * cannot answer), conf/nginx.conf and conf/apache-*.conf carry the same
 * documents; keep them in step. */
static const struct server_problem {
	int status;
	const char *slug;
	const char *detail;
} server_problems[] = {
	{400, "bad_request", "the web server could not parse the request"},
	{403, "forbidden", "the web server does not serve this path"},
	{404, "not_found", "no such resource"},
	{405, "method_not_allowed", "the method is not allowed on this path"},
	{408, "request_timeout", "the request did not arrive in time"},
	{411, "length_required",
	 "send a Content-Length header (0 for an empty body)"},
	{412, "precondition_failed", "a precondition of the request failed"},
	{413, "body_too_large",
	 "the body is larger than the web server accepts"},
	{414, "uri_too_long", "the request URI is too long"},
	{416, "range_not_satisfiable", "the range is outside the file"},
	{417, "expectation_failed", "the Expect header cannot be met"},
	{431, "headers_too_large", "the request headers are too large"},
	{500, "internal", "internal error; see the server log"},
	{501, "not_implemented", "the web server does not implement this "
				 "method"},
	{502, "bad_gateway",
	 "the application did not answer properly; try again shortly"},
	{503, "unavailable",
	 "the application is not reachable; try again shortly"},
	{504, "timeout", "the application did not answer in time"},
	{505, "http_version_not_supported",
	 "the HTTP version is not supported"},
};

void http_server_problem(dr_response *resp, int status)
{
	size_t n = sizeof(server_problems) / sizeof(server_problems[0]);

	for (size_t i = 0; i < n; i++)
		if (server_problems[i].status == status) {
			http_problem(resp, status, server_problems[i].slug,
				     NULL, "%s", server_problems[i].detail);
			return;
		}
	http_problem(resp, status, "server_error", NULL,
		     "the web server refused the request");
}

int http_status_for(dr_status status)
{
	switch (status) {
	case DR_OK: return 200;
	case DR_ERR_INVALID: return 422;
	case DR_ERR_NOT_FOUND: return 404;
	case DR_ERR_CONFLICT: return 409;
	case DR_ERR_TOO_LARGE: return 413;
	case DR_ERR_UNSUPPORTED: return 415;
	case DR_ERR_AUTH: return 401;
	case DR_ERR_RATE_LIMITED: return 429;
	case DR_ERR_UNAVAILABLE: return 503;
	case DR_ERR_TIMEOUT: return 504;
	case DR_ERR_NETWORK:
	case DR_ERR_PROVIDER: return 502;
	default: return 500;
	}
}

void http_problem_from(dr_response *resp, const dr_error *err)
{
	int status = http_status_for(err->status);

	if (status == 503)
		http_problem(resp, 503, "unavailable", NULL,
			     "the database is unavailable; try again shortly");
	else if (err->status == DR_ERR_DATABASE && err->retryable)
		http_problem(resp, 503, "busy", NULL,
			     "the request collided with another; try again");
	else if (status >= 500 && status != 502 && status != 504)
		http_problem(resp, status, "internal", NULL,
			     "internal error; see the server log");
	else
		http_problem(resp, status,
			     err->code[0] ? err->code : "error", NULL, "%s",
			     err->message[0] ? err->message
					     : dr_strerror(err->status));
}
