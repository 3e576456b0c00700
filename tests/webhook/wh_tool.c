/*
 * wh_tool.c - a command-line face of core/webhook.c, so that another
 * implementation (tests/webhook/cross_check.js, with npm standardwebhooks)
 * can check darkroom's signatures and have its own checked.
 *
 *   wh_tool sign SECRET ID TIMESTAMP < body
 *       prints "v1,<base64>" and a newline; exit 0, or 2 on error.
 *   wh_tool verify SECRET... < request.json
 *       request.json is {"headers": {"webhook-id": ..., ...},
 *       "body_b64": "<base64 of the raw body>", "received_at": <seconds,
 *       optional: 0 or absent means now>}; exit 0 when webhook_verify()
 *       accepts it against the secrets, 1 when it answers DR_ERR_AUTH
 *       (the code and message go to stderr), 2 on anything else.
 *
 * The body travels as base64 so that it is byte-exact whatever it holds.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhook.h"

/* Most standard input read, and most headers taken from the request. */
#define WH_TOOL_INPUT_MAX   (16u * 1024 * 1024)
#define WH_TOOL_HEADERS_MAX 64

enum { EXIT_ACCEPTED = 0, EXIT_REJECTED = 1, EXIT_ERROR = 2 };

/* All of standard input (NUL-terminated, *len without it), or NULL. */
static char *read_stdin(size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);

	if (!buf)
		return NULL;
	for (;;) {
		size_t got;

		if (n + 1 == cap) {
			char *more;

			if (cap >= WH_TOOL_INPUT_MAX) {
				fprintf(stderr,
					"wh_tool: input over %u bytes\n",
					WH_TOOL_INPUT_MAX);
				free(buf);
				return NULL;
			}
			more = realloc(buf, cap * 2);
			if (!more) {
				free(buf);
				return NULL;
			}
			buf = more;
			cap *= 2;
		}
		got = fread(buf + n, 1, cap - 1 - n, stdin);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(stdin)) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

static int cmd_sign(const char *secret, const char *id, const char *ts)
{
	char sig[64], *end, *body;
	long long stamp;
	size_t len;
	dr_status st;

	stamp = strtoll(ts, &end, 10);
	if (*ts == '\0' || *end != '\0') {
		fprintf(stderr, "wh_tool: bad timestamp %s\n", ts);
		return EXIT_ERROR;
	}
	body = read_stdin(&len);
	if (!body)
		return EXIT_ERROR;
	st = webhook_sign(secret, id, stamp, body, len, sig, sizeof(sig));
	free(body);
	if (st != DR_OK) {
		fprintf(stderr, "wh_tool: sign: %s\n", dr_strerror(st));
		return EXIT_ERROR;
	}
	printf("%s\n", sig);
	return EXIT_ACCEPTED;
}

static int cmd_verify(const char *const *secrets, size_t n)
{
	const char *names[WH_TOOL_HEADERS_MAX], *values[WH_TOOL_HEADERS_MAX];
	dr_webhook_request req = { names, values, 0, NULL, 0, 0 };
	json_object *root = NULL, *headers, *body, *at;
	unsigned char *raw = NULL;
	char *input;
	size_t len;
	long rawlen = 0;
	dr_error err = { 0 };
	dr_status st;
	int rc = EXIT_ERROR;

	input = read_stdin(&len);
	if (!input)
		return EXIT_ERROR;
	root = json_tokener_parse(input);
	if (!root || !json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "headers", &headers) ||
	    !json_object_is_type(headers, json_type_object)) {
		fprintf(stderr, "wh_tool: input is not {\"headers\": {...}}\n");
		goto out;
	}
	json_object_object_foreach(headers, key, val)
	{
		if (req.n_headers == WH_TOOL_HEADERS_MAX) {
			fprintf(stderr, "wh_tool: too many headers\n");
			goto out;
		}
		names[req.n_headers] = key;
		values[req.n_headers] = json_object_get_string(val);
		req.n_headers++;
	}
	if (json_object_object_get_ex(root, "body_b64", &body)) {
		const char *b64 = json_object_get_string(body);
		size_t blen = strlen(b64);

		raw = malloc(blen / 4 * 3 + 3);
		if (!raw)
			goto out;
		rawlen = webhook_b64_decode(b64, blen, raw, blen / 4 * 3 + 3);
		if (rawlen < 0) {
			fprintf(stderr, "wh_tool: body_b64 is not base64\n");
			goto out;
		}
		req.body = raw;
		req.body_len = (size_t)rawlen;
	}
	if (json_object_object_get_ex(root, "received_at", &at))
		req.received_at = json_object_get_double(at);

	st = webhook_verify(&req, secrets, n, DR_WEBHOOK_TOLERANCE, &err);
	if (st == DR_OK) {
		rc = EXIT_ACCEPTED;
	} else {
		fprintf(stderr, "wh_tool: %s: %s (%s)\n", dr_strerror(st),
			err.message, err.code);
		rc = st == DR_ERR_AUTH ? EXIT_REJECTED : EXIT_ERROR;
	}
out:
	free(raw);
	json_object_put(root);
	free(input);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "sign") == 0)
		return cmd_sign(argv[2], argv[3], argv[4]);
	if (argc >= 3 && strcmp(argv[1], "verify") == 0)
		return cmd_verify((const char *const *)argv + 2,
				  (size_t)argc - 2);
	fprintf(stderr, "usage: wh_tool sign SECRET ID TIMESTAMP < body\n"
			"       wh_tool verify SECRET... < request.json\n");
	return EXIT_ERROR;
}
