/*
 * log.h - the one logger: one line per event, key=value, to stderr.
 *
 * stderr is what journald, lighttpd's error log and a terminal all take.
 * Lines look like
 *   ts=2026-11-23T10:00:00.123Z level=info prog=worker event=job.claimed job=j_...
 * Callers pass the key=value tail; values with spaces are quoted by the
 * caller with dr_log_quote(). Secrets are never passed to the logger.
 */
#ifndef DR_LOG_H
#define DR_LOG_H

#include <stddef.h>

#include "darkroom-plugin.h"

/* Name the program in every line ("fcgi", "worker", "cli"), set the
 * minimum level (DR_LOG_*), and choose whether to print timestamps. */
void dr_log_init(const char *prog, int min_level, int timestamps);

/* Log one line at `level`; `fmt` yields the key=value tail. */
void dr_log(int level, const char *fmt, ...) DR_PRINTF(2, 3);

/* Write `s` into buf as a log value: bare if it has no space, quote,
 * backslash, '=' or control byte, else double-quoted with escapes.
 * Truncated to fit; returns buf. */
const char *dr_log_quote(const char *s, char *buf, size_t bufsz);

/* Parse "err", "warning", "notice", "info", "debug"; -1 if unknown. */
int dr_log_level_parse(const char *name);

#endif
