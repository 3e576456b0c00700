/*
 * mock_host.c - a stand-in for the darkroom core, for plugin unit tests
 * (see mock_host.h).
 *
 * Plugins treat dr_instance as opaque and only hand it back to host
 * functions, so the mock defines the struct its own way: this file is
 * never linked with the core's plugin host. Only darkroom-plugin.h and
 * the C library are included, on purpose, with these exceptions: errors
 * are filled by core/error.c's dr_vfail(), so host->fail behaves as the
 * core's to the letter, real random bytes come from core/ids.c's
 * ids_random(), and webhook signatures are checked by compiling in
 * core/webhook.c itself (which needs nothing from the core but error.c
 * and libcrypto), so a plugin's webhook handling is tested against the
 * real verifier rather than a lookalike. The three are compiled in here
 * (plugin tests link the plugin's objects and this mock only, never the
 * core library).
 *
 * Values are parsed the way the core documents them in darkroom-plugin.h
 * (k/M/G sizes, ms/s/m/h durations, yes/no booleans), leniently: the core
 * validates values before create(), so a test only sets good ones.
 */
#include "mock_host.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* dr_vfail() and ids_random() (see the top of the file). */
#include "../../core/error.c"
#include "../../core/ids.c"

/* webhook_header(), webhook_verify() and webhook_sign(), for the table
 * below and for tests that sign deliveries (see the top of the file). */
#include "../../core/webhook.c"
/* host->http_request: the core's own client, so a plugin's HTTP is tested
 * against what it gets in production. Only the download rules for
 * untrusted URLs are the mock's (allow everything: the tests' servers are
 * on loopback); the core's are tested in tests/core. */
#include "../../core/plugin_http.c"

/* Most log lines kept per instance, and the longest. */
#define MOCK_LOG_MAX  1024
#define MOCK_LINE_MAX 2048

typedef struct mock_value {
	char *key;
	char *value;
} mock_value;

struct dr_instance {
	char *name;
	const dr_config_key *keys; /* NULL: any key goes */
	mock_value *values;
	size_t n_values;
	char *public_url;
	char **log;
	size_t n_log;
	int undeclared;
	char *local_root; /* what host->local_root() was given */
	/* host->kv_get/kv_put: the store, and what the test made of it. */
	mock_value *kv;
	double *kv_at;
	size_t n_kv;
	int kv_down;   /* answer DR_ERR_UNAVAILABLE */
	int kv_gets, kv_puts;
	plugin_http *http; /* host->http_request's client, made when used */
};

static enum mock_random random_mode = MOCK_RANDOM_REAL;
static uint64_t random_state;
static double fixed_now;

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fputs("mock_host: out of memory\n", stderr);
		abort();
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(xmalloc(n), s, n);
}

/* ------------------------------------------------------------------------
 * Configuration
 */

static int declared(const dr_instance *inst, const char *key)
{
	if (!inst->keys)
		return 1;
	for (const dr_config_key *k = inst->keys; k->name; k++)
		if (strcmp(k->name, key) == 0)
			return 1;
	return 0;
}

static mock_value *find_value(const dr_instance *inst, const char *key)
{
	for (size_t i = 0; i < inst->n_values; i++)
		if (strcmp(inst->values[i].key, key) == 0)
			return &inst->values[i];
	return NULL;
}

static const char *mock_config_get(const dr_instance *inst, const char *key)
{
	mock_value *v;

	if (!declared(inst, key)) {
		/* The core's accessors require declared keys; count it so a
		 * test can catch the plugin asking for one. */
		((dr_instance *)inst)->undeclared++;
		return NULL;
	}
	v = find_value(inst, key);
	return v ? v->value : NULL;
}

static int64_t mock_config_int(const dr_instance *inst, const char *key)
{
	const char *s = mock_config_get(inst, key);
	char *end;
	long long v;

	if (!s)
		return 0;
	v = strtoll(s, &end, 10);
	switch (*end) {
	case 'k':
	case 'K':
		return v * 1024;
	case 'M':
		return v * 1024 * 1024;
	case 'G':
		return v * 1024 * 1024 * 1024;
	}
	return v;
}

static double mock_config_seconds(const dr_instance *inst, const char *key)
{
	const char *s = mock_config_get(inst, key);
	char *end;
	double v;

	if (!s)
		return 0;
	v = strtod(s, &end);
	if (strcmp(end, "ms") == 0)
		return v / 1000;
	if (strcmp(end, "m") == 0)
		return v * 60;
	if (strcmp(end, "h") == 0)
		return v * 3600;
	return v;
}

static int mock_config_bool(const dr_instance *inst, const char *key)
{
	const char *s = mock_config_get(inst, key);

	return s && (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0 ||
		     strcasecmp(s, "on") == 0 || strcmp(s, "1") == 0);
}

/* ------------------------------------------------------------------------
 * The other services
 */

static const char *const level_names[8] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

static void mock_log(const dr_instance *inst, int level, const char *fmt, ...)
{
	dr_instance *mut = (dr_instance *)inst;
	char line[MOCK_LINE_MAX];
	size_t n;
	va_list ap;

	n = (size_t)snprintf(line, sizeof(line), "%s ",
			     level >= 0 && level < 8 ? level_names[level]
						     : "bad-level");
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (getenv("MOCK_HOST_VERBOSE"))
		fprintf(stderr, "mock_host: %s: %s\n", inst ? inst->name : "?",
			line);
	if (!mut || mut->n_log == MOCK_LOG_MAX)
		return;
	mut->log = realloc(mut->log, (mut->n_log + 1) * sizeof(*mut->log));
	if (!mut->log)
		abort();
	mut->log[mut->n_log++] = xstrdup(line);
}

static const char *mock_instance_name(const dr_instance *inst)
{
	return inst ? inst->name : NULL;
}

static const char *mock_public_url(const dr_instance *inst)
{
	return inst ? inst->public_url : NULL;
}

/* splitmix64: a fixed, well-spread sequence for MOCK_RANDOM_FIXED. */
static uint64_t next_fixed(void)
{
	uint64_t z = (random_state += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static dr_status mock_random_bytes(void *buf, size_t len)
{
	unsigned char *p = buf;

	switch (random_mode) {
	case MOCK_RANDOM_FAIL:
		return DR_ERR_IO;
	case MOCK_RANDOM_FIXED:
		for (size_t i = 0; i < len; i++)
			p[i] = (unsigned char)next_fixed();
		return DR_OK;
	case MOCK_RANDOM_REAL:
		break;
	}
	return ids_random(buf, len);
}

static double mock_now(void)
{
	struct timespec ts;

	if (fixed_now != 0)
		return fixed_now;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static dr_status mock_fail(dr_error *err, dr_status status, const char *code,
			   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dr_vfail(err, status, code, fmt, ap);
	va_end(ap);
	return status;
}

/* webhook_verify() with the mock clock: a request without received_at
 * is checked against what host->now() answers, as the core would stamp
 * it with its own clock. */
static dr_status mock_webhook_verify(const dr_webhook_request *req,
				     const char *const *secrets, size_t n,
				     double tolerance, dr_error *err)
{
	dr_webhook_request stamped;

	if (req && req->received_at == 0) {
		stamped = *req;
		stamped.received_at = mock_now();
		req = &stamped;
	}
	return webhook_verify(req, secrets, n, tolerance, err);
}

/* host->local_root(): the core's spelling checks, then keep the folder
 * for mock_host_local_root(). */
static dr_status mock_local_root(const dr_instance *inst, const char *dir,
				 dr_error *err)
{
	dr_instance *mut = (dr_instance *)inst;

	if (!mut || !dir || dir[0] != '/' || strcmp(dir, "/") == 0 ||
	    strstr(dir, "/./") || strstr(dir, "/../") ||
	    (strlen(dir) >= 2 && strcmp(dir + strlen(dir) - 2, "/.") == 0) ||
	    (strlen(dir) >= 3 && strcmp(dir + strlen(dir) - 3, "/..") == 0))
		return mock_fail(err, DR_ERR_INVALID, "invalid_argument",
				 "local_root: bad folder");
	free(mut->local_root);
	mut->local_root = xstrdup(dir);
	return DR_OK;
}

/* The memory services: the core's semantics (never NULL; out of memory
 * writes a line and aborts). */
static void *mock_mem_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p) {
		fputs("mock_host: out of memory\n", stderr);
		abort();
	}
	return p;
}

static void *mock_mem_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q) {
		fputs("mock_host: out of memory\n", stderr);
		abort();
	}
	return q;
}

static char *mock_mem_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* The pointers the memory services handed out and mem_free has not taken
 * back (memory released with plain free() stays listed until
 * mock_host_mem_forget). */
static const void **mem_live;
static size_t mem_n_live, mem_cap_live;

static void *mem_track(void *p)
{
	if (mem_n_live == mem_cap_live) {
		size_t cap = mem_cap_live ? 2 * mem_cap_live : 256;
		const void **v = realloc(mem_live, cap * sizeof(*v));

		if (!v) {
			fputs("mock_host: out of memory\n", stderr);
			abort();
		}
		mem_live = v;
		mem_cap_live = cap;
	}
	mem_live[mem_n_live++] = p;
	return p;
}

static void mem_untrack(const void *p)
{
	for (size_t i = mem_n_live; p && i-- > 0;) {
		if (mem_live[i] == p) {
			mem_live[i] = mem_live[--mem_n_live];
			return;
		}
	}
}

int mock_host_mem_owns(const void *p)
{
	for (size_t i = 0; p && i < mem_n_live; i++)
		if (mem_live[i] == p)
			return 1;
	return 0;
}

void mock_host_mem_forget(void)
{
	free(mem_live);
	mem_live = NULL;
	mem_n_live = mem_cap_live = 0;
}

static void *host_mem_alloc(size_t n)
{
	return mem_track(xmalloc(n));
}

static void *host_mem_calloc(size_t n, size_t size)
{
	return mem_track(mock_mem_calloc(n, size));
}

static void *host_mem_realloc(void *p, size_t n)
{
	mem_untrack(p);
	return mem_track(mock_mem_realloc(p, n));
}

static char *host_mem_strdup(const char *s)
{
	return mem_track(xstrdup(s));
}

static char *host_mem_strndup(const char *s, size_t n)
{
	return mem_track(mock_mem_strndup(s, n));
}

static void host_mem_free(void *p)
{
	mem_untrack(p);
	free(p);
}

/* ------------------------------------------------------------------------
 * The key-value store: in memory, per instance
 */

static size_t kv_find(const dr_instance *inst, const char *key)
{
	size_t i = 0;

	while (i < inst->n_kv && strcmp(inst->kv[i].key, key) != 0)
		i++;
	return i;
}

static dr_status kv_key_check(const dr_instance *inst, const char *key,
			      dr_error *err)
{
	if (inst->kv_down)
		return mock_fail(err, DR_ERR_UNAVAILABLE, "kv_unavailable",
				 "the key-value store is down (mock)");
	if (!key || !key[0] || strlen(key) > DR_KV_KEY_MAX ||
	    strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"0123456789._-") != strlen(key))
		return mock_fail(err, DR_ERR_INVALID, "invalid_argument",
				 "kv: bad key");
	return DR_OK;
}

static dr_status mock_kv_get(const dr_instance *inst, const char *key,
			     char **value, double *updated_at, dr_error *err)
{
	dr_instance *mut = (dr_instance *)inst;
	dr_status st;
	size_t i;

	*value = NULL;
	if (updated_at)
		*updated_at = 0;
	mut->kv_gets++;
	st = kv_key_check(inst, key, err);
	if (st != DR_OK)
		return st;
	i = kv_find(inst, key);
	if (i == inst->n_kv)
		return mock_fail(err, DR_ERR_NOT_FOUND, "not_found",
				 "kv: no value");
	*value = xstrdup(inst->kv[i].value);
	if (updated_at)
		*updated_at = inst->kv_at[i];
	return DR_OK;
}

static dr_status mock_kv_put(const dr_instance *inst, const char *key,
			     const char *value, dr_error *err)
{
	dr_instance *mut = (dr_instance *)inst;
	dr_status st;

	mut->kv_puts++;
	st = kv_key_check(inst, key, err);
	if (st != DR_OK)
		return st;
	if (value && strlen(value) > DR_KV_VALUE_MAX)
		return mock_fail(err, DR_ERR_TOO_LARGE, "invalid_argument",
				 "kv: value too long");
	mock_host_kv_set(mut, key, value, mock_now());
	return DR_OK;
}

void mock_host_kv_set(dr_instance *inst, const char *key, const char *value,
		      double updated_at)
{
	size_t i = kv_find(inst, key);

	if (!value) {
		if (i < inst->n_kv) {
			free(inst->kv[i].key);
			free(inst->kv[i].value);
			inst->kv[i] = inst->kv[inst->n_kv - 1];
			inst->kv_at[i] = inst->kv_at[inst->n_kv - 1];
			inst->n_kv--;
		}
		return;
	}
	if (i == inst->n_kv) {
		inst->kv = mock_mem_realloc(inst->kv,
					    (inst->n_kv + 1) * sizeof(*inst->kv));
		inst->kv_at = mock_mem_realloc(
			inst->kv_at, (inst->n_kv + 1) * sizeof(*inst->kv_at));
		inst->kv[i].key = xstrdup(key);
		inst->kv[i].value = NULL;
		inst->n_kv++;
	}
	free(inst->kv[i].value);
	inst->kv[i].value = xstrdup(value);
	inst->kv_at[i] = updated_at;
}

const char *mock_host_kv_value(const dr_instance *inst, const char *key)
{
	size_t i = kv_find(inst, key);

	return i < inst->n_kv ? inst->kv[i].value : NULL;
}

void mock_host_kv_down(dr_instance *inst, int down)
{
	inst->kv_down = down;
}

int mock_host_kv_gets(const dr_instance *inst)
{
	return inst->kv_gets;
}

int mock_host_kv_puts(const dr_instance *inst)
{
	return inst->kv_puts;
}

/* ------------------------------------------------------------------------
 * HTTP
 */

static int mock_host_allowed(const char *host, const char *const *hosts)
{
	(void)host;
	(void)hosts;
	return 1;
}

static int mock_address_allowed(const struct sockaddr *sa, int allow_private)
{
	(void)sa;
	(void)allow_private;
	return 1;
}

static dr_status mock_http_request(const dr_instance *inst,
				   const dr_http_request *req,
				   dr_http_response *resp, dr_error *err)
{
	static const plugin_http_policy pol = {
		.allow_http = 1,
		.allow_private = 1,
		.host_allowed = mock_host_allowed,
		.address_allowed = mock_address_allowed,
	};
	dr_instance *mut = (dr_instance *)inst;

	if (!mut->http)
		mut->http = plugin_http_new();
	return plugin_http_request(mut->http, &pol, req, resp, err);
}

static const char *mock_document;

void mock_host_set_document(const char *doc)
{
	mock_document = doc;
}

/* host->webhook_document: the document set with
 * mock_host_set_document(), else the body. */
static const char *mock_webhook_document(const dr_webhook_request *req,
					 size_t *len)
{
	if (mock_document) {
		*len = strlen(mock_document);
		return mock_document;
	}
	*len = req->body_len;
	return (const char *)req->body;
}

static const dr_host mock_table = {
	.abi_version = DR_PLUGIN_ABI_VERSION,
	.size = sizeof(dr_host),
	.log = mock_log,
	.config_get = mock_config_get,
	.config_int = mock_config_int,
	.config_seconds = mock_config_seconds,
	.config_bool = mock_config_bool,
	.instance_name = mock_instance_name,
	.public_url = mock_public_url,
	.random_bytes = mock_random_bytes,
	.now = mock_now,
	.fail = mock_fail,
	.webhook_header = webhook_header,
	.webhook_verify = mock_webhook_verify,
	.local_root = mock_local_root,
	.mem_alloc = host_mem_alloc,
	.mem_calloc = host_mem_calloc,
	.mem_realloc = host_mem_realloc,
	.mem_strdup = host_mem_strdup,
	.mem_strndup = host_mem_strndup,
	.mem_free = host_mem_free,
	.kv_get = mock_kv_get,
	.kv_put = mock_kv_put,
	.http_request = mock_http_request,
	.webhook_document = mock_webhook_document,
};

const dr_host *mock_host(void)
{
	return &mock_table;
}

const dr_host *mock_host_sized(size_t size)
{
	static dr_host older;

	if (size > sizeof(older))
		size = sizeof(older);
	memset(&older, 0, sizeof(older));
	memcpy(&older, &mock_table, size);
	older.size = (uint32_t)size;
	return &older;
}

/* ------------------------------------------------------------------------
 * Instances
 */

dr_instance *mock_instance_new(const char *name, const dr_plugin *plugin)
{
	dr_instance *inst = xmalloc(sizeof(*inst));

	memset(inst, 0, sizeof(*inst));
	inst->name = xstrdup(name);
	inst->keys = plugin ? plugin->config_keys : NULL;
	if (plugin && !inst->keys) {
		/* A plugin without keys: every lookup is undeclared. */
		static const dr_config_key none[] = { { NULL, 0, NULL, NULL, 0,
							NULL } };
		inst->keys = none;
	}
	if (inst->keys)
		for (const dr_config_key *k = inst->keys; k->name; k++)
			if (k->default_value)
				mock_host_set(inst, k->name, k->default_value);
	return inst;
}

void mock_instance_free(dr_instance *inst)
{
	if (!inst)
		return;
	for (size_t i = 0; i < inst->n_values; i++) {
		free(inst->values[i].key);
		free(inst->values[i].value);
	}
	free(inst->values);
	while (inst->n_kv > 0)
		mock_host_kv_set(inst, inst->kv[0].key, NULL, 0);
	free(inst->kv);
	free(inst->kv_at);
	plugin_http_free(inst->http);
	mock_host_log_clear(inst);
	free(inst->local_root);
	free(inst->public_url);
	free(inst->name);
	free(inst);
}

void mock_host_set(dr_instance *inst, const char *key, const char *value)
{
	mock_value *v = find_value(inst, key);

	if (!value) {
		if (v) {
			free(v->key);
			free(v->value);
			*v = inst->values[--inst->n_values];
		}
		return;
	}
	if (v) {
		free(v->value);
		v->value = xstrdup(value);
		return;
	}
	inst->values = realloc(inst->values,
			       (inst->n_values + 1) * sizeof(*inst->values));
	if (!inst->values)
		abort();
	inst->values[inst->n_values].key = xstrdup(key);
	inst->values[inst->n_values].value = xstrdup(value);
	inst->n_values++;
}

void mock_host_set_public_url(dr_instance *inst, const char *url)
{
	free(inst->public_url);
	inst->public_url = url ? xstrdup(url) : NULL;
}

const char *mock_host_local_root(const dr_instance *inst)
{
	return inst->local_root;
}

int mock_host_undeclared(const dr_instance *inst)
{
	return inst->undeclared;
}

size_t mock_host_log_count(const dr_instance *inst)
{
	return inst->n_log;
}

const char *mock_host_log_line(const dr_instance *inst, size_t i)
{
	return i < inst->n_log ? inst->log[i] : NULL;
}

int mock_host_log_has(const dr_instance *inst, const char *needle)
{
	for (size_t i = 0; i < inst->n_log; i++)
		if (strstr(inst->log[i], needle))
			return 1;
	return 0;
}

void mock_host_log_clear(dr_instance *inst)
{
	for (size_t i = 0; i < inst->n_log; i++)
		free(inst->log[i]);
	free(inst->log);
	inst->log = NULL;
	inst->n_log = 0;
}

void mock_host_random(enum mock_random mode)
{
	random_mode = mode;
	random_state = 0x6461726b726f6f6du; /* "darkroom" */
}

void mock_host_set_now(double t)
{
	fixed_now = t;
}
