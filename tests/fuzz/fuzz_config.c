/*
 * fuzz_config.c - the configuration parser (config_parse, core/config.c)
 * on arbitrary text: it either builds a config, which is then printed
 * and freed, or refuses with a message. Environment overrides are not
 * touched (they are read, and the fuzzer's environment is fixed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

#define FUZZ_MAX_INPUT (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	dr_config *cfg = NULL;
	dr_error err;
	FILE *null;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	memset(&err, 0, sizeof(err));
	if (config_parse("/fuzz/darkroom.conf", (const char *)data, size, &cfg,
			 &err) != DR_OK) {
		FUZZ_CHECK(cfg == NULL);
		FUZZ_CHECK(err.message[0] != '\0');
		return 0;
	}
	FUZZ_CHECK(cfg != NULL);
	for (size_t i = 0; i < cfg->n_presets; i++) {
		FUZZ_CHECK(cfg->presets[i].width >= 1 &&
			   cfg->presets[i].width <= 16384);
		FUZZ_CHECK(cfg->presets[i].height >= 1 &&
			   cfg->presets[i].height <= 16384);
		FUZZ_CHECK(config_preset(cfg, cfg->presets[i].name));
	}
	null = fopen("/dev/null", "w");
	if (null) {
		config_print(cfg, null);
		fclose(null);
	}
	config_free(cfg);
	return 0;
}
