/*
 * jobstate.h - the job's life: its seven statuses, the moves allowed
 * between them, the event log, and every write of a job row that changes
 * its status or its place in the queue.
 *
 * A workflow (kind workflow) calls no provider: its steps are jobs of
 * their own (parent_id), and it follows them in the transactions that
 * move them (forward only: starting at its first step's submit,
 * processing until its last step persists, then persisting and
 * succeeded; a step's failure or cancel ends it so; a succeeded step makes
 * the next one due).
 *
 * Statuses only move forward:
 *   queued -> starting -> processing -> persisting -> succeeded
 * (a step may be skipped), with failed and canceled reachable from any
 * status that has not ended; a client's retry takes a failed or canceled
 * job back to queued, or a failed one whose outputs were being stored back
 * to persisting. jobstate_allowed() is that table.
 *
 * This module is the only one that writes jobs.status or inserts into
 * job_events, callback_deliveries or callback_attempts (every end of a job
 * with a callback_url opens the delivery of that end, in the same
 * transaction); the queue (queue.h) keeps its claim and lease writes, which
 * never touch the status. It knows nothing of workers, steps or plugins:
 * each write takes a database handle, a job id and, for a worker's write,
 * the fence (the lease_version of the claim, queue.h). A fenced write that
 * matches no row changes nothing and answers DR_ERR_CONFLICT with code
 * "lease_lost": the lease was lost, or the job ended meanwhile.
 *
 * Who may call whom (lowest first): error, buf, log, db, queue -> jobstate ->
 * news -> pipeline, callback -> engine -> worker; api and the CLI call
 * jobstate (a client's cancel and retry) and news (webhooks). jobstate
 * calls nothing above db, queue (its delay and fencing rules) and log.
 */
#ifndef DR_JOBSTATE_H
#define DR_JOBSTATE_H

#include <stdint.h>

#include "db.h"
#include "error.h"

typedef enum dr_job_status {
	DR_JOB_QUEUED = 0,
	DR_JOB_STARTING,
	DR_JOB_PROCESSING,
	DR_JOB_PERSISTING,
	DR_JOB_SUCCEEDED,
	DR_JOB_FAILED,
	DR_JOB_CANCELED
} dr_job_status;

#define DR_JOB_STATUSES 7

/* The names in order, for messages that list them. */
#define JOBSTATE_NAMES                                                         \
	"queued, starting, processing, persisting, succeeded, failed, "        \
	"canceled"

/* The status's name as stored and shown ("queued"); "unknown" for a
 * value outside the enum. Static, never NULL. */
const char *jobstate_name(dr_job_status s);

/* 1 with *out set when `s` (may be NULL) names a status exactly, else 0
 * (*out untouched). */
int jobstate_parse(const char *s, dr_job_status *out);

/* 1 for succeeded, failed and canceled: the job has ended. */
int jobstate_is_final(dr_job_status s);

/* The status's place on the forward path: queued 0, starting 1,
 * processing 2, persisting 3, and 4 for every ended status. */
int jobstate_rank(dr_job_status s);

/* 1 when a job may move from `from` to `to` (the table in the header
 * comment); 0 for every other pair, including from == to (staying put is
 * not a move). */
int jobstate_allowed(dr_job_status from, dr_job_status to);

/*
 * Append an event to job `id`'s log: `kind` (status, submit, webhook…),
 * the status it came from and went to (names, either may be NULL) and
 * `detail` (JSON text or NULL). Runs in the caller's transaction when one
 * is open.
 */
dr_status jobstate_event(dr_db *db, const char *id, const char *kind,
			 const char *from, const char *to, const char *detail,
			 dr_error *err) DR_WARN_UNUSED;

/*
 * The "created" event (to queued) of each of the n jobs ids[i], with the
 * same `detail`, in the caller's open transaction: multi-row statements
 * (db_insert_rows()), for the jobs of a batch.
 */
dr_status jobstate_events_created(dr_db *db, const char *const *ids, size_t n,
				  const char *detail,
				  dr_error *err) DR_WARN_UNUSED;

/* A small JSON object for an event's detail (malloc, the caller frees):
 * key, value string pairs ending with NULL; pairs whose value is NULL are
 * left out. A detail too large is cut to the pairs that fit. */
char *jobstate_detail(const char *key, ...);

/* `s` as well-formed UTF-8 of at most `max_chars` characters (malloc, the
 * caller frees), or NULL for NULL: text for a column of that size. */
char *jobstate_column_text(const char *s, size_t max_chars);

/* Characters of jobs.error_message (migrations/0001_init.sql). */
#define JOBSTATE_MAX_ERROR_MESSAGE 1024

/* ------------------------------------------------ a worker's (fenced) */

/*
 * End job `id` as failed at `step` with a stable `code` and `message`
 * (cut to the column, NULL for none), if lease `fence` still holds and
 * the job has not ended, with a "status" event, in one transaction. The
 * callback, if any, becomes due. The status it left is written to `from`
 * (may be NULL). DR_ERR_CONFLICT (code lease_lost) when the lease was
 * lost or the job ended meanwhile.
 */
dr_status jobstate_fail(dr_db *db, const char *id, uint64_t fence,
			const char *step, const char *code, const char *message,
			char from[16], dr_error *err) DR_WARN_UNUSED;

/* How jobstate_retry() schedules the next try of a step. */
typedef struct jobstate_retry_opts {
	double delay;	     /* seconds until due (clamped as queue_delay_us) */
	int count_attempt;   /* this try counts toward [worker] max_attempts */
	int forget_submit;   /* the submit surely never reached the provider:
				clear submitted_at */
	const char *from;    /* the job's status, for the event */
	const char *step;    /* the step (or sub-step) that failed */
	const dr_error *why; /* what failed (code, message) */
} jobstate_retry_opts;

/*
 * Make job `id` due again after o->delay seconds and give up lease
 * `fence`, with a "retry_scheduled" event (a failure to write the event
 * is logged, not returned). A try that does not count gives back the
 * attempt its step counted. The delay actually scheduled is written to
 * `scheduled` (may be NULL). DR_ERR_CONFLICT when the lease was lost.
 * Deciding whether the attempts are used up is the caller's business.
 */
dr_status jobstate_retry(dr_db *db, const char *id, uint64_t fence,
			 const jobstate_retry_opts *o, double *scheduled,
			 dr_error *err) DR_WARN_UNUSED;

/*
 * In the caller's open transaction: end job `id`, in persisting under
 * lease `fence`, as succeeded (step done, progress 1, callback due), with
 * its "status" event. DR_ERR_CONFLICT when the lease was lost or the job
 * is no longer persisting; the caller then rolls back.
 */
dr_status jobstate_succeed(dr_db *db, const char *id, uint64_t fence,
			   dr_error *err) DR_WARN_UNUSED;

/*
 * End job `id` as canceled by its client (the worker's side of a cancel
 * request, after the provider was told), if lease `fence` still holds
 * and the job has not ended: outputs still pending are dropped and the
 * callback becomes due, with a "status" event, in one transaction. The
 * status it left is written to `from` (may be NULL). DR_ERR_CONFLICT
 * when the lease was lost or the job ended meanwhile.
 */
dr_status jobstate_cancel(dr_db *db, const char *id, uint64_t fence,
			  char from[16], dr_error *err) DR_WARN_UNUSED;

/* Record that a submit of job `id` starts now (`at`: epoch seconds with
 * microseconds as text, "1700000000.123456"): submitted_at, one more
 * attempt. DR_ERR_CONFLICT when lease `fence` was lost. */
dr_status jobstate_submitting(dr_db *db, const char *id, uint64_t fence,
			      const char *at, dr_error *err) DR_WARN_UNUSED;

/* Count one more attempt of job `id` (a step with no other place to
 * count it). DR_ERR_CONFLICT when lease `fence` was lost. */
dr_status jobstate_count_attempt(dr_db *db, const char *id, uint64_t fence,
				 dr_error *err) DR_WARN_UNUSED;

/* Take job `id` off the queue (nothing is due) and give up lease
 * `fence`. DR_ERR_CONFLICT when the lease was lost. */
dr_status jobstate_park(dr_db *db, const char *id, uint64_t fence,
			dr_error *err) DR_WARN_UNUSED;

/* One try of a callback delivery, as the worker records it. */
typedef struct jobstate_callback_try {
	const char *delivery; /* the delivery's id (its webhook-id) */
	const char *state;    /* afterwards: "pending" (tried again after
				 `delay`), "delivered" or "failed" */
	double delay;	      /* seconds until the next try, when pending */
	long http;	      /* the answer's HTTP status, 0 for none */
	const char *error;    /* what failed, NULL when delivered */
	double duration;      /* seconds the try took */
	const char *from;     /* the job's status, for the event */
	const char *detail;   /* the "callback" event's detail, or NULL */
} jobstate_callback_try;

/*
 * In the caller's transaction: make ended job `id` due at the earliest
 * next try of the deliveries it carries (its own end's, a batch's it
 * completed), or never when none is pending. A job that has not ended
 * keeps its run_at: its steps own it, and its end calls this.
 */
dr_status jobstate_due_for_deliveries(dr_db *db, const char *id,
				      dr_error *err) DR_WARN_UNUSED;

/*
 * Record try `t` of pending delivery t->delivery of ended job `id`, in
 * one transaction: the delivery's attempts, state, last status and error,
 * next_at (NULL unless pending) and delivered_at; its attempt row
 * (callback_attempts, the error cut to JOBSTATE_MAX_ERROR_MESSAGE); the
 * job due again after t->delay when pending, else off the queue; lease
 * `fence` given up; and the "callback" event when t->detail is set.
 * DR_ERR_CONFLICT (code lease_lost), and nothing written, when the lease
 * was lost or the delivery is no longer pending (its client re-armed or
 * dropped it).
 */
dr_status jobstate_callback_tried(dr_db *db, const char *id, uint64_t fence,
				  const jobstate_callback_try *t,
				  dr_error *err) DR_WARN_UNUSED;

/* -------------------------------------------------- provider news */

/* What a provider's news writes to a job (news.h decides it). */
typedef struct jobstate_news {
	dr_job_status to;	       /* the status afterwards */
	const char *prediction_id;     /* kept when one is recorded */
	const char *prediction_status; /* the provider's word */
	const char *raw_json;	       /* the prediction as sent, or NULL */
	const char *predict_time;      /* seconds as text, negative: none */
	const char *progress;	       /* 0..1 as text */
	const char *version;	       /* or NULL */
	const char *error_code;	       /* when `to` is failed */
	const char *error_message;     /* when `to` is failed */
	int adopt;	    /* the job's submit had no answer: it adopts this
			       prediction, moves to its poll step and gets a
			       provider deadline */
	int fenced;	    /* the lease holder's own news */
	int64_t deadline_s; /* [worker] provider_deadline */
	double poll_min;    /* [worker] poll_min */
} jobstate_news;

/*
 * In the caller's open transaction, with job `id`'s row locked: write
 * news `n`. Moving to persisting sets the persist step and makes the job
 * due now; an ended job's callback becomes due. News from outside the
 * lease holder that ends the job or hands it to the pipeline also
 * fences out a worker still holding it. The caller checked the move with
 * jobstate_allowed() and writes the event.
 */
dr_status jobstate_news_write(dr_db *db, const char *id, const jobstate_news *n,
			      dr_error *err) DR_WARN_UNUSED;

/* ------------------------------------------------------- a client's */

/*
 * Cancel job `id` for its client: a queued job becomes canceled at once
 * (fencing out any worker that just claimed it; with a callback_url, its
 * callback becomes pending and due now: the caller wakes the workers); a
 * running job gets cancel_requested and is made due so a worker cancels
 * it at the provider (and owes the callback then). DR_ERR_NOT_FOUND, or
 * DR_ERR_CONFLICT (code job_ended) when it already ended. A transaction
 * killed by a deadlock is run again (DB_TX_TRIES in all). A workflow is
 * canceled through its step that has not succeeded, and follows that
 * step's end. A workflow's step: DR_ERR_CONFLICT, code step_of_workflow
 * (its client acts on the workflow).
 */
dr_status jobstate_client_cancel(dr_db *db, const char *id,
				 dr_error *err) DR_WARN_UNUSED;

/*
 * Restart a failed or canceled job from the step that failed (attempts
 * reset, error cleared; a callback delivery of the old end still pending
 * is dropped (failed): its next end is a new delivery); a failure while storing
 * outputs resumes at persisting with a new download budget. DR_ERR_NOT_FOUND,
 * or DR_ERR_CONFLICT (code job_not_retryable) for a job in any other state.
 * Deadlocks are run again as for jobstate_client_cancel(). A workflow
 * resumes at its first step that has not succeeded (retried as above;
 * the steps before it never run again) and takes the status that step
 * gives it: queued (its first step), persisting (its last, storing
 * again) or processing. A workflow's step: as for jobstate_client_cancel().
 */
dr_status jobstate_client_retry(dr_db *db, const char *id,
				dr_error *err) DR_WARN_UNUSED;

/*
 * Deliver the callback of ended job `id` again, for its client (Svix's
 * resend): its latest delivery, delivered or given up, becomes pending
 * and due now with the same webhook-id (the same message), Svix's
 * schedule starting again from its first wait while its tries so far
 * stay counted; a "callback" event {"delivery": "requested"} is
 * recorded; the caller wakes the workers. DR_ERR_NOT_FOUND, or DR_ERR_CONFLICT
 * with code job_not_ended, no_callback_url or callback_pending (being
 * delivered). Deadlocks are run again as for jobstate_client_cancel().
 */
dr_status jobstate_client_callback_retry(dr_db *db, const char *id,
					 dr_error *err) DR_WARN_UNUSED;

#endif
