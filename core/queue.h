/*
 * queue.h - the durable job queue on MariaDB: claims, leases, fencing.
 *
 * The jobs table is the queue. A job is due when run_at <= NOW(6). A claim
 * takes one due job in a short transaction (SELECT ... FOR UPDATE SKIP
 * LOCKED, then UPDATE by primary key), sets lease_owner, bumps
 * lease_version (the fencing token) and moves run_at to the lease's end,
 * all on the database clock. If the worker dies, the job simply becomes
 * due again when the lease ends: there is no separate rescue pass. Every
 * later write of the attempt names the lease_version it holds, and one
 * that matches no row means the lease was lost (it expired and another
 * worker took the job, or the job was canceled): the worker then stops
 * touching the job.
 *
 * Which due job a claim takes: the oldest, or with [server] fair_key the
 * oldest of the next tenant in a round-robin (queue_claim()); the lease
 * taken is the same either way.
 *
 * Idle workers sleep on a unix datagram socket (the wakeup socket) that
 * the API pokes after queueing work, and otherwise until the next run_at.
 */
#ifndef DR_QUEUE_H
#define DR_QUEUE_H

#include <stdint.h>

#include "config.h"
#include "db.h"
#include "error.h"
#include "ids.h"

/* A claimed job: what the worker needs to run its due step. */
typedef struct dr_claim {
	char id[DR_JOB_ID_LEN + 1];
	uint64_t lease_version;
	char status[16];
	char step[16];
	char adapter[65];
	char callback_state[16]; /* pending when any callback delivery
				    the job carries is pending (its own,
				    a batch's); else its latest one's:
				    none (no delivery), delivered,
				    failed */
	char *model;           /* malloc */
	char *input;           /* malloc, JSON */
	char *prediction_id;   /* malloc, or NULL */
	int attempts;
	int cancel_requested;
	double submitted_at;      /* epoch seconds, 0 when NULL */
	int64_t submitted_us;     /* the same in microseconds, 0 when NULL */
	double provider_deadline; /* epoch seconds, 0 when NULL */
	double now;               /* the database clock at the claim */
	int abandoned; /* claims in a row that found the previous lease
			  still held: its worker died or stalled mid-step */
	char parent[DR_JOB_ID_LEN + 1]; /* a workflow's step: the
					   workflow; "" otherwise */
	int training;	   /* jobs.kind is 'training' (POST /v1/trainings) */
	char *destination; /* a training's destination model (malloc), or
			      NULL */
} dr_claim;

/* Release the strings of a claim; accepts a zeroed claim. */
void queue_claim_clear(dr_claim *c);

/*
 * Claim one due job for `owner` (a worker name) with a lease of `lease`
 * seconds. Without `fair`, the oldest due job. With `fair` ([server]
 * fair_key set), round-robin across tenants (jobs.fair_value, one tenant
 * per value, jobs without one are the tenant ""): the oldest due job of
 * the next tenant after the one served last (the fair_cursor row) that
 * has one no other claim holds. The round-robin is approximate under
 * concurrency: claims read the cursor without locking it and move it only
 * when no other claim holds it, so two may serve one tenant in a row; and
 * after QUEUE_FAIR_MAX_PROBES tenants whose due jobs all are held, the
 * oldest due job is taken. Either way the same lease is taken in the same
 * short transaction. DR_OK with *c filled, DR_ERR_NOT_FOUND when nothing
 * is due, or a database status.
 */
#define QUEUE_FAIR_MAX_PROBES 64

dr_status queue_claim(dr_db *db, const char *owner, double lease, int fair,
		      dr_claim *c, dr_error *err) DR_WARN_UNUSED;

/* Seconds until the next job is due (0 when one is due now), or -1 when
 * no job is scheduled. */
dr_status queue_next_due(dr_db *db, double *seconds, dr_error *err)
	DR_WARN_UNUSED;

/* The status of a write fenced by a lease (WHERE ... AND lease_version =
 * ?) that ran with status `st` and changed `affected` rows: `st`, or
 * DR_ERR_CONFLICT with code "lease_lost" when it ran but changed no row
 * (the lease was lost). */
dr_status queue_fenced(dr_status st, uint64_t affected,
		       dr_error *err) DR_WARN_UNUSED;

/* Extend the lease of a claimed job to `lease` seconds from now.
 * DR_ERR_CONFLICT when the lease was lost. */
dr_status queue_extend(dr_db *db, const dr_claim *c, double lease,
		       dr_error *err) DR_WARN_UNUSED;

/* Give the job back, due again in `delay` seconds (0: now), keeping its
 * state. DR_ERR_CONFLICT when the lease was lost. */
dr_status queue_release(dr_db *db, const dr_claim *c, double delay,
			dr_error *err) DR_WARN_UNUSED;

/* The longest delay the queue schedules in one step: one day. Longer
 * waits (a provider deadline days away) simply take several. */
#define QUEUE_MAX_DELAY 86400.0

/* `seconds` as whole microseconds for an INTERVAL, clamped to
 * 0..QUEUE_MAX_DELAY (NaN is 0), so no double reaching the queue, however
 * wrong, overflows the conversion or the DATETIME it is added to. */
int64_t queue_delay_us(double seconds);

/*
 * The delay to honour when a plugin asked for `asked` seconds
 * (dr_error.retry_after, a double any plugin may fill with anything):
 * `fallback` when it asked nothing usable (NaN, an infinity, 0 or less),
 * otherwise `asked` cut to QUEUE_MAX_DELAY (one day). Callers with a
 * tighter bound (a prediction's provider deadline) apply it as well.
 */
double queue_asked_delay(double asked, double fallback);

/* The delay before retry number `attempt` (1-based): retry_base doubling
 * per attempt up to retry_max, with "equal jitter" (half fixed, half
 * random) so retries of many jobs spread out. */
double queue_backoff(const dr_config *cfg, int attempt);

/* Bind the wakeup socket at `path` (replacing a stale one), mode 0660.
 * Returns the fd or -1 with errno set. */
int queue_wakeup_listen(const char *path);

/* Poke one idle worker through the socket at `path`. Never blocks; a
 * missing socket or a full queue is ignored (workers also poll). */
void queue_wakeup_send(const char *path);

#endif
