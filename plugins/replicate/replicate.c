/*
 * replicate.c - the `replicate` adapter: runs predictions on Replicate's
 * HTTP API (https://replicate.com/docs/reference/http).
 *
 * What it owns: the plugin descriptor and configuration, the model
 * reference forms, and the adapter operations. The HTTP client is in
 * client.c, the reading of prediction documents in normalise.c.
 *
 * Configuration ([adapter "replicate"]; see replicate_keys below):
 *   token                    API token (env REPLICATE_API_TOKEN); not
 *                            needed to load (so `config check` works
 *                            without it), submit fails "missing_token"
 *   api_base                 https://api.replicate.com/v1 (env
 *                            REPLICATE_API_BASE)
 *   webhook_secret           whsec_... (env REPLICATE_WEBHOOK_SECRET);
 *                            when unset, the worker fetches the
 *                            account's and keeps it (maintain, below)
 *   webhook_secret_previous  also accepted, for a rotation
 *   cancel_after             30m, sent as "Cancel-After: <n>s" (>= 5s)
 *   prefer_wait              0 (off); 1..60s sends "Prefer: wait=<n>"
 *   connect_timeout, timeout 10s, 60s (a create adds prefer_wait)
 *   webhook_events           "start, completed" (start output logs
 *                            completed)
 *   deployment               false; true sends owner/name to deployments
 *
 * Model references (validate, submit):
 *   owner/name           POST {api_base}/models/{owner}/{name}/predictions,
 *                        or with `deployment = true`
 *                        POST {api_base}/deployments/{owner}/{name}/predictions
 *   owner/name:<64 hex>  POST {api_base}/predictions {"version": "<64 hex>"}
 *   <64 hex>             POST {api_base}/predictions {"version": "<64 hex>"}
 * For owner/name:<version> only the version id is sent: the id names the
 * version exactly by itself, and it is the original, always-accepted form
 * of `version` (the owner/name spellings are later additions a compatible
 * server may lack). The owner/name part is checked for syntax only.
 *
 * Trainings (dr_job_view.kind DR_JOB_TRAINING; the ops set `trainings`):
 * the trainer must be owner/name:<version> and the destination owner/name
 * (validate); submit POSTs {api_base}/models/{owner}/{name}/versions/
 * {version}/trainings with {"destination", "input", "webhook",
 * "webhook_events_filter"} and neither Cancel-After nor Prefer: wait (the
 * core holds a training to the instance's training_deadline); get, cancel
 * and reconcile use {api_base}/trainings instead of /predictions. A 4xx
 * on create whose detail names the destination is destination_not_found;
 * another 404 is unknown_model ("trainer: ..."). A training document is
 * read by the same normaliser: output.version becomes trained_version,
 * output.weights its file output.
 *
 * Creating is not idempotent at Replicate (there is no idempotency key),
 * so submit never repeats a create. It reports DR_ERR_NETWORK with
 * retryable = 1 only when the request surely never left (client.c: the
 * host's HTTP service failed before writing it: resolving, connecting,
 * the TLS handshake), DR_ERR_RATE_LIMITED on 429 with the wait the answer
 * asks for (the core schedules the job later; the plugin never sleeps on
 * a create), and every other failure after sending (5xx, timeouts, lost
 * connections, unreadable answers) as not retryable: the prediction may exist,
 * and the core reconciles. Reads (get, cancel, the list, the webhook secret)
 * are safe to repeat and are retried here up to three times on 5xx and
 * connection failures, after 0.2, 0.5 and 1 s (not on timeouts, which
 * already took `timeout`; they come back retryable). A 429 is never
 * retried here: DR_ERR_RATE_LIMITED with retry_after goes to the core.
 *
 * Error codes: missing_token, invalid_config, invalid_input (validate),
 * unknown_model (404 on create), provider_rejected_input (400/422),
 * provider_auth (401/403), rate_limited (429), provider_error (other
 * answers), provider_unreachable (nothing sent), provider_timeout,
 * provider_connection_lost, provider_response_too_large, bad_prediction,
 * output_too_large, prediction_not_found, webhook_secret_unavailable.
 *
 * Reconcile (after a crash between sending a create and recording its
 * answer) lists the account's recent predictions, newest first, up to
 * five pages back to 60 s before the first submit attempt, and takes
 *   1. a prediction whose `webhook` carries the job id (the core puts
 *      ?job=<id> in every webhook URL): certain;
 *   2. else one without a `webhook` field in the list whose `input` equals
 *      the job's and whose model ("owner/name") or version matches (for a
 *      deployment the model is the deployment's, unknown here, so the
 *      input alone decides), the one created closest to the submit time.
 * What remains possible: if the create's answer was lost and the list
 * does not show the prediction (it is older than five pages of newer
 * predictions, or the list omits `webhook` and the input was changed by
 * the provider), reconcile answers DR_ERR_NOT_FOUND and the core submits
 * again: a duplicate prediction runs and is billed. Its webhooks still
 * carry the job id, so the core can tell it apart. And when the list omits
 * `webhook`, two jobs with identical input and model submitted within the
 * same minute may both claim the same prediction (rule 2).
 *
 * Webhooks are verified with the host's Standard Webhooks verifier against
 * the configured secret and `webhook_secret_previous`, for rotation. When
 * no secret is configured, the account's default secret is used: the
 * worker fetches it from GET {api_base}/webhooks/default/secret in
 * maintain() (at start, then whenever the stored copy is
 * REP_SECRET_REFETCH seconds old, which picks up a rotation) and keeps it
 * in the host's key-value store under "webhook_secret"; the webhook
 * handler, in the FastCGI app, only reads it from there (cached for
 * REP_SECRET_CACHE seconds) and never calls Replicate: a provider that is
 * slow or down cannot hold a webhook's answer, and no delivery, forged or
 * not, makes the app call the provider. Until the worker has stored a
 * secret, a delivery cannot be verified and is answered
 * DR_ERR_UNAVAILABLE (503: the provider delivers it again).
 *
 * Secrets (token, webhook secrets) never appear in logs or error
 * messages: errors quote the provider's `detail` (cut, with the token
 * redacted should it ever be echoed) and the host's transport message,
 * which names hosts, never headers.
 *
 * The plugin uses only the host table: no core symbol.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replicate.h"

/* The darkroom version for the User-Agent. The Makefile passes
 * DR_VERSION to the core only; until it does for plugins too, this
 * fallback must follow its VERSION. */
#ifndef DR_VERSION
#define DR_VERSION "0.1.0"
#endif
#define REP_USER_AGENT "darkroom/" DR_VERSION " (+replicate plugin)"

#define REP_DEFAULT_API_BASE "https://api.replicate.com/v1"
/* Webhook timestamps may be this far off our clock. */
#define REP_WEBHOOK_TOLERANCE 300.0
/* Age of the stored default webhook secret at which maintain() fetches
 * it again (and so picks up a rotation). */
#define REP_SECRET_REFETCH 600.0
/* Seconds the webhook handler trusts its copy of the stored secret. */
#define REP_SECRET_CACHE 10.0
/* The key-value store key of the fetched secret. */
#define REP_KV_SECRET "webhook_secret"
/* Timeout of the request fetching the webhook secret (seconds). */
#define REP_SECRET_TIMEOUT 10.0
/* Longest webhook secret accepted from the API. */
#define REP_SECRET_MAX 512
/* Reconcile: pages of the list, and how far before the submit to look. */
#define REP_RECONCILE_PAGES 5
#define REP_RECONCILE_SLACK 60.0
/* Cancel-After minimum, Prefer: wait maximum (seconds). */
#define REP_CANCEL_AFTER_MIN 5.0
#define REP_PREFER_WAIT_MAX  60

/* Waits before the retries of a read. */
static const double read_backoff[] = { 0.2, 0.5, 1.0 };
#define REP_READ_RETRIES (sizeof(read_backoff) / sizeof(read_backoff[0]))

/* webhook_events_filter values, in the order they are sent. */
static const char *const event_names[] = { "start", "output", "logs",
					   "completed" };
#define REP_N_EVENTS (sizeof(event_names) / sizeof(event_names[0]))

typedef enum rep_op { OP_CREATE, OP_GET, OP_CANCEL, OP_LIST, OP_SECRET } rep_op;

typedef struct rep_adapter {
	const dr_host *host;
	const dr_instance *inst;
	rep_client *client;
	const char *token;	    /* borrowed from the config, or NULL */
	char *api_base;		    /* without a trailing '/' */
	size_t origin_len;	    /* of "scheme://authority" in api_base */
	const char *webhook_secret; /* configured, or NULL */
	const char *webhook_secret_previous;
	char *fetched_secret; /* the account's default, as last read */
	double fetched_at;    /* when it was read from the store */
	double cancel_after; /* seconds; 0: no Cancel-After */
	int prefer_wait;     /* seconds; 0: no Prefer: wait */
	double timeout;	     /* seconds, without prefer_wait */
	int deployment;
	unsigned events; /* bit i: event_names[i] */
} rep_adapter;

static const dr_config_key replicate_keys[] = {
	{ "token", DR_CFG_STRING, NULL, "REPLICATE_API_TOKEN", DR_CFG_SECRET,
	  "API token (r8_...); needed to submit, not to load" },
	{ "api_base", DR_CFG_URL, REP_DEFAULT_API_BASE, "REPLICATE_API_BASE", 0,
	  "base URL of the API" },
	{ "webhook_secret", DR_CFG_STRING, NULL, "REPLICATE_WEBHOOK_SECRET",
	  DR_CFG_SECRET,
	  "webhook signing secret (whsec_...); fetched from the API when "
	  "unset" },
	{ "webhook_secret_previous", DR_CFG_STRING, NULL, NULL, DR_CFG_SECRET,
	  "the signing secret before a rotation, still accepted" },
	{ "cancel_after", DR_CFG_DURATION, "30m", NULL, 0,
	  "deadline sent as Cancel-After (at least 5s; 0: none)" },
	{ "prefer_wait", DR_CFG_DURATION, "0", NULL, 0,
	  "hold the create up to this long for a result (Prefer: wait, "
	  "1..60s; 0: off)" },
	{ "connect_timeout", DR_CFG_DURATION, "10s", NULL, 0,
	  "connection timeout of API calls" },
	{ "timeout", DR_CFG_DURATION, "60s", NULL, 0,
	  "timeout of an API call (a create adds prefer_wait)" },
	{ "webhook_events", DR_CFG_LIST, "start, completed", NULL, 0,
	  "webhook events to receive: start, output, logs, completed" },
	{ "deployment", DR_CFG_BOOL, "false", NULL, 0,
	  "owner/name models are deployments (POST /deployments/...)" },
	{ NULL, 0, NULL, NULL, 0, NULL },
};

static const char *const replicate_hosts[] = { "replicate.delivery",
					       "*.replicate.delivery", NULL };

/* ------------------------------------------------------------------------
 * Small helpers
 */

/* A malloc'd printf result, or NULL when it cannot be formatted. */
static char *str_printf(const rep_adapter *a, const char *fmt, ...)
	DR_PRINTF(2, 3);
static char *str_printf(const rep_adapter *a, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *s;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	s = a->host->mem_alloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

static dr_status nomem(const rep_adapter *a, dr_error *err)
{
	return a->host->fail(err, DR_ERR_NOMEM, "out_of_memory",
			     "out of memory");
}

static void sleep_seconds(double s)
{
	struct timespec ts;

	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Seconds rounded up, for headers that take whole seconds (no libm). */
static int whole_seconds(double s)
{
	int n;

	if (s <= 0)
		return 0;
	if (s > 1e8)
		return 100000000;
	n = (int)s;
	return (double)n < s ? n + 1 : n;
}

static void free_secret(char *s)
{
	if (!s)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

/* 1 when c may appear in a model owner or name. */
static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

static int is_version(const char *s, size_t n)
{
	if (n != REP_VERSION_LEN)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* 1 when s is a prediction id that can go into a URL path. */
static int id_ok(const char *s)
{
	size_t n = 0;

	if (!s || s[0] == '.')
		return 0;
	for (; s[n]; n++)
		if (!name_char(s[n]) || n >= REP_ID_MAX)
			return 0;
	return n > 0;
}

/* ------------------------------------------------------------------------
 * Model references
 */

static int copy_name(const char *s, size_t n, char *dst)
{
	if (n == 0 || n > REP_NAME_MAX || s[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return 0;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return 1;
}

int rep_parse_model(const char *ref, rep_model *m, char *why, size_t whysz)
{
	const char *slash, *colon, *name;
	size_t len;

	memset(m, 0, sizeof(*m));
	why[0] = '\0';
	if (!ref || !ref[0]) {
		snprintf(why, whysz, "model: must not be empty");
		return 0;
	}
	len = strlen(ref);
	slash = strchr(ref, '/');
	if (!slash) {
		if (is_version(ref, len)) {
			m->kind = REP_MODEL_VERSION;
			memcpy(m->version, ref, len + 1);
			return 1;
		}
		snprintf(why, whysz,
			 "model: must be owner/name, owner/name:<version id> "
			 "or a version id of 64 lowercase hex digits");
		return 0;
	}
	name = slash + 1;
	colon = strchr(name, ':');
	if (!copy_name(ref, (size_t)(slash - ref), m->owner) ||
	    !copy_name(name, colon ? (size_t)(colon - name) : strlen(name),
		       m->name)) {
		snprintf(why, whysz,
			 "model: owner and name must each be 1 to %d letters, "
			 "digits, '-', '_' or '.' (owner/name[:version])",
			 REP_NAME_MAX);
		return 0;
	}
	if (!colon) {
		m->kind = REP_MODEL_NAME;
		return 1;
	}
	if (!is_version(colon + 1, strlen(colon + 1))) {
		snprintf(why, whysz,
			 "model: the version after ':' must be 64 lowercase "
			 "hex digits");
		return 0;
	}
	m->kind = REP_MODEL_VERSIONED;
	memcpy(m->version, colon + 1, REP_VERSION_LEN + 1);
	return 1;
}

/* ------------------------------------------------------------------------
 * Instances
 */

static void replicate_destroy(void *state)
{
	rep_adapter *a = state;

	if (!a)
		return;
	rep_client_free(a->client);
	free(a->api_base);
	free_secret(a->fetched_secret);
	free(a);
}

/* Parse the webhook_events list into a bit set; 0 on a bad entry. */
static unsigned parse_events(const char *list, char *bad, size_t badsz)
{
	unsigned set = 0;
	const char *p = list;

	bad[0] = '\0';
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		size_t i;

		while (n > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			n--;
		}
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == 0) { /* "start,,completed": an empty entry */
			p = end ? end + 1 : NULL;
			continue;
		}
		for (i = 0; i < REP_N_EVENTS; i++)
			if (strlen(event_names[i]) == n &&
			    strncmp(event_names[i], p, n) == 0)
				break;
		if (i == REP_N_EVENTS) {
			snprintf(bad, badsz, "%.*s", (int)(n > 32 ? 32 : n), p);
			return 0;
		}
		set |= 1u << i;
		p = end ? end + 1 : NULL;
	}
	return set;
}

/* 1 when a token can go into a header: printable ASCII, no spaces. */
static int header_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

static dr_status replicate_create(const dr_host *host, const dr_instance *inst,
				  void **state, dr_error *err)
{
	rep_client_config cc;
	rep_adapter *a;
	const char *base, *events, *scheme_end;
	char bad[40];
	double pw;
	size_t n;
	dr_status st;

	*state = NULL;
	a = host->mem_calloc(1, sizeof(*a));
	a->host = host;
	a->inst = inst;

	a->token = host->config_get(inst, "token");
	if (a->token && !a->token[0])
		a->token = NULL;
	if (a->token && !header_safe(a->token)) {
		st = host->fail(err, DR_ERR_CONFIG, "invalid_config",
				"token: contains characters an API token "
				"cannot have (white space or control)");
		goto err_adapter;
	}
	a->webhook_secret = host->config_get(inst, "webhook_secret");
	if (a->webhook_secret && !a->webhook_secret[0])
		a->webhook_secret = NULL;
	a->webhook_secret_previous =
		host->config_get(inst, "webhook_secret_previous");
	if (a->webhook_secret_previous && !a->webhook_secret_previous[0])
		a->webhook_secret_previous = NULL;

	base = host->config_get(inst, "api_base");
	if (!base || !base[0])
		base = REP_DEFAULT_API_BASE;
	scheme_end = strstr(base, "://");
	if ((strncmp(base, "https://", 8) != 0 &&
	     strncmp(base, "http://", 7) != 0) ||
	    !scheme_end || !header_safe(base)) {
		st = host->fail(err, DR_ERR_CONFIG, "invalid_config",
				"api_base: must be an http or https URL");
		goto err_adapter;
	}
	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	a->api_base = host->mem_alloc(n + 1);
	memcpy(a->api_base, base, n);
	a->api_base[n] = '\0';
	a->origin_len = strcspn(a->api_base + (scheme_end - base) + 3, "/") +
			(size_t)(scheme_end - base) + 3;

	a->cancel_after = host->config_seconds(inst, "cancel_after");
	if (a->cancel_after != 0 && a->cancel_after < REP_CANCEL_AFTER_MIN) {
		st = host->fail(err, DR_ERR_CONFIG, "invalid_config",
				"cancel_after: must be 0 (none) or at least "
				"%gs",
				REP_CANCEL_AFTER_MIN);
		goto err_base;
	}
	pw = host->config_seconds(inst, "prefer_wait");
	if (pw < 0 || pw > REP_PREFER_WAIT_MAX) {
		st = host->fail(err, DR_ERR_CONFIG, "invalid_config",
				"prefer_wait: must be 0 (off) or 1s..%ds",
				REP_PREFER_WAIT_MAX);
		goto err_base;
	}
	a->prefer_wait = whole_seconds(pw);
	a->timeout = host->config_seconds(inst, "timeout");
	if (a->timeout <= 0) {
		st = host->fail(err, DR_ERR_CONFIG, "invalid_config",
				"timeout: must be more than 0s");
		goto err_base;
	}
	cc.connect_timeout = host->config_seconds(inst, "connect_timeout");
	if (cc.connect_timeout <= 0) {
		st = host->fail(err, DR_ERR_CONFIG, "invalid_config",
				"connect_timeout: must be more than 0s");
		goto err_base;
	}
	events = host->config_get(inst, "webhook_events");
	a->events = parse_events(events ? events : "", bad, sizeof(bad));
	if (!a->events) {
		st = host->fail(
			err, DR_ERR_CONFIG, "invalid_config",
			"webhook_events: '%s' is not one of start, "
			"output, logs, completed (or the list is empty)",
			bad);
		goto err_base;
	}
	if (!(a->events & (1u << (REP_N_EVENTS - 1))))
		host->log(inst, DR_LOG_WARNING,
			  "event=replicate.config webhook_events=no-completed "
			  "msg=\"results will only be seen by polling\"");
	a->deployment = host->config_bool(inst, "deployment");

	cc.host = host;
	cc.inst = inst;
	cc.user_agent = REP_USER_AGENT;
	a->client = rep_client_new(&cc);
	if (!a->token)
		host->log(inst, DR_LOG_NOTICE,
			  "event=replicate.config token=unset "
			  "msg=\"jobs fail with missing_token until "
			  "REPLICATE_API_TOKEN is set\"");
	*state = a;
	return DR_OK;

err_base:
	free(a->api_base);
err_adapter:
	free(a);
	return st;
}

/* ------------------------------------------------------------------------
 * Calling the API
 */

static dr_status missing_token(const rep_adapter *a, dr_error *err)
{
	return a->host->fail(err, DR_ERR_CONFIG, "missing_token",
			     "no Replicate API token: set REPLICATE_API_TOKEN "
			     "or `token` in the adapter's config section");
}

/*
 * One request with the token. DR_OK when an HTTP answer arrived (any
 * status; *resp is valid until the next request), else the transport
 * failure as an error, retryable when nothing was sent, or when `create`
 * is 0 (a read can always be repeated).
 */
static dr_status send_once(rep_adapter *a, const char *method, const char *url,
			   const char *const *extra, const char *body,
			   double timeout, int create, rep_response *resp,
			   dr_error *err)
{
	const char *headers[8];
	size_t nh = 0;
	char why[sizeof(((dr_error *)0)->message) + 64];
	char *auth;
	rep_transport t;
	dr_status st;

	if (!a->token)
		return missing_token(a, err);
	auth = str_printf(a, "Authorization: Bearer %s", a->token);
	if (!auth)
		return nomem(a, err);
	headers[nh++] = auth;
	for (; extra && *extra && nh < sizeof(headers) / sizeof(headers[0]) - 1;
	     extra++)
		headers[nh++] = *extra;
	headers[nh] = NULL;
	t = rep_client_request(a->client, method, url, headers, body, timeout,
			       resp, why, sizeof(why));
	free_secret(auth);

	switch (t) {
	case REP_TRANSPORT_OK:
		return DR_OK;
	case REP_TRANSPORT_NOT_SENT:
		st = a->host->fail(err, DR_ERR_NETWORK, "provider_unreachable",
				   "cannot reach Replicate (nothing was "
				   "sent): %s",
				   why);
		err->retryable = 1;
		return st;
	case REP_TRANSPORT_TIMEOUT:
		st = a->host->fail(err, DR_ERR_TIMEOUT, "provider_timeout",
				   "Replicate did not answer in time%s: %s",
				   create ? " (the prediction may exist)" : "",
				   why);
		err->retryable = !create;
		return st;
	case REP_TRANSPORT_FAILED:
		st = a->host->fail(err, DR_ERR_NETWORK,
				   "provider_connection_lost",
				   "the connection to Replicate failed%s: %s",
				   create ? " after sending (the prediction "
					    "may exist)"
					  : "",
				   why);
		err->retryable = !create;
		return st;
	case REP_TRANSPORT_TOO_LARGE:
		return a->host->fail(
			err, DR_ERR_TOO_LARGE, "provider_response_too_large",
			"Replicate's answer is too large: %s", why);
	}
	return a->host->fail(err, DR_ERR_INTERNAL, "internal",
			     "unknown transport result");
}

/*
 * A request that is safe to repeat: retried after read_backoff[] on
 * connection failures and 5xx answers. DR_OK with any final HTTP answer
 * (a 5xx one when every try got one), or the last transport error.
 */
static dr_status send_read(rep_adapter *a, const char *method, const char *url,
			   rep_op op, double timeout, rep_response *resp,
			   dr_error *err)
{
	static const char *const names[] = { "create", "get", "cancel", "list",
					     "secret" };
	dr_status st;

	for (size_t attempt = 0;; attempt++) {
		st = send_once(a, method, url, NULL, NULL, timeout, 0, resp,
			       err);
		if (st == DR_OK && resp->status < 500)
			return DR_OK;
		if (st != DR_OK && st != DR_ERR_NETWORK)
			return st; /* timeouts, too large, no token */
		if (attempt == REP_READ_RETRIES)
			return st;
		a->host->log(a->inst, DR_LOG_INFO,
			     "event=replicate.retry op=%s attempt=%zu "
			     "status=%ld wait=%.1f",
			     names[op], attempt + 1,
			     st == DR_OK ? resp->status : 0L,
			     read_backoff[attempt]);
		sleep_seconds(read_backoff[attempt]);
	}
}

/* The error for a non-2xx answer to `op`. */
static dr_status http_error(rep_adapter *a, const rep_response *resp, rep_op op,
			    dr_error *err)
{
	char detail[REP_DETAIL_MAX + 16];
	const char *sep;
	long code = resp->status;
	dr_status st;

	rep_error_detail(resp, a->token, detail, sizeof(detail));
	sep = detail[0] ? ": " : "";
	if (code == 429) {
		st = a->host->fail(err, DR_ERR_RATE_LIMITED, "rate_limited",
				   "Replicate is rate limiting requests (HTTP "
				   "429)%s%s",
				   sep, detail);
		err->retryable = 1;
		err->retry_after = rep_rate_limit_wait(resp);
		return st;
	}
	if (code == 401 || code == 403)
		return a->host->fail(err, DR_ERR_AUTH, "provider_auth",
				     "Replicate refused the API token (HTTP "
				     "%ld)%s%s",
				     code, sep, detail);
	if (code == 404 && op == OP_CREATE)
		return a->host->fail(err, DR_ERR_INVALID, "unknown_model",
				     "model: Replicate knows no such %s (HTTP "
				     "404)%s%s",
				     a->deployment ? "model, version or "
						     "deployment"
						   : "model or version",
				     sep, detail);
	if (code == 404 && (op == OP_GET || op == OP_CANCEL))
		return a->host->fail(err, DR_ERR_NOT_FOUND,
				     "prediction_not_found",
				     "Replicate knows no such prediction (HTTP "
				     "404)%s%s",
				     sep, detail);
	if ((code == 400 || code == 422) && op == OP_CREATE)
		return a->host->fail(err, DR_ERR_INVALID,
				     "provider_rejected_input",
				     "input: Replicate rejected the input "
				     "(HTTP %ld)%s%s",
				     code, sep, detail);
	st = a->host->fail(err, DR_ERR_PROVIDER, "provider_error",
			   "Replicate answered HTTP %ld%s%s%s", code,
			   code >= 300 && code < 400 ? " (redirects are not "
						       "followed)"
						     : "",
			   sep, detail);
	/* A failed read can be repeated; a failed create may have made a
	 * prediction, which the core finds by reconciling. */
	err->retryable = code >= 500 && op != OP_CREATE;
	return st;
}

/* Parse an answer carrying a prediction into `out`. */
static dr_status parse_prediction(rep_adapter *a, const char *body, size_t len,
				  dr_prediction *out, dr_error *err)
{
	json_object *doc = rep_parse_json(body, len);
	dr_status st;

	if (!doc) {
		memset(out, 0, sizeof(*out));
		return a->host->fail(err, DR_ERR_PROVIDER, "bad_prediction",
				     "the provider's answer is not a JSON "
				     "document");
	}
	st = rep_normalise(a->host, doc, out, err);
	json_object_put(doc);
	return st;
}

static const char *status_name(dr_prediction_status s)
{
	static const char *const names[] = { "unknown",	   "starting",
					     "processing", "succeeded",
					     "failed",	   "canceled",
					     "aborted" };

	return (size_t)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

/* The API collection a job's runs live in. */
static const char *collection(const dr_job_view *job)
{
	return job->kind == DR_JOB_TRAINING ? "trainings" : "predictions";
}

/* ------------------------------------------------------------------------
 * validate, submit
 */

/* The job's model and input, checked. `*input` is the caller's to put. */
static dr_status check_job(rep_adapter *a, const dr_job_view *job, rep_model *m,
			   json_object **input, dr_error *err)
{
	char why[256];
	const char *text = job->input_json;
	json_object *in;

	*input = NULL;
	if (!rep_parse_model(job->model, m, why, sizeof(why))) {
		if (job->kind == DR_JOB_TRAINING)
			return a->host->fail(err, DR_ERR_INVALID,
					     "invalid_input",
					     "trainer: must be owner/name:"
					     "<version id> (64 lowercase hex "
					     "digits)");
		return a->host->fail(err, DR_ERR_INVALID, "invalid_input", "%s",
				     why);
	}
	if (job->kind == DR_JOB_TRAINING) {
		rep_model d;

		if (m->kind != REP_MODEL_VERSIONED)
			return a->host->fail(
				err, DR_ERR_INVALID, "invalid_input",
				"trainer: must name its version "
				"(owner/name:<version id>): Replicate "
				"trains from one version of a trainer");
		if (!job->destination ||
		    !rep_parse_model(job->destination, &d, why, sizeof(why)) ||
		    d.kind != REP_MODEL_NAME)
			return a->host->fail(err, DR_ERR_INVALID,
					     "invalid_input",
					     "destination: must be owner/name "
					     "(without a version)");
	}
	in = text ? rep_parse_json(text, strlen(text)) : NULL;
	if (!json_object_is_type(in, json_type_object)) {
		json_object_put(in);
		return a->host->fail(err, DR_ERR_INVALID, "invalid_input",
				     "input: must be a JSON object");
	}
	*input = in;
	return DR_OK;
}

static dr_status replicate_validate(void *state, const dr_job_view *job,
				    dr_error *err)
{
	rep_model m;
	json_object *input;
	dr_status st = check_job(state, job, &m, &input, err);

	json_object_put(input);
	return st;
}

/* The create request's body; NULL when out of memory. The caller frees. */
static char *create_body(rep_adapter *a, const rep_model *m, json_object *input,
			 const char *webhook, const char *destination)
{
	json_object *body = json_object_new_object(), *filter;
	const char *text;
	char *copy = NULL;
	int bad = !body;

	if (!bad && destination) /* a training: the version is in the URL */
		bad |= json_object_object_add(
			body, "destination",
			json_object_new_string(destination));
	else if (!bad && m->kind != REP_MODEL_NAME)
		bad |= json_object_object_add(
			body, "version", json_object_new_string(m->version));
	if (!bad)
		bad |= json_object_object_add(body, "input",
					      json_object_get(input));
	if (!bad && webhook && webhook[0]) {
		bad |= json_object_object_add(body, "webhook",
					      json_object_new_string(webhook));
		filter = json_object_new_array();
		bad |= !filter;
		for (size_t i = 0; !bad && i < REP_N_EVENTS; i++)
			if (a->events & (1u << i))
				bad |= json_object_array_add(
					filter,
					json_object_new_string(event_names[i]));
		if (!bad)
			bad |= json_object_object_add(
				body, "webhook_events_filter", filter);
		else
			json_object_put(filter);
	}
	if (!bad) {
		text = json_object_to_json_string_ext(
			body, JSON_C_TO_STRING_PLAIN |
				      JSON_C_TO_STRING_NOSLASHESCAPE);
		copy = text ? a->host->mem_strdup(text) : NULL;
	}
	json_object_put(body);
	return copy;
}

static char *create_url(const rep_adapter *a, const rep_model *m,
			const dr_job_view *job)
{
	if (job->kind == DR_JOB_TRAINING)
		return str_printf(a, "%s/models/%s/%s/versions/%s/trainings",
				  a->api_base, m->owner, m->name, m->version);
	if (m->kind != REP_MODEL_NAME)
		return str_printf(a, "%s/predictions", a->api_base);
	return str_printf(a, "%s/%s/%s/%s/predictions", a->api_base,
			  a->deployment ? "deployments" : "models", m->owner,
			  m->name);
}

/*
 * The error for a refused training create. Replicate answers 404 both for
 * an unknown trainer version and for a destination model that does not
 * exist; its `detail` tells them apart ("destination"): the destination
 * is destination_not_found (create the model first), anything else as
 * for predictions.
 */
static dr_status training_create_error(rep_adapter *a, const rep_response *resp,
				       dr_error *err)
{
	char detail[REP_DETAIL_MAX + 16];

	if (resp->status == 404 || resp->status == 422 || resp->status == 400) {
		rep_error_detail(resp, a->token, detail, sizeof(detail));
		if (strstr(detail, "destination") ||
		    strstr(detail, "Destination"))
			return a->host->fail(
				err, DR_ERR_INVALID, "destination_not_found",
				"destination: Replicate has no such model to "
				"put the trained version in (HTTP %ld; create "
				"the model first): %s",
				resp->status, detail);
	}
	if (resp->status == 404) {
		rep_error_detail(resp, a->token, detail, sizeof(detail));
		return a->host->fail(err, DR_ERR_INVALID, "unknown_model",
				     "trainer: Replicate knows no such "
				     "trainer version (HTTP 404)%s%s",
				     detail[0] ? ": " : "", detail);
	}
	return http_error(a, resp, OP_CREATE, err);
}

static dr_status replicate_submit(void *state, const dr_job_view *job,
				  dr_prediction *out, dr_error *err)
{
	rep_adapter *a = state;
	char cancel_after[48], prefer[32];
	const char *extra[4];
	size_t ne = 0;
	rep_model m;
	rep_response resp;
	json_object *input;
	char *body, *url;
	dr_status st;

	memset(out, 0, sizeof(*out));
	if (!a->token)
		return missing_token(a, err);
	st = check_job(a, job, &m, &input, err);
	if (st != DR_OK)
		return st;
	body = create_body(a, &m, input, job->webhook_url,
			   job->kind == DR_JOB_TRAINING ? job->destination
							: NULL);
	json_object_put(input);
	if (!body)
		return nomem(a, err);
	url = create_url(a, &m, job);
	if (!url) {
		st = nomem(a, err);
		goto err_body;
	}

	extra[ne++] = "Content-Type: application/json";
	/* A training runs for hours under the core's training_deadline:
	 * the predictions' Cancel-After and Prefer: wait are not sent. */
	if (a->cancel_after > 0 && job->kind != DR_JOB_TRAINING) {
		snprintf(cancel_after, sizeof(cancel_after),
			 "Cancel-After: %ds", whole_seconds(a->cancel_after));
		extra[ne++] = cancel_after;
	}
	if (a->prefer_wait > 0 && job->kind != DR_JOB_TRAINING) {
		snprintf(prefer, sizeof(prefer), "Prefer: wait=%d",
			 a->prefer_wait);
		extra[ne++] = prefer;
	}
	extra[ne] = NULL;

	st = send_once(a, "POST", url, extra, body,
		       a->timeout + (job->kind == DR_JOB_TRAINING
					     ? 0
					     : a->prefer_wait),
		       1, &resp, err);
	if (st != DR_OK)
		goto err_url;
	if (resp.status != 200 && resp.status != 201 && resp.status != 202) {
		st = job->kind == DR_JOB_TRAINING
			     ? training_create_error(a, &resp, err)
			     : http_error(a, &resp, OP_CREATE, err);
		goto err_url;
	}
	st = parse_prediction(a, resp.body, resp.len, out, err);
	if (st != DR_OK) {
		/* The prediction was made but its answer is unusable. */
		err->retryable = 0;
		goto err_url;
	}
	a->host->log(a->inst, DR_LOG_DEBUG,
		     "event=replicate.submitted job=%s prediction=%s status=%s",
		     job->id ? job->id : "-", out->id,
		     status_name(out->status));

err_url:
	free(url);
err_body:
	free(body);
	return st;
}

/* ------------------------------------------------------------------------
 * get, cancel
 */

static dr_status check_prediction_id(rep_adapter *a, const dr_job_view *job,
				     dr_error *err)
{
	if (!id_ok(job->prediction_id))
		return a->host->fail(err, DR_ERR_INVALID, "invalid_prediction",
				     "the job's prediction id is not a "
				     "Replicate id");
	return DR_OK;
}

/* GET one prediction by id into `out`. */
static dr_status fetch_prediction(rep_adapter *a, const char *coll,
				  const char *id, dr_prediction *out,
				  dr_error *err)
{
	rep_response resp;
	char *url;
	dr_status st;

	memset(out, 0, sizeof(*out));
	url = str_printf(a, "%s/%s/%s", a->api_base, coll, id);
	if (!url)
		return nomem(a, err);
	st = send_read(a, "GET", url, OP_GET, a->timeout, &resp, err);
	free(url);
	if (st != DR_OK)
		return st;
	if (resp.status != 200)
		return http_error(a, &resp, OP_GET, err);
	return parse_prediction(a, resp.body, resp.len, out, err);
}

static dr_status replicate_get(void *state, const dr_job_view *job,
			       dr_prediction *out, dr_error *err)
{
	rep_adapter *a = state;
	dr_status st;

	memset(out, 0, sizeof(*out));
	st = check_prediction_id(a, job, err);
	if (st != DR_OK)
		return st;
	return fetch_prediction(a, collection(job), job->prediction_id, out,
				err);
}

static dr_status replicate_cancel(void *state, const dr_job_view *job,
				  dr_error *err)
{
	rep_adapter *a = state;
	rep_response resp;
	char *url;
	dr_status st;

	if (!job->prediction_id)
		return DR_OK; /* nothing was started */
	st = check_prediction_id(a, job, err);
	if (st != DR_OK)
		return st;
	url = str_printf(a, "%s/%s/%s/cancel", a->api_base, collection(job),
			 job->prediction_id);
	if (!url)
		return nomem(a, err);
	st = send_read(a, "POST", url, OP_CANCEL, a->timeout, &resp, err);
	free(url);
	if (st != DR_OK)
		return st;
	/* A final prediction answers 200 with its status unchanged; a 409
	 * says the same. Either way there is nothing left to stop. */
	if ((resp.status >= 200 && resp.status < 300) || resp.status == 409) {
		a->host->log(a->inst, DR_LOG_DEBUG,
			     "event=replicate.canceled prediction=%s "
			     "status=%ld",
			     job->prediction_id, resp.status);
		return DR_OK;
	}
	return http_error(a, &resp, OP_CANCEL, err);
}

/* ------------------------------------------------------------------------
 * webhook
 */

/* Fetch the account's default signing secret (worker only: maintain).
 * On DR_OK *out is a malloc'd copy. */
static dr_status fetch_secret(rep_adapter *a, char **out, dr_error *err)
{
	rep_response resp;
	json_object *doc, *key;
	const char *s;
	char *url;
	dr_status st;

	*out = NULL;
	url = str_printf(a, "%s/webhooks/default/secret", a->api_base);
	if (!url)
		return nomem(a, err);
	st = send_read(a, "GET", url, OP_SECRET, REP_SECRET_TIMEOUT, &resp,
		       err);
	free(url);
	if (st != DR_OK)
		return st;
	if (resp.status != 200)
		return http_error(a, &resp, OP_SECRET, err);
	doc = rep_parse_json(resp.body, resp.len);
	s = NULL;
	if (json_object_object_get_ex(doc, "key", &key) &&
	    json_object_is_type(key, json_type_string))
		s = json_object_get_string(key);
	if (!s || !s[0] || strlen(s) > REP_SECRET_MAX || !header_safe(s)) {
		json_object_put(doc);
		return a->host->fail(err, DR_ERR_PROVIDER, "provider_error",
				     "Replicate's webhook secret answer has "
				     "no usable \"key\"");
	}
	*out = a->host->mem_strdup(s);
	json_object_put(doc);
	return DR_OK;
}

/*
 * maintain(): keep the account's default webhook secret in the host's
 * key-value store for the FastCGI app, when no secret is configured and
 * there is a token to fetch it with: fetched when the store has none or
 * its copy is REP_SECRET_REFETCH seconds old; stored again (its time
 * renewed) even when unchanged.
 */
static dr_status replicate_maintain(void *state, dr_error *err)
{
	rep_adapter *a = state;
	char *stored = NULL, *fetched = NULL;
	double at = 0;
	dr_error gerr;
	dr_status st;

	if (a->webhook_secret || !a->token)
		return DR_OK;
	memset(&gerr, 0, sizeof(gerr));
	st = a->host->kv_get(a->inst, REP_KV_SECRET, &stored, &at, &gerr);
	if (st != DR_OK && st != DR_ERR_NOT_FOUND) {
		*err = gerr;
		return st;
	}
	if (stored && a->host->now() - at < REP_SECRET_REFETCH) {
		free_secret(stored);
		return DR_OK;
	}
	st = fetch_secret(a, &fetched, err);
	if (st == DR_OK)
		st = a->host->kv_put(a->inst, REP_KV_SECRET, fetched, err);
	if (st == DR_OK)
		a->host->log(a->inst, DR_LOG_INFO,
			     "event=replicate.webhook_secret source=api "
			     "changed=%s",
			     stored && strcmp(stored, fetched) == 0 ? "no"
								   : "yes");
	free_secret(stored);
	free_secret(fetched);
	return st;
}

/*
 * The account's secret for the webhook handler: a->fetched_secret, read
 * again from the key-value store once REP_SECRET_CACHE seconds old. Never
 * calls Replicate. DR_ERR_UNAVAILABLE "webhook_secret_unavailable"
 * (retryable) when there is none yet, or the store cannot be read and no
 * earlier copy is at hand: a delivery that cannot be checked is not a
 * forged one, and the provider delivers it again.
 */
static dr_status stored_secret(rep_adapter *a, dr_error *err)
{
	char *value = NULL;
	dr_error gerr;
	dr_status st;

	if (!a->token && !a->fetched_secret)
		return a->host->fail(
			err, DR_ERR_CONFIG, "missing_token",
			"cannot verify webhooks: set "
			"webhook_secret (REPLICATE_WEBHOOK_SECRET),"
			" or a token to fetch it with");
	if (a->fetched_secret &&
	    a->host->now() - a->fetched_at < REP_SECRET_CACHE)
		return DR_OK;
	memset(&gerr, 0, sizeof(gerr));
	st = a->host->kv_get(a->inst, REP_KV_SECRET, &value, NULL, &gerr);
	if (st == DR_OK) {
		free_secret(a->fetched_secret);
		a->fetched_secret = value;
		a->fetched_at = a->host->now();
		return DR_OK;
	}
	if (st != DR_ERR_NOT_FOUND && a->fetched_secret) {
		/* The store is away for a moment: the last copy will do. */
		a->host->log(a->inst, DR_LOG_WARNING,
			     "event=replicate.webhook_secret_stale code=%s",
			     gerr.code);
		return DR_OK;
	}
	st = a->host->fail(err, DR_ERR_UNAVAILABLE,
			   "webhook_secret_unavailable",
			   st == DR_ERR_NOT_FOUND
				   ? "the webhook signing secret has not been "
				     "fetched from Replicate yet (the worker "
				     "fetches it)"
				   : "cannot read the webhook signing secret: "
				     "%s",
			   gerr.message);
	err->retryable = 1;
	return st;
}

/* Verify req against the current and previous secrets. */
static dr_status verify(rep_adapter *a, const dr_webhook_request *req,
			dr_error *err)
{
	const char *secrets[2];
	size_t n = 0;

	secrets[n++] =
		a->webhook_secret ? a->webhook_secret : a->fetched_secret;
	if (a->webhook_secret_previous)
		secrets[n++] = a->webhook_secret_previous;
	return a->host->webhook_verify(req, secrets, n, REP_WEBHOOK_TOLERANCE,
				       err);
}

static dr_status replicate_webhook(void *state, const dr_webhook_request *req,
				   dr_prediction *out, char **delivery_id,
				   dr_error *err)
{
	rep_adapter *a = state;
	const dr_host *h = a->host;
	const char *id;
	dr_status st;

	memset(out, 0, sizeof(*out));
	*delivery_id = NULL;
	if (h->size < offsetof(dr_host, webhook_verify) +
			      sizeof(h->webhook_verify) ||
	    !h->webhook_verify || !h->webhook_header)
		return h->fail(err, DR_ERR_UNSUPPORTED, "unsupported",
			       "this darkroom core cannot verify webhook "
			       "signatures");
	if (!a->webhook_secret) {
		st = stored_secret(a, err);
		if (st != DR_OK)
			return st;
	}
	st = verify(a, req, err);
	if (st != DR_OK)
		return st;

	if (DR_HOST_HAS(h, webhook_document)) {
		size_t len;
		const char *doc = h->webhook_document(req, &len);

		st = parse_prediction(a, doc, len, out, err);
	} else {
		st = parse_prediction(a, (const char *)req->body, req->body_len,
				      out, err);
	}
	if (st != DR_OK)
		return st;
	id = h->webhook_header(req, "webhook-id");
	if (id)
		*delivery_id = h->mem_strdup(id);
	h->log(a->inst, DR_LOG_DEBUG,
	       "event=replicate.webhook prediction=%s status=%s", out->id,
	       status_name(out->status));
	return DR_OK;
}

/* ------------------------------------------------------------------------
 * reconcile
 */

/* 1 when `id` occurs in s as a whole token (not inside a longer id). */
static int has_token(const char *s, const char *id)
{
	size_t n = strlen(id);

	if (n == 0)
		return 0;
	for (const char *p = strstr(s, id); p; p = strstr(p + 1, id)) {
		int before = p > s && name_char(p[-1]);
		int after = name_char(p[n]);

		if (!before && !after)
			return 1;
	}
	return 0;
}

static const char *member_string(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* 1 when the listed prediction r ran the job's model. */
static int model_matches(const rep_adapter *a, const rep_model *m,
			 json_object *r)
{
	const char *s;
	char want[2 * REP_NAME_MAX + 2];

	if (m->kind != REP_MODEL_NAME) {
		s = member_string(r, "version");
		return s && strcmp(s, m->version) == 0;
	}
	if (a->deployment)
		return 1; /* the deployment's model is not known here */
	s = member_string(r, "model");
	snprintf(want, sizeof(want), "%s/%s", m->owner, m->name);
	return s && strcmp(s, want) == 0;
}

/* The URL of the next page, when it is on the API's origin; else NULL. */
static char *next_page(const rep_adapter *a, json_object *doc)
{
	const char *next = member_string(doc, "next");

	if (!next || !next[0] || !header_safe(next))
		return NULL;
	if (next[0] == '/')
		return str_printf(a, "%.*s%s", (int)a->origin_len, a->api_base,
				  next);
	if (strncmp(next, a->api_base, a->origin_len) != 0 ||
	    next[a->origin_len] != '/')
		return NULL; /* never send the token elsewhere */
	return a->host->mem_strdup(next);
}

/* 1 unless listed training r went to another destination than the
 * job's (its `destination`, or the model of its new version). */
static int destination_matches(const dr_job_view *job, json_object *r)
{
	const char *d = member_string(r, "destination");
	json_object *out;
	size_t n;

	if (job->kind != DR_JOB_TRAINING || !job->destination)
		return 1;
	n = strlen(job->destination);
	if (d && strcmp(d, job->destination) != 0)
		return 0;
	if (json_object_object_get_ex(r, "output", &out) &&
	    json_object_is_type(out, json_type_object)) {
		const char *v = member_string(out, "version");

		if (v && (strncmp(v, job->destination, n) != 0 || v[n] != ':'))
			return 0;
	}
	return 1;
}

typedef struct rep_match {
	char *id;	 /* the best prediction so far (malloc) */
	int by_webhook;	 /* it carries the job id */
	double distance; /* |created_at - submitted_at| of an input match */
} rep_match;

/* Look at one listed prediction. 1 when it is certainly the job's. */
static int consider(const rep_adapter *a, const dr_job_view *job,
		    const rep_model *m, json_object *input, json_object *r,
		    double created, rep_match *best)
{
	const char *id = member_string(r, "id"), *hook;
	json_object *v, *rin;
	double d;
	char *copy;

	if (!id_ok(id))
		return 0;
	if (json_object_object_get_ex(r, "webhook", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		hook = json_object_is_type(v, json_type_string)
			       ? json_object_get_string(v)
			       : NULL;
		if (!hook || !job->id || !has_token(hook, job->id))
			return 0; /* another job's (or nobody's) */
		copy = a->host->mem_strdup(id);
		free(best->id);
		best->id = copy;
		best->by_webhook = 1;
		return 1;
	}
	if (!json_object_object_get_ex(r, "input", &rin) ||
	    !json_object_equal(rin, input) || !model_matches(a, m, r) ||
	    !destination_matches(job, r))
		return 0;
	d = created - job->submitted_at;
	if (d < 0)
		d = -d;
	if (created < 0)
		d = 1e18; /* no time: the last resort */
	if (best->id && d >= best->distance)
		return 0;
	copy = a->host->mem_strdup(id);
	free(best->id);
	best->id = copy;
	best->distance = d;
	return 0;
}

static dr_status replicate_reconcile(void *state, const dr_job_view *job,
				     dr_prediction *out, dr_error *err)
{
	rep_adapter *a = state;
	rep_match best = { NULL, 0, 0 };
	rep_response resp;
	rep_model m;
	json_object *input, *doc = NULL, *results;
	double since;
	char *url;
	int done = 0;
	dr_status st;

	memset(out, 0, sizeof(*out));
	if (job->submitted_at <= 0)
		return a->host->fail(err, DR_ERR_NOT_FOUND, "not_found",
				     "no earlier submit to reconcile");
	st = check_job(a, job, &m, &input, err);
	if (st != DR_OK)
		return st;
	since = job->submitted_at - REP_RECONCILE_SLACK;
	/* A lost training create is looked for among the trainings: a
	 * duplicate would cost hours of GPU time. */
	url = str_printf(a, "%s/%s", a->api_base, collection(job));
	if (!url) {
		st = nomem(a, err);
		goto err_input;
	}
	for (int page = 0; page < REP_RECONCILE_PAGES && url && !done; page++) {
		size_t n;
		int older = 0;

		st = send_read(a, "GET", url, OP_LIST, a->timeout, &resp, err);
		free(url);
		url = NULL;
		if (st != DR_OK)
			goto err_match;
		if (resp.status != 200) {
			st = http_error(a, &resp, OP_LIST, err);
			goto err_match;
		}
		doc = rep_parse_json(resp.body, resp.len);
		if (!json_object_object_get_ex(doc, "results", &results) ||
		    !json_object_is_type(results, json_type_array)) {
			st = a->host->fail(err, DR_ERR_PROVIDER,
					   "provider_error",
					   "Replicate's prediction list has "
					   "no \"results\"");
			goto err_doc;
		}
		n = json_object_array_length(results);
		for (size_t i = 0; i < n && !done; i++) {
			json_object *r = json_object_array_get_idx(results, i);
			double created =
				rep_parse_time(member_string(r, "created_at"));

			if (created >= 0 && created < since) {
				older = 1; /* newest first: the rest is too */
				continue;
			}
			done = consider(a, job, &m, input, r, created, &best);
		}
		if (!done && !older)
			url = next_page(a, doc);
		json_object_put(doc);
		doc = NULL;
	}
	free(url);
	json_object_put(input);
	input = NULL;

	if (!best.id)
		return a->host->fail(err, DR_ERR_NOT_FOUND, "not_found",
				     "Replicate lists no prediction of this "
				     "job");
	st = fetch_prediction(a, collection(job), best.id, out, err);
	if (st == DR_OK)
		a->host->log(a->inst, DR_LOG_NOTICE,
			     "event=replicate.reconciled job=%s prediction=%s "
			     "by=%s",
			     job->id ? job->id : "-", best.id,
			     best.by_webhook ? "webhook" : "input");
	free(best.id);
	return st;

err_doc:
	json_object_put(doc);
err_match:
	free(best.id);
err_input:
	json_object_put(input);
	return st;
}

/* ------------------------------------------------------------------------
 * The descriptor
 */

static const dr_adapter_ops replicate_ops = {
	.size = sizeof(dr_adapter_ops),
	.validate = replicate_validate,
	.submit = replicate_submit,
	.get = replicate_get,
	.cancel = replicate_cancel,
	.webhook = replicate_webhook,
	.download_hosts = replicate_hosts,
	.reconcile = replicate_reconcile,
	.maintain = replicate_maintain,
	.trainings = 1,
};

static const dr_plugin replicate_plugin = {
	.abi_version = DR_PLUGIN_ABI_VERSION,
	.size = sizeof(dr_plugin),
	.name = "replicate",
	.kind = DR_PLUGIN_ADAPTER,
	.version = REP_PLUGIN_VERSION,
	.description = "runs predictions on Replicate (replicate.com)",
	.config_keys = replicate_keys,
	.create = replicate_create,
	.destroy = replicate_destroy,
	.adapter = &replicate_ops,
};

DR_PLUGIN_DEFINE(replicate_plugin)
