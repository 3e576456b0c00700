/*
 * engine.c - job steps and the forward-only state machine (see engine.h).
 *
 * Everything a worker writes about a claimed job names the claim's
 * lease_version; a write that matches no row means the lease was lost and
 * the worker leaves the job alone from then on. News from a provider is
 * applied in one transaction that locks the job row, so a webhook and a
 * poll arriving together cannot interleave.
 */
#include "engine.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "ids.h"
#include "callback.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"

#define MAX_STORED_PREDICTION (4u << 20) /* raw provider JSON kept */
#define MAX_WEBHOOK_URL 2300
/* What the jobs table holds of a provider's word, in characters (the
 * column sizes of migrations/0001_init.sql): a longer error or version
 * is cut, at a character boundary, and made well-formed UTF-8 (strict
 * SQL refuses anything else, and the whole delivery would fail). */
#define MAX_ERROR_MESSAGE 1024
#define MAX_VERSION 128
/* A prediction id is stored as it is (jobs.prediction_id): 1 to 64
 * printable ASCII characters (darkroom-plugin.h). */
#define MAX_PREDICTION_ID 64
/* Bytes of a delivery id kept for people (webhook_deliveries.delivery_id,
 * migration 0005); duplicates are found by the SHA-256 of the whole id,
 * so an id of any length and any bytes is recorded. */
#define MAX_DELIVERY_ID 256

void engine_prediction_clear(dr_prediction *p)
{
	if (!p)
		return;
	free(p->id);
	free(p->version);
	free(p->error);
	free(p->raw_json);
	free(p->completed_at);
	for (size_t i = 0; i < p->n_outputs; i++)
		free(p->outputs[i].value);
	free(p->outputs);
	memset(p, 0, sizeof(*p));
}

static const char *pred_status_name(dr_prediction_status s)
{
	switch (s) {
	case DR_PRED_STARTING: return "starting";
	case DR_PRED_PROCESSING: return "processing";
	case DR_PRED_SUCCEEDED: return "succeeded";
	case DR_PRED_FAILED: return "failed";
	case DR_PRED_CANCELED: return "canceled";
	case DR_PRED_ABORTED: return "aborted";
	default: return "unknown";
	}
}

/* The job status a prediction status leads to, or NULL for none. */
static const char *job_status_for(dr_prediction_status s)
{
	switch (s) {
	case DR_PRED_STARTING: return "starting";
	case DR_PRED_PROCESSING: return "processing";
	case DR_PRED_SUCCEEDED: return "persisting";
	case DR_PRED_FAILED:
	case DR_PRED_ABORTED: return "failed";
	case DR_PRED_CANCELED: return "canceled";
	default: return NULL;
	}
}

static int rank(const char *status)
{
	static const char *const order[] = {"queued", "starting", "processing",
					    "persisting", NULL};

	for (int i = 0; order[i]; i++)
		if (strcmp(status, order[i]) == 0)
			return i;
	return 4; /* succeeded, failed, canceled */
}

static int is_final(const char *status)
{
	return rank(status) == 4;
}

dr_status engine_event(dr_db *db, const char *id, const char *kind,
			const char *from, const char *to, const char *detail,
			dr_error *err)
{
	return db_exec(db,
		       "INSERT INTO job_events (job_id, at, kind, from_status,"
		       " to_status, detail) VALUES (?, NOW(6), ?, ?, ?, ?)",
		       NULL, err, "sssss", id, kind, from, to, detail);
}

char *engine_detail(const char *key, ...)
{
	dr_buf b;
	va_list ap;
	int first = 1;

	dr_buf_init(&b, 4096);
	if (dr_buf_puts(&b, "{") != DR_OK)
		dr_die("event detail does not fit");
	va_start(ap, key);
	for (const char *k = key; k; k = va_arg(ap, const char *)) {
		const char *v = va_arg(ap, const char *);

		if (!v)
			continue;
		if ((!first && dr_buf_puts(&b, ",") != DR_OK) ||
		    dr_buf_json_string(&b, k) != DR_OK ||
		    dr_buf_puts(&b, ":") != DR_OK ||
		    dr_buf_json_string(&b, v) != DR_OK)
			break; /* truncated detail: keep what fits */
		first = 0;
	}
	va_end(ap);
	if (dr_buf_puts(&b, "}") != DR_OK) {
		dr_buf_free(&b);
		return dr_xstrdup("{}");
	}
	return dr_buf_steal(&b);
}

/* How the pipeline fetches an output of this kind (outputs.source_kind):
 * only what the adapter itself called a local path is ever read as one. */
static const char *source_kind(dr_output_kind k)
{
	switch (k) {
	case DR_OUTPUT_URL: return "url";
	case DR_OUTPUT_DATA: return "data";
	case DR_OUTPUT_PATH: return "path";
	default: return NULL;
	}
}

/* Record the outputs of a succeeded prediction for the pipeline. */
static dr_status record_outputs(dr_db *db, const char *id,
				const dr_prediction *p, dr_error *err)
{
	for (size_t i = 0; i < p->n_outputs; i++) {
		const dr_output_ref *o = &p->outputs[i];
		const char *kind = o->kind == DR_OUTPUT_TEXT ? "text" : "file";
		const char *url = o->kind == DR_OUTPUT_URL &&
						  strlen(o->value) <= 2048
					  ? o->value
					  : NULL;
		dr_status st = db_exec(
			db,
			"INSERT INTO outputs (job_id, idx, kind, source_url,"
			" source, source_kind, text, state, created_at)"
			" VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', NOW(6))"
			" ON DUPLICATE KEY UPDATE job_id = job_id",
			NULL, err, "sisssss", id, (int64_t)i, kind, url,
			o->kind == DR_OUTPUT_TEXT ? NULL : o->value,
			source_kind(o->kind),
			o->kind == DR_OUTPUT_TEXT ? o->value : NULL);

		if (st != DR_OK)
			return st;
	}
	return DR_OK;
}

enum { J_ID, J_STATUS, J_STEP, J_PRED, J_LEASE, J_PROGRESS };

/* Log a repeated delivery in its job's events (best effort: the delivery
 * has no effect either way). */
static void note_duplicate(dr_db *db, const char *adapter,
			   const dr_prediction *p, const char *delivery_id)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	char *detail;

	if (!p->id || db_query(db,
			       "SELECT id, status FROM jobs WHERE adapter = ?"
			       " AND prediction_id = ?",
			       &rows, &err, "ss", adapter, p->id) != DR_OK)
		return;
	if (rows->n_rows == 1) {
		detail = engine_detail("prediction_status",
				     pred_status_name(p->status), "delivery_id",
				     delivery_id, "duplicate", "true", NULL);
		if (engine_event(db, db_cell(rows, 0, 0), "webhook",
			      db_cell(rows, 0, 1), NULL, detail,
			      &err) != DR_OK)
			dr_log(DR_LOG_WARNING, "event=job.event_failed job=%s",
			       db_cell(rows, 0, 0));
		free(detail);
	}
	db_rows_free(rows);
}

/* 1 when `id` can be stored as a prediction id. */
static int prediction_id_ok(const char *id)
{
	size_t n = 0;

	for (; id[n]; n++)
		if (n >= MAX_PREDICTION_ID || id[n] < 0x21 || id[n] > 0x7e)
			return 0;
	return n > 0;
}

/* `s` as well-formed UTF-8 of at most `max_chars` characters (malloc), or
 * NULL for NULL. */
static char *column_text(const char *s, size_t max_chars)
{
	dr_buf b;

	if (!s)
		return NULL;
	dr_buf_init(&b, max_chars * 4);
	if (dr_buf_utf8(&b, s, max_chars) != DR_OK)
		dr_die("column text does not fit");
	return dr_buf_steal(&b);
}

/* Record delivery `id` of `adapter` in the open transaction: its SHA-256
 * is the key, its first MAX_DELIVERY_ID bytes are kept as they came.
 * DR_ERR_CONFLICT when it was recorded before. */
static dr_status record_delivery(dr_db *db, const char *adapter,
				 const char *id, dr_error *err)
{
	unsigned char key[32];
	unsigned int n = 0;
	size_t len = strlen(id);

	if (!EVP_Digest(id, len, key, &n, EVP_sha256(), NULL) ||
	    n != sizeof(key))
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "SHA-256 failed");
	return db_exec(db,
		       "INSERT INTO webhook_deliveries (adapter, delivery_key,"
		       " delivery_id, received_at) VALUES (?, ?, ?, NOW(6))",
		       NULL, err, "sbb", adapter, (const void *)key,
		       sizeof(key), (const void *)id,
		       len < MAX_DELIVERY_ID ? len : (size_t)MAX_DELIVERY_ID);
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
			      " lease_version, progress FROM jobs"
			      " WHERE adapter = ? AND prediction_id = ?"
			      " FOR UPDATE",
			      rows, err, "ss", adapter, pred_id);
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
			      " lease_version, progress FROM jobs"
			      " WHERE id = ? AND adapter = ? AND"
			      " ((prediction_id IS NULL AND step = 'submit'"
			      " AND (? = 0 OR TIMESTAMPDIFF(MICROSECOND,"
			      " FROM_UNIXTIME(0), submitted_at) = ?))"
			      " OR prediction_id = ?)"
			      " FOR UPDATE",
			      rows, err, "ssiis", hint, adapter, hint_at,
			      hint_at, pred_id ? pred_id : "");
	}
	return st;
}

static dr_status apply_once(dr_db *db, const dr_config *cfg,
			    const char *adapter, const char *job_hint,
			    int64_t hint_at, const dr_prediction *p,
			    const char *source, const char *delivery_id,
			    const dr_claim *fence, dr_apply_result *result,
			    char status_out[16], dr_error *err)
{
	dr_db_rows *rows = NULL;
	const char *cur, *next, *id;
	char *detail = NULL, *error_text = NULL, *version = NULL;
	char progress[32], predict_time[32];
	double old_progress, new_progress;
	int adopt, to_final = 0, to_persist = 0;
	dr_status st;

	*result = DR_APPLY_UNKNOWN;
	if (status_out)
		status_out[0] = '\0';
	if (p->id && !prediction_id_ok(p->id))
		return dr_fail(err, DR_ERR_INVALID, "bad_prediction_id",
			       "the prediction id is not 1 to %d printable "
			       "ASCII characters",
			       MAX_PREDICTION_ID);
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
		st = dr_fail(err, DR_ERR_CONFLICT, "lease_lost",
			     "the lease on the job was lost");
		goto rollback;
	}
	next = job_status_for(p->status);
	snprintf(predict_time, sizeof(predict_time), "%.3f", p->predict_time);
	/* Stale or repeated news, news for an ended job, and a provider's
	 * final word after it already said "succeeded" (the outputs are
	 * being stored) change nothing. */
	if (!next || is_final(cur) || rank(next) < rank(cur) ||
	    strcmp(cur, "persisting") == 0) {
		/* Stale, repeated or for a job that has ended. */
		detail = engine_detail("prediction_status",
				     pred_status_name(p->status), "delivery_id",
				     delivery_id, "ignored", "true", NULL);
		st = engine_event(db, id, source, cur, NULL, detail, err);
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
	to_persist = strcmp(next, "persisting") == 0;
	to_final = is_final(next);
	if (to_persist)
		new_progress = 1.0;
	snprintf(progress, sizeof(progress), "%.4f", new_progress);
	adopt = !db_cell(rows, 0, J_PRED) &&
		strcmp(db_cell(rows, 0, J_STEP), "submit") == 0;
	error_text = column_text(
		p->error ? p->error
			 : (p->status == DR_PRED_ABORTED
				    ? "the provider aborted the prediction "
				      "before it started"
				    : "the prediction failed"),
		MAX_ERROR_MESSAGE);
	version = column_text(p->version, MAX_VERSION);

	st = db_exec(
		db,
		"UPDATE jobs SET status = ?, prediction_id ="
		" COALESCE(prediction_id, ?), prediction_status = ?,"
		" prediction = COALESCE(?, prediction), predict_time ="
		" IF(? >= 0, ?, predict_time), progress = ?, version ="
		" COALESCE(?, version), updated_at = NOW(6),"
		" step = CASE WHEN ? THEN 'persist' WHEN ? THEN 'poll'"
		" ELSE step END,"
		" provider_deadline = IF(? AND provider_deadline IS NULL,"
		" NOW(6) + INTERVAL ? SECOND, provider_deadline),"
		" error_step = IF(? = 'failed', 'provider', error_step),"
		" error_code = IF(? = 'failed', ?, error_code),"
		" error_message = IF(? = 'failed', ?, error_message),"
		" completed_at = IF(?, NOW(6), completed_at),"
		" callback_state = IF(? AND callback_url IS NOT NULL,"
		" 'pending', callback_state),"
		" attempts = IF(?, 0, attempts),"
		" run_at = CASE WHEN ? THEN IF(callback_url IS NULL, NULL,"
		" NOW(6)) WHEN ? THEN NOW(6)"
		" WHEN ? THEN NOW(6) + INTERVAL ? MICROSECOND ELSE run_at END,"
		" lease_owner = IF(? OR ?, NULL, lease_owner),"
		" lease_version = lease_version + ?"
		" WHERE id = ?",
		NULL, err, "ssssssssiiiisssssiiiiiiiiiis", next, p->id,
		pred_status_name(p->status),
		p->raw_json && strlen(p->raw_json) <= MAX_STORED_PREDICTION
			? p->raw_json
			: NULL,
		predict_time, predict_time, progress, version,
		/* step */
		(int64_t)to_persist, (int64_t)adopt,
		/* provider_deadline */
		(int64_t)adopt, (int64_t)cfg->worker.provider_deadline,
		/* errors */
		next, next,
		p->status == DR_PRED_ABORTED ? "prediction_aborted"
					     : "prediction_failed",
		next, error_text,
		/* completed_at, callback_state, attempts, run_at, lease_owner */
		(int64_t)to_final, (int64_t)to_final, (int64_t)to_persist,
		(int64_t)to_final, (int64_t)to_persist,
		(int64_t)(adopt && !fence),
		(int64_t)(cfg->worker.poll_min * 1e6), (int64_t)to_final,
		(int64_t)to_persist,
		/* News from outside that ends the job or hands it to the
		 * pipeline fences out a worker still holding it (a poll,
		 * a cancel), so it cannot write over the new state. */
		(int64_t)(!fence && (to_final || to_persist)), id);
	if (st != DR_OK)
		goto rollback;
	if (to_persist) {
		st = record_outputs(db, id, p, err);
		if (st != DR_OK)
			goto rollback;
	}
	detail = engine_detail("prediction_status", pred_status_name(p->status),
			     "prediction_id", p->id, "delivery_id",
			     delivery_id, "progress", progress, NULL);
	st = engine_event(db, id, source, cur, strcmp(cur, next) ? next : NULL,
		       detail, err);
	if (st != DR_OK)
		goto rollback;
	*result = DR_APPLY_CHANGED;
	if (status_out)
		snprintf(status_out, 16, "%s", next);
commit:
	st = db_commit(db, err);
	if (st != DR_OK)
		db_rollback(db);
	if (st == DR_OK && *result == DR_APPLY_CHANGED && !is_final(cur) &&
	    strcmp(cur, "persisting") != 0 && (to_final || to_persist))
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
	return st;
rollback:
	db_rollback(db);
	db_rows_free(rows);
	free(detail);
	free(error_text);
	free(version);
	return st;
}

/* A deadlock (the job row locked by a client's cancel or retry, or by a
 * worker, while this delivery waits for it) rolled everything back,
 * including the delivery record: run the whole transaction again. */
dr_status engine_apply(dr_db *db, const dr_config *cfg, const char *adapter,
		       const char *job_hint, int64_t hint_at,
		       const dr_prediction *p,
		       const char *source, const char *delivery_id,
		       const dr_claim *fence, dr_apply_result *result,
		       char status_out[16], dr_error *err)
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

/* ----------------------------------------------------------------- steps */

/* A fenced single-statement write; a lost lease is logged and reported. */
static dr_status fenced_exec(dr_engine *e, const dr_claim *c, uint64_t n,
			     dr_status st, const dr_error *err)
{
	if (st == DR_OK && n != 1) {
		dr_log(DR_LOG_WARNING, "event=job.lease_lost job=%s step=%s",
		       c->id, c->step);
		return DR_ERR_CONFLICT;
	}
	if (st != DR_OK)
		dr_log(DR_LOG_ERR,
		       "event=job.write_failed job=%s step=%s status=\"%s\" "
		       "code=%s",
		       c->id, c->step, dr_strerror(st), err->code);
	(void)e;
	return st;
}

/* In an open transaction: lock the claimed job (if the lease is still
 * ours) and read its status now, which news may have moved since the
 * claim. 1 when locked, 0 when the lease is lost, -1 on error. */
static int lock_current(dr_engine *e, const dr_claim *c, char status[16],
			dr_error *err)
{
	dr_db_rows *rows = NULL;
	int r;

	if (db_query(e->db,
		     "SELECT status FROM jobs WHERE id = ? AND"
		     " lease_version = ? FOR UPDATE",
		     &rows, err, "su", c->id, c->lease_version) != DR_OK)
		return -1;
	r = rows->n_rows == 1;
	if (r)
		snprintf(status, 16, "%s", db_cell(rows, 0, 0));
	db_rows_free(rows);
	return r;
}

void engine_fail(dr_engine *e, const dr_claim *c, const char *step,
		 const char *code, const char *message)
{
	uint64_t n = 0;
	dr_error err;
	char *detail, *text;
	dr_status st;

	char cur[16] = "";
	int locked = 0;

	/* Messages carry provider text cut to a byte count: keep what the
	 * column holds, as well-formed UTF-8. */
	text = column_text(message ? message : "", MAX_ERROR_MESSAGE);
	message = text;
	dr_error_clear(&err);
	st = db_begin(e->db, &err);
	if (st == DR_OK) {
		locked = lock_current(e, c, cur, &err);
		if (locked < 0)
			st = err.status ? err.status : DR_ERR_DATABASE;
		else if (locked == 0 || is_final(cur))
			st = DR_ERR_CONFLICT; /* lost, or ended meanwhile */
	}
	if (st == DR_OK)
		st = db_exec(e->db,
			     "UPDATE jobs SET status = 'failed', error_step = ?,"
			     " error_code = ?, error_message = ?,"
			     " completed_at = NOW(6), updated_at = NOW(6),"
			     " callback_state = IF(callback_url IS NULL,"
			     " 'none', 'pending'),"
			     " run_at = IF(callback_url IS NULL, NULL, NOW(6)),"
			     " lease_owner = NULL"
			     " WHERE id = ? AND lease_version = ?",
			     &n, &err, "ssssu", step, code, message, c->id,
			     c->lease_version);
	if (st == DR_OK && n == 1) {
		detail = engine_detail("step", step, "code", code, "message",
				     message, NULL);
		st = engine_event(e->db, c->id, "status", cur, "failed", detail,
				  &err);
		free(detail);
	}
	if (st == DR_OK && n == 1)
		st = db_commit(e->db, &err);
	if (st != DR_OK || n != 1)
		db_rollback(e->db);
	free(text);
	if (st == DR_ERR_CONFLICT) {
		dr_log(DR_LOG_WARNING, "event=job.lease_lost job=%s step=%s",
		       c->id, c->step);
		return;
	}
	if (fenced_exec(e, c, n, st, &err) == DR_OK)
		dr_log(DR_LOG_NOTICE,
		       "event=job.failed job=%s step=%s code=%s adapter=%s",
		       c->id, step, code, c->adapter);
}

double engine_delay(double asked, double fallback)
{
	if (!isfinite(asked) || asked <= 0)
		return fallback;
	return asked > QUEUE_MAX_DELAY ? QUEUE_MAX_DELAY : asked;
}

void engine_retry(dr_engine *e, const dr_claim *c, double delay, int count,
		  int forget_submit, const dr_error *why)
{
	uint64_t n = 0;
	dr_error err;
	char *detail;
	char delay_s[32];
	dr_status st;

	if (count && c->attempts >= e->cfg->worker.max_attempts) {
		engine_fail(e, c, c->step, why->code[0] ? why->code : "failed",
			 why->message);
		return;
	}
	dr_error_clear(&err);
	delay = (double)queue_delay_us(delay) / 1e6; /* what is scheduled */
	snprintf(delay_s, sizeof(delay_s), "%.3f", delay);
	st = db_exec(e->db,
		     "UPDATE jobs SET run_at = NOW(6) + INTERVAL ? MICROSECOND,"
		     " lease_owner = NULL, updated_at = NOW(6),"
		     " attempts = IF(?, attempts, GREATEST(attempts, 1) - 1),"
		     " submitted_at = IF(?, NULL, submitted_at)"
		     " WHERE id = ? AND lease_version = ?",
		     &n, &err, "iiisu", queue_delay_us(delay), (int64_t)count,
		     (int64_t)forget_submit, c->id, c->lease_version);
	if (fenced_exec(e, c, n, st, &err) != DR_OK)
		return;
	detail = engine_detail("step", c->step, "code", why->code, "message",
			     why->message, "retry_in", delay_s, NULL);
	if (engine_event(e->db, c->id, "retry_scheduled", c->status, NULL, detail,
		      &err) != DR_OK)
		dr_log(DR_LOG_WARNING, "event=job.event_failed job=%s",
		       c->id);
	free(detail);
	dr_log(DR_LOG_INFO,
	       "event=job.retry job=%s step=%s code=%s delay=%.1f", c->id,
	       c->step, why->code[0] ? why->code : "-", delay);
}

/* Give the job back for its next poll in `delay` seconds. */
static void reschedule(dr_engine *e, const dr_claim *c, double delay)
{
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	st = queue_release(e->db, c, delay, &err);
	if (st == DR_ERR_CONFLICT)
		dr_log(DR_LOG_WARNING, "event=job.lease_lost job=%s step=%s",
		       c->id, c->step);
	else if (st != DR_OK)
		dr_log(DR_LOG_ERR, "event=job.write_failed job=%s step=%s",
		       c->id, c->step);
}

/* The delay before the next poll: a quarter of the prediction's age,
 * between poll_min and poll_max, with 10 % jitter. */
static double poll_delay(const dr_engine *e, const dr_claim *c)
{
	double age = c->submitted_at > 0 ? c->now - c->submitted_at : 0;
	double d = age / 4;
	unsigned char r = 0;

	if (d < e->cfg->worker.poll_min)
		d = e->cfg->worker.poll_min;
	if (d > e->cfg->worker.poll_max)
		d = e->cfg->worker.poll_max;
	if (ids_random(&r, 1) != DR_OK)
		r = 128;
	return d * (0.9 + 0.2 * r / 255.0);
}

static void make_view(dr_engine *e, const dr_claim *c, dr_job_view *v,
		      char *url, size_t urlsz)
{
	memset(v, 0, sizeof(*v));
	v->id = c->id;
	v->model = c->model;
	v->input_json = c->input;
	v->prediction_id = c->prediction_id;
	snprintf(url, urlsz, "%s/v1/hooks/%s?job=%s&at=%lld",
		 e->cfg->server.public_url, c->adapter, c->id,
		 (long long)c->submitted_us);
	v->webhook_url = url;
	v->attempt = c->attempts + 1;
	v->submitted_at = c->submitted_at;
}

/* Apply `p` from one of the worker's own calls; the lease must still be
 * ours. Returns the job's status afterwards in status. */
static dr_status apply_own(dr_engine *e, const dr_claim *c,
			   const dr_prediction *p, const char *source,
			   char status[16])
{
	dr_apply_result r;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	st = engine_apply(e->db, e->cfg, c->adapter, c->id, 0, p, source, NULL, c,
			  &r, status, &err);
	if (st == DR_OK && r == DR_APPLY_UNKNOWN) {
		/* Another job already owns this prediction id. */
		dr_log(DR_LOG_WARNING,
		       "event=job.prediction_taken job=%s prediction=%s "
		       "source=%s",
		       c->id, p->id ? p->id : "-", source);
		return DR_ERR_NOT_FOUND;
	}
	if (st == DR_ERR_CONFLICT)
		dr_log(DR_LOG_WARNING,
		       "event=job.lease_lost job=%s step=%s source=%s", c->id,
		       c->step, source);
	else if (st != DR_OK)
		dr_log(DR_LOG_ERR,
		       "event=job.apply_failed job=%s source=%s status=\"%s\"",
		       c->id, source, dr_strerror(st));
	return st;
}

static void step_cancel(dr_engine *e, dr_claim *c, struct dr_instance *inst)
{
	const dr_adapter_ops *ops = inst ? inst->plugin->desc->adapter : NULL;
	char cur[16] = "";
	uint64_t n = 0;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	if (ops && ops->cancel && c->prediction_id) {
		dr_job_view v;
		char url[MAX_WEBHOOK_URL];

		make_view(e, c, &v, url, sizeof(url));
		st = ops->cancel(inst->state, &v, &err);
		metrics_provider(e->db, c->adapter, st);
		if (st != DR_OK && err.retryable &&
		    c->attempts < e->cfg->worker.max_attempts) {
			engine_retry(e, c,
				     engine_delay(err.retry_after,
						  queue_backoff(e->cfg,
								c->attempts +
									1)),
				     1, 0, &err);
			return;
		}
		if (st != DR_OK)
			dr_log(DR_LOG_WARNING,
			       "event=job.cancel_at_provider_failed job=%s "
			       "code=%s",
			       c->id, err.code);
	}
	st = db_begin(e->db, &err);
	if (st == DR_OK) {
		int locked = lock_current(e, c, cur, &err);

		if (locked < 0)
			st = err.status ? err.status : DR_ERR_DATABASE;
		else if (locked == 0 || is_final(cur))
			st = DR_ERR_CONFLICT; /* lost, or ended meanwhile */
	}
	if (st == DR_OK)
		st = db_exec(e->db,
			     "UPDATE jobs SET status = 'canceled',"
			     " completed_at = NOW(6), updated_at = NOW(6),"
			     " callback_state = IF(callback_url IS NULL,"
			     " 'none', 'pending'),"
			     " run_at = IF(callback_url IS NULL, NULL, NOW(6)),"
			     " lease_owner = NULL"
			     " WHERE id = ? AND lease_version = ? AND status"
			     " NOT IN ('succeeded', 'failed', 'canceled')",
			     &n, &err, "su", c->id, c->lease_version);
	/* Canceled while persisting: the outputs the provider made are not
	 * stored, so their pending rows go with the job's end. */
	if (st == DR_OK && n == 1)
		st = db_exec(e->db,
			     "DELETE FROM outputs WHERE job_id = ? AND"
			     " state = 'pending'",
			     NULL, &err, "s", c->id);
	if (st == DR_OK && n == 1)
		st = engine_event(e->db, c->id, "status", cur, "canceled",
				  "{\"reason\":\"canceled by client\"}", &err);
	if (st == DR_OK && n == 1)
		st = db_commit(e->db, &err);
	if (st != DR_OK || n != 1)
		db_rollback(e->db);
	if (st == DR_ERR_CONFLICT) {
		dr_log(DR_LOG_WARNING, "event=job.lease_lost job=%s step=cancel",
		       c->id);
		return;
	}
	if (fenced_exec(e, c, n, st, &err) == DR_OK)
		dr_log(DR_LOG_INFO, "event=job.canceled job=%s adapter=%s",
		       c->id, c->adapter);
}

/* After a submit's answer: the job waits for news, polled as a safety
 * net. */
static void after_news(dr_engine *e, dr_claim *c, const char *status)
{
	if (is_final(status) || strcmp(status, "persisting") == 0)
		return; /* apply cleared run_at and the lease */
	reschedule(e, c, poll_delay(e, c));
}

static void step_submit(dr_engine *e, dr_claim *c, struct dr_instance *inst)
{
	const dr_adapter_ops *ops = inst->plugin->desc->adapter;
	dr_prediction p;
	dr_job_view v;
	char url[MAX_WEBHOOK_URL];
	char status[16];
	const char *resubmit = NULL; /* why an earlier attempt is repeated */
	char *detail;
	uint64_t n = 0;
	double t0;
	dr_error err;
	dr_status st;

	memset(&p, 0, sizeof(p));
	dr_error_clear(&err);
	make_view(e, c, &v, url, sizeof(url));
	if (c->submitted_at > 0 && !c->prediction_id) {
		resubmit = "no answer was recorded for the last attempt";
		/* An earlier attempt may have reached the provider without
		 * its answer being recorded (a crash, a timeout). */
		if (ops->reconcile) {
			st = ops->reconcile(inst->state, &v, &p, &err);
			metrics_provider(e->db, c->adapter, st);
			if (st == DR_OK) {
				st = apply_own(e, c, &p, "reconcile", status);
				engine_prediction_clear(&p);
				if (st == DR_OK)
					after_news(e, c, status);
				if (st != DR_ERR_NOT_FOUND)
					return;
				/* The match was another job's (identical
				 * input): ours was surely never created, or
				 * the list does not tell it apart. */
				resubmit = "the provider's prediction "
					   "matching this job is another job's";
			}
			engine_prediction_clear(&p);
			if (st != DR_ERR_NOT_FOUND) {
				engine_retry(e, c,
					     engine_delay(err.retry_after,
							  queue_backoff(
								  e->cfg,
								  c->attempts)),
					     0, 0, &err);
				return;
			}
		} else if (c->now < c->submitted_at + e->cfg->worker.submit_grace) {
			/* Give the provider's webhook (which names the job)
			 * time to arrive before submitting again. */
			reschedule(e, c,
				   c->submitted_at +
					   e->cfg->worker.submit_grace - c->now);
			return;
		}
		dr_log(DR_LOG_NOTICE,
		       "event=job.resubmit job=%s adapter=%s attempts=%d",
		       c->id, c->adapter, c->attempts);
	}

	/* Record the attempt before sending, so a crash after the send is
	 * reconciled instead of forgotten. Its start, to the microsecond,
	 * also names the attempt in the webhook URL. */
	{
		struct timespec ts;
		char at[40];

		clock_gettime(CLOCK_REALTIME, &ts);
		c->submitted_us = (int64_t)ts.tv_sec * 1000000 +
				  ts.tv_nsec / 1000;
		snprintf(at, sizeof(at), "%lld.%06lld",
			 (long long)(c->submitted_us / 1000000),
			 (long long)(c->submitted_us % 1000000));
		st = db_exec(e->db,
			     "UPDATE jobs SET submitted_at = FROM_UNIXTIME(?),"
			     " attempts = attempts + 1, updated_at = NOW(6)"
			     " WHERE id = ? AND lease_version = ?",
			     &n, &err, "ssu", at, c->id, c->lease_version);
	}
	if (fenced_exec(e, c, n, st, &err) != DR_OK)
		return;
	c->attempts++;
	/* The view's submitted_at keeps saying when an EARLIER attempt
	 * began (0 for none); the URL names this attempt. */
	make_view(e, c, &v, url, sizeof(url));
	v.attempt = c->attempts;
	c->submitted_at = (double)c->submitted_us / 1e6;
	detail = resubmit ? engine_detail("resubmit", resubmit, NULL) : NULL;
	if (engine_event(e->db, c->id, "submit", c->status, NULL, detail,
			 &err) != DR_OK)
		dr_log(DR_LOG_WARNING, "event=job.event_failed job=%s", c->id);
	free(detail);

	t0 = metrics_now();
	st = ops->submit(inst->state, &v, &p, &err);
	metrics_step(e->db, "submit", metrics_now() - t0);
	metrics_provider(e->db, c->adapter, st);
	if (st == DR_OK && !p.id) {
		st = dr_fail(&err, DR_ERR_PROVIDER, "no_prediction_id",
			     "the provider answered without a prediction id");
	} else if (st == DR_OK && !prediction_id_ok(p.id)) {
		st = dr_fail(&err, DR_ERR_PROVIDER, "bad_prediction_id",
			     "the provider's prediction id is not 1 to %d "
			     "printable ASCII characters",
			     MAX_PREDICTION_ID);
	}
	if (st == DR_OK) {
		if (apply_own(e, c, &p, "submit", status) == DR_OK)
			after_news(e, c, status);
		engine_prediction_clear(&p);
		return;
	}
	engine_prediction_clear(&p);
	dr_log(DR_LOG_WARNING,
	       "event=job.submit_failed job=%s adapter=%s status=\"%s\" "
	       "code=%s retryable=%d",
	       c->id, c->adapter, dr_strerror(st), err.code, err.retryable);
	if (st == DR_ERR_RATE_LIMITED) {
		/* The provider's delay becomes the job's run_at; it does not
		 * count as a try, and nothing was created. */
		engine_retry(e, c, engine_delay(err.retry_after, 5), 0, 1,
			     &err);
	} else if (err.retryable) {
		/* Surely not sent: safe to send again. */
		engine_retry(e, c, queue_backoff(e->cfg, c->attempts), 1, 1,
			    &err);
	} else if (st == DR_ERR_TIMEOUT || st == DR_ERR_PROVIDER ||
		   st == DR_ERR_NETWORK) {
		/* Maybe created: the next try reconciles first. */
		engine_retry(e, c, queue_backoff(e->cfg, c->attempts), 1, 0,
			    &err);
	} else {
		engine_fail(e, c, "submit", err.code[0] ? err.code : "submit_failed",
			 err.message);
	}
}

static void step_poll(dr_engine *e, dr_claim *c, struct dr_instance *inst)
{
	const dr_adapter_ops *ops = inst->plugin->desc->adapter;
	dr_prediction p;
	dr_job_view v;
	char url[MAX_WEBHOOK_URL];
	char status[16];
	dr_error err;
	dr_status st;

	memset(&p, 0, sizeof(p));
	dr_error_clear(&err);
	make_view(e, c, &v, url, sizeof(url));
	if (c->provider_deadline > 0 && c->now >= c->provider_deadline) {
		if (ops->cancel && c->prediction_id &&
		    ops->cancel(inst->state, &v, &err) != DR_OK)
			dr_log(DR_LOG_WARNING,
			       "event=job.cancel_at_provider_failed job=%s",
			       c->id);
		engine_fail(e, c, "provider", "provider_deadline",
			 "no final answer from the provider before the "
			 "deadline");
		return;
	}
	if (!ops->get || !c->prediction_id) {
		/* A provider that only pushes: wait for its webhook. */
		reschedule(e, c,
			   c->provider_deadline > 0
				   ? c->provider_deadline - c->now
				   : e->cfg->worker.poll_max);
		return;
	}
	st = ops->get(inst->state, &v, &p, &err);
	metrics_provider(e->db, c->adapter, st);
	if (st == DR_OK) {
		if (apply_own(e, c, &p, "poll", status) == DR_OK)
			after_news(e, c, status);
		engine_prediction_clear(&p);
		return;
	}
	engine_prediction_clear(&p);
	dr_log(DR_LOG_WARNING,
	       "event=job.poll_failed job=%s adapter=%s status=\"%s\" code=%s",
	       c->id, c->adapter, dr_strerror(st), err.code);
	/* Polls never fail a job: the provider deadline does, so no wait
	 * the provider asks for runs past it. */
	{
		double d = engine_delay(err.retry_after, poll_delay(e, c));

		if (c->provider_deadline > 0 &&
		    d > c->provider_deadline - c->now)
			d = c->provider_deadline > c->now
				    ? c->provider_deadline - c->now
				    : 0;
		reschedule(e, c, d);
	}
}

/* Nothing is due: take the job off the queue. */
static void park(dr_engine *e, dr_claim *c)
{
	uint64_t n = 0;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	st = db_exec(e->db,
		     "UPDATE jobs SET run_at = NULL, lease_owner = NULL"
		     " WHERE id = ? AND lease_version = ?",
		     &n, &err, "su", c->id, c->lease_version);
	(void)fenced_exec(e, c, n, st, &err);
}

/* Count a try of a step that has no other place to count it. */
static dr_status count_attempt(dr_engine *e, dr_claim *c)
{
	uint64_t n = 0;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	st = db_exec(e->db,
		     "UPDATE jobs SET attempts = attempts + 1"
		     " WHERE id = ? AND lease_version = ?",
		     &n, &err, "su", c->id, c->lease_version);
	st = fenced_exec(e, c, n, st, &err);
	if (st == DR_OK)
		c->attempts++;
	return st;
}

void engine_run(dr_engine *e, dr_claim *c)
{
	struct dr_instance *inst = plugins_adapter(e->plugins, c->adapter);

	if (is_final(c->status)) {
		/* An ended job is due only for its client callback. */
		if (strcmp(c->callback_state, "pending") == 0)
			callback_deliver(e, c);
		else
			park(e, c);
		return;
	}
	if (c->abandoned >= ENGINE_MAX_ABANDONED) {
		/* Running the step again would most likely kill this worker
		 * too: the job ends here, and the supervisor has already
		 * replaced the workers that died. */
		char msg[160];

		snprintf(msg, sizeof(msg),
			 "the worker running step '%s' died or stalled %d "
			 "times in a row (adapter %s)",
			 c->step, c->abandoned, c->adapter);
		dr_log(DR_LOG_ERR,
		       "event=job.worker_crashed job=%s step=%s adapter=%s "
		       "abandoned=%d",
		       c->id, c->step, c->adapter, c->abandoned);
		engine_fail(e, c, c->step, "worker_crashed", msg);
		return;
	}
	if (c->cancel_requested) {
		step_cancel(e, c, inst);
		return;
	}
	if (strcmp(c->step, "persist") == 0) {
		if (count_attempt(e, c) == DR_OK)
			pipeline_persist(e, c);
		return;
	}
	if (!inst) {
		engine_fail(e, c, c->step, "adapter_missing",
			    "the job's adapter is no longer configured");
		return;
	}
	if (strcmp(c->step, "submit") == 0)
		step_submit(e, c, inst);
	else if (strcmp(c->step, "poll") == 0)
		step_poll(e, c, inst);
	else
		engine_fail(e, c, c->step, "unknown_step",
			    "the job is at a step this darkroom does not know");
}
