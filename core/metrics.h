/*
 * metrics.h - the counters and histograms behind GET /metrics, and the
 * Prometheus text exposition.
 *
 * Every counter is a row of metric_counters (migrations/0003_metrics.sql),
 * so values survive restarts and add up across the FastCGI app and every
 * worker process without shared memory. A process gathers its increments
 * in memory and writes them in one transaction at most once a second
 * (metrics_flush), not one durable commit per event: at webhook rates the
 * per-event upserts of a few hot rows cost more than the webhook itself. A
 * process killed outright loses at most its last second of increments.
 * Gauges (jobs by status, queue depth, workers alive) and the predict_time
 * total are read live from the database at scrape time.
 *
 * Recording never fails its caller: a write that does not succeed is logged
 * at debug level and forgotten (a metric is not worth failing a job for).
 * Not thread-safe (one process, one thread); a child of fork() starts with
 * nothing pending, so increments are never written twice.
 */
#ifndef DR_METRICS_H
#define DR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "db.h"
#include "error.h"

#define DR_METRICS_LABELS_MAX 256 /* stored label text, metric_counters */

/*
 * Build the label text `k1="v1",k2="v2"` from NULL-terminated key/value
 * pairs into out (size outsz), escaping \\, \" and newlines in the values
 * as the text format wants. A value that does not fit is cut (the labels
 * stay well-formed). Returns out.
 */
char *metrics_labels(char *out, size_t outsz, const char *key, ...);

/* Add `value` to the counter sample `name`{labels} (labels as built by
 * metrics_labels(), "" for none). Written by the next metrics_flush();
 * one is due when the oldest pending increment is a second old. */
void metrics_add(dr_db *db, const char *name, const char *labels,
		 double value);

/*
 * Observe `seconds` in the histogram `name` (without _bucket) for
 * `labels`: every cumulative bucket whose bound is >= seconds, _sum and
 * _count, in one statement.
 */
void metrics_observe(dr_db *db, const char *name, const char *labels,
		     double seconds);

/*
 * Write the pending increments of this process to `db` in one transaction
 * (nothing to do: no statement). `force` 0 writes only when a flush is due
 * (the oldest increment is a second old), 1 writes whatever is pending:
 * before a scrape, on the way out, when idle. Increments that cannot be
 * written are logged at debug level and dropped.
 */
void metrics_flush(dr_db *db, int force);

/* Whether increments are pending (a caller that sleeps can wake to flush
 * them after at most metrics_flush_delay() seconds). */
int metrics_pending(void);
double metrics_flush_delay(void);

/* A step duration: darkroom_step_duration_seconds{step=...}. */
void metrics_step(dr_db *db, const char *step, double seconds);

/* The outcome of one call to a provider: darkroom_provider_responses_total
 * {adapter, status}, status "ok", "429" (rate limited) or "error". */
void metrics_provider(dr_db *db, const char *adapter, dr_status st);

/* Observe the provider run of job `id` (submitted_at to now) once its
 * prediction reached a final status. */
void metrics_provider_run(dr_db *db, const char *id);

/* Worker liveness: record that process `owner` (host:pid) is alive now;
 * metrics_heartbeat_clear() forgets it when it stops cleanly. */
void metrics_heartbeat(dr_db *db, const char *owner, long pid,
		       const char *host);
void metrics_heartbeat_clear(dr_db *db, const char *owner);

/* Seconds on a monotonic clock, for timing steps. */
double metrics_now(void);

/*
 * Append the whole exposition (Prometheus text format 0.0.4) to `out`.
 * DR_ERR_UNAVAILABLE / DR_ERR_DATABASE when the database does not answer.
 */
dr_status metrics_render(dr_db *db, dr_buf *out, dr_error *err)
	DR_WARN_UNUSED;

#endif
