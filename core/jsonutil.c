/*
 * jsonutil.c - parsing untrusted JSON with limits (see jsonutil.h).
 */
#include "jsonutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

/* Bytes of a member name, and of a JSON pointer, shown in a message, and
 * the buffers that hold them (with "...", an index and the NUL). */
#define JSON_NAME_SHOWN 64
#define JSON_POINTER_SHOWN 200
#define JSON_NAME_BUF (JSON_NAME_SHOWN + 4)
#define JSON_POINTER_BUF (JSON_POINTER_SHOWN + JSON_NAME_SHOWN + 40)

/*
 * A strict RFC 8259 scan before json-c builds the tree: json-c accepts
 * single quotes, NaN and Infinity even in strict mode and lets overlong
 * UTF-8 and surrogates through, and none of that should reach storage or
 * a provider. The scan also enforces the nesting limit itself.
 *
 * It also refuses an object that names a member twice. json-c keeps the
 * last of them without a word, while another reader of the same bytes
 * (a proxy, a log, the client's own library) may keep the first: such a
 * request means two things, so it is refused, not guessed at. Names are
 * compared as json-c stores them: escapes decoded, cut at the first NUL
 * (json-c keeps names as C strings), so "a", "\u0061" and "a\u0000x"
 * are one name. The names of the objects still open sit on one stack
 * (keys); when an object closes, its names are sorted and neighbours
 * compared, then popped: O(n log n) in the number of names whatever
 * their spelling, with memory proportional to the names of the open
 * objects, itself bounded by the document's size.
 */
typedef struct scan_key {
	const char *name; /* into the document, or into `names` */
	size_t len;       /* up to the first NUL */
	size_t at;        /* byte offset of its opening quote */
} scan_key;

/* One open container, for the JSON pointer of an error. */
typedef struct scan_level {
	int is_object;
	size_t index; /* arrays: the current element */
	size_t key;   /* objects: keys[] index of the current member */
} scan_level;

typedef struct scan {
	const unsigned char *p, *start, *end;
	int depth, max_depth;
	const char *code; /* set on failure */
	scan_level *levels; /* [1..max_depth] */
	scan_key *keys;
	size_t n_keys, cap_keys;
	dr_arena names; /* decoded names that had escapes */
	char detail[JSON_NAME_BUF + JSON_POINTER_BUF + 48];
} scan;

static int scan_fail(scan *s, const char *code)
{
	s->code = code;
	return -1;
}

static void skip_ws(scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
				 *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* One UTF-8 sequence at s->p (first byte >= 0x80), RFC 3629 strict. */
static int scan_utf8(scan *s)
{
	const unsigned char *p = s->p;
	size_t avail = (size_t)(s->end - p);
	unsigned c = p[0], cp;
	size_t n;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return scan_fail(s, "invalid_utf8");
	}
	if (avail < n)
		return scan_fail(s, "invalid_utf8");
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return scan_fail(s, "invalid_utf8");
		cp = (cp << 6) | (p[i] & 0x3fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return scan_fail(s, "invalid_utf8");
	s->p += n;
	return 0;
}

static int hex4(const unsigned char *p, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		unsigned c = p[i], d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	*out = v;
	return 0;
}

static int scan_string(scan *s)
{
	s->p++; /* opening quote */
	while (s->p < s->end) {
		unsigned c = *s->p;

		if (c == '"') {
			s->p++;
			return 0;
		}
		if (c < 0x20)
			return scan_fail(s, "malformed_json");
		if (c >= 0x80) {
			if (scan_utf8(s))
				return -1;
			continue;
		}
		if (c != '\\') {
			s->p++;
			continue;
		}
		if (s->end - s->p < 2)
			break;
		c = s->p[1];
		if (strchr("\"\\/bfnrt", (int)c) && c) {
			s->p += 2;
		} else if (c == 'u') {
			unsigned u, lo;

			if (s->end - s->p < 6 || hex4(s->p + 2, &u))
				return scan_fail(s, "malformed_json");
			s->p += 6;
			if (u >= 0xdc00 && u <= 0xdfff)
				return scan_fail(s, "invalid_utf8");
			if (u >= 0xd800 && u <= 0xdbff) {
				/* A high surrogate needs its low half. */
				if (s->end - s->p < 6 || s->p[0] != '\\' ||
				    s->p[1] != 'u' || hex4(s->p + 2, &lo) ||
				    lo < 0xdc00 || lo > 0xdfff)
					return scan_fail(s, "invalid_utf8");
				s->p += 6;
			}
		} else {
			return scan_fail(s, "malformed_json");
		}
	}
	return scan_fail(s, "malformed_json");
}

/* Append code point `cp` to `out` as UTF-8; returns the bytes written. */
static size_t put_utf8(unsigned cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Decode the body of a string that scan_string() accepted (raw[0..n),
 * without quotes) into `out`, which holds n bytes: no escape decodes to
 * more bytes than it takes. Returns the decoded length.
 */
static size_t decode_string(const unsigned char *raw, size_t n, char *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		unsigned u, lo;

		if (raw[i] != '\\') {
			out[o++] = (char)raw[i++];
			continue;
		}
		switch (raw[i + 1]) {
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'u':
			(void)hex4(raw + i + 2, &u);
			if (u >= 0xd800 && u <= 0xdbff) {
				(void)hex4(raw + i + 8, &lo);
				u = 0x10000 + ((u - 0xd800) << 10) +
				    (lo - 0xdc00);
				i += 6;
			}
			o += put_utf8(u, out + o);
			i += 4;
			break;
		default: /* '"', '\\' and '/' stand for themselves */
			out[o++] = (char)raw[i + 1];
			break;
		}
		i += 2;
	}
	return o;
}

/* Push the member name whose opening quote is at `q` (scan_string() has
 * just passed its closing quote) for the duplicate check. */
static void push_key(scan *s, const unsigned char *q)
{
	const unsigned char *raw = q + 1;
	size_t n = (size_t)(s->p - 1 - raw);
	scan_key *k;
	const char *nul;

	if (s->n_keys == s->cap_keys) {
		s->cap_keys = s->cap_keys ? s->cap_keys * 2 : 64;
		s->keys = dr_xrealloc(s->keys,
				      s->cap_keys * sizeof(*s->keys));
	}
	k = &s->keys[s->n_keys++];
	k->at = (size_t)(q - s->start);
	if (!memchr(raw, '\\', n)) {
		k->name = (const char *)raw;
		k->len = n;
	} else {
		char *out = arena_alloc(&s->names, n ? n : 1);

		k->name = out;
		k->len = decode_string(raw, n, out);
		nul = memchr(out, '\0', k->len);
		if (nul)
			k->len = (size_t)(nul - out);
	}
}

static int key_cmp(const void *a, const void *b)
{
	const scan_key *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->name, y->name, n);

	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->at < y->at ? -1 : x->at > y->at;
}

/* Copy up to `max` bytes of name[0..len) into out (NUL-terminated), cut
 * at a UTF-8 character boundary, with "..." when cut. JSON pointer
 * escapes ('~' -> "~0", '/' -> "~1") when `pointer`. Returns the bytes
 * written. */
static size_t show_name(char *out, size_t max, const char *name, size_t len,
			int pointer)
{
	size_t o = 0, i = 0;

	while (i < len) {
		unsigned char c = (unsigned char)name[i];
		size_t w = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
		const char *esc = NULL;

		if (pointer && c == '~')
			esc = "~0";
		else if (pointer && c == '/')
			esc = "~1";
		if (o + (esc ? 2 : w) > max)
			break;
		if (esc)
			memcpy(out + o, esc, 2), o += 2;
		else
			memcpy(out + o, name + i, w), o += w;
		i += w;
	}
	if (i < len)
		memcpy(out + o, "...", 3), o += 3;
	out[o] = '\0';
	return o;
}

/*
 * Write the error detail for member `dup` (a second occurrence) of the
 * object open at s->depth: the name and its JSON pointer (RFC 6901), built
 * from the members and indexes of the containers around it.
 */
static void describe_duplicate(scan *s, const scan_key *dup)
{
	char name[JSON_NAME_BUF];
	char ptr[JSON_POINTER_BUF];
	size_t used = 0;
	int d;

	for (d = 1; d < s->depth && used < JSON_POINTER_SHOWN; d++) {
		const scan_level *l = &s->levels[d];
		const scan_key *k = &s->keys[l->key];

		ptr[used++] = '/';
		if (l->is_object)
			used += show_name(ptr + used, JSON_POINTER_SHOWN - used,
					  k->name, k->len, 1);
		else
			used += (size_t)snprintf(ptr + used,
						 sizeof(ptr) - used, "%zu",
						 l->index);
	}
	if (d < s->depth) {
		memcpy(ptr + used, "/...", 4);
		used += 4;
	}
	ptr[used++] = '/';
	show_name(ptr + used, JSON_NAME_SHOWN, dup->name, dup->len, 1);
	show_name(name, JSON_NAME_SHOWN, dup->name, dup->len, 0);
	snprintf(s->detail, sizeof(s->detail),
		 "duplicate key \"%s\" at %s (byte %zu)", name, ptr, dup->at);
}

/* Check the names keys[base..) of the object closing now, then pop them.
 * Of several repeated names, the repetition that comes first in the
 * document is reported. */
static int check_keys(scan *s, size_t base)
{
	size_t n = s->n_keys - base;
	const scan_key *dup = NULL;

	if (n > 1) {
		scan_key *k = s->keys + base;

		qsort(k, n, sizeof(*k), key_cmp);
		for (size_t i = 1; i < n; i++)
			if (k[i].len == k[i - 1].len &&
			    memcmp(k[i].name, k[i - 1].name, k[i].len) == 0 &&
			    (!dup || k[i].at < dup->at))
				dup = &k[i];
	}
	if (dup) {
		describe_duplicate(s, dup);
		s->p = s->start + dup->at;
		return scan_fail(s, "duplicate_key");
	}
	s->n_keys = base;
	return 0;
}

static int is_digit(const scan *s)
{
	return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

static int scan_number(scan *s)
{
	if (s->p < s->end && *s->p == '-')
		s->p++;
	if (!is_digit(s))
		return scan_fail(s, "malformed_json");
	if (*s->p == '0')
		s->p++;
	else
		while (is_digit(s))
			s->p++;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (!is_digit(s))
			return scan_fail(s, "malformed_json");
		while (is_digit(s))
			s->p++;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!is_digit(s))
			return scan_fail(s, "malformed_json");
		while (is_digit(s))
			s->p++;
	}
	return 0;
}

static int scan_literal(scan *s, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return scan_fail(s, "malformed_json");
	s->p += n;
	return 0;
}

static int scan_value(scan *s);

/* An array or object; `close` is ']' or '}'. */
static int scan_container(scan *s, unsigned char close)
{
	size_t base = s->n_keys;
	scan_level *level;
	int first = 1;

	if (++s->depth > s->max_depth)
		return scan_fail(s, "too_deep");
	level = &s->levels[s->depth];
	level->is_object = close == '}';
	level->index = 0;
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		s->depth--;
		return 0;
	}
	for (;;) {
		if (!first) {
			skip_ws(s);
			if (s->p < s->end && *s->p == close) {
				if (close == '}' && check_keys(s, base))
					return -1;
				s->p++;
				s->depth--;
				return 0;
			}
			if (s->p >= s->end || *s->p != ',')
				return scan_fail(s, "malformed_json");
			s->p++;
			level->index++;
		}
		first = 0;
		skip_ws(s);
		if (close == '}') {
			const unsigned char *q = s->p;

			if (s->p >= s->end || *s->p != '"')
				return scan_fail(s, "malformed_json");
			if (scan_string(s))
				return -1;
			push_key(s, q);
			level->key = s->n_keys - 1;
			skip_ws(s);
			if (s->p >= s->end || *s->p != ':')
				return scan_fail(s, "malformed_json");
			s->p++;
		}
		if (scan_value(s))
			return -1;
	}
}

static int scan_value(scan *s)
{
	skip_ws(s);
	if (s->p >= s->end)
		return scan_fail(s, "malformed_json");
	switch (*s->p) {
	case '{':
		return scan_container(s, '}');
	case '[':
		return scan_container(s, ']');
	case '"':
		return scan_string(s);
	case 't':
		return scan_literal(s, "true");
	case 'f':
		return scan_literal(s, "false");
	case 'n':
		return scan_literal(s, "null");
	default:
		return scan_number(s);
	}
}

dr_status json_parse_limited(const char *text, size_t len, int max_depth,
			     json_object **out, dr_error *err)
{
	json_tokener *tok;
	json_object *obj;
	enum json_tokener_error jerr;
	size_t offset;
	scan sc;
	dr_status st = DR_OK;

	if (len == 0)
		return dr_fail(err, DR_ERR_INVALID, "empty_body",
			       "the body is empty");
	if (len > (size_t)INT32_MAX)
		return dr_fail(err, DR_ERR_TOO_LARGE, "too_large",
			       "the JSON document is too large");
	if (max_depth < 1)
		max_depth = 1;
	memset(&sc, 0, sizeof(sc));
	sc.p = sc.start = (const unsigned char *)text;
	sc.end = sc.p + len;
	sc.max_depth = max_depth;
	sc.levels = dr_xcalloc((size_t)max_depth + 1, sizeof(*sc.levels));
	arena_init(&sc.names, 4096);
	if (scan_value(&sc) == 0) {
		skip_ws(&sc);
		if (sc.p != sc.end)
			scan_fail(&sc, "malformed_json");
	}
	if (sc.code) {
		offset = (size_t)(sc.p - sc.start);
		if (strcmp(sc.code, "too_deep") == 0)
			st = dr_fail(err, DR_ERR_INVALID, "too_deep",
				     "JSON nested deeper than %d levels",
				     max_depth);
		else if (strcmp(sc.code, "invalid_utf8") == 0)
			st = dr_fail(err, DR_ERR_INVALID, "invalid_utf8",
				     "invalid UTF-8 at byte %zu", offset);
		else if (strcmp(sc.code, "duplicate_key") == 0)
			st = dr_fail(err, DR_ERR_INVALID, "duplicate_key",
				     "%s", sc.detail);
		else
			st = dr_fail(err, DR_ERR_INVALID, "malformed_json",
				     "malformed JSON at byte %zu", offset);
	}
	free(sc.levels);
	free(sc.keys);
	arena_free(&sc.names);
	if (st != DR_OK)
		return st;
	/* The scan accepted it; json-c builds the tree (one level of slack:
	 * json-c counts its depth differently). */
	tok = json_tokener_new_ex(max_depth + 1);
	if (!tok)
		dr_die("out of memory creating a JSON parser");
	obj = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		/* A bare number at the very end could still grow: end it. */
		obj = json_tokener_parse_ex(tok, " ", 1);
		jerr = json_tokener_get_error(tok);
	}
	json_tokener_free(tok);
	if (jerr != json_tokener_success) {
		json_object_put(obj);
		return dr_fail(err, DR_ERR_INVALID, "malformed_json",
			       "malformed JSON: %s",
			       json_tokener_error_desc(jerr));
	}
	*out = obj;
	return DR_OK;
}

dr_status json_append(dr_buf *b, json_object *obj)
{
	size_t n;
	const char *s = json_object_to_json_string_length(
		obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
		&n);

	if (!s)
		dr_die("out of memory serialising JSON");
	return dr_buf_append(b, s, n);
}

const char *json_get_string(json_object *obj, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

dr_status json_append_time(dr_buf *b, const char *t)
{
	/* "YYYY-MM-DD HH:MM:SS.ffffff" -> "YYYY-MM-DDTHH:MM:SS.fffZ" */
	if (!t)
		return dr_buf_puts(b, "null");
	if (strlen(t) < 19)
		return dr_buf_json_string(b, t);
	return dr_buf_printf(b, "\"%.10sT%.8s.%.3sZ\"", t, t + 11,
			     strlen(t) >= 23 ? t + 20 : "000");
}
