/*
 * fuzz_webhook.c - Standard Webhooks verification (core/webhook.c).
 *
 * Input: "name: value" header lines, a blank line, the body - the shape
 * of a delivery. It is verified against a fixed secret (that of the
 * Standard Webhooks test vector) at a fixed clock, so the test vector in
 * the corpus verifies. The whole input is also fed to the base64 decoder,
 * whose answer must fit the buffer it was given.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "webhook.h"

#define FUZZ_MAX_INPUT (256u << 10)
#define MAX_FUZZ_HEADERS 16

static const char *const secrets[] = {
	"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *p, *end, *nl;
	const char *names[MAX_FUZZ_HEADERS], *values[MAX_FUZZ_HEADERS];
	dr_webhook_request req;
	unsigned char out[512];
	dr_error err;
	long n;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	/* base64 on the raw bytes, with a tight and a roomy buffer. */
	n = webhook_b64_decode((const char *)data, size, out, 8);
	FUZZ_CHECK(n >= -1 && n <= 8);
	n = webhook_b64_decode((const char *)data, size, out, sizeof(out));
	FUZZ_CHECK(n >= -1 && n <= (long)sizeof(out));

	text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	memset(&req, 0, sizeof(req));
	p = text;
	end = text + size;
	while (p < end) {
		char *colon, *v;

		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl)
			*nl = '\0';
		if (*p == '\0') {
			p = nl ? nl + 1 : end;
			break;
		}
		colon = strchr(p, ':');
		if (colon && req.n_headers < MAX_FUZZ_HEADERS) {
			*colon = '\0';
			v = colon + 1;
			while (*v == ' ')
				v++;
			names[req.n_headers] = p;
			values[req.n_headers] = v;
			req.n_headers++;
		}
		p = nl ? nl + 1 : end;
	}
	req.header_names = names;
	req.header_values = values;
	req.body = (const unsigned char *)p;
	req.body_len = (size_t)(end - p);
	req.received_at = 1614265330.0;
	memset(&err, 0, sizeof(err));
	if (webhook_verify(&req, secrets, 2, DR_WEBHOOK_TOLERANCE, &err) !=
	    DR_OK)
		FUZZ_CHECK(err.message[0] != '\0');
	free(text);
	return 0;
}
