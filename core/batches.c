/*
 * batches.c - batches of jobs (see batches.h).
 *
 * A batch is validated whole before anything is written, then stored in
 * one transaction: its row, then every job with its metadata rows and
 * its "created" event in multi-row statements (jobs_insert_batch()). Its
 * counts and status are read from its jobs whenever it is rendered.
 */
#include "batches.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"
#include "jobstate.h"
#include "jsonutil.h"

/* -------------------------------------------------------------- parse */

/* Make err a 422 about `field` ("<field>: <why>"); the field is copied. */
static dr_status refuse(dr_error *err, char field[DR_BATCH_FIELD_MAX],
			const char *name, const char *why)
{
	snprintf(field, DR_BATCH_FIELD_MAX, "%s", name);
	return dr_fail(err, DR_ERR_INVALID, "invalid_field", "%s: %s", field,
		       why);
}

/* Item `item` merged over `defaults` (either may lack any member): a new
 * object the caller releases. "key" is not a job field and stays out. */
static json_object *merge(json_object *defaults, json_object *item)
{
	json_object *m = NULL;

	if (defaults && json_object_deep_copy(defaults, &m, NULL) != 0)
		dr_die("out of memory copying a batch's defaults");
	if (!m)
		m = json_object_new_object();
	json_object_object_foreach(item, k, v)
	{
		json_object *dm = NULL;

		if (strcmp(k, "key") == 0)
			continue;
		if (strcmp(k, "metadata") == 0 &&
		    json_object_is_type(v, json_type_object) &&
		    json_object_object_get_ex(m, "metadata", &dm) &&
		    json_object_is_type(dm, json_type_object)) {
			json_object_object_foreach(v, mk, mv)
				json_object_object_add(dm, mk,
						       json_object_get(mv));
			continue;
		}
		json_object_object_add(m, k, json_object_get(v));
	}
	return m;
}

/*
 * Count item `i`'s input, as the job will store it, into *total: one job's
 * input holds at most [server] max_body bytes, as through POST /v1/jobs,
 * and a batch's at most twice [limits] max_batch_body in all (defaults
 * repeat in every item, so a body under its limit can expand far past
 * it). DR_ERR_INVALID naming the item's input past either.
 */
static dr_status item_size(const dr_config *cfg, const dr_job_request *req,
			   size_t i, size_t *total,
			   char field[DR_BATCH_FIELD_MAX], dr_error *err)
{
	size_t len = 0;
	char name[48], why[160];

	json_object_to_json_string_length(req->input, JSON_C_TO_STRING_PLAIN,
					  &len);
	*total += len;
	snprintf(name, sizeof(name), "items[%zu].input", i);
	if (len > cfg->server.max_body) {
		snprintf(why, sizeof(why),
			 "holds %zu bytes as stored, over the %zu a job's "
			 "input may hold ([server] max_body)",
			 len, cfg->server.max_body);
		return refuse(err, field, name, why);
	}
	if (*total > 2 * cfg->limits.max_batch_body) {
		snprintf(why, sizeof(why),
			 "the inputs up to this item hold %zu bytes as "
			 "stored, over twice [limits] max_batch_body",
			 *total);
		return refuse(err, field, name, why);
	}
	return DR_OK;
}

/* Name the field jobs_parse_request() refused in item `i`: "items[i]"
 * for an unknown member, "defaults.F" when only the defaults have F,
 * "items[i].F" otherwise; and put it at the head of err's message in
 * place of F. */
static dr_status item_refused(dr_error *err, char field[DR_BATCH_FIELD_MAX],
			      size_t i, const char *jfield,
			      json_object *defaults, json_object *item)
{
	char why[sizeof(err->message)];
	const char *msg = err->message;
	size_t fl = jfield ? strlen(jfield) : 0;

	if (!jfield || strcmp(jfield, "body") == 0)
		snprintf(field, DR_BATCH_FIELD_MAX, "items[%zu]", i);
	else if (!json_object_object_get_ex(item, jfield, NULL) && defaults &&
		 json_object_object_get_ex(defaults, jfield, NULL))
		snprintf(field, DR_BATCH_FIELD_MAX, "defaults.%s", jfield);
	else
		snprintf(field, DR_BATCH_FIELD_MAX, "items[%zu].%s", i, jfield);
	if (fl && strncmp(msg, jfield, fl) == 0 && msg[fl] == ':')
		msg += fl + 1;
	else if (!msg[0])
		msg = "invalid";
	snprintf(why, sizeof(why), "%s", msg);
	while (why[0] == ' ')
		memmove(why, why + 1, strlen(why));
	return dr_fail(err, DR_ERR_INVALID, "invalid_field", "%s: %s", field,
		       why);
}

void batches_request_free(dr_batch_request *req)
{
	for (size_t i = 0; req->items && i < req->n_items; i++)
		jobs_request_free(&req->items[i]);
	free(req->items);
	free(req->keys);
	if (req->root)
		json_object_put(req->root);
	memset(req, 0, sizeof(*req));
}

dr_status batches_parse_request(const dr_config *cfg, const dr_plugins *plugins,
				json_object *root, dr_batch_request *out,
				char field[DR_BATCH_FIELD_MAX], dr_error *err)
{
	json_object *items = NULL, *defaults = NULL, *cb = NULL;
	dr_batch_request r;
	char name[DR_BATCH_FIELD_MAX];
	size_t n, bytes;
	dr_status st = DR_OK;

	memset(&r, 0, sizeof(r));
	field[0] = '\0';
	if (!json_object_is_type(root, json_type_object))
		return refuse(err, field, "body", "must be a JSON object");
	json_object_object_foreach(root, key, val)
	{
		(void)val;
		if (strcmp(key, "items") != 0 && strcmp(key, "defaults") != 0 &&
		    strcmp(key, "callback_url") != 0) {
			snprintf(field, DR_BATCH_FIELD_MAX, "body");
			return dr_fail(err, DR_ERR_INVALID, "invalid_field",
				       "%.64s: unknown field", key);
		}
	}
	if (json_object_object_get_ex(root, "callback_url", &cb) &&
	    !json_object_is_type(cb, json_type_null)) {
		const char *jfield = NULL;

		st = jobs_check_callback_url(cfg, cb, &jfield, err);
		if (st != DR_OK) {
			snprintf(field, DR_BATCH_FIELD_MAX, "callback_url");
			return st;
		}
		r.callback_url = json_object_get_string(cb);
	}
	if (json_object_object_get_ex(root, "defaults", &defaults) &&
	    !json_object_is_type(defaults, json_type_null)) {
		if (!json_object_is_type(defaults, json_type_object))
			return refuse(err, field, "defaults",
				      "must be an object");
		if (json_object_object_get_ex(defaults, "key", NULL))
			return refuse(err, field, "defaults.key",
				      "a key names one item; it cannot be a "
				      "default");
	} else {
		defaults = NULL;
	}
	if (!json_object_object_get_ex(root, "items", &items))
		return refuse(err, field, "items", "is required");
	if (!json_object_is_type(items, json_type_array))
		return refuse(err, field, "items", "must be an array");
	n = json_object_array_length(items);
	if (n < 1 || n > DR_MAX_BATCH_ITEMS)
		return refuse(err, field, "items", "must hold 1 to 1000 items");

	r.items = dr_xcalloc(n, sizeof(*r.items));
	r.keys = dr_xcalloc(n, sizeof(*r.keys));
	bytes = 0;
	for (size_t i = 0; i < n && st == DR_OK; i++) {
		json_object *item = json_object_array_get_idx(items, i);
		json_object *kv = NULL, *merged;
		const char *jfield = NULL;
		char wf_field[DR_FIELD_MAX];

		snprintf(name, sizeof(name), "items[%zu]", i);
		if (!json_object_is_type(item, json_type_object)) {
			st = refuse(err, field, name, "must be an object");
			break;
		}
		if (json_object_object_get_ex(item, "key", &kv) &&
		    !json_object_is_type(kv, json_type_null)) {
			const char *k = json_object_get_string(kv);
			size_t kl = k ? strlen(k) : 0;

			snprintf(name, sizeof(name), "items[%zu].key", i);
			if (!json_object_is_type(kv, json_type_string) ||
			    kl < 1 || kl > DR_MAX_BATCH_KEY) {
				st = refuse(err, field, name,
					    "must be a string of 1 to 255 "
					    "bytes");
				break;
			}
			for (size_t j = 0; j < i; j++)
				if (r.keys[j] && strcmp(r.keys[j], k) == 0) {
					char why[96];

					snprintf(why, sizeof(why),
						 "the same key as items[%zu]",
						 j);
					st = refuse(err, field, name, why);
					break;
				}
			r.keys[i] = k;
		}
		if (st != DR_OK)
			break;
		merged = merge(defaults, item);
		if (json_object_object_get_ex(merged, "steps", NULL)) {
			/* A workflow item (jobs_parse_workflow()). */
			st = jobs_parse_workflow(cfg, plugins, merged,
						 &r.items[i], wf_field, err);
			jfield = wf_field;
		} else {
			st = jobs_parse_request(cfg, plugins, merged,
						&r.items[i], &jfield, err);
		}
		json_object_put(merged);
		if (st != DR_OK) {
			st = item_refused(err, field, i, jfield, defaults,
					  item);
			break;
		}
		r.n_items = i + 1;
		st = item_size(cfg, &r.items[i], i, &bytes, field, err);
	}
	if (st != DR_OK) {
		batches_request_free(&r);
		return st;
	}
	r.root = json_object_get(root);
	*out = r;
	return DR_OK;
}

/* ------------------------------------------------------------- render */

/* The counts of batch `id` by status into c[0..4] (queued, running,
 * succeeded, failed, canceled). */
static dr_status count_jobs(dr_db *db, const char *id, long long c[5],
			    dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	memset(c, 0, 5 * sizeof(*c));
	st = db_query(db,
		      "SELECT status, COUNT(*) FROM jobs WHERE batch_id = ?"
		      " GROUP BY status",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		return st;
	for (size_t i = 0; i < rows->n_rows; i++) {
		const char *s = db_cell(rows, i, 0);
		long long k = strtoll(db_cell(rows, i, 1), NULL, 10);

		if (strcmp(s, "queued") == 0)
			c[0] += k;
		else if (strcmp(s, "succeeded") == 0)
			c[2] += k;
		else if (strcmp(s, "failed") == 0)
			c[3] += k;
		else if (strcmp(s, "canceled") == 0)
			c[4] += k;
		else
			c[1] += k; /* starting, processing, persisting */
	}
	db_rows_free(rows);
	return DR_OK;
}

/* Append the batch object's members from "id" to "counts" (no brace
 * after). */
static dr_status put_head(dr_buf *b, const char *id, const long long c[5])
{
	return dr_buf_printf(
		b,
		"{\"id\":\"%s\",\"status\":\"%s\",\"counts\":{\"queued\":%lld,"
		"\"running\":%lld,\"succeeded\":%lld,\"failed\":%lld,"
		"\"canceled\":%lld}",
		id, c[0] + c[1] == 0 ? "completed" : "running", c[0], c[1],
		c[2], c[3], c[4]);
}

/* Append ,"created_at":…,"completed_at":…} */
static dr_status put_times(dr_buf *b, const char *created,
			   const char *completed)
{
	dr_status st = dr_buf_puts(b, ",\"created_at\":");

	if (st == DR_OK)
		st = json_append_time(b, created);
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"completed_at\":");
	if (st == DR_OK)
		st = json_append_time(b, completed);
	if (st == DR_OK)
		st = dr_buf_puts(b, "}");
	return st;
}

/* Append one {"key": …, "id": …} of the "jobs" list. */
static dr_status put_job_ref(dr_buf *b, size_t i, const char *key,
			     const char *id)
{
	dr_status st = dr_buf_puts(b, i ? ",{\"key\":" : "{\"key\":");

	if (st == DR_OK)
		st = key ? dr_buf_json_string(b, key) : dr_buf_puts(b, "null");
	if (st == DR_OK)
		st = dr_buf_printf(b, ",\"id\":\"%s\"}", id);
	return st;
}

static dr_status too_large(dr_error *err)
{
	return dr_fail(err, DR_ERR_INTERNAL, "internal",
		       "batch object too large");
}

dr_status batches_render(dr_db *db, const char *id, dr_buf *out, dr_error *err)
{
	dr_db_rows *batch = NULL, *jobs = NULL;
	long long c[5];
	dr_status st;

	st = db_query(
		db, "SELECT created_at, completed_at FROM batches WHERE id = ?",
		&batch, err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK && batch->n_rows == 0)
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			     "no batch with id %.40s", id);
	if (st == DR_OK)
		st = count_jobs(db, id, c, err);
	if (st == DR_OK)
		st = db_query(
			db,
			"SELECT batch_key, id FROM jobs WHERE batch_id = ?"
			" ORDER BY id",
			&jobs, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		goto out;
	if (put_head(out, id, c) != DR_OK ||
	    dr_buf_puts(out, ",\"jobs\":[") != DR_OK) {
		st = too_large(err);
		goto out;
	}
	for (size_t i = 0; i < jobs->n_rows; i++)
		if (put_job_ref(out, i, db_cell(jobs, i, 0),
				db_cell(jobs, i, 1)) != DR_OK) {
			st = too_large(err);
			goto out;
		}
	if (dr_buf_puts(out, "]") != DR_OK ||
	    put_times(out, db_cell(batch, 0, 0), db_cell(batch, 0, 1)) != DR_OK)
		st = too_large(err);
out:
	db_rows_free(jobs);
	db_rows_free(batch);
	return st;
}

/* ------------------------------------------------------------- create */

/* A repeat of idempotency key `idem`: the earlier batch's id, or
 * DR_ERR_CONFLICT for another body. */
static dr_status find_idempotent(dr_db *db, const dr_idempotency *idem,
				 char id_out[DR_JOB_ID_LEN + 1], dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	st = db_query(db,
		      "SELECT request_hash, id FROM batches"
		      " WHERE idem_scope = ? AND idem_key = ?",
		      &rows, err,
		      DB_ARGS(DB_STR(idem->scope), DB_STR(idem->key)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 0)
		st = dr_fail(err, DR_ERR_UNAVAILABLE, "retry",
			     "idempotency key in flux; retry");
	else if (strcmp(db_cell(rows, 0, 0), idem->body_hash) != 0)
		st = dr_fail(err, DR_ERR_CONFLICT, "idempotency_key_reused",
			     "this Idempotency-Key was used with another "
			     "request body");
	else
		snprintf(id_out, DR_JOB_ID_LEN + 1, "%s", db_cell(rows, 0, 1));
	db_rows_free(rows);
	return st;
}

dr_status batches_create(dr_db *db, const dr_config *cfg,
			 const dr_batch_request *req,
			 const dr_idempotency *idem,
			 char id_out[DR_JOB_ID_LEN + 1], int *replayed,
			 dr_buf *out, dr_error *err)
{
	char id[DR_JOB_ID_LEN + 1];
	char(*ids)[DR_JOB_ID_LEN + 1] = NULL;
	dr_db_rows *row = NULL;
	long long c[5] = { 0, 0, 0, 0, 0 };
	dr_status st;

	*replayed = 0;
	if (ids_new_batch_id(id) != DR_OK)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "no random bytes for a batch id");
	ids = dr_xcalloc(req->n_items, sizeof(*ids));
	st = db_begin(db, err);
	if (st != DR_OK)
		goto out;
	st = db_query(db,
		      "INSERT INTO batches (id, idem_scope, idem_key,"
		      " request_hash, callback_url, n_jobs, created_at)"
		      " VALUES (?, ?, ?, ?, ?, ?, NOW(6)) RETURNING created_at",
		      &row, err,
		      DB_ARGS(DB_STR(id),
			      DB_STR(idem->key ? idem->scope : NULL),
			      DB_STR(idem->key),
			      DB_STR(idem->key ? idem->body_hash : NULL),
			      DB_STR(req->callback_url),
			      DB_INT((int64_t)req->n_items)));
	if (st == DR_ERR_CONFLICT && idem->key) {
		db_rollback(db);
		st = find_idempotent(db, idem, id_out, err);
		if (st == DR_OK) {
			*replayed = 1;
			st = batches_render(db, id_out, out, err);
		}
		goto out;
	}
	if (st == DR_OK && row->n_rows != 1)
		st = dr_fail(err, DR_ERR_INTERNAL, "internal",
			     "the new batch was not returned");
	if (st == DR_OK)
		st = jobs_insert_batch(db, cfg, id, req->items, req->keys,
				       req->n_items, ids, err);
	for (size_t i = 0; st == DR_OK && i < req->n_items; i++)
		st = files_link_job(db, ids[i], req->items[i].input, err);
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK) {
		/* A failed COMMIT included (db.h). */
		db_rollback(db);
		goto out;
	}
	memcpy(id_out, id, sizeof(id));
	/* The new batch as stored, without reading it back. */
	c[0] = (long long)req->n_items;
	st = put_head(out, id, c);
	if (st == DR_OK)
		st = dr_buf_puts(out, ",\"jobs\":[");
	for (size_t i = 0; st == DR_OK && i < req->n_items; i++)
		st = put_job_ref(out, i, req->keys[i], ids[i]);
	if (st == DR_OK)
		st = dr_buf_puts(out, "]");
	if (st == DR_OK)
		st = put_times(out, db_cell(row, 0, 0), NULL);
	if (st != DR_OK)
		st = too_large(err);
out:
	db_rows_free(row);
	free(ids);
	return st;
}

/* ------------------------------------------------------ cancel, list */

dr_status batches_cancel(dr_db *db, const char *id, size_t *n_canceled,
			 dr_error *err)
{
	dr_db_rows *rows = NULL;
	size_t n = 0;
	dr_status st;

	st = db_query(db, "SELECT id FROM batches WHERE id = ?", &rows, err,
		      DB_ARGS(DB_STR(id)));
	if (st == DR_OK && rows->n_rows == 0)
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			     "no batch with id %.40s", id);
	db_rows_free(rows);
	rows = NULL;
	if (st == DR_OK)
		st = db_query(
			db,
			"SELECT id FROM jobs WHERE batch_id = ? AND status"
			" IN ('queued', 'starting', 'processing',"
			" 'persisting') ORDER BY id",
			&rows, err, DB_ARGS(DB_STR(id)));
	for (size_t i = 0; st == DR_OK && i < rows->n_rows; i++) {
		st = jobstate_client_cancel(db, db_cell(rows, i, 0), err);
		if (st == DR_OK)
			n++;
		else if (st == DR_ERR_CONFLICT || st == DR_ERR_NOT_FOUND)
			st = DR_OK; /* ended or deleted meanwhile */
	}
	db_rows_free(rows);
	if (n_canceled)
		*n_canceled = n;
	return st;
}

dr_status batches_list(dr_db *db, int limit, const char *cursor, dr_buf *out,
		       dr_error *err)
{
	dr_db_rows *rows = NULL;
	size_t shown;
	dr_status st;

	/* Without a cursor, every id: "c" sorts after every "b_…". */
	st = db_query(db,
		      "SELECT id, created_at, completed_at FROM batches"
		      " WHERE id < COALESCE(?, 'c') ORDER BY id DESC LIMIT ?",
		      &rows, err,
		      DB_ARGS(DB_STR(cursor), DB_INT((int64_t)limit + 1)));
	if (st != DR_OK)
		return st;
	shown = rows->n_rows > (size_t)limit ? (size_t)limit : rows->n_rows;
	if (dr_buf_puts(out, "{\"data\":[") != DR_OK)
		st = too_large(err);
	for (size_t i = 0; st == DR_OK && i < shown; i++) {
		long long c[5];

		st = count_jobs(db, db_cell(rows, i, 0), c, err);
		if (st == DR_OK &&
		    ((i && dr_buf_puts(out, ",") != DR_OK) ||
		     put_head(out, db_cell(rows, i, 0), c) != DR_OK ||
		     put_times(out, db_cell(rows, i, 1), db_cell(rows, i, 2)) !=
			     DR_OK))
			st = too_large(err);
	}
	if (st == DR_OK &&
	    (dr_buf_puts(out, "],\"next_cursor\":") != DR_OK ||
	     (rows->n_rows > shown
		      ? dr_buf_json_string(out, db_cell(rows, shown - 1, 0))
		      : dr_buf_puts(out, "null")) != DR_OK ||
	     dr_buf_puts(out, "}") != DR_OK))
		st = too_large(err);
	db_rows_free(rows);
	return st;
}
