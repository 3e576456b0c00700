/*
 * test_deletion.c - core/deletion.c against a real MariaDB
 * (tests/core/dbserver.h, migrations applied) and an in-memory sink:
 *
 *  - one job by id: unknown 404, not ended 409 with nothing changed,
 *    ended deleted with every row of it (outputs, renditions, events,
 *    metadata, idempotency keys) and no row of another job, and an audit
 *    record whose JSON has the documented members;
 *  - the objects the deleted jobs used: references dropped by the number
 *    of rows that used each key, an object released (and removed through
 *    the sink) only with its last reference, never while a job storing
 *    the same bytes holds a pin on it;
 *  - selector deletions in batches, up to their cutoff, matching every
 *    filter, canceling and waiting for the jobs that have not ended;
 *  - [retention] jobs per status, in batches, with one audit record per
 *    pass that deleted any, and the worker's share (deletion_step) on a
 *    fake monotonic clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "dbserver.h"
#include "deletion.h"
#include "jobfix.h"
#include "objects.h"
#include "plugin.h"

static dr_config cfg;
static dr_db *db;

/* The sink: counts removals and remembers the keys, in order. */
static struct {
	int removes;
	char keys[1024];
} sk;

static dr_status mock_remove(void *state, const char *key, dr_error *err)
{
	(void)state;
	(void)err;
	sk.removes++;
	snprintf(sk.keys + strlen(sk.keys), sizeof(sk.keys) - strlen(sk.keys),
		 "%s%s", sk.keys[0] ? "," : "", key);
	return DR_OK;
}

static const dr_sink_ops ops = { .remove = mock_remove };
static const dr_plugin desc = { .name = "mock", .sink = &ops };
static const dr_loaded_plugin loaded = { .desc = &desc };
static struct dr_instance inst = { .name = "mock", .plugin = &loaded };

/* The API key scope a request names as requested_by. */
#define SCOPE "0123456789abcdef"

static int group_setup(void **state)
{
	(void)state;
	return dbserver_open("test_deletion", "drt_deletion", &cfg, &db) != 0
		       ? -1
		       : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dbserver_close(db);
	return 0;
}

/* Each test starts with empty tables, no sink removals and [retention]
 * jobs off. */
static int empty(void **state)
{
	static const char *const tables[] = {
		"jobs",		"outputs",	    "renditions", "job_events",
		"job_metadata", "idempotency_keys", "objects",	  "deletions",
	};
	dr_error err;

	(void)state;
	memset(&sk, 0, sizeof(sk));
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		char sql[64];

		snprintf(sql, sizeof(sql), "DELETE FROM %s", tables[i]);
		assert_ok(db_exec_text(db, sql, &err), err);
	}
	memset(cfg.retention.jobs, 0, sizeof(cfg.retention.jobs));
	return 0;
}

/* ------------------------------------------------------------ helpers */

/* The number `sql` answers, with one string parameter `a` (or none when
 * NULL). */
static long num(const char *sql, const char *a)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	long n;

	if (a)
		assert_ok(db_query_uncached(db, sql, &rows, &err,
					    DB_ARGS(DB_STR(a))),
			  err);
	else
		assert_ok(db_query_uncached(db, sql, &rows, &err, DB_NOARGS),
			  err);
	assert_int_equal(rows->n_rows, 1);
	n = strtol(db_cell(rows, 0, 0) ? db_cell(rows, 0, 0) : "-1", NULL, 10);
	db_rows_free(rows);
	return n;
}

/* Column `c` of objects row `key` as text, "(none)" without a row and
 * "(null)" for NULL; malloc'd. */
static char *obj(const char *key, const char *c)
{
	char sql[240];
	dr_db_rows *rows = NULL;
	dr_error err;
	char *v;

	snprintf(sql, sizeof(sql),
		 "SELECT %s FROM objects WHERE storage_key = ?", c);
	assert_ok(db_query_uncached(db, sql, &rows, &err, DB_ARGS(DB_STR(key))),
		  err);
	v = strdup(rows->n_rows == 0	 ? "(none)"
		   : db_cell(rows, 0, 0) ? db_cell(rows, 0, 0)
					 : "(null)");
	db_rows_free(rows);
	return v;
}

#define assert_obj(key, c, want)                                               \
	do {                                                                   \
		char *v_ = obj((key), (c));                                    \
		if (strcmp(v_, (want)) != 0)                                   \
			fail_msg("%s of %s: %s, expected %s", (c), (key), v_,  \
				 (want));                                      \
		free(v_);                                                      \
	} while (0)

/* Column `c` of deletion `id` (an expression over its row) as text. */
static char *del(const char *id, const char *c)
{
	return jobfix_cell(db, "deletions", id, c);
}

#define assert_del(id, c, want)                                                \
	do {                                                                   \
		char *v_ = del((id), (c));                                     \
		if (strcmp(v_, (want)) != 0)                                   \
			fail_msg("%s of deletion %s: %s, expected %s", (c),    \
				 (id), v_, (want));                            \
		free(v_);                                                      \
	} while (0)

/* A job in status `status` (ended ones completed now), with metadata
 * owner=`owner`, one event and one idempotency key, and no output yet. */
static void job(const char *status, const char *owner,
		char id[DR_JOB_ID_LEN + 1])
{
	jobfix f = { .status = status, .step = "done" };
	dr_error err;

	jobfix_make(db, &f, id);
	assert_ok(db_exec(db,
			  "UPDATE jobs SET completed_at = IF(status IN"
			  " ('succeeded','failed','canceled'), NOW(6), NULL)"
			  " WHERE id = ?",
			  NULL, &err, DB_ARGS(DB_STR(id))),
		  err);
	assert_ok(db_exec(db,
			  "INSERT INTO job_metadata (job_id, k, v)"
			  " VALUES (?, 'owner', ?)",
			  NULL, &err, DB_ARGS(DB_STR(id), DB_STR(owner))),
		  err);
	assert_ok(db_exec(db,
			  "INSERT INTO job_events (job_id, at, kind,"
			  " to_status) VALUES (?, NOW(6), 'status', ?)",
			  NULL, &err, DB_ARGS(DB_STR(id), DB_STR(status))),
		  err);
	assert_ok(db_exec(db,
			  "INSERT INTO idempotency_keys (scope, idem_key,"
			  " request_hash, job_id, created_at)"
			  " VALUES (?, ?, REPEAT('0', 64), ?, NOW(6))",
			  NULL, &err,
			  DB_ARGS(DB_STR(SCOPE), DB_STR(id), DB_STR(id))),
		  err);
	/* A callback delivered at its second try. */
	assert_ok(db_exec(db,
			  "INSERT INTO callback_deliveries (id, type, job_id,"
			  " url, state, attempts, last_status, created_at,"
			  " delivered_at) VALUES (CONCAT('msg_', ?, '_1'),"
			  " 'job.succeeded', ?, 'https://client.test/cb',"
			  " 'delivered', 2, 204, NOW(6), NOW(6))",
			  NULL, &err, DB_ARGS(DB_STR(id), DB_STR(id))),
		  err);
	assert_ok(db_exec(db,
			  "INSERT INTO callback_attempts (delivery_id, attempt,"
			  " started_at, duration_ms, http_status, error)"
			  " VALUES (CONCAT('msg_', ?, '_1'), 1, NOW(6), 5,"
			  " 503, 'callback_rejected: 503'),"
			  " (CONCAT('msg_', ?, '_1'), 2, NOW(6), 5, 204, NULL)",
			  NULL, &err, DB_ARGS(DB_STR(id), DB_STR(id))),
		  err);
}

/* Output `idx` of job `id` stored under `key` (NULL: a text output with
 * no object), referenced as the pipeline's index transaction does; its
 * row id. */
static long output(const char *id, int idx, const char *key)
{
	char sql[160];
	dr_error err;

	assert_ok(db_exec(db,
			  "INSERT INTO outputs (job_id, idx, kind, state,"
			  " storage_key, bytes, created_at)"
			  " VALUES (?, ?, IF(? IS NULL, 'text', 'image'),"
			  " 'stored', ?, 10, NOW(6))",
			  NULL, &err,
			  DB_ARGS(DB_STR(id), DB_INT(idx), DB_STR(key),
				  DB_STR(key))),
		  err);
	if (key)
		assert_ok(objects_ref(db, key, DR_OBJECT_ORIGINAL, 10, &err),
			  err);
	snprintf(sql, sizeof(sql),
		 "SELECT id FROM outputs WHERE job_id = ? AND idx = %d", idx);
	return num(sql, id);
}

/* Rendition `name` of output `out` under `key`, referenced. */
static void rendition(long out, const char *name, const char *key)
{
	dr_error err;

	assert_ok(db_exec(db,
			  "INSERT INTO renditions (output_id, name,"
			  " storage_key, content_type, width, height, bytes,"
			  " preset_hash, created_at) VALUES (?, ?, ?,"
			  " 'image/webp', 1, 1, 7, '0123456789abcdef', NOW(6))",
			  NULL, &err,
			  DB_ARGS(DB_INT(out), DB_STR(name), DB_STR(key))),
		  err);
	assert_ok(objects_ref(db, key, DR_OBJECT_RENDITION, 7, &err), err);
}

/* The rows of job `id` in each table a deletion empties, as
 * "jobs outputs renditions events metadata idempotency_keys
 * callback_deliveries callback_attempts". */
static char *rows_of(const char *id)
{
	char buf[160];

	snprintf(buf, sizeof(buf), "%ld %ld %ld %ld %ld %ld %ld %ld",
		 num("SELECT COUNT(*) FROM jobs WHERE id = ?", id),
		 num("SELECT COUNT(*) FROM outputs WHERE job_id = ?", id),
		 num("SELECT COUNT(*) FROM renditions r JOIN outputs o"
		     " ON o.id = r.output_id WHERE o.job_id = ?",
		     id),
		 num("SELECT COUNT(*) FROM job_events WHERE job_id = ?", id),
		 num("SELECT COUNT(*) FROM job_metadata WHERE job_id = ?", id),
		 num("SELECT COUNT(*) FROM idempotency_keys WHERE job_id = ?",
		     id),
		 num("SELECT COUNT(*) FROM callback_deliveries WHERE"
		     " job_id = ?",
		     id),
		 /* by the delivery's id: an attempt left without its
		  * delivery counts too */
		 num("SELECT COUNT(*) FROM callback_attempts WHERE"
		     " delivery_id = CONCAT('msg_', ?, '_1')",
		     id));
	return strdup(buf);
}

#define assert_rows(id, want)                                                  \
	do {                                                                   \
		char *v_ = rows_of(id);                                        \
		if (strcmp(v_, (want)) != 0)                                   \
			fail_msg("rows of %s: %s, expected %s", (id), v_,      \
				 (want));                                      \
		free(v_);                                                      \
	} while (0)

/* `n` jobs in status `status`, ids "j_", `prefix` (20 characters) and
 * a zero-padded number 1..n, made (and ended) `age` seconds ago, each with
 * metadata k1=v1 and k2=v2 (k2 NULL: none) and one output under a key
 * of its own ("ab/<id>.png", referenced once): one statement per
 * table, for hundreds of jobs. */
static void jobs_bulk(const char *prefix, int n, const char *status,
		      int64_t age, const char *k1, const char *v1,
		      const char *k2, const char *v2)
{
	dr_error err;

	assert_int_equal(strlen(prefix), 20);
	assert_ok(db_exec(db,
			  "INSERT INTO jobs (id, status, step, adapter, model,"
			  " input, renditions, created_at, updated_at,"
			  " completed_at)"
			  " SELECT CONCAT('j_', ?, LPAD(seq, 6, '0')),"
			  " ?, 'done', 'fake', 'm', '{}', '[]',"
			  " NOW(6) - INTERVAL ? SECOND, NOW(6),"
			  " IF(? IN ('succeeded','failed','canceled'),"
			  " NOW(6) - INTERVAL ? SECOND, NULL)"
			  " FROM seq_1_to_1000 WHERE seq <= ?",
			  NULL, &err,
			  DB_ARGS(DB_STR(prefix), DB_STR(status), DB_INT(age),
				  DB_STR(status), DB_INT(age), DB_INT(n))),
		  err);
	for (int i = 0; i < 2; i++) {
		const char *k = i ? k2 : k1, *v = i ? v2 : v1;

		if (!k)
			continue;
		assert_ok(db_exec(db,
				  "INSERT INTO job_metadata (job_id, k, v)"
				  " SELECT CONCAT('j_', ?, LPAD(seq, 6, '0')),"
				  " ?, ?"
				  " FROM seq_1_to_1000 WHERE seq <= ?",
				  NULL, &err,
				  DB_ARGS(DB_STR(prefix), DB_STR(k), DB_STR(v),
					  DB_INT(n))),
			  err);
	}
	assert_ok(db_exec(db,
			  "INSERT INTO outputs (job_id, idx, kind, state,"
			  " storage_key, bytes, created_at)"
			  " SELECT CONCAT('j_', ?, LPAD(seq, 6, '0')),"
			  " 0, 'image',"
			  " 'stored', CONCAT('ab/', ?, LPAD(seq, 6, '0'),"
			  " '.png'), 10, NOW(6)"
			  " FROM seq_1_to_1000 WHERE seq <= ?",
			  NULL, &err,
			  DB_ARGS(DB_STR(prefix), DB_STR(prefix), DB_INT(n))),
		  err);
	assert_ok(db_exec(db,
			  "INSERT INTO objects (storage_key, kind, bytes, refs,"
			  " state, created_at, updated_at)"
			  " SELECT CONCAT('ab/', ?, LPAD(seq, 6, '0'),"
			  " '.png'), 'original', 10, 1, 'stored', NOW(6),"
			  " NOW(6) FROM seq_1_to_1000 WHERE seq <= ?",
			  NULL, &err, DB_ARGS(DB_STR(prefix), DB_INT(n))),
		  err);
}

/* Jobs whose id starts with `prefix`. */
static long jobs_like(const char *prefix)
{
	char pat[40];

	snprintf(pat, sizeof(pat), "%s%%", prefix);
	return num("SELECT COUNT(*) FROM jobs WHERE id LIKE ?", pat);
}

/* 1 when `t` is a time as the API writes them: "YYYY-MM-DDTHH:MM:SS.mmmZ". */
static int api_time(const char *t)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";

	if (strlen(t) != strlen(shape))
		return 0;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? (t[i] < '0' || t[i] > '9')
				    : t[i] != shape[i])
			return 0;
	return 1;
}

/* Render deletion `id` and check its JSON: exactly the documented
 * members, of the documented types, with these values. */
static void check_render(const char *id, const char *kind, const char *state,
			 const char *selector, const char *by, long deleted,
			 long waiting, long released, int finished)
{
	json_object *root, *v, *counts, *sel_want;
	dr_buf out;
	dr_error err;

	dr_buf_init(&out, 4096);
	assert_ok(deletion_render(db, id, &out, &err), err);
	root = json_tokener_parse(out.data);
	if (!root || !json_object_is_type(root, json_type_object))
		fail_msg("not a JSON object: %s", out.data);
	assert_int_equal(json_object_object_length(root), 8);
	assert_true(json_object_object_get_ex(root, "id", &v));
	assert_string_equal(json_object_get_string(v), id);
	assert_true(json_object_object_get_ex(root, "kind", &v));
	assert_string_equal(json_object_get_string(v), kind);
	assert_true(json_object_object_get_ex(root, "state", &v));
	assert_string_equal(json_object_get_string(v), state);
	assert_true(json_object_object_get_ex(root, "requested_by", &v));
	assert_true(json_object_is_type(v, json_type_string));
	assert_string_equal(json_object_get_string(v), by);
	assert_true(json_object_object_get_ex(root, "selector", &v));
	assert_true(json_object_is_type(v, json_type_object));
	sel_want = json_tokener_parse(selector);
	assert_non_null(sel_want);
	if (!json_object_equal(v, sel_want))
		fail_msg("selector %s, expected %s",
			 json_object_to_json_string(v), selector);
	json_object_put(sel_want);
	assert_true(json_object_object_get_ex(root, "counts", &counts));
	assert_true(json_object_is_type(counts, json_type_object));
	assert_int_equal(json_object_object_length(counts), 3);
	assert_true(json_object_object_get_ex(counts, "jobs_deleted", &v));
	assert_true(json_object_is_type(v, json_type_int));
	assert_int_equal(json_object_get_int64(v), deleted);
	assert_true(json_object_object_get_ex(counts, "jobs_waiting", &v));
	assert_true(json_object_is_type(v, json_type_int));
	assert_int_equal(json_object_get_int64(v), waiting);
	assert_true(json_object_object_get_ex(counts, "objects_released", &v));
	assert_true(json_object_is_type(v, json_type_int));
	assert_int_equal(json_object_get_int64(v), released);
	assert_true(json_object_object_get_ex(root, "created_at", &v));
	assert_true(json_object_is_type(v, json_type_string));
	assert_true(api_time(json_object_get_string(v)));
	assert_true(json_object_object_get_ex(root, "finished_at", &v));
	if (finished) {
		assert_true(json_object_is_type(v, json_type_string));
		assert_true(api_time(json_object_get_string(v)));
	} else {
		assert_true(json_object_is_type(v, json_type_null));
	}
	json_object_put(root);
	dr_buf_free(&out);
}

/* ------------------------------------------------------ one job by id */

/* An unknown id, or no job id at all: not found, nothing recorded. */
static void test_delete_unknown(void **state)
{
	char id[DR_JOB_ID_LEN + 1], did[DR_DELETION_ID_LEN + 1] = "";
	dr_deletion_counts c = { 7, 7, 7 };
	dr_error err;

	(void)state;
	assert_int_equal(ids_new_job_id(id), DR_OK);
	dr_error_clear(&err);
	assert_int_equal(deletion_delete_job(db, id, SCOPE, did, &c, &err),
			 DR_ERR_NOT_FOUND);
	assert_string_equal(err.code, "not_found");
	assert_string_equal(did, "");
	dr_error_clear(&err);
	assert_int_equal(
		deletion_delete_job(db, "j_nope", "cli", NULL, NULL, &err),
		DR_ERR_NOT_FOUND);
	assert_string_equal(err.code, "not_found");
	assert_int_equal(num("SELECT COUNT(*) FROM deletions", NULL), 0);
}

/* A job that has not ended: 409 job_not_ended, every row of it and its
 * objects' counts as they were, no record. */
static void test_delete_not_ended(void **state)
{
	static const char *const running[] = { "queued", "starting",
					       "processing", "persisting" };
	dr_error err;

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		char id[DR_JOB_ID_LEN + 1], key[40], thumb[40];

		snprintf(key, sizeof(key), "ab/run%zu.png", i);
		snprintf(thumb, sizeof(thumb), "ab/run%zu/thumb.webp", i);
		job(running[i], "ann", id);
		rendition(output(id, 0, key), "thumb", thumb);
		dr_error_clear(&err);
		assert_int_equal(
			deletion_delete_job(db, id, SCOPE, NULL, NULL, &err),
			DR_ERR_CONFLICT);
		assert_string_equal(err.code, "job_not_ended");
		assert_rows(id, "1 1 1 1 1 1 1 2");
		assert_col(db, id, "status", running[i]);
		assert_obj(key, "CONCAT(refs, ' ', state)", "1 stored");
		assert_obj(thumb, "CONCAT(refs, ' ', state)", "1 stored");
	}
	assert_int_equal(num("SELECT COUNT(*) FROM deletions", NULL), 0);
	assert_false(db_in_transaction(db));
}

/* An ended job goes with every row of it, another job's rows stay; the
 * record says who, what and how much, and renders as documented. */
static void test_delete_ended(void **state)
{
	static const char *const ended[] = { "succeeded", "failed",
					     "canceled" };
	static const char *const card_refs[] = { "2", "1", "0" };
	char other[DR_JOB_ID_LEN + 1], ids[3][DR_JOB_ID_LEN + 1];
	dr_error err;

	(void)state;
	job("succeeded", "bob", other);
	rendition(output(other, 0, "ab/other.png"), "thumb",
		  "ab/other/thumb.webp");
	output(other, 1, NULL);
	for (size_t i = 0; i < 3; i++) {
		char key[40], thumb[40];
		long out;

		snprintf(key, sizeof(key), "ab/end%zu.png", i);
		snprintf(thumb, sizeof(thumb), "ab/end%zu/thumb.webp", i);
		job(ended[i], "ann", ids[i]);
		out = output(ids[i], 0, key);
		rendition(out, "thumb", thumb);
		rendition(out, "card", "ab/end/card.jpg"); /* shared by all */
		output(ids[i], 1, NULL);		   /* text */
		assert_rows(ids[i], "1 2 2 1 1 1 1 2");
	}
	assert_obj("ab/end/card.jpg", "refs", "3");
	for (size_t i = 0; i < 3; i++) {
		const char *id = ids[i];
		char did[DR_DELETION_ID_LEN + 1], key[40], sel[128];
		dr_deletion_counts c = { 0 };

		snprintf(key, sizeof(key), "ab/end%zu.png", i);
		assert_ok(deletion_delete_job(db, id, SCOPE, did, &c, &err),
			  err);
		assert_false(db_in_transaction(db));
		assert_int_equal(c.jobs_deleted, 1);
		assert_int_equal(c.jobs_waiting, 0);
		/* key and thumb; the shared card only with the last job */
		assert_int_equal(c.objects_released, i < 2 ? 2 : 3);
		assert_rows(id, "0 0 0 0 0 0 0 0");
		for (size_t k = i + 1; k < 3; k++)
			assert_rows(ids[k], "1 2 2 1 1 1 1 2");
		assert_rows(other, "1 2 1 1 1 1 1 2");
		/* No rendition left of the outputs gone. */
		assert_int_equal(num("SELECT COUNT(*) FROM renditions", NULL),
				 1 + 2 * (2 - (long)i));
		assert_obj(key, "CONCAT(refs, ' ', state)", "0 removing");
		assert_obj(key, "remove_after <= NOW(6)", "1");
		assert_obj("ab/end/card.jpg", "refs", card_refs[i]);
		assert_obj("ab/other.png", "CONCAT(refs, ' ', state)",
			   "1 stored");
		assert_obj("ab/other/thumb.webp", "refs", "1");

		assert_true(deletion_id_valid(did));
		snprintf(sel, sizeof(sel), "{\"id\":\"%s\"}", id);
		assert_del(did, "CONCAT(kind, ' ', state, ' ', requested_by)",
			   "job done " SCOPE);
		assert_del(did, "selector", sel);
		assert_del(did,
			   "CONCAT(jobs_deleted, ' ', jobs_waiting, ' ',"
			   " objects_released)",
			   i < 2 ? "1 0 2" : "1 0 3");
		assert_del(did, "finished_at IS NOT NULL AND run_at IS NULL",
			   "1");
		check_render(did, "job", "done", sel, SCOPE, 1, 0,
			     i < 2 ? 2 : 3, 1);

		/* Gone: a second delete finds nothing. */
		dr_error_clear(&err);
		assert_int_equal(
			deletion_delete_job(db, id, SCOPE, NULL, NULL, &err),
			DR_ERR_NOT_FOUND);
	}
	assert_obj("ab/end/card.jpg", "CONCAT(refs, ' ', state)", "0 removing");
	assert_int_equal(num("SELECT COUNT(*) FROM deletions", NULL), 3);
	assert_int_equal(num("SELECT COUNT(*) FROM jobs", NULL), 1);

	/* "cli" as the requester; no counts pointer. */
	{
		char id[DR_JOB_ID_LEN + 1], did[DR_DELETION_ID_LEN + 1];

		job("failed", "cy", id);
		assert_ok(deletion_delete_job(db, id, "cli", did, NULL, &err),
			  err);
		assert_del(did, "requested_by", "cli");
		assert_del(did, "jobs_deleted", "1");
	}
}

/* Rendering: an unknown deletion or no deletion id is not found. */
static void test_render_unknown(void **state)
{
	char id[DR_DELETION_ID_LEN + 1];
	dr_buf out;
	dr_error err;

	(void)state;
	dr_buf_init(&out, 4096);
	assert_int_equal(ids_new_job_id(id), DR_OK);
	id[0] = 'd';
	assert_int_equal(deletion_render(db, id, &out, &err), DR_ERR_NOT_FOUND);
	assert_int_equal(deletion_render(db, "d_x", &out, &err),
			 DR_ERR_NOT_FOUND);
	id[0] = 'j';
	assert_int_equal(deletion_render(db, id, &out, &err), DR_ERR_NOT_FOUND);
	assert_int_equal(out.len, 0);
	dr_buf_free(&out);
}

/* ------------------------------------------------------------ objects */

/* Two jobs share keys (job A uses one original and one rendition key
 * twice, and one key of its own twice): deleting A drops as many
 * references as A's rows used and releases only what A alone used;
 * deleting B releases each shared object once, due at once, and the sink
 * removes each once. */
static void test_shared_objects(void **state)
{
	char a[DR_JOB_ID_LEN + 1], b[DR_JOB_ID_LEN + 1];
	dr_deletion_counts c = { 0 };
	dr_object_removals r;
	long o;
	dr_error err;

	(void)state;
	memset(&r, 0, sizeof(r));
	job("succeeded", "ann", a);
	o = output(a, 0, "ab/s.png");
	rendition(o, "thumb", "ab/s/thumb.webp");
	o = output(a, 1, "ab/s.png"); /* the same bytes twice */
	rendition(o, "thumb", "ab/s/thumb.webp");
	rendition(o, "card", "ab/s/card.jpg");
	output(a, 2, "ab/a-only.png");
	output(a, 3, "ab/a-only.png"); /* A's alone, twice */
	job("failed", "bob", b);
	o = output(b, 0, "ab/s.png");
	rendition(o, "thumb", "ab/s/thumb.webp");
	rendition(o, "card", "ab/s/card.jpg");
	output(b, 1, "ab/b-only.png");
	assert_obj("ab/s.png", "refs", "3");
	assert_obj("ab/s/thumb.webp", "refs", "3");
	assert_obj("ab/s/card.jpg", "refs", "2");
	assert_obj("ab/a-only.png", "refs", "2");

	assert_ok(deletion_delete_job(db, a, SCOPE, NULL, &c, &err), err);
	assert_int_equal(c.objects_released, 1);
	assert_obj("ab/s.png", "CONCAT(refs, ' ', state)", "1 stored");
	assert_obj("ab/s.png", "remove_after", "(null)");
	assert_obj("ab/s/thumb.webp", "CONCAT(refs, ' ', state)", "1 stored");
	assert_obj("ab/s/card.jpg", "CONCAT(refs, ' ', state)", "1 stored");
	assert_obj("ab/a-only.png", "CONCAT(refs, ' ', state)", "0 removing");
	assert_obj("ab/b-only.png", "refs", "1");
	/* Due at once: the sink removes a-only, nothing else. */
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.removed, 1);
	assert_string_equal(sk.keys, "ab/a-only.png");
	assert_obj("ab/a-only.png", "refs", "(none)");

	assert_ok(deletion_delete_job(db, b, "cli", NULL, &c, &err), err);
	assert_int_equal(c.jobs_deleted, 1);
	assert_int_equal(c.objects_released, 4);
	assert_int_equal(num("SELECT COUNT(*) FROM objects WHERE refs = 0 AND"
			     " state = 'removing' AND remove_after <= NOW(6)",
			     NULL),
			 4);
	memset(&sk, 0, sizeof(sk));
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.removed, 5);
	assert_int_equal(sk.removes, 4);
	assert_int_equal(num("SELECT COUNT(*) FROM objects", NULL), 0);
	/* Each key once. */
	assert_non_null(strstr(sk.keys, "ab/s.png"));
	assert_non_null(strstr(sk.keys, "ab/s/thumb.webp"));
	assert_non_null(strstr(sk.keys, "ab/s/card.jpg"));
	assert_non_null(strstr(sk.keys, "ab/b-only.png"));
	assert_int_equal(num("SELECT COUNT(*) FROM deletions WHERE"
			     " objects_released = 4",
			     NULL),
			 1);
}

/* A job storing the same bytes pinned the key (as the pipeline does
 * before its upload) when the only job that used it is deleted: the
 * removal due at once is skipped and moved to the pin's end; the pin's
 * reference then takes the object over, and it is never removed. */
static void test_pinned_key_survives_delete(void **state)
{
	const char *key = "ab/same.png", *kind = DR_OBJECT_ORIGINAL;
	char id[DR_JOB_ID_LEN + 1];
	dr_deletion_counts c = { 0 };
	dr_object_removals r;
	double in = -1;
	dr_error err;

	(void)state;
	memset(&r, 0, sizeof(r));
	job("succeeded", "ann", id);
	output(id, 0, key);
	/* The storing job pins it before uploading. */
	assert_ok(objects_pin(db, &key, &kind, 1, DR_OBJECT_PIN_HOLD, &err),
		  err);
	assert_obj(key, "CONCAT(refs, ' ', pins)", "1 1");

	assert_ok(deletion_delete_job(db, id, SCOPE, NULL, &c, &err), err);
	assert_int_equal(c.objects_released, 1);
	assert_obj(key, "CONCAT(refs, ' ', pins, ' ', state)", "0 1 removing");
	assert_obj(key, "remove_after <= NOW(6)", "1");

	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.looked, 1);
	assert_int_equal(r.skipped, 1);
	assert_int_equal(r.removed, 0);
	assert_int_equal(sk.removes, 0);
	assert_obj(key, "remove_after = pinned_until", "1");
	assert_obj(key, "remove_after > NOW(6) + INTERVAL 86000 SECOND", "1");
	assert_ok(objects_due_in(db, &in, &err), err);
	assert_true(in > 86000 && in <= DR_OBJECT_PIN_HOLD);

	/* The storing job indexes it. */
	assert_ok(db_begin(db, &err), err);
	assert_ok(objects_ref(db, key, DR_OBJECT_ORIGINAL, 10, &err), err);
	assert_ok(db_commit(db, &err), err);
	assert_obj(key, "CONCAT(refs, ' ', pins, ' ', state)", "1 0 stored");
	assert_obj(key, "pinned_until", "(null)");
	assert_obj(key, "remove_after", "(null)");
	/* Not due any more: never looked at again. */
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.looked, 1);
	assert_int_equal(sk.removes, 0);
	assert_obj(key, "refs", "1");
}

/* A pin whose job never referred to the key ends with pinned_until: it
 * no longer protects the object a delete released. */
static void test_expired_pin_does_not_protect(void **state)
{
	const char *key = "ab/stale.png", *kind = DR_OBJECT_ORIGINAL;
	char id[DR_JOB_ID_LEN + 1];
	dr_object_removals r;
	dr_error err;

	(void)state;
	memset(&r, 0, sizeof(r));
	job("canceled", "ann", id);
	output(id, 0, key);
	assert_ok(objects_pin(db, &key, &kind, 1, DR_OBJECT_PIN_HOLD, &err),
		  err);
	/* Its job failed a day ago: the pin is still counted, but ended. */
	assert_ok(db_exec(db,
			  "UPDATE objects SET pinned_until = NOW(6) -"
			  " INTERVAL 1 SECOND WHERE storage_key = ?",
			  NULL, &err, DB_ARGS(DB_STR(key))),
		  err);
	assert_ok(deletion_delete_job(db, id, SCOPE, NULL, NULL, &err), err);
	assert_obj(key, "CONCAT(refs, ' ', pins)", "0 1");
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.removed, 1);
	assert_string_equal(sk.keys, key);
	assert_obj(key, "refs", "(none)");
}

/* ---------------------------------------------------------- selectors */

/* A selector needs a filter, and a valid one; nothing is recorded. */
static void test_request_invalid(void **state)
{
	dr_metadata_filter bad = { "bad key!", "x" };
	char did[DR_DELETION_ID_LEN + 1];
	dr_error err;

	(void)state;
	dr_error_clear(&err);
	assert_int_equal(deletion_request(db, NULL, 0, SCOPE, did, &err),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "invalid_parameter");
	dr_error_clear(&err);
	assert_int_equal(deletion_request(db, &bad, 1, SCOPE, did, &err),
			 DR_ERR_INVALID);
	assert_int_equal(num("SELECT COUNT(*) FROM deletions", NULL), 0);
}

/* 250 matching ended jobs: three batches (100, 100, 50), the counts
 * adding up, then done. Jobs matching one filter only, and matching jobs
 * made after the request, stay. */
static void test_selector_batches(void **state)
{
	dr_metadata_filter meta[] = { { "campaign", "c7" }, { "tag", "x" } };
	char did[DR_DELETION_ID_LEN + 1], late[DR_JOB_ID_LEN + 1];
	int more = -1;
	dr_error err;

	(void)state;
	jobs_bulk("01M8457ED2RMPKJD94HA", 250, "succeeded", 60, "campaign",
		  "c7", "tag", "x");
	jobs_bulk("01M8457ED2RMPKJD94HB", 5, "failed", 60, "campaign", "c7",
		  "tag", "y");
	jobs_bulk("01M8457ED2RMPKJD94HC", 5, "canceled", 60, "campaign", "c8",
		  "tag", "x");
	jobs_bulk("01M8457ED2RMPKJD94HD", 5, "succeeded", 60, "campaign", "c7",
		  NULL, NULL);
	/* Made just before the request (this second): matches. */
	jobs_bulk("01M8457ED2RMPKJD94HE", 2, "failed", 0, "campaign", "c7",
		  "tag", "x");

	assert_ok(deletion_request(db, meta, 2, SCOPE, did, &err), err);
	assert_true(deletion_id_valid(did));
	assert_del(did, "CONCAT(kind, ' ', state, ' ', requested_by)",
		   "selector queued " SCOPE);
	assert_del(did, "run_at <= NOW(6) AND finished_at IS NULL", "1");
	check_render(did, "selector", "queued",
		     "{\"metadata.campaign\":\"c7\",\"metadata.tag\":\"x\"}",
		     SCOPE, 0, 0, 0, 0);
	/* Made after the request: not this deletion's. */
	job("succeeded", "late", late);
	assert_ok(db_exec(db,
			  "INSERT INTO job_metadata (job_id, k, v) VALUES"
			  " (?, 'campaign', 'c7'), (?, 'tag', 'x')",
			  NULL, &err, DB_ARGS(DB_STR(late), DB_STR(late))),
		  err);

	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_int_equal(more, 1);
	assert_del(did, "CONCAT(state, ' ', jobs_deleted)", "running 100");
	assert_del(did, "run_at <= NOW(6) AND finished_at IS NULL", "1");
	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_int_equal(more, 1);
	assert_del(did, "CONCAT(state, ' ', jobs_deleted)", "running 200");
	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_int_equal(more, 0);
	assert_false(db_in_transaction(db));
	assert_del(did,
		   "CONCAT(state, ' ', jobs_deleted, ' ', jobs_waiting, ' ',"
		   " objects_released)",
		   "done 252 0 252");
	assert_del(did, "finished_at IS NOT NULL AND run_at IS NULL", "1");
	check_render(did, "selector", "done",
		     "{\"metadata.campaign\":\"c7\",\"metadata.tag\":\"x\"}",
		     SCOPE, 252, 0, 252, 1);

	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HA"), 0);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HE"), 0);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HB"), 5);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HC"), 5);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HD"), 5);
	assert_rows(late, "1 0 0 1 3 1 1 2");
	assert_int_equal(num("SELECT COUNT(*) FROM job_metadata WHERE job_id"
			     " LIKE 'j_01M8457ED2RMPKJD94HA%'",
			     NULL),
			 0);
	assert_int_equal(num("SELECT COUNT(*) FROM outputs", NULL), 15);
	assert_int_equal(
		num("SELECT COUNT(*) FROM objects WHERE refs = 0", NULL), 252);

	/* Finished: nothing more to run, and nothing changes (a second
	 * process running the same deletion ends quietly). */
	more = 1;
	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_int_equal(more, 0);
	assert_int_equal(num("SELECT jobs_deleted FROM deletions WHERE id = ?",
			     did),
			 252);
	assert_int_equal(deletion_run_batch(db, "d_nope", &more, &err),
			 DR_ERR_NOT_FOUND);
}

/* As many filters as a request may have: the job with every one goes,
 * the job missing the last one stays. */
static void test_selector_all_filters(void **state)
{
	dr_metadata_filter meta[DR_MAX_METADATA_FILTERS];
	char keys[DR_MAX_METADATA_FILTERS][16], did[DR_DELETION_ID_LEN + 1];
	char all[DR_JOB_ID_LEN + 1], most[DR_JOB_ID_LEN + 1];
	int more = -1;
	dr_error err;

	(void)state;
	job("succeeded", "ann", all);
	job("succeeded", "ann", most);
	for (size_t i = 0; i < DR_MAX_METADATA_FILTERS; i++) {
		snprintf(keys[i], sizeof(keys[i]), "key%zu", i);
		meta[i].key = keys[i];
		meta[i].value = i ? "v" : "ann";
		if (i == 0)
			snprintf(keys[i], sizeof(keys[i]), "owner");
		else
			assert_ok(
				db_exec(db,
					"INSERT INTO job_metadata (job_id,"
					" k, v) VALUES (?, ?, 'v'), (?, ?,"
					" IF(? = ?, 'w', 'v'))",
					NULL, &err,
					DB_ARGS(DB_STR(all), DB_STR(keys[i]),
						DB_STR(most), DB_STR(keys[i]),
						DB_INT((int64_t)i),
						DB_INT(DR_MAX_METADATA_FILTERS -
						       1))),
				err);
	}
	assert_ok(deletion_request(db, meta, DR_MAX_METADATA_FILTERS, SCOPE,
				   did, &err),
		  err);
	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_del(did, "CONCAT(state, ' ', jobs_deleted)", "done 1");
	assert_rows(all, "0 0 0 0 0 0 0 0");
	assert_rows(most, "1 0 0 1 16 1 1 2");
}

/* Values match exactly: a deletion for "ann" leaves "Ann", "ANN", "ann "
 * and "ánn", which the column's collation (and so a search) would take
 * for the same; a second filter compares exactly too. */
static void test_selector_exact_values(void **state)
{
	static const char *const near[] = { "Ann", "ANN", "ann ", "\xc3\xa1nn" };
	dr_metadata_filter meta[] = { { "owner", "ann" } };
	char did[DR_DELETION_ID_LEN + 1], mine[DR_JOB_ID_LEN + 1];
	char kept[4][DR_JOB_ID_LEN + 1];
	int more = -1;
	dr_error err;

	(void)state;
	job("succeeded", "ann", mine);
	for (size_t i = 0; i < 4; i++)
		job("succeeded", near[i], kept[i]);
	assert_ok(deletion_request(db, meta, 1, "cli", did, &err), err);
	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_int_equal(more, 0);
	assert_del(did, "CONCAT(state, ' ', jobs_deleted)", "done 1");
	assert_rows(mine, "0 0 0 0 0 0 0 0");
	for (size_t i = 0; i < 4; i++)
		assert_rows(kept[i], "1 0 0 1 1 1 1 2");
}

/* A matching queued job is canceled at once, so it has ended when the
 * deletion settles: the deletion stays running, due again at once
 * (*more), and the next batch deletes it. */
static void test_selector_cancels_queued(void **state)
{
	dr_metadata_filter meta[] = { { "owner", "ann" } };
	char did[DR_DELETION_ID_LEN + 1], q[DR_JOB_ID_LEN + 1];
	char s[DR_JOB_ID_LEN + 1], other[DR_JOB_ID_LEN + 1];
	char late[DR_JOB_ID_LEN + 1];
	int more = -1;
	dr_error err;

	(void)state;
	job("queued", "ann", q);
	job("succeeded", "ann", s);
	job("queued", "bob", other);
	assert_ok(deletion_request(db, meta, 1, "cli", did, &err), err);
	job("queued", "ann", late); /* after the request: not canceled */

	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_int_equal(more, 1);
	assert_rows(s, "0 0 0 0 0 0 0 0");
	assert_col(db, q, "status", "canceled");
	assert_col(db, other, "status", "queued");
	assert_del(did, "CONCAT(state, ' ', jobs_deleted, ' ', jobs_waiting)",
		   "running 1 0");
	assert_del(did, "run_at <= NOW(6) AND finished_at IS NULL", "1");
	check_render(did, "selector", "running", "{\"metadata.owner\":\"ann\"}",
		     "cli", 1, 0, 0, 0);

	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_int_equal(more, 0);
	assert_rows(q, "0 0 0 0 0 0 0 0");
	assert_rows(other, "1 0 0 1 1 1 1 2");
	assert_rows(late, "1 0 0 1 1 1 1 2");
	assert_col(db, late, "CONCAT(status, ' ', cancel_requested)",
		   "queued 0");
	assert_del(did, "CONCAT(state, ' ', jobs_deleted, ' ', jobs_waiting)",
		   "done 2 0");
}

/* A matching job that runs at the provider gets cancel_requested (once);
 * the deletion stays running, waiting for it, due again later; once the
 * job has ended, the next batch deletes it and the deletion is done. */
static void test_selector_waits_for_running(void **state)
{
	dr_metadata_filter meta[] = { { "owner", "ann" } };
	char did[DR_DELETION_ID_LEN + 1], p[DR_JOB_ID_LEN + 1];
	dr_deletion_pass pass;
	int more = -1;
	dr_error err;

	(void)state;
	memset(&pass, 0, sizeof(pass));
	job("processing", "ann", p);
	assert_ok(deletion_request(db, meta, 1, SCOPE, did, &err), err);

	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_int_equal(more, 0);
	assert_col(db, p, "CONCAT(status, ' ', cancel_requested)",
		   "processing 1");
	assert_del(did, "CONCAT(state, ' ', jobs_deleted, ' ', jobs_waiting)",
		   "running 0 1");
	assert_del(did,
		   "run_at > NOW(6) + INTERVAL 4 SECOND AND"
		   " run_at < NOW(6) + INTERVAL 6 SECOND",
		   "1");
	/* Not due: the worker's share leaves it alone. */
	assert_int_equal(deletion_step(&pass, db, &cfg, 60, 100.0), 0);
	assert_del(did, "CONCAT(state, ' ', jobs_waiting)", "running 1");

	/* Looked at again before the job ended: still waiting, not asked
	 * twice. */
	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_del(did, "CONCAT(state, ' ', jobs_waiting)", "running 1");
	assert_int_equal(num("SELECT COUNT(*) FROM job_events WHERE job_id = ?"
			     " AND kind = 'cancel_requested'",
			     p),
			 1);
	assert_rows(p, "1 0 0 2 1 1 1 2");

	/* The worker canceled it at the provider. */
	assert_ok(db_exec(db,
			  "UPDATE jobs SET status = 'canceled',"
			  " completed_at = NOW(6) WHERE id = ?",
			  NULL, &err, DB_ARGS(DB_STR(p))),
		  err);
	assert_ok(deletion_run_batch(db, did, &more, &err), err);
	assert_int_equal(more, 0);
	assert_rows(p, "0 0 0 0 0 0 0 0");
	assert_del(did, "CONCAT(state, ' ', jobs_deleted, ' ', jobs_waiting)",
		   "done 1 0");
	assert_del(did, "finished_at IS NOT NULL AND run_at IS NULL", "1");
}

/* ---------------------------------------------------------- retention */

/* Set completed_at of jobs `prefix`* to `age` seconds ago. */
static void ended_ago(const char *prefix, int64_t age)
{
	char pat[40];
	dr_error err;

	snprintf(pat, sizeof(pat), "%s%%", prefix);
	assert_ok(db_exec(db,
			  "UPDATE jobs SET completed_at = NOW(6) -"
			  " INTERVAL ? SECOND WHERE id LIKE ?",
			  NULL, &err, DB_ARGS(DB_INT(age), DB_STR(pat))),
		  err);
}

/* Only ended jobs of a status with a setting, ended longer ago than it,
 * go: in batches of the size asked, with their objects; the record is
 * written once, and only when jobs went. */
static void test_retention_per_status(void **state)
{
	dr_expiry x = { .by = "retention" };
	uint64_t n = 99;
	int more = -1;
	dr_error err;

	(void)state;
	cfg.retention.jobs[0] = 3600; /* succeeded */
	cfg.retention.jobs[1] = 0;    /* failed: kept for ever */
	cfg.retention.jobs[2] = 60;   /* canceled */
	jobs_bulk("01M8457ED2RMPKJD94HA", 3, "succeeded", 0, "k", "v", NULL,
		  NULL);
	ended_ago("j_01M8457ED2RMPKJD94HA", 7200); /* expired */
	jobs_bulk("01M8457ED2RMPKJD94HB", 2, "succeeded", 0, "k", "v", NULL,
		  NULL);
	ended_ago("j_01M8457ED2RMPKJD94HB", 600); /* kept */
	jobs_bulk("01M8457ED2RMPKJD94HC", 2, "failed", 0, "k", "v", NULL, NULL);
	ended_ago("j_01M8457ED2RMPKJD94HC", 30 * 86400); /* off: kept */
	jobs_bulk("01M8457ED2RMPKJD94HD", 2, "canceled", 0, "k", "v", NULL,
		  NULL);
	ended_ago("j_01M8457ED2RMPKJD94HD", 120); /* expired */
	jobs_bulk("01M8457ED2RMPKJD94HE", 1, "canceled", 0, "k", "v", NULL,
		  NULL);
	ended_ago("j_01M8457ED2RMPKJD94HE", 30); /* kept */
	/* Not ended (a completed_at left over by a retry): kept. */
	jobs_bulk("01M8457ED2RMPKJD94HF", 2, "queued", 0, "k", "v", NULL, NULL);
	ended_ago("j_01M8457ED2RMPKJD94HF", 30 * 86400);

	assert_ok(deletion_count_expired(db, &cfg, &n, &err), err);
	assert_int_equal(n, 5);

	/* Not in a caller's transaction. */
	assert_ok(db_begin(db, &err), err);
	assert_int_equal(deletion_expired_batch(db, &cfg, 2, &x, &more, &err),
			 DR_ERR_INTERNAL);
	db_rollback(db);

	assert_int_equal(num("SELECT COUNT(*) FROM deletions", NULL), 0);
	assert_ok(deletion_expired_batch(db, &cfg, 2, &x, &more, &err), err);
	assert_int_equal(more, 1);
	assert_int_equal(x.c.jobs_deleted, 2);
	/* The first batch that deleted jobs made the pass's record, in its
	 * own transaction: a pass cut short here leaves a truthful one. */
	assert_true(deletion_id_valid(x.record));
	assert_del(x.record,
		   "CONCAT(kind, ' ', state, ' ', requested_by, ' ',"
		   " jobs_deleted, ' ', ISNULL(run_at))",
		   "retention running retention 2 1");
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HA") +
				 jobs_like("j_01M8457ED2RMPKJD94HD"),
			 3);
	assert_ok(deletion_expired_batch(db, &cfg, 2, &x, &more, &err), err);
	assert_int_equal(more, 1);
	assert_int_equal(x.c.jobs_deleted, 4);
	assert_ok(deletion_expired_batch(db, &cfg, 2, &x, &more, &err), err);
	assert_int_equal(more, 0);
	assert_int_equal(x.c.jobs_deleted, 5);
	assert_int_equal(x.c.objects_released, 5);
	assert_ok(deletion_expired_batch(db, &cfg, 2, &x, &more, &err), err);
	assert_int_equal(more, 0);
	assert_int_equal(x.c.jobs_deleted, 5);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HA"), 0);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HD"), 0);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HB"), 2);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HC"), 2);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HE"), 1);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HF"), 2);
	assert_int_equal(num("SELECT COUNT(*) FROM job_metadata", NULL), 7);
	assert_int_equal(num("SELECT COUNT(*) FROM outputs", NULL), 7);
	assert_int_equal(num("SELECT COUNT(*) FROM objects WHERE refs = 0 AND"
			     " remove_after <= NOW(6)",
			     NULL),
			 5);
	assert_ok(deletion_count_expired(db, &cfg, &n, &err), err);
	assert_int_equal(n, 0);
	/* One record for the pass, added to by each batch; done at its
	 * end. */
	assert_int_equal(num("SELECT COUNT(*) FROM deletions", NULL), 1);
	assert_del(x.record, "CONCAT(state, ' ', jobs_deleted)", "running 5");
	assert_ok(deletion_expiry_done(db, &x, &err), err);
	assert_del(x.record, "CONCAT(kind, ' ', state, ' ', requested_by)",
		   "retention done retention");
	check_render(x.record, "retention", "done",
		     "{\"succeeded\":3600,\"failed\":0,"
		     "\"canceled\":60}",
		     "retention", 5, 0, 5, 1);
	/* A pass that deleted nothing leaves no record. */
	{
		dr_expiry none = { .by = "cli" };

		assert_ok(deletion_expired_batch(db, &cfg, 2, &none, &more,
						 &err),
			  err);
		assert_int_equal(none.record[0], '\0');
		assert_ok(deletion_expiry_done(db, &none, &err), err);
		assert_int_equal(num("SELECT COUNT(*) FROM deletions", NULL),
				 1);
	}

	/* All off: nothing expires. */
	memset(&x, 0, sizeof(x));
	x.by = "retention";
	memset(cfg.retention.jobs, 0, sizeof(cfg.retention.jobs));
	assert_ok(deletion_count_expired(db, &cfg, &n, &err), err);
	assert_int_equal(n, 0);
	assert_ok(deletion_expired_batch(db, &cfg, 2, &x, &more, &err), err);
	assert_int_equal(x.c.jobs_deleted, 0);
	assert_int_equal(num("SELECT COUNT(*) FROM jobs", NULL), 7);
}

/* Batches go status by status, the oldest end first within each (as
 * deletion.h says). */
static void test_retention_order(void **state)
{
	char old[DR_JOB_ID_LEN + 1], newer[DR_JOB_ID_LEN + 1];
	char canceled[DR_JOB_ID_LEN + 1];
	dr_expiry x = { .by = "retention" };
	int more = -1;
	dr_error err;

	(void)state;
	cfg.retention.jobs[0] = cfg.retention.jobs[2] = 3600;
	job("succeeded", "ann", newer);
	job("succeeded", "ann", old);
	job("canceled", "ann", canceled);
	assert_ok(db_exec(db,
			  "UPDATE jobs SET completed_at = NOW(6) - INTERVAL"
			  " CASE id WHEN ? THEN 2 WHEN ? THEN 3 ELSE 240 END"
			  " HOUR",
			  NULL, &err, DB_ARGS(DB_STR(newer), DB_STR(old))),
		  err);
	assert_ok(deletion_expired_batch(db, &cfg, 1, &x, &more, &err), err);
	assert_int_equal(more, 1);
	assert_rows(old, "0 0 0 0 0 0 0 0");
	assert_rows(newer, "1 0 0 1 1 1 1 2");
	assert_ok(deletion_expired_batch(db, &cfg, 1, &x, &more, &err), err);
	assert_rows(newer, "0 0 0 0 0 0 0 0");
	assert_rows(canceled, "1 0 0 1 1 1 1 2");
	assert_ok(deletion_expired_batch(db, &cfg, 1, &x, &more, &err), err);
	assert_int_equal(more, 1);
	assert_rows(canceled, "0 0 0 0 0 0 0 0");
	assert_ok(deletion_expired_batch(db, &cfg, 1, &x, &more, &err), err);
	assert_int_equal(more, 0);
	assert_int_equal(x.c.jobs_deleted, 3);
}

/* The setting per status, by name. */
static void test_job_retention_setting(void **state)
{
	(void)state;
	cfg.retention.jobs[0] = 1;
	cfg.retention.jobs[1] = 2;
	cfg.retention.jobs[2] = 3;
	assert_true(deletion_job_retention(&cfg, "succeeded") == 1);
	assert_true(deletion_job_retention(&cfg, "failed") == 2);
	assert_true(deletion_job_retention(&cfg, "canceled") == 3);
	assert_true(deletion_job_retention(&cfg, "queued") == 0);
}

/* The worker's share on a fake clock: a due selector deletion first,
 * a batch per call; then the retention pass, a batch per call, one
 * record at its end; the next pass after the interval. */
static void test_worker_step(void **state)
{
	dr_metadata_filter meta[] = { { "owner", "ann" } };
	char did[DR_DELETION_ID_LEN + 1], a[DR_JOB_ID_LEN + 1];
	dr_deletion_pass p;
	dr_error err;

	(void)state;
	memset(&p, 0, sizeof(p));
	/* Retention off, nothing to do. */
	assert_int_equal(deletion_step(&p, db, &cfg, 60, 10.0), 0);

	cfg.retention.jobs[1] = 3600; /* failed */
	jobs_bulk("01M8457ED2RMPKJD94HA", DR_DELETION_BATCH + 20, "failed", 0,
		  "k", "v", NULL, NULL);
	ended_ago("j_01M8457ED2RMPKJD94HA", 7200);
	job("succeeded", "ann", a);
	assert_ok(deletion_request(db, meta, 1, SCOPE, did, &err), err);

	/* Looked for at most every second: not yet. */
	assert_int_equal(deletion_step(&p, db, &cfg, 60, 10.5), 1);
	assert_del(did, "state", "queued");
	/* ... but the retention pass starts: its first batch. */
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HA"), 20);
	/* A second later: the deletion, the whole of it. */
	assert_int_equal(deletion_step(&p, db, &cfg, 60, 11.0), 1);
	assert_del(did, "CONCAT(state, ' ', jobs_deleted)", "done 1");
	assert_rows(a, "0 0 0 0 0 0 0 0");
	/* None due now: the retention pass goes on to its end. */
	assert_int_equal(deletion_step(&p, db, &cfg, 60, 11.1), 0);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HA"), 0);
	assert_int_equal(num("SELECT COUNT(*) FROM deletions WHERE kind ="
			     " 'retention' AND jobs_deleted = ? AND"
			     " objects_released = jobs_deleted AND"
			     " requested_by = 'retention'",
			     "120"),
			 1);
	/* Expired again, but the next pass is due at 71.1. */
	jobs_bulk("01M8457ED2RMPKJD94HB", 1, "failed", 0, "k", "v", NULL, NULL);
	ended_ago("j_01M8457ED2RMPKJD94HB", 7200);
	assert_int_equal(deletion_step(&p, db, &cfg, 60, 71.0), 0);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HB"), 1);
	assert_int_equal(deletion_step(&p, db, &cfg, 60, 71.2), 0);
	assert_int_equal(jobs_like("j_01M8457ED2RMPKJD94HB"), 0);
	assert_int_equal(num("SELECT COUNT(*) FROM deletions WHERE kind ="
			     " 'retention'",
			     NULL),
			 2);
	/* A pass that deletes nothing leaves no record. */
	assert_int_equal(deletion_step(&p, db, &cfg, 60, 131.3), 0);
	assert_int_equal(num("SELECT COUNT(*) FROM deletions WHERE kind ="
			     " 'retention'",
			     NULL),
			 2);
}

/* ---------------------------------------------------------------- ids */

static void test_id_valid(void **state)
{
	char id[DR_JOB_ID_LEN + 1], d[DR_DELETION_ID_LEN + 2];

	(void)state;
	assert_int_equal(ids_new_job_id(id), DR_OK);
	memcpy(d, id, sizeof(id));
	d[0] = 'd';
	assert_true(deletion_id_valid(d));
	assert_false(deletion_id_valid(id)); /* a job's */
	d[DR_DELETION_ID_LEN - 1] = 'U';     /* not Crockford */
	assert_false(deletion_id_valid(d));
	d[DR_DELETION_ID_LEN - 1] = '0';
	assert_true(deletion_id_valid(d));
	d[2] = '8'; /* more than 48 bits of time */
	assert_false(deletion_id_valid(d));
	d[2] = '0';
	d[DR_DELETION_ID_LEN] = '0'; /* one too long */
	d[DR_DELETION_ID_LEN + 1] = '\0';
	assert_false(deletion_id_valid(d));
	d[DR_DELETION_ID_LEN - 1] = '\0'; /* one too short */
	assert_false(deletion_id_valid(d));
	assert_false(deletion_id_valid(""));
	assert_false(deletion_id_valid("d_"));
	assert_false(deletion_id_valid("D_01M8457ED2RMPKJD94H30597VN"));
	assert_true(deletion_id_valid("d_01M8457ED2RMPKJD94H30597VN"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_delete_unknown, empty),
		cmocka_unit_test_setup(test_delete_not_ended, empty),
		cmocka_unit_test_setup(test_delete_ended, empty),
		cmocka_unit_test_setup(test_render_unknown, empty),
		cmocka_unit_test_setup(test_shared_objects, empty),
		cmocka_unit_test_setup(test_pinned_key_survives_delete, empty),
		cmocka_unit_test_setup(test_expired_pin_does_not_protect,
				       empty),
		cmocka_unit_test_setup(test_request_invalid, empty),
		cmocka_unit_test_setup(test_selector_batches, empty),
		cmocka_unit_test_setup(test_selector_all_filters, empty),
		cmocka_unit_test_setup(test_selector_exact_values, empty),
		cmocka_unit_test_setup(test_selector_cancels_queued, empty),
		cmocka_unit_test_setup(test_selector_waits_for_running, empty),
		cmocka_unit_test_setup(test_retention_per_status, empty),
		cmocka_unit_test_setup(test_retention_order, empty),
		cmocka_unit_test_setup(test_job_retention_setting, empty),
		cmocka_unit_test_setup(test_worker_step, empty),
		cmocka_unit_test_setup(test_id_valid, empty),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
