/*
 * events.h - reading a job's event log (job_events) for operators:
 * `darkroom jobs show`.
 *
 * Read-only and separate from jobs.c, which writes the log; the API does
 * not expose events, so this is the one reader.
 */
#ifndef DR_EVENTS_H
#define DR_EVENTS_H

#include "db.h"
#include "error.h"

/* Columns of each row of events_list(), in order. */
enum {
	DR_EVENT_AT,     /* "YYYY-MM-DD HH:MM:SS.ffffff" UTC */
	DR_EVENT_KIND,   /* "created", "status", "submit", ... */
	DR_EVENT_FROM,   /* status before, or NULL */
	DR_EVENT_TO,     /* status after, or NULL */
	DR_EVENT_DETAIL  /* JSON text, or NULL */
};

/* Every event of job `id`, oldest first, into *rows (caller frees with
 * db_rows_free). No rows for an unknown job. */
dr_status events_list(dr_db *db, const char *id, dr_db_rows **rows,
		      dr_error *err) DR_WARN_UNUSED;

#endif
