/*
 * jobstate.c - job statuses, their moves, events and job row writes (see
 * jobstate.h).
 *
 * Every way a job ends (failed, canceled, succeeded; by a worker, by its
 * client, by provider news) sets the same columns: JOB_ENDS below. A
 * worker's write names its lease_version in the WHERE clause, so a stale
 * lease changes nothing.
 */
#include "jobstate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blobs.h"
#include "buf.h"
#include "ids.h"
#include "log.h"
#include "queue.h"

static const char *const names[DR_JOB_STATUSES] = {
	"queued",    "starting", "processing", "persisting",
	"succeeded", "failed",	 "canceled",
};

/* The columns every end of a job sets: when it ended, and its callback
 * (when it has a callback_url) due now; open_delivery() then makes the
 * delivery that callback is. */
#define JOB_ENDS                                                               \
	" completed_at = NOW(6), updated_at = NOW(6),"                         \
	" run_at = IF(callback_url IS NULL, NULL, NOW(6)),"                    \
	" lease_owner = NULL"

/* The webhook-id of the delivery of a job's end (the job row as `j`):
 * the job id and when it ended, so a new end is a new message. Deliveries
 * made before migration 0011 have ids of the same form. */
#define END_MSG_ID                                                             \
	"CONCAT('msg_', j.id, '_',"                                            \
	" REPLACE(UNIX_TIMESTAMP(j.completed_at), '.', '_'))"

/* The latest delivery of job `j.id`, as a subquery's tail. */
#define LATEST_DELIVERY                                                        \
	" FROM callback_deliveries d WHERE d.job_id = j.id"                    \
	" AND d.type LIKE 'job.%'"                                             \
	" ORDER BY d.created_at DESC, d.id DESC LIMIT 1"

const char *jobstate_name(dr_job_status s)
{
	if ((int)s < 0 || (int)s >= DR_JOB_STATUSES)
		return "unknown";
	return names[s];
}

int jobstate_parse(const char *s, dr_job_status *out)
{
	for (int i = 0; s && i < DR_JOB_STATUSES; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (dr_job_status)i;
			return 1;
		}
	return 0;
}

int jobstate_is_final(dr_job_status s)
{
	return s == DR_JOB_SUCCEEDED || s == DR_JOB_FAILED ||
	       s == DR_JOB_CANCELED;
}

int jobstate_rank(dr_job_status s)
{
	return jobstate_is_final(s) ? 4 : (int)s;
}

int jobstate_allowed(dr_job_status from, dr_job_status to)
{
	if ((int)from < 0 || (int)from >= DR_JOB_STATUSES || (int)to < 0 ||
	    (int)to >= DR_JOB_STATUSES || from == to)
		return 0;
	switch (from) {
	case DR_JOB_QUEUED:
	case DR_JOB_STARTING:
	case DR_JOB_PROCESSING:
		/* Forward on the prediction's path, or an end; succeeded
		 * only ever comes from persisting. */
		return to == DR_JOB_FAILED || to == DR_JOB_CANCELED ||
		       (to != DR_JOB_SUCCEEDED && to > from);
	case DR_JOB_PERSISTING:
		return jobstate_is_final(to);
	case DR_JOB_FAILED:
		/* A client's retry: from the start, or from storing. */
		return to == DR_JOB_QUEUED || to == DR_JOB_PERSISTING;
	case DR_JOB_CANCELED:
		return to == DR_JOB_QUEUED;
	case DR_JOB_SUCCEEDED:
	default:
		return 0;
	}
}

dr_status jobstate_event(dr_db *db, const char *id, const char *kind,
			 const char *from, const char *to, const char *detail,
			 dr_error *err)
{
	return db_exec(db,
		       "INSERT INTO job_events (job_id, at, kind, from_status,"
		       " to_status, detail) VALUES (?, NOW(6), ?, ?, ?, ?)",
		       NULL, err,
		       DB_ARGS(DB_STR(id), DB_STR(kind), DB_STR(from),
			       DB_STR(to), DB_STR(detail)));
}

dr_status jobstate_events_created(dr_db *db, const char *const *ids, size_t n,
				  const char *detail, dr_error *err)
{
	static char *cache[3];
	dr_db_arg *args = dr_xcalloc(2 * n + 1, sizeof(*args));
	dr_status st;

	for (size_t i = 0; i < n; i++) {
		args[2 * i] = DB_STR(ids[i]);
		args[2 * i + 1] = DB_STR(detail);
	}
	st = db_insert_rows(db,
			    "INSERT INTO job_events (job_id, at, kind,"
			    " from_status, to_status, detail)",
			    "(?, NOW(6), 'created', NULL, 'queued', ?)", 2,
			    args, n, cache, err);
	free(args);
	return st;
}

/*
 * Batch `batch` completes now, with the end of its job `id` (the batch
 * row locked, in the caller's transaction). With a callback_url, its
 * batch.completed message is owed: a delivery pending and due now, its
 * webhook-id "msg_<batch id>" (one message per batch, ever: the primary
 * key makes a second one impossible), carried by job `id` (the worker
 * delivers callbacks as a job's steps: the job is due now, and stays
 * due while any delivery of it is pending; see jobstate_callback_tried).
 */
static dr_status complete_batch(dr_db *db, const char *batch, const char *id,
				dr_error *err)
{
	uint64_t n = 0;
	dr_status st = db_exec(db,
			       "UPDATE batches SET completed_at = NOW(6)"
			       " WHERE id = ? AND completed_at IS NULL",
			       NULL, err, DB_ARGS(DB_STR(batch)));

	if (st == DR_OK)
		st = db_exec(
			db,
			"INSERT INTO callback_deliveries (id, type, job_id,"
			" url, state, attempts, next_at, created_at)"
			" SELECT CONCAT('msg_', b.id), 'batch.completed',"
			" ?, b.callback_url, 'pending', 0, NOW(6), NOW(6)"
			" FROM batches b WHERE b.id = ?"
			" AND b.callback_url IS NOT NULL",
			&n, err, DB_ARGS(DB_STR(id), DB_STR(batch)));
	if (st == DR_OK && n)
		st = db_exec(db, "UPDATE jobs SET run_at = NOW(6) WHERE id = ?",
			     NULL, err, DB_ARGS(DB_STR(id)));
	return st;
}

/*
 * In the caller's transaction, right after job `id` ended: when the job
 * belongs to a batch that has not completed and no job of it is left
 * running, the batch completes now (completed_at, set once).
 *
 * Two jobs of a batch ending at once must complete it exactly once, and
 * at least once: the batch row is locked first (FOR UPDATE), so the ends
 * of one batch take turns here. The one that goes first counts the
 * other's job as running (its end is not committed: READ COMMITTED, a
 * plain read, no lock taken on the other's job, so no deadlock) and
 * leaves the batch; the other, once the first has committed, counts
 * again in a statement of its own, sees every job ended, and completes
 * it. The order of locks is the same everywhere: the job row first (the
 * caller's), then the batch.
 */
static dr_status close_batch(dr_db *db, const char *id, dr_error *err)
{
	dr_db_rows *rows = NULL;
	char batch[DR_JOB_ID_LEN + 1];
	dr_status st;

	st = db_query(db, "SELECT batch_id FROM jobs WHERE id = ?", &rows, err,
		      DB_ARGS(DB_STR(id)));
	if (st != DR_OK || rows->n_rows != 1 || !db_cell(rows, 0, 0)) {
		db_rows_free(rows);
		return st;
	}
	snprintf(batch, sizeof(batch), "%s", db_cell(rows, 0, 0));
	db_rows_free(rows);
	rows = NULL;
	st = db_query(db,
		      "SELECT id FROM batches WHERE id = ? AND completed_at"
		      " IS NULL FOR UPDATE",
		      &rows, err, DB_ARGS(DB_STR(batch)));
	if (st == DR_OK && rows->n_rows == 1) {
		db_rows_free(rows);
		rows = NULL;
		st = db_query(db,
			      "SELECT 1 FROM jobs WHERE batch_id = ? AND status"
			      " IN ('queued', 'starting', 'processing',"
			      " 'persisting') LIMIT 1",
			      &rows, err, DB_ARGS(DB_STR(batch)));
		if (st == DR_OK && rows->n_rows == 0)
			st = complete_batch(db, batch, id, err);
	}
	db_rows_free(rows);
	return st;
}

static dr_status open_delivery(dr_db *db, const char *id, dr_error *err);

/* The statuses a workflow takes from step k of n in status `s`
 * (follow_step()); *next_due: the next step is due now. Returns 0 when the
 * step's status moves nothing (queued: not started, or started again). */
static int workflow_status(dr_job_status s, int k, int n, dr_job_status *to,
			   int *next_due)
{
	int last = k == n - 1;

	*next_due = 0;
	switch (s) {
	case DR_JOB_STARTING:
		*to = k == 0 ? DR_JOB_STARTING : DR_JOB_PROCESSING;
		return 1;
	case DR_JOB_PROCESSING:
		*to = DR_JOB_PROCESSING;
		return 1;
	case DR_JOB_PERSISTING:
		*to = last ? DR_JOB_PERSISTING : DR_JOB_PROCESSING;
		return 1;
	case DR_JOB_SUCCEEDED:
		*to = last ? DR_JOB_SUCCEEDED : DR_JOB_PROCESSING;
		*next_due = !last;
		return 1;
	case DR_JOB_FAILED:
	case DR_JOB_CANCELED:
		*to = s;
		return 1;
	default:
		return 0;
	}
}

/*
 * In the caller's transaction, right after job `id` moved, its row
 * locked: when it is a step of a workflow, the workflow follows (its row
 * locked next: a step's row before its workflow's, everywhere). The
 * workflow's status only moves forward: starting with its first step's
 * submit, processing while a step before the last runs (and between
 * steps), then its last step's persisting and succeeded. A step that
 * succeeds makes the next one due now, in this transaction: a worker
 * killed between steps leaves nothing undone and nothing to do twice. A
 * step that fails or is canceled ends the workflow so, with the step's
 * error, and step_name (the workflow's error.workflow_step) naming it.
 * The workflow's end is an end like any other (open_delivery()). A
 * workflow that has ended does not move (a client's retry restarts it,
 * jobstate_client_retry()).
 */
static dr_status follow_step(dr_db *db, const char *id, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_job_status cs, ps, to;
	char parent[DR_JOB_ID_LEN + 1], progress[32];
	const char *name;
	int k, n, next_due;
	char *detail = NULL;
	dr_status st;

	st = db_query(db,
		      "SELECT c.parent_id, c.step_index, c.status, c.step_name,"
		      " c.error_step, c.error_code, c.error_message, p.status,"
		      " (SELECT COUNT(*) FROM jobs s WHERE s.parent_id ="
		      " c.parent_id), COALESCE(c.progress, 0),"
		      " p.cancel_requested, (SELECT s.step_name FROM jobs s"
		      " WHERE s.parent_id = c.parent_id AND s.step_index ="
		      " c.step_index + 1) FROM jobs c JOIN jobs p ON p.id ="
		      " c.parent_id WHERE c.id = ? FOR UPDATE",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK || rows->n_rows != 1)
		goto out;
	snprintf(parent, sizeof(parent), "%s", db_cell(rows, 0, 0));
	k = (int)strtol(db_cell(rows, 0, 1), NULL, 10);
	n = (int)strtol(db_cell(rows, 0, 8), NULL, 10);
	name = db_cell(rows, 0, 3);
	if (!jobstate_parse(db_cell(rows, 0, 2), &cs) ||
	    !jobstate_parse(db_cell(rows, 0, 7), &ps) ||
	    jobstate_is_final(ps) || !workflow_status(cs, k, n, &to, &next_due))
		goto out;
	if (next_due && strcmp(db_cell(rows, 0, 10), "0") != 0) {
		/* Its client canceled the workflow while this step was
		 * finishing (its end won the race with the cancel): the
		 * workflow ends canceled before the next step, which never
		 * runs. */
		next_due = 0;
		to = DR_JOB_CANCELED;
		name = db_cell(rows, 0, 11);
	}
	if (next_due)
		st = db_exec(db,
			     "UPDATE jobs SET run_at = NOW(6),"
			     " updated_at = NOW(6) WHERE parent_id = ?"
			     " AND step_index = ? AND status = 'queued'",
			     NULL, err,
			     DB_ARGS(DB_STR(parent), DB_INT((int64_t)k + 1)));
	/* The workflow's progress: its steps done, and this one's share. */
	snprintf(progress, sizeof(progress), "%.4f",
		 (k + (cs == DR_JOB_SUCCEEDED
			       ? 1.0
			       : strtod(db_cell(rows, 0, 9), NULL))) /
			 n);
	if (st == DR_OK && !jobstate_is_final(to) &&
	    jobstate_rank(to) <= jobstate_rank(ps)) {
		st = db_exec(db,
			     "UPDATE jobs SET progress = ?, updated_at = NOW(6)"
			     " WHERE id = ?",
			     NULL, err,
			     DB_ARGS(DB_STR(progress), DB_STR(parent)));
		goto out;
	}
	if (st != DR_OK)
		goto out;
	if (to == DR_JOB_FAILED)
		st = db_exec(db,
			     "UPDATE jobs SET status = 'failed',"
			     " error_step = ?, error_code = ?,"
			     " error_message = ?, step_name = ?," JOB_ENDS
			     " WHERE id = ?",
			     NULL, err,
			     DB_ARGS(DB_STR(db_cell(rows, 0, 4)),
				     DB_STR(db_cell(rows, 0, 5)),
				     DB_STR(db_cell(rows, 0, 6)), DB_STR(name),
				     DB_STR(parent)));
	else if (to == DR_JOB_CANCELED)
		st = db_exec(db,
			     "UPDATE jobs SET status = 'canceled',"
			     " step_name = ?," JOB_ENDS " WHERE id = ?",
			     NULL, err, DB_ARGS(DB_STR(name), DB_STR(parent)));
	else if (to == DR_JOB_SUCCEEDED)
		st = db_exec(db,
			     "UPDATE jobs SET status = 'succeeded',"
			     " step = 'done', progress = 1," JOB_ENDS
			     " WHERE id = ?",
			     NULL, err, DB_ARGS(DB_STR(parent)));
	else
		st = db_exec(db,
			     "UPDATE jobs SET status = ?, progress = ?,"
			     " updated_at = NOW(6) WHERE id = ?",
			     NULL, err,
			     DB_ARGS(DB_STR(jobstate_name(to)),
				     DB_STR(progress), DB_STR(parent)));
	if (st == DR_OK && jobstate_is_final(to))
		st = open_delivery(db, parent, err);
	if (st == DR_OK) {
		detail = jobstate_detail("workflow_step", name, "step_status",
					 jobstate_name(cs), NULL);
		st = jobstate_event(db, parent, "status", jobstate_name(ps),
				    jobstate_name(to), detail, err);
	}
out:
	free(detail);
	db_rows_free(rows);
	return st;
}

/* In the caller's transaction, right after job `id` ended: when it has a
 * callback_url, the delivery of its end, pending and due now; its
 * batch's completion (close_batch()); and its workflow's move when it is
 * a step (follow_step()). */
static dr_status open_delivery(dr_db *db, const char *id, dr_error *err)
{
	dr_status st = db_exec(
		db,
		"INSERT INTO callback_deliveries (id, type, job_id, url,"
		" state, attempts, next_at, created_at)"
		" SELECT " END_MSG_ID ", CONCAT('job.', j.status), j.id,"
		" j.callback_url, 'pending', 0, NOW(6), NOW(6)"
		" FROM jobs j WHERE j.id = ? AND j.callback_url IS NOT"
		" NULL AND j.completed_at IS NOT NULL",
		NULL, err, DB_ARGS(DB_STR(id)));

	if (st == DR_OK)
		st = close_batch(db, id, err);
	/* Due for every pending delivery it carries, whatever its own
	 * callback_url: the batch.completed it opened now, or on an end
	 * before a client's retry, which this end must not leave waiting
	 * with nothing to send it. */
	if (st == DR_OK)
		st = jobstate_due_for_deliveries(db, id, err);
	if (st == DR_OK)
		st = follow_step(db, id, err);
	return st;
}

dr_status jobstate_due_for_deliveries(dr_db *db, const char *id, dr_error *err)
{
	return db_exec(db,
		       "UPDATE jobs SET run_at = (SELECT MIN(d.next_at)"
		       " FROM callback_deliveries d WHERE d.job_id = ?"
		       " AND d.state = 'pending') WHERE id = ?"
		       " AND completed_at IS NOT NULL",
		       NULL, err, DB_ARGS(DB_STR(id), DB_STR(id)));
}

char *jobstate_detail(const char *key, ...)
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

char *jobstate_column_text(const char *s, size_t max_chars)
{
	dr_buf b;

	if (!s)
		return NULL;
	dr_buf_init(&b, max_chars * 4);
	if (dr_buf_utf8(&b, s, max_chars) != DR_OK)
		dr_die("column text does not fit");
	return dr_buf_steal(&b);
}

static dr_status lease_lost(dr_error *err)
{
	return queue_fenced(DR_OK, 0, err);
}

/* In an open transaction: lock job `id` if lease `fence` still holds and
 * it has not ended, and read its status now (news may have moved it since
 * the claim). DR_ERR_CONFLICT when lost or ended. */
static dr_status lock_running(dr_db *db, const char *id, uint64_t fence,
			      char status[16], dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_job_status s;
	dr_status st;

	st = db_query(db,
		      "SELECT status FROM jobs WHERE id = ? AND"
		      " lease_version = ? FOR UPDATE",
		      &rows, err, DB_ARGS(DB_STR(id), DB_U64(fence)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows != 1 || !jobstate_parse(db_cell(rows, 0, 0), &s) ||
	    jobstate_is_final(s))
		st = lease_lost(err); /* lost, or ended meanwhile */
	else
		snprintf(status, 16, "%s", jobstate_name(s));
	db_rows_free(rows);
	return st;
}

dr_status jobstate_fail(dr_db *db, const char *id, uint64_t fence,
			const char *step, const char *code, const char *message,
			char from[16], dr_error *err)
{
	char cur[16] = "";
	char *detail = NULL, *text;
	uint64_t n = 0;
	dr_status st;

	/* Messages carry provider text cut to a byte count: keep what the
	 * column holds, as well-formed UTF-8. */
	text = jobstate_column_text(message ? message : "",
				    JOBSTATE_MAX_ERROR_MESSAGE);
	st = db_begin(db, err);
	if (st != DR_OK)
		goto out;
	st = lock_running(db, id, fence, cur, err);
	if (st == DR_OK) {
		st = db_exec(db,
			     "UPDATE jobs SET status = 'failed',"
			     " error_step = ?, error_code = ?,"
			     " error_message = ?," JOB_ENDS
			     " WHERE id = ? AND lease_version = ?",
			     &n, err,
			     DB_ARGS(DB_STR(step), DB_STR(code), DB_STR(text),
				     DB_STR(id), DB_U64(fence)));
		st = queue_fenced(st, n, err);
	}
	if (st == DR_OK)
		st = open_delivery(db, id, err);
	if (st == DR_OK) {
		detail = jobstate_detail("step", step, "code", code, "message",
					 text, NULL);
		st = jobstate_event(db, id, "status", cur,
				    jobstate_name(DR_JOB_FAILED), detail, err);
	}
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK)
		db_rollback(db);
out:
	if (from)
		snprintf(from, 16, "%s", cur);
	free(detail);
	free(text);
	return st;
}

dr_status jobstate_retry(dr_db *db, const char *id, uint64_t fence,
			 const jobstate_retry_opts *o, double *scheduled,
			 dr_error *err)
{
	int64_t us = queue_delay_us(o->delay);
	double delay = (double)us / 1e6;
	char delay_s[32];
	char *detail;
	uint64_t n = 0;
	dr_error ev;
	dr_status st;

	if (scheduled)
		*scheduled = delay;
	snprintf(delay_s, sizeof(delay_s), "%.3f", delay);
	st = db_exec(db,
		     "UPDATE jobs SET run_at = NOW(6) + INTERVAL ? MICROSECOND,"
		     " lease_owner = NULL, updated_at = NOW(6),"
		     " attempts = IF(?, attempts, GREATEST(attempts, 1) - 1),"
		     " submitted_at = IF(?, NULL, submitted_at)"
		     " WHERE id = ? AND lease_version = ?",
		     &n, err,
		     DB_ARGS(DB_INT(us), DB_INT((int64_t)o->count_attempt),
			     DB_INT((int64_t)o->forget_submit), DB_STR(id),
			     DB_U64(fence)));
	st = queue_fenced(st, n, err);
	if (st != DR_OK)
		return st;
	detail = jobstate_detail("step", o->step, "code",
				 o->why ? o->why->code : NULL, "message",
				 o->why ? o->why->message : NULL, "retry_in",
				 delay_s, NULL);
	if (jobstate_event(db, id, "retry_scheduled", o->from, NULL, detail,
			   &ev) != DR_OK)
		dr_log(DR_LOG_WARNING, "event=job.event_failed job=%s", id);
	free(detail);
	return DR_OK;
}

dr_status jobstate_succeed(dr_db *db, const char *id, uint64_t fence,
			   dr_error *err)
{
	uint64_t n = 0;
	dr_status st;

	st = db_exec(db,
		     "UPDATE jobs SET status = 'succeeded', step = 'done',"
		     " progress = 1," JOB_ENDS
		     " WHERE id = ? AND lease_version = ?"
		     " AND status = 'persisting'",
		     &n, err, DB_ARGS(DB_STR(id), DB_U64(fence)));
	st = queue_fenced(st, n, err);
	if (st == DR_OK)
		st = open_delivery(db, id, err);
	if (st == DR_OK)
		st = jobstate_event(db, id, "status",
				    jobstate_name(DR_JOB_PERSISTING),
				    jobstate_name(DR_JOB_SUCCEEDED), NULL, err);
	return st;
}

dr_status jobstate_cancel(dr_db *db, const char *id, uint64_t fence,
			  char from[16], dr_error *err)
{
	char cur[16] = "";
	uint64_t n = 0;
	dr_status st;

	st = db_begin(db, err);
	if (st != DR_OK)
		goto out;
	st = lock_running(db, id, fence, cur, err);
	if (st == DR_OK) {
		st = db_exec(db,
			     "UPDATE jobs SET status = 'canceled'," JOB_ENDS
			     " WHERE id = ? AND lease_version = ?",
			     &n, err, DB_ARGS(DB_STR(id), DB_U64(fence)));
		st = queue_fenced(st, n, err);
	}
	if (st == DR_OK)
		st = open_delivery(db, id, err);
	/* Canceled while persisting: the outputs the provider made are not
	 * stored, so their pending rows go with the job's end. */
	if (st == DR_OK)
		st = db_exec(db,
			     "DELETE FROM outputs WHERE job_id = ? AND"
			     " state = 'pending'",
			     NULL, err, DB_ARGS(DB_STR(id)));
	/* And the files a webhook carried for them (a retry runs the
	 * prediction again). */
	if (st == DR_OK)
		st = blobs_delete_job(db, id, err);
	if (st == DR_OK)
		st = jobstate_event(db, id, "status", cur,
				    jobstate_name(DR_JOB_CANCELED),
				    "{\"reason\":\"canceled by client\"}", err);
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK)
		db_rollback(db);
out:
	if (from)
		snprintf(from, 16, "%s", cur);
	return st;
}

dr_status jobstate_submitting(dr_db *db, const char *id, uint64_t fence,
			      const char *at, dr_error *err)
{
	uint64_t n = 0;
	dr_status st = db_exec(
		db,
		"UPDATE jobs SET submitted_at = FROM_UNIXTIME(?),"
		" attempts = attempts + 1, updated_at = NOW(6)"
		" WHERE id = ? AND lease_version = ?",
		&n, err, DB_ARGS(DB_STR(at), DB_STR(id), DB_U64(fence)));

	return queue_fenced(st, n, err);
}

dr_status jobstate_count_attempt(dr_db *db, const char *id, uint64_t fence,
				 dr_error *err)
{
	uint64_t n = 0;
	dr_status st = db_exec(db,
			       "UPDATE jobs SET attempts = attempts + 1"
			       " WHERE id = ? AND lease_version = ?",
			       &n, err, DB_ARGS(DB_STR(id), DB_U64(fence)));

	return queue_fenced(st, n, err);
}

dr_status jobstate_park(dr_db *db, const char *id, uint64_t fence,
			dr_error *err)
{
	uint64_t n = 0;
	dr_status st =
		db_exec(db,
			"UPDATE jobs SET run_at = NULL, lease_owner = NULL"
			" WHERE id = ? AND lease_version = ?",
			&n, err, DB_ARGS(DB_STR(id), DB_U64(fence)));

	return queue_fenced(st, n, err);
}

dr_status jobstate_callback_tried(dr_db *db, const char *id, uint64_t fence,
				  const jobstate_callback_try *t, dr_error *err)
{
	int pending = strcmp(t->state, "pending") == 0;
	int64_t next_us = pending ? queue_delay_us(t->delay) : 0;
	int64_t took_us = t->duration > 0 ? (int64_t)(t->duration * 1e6) : 0;
	char *text = jobstate_column_text(t->error, JOBSTATE_MAX_ERROR_MESSAGE);
	uint64_t n = 0;
	dr_status st;

	st = db_begin(db, err);
	if (st != DR_OK)
		goto out;
	/* The job's place in the queue: the fence. */
	st = db_exec(db,
		     "UPDATE jobs SET run_at = IF(?, NOW(6) + INTERVAL ?"
		     " MICROSECOND, NULL), lease_owner = NULL"
		     " WHERE id = ? AND lease_version = ?",
		     &n, err,
		     DB_ARGS(DB_INT((int64_t)pending), DB_INT(next_us),
			     DB_STR(id), DB_U64(fence)));
	st = queue_fenced(st, n, err);
	if (st == DR_OK)
		st = db_exec(
			db,
			"UPDATE callback_deliveries SET"
			" attempts = attempts + 1, state = ?,"
			" last_status = NULLIF(?, 0), last_error = ?,"
			" next_at = IF(?, NOW(6) + INTERVAL ? MICROSECOND,"
			" NULL), delivered_at = IF(? = 'delivered',"
			" NOW(6), delivered_at)"
			" WHERE id = ? AND job_id = ? AND state = 'pending'",
			&n, err,
			DB_ARGS(DB_STR(t->state), DB_INT((int64_t)t->http),
				DB_STR(text), DB_INT((int64_t)pending),
				DB_INT(next_us), DB_STR(t->state),
				DB_STR(t->delivery), DB_STR(id)));
	/* A delivery no longer pending was re-armed or dropped by the
	 * job's client meanwhile, which also moved the fence: lost. */
	if (st == DR_OK)
		st = queue_fenced(st, n, err);
	if (st == DR_OK)
		st = db_exec(db,
			     "INSERT INTO callback_attempts (delivery_id,"
			     " attempt, started_at, duration_ms, http_status,"
			     " error) SELECT id, attempts,"
			     " NOW(6) - INTERVAL ? MICROSECOND, ?,"
			     " NULLIF(?, 0), ? FROM callback_deliveries"
			     " WHERE id = ?",
			     NULL, err,
			     DB_ARGS(DB_INT(took_us), DB_INT(took_us / 1000),
				     DB_INT((int64_t)t->http), DB_STR(text),
				     DB_STR(t->delivery)));
	/* The job stays due while another delivery it carries is pending
	 * (a batch's batch.completed beside the job's own end). */
	if (st == DR_OK)
		st = jobstate_due_for_deliveries(db, id, err);
	if (st == DR_OK && t->detail)
		st = jobstate_event(db, id, "callback", t->from, NULL,
				    t->detail, err);
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK && db_in_transaction(db))
		db_rollback(db);
out:
	free(text);
	return st;
}

dr_status jobstate_news_write(dr_db *db, const char *id, const jobstate_news *n,
			      dr_error *err)
{
	const char *next = jobstate_name(n->to);
	int to_final = jobstate_is_final(n->to);
	int to_persist = n->to == DR_JOB_PERSISTING;
	dr_status st;

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
		" attempts = IF(?, 0, attempts),"
		" run_at = CASE WHEN ? THEN IF(callback_url IS NULL, NULL,"
		" NOW(6)) WHEN ? THEN NOW(6)"
		" WHEN ? THEN NOW(6) + INTERVAL ? MICROSECOND ELSE run_at END,"
		" lease_owner = IF(? OR ?, NULL, lease_owner),"
		" lease_version = lease_version + ?"
		" WHERE id = ?",
		NULL, err,
		DB_ARGS(DB_STR(next), DB_STR(n->prediction_id),
			DB_STR(n->prediction_status), DB_STR(n->raw_json),
			DB_STR(n->predict_time), DB_STR(n->predict_time),
			DB_STR(n->progress), DB_STR(n->version),
			DB_INT(/* step */
			       (int64_t)to_persist),
			DB_INT((int64_t)n->adopt),
			DB_INT(/* provider_deadline */
			       (int64_t)n->adopt),
			DB_INT(n->deadline_s),
			DB_STR(/* errors */
			       next),
			DB_STR(next), DB_STR(n->error_code), DB_STR(next),
			DB_STR(n->error_message),
			DB_INT(/* completed_at, attempts, run_at,
				* lease_owner
				*/
			       (int64_t)to_final),
			DB_INT((int64_t)to_persist), DB_INT((int64_t)to_final),
			DB_INT((int64_t)to_persist),
			DB_INT((int64_t)(n->adopt && !n->fenced)),
			DB_INT((int64_t)(n->poll_min * 1e6)),
			DB_INT((int64_t)to_final), DB_INT((int64_t)to_persist),
			DB_INT(/* News from outside that ends the job or hands
				* it to the pipeline fences out a worker still
				* holding it (a poll, a cancel), so it cannot
				* write over the new state. */
			       (int64_t)(!n->fenced &&
					 (to_final || to_persist))),
			DB_STR(id)));
	if (st == DR_OK && to_final)
		st = open_delivery(db, id, err);
	else if (st == DR_OK)
		st = follow_step(db, id, err);
	return st;
}

/* ------------------------------------------------------- a client's */

/* Lock job `id` in the open transaction and fetch what a client's action
 * decides on: status, error_step, callback_url IS NOT NULL, and the state
 * and id of its latest callback delivery (NULL when it has none). */
static dr_status lock_job(dr_db *db, const char *id, dr_db_rows **rows,
			  dr_error *err)
{
	dr_status st = db_query(db,
				"SELECT j.status, j.error_step,"
				" j.callback_url IS NOT NULL,"
				" (SELECT d.state" LATEST_DELIVERY "),"
				" (SELECT d.id" LATEST_DELIVERY ")"
				" FROM jobs j WHERE j.id = ? FOR UPDATE",
				rows, err, DB_ARGS(DB_STR(id)));

	if (st == DR_OK && (*rows)->n_rows == 0) {
		db_rows_free(*rows);
		*rows = NULL;
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			     "no job with id %.40s", id);
	}
	return st;
}

/* What a client's action does to the job whose row `job` (lock_job()'s
 * columns) is locked, in the open transaction. */
typedef dr_status (*client_act)(dr_db *db, const char *id,
				const dr_db_rows *job, const char *workflow,
				dr_error *err);

/* Run `act` on job `id` in a transaction of its own: the row locked
 * first, run again after a deadlock (DB_TX_TRIES), rolled back on any
 * failure, a failed COMMIT included (db.h). */
static dr_status client_action(dr_db *db, const char *id, client_act act,
			       const char *workflow, dr_error *err)
{
	dr_status st = DR_OK;

	for (int i = 0; i < DB_TX_TRIES; i++) {
		dr_db_rows *rows = NULL;

		st = db_begin(db, err);
		if (st == DR_OK)
			st = lock_job(db, id, &rows, err);
		if (st == DR_OK)
			st = act(db, id, rows, workflow, err);
		if (st == DR_OK)
			st = db_commit(db, err);
		if (st != DR_OK && db_in_transaction(db))
			db_rollback(db);
		db_rows_free(rows);
		if (!db_tx_again(st, err))
			break;
	}
	return st;
}

static dr_status cancel_act(dr_db *db, const char *id, const dr_db_rows *job,
			    const char *workflow, dr_error *err)
{
	const char *status = db_cell(job, 0, 0);
	dr_job_status s = DR_JOB_QUEUED;
	dr_status st;

	(void)jobstate_parse(status, &s);
	if (jobstate_is_final(s))
		return dr_fail(err, DR_ERR_CONFLICT, "job_ended",
			       "the job already ended (%s)", status);
	/* A workflow canceled through step `id`: the workflow says so
	 * (its row locked after its step's), so that a step whose end wins
	 * the race with this cancel still ends it (follow_step()). */
	if (workflow) {
		st = db_exec(db,
			     "UPDATE jobs SET cancel_requested = 1,"
			     " updated_at = NOW(6) WHERE id = ?",
			     NULL, err, DB_ARGS(DB_STR(workflow)));
		if (st == DR_OK)
			st = jobstate_event(db, workflow, "cancel_requested",
					    NULL, NULL, NULL, err);
		if (st != DR_OK)
			return st;
	}
	if (s == DR_JOB_QUEUED) {
		/* Never submitted: cancel now, fencing out any worker that
		 * has just claimed it. Like every other end of a job, it
		 * owes its client a callback: due now, for the workers. */
		st = db_exec(db,
			     "UPDATE jobs SET status = 'canceled',"
			     " lease_version = lease_version + 1," JOB_ENDS
			     " WHERE id = ?",
			     NULL, err, DB_ARGS(DB_STR(id)));
		if (st == DR_OK)
			st = open_delivery(db, id, err);
		if (st == DR_OK)
			st = jobstate_event(
				db, id, "status", status,
				jobstate_name(DR_JOB_CANCELED),
				"{\"reason\":\"canceled by client\"}", err);
		return st;
	}
	/* Submitted: a worker cancels it at the provider. */
	st = db_exec(db,
		     "UPDATE jobs SET cancel_requested = 1,"
		     " run_at = NOW(6), updated_at = NOW(6)"
		     " WHERE id = ?",
		     NULL, err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK)
		st = jobstate_event(db, id, "cancel_requested", status, NULL,
				    NULL, err);
	return st;
}

/* 1 when a failure at `step` came after the prediction succeeded (while
 * storing its outputs). */
static int storing_step(const char *step)
{
	static const char *const steps[] = { "download", "render",  "upload",
					     "index",	 "persist", NULL };

	for (int i = 0; step && steps[i]; i++)
		if (strcmp(step, steps[i]) == 0)
			return 1;
	return 0;
}

/* The delivery of job `id`'s old end, if still pending, is dropped
 * (failed, kept in the history): the job it describes is being retried. */
static dr_status drop_end_delivery(dr_db *db, const char *id, dr_error *err)
{
	return db_exec(db,
		       "UPDATE callback_deliveries SET state = 'failed',"
		       " next_at = NULL, last_error = 'dropped: the job"
		       " was retried before this delivery ended'"
		       " WHERE job_id = ? AND state = 'pending'"
		       " AND type LIKE 'job.%'",
		       NULL, err, DB_ARGS(DB_STR(id)));
}

/*
 * In the open transaction, right after step `step` of workflow `id` was
 * retried (retry_act(), its row locked): the workflow, failed or
 * canceled, takes the status its step now gives it (queued for a first
 * step queued again, persisting for a last step storing again, else
 * processing), its error and end cleared, and its old end's delivery
 * dropped. DR_ERR_CONFLICT (job_not_retryable) when it has not failed or
 * been canceled (meanwhile).
 */
static dr_status resume_workflow(dr_db *db, const char *id, const char *step,
				 dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_job_status cs = DR_JOB_QUEUED, to;
	char *detail = NULL;
	uint64_t n = 0;
	int k, steps;
	dr_status st;

	st = db_query(db,
		      "SELECT c.status, c.step_index, c.step_name,"
		      " (SELECT COUNT(*) FROM jobs s WHERE s.parent_id = ?),"
		      " (SELECT p.status FROM jobs p WHERE p.id = ?)"
		      " FROM jobs c WHERE c.id = ?",
		      &rows, err,
		      DB_ARGS(DB_STR(id), DB_STR(id), DB_STR(step)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows != 1) {
		db_rows_free(rows);
		return dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			       "the workflow's step is gone");
	}
	(void)jobstate_parse(db_cell(rows, 0, 0), &cs);
	k = (int)strtol(db_cell(rows, 0, 1), NULL, 10);
	steps = (int)strtol(db_cell(rows, 0, 3), NULL, 10);
	if (cs == DR_JOB_QUEUED && k == 0)
		to = DR_JOB_QUEUED;
	else if (cs == DR_JOB_PERSISTING && k == steps - 1)
		to = DR_JOB_PERSISTING;
	else
		to = DR_JOB_PROCESSING;
	st = db_exec(db,
		     "UPDATE jobs SET status = ?, step = 'steps',"
		     " error_step = NULL, error_code = NULL,"
		     " error_message = NULL, step_name = NULL,"
		     " completed_at = NULL, cancel_requested = 0,"
		     " run_at = NULL, lease_owner = NULL,"
		     " lease_version = lease_version + 1,"
		     " updated_at = NOW(6) WHERE id = ?"
		     " AND status IN ('failed', 'canceled')",
		     &n, err, DB_ARGS(DB_STR(jobstate_name(to)), DB_STR(id)));
	if (st == DR_OK && n == 0)
		st = dr_fail(err, DR_ERR_CONFLICT, "job_not_retryable",
			     "only failed or canceled jobs can be retried");
	if (st == DR_OK)
		st = drop_end_delivery(db, id, err);
	if (st == DR_OK) {
		detail = jobstate_detail("workflow_step", db_cell(rows, 0, 2),
					 NULL);
		st = jobstate_event(db, id, "retry", db_cell(rows, 0, 4),
				    jobstate_name(to), detail, err);
	}
	free(detail);
	db_rows_free(rows);
	return st;
}

static dr_status retry_act(dr_db *db, const char *id, const dr_db_rows *job,
			   const char *workflow, dr_error *err)
{
	const char *status = db_cell(job, 0, 0);
	dr_job_status s = DR_JOB_QUEUED, to;
	dr_status st;

	(void)jobstate_parse(status, &s);
	/* Failures after the prediction succeeded resume at persisting;
	 * anything earlier runs the prediction again. Either way the job
	 * will end again, and that end's callback starts afresh (a pending
	 * callback of the old end is dropped: the job it describes is gone). */
	to = s == DR_JOB_FAILED && storing_step(db_cell(job, 0, 1))
		     ? DR_JOB_PERSISTING
		     : DR_JOB_QUEUED;
	if (!jobstate_allowed(s, to))
		return dr_fail(err, DR_ERR_CONFLICT, "job_not_retryable",
			       "only failed or canceled jobs can be retried "
			       "(this one is %s)",
			       status);
	if (to == DR_JOB_PERSISTING) {
		st = db_exec(db,
			     "UPDATE jobs SET status = 'persisting',"
			     " step = 'persist', attempts = 0,"
			     " error_step = NULL, error_code = NULL,"
			     " error_message = NULL, completed_at = NULL,"
			     " cancel_requested = 0, run_at = NOW(6),"
			     " lease_owner = NULL,"
			     " lease_version = lease_version + 1,"
			     " updated_at = NOW(6) WHERE id = ?",
			     NULL, err, DB_ARGS(DB_STR(id)));
		/* The outputs get a new download budget, too. */
		if (st == DR_OK)
			st = db_exec(db,
				     "UPDATE outputs SET fetch_started_at ="
				     " NULL, slow_fetches = 0 WHERE job_id = ?"
				     " AND state = 'pending'",
				     NULL, err, DB_ARGS(DB_STR(id)));
	} else {
		st = db_exec(
			db,
			"UPDATE jobs SET status = 'queued', step = 'submit',"
			" attempts = 0, prediction_id = NULL,"
			" prediction_status = NULL, prediction = NULL,"
			" predict_time = NULL, progress = NULL,"
			" error_step = NULL, error_code = NULL,"
			" error_message = NULL, completed_at = NULL,"
			" submitted_at = NULL, provider_deadline = NULL,"
			" cancel_requested = 0, run_at = NOW(6),"
			" lease_owner = NULL,"
			" lease_version = lease_version + 1,"
			" updated_at = NOW(6) WHERE id = ?",
			NULL, err, DB_ARGS(DB_STR(id)));
	}
	if (st == DR_OK)
		st = drop_end_delivery(db, id, err);
	if (st == DR_OK)
		st = jobstate_event(db, id, "retry", status, jobstate_name(to),
				    NULL, err);
	/* A workflow's step: the workflow resumes with it (its row locked
	 * after its step's, the order everywhere). */
	if (st == DR_OK && workflow)
		st = resume_workflow(db, workflow, id, err);
	return st;
}

static dr_status callback_retry_act(dr_db *db, const char *id,
				    const dr_db_rows *job, const char *workflow,
				    dr_error *err)
{
	const char *status = db_cell(job, 0, 0), *state = db_cell(job, 0, 3);
	const char *delivery = db_cell(job, 0, 4);
	dr_job_status s = DR_JOB_QUEUED;
	char *detail;
	dr_status st;

	(void)workflow;
	if (!jobstate_parse(status, &s) || !jobstate_is_final(s))
		return dr_fail(err, DR_ERR_CONFLICT, "job_not_ended",
			       "the job has not ended (it is %s): its callback "
			       "is sent when it does",
			       status);
	if (strcmp(db_cell(job, 0, 2), "1") != 0)
		return dr_fail(err, DR_ERR_CONFLICT, "no_callback_url",
			       "the job has no callback_url");
	if (!state || !delivery)
		return dr_fail(err, DR_ERR_CONFLICT, "callback_pending",
			       "the job's callback has not been made yet");
	if (strcmp(state, "delivered") != 0 && strcmp(state, "failed") != 0)
		return dr_fail(err, DR_ERR_CONFLICT, "callback_pending",
			       "the job's callback is still being delivered");
	/* Svix's resend: the same message (webhook-id) tried again, with
	 * its schedule from the start; its tries so far stay counted. */
	st = db_exec(db,
		     "UPDATE callback_deliveries SET state = 'pending',"
		     " round_start = attempts, next_at = NOW(6)"
		     " WHERE id = ?",
		     NULL, err, DB_ARGS(DB_STR(delivery)));
	if (st == DR_OK)
		st = db_exec(db,
			     "UPDATE jobs SET run_at = NOW(6),"
			     " lease_owner = NULL,"
			     " lease_version = lease_version + 1 WHERE id = ?",
			     NULL, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		return st;
	detail = jobstate_detail("delivery", "requested", "previous", state,
				 "webhook_id", delivery, NULL);
	st = jobstate_event(db, id, "callback", status, NULL, detail, err);
	free(detail);
	return st;
}

/*
 * What a client's action on job `id` acts on, read without a lock: for a
 * workflow, its status into `status` and its first step that has not
 * succeeded into `step`; "" in `step` for any other job. A workflow's
 * step is refused (DR_ERR_CONFLICT, code step_of_workflow): its client
 * acts on the workflow, which follows its steps.
 */
static dr_status client_target(dr_db *db, const char *id,
			       char step[DR_JOB_ID_LEN + 1], char status[16],
			       int *workflow, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	step[0] = '\0';
	*workflow = 0;
	st = db_query(db,
		      "SELECT j.kind, j.parent_id, j.status, j.step_name,"
		      " (SELECT s.id FROM jobs s WHERE s.parent_id = j.id"
		      " AND s.status <> 'succeeded' ORDER BY s.step_index"
		      " LIMIT 1) FROM jobs j WHERE j.id = ?",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 0)
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			     "no job with id %.40s", id);
	else if (db_cell(rows, 0, 1))
		st = dr_fail(err, DR_ERR_CONFLICT, "step_of_workflow",
			     "job %s is step '%s' of workflow %s: cancel or "
			     "retry the workflow",
			     id, db_cell(rows, 0, 3), db_cell(rows, 0, 1));
	else if (strcmp(db_cell(rows, 0, 0), "workflow") == 0) {
		*workflow = 1;
		snprintf(status, 16, "%s", db_cell(rows, 0, 2));
		if (db_cell(rows, 0, 4))
			snprintf(step, DR_JOB_ID_LEN + 1, "%s",
				 db_cell(rows, 0, 4));
	}
	db_rows_free(rows);
	return st;
}

dr_status jobstate_client_cancel(dr_db *db, const char *id, dr_error *err)
{
	char step[DR_JOB_ID_LEN + 1], status[16];
	int workflow;
	dr_status st = DR_OK;

	/* A workflow is canceled through its running step (at the provider
	 * when it was submitted); it follows the step's end. A step that
	 * ended meanwhile hands over to the next: look again. */
	for (int i = 0; i < DB_TX_TRIES; i++) {
		dr_job_status s = DR_JOB_QUEUED;

		st = client_target(db, id, step, status, &workflow, err);
		if (st != DR_OK)
			return st;
		if (!workflow)
			return client_action(db, id, cancel_act, NULL, err);
		(void)jobstate_parse(status, &s);
		if (jobstate_is_final(s) || !step[0])
			return dr_fail(err, DR_ERR_CONFLICT, "job_ended",
				       "the job already ended (%s)", status);
		st = client_action(db, step, cancel_act, id, err);
		if (st != DR_ERR_CONFLICT ||
		    strcmp(err->code, "job_ended") != 0)
			return st;
	}
	return st;
}

dr_status jobstate_client_retry(dr_db *db, const char *id, dr_error *err)
{
	char step[DR_JOB_ID_LEN + 1], status[16];
	int workflow;
	dr_status st;

	st = client_target(db, id, step, status, &workflow, err);
	if (st != DR_OK)
		return st;
	if (!workflow)
		return client_action(db, id, retry_act, NULL, err);
	if ((strcmp(status, "failed") != 0 &&
	     strcmp(status, "canceled") != 0) ||
	    !step[0])
		return dr_fail(err, DR_ERR_CONFLICT, "job_not_retryable",
			       "only failed or canceled jobs can be retried "
			       "(this one is %s)",
			       status);
	/* Its first step that has not succeeded runs again; the steps
	 * before it never do. */
	return client_action(db, step, retry_act, id, err);
}

dr_status jobstate_client_callback_retry(dr_db *db, const char *id,
					 dr_error *err)
{
	return client_action(db, id, callback_retry_act, NULL, err);
}
