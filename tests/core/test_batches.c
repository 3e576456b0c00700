/*
 * test_batches.c - core/batches.c: the validation and merge of POST
 * /v1/batches bodies, and their storage against a real MariaDB
 * (tests/core/dbserver.h, migrations applied):
 *
 *  - items merged over defaults (members replaced, metadata key by key),
 *    keys kept, every bad item named as items[N].field (defaults.F when
 *    the bad value came from the defaults);
 *  - a batch stored whole in one transaction, in multi-row statements
 *    (250 items: chunks of 100, 10 and 1), its jobs in item order with
 *    their metadata and created events, and nothing at all when one row
 *    fails;
 *  - idempotency keys: the same body replays, another is a conflict;
 *  - the batch completes exactly when its last job ends, also when two
 *    jobs end at the same moment on two connections, and owes its
 *    callback_url one batch.completed message, carried by that job.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batches.h"
#include "dbserver.h"
#include "deletion.h"
#include "jobstate.h"
#include "jsonutil.h"

static const char conf_text[] =
	"[server]\n"
	"plugin_dir = /nonexistent\n"
	"default_adapter = test\n"
	"default_renditions = thumb\n"
	"callback_secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
	"[preset \"thumb\"]\nwidth = 256\nheight = 256\n"
	"[adapter \"test\"]\nplugin = test\n";

static dr_status test_submit(void *state, const dr_job_view *job,
			     dr_prediction *out, dr_error *err)
{
	(void)state, (void)job, (void)out;
	return dr_fail(err, DR_ERR_UNSUPPORTED, "x", "not used");
}

static const dr_adapter_ops ops = { .submit = test_submit };
static const dr_plugin desc = { .abi_version = DR_PLUGIN_ABI_VERSION,
				.size = sizeof(dr_plugin),
				.name = "test",
				.kind = DR_PLUGIN_ADAPTER,
				.adapter = &ops };

static dr_config *pcfg; /* for parsing: presets and the adapter */
static dr_config cfg;	/* the database's */
static dr_db *db;
static dr_loaded_plugin loaded;
static struct dr_instance inst;
static dr_plugins plugins;

static int group_setup(void **state)
{
	dr_error err;

	(void)state;
	if (config_parse("test.conf", conf_text, strlen(conf_text), &pcfg,
			 &err) != DR_OK) {
		fprintf(stderr, "config: %s\n", err.message);
		return -1;
	}
	loaded.desc = &desc;
	inst.name = "test";
	inst.plugin = &loaded;
	plugins.adapters = &inst;
	plugins.n_adapters = 1;
	return dbserver_open("test_batches", "drt_batches", &cfg, &db) != 0
		       ? -1
		       : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	config_free(pcfg);
	dbserver_close(db);
	return 0;
}

static int empty(void **state)
{
	static const char *const tables[] = { "jobs", "job_metadata",
					      "job_events", "batches",
					      "callback_deliveries" };
	dr_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		char sql[64];

		snprintf(sql, sizeof(sql), "DELETE FROM %s", tables[i]);
		assert_ok(db_exec_text(db, sql, &err), err);
	}
	return 0;
}

static long long scalar(const char *sql)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	long long v;

	assert_ok(db_query_uncached(db, sql, &rows, &err, DB_NOARGS), err);
	assert_int_equal(rows->n_rows, 1);
	v = db_cell(rows, 0, 0) ? strtoll(db_cell(rows, 0, 0), NULL, 10) : -1;
	db_rows_free(rows);
	return v;
}

/* Parse `body` into *out; the status, with the field in `field`. */
static dr_status parse(const char *body, dr_batch_request *out,
		       char field[DR_BATCH_FIELD_MAX], dr_error *err)
{
	json_object *root = NULL;
	dr_status st;

	assert_int_equal(json_parse_limited(body, strlen(body), 32, &root, err),
			 DR_OK);
	st = batches_parse_request(pcfg, &plugins, root, out, field, err);
	json_object_put(root);
	if (st != DR_OK && strcmp(field, "body") != 0)
		/* The detail starts with the field (an unknown member of the
		 * body: with that member's name). */
		assert_memory_equal(err->message, field, strlen(field));
	return st;
}

static void test_merge(void **state)
{
	dr_batch_request r;
	char field[DR_BATCH_FIELD_MAX];
	dr_error err;

	(void)state;
	assert_ok(parse("{\"defaults\":{\"model\":\"acme/flux\","
			"\"renditions\":[],\"metadata\":{\"c\":\"7\",\"d\":\"x\"},"
			"\"input\":{\"steps\":4}},"
			"\"items\":[{\"key\":\"a\",\"input\":{\"p\":\"1\"}},"
			"{\"model\":\"acme/other\",\"metadata\":{\"d\":\"y\"}},"
			"{\"key\":\"c\",\"renditions\":[\"thumb\"],"
			"\"metadata\":null}]}",
			&r, field, &err),
		  err);
	assert_int_equal(r.n_items, 3);
	assert_string_equal(r.keys[0], "a");
	assert_null(r.keys[1]);
	assert_string_equal(r.keys[2], "c");
	assert_string_equal(r.items[0].model, "acme/flux");
	assert_string_equal(r.items[1].model, "acme/other");
	assert_string_equal(r.items[0].adapter, "test");
	/* A member replaces the default's whole: input is not merged. */
	assert_string_equal(json_object_to_json_string_ext(
				    r.items[0].input, JSON_C_TO_STRING_PLAIN),
			    "{\"p\":\"1\"}");
	assert_string_equal(json_object_to_json_string_ext(
				    r.items[1].input, JSON_C_TO_STRING_PLAIN),
			    "{\"steps\":4}");
	/* Metadata key by key; null drops the defaults' metadata. */
	assert_string_equal(json_object_to_json_string_ext(
				    r.items[1].metadata, JSON_C_TO_STRING_PLAIN),
			    "{\"c\":\"7\",\"d\":\"y\"}");
	assert_string_equal(json_object_to_json_string_ext(
				    r.items[0].metadata, JSON_C_TO_STRING_PLAIN),
			    "{\"c\":\"7\",\"d\":\"x\"}");
	assert_null(r.items[2].metadata);
	assert_int_equal(r.items[0].n_renditions, 0);
	assert_int_equal(r.items[2].n_renditions, 1);
	batches_request_free(&r);
	batches_request_free(&r); /* a freed request frees again as nothing */
}

static void test_refused(void **state)
{
	static const struct {
		const char *body, *field;
	} cases[] = {
		{ "[]", "body" },
		{ "{}", "items" },
		{ "{\"items\":{}}", "items" },
		{ "{\"items\":[]}", "items" },
		{ "{\"items\":[{\"model\":\"a/b\",\"input\":{}},1]}",
		  "items[1]" },
		{ "{\"items\":[{\"model\":\"a/b\",\"input\":{}},"
		  "{\"model\":\"a/b\",\"input\":[]}]}",
		  "items[1].input" },
		{ "{\"items\":[{\"model\":\"a/b\"}]}", "items[0].input" },
		{ "{\"items\":[{\"input\":{}}]}", "items[0].model" },
		{ "{\"defaults\":{\"model\":\"a b\"},\"items\":[{\"input\":{}}]}",
		  "defaults.model" },
		{ "{\"defaults\":{\"model\":\"a b\"},\"items\":[{\"input\":{},"
		  "\"model\":\"c d\"}]}",
		  "items[0].model" },
		{ "{\"defaults\":[],\"items\":[{\"input\":{}}]}", "defaults" },
		{ "{\"defaults\":{\"key\":\"k\"},\"items\":[{\"input\":{}}]}",
		  "defaults.key" },
		{ "{\"defaults\":{\"model\":\"a/b\"},\"items\":[{\"input\":{},"
		  "\"key\":\"k\"},{\"input\":{},\"key\":\"k\"}]}",
		  "items[1].key" },
		{ "{\"defaults\":{\"model\":\"a/b\"},\"items\":[{\"input\":{},"
		  "\"key\":\"\"}]}",
		  "items[0].key" },
		{ "{\"defaults\":{\"model\":\"a/b\"},\"items\":[{\"input\":{},"
		  "\"key\":7}]}",
		  "items[0].key" },
		{ "{\"defaults\":{\"model\":\"a/b\",\"metadata\":{\"K\":\"1\"}},"
		  "\"items\":[{\"input\":{},\"metadata\":{\"k\":\"2\"}}]}",
		  "items[0].metadata" },
		{ "{\"defaults\":{\"model\":\"a/b\"},\"items\":[{\"input\":{},"
		  "\"renditions\":[\"card\"]}]}",
		  "items[0].renditions" },
		{ "{\"defaults\":{\"model\":\"a/b\"},\"items\":[{\"input\":{},"
		  "\"adapter\":\"nope\"}]}",
		  "items[0].adapter" },
		{ "{\"defaults\":{\"model\":\"a/b\"},\"items\":[{\"input\":{},"
		  "\"what\":1}]}",
		  "items[0]" },
		{ "{\"items\":[{\"model\":\"a/b\",\"input\":{}}],\"x\":1}",
		  "body" },
		{ "{\"items\":[{\"model\":\"a/b\",\"input\":{}}],"
		  "\"callback_url\":\"ftp://example.com/\"}",
		  "callback_url" },
		{ "{\"items\":[{\"model\":\"a/b\",\"input\":{}}],"
		  "\"callback_url\":7}",
		  "callback_url" },
	};
	char field[DR_BATCH_FIELD_MAX];
	dr_batch_request r;
	dr_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		dr_status st = parse(cases[i].body, &r, field, &err);

		if (st != DR_ERR_INVALID || strcmp(field, cases[i].field) != 0)
			fail_msg("%s: got %d field '%s' (%s), want '%s'",
				 cases[i].body, st, field, err.message,
				 cases[i].field);
	}
}

/* `n` items of model a/b with keys k0… and metadata {"i": "<i>"}. */
static char *items_body(size_t n)
{
	size_t size = 64 + n * 96;
	char *b = malloc(size);
	size_t len;

	assert_non_null(b);
	len = (size_t)snprintf(b, size,
			       "{\"defaults\":{\"model\":\"a/b\","
			       "\"metadata\":{\"c\":\"7\"}},\"items\":[");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(b + len, size - len,
					"%s{\"key\":\"k%zu\",\"input\":{\"i\":%zu},"
					"\"metadata\":{\"i\":\"%zu\"}}",
					i ? "," : "", i, i, i);
	snprintf(b + len, size - len, "]}");
	return b;
}

static void test_1000_items(void **state)
{
	char *body = items_body(DR_MAX_BATCH_ITEMS + 1);
	char field[DR_BATCH_FIELD_MAX];
	dr_batch_request r;
	dr_error err;

	(void)state;
	assert_int_equal(parse(body, &r, field, &err), DR_ERR_INVALID);
	assert_string_equal(field, "items");
	free(body);
	body = items_body(DR_MAX_BATCH_ITEMS);
	assert_ok(parse(body, &r, field, &err), err);
	assert_int_equal(r.n_items, DR_MAX_BATCH_ITEMS);
	batches_request_free(&r);
	free(body);
}

/* Inputs as a job stores them: one over [server] max_body names its item;
 * defaults repeated in every item past twice max_batch_body in all name
 * the item that crossed it (a 16 MiB body could otherwise expand to
 * gigabytes). */
static void test_input_sizes(void **state)
{
	size_t big = pcfg->server.max_body + 1, half = pcfg->server.max_body / 2;
	size_t cap = big + 64 * DR_MAX_BATCH_ITEMS + 256, at;
	char *body = malloc(cap), field[DR_BATCH_FIELD_MAX], want[48];
	dr_batch_request r;
	dr_error err;
	size_t k;

	(void)state;
	at = (size_t)snprintf(body, cap,
			      "{\"items\":[{\"model\":\"a/b\",\"input\":"
			      "{\"p\":\"");
	memset(body + at, 'x', big);
	at += big;
	snprintf(body + at, cap - at, "\"}}]}");
	assert_int_equal(parse(body, &r, field, &err), DR_ERR_INVALID);
	assert_string_equal(field, "items[0].input");

	at = (size_t)snprintf(body, cap,
			      "{\"defaults\":{\"model\":\"a/b\",\"input\":"
			      "{\"p\":\"");
	memset(body + at, 'y', half);
	at += half;
	at += (size_t)snprintf(body + at, cap - at, "\"}},\"items\":[");
	for (size_t i = 0; i < DR_MAX_BATCH_ITEMS; i++)
		at += (size_t)snprintf(body + at, cap - at, "%s{}",
				       i ? "," : "");
	snprintf(body + at, cap - at, "]}");
	assert_int_equal(parse(body, &r, field, &err), DR_ERR_INVALID);
	/* Each item's input is half + the JSON around it: the first past
	 * twice max_batch_body. */
	k = 2 * pcfg->limits.max_batch_body / (half + 8);
	snprintf(want, sizeof(want), "items[%zu].input", k);
	assert_string_equal(field, want);
	free(body);
}

static void test_create_whole(void **state)
{
	char *body = items_body(253); /* 2 x 100, 5 x 10, 3 x 1 */
	char field[DR_BATCH_FIELD_MAX], id[DR_JOB_ID_LEN + 1];
	dr_idempotency idem = { NULL, NULL, NULL };
	dr_batch_request r;
	json_object *obj, *jobs, *v;
	dr_db_rows *rows = NULL;
	int replayed = -1;
	dr_buf out;
	dr_error err;

	(void)state;
	assert_ok(parse(body, &r, field, &err), err);
	dr_buf_init(&out, 1 << 20);
	assert_ok(batches_create(db, &cfg, &r, &idem, id, &replayed, &out,
				 &err),
		  err);
	assert_int_equal(replayed, 0);
	assert_true(ids_is_batch_id(id));
	assert_int_equal(scalar("SELECT COUNT(*) FROM jobs"), 253);
	assert_int_equal(scalar("SELECT COUNT(*) FROM job_metadata"), 506);
	assert_int_equal(scalar("SELECT COUNT(*) FROM job_events WHERE"
				" kind = 'created' AND to_status = 'queued'"),
			 253);
	assert_int_equal(scalar("SELECT COUNT(DISTINCT batch_id) FROM jobs"),
			 1);
	assert_int_equal(scalar("SELECT n_jobs FROM batches"), 253);
	/* The answer: queued counts, the jobs in item order with keys. */
	obj = json_tokener_parse(out.data);
	assert_non_null(obj);
	assert_true(json_object_object_get_ex(obj, "jobs", &jobs));
	assert_int_equal(json_object_array_length(jobs), 253);
	assert_true(json_object_object_get_ex(obj, "counts", &v));
	assert_string_equal(json_object_to_json_string_ext(
				    v, JSON_C_TO_STRING_PLAIN),
			    "{\"queued\":253,\"running\":0,\"succeeded\":0,"
			    "\"failed\":0,\"canceled\":0}");
	/* Each row is its item: key, input, metadata. */
	assert_ok(db_query(db,
			   "SELECT id, batch_key, input, metadata FROM jobs"
			   " WHERE batch_id = ? ORDER BY id",
			   &rows, &err, DB_ARGS(DB_STR(id))),
		  err);
	for (size_t i = 0; i < rows->n_rows; i++) {
		json_object *ref = json_object_array_get_idx(jobs, i);
		char want[64];

		assert_true(json_object_object_get_ex(ref, "id", &v));
		assert_string_equal(db_cell(rows, i, 0),
				    json_object_get_string(v));
		snprintf(want, sizeof(want), "k%zu", i);
		assert_string_equal(db_cell(rows, i, 1), want);
		snprintf(want, sizeof(want), "{\"i\":%zu}", i);
		assert_string_equal(db_cell(rows, i, 2), want);
		snprintf(want, sizeof(want), "{\"c\":\"7\",\"i\":\"%zu\"}", i);
		assert_string_equal(db_cell(rows, i, 3), want);
	}
	db_rows_free(rows);
	json_object_put(obj);
	/* Rendered again from the database: the same. */
	{
		dr_buf again;

		dr_buf_init(&again, 1 << 20);
		assert_ok(batches_render(db, id, &again, &err), err);
		assert_string_equal(again.data, out.data);
		dr_buf_free(&again);
	}
	dr_buf_free(&out);
	batches_request_free(&r);
	free(body);
}

static void test_create_all_or_nothing(void **state)
{
	char *body = items_body(250);
	char field[DR_BATCH_FIELD_MAX], id[DR_JOB_ID_LEN + 1];
	char adapter[100];
	dr_idempotency idem = { NULL, NULL, NULL };
	dr_batch_request r;
	int replayed;
	dr_buf out;
	dr_error err;

	(void)state;
	assert_ok(parse(body, &r, field, &err), err);
	/* Item 170 (the second chunk of 100) cannot be stored: its adapter
	 * name is longer than the column. */
	memset(adapter, 'x', sizeof(adapter) - 1);
	adapter[sizeof(adapter) - 1] = '\0';
	r.items[170].adapter = adapter;
	dr_buf_init(&out, 1 << 20);
	assert_int_not_equal(batches_create(db, &cfg, &r, &idem, id, &replayed,
					    &out, &err),
			     DR_OK);
	assert_int_equal(scalar("SELECT COUNT(*) FROM batches"), 0);
	assert_int_equal(scalar("SELECT COUNT(*) FROM jobs"), 0);
	assert_int_equal(scalar("SELECT COUNT(*) FROM job_metadata"), 0);
	assert_int_equal(scalar("SELECT COUNT(*) FROM job_events"), 0);
	dr_buf_free(&out);
	batches_request_free(&r);
	free(body);
}

static void test_idempotency(void **state)
{
	char *body = items_body(3);
	char field[DR_BATCH_FIELD_MAX], id1[DR_JOB_ID_LEN + 1],
		id2[DR_JOB_ID_LEN + 1];
	dr_idempotency idem = { "0123456789abcdef", "k-1", "aa" };
	dr_batch_request r;
	int replayed;
	dr_buf out;
	dr_error err;

	(void)state;
	assert_ok(parse(body, &r, field, &err), err);
	dr_buf_init(&out, 1 << 20);
	assert_ok(batches_create(db, &cfg, &r, &idem, id1, &replayed, &out,
				 &err),
		  err);
	assert_int_equal(replayed, 0);
	dr_buf_reset(&out);
	assert_ok(batches_create(db, &cfg, &r, &idem, id2, &replayed, &out,
				 &err),
		  err);
	assert_int_equal(replayed, 1);
	assert_string_equal(id1, id2);
	assert_non_null(strstr(out.data, id1));
	idem.body_hash = "bb";
	dr_buf_reset(&out);
	assert_int_equal(batches_create(db, &cfg, &r, &idem, id2, &replayed,
					&out, &err),
			 DR_ERR_CONFLICT);
	/* Another scope is another key. */
	idem.scope = "fedcba9876543210";
	assert_ok(batches_create(db, &cfg, &r, &idem, id2, &replayed, &out,
				 &err),
		  err);
	assert_int_equal(replayed, 0);
	assert_string_not_equal(id1, id2);
	assert_int_equal(scalar("SELECT COUNT(*) FROM batches"), 2);
	assert_int_equal(scalar("SELECT COUNT(*) FROM jobs"), 6);
	dr_buf_free(&out);
	batches_request_free(&r);
	free(body);
}

/* A batch of `n` queued jobs, with `callback_url` (or none); their ids
 * into ids[]. */
static void make_batch_cb(size_t n, const char *callback_url,
			  char batch[DR_JOB_ID_LEN + 1],
			  char (*ids)[DR_JOB_ID_LEN + 1])
{
	char *body = items_body(n);
	char field[DR_BATCH_FIELD_MAX];
	dr_idempotency idem = { NULL, NULL, NULL };
	dr_batch_request r;
	dr_db_rows *rows = NULL;
	int replayed;
	dr_buf out;
	dr_error err;

	assert_ok(parse(body, &r, field, &err), err);
	r.callback_url = callback_url;
	dr_buf_init(&out, 1 << 20);
	assert_ok(batches_create(db, &cfg, &r, &idem, batch, &replayed, &out,
				 &err),
		  err);
	assert_ok(db_query(db,
			   "SELECT id FROM jobs WHERE batch_id = ? ORDER BY id",
			   &rows, &err, DB_ARGS(DB_STR(batch))),
		  err);
	assert_int_equal(rows->n_rows, n);
	for (size_t i = 0; i < n; i++)
		snprintf(ids[i], DR_JOB_ID_LEN + 1, "%s", db_cell(rows, i, 0));
	db_rows_free(rows);
	dr_buf_free(&out);
	batches_request_free(&r);
	free(body);
}

static void make_batch(size_t n, char batch[DR_JOB_ID_LEN + 1],
		       char (*ids)[DR_JOB_ID_LEN + 1])
{
	make_batch_cb(n, NULL, batch, ids);
}

/* The batch.completed deliveries of `batch`. */
static long long deliveries(const char *batch)
{
	char sql[160];

	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(*) FROM callback_deliveries WHERE id ="
		 " 'msg_%s' AND type = 'batch.completed'",
		 batch);
	return scalar(sql);
}

static long long completed(const char *batch)
{
	char sql[128];

	snprintf(sql, sizeof(sql),
		 "SELECT completed_at IS NOT NULL FROM batches WHERE id = '%s'",
		 batch);
	return scalar(sql);
}

static void test_completes_with_last_job(void **state)
{
	char batch[DR_JOB_ID_LEN + 1], ids[3][DR_JOB_ID_LEN + 1];
	size_t n = 0;
	dr_buf out;
	dr_error err;

	(void)state;
	make_batch(3, batch, ids);
	assert_ok(jobstate_client_cancel(db, ids[1], &err), err);
	assert_int_equal(completed(batch), 0);
	assert_ok(jobstate_client_cancel(db, ids[0], &err), err);
	assert_int_equal(completed(batch), 0);
	dr_buf_init(&out, 1 << 20);
	assert_ok(batches_render(db, batch, &out, &err), err);
	assert_non_null(strstr(out.data, "\"status\":\"running\""));
	assert_non_null(strstr(out.data, "\"queued\":1,"));
	assert_non_null(strstr(out.data, "\"canceled\":2}"));
	assert_ok(batches_cancel(db, batch, &n, &err), err);
	assert_int_equal(n, 1);
	assert_int_equal(completed(batch), 1);
	dr_buf_reset(&out);
	assert_ok(batches_render(db, batch, &out, &err), err);
	assert_non_null(strstr(out.data, "\"status\":\"completed\""));
	assert_null(strstr(out.data, "\"completed_at\":null"));
	assert_int_equal(batches_render(db, "b_01KBAAAAAAAAAAAAAAAAAAAAAA",
					&out, &err),
			 DR_ERR_NOT_FOUND);
	assert_int_equal(batches_cancel(db, "b_01KBAAAAAAAAAAAAAAAAAAAAAA",
					&n, &err),
			 DR_ERR_NOT_FOUND);
	/* Without a callback_url: no message. */
	assert_int_equal(deliveries(batch), 0);
	dr_buf_free(&out);
}

static void test_completed_message(void **state)
{
	char batch[DR_JOB_ID_LEN + 1], ids[3][DR_JOB_ID_LEN + 1], sql[200];
	dr_db_rows *rows = NULL;
	dr_error err;

	(void)state;
	make_batch_cb(3, "https://app.example.com/hooks", batch, ids);
	assert_int_equal(scalar("SELECT COUNT(*) FROM batches WHERE"
				" callback_url = 'https://app.example.com/hooks'"),
			 1);
	assert_ok(jobstate_client_cancel(db, ids[2], &err), err);
	assert_ok(jobstate_client_cancel(db, ids[0], &err), err);
	assert_int_equal(deliveries(batch), 0);
	assert_ok(jobstate_client_cancel(db, ids[1], &err), err);
	/* One message, pending and due now, carried by the job whose end
	 * completed the batch, which is due for it (its own end has no
	 * callback_url). */
	assert_int_equal(deliveries(batch), 1);
	assert_ok(db_query(db,
			   "SELECT d.job_id, d.url, d.state, d.next_at <= NOW(6),"
			   " j.run_at <= NOW(6) FROM callback_deliveries d"
			   " JOIN jobs j ON j.id = d.job_id WHERE d.type ="
			   " 'batch.completed'",
			   &rows, &err, DB_NOARGS),
		  err);
	assert_int_equal(rows->n_rows, 1);
	assert_string_equal(db_cell(rows, 0, 0), ids[1]);
	assert_string_equal(db_cell(rows, 0, 1),
			    "https://app.example.com/hooks");
	assert_string_equal(db_cell(rows, 0, 2), "pending");
	assert_string_equal(db_cell(rows, 0, 3), "1");
	assert_string_equal(db_cell(rows, 0, 4), "1");
	db_rows_free(rows);
	/* The other jobs carry nothing and are not due. */
	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(*) FROM jobs WHERE batch_id = '%s' AND run_at"
		 " IS NOT NULL",
		 batch);
	assert_int_equal(scalar(sql), 1);
	/* A retry and a second end of a job: still the one message. */
	assert_ok(jobstate_client_retry(db, ids[0], &err), err);
	assert_ok(jobstate_client_cancel(db, ids[0], &err), err);
	assert_int_equal(deliveries(batch), 1);
	assert_int_equal(scalar("SELECT COUNT(*) FROM callback_deliveries"), 1);
	/* The carrier retried and ended again before the message went:
	 * still due for it (else nothing would ever send it). */
	assert_ok(jobstate_client_retry(db, ids[1], &err), err);
	assert_ok(jobstate_client_cancel(db, ids[1], &err), err);
	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(*) FROM jobs j JOIN callback_deliveries d"
		 " ON d.job_id = j.id WHERE j.id = '%s' AND d.state ="
		 " 'pending' AND j.run_at IS NOT NULL AND j.run_at <= NOW(6)",
		 ids[1]);
	assert_int_equal(scalar(sql), 1);
}

/* Deleting the job that carries a batch.completed still being delivered
 * hands the message to another job of the batch, due for it; it goes
 * only with the batch's last job. */
static void test_delete_carrier(void **state)
{
	char batch[DR_JOB_ID_LEN + 1], ids[3][DR_JOB_ID_LEN + 1], sql[300];
	dr_error err;

	(void)state;
	make_batch_cb(3, "https://app.example.com/hooks", batch, ids);
	assert_ok(jobstate_client_cancel(db, ids[0], &err), err);
	assert_ok(jobstate_client_cancel(db, ids[1], &err), err);
	assert_ok(jobstate_client_cancel(db, ids[2], &err), err);
	assert_int_equal(deliveries(batch), 1);
	assert_ok(db_exec(db, "UPDATE jobs SET run_at = NULL WHERE id = ?",
			  NULL, &err, DB_ARGS(DB_STR(ids[0]))),
		  err);
	assert_ok(deletion_delete_job(db, ids[2], "test", NULL, NULL, &err),
		  err);
	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(*) FROM callback_deliveries d JOIN jobs j"
		 " ON j.id = d.job_id WHERE d.type = 'batch.completed' AND"
		 " d.state = 'pending' AND j.id = '%s' AND j.run_at <= NOW(6)",
		 ids[0]);
	assert_int_equal(scalar(sql), 1);
	assert_ok(deletion_delete_job(db, ids[0], "test", NULL, NULL, &err),
		  err);
	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(*) FROM callback_deliveries WHERE job_id = '%s'"
		 " AND type = 'batch.completed'",
		 ids[1]);
	assert_int_equal(scalar(sql), 1);
	assert_ok(deletion_delete_job(db, ids[1], "test", NULL, NULL, &err),
		  err);
	assert_int_equal(deliveries(batch), 0);
}

/* Two jobs of one batch ending at once, on two connections. */
typedef struct racer {
	const char *id;
	pthread_barrier_t *go;
	dr_status st;
} racer;

static void *race(void *arg)
{
	racer *r = arg;
	dr_db *own = db_new(&cfg);
	dr_error err;

	r->st = db_ping(own, &err);
	pthread_barrier_wait(r->go);
	if (r->st == DR_OK)
		r->st = jobstate_client_cancel(own, r->id, &err);
	db_free(own);
	return NULL;
}

static void test_two_ends_at_once(void **state)
{
	(void)state;
	for (int round = 0; round < 40; round++) {
		char batch[DR_JOB_ID_LEN + 1], ids[2][DR_JOB_ID_LEN + 1];
		pthread_barrier_t go;
		pthread_t t[2];
		racer r[2];

		make_batch_cb(2, "https://app.example.com/hooks", batch, ids);
		pthread_barrier_init(&go, NULL, 2);
		for (int i = 0; i < 2; i++) {
			r[i].id = ids[i];
			r[i].go = &go;
			r[i].st = DR_ERR_INTERNAL;
			assert_int_equal(pthread_create(&t[i], NULL, race,
							&r[i]),
					 0);
		}
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&go);
		assert_int_equal(r[0].st, DR_OK);
		assert_int_equal(r[1].st, DR_OK);
		if (completed(batch) != 1 || deliveries(batch) != 1)
			fail_msg("round %d: both jobs ended, the batch "
				 "completed %lld, with %lld messages",
				 round, completed(batch), deliveries(batch));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_1000_items),
		cmocka_unit_test(test_input_sizes),
		cmocka_unit_test_setup(test_create_whole, empty),
		cmocka_unit_test_setup(test_create_all_or_nothing, empty),
		cmocka_unit_test_setup(test_idempotency, empty),
		cmocka_unit_test_setup(test_completes_with_last_job, empty),
		cmocka_unit_test_setup(test_completed_message, empty),
		cmocka_unit_test_setup(test_delete_carrier, empty),
		cmocka_unit_test_setup(test_two_ends_at_once, empty),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
