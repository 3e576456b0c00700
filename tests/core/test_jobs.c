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

static dr_config *cfg;
static char last_message[512];
static dr_loaded_plugin loaded;
static struct dr_instance inst;
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
	inst.name = "test";
	inst.plugin = &loaded;
	plugins.adapters = &inst;
	plugins.n_adapters = 1;
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
	assert_int_equal(jobs_append_time(&b, "2026-11-21 10:00:00.123456"),
			 DR_OK);
	assert_string_equal(b.data, "\"2026-11-21T10:00:00.123Z\"");
	dr_buf_reset(&b);
	assert_int_equal(jobs_append_time(&b, "2026-11-21 10:00:00"), DR_OK);
	assert_string_equal(b.data, "\"2026-11-21T10:00:00.000Z\"");
	dr_buf_reset(&b);
	assert_int_equal(jobs_append_time(&b, NULL), DR_OK);
	assert_string_equal(b.data, "null");
	dr_buf_free(&b);
	assert_true(jobs_status_valid("queued"));
	assert_true(jobs_status_valid("canceled"));
	assert_false(jobs_status_valid("cancelled"));
	assert_false(jobs_status_valid(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid_fields),
		cmocka_unit_test(test_callback_http),
		cmocka_unit_test(test_metadata_limits),
		cmocka_unit_test(test_time_format),
	};
	return cmocka_run_group_tests_name("jobs", tests, setup, teardown);
}
