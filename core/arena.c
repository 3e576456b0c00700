/*
 * arena.c - per-request memory arena (see arena.h).
 */
#include "arena.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

struct dr_arena_block {
	dr_arena_block *next;
	size_t size;
	size_t used;
	alignas(max_align_t) unsigned char data[];
};

void arena_init(dr_arena *a, size_t block_size)
{
	a->head = NULL;
	a->block_size = block_size ? block_size : 8192;
}

void *arena_alloc(dr_arena *a, size_t n)
{
	const size_t align = alignof(max_align_t);
	dr_arena_block *b = a->head;
	size_t need = (n + align - 1) & ~(align - 1);

	if (need < n)
		dr_die("arena allocation of %zu bytes overflows", n);
	if (!b || b->size - b->used < need) {
		size_t size = need > a->block_size ? need : a->block_size;

		b = dr_xmalloc(sizeof(*b) + size);
		b->size = size;
		b->used = 0;
		b->next = a->head;
		a->head = b;
	}
	b->used += need;
	return b->data + b->used - need;
}

char *arena_strndup(dr_arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *arena_strdup(dr_arena *a, const char *s)
{
	return arena_strndup(a, s, strlen(s));
}

void arena_reset(dr_arena *a)
{
	dr_arena_block *b = a->head;

	if (!b)
		return;
	/* Keep the oldest block (the last in the list); free the rest. */
	while (b->next) {
		dr_arena_block *next = b->next;

		free(b);
		b = next;
	}
	b->used = 0;
	a->head = b;
}

void arena_free(dr_arena *a)
{
	while (a->head) {
		dr_arena_block *next = a->head->next;

		free(a->head);
		a->head = next;
	}
}
