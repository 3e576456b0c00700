/*
 * news.h - applying a provider's news about a prediction (a webhook, a
 * poll's answer, a submit's answer) to the job that owns it.
 *
 * News moves a job forward along jobstate.h's table: the prediction's
 * status names the job's next status (starting, processing; succeeded
 * hands the job to the persistence pipeline as persisting; failed,
 * aborted and canceled end it). News that would move a job backwards (a
 * late "processing" after "succeeded"), news for a job that ended or is
 * storing its outputs, and repeated deliveries are recorded in the job's
 * event log and otherwise ignored. Each piece of news is applied in one
 * transaction that locks the job row, so a webhook and a poll arriving
 * together cannot interleave.
 *
 * Who may call whom: news calls jobstate, db, metrics and log; the API
 * (webhooks) and the engine (its own polls and submits) call news. News
 * knows nothing of workers or steps.
 */
#ifndef DR_NEWS_H
#define DR_NEWS_H

#include <stdint.h>

#include "config.h"
#include "db.h"
#include "error.h"
#include "jobstate.h"

/* What news_apply() did with a piece of news. */
typedef enum dr_apply_result {
	DR_APPLY_CHANGED = 1, /* the job moved or gained information */
	DR_APPLY_IGNORED,     /* stale or for a job that already ended */
	DR_APPLY_DUPLICATE,   /* this delivery id was applied before */
	DR_APPLY_UNKNOWN      /* no job has this prediction */
} dr_apply_result;

/* The lease a worker's own news is written under (queue.h's claim). */
typedef struct news_fence {
	const char *id;		/* the claimed job */
	uint64_t lease_version; /* its fencing token */
} news_fence;

/* A prediction id is stored as it is (jobs.prediction_id): 1 to 64
 * printable ASCII characters (darkroom-plugin.h). */
#define NEWS_MAX_PREDICTION_ID 64
/* Characters of a training's new version kept (jobs.training_version). */
#define NEWS_MAX_TRAINED_VERSION 255

/* 1 when `id` can be stored as a prediction id. */
int news_prediction_id_ok(const char *id);

/*
 * Apply a normalised prediction from `source` ("webhook", "poll",
 * "submit", "reconcile") to the job that owns it: the job with (adapter,
 * prediction id) or, when none does yet, `job_hint` if that job is
 * waiting for its submit's answer (a webhook can arrive before the
 * create's answer is recorded, or instead of it after a crash) — and,
 * when `hint_at` is not 0, only if that is the attempt that began at
 * hint_at (microseconds since the epoch, carried in the webhook URL), so
 * a delivery for an earlier attempt's prediction never attaches to a
 * retried job. With a non-NULL `delivery_id` the delivery is recorded in
 * webhook_deliveries in the same transaction, so a duplicate is applied
 * at most once. One event is appended to the job's log in every case but
 * UNKNOWN. With `fence` the news must be for that job (UNKNOWN
 * otherwise) under that lease (DR_ERR_CONFLICT otherwise). The job's
 * status afterwards is written to status_out (may be NULL).
 * DR_ERR_INVALID when the prediction id cannot be stored. A transaction
 * killed by a deadlock is run again, up to DB_TX_TRIES times in all.
 * `cfg` gives [worker] provider_deadline and poll_min.
 */
dr_status news_apply(dr_db *db, const dr_config *cfg, const char *adapter,
		     const char *job_hint, int64_t hint_at,
		     const dr_prediction *p, const char *source,
		     const char *delivery_id, const news_fence *fence,
		     dr_apply_result *result, char status_out[16],
		     dr_error *err) DR_WARN_UNUSED;

/*
 * Whether applying `p` (delivery `delivery_id`, may be NULL) of `adapter`
 * may still record its outputs, read without locking before the files a
 * webhook carried are stored (blobs.h): *needed is 0 when the delivery
 * was applied before, or when the job holding the prediction is storing
 * its outputs already or has ended; 1 otherwise (also when no job holds
 * it yet: a hint may adopt it). Both only ever stay true, so news_apply
 * then records no outputs either.
 */
dr_status news_needs_files(dr_db *db, const char *adapter,
			   const dr_prediction *p, const char *delivery_id,
			   int *needed, dr_error *err) DR_WARN_UNUSED;

/* Free the members of a prediction filled by an adapter and zero it;
 * NULL is a no-op. */
void news_prediction_clear(dr_prediction *p);

#endif
