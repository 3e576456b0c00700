/*
 * test_http.c - query parsing, problem documents, status mapping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static void test_query(void **state)
{
	dr_arena a;
	dr_param p[8];
	int n;

	(void)state;
	arena_init(&a, 256);
	n = http_parse_query(&a, "status=queued&model=a%2Fb&x=1+2&x=3&empty=&flag",
			     p, 8);
	assert_int_equal(n, 5);
	assert_string_equal(http_param(p, 5, "status"), "queued");
	assert_string_equal(http_param(p, 5, "model"), "a/b");
	assert_string_equal(http_param(p, 5, "x"), "1 2"); /* first wins */
	assert_string_equal(http_param(p, 5, "empty"), "");
	assert_string_equal(http_param(p, 5, "flag"), "");
	assert_null(http_param(p, 5, "nope"));
	assert_int_equal(http_parse_query(&a, "", p, 8), 0);
	assert_int_equal(http_parse_query(&a, "&&", p, 8), 0);
	assert_int_equal(http_parse_query(&a, "a=%zz", p, 8), -1);
	assert_int_equal(http_parse_query(&a, "a=%4", p, 8), -1);
	assert_int_equal(http_parse_query(&a, "a=%", p, 8), -1);
	assert_int_equal(http_parse_query(&a, "a=%00", p, 8), -1);
	assert_int_equal(http_parse_query(&a, "a=1&b=2&c=3", p, 2), -1);
	arena_free(&a);
}

static void test_problem(void **state)
{
	dr_response r;

	(void)state;
	http_response_init(&r);
	http_problem(&r, 422, "invalid_field", "input", "input: %s",
		     "must be an \"object\"");
	assert_int_equal(r.status, 422);
	assert_string_equal(r.content_type, "application/problem+json");
	assert_string_equal(
		r.body.data,
		"{\"type\":\"urn:darkroom:problem:invalid_field\","
		"\"title\":\"Unprocessable Content\",\"status\":422,"
		"\"detail\":\"input: must be an \\\"object\\\"\","
		"\"field\":\"input\"}");
	http_response_free(&r);
}

static void test_status_map(void **state)
{
	dr_response r;
	dr_error err;

	(void)state;
	assert_int_equal(http_status_for(DR_ERR_UNAVAILABLE), 503);
	assert_int_equal(http_status_for(DR_ERR_NOT_FOUND), 404);
	assert_int_equal(http_status_for(DR_ERR_CONFLICT), 409);
	assert_int_equal(http_status_for(DR_ERR_INVALID), 422);
	assert_int_equal(http_status_for(DR_ERR_DATABASE), 500);
	http_response_init(&r);
	/* A database error's text never reaches the client. */
	dr_fail(&err, DR_ERR_DATABASE, "db", "Table 'jobs' doesn't exist");
	http_problem_from(&r, &err);
	assert_int_equal(r.status, 500);
	assert_null(strstr(r.body.data, "jobs"));
	dr_fail(&err, DR_ERR_UNAVAILABLE, "db", "connect to 127.0.0.1 failed");
	http_problem_from(&r, &err);
	assert_int_equal(r.status, 503);
	assert_null(strstr(r.body.data, "127.0.0.1"));
	http_response_free(&r);
}

/* Errors the web server met itself (lighttpd's REDIRECT_STATUS). */
static void test_server_errors(void **state)
{
	dr_response r;

	(void)state;
	assert_int_equal(http_server_error_status("411"), 411);
	assert_int_equal(http_server_error_status("413"), 413);
	assert_int_equal(http_server_error_status("503"), 503);
	/* lighttpd's "200" of an ordinary request, and anything odd */
	assert_int_equal(http_server_error_status("200"), 0);
	assert_int_equal(http_server_error_status("302"), 0);
	assert_int_equal(http_server_error_status(NULL), 0);
	assert_int_equal(http_server_error_status(""), 0);
	assert_int_equal(http_server_error_status("4130"), 0);
	assert_int_equal(http_server_error_status("41"), 0);
	assert_int_equal(http_server_error_status("4x3"), 0);
	assert_int_equal(http_server_error_status(" 413"), 0);
	assert_int_equal(http_server_error_status("600"), 0);

	http_response_init(&r);
	http_server_problem(&r, 413);
	assert_int_equal(r.status, 413);
	assert_string_equal(r.content_type, "application/problem+json");
	assert_string_equal(
		r.body.data,
		"{\"type\":\"urn:darkroom:problem:body_too_large\","
		"\"title\":\"Content Too Large\",\"status\":413,"
		"\"detail\":\"the body is larger than the web server "
		"accepts\"}");
	http_server_problem(&r, 503);
	assert_int_equal(r.status, 503);
	assert_non_null(strstr(r.body.data, "\"title\":\"Service Unavailable\""));
	assert_non_null(strstr(r.body.data, "problem:unavailable\""));
	http_server_problem(&r, 416);
	assert_non_null(strstr(r.body.data, "\"title\":\"Range Not Satisfiable\""));
	/* A status without its own entry still gets a document. */
	http_server_problem(&r, 418);
	assert_int_equal(r.status, 418);
	assert_non_null(strstr(r.body.data, "problem:server_error\""));
	assert_non_null(strstr(r.body.data, "\"status\":418"));
	http_response_free(&r);
}

/* conf/problems of the source tree, from this file's path as compiled
 * ("tests/core/test_http.c" from the root, or an absolute path). */
static void problems_dir(char *out, size_t size)
{
	const char *f = __FILE__;
	const char *tail = strstr(f, "tests/core/test_http.c");
	int n = tail ? (int)(tail - f) : 0;
	int len = snprintf(out, size, "%.*sconf/problems", n, f);

	assert_true(len > 0 && (size_t)len < size);
}

/* conf/problems/<status>.html, what lighttpd answers when the app cannot,
 * are the app's own documents for those statuses (and a newline). */
static void test_server_problem_files(void **state)
{
	char dir[512], path[1024], text[2048];
	int seen404 = 0, seen413 = 0, seen503 = 0, files = 0;
	struct dirent *e;
	dr_response r;
	DIR *d;

	(void)state;
	problems_dir(dir, sizeof(dir));
	d = opendir(dir);
	if (!d)
		fail_msg("cannot open %s (run from the source tree's root)",
			 dir);
	http_response_init(&r);
	while ((e = readdir(d)) != NULL) {
		int status;
		size_t len;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		assert_int_equal(strlen(e->d_name), 8);
		assert_string_equal(e->d_name + 3, ".html");
		status = (int)strtol(e->d_name, NULL, 10);
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "r");
		assert_non_null(f);
		len = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
		text[len] = '\0';
		http_server_problem(&r, status);
		assert_int_equal(r.status, status);
		assert_true(len > 0 && text[len - 1] == '\n');
		text[len - 1] = '\0';
		if (strcmp(text, r.body.data) != 0)
			fail_msg("%s differs from the app's document:\n  %s\n  %s",
				 path, text, r.body.data);
		seen404 |= status == 404;
		seen413 |= status == 413;
		seen503 |= status == 503;
		files++;
	}
	closedir(d);
	http_response_free(&r);
	assert_true(seen404 && seen413 && seen503);
	assert_true(files >= 10);
}

static void test_headers(void **state)
{
	dr_response r;
	dr_request q;

	(void)state;
	http_response_init(&r);
	http_add_header(&r, "Allow", "GET, POST");
	assert_string_equal(r.extra_headers, "Allow: GET, POST\r\n");
	memset(&q, 0, sizeof(q));
	q.headers[0].name = "idempotency-key";
	q.headers[0].value = "k1";
	q.n_headers = 1;
	assert_string_equal(http_header(&q, "idempotency-key"), "k1");
	assert_null(http_header(&q, "authorization"));
	http_response_free(&r);
}

static void test_query_repeated(void **state)
{
	dr_arena a;
	dr_param p[8];
	int n;

	(void)state;
	arena_init(&a, 256);
	n = http_parse_query(&a, "x=1&y=2&metadata.a=1&x=3&metadata.a=2&z", p,
			     3 + 1);
	assert_int_equal(n, 4);
	assert_string_equal(http_param(p, 4, "x"), "1");
	assert_true(p[0].repeated);  /* x */
	assert_false(p[1].repeated); /* y */
	assert_true(p[2].repeated);  /* metadata.a */
	assert_false(p[3].repeated); /* z */
	/* Repeats take no slot of their own. */
	assert_int_equal(http_parse_query(&a, "a=1&a=2&a=3&b=1", p, 2), 2);
	arena_free(&a);
}

/* No header is sent twice: adding one again replaces it, and the
 * defaults the FastCGI loop writes are fields, not header lines. */
static void test_headers_once(void **state)
{
	dr_response r;

	(void)state;
	http_response_init(&r);
	assert_null(r.cache_control);
	http_add_header(&r, "Allow", "GET");
	http_add_header(&r, "WWW-Authenticate", "Bearer");
	http_add_header(&r, "allow", "GET, POST");
	assert_string_equal(r.extra_headers,
			    "WWW-Authenticate: Bearer\r\nallow: GET, POST\r\n");
	http_add_header(&r, "WWW-Authenticate", "Bearer");
	assert_string_equal(r.extra_headers,
			    "allow: GET, POST\r\nWWW-Authenticate: Bearer\r\n");
	r.cache_control = "no-cache";
	http_response_reset(&r);
	assert_null(r.cache_control);
	assert_string_equal(r.extra_headers, "");
	http_response_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_problem),
		cmocka_unit_test(test_status_map),
		cmocka_unit_test(test_server_errors),
		cmocka_unit_test(test_server_problem_files),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_query_repeated),
		cmocka_unit_test(test_headers_once),
	};
	return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
