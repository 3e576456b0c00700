/*
 * deletion.h - deleting jobs: one by id, many by a metadata selector, and
 * the ended jobs older than [retention] jobs.
 *
 * Deleting a job removes, in one transaction: the job row, its callback
 * deliveries (a pending one included) and their attempts, its outputs and
 * renditions, metadata, events and the idempotency keys that named it; and one
 * reference from `objects` for every key its outputs and renditions used
 * (objects.h). An object whose last reference went is queued for removal at
 * once; the worker removes it from the sink after the commit
 * (objects_remove_due), retrying a sink that fails. Storage is
 * content-addressed, so an object another job still uses stays. Only an ended
 * job (succeeded, failed, canceled) is deleted: one that has not ended may
 * still write rows and objects. Job ids are ULIDs made from the clock and 80
 * random bits, so a deleted job's id is never made again.
 *
 * Every deletion leaves an audit record, a `deletions` row
 * (0010_deletions.sql) that retention never removes: when, by which API key
 * (its scope, as idempotency keys have it) or 'cli' or 'retention', what
 * selector, how many jobs and objects. Its JSON (GET /v1/deletions/{id}):
 *
 *   {"id": "d_…", "kind": "job" | "selector" | "retention",
 *    "state": "queued" | "running" | "done",
 *    "selector": {...}, "requested_by": "…",
 *    "counts": {"jobs_deleted": n, "jobs_waiting": n,
 *               "objects_released": n},
 *    "created_at": "…", "finished_at": "…" | null}
 *
 * A selector deletion (DELETE /v1/jobs?metadata.K=V) is written queued and
 * done by the first worker process in batches of DR_DELETION_BATCH jobs, a
 * transaction each: jobs created up to the request (its cutoff) whose
 * metadata matches every filter. A matching job that has not ended is
 * canceled (as POST /v1/jobs/{id}/cancel does) and counted as waiting; the
 * deletion stays running and looks again every DR_DELETION_RECHECK seconds
 * until none is left, then it is done.
 *
 * [retention] jobs (and per status: succeeded, failed, canceled) deletes
 * ended jobs by completed_at, the same way, from the worker and `darkroom
 * prune`; a pass that deleted any leaves one 'retention' record.
 *
 * Place in the layer order: uses db, config, ids, log, metrics, jobs (the
 * metadata filter limits), jobstate (cancel) and objects; called by api,
 * cli_main and worker.
 */
#ifndef DR_DELETION_H
#define DR_DELETION_H

#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "db.h"
#include "error.h"
#include "jobs.h"

#define DR_DELETION_ID_LEN DR_JOB_ID_LEN /* "d_" + 26 */
/* Jobs one transaction deletes at most. */
#define DR_DELETION_BATCH 100
/* Seconds a selector deletion waits for canceled jobs to end. */
#define DR_DELETION_RECHECK 5.0
/* Seconds a selector deletion whose batch failed waits. */
#define DR_DELETION_RETRY 60.0

/* What a deletion did. */
typedef struct dr_deletion_counts {
	uint64_t jobs_deleted;
	uint64_t jobs_waiting;	   /* matched, not ended: canceled */
	uint64_t objects_released; /* last reference gone: queued removal */
} dr_deletion_counts;

/*
 * Delete job `id` and leave its audit record (kind 'job', state done,
 * requested by `by`: an API key's scope or "cli"), one transaction
 * (retried after a deadlock). deletion_id (DR_DELETION_ID_LEN + 1 bytes,
 * may be NULL) gets the record's id, *c (may be NULL) the counts.
 * DR_ERR_NOT_FOUND (code not_found) when there is no such job;
 * DR_ERR_CONFLICT (code job_not_ended) when it has not ended.
 */
dr_status deletion_delete_job(dr_db *db, const char *id, const char *by,
			      char *deletion_id, dr_deletion_counts *c,
			      dr_error *err) DR_WARN_UNUSED;

/*
 * Record a selector deletion of the jobs whose metadata has every one of
 * meta[0..n) (checked with jobs_check_metadata_filters(); 1 at least),
 * created up to now, requested by `by`; state queued, due now. Its id goes
 * to `deletion_id` (DR_DELETION_ID_LEN + 1 bytes). DR_ERR_INVALID (code
 * invalid_parameter) without a filter.
 */
dr_status deletion_request(dr_db *db, const dr_metadata_filter *meta, size_t n,
			   const char *by, char *deletion_id,
			   dr_error *err) DR_WARN_UNUSED;

/*
 * Run deletion `id` one batch further: delete up to DR_DELETION_BATCH of
 * its ended jobs (one transaction); when fewer are left, cancel the ones
 * that have not ended and either finish it (none left: done) or look again
 * in DR_DELETION_RECHECK seconds. *more is 1 when it has more to do now.
 * The record's counts are updated in the same transaction as the jobs
 * they count. A deletion already done (by another process meanwhile:
 * the worker and a command may run the same one) is DR_OK with *more 0;
 * an unknown one DR_ERR_NOT_FOUND.
 */
dr_status deletion_run_batch(dr_db *db, const char *id, int *more,
			     dr_error *err) DR_WARN_UNUSED;

/* Append deletion `id` as JSON (the top of this file). DR_ERR_NOT_FOUND
 * when there is none. */
dr_status deletion_render(dr_db *db, const char *id, dr_buf *out,
			  dr_error *err) DR_WARN_UNUSED;

/* 1 when `s` has the shape of a deletion id ("d_" and a ULID). */
int deletion_id_valid(const char *s);

/* [retention] jobs: the setting (seconds, 0 off) for ended status `s`
 * ("succeeded", "failed", "canceled"). */
double deletion_job_retention(const dr_config *cfg, const char *status);

/* Count the ended jobs older than their status's setting into *n. */
dr_status deletion_count_expired(dr_db *db, const dr_config *cfg, uint64_t *n,
				 dr_error *err) DR_WARN_UNUSED;

/* A pass of [retention] jobs: who runs it ("retention", "cli"), its
 * audit record (made by the first batch that deletes jobs, "" until
 * then), and what it deleted. Zero it and set `by` first. */
typedef struct dr_expiry {
	const char *by;
	char record[DR_DELETION_ID_LEN + 1];
	dr_deletion_counts c;
} dr_expiry;

/*
 * Delete up to `batch` (at most DR_DELETION_BATCH) expired jobs in one
 * transaction, status by status (succeeded, failed, canceled; those off
 * skipped), oldest completed_at first within each along jobs_ended; the
 * same transaction makes or adds to the pass's audit record (kind
 * retention, state running), so a pass cut short leaves a truthful one.
 * x->c is added to. *more is 1 when the batch was full (there may be
 * more).
 */
dr_status deletion_expired_batch(dr_db *db, const dr_config *cfg,
				 unsigned batch, dr_expiry *x, int *more,
				 dr_error *err) DR_WARN_UNUSED;

/* The pass is over: its audit record (if it made one) is done. */
dr_status deletion_expiry_done(dr_db *db, const dr_expiry *x,
			       dr_error *err) DR_WARN_UNUSED;

/* The worker's place: zero it first. */
typedef struct dr_deletion_pass {
	double next_expired; /* monotonic time of the next retention
				pass */
	int expiring;	     /* a retention pass is under way */
	dr_expiry expired;   /* this retention pass */
	double next_check;   /* monotonic time to look for deletions */
} dr_deletion_pass;

/*
 * The worker's share, one batch per call: a due selector deletion first
 * (looked for at most every second), then the retention pass over jobs
 * (at the first call, then every `interval` seconds). Logs failures and the end
 * of a retention pass that deleted jobs. Returns 1 while there is more to do
 * soon.
 */
int deletion_step(dr_deletion_pass *p, dr_db *db, const dr_config *cfg,
		  double interval, double now);

#endif
