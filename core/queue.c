/*
 * queue.c - claims, leases, fencing and wakeups (see queue.h).
 */
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

void queue_claim_clear(dr_claim *c)
{
	free(c->model);
	free(c->input);
	free(c->prediction_id);
	free(c->destination);
	memset(c, 0, sizeof(*c));
}

static double cell_double(const dr_db_rows *r, size_t col)
{
	const char *v = db_cell(r, 0, col);

	return v ? strtod(v, NULL) : 0;
}

/* Tenants one query of a fair claim lists (a literal, for its SQL). */
#define QUEUE_FAIR_BATCH     8
#define QUEUE_FAIR_BATCH_SQL "8"
/* Bytes of a jobs.fair_value: 255 characters (DR_MAX_FAIR_VALUE,
 * migrations/0013) of up to 4 bytes. */
#define QUEUE_FAIR_VALUE_BYTES (255 * 4 + 1)

int64_t queue_delay_us(double seconds)
{
	if (!(seconds > 0)) /* NaN, 0 and negative */
		return 0;
	if (seconds > QUEUE_MAX_DELAY)
		seconds = QUEUE_MAX_DELAY;
	return (int64_t)(seconds * 1e6);
}

/* The SQL of the fair claim's reads (test_queue.c EXPLAINs them). */
#define SQL_TENANTS(op)                                                        \
	"SELECT fair_value, MIN(run_at) FROM jobs WHERE fair_value " op        \
	" ? AND run_at <= NOW(6) GROUP BY fair_value ORDER BY fair_value"      \
	" LIMIT " QUEUE_FAIR_BATCH_SQL
static const char sql_tenants_after[] = SQL_TENANTS(">");
static const char sql_tenants_from[] = SQL_TENANTS(">=");
static const char sql_probe[] =
	"SELECT id FROM jobs WHERE fair_value = ? AND run_at <= NOW(6)"
	" ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED";

/* The oldest due job, whoever's it is: today's claim, and the fallback
 * of a fair one. */
static dr_status pick_oldest(dr_db *db, char id[DR_JOB_ID_LEN + 1],
			     dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	st = db_query(db,
		      "SELECT id FROM jobs WHERE run_at <= NOW(6)"
		      " ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED",
		      &rows, err, DB_NOARGS);
	if (st == DR_OK && rows->n_rows == 0)
		st = DR_ERR_NOT_FOUND;
	if (st == DR_OK)
		snprintf(id, DR_JOB_ID_LEN + 1, "%s", db_cell(rows, 0, 0));
	db_rows_free(rows);
	return st;
}

/* The oldest due job of tenant `value` that no other transaction holds,
 * locked: DR_ERR_NOT_FOUND when it has none (or all are held). */
static dr_status probe_tenant(dr_db *db, const char *value,
			      char id[DR_JOB_ID_LEN + 1], dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	st = db_query(db, sql_probe, &rows, err, DB_ARGS(DB_STR(value)));
	if (st == DR_OK && rows->n_rows == 0)
		st = DR_ERR_NOT_FOUND;
	if (st == DR_OK)
		snprintf(id, DR_JOB_ID_LEN + 1, "%s", db_cell(rows, 0, 0));
	db_rows_free(rows);
	return st;
}

/*
 * Tenants with a due job, in fair_value order, after `from` (or from
 * `from` on, with `inclusive`): a loose index scan of jobs_fair, one
 * dive per tenant (MIN(run_at) lets the range on run_at into it), so
 * 10,000 due jobs of one tenant cost what one does. A plain read: it
 * locks nothing.
 */
static dr_status due_tenants(dr_db *db, const char *from, int inclusive,
			     dr_db_rows **rows, dr_error *err)
{
	return db_query(db, inclusive ? sql_tenants_from : sql_tenants_after,
			rows, err, DB_ARGS(DB_STR(from)));
}

/*
 * The fair pick: the next tenant after the cursor (wrapping around) that
 * has a due job no other claim holds, and that job, locked; then the
 * cursor moves to that tenant. At most QUEUE_FAIR_MAX_PROBES tenants are
 * probed (each probe skips what other claims hold); past that the oldest
 * due job is taken, as without fair_key.
 */
static dr_status pick_fair(dr_db *db, char id[DR_JOB_ID_LEN + 1], dr_error *err)
{
	char cursor[QUEUE_FAIR_VALUE_BYTES], from[QUEUE_FAIR_VALUE_BYTES];
	char served[QUEUE_FAIR_VALUE_BYTES];
	dr_db_rows *rows = NULL;
	int probes = 0, found = 0, exhausted = 0;
	dr_status st;

	/* A plain read: concurrent claims may read the same cursor and
	 * serve the same tenant (its next job, through SKIP LOCKED). */
	st = db_query(db, "SELECT fair_value FROM fair_cursor WHERE id = 1",
		      &rows, err, DB_NOARGS);
	if (st != DR_OK)
		return st;
	snprintf(cursor, sizeof(cursor), "%s",
		 rows->n_rows ? db_cell(rows, 0, 0) : "");
	db_rows_free(rows);
	rows = NULL;

	/* Pass 0: the tenants after the cursor; pass 1: from the first
	 * tenant on, up to the cursor's own. */
	for (int pass = 0; pass < 2 && !found && !exhausted; pass++) {
		int inclusive = pass == 1, more = 1;

		snprintf(from, sizeof(from), "%s", pass == 0 ? cursor : "");
		while (more && !found) {
			st = due_tenants(db, from, inclusive, &rows, err);
			if (st != DR_OK)
				return st;
			more = rows->n_rows == QUEUE_FAIR_BATCH;
			for (size_t i = 0; i < rows->n_rows; i++) {
				const char *t = db_cell(rows, i, 0);

				if (pass == 1 && strcmp(t, cursor) > 0) {
					more = 0; /* pass 0 saw the rest */
					break;
				}
				if (probes == QUEUE_FAIR_MAX_PROBES) {
					exhausted = 1;
					more = 0;
					break;
				}
				probes++;
				st = probe_tenant(db, t, id, err);
				if (st == DR_OK) {
					snprintf(served, sizeof(served), "%s",
						 t);
					found = 1;
					break;
				}
				if (st != DR_ERR_NOT_FOUND) {
					db_rows_free(rows);
					return st;
				}
			}
			if (rows->n_rows > 0)
				snprintf(from, sizeof(from), "%s",
					 db_cell(rows, rows->n_rows - 1, 0));
			inclusive = 0;
			db_rows_free(rows);
			rows = NULL;
		}
	}
	if (!found)
		return exhausted ? pick_oldest(db, id, err) : DR_ERR_NOT_FOUND;

	/* Move the cursor, unless another claim holds it right now: then
	 * that claim moves it, and this one only makes the round-robin
	 * approximate. So no claim ever waits for the cursor. */
	st = db_query(db,
		      "SELECT id FROM fair_cursor WHERE id = 1"
		      " FOR UPDATE SKIP LOCKED",
		      &rows, err, DB_NOARGS);
	if (st == DR_OK && rows->n_rows == 1)
		st = db_exec(
			db,
			"UPDATE fair_cursor SET fair_value = ? WHERE id = 1",
			NULL, err, DB_ARGS(DB_STR(served)));
	db_rows_free(rows);
	return st;
}

/* The claim's shared part, after a pick locked job `id`: lease it, read
 * what the worker needs and commit. Rolls back on any failure. */
static dr_status take(dr_db *db, const char *id, const char *owner,
		      double lease, dr_claim *c, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	st = db_exec(db,
		     /* Before lease_owner changes: MariaDB assigns left to
		      * right. A lease still held means its worker never
		      * finished the step (it died or stalled). */
		     "UPDATE jobs SET claims = IF(lease_owner IS NULL, 0,"
		     " claims + 1), lease_owner = ?,"
		     " lease_version = lease_version + 1,"
		     " run_at = NOW(6) + INTERVAL ? MICROSECOND WHERE id = ?",
		     NULL, err,
		     DB_ARGS(DB_STR(owner), DB_INT(queue_delay_us(lease)),
			     DB_STR(id)));
	if (st != DR_OK)
		goto rollback;
	st = db_query(db,
		      "SELECT id, lease_version, status, step, adapter, model,"
		      " input, prediction_id, attempts, cancel_requested,"
		      " UNIX_TIMESTAMP(submitted_at),"
		      " TIMESTAMPDIFF(MICROSECOND, FROM_UNIXTIME(0),"
		      " submitted_at),"
		      " UNIX_TIMESTAMP(provider_deadline),"
		      " UNIX_TIMESTAMP(NOW(6)), IF(EXISTS(SELECT 1"
		      " FROM callback_deliveries d WHERE d.job_id = jobs.id"
		      " AND d.state = 'pending'), 'pending', COALESCE((SELECT"
		      " d.state FROM callback_deliveries d WHERE d.job_id ="
		      " jobs.id ORDER BY d.created_at DESC, d.id DESC LIMIT 1),"
		      " 'none')), claims, parent_id, kind, destination"
		      " FROM jobs WHERE id = ?",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		goto rollback;
	st = db_commit(db, err);
	if (st != DR_OK) {
		db_rollback(db);
		db_rows_free(rows);
		return st;
	}
	snprintf(c->id, sizeof(c->id), "%s", db_cell(rows, 0, 0));
	c->lease_version = strtoull(db_cell(rows, 0, 1), NULL, 10);
	snprintf(c->status, sizeof(c->status), "%s", db_cell(rows, 0, 2));
	snprintf(c->step, sizeof(c->step), "%s", db_cell(rows, 0, 3));
	snprintf(c->adapter, sizeof(c->adapter), "%s", db_cell(rows, 0, 4));
	c->model = dr_xstrdup(db_cell(rows, 0, 5));
	c->input = dr_xstrdup(db_cell(rows, 0, 6));
	if (db_cell(rows, 0, 7))
		c->prediction_id = dr_xstrdup(db_cell(rows, 0, 7));
	c->attempts = (int)strtol(db_cell(rows, 0, 8), NULL, 10);
	c->cancel_requested = strcmp(db_cell(rows, 0, 9), "0") != 0;
	c->submitted_at = cell_double(rows, 10);
	c->submitted_us = db_cell(rows, 0, 11)
				  ? strtoll(db_cell(rows, 0, 11), NULL, 10)
				  : 0;
	c->provider_deadline = cell_double(rows, 12);
	c->now = cell_double(rows, 13);
	snprintf(c->callback_state, sizeof(c->callback_state), "%s",
		 db_cell(rows, 0, 14));
	c->abandoned = (int)strtol(db_cell(rows, 0, 15), NULL, 10);
	snprintf(c->parent, sizeof(c->parent), "%s",
		 db_cell(rows, 0, 16) ? db_cell(rows, 0, 16) : "");
	c->training = strcmp(db_cell(rows, 0, 17), "training") == 0;
	if (db_cell(rows, 0, 18))
		c->destination = dr_xstrdup(db_cell(rows, 0, 18));
	db_rows_free(rows);
	return DR_OK;
rollback:
	db_rows_free(rows);
	db_rollback(db);
	return st;
}

dr_status queue_claim(dr_db *db, const char *owner, double lease, int fair,
		      dr_claim *c, dr_error *err)
{
	char id[DR_JOB_ID_LEN + 1];
	dr_status st;

	memset(c, 0, sizeof(*c));
	st = db_begin(db, err);
	if (st != DR_OK)
		return st;
	st = fair ? pick_fair(db, id, err) : pick_oldest(db, id, err);
	if (st != DR_OK) {
		db_rollback(db);
		return st;
	}
	return take(db, id, owner, lease, c, err);
}

dr_status queue_next_due(dr_db *db, double *seconds, dr_error *err)
{
	return db_query_seconds(
		db,
		"SELECT TIMESTAMPDIFF(MICROSECOND, NOW(6),"
		" MIN(run_at)) FROM jobs WHERE run_at IS NOT NULL",
		seconds, err);
}

dr_status queue_fenced(dr_status st, uint64_t affected, dr_error *err)
{
	if (st == DR_OK && affected != 1)
		return dr_fail(err, DR_ERR_CONFLICT, "lease_lost",
			       "the lease on the job was lost");
	return st;
}

dr_status queue_extend(dr_db *db, const dr_claim *c, double lease,
		       dr_error *err)
{
	uint64_t n = 0;
	dr_status st =
		db_exec(db,
			"UPDATE jobs SET run_at = NOW(6) + INTERVAL ?"
			" MICROSECOND WHERE id = ? AND lease_version = ?",
			&n, err,
			DB_ARGS(DB_INT(queue_delay_us(lease)), DB_STR(c->id),
				DB_U64(c->lease_version)));

	return queue_fenced(st, n, err);
}

dr_status queue_release(dr_db *db, const dr_claim *c, double delay,
			dr_error *err)
{
	uint64_t n = 0;
	dr_status st =
		db_exec(db,
			"UPDATE jobs SET run_at = NOW(6) + INTERVAL ?"
			" MICROSECOND, lease_owner = NULL"
			" WHERE id = ? AND lease_version = ?",
			&n, err,
			DB_ARGS(DB_INT(queue_delay_us(delay)), DB_STR(c->id),
				DB_U64(c->lease_version)));

	return queue_fenced(st, n, err);
}

double queue_asked_delay(double asked, double fallback)
{
	if (!isfinite(asked) || asked <= 0)
		return fallback;
	return asked > QUEUE_MAX_DELAY ? QUEUE_MAX_DELAY : asked;
}

double queue_backoff(const dr_config *cfg, int attempt)
{
	double d = cfg->worker.retry_base;
	unsigned r = 0;

	for (int i = 1; i < attempt && d < cfg->worker.retry_max; i++)
		d *= 2;
	if (d > cfg->worker.retry_max)
		d = cfg->worker.retry_max;
	if (ids_random(&r, sizeof(r)) != DR_OK)
		r = (unsigned)getpid();
	return d / 2 + (d / 2) * ((double)r / 4294967296.0);
}

int queue_wakeup_listen(const char *path)
{
	struct sockaddr_un sa;
	mode_t old;
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path));
	unlink(path);
	old = umask(0117);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc != 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

void queue_wakeup_send(const char *path)
{
	static int fd = -1;
	struct sockaddr_un sa;
	size_t n = path ? strlen(path) : 0;

	if (n == 0 || n >= sizeof(sa.sun_path))
		return;
	if (fd < 0)
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    0);
	if (fd < 0)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, n);
	/* Best effort: ENOENT (no worker running), EAGAIN (queue full:
	 * workers are busy and will look for work anyway). */
	if (sendto(fd, "w", 1, MSG_DONTWAIT, (struct sockaddr *)&sa,
		   sizeof(sa)) < 0)
		return;
}
