/*
 * callback.c - signed client callbacks (see callback.h).
 */
#include "callback.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batches.h"
#include "download.h"
#include "jobs.h"
#include "jobstate.h"
#include "jsonutil.h"
#include "log.h"
#include "netpolicy.h"
#include "plugin_http.h"
#include "webhook.h"

/* The waits after each failed try, in seconds (Svix's schedule: the
 * first try at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h). */
static const double schedule[] = {
	5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600,
};
#define N_SCHEDULE (sizeof(schedule) / sizeof(schedule[0]))

int callback_max_tries(void)
{
	return (int)N_SCHEDULE + 1;
}

double callback_schedule(int tries)
{
	if (tries < 1 || tries > (int)N_SCHEDULE)
		return -1;
	return schedule[tries - 1];
}

double callback_retry_after(const char *value, time_t now)
{
	double v = plugin_http_retry_after(value, (double)now);

	if (v < 0)
		return -1;
	return v > CALLBACK_RETRY_AFTER_MAX ? CALLBACK_RETRY_AFTER_MAX : v;
}

double callback_delay(int tries, const char *retry_after, time_t now)
{
	double d = callback_schedule(tries);
	double ra = callback_retry_after(retry_after, now);

	if (d < 0)
		return -1;
	return ra > d ? ra : d;
}

/* DARKROOM_TEST_CALLBACK_SCALE: a factor in (0, 1) that shortens every
 * wait, for the test suites only (the README says so); anything else,
 * unset included, is 1. */
static double test_scale(void)
{
	const char *v = getenv("DARKROOM_TEST_CALLBACK_SCALE");
	char *end;
	double f;

	if (!v || !*v)
		return 1;
	f = strtod(v, &end);
	if (*end != '\0' || !(f > 0 && f < 1))
		return 1;
	return f;
}

/* The delivery being tried and what is known of this try. */
typedef struct cb_try {
	const dr_step_ctx *e;
	const dr_claim *c;
	const char *delivery; /* its id, the webhook-id */
	int tries;	      /* this try's place in the schedule, 1 first */
	struct timespec t0;   /* when it started (monotonic) */
} cb_try;

/* Seconds since `t0`. */
static double elapsed(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Record try `t`: the delivery's new `state` (tried again after `delay`
 * seconds when "pending"), the answer's `http` status (0 for none), the
 * `error` (NULL when delivered) and the job event `detail`. A worker
 * that lost its lease meanwhile writes nothing and logs it. */
static void record(const cb_try *t, const char *state, double delay, long http,
		   const char *error, const char *detail)
{
	jobstate_callback_try r;
	dr_error err;

	dr_error_clear(&err);
	memset(&r, 0, sizeof(r));
	r.delivery = t->delivery;
	r.state = state;
	r.delay = delay;
	r.http = http;
	r.error = error;
	r.duration = elapsed(&t->t0);
	r.from = t->c->status;
	r.detail = detail;
	if (jobstate_callback_tried(t->e->db, t->c->id, t->c->lease_version, &r,
				    &err) != DR_OK)
		dr_log(DR_LOG_WARNING,
		       "event=callback.lease_lost job=%s code=%s", t->c->id,
		       err.code[0] ? err.code : "-");
}

/* A callback that can never be sent (no usable secret): logged, recorded
 * as a try, given up at once. */
static void give_up(const cb_try *t, const char *code, const char *reason)
{
	char q[300], text[400];
	char *detail = jobstate_detail("delivery", "failed", "code", code,
				       "reason", reason, "webhook_id",
				       t->delivery, "given_up", "true", NULL);

	dr_log(DR_LOG_WARNING, "event=callback.failed job=%s code=%s reason=%s",
	       t->c->id, code, dr_log_quote(reason, q, sizeof(q)));
	snprintf(text, sizeof(text), "%s: %s", code, reason);
	record(t, "failed", 0, 0, text, detail);
	free(detail);
}

/*
 * One failed try of the callback, whatever failed (the job object could
 * not be built, the POST failed or was answered with an error): logged
 * with its reason, then given up after the schedule's last try (or at
 * once when `final`), or tried again after callback_delay(); recorded
 * with the delivery, its attempt row and the job's event in one fenced
 * transaction, so a worker that lost its lease (the job was claimed
 * again, or retried by its client) adds nothing. `http` is the answer's
 * status, 0 for none; `retry_after` its Retry-After header (NULL or ""
 * for none).
 */
static void failed_try(const cb_try *t, int final, long http,
		       const char *retry_after, const dr_error *why)
{
	char status_s[16], reason[600], text[JOBSTATE_MAX_ERROR_MESSAGE + 64];
	double delay = callback_delay(t->tries, retry_after, time(NULL));
	char *detail;

	final = final || delay < 0;
	snprintf(status_s, sizeof(status_s), "%ld", http);
	detail = jobstate_detail("delivery", "failed", "http_status", status_s,
				 "code", why->code, "reason", why->message,
				 "webhook_id", t->delivery, "given_up",
				 final ? "true" : NULL, NULL);
	dr_log(DR_LOG_WARNING,
	       "event=callback.failed job=%s try=%d status=%ld code=%s "
	       "reason=%s",
	       t->c->id, t->tries, http, why->code[0] ? why->code : "-",
	       dr_log_quote(why->message, reason, sizeof(reason)));
	snprintf(text, sizeof(text), "%s: %s", why->code[0] ? why->code : "-",
		 why->message);
	record(t, final ? "failed" : "pending",
	       final ? 0 : delay * test_scale(), http, text, detail);
	free(detail);
}

dr_step_outcome callback_deliver(const dr_step_ctx *e)
{
	const dr_config *cfg = e->cfg;
	const dr_claim *c = e->claim;
	dr_step_outcome o;
	dr_db_rows *rows = NULL;
	dr_download_policy pol;
	char **env_hosts = NULL;
	static const char *const any[] = {"*", NULL};
	char msg_id[96], ts[32], sig[128], sig_prev[128], status_s[16];
	char h_id[160], h_ts[64], h_sig[320], retry_after[128];
	const char *headers[5];
	dr_buf body;
	long http = 0;
	cb_try t;
	char *detail;
	dr_error err;
	dr_status st;

	memset(&o, 0, sizeof(o));
	o.kind = DR_STEP_DONE;
	dr_error_clear(&err);
	retry_after[0] = '\0';
	msg_id[0] = '\0';
	memset(&t, 0, sizeof(t));
	t.e = e;
	t.c = c;
	t.delivery = msg_id;
	clock_gettime(CLOCK_MONOTONIC, &t.t0);
	/* The job object and the envelope around it. */
	dr_buf_init(&body, (16u << 20) + 256);
	/* The most due of the deliveries the job carries: its own end's, or
	 * its batch's batch.completed (core/jobstate.c). */
	st = db_query(e->db,
		      "SELECT d.url, d.id, d.attempts - d.round_start,"
		      " j.completed_at, d.type, j.batch_id, b.completed_at"
		      " FROM jobs j JOIN callback_deliveries d"
		      " ON d.job_id = j.id LEFT JOIN batches b"
		      " ON b.id = j.batch_id WHERE j.id = ?"
		      " AND d.state = 'pending'"
		      " ORDER BY d.next_at, d.created_at DESC, d.id DESC"
		      " LIMIT 1",
		      &rows, &err, DB_ARGS(DB_STR(c->id)));
	if (st != DR_OK) /* the lease runs out and the job comes back */
		goto out;
	if (rows->n_rows != 1) {
		/* Nothing pending (a client retried the job meanwhile, say):
		 * nothing to send. */
		dr_log(DR_LOG_WARNING, "event=callback.none_pending job=%s",
		       c->id);
		if (jobstate_park(e->db, c->id, c->lease_version, &err) !=
		    DR_OK)
			dr_log(DR_LOG_WARNING,
			       "event=callback.lease_lost job=%s", c->id);
		goto out;
	}
	snprintf(msg_id, sizeof(msg_id), "%s", db_cell(rows, 0, 1));
	t.tries = (int)strtol(db_cell(rows, 0, 2), NULL, 10) + 1;
	if (!cfg->server.callback_secret) {
		give_up(&t, "no_callback_secret",
			"no callback_secret is configured");
		goto out;
	}
	if (strcmp(db_cell(rows, 0, 4), "batch.completed") == 0 &&
	    db_cell(rows, 0, 5)) {
		/* {"type": "batch.completed", "timestamp": <when the batch
		 * completed>, "data": <the batch object as it is now>} */
		st = dr_buf_puts(&body, "{\"type\":\"batch.completed\","
					"\"timestamp\":");
		if (st == DR_OK)
			st = json_append_time(&body, db_cell(rows, 0, 6));
		if (st == DR_OK)
			st = dr_buf_puts(&body, ",\"data\":");
		if (st == DR_OK)
			st = batches_render(e->db, db_cell(rows, 0, 5), &body,
					    &err);
	} else {
		/* {"type": "job.<status>", "timestamp": <when the job ended:
		 * the same on every try>, "data": <the job object>} */
		st = dr_buf_printf(&body, "{\"type\":\"job.%s\",\"timestamp\":",
				   c->status);
		if (st == DR_OK)
			st = json_append_time(&body, db_cell(rows, 0, 3));
		if (st == DR_OK)
			st = dr_buf_puts(&body, ",\"data\":");
		if (st == DR_OK)
			st = jobs_render_message(
				e->db, cfg,
				plugins_sink(e->plugins, cfg->server.sink),
				c->id, &body, &err);
	}
	if (st == DR_OK && dr_buf_puts(&body, "}") != DR_OK)
		st = dr_fail(&err, DR_ERR_INTERNAL, "internal",
			     "job object too large");
	if (st != DR_OK) {
		/* Trying again may help (the database was away) or not (the
		 * job object is too large to send): a try either way, so it
		 * ends with the schedule instead of coming back with every
		 * lease. */
		dr_error why;

		dr_error_clear(&why);
		dr_fail(&why, st, "callback_unrenderable",
			"the job object cannot be built: %s",
			err.message[0] ? err.message : dr_strerror(st));
		failed_try(&t, 0, 0, NULL, &why);
		goto out;
	}
	snprintf(ts, sizeof(ts), "%lld", (long long)plugin_host_services()->now());
	st = webhook_sign(cfg->server.callback_secret, msg_id,
			  strtoll(ts, NULL, 10), body.data, body.len, sig,
			  sizeof(sig));
	/* During a rotation, the previous secret's signature too, so that a
	 * receiver still holding it verifies the message. */
	sig_prev[0] = '\0';
	if (st == DR_OK && cfg->server.callback_secret_previous)
		st = webhook_sign(cfg->server.callback_secret_previous, msg_id,
				  strtoll(ts, NULL, 10), body.data, body.len,
				  sig_prev, sizeof(sig_prev));
	if (st != DR_OK) {
		give_up(&t, "bad_callback_secret",
			"the callback_secret or callback_secret_previous "
			"cannot be used to sign");
		goto out;
	}
	snprintf(h_id, sizeof(h_id), "webhook-id: %s", msg_id);
	snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %s", ts);
	snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s%s%s", sig,
		 sig_prev[0] ? " " : "", sig_prev);
	headers[0] = "Content-Type: application/json";
	headers[1] = h_id;
	headers[2] = h_ts;
	headers[3] = h_sig;
	headers[4] = NULL;

	memset(&pol, 0, sizeof(pol));
	pol.hosts = any;
	pol.max_bytes = 65536;
	pol.connect_timeout = cfg->limits.connect_timeout;
	pol.total_timeout = CALLBACK_TIMEOUT;
	pol.low_speed_limit = 1;
	pol.low_speed_time = CALLBACK_TIMEOUT;
	netpolicy_env(&pol, &env_hosts);
	pol.hosts = any; /* the client chose its host; the address rules hold */
	pol.allow_private = netpolicy_callback_allow_private();
	clock_gettime(CLOCK_MONOTONIC, &t.t0); /* the try is the POST */
	st = download_post(db_cell(rows, 0, 0), &pol, headers, body.data,
			   body.len, &http, retry_after, sizeof(retry_after),
			   &err);
	snprintf(status_s, sizeof(status_s), "%ld", http);
	if (st == DR_OK && http >= 200 && http < 300) {
		detail = jobstate_detail("delivery", "delivered", "http_status",
					 status_s, "webhook_id", msg_id, NULL);
		record(&t, "delivered", 0, http, NULL, detail);
		free(detail);
		dr_log(DR_LOG_INFO, "event=callback.delivered job=%s status=%ld",
		       c->id, http);
		goto out;
	}
	if (st == DR_OK && http == 410)
		dr_fail(&err, DR_ERR_PROVIDER, "callback_gone",
			"the callback URL answered 410 (Gone)");
	else if (st == DR_OK)
		dr_fail(&err, DR_ERR_PROVIDER, "callback_rejected",
			"the callback URL answered %ld", http);
	/* Refused addresses and URLs will not change, and a 410 says the
	 * receiver is gone for good: give up at once. */
	failed_try(&t,
		   strcmp(err.code, "address_not_allowed") == 0 ||
			   strcmp(err.code, "url_not_allowed") == 0 ||
			   (st == DR_OK && http == 410),
		   st == DR_OK ? http : 0, retry_after, &err);
out:
	netpolicy_free_hosts(env_hosts);
	db_rows_free(rows);
	dr_buf_free(&body);
	return o;
}
