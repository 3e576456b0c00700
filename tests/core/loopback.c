/*
 * loopback.c - the unit tests' loopback HTTP server (see loopback.h).
 */
#include "loopback.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int loopback_listen(int backlog, int *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    listen(fd, backlog) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

static void *loop(void *arg)
{
	loopback_server *s = arg;
	struct pollfd p[2] = { { s->fd, POLLIN, 0 }, { s->wake[0], POLLIN, 0 } };

	for (;;) {
		int c;

		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		s->serve(c, s->arg);
		shutdown(c, SHUT_WR);
		close(c);
	}
}

int loopback_start(loopback_server *s, int backlog)
{
	s->wake[0] = s->wake[1] = -1;
	s->fd = loopback_listen(backlog, &s->port);
	if (s->fd < 0)
		return -1;
	if (pipe(s->wake) != 0) {
		s->wake[0] = s->wake[1] = -1;
		return -1;
	}
	errno = pthread_create(&s->thread, NULL, loop, s);
	if (errno != 0) {
		close(s->wake[0]);
		close(s->wake[1]);
		s->wake[0] = s->wake[1] = -1;
		return -1;
	}
	return 0;
}

void loopback_stop(loopback_server *s)
{
	if (s->wake[1] > 0) {
		if (write(s->wake[1], "x", 1) == 1)
			pthread_join(s->thread, NULL);
		close(s->wake[0]);
		close(s->wake[1]);
		s->wake[0] = s->wake[1] = -1;
	}
	if (s->fd > 0)
		close(s->fd);
	s->fd = -1;
}
