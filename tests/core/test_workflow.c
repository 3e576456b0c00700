/*
 * test_workflow.c - the references of a workflow's steps as intake checks
 * them: well-formed paths, values of the workflow's input that exist,
 * earlier steps only, a step's presets, where in the input a bad one sits;
 * placeholders (only {input.…} and {steps.…}; "{{" a brace); the input an
 * adapter's check sees; step names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "workflow.h"

static const char *const thumb[] = { "thumb" };
static const workflow_step_info steps[] = {
	{ "concept", NULL, 0 },
	{ "image", thumb, 1 },
	{ "upscale", NULL, 0 },
};

/* Check `input_json` as step k's input; DR_OK or the status, with the
 * place into where and the message into msg. */
static dr_status check(const char *input_json, size_t k, char where[128],
		       char msg[512])
{
	json_object *wf = json_tokener_parse(
		"{\"title\": \"Sourdough\", \"tags\": [\"a\", {\"b\": null}]}");
	json_object *in = json_tokener_parse(input_json);
	dr_error err;
	dr_status st;

	assert_non_null(wf);
	assert_non_null(in);
	dr_error_clear(&err);
	where[0] = '\0';
	st = workflow_check_refs(in, wf, steps, 3, k, where, 128, &err);
	snprintf(msg, 512, "%s", err.message);
	json_object_put(in);
	json_object_put(wf);
	return st;
}

static void test_valid_refs(void **state)
{
	static const char *const ok[] = {
		"{\"p\": {\"$ref\": \"steps.concept.text\"}}",
		"{\"p\": {\"$ref\": \"steps.image.outputs.0.url\"}}",
		"{\"p\": {\"$ref\": \"steps.image.outputs.12.key\"}}",
		"{\"p\": {\"$ref\": \"steps.image.outputs.0.sha256\"}}",
		"{\"p\": {\"$ref\": "
		"\"steps.image.outputs.0.renditions.thumb.url\"}}",
		"{\"p\": {\"$ref\": \"input\"}}",
		"{\"p\": {\"$ref\": \"input.tags.1.b\"}}",
		"{\"p\": \"about {input.title}: {steps.concept.text}!\"}",
		"{\"p\": \"{{input.nope} {not a path} {} {steps\"}",
		"{\"p\": [1, {\"q\": \"{input.tags.0}\"}], \"f\": {\"$file\": "
		"\"f_x\"}}",
	};
	char where[128], msg[512];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		dr_status st = check(ok[i], 2, where, msg);

		if (st != DR_OK)
			fail_msg("%s: %s", ok[i], msg);
	}
}

static void test_bad_refs(void **state)
{
	static const struct {
		const char *input;
		size_t k;
		const char *where, *words;
	} bad[] = {
		{ "{\"p\": {\"$ref\": \"steps.nope.text\"}}", 2, "p",
		  "no step named 'nope'" },
		{ "{\"p\": {\"$ref\": \"steps.image.text\"}}", 1, "p",
		  "forward reference" },
		{ "{\"p\": {\"$ref\": \"steps.upscale.text\"}}", 1, "p",
		  "after this one" },
		{ "{\"p\": {\"$ref\": \"steps.concept\"}}", 2, "p",
		  "is not a path" },
		{ "{\"p\": {\"$ref\": \"steps.concept.outputs.x.url\"}}", 2, "p",
		  "is not a path" },
		{ "{\"p\": {\"$ref\": \"steps.concept.outputs.0.bytes\"}}", 2,
		  "p", "is not a path" },
		{ "{\"p\": {\"$ref\": \"steps.concept.text.more\"}}", 2, "p",
		  "is not a path" },
		{ "{\"p\": {\"$ref\": \"input.subtitle\"}}", 2, "p",
		  "no such value" },
		{ "{\"p\": {\"$ref\": \"input.tags.5\"}}", 2, "p",
		  "no such value" },
		{ "{\"p\": {\"$ref\": \"input.\"}}", 2, "p", "is not a path" },
		{ "{\"p\": {\"$ref\": 3}}", 2, "p", "one member" },
		{ "{\"p\": {\"$ref\": \"input\", \"x\": 1}}", 2, "p",
		  "one member" },
		{ "{\"a\": [0, {\"b\": \"x {steps.image.outputs.0.renditions."
		  "card.url}\"}]}",
		  2, "a[1].b", "no rendition 'card'" },
		{ "{\"p\": \"{input.title} then {steps.upscale.text}\"}", 1, "p",
		  "forward reference" },
		{ "{\"p\": \"{steps.concept.texts}\"}", 2, "p",
		  "is not a path" },
	};
	char where[128], msg[512];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		dr_status st = check(bad[i].input, bad[i].k, where, msg);

		if (st != DR_ERR_INVALID)
			fail_msg("%s: accepted", bad[i].input);
		if (strcmp(where, bad[i].where) != 0)
			fail_msg("%s: at '%s', not '%s'", bad[i].input, where,
				 bad[i].where);
		if (!strstr(msg, bad[i].words))
			fail_msg("%s: '%s' lacks '%s'", bad[i].input, msg,
				 bad[i].words);
	}
}

/* A check changes nothing in the input it checks. */
static void test_check_leaves_input(void **state)
{
	const char *text = "{\"p\":{\"$ref\":\"steps.concept.text\"},"
			   "\"q\":\"x {input.title} {{y\",\"r\":[{\"$ref\":"
			   "\"input\"}]}";
	json_object *wf = json_tokener_parse("{\"title\": \"t\"}");
	json_object *in = json_tokener_parse(text);
	char where[64];
	dr_error err;

	(void)state;
	dr_error_clear(&err);
	assert_int_equal(workflow_check_refs(in, wf, steps, 3, 1, where,
					     sizeof(where), &err),
			 DR_OK);
	assert_string_equal(json_object_to_json_string_ext(
				    in, JSON_C_TO_STRING_PLAIN |
						JSON_C_TO_STRING_NOSLASHESCAPE),
			    text);
	json_object_put(in);
	json_object_put(wf);
}

/* The adapter's intake check sees each {"$ref"} as "". */
static void test_check_input(void **state)
{
	json_object *in = json_tokener_parse(
		"{\"p\":{\"$ref\":\"input.title\"},\"l\":[{\"$ref\":\"input\"},"
		"2],\"o\":{\"k\":{\"$ref\":\"steps.a.text\"}},\"s\":\"{x}\"}");
	json_object *c = workflow_check_input(in);

	(void)state;
	assert_non_null(c);
	assert_string_equal(json_object_to_json_string_ext(
				    c, JSON_C_TO_STRING_PLAIN),
			    "{\"p\":\"\",\"l\":[\"\",2],\"o\":{\"k\":\"\"},"
			    "\"s\":\"{x}\"}");
	/* The original keeps its references. */
	assert_true(json_object_object_get_ex(
		json_object_object_get(in, "p"), "$ref", NULL));
	json_object_put(c);
	json_object_put(in);
}

static void test_names(void **state)
{
	char long_name[80];

	(void)state;
	assert_true(workflow_name_valid("concept"));
	assert_true(workflow_name_valid("step_2-b"));
	assert_false(workflow_name_valid(""));
	assert_false(workflow_name_valid("a.b"));
	assert_false(workflow_name_valid("a b"));
	memset(long_name, 'a', 64);
	long_name[64] = '\0';
	assert_true(workflow_name_valid(long_name));
	long_name[64] = 'a';
	long_name[65] = '\0';
	assert_false(workflow_name_valid(long_name));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_refs),
		cmocka_unit_test(test_bad_refs),
		cmocka_unit_test(test_check_leaves_input),
		cmocka_unit_test(test_check_input),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
