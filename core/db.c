/*
 * db.c - the process's MariaDB connection, its prepared statements and the
 * mapping of MariaDB errors to dr_status (see db.h).
 *
 * Connection. A dr_db connects lazily with MariaDB Connector/C: host
 * "localhost" means the unix socket (the configured `socket`, else the
 * library default), timeouts come from the config rounded up to whole
 * seconds, the character set is utf8mb4, the library's own auto-reconnect
 * is off (it would silently lose session state and prepared statements),
 * LOAD DATA LOCAL is off, and CLIENT_FOUND_ROWS is on so that the affected
 * count of an UPDATE is the number of rows *matched*: a fenced write
 * (`WHERE id = ? AND lease_version = ?`) that happens to store the values
 * already there still reports 1, not 0. After every connect the session
 * gets time_zone '+00:00', a strict sql_mode, READ COMMITTED isolation
 * (what a queue claiming rows with SKIP LOCKED wants: no gap locks, fresh
 * snapshot per statement) and an innodb_lock_wait_timeout shorter than the
 * read timeout, so a lock wait ends with error 1205 from the server rather
 * than with the client giving up on a still-running statement, and an
 * idle_transaction_timeout: darkroom never leaves a transaction open
 * between statements for long, so a session that does has lost its client
 * (a worker cut off between claiming a row FOR UPDATE and committing);
 * the server then ends it and frees the row instead of holding the lock
 * until wait_timeout (hours) while every SKIP LOCKED claim passes it by.
 *
 * Statements. One MYSQL_STMT per SQL text, kept in an open-addressing
 * table keyed by the SQL *pointer* (callers pass string literals, so
 * equal pointers mean equal text and hashing the text is unnecessary).
 * Slots are never deleted: when the connection goes, every statement is
 * closed and its slot kept empty, and the next use prepares it again on the
 * new connection. Results are stored client-side (mysql_stmt_store_result
 * with STMT_ATTR_UPDATE_MAX_LENGTH), every column is bound as a string
 * sized from max_length, and a cell that still does not fit is fetched
 * again with mysql_stmt_fetch_column, so no value is ever truncated. The
 * cells of one result live in one text block.
 *
 * Reconnect policy. The server can go away at any moment (restart,
 * failover, wait_timeout, a killed connection); the goal is that a
 * long-lived process recovers by itself without ever running a write
 * twice:
 *   - A connection idle for more than DB_IDLE_PING (1 s) is checked with
 *     mysql_ping before use. That costs one round trip only on the first
 *     statement after a pause, and catches a restarted server before a
 *     statement is sent on a dead socket. A failed ping drops the
 *     connection and connects again.
 *   - A statement that fails with a connection error *before* it was sent
 *     for execution (while preparing it, or CR_SERVER_GONE_ERROR 2006 from
 *     execute, which Connector/C reports when the request could not be
 *     written) drops the connection, reconnects once and runs again.
 *   - db_query() and db_query_uncached() (read-only by contract) are also
 *     retried once after CR_SERVER_LOST 2013/2055 (lost while waiting for
 *     the answer) and the other connection errors (a killed connection,
 *     server shutdown).
 *     db_exec() and db_exec_text() are not: the write may have happened,
 *     and the caller's retry logic (leases, idempotent steps) decides.
 *   - Nothing is retried inside a transaction: the transaction died with
 *     the connection, so the call fails with DR_ERR_UNAVAILABLE and every
 *     later call fails the same way until db_rollback(). The same holds
 *     after a deadlock or lock wait timeout inside a transaction (InnoDB
 *     rolled back the transaction, or at least the statement): the error is
 *     DR_ERR_DATABASE, retryable, code "deadlock", and the transaction must
 *     be rolled back and run again from the start.
 *   - A statement the server no longer knows (ER_NEED_REPREPARE,
 *     ER_UNKNOWN_STMT_HANDLER) is prepared again and run once more; it was
 *     not executed, so this is safe even inside a transaction.
 *   - A failed connect is not retried at once: the caller gets
 *     DR_ERR_UNAVAILABLE (retryable) and the next call tries again.
 *
 * Fork. A child of fork() inherits the parent's socket. Closing the
 * connection normally in the child would send COM_STMT_CLOSE and COM_QUIT
 * down the shared socket and end the *parent's* session (and fcntl() on it
 * would change the parent's file status flags). So whenever the handle is
 * used or dropped in a process other than the one that connected, it first
 * points the connection's descriptor at /dev/null (dup2), then closes the
 * statements and the connection as usual: everything is freed, the goodbye
 * messages go nowhere, and the parent's socket stays open in the parent
 * only. If /dev/null cannot be opened the child leaks the handle rather than
 * risk the parent's session. This happens in db_disconnect(), db_free() and
 * before any use, so a child that forgets db_disconnect() is still safe;
 * the child starts without the parent's transaction.
 *
 * Errors. Messages carry the MariaDB error number and a short generic
 * text, never SQL, data or credentials; the server's own message (which
 * may quote values or names) goes to the debug log only.
 */
#include "db.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include "buf.h"
#include "log.h"

/* Seconds a connection may sit unused before it is pinged before use. */
#define DB_IDLE_PING 1.0
/* Initial number of statement slots (a power of two). */
#define DB_STMT_SLOTS_MIN 64
/* Bytes of cell text one result may hold. */
#define DB_MAX_RESULT_BYTES ((size_t)256 << 20)
/* Smallest buffer bound to a result column. Dates and integers that do
 * not fit are fetched again, but Connector/C formats a DOUBLE to fit the
 * buffer (0.1 becomes "0" in 2 bytes) without reporting truncation, so
 * this must exceed the longest DOUBLE text (23 bytes). */
#define DB_MIN_COLUMN_BUF 64
/* Longest timeout we pass to Connector/C, in seconds. */
#define DB_MAX_TIMEOUT 86400u

/* Seconds a session may sit idle inside a transaction (see the top). */
#define DB_IDLE_TX_TIMEOUT "20"

#define DB_SQL_MODE                                                            \
	"STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"                      \
	"ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"

struct db_slot {
	const char *sql;  /* the key; NULL marks a free slot */
	MYSQL_STMT *stmt; /* NULL until prepared on the current connection */
};

struct dr_db {
	const dr_config *cfg;
	int select_db; /* connect with cfg->database.name selected */

	MYSQL *conn;	  /* NULL when not connected */
	pid_t conn_pid;	  /* the process that opened conn */
	double last_used; /* monotonic seconds of the last server answer */

	int in_tx;	    /* between db_begin and db_commit/rollback */
	dr_status tx_abort; /* DR_OK, or why the transaction is dead */
	char tx_abort_code[24];

	uint64_t last_insert_id;

	struct db_slot *slots;
	size_t n_slots; /* capacity, a power of two */
	size_t n_used;
};

/* Where a statement failed: while preparing (nothing executed), while
 * executing, or while reading the result of an execution. */
enum db_phase { DB_PHASE_PREPARE, DB_PHASE_EXECUTE, DB_PHASE_RESULT };

/* One MariaDB failure, captured before anything else touches the handle. */
struct db_fault {
	unsigned no; /* MariaDB error number; 0 for our own errors */
	enum db_phase phase;
	dr_status status; /* for our own errors (no == 0) */
	char msg[256];	  /* the server's text, for the debug log only */
};

/* Parameters bound from a dr_db_arg list, kept for a retry. */
union db_num {
	long long i;
	unsigned long long u;
	double d;
};

struct db_params {
	size_t n;
	MYSQL_BIND *binds;
	union db_num *nums;
	my_bool *nulls;
};

/* A result as handed out: the public part first, so db_rows_free can cast
 * back. */
struct db_rows_box {
	dr_db_rows rows;
	char *text; /* every cell, NUL-terminated, in one block */
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds for Connector/C: rounded up, at least 1, at most a day. */
static unsigned timeout_secs(double s)
{
	unsigned u;

	if (!(s > 0))
		return 1;
	if (s >= DB_MAX_TIMEOUT)
		return DB_MAX_TIMEOUT;
	u = (unsigned)s;
	if ((double)u < s)
		u++;
	return u ? u : 1;
}

static void fault_set(struct db_fault *f, unsigned no, enum db_phase phase,
		      const char *msg)
{
	f->no = no ? no : CR_UNKNOWN_ERROR;
	f->phase = phase;
	f->status = DR_ERR_DATABASE;
	snprintf(f->msg, sizeof(f->msg), "%s", msg ? msg : "");
}

static void fault_stmt(struct db_fault *f, MYSQL_STMT *st, enum db_phase ph)
{
	fault_set(f, mysql_stmt_errno(st), ph, mysql_stmt_error(st));
}

static void fault_conn(struct db_fault *f, MYSQL *m, enum db_phase ph)
{
	fault_set(f, mysql_errno(m), ph, mysql_error(m));
}

/* Our own failure (bad call, limit): never retried. */
static void fault_own(struct db_fault *f, dr_status status, const char *msg)
{
	f->no = 0;
	f->phase = DB_PHASE_PREPARE;
	f->status = status;
	snprintf(f->msg, sizeof(f->msg), "%s", msg);
}

/* Errors after which the connection is unusable. */
static int is_conn_error(unsigned no)
{
	switch (no) {
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_SERVER_LOST_EXTENDED:
	case ER_CONNECTION_KILLED:
	case ER_SERVER_SHUTDOWN:
		return 1;
	default:
		return 0;
	}
}

/* Errors saying the prepared statement is gone or stale on the server. */
static int is_stale_stmt(unsigned no)
{
	return no == ER_NEED_REPREPARE || no == ER_UNKNOWN_STMT_HANDLER;
}

static void log_server_error(unsigned no, const char *msg)
{
	char q[300];

	dr_log(DR_LOG_DEBUG, "event=db.error errno=%u message=%s", no,
	       dr_log_quote(msg, q, sizeof(q)));
}

/* ------------------------------------------------------------------ */
/* Statement table */

static size_t slot_hash(const char *sql, size_t mask)
{
	uint64_t x = (uint64_t)(uintptr_t)sql;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (size_t)x & mask;
}

/* The slot of `sql`, or the free slot where it belongs. */
static struct db_slot *slot_find(struct db_slot *slots, size_t n,
				 const char *sql)
{
	size_t i = slot_hash(sql, n - 1);

	while (slots[i].sql && slots[i].sql != sql)
		i = (i + 1) & (n - 1);
	return &slots[i];
}

/* The slot of `sql`, inserted when new; the table stays at most half full
 * so probes stay short and there is always a free slot. */
static struct db_slot *slot_get(dr_db *db, const char *sql)
{
	struct db_slot *s;

	if (!db->slots) {
		db->n_slots = DB_STMT_SLOTS_MIN;
		db->slots = dr_xcalloc(db->n_slots, sizeof(*db->slots));
	}
	s = slot_find(db->slots, db->n_slots, sql);
	if (s->sql)
		return s;
	if ((db->n_used + 1) * 2 > db->n_slots) {
		size_t n = db->n_slots * 2;
		struct db_slot *t = dr_xcalloc(n, sizeof(*t));

		for (size_t i = 0; i < db->n_slots; i++)
			if (db->slots[i].sql)
				*slot_find(t, n, db->slots[i].sql) =
					db->slots[i];
		free(db->slots);
		db->slots = t;
		db->n_slots = n;
		s = slot_find(db->slots, db->n_slots, sql);
	}
	s->sql = sql;
	s->stmt = NULL;
	db->n_used++;
	return s;
}

static void slots_close(dr_db *db)
{
	for (size_t i = 0; i < db->n_slots; i++) {
		if (db->slots[i].stmt) {
			mysql_stmt_close(db->slots[i].stmt);
			db->slots[i].stmt = NULL;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Connection */

/*
 * Point the connection's socket descriptor at /dev/null so that closing it
 * in a forked child sends nothing to the parent's session. Returns 0 when
 * the connection may now be closed normally, -1 when it must be leaked.
 */
static int neutralize_socket(MYSQL *m)
{
	my_socket fd = mysql_get_socket(m);
	int nul;

	if (fd < 0)
		return 0; /* no socket: nothing can be sent */
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul < 0)
		return -1;
	if (dup2(nul, fd) < 0) {
		close(nul);
		return -1;
	}
	close(nul);
	return 0;
}

/* Close every statement and the connection; safe in a forked child. */
static void conn_release(dr_db *db)
{
	if (!db->conn)
		return;
	if (db->conn_pid != getpid() && neutralize_socket(db->conn) < 0) {
		/* Leak rather than say goodbye on the parent's socket. */
		for (size_t i = 0; i < db->n_slots; i++)
			db->slots[i].stmt = NULL;
		db->conn = NULL;
		return;
	}
	slots_close(db);
	mysql_close(db->conn);
	db->conn = NULL;
}

/* Drop the connection after an error; a transaction in progress is lost. */
static void conn_drop(dr_db *db)
{
	if (!db->conn)
		return;
	conn_release(db);
	if (db->in_tx && db->tx_abort == DR_OK) {
		db->tx_abort = DR_ERR_UNAVAILABLE;
		snprintf(db->tx_abort_code, sizeof(db->tx_abort_code), "%s",
			 "database_unavailable");
	}
}

/* In a forked child, forget the parent's connection and transaction. */
static void check_fork(dr_db *db)
{
	if (db->conn && db->conn_pid != getpid()) {
		conn_release(db);
		db->in_tx = 0;
		db->tx_abort = DR_OK;
	}
}

static dr_status conn_open(dr_db *db, dr_error *err)
{
	static const char set_isolation[] =
		"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";
	const dr_config *cfg = db->cfg;
	unsigned ct = timeout_secs(cfg->database.connect_timeout);
	unsigned io = timeout_secs(cfg->database.io_timeout);
	unsigned lock_wait = io > 2 ? io - 1 : 1;
	unsigned zero = 0;
	my_bool off = 0;
	const char *host =
		cfg->database.host ? cfg->database.host : "localhost";
	const char *sock = NULL;
	char setup[256];
	unsigned no;
	MYSQL *m;

	m = mysql_init(NULL);
	if (!m)
		dr_die("out of memory initializing a database connection");
	mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
	mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &io);
	mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &io);
	mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_options(m, MYSQL_OPT_RECONNECT, &off);
	mysql_options(m, MYSQL_OPT_LOCAL_INFILE, &zero);
	if (strcmp(host, "localhost") == 0)
		sock = cfg->database.socket;

	if (!mysql_real_connect(m, host, cfg->database.user,
				cfg->database.password,
				db->select_db ? cfg->database.name : NULL,
				cfg->database.port, sock, CLIENT_FOUND_ROWS))
		goto err_close;

	snprintf(setup, sizeof(setup),
		 "SET time_zone = '+00:00', sql_mode = '" DB_SQL_MODE "', "
		 "innodb_lock_wait_timeout = %u, "
		 "idle_transaction_timeout = " DB_IDLE_TX_TIMEOUT,
		 lock_wait);
	if (mysql_real_query(m, setup, strlen(setup)))
		goto err_close;
	if (mysql_real_query(m, set_isolation, sizeof(set_isolation) - 1))
		goto err_close;

	db->conn = m;
	db->conn_pid = getpid();
	db->last_used = now_mono();
	return DR_OK;

err_close:
	no = mysql_errno(m);
	log_server_error(no, mysql_error(m));
	mysql_close(m);
	dr_fail(err, DR_ERR_UNAVAILABLE, "database_unavailable",
		"cannot connect to the database (error %u)", no);
	if (err)
		err->retryable = 1;
	return DR_ERR_UNAVAILABLE;
}

/* The error of a transaction that died (lost connection, deadlock). */
static dr_status tx_dead(dr_db *db, dr_error *err)
{
	dr_fail(err, db->tx_abort, db->tx_abort_code, "%s",
		db->tx_abort == DR_ERR_UNAVAILABLE
			? "database connection lost inside a transaction; "
			  "roll back and retry"
			: "transaction aborted by a deadlock or lock wait "
			  "timeout; roll back and retry");
	if (err)
		err->retryable = 1;
	return db->tx_abort;
}

/*
 * Make sure there is a connection worth sending a statement on: forget a
 * parent's connection, refuse inside a dead transaction, ping when idle
 * (or when `force_ping`), connect when there is none. A failed ping drops
 * the connection; outside a transaction a new one is opened.
 */
static dr_status conn_ready(dr_db *db, int force_ping, dr_error *err)
{
	check_fork(db);
	if (db->tx_abort != DR_OK)
		return tx_dead(db, err);
	if (db->conn &&
	    (force_ping || now_mono() - db->last_used > DB_IDLE_PING)) {
		if (mysql_ping(db->conn) == 0) {
			db->last_used = now_mono();
			return DR_OK;
		}
		dr_log(DR_LOG_INFO, "event=db.connection_lost errno=%u",
		       mysql_errno(db->conn));
		log_server_error(mysql_errno(db->conn), mysql_error(db->conn));
		conn_drop(db);
		if (db->tx_abort != DR_OK)
			return tx_dead(db, err);
	}
	if (!db->conn)
		return conn_open(db, err);
	return DR_OK;
}

/* ------------------------------------------------------------------ */
/* Errors */

/* Turn a fault into the caller's error; drops the connection after
 * connection errors and marks a transaction dead where it is. */
static dr_status fail_fault(dr_db *db, const struct db_fault *f, dr_error *err)
{
	if (f->no == 0)
		return dr_fail(err, f->status, NULL, "%s", f->msg);
	log_server_error(f->no, f->msg);
	if (!is_conn_error(f->no))
		db->last_used = now_mono(); /* the server did answer */
	if (is_conn_error(f->no)) {
		conn_drop(db);
		dr_fail(err, DR_ERR_UNAVAILABLE, "database_unavailable",
			"database connection lost (error %u)", f->no);
		if (err)
			err->retryable = 1;
		return DR_ERR_UNAVAILABLE;
	}
	if (f->no == ER_DUP_ENTRY)
		return dr_fail(err, DR_ERR_CONFLICT, "duplicate",
			       "duplicate key (error %u)", f->no);
	if (f->no == ER_LOCK_DEADLOCK || f->no == ER_LOCK_WAIT_TIMEOUT) {
		if (db->in_tx && db->tx_abort == DR_OK) {
			db->tx_abort = DR_ERR_DATABASE;
			snprintf(db->tx_abort_code, sizeof(db->tx_abort_code),
				 "%s", "deadlock");
		}
		dr_fail(err, DR_ERR_DATABASE, "deadlock", "%s (error %u)",
			f->no == ER_LOCK_DEADLOCK ? "deadlock"
						  : "lock wait timeout",
			f->no);
		if (err)
			err->retryable = 1;
		return DR_ERR_DATABASE;
	}
	if (f->no == CR_COMMANDS_OUT_OF_SYNC)
		conn_drop(db); /* a bug; start from a clean connection */
	return dr_fail(err, DR_ERR_DATABASE, "database_error",
		       "database error %u", f->no);
}

/*
 * Whether the failed attempt may run again on a fresh connection: only
 * once, never inside a transaction, and only when the statement cannot
 * have taken effect (or only reads). Stale statements are re-prepared.
 */
static int may_retry(const dr_db *db, const struct db_fault *f, int attempt,
		     int read_only)
{
	if (attempt > 0 || f->no == 0)
		return 0;
	if (is_stale_stmt(f->no))
		return 1;
	if (db->in_tx || !is_conn_error(f->no))
		return 0;
	/* Not executed: failed while preparing, or the request was never
	 * written. A read may always run again. */
	return f->phase == DB_PHASE_PREPARE || f->no == CR_SERVER_GONE_ERROR ||
	       read_only;
}

/* ------------------------------------------------------------------ */
/* Parameters */

static void params_free(struct db_params *p)
{
	free(p->binds);
	free(p->nums);
	free(p->nulls);
}

/* Room for n parameters in *p (zeroed first). */
static void params_alloc(struct db_params *p, size_t n)
{
	memset(p, 0, sizeof(*p));
	if (n == 0)
		return;
	p->n = n;
	p->binds = dr_xcalloc(n, sizeof(*p->binds));
	p->nums = dr_xcalloc(n, sizeof(*p->nums));
	p->nulls = dr_xcalloc(n, sizeof(*p->nulls));
	for (size_t i = 0; i < n; i++)
		p->binds[i].is_null = &p->nulls[i];
}

/* Bind parameter i to bytes (a string when len is strlen(v)); NULL binds
 * SQL NULL. The bytes are borrowed. */
static void bind_bytes(struct db_params *p, size_t i,
		       enum enum_field_types type, const void *v, size_t len)
{
	MYSQL_BIND *b = &p->binds[i];

	b->buffer_type = type;
	p->nulls[i] = v == NULL;
	b->buffer = (void *)(v ? v : "");
	b->buffer_length = v ? len : 0;
}

static void bind_int(struct db_params *p, size_t i, int64_t v)
{
	p->nums[i].i = v;
	p->binds[i].buffer_type = MYSQL_TYPE_LONGLONG;
	p->binds[i].buffer = &p->nums[i].i;
}

static void bind_u64(struct db_params *p, size_t i, uint64_t v)
{
	p->nums[i].u = v;
	p->binds[i].buffer_type = MYSQL_TYPE_LONGLONG;
	p->binds[i].is_unsigned = 1;
	p->binds[i].buffer = &p->nums[i].u;
}

static void bind_double(struct db_params *p, size_t i, double v)
{
	p->nums[i].d = v;
	p->binds[i].buffer_type = MYSQL_TYPE_DOUBLE;
	p->binds[i].buffer = &p->nums[i].d;
}

/* Bind the n parameters `args` into *p (freed with params_free on success,
 * left empty on failure); numbers are copied, strings and bytes borrowed.
 * A type outside enum dr_db_type (a zeroed or raw value in the list) is a
 * caller bug: DR_ERR_INTERNAL. */
static dr_status params_from_args(struct db_params *p, const dr_db_arg *args,
				  size_t n, dr_error *err)
{
	params_alloc(p, n);
	for (size_t i = 0; i < n; i++) {
		const dr_db_arg *a = &args[i];

		switch (a->type) {
		case DB_TYPE_NULL:
			bind_bytes(p, i, MYSQL_TYPE_STRING, NULL, 0);
			break;
		case DB_TYPE_STR:
			bind_bytes(p, i, MYSQL_TYPE_STRING, a->s,
				   a->s ? strlen(a->s) : 0);
			break;
		case DB_TYPE_BLOB:
			bind_bytes(p, i, MYSQL_TYPE_BLOB, a->b.p, a->b.len);
			break;
		case DB_TYPE_INT:
			bind_int(p, i, a->i);
			break;
		case DB_TYPE_U64:
			bind_u64(p, i, a->u);
			break;
		case DB_TYPE_DBL:
			bind_double(p, i, a->d);
			break;
		default:
			params_free(p);
			memset(p, 0, sizeof(*p));
			return dr_fail(err, DR_ERR_INTERNAL, NULL,
				       "bad database parameter type %d at %zu",
				       (int)a->type, i);
		}
	}
	return DR_OK;
}

/* ------------------------------------------------------------------ */
/* Results */

void db_rows_free(dr_db_rows *rows)
{
	struct db_rows_box *box = (struct db_rows_box *)rows;

	if (!rows)
		return;
	free(rows->cells);
	free(rows->lens);
	free(box->text);
	free(box);
}

const char *db_cell(const dr_db_rows *rows, size_t row, size_t col)
{
	if (!rows || row >= rows->n_rows || col >= rows->n_cols)
		return NULL;
	return rows->cells[row * rows->n_cols + col];
}

/*
 * Store the result of the executed `st` and copy every row into a new
 * dr_db_rows (*out, the caller's). A statement without a result set gives
 * zero rows and columns. On failure fills *f and leaves *out alone.
 */
static int fetch_rows(MYSQL_STMT *st, dr_db_rows **out, struct db_fault *f)
{
	struct db_rows_box *box = dr_xcalloc(1, sizeof(*box));
	dr_db_rows *r = &box->rows;
	MYSQL_RES *meta = NULL;
	MYSQL_BIND *binds = NULL;
	unsigned long *lengths = NULL;
	my_bool *nulls = NULL, *errs = NULL;
	size_t *offs = NULL;
	size_t n_cells, row;
	dr_buf text;
	int rc = -1;

	dr_buf_init(&text, DB_MAX_RESULT_BYTES);
	if (mysql_stmt_store_result(st)) {
		fault_stmt(f, st, DB_PHASE_RESULT);
		goto err_box;
	}
	meta = mysql_stmt_result_metadata(st);
	if (!meta) {
		if (mysql_stmt_errno(st)) {
			fault_stmt(f, st, DB_PHASE_RESULT);
			goto err_free_result;
		}
		goto done; /* no result set: zero rows, zero columns */
	}
	r->n_cols = mysql_num_fields(meta);
	r->n_rows = (size_t)mysql_stmt_num_rows(st);
	if (r->n_cols && r->n_rows > SIZE_MAX / sizeof(char *) / r->n_cols) {
		fault_own(f, DR_ERR_TOO_LARGE, "database result too large");
		goto err_meta;
	}
	n_cells = r->n_rows * r->n_cols;
	if (n_cells) {
		r->cells = dr_xcalloc(n_cells, sizeof(*r->cells));
		r->lens = dr_xcalloc(n_cells, sizeof(*r->lens));
		offs = dr_xcalloc(n_cells, sizeof(*offs));
	}

	if (r->n_cols) {
		MYSQL_FIELD *fields = mysql_fetch_fields(meta);

		binds = dr_xcalloc(r->n_cols, sizeof(*binds));
		lengths = dr_xcalloc(r->n_cols, sizeof(*lengths));
		nulls = dr_xcalloc(r->n_cols, sizeof(*nulls));
		errs = dr_xcalloc(r->n_cols, sizeof(*errs));
		for (size_t i = 0; i < r->n_cols; i++) {
			unsigned long cap = fields[i].max_length + 1;

			if (cap < DB_MIN_COLUMN_BUF)
				cap = DB_MIN_COLUMN_BUF;
			binds[i].buffer_type = MYSQL_TYPE_STRING;
			binds[i].buffer = dr_xmalloc(cap);
			binds[i].buffer_length = cap;
			binds[i].length = &lengths[i];
			binds[i].is_null = &nulls[i];
			binds[i].error = &errs[i];
		}
		if (mysql_stmt_bind_result(st, binds)) {
			fault_stmt(f, st, DB_PHASE_RESULT);
			goto err_binds;
		}
	}

	for (row = 0;; row++) {
		int frc = mysql_stmt_fetch(st);
		int rebind = 0;

		if (frc == MYSQL_NO_DATA)
			break;
		if (frc != 0 && frc != MYSQL_DATA_TRUNCATED) {
			fault_stmt(f, st, DB_PHASE_RESULT);
			goto err_binds;
		}
		if (row >= r->n_rows) {
			fault_own(f, DR_ERR_INTERNAL,
				  "database returned more rows than stored");
			goto err_binds;
		}
		for (size_t i = 0; i < r->n_cols; i++) {
			size_t k = row * r->n_cols + i;
			unsigned long len = lengths[i];

			if (nulls[i]) {
				offs[k] = SIZE_MAX;
				continue;
			}
			if (len > binds[i].buffer_length) {
				/* Longer than max_length promised: fetch the
				 * column again into a buffer that fits. */
				binds[i].buffer =
					dr_xrealloc(binds[i].buffer, len + 1);
				binds[i].buffer_length = len + 1;
				if (mysql_stmt_fetch_column(st, &binds[i],
							    (unsigned)i, 0)) {
					fault_stmt(f, st, DB_PHASE_RESULT);
					goto err_binds;
				}
				rebind = 1;
			}
			offs[k] = text.len;
			r->lens[k] = len;
			if (dr_buf_append(&text, binds[i].buffer, len) ||
			    dr_buf_append(&text, "", 1)) {
				fault_own(f, DR_ERR_TOO_LARGE,
					  "database result too large");
				goto err_binds;
			}
		}
		if (rebind && mysql_stmt_bind_result(st, binds)) {
			fault_stmt(f, st, DB_PHASE_RESULT);
			goto err_binds;
		}
	}
	r->n_rows = row;
	for (size_t k = 0; k < r->n_rows * r->n_cols; k++)
		r->cells[k] = offs[k] == SIZE_MAX ? NULL : text.data + offs[k];

	for (size_t i = 0; i < r->n_cols; i++)
		free(binds[i].buffer);
	free(binds);
	free(lengths);
	free(nulls);
	free(errs);
	free(offs);
	mysql_free_result(meta);
done:
	mysql_stmt_free_result(st);
	box->text = text.data;
	*out = r;
	return 0;

err_binds:
	for (size_t i = 0; binds && i < r->n_cols; i++)
		free(binds[i].buffer);
	free(binds);
	free(lengths);
	free(nulls);
	free(errs);
err_meta:
	free(offs);
	mysql_free_result(meta);
err_free_result:
	mysql_stmt_free_result(st);
err_box:
	dr_buf_free(&text);
	free(r->cells);
	free(r->lens);
	free(box);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Running statements */

/*
 * Execute the prepared `st` with `p` and read what it returns. Returns 0,
 * or -1 with *f filled.
 */
static int stmt_run(dr_db *db, MYSQL_STMT *st, struct db_params *p,
		    int want_rows, uint64_t *affected, dr_db_rows **rows,
		    struct db_fault *f)
{
	if (mysql_stmt_param_count(st) != p->n) {
		char msg[96];

		snprintf(msg, sizeof(msg),
			 "statement takes %lu parameters, %zu given",
			 mysql_stmt_param_count(st), p->n);
		fault_own(f, DR_ERR_INTERNAL, msg);
		return -1;
	}
	if (p->n && mysql_stmt_bind_param(st, p->binds)) {
		fault_stmt(f, st, DB_PHASE_PREPARE);
		return -1;
	}
	if (mysql_stmt_execute(st)) {
		fault_stmt(f, st, DB_PHASE_EXECUTE);
		return -1;
	}
	if (want_rows && rows)
		return fetch_rows(st, rows, f);
	if (mysql_stmt_field_count(st) > 0) {
		/* A result nobody asked for: read and discard it. */
		if (mysql_stmt_store_result(st)) {
			fault_stmt(f, st, DB_PHASE_RESULT);
			return -1;
		}
		mysql_stmt_free_result(st);
	}
	if (affected)
		*affected = mysql_stmt_affected_rows(st);
	if (mysql_stmt_insert_id(st))
		db->last_insert_id = mysql_stmt_insert_id(st);
	return 0;
}

/*
 * Prepare (when needed) and execute `sql` once on the current connection:
 * `cached`, with the statement of its slot; otherwise with a statement
 * closed after the run. Returns 0, or -1 with *f filled.
 */
static int run_stmt_once(dr_db *db, const char *sql, int cached,
			 struct db_params *p, int want_rows,
			 uint64_t *affected, dr_db_rows **rows,
			 struct db_fault *f)
{
	struct db_slot *slot = cached ? slot_get(db, sql) : NULL;
	MYSQL_STMT *st = slot ? slot->stmt : NULL;
	int rc;

	if (!st) {
		my_bool on = 1;

		st = mysql_stmt_init(db->conn);
		if (!st) {
			fault_conn(f, db->conn, DB_PHASE_PREPARE);
			return -1;
		}
		mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &on);
		if (mysql_stmt_prepare(st, sql, strlen(sql))) {
			fault_stmt(f, st, DB_PHASE_PREPARE);
			mysql_stmt_close(st);
			return -1;
		}
		if (slot)
			slot->stmt = st;
	}
	rc = stmt_run(db, st, p, want_rows, affected, rows, f);
	if (!slot) {
		mysql_stmt_close(st);
	} else if (rc && f->phase == DB_PHASE_EXECUTE &&
		   is_stale_stmt(f->no)) {
		mysql_stmt_close(st);
		slot->stmt = NULL;
	}
	return rc;
}

/* Run a statement with the retry policy of the header comment; `read_only`
 * for db_query, which may also be retried after the answer was lost. */
static dr_status run_stmt(dr_db *db, const char *sql, int cached,
			  struct db_params *p, int read_only,
			  uint64_t *affected, dr_db_rows **rows,
			  dr_error *err)
{
	struct db_fault f;
	dr_status st;

	for (int attempt = 0;; attempt++) {
		st = conn_ready(db, 0, err);
		if (st != DR_OK)
			return st;
		if (run_stmt_once(db, sql, cached, p, read_only, affected,
				  rows, &f) == 0) {
			db->last_used = now_mono();
			return DR_OK;
		}
		if (!may_retry(db, &f, attempt, read_only))
			return fail_fault(db, &f, err);
		dr_log(DR_LOG_INFO, "event=db.retry errno=%u", f.no);
		if (is_conn_error(f.no))
			conn_drop(db);
	}
}

/* Run SQL text once; a result set is read and discarded. */
static int run_text_once(dr_db *db, const char *sql, struct db_fault *f)
{
	if (mysql_real_query(db->conn, sql, strlen(sql))) {
		fault_conn(f, db->conn, DB_PHASE_EXECUTE);
		return -1;
	}
	if (mysql_field_count(db->conn) > 0) {
		MYSQL_RES *res = mysql_store_result(db->conn);

		if (!res) {
			fault_conn(f, db->conn, DB_PHASE_RESULT);
			return -1;
		}
		mysql_free_result(res);
	}
	if (mysql_insert_id(db->conn))
		db->last_insert_id = mysql_insert_id(db->conn);
	return 0;
}

static dr_status run_text(dr_db *db, const char *sql, dr_error *err)
{
	struct db_fault f;
	dr_status st;

	for (int attempt = 0;; attempt++) {
		st = conn_ready(db, 0, err);
		if (st != DR_OK)
			return st;
		if (run_text_once(db, sql, &f) == 0) {
			db->last_used = now_mono();
			return DR_OK;
		}
		if (!may_retry(db, &f, attempt, 0))
			return fail_fault(db, &f, err);
		dr_log(DR_LOG_INFO, "event=db.retry errno=%u", f.no);
		conn_drop(db);
	}
}

/* ------------------------------------------------------------------ */
/* Public interface */

static dr_db *db_alloc(const dr_config *cfg, int select_db)
{
	dr_db *db;

	assert(cfg);
	db = dr_xcalloc(1, sizeof(*db));
	db->cfg = cfg;
	db->select_db = select_db;
	return db;
}

dr_db *db_new(const dr_config *cfg)
{
	return db_alloc(cfg, 1);
}

dr_db *db_new_server(const dr_config *cfg)
{
	return db_alloc(cfg, 0);
}

static void (*free_hook)(dr_db *db);

void db_set_free_hook(void (*fn)(dr_db *db))
{
	free_hook = fn;
}

void db_free(dr_db *db)
{
	if (!db)
		return;
	if (free_hook && db->conn && !db->in_tx)
		free_hook(db);
	conn_release(db);
	free(db->slots);
	free(db);
}

void db_disconnect(dr_db *db)
{
	if (!db)
		return;
	check_fork(db);
	conn_drop(db);
}

dr_status db_ping(dr_db *db, dr_error *err)
{
	dr_status st = conn_ready(db, 1, err);

	/* A failed ping dropped the connection; outside a transaction
	 * conn_ready connected again, so DR_OK means the server answers. */
	return st;
}

dr_status db_exec(dr_db *db, const char *sql, uint64_t *affected, dr_error *err,
		  const dr_db_arg *args, size_t n_args)
{
	struct db_params p;
	dr_status st;

	st = params_from_args(&p, args, n_args, err);
	if (st != DR_OK)
		return st;
	st = run_stmt(db, sql, 1, &p, 0, affected, NULL, err);
	params_free(&p);
	return st;
}

/* db_query() and db_query_uncached(): `cached` keeps the statement. */
static dr_status query_args(dr_db *db, const char *sql, int cached,
			    dr_db_rows **rows, dr_error *err,
			    const dr_db_arg *args, size_t n_args)
{
	struct db_params p;
	dr_status st;

	if (rows)
		*rows = NULL;
	st = params_from_args(&p, args, n_args, err);
	if (st != DR_OK)
		return st;
	st = run_stmt(db, sql, cached, &p, 1, NULL, rows, err);
	params_free(&p);
	return st;
}

dr_status db_query(dr_db *db, const char *sql, dr_db_rows **rows, dr_error *err,
		   const dr_db_arg *args, size_t n_args)
{
	return query_args(db, sql, 1, rows, err, args, n_args);
}

dr_status db_query_uncached(dr_db *db, const char *sql, dr_db_rows **rows,
			    dr_error *err, const dr_db_arg *args, size_t n_args)
{
	return query_args(db, sql, 0, rows, err, args, n_args);
}

dr_status db_query_seconds(dr_db *db, const char *sql, double *seconds,
			   dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	*seconds = -1;
	st = db_query(db, sql, &rows, err, DB_NOARGS);
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 1 && db_cell(rows, 0, 0)) {
		*seconds = strtod(db_cell(rows, 0, 0), NULL) / 1e6;
		if (*seconds < 0)
			*seconds = 0;
	}
	db_rows_free(rows);
	return DR_OK;
}

const char *db_sql_list(const char *tmpl, unsigned n, char **cache)
{
	size_t marks = 0, len;
	const char *p;
	char *out, *o;

	if (*cache)
		return *cache;
	for (p = strstr(tmpl, "(?*)"); p; p = strstr(p + 4, "(?*)"))
		marks++;
	len = strlen(tmpl) + marks * (3 * (size_t)n + 2) + 1;
	out = o = dr_xmalloc(len);
	for (p = tmpl; *p;) {
		if (strncmp(p, "(?*)", 4) != 0) {
			*o++ = *p++;
			continue;
		}
		*o++ = '(';
		for (unsigned i = 0; i < n; i++) {
			if (i)
				*o++ = ',';
			*o++ = '?';
		}
		*o++ = ')';
		p += 4;
	}
	*o = '\0';
	*cache = out;
	return out;
}

dr_status db_exec_text(dr_db *db, const char *sql, dr_error *err)
{
	return run_text(db, sql, err);
}

dr_status db_begin(dr_db *db, dr_error *err)
{
	dr_status st;

	check_fork(db);
	if (db->tx_abort != DR_OK)
		return tx_dead(db, err);
	if (db->in_tx)
		return dr_fail(err, DR_ERR_INTERNAL, NULL,
			       "transaction already open");
	st = run_text(db, "START TRANSACTION", err);
	if (st == DR_OK)
		db->in_tx = 1;
	return st;
}

/*
 * COMMIT. When the server refuses it on a live session the transaction is
 * rolled back here and the handle is usable at once; when the connection
 * was lost (before or during COMMIT: the outcome is then unknown) or the
 * transaction died of a deadlock, it stays failed until db_rollback().
 * Calling db_rollback() after any failed commit is always right.
 */
dr_status db_commit(dr_db *db, dr_error *err)
{
	struct db_fault f;
	dr_status st;

	check_fork(db);
	if (!db->in_tx)
		return dr_fail(err, DR_ERR_INTERNAL, NULL,
			       "no transaction to commit");
	if (db->tx_abort != DR_OK)
		return tx_dead(db, err);
	if (!db->conn) {
		/* Cannot happen: dropping the connection marks the
		 * transaction dead. */
		return dr_fail(err, DR_ERR_INTERNAL, NULL,
			       "transaction without a connection");
	}
	if (run_text_once(db, "COMMIT", &f) == 0) {
		db->last_used = now_mono();
		db->in_tx = 0;
		return DR_OK;
	}
	st = fail_fault(db, &f, err);
	if (db->tx_abort == DR_OK) {
		/* The server refused the commit but the session lives: end
		 * the transaction here so the handle is usable again. */
		db_rollback(db);
	}
	return st;
}

void db_rollback(dr_db *db)
{
	if (!db)
		return;
	check_fork(db);
	/* After a deadlock the session is alive and, after a lock wait
	 * timeout, even its transaction: ROLLBACK whenever there is a
	 * connection. A lost connection took its transaction with it. */
	if (db->in_tx && db->conn) {
		if (mysql_real_query(db->conn, "ROLLBACK", 8) == 0) {
			db->last_used = now_mono();
		} else {
			log_server_error(mysql_errno(db->conn),
					 mysql_error(db->conn));
			conn_release(db);
		}
	}
	db->in_tx = 0;
	db->tx_abort = DR_OK;
	db->tx_abort_code[0] = '\0';
}

int db_tx_again(dr_status st, const dr_error *err)
{
	return st == DR_ERR_DATABASE && err->retryable &&
	       strcmp(err->code, "deadlock") == 0;
}

int db_in_transaction(const dr_db *db)
{
	return db->in_tx;
}

uint64_t db_last_insert_id(dr_db *db)
{
	return db ? db->last_insert_id : 0;
}

/* The text of a db_insert_rows() statement of `n` rows. */
static char *rows_sql(const char *head, const char *row, unsigned n)
{
	size_t hl = strlen(head), rl = strlen(row);
	size_t len = hl + 8 + (size_t)n * (rl + 1) + 1;
	char *out = dr_xmalloc(len), *o = out;

	memcpy(o, head, hl);
	o += hl;
	memcpy(o, " VALUES ", 8);
	o += 8;
	for (unsigned i = 0; i < n; i++) {
		if (i)
			*o++ = ',';
		memcpy(o, row, rl);
		o += rl;
	}
	*o = '\0';
	return out;
}

/* Bytes the `n` parameters at `a` send (numbers as 8). */
static size_t args_bytes(const dr_db_arg *a, size_t n)
{
	size_t total = 0;

	for (size_t i = 0; i < n; i++) {
		if (a[i].type == DB_TYPE_STR)
			total += a[i].s ? strlen(a[i].s) : 0;
		else if (a[i].type == DB_TYPE_BLOB)
			total += a[i].b.p ? a[i].b.len : 0;
		else
			total += 8;
	}
	return total;
}

dr_status db_insert_rows(dr_db *db, const char *head, const char *row,
			 size_t per, const dr_db_arg *args, size_t n_rows,
			 char *cache[3], dr_error *err)
{
	static const unsigned sizes[3] = { DB_ROWS_CHUNK, 10, 1 };
	size_t done = 0;

	while (done < n_rows) {
		dr_status st;
		int k = 0;

		/* The most rows that are there and fit the byte budget; one
		 * row always goes, whatever its size. */
		while (k < 2 && (n_rows - done < sizes[k] ||
				 args_bytes(args + done * per, sizes[k] * per) >
					 DB_ROWS_BYTES))
			k++;
		if (!cache[k])
			cache[k] = rows_sql(head, row, sizes[k]);
		st = db_exec(db, cache[k], NULL, err, args + done * per,
			     sizes[k] * per);
		if (st != DR_OK)
			return st;
		done += sizes[k];
	}
	return DR_OK;
}
