/*
 * test_jobs.c - validation of POST /v1/jobs bodies (jobs_parse_request)
 * and the job object's time format. Storage is covered by the
 * integration tests against a real MariaDB.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "jobs.h"
#include "jsonutil.h"
#include "outputs.h"

static const char conf_text[] =
	"[server]\n"
	"plugin_dir = /nonexistent\n"
	"default_adapter = test\n"
	"default_renditions = thumb\n"
	"callback_secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
	"[preset \"thumb\"]\nwidth = 256\nheight = 256\n"
	"[preset \"card\"]\nwidth = 1280\nheight = 720\nfit = cover\n"
	"[adapter \"test\"]\nplugin = test\n";

/* An adapter whose validate refuses input.seed < 0, like a real provider
 * check would. */
static dr_status test_validate(void *state, const dr_job_view *job,
			       dr_error *err)
{
	(void)state;
	if (strstr(job->input_json, "\"seed\":-"))
		return dr_fail(err, DR_ERR_INVALID, "invalid_input",
			       "input.seed: must not be negative");
	return DR_OK;
}

static dr_status test_submit(void *state, const dr_job_view *job,
			     dr_prediction *out, dr_error *err)
{
	(void)state, (void)job, (void)out;
	return dr_fail(err, DR_ERR_UNSUPPORTED, "x", "not used");
}

static const dr_adapter_ops ops = {.validate = test_validate,
				   .submit = test_submit};
static const dr_plugin desc = {.abi_version = DR_PLUGIN_ABI_VERSION,
			       .size = sizeof(dr_plugin),
			       .name = "test",
			       .kind = DR_PLUGIN_ADAPTER,
			       .adapter = &ops};

/* A second adapter, "trainer", that runs trainings: its validate wants
 * the trainer's version and sees the destination. */
static dr_status train_validate(void *state, const dr_job_view *job,
				dr_error *err)
{
	(void)state;
	if (job->kind != DR_JOB_TRAINING)
		return DR_OK;
	if (!strchr(job->model, ':'))
		return dr_fail(err, DR_ERR_INVALID, "invalid_input",
			       "trainer: must name its version");
	if (!job->destination)
		return dr_fail(err, DR_ERR_INVALID, "invalid_input",
			       "destination: missing");
	return DR_OK;
}

static const dr_adapter_ops train_ops = {.validate = train_validate,
					 .submit = test_submit,
					 .trainings = 1};
static const dr_plugin train_desc = {.abi_version = DR_PLUGIN_ABI_VERSION,
				     .size = sizeof(dr_plugin),
				     .name = "trainer",
				     .kind = DR_PLUGIN_ADAPTER,
				     .adapter = &train_ops};

static dr_config *cfg;
static char last_message[512];
static dr_loaded_plugin loaded, train_loaded;
static struct dr_instance insts[2];
static dr_plugins plugins;

static int setup(void **state)
{
	dr_error err;

	(void)state;
	if (config_parse("test.conf", conf_text, strlen(conf_text), &cfg,
			 &err) != DR_OK) {
		fprintf(stderr, "config: %s\n", err.message);
		return -1;
	}
	loaded.desc = &desc;
	insts[0].name = "test";
	insts[0].plugin = &loaded;
	train_loaded.desc = &train_desc;
	insts[1].name = "trainer";
	insts[1].plugin = &train_loaded;
	plugins.adapters = insts;
	plugins.n_adapters = 2;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	config_free(cfg);
	return 0;
}

/* Parse and validate `body`; returns the status and the field named. */
static dr_status check(const char *body, const char **field,
		       dr_job_request *out)
{
	json_object *root = NULL;
	dr_job_request req;
	dr_error err;
	dr_status st;

	assert_int_equal(json_parse_limited(body, strlen(body), 32, &root, &err),
			 DR_OK);
	st = jobs_parse_request(cfg, &plugins, root, &req, field, &err);
	json_object_put(root);
	snprintf(last_message, sizeof(last_message), "%s",
		 st == DR_OK ? "" : err.message);
	if (st == DR_OK && out)
		*out = req;
	else if (st == DR_OK)
		jobs_request_free(&req);
	/* The detail names the field (for an unknown field, that field;
	 * `field` then says the body as a whole). */
	if (st != DR_OK && strcmp(*field, "body") != 0)
		assert_non_null(strstr(err.message, *field));
	return st;
}

static void test_valid(void **state)
{
	dr_job_request r;
	const char *field;

	(void)state;
	assert_int_equal(check("{\"model\":\"acme/flux\",\"input\":"
			       "{\"prompt\":\"x\"}}",
			       &field, &r),
			 DR_OK);
	assert_string_equal(r.adapter, "test");
	assert_int_equal(r.n_renditions, 1);
	assert_string_equal(r.renditions[0], "thumb");
	assert_null(r.metadata);
	assert_null(r.callback_url);
	jobs_request_free(&r);
	assert_int_equal(
		check("{\"adapter\":\"test\",\"model\":\"acme/flux-1.1_pro:"
		      "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f"
		      "62f35637\",\"input\":{},\"renditions\":[\"card\","
		      "\"thumb\"],\"metadata\":{\"user_id\":\"42\"},"
		      "\"callback_url\":\"https://app.example.com/h\"}",
		      &field, &r),
		DR_OK);
	assert_int_equal(r.n_renditions, 2);
	assert_string_equal(r.callback_url, "https://app.example.com/h");
	jobs_request_free(&r);
	assert_int_equal(check("{\"model\":\"5599ed30703defd1d160a25a63321b4dec9"
			       "7101d98b4674bcc56e41f62f35637\",\"input\":{},"
			       "\"renditions\":[],\"metadata\":null}",
			       &field, NULL),
			 DR_OK);
}

/* Callbacks go out under the download policy: plain http only with
 * DARKROOM_DOWNLOAD_ALLOW_HTTP=1, else refused at intake, not dropped
 * at delivery. */
static void test_callback_http(void **state)
{
	static const char body[] = "{\"model\":\"a/b\",\"input\":{},"
				   "\"callback_url\":\"http://app.example.com/h\"}";
	const char *field;

	(void)state;
	unsetenv("DARKROOM_DOWNLOAD_ALLOW_HTTP");
	assert_int_equal(check(body, &field, NULL), DR_ERR_INVALID);
	assert_string_equal(field, "callback_url");
	assert_non_null(strstr(last_message, "DARKROOM_DOWNLOAD_ALLOW_HTTP"));
	setenv("DARKROOM_DOWNLOAD_ALLOW_HTTP", "yes", 1);
	assert_int_equal(check(body, &field, NULL), DR_ERR_INVALID);
	setenv("DARKROOM_DOWNLOAD_ALLOW_HTTP", "1", 1);
	assert_int_equal(check(body, &field, NULL), DR_OK);
	unsetenv("DARKROOM_DOWNLOAD_ALLOW_HTTP");
}

/* A callback_url naming localhost or a loopback, private or link-local
 * address literal is refused at intake (field callback_url) unless
 * DARKROOM_CALLBACK_ALLOW_PRIVATE=1; the download setting does not count;
 * host names pass (the worker checks their addresses when connecting). */
static void test_callback_private(void **state)
{
	static const char *const refused[] = {
		"https://localhost/h",	    "https://127.0.0.1/h",
		"https://127.0.0.1:8443/h", "https://10.0.0.7/h",
		"https://192.168.1.1/h",    "https://169.254.169.254/h",
		"https://[::1]/h",	    "https://[fe80::1]/h",
		"https://LocalHost./h",	    "https://0x7f.1/h",
	};
	static const char *const accepted[] = {
		"https://app.example.com/h",
		"https://8.8.8.8/h",
		"https://[2606:4700::1111]/h",
	};
	char body[512];
	const char *field;

	(void)state;
	unsetenv("DARKROOM_CALLBACK_ALLOW_PRIVATE");
	setenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE", "1", 1);
	for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
		snprintf(body, sizeof(body),
			 "{\"model\":\"a/b\",\"input\":{},"
			 "\"callback_url\":\"%s\"}",
			 refused[i]);
		if (check(body, &field, NULL) != DR_ERR_INVALID)
			fail_msg("accepted: %s", refused[i]);
		assert_string_equal(field, "callback_url");
		assert_non_null(strstr(last_message,
				       "DARKROOM_CALLBACK_ALLOW_PRIVATE"));
		setenv("DARKROOM_CALLBACK_ALLOW_PRIVATE", "1", 1);
		if (check(body, &field, NULL) != DR_OK)
			fail_msg("refused with ALLOW_PRIVATE=1: %s",
				 refused[i]);
		unsetenv("DARKROOM_CALLBACK_ALLOW_PRIVATE");
	}
	for (size_t i = 0; i < sizeof(accepted) / sizeof(*accepted); i++) {
		snprintf(body, sizeof(body),
			 "{\"model\":\"a/b\",\"input\":{},"
			 "\"callback_url\":\"%s\"}",
			 accepted[i]);
		if (check(body, &field, NULL) != DR_OK)
			fail_msg("refused: %s", accepted[i]);
	}
	/* Never: unspecified and multicast addresses, even when allowed. */
	setenv("DARKROOM_CALLBACK_ALLOW_PRIVATE", "1", 1);
	assert_int_equal(check("{\"model\":\"a/b\",\"input\":{},"
			       "\"callback_url\":\"https://0.0.0.0/h\"}",
			       &field, NULL),
			 DR_ERR_INVALID);
	unsetenv("DARKROOM_CALLBACK_ALLOW_PRIVATE");
	unsetenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE");
}

static void test_invalid_fields(void **state)
{
	static const struct {
		const char *body, *field;
	} cases[] = {
		{"[]", "body"},
		{"{\"model\":\"a/b\"}", "input"},
		{"{\"model\":\"a/b\",\"input\":[]}", "input"},
		{"{\"model\":\"a/b\",\"input\":\"x\"}", "input"},
		{"{\"input\":{}}", "model"},
		{"{\"model\":7,\"input\":{}}", "model"},
		{"{\"model\":\"no spaces/x y\",\"input\":{}}", "model"},
		{"{\"model\":\"a/b/c\",\"input\":{}}", "model"},
		{"{\"model\":\"a/b:123\",\"input\":{}}", "model"},
		{"{\"model\":\"/b\",\"input\":{}}", "model"},
		{"{\"model\":\"abc\",\"input\":{}}", "model"},
		{"{\"model\":\"a/b\",\"input\":{},\"adapter\":\"nope\"}", "adapter"},
		{"{\"model\":\"a/b\",\"input\":{},\"adapter\":1}", "adapter"},
		{"{\"model\":\"a/b\",\"input\":{},\"renditions\":\"thumb\"}",
		 "renditions"},
		{"{\"model\":\"a/b\",\"input\":{},\"renditions\":[\"huge\"]}",
		 "renditions"},
		{"{\"model\":\"a/b\",\"input\":{},\"renditions\":[1]}",
		 "renditions"},
		{"{\"model\":\"a/b\",\"input\":{},\"renditions\":[\"thumb\","
		 "\"thumb\"]}",
		 "renditions"},
		{"{\"model\":\"a/b\",\"input\":{},\"metadata\":[]}", "metadata"},
		{"{\"model\":\"a/b\",\"input\":{},\"metadata\":{\"k\":1}}",
		 "metadata"},
		{"{\"model\":\"a/b\",\"input\":{},\"metadata\":{\"a b\":\"x\"}}",
		 "metadata"},
		{"{\"model\":\"a/b\",\"input\":{},\"metadata\":{\"k\":\"a\\u0000b\"}}",
		 "metadata"},
		{"{\"model\":\"a/b\",\"input\":{},\"callback_url\":\"ftp://x/\"}",
		 "callback_url"},
		{"{\"model\":\"a/b\",\"input\":{},\"callback_url\":\"not a url\"}",
		 "callback_url"},
		{"{\"model\":\"a/b\",\"input\":{},\"callback_url\":5}",
		 "callback_url"},
		{"{\"model\":\"a/b\",\"input\":{},\"colour\":\"red\"}", "colour"},
		{"{\"model\":\"a/b\",\"input\":{\"seed\":-1}}", "input"},
	};
	const char *field;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		dr_status st = check(cases[i].body, &field, NULL);

		if (st != DR_ERR_INVALID)
			fail_msg("accepted: %s", cases[i].body);
		if (strcmp(cases[i].field, "colour") == 0)
		{
			assert_string_equal(field, "body");
			assert_non_null(strstr(last_message, "colour"));
		}
		else
			assert_string_equal(field, cases[i].field);
	}
}

#define TRAINER "\"trainer\":\"o/t:" HEX64_T "\""
#define HEX64_T                                                                \
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* POST /v1/trainings bodies (jobs_parse_training): a valid one becomes a
 * training request; each refusal names its field, an adapter without
 * trainings names `adapter`, and members of job requests that a training
 * does not take are unknown fields. */
static void test_training_parse(void **state)
{
	static const struct {
		const char *body, *field;
	} bad[] = {
		{"{" TRAINER ",\"destination\":\"a/x\",\"input\":{}}",
		 "adapter"}, /* the default adapter runs none */
		{"{\"adapter\":\"nope\"," TRAINER
		 ",\"destination\":\"a/x\",\"input\":{}}",
		 "adapter"},
		{"{\"adapter\":\"trainer\",\"destination\":\"a/x\","
		 "\"input\":{}}",
		 "trainer"},
		{"{\"adapter\":\"trainer\",\"trainer\":7,"
		 "\"destination\":\"a/x\",\"input\":{}}",
		 "trainer"},
		{"{\"adapter\":\"trainer\",\"trainer\":\"o/t\","
		 "\"destination\":\"a/x\",\"input\":{}}",
		 "trainer"},
		{"{\"adapter\":\"trainer\"," TRAINER ",\"input\":{}}",
		 "destination"},
		{"{\"adapter\":\"trainer\"," TRAINER
		 ",\"destination\":\"acme\",\"input\":{}}",
		 "destination"},
		{"{\"adapter\":\"trainer\"," TRAINER
		 ",\"destination\":\"a/x:" HEX64_T "\",\"input\":{}}",
		 "destination"},
		{"{\"adapter\":\"trainer\"," TRAINER
		 ",\"destination\":\"a/x\"}",
		 "input"},
		{"{\"adapter\":\"trainer\"," TRAINER
		 ",\"destination\":\"a/x\",\"input\":[]}",
		 "input"},
		{"{\"adapter\":\"trainer\"," TRAINER
		 ",\"destination\":\"a/x\",\"input\":{},\"model\":\"a/b\"}",
		 "body"},
		{"{\"adapter\":\"trainer\"," TRAINER
		 ",\"destination\":\"a/x\",\"input\":{},"
		 "\"renditions\":[]}",
		 "body"},
		{"{\"adapter\":\"trainer\"," TRAINER
		 ",\"destination\":\"a/x\",\"input\":{},\"metadata\":[]}",
		 "metadata"},
	};
	const char *good = "{\"adapter\":\"trainer\"," TRAINER
			   ",\"destination\":\"acme/brand\","
			   "\"input\":{\"steps\":10},"
			   "\"metadata\":{\"customer\":\"42\"}}";
	json_object *root = NULL;
	dr_job_request req;
	const char *field = NULL;
	dr_error err;

	(void)state;
	assert_int_equal(json_parse_limited(good, strlen(good), 32, &root, &err),
			 DR_OK);
	assert_int_equal(jobs_parse_training(cfg, &plugins, root, &req, &field,
					     &err),
			 DR_OK);
	json_object_put(root);
	assert_int_equal(req.training, 1);
	assert_string_equal(req.adapter, "trainer");
	assert_string_equal(req.model, "o/t:" HEX64_T);
	assert_string_equal(req.destination, "acme/brand");
	assert_int_equal(req.n_renditions, 0);
	assert_non_null(req.metadata);
	jobs_request_free(&req);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		root = NULL;
		field = NULL;
		assert_int_equal(json_parse_limited(bad[i].body,
						    strlen(bad[i].body), 32,
						    &root, &err),
				 DR_OK);
		if (jobs_parse_training(cfg, &plugins, root, &req, &field,
					&err) != DR_ERR_INVALID)
			fail_msg("accepted: %s", bad[i].body);
		json_object_put(root);
		assert_non_null(field);
		if (strcmp(field, bad[i].field) != 0)
			fail_msg("%s: field %s, want %s", bad[i].body, field,
				 bad[i].field);
	}
	/* The jobs' parser knows nothing of trainings. */
	assert_int_equal(check("{\"model\":\"a/b\",\"input\":{},"
			       "\"destination\":\"a/x\"}",
			       &field, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(field, "body");
}

static void test_metadata_limits(void **state)
{
	char body[8192];
	size_t n;
	const char *field;

	(void)state;
	/* 16 keys pass, 17 do not. */
	for (int keys = 16; keys <= 17; keys++) {
		n = (size_t)snprintf(body, sizeof(body),
				     "{\"model\":\"a/b\",\"input\":{},"
				     "\"metadata\":{");
		for (int i = 0; i < keys; i++)
			n += (size_t)snprintf(body + n, sizeof(body) - n,
					      "%s\"k%d\":\"v\"", i ? "," : "",
					      i);
		snprintf(body + n, sizeof(body) - n, "}}");
		assert_int_equal(check(body, &field, NULL),
				 keys == 16 ? DR_OK : DR_ERR_INVALID);
	}
	/* 4096 bytes of keys and values pass, one more does not. */
	for (int extra = 0; extra <= 1; extra++) {
		char value[4200];
		size_t len = 4096 - 1 + (size_t)extra; /* key "k" is 1 byte */

		memset(value, 'x', len);
		value[len] = '\0';
		snprintf(body, sizeof(body),
			 "{\"model\":\"a/b\",\"input\":{},\"metadata\":"
			 "{\"k\":\"%s\"}}",
			 value);
		assert_int_equal(check(body, &field, NULL),
				 extra ? DR_ERR_INVALID : DR_OK);
	}
}

static void test_time_format(void **state)
{
	dr_buf b;

	(void)state;
	dr_buf_init(&b, 256);
	assert_int_equal(json_append_time(&b, "2026-11-21 10:00:00.123456"),
			 DR_OK);
	assert_string_equal(b.data, "\"2026-11-21T10:00:00.123Z\"");
	dr_buf_reset(&b);
	assert_int_equal(json_append_time(&b, "2026-11-21 10:00:00"), DR_OK);
	assert_string_equal(b.data, "\"2026-11-21T10:00:00.000Z\"");
	dr_buf_reset(&b);
	assert_int_equal(json_append_time(&b, NULL), DR_OK);
	assert_string_equal(b.data, "null");
	dr_buf_free(&b);
	assert_true(jobs_status_valid("queued"));
	assert_true(jobs_status_valid("canceled"));
	assert_false(jobs_status_valid("cancelled"));
	assert_false(jobs_status_valid(""));
}

/* The field a job list's filters are refused for, or NULL when taken. */
static const char *jobs_refused(const dr_filter_arg *a, size_t n)
{
	dr_job_filter f;
	const char *field = NULL;
	dr_error err;

	dr_error_clear(&err);
	if (jobs_filter_parse(a, n, &f, &field, &err) == DR_OK)
		return NULL;
	assert_int_equal(err.status, DR_ERR_INVALID);
	assert_string_equal(err.code, "invalid_parameter");
	assert_non_null(field);
	/* The message starts with the field (cut at 64 or 80 bytes). */
	assert_memory_equal(err.message, field,
			    strlen(field) < 64 ? strlen(field) : 64);
	return field;
}

static const char *outputs_refused(const dr_filter_arg *a, size_t n)
{
	dr_output_filter f;
	const char *field = NULL;
	dr_error err;

	dr_error_clear(&err);
	if (outputs_filter_parse(a, n, &f, &field, &err) == DR_OK)
		return NULL;
	assert_string_equal(err.code, "invalid_parameter");
	assert_non_null(field);
	assert_memory_equal(err.message, field, strlen(field));
	return field;
}

static void test_jobs_filter_parse(void **state)
{
	const dr_filter_arg good[] = {
		{"status", "failed"}, {"model", "a/b"}, {"adapter", "null"},
		{"cursor", "j_01ARZ3NDEKTSV4RRFFQ69G5FAV"}, {"limit", "7"},
		{"metadata.user", "1"}, {"metadata.project", ""}};
	const dr_filter_arg twice[] = {{"metadata.a", "1"}, {"metadata.a", "2"}};
	const dr_filter_arg cases[] = {{"metadata.a", "1"}, {"metadata.A", "2"}};
	const dr_filter_arg lim[] = {{"limit", "1"}, {"limit", "1"}};
	dr_filter_arg many[DR_MAX_METADATA_FILTERS + 1];
	char names[DR_MAX_METADATA_FILTERS + 1][24];
	dr_job_filter f;
	const char *field = NULL;
	dr_error err;

	(void)state;
	assert_int_equal(jobs_filter_parse(good, 7, &f, &field, &err), DR_OK);
	assert_string_equal(f.status, "failed");
	assert_string_equal(f.model, "a/b");
	assert_string_equal(f.adapter, "null");
	assert_int_equal(f.limit, 7);
	assert_int_equal(f.n_meta, 2);
	assert_string_equal(f.meta[0].key, "user");
	assert_string_equal(f.meta[1].value, "");
	assert_int_equal(jobs_filter_parse(NULL, 0, &f, &field, &err), DR_OK);
	assert_int_equal(f.limit, DR_LIST_LIMIT_DEFAULT);
	assert_null(f.status);

	assert_string_equal(jobs_refused(&(dr_filter_arg){"status", "done"}, 1),
			    "status");
	assert_string_equal(jobs_refused(&(dr_filter_arg){"cursor", "x"}, 1),
			    "cursor");
	assert_string_equal(jobs_refused(&(dr_filter_arg){"kind", "batch"}, 1),
			    "kind");
	assert_null(jobs_refused(&(dr_filter_arg){"kind", "training"}, 1));
	assert_null(jobs_refused(&(dr_filter_arg){"kind", "prediction"}, 1));
	assert_null(jobs_refused(&(dr_filter_arg){"kind", "workflow"}, 1));
	assert_string_equal(jobs_refused(&(dr_filter_arg){"sha256", "x"}, 1),
			    "sha256");
	assert_string_equal(jobs_refused(&(dr_filter_arg){"limit", "0"}, 1),
			    "limit");
	assert_string_equal(jobs_refused(&(dr_filter_arg){"limit", "101"}, 1),
			    "limit");
	assert_string_equal(jobs_refused(&(dr_filter_arg){"limit", "+5"}, 1),
			    "limit");
	assert_string_equal(jobs_refused(&(dr_filter_arg){"limit", ""}, 1),
			    "limit");
	assert_null(jobs_refused(&(dr_filter_arg){"limit", "100"}, 1));
	assert_string_equal(jobs_refused(twice, 2), "metadata.a");
	assert_ptr_equal(jobs_refused(twice, 2), twice[1].name);
	assert_string_equal(jobs_refused(cases, 2), "metadata.A");
	assert_string_equal(jobs_refused(lim, 2), "limit");
	assert_string_equal(
		jobs_refused(&(dr_filter_arg){"metadata.a b", "1"}, 1),
		"metadata.a b");
	for (int i = 0; i <= DR_MAX_METADATA_FILTERS; i++) {
		snprintf(names[i], sizeof(names[i]), "metadata.k%d", i);
		many[i].name = names[i];
		many[i].value = "1";
	}
	assert_null(jobs_refused(many, DR_MAX_METADATA_FILTERS));
	assert_string_equal(jobs_refused(many, DR_MAX_METADATA_FILTERS + 1),
			    "metadata");
}

static void test_outputs_filter_parse(void **state)
{
	static const char sha[] = "e3b0c44298fc1c149afbf4c8996fb924"
				  "27ae41e4649b934ca495991b7852b855";
	const dr_filter_arg good[] = {
		{"model", "a/b"},	  {"adapter", "null"}, {"sha256", sha},
		{"since", "2026-01-02"}, {"until", "2026-01-03T04:05:06Z"},
		{"q", "cat"},		  {"limit", "3"},      {"cursor", "42"},
		{"metadata.user", "1"}};
	dr_output_filter f;
	const char *field = NULL;
	dr_error err;

	(void)state;
	assert_int_equal(outputs_filter_parse(good, 9, &f, &field, &err),
			 DR_OK);
	assert_string_equal(f.sha256, sha);
	assert_string_equal(f.since, "2026-01-02 00:00:00.000000");
	assert_string_equal(f.until, "2026-01-03 04:05:06.000000");
	assert_string_equal(f.q, "cat");
	assert_string_equal(f.cursor, "42");
	assert_int_equal(f.limit, 3);
	assert_int_equal(f.n_meta, 1);
	assert_int_equal(outputs_filter_parse(NULL, 0, &f, &field, &err),
			 DR_OK);
	assert_null(f.since);
	assert_null(f.until);
	assert_int_equal(f.limit, DR_LIST_LIMIT_DEFAULT);

	assert_string_equal(outputs_refused(&(dr_filter_arg){"sha256", "xyz"}, 1),
			    "sha256");
	assert_string_equal(outputs_refused(&(dr_filter_arg){"since", "soon"}, 1),
			    "since");
	assert_string_equal(outputs_refused(&(dr_filter_arg){"until", "x"}, 1),
			    "until");
	assert_string_equal(outputs_refused(&(dr_filter_arg){"q", ""}, 1), "q");
	assert_string_equal(outputs_refused(&(dr_filter_arg){"cursor", "j_1"}, 1),
			    "cursor");
	assert_string_equal(outputs_refused(&(dr_filter_arg){"status", "x"}, 1),
			    "status");
	assert_string_equal(outputs_refused(&(dr_filter_arg){"limit", "abc"}, 1),
			    "limit");
}

/* ------------------------------------------------------------------
 * URLs made when outputs are read
 */

/* A sink whose public URL is its base and the key; base NULL: it cannot
 * make one. */
static dr_status url_sink_url(void *state, const char *key, char *buf,
			      size_t bufsz)
{
	const char *base = state;
	int n;

	if (!base)
		return DR_ERR_TOO_LARGE;
	n = snprintf(buf, bufsz, "%s/%s", base, key);
	return n < 0 || (size_t)n >= bufsz ? DR_ERR_TOO_LARGE : DR_OK;
}

static const dr_sink_ops url_sink_ops = { .size = sizeof(dr_sink_ops),
					  .public_url = url_sink_url };
static const dr_plugin url_sink_desc = { .abi_version = DR_PLUGIN_ABI_VERSION,
					 .size = sizeof(dr_plugin),
					 .name = "urls",
					 .kind = DR_PLUGIN_SINK,
					 .sink = &url_sink_ops };
static const dr_loaded_plugin url_sink_loaded = { .desc = &url_sink_desc };

/* Output row 0 of DR_OUTPUT_COLUMNS with `key` and the `url` it stored,
 * and one rendition row of DR_RENDITION_COLUMNS likewise, rendered with
 * `sink` into `out` (closed with "}"). */
static void render_output(const struct dr_instance *sink, const char *key,
			  const char *url, const char *rkey, const char *rurl,
			  dr_buf *out)
{
	char *oc[16] = { "7", "0", "image", "https://provider.example/o.png" };
	char *rc[8] = { "7", "thumb" };
	unsigned long ol[16] = { 0 }, rl[8] = { 0 };
	dr_db_rows outs = { 1, 16, oc, ol }, rends = { 1, 8, rc, rl };

	oc[4] = (char *)url;
	oc[5] = (char *)key;
	rc[2] = (char *)rurl;
	rc[3] = (char *)rkey;
	dr_buf_init(out, 1u << 16);
	assert_int_equal(jobs_append_output(out, sink, &outs, 0, &rends),
			 DR_OK);
	assert_int_equal(dr_buf_puts(out, "}"), DR_OK);
}

/* The URL of each object is made from its key by the sink passed, not
 * read from the row: a row written under another host shows the sink's.
 * A sink that cannot make it: null. No sink, or a row without a key:
 * what the row stored. */
static void test_output_urls_from_keys(void **state)
{
	struct dr_instance sink = { .name = "urls",
				    .plugin = &url_sink_loaded,
				    .state = "https://cdn.new.example/m" };
	struct dr_instance broken = { .name = "urls",
				      .plugin = &url_sink_loaded };
	dr_buf b;

	(void)state;
	render_output(&sink, "ab/abc.png",
		      "http://127.0.0.1:8080/media/ab/abc.png",
		      "ab/abc/thumb.webp", NULL, &b);
	assert_non_null(strstr(b.data, "\"url\":\"https://cdn.new.example/m/"
				       "ab/abc.png\",\"key\":\"ab/abc.png\""));
	assert_non_null(strstr(b.data, "\"url\":\"https://cdn.new.example/m/"
				       "ab/abc/thumb.webp\",\"key\":\"ab/abc/"
				       "thumb.webp\""));
	assert_null(strstr(b.data, "8080"));
	dr_buf_free(&b);

	render_output(&broken, "ab/abc.png", "http://old.example/ab/abc.png",
		      "ab/abc/thumb.webp", "http://old.example/t.webp", &b);
	assert_non_null(strstr(b.data, "\"url\":null,\"key\":\"ab/abc.png\""));
	assert_non_null(
		strstr(b.data, "\"url\":null,\"key\":\"ab/abc/thumb.webp\""));
	dr_buf_free(&b);

	render_output(NULL, "ab/abc.png", NULL, "ab/abc/thumb.webp",
		      "http://old.example/t.webp", &b);
	assert_non_null(strstr(b.data, "\"url\":null,\"key\":\"ab/abc.png\""));
	assert_non_null(strstr(b.data, "\"url\":\"http://old.example/t.webp\""));
	dr_buf_free(&b);

	render_output(&sink, NULL, "http://old.example/o.png",
		      "ab/abc/thumb.webp", NULL, &b);
	assert_non_null(strstr(b.data, "\"url\":\"http://old.example/o.png\","
				       "\"key\":null"));
	dr_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid_fields),
		cmocka_unit_test(test_training_parse),
		cmocka_unit_test(test_callback_http),
		cmocka_unit_test(test_callback_private),
		cmocka_unit_test(test_metadata_limits),
		cmocka_unit_test(test_time_format),
		cmocka_unit_test(test_jobs_filter_parse),
		cmocka_unit_test(test_outputs_filter_parse),
		cmocka_unit_test(test_output_urls_from_keys),
	};
	return cmocka_run_group_tests_name("jobs", tests, setup, teardown);
}
