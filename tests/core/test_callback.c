/*
 * test_callback.c - core/callback.c: a client callback delivered, retried
 * or given up, against a real MariaDB (tests/core/dbserver.h) and a small
 * HTTP receiver in a thread of this program.
 *
 * Each case makes an ended job whose callback is pending (as a worker
 * would find it), runs callback_deliver() with a claim of it, and checks
 * what reached the receiver, the job's delivery (callback_deliveries),
 * its tries (callback_attempts), the job object's "callback" and the
 * "callback" event it recorded. The receiver listens on 127.0.0.1 over
 * plain http, so the case setup allows both through the environment
 * (DARKROOM_DOWNLOAD_ALLOW_HTTP, read by netpolicy_env, and
 * DARKROOM_CALLBACK_ALLOW_PRIVATE); the cases about refused URLs and
 * addresses turn one off again. The schedule, Retry-After and the
 * intake's address rule are also tested as pure functions.
 */
/* cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "callback.h"
#include "dbserver.h"
#include "jobfix.h"
#include "jobs.h"
#include "jobstate.h"
#include "jsonutil.h"
#include "loopback.h"
#include "netpolicy.h"
#include "webhook.h"

#define SECRET		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define OTHER_SECRET	"whsec_c2Vjb25kIHNlY3JldCBmb3Igcm90YXRpb24="
#define MAX_ATTEMPTS	4 /* [worker] max_attempts: callbacks ignore it */
#define RETRY_BASE	100.0
#define RETRY_MAX	1000.0
#define TRIES		8 /* the first try and one after each of 7 waits */
#define CONNECT_TIMEOUT 1.0
#define FENCE		3 /* the lease_version of every job made here */

static dr_config cfg;
static dr_db *db;

/* ------------------------------------------------------------------
 * The receiver: one connection at a time, one request per connection,
 * answered with `status`, every request recorded. (test_timeout has a
 * socket of its own, which never takes the connection.)
 */

#define RX_MAX_HEAD 16384
#define RX_MAX_BODY (4u << 20)

static struct receiver {
	pthread_mutex_t mu;
	loopback_server srv;
	int status;		/* the answer to every request */
	const char *retry_after; /* its Retry-After header, or NULL */
	int conns;		/* connections accepted */
	int requests;		/* requests read whole */
	char head[RX_MAX_HEAD]; /* the last request's line and headers */
	char *body;		/* the last request's body (malloc) */
	size_t body_len;
} rx = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Read from `fd` into buf[*have..cap) once, waiting at most 5 s: bytes
 * read, 0 at the end, -1 on error or time out. */
static ssize_t read_some(int fd, char *buf, size_t *have, size_t cap)
{
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n;

	if (*have >= cap || poll(&p, 1, 5000) <= 0)
		return -1;
	n = read(fd, buf + *have, cap - *have);
	if (n > 0)
		*have += (size_t)n;
	return n;
}

/* The value of header `name` in a request head (a copy into out), or
 * NULL. */
static const char *head_value(const char *head, const char *name, char *out,
			      size_t n)
{
	size_t len = strlen(name);

	for (const char *l = strstr(head, "\r\n"); l; l = strstr(l, "\r\n")) {
		const char *e;

		l += 2;
		if (strncasecmp(l, name, len) != 0 || l[len] != ':')
			continue;
		l += len + 1;
		while (*l == ' ')
			l++;
		e = strstr(l, "\r\n");
		if (!e || (size_t)(e - l) >= n)
			return NULL;
		memcpy(out, l, (size_t)(e - l));
		out[e - l] = '\0';
		return out;
	}
	return NULL;
}

static void serve(int c, void *arg)
{
	char *buf = malloc(RX_MAX_HEAD + RX_MAX_BODY + 1);
	char cl[32], answer[320], ra[128];
	size_t have = 0, head_len, body_at, body_len;
	char *end = NULL;
	int status;

	(void)arg;
	pthread_mutex_lock(&rx.mu);
	rx.conns++;
	pthread_mutex_unlock(&rx.mu);
	if (!buf)
		abort();
	while (!end) {
		if (read_some(c, buf, &have, RX_MAX_HEAD - 1) <= 0)
			goto out;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	head_len = (size_t)(end - buf) + 2; /* with the last header's CRLF */
	body_at = head_len + 2;
	buf[head_len] = '\0';
	body_len = head_value(buf, "Content-Length", cl, sizeof(cl))
			   ? strtoul(cl, NULL, 10)
			   : 0;
	if (body_len > RX_MAX_BODY)
		goto out;
	while (have < body_at + body_len)
		if (read_some(c, buf, &have, body_at + body_len) <= 0)
			goto out;
	pthread_mutex_lock(&rx.mu);
	memcpy(rx.head, buf, head_len + 1);
	free(rx.body);
	rx.body = malloc(body_len + 1);
	if (!rx.body)
		abort();
	memcpy(rx.body, buf + body_at, body_len);
	rx.body[body_len] = '\0';
	rx.body_len = body_len;
	rx.requests++;
	status = rx.status;
	snprintf(ra, sizeof(ra), "%s%s%s",
		 rx.retry_after ? "Retry-After: " : "",
		 rx.retry_after ? rx.retry_after : "",
		 rx.retry_after ? "\r\n" : "");
	pthread_mutex_unlock(&rx.mu);
	snprintf(answer, sizeof(answer),
		 "HTTP/1.1 %d Test\r\nContent-Type: application/json\r\n"
		 "%sContent-Length: 2\r\nConnection: close\r\n\r\n{}",
		 status, ra);
	if (write(c, answer, strlen(answer)) < 0)
		goto out;
out:
	free(buf);
}

/* Answer `status` from now on and forget what came before. */
static void rx_reset(int status)
{
	pthread_mutex_lock(&rx.mu);
	rx.status = status;
	rx.retry_after = NULL;
	rx.conns = 0;
	rx.requests = 0;
	rx.head[0] = '\0';
	free(rx.body);
	rx.body = NULL;
	rx.body_len = 0;
	pthread_mutex_unlock(&rx.mu);
}

static int rx_count(const int *what)
{
	int n;

	pthread_mutex_lock(&rx.mu);
	n = *what;
	pthread_mutex_unlock(&rx.mu);
	return n;
}

/* The receiver's URL for `path` (static). */
static const char *rx_url(const char *path)
{
	static char url[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", rx.srv.port, path);
	return url;
}

/* ------------------------------------------------------------------
 * Setup
 */

static int group_setup(void **state)
{
	(void)state;
	if (dbserver_open("test_callback", "drt_callback", &cfg, &db) != 0)
		return -1;
	cfg.server.callback_secret = SECRET;
	cfg.worker.max_attempts = MAX_ATTEMPTS;
	cfg.worker.retry_base = RETRY_BASE;
	cfg.worker.retry_max = RETRY_MAX;
	cfg.limits.connect_timeout = CONNECT_TIMEOUT;
	rx.srv.serve = serve;
	if (loopback_start(&rx.srv, 16) != 0) {
		fprintf(stderr, "test_callback: receiver: %s\n",
			strerror(errno));
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	loopback_stop(&rx.srv);
	free(rx.body);
	dbserver_close(db);
	return 0;
}

/* Before each case: the receiver answers 200, and http and loopback are
 * allowed. */
static int case_setup(void **state)
{
	(void)state;
	rx_reset(200);
	setenv("DARKROOM_DOWNLOAD_ALLOW_HTTP", "1", 1);
	/* Callbacks have a setting of their own: the download one is off. */
	setenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE", "0", 1);
	setenv("DARKROOM_CALLBACK_ALLOW_PRIVATE", "1", 1);
	unsetenv("DARKROOM_DOWNLOAD_HOSTS");
	unsetenv("DARKROOM_TEST_CALLBACK_SCALE");
	cfg.server.callback_secret_previous = NULL;
	return 0;
}

/* ------------------------------------------------------------------
 * Helpers
 */

/* Make a succeeded job, ended now, whose callback to `url` is due after
 * `attempts` failed tries, and the claim a worker would hold on it. */
static void ended_job(const char *url, int attempts, dr_claim *c)
{
	jobfix f = { .status = "succeeded",
		     .step = "done",
		     .lease_version = FENCE,
		     .callback_url = url };

	memset(c, 0, sizeof(*c));
	jobfix_make(db, &f, c->id);
	jobfix_delivery(db, c->id, attempts);
	c->lease_version = FENCE;
	snprintf(c->status, sizeof(c->status), "succeeded");
	snprintf(c->step, sizeof(c->step), "done");
	snprintf(c->adapter, sizeof(c->adapter), "fake");
	snprintf(c->callback_state, sizeof(c->callback_state), "pending");
}

static void deliver(dr_claim *c)
{
	dr_step_ctx x = { .db = db, .cfg = &cfg, .plugins = NULL, .claim = c };
	dr_step_outcome o = callback_deliver(&x);

	/* The callback's state is the step's own business: always DONE. */
	assert_int_equal(o.kind, DR_STEP_DONE);
}

/* The detail of job `id`'s last event, which must be a "callback" event
 * from its status (parsed; json_object_put it). */
static json_object *last_callback_event(const char *id)
{
	dr_db_rows *rows = NULL;
	json_object *d;
	dr_error err;

	assert_ok(db_query_uncached(db,
				    "SELECT kind, from_status, to_status,"
				    " detail FROM job_events WHERE job_id = ?"
				    " ORDER BY id DESC LIMIT 1",
				    &rows, &err, DB_ARGS(DB_STR(id))),
		  err);
	assert_int_equal(rows->n_rows, 1);
	assert_string_equal(db_cell(rows, 0, 0), "callback");
	assert_string_equal(db_cell(rows, 0, 1), "succeeded");
	assert_null(db_cell(rows, 0, 2));
	assert_non_null(db_cell(rows, 0, 3));
	d = json_tokener_parse(db_cell(rows, 0, 3));
	assert_non_null(d);
	db_rows_free(rows);
	return d;
}

/* Field `key` of an event detail, or NULL. */
static const char *field(json_object *d, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(d, key, &v) ? json_object_get_string(v)
						     : NULL;
}

/* Assert the detail's `key` is `want` (NULL: absent). */
static void assert_field(json_object *d, const char *key, const char *want)
{
	const char *v = field(d, key);

	if (!want && v)
		fail_msg("event field %s: %s, want none (%s)", key, v,
			 json_object_to_json_string(d));
	if (want && (!v || strcmp(v, want) != 0))
		fail_msg("event field %s: %s, want %s (%s)", key,
			 v ? v : "none", want, json_object_to_json_string(d));
}

static long callback_events(const char *id)
{
	return jobfix_count(db,
			    "SELECT COUNT(*) FROM job_events"
			    " WHERE job_id = ? AND kind = 'callback'",
			    id);
}

/* Seconds from the database's now to job `id`'s run_at. */
static double due_in(const char *id)
{
	char *v = jobfix_col(db, id,
			     "TIMESTAMPDIFF(MICROSECOND, NOW(6), run_at)");
	double s = strtod(v, NULL) / 1e6;

	free(v);
	return s;
}

/* The webhook-id every try of job `id`'s current ending must carry:
 * "msg_<id>_<completed_at as epoch seconds, '.' as '_'>" (malloc). */
static char *expected_msg_id(const char *id)
{
	char *t = jobfix_col(db, id, "UNIX_TIMESTAMP(completed_at)");
	size_t n = strlen(id) + strlen(t) + 8;
	char *m = malloc(n);

	assert_non_null(m);
	snprintf(m, n, "msg_%s_%s", id, t);
	for (char *p = m; *p; p++)
		if (*p == '.')
			*p = '_';
	free(t);
	return m;
}

/* Svix's schedule: the wait after each failed try, in seconds. */
static const double svix[] = { 5, 300, 1800, 7200, 18000, 36000, 36000 };

/* A retry is due `want` seconds from now (within the test's slack). */
static void assert_due(const char *id, int tries, double want)
{
	double s = due_in(id);

	if (s < want - 3 || s > want + 1)
		fail_msg("try %d: due in %.1f s, want %.0f s", tries, s, want);
}

/* A retry is due after the schedule's wait for `tries` failed tries. */
static void assert_backoff(const char *id, int tries)
{
	assert_true(tries >= 1 && tries <= 7);
	assert_due(id, tries, svix[tries - 1]);
}

/* A try that failed and will be tried again: still pending, counted,
 * released, due after the backoff, and recorded with `code` and the
 * answer's `http` status. */
static void assert_retried(const char *id, int tries, const char *http,
			   const char *code)
{
	char n[16];
	json_object *d;

	snprintf(n, sizeof(n), "%d", tries);
	assert_cb(db, id, "state", "pending");
	assert_cb(db, id, "attempts", n);
	assert_col(db, id, "lease_owner", "(null)");
	assert_col(db, id, "lease_version", "3");
	assert_col(db, id, "status", "succeeded");
	assert_backoff(id, tries);
	d = last_callback_event(id);
	assert_field(d, "delivery", "failed");
	assert_field(d, "http_status", http);
	assert_field(d, "code", code);
	assert_non_null(field(d, "reason"));
	assert_field(d, "given_up", NULL);
	json_object_put(d);
}

/* A callback given up for good: failed, counted, off the queue, the last
 * event marked given_up, the job's own status untouched. */
static void assert_given_up(const char *id, int tries, const char *http,
			    const char *code)
{
	char n[16];
	json_object *d;

	snprintf(n, sizeof(n), "%d", tries);
	assert_cb(db, id, "state", "failed");
	assert_cb(db, id, "attempts", n);
	assert_col(db, id, "run_at", "(null)");
	assert_col(db, id, "lease_owner", "(null)");
	assert_col(db, id, "status", "succeeded");
	d = last_callback_event(id);
	assert_field(d, "delivery", "failed");
	assert_field(d, "http_status", http);
	assert_field(d, "code", code);
	assert_non_null(field(d, "reason"));
	assert_field(d, "given_up", "true");
	json_object_put(d);
}

/* Check the last request the receiver got: a POST of job `id`'s object
 * `want_body` to /cb, signed for `msg_id` with SECRET. */
static void assert_signed_request(const char *msg_id, const dr_buf *want_body)
{
	char ct[128], wid[160], wts[64], wsig[256];
	const char *names[] = { "webhook-id", "webhook-timestamp",
				"webhook-signature" };
	const char *values[3];
	const char *const secrets[] = { SECRET };
	const char *const others[] = { OTHER_SECRET };
	static char head[RX_MAX_HEAD], body[RX_MAX_BODY];
	size_t body_len;
	dr_webhook_request req;
	dr_error err;
	double ts;

	/* A copy, so that a failed assertion (a longjmp out of this case)
	 * leaves the receiver's lock free for the next cases. */
	pthread_mutex_lock(&rx.mu);
	memcpy(head, rx.head, sizeof(head));
	body_len = rx.body && rx.body_len <= sizeof(body) ? rx.body_len : 0;
	if (body_len)
		memcpy(body, rx.body, body_len);
	pthread_mutex_unlock(&rx.mu);

	assert_true(strncmp(head, "POST /cb HTTP/1.1\r\n", 19) == 0);
	assert_non_null(head_value(head, "Content-Type", ct, sizeof(ct)));
	assert_non_null(head_value(head, "webhook-id", wid, sizeof(wid)));
	assert_non_null(
		head_value(head, "webhook-timestamp", wts, sizeof(wts)));
	assert_non_null(
		head_value(head, "webhook-signature", wsig, sizeof(wsig)));
	assert_string_equal(ct, "application/json");
	assert_string_equal(wid, msg_id);
	ts = strtod(wts, NULL);
	assert_true(ts > (double)time(NULL) - 30 &&
		    ts < (double)time(NULL) + 5);
	assert_int_equal(body_len, want_body->len);
	assert_memory_equal(body, want_body->data, want_body->len);

	values[0] = wid;
	values[1] = wts;
	values[2] = wsig;
	memset(&req, 0, sizeof(req));
	req.header_names = names;
	req.header_values = values;
	req.n_headers = 3;
	req.body = (const unsigned char *)body;
	req.body_len = body_len;
	assert_ok(webhook_verify(&req, secrets, 1, DR_WEBHOOK_TOLERANCE, &err),
		  err);
	/* The signature is SECRET's: another secret does not verify it. */
	assert_int_equal(
		webhook_verify(&req, others, 1, DR_WEBHOOK_TOLERANCE, &err),
		DR_ERR_AUTH);
}

/* The body the callback of job `id` (status `status`) must send:
 * {"type":"job.<status>","timestamp":<completed_at>,"data":<job object>}. */
static void render(const char *id, const char *status, dr_buf *b)
{
	char *ended = jobfix_col(db, id, "completed_at");
	dr_error err;

	dr_buf_init(b, 17u << 20);
	assert_int_equal(dr_buf_printf(b,
				       "{\"type\":\"job.%s\","
				       "\"timestamp\":",
				       status),
			 DR_OK);
	assert_int_equal(json_append_time(b, ended), DR_OK);
	assert_int_equal(dr_buf_puts(b, ",\"data\":"), DR_OK);
	assert_ok(jobs_render_message(db, &cfg, NULL, id, b, &err), err);
	assert_int_equal(dr_buf_puts(b, "}"), DR_OK);
	free(ended);
}

/* ------------------------------------------------------------------
 * Cases
 */

/* A 2xx answer: delivered, counted, off the queue, one event; the POST
 * carries the job object signed with the configured secret. */
static void test_delivered(void **state)
{
	dr_claim c;
	dr_buf want;
	json_object *d, *doc, *v;
	char *msg_id;

	(void)state;
	ended_job(rx_url("/cb"), 0, &c);
	render(c.id, "succeeded", &want);
	msg_id = expected_msg_id(c.id);
	rx_reset(204);
	deliver(&c);
	assert_int_equal(rx_count(&rx.requests), 1);
	assert_signed_request(msg_id, &want);

	/* The Standard Webhooks envelope around the job object. */
	doc = json_tokener_parse(want.data);
	assert_non_null(doc);
	assert_true(json_object_object_get_ex(doc, "type", &v));
	assert_string_equal(json_object_get_string(v), "job.succeeded");
	assert_true(json_object_object_get_ex(doc, "timestamp", &v));
	assert_int_equal(strlen(json_object_get_string(v)), 24);
	assert_true(json_object_object_get_ex(doc, "data", &d));
	assert_true(json_object_object_get_ex(d, "id", &v));
	assert_string_equal(json_object_get_string(v), c.id);
	assert_true(json_object_object_get_ex(d, "status", &v));
	assert_string_equal(json_object_get_string(v), "succeeded");
	json_object_put(doc);

	assert_cb(db, c.id, "state", "delivered");
	assert_cb(db, c.id, "attempts", "1");
	assert_col(db, c.id, "run_at", "(null)");
	assert_col(db, c.id, "lease_owner", "(null)");
	assert_col(db, c.id, "status", "succeeded");
	assert_int_equal(callback_events(c.id), 1);
	d = last_callback_event(c.id);
	assert_field(d, "delivery", "delivered");
	assert_field(d, "http_status", "204");
	assert_field(d, "webhook_id", msg_id);
	assert_field(d, "given_up", NULL);
	json_object_put(d);
	free(msg_id);
	dr_buf_free(&want);
}

/* The download allowlist does not apply: the client chose its host. */
static void test_any_host(void **state)
{
	dr_claim c;

	(void)state;
	setenv("DARKROOM_DOWNLOAD_HOSTS", "only.example.com", 1);
	ended_job(rx_url("/cb"), 0, &c);
	deliver(&c);
	assert_int_equal(rx_count(&rx.requests), 1);
	assert_cb(db, c.id, "state", "delivered");
}

/* A 5xx answer: a failed try, counted, retried after the backoff; the
 * next try (a new claim) sends the same webhook-id and, answered 200,
 * delivers. */
static void test_server_error_retried(void **state)
{
	dr_claim c;
	dr_buf want;
	dr_error err;
	json_object *d;
	char *msg_id;

	(void)state;
	ended_job(rx_url("/cb"), 0, &c);
	render(c.id, "succeeded", &want);
	msg_id = expected_msg_id(c.id);
	rx_reset(503);
	deliver(&c);
	assert_int_equal(rx_count(&rx.requests), 1);
	assert_signed_request(msg_id, &want);
	assert_retried(c.id, 1, "503", "callback_rejected");
	d = last_callback_event(c.id);
	assert_field(d, "webhook_id", msg_id);
	json_object_put(d);

	/* The second try, under the lease of a new claim. */
	assert_ok(db_exec(db,
			  "UPDATE jobs SET lease_version = lease_version + 1"
			  " WHERE id = ?",
			  NULL, &err, DB_ARGS(DB_STR(c.id))),
		  err);
	c.lease_version = FENCE + 1;
	rx_reset(200);
	deliver(&c);
	assert_int_equal(rx_count(&rx.requests), 1);
	assert_signed_request(msg_id, &want);
	assert_cb(db, c.id, "state", "delivered");
	assert_cb(db, c.id, "attempts", "2");
	assert_col(db, c.id, "run_at", "(null)");
	assert_int_equal(callback_events(c.id), 2);
	free(msg_id);
	dr_buf_free(&want);
}

/* The wait grows with the tries already made, on Svix's schedule, not
 * the worker's job backoff: after the third failed try, 30 minutes. */
static void test_backoff_grows(void **state)
{
	dr_claim c;

	(void)state;
	ended_job(rx_url("/cb"), 2, &c);
	rx_reset(500);
	deliver(&c);
	assert_retried(c.id, 3, "500", "callback_rejected");
}

/* The tries of delivery `msg` as "attempt:status:error?" lines, in
 * order, written to `out` ("-" for a NULL status, "e" when an error is
 * recorded, "" when none). */
static void attempt_rows(const char *msg, char *out, size_t n)
{
	dr_db_rows *rows = NULL;
	dr_error err;

	out[0] = '\0';
	assert_ok(db_query_uncached(db,
				    "SELECT attempt, http_status,"
				    " error IS NOT NULL, started_at <= NOW(6),"
				    " duration_ms < 15000"
				    " FROM callback_attempts WHERE"
				    " delivery_id = ? ORDER BY attempt",
				    &rows, &err, DB_ARGS(DB_STR(msg))),
		  err);
	for (size_t i = 0; i < rows->n_rows; i++) {
		assert_string_equal(db_cell(rows, i, 3), "1");
		assert_string_equal(db_cell(rows, i, 4), "1");
		snprintf(out + strlen(out), n - strlen(out), "%s%s:%s:%s",
			 i ? " " : "", db_cell(rows, i, 0),
			 db_cell(rows, i, 1) ? db_cell(rows, i, 1) : "-",
			 strcmp(db_cell(rows, i, 2), "1") == 0 ? "e" : "");
	}
	db_rows_free(rows);
}

/* Deliveries of job `id`. */
static long deliveries(const char *id)
{
	return jobfix_count(db,
			    "SELECT COUNT(*) FROM callback_deliveries"
			    " WHERE job_id = ?",
			    id);
}

/* Member `name` of the "callback" of job `id`'s object as the API shows
 * it, as JSON text (malloc); "(absent)" when the object has none. */
static char *api_callback(const char *id, const char *name, int message)
{
	dr_buf b;
	dr_error err;
	json_object *doc, *cb, *v;
	char *out;

	dr_buf_init(&b, 17u << 20);
	if (message)
		assert_ok(jobs_render_message(db, &cfg, NULL, id, &b, &err),
			  err);
	else
		assert_ok(jobs_render(db, &cfg, NULL, id, &b, &err), err);
	doc = json_tokener_parse(b.data);
	assert_non_null(doc);
	if (!json_object_object_get_ex(doc, "callback", &cb))
		out = strdup("(absent)");
	else if (!name)
		out = strdup(json_object_to_json_string(cb));
	else if (!json_object_object_get_ex(cb, name, &v))
		out = strdup("(absent)");
	else
		out = strdup(json_object_to_json_string(v));
	json_object_put(doc);
	dr_buf_free(&b);
	return out;
}

#define assert_api_cb(id, name, want)                                          \
	do {                                                                   \
		char *v_ = api_callback((id), (name), 0);                      \
		assert_string_equal(v_, (want));                               \
		free(v_);                                                      \
	} while (0)

/* The delivery table: a receiver that fails once then accepts makes one
 * delivery with two tries, each with its attempt row and status, under
 * one webhook-id; the job object's "callback" follows it, and the
 * message itself carries no "callback". */
static void test_delivery_rows(void **state)
{
	dr_claim c;
	dr_error err;
	char *msg_id, *v, rows_s[200];

	(void)state;
	ended_job(rx_url("/cb"), 0, &c);
	msg_id = expected_msg_id(c.id);
	assert_api_cb(c.id, "state", "\"pending\"");
	assert_api_cb(c.id, "attempts", "0");
	assert_api_cb(c.id, "last_status", "null");
	v = api_callback(c.id, "next_at", 0);
	assert_int_equal(strlen(v), 26); /* "YYYY-MM-DDTHH:MM:SS.mmmZ" */
	free(v);
	v = api_callback(c.id, "url", 0);
	assert_non_null(strstr(v, "/cb"));
	free(v);
	v = api_callback(c.id, NULL, 1);
	assert_string_equal(v, "(absent)");
	free(v);

	rx_reset(503);
	deliver(&c);
	assert_int_equal(deliveries(c.id), 1);
	assert_cb(db, c.id, "id", msg_id);
	assert_cb(db, c.id, "type", "job.succeeded");
	assert_cb(db, c.id, "state", "pending");
	assert_cb(db, c.id, "attempts", "1");
	assert_cb(db, c.id, "last_status", "503");
	assert_cb(db, c.id, "last_error LIKE 'callback_rejected: %'", "1");
	assert_cb(db, c.id, "next_at > NOW(6)", "1");
	assert_cb(db, c.id, "ABS(TIMESTAMPDIFF(MICROSECOND, next_at, (SELECT"
			    " run_at FROM jobs WHERE id = job_id))) < 1000000",
		  "1");
	attempt_rows(msg_id, rows_s, sizeof(rows_s));
	assert_string_equal(rows_s, "1:503:e");
	assert_api_cb(c.id, "state", "\"pending\"");
	assert_api_cb(c.id, "attempts", "1");
	assert_api_cb(c.id, "last_status", "503");

	assert_ok(db_exec(db,
			  "UPDATE jobs SET lease_version = lease_version + 1"
			  " WHERE id = ?",
			  NULL, &err, DB_ARGS(DB_STR(c.id))),
		  err);
	c.lease_version = FENCE + 1;
	rx_reset(200);
	deliver(&c);
	assert_int_equal(deliveries(c.id), 1);
	assert_cb(db, c.id, "id", msg_id);
	assert_cb(db, c.id, "state", "delivered");
	assert_cb(db, c.id, "attempts", "2");
	assert_cb(db, c.id, "last_status", "200");
	assert_cb(db, c.id, "last_error", "(null)");
	assert_cb(db, c.id, "next_at", "(null)");
	assert_cb(db, c.id, "delivered_at IS NOT NULL", "1");
	attempt_rows(msg_id, rows_s, sizeof(rows_s));
	assert_string_equal(rows_s, "1:503:e 2:200:");
	assert_api_cb(c.id, "state", "\"delivered\"");
	assert_api_cb(c.id, "attempts", "2");
	assert_api_cb(c.id, "last_status", "200");
	assert_api_cb(c.id, "next_at", "null");
	free(msg_id);
}

/* A 410 ends the delivery at once: failed after one try, its row says
 * so. */
static void test_delivery_gone(void **state)
{
	dr_claim c;
	char *msg_id, rows_s[200];

	(void)state;
	ended_job(rx_url("/cb"), 0, &c);
	msg_id = expected_msg_id(c.id);
	rx_reset(410);
	deliver(&c);
	assert_int_equal(deliveries(c.id), 1);
	assert_cb(db, c.id, "state", "failed");
	assert_cb(db, c.id, "attempts", "1");
	assert_cb(db, c.id, "last_status", "410");
	assert_cb(db, c.id, "last_error LIKE 'callback_gone: %'", "1");
	assert_cb(db, c.id, "next_at", "(null)");
	assert_cb(db, c.id, "delivered_at", "(null)");
	attempt_rows(msg_id, rows_s, sizeof(rows_s));
	assert_string_equal(rows_s, "1:410:e");
	assert_api_cb(c.id, "state", "\"failed\"");
	assert_api_cb(c.id, "next_at", "null");
	free(msg_id);
}

/* A try that got no answer records a NULL status. */
static void test_delivery_no_answer(void **state)
{
	dr_claim c;
	char *msg_id, rows_s[200];

	(void)state;
	setenv("DARKROOM_CALLBACK_ALLOW_PRIVATE", "0", 1);
	ended_job(rx_url("/cb"), 0, &c);
	msg_id = expected_msg_id(c.id);
	deliver(&c);
	assert_cb(db, c.id, "state", "failed");
	assert_cb(db, c.id, "last_status", "(null)");
	assert_cb(db, c.id, "last_error LIKE 'address_not_allowed: %'", "1");
	attempt_rows(msg_id, rows_s, sizeof(rows_s));
	assert_string_equal(rows_s, "1:-:e");
	assert_api_cb(c.id, "last_status", "null");
	free(msg_id);
}

/* A manual resend (jobstate_client_callback_retry) re-arms the same
 * delivery, Svix's way: same webhook-id, pending and due, tries kept and
 * numbered on, the schedule from its first wait again. */
static void test_delivery_resend(void **state)
{
	dr_claim c;
	dr_error err;
	char *msg_id, rows_s[200];

	(void)state;
	ended_job(rx_url("/cb"), 0, &c);
	msg_id = expected_msg_id(c.id);
	rx_reset(410);
	deliver(&c);
	assert_cb(db, c.id, "state", "failed");
	assert_ok(jobstate_client_callback_retry(db, c.id, &err), err);
	assert_int_equal(deliveries(c.id), 1);
	assert_cb(db, c.id, "id", msg_id);
	assert_cb(db, c.id, "state", "pending");
	assert_cb(db, c.id, "attempts", "1");
	assert_cb(db, c.id, "next_at <= NOW(6)", "1");
	/* The resend's first failure waits the schedule's first step. */
	c.lease_version = jobfix_count(db,
				       "SELECT lease_version FROM jobs"
				       " WHERE id = ?",
				       c.id);
	rx_reset(500);
	deliver(&c);
	assert_cb(db, c.id, "state", "pending");
	assert_cb(db, c.id, "attempts", "2");
	assert_cb(db, c.id, "TIMESTAMPDIFF(SECOND, NOW(6), next_at)"
			    " BETWEEN 3 AND 5",
		  "1");
	attempt_rows(msg_id, rows_s, sizeof(rows_s));
	assert_string_equal(rows_s, "1:410:e 2:500:e");
	free(msg_id);
}

/* A claim that finds no pending delivery (already delivered, say) sends
 * nothing and takes the job off the queue. */
static void test_no_pending_delivery(void **state)
{
	dr_claim c;
	dr_error err;

	(void)state;
	ended_job(rx_url("/cb"), 1, &c);
	assert_ok(db_exec(db,
			  "UPDATE callback_deliveries SET state = 'delivered'"
			  " WHERE job_id = ?",
			  NULL, &err, DB_ARGS(DB_STR(c.id))),
		  err);
	rx_reset(200);
	deliver(&c);
	assert_int_equal(rx_count(&rx.requests), 0);
	assert_cb(db, c.id, "CONCAT(state, ' ', attempts)", "delivered 1");
	assert_col(db, c.id, "run_at", "(null)");
	assert_col(db, c.id, "lease_owner", "(null)");
}

/* A 410 (Gone) stops the delivery for good at its first try; another
 * 4xx is a failed try retried like a 5xx, and so is a redirect, which is
 * not followed. */
static void test_client_error_retried(void **state)
{
	dr_claim c;

	(void)state;
	ended_job(rx_url("/cb"), 0, &c);
	rx_reset(410);
	deliver(&c);
	assert_int_equal(rx_count(&rx.requests), 1);
	assert_given_up(c.id, 1, "410", "callback_gone");

	ended_job(rx_url("/cb"), 0, &c);
	rx_reset(404);
	deliver(&c);
	assert_int_equal(rx_count(&rx.requests), 1);
	assert_retried(c.id, 1, "404", "callback_rejected");

	ended_job(rx_url("/cb"), 0, &c);
	rx_reset(302);
	deliver(&c);
	assert_int_equal(rx_count(&rx.requests), 1);
	assert_retried(c.id, 1, "302", "callback_rejected");
}

/* A receiver that never takes the connection (its accept queue is full,
 * so the kernel drops the SYN): the try ends after [limits]
 * connect_timeout, and is retried. */
static void test_timeout(void **state)
{
	char url[128];
	dr_claim c;
	double t0, took;
	int port, fill, fd;
	struct sockaddr_in sin;
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_abort_on_overflow", "r");

	(void)state;
	/* With tcp_abort_on_overflow the kernel refuses the connection
	 * instead of dropping it: there is no silent receiver to test. */
	if (f && fgetc(f) == '1') {
		fclose(f);
		skip();
	}
	if (f)
		fclose(f);
	fd = loopback_listen(0, &port);
	assert_true(fd >= 0);
	/* Backlog 0 holds one connection; this one fills it. */
	fill = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fill >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	assert_int_equal(connect(fill, (struct sockaddr *)&sin, sizeof(sin)),
			 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/cb", port);
	ended_job(url, 0, &c);
	t0 = dbserver_now();
	deliver(&c);
	took = dbserver_now() - t0;
	close(fill);
	close(fd);
	if (took < CONNECT_TIMEOUT - 0.1 || took > CONNECT_TIMEOUT + 2)
		fail_msg("the try took %.2f s, want about %.1f s", took,
			 CONNECT_TIMEOUT);
	assert_retried(c.id, 1, "0", "download_timeout");
}

/* Nothing listens: a network failure, retried. */
static void test_connection_refused(void **state)
{
	char url[128];
	dr_claim c;
	int port;
	int fd = loopback_listen(1, &port);

	(void)state;
	assert_true(fd >= 0);
	close(fd); /* nothing listens there now */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/cb", port);
	ended_job(url, 0, &c);
	deliver(&c);
	assert_retried(c.id, 1, "0", "download_network");
}

/* Loopback without DARKROOM_CALLBACK_ALLOW_PRIVATE=1 (the download
 * setting does not count): refused before any connection, and given up at
 * once (it will not change). */
static void test_address_refused(void **state)
{
	dr_claim c;

	(void)state;
	setenv("DARKROOM_CALLBACK_ALLOW_PRIVATE", "0", 1);
	setenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE", "1", 1);
	ended_job(rx_url("/cb"), 0, &c);
	deliver(&c);
	assert_int_equal(rx_count(&rx.conns), 0);
	assert_given_up(c.id, 1, "0", "address_not_allowed");
	assert_int_equal(callback_events(c.id), 1);
}

/* Plain http without DARKROOM_DOWNLOAD_ALLOW_HTTP=1: given up at once. */
static void test_url_refused(void **state)
{
	dr_claim c;

	(void)state;
	setenv("DARKROOM_DOWNLOAD_ALLOW_HTTP", "0", 1);
	ended_job(rx_url("/cb"), 0, &c);
	deliver(&c);
	assert_int_equal(rx_count(&rx.conns), 0);
	assert_given_up(c.id, 1, "0", "url_not_allowed");
}

/* The schedule's last (8th) try fails: the callback is given up; the try
 * before it was still retried, after 10 h. [worker] max_attempts (4
 * here) does not count for callbacks. */
static void test_attempts_used_up(void **state)
{
	dr_claim c;

	(void)state;
	rx_reset(500);
	ended_job(rx_url("/cb"), MAX_ATTEMPTS, &c);
	deliver(&c);
	assert_retried(c.id, MAX_ATTEMPTS + 1, "500", "callback_rejected");

	ended_job(rx_url("/cb"), TRIES - 2, &c);
	deliver(&c);
	assert_retried(c.id, TRIES - 1, "500", "callback_rejected");

	ended_job(rx_url("/cb"), TRIES - 1, &c);
	deliver(&c);
	assert_int_equal(rx_count(&rx.requests), 3);
	assert_given_up(c.id, TRIES, "500", "callback_rejected");
	assert_int_equal(callback_events(c.id), 1);
}

/* A claim whose lease was lost (another worker claimed the job since):
 * whatever the answer, nothing is written to the job, no event either. */
static void test_stale_lease(void **state)
{
	static const int answers[] = { 200, 500, 500 };
	static const int attempts_before[] = { 0, 0, TRIES - 1 };
	char n[16];
	dr_claim c;

	(void)state;
	for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
		ended_job(rx_url("/cb"), attempts_before[i], &c);
		c.lease_version = FENCE - 1;
		rx_reset(answers[i]);
		deliver(&c);
		assert_int_equal(rx_count(&rx.requests), 1);
		snprintf(n, sizeof(n), "%d", attempts_before[i]);
		assert_cb(db, c.id, "state", "pending");
		assert_cb(db, c.id, "attempts", n);
		assert_col(db, c.id, "lease_owner", "test");
		assert_col(db, c.id, "run_at IS NOT NULL", "1");
		if (jobfix_events(db, c.id) != 0)
			fail_msg("answer %d, %d tries before: %ld events "
				 "written under a stale lease",
				 answers[i], attempts_before[i],
				 jobfix_events(db, c.id));
	}
}

/* Retry-After on an error answer: a longer wait than the schedule's is
 * honoured (seconds or an HTTP date), capped at 10 h; a shorter one does
 * not speed the schedule up; one that cannot be read is ignored. */
static void test_retry_after(void **state)
{
	static const struct {
		const char *header;
		double want; /* after the first failed try (schedule: 5 s) */
	} cases[] = {
		{ "600", 600 }, { "1", 5 },	{ "999999", 36000 },
		{ "soon", 5 },	{ NULL, 1200 }, /* an HTTP date 20 minutes ahead
						 */
	};
	char date[64];
	time_t later = time(NULL) + 1200;
	struct tm tm;
	dr_claim c;

	(void)state;
	gmtime_r(&later, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ended_job(rx_url("/cb"), 0, &c);
		rx_reset(503);
		pthread_mutex_lock(&rx.mu);
		rx.retry_after = cases[i].header ? cases[i].header : date;
		pthread_mutex_unlock(&rx.mu);
		deliver(&c);
		assert_int_equal(rx_count(&rx.requests), 1);
		assert_cb(db, c.id, "state", "pending");
		assert_cb(db, c.id, "attempts", "1");
		assert_due(c.id, 1, cases[i].want);
	}
	/* A 429 with Retry-After, later in the schedule: the longer wins. */
	ended_job(rx_url("/cb"), 1, &c);
	rx_reset(429);
	pthread_mutex_lock(&rx.mu);
	rx.retry_after = "900";
	pthread_mutex_unlock(&rx.mu);
	deliver(&c);
	assert_cb(db, c.id, "state", "pending");
	assert_cb(db, c.id, "attempts", "2");
	assert_due(c.id, 2, 900);
}

/* DARKROOM_TEST_CALLBACK_SCALE (tests only) shortens the waits by its
 * factor when it is in (0, 1); any other value changes nothing. */
static void test_test_scale(void **state)
{
	dr_claim c;

	(void)state;
	rx_reset(500);
	setenv("DARKROOM_TEST_CALLBACK_SCALE", "0.01", 1);
	ended_job(rx_url("/cb"), 2, &c); /* 30 min -> 18 s */
	deliver(&c);
	assert_due(c.id, 3, 18);
	setenv("DARKROOM_TEST_CALLBACK_SCALE", "2", 1);
	ended_job(rx_url("/cb"), 1, &c);
	deliver(&c);
	assert_retried(c.id, 2, "500", "callback_rejected");
	setenv("DARKROOM_TEST_CALLBACK_SCALE", "0.5x", 1);
	ended_job(rx_url("/cb"), 1, &c);
	deliver(&c);
	assert_retried(c.id, 2, "500", "callback_rejected");
}

/* Verify the last request the receiver got against `secret` alone. */
static dr_status verify_last(const char *secret)
{
	char wid[160], wts[64], wsig[512];
	const char *names[] = { "webhook-id", "webhook-timestamp",
				"webhook-signature" };
	const char *values[] = { wid, wts, wsig };
	const char *const secrets[] = { secret };
	static char head[RX_MAX_HEAD], body[RX_MAX_BODY];
	size_t body_len;
	dr_webhook_request req;
	dr_error err;

	pthread_mutex_lock(&rx.mu);
	memcpy(head, rx.head, sizeof(head));
	body_len = rx.body && rx.body_len <= sizeof(body) ? rx.body_len : 0;
	if (body_len)
		memcpy(body, rx.body, body_len);
	pthread_mutex_unlock(&rx.mu);
	assert_non_null(head_value(head, "webhook-id", wid, sizeof(wid)));
	assert_non_null(
		head_value(head, "webhook-timestamp", wts, sizeof(wts)));
	assert_non_null(
		head_value(head, "webhook-signature", wsig, sizeof(wsig)));
	memset(&req, 0, sizeof(req));
	req.header_names = names;
	req.header_values = values;
	req.n_headers = 3;
	req.body = (const unsigned char *)body;
	req.body_len = body_len;
	return webhook_verify(&req, secrets, 1, DR_WEBHOOK_TOLERANCE, &err);
}

/* The number of space-separated entries of the last request's
 * webhook-signature header. */
static int signature_entries(void)
{
	char wsig[512];
	int n = 0;

	pthread_mutex_lock(&rx.mu);
	if (!head_value(rx.head, "webhook-signature", wsig, sizeof(wsig)))
		wsig[0] = '\0';
	pthread_mutex_unlock(&rx.mu);
	for (const char *p = wsig; *p;) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		n++;
		while (*p && *p != ' ')
			p++;
	}
	return n;
}

/* A rotation: with callback_secret_previous set, the message carries two
 * v1 signatures, one for each secret, so a receiver holding either
 * verifies it and one holding neither does not; without it, one. A
 * previous secret that cannot sign gives the callback up at once. */
static void test_rotation(void **state)
{
	dr_claim c;

	(void)state;
	ended_job(rx_url("/cb"), 0, &c);
	deliver(&c);
	assert_int_equal(signature_entries(), 1);
	assert_int_equal(verify_last(OTHER_SECRET), DR_ERR_AUTH);

	cfg.server.callback_secret_previous = OTHER_SECRET;
	rx_reset(200);
	ended_job(rx_url("/cb"), 0, &c);
	deliver(&c);
	assert_int_equal(rx_count(&rx.requests), 1);
	assert_cb(db, c.id, "state", "delivered");
	assert_int_equal(signature_entries(), 2);
	assert_int_equal(verify_last(SECRET), DR_OK);
	assert_int_equal(verify_last(OTHER_SECRET), DR_OK);
	assert_int_equal(
		verify_last("whsec_dGhpcmQgc2VjcmV0IG5vYm9keSBob2xkcw=="),
		DR_ERR_AUTH);

	cfg.server.callback_secret_previous = "not a secret";
	rx_reset(200);
	ended_job(rx_url("/cb"), 0, &c);
	deliver(&c);
	assert_int_equal(rx_count(&rx.conns), 0);
	assert_cb(db, c.id, "state", "failed");
	cfg.server.callback_secret_previous = NULL;
}

/* The schedule as a function: Svix's waits, 8 tries, about 27.5 h. */
static void test_schedule(void **state)
{
	double total = 0;

	(void)state;
	assert_int_equal(callback_max_tries(), TRIES);
	assert_true(callback_schedule(0) < 0);
	for (int t = 1; t < TRIES; t++) {
		assert_true(callback_schedule(t) == svix[t - 1]);
		total += callback_schedule(t);
	}
	assert_true(callback_schedule(TRIES) < 0);
	assert_true(callback_schedule(TRIES + 5) < 0);
	assert_true(total == 5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000);
	assert_true(total > 27 * 3600 && total < 28 * 3600);
	/* No try left: no wait, whatever Retry-After says. */
	assert_true(callback_delay(TRIES, "60", time(NULL)) < 0);
	assert_true(callback_delay(3, NULL, time(NULL)) == 1800);
	assert_true(callback_delay(3, "", time(NULL)) == 1800);
	assert_true(callback_delay(3, "3600", time(NULL)) == 3600);
}

/* Retry-After values: delta-seconds, HTTP dates (all three RFC 9110
 * forms), past dates, garbage. */
static void test_retry_after_parse(void **state)
{
	const time_t now = 1700000000; /* Tue, 14 Nov 2023 22:13:20 GMT */

	(void)state;
	assert_true(callback_retry_after(NULL, now) == -1);
	assert_true(callback_retry_after("", now) == -1);
	assert_true(callback_retry_after("120", now) == 120);
	assert_true(callback_retry_after(" 0 ", now) == 0);
	assert_true(callback_retry_after("36001", now) ==
		    CALLBACK_RETRY_AFTER_MAX);
	assert_true(callback_retry_after("12s", now) == -1);
	assert_true(callback_retry_after("-5", now) == -1);
	assert_true(callback_retry_after("Tue, 14 Nov 2023 22:23:20 GMT",
					 now) == 600);
	assert_true(callback_retry_after("Tuesday, 14-Nov-23 22:23:20 GMT",
					 now) == 600);
	assert_true(callback_retry_after("Tue Nov 14 22:23:20 2023", now) ==
		    600);
	assert_true(callback_retry_after("Tue, 14 Nov 2023 20:00:00 GMT",
					 now) == 0);
	assert_true(callback_retry_after("Fri, 14 Nov 2025 22:13:20 GMT",
					 now) == CALLBACK_RETRY_AFTER_MAX);
	assert_true(callback_retry_after("not a date", now) == -1);
}

/* The intake's rule for a callback URL's host: localhost and private,
 * loopback, link-local address literals only with allow_private;
 * unspecified, multicast and reserved ones never; names pass (checked
 * when connecting). */
static void test_host_literal(void **state)
{
	static const char *const private_hosts[] = {
		"localhost",	   "LOCALHOST",
		"localhost.",	   "api.localhost",
		"127.0.0.1",	   "127.1",
		"2130706433",	   "10.1.2.3",
		"172.16.0.1",	   "192.168.1.1",
		"169.254.169.254", "100.64.0.1",
		"[::1]",	   "[fe80::1]",
		"[fd00::1]",	   "[::ffff:127.0.0.1]",
	};
	static const char *const never[] = { "0.0.0.0", "224.0.0.1", "[::]",
					     "[ff02::1]" };
	static const char *const fine[] = {
		"app.example.com",	 "8.8.8.8",
		"[2606:4700::1111]",	 "notlocalhost",
		"localhost.example.com", "127.0.0.1.nip.io",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(private_hosts) / sizeof(*private_hosts);
	     i++) {
		if (netpolicy_host_literal_allowed(private_hosts[i], 0))
			fail_msg("%s allowed without allow_private",
				 private_hosts[i]);
		if (!netpolicy_host_literal_allowed(private_hosts[i], 1))
			fail_msg("%s refused with allow_private",
				 private_hosts[i]);
	}
	for (size_t i = 0; i < sizeof(never) / sizeof(*never); i++)
		if (netpolicy_host_literal_allowed(never[i], 1))
			fail_msg("%s allowed", never[i]);
	for (size_t i = 0; i < sizeof(fine) / sizeof(*fine); i++)
		if (!netpolicy_host_literal_allowed(fine[i], 0))
			fail_msg("%s refused", fine[i]);
	setenv("DARKROOM_CALLBACK_ALLOW_PRIVATE", "1", 1);
	assert_int_equal(netpolicy_callback_allow_private(), 1);
	setenv("DARKROOM_CALLBACK_ALLOW_PRIVATE", "yes", 1);
	assert_int_equal(netpolicy_callback_allow_private(), 0);
	unsetenv("DARKROOM_CALLBACK_ALLOW_PRIVATE");
	assert_int_equal(netpolicy_callback_allow_private(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_delivered, case_setup),
		cmocka_unit_test_setup(test_any_host, case_setup),
		cmocka_unit_test_setup(test_server_error_retried, case_setup),
		cmocka_unit_test_setup(test_backoff_grows, case_setup),
		cmocka_unit_test_setup(test_client_error_retried, case_setup),
		cmocka_unit_test_setup(test_timeout, case_setup),
		cmocka_unit_test_setup(test_connection_refused, case_setup),
		cmocka_unit_test_setup(test_address_refused, case_setup),
		cmocka_unit_test_setup(test_url_refused, case_setup),
		cmocka_unit_test_setup(test_attempts_used_up, case_setup),
		cmocka_unit_test_setup(test_stale_lease, case_setup),
		cmocka_unit_test_setup(test_retry_after, case_setup),
		cmocka_unit_test_setup(test_test_scale, case_setup),
		cmocka_unit_test_setup(test_rotation, case_setup),
		cmocka_unit_test_setup(test_schedule, case_setup),
		cmocka_unit_test_setup(test_retry_after_parse, case_setup),
		cmocka_unit_test_setup(test_host_literal, case_setup),
		cmocka_unit_test_setup(test_delivery_rows, case_setup),
		cmocka_unit_test_setup(test_delivery_gone, case_setup),
		cmocka_unit_test_setup(test_delivery_no_answer, case_setup),
		cmocka_unit_test_setup(test_delivery_resend, case_setup),
		cmocka_unit_test_setup(test_no_pending_delivery, case_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
