/*
 * ratelimit.c - the create-rate limit per adapter instance (see
 * ratelimit.h).
 *
 * Times go between C and SQL as microseconds since RL_EPOCH on the
 * database clock, so the arithmetic is exact integer arithmetic in C and
 * no host clock is ever read.
 */
#include "ratelimit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_EPOCH   "'2000-01-01 00:00:00'"
#define RL_US(col) "TIMESTAMPDIFF(MICROSECOND, " RL_EPOCH ", " col ")"
#define RL_AT	   RL_EPOCH " + INTERVAL ? MICROSECOND"

/* The claimed job's booked slot, its row locked (fenced by the lease). */
#define SQL_JOB_SLOT                                                           \
	"SELECT " RL_US("rate_slot") " FROM jobs WHERE id = ? AND"             \
				     " lease_version = ? FOR UPDATE"

void ratelimit_params_of(double per_second, int burst, ratelimit_params *p)
{
	double t = per_second > 0 ? 1e6 / per_second : 1e6;

	p->t_us = (int64_t)llround(t);
	if (p->t_us < 1)
		p->t_us = 1;
	p->tau_us = (int64_t)(burst > 1 ? burst - 1 : 0) * p->t_us;
	p->horizon_us = (int64_t)(RATELIMIT_HORIZON * 1e6);
}

void ratelimit_gcra(const ratelimit_params *p, int64_t tat_us,
		    int64_t queue_end_us, int64_t now_us, ratelimit_decision *d)
{
	int64_t t = tat_us > now_us ? tat_us : now_us;
	int64_t allowed = t - p->tau_us, place;

	memset(d, 0, sizeof(*d));
	if (allowed <= now_us) {
		/* Capacity now: nobody can be waiting in line for it. */
		d->verdict = RATELIMIT_GO;
		d->tat_us = t + p->t_us;
		d->queue_end_us = 0;
		return;
	}
	if (allowed - now_us <= p->horizon_us) {
		d->verdict = RATELIMIT_BOOK;
		d->tat_us = t + p->t_us;
		d->queue_end_us = queue_end_us;
		d->run_at_us = allowed;
		return;
	}
	/* Beyond the horizon: a place in line, nothing booked. */
	place = queue_end_us > allowed ? queue_end_us : allowed;
	d->verdict = RATELIMIT_DEFER;
	d->tat_us = tat_us;
	d->queue_end_us = place + p->t_us;
	d->run_at_us = place - p->horizon_us / 2;
}

static int64_t cell_i64(const dr_db_rows *rows, size_t col)
{
	const char *v = db_cell(rows, 0, col);

	return v ? strtoll(v, NULL, 10) : 0;
}

/* One try of ratelimit_reserve()'s transaction. */
static dr_status reserve_once(dr_db *db, const char *name, double per_second,
			      int burst, const char *job_id,
			      uint64_t lease_version, ratelimit_result *r,
			      dr_error *err)
{
	dr_db_rows *rows = NULL;
	ratelimit_params p;
	ratelimit_decision d;
	int64_t slot, now, tat, qend, late;
	int had_slot;
	dr_status st;

	ratelimit_params_of(per_second, burst, &p);
	memset(r, 0, sizeof(*r));
	st = db_begin(db, err);
	if (st != DR_OK)
		return st;
	/* The job first (its lease), then the limit: always this order. */
	st = db_query(db, SQL_JOB_SLOT, &rows, err,
		      DB_ARGS(DB_STR(job_id), DB_U64(lease_version)));
	if (st != DR_OK)
		goto rollback;
	if (rows->n_rows != 1) {
		st = dr_fail(err, DR_ERR_CONFLICT, "lease_lost",
			     "the lease on the job was lost");
		goto rollback;
	}
	had_slot = db_cell(rows, 0, 0) != NULL;
	slot = cell_i64(rows, 0);
	db_rows_free(rows);
	rows = NULL;
	/* Made if missing, and locked (an exclusive lock at once: a shared
	 * one upgraded later would deadlock two workers). */
	st = db_exec(db,
		     "INSERT INTO rate_limits (name, tat, per_second, burst,"
		     " updated_at) VALUES (?, NOW(6), ?, ?, NOW(6))"
		     " ON DUPLICATE KEY UPDATE per_second = VALUES(per_second),"
		     " burst = VALUES(burst)",
		     NULL, err,
		     DB_ARGS(DB_STR(name), DB_DBL(per_second), DB_INT(burst)));
	if (st != DR_OK)
		goto rollback;
	/* NOW(6) read once the row is ours, so no later reservation can
	 * carry an earlier clock. */
	st = db_query(db,
		      "SELECT " RL_US("NOW(6)") ", " RL_US("tat") ", " RL_US(
			      "queue_end") " FROM rate_limits WHERE name = ?",
		      &rows, err, DB_ARGS(DB_STR(name)));
	if (st != DR_OK)
		goto rollback;
	now = cell_i64(rows, 0);
	tat = cell_i64(rows, 1);
	qend = cell_i64(rows, 2);
	db_rows_free(rows);
	rows = NULL;

	late = p.t_us + p.tau_us;
	if (late > (int64_t)(RATELIMIT_LATE * 1e6))
		late = (int64_t)(RATELIMIT_LATE * 1e6);
	if (had_slot && slot > now) {
		/* Claimed before its slot: back to it, nothing booked. */
		r->verdict = RATELIMIT_BOOK;
		r->delay = (double)(slot - now) / 1e6;
		r->booked = tat > now ? (double)(tat - now) / 1e6 : 0;
		db_rollback(db);
		return DR_OK;
	}
	if (had_slot) {
		/* Due: the slot is used (or, too late, given up). */
		st = db_exec(db,
			     "UPDATE jobs SET rate_slot = NULL WHERE id = ?",
			     NULL, err, DB_ARGS(DB_STR(job_id)));
		if (st != DR_OK)
			goto rollback;
		if (now - slot <= late) {
			r->verdict = RATELIMIT_GO;
			r->used_slot = 1;
			r->booked = tat > now ? (double)(tat - now) / 1e6 : 0;
			st = db_commit(db, err);
			if (st != DR_OK)
				goto rollback;
			return DR_OK;
		}
	}

	ratelimit_gcra(&p, tat, qend, now, &d);
	st = db_exec(db,
		     "UPDATE rate_limits SET tat = " RL_AT ", queue_end ="
		     " IF(? = 0, NULL, " RL_AT "), updated_at = NOW(6)"
		     " WHERE name = ?",
		     NULL, err,
		     DB_ARGS(DB_INT(d.tat_us), DB_INT(d.queue_end_us),
			     DB_INT(d.queue_end_us), DB_STR(name)));
	if (st == DR_OK && d.verdict == RATELIMIT_BOOK)
		st = db_exec(db,
			     "UPDATE jobs SET rate_slot = " RL_AT
			     " WHERE id = ?",
			     NULL, err,
			     DB_ARGS(DB_INT(d.run_at_us), DB_STR(job_id)));
	if (st != DR_OK)
		goto rollback;
	st = db_commit(db, err);
	if (st != DR_OK)
		goto rollback;
	r->verdict = d.verdict;
	if (d.verdict != RATELIMIT_GO)
		r->delay = d.run_at_us > now ? (double)(d.run_at_us - now) / 1e6
					     : 0;
	r->booked = d.tat_us > now ? (double)(d.tat_us - now) / 1e6 : 0;
	return DR_OK;

rollback:
	db_rows_free(rows);
	if (db_in_transaction(db))
		db_rollback(db);
	return st;
}

dr_status ratelimit_reserve(dr_db *db, const char *name, double per_second,
			    int burst, const char *job_id,
			    uint64_t lease_version, ratelimit_result *r,
			    dr_error *err)
{
	dr_status st = DR_OK;

	for (int i = 0; i < DB_TX_TRIES; i++) {
		st = reserve_once(db, name, per_second, burst, job_id,
				  lease_version, r, err);
		if (!db_tx_again(st, err))
			break;
	}
	return st;
}

dr_status ratelimit_sync(dr_db *db, const dr_config *cfg, dr_error *err)
{
	for (size_t i = 0; i < cfg->n_sections; i++) {
		const dr_conf_section *sec = &cfg->sections[i];
		dr_status st;

		if (strcmp(sec->type, "adapter") != 0 || !sec->name)
			continue;
		if (sec->rate > 0)
			st = db_exec(db,
				     "INSERT INTO rate_limits (name, tat,"
				     " per_second, burst, updated_at)"
				     " VALUES (?, NOW(6), ?, ?, NOW(6))"
				     " ON DUPLICATE KEY UPDATE"
				     " per_second = VALUES(per_second),"
				     " burst = VALUES(burst)",
				     NULL, err,
				     DB_ARGS(DB_STR(sec->name),
					     DB_DBL(sec->rate),
					     DB_INT(sec->burst)));
		else
			st = db_exec(db,
				     "DELETE FROM rate_limits WHERE name = ?",
				     NULL, err, DB_ARGS(DB_STR(sec->name)));
		if (st != DR_OK)
			return st;
	}
	return DR_OK;
}

dr_status ratelimit_list(dr_db *db, const dr_config *cfg, ratelimit_state **out,
			 size_t *n, dr_error *err)
{
	ratelimit_state *list;
	size_t k = 0;

	list = dr_xcalloc(cfg->n_sections + 1, sizeof(*list));
	for (size_t i = 0; i < cfg->n_sections; i++) {
		const dr_conf_section *sec = &cfg->sections[i];
		ratelimit_state *s = &list[k];
		dr_db_rows *rows = NULL;
		dr_status st;

		if (strcmp(sec->type, "adapter") != 0 || !sec->name)
			continue;
		snprintf(s->name, sizeof(s->name), "%s", sec->name);
		s->per_second = sec->rate;
		s->burst = sec->burst;
		k++;
		st = db_query(db,
			      "SELECT GREATEST(TIMESTAMPDIFF(MICROSECOND,"
			      " NOW(6), tat), 0) / 1e6,"
			      " COALESCE(GREATEST(TIMESTAMPDIFF(MICROSECOND,"
			      " NOW(6), queue_end), 0) / 1e6, 0)"
			      " FROM rate_limits WHERE name = ?",
			      &rows, err, DB_ARGS(DB_STR(sec->name)));
		if (st != DR_OK) {
			free(list);
			return st;
		}
		if (rows->n_rows == 1 && sec->rate > 0) {
			s->booked = strtod(db_cell(rows, 0, 0), NULL);
			s->waiting = strtod(db_cell(rows, 0, 1), NULL);
		}
		db_rows_free(rows);
	}
	*out = list;
	*n = k;
	return DR_OK;
}
