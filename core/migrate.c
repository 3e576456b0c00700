/*
 * migrate.c - apply migrations/NNNN_name.sql in order (see migrate.h).
 *
 * A migration file is named with at least four digits, an underscore, a
 * name and ".sql" (0001_init.sql); other files in the folder are ignored,
 * two files with the same number are refused. Its text is split into
 * statements at a ';' that ends a line; lines starting with "--" and blank
 * lines are dropped; there is no support for ';' at the end of a line inside
 * a string literal, for DELIMITER, or for '#' comments (our files need
 * none). Each statement runs with db_exec_text(), then the file's version,
 * name and SHA-256 are recorded in schema_migrations.
 *
 * Safety checks before anything is applied: a database recording a version
 * above the highest file is refused (this darkroom is older than the
 * schema), as is a recorded migration whose file is gone or whose checksum
 * differs (someone edited a migration after it was applied: the database
 * no longer matches what the files describe). A lock (GET_LOCK) keeps two
 * concurrent `darkroom migrate` runs from interleaving; it lives on the
 * connection, so it is lost if the connection drops half-way.
 *
 * Partial failure. MariaDB commits every DDL statement at once, so a
 * migration cannot be rolled back: when statement k of a file fails,
 * statements 1..k-1 stay applied and the file is not recorded. The error
 * names the file, the statement number and its line, and migrate prints the
 * statement's first line. The cure is a convention, not machinery: every
 * migration is written so that running it again after a partial failure is
 * harmless, with the IF [NOT] EXISTS forms MariaDB has for CREATE TABLE,
 * ALTER TABLE ... ADD COLUMN / ADD INDEX / DROP ..., CREATE INDEX, and with
 * data changes whose WHERE clause skips rows already changed. Then fixing
 * the cause and running migrate again finishes the file. A statement that
 * is not re-runnable (a plain ALTER that renames a column, say) needs a
 * human after a failure; keep such statements alone in their own file.
 *
 * migrate connects with a long read timeout (MIGRATE_IO_TIMEOUT): an ALTER
 * TABLE on a big table may run for minutes, and giving up on the client
 * side would not stop it on the server.
 */
#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#include "buf.h"
#include "db.h"
#include "digest.h"

/* Largest migration file we read. */
#define MIGRATE_MAX_FILE ((size_t)16 << 20)
/* Most migration files in one folder. */
#define MIGRATE_MAX_FILES 100000
/* Read/write timeout of the migration connection, seconds. */
#define MIGRATE_IO_TIMEOUT 3600.0
/* Seconds to wait for another migrate run to finish. */
#define MIGRATE_LOCK_WAIT 30
/* How much of a failing statement's first line is printed. */
#define MIGRATE_SHOW_STMT 100

struct migration {
	unsigned version;
	char *file; /* "0001_init.sql" */
	char *text; /* the whole file, NUL-terminated */
	size_t len;
	char checksum[65]; /* SHA-256, lowercase hex */
};

struct migration_set {
	struct migration *m;
	size_t n;
};

static void set_free(struct migration_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		free(set->m[i].file);
		free(set->m[i].text);
	}
	free(set->m);
	set->m = NULL;
	set->n = 0;
}

dr_status migrate_quote_ident(dr_buf *b, const char *name)
{
	size_t start = b->len;
	dr_status st;

	if (!name || !*name)
		return DR_ERR_INVALID;
	st = dr_buf_append(b, "`", 1);
	for (const char *p = name; st == DR_OK && *p; p++)
		st = *p == '`' ? dr_buf_append(b, "``", 2)
			       : dr_buf_append(b, p, 1);
	if (st == DR_OK)
		st = dr_buf_append(b, "`", 1);
	if (st != DR_OK)
		dr_buf_truncate(b, start);
	return st;
}

/*
 * Whether `name` is a migration file name: 4+ digits, '_', at least one
 * character, ".sql". Returns 1 with *version set, 0 for other files, -1
 * for a number out of range (0 or above INT UNSIGNED).
 */
static int parse_file_name(const char *name, unsigned *version)
{
	uint64_t v = 0;
	size_t nd = 0, len = strlen(name);

	while (name[nd] >= '0' && name[nd] <= '9') {
		if (v <= UINT32_MAX)
			v = v * 10 + (uint64_t)(name[nd] - '0');
		nd++;
	}
	if (nd < 4 || name[nd] != '_' || len < nd + 1 + 1 + 4 ||
	    strcmp(name + len - 4, ".sql") != 0)
		return 0;
	if (v == 0 || v > UINT32_MAX)
		return -1;
	*version = (unsigned)v;
	return 1;
}

/* Read the file `dir`/`file` into m->text. */
static dr_status read_migration(const char *dir, struct migration *m,
				dr_error *err)
{
	char path[4096];
	char chunk[65536];
	dr_buf b;
	ssize_t n;
	int fd, r;

	r = snprintf(path, sizeof(path), "%s/%s", dir, m->file);
	if (r < 0 || (size_t)r >= sizeof(path))
		return dr_fail(err, DR_ERR_IO, NULL, "%s/%s: path too long",
			       dir, m->file);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return dr_fail(err, DR_ERR_IO, NULL, "%s: %s", path,
			       strerror(errno));
	dr_buf_init(&b, MIGRATE_MAX_FILE);
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			dr_fail(err, DR_ERR_IO, NULL, "%s: %s", path,
				strerror(errno));
			goto err_buf;
		}
		if (n == 0)
			break;
		if (dr_buf_append(&b, chunk, (size_t)n) != DR_OK) {
			dr_fail(err, DR_ERR_TOO_LARGE, NULL,
				"%s: larger than %zu bytes", path,
				MIGRATE_MAX_FILE);
			goto err_buf;
		}
	}
	close(fd);
	m->len = b.len;
	m->text = dr_buf_steal(&b);
	digest_sha256_hex(m->text, m->len, m->checksum);
	return DR_OK;

err_buf:
	dr_buf_free(&b);
	close(fd);
	return err ? err->status : DR_ERR_IO;
}

static int cmp_version(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;

	return x->version < y->version ? -1 : x->version > y->version;
}

/* List, read and sort the migrations of `dir`. */
static dr_status load_migrations(const char *dir, struct migration_set *set,
				 dr_error *err)
{
	size_t cap = 0;
	struct dirent *de;
	DIR *d;
	dr_status st;

	set->m = NULL;
	set->n = 0;
	d = opendir(dir);
	if (!d)
		return dr_fail(err, DR_ERR_IO, NULL,
			       "cannot open migrations folder %s: %s", dir,
			       strerror(errno));
	for (;;) {
		unsigned version;
		int r;

		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno) {
				st = dr_fail(err, DR_ERR_IO, NULL,
					     "cannot read migrations folder "
					     "%s: %s",
					     dir, strerror(errno));
				goto err_set;
			}
			break;
		}
		r = parse_file_name(de->d_name, &version);
		if (r == 0)
			continue;
		if (r < 0) {
			st = dr_fail(err, DR_ERR_INVALID, NULL,
				     "%s/%s: migration number out of range "
				     "(1..4294967295)",
				     dir, de->d_name);
			goto err_set;
		}
		if (set->n == MIGRATE_MAX_FILES) {
			st = dr_fail(err, DR_ERR_TOO_LARGE, NULL,
				     "%s: more than %d migrations", dir,
				     MIGRATE_MAX_FILES);
			goto err_set;
		}
		if (set->n == cap) {
			cap = cap ? cap * 2 : 16;
			set->m = dr_xrealloc(set->m, cap * sizeof(*set->m));
		}
		memset(&set->m[set->n], 0, sizeof(set->m[set->n]));
		set->m[set->n].version = version;
		set->m[set->n].file = dr_xstrdup(de->d_name);
		set->n++;
	}
	closedir(d);
	d = NULL;

	if (set->n == 0)
		return dr_fail(err, DR_ERR_IO, NULL,
			       "no migrations (NNNN_name.sql) in %s", dir);
	qsort(set->m, set->n, sizeof(*set->m), cmp_version);
	for (size_t i = 1; i < set->n; i++) {
		if (set->m[i].version == set->m[i - 1].version) {
			st = dr_fail(err, DR_ERR_INVALID, NULL,
				     "%s: two migrations numbered %u: %s and "
				     "%s",
				     dir, set->m[i].version, set->m[i - 1].file,
				     set->m[i].file);
			goto err_set;
		}
	}
	for (size_t i = 0; i < set->n; i++) {
		st = read_migration(dir, &set->m[i], err);
		if (st != DR_OK)
			goto err_set;
	}
	return DR_OK;

err_set:
	if (d)
		closedir(d);
	set_free(set);
	return st;
}

static const struct migration *find_version(const struct migration_set *set,
					    unsigned version)
{
	struct migration key = { .version = version };

	return bsearch(&key, set->m, set->n, sizeof(*set->m), cmp_version);
}

/* Print the first line of a statement, shortened, after a failure. */
static void show_statement(FILE *out, const char *file, unsigned no,
			   unsigned line, const char *sql)
{
	size_t n = strcspn(sql, "\n");

	if (!out)
		return;
	if (n > MIGRATE_SHOW_STMT)
		n = MIGRATE_SHOW_STMT;
	fprintf(out, "failed %s: statement %u (line %u): %.*s%s\n", file, no,
		line, (int)n, sql, sql[n] ? "..." : "");
}

/* Run one statement of `m`; on failure name the file and the statement. */
static dr_status run_statement(dr_db *db, const struct migration *m,
			       dr_buf *sql, unsigned no, unsigned line,
			       FILE *out, dr_error *err)
{
	dr_error e;
	dr_status st;

	/* Drop the terminating ';' and trailing white space. */
	while (sql->len && (sql->data[sql->len - 1] == ';' ||
			    sql->data[sql->len - 1] == '\n' ||
			    sql->data[sql->len - 1] == ' ' ||
			    sql->data[sql->len - 1] == '\t' ||
			    sql->data[sql->len - 1] == '\r'))
		sql->data[--sql->len] = '\0';
	if (sql->len == 0)
		return DR_OK;

	dr_error_clear(&e);
	st = db_exec_text(db, sql->data, &e);
	if (st == DR_OK)
		return DR_OK;
	show_statement(out, m->file, no, line, sql->data);
	st = st == DR_ERR_UNAVAILABLE ? DR_ERR_UNAVAILABLE : DR_ERR_DATABASE;
	dr_fail(err, st, NULL,
		"%s: statement %u (line %u) failed: %s; the statements before "
		"it stay applied (DDL commits at once): fix the cause and run "
		"migrate again",
		m->file, no, line, e.message);
	if (err)
		err->retryable = e.retryable;
	return st;
}

/* Split `m` into statements and run them in order. */
static dr_status apply_file(dr_db *db, const struct migration *m, FILE *out,
			    dr_error *err)
{
	const char *p = m->text, *end = m->text + m->len;
	unsigned line = 0, start_line = 0, no = 0;
	dr_status st = DR_OK;
	dr_buf sql;

	dr_buf_init(&sql, MIGRATE_MAX_FILE);
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol ? eol + 1 : end;
		const char *line_start = p, *a = p, *z = eol ? eol : end;

		line++;
		p = next;
		while (a < z && (*a == ' ' || *a == '\t' || *a == '\r'))
			a++;
		while (z > a &&
		       (z[-1] == ' ' || z[-1] == '\t' || z[-1] == '\r'))
			z--;
		if (a == z || (z - a >= 2 && a[0] == '-' && a[1] == '-'))
			continue;
		if (sql.len == 0)
			start_line = line;
		/* The line as written (indentation kept, trailing space
		 * dropped). Cannot fail: a statement is shorter than the
		 * file. */
		if (dr_buf_append(&sql, line_start, (size_t)(z - line_start)) ||
		    dr_buf_append(&sql, "\n", 1)) {
			st = dr_fail(err, DR_ERR_INTERNAL, NULL,
				     "%s: statement too long", m->file);
			goto out;
		}
		if (z[-1] == ';') {
			st = run_statement(db, m, &sql, ++no, start_line, out,
					   err);
			if (st != DR_OK)
				goto out;
			dr_buf_reset(&sql);
		}
	}
	if (sql.len)
		st = run_statement(db, m, &sql, ++no, start_line, out, err);
out:
	dr_buf_free(&sql);
	return st;
}

/* Create the database (on a connection without one selected). */
static dr_status create_database(const dr_config *cfg, dr_error *err)
{
	dr_buf sql;
	dr_db *db;
	dr_status st;

	/* The name is checked (config_db_name_valid) and quoted as an
	 * identifier as well: statements are never built from raw text. */
	dr_buf_init(&sql, 512);
	st = dr_buf_puts(&sql, "CREATE DATABASE IF NOT EXISTS ");
	if (st == DR_OK)
		st = migrate_quote_ident(&sql, cfg->database.name);
	if (st == DR_OK)
		st = dr_buf_puts(&sql, " CHARACTER SET utf8mb4"
				       " COLLATE utf8mb4_unicode_ci");
	if (st != DR_OK) {
		dr_buf_free(&sql);
		return dr_fail(err, DR_ERR_CONFIG, NULL,
			       "database name cannot be quoted");
	}
	db = db_new_server(cfg);
	st = db_exec_text(db, sql.data, err);
	db_free(db);
	dr_buf_free(&sql);
	return st;
}

/* Wait for other migrate runs on the same database. */
static dr_status take_lock(dr_db *db, const char *name, dr_error *err)
{
	char lock[65];
	dr_db_rows *rows = NULL;
	const char *v;
	dr_status st;

	snprintf(lock, sizeof(lock), "darkroom.migrate.%s", name);
	st = db_query(
		db, "SELECT GET_LOCK(?, ?)", &rows, err,
		DB_ARGS(DB_STR(lock), DB_INT((int64_t)MIGRATE_LOCK_WAIT)));
	if (st != DR_OK)
		return st;
	v = db_cell(rows, 0, 0);
	if (!v || strcmp(v, "1") != 0)
		st = dr_fail(err, DR_ERR_CONFLICT, NULL,
			     "another migrate run holds the lock on database "
			     "%s (waited %d s)",
			     name, MIGRATE_LOCK_WAIT);
	db_rows_free(rows);
	return st;
}

/*
 * Compare what the database recorded with the files: refuse a newer
 * database, a recorded migration without its file, and an edited file.
 * Marks recorded files in `done` (indexed like set->m).
 */
static dr_status check_recorded(dr_db *db, const struct migration_set *set,
				unsigned char *done, unsigned *db_version,
				dr_error *err)
{
	unsigned top = set->m[set->n - 1].version;
	dr_db_rows *rows = NULL;
	dr_status st;

	*db_version = 0;
	st = db_query(db,
		      "SELECT version, name, checksum FROM schema_migrations "
		      "ORDER BY version",
		      &rows, err, DB_NOARGS);
	if (st != DR_OK)
		return st;
	if (rows->n_rows) {
		const char *last = db_cell(rows, rows->n_rows - 1, 0);

		*db_version = (unsigned)strtoul(last ? last : "0", NULL, 10);
	}
	if (*db_version > top) {
		st = dr_fail(err, DR_ERR_CONFLICT, "schema_too_new",
			     "database schema version %u is newer than this "
			     "darkroom (%u); upgrade darkroom",
			     *db_version, top);
		goto out;
	}
	for (size_t r = 0; r < rows->n_rows; r++) {
		const char *vs = db_cell(rows, r, 0);
		const char *name = db_cell(rows, r, 1);
		const char *sum = db_cell(rows, r, 2);
		unsigned v = (unsigned)strtoul(vs ? vs : "0", NULL, 10);
		const struct migration *m = find_version(set, v);

		if (!m) {
			st = dr_fail(err, DR_ERR_CONFLICT, "schema_mismatch",
				     "database records migration %u (%s) but "
				     "there is no file for it",
				     v, name ? name : "?");
			goto out;
		}
		if (!sum || strcmp(sum, m->checksum) != 0) {
			st = dr_fail(err, DR_ERR_CONFLICT, "schema_mismatch",
				     "migration %s was changed after it was "
				     "applied (checksum differs from the "
				     "database's)",
				     m->file);
			goto out;
		}
		done[m - set->m] = 1;
	}
out:
	db_rows_free(rows);
	return st;
}

dr_status migrate_run(const dr_config *cfg, const char *dir, FILE *out,
		      dr_error *err)
{
	struct migration_set set;
	unsigned char *done = NULL;
	unsigned db_version, applied = 0;
	dr_config local;
	dr_db *db;
	dr_status st;

	if (!config_db_name_valid(cfg->database.name))
		return dr_fail(err, DR_ERR_CONFIG, NULL,
			       "database name must be 1 to %d letters, digits "
			       "or underscores",
			       DR_DB_NAME_MAX);
	st = load_migrations(dir, &set, err);
	if (st != DR_OK)
		return st;

	/* The same settings with room for long DDL (the config stays
	 * untouched: this copy is shallow and lives on our stack). */
	local = *cfg;
	if (local.database.io_timeout < MIGRATE_IO_TIMEOUT)
		local.database.io_timeout = MIGRATE_IO_TIMEOUT;

	st = create_database(&local, err);
	if (st != DR_OK)
		goto err_set;
	db = db_new(&local);
	st = take_lock(db, local.database.name, err);
	if (st != DR_OK)
		goto err_db;
	st = db_exec_text(db,
			  "CREATE TABLE IF NOT EXISTS schema_migrations ("
			  "version INT UNSIGNED NOT NULL PRIMARY KEY, "
			  "name VARCHAR(255) NOT NULL, "
			  "checksum CHAR(64) CHARACTER SET ascii NOT NULL, "
			  "applied_at DATETIME(6) NOT NULL"
			  ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
			  err);
	if (st != DR_OK)
		goto err_db;

	done = dr_xcalloc(set.n, 1);
	st = check_recorded(db, &set, done, &db_version, err);
	if (st != DR_OK)
		goto err_done;

	for (size_t i = 0; i < set.n; i++) {
		const struct migration *m = &set.m[i];

		if (done[i])
			continue;
		st = apply_file(db, m, out, err);
		if (st != DR_OK)
			goto err_done;
		st = db_exec(db,
			     "INSERT INTO schema_migrations "
			     "(version, name, checksum, applied_at) "
			     "VALUES (?, ?, ?, NOW(6))",
			     NULL, err,
			     DB_ARGS(DB_U64((uint64_t)m->version),
				     DB_STR(m->file), DB_STR(m->checksum)));
		if (st != DR_OK)
			goto err_done;
		if (out)
			fprintf(out, "applied %s\n", m->file);
		applied++;
	}
	if (applied == 0 && out)
		fprintf(out, "database is up to date (version %u)\n",
			db_version);

err_done:
	free(done);
err_db:
	db_free(db);
err_set:
	set_free(&set);
	return st;
}
