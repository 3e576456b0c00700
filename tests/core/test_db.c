/*
 * test_db.c - core/db.c and core/migrate.c against a real MariaDB.
 *
 * The group setup starts a private MariaDB server (dbserver.h: a fresh
 * temporary folder, unix socket plus TCP on a free port of 127.0.0.1), so
 * the tests need mariadb-server installed and run as root, as REFERENCE.md
 * describes.
 *
 * The cases drive the public interface only: the statement cache is
 * observed through the server's own Com_stmt_prepare counter, reconnects
 * through CONNECTION_ID(), fork safety through the parent's session
 * surviving its children.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "dbserver.h"
#include "log.h"
#include "migrate.h"
#include "plugin.h"

#ifndef DR_SOURCE_DIR
#define DR_SOURCE_DIR "."
#endif

#define TCP_USER	 "dr"
#define TCP_PASSWORD	 "pw-Secret-42"

static dr_config cfg;	  /* root over the unix socket, database drt */
static dr_config cfg_tcp; /* dr over TCP with a password, database drt */

static int group_setup(void **state)
{
	dr_error err;
	dr_db *db;

	(void)state;
	if (dbserver_setup("test_db") != 0)
		return -1;
	dbserver_config(&cfg, "drt");
	dbserver_config(&cfg_tcp, "drt");
	cfg_tcp.database.host = "127.0.0.1";
	cfg_tcp.database.port = (unsigned)dbsrv.port;
	cfg_tcp.database.socket = NULL;
	cfg_tcp.database.user = TCP_USER;
	cfg_tcp.database.password = TCP_PASSWORD;

	db = db_new_server(&cfg);
	if (db_exec_text(db, "CREATE DATABASE drt CHARACTER SET utf8mb4",
			 &err) ||
	    db_exec_text(db,
			 "CREATE USER '" TCP_USER "'@'127.0.0.1' "
			 "IDENTIFIED BY '" TCP_PASSWORD "'",
			 &err) ||
	    db_exec_text(db, "GRANT ALL ON *.* TO '" TCP_USER "'@'127.0.0.1'",
			 &err)) {
		fprintf(stderr, "setup: %s\n", err.message);
		db_free(db);
		return -1;
	}
	db_free(db);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dbserver_teardown();
	return 0;
}

/* ------------------------------------------------------------------ */
/* Helpers */

/* The one cell of a one-row query, copied; the query must succeed. */
static char *query1(dr_db *db, const char *sql)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	char *v;

	assert_ok(db_query(db, sql, &rows, &err, DB_NOARGS), err);
	assert_int_equal(rows->n_rows, 1);
	v = strdup(db_cell(rows, 0, 0) ? db_cell(rows, 0, 0) : "(null)");
	db_rows_free(rows);
	return v;
}

static unsigned long long query1_u(dr_db *db, const char *sql)
{
	char *v = query1(db, sql);
	unsigned long long u = strtoull(v, NULL, 10);

	free(v);
	return u;
}

static unsigned long long conn_id(dr_db *db)
{
	return query1_u(db, "SELECT CONNECTION_ID()");
}

static unsigned long long prepares(dr_db *db)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	unsigned long long n;

	assert_ok(db_query(db, "SHOW SESSION STATUS LIKE 'Com_stmt_prepare'",
			   &rows, &err, DB_NOARGS),
		  err);
	assert_int_equal(rows->n_rows, 1);
	n = strtoull(db_cell(rows, 0, 1), NULL, 10);
	db_rows_free(rows);
	return n;
}

/* Kill `id` from a separate connection and wait until it is gone. */
static void kill_conn(unsigned long long id)
{
	dr_db *k = db_new(&cfg);
	dr_error err;
	char sql[64];

	snprintf(sql, sizeof(sql), "KILL CONNECTION %llu", id);
	assert_ok(db_exec_text(k, sql, &err), err);
	for (int i = 0; i < 200; i++) {
		dr_db_rows *rows = NULL;
		int gone;

		assert_ok(
			db_query(k,
				 "SELECT COUNT(*) FROM "
				 "information_schema.PROCESSLIST WHERE ID = ?",
				 &rows, &err, DB_ARGS(DB_U64((uint64_t)id))),
			err);
		gone = strcmp(db_cell(rows, 0, 0), "0") == 0;
		db_rows_free(rows);
		if (gone)
			break;
		dbserver_sleep(0.01);
	}
	db_free(k);
}

/* ------------------------------------------------------------------ */
/* db.c */

static void test_ping_and_session(void **state)
{
	dr_db *db = db_new(&cfg);
	dr_error err;
	char *v;

	(void)state;
	db_free(NULL);
	db_rows_free(NULL);
	assert_ok(db_ping(db, &err), err);
	assert_ok(db_ping(db, &err), err);

	v = query1(db, "SELECT @@session.time_zone");
	assert_string_equal(v, "+00:00");
	free(v);
	v = query1(db, "SELECT @@session.tx_isolation");
	assert_string_equal(v, "READ-COMMITTED");
	free(v);
	v = query1(db, "SELECT @@session.sql_mode");
	assert_non_null(strstr(v, "STRICT_ALL_TABLES"));
	assert_non_null(strstr(v, "NO_ZERO_DATE"));
	free(v);
	v = query1(db, "SELECT @@session.character_set_client");
	assert_string_equal(v, "utf8mb4");
	free(v);
	v = query1(db, "SELECT DATABASE()");
	assert_string_equal(v, "drt");
	free(v);
	/* 10 s io timeout: the server gives up on a lock first. */
	assert_int_equal(
		query1_u(db, "SELECT @@session.innodb_lock_wait_timeout"), 9);
	db_free(db);

	db = db_new_server(&cfg);
	v = query1(db, "SELECT DATABASE()");
	assert_string_equal(v, "(null)");
	free(v);
	db_free(db);

	/* TCP with a password. */
	db = db_new(&cfg_tcp);
	assert_ok(db_ping(db, &err), err);
	v = query1(db, "SELECT CURRENT_USER()");
	assert_string_equal(v, TCP_USER "@127.0.0.1");
	free(v);
	db_free(db);
}

static void test_bad_credentials(void **state)
{
	dr_config c = cfg_tcp;
	dr_error err;
	dr_db *db;

	(void)state;
	c.database.password = "Wrong-Password-7";
	db = db_new(&c);
	assert_int_equal(db_ping(db, &err), DR_ERR_UNAVAILABLE);
	assert_int_equal(err.retryable, 1);
	assert_null(strstr(err.message, "Wrong-Password-7"));
	assert_null(strstr(err.message, TCP_USER "@"));
	assert_non_null(strstr(err.message, "1045"));
	db_free(db);
}

static void test_types_roundtrip(void **state)
{
	static const char blob[] = { 'a', '\0', 'b', '\xff', '\n' };
	static const char utf8[] = "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80";
	dr_db *db = db_new(&cfg);
	dr_db_rows *rows = NULL;
	uint64_t affected = 0, id1, id2;
	dr_error err;
	char *big;

	(void)state;
	assert_ok(db_exec_text(db,
			       "CREATE TABLE types_t ("
			       "id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,"
			       "s VARCHAR(64) NULL, b BLOB NULL,"
			       "i BIGINT NULL, u BIGINT UNSIGNED NULL,"
			       "d DOUBLE NULL, dt DATETIME(6) NULL,"
			       "t MEDIUMTEXT NULL) ENGINE=InnoDB",
			       &err),
		  err);

	assert_ok(db_exec(db,
			  "INSERT INTO types_t (s, b, i, u, d, dt) "
			  "VALUES (?, ?, ?, ?, ?, ?)",
			  &affected, &err,
			  DB_ARGS(DB_STR(utf8), DB_BLOB(blob, sizeof(blob)),
				  DB_INT(INT64_MIN), DB_U64(UINT64_MAX),
				  DB_DBL(0.1),
				  DB_STR("2026-11-21 10:00:00.123456"))),
		  err);
	assert_int_equal(affected, 1);
	id1 = db_last_insert_id(db);
	assert_true(id1 > 0);

	/* NULL for every nullable kind; an empty string is not NULL. */
	assert_ok(db_exec(db,
			  "INSERT INTO types_t (s, b, i, u, d, dt, t) "
			  "VALUES (?, ?, ?, ?, ?, ?, ?)",
			  &affected, &err,
			  DB_ARGS(DB_STR(NULL), DB_BLOB(NULL, (size_t)0),
				  DB_INT((int64_t)-1), DB_U64((uint64_t)0),
				  DB_DBL(-1.5e300), DB_STR(NULL), DB_STR(""))),
		  err);
	id2 = db_last_insert_id(db);
	assert_int_equal(id2, id1 + 1);

	assert_ok(db_query(db,
			   "SELECT s, b, i, u, d, dt, t FROM types_t "
			   "WHERE id >= ? ORDER BY id",
			   &rows, &err, DB_ARGS(DB_U64(id1))),
		  err);
	assert_int_equal(rows->n_rows, 2);
	assert_int_equal(rows->n_cols, 7);
	assert_string_equal(db_cell(rows, 0, 0), utf8);
	assert_int_equal(rows->lens[1], sizeof(blob));
	assert_memory_equal(db_cell(rows, 0, 1), blob, sizeof(blob));
	assert_int_equal(db_cell(rows, 0, 1)[sizeof(blob)], '\0');
	assert_string_equal(db_cell(rows, 0, 2), "-9223372036854775808");
	assert_string_equal(db_cell(rows, 0, 3), "18446744073709551615");
	assert_string_equal(db_cell(rows, 0, 4), "0.1");
	assert_string_equal(db_cell(rows, 0, 5), "2026-11-21 10:00:00.123456");
	assert_null(db_cell(rows, 0, 6));

	assert_null(db_cell(rows, 1, 0));
	assert_null(db_cell(rows, 1, 1));
	assert_string_equal(db_cell(rows, 1, 2), "-1");
	assert_string_equal(db_cell(rows, 1, 3), "0");
	assert_string_equal(db_cell(rows, 1, 4), "-1.5e300");
	assert_null(db_cell(rows, 1, 5));
	assert_string_equal(db_cell(rows, 1, 6), "");
	assert_int_equal(rows->lens[1 * 7 + 6], 0);
	/* Out of range is NULL, not a crash. */
	assert_null(db_cell(rows, 2, 0));
	assert_null(db_cell(rows, 0, 7));
	db_rows_free(rows);

	/* Server-side values: a whole-second DATETIME(6) keeps its six
	 * digits, NOW(6) has the same shape, decimals stay exact. */
	assert_ok(db_query(db,
			   "SELECT CAST('2026-01-02 03:04:05' AS DATETIME(6)),"
			   " NOW(6), CAST(1.83 AS DOUBLE), 1e-7 + 0e0,"
			   " CAST(12.50 AS DECIMAL(10,2)), ? + 0, ?",
			   &rows, &err,
			   DB_ARGS(DB_U64((uint64_t)UINT64_MAX),
				   DB_DBL(1.0 / 3))),
		  err);
	assert_string_equal(db_cell(rows, 0, 0), "2026-01-02 03:04:05.000000");
	assert_int_equal(strlen(db_cell(rows, 0, 1)), 26);
	assert_int_equal(db_cell(rows, 0, 1)[19], '.');
	assert_string_equal(db_cell(rows, 0, 2), "1.83");
	assert_string_equal(db_cell(rows, 0, 3), "0.0000001");
	assert_string_equal(db_cell(rows, 0, 4), "12.50");
	assert_string_equal(db_cell(rows, 0, 5), "18446744073709551615");
	assert_string_equal(db_cell(rows, 0, 6), "0.3333333333333333");
	db_rows_free(rows);

	/* A big cell. */
	big = malloc(300001);
	memset(big, 'x', 300000);
	big[300000] = '\0';
	assert_ok(db_exec(db, "UPDATE types_t SET t = ? WHERE id = ?",
			  &affected, &err, DB_ARGS(DB_STR(big), DB_U64(id1))),
		  err);
	assert_ok(db_query(db, "SELECT t, id FROM types_t ORDER BY id", &rows,
			   &err, DB_NOARGS),
		  err);
	assert_int_equal(rows->lens[0], 300000);
	assert_string_equal(db_cell(rows, 0, 0), big);
	db_rows_free(rows);
	free(big);

	/* CLIENT_FOUND_ROWS: an UPDATE that matches but changes nothing
	 * still counts its row (fenced writes rely on it). */
	assert_ok(db_exec(db, "UPDATE types_t SET i = i WHERE id = ?",
			  &affected, &err, DB_ARGS(DB_U64(id1))),
		  err);
	assert_int_equal(affected, 1);

	/* No rows; a statement without a result set gives an empty one. */
	assert_ok(db_query(db, "SELECT id FROM types_t WHERE id = 0", &rows,
			   &err, DB_NOARGS),
		  err);
	assert_int_equal(rows->n_rows, 0);
	assert_int_equal(rows->n_cols, 1);
	assert_null(db_cell(rows, 0, 0));
	db_rows_free(rows);
	assert_ok(db_query(db, "DO 1", &rows, &err, DB_NOARGS), err);
	assert_int_equal(rows->n_rows, 0);
	assert_int_equal(rows->n_cols, 0);
	db_rows_free(rows);

	/* Strict mode: a zero date is an error, not a silent 0000-00-00. */
	assert_int_equal(
		db_exec(db, "UPDATE types_t SET dt = ? WHERE id = ?", NULL,
			&err,
			DB_ARGS(DB_STR("0000-00-00 00:00:00"), DB_U64(id1))),
		DR_ERR_DATABASE);
	db_free(db);
}

/* What DB_ARGS hands over: the array and its length. */
static size_t args_count(const dr_db_arg *args, size_t n)
{
	assert_true(n == 0 || args != NULL);
	return n;
}

/*
 * Each kind of dr_db_arg round-trips through a table and compares equal
 * as a parameter: text, SQL NULL (DB_NULL, DB_STR(NULL), DB_BLOB(NULL, 0)),
 * the ends of int64 and uint64, a double, bytes with NULs; an empty
 * string and empty bytes are not NULL. The same lists survive a retry on a
 * new connection.
 */
static void test_arg_kinds(void **state)
{
	static const char ins[] =
		"INSERT INTO args_t VALUES (?, ?, ?, ?, ?, ?, ?)";
	static const char bytes[] = { '\0', 'x', '\0', '\xff', '\0' };
	static const char text[] = "t\xc3\xa9xt";
	dr_db *db = db_new(&cfg);
	dr_db_rows *rows = NULL;
	dr_error err;

	(void)state;
	assert_int_equal(args_count(DB_NOARGS), 0);
	assert_int_equal(args_count(DB_ARGS(DB_NULL)), 1);
	assert_int_equal(
		args_count(DB_ARGS(DB_STR(text), DB_INT(-1), DB_U64(1),
				   DB_DBL(0.5), DB_BLOB(bytes, sizeof(bytes)))),
		5);

	assert_ok(db_exec_text(db,
			       "CREATE TABLE args_t (id INT PRIMARY KEY,"
			       " s VARCHAR(16) NULL, lo BIGINT NULL,"
			       " hi BIGINT NULL, u BIGINT UNSIGNED NULL,"
			       " d DOUBLE NULL, b VARBINARY(16) NULL)",
			       &err),
		  err);
	assert_ok(db_exec(db, ins, NULL, &err,
			  DB_ARGS(DB_INT(1), DB_STR(text), DB_INT(INT64_MIN),
				  DB_INT(INT64_MAX), DB_U64(UINT64_MAX),
				  DB_DBL(-2.5e-300),
				  DB_BLOB(bytes, sizeof(bytes)))),
		  err);
	assert_ok(db_exec(db, ins, NULL, &err,
			  DB_ARGS(DB_INT(2), DB_NULL, DB_NULL, DB_NULL, DB_NULL,
				  DB_NULL, DB_NULL)),
		  err);
	assert_ok(
		db_exec(db, ins, NULL, &err,
			DB_ARGS(DB_INT(3), DB_STR(NULL), DB_INT(0), DB_INT(-1),
				DB_U64(0), DB_DBL(0.0), DB_BLOB(NULL, 0))),
		err);
	assert_ok(db_exec(db, ins, NULL, &err,
			  DB_ARGS(DB_INT(4), DB_STR(""), DB_NULL, DB_NULL,
				  DB_NULL, DB_NULL, DB_BLOB(bytes, 0))),
		  err);

	assert_ok(db_query(db,
			   "SELECT s, lo, hi, u, d, b FROM args_t"
			   " WHERE id BETWEEN ? AND ? ORDER BY id",
			   &rows, &err, DB_ARGS(DB_U64(1), DB_INT(4))),
		  err);
	assert_int_equal(rows->n_rows, 4);
	assert_string_equal(db_cell(rows, 0, 0), text);
	assert_string_equal(db_cell(rows, 0, 1), "-9223372036854775808");
	assert_string_equal(db_cell(rows, 0, 2), "9223372036854775807");
	assert_string_equal(db_cell(rows, 0, 3), "18446744073709551615");
	assert_string_equal(db_cell(rows, 0, 4), "-2.5e-300");
	assert_int_equal(rows->lens[5], sizeof(bytes));
	assert_memory_equal(db_cell(rows, 0, 5), bytes, sizeof(bytes));
	for (size_t c = 0; c < 6; c++)
		assert_null(db_cell(rows, 1, c));
	assert_null(db_cell(rows, 2, 0));
	assert_string_equal(db_cell(rows, 2, 1), "0");
	assert_string_equal(db_cell(rows, 2, 2), "-1");
	assert_string_equal(db_cell(rows, 2, 3), "0");
	assert_string_equal(db_cell(rows, 2, 4), "0");
	assert_null(db_cell(rows, 2, 5));
	assert_string_equal(db_cell(rows, 3, 0), "");
	assert_non_null(db_cell(rows, 3, 5));
	assert_int_equal(rows->lens[3 * 6 + 5], 0);
	db_rows_free(rows);

	/* As parameters they compare equal to what was stored; the read is
	 * retried on a new connection after the old one was killed, binding
	 * the same values again. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass)
			kill_conn(conn_id(db));
		assert_ok(
			db_query(db,
				 "SELECT id FROM args_t WHERE s = ? AND"
				 " lo = ? AND hi = ? AND u = ? AND d = ?"
				 " AND b = ?",
				 &rows, &err,
				 DB_ARGS(DB_STR(text), DB_INT(INT64_MIN),
					 DB_INT(INT64_MAX), DB_U64(UINT64_MAX),
					 DB_DBL(-2.5e-300),
					 DB_BLOB(bytes, sizeof(bytes)))),
			err);
		assert_int_equal(rows->n_rows, 1);
		assert_string_equal(db_cell(rows, 0, 0), "1");
		db_rows_free(rows);
	}
	db_free(db);
}

static void test_errors(void **state)
{
	dr_db *db = db_new(&cfg);
	dr_db_rows *rows = NULL;
	dr_error err;

	(void)state;
	assert_ok(db_exec_text(db,
			       "CREATE TABLE dup_t (k VARCHAR(16) PRIMARY KEY)",
			       &err),
		  err);
	assert_ok(db_exec(db, "INSERT INTO dup_t VALUES (?)", NULL, &err,
			  DB_ARGS(DB_STR("secret-value"))),
		  err);
	assert_int_equal(db_exec(db, "INSERT INTO dup_t VALUES (?)", NULL, &err,
				 DB_ARGS(DB_STR("secret-value"))),
			 DR_ERR_CONFLICT);
	assert_string_equal(err.code, "duplicate");
	assert_int_equal(err.retryable, 0);
	assert_null(strstr(err.message, "secret-value"));
	assert_null(strstr(err.message, "INSERT"));

	assert_int_equal(db_exec_text(db, "SELEC nonsense FROM dup_t", &err),
			 DR_ERR_DATABASE);
	assert_string_equal(err.message, "database error 1064");
	assert_int_equal(db_query(db, "SELECT x FROM no_such_table", &rows,
				  &err, DB_NOARGS),
			 DR_ERR_DATABASE);
	assert_string_equal(err.message, "database error 1146");
	assert_null(rows);

	/* Caller bugs: wrong parameter count or type. */
	assert_int_equal(db_exec(db, "INSERT INTO dup_t VALUES (?)", NULL, &err,
				 DB_NOARGS),
			 DR_ERR_INTERNAL);
	assert_int_equal(db_exec(db, "INSERT INTO dup_t VALUES (?)", NULL, &err,
				 &(const dr_db_arg){ .type = 0 }, 1),
			 DR_ERR_INTERNAL);

	/* The handle still works after all that. */
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM dup_t"), 1);
	db_free(db);
}

static void test_transactions(void **state)
{
	dr_db *db = db_new(&cfg);
	dr_error err;

	(void)state;
	assert_ok(
		db_exec_text(db, "CREATE TABLE tx_t (k INT PRIMARY KEY)", &err),
		err);
	assert_int_equal(db_commit(db, &err), DR_ERR_INTERNAL);
	db_rollback(db); /* no transaction: a no-op */

	assert_ok(db_begin(db, &err), err);
	assert_int_equal(db_begin(db, &err), DR_ERR_INTERNAL);
	assert_ok(db_exec(db, "INSERT INTO tx_t VALUES (?)", NULL, &err,
			  DB_ARGS(DB_INT((int64_t)1))),
		  err);
	db_rollback(db);
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM tx_t"), 0);

	assert_ok(db_begin(db, &err), err);
	assert_ok(db_exec(db, "INSERT INTO tx_t VALUES (?)", NULL, &err,
			  DB_ARGS(DB_INT((int64_t)2))),
		  err);
	assert_ok(db_commit(db, &err), err);
	db_rollback(db); /* after commit: a no-op */
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM tx_t"), 1);
	db_free(db);
}

static void test_lock_wait_ends_transaction(void **state)
{
	dr_config c = cfg;
	dr_db *a = db_new(&cfg), *b;
	dr_error err;
	double t0;

	(void)state;
	c.database.io_timeout = 2; /* innodb_lock_wait_timeout 1 s */
	b = db_new(&c);
	assert_ok(db_exec_text(a,
			       "CREATE TABLE lock_t (k INT PRIMARY KEY, "
			       "v INT) ENGINE=InnoDB",
			       &err),
		  err);
	assert_ok(db_exec_text(a, "INSERT INTO lock_t VALUES (1, 0)", &err),
		  err);

	assert_ok(db_begin(a, &err), err);
	assert_ok(db_exec(a, "UPDATE lock_t SET v = 1 WHERE k = 1", NULL, &err,
			  DB_NOARGS),
		  err);
	assert_ok(db_begin(b, &err), err);
	t0 = dbserver_now();
	assert_int_equal(db_exec(b, "UPDATE lock_t SET v = 2 WHERE k = 1", NULL,
				 &err, DB_NOARGS),
			 DR_ERR_DATABASE);
	assert_true(dbserver_now() - t0 < 1.9);
	assert_string_equal(err.code, "deadlock");
	assert_int_equal(err.retryable, 1);
	/* The transaction is over for b until it rolls back. */
	assert_int_equal(db_exec(b, "DO 1", NULL, &err, DB_NOARGS),
			 DR_ERR_DATABASE);
	assert_string_equal(err.code, "deadlock");
	assert_int_equal(db_commit(b, &err), DR_ERR_DATABASE);
	db_rollback(b);
	assert_ok(db_commit(a, &err), err);
	assert_ok(db_exec(b, "UPDATE lock_t SET v = 2 WHERE k = 1", NULL, &err,
			  DB_NOARGS),
		  err);
	assert_int_equal(query1_u(a, "SELECT v FROM lock_t"), 2);
	db_free(a);
	db_free(b);
}

static void test_statement_cache(void **state)
{
	static const char sql[] = "SELECT ? + 1";
	static char many[200][32];
	char copy[sizeof(sql)];
	dr_db *db = db_new(&cfg);
	dr_db_rows *rows = NULL;
	unsigned long long p0, p1;
	dr_error err;

	(void)state;
	p0 = prepares(db);
	for (int64_t i = 0; i < 5; i++) {
		assert_ok(db_query(db, sql, &rows, &err, DB_ARGS(DB_INT(i))),
			  err);
		assert_int_equal(strtoll(db_cell(rows, 0, 0), NULL, 10), i + 1);
		db_rows_free(rows);
	}
	p1 = prepares(db);
	assert_int_equal(p1 - p0, 1); /* prepared once, run five times */

	/* The key is the pointer: the same text elsewhere is another
	 * statement. */
	memcpy(copy, sql, sizeof(sql));
	for (int i = 0; i < 2; i++) {
		assert_ok(db_query(db, copy, &rows, &err,
				   DB_ARGS(DB_INT((int64_t)1))),
			  err);
		db_rows_free(rows);
	}
	assert_int_equal(prepares(db) - p1, 1);

	/* Many statements: the table grows and keeps every one. */
	for (int i = 0; i < 200; i++)
		snprintf(many[i], sizeof(many[i]), "SELECT %d", i);
	p0 = prepares(db);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < 200; i++) {
			assert_ok(db_query(db, many[i], &rows, &err, DB_NOARGS),
				  err);
			assert_int_equal(strtol(db_cell(rows, 0, 0), NULL, 10),
					 i);
			db_rows_free(rows);
		}
		assert_int_equal(prepares(db) - p0, 200);
	}
	db_free(db);
}

/* Com_stmt_close of this session. */
static unsigned long long closes(dr_db *db)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	unsigned long long n;

	assert_ok(db_query(db, "SHOW SESSION STATUS LIKE 'Com_stmt_close'",
			   &rows, &err, DB_NOARGS),
		  err);
	n = strtoull(db_cell(rows, 0, 1), NULL, 10);
	db_rows_free(rows);
	return n;
}

/* Parameters from an array filled at run time: db_query keeps the
 * statement, db_query_uncached prepares and closes it for each call (text
 * built at run time). */
static void test_query_args(void **state)
{
	static const char sql[] = "SELECT CONCAT(?, ?), ? + 1";
	dr_db_arg args[3] = { DB_STR("a"), DB_STR("b"), DB_INT(41) };
	dr_db *db = db_new(&cfg);
	dr_db_rows *rows = NULL;
	unsigned long long p0, c0;
	dr_error err;
	char text[64];

	(void)state;
	p0 = prepares(db);
	for (int i = 0; i < 3; i++) {
		assert_ok(db_query(db, sql, &rows, &err, args, 3), err);
		assert_string_equal(db_cell(rows, 0, 0), "ab");
		assert_string_equal(db_cell(rows, 0, 1), "42");
		db_rows_free(rows);
	}
	assert_int_equal(prepares(db) - p0, 1);

	/* Not cached: each call prepares and closes its statement, so none
	 * stays open on the server whatever the texts. */
	p0 = prepares(db);
	c0 = closes(db);
	for (int i = 0; i < 50; i++) {
		snprintf(text, sizeof(text), "SELECT ? + %d", i);
		assert_ok(db_query_uncached(db, text, &rows, &err, args + 2, 1),
			  err);
		assert_int_equal(strtol(db_cell(rows, 0, 0), NULL, 10), 41 + i);
		db_rows_free(rows);
	}
	assert_int_equal(prepares(db) - p0, 50 + 1 /* closes() */);
	assert_int_equal(closes(db) - c0, 50);

	/* NULL strings bind SQL NULL; a wrong count is an error. */
	args[0].s = NULL;
	assert_ok(
		db_query_uncached(db, "SELECT ? IS NULL", &rows, &err, args, 1),
		err);
	assert_string_equal(db_cell(rows, 0, 0), "1");
	db_rows_free(rows);
	assert_int_equal(
		db_query_uncached(db, "SELECT ?", &rows, &err, args, 2),
		DR_ERR_INTERNAL);
	assert_null(rows);
	db_free(db);
}

static void test_killed_connection(void **state)
{
	dr_db *db = db_new(&cfg), *tcp = db_new(&cfg_tcp);
	unsigned long long id0, id1;
	dr_status st;
	dr_error err;
	double t0;

	(void)state;
	assert_ok(db_exec_text(db, "CREATE TABLE kill_t (k INT)", &err), err);

	/* A read on a killed connection is retried on a new one. */
	id0 = conn_id(db);
	kill_conn(id0);
	id1 = conn_id(db);
	assert_true(id1 != id0);

	/* On a unix socket the kernel refuses to send to a closed peer
	 * (CR_SERVER_GONE_ERROR): the write never left, so it is retried. */
	kill_conn(id1);
	assert_ok(db_exec(db, "INSERT INTO kill_t VALUES (?)", NULL, &err,
			  DB_ARGS(DB_INT((int64_t)1))),
		  err);
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM kill_t"), 1);

	/* Over TCP the request is sent and the answer lost
	 * (CR_SERVER_LOST): a read is retried, a write is not (unless the
	 * idle ping caught the dead connection first); either way the next
	 * call works. */
	id0 = conn_id(tcp);
	kill_conn(id0);
	id1 = conn_id(tcp);
	assert_true(id1 != id0);
	assert_ok(db_exec(tcp, "INSERT INTO kill_t VALUES (?)", NULL, &err,
			  DB_ARGS(DB_INT((int64_t)2))),
		  err);
	t0 = dbserver_now();
	kill_conn(id1);
	st = db_exec(tcp, "INSERT INTO kill_t VALUES (?)", NULL, &err,
		     DB_ARGS(DB_INT((int64_t)3)));
	if (dbserver_now() - t0 < 0.9) { /* else the idle ping reconnected first */
		assert_int_equal(st, DR_ERR_UNAVAILABLE);
		assert_int_equal(err.retryable, 1);
	}
	assert_ok(db_exec(tcp, "INSERT INTO kill_t VALUES (?)", NULL, &err,
			  DB_ARGS(DB_INT((int64_t)4))),
		  err);

	/* Inside a transaction nothing is retried, and the transaction
	 * stays failed until rolled back. */
	assert_ok(db_exec_text(db, "DELETE FROM kill_t", &err), err);
	assert_ok(db_begin(db, &err), err);
	assert_ok(db_exec(db, "INSERT INTO kill_t VALUES (?)", NULL, &err,
			  DB_ARGS(DB_INT((int64_t)3))),
		  err);
	kill_conn(conn_id(db));
	assert_int_equal(
		db_query(db, "SELECT CONNECTION_ID()", NULL, &err, DB_NOARGS),
		DR_ERR_UNAVAILABLE);
	assert_int_equal(err.retryable, 1);
	assert_int_equal(db_exec(db, "INSERT INTO kill_t VALUES (?)", NULL,
				 &err, DB_ARGS(DB_INT((int64_t)4))),
			 DR_ERR_UNAVAILABLE);
	assert_int_equal(db_commit(db, &err), DR_ERR_UNAVAILABLE);
	assert_int_equal(db_ping(db, &err), DR_ERR_UNAVAILABLE);
	db_rollback(db);
	assert_ok(db_ping(db, &err), err);
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM kill_t"), 0);
	db_free(db);
	db_free(tcp);
}

/* The child's work in test_fork; returns its exit status. */
static int fork_child(dr_db *db, unsigned long long parent_id, int how)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	int ok;

	if (how == 2) {
		db_free(db); /* straight away, no db_disconnect */
		return 0;
	}
	if (how == 0)
		db_disconnect(db);
	if (db_query(db, "SELECT CONNECTION_ID()", &rows, &err, DB_NOARGS) !=
	    DR_OK)
		return 1;
	ok = strtoull(db_cell(rows, 0, 0), NULL, 10) != parent_id;
	db_rows_free(rows);
	db_free(db);
	return ok ? 0 : 2;
}

static void test_fork(void **state)
{
	dr_db *db = db_new(&cfg);
	unsigned long long id;

	(void)state;
	id = conn_id(db);
	for (int how = 0; how < 3; how++) {
		int status;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0)
			_exit(fork_child(db, id, how));
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		/* The parent's session survived the child. */
		assert_int_equal(conn_id(db), id);
	}
	db_free(db);
}

static void test_server_down_and_back(void **state)
{
	static const char sql[] = "SELECT COUNT(*) FROM tx_t WHERE k > ?";
	dr_db *db = db_new(&cfg), *fresh = db_new(&cfg);
	dr_db *tcp = db_new(&cfg_tcp);
	dr_db_rows *rows = NULL;
	dr_error err;
	double t0, tcp_used;

	(void)state;
	assert_ok(db_query(db, sql, &rows, &err, DB_ARGS(DB_INT((int64_t)0))),
		  err);
	db_rows_free(rows);
	assert_ok(db_exec(tcp, "UPDATE tx_t SET k = k WHERE k = ?", NULL, &err,
			  DB_ARGS(DB_INT((int64_t)2))),
		  err);
	tcp_used = dbserver_now();

	dbserver_stop();

	t0 = dbserver_now();
	assert_int_equal(
		db_query(db, sql, &rows, &err, DB_ARGS(DB_INT((int64_t)0))),
		DR_ERR_UNAVAILABLE);
	assert_int_equal(err.retryable, 1);
	assert_int_equal(db_ping(db, &err), DR_ERR_UNAVAILABLE);
	assert_int_equal(db_ping(fresh, &err), DR_ERR_UNAVAILABLE);
	assert_int_equal(db_begin(fresh, &err), DR_ERR_UNAVAILABLE);
	assert_true(dbserver_now() - t0 < cfg.database.connect_timeout);

	assert_int_equal(dbserver_start(), 0);

	/* The same handles work again, re-preparing their statements. */
	assert_ok(db_query(db, sql, &rows, &err, DB_ARGS(DB_INT((int64_t)0))),
		  err);
	assert_string_equal(db_cell(rows, 0, 0), "1");
	db_rows_free(rows);
	assert_ok(db_ping(fresh, &err), err);

	/* A write on a TCP connection that died while idle: the idle ping
	 * notices and reconnects before the write is sent (without it the
	 * write would fail with "lost connection" and not be retried). */
	if (dbserver_now() - tcp_used < 1.2)
		dbserver_sleep(1.2 - (dbserver_now() - tcp_used));
	assert_ok(db_exec(tcp, "UPDATE tx_t SET k = k WHERE k = ?", NULL, &err,
			  DB_ARGS(DB_INT((int64_t)2))),
		  err);
	db_free(db);
	db_free(fresh);
	db_free(tcp);
}

/* ------------------------------------------------------------------ */
/* migrate.c */

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void remove_file(const char *dir, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(unlink(path), 0);
}

/* migrate_run with its output captured in *out (the caller frees it). */
static dr_status migrate(const dr_config *c, const char *dir, char **out,
			 dr_error *err)
{
	size_t len = 0;
	FILE *f;
	dr_status st;

	*out = NULL;
	f = open_memstream(out, &len);
	assert_non_null(f);
	st = migrate_run(c, dir, f, err);
	fclose(f);
	return st;
}

static void test_migrate_real_schema(void **state)
{
	const char *dir = DR_SOURCE_DIR "/migrations";
	dr_config c;
	dr_db *db;
	dr_error err;
	char *out, *v;

	(void)state;
	dbserver_config(&c, "darkroom_mig");
	assert_ok(migrate(&c, dir, &out, &err), err);
	/* Every file of the real folder, in order. */
	{
		char expect[4096] = "", line[300], last[300] = "";
		struct dirent **names;
		int n = scandir(dir, &names, NULL, alphasort);
		size_t used = 0;
		long top = 0;

		assert_true(n > 0);
		for (int i = 0; i < n; i++) {
			const char *nm = names[i]->d_name;
			size_t len = strlen(nm);

			if (len > 9 && nm[4] == '_' &&
			    strcmp(nm + len - 4, ".sql") == 0) {
				snprintf(line, sizeof(line), "applied %s\n", nm);
				assert_true(used + strlen(line) < sizeof(expect));
				memcpy(expect + used, line, strlen(line) + 1);
				used += strlen(line);
				snprintf(last, sizeof(last), "%s", nm);
				top = strtol(nm, NULL, 10);
			}
			free(names[i]);
		}
		free(names);
		assert_string_equal(out, expect);
		free(out);
		snprintf(line, sizeof(line),
			 "database is up to date (version %ld)\n", top);
		/* Again: nothing to do. */
		assert_ok(migrate(&c, dir, &out, &err), err);
		assert_string_equal(out, line);
		free(out);
	}

	db = db_new(&c);
	/* The tables of 0001 are there (later migrations add more). */
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM "
				      "information_schema.TABLES WHERE "
				      "TABLE_SCHEMA = 'darkroom_mig' AND "
				      "ENGINE = 'InnoDB' AND TABLE_NAME IN "
				      "('jobs', 'job_metadata', 'job_events',"
				      " 'outputs', 'renditions',"
				      " 'webhook_deliveries', 'idempotency_keys',"
				      " 'schema_migrations')"),
			 8);
	v = query1(db, "SELECT CONCAT(version, ' ', name, ' ', "
		       "LENGTH(checksum), ' ', applied_at IS NOT NULL) "
		       "FROM schema_migrations WHERE version = 1");
	assert_string_equal(v, "1 0001_init.sql 64 1");
	free(v);

	/* A database newer than the code is refused. */
	assert_ok(db_exec_text(db,
			       "INSERT INTO schema_migrations VALUES "
			       "(9999, '9999_future.sql', REPEAT('0', 64), "
			       "NOW(6))",
			       &err),
		  err);
	assert_int_equal(migrate_run(&c, dir, NULL, &err), DR_ERR_CONFLICT);
	assert_non_null(strstr(err.message,
			       "database schema version 9999 is newer than "
			       "this darkroom ("));
	assert_non_null(strstr(err.message, "); upgrade darkroom"));
	assert_ok(db_exec_text(db,
			       "DELETE FROM schema_migrations WHERE "
			       "version = 9999",
			       &err),
		  err);

	/* An applied migration edited afterwards is refused. */
	assert_ok(db_exec_text(db,
			       "UPDATE schema_migrations SET checksum = "
			       "REPEAT('a', 64) WHERE version = 1",
			       &err),
		  err);
	assert_int_equal(migrate_run(&c, dir, NULL, &err), DR_ERR_CONFLICT);
	assert_non_null(strstr(err.message, "0001_init.sql"));
	assert_non_null(strstr(err.message, "checksum"));
	db_free(db);

	/* A bad name never reaches the server; a missing folder is I/O. */
	dbserver_config(&c, "bad-name`");
	assert_int_equal(migrate_run(&c, dir, NULL, &err), DR_ERR_CONFIG);
	dbserver_config(&c, "darkroom_mig");
	assert_int_equal(migrate_run(&c, "/nonexistent/migrations", NULL, &err),
			 DR_ERR_IO);
}

/* The text of migrations/NAME (malloc). */
static char *migration_text(const char *name)
{
	char path[512];
	FILE *f;
	char *text;
	long n;

	snprintf(path, sizeof(path), "%s/migrations/%s", DR_SOURCE_DIR, name);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	text = malloc((size_t)n + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* 0005: webhook_deliveries keyed by the SHA-256 of the delivery id (any
 * bytes, up to 256 kept), rows from before keep their duplicates found;
 * metadata values as wide as the API allows (0004). */
static void test_migrate_0005_delivery_keys(void **state)
{
	static const char *const before[] = {"0001_init.sql", "0002_claims.sql",
					     "0003_metrics.sql",
					     "0004_metadata_values.sql"};
	char dir[128], id256[257], sql[1024], *t, *out, *v;
	dr_config c;
	dr_db *db;
	dr_error err;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/mig4", dbsrv.dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
		t = migration_text(before[i]);
		write_file(dir, before[i], t);
		free(t);
	}
	dbserver_config(&c, "darkroom_mig4");
	assert_ok(migrate(&c, dir, &out, &err), err);
	free(out);
	db = db_new(&c);
	/* A delivery recorded by the old schema. */
	assert_ok(db_exec_text(db,
			       "INSERT INTO webhook_deliveries VALUES"
			       " ('replicate', 'msg_old_Ab', NOW(6))",
			       &err),
		  err);
	t = migration_text("0005_webhook_delivery_keys.sql");
	write_file(dir, "0005_webhook_delivery_keys.sql", t);
	free(t);
	assert_ok(migrate(&c, dir, &out, &err), err);
	assert_string_equal(out, "applied 0005_webhook_delivery_keys.sql\n");
	free(out);

	/* The old row got its key: the same id again is a duplicate, an id
	 * differing only in case is not. */
	v = query1(db, "SELECT HEX(delivery_key) = UPPER(SHA2('msg_old_Ab', 256))"
		       " FROM webhook_deliveries WHERE delivery_id = 'msg_old_Ab'");
	assert_string_equal(v, "1");
	free(v);
	assert_int_equal(
		db_exec(db,
			"INSERT INTO webhook_deliveries (adapter,"
			" delivery_key, delivery_id, received_at)"
			" VALUES ('replicate', UNHEX(SHA2(?, 256)), ?,"
			" NOW(6))",
			NULL, &err,
			DB_ARGS(DB_STR("msg_old_Ab"), DB_STR("msg_old_Ab"))),
		DR_ERR_CONFLICT);
	assert_ok(db_exec(db,
			  "INSERT INTO webhook_deliveries (adapter,"
			  " delivery_key, delivery_id, received_at)"
			  " VALUES ('replicate', UNHEX(SHA2(?, 256)), ?,"
			  " NOW(6))",
			  NULL, &err,
			  DB_ARGS(DB_STR("msg_old_AB"), DB_STR("msg_old_AB"))),
		  err);
	/* 256 bytes, not all of them text, are kept as they are. */
	memset(id256, 0xff, 256);
	memcpy(id256, "msg_", 4);
	id256[256] = '\0';
	assert_ok(db_exec(db,
			  "INSERT INTO webhook_deliveries (adapter,"
			  " delivery_key, delivery_id, received_at)"
			  " VALUES ('replicate', UNHEX(SHA2(?, 256)), ?,"
			  " NOW(6))",
			  NULL, &err,
			  DB_ARGS(DB_BLOB((const void *)id256, (size_t)256),
				  DB_BLOB((const void *)id256, (size_t)256))),
		  err);
	assert_int_equal(query1_u(db, "SELECT OCTET_LENGTH(delivery_id) FROM"
				      " webhook_deliveries WHERE delivery_id"
				      " LIKE 'msg\\_%' AND delivery_id NOT LIKE"
				      " 'msg\\_old%'"),
			 256);
	/* A metadata value of 4095 characters (4 bytes each) fits. */
	snprintf(sql, sizeof(sql),
		 "INSERT INTO job_metadata (job_id, k, v) VALUES"
		 " ('j_00000000000000000000000000', 'k',"
		 " REPEAT(_utf8mb4 0xF09F9880, 4095))");
	assert_ok(db_exec_text(db, sql, &err), err);
	assert_int_equal(query1_u(db, "SELECT CHAR_LENGTH(v) FROM job_metadata"),
			 4095);
	/* Running it again changes nothing. */
	assert_ok(migrate(&c, dir, &out, &err), err);
	assert_string_equal(out, "database is up to date (version 5)\n");
	free(out);
	db_free(db);
}

/* 0011: every job that ended with a callback gets its delivery, under
 * the webhook-id it was sent with, its state and tries from the job row,
 * its last status and delivery time from its callback events; jobs with
 * nothing to deliver get none; the old columns go; a second run has
 * nothing to do. */
static void test_migrate_0011_callback_deliveries(void **state)
{
	static const char *const before[] = {
		"0001_init.sql",	    "0002_claims.sql",
		"0003_metrics.sql",	    "0004_metadata_values.sql",
		"0005_webhook_delivery_keys.sql", "0006_output_fetch.sql",
		"0007_plugin_kv.sql",	    "0008_urls_from_keys.sql",
		"0009_objects.sql",	    "0010_deletions.sql"};
	char dir[128], *t, *out, *v;
	dr_config c;
	dr_db *db;
	dr_error err;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/mig10", dbsrv.dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
		t = migration_text(before[i]);
		write_file(dir, before[i], t);
		free(t);
	}
	dbserver_config(&c, "darkroom_mig10");
	assert_ok(migrate(&c, dir, &out, &err), err);
	free(out);
	db = db_new(&c);
	/* Delivered at its second try; pending after a try with no answer;
	 * given up; ended without a callback_url; running again after a
	 * retry. */
	assert_ok(db_exec_text(
			  db,
			  "INSERT INTO jobs (id, status, adapter, model, input,"
			  " renditions, callback_url, callback_state,"
			  " callback_attempts, run_at, created_at, updated_at,"
			  " completed_at) VALUES"
			  " ('j_0000000000000000000000000A', 'succeeded', 'f',"
			  " 'm', '{}', '[]', 'https://a.test/cb', 'delivered',"
			  " 2, NULL, NOW(6), NOW(6),"
			  " '2026-01-02 03:04:05.123456'),"
			  " ('j_0000000000000000000000000B', 'failed', 'f', 'm',"
			  " '{}', '[]', 'https://b.test/cb', 'pending', 1,"
			  " '2030-01-01 00:00:00', NOW(6), NOW(6), NOW(6)),"
			  " ('j_0000000000000000000000000C', 'canceled', 'f',"
			  " 'm', '{}', '[]', 'https://c.test/cb', 'failed', 8,"
			  " NULL, NOW(6), NOW(6), '2026-01-03 00:00:00'),"
			  " ('j_0000000000000000000000000D', 'canceled', 'f',"
			  " 'm', '{}', '[]', NULL, 'none', 0, NULL, NOW(6),"
			  " NOW(6), NOW(6)),"
			  " ('j_0000000000000000000000000E', 'queued', 'f', 'm',"
			  " '{}', '[]', 'https://e.test/cb', 'none', 0, NOW(6),"
			  " NOW(6), NOW(6), NULL)",
			  &err),
		  err);
	assert_ok(db_exec_text(
			  db,
			  "INSERT INTO job_events (job_id, at, kind, detail)"
			  " VALUES ('j_0000000000000000000000000A',"
			  " '2026-01-02 03:04:06', 'callback',"
			  " '{\"delivery\":\"failed\",\"http_status\":\"500\"}'),"
			  " ('j_0000000000000000000000000A',"
			  " '2026-01-02 03:04:11', 'callback',"
			  " '{\"delivery\":\"delivered\",\"http_status\":\"204\"}'),"
			  " ('j_0000000000000000000000000B', NOW(6), 'callback',"
			  " '{\"delivery\":\"failed\",\"http_status\":\"0\"}')",
			  &err),
		  err);
	t = migration_text("0011_callback_deliveries.sql");
	write_file(dir, "0011_callback_deliveries.sql", t);
	free(t);
	assert_ok(migrate(&c, dir, &out, &err), err);
	assert_string_equal(out, "applied 0011_callback_deliveries.sql\n");
	free(out);
	/* 0011 again, as after a failure to record it: it runs. */
	assert_ok(db_exec_text(db, "DELETE FROM schema_migrations"
				   " WHERE version = 11",
			       &err),
		  err);
	assert_ok(migrate(&c, dir, &out, &err), err);
	assert_string_equal(out, "applied 0011_callback_deliveries.sql\n");
	free(out);
	t = migration_text("0015_callback_columns.sql");
	write_file(dir, "0015_callback_columns.sql", t);
	free(t);
	assert_ok(migrate(&c, dir, &out, &err), err);
	assert_string_equal(out, "applied 0015_callback_columns.sql\n");
	free(out);

	v = query1(db, "SELECT GROUP_CONCAT(CONCAT_WS(' ', job_id, type, url,"
		       " state, attempts, IFNULL(last_status, '-'),"
		       " IFNULL(next_at, '-'), created_at,"
		       " IFNULL(delivered_at, '-')) ORDER BY job_id"
		       " SEPARATOR ' | ') FROM callback_deliveries"
		       " WHERE job_id <> 'j_0000000000000000000000000B'");
	assert_string_equal(
		v, "j_0000000000000000000000000A job.succeeded "
		   "https://a.test/cb delivered 2 204 - "
		   "2026-01-02 03:04:05.123456 2026-01-02 03:04:11.000000 | "
		   "j_0000000000000000000000000C job.canceled "
		   "https://c.test/cb failed 8 - - "
		   "2026-01-03 00:00:00.000000 -");
	free(v);
	v = query1(db, "SELECT CONCAT_WS(' ', type, state, attempts,"
		       " IFNULL(last_status, '-'), next_at) FROM"
		       " callback_deliveries WHERE job_id ="
		       " 'j_0000000000000000000000000B'");
	assert_string_equal(v, "job.failed pending 1 - 2030-01-01 00:00:00.000000");
	free(v);
	/* The webhook-id the job was sent with. */
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM callback_deliveries d"
				      " JOIN jobs j ON j.id = d.job_id WHERE"
				      " d.id = CONCAT('msg_', j.id, '_',"
				      " REPLACE(UNIX_TIMESTAMP(j.completed_at),"
				      " '.', '_'))"),
			 3);
	v = query1(db, "SELECT id FROM callback_deliveries WHERE job_id ="
		       " 'j_0000000000000000000000000A'");
	assert_non_null(strstr(v, "msg_j_0000000000000000000000000A_"));
	assert_non_null(strstr(v, "_123456"));
	free(v);
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM callback_attempts"),
			 0);
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM"
				      " information_schema.COLUMNS WHERE"
				      " TABLE_SCHEMA = 'darkroom_mig10' AND"
				      " TABLE_NAME = 'jobs' AND COLUMN_NAME IN"
				      " ('callback_state', 'callback_attempts')"),
			 0);
	/* Running it again changes nothing. */
	assert_ok(migrate(&c, dir, &out, &err), err);
	assert_string_equal(out, "database is up to date (version 15)\n");
	free(out);
	db_free(db);
}

/* CREATE DATABASE quotes the name as an identifier; a name with
 * backticks (which the config loader refuses anyway) cannot end it. */
/* host->kv_get/kv_put over the real schema (migrations/0007): per
 * instance and key, replaced in place, deleted with NULL, with the time
 * of the last write; without a database, unavailable. */
static void test_plugin_kv(void **state)
{
	const dr_host *h = plugin_host_services();
	struct dr_instance a = { .name = "replicate" };
	struct dr_instance b = { .name = "replicate2" };
	double before = (double)time(NULL) - 5, at = 0;
	dr_config c;
	dr_db *db;
	dr_error err;
	char *out = NULL, *v = NULL;

	(void)state;
	dbserver_config(&c, "darkroom_kv");
	assert_ok(migrate(&c, DR_SOURCE_DIR "/migrations", &out, &err), err);
	free(out);
	db = db_new(&c);

	assert_int_equal(h->kv_get(&a, "webhook_secret", &v, &at, &err),
			 DR_ERR_UNAVAILABLE);
	assert_string_equal(err.code, "kv_unavailable");
	a.db = db;
	b.db = db;
	assert_int_equal(h->kv_get(&a, "webhook_secret", &v, &at, &err),
			 DR_ERR_NOT_FOUND);
	assert_null(v);
	assert_int_equal(h->kv_put(&a, "webhook_secret", "whsec_one", &err),
			 DR_OK);
	assert_int_equal(h->kv_put(&b, "webhook_secret", "whsec_two", &err),
			 DR_OK);
	assert_int_equal(h->kv_get(&a, "webhook_secret", &v, &at, &err),
			 DR_OK);
	assert_string_equal(v, "whsec_one");
	free(v);
	assert_true(at >= before && at <= (double)time(NULL) + 5);
	assert_int_equal(h->kv_put(&a, "webhook_secret", "whsec_three", &err),
			 DR_OK);
	assert_int_equal(h->kv_get(&a, "webhook_secret", &v, NULL, &err),
			 DR_OK);
	assert_string_equal(v, "whsec_three");
	free(v);
	assert_int_equal(h->kv_get(&b, "webhook_secret", &v, NULL, &err),
			 DR_OK);
	assert_string_equal(v, "whsec_two");
	free(v);
	assert_int_equal(h->kv_put(&a, "webhook_secret", NULL, &err), DR_OK);
	assert_int_equal(h->kv_get(&a, "webhook_secret", &v, NULL, &err),
			 DR_ERR_NOT_FOUND);
	assert_int_equal(h->kv_get(&b, "webhook_secret", &v, NULL, &err),
			 DR_OK);
	free(v);
	/* Keys are checked before the database is asked. */
	assert_int_equal(h->kv_put(&a, "a b", "x", &err), DR_ERR_INVALID);
	assert_int_equal(h->kv_put(&a, "", "x", &err), DR_ERR_INVALID);
	assert_int_equal(h->kv_get(&a, "../x", &v, NULL, &err),
			 DR_ERR_INVALID);
	db_free(db);
}

static void test_migrate_quote_ident(void **state)
{
	dr_buf b;

	(void)state;
	dr_buf_init(&b, 64);
	assert_int_equal(migrate_quote_ident(&b, "darkroom_mig"), DR_OK);
	assert_string_equal(b.data, "`darkroom_mig`");
	dr_buf_reset(&b);
	assert_int_equal(migrate_quote_ident(&b, "a`b``c"), DR_OK);
	assert_string_equal(b.data, "`a``b````c`");
	dr_buf_reset(&b);
	assert_int_equal(migrate_quote_ident(&b, "x` CHARACTER SET latin1; "
						 "DROP DATABASE y; -- "),
			 DR_OK);
	assert_string_equal(b.data, "`x`` CHARACTER SET latin1; DROP DATABASE "
				    "y; -- `");
	dr_buf_reset(&b);
	assert_int_equal(migrate_quote_ident(&b, ""), DR_ERR_INVALID);
	assert_int_equal(b.len, 0);
	/* Over the buffer's limit: nothing appended. */
	assert_int_equal(dr_buf_puts(&b, "CREATE "), DR_OK);
	assert_int_equal(migrate_quote_ident(&b, "````````````````````````````"
						 "````````````````"),
			 DR_ERR_TOO_LARGE);
	assert_string_equal(b.data, "CREATE ");
	dr_buf_free(&b);
}

static void test_migrate_failures(void **state)
{
	char dir[128];
	dr_config c;
	dr_db *db;
	dr_error err;
	char *out, *v;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/mig", dbsrv.dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	write_file(dir, "0001_a.sql",
		   "-- first\n"
		   "CREATE TABLE IF NOT EXISTS a (\n"
		   "  x INT -- inline comments reach the server\n"
		   ");\n"
		   "INSERT INTO a VALUES (1)\n");
	write_file(dir, "0002_b.sql",
		   "-- b and c\n"
		   "CREATE TABLE IF NOT EXISTS b (x INT);\n"
		   "\n"
		   "CREATE TABLE c (x INT,\n"
		   "  );\n");
	/* Ignored: not NNNN_name.sql. */
	write_file(dir, "README", "not sql");
	write_file(dir, "0003.sql", "not a migration;\n");
	write_file(dir, "12_short.sql", "not a migration;\n");
	write_file(dir, "0004_x.sql~", "not a migration;\n");

	dbserver_config(&c, "darkroom_bad");
	assert_int_equal(migrate(&c, dir, &out, &err), DR_ERR_DATABASE);
	assert_non_null(strstr(err.message,
			       "0002_b.sql: statement 2 (line 4) failed: "
			       "database error 1064"));
	assert_string_equal(out, "applied 0001_a.sql\n"
				 "failed 0002_b.sql: statement 2 (line 4): "
				 "CREATE TABLE c (x INT,...\n");
	free(out);

	db = db_new(&c);
	v = query1(db, "SELECT GROUP_CONCAT(version) FROM schema_migrations");
	assert_string_equal(v, "1");
	free(v);
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM a"), 1);
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM b"), 0);

	/* Fixed, the file runs again from its first statement. */
	write_file(dir, "0002_b.sql",
		   "CREATE TABLE IF NOT EXISTS b (x INT);\n"
		   "CREATE TABLE IF NOT EXISTS c (x INT);\n");
	assert_ok(migrate(&c, dir, &out, &err), err);
	assert_string_equal(out, "applied 0002_b.sql\n");
	free(out);
	v = query1(db, "SELECT GROUP_CONCAT(version ORDER BY version) "
		       "FROM schema_migrations");
	assert_string_equal(v, "1,2");
	free(v);

	/* Two files with one number. */
	write_file(dir, "00002_again.sql", "DO 1;\n");
	assert_int_equal(migrate_run(&c, dir, NULL, &err), DR_ERR_INVALID);
	assert_non_null(strstr(err.message, "0002_b.sql"));
	assert_non_null(strstr(err.message, "00002_again.sql"));
	remove_file(dir, "00002_again.sql");

	/* A recorded migration whose file is gone. */
	remove_file(dir, "0001_a.sql");
	assert_int_equal(migrate_run(&c, dir, NULL, &err), DR_ERR_CONFLICT);
	assert_non_null(strstr(err.message, "no file"));
	db_free(db);
}

/* db_insert_rows() keeps each statement under DB_ROWS_BYTES: 100 rows of
 * 200 KB go even where max_allowed_packet (8 MiB here) is far below the
 * 20 MB one statement of them all would need. */
static void test_insert_rows_bytes(void **state)
{
	static char *cache[3];
	enum { N = 100, PER = 2, LEN = 200 * 1024 };
	dr_db_arg args[N * PER];
	char ids[N][8], *blob = malloc(LEN + 1);
	dr_db *admin = db_new(&cfg), *db;
	dr_error err;

	(void)state;
	memset(blob, 'z', LEN);
	blob[LEN] = '\0';
	assert_ok(db_exec_text(admin, "SET GLOBAL max_allowed_packet = 8388608",
			       &err),
		  err);
	db = db_new(&cfg); /* a new session takes the new global */
	assert_ok(db_exec_text(db,
			       "CREATE TABLE ins_rows (k VARCHAR(8) PRIMARY KEY,"
			       " v MEDIUMTEXT NOT NULL)",
			       &err),
		  err);
	for (size_t i = 0; i < N; i++) {
		snprintf(ids[i], sizeof(ids[i]), "r%zu", i);
		args[i * PER] = DB_STR(ids[i]);
		args[i * PER + 1] = DB_STR(blob);
	}
	assert_ok(db_begin(db, &err), err);
	assert_ok(db_insert_rows(db, "INSERT INTO ins_rows (k, v)", "(?, ?)",
				 PER, args, N, cache, &err),
		  err);
	assert_ok(db_commit(db, &err), err);
	assert_int_equal(query1_u(db, "SELECT COUNT(*) FROM ins_rows WHERE"
				      " LENGTH(v) = 204800"),
			 N);
	assert_ok(db_exec_text(db, "DROP TABLE ins_rows", &err), err);
	assert_ok(db_exec_text(admin,
			       "SET GLOBAL max_allowed_packet = DEFAULT", &err),
		  err);
	db_free(db);
	db_free(admin);
	free(blob);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ping_and_session),
		cmocka_unit_test(test_bad_credentials),
		cmocka_unit_test(test_types_roundtrip),
		cmocka_unit_test(test_arg_kinds),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_insert_rows_bytes),
		cmocka_unit_test(test_transactions),
		cmocka_unit_test(test_lock_wait_ends_transaction),
		cmocka_unit_test(test_statement_cache),
		cmocka_unit_test(test_query_args),
		cmocka_unit_test(test_killed_connection),
		cmocka_unit_test(test_fork),
		cmocka_unit_test(test_server_down_and_back),
		cmocka_unit_test(test_migrate_real_schema),
		cmocka_unit_test(test_migrate_0005_delivery_keys),
		cmocka_unit_test(test_migrate_0011_callback_deliveries),
		cmocka_unit_test(test_plugin_kv),
		cmocka_unit_test(test_migrate_quote_ident),
		cmocka_unit_test(test_migrate_failures),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
