/*
 * fuzz_job_request.c - the POST /v1/jobs and POST /v1/trainings body
 * validators: the limited JSON parser (core/jsonutil.c), jobs_parse_request,
 * jobs_parse_training and jobs_parse_workflow (core/jobs.c, with the
 * references of core/workflow.c), with the
 * configuration and static adapter of tests/core/test_jobs.c. A refusal
 * must name a field and say something about it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "jobs.h"
#include "jsonutil.h"

#define FUZZ_MAX_INPUT (256u << 10)

static const char conf_text[] =
	"[server]\n"
	"plugin_dir = /nonexistent\n"
	"default_adapter = test\n"
	"default_renditions = thumb\n"
	"callback_secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
	"[preset \"thumb\"]\nwidth = 256\nheight = 256\n"
	"[preset \"card\"]\nwidth = 1280\nheight = 720\nfit = cover\n"
	"[adapter \"test\"]\nplugin = test\n";

static dr_status test_validate(void *state, const dr_job_view *job,
			       dr_error *err)
{
	(void)state;
	if (strstr(job->input_json, "\"seed\":-"))
		return dr_fail(err, DR_ERR_INVALID, "invalid_input",
			       "input.seed: must not be negative");
	return DR_OK;
}

static dr_status test_submit(void *state, const dr_job_view *job,
			     dr_prediction *out, dr_error *err)
{
	(void)state, (void)job, (void)out;
	return dr_fail(err, DR_ERR_UNSUPPORTED, "x", "not used");
}

static const dr_adapter_ops ops = { .validate = test_validate,
				    .submit = test_submit,
				    .trainings = 1 };
static const dr_plugin desc = { .abi_version = DR_PLUGIN_ABI_VERSION,
				.size = sizeof(dr_plugin),
				.name = "test",
				.kind = DR_PLUGIN_ADAPTER,
				.adapter = &ops };

static dr_config *cfg;
static dr_loaded_plugin loaded;
static struct dr_instance inst;
static dr_plugins plugins;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	dr_error err;

	(void)argc, (void)argv;
	if (config_parse("fuzz.conf", conf_text, strlen(conf_text), &cfg,
			 &err) != DR_OK) {
		fprintf(stderr, "fuzz_job_request: config: %s\n", err.message);
		abort();
	}
	loaded.desc = &desc;
	inst.name = "test";
	inst.plugin = &loaded;
	plugins.adapters = &inst;
	plugins.n_adapters = 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *root = NULL;
	dr_job_request req;
	const char *field = NULL;
	dr_error err;

	if (!cfg)
		LLVMFuzzerInitialize(NULL, NULL);
	if (size > FUZZ_MAX_INPUT)
		return 0;
	memset(&err, 0, sizeof(err));
	if (json_parse_limited((const char *)data, size, 32, &root, &err) !=
	    DR_OK) {
		FUZZ_CHECK(err.message[0] != '\0');
		return 0;
	}
	if (jobs_parse_request(cfg, &plugins, root, &req, &field, &err) ==
	    DR_OK) {
		FUZZ_CHECK(req.adapter && req.model && req.input);
		FUZZ_CHECK(req.n_renditions <= DR_MAX_RENDITIONS);
		for (size_t i = 0; i < req.n_renditions; i++)
			FUZZ_CHECK(config_preset(cfg, req.renditions[i]));
		jobs_request_free(&req);
	} else {
		FUZZ_CHECK(field != NULL && err.message[0] != '\0');
	}
	field = NULL;
	if (jobs_parse_training(cfg, &plugins, root, &req, &field, &err) ==
	    DR_OK) {
		FUZZ_CHECK(req.training && req.adapter && req.model &&
			   req.destination && req.input);
		FUZZ_CHECK(req.n_renditions == 0);
		jobs_request_free(&req);
	} else {
		FUZZ_CHECK(field != NULL && err.message[0] != '\0');
	}
	field = NULL;
	{
		char wfield[DR_FIELD_MAX];

		wfield[0] = '\0';
		if (jobs_parse_workflow(cfg, &plugins, root, &req, wfield,
					&err) == DR_OK) {
			FUZZ_CHECK(req.n_steps >= 1 &&
				   req.n_steps <= (size_t)cfg->limits.max_steps);
			for (size_t i = 0; i < req.n_steps; i++)
				FUZZ_CHECK(req.step_names[i] &&
					   req.steps[i].input &&
					   req.steps[i].model);
			FUZZ_CHECK(req.adapter && req.model && req.input);
			jobs_request_free(&req);
		} else {
			FUZZ_CHECK(wfield[0] != '\0' && err.message[0] != '\0');
		}
	}
	json_object_put(root);
	return 0;
}
