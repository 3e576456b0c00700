/*
 * fuzz_normalise.c - the Replicate adapter's prediction normaliser
 * (plugins/replicate/normalise.c) on arbitrary documents, through the
 * mock host (tests/plugins/mock_host.c) like the plugin's unit tests:
 * rep_parse_json, then rep_normalise, then rep_prediction_clear. On
 * failure nothing may be left allocated (LeakSanitizer checks).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../plugins/mock_host.h"
#include "../../plugins/replicate/replicate.h"
#include "fuzz.h"

#define FUZZ_MAX_INPUT (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *doc;
	dr_prediction p;
	dr_error err;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	doc = rep_parse_json((const char *)data, size);
	if (!doc)
		return 0;
	memset(&p, 0, sizeof(p));
	memset(&err, 0, sizeof(err));
	if (rep_normalise(mock_host(), doc, &p, &err) == DR_OK) {
		FUZZ_CHECK(p.id != NULL && strlen(p.id) <= REP_ID_MAX);
		for (size_t i = 0; i < p.n_outputs; i++)
			FUZZ_CHECK(p.outputs[i].value != NULL);
	} else {
		FUZZ_CHECK(err.message[0] != '\0');
		FUZZ_CHECK(p.id == NULL && p.n_outputs == 0);
	}
	rep_prediction_clear(&p);
	json_object_put(doc);
	return 0;
}
