/*
 * error.h - status names and error detail for the core.
 *
 * The status enum lives in darkroom-plugin.h because plugins return it too.
 * This module names statuses and fills dr_error structs; it keeps no global
 * state, so an error always travels in the caller's struct.
 */
#ifndef DR_ERROR_H
#define DR_ERROR_H

#include <stdarg.h>

#include "darkroom-plugin.h"

#define DR_WARN_UNUSED __attribute__((warn_unused_result))

/* A static English name of `status` ("invalid argument"); never NULL. */
const char *dr_strerror(dr_status status);

/*
 * Fill `err` (which may be NULL) with `status`, a stable `code` (NULL
 * keeps an empty code) and a printf-formatted message, truncated to fit.
 * Resets retryable and retry_after. Returns `status`.
 */
dr_status dr_fail(dr_error *err, dr_status status, const char *code,
		  const char *fmt, ...) DR_PRINTF(4, 5);

/* dr_fail() with a va_list, for functions that take a format of their
 * own (the plugin host's fail, the mock host's); `ap` is consumed. */
dr_status dr_vfail(dr_error *err, dr_status status, const char *code,
		   const char *fmt, va_list ap) DR_PRINTF(4, 0);

/* Clear `err` to DR_OK with empty code and message. */
void dr_error_clear(dr_error *err);

/* Print "darkroom: <message>" to stderr and abort; for out of memory. */
_Noreturn void dr_die(const char *fmt, ...) DR_PRINTF(1, 2);

/* malloc/calloc/realloc/strdup that abort with a message on failure. */
void *dr_xmalloc(size_t n);
void *dr_xcalloc(size_t n, size_t size);
void *dr_xrealloc(void *p, size_t n);
char *dr_xstrdup(const char *s);
char *dr_xstrndup(const char *s, size_t n);

#endif
