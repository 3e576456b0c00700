/*
 * ratelimit.h - a create-rate limit per adapter instance, shared by every
 * worker on every host, before the provider's 429.
 *
 * [adapter "x"] rate = 600/min, burst = 5 (config.h) limits how often
 * workers create predictions through that instance. The state is one row
 * of rate_limits (migrations/0012_rate_limits.sql) holding a GCRA
 * (generic cell rate algorithm) on the database clock: with
 * T = 1/rate (the emission interval) and tau = (burst - 1) * T, a create
 * is allowed at allowed_at = max(tat, now) - tau, and each create moves
 * tat to max(tat, now) + T. The row is read and written in one short
 * transaction of its own (SELECT ... FOR UPDATE), never inside a claim:
 * queue_claim() has committed before the step runs.
 *
 * A job that may not go now never sleeps in a worker:
 *   - within the horizon (allowed_at - now <= RATELIMIT_HORIZON) it books
 *     the slot: tat moves on, jobs.rate_slot remembers allowed_at, and the
 *     job is released to run_at = allowed_at; claimed again then, it
 *     submits without reserving again;
 *   - beyond it nothing is booked: the job is released to stand in line,
 *     at run_at = (its place) - RATELIMIT_HORIZON / 2, where its place is
 *     max(queue_end, allowed_at) and queue_end moves on by T for the next
 *     one. So a backfill of 10,000 jobs books at most the horizon's worth
 *     of slots, a canceled job wastes at most its one slot, and the jobs
 *     put off come back one emission interval apart, each about half a
 *     horizon before its turn, instead of all at once. A job that goes
 *     now clears the line (nobody was waiting for the capacity).
 *
 * A booked slot is honoured up to min(T + tau, RATELIMIT_LATE) seconds
 * after it; a job claimed later (workers were busy) reserves again, so
 * late jobs cannot pile up into more than about one extra burst.
 *
 * Who may call whom: db -> ratelimit -> engine, worker, cli_main.
 * It knows nothing of steps or plugins.
 */
#ifndef DR_RATELIMIT_H
#define DR_RATELIMIT_H

#include <stdint.h>

#include "config.h"
#include "db.h"
#include "error.h"

/* Seconds ahead a job may book its slot (2 s): a few worker claim
 * rounds, so booked jobs are claimed near their slot, while a backfill
 * books at most 2 s of creates (20 at 10/s). */
#define RATELIMIT_HORIZON 2.0

/* Longest seconds after a booked slot it is still used (T + tau when
 * that is shorter). */
#define RATELIMIT_LATE 0.2

/* The settings of one limit, in microseconds. */
typedef struct ratelimit_params {
	int64_t t_us;	    /* emission interval, 1/rate */
	int64_t tau_us;	    /* (burst - 1) * T */
	int64_t horizon_us; /* RATELIMIT_HORIZON */
} ratelimit_params;

/* `per_second` > 0 and `burst` >= 1 (config.h) into *p. */
void ratelimit_params_of(double per_second, int burst, ratelimit_params *p);

typedef enum ratelimit_verdict {
	RATELIMIT_GO = 0, /* create now */
	RATELIMIT_BOOK,	  /* slot booked: run again at run_at_us */
	RATELIMIT_DEFER	  /* beyond the horizon: run again at run_at_us */
} ratelimit_verdict;

/* The GCRA's answer; times in microseconds on the caller's clock. */
typedef struct ratelimit_decision {
	ratelimit_verdict verdict;
	int64_t tat_us;	      /* the row's new tat */
	int64_t queue_end_us; /* the row's new queue_end, 0: none */
	int64_t run_at_us;    /* BOOK: the slot; DEFER: when to come back */
} ratelimit_decision;

/*
 * The GCRA with the booking horizon, pure: the row holds `tat_us`
 * (0: never used) and `queue_end_us` (0: nobody waits), the clock says
 * `now_us`. Fills *d; see the header comment for the rules.
 */
void ratelimit_gcra(const ratelimit_params *p, int64_t tat_us,
		    int64_t queue_end_us, int64_t now_us,
		    ratelimit_decision *d);

/* What ratelimit_reserve() decided for a job. */
typedef struct ratelimit_result {
	ratelimit_verdict verdict;
	int used_slot; /* GO on a slot the job booked earlier */
	double delay;  /* BOOK, DEFER: seconds from now to run again */
	double booked; /* seconds of slots booked ahead (tat - now, >= 0) */
} ratelimit_result;

/*
 * Reserve a create through the limit `name` (an adapter instance) at
 * `per_second` / `burst`, for the claimed job `job_id` holding lease
 * `lease_version`, in one short transaction (run again after a deadlock).
 * A job with a booked slot that is due goes without reserving again (the
 * slot is cleared); one claimed before its slot is sent back to it. On
 * BOOK the job's rate_slot is written (fenced). The caller releases the
 * job (queue_release) by r->delay on BOOK and DEFER. DR_ERR_CONFLICT
 * with code "lease_lost" when the lease is gone; a database status
 * otherwise; the limit is unchanged on failure.
 */
dr_status ratelimit_reserve(dr_db *db, const char *name, double per_second,
			    int burst, const char *job_id,
			    uint64_t lease_version, ratelimit_result *r,
			    dr_error *err) DR_WARN_UNUSED;

/*
 * Bring the rate_limits rows in line with `cfg`: each adapter with a rate
 * gets its rate and burst recorded (the row made if missing), each one
 * without loses its row. For the worker at start, so /metrics shows the
 * settings in effect before the first create.
 */
dr_status ratelimit_sync(dr_db *db, const dr_config *cfg,
			 dr_error *err) DR_WARN_UNUSED;

/* One limit as `darkroom limits` shows it. */
typedef struct ratelimit_state {
	char name[65];
	double per_second; /* 0: no limit */
	int burst;
	double booked;	/* seconds, tat - now, >= 0 */
	double waiting; /* seconds, queue_end - now, >= 0 */
} ratelimit_state;

/*
 * The state of every adapter of `cfg`, in file order, its settings from
 * `cfg` and its booking from the database. *out is malloc'd (the caller
 * frees it), *n its length.
 */
dr_status ratelimit_list(dr_db *db, const dr_config *cfg, ratelimit_state **out,
			 size_t *n, dr_error *err) DR_WARN_UNUSED;

#endif
