/*
 * normalise.c - Replicate's prediction document -> dr_prediction.
 *
 * One function for every way a prediction reaches darkroom (the create
 * answer, a GET, a webhook body, the prediction reconcile finds), so they
 * cannot disagree. It trusts nothing in the document: the id must be a
 * short path-safe token (it goes into URLs later), strings are copied
 * only when they are the expected type, and the outputs are capped in
 * number and size before anything is allocated for them.
 *
 * Outputs. Replicate's `output` is any JSON. The rules, in order:
 *   - null or absent: no outputs (with data_removed, the files are gone);
 *   - a string: a URL (DR_OUTPUT_URL), a data: URI (DR_OUTPUT_DATA), or
 *     else the model's text (one DR_OUTPUT_TEXT);
 *   - a non-empty list of strings none of which is a URL or data: URI: a
 *     language model's token stream, kept as ONE text output, the tokens
 *     concatenated;
 *   - otherwise the document is walked depth-first (lists in order, object
 *     values in key order) and every URL or data: URI string becomes an
 *     output; other strings, numbers, booleans and nulls inside are not
 *     outputs (they stay in raw_json);
 *   - a non-empty structured output (object, list, number, boolean) in
 *     which the walk finds no file at all becomes one text output holding
 *     its compact JSON, so a model that answers {"transcription": "..."}
 *     or 0.93 keeps its result in the index instead of losing it.
 * A URL is "http://" or "https://" (any case) followed by at least one
 * character and no white space or control character — and so are
 * "file://" and "ftp://" ones: they go to the downloader, which refuses
 * them (url_not_allowed) rather than letting them pass as text; a data: URI is
 * "data:" with a media type of token characters before a ','. A plain
 * "http: see above" token is text, not a URL.
 *
 * Everything allocated here comes from the host's allocator (malloc
 * memory that never comes back NULL), as darkroom-plugin.h requires,
 * and released on every error path: the caller gets a filled prediction
 * or a cleared one.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "replicate.h"

/* Longest media type part of a data: URI ("image/png;base64"). */
#define DATA_MEDIA_MAX 256
/* Longest version and completed_at strings kept. */
#define VERSION_MAX   128
#define TIMESTAMP_MAX 64
#define TRAINED_VERSION_MAX 255 /* jobs.training_version */

typedef struct status_name {
	const char *name;
	dr_prediction_status status;
} status_name;

static const status_name statuses[] = {
	{ "starting", DR_PRED_STARTING },
	{ "processing", DR_PRED_PROCESSING },
	{ "succeeded", DR_PRED_SUCCEEDED },
	{ "failed", DR_PRED_FAILED },
	{ "canceled", DR_PRED_CANCELED },
	{ "aborted", DR_PRED_ABORTED },
};

/* Outputs being collected, with their running size. */
typedef struct out_list {
	dr_output_ref *v;
	size_t n;
	size_t cap;
	size_t bytes;
} out_list;

/* ------------------------------------------------------------------------
 * Small helpers
 */

/* A copy of exactly s[0..n) and a NUL (a JSON string may hold NULs). */
static char *dup_n(const dr_host *host, const char *s, size_t n)
{
	char *p = host->mem_alloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* Longest prefix of s[0..n) not ending inside a UTF-8 sequence, <= max. */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
	if (n <= max)
		return n;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

json_object *rep_parse_json(const char *text, size_t len)
{
	json_tokener *tok;
	json_object *o;
	size_t end;

	if (!text || len > INT_MAX)
		return NULL;
	tok = json_tokener_new_ex(REP_JSON_DEPTH);
	if (!tok)
		return NULL;
	/* Not JSON_TOKENER_STRICT: a document we only read is accepted as
	 * liberally as json-c allows (NaN from a Python encoder, say). */
	o = json_tokener_parse_ex(tok, text, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success) {
		/* A null literal parses to NULL with success: not wanted. */
		json_object_put(o);
		json_tokener_free(tok);
		return NULL;
	}
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	for (; end < len; end++) {
		char c = text[end];

		if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			json_object_put(o);
			return NULL;
		}
	}
	return o;
}

static const char *get_string(json_object *doc, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(doc, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* ------------------------------------------------------------------------
 * Classifying strings
 */

int rep_is_url(const char *s)
{
	size_t skip;

	if (strncasecmp(s, "https://", 8) == 0)
		skip = 8;
	else if (strncasecmp(s, "http://", 7) == 0 ||
		 strncasecmp(s, "file://", 7) == 0)
		skip = 7;
	else if (strncasecmp(s, "ftp://", 6) == 0)
		skip = 6;
	else
		return 0;
	s += skip;
	if (!*s)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* RFC 2045 token characters, plus '/', ';' and '=' between them. */
static int media_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("!#$&^_.+-/;=", c) != NULL;
}

int rep_is_data_uri(const char *s)
{
	size_t i;

	if (strncasecmp(s, "data:", 5) != 0)
		return 0;
	s += 5;
	for (i = 0; s[i] && s[i] != ','; i++)
		if (i >= DATA_MEDIA_MAX || !media_char(s[i]))
			return 0;
	return s[i] == ',';
}

/* ------------------------------------------------------------------------
 * Progress and time
 */

double rep_progress_from_logs(const char *logs, size_t len)
{
	if (!logs)
		return -1;
	/* From the end: the bar's last state is what counts. */
	for (size_t i = len; i >= 2; i--) {
		size_t end = i - 2, start = end, dots = 0;
		char num[16];
		double v;

		if (logs[end] != '%' || logs[end + 1] != '|')
			continue;
		while (start > 0 && end - start < sizeof(num) - 1) {
			char c = logs[start - 1];

			if (c == '.')
				dots++;
			else if (c < '0' || c > '9')
				break;
			start--;
		}
		if (start == end || dots > 1 || logs[start] == '.')
			continue;
		memcpy(num, logs + start, end - start);
		num[end - start] = '\0';
		v = strtod(num, NULL);
		if (v > 100)
			continue;
		return v / 100;
	}
	return -1;
}

/* `n` decimal digits at *s into *v; advances *s. 1 on success. */
static int digits(const char **s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*s)[i];

		if (c < '0' || c > '9')
			return 0;
		*v = *v * 10 + (c - '0');
	}
	*s += n;
	return 1;
}

double rep_parse_time(const char *s)
{
	struct tm tm;
	int year, mon, day, hour, min, sec, oh = 0, om = 0, sign = 0;
	double frac = 0, scale = 0.1;
	time_t t;

	if (!s)
		return -1;
	if (!digits(&s, 4, &year) || *s++ != '-' || !digits(&s, 2, &mon) ||
	    *s++ != '-' || !digits(&s, 2, &day))
		return -1;
	if (*s != 'T' && *s != 't' && *s != ' ')
		return -1;
	s++;
	if (!digits(&s, 2, &hour) || *s++ != ':' || !digits(&s, 2, &min) ||
	    *s++ != ':' || !digits(&s, 2, &sec))
		return -1;
	if (*s == '.') {
		s++;
		if (*s < '0' || *s > '9')
			return -1;
		for (; *s >= '0' && *s <= '9'; s++, scale /= 10)
			frac += (*s - '0') * scale;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s++ == '+' ? 1 : -1;
		if (!digits(&s, 2, &oh))
			return -1;
		if (*s == ':')
			s++;
		if (!digits(&s, 2, &om))
			return -1;
	} else {
		return -1;
	}
	if (*s || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 ||
	    min > 59 || sec > 60 || oh > 23 || om > 59)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	return (double)t + frac - sign * (oh * 3600 + om * 60);
}

/* ------------------------------------------------------------------------
 * Outputs
 */

static void out_list_free(out_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].value);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static dr_status too_large(const dr_host *host, dr_error *err)
{
	return host->fail(err, DR_ERR_TOO_LARGE, "output_too_large",
			  "the prediction has more than %d outputs or more "
			  "than %u MiB of output text and URIs",
			  REP_MAX_OUTPUTS, REP_MAX_OUTPUT_SIZE >> 20);
}

/* Check that one more output of `len` bytes fits the caps. */
static dr_status out_room(const dr_host *host, const out_list *l, size_t len,
			  dr_error *err)
{
	if (l->n >= REP_MAX_OUTPUTS || len > REP_MAX_OUTPUT_SIZE - l->bytes)
		return too_large(host, err);
	return DR_OK;
}

/* Append an output taking ownership of `value` (freed on failure). */
static dr_status out_take(const dr_host *host, out_list *l, dr_output_kind kind,
			  char *value, size_t len, dr_error *err)
{
	dr_status st = out_room(host, l, len, err);

	if (st != DR_OK) {
		free(value);
		return st;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;

		l->v = host->mem_realloc(l->v, cap * sizeof(*l->v));
		l->cap = cap;
	}
	l->v[l->n].kind = kind;
	l->v[l->n].value = value;
	l->n++;
	l->bytes += len;
	return DR_OK;
}

static dr_status out_add(const dr_host *host, out_list *l, dr_output_kind kind,
			 const char *s, size_t len, dr_error *err)
{
	dr_status st = out_room(host, l, len, err);
	char *copy;

	if (st != DR_OK)
		return st;
	copy = dup_n(host, s, len);
	return out_take(host, l, kind, copy, len, err);
}

/* A file output for s when it is a URL or data: URI; else nothing. */
static dr_status add_file(const dr_host *host, out_list *l, json_object *s,
			  dr_error *err)
{
	const char *v = json_object_get_string(s);
	size_t len = (size_t)json_object_get_string_len(s);

	if (rep_is_url(v))
		return out_add(host, l, DR_OUTPUT_URL, v, len, err);
	if (rep_is_data_uri(v))
		return out_add(host, l, DR_OUTPUT_DATA, v, len, err);
	return DR_OK;
}

static dr_status walk(const dr_host *host, out_list *l, json_object *o,
		      dr_error *err)
{
	dr_status st = DR_OK;

	switch (json_object_get_type(o)) {
	case json_type_string:
		return add_file(host, l, o, err);
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(o); i++) {
			st = walk(host, l, json_object_array_get_idx(o, i),
				  err);
			if (st != DR_OK)
				return st;
		}
		return DR_OK;
	case json_type_object: {
		/* json-c keeps object members in insertion (document) order. */
		json_object_object_foreach(o, key, val)
		{
			(void)key;
			st = walk(host, l, val, err);
			if (st != DR_OK)
				return st;
		}
		return DR_OK;
	}
	default:
		return DR_OK; /* numbers, booleans, null: not outputs */
	}
}

/* 1 when o is a non-empty list of strings none of which is a file. */
static int token_list(json_object *o)
{
	size_t n;

	if (!json_object_is_type(o, json_type_array))
		return 0;
	n = json_object_array_length(o);
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(o, i);
		const char *s;

		if (!json_object_is_type(e, json_type_string))
			return 0;
		s = json_object_get_string(e);
		if (rep_is_url(s) || rep_is_data_uri(s))
			return 0;
	}
	return n > 0;
}

static dr_status add_tokens(const dr_host *host, out_list *l, json_object *o,
			    dr_error *err)
{
	size_t n = json_object_array_length(o), total = 0, at = 0;
	dr_status st;
	char *text;

	for (size_t i = 0; i < n; i++) {
		total += (size_t)json_object_get_string_len(
			json_object_array_get_idx(o, i));
		if (total > REP_MAX_OUTPUT_SIZE)
			return too_large(host, err);
	}
	if (total == 0)
		return DR_OK;
	st = out_room(host, l, total, err);
	if (st != DR_OK)
		return st;
	text = host->mem_alloc(total + 1);
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(o, i);
		size_t len = (size_t)json_object_get_string_len(e);

		memcpy(text + at, json_object_get_string(e), len);
		at += len;
	}
	text[at] = '\0';
	return out_take(host, l, DR_OUTPUT_TEXT, text, at, err);
}

static int empty_value(json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_null:
		return 1;
	case json_type_string:
		return json_object_get_string_len(o) == 0;
	case json_type_array:
		return json_object_array_length(o) == 0;
	case json_type_object:
		return json_object_object_length(o) == 0;
	default:
		return 0;
	}
}

/* The outputs of a prediction's `output` value; see the file comment. */
static dr_status collect_outputs(const dr_host *host, json_object *output,
				 out_list *l, dr_error *err)
{
	const char *json;
	dr_status st;

	if (!output || empty_value(output))
		return DR_OK;
	if (json_object_is_type(output, json_type_string)) {
		const char *s = json_object_get_string(output);
		size_t len = (size_t)json_object_get_string_len(output);

		if (rep_is_url(s) || rep_is_data_uri(s))
			return add_file(host, l, output, err);
		return out_add(host, l, DR_OUTPUT_TEXT, s, len, err);
	}
	if (token_list(output))
		return add_tokens(host, l, output, err);
	st = walk(host, l, output, err);
	if (st != DR_OK || l->n > 0)
		return st;
	json = json_object_to_json_string_ext(
		output,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!json)
		return host->fail(err, DR_ERR_NOMEM, "out_of_memory",
				  "out of memory");
	return out_add(host, l, DR_OUTPUT_TEXT, json, strlen(json), err);
}

/* ------------------------------------------------------------------------
 * The prediction
 */

void rep_prediction_clear(dr_prediction *p)
{
	if (!p)
		return;
	free(p->id);
	free(p->version);
	free(p->error);
	free(p->raw_json);
	free(p->completed_at);
	free(p->trained_version);
	for (size_t i = 0; i < p->n_outputs; i++)
		free(p->outputs[i].value);
	free(p->outputs);
	memset(p, 0, sizeof(*p));
	p->progress = -1;
	p->predict_time = -1;
}

static int id_ok(const char *id)
{
	size_t n = 0;

	if (!id || id[0] == '.')
		return 0;
	for (; id[n]; n++) {
		char c = id[n];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '_' || c == '-' ||
			 c == '.';

		if (!ok || n >= REP_ID_MAX)
			return 0;
	}
	return n > 0;
}

static dr_prediction_status map_status(const char *s)
{
	if (!s)
		return DR_PRED_UNKNOWN;
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (strcmp(s, statuses[i].name) == 0)
			return statuses[i].status;
	return DR_PRED_UNKNOWN;
}

/* The prediction's error as text: a string as is, anything else as its
 * JSON; NULL for none. *oom is set when json-c could not write it. */
static char *error_text(const dr_host *host, json_object *doc, int *oom)
{
	json_object *v;
	const char *s;
	size_t len;

	if (!json_object_object_get_ex(doc, "error", &v) || !v ||
	    empty_value(v))
		return NULL;
	if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		len = (size_t)json_object_get_string_len(v);
	} else {
		s = json_object_to_json_string_ext(
			v, JSON_C_TO_STRING_PLAIN |
				   JSON_C_TO_STRING_NOSLASHESCAPE);
		if (!s) {
			*oom = 1;
			return NULL;
		}
		len = strlen(s);
	}
	return dup_n(host, s, utf8_cut(s, len, REP_MAX_ERROR_TEXT));
}

/* A copy of the string member `key` when it has 1..max bytes. */
static char *short_string(const dr_host *host, json_object *doc,
			  const char *key, size_t max)
{
	const char *s = get_string(doc, key);

	if (!s || !s[0] || strlen(s) > max)
		return NULL;
	return host->mem_strdup(s);
}

static double predict_time(json_object *doc)
{
	json_object *metrics, *v;
	double t;

	if (!json_object_object_get_ex(doc, "metrics", &metrics) ||
	    !json_object_is_type(metrics, json_type_object) ||
	    !json_object_object_get_ex(metrics, "predict_time", &v))
		return -1;
	if (!json_object_is_type(v, json_type_double) &&
	    !json_object_is_type(v, json_type_int))
		return -1;
	t = json_object_get_double(v);
	return t >= 0 ? t : -1;
}

dr_status rep_normalise(const dr_host *host, json_object *doc,
			dr_prediction *out, dr_error *err)
{
	out_list outs = { 0 };
	const char *id, *raw;
	json_object *v;
	int oom = 0;
	dr_status st;

	memset(out, 0, sizeof(*out));
	out->progress = -1;
	out->predict_time = -1;
	if (!json_object_is_type(doc, json_type_object))
		return host->fail(err, DR_ERR_PROVIDER, "bad_prediction",
				  "the provider's prediction is not a JSON "
				  "object");
	id = get_string(doc, "id");
	if (!id_ok(id))
		return host->fail(err, DR_ERR_PROVIDER, "bad_prediction",
				  "the provider's prediction has no id of 1 to "
				  "%d characters [A-Za-z0-9._-]",
				  REP_ID_MAX);

	v = NULL;
	json_object_object_get_ex(doc, "output", &v);
	st = collect_outputs(host, v, &outs, err);
	if (st != DR_OK)
		goto err_outputs;
	/* A training's output: {"version": "owner/name:<id>", "weights":
	 * "<url>"}; the weights are its file output (the walk above), the
	 * new version is kept here. */
	if (json_object_is_type(v, json_type_object)) {
		const char *tv = get_string(v, "version");

		if (tv && tv[0] && strlen(tv) <= TRAINED_VERSION_MAX)
			out->trained_version = host->mem_strdup(tv);
	}

	out->status = map_status(get_string(doc, "status"));
	if (out->status == DR_PRED_SUCCEEDED) {
		out->progress = 1.0;
	} else if (json_object_object_get_ex(doc, "logs", &v) &&
		   json_object_is_type(v, json_type_string)) {
		out->progress = rep_progress_from_logs(
			json_object_get_string(v),
			(size_t)json_object_get_string_len(v));
	}
	out->predict_time = predict_time(doc);
	if (json_object_object_get_ex(doc, "data_removed", &v) &&
	    json_object_is_type(v, json_type_boolean))
		out->data_removed = json_object_get_boolean(v) ? 1 : 0;

	out->id = host->mem_strdup(id);
	out->version = short_string(host, doc, "version", VERSION_MAX);
	out->completed_at =
		short_string(host, doc, "completed_at", TIMESTAMP_MAX);
	out->error = error_text(host, doc, &oom);
	raw = json_object_to_json_string_ext(
		doc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (raw)
		out->raw_json = host->mem_strdup(raw);
	else
		oom = 1;
	if (oom) {
		/* json-c could not write the document out. */
		st = host->fail(err, DR_ERR_NOMEM, "out_of_memory",
				"out of memory");
		goto err_members;
	}
	out->outputs = outs.v;
	out->n_outputs = outs.n;
	return DR_OK;

err_members:
	rep_prediction_clear(out);
err_outputs:
	out_list_free(&outs);
	return st;
}
