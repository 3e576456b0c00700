/*
 * engine.h - the job state machine: what happens at each step of a job
 * and how provider news (webhooks, polls, submit answers) moves it.
 *
 * Statuses only move forward:
 *   queued -> starting -> processing -> persisting -> succeeded
 * with failed and canceled reachable from any non-final status. News that
 * would move a job backwards (a late "processing" after "succeeded") is
 * recorded in the event log and otherwise ignored; so are duplicates.
 *
 * Steps (jobs.step) say what a worker does when the job is due:
 *   submit   start the prediction (or, after a crash mid-submit, find it)
 *   poll     ask the provider for news, as a safety net for lost webhooks
 *   persist  store the outputs (the persistence pipeline)
 * A cancel request (cancel_requested) takes precedence over any step.
 */
#ifndef DR_ENGINE_H
#define DR_ENGINE_H

#include "config.h"
#include "db.h"
#include "error.h"
#include "plugin.h"
#include "queue.h"

typedef struct dr_engine {
	const dr_config *cfg;
	dr_plugins *plugins;
	dr_db *db;
	char owner[64]; /* lease owner name: host:pid */
} dr_engine;

/* What engine_apply did with a piece of news. */
typedef enum dr_apply_result {
	DR_APPLY_CHANGED = 1, /* the job moved or gained information */
	DR_APPLY_IGNORED,     /* stale or for a job that already ended */
	DR_APPLY_DUPLICATE,   /* this delivery id was applied before */
	DR_APPLY_UNKNOWN      /* no job has this prediction */
} dr_apply_result;

/*
 * Apply a normalised prediction from `source` ("webhook", "poll",
 * "submit") to the job that owns it: the job with (adapter, prediction id)
 * or, when none does yet, `job_hint` if that job is waiting for its
 * submit's answer (a webhook can arrive before the create's answer is
 * recorded, or instead of it after a crash) — and, when `hint_at` is not
 * 0, only if that is the attempt that began at hint_at (microseconds since
 * the epoch, carried in the webhook URL), so a delivery for an earlier
 * attempt's prediction never attaches to a retried job. With a non-NULL
 * `delivery_id` the delivery is recorded in webhook_deliveries in the same
 * transaction, so a duplicate is applied at most once. One event is
 * appended to the job's log in every case but UNKNOWN. With `fence` the
 * write also requires that lease (the worker's own steps). The job's
 * status afterwards is written to status_out (may be NULL). A transaction
 * killed by a deadlock is run again, up to DB_TX_TRIES times in all.
 */
dr_status engine_apply(dr_db *db, const dr_config *cfg, const char *adapter,
		       const char *job_hint, int64_t hint_at,
		       const dr_prediction *p,
		       const char *source, const char *delivery_id,
		       const dr_claim *fence, dr_apply_result *result,
		       char status_out[16], dr_error *err) DR_WARN_UNUSED;

/* A job whose step was left unfinished by this many workers in a row (a
 * plugin that crashes the process, a step that hangs) fails with code
 * "worker_crashed" instead of being tried again. High enough that workers
 * killed from outside (a SIGKILL storm, an OOM kill, a redeploy) do not
 * fail the jobs they held; low enough that a crashing plugin stops after
 * a few replaced workers. */
#define ENGINE_MAX_ABANDONED 6

/* Run the due step of a claimed job, recording every outcome (new state,
 * retry time, failure) with the claim's fencing token. Logs and swallows
 * errors: a failed write leaves the job to its lease. */
void engine_run(dr_engine *e, dr_claim *c);

/* Append an event to job `id`'s log (detail: JSON text or NULL). */
dr_status engine_event(dr_db *db, const char *id, const char *kind,
		       const char *from, const char *to, const char *detail,
		       dr_error *err) DR_WARN_UNUSED;

/* A small JSON object for an event's detail (malloc): key, value string
 * pairs ending with NULL; pairs whose value is NULL are left out. */
char *engine_detail(const char *key, ...);

/* End a claimed job as failed at `step` with a stable `code` and a
 * message (fenced; a lost lease is logged and nothing is written). */
void engine_fail(dr_engine *e, const dr_claim *c, const char *step,
		 const char *code, const char *message);

/*
 * The delay to honour when a plugin asked for `asked` seconds
 * (dr_error.retry_after, a double any plugin may fill with anything):
 * `fallback` when it asked nothing usable (NaN, an infinity, 0 or less),
 * otherwise `asked` cut to QUEUE_MAX_DELAY (one day). Callers with a
 * tighter bound (a prediction's provider deadline) apply it as well.
 */
double engine_delay(double asked, double fallback);

/* Make a claimed job due again after `delay` seconds, or fail it when its
 * attempts are used up. `count`: whether this try counts toward
 * max_attempts; `forget_submit`: clear the mark that a submit may have
 * reached the provider (it surely did not). */
void engine_retry(dr_engine *e, const dr_claim *c, double delay, int count,
		  int forget_submit, const dr_error *why);

/* Free the members of a prediction filled by an adapter. */
void engine_prediction_clear(dr_prediction *p);

#endif
