/*
 * db.h - the MariaDB connection of a process, with prepared statements.
 *
 * One dr_db per process (the FastCGI app and each worker are single
 * threaded). It connects lazily, caches one prepared statement per SQL
 * text (callers pass string literals, so the pointer is the cache key), and
 * reconnects by itself after the server went away, re-preparing what it
 * needs. Every failure maps to a dr_status:
 *   DR_ERR_UNAVAILABLE  the server cannot be reached or the connection was
 *                       lost (the API answers 503, a worker retries later);
 *   DR_ERR_CONFLICT     a unique key was violated (err->code "duplicate");
 *   DR_ERR_DATABASE     anything else (SQL error, deadlock: err->retryable).
 * Error messages never contain SQL text or credentials.
 *
 * Parameters are a typed list, one dr_db_arg per '?', made with the
 * constructors below and passed as DB_ARGS(...) (or DB_NOARGS):
 *   db_exec(db, "UPDATE t SET a = ? WHERE id = ?", &n, err,
 *           DB_ARGS(DB_STR(a), DB_U64(id)))
 * Each constructor is a compound literal with a designated initialiser, so
 * a value of the wrong kind (an integer to DB_STR, a pointer to DB_INT) is
 * an int-conversion error at compile time, not undefined behaviour at run
 * time; the count comes from sizeof, so it cannot disagree with the list.
 * A list whose length differs from the statement's '?' count fails with
 * DR_ERR_INTERNAL before anything runs.
 * Results come back as text cells (SQL NULL is a NULL pointer): DATETIME
 * as "YYYY-MM-DD HH:MM:SS.ffffff", numbers in decimal.
 */
#ifndef DR_DB_H
#define DR_DB_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

typedef struct dr_db dr_db;

typedef struct dr_db_rows {
	size_t n_rows;
	size_t n_cols;
	char **cells;          /* n_rows * n_cols, row-major; NULL = SQL NULL */
	unsigned long *lens;   /* byte lengths of the cells */
} dr_db_rows;

/* Make a handle for the [database] settings of `cfg` (borrowed; must
 * outlive the handle). Does not connect; never fails but for memory. */
dr_db *db_new(const dr_config *cfg);

/* Same, but connecting without selecting a database (for migrate's
 * CREATE DATABASE). */
dr_db *db_new_server(const dr_config *cfg);

/* Close the connection and free the handle; NULL is a no-op. */
void db_free(dr_db *db);

/* Run fn(db) at the start of db_free() of a connected handle outside a
 * transaction (one hook per process; metrics writes what it holds). */
void db_set_free_hook(void (*fn)(dr_db *db));

/* Connect now if not connected and check the server answers. */
dr_status db_ping(dr_db *db, dr_error *err) DR_WARN_UNUSED;

/* Drop the connection (after fork(), a child calls this before use so it
 * never shares the parent's socket). */
void db_disconnect(dr_db *db);

/* The kind of a dr_db_arg. Zero is no kind, so a zeroed or raw value in a
 * list is refused at run time (DR_ERR_INTERNAL) rather than guessed at. */
enum dr_db_type {
	DB_TYPE_NULL = 1, /* SQL NULL */
	DB_TYPE_STR,	  /* s: NUL-terminated text; NULL binds SQL NULL */
	DB_TYPE_BLOB,	  /* b: b.len bytes at b.p; b.p NULL binds SQL NULL */
	DB_TYPE_INT,	  /* i: a signed 64-bit integer */
	DB_TYPE_U64,	  /* u: an unsigned 64-bit integer */
	DB_TYPE_DBL,	  /* d: a double */
};

/* One statement parameter. Strings and bytes are borrowed: they must stay
 * valid until the call that takes them returns (a retry binds them again,
 * the handle keeps nothing). */
typedef struct dr_db_arg {
	enum dr_db_type type;
	union {
		const char *s;
		int64_t i;
		uint64_t u;
		double d;
		struct {
			const void *p;
			size_t len;
		} b;
	};
} dr_db_arg;

/* The constructors, each a dr_db_arg. Between pointers and numbers there
 * is no conversion (a compile error); between number kinds there is C's
 * usual one, so DB_INT(x) of an unsigned x or DB_DBL(n) of an integer
 * converts as an assignment would. */
#define DB_STR(x) ((dr_db_arg){ .type = DB_TYPE_STR, .s = (x) })
#define DB_INT(x) ((dr_db_arg){ .type = DB_TYPE_INT, .i = (x) })
#define DB_U64(x) ((dr_db_arg){ .type = DB_TYPE_U64, .u = (x) })
#define DB_DBL(x) ((dr_db_arg){ .type = DB_TYPE_DBL, .d = (x) })
#define DB_BLOB(ptr, n)                                                        \
	((dr_db_arg){ .type = DB_TYPE_BLOB, .b = { .p = (ptr), .len = (n) } })
#define DB_NULL ((dr_db_arg){ .type = DB_TYPE_NULL })

/* The two trailing arguments (array, count) of the calls below: a list of
 * one or more dr_db_arg, or none. The array is a compound literal living
 * until the end of the enclosing block; sizeof does not evaluate it
 * twice. */
#define DB_ARGS(...)                                                           \
	(const dr_db_arg[]){ __VA_ARGS__ },                                    \
		sizeof((const dr_db_arg[]){ __VA_ARGS__ }) / sizeof(dr_db_arg)
#define DB_NOARGS (const dr_db_arg *)NULL, (size_t)0

/* Run a statement that returns no rows with the n_args parameters `args`
 * (borrowed for the call). `*affected` (may be NULL) gets the affected row
 * count. `sql` must live as long as the handle: its statement is kept. */
dr_status db_exec(dr_db *db, const char *sql, uint64_t *affected, dr_error *err,
		  const dr_db_arg *args, size_t n_args) DR_WARN_UNUSED;

/* Run a query with the parameters `args`; *rows (owned by the caller, free
 * with db_rows_free; NULL on failure; `rows` itself may be NULL to discard
 * them) holds every row. `sql` must live as long as the handle: its
 * statement is kept. */
dr_status db_query(dr_db *db, const char *sql, dr_db_rows **rows, dr_error *err,
		   const dr_db_arg *args, size_t n_args) DR_WARN_UNUSED;

/*
 * db_query() for SQL text built at run time (`sql` need only live for the
 * call): it is prepared, run and closed (one round trip more), so that
 * statements built at run time neither grow the cache nor add to the
 * server's count of prepared statements (max_prepared_stmt_count, shared
 * by every connection).
 */
dr_status db_query_uncached(dr_db *db, const char *sql, dr_db_rows **rows,
			    dr_error *err, const dr_db_arg *args,
			    size_t n_args) DR_WARN_UNUSED;

/* Run SQL text without parameters or results (migrations, DDL); not
 * cached. */
dr_status db_exec_text(dr_db *db, const char *sql, dr_error *err)
	DR_WARN_UNUSED;

/* The cell at (row, col), NULL for SQL NULL or out of range. */
const char *db_cell(const dr_db_rows *rows, size_t row, size_t col);

/* Free a result; NULL is a no-op. */
void db_rows_free(dr_db_rows *rows);

/* Transactions. db_begin() fails with DR_ERR_UNAVAILABLE when the server
 * is away; after a lost connection inside a transaction every call fails
 * until db_rollback(). */
dr_status db_begin(dr_db *db, dr_error *err) DR_WARN_UNUSED;
dr_status db_commit(dr_db *db, dr_error *err) DR_WARN_UNUSED;
void db_rollback(dr_db *db);

/* How many times a whole transaction is run before a deadlock or lock wait
 * timeout is given to the caller, and whether `st`/`err` is such a death
 * (InnoDB rolled the transaction back; running it again from db_begin() is
 * safe and is what InnoDB asks of applications). */
#define DB_TX_TRIES 5
int db_tx_again(dr_status st, const dr_error *err);

/* Whether a transaction is open (between db_begin and its end). */
int db_in_transaction(const dr_db *db);

/*
 * Run `sql` (no parameters, cached), a query of one row and one column
 * that is a number of microseconds from now (TIMESTAMPDIFF(MICROSECOND,
 * NOW(6), …)), and put it in *seconds: -1 when NULL (nothing is due),
 * else seconds from now, 0 when already past.
 */
dr_status db_query_seconds(dr_db *db, const char *sql, double *seconds,
			   dr_error *err) DR_WARN_UNUSED;

/*
 * SQL text for a statement over a list of `n` values: `tmpl` with each
 * "(?*)" replaced by "(?, ?, …)" of n placeholders. Built once into
 * *cache (the caller's static pointer, never freed, so the text lives as
 * long as every handle, as db_exec() and db_query() want) and returned.
 * A caller with fewer values repeats one: `IN (a, b, b)` is `IN (a, b)`.
 */
const char *db_sql_list(const char *tmpl, unsigned n, char **cache);

/*
 * A multi-row INSERT: `head` ("INSERT INTO t (a, b)") and " VALUES " and
 * `row` ("(?, ?, NOW(6))", `per` parameters) once for each of `n_rows`
 * rows, their parameters args[0 .. n_rows * per) row after row. The rows
 * go in statements of DB_ROWS_CHUNK, 10 and 1 rows, so that whatever the
 * count, one table has at most three statement texts (built once into
 * cache[0..2], the caller's static array, never freed) and the prepared
 * statements stay few; a statement carries more than one row only while
 * its parameters hold at most DB_ROWS_BYTES, far below MariaDB's
 * max_allowed_packet (16 MiB by default). Meant for an open transaction
 * (all or nothing).
 */
#define DB_ROWS_CHUNK 100
#define DB_ROWS_BYTES ((size_t)4 << 20)
dr_status db_insert_rows(dr_db *db, const char *head, const char *row,
			 size_t per, const dr_db_arg *args, size_t n_rows,
			 char *cache[3], dr_error *err) DR_WARN_UNUSED;

/* AUTO_INCREMENT id of the last insert on this connection. */
uint64_t db_last_insert_id(dr_db *db);

#endif
