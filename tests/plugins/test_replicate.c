/*
 * test_replicate.c - the `replicate` adapter against the mock host and a
 * canned HTTP server.
 *
 * The plugin's objects are linked in, so the private functions of
 * plugins/replicate/replicate.h (normalisation, model references,
 * Retry-After) are called directly, and the operations through the
 * descriptor. HTTP behaviour is checked against a tiny server in a thread
 * of this program: each test queues the answers it wants (status, extra
 * headers, body, a delay, or dropping the connection after reading the
 * request) and afterwards looks at the requests the plugin made. Every
 * answer closes its connection, so a test sees exactly one request per
 * call the plugin makes.
 *
 * Webhook tests mostly put their own webhook_header/webhook_verify into a
 * copy of the mock host's table: a request is authentic when its
 * webhook-signature is "v1,<secret>" for one of the secrets the plugin
 * passes, which shows exactly which secrets it passed. One test goes
 * through the mock host's real verifier (core/webhook.c) with a signature
 * made by webhook_sign().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "darkroom-plugin.h"
#include "error.h" /* dr_fail() */
#include "mock_host.h"

#include "../../plugins/replicate/replicate.h"
#include "webhook.h" /* webhook_sign(), compiled into mock_host.o */

const dr_plugin *dr_plugin_entry(void);

#define TOKEN	"r8_s3cr3tt0k3nvalue"
#define HEX64	"5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
#define PRED_ID "gm3qorzdhgbfurvjtvhg6dckhu"
#define JOB_ID	"j_01JD3M6X2Q8Y7R5T4W3V2B1N0C"

#define NEAR(a, b) assert_true((a) - (b) < 1e-9 && (b) - (a) < 1e-9)

/* ------------------------------------------------------------------------
 * The canned server
 */

#define SRV_MAX 16

typedef struct canned {
	int status;	     /* 0: read the request, then hang up */
	const char *headers; /* extra header lines, each ending "\r\n" */
	const char *body;
	size_t body_len; /* 0: strlen(body) */
	double delay;	 /* seconds before answering */
} canned;

typedef struct seen {
	char method[16];
	char path[1024];
	char *headers; /* the header block as received */
	char *body;
} seen;

typedef struct server {
	int fd;
	int port;
	pthread_t thread;
	pthread_mutex_t lock;
	int stop;
	canned queue[SRV_MAX];
	size_t n_queue;
	size_t next;
	seen reqs[SRV_MAX];
	size_t n_reqs;
} server;

static int srv_stopping(server *s)
{
	int stop;

	pthread_mutex_lock(&s->lock);
	stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return; /* the client gave up: fine */
		p += w;
		n -= (size_t)w;
	}
}

/* Read one request; 0 when the client sent nothing usable. */
static int read_request(int fd, seen *r)
{
	size_t cap = 65536, len = 0, hdr_end = 0, clen = 0;
	char *buf = malloc(cap + 1), *p;
	ssize_t n;

	if (!buf)
		return 0;
	for (;;) {
		n = recv(fd, buf + len, cap - len, 0);
		if (n <= 0) {
			free(buf);
			return 0;
		}
		len += (size_t)n;
		buf[len] = '\0';
		p = strstr(buf, "\r\n\r\n");
		if (p) {
			hdr_end = (size_t)(p - buf) + 4;
			break;
		}
		if (len == cap) {
			free(buf);
			return 0;
		}
	}
	for (p = buf; p < buf + hdr_end; p = strstr(p, "\r\n") + 2)
		if (strncasecmp(p, "content-length:", 15) == 0)
			clen = strtoul(p + 15, NULL, 10);
	if (hdr_end + clen > cap) {
		free(buf);
		return 0;
	}
	while (len < hdr_end + clen) {
		n = recv(fd, buf + len, cap - len, 0);
		if (n <= 0) {
			free(buf);
			return 0;
		}
		len += (size_t)n;
	}
	sscanf(buf, "%15s %1023s", r->method, r->path);
	r->headers = strndup(buf, hdr_end);
	r->body = strndup(buf + hdr_end, clen);
	free(buf);
	return 1;
}

static void answer(server *s, int fd, const canned *c)
{
	char head[1024];
	size_t blen =
		c->body ? (c->body_len ? c->body_len : strlen(c->body)) : 0;
	int n;

	for (double waited = 0; waited < c->delay && !srv_stopping(s);
	     waited += 0.01)
		usleep(10000);
	if (c->status == 0)
		return;
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d Canned\r\n"
		     "Content-Type: application/json\r\n"
		     "Content-Length: %zu\r\n"
		     "Connection: close\r\n"
		     "%s\r\n",
		     c->status, blen, c->headers ? c->headers : "");
	send_all(fd, head, (size_t)n);
	send_all(fd, c->body ? c->body : "", blen);
}

static void *serve(void *arg)
{
	server *s = arg;
	static const canned none = { 599, NULL,
				     "{\"detail\":\"no canned "
				     "answer left\"}",
				     0, 0 };

	while (!srv_stopping(s)) {
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
		canned c;
		seen r;
		int cfd;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		cfd = accept(s->fd, NULL, NULL);
		if (cfd < 0)
			continue;
		memset(&r, 0, sizeof(r));
		if (!read_request(cfd, &r)) {
			close(cfd);
			continue;
		}
		pthread_mutex_lock(&s->lock);
		c = s->next < s->n_queue ? s->queue[s->next++] : none;
		if (s->n_reqs < SRV_MAX) {
			s->reqs[s->n_reqs++] = r;
		} else {
			free(r.headers);
			free(r.body);
		}
		pthread_mutex_unlock(&s->lock);
		answer(s, cfd, &c);
		close(cfd);
	}
	return NULL;
}

static void srv_start(server *s)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);
	int one = 1;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->fd >= 0);
	setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->fd, 16), 0);
	assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &salen), 0);
	s->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void srv_stop(server *s)
{
	pthread_mutex_lock(&s->lock);
	s->stop = 1;
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	close(s->fd);
	for (size_t i = 0; i < s->n_reqs; i++) {
		free(s->reqs[i].headers);
		free(s->reqs[i].body);
	}
	pthread_mutex_destroy(&s->lock);
}

static void srv_push(server *s, int status, const char *headers,
		     const char *body)
{
	pthread_mutex_lock(&s->lock);
	assert_true(s->n_queue < SRV_MAX);
	s->queue[s->n_queue++] = (canned){ status, headers, body, 0, 0 };
	pthread_mutex_unlock(&s->lock);
}

static void srv_push_canned(server *s, canned c)
{
	pthread_mutex_lock(&s->lock);
	assert_true(s->n_queue < SRV_MAX);
	s->queue[s->n_queue++] = c;
	pthread_mutex_unlock(&s->lock);
}

static size_t srv_count(server *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->n_reqs;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static const seen *srv_req(server *s, size_t i)
{
	const seen *r;

	pthread_mutex_lock(&s->lock);
	assert_true(i < s->n_reqs);
	r = &s->reqs[i];
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* The value of header `name` in r (static buffer), or NULL. */
static const char *req_header(const seen *r, const char *name)
{
	static char value[512];
	size_t n = strlen(name);

	for (const char *p = strstr(r->headers, "\r\n"); p && p[2];
	     p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2, *end = strstr(line, "\r\n");

		if (end && strncasecmp(line, name, n) == 0 && line[n] == ':') {
			line += n + 1;
			while (*line == ' ')
				line++;
			snprintf(value, sizeof(value), "%.*s",
				 (int)(end - line), line);
			return value;
		}
	}
	return NULL;
}

/* A port nothing listens on. */
static int closed_port(void)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* ------------------------------------------------------------------------
 * Webhook verification stand-in (see the file comment)
 */

static char stub_secrets[4][128];
static size_t stub_n_secrets;
static double stub_tolerance;

static const char *stub_header(const dr_webhook_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcmp(req->header_names[i], name) == 0)
			return req->header_values[i];
	return NULL;
}

static dr_status stub_fail(dr_error *err, dr_status st, const char *code)
{
	return dr_fail(err, st, code, "stub: %s", code);
}

static dr_status stub_verify(const dr_webhook_request *req,
			     const char *const *secrets, size_t n,
			     double tolerance, dr_error *err)
{
	const char *sig = stub_header(req, "webhook-signature");

	stub_n_secrets = n;
	stub_tolerance = tolerance;
	for (size_t i = 0; i < n && i < 4; i++)
		snprintf(stub_secrets[i], sizeof(stub_secrets[i]), "%s",
			 secrets[i] ? secrets[i] : "(null)");
	if (!sig || !stub_header(req, "webhook-id") ||
	    !stub_header(req, "webhook-timestamp"))
		return stub_fail(err, DR_ERR_AUTH, "missing_header");
	for (size_t i = 0; i < n; i++)
		if (secrets[i] && strncmp(sig, "v1,", 3) == 0 &&
		    strcmp(sig + 3, secrets[i]) == 0)
			return DR_OK;
	return stub_fail(err, DR_ERR_AUTH, "bad_signature");
}

/* ------------------------------------------------------------------------
 * Fixture
 */

typedef struct fixture {
	server srv;
	dr_host host;
	dr_instance *inst;
	const dr_plugin *plugin;
	const dr_adapter_ops *ops;
	void *state;
	dr_error err;
	dr_prediction pred;
	char base[128];
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	srv_start(&f->srv);
	f->host = *mock_host();
	f->host.webhook_header = stub_header;
	f->host.webhook_verify = stub_verify;
	f->plugin = dr_plugin_entry();
	f->ops = f->plugin->adapter;
	f->inst = mock_instance_new("replicate", f->plugin);
	snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d/v1",
		 f->srv.port);
	mock_host_set(f->inst, "token", TOKEN);
	mock_host_set(f->inst, "api_base", f->base);
	mock_host_set_now(0);
	stub_n_secrets = 0;
	*state = f;
	return 0;
}

static void create(fixture *f)
{
	memset(&f->err, 0, sizeof(f->err));
	assert_int_equal(
		f->plugin->create(&f->host, f->inst, &f->state, &f->err),
		DR_OK);
	assert_non_null(f->state);
}

static int setup_created(void **state)
{
	setup(state);
	create(*state);
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	f->plugin->destroy(f->state);
	rep_prediction_clear(&f->pred);
	srv_stop(&f->srv);
	/* No secret is ever logged. */
	assert_false(mock_host_log_has(f->inst, TOKEN));
	assert_false(mock_host_log_has(f->inst, "whsec_"));
	assert_int_equal(mock_host_undeclared(f->inst), 0);
	mock_instance_free(f->inst);
	mock_host_set_now(0);
	free(f);
	return 0;
}

static dr_job_view job_view(const char *model, const char *input)
{
	dr_job_view j;

	memset(&j, 0, sizeof(j));
	j.id = JOB_ID;
	j.model = model;
	j.input_json = input;
	j.webhook_url = "https://darkroom.example.com/v1/hooks/replicate"
			"?job=" JOB_ID;
	j.attempt = 1;
	return j;
}

static dr_status submit(fixture *f, const char *model, const char *input)
{
	dr_job_view j = job_view(model, input);

	rep_prediction_clear(&f->pred);
	memset(&f->err, 0, sizeof(f->err));
	return f->ops->submit(f->state, &j, &f->pred, &f->err);
}

static dr_status get(fixture *f, const char *id)
{
	dr_job_view j = job_view("owner/model", "{}");

	j.prediction_id = id;
	rep_prediction_clear(&f->pred);
	memset(&f->err, 0, sizeof(f->err));
	return f->ops->get(f->state, &j, &f->pred, &f->err);
}

/* Normalise a document given as text (the test fails when it is not
 * JSON). */
static dr_status norm(const char *text, dr_prediction *p, dr_error *err)
{
	json_object *doc = rep_parse_json(text, strlen(text));
	dr_status st;

	assert_non_null(doc);
	memset(err, 0, sizeof(*err));
	st = rep_normalise(mock_host(), doc, p, err);
	json_object_put(doc);
	return st;
}

#define PRED_HEAD "{\"id\":\"" PRED_ID "\",\"status\":\"succeeded\","

static const char created_body[] =
	"{\"id\":\"" PRED_ID "\",\"model\":\"owner/model\",\"version\":\"" HEX64
	"\",\"input\":{\"prompt\":\"a lighthouse\"},\"logs\":\"\","
	"\"output\":null,\"error\":null,\"status\":\"starting\","
	"\"created_at\":\"2024-05-01T10:00:00.123456789Z\","
	"\"urls\":{\"get\":\"https://api.replicate.com/v1/predictions/" PRED_ID
	"\"}}";

/* ------------------------------------------------------------------------
 * Descriptor and configuration
 */

static void test_descriptor(void **state)
{
	const dr_plugin *p = dr_plugin_entry();
	const char *const *hosts = p->adapter->download_hosts;
	int token = 0;

	(void)state;
	assert_int_equal(p->abi_version, DR_PLUGIN_ABI_VERSION);
	assert_int_equal(p->size, sizeof(dr_plugin));
	assert_string_equal(p->name, "replicate");
	assert_int_equal(p->kind, DR_PLUGIN_ADAPTER);
	assert_null(p->sink);
	assert_non_null(p->adapter->validate);
	assert_non_null(p->adapter->submit);
	assert_non_null(p->adapter->get);
	assert_non_null(p->adapter->cancel);
	assert_non_null(p->adapter->webhook);
	assert_non_null(p->adapter->reconcile);
	assert_string_equal(hosts[0], "replicate.delivery");
	assert_string_equal(hosts[1], "*.replicate.delivery");
	assert_null(hosts[2]);
	for (const dr_config_key *k = p->config_keys; k->name; k++) {
		if (strcmp(k->name, "token") == 0) {
			token = 1;
			assert_string_equal(k->env, "REPLICATE_API_TOKEN");
			assert_true(k->flags & DR_CFG_SECRET);
			assert_false(k->flags & DR_CFG_REQUIRED);
		}
		if (strstr(k->name, "secret"))
			assert_true(k->flags & DR_CFG_SECRET);
	}
	assert_true(token);
}

/* No token: the plugin loads (config check works), submit says why. */
static void test_no_token(void **state)
{
	fixture *f = *state;

	mock_host_set(f->inst, "token", NULL);
	create(f);
	assert_true(mock_host_log_has(f->inst, "token=unset"));
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_CONFIG);
	assert_string_equal(f->err.code, "missing_token");
	assert_non_null(strstr(f->err.message, "REPLICATE_API_TOKEN"));
	assert_int_equal(f->err.retryable, 0);
	assert_int_equal(get(f, PRED_ID), DR_ERR_CONFIG);
	assert_string_equal(f->err.code, "missing_token");
	assert_int_equal(srv_count(&f->srv), 0);
}

static void expect_bad_config(fixture *f, const char *key, const char *value)
{
	void *st = NULL;

	mock_host_set(f->inst, key, value);
	memset(&f->err, 0, sizeof(f->err));
	assert_int_equal(f->plugin->create(&f->host, f->inst, &st, &f->err),
			 DR_ERR_CONFIG);
	assert_null(st);
	assert_string_equal(f->err.code, "invalid_config");
	assert_int_equal(strncmp(f->err.message, key, strlen(key)), 0);
	/* Put the default back for the next case. */
	for (const dr_config_key *k = f->plugin->config_keys; k->name; k++)
		if (strcmp(k->name, key) == 0)
			mock_host_set(f->inst, key, k->default_value);
}

static void test_bad_config(void **state)
{
	fixture *f = *state;

	expect_bad_config(f, "cancel_after", "2s");
	expect_bad_config(f, "prefer_wait", "61s");
	expect_bad_config(f, "timeout", "0");
	expect_bad_config(f, "connect_timeout", "0");
	expect_bad_config(f, "webhook_events", "start, finished");
	expect_bad_config(f, "webhook_events", "");
	expect_bad_config(f, "api_base", "ftp://example.com/");
	expect_bad_config(f, "token", "r8_with space");
	mock_host_set(f->inst, "token", TOKEN);
	/* The defaults themselves are good. */
	create(f);
}

/* ------------------------------------------------------------------------
 * validate
 */

static dr_status validate(fixture *f, const char *model, const char *input)
{
	dr_job_view j = job_view(model, input);

	j.id = NULL; /* intake: no job yet */
	j.webhook_url = NULL;
	memset(&f->err, 0, sizeof(f->err));
	return f->ops->validate(f->state, &j, &f->err);
}

static void test_validate_forms(void **state)
{
	fixture *f = *state;
	rep_model m;
	char why[256];

	assert_int_equal(validate(f, "black-forest-labs/flux-schnell", "{}"),
			 DR_OK);
	assert_int_equal(validate(f, "owner/model:" HEX64, "{\"a\":1}"), DR_OK);
	assert_int_equal(validate(f, HEX64, "{}"), DR_OK);
	assert_int_equal(validate(f, "Owner_1/model.v2-x", "{}"), DR_OK);

	assert_true(rep_parse_model("acme/img", &m, why, sizeof(why)));
	assert_int_equal(m.kind, REP_MODEL_NAME);
	assert_string_equal(m.owner, "acme");
	assert_string_equal(m.name, "img");
	assert_true(rep_parse_model("acme/img:" HEX64, &m, why, sizeof(why)));
	assert_int_equal(m.kind, REP_MODEL_VERSIONED);
	assert_string_equal(m.version, HEX64);
	assert_string_equal(m.name, "img");
	assert_true(rep_parse_model(HEX64, &m, why, sizeof(why)));
	assert_int_equal(m.kind, REP_MODEL_VERSION);
	assert_string_equal(m.owner, "");
}

static void test_validate_bad_models(void **state)
{
	fixture *f = *state;
	static const char *const bad[] = {
		"",
		"model",
		"owner/",
		"/name",
		"a/b/c",
		"owner/name:",
		"owner/name:1234",
		("owner/name:" HEX64 "0"),
		("owner/name:5C7D5DC6DD8BF75C1ACAA8565735E7986BC5B66206B55CCA93"
		 "CB72C9BF15CCAA"),
		"../x",
		"owner/..",
		"owner/.hidden",
		"own er/name",
		"owner/na?me",
		"owner/name#x",
		"owner/na%2fme",
		"5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15c"
		"c",
		"5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15cc"
		"ag",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(validate(f, bad[i], "{}"), DR_ERR_INVALID);
		assert_int_equal(strncmp(f->err.message, "model: ", 7), 0);
	}
	assert_int_equal(validate(f, NULL, "{}"), DR_ERR_INVALID);
	assert_int_equal(strncmp(f->err.message, "model: ", 7), 0);
	assert_int_equal(srv_count(&f->srv), 0);
}

static void test_validate_input(void **state)
{
	fixture *f = *state;
	static const char *const bad[] = { "[]",   "1",	    "\"x\"", "null",
					   "{bad", "{} {}", "" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(validate(f, "owner/model", bad[i]),
				 DR_ERR_INVALID);
		assert_string_equal(f->err.message,
				    "input: must be a JSON object");
	}
	assert_int_equal(validate(f, "owner/model", NULL), DR_ERR_INVALID);
	assert_int_equal(validate(f, "owner/model", " {\"p\": [1, 2]}\n"),
			 DR_OK);
}

/* ------------------------------------------------------------------------
 * normalise
 */

static void test_norm_url_string(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(norm(PRED_HEAD "\"output\":\"https://replicate."
					"delivery/a/out-0.webp\"}",
			      &p, &err),
			 DR_OK);
	assert_string_equal(p.id, PRED_ID);
	assert_int_equal(p.status, DR_PRED_SUCCEEDED);
	assert_int_equal(p.n_outputs, 1);
	assert_int_equal(p.outputs[0].kind, DR_OUTPUT_URL);
	assert_string_equal(p.outputs[0].value,
			    "https://replicate.delivery/a/out-0.webp");
	assert_int_equal(p.data_removed, 0);
	rep_prediction_clear(&p);
}

static void test_norm_url_list(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(norm(PRED_HEAD "\"output\":[\"https://r.example/0."
					"png\",\"http://r.example/1.png\","
					"\"HTTPS://r.example/2.png\"]}",
			      &p, &err),
			 DR_OK);
	assert_int_equal(p.n_outputs, 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(p.outputs[i].kind, DR_OUTPUT_URL);
	assert_string_equal(p.outputs[0].value, "https://r.example/0.png");
	assert_string_equal(p.outputs[1].value, "http://r.example/1.png");
	assert_string_equal(p.outputs[2].value, "HTTPS://r.example/2.png");
	rep_prediction_clear(&p);
}

/* Object values in key order, nested lists in order; numbers, booleans,
 * null and non-URL strings inside are not outputs. */
static void test_norm_nested_object(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(norm(PRED_HEAD
			      "\"output\":{\"seed\":42,\"nsfw\":false,"
			      "\"video\":\"https://r.example/v.mp4\","
			      "\"extra\":null,\"format\":\"mp4\","
			      "\"frames\":[{\"img\":\"https://r.example/f0."
			      "png\",\"t\":0.5},[\"https://r.example/f1."
			      "png\"]],\"audio\":\"https://r.example/a.wav\"}}",
			      &p, &err),
			 DR_OK);
	assert_int_equal(p.n_outputs, 4);
	assert_string_equal(p.outputs[0].value, "https://r.example/v.mp4");
	assert_string_equal(p.outputs[1].value, "https://r.example/f0.png");
	assert_string_equal(p.outputs[2].value, "https://r.example/f1.png");
	assert_string_equal(p.outputs[3].value, "https://r.example/a.wav");
	rep_prediction_clear(&p);
}

static void test_norm_data_uri(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(norm(PRED_HEAD "\"output\":\"data:image/png;base64,"
					"iVBORw0KGgo=\"}",
			      &p, &err),
			 DR_OK);
	assert_int_equal(p.n_outputs, 1);
	assert_int_equal(p.outputs[0].kind, DR_OUTPUT_DATA);
	assert_string_equal(p.outputs[0].value,
			    "data:image/png;base64,iVBORw0KGgo=");
	rep_prediction_clear(&p);
}

/* A language model's token stream is one text. */
static void test_norm_text_tokens(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(norm(PRED_HEAD "\"output\":[\"Hello\",\",\",\" "
					"wor\",\"ld\",\"\",\" - see http: "
					"docs\",\" data: none\"]}",
			      &p, &err),
			 DR_OK);
	assert_int_equal(p.n_outputs, 1);
	assert_int_equal(p.outputs[0].kind, DR_OUTPUT_TEXT);
	assert_string_equal(p.outputs[0].value,
			    "Hello, world - see http: docs data: none");
	rep_prediction_clear(&p);

	/* Tokens of a running prediction, with the unknown progress. */
	assert_int_equal(norm("{\"id\":\"x1\",\"status\":\"processing\","
			      "\"output\":[\"Once\",\" upon\"]}",
			      &p, &err),
			 DR_OK);
	assert_int_equal(p.status, DR_PRED_PROCESSING);
	assert_int_equal(p.n_outputs, 1);
	assert_string_equal(p.outputs[0].value, "Once upon");
	assert_true(p.progress < 0);
	rep_prediction_clear(&p);
}

static void test_norm_plain_text(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(
		norm(PRED_HEAD "\"output\":\"A cat on a mat.\"}", &p, &err),
		DR_OK);
	assert_int_equal(p.n_outputs, 1);
	assert_int_equal(p.outputs[0].kind, DR_OUTPUT_TEXT);
	assert_string_equal(p.outputs[0].value, "A cat on a mat.");
	rep_prediction_clear(&p);

	/* An empty string, list or object is no output at all. */
	assert_int_equal(norm(PRED_HEAD "\"output\":\"\"}", &p, &err), DR_OK);
	assert_int_equal(p.n_outputs, 0);
	assert_null(p.outputs);
	rep_prediction_clear(&p);
	assert_int_equal(norm(PRED_HEAD "\"output\":[]}", &p, &err), DR_OK);
	assert_int_equal(p.n_outputs, 0);
	rep_prediction_clear(&p);
	assert_int_equal(norm(PRED_HEAD "\"output\":{}}", &p, &err), DR_OK);
	assert_int_equal(p.n_outputs, 0);
	rep_prediction_clear(&p);
}

static void test_norm_mixed(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(norm(PRED_HEAD
			      "\"output\":[\"https://r.example/0.png\","
			      "\"a caption\",\"data:text/plain,hi\",42,true,"
			      "{\"mask\":\"https://r.example/m.png\"},"
			      "[\"data:,x\"],\"http:not-a-url\"]}",
			      &p, &err),
			 DR_OK);
	assert_int_equal(p.n_outputs, 4);
	assert_int_equal(p.outputs[0].kind, DR_OUTPUT_URL);
	assert_string_equal(p.outputs[0].value, "https://r.example/0.png");
	assert_int_equal(p.outputs[1].kind, DR_OUTPUT_DATA);
	assert_string_equal(p.outputs[1].value, "data:text/plain,hi");
	assert_int_equal(p.outputs[2].kind, DR_OUTPUT_URL);
	assert_string_equal(p.outputs[2].value, "https://r.example/m.png");
	assert_int_equal(p.outputs[3].kind, DR_OUTPUT_DATA);
	assert_string_equal(p.outputs[3].value, "data:,x");
	rep_prediction_clear(&p);
}

/* After an hour Replicate deletes the files: output null. */
static void test_norm_data_removed(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(norm(PRED_HEAD "\"output\":null,\"data_removed\":"
					"true}",
			      &p, &err),
			 DR_OK);
	assert_int_equal(p.data_removed, 1);
	assert_int_equal(p.n_outputs, 0);
	assert_null(p.outputs);
	rep_prediction_clear(&p);

	assert_int_equal(norm(PRED_HEAD "\"data_removed\":false}", &p, &err),
			 DR_OK);
	assert_int_equal(p.data_removed, 0);
	assert_int_equal(p.n_outputs, 0);
	rep_prediction_clear(&p);
}

/* A structured result without files is kept as its JSON text. */
static void test_norm_structured_text(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(norm(PRED_HEAD "\"output\":{\"transcription\":\"hi "
					"there\",\"language\":\"en\","
					"\"segments\":[{\"start\":0,\"text\":"
					"\"hi\"}]}}",
			      &p, &err),
			 DR_OK);
	assert_int_equal(p.n_outputs, 1);
	assert_int_equal(p.outputs[0].kind, DR_OUTPUT_TEXT);
	assert_string_equal(p.outputs[0].value,
			    "{\"transcription\":\"hi there\",\"language\":"
			    "\"en\",\"segments\":[{\"start\":0,\"text\":"
			    "\"hi\"}]}");
	rep_prediction_clear(&p);

	assert_int_equal(norm(PRED_HEAD "\"output\":0.93}", &p, &err), DR_OK);
	assert_int_equal(p.n_outputs, 1);
	assert_string_equal(p.outputs[0].value, "0.93");
	rep_prediction_clear(&p);
}

static void test_norm_status(void **state)
{
	static const struct {
		const char *name;
		dr_prediction_status status;
	} cases[] = {
		{ "\"starting\"", DR_PRED_STARTING },
		{ "\"processing\"", DR_PRED_PROCESSING },
		{ "\"succeeded\"", DR_PRED_SUCCEEDED },
		{ "\"failed\"", DR_PRED_FAILED },
		{ "\"canceled\"", DR_PRED_CANCELED },
		{ "\"aborted\"", DR_PRED_ABORTED },
		{ "\"queued\"", DR_PRED_UNKNOWN },
		{ "\"Succeeded\"", DR_PRED_UNKNOWN },
		{ "null", DR_PRED_UNKNOWN },
		{ "3", DR_PRED_UNKNOWN },
	};
	char doc[256];
	dr_prediction p;
	dr_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(doc, sizeof(doc), "{\"id\":\"p1\",\"status\":%s}",
			 cases[i].name);
		assert_int_equal(norm(doc, &p, &err), DR_OK);
		assert_int_equal(p.status, cases[i].status);
		rep_prediction_clear(&p);
	}
	assert_int_equal(norm("{\"id\":\"p1\"}", &p, &err), DR_OK);
	assert_int_equal(p.status, DR_PRED_UNKNOWN);
	rep_prediction_clear(&p);
}

static double progress_of(const char *logs)
{
	return rep_progress_from_logs(logs, strlen(logs));
}

static void test_norm_progress(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	/* tqdm bars, carriage returns, several bars: the last one counts. */
	NEAR(progress_of("Using seed: 1\n  0%|          | 0/4 [00:00<?, "
			 "?it/s]\r 45%|████▌     | 9/20 [00:01<00:01]"),
	     0.45);
	NEAR(progress_of("loading\n100%|██████████| 3/3\nsampling\n  5%|▌  "
			 "    | 1/20"),
	     0.05);
	NEAR(progress_of("Sampling:  37%|███▋      | 11/30 [00:02<00:04, "
			 "4.50it/s]\n"),
	     0.37);
	NEAR(progress_of("100%|██████████| 28/28 [00:05<00:00,  5.2it/s]"),
	     1.0);
	NEAR(progress_of("step 3: 12.5%|##5  "), 0.125);
	/* No bar: unknown. A bare percentage is not a bar. */
	assert_true(progress_of("") < 0);
	assert_true(progress_of("Loading weights, 45% done") < 0);
	assert_true(progress_of("%|") < 0);
	assert_true(progress_of("250%|") < 0);
	assert_true(rep_progress_from_logs(NULL, 0) < 0);

	assert_int_equal(norm("{\"id\":\"p1\",\"status\":\"processing\","
			      "\"logs\":\" 20%|██ | 2/10\\r 60%|██████ | "
			      "6/10\"}",
			      &p, &err),
			 DR_OK);
	NEAR(p.progress, 0.6);
	rep_prediction_clear(&p);
	assert_int_equal(norm("{\"id\":\"p1\",\"status\":\"processing\","
			      "\"logs\":\"warming up\"}",
			      &p, &err),
			 DR_OK);
	assert_true(p.progress < 0);
	rep_prediction_clear(&p);
	/* Succeeded is done whatever the log says. */
	assert_int_equal(norm("{\"id\":\"p1\",\"status\":\"succeeded\","
			      "\"logs\":\" 60%|██████ | 6/10\"}",
			      &p, &err),
			 DR_OK);
	NEAR(p.progress, 1.0);
	rep_prediction_clear(&p);
}

static void test_norm_predict_time(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(norm(PRED_HEAD "\"metrics\":{\"predict_time\":1.83,"
					"\"total_time\":2.5}}",
			      &p, &err),
			 DR_OK);
	NEAR(p.predict_time, 1.83);
	rep_prediction_clear(&p);
	assert_int_equal(
		norm(PRED_HEAD "\"metrics\":{\"predict_time\":3}}", &p, &err),
		DR_OK);
	NEAR(p.predict_time, 3.0);
	rep_prediction_clear(&p);
	assert_int_equal(norm(PRED_HEAD "\"metrics\":{}}", &p, &err), DR_OK);
	assert_true(p.predict_time < 0);
	rep_prediction_clear(&p);
	assert_int_equal(norm(PRED_HEAD "\"metrics\":{\"predict_time\":"
					"\"1.2\"}}",
			      &p, &err),
			 DR_OK);
	assert_true(p.predict_time < 0);
	rep_prediction_clear(&p);
	/* Python encoders write NaN; it is no time. */
	assert_int_equal(
		norm(PRED_HEAD "\"metrics\":{\"predict_time\":NaN}}", &p, &err),
		DR_OK);
	assert_true(p.predict_time < 0);
	rep_prediction_clear(&p);
	assert_int_equal(norm(PRED_HEAD "\"metrics\":null}", &p, &err), DR_OK);
	assert_true(p.predict_time < 0);
	rep_prediction_clear(&p);
}

static void test_norm_bad_id(void **state)
{
	char doc[256];
	dr_prediction p;
	dr_error err;
	static const char *const bad[] = {
		"{\"status\":\"starting\"}",
		"{\"id\":\"\"}",
		"{\"id\":42}",
		"{\"id\":\"a/b\"}",
		"{\"id\":\"..\"}",
		"{\"id\":\"a b\"}",
		"[]",
		"\"x\"",
	};

	(void)state;
	/* 64 characters fit, 65 do not. */
	snprintf(doc, sizeof(doc), "{\"id\":\"%s\"}", HEX64);
	assert_int_equal(norm(doc, &p, &err), DR_OK);
	assert_string_equal(p.id, HEX64);
	rep_prediction_clear(&p);
	snprintf(doc, sizeof(doc), "{\"id\":\"%sa\"}", HEX64);
	assert_int_equal(norm(doc, &p, &err), DR_ERR_PROVIDER);
	assert_string_equal(err.code, "bad_prediction");
	assert_null(p.id);
	assert_null(p.raw_json);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(norm(bad[i], &p, &err), DR_ERR_PROVIDER);
		assert_string_equal(err.code, "bad_prediction");
	}
}

static void test_norm_fields(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(
		norm("{\"id\": \"p1\", \"version\": \"" HEX64 "\",\n"
		     " \"status\": \"failed\", \"error\": \"CUDA out of "
		     "memory\",\n \"completed_at\": "
		     "\"2024-05-01T10:00:03.123456789Z\", \"output\": null}",
		     &p, &err),
		DR_OK);
	assert_string_equal(p.version, HEX64);
	assert_string_equal(p.error, "CUDA out of memory");
	/* Nanoseconds kept as given. */
	assert_string_equal(p.completed_at, "2024-05-01T10:00:03.123456789Z");
	/* raw_json: the document, compact. */
	assert_string_equal(p.raw_json,
			    "{\"id\":\"p1\",\"version\":\"" HEX64 "\","
			    "\"status\":\"failed\",\"error\":\"CUDA out of "
			    "memory\",\"completed_at\":\"2024-05-01T10:00:03."
			    "123456789Z\",\"output\":null}");
	rep_prediction_clear(&p);

	/* A structured error is kept as its JSON; a null one is none. */
	assert_int_equal(norm("{\"id\":\"p1\",\"status\":\"failed\","
			      "\"error\":{\"type\":\"oom\",\"code\":7}}",
			      &p, &err),
			 DR_OK);
	assert_string_equal(p.error, "{\"type\":\"oom\",\"code\":7}");
	assert_null(p.completed_at);
	assert_null(p.version);
	rep_prediction_clear(&p);
	assert_int_equal(
		norm("{\"id\":\"p1\",\"error\":null,\"version\":7}", &p, &err),
		DR_OK);
	assert_null(p.error);
	assert_null(p.version);
	rep_prediction_clear(&p);
}

static void test_norm_output_cap(void **state)
{
	size_t cap = 64 * 40 + 256, at;
	char *doc = malloc(cap);
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_non_null(doc);
	for (int total = 64; total <= 65; total++) {
		at = (size_t)snprintf(doc, cap, PRED_HEAD "\"output\":[");
		for (int i = 0; i < total; i++)
			at += (size_t)snprintf(doc + at, cap - at,
					       "%s\"https://r.example/%d.png\"",
					       i ? "," : "", i);
		snprintf(doc + at, cap - at, "]}");
		if (total == 64) {
			assert_int_equal(norm(doc, &p, &err), DR_OK);
			assert_int_equal(p.n_outputs, 64);
			assert_string_equal(p.outputs[63].value,
					    "https://r.example/63.png");
			rep_prediction_clear(&p);
		} else {
			assert_int_equal(norm(doc, &p, &err), DR_ERR_TOO_LARGE);
			assert_string_equal(err.code, "output_too_large");
			assert_null(p.outputs);
			assert_null(p.id);
		}
	}
	free(doc);
}

static void test_norm_size_cap(void **state)
{
	size_t big = REP_MAX_OUTPUT_SIZE / 2;
	size_t cap = 2 * big + 256, at;
	char *doc = malloc(cap);
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_non_null(doc);
	/* Two data URIs of half the cap each, plus a little: over it. */
	at = (size_t)snprintf(doc, cap, PRED_HEAD "\"output\":[");
	for (int i = 0; i < 2; i++) {
		at += (size_t)snprintf(doc + at, cap - at, "%s\"data:,",
				       i ? "," : "");
		memset(doc + at, 'A', big - 6);
		at += big - 6;
		doc[at++] = '"';
	}
	at += (size_t)snprintf(doc + at, cap - at, ",\"data:,B\"]}");
	assert_int_equal(norm(doc, &p, &err), DR_ERR_TOO_LARGE);
	assert_string_equal(err.code, "output_too_large");
	/* Exactly the cap fits. */
	at = (size_t)snprintf(doc, cap, PRED_HEAD "\"output\":[");
	for (int i = 0; i < 2; i++) {
		at += (size_t)snprintf(doc + at, cap - at, "%s\"data:,",
				       i ? "," : "");
		memset(doc + at, 'A', big - 6);
		at += big - 6;
		doc[at++] = '"';
	}
	snprintf(doc + at, cap - at, "]}");
	assert_int_equal(norm(doc, &p, &err), DR_OK);
	assert_int_equal(p.n_outputs, 2);
	rep_prediction_clear(&p);
	free(doc);
}

static void test_strings(void **state)
{
	(void)state;
	assert_true(rep_is_url("https://replicate.delivery/x.png"));
	assert_true(rep_is_url("http://127.0.0.1:9/x"));
	assert_false(rep_is_url("https://"));
	assert_false(rep_is_url("https: //x"));
	assert_false(rep_is_url("https://x y"));
	/* Other file locations are URLs too, for the downloader to refuse. */
	assert_true(rep_is_url("ftp://x"));
	assert_true(rep_is_url("file:///etc/passwd"));
	assert_false(rep_is_url("gopher://x"));
	assert_false(rep_is_url("http:"));
	assert_true(rep_is_data_uri("data:image/webp;base64,AAAA"));
	assert_true(rep_is_data_uri("data:,hello"));
	assert_false(rep_is_data_uri("data: some text, really"));
	assert_false(rep_is_data_uri("data:image/png"));
	assert_false(rep_is_data_uri("Data"));

	NEAR(rep_parse_time("2024-05-01T10:00:00Z"), 1714557600.0);
	NEAR(rep_parse_time("2024-05-01T10:00:00.5Z"), 1714557600.5);
	NEAR(rep_parse_time("2024-05-01T12:00:00+02:00"), 1714557600.0);
	/* Sub-microsecond digits are parsed (doubles hold about 0.2 us at
	 * this magnitude; the string itself is what gets stored). */
	assert_true(rep_parse_time("2024-05-01T10:00:00.123456789Z") -
			    1714557600.123456789 <
		    1e-6);
	assert_true(1714557600.123456789 -
			    rep_parse_time("2024-05-01T10:00:00.123456789Z") <
		    1e-6);
	assert_true(rep_parse_time("2024-05-01") < 0);
	assert_true(rep_parse_time("2024-05-01T10:00:00") < 0);
	assert_true(rep_parse_time("yesterday") < 0);
	assert_true(rep_parse_time(NULL) < 0);
}

/* ------------------------------------------------------------------------
 * Retry-After
 */

static void test_retry_after(void **state)
{
	rep_response r;

	/* (The header itself is read by the host: see test_plugin.c.) */
	(void)state;
	/* The wait of a 429: the larger of body and header, 5 s without. */
	memset(&r, 0, sizeof(r));
	r.retry_after = -1;
	r.body = "{\"detail\":\"slow down\",\"status\":429,\"retry_after\":7}";
	r.len = strlen(r.body);
	NEAR(rep_rate_limit_wait(&r), 7.0);
	r.retry_after = 12;
	NEAR(rep_rate_limit_wait(&r), 12.0);
	r.retry_after = 3;
	NEAR(rep_rate_limit_wait(&r), 7.0);
	r.body = "not json";
	r.len = strlen(r.body);
	NEAR(rep_rate_limit_wait(&r), 3.0);
	r.retry_after = -1;
	NEAR(rep_rate_limit_wait(&r), 5.0);
	r.body = "{\"retry_after\":0.2}";
	r.len = strlen(r.body);
	NEAR(rep_rate_limit_wait(&r), 1.0);
	r.body = "{\"retry_after\":999999}";
	r.len = strlen(r.body);
	NEAR(rep_rate_limit_wait(&r), 3600.0);
}

/* ------------------------------------------------------------------------
 * submit over HTTP
 */

static void test_submit_model_name(void **state)
{
	fixture *f = *state;
	const seen *r;
	json_object *body, *v;

	srv_push(&f->srv, 201, NULL, created_body);
	assert_int_equal(submit(f, "owner/model",
				"{\"prompt\":\"a "
				"lighthouse\",\"n\":2}"),
			 DR_OK);
	assert_string_equal(f->pred.id, PRED_ID);
	assert_int_equal(f->pred.status, DR_PRED_STARTING);
	assert_string_equal(f->pred.version, HEX64);
	assert_int_equal(f->pred.n_outputs, 0);
	assert_non_null(f->pred.raw_json);

	assert_int_equal(srv_count(&f->srv), 1);
	r = srv_req(&f->srv, 0);
	assert_string_equal(r->method, "POST");
	assert_string_equal(r->path, "/v1/models/owner/model/predictions");
	assert_string_equal(req_header(r, "Authorization"), "Bearer " TOKEN);
	assert_string_equal(req_header(r, "Content-Type"), "application/json");
	assert_string_equal(req_header(r, "Cancel-After"), "1800s");
	assert_null(req_header(r, "Prefer"));
	assert_non_null(
		strstr(req_header(r, "User-Agent"), "(+replicate plugin)"));
	assert_int_equal(strncmp(req_header(r, "User-Agent"), "darkroom/", 9),
			 0);
	body = rep_parse_json(r->body, strlen(r->body));
	assert_non_null(body);
	assert_false(json_object_object_get_ex(body, "version", &v));
	assert_true(json_object_object_get_ex(body, "input", &v));
	assert_string_equal(
		json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN),
		"{\"prompt\":\"a lighthouse\",\"n\":2}");
	assert_true(json_object_object_get_ex(body, "webhook", &v));
	assert_string_equal(json_object_get_string(v),
			    "https://darkroom.example.com/v1/hooks/"
			    "replicate?job=" JOB_ID);
	assert_true(
		json_object_object_get_ex(body, "webhook_events_filter", &v));
	assert_string_equal(
		json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN),
		"[\"start\",\"completed\"]");
	json_object_put(body);
	assert_true(mock_host_log_has(f->inst, "event=replicate.submitted"));
}

static void test_submit_version_forms(void **state)
{
	fixture *f = *state;
	static const char *const models[] = { "owner/model:" HEX64, HEX64 };

	for (size_t i = 0; i < 2; i++) {
		const seen *r;
		json_object *body, *v;

		srv_push(&f->srv, 201, NULL, created_body);
		assert_int_equal(submit(f, models[i], "{}"), DR_OK);
		r = srv_req(&f->srv, i);
		assert_string_equal(r->path, "/v1/predictions");
		body = rep_parse_json(r->body, strlen(r->body));
		assert_true(json_object_object_get_ex(body, "version", &v));
		assert_string_equal(json_object_get_string(v), HEX64);
		json_object_put(body);
	}
}

static void test_submit_deployment(void **state)
{
	fixture *f = *state;

	mock_host_set(f->inst, "deployment", "true");
	mock_host_set(f->inst, "webhook_events", "completed, logs ,start");
	mock_host_set(f->inst, "cancel_after", "90s");
	create(f);
	srv_push(&f->srv, 201, NULL, created_body);
	srv_push(&f->srv, 201, NULL, created_body);
	assert_int_equal(submit(f, "acme/prod", "{}"), DR_OK);
	assert_string_equal(srv_req(&f->srv, 0)->path,
			    "/v1/deployments/acme/prod/predictions");
	assert_string_equal(req_header(srv_req(&f->srv, 0), "Cancel-After"),
			    "90s");
	assert_non_null(strstr(srv_req(&f->srv, 0)->body,
			       "\"webhook_events_filter\":[\"start\",\"logs\","
			       "\"completed\"]"));
	/* A pinned version still goes to /predictions. */
	assert_int_equal(submit(f, "acme/prod:" HEX64, "{}"), DR_OK);
	assert_string_equal(srv_req(&f->srv, 1)->path, "/v1/predictions");
}

/* No webhook URL: no webhook and no filter in the body. */
static void test_submit_without_webhook(void **state)
{
	fixture *f = *state;
	dr_job_view j = job_view("owner/model", "{}");

	j.webhook_url = NULL;
	srv_push(&f->srv, 201, NULL, created_body);
	assert_int_equal(f->ops->submit(f->state, &j, &f->pred, &f->err),
			 DR_OK);
	assert_null(strstr(srv_req(&f->srv, 0)->body, "webhook"));
}

/* A held answer may still be running, with output: returned as is. */
static void test_submit_prefer_wait(void **state)
{
	fixture *f = *state;
	const seen *r;

	mock_host_set(f->inst, "prefer_wait", "5s");
	create(f);
	srv_push(&f->srv, 201, NULL,
		 "{\"id\":\"" PRED_ID "\",\"status\":\"processing\","
		 "\"output\":[\"https://replicate.delivery/x/0.webp\"],"
		 "\"logs\":\" 50%|█████     | 2/4\"}");
	assert_int_equal(submit(f, "owner/model", "{}"), DR_OK);
	assert_int_equal(f->pred.status, DR_PRED_PROCESSING);
	assert_int_equal(f->pred.n_outputs, 1);
	NEAR(f->pred.progress, 0.5);
	r = srv_req(&f->srv, 0);
	assert_string_equal(req_header(r, "Prefer"), "wait=5");
}

static void test_submit_429_body(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 429, NULL,
		 "{\"title\":\"Request was throttled.\",\"detail\":\"Request "
		 "was throttled. Your rate limit resets in ~7s.\","
		 "\"status\":429,\"retry_after\":7}");
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_RATE_LIMITED);
	assert_int_equal(f->err.retryable, 1);
	NEAR(f->err.retry_after, 7.0);
	assert_string_equal(f->err.code, "rate_limited");
	assert_non_null(strstr(f->err.message, "resets in ~7s"));
	assert_int_equal(srv_count(&f->srv), 1); /* never retried here */
	assert_null(f->pred.id);
}

static void test_submit_429_header(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 429, "Retry-After: 12\r\n",
		 "{\"detail\":\"slow down\"}");
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_RATE_LIMITED);
	assert_int_equal(f->err.retryable, 1);
	NEAR(f->err.retry_after, 12.0);
	assert_int_equal(srv_count(&f->srv), 1);
}

static void test_submit_429_default(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 429, NULL, "");
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_RATE_LIMITED);
	NEAR(f->err.retry_after, 5.0);
	assert_int_equal(srv_count(&f->srv), 1);
}

/* A 5xx on a create may have made the prediction: not retried, not
 * retryable; the core reconciles. */
static void test_submit_500(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 500, NULL, "{\"detail\":\"internal error\"}");
	srv_push(&f->srv, 201, NULL, created_body);
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_PROVIDER);
	assert_string_equal(f->err.code, "provider_error");
	assert_int_equal(f->err.retryable, 0);
	assert_non_null(strstr(f->err.message, "500"));
	assert_int_equal(srv_count(&f->srv), 1);
	assert_null(f->pred.id);
}

static void test_submit_401(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 401, NULL,
		 "{\"title\":\"Unauthenticated\",\"detail\":\"You did not "
		 "pass a valid authentication token\",\"status\":401}");
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_AUTH);
	assert_string_equal(f->err.code, "provider_auth");
	assert_int_equal(f->err.retryable, 0);
	assert_null(strstr(f->err.message, TOKEN));
	srv_push(&f->srv, 403, NULL, "");
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_AUTH);
	assert_string_equal(f->err.code, "provider_auth");
}

static void test_submit_404(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 404, NULL,
		 "{\"title\":\"Not found\",\"detail\":\"The requested "
		 "resource could not be found.\",\"status\":404}");
	assert_int_equal(submit(f, "owner/nope", "{}"), DR_ERR_INVALID);
	assert_string_equal(f->err.code, "unknown_model");
	assert_int_equal(strncmp(f->err.message, "model: ", 7), 0);
	assert_int_equal(f->err.retryable, 0);
}

/* The provider's detail, cleaned, cut, and without the token even if
 * the provider echoed it. */
static void test_submit_422(void **state)
{
	fixture *f = *state;
	static const char body[] =
		"{\"title\":\"Input validation failed\",\"detail\":\"  - "
		"input.width: Must be less than or equal to 1440\\n"
		"(token " TOKEN ")\",\"status\":422,\"invalid_fields\":[{"
		"\"field\":\"input.width\"}]}";
	char long_body[2048];

	srv_push(&f->srv, 422, NULL, body);
	assert_int_equal(submit(f, "owner/model", "{\"width\":5000}"),
			 DR_ERR_INVALID);
	assert_string_equal(f->err.code, "provider_rejected_input");
	assert_int_equal(strncmp(f->err.message, "input: ", 7), 0);
	assert_non_null(strstr(f->err.message, "input.width: Must be less "
					       "than or equal to 1440 (token "
					       "[redacted])"));
	assert_null(strstr(f->err.message, TOKEN));
	assert_null(strchr(f->err.message, '\n'));

	snprintf(long_body, sizeof(long_body), "{\"detail\":\"%01000d\"}", 7);
	srv_push(&f->srv, 400, NULL, long_body);
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_INVALID);
	assert_string_equal(f->err.code, "provider_rejected_input");
	assert_true(strlen(f->err.message) < REP_DETAIL_MAX + 100);
}

/* Nothing listens: the create surely was not sent, try again later. */
static void test_submit_unreachable(void **state)
{
	fixture *f = *state;
	char base[64];

	snprintf(base, sizeof(base), "http://127.0.0.1:%d/v1", closed_port());
	mock_host_set(f->inst, "api_base", base);
	create(f);
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_NETWORK);
	assert_string_equal(f->err.code, "provider_unreachable");
	assert_int_equal(f->err.retryable, 1);
	assert_null(f->pred.id);

	mock_host_set(f->inst, "api_base", "http://nonexistent.invalid/v1");
	mock_host_set(f->inst, "connect_timeout", "2s");
	f->plugin->destroy(f->state);
	create(f);
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_NETWORK);
	assert_string_equal(f->err.code, "provider_unreachable");
	assert_int_equal(f->err.retryable, 1);
}

/* The server read the create, then hung up: maybe made, not retryable. */
static void test_submit_dropped(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 0, NULL, NULL);
	srv_push(&f->srv, 201, NULL, created_body);
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_NETWORK);
	assert_string_equal(f->err.code, "provider_connection_lost");
	assert_int_equal(f->err.retryable, 0);
	assert_int_equal(srv_count(&f->srv), 1);
}

static void test_submit_timeout(void **state)
{
	fixture *f = *state;

	mock_host_set(f->inst, "timeout", "300ms");
	create(f);
	srv_push_canned(&f->srv, (canned){ 201, NULL, created_body, 0, 1.5 });
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_TIMEOUT);
	assert_string_equal(f->err.code, "provider_timeout");
	assert_int_equal(f->err.retryable, 0);
	assert_int_equal(srv_count(&f->srv), 1);
}

/* A 201 whose body is unusable: the prediction exists, do not retry. */
static void test_submit_bad_answer(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 201, NULL, "<html>oops</html>");
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_PROVIDER);
	assert_string_equal(f->err.code, "bad_prediction");
	assert_int_equal(f->err.retryable, 0);
	assert_null(f->pred.id);
}

static void test_submit_redirect_not_followed(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 307, "Location: http://127.0.0.1:1/elsewhere\r\n",
		 "");
	assert_int_equal(submit(f, "owner/model", "{}"), DR_ERR_PROVIDER);
	assert_int_equal(srv_count(&f->srv), 1);
	assert_non_null(strstr(f->err.message, "redirects"));
}

static void test_response_too_large(void **state)
{
	fixture *f = *state;
	size_t n = REP_MAX_RESPONSE + 1024;
	char *big = malloc(n + 1);

	assert_non_null(big);
	memset(big, ' ', n);
	big[n] = '\0';
	big[0] = '{';
	big[n - 1] = '}';
	srv_push_canned(&f->srv, (canned){ 200, NULL, big, n, 0 });
	assert_int_equal(get(f, PRED_ID), DR_ERR_TOO_LARGE);
	assert_string_equal(f->err.code, "provider_response_too_large");
	srv_stop(&f->srv); /* the server must be done with `big` */
	srv_start(&f->srv);
	free(big);
}

/* ------------------------------------------------------------------------
 * get, cancel
 */

static void test_get_ok(void **state)
{
	fixture *f = *state;
	const seen *r;

	srv_push(&f->srv, 200, NULL,
		 "{\"id\":\"" PRED_ID "\",\"status\":\"succeeded\","
		 "\"output\":[\"https://replicate.delivery/a/0.webp\"],"
		 "\"metrics\":{\"predict_time\":1.83},\"completed_at\":"
		 "\"2024-05-01T10:00:03.987654321Z\"}");
	assert_int_equal(get(f, PRED_ID), DR_OK);
	assert_int_equal(f->pred.status, DR_PRED_SUCCEEDED);
	NEAR(f->pred.progress, 1.0);
	NEAR(f->pred.predict_time, 1.83);
	assert_string_equal(f->pred.completed_at,
			    "2024-05-01T10:00:03.987654321Z");
	r = srv_req(&f->srv, 0);
	assert_string_equal(r->method, "GET");
	assert_string_equal(r->path, "/v1/predictions/" PRED_ID);
	assert_string_equal(req_header(r, "Authorization"), "Bearer " TOKEN);
	assert_null(req_header(r, "Cancel-After"));
}

/* GETs are safe to repeat: a 5xx is retried. */
static void test_get_500_then_200(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 502, NULL, "bad gateway");
	srv_push(&f->srv, 200, NULL,
		 "{\"id\":\"" PRED_ID "\",\"status\":\"processing\"}");
	assert_int_equal(get(f, PRED_ID), DR_OK);
	assert_int_equal(f->pred.status, DR_PRED_PROCESSING);
	assert_int_equal(srv_count(&f->srv), 2);
	assert_true(mock_host_log_has(f->inst, "event=replicate.retry op=get"));
}

static void test_get_500_always(void **state)
{
	fixture *f = *state;

	for (int i = 0; i < 5; i++)
		srv_push(&f->srv, 503, NULL, "{\"detail\":\"down\"}");
	assert_int_equal(get(f, PRED_ID), DR_ERR_PROVIDER);
	assert_string_equal(f->err.code, "provider_error");
	assert_int_equal(f->err.retryable, 1);
	assert_int_equal(srv_count(&f->srv), 4); /* 1 + 3 retries */
}

static void test_get_dropped_then_ok(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 0, NULL, NULL);
	srv_push(&f->srv, 200, NULL,
		 "{\"id\":\"" PRED_ID "\",\"status\":\"starting\"}");
	assert_int_equal(get(f, PRED_ID), DR_OK);
	assert_int_equal(srv_count(&f->srv), 2);
}

static void test_get_404_429(void **state)
{
	fixture *f = *state;

	srv_push(&f->srv, 404, NULL, "{\"detail\":\"Not found.\"}");
	assert_int_equal(get(f, PRED_ID), DR_ERR_NOT_FOUND);
	assert_string_equal(f->err.code, "prediction_not_found");
	srv_push(&f->srv, 429, "Retry-After: 9\r\n", "{}");
	assert_int_equal(get(f, PRED_ID), DR_ERR_RATE_LIMITED);
	NEAR(f->err.retry_after, 9.0);
	assert_int_equal(f->err.retryable, 1);
	assert_int_equal(srv_count(&f->srv), 2); /* no retry, no sleep */
	/* An id that cannot go into a URL is never sent. */
	assert_int_equal(get(f, "../secret"), DR_ERR_INVALID);
	assert_int_equal(get(f, NULL), DR_ERR_INVALID);
	assert_int_equal(srv_count(&f->srv), 2);
}

static void test_cancel(void **state)
{
	fixture *f = *state;
	dr_job_view j = job_view("owner/model", "{}");

	j.prediction_id = PRED_ID;
	srv_push(&f->srv, 200, NULL,
		 "{\"id\":\"" PRED_ID "\",\"status\":\"canceled\"}");
	assert_int_equal(f->ops->cancel(f->state, &j, &f->err), DR_OK);
	assert_string_equal(srv_req(&f->srv, 0)->method, "POST");
	assert_string_equal(srv_req(&f->srv, 0)->path,
			    "/v1/predictions/" PRED_ID "/cancel");
	/* Already final: fine. */
	srv_push(&f->srv, 200, NULL,
		 "{\"id\":\"" PRED_ID "\",\"status\":\"succeeded\"}");
	assert_int_equal(f->ops->cancel(f->state, &j, &f->err), DR_OK);
	srv_push(&f->srv, 409, NULL, "{\"detail\":\"already completed\"}");
	assert_int_equal(f->ops->cancel(f->state, &j, &f->err), DR_OK);
	srv_push(&f->srv, 404, NULL, "{}");
	assert_int_equal(f->ops->cancel(f->state, &j, &f->err),
			 DR_ERR_NOT_FOUND);
	srv_push(&f->srv, 401, NULL, "{}");
	assert_int_equal(f->ops->cancel(f->state, &j, &f->err), DR_ERR_AUTH);
	assert_int_equal(srv_count(&f->srv), 5);
	/* Nothing submitted yet: nothing to cancel. */
	j.prediction_id = NULL;
	assert_int_equal(f->ops->cancel(f->state, &j, &f->err), DR_OK);
	assert_int_equal(srv_count(&f->srv), 5);
}

/* ------------------------------------------------------------------------
 * webhook
 */

static const char hook_body[] =
	"{\"id\":\"" PRED_ID "\",\"status\":\"succeeded\",\"output\":"
	"\"https://replicate.delivery/a/0.webp\"}";

static dr_status deliver(fixture *f, const char *sig, char **delivery)
{
	static const char *const names[] = { "content-type", "webhook-id",
					     "webhook-timestamp",
					     "webhook-signature" };
	const char *values[4] = { "application/json", "msg_2Kx9", "1714557600",
				  sig };
	dr_webhook_request req = {
		.header_names = names,
		.header_values = values,
		.n_headers = sig ? 4 : 3,
		.body = (const unsigned char *)hook_body,
		.body_len = strlen(hook_body),
		.received_at = 1714557601.0,
	};

	rep_prediction_clear(&f->pred);
	memset(&f->err, 0, sizeof(f->err));
	*delivery = NULL;
	return f->ops->webhook(f->state, &req, &f->pred, delivery, &f->err);
}

static void test_webhook_configured(void **state)
{
	fixture *f = *state;
	char *id;

	mock_host_set(f->inst, "webhook_secret", "whsec_current");
	mock_host_set(f->inst, "webhook_secret_previous", "whsec_old");
	create(f);
	assert_int_equal(deliver(f, "v1,whsec_current", &id), DR_OK);
	assert_string_equal(id, "msg_2Kx9");
	free(id);
	assert_string_equal(f->pred.id, PRED_ID);
	assert_int_equal(f->pred.status, DR_PRED_SUCCEEDED);
	assert_int_equal(f->pred.n_outputs, 1);
	assert_int_equal(stub_n_secrets, 2);
	assert_string_equal(stub_secrets[0], "whsec_current");
	assert_string_equal(stub_secrets[1], "whsec_old");
	NEAR(stub_tolerance, 300.0);
	/* Rotation: the previous secret still works. */
	assert_int_equal(deliver(f, "v1,whsec_old", &id), DR_OK);
	free(id);
	/* Forged or unsigned: DR_ERR_AUTH, nothing parsed. */
	assert_int_equal(deliver(f, "v1,whsec_forged", &id), DR_ERR_AUTH);
	assert_string_equal(f->err.code, "bad_signature");
	assert_null(id);
	assert_null(f->pred.id);
	assert_int_equal(deliver(f, NULL, &id), DR_ERR_AUTH);
	assert_string_equal(f->err.code, "missing_header");
	assert_int_equal(srv_count(&f->srv), 0);
}

/* No secret configured: the worker's maintain() fetches the account's
 * and stores it; the webhook handler only reads the store, never
 * Replicate, and cannot verify anything before the worker stored it. */
static void test_webhook_stored_secret(void **state)
{
	fixture *f = *state;
	char *id;

	mock_host_set_now(1000);
	create(f);
	assert_int_equal(deliver(f, "v1,whsec_fetched", &id),
			 DR_ERR_UNAVAILABLE);
	assert_string_equal(f->err.code, "webhook_secret_unavailable");
	assert_int_equal(f->err.retryable, 1);
	assert_null(id);
	assert_int_equal(srv_count(&f->srv), 0);

	srv_push(&f->srv, 200, NULL, "{\"key\":\"whsec_fetched\"}");
	assert_int_equal(f->ops->maintain(f->state, &f->err), DR_OK);
	assert_int_equal(srv_count(&f->srv), 1);
	assert_string_equal(srv_req(&f->srv, 0)->path,
			    "/v1/webhooks/default/secret");
	assert_string_equal(req_header(srv_req(&f->srv, 0), "Authorization"),
			    "Bearer " TOKEN);
	assert_string_equal(mock_host_kv_value(f->inst, "webhook_secret"),
			    "whsec_fetched");

	assert_int_equal(deliver(f, "v1,whsec_fetched", &id), DR_OK);
	free(id);
	assert_int_equal(stub_n_secrets, 1);
	assert_int_equal(mock_host_kv_gets(f->inst), 3); /* maintain's too */
	/* Kept a few seconds: no read of the store per delivery. */
	assert_int_equal(deliver(f, "v1,whsec_fetched", &id), DR_OK);
	free(id);
	assert_int_equal(mock_host_kv_gets(f->inst), 3);
	/* A bad signature calls nobody. */
	assert_int_equal(deliver(f, "v1,whsec_rotated", &id), DR_ERR_AUTH);
	assert_int_equal(srv_count(&f->srv), 1);

	/* The worker's next rounds: nothing to do while the stored copy
	 * is fresh... */
	mock_host_set_now(1000 + 60);
	assert_int_equal(f->ops->maintain(f->state, &f->err), DR_OK);
	assert_int_equal(srv_count(&f->srv), 1);
	/* ...fetched again once it is old, which picks up a rotation. */
	mock_host_set_now(1000 + 601);
	srv_push(&f->srv, 200, NULL, "{\"key\":\"whsec_rotated\"}");
	assert_int_equal(f->ops->maintain(f->state, &f->err), DR_OK);
	assert_int_equal(srv_count(&f->srv), 2);
	assert_string_equal(mock_host_kv_value(f->inst, "webhook_secret"),
			    "whsec_rotated");
	assert_int_equal(deliver(f, "v1,whsec_rotated", &id), DR_OK);
	free(id);
	assert_int_equal(deliver(f, "v1,whsec_fetched", &id), DR_ERR_AUTH);

	/* The store away for a moment: the last copy still verifies. */
	mock_host_kv_down(f->inst, 1);
	mock_host_set_now(1000 + 700);
	assert_int_equal(deliver(f, "v1,whsec_rotated", &id), DR_OK);
	free(id);
	assert_int_equal(f->ops->maintain(f->state, &f->err),
			 DR_ERR_UNAVAILABLE);
	assert_int_equal(srv_count(&f->srv), 2);
	mock_host_kv_down(f->inst, 0);
}

static void test_webhook_secret_unavailable(void **state)
{
	fixture *f = *state;
	char *id;

	create(f);
	/* Our token refused: nothing stored, and the delivery cannot be
	 * checked, which is not the same as forged (no 401 to the
	 * provider, which retries). */
	srv_push(&f->srv, 401, NULL, "{}");
	assert_int_equal(f->ops->maintain(f->state, &f->err), DR_ERR_AUTH);
	assert_null(mock_host_kv_value(f->inst, "webhook_secret"));
	assert_int_equal(deliver(f, "v1,whsec_x", &id), DR_ERR_UNAVAILABLE);
	assert_string_equal(f->err.code, "webhook_secret_unavailable");
	assert_int_equal(f->err.retryable, 1);
	assert_null(id);
	assert_int_equal(stub_n_secrets, 0);
	srv_push(&f->srv, 200, NULL, "{\"nokey\":1}");
	assert_int_equal(f->ops->maintain(f->state, &f->err),
			 DR_ERR_PROVIDER);
	assert_null(mock_host_kv_value(f->inst, "webhook_secret"));
	assert_int_equal(srv_count(&f->srv), 2);
	/* The store cannot be read and there is no earlier copy. */
	mock_host_kv_down(f->inst, 1);
	assert_int_equal(deliver(f, "v1,whsec_x", &id), DR_ERR_UNAVAILABLE);
	assert_non_null(strstr(f->err.message, "cannot read"));
	mock_host_kv_down(f->inst, 0);
	assert_int_equal(srv_count(&f->srv), 2);
	/* Neither a secret nor a token: a configuration problem, and
	 * nothing for maintain() to do. */
	f->plugin->destroy(f->state);
	mock_host_set(f->inst, "token", NULL);
	create(f);
	assert_int_equal(deliver(f, "v1,whsec_x", &id), DR_ERR_CONFIG);
	assert_string_equal(f->err.code, "missing_token");
	assert_int_equal(f->ops->maintain(f->state, &f->err), DR_OK);
	assert_int_equal(srv_count(&f->srv), 2);
}

/* A configured secret: maintain() has nothing to fetch. */
static void test_maintain_configured(void **state)
{
	fixture *f = *state;

	mock_host_set(f->inst, "webhook_secret", "whsec_current");
	create(f);
	assert_int_equal(f->ops->maintain(f->state, &f->err), DR_OK);
	assert_int_equal(srv_count(&f->srv), 0);
	assert_int_equal(mock_host_kv_gets(f->inst), 0);
	assert_int_equal(mock_host_kv_puts(f->inst), 0);
}

static void test_webhook_bad_body(void **state)
{
	fixture *f = *state;
	static const char *const names[] = { "webhook-id", "webhook-timestamp",
					     "webhook-signature" };
	static const char *const values[] = { "msg_1", "1714557600",
					      "v1,whsec_current" };
	dr_webhook_request req = {
		names, values, 3, (const unsigned char *)"{\"id\":", 6, 0
	};
	char *id = NULL;

	mock_host_set(f->inst, "webhook_secret", "whsec_current");
	create(f);
	assert_int_equal(
		f->ops->webhook(f->state, &req, &f->pred, &id, &f->err),
		DR_ERR_PROVIDER);
	assert_null(id);
	assert_null(f->pred.id);
}

/* The real Standard Webhooks verifier of the mock host, end to end. */
static void test_webhook_real_signature(void **state)
{
	fixture *f = *state;
	static const char secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
	static const char *const names[] = { "webhook-id", "webhook-timestamp",
					     "webhook-signature" };
	const char *values[3] = { "msg_p5jXN8AQM9LWM0D4loKWxJek", "1714557600",
				  NULL };
	char sig[128], body[sizeof(hook_body)], *id = NULL, saved;
	dr_webhook_request req = { names,
				   values,
				   3,
				   (const unsigned char *)body,
				   strlen(hook_body),
				   1714557630.0 };

	f->host = *mock_host();
	mock_host_set(f->inst, "webhook_secret",
		      "whsec_dGhlIGN1cnJlbnQgc2VjcmV0");
	mock_host_set(f->inst, "webhook_secret_previous", secret);
	create(f);
	memcpy(body, hook_body, sizeof(hook_body));
	assert_int_equal(webhook_sign(secret, values[0], 1714557600, body,
				      strlen(body), sig, sizeof(sig)),
			 DR_OK);
	values[2] = sig;
	assert_int_equal(
		f->ops->webhook(f->state, &req, &f->pred, &id, &f->err), DR_OK);
	assert_string_equal(id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
	free(id);
	assert_string_equal(f->pred.id, PRED_ID);
	assert_int_equal(f->pred.n_outputs, 1);
	rep_prediction_clear(&f->pred);

	/* One byte of the body changed: refused. */
	saved = body[strlen(body) - 3];
	body[strlen(body) - 3] = 'X';
	id = NULL;
	assert_int_equal(
		f->ops->webhook(f->state, &req, &f->pred, &id, &f->err),
		DR_ERR_AUTH);
	assert_null(id);
	assert_null(f->pred.id);
	/* Ten minutes late: refused (tolerance 5 minutes). */
	body[strlen(body) - 3] = saved;
	req.received_at = 1714557600.0 + 600;
	assert_int_equal(
		f->ops->webhook(f->state, &req, &f->pred, &id, &f->err),
		DR_ERR_AUTH);
}

/* A core without the verifier in its table: refused, not accepted. */
static void test_webhook_old_host(void **state)
{
	fixture *f = *state;
	char *id;

	f->host.webhook_verify = NULL;
	mock_host_set(f->inst, "webhook_secret", "whsec_current");
	create(f);
	assert_int_equal(deliver(f, "v1,whsec_current", &id),
			 DR_ERR_UNSUPPORTED);
	assert_null(id);
}

/* ------------------------------------------------------------------------
 * reconcile
 */

#define SUBMITTED_AT 1714557600.0 /* 2024-05-01T10:00:00Z */

static dr_status reconcile(fixture *f, const char *model, const char *input)
{
	dr_job_view j = job_view(model, input);

	j.submitted_at = SUBMITTED_AT;
	rep_prediction_clear(&f->pred);
	memset(&f->err, 0, sizeof(f->err));
	return f->ops->reconcile(f->state, &j, &f->pred, &f->err);
}

static void test_reconcile_by_webhook(void **state)
{
	fixture *f = *state;
	static const char list[] =
		"{\"next\":null,\"results\":["
		"{\"id\":\"newer\",\"model\":\"owner/model\",\"created_at\":"
		"\"2024-05-01T10:00:09Z\",\"input\":{\"p\":1},\"webhook\":"
		"\"https://d.example/v1/hooks/replicate?job=" JOB_ID "X\"},"
		"{\"id\":\"mine\",\"model\":\"owner/model\",\"created_at\":"
		"\"2024-05-01T10:00:01.5Z\",\"input\":{\"p\":2},\"webhook\":"
		"\"https://d.example/v1/hooks/replicate?job=" JOB_ID "\"},"
		"{\"id\":\"old\",\"created_at\":\"2024-05-01T09:00:00Z\"}]}";

	srv_push(&f->srv, 200, NULL, list);
	srv_push(&f->srv, 200, NULL,
		 "{\"id\":\"mine\",\"status\":\"processing\"}");
	assert_int_equal(reconcile(f, "owner/model", "{\"p\":1}"), DR_OK);
	assert_string_equal(f->pred.id, "mine");
	assert_int_equal(f->pred.status, DR_PRED_PROCESSING);
	assert_int_equal(srv_count(&f->srv), 2);
	assert_string_equal(srv_req(&f->srv, 0)->path, "/v1/predictions");
	assert_string_equal(srv_req(&f->srv, 1)->path, "/v1/predictions/mine");
	assert_true(mock_host_log_has(f->inst, "by=webhook"));
}

/* Without webhook fields: same input and model, closest to the submit. */
static void test_reconcile_by_input(void **state)
{
	fixture *f = *state;
	char page1[1024], page2[1024];

	snprintf(page1, sizeof(page1),
		 "{\"next\":\"%s/predictions?cursor=c2\",\"results\":["
		 "{\"id\":\"other_model\",\"model\":\"owner/other\","
		 "\"created_at\":\"2024-05-01T10:00:02Z\",\"input\":"
		 "{\"prompt\":\"x\",\"n\":2}},"
		 "{\"id\":\"later\",\"model\":\"owner/model\",\"created_at\":"
		 "\"2024-05-01T10:00:30Z\",\"input\":{\"n\":2,\"prompt\":\"x\"}"
		 "},"
		 "{\"id\":\"other_input\",\"model\":\"owner/model\","
		 "\"created_at\":\"2024-05-01T10:00:01Z\",\"input\":"
		 "{\"prompt\":\"y\",\"n\":2}}]}",
		 f->base);
	snprintf(page2, sizeof(page2),
		 "{\"next\":\"%s/predictions?cursor=c3\",\"results\":["
		 "{\"id\":\"closest\",\"model\":\"owner/model\",\"created_at\":"
		 "\"2024-05-01T10:00:00.2Z\",\"input\":{\"prompt\":\"x\","
		 "\"n\":2}},"
		 "{\"id\":\"too_old\",\"model\":\"owner/model\",\"created_at\":"
		 "\"2024-05-01T09:58:00Z\",\"input\":{\"prompt\":\"x\","
		 "\"n\":2}}]}",
		 f->base);
	srv_push(&f->srv, 200, NULL, page1);
	srv_push(&f->srv, 200, NULL, page2);
	srv_push(&f->srv, 200, NULL,
		 "{\"id\":\"closest\",\"status\":\"succeeded\"}");
	assert_int_equal(
		reconcile(f, "owner/model", "{\"prompt\":\"x\",\"n\":2}"),
		DR_OK);
	assert_string_equal(f->pred.id, "closest");
	/* Page 2 reached back past the window: no page 3. */
	assert_int_equal(srv_count(&f->srv), 3);
	assert_string_equal(srv_req(&f->srv, 1)->path,
			    "/v1/predictions?cursor=c2");
	assert_string_equal(srv_req(&f->srv, 2)->path,
			    "/v1/predictions/closest");
	assert_true(mock_host_log_has(f->inst, "by=input"));
}

static void test_reconcile_version(void **state)
{
	fixture *f = *state;
	static const char list[] =
		"{\"results\":[{\"id\":\"v_other\",\"version\":\"0" HEX64 "\","
		"\"created_at\":\"2024-05-01T10:00:01Z\",\"input\":{}},"
		"{\"id\":\"v_mine\",\"version\":\"" HEX64 "\",\"created_at\":"
		"\"2024-05-01T10:00:02Z\",\"input\":{}}]}";

	srv_push(&f->srv, 200, NULL, list);
	srv_push(&f->srv, 200, NULL, "{\"id\":\"v_mine\"}");
	assert_int_equal(reconcile(f, HEX64, "{}"), DR_OK);
	assert_string_equal(f->pred.id, "v_mine");
}

static void test_reconcile_not_found(void **state)
{
	fixture *f = *state;
	char list[1024];
	dr_job_view j = job_view("owner/model", "{}");

	/* Another job's webhook with the same input is not ours. */
	snprintf(list, sizeof(list),
		 "{\"next\":\"http://evil.example/v1/predictions?c=1\","
		 "\"results\":[{\"id\":\"theirs\",\"model\":\"owner/model\","
		 "\"created_at\":\"2024-05-01T10:00:01Z\",\"input\":{},"
		 "\"webhook\":\"https://d.example/hook?job=j_other\"}]}");
	srv_push(&f->srv, 200, NULL, list);
	assert_int_equal(reconcile(f, "owner/model", "{}"), DR_ERR_NOT_FOUND);
	/* The foreign `next` was not followed (the token stays home). */
	assert_int_equal(srv_count(&f->srv), 1);

	/* Nothing submitted before: nothing to look for. */
	assert_int_equal(f->ops->reconcile(f->state, &j, &f->pred, &f->err),
			 DR_ERR_NOT_FOUND);
	assert_int_equal(srv_count(&f->srv), 1);

	srv_push(&f->srv, 500, NULL, "{}");
	srv_push(&f->srv, 200, NULL, "{\"results\":[]}");
	assert_int_equal(reconcile(f, "owner/model", "{}"), DR_ERR_NOT_FOUND);
	assert_int_equal(srv_count(&f->srv), 3);

	srv_push(&f->srv, 429, NULL, "{\"retry_after\":4}");
	assert_int_equal(reconcile(f, "owner/model", "{}"),
			 DR_ERR_RATE_LIMITED);
	NEAR(f->err.retry_after, 4.0);
}

/* At most five pages are read. */
static void test_reconcile_page_limit(void **state)
{
	fixture *f = *state;
	char page[512];

	snprintf(page, sizeof(page),
		 "{\"next\":\"%s/predictions?cursor=more\",\"results\":[{"
		 "\"id\":\"x\",\"model\":\"owner/other\",\"created_at\":"
		 "\"2024-05-01T10:00:05Z\",\"input\":{}}]}",
		 f->base);
	for (int i = 0; i < 7; i++)
		srv_push(&f->srv, 200, NULL, page);
	assert_int_equal(reconcile(f, "owner/model", "{}"), DR_ERR_NOT_FOUND);
	assert_int_equal(srv_count(&f->srv), 5);
}

/* The adapter verifies the body as received and parses the document the
 * host gives for it (the body with its files taken out). */
static void test_webhook_document(void **state)
{
	fixture *f = *state;
	static const char secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
	static const char *const names[] = { "webhook-id", "webhook-timestamp",
					     "webhook-signature" };
	static const char doc[] =
		"{\"id\":\"" PRED_ID "\",\"status\":\"succeeded\",\"output\":"
		"[\"data:image/png;darkroom-blob=0123456789abcdefghjkmnpqrs,\"]}";
	const char *values[3] = { "msg_doc", "1714557600", NULL };
	char sig[128], *id = NULL;
	dr_webhook_request req = { names,
				   values,
				   3,
				   (const unsigned char *)hook_body,
				   strlen(hook_body),
				   1714557630.0 };

	f->host = *mock_host();
	mock_host_set(f->inst, "webhook_secret", secret);
	create(f);
	assert_int_equal(webhook_sign(secret, values[0], 1714557600, hook_body,
				      strlen(hook_body), sig, sizeof(sig)),
			 DR_OK);
	values[2] = sig;
	mock_host_set_document(doc);
	assert_int_equal(
		f->ops->webhook(f->state, &req, &f->pred, &id, &f->err), DR_OK);
	mock_host_set_document(NULL);
	free(id);
	assert_int_equal(f->pred.n_outputs, 1);
	assert_int_equal(f->pred.outputs[0].kind, DR_OUTPUT_DATA);
	assert_string_equal(f->pred.outputs[0].value,
			    "data:image/png;darkroom-blob="
			    "0123456789abcdefghjkmnpqrs,");
	rep_prediction_clear(&f->pred);
}

/* ------------------------------------------------------------------------
 * trainings
 */

static dr_job_view training_view(const char *trainer, const char *dest)
{
	dr_job_view j = job_view(trainer, "{\"steps\":1000}");

	j.kind = DR_JOB_TRAINING;
	j.destination = dest;
	return j;
}

/* The descriptor says it runs trainings; validate wants a versioned
 * trainer and an owner/name destination. */
static void test_training_validate(void **state)
{
	fixture *f = *state;
	dr_job_view j = training_view("owner/trainer:" HEX64, "acme/brand");

	assert_int_equal(f->ops->trainings, 1);
	assert_int_equal(f->ops->validate(f->state, &j, &f->err), DR_OK);
	j.model = "owner/trainer";
	assert_int_equal(f->ops->validate(f->state, &j, &f->err),
			 DR_ERR_INVALID);
	assert_int_equal(strncmp(f->err.message, "trainer: ", 9), 0);
	j.model = HEX64;
	assert_int_equal(f->ops->validate(f->state, &j, &f->err),
			 DR_ERR_INVALID);
	assert_int_equal(strncmp(f->err.message, "trainer: ", 9), 0);
	j.model = "owner/trainer:" HEX64;
	j.destination = "acme/brand:" HEX64;
	assert_int_equal(f->ops->validate(f->state, &j, &f->err),
			 DR_ERR_INVALID);
	assert_int_equal(strncmp(f->err.message, "destination: ", 13), 0);
	j.destination = NULL;
	assert_int_equal(f->ops->validate(f->state, &j, &f->err),
			 DR_ERR_INVALID);
}

/* POST /models/{owner}/{name}/versions/{version}/trainings with
 * destination, input, webhook and its filter; no Cancel-After. */
static void test_training_submit(void **state)
{
	fixture *f = *state;
	dr_job_view j = training_view("owner/trainer:" HEX64, "acme/brand");
	const seen *r;
	json_object *body, *v;

	srv_push(&f->srv, 201, NULL,
		 "{\"id\":\"" PRED_ID "\",\"status\":\"starting\","
		 "\"version\":\"" HEX64 "\",\"output\":null}");
	assert_int_equal(f->ops->submit(f->state, &j, &f->pred, &f->err),
			 DR_OK);
	assert_string_equal(f->pred.id, PRED_ID);
	r = srv_req(&f->srv, 0);
	assert_string_equal(r->method, "POST");
	assert_string_equal(r->path, "/v1/models/owner/trainer/versions/" HEX64
				     "/trainings");
	assert_null(req_header(r, "Cancel-After"));
	assert_null(req_header(r, "Prefer"));
	body = rep_parse_json(r->body, strlen(r->body));
	assert_non_null(body);
	assert_true(json_object_object_get_ex(body, "destination", &v));
	assert_string_equal(json_object_get_string(v), "acme/brand");
	assert_false(json_object_object_get_ex(body, "version", &v));
	assert_true(json_object_object_get_ex(body, "input", &v));
	assert_string_equal(
		json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN),
		"{\"steps\":1000}");
	assert_true(json_object_object_get_ex(body, "webhook", &v));
	assert_true(
		json_object_object_get_ex(body, "webhook_events_filter", &v));
	json_object_put(body);
}

/* A 404 naming the destination: destination_not_found; another 404: the
 * trainer is unknown. Neither is retryable. */
static void test_training_submit_404(void **state)
{
	fixture *f = *state;
	dr_job_view j = training_view("owner/trainer:" HEX64, "acme/none");

	srv_push(&f->srv, 404, NULL,
		 "{\"title\":\"Not found\",\"detail\":\"The specified "
		 "training destination does not exist\",\"status\":404}");
	assert_int_equal(f->ops->submit(f->state, &j, &f->pred, &f->err),
			 DR_ERR_INVALID);
	assert_string_equal(f->err.code, "destination_not_found");
	assert_int_equal(f->err.retryable, 0);
	rep_prediction_clear(&f->pred);
	memset(&f->err, 0, sizeof(f->err));
	srv_push(&f->srv, 404, NULL,
		 "{\"title\":\"Not found\",\"detail\":\"The requested "
		 "resource could not be found.\",\"status\":404}");
	assert_int_equal(f->ops->submit(f->state, &j, &f->pred, &f->err),
			 DR_ERR_INVALID);
	assert_string_equal(f->err.code, "unknown_model");
	assert_int_equal(strncmp(f->err.message, "trainer: ", 9), 0);
}

/* get, cancel and reconcile of a training use /trainings. */
static void test_training_get_cancel_reconcile(void **state)
{
	fixture *f = *state;
	dr_job_view j = training_view("owner/trainer:" HEX64, "acme/brand");

	j.prediction_id = PRED_ID;
	srv_push(&f->srv, 200, NULL,
		 "{\"id\":\"" PRED_ID "\",\"status\":\"processing\"}");
	assert_int_equal(f->ops->get(f->state, &j, &f->pred, &f->err), DR_OK);
	assert_string_equal(srv_req(&f->srv, 0)->path,
			    "/v1/trainings/" PRED_ID);
	srv_push(&f->srv, 200, NULL,
		 "{\"id\":\"" PRED_ID "\",\"status\":\"canceled\"}");
	assert_int_equal(f->ops->cancel(f->state, &j, &f->err), DR_OK);
	assert_string_equal(srv_req(&f->srv, 1)->path,
			    "/v1/trainings/" PRED_ID "/cancel");
	rep_prediction_clear(&f->pred);
	j.prediction_id = NULL;
	j.submitted_at = SUBMITTED_AT;
	srv_push(&f->srv, 200, NULL,
		 "{\"next\":null,\"results\":[{\"id\":\"mine\","
		 "\"created_at\":\"2024-05-01T10:00:01.5Z\",\"webhook\":"
		 "\"https://d.example/v1/hooks/replicate?job=" JOB_ID "\"}]}");
	srv_push(&f->srv, 200, NULL,
		 "{\"id\":\"mine\",\"status\":\"processing\"}");
	assert_int_equal(f->ops->reconcile(f->state, &j, &f->pred, &f->err),
			 DR_OK);
	assert_string_equal(f->pred.id, "mine");
	assert_string_equal(srv_req(&f->srv, 2)->path, "/v1/trainings");
	assert_string_equal(srv_req(&f->srv, 3)->path, "/v1/trainings/mine");
}

/* A succeeded training: output.version is kept as trained_version, the
 * weights URL is the one file output. */
static void test_norm_training_output(void **state)
{
	dr_prediction p;
	dr_error err;

	(void)state;
	assert_int_equal(
		norm("{\"id\":\"t1\",\"status\":\"succeeded\","
		     "\"version\":\"" HEX64 "\",\"output\":{\"version\":"
		     "\"acme/brand:" HEX64 "\",\"weights\":"
		     "\"https://replicate.delivery/x/trained_model.tar\"}}",
		     &p, &err),
		DR_OK);
	assert_string_equal(p.trained_version, "acme/brand:" HEX64);
	assert_string_equal(p.version, HEX64);
	assert_int_equal(p.n_outputs, 1);
	assert_int_equal(p.outputs[0].kind, DR_OUTPUT_URL);
	assert_string_equal(p.outputs[0].value,
			    "https://replicate.delivery/x/trained_model.tar");
	rep_prediction_clear(&p);
	/* Predictions have none. */
	assert_int_equal(norm("{\"id\":\"p1\",\"status\":\"succeeded\","
			      "\"output\":\"https://r.example/a.png\"}",
			      &p, &err),
			 DR_OK);
	assert_null(p.trained_version);
	rep_prediction_clear(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_descriptor),
		cmocka_unit_test_setup_teardown(test_no_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_validate_forms,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_validate_bad_models,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_validate_input,
						setup_created, teardown),
		cmocka_unit_test(test_norm_url_string),
		cmocka_unit_test(test_norm_url_list),
		cmocka_unit_test(test_norm_nested_object),
		cmocka_unit_test(test_norm_data_uri),
		cmocka_unit_test(test_norm_text_tokens),
		cmocka_unit_test(test_norm_plain_text),
		cmocka_unit_test(test_norm_mixed),
		cmocka_unit_test(test_norm_data_removed),
		cmocka_unit_test(test_norm_structured_text),
		cmocka_unit_test(test_norm_status),
		cmocka_unit_test(test_norm_progress),
		cmocka_unit_test(test_norm_predict_time),
		cmocka_unit_test(test_norm_bad_id),
		cmocka_unit_test(test_norm_fields),
		cmocka_unit_test(test_norm_training_output),
		cmocka_unit_test(test_norm_output_cap),
		cmocka_unit_test(test_norm_size_cap),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test_setup_teardown(test_submit_model_name,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_submit_version_forms,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_submit_deployment, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_submit_without_webhook,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_submit_prefer_wait, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_submit_429_body,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_submit_429_header,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_submit_429_default,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_submit_500, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_submit_401, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_submit_404, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_submit_422, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_submit_unreachable, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_submit_dropped,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_submit_timeout, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_submit_bad_answer,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(
			test_submit_redirect_not_followed, setup_created,
			teardown),
		cmocka_unit_test_setup_teardown(test_response_too_large,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_get_ok, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_get_500_then_200,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_get_500_always,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_get_dropped_then_ok,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_get_404_429, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_training_validate,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_training_submit,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_training_submit_404,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(
			test_training_get_cancel_reconcile, setup_created,
			teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_webhook_configured, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_maintain_configured,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_webhook_stored_secret,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_webhook_secret_unavailable,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_webhook_bad_body, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_webhook_real_signature,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_webhook_document,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_webhook_old_host, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reconcile_by_webhook,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile_by_input,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile_version,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile_not_found,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile_page_limit,
						setup_created, teardown),
	};
	static const char *const proxies[] = { "http_proxy",  "HTTP_PROXY",
					       "https_proxy", "HTTPS_PROXY",
					       "all_proxy",   "ALL_PROXY" };

	/* The canned server is on loopback: no proxy in between. */
	for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
		unsetenv(proxies[i]);
	return cmocka_run_group_tests_name("replicate adapter", tests, NULL,
					   NULL);
}
