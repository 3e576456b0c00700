/*
 * workflow.h - the references between a workflow's steps: checked at
 * intake, resolved when a step is submitted.
 *
 * A workflow job (CONTRACT §2, Workflows) runs its steps in order; each
 * step is a job of its own (jobs.parent_id, step_index, step_name:
 * migrations/0017_job_kinds.sql), and the workflow's status follows its
 * steps' in the transactions that move them (jobstate.h). Inside a step's
 * input, two forms refer to stored data:
 *
 *   {"$ref": "PATH"}       the value at PATH, any JSON type (the object's
 *                          only member);
 *   "… {PATH} …"           in a string: the value at PATH as text (a
 *                          string as it is, null as nothing, anything
 *                          else as compact JSON). Only {input.…} and
 *                          {steps.…} are placeholders; "{{" is a literal
 *                          "{"; any other braces stay text.
 *
 * PATH is one of
 *   input[.KEY…]                         the workflow's input (a KEY of
 *                                        digits indexes a list);
 *   steps.NAME.text                      step NAME's text outputs, joined
 *                                        in order (a language model's
 *                                        token stream is one);
 *   steps.NAME.outputs.N.url|key|sha256  step NAME's stored output N:
 *                                        darkroom's own URL, never the
 *                                        provider's expiring one;
 *   steps.NAME.outputs.N.renditions.PRESET.url
 * where NAME is an earlier step. The input as written is what is stored
 * and shown; the provider gets the resolved one.
 *
 * Who may call whom: jobs (intake) and the engine (submit) call this
 * module; it calls db, the plugin host (a sink's public URL) and json-c.
 */
#ifndef DR_WORKFLOW_H
#define DR_WORKFLOW_H

#include <json-c/json.h>
#include <stddef.h>

#include "db.h"
#include "error.h"
#include "plugin.h"

#define WORKFLOW_STEP_NAME_MAX 64 /* bytes of a step's name */

/* What intake knows of one step, for checking references to it. */
typedef struct workflow_step_info {
	const char *name;
	const char *const *renditions; /* its rendition presets */
	size_t n_renditions;
} workflow_step_info;

/* 1 when `s` is a step name: 1 to WORKFLOW_STEP_NAME_MAX characters of
 * A-Z a-z 0-9 _ -. */
int workflow_name_valid(const char *s);

/*
 * Check every reference in `input`, the input as written of step `k` of
 * steps[0..n) in a workflow whose input is `wf_input`: each path well
 * formed, naming a value of the workflow's input that exists, or a step
 * before step k (a later one or step k itself: "forward reference"), an
 * output field there is, a preset of that step's renditions. On
 * DR_ERR_INVALID (code invalid_field), `where` (wsize bytes) gets where
 * the bad value sits within `input` ("prompt", "images[1]", "" for input
 * itself) and err->message says why (without the field's name).
 */
dr_status workflow_check_refs(json_object *input, json_object *wf_input,
			      const workflow_step_info *steps, size_t n,
			      size_t k, char *where, size_t wsize,
			      dr_error *err) DR_WARN_UNUSED;

/* A deep copy of `input` in which every {"$ref"} object is the empty
 * string (what an adapter's intake check sees: the value comes later);
 * the caller puts it. NULL when out of memory. */
json_object *workflow_check_input(json_object *input);

/*
 * The input step `step_index` of workflow `parent_id` is submitted with:
 * `input_json` (the step's input as written) with every reference
 * resolved from what is stored now: the workflow's input, and the text
 * and stored outputs of its earlier steps, whose URLs `sink` (the active
 * sink, borrowed; NULL: no URL can be made) makes from their keys. *out
 * gets the JSON text (malloc, the caller frees). The stored inputs are
 * parsed as intake did, nested at most `max_depth` ([server]
 * json_max_depth). DR_ERR_INVALID (code bad_reference) when a reference
 * names what the steps did not produce (no such output, no text, a
 * rendition not made), or (bad_input) when a stored input does not parse;
 * a database status otherwise.
 */
dr_status workflow_resolve(dr_db *db, const struct dr_instance *sink,
			   const char *parent_id, const char *input_json,
			   int max_depth, char **out,
			   dr_error *err) DR_WARN_UNUSED;

#endif
