/*
 * test_jobstate.c - core/jobstate.c: the status table, and every write of
 * a job row against a real MariaDB (tests/core/dbserver.h, migrations
 * applied with the core's migrate module).
 *
 * Each fenced write is tried with a stale lease first: it must change
 * nothing, add no event and answer DR_ERR_CONFLICT (lease_lost). Every end
 * of a job with a callback_url opens a callback delivery of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dbserver.h"
#include "jobfix.h"
#include "jobstate.h"

static dr_config cfg;
static dr_db *db;

static int group_setup(void **state)
{
	(void)state;
	if (dbserver_open("test_jobstate", "drt_jobstate", &cfg, &db) != 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dbserver_close(db);
	return 0;
}

/* ------------------------------------------------------------ statuses */

static void test_names(void **state)
{
	static const char *const all[] = {"queued",    "starting", "processing",
					  "persisting", "succeeded", "failed",
					  "canceled"};
	char list[200] = "";
	dr_job_status s;

	(void)state;
	for (int i = 0; i < DR_JOB_STATUSES; i++) {
		snprintf(list + strlen(list), sizeof(list) - strlen(list),
			 "%s%s", i ? ", " : "", all[i]);
		assert_string_equal(jobstate_name((dr_job_status)i), all[i]);
		assert_int_equal(jobstate_parse(all[i], &s), 1);
		assert_int_equal(s, i);
		assert_int_equal(jobstate_is_final(s), i >= DR_JOB_SUCCEEDED);
		assert_int_equal(jobstate_rank(s), i < 4 ? i : 4);
	}
	s = DR_JOB_PROCESSING;
	assert_int_equal(jobstate_parse("cancelled", &s), 0);
	assert_int_equal(jobstate_parse("", &s), 0);
	assert_int_equal(jobstate_parse(NULL, &s), 0);
	assert_int_equal(jobstate_parse("QUEUED", &s), 0);
	assert_int_equal(s, DR_JOB_PROCESSING); /* untouched */
	assert_string_equal(list, JOBSTATE_NAMES);
	assert_string_equal(jobstate_name((dr_job_status)7), "unknown");
	assert_string_equal(jobstate_name((dr_job_status)-1), "unknown");
}

/* Every pair: the allowed moves, and every other one refused. */
static void test_transitions(void **state)
{
	/* rows: from; columns: to (q s pr pe su f c) */
	static const int allowed[DR_JOB_STATUSES][DR_JOB_STATUSES] = {
		/* queued     */ {0, 1, 1, 1, 0, 1, 1},
		/* starting   */ {0, 0, 1, 1, 0, 1, 1},
		/* processing */ {0, 0, 0, 1, 0, 1, 1},
		/* persisting */ {0, 0, 0, 0, 1, 1, 1},
		/* succeeded  */ {0, 0, 0, 0, 0, 0, 0},
		/* failed     */ {1, 0, 0, 1, 0, 0, 0},
		/* canceled   */ {1, 0, 0, 0, 0, 0, 0},
	};

	(void)state;
	for (int f = 0; f < DR_JOB_STATUSES; f++)
		for (int t = 0; t < DR_JOB_STATUSES; t++)
			if (jobstate_allowed((dr_job_status)f,
					     (dr_job_status)t) !=
			    allowed[f][t])
				fail_msg("%s -> %s: got %d, want %d",
					 jobstate_name((dr_job_status)f),
					 jobstate_name((dr_job_status)t),
					 !allowed[f][t], allowed[f][t]);
	assert_int_equal(jobstate_allowed((dr_job_status)7, DR_JOB_FAILED), 0);
	assert_int_equal(jobstate_allowed(DR_JOB_QUEUED, (dr_job_status)-1),
			 0);
}

static void test_detail(void **state)
{
	char *d;

	(void)state;
	d = jobstate_detail("a", "1", "skipped", NULL, "q", "say \"hi\"", NULL);
	assert_string_equal(d, "{\"a\":\"1\",\"q\":\"say \\\"hi\\\"\"}");
	free(d);
	d = jobstate_detail(NULL);
	assert_string_equal(d, "{}");
	free(d);
}

/* ------------------------------------------------------ a worker's */

static void test_fail(void **state)
{
	jobfix f = {.status = "processing", .step = "poll",
		    .lease_version = 5, .prediction_id = "p1"};
	char id[DR_JOB_ID_LEN + 1], from[16];
	dr_error err;
	char *ev;

	(void)state;
	jobfix_make(db, &f, id);
	/* A stale lease changes nothing. */
	assert_int_equal(jobstate_fail(db, id, 4, "provider", "x_code", "msg",
				       from, &err),
			 DR_ERR_CONFLICT);
	assert_string_equal(err.code, "lease_lost");
	assert_col(db, id, "status", "processing");
	assert_int_equal(jobfix_events(db, id), 0);
	assert_false(db_in_transaction(db));

	assert_ok(jobstate_fail(db, id, 5, "provider", "x_code", "it broke",
				from, &err),
		  err);
	assert_string_equal(from, "processing");
	assert_col(db, id, "status", "failed");
	assert_col(db, id, "error_step", "provider");
	assert_col(db, id, "error_code", "x_code");
	assert_col(db, id, "error_message", "it broke");
	assert_col(db, id, "completed_at IS NOT NULL", "1");
	assert_col(db, id, "run_at", "(null)"); /* no callback_url */
	assert_cb(db, id, "state", "(none)");
	assert_col(db, id, "lease_owner", "(null)");
	ev = jobfix_last_event(db, id);
	assert_string_equal(ev, "status processing>failed "
				"{\"step\":\"provider\",\"code\":\"x_code\","
				"\"message\":\"it broke\"}");
	free(ev);
	/* Ended: the same lease cannot end it again. */
	assert_int_equal(jobstate_fail(db, id, 5, "provider", "again", NULL,
				       NULL, &err),
			 DR_ERR_CONFLICT);
	assert_col(db, id, "error_code", "x_code");
	assert_int_equal(jobfix_events(db, id), 1);
}

static void test_fail_callback_and_long_message(void **state)
{
	jobfix f = {.status = "queued", .lease_version = 1,
		    .callback_url = "https://client.test/cb"};
	char id[DR_JOB_ID_LEN + 1];
	char msg[3000];
	dr_error err;

	(void)state;
	memset(msg, 'x', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	jobfix_make(db, &f, id);
	assert_ok(jobstate_fail(db, id, 1, "submit", "bad", msg, NULL, &err),
		  err);
	assert_cb(db, id, "state", "pending");
	assert_col(db, id, "run_at IS NOT NULL", "1");
	assert_col(db, id, "CHAR_LENGTH(error_message)", "1024");
}

static void test_retry(void **state)
{
	jobfix f = {.status = "queued", .lease_version = 7, .attempts = 2,
		    .submitted = 1};
	char id[DR_JOB_ID_LEN + 1];
	jobstate_retry_opts o;
	dr_error why, err;
	double scheduled = -1;
	char *ev;

	(void)state;
	jobfix_make(db, &f, id);
	dr_error_clear(&why);
	(void)dr_fail(&why, DR_ERR_RATE_LIMITED, "rate_limited", "slow down");
	memset(&o, 0, sizeof(o));
	o.delay = 30;
	o.count_attempt = 0;
	o.forget_submit = 1;
	o.from = "queued";
	o.step = "submit";
	o.why = &why;
	assert_int_equal(jobstate_retry(db, id, 6, &o, &scheduled, &err),
			 DR_ERR_CONFLICT);
	assert_col(db, id, "attempts", "2");
	assert_col(db, id, "submitted_at IS NOT NULL", "1");
	assert_int_equal(jobfix_events(db, id), 0);

	assert_ok(jobstate_retry(db, id, 7, &o, &scheduled, &err), err);
	assert_true(scheduled == 30);
	assert_col(db, id, "status", "queued");
	assert_col(db, id, "attempts", "1"); /* the try did not count */
	assert_col(db, id, "submitted_at", "(null)");
	assert_col(db, id, "lease_owner", "(null)");
	assert_col(db, id,
		   "TIMESTAMPDIFF(SECOND, NOW(6), run_at) BETWEEN 28 AND 30",
		   "1");
	ev = jobfix_last_event(db, id);
	assert_string_equal(ev, "retry_scheduled queued>- {\"step\":\"submit\","
				"\"code\":\"rate_limited\",\"message\":"
				"\"slow down\",\"retry_in\":\"30.000\"}");
	free(ev);

	/* A counted try keeps its attempt and the submit mark; an absurd
	 * delay is cut to a day. */
	o.count_attempt = 1;
	o.forget_submit = 0;
	o.delay = 1e12;
	assert_ok(jobstate_retry(db, id, 7, &o, &scheduled, &err), err);
	assert_true(scheduled == 86400);
	assert_col(db, id, "attempts", "1");
}

static void test_succeed(void **state)
{
	jobfix f = {.status = "persisting", .step = "persist",
		    .lease_version = 3};
	jobfix g = {.status = "processing", .step = "poll",
		    .lease_version = 3};
	char id[DR_JOB_ID_LEN + 1], id2[DR_JOB_ID_LEN + 1];
	dr_error err;
	char *ev;

	(void)state;
	jobfix_make(db, &f, id);
	jobfix_make(db, &g, id2);
	assert_ok(db_begin(db, &err), err);
	assert_int_equal(jobstate_succeed(db, id, 2, &err), DR_ERR_CONFLICT);
	assert_string_equal(err.code, "lease_lost");
	/* Only a persisting job succeeds. */
	assert_int_equal(jobstate_succeed(db, id2, 3, &err), DR_ERR_CONFLICT);
	db_rollback(db);
	assert_col(db, id, "status", "persisting");
	assert_col(db, id2, "status", "processing");
	assert_int_equal(jobfix_events(db, id) + jobfix_events(db, id2), 0);

	assert_ok(db_begin(db, &err), err);
	assert_ok(jobstate_succeed(db, id, 3, &err), err);
	assert_ok(db_commit(db, &err), err);
	assert_col(db, id, "status", "succeeded");
	assert_col(db, id, "step", "done");
	assert_col(db, id, "progress", "1");
	assert_col(db, id, "completed_at IS NOT NULL", "1");
	ev = jobfix_last_event(db, id);
	assert_string_equal(ev, "status persisting>succeeded -");
	free(ev);
}

static void test_cancel(void **state)
{
	jobfix f = {.status = "persisting", .step = "persist",
		    .lease_version = 9, .pending_outputs = 2,
		    .callback_url = "https://client.test/cb"};
	char id[DR_JOB_ID_LEN + 1], from[16] = "";
	const char *pending = "SELECT COUNT(*) FROM outputs WHERE job_id = ?"
			      " AND state = 'pending'";
	dr_error err;
	char *ev;

	const char *files = "SELECT COUNT(*) FROM webhook_blobs"
			    " WHERE job_id = ?";

	(void)state;
	jobfix_make(db, &f, id);
	/* A file a webhook carried for one of the outputs (blobs.h). */
	assert_ok(db_exec(db,
			  "INSERT INTO webhook_blobs (id, seq, job_id,"
			  " media_type, total, data, created_at) VALUES"
			  " ('0123456789abcdefghjkmnpqrs', 0, ?, 'image/png',"
			  " 3, 'abc', NOW(6))",
			  NULL, &err, DB_ARGS(DB_STR(id))),
		  err);
	assert_int_equal(jobstate_cancel(db, id, 8, from, &err),
			 DR_ERR_CONFLICT);
	assert_col(db, id, "status", "persisting");
	assert_int_equal(jobfix_count(db, pending, id), 2);
	assert_int_equal(jobfix_count(db, files, id), 1);
	assert_int_equal(jobfix_events(db, id), 0);

	assert_ok(jobstate_cancel(db, id, 9, from, &err), err);
	assert_string_equal(from, "persisting");
	assert_col(db, id, "status", "canceled");
	assert_cb(db, id, "state", "pending");
	assert_int_equal(jobfix_count(db, pending, id), 0);
	assert_int_equal(jobfix_count(db, files, id), 0);
	ev = jobfix_last_event(db, id);
	assert_string_equal(ev, "status persisting>canceled "
				"{\"reason\":\"canceled by client\"}");
	free(ev);
	assert_int_equal(jobstate_cancel(db, id, 9, NULL, &err),
			 DR_ERR_CONFLICT);
	assert_int_equal(jobfix_events(db, id), 1);
}

/* The small fenced writes: stale first, then the lease holder's. */
static void test_small_writes(void **state)
{
	jobfix f = {.status = "succeeded", .step = "done", .lease_version = 4,
		    .callback_url = "https://client.test/cb"};
	char id[DR_JOB_ID_LEN + 1];
	char *msg;
	jobstate_callback_try t = {.state = "pending", .delay = 10,
				   .http = 503, .error = "rejected: 503",
				   .duration = 0.25, .from = "succeeded"};
	dr_error err;

	(void)state;
	jobfix_make(db, &f, id);
	jobfix_delivery(db, id, 0);
	msg = jobfix_cb(db, id, "id");
	t.delivery = msg;
	assert_int_equal(jobstate_submitting(db, id, 3, "1700000000.5", &err),
			 DR_ERR_CONFLICT);
	assert_int_equal(jobstate_count_attempt(db, id, 3, &err),
			 DR_ERR_CONFLICT);
	assert_int_equal(jobstate_park(db, id, 3, &err), DR_ERR_CONFLICT);
	assert_int_equal(jobstate_callback_tried(db, id, 3, &t, &err),
			 DR_ERR_CONFLICT);
	assert_false(db_in_transaction(db));
	assert_col(db, id, "attempts", "0");
	assert_cb(db, id, "attempts", "0");
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM callback_attempts"
				      " WHERE delivery_id = ?",
				      msg),
			 0);
	assert_col(db, id, "submitted_at", "(null)");
	assert_col(db, id, "run_at IS NOT NULL", "1");

	assert_ok(jobstate_submitting(db, id, 4, "1700000000.5", &err), err);
	assert_col(db, id, "attempts", "1");
	assert_col(db, id, "UNIX_TIMESTAMP(submitted_at)", "1700000000.500000");
	assert_ok(jobstate_count_attempt(db, id, 4, &err), err);
	assert_col(db, id, "attempts", "2");
	assert_ok(jobstate_callback_tried(db, id, 4, &t, &err), err);
	assert_cb(db, id, "attempts", "1");
	assert_cb(db, id, "state", "pending");
	assert_cb(db, id, "last_status", "503");
	assert_cb(db, id, "last_error", "rejected: 503");
	assert_col(db, id,
		   "TIMESTAMPDIFF(SECOND, NOW(6), run_at) BETWEEN 8 AND 10",
		   "1");
	assert_cb(db, id, "TIMESTAMPDIFF(SECOND, NOW(6), next_at) BETWEEN 8"
			  " AND 10",
		  "1");
	t.state = "delivered";
	t.http = 204;
	t.error = NULL;
	assert_ok(jobstate_callback_tried(db, id, 4, &t, &err), err);
	assert_cb(db, id, "state", "delivered");
	assert_cb(db, id, "attempts", "2");
	assert_cb(db, id, "last_status", "204");
	assert_cb(db, id, "last_error", "(null)");
	assert_cb(db, id, "next_at", "(null)");
	assert_cb(db, id, "delivered_at IS NOT NULL", "1");
	assert_col(db, id, "run_at", "(null)");
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM callback_attempts"
				      " WHERE delivery_id = ? AND"
				      " duration_ms = 250",
				      msg),
			 2);
	/* Delivered: no longer pending, so a try of it is refused. */
	assert_int_equal(jobstate_callback_tried(db, id, 4, &t, &err),
			 DR_ERR_CONFLICT);
	assert_cb(db, id, "attempts", "2");
	assert_ok(jobstate_park(db, id, 4, &err), err);
	assert_col(db, id, "status", "succeeded"); /* none of them moves it */
	assert_int_equal(jobfix_events(db, id), 0);
	free(msg);
}

/* ------------------------------------------------------- a client's */

static void test_client_cancel(void **state)
{
	jobfix q = {.status = "queued", .lease_version = 2,
		    .callback_url = "https://client.test/cb"};
	jobfix r = {.status = "processing", .step = "poll",
		    .lease_version = 2, .prediction_id = "p-r"};
	jobfix e = {.status = "succeeded", .step = "done"};
	char qid[DR_JOB_ID_LEN + 1], rid[DR_JOB_ID_LEN + 1];
	char eid[DR_JOB_ID_LEN + 1];
	dr_error err;
	char *ev;

	(void)state;
	jobfix_make(db, &q, qid);
	jobfix_make(db, &r, rid);
	jobfix_make(db, &e, eid);
	/* Queued: canceled at once, its worker fenced out. */
	assert_ok(jobstate_client_cancel(db, qid, &err), err);
	assert_col(db, qid, "status", "canceled");
	assert_col(db, qid, "lease_version", "3");
	assert_cb(db, qid, "state", "pending");
	assert_int_equal(jobstate_park(db, qid, 2, &err), DR_ERR_CONFLICT);
	ev = jobfix_last_event(db, qid);
	assert_string_equal(ev, "status queued>canceled "
				"{\"reason\":\"canceled by client\"}");
	free(ev);
	/* Running: a request for the worker, who keeps its lease. */
	assert_ok(jobstate_client_cancel(db, rid, &err), err);
	assert_col(db, rid, "status", "processing");
	assert_col(db, rid, "cancel_requested", "1");
	assert_col(db, rid, "lease_version", "2");
	ev = jobfix_last_event(db, rid);
	assert_string_equal(ev, "cancel_requested processing>- -");
	free(ev);
	/* Ended, or no such job. */
	assert_int_equal(jobstate_client_cancel(db, eid, &err),
			 DR_ERR_CONFLICT);
	assert_string_equal(err.code, "job_ended");
	assert_int_equal(jobfix_events(db, eid), 0);
	assert_int_equal(jobstate_client_cancel(db, "j_nosuchjob", &err),
			 DR_ERR_NOT_FOUND);
	assert_false(db_in_transaction(db));
}

static void test_client_retry(void **state)
{
	jobfix store = {.status = "failed", .step = "persist",
			.error_step = "download", .attempts = 3,
			.prediction_id = "p-store", .lease_version = 1};
	jobfix submit = {.status = "failed", .step = "submit",
			 .error_step = "submit", .attempts = 5,
			 .lease_version = 1, .submitted = 1};
	jobfix canceled = {.status = "canceled", .step = "persist",
			   .error_step = "download"};
	char sid[DR_JOB_ID_LEN + 1], uid[DR_JOB_ID_LEN + 1];
	char cid[DR_JOB_ID_LEN + 1], id[DR_JOB_ID_LEN + 1];
	static const char *const refused[] = {"queued", "starting",
					      "processing", "persisting",
					      "succeeded", NULL};
	dr_error err;
	char *ev;

	(void)state;
	jobfix_make(db, &store, sid);
	jobfix_make(db, &submit, uid);
	jobfix_make(db, &canceled, cid);
	/* Failed while storing: back to persisting, prediction kept. */
	assert_ok(jobstate_client_retry(db, sid, &err), err);
	assert_col(db, sid, "status", "persisting");
	assert_col(db, sid, "step", "persist");
	assert_col(db, sid, "prediction_id", "p-store");
	assert_col(db, sid, "attempts", "0");
	assert_col(db, sid, "error_code", "(null)");
	assert_col(db, sid, "lease_version", "2");
	ev = jobfix_last_event(db, sid);
	assert_string_equal(ev, "retry failed>persisting -");
	free(ev);
	/* Failed before: from the start. */
	assert_ok(jobstate_client_retry(db, uid, &err), err);
	assert_col(db, uid, "status", "queued");
	assert_col(db, uid, "step", "submit");
	assert_col(db, uid, "submitted_at", "(null)");
	/* Canceled: always from the start. */
	assert_ok(jobstate_client_retry(db, cid, &err), err);
	assert_col(db, cid, "status", "queued");
	ev = jobfix_last_event(db, cid);
	assert_string_equal(ev, "retry canceled>queued -");
	free(ev);
	for (int i = 0; refused[i]; i++) {
		jobfix r = {.status = refused[i]};

		jobfix_make(db, &r, id);
		assert_int_equal(jobstate_client_retry(db, id, &err),
				 DR_ERR_CONFLICT);
		assert_string_equal(err.code, "job_not_retryable");
		assert_col(db, id, "status", refused[i]);
		assert_int_equal(jobfix_events(db, id), 0);
	}
	assert_int_equal(jobstate_client_retry(db, "j_nosuchjob", &err),
			 DR_ERR_NOT_FOUND);
}

/* Every end of a job with a callback_url opens a delivery of its own: a
 * retry drops the old end's pending one (failed, kept), and the next end
 * is a new delivery with a new webhook-id and type. */
static void test_deliveries_per_end(void **state)
{
	jobfix f = {.status = "processing", .step = "poll",
		    .lease_version = 1, .prediction_id = "p-ends",
		    .callback_url = "https://client.test/cb"};
	char id[DR_JOB_ID_LEN + 1];
	char *first, *second, *want;
	const char *count = "SELECT COUNT(*) FROM callback_deliveries"
			    " WHERE job_id = ?";
	dr_error err;

	(void)state;
	jobfix_make(db, &f, id);
	assert_int_equal(jobfix_count(db, count, id), 0);
	assert_ok(jobstate_fail(db, id, 1, "provider", "boom", "it broke",
				NULL, &err),
		  err);
	assert_int_equal(jobfix_count(db, count, id), 1);
	first = jobfix_cb(db, id, "id");
	want = jobfix_col(db, id,
			  "CONCAT('msg_', id, '_', REPLACE(UNIX_TIMESTAMP("
			  "completed_at), '.', '_'))");
	assert_string_equal(first, want);
	free(want);
	assert_cb(db, id, "type", "job.failed");
	assert_cb(db, id, "url", "https://client.test/cb");
	assert_cb(db, id, "state", "pending");
	assert_cb(db, id, "attempts", "0");
	assert_cb(db, id, "next_at IS NOT NULL", "1");
	/* Still pending: no manual resend of it. */
	assert_int_equal(jobstate_client_callback_retry(db, id, &err),
			 DR_ERR_CONFLICT);
	assert_string_equal(err.code, "callback_pending");

	/* Retried before it was delivered: dropped, and kept. */
	assert_ok(jobstate_client_retry(db, id, &err), err);
	assert_int_equal(jobfix_count(db, count, id), 1);
	assert_cb(db, id, "state", "failed");
	assert_cb(db, id, "next_at", "(null)");
	assert_cb(db, id, "last_error LIKE 'dropped%'", "1");

	/* The next end: a second delivery, a new id. */
	assert_ok(jobstate_client_cancel(db, id, &err), err);
	assert_col(db, id, "status", "canceled");
	assert_int_equal(jobfix_count(db, count, id), 2);
	second = jobfix_cb(db, id, "id");
	assert_string_not_equal(first, second);
	assert_cb(db, id, "type", "job.canceled");
	assert_cb(db, id, "state", "pending");
	assert_cb(db, id, "attempts", "0");
	assert_col(db, id, "run_at IS NOT NULL", "1");
	free(first);
	free(second);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_transitions),
		cmocka_unit_test(test_detail),
		cmocka_unit_test(test_fail),
		cmocka_unit_test(test_fail_callback_and_long_message),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_succeed),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_small_writes),
		cmocka_unit_test(test_client_cancel),
		cmocka_unit_test(test_client_retry),
		cmocka_unit_test(test_deliveries_per_end),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
