/*
 * outputs.h - searching the output index (GET /v1/outputs).
 *
 * Every stored output with its metadata and renditions, newest first,
 * filtered by model, adapter, sha256, job metadata keys and values (all
 * of them), a time range, and text (`q`: text outputs and prompts,
 * MariaDB FULLTEXT).
 */
#ifndef DR_OUTPUTS_H
#define DR_OUTPUTS_H

#include "buf.h"
#include "db.h"
#include "error.h"
#include "jobs.h"

typedef struct dr_output_filter {
	const char *model, *adapter, *sha256;
	dr_metadata_filter meta[DR_MAX_METADATA_FILTERS]; /* all apply */
	size_t n_meta; /* checked with jobs_check_metadata_filters() */
	const char *since, *until; /* "YYYY-MM-DD HH:MM:SS.ffffff" UTC */
	const char *q;
	const char *cursor; /* output id (decimal) to continue below */
	int limit;	    /* 1..100 */
	char since_text[48], until_text[48]; /* since/until's storage */
} dr_output_filter;

/*
 * Read the filters of an output search (model, adapter, sha256, since,
 * until, q, limit, cursor, metadata.KEY; see CONTRACT) from name/value
 * pairs into *f, checked: the one validation of GET /v1/outputs and
 * `darkroom outputs`. *f points into args (since and until into f
 * itself). On DR_ERR_INVALID (code "invalid_parameter"), *field names the
 * filter and err->message says why, starting with "<field>: ", as
 * jobs_filter_args() does.
 */
dr_status outputs_filter_parse(const dr_filter_arg *args, size_t n,
			       dr_output_filter *f, const char **field,
			       dr_error *err) DR_WARN_UNUSED;

/* Append {"data": [...], "next_cursor": ...}; each item is an output
 * object (CONTRACT §2) plus job_id, model, adapter and created_at. Each
 * `url` is made from its key through `sink`, the active sink (borrowed,
 * or NULL), as jobs_append_output() says. */
dr_status outputs_search(dr_db *db, const struct dr_instance *sink,
			 const dr_output_filter *f, dr_buf *out,
			 dr_error *err) DR_WARN_UNUSED;

/* Convert an ISO 8601 UTC time ("2026-11-21T10:00:00Z", fractions and
 * "+00:00" allowed; a date alone means its midnight) into the database
 * form in `out` (48 bytes). -1 when it is not such a time. */
int outputs_parse_time(const char *iso, char out[48]);

#endif
