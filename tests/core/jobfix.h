/*
 * jobfix.h - job rows for the database tests of jobstate, news, callback
 * and pipeline: make a job in a given state, read its columns back, count its
 * events.
 * Header-only (static inline); include after cmocka.h.
 */
#ifndef DR_TEST_JOBFIX_H
#define DR_TEST_JOBFIX_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dbserver.h"
#include "ids.h"

/* What a test job looks like when made. */
typedef struct jobfix {
	const char *status;     /* "queued"… */
	const char *step;       /* "submit", "poll", "persist", "done" */
	uint64_t lease_version;
	const char *prediction_id; /* or NULL */
	const char *callback_url;  /* or NULL */
	const char *error_step;    /* or NULL */
	int attempts;
	int submitted;          /* submitted_at set (now) */
	int pending_outputs;    /* pending output rows */
} jobfix;

/* Insert a job of adapter "fake" as `f` says; its new id goes to `id`. */
static inline void jobfix_make(dr_db *db, const jobfix *f,
			       char id[DR_JOB_ID_LEN + 1])
{
	dr_error err;

	assert_ok(ids_new_job_id(id), err);
	assert_ok(
		db_exec(db,
			"INSERT INTO jobs (id, status, step, adapter, model,"
			" input, renditions, callback_url, prediction_id,"
			" error_step, attempts, lease_version, lease_owner,"
			" submitted_at, run_at, created_at, updated_at)"
			" VALUES (?, ?, ?, 'fake', 'm', '{}', '[]', ?, ?, ?,"
			" ?, ?, 'test', IF(?, NOW(6), NULL), NOW(6), NOW(6),"
			" NOW(6))",
			NULL, &err,
			DB_ARGS(DB_STR(id), DB_STR(f->status),
				DB_STR(f->step ? f->step : "submit"),
				DB_STR(f->callback_url),
				DB_STR(f->prediction_id), DB_STR(f->error_step),
				DB_INT((int64_t)f->attempts),
				DB_U64(f->lease_version),
				DB_INT((int64_t)f->submitted))),
		err);
	for (int i = 0; i < f->pending_outputs; i++)
		assert_ok(db_exec(db,
				  "INSERT INTO outputs (job_id, idx, kind,"
				  " source, source_kind, state, created_at)"
				  " VALUES (?, ?, 'file', 'https://x.test/a',"
				  " 'url', 'pending', NOW(6))",
				  NULL, &err,
				  DB_ARGS(DB_STR(id), DB_INT((int64_t)i))),
			  err);
}

/* Column (or expression) `col` of the row of `table` whose id is `id`, as
 * text (malloc), "(null)" for SQL NULL; the row must exist. Table and
 * column are pasted into the query: tests pass literals. */
static inline char *jobfix_cell(dr_db *db, const char *table, const char *id,
				const char *col)
{
	char sql[400];
	dr_db_rows *rows = NULL;
	dr_error err;
	char *v;

	snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE id = ?", col,
		 table);
	assert_ok(db_query_uncached(db, sql, &rows, &err, DB_ARGS(DB_STR(id))),
		  err);
	assert_int_equal(rows->n_rows, 1);
	v = strdup(db_cell(rows, 0, 0) ? db_cell(rows, 0, 0) : "(null)");
	db_rows_free(rows);
	return v;
}

/* Column `col` of job `id` as text (malloc), "(null)" for SQL NULL. */
static inline char *jobfix_col(dr_db *db, const char *id, const char *col)
{
	return jobfix_cell(db, "jobs", id, col);
}

/* Assert column `col` of job `id` reads `want`. */
#define assert_col(db, id, col, want)                                          \
	do {                                                                   \
		char *v_ = jobfix_col((db), (id), (col));                      \
		assert_string_equal(v_, (want));                               \
		free(v_);                                                      \
	} while (0)

/* Column (or expression) `col` of job `id`'s latest callback delivery
 * as text (malloc), "(null)" for SQL NULL, "(none)" when it has none. */
static inline char *jobfix_cb(dr_db *db, const char *id, const char *col)
{
	char sql[400];
	dr_db_rows *rows = NULL;
	dr_error err;
	char *v;

	snprintf(sql, sizeof(sql),
		 "SELECT %s FROM callback_deliveries WHERE job_id = ?"
		 " ORDER BY created_at DESC, id DESC LIMIT 1",
		 col);
	assert_ok(db_query_uncached(db, sql, &rows, &err, DB_ARGS(DB_STR(id))),
		  err);
	if (rows->n_rows == 0)
		v = strdup("(none)");
	else
		v = strdup(db_cell(rows, 0, 0) ? db_cell(rows, 0, 0)
					       : "(null)");
	db_rows_free(rows);
	return v;
}

/* Assert column `col` of job `id`'s latest delivery reads `want`. */
#define assert_cb(db, id, col, want)                                           \
	do {                                                                   \
		char *v_ = jobfix_cb((db), (id), (col));                       \
		assert_string_equal(v_, (want));                               \
		free(v_);                                                      \
	} while (0)

/* End job `id` now (completed_at, unless set) and give it the pending
 * delivery of that end after `attempts` failed tries, the way
 * core/jobstate.c opens it (the same webhook-id). */
static inline void jobfix_delivery(dr_db *db, const char *id, int attempts)
{
	dr_error err;

	assert_ok(db_exec(db,
			  "UPDATE jobs SET completed_at ="
			  " COALESCE(completed_at, NOW(6)) WHERE id = ?",
			  NULL, &err, DB_ARGS(DB_STR(id))),
		  err);
	assert_ok(db_exec(db,
			  "INSERT INTO callback_deliveries (id, type, job_id,"
			  " url, state, attempts, next_at, created_at)"
			  " SELECT CONCAT('msg_', id, '_',"
			  " REPLACE(UNIX_TIMESTAMP(completed_at), '.', '_')),"
			  " CONCAT('job.', status), id, callback_url,"
			  " 'pending', ?, NOW(6), NOW(6) FROM jobs"
			  " WHERE id = ?",
			  NULL, &err,
			  DB_ARGS(DB_INT((int64_t)attempts), DB_STR(id))),
		  err);
}

/* A count from `sql` with one string parameter `id`. */
static inline long jobfix_count(dr_db *db, const char *sql, const char *id)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	long n;

	assert_ok(db_query_uncached(db, sql, &rows, &err, DB_ARGS(DB_STR(id))),
		  err);
	n = strtol(db_cell(rows, 0, 0), NULL, 10);
	db_rows_free(rows);
	return n;
}

/* Events of job `id`, all kinds. */
static inline long jobfix_events(dr_db *db, const char *id)
{
	return jobfix_count(db,
			    "SELECT COUNT(*) FROM job_events WHERE job_id = ?",
			    id);
}

/* The last event of job `id` as "kind from>to detail" (malloc), with
 * "-" for NULL parts. */
static inline char *jobfix_last_event(dr_db *db, const char *id)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	char buf[1200];

	assert_ok(
		db_query_uncached(db,
				  "SELECT kind, from_status, to_status, detail"
				  " FROM job_events WHERE job_id = ?"
				  " ORDER BY id DESC LIMIT 1",
				  &rows, &err, DB_ARGS(DB_STR(id))),
		err);
	assert_int_equal(rows->n_rows, 1);
	snprintf(buf, sizeof(buf), "%s %s>%s %s", db_cell(rows, 0, 0),
		 db_cell(rows, 0, 1) ? db_cell(rows, 0, 1) : "-",
		 db_cell(rows, 0, 2) ? db_cell(rows, 0, 2) : "-",
		 db_cell(rows, 0, 3) ? db_cell(rows, 0, 3) : "-");
	db_rows_free(rows);
	return strdup(buf);
}

#endif
