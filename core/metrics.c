/*
 * metrics.c - counters, histograms and the Prometheus exposition (see
 * metrics.h).
 *
 * Why the database and not memory: the FastCGI app runs as several
 * processes the web server starts and stops at will, and the worker is a
 * pool of forked children; an in-memory counter would be per process and
 * lost at each restart. Rows bumped with INSERT ... ON DUPLICATE KEY
 * UPDATE are exact across all of them. Why not one statement per event:
 * each would be a durable commit on one of a few hot rows, which at
 * webhook rates costs more than the webhook (two extra commits, and the
 * writers queue on the row locks). So a process sums its increments in a
 * small table here and writes them in one transaction when the oldest is
 * FLUSH_AFTER old, when the table fills, or when told (metrics_flush).
 * Histograms are stored cumulatively (each observation bumps every bucket
 * whose bound it does not exceed), so the scrape only reads rows.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Bucket bounds of every duration histogram (seconds). The X-macro keeps
 * the labels and bounds of metrics_observe() and the exposition in step. */
#define DR_BUCKETS(X)                                                         \
	X(0.005) X(0.01) X(0.025) X(0.05) X(0.1) X(0.25) X(0.5) X(1) X(2.5)   \
	X(5) X(10) X(30) X(60) X(120) X(300) X(600)
#define BUCKET_STR(b) #b,
#define BUCKET_NUM(b) b,

static const char *const bucket_bounds[] = {DR_BUCKETS(BUCKET_STR) "+Inf"};
static const double bucket_values[] = {DR_BUCKETS(BUCKET_NUM) 1e308};
#define N_BUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

/* The increments not yet written. A histogram observation takes
 * N_BUCKETS + 2 samples, so the table holds a dozen distinct histograms
 * and counters before it must be written early. */
#define PENDING_MAX 256
#define FLUSH_AFTER 1.0 /* seconds the oldest increment may wait */

typedef struct pending {
	char name[64];
	char labels[DR_METRICS_LABELS_MAX + 16]; /* + le="..." */
	double value;
} pending;

static pending pend[PENDING_MAX];
static size_t n_pend;
static double pend_since; /* metrics_now() of the oldest increment */
static int hooks_set; /* atfork and db_free hooks registered */

/* The steps whose durations are observed, in exposition order. */
static const char *const steps[] = {"submit", "provider_run", "download",
				    "render", "upload",       "index"};

#define STEP_HISTOGRAM "darkroom_step_duration_seconds"
#define HEARTBEAT_ALIVE "15" /* seconds: a worker seen since is alive */

double metrics_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Append `s` escaped for a label value into out[*n..], keeping room for
 * the closing quote and NUL; cut at the limit. */
static void escape_into(char *out, size_t outsz, size_t *n, const char *s)
{
	for (; *s; s++) {
		const char *rep = NULL;
		char one[2] = {*s, '\0'};

		if (*s == '\\')
			rep = "\\\\";
		else if (*s == '"')
			rep = "\\\"";
		else if (*s == '\n')
			rep = "\\n";
		else
			rep = one;
		if (*n + strlen(rep) + 2 >= outsz)
			return;
		memcpy(out + *n, rep, strlen(rep));
		*n += strlen(rep);
	}
}

char *metrics_labels(char *out, size_t outsz, const char *key, ...)
{
	va_list ap;
	size_t n = 0;

	if (outsz == 0)
		return out;
	out[0] = '\0';
	va_start(ap, key);
	for (const char *k = key; k; k = va_arg(ap, const char *)) {
		const char *v = va_arg(ap, const char *);
		size_t klen = strlen(k);

		if (n + klen + 6 >= outsz)
			break;
		if (n)
			out[n++] = ',';
		memcpy(out + n, k, klen);
		n += klen;
		out[n++] = '=';
		out[n++] = '"';
		escape_into(out, outsz, &n, v ? v : "");
		out[n++] = '"';
		out[n] = '\0';
	}
	va_end(ap);
	out[n] = '\0';
	return out;
}

/* A child of fork() must not write its parent's increments again. */
static void forget_pending(void)
{
	n_pend = 0;
}

int metrics_pending(void)
{
	return n_pend > 0;
}

double metrics_flush_delay(void)
{
	double left;

	if (!n_pend)
		return -1;
	left = pend_since + FLUSH_AFTER - metrics_now();
	return left > 0 ? left : 0;
}

void metrics_flush(dr_db *db, int force)
{
	dr_error err;
	size_t i;

	if (!n_pend || db_in_transaction(db))
		return;
	if (!force && metrics_now() - pend_since < FLUSH_AFTER)
		return;
	dr_error_clear(&err);
	if (db_begin(db, &err) != DR_OK)
		goto failed;
	for (i = 0; i < n_pend; i++)
		if (db_exec(db,
			    "INSERT INTO metric_counters (name, labels, value)"
			    " VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE"
			    " value = value + VALUES(value)",
			    NULL, &err,
			    DB_ARGS(DB_STR(pend[i].name),
				    DB_STR(pend[i].labels),
				    DB_DBL(pend[i].value))) != DR_OK) {
			db_rollback(db);
			goto failed;
		}
	if (db_commit(db, &err) != DR_OK)
		goto failed;
	n_pend = 0;
	return;
failed:
	dr_log(DR_LOG_DEBUG,
	       "event=metrics.write_failed samples=%zu code=%s", n_pend,
	       err.code);
	n_pend = 0;
}

/* A handle about to close writes what is pending (a process's last). */
static void flush_on_free(dr_db *db)
{
	metrics_flush(db, 1);
}

/* Sum `value` into the pending sample name{labels}. */
static void pend_add(dr_db *db, const char *name, const char *labels,
		     double value)
{
	size_t i;

	if (!hooks_set) {
		pthread_atfork(NULL, NULL, forget_pending);
		db_set_free_hook(flush_on_free);
		hooks_set = 1;
	}
	for (i = 0; i < n_pend; i++)
		if (strcmp(pend[i].name, name) == 0 &&
		    strcmp(pend[i].labels, labels) == 0) {
			pend[i].value += value;
			return;
		}
	if (n_pend == PENDING_MAX) {
		metrics_flush(db, 1);
		if (n_pend == PENDING_MAX)
			return; /* inside a transaction: dropped */
	}
	if (!n_pend)
		pend_since = metrics_now();
	snprintf(pend[n_pend].name, sizeof(pend[n_pend].name), "%s", name);
	snprintf(pend[n_pend].labels, sizeof(pend[n_pend].labels), "%s",
		 labels);
	pend[n_pend].value = value;
	n_pend++;
}

void metrics_add(dr_db *db, const char *name, const char *labels,
		 double value)
{
	pend_add(db, name, labels, value);
	metrics_flush(db, 0);
}

void metrics_observe(dr_db *db, const char *name, const char *labels,
		     double seconds)
{
	char sample[64], le[DR_METRICS_LABELS_MAX + 16];
	size_t i;

	if (seconds < 0)
		seconds = 0;
	snprintf(sample, sizeof(sample), "%s_bucket", name);
	for (i = 0; i < N_BUCKETS; i++) {
		snprintf(le, sizeof(le), "%s%sle=\"%s\"", labels,
			 *labels ? "," : "", bucket_bounds[i]);
		pend_add(db, sample, le, seconds <= bucket_values[i] ? 1 : 0);
	}
	snprintf(sample, sizeof(sample), "%s_sum", name);
	pend_add(db, sample, labels, seconds);
	snprintf(sample, sizeof(sample), "%s_count", name);
	pend_add(db, sample, labels, 1);
	metrics_flush(db, 0);
}

void metrics_step(dr_db *db, const char *step, double seconds)
{
	char labels[DR_METRICS_LABELS_MAX];

	metrics_labels(labels, sizeof(labels), "step", step, NULL);
	metrics_observe(db, STEP_HISTOGRAM, labels, seconds);
}

void metrics_provider(dr_db *db, const char *adapter, dr_status st)
{
	char labels[DR_METRICS_LABELS_MAX];

	metrics_labels(labels, sizeof(labels), "adapter", adapter, "status",
		       st == DR_OK			 ? "ok"
		       : st == DR_ERR_RATE_LIMITED ? "429"
						   : "error",
		       NULL);
	metrics_add(db, "darkroom_provider_responses_total", labels, 1);
}

void metrics_provider_run(dr_db *db, const char *id)
{
	dr_db_rows *rows = NULL;
	dr_error err;

	dr_error_clear(&err);
	if (db_query(db,
		     "SELECT TIMESTAMPDIFF(MICROSECOND, submitted_at, NOW(6))"
		     " / 1e6 FROM jobs WHERE id = ? AND submitted_at IS NOT"
		     " NULL",
		     &rows, &err, DB_ARGS(DB_STR(id))) != DR_OK) {
		dr_log(DR_LOG_DEBUG,
		       "event=metrics.read_failed metric=provider_run code=%s",
		       err.code);
		return;
	}
	if (rows->n_rows == 1 && db_cell(rows, 0, 0))
		metrics_step(db, "provider_run",
			     strtod(db_cell(rows, 0, 0), NULL));
	db_rows_free(rows);
}

void metrics_heartbeat(dr_db *db, const char *owner, long pid,
		       const char *host)
{
	dr_error err;

	dr_error_clear(&err);
	if (db_exec(db,
		    "INSERT INTO worker_heartbeats (owner, pid, host, seen_at)"
		    " VALUES (?, ?, ?, NOW(6)) ON DUPLICATE KEY UPDATE"
		    " seen_at = NOW(6)",
		    NULL, &err,
		    DB_ARGS(DB_STR(owner), DB_INT((int64_t)pid),
			    DB_STR(host))) != DR_OK)
		dr_log(DR_LOG_DEBUG,
		       "event=metrics.heartbeat_failed owner=%s code=%s", owner,
		       err.code);
}

void metrics_heartbeat_clear(dr_db *db, const char *owner)
{
	dr_error err;

	dr_error_clear(&err);
	if (db_exec(db,
		    "DELETE FROM worker_heartbeats WHERE owner = ?"
		    " OR seen_at < NOW(6) - INTERVAL 1 DAY",
		    NULL, &err, DB_ARGS(DB_STR(owner))) != DR_OK)
		dr_log(DR_LOG_DEBUG,
		       "event=metrics.heartbeat_failed owner=%s code=%s", owner,
		       err.code);
}

/* ------------------------------------------------------------ exposition */

/* Counter families kept in metric_counters. */
static const struct {
	const char *name;
	const char *help;
} counters[] = {
	{ "darkroom_webhook_deliveries_total",
	  "Provider webhook deliveries by adapter and result (accepted, "
	  "duplicate, ignored, unknown, bad_signature)." },
	{ "darkroom_provider_responses_total",
	  "Answers of providers to darkroom's calls by adapter and status (ok, "
	  "429, error)." },
	{ "darkroom_downloaded_bytes_total",
	  "Bytes of outputs downloaded from providers." },
	{ "darkroom_stored_bytes_total",
	  "Bytes written to the output sink (outputs and renditions)." },
	{ "darkroom_jobs_deleted_total",
	  "Jobs deleted by kind of deletion (job: by id; selector: by "
	  "metadata; retention: by age)." },
	{ "darkroom_objects_removed_total",
	  "Stored objects removed from the sink once no row used them." },
	{ "darkroom_rate_limited_total",
	  "Jobs put off by their adapter's create-rate limit (a slot booked "
	  "or a place in line), by adapter." },
};

typedef struct expo {
	dr_buf *b;
	int full;
} expo;

static void emit(expo *x, const char *fmt, ...) DR_PRINTF(2, 3);

static void emit(expo *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (dr_buf_vprintf(x->b, fmt, ap) != DR_OK)
		x->full = 1;
	va_end(ap);
}

static void family(expo *x, const char *name, const char *type,
		   const char *help)
{
	emit(x, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A sample value: integers without a fraction, others with enough digits
 * to round-trip. */
static void value(expo *x, double v)
{
	if (v == (double)(long long)v && v < 9e15 && v > -9e15)
		emit(x, "%lld\n", (long long)v);
	else
		emit(x, "%.17g\n", v);
}

static double stored(const dr_db_rows *rows, const char *name,
		     const char *labels)
{
	for (size_t i = 0; i < rows->n_rows; i++)
		if (strcmp(db_cell(rows, i, 0), name) == 0 &&
		    strcmp(db_cell(rows, i, 1), labels) == 0)
			return strtod(db_cell(rows, i, 2), NULL);
	return 0;
}

static void render_histogram(expo *x, const dr_db_rows *rows)
{
	family(x, STEP_HISTOGRAM, "histogram",
	       "Duration of job steps: submit, provider_run (submitted to "
	       "the prediction's end), download, render, upload, index.");
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		char labels[DR_METRICS_LABELS_MAX], full[DR_METRICS_LABELS_MAX + 32];
		double last = 0;

		metrics_labels(labels, sizeof(labels), "step", steps[s], NULL);
		for (size_t k = 0; k < N_BUCKETS; k++) {
			double v;

			snprintf(full, sizeof(full), "%s,le=\"%s\"", labels,
				 bucket_bounds[k]);
			v = stored(rows, STEP_HISTOGRAM "_bucket", full);
			if (v < last) /* never shown decreasing */
				v = last;
			last = v;
			emit(x, STEP_HISTOGRAM "_bucket{%s} ", full);
			value(x, v);
		}
		emit(x, STEP_HISTOGRAM "_sum{%s} ", labels);
		value(x, stored(rows, STEP_HISTOGRAM "_sum", labels));
		emit(x, STEP_HISTOGRAM "_count{%s} ", labels);
		value(x, last);
	}
}

/* Run `sql` and emit each row as name{k1="c0",k2="c1"} c_last. */
static dr_status live(expo *x, dr_db *db, const char *sql, const char *name,
		      const char *k1, const char *k2, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st = db_query(db, sql, &rows, err, DB_NOARGS);

	if (st != DR_OK)
		return st;
	for (size_t i = 0; i < rows->n_rows; i++) {
		char labels[DR_METRICS_LABELS_MAX];
		size_t vcol = (size_t)(k1 != NULL) + (size_t)(k2 != NULL);
		const char *v = db_cell(rows, i, vcol);

		if (k2)
			metrics_labels(labels, sizeof(labels), k1,
				       db_cell(rows, i, 0), k2,
				       db_cell(rows, i, 1), NULL);
		else if (k1)
			metrics_labels(labels, sizeof(labels), k1,
				       db_cell(rows, i, 0), NULL);
		else
			labels[0] = '\0';
		if (labels[0])
			emit(x, "%s{%s} ", name, labels);
		else
			emit(x, "%s ", name);
		value(x, v ? strtod(v, NULL) : 0);
	}
	db_rows_free(rows);
	return DR_OK;
}

dr_status metrics_render(dr_db *db, dr_buf *out, dr_error *err)
{
	dr_db_rows *rows = NULL;
	expo x = {out, 0};
	dr_status st;

	metrics_flush(db, 1); /* this process's own increments */
	st = db_query(db,
		      "SELECT name, labels, value FROM metric_counters"
		      " ORDER BY name, labels",
		      &rows, err, DB_NOARGS);
	if (st != DR_OK)
		return st;
	for (size_t f = 0; f < sizeof(counters) / sizeof(counters[0]); f++) {
		int any = 0;

		family(&x, counters[f].name, "counter", counters[f].help);
		for (size_t i = 0; i < rows->n_rows; i++) {
			const char *labels = db_cell(rows, i, 1);

			if (strcmp(db_cell(rows, i, 0), counters[f].name) != 0)
				continue;
			any = 1;
			if (*labels)
				emit(&x, "%s{%s} ", counters[f].name, labels);
			else
				emit(&x, "%s ", counters[f].name);
			value(&x, strtod(db_cell(rows, i, 2), NULL));
		}
		/* Unlabelled totals start at 0 rather than being absent. */
		if (!any && strstr(counters[f].name, "bytes"))
			emit(&x, "%s 0\n", counters[f].name);
	}
	render_histogram(&x, rows);
	db_rows_free(rows);

	family(&x, "darkroom_jobs", "gauge",
	       "Jobs by status and adapter (counted in the jobs table; a "
	       "workflow counts as its steps, those that never ran not).");
	st = live(&x, db,
		  "SELECT status, adapter, COUNT(*) FROM jobs"
		  " WHERE kind <> 'workflow' AND NOT (parent_id IS NOT NULL"
		  " AND status = 'queued' AND run_at IS NULL)"
		  " GROUP BY status, adapter ORDER BY status, adapter",
		  "darkroom_jobs", "status", "adapter", err);
	if (st == DR_OK) {
		family(&x, "darkroom_queue_depth", "gauge",
		       "Jobs due for a worker now (run_at has passed).");
		st = live(&x, db,
			  "SELECT COUNT(*) FROM jobs WHERE run_at <= NOW(6)",
			  "darkroom_queue_depth", NULL, NULL, err);
	}
	if (st == DR_OK) {
		family(&x, "darkroom_queue_oldest_seconds", "gauge",
		       "How long the longest-waiting due job has been due "
		       "(0 when none).");
		st = live(&x, db,
			  "SELECT COALESCE(TIMESTAMPDIFF(MICROSECOND,"
			  " MIN(run_at), NOW(6)) / 1e6, 0) FROM jobs"
			  " WHERE run_at <= NOW(6)",
			  "darkroom_queue_oldest_seconds", NULL, NULL, err);
	}
	if (st == DR_OK) {
		family(&x, "darkroom_predict_seconds_total", "counter",
		       "Provider-reported predict_time summed per model (the "
		       "basis of cost tracking).");
		st = live(&x, db,
			  "SELECT model, SUM(predict_time) FROM jobs"
			  " WHERE predict_time IS NOT NULL"
			  " GROUP BY model ORDER BY model",
			  "darkroom_predict_seconds_total", "model", NULL, err);
	}
	if (st == DR_OK) {
		family(&x, "darkroom_objects_pending_removal", "gauge",
		       "Stored objects no row uses that wait to be removed "
		       "from the sink (pinned ones included), and those whose "
		       "removal failed at least once.");
		st = live(&x, db,
			  "SELECT 'waiting', COUNT(*) FROM objects"
			  " WHERE remove_after IS NOT NULL"
			  " UNION ALL SELECT 'failing', COUNT(*) FROM objects"
			  " WHERE remove_after IS NOT NULL AND attempts > 0",
			  "darkroom_objects_pending_removal", "state", NULL,
			  err);
	}
	if (st == DR_OK) {
		family(&x, "darkroom_worker_processes", "gauge",
		       "Worker processes alive (heartbeat within "
		       HEARTBEAT_ALIVE " s).");
		st = live(&x, db,
			  "SELECT COUNT(*) FROM worker_heartbeats WHERE"
			  " seen_at >= NOW(6) - INTERVAL " HEARTBEAT_ALIVE
			  " SECOND",
			  "darkroom_worker_processes", NULL, NULL, err);
	}
	if (st == DR_OK) {
		family(&x, "darkroom_rate_limit_per_second", "gauge",
		       "Creates per second an adapter's rate limit allows "
		       "(adapters with a limit).");
		st = live(&x, db,
			  "SELECT name, per_second FROM rate_limits"
			  " WHERE per_second > 0 ORDER BY name",
			  "darkroom_rate_limit_per_second", "adapter", NULL,
			  err);
	}
	if (st == DR_OK) {
		family(&x, "darkroom_rate_limit_burst", "gauge",
		       "Creates an adapter's rate limit allows at once.");
		st = live(&x, db,
			  "SELECT name, burst FROM rate_limits"
			  " WHERE per_second > 0 ORDER BY name",
			  "darkroom_rate_limit_burst", "adapter", NULL, err);
	}
	if (st == DR_OK) {
		family(&x, "darkroom_rate_limit_booked_seconds", "gauge",
		       "How far ahead an adapter's create slots are booked "
		       "(tat - now, 0 when idle).");
		st = live(&x, db,
			  "SELECT name, GREATEST(TIMESTAMPDIFF(MICROSECOND,"
			  " NOW(6), tat), 0) / 1e6 FROM rate_limits"
			  " WHERE per_second > 0 ORDER BY name",
			  "darkroom_rate_limit_booked_seconds", "adapter", NULL,
			  err);
	}
	if (st == DR_OK && x.full)
		st = dr_fail(err, DR_ERR_TOO_LARGE, "too_large",
			     "the metrics do not fit in a response");
	return st;
}
