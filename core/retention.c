/*
 * retention.c - batched removal of expired idempotency keys and webhook
 * delivery ids (see retention.h).
 *
 * The statements are literals in one table per operation, so the
 * prepared-statement cache of db.c (keyed by the text's address) keeps one
 * of each. The ORDER BY names the whole index (time, then the primary
 * key) so that which rows a LIMIT takes is decided by the data alone, as
 * statement-based replication needs.
 */
#include "retention.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blobs.h"
#include "log.h"

/* Progress on a terminal: redraw at most this often (seconds). */
#define TTY_INTERVAL 0.1
/* Progress elsewhere: a line at most this often (seconds). */
#define PLAIN_INTERVAL 1.0

static const char *const table_names[DR_RET_TABLES] = {
	[DR_RET_IDEMPOTENCY_KEYS] = "idempotency_keys",
	[DR_RET_WEBHOOK_DELIVERIES] = "webhook_deliveries",
	[DR_RET_WEBHOOK_BLOBS] = "webhook_blobs",
};

static const char *const count_sql[DR_RET_TABLES] = {
	[DR_RET_IDEMPOTENCY_KEYS] =
		"SELECT COUNT(*) FROM idempotency_keys"
		" WHERE created_at < NOW(6) - INTERVAL ? SECOND",
	[DR_RET_WEBHOOK_DELIVERIES] =
		"SELECT COUNT(*) FROM webhook_deliveries"
		" WHERE received_at < NOW(6) - INTERVAL ? SECOND",
	[DR_RET_WEBHOOK_BLOBS] = "SELECT COUNT(*) FROM webhook_blobs"
				 " WHERE job_id IS NULL AND created_at < "
				 "NOW(6) - INTERVAL ? SECOND",
};

static const char *const delete_sql[DR_RET_TABLES] = {
	[DR_RET_IDEMPOTENCY_KEYS] =
		"DELETE FROM idempotency_keys"
		" WHERE created_at < NOW(6) - INTERVAL ? SECOND"
		" ORDER BY created_at, scope, idem_key LIMIT ?",
	[DR_RET_WEBHOOK_DELIVERIES] =
		"DELETE FROM webhook_deliveries"
		" WHERE received_at < NOW(6) - INTERVAL ? SECOND"
		" ORDER BY received_at, adapter, delivery_key LIMIT ?",
	[DR_RET_WEBHOOK_BLOBS] =
		"DELETE FROM webhook_blobs"
		" WHERE job_id IS NULL AND created_at < NOW(6) - INTERVAL ? "
		"SECOND"
		" ORDER BY job_id, created_at, id, seq LIMIT ?",
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

const char *retention_table_name(dr_retention_table t)
{
	if ((unsigned)t >= DR_RET_TABLES)
		return "unknown";
	return table_names[t];
}

double retention_setting(const dr_config *cfg, dr_retention_table t)
{
	switch (t) {
	case DR_RET_IDEMPOTENCY_KEYS:
		return cfg->retention.idempotency_keys;
	case DR_RET_WEBHOOK_DELIVERIES:
		return cfg->retention.webhook_deliveries;
	case DR_RET_WEBHOOK_BLOBS:
		return BLOBS_UNCLAIMED_AGE;
	case DR_RET_TABLES:
		break;
	}
	return 0;
}

/* The setting as the whole seconds the SQL takes; 0 when off. */
static int64_t keep_seconds(const dr_config *cfg, dr_retention_table t)
{
	double v = retention_setting(cfg, t);

	if (v <= 0)
		return 0;
	return v < 1 ? 1 : (int64_t)v;
}

/* The rows one statement of table t deletes at most, asked for `batch`:
 * fewer for webhook_blobs, whose rows hold up to a MiB each. */
static unsigned table_batch(dr_retention_table t, unsigned batch)
{
	if (t == DR_RET_WEBHOOK_BLOBS && batch > BLOBS_RETENTION_BATCH)
		return BLOBS_RETENTION_BATCH;
	return batch;
}

dr_status retention_count(dr_db *db, const dr_config *cfg, dr_retention_table t,
			  uint64_t *n, dr_error *err)
{
	dr_db_rows *rows = NULL;
	int64_t keep;
	dr_status st;

	*n = 0;
	if ((unsigned)t >= DR_RET_TABLES)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "no such retention table");
	keep = keep_seconds(cfg, t);
	if (keep == 0)
		return DR_OK;
	st = db_query(db, count_sql[t], &rows, err, DB_ARGS(DB_INT(keep)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 1 && db_cell(rows, 0, 0))
		*n = strtoull(db_cell(rows, 0, 0), NULL, 10);
	db_rows_free(rows);
	return DR_OK;
}

dr_status retention_delete_batch(dr_db *db, const dr_config *cfg,
				 dr_retention_table t, unsigned batch,
				 uint64_t *deleted, dr_error *err)
{
	int64_t keep;

	*deleted = 0;
	if ((unsigned)t >= DR_RET_TABLES || batch == 0)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "no such retention table or an empty batch");
	batch = table_batch(t, batch);
	if (db_in_transaction(db))
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "retention batches commit on their own: not "
			       "inside a transaction");
	keep = keep_seconds(cfg, t);
	if (keep == 0)
		return DR_OK;
	return db_exec(db, delete_sql[t], deleted, err,
		       DB_ARGS(DB_INT(keep), DB_U64(batch)));
}

/* The progress line of retention_table(); `final` always prints. */
static void show(FILE *f, int tty, dr_retention_table t, uint64_t n, int final)
{
	if (tty)
		fprintf(f, "\rprune: %s: %llu rows removed%s",
			retention_table_name(t), (unsigned long long)n,
			final ? "\n" : "");
	else
		fprintf(f, "prune: %s: %llu rows removed%s\n",
			retention_table_name(t), (unsigned long long)n,
			final ? "" : " so far");
	fflush(f);
}

dr_status retention_table(dr_db *db, const dr_config *cfg, dr_retention_table t,
			  unsigned batch, FILE *progress, int tty,
			  volatile sig_atomic_t *stop, dr_retention_stats *s,
			  dr_error *err)
{
	double last = now_mono();
	dr_status st = DR_OK;

	memset(s, 0, sizeof(*s));
	for (;;) {
		uint64_t n = 0;
		double t0, took;

		if (stop && *stop) {
			s->interrupted = 1;
			break;
		}
		t0 = now_mono();
		st = retention_delete_batch(db, cfg, t, batch, &n, err);
		if (st != DR_OK)
			break;
		took = now_mono() - t0;
		if (keep_seconds(cfg, t) == 0)
			break; /* off: no statement ran */
		s->batches++;
		s->deleted += n;
		if (took > s->longest)
			s->longest = took;
		if (n < table_batch(t, batch))
			break;
		if (progress && now_mono() - last >=
					(tty ? TTY_INTERVAL : PLAIN_INTERVAL)) {
			show(progress, tty, t, s->deleted, 0);
			last = now_mono();
		}
	}
	if (progress)
		show(progress, tty, t, s->deleted, 1);
	return st;
}

int retention_step(dr_retention *r, dr_db *db, const dr_config *cfg, double now)
{
	uint64_t n = 0;
	dr_error err;
	dr_status st;

	if (!r->busy) {
		if (r->started && now < r->next)
			return 0;
		r->started = 1;
		r->busy = 1;
		r->table = 0;
		memset(r->deleted, 0, sizeof(r->deleted));
	}
	dr_error_clear(&err);
	st = retention_delete_batch(db, cfg, r->table, DR_RETENTION_BATCH, &n,
				    &err);
	if (st != DR_OK) {
		dr_log(DR_LOG_WARNING,
		       "event=retention.failed table=%s status=\"%s\" "
		       "reason=\"%s\"",
		       retention_table_name(r->table), dr_strerror(st),
		       err.message);
		r->busy = 0;
		r->next = now + DR_RETENTION_INTERVAL;
		return 0;
	}
	r->deleted[r->table] += n;
	if (n >= table_batch(r->table, DR_RETENTION_BATCH))
		return 1;
	if (r->deleted[r->table])
		dr_log(DR_LOG_INFO, "event=retention.pruned table=%s rows=%llu",
		       retention_table_name(r->table),
		       (unsigned long long)r->deleted[r->table]);
	r->table++;
	if (r->table < DR_RET_TABLES)
		return 1;
	r->busy = 0;
	r->next = now + DR_RETENTION_INTERVAL;
	return 0;
}
