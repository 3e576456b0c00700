/*
 * test_ratelimit.c - the create-rate limit (core/ratelimit.h): the GCRA
 * with its booking horizon on a fake clock, then reservations against a
 * private MariaDB (tests/core/dbserver.h): a booked slot used once
 * without reserving again, a lease lost, and two processes (two
 * connections) reserving at once never granting more than the limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dbserver.h"
#include "jobfix.h"
#include "queue.h"
#include "ratelimit.h"

static dr_config cfg;
static dr_db *db;

#define SEC 1000000LL
#define NOW (800000000LL * SEC) /* the fake clock's start */

static int group_setup(void **state)
{
	(void)state;
	if (dbserver_open("test_ratelimit", "drt_ratelimit", &cfg, &db) != 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dbserver_close(db);
	return 0;
}

/* ------------------------------------------------------- the GCRA alone */

static void test_params(void **state)
{
	ratelimit_params p;

	(void)state;
	ratelimit_params_of(10, 5, &p);
	assert_int_equal(p.t_us, SEC / 10);
	assert_int_equal(p.tau_us, 4 * SEC / 10);
	assert_int_equal(p.horizon_us, (int64_t)(RATELIMIT_HORIZON * SEC));
	ratelimit_params_of(600.0 / 60, 1, &p);
	assert_int_equal(p.t_us, SEC / 10);
	assert_int_equal(p.tau_us, 0);
	ratelimit_params_of(1.0 / 3600, 1, &p);
	assert_int_equal(p.t_us, 3600 * SEC);
}

/* 10/s, burst 5, everything asked at one instant: the burst goes now,
 * then slots 0.1 s apart are booked up to the horizon, then the rest get
 * places in line 0.1 s apart, nothing booked. */
static void test_burst_book_defer(void **state)
{
	ratelimit_params p;
	ratelimit_decision d;
	int64_t tat = 0, qend = 0;
	int go = 0, book = 0, defer = 0;

	(void)state;
	ratelimit_params_of(10, 5, &p);
	for (int i = 0; i < 60; i++) {
		ratelimit_gcra(&p, tat, qend, NOW, &d);
		if (i < 5) {
			assert_int_equal(d.verdict, RATELIMIT_GO);
			go++;
		} else if (i < 25) {
			/* Slots 0.1 s .. 2.0 s from now: the horizon. */
			assert_int_equal(d.verdict, RATELIMIT_BOOK);
			assert_int_equal(d.run_at_us,
					 NOW + (int64_t)(i - 4) * p.t_us);
			assert_true(d.run_at_us - NOW <= p.horizon_us);
			book++;
		} else {
			/* Beyond: in line, half a horizon before each
			 * place, the places one interval apart; tat stays. */
			assert_int_equal(d.verdict, RATELIMIT_DEFER);
			assert_int_equal(d.tat_us, tat);
			assert_int_equal(d.run_at_us,
					 NOW + (int64_t)(i - 4) * p.t_us -
						 p.horizon_us / 2);
			defer++;
		}
		tat = d.tat_us;
		qend = d.queue_end_us;
	}
	assert_int_equal(go, 5);
	assert_int_equal(book, 20);
	assert_int_equal(defer, 35);
	/* Booked at most the horizon (plus the burst's tolerance) ahead. */
	assert_true(tat - NOW <= p.horizon_us + p.tau_us + p.t_us);
}

/*
 * A stream of requests every millisecond for 30 s of fake time, each
 * taking what the limit says (GO: a create now; BOOK: a create at its
 * slot; DEFER: ask again at run_at). Every create time is recorded; in
 * any window, creates <= burst + window * rate (GCRA's conformance), and
 * the long-run rate is the configured one.
 */
static void test_never_over_rate(void **state)
{
	enum { MAXC = 2000, MAXW = 4000 };
	static int64_t creates[MAXC], waiting[MAXW];
	ratelimit_params p;
	ratelimit_decision d;
	int64_t tat = 0, qend = 0;
	size_t nc = 0, nw = 0;

	(void)state;
	ratelimit_params_of(10, 5, &p);
	for (int64_t now = NOW; now < NOW + 30 * SEC; now += 1000) {
		size_t na = 0; /* requests asking now */

		/* A new request every 1 ms (far above the rate) while the
		 * line is short, plus those whose run_at came. */
		if (nw < 200)
			na++;
		for (size_t i = 0; i < nw;) {
			if (waiting[i] <= now) {
				na++;
				waiting[i] = waiting[--nw];
			} else
				i++;
		}
		for (size_t k = 0; k < na; k++) {
			ratelimit_gcra(&p, tat, qend, now, &d);
			tat = d.tat_us;
			qend = d.queue_end_us;
			if (d.verdict == RATELIMIT_DEFER) {
				assert_true(d.run_at_us > now - p.horizon_us);
				assert_true(nw < MAXW);
				waiting[nw++] = d.run_at_us;
				continue;
			}
			assert_true(nc < MAXC);
			creates[nc++] = d.verdict == RATELIMIT_GO ? now
								  : d.run_at_us;
		}
	}
	/* Sorted create times (insertion sort: small). */
	for (size_t i = 1; i < nc; i++)
		for (size_t j = i; j > 0 && creates[j - 1] > creates[j]; j--) {
			int64_t t = creates[j];

			creates[j] = creates[j - 1];
			creates[j - 1] = t;
		}
	/* Any run of creates i..j: j - i + 1 <= burst + (t_j - t_i) / T. */
	for (size_t i = 0; i < nc; i++)
		for (size_t j = i; j < nc && j < i + 40; j++)
			assert_true((int64_t)(j - i) * p.t_us <=
				    p.tau_us + (creates[j] - creates[i]));
	/* About 10/s: 5 + 10 * 30 at most, and the limit was kept busy. */
	assert_true(nc <= 5 + 300 + 21);
	assert_true(nc >= 290);
}

/* A go after a quiet spell clears the line: nobody waits any more. */
static void test_go_clears_line(void **state)
{
	ratelimit_params p;
	ratelimit_decision d;

	(void)state;
	ratelimit_params_of(10, 1, &p);
	/* tat 5 s ahead: beyond the horizon, a place in line. */
	ratelimit_gcra(&p, NOW + 5 * SEC, 0, NOW, &d);
	assert_int_equal(d.verdict, RATELIMIT_DEFER);
	assert_int_equal(d.queue_end_us, NOW + 5 * SEC + p.t_us);
	/* The next one stands behind it. */
	ratelimit_gcra(&p, NOW + 5 * SEC, d.queue_end_us, NOW, &d);
	assert_int_equal(d.run_at_us, NOW + 5 * SEC + p.t_us -
					      p.horizon_us / 2);
	/* Much later, with capacity idle: go, and the line is gone. */
	ratelimit_gcra(&p, NOW + 5 * SEC, d.queue_end_us, NOW + 60 * SEC, &d);
	assert_int_equal(d.verdict, RATELIMIT_GO);
	assert_int_equal(d.queue_end_us, 0);
	assert_int_equal(d.tat_us, NOW + 60 * SEC + p.t_us);
}

/* ---------------------------------------------------- against MariaDB */

static void make_job(char id[DR_JOB_ID_LEN + 1])
{
	jobfix f;

	memset(&f, 0, sizeof(f));
	f.status = "queued";
	f.step = "submit";
	f.lease_version = 1;
	jobfix_make(db, &f, id);
}

static char *tat_of(const char *name)
{
	return jobfix_cell(db, "(SELECT name AS id, tat FROM rate_limits) r",
			   name, "tat");
}

/* Claim the one due job as a worker does. */
static void claim(dr_claim *c, const char *want)
{
	dr_error err;

	dr_error_clear(&err);
	assert_ok(queue_claim(db, "test:1", 30, 0, c, &err), err);
	assert_string_equal(c->id, want);
}

/* 10/s, burst 1, two jobs claimed as a worker claims them: the first
 * goes; the second books its slot (rate_slot set, released to run again
 * in <= 0.1 s, no attempt counted); asked again before its slot it is
 * sent back to the same slot without booking another; not due before
 * its slot; claimed again at its slot it goes without reserving (tat
 * unchanged, rate_slot cleared). */
static void test_book_then_go_once(void **state)
{
	char a[DR_JOB_ID_LEN + 1], b[DR_JOB_ID_LEN + 1];
	dr_claim c;
	ratelimit_result r;
	dr_error err;
	char *tat1, *tat2;

	(void)state;
	dr_error_clear(&err);
	memset(&c, 0, sizeof(c));
	assert_ok(db_exec(db, "UPDATE jobs SET run_at = NULL", NULL, &err,
			  DB_NOARGS),
		  err);
	make_job(a);
	dbserver_sleep(0.002);
	make_job(b);

	claim(&c, a);
	assert_ok(ratelimit_reserve(db, "book", 10, 1, a, c.lease_version, &r,
				    &err),
		  err);
	assert_int_equal(r.verdict, RATELIMIT_GO);
	assert_int_equal(r.used_slot, 0);
	assert_col(db, a, "rate_slot", "(null)");
	assert_ok(db_exec(db, "UPDATE jobs SET run_at = NULL WHERE id = ?",
			  NULL, &err, DB_ARGS(DB_STR(a))),
		  err);
	queue_claim_clear(&c);

	claim(&c, b);
	assert_ok(ratelimit_reserve(db, "book", 10, 1, b, c.lease_version, &r,
				    &err),
		  err);
	assert_int_equal(r.verdict, RATELIMIT_BOOK);
	assert_true(r.delay > 0 && r.delay <= 0.1);
	assert_true(r.booked > 0.1 && r.booked <= 0.2);
	{
		char *slot = jobfix_col(db, b, "rate_slot");

		assert_string_not_equal(slot, "(null)");
		free(slot);
	}
	tat1 = tat_of("book");

	/* Early: back to the same slot, nothing booked. */
	assert_ok(ratelimit_reserve(db, "book", 10, 1, b, c.lease_version, &r,
				    &err),
		  err);
	assert_int_equal(r.verdict, RATELIMIT_BOOK);
	assert_true(r.delay <= 0.1);
	tat2 = tat_of("book");
	assert_string_equal(tat1, tat2);
	free(tat2);

	/* Released to its slot: not due before it, no try counted. */
	assert_ok(queue_release(db, &c, r.delay, &err), err);
	queue_claim_clear(&c);
	assert_col(db, b, "attempts", "0");
	assert_int_equal(queue_claim(db, "test:1", 30, 0, &c, &err),
			 DR_ERR_NOT_FOUND);
	dbserver_sleep(r.delay + 0.005);
	claim(&c, b);
	assert_ok(ratelimit_reserve(db, "book", 10, 1, b, c.lease_version, &r,
				    &err),
		  err);
	assert_int_equal(r.verdict, RATELIMIT_GO);
	assert_int_equal(r.used_slot, 1);
	assert_col(db, b, "rate_slot", "(null)");
	tat2 = tat_of("book");
	assert_string_equal(tat1, tat2);
	free(tat1);
	free(tat2);
	queue_claim_clear(&c);

	/* The rate and burst of the last user are on the row (metrics). */
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM rate_limits WHERE"
				      " name = ? AND per_second = 10 AND"
				      " burst = 1",
				      "book"),
			 1);
}

/* A job whose lease moved on cannot reserve: nothing changes. */
static void test_lease_lost(void **state)
{
	char a[DR_JOB_ID_LEN + 1];
	ratelimit_result r;
	dr_error err;

	(void)state;
	dr_error_clear(&err);
	make_job(a);
	assert_int_equal(ratelimit_reserve(db, "lost", 10, 1, a, 2, &r, &err),
			 DR_ERR_CONFLICT);
	assert_string_equal(err.code, "lease_lost");
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM rate_limits"
				      " WHERE name = ?",
				      "lost"),
			 0);
}

/* No job holds a slot (each test counts its own). */
static void forget_slots(void)
{
	dr_error err;

	dr_error_clear(&err);
	assert_ok(db_exec(db, "UPDATE jobs SET rate_slot = NULL", NULL, &err,
			  DB_NOARGS),
		  err);
}

/* Two processes, each on its own connection, reserve for `per` jobs each
 * at once through limit `name`; returns the number of GOs granted in
 * all (each child's count is its exit status). */
static int reserve_in_two(const char *name, double rate, int burst,
			  char ids[][DR_JOB_ID_LEN + 1], int per)
{
	pid_t pids[2];
	int total = 0;

	for (int w = 0; w < 2; w++) {
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] == 0) {
			dr_db *mine = db_new(&cfg);
			int go = 0;

			for (int i = 0; i < per; i++) {
				ratelimit_result r;
				dr_error err;

				dr_error_clear(&err);
				if (ratelimit_reserve(mine, name, rate, burst,
						      ids[w * per + i], 1, &r,
						      &err) != DR_OK) {
					fprintf(stderr, "reserve: %s\n",
						err.message);
					_exit(255);
				}
				go += r.verdict == RATELIMIT_GO;
			}
			db_free(mine);
			_exit(go);
		}
	}
	for (int w = 0; w < 2; w++) {
		int status = 0;

		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		assert_true(WIFEXITED(status));
		assert_int_not_equal(WEXITSTATUS(status), 255);
		total += WEXITSTATUS(status);
	}
	return total;
}

/* 1/h, burst 10: however the two interleave, exactly 10 creates are
 * granted (a lost update would grant more), and nothing is booked (the
 * next slot is an hour away, beyond the horizon). */
static void test_two_workers_burst(void **state)
{
	static char ids[50][DR_JOB_ID_LEN + 1];

	(void)state;
	forget_slots();
	for (int i = 0; i < 50; i++)
		make_job(ids[i]);
	assert_int_equal(reserve_in_two("two", 1.0 / 3600, 10, ids, 25), 10);
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM jobs WHERE"
				      " rate_slot IS NOT NULL AND id <> ?",
				      "-"),
			 0);
}

/* 10/s, burst 1, the limit used and two slots booked (0.3 s ahead, so
 * the children start in time): two processes book 16 more at once; the
 * 18 slots are all different and exactly 0.1 s apart. */
static void test_two_workers_slots(void **state)
{
	static char ids[19][DR_JOB_ID_LEN + 1];
	dr_db_rows *rows = NULL;
	ratelimit_result r;
	dr_error err;

	(void)state;
	dr_error_clear(&err);
	forget_slots();
	for (int i = 0; i < 19; i++)
		make_job(ids[i]);
	assert_ok(ratelimit_reserve(db, "slots", 10, 1, ids[16], 1, &r, &err),
		  err);
	assert_int_equal(r.verdict, RATELIMIT_GO);
	for (int i = 17; i < 19; i++) {
		assert_ok(ratelimit_reserve(db, "slots", 10, 1, ids[i], 1, &r,
					    &err),
			  err);
		assert_int_equal(r.verdict, RATELIMIT_BOOK);
	}
	assert_int_equal(reserve_in_two("slots", 10, 1, ids, 8), 0);
	assert_ok(db_query_uncached(
			  db,
			  "SELECT TIMESTAMPDIFF(MICROSECOND, '2000-01-01',"
			  " rate_slot) FROM jobs WHERE rate_slot IS NOT NULL"
			  " ORDER BY rate_slot",
			  &rows, &err, DB_NOARGS),
		  err);
	assert_int_equal(rows->n_rows, 18);
	for (size_t i = 1; i < rows->n_rows; i++)
		assert_int_equal(strtoll(db_cell(rows, i, 0), NULL, 10) -
					 strtoll(db_cell(rows, i - 1, 0), NULL,
						 10),
				 SEC / 10);
	db_rows_free(rows);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_burst_book_defer),
		cmocka_unit_test(test_never_over_rate),
		cmocka_unit_test(test_go_clears_line),
		cmocka_unit_test(test_book_then_go_once),
		cmocka_unit_test(test_lease_lost),
		cmocka_unit_test(test_two_workers_burst),
		cmocka_unit_test(test_two_workers_slots),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
