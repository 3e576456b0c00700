/*
 * metrics.h - the counters and histograms behind GET /metrics, and the
 * Prometheus text exposition.
 *
 * Nothing is held in process memory: every counter is a row of
 * metric_counters (migrations/0003_metrics.sql) that writers bump with one
 * autocommit statement, so values survive restarts and add up across the
 * FastCGI app and every worker process without shared memory. Gauges (jobs
 * by status, queue depth, workers alive) and the predict_time total are
 * read live from the database at scrape time.
 *
 * Recording never fails its caller: a write that does not succeed is logged
 * at debug level and forgotten (a metric is not worth failing a job for).
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
 * metrics_labels(), "" for none). */
void metrics_add(dr_db *db, const char *name, const char *labels,
		 double value);

/*
 * Observe `seconds` in the histogram `name` (without _bucket) for
 * `labels`: every cumulative bucket whose bound is >= seconds, _sum and
 * _count, in one statement.
 */
void metrics_observe(dr_db *db, const char *name, const char *labels,
		     double seconds);

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
