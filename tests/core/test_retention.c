/*
 * test_retention.c - core/retention.c against a real MariaDB
 * (tests/core/dbserver.h, migrations applied): only rows older than their
 * table's setting go, oldest first, in batches of the size asked (counted
 * by the server's own statement counter), nothing when a setting is off;
 * and the worker's pass, one batch per step.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dbserver.h"
/* The .c, for its statements (delete_sql). */
#include "retention.c"

static dr_config cfg;
static dr_db *db;

static int group_setup(void **state)
{
	(void)state;
	if (dbserver_open("test_retention", "drt_retention", &cfg, &db) != 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dbserver_close(db);
	return 0;
}

/* Each test starts with empty tables and the shipped defaults. */
static int empty(void **state)
{
	dr_error err;

	(void)state;
	assert_ok(db_exec_text(db, "DELETE FROM idempotency_keys", &err), err);
	assert_ok(db_exec_text(db, "DELETE FROM webhook_deliveries", &err),
		  err);
	cfg.retention.idempotency_keys = 86400;
	cfg.retention.webhook_deliveries = 7 * 86400;
	return 0;
}

/* `n` idempotency keys "<prefix>1".."<prefix>n", made `age` seconds ago
 * plus i seconds more for key i (so key n is the oldest). */
static void keys(const char *prefix, int n, int64_t age)
{
	dr_error err;

	assert_ok(db_exec(db,
			  "INSERT INTO idempotency_keys (scope, idem_key,"
			  " request_hash, job_id, created_at)"
			  " SELECT '0123456789abcdef', CONCAT(?, seq),"
			  " REPEAT('0', 64), 'j_01M8457ED2RMPKJD94H30597VN',"
			  " NOW(6) - INTERVAL (? + seq) SECOND"
			  " FROM seq_1_to_100000 WHERE seq <= ?",
			  NULL, &err,
			  DB_ARGS(DB_STR(prefix), DB_INT(age), DB_INT(n))),
		  err);
}

/* `n` webhook deliveries of adapter "fake", received `age` seconds ago. */
static void deliveries(const char *prefix, int n, int64_t age)
{
	dr_error err;

	assert_ok(db_exec(db,
			  "INSERT INTO webhook_deliveries (adapter,"
			  " delivery_key, delivery_id, received_at)"
			  " SELECT 'fake', UNHEX(SHA2(CONCAT(?, seq), 256)),"
			  " CONCAT(?, seq), NOW(6) - INTERVAL (? + seq) SECOND"
			  " FROM seq_1_to_100000 WHERE seq <= ?",
			  NULL, &err,
			  DB_ARGS(DB_STR(prefix), DB_STR(prefix), DB_INT(age),
				  DB_INT(n))),
		  err);
}

/* The number `sql` (no parameters) answers. */
static long count(const char *sql)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	long n;

	assert_ok(db_query_uncached(db, sql, &rows, &err, DB_NOARGS), err);
	n = strtol(db_cell(rows, 0, 0), NULL, 10);
	db_rows_free(rows);
	return n;
}

/* The keys left, in order, as "a1,a2,...". */
static char *keys_left(void)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	char *s;

	assert_ok(db_query_uncached(db,
				    "SELECT COALESCE(GROUP_CONCAT(idem_key"
				    " ORDER BY idem_key), '')"
				    " FROM idempotency_keys",
				    &rows, &err, DB_NOARGS),
		  err);
	s = strdup(db_cell(rows, 0, 0));
	db_rows_free(rows);
	return s;
}

/* DELETE statements this session has run (the server's counter, which
 * counts executions of prepared statements too). */
static long deletes_run(void)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	long n;

	assert_ok(db_query_uncached(db,
				    "SELECT VARIABLE_VALUE FROM"
				    " information_schema.SESSION_STATUS"
				    " WHERE VARIABLE_NAME = 'COM_DELETE'",
				    &rows, &err, DB_NOARGS),
		  err);
	n = strtol(db_cell(rows, 0, 0), NULL, 10);
	db_rows_free(rows);
	return n;
}

/* Old and new rows: only the old go, in batches of 3 (7 rows: 3, 3, 1),
 * the oldest first; the count before says what would go. */
static void test_only_expired_in_batches(void **state)
{
	dr_retention_stats s;
	dr_error err;
	uint64_t n;
	long before;
	char *left;

	(void)state;
	keys("new", 4, 3600);	   /* 1 h old: kept */
	keys("old", 7, 2 * 86400); /* 2 days old: expired */
	deliveries("new", 2, 86400);
	deliveries("old", 5, 8 * 86400);

	assert_ok(retention_count(db, &cfg, DR_RET_IDEMPOTENCY_KEYS, &n, &err),
		  err);
	assert_int_equal(n, 7);
	assert_ok(
		retention_count(db, &cfg, DR_RET_WEBHOOK_DELIVERIES, &n, &err),
		err);
	assert_int_equal(n, 5);
	assert_int_equal(count("SELECT COUNT(*) FROM idempotency_keys"),
			 11); /* counting changed nothing */

	/* One batch of 3: the three oldest (old7, old6, old5). */
	assert_ok(retention_delete_batch(db, &cfg, DR_RET_IDEMPOTENCY_KEYS, 3,
					 &n, &err),
		  err);
	assert_int_equal(n, 3);
	left = keys_left();
	assert_string_equal(left, "new1,new2,new3,new4,old1,old2,old3,old4");
	free(left);

	/* The rest: 3, then 1 (fewer than the batch: done) = 2 statements. */
	before = deletes_run();
	assert_ok(retention_table(db, &cfg, DR_RET_IDEMPOTENCY_KEYS, 3, NULL, 0,
				  NULL, &s, &err),
		  err);
	assert_int_equal(deletes_run() - before, 2);
	assert_int_equal(s.batches, 2);
	assert_int_equal(s.deleted, 4);
	assert_false(s.interrupted);
	left = keys_left();
	assert_string_equal(left, "new1,new2,new3,new4");
	free(left);

	/* 5 deliveries by 5: a full batch, then an empty one. */
	before = deletes_run();
	assert_ok(retention_table(db, &cfg, DR_RET_WEBHOOK_DELIVERIES, 5, NULL,
				  0, NULL, &s, &err),
		  err);
	assert_int_equal(deletes_run() - before, 2);
	assert_int_equal(s.deleted, 5);
	assert_int_equal(count("SELECT COUNT(*) FROM webhook_deliveries"
			       " WHERE delivery_id LIKE 'new%'"),
			 2);
	assert_int_equal(count("SELECT COUNT(*) FROM webhook_deliveries"), 2);
}

/* The setting decides: 1 h takes the rows older than 1 h too; off takes
 * nothing and runs no statement. */
static void test_settings(void **state)
{
	dr_retention_stats s;
	dr_error err;
	uint64_t n;
	long before;

	(void)state;
	keys("a", 3, 30);   /* 31..33 s old */
	keys("b", 2, 7200); /* 2 h old */
	cfg.retention.idempotency_keys = 3600;
	assert_ok(retention_count(db, &cfg, DR_RET_IDEMPOTENCY_KEYS, &n, &err),
		  err);
	assert_int_equal(n, 2);

	cfg.retention.idempotency_keys = 0; /* off */
	assert_ok(retention_count(db, &cfg, DR_RET_IDEMPOTENCY_KEYS, &n, &err),
		  err);
	assert_int_equal(n, 0);
	before = deletes_run();
	assert_ok(retention_table(db, &cfg, DR_RET_IDEMPOTENCY_KEYS, 1000, NULL,
				  0, NULL, &s, &err),
		  err);
	assert_int_equal(deletes_run() - before, 0);
	assert_int_equal(s.deleted, 0);
	assert_int_equal(s.batches, 0);
	assert_int_equal(count("SELECT COUNT(*) FROM idempotency_keys"), 5);

	cfg.retention.idempotency_keys = 10; /* 10 s: every row */
	assert_ok(retention_table(db, &cfg, DR_RET_IDEMPOTENCY_KEYS, 1000, NULL,
				  0, NULL, &s, &err),
		  err);
	assert_int_equal(s.deleted, 5);
	assert_int_equal(s.batches, 1);
}

/* A batch commits on its own: refused inside a transaction; a stop asked
 * before the first batch runs none. */
static void test_not_in_transaction_and_stop(void **state)
{
	volatile sig_atomic_t stop = 1;
	dr_retention_stats s;
	dr_error err;
	uint64_t n;

	(void)state;
	keys("old", 2, 2 * 86400);
	assert_ok(db_begin(db, &err), err);
	assert_int_equal(retention_delete_batch(db, &cfg,
						DR_RET_IDEMPOTENCY_KEYS, 10, &n,
						&err),
			 DR_ERR_INTERNAL);
	db_rollback(db);
	assert_ok(retention_table(db, &cfg, DR_RET_IDEMPOTENCY_KEYS, 10, NULL,
				  0, &stop, &s, &err),
		  err);
	assert_true(s.interrupted);
	assert_int_equal(s.deleted, 0);
	assert_int_equal(count("SELECT COUNT(*) FROM idempotency_keys"), 2);
}

/* The worker's pass: one batch of DR_RETENTION_BATCH per step, then the
 * next table, then nothing until the interval has passed. */
static void test_worker_pass(void **state)
{
	dr_retention r;
	long before;

	(void)state;
	memset(&r, 0, sizeof(r));
	keys("old", 2 * DR_RETENTION_BATCH + 500, 2 * 86400);
	keys("new", 3, 60);
	deliveries("old", 3, 8 * 86400);

	before = deletes_run();
	assert_int_equal(retention_step(&r, db, &cfg, 100.0), 1);
	assert_int_equal(count("SELECT COUNT(*) FROM idempotency_keys"),
			 DR_RETENTION_BATCH + 500 + 3);
	assert_int_equal(retention_step(&r, db, &cfg, 100.1), 1);
	assert_int_equal(retention_step(&r, db, &cfg, 100.2), 1); /* 500 */
	assert_int_equal(count("SELECT COUNT(*) FROM idempotency_keys"), 3);
	assert_int_equal(count("SELECT COUNT(*) FROM webhook_deliveries"), 3);
	assert_int_equal(retention_step(&r, db, &cfg, 100.3), 1); /* 3 */
	/* Unclaimed webhook files, none here: the pass ends. */
	assert_int_equal(retention_step(&r, db, &cfg, 100.35), 0);
	assert_int_equal(deletes_run() - before, 5);
	assert_int_equal(count("SELECT COUNT(*) FROM webhook_deliveries"), 0);

	/* Not due before the interval: no statement. */
	keys("later", 1, 2 * 86400);
	before = deletes_run();
	assert_int_equal(
		retention_step(&r, db, &cfg, 100.35 + DR_RETENTION_INTERVAL - 1),
		0);
	assert_int_equal(deletes_run() - before, 0);
	assert_int_equal(count("SELECT COUNT(*) FROM idempotency_keys"), 4);
	/* Due again: the next pass. */
	assert_int_equal(
		retention_step(&r, db, &cfg, 100.35 + DR_RETENTION_INTERVAL), 1);
	assert_int_equal(
		retention_step(&r, db, &cfg, 100.4 + DR_RETENTION_INTERVAL), 1);
	assert_int_equal(
		retention_step(&r, db, &cfg, 100.5 + DR_RETENTION_INTERVAL), 0);
	assert_int_equal(count("SELECT COUNT(*) FROM idempotency_keys"), 3);
}

/* Each batch is a range of the table's index on its time column, not a
 * scan of the table (0001_init.sql: idempotency_keys_age,
 * webhook_deliveries_age). */
static void test_uses_time_index(void **state)
{
	static const char *const index[DR_RET_TABLES] = {
		[DR_RET_IDEMPOTENCY_KEYS] = "idempotency_keys_age",
		[DR_RET_WEBHOOK_DELIVERIES] = "webhook_deliveries_age",
		[DR_RET_WEBHOOK_BLOBS] = "webhook_blobs_job",
	};
	dr_db_rows *rows = NULL;
	dr_error err;
	char sql[512];

	(void)state;
	keys("new", 5000, 60);
	keys("old", 50, 2 * 86400);
	deliveries("new", 5000, 60);
	deliveries("old", 50, 8 * 86400);
	assert_ok(db_exec_text(db, "ANALYZE TABLE idempotency_keys", &err),
		  err);
	assert_ok(db_exec_text(db, "ANALYZE TABLE webhook_deliveries", &err),
		  err);
	for (int t = 0; t < DR_RET_TABLES; t++) {
		const char *key = NULL;

		snprintf(sql, sizeof(sql), "EXPLAIN %s", delete_sql[t]);
		assert_ok(
			db_query_uncached(db, sql, &rows, &err,
					  DB_ARGS(DB_INT(86400), DB_U64(1000))),
			err);
		for (size_t c = 0; c < rows->n_cols; c++)
			if (rows->n_rows == 1 && db_cell(rows, 0, c) &&
			    strcmp(db_cell(rows, 0, c), index[t]) == 0)
				key = index[t];
		if (!key)
			fail_msg("%s: not along %s", sql, index[t]);
		db_rows_free(rows);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_only_expired_in_batches, empty),
		cmocka_unit_test_setup(test_settings, empty),
		cmocka_unit_test_setup(test_not_in_transaction_and_stop, empty),
		cmocka_unit_test_setup(test_worker_pass, empty),
		cmocka_unit_test_setup(test_uses_time_index, empty),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
