/*
 * api.h - the HTTP API router and its handlers (CONTRACT §2).
 *
 * api_handle() takes a parsed request and fills a response; it never
 * touches FastCGI, so tests and fuzzers can call it directly. Routing is on
 * the request path (REQUEST_URI), which every web server passes the same
 * way, unlike SCRIPT_NAME/PATH_INFO.
 */
#ifndef DR_API_H
#define DR_API_H

#include "config.h"
#include "db.h"
#include "http.h"
#include "plugin.h"

#define DR_MAX_API_KEYS 32

typedef struct dr_app {
	const dr_config *cfg;
	dr_plugins *plugins;
	struct dr_instance *sink; /* the active sink, which makes the URLs of
				     stored objects (jobs.h); or NULL */
	dr_db *db;
	/* SHA-256 of each accepted API key: requests are checked by hashing
	 * the presented key and comparing digests in constant time. */
	unsigned char key_hashes[DR_MAX_API_KEYS][32];
	size_t n_keys;
} dr_app;

/* Prepare `app` over borrowed config, plugins and database handle.
 * DR_ERR_CONFIG when more than DR_MAX_API_KEYS keys are configured. */
dr_status api_init(dr_app *app, const dr_config *cfg, dr_plugins *plugins,
		   dr_db *db, dr_error *err) DR_WARN_UNUSED;

/* Answer one request. Always leaves a complete response in `resp`
 * (problem documents for every error). */
void api_handle(dr_app *app, const dr_request *req, dr_response *resp);

/* The largest body `req` (method and path parsed, body not yet read) may
 * carry: [limits] max_webhook_body for a provider webhook (POST
 * /v1/hooks/{adapter}), [limits] max_batch_body for a new batch (POST
 * /v1/batches), [server] max_body for every other request. */
size_t api_body_limit(const dr_app *app, const dr_request *req);

/* 1 when the body of `req` (method and path parsed) is an upload to
 * spool to a file (files.h) rather than read into memory: POST
 * /v1/files, up to [limits] max_upload. */
int api_spools_body(const dr_request *req);

/* 1 when `req` carries a valid API key (checked as for any /v1/ request),
 * so an upload is spooled only for a client that may make it. */
int api_authorized(const dr_app *app, const dr_request *req);

/* Answer a request whose body was not read: `status` 413 (over
 * api_body_limit()) or 400 (shorter or longer than its Content-Length),
 * 401 (an upload without a valid API key) or 507 (an upload that could
 * not be spooled), with a problem document. A provider webhook refused
 * so is logged (event=webhook.refused) and, for a configured adapter,
 * counted in darkroom_webhook_deliveries_total (result too_large or
 * unparsable). */
void api_body_refused(dr_app *app, const dr_request *req, int status,
		      dr_response *resp);

#endif
