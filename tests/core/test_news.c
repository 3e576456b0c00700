/*
 * test_news.c - core/news.c: provider news applied to jobs in a real
 * MariaDB (tests/core/dbserver.h, migrations applied with the core's
 * migrate module), without a web server: the moves news may make, and the
 * news it must record and otherwise ignore (duplicates, out of order,
 * unknown predictions, news after the end or while storing outputs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blobs.h"
#include "datascan.h"
#include "dbserver.h"
#include "deletion.h"
#include "retention.h"
#include "webhook.h"
#include "jobfix.h"
#include "news.h"

static dr_config cfg;
static dr_db *db;

static int group_setup(void **state)
{
	(void)state;
	if (dbserver_open("test_news", "drt_news", &cfg, &db) != 0)
		return -1;
	cfg.worker.provider_deadline = 3600;
	cfg.worker.poll_min = 2;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dbserver_close(db);
	return 0;
}

/* A prediction `id` in `status` (borrowed strings: not for
 * news_prediction_clear). */
static dr_prediction pred(const char *id, dr_prediction_status status)
{
	dr_prediction p;

	memset(&p, 0, sizeof(p));
	p.id = (char *)id;
	p.status = status;
	p.progress = -1;
	p.predict_time = -1;
	return p;
}

/* Apply `p` as a webhook (delivery `delivery`, may be NULL); the result
 * and the status afterwards. */
static dr_apply_result hook(const dr_prediction *p, const char *delivery,
			    char status[16])
{
	dr_apply_result r = 0;
	dr_error err;

	assert_ok(news_apply(db, &cfg, "fake", NULL, 0, p, "webhook", delivery,
			     NULL, &r, status, &err),
		  err);
	assert_false(db_in_transaction(db));
	return r;
}

static void test_forward(void **state)
{
	jobfix f = {.status = "queued", .step = "poll", .lease_version = 1,
		    .prediction_id = "pf-1", .submitted = 1,
		    .callback_url = "https://client.test/cb"};
	dr_output_ref outs[2] = {{DR_OUTPUT_URL, "https://cdn.test/a.png"},
				 {DR_OUTPUT_TEXT, "hello"}};
	char id[DR_JOB_ID_LEN + 1], status[16];
	dr_prediction p;
	char *ev;

	(void)state;
	jobfix_make(db, &f, id);
	p = pred("pf-1", DR_PRED_STARTING);
	assert_int_equal(hook(&p, "d-1", status), DR_APPLY_CHANGED);
	assert_string_equal(status, "starting");
	p = pred("pf-1", DR_PRED_PROCESSING);
	p.progress = 0.5;
	assert_int_equal(hook(&p, "d-2", status), DR_APPLY_CHANGED);
	assert_string_equal(status, "processing");
	assert_col(db, id, "progress", "0.5");
	/* The same status again still brings news (progress). */
	p.progress = 0.75;
	assert_int_equal(hook(&p, "d-3", status), DR_APPLY_CHANGED);
	assert_col(db, id, "progress", "0.75");
	ev = jobfix_last_event(db, id);
	assert_string_equal(ev, "webhook processing>- {\"prediction_status\":"
				"\"processing\",\"prediction_id\":\"pf-1\","
				"\"delivery_id\":\"d-3\",\"progress\":"
				"\"0.7500\"}");
	free(ev);
	/* Succeeded: the pipeline's turn, with the outputs recorded, and a
	 * worker still holding the job fenced out. */
	p = pred("pf-1", DR_PRED_SUCCEEDED);
	p.outputs = outs;
	p.n_outputs = 2;
	p.predict_time = 1.5;
	assert_int_equal(hook(&p, "d-4", status), DR_APPLY_CHANGED);
	assert_string_equal(status, "persisting");
	assert_col(db, id, "status", "persisting");
	assert_col(db, id, "step", "persist");
	assert_col(db, id, "progress", "1");
	assert_col(db, id, "predict_time", "1.5");
	assert_col(db, id, "lease_version", "2");
	assert_col(db, id, "lease_owner", "(null)");
	assert_col(db, id, "run_at <= NOW(6)", "1");
	assert_cb(db, id, "state", "(none)"); /* not ended yet */
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM outputs WHERE"
				      " job_id = ? AND state = 'pending'",
				      id),
			 2);
	assert_int_equal(jobfix_events(db, id), 4);
}

static void test_failed(void **state)
{
	jobfix f = {.status = "processing", .step = "poll",
		    .lease_version = 1, .prediction_id = "pf-2",
		    .callback_url = "https://client.test/cb"};
	char id[DR_JOB_ID_LEN + 1], status[16];
	dr_prediction p;

	(void)state;
	jobfix_make(db, &f, id);
	p = pred("pf-2", DR_PRED_ABORTED);
	assert_int_equal(hook(&p, NULL, status), DR_APPLY_CHANGED);
	assert_string_equal(status, "failed");
	assert_col(db, id, "error_step", "provider");
	assert_col(db, id, "error_code", "prediction_aborted");
	assert_col(db, id, "completed_at IS NOT NULL", "1");
	assert_cb(db, id, "state", "pending");
	assert_col(db, id, "lease_version", "2");
}

static void test_duplicate_delivery(void **state)
{
	jobfix f = {.status = "starting", .step = "poll", .lease_version = 1,
		    .prediction_id = "pf-3"};
	char id[DR_JOB_ID_LEN + 1], status[16];
	dr_prediction p;
	char *ev;

	(void)state;
	jobfix_make(db, &f, id);
	p = pred("pf-3", DR_PRED_PROCESSING);
	assert_int_equal(hook(&p, "dup-1", status), DR_APPLY_CHANGED);
	/* The same delivery again, even saying something else, is applied
	 * at most once: logged, nothing changed. */
	p = pred("pf-3", DR_PRED_FAILED);
	assert_int_equal(hook(&p, "dup-1", status), DR_APPLY_DUPLICATE);
	assert_col(db, id, "status", "processing");
	ev = jobfix_last_event(db, id);
	assert_string_equal(ev, "webhook processing>- {\"prediction_status\":"
				"\"failed\",\"delivery_id\":\"dup-1\","
				"\"duplicate\":\"true\"}");
	free(ev);
	assert_int_equal(jobfix_events(db, id), 2);
}

static void test_out_of_order(void **state)
{
	jobfix f = {.status = "processing", .step = "poll",
		    .lease_version = 1, .prediction_id = "pf-4"};
	jobfix g = {.status = "succeeded", .step = "done",
		    .prediction_id = "pf-5"};
	char id[DR_JOB_ID_LEN + 1], gid[DR_JOB_ID_LEN + 1], status[16];
	dr_prediction p;
	char *ev;

	(void)state;
	jobfix_make(db, &f, id);
	jobfix_make(db, &g, gid);
	/* A late "starting" after "processing". */
	p = pred("pf-4", DR_PRED_STARTING);
	assert_int_equal(hook(&p, "o-1", status), DR_APPLY_IGNORED);
	assert_string_equal(status, "processing");
	assert_col(db, id, "status", "processing");
	ev = jobfix_last_event(db, id);
	assert_string_equal(ev, "webhook processing>- {\"prediction_status\":"
				"\"starting\",\"delivery_id\":\"o-1\","
				"\"ignored\":\"true\"}");
	free(ev);
	/* A late "processing" after "succeeded". */
	p = pred("pf-5", DR_PRED_PROCESSING);
	assert_int_equal(hook(&p, "o-2", status), DR_APPLY_IGNORED);
	assert_string_equal(status, "succeeded");
	assert_col(db, gid, "status", "succeeded");
	assert_col(db, gid, "prediction_status", "(null)");
	assert_int_equal(jobfix_events(db, gid), 1);
}

static void test_unknown(void **state)
{
	char status[16] = "x";
	dr_prediction p;

	(void)state;
	p = pred("pf-nobody", DR_PRED_SUCCEEDED);
	assert_int_equal(hook(&p, "u-1", status), DR_APPLY_UNKNOWN);
	assert_string_equal(status, "");
	/* The delivery is forgotten with it. */
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM webhook_deliveries"
				      " WHERE delivery_id = ?",
				      "u-1"),
			 0);
}

static void test_persisting_ignores(void **state)
{
	jobfix f = {.status = "persisting", .step = "persist",
		    .lease_version = 4, .prediction_id = "pf-6"};
	char id[DR_JOB_ID_LEN + 1], status[16];
	static const dr_prediction_status news[] = {
		DR_PRED_FAILED, DR_PRED_CANCELED, DR_PRED_PROCESSING,
		DR_PRED_SUCCEEDED};
	dr_prediction p;

	(void)state;
	jobfix_make(db, &f, id);
	for (size_t i = 0; i < sizeof(news) / sizeof(news[0]); i++) {
		p = pred("pf-6", news[i]);
		assert_int_equal(hook(&p, NULL, status), DR_APPLY_IGNORED);
		assert_string_equal(status, "persisting");
	}
	assert_col(db, id, "status", "persisting");
	assert_col(db, id, "lease_version", "4");
	assert_col(db, id, "error_code", "(null)");
	assert_int_equal(jobfix_events(db, id), 4);
}

static void test_adopt_by_hint(void **state)
{
	jobfix f = {.status = "queued", .step = "submit", .lease_version = 1,
		    .submitted = 1};
	char id[DR_JOB_ID_LEN + 1], status[16];
	dr_apply_result r;
	dr_prediction p;
	dr_error err;

	(void)state;
	jobfix_make(db, &f, id);
	p = pred("pf-7", DR_PRED_STARTING);
	/* An earlier attempt's delivery (another start time) is not it. */
	assert_ok(news_apply(db, &cfg, "fake", id, 12345, &p, "webhook",
			     NULL, NULL, &r, status, &err),
		  err);
	assert_int_equal(r, DR_APPLY_UNKNOWN);
	assert_col(db, id, "prediction_id", "(null)");
	/* This attempt's: adopted, polled from now on, with a deadline. */
	assert_ok(news_apply(db, &cfg, "fake", id, 0, &p, "webhook", NULL,
			     NULL, &r, status, &err),
		  err);
	assert_int_equal(r, DR_APPLY_CHANGED);
	assert_string_equal(status, "starting");
	assert_col(db, id, "prediction_id", "pf-7");
	assert_col(db, id, "step", "poll");
	assert_col(db, id,
		   "TIMESTAMPDIFF(SECOND, NOW(6), provider_deadline)"
		   " BETWEEN 3590 AND 3600",
		   "1");
	assert_col(db, id,
		   "TIMESTAMPDIFF(MICROSECOND, NOW(6), run_at)"
		   " BETWEEN 1000000 AND 2000000",
		   "1");
}

static void test_fenced(void **state)
{
	jobfix f = {.status = "starting", .step = "poll", .lease_version = 6,
		    .prediction_id = "pf-8"};
	jobfix g = {.status = "starting", .step = "poll", .lease_version = 6,
		    .prediction_id = "pf-9"};
	char id[DR_JOB_ID_LEN + 1], gid[DR_JOB_ID_LEN + 1], status[16];
	news_fence fence;
	dr_apply_result r;
	dr_prediction p;
	dr_error err;

	(void)state;
	jobfix_make(db, &f, id);
	jobfix_make(db, &g, gid);
	p = pred("pf-8", DR_PRED_SUCCEEDED);
	fence.id = id;
	fence.lease_version = 5; /* stale */
	assert_int_equal(news_apply(db, &cfg, "fake", id, 0, &p, "poll", NULL,
				    &fence, &r, status, &err),
			 DR_ERR_CONFLICT);
	assert_string_equal(err.code, "lease_lost");
	assert_col(db, id, "status", "starting");
	assert_int_equal(jobfix_events(db, id), 0);
	/* A worker's news naming another job's prediction is not applied. */
	fence.lease_version = 6;
	p = pred("pf-9", DR_PRED_SUCCEEDED);
	assert_ok(news_apply(db, &cfg, "fake", id, 0, &p, "poll", NULL,
			     &fence, &r, status, &err),
		  err);
	assert_int_equal(r, DR_APPLY_UNKNOWN);
	assert_col(db, gid, "status", "starting");
	/* Its own, under its lease: applied, the lease kept. */
	p = pred("pf-8", DR_PRED_SUCCEEDED);
	assert_ok(news_apply(db, &cfg, "fake", id, 0, &p, "poll", NULL,
			     &fence, &r, status, &err),
		  err);
	assert_int_equal(r, DR_APPLY_CHANGED);
	assert_col(db, id, "status", "persisting");
	assert_col(db, id, "lease_version", "6");
}

static void test_bad_prediction_id(void **state)
{
	char status[16];
	dr_apply_result r;
	dr_prediction p;
	dr_error err;

	(void)state;
	p = pred("has space", DR_PRED_STARTING);
	assert_int_equal(news_apply(db, &cfg, "fake", NULL, 0, &p, "webhook",
				    "b-1", NULL, &r, status, &err),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "bad_prediction_id");
	assert_int_equal(news_prediction_id_ok("ok-id"), 1);
	assert_int_equal(news_prediction_id_ok(""), 0);
}

/* A webhook body whose output is a base64 data: URI of `n` bytes (b). */
static char *blob_body(const unsigned char *b, size_t n)
{
	size_t cap = (n + 2) / 3 * 4 + 1;
	char *b64 = malloc(cap), *body = malloc(cap + 100);

	webhook_b64_encode(b, n, b64, cap);
	sprintf(body, "{\"id\": \"pb-1\", \"output\": [\"data:image/png;base64,%s\"]}",
		b64);
	free(b64);
	return body;
}

/* The life of a file a webhook carried: stored unclaimed, claimed by the
 * output recorded for the job (source: its id), read back in pieces,
 * left alone by a repeated delivery and dropped where unclaimed, refused
 * for a reference no delivery stored, deleted by the index step's call
 * or with the job, unclaimed ones by retention once old. */
static void test_webhook_files(void **state)
{
	jobfix f = {.status = "processing", .step = "poll",
		    .lease_version = 1, .prediction_id = "pb-1",
		    .submitted = 1};
	size_t n = 3 * BLOBS_PIECE + 12345; /* four rows */
	unsigned char *bytes = malloc(n), *back = malloc(n);
	char id[DR_JOB_ID_LEN + 1], status[16], *body, *raw;
	char tmpl[] = "/tmp/test_news_blob.XXXXXX";
	char tmpl2[] = "/tmp/test_news_blob.XXXXXX";
	dr_datascan scan, again;
	dr_output_ref out;
	dr_prediction p;
	dr_apply_result r;
	uint64_t stored, size;
	char ctype[64];
	dr_error err;
	int fd;

	(void)state;
	for (size_t i = 0; i < n; i++)
		bytes[i] = (unsigned char)(i * 7 + i / 4093);
	jobfix_make(db, &f, id);
	body = blob_body(bytes, n);
	assert_ok(datascan_run((unsigned char *)body, strlen(body), &scan,
			       &err),
		  err);
	assert_int_equal(scan.n, 1);
	assert_ok(blobs_store(db, (unsigned char *)body, &scan, &stored, &err),
		  err);
	assert_int_equal(stored, n);
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM webhook_blobs"
				      " WHERE id = ? AND job_id IS NULL",
				      scan.items[0].id),
			 4);

	/* The adapter's output is the reference in the document. */
	p = pred("pb-1", DR_PRED_SUCCEEDED);
	raw = strdup(scan.doc.data); /* what the adapter keeps as raw_json */
	p.raw_json = raw;
	out.kind = DR_OUTPUT_DATA;
	out.value = strstr(scan.doc.data, "data:");
	*strchr(out.value, '"') = '\0';
	p.outputs = &out;
	p.n_outputs = 1;
	{
		int needed = 0;

		assert_ok(news_needs_files(db, "fake", &p, "db-1", &needed,
					   &err),
			  err);
		assert_int_equal(needed, 1); /* processing, a new delivery */
	}
	assert_int_equal(hook(&p, "db-1", status), DR_APPLY_CHANGED);
	assert_string_equal(status, "persisting");
	{
		int needed = 1;

		/* Applied before; or another delivery for a job storing. */
		assert_ok(news_needs_files(db, "fake", &p, "db-1", &needed,
					   &err),
			  err);
		assert_int_equal(needed, 0);
		needed = 1;
		assert_ok(news_needs_files(db, "fake", &p, NULL, &needed,
					   &err),
			  err);
		assert_int_equal(needed, 0);
	}
	assert_ok(blobs_drop_unclaimed(db, &scan, &err), err);
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM webhook_blobs"
				      " WHERE job_id = ?",
				      id),
			 4);
	{
		dr_db_rows *rows = NULL;

		assert_ok(db_query(db,
				   "SELECT source FROM outputs WHERE job_id = ?",
				   &rows, &err, DB_ARGS(DB_STR(id))),
			  err);
		assert_int_equal(rows->n_rows, 1);
		assert_string_equal(db_cell(rows, 0, 0), scan.items[0].id);
		db_rows_free(rows);
	}
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM outputs WHERE"
				      " job_id = ? AND source_kind = 'blob'"
				      " AND LENGTH(source) = 26",
				      id),
			 1);
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM jobs WHERE id = ?"
				      " AND LENGTH(prediction) < 1000",
				      id),
			 1);

	/* Read back: every byte, the media type; another job cannot. */
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	unlink(tmpl);
	assert_ok(blobs_read(db, scan.items[0].id, id, UINT64_MAX, fd, &size,
			     ctype, sizeof(ctype), &err),
		  err);
	assert_int_equal(size, n);
	assert_string_equal(ctype, "image/png");
	assert_int_equal(pread(fd, back, n, 0), (ssize_t)n);
	assert_memory_equal(back, bytes, n);
	assert_int_equal(blobs_read(db, scan.items[0].id, id, n - 1, fd,
				    &size, NULL, 0, &err),
			 DR_ERR_TOO_LARGE);
	assert_int_equal(blobs_read(db, scan.items[0].id,
				    "j_00000000000000000000000000", UINT64_MAX,
				    fd, &size, NULL, 0, &err),
			 DR_ERR_NOT_FOUND);
	assert_string_equal(err.code, "blob_missing");
	close(fd);

	/* The same delivery again: stored, claimed by nothing, dropped. */
	assert_ok(datascan_run((unsigned char *)body, strlen(body), &again,
			       &err),
		  err);
	assert_ok(blobs_store(db, (unsigned char *)body, &again, &stored,
			      &err),
		  err);
	out.value = strstr(again.doc.data, "data:");
	*strchr(out.value, '"') = '\0';
	r = hook(&p, "db-2", status);
	assert_true(r == DR_APPLY_IGNORED || r == DR_APPLY_DUPLICATE);
	assert_ok(blobs_drop_unclaimed(db, &again, &err), err);
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM webhook_blobs"
				      " WHERE id = ?",
				      again.items[0].id),
			 0);

	/* Unclaimed rows an hour old go with retention, younger ones stay. */
	assert_ok(blobs_store(db, (unsigned char *)body, &again, &stored,
			      &err),
		  err);
	{
		uint64_t left = 0, gone = 0;

		assert_ok(retention_count(db, &cfg, DR_RET_WEBHOOK_BLOBS,
					  &left, &err),
			  err);
		assert_int_equal(left, 0);
		assert_ok(db_exec(db,
				  "UPDATE webhook_blobs SET created_at ="
				  " NOW(6) - INTERVAL 2 HOUR WHERE id = ?",
				  NULL, &err,
				  DB_ARGS(DB_STR(again.items[0].id))),
			  err);
		assert_ok(retention_delete_batch(db, &cfg, DR_RET_WEBHOOK_BLOBS,
						 1000, &gone, &err),
			  err);
		assert_int_equal(gone, 4);
	}

	/* A row gone while a worker reads (another worker stored or
	 * deleted the job meanwhile): never a shorter file. */
	assert_ok(db_exec(db,
			  "DELETE FROM webhook_blobs WHERE id = ? AND seq = 3",
			  NULL, &err, DB_ARGS(DB_STR(scan.items[0].id))),
		  err);
	fd = mkstemp(tmpl2);
	assert_true(fd >= 0);
	unlink(tmpl2);
	assert_int_equal(blobs_read(db, scan.items[0].id, id, UINT64_MAX, fd,
				    &size, NULL, 0, &err),
			 DR_ERR_NOT_FOUND);
	assert_string_equal(err.code, "blob_missing");
	close(fd);

	/* The index step's call, in its transaction, deletes the job's. */
	assert_ok(db_begin(db, &err), err);
	assert_ok(blobs_delete_job(db, id, &err), err);
	assert_ok(db_commit(db, &err), err);
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM webhook_blobs"
				      " WHERE job_id = ?",
				      id),
			 0);
	datascan_free(&again);
	datascan_free(&scan);
	free(raw);
	free(body);
	free(bytes);
	free(back);
}

/* An authentic delivery naming a file no delivery stored (or one
 * claimed already) records nothing. */
static void test_webhook_file_unknown(void **state)
{
	jobfix f = {.status = "processing", .step = "poll",
		    .lease_version = 1, .prediction_id = "pb-2",
		    .submitted = 1};
	dr_output_ref out = {DR_OUTPUT_DATA,
			     "data:image/png;darkroom-blob="
			     "0123456789abcdefghjkmnpqrs,"};
	char id[DR_JOB_ID_LEN + 1], status[16];
	dr_apply_result r = 0;
	dr_prediction p;
	dr_error err;

	(void)state;
	jobfix_make(db, &f, id);
	p = pred("pb-2", DR_PRED_SUCCEEDED);
	p.outputs = &out;
	p.n_outputs = 1;
	assert_int_equal(news_apply(db, &cfg, "fake", NULL, 0, &p, "webhook",
				    "dbu-1", NULL, &r, status, &err),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "bad_reference");
	assert_false(db_in_transaction(db));
	assert_col(db, id, "status", "processing");
	assert_int_equal(jobfix_count(db,
				      "SELECT COUNT(*) FROM outputs WHERE"
				      " job_id = ?",
				      id),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward),
		cmocka_unit_test(test_failed),
		cmocka_unit_test(test_duplicate_delivery),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_persisting_ignores),
		cmocka_unit_test(test_adopt_by_hint),
		cmocka_unit_test(test_fenced),
		cmocka_unit_test(test_bad_prediction_id),
		cmocka_unit_test(test_webhook_files),
		cmocka_unit_test(test_webhook_file_unknown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
