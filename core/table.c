/*
 * table.c - aligned text tables (see table.h).
 *
 * Rows are kept until printing because a column's width is known only
 * once every cell is in.
 */
#include "table.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

struct dr_table {
	size_t n_cols;
	size_t max[DR_TABLE_MAX_COLS];
	char **cells; /* n_rows * n_cols, row 0 the headings */
	size_t n_rows, cap_rows;
};

/* Characters (UTF-8 code points) in s. */
static size_t width(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* A copy of s cut to `max` characters with "…" when longer (0: none). */
static char *cut(const char *s, size_t max)
{
	size_t n = 0;
	const char *p = s;
	char *out;

	if (!max || width(s) <= max)
		return dr_xstrdup(s);
	for (; *p; p++) {
		if (((unsigned char)*p & 0xC0) != 0x80 && n++ == max - 1)
			break;
	}
	out = dr_xmalloc((size_t)(p - s) + 4);
	memcpy(out, s, (size_t)(p - s));
	memcpy(out + (p - s), "\xe2\x80\xa6", 4);
	return out;
}

static void add_row(dr_table *t, const char *const *cells)
{
	if (t->n_rows == t->cap_rows) {
		t->cap_rows = t->cap_rows ? 2 * t->cap_rows : 16;
		t->cells = realloc(t->cells,
				   t->cap_rows * t->n_cols * sizeof(*t->cells));
		if (!t->cells)
			dr_die("out of memory");
	}
	for (size_t c = 0; c < t->n_cols; c++)
		t->cells[t->n_rows * t->n_cols + c] =
			cut(cells[c] ? cells[c] : "-", t->max[c]);
	t->n_rows++;
}

dr_table *table_new(size_t n, const char *const *headings, const size_t *max)
{
	dr_table *t;

	if (n == 0 || n > DR_TABLE_MAX_COLS)
		dr_die("table_new: %zu columns", n);
	t = dr_xcalloc(1, sizeof(*t));
	t->n_cols = n;
	for (size_t c = 0; c < n && max; c++)
		t->max[c] = max[c];
	add_row(t, headings);
	return t;
}

void table_add(dr_table *t, const char *const *cells)
{
	add_row(t, cells);
}

void table_print(const dr_table *t, FILE *f)
{
	size_t w[DR_TABLE_MAX_COLS] = {0};

	for (size_t r = 0; r < t->n_rows; r++)
		for (size_t c = 0; c < t->n_cols; c++) {
			size_t n = width(t->cells[r * t->n_cols + c]);

			if (n > w[c])
				w[c] = n;
		}
	for (size_t r = 0; r < t->n_rows; r++) {
		for (size_t c = 0; c < t->n_cols; c++) {
			const char *s = t->cells[r * t->n_cols + c];

			fputs(s, f);
			if (c + 1 < t->n_cols)
				fprintf(f, "%*s", (int)(w[c] - width(s) + 2),
					"");
		}
		fputc('\n', f);
	}
}

void table_free(dr_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
