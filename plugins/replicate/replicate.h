/*
 * replicate.h - what the files of the `replicate` adapter share.
 *
 * Private to plugins/replicate/: the plugin is built with
 * -fvisibility=hidden, so nothing declared here leaves the shared object
 * (tests/plugins/nm-check.sh checks that only dr_plugin_entry does). The
 * unit test links the plugin's objects and calls these functions directly.
 *
 *   replicate.c   the descriptor, configuration, model references and the
 *                 adapter operations (validate, submit, get, cancel,
 *                 webhook, reconcile);
 *   normalise.c   Replicate's prediction document -> dr_prediction;
 *   client.c      the HTTP client (on the host's http_request),
 *                 response classification and Retry-After.
 */
#ifndef DR_REPLICATE_H
#define DR_REPLICATE_H

#include <stddef.h>

#include <json-c/json.h>

#include "darkroom-plugin.h"

#define REP_PLUGIN_VERSION "1.0"

/* Longest prediction id we store (dr_prediction.id), longest owner or
 * name of a model reference, and the length of a version id. */
#define REP_ID_MAX	64
#define REP_NAME_MAX	100
#define REP_VERSION_LEN 64

/* Most outputs per prediction, and most bytes of output text, URLs and
 * data URIs together (a webhook's files are short references: the core
 * takes them out first; a poll's answer holds them whole, up to the
 * webhook's own 64 MiB). Over either: DR_ERR_TOO_LARGE
 * "output_too_large". */
#define REP_MAX_OUTPUTS	    64
#define REP_MAX_OUTPUT_SIZE (64u * 1024 * 1024)
/* Longest error text kept from a prediction (the rest is in raw_json). */
#define REP_MAX_ERROR_TEXT 4096

/* Largest response body read from the API: above the output cap, so a
 * prediction with 64 MiB of data URIs plus its logs still fits. */
#define REP_MAX_RESPONSE (72u * 1024 * 1024)
/* Nesting accepted when parsing a document. */
#define REP_JSON_DEPTH 64
/* Longest provider `detail` quoted in an error message. */
#define REP_DETAIL_MAX 200
/* Retry-After when a 429 names none, and the most we honour. */
#define REP_RETRY_AFTER_DEFAULT 5.0
#define REP_RETRY_AFTER_MAX	3600.0

/* ------------------------------------------------------------------------
 * Model references (replicate.c)
 */
typedef enum rep_model_kind {
	REP_MODEL_NAME = 1,  /* owner/name: the model's latest version */
	REP_MODEL_VERSIONED, /* owner/name:<64 hex> */
	REP_MODEL_VERSION    /* <64 hex> */
} rep_model_kind;

typedef struct rep_model {
	rep_model_kind kind;
	char owner[REP_NAME_MAX + 1];	   /* empty for REP_MODEL_VERSION */
	char name[REP_NAME_MAX + 1];	   /* empty for REP_MODEL_VERSION */
	char version[REP_VERSION_LEN + 1]; /* empty for REP_MODEL_NAME */
} rep_model;

/*
 * Parse a model reference. Returns 1 and fills *m, or 0 and writes a
 * sentence starting with "model: " into why (NUL-terminated).
 */
int rep_parse_model(const char *ref, rep_model *m, char *why, size_t whysz);

/* ------------------------------------------------------------------------
 * Normalisation (normalise.c)
 */

/*
 * Turn a prediction document into `out`, which is overwritten (not
 * freed: pass it cleared). DR_OK with every member malloc'd, or an error
 * (DR_ERR_PROVIDER "bad_prediction" for a document without a usable id,
 * DR_ERR_TOO_LARGE "output_too_large", DR_ERR_NOMEM) with `out` cleared
 * and nothing allocated. `doc` is borrowed.
 */
dr_status rep_normalise(const dr_host *host, json_object *doc,
			dr_prediction *out, dr_error *err);

/* Free every member of `p` and clear it; NULL is a no-op. */
void rep_prediction_clear(dr_prediction *p);

/*
 * The progress a log shows: the last "<number>%|" (a tqdm bar) as 0..1,
 * or -1 when there is none. `len` bytes of `logs` are looked at.
 */
double rep_progress_from_logs(const char *logs, size_t len);

/*
 * Seconds since the epoch of an ISO 8601 / RFC 3339 timestamp such as
 * "2024-05-01T12:00:00.123456789Z" or "...+02:00", or -1 when it is not
 * one.
 */
double rep_parse_time(const char *s);

/* 1 when s is an http(s) URL to download, or a data: URI. */
int rep_is_url(const char *s);
int rep_is_data_uri(const char *s);

/* Parse `len` bytes of JSON text; NULL when it is not exactly one JSON
 * value (trailing whitespace allowed). The caller puts the result. */
json_object *rep_parse_json(const char *text, size_t len);

/* ------------------------------------------------------------------------
 * HTTP client (client.c)
 */
typedef struct rep_client rep_client;

typedef struct rep_client_config {
	const dr_host *host;     /* whose http_request it uses */
	const dr_instance *inst;
	const char *user_agent;
	double connect_timeout; /* seconds */
} rep_client_config;

/* A response as received: valid until the next request on the client. */
typedef struct rep_response {
	long status;	  /* HTTP status */
	const char *body; /* NUL-terminated, `len` bytes */
	size_t len;
	double retry_after; /* seconds the Retry-After header asks, or -1 */
} rep_response;

/* What went wrong before a complete HTTP answer arrived. */
typedef enum rep_transport {
	REP_TRANSPORT_OK = 0,
	REP_TRANSPORT_NOT_SENT, /* failed before the request left: safe */
	REP_TRANSPORT_TIMEOUT,	/* sent (maybe), then no answer in time */
	REP_TRANSPORT_FAILED,	/* sent (maybe), then the connection failed */
	REP_TRANSPORT_TOO_LARGE /* the answer was over REP_MAX_RESPONSE */
} rep_transport;

/* A new client (never NULL: the host's allocator aborts when out of
 * memory). Free with rep_client_free. */
rep_client *rep_client_new(const rep_client_config *cfg);
void rep_client_free(rep_client *c);

/*
 * One request. `method` is "GET" or "POST" (`body` may be NULL for an
 * empty POST); `headers` is an extra NULL-terminated list of "Name: value"
 * lines (borrowed; may carry the token, which never appears in `why`).
 * Returns REP_TRANSPORT_OK with *resp filled, or another value with a
 * one-sentence reason in why.
 */
rep_transport rep_client_request(rep_client *c, const char *method,
				 const char *url, const char *const *headers,
				 const char *body, double timeout,
				 rep_response *resp, char *why, size_t whysz);

/*
 * The wait a 429 asks for: the larger of the body's "retry_after" and the
 * Retry-After header (as the host read it: resp->retry_after), REP_RETRY_AFTER_DEFAULT when neither is there,
 * clamped to [1, REP_RETRY_AFTER_MAX].
 */
double rep_rate_limit_wait(const rep_response *resp);

/*
 * The provider's explanation in an error body (problem+json `detail`,
 * else `title`, else the text itself), cleaned for a message: control
 * characters replaced, cut at REP_DETAIL_MAX bytes, and `secret` (when
 * not NULL or empty) replaced by "[redacted]". Writes "" when there is
 * none.
 */
void rep_error_detail(const rep_response *resp, const char *secret, char *buf,
		      size_t bufsz);

#endif
