/*
 * ids.c - sortable, unguessable job ids (see ids.h).
 */
#include "ids.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* getrandom() may return fewer bytes than asked (over 256 bytes, or on a
 * signal): loop until the buffer is full. */
dr_status ids_random(void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return DR_ERR_IO;
		}
		p += n;
		len -= (size_t)n;
	}
	return DR_OK;
}

void ids_format_job_id(char buf[DR_JOB_ID_LEN + 1], uint64_t ms,
		       const unsigned char random[10])
{
	unsigned char bin[16];
	int bit = 0; /* 128 bits in 26 chars: 2 leading zero bits */

	for (int i = 0; i < 6; i++)
		bin[i] = (unsigned char)(ms >> (40 - 8 * i));
	memcpy(bin + 6, random, 10);
	buf[0] = 'j';
	buf[1] = '_';
	/* Emit 130 bits (2 leading zero bits + 128) five at a time. */
	for (int c = 0; c < 26; c++) {
		unsigned v = 0;

		for (int k = 0; k < 5; k++, bit++) {
			int b = bit - 2;
			unsigned one = 0;

			if (b >= 0)
				one = (bin[b / 8] >> (7 - b % 8)) & 1u;
			v = (v << 1) | one;
		}
		buf[2 + c] = crockford[v];
	}
	buf[DR_JOB_ID_LEN] = '\0';
}

dr_status ids_new_job_id(char buf[DR_JOB_ID_LEN + 1])
{
	static uint64_t last_ms;
	static unsigned char last_rand[10];
	static pid_t last_pid;
	struct timespec ts;
	uint64_t ms;
	unsigned char rnd[10];

	if (last_pid != getpid()) {
		/* A forked child must not continue its parent's sequence. */
		last_pid = getpid();
		last_ms = 0;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	if (ms <= last_ms) {
		/* Same (or earlier) millisecond: keep the order by counting
		 * up from the last id's random part. */
		ms = last_ms;
		memcpy(rnd, last_rand, sizeof(rnd));
		for (int i = 9; i >= 0; i--)
			if (++rnd[i] != 0)
				break;
	} else if (ids_random(rnd, sizeof(rnd)) != DR_OK) {
		return DR_ERR_INTERNAL;
	}
	last_ms = ms;
	memcpy(last_rand, rnd, sizeof(rnd));
	ids_format_job_id(buf, ms, rnd);
	return DR_OK;
}

/* The shape of an id of `prefix` ("j_", "b_"). */
static int is_id(const char *s, const char *prefix)
{
	if (strncmp(s, prefix, 2) != 0 || strlen(s) != DR_JOB_ID_LEN)
		return 0;
	if (s[2] > '7') /* the first char carries only 3 bits */
		return 0;
	for (int i = 2; i < DR_JOB_ID_LEN; i++)
		if (!strchr(crockford, s[i]) || s[i] == '\0')
			return 0;
	return 1;
}

int ids_is_job_id(const char *s)
{
	return is_id(s, "j_");
}

int ids_is_batch_id(const char *s)
{
	return is_id(s, "b_");
}

dr_status ids_new_batch_id(char buf[DR_JOB_ID_LEN + 1])
{
	dr_status st = ids_new_job_id(buf);

	buf[0] = 'b';
	return st;
}

int ids_is_file_id(const char *s)
{
	return is_id(s, "f_");
}

dr_status ids_new_file_id(char buf[DR_JOB_ID_LEN + 1])
{
	dr_status st = ids_new_job_id(buf);

	buf[0] = 'f';
	return st;
}
