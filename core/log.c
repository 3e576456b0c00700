/*
 * log.c - one line per event, key=value, to stderr (see log.h).
 *
 * Each line is formatted into a stack buffer and written with one write(2)
 * so lines from several processes sharing stderr do not interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "darkroom";
static int log_min = DR_LOG_INFO;
static int log_ts = 1;

static const char *const level_names[8] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

void dr_log_init(const char *prog, int min_level, int timestamps)
{
	log_prog = prog;
	log_min = min_level;
	log_ts = timestamps;
}

int dr_log_level_parse(const char *name)
{
	for (int i = 0; i < 8; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	if (strcmp(name, "error") == 0)
		return DR_LOG_ERR;
	if (strcmp(name, "warn") == 0)
		return DR_LOG_WARNING;
	return -1;
}

void dr_log(int level, const char *fmt, ...)
{
	char line[2048];
	size_t n = 0;
	int r;
	va_list ap;

	if (level > log_min)
		return;
	if (level < 0 || level > 7)
		level = DR_LOG_ERR;
	if (log_ts) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
		r = snprintf(line + n, sizeof(line) - n, ".%03ldZ ",
			     ts.tv_nsec / 1000000);
		n += (size_t)r;
	}
	r = snprintf(line + n, sizeof(line) - n, "level=%s prog=%s pid=%ld ",
		     level_names[level], log_prog, (long)getpid());
	if (r > 0)
		n += (size_t)r;
	va_start(ap, fmt);
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (r > 0)
		n += (size_t)r;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write keeps the line whole; a short write loses the tail. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

const char *dr_log_quote(const char *s, char *buf, size_t bufsz)
{
	size_t n = 0;
	int plain = *s != '\0';

	for (const char *p = s; *p; p++)
		if (*p == ' ' || *p == '"' || *p == '\\' || *p == '=' ||
		    (unsigned char)*p < 0x20)
			plain = 0;
	if (plain) {
		snprintf(buf, bufsz, "%s", s);
		return buf;
	}
	if (bufsz < 3) {
		if (bufsz)
			buf[0] = '\0';
		return buf;
	}
	buf[n++] = '"';
	for (const char *p = s; *p && n + 3 < bufsz; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else if (c < 0x20) {
			buf[n++] = '?';
		} else {
			buf[n++] = (char)c;
		}
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}
