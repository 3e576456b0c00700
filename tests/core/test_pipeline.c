/*
 * test_pipeline.c - core/pipeline.c: pipeline_persist() run on jobs in
 * `persisting` against a real MariaDB (tests/core/dbserver.h), a small
 * HTTP server in a thread of this program that plays the provider's file
 * host, and an in-memory sink.
 *
 * The file host serves real PNG and JPEG bytes made with libvips at
 * start, and the answers a provider's CDN may give instead: 404, 410,
 * 403, 429 with Retry-After, 500, a body that drips, a body that never
 * comes, a body over max_output_bytes (declared or chunked), HTML served
 * as image/png, a truncated PNG. It listens on 127.0.0.1 over plain
 * http, so each case starts with DARKROOM_DOWNLOAD_ALLOW_HTTP/_PRIVATE=1
 * and DARKROOM_DOWNLOAD_HOSTS=127.0.0.1 (netpolicy_env); the cases about
 * refused URLs and addresses change one of them.
 *
 * The sink is a dr_instance of a dr_plugin built here, reached as the
 * pipeline reaches any sink: plugins_sink(ctx->plugins, [server] sink).
 * It keeps objects in memory with their headers, and can be told to
 * fail its puts (with a status, code and retryable flag), to fail from
 * its Nth put on, or to refuse public URLs. The job's adapter ("fake") is
 * an instance of an adapter descriptor built here too, which declares a
 * local root for the local-file cases.
 *
 * Each case makes a job (lease FENCE) with its outputs, runs the step with
 * a claim of it, and checks the outcome (kind, sub-step, code, whether
 * the try counts, delay), what the database holds (outputs, renditions,
 * the job's status) and what the sink and the file host saw. A few cases
 * hand the claim to engine_run(), which runs the same step and records
 * its outcome through jobstate.h, to check what a retry and a failure
 * leave in the job's row.
 */
/* cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "dbserver.h"
#include "digest.h"
#include "engine.h"
#include "image.h"
#include "jobfix.h"
#include "jobs.h"
#include "loopback.h"
#include "pipeline.h"
#include "rendition.h"

#define FENCE	     3 /* the lease_version of every job made here */
#define MAX_ATTEMPTS 4
#define RETRY_BASE   100.0 /* first backoff: 50 to 100 s */
#define RETRY_MAX    1000.0
#define MAX_OUTPUT   (64u * 1024) /* [limits] max_output_bytes */
#define RETRY_AFTER  7		  /* the 429's Retry-After */

static dr_config cfg;
static dr_db *db;

/* The images the file host serves (g_free). */
static void *png, *jpg;
static size_t png_len, jpg_len;
#define PNG_W 64
#define PNG_H 48
#define JPG_W 40
#define JPG_H 30

/* ------------------------------------------------------------------
 * The file host: one connection at a time, one request per connection.
 */

static struct host {
	pthread_mutex_t mu;
	loopback_server srv;
	int requests;	/* requests read */
	char last[256]; /* the last request's path */
} fh = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Send all of p; 0, or -1 once the client is gone. */
static int send_all(int c, const void *p, size_t n)
{
	const char *b = p;

	while (n > 0) {
		ssize_t w = send(c, b, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Wait up to `ms` for the client to go away: 1 when it did. */
static int client_gone(int c, int ms)
{
	struct pollfd p = { c, POLLIN, 0 };
	char b[256];

	if (poll(&p, 1, ms) <= 0)
		return 0;
	return recv(c, b, sizeof(b), MSG_DONTWAIT) <= 0;
}

static void answer(int c, int status, const char *ctype, const void *body,
		   size_t len, const char *extra)
{
	char head[512];

	snprintf(head, sizeof(head),
		 "HTTP/1.1 %d Test\r\nContent-Type: %s\r\n"
		 "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
		 status, ctype, len, extra ? extra : "");
	if (send_all(c, head, strlen(head)) == 0 && len)
		send_all(c, body, len);
}

static const char html[] = "<!DOCTYPE html><html><body><script>alert(1)"
			   "</script></body></html>\n";

static void route(int c, const char *path)
{
	static char big[MAX_OUTPUT + 4096];

	if (strcmp(path, "/img.png") == 0)
		answer(c, 200, "image/png", png, png_len, NULL);
	else if (strcmp(path, "/img.jpg") == 0)
		answer(c, 200, "image/jpeg", jpg, jpg_len, NULL);
	else if (strcmp(path, "/png-as-octets") == 0)
		answer(c, 200, "application/octet-stream", png, png_len, NULL);
	else if (strcmp(path, "/html-as-png") == 0)
		answer(c, 200, "image/png", html, sizeof(html) - 1, NULL);
	else if (strcmp(path, "/truncated.png") == 0)
		answer(c, 200, "image/png", png, png_len / 2, NULL);
	else if (strcmp(path, "/empty") == 0)
		answer(c, 200, "application/octet-stream", "", 0, NULL);
	else if (strcmp(path, "/404") == 0 || strcmp(path, "/410") == 0 ||
		 strcmp(path, "/403") == 0 || strcmp(path, "/500") == 0)
		answer(c, atoi(path + 1), "text/plain", "no\n", 3, NULL);
	else if (strcmp(path, "/429") == 0)
		answer(c, 429, "text/plain", "slow down\n", 10,
		       "Retry-After: 7\r\n");
	else if (strcmp(path, "/redirect") == 0) {
		char loc[128];

		snprintf(loc, sizeof(loc),
			 "Location: http://localhost:%d/img.png\r\n", fh.srv.port);
		answer(c, 302, "text/plain", "", 0, loc);
	} else if (strcmp(path, "/big") == 0) {
		memset(big, 'x', sizeof(big));
		answer(c, 200, "application/octet-stream", big, sizeof(big),
		       NULL);
	} else if (strcmp(path, "/big-chunked") == 0) {
		const char *h = "HTTP/1.1 200 OK\r\nContent-Type: "
				"application/octet-stream\r\nTransfer-Encoding:"
				" chunked\r\nConnection: close\r\n\r\n";
		char sz[32];

		memset(big, 'x', 8192);
		if (send_all(c, h, strlen(h)) != 0)
			return;
		for (size_t sent = 0; sent < sizeof(big); sent += 8192) {
			snprintf(sz, sizeof(sz), "2000\r\n");
			if (send_all(c, sz, strlen(sz)) != 0 ||
			    send_all(c, big, 8192) != 0 ||
			    send_all(c, "\r\n", 2) != 0)
				return;
		}
		send_all(c, "0\r\n\r\n", 5);
	} else if (strcmp(path, "/drip") == 0) {
		/* A byte every 250 ms, for at most 8 s. */
		const char *h = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
				"Content-Length: 1000\r\nConnection: close"
				"\r\n\r\n";

		if (send_all(c, h, strlen(h)) != 0)
			return;
		for (int i = 0; i < 32; i++)
			if (send_all(c, png, 1) != 0 || client_gone(c, 250))
				return;
	} else if (strcmp(path, "/stall") == 0) {
		/* Headers, then nothing until the client leaves (8 s). */
		const char *h = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
				"Content-Length: 1000\r\nConnection: close"
				"\r\n\r\n";

		if (send_all(c, h, strlen(h)) == 0)
			client_gone(c, 8000);
	} else
		answer(c, 404, "text/plain", "unknown\n", 8, NULL);
}

static void serve(int c, void *arg)
{
	char buf[4096], path[256];
	size_t have = 0;

	(void)arg;
	for (;;) {
		struct pollfd p = { c, POLLIN, 0 };
		ssize_t n;

		if (have >= sizeof(buf) - 1 || poll(&p, 1, 5000) <= 0)
			return;
		n = recv(c, buf + have, sizeof(buf) - 1 - have, 0);
		if (n <= 0)
			return;
		have += (size_t)n;
		buf[have] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	if (sscanf(buf, "GET %255s HTTP/1.1", path) != 1)
		return;
	pthread_mutex_lock(&fh.mu);
	fh.requests++;
	snprintf(fh.last, sizeof(fh.last), "%s", path);
	pthread_mutex_unlock(&fh.mu);
	route(c, path);
}

static int fh_requests(void)
{
	int n;

	pthread_mutex_lock(&fh.mu);
	n = fh.requests;
	pthread_mutex_unlock(&fh.mu);
	return n;
}

/* The file host's URL for `path` (static, eight in turn). */
static const char *url(const char *path)
{
	static char u[8][128];
	static int k;

	k = (k + 1) % 8;
	snprintf(u[k], sizeof(u[k]), "http://127.0.0.1:%d%s", fh.srv.port, path);
	return u[k];
}

/* ------------------------------------------------------------------
 * The in-memory sink
 */

#define SINK_MAX 64

typedef struct object {
	char key[DR_KEY_MAX];
	unsigned char *data;
	uint64_t size;
	char ctype[128], cache[64], sha[DR_SHA256_HEX_LEN + 1];
	char job[64], model[64];
} object;

static struct sink {
	object obj[SINK_MAX];
	size_t n;
	int puts, stats, urls;
	/* Faults: puts numbered from 1 fail from put `fail_from` on (0:
	 * none) with status/code/retryable; public_url fails when
	 * url_fails. */
	int fail_from;
	dr_status fail_status;
	const char *fail_code;
	int fail_retryable;
	int url_fails;
} sk;

static object *sink_find(const char *key)
{
	for (size_t i = 0; i < sk.n; i++)
		if (strcmp(sk.obj[i].key, key) == 0)
			return &sk.obj[i];
	return NULL;
}

static dr_status mem_put(void *state, const char *key, const dr_source *src,
			 const dr_object_meta *meta, dr_error *err)
{
	object *o;
	unsigned char *b;

	(void)state;
	sk.puts++;
	if (sk.fail_from && sk.puts >= sk.fail_from) {
		dr_status st = dr_fail(err, sk.fail_status, sk.fail_code,
				       "the test sink refuses %s", key);

		err->retryable = sk.fail_retryable;
		return st;
	}
	b = malloc(src->size ? src->size : 1);
	assert_non_null(b);
	if (src->data)
		memcpy(b, src->data, src->size);
	else
		assert_int_equal(pread(src->fd, b, src->size, 0),
				 (ssize_t)src->size);
	o = sink_find(key);
	if (!o) {
		assert_true(sk.n < SINK_MAX);
		o = &sk.obj[sk.n++];
	}
	free(o->data);
	memset(o, 0, sizeof(*o));
	snprintf(o->key, sizeof(o->key), "%s", key);
	o->data = b;
	o->size = src->size;
	snprintf(o->ctype, sizeof(o->ctype), "%s", meta->content_type);
	snprintf(o->cache, sizeof(o->cache), "%s", meta->cache_control);
	snprintf(o->sha, sizeof(o->sha), "%s",
		 meta->sha256_hex ? meta->sha256_hex : "");
	for (size_t i = 0; i < meta->n_meta; i++) {
		if (strcmp(meta->meta_names[i], "job-id") == 0)
			snprintf(o->job, sizeof(o->job), "%s",
				 meta->meta_values[i]);
		if (strcmp(meta->meta_names[i], "model") == 0)
			snprintf(o->model, sizeof(o->model), "%s",
				 meta->meta_values[i]);
	}
	return DR_OK;
}

static dr_status mem_get(void *state, const char *key, uint64_t max,
			 void **data, size_t *len, dr_error *err)
{
	(void)state, (void)key, (void)max, (void)data, (void)len;
	return dr_fail(err, DR_ERR_UNSUPPORTED, "unsupported", "not here");
}

static dr_status mem_remove(void *state, const char *key, dr_error *err)
{
	(void)state, (void)key, (void)err;
	return DR_OK;
}

static dr_status mem_url(void *state, const char *key, char *buf, size_t n)
{
	(void)state;
	sk.urls++;
	if (sk.url_fails)
		return DR_ERR_TOO_LARGE;
	return (size_t)snprintf(buf, n, "https://cdn.test/%s", key) < n
		       ? DR_OK
		       : DR_ERR_TOO_LARGE;
}

static dr_status mem_stat(void *state, const char *key, uint64_t *size,
			  dr_error *err)
{
	object *o = sink_find(key);

	(void)state;
	sk.stats++;
	if (!o)
		return dr_fail(err, DR_ERR_NOT_FOUND, "not_found", "absent");
	*size = o->size;
	return DR_OK;
}

static void sink_reset(void)
{
	for (size_t i = 0; i < sk.n; i++)
		free(sk.obj[i].data);
	memset(&sk, 0, sizeof(sk));
}

/* Tell the sink to fail every put from the `from`th on. */
static void sink_fail(int from, dr_status st, const char *code, int retryable)
{
	sk.fail_from = from;
	sk.fail_status = st;
	sk.fail_code = code;
	sk.fail_retryable = retryable;
}

static const dr_sink_ops mem_ops = { .size = sizeof(dr_sink_ops),
				     .put = mem_put,
				     .get = mem_get,
				     .remove = mem_remove,
				     .public_url = mem_url,
				     .stat = mem_stat };
static const dr_plugin mem_desc = { .abi_version = DR_PLUGIN_ABI_VERSION,
				    .size = sizeof(dr_plugin),
				    .name = "mem",
				    .kind = DR_PLUGIN_SINK,
				    .sink = &mem_ops };

/* The job's adapter: no operation is called by the step; its download
 * allowlist and local root are read. */
static const char *const fake_hosts[] = { "127.0.0.1", NULL };
static const dr_adapter_ops fake_ops = { .size = sizeof(dr_adapter_ops),
					 .download_hosts = fake_hosts };
static const dr_plugin fake_desc = { .abi_version = DR_PLUGIN_ABI_VERSION,
				     .size = sizeof(dr_plugin),
				     .name = "fake",
				     .kind = DR_PLUGIN_ADAPTER,
				     .adapter = &fake_ops };

static dr_loaded_plugin loaded[2] = { { .desc = &mem_desc },
				      { .desc = &fake_desc } };
static struct dr_instance sinks[1] = { { .name = "mem",
					 .plugin = &loaded[0] } };
static struct dr_instance adapters[1] = { { .name = "fake",
					    .plugin = &loaded[1] } };
static dr_plugins plugins = { .loaded = loaded,
			      .n_loaded = 2,
			      .adapters = adapters,
			      .n_adapters = 1,
			      .sinks = sinks,
			      .n_sinks = 1 };
static char local_root[96]; /* the adapter's declared work folder */

/* ------------------------------------------------------------------
 * Presets, images, setup
 */

static dr_preset presets[3] = {
	{ "thumb", 16, 16, DR_FIT_INSIDE, DR_FORMAT_WEBP, 80 },
	{ "card", 32, 20, DR_FIT_COVER, DR_FORMAT_JPEG, 85 },
	{ "long", 8, 8, DR_FIT_INSIDE, DR_FORMAT_PNG, 80 }, /* name set
							       below */
};
static char long_name[560]; /* a preset name no key can hold */

/* A w x h sRGB gradient (x, y, 128), so the encoders have something to
 * encode; 0 or -1. */
static int gradient(int w, int h, VipsImage **out)
{
	VipsImage *xy = NULL, *u8 = NULL, *rgb = NULL;
	int rc = -1;

	if (vips_xyz(&xy, w, h, NULL) == 0 &&
	    vips_cast_uchar(xy, &u8, NULL) == 0 &&
	    vips_bandjoin_const1(u8, &rgb, 128, NULL) == 0 &&
	    vips_copy(rgb, out, "interpretation", VIPS_INTERPRETATION_sRGB,
		      NULL) == 0)
		rc = 0;
	g_clear_object(&xy);
	g_clear_object(&u8);
	g_clear_object(&rgb);
	return rc;
}

static int make_images(void)
{
	VipsImage *a = NULL, *b = NULL;
	int rc = -1;

	if (image_init("test_pipeline") != DR_OK)
		return -1;
	/* A gradient, so the encoders have something to encode. */
	if (gradient(PNG_W, PNG_H, &a) == 0 &&
	    vips_pngsave_buffer(a, &png, &png_len, NULL) == 0)
		rc = 0;
	g_clear_object(&a);
	g_clear_object(&b);
	if (rc == 0) {
		rc = -1;
		if (gradient(JPG_W, JPG_H, &a) == 0 &&
		    vips_jpegsave_buffer(a, &jpg, &jpg_len, NULL) == 0)
			rc = 0;
		g_clear_object(&a);
		g_clear_object(&b);
	}
	if (rc != 0)
		fprintf(stderr, "test_pipeline: libvips: %s\n",
			vips_error_buffer());
	return rc;
}

static void limits_default(void)
{
	cfg.server.sink = "mem";
	cfg.worker.max_attempts = MAX_ATTEMPTS;
	cfg.worker.retry_base = RETRY_BASE;
	cfg.worker.retry_max = RETRY_MAX;
	cfg.worker.lease = 300;
	cfg.limits.max_output_bytes = MAX_OUTPUT;
	cfg.limits.max_image_bytes = MAX_OUTPUT;
	cfg.limits.max_pixels = 1000000;
	cfg.limits.max_pages = 1;
	cfg.limits.download_timeout = 5;
	cfg.limits.connect_timeout = 1;
	cfg.limits.low_speed_limit = 100;
	cfg.limits.low_speed_time = 1;
	cfg.limits.max_redirects = 3;
	cfg.limits.download_budget = 600;
	adapters[0].local_root = local_root;
}

static int group_setup(void **state)
{
	(void)state;
	if (make_images() != 0)
		return -1;
	if (dbserver_open("test_pipeline", "drt_pipeline", &cfg, &db) != 0)
		return -1;
	memset(long_name, 'n', sizeof(long_name) - 1);
	presets[2].name = long_name;
	cfg.presets = presets;
	cfg.n_presets = 3;
	snprintf(local_root, sizeof(local_root), "%s/exec", dbsrv.dir);
	if (mkdir(local_root, 0700) != 0)
		return -1;
	fh.srv.serve = serve;
	if (loopback_start(&fh.srv, 16) != 0) {
		fprintf(stderr, "test_pipeline: file host: %s\n",
			strerror(errno));
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	loopback_stop(&fh.srv);
	sink_reset();
	g_free(png);
	g_free(jpg);
	dbserver_close(db); /* removes dbsrv.dir, local_root with it */
	return 0;
}

/* Before each case: default limits, an empty sink that works, and the
 * file host reachable. */
static int case_setup(void **state)
{
	(void)state;
	limits_default();
	sink_reset();
	setenv("DARKROOM_DOWNLOAD_ALLOW_HTTP", "1", 1);
	setenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE", "1", 1);
	unsetenv("DARKROOM_DOWNLOAD_HOSTS");
	return 0;
}

/* ------------------------------------------------------------------
 * Jobs
 */

/* An output of a job to make: kind "file" or "text"; source_kind "url",
 * "data", "path" or NULL (then the prefix decides). */
typedef struct out_spec {
	const char *kind;
	const char *source;
	const char *source_kind;
	const char *text;
} out_spec;

/* An output fetched from the file host's `path`, and a text output. */
static out_spec url_out(const char *path)
{
	return (out_spec){ "file", url(path), "url", NULL };
}

static out_spec text_out(const char *text)
{
	return (out_spec){ "text", NULL, NULL, text };
}

static char model_name[] = "m";

/* Make a job in persisting asking for `renditions` (a JSON list) with
 * outputs `outs`, and the claim a worker holds on it. */
static void make_job(const char *renditions, const out_spec *outs, size_t n,
		     dr_claim *c)
{
	jobfix f = { .status = "persisting",
		     .step = "persist",
		     .lease_version = FENCE,
		     .prediction_id = NULL };
	dr_error err;

	memset(c, 0, sizeof(*c));
	jobfix_make(db, &f, c->id);
	assert_ok(db_exec(db, "UPDATE jobs SET renditions = ? WHERE id = ?",
			  NULL, &err,
			  DB_ARGS(DB_STR(renditions), DB_STR(c->id))),
		  err);
	for (size_t i = 0; i < n; i++)
		assert_ok(db_exec(db,
				  "INSERT INTO outputs (job_id, idx, kind,"
				  " source, source_kind, text, state,"
				  " created_at) VALUES (?, ?, ?, ?, ?, ?,"
				  " 'pending', NOW(6))",
				  NULL, &err,
				  DB_ARGS(DB_STR(c->id), DB_INT((int64_t)i),
					  DB_STR(outs[i].kind),
					  DB_STR(outs[i].source),
					  DB_STR(outs[i].source_kind),
					  DB_STR(outs[i].text))),
			  err);
	c->lease_version = FENCE;
	snprintf(c->status, sizeof(c->status), "persisting");
	snprintf(c->step, sizeof(c->step), "persist");
	snprintf(c->adapter, sizeof(c->adapter), "fake");
	snprintf(c->callback_state, sizeof(c->callback_state), "none");
	c->model = model_name;
}

static dr_step_outcome persist(dr_claim *c)
{
	dr_step_ctx x = {
		.db = db, .cfg = &cfg, .plugins = &plugins, .claim = c
	};

	return pipeline_persist(&x);
}

/* One output of `url` and the step run on it. */
static dr_step_outcome persist_url(const char *u, dr_claim *c)
{
	out_spec o = { "file", u, "url", NULL };

	make_job("[\"thumb\"]", &o, 1, c);
	return persist(c);
}

static const char *kind_name(dr_step_kind k)
{
	return k == DR_STEP_DONE    ? "DONE"
	       : k == DR_STEP_RETRY ? "RETRY"
				    : "FAIL";
}

/* Assert the outcome: its kind, and for RETRY and FAIL its sub-step and
 * code, and that the try counts. */
static void assert_outcome(const dr_step_outcome *o, dr_step_kind kind,
			   const char *step, const char *code)
{
	if (o->kind != kind)
		fail_msg("outcome %s (step %s, code %s: %s), want %s %s %s",
			 kind_name(o->kind), o->step, o->why.code,
			 o->why.message, kind_name(kind), step ? step : "",
			 code ? code : "");
	if (kind == DR_STEP_DONE)
		return;
	assert_string_equal(o->step, step);
	assert_string_equal(o->why.code, code);
	/* A retried try counts toward max_attempts (the engine counted
	 * every try of persist before running it; see test_engine_records
	 * for what it records). */
	if (kind == DR_STEP_RETRY)
		assert_int_equal(o->count_attempt, 1);
	assert_int_equal(o->forget_submit, 0);
	assert_true(o->why.message[0] != '\0');
}

/* A retry after the step's backoff for its first try: half to all of
 * RETRY_BASE. */
static void assert_backoff_delay(const dr_step_outcome *o)
{
	if (o->delay < RETRY_BASE / 2 - 0.001 || o->delay > RETRY_BASE)
		fail_msg("delay %.1f s, want %.0f to %.0f s", o->delay,
			 RETRY_BASE / 2, RETRY_BASE);
}

static long count(const char *sql, const char *id)
{
	return jobfix_count(db, sql, id);
}

static long outputs_in(const char *id, const char *state)
{
	char sql[160];

	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(*) FROM outputs WHERE job_id = ? AND state ="
		 " '%s'",
		 state);
	return count(sql, id);
}

static long renditions_of(const char *id)
{
	return count("SELECT COUNT(*) FROM renditions r JOIN outputs o ON"
		     " o.id = r.output_id WHERE o.job_id = ?",
		     id);
}

/* Nothing indexed and nothing moved: the job is still persisting under
 * the claim's lease, its outputs pending, no rendition row, no event. */
static void assert_untouched(const dr_claim *c, long pending)
{
	assert_col(db, c->id, "status", "persisting");
	assert_col(db, c->id, "step", "persist");
	assert_col(db, c->id, "lease_owner", "test");
	assert_col(db, c->id, "error_code", "(null)");
	assert_int_equal(outputs_in(c->id, "pending"), pending);
	assert_int_equal(outputs_in(c->id, "stored"), 0);
	assert_int_equal(renditions_of(c->id), 0);
	assert_int_equal(jobfix_events(db, c->id), 0);
}

/* Column `col` of output `idx` of job `id` (malloc). */
static char *out_col(const char *id, int idx, const char *col)
{
	char sql[200];
	dr_db_rows *rows = NULL;
	dr_error err;
	char *v;

	snprintf(sql, sizeof(sql),
		 "SELECT %s FROM outputs WHERE job_id = ? AND idx = ?", col);
	assert_ok(db_query_uncached(db, sql, &rows, &err,
				    DB_ARGS(DB_STR(id), DB_INT(idx))),
		  err);
	assert_int_equal(rows->n_rows, 1);
	v = strdup(db_cell(rows, 0, 0) ? db_cell(rows, 0, 0) : "(null)");
	db_rows_free(rows);
	return v;
}

#define assert_out(id, idx, col, want)                                         \
	do {                                                                   \
		char *v_ = out_col((id), (idx), (col));                        \
		assert_string_equal(v_, (want));                               \
		free(v_);                                                      \
	} while (0)

/* Fail unless the job object of `id`, rendered with the test sink making
 * its URLs (from the stored keys: rows keep no URL), shows `url`. */
static void assert_url_shown(const char *id, const char *url)
{
	char want[300];
	dr_error err;
	dr_buf b;

	dr_buf_init(&b, 1u << 20);
	assert_ok(jobs_render(db, &cfg, &sinks[0], id, &b, &err), err);
	snprintf(want, sizeof(want), "\"url\":\"%s\"", url);
	if (!strstr(b.data, want))
		fail_msg("job %s shows no %s: %.2000s", id, want, b.data);
	dr_buf_free(&b);
}

/* Check that output `idx` of job `id` is stored as the bytes `data`:
 * its row (key, no URL, type, size, SHA-256), the URL the job object
 * shows for it, and the sink's object under its key, byte for byte,
 * with the headers every object carries. */
static void assert_stored(const char *id, int idx, const void *data, size_t len,
			  const char *kind, const char *mime, const char *ext)
{
	char sha[DR_SHA256_HEX_LEN + 1], key[200], u[260], n[32];
	object *o;

	digest_sha256_hex(data, len, sha);
	snprintf(key, sizeof(key), "%.2s/%s.%s", sha, sha, ext);
	snprintf(u, sizeof(u), "https://cdn.test/%s", key);
	snprintf(n, sizeof(n), "%zu", len);
	assert_out(id, idx, "state", "stored");
	assert_out(id, idx, "kind", kind);
	assert_out(id, idx, "storage_key", key);
	assert_out(id, idx, "url", "(null)");
	assert_url_shown(id, u);
	assert_out(id, idx, "content_type", mime);
	assert_out(id, idx, "bytes", n);
	assert_out(id, idx, "sha256", sha);
	o = sink_find(key);
	if (!o)
		fail_msg("the sink has no object %s", key);
	assert_int_equal(o->size, len);
	assert_memory_equal(o->data, data, len);
	assert_string_equal(o->ctype, mime);
	assert_string_equal(o->cache, DR_CACHE_CONTROL);
	assert_string_equal(o->sha, sha);
	assert_string_equal(o->model, "m");
}

/* The engine's view: run the claim through engine_run(), which counts
 * the try, runs the step and records its outcome. */
static void engine_persist(dr_claim *c)
{
	dr_engine e = { .cfg = &cfg, .plugins = &plugins, .db = db };

	snprintf(e.owner, sizeof(e.owner), "test");
	engine_run(&e, c);
}

/* ------------------------------------------------------------------
 * Cases: stored
 */

/* Every kind of source at once: a PNG and a JPEG by URL, a PNG served as
 * octets, a text, a data: URI and a local file of the adapter's job
 * folder. DONE; every output stored byte for byte with its row, every
 * image with its renditions (rows and objects), the job succeeded with
 * its event, one index transaction. */
static void test_all_stored(void **state)
{
	char dir[160], path[200];
	dr_step_outcome o;
	dr_claim c;
	gchar *enc, *data_uri;
	char *ev;
	FILE *f;
	out_spec outs[6];

	(void)state;
	enc = g_base64_encode(png, png_len);
	data_uri = g_strdup_printf("data:image/png;base64,%s", enc);
	g_free(enc);

	outs[0] = url_out("/img.png");
	outs[1] = url_out("/img.jpg");
	outs[2] = text_out("a caption\n");
	outs[3] = (out_spec){ "file", data_uri, "data", NULL };
	outs[4] = url_out("/png-as-octets");
	outs[5] = (out_spec){ "file", path, "path", NULL };
	/* The local file's path needs the job id: make the job first with
	 * a placeholder, then point the row at the file. */
	snprintf(path, sizeof(path), "/placeholder");
	make_job("[\"thumb\", \"card\", \"gone\"]", outs, 6, &c);
	snprintf(dir, sizeof(dir), "%s/%s", local_root, c.id);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/out.jpg", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(jpg, 1, jpg_len, f), jpg_len);
	fclose(f);
	{
		dr_error err;

		assert_ok(db_exec(db,
				  "UPDATE outputs SET source = ? WHERE job_id"
				  " = ? AND idx = 5",
				  NULL, &err,
				  DB_ARGS(DB_STR(path), DB_STR(c.id))),
			  err);
	}

	o = persist(&c);
	assert_outcome(&o, DR_STEP_DONE, NULL, NULL);

	assert_col(db, c.id, "status", "succeeded");
	assert_col(db, c.id, "step", "done");
	assert_col(db, c.id, "error_code", "(null)");
	ev = jobfix_last_event(db, c.id);
	assert_string_equal(ev, "status persisting>succeeded -");
	free(ev);
	assert_int_equal(outputs_in(c.id, "pending"), 0);

	assert_stored(c.id, 0, png, png_len, "image", "image/png", "png");
	assert_stored(c.id, 1, jpg, jpg_len, "image", "image/jpeg", "jpg");
	assert_stored(c.id, 2, "a caption\n", 10, "text",
		      "text/plain; charset=utf-8", "txt");
	assert_stored(c.id, 3, png, png_len, "image", "image/png", "png");
	assert_stored(c.id, 4, png, png_len, "image", "image/png", "png");
	assert_stored(c.id, 5, jpg, jpg_len, "image", "image/jpeg", "jpg");
	assert_out(c.id, 0, "width", "64");
	assert_out(c.id, 0, "height", "48");
	assert_out(c.id, 0, "format", "png");
	assert_out(c.id, 1, "width", "40");
	assert_out(c.id, 1, "format", "jpeg");
	assert_out(c.id, 0, "blurhash IS NOT NULL AND phash IS NOT NULL", "1");
	assert_out(c.id, 2, "width", "(null)");

	/* Two presets (the removed one skipped) for each of the five
	 * images; the text has none. */
	assert_int_equal(renditions_of(c.id), 10);
	assert_int_equal(count("SELECT COUNT(*) FROM renditions r JOIN"
			       " outputs o ON o.id = r.output_id WHERE"
			       " o.job_id = ? AND o.idx = 2",
			       c.id),
			 0);
	{
		char *sha = out_col(c.id, 0, "sha256");
		char key[DR_KEY_MAX];
		object *t;

		dr_error kerr;

		assert_int_equal(
			rendition_key(sha, &presets[0], "webp", key, &kerr),
			DR_OK);
		assert_non_null(strstr(key, "/thumb."));
		t = sink_find(key);
		if (!t)
			fail_msg("no thumb rendition %s in the sink", key);
		assert_string_equal(t->ctype, "image/webp");
		assert_string_equal(t->cache, DR_CACHE_CONTROL);
		assert_string_equal(t->job, c.id);
		assert_memory_equal(t->data, "RIFF", 4);
		assert_int_equal(count("SELECT COUNT(*) FROM renditions r JOIN"
				       " outputs o ON o.id = r.output_id"
				       " WHERE o.job_id = ? AND o.idx = 0"
				       " AND r.name = 'thumb' AND r.width = 16"
				       " AND r.height = 12 AND"
				       " r.content_type = 'image/webp'",
				       c.id),
				 1);
		assert_int_equal(
			rendition_key(sha, &presets[1], "jpg", key, &kerr),
			DR_OK);
		t = sink_find(key);
		if (!t)
			fail_msg("no card rendition %s in the sink", key);
		assert_memory_equal(t->data, "\xff\xd8\xff", 3);
		free(sha);
	}
	/* Objects: 2 distinct images x (original + 2 renditions) + text. */
	assert_int_equal(sk.n, 7);
	g_free(data_uri);
}

/* A job whose files the sink already holds (an earlier job stored them):
 * nothing is put again, every row is indexed all the same. */
static void test_stored_before(void **state)
{
	out_spec outs[2] = { url_out("/img.png"), text_out("same text") };
	dr_step_outcome o;
	dr_claim c;
	int puts;

	(void)state;
	make_job("[\"thumb\"]", outs, 2, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_DONE, NULL, NULL);
	puts = sk.puts;
	assert_int_equal(puts, 3);

	make_job("[\"thumb\"]", outs, 2, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_DONE, NULL, NULL);
	assert_int_equal(sk.puts, puts);
	assert_col(db, c.id, "status", "succeeded");
	assert_int_equal(outputs_in(c.id, "stored"), 2);
	assert_int_equal(renditions_of(c.id), 1);
	assert_stored(c.id, 0, png, png_len, "image", "image/png", "png");
}

/* The thumb rendition key of output 0 of job `id`, malloc'd. */
static char *thumb_key(const char *id)
{
	dr_db_rows *rows = NULL;
	dr_error err;
	char *k;

	assert_ok(db_query(db,
			   "SELECT r.storage_key FROM renditions r JOIN"
			   " outputs o ON o.id = r.output_id WHERE"
			   " o.job_id = ? AND o.idx = 0 AND r.name = 'thumb'",
			   &rows, &err, DB_ARGS(DB_STR(id))),
		  err);
	assert_int_equal(rows->n_rows, 1);
	k = strdup(db_cell(rows, 0, 0));
	db_rows_free(rows);
	return k;
}

/* Content stored before, with the thumb preset changed since: the key
 * names the settings, so the new thumb goes under a new key (put, not
 * skipped as "stored"), and the object under the old key keeps its
 * bytes. */
static void test_changed_preset_new_key(void **state)
{
	out_spec outs[1] = { url_out("/img.png") };
	dr_step_outcome o;
	dr_claim c;
	char *k1, *k2;
	object *t1, *t2;
	unsigned char *old;
	uint64_t old_size;
	long refs1, orig1;
	int puts;

	(void)state;
	make_job("[\"thumb\"]", outs, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_DONE, NULL, NULL);
	k1 = thumb_key(c.id);
	t1 = sink_find(k1);
	assert_non_null(t1);
	old_size = t1->size;
	old = malloc(old_size);
	memcpy(old, t1->data, old_size);
	puts = sk.puts;
	refs1 = count("SELECT refs FROM objects WHERE storage_key = ?", k1);
	orig1 = count("SELECT o.refs FROM objects o JOIN outputs u ON"
		      " u.storage_key = o.storage_key WHERE u.job_id = ?",
		      c.id);
	assert_true(refs1 >= 1);

	presets[0].quality = 20;
	make_job("[\"thumb\"]", outs, 1, &c);
	o = persist(&c);
	presets[0].quality = 80;
	assert_outcome(&o, DR_STEP_DONE, NULL, NULL);
	k2 = thumb_key(c.id);
	assert_string_not_equal(k1, k2);
	assert_int_equal(sk.puts, puts + 1); /* the new thumb only */
	t2 = sink_find(k2);
	assert_non_null(t2);
	t1 = sink_find(k1);
	assert_non_null(t1);
	assert_int_equal(t1->size, old_size);
	assert_memory_equal(t1->data, old, old_size);
	assert_true(t2->size != old_size ||
		    memcmp(t2->data, old, old_size) != 0);
	/* Each key counted once per row using it (objects.h): the new
	 * thumb by this job alone, the old one as before, the original (the
	 * same image as earlier cases) once more. */
	assert_int_equal(
		count("SELECT refs FROM objects WHERE storage_key = ?", k1),
		refs1);
	assert_int_equal(
		count("SELECT refs FROM objects WHERE storage_key = ?", k2), 1);
	assert_int_equal(count("SELECT o.refs FROM objects o JOIN outputs u ON"
			       " u.storage_key = o.storage_key WHERE"
			       " u.job_id = ?",
			       c.id),
			 orig1 + 1);
	free(old);
	free(k1);
	free(k2);
}

/* A job with no pending output (all stored by an earlier try, or none
 * at all) succeeds at once, writing nothing but its end. */
static void test_nothing_pending(void **state)
{
	dr_step_outcome o;
	dr_claim c;

	(void)state;
	make_job("[]", NULL, 0, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_DONE, NULL, NULL);
	assert_col(db, c.id, "status", "succeeded");
	assert_int_equal(sk.puts, 0);
}

/* ------------------------------------------------------------------
 * Cases: download failures
 */

/* 404 and 410: the provider deleted the output; final, no retry. */
static void test_output_expired(void **state)
{
	const char *paths[] = { "/404", "/410" };

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		dr_claim c;
		dr_step_outcome o = persist_url(url(paths[i]), &c);

		assert_outcome(&o, DR_STEP_FAIL, "download", "output_expired");
		assert_untouched(&c, 1);
	}
	assert_int_equal(sk.puts, 0);
}

/* Another 4xx: download_failed, final. */
static void test_client_error(void **state)
{
	dr_claim c;
	dr_step_outcome o;

	(void)state;
	o = persist_url(url("/403"), &c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "download_failed");
	assert_untouched(&c, 1);
}

/* 500: retried after the step's backoff. 429: retried after its
 * Retry-After. Both count; nothing is indexed; the budget's first-try
 * mark is written (the try failed). */
static void test_server_errors_retried(void **state)
{
	dr_claim c;
	dr_step_outcome o;

	(void)state;
	o = persist_url(url("/500"), &c);
	assert_outcome(&o, DR_STEP_RETRY, "download", "download_failed");
	assert_backoff_delay(&o);
	assert_untouched(&c, 1);
	assert_out(c.id, 0, "fetch_started_at IS NOT NULL", "1");
	assert_out(c.id, 0, "slow_fetches", "0");

	o = persist_url(url("/429"), &c);
	assert_outcome(&o, DR_STEP_RETRY, "download", "download_failed");
	assert_true(o.why.status == DR_ERR_RATE_LIMITED);
	if (o.delay < RETRY_AFTER - 0.001 || o.delay > RETRY_AFTER + 0.001)
		fail_msg("429: delay %.3f s, want the Retry-After %d s",
			 o.delay, RETRY_AFTER);
	assert_untouched(&c, 1);
}

/* A body over max_output_bytes, declared or chunked: output_too_large,
 * final. */
static void test_output_too_large(void **state)
{
	const char *paths[] = { "/big", "/big-chunked" };

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		dr_claim c;
		dr_step_outcome o = persist_url(url(paths[i]), &c);

		assert_outcome(&o, DR_STEP_FAIL, "download",
			       "output_too_large");
		assert_untouched(&c, 1);
	}
	assert_int_equal(sk.puts, 0);
}

/* A body that drips under the low-speed limit: download_too_slow,
 * retried once (counted in the row), then the job fails. */
static void test_too_slow(void **state)
{
	dr_claim c;
	dr_step_outcome o;
	double t0 = dbserver_now();

	(void)state;
	o = persist_url(url("/drip"), &c);
	assert_outcome(&o, DR_STEP_RETRY, "download", "download_too_slow");
	assert_backoff_delay(&o);
	assert_untouched(&c, 1);
	assert_out(c.id, 0, "slow_fetches", "1");
	assert_out(c.id, 0, "fetch_started_at IS NOT NULL", "1");

	/* The next try (same lease, as a worker would hold a new one). */
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "download_too_slow");
	assert_non_null(strstr(o.why.message, "abandoned for low speed 2"));
	assert_untouched(&c, 1);
	if (dbserver_now() - t0 > 5)
		fail_msg("two low-speed aborts took %.1f s",
			 dbserver_now() - t0);
}

/* A body that never comes, within low_speed_time: the try's
 * download_timeout ends it, retried. */
static void test_timeout(void **state)
{
	dr_claim c;
	dr_step_outcome o;
	double t0;

	(void)state;
	cfg.limits.download_timeout = 1;
	cfg.limits.low_speed_time = 5;
	t0 = dbserver_now();
	o = persist_url(url("/stall"), &c);
	if (dbserver_now() - t0 > 3)
		fail_msg("a 1 s download_timeout took %.1f s",
			 dbserver_now() - t0);
	assert_outcome(&o, DR_STEP_RETRY, "download", "download_timeout");
	assert_untouched(&c, 1);
	/* It ran a second: its budget mark is there. */
	assert_out(c.id, 0, "fetch_started_at IS NOT NULL", "1");
}

/* An output whose download budget is spent fails at once, without a
 * request; one whose next try would start after the budget fails
 * instead of retrying. */
static void test_budget(void **state)
{
	out_spec o1 = url_out("/img.png");
	dr_claim c;
	dr_step_outcome o;
	dr_error err;
	int before;

	(void)state;
	make_job("[]", &o1, 1, &c);
	assert_ok(db_exec(db,
			  "UPDATE outputs SET fetch_started_at = NOW(6) -"
			  " INTERVAL 601 SECOND WHERE job_id = ?",
			  NULL, &err, DB_ARGS(DB_STR(c.id))),
		  err);
	before = fh_requests();
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "download_timeout");
	assert_int_equal(fh_requests(), before);
	assert_untouched(&c, 1);

	/* A 500 with 3 s of budget and a backoff of 50 s or more. */
	cfg.limits.download_budget = 3;
	o = persist_url(url("/500"), &c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "download_failed");
	assert_non_null(strstr(o.why.message, "download budget"));
	assert_untouched(&c, 1);
}

/* Nothing listens: download_network, retried. */
static void test_connection_refused(void **state)
{
	char u[128];
	dr_claim c;
	dr_step_outcome o;
	int port, fd = loopback_listen(1, &port);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/img.png", port);
	o = persist_url(u, &c);
	assert_outcome(&o, DR_STEP_RETRY, "download", "download_network");
	assert_untouched(&c, 1);
}

/* URLs the policy refuses, before any request: http without
 * ALLOW_HTTP, a host off the adapter's allowlist (also as a redirect's
 * target), a file: URL. Loopback without ALLOW_PRIVATE:
 * address_not_allowed, before any connection. All final. */
static void test_refused(void **state)
{
	char u[128];
	dr_claim c;
	dr_step_outcome o;
	int before = fh_requests();

	(void)state;
	setenv("DARKROOM_DOWNLOAD_ALLOW_HTTP", "0", 1);
	o = persist_url(url("/img.png"), &c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "url_not_allowed");
	assert_untouched(&c, 1);
	setenv("DARKROOM_DOWNLOAD_ALLOW_HTTP", "1", 1);

	snprintf(u, sizeof(u), "http://localhost:%d/img.png", fh.srv.port);
	o = persist_url(u, &c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "url_not_allowed");
	assert_untouched(&c, 1);

	o = persist_url("file:///etc/passwd", &c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "url_not_allowed");
	assert_untouched(&c, 1);
	assert_int_equal(fh_requests(), before);

	o = persist_url(url("/redirect"), &c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "url_not_allowed");
	assert_untouched(&c, 1);
	assert_int_equal(fh_requests(), before + 1);

	setenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE", "0", 1);
	o = persist_url(url("/img.png"), &c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "address_not_allowed");
	assert_untouched(&c, 1);
	assert_int_equal(fh_requests(), before + 1);
	assert_int_equal(sk.puts, 0);
}

/* Bad data: URIs and local files: bad_data_uri, output_too_large,
 * local_file_not_allowed (outside the job's folder; an adapter without
 * a local root), output_missing. All final at download. */
static void test_bad_sources(void **state)
{
	char big[MAX_OUTPUT * 2], other[200];
	dr_claim c;
	dr_step_outcome o;
	out_spec s;

	(void)state;
	s = (out_spec){ "file", "data:image/png;base64,%%%%", "data", NULL };
	make_job("[]", &s, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "bad_data_uri");
	assert_untouched(&c, 1);

	/* Percent-encoded data: over max_output_bytes once decoded. */
	memcpy(big, "data:,", 6);
	memset(big + 6, 'a', sizeof(big) - 7);
	big[sizeof(big) - 1] = '\0';
	s = (out_spec){ "file", big, "data", NULL };
	make_job("[]", &s, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "output_too_large");
	assert_untouched(&c, 1);

	s = (out_spec){ "file", "/etc/passwd", "path", NULL };
	make_job("[]", &s, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "local_file_not_allowed");
	assert_untouched(&c, 1);

	/* Inside the root, but in another job's folder. */
	make_job("[]", NULL, 0, &c);
	snprintf(other, sizeof(other), "%s/%s/none.png", local_root, c.id);
	s = (out_spec){ "file", other, "path", NULL };
	make_job("[]", &s, 1, &c); /* another job: not its folder */
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "local_file_not_allowed");
	assert_untouched(&c, 1);
	{
		char dir[160];

		make_job("[]", NULL, 0, &c);
		snprintf(dir, sizeof(dir), "%s/%s", local_root, c.id);
		assert_int_equal(mkdir(dir, 0700), 0);
		snprintf(other, sizeof(other), "%s/none.png", dir);
		s = (out_spec){ "file", other, "path", NULL };
		{
			dr_error err;

			assert_ok(db_exec(db,
					  "INSERT INTO outputs (job_id, idx,"
					  " kind, source, source_kind, state,"
					  " created_at) VALUES (?, 0, 'file',"
					  " ?, 'path', 'pending', NOW(6))",
					  NULL, &err,
					  DB_ARGS(DB_STR(c.id), DB_STR(other))),
				  err);
		}
		o = persist(&c);
		assert_outcome(&o, DR_STEP_FAIL, "download", "output_missing");
		assert_untouched(&c, 1);

		/* The same path from an adapter that declared no root. */
		adapters[0].local_root = NULL;
		o = persist(&c);
		assert_outcome(&o, DR_STEP_FAIL, "download",
			       "local_file_not_allowed");
		assert_untouched(&c, 1);
	}
	assert_int_equal(sk.puts, 0);
}

/* What the bytes are decides, not what the server says: HTML served as
 * image/png is refused (unsupported_type, at download), an empty body
 * is empty_output; a truncated PNG is image_corrupt and an image over
 * the pixel or byte limits image_too_large, at render. All final, and
 * nothing is stored for them. */
static void test_bad_files(void **state)
{
	dr_claim c;
	dr_step_outcome o;

	(void)state;
	o = persist_url(url("/html-as-png"), &c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "unsupported_type");
	assert_untouched(&c, 1);

	o = persist_url(url("/empty"), &c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "empty_output");
	assert_untouched(&c, 1);

	o = persist_url(url("/truncated.png"), &c);
	assert_outcome(&o, DR_STEP_FAIL, "render", "image_corrupt");
	assert_untouched(&c, 1);

	cfg.limits.max_pixels = PNG_W * PNG_H - 1;
	o = persist_url(url("/img.png"), &c);
	assert_outcome(&o, DR_STEP_FAIL, "render", "image_too_large");
	assert_untouched(&c, 1);

	cfg.limits.max_pixels = 1000000;
	cfg.limits.max_image_bytes = png_len - 1;
	o = persist_url(url("/img.png"), &c);
	assert_outcome(&o, DR_STEP_FAIL, "render", "image_too_large");
	assert_untouched(&c, 1);
	assert_int_equal(sk.puts, 0);
}

/* An output row with no source at all: bad_output, final, named at
 * download even after a text output stored before it. */
static void test_no_source(void **state)
{
	out_spec outs[2] = { text_out("first"), { "file", NULL, NULL, NULL } };
	dr_claim c;
	dr_step_outcome o;

	(void)state;
	make_job("[]", outs, 2, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "download", "bad_output");
	assert_untouched(&c, 2);
}

/* ------------------------------------------------------------------
 * Cases: the sink
 */

/* A sink that is down: sink_unavailable, retried (DR_ERR_UNAVAILABLE
 * even unmarked), whichever object fails: the original, a rendition,
 * a text. Nothing indexed. */
static void test_sink_unavailable(void **state)
{
	out_spec img = url_out("/img.png"), txt = text_out("t");
	dr_claim c;
	dr_step_outcome o;

	(void)state;
	for (int from = 1; from <= 3; from++) {
		sink_reset();
		sink_fail(from, DR_ERR_UNAVAILABLE, "sink_unavailable", 0);
		make_job("[\"thumb\", \"card\"]", &img, 1, &c);
		o = persist(&c);
		assert_outcome(&o, DR_STEP_RETRY, "upload", "sink_unavailable");
		assert_backoff_delay(&o);
		assert_untouched(&c, 1);
		assert_int_equal(sk.puts, from);
	}
	sink_reset();
	sink_fail(1, DR_ERR_UNAVAILABLE, "sink_unavailable", 0);
	make_job("[]", &txt, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_RETRY, "upload", "sink_unavailable");
	assert_untouched(&c, 1);
}

/* A full sink (fs: ENOSPC, retryable) is retried; one that answers a
 * final error (sink_auth, sink_io) fails the job at upload. */
static void test_sink_errors(void **state)
{
	out_spec img = url_out("/img.png");
	dr_claim c;
	dr_step_outcome o;

	(void)state;
	sink_fail(1, DR_ERR_IO, "sink_full", 1);
	make_job("[\"thumb\"]", &img, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_RETRY, "upload", "sink_full");
	assert_untouched(&c, 1);

	sink_fail(1, DR_ERR_AUTH, "sink_auth", 0);
	make_job("[\"thumb\"]", &img, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "upload", "sink_auth");
	assert_untouched(&c, 1);

	sink_fail(1, DR_ERR_IO, "sink_io", 0);
	make_job("[]", &img, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "upload", "sink_io");
	assert_untouched(&c, 1);
}

/* No active sink: sink_missing, final, before anything is fetched. */
static void test_sink_missing(void **state)
{
	out_spec img = url_out("/img.png");
	dr_claim c;
	dr_step_outcome o;
	int before = fh_requests();

	(void)state;
	cfg.server.sink = "elsewhere";
	make_job("[]", &img, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "upload", "sink_missing");
	assert_int_equal(fh_requests(), before);
	assert_untouched(&c, 1);
}

/* A rendition key too long for the sink (key_too_long) and a public URL
 * that does not fit (url_too_long): final, at upload. */
static void test_key_and_url_too_long(void **state)
{
	char list[700];
	out_spec img = url_out("/img.png"), txt = text_out("t");
	dr_claim c;
	dr_step_outcome o;

	(void)state;
	snprintf(list, sizeof(list), "[\"%s\"]", long_name);
	make_job(list, &img, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "upload", "key_too_long");
	assert_untouched(&c, 1);

	sk.url_fails = 1;
	make_job("[]", &txt, 1, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_FAIL, "upload", "url_too_long");
	assert_untouched(&c, 1);
}

/* ------------------------------------------------------------------
 * Cases: partial failures, leases, the engine's records
 */

/* The first output stored in the sink, the second failing: nothing is
 * indexed (no row stored, no rendition row); the next try stores both
 * and the first output's objects are the same. */
static void test_partial_then_whole(void **state)
{
	out_spec outs[2] = { url_out("/img.png"), url_out("/500") };
	dr_claim c;
	dr_step_outcome o;
	dr_error err;

	(void)state;
	make_job("[\"thumb\"]", outs, 2, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_RETRY, "download", "download_failed");
	assert_untouched(&c, 2);
	assert_int_equal(sk.n, 2); /* the PNG and its thumb, stored */

	assert_ok(db_exec(db,
			  "UPDATE outputs SET source = ? WHERE job_id = ?"
			  " AND idx = 1",
			  NULL, &err,
			  DB_ARGS(DB_STR(url("/img.jpg")), DB_STR(c.id))),
		  err);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_DONE, NULL, NULL);
	assert_col(db, c.id, "status", "succeeded");
	assert_int_equal(renditions_of(c.id), 2);
	assert_stored(c.id, 0, png, png_len, "image", "image/png", "png");
	assert_stored(c.id, 1, jpg, jpg_len, "image", "image/jpeg", "jpg");
	assert_int_equal(sk.n, 4);
}

/* A claim whose lease was lost (another worker holds the job): the step
 * ends DONE and writes nothing, whether the loss is found at the index
 * transaction or when extending the lease between outputs. */
static void test_stale_lease(void **state)
{
	out_spec outs[2] = { url_out("/img.png"), text_out("t") };
	out_spec outs2[2] = { url_out("/img.png"), text_out("t2") };
	dr_claim c;
	dr_step_outcome o;

	(void)state;
	make_job("[\"thumb\"]", outs, 2, &c);
	c.lease_version = FENCE - 1;
	o = persist(&c);
	assert_outcome(&o, DR_STEP_DONE, NULL, NULL);
	assert_untouched(&c, 2);
	assert_col(db, c.id, "lease_version", "3");

	assert_int_equal(sk.puts, 3); /* the PNG, its thumb, the text */

	/* A lease so short it is extended after every output: the loss is
	 * found after the first output (already in the sink), and the
	 * second (new text) is not even stored. */
	cfg.worker.lease = 0.001;
	make_job("[\"thumb\"]", outs2, 2, &c);
	c.lease_version = FENCE - 1;
	o = persist(&c);
	assert_outcome(&o, DR_STEP_DONE, NULL, NULL);
	assert_untouched(&c, 2);
	assert_int_equal(sk.puts, 3);

	/* The same with the lease held: extended, and stored. */
	make_job("[\"thumb\"]", outs2, 2, &c);
	o = persist(&c);
	assert_outcome(&o, DR_STEP_DONE, NULL, NULL);
	assert_col(db, c.id, "status", "succeeded");
}

/* Through the engine: a retried try is counted and the job stays
 * persisting, due later, with a retry_scheduled event; the last try
 * allowed fails the job with the step and code; a final error fails it
 * at once. */
static void test_engine_records(void **state)
{
	out_spec img = url_out("/500"), gone = url_out("/410");
	dr_claim c;
	char *ev;

	(void)state;
	make_job("[]", &img, 1, &c);
	engine_persist(&c);
	assert_col(db, c.id, "status", "persisting");
	assert_col(db, c.id, "step", "persist");
	assert_col(db, c.id, "attempts", "1");
	assert_col(db, c.id, "lease_owner", "(null)");
	assert_col(db, c.id, "run_at > NOW(6) + INTERVAL 40 SECOND", "1");
	assert_int_equal(outputs_in(c.id, "pending"), 1);
	ev = jobfix_last_event(db, c.id);
	assert_non_null(strstr(ev, "retry_scheduled"));
	assert_non_null(strstr(ev, "download_failed"));
	free(ev);

	/* The last allowed try. */
	make_job("[]", &img, 1, &c);
	{
		dr_error err;

		assert_ok(db_exec(db,
				  "UPDATE jobs SET attempts = ? WHERE id = ?",
				  NULL, &err,
				  DB_ARGS(DB_INT(MAX_ATTEMPTS - 1),
					  DB_STR(c.id))),
			  err);
	}
	c.attempts = MAX_ATTEMPTS - 1;
	engine_persist(&c);
	assert_col(db, c.id, "status", "failed");
	assert_col(db, c.id, "attempts", "4");
	assert_col(db, c.id, "error_step", "download");
	assert_col(db, c.id, "error_code", "download_failed");

	make_job("[]", &gone, 1, &c);
	engine_persist(&c);
	assert_col(db, c.id, "status", "failed");
	assert_col(db, c.id, "attempts", "1");
	assert_col(db, c.id, "error_step", "download");
	assert_col(db, c.id, "error_code", "output_expired");
	assert_int_equal(outputs_in(c.id, "pending"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_all_stored, case_setup),
		cmocka_unit_test_setup(test_stored_before, case_setup),
		cmocka_unit_test_setup(test_changed_preset_new_key, case_setup),
		cmocka_unit_test_setup(test_nothing_pending, case_setup),
		cmocka_unit_test_setup(test_output_expired, case_setup),
		cmocka_unit_test_setup(test_client_error, case_setup),
		cmocka_unit_test_setup(test_server_errors_retried, case_setup),
		cmocka_unit_test_setup(test_output_too_large, case_setup),
		cmocka_unit_test_setup(test_too_slow, case_setup),
		cmocka_unit_test_setup(test_timeout, case_setup),
		cmocka_unit_test_setup(test_budget, case_setup),
		cmocka_unit_test_setup(test_connection_refused, case_setup),
		cmocka_unit_test_setup(test_refused, case_setup),
		cmocka_unit_test_setup(test_bad_sources, case_setup),
		cmocka_unit_test_setup(test_bad_files, case_setup),
		cmocka_unit_test_setup(test_no_source, case_setup),
		cmocka_unit_test_setup(test_sink_unavailable, case_setup),
		cmocka_unit_test_setup(test_sink_errors, case_setup),
		cmocka_unit_test_setup(test_sink_missing, case_setup),
		cmocka_unit_test_setup(test_key_and_url_too_long, case_setup),
		cmocka_unit_test_setup(test_partial_then_whole, case_setup),
		cmocka_unit_test_setup(test_stale_lease, case_setup),
		cmocka_unit_test_setup(test_engine_records, case_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
