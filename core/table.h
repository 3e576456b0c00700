/*
 * table.h - aligned text tables for the command line (`darkroom jobs
 * list`, `outputs`, `jobs show`).
 *
 * Cells are copied in; columns are as wide as their widest cell (counted
 * in UTF-8 characters, so a model name with accents stays aligned), two
 * spaces apart, the last column not padded. A cell longer than the
 * column's maximum is cut with "…".
 */
#ifndef DR_TABLE_H
#define DR_TABLE_H

#include <stddef.h>
#include <stdio.h>

#define DR_TABLE_MAX_COLS 12

typedef struct dr_table dr_table;

/* A table with the `n` (1..DR_TABLE_MAX_COLS) column headings given;
 * `max` (may be NULL) caps each column's width in characters (0: none).
 * Free with table_free(). */
dr_table *table_new(size_t n, const char *const *headings,
		    const size_t *max);

/* Add a row of table's column count of cells (NULL prints as "-"). */
void table_add(dr_table *t, const char *const *cells);

/* Print the heading and the rows. */
void table_print(const dr_table *t, FILE *f);

/* NULL is a no-op. */
void table_free(dr_table *t);

#endif
