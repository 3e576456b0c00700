/*
 * null.c - the `null` adapter: accepts every job and never runs anything.
 *
 * What it is for: a real, loadable adapter with no provider behind it, so
 * the plugin host, the intake path (validate), the worker's submit and
 * poll steps and the API can be exercised by tests and local runs before
 * (or without) the provider adapters. A job sent to it is "submitted" as
 * prediction "null-<job id>" in status starting and stays there: get()
 * reports the same, cancel() succeeds, there are no webhooks and no
 * outputs. Nothing is sent anywhere and nothing is stored.
 *
 * It has no configuration keys:
 *   [adapter "null"]
 *
 * The plugin uses only the host table: no core symbol.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "darkroom-plugin.h"

/* dr_prediction.id holds at most this many characters. */
#define NULL_ID_MAX    64
#define NULL_ID_PREFIX "null-"

typedef struct null_adapter {
	const dr_host *host;
	const dr_instance *inst;
} null_adapter;

static void null_destroy(void *state)
{
	free(state);
}

static dr_status null_create(const dr_host *host, const dr_instance *inst,
			     void **state, dr_error *err)
{
	null_adapter *a;

	(void)err; /* nothing can fail: mem_calloc aborts on out of memory */
	*state = NULL;
	a = host->mem_calloc(1, sizeof(*a));
	a->host = host;
	a->inst = inst;
	*state = a;
	return DR_OK;
}

/* Intake check: a model must be named, whatever it is. */
static dr_status null_validate(void *state, const dr_job_view *job,
			       dr_error *err)
{
	null_adapter *a = state;

	if (!job->model || !job->model[0])
		return a->host->fail(err, DR_ERR_INVALID, "invalid_input",
				     "model must not be empty");
	return DR_OK;
}

/* The prediction every call reports: "null-<job id>", starting. */
static dr_status fill_prediction(null_adapter *a, const dr_job_view *job,
				 dr_prediction *out, dr_error *err)
{
	size_t n;
	char *id;

	if (!job->id || !job->id[0] ||
	    strlen(job->id) > NULL_ID_MAX - strlen(NULL_ID_PREFIX))
		return a->host->fail(err, DR_ERR_INVALID, "invalid_input",
				     "the job id must have 1 to %zu "
				     "characters",
				     NULL_ID_MAX - strlen(NULL_ID_PREFIX));
	n = strlen(NULL_ID_PREFIX) + strlen(job->id) + 1;
	id = a->host->mem_alloc(n);
	snprintf(id, n, "%s%s", NULL_ID_PREFIX, job->id);
	memset(out, 0, sizeof(*out));
	out->id = id;
	out->status = DR_PRED_STARTING;
	out->progress = -1;
	out->predict_time = -1;
	return DR_OK;
}

static dr_status null_submit(void *state, const dr_job_view *job,
			     dr_prediction *out, dr_error *err)
{
	null_adapter *a = state;
	dr_status st = fill_prediction(a, job, out, err);

	if (st == DR_OK)
		a->host->log(a->inst, DR_LOG_DEBUG,
			     "event=null.submitted job=%s prediction=%s",
			     job->id, out->id);
	return st;
}

static dr_status null_get(void *state, const dr_job_view *job,
			  dr_prediction *out, dr_error *err)
{
	return fill_prediction(state, job, out, err);
}

static dr_status null_cancel(void *state, const dr_job_view *job, dr_error *err)
{
	(void)state;
	(void)job;
	(void)err;
	return DR_OK;
}

static const dr_adapter_ops null_ops = {
	.size = sizeof(dr_adapter_ops),
	.validate = null_validate,
	.submit = null_submit,
	.get = null_get,
	.cancel = null_cancel,
	.webhook = NULL,
	.download_hosts = NULL,
};

static const dr_plugin null_plugin = {
	.abi_version = DR_PLUGIN_ABI_VERSION,
	.size = sizeof(dr_plugin),
	.name = "null",
	.kind = DR_PLUGIN_ADAPTER,
	.version = "1.0",
	.description = "accepts jobs and never runs them (tests, local runs)",
	.config_keys = NULL,
	.create = null_create,
	.destroy = null_destroy,
	.adapter = &null_ops,
};

DR_PLUGIN_DEFINE(null_plugin)
