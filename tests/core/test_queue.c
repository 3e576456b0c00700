/*
 * test_queue.c - retry delays, the clamp on delays plugins ask for, the
 * wakeup socket, and (against a private MariaDB, tests/core/dbserver.h)
 * the order of claims: oldest first, or round-robin across tenants with
 * [server] fair_key. Leases and fencing run end to end in
 * tests/integration/test_engine.py. Includes queue.c to EXPLAIN its SQL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <math.h>

#include "dbserver.h"
#include "jobs.h"
#include "queue.c"

static void test_backoff(void **state)
{
	dr_config cfg;
	double lo = 1e9, hi = 0;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.worker.retry_base = 2;
	cfg.worker.retry_max = 600;
	/* Equal jitter: between half and all of base * 2^(attempt-1). */
	for (int attempt = 1; attempt <= 12; attempt++) {
		double full = 2;

		for (int i = 1; i < attempt; i++)
			full *= 2;
		if (full > 600)
			full = 600;
		for (int k = 0; k < 200; k++) {
			double d = queue_backoff(&cfg, attempt);

			assert_true(d >= full / 2 && d <= full);
			if (attempt == 1) {
				lo = d < lo ? d : lo;
				hi = d > hi ? d : hi;
			}
		}
	}
	/* The jitter spreads retries out. */
	assert_true(hi - lo > 0.5);
	/* Huge attempt numbers stay capped (no overflow to inf). */
	assert_true(queue_backoff(&cfg, 100000) <= 600);
}

/* Whatever double reaches the queue becomes 0 .. one day of
 * microseconds; a plugin's retry_after that says nothing usable takes the
 * caller's fallback, and a huge one is cut to a day. */
static void test_delay_clamp(void **state)
{
	(void)state;
	assert_int_equal(queue_delay_us(1.5), 1500000);
	assert_int_equal(queue_delay_us(0), 0);
	assert_int_equal(queue_delay_us(-3), 0);
	assert_int_equal(queue_delay_us(-INFINITY), 0);
	assert_int_equal(queue_delay_us(NAN), 0);
	assert_int_equal(queue_delay_us(86400), 86400000000LL);
	assert_int_equal(queue_delay_us(86401), 86400000000LL);
	assert_int_equal(queue_delay_us(1e300), 86400000000LL);
	assert_int_equal(queue_delay_us(INFINITY), 86400000000LL);

	assert_true(queue_asked_delay(30, 5) == 30);
	assert_true(queue_asked_delay(0.25, 5) == 0.25);
	assert_true(queue_asked_delay(0, 5) == 5);
	assert_true(queue_asked_delay(-1, 5) == 5);
	assert_true(queue_asked_delay(NAN, 5) == 5);
	assert_true(queue_asked_delay(INFINITY, 5) == 5);
	assert_true(queue_asked_delay(-INFINITY, 5) == 5);
	assert_true(queue_asked_delay(1e9, 5) == QUEUE_MAX_DELAY);
	assert_true(queue_asked_delay(1e300, 5) == QUEUE_MAX_DELAY);
}

static void test_wakeup(void **state)
{
	char path[] = "/tmp/dr-wake-XXXXXX";
	char sock[64];
	struct pollfd pfd;
	char buf[8];
	int fd;

	(void)state;
	assert_non_null(mkdtemp(path));
	snprintf(sock, sizeof(sock), "%s/w.sock", path);
	/* Sending with nobody listening is silently fine. */
	queue_wakeup_send(sock);
	fd = queue_wakeup_listen(sock);
	assert_true(fd >= 0);
	queue_wakeup_send(sock);
	pfd.fd = fd;
	pfd.events = POLLIN;
	assert_int_equal(poll(&pfd, 1, 1000), 1);
	assert_int_equal(recv(fd, buf, sizeof(buf), 0), 1);
	/* A stale socket file is replaced. */
	close(fd);
	fd = queue_wakeup_listen(sock);
	assert_true(fd >= 0);
	close(fd);
	unlink(sock);
	rmdir(path);
	/* Paths too long for sun_path are refused, not truncated. */
	memset(path, 'a', sizeof(path) - 1);
	{
		char longp[200];

		memset(longp, 'a', sizeof(longp) - 1);
		longp[0] = '/';
		longp[sizeof(longp) - 1] = '\0';
		assert_int_equal(queue_wakeup_listen(longp), -1);
		queue_wakeup_send(longp);
	}
}

/* ------------------------------------------------------- claims, fair */

static dr_config cfg;
static dr_db *db;

static int db_setup(void **state)
{
	(void)state;
	if (dbserver_open("test_queue", "drt_queue", &cfg, &db) != 0)
		return -1;
	/* What intake reads: jobs get their fair_value from
	 * metadata.tenant. */
	cfg.server.fair_key = "tenant";
	return 0;
}

static int db_teardown(void **state)
{
	(void)state;
	dbserver_close(db);
	return 0;
}

/* Every test starts with no job and the cursor at its start. */
static int empty_queue(void **state)
{
	dr_error err;

	(void)state;
	assert_ok(db_exec(db, "DELETE FROM jobs", NULL, &err, DB_NOARGS), err);
	assert_ok(db_exec(db, "DELETE FROM job_metadata", NULL, &err,
			  DB_NOARGS),
		  err);
	assert_ok(db_exec(db, "UPDATE fair_cursor SET fair_value = ''", NULL,
			  &err, DB_NOARGS),
		  err);
	return 0;
}

/*
 * Make a job through intake (jobs_create) with metadata `key` = `tenant`
 * (no metadata when `key` is NULL), due since `age` seconds; its id goes
 * to `id`.
 */
static void make_job(const char *key, const char *tenant, int age,
		     char id[DR_JOB_ID_LEN + 1])
{
	dr_job_request req;
	dr_idempotency idem = { NULL, NULL, NULL };
	dr_error err;
	int replayed;

	memset(&req, 0, sizeof(req));
	req.adapter = "fake";
	req.model = "acme/m";
	req.input = json_object_new_object();
	if (key) {
		req.metadata = json_object_new_object();
		json_object_object_add(req.metadata, "other",
				       json_object_new_string("x"));
		json_object_object_add(req.metadata, key,
				       json_object_new_string(tenant));
	}
	assert_ok(jobs_create(db, &cfg, NULL, &req, &idem, id, &replayed,
			      NULL, &err),
		  err);
	assert_ok(db_exec(db,
			  "UPDATE jobs SET run_at = NOW(6) - INTERVAL ?"
			  " MICROSECOND WHERE id = ?",
			  NULL, &err,
			  DB_ARGS(DB_INT((int64_t)age * 1000000), DB_STR(id))),
		  err);
	json_object_put(req.input);
	json_object_put(req.metadata);
}

/* The tenant of job `id` as stored (malloc). */
static char *tenant_of(dr_db *h, const char *id)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	char *v;

	assert_ok(db_query(h, "SELECT fair_value FROM jobs WHERE id = ?",
			   &rows, &err, DB_ARGS(DB_STR(id))),
		  err);
	assert_int_equal(rows->n_rows, 1);
	v = strdup(db_cell(rows, 0, 0));
	db_rows_free(rows);
	return v;
}

/* Claim one job on `h` and return its tenant (malloc), or NULL when
 * nothing is due; its id goes to `id` when not NULL. */
static char *claim(dr_db *h, int fair, char *id)
{
	dr_claim c;
	dr_error err = { 0 };
	dr_status st = queue_claim(h, "test", 60, fair, &c, &err);
	char *t;

	if (st == DR_ERR_NOT_FOUND)
		return NULL;
	assert_ok(st, err);
	if (id)
		memcpy(id, c.id, sizeof(c.id));
	t = tenant_of(h, c.id);
	queue_claim_clear(&c);
	return t;
}

/* The tenants of the next `n` claims as one string, "A,B,,A" ("" for
 * the tenant of jobs without the key). */
static void claims(int fair, int n, char *out, size_t size)
{
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		char *t = claim(db, fair, NULL);

		assert_non_null(t);
		snprintf(out + strlen(out), size - strlen(out), "%s%s",
			 i ? "," : "", t);
		free(t);
	}
}

/* Intake stores the value of the configured key (found without letter
 * case, as the database finds metadata keys), "" without it or without
 * fair_key, and at most 255 characters of it. */
static void test_intake_fair_value(void **state)
{
	char id[DR_JOB_ID_LEN + 1], *v, *t;
	char long_value[1100];

	(void)state;
	make_job("tenant", "acme", 0, id);
	v = tenant_of(db, id);
	assert_string_equal(v, "acme");
	free(v);
	make_job("Tenant", "Acme", 0, id);
	v = tenant_of(db, id);
	assert_string_equal(v, "Acme");
	free(v);
	make_job("project", "acme", 0, id);
	v = tenant_of(db, id);
	assert_string_equal(v, "");
	free(v);
	make_job(NULL, NULL, 0, id);
	v = tenant_of(db, id);
	assert_string_equal(v, "");
	free(v);
	/* 300 three-byte characters: the first 255 are kept. */
	long_value[0] = '\0';
	for (int i = 0; i < 300; i++)
		strcat(long_value, "\xe2\x82\xac");
	make_job("tenant", long_value, 0, id);
	v = tenant_of(db, id);
	assert_int_equal(strlen(v), 255 * 3);
	assert_memory_equal(v, long_value, 255 * 3);
	free(v);
	cfg.server.fair_key = NULL;
	make_job("tenant", "acme", 0, id);
	cfg.server.fair_key = "tenant";
	t = tenant_of(db, id);
	assert_string_equal(t, "");
	free(t);
}

/* Without fair_key a claim takes the oldest due job, whoever's it is,
 * exactly as before fair claims. */
static void test_oldest_first(void **state)
{
	char ids[9][DR_JOB_ID_LEN + 1], got[DR_JOB_ID_LEN + 1];
	const char *who[9] = { "A", "A", "B", NULL, "A",
			       "B", NULL, "A", "A" };

	(void)state;
	for (int i = 0; i < 9; i++)
		make_job(who[i] ? "tenant" : NULL, who[i], 100 - i, ids[i]);
	for (int i = 0; i < 9; i++) {
		free(claim(db, 0, got));
		assert_string_equal(got, ids[i]);
	}
	assert_null(claim(db, 0, NULL));
}

/* Tenant A has 100 due jobs, all older than tenant B's 3: fair claims
 * alternate A,B,A,B,A,B and then serve A alone, each tenant oldest
 * first. */
static void test_fair_round_robin(void **state)
{
	char a[100][DR_JOB_ID_LEN + 1], b[3][DR_JOB_ID_LEN + 1];
	char got[DR_JOB_ID_LEN + 1], seq[400];
	int ai = 0, bi = 0;

	(void)state;
	for (int i = 0; i < 100; i++)
		make_job("tenant", "A", 1000 - i, a[i]);
	for (int i = 0; i < 3; i++)
		make_job("tenant", "B", 10 - i, b[i]);
	seq[0] = '\0';
	for (int i = 0; i < 103; i++) {
		char *t = claim(db, 1, got);

		assert_non_null(t);
		if (strcmp(t, "A") == 0)
			assert_string_equal(got, a[ai++]);
		else
			assert_string_equal(got, b[bi++]);
		if (i < 10)
			snprintf(seq + strlen(seq), sizeof(seq) - strlen(seq),
				 "%s%s", i ? "," : "", t);
		free(t);
	}
	assert_string_equal(seq, "A,B,A,B,A,B,A,A,A,A");
	assert_int_equal(ai, 100);
	assert_int_equal(bi, 3);
	assert_null(claim(db, 1, NULL));
}

/* Jobs without the key are a tenant of their own, "", served in turn. */
static void test_fair_keyless_tenant(void **state)
{
	char id[DR_JOB_ID_LEN + 1], seq[200];

	(void)state;
	for (int i = 0; i < 10; i++)
		make_job("tenant", "A", 100 - i, id);
	make_job(NULL, NULL, 50, id);
	make_job("project", "p", 49, id);
	make_job("tenant", "B", 10, id);
	claims(1, 8, seq, sizeof(seq));
	assert_string_equal(seq, "A,B,,A,,A,A,A");
}

/* A job booked in the future is not due: its tenant is not served until
 * it is, and the claim takes the next tenant's job. */
static void test_fair_future_jobs(void **state)
{
	char id[DR_JOB_ID_LEN + 1], seq[200];
	dr_error err;

	(void)state;
	make_job("tenant", "A", 30, id);
	make_job("tenant", "B", 20, id);
	assert_ok(db_exec(db,
			  "UPDATE jobs SET run_at = NOW(6) + INTERVAL 1 HOUR"
			  " WHERE id = ?",
			  NULL, &err, DB_ARGS(DB_STR(id))),
		  err);
	make_job("tenant", "C", 10, id);
	claims(1, 2, seq, sizeof(seq));
	assert_string_equal(seq, "A,C");
	assert_null(claim(db, 1, NULL));
}

/*
 * SKIP LOCKED across two connections: while another transaction holds
 * tenant A's only due job, a fair claim takes B's at once instead of
 * waiting; while it holds the cursor row too, the claim still goes
 * through (the cursor stays where it was). With every due job held, the
 * claim finds nothing, at once.
 */
static void test_fair_skip_locked(void **state)
{
	char a1[DR_JOB_ID_LEN + 1], b1[DR_JOB_ID_LEN + 1];
	char b2[DR_JOB_ID_LEN + 1], got[DR_JOB_ID_LEN + 1];
	dr_db *other = db_new(&cfg);
	dr_db_rows *rows = NULL;
	dr_error err;
	double t0;
	char *t;

	(void)state;
	make_job("tenant", "A", 30, a1);
	make_job("tenant", "B", 20, b1);
	make_job("tenant", "B", 10, b2);
	assert_ok(db_begin(other, &err), err);
	assert_ok(db_query(other, "SELECT id FROM jobs WHERE id = ? FOR UPDATE",
			   &rows, &err, DB_ARGS(DB_STR(a1))),
		  err);
	db_rows_free(rows);
	t0 = dbserver_now();
	t = claim(db, 1, got);
	assert_true(dbserver_now() - t0 < 2);
	assert_string_equal(t, "B");
	assert_string_equal(got, b1);
	free(t);
	/* The cursor says B; now the other transaction holds it as well. */
	assert_ok(db_query(other,
			   "SELECT fair_value FROM fair_cursor WHERE id = 1"
			   " FOR UPDATE",
			   &rows, &err, DB_NOARGS),
		  err);
	assert_string_equal(db_cell(rows, 0, 0), "B");
	db_rows_free(rows);
	t0 = dbserver_now();
	t = claim(db, 1, got);
	assert_true(dbserver_now() - t0 < 2);
	assert_string_equal(t, "B");
	assert_string_equal(got, b2);
	free(t);
	t0 = dbserver_now();
	assert_null(claim(db, 1, NULL));
	assert_true(dbserver_now() - t0 < 2);
	db_rollback(other);
	/* Released: A's job is due and claimable again. */
	t = claim(db, 1, got);
	assert_string_equal(got, a1);
	free(t);
	db_free(other);
}

/* After QUEUE_FAIR_MAX_PROBES tenants whose due jobs all are held, the
 * claim takes the oldest due job, whoever's it is: t65's (older) rather
 * than t64's, which round-robin would have served. */
static void test_fair_probe_limit(void **state)
{
	char ids[QUEUE_FAIR_MAX_PROBES + 2][DR_JOB_ID_LEN + 1], name[16];
	char got[DR_JOB_ID_LEN + 1];
	dr_db *other = db_new(&cfg);
	dr_error err;
	char *t;

	(void)state;
	for (int i = 0; i < QUEUE_FAIR_MAX_PROBES + 2; i++) {
		snprintf(name, sizeof(name), "t%02d", i);
		make_job("tenant", name,
			 i == QUEUE_FAIR_MAX_PROBES + 1 ? 500 : 100, ids[i]);
	}
	/* By primary key: a scan would lock every row it reads. */
	assert_ok(db_begin(other, &err), err);
	for (int i = 0; i < QUEUE_FAIR_MAX_PROBES; i++) {
		dr_db_rows *rows = NULL;

		assert_ok(db_query(other,
				   "SELECT id FROM jobs WHERE id = ? FOR UPDATE",
				   &rows, &err, DB_ARGS(DB_STR(ids[i]))),
			  err);
		db_rows_free(rows);
	}
	t = claim(db, 1, got);
	assert_non_null(t);
	assert_string_equal(t, "t65");
	free(t);
	t = claim(db, 1, got);
	assert_non_null(t);
	assert_string_equal(t, "t64");
	free(t);
	db_rollback(other);
	db_free(other);
}

/* The UPDATE that README's "Fairness across tenants" offers an operator
 * who changed fair_key gives queued jobs the tenant intake would give
 * them now, and leaves ended jobs alone. */
static void test_rekey_statement(void **state)
{
	char queued[DR_JOB_ID_LEN + 1], keyless[DR_JOB_ID_LEN + 1];
	char ended[DR_JOB_ID_LEN + 1], *v;
	dr_error err;

	(void)state;
	cfg.server.fair_key = NULL;
	make_job("Tenant", "acme", 0, queued);
	make_job(NULL, NULL, 0, keyless);
	make_job("tenant", "old", 0, ended);
	cfg.server.fair_key = "tenant";
	assert_ok(db_exec(db, "UPDATE jobs SET run_at = NULL WHERE id = ?",
			  NULL, &err, DB_ARGS(DB_STR(ended))),
		  err);
	assert_ok(db_exec_text(db,
			       "UPDATE jobs j LEFT JOIN job_metadata m ON"
			       " m.job_id = j.id AND m.k = 'tenant'"
			       " SET j.fair_value = LEFT(COALESCE(m.v, ''),"
			       " 255) WHERE j.run_at IS NOT NULL",
			       &err),
		  err);
	v = tenant_of(db, queued);
	assert_string_equal(v, "acme");
	free(v);
	v = tenant_of(db, keyless);
	assert_string_equal(v, "");
	free(v);
	v = tenant_of(db, ended);
	assert_string_equal(v, "");
	free(v);
}

/* Insert `n` jobs of tenant `tenant` (a SQL expression of the sequence
 * number `seq`) due in `due` seconds (a SQL expression; NULL: ended). */
static void bulk(int n, const char *tenant, const char *due)
{
	char sql[800];
	dr_error err;

	snprintf(sql, sizeof(sql),
		 "INSERT INTO jobs (id, status, step, adapter, model, input,"
		 " renditions, fair_value, run_at, created_at, updated_at)"
		 " SELECT CONCAT('j_', LPAD(HEX(RANDOM_BYTES(13)), 26, '0')),"
		 " 'queued', 'submit', 'fake', 'm', '{}', '[]', %s,"
		 " NOW(6) + INTERVAL (%s) SECOND, NOW(6), NOW(6)"
		 " FROM seq_1_to_%d",
		 tenant, due ? due : "NULL", n);
	assert_ok(db_exec_text(db, sql, &err), err);
}

/*
 * "An indexed key, one probe per tenant", with the queue of the spec: one
 * tenant's backfill of 10,000 due jobs, 1,000 tenants with a due job
 * each, 200 tenants whose 2,000 jobs a rate limit booked an hour ahead,
 * and 5,000 ended jobs. With the backfill ahead of the cursor, the tenant
 * list is a loose index scan of jobs_fair (one dive per tenant, not
 * 10,000 rows) and the probe an index lookup on it. The time of a claim
 * is printed, and 2,000 claims serve the 1,000 small tenants all (the
 * backfill gets every other claim).
 */
static void test_fair_plans(void **state)
{
	const char *const queries[] = { sql_tenants_after, sql_tenants_from,
					sql_probe };
	char text[600];
	dr_db_rows *rows = NULL;
	dr_error err;
	double t0, per;
	int backfill = 0;

	(void)state;
	bulk(10000, "'backfill'", "-3600 + seq / 1000");
	bulk(1000, "CONCAT('t', LPAD(seq, 4, '0'))", "-seq / 1000");
	bulk(2000, "CONCAT('limited', seq % 200)", "3600");
	bulk(5000, "CONCAT('t', LPAD(seq % 1000, 4, '0'))", NULL);
	assert_ok(db_exec(db, "ANALYZE TABLE jobs", NULL, &err, DB_NOARGS),
		  err);
	for (size_t q = 0; q < 3; q++) {
		const char *sql = queries[q];
		char *p;

		/* EXPLAIN takes no parameter marker here: the literal of a
		 * cursor before the backfill, "" (for the probe: the
		 * backfill). The optimizer weighs the loose scan against a
		 * range scan with the actual value: past the big tenant a
		 * range scan of a few small tenants is as good (and taken). */
		p = strchr(sql, '?');
		assert_non_null(p);
		snprintf(text, sizeof(text), "EXPLAIN %.*s%s%s",
			 (int)(p - sql), sql, q < 2 ? "''" : "'backfill'",
			 p + 1);
		assert_ok(db_query_uncached(db, text, &rows, &err, DB_NOARGS),
			  err);
		assert_int_equal(rows->n_rows, 1);
		/* id select_type table type possible_keys key key_len ref
		 * rows Extra */
		print_message("%s\n  key=%s type=%s rows=%s extra=%s\n", sql,
			      db_cell(rows, 0, 5), db_cell(rows, 0, 3),
			      db_cell(rows, 0, 8), db_cell(rows, 0, 9));
		assert_string_equal(db_cell(rows, 0, 5), "jobs_fair");
		if (q < 2)
			assert_non_null(strstr(db_cell(rows, 0, 9),
					       "Using index for group-by"));
		db_rows_free(rows);
	}
	t0 = dbserver_now();
	for (int i = 0; i < 2000; i++) {
		char *t = claim(db, 1, NULL);

		assert_non_null(t);
		backfill += strcmp(t, "backfill") == 0;
		free(t);
	}
	per = (dbserver_now() - t0) / 2000;
	print_message("fair claim: %.2f ms each (tenant lookup included)\n",
		      per * 1000);
	assert_int_equal(backfill, 1000);
	t0 = dbserver_now();
	for (int i = 0; i < 200; i++)
		free(claim(db, 0, NULL));
	print_message("oldest-first claim: %.2f ms each\n",
		      (dbserver_now() - t0) / 200 * 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_delay_clamp),
		cmocka_unit_test(test_wakeup),
	};
	const struct CMUnitTest db_tests[] = {
		cmocka_unit_test_setup(test_intake_fair_value, empty_queue),
		cmocka_unit_test_setup(test_oldest_first, empty_queue),
		cmocka_unit_test_setup(test_fair_round_robin, empty_queue),
		cmocka_unit_test_setup(test_fair_keyless_tenant, empty_queue),
		cmocka_unit_test_setup(test_fair_future_jobs, empty_queue),
		cmocka_unit_test_setup(test_fair_skip_locked, empty_queue),
		cmocka_unit_test_setup(test_fair_probe_limit, empty_queue),
		cmocka_unit_test_setup(test_rekey_statement, empty_queue),
		cmocka_unit_test_setup(test_fair_plans, empty_queue),
	};
	int failed = cmocka_run_group_tests_name("queue", tests, NULL, NULL);

	return failed + cmocka_run_group_tests_name("queue_db", db_tests,
						    db_setup, db_teardown);
}
