/*
 * outputs.c - the output index search (see outputs.h).
 */
#include "outputs.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "jsonutil.h"

enum {
	F_MODEL = 1 << 0,
	F_ADAPTER = 1 << 1,
	F_SHA = 1 << 2,
	F_SINCE = 1 << 3,
	F_UNTIL = 1 << 4,
	F_Q = 1 << 5,
	F_CURSOR = 1 << 6,
	F_ALL = 1 << 7
};

/* The search for a combination of filters and a number of metadata
 * filters, appended to `sql`. Its parameters: model, adapter, sha256,
 * the metadata keys and values, since, until, q twice, cursor (those
 * present), and the limit. */
static dr_status search_sql(dr_buf *sql, unsigned mask, size_t n_meta)
{
	dr_status st = dr_buf_printf(
		sql,
		"SELECT " DR_OUTPUT_COLUMNS ", o.job_id, j.model,"
		" j.adapter, o.created_at FROM outputs o JOIN jobs j"
		" ON j.id = o.job_id WHERE o.state = 'stored'%s%s%s",
		mask & F_MODEL ? " AND j.model = ?" : "",
		mask & F_ADAPTER ? " AND j.adapter = ?" : "",
		mask & F_SHA ? " AND o.sha256 = ?" : "");

	if (st == DR_OK)
		st = jobs_metadata_sql(sql, "o.job_id", n_meta);
	if (st == DR_OK)
		st = dr_buf_printf(
			sql, "%s%s%s%s ORDER BY o.id DESC LIMIT ?",
			mask & F_SINCE ? " AND o.created_at >= ?" : "",
			mask & F_UNTIL ? " AND o.created_at < ?" : "",
			mask & F_Q ? " AND (MATCH(o.text) AGAINST (?) OR"
				     " MATCH(j.prompt) AGAINST (?))"
				   : "",
			mask & F_CURSOR ? " AND o.id < ?" : "");
	return st;
}

static char *search_cache[F_ALL]; /* search_sql() per mask, no metadata */

int outputs_parse_time(const char *iso, char out[48])
{
	int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
	char frac[7] = "000000";
	const char *p;

	if (sscanf(iso, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
		return -1;
	p = iso + 10;
	if (*p == 'T' || *p == ' ') {
		if (sscanf(p + 1, "%2d:%2d:%2d%n", &h, &mi, &sec, &n) != 3 ||
		    n != 8)
			return -1;
		p += 9;
		if (*p == '.') {
			size_t k = 0;

			for (p++; *p >= '0' && *p <= '9'; p++)
				if (k < 6)
					frac[k++] = *p;
		}
		if (*p == 'Z')
			p++;
		else if (strcmp(p, "+00:00") == 0)
			p += 6;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 ||
	    mi < 0 || mi > 59 || sec < 0 || sec > 60 || y < 1970 || y > 9999)
		return -1;
	snprintf(out, 48, "%04d-%02d-%02d %02d:%02d:%02d.%s", y, mo, d, h, mi,
		 sec, frac);
	return 0;
}

#define TIME_RULE "an ISO 8601 UTC time, e.g. 2026-11-21T10:00:00Z"

static int is_sha256(const char *s)
{
	return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* An output cursor: the decimal id of the last output of a page. */
static int is_cursor(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= 20 && strspn(s, "0123456789") == n;
}

dr_status outputs_filter_parse(const dr_filter_arg *args, size_t n,
			       dr_output_filter *f, const char **field,
			       dr_error *err)
{
	static const char *const names[] = {"model", "adapter", "sha256",
					    "since", "until",	"q",
					    "limit", "cursor",	NULL};
	const char *v[8];
	dr_status st;

	memset(f, 0, sizeof(*f));
	st = jobs_filter_args(args, n, names, v, f->meta, &f->n_meta,
			      &f->limit, field, err);
	if (st != DR_OK)
		return st;
	f->model = v[0];
	f->adapter = v[1];
	f->sha256 = v[2];
	f->q = v[5];
	f->cursor = v[7];
	if (f->q && (!*f->q || strlen(f->q) > 256))
		return jobs_filter_refuse(err, field, "q",
					  "give 1 to 256 characters");
	if (f->sha256 && !is_sha256(f->sha256))
		return jobs_filter_refuse(err, field, "sha256",
					  "64 lower-case hex digits");
	if (f->cursor && !is_cursor(f->cursor))
		return jobs_filter_refuse(err, field, "cursor",
					  "not a cursor from a previous page");
	if (v[3] && outputs_parse_time(v[3], f->since_text))
		return jobs_filter_refuse(err, field, "since", TIME_RULE);
	if (v[4] && outputs_parse_time(v[4], f->until_text))
		return jobs_filter_refuse(err, field, "until", TIME_RULE);
	f->since = v[3] ? f->since_text : NULL;
	f->until = v[4] ? f->until_text : NULL;
	return DR_OK;
}

dr_status outputs_search(dr_db *db, const struct dr_instance *sink,
			 const dr_output_filter *f, dr_buf *out, dr_error *err)
{
	dr_db_arg args[9 + 2 * DR_MAX_METADATA_FILTERS + 1];
	size_t n = 0, shown, base;
	unsigned mask = 0;
	dr_db_rows *rows = NULL;
	dr_status st;

#define ADD(flag, v)                                                           \
	do {                                                                   \
		mask |= (flag);                                                \
		args[n++] = DB_STR(v);                                         \
	} while (0)
	assert(f->n_meta <= DR_MAX_METADATA_FILTERS);
	if (f->model)
		ADD(F_MODEL, f->model);
	if (f->adapter)
		ADD(F_ADAPTER, f->adapter);
	if (f->sha256)
		ADD(F_SHA, f->sha256);
	for (size_t i = 0; i < f->n_meta; i++) {
		ADD(0, f->meta[i].key);
		ADD(0, f->meta[i].value);
	}
	if (f->since)
		ADD(F_SINCE, f->since);
	if (f->until)
		ADD(F_UNTIL, f->until);
	if (f->q) {
		ADD(F_Q, f->q);
		ADD(F_Q, f->q);
	}
	if (f->cursor)
		ADD(F_CURSOR, f->cursor);
#undef ADD
	args[n++] = DB_INT((int64_t)f->limit + 1);
	st = jobs_filtered_query(db, search_sql, search_cache, mask, f->n_meta,
				 args, n, &rows, err);
	if (st != DR_OK)
		return st;
	shown = rows->n_rows > (size_t)f->limit ? (size_t)f->limit
						: rows->n_rows;
	base = 16; /* first column after DR_OUTPUT_COLUMNS */
	st = dr_buf_puts(out, "{\"data\":[");
	for (size_t i = 0; st == DR_OK && i < shown; i++) {
		dr_db_rows *rends = NULL;

		st = db_query(
			db,
			"SELECT " DR_RENDITION_COLUMNS " FROM renditions r"
			" WHERE r.output_id = ? ORDER BY r.name",
			&rends, err, DB_ARGS(DB_STR(db_cell(rows, i, 0))));
		if (st != DR_OK)
			break;
		if (i)
			st = dr_buf_puts(out, ",");
		if (st == DR_OK)
			st = jobs_append_output(out, sink, rows, i, rends);
		db_rows_free(rends);
		if (st == DR_OK)
			st = dr_buf_puts(out, ",\"job_id\":");
		if (st == DR_OK)
			st = dr_buf_json_string(out, db_cell(rows, i, base));
		if (st == DR_OK)
			st = dr_buf_puts(out, ",\"model\":");
		if (st == DR_OK)
			st = dr_buf_json_string(out,
						db_cell(rows, i, base + 1));
		if (st == DR_OK)
			st = dr_buf_puts(out, ",\"adapter\":");
		if (st == DR_OK)
			st = dr_buf_json_string(out,
						db_cell(rows, i, base + 2));
		if (st == DR_OK)
			st = dr_buf_puts(out, ",\"created_at\":");
		if (st == DR_OK)
			st = json_append_time(out, db_cell(rows, i, base + 3));
		if (st == DR_OK)
			st = dr_buf_puts(out, "}");
	}
	if (st == DR_OK)
		st = dr_buf_puts(out, "],\"next_cursor\":");
	if (st == DR_OK)
		st = rows->n_rows > shown
			     ? dr_buf_json_string(out,
						  db_cell(rows, shown - 1, 0))
			     : dr_buf_puts(out, "null");
	if (st == DR_OK)
		st = dr_buf_puts(out, "}");
	db_rows_free(rows);
	if (st == DR_ERR_TOO_LARGE)
		st = dr_fail(err, DR_ERR_INTERNAL, "internal",
			     "output list too large");
	return st;
}
