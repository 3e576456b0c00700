/*
 * arena.h - a per-request memory arena.
 *
 * Everything a request allocates for parsing (query parameters, header
 * copies, small strings) comes from its arena and is released in one go
 * when the request ends (nginx's pool idea). The arena keeps its first
 * block between requests, so a typical request allocates nothing from
 * malloc. Allocation failures abort (see error.h).
 */
#ifndef DR_ARENA_H
#define DR_ARENA_H

#include <stddef.h>

typedef struct dr_arena_block dr_arena_block;

typedef struct dr_arena {
	dr_arena_block *head;
	size_t block_size;
} dr_arena;

/* Prepare an empty arena whose blocks hold `block_size` bytes. */
void arena_init(dr_arena *a, size_t block_size);

/* `n` bytes aligned for any type; never NULL. Valid until reset. */
void *arena_alloc(dr_arena *a, size_t n);

/* Copies of strings in the arena. */
char *arena_strdup(dr_arena *a, const char *s);
char *arena_strndup(dr_arena *a, const char *s, size_t n);

/* Release everything allocated since init/reset; keeps the first block. */
void arena_reset(dr_arena *a);

/* Release all memory. */
void arena_free(dr_arena *a);

#endif
