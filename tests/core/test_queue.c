/*
 * test_queue.c - retry delays, the clamp on delays plugins ask for, and
 * the wakeup socket. Claims, leases and
 * fencing run against a real MariaDB in tests/integration/test_engine.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <math.h>

#include "queue.h"

static void test_backoff(void **state)
{
	dr_config cfg;
	double lo = 1e9, hi = 0;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.worker.retry_base = 2;
	cfg.worker.retry_max = 600;
	/* Equal jitter: between half and all of base * 2^(attempt-1). */
	for (int attempt = 1; attempt <= 12; attempt++) {
		double full = 2;

		for (int i = 1; i < attempt; i++)
			full *= 2;
		if (full > 600)
			full = 600;
		for (int k = 0; k < 200; k++) {
			double d = queue_backoff(&cfg, attempt);

			assert_true(d >= full / 2 && d <= full);
			if (attempt == 1) {
				lo = d < lo ? d : lo;
				hi = d > hi ? d : hi;
			}
		}
	}
	/* The jitter spreads retries out. */
	assert_true(hi - lo > 0.5);
	/* Huge attempt numbers stay capped (no overflow to inf). */
	assert_true(queue_backoff(&cfg, 100000) <= 600);
}

/* Whatever double reaches the queue becomes 0 .. one day of
 * microseconds; a plugin's retry_after that says nothing usable takes the
 * caller's fallback, and a huge one is cut to a day. */
static void test_delay_clamp(void **state)
{
	(void)state;
	assert_int_equal(queue_delay_us(1.5), 1500000);
	assert_int_equal(queue_delay_us(0), 0);
	assert_int_equal(queue_delay_us(-3), 0);
	assert_int_equal(queue_delay_us(-INFINITY), 0);
	assert_int_equal(queue_delay_us(NAN), 0);
	assert_int_equal(queue_delay_us(86400), 86400000000LL);
	assert_int_equal(queue_delay_us(86401), 86400000000LL);
	assert_int_equal(queue_delay_us(1e300), 86400000000LL);
	assert_int_equal(queue_delay_us(INFINITY), 86400000000LL);

	assert_true(queue_asked_delay(30, 5) == 30);
	assert_true(queue_asked_delay(0.25, 5) == 0.25);
	assert_true(queue_asked_delay(0, 5) == 5);
	assert_true(queue_asked_delay(-1, 5) == 5);
	assert_true(queue_asked_delay(NAN, 5) == 5);
	assert_true(queue_asked_delay(INFINITY, 5) == 5);
	assert_true(queue_asked_delay(-INFINITY, 5) == 5);
	assert_true(queue_asked_delay(1e9, 5) == QUEUE_MAX_DELAY);
	assert_true(queue_asked_delay(1e300, 5) == QUEUE_MAX_DELAY);
}

static void test_wakeup(void **state)
{
	char path[] = "/tmp/dr-wake-XXXXXX";
	char sock[64];
	struct pollfd pfd;
	char buf[8];
	int fd;

	(void)state;
	assert_non_null(mkdtemp(path));
	snprintf(sock, sizeof(sock), "%s/w.sock", path);
	/* Sending with nobody listening is silently fine. */
	queue_wakeup_send(sock);
	fd = queue_wakeup_listen(sock);
	assert_true(fd >= 0);
	queue_wakeup_send(sock);
	pfd.fd = fd;
	pfd.events = POLLIN;
	assert_int_equal(poll(&pfd, 1, 1000), 1);
	assert_int_equal(recv(fd, buf, sizeof(buf), 0), 1);
	/* A stale socket file is replaced. */
	close(fd);
	fd = queue_wakeup_listen(sock);
	assert_true(fd >= 0);
	close(fd);
	unlink(sock);
	rmdir(path);
	/* Paths too long for sun_path are refused, not truncated. */
	memset(path, 'a', sizeof(path) - 1);
	{
		char longp[200];

		memset(longp, 'a', sizeof(longp) - 1);
		longp[0] = '/';
		longp[sizeof(longp) - 1] = '\0';
		assert_int_equal(queue_wakeup_listen(longp), -1);
		queue_wakeup_send(longp);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_delay_clamp),
		cmocka_unit_test(test_wakeup),
	};
	return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
