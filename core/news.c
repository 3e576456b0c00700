/*
 * news.c - applying provider news to jobs (see news.h).
 *
 * One transaction per piece of news: the delivery record, the job row
 * locked by its prediction (or by the job named in the webhook URL), the
 * move (jobstate.h), the outputs of a succeeded prediction and the event.
 */
#include "news.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blobs.h"
#include "datascan.h"
#include "digest.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"

#define MAX_STORED_PREDICTION (4u << 20) /* raw provider JSON kept */
/* What the jobs table holds of a provider's word, in characters (the
 * column sizes of migrations/0001_init.sql): a longer error or version
 * is cut, at a character boundary, and made well-formed UTF-8 (strict
 * SQL refuses anything else, and the whole delivery would fail). */
#define MAX_VERSION 128
/* Bytes of a delivery id kept for people (webhook_deliveries.delivery_id,
 * migration 0005); duplicates are found by the SHA-256 of the whole id,
 * so an id of any length and any bytes is recorded. */
#define MAX_DELIVERY_ID 256

void news_prediction_clear(dr_prediction *p)
{
	if (!p)
		return;
	free(p->id);
	free(p->version);
	free(p->error);
	free(p->raw_json);
	free(p->completed_at);
	free(p->trained_version);
	for (size_t i = 0; i < p->n_outputs; i++)
		free(p->outputs[i].value);
	free(p->outputs);
	memset(p, 0, sizeof(*p));
}

static const char *pred_status_name(dr_prediction_status s)
{
	switch (s) {
	case DR_PRED_STARTING:
		return "starting";
	case DR_PRED_PROCESSING:
		return "processing";
	case DR_PRED_SUCCEEDED:
		return "succeeded";
	case DR_PRED_FAILED:
		return "failed";
	case DR_PRED_CANCELED:
		return "canceled";
	case DR_PRED_ABORTED:
		return "aborted";
	default:
		return "unknown";
	}
}

/* The job status a prediction status leads to: 1 with *to set, 0 for
 * none. */
static int job_status_for(dr_prediction_status s, dr_job_status *to)
{
	switch (s) {
	case DR_PRED_STARTING:
		*to = DR_JOB_STARTING;
		return 1;
	case DR_PRED_PROCESSING:
		*to = DR_JOB_PROCESSING;
		return 1;
	case DR_PRED_SUCCEEDED:
		*to = DR_JOB_PERSISTING;
		return 1;
	case DR_PRED_FAILED:
	case DR_PRED_ABORTED:
		*to = DR_JOB_FAILED;
		return 1;
	case DR_PRED_CANCELED:
		*to = DR_JOB_CANCELED;
		return 1;
	default:
		return 0;
	}
}

/* How the pipeline fetches an output of this kind (outputs.source_kind):
 * only what the adapter itself called a local path is ever read as one. */
static const char *source_kind(dr_output_kind k)
{
	switch (k) {
	case DR_OUTPUT_URL:
		return "url";
	case DR_OUTPUT_DATA:
		return "data";
	case DR_OUTPUT_PATH:
		return "path";
	default:
		return NULL;
	}
}

/* Whether `had` (idx of a job's output rows) holds output i. */
static int output_recorded(const dr_db_rows *had, size_t i)
{
	for (size_t r = 0; r < had->n_rows; r++)
		if (strtoull(db_cell(had, r, 0), NULL, 10) == i)
			return 1;
	return 0;
}

/* 1 when a job's kind (jobs.kind) is a training. */
static int is_training(const char *kind)
{
	return kind && strcmp(kind, "training") == 0;
}

/* The provider deadline of a job of `kind` at `adapter`, in seconds: a
 * training's is the adapter's training_deadline (config.h), a
 * prediction's [worker] provider_deadline. */
static int64_t deadline_seconds(const dr_config *cfg, const char *adapter,
				const char *kind)
{
	const dr_conf_section *sec;

	if (!is_training(kind))
		return (int64_t)cfg->worker.provider_deadline;
	sec = config_section(cfg, "adapter", adapter);
	return (int64_t)(sec ? sec->training_deadline
			     : DR_TRAINING_DEADLINE_DEFAULT);
}

/*
 * A succeeded training's new model version (dr_prediction.trained_version)
 * into jobs.training_version, in the open transaction. One missing or
 * longer than the column is not written (logged), and the persist step
 * then fails the job with training_version_missing (pipeline.c).
 */
static dr_status record_training_version(dr_db *db, const char *id,
					 const dr_prediction *p, dr_error *err)
{
	const char *v = p->trained_version;

	if (!v || !v[0] || strlen(v) > NEWS_MAX_TRAINED_VERSION) {
		dr_log(DR_LOG_WARNING,
		       "event=job.training_version_missing job=%s", id);
		return DR_OK;
	}
	return db_exec(db, "UPDATE jobs SET training_version = ? WHERE id = ?",
		       NULL, err, DB_ARGS(DB_STR(v), DB_STR(id)));
}

/* Record output o (number i) of job `id`: see record_outputs(). */
static dr_status record_output(dr_db *db, const char *id,
			       const dr_output_ref *o, size_t i, dr_error *err)
{
	const char *kind = o->kind == DR_OUTPUT_TEXT ? "text" : "file";
	const char *url = o->kind == DR_OUTPUT_URL && strlen(o->value) <= 2048
				  ? o->value
				  : NULL;
	const char *source = o->kind == DR_OUTPUT_TEXT ? NULL : o->value;
	const char *skind = source_kind(o->kind);
	char blob[DATASCAN_ID_LEN + 1], media[DATASCAN_MEDIA_MAX + 1];
	int blob_ref = o->kind == DR_OUTPUT_DATA &&
		       datascan_reference(o->value, blob, media, sizeof(media));
	dr_status st;
	dr_datascan_item inline_item;
	int inline_blob = 0;

	if (!blob_ref && o->kind == DR_OUTPUT_DATA) {
		st = datascan_one(o->value, strlen(o->value), &inline_item,
				  &inline_blob, err);
		if (st != DR_OK)
			return st;
		if (inline_blob)
			snprintf(blob, sizeof(blob), "%s", inline_item.id);
	}
	if (blob_ref || inline_blob) {
		source = blob;
		skind = "blob";
	}
	st = db_exec(
		db,
		"INSERT INTO outputs (job_id, idx, kind, source_url,"
		" source, source_kind, text, state, created_at)"
		" VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', NOW(6))"
		" ON DUPLICATE KEY UPDATE job_id = job_id",
		NULL, err,
		DB_ARGS(DB_STR(id), DB_INT((int64_t)i), DB_STR(kind),
			DB_STR(url), DB_STR(source), DB_STR(skind),
			DB_STR(o->kind == DR_OUTPUT_TEXT ? o->value : NULL)));
	if (st == DR_OK && inline_blob) {
		uint64_t bytes;

		st = blobs_insert(db, (const unsigned char *)o->value,
				  &inline_item, id, &bytes, err);
	}
	if (st == DR_OK && blob_ref) {
		int claimed;

		st = blobs_claim(db, blob, id, &claimed, err);
		if (st == DR_OK && !claimed)
			st = dr_fail(err, DR_ERR_INVALID, "bad_reference",
				     "output %zu names a file this "
				     "delivery did not carry",
				     i);
	}
	return st;
}

/*
 * Record the outputs of a succeeded prediction for the pipeline. An
 * output that is a reference to a file the app took out of the webhook
 * (datascan.h) and stored unclaimed (blobs.h) is claimed for the job and
 * recorded as that file (source: its id, source_kind 'blob'); a row
 * recorded already (a repeated delivery) claims nothing. A large base64
 * data: URI that came whole (a poll's answer, a submit's) is stored the
 * same way here, so no output row holds megabytes of base64.
 */
static dr_status record_outputs(dr_db *db, const char *id,
				const dr_prediction *p, dr_error *err)
{
	dr_db_rows *had = NULL;
	dr_status st;

	/* The rows the job has already (the job row is locked): those are
	 * left as they are. (An INSERT's affected rows cannot tell: the
	 * connections count found rows.) */
	st = db_query(db, "SELECT idx FROM outputs WHERE job_id = ?", &had, err,
		      DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		return st;
	for (size_t i = 0; i < p->n_outputs && st == DR_OK; i++)
		if (!output_recorded(had, i))
			st = record_output(db, id, &p->outputs[i], i, err);
	db_rows_free(had);
	return st;
}

enum { J_ID, J_STATUS, J_STEP, J_PRED, J_LEASE, J_PROGRESS, J_KIND };

/* Log a repeated delivery in its job's events (best effort: the delivery
 * has no effect either way). */
static void note_duplicate(dr_db *db, const char *adapter,
			   const dr_prediction *p, const char *delivery_id)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	char *detail;

	if (!p->id ||
	    db_query(db,
		     "SELECT id, status FROM jobs WHERE adapter = ?"
		     " AND prediction_id = ?",
		     &rows, &err,
		     DB_ARGS(DB_STR(adapter), DB_STR(p->id))) != DR_OK)
		return;
	if (rows->n_rows == 1) {
		detail = jobstate_detail(
			"prediction_status", pred_status_name(p->status),
			"delivery_id", delivery_id, "duplicate", "true", NULL);
		if (jobstate_event(db, db_cell(rows, 0, 0), "webhook",
				   db_cell(rows, 0, 1), NULL, detail,
				   &err) != DR_OK)
			dr_log(DR_LOG_WARNING, "event=job.event_failed job=%s",
			       db_cell(rows, 0, 0));
		free(detail);
	}
	db_rows_free(rows);
}

int news_prediction_id_ok(const char *id)
{
	size_t n = 0;

	for (; id[n]; n++)
		if (n >= NEWS_MAX_PREDICTION_ID || id[n] < 0x21 || id[n] > 0x7e)
			return 0;
	return n > 0;
}

/* Record delivery `id` of `adapter` in the open transaction: its SHA-256
 * is the key, its first MAX_DELIVERY_ID bytes are kept as they came.
 * DR_ERR_CONFLICT when it was recorded before. */
static dr_status record_delivery(dr_db *db, const char *adapter, const char *id,
				 dr_error *err)
{
	unsigned char key[DR_SHA256_LEN];
	size_t len = strlen(id);

	digest_sha256(id, len, key);
	return db_exec(db,
		       "INSERT INTO webhook_deliveries (adapter, delivery_key,"
		       " delivery_id, received_at) VALUES (?, ?, ?, NOW(6))",
		       NULL, err,
		       DB_ARGS(DB_STR(adapter),
			       DB_BLOB((const void *)key, sizeof(key)),
			       DB_BLOB((const void *)id,
				       len < MAX_DELIVERY_ID
					       ? len
					       : (size_t)MAX_DELIVERY_ID)));
}

dr_status news_needs_files(dr_db *db, const char *adapter,
			   const dr_prediction *p, const char *delivery_id,
			   int *needed, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	*needed = 1;
	if (delivery_id) {
		unsigned char key[DR_SHA256_LEN];

		digest_sha256(delivery_id, strlen(delivery_id), key);
		st = db_query(db,
			      "SELECT 1 FROM webhook_deliveries"
			      " WHERE adapter = ? AND delivery_key = ?",
			      &rows, err,
			      DB_ARGS(DB_STR(adapter),
				      DB_BLOB((const void *)key, sizeof(key))));
		if (st != DR_OK)
			return st;
		*needed = rows->n_rows == 0;
		db_rows_free(rows);
		if (!*needed)
			return DR_OK;
	}
	if (!p->id || !news_prediction_id_ok(p->id))
		return DR_OK;
	st = db_query(db,
		      "SELECT status FROM jobs"
		      " WHERE adapter = ? AND prediction_id = ?",
		      &rows, err, DB_ARGS(DB_STR(adapter), DB_STR(p->id)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows > 0) {
		dr_job_status s = DR_JOB_QUEUED;

		if (jobstate_parse(db_cell(rows, 0, 0), &s) &&
		    (s == DR_JOB_PERSISTING || jobstate_is_final(s)))
			*needed = 0;
	}
	db_rows_free(rows);
	return DR_OK;
}

static dr_status find_job(dr_db *db, const char *adapter, const char *pred_id,
			  const char *hint, int64_t hint_at, dr_db_rows **rows,
			  dr_error *err)
{
	dr_status st = DR_OK;

	*rows = NULL;
	if (pred_id) {
		st = db_query(db,
			      "SELECT id, status, step, prediction_id,"
			      " lease_version, progress, kind FROM jobs"
			      " WHERE adapter = ? AND prediction_id = ?"
			      " FOR UPDATE",
			      rows, err,
			      DB_ARGS(DB_STR(adapter), DB_STR(pred_id)));
		if (st != DR_OK || (*rows)->n_rows > 0)
			return st;
		db_rows_free(*rows);
		*rows = NULL;
	}
	if (hint && ids_is_job_id(hint)) {
		/* A job whose submit has no recorded answer yet adopts it.
		 * Or it is already the job's own: the lookup above ran before
		 * another transaction recording the same prediction (the
		 * provider's webhook racing the worker's submit answer)
		 * committed, and this locking read waited for it. */
		st = db_query(db,
			      "SELECT id, status, step, prediction_id,"
			      " lease_version, progress, kind FROM jobs"
			      " WHERE id = ? AND adapter = ? AND"
			      " ((prediction_id IS NULL AND step = 'submit'"
			      " AND (? = 0 OR TIMESTAMPDIFF(MICROSECOND,"
			      " FROM_UNIXTIME(0), submitted_at) = ?))"
			      " OR prediction_id = ?)"
			      " FOR UPDATE",
			      rows, err,
			      DB_ARGS(DB_STR(hint), DB_STR(adapter),
				      DB_INT(hint_at), DB_INT(hint_at),
				      DB_STR(pred_id ? pred_id : "")));
	}
	return st;
}

/*
 * The provider's document as the job keeps it (jobs.prediction) into
 * *doc: with large data: URIs replaced by references (datascan.h), when
 * it came whole (a poll's answer); its files are the outputs' own rows.
 * doc->n is 0 when nothing was replaced (a webhook's document was
 * scanned already): keep `raw` as it is.
 */
static dr_status stored_document(const char *raw, dr_datascan *doc,
				 dr_error *err)
{
	if (!raw) {
		memset(doc, 0, sizeof(*doc));
		return DR_OK;
	}
	return datascan_run((const unsigned char *)raw, strlen(raw), doc, err);
}

/*
 * The provider's document without its top-level "input" (malloc, the
 * caller frees), or NULL when it has none or is not a JSON object (keep
 * it as it is). The job keeps its input as written; the provider's echo
 * of it holds what it was sent, the URLs given for {"$file"} references
 * included, which are secrets while they are valid.
 */
static char *without_input(const char *raw)
{
	json_object *o;
	char *out = NULL;

	if (!raw || !strstr(raw, "\"input\""))
		return NULL;
	o = json_tokener_parse(raw);
	if (json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "input", NULL)) {
		json_object_object_del(o, "input");
		out = dr_xstrdup(json_object_to_json_string_ext(
			o, JSON_C_TO_STRING_PLAIN |
				   JSON_C_TO_STRING_NOSLASHESCAPE));
	}
	json_object_put(o);
	return out;
}

static dr_status apply_once(dr_db *db, const dr_config *cfg,
			    const char *adapter, const char *job_hint,
			    int64_t hint_at, const dr_prediction *p,
			    const char *source, const char *delivery_id,
			    const news_fence *fence, dr_apply_result *result,
			    char status_out[16], dr_error *err)
{
	dr_db_rows *rows = NULL;
	const char *cur, *next, *id;
	char *detail = NULL, *error_text = NULL, *version = NULL;
	char *stored = NULL;
	char progress[32], predict_time[32];
	double old_progress, new_progress;
	dr_job_status from = DR_JOB_QUEUED, to = DR_JOB_QUEUED;
	jobstate_news w;
	int known, has_next, to_final = 0, to_persist = 0;
	dr_datascan doc;
	dr_status st;

	memset(&doc, 0, sizeof(doc));
	*result = DR_APPLY_UNKNOWN;
	if (status_out)
		status_out[0] = '\0';
	if (p->id && !news_prediction_id_ok(p->id))
		return dr_fail(err, DR_ERR_INVALID, "bad_prediction_id",
			       "the prediction id is not 1 to %d printable "
			       "ASCII characters",
			       NEWS_MAX_PREDICTION_ID);
	st = db_begin(db, err);
	if (st != DR_OK)
		return st;
	if (delivery_id) {
		st = record_delivery(db, adapter, delivery_id, err);
		if (st == DR_ERR_CONFLICT) {
			db_rollback(db);
			*result = DR_APPLY_DUPLICATE;
			note_duplicate(db, adapter, p, delivery_id);
			return DR_OK;
		}
		if (st != DR_OK)
			goto rollback;
	}
	st = find_job(db, adapter, p->id, job_hint, hint_at, &rows, err);
	if (st != DR_OK)
		goto rollback;
	if (!rows || rows->n_rows == 0) {
		/* Nobody's prediction: forget the delivery too. */
		db_rows_free(rows);
		db_rollback(db);
		return DR_OK;
	}
	id = db_cell(rows, 0, J_ID);
	cur = db_cell(rows, 0, J_STATUS);
	if (fence && strcmp(id, fence->id) != 0) {
		/* A worker's own news names a prediction another job owns
		 * (e.g. reconciliation matched it): not ours to apply. */
		db_rows_free(rows);
		db_rollback(db);
		return DR_OK;
	}
	if (fence && strtoull(db_cell(rows, 0, J_LEASE), NULL, 10) !=
			     fence->lease_version) {
		st = queue_fenced(DR_OK, 0, err); /* lease_lost */
		goto rollback;
	}
	known = jobstate_parse(cur, &from);
	has_next = job_status_for(p->status, &to);
	next = jobstate_name(to);
	snprintf(predict_time, sizeof(predict_time), "%.3f", p->predict_time);
	/* Stale or repeated news, news for an ended job, and a provider's
	 * final word after it already said "succeeded" (the outputs are
	 * being stored) change nothing; news that repeats the status
	 * (progress) is applied. */
	if (!known || !has_next || jobstate_is_final(from) ||
	    from == DR_JOB_PERSISTING ||
	    (to != from && !jobstate_allowed(from, to))) {
		detail = jobstate_detail(
			"prediction_status", pred_status_name(p->status),
			"delivery_id", delivery_id, "ignored", "true", NULL);
		st = jobstate_event(db, id, source, cur, NULL, detail, err);
		if (st != DR_OK)
			goto rollback;
		*result = DR_APPLY_IGNORED;
		if (status_out)
			snprintf(status_out, 16, "%s", cur);
		goto commit;
	}
	old_progress = db_cell(rows, 0, J_PROGRESS)
			       ? strtod(db_cell(rows, 0, J_PROGRESS), NULL)
			       : 0;
	new_progress = p->progress > old_progress ? p->progress : old_progress;
	to_persist = to == DR_JOB_PERSISTING;
	to_final = jobstate_is_final(to);
	if (to_persist)
		new_progress = 1.0;
	snprintf(progress, sizeof(progress), "%.4f", new_progress);
	error_text = jobstate_column_text(
		p->error ? p->error
			 : (p->status == DR_PRED_ABORTED
				    ? "the provider aborted the prediction "
				      "before it started"
				    : "the prediction failed"),
		JOBSTATE_MAX_ERROR_MESSAGE);
	version = jobstate_column_text(p->version, MAX_VERSION);
	memset(&w, 0, sizeof(w));
	w.to = to;
	w.prediction_id = p->id;
	w.prediction_status = pred_status_name(p->status);
	st = stored_document(p->raw_json, &doc, err);
	if (st != DR_OK)
		goto rollback;
	w.raw_json = doc.n ? doc.doc.data : p->raw_json;
	stored = without_input(w.raw_json);
	if (stored)
		w.raw_json = stored;
	if (w.raw_json && strlen(w.raw_json) > MAX_STORED_PREDICTION)
		w.raw_json = NULL;
	w.predict_time = predict_time;
	w.progress = progress;
	w.version = version;
	w.error_code = p->status == DR_PRED_ABORTED ? "prediction_aborted"
						    : "prediction_failed";
	w.error_message = error_text;
	w.adopt = !db_cell(rows, 0, J_PRED) &&
		  strcmp(db_cell(rows, 0, J_STEP), "submit") == 0;
	w.fenced = fence != NULL;
	w.deadline_s = deadline_seconds(cfg, adapter, db_cell(rows, 0, J_KIND));
	w.poll_min = cfg->worker.poll_min;
	st = jobstate_news_write(db, id, &w, err);
	if (st != DR_OK)
		goto rollback;
	if (to_persist) {
		st = record_outputs(db, id, p, err);
		if (st == DR_OK && is_training(db_cell(rows, 0, J_KIND)))
			st = record_training_version(db, id, p, err);
		if (st != DR_OK)
			goto rollback;
	}
	detail = jobstate_detail("prediction_status",
				 pred_status_name(p->status), "prediction_id",
				 p->id, "delivery_id", delivery_id, "progress",
				 progress, NULL);
	st = jobstate_event(db, id, source, cur,
			    strcmp(cur, next) ? next : NULL, detail, err);
	if (st != DR_OK)
		goto rollback;
	*result = DR_APPLY_CHANGED;
	if (status_out)
		snprintf(status_out, 16, "%s", next);
commit:
	st = db_commit(db, err);
	if (st != DR_OK)
		db_rollback(db);
	if (st == DR_OK && *result == DR_APPLY_CHANGED &&
	    (to_final || to_persist))
		metrics_provider_run(db, id);
	if (st == DR_OK && *result == DR_APPLY_CHANGED)
		dr_log(DR_LOG_INFO,
		       "event=job.update job=%s source=%s from=%s to=%s "
		       "prediction=%s",
		       id, source, cur, next, p->id ? p->id : "-");
	db_rows_free(rows);
	free(detail);
	free(error_text);
	free(version);
	free(stored);
	datascan_free(&doc);
	return st;
rollback:
	db_rollback(db);
	db_rows_free(rows);
	free(detail);
	free(error_text);
	free(version);
	free(stored);
	datascan_free(&doc);
	return st;
}

/* A deadlock (the job row locked by a client's cancel or retry, or by a
 * worker, while this delivery waits for it) rolled everything back,
 * including the delivery record: run the whole transaction again. */
dr_status news_apply(dr_db *db, const dr_config *cfg, const char *adapter,
		     const char *job_hint, int64_t hint_at,
		     const dr_prediction *p, const char *source,
		     const char *delivery_id, const news_fence *fence,
		     dr_apply_result *result, char status_out[16],
		     dr_error *err)
{
	dr_status st = DR_OK;

	for (int i = 0; i < DB_TX_TRIES; i++) {
		st = apply_once(db, cfg, adapter, job_hint, hint_at, p, source,
				delivery_id, fence, result, status_out, err);
		if (!db_tx_again(st, err))
			break;
	}
	return st;
}
