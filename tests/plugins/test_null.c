/*
 * test_null.c - the `null` adapter against the mock host.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "darkroom-plugin.h"
#include "mock_host.h"

const dr_plugin *dr_plugin_entry(void);

typedef struct fixture {
	const dr_plugin *plugin;
	dr_instance *inst;
	void *state;
	dr_error err;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->plugin = dr_plugin_entry();
	f->inst = mock_instance_new("null", f->plugin);
	assert_int_equal(
		f->plugin->create(mock_host(), f->inst, &f->state, &f->err),
		DR_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	f->plugin->destroy(f->state);
	assert_int_equal(mock_host_undeclared(f->inst), 0);
	mock_instance_free(f->inst);
	free(f);
	return 0;
}

static void clear_prediction(dr_prediction *p)
{
	free(p->id);
	free(p->version);
	free(p->error);
	free(p->raw_json);
	free(p->completed_at);
	for (size_t i = 0; i < p->n_outputs; i++)
		free(p->outputs[i].value);
	free(p->outputs);
	memset(p, 0, sizeof(*p));
}

static void test_descriptor(void **state)
{
	const dr_plugin *p = dr_plugin_entry();

	(void)state;
	assert_int_equal(p->abi_version, DR_PLUGIN_ABI_VERSION);
	assert_int_equal(p->size, sizeof(dr_plugin));
	assert_string_equal(p->name, "null");
	assert_int_equal(p->kind, DR_PLUGIN_ADAPTER);
	assert_null(p->config_keys);
	assert_non_null(p->adapter->submit);
	assert_null(p->adapter->webhook);
	assert_null(p->adapter->download_hosts);
	assert_null(p->sink);
	p->destroy(NULL);
}

static void test_validate(void **state)
{
	fixture *f = *state;
	const dr_adapter_ops *ops = f->plugin->adapter;
	dr_job_view job = { .id = "j_1", .model = "owner/name" };

	assert_int_equal(ops->validate(f->state, &job, &f->err), DR_OK);
	job.model = "";
	assert_int_equal(ops->validate(f->state, &job, &f->err),
			 DR_ERR_INVALID);
	assert_non_null(strstr(f->err.message, "model"));
	job.model = NULL;
	assert_int_equal(ops->validate(f->state, &job, &f->err),
			 DR_ERR_INVALID);
}

static void test_submit_get_cancel(void **state)
{
	fixture *f = *state;
	const dr_adapter_ops *ops = f->plugin->adapter;
	dr_job_view job = { .id = "j_01JD3M6X2Q8Y7R5T4W3V2B1N0C",
			    .model = "x/y",
			    .input_json = "{}",
			    .attempt = 1 };
	dr_prediction pred;

	memset(&pred, 0, sizeof(pred));
	assert_int_equal(ops->submit(f->state, &job, &pred, &f->err), DR_OK);
	assert_string_equal(pred.id, "null-j_01JD3M6X2Q8Y7R5T4W3V2B1N0C");
	assert_int_equal(pred.status, DR_PRED_STARTING);
	assert_int_equal(pred.n_outputs, 0);
	assert_true(pred.progress < 0);
	clear_prediction(&pred);
	assert_true(mock_host_log_has(f->inst, "event=null.submitted"));

	job.prediction_id = "null-j_01JD3M6X2Q8Y7R5T4W3V2B1N0C";
	assert_int_equal(ops->get(f->state, &job, &pred, &f->err), DR_OK);
	assert_string_equal(pred.id, job.prediction_id);
	assert_int_equal(pred.status, DR_PRED_STARTING);
	clear_prediction(&pred);

	assert_int_equal(ops->cancel(f->state, &job, &f->err), DR_OK);
}

/* The prediction id must fit in 64 characters. */
static void test_job_id_limits(void **state)
{
	fixture *f = *state;
	const dr_adapter_ops *ops = f->plugin->adapter;
	char id[61];
	dr_job_view job = { .id = id, .model = "m" };
	dr_prediction pred;

	memset(&pred, 0, sizeof(pred));
	memset(id, 'a', 59);
	id[59] = '\0';
	assert_int_equal(ops->submit(f->state, &job, &pred, &f->err), DR_OK);
	assert_int_equal(strlen(pred.id), 64);
	clear_prediction(&pred);

	id[59] = 'a';
	id[60] = '\0';
	assert_int_equal(ops->submit(f->state, &job, &pred, &f->err),
			 DR_ERR_INVALID);
	assert_null(pred.id);
	job.id = "";
	assert_int_equal(ops->submit(f->state, &job, &pred, &f->err),
			 DR_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_descriptor),
		cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_get_cancel, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_job_id_limits, setup,
						teardown),
	};

	return cmocka_run_group_tests_name("null adapter", tests, NULL, NULL);
}
