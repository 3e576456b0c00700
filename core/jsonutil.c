/*
 * jsonutil.c - parsing untrusted JSON with limits (see jsonutil.h).
 */
#include "jsonutil.h"

#include <string.h>


/*
 * A strict RFC 8259 scan before json-c builds the tree: json-c accepts
 * single quotes, NaN and Infinity even in strict mode and lets overlong
 * UTF-8 and surrogates through, and none of that should reach storage or
 * a provider. The scan also enforces the nesting limit itself.
 */
typedef struct scan {
	const unsigned char *p, *start, *end;
	int depth, max_depth;
	const char *code; /* set on failure */
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
	int first = 1;

	if (++s->depth > s->max_depth)
		return scan_fail(s, "too_deep");
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
				s->p++;
				s->depth--;
				return 0;
			}
			if (s->p >= s->end || *s->p != ',')
				return scan_fail(s, "malformed_json");
			s->p++;
		}
		first = 0;
		skip_ws(s);
		if (close == '}') {
			if (s->p >= s->end || *s->p != '"')
				return scan_fail(s, "malformed_json");
			if (scan_string(s))
				return -1;
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

	if (len == 0)
		return dr_fail(err, DR_ERR_INVALID, "empty_body",
			       "the body is empty");
	if (len > (size_t)INT32_MAX)
		return dr_fail(err, DR_ERR_TOO_LARGE, "too_large",
			       "the JSON document is too large");
	memset(&sc, 0, sizeof(sc));
	sc.p = sc.start = (const unsigned char *)text;
	sc.end = sc.p + len;
	sc.max_depth = max_depth;
	if (scan_value(&sc) == 0) {
		skip_ws(&sc);
		if (sc.p != sc.end)
			scan_fail(&sc, "malformed_json");
	}
	if (sc.code) {
		offset = (size_t)(sc.p - sc.start);
		if (strcmp(sc.code, "too_deep") == 0)
			return dr_fail(err, DR_ERR_INVALID, "too_deep",
				       "JSON nested deeper than %d levels",
				       max_depth);
		if (strcmp(sc.code, "invalid_utf8") == 0)
			return dr_fail(err, DR_ERR_INVALID, "invalid_utf8",
				       "invalid UTF-8 at byte %zu", offset);
		return dr_fail(err, DR_ERR_INVALID, "malformed_json",
			       "malformed JSON at byte %zu", offset);
	}
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
