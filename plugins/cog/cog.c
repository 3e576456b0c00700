/*
 * cog.c - the `cog` adapter: runs predictions on self-hosted Cog model
 * containers (https://github.com/replicate/cog, its HTTP API).
 *
 * A Cog container serves one model, one prediction at a time, and has no
 * way to read a prediction back: results come only by webhook. So:
 *
 *   submit     GET {url}/health-check first. READY: go on. BUSY or
 *              STARTING: DR_ERR_RATE_LIMITED with retry_after =
 *              `busy_retry` (the core delays the job without counting a
 *              try). SETUP_FAILED, DEFUNCT, UNHEALTHY, no answer:
 *              DR_ERR_UNAVAILABLE, retryable (nothing was created).
 *              Then PUT {url}/predictions/{job id} with "Prefer:
 *              respond-async" and {"id", "input", "webhook",
 *              "webhook_events_filter": ["start", "completed"]}. PUT with
 *              the caller's id is Cog's idempotent create: a second PUT
 *              with the same id while it runs attaches to it (202) instead
 *              of running the model again. The prediction id is always
 *              darkroom's job id. 202 -> STARTING; 409 (busy with another
 *              prediction) -> RATE_LIMITED; 422 -> DR_ERR_INVALID
 *              "provider_rejected_input"; other answers DR_ERR_PROVIDER.
 *              A failure after the request may have left (timeout, lost
 *              connection, 5xx) is not retryable: the core then calls
 *              reconcile, which PUTs the same id again and so attaches.
 *              When an earlier attempt of the job began (submitted_at),
 *              BUSY does not stop the PUT: the busy prediction may be
 *              ours, and the PUT attaches to it or gets 409.
 *   get        none: the core waits for webhooks until [worker]
 *              provider_deadline (which an adapter cannot shorten) and
 *              then fails the job with code "provider_deadline".
 *   cancel     POST {url}/predictions/{id}/cancel; 404 (not running any
 *              more) counts as done.
 *   webhook    requires "Authorization: Bearer <webhook_token>", compared
 *              in constant time (DR_ERR_AUTH "bad_token" otherwise). Cog
 *              sends that header when the container runs with
 *              WEBHOOK_AUTH_TOKEN set to the same token. Cog deliveries
 *              carry no id, so delivery_id is NULL: a repeated delivery is
 *              harmless because a job's state only moves forward.
 *   reconcile  PUT again (see submit); 409 means ours is not running:
 *              DR_ERR_NOT_FOUND, the core submits again.
 *
 * Outputs: strings that are data: URIs (Cog's default) or http(s) URLs
 * (a container started with an upload URL), anywhere in `output`, become
 * file outputs; a plain string, or a list of strings none of which is a
 * file (a token stream), becomes one text output. download_hosts is NULL:
 * data: URIs need none, and operators whose containers upload files list
 * the upload host in DARKROOM_DOWNLOAD_HOSTS.
 *
 * Configuration ([adapter "<name>"] with plugin = cog; one section per
 * container, jobs choose one by "adapter": "<name>"):
 *   url              the container's base URL (required)
 *   webhook_token    bearer token webhooks must carry (required, secret;
 *                    `openssl rand -hex 32`, given to the container as
 *                    WEBHOOK_AUTH_TOKEN). It is configured rather than
 *                    generated because the API process checks what the
 *                    worker process asked for, and they share no state.
 *   timeout          30s: the PUT and the cancel
 *   connect_timeout  5s
 *   health_timeout   5s: the health check
 *   busy_retry       5s: the delay asked for while the container is busy
 *
 * Error codes: cog_unreachable, cog_busy, cog_starting, cog_unhealthy,
 * provider_rejected_input, provider_error, provider_timeout,
 * provider_connection_lost, invalid_input, bad_prediction, bad_token,
 * output_too_large.
 *
 * HTTP goes through the host's service (host->http_request), which keeps
 * the connection to the container alive and tells a request that never
 * left from one that may have. The token never appears in logs or
 * messages. The plugin uses only the host table: no core symbol.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "darkroom-plugin.h"

#ifndef DR_VERSION
#define DR_VERSION "0.1.0"
#endif
#define COG_USER_AGENT "darkroom/" DR_VERSION " (+cog plugin)"

/* Largest answer read from a container (health, PUT, cancel). */
#define COG_MAX_RESPONSE (1u << 20)
/* Longest prediction id (darkroom job ids are far shorter). */
#define COG_ID_MAX 64
/* Most outputs, and most bytes of output text and URIs together (the
 * core hands over a webhook's files as short references). */
#define COG_MAX_OUTPUTS 64
#define COG_MAX_OUTPUT_SIZE (64u * 1024 * 1024)
/* Longest error text and container detail kept. */
#define COG_MAX_ERROR_TEXT 4096
#define COG_DETAIL_MAX 200
#define COG_JSON_DEPTH 64

typedef struct cog_adapter {
	const dr_host *host;
	const dr_instance *inst;
	char *url; /* without a trailing '/' */
	const char *token;
	double timeout, connect_timeout, health_timeout, busy_retry;
	/* The answer of the last request (mem_alloc'd). */
	char *body;
	size_t len;
} cog_adapter;

/* What went wrong before a complete answer arrived. */
typedef enum cog_transport {
	COG_OK = 0,
	COG_NOT_SENT,  /* failed before the request left: safe to repeat */
	COG_TIMEOUT,   /* maybe sent, then no answer in time */
	COG_FAILED     /* maybe sent, then the connection failed */
} cog_transport;

static const dr_config_key cog_keys[] = {
	{ .name = "url", .type = DR_CFG_URL, .flags = DR_CFG_REQUIRED,
	  .help = "base URL of the Cog container, e.g. http://gpu1:5000" },
	{ .name = "webhook_token", .type = DR_CFG_STRING,
	  .flags = DR_CFG_REQUIRED | DR_CFG_SECRET,
	  .help = "bearer token the container's webhooks carry (its "
		  "WEBHOOK_AUTH_TOKEN)" },
	{ .name = "timeout", .type = DR_CFG_DURATION, .default_value = "30s",
	  .help = "limit of a create or cancel request" },
	{ .name = "connect_timeout", .type = DR_CFG_DURATION,
	  .default_value = "5s", .help = "limit of connecting" },
	{ .name = "health_timeout", .type = DR_CFG_DURATION,
	  .default_value = "5s", .help = "limit of the health check" },
	{ .name = "busy_retry", .type = DR_CFG_DURATION, .default_value = "5s",
	  .help = "delay before trying a busy container again" },
	{ NULL }
};

static dr_status nomem(const cog_adapter *a, dr_error *err)
{
	return a->host->fail(err, DR_ERR_NOMEM, "out_of_memory",
			     "out of memory");
}

/* ------------------------------------------------------------------------
 * HTTP
 */

/*
 * One request through the host's HTTP service (which keeps the connection
 * to the container alive): `method` GET, PUT or POST, `body` JSON or NULL.
 * COG_OK with *status and the answer in a->body / a->len, or another value
 * with a sentence in why (the host's, which names hosts, never headers).
 */
static cog_transport request(cog_adapter *a, const char *method,
			     const char *url, const char *body, int async,
			     double timeout, long *status, char *why,
			     size_t whysz)
{
	const char *list[] = { "Accept: application/json",
			       "Content-Type: application/json", "Expect:",
			       "User-Agent: " COG_USER_AGENT,
			       async ? "Prefer: respond-async" : NULL, NULL };
	dr_http_request req;
	dr_http_response resp;
	dr_error err;
	dr_status st;

	*status = 0;
	why[0] = '\0';
	a->host->mem_free(a->body);
	a->body = NULL;
	a->len = 0;
	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = url;
	req.headers = list;
	req.body = body;
	req.body_len = body ? strlen(body) : 0;
	req.timeout = timeout;
	req.connect_timeout = a->connect_timeout;
	req.max_response = COG_MAX_RESPONSE;
	memset(&err, 0, sizeof(err));
	st = a->host->http_request(a->inst, &req, &resp, &err);
	if (st == DR_OK) {
		*status = resp.status;
		a->body = resp.body;
		a->len = resp.body_len;
		return COG_OK;
	}
	if (st == DR_ERR_TOO_LARGE)
		snprintf(why, whysz, "the answer is larger than %u KiB",
			 COG_MAX_RESPONSE >> 10);
	else
		snprintf(why, whysz, "%s", err.message);
	if (!resp.sent)
		return COG_NOT_SENT;
	return st == DR_ERR_TIMEOUT ? COG_TIMEOUT : COG_FAILED;
}

/* The container's `detail` (FastAPI's error member) or the body's start,
 * printable ASCII only, cut to COG_DETAIL_MAX. */
static void answer_detail(const cog_adapter *a, char *buf, size_t bufsz)
{
	json_object *doc = json_tokener_parse(a->body ? a->body : "");
	json_object *v = NULL;
	const char *s = a->body ? a->body : "";
	size_t i = 0;

	if (doc && json_object_is_type(doc, json_type_object) &&
	    json_object_object_get_ex(doc, "detail", &v))
		s = json_object_get_string(v);
	for (; s && s[i] && i + 1 < bufsz && i < COG_DETAIL_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[i] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
	}
	buf[i] = '\0';
	json_object_put(doc);
}

/* ------------------------------------------------------------------------
 * Instances
 */

static void cog_destroy(void *state)
{
	cog_adapter *a = state;

	if (!a)
		return;
	free(a->body);
	free(a->url);
	free(a);
}

static dr_status cog_create(const dr_host *host, const dr_instance *inst,
			    void **state, dr_error *err)
{
	const char *url = host->config_get(inst, "url");
	cog_adapter *a;
	size_t n;

	*state = NULL;
	a = host->mem_calloc(1, sizeof(*a));
	a->host = host;
	a->inst = inst;
	a->token = host->config_get(inst, "webhook_token");
	a->timeout = host->config_seconds(inst, "timeout");
	a->connect_timeout = host->config_seconds(inst, "connect_timeout");
	a->health_timeout = host->config_seconds(inst, "health_timeout");
	a->busy_retry = host->config_seconds(inst, "busy_retry");
	if (!url || !a->token || strlen(a->token) < 16) {
		cog_destroy(a);
		return host->fail(err, DR_ERR_CONFIG, "invalid_config",
				  "url and a webhook_token of at least 16 "
				  "characters are required");
	}
	a->url = host->mem_strdup(url);
	n = strlen(a->url);
	while (n > 0 && a->url[n - 1] == '/')
		a->url[--n] = '\0';
	*state = a;
	return DR_OK;
}

/* ------------------------------------------------------------------------
 * Submitting
 */

/* A prediction id we put in a URL path: [A-Za-z0-9_-], 1..COG_ID_MAX. */
static int id_ok(const char *id)
{
	size_t n = 0;

	if (!id)
		return 0;
	for (; id[n]; n++) {
		char c = id[n];

		if (n >= COG_ID_MAX ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
	}
	return n > 0;
}

/* The job's input as a JSON object (the caller puts it), or NULL with
 * err filled. */
static json_object *job_input(const cog_adapter *a, const dr_job_view *job,
			      dr_error *err)
{
	json_object *in = json_tokener_parse(job->input_json
						     ? job->input_json
						     : "");

	if (!in || !json_object_is_type(in, json_type_object)) {
		json_object_put(in);
		a->host->fail(err, DR_ERR_INVALID, "invalid_input",
			      "input: a Cog prediction takes a JSON object");
		return NULL;
	}
	return in;
}

static dr_status cog_validate(void *state, const dr_job_view *job,
			      dr_error *err)
{
	cog_adapter *a = state;
	json_object *in = job_input(a, job, err);

	if (!in)
		return DR_ERR_INVALID;
	json_object_put(in);
	return DR_OK;
}

/* GET /health-check: DR_OK when a prediction may be sent now. `retry`
 * is set when an earlier attempt of the job may be the busy one. */
static dr_status health(cog_adapter *a, int retry, dr_error *err)
{
	char url[2048], why[sizeof(((dr_error *)0)->message) + 64];
	json_object *doc, *v = NULL;
	const char *s = NULL;
	dr_status st;
	long code;

	snprintf(url, sizeof(url), "%s/health-check", a->url);
	if (request(a, "GET", url, NULL, 0, a->health_timeout, &code, why,
		    sizeof(why)) != COG_OK) {
		a->host->fail(err, DR_ERR_UNAVAILABLE, "cog_unreachable",
			      "the Cog container did not answer its health "
			      "check: %s",
			      why);
		err->retryable = 1;
		return DR_ERR_UNAVAILABLE;
	}
	doc = json_tokener_parse(a->body);
	if (code == 200 && doc && json_object_is_type(doc, json_type_object) &&
	    json_object_object_get_ex(doc, "status", &v) &&
	    json_object_is_type(v, json_type_string))
		s = json_object_get_string(v);
	if (s && (strcmp(s, "READY") == 0 ||
		  (retry && strcmp(s, "BUSY") == 0))) {
		st = DR_OK;
	} else if (s && (strcmp(s, "BUSY") == 0 ||
			 strcmp(s, "STARTING") == 0)) {
		st = a->host->fail(err, DR_ERR_RATE_LIMITED,
				   s[0] == 'B' ? "cog_busy" : "cog_starting",
				   "the Cog container is %s", s);
		err->retryable = 1;
		err->retry_after = a->busy_retry;
	} else {
		char shown[32];

		snprintf(shown, sizeof(shown), "%s", s ? s : "no status");
		for (char *c = shown; *c; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
				*c = '?';
		st = a->host->fail(err, DR_ERR_UNAVAILABLE, "cog_unhealthy",
				   "the Cog container is not ready (HTTP %ld, "
				   "%s)",
				   code, shown);
		err->retryable = 1;
	}
	json_object_put(doc);
	return st;
}

/* The PUT body: {"id", "input", "webhook", "webhook_events_filter"}. */
static char *put_body(const cog_adapter *a, const dr_job_view *job,
		      json_object *input)
{
	json_object *doc = json_object_new_object();
	json_object *events = json_object_new_array();
	const char *s;
	char *copy = NULL;

	if (!doc || !events)
		goto out;
	json_object_object_add(doc, "id", json_object_new_string(job->id));
	json_object_object_add(doc, "input", json_object_get(input));
	if (job->webhook_url)
		json_object_object_add(doc, "webhook",
				       json_object_new_string(job->webhook_url));
	json_object_array_add(events, json_object_new_string("start"));
	json_object_array_add(events, json_object_new_string("completed"));
	json_object_object_add(doc, "webhook_events_filter", events);
	events = NULL;
	s = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
							JSON_C_TO_STRING_NOSLASHESCAPE);
	if (s)
		copy = a->host->mem_strdup(s);
out:
	json_object_put(events);
	json_object_put(doc);
	return copy;
}

/*
 * PUT /predictions/{job id}: create it, or attach to the running one with
 * that id. On DR_OK `out` is {id = job id, STARTING}.
 */
static dr_status put_prediction(cog_adapter *a, const dr_job_view *job,
				dr_prediction *out, dr_error *err)
{
	char url[2048], why[sizeof(((dr_error *)0)->message) + 64];
	char detail[COG_DETAIL_MAX + 1];
	json_object *in;
	cog_transport t;
	char *body;
	long code;

	if (!id_ok(job->id))
		return a->host->fail(err, DR_ERR_INVALID, "invalid_input",
				     "the job id cannot name a Cog prediction");
	in = job_input(a, job, err);
	if (!in)
		return DR_ERR_INVALID;
	body = put_body(a, job, in);
	json_object_put(in);
	if (!body)
		return nomem(a, err);
	snprintf(url, sizeof(url), "%s/predictions/%s", a->url, job->id);
	t = request(a, "PUT", url, body, 1, a->timeout, &code, why,
		    sizeof(why));
	free(body);
	switch (t) {
	case COG_OK:
		break;
	case COG_NOT_SENT:
		a->host->fail(err, DR_ERR_NETWORK, "cog_unreachable",
			      "cannot reach the Cog container: %s", why);
		err->retryable = 1;
		return DR_ERR_NETWORK;
	case COG_TIMEOUT:
		return a->host->fail(err, DR_ERR_TIMEOUT, "provider_timeout",
				     "the Cog container did not answer the "
				     "create: %s",
				     why);
	case COG_FAILED:
		return a->host->fail(err, DR_ERR_NETWORK,
				     "provider_connection_lost",
				     "the create's answer was lost: %s", why);
	}
	answer_detail(a, detail, sizeof(detail));
	if (code == 409) {
		a->host->fail(err, DR_ERR_RATE_LIMITED, "cog_busy",
			      "the Cog container is busy with another "
			      "prediction");
		err->retryable = 1;
		err->retry_after = a->busy_retry;
		return DR_ERR_RATE_LIMITED;
	}
	if (code == 422 || code == 400)
		return a->host->fail(err, DR_ERR_INVALID,
				     "provider_rejected_input",
				     "the model rejected the input: %s", detail);
	if (code != 200 && code != 201 && code != 202)
		return a->host->fail(err, DR_ERR_PROVIDER, "provider_error",
				     "the Cog container answered HTTP %ld: %s",
				     code, detail);
	memset(out, 0, sizeof(*out));
	out->progress = -1;
	out->predict_time = -1;
	out->status = DR_PRED_STARTING;
	out->id = a->host->mem_strdup(job->id);
	return DR_OK;
}

static dr_status cog_submit(void *state, const dr_job_view *job,
			    dr_prediction *out, dr_error *err)
{
	cog_adapter *a = state;
	dr_status st = health(a, job->submitted_at > 0, err);

	if (st != DR_OK)
		return st;
	return put_prediction(a, job, out, err);
}

/* After a create whose answer was lost: PUT the same id again, which
 * attaches to the prediction if it runs; 409 means it does not. */
static dr_status cog_reconcile(void *state, const dr_job_view *job,
			       dr_prediction *out, dr_error *err)
{
	cog_adapter *a = state;
	dr_status st = put_prediction(a, job, out, err);

	if (st == DR_ERR_RATE_LIMITED)
		return a->host->fail(err, DR_ERR_NOT_FOUND, "not_running",
				     "the Cog container runs another "
				     "prediction");
	return st;
}

static dr_status cog_cancel(void *state, const dr_job_view *job,
			    dr_error *err)
{
	cog_adapter *a = state;
	const char *id = job->prediction_id ? job->prediction_id : job->id;
	char url[2048], why[sizeof(((dr_error *)0)->message) + 64];
	cog_transport t;
	long code;

	if (!id_ok(id))
		return a->host->fail(err, DR_ERR_INVALID, "invalid_input",
				     "no prediction id to cancel");
	snprintf(url, sizeof(url), "%s/predictions/%s/cancel", a->url, id);
	t = request(a, "POST", url, NULL, 0, a->timeout, &code, why,
		    sizeof(why));
	if (t != COG_OK) {
		a->host->fail(err, DR_ERR_NETWORK, "cog_unreachable",
			      "cannot cancel at the Cog container: %s", why);
		err->retryable = 1;
		return DR_ERR_NETWORK;
	}
	if (code == 200 || code == 202 || code == 404)
		return DR_OK;
	a->host->fail(err, DR_ERR_PROVIDER, "provider_error",
		      "the Cog container answered the cancel with HTTP %ld",
		      code);
	err->retryable = code >= 500;
	return DR_ERR_PROVIDER;
}

/* ------------------------------------------------------------------------
 * Webhooks: the Cog prediction document -> dr_prediction
 */

typedef struct out_list {
	dr_output_ref *v;
	size_t n, cap, bytes;
} out_list;

static int is_url(const char *s)
{
	if (strncasecmp(s, "https://", 8) != 0 &&
	    strncasecmp(s, "http://", 7) != 0)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static int is_data_uri(const char *s)
{
	return strncasecmp(s, "data:", 5) == 0 && strchr(s, ',') != NULL;
}

static dr_status too_large(const cog_adapter *a, dr_error *err)
{
	return a->host->fail(err, DR_ERR_TOO_LARGE, "output_too_large",
			     "the prediction has more than %d outputs or more "
			     "than %u MiB of them",
			     COG_MAX_OUTPUTS, COG_MAX_OUTPUT_SIZE >> 20);
}

/* Append a copy of s[0..len) as an output of `kind`. */
static dr_status out_add(const cog_adapter *a, out_list *l,
			 dr_output_kind kind, const char *s, size_t len,
			 dr_error *err)
{
	char *copy;

	if (l->n >= COG_MAX_OUTPUTS || len > COG_MAX_OUTPUT_SIZE - l->bytes)
		return too_large(a, err);
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		l->v = a->host->mem_realloc(l->v, cap * sizeof(*l->v));
		l->cap = cap;
	}
	copy = a->host->mem_alloc(len + 1);
	memcpy(copy, s, len);
	copy[len] = '\0';
	l->v[l->n].kind = kind;
	l->v[l->n].value = copy;
	l->n++;
	l->bytes += len;
	return DR_OK;
}

/* Every URL and data: URI string in `o`, in document order. */
static dr_status walk(const cog_adapter *a, out_list *l, json_object *o,
		      dr_error *err)
{
	dr_status st = DR_OK;

	switch (json_object_get_type(o)) {
	case json_type_string: {
		const char *s = json_object_get_string(o);
		size_t len = (size_t)json_object_get_string_len(o);

		if (is_url(s))
			return out_add(a, l, DR_OUTPUT_URL, s, len, err);
		if (is_data_uri(s))
			return out_add(a, l, DR_OUTPUT_DATA, s, len, err);
		return DR_OK;
	}
	case json_type_array:
		for (size_t i = 0; st == DR_OK && i < json_object_array_length(o);
		     i++)
			st = walk(a, l, json_object_array_get_idx(o, i), err);
		return st;
	case json_type_object: {
		json_object_object_foreach(o, key, val)
		{
			(void)key;
			st = walk(a, l, val, err);
			if (st != DR_OK)
				return st;
		}
		return DR_OK;
	}
	default:
		return DR_OK;
	}
}

/* Outputs of `output`: files found anywhere, else the value as text (a
 * string as is, a list of strings joined, anything else as JSON). */
static dr_status collect_outputs(const cog_adapter *a, json_object *output,
				 out_list *l, dr_error *err)
{
	dr_status st;
	size_t n;

	if (!output || json_object_is_type(output, json_type_null))
		return DR_OK;
	st = walk(a, l, output, err);
	if (st != DR_OK || l->n > 0)
		return st;
	if (json_object_is_type(output, json_type_string)) {
		n = (size_t)json_object_get_string_len(output);
		return n ? out_add(a, l, DR_OUTPUT_TEXT,
				   json_object_get_string(output), n, err)
			 : DR_OK;
	}
	if (json_object_is_type(output, json_type_array)) {
		size_t total = 0, at = 0, count = json_object_array_length(output);
		int strings = count > 0;
		char *text;

		for (size_t i = 0; strings && i < count; i++) {
			json_object *e = json_object_array_get_idx(output, i);

			strings = json_object_is_type(e, json_type_string);
			if (strings)
				total += (size_t)json_object_get_string_len(e);
			if (total > COG_MAX_OUTPUT_SIZE)
				return too_large(a, err);
		}
		if (strings) {
			text = a->host->mem_alloc(total + 1);
			for (size_t i = 0; i < count; i++) {
				json_object *e =
					json_object_array_get_idx(output, i);
				size_t len =
					(size_t)json_object_get_string_len(e);

				memcpy(text + at, json_object_get_string(e),
				       len);
				at += len;
			}
			text[at] = '\0';
			st = at ? out_add(a, l, DR_OUTPUT_TEXT, text, at, err)
				: DR_OK;
			free(text);
			return st;
		}
	}
	{
		const char *json = json_object_to_json_string_ext(
			output, JSON_C_TO_STRING_PLAIN |
					JSON_C_TO_STRING_NOSLASHESCAPE);

		if (!json)
			return nomem(a, err);
		n = strlen(json);
		return n ? out_add(a, l, DR_OUTPUT_TEXT, json, n, err) : DR_OK;
	}
}

/* The last "<n>%|" of a tqdm bar in the logs, as 0..1; -1 for none. */
static double progress_from_logs(const char *logs)
{
	const char *p = logs, *last = NULL;
	double v;

	while ((p = strstr(p, "%|")) != NULL) {
		last = p;
		p += 2;
	}
	if (!last)
		return -1;
	p = last;
	while (p > logs && ((p[-1] >= '0' && p[-1] <= '9') || p[-1] == '.'))
		p--;
	if (p == last)
		return -1;
	v = strtod(p, NULL);
	return v >= 0 && v <= 100 ? v / 100 : -1;
}

static const char *member(json_object *doc, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(doc, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static dr_prediction_status map_status(const char *s)
{
	static const struct {
		const char *name;
		dr_prediction_status status;
	} map[] = { { "starting", DR_PRED_STARTING },
		    { "processing", DR_PRED_PROCESSING },
		    { "succeeded", DR_PRED_SUCCEEDED },
		    { "failed", DR_PRED_FAILED },
		    { "canceled", DR_PRED_CANCELED } };

	for (size_t i = 0; s && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(s, map[i].name) == 0)
			return map[i].status;
	return DR_PRED_UNKNOWN;
}

static void prediction_clear(dr_prediction *p)
{
	free(p->id);
	free(p->version);
	free(p->error);
	free(p->raw_json);
	free(p->completed_at);
	for (size_t i = 0; i < p->n_outputs; i++)
		free(p->outputs[i].value);
	free(p->outputs);
	memset(p, 0, sizeof(*p));
}

/* A malloc'd copy of at most `max` bytes of s, or NULL for none. */
static char *copy_cut(const cog_adapter *a, const char *s, size_t max)
{
	if (!s || !s[0])
		return NULL;
	return a->host->mem_strndup(s, max);
}

/* Parse a Cog prediction document into `out` (cleared on failure). */
static dr_status normalise(const cog_adapter *a, json_object *doc,
			   dr_prediction *out, dr_error *err)
{
	out_list outs = { 0 };
	json_object *v = NULL, *metrics;
	const char *s;
	dr_status st;

	memset(out, 0, sizeof(*out));
	out->progress = -1;
	out->predict_time = -1;
	if (!json_object_is_type(doc, json_type_object) ||
	    !id_ok(member(doc, "id")))
		return a->host->fail(err, DR_ERR_PROVIDER, "bad_prediction",
				     "the delivery is not a Cog prediction "
				     "with an id");
	out->status = map_status(member(doc, "status"));
	json_object_object_get_ex(doc, "output", &v);
	if (out->status == DR_PRED_SUCCEEDED) {
		st = collect_outputs(a, v, &outs, err);
		if (st != DR_OK)
			goto fail;
		out->progress = 1.0;
	} else if ((s = member(doc, "logs")) != NULL) {
		out->progress = progress_from_logs(s);
	}
	if (json_object_object_get_ex(doc, "metrics", &metrics) &&
	    json_object_object_get_ex(metrics, "predict_time", &v) &&
	    (json_object_is_type(v, json_type_double) ||
	     json_object_is_type(v, json_type_int)) &&
	    json_object_get_double(v) >= 0)
		out->predict_time = json_object_get_double(v);
	out->id = copy_cut(a, member(doc, "id"), COG_ID_MAX);
	out->version = copy_cut(a, member(doc, "version"), 128);
	out->completed_at = copy_cut(a, member(doc, "completed_at"), 64);
	out->error = copy_cut(a, member(doc, "error"), COG_MAX_ERROR_TEXT);
	s = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
							JSON_C_TO_STRING_NOSLASHESCAPE);
	out->raw_json = copy_cut(a, s, (size_t)-1);
	if (!s) {
		st = nomem(a, err);
		goto fail;
	}
	out->outputs = outs.v;
	out->n_outputs = outs.n;
	return DR_OK;
fail:
	for (size_t i = 0; i < outs.n; i++)
		free(outs.v[i].value);
	free(outs.v);
	prediction_clear(out);
	out->progress = -1;
	out->predict_time = -1;
	return st;
}

/* 1 when a and b are equal, in time that depends on their lengths only. */
static int same_secret(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = (unsigned char)(la != lb);

	for (size_t i = 0; i < la; i++)
		diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
	return diff == 0;
}

static dr_status cog_webhook(void *state, const dr_webhook_request *req,
			     dr_prediction *out, char **delivery_id,
			     dr_error *err)
{
	cog_adapter *a = state;
	const char *auth = a->host->webhook_header(req, "authorization");
	const char *text;
	size_t len;
	json_tokener *tok;
	json_object *doc;
	dr_status st;

	*delivery_id = NULL;
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 ||
	    !same_secret(auth + 7, a->token))
		return a->host->fail(err, DR_ERR_AUTH, "bad_token",
				     "%s bearer token",
				     auth ? "wrong" : "no");
	if (DR_HOST_HAS(a->host, webhook_document)) {
		text = a->host->webhook_document(req, &len);
	} else {
		text = (const char *)req->body;
		len = req->body_len;
	}
	tok = json_tokener_new_ex(COG_JSON_DEPTH);
	if (!tok)
		return nomem(a, err);
	doc = len > 0 && len < (size_t)INT32_MAX
		      ? json_tokener_parse_ex(tok, text, (int)len)
		      : NULL;
	if (!doc || json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(doc);
		json_tokener_free(tok);
		return a->host->fail(err, DR_ERR_PROVIDER, "bad_prediction",
				     "the delivery is not a JSON document");
	}
	json_tokener_free(tok);
	st = normalise(a, doc, out, err);
	json_object_put(doc);
	return st;
}

/* ------------------------------------------------------------------------
 * The descriptor
 */

static const dr_adapter_ops cog_ops = {
	.size = sizeof(dr_adapter_ops),
	.validate = cog_validate,
	.submit = cog_submit,
	.get = NULL, /* Cog cannot be asked: webhooks only */
	.cancel = cog_cancel,
	.webhook = cog_webhook,
	.download_hosts = NULL,
	.reconcile = cog_reconcile,
};

static const dr_plugin cog_plugin = {
	.abi_version = DR_PLUGIN_ABI_VERSION,
	.size = sizeof(dr_plugin),
	.name = "cog",
	.kind = DR_PLUGIN_ADAPTER,
	.version = "1.0",
	.description = "self-hosted Cog model containers (webhooks only)",
	.config_keys = cog_keys,
	.create = cog_create,
	.destroy = cog_destroy,
	.adapter = &cog_ops,
};

DR_PLUGIN_DEFINE(cog_plugin)
