/*
 * jobs.c - validating, storing and rendering jobs (see jobs.h).
 *
 * Rendering writes the job object straight into a dr_buf: the stored
 * `input` and `metadata` columns hold JSON that json-c serialised at
 * intake, so they are spliced in as they are instead of being parsed and
 * serialised again for every read.
 */
#include "jobs.h"

#include <assert.h>
#include <stdarg.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "files.h"
#include "jobstate.h"
#include "jsonutil.h"
#include "log.h"
#include "netpolicy.h"
#include "workflow.h"

int jobs_status_valid(const char *s)
{
	dr_job_status st;

	return jobstate_parse(s, &st);
}

/* ------------------------------------------------------------ validation */

static dr_status invalid(dr_error *err, const char **field, const char *name,
			 const char *what)
{
	*field = name;
	return dr_fail(err, DR_ERR_INVALID, "invalid_field", "%s: %s", name,
		       what);
}

static int is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

static int is_hex_lower(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* 1 when s[0..n) is a non-empty name of [A-Za-z0-9._-] not starting with
 * a dot or dash. */
static int is_name(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_name_char(s[i]))
			return 0;
	return 1;
}

/* `owner/name`, `owner/name:<64 hex>`, or a bare 64-hex version id. */
static int model_valid(const char *m)
{
	size_t len = strlen(m);
	const char *slash = strchr(m, '/');
	const char *colon = strchr(m, ':');
	size_t name_end = colon ? (size_t)(colon - m) : len;

	if (len == 0 || len > DR_MAX_MODEL_LEN)
		return 0;
	if (!slash)
		return len == 64 && is_hex_lower(m, 64);
	if ((size_t)(slash - m) > name_end)
		return 0;
	if (!is_name(m, (size_t)(slash - m)) ||
	    !is_name(slash + 1, name_end - (size_t)(slash - m) - 1))
		return 0;
	if (colon)
		return strlen(colon + 1) == 64 && is_hex_lower(colon + 1, 64);
	return 1;
}

/*
 * Whether `s` is a callback URL darkroom can deliver to: https, or http
 * when DARKROOM_DOWNLOAD_ALLOW_HTTP is exactly "1" (netpolicy_env()),
 * with a host that is neither "localhost" nor a loopback, private,
 * link-local or reserved address literal (those pass with
 * DARKROOM_CALLBACK_ALLOW_PRIVATE=1, except the ones never allowed; a
 * host name is checked at connect time by the worker).
 * Returns 1, 0 for no URL at all, -1 for http while it is not allowed,
 * -2 for a host refused.
 */
static int url_valid(const char *s)
{
	const char *allow_http = getenv("DARKROOM_DOWNLOAD_ALLOW_HTTP");
	CURLU *u;
	char *scheme = NULL, *host = NULL;
	int ok = 0;

	if (strlen(s) > DR_MAX_URL_LEN)
		return 0;
	u = curl_url();
	if (!u)
		dr_die("out of memory parsing a URL");
	if (curl_url_set(u, CURLUPART_URL, s, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    host[0] != '\0') {
		if (strcmp(scheme, "https") == 0)
			ok = 1;
		else if (strcmp(scheme, "http") == 0)
			ok = allow_http && strcmp(allow_http, "1") == 0 ? 1 : -1;
		if (ok == 1 &&
		    !netpolicy_host_literal_allowed(
			    host, netpolicy_callback_allow_private()))
			ok = -2;
	}
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

/* The rule of metadata keys, shared by intake and the metadata.KEY=VALUE
 * filters. */
#define METADATA_KEY_RULE                                                     \
	"keys must be 1-64 characters of A-Z a-z 0-9 . _ - not starting "    \
	"with . or -"

static int metadata_key_valid(const char *k)
{
	size_t n = strlen(k);

	return n <= DR_MAX_METADATA_KEY && is_name(k, n);
}

/*
 * Keys are stored in a column that compares without letter case (its
 * collation, utf8mb4_unicode_ci), one row per job and key: "a" and "A"
 * would collide there, so they are refused here rather than answered
 * with a database conflict.
 */
static dr_status check_metadata(json_object *md, const char **field,
				dr_error *err)
{
	const char *keys[DR_MAX_METADATA_KEYS];
	size_t total = 0, count = 0;

	if (!json_object_is_type(md, json_type_object))
		return invalid(err, field, "metadata",
			       "must be an object of strings");
	json_object_object_foreach(md, k, v)
	{
		size_t klen = strlen(k);

		if (count == DR_MAX_METADATA_KEYS)
			return invalid(err, field, "metadata",
				       "at most 16 keys are allowed");
		if (!metadata_key_valid(k))
			return invalid(err, field, "metadata",
				       METADATA_KEY_RULE);
		for (size_t i = 0; i < count; i++)
			if (strcasecmp(keys[i], k) == 0) {
				*field = "metadata";
				return dr_fail(err, DR_ERR_INVALID,
					       "invalid_field",
					       "metadata: keys '%s' and '%s' "
					       "differ only in letter case",
					       keys[i], k);
			}
		keys[count++] = k;
		if (!json_object_is_type(v, json_type_string))
			return invalid(err, field, "metadata",
				       "values must be strings");
		if (strlen(json_object_get_string(v)) !=
		    (size_t)json_object_get_string_len(v))
			return invalid(err, field, "metadata",
				       "values must not contain NUL");
		total += klen + (size_t)json_object_get_string_len(v);
		if (total > DR_MAX_METADATA_BYTES)
			return invalid(err, field, "metadata",
				       "keys and values exceed 4096 bytes");
	}
	return DR_OK;
}

dr_status jobs_check_metadata_filters(const dr_metadata_filter *f, size_t n,
				      size_t *bad, dr_error *err)
{
	if (n > DR_MAX_METADATA_FILTERS) {
		*bad = n;
		return dr_fail(err, DR_ERR_INVALID, "invalid_parameter",
			       "metadata: at most %d metadata filters",
			       DR_MAX_METADATA_FILTERS);
	}
	for (size_t i = 0; i < n; i++) {
		*bad = i;
		if (!metadata_key_valid(f[i].key))
			return dr_fail(err, DR_ERR_INVALID,
				       "invalid_parameter",
				       "metadata.%.64s: metadata "
				       METADATA_KEY_RULE, f[i].key);
		if (strlen(f[i].key) + strlen(f[i].value) >
		    DR_MAX_METADATA_BYTES)
			return dr_fail(err, DR_ERR_INVALID,
				       "invalid_parameter",
				       "metadata.%s: no job can have this "
				       "value: metadata keys and values are at "
				       "most %d bytes together",
				       f[i].key, DR_MAX_METADATA_BYTES);
		for (size_t j = 0; j < i; j++)
			if (strcasecmp(f[j].key, f[i].key) == 0)
				return dr_fail(err, DR_ERR_INVALID,
					       "invalid_parameter",
					       "metadata.%s: the key is "
					       "filtered twice (keys compare "
					       "without letter case; a job "
					       "has one value per key)",
					       f[i].key);
	}
	return DR_OK;
}

/* ------------------------------------------------------------ list filters */

dr_status jobs_filter_refuse(dr_error *err, const char **field,
			     const char *name, const char *fmt, ...)
{
	char why[sizeof(err->message)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	*field = name;
	return dr_fail(err, DR_ERR_INVALID, "invalid_parameter", "%.80s: %s",
		       name, why);
}

/* A page size: 1..DR_LIST_LIMIT_MAX decimal digits, nothing else. */
static int parse_limit(const char *s, int *out)
{
	char *end;
	long v;

	if (!*s || *s == '-' || *s == '+')
		return -1;
	v = strtol(s, &end, 10);
	if (*end || v < 1 || v > DR_LIST_LIMIT_MAX)
		return -1;
	*out = (int)v;
	return 0;
}

dr_status jobs_filter_args(const dr_filter_arg *args, size_t n,
			   const char *const *names, const char **values,
			   dr_metadata_filter *meta, size_t *n_meta,
			   int *limit, const char **field, dr_error *err)
{
	size_t of_meta[DR_MAX_METADATA_FILTERS]; /* meta[k] is args[of_meta[k]] */
	size_t bad;
	dr_status st;

	*n_meta = 0;
	*limit = DR_LIST_LIMIT_DEFAULT;
	for (size_t k = 0; names[k]; k++)
		values[k] = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *name = args[i].name;
		size_t k;

		for (size_t j = 0; j < i; j++)
			if (strcmp(args[j].name, name) == 0)
				return jobs_filter_refuse(
					err, field, name,
					"given more than once");
		if (strncmp(name, "metadata.", 9) == 0) {
			if (*n_meta == DR_MAX_METADATA_FILTERS)
				return jobs_filter_refuse(
					err, field, "metadata",
					"at most %d metadata filters",
					DR_MAX_METADATA_FILTERS);
			of_meta[*n_meta] = i;
			meta[*n_meta].key = name + 9;
			meta[*n_meta].value = args[i].value;
			(*n_meta)++;
			continue;
		}
		for (k = 0; names[k] && strcmp(names[k], name) != 0; k++)
			;
		if (!names[k]) {
			*field = name;
			return dr_fail(err, DR_ERR_INVALID, "invalid_parameter",
				       "%.64s: unknown parameter", name);
		}
		values[k] = args[i].value;
		if (strcmp(name, "limit") == 0 && parse_limit(values[k], limit))
			return jobs_filter_refuse(
				err, field, name,
				"must be an integer from 1 to %d",
				DR_LIST_LIMIT_MAX);
	}
	st = jobs_check_metadata_filters(meta, *n_meta, &bad, err);
	if (st != DR_OK)
		*field = bad < *n_meta ? args[of_meta[bad]].name : "metadata";
	return st;
}

dr_status jobs_filter_parse(const dr_filter_arg *args, size_t n,
			    dr_job_filter *f, const char **field,
			    dr_error *err)
{
	static const char *const names[] = { "status", "model", "adapter",
					     "cursor", "limit", "batch",
					     "kind",   NULL };
	const char *v[7];
	dr_status st;

	memset(f, 0, sizeof(*f));
	st = jobs_filter_args(args, n, names, v, f->meta, &f->n_meta,
			      &f->limit, field, err);
	if (st != DR_OK)
		return st;
	f->status = v[0];
	f->model = v[1];
	f->adapter = v[2];
	f->cursor = v[3];
	f->batch = v[5];
	f->kind = v[6];
	if (f->kind && !jobs_kind_valid(f->kind))
		return jobs_filter_refuse(err, field, "kind",
					  "must be one of prediction, "
					  "training, workflow");
	if (f->batch && !ids_is_batch_id(f->batch))
		return jobs_filter_refuse(err, field, "batch",
					  "must be a batch id (b_…)");
	if (f->status && !jobs_status_valid(f->status))
		return jobs_filter_refuse(err, field, "status",
					  "must be one of " JOBSTATE_NAMES);
	if (f->cursor && !ids_is_job_id(f->cursor))
		return jobs_filter_refuse(err, field, "cursor",
					  "not a cursor from a previous page");
	return DR_OK;
}

dr_status jobs_metadata_sql(dr_buf *sql, const char *job_id, size_t n)
{
	dr_status st = DR_OK;

	/* One EXISTS per filter: each is a lookup on the primary key
	 * (job_id, k) when the jobs are read in id order, and the
	 * optimizer may instead start from the most selective filter on
	 * job_metadata_kv (k, v, job_id). */
	for (size_t i = 0; st == DR_OK && i < n; i++)
		st = dr_buf_printf(sql,
				   " AND EXISTS (SELECT 1 FROM job_metadata m"
				   " WHERE m.job_id = %s AND m.k = ?"
				   " AND m.v = ?)",
				   job_id);
	return st;
}

static dr_status check_renditions(const dr_config *cfg, json_object *list,
				  dr_job_request *out, const char **field,
				  dr_error *err)
{
	size_t n;

	if (!json_object_is_type(list, json_type_array))
		return invalid(err, field, "renditions",
			       "must be a list of preset names");
	n = json_object_array_length(list);
	if (n > DR_MAX_RENDITIONS)
		return invalid(err, field, "renditions",
			       "at most 16 renditions are allowed");
	for (size_t i = 0; i < n; i++) {
		json_object *v = json_object_array_get_idx(list, i);
		const char *name;

		if (!json_object_is_type(v, json_type_string))
			return invalid(err, field, "renditions",
				       "must be a list of preset names");
		name = json_object_get_string(v);
		if (!config_preset(cfg, name)) {
			*field = "renditions";
			return dr_fail(err, DR_ERR_INVALID, "invalid_field",
				       "renditions: unknown preset '%.64s'",
				       name);
		}
		for (size_t j = 0; j < out->n_renditions; j++)
			if (strcmp(out->renditions[j], name) == 0)
				return invalid(err, field, "renditions",
					       "a preset is named twice");
		out->renditions[out->n_renditions++] = name;
	}
	return DR_OK;
}

dr_status jobs_check_callback_url(const dr_config *cfg, json_object *v,
				  const char **field, dr_error *err)
{
	int ok = json_object_is_type(v, json_type_string)
			 ? url_valid(json_object_get_string(v))
			 : 0;

	if (ok == -2)
		return invalid(err, field, "callback_url",
			       "must not name localhost or a loopback, "
			       "private or link-local address (allowed "
			       "only with "
			       "DARKROOM_CALLBACK_ALLOW_PRIVATE=1)");
	if (ok < 0)
		return invalid(err, field, "callback_url",
			       "must be an https URL (plain http only "
			       "with DARKROOM_DOWNLOAD_ALLOW_HTTP=1)");
	if (ok == 0)
		return invalid(err, field, "callback_url",
			       "must be an http or https URL");
	if (!cfg->server.callback_secret)
		return invalid(err, field, "callback_url",
			       "this darkroom has no callback_secret "
			       "to sign callbacks with");
	return DR_OK;
}

/* `root` is an object whose members are all among `known`
 * (NULL-terminated); else 422 naming "body". *field is NULL on success. */
static dr_status check_members(json_object *root, const char *const *known,
			       const char **field, dr_error *err)
{
	*field = NULL;
	if (!json_object_is_type(root, json_type_object))
		return invalid(err, field, "body", "must be a JSON object");
	json_object_object_foreach(root, key, val)
	{
		int ok = 0;

		(void)val;
		for (int i = 0; known[i]; i++)
			ok |= strcmp(key, known[i]) == 0;
		if (!ok) {
			*field = "body";
			return dr_fail(err, DR_ERR_INVALID, "invalid_field",
				       "%.64s: unknown field", key);
		}
	}
	return DR_OK;
}

/* The request's `adapter` (or the configured default) into *name and its
 * instance into *inst; 422 naming "adapter" when it is not a string or
 * names no configured adapter. */
static dr_status find_adapter(const dr_config *cfg, const dr_plugins *plugins,
			      json_object *root, const char **name,
			      struct dr_instance **inst, const char **field,
			      dr_error *err)
{
	json_object *v;

	if (json_object_object_get_ex(root, "adapter", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return invalid(err, field, "adapter",
				       "must be a string");
		*name = json_object_get_string(v);
	} else {
		*name = cfg->server.default_adapter;
	}
	*inst = *name ? plugins_adapter(plugins, *name) : NULL;
	if (!*inst) {
		*field = "adapter";
		return dr_fail(err, DR_ERR_INVALID, "invalid_field",
			       "adapter: unknown adapter '%.64s'",
			       *name ? *name : "");
	}
	return DR_OK;
}

/* The members every kind of job request has, into *r: `input` (required,
 * an object), `metadata` and `callback_url` (optional, null as absent). */
static dr_status parse_common(const dr_config *cfg, json_object *root,
			      dr_job_request *r, const char **field,
			      dr_error *err)
{
	json_object *v;
	dr_status st;

	if (!json_object_object_get_ex(root, "input", &r->input))
		return invalid(err, field, "input", "is required");
	if (!json_object_is_type(r->input, json_type_object))
		return invalid(err, field, "input", "must be an object");
	if (json_object_object_get_ex(root, "metadata", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		st = check_metadata(v, field, err);
		if (st != DR_OK)
			return st;
		r->metadata = v;
	}
	if (json_object_object_get_ex(root, "callback_url", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		st = jobs_check_callback_url(cfg, v, field, err);
		if (st != DR_OK)
			return st;
		r->callback_url = json_object_get_string(v);
	}
	return DR_OK;
}

dr_status jobs_parse_request(const dr_config *cfg, const dr_plugins *plugins,
			     json_object *root, dr_job_request *out,
			     const char **field, dr_error *err)
{
	static const char *const known[] = { "adapter",	 "model",
					     "input",	 "renditions",
					     "metadata", "callback_url",
					     NULL };
	dr_job_request r;
	json_object *v;
	struct dr_instance *inst;
	dr_status st;

	memset(&r, 0, sizeof(r));
	st = check_members(root, known, field, err);
	if (st != DR_OK)
		return st;

	st = find_adapter(cfg, plugins, root, &r.adapter, &inst, field, err);
	if (st != DR_OK)
		return st;

	if (!json_object_object_get_ex(root, "model", &v))
		return invalid(err, field, "model", "is required");
	if (!json_object_is_type(v, json_type_string))
		return invalid(err, field, "model", "must be a string");
	r.model = json_object_get_string(v);
	if (!model_valid(r.model))
		return invalid(err, field, "model",
			       "must be owner/name, owner/name:<version> or "
			       "a version id");

	st = parse_common(cfg, root, &r, field, err);
	if (st != DR_OK)
		return st;

	if (json_object_object_get_ex(root, "renditions", &v)) {
		st = check_renditions(cfg, v, &r, field, err);
		if (st != DR_OK)
			return st;
	} else {
		for (size_t i = 0; i < cfg->server.n_default_renditions &&
				   i < DR_MAX_RENDITIONS;
		     i++)
			r.renditions[r.n_renditions++] =
				cfg->server.default_renditions[i];
	}

	if (inst->plugin->desc->adapter->validate) {
		dr_job_view view;
		dr_error perr;
		const char *input_json = json_object_to_json_string_ext(
			r.input, JSON_C_TO_STRING_PLAIN);

		memset(&view, 0, sizeof(view));
		dr_error_clear(&perr);
		view.model = r.model;
		view.input_json = input_json;
		st = inst->plugin->desc->adapter->validate(inst->state, &view,
							   &perr);
		if (st != DR_OK) {
			/* The plugin names the field in its message. */
			*field = strncmp(perr.message, "model", 5) == 0
					 ? "model"
					 : "input";
			return dr_fail(err, DR_ERR_INVALID, "invalid_field",
				       "%s", perr.message);
		}
	}

	r.root = json_object_get(root);
	*out = r;
	return DR_OK;
}

int jobs_kind_valid(const char *s)
{
	return s && (strcmp(s, "prediction") == 0 ||
		     strcmp(s, "training") == 0 || strcmp(s, "workflow") == 0);
}

/* `owner/name`: a training's destination model. */
static int destination_valid(const char *d)
{
	const char *slash = strchr(d, '/');

	return slash && strlen(d) <= DR_MAX_MODEL_LEN &&
	       is_name(d, (size_t)(slash - d)) &&
	       is_name(slash + 1, strlen(slash + 1));
}

/* A required string member `name` of `root` into *out. */
static dr_status required_string(json_object *root, const char *name,
				 const char **out, const char **field,
				 dr_error *err)
{
	json_object *v;

	if (!json_object_object_get_ex(root, name, &v))
		return invalid(err, field, name, "is required");
	if (!json_object_is_type(v, json_type_string))
		return invalid(err, field, name, "must be a string");
	*out = json_object_get_string(v);
	return DR_OK;
}

dr_status jobs_parse_training(const dr_config *cfg, const dr_plugins *plugins,
			      json_object *root, dr_job_request *out,
			      const char **field, dr_error *err)
{
	static const char *const known[] = { "adapter",	    "trainer",
					     "destination", "input",
					     "metadata",    "callback_url",
					     NULL };
	const dr_adapter_ops *ops;
	dr_job_request r;
	struct dr_instance *inst;
	dr_status st;

	memset(&r, 0, sizeof(r));
	st = check_members(root, known, field, err);
	if (st != DR_OK)
		return st;
	r.training = 1;
	st = find_adapter(cfg, plugins, root, &r.adapter, &inst, field, err);
	if (st != DR_OK)
		return st;
	ops = inst->plugin->desc->adapter;
	if (!ops->trainings) {
		*field = "adapter";
		return dr_fail(err, DR_ERR_INVALID, "invalid_field",
			       "adapter: '%.64s' does not run trainings",
			       r.adapter);
	}
	st = required_string(root, "trainer", &r.model, field, err);
	if (st != DR_OK)
		return st;
	if (!model_valid(r.model))
		return invalid(err, field, "trainer",
			       "must be owner/name:<version>");
	st = required_string(root, "destination", &r.destination, field, err);
	if (st != DR_OK)
		return st;
	if (!destination_valid(r.destination))
		return invalid(err, field, "destination",
			       "must be owner/name (the model the new version "
			       "goes to)");
	st = parse_common(cfg, root, &r, field, err);
	if (st != DR_OK)
		return st;
	if (ops->validate) {
		dr_job_view view;
		dr_error perr;

		memset(&view, 0, sizeof(view));
		dr_error_clear(&perr);
		view.model = r.model;
		view.input_json = json_object_to_json_string_ext(
			r.input, JSON_C_TO_STRING_PLAIN);
		view.kind = DR_JOB_TRAINING;
		view.destination = r.destination;
		st = ops->validate(inst->state, &view, &perr);
		if (st != DR_OK) {
			/* The plugin names the field in its message. */
			*field = strncmp(perr.message, "trainer", 7) == 0
					 ? "trainer"
				 : strncmp(perr.message, "destination", 11) == 0
					 ? "destination"
					 : "input";
			return dr_fail(err, DR_ERR_INVALID, "invalid_field",
				       "%s", perr.message);
		}
	}
	r.root = json_object_get(root);
	*out = r;
	return DR_OK;
}

void jobs_request_free(dr_job_request *req)
{
	for (size_t i = 0; i < req->n_steps; i++)
		jobs_request_free(&req->steps[i]);
	free(req->steps);
	free(req->step_names);
	if (req->root)
		json_object_put(req->root);
	memset(req, 0, sizeof(*req));
}

/* Refuse `field` (copied) with "<field>: <fmt…>". */
static dr_status refuse_field(dr_error *err, char field[DR_FIELD_MAX],
			      const char *name, const char *fmt, ...)
	DR_PRINTF(4, 5);

static dr_status refuse_field(dr_error *err, char field[DR_FIELD_MAX],
			      const char *name, const char *fmt, ...)
{
	char why[sizeof(err->message)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(field, DR_FIELD_MAX, "%s", name);
	return dr_fail(err, DR_ERR_INVALID, "invalid_field", "%s: %s", field,
		       why);
}

/*
 * Step `i` of a workflow (`sj`, its object) into *out: the fields of a
 * job request checked by jobs_parse_request() on a request made of them,
 * with its {"$ref"} values blanked for the adapter's check; out->input is
 * then the step's input as written.
 */
static dr_status parse_step(const dr_config *cfg, const dr_plugins *plugins,
			    json_object *sj, size_t i, dr_job_request *out,
			    const char **name, char field[DR_FIELD_MAX],
			    dr_error *err)
{
	static const char *const known[] = { "name",  "adapter",    "model",
					     "input", "renditions", NULL };
	char at[32];
	json_object *call, *v, *input;
	const char *jfield = NULL;
	dr_error jerr;
	dr_status st;

	snprintf(at, sizeof(at), "steps[%zu]", i);
	if (!json_object_is_type(sj, json_type_object))
		return refuse_field(err, field, at, "must be an object");
	json_object_object_foreach(sj, key, val)
	{
		int ok = 0;

		(void)val;
		for (int k = 0; known[k]; k++)
			ok |= strcmp(key, known[k]) == 0;
		if (!ok)
			return refuse_field(err, field, at,
					    "%.64s: unknown field", key);
	}
	if (!json_object_object_get_ex(sj, "name", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    !workflow_name_valid(json_object_get_string(v))) {
		char nf[48];

		snprintf(nf, sizeof(nf), "%s.name", at);
		return refuse_field(err, field, nf,
				    "required: 1-%d characters of A-Z a-z "
				    "0-9 _ -",
				    WORKFLOW_STEP_NAME_MAX);
	}
	*name = json_object_get_string(v);
	if (!json_object_object_get_ex(sj, "input", &input) ||
	    !json_object_is_type(input, json_type_object)) {
		char nf[48];

		snprintf(nf, sizeof(nf), "%s.input", at);
		return refuse_field(err, field, nf,
				    "is required and must be an object");
	}
	call = json_object_new_object();
	if (!call)
		dr_die("out of memory");
	json_object_object_foreach(sj, k2, v2)
	{
		if (strcmp(k2, "name") == 0)
			continue;
		json_object_object_add(call, k2,
				       strcmp(k2, "input") == 0
					       ? workflow_check_input(v2)
					       : json_object_get(v2));
	}
	dr_error_clear(&jerr);
	st = jobs_parse_request(cfg, plugins, call, out, &jfield, &jerr);
	json_object_put(call); /* out->root holds it on success */
	if (st != DR_OK) {
		size_t fl = jfield ? strlen(jfield) : 0;
		const char *msg = jerr.message;

		if (fl && strncmp(msg, jfield, fl) == 0 && msg[fl] == ':')
			msg += fl + 1 + (msg[fl + 1] == ' ');
		snprintf(field, DR_FIELD_MAX, "%s.%s", at,
			 jfield ? jfield : "body");
		return dr_fail(err, DR_ERR_INVALID, "invalid_field", "%s: %s",
			       field, msg);
	}
	out->input = input;
	return DR_OK;
}

dr_status jobs_parse_workflow(const dr_config *cfg, const dr_plugins *plugins,
			      json_object *root, dr_job_request *out,
			      char field[DR_FIELD_MAX], dr_error *err)
{
	static const char *const known[] = { "input", "steps", "metadata",
					     "callback_url", NULL };
	workflow_step_info info[DR_MAX_STEPS_LIMIT];
	dr_job_request r;
	json_object *steps;
	const char *jfield = NULL;
	size_t n;
	dr_status st = DR_OK;

	memset(&r, 0, sizeof(r));
	field[0] = '\0';
	if (!json_object_is_type(root, json_type_object))
		return refuse_field(err, field, "body",
				    "must be a JSON object");
	json_object_object_foreach(root, key, val)
	{
		int ok = 0;

		(void)val;
		for (int i = 0; known[i]; i++)
			ok |= strcmp(key, known[i]) == 0;
		if (strcmp(key, "model") == 0 || strcmp(key, "adapter") == 0 ||
		    strcmp(key, "renditions") == 0)
			return refuse_field(err, field, key,
					    "a workflow names it in each of "
					    "its steps");
		if (!ok)
			return refuse_field(err, field, "body",
					    "%.64s: unknown field", key);
	}
	st = parse_common(cfg, root, &r, &jfield, err);
	if (st != DR_OK) {
		snprintf(field, DR_FIELD_MAX, "%s", jfield ? jfield : "body");
		return st;
	}
	if (!json_object_object_get_ex(root, "steps", &steps) ||
	    !json_object_is_type(steps, json_type_array) ||
	    json_object_array_length(steps) == 0)
		return refuse_field(err, field, "steps",
				    "must be a list of 1 to %d steps",
				    cfg->limits.max_steps);
	n = json_object_array_length(steps);
	if (n > (size_t)cfg->limits.max_steps)
		return refuse_field(err, field, "steps",
				    "%zu steps, at most %d are allowed "
				    "([limits] max_steps)",
				    n, cfg->limits.max_steps);
	r.steps = dr_xcalloc(n, sizeof(*r.steps));
	r.step_names = dr_xcalloc(n, sizeof(*r.step_names));
	for (size_t i = 0; i < n && st == DR_OK; i++) {
		st = parse_step(cfg, plugins,
				json_object_array_get_idx(steps, i), i,
				&r.steps[i], &r.step_names[i], field, err);
		if (st != DR_OK)
			break;
		r.n_steps = i + 1;
		for (size_t j = 0; j < i; j++)
			if (strcmp(r.step_names[j], r.step_names[i]) == 0) {
				char nf[48];

				snprintf(nf, sizeof(nf), "steps[%zu].name", i);
				st = refuse_field(err, field, nf,
						  "'%s' is the name of "
						  "steps[%zu] too",
						  r.step_names[i], j);
			}
		info[i].name = r.step_names[i];
		info[i].renditions = r.steps[i].renditions;
		info[i].n_renditions = r.steps[i].n_renditions;
	}
	for (size_t i = 0; i < n && st == DR_OK; i++) {
		char where[DR_FIELD_MAX - 40];

		st = workflow_check_refs(r.steps[i].input, r.input, info, n, i,
					 where, sizeof(where), err);
		if (st == DR_ERR_INVALID) {
			char why[sizeof(err->message)];

			snprintf(why, sizeof(why), "%s", err->message);
			snprintf(field, DR_FIELD_MAX, "steps[%zu].input%s%s", i,
				 where[0] ? "." : "", where);
			st = dr_fail(err, DR_ERR_INVALID, "invalid_field",
				     "%s: %s", field, why);
		}
	}
	if (st != DR_OK) {
		jobs_request_free(&r);
		return st;
	}
	r.adapter = r.steps[n - 1].adapter;
	r.model = r.steps[n - 1].model;
	r.root = json_object_get(root);
	*out = r;
	return DR_OK;
}

/* Columns of the job object, in the order render_job() reads them. */
enum {
	J_ID,
	J_STATUS,
	J_ADAPTER,
	J_MODEL,
	J_VERSION,
	J_INPUT,
	J_METADATA,
	J_PRED_ID,
	J_PRED_STATUS,
	J_PREDICT_TIME,
	J_PROGRESS,
	J_ATTEMPTS,
	J_ERR_STEP,
	J_ERR_CODE,
	J_ERR_MSG,
	J_CREATED,
	J_UPDATED,
	J_COMPLETED,
	J_CALLBACK_URL,
	J_BATCH_ID,
	J_KIND,
	J_PARENT,    /* a workflow's step: its workflow */
	J_STEP_NAME, /* a step: its name; a failed workflow: the step that
			failed */
	J_TRAINING_VERSION,
	J_DESTINATION,
	J_NCOLS
};

#define JOB_COLUMNS                                                            \
	"id, status, adapter, model, version, input, metadata,"                \
	" prediction_id, prediction_status, predict_time, progress,"           \
	" attempts, error_step, error_code, error_message, created_at,"        \
	" updated_at, completed_at, callback_url, batch_id, kind,"             \
	" parent_id, step_name, training_version, destination"

static dr_status render_job(dr_db *db, const struct dr_instance *sink,
			    const dr_db_rows *rows, size_t i, int with_outputs,
			    int with_callback, dr_buf *b, dr_error *err);

/* --------------------------------------------------------------- create */

/* [retention] idempotency_keys in the whole seconds the SQL takes (at
 * least 1; only called when it is on). */
static int64_t idem_keep(const dr_config *cfg)
{
	double v = cfg->retention.idempotency_keys;

	return v < 1 ? 1 : (int64_t)v;
}

static dr_status find_idempotent(dr_db *db, const dr_idempotency *idem,
				 char id_out[DR_JOB_ID_LEN + 1], dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	st = db_query(db,
		      "SELECT request_hash, job_id FROM idempotency_keys"
		      " WHERE scope = ? AND idem_key = ?",
		      &rows, err,
		      DB_ARGS(DB_STR(idem->scope), DB_STR(idem->key)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 0) {
		/* The key's owner rolled back in between: not a replay. */
		st = dr_fail(err, DR_ERR_UNAVAILABLE, "retry",
			     "idempotency key in flux; retry");
	} else if (strcmp(db_cell(rows, 0, 0), idem->body_hash) != 0) {
		st = dr_fail(err, DR_ERR_CONFLICT, "idempotency_key_reused",
			     "this Idempotency-Key was used with another "
			     "request body");
	} else {
		snprintf(id_out, DR_JOB_ID_LEN + 1, "%s", db_cell(rows, 0, 1));
	}
	db_rows_free(rows);
	return st;
}

int jobs_idempotent_replay(dr_db *db, const dr_idempotency *idem)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	int replay;

	if (!idem->key)
		return 0;
	if (db_query(db,
		     "SELECT request_hash FROM idempotency_keys"
		     " WHERE scope = ? AND idem_key = ?",
		     &rows, &err,
		     DB_ARGS(DB_STR(idem->scope), DB_STR(idem->key))) != DR_OK)
		return 0;
	replay = rows->n_rows == 1 &&
		 strcmp(db_cell(rows, 0, 0), idem->body_hash) == 0;
	db_rows_free(rows);
	return replay;
}

/*
 * The job's tenant for fair claims (queue.h): its value of the metadata key
 * [server] fair_key names, found as the database finds keys (without
 * letter case: "Tenant" is the key "tenant"), cut to DR_MAX_FAIR_VALUE
 * characters (at a UTF-8 boundary, into `cut`) to fit jobs.fair_value.
 * "" when fair_key is off or the job has no such key: those jobs are one
 * tenant. Points into `metadata`, `cut`, or at a literal.
 */
static const char *fair_value(const dr_config *cfg, json_object *metadata,
			      char *cut, size_t size)
{
	const char *v = NULL;
	size_t n = 0, chars = 0;

	if (!cfg->server.fair_key || !metadata)
		return "";
	json_object_object_foreach(metadata, k, jv)
	{
		if (strcasecmp(k, cfg->server.fair_key) == 0)
			v = json_object_get_string(jv);
	}
	if (!v)
		return "";
	/* Count characters by their lead bytes; stop before the first one
	 * past the limit (or at the end of `cut`, which holds the limit's
	 * worth of 4-byte characters). */
	for (; v[n] && n < size - 1; n++)
		if (((unsigned char)v[n] & 0xc0) != 0x80 &&
		    ++chars > DR_MAX_FAIR_VALUE)
			break;
	if (!v[n])
		return v;
	memcpy(cut, v, n);
	cut[n] = '\0';
	return cut;
}

static dr_status insert_steps(dr_db *db, const char *parent,
			      const dr_job_request *req, const char *fair,
			      dr_error *err);

dr_status jobs_create(dr_db *db, const dr_config *cfg,
		      const struct dr_instance *sink, const dr_job_request *req,
		      const dr_idempotency *idem,
		      char id_out[DR_JOB_ID_LEN + 1], int *replayed,
		      dr_buf *out, dr_error *err)
{
	char id[DR_JOB_ID_LEN + 1];
	dr_db_rows *row = NULL;
	dr_buf rend;
	const char *input, *metadata = NULL, *prompt, *fair;
	char *prompt_cut = NULL;
	char fair_cut[DR_MAX_FAIR_VALUE * 4 + 1];
	dr_status st;

	*replayed = 0;
	if (ids_new_job_id(id) != DR_OK)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "no random bytes for a job id");
	dr_buf_init(&rend, 4096);
	st = dr_buf_puts(&rend, "[");
	for (size_t i = 0; st == DR_OK && i < req->n_renditions; i++) {
		if (i)
			st = dr_buf_puts(&rend, ",");
		if (st == DR_OK)
			st = dr_buf_json_string(&rend, req->renditions[i]);
	}
	if (st == DR_OK)
		st = dr_buf_puts(&rend, "]");
	if (st != DR_OK) {
		dr_buf_free(&rend);
		return dr_fail(err, DR_ERR_TOO_LARGE, "too_large",
			       "renditions: list too long");
	}
	input = json_object_to_json_string_ext(req->input,
					       JSON_C_TO_STRING_PLAIN);
	/* The prompt is kept for text search only: a long one is cut at a
	 * UTF-8 boundary to fit its column (the input keeps all of it). */
	prompt = json_get_string(req->input, "prompt");
	if (prompt && strlen(prompt) > DR_MAX_PROMPT_INDEX) {
		size_t n = DR_MAX_PROMPT_INDEX;

		while (n > 0 && ((unsigned char)prompt[n] & 0xc0) == 0x80)
			n--;
		prompt_cut = dr_xstrndup(prompt, n);
		prompt = prompt_cut;
	}
	if (req->metadata)
		metadata = json_object_to_json_string_ext(
			req->metadata, JSON_C_TO_STRING_PLAIN);
	fair = fair_value(cfg, req->metadata, fair_cut, sizeof(fair_cut));

	st = db_begin(db, err);
	if (st != DR_OK)
		goto out;
	if (idem->key && cfg->retention.idempotency_keys > 0) {
		/* An expired key ([retention] idempotency_keys) holds no job
		 * any more, whether or not the worker has pruned it yet:
		 * remove it here (by primary key; under READ COMMITTED a
		 * missing row takes no lock) so the INSERT below makes it
		 * new. */
		st = db_exec(db,
			     "DELETE FROM idempotency_keys WHERE scope = ?"
			     " AND idem_key = ?"
			     " AND created_at < NOW(6) - INTERVAL ? SECOND",
			     NULL, err,
			     DB_ARGS(DB_STR(idem->scope), DB_STR(idem->key),
				     DB_INT(idem_keep(cfg))));
		if (st != DR_OK)
			goto rollback;
	}
	if (idem->key) {
		st = db_exec(db,
			     "INSERT INTO idempotency_keys (scope, idem_key,"
			     " request_hash, job_id, created_at)"
			     " VALUES (?, ?, ?, ?, NOW(6))",
			     NULL, err,
			     DB_ARGS(DB_STR(idem->scope), DB_STR(idem->key),
				     DB_STR(idem->body_hash), DB_STR(id)));
		if (st == DR_ERR_CONFLICT) {
			db_rollback(db);
			st = find_idempotent(db, idem, id_out, err);
			if (st == DR_OK) {
				*replayed = 1;
				/* The earlier job as it is now. */
				if (out)
					st = jobs_render(db, cfg, sink, id_out,
							 out, err);
			}
			goto out;
		}
		if (st != DR_OK)
			goto rollback;
	}
	/* RETURNING hands back the stored row, so the answer needs no
	 * SELECT after the commit (a new job has no outputs to read
	 * either): two round trips fewer per job. db_query() never runs a
	 * statement twice inside a transaction, so this write is safe
	 * there. */
	st = db_query(
		db,
		"INSERT INTO jobs (id, status, step, kind, adapter, model,"
		" input, prompt, metadata, renditions, callback_url,"
		" fair_value, destination, run_at, created_at, updated_at)"
		" VALUES (?, ?, IF(?, 'steps', 'submit'), IF(?, 'workflow',"
		" ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, IF(?, NULL, NOW(6)), NOW(6),"
		" NOW(6)) RETURNING " JOB_COLUMNS,
		&row, err,
		DB_ARGS(DB_STR(id), DB_STR(jobstate_name(DR_JOB_QUEUED)),
			DB_INT(req->n_steps > 0), DB_INT(req->n_steps > 0),
			DB_STR(req->training ? "training" : "prediction"),
			DB_STR(req->adapter), DB_STR(req->model), DB_STR(input),
			DB_STR(prompt), DB_STR(metadata), DB_STR(rend.data),
			DB_STR(req->callback_url), DB_STR(fair),
			DB_STR(req->destination), DB_INT(req->n_steps > 0)));
	if (st == DR_OK && row->n_rows != 1)
		st = dr_fail(err, DR_ERR_INTERNAL, "internal",
			     "the new job was not returned");
	if (st != DR_OK)
		goto rollback;
	if (req->metadata) {
		json_object_object_foreach(req->metadata, k, v)
		{
			st = db_exec(
				db,
				"INSERT INTO job_metadata (job_id, k, v)"
				" VALUES (?, ?, ?)",
				NULL, err,
				DB_ARGS(DB_STR(id), DB_STR(k),
					DB_STR(json_object_get_string(v))));
			if (st != DR_OK)
				goto rollback;
		}
	}
	st = jobstate_event(db, id, "created", NULL,
			    jobstate_name(DR_JOB_QUEUED), NULL, err);
	if (st == DR_OK) /* the files its input uses (files.h) */
		st = files_link_job(db, id, req->input, err);
	if (st == DR_OK && req->n_steps)
		st = insert_steps(db, id, req, fair, err);
	if (st != DR_OK)
		goto rollback;
	st = db_commit(db, err);
	if (st != DR_OK) {
		/* A connection lost during COMMIT leaves the handle failing
		 * every call until it is rolled back (db.h); without this,
		 * later requests to this process would fail too. */
		db_rollback(db);
		goto out;
	}
	memcpy(id_out, id, sizeof(id));
	if (out && req->n_steps) /* its steps are rows of their own */
		st = jobs_render(db, cfg, sink, id, out, err);
	else if (out)
		st = render_job(db, sink, row, 0, 0, 1, out, err);
	goto out;
rollback:
	db_rollback(db);
out:
	db_rows_free(row);
	free(prompt_cut);
	dr_buf_free(&rend);
	return st;
}

/* The renditions of `req` as a JSON array (malloc, the caller frees), or
 * NULL when it does not fit. */
static char *renditions_json(const dr_job_request *req)
{
	dr_buf rend;
	dr_status st;

	dr_buf_init(&rend, 4096);
	st = dr_buf_puts(&rend, "[");
	for (size_t i = 0; st == DR_OK && i < req->n_renditions; i++) {
		if (i)
			st = dr_buf_puts(&rend, ",");
		if (st == DR_OK)
			st = dr_buf_json_string(&rend, req->renditions[i]);
	}
	if (st == DR_OK)
		st = dr_buf_puts(&rend, "]");
	if (st != DR_OK) {
		dr_buf_free(&rend);
		return NULL;
	}
	return dr_buf_steal(&rend);
}

/* The prompt of `req` kept for search: its input's "prompt", cut at a
 * UTF-8 boundary to DR_MAX_PROMPT_INDEX bytes (into *cut, the caller
 * frees), or NULL. */
static const char *search_prompt(const dr_job_request *req, char **cut)
{
	const char *prompt = json_get_string(req->input, "prompt");
	size_t n = DR_MAX_PROMPT_INDEX;

	*cut = NULL;
	if (!prompt || strlen(prompt) <= DR_MAX_PROMPT_INDEX)
		return prompt;
	while (n > 0 && ((unsigned char)prompt[n] & 0xc0) == 0x80)
		n--;
	*cut = dr_xstrndup(prompt, n);
	return *cut;
}

/*
 * The steps of workflow `parent` (req->steps), in the caller's open
 * transaction: one queued job each (kind prediction, parent_id,
 * step_index, step_name; the workflow's tenant), the first one due now and
 * the others when the step before them succeeds (jobstate.h), each with
 * its "created" event.
 */
static dr_status insert_steps(dr_db *db, const char *parent,
			      const dr_job_request *req, const char *fair,
			      dr_error *err)
{
	dr_status st = DR_OK;

	for (size_t i = 0; i < req->n_steps && st == DR_OK; i++) {
		const dr_job_request *sr = &req->steps[i];
		char sid[DR_JOB_ID_LEN + 1];
		char *rend, *cut = NULL, *detail;
		const char *prompt = search_prompt(sr, &cut);

		if (ids_new_job_id(sid) != DR_OK) {
			free(cut);
			return dr_fail(err, DR_ERR_INTERNAL, "internal",
				       "no random bytes for a job id");
		}
		rend = renditions_json(sr);
		if (!rend) {
			free(cut);
			return dr_fail(err, DR_ERR_TOO_LARGE, "too_large",
				       "renditions: list too long");
		}
		st = db_exec(
			db,
			"INSERT INTO jobs (id, status, step, kind,"
			" parent_id, step_index, step_name, adapter,"
			" model, input, prompt, renditions, fair_value,"
			" run_at, created_at, updated_at) VALUES (?,"
			" 'queued', 'submit', 'prediction', ?, ?, ?, ?,"
			" ?, ?, ?, ?, ?, IF(?, NOW(6), NULL), NOW(6),"
			" NOW(6))",
			NULL, err,
			DB_ARGS(DB_STR(sid), DB_STR(parent), DB_INT((int64_t)i),
				DB_STR(req->step_names[i]), DB_STR(sr->adapter),
				DB_STR(sr->model),
				DB_STR(json_object_to_json_string_ext(
					sr->input, JSON_C_TO_STRING_PLAIN)),
				DB_STR(prompt), DB_STR(rend), DB_STR(fair),
				DB_INT(i == 0)));
		free(rend);
		free(cut);
		if (st != DR_OK)
			break;
		detail = jobstate_detail("workflow", parent, "step",
					 req->step_names[i], NULL);
		st = jobstate_event(db, sid, "created", NULL,
				    jobstate_name(DR_JOB_QUEUED), detail, err);
		free(detail);
		if (st == DR_OK) /* the files its input uses (files.h) */
			st = files_link_job(db, sid, sr->input, err);
	}
	return st;
}

/* Parameters of one job row of jobs_insert_batch(). */
#define BATCH_JOB_PARAMS 14

dr_status jobs_insert_batch(dr_db *db, const dr_config *cfg,
			    const char *batch_id, const dr_job_request *reqs,
			    const char *const *keys, size_t n,
			    char (*ids)[DR_JOB_ID_LEN + 1], dr_error *err)
{
	static char *job_sql[3], *meta_sql[3];
	dr_db_arg *args = dr_xcalloc(n * BATCH_JOB_PARAMS + 1, sizeof(*args));
	dr_db_arg *margs = NULL;
	char **owned = dr_xcalloc(3 * n + 1, sizeof(*owned));
	char(*fair_cut)[DR_MAX_FAIR_VALUE * 4 + 1] =
		dr_xcalloc(n + 1, sizeof(*fair_cut));
	const char **idp = dr_xcalloc(n + 1, sizeof(*idp));
	size_t n_meta = 0, m = 0;
	char *detail = NULL;
	dr_status st = DR_OK;

	for (size_t i = 0; i < n && st == DR_OK; i++) {
		const dr_job_request *r = &reqs[i];
		dr_db_arg *a = args + i * BATCH_JOB_PARAMS;
		char *rend = renditions_json(r), *cut = NULL;
		const char *prompt = search_prompt(r, &cut);
		char *meta =
			r->metadata
				? dr_xstrdup(json_object_to_json_string_ext(
					  r->metadata, JSON_C_TO_STRING_PLAIN))
				: NULL;

		owned[3 * i] = rend;
		owned[3 * i + 1] = cut;
		owned[3 * i + 2] = meta;
		if (!rend) {
			st = dr_fail(err, DR_ERR_TOO_LARGE, "too_large",
				     "renditions: list too long");
			break;
		}
		if (ids_new_job_id(ids[i]) != DR_OK) {
			st = dr_fail(err, DR_ERR_INTERNAL, "internal",
				     "no random bytes for a job id");
			break;
		}
		idp[i] = ids[i];
		a[0] = DB_STR(ids[i]);
		a[1] = DB_STR(r->adapter);
		a[2] = DB_STR(r->model);
		/* json-c keeps the text in the object until it changes */
		a[3] = DB_STR(json_object_to_json_string_ext(
			r->input, JSON_C_TO_STRING_PLAIN));
		a[4] = DB_STR(prompt);
		a[5] = DB_STR(meta);
		a[6] = DB_STR(rend);
		a[7] = DB_STR(r->callback_url);
		a[8] = DB_STR(fair_value(cfg, r->metadata, fair_cut[i],
					 sizeof(fair_cut[i])));
		a[9] = DB_STR(batch_id);
		a[10] = DB_STR(keys[i]);
		a[11] = DB_INT(r->n_steps > 0);
		a[12] = DB_INT(r->n_steps > 0);
		a[13] = DB_INT(r->n_steps > 0);
		if (r->metadata)
			n_meta +=
				(size_t)json_object_object_length(r->metadata);
	}
	if (st == DR_OK)
		st = db_insert_rows(
			db,
			"INSERT INTO jobs (id, status, adapter, model,"
			" input, prompt, metadata, renditions, callback_url,"
			" fair_value, batch_id, batch_key, step, kind, run_at,"
			" created_at, updated_at)",
			"(?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
			" IF(?, 'steps', 'submit'), IF(?, 'workflow',"
			" 'prediction'), IF(?, NULL, NOW(6)), NOW(6), NOW(6))",
			BATCH_JOB_PARAMS, args, n, job_sql, err);
	if (st == DR_OK && n_meta) {
		margs = dr_xcalloc(3 * n_meta, sizeof(*margs));
		for (size_t i = 0; i < n; i++) {
			if (!reqs[i].metadata)
				continue;
			json_object_object_foreach(reqs[i].metadata, k, v)
			{
				margs[m++] = DB_STR(ids[i]);
				margs[m++] = DB_STR(k);
				margs[m++] = DB_STR(json_object_get_string(v));
			}
		}
		st = db_insert_rows(
			db, "INSERT INTO job_metadata (job_id, k, v)",
			"(?, ?, ?)", 3, margs, n_meta, meta_sql, err);
	}
	if (st == DR_OK) {
		detail = jobstate_detail("batch", batch_id, NULL);
		st = jobstate_events_created(db, idp, n, detail, err);
	}
	/* The steps of workflow items: rows of their own, as for one. */
	for (size_t i = 0; i < n && st == DR_OK; i++)
		if (reqs[i].n_steps)
			st = insert_steps(db, ids[i], &reqs[i],
					  fair_value(cfg, reqs[i].metadata,
						     fair_cut[i],
						     sizeof(fair_cut[i])),
					  err);
	free(detail);
	for (size_t i = 0; i < 3 * n; i++)
		free(owned[i]);
	free(owned);
	free(margs);
	free(idp);
	free(fair_cut);
	free(args);
	return st;
}

/* ------------------------------------------------------------ rendering */

/* Append "name":<string or null>. */
static dr_status put_str(dr_buf *b, const char *name, const char *v)
{
	dr_status st = dr_buf_printf(b, ",\"%s\":", name);

	if (st != DR_OK)
		return st;
	return v ? dr_buf_json_string(b, v) : dr_buf_puts(b, "null");
}

/* Append "name":<number or null> from a decimal text cell. */
static dr_status put_num(dr_buf *b, const char *name, const char *v)
{
	return dr_buf_printf(b, ",\"%s\":%s", name, v ? v : "null");
}

/* Longest public URL made (NUL included): a key of at most 512 bytes
 * (the storage_key columns) under a base URL of a config line. The same
 * bound as DR_URL_MAX of rendition.h, which the app does not link. */
#define PUBLIC_URL_MAX 2300

/*
 * Append ,"url":<the public URL of `key`>: made now through the sink's
 * public_url from the key and the sink's current base URL, into a stack
 * buffer copied into `b` (no allocation per row). Without a key (no row
 * is written so) or without a sink, the URL the row stored, `stored`, or
 * null. A sink that cannot make the URL: null, as for an object without
 * one.
 */
static dr_status put_url(dr_buf *b, const struct dr_instance *sink,
			 const char *key, const char *stored)
{
	char url[PUBLIC_URL_MAX];

	url[0] = '\0';
	if (!key || !sink)
		return put_str(b, "url", stored);
	if (sink->plugin->desc->sink->public_url(sink->state, key, url,
						 sizeof(url)) != DR_OK ||
	    !url[0])
		return put_str(b, "url", NULL);
	return put_str(b, "url", url);
}

dr_status jobs_append_output(dr_buf *b, const struct dr_instance *sink,
			     const dr_db_rows *outs, size_t i,
			     const dr_db_rows *rends)
{
	const char *oid = db_cell(outs, i, 0);
	int first = 1;
	dr_status st;

	st = dr_buf_printf(b, "{\"index\":%s", db_cell(outs, i, 1));
	if (st == DR_OK)
		st = put_str(b, "kind", db_cell(outs, i, 2));
	if (st == DR_OK)
		st = put_str(b, "source_url", db_cell(outs, i, 3));
	if (st == DR_OK)
		st = put_url(b, sink, db_cell(outs, i, 5), db_cell(outs, i, 4));
	if (st == DR_OK)
		st = put_str(b, "key", db_cell(outs, i, 5));
	if (st == DR_OK)
		st = put_str(b, "content_type", db_cell(outs, i, 6));
	if (st == DR_OK)
		st = put_num(b, "bytes", db_cell(outs, i, 7));
	if (st == DR_OK)
		st = put_str(b, "sha256", db_cell(outs, i, 8));
	if (st == DR_OK && db_cell(outs, i, 9)) {
		st = put_num(b, "width", db_cell(outs, i, 9));
		if (st == DR_OK)
			st = put_num(b, "height", db_cell(outs, i, 10));
		if (st == DR_OK)
			st = put_str(b, "format", db_cell(outs, i, 11));
		if (st == DR_OK)
			st = put_str(b, "blurhash", db_cell(outs, i, 12));
		if (st == DR_OK)
			st = put_str(b, "dominant_color", db_cell(outs, i, 13));
		if (st == DR_OK)
			st = put_str(b, "phash", db_cell(outs, i, 14));
	}
	if (st == DR_OK && db_cell(outs, i, 15))
		st = put_str(b, "text", db_cell(outs, i, 15));
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"renditions\":[");
	for (size_t r = 0; st == DR_OK && rends && r < rends->n_rows; r++) {
		if (strcmp(db_cell(rends, r, 0), oid) != 0)
			continue;
		st = dr_buf_printf(b, "%s{\"name\":", first ? "" : ",");
		first = 0;
		if (st == DR_OK)
			st = dr_buf_json_string(b, db_cell(rends, r, 1));
		if (st == DR_OK)
			st = put_url(b, sink, db_cell(rends, r, 3),
				     db_cell(rends, r, 2));
		if (st == DR_OK)
			st = put_str(b, "key", db_cell(rends, r, 3));
		if (st == DR_OK)
			st = put_str(b, "content_type", db_cell(rends, r, 4));
		if (st == DR_OK)
			st = put_num(b, "width", db_cell(rends, r, 5));
		if (st == DR_OK)
			st = put_num(b, "height", db_cell(rends, r, 6));
		if (st == DR_OK)
			st = put_num(b, "bytes", db_cell(rends, r, 7));
		if (st == DR_OK)
			st = dr_buf_puts(b, "}");
	}
	if (st == DR_OK)
		st = dr_buf_puts(b, "]");
	return st;
}

static dr_status render_outputs(dr_db *db, const struct dr_instance *sink,
				const char *id, dr_buf *b, dr_error *err)
{
	dr_db_rows *outs = NULL, *rends = NULL;
	dr_status st;

	st = db_query(db,
		      "SELECT " DR_OUTPUT_COLUMNS " FROM outputs"
		      " o WHERE job_id = ? AND state = 'stored' ORDER BY idx",
		      &outs, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		return st;
	if (outs->n_rows)
		st = db_query(db,
			      "SELECT " DR_RENDITION_COLUMNS " FROM renditions"
			      " r JOIN outputs o ON o.id = r.output_id WHERE"
			      " o.job_id = ? ORDER BY r.output_id, r.name",
			      &rends, err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"outputs\":[");
	for (size_t i = 0; st == DR_OK && i < outs->n_rows; i++) {
		if (i)
			st = dr_buf_puts(b, ",");
		if (st == DR_OK)
			st = jobs_append_output(b, sink, outs, i, rends);
		if (st == DR_OK)
			st = dr_buf_puts(b, "}");
	}
	if (st == DR_OK)
		st = dr_buf_puts(b, "]");
	else if (st == DR_ERR_TOO_LARGE)
		dr_fail(err, DR_ERR_INTERNAL, "internal",
			"job object too large");
	db_rows_free(outs);
	db_rows_free(rends);
	return st;
}

/*
 * Append ,"callback":{"url", "state", "attempts", "last_status",
 * "next_at"} of job `id`: its latest delivery of its own end (not a
 * batch.completed it may carry, core/jobstate.c) once
 * the job has ended (`completed` not NULL), or state "none" (nothing to
 * deliver yet: the job runs, again after a retry); null without `url`.
 */
static dr_status render_callback(dr_db *db, const char *id, const char *url,
				 const char *completed, dr_buf *b,
				 dr_error *err)
{
	dr_db_rows *rows = NULL;
	const char *state = "none", *attempts = "0", *last = NULL, *next = NULL;
	dr_status st;

	if (!url)
		return dr_buf_puts(b, ",\"callback\":null") == DR_OK
			       ? DR_OK
			       : DR_ERR_TOO_LARGE;
	if (completed) {
		st = db_query(db,
			      "SELECT state, attempts, last_status,"
			      " IF(state = 'pending', next_at, NULL)"
			      " FROM callback_deliveries WHERE job_id = ?"
			      " AND type LIKE 'job.%'"
			      " ORDER BY created_at DESC, id DESC LIMIT 1",
			      &rows, err, DB_ARGS(DB_STR(id)));
		if (st != DR_OK)
			return st;
		if (rows->n_rows == 1) {
			state = db_cell(rows, 0, 0);
			attempts = db_cell(rows, 0, 1);
			last = db_cell(rows, 0, 2);
			next = db_cell(rows, 0, 3);
		}
	}
	st = dr_buf_puts(b, ",\"callback\":{\"url\":");
	if (st == DR_OK)
		st = dr_buf_json_string(b, url);
	if (st == DR_OK)
		st = put_str(b, "state", state);
	if (st == DR_OK)
		st = put_num(b, "attempts", attempts);
	if (st == DR_OK)
		st = put_num(b, "last_status", last);
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"next_at\":");
	if (st == DR_OK)
		st = json_append_time(b, next);
	if (st == DR_OK)
		st = dr_buf_puts(b, "}");
	db_rows_free(rows);
	return st == DR_OK ? DR_OK : DR_ERR_TOO_LARGE;
}

/*
 * Append ,"steps":[…] of workflow `id`, each step the job object it is
 * (with its name, and its outputs with `with_outputs`), then
 * ,"outputs":[…], the last step's (or [] without `with_outputs`).
 */
static dr_status render_steps(dr_db *db, const struct dr_instance *sink,
			      const char *id, int with_outputs, dr_buf *b,
			      dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	st = db_query(db,
		      "SELECT " JOB_COLUMNS " FROM jobs WHERE parent_id = ?"
		      " ORDER BY step_index",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		return st;
	if (dr_buf_puts(b, ",\"steps\":[") != DR_OK)
		st = DR_ERR_TOO_LARGE;
	for (size_t i = 0; st == DR_OK && i < rows->n_rows; i++) {
		if (i && dr_buf_puts(b, ",") != DR_OK)
			st = DR_ERR_TOO_LARGE;
		if (st == DR_OK)
			st = render_job(db, sink, rows, i, with_outputs, 0, b,
					err);
	}
	if (st == DR_OK && dr_buf_puts(b, "]") != DR_OK)
		st = DR_ERR_TOO_LARGE;
	if (st == DR_OK && with_outputs && rows->n_rows)
		st = render_outputs(db, sink,
				    db_cell(rows, rows->n_rows - 1, J_ID), b,
				    err);
	else if (st == DR_OK && dr_buf_puts(b, ",\"outputs\":[]") != DR_OK)
		st = DR_ERR_TOO_LARGE;
	if (st == DR_ERR_TOO_LARGE)
		st = dr_fail(err, DR_ERR_INTERNAL, "internal",
			     "job object too large");
	db_rows_free(rows);
	return st;
}

/* Append the job object for row `i` of `rows` (JOB_COLUMNS order), with
 * its outputs and its "callback" member when asked. */
static dr_status render_job(dr_db *db, const struct dr_instance *sink,
			    const dr_db_rows *rows, size_t i, int with_outputs,
			    int with_callback, dr_buf *b, dr_error *err)
{
#define C(col) db_cell(rows, i, (col))
	int workflow = C(J_KIND) && strcmp(C(J_KIND), "workflow") == 0;
	dr_status st;

	st = dr_buf_puts(b, "{\"id\":");
	if (st == DR_OK)
		st = dr_buf_json_string(b, C(J_ID));
	if (st == DR_OK && C(J_PARENT))
		st = put_str(b, "name", C(J_STEP_NAME));
	if (st == DR_OK)
		st = put_str(b, "kind", C(J_KIND));
	if (st == DR_OK)
		st = put_str(b, "status", C(J_STATUS));
	if (st == DR_OK)
		st = put_str(b, "adapter", C(J_ADAPTER));
	if (st == DR_OK)
		st = put_str(b, "model", C(J_MODEL));
	if (st == DR_OK)
		st = put_str(b, "version", C(J_VERSION));
	if (st == DR_OK)
		st = dr_buf_printf(b, ",\"input\":%s,\"metadata\":%s",
				   C(J_INPUT), C(J_METADATA) ? C(J_METADATA)
							     : "{}");
	if (st == DR_OK && C(J_PRED_ID)) {
		st = dr_buf_puts(b, ",\"prediction\":{\"id\":");
		if (st == DR_OK)
			st = dr_buf_json_string(b, C(J_PRED_ID));
		if (st == DR_OK)
			st = put_str(b, "status", C(J_PRED_STATUS));
		if (st == DR_OK)
			st = put_num(b, "predict_time", C(J_PREDICT_TIME));
		if (st == DR_OK)
			st = dr_buf_puts(b, "}");
	} else if (st == DR_OK) {
		st = dr_buf_puts(b, ",\"prediction\":null");
	}
	if (st == DR_OK && strcmp(C(J_KIND), "training") == 0) {
		/* The new version once the training succeeded. */
		st = dr_buf_puts(b, ",\"training\":{\"destination\":");
		if (st == DR_OK)
			st = C(J_DESTINATION)
				     ? dr_buf_json_string(b, C(J_DESTINATION))
				     : dr_buf_puts(b, "null");
		if (st == DR_OK)
			st = put_str(b, "version", C(J_TRAINING_VERSION));
		if (st == DR_OK)
			st = dr_buf_puts(b, "}");
	}
	if (st == DR_OK)
		st = put_num(b, "progress",
			     C(J_PROGRESS) ? C(J_PROGRESS) : "0");
	if (st == DR_OK)
		st = put_num(b, "attempts", C(J_ATTEMPTS));
	if (st == DR_OK && C(J_ERR_CODE)) {
		st = dr_buf_puts(b, ",\"error\":{\"step\":");
		if (st == DR_OK)
			st = C(J_ERR_STEP) ? dr_buf_json_string(b, C(J_ERR_STEP))
					   : dr_buf_puts(b, "null");
		if (st == DR_OK)
			st = put_str(b, "code", C(J_ERR_CODE));
		if (st == DR_OK)
			st = put_str(b, "message", C(J_ERR_MSG));
		if (st == DR_OK && workflow)
			st = put_str(b, "workflow_step", C(J_STEP_NAME));
		if (st == DR_OK)
			st = dr_buf_puts(b, "}");
	} else if (st == DR_OK) {
		st = dr_buf_puts(b, ",\"error\":null");
	}
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"created_at\":");
	if (st == DR_OK)
		st = json_append_time(b, C(J_CREATED));
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"updated_at\":");
	if (st == DR_OK)
		st = json_append_time(b, C(J_UPDATED));
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"completed_at\":");
	if (st == DR_OK)
		st = json_append_time(b, C(J_COMPLETED));
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"batch_id\":");
	if (st == DR_OK)
		st = C(J_BATCH_ID) ? dr_buf_json_string(b, C(J_BATCH_ID))
				   : dr_buf_puts(b, "null");
	if (st == DR_OK && C(J_PARENT))
		st = put_str(b, "workflow_id", C(J_PARENT));
	if (st == DR_OK && with_callback) {
		st = render_callback(db, C(J_ID), C(J_CALLBACK_URL),
				     C(J_COMPLETED), b, err);
		if (st != DR_OK && st != DR_ERR_TOO_LARGE)
			return st;
	}
	if (st != DR_OK)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "job object too large");
	if (workflow)
		st = render_steps(db, sink, C(J_ID), with_outputs, b, err);
	else if (with_outputs)
		st = render_outputs(db, sink, C(J_ID), b, err);
	else if (dr_buf_puts(b, ",\"outputs\":[]") != DR_OK)
		st = dr_fail(err, DR_ERR_INTERNAL, "internal",
			     "job object too large");
	if (st == DR_OK && dr_buf_puts(b, "}") != DR_OK)
		st = dr_fail(err, DR_ERR_INTERNAL, "internal",
			     "job object too large");
	return st;
#undef C
}

/* jobs_render() and jobs_render_message(). */
static dr_status render_one(dr_db *db, const struct dr_instance *sink,
			    const char *id, int with_callback, dr_buf *out,
			    dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	st = db_query(db, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 0)
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			     "no job with id %.40s", id);
	else
		st = render_job(db, sink, rows, 0, 1, with_callback, out, err);
	db_rows_free(rows);
	return st;
}

dr_status jobs_render(dr_db *db, const dr_config *cfg,
		      const struct dr_instance *sink, const char *id,
		      dr_buf *out, dr_error *err)
{
	(void)cfg;
	return render_one(db, sink, id, 1, out, err);
}

dr_status jobs_render_message(dr_db *db, const dr_config *cfg,
			      const struct dr_instance *sink, const char *id,
			      dr_buf *out, dr_error *err)
{
	(void)cfg;
	return render_one(db, sink, id, 0, out, err);
}

dr_status jobs_callback_attempts(dr_db *db, const char *id, dr_db_rows **rows,
				 dr_error *err)
{
	return db_query(db,
			"SELECT d.id, a.attempt, a.started_at, a.duration_ms,"
			" a.http_status, a.error FROM callback_deliveries d"
			" JOIN callback_attempts a ON a.delivery_id = d.id"
			" WHERE d.job_id = ? ORDER BY d.created_at, d.id,"
			" a.attempt",
			rows, err, DB_ARGS(DB_STR(id)));
}

/*
 * MariaDB orders the tables of a join without weighing ORDER BY ... LIMIT
 * unless optimizer_join_limit_pref_ratio is set (MDEV-34720, in the
 * releases since late 2024; Debian 12's 10.11 has it). A metadata filter
 * that many jobs match then gets the plan of a rare one: every matching
 * row read and sorted to return the newest 20. With the setting, the
 * optimizer also costs reading newest first and checking each row by
 * primary key. Measured on 300,000 jobs with one output each (times of
 * the query alone, without / with the setting at 10):
 *   outputs, a value a quarter of the jobs have        810 ms / 7 ms
 *   the same and a model a tenth of the jobs have      183 ms / 8 ms
 *   jobs, a value a quarter have, status and cursor     92 ms / 7 ms
 *   outputs or jobs, a value 100 jobs have              13 ms / 9 ms
 * (100, the documented suggestion, left the second and third as they
 * were.) A value that only the oldest jobs have stays slow either way
 * (0.3-0.6 s for 75,000 of them): its matches are all read and sorted.
 * Servers without the variable would refuse the statement, so it is asked
 * for once.
 */
static const char *metadata_sql_prefix(dr_db *db)
{
	static int supported = -1;

	if (supported < 0) {
		dr_db_rows *rows = NULL;
		dr_error err;
		dr_status st =
			db_query(db, "SELECT @@optimizer_join_limit_pref_ratio",
				 &rows, &err, DB_NOARGS);

		if (st == DR_OK)
			supported = 1;
		else if (st == DR_ERR_DATABASE && !err.retryable)
			supported = 0; /* unknown variable */
		db_rows_free(rows);
	}
	return supported == 1
		       ? "SET STATEMENT optimizer_join_limit_pref_ratio = 10"
			 " FOR "
		       : "";
}

dr_status jobs_filtered_query(dr_db *db, jobs_filter_sql_fn build,
			      char **cache, unsigned mask, size_t n_meta,
			      const dr_db_arg *args, size_t n,
			      dr_db_rows **rows, dr_error *err)
{
	dr_buf sql;
	dr_status st;

	if (n_meta == 0) {
		if (!cache[mask]) {
			dr_buf_init(&sql, 4096);
			if (build(&sql, mask, 0) != DR_OK)
				dr_die("a list query does not fit");
			cache[mask] = dr_buf_steal(&sql);
		}
		return db_query(db, cache[mask], rows, err, args, n);
	}
	dr_buf_init(&sql, 8192);
	if (dr_buf_puts(&sql, metadata_sql_prefix(db)) != DR_OK ||
	    build(&sql, mask, n_meta) != DR_OK)
		dr_die("a list query does not fit");
	st = db_query_uncached(db, sql.data, rows, err, args, n);
	dr_buf_free(&sql);
	return st;
}

/* The list query for a combination of filters and a number of metadata
 * filters, appended to `sql`. Its parameters: status, model, adapter,
 * the metadata keys and values, cursor (those present), and the limit. */
enum {
	F_STATUS = 1,
	F_MODEL = 2,
	F_ADAPTER = 4,
	F_CURSOR = 8,
	F_BATCH = 16,
	F_KIND = 32,
	F_ALL = 64
};

static char *list_cache[F_ALL]; /* list_sql() per mask, no metadata */

static dr_status list_sql(dr_buf *sql, unsigned mask, size_t n_meta)
{
	dr_status st = dr_buf_printf(
		sql,
		"SELECT " JOB_COLUMNS " FROM jobs WHERE parent_id IS NULL"
		"%s%s%s%s%s",
		mask & F_BATCH ? " AND batch_id = ?" : "",
		mask & F_KIND ? " AND kind = ?" : "",
		mask & F_STATUS ? " AND status = ?" : "",
		mask & F_MODEL ? " AND model = ?" : "",
		mask & F_ADAPTER ? " AND adapter = ?" : "");

	if (st == DR_OK)
		st = jobs_metadata_sql(sql, "jobs.id", n_meta);
	if (st == DR_OK)
		st = dr_buf_printf(sql, "%s ORDER BY id DESC LIMIT ?",
				   mask & F_CURSOR ? " AND id < ?" : "");
	return st;
}

dr_status jobs_list(dr_db *db, const dr_config *cfg,
		    const struct dr_instance *sink, const dr_job_filter *f,
		    dr_buf *out, dr_error *err)
{
	dr_db_arg args[6 + 2 * DR_MAX_METADATA_FILTERS + 1];
	unsigned mask = 0;
	size_t n = 0;
	dr_db_rows *rows = NULL;
	dr_status st;
	size_t shown;

#define ARG(v) (args[n++] = DB_STR(v))
	(void)cfg;
	assert(f->n_meta <= DR_MAX_METADATA_FILTERS);
	if (f->batch) {
		mask |= F_BATCH;
		ARG(f->batch);
	}
	if (f->kind) {
		mask |= F_KIND;
		ARG(f->kind);
	}
	if (f->status) {
		mask |= F_STATUS;
		ARG(f->status);
	}
	if (f->model) {
		mask |= F_MODEL;
		ARG(f->model);
	}
	if (f->adapter) {
		mask |= F_ADAPTER;
		ARG(f->adapter);
	}
	for (size_t i = 0; i < f->n_meta; i++) {
		ARG(f->meta[i].key);
		ARG(f->meta[i].value);
	}
	if (f->cursor) {
		mask |= F_CURSOR;
		ARG(f->cursor);
	}
#undef ARG
	/* Fetch one more than asked to know whether a next page exists. */
	args[n++] = DB_INT((int64_t)f->limit + 1);
	st = jobs_filtered_query(db, list_sql, list_cache, mask, f->n_meta,
				 args, n, &rows, err);
	if (st != DR_OK)
		return st;
	shown = rows->n_rows > (size_t)f->limit ? (size_t)f->limit
						 : rows->n_rows;
	st = dr_buf_puts(out, "{\"data\":[");
	for (size_t i = 0; st == DR_OK && i < shown; i++) {
		if (i)
			st = dr_buf_puts(out, ",");
		if (st == DR_OK)
			st = render_job(db, sink, rows, i, 1, 1, out, err);
	}
	if (st == DR_OK)
		st = dr_buf_puts(out, "],\"next_cursor\":");
	if (st == DR_OK)
		st = rows->n_rows > shown
			     ? dr_buf_json_string(out,
						  db_cell(rows, shown - 1, J_ID))
			     : dr_buf_puts(out, "null");
	if (st == DR_OK)
		st = dr_buf_puts(out, "}");
	db_rows_free(rows);
	if (st == DR_ERR_TOO_LARGE)
		st = dr_fail(err, DR_ERR_INTERNAL, "internal",
			     "job list too large");
	return st;
}
