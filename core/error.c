/*
 * error.c - status names, error detail and allocation that cannot fail.
 *
 * Out of memory is not recoverable in a request or a job step here: the
 * process aborts with a message and the supervisor (web server or worker)
 * starts a new one, while the job's lease makes another worker retry it.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[DR_STATUS_COUNT] = {
	[DR_OK] = "success",
	[DR_ERR_NOMEM] = "out of memory",
	[DR_ERR_INVALID] = "invalid argument",
	[DR_ERR_NOT_FOUND] = "not found",
	[DR_ERR_CONFLICT] = "conflict",
	[DR_ERR_TOO_LARGE] = "too large",
	[DR_ERR_UNSUPPORTED] = "unsupported",
	[DR_ERR_AUTH] = "not authorized",
	[DR_ERR_RATE_LIMITED] = "rate limited",
	[DR_ERR_UNAVAILABLE] = "unavailable",
	[DR_ERR_TIMEOUT] = "timed out",
	[DR_ERR_NETWORK] = "network error",
	[DR_ERR_PROVIDER] = "provider error",
	[DR_ERR_IO] = "i/o error",
	[DR_ERR_CONFIG] = "configuration error",
	[DR_ERR_PLUGIN] = "plugin error",
	[DR_ERR_DATABASE] = "database error",
	[DR_ERR_INTERNAL] = "internal error",
};

const char *dr_strerror(dr_status status)
{
	if ((unsigned)status >= DR_STATUS_COUNT || !status_names[status])
		return "unknown status";
	return status_names[status];
}

dr_status dr_vfail(dr_error *err, dr_status status, const char *code,
		   const char *fmt, va_list ap)
{
	if (!err)
		return status;
	err->status = status;
	err->retryable = 0;
	err->retry_after = 0;
	snprintf(err->code, sizeof(err->code), "%s", code ? code : "");
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	return status;
}

dr_status dr_fail(dr_error *err, dr_status status, const char *code,
		  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dr_vfail(err, status, code, fmt, ap);
	va_end(ap);
	return status;
}

void dr_error_clear(dr_error *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}

_Noreturn void dr_die(const char *fmt, ...)
{
	va_list ap;

	fputs("darkroom: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

void *dr_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		dr_die("out of memory allocating %zu bytes", n);
	return p;
}

void *dr_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		dr_die("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *dr_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		dr_die("out of memory allocating %zu bytes", n);
	return q;
}

char *dr_xstrdup(const char *s)
{
	return dr_xstrndup(s, strlen(s));
}

char *dr_xstrndup(const char *s, size_t n)
{
	char *p = dr_xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}
