/*
 * engine.c - the worker's step dispatch (see engine.h).
 *
 * Everything a worker writes about a claimed job names the claim's
 * lease_version (jobstate.h); a write that matches no row means the lease
 * was lost and the worker leaves the job alone from then on. Lost leases
 * and failed writes are logged here, where they are handled.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callback.h"
#include "files.h"
#include "ids.h"
#include "jobstate.h"
#include "log.h"
#include "metrics.h"
#include "news.h"
#include "pipeline.h"
#include "ratelimit.h"
#include "workflow.h"

#define MAX_WEBHOOK_URL 2300

/* ----------------------------------------------------------------- steps */

/* Log the result of a fenced write about claimed job `c` at `step`; a lost
 * lease and a failed write are logged here, once. Returns `st`. */
static dr_status logged(const dr_claim *c, const char *step, dr_status st,
			const dr_error *err)
{
	if (st == DR_ERR_CONFLICT)
		dr_log(DR_LOG_WARNING, "event=job.lease_lost job=%s step=%s",
		       c->id, step);
	else if (st != DR_OK)
		dr_log(DR_LOG_ERR,
		       "event=job.write_failed job=%s step=%s status=\"%s\" "
		       "code=%s",
		       c->id, step, dr_strerror(st), err->code);
	return st;
}

/* End the claimed job as failed at `step` (the lease named by the claim;
 * `logstep` names the step for the log). */
static void fail(dr_engine *e, const dr_claim *c, const char *logstep,
		 const char *step, const char *code, const char *message)
{
	dr_error err;

	dr_error_clear(&err);
	if (logged(c, logstep,
		   jobstate_fail(e->db, c->id, c->lease_version, step, code,
				 message, NULL, &err),
		   &err) == DR_OK)
		dr_log(DR_LOG_NOTICE,
		       "event=job.failed job=%s step=%s code=%s adapter=%s",
		       c->id, step, code, c->adapter);
}

/* Make the claimed job due again after `delay` seconds, or fail it at
 * `step` when the try counts and its attempts are used up. */
static void retry(dr_engine *e, const dr_claim *c, const char *step,
		  double delay, int count, int forget_submit,
		  const dr_error *why)
{
	jobstate_retry_opts o;
	dr_error err;

	if (count && c->attempts >= e->cfg->worker.max_attempts) {
		fail(e, c, step, step, why->code[0] ? why->code : "failed",
		     why->message);
		return;
	}
	memset(&o, 0, sizeof(o));
	o.delay = delay;
	o.count_attempt = count;
	o.forget_submit = forget_submit;
	o.from = c->status;
	o.step = step;
	o.why = why;
	dr_error_clear(&err);
	if (logged(c, step,
		   jobstate_retry(e->db, c->id, c->lease_version, &o, &delay,
				  &err),
		   &err) != DR_OK)
		return;
	dr_log(DR_LOG_INFO, "event=job.retry job=%s step=%s code=%s delay=%.1f",
	       c->id, step, why->code[0] ? why->code : "-", delay);
}

/* Record a step module's outcome for the claimed job. */
static void act(dr_engine *e, const dr_claim *c, const dr_step_outcome *o)
{
	switch (o->kind) {
	case DR_STEP_RETRY:
		retry(e, c, o->step, o->delay, o->count_attempt,
		      o->forget_submit, &o->why);
		break;
	case DR_STEP_FAIL:
		fail(e, c, o->step, o->step, o->why.code, o->why.message);
		break;
	case DR_STEP_DONE:
	default:
		break;
	}
}

/* Give the job back for its next poll in `delay` seconds. */
static void reschedule(dr_engine *e, const dr_claim *c, double delay)
{
	dr_error err;

	dr_error_clear(&err);
	(void)logged(c, c->step, queue_release(e->db, c, delay, &err), &err);
}

/* The delay before the next poll: a quarter of the prediction's age,
 * between poll_min and poll_max, with 10 % jitter. */
static double poll_delay(const dr_engine *e, const dr_claim *c)
{
	double age = c->submitted_at > 0 ? c->now - c->submitted_at : 0;
	double d = age / 4;
	unsigned char r = 0;

	if (d < e->cfg->worker.poll_min)
		d = e->cfg->worker.poll_min;
	if (d > e->cfg->worker.poll_max)
		d = e->cfg->worker.poll_max;
	if (ids_random(&r, 1) != DR_OK)
		r = 128;
	return d * (0.9 + 0.2 * r / 255.0);
}

static void make_view(dr_engine *e, const dr_claim *c, dr_job_view *v,
		      char *url, size_t urlsz)
{
	memset(v, 0, sizeof(*v));
	v->id = c->id;
	v->model = c->model;
	v->input_json = c->input;
	v->prediction_id = c->prediction_id;
	snprintf(url, urlsz, "%s/v1/hooks/%s?job=%s&at=%lld",
		 e->cfg->server.public_url, c->adapter, c->id,
		 (long long)c->submitted_us);
	v->webhook_url = url;
	v->attempt = c->attempts + 1;
	v->submitted_at = c->submitted_at;
	if (c->training) {
		v->kind = DR_JOB_TRAINING;
		v->destination = c->destination;
	}
}

/* Apply `p` from one of the worker's own calls; the lease must still be
 * ours. Returns the job's status afterwards in status. */
static dr_status apply_own(dr_engine *e, const dr_claim *c,
			   const dr_prediction *p, const char *source,
			   char status[16])
{
	dr_apply_result r;
	news_fence fence;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	fence.id = c->id;
	fence.lease_version = c->lease_version;
	st = news_apply(e->db, e->cfg, c->adapter, c->id, 0, p, source, NULL,
			&fence, &r, status, &err);
	if (st == DR_OK && r == DR_APPLY_UNKNOWN) {
		/* Another job already owns this prediction id. */
		dr_log(DR_LOG_WARNING,
		       "event=job.prediction_taken job=%s prediction=%s "
		       "source=%s",
		       c->id, p->id ? p->id : "-", source);
		return DR_ERR_NOT_FOUND;
	}
	if (st == DR_ERR_CONFLICT)
		dr_log(DR_LOG_WARNING,
		       "event=job.lease_lost job=%s step=%s source=%s", c->id,
		       c->step, source);
	else if (st != DR_OK)
		dr_log(DR_LOG_ERR,
		       "event=job.apply_failed job=%s source=%s status=\"%s\"",
		       c->id, source, dr_strerror(st));
	return st;
}

static void step_cancel(dr_engine *e, dr_claim *c, struct dr_instance *inst)
{
	const dr_adapter_ops *ops = inst ? inst->plugin->desc->adapter : NULL;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	if (ops && ops->cancel && c->prediction_id) {
		dr_job_view v;
		char url[MAX_WEBHOOK_URL];

		make_view(e, c, &v, url, sizeof(url));
		st = ops->cancel(inst->state, &v, &err);
		metrics_provider(e->db, c->adapter, st);
		if (st != DR_OK && err.retryable &&
		    c->attempts < e->cfg->worker.max_attempts) {
			retry(e, c, c->step,
			      queue_asked_delay(
				      err.retry_after,
				      queue_backoff(e->cfg, c->attempts + 1)),
			      1, 0, &err);
			return;
		}
		if (st != DR_OK)
			dr_log(DR_LOG_WARNING,
			       "event=job.cancel_at_provider_failed job=%s "
			       "code=%s",
			       c->id, err.code);
	}
	if (logged(c, "cancel",
		   jobstate_cancel(e->db, c->id, c->lease_version, NULL, &err),
		   &err) == DR_OK)
		dr_log(DR_LOG_INFO, "event=job.canceled job=%s adapter=%s",
		       c->id, c->adapter);
}

/* After a submit's answer: the job waits for news, polled as a safety
 * net. */
static void after_news(dr_engine *e, dr_claim *c, const char *status)
{
	dr_job_status s;

	if (!jobstate_parse(status, &s) || jobstate_is_final(s) ||
	    s == DR_JOB_PERSISTING)
		return; /* news cleared run_at and the lease */
	reschedule(e, c, poll_delay(e, c));
}

/*
 * Pass the adapter's create-rate limit (ratelimit.h) before a create: 1
 * to go now; 0 when the job was given back (a slot booked, or a place in
 * line beyond the horizon: run_at moves, no attempt counted) or could not
 * be handled.
 */
static int rate_admit(dr_engine *e, dr_claim *c, struct dr_instance *inst)
{
	const dr_conf_section *sec = inst->section;
	ratelimit_result r;
	char labels[DR_METRICS_LABELS_MAX];
	dr_error err;
	dr_status st;

	if (!sec || !(sec->rate > 0))
		return 1;
	dr_error_clear(&err);
	st = ratelimit_reserve(e->db, c->adapter, sec->rate, sec->burst, c->id,
			       c->lease_version, &r, &err);
	if (st == DR_ERR_CONFLICT) {
		(void)logged(c, c->step, st, &err);
		return 0;
	}
	if (st != DR_OK) {
		/* No create without the limit's word: try again soon. */
		dr_log(DR_LOG_WARNING,
		       "event=job.rate_limit_failed job=%s adapter=%s "
		       "status=\"%s\" code=%s",
		       c->id, c->adapter, dr_strerror(st), err.code);
		reschedule(e, c, 1.0);
		return 0;
	}
	if (r.verdict == RATELIMIT_GO)
		return 1;
	metrics_labels(labels, sizeof(labels), "adapter", c->adapter, NULL);
	metrics_add(e->db, "darkroom_rate_limited_total", labels, 1);
	dr_log(DR_LOG_DEBUG,
	       "event=job.rate_limited job=%s adapter=%s booked=%d "
	       "delay=%.3f ahead=%.3f",
	       c->id, c->adapter, r.verdict == RATELIMIT_BOOK, r.delay,
	       r.booked);
	reschedule(e, c, r.delay);
	return 0;
}

/*
 * The input attempt `at` (its recorded start, epoch seconds) of the
 * claimed job sends, into *sent (malloc, or NULL: `resolved`, or the
 * job's own input, as it is): with each {"$file"} reference a URL the
 * provider can fetch (files.h), signed from `at`, so the reconcile of a
 * lost create makes the very URLs that attempt sent. 0, or 1 when the job
 * was failed (a file deleted since intake) or given back for a later try
 * (`forget`: the attempt was recorded but surely not sent).
 */
static int attempt_input(dr_engine *e, dr_claim *c, const char *resolved,
			 double at, int forget, char **sent)
{
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	st = files_resolve_input(
		e->db, e->cfg, plugins_sink(e->plugins, e->cfg->server.sink),
		resolved ? resolved : c->input, at, sent, &err);
	if (st == DR_OK)
		return 0;
	if (st == DR_ERR_NOT_FOUND || st == DR_ERR_INVALID ||
	    st == DR_ERR_CONFIG)
		fail(e, c, "submit", "submit", err.code, err.message);
	else
		retry(e, c, c->step, queue_backoff(e->cfg, c->attempts + 1), 0,
		      forget, &err);
	return 1;
}

/* Submit (or reconcile) the claimed job with `resolved`, its input with
 * a workflow step's references resolved (NULL: its own, as stored). */
static void submit(dr_engine *e, dr_claim *c, struct dr_instance *inst,
		   const char *resolved)
{
	const dr_adapter_ops *ops = inst->plugin->desc->adapter;
	dr_prediction p;
	dr_job_view v;
	char url[MAX_WEBHOOK_URL];
	char status[16];
	const char *resubmit = NULL; /* why an earlier attempt is repeated */
	char *detail, *sent = NULL;
	double t0;
	dr_error err;
	dr_status st;

	memset(&p, 0, sizeof(p));
	dr_error_clear(&err);
	make_view(e, c, &v, url, sizeof(url));
	if (c->submitted_at > 0 && !c->prediction_id) {
		resubmit = "no answer was recorded for the last attempt";
		/* An earlier attempt may have reached the provider without
		 * its answer being recorded (a crash, a timeout): the view
		 * holds the input it sent. */
		if (attempt_input(e, c, resolved, c->submitted_at, 0, &sent))
			goto out;
		v.input_json = sent ? sent : resolved ? resolved : c->input;
		if (ops->reconcile) {
			st = ops->reconcile(inst->state, &v, &p, &err);
			metrics_provider(e->db, c->adapter, st);
			if (st == DR_OK) {
				st = apply_own(e, c, &p, "reconcile", status);
				news_prediction_clear(&p);
				if (st == DR_OK)
					after_news(e, c, status);
				if (st != DR_ERR_NOT_FOUND)
					goto out;
				/* The match was another job's (identical
				 * input): ours was surely never created, or
				 * the list does not tell it apart. */
				resubmit = "the provider's prediction "
					   "matching this job is another job's";
			}
			news_prediction_clear(&p);
			if (st != DR_ERR_NOT_FOUND) {
				retry(e, c, c->step,
				      queue_asked_delay(
					      err.retry_after,
					      queue_backoff(e->cfg,
							    c->attempts)),
				      0, 0, &err);
				goto out;
			}
		} else if (c->now < c->submitted_at + e->cfg->worker.submit_grace) {
			/* Give the provider's webhook (which names the job)
			 * time to arrive before submitting again. */
			reschedule(e, c,
				   c->submitted_at +
					   e->cfg->worker.submit_grace - c->now);
			goto out;
		}
		free(sent);
		sent = NULL;
		dr_log(DR_LOG_NOTICE,
		       "event=job.resubmit job=%s adapter=%s attempts=%d",
		       c->id, c->adapter, c->attempts);
	}

	/* Every create passes the limit: a first submit, a resubmit, and
	 * one after a reconcile that found nothing. */
	if (!rate_admit(e, c, inst))
		goto out;

	/* Record the attempt before sending, so a crash after the send is
	 * reconciled instead of forgotten. Its start, to the microsecond,
	 * also names the attempt in the webhook URL. */
	{
		struct timespec ts;
		char at[40];

		clock_gettime(CLOCK_REALTIME, &ts);
		c->submitted_us = (int64_t)ts.tv_sec * 1000000 +
				  ts.tv_nsec / 1000;
		snprintf(at, sizeof(at), "%lld.%06lld",
			 (long long)(c->submitted_us / 1000000),
			 (long long)(c->submitted_us % 1000000));
		st = jobstate_submitting(e->db, c->id, c->lease_version, at,
					 &err);
	}
	if (logged(c, c->step, st, &err) != DR_OK)
		goto out;
	c->attempts++;
	/* The view's submitted_at keeps saying when an EARLIER attempt
	 * began (0 for none); the URL names this attempt. */
	make_view(e, c, &v, url, sizeof(url));
	v.attempt = c->attempts;
	c->submitted_at = (double)c->submitted_us / 1e6;
	if (attempt_input(e, c, resolved, c->submitted_at, 1, &sent))
		goto out;
	v.input_json = sent ? sent : resolved ? resolved : c->input;
	detail = resubmit ? jobstate_detail("resubmit", resubmit, NULL) : NULL;
	if (jobstate_event(e->db, c->id, "submit", c->status, NULL, detail,
			   &err) != DR_OK)
		dr_log(DR_LOG_WARNING, "event=job.event_failed job=%s", c->id);
	free(detail);

	t0 = metrics_now();
	st = ops->submit(inst->state, &v, &p, &err);
	metrics_step(e->db, "submit", metrics_now() - t0);
	metrics_provider(e->db, c->adapter, st);
	if (st == DR_OK && !p.id) {
		st = dr_fail(&err, DR_ERR_PROVIDER, "no_prediction_id",
			     "the provider answered without a prediction id");
	} else if (st == DR_OK && !news_prediction_id_ok(p.id)) {
		st = dr_fail(&err, DR_ERR_PROVIDER, "bad_prediction_id",
			     "the provider's prediction id is not 1 to %d "
			     "printable ASCII characters",
			     NEWS_MAX_PREDICTION_ID);
	}
	if (st == DR_OK) {
		if (apply_own(e, c, &p, "submit", status) == DR_OK)
			after_news(e, c, status);
		news_prediction_clear(&p);
		goto out;
	}
	news_prediction_clear(&p);
	dr_log(DR_LOG_WARNING,
	       "event=job.submit_failed job=%s adapter=%s status=\"%s\" "
	       "code=%s retryable=%d",
	       c->id, c->adapter, dr_strerror(st), err.code, err.retryable);
	if (st == DR_ERR_RATE_LIMITED) {
		/* The provider's delay becomes the job's run_at; it does not
		 * count as a try, and nothing was created. */
		retry(e, c, c->step, queue_asked_delay(err.retry_after, 5), 0,
		      1, &err);
	} else if (err.retryable) {
		/* Surely not sent: safe to send again. */
		retry(e, c, c->step, queue_backoff(e->cfg, c->attempts), 1, 1,
		      &err);
	} else if (st == DR_ERR_TIMEOUT || st == DR_ERR_PROVIDER ||
		   st == DR_ERR_NETWORK) {
		/* Maybe created: the next try reconciles first. */
		retry(e, c, c->step, queue_backoff(e->cfg, c->attempts), 1, 0,
		      &err);
	} else {
		fail(e, c, c->step, "submit",
		     err.code[0] ? err.code : "submit_failed", err.message);
	}
out:
	free(sent);
}

static dr_status count_attempt(dr_engine *e, dr_claim *c)
{
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	st = logged(
		c, c->step,
		jobstate_count_attempt(e->db, c->id, c->lease_version, &err),
		&err);
	if (st == DR_OK)
		c->attempts++;
	return st;
}

static void step_submit(dr_engine *e, dr_claim *c, struct dr_instance *inst)
{
	char *resolved = NULL;
	dr_error err;
	dr_status st;

	/* A workflow's step: its references resolved from what is stored
	 * now (workflow.h), for this submit only; the step keeps its input
	 * as written. */
	if (c->parent[0]) {
		dr_error_clear(&err);
		st = workflow_resolve(
			e->db, plugins_sink(e->plugins, e->cfg->server.sink),
			c->parent, c->input, e->cfg->server.json_max_depth,
			&resolved, &err);
		if (st == DR_ERR_INVALID) {
			fail(e, c, "submit", "submit", err.code, err.message);
			return;
		}
		if (st != DR_OK) {
			/* The database: a try that counts, so that it ends
			 * after [worker] max_attempts. */
			if (count_attempt(e, c) == DR_OK)
				retry(e, c, c->step,
				      queue_backoff(e->cfg, c->attempts), 1, 0,
				      &err);
			return;
		}
	}
	submit(e, c, inst, resolved);
	free(resolved);
}

static void step_poll(dr_engine *e, dr_claim *c, struct dr_instance *inst)
{
	const dr_adapter_ops *ops = inst->plugin->desc->adapter;
	dr_prediction p;
	dr_job_view v;
	char url[MAX_WEBHOOK_URL];
	char status[16];
	dr_error err;
	dr_status st;

	memset(&p, 0, sizeof(p));
	dr_error_clear(&err);
	make_view(e, c, &v, url, sizeof(url));
	if (c->provider_deadline > 0 && c->now >= c->provider_deadline) {
		if (ops->cancel && c->prediction_id &&
		    ops->cancel(inst->state, &v, &err) != DR_OK)
			dr_log(DR_LOG_WARNING,
			       "event=job.cancel_at_provider_failed job=%s",
			       c->id);
		fail(e, c, c->step, "provider", "provider_deadline",
		     "no final answer from the provider before the "
		     "deadline");
		return;
	}
	if (!ops->get || !c->prediction_id) {
		/* A provider that only pushes: wait for its webhook. */
		reschedule(e, c,
			   c->provider_deadline > 0
				   ? c->provider_deadline - c->now
				   : e->cfg->worker.poll_max);
		return;
	}
	st = ops->get(inst->state, &v, &p, &err);
	metrics_provider(e->db, c->adapter, st);
	if (st == DR_OK) {
		if (apply_own(e, c, &p, "poll", status) == DR_OK)
			after_news(e, c, status);
		news_prediction_clear(&p);
		return;
	}
	news_prediction_clear(&p);
	dr_log(DR_LOG_WARNING,
	       "event=job.poll_failed job=%s adapter=%s status=\"%s\" code=%s",
	       c->id, c->adapter, dr_strerror(st), err.code);
	/* Polls never fail a job: the provider deadline does, so no wait
	 * the provider asks for runs past it. */
	{
		double d = queue_asked_delay(err.retry_after, poll_delay(e, c));

		if (c->provider_deadline > 0 &&
		    d > c->provider_deadline - c->now)
			d = c->provider_deadline > c->now
				    ? c->provider_deadline - c->now
				    : 0;
		reschedule(e, c, d);
	}
}

/* Nothing is due: take the job off the queue. */
static void park(dr_engine *e, dr_claim *c)
{
	dr_error err;

	dr_error_clear(&err);
	(void)logged(c, c->step,
		     jobstate_park(e->db, c->id, c->lease_version, &err), &err);
}

/* Count a try of a step that has no other place to count it. */

/* The context a step module runs with. */
static dr_step_ctx step_ctx(dr_engine *e, dr_claim *c)
{
	dr_step_ctx x;

	x.db = e->db;
	x.cfg = e->cfg;
	x.plugins = e->plugins;
	x.claim = c;
	return x;
}

void engine_run(dr_engine *e, dr_claim *c)
{
	struct dr_instance *inst = plugins_adapter(e->plugins, c->adapter);

	dr_step_ctx x = step_ctx(e, c);
	dr_step_outcome o;
	dr_job_status s;

	if (jobstate_parse(c->status, &s) && jobstate_is_final(s)) {
		/* An ended job is due only for its client callback. */
		if (strcmp(c->callback_state, "pending") == 0) {
			o = callback_deliver(&x);
			act(e, c, &o);
		} else
			park(e, c);
		return;
	}
	if (strcmp(c->step, "steps") == 0) {
		/* A workflow calls no provider: its steps are jobs of their
		 * own, and it follows them (jobstate.h). */
		park(e, c);
		return;
	}
	if (c->abandoned >= ENGINE_MAX_ABANDONED) {
		/* Running the step again would most likely kill this worker
		 * too: the job ends here, and the supervisor has already
		 * replaced the workers that died. */
		char msg[160];

		snprintf(msg, sizeof(msg),
			 "the worker running step '%s' died or stalled %d "
			 "times in a row (adapter %s)",
			 c->step, c->abandoned, c->adapter);
		dr_log(DR_LOG_ERR,
		       "event=job.worker_crashed job=%s step=%s adapter=%s "
		       "abandoned=%d",
		       c->id, c->step, c->adapter, c->abandoned);
		fail(e, c, c->step, c->step, "worker_crashed", msg);
		return;
	}
	if (c->cancel_requested) {
		step_cancel(e, c, inst);
		return;
	}
	if (strcmp(c->step, "persist") == 0) {
		if (count_attempt(e, c) == DR_OK) {
			o = pipeline_persist(&x);
			act(e, c, &o);
		}
		return;
	}
	if (!inst) {
		fail(e, c, c->step, c->step, "adapter_missing",
		     "the job's adapter is no longer configured");
		return;
	}
	if (c->training && !inst->plugin->desc->adapter->trainings) {
		/* Its plugin was replaced by one without trainings: it must
		 * not send the trainer as a prediction. */
		fail(e, c, c->step, c->step, "adapter_no_trainings",
		     "the job's adapter no longer runs trainings");
		return;
	}
	if (strcmp(c->step, "submit") == 0)
		step_submit(e, c, inst);
	else if (strcmp(c->step, "poll") == 0)
		step_poll(e, c, inst);
	else
		fail(e, c, c->step, c->step, "unknown_step",
		     "the job is at a step this darkroom does not know");
}
