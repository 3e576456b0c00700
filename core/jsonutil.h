/*
 * jsonutil.h - parsing untrusted JSON with limits, on json-c.
 *
 * Request bodies are parsed here: strict RFC 8259 syntax, UTF-8
 * validated, nesting capped, no object naming a member twice, nothing
 * after the document. json-c does the parsing; this module adds the
 * limits and turns failures into dr_errors with stable codes. (Provider
 * webhook bodies are read by their adapter plugins with json-c alone:
 * an authentic delivery is never refused for a repeated name.)
 */
#ifndef DR_JSONUTIL_H
#define DR_JSONUTIL_H

#include <json-c/json.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"

/*
 * Parse `len` bytes of `text` as one JSON document nested at most
 * `max_depth` levels. On success *out holds a new reference (release with
 * json_object_put). On failure DR_ERR_INVALID with err->code one of
 * "malformed_json", "invalid_utf8", "too_deep", "empty_body",
 * "duplicate_key" and a short message with the byte offset; for
 * "duplicate_key" it names the member and its JSON pointer:
 * `duplicate key "prompt" at /input/prompt (byte 57)` (the offset of the
 * second occurrence). Names are compared as json-c keeps them (escapes
 * decoded, up to a NUL). Time O(n log n) in the number of member names;
 * scratch memory proportional to them, freed before returning.
 */
dr_status json_parse_limited(const char *text, size_t len, int max_depth,
			     json_object **out, dr_error *err) DR_WARN_UNUSED;

/* Append the compact serialisation of `obj` to `b`. */
dr_status json_append(dr_buf *b, json_object *obj) DR_WARN_UNUSED;

/* The string member `key` of object `obj`, or NULL when absent or not a
 * string. */
const char *json_get_string(json_object *obj, const char *key);

/* Append `dbtime` ("YYYY-MM-DD HH:MM:SS.ffffff", as MariaDB gives a
 * DATETIME(6)) as a JSON string in ISO 8601 UTC with milliseconds
 * ("...T...123Z"), the form of every time of the API; null when NULL. */
dr_status json_append_time(dr_buf *b, const char *dbtime) DR_WARN_UNUSED;

#endif
