/*
 * api.c - routing and handlers of the HTTP API (see api.h).
 *
 * Each handler validates what it reads, calls one module (jobs, db), and
 * maps failures through http_problem_from(), the one place that turns a
 * dr_status into an HTTP status.
 */
#include "api.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batches.h"
#include "blobs.h"
#include "dashboard.h"
#include "deletion.h"
#include "digest.h"
#include "files.h"
#include "ids.h"
#include "jobs.h"
#include "jobstate.h"
#include "jsonutil.h"
#include "log.h"
#include "metrics.h"
#include "news.h"
#include "outputs.h"
#include "queue.h"

#define MAX_QUERY_PARAMS 32

dr_status api_init(dr_app *app, const dr_config *cfg, dr_plugins *plugins,
		   dr_db *db, dr_error *err)
{
	memset(app, 0, sizeof(*app));
	if (cfg->server.n_api_keys > DR_MAX_API_KEYS)
		return dr_fail(err, DR_ERR_CONFIG, "config",
			       "at most %d API keys can be configured",
			       DR_MAX_API_KEYS);
	app->cfg = cfg;
	app->plugins = plugins;
	app->sink = plugins_sink(plugins, cfg->server.sink);
	app->db = db;
	for (size_t i = 0; i < cfg->server.n_api_keys; i++)
		digest_sha256(cfg->server.api_keys[i],
			      strlen(cfg->server.api_keys[i]),
			      app->key_hashes[i]);
	app->n_keys = cfg->server.n_api_keys;
	return DR_OK;
}

/* ------------------------------------------------------------------ auth */

/*
 * Check "Authorization: Bearer <key>". The presented key is hashed and the
 * digest compared with every configured key's digest, all of them, in
 * constant time, so neither the key's length nor which key matched shows
 * in the timing. Writes the matching key's scope (16 hex of its digest)
 * for idempotency keys.
 */
static int authorized(const dr_app *app, const dr_request *req,
		      char scope[17])
{
	const char *h = req->authorization;
	unsigned char digest[32];
	int ok = 0;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	if (!*h)
		return 0;
	digest_sha256(h, strlen(h), digest);
	for (size_t i = 0; i < app->n_keys; i++)
		ok |= CRYPTO_memcmp(digest, app->key_hashes[i], 32) == 0;
	digest_hex(digest, 8, scope);
	return ok;
}

/* -------------------------------------------------------------- handlers */

static void reply_json(dr_response *resp, int status)
{
	resp->status = status;
	resp->content_type = "application/json; charset=utf-8";
}

static int content_type_is_json(const char *ct)
{
	size_t n;

	if (!ct)
		return 0;
	while (*ct == ' ')
		ct++;
	n = strcspn(ct, "; ");
	return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

/*
 * Answer a create of `what` ("job", "batch") that ended with `st`: the
 * problem (logged, event=<what>.create_failed, unless a conflict of
 * idempotency keys), or 202 with the object already in resp->body, 200
 * for a replay. Returns 1 when something new was made (the workers are
 * woken for it; the caller logs it).
 */
static int created(dr_app *app, dr_response *resp, dr_status st,
		   const dr_error *err, int replayed, const char *what)
{
	if (st != DR_OK) {
		dr_buf_reset(&resp->body);
		if (st != DR_ERR_CONFLICT)
			dr_log(st == DR_ERR_UNAVAILABLE ? DR_LOG_WARNING
							: DR_LOG_ERR,
			       "event=%s.create_failed status=\"%s\" code=%s",
			       what, dr_strerror(st), err->code);
		http_problem_from(resp, err);
		return 0;
	}
	reply_json(resp, replayed ? 200 : 202);
	if (replayed)
		return 0;
	queue_wakeup_send(app->cfg->worker.wakeup_socket);
	return 1;
}

/* The Idempotency-Key header `key` is usable: 1, or 0 after a 400. */
static int idem_key_ok(const char *key, dr_response *resp)
{
	size_t n;

	if (!key)
		return 1;
	n = strlen(key);
	for (size_t i = 0; i < n; i++)
		if (key[i] < 0x21 || key[i] > 0x7e)
			n = 0;
	if (n == 0 || n > DR_MAX_IDEMPOTENCY_KEY) {
		http_problem(resp, 400, "bad_idempotency_key",
			     "Idempotency-Key",
			     "Idempotency-Key must be 1-255 printable ASCII "
			     "characters");
		return 0;
	}
	return 1;
}

/* The $file references of an input (files.h) name files that exist: 1,
 * or 0 after a 422 naming the field (or the database's error). */
static int input_files_ok(dr_app *app, json_object *input, const char *where,
			  dr_response *resp)
{
	char field[DR_FILE_FIELD_MAX];
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	st = files_check_input(app->db, input, where, field, &err);
	if (st == DR_ERR_INVALID)
		http_problem(resp, 422, err.code, field, "%s", err.message);
	else if (st != DR_OK)
		http_problem_from(resp, &err);
	return st == DR_OK;
}

/* How a create reads its body: jobs_parse_request (POST /v1/jobs) or
 * jobs_parse_training (POST /v1/trainings). */
typedef dr_status (*job_parse_fn)(const dr_config *cfg,
				  const dr_plugins *plugins, json_object *root,
				  dr_job_request *out, const char **field,
				  dr_error *err);

/* POST /v1/jobs and POST /v1/trainings: one intake, the body read by
 * `parse`. */
static void create_job(dr_app *app, const dr_request *req, dr_response *resp,
		       const char *scope, job_parse_fn parse)
{
	const dr_config *cfg = app->cfg;
	const char *idem_key = http_header(req, "idempotency-key");
	json_object *root = NULL;
	dr_job_request jr;
	dr_idempotency idem = {NULL, NULL, NULL};
	char body_hash[65];
	char id[DR_JOB_ID_LEN + 1];
	char wf_field[DR_FIELD_MAX];
	const char *field = NULL;
	int replayed = 0;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	memset(&jr, 0, sizeof(jr));
	if (req->body_len > cfg->server.max_body) {
		http_problem(resp, 413, "body_too_large", NULL,
			     "the body is larger than %zu bytes",
			     cfg->server.max_body);
		return;
	}
	if (!content_type_is_json(req->content_type)) {
		http_problem(resp, 415, "unsupported_media_type", NULL,
			     "send the job as application/json");
		return;
	}
	if (!idem_key_ok(idem_key, resp))
		return;
	st = json_parse_limited((const char *)req->body, req->body_len,
				cfg->server.json_max_depth, &root, &err);
	if (st != DR_OK) {
		http_problem(resp, 400, err.code, NULL, "%s", err.message);
		return;
	}
	if (parse == jobs_parse_request &&
	    json_object_is_type(root, json_type_object) &&
	    json_object_object_get_ex(root, "steps", NULL)) {
		st = jobs_parse_workflow(cfg, app->plugins, root, &jr, wf_field,
					 &err);
		field = wf_field;
	} else {
		st = parse(cfg, app->plugins, root, &jr, &field, &err);
	}
	json_object_put(root);
	if (st != DR_OK) {
		http_problem(resp, 422, "invalid_field", field, "%s",
			     err.message);
		return;
	}
	if (idem_key) {
		digest_sha256_hex(req->body, req->body_len, body_hash);
		idem.scope = scope;
		idem.key = idem_key;
		idem.body_hash = body_hash;
	}
	/* A replay answers with its job even if a file it named is gone
	 * since. */
	if (!jobs_idempotent_replay(app->db, &idem)) {
		if (!input_files_ok(app, jr.input, "input", resp)) {
			jobs_request_free(&jr);
			return;
		}
		for (size_t i = 0; i < jr.n_steps; i++) {
			char where[48];

			snprintf(where, sizeof(where), "steps[%zu].input", i);
			if (!input_files_ok(app, jr.steps[i].input, where,
					    resp)) {
				jobs_request_free(&jr);
				return;
			}
		}
	}
	dr_buf_reset(&resp->body);
	st = jobs_create(app->db, cfg, app->sink, &jr, &idem, id, &replayed,
			 &resp->body, &err);
	if (created(app, resp, st, &err, replayed, "job"))
		dr_log(DR_LOG_INFO,
		       "event=job.created job=%s adapter=%s kind=%s steps=%zu",
		       id, jr.adapter,
		       jr.training  ? "training"
		       : jr.n_steps ? "workflow"
				    : "prediction",
		       jr.n_steps);
	jobs_request_free(&jr);
}

/* POST /v1/batches: validate every item, then create them all in one
 * transaction (batches.h); 202 and the batch, 200 for a replay. */
static void create_batch(dr_app *app, const dr_request *req, dr_response *resp,
			 const char *scope)
{
	const dr_config *cfg = app->cfg;
	const char *idem_key = http_header(req, "idempotency-key");
	json_object *root = NULL;
	dr_batch_request br;
	dr_idempotency idem = { NULL, NULL, NULL };
	char body_hash[65], field[DR_BATCH_FIELD_MAX];
	char id[DR_JOB_ID_LEN + 1];
	int replayed = 0;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	if (req->body_len > cfg->limits.max_batch_body) {
		http_problem(resp, 413, "body_too_large", NULL,
			     "the body is larger than %zu bytes",
			     cfg->limits.max_batch_body);
		return;
	}
	if (!content_type_is_json(req->content_type)) {
		http_problem(resp, 415, "unsupported_media_type", NULL,
			     "send the batch as application/json");
		return;
	}
	if (!idem_key_ok(idem_key, resp))
		return;
	st = json_parse_limited((const char *)req->body, req->body_len,
				cfg->server.json_max_depth, &root, &err);
	if (st != DR_OK) {
		http_problem(resp, 400, err.code, NULL, "%s", err.message);
		return;
	}
	st = batches_parse_request(cfg, app->plugins, root, &br, field, &err);
	json_object_put(root);
	if (st != DR_OK) {
		http_problem(resp, 422, "invalid_field", field, "%s",
			     err.message);
		return;
	}
	for (size_t i = 0; i < br.n_items; i++) {
		char where[80];

		snprintf(where, sizeof(where), "items[%zu].input", i);
		if (!input_files_ok(app, br.items[i].input, where, resp)) {
			batches_request_free(&br);
			return;
		}
		for (size_t k = 0; k < br.items[i].n_steps; k++) {
			snprintf(where, sizeof(where),
				 "items[%zu].steps[%zu].input", i, k);
			if (!input_files_ok(app, br.items[i].steps[k].input,
					    where, resp)) {
				batches_request_free(&br);
				return;
			}
		}
	}
	if (idem_key) {
		digest_sha256_hex(req->body, req->body_len, body_hash);
		idem.scope = scope;
		idem.key = idem_key;
		idem.body_hash = body_hash;
	}
	dr_buf_reset(&resp->body);
	st = batches_create(app->db, cfg, &br, &idem, id, &replayed,
			    &resp->body, &err);
	if (created(app, resp, st, &err, replayed, "batch"))
		dr_log(DR_LOG_INFO, "event=batch.created batch=%s jobs=%zu", id,
		       br.n_items);
	batches_request_free(&br);
}

/* GET /v1/batches/{id} and POST /v1/batches/{id}/cancel. */
static void batch_action(dr_app *app, const char *id, int cancel,
			 dr_response *resp)
{
	size_t n = 0;
	dr_error err;
	dr_status st = DR_OK;

	dr_error_clear(&err);
	if (cancel) {
		st = batches_cancel(app->db, id, &n, &err);
		if (st == DR_OK && n) {
			queue_wakeup_send(app->cfg->worker.wakeup_socket);
			dr_log(DR_LOG_INFO,
			       "event=batch.cancel batch=%s jobs=%zu", id, n);
		}
	}
	if (st == DR_OK)
		st = batches_render(app->db, id, &resp->body, &err);
	if (st != DR_OK) {
		dr_buf_reset(&resp->body);
		http_problem_from(resp, &err);
	} else {
		reply_json(resp, cancel ? 202 : 200);
	}
}

/*
 * The query of a list endpoint as the name/value pairs jobs_filter_parse()
 * and outputs_filter_parse() read (*n of them in args; the strings are
 * the request arena's).
 * http_parse_query() folds a repeated parameter into one entry marked
 * `repeated`; it is given twice here, so the parse refuses it as it
 * refuses a repeated option of the CLI. Returns 0, or -1 after a 400
 * for a malformed query.
 */
static int list_args(const dr_request *req,
		     dr_filter_arg args[2 * MAX_QUERY_PARAMS], size_t *n,
		     dr_response *resp)
{
	dr_param params[MAX_QUERY_PARAMS];
	int np = http_parse_query(req->arena, req->query, params,
				  MAX_QUERY_PARAMS);

	*n = 0;
	if (np < 0) {
		http_problem(resp, 400, "bad_query", NULL,
			     "malformed query string, or more than %d "
			     "parameters",
			     MAX_QUERY_PARAMS);
		return -1;
	}
	for (int i = 0; i < np; i++) {
		dr_filter_arg a = {params[i].name, params[i].value};

		args[(*n)++] = a;
		if (params[i].repeated)
			args[(*n)++] = a;
	}
	return 0;
}

static void list_jobs(dr_app *app, const dr_request *req, dr_response *resp)
{
	dr_filter_arg args[2 * MAX_QUERY_PARAMS];
	dr_job_filter f;
	const char *field = NULL;
	dr_error err;
	size_t n;

	if (list_args(req, args, &n, resp))
		return;
	dr_error_clear(&err);
	if (jobs_filter_parse(args, n, &f, &field, &err) != DR_OK) {
		http_problem(resp, 422, "invalid_parameter", field, "%s",
			     err.message);
		return;
	}
	if (jobs_list(app->db, app->cfg, app->sink, &f, &resp->body, &err) !=
	    DR_OK)
		http_problem_from(resp, &err);
	else
		reply_json(resp, 200);
}

/* GET /v1/outputs: search the output index. */
static void list_outputs(dr_app *app, const dr_request *req, dr_response *resp)
{
	dr_filter_arg args[2 * MAX_QUERY_PARAMS];
	dr_output_filter f;
	const char *field = NULL;
	dr_error err;
	size_t n;

	if (list_args(req, args, &n, resp))
		return;
	dr_error_clear(&err);
	if (outputs_filter_parse(args, n, &f, &field, &err) != DR_OK) {
		http_problem(resp, 422, "invalid_parameter", field, "%s",
			     err.message);
		return;
	}
	if (outputs_search(app->db, app->sink, &f, &resp->body, &err) != DR_OK)
		http_problem_from(resp, &err);
	else
		reply_json(resp, 200);
}

static void get_job(dr_app *app, const char *id, dr_response *resp)
{
	dr_error err;

	dr_error_clear(&err);
	if (jobs_render(app->db, app->cfg, app->sink, id, &resp->body, &err) !=
	    DR_OK)
		http_problem_from(resp, &err);
	else
		reply_json(resp, 200);
}

static void job_action(dr_app *app, const char *id, const char *action,
		       dr_response *resp)
{
	/* The action's name in log lines. */
	const char *what = strcmp(action, "callback/retry") == 0
				   ? "callback_retry"
				   : action;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	if (strcmp(action, "cancel") == 0)
		st = jobstate_client_cancel(app->db, id, &err);
	else if (strcmp(action, "callback/retry") == 0)
		st = jobstate_client_callback_retry(app->db, id, &err);
	else
		st = jobstate_client_retry(app->db, id, &err);
	if (st == DR_OK) {
		queue_wakeup_send(app->cfg->worker.wakeup_socket);
		dr_log(DR_LOG_INFO, "event=job.%s job=%s", what, id);
		st = jobs_render(app->db, app->cfg, app->sink, id, &resp->body,
				 &err);
	}
	if (st != DR_OK) {
		if (st != DR_ERR_NOT_FOUND && st != DR_ERR_CONFLICT)
			dr_log(st == DR_ERR_UNAVAILABLE ? DR_LOG_WARNING
							: DR_LOG_ERR,
			       "event=job.%s_failed job=%s status=\"%s\" "
			       "code=%s retryable=%d",
			       what, id, dr_strerror(st), err.code,
			       err.retryable);
		http_problem_from(resp, &err);
	} else {
		reply_json(resp, 202);
	}
}

/* DELETE /v1/jobs/{id}: the job, its rows and the objects only it used
 * (deletion.h). 204; 409 unless ended; 404. */
static void delete_job(dr_app *app, const char *id, const char *scope,
		       dr_response *resp)
{
	dr_error err;

	dr_error_clear(&err);
	if (deletion_delete_job(app->db, id, scope, NULL, NULL, &err) !=
	    DR_OK) {
		http_problem_from(resp, &err);
		return;
	}
	/* The worker removes the objects released: wake it. */
	queue_wakeup_send(app->cfg->worker.wakeup_socket);
	resp->status = 204;
}

/* DELETE /v1/jobs?metadata.K=V...: a deletion the worker does in
 * batches; 202 and the deletion. */
static void delete_jobs(dr_app *app, const dr_request *req, const char *scope,
			dr_response *resp)
{
	static const char *const names[] = { NULL };
	dr_filter_arg args[2 * MAX_QUERY_PARAMS];
	dr_metadata_filter meta[DR_MAX_METADATA_FILTERS];
	char id[DR_DELETION_ID_LEN + 1];
	const char *field = NULL;
	size_t n, n_meta = 0;
	int limit;
	dr_error err;

	if (list_args(req, args, &n, resp))
		return;
	dr_error_clear(&err);
	if (jobs_filter_args(args, n, names, NULL, meta, &n_meta, &limit,
			     &field, &err) != DR_OK) {
		http_problem(resp, 422, "invalid_parameter", field, "%s",
			     err.message);
		return;
	}
	if (n_meta == 0) {
		http_problem(resp, 422, "invalid_parameter", "metadata",
			     "metadata: deleting jobs takes at least one "
			     "metadata.KEY=VALUE filter (DELETE "
			     "/v1/jobs/{id} deletes one job)");
		return;
	}
	if (deletion_request(app->db, meta, n_meta, scope, id, &err) != DR_OK) {
		http_problem_from(resp, &err);
		return;
	}
	/* Recorded: whatever happens to the read back, the answer is 202
	 * (a client retrying an error would ask for a second deletion). */
	if (deletion_render(app->db, id, &resp->body, &err) != DR_OK) {
		dr_buf_reset(&resp->body);
		if (dr_buf_printf(&resp->body,
				  "{\"id\":\"%s\",\"state\":\"queued\","
				  "\"counts\":{\"jobs_deleted\":0,"
				  "\"jobs_waiting\":0,\"objects_released\":0}}",
				  id) != DR_OK)
			dr_die("deletion answer does not fit");
	}
	queue_wakeup_send(app->cfg->worker.wakeup_socket);
	{
		char where[64];

		snprintf(where, sizeof(where), "/v1/deletions/%s", id);
		http_add_header(resp, "Location", where);
	}
	reply_json(resp, 202);
}

/* GET /v1/deletions/{id}. */
static void get_deletion(dr_app *app, const char *id, dr_response *resp)
{
	dr_error err;

	dr_error_clear(&err);
	if (deletion_render(app->db, id, &resp->body, &err) != DR_OK)
		http_problem_from(resp, &err);
	else
		reply_json(resp, 200);
}

/* ------------------------------------------------------------------ files */

/* POST /v1/files: the spooled body, type checked, stored; 201 and the
 * file. */
static void upload_file(dr_app *app, const dr_request *req, dr_response *resp)
{
	dr_param params[MAX_QUERY_PARAMS];
	const char *filename = NULL, *mime = NULL;
	char id[DR_JOB_ID_LEN + 1];
	dr_error err;
	int np;

	dr_error_clear(&err);
	if (!req->upload) {
		http_problem(resp, 400, "bad_body", NULL,
			     "the upload was not received");
		return;
	}
	np = http_parse_query(req->arena, req->query, params, MAX_QUERY_PARAMS);
	if (np < 0) {
		http_problem(resp, 400, "bad_query", NULL,
			     "malformed query string");
		return;
	}
	for (int i = 0; i < np; i++) {
		if (strcmp(params[i].name, "filename") != 0 ||
		    params[i].repeated) {
			http_problem(resp, 422, "invalid_parameter",
				     params[i].name,
				     "%.64s: unknown or repeated parameter "
				     "(only filename is taken)",
				     params[i].name);
			return;
		}
		filename = params[i].value;
	}
	if (filename) {
		size_t n = strlen(filename);
		int bad = n == 0 || n > DR_FILE_NAME_MAX;

		dr_buf u;

		for (size_t i = 0; i < n; i++)
			bad |= (unsigned char)filename[i] < 0x20 ||
			       filename[i] == 0x7f;
		/* Well-formed UTF-8: kept as it is, it must not change. */
		dr_buf_init(&u, 4 * (size_t)DR_FILE_NAME_MAX + 16);
		bad |= dr_buf_utf8(&u, filename, DR_FILE_NAME_MAX) != DR_OK ||
		       u.len != n || (n && memcmp(u.data, filename, n) != 0);
		dr_buf_free(&u);
		if (bad) {
			http_problem(resp, 422, "invalid_parameter", "filename",
				     "filename: 1 to %d bytes of UTF-8 without "
				     "control characters",
				     DR_FILE_NAME_MAX);
			return;
		}
	}
	if (files_check_type(req->upload, req->content_type, &mime, &err) !=
	    DR_OK) {
		http_problem(resp, http_status_for(err.status), err.code, NULL,
			     "%s", err.message);
		return;
	}
	if (files_create(app->db, app->cfg, app->sink, req->upload, mime,
			 filename, &resp->body, id, &err) != DR_OK) {
		dr_buf_reset(&resp->body);
		dr_log(err.status == DR_ERR_UNAVAILABLE ? DR_LOG_WARNING
							: DR_LOG_ERR,
		       "event=file.create_failed status=\"%s\" code=%s",
		       dr_strerror(err.status), err.code);
		http_problem_from(resp, &err);
		return;
	}
	dr_log(DR_LOG_INFO, "event=file.created file=%s type=%s bytes=%" PRIu64,
	       id, mime, req->upload->size);
	{
		char where[64];

		snprintf(where, sizeof(where), "/v1/files/%s", id);
		http_add_header(resp, "Location", where);
	}
	reply_json(resp, 201);
}

/* GET /v1/files: newest first, ?limit= (default 20) and ?cursor=. */
static void list_files(dr_app *app, const dr_request *req, dr_response *resp)
{
	dr_param params[MAX_QUERY_PARAMS];
	const char *cursor = NULL;
	int limit = 20, np;
	dr_error err;

	dr_error_clear(&err);
	np = http_parse_query(req->arena, req->query, params, MAX_QUERY_PARAMS);
	if (np < 0) {
		http_problem(resp, 400, "bad_query", NULL,
			     "malformed query string");
		return;
	}
	for (int i = 0; i < np; i++) {
		const char *v = params[i].value;

		if (params[i].repeated ||
		    (strcmp(params[i].name, "limit") != 0 &&
		     strcmp(params[i].name, "cursor") != 0)) {
			http_problem(resp, 422, "invalid_parameter",
				     params[i].name,
				     "%.64s: unknown or repeated parameter",
				     params[i].name);
			return;
		}
		if (strcmp(params[i].name, "cursor") == 0) {
			cursor = v;
			continue;
		}
		if (!*v || strlen(v) > 3 ||
		    strspn(v, "0123456789") != strlen(v) ||
		    (limit = (int)strtol(v, NULL, 10)) < 1 ||
		    limit > DR_FILES_PAGE_MAX) {
			http_problem(resp, 422, "invalid_parameter", "limit",
				     "limit: expected 1 to %d",
				     DR_FILES_PAGE_MAX);
			return;
		}
	}
	if (files_list(app->db, app->cfg, limit, cursor, &resp->body, &err) !=
	    DR_OK) {
		dr_buf_reset(&resp->body);
		if (err.status == DR_ERR_INVALID)
			http_problem(resp, 422, "invalid_parameter", "cursor",
				     "%s", err.message);
		else
			http_problem_from(resp, &err);
		return;
	}
	reply_json(resp, 200);
}

/* GET /v1/files/{id} and DELETE /v1/files/{id}. */
static void file_action(dr_app *app, const char *id, int del, dr_response *resp)
{
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	st = del ? files_delete(app->db, app->sink, id, &err)
		 : files_render(app->db, app->cfg, id, &resp->body, &err);
	if (st != DR_OK) {
		dr_buf_reset(&resp->body);
		http_problem_from(resp, &err);
	} else if (del) {
		resp->status = 204;
	} else {
		reply_json(resp, 200);
	}
}

/* GET /v1/files/{id}/content: the bytes, to the API key or to the holder
 * of a signed URL (files.h). */
static void file_content(dr_app *app, const char *id, dr_response *resp)
{
	const char *ct = NULL;
	uint64_t size = 0;
	int fd = -1;
	dr_error err;

	dr_error_clear(&err);
	if (files_content(app->db, app->sink, id, &fd, &size, &resp->body, &ct,
			  &err) != DR_OK) {
		dr_buf_reset(&resp->body);
		http_problem_from(resp, &err);
		return;
	}
	resp->status = 200;
	resp->content_type = ct;
	resp->cache_control = "private, no-store";
	resp->body_fd = fd;
	resp->body_fd_len = fd >= 0 ? size : 0;
	http_add_header(resp, "X-Content-Type-Options", "nosniff");
	http_add_header(resp, "Content-Disposition", "attachment");
}

/* A signed content URL (no API key): 1 when `req` carries exp and sig;
 * then the answer is made, the content or 403. */
static int signed_content(dr_app *app, const dr_request *req, const char *id,
			  dr_response *resp)
{
	dr_param params[MAX_QUERY_PARAMS];
	const char *exp, *sig;
	int np = http_parse_query(req->arena, req->query, params,
				  MAX_QUERY_PARAMS);

	if (np <= 0)
		return 0;
	exp = http_param(params, (size_t)np, "exp");
	sig = http_param(params, (size_t)np, "sig");
	if (!exp && !sig)
		return 0;
	if (!files_url_check(app->cfg, id, exp, sig,
			     plugin_host_services()->now())) {
		http_problem(resp, 403, "bad_signature", NULL,
			     "the file URL's signature is wrong or it has "
			     "expired");
		return 1;
	}
	file_content(app, id, resp);
	return 1;
}

static void healthz(dr_app *app, dr_response *resp)
{
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	st = db_ping(app->db, &err);
	if (st != DR_OK) {
		http_problem(resp, 503, "unavailable", NULL,
			     "the database does not answer");
		return;
	}
	if (dr_buf_printf(&resp->body,
			  "{\"status\":\"ok\",\"version\":\"%s\","
			  "\"database\":\"ok\",\"adapters\":%zu,"
			  "\"sinks\":%zu}",
			  DR_VERSION, app->plugins->n_adapters,
			  app->plugins->n_sinks) != DR_OK)
		dr_die("health document does not fit");
	reply_json(resp, 200);
}

/* Count one webhook delivery (darkroom_webhook_deliveries_total). */
static void webhook_metric(dr_app *app, const char *adapter,
			   const char *result)
{
	char labels[DR_METRICS_LABELS_MAX];

	metrics_labels(labels, sizeof(labels), "adapter", adapter, "result",
		       result, NULL);
	metrics_add(app->db, "darkroom_webhook_deliveries_total", labels, 1);
}

/* GET /metrics: the Prometheus text exposition (no API key, like
 * /healthz; restrict it at the web server where that matters). */
static void metrics(dr_app *app, dr_response *resp)
{
	dr_error err;

	dr_error_clear(&err);
	if (metrics_render(app->db, &resp->body, &err) != DR_OK) {
		dr_log(DR_LOG_WARNING, "event=metrics.failed code=%s",
		       err.code);
		http_problem_from(resp, &err);
		return;
	}
	resp->status = 200;
	resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* GET /: the dashboard page. It holds no data (the page fetches the API
 * with the key the user enters), so it needs no key itself. */
static void dashboard(dr_response *resp)
{
	if (dashboard_render(&resp->body) != DR_OK)
		dr_die("the dashboard does not fit in a response");
	resp->status = 200;
	resp->content_type = "text/html; charset=utf-8";
	resp->cache_control = "no-cache";
	http_add_header(resp, "Content-Security-Policy",
			"default-src 'self'; img-src * data: blob:; "
			"style-src 'unsafe-inline'; script-src "
			"'unsafe-inline'; frame-ancestors 'none'");
	http_add_header(resp, "X-Content-Type-Options", "nosniff");
}

/* GET /v1/jobs/{id}/events: the job's event timeline, oldest first. */
static void job_events(dr_app *app, const char *id, dr_response *resp)
{
	dr_db_rows *job = NULL, *rows = NULL;
	dr_buf *b = &resp->body;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	st = db_query(app->db, "SELECT id FROM jobs WHERE id = ?", &job, &err,
		      DB_ARGS(DB_STR(id)));
	if (st == DR_OK && job->n_rows == 0)
		st = dr_fail(&err, DR_ERR_NOT_FOUND, "not_found",
			     "no job %s", id);
	if (st == DR_OK)
		st = db_query(app->db,
			      "SELECT at, kind, from_status, to_status, detail"
			      " FROM job_events WHERE job_id = ?"
			      " ORDER BY id LIMIT 1000",
			      &rows, &err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK)
		st = dr_buf_puts(b, "{\"data\":[");
	for (size_t i = 0; st == DR_OK && i < rows->n_rows; i++) {
		const char *detail = db_cell(rows, i, 4);
		json_object *parsed = NULL;

		if (detail)
			parsed = json_tokener_parse(detail);
		if ((i && dr_buf_puts(b, ",") != DR_OK) ||
		    dr_buf_puts(b, "{\"at\":") != DR_OK ||
		    json_append_time(b, db_cell(rows, i, 0)) != DR_OK ||
		    dr_buf_puts(b, ",\"kind\":") != DR_OK ||
		    dr_buf_json_string(b, db_cell(rows, i, 1)) != DR_OK ||
		    dr_buf_puts(b, ",\"from_status\":") != DR_OK ||
		    (db_cell(rows, i, 2)
			     ? dr_buf_json_string(b, db_cell(rows, i, 2))
			     : dr_buf_puts(b, "null")) != DR_OK ||
		    dr_buf_puts(b, ",\"to_status\":") != DR_OK ||
		    (db_cell(rows, i, 3)
			     ? dr_buf_json_string(b, db_cell(rows, i, 3))
			     : dr_buf_puts(b, "null")) != DR_OK ||
		    dr_buf_puts(b, ",\"detail\":") != DR_OK ||
		    (parsed && json_object_is_type(parsed, json_type_object)
			     ? dr_buf_puts(b, json_object_to_json_string_ext(
						      parsed,
						      JSON_C_TO_STRING_PLAIN))
		     : detail ? dr_buf_json_string(b, detail)
			      : dr_buf_puts(b, "null")) != DR_OK ||
		    dr_buf_puts(b, "}") != DR_OK)
			st = dr_fail(&err, DR_ERR_TOO_LARGE, "too_large",
				     "the timeline does not fit");
		json_object_put(parsed);
	}
	if (st == DR_OK && dr_buf_puts(b, "]}") != DR_OK)
		st = dr_fail(&err, DR_ERR_TOO_LARGE, "too_large",
			     "the timeline does not fit");
	db_rows_free(job);
	db_rows_free(rows);
	if (st != DR_OK) {
		dr_buf_reset(b);
		http_problem_from(resp, &err);
	} else {
		reply_json(resp, 200);
	}
}

/*
 * POST /v1/hooks/{adapter}: a provider's delivery. The adapter verifies it
 * (401 and no change when it is not authentic) and parses it; the engine
 * applies it forward-only, at most once per delivery id. Any authentic
 * delivery gets 200, even a duplicate or one for an unknown prediction, so
 * the provider stops retrying; 503 when the database is away, so it tries
 * again later.
 */
/* Log and count a provider delivery refused before it changed anything:
 * one line, event=webhook.refused adapter=… reason=… (reason is also the
 * metric's result). Only a configured adapter is counted, so the labels
 * stay those of the config whatever the URL says. */
static void webhook_refused(dr_app *app, const dr_request *req,
			    const char *adapter, const char *reason,
			    const char *code)
{
	char qa[200];

	if (plugins_adapter(app->plugins, adapter))
		webhook_metric(app, adapter, reason);
	dr_log(DR_LOG_WARNING,
	       "event=webhook.refused adapter=%s reason=%s code=%s remote=%s",
	       dr_log_quote(adapter, qa, sizeof(qa)), reason, code ? code : "-",
	       req->remote_addr ? req->remote_addr : "-");
}

/* A delivery the adapter or the engine cannot read: logged, counted, 400. */
static void unreadable_delivery(dr_app *app, const dr_request *req,
				const char *adapter, const dr_error *err,
				dr_response *resp)
{
	webhook_refused(app, req, adapter, "unparsable", err->code);
	http_problem(resp, 400, "bad_delivery", NULL, "%s", err->message);
}

static void provider_webhook(dr_app *app, const dr_request *req,
			     const char *adapter, dr_response *resp)
{
	static const char *const results[] = {
		[DR_APPLY_CHANGED] = "accepted",
		[DR_APPLY_IGNORED] = "ignored",
		[DR_APPLY_DUPLICATE] = "duplicate",
		[DR_APPLY_UNKNOWN] = "unknown",
	};
	struct dr_instance *inst = plugins_adapter(app->plugins, adapter);
	const char *names[DR_MAX_HEADERS], *values[DR_MAX_HEADERS];
	dr_param params[MAX_QUERY_PARAMS];
	dr_webhook_delivery d;
	struct dr_webhook_request *wr = &d.req;
	dr_datascan scan;
	uint64_t blob_bytes = 0;
	dr_prediction p;
	dr_apply_result result = DR_APPLY_UNKNOWN;
	char *delivery_id = NULL;
	char status[16];
	const char *hint = NULL;
	int64_t hint_at = 0;
	dr_error err;
	dr_status st;
	int n;

	if (!inst || !inst->plugin->desc->adapter->webhook) {
		http_problem(resp, 404, "not_found", NULL,
			     "no adapter '%.64s' takes webhooks", adapter);
		return;
	}
	memset(&d, 0, sizeof(d));
	memset(&p, 0, sizeof(p));
	dr_error_clear(&err);
	for (size_t i = 0; i < req->n_headers; i++) {
		names[i] = req->headers[i].name;
		values[i] = req->headers[i].value;
	}
	wr->header_names = names;
	wr->header_values = values;
	wr->n_headers = req->n_headers;
	wr->body = req->body;
	wr->body_len = req->body_len;
	wr->received_at = plugin_host_services()->now();
	/* The files inside the delivery are taken out before the adapter
	 * parses it (datascan.h), and stored only once it is authentic. */
	if (datascan_run(req->body, req->body_len, &scan, &err) != DR_OK) {
		http_problem_from(resp, &err);
		return;
	}
	if (scan.n) {
		d.doc = scan.doc.data;
		d.doc_len = scan.doc.len;
	}
	st = inst->plugin->desc->adapter->webhook(inst->state, wr, &p,
						  &delivery_id, &err);
	if (st == DR_ERR_AUTH) {
		webhook_refused(app, req, adapter, "bad_signature", err.code);
		http_problem(resp, 401, "bad_signature", NULL,
			     "the delivery is not authentic: %s", err.message);
		goto out;
	}
	if (st == DR_ERR_UNAVAILABLE || st == DR_ERR_CONFIG ||
	    st == DR_ERR_NETWORK || st == DR_ERR_TIMEOUT) {
		/* We cannot check it now (e.g. the signing secret could not be
		 * fetched): not forged, so ask the provider to try again. */
		webhook_refused(app, req, adapter, "unverifiable", err.code);
		http_problem(resp, 503, "unavailable", NULL,
			     "the delivery cannot be verified now; retry");
		goto out;
	}
	if (st != DR_OK) {
		unreadable_delivery(app, req, adapter, &err, resp);
		goto out;
	}
	n = http_parse_query(req->arena, req->query, params, MAX_QUERY_PARAMS);
	if (n > 0) {
		const char *at = http_param(params, (size_t)n, "at");

		hint = http_param(params, (size_t)n, "job");
		if (at && *at && strspn(at, "0123456789") == strlen(at) &&
		    strlen(at) <= 18)
			hint_at = strtoll(at, NULL, 10);
	}
	if (scan.n) {
		int needed = 1;

		/* A repeated delivery, or one for a job storing or done
		 * already, records no outputs: its files are not stored. */
		st = news_needs_files(app->db, adapter, &p, delivery_id,
				      &needed, &err);
		if (st == DR_OK && needed)
			st = blobs_store(app->db, req->body, &scan, &blob_bytes,
					 &err);
		if (st != DR_OK) {
			http_problem_from(resp, &err);
			goto out;
		}
	}
	st = news_apply(app->db, app->cfg, adapter, hint, hint_at, &p,
			"webhook", delivery_id, NULL, &result, status, &err);
	if (scan.n) {
		dr_error derr;

		/* What no output claimed (a duplicate, an unknown or a
		 * stale prediction, a failed apply) goes now; a failure
		 * here leaves it to retention. */
		if (blobs_drop_unclaimed(app->db, &scan, &derr) != DR_OK)
			dr_log(DR_LOG_WARNING,
			       "event=webhook.blobs_left adapter=%s code=%s",
			       adapter, derr.code);
	}
	if (st == DR_ERR_INVALID) {
		/* Authentic, but nothing darkroom can record (a prediction
		 * id no job can hold): like an unreadable delivery. */
		unreadable_delivery(app, req, adapter, &err, resp);
		goto out;
	}
	if (st != DR_OK) {
		http_problem_from(resp, &err);
		goto out;
	}
	webhook_metric(app, adapter, results[result]);
	{
		char q[600];

		dr_log(DR_LOG_INFO,
		       "event=webhook.%s adapter=%s prediction=%s delivery=%s"
		       " files=%zu file_bytes=%" PRIu64,
		       results[result], adapter, p.id ? p.id : "-",
		       dr_log_quote(delivery_id ? delivery_id : "-", q,
				    sizeof(q)),
		       scan.n, blob_bytes);
	}
	if (result == DR_APPLY_CHANGED &&
	    strcmp(status, jobstate_name(DR_JOB_PERSISTING)) == 0)
		queue_wakeup_send(app->cfg->worker.wakeup_socket);
	if (dr_buf_printf(&resp->body, "{\"status\":\"%s\"}",
			  results[result]) != DR_OK)
		dr_die("webhook answer does not fit");
	reply_json(resp, 200);
out:
	free(delivery_id);
	news_prediction_clear(&p);
	datascan_free(&scan);
}

/* ---------------------------------------------------------------- router */

static void method_not_allowed(dr_response *resp, const char *allow)
{
	http_problem(resp, 405, "method_not_allowed", NULL,
		     "allowed methods: %s", allow);
	http_add_header(resp, "Allow", allow);
}

/* If `path` is prefix + one segment (+ "/" + tail), copy the segment into
 * seg and return the rest after it ("" when none); NULL otherwise. */
static const char *segment(const char *path, const char *prefix, char *seg,
			   size_t segsz)
{
	size_t plen = strlen(prefix);
	size_t n;

	if (strncmp(path, prefix, plen) != 0)
		return NULL;
	path += plen;
	n = strcspn(path, "/");
	if (n == 0 || n >= segsz)
		return NULL;
	memcpy(seg, path, n);
	seg[n] = '\0';
	return path + n;
}

/* Route the request; returns nothing, the response says it all. */
static void route(dr_app *app, const dr_request *req, dr_response *resp)
{
	const char *m = req->method;
	const char *path = req->path;
	const char *rest;
	char seg[80];
	char scope[17];

	if (strcmp(path, "/healthz") == 0) {
		if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0)
			method_not_allowed(resp, "GET, HEAD");
		else
			healthz(app, resp);
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0)
			method_not_allowed(resp, "GET, HEAD");
		else
			metrics(app, resp);
		return;
	}
	if (strcmp(path, "/") == 0) {
		if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0)
			method_not_allowed(resp, "GET, HEAD");
		else
			dashboard(resp);
		return;
	}
	if (strncmp(path, "/v1/", 4) != 0) {
		http_problem(resp, 404, "not_found", NULL, "no such resource");
		return;
	}
	rest = segment(path, "/v1/hooks/", seg, sizeof(seg));
	if (rest) {
		if (*rest != '\0')
			http_problem(resp, 404, "not_found", NULL,
				     "no such resource");
		else if (strcmp(m, "POST") != 0)
			method_not_allowed(resp, "POST");
		else
			provider_webhook(app, req, seg, resp);
		return;
	}

	/* A file's content URL handed to a provider carries its own
	 * signature instead of the key. */
	rest = segment(path, "/v1/files/", seg, sizeof(seg));
	if (rest && strcmp(rest, "/content") == 0 &&
	    (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) &&
	    signed_content(app, req, seg, resp))
		return;

	/* Everything under /v1/ needs an API key (provider webhooks, under
	 * /v1/hooks/, authenticate by signature instead; so do signed file
	 * URLs). */
	if (!authorized(app, req, scope)) {
		http_problem(resp, 401, "unauthorized", NULL,
			     "send a valid API key as 'Authorization: "
			     "Bearer <key>'");
		http_add_header(resp, "WWW-Authenticate", "Bearer");
		return;
	}
	if (strcmp(path, "/v1/outputs") == 0) {
		if (strcmp(m, "GET") != 0)
			method_not_allowed(resp, "GET");
		else
			list_outputs(app, req, resp);
		return;
	}
	if (strcmp(path, "/v1/batches") == 0 ||
	    strcmp(path, "/v1/batches/") == 0) {
		if (strcmp(m, "POST") != 0)
			method_not_allowed(resp, "POST");
		else
			create_batch(app, req, resp, scope);
		return;
	}
	rest = segment(path, "/v1/batches/", seg, sizeof(seg));
	if (rest) {
		if (!ids_is_batch_id(seg))
			http_problem(resp, 404, "not_found", NULL,
				     "no such batch");
		else if (*rest == '\0' && strcmp(m, "GET") != 0)
			method_not_allowed(resp, "GET");
		else if (*rest == '\0')
			batch_action(app, seg, 0, resp);
		else if (strcmp(rest, "/cancel") != 0)
			http_problem(resp, 404, "not_found", NULL,
				     "no such resource");
		else if (strcmp(m, "POST") != 0)
			method_not_allowed(resp, "POST");
		else
			batch_action(app, seg, 1, resp);
		return;
	}
	if (strcmp(path, "/v1/trainings") == 0 ||
	    strcmp(path, "/v1/trainings/") == 0) {
		if (strcmp(m, "POST") != 0)
			method_not_allowed(resp, "POST");
		else
			create_job(app, req, resp, scope, jobs_parse_training);
		return;
	}
	if (strcmp(path, "/v1/files") == 0 || strcmp(path, "/v1/files/") == 0) {
		if (strcmp(m, "POST") == 0)
			upload_file(app, req, resp);
		else if (strcmp(m, "GET") == 0)
			list_files(app, req, resp);
		else
			method_not_allowed(resp, "GET, POST");
		return;
	}
	rest = segment(path, "/v1/files/", seg, sizeof(seg));
	if (rest) {
		if (!ids_is_file_id(seg))
			http_problem(resp, 404, "not_found", NULL,
				     "no such file");
		else if (*rest == '\0' && strcmp(m, "GET") == 0)
			file_action(app, seg, 0, resp);
		else if (*rest == '\0' && strcmp(m, "DELETE") == 0)
			file_action(app, seg, 1, resp);
		else if (*rest == '\0')
			method_not_allowed(resp, "GET, DELETE");
		else if (strcmp(rest, "/content") != 0)
			http_problem(resp, 404, "not_found", NULL,
				     "no such resource");
		else if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0)
			method_not_allowed(resp, "GET, HEAD");
		else
			file_content(app, seg, resp);
		return;
	}
	rest = segment(path, "/v1/deletions/", seg, sizeof(seg));
	if (rest) {
		if (*rest != '\0')
			http_problem(resp, 404, "not_found", NULL,
				     "no such resource");
		else if (strcmp(m, "GET") != 0)
			method_not_allowed(resp, "GET");
		else
			get_deletion(app, seg, resp);
		return;
	}
	if (strncmp(path, "/v1/jobs", 8) != 0 ||
	    (path[8] != '\0' && path[8] != '/')) {
		http_problem(resp, 404, "not_found", NULL, "no such resource");
		return;
	}
	if (strcmp(path, "/v1/jobs") == 0 || strcmp(path, "/v1/jobs/") == 0) {
		if (strcmp(m, "POST") == 0)
			create_job(app, req, resp, scope, jobs_parse_request);
		else if (strcmp(m, "GET") == 0)
			list_jobs(app, req, resp);
		else if (strcmp(m, "DELETE") == 0)
			delete_jobs(app, req, scope, resp);
		else
			method_not_allowed(resp, "GET, POST, DELETE");
		return;
	}
	rest = segment(path, "/v1/jobs/", seg, sizeof(seg));
	if (!rest || !ids_is_job_id(seg)) {
		http_problem(resp, 404, "not_found", NULL, "no such job");
	} else if (*rest == '\0') {
		if (strcmp(m, "GET") == 0)
			get_job(app, seg, resp);
		else if (strcmp(m, "DELETE") == 0)
			delete_job(app, seg, scope, resp);
		else
			method_not_allowed(resp, "GET, DELETE");
	} else if (strcmp(rest, "/events") == 0) {
		if (strcmp(m, "GET") != 0)
			method_not_allowed(resp, "GET");
		else
			job_events(app, seg, resp);
	} else if (strcmp(rest, "/cancel") == 0 ||
		   strcmp(rest, "/retry") == 0 ||
		   strcmp(rest, "/callback/retry") == 0) {
		if (strcmp(m, "POST") != 0)
			method_not_allowed(resp, "POST");
		else
			job_action(app, seg, rest + 1, resp);
	} else {
		http_problem(resp, 404, "not_found", NULL, "no such resource");
	}
}

/* The adapter segment of a provider webhook's path (POST
 * /v1/hooks/{adapter}) into seg, or 0 when `req` is no such request. */
static int webhook_adapter(const dr_request *req, char *seg, size_t segsz)
{
	const char *rest;

	if (!req->method || !req->path || strcmp(req->method, "POST") != 0)
		return 0;
	rest = segment(req->path, "/v1/hooks/", seg, segsz);
	return rest && *rest == '\0';
}

/* 1 when `req` creates a batch (POST /v1/batches). */
static int batch_create(const dr_request *req)
{
	return req->method && req->path && strcmp(req->method, "POST") == 0 &&
	       (strcmp(req->path, "/v1/batches") == 0 ||
		strcmp(req->path, "/v1/batches/") == 0);
}

int api_authorized(const dr_app *app, const dr_request *req)
{
	char scope[17];

	return authorized(app, req, scope);
}

int api_spools_body(const dr_request *req)
{
	return req->method && req->path && strcmp(req->method, "POST") == 0 &&
	       (strcmp(req->path, "/v1/files") == 0 ||
		strcmp(req->path, "/v1/files/") == 0);
}

size_t api_body_limit(const dr_app *app, const dr_request *req)
{
	char seg[80];

	if (api_spools_body(req))
		return app->cfg->limits.max_upload > SIZE_MAX
			       ? SIZE_MAX
			       : (size_t)app->cfg->limits.max_upload;
	if (webhook_adapter(req, seg, sizeof(seg)))
		return app->cfg->limits.max_webhook_body;
	if (batch_create(req))
		return app->cfg->limits.max_batch_body;
	return app->cfg->server.max_body;
}

void api_body_refused(dr_app *app, const dr_request *req, int status,
		      dr_response *resp)
{
	char seg[80];
	int hook = webhook_adapter(req, seg, sizeof(seg));

	http_response_reset(resp);
	if (status == 401) {
		http_problem(resp, 401, "unauthorized", NULL,
			     "send a valid API key as 'Authorization: "
			     "Bearer <key>'");
		http_add_header(resp, "WWW-Authenticate", "Bearer");
		return;
	}
	if (status == 507) {
		http_problem(resp, 507, "insufficient_storage", NULL,
			     "the upload cannot be spooled now; retry later");
		return;
	}
	if (status == 413) {
		if (hook)
			webhook_refused(app, req, seg, "too_large",
					"body_too_large");
		http_problem(resp, 413, "body_too_large", NULL,
			     "the body is larger than %zu bytes",
			     api_body_limit(app, req));
		return;
	}
	if (hook)
		webhook_refused(app, req, seg, "unparsable", "bad_body");
	http_problem(resp, 400, "bad_body", NULL,
		     "the body does not match its Content-Length");
}

void api_handle(dr_app *app, const dr_request *req, dr_response *resp)
{
	http_response_reset(resp);
	route(app, req, resp);
}
