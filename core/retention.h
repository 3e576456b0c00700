/*
 * retention.h - removing the rows darkroom keeps only for a while
 * ([retention] in darkroom.conf).
 *
 * Two tables hold rows whose use ends with time:
 *   idempotency_keys    an Idempotency-Key and the job it made, by
 *                       created_at ([retention] idempotency_keys, 24h);
 *   webhook_deliveries  the ids of provider webhook deliveries already
 *                       applied, by received_at (webhook_deliveries, 7d);
 *   webhook_blobs       files of webhooks no job claimed (a crash between
 *                       storing and applying a delivery; blobs.h), by
 *                       created_at, after BLOBS_UNCLAIMED_AGE (no setting).
 * A row older than its table's setting is expired; a setting of `off`
 * keeps the table's rows for ever. (Jobs and what hangs off them - events,
 * outputs, renditions, stored objects - are not removed here.)
 *
 * Expired rows go in batches: each batch is one autocommit statement
 * `DELETE ... WHERE <time> < NOW(6) - INTERVAL n SECOND ORDER BY <time>,
 * <primary key> LIMIT batch`, a range of the table's index on its time
 * column (0001_init.sql: idempotency_keys_age, webhook_deliveries_age), so
 * each holds its row locks for one short statement and never blocks the
 * API or the queue for long. Times are the database clock's.
 *
 * Two callers: the first worker process runs retention_step() between
 * jobs (one batch per call, a pass over both tables at start and every
 * DR_RETENTION_INTERVAL), and `darkroom prune` runs retention_table() for
 * each table now (or retention_count() for --dry-run).
 *
 * Place in the layer order: uses only db and config; called by worker and
 * cli_main. jobs.c reads cfg->retention itself (an expired key is no
 * longer a replay), so nothing below calls this module.
 */
#ifndef DR_RETENTION_H
#define DR_RETENTION_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "db.h"
#include "error.h"

/* The tables, in the order they are pruned. */
typedef enum dr_retention_table {
	DR_RET_IDEMPOTENCY_KEYS,
	DR_RET_WEBHOOK_DELIVERIES,
	DR_RET_WEBHOOK_BLOBS,
	DR_RET_TABLES
} dr_retention_table;

/* Rows one DELETE removes at most. */
#define DR_RETENTION_BATCH 1000
/* Seconds between the worker's passes (the first at its start). */
#define DR_RETENTION_INTERVAL 60.0

/* The table's name ("idempotency_keys"); "unknown" out of range. */
const char *retention_table_name(dr_retention_table t);

/* The table's setting in `cfg`: seconds rows are kept, 0 for off. */
double retention_setting(const dr_config *cfg, dr_retention_table t);

/*
 * Count the expired rows of table `t` into *n (0 when its setting is
 * off). Changes nothing.
 */
dr_status retention_count(dr_db *db, const dr_config *cfg, dr_retention_table t,
			  uint64_t *n, dr_error *err) DR_WARN_UNUSED;

/*
 * Delete at most `batch` (1 or more) of the oldest expired rows of table
 * `t` in one autocommit statement; *deleted gets how many went (0 when
 * the setting is off). Must not be called inside a transaction
 * (DR_ERR_INTERNAL): the point is that each batch commits on its own.
 */
dr_status retention_delete_batch(dr_db *db, const dr_config *cfg,
				 dr_retention_table t, unsigned batch,
				 uint64_t *deleted,
				 dr_error *err) DR_WARN_UNUSED;

/* What retention_table() did. */
typedef struct dr_retention_stats {
	uint64_t deleted; /* rows removed */
	uint64_t batches; /* DELETE statements run */
	double longest;	  /* seconds the slowest of them took */
	int interrupted;  /* *stop was set before the end */
} dr_retention_stats;

/*
 * Remove every expired row of table `t`: batches of `batch` rows until one
 * removes fewer, so rows expiring meanwhile are taken too but a table
 * written faster than it is pruned cannot keep it going for ever beyond
 * that. Between batches it checks *stop (may be NULL; set by a signal
 * handler): when set it returns DR_OK with s->interrupted. When
 * `progress` is not NULL a line goes there: on a terminal (`tty`) one
 * line redrawn as it goes, else a line a second and one at the end.
 * *s is filled on every return.
 */
dr_status retention_table(dr_db *db, const dr_config *cfg, dr_retention_table t,
			  unsigned batch, FILE *progress, int tty,
			  volatile sig_atomic_t *stop, dr_retention_stats *s,
			  dr_error *err) DR_WARN_UNUSED;

/* The worker's place in its passes: zero it before the first step. */
typedef struct dr_retention {
	int started;			 /* a pass has been scheduled */
	int busy;			 /* a pass is under way */
	dr_retention_table table;	 /* the table being pruned */
	double next;			 /* monotonic time of the next pass */
	uint64_t deleted[DR_RET_TABLES]; /* rows removed in this pass */
} dr_retention;

/*
 * The worker's share: when a pass is due (at the first call, then
 * DR_RETENTION_INTERVAL after the end of the last) or under way, delete
 * one batch of the current table, moving on to the next table when a
 * batch removes fewer than DR_RETENTION_BATCH rows. `now` is the caller's
 * monotonic clock in seconds. Logs one line per table that lost rows at
 * the end of a pass, and a failure once (the pass ends; the next comes
 * after the interval). Returns 1 while the pass has more to do (call
 * again soon, after other work), else 0.
 */
int retention_step(dr_retention *r, dr_db *db, const dr_config *cfg,
		   double now);

#endif
