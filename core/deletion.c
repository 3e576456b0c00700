/*
 * deletion.c - deleting jobs by id, by selector and by age (see
 * deletion.h).
 *
 * Lock order: the jobs' rows first (in id order), then the `objects` rows
 * of their keys (in key order). The pipeline's index transaction and
 * reprocess lock objects rows in the order of their outputs and the job's
 * row last, so a delete and an index of another job sharing two keys may
 * deadlock: InnoDB rolls one back, and a delete runs again (DB_TX_TRIES),
 * a persist step retries.
 */
#include "deletion.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "jobstate.h"
#include "jsonutil.h"
#include "log.h"
#include "metrics.h"
#include "objects.h"

/* The ended statuses, which [retention] has a setting for each. */
static const char *const ended[] = { "succeeded", "failed", "canceled" };
#define N_ENDED	  (sizeof(ended) / sizeof(ended[0]))
#define ENDED_SQL "('succeeded','failed','canceled')"
/* The text of select_jobs()'s query: under 2 KiB with
 * DR_MAX_METADATA_FILTERS filters (the values are parameters). */
#define SELECT_SQL_MAX 4096

int deletion_id_valid(const char *s)
{
	char j[DR_JOB_ID_LEN + 1];

	if (strncmp(s, "d_", 2) != 0 || strlen(s) != DR_DELETION_ID_LEN)
		return 0;
	memcpy(j, s, sizeof(j));
	j[0] = 'j';
	return ids_is_job_id(j);
}

static dr_status new_id(char id[DR_DELETION_ID_LEN + 1], dr_error *err)
{
	if (ids_new_job_id(id) != DR_OK)
		return dr_fail(err, DR_ERR_INTERNAL, "no_random",
			       "the kernel gave no random bytes");
	id[0] = 'd';
	return DR_OK;
}

/* A key a batch of jobs used, and how many times. */
typedef struct used_key {
	const char *key;
	unsigned n;
} used_key;

static int cmp_used(const void *a, const void *b)
{
	return strcmp(((const used_key *)a)->key, ((const used_key *)b)->key);
}

/* Fill args[0..DR_DELETION_BATCH) with ids[0..n), repeating the last
 * (an IN list does not mind). */
static void id_args(dr_db_arg *args, const char *const *ids, size_t n)
{
	for (size_t i = 0; i < DR_DELETION_BATCH; i++)
		args[i] = DB_STR(ids[i < n ? i : n - 1]);
}

/*
 * Drop the references jobs ids[0..n) hold in `objects`: each key their
 * outputs and renditions use, counted (a job may use a key twice, jobs of
 * one batch may share it), rows locked in key order. Released objects are
 * due for removal at once.
 */
static dr_status unref_keys(dr_db *db, const char *const *ids, size_t n,
			    dr_deletion_counts *c, dr_error *err)
{
	static char *sql;
	const char *text = db_sql_list(
		"SELECT storage_key, COUNT(*) FROM ("
		" SELECT storage_key FROM outputs WHERE job_id IN (?*)"
		" AND storage_key IS NOT NULL"
		" UNION ALL SELECT r.storage_key FROM renditions r"
		" JOIN outputs o ON o.id = r.output_id WHERE o.job_id IN (?*)"
		") k GROUP BY storage_key",
		DR_DELETION_BATCH, &sql);
	dr_db_arg args[2 * DR_DELETION_BATCH];
	dr_db_rows *rows = NULL;
	used_key *u;
	const char **keys;
	unsigned *counts;
	size_t m;
	dr_status st;

	id_args(args, ids, n);
	id_args(args + DR_DELETION_BATCH, ids, n);
	st = db_query(db, text, &rows, err, args, 2 * DR_DELETION_BATCH);
	if (st != DR_OK)
		return st;
	m = rows->n_rows;
	if (m == 0) {
		db_rows_free(rows);
		return DR_OK;
	}
	u = dr_xmalloc(m * sizeof(*u));
	keys = dr_xmalloc(m * sizeof(*keys));
	counts = dr_xmalloc(m * sizeof(*counts));
	for (size_t i = 0; i < m; i++) {
		u[i].key = db_cell(rows, i, 0);
		u[i].n = (unsigned)strtoul(db_cell(rows, i, 1), NULL, 10);
	}
	qsort(u, m, sizeof(*u), cmp_used);
	for (size_t i = 0; i < m; i++) {
		keys[i] = u[i].key;
		counts[i] = u[i].n;
	}
	st = objects_unref_many(db, keys, counts, m, 0, &c->objects_released,
				err);
	free(counts);
	free(keys);
	free(u);
	db_rows_free(rows);
	return st;
}

/*
 * In the open transaction, before jobs ids (DR_DELETION_BATCH arguments,
 * `args`) go: a batch.completed still being delivered by one of them
 * (the job whose end completed its batch carries it) is handed to the
 * batch's first job not among them, which, if it has ended, is made due
 * for its earliest pending delivery (one still running is, when it ends).
 * Lost only with the last job of its batch.
 */
static dr_status hand_over_batch_messages(dr_db *db, const dr_db_arg *args,
					  dr_error *err)
{
	static char *sql_find, *sql_other;
	dr_db_arg other[1 + DR_DELETION_BATCH];
	dr_db_rows *rows = NULL;
	dr_status st;

	st = db_query(db,
		      db_sql_list("SELECT d.id, j.batch_id FROM"
				  " callback_deliveries d JOIN jobs j"
				  " ON j.id = d.job_id WHERE d.job_id IN (?*)"
				  " AND d.state = 'pending'"
				  " AND d.type = 'batch.completed'",
				  DR_DELETION_BATCH, &sql_find),
		      &rows, err, args, DR_DELETION_BATCH);
	if (st != DR_OK)
		return st;
	for (size_t i = 0; i < rows->n_rows && st == DR_OK; i++) {
		dr_db_rows *to = NULL;

		other[0] = DB_STR(db_cell(rows, i, 1));
		memcpy(other + 1, args, DR_DELETION_BATCH * sizeof(*args));
		st = db_query(db,
			      db_sql_list("SELECT id FROM jobs WHERE"
					  " batch_id = ? AND id NOT IN (?*)"
					  " ORDER BY id LIMIT 1 FOR UPDATE",
					  DR_DELETION_BATCH, &sql_other),
			      &to, err, other, 1 + DR_DELETION_BATCH);
		if (st == DR_OK && to->n_rows == 1)
			st = db_exec(db,
				     "UPDATE callback_deliveries SET job_id = ?"
				     " WHERE id = ?",
				     NULL, err,
				     DB_ARGS(DB_STR(db_cell(to, 0, 0)),
					     DB_STR(db_cell(rows, i, 0))));
		if (st == DR_OK && to->n_rows == 1)
			st = jobstate_due_for_deliveries(db, db_cell(to, 0, 0),
							 err);
		db_rows_free(to);
	}
	db_rows_free(rows);
	return st;
}

/*
 * Delete ended jobs ids[0..n) (1 to DR_DELETION_BATCH, their rows locked)
 * and everything of theirs, in the open transaction.
 */
static dr_status drop_jobs(dr_db *db, const char *const *ids, size_t n,
			   dr_deletion_counts *c, dr_error *err)
{
	static const char *const tmpl[] = {
		"DELETE r FROM renditions r JOIN outputs o"
		" ON o.id = r.output_id WHERE o.job_id IN (?*)",
		"DELETE FROM outputs WHERE job_id IN (?*)",
		"DELETE FROM job_events WHERE job_id IN (?*)",
		"DELETE a FROM callback_attempts a JOIN callback_deliveries d"
		" ON d.id = a.delivery_id WHERE d.job_id IN (?*)",
		"DELETE FROM callback_deliveries WHERE job_id IN (?*)",
		"DELETE FROM job_metadata WHERE job_id IN (?*)",
		"DELETE FROM idempotency_keys WHERE job_id IN (?*)",
		"DELETE FROM webhook_blobs WHERE job_id IN (?*)",
		"DELETE FROM jobs WHERE id IN (?*)",
	};
	enum { N_DELETES = sizeof(tmpl) / sizeof(tmpl[0]) };
	static char *sql_del[N_DELETES];
	dr_db_arg args[DR_DELETION_BATCH];
	dr_status st;

	st = unref_keys(db, ids, n, c, err);
	id_args(args, ids, n);
	if (st == DR_OK)
		st = hand_over_batch_messages(db, args, err);
	for (size_t i = 0; i < N_DELETES && st == DR_OK; i++)
		st = db_exec(
			db,
			db_sql_list(tmpl[i], DR_DELETION_BATCH, &sql_del[i]),
			NULL, err, args, DR_DELETION_BATCH);
	return st;
}

/*
 * In the open transaction: delete the steps `steps` (rows of id,
 * parent_id, locked) of the ended workflows among workflows[0..n),
 * DR_DELETION_BATCH at a time. A workflow's steps have all ended or never run
 * (a workflow ends with the step that ends it). They are not counted as jobs
 * deleted: they are parts of their workflow.
 */
static dr_status drop_steps(dr_db *db, const dr_db_rows *steps,
			    const char *const *workflows, size_t n,
			    dr_deletion_counts *c, dr_error *err)
{
	const char *batch[DR_DELETION_BATCH];
	size_t k = 0;
	dr_status st = DR_OK;

	for (size_t i = 0; i < steps->n_rows && st == DR_OK; i++) {
		int mine = 0;

		for (size_t e = 0; e < n && !mine; e++)
			mine = strcmp(db_cell(steps, i, 1), workflows[e]) == 0;
		if (!mine)
			continue;
		batch[k++] = db_cell(steps, i, 0);
		if (k == DR_DELETION_BATCH) {
			st = drop_jobs(db, batch, k, c, err);
			k = 0;
		}
	}
	if (st == DR_OK && k)
		st = drop_jobs(db, batch, k, c, err);
	return st;
}

/*
 * Delete jobs ids[0..n) (1 to DR_DELETION_BATCH) in the open transaction,
 * a workflow's steps with it: the steps' rows locked first, then the
 * jobs', each in id order (a step's row before its workflow's, as
 * everywhere). Jobs that are gone or have not ended, and a workflow's
 * steps asked for alone, are left alone; with `strict` (one job asked for
 * by id) that is DR_ERR_NOT_FOUND or DR_ERR_CONFLICT (job_not_ended,
 * step_of_workflow), nothing changed.
 */
static dr_status delete_jobs(dr_db *db, const char *const *ids, size_t n,
			     int strict, dr_deletion_counts *c, dr_error *err)
{
	static char *sql_lock, *sql_steps;
	const char *ended_ids[DR_DELETION_BATCH];
	dr_db_arg args[DR_DELETION_BATCH];
	dr_db_rows *rows = NULL, *steps = NULL;
	size_t k = 0;
	dr_status st;

	id_args(args, ids, n);
	st = db_query(db,
		      db_sql_list("SELECT id, parent_id FROM jobs WHERE"
				  " parent_id IN (?*) ORDER BY id FOR UPDATE",
				  DR_DELETION_BATCH, &sql_steps),
		      &steps, err, args, DR_DELETION_BATCH);
	if (st == DR_OK)
		st = db_query(db,
			      db_sql_list("SELECT id, status, parent_id FROM"
					  " jobs WHERE id IN (?*) ORDER BY id"
					  " FOR UPDATE",
					  DR_DELETION_BATCH, &sql_lock),
			      &rows, err, args, DR_DELETION_BATCH);
	if (st != DR_OK)
		goto out;
	for (size_t i = 0; i < rows->n_rows; i++) {
		dr_job_status s = DR_JOB_QUEUED;

		(void)jobstate_parse(db_cell(rows, i, 1), &s);
		if (jobstate_is_final(s) && !db_cell(rows, i, 2))
			ended_ids[k++] = db_cell(rows, i, 0);
	}
	if (strict && rows->n_rows == 0)
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found", "no job %s",
			     ids[0]);
	else if (strict && db_cell(rows, 0, 2))
		st = dr_fail(err, DR_ERR_CONFLICT, "step_of_workflow",
			     "job %s is a step of workflow %s: delete the "
			     "workflow",
			     ids[0], db_cell(rows, 0, 2));
	else if (strict && k == 0)
		st = dr_fail(err, DR_ERR_CONFLICT, "job_not_ended",
			     "the job has not ended (%s): cancel it first",
			     db_cell(rows, 0, 1));
	if (st == DR_OK && k > 0)
		st = drop_steps(db, steps, ended_ids, k, c, err);
	if (st == DR_OK && k > 0)
		st = drop_jobs(db, ended_ids, k, c, err);
	if (st == DR_OK)
		c->jobs_deleted += k;
out:
	db_rows_free(steps);
	db_rows_free(rows);
	return st;
}

/* Count `n` jobs deleted by a deletion of `kind` in /metrics. */
static void count_deleted(dr_db *db, const char *kind, uint64_t n)
{
	char labels[DR_METRICS_LABELS_MAX];

	if (n == 0)
		return;
	metrics_labels(labels, sizeof(labels), "kind", kind, NULL);
	metrics_add(db, "darkroom_jobs_deleted_total", labels, (double)n);
}

/* Insert an audit record (in the open transaction). */
static dr_status record(dr_db *db, const char *id, const char *kind,
			const char *state, const char *selector, const char *by,
			const dr_deletion_counts *c, dr_error *err)
{
	int done = strcmp(state, "done") == 0;

	return db_exec(db,
		       "INSERT INTO deletions (id, kind, state, selector,"
		       " requested_by, cutoff, jobs_deleted, jobs_waiting,"
		       " objects_released, run_at, created_at, updated_at,"
		       " finished_at) VALUES (?, ?, ?, ?, ?, NOW(6), ?, ?, ?,"
		       " IF(?, NULL, NOW(6)), NOW(6), NOW(6),"
		       " IF(?, NOW(6), NULL))",
		       NULL, err,
		       DB_ARGS(DB_STR(id), DB_STR(kind), DB_STR(state),
			       DB_STR(selector), DB_STR(by),
			       DB_U64(c->jobs_deleted), DB_U64(c->jobs_waiting),
			       DB_U64(c->objects_released), DB_INT(done),
			       DB_INT(done)));
}

static dr_status delete_job_once(dr_db *db, const char *id, const char *by,
				 char *did, dr_deletion_counts *c,
				 dr_error *err)
{
	char rid[DR_DELETION_ID_LEN + 1], selector[64];
	dr_status st;

	memset(c, 0, sizeof(*c));
	st = new_id(rid, err);
	if (st != DR_OK)
		return st;
	snprintf(selector, sizeof(selector), "{\"id\":\"%s\"}", id);
	st = db_begin(db, err);
	if (st != DR_OK)
		return st;
	st = delete_jobs(db, &id, 1, 1, c, err);
	if (st == DR_OK)
		st = record(db, rid, "job", "done", selector, by, c, err);
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK) {
		if (db_in_transaction(db))
			db_rollback(db);
		return st;
	}
	if (did)
		memcpy(did, rid, sizeof(rid));
	return DR_OK;
}

dr_status deletion_delete_job(dr_db *db, const char *id, const char *by,
			      char *deletion_id, dr_deletion_counts *c,
			      dr_error *err)
{
	dr_deletion_counts mine;
	dr_status st = DR_OK;

	if (!c)
		c = &mine;
	if (!ids_is_job_id(id))
		return dr_fail(err, DR_ERR_NOT_FOUND, "not_found", "no job %s",
			       id);
	for (int i = 0; i < DB_TX_TRIES; i++) {
		st = delete_job_once(db, id, by, deletion_id, c, err);
		if (!db_tx_again(st, err))
			break;
	}
	if (st == DR_OK)
		count_deleted(db, "job", c->jobs_deleted);
	if (st == DR_OK)
		dr_log(DR_LOG_INFO,
		       "event=job.deleted job=%s by=%s objects_released=%llu",
		       id, by, (unsigned long long)c->objects_released);
	return st;
}

dr_status deletion_request(dr_db *db, const dr_metadata_filter *meta, size_t n,
			   const char *by, char *deletion_id, dr_error *err)
{
	dr_deletion_counts none = { 0 };
	json_object *sel;
	size_t bad, total = 0;
	dr_status st;

	if (n == 0)
		return dr_fail(err, DR_ERR_INVALID, "invalid_parameter",
			       "metadata: a deletion needs at least one "
			       "metadata.KEY=VALUE filter");
	st = jobs_check_metadata_filters(meta, n, &bad, err);
	if (st != DR_OK)
		return st;
	for (size_t i = 0; i < n; i++)
		total += strlen(meta[i].key) + strlen(meta[i].value);
	if (total > DR_MAX_METADATA_BYTES)
		return dr_fail(err, DR_ERR_INVALID, "invalid_parameter",
			       "metadata: the filters hold %zu bytes of keys "
			       "and values; no job's metadata holds more than "
			       "%d",
			       total, DR_MAX_METADATA_BYTES);
	st = new_id(deletion_id, err);
	if (st != DR_OK)
		return st;
	sel = json_object_new_object();
	for (size_t i = 0; i < n; i++) {
		char name[80];

		snprintf(name, sizeof(name), "metadata.%s", meta[i].key);
		json_object_object_add(sel, name,
				       json_object_new_string(meta[i].value));
	}
	st = record(db, deletion_id, "selector", "queued",
		    json_object_to_json_string_ext(sel, JSON_C_TO_STRING_PLAIN),
		    by, &none, err);
	json_object_put(sel);
	if (st == DR_OK)
		dr_log(DR_LOG_INFO,
		       "event=deletion.requested deletion=%s by=%s filters=%zu",
		       deletion_id, by, n);
	return st;
}

/* A selector's filters, read back from its JSON (which this file wrote). */
typedef struct selector {
	json_object *root;
	dr_metadata_filter meta[DR_MAX_METADATA_FILTERS];
	size_t n;
} selector;

static dr_status selector_read(const char *text, selector *s, dr_error *err)
{
	s->n = 0;
	s->root = json_tokener_parse(text);
	if (!s->root || !json_object_is_type(s->root, json_type_object))
		return dr_fail(err, DR_ERR_INTERNAL, "bad_selector",
			       "a deletion's selector is not a JSON object");
	json_object_object_foreach(s->root, k, v)
	{
		if (strncmp(k, "metadata.", 9) != 0 ||
		    s->n == DR_MAX_METADATA_FILTERS ||
		    !json_object_is_type(v, json_type_string))
			return dr_fail(err, DR_ERR_INTERNAL, "bad_selector",
				       "a deletion's selector has %s", k);
		s->meta[s->n].key = k + 9;
		s->meta[s->n++].value = json_object_get_string(v);
	}
	if (s->n == 0)
		return dr_fail(err, DR_ERR_INTERNAL, "bad_selector",
			       "a deletion's selector has no filter");
	return DR_OK;
}

/* Which of a selector's jobs select_jobs() reads. */
typedef enum pick {
	PICK_ENDED,	/* ended: to delete now (ids) */
	PICK_TO_CANCEL, /* not ended, no cancel asked yet (ids) */
	PICK_RUNNING,	/* not ended: how many (one row, a count) */
} pick;

/*
 * Query the jobs of selector `s` created up to `cutoff`, as `what` says,
 * at most `limit` ids (or their count). The first filter drives the query
 * along job_metadata_kv (k, v, job_id), so a batch reads the selected
 * jobs, not the whole table, and in no particular order (delete_jobs()
 * locks them in id order); the others are EXISTS lookups on their primary
 * key. Keys compare as everywhere (a job cannot have two differing only in
 * case), values exactly, byte for byte: the index's collation would also
 * match "Bob", "BOB" and "bob " for "bob", which a search may do and a
 * deletion must not.
 */
static dr_status select_jobs(dr_db *db, const selector *s, const char *cutoff,
			     pick what, unsigned limit, dr_db_rows **rows,
			     dr_error *err)
{
	dr_db_arg args[3 * DR_MAX_METADATA_FILTERS + 2];
	dr_buf sql;
	size_t n = 0;
	dr_status st;

	dr_buf_init(&sql, SELECT_SQL_MAX);
	st = dr_buf_printf(
		&sql,
		"SELECT %s FROM job_metadata d JOIN jobs ON jobs.id = d.job_id"
		" WHERE d.k = ? AND d.v = ?"
		" AND CAST(d.v AS BINARY) = CAST(? AS BINARY)"
		" AND jobs.created_at <= ? AND jobs.status %s " ENDED_SQL "%s",
		what == PICK_RUNNING ? "COUNT(*)" : "jobs.id",
		what == PICK_ENDED ? "IN" : "NOT IN",
		what == PICK_TO_CANCEL ? " AND jobs.cancel_requested = 0" : "");
	for (size_t i = 1; st == DR_OK && i < s->n; i++)
		st = dr_buf_puts(
			&sql, " AND EXISTS (SELECT 1 FROM job_metadata m"
			      " WHERE m.job_id = jobs.id AND m.k = ?"
			      " AND m.v = ?"
			      " AND CAST(m.v AS BINARY) = CAST(? AS BINARY))");
	for (size_t i = 0; i < s->n; i++) {
		args[n++] = DB_STR(s->meta[i].key);
		args[n++] = DB_STR(s->meta[i].value);
		args[n++] = DB_STR(s->meta[i].value);
		if (i == 0)
			args[n++] = DB_STR(cutoff);
	}
	if (st == DR_OK && what != PICK_RUNNING) {
		st = dr_buf_puts(&sql, " LIMIT ?");
		args[n++] = DB_INT((int64_t)limit);
	}
	if (st != DR_OK)
		st = dr_fail(err, DR_ERR_INTERNAL, "no_memory",
			     "the query does not fit");
	else
		st = db_query_uncached(db, sql.data, rows, err, args, n);
	dr_buf_free(&sql);
	return st;
}

/* Add c to deletion `id`'s counts; `waiting` replaces jobs_waiting when
 * not negative; state and run_at as given ("done": finished now). */
static dr_status update(dr_db *db, const char *id, const dr_deletion_counts *c,
			int64_t waiting, const char *state, double run_in,
			dr_error *err)
{
	int done = strcmp(state, "done") == 0;

	return db_exec(db,
		       "UPDATE deletions SET state = ?,"
		       " jobs_deleted = jobs_deleted + ?,"
		       " objects_released = objects_released + ?,"
		       " jobs_waiting = IF(? < 0, jobs_waiting, ?),"
		       " run_at = IF(?, NULL, NOW(6) + INTERVAL ? MICROSECOND),"
		       " finished_at = IF(?, NOW(6), NULL), updated_at = NOW(6)"
		       " WHERE id = ?",
		       NULL, err,
		       DB_ARGS(DB_STR(state), DB_U64(c->jobs_deleted),
			       DB_U64(c->objects_released), DB_INT(waiting),
			       DB_INT(waiting), DB_INT(done),
			       DB_INT((int64_t)(run_in * 1e6)), DB_INT(done),
			       DB_STR(id)));
}

/* One transaction: lock deletion `id`, delete up to a batch of its ended
 * jobs, add to its counts. *got: how many jobs the batch found. */
static dr_status batch_once(dr_db *db, const char *id, size_t *got,
			    int *finished, dr_error *err)
{
	dr_db_rows *d = NULL, *jobs = NULL;
	dr_deletion_counts c = { 0 };
	selector s = { 0 };
	dr_status st;

	*got = 0;
	*finished = 0;
	st = db_begin(db, err);
	if (st != DR_OK)
		return st;
	st = db_query(db,
		      "SELECT selector, cutoff, state FROM deletions"
		      " WHERE id = ? FOR UPDATE",
		      &d, err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK && d->n_rows == 0)
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			     "no deletion %s", id);
	/* Finished by another process (the worker, or a command) meanwhile:
	 * nothing left to do here. */
	if (st == DR_OK && strcmp(db_cell(d, 0, 2), "done") == 0) {
		*finished = 1;
		db_rows_free(d);
		st = db_commit(db, err);
		if (st != DR_OK)
			db_rollback(db);
		return st;
	}
	if (st == DR_OK)
		st = selector_read(db_cell(d, 0, 0), &s, err);
	if (st == DR_OK)
		st = select_jobs(db, &s, db_cell(d, 0, 1), PICK_ENDED,
				 DR_DELETION_BATCH, &jobs, err);
	if (st == DR_OK && jobs->n_rows > 0) {
		const char *ids[DR_DELETION_BATCH];

		for (size_t i = 0; i < jobs->n_rows; i++)
			ids[i] = db_cell(jobs, i, 0);
		/* One gone or retried since the query is left alone. */
		st = delete_jobs(db, ids, jobs->n_rows, 0, &c, err);
	}
	if (st == DR_OK) {
		*got = jobs->n_rows;
		st = update(db, id, &c, -1, "running", 0, err);
	}
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK && db_in_transaction(db))
		db_rollback(db);
	if (st == DR_OK)
		count_deleted(db, "selector", c.jobs_deleted);
	db_rows_free(jobs);
	db_rows_free(d);
	json_object_put(s.root);
	return st;
}

/* Cancel the matching jobs that have not ended and were not asked yet,
 * at most 1000 a look (the others at the next). */
static dr_status cancel_running(dr_db *db, const char *id, const selector *s,
				const char *cutoff, dr_error *err)
{
	dr_db_rows *jobs = NULL;
	dr_status st;

	st = select_jobs(db, s, cutoff, PICK_TO_CANCEL, 1000, &jobs, err);
	for (size_t i = 0; st == DR_OK && i < jobs->n_rows; i++) {
		const char *job = db_cell(jobs, i, 0);
		dr_error e2;

		dr_error_clear(&e2);
		if (jobstate_client_cancel(db, job, &e2) == DR_OK)
			dr_log(DR_LOG_INFO,
			       "event=job.cancel job=%s deletion=%s", job, id);
		else if (e2.status != DR_ERR_CONFLICT) /* ended meanwhile */
			dr_log(DR_LOG_WARNING,
			       "event=deletion.cancel_failed deletion=%s "
			       "job=%s "
			       "code=%s reason=\"%.200s\"",
			       id, job, e2.code, e2.message);
	}
	db_rows_free(jobs);
	return st;
}

/* Under the record's lock: count the matching jobs still running, and
 * finish deletion `id` when none is left and no ended one is either (one
 * may have ended since the last batch looked), else look again: at once
 * for an ended one, after DR_DELETION_RECHECK for running ones. A
 * deletion finished by another process meanwhile stays as it is. */
static dr_status settle(dr_db *db, const char *id, const selector *s,
			const char *cutoff, int *again, dr_error *err)
{
	dr_deletion_counts none = { 0 };
	dr_db_rows *d = NULL, *n = NULL, *left = NULL;
	uint64_t waiting = 0;
	dr_status st;

	st = db_begin(db, err);
	if (st == DR_OK)
		st = db_query(db,
			      "SELECT state FROM deletions WHERE id = ?"
			      " FOR UPDATE",
			      &d, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK || d->n_rows == 0 ||
	    strcmp(db_cell(d, 0, 0), "done") == 0)
		goto out;
	st = select_jobs(db, s, cutoff, PICK_RUNNING, 0, &n, err);
	if (st == DR_OK)
		waiting = strtoull(db_cell(n, 0, 0), NULL, 10);
	if (st == DR_OK && waiting == 0)
		st = select_jobs(db, s, cutoff, PICK_ENDED, 1, &left, err);
	if (st != DR_OK)
		goto out;
	if (waiting == 0 && left->n_rows == 0) {
		st = update(db, id, &none, 0, "done", 0, err);
		if (st == DR_OK)
			dr_log(DR_LOG_INFO, "event=deletion.done deletion=%s",
			       id);
	} else {
		*again = waiting == 0;
		st = update(db, id, &none, (int64_t)waiting, "running",
			    waiting ? DR_DELETION_RECHECK : 0, err);
	}
out:
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK && db_in_transaction(db))
		db_rollback(db);
	db_rows_free(left);
	db_rows_free(n);
	db_rows_free(d);
	return st;
}

/* The end of a look: cancel what runs, then settle; *again is 1 when an
 * ended job is left to delete now. */
static dr_status wait_or_finish(dr_db *db, const char *id, int *again,
				dr_error *err)
{
	dr_db_rows *d = NULL;
	selector s = { 0 };
	dr_status st;

	st = db_query(db, "SELECT selector, cutoff FROM deletions WHERE id = ?",
		      &d, err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK && d->n_rows == 0)
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			     "no deletion %s", id);
	if (st == DR_OK)
		st = selector_read(db_cell(d, 0, 0), &s, err);
	if (st == DR_OK)
		st = cancel_running(db, id, &s, db_cell(d, 0, 1), err);
	if (st == DR_OK)
		st = settle(db, id, &s, db_cell(d, 0, 1), again, err);
	db_rows_free(d);
	json_object_put(s.root);
	return st;
}

dr_status deletion_run_batch(dr_db *db, const char *id, int *more,
			     dr_error *err)
{
	dr_status st = DR_OK;
	size_t got = 0;
	int finished = 0;

	*more = 0;
	for (int i = 0; i < DB_TX_TRIES; i++) {
		st = batch_once(db, id, &got, &finished, err);
		if (!db_tx_again(st, err))
			break;
	}
	if (st != DR_OK || finished)
		return st;
	if (got >= DR_DELETION_BATCH) {
		*more = 1;
		return DR_OK;
	}
	return wait_or_finish(db, id, more, err);
}

dr_status deletion_render(dr_db *db, const char *id, dr_buf *out, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	if (!deletion_id_valid(id))
		return dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			       "no deletion %s", id);
	st = db_query(db,
		      "SELECT id, kind, state, selector, requested_by,"
		      " jobs_deleted, jobs_waiting, objects_released,"
		      " created_at, finished_at FROM deletions WHERE id = ?",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 0) {
		db_rows_free(rows);
		return dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			       "no deletion %s", id);
	}
	st = dr_buf_printf(out,
			   "{\"id\":\"%s\",\"kind\":\"%s\",\"state\":\"%s\","
			   "\"selector\":%s,\"requested_by\":",
			   db_cell(rows, 0, 0), db_cell(rows, 0, 1),
			   db_cell(rows, 0, 2), db_cell(rows, 0, 3));
	if (st == DR_OK)
		st = dr_buf_json_string(out, db_cell(rows, 0, 4));
	if (st == DR_OK)
		st = dr_buf_printf(out,
				   ",\"counts\":{\"jobs_deleted\":%s,"
				   "\"jobs_waiting\":%s,"
				   "\"objects_released\":%s},\"created_at\":",
				   db_cell(rows, 0, 5), db_cell(rows, 0, 6),
				   db_cell(rows, 0, 7));
	if (st == DR_OK)
		st = json_append_time(out, db_cell(rows, 0, 8));
	if (st == DR_OK)
		st = dr_buf_puts(out, ",\"finished_at\":");
	if (st == DR_OK)
		st = json_append_time(out, db_cell(rows, 0, 9));
	if (st == DR_OK)
		st = dr_buf_puts(out, "}");
	db_rows_free(rows);
	if (st != DR_OK)
		return dr_fail(err, st, "too_large",
			       "the deletion does not fit the response");
	return DR_OK;
}

/* ---------------------------------------------------------- retention */

double deletion_job_retention(const dr_config *cfg, const char *status)
{
	for (size_t i = 0; i < N_ENDED; i++)
		if (strcmp(status, ended[i]) == 0)
			return cfg->retention.jobs[i];
	return 0;
}

dr_status deletion_count_expired(dr_db *db, const dr_config *cfg, uint64_t *n,
				 dr_error *err)
{
	*n = 0;
	for (size_t i = 0; i < N_ENDED; i++) {
		dr_db_rows *rows = NULL;
		dr_status st;

		if (cfg->retention.jobs[i] <= 0)
			continue;
		st = db_query(db,
			      "SELECT COUNT(*) FROM jobs WHERE status = ?"
			      " AND completed_at < NOW(6) - INTERVAL ?"
			      " MICROSECOND AND parent_id IS NULL",
			      &rows, err,
			      DB_ARGS(DB_STR(ended[i]),
				      DB_INT((int64_t)(cfg->retention.jobs[i] *
						       1e6))));
		if (st != DR_OK)
			return st;
		*n += strtoull(db_cell(rows, 0, 0), NULL, 10);
		db_rows_free(rows);
	}
	return DR_OK;
}

/* Write what one batch of expiry `x` deleted into its audit record, in
 * the batch's transaction: the first batch that deletes jobs makes the
 * record (state running; its id into `rid`), the others add to it. */
static dr_status expiry_record(dr_db *db, const dr_config *cfg,
			       const dr_expiry *x, const dr_deletion_counts *c,
			       char rid[DR_DELETION_ID_LEN + 1], dr_error *err)
{
	char sel[160];
	dr_status st;

	if (x->record[0])
		return db_exec(db,
			       "UPDATE deletions SET"
			       " jobs_deleted = jobs_deleted + ?,"
			       " objects_released = objects_released + ?,"
			       " updated_at = NOW(6) WHERE id = ?",
			       NULL, err,
			       DB_ARGS(DB_U64(c->jobs_deleted),
				       DB_U64(c->objects_released),
				       DB_STR(x->record)));
	st = new_id(rid, err);
	if (st != DR_OK)
		return st;
	snprintf(sel, sizeof(sel),
		 "{\"succeeded\":%.0f,\"failed\":%.0f,\"canceled\":%.0f}",
		 cfg->retention.jobs[0], cfg->retention.jobs[1],
		 cfg->retention.jobs[2]);
	return db_exec(db,
		       "INSERT INTO deletions (id, kind, state, selector,"
		       " requested_by, cutoff, jobs_deleted, jobs_waiting,"
		       " objects_released, run_at, created_at, updated_at)"
		       " VALUES (?, 'retention', 'running', ?, ?, NOW(6), ?, 0,"
		       " ?, NULL, NOW(6), NOW(6))",
		       NULL, err,
		       DB_ARGS(DB_STR(rid), DB_STR(sel), DB_STR(x->by),
			       DB_U64(c->jobs_deleted),
			       DB_U64(c->objects_released)));
}

static dr_status expired_once(dr_db *db, const dr_config *cfg, unsigned batch,
			      const dr_expiry *x, dr_deletion_counts *c,
			      char rid[DR_DELETION_ID_LEN + 1], size_t *got,
			      dr_error *err)
{
	dr_status st;

	*got = 0;
	st = db_begin(db, err);
	for (size_t i = 0; i < N_ENDED && st == DR_OK && *got < batch; i++) {
		dr_db_rows *rows = NULL;

		if (cfg->retention.jobs[i] <= 0)
			continue;
		st = db_query(
			db,
			"SELECT id FROM jobs WHERE status = ?"
			" AND completed_at < NOW(6) - INTERVAL ?"
			" MICROSECOND AND parent_id IS NULL"
			" ORDER BY completed_at LIMIT ?",
			&rows, err,
			DB_ARGS(DB_STR(ended[i]),
				DB_INT((int64_t)(cfg->retention.jobs[i] * 1e6)),
				DB_INT((int64_t)(batch - *got))));
		if (st == DR_OK && rows->n_rows > 0) {
			const char *ids[DR_DELETION_BATCH];

			for (size_t k = 0; k < rows->n_rows; k++)
				ids[k] = db_cell(rows, k, 0);
			/* One retried meanwhile is left alone. */
			st = delete_jobs(db, ids, rows->n_rows, 0, c, err);
		}
		if (st == DR_OK)
			*got += rows->n_rows;
		db_rows_free(rows);
	}
	if (st == DR_OK && c->jobs_deleted > 0)
		st = expiry_record(db, cfg, x, c, rid, err);
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK && db_in_transaction(db))
		db_rollback(db);
	return st;
}

dr_status deletion_expired_batch(dr_db *db, const dr_config *cfg,
				 unsigned batch, dr_expiry *x, int *more,
				 dr_error *err)
{
	dr_status st = DR_OK;
	size_t got = 0;

	*more = 0;
	if (batch == 0 || batch > DR_DELETION_BATCH)
		batch = DR_DELETION_BATCH;
	if (db_in_transaction(db))
		return dr_fail(err, DR_ERR_INTERNAL, "in_transaction",
			       "expired jobs are deleted in transactions of "
			       "their own");
	for (int i = 0; i < DB_TX_TRIES; i++) {
		dr_deletion_counts mine = { 0 };
		char rid[DR_DELETION_ID_LEN + 1] = "";

		st = expired_once(db, cfg, batch, x, &mine, rid, &got, err);
		if (st == DR_OK) {
			x->c.jobs_deleted += mine.jobs_deleted;
			x->c.objects_released += mine.objects_released;
			if (rid[0])
				memcpy(x->record, rid, sizeof(rid));
			count_deleted(db, "retention", mine.jobs_deleted);
		}
		if (!db_tx_again(st, err))
			break;
	}
	*more = st == DR_OK && got >= batch;
	return st;
}

dr_status deletion_expiry_done(dr_db *db, const dr_expiry *x, dr_error *err)
{
	if (!x->record[0])
		return DR_OK;
	return db_exec(db,
		       "UPDATE deletions SET state = 'done',"
		       " finished_at = NOW(6), updated_at = NOW(6)"
		       " WHERE id = ?",
		       NULL, err, DB_ARGS(DB_STR(x->record)));
}

/* Move deletion `id`'s next look `seconds` ahead (the failure that
 * called for it is logged by the caller). */
static void put_off(dr_db *db, const char *id, double seconds)
{
	dr_error err;

	dr_error_clear(&err);
	if (db_exec(db,
		    "UPDATE deletions SET run_at = NOW(6) + INTERVAL ?"
		    " MICROSECOND WHERE id = ? AND run_at IS NOT NULL",
		    NULL, &err,
		    DB_ARGS(DB_INT((int64_t)(seconds * 1e6)), DB_STR(id))) !=
	    DR_OK)
		dr_log(DR_LOG_DEBUG, "event=deletion.put_off_failed code=%s",
		       err.code);
}

/* The id of a selector deletion due now into id, or "" when none. */
static dr_status due_deletion(dr_db *db, char id[DR_DELETION_ID_LEN + 1],
			      dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	id[0] = '\0';
	st = db_query(db,
		      "SELECT id FROM deletions WHERE run_at <= NOW(6)"
		      " ORDER BY run_at LIMIT 1",
		      &rows, err, DB_NOARGS);
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 1)
		snprintf(id, DR_DELETION_ID_LEN + 1, "%s", db_cell(rows, 0, 0));
	db_rows_free(rows);
	return DR_OK;
}

static int any_job_retention(const dr_config *cfg)
{
	for (size_t i = 0; i < N_ENDED; i++)
		if (cfg->retention.jobs[i] > 0)
			return 1;
	return 0;
}

int deletion_step(dr_deletion_pass *p, dr_db *db, const dr_config *cfg,
		  double interval, double now)
{
	char id[DR_DELETION_ID_LEN + 1];
	dr_error err;
	int more = 0;

	dr_error_clear(&err);
	if (now >= p->next_check) {
		if (due_deletion(db, id, &err) != DR_OK) {
			dr_log(DR_LOG_WARNING,
			       "event=deletion.look_failed code=%s "
			       "reason=\"%.200s\"",
			       err.code, err.message);
			p->next_check = now + 1.0;
		} else if (id[0]) {
			if (deletion_run_batch(db, id, &more, &err) != DR_OK) {
				dr_log(DR_LOG_WARNING,
				       "event=deletion.batch_failed "
				       "deletion=%s code=%s reason=\"%.200s\"",
				       id, err.code, err.message);
				/* Later, so the deletions behind it go on
				 * meanwhile. */
				put_off(db, id, DR_DELETION_RETRY);
				p->next_check = now + 1.0;
				return 0;
			}
			return 1; /* another may be due: look again at once */
		} else {
			p->next_check = now + 1.0;
		}
	}
	if (!any_job_retention(cfg))
		return 0;
	if (!p->expiring) {
		if (now < p->next_expired)
			return 0;
		p->expiring = 1;
		memset(&p->expired, 0, sizeof(p->expired));
		p->expired.by = "retention";
	}
	if (deletion_expired_batch(db, cfg, DR_DELETION_BATCH, &p->expired,
				   &more, &err) != DR_OK) {
		dr_log(DR_LOG_WARNING,
		       "event=retention.jobs_failed code=%s reason=\"%.200s\"",
		       err.code, err.message);
		more = 0;
	}
	if (more)
		return 1;
	if (p->expired.c.jobs_deleted) {
		dr_log(DR_LOG_INFO,
		       "event=retention.jobs deleted=%llu "
		       "objects_released=%llu record=%s",
		       (unsigned long long)p->expired.c.jobs_deleted,
		       (unsigned long long)p->expired.c.objects_released,
		       p->expired.record);
		if (deletion_expiry_done(db, &p->expired, &err) != DR_OK)
			dr_log(DR_LOG_WARNING,
			       "event=retention.record_failed code=%s "
			       "reason=\"%.200s\"",
			       err.code, err.message);
	}
	p->expiring = 0;
	p->next_expired = now + interval;
	return 0;
}
