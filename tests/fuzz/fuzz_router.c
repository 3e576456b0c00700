/*
 * fuzz_router.c - the HTTP API router (api_handle) on hostile requests.
 *
 * Input: a request head, a blank line, then the body:
 *
 *   POST /v1/jobs?x=1
 *   content-type: application/json
 *   authorization: Bearer fuzz-key-0123456789abcdef
 *   idempotency-key: k1
 *
 *   {"model":"acme/flux","input":{}}
 *
 * The first line is "METHOD TARGET"; the others are headers (names are
 * lower-cased; content-type and authorization also fill their request
 * fields). The app has one API key ("fuzz-key-0123456789abcdef"), a static adapter "test"
 * (no plugin .so needed) and a database at 127.0.0.1:1, where connecting
 * is refused at once: validation runs in full, everything after it must
 * end in a 503 problem document, never a crash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "fuzz.h"
#include "log.h"

#define FUZZ_MAX_INPUT (256u << 10)

static const char conf_text[] =
	"[server]\n"
	"plugin_dir = /nonexistent\n"
	"api_keys = fuzz-key-0123456789abcdef\n"
	"default_adapter = test\n"
	"default_renditions = thumb\n"
	"callback_secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
	"[database]\nhost = 127.0.0.1\nport = 1\nconnect_timeout = 1s\n"
	"[preset \"thumb\"]\nwidth = 256\nheight = 256\n"
	"[preset \"card\"]\nwidth = 1280\nheight = 720\nfit = cover\n"
	"[adapter \"test\"]\nplugin = test\n";

/* An adapter with the operations the router reaches without a provider:
 * validate (refuses input.seed < 0) and webhook (refuses everything). */
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

static dr_status test_webhook(void *state, const dr_webhook_request *req,
			      dr_prediction *out, char **delivery_id,
			      dr_error *err)
{
	(void)state, (void)req, (void)out, (void)delivery_id;
	return dr_fail(err, DR_ERR_AUTH, "bad_signature", "fuzz: refused");
}

static const dr_adapter_ops ops = { .validate = test_validate,
				    .submit = test_submit,
				    .webhook = test_webhook };
static const dr_plugin desc = { .abi_version = DR_PLUGIN_ABI_VERSION,
				.size = sizeof(dr_plugin),
				.name = "test",
				.kind = DR_PLUGIN_ADAPTER,
				.adapter = &ops };

static dr_config *cfg;
static dr_loaded_plugin loaded;
static struct dr_instance inst;
static dr_plugins plugins;
static dr_db *db;
static dr_app app;
static dr_arena arena;
static dr_response resp;
static int verbose; /* FUZZ_VERBOSE=1: print each answer */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	dr_error err;

	(void)argc, (void)argv;
	dr_log_init("fuzz_router", 0, 0);
	if (config_parse("fuzz.conf", conf_text, strlen(conf_text), &cfg,
			 &err) != DR_OK) {
		fprintf(stderr, "fuzz_router: config: %s\n", err.message);
		abort();
	}
	loaded.desc = &desc;
	inst.name = "test";
	inst.plugin = &loaded;
	plugins.adapters = &inst;
	plugins.n_adapters = 1;
	db = db_new(cfg);
	if (api_init(&app, cfg, &plugins, db, &err) != DR_OK) {
		fprintf(stderr, "fuzz_router: api_init: %s\n", err.message);
		abort();
	}
	arena_init(&arena, 4096);
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	http_response_init(&resp);
	return 0;
}

/* Copy n bytes of s into the arena as a C string. */
static char *dup_n(const char *s, size_t n)
{
	return arena_strndup(&arena, s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl, *sp;
	dr_request req;
	int first = 1;

	if (!cfg)
		LLVMFuzzerInitialize(NULL, NULL);
	if (size > FUZZ_MAX_INPUT)
		return 0;
	memset(&req, 0, sizeof(req));
	req.arena = &arena;
	req.method = "GET";
	req.path = "/";
	req.query = "";
	req.remote_addr = "192.0.2.1";
	/* The head, line by line, up to an empty line. */
	while (p < end) {
		size_t n;

		nl = memchr(p, '\n', (size_t)(end - p));
		n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0) {
			p = nl ? nl + 1 : end;
			break;
		}
		if (first) {
			char *line = dup_n(p, n), *q;

			first = 0;
			sp = strchr(line, ' ');
			if (sp) {
				line[sp - line] = '\0';
				req.method = line;
				line += sp - line + 1;
			}
			q = strchr(line, '?');
			if (q) {
				*q = '\0';
				req.query = q + 1;
			}
			req.path = line;
		} else if (req.n_headers < DR_MAX_HEADERS) {
			char *line = dup_n(p, n), *colon = strchr(line, ':');
			char *v;

			if (colon) {
				*colon = '\0';
				v = colon + 1;
				while (*v == ' ')
					v++;
				for (char *c = line; *c; c++)
					if (*c >= 'A' && *c <= 'Z')
						*c = (char)(*c - 'A' + 'a');
				req.headers[req.n_headers].name = line;
				req.headers[req.n_headers].value = v;
				req.n_headers++;
				if (strcmp(line, "content-type") == 0)
					req.content_type = v;
				else if (strcmp(line, "authorization") == 0)
					req.authorization = v;
			}
		}
		p = nl ? nl + 1 : end;
	}
	/* The body, in its own allocation so ASan sees overreads. */
	req.body_len = (size_t)(end - p);
	if (req.body_len > 0) {
		unsigned char *body = malloc(req.body_len);

		if (!body)
			abort();
		memcpy(body, p, req.body_len);
		req.body = body;
	}
	api_handle(&app, &req, &resp);
	if (verbose)
		fprintf(stderr, "fuzz_router: %s %s -> %d %.*s\n", req.method,
			req.path, resp.status, (int)resp.body.len,
			(const char *)resp.body.data);
	FUZZ_CHECK(resp.status >= 200 && resp.status <= 599);
	/* Nothing reaches the database here: no 2xx for what needs it. */
	FUZZ_CHECK(resp.status != 500);
	free((void *)req.body);
	arena_reset(&arena);
	return 0;
}
