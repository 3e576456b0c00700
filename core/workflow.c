/*
 * workflow.c - the references between a workflow's steps (see
 * workflow.h).
 *
 * One parser reads a path for both jobs: intake checks it against what
 * the request says (the workflow's input, the steps' names and presets),
 * submit resolves it from what is stored. Both walk the step's input the
 * same way: {"$ref"} objects are taken whole, strings are scanned for
 * placeholders, everything else is walked into.
 */
#include "workflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jsonutil.h"
#include "log.h"

#define PATH_MAX_LEN 512 /* bytes of a path */
#define URL_MAX	     2300

typedef enum path_kind { P_INPUT, P_TEXT, P_OUTPUT, P_RENDITION } path_kind;

/* A parsed path. */
typedef struct wpath {
	path_kind kind;
	char text[PATH_MAX_LEN + 1];	       /* the whole path */
	const char *rest;		       /* P_INPUT: after "input" */
	char step[WORKFLOW_STEP_NAME_MAX + 1]; /* the step named */
	unsigned long n;		       /* P_OUTPUT, P_RENDITION */
	char field[66];			       /* P_OUTPUT: url, key, sha256 */
	char preset[65];		       /* P_RENDITION */
} wpath;

int workflow_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > WORKFLOW_STEP_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* The next dot-separated segment of *s into seg (size bytes); 0 when
 * there is none or it does not fit. */
static int segment(const char **s, char *seg, size_t size)
{
	const char *dot;
	size_t n;

	if (!**s)
		return 0;
	dot = strchr(*s, '.');
	n = dot ? (size_t)(dot - *s) : strlen(*s);
	if (n == 0 || n >= size)
		return 0;
	memcpy(seg, *s, n);
	seg[n] = '\0';
	*s += n + (dot ? 1 : 0);
	return !dot || **s; /* "a." has an empty last segment */
}

static int all_digits(const char *s)
{
	if (!*s || strlen(s) > 6)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* Parse p[0..len) into *w; 0 with *why set when it is not a path. */
static int parse_path(const char *p, size_t len, wpath *w, const char **why)
{
	char seg[66];
	const char *s;

	memset(w, 0, sizeof(*w));
	*why = "is not a path (input.NAME or steps.NAME.text, "
	       "steps.NAME.outputs.N.url|key|sha256, "
	       "steps.NAME.outputs.N.renditions.PRESET.url)";
	if (len == 0 || len > PATH_MAX_LEN)
		return 0;
	memcpy(w->text, p, len);
	w->text[len] = '\0';
	if (strlen(w->text) != len)
		return 0;
	if (strcmp(w->text, "input") == 0 ||
	    strncmp(w->text, "input.", 6) == 0) {
		w->kind = P_INPUT;
		w->rest = w->text + 5;
		return w->rest[0] == '\0' || w->rest[1] != '\0';
	}
	s = w->text;
	if (!segment(&s, seg, sizeof(seg)) || strcmp(seg, "steps") != 0 ||
	    !segment(&s, w->step, sizeof(w->step)) ||
	    !workflow_name_valid(w->step) || !segment(&s, seg, sizeof(seg)))
		return 0;
	if (strcmp(seg, "text") == 0) {
		w->kind = P_TEXT;
		return *s == '\0';
	}
	if (strcmp(seg, "outputs") != 0 || !segment(&s, seg, sizeof(seg)) ||
	    !all_digits(seg))
		return 0;
	w->n = strtoul(seg, NULL, 10);
	if (!segment(&s, seg, sizeof(seg)))
		return 0;
	if (strcmp(seg, "url") == 0 || strcmp(seg, "key") == 0 ||
	    strcmp(seg, "sha256") == 0) {
		w->kind = P_OUTPUT;
		snprintf(w->field, sizeof(w->field), "%s", seg);
		return *s == '\0';
	}
	if (strcmp(seg, "renditions") != 0 ||
	    !segment(&s, w->preset, sizeof(w->preset)) ||
	    !segment(&s, seg, sizeof(seg)) || strcmp(seg, "url") != 0 ||
	    *s != '\0')
		return 0;
	w->kind = P_RENDITION;
	return 1;
}

/* The value at `rest` (".a.0.b", or "" for v itself) inside v; *found 0
 * when there is none (a JSON null found is NULL with *found 1). */
static json_object *walk_input(json_object *v, const char *rest, int *found)
{
	char seg[256];

	*found = 0;
	if (*rest == '.')
		rest++;
	while (*rest) {
		json_object *next = NULL;

		if (!segment(&rest, seg, sizeof(seg)))
			return NULL;
		if (json_object_is_type(v, json_type_object)) {
			if (!json_object_object_get_ex(v, seg, &next))
				return NULL;
		} else if (json_object_is_type(v, json_type_array) &&
			   all_digits(seg)) {
			size_t i = strtoul(seg, NULL, 10);

			if (i >= json_object_array_length(v))
				return NULL;
			next = json_object_array_get_idx(v, i);
		} else {
			return NULL;
		}
		v = next;
	}
	*found = 1;
	return v;
}

/* 1 when `v` is a {"$ref": …} object (any other member, or a value that
 * is not a string, still makes it one: the check refuses it). */
static int is_ref(json_object *v)
{
	return json_object_is_type(v, json_type_object) &&
	       json_object_object_get_ex(v, "$ref", NULL);
}

/* A placeholder's path starts so; anything else in braces is text. */
static int placeholder_start(const char *s, size_t n)
{
	return (n >= 5 && strncmp(s, "input", 5) == 0 &&
		(n == 5 || s[5] == '.')) ||
	       (n > 6 && strncmp(s, "steps.", 6) == 0);
}

/* What a walk does at each path (check or resolve), and its state. */
typedef struct walker walker;
typedef dr_status (*path_fn)(walker *w, const wpath *p, json_object **value,
			     dr_error *err);

struct walker {
	path_fn at;
	int resolving;	 /* replace references (else only check) */
	char where[256]; /* the walk's place in the input */
	size_t where_len;
	/* check */
	json_object *wf_input;
	const workflow_step_info *steps;
	size_t n, k;
	/* resolve */
	dr_db *db;
	const struct dr_instance *sink;
	const char *parent_id;
};

/* A string's placeholders replaced through w->at (resolving) or only
 * checked (*out NULL when nothing was to replace). */
static dr_status scan_string(walker *w, const char *s, json_object **out,
			     dr_error *err)
{
	dr_buf b;
	int changed = 0;
	dr_status st = DR_OK;

	*out = NULL;
	dr_buf_init(&b, (size_t)64 << 20);
	while (*s && st == DR_OK) {
		const char *close;
		wpath p;
		const char *why;
		json_object *v = NULL;

		if (s[0] == '{' && s[1] == '{') {
			st = dr_buf_append(&b, "{", 1);
			s += 2;
			changed = 1;
			continue;
		}
		close = s[0] == '{' ? strchr(s + 1, '}') : NULL;
		if (!close ||
		    !placeholder_start(s + 1, (size_t)(close - s - 1))) {
			st = dr_buf_append(&b, s, 1);
			s++;
			continue;
		}
		if (!parse_path(s + 1, (size_t)(close - s - 1), &p, &why)) {
			st = dr_fail(
				err, DR_ERR_INVALID, "invalid_field",
				"placeholder {%.*s} %s",
				(int)(close - s - 1 > 80 ? 80 : close - s - 1),
				s + 1, why);
			break;
		}
		st = w->at(w, &p, &v, err);
		if (st == DR_OK && v) {
			if (json_object_is_type(v, json_type_string))
				st = dr_buf_append(
					&b, json_object_get_string(v),
					(size_t)json_object_get_string_len(v));
			else
				st = dr_buf_puts(
					&b, json_object_to_json_string_ext(
						    v, JSON_C_TO_STRING_PLAIN));
		}
		json_object_put(v);
		changed = 1;
		s = close + 1;
	}
	if (st == DR_ERR_TOO_LARGE || st == DR_ERR_NOMEM)
		st = dr_fail(err, DR_ERR_INVALID, "bad_reference",
			     "a string with its placeholders resolved is "
			     "over 64 MiB");
	if (st == DR_OK && changed)
		*out = json_object_new_string_len(b.data ? b.data : "",
						  (int)b.len);
	dr_buf_free(&b);
	return st;
}

static void where_push(walker *w, const char *key, size_t idx, size_t *mark)
{
	size_t room = sizeof(w->where) - w->where_len;

	*mark = w->where_len;
	if (key)
		snprintf(w->where + w->where_len, room, "%s%.80s",
			 w->where_len ? "." : "", key);
	else
		snprintf(w->where + w->where_len, room, "[%zu]", idx);
	w->where_len = strlen(w->where);
}

static void where_pop(walker *w, size_t mark)
{
	w->where_len = mark;
	w->where[mark] = '\0';
}

/* Put r into member `key` of object v (or item i of array v): the
 * walk's replacement, when resolving; a check drops it. */
static void replace_in(walker *w, json_object *v, const char *key, size_t i,
		       json_object *r)
{
	if (!w->resolving)
		json_object_put(r);
	else if (key)
		json_object_object_add(v, key, r);
	else
		json_object_array_put_idx(v, i, r);
}

/*
 * Walk `v`: each reference goes through w->at. *replace is 1 when v is
 * to be replaced by *repl (a resolved {"$ref"}, which may be JSON null,
 * or a string with placeholders), 0 when v stays (its members, walked,
 * replaced in place when resolving).
 */
static dr_status walk(walker *w, json_object *v, int *replace,
		      json_object **repl, dr_error *err)
{
	dr_status st = DR_OK;

	*replace = 0;
	*repl = NULL;
	if (is_ref(v)) {
		json_object *path = json_object_object_get(v, "$ref");
		const char *why;
		wpath p;

		if (json_object_object_length(v) != 1 ||
		    !json_object_is_type(path, json_type_string))
			return dr_fail(err, DR_ERR_INVALID, "invalid_field",
				       "{\"$ref\": PATH} must be an object "
				       "with that one member, a string");
		if (!parse_path(json_object_get_string(path),
				(size_t)json_object_get_string_len(path), &p,
				&why))
			return dr_fail(err, DR_ERR_INVALID, "invalid_field",
				       "$ref \"%.80s\" %s",
				       json_object_get_string(path), why);
		st = w->at(w, &p, repl, err);
		*replace = st == DR_OK;
		return st;
	}
	switch (json_object_get_type(v)) {
	case json_type_string:
		st = scan_string(w, json_object_get_string(v), repl, err);
		*replace = st == DR_OK && *repl;
		return st;
	case json_type_object: {
		json_object_object_foreach(v, key, child)
		{
			json_object *r = NULL;
			size_t mark;
			int rep;

			where_push(w, key, 0, &mark);
			st = walk(w, child, &rep, &r, err);
			if (st != DR_OK)
				return st;
			where_pop(w, mark);
			if (rep)
				replace_in(w, v, key, 0, r);
		}
		return DR_OK;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			json_object *r = NULL;
			size_t mark;
			int rep;

			where_push(w, NULL, i, &mark);
			st = walk(w, json_object_array_get_idx(v, i), &rep, &r,
				  err);
			if (st != DR_OK)
				return st;
			where_pop(w, mark);
			if (rep)
				replace_in(w, v, NULL, i, r);
		}
		return DR_OK;
	default:
		return DR_OK;
	}
}

/* ----------------------------------------------------------- intake */

static dr_status check_at(walker *w, const wpath *p, json_object **value,
			  dr_error *err)
{
	size_t s;
	int found;

	*value = NULL;
	if (p->kind == P_INPUT) {
		(void)walk_input(w->wf_input, p->rest, &found);
		if (!found)
			return dr_fail(err, DR_ERR_INVALID, "invalid_field",
				       "%s: the workflow's input has no such "
				       "value",
				       p->text);
		return DR_OK;
	}
	for (s = 0; s < w->n; s++)
		if (strcmp(w->steps[s].name, p->step) == 0)
			break;
	if (s == w->n)
		return dr_fail(err, DR_ERR_INVALID, "invalid_field",
			       "%s: there is no step named '%s'", p->text,
			       p->step);
	if (s >= w->k)
		return dr_fail(err, DR_ERR_INVALID, "invalid_field",
			       "%s: forward reference: step '%s' runs %s",
			       p->text, p->step,
			       s == w->k ? "as this step" : "after this one");
	if (p->kind == P_RENDITION) {
		const workflow_step_info *si = &w->steps[s];
		size_t r;

		for (r = 0; r < si->n_renditions; r++)
			if (strcmp(si->renditions[r], p->preset) == 0)
				break;
		if (r == si->n_renditions)
			return dr_fail(err, DR_ERR_INVALID, "invalid_field",
				       "%s: step '%s' makes no rendition "
				       "'%s'",
				       p->text, p->step, p->preset);
	}
	/* The value stands for what comes later: a string for the
	 * placeholder scan, which only checks. */
	return DR_OK;
}

dr_status workflow_check_refs(json_object *input, json_object *wf_input,
			      const workflow_step_info *steps, size_t n,
			      size_t k, char *where, size_t wsize,
			      dr_error *err)
{
	walker w;
	json_object *repl = NULL;
	int replace;
	dr_status st;

	memset(&w, 0, sizeof(w));
	w.at = check_at;
	w.wf_input = wf_input;
	w.steps = steps;
	w.n = n;
	w.k = k;
	st = walk(&w, input, &replace, &repl, err);
	json_object_put(repl); /* a check changes nothing */
	if (st == DR_ERR_INVALID)
		snprintf(where, wsize, "%s", w.where);
	return st;
}

/* Replace {"$ref"} objects by "" in v (a copy), in place. */
static void blank_refs(json_object *v)
{
	if (json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, key, child)
		{
			if (is_ref(child))
				json_object_object_add(
					v, key, json_object_new_string(""));
			else
				blank_refs(child);
		}
	} else if (json_object_is_type(v, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			json_object *child = json_object_array_get_idx(v, i);

			if (is_ref(child))
				json_object_array_put_idx(
					v, i, json_object_new_string(""));
			else
				blank_refs(child);
		}
	}
}

json_object *workflow_check_input(json_object *input)
{
	json_object *copy = NULL;

	if (is_ref(input))
		return json_object_new_string("");
	if (json_object_deep_copy(input, &copy, NULL) != 0)
		return NULL;
	blank_refs(copy);
	return copy;
}

/* ---------------------------------------------------------- resolve */

static dr_status missing(dr_error *err, const wpath *p, const char *what)
{
	return dr_fail(err, DR_ERR_INVALID, "bad_reference", "%s: %s", p->text,
		       what);
}

/* The public URL of `key` through the sink, as a new string. */
static dr_status url_of(walker *w, const wpath *p, const char *key,
			json_object **value, dr_error *err)
{
	char url[URL_MAX];

	url[0] = '\0';
	if (!w->sink ||
	    w->sink->plugin->desc->sink->public_url(w->sink->state, key, url,
						    sizeof(url)) != DR_OK ||
	    !url[0])
		return missing(err, p, "the sink makes no URL for it");
	*value = json_object_new_string(url);
	return DR_OK;
}

static dr_status resolve_text(walker *w, const wpath *p, const char *job,
			      json_object **value, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_buf b;
	dr_status st;

	st = db_query(w->db,
		      "SELECT text FROM outputs WHERE job_id = ? AND"
		      " kind = 'text' AND state = 'stored' ORDER BY idx",
		      &rows, err, DB_ARGS(DB_STR(job)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 0) {
		db_rows_free(rows);
		return missing(err, p, "the step made no text output");
	}
	dr_buf_init(&b, (size_t)64 << 20);
	for (size_t i = 0; i < rows->n_rows && st == DR_OK; i++)
		if (db_cell(rows, i, 0))
			st = dr_buf_puts(&b, db_cell(rows, i, 0));
	if (st == DR_OK)
		*value = json_object_new_string_len(b.data ? b.data : "",
						    (int)b.len);
	else
		st = missing(err, p, "the text is over 64 MiB");
	dr_buf_free(&b);
	db_rows_free(rows);
	return st;
}

static dr_status resolve_output(walker *w, const wpath *p, const char *job,
				json_object **value, dr_error *err)
{
	dr_db_rows *rows = NULL, *rend = NULL;
	const char *key;
	dr_status st;

	st = db_query(w->db,
		      "SELECT id, storage_key, sha256 FROM outputs"
		      " WHERE job_id = ? AND idx = ? AND state = 'stored'",
		      &rows, err, DB_ARGS(DB_STR(job), DB_INT((int64_t)p->n)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 0) {
		st = missing(err, p, "the step stored no such output");
		goto out;
	}
	key = db_cell(rows, 0, 1);
	if (p->kind == P_RENDITION) {
		st = db_query(w->db,
			      "SELECT storage_key FROM renditions"
			      " WHERE output_id = ? AND name = ?",
			      &rend, err,
			      DB_ARGS(DB_STR(db_cell(rows, 0, 0)),
				      DB_STR(p->preset)));
		if (st != DR_OK)
			goto out;
		if (rend->n_rows == 0) {
			st = missing(err, p, "no such rendition was made");
			goto out;
		}
		st = url_of(w, p, db_cell(rend, 0, 0), value, err);
		goto out;
	}
	if (!key) {
		st = missing(err, p, "the output is not a stored file");
		goto out;
	}
	if (strcmp(p->field, "key") == 0)
		*value = json_object_new_string(key);
	else if (strcmp(p->field, "sha256") == 0)
		*value = json_object_new_string(
			db_cell(rows, 0, 2) ? db_cell(rows, 0, 2) : "");
	else
		st = url_of(w, p, key, value, err);
out:
	db_rows_free(rend);
	db_rows_free(rows);
	return st;
}

static dr_status resolve_at(walker *w, const wpath *p, json_object **value,
			    dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	*value = NULL;
	if (p->kind == P_INPUT) {
		json_object *v;
		int found;

		v = walk_input(w->wf_input, p->rest, &found);
		if (!found)
			return missing(err, p,
				       "the workflow's input has no such "
				       "value");
		if (v && json_object_deep_copy(v, value, NULL) != 0)
			return dr_fail(err, DR_ERR_NOMEM, "out_of_memory",
				       "out of memory");
		return DR_OK;
	}
	st = db_query(w->db,
		      "SELECT id FROM jobs WHERE parent_id = ? AND"
		      " step_name = ? AND status = 'succeeded'",
		      &rows, err,
		      DB_ARGS(DB_STR(w->parent_id), DB_STR(p->step)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 0)
		st = missing(err, p, "no such step has succeeded");
	else if (p->kind == P_TEXT)
		st = resolve_text(w, p, db_cell(rows, 0, 0), value, err);
	else
		st = resolve_output(w, p, db_cell(rows, 0, 0), value, err);
	db_rows_free(rows);
	return st;
}

dr_status workflow_resolve(dr_db *db, const struct dr_instance *sink,
			   const char *parent_id, const char *input_json,
			   int max_depth, char **out, dr_error *err)
{
	dr_db_rows *rows = NULL;
	json_object *input = NULL, *repl = NULL;
	walker w;
	int replace = 0;
	dr_status st;

	*out = NULL;
	memset(&w, 0, sizeof(w));
	w.at = resolve_at;
	w.resolving = 1;
	w.db = db;
	w.sink = sink;
	w.parent_id = parent_id;
	st = db_query(db, "SELECT input FROM jobs WHERE id = ?", &rows, err,
		      DB_ARGS(DB_STR(parent_id)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 0) {
		db_rows_free(rows);
		return dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			       "no workflow %s", parent_id);
	}
	st = json_parse_limited(db_cell(rows, 0, 0),
				strlen(db_cell(rows, 0, 0)), max_depth,
				&w.wf_input, err);
	if (st == DR_OK)
		st = json_parse_limited(input_json, strlen(input_json),
					max_depth, &input, err);
	db_rows_free(rows);
	if (st != DR_OK) {
		char why[sizeof(err->message)];

		snprintf(why, sizeof(why), "%s", err->message);
		st = dr_fail(err, DR_ERR_INVALID, "bad_input",
			     "a stored input does not parse: %s", why);
		goto out;
	}
	st = walk(&w, input, &replace, &repl, err);
	if (st == DR_OK && replace) {
		/* The whole input was one reference. */
		json_object_put(input);
		input = repl;
		repl = NULL;
	}
	if (st == DR_OK)
		*out = strdup(json_object_to_json_string_ext(
			input, JSON_C_TO_STRING_PLAIN |
				       JSON_C_TO_STRING_NOSLASHESCAPE));
	if (st == DR_OK && !*out)
		st = dr_fail(err, DR_ERR_NOMEM, "out_of_memory",
			     "out of memory");
out:
	json_object_put(repl);
	json_object_put(input);
	json_object_put(w.wf_input);
	return st;
}
