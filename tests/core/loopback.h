/*
 * loopback.h - a one-connection-at-a-time HTTP test server on 127.0.0.1,
 * for the unit tests that make darkroom talk to a peer (test_callback's
 * client, test_pipeline's file host) without a web server.
 *
 * The server runs in a thread: it accepts a connection, hands it to the
 * test's `serve` function, then shuts down and closes it. The test owns
 * what serve() records and the locking of it.
 */
#ifndef DR_TEST_LOOPBACK_H
#define DR_TEST_LOOPBACK_H

#include <pthread.h>

/* A socket listening on 127.0.0.1 at a free port (written to *port) with
 * `backlog`, or -1 with errno set. */
int loopback_listen(int backlog, int *port);

typedef struct loopback_server {
	pthread_t thread;
	int fd;	     /* listening */
	int wake[2]; /* a byte on wake[1] stops the thread */
	int port;
	void (*serve)(int c, void *arg); /* one connection (then closed) */
	void *arg;
} loopback_server;

/* Listen and start the thread that calls s->serve (set by the caller,
 * with s->arg) for each connection. 0, or -1 with errno set (then
 * loopback_stop() is still safe). */
int loopback_start(loopback_server *s, int backlog);

/* Stop the thread and close the sockets; safe on a server that never
 * started (zeroed, or after a failed loopback_start). */
void loopback_stop(loopback_server *s);

#endif
