/*
 * http.h - requests and responses of the HTTP API, independent of FastCGI.
 *
 * The FastCGI loop (fcgi_main.c) fills a dr_request from the server's
 * parameters and passes it to the router (api.c); the router fills a
 * dr_response. Keeping both plain structs lets tests and fuzzers drive the
 * router without a web server. This module is also the one place that maps
 * a dr_status to an HTTP status and writes RFC 9457 problem documents.
 */
#ifndef DR_HTTP_H
#define DR_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "buf.h"
#include "error.h"

#define DR_MAX_HEADERS 64        /* request headers kept per request */
#define DR_MAX_RESPONSE (16u << 20) /* largest response body */

typedef struct dr_param {
	const char *name;
	const char *value;
	int repeated; /* the name came again later in the query */
} dr_param;

typedef struct dr_request {
	const char *method;        /* "GET", "POST", ... */
	const char *path;          /* REQUEST_URI up to '?', not decoded */
	const char *query;         /* after '?', or "" */
	const char *content_type;  /* or NULL */
	const char *authorization; /* or NULL */
	const char *remote_addr;   /* or NULL */
	dr_param headers[DR_MAX_HEADERS]; /* lower-case names, '-' not '_' */
	size_t n_headers;
	const unsigned char *body;
	size_t body_len;
	/* An upload's body, spooled to a temporary file instead of `body`
	 * (POST /v1/files, api_spools_body()), or NULL. */
	const struct dr_upload *upload;
	dr_arena *arena;           /* request memory, reset after the reply */
} dr_request;

/* The head of a response is Status, Content-Type, Content-Length and
 * Cache-Control, then extra_headers: each header name once. */
typedef struct dr_response {
	int status;
	const char *content_type;  /* NULL: application/json; charset=utf-8 */
	const char *cache_control; /* NULL: no-store */
	char extra_headers[512]; /* "Name: value\r\n" lines */
	dr_buf body;
	/* A body too large for `body`, sent from a file instead: body_fd
	 * (owned: closed by reset and free; -1 when none), body_fd_len
	 * bytes from offset 0. */
	int body_fd;
	uint64_t body_fd_len;
} dr_response;

/* Prepare an empty 200 response with a body limit of DR_MAX_RESPONSE. */
void http_response_init(dr_response *resp);

/* Forget the status, headers and body; keep the memory. */
void http_response_reset(dr_response *resp);

void http_response_free(dr_response *resp);

/* Add a header line, replacing an earlier one of the same name (names
 * compare case-insensitively), so no header is sent twice; silently
 * dropped when the header space is full (only fixed, short headers are
 * added). Content-Type and Cache-Control are fields of dr_response, and
 * Status and Content-Length are written from it: never added here. */
void http_add_header(dr_response *resp, const char *name, const char *value);

/* The request header `name` (lower case, dashes), or NULL. */
const char *http_header(const dr_request *req, const char *name);

/*
 * Decode the query string into params (arena memory). Percent-escapes and
 * '+' are decoded; a parameter given twice keeps the first value and is
 * marked `repeated`, for callers that refuse an ambiguous query. At most
 * `max` distinct parameters; returns the number found, or -1 on a
 * malformed escape or too many parameters.
 */
int http_parse_query(dr_arena *arena, const char *query, dr_param *params,
		     size_t max);

/* The value of `name` among params, or NULL. */
const char *http_param(const dr_param *params, size_t n, const char *name);

/* Reason phrase of an HTTP status ("Not Found"). */
const char *http_reason(int status);

/*
 * Make `resp` a problem document: status, a type URI built from `slug`
 * ("urn:darkroom:problem:<slug>"), the reason phrase as title, and a
 * printf detail. `field`, when not NULL, is added as the extension member
 * "field" (the JSON field a 422 is about).
 */
void http_problem(dr_response *resp, int status, const char *slug,
		  const char *field, const char *fmt, ...) DR_PRINTF(5, 6);

/*
 * The status of an error the web server met itself and hands to the app
 * to answer: lighttpd's server.error-handler re-dispatches a request it
 * refused (411, 413, a missing /media/ file, an unreachable backend) as a
 * GET of the error handler, with the original REQUEST_URI and
 * REDIRECT_STATUS set to its status; for an ordinary request lighttpd
 * sets "200" and the other servers nothing. `redirect_status` is that
 * parameter (may be NULL). Returns 400..599, or 0 for anything else.
 */
int http_server_error_status(const char *redirect_status);

/*
 * Make `resp` the problem document for an error the web server met
 * before the request reached the app (a status from
 * http_server_error_status()): the same type, title and detail as the
 * documents the configs in conf/ answer with when the app cannot.
 */
void http_server_problem(dr_response *resp, int status);

/* The HTTP status for a failed dr_status (e.g. DR_ERR_UNAVAILABLE ->
 * 503, DR_ERR_NOT_FOUND -> 404). */
int http_status_for(dr_status status);

/* A problem document for a failed core call: status from
 * http_status_for(), detail from err->message (503s and 500s get a fixed
 * detail; nothing internal leaks). */
void http_problem_from(dr_response *resp, const dr_error *err);

#endif
