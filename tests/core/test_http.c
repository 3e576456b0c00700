/*
 * test_http.c - query parsing, problem documents, status mapping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_query_repeated),
		cmocka_unit_test(test_headers_once),
	};
	return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
