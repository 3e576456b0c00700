/*
 * test_download.c - the SSRF rules and the transfer behaviour of
 * core/download.c.
 *
 * The file includes download.c itself, to reach its statics: the HTTP
 * status and curl error mapping, and `address_check`, which two tests
 * point at a wrapper that treats one loopback port as public. That is the
 * only way to show, without root or a public server, that a redirect from
 * an allowed server to loopback is refused when allow_private is off.
 *
 * Network tests talk to a small HTTP/1.1 server that the group setup forks
 * (test_server below): two listening sockets on 127.0.0.1 (A serves, B is
 * the target of redirects that must never be followed), a process per
 * connection, "Connection: close" on every answer, and counters in shared
 * memory so a test can tell whether a connection was made at all.
 */
/* cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "download.c"
#include "loopback.h"

#define OK_SIZE	      100000 /* body of /ok */
#define CHUNKED_SIZE  5000   /* body of /ok-chunked */
#define BIG_CHUNKED   200000 /* body of /big-chunked */
#define REDIRECT_BODY 200000 /* body of /redir-bigbody, > DISCARD_MAX */

/* ------------------------------------------------------------------
 * The test server
 */

struct server_stats {
	int conns[2]; /* connections accepted on A and B */
	int requests; /* requests read, both ports */
	char last_request[4096];
};

static struct server_stats *stats;
static pid_t server_pid = -1;
static int port_a, port_b;

static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 7 + 3);
}

static int send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int send_str(int fd, const char *s)
{
	return send_all(fd, s, strlen(s));
}

static void send_pattern(int fd, size_t from, size_t n)
{
	unsigned char buf[8192];

	while (n > 0) {
		size_t k = n < sizeof(buf) ? n : sizeof(buf), i;

		for (i = 0; i < k; i++)
			buf[i] = pattern(from + i);
		if (send_all(fd, buf, k) != 0)
			return;
		from += k;
		n -= k;
	}
}

static void send_chunked(int fd, size_t total, size_t chunk)
{
	char line[32];
	size_t done = 0;

	while (done < total) {
		size_t k = total - done < chunk ? total - done : chunk;

		snprintf(line, sizeof(line), "%zx\r\n", k);
		if (send_str(fd, line) != 0)
			return;
		send_pattern(fd, done, k);
		if (send_str(fd, "\r\n") != 0)
			return;
		done += k;
	}
	send_str(fd, "0\r\n\r\n");
}

static void redirect(int fd, int code, const char *location)
{
	char head[512];

	snprintf(head, sizeof(head),
		 "HTTP/1.1 %d Redirect\r\nLocation: %s\r\n"
		 "Content-Length: 0\r\nConnection: close\r\n\r\n",
		 code, location);
	send_str(fd, head);
}

static void status_only(int fd, int code, const char *extra)
{
	char head[512];

	snprintf(head, sizeof(head),
		 "HTTP/1.1 %d Status\r\n%sContent-Type: text/plain\r\n"
		 "Content-Length: 5\r\nConnection: close\r\n\r\nnope\n",
		 code, extra);
	send_str(fd, head);
}

/* Answer one request on `fd` (a process of its own). */
static void serve(int fd)
{
	char req[4096], path[256], loc[256];
	size_t n = 0;
	struct timeval tv = { 3, 0 };
	char *q;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (n < sizeof(req) - 1) {
		ssize_t r = recv(fd, req + n, sizeof(req) - 1 - n, 0);

		if (r <= 0)
			return;
		n += (size_t)r;
		req[n] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	req[n] = '\0';
	__atomic_add_fetch(&stats->requests, 1, __ATOMIC_SEQ_CST);
	memcpy(stats->last_request, req, n + 1);
	if (sscanf(req, "GET %255s", path) != 1)
		return;
	q = strchr(path, '?');
	if (q)
		*q = '\0';

	if (strcmp(path, "/ok") == 0) {
		char head[256];

		snprintf(head, sizeof(head),
			 "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
			 "Content-Length: %d\r\nConnection: close\r\n\r\n",
			 OK_SIZE);
		send_str(fd, head);
		send_pattern(fd, 0, OK_SIZE);
	} else if (strcmp(path, "/ok-chunked") == 0) {
		send_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			     "Transfer-Encoding: chunked\r\n"
			     "Connection: close\r\n\r\n");
		send_chunked(fd, CHUNKED_SIZE, 700);
	} else if (strcmp(path, "/big") == 0) {
		send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n"
			     "Connection: close\r\n\r\n");
		send_pattern(fd, 0, 10000000);
	} else if (strcmp(path, "/big-chunked") == 0) {
		send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			     "Connection: close\r\n\r\n");
		send_chunked(fd, BIG_CHUNKED, 1000);
	} else if (strcmp(path, "/silent") == 0) {
		/* Takes the request and never answers. */
		sleep(30);
	} else if (strcmp(path, "/drip") == 0) {
		int i;

		send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
			     "Connection: close\r\n\r\n");
		for (i = 0; i < 100; i++) {
			if (send_str(fd, "x") != 0)
				return;
			sleep(1);
		}
	} else if (strcmp(path, "/missing") == 0) {
		status_only(fd, 404, "");
	} else if (strcmp(path, "/gone") == 0) {
		status_only(fd, 410, "");
	} else if (strcmp(path, "/error") == 0) {
		status_only(fd, 500, "Retry-After: 7\r\n");
	} else if (strcmp(path, "/busy") == 0) {
		status_only(fd, 429, "Retry-After: 30\r\n");
	} else if (strcmp(path, "/forbidden") == 0) {
		status_only(fd, 403, "");
	} else if (strcmp(path, "/no-content") == 0) {
		send_str(fd, "HTTP/1.1 204 No Content\r\n"
			     "Connection: close\r\n\r\n");
	} else if (strcmp(path, "/redir-rel") == 0) {
		redirect(fd, 302, "/ok");
	} else if (strcmp(path, "/redir-chain") == 0) {
		redirect(fd, 307, "redir-rel?x=1");
	} else if (strcmp(path, "/redir-abs") == 0) {
		snprintf(loc, sizeof(loc), "http://127.0.0.1:%d/ok", port_a);
		redirect(fd, 301, loc);
	} else if (strcmp(path, "/redir-bigbody") == 0) {
		send_str(fd, "HTTP/1.1 302 Found\r\nLocation: /ok\r\n"
			     "Content-Length: 200000\r\n"
			     "Connection: close\r\n\r\n");
		send_pattern(fd, 0, REDIRECT_BODY);
	} else if (strcmp(path, "/redir-evil") == 0) {
		snprintf(loc, sizeof(loc), "http://evil.example.com:%d/ok",
			 port_a);
		redirect(fd, 302, loc);
	} else if (strcmp(path, "/redir-zero") == 0) {
		snprintf(loc, sizeof(loc), "http://0.0.0.0:%d/ok", port_b);
		redirect(fd, 302, loc);
	} else if (strcmp(path, "/redir-b-literal") == 0) {
		snprintf(loc, sizeof(loc), "http://127.0.0.1:%d/ok", port_b);
		redirect(fd, 302, loc);
	} else if (strcmp(path, "/redir-b-name") == 0) {
		snprintf(loc, sizeof(loc), "http://localhost:%d/ok", port_b);
		redirect(fd, 302, loc);
	} else if (strcmp(path, "/redir-loop") == 0) {
		redirect(fd, 302, "/redir-loop");
	} else if (strcmp(path, "/redir-file") == 0) {
		redirect(fd, 302, "file:///etc/passwd");
	} else if (strcmp(path, "/redir-ftp") == 0) {
		snprintf(loc, sizeof(loc), "ftp://127.0.0.1:%d/x", port_b);
		redirect(fd, 302, loc);
	} else if (strcmp(path, "/redir-404") == 0) {
		redirect(fd, 303, "/missing");
	} else if (strcmp(path, "/redir-nolocation") == 0) {
		send_str(fd, "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n"
			     "Connection: close\r\n\r\n");
	} else if (strcmp(path, "/redir-badlocation") == 0) {
		redirect(fd, 302, "http://[::1/x");
	} else {
		status_only(fd, 404, "");
	}
}

static _Noreturn void server_loop(int fa, int fb)
{
	struct pollfd p[2] = { { fa, POLLIN, 0 }, { fb, POLLIN, 0 } };

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_IGN); /* no zombies */
	for (;;) {
		int i;

		if (poll(p, 2, -1) < 0)
			continue;
		for (i = 0; i < 2; i++) {
			int c;

			if (!(p[i].revents & POLLIN))
				continue;
			c = accept(p[i].fd, NULL, NULL);
			if (c < 0)
				continue;
			__atomic_add_fetch(&stats->conns[i], 1,
					   __ATOMIC_SEQ_CST);
			if (fork() == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				close(fa);
				close(fb);
				serve(c);
				shutdown(c, SHUT_WR);
				close(c);
				_exit(0);
			}
			close(c);
		}
	}
}

static int server_start(void **state)
{
	int fa, fb;

	(void)state;
	stats = mmap(NULL, sizeof(*stats), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (stats == MAP_FAILED)
		return -1;
	memset(stats, 0, sizeof(*stats));
	fa = loopback_listen(64, &port_a);
	fb = loopback_listen(64, &port_b);
	if (fa < 0 || fb < 0)
		return -1;
	fflush(NULL);
	server_pid = fork();
	if (server_pid < 0)
		return -1;
	if (server_pid == 0) {
		setpgid(0, 0);
		server_loop(fa, fb);
	}
	setpgid(server_pid, server_pid);
	close(fa);
	close(fb);
	return 0;
}

static int server_stop(void **state)
{
	(void)state;
	if (server_pid > 0) {
		kill(-server_pid, SIGKILL);
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = -1;
	}
	if (stats && stats != MAP_FAILED)
		munmap(stats, sizeof(*stats));
	stats = NULL;
	return 0;
}

static int conns(int i)
{
	usleep(50000); /* let the acceptor count a connection in flight */
	return __atomic_load_n(&stats->conns[i], __ATOMIC_SEQ_CST);
}

static int requests(void)
{
	return __atomic_load_n(&stats->requests, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------
 * Helpers
 */

static const char *const hosts_local[] = { "127.0.0.1", NULL };
static const char *const hosts_any[] = { "*", NULL };

/* The policy of the network tests: the server is on loopback over http. */
static dr_download_policy local_policy(void)
{
	dr_download_policy p;

	memset(&p, 0, sizeof(p));
	p.allow_http = 1;
	p.allow_private = 1;
	p.hosts = hosts_local;
	p.max_bytes = 1u << 20;
	p.connect_timeout = 2;
	p.total_timeout = 10;
	p.low_speed_limit = 10;
	p.low_speed_time = 2;
	p.max_redirects = 3;
	return p;
}

/* An empty, already unlinked temporary file. */
static int temp_fd(void)
{
	char name[] = "/tmp/darkroom-test-download.XXXXXX";
	int fd = mkstemp(name);

	assert_true(fd >= 0);
	unlink(name);
	return fd;
}

static off_t fd_size(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return st.st_size;
}

/* The whole file, malloc'd; *n its size. */
static unsigned char *fd_read(int fd, size_t *n)
{
	off_t sz = fd_size(fd);
	unsigned char *buf = malloc((size_t)sz + 1);

	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)sz, 0), sz);
	*n = (size_t)sz;
	return buf;
}

static char *url_a(const char *path)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "http://127.0.0.1:%d%s", port_a, path);
	return buf;
}

/* Download `url` into a new temp file; returns the status, keeps the fd
 * in *fdp (closed when fdp is NULL). */
static dr_status get(const char *url, const dr_download_policy *pol,
		     uint64_t *size, dr_error *err, int *fdp)
{
	char ct[64];
	int fd = temp_fd();
	dr_status st;

	dr_error_clear(err);
	st = download_url(url, pol, fd, size, ct, sizeof(ct), err);
	if (fdp)
		*fdp = fd;
	else
		close(fd);
	return st;
}

static double elapsed_since(double t0)
{
	return now_seconds() - t0;
}

/* The check the tests swap in: 127.0.0.1 on port A counts as public, so
 * a policy without allow_private can reach the server while every other
 * loopback address and port stays refused. */
static int pretend_a_public(const struct sockaddr *sa, int allow_private)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		if (ntohs(in->sin_port) == port_a &&
		    ntohl(in->sin_addr.s_addr) == INADDR_LOOPBACK)
			return 1;
	}
	return netpolicy_address_allowed(sa, allow_private);
}

static int restore_check(void **state)
{
	(void)state;
	address_check = netpolicy_address_allowed;
	return 0;
}

/* ------------------------------------------------------------------
 * netpolicy_address_allowed
 */

struct addr_case {
	const char *addr;
	int strict;  /* allowed with allow_private = 0 */
	int relaxed; /* allowed with allow_private = 1 */
};

static int check_v4(const char *s, int allow_private)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, s, &sin.sin_addr), 1);
	return netpolicy_address_allowed((struct sockaddr *)&sin, allow_private);
}

static int check_v6(const char *s, int allow_private)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, s, &sin6.sin6_addr), 1);
	return netpolicy_address_allowed((struct sockaddr *)&sin6,
					allow_private);
}

static void run_cases(const struct addr_case *c, size_t n, int v6)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int s = v6 ? check_v6(c[i].addr, 0) : check_v4(c[i].addr, 0);
		int r = v6 ? check_v6(c[i].addr, 1) : check_v4(c[i].addr, 1);

		if (s != c[i].strict || r != c[i].relaxed)
			fail_msg("%s: allowed %d/%d, expected %d/%d", c[i].addr,
				 s, r, c[i].strict, c[i].relaxed);
	}
}

/* First and last address of each range and the neighbours outside it. */
static void test_address_ipv4(void **state)
{
	static const struct addr_case cases[] = {
		{ "0.0.0.0", 0, 0 },	     { "0.255.255.255", 0, 0 },
		{ "1.0.0.0", 1, 1 },	     { "9.255.255.255", 1, 1 },
		{ "10.0.0.0", 0, 1 },	     { "10.255.255.255", 0, 1 },
		{ "11.0.0.0", 1, 1 },	     { "100.63.255.255", 1, 1 },
		{ "100.64.0.0", 0, 1 },	     { "100.127.255.255", 0, 1 },
		{ "100.128.0.0", 1, 1 },     { "126.255.255.255", 1, 1 },
		{ "127.0.0.0", 0, 1 },	     { "127.0.0.1", 0, 1 },
		{ "127.255.255.255", 0, 1 }, { "128.0.0.0", 1, 1 },
		{ "169.253.255.255", 1, 1 }, { "169.254.0.0", 0, 1 },
		{ "169.254.169.254", 0, 1 }, { "169.254.255.255", 0, 1 },
		{ "169.255.0.0", 1, 1 },     { "172.15.255.255", 1, 1 },
		{ "172.16.0.0", 0, 1 },	     { "172.31.255.255", 0, 1 },
		{ "172.32.0.0", 1, 1 },	     { "191.255.255.255", 1, 1 },
		{ "192.0.0.0", 0, 0 },	     { "192.0.0.255", 0, 0 },
		{ "192.0.1.0", 1, 1 },	     { "192.0.1.255", 1, 1 },
		{ "192.0.2.0", 0, 0 },	     { "192.0.2.255", 0, 0 },
		{ "192.0.3.0", 1, 1 },	     { "192.88.98.255", 1, 1 },
		{ "192.88.99.0", 0, 0 },     { "192.88.99.255", 0, 0 },
		{ "192.88.100.0", 1, 1 },    { "192.167.255.255", 1, 1 },
		{ "192.168.0.0", 0, 1 },     { "192.168.255.255", 0, 1 },
		{ "192.169.0.0", 1, 1 },     { "198.17.255.255", 1, 1 },
		{ "198.18.0.0", 0, 0 },	     { "198.19.255.255", 0, 0 },
		{ "198.20.0.0", 1, 1 },	     { "198.51.99.255", 1, 1 },
		{ "198.51.100.0", 0, 0 },    { "198.51.100.255", 0, 0 },
		{ "198.51.101.0", 1, 1 },    { "203.0.112.255", 1, 1 },
		{ "203.0.113.0", 0, 0 },     { "203.0.113.255", 0, 0 },
		{ "203.0.114.0", 1, 1 },     { "223.255.255.255", 1, 1 },
		{ "224.0.0.0", 0, 0 },	     { "239.255.255.255", 0, 0 },
		{ "240.0.0.0", 0, 0 },	     { "255.255.255.254", 0, 0 },
		{ "255.255.255.255", 0, 0 }, { "8.8.8.8", 1, 1 },
		{ "1.1.1.1", 1, 1 },
	};

	(void)state;
	run_cases(cases, sizeof(cases) / sizeof(cases[0]), 0);
}

static void test_address_ipv6(void **state)
{
	static const struct addr_case cases[] = {
		{ "::", 0, 0 },
		{ "::1", 0, 1 },
		{ "::2", 0, 0 }, /* ::/96 -> 0.0.0.2 */
		/* IPv4-mapped: judged as IPv4 */
		{ "::ffff:0:0", 0, 0 },
		{ "::ffff:127.0.0.1", 0, 1 },
		{ "::ffff:7f00:1", 0, 1 },
		{ "::ffff:10.1.2.3", 0, 1 },
		{ "::ffff:169.254.169.254", 0, 1 },
		{ "::ffff:192.0.2.1", 0, 0 },
		{ "::ffff:255.255.255.255", 0, 0 },
		{ "::ffff:8.8.8.8", 1, 1 },
		/* IPv4-compatible (::/96): judged as IPv4 */
		{ "::8.8.8.8", 1, 1 },
		{ "::127.0.0.1", 0, 1 },
		{ "::169.254.169.254", 0, 1 },
		{ "::255.255.255.255", 0, 0 },
		{ "::1:0:0", 1, 1 }, /* outside ::/96 and ::ffff:0:0/96 */
		{ "::fffe:ffff:ffff", 1, 1 },
		{ "::1:ffff:0:0", 1, 1 },
		/* 64:ff9b::/96 and 64:ff9b:1::/48 */
		{ "64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", 1, 1 },
		{ "64:ff9b::", 0, 0 },
		{ "64:ff9b::7f00:1", 0, 0 },
		{ "64:ff9b::ffff:ffff", 0, 0 },
		{ "64:ff9b::1:0:0", 1, 1 },
		{ "64:ff9b:0:ffff:ffff:ffff:ffff:ffff", 1, 1 },
		{ "64:ff9b:1::", 0, 0 },
		{ "64:ff9b:1:ffff:ffff:ffff:ffff:ffff", 0, 0 },
		{ "64:ff9b:2::", 1, 1 },
		/* 100::/64 */
		{ "ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1, 1 },
		{ "100::", 0, 0 },
		{ "100::ffff:ffff:ffff:ffff", 0, 0 },
		{ "100:0:0:1::", 1, 1 },
		/* 2001::/32, 2001:db8::/32, 2002::/16 */
		{ "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1, 1 },
		{ "2001::", 0, 0 },
		{ "2001:0:ffff:ffff:ffff:ffff:ffff:ffff", 0, 0 },
		{ "2001:1::", 1, 1 },
		{ "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", 1, 1 },
		{ "2001:db8::", 0, 0 },
		{ "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 0, 0 },
		{ "2001:db9::", 1, 1 },
		{ "2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1, 1 },
		{ "2002::", 0, 0 },
		{ "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, 0 },
		{ "2003::", 1, 1 },
		/* fc00::/7, fe80::/10, fec0::/10, ff00::/8 */
		{ "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1, 1 },
		{ "fc00::", 0, 1 },
		{ "fd12:3456::1", 0, 1 },
		{ "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, 1 },
		{ "fe00::", 1, 1 },
		{ "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1, 1 },
		{ "fe80::", 0, 1 },
		{ "fe80::1", 0, 1 },
		{ "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, 1 },
		{ "fec0::", 0, 0 },
		{ "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, 0 },
		{ "ff00::", 0, 0 },
		{ "ff02::1", 0, 0 },
		{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, 0 },
		/* public */
		{ "2606:4700:4700::1111", 1, 1 },
		{ "2a00:1450:4001:80b::200e", 1, 1 },
	};

	(void)state;
	run_cases(cases, sizeof(cases) / sizeof(cases[0]), 1);
}

static void test_address_other_families(void **state)
{
	struct sockaddr_un un;
	struct sockaddr sa;

	(void)state;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	assert_int_equal(netpolicy_address_allowed((struct sockaddr *)&un, 0),
			 0);
	assert_int_equal(netpolicy_address_allowed((struct sockaddr *)&un, 1),
			 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNSPEC;
	assert_int_equal(netpolicy_address_allowed(&sa, 1), 0);
	assert_int_equal(netpolicy_address_allowed(NULL, 1), 0);
}

/* ------------------------------------------------------------------
 * netpolicy_host_allowed
 */

static void test_host_allowlist(void **state)
{
	static const char *const list[] = { "replicate.delivery",
					    "*.replicate.delivery",
					    "Example.COM.", "[2001:db8::1]",
					    NULL };
	static const char *const wild[] = { "a.com", "*", NULL };
	static const char *const empty[] = { NULL };
	static const char *const odd[] = { "", "*.", ".", NULL };

	(void)state;
	assert_true(netpolicy_host_allowed("replicate.delivery", list));
	assert_true(netpolicy_host_allowed("REPLICATE.delivery", list));
	assert_true(netpolicy_host_allowed("replicate.delivery.", list));
	assert_true(netpolicy_host_allowed("a.replicate.delivery", list));
	assert_true(netpolicy_host_allowed("a.b.replicate.delivery", list));
	assert_true(netpolicy_host_allowed("pbxt.Replicate.Delivery.", list));
	assert_false(netpolicy_host_allowed("badreplicate.delivery", list));
	assert_false(
		netpolicy_host_allowed("replicate.delivery.evil.com", list));
	assert_false(netpolicy_host_allowed(".replicate.delivery", list));
	assert_false(netpolicy_host_allowed("replicate.deliver", list));
	assert_false(netpolicy_host_allowed("eplicate.delivery", list));
	assert_true(netpolicy_host_allowed("example.com", list));
	assert_true(netpolicy_host_allowed("EXAMPLE.com.", list));
	assert_false(netpolicy_host_allowed("a.example.com", list));
	assert_false(netpolicy_host_allowed("example.co", list));
	assert_true(netpolicy_host_allowed("[2001:db8::1]", list));
	assert_true(netpolicy_host_allowed("2001:db8::1", list));
	assert_false(netpolicy_host_allowed("", list));
	assert_false(netpolicy_host_allowed(".", list));
	assert_false(netpolicy_host_allowed(NULL, list));

	assert_true(netpolicy_host_allowed("anything.at.all", wild));
	assert_true(netpolicy_host_allowed("127.0.0.1", wild));
	assert_false(netpolicy_host_allowed("", wild));

	assert_false(netpolicy_host_allowed("a.com", NULL));
	assert_false(netpolicy_host_allowed("a.com", empty));
	assert_false(netpolicy_host_allowed("a.com", odd));
	assert_false(netpolicy_host_allowed("", odd));
	assert_false(netpolicy_host_allowed(".", odd));
}

/* ------------------------------------------------------------------
 * URL checks that need no server
 */

/* Odd spellings of loopback and link-local as URL hosts, with an
 * allowlist of "*" so the address rules are what stops them. Nothing
 * connects: the server's counters do not move. */
static void test_odd_hosts_refused(void **state)
{
	static const struct {
		const char *fmt;
		const char *code;
	} cases[] = {
		{ "http://2130706433:%d/ok", "address_not_allowed" },
		{ "http://0x7f.1:%d/ok", "address_not_allowed" },
		{ "http://0x7f000001:%d/ok", "address_not_allowed" },
		{ "http://0177.0.0.1:%d/ok", "address_not_allowed" },
		{ "http://127.1:%d/ok", "address_not_allowed" },
		{ "http://127.0.0.1:%d/ok", "address_not_allowed" },
		{ "http://127.0.0.1.:%d/ok", "address_not_allowed" },
		{ "http://127.000.000.001:%d/ok", "address_not_allowed" },
		{ "http://[::ffff:127.0.0.1]:%d/ok", "address_not_allowed" },
		{ "http://[::ffff:7f00:1]:%d/ok", "address_not_allowed" },
		{ "http://[0:0:0:0:0:ffff:127.0.0.1]:%d/ok",
		  "address_not_allowed" },
		{ "http://[::127.0.0.1]:%d/ok", "address_not_allowed" },
		{ "http://[::1]:%d/ok", "address_not_allowed" },
		{ "http://[::]:%d/ok", "address_not_allowed" },
		{ "http://0:%d/ok", "address_not_allowed" },
		{ "http://0.0.0.0:%d/ok", "address_not_allowed" },
		{ "http://169.254.169.254:%d/latest/meta-data/",
		  "address_not_allowed" },
		{ "http://[fe80::1%%25eth0]:%d/ok", "url_not_allowed" },
		{ "http://10.0.0.1:%d/ok", "address_not_allowed" },
		{ "http://224.0.0.1:%d/ok", "address_not_allowed" },
	};
	dr_download_policy pol = local_policy();
	int before_a = conns(0), before_b = conns(1);
	char url[128];
	dr_error err;
	size_t i;

	(void)state;
	pol.hosts = hosts_any;
	pol.allow_private = 0;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(url, sizeof(url), cases[i].fmt, port_a);
		if (get(url, &pol, NULL, &err, NULL) != DR_ERR_INVALID ||
		    strcmp(err.code, cases[i].code) != 0)
			fail_msg("%s: code %s (%s)", url, err.code,
				 err.message);
		assert_false(err.retryable);
	}
	assert_int_equal(conns(0), before_a);
	assert_int_equal(conns(1), before_b);

	/* allow_private lets loopback through, but never 0.0.0.0 (which
	 * reaches the local host on Linux) or ::. */
	pol.allow_private = 1;
	snprintf(url, sizeof(url), "http://0.0.0.0:%d/ok", port_a);
	assert_int_equal(get(url, &pol, NULL, &err, NULL), DR_ERR_INVALID);
	assert_string_equal(err.code, "address_not_allowed");
	assert_non_null(strstr(err.message, "0.0.0.0"));
	snprintf(url, sizeof(url), "http://[::]:%d/ok", port_a);
	assert_int_equal(get(url, &pol, NULL, &err, NULL), DR_ERR_INVALID);
	assert_string_equal(err.code, "address_not_allowed");
	assert_int_equal(conns(0), before_a);
}

static void test_schemes_and_urls(void **state)
{
	dr_download_policy pol = local_policy();
	int before = conns(0);
	char url[128];
	dr_error err;

	(void)state;
	pol.hosts = hosts_any;
	assert_int_equal(get("file:///etc/passwd", &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	assert_non_null(strstr(err.message, "\"file\""));
	snprintf(url, sizeof(url), "ftp://127.0.0.1:%d/x", port_a);
	assert_int_equal(get(url, &pol, NULL, &err, NULL), DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	assert_int_equal(get("gopher://127.0.0.1/x", &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	assert_int_equal(get("dict://127.0.0.1/x", &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");

	/* http only when allowed */
	pol.allow_http = 0;
	assert_int_equal(get(url_a("/ok"), &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	snprintf(url, sizeof(url),
		 "URL rejected: scheme \"http\" is not allowed (allowed: "
		 "https): http://127.0.0.1:%d/ok",
		 port_a);
	assert_string_equal(err.message, url);
	pol.allow_http = 1;

	/* unparsable */
	assert_int_equal(get("http://[::1", &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	assert_int_equal(get("", &pol, NULL, &err, NULL), DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	assert_int_equal(get("not a url", &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");

	/* credentials: refused, and never printed */
	snprintf(url, sizeof(url), "http://user:hunter2@127.0.0.1:%d/ok?t=1",
		 port_a);
	assert_int_equal(get(url, &pol, NULL, &err, NULL), DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	assert_null(strstr(err.message, "hunter2"));
	assert_null(strstr(err.message, "user"));
	assert_null(strstr(err.message, "t=1"));

	/* allowlist */
	{
		static const char *const other[] = { "example.com", NULL };

		pol.hosts = other;
		assert_int_equal(
			get(url_a("/ok?token=s3cret"), &pol, NULL, &err, NULL),
			DR_ERR_INVALID);
		assert_string_equal(err.code, "url_not_allowed");
		snprintf(url, sizeof(url),
			 "URL rejected: host 127.0.0.1 is not on the download "
			 "allowlist: http://127.0.0.1:%d/ok",
			 port_a);
		assert_string_equal(err.message, url);
		pol.hosts = NULL;
		assert_int_equal(get(url_a("/ok"), &pol, NULL, &err, NULL),
				 DR_ERR_INVALID);
		assert_string_equal(err.code, "url_not_allowed");
	}
	assert_int_equal(conns(0), before);
}

/* "localhost" is not an IP literal: only the connect-time check on the
 * resolved addresses (127.0.0.1, ::1) can stop it. */
static void test_dns_rebinding(void **state)
{
	dr_download_policy pol = local_policy();
	int before = conns(0);
	char url[128];
	dr_error err;

	(void)state;
	pol.hosts = hosts_any;
	pol.allow_private = 0;
	snprintf(url, sizeof(url), "http://localhost:%d/ok", port_a);
	assert_int_equal(get(url, &pol, NULL, &err, NULL), DR_ERR_INVALID);
	assert_string_equal(err.code, "address_not_allowed");
	assert_false(err.retryable);
	assert_true(strstr(err.message, "127.0.0.1") ||
		    strstr(err.message, "::1"));
	assert_non_null(strstr(err.message, "localhost"));
	assert_int_equal(conns(0), before);

	/* The same name works when private addresses are allowed. */
	pol.allow_private = 1;
	assert_int_equal(get(url, &pol, NULL, &err, NULL), DR_OK);
	assert_int_equal(conns(0), before + 1);
}

/* ------------------------------------------------------------------
 * Transfers
 */

static void test_ok_body_exact(void **state)
{
	dr_download_policy pol = local_policy();
	char ct[64];
	unsigned char *body;
	uint64_t size = 0;
	dr_error err;
	size_t n, i;
	int fd = temp_fd();

	(void)state;
	dr_error_clear(&err);
	assert_int_equal(download_url(url_a("/ok?sig=abc"), &pol, fd, &size, ct,
				      sizeof(ct), &err),
			 DR_OK);
	assert_int_equal(size, OK_SIZE);
	assert_string_equal(ct, "image/png");
	body = fd_read(fd, &n);
	assert_int_equal(n, OK_SIZE);
	for (i = 0; i < n; i++)
		if (body[i] != pattern(i))
			fail_msg("byte %zu differs", i);
	free(body);
	close(fd);

	/* What was sent: our agent, identity encoding, no credentials. */
	assert_non_null(strstr(stats->last_request, "User-Agent: darkroom/"));
	assert_non_null(
		strstr(stats->last_request, "Accept-Encoding: identity\r\n"));
	assert_non_null(strstr(stats->last_request, "GET /ok?sig=abc "));
	assert_null(strcasestr(stats->last_request, "Referer:"));
	assert_null(strcasestr(stats->last_request, "Cookie:"));
	assert_null(strcasestr(stats->last_request, "Authorization:"));
	assert_null(strcasestr(stats->last_request, "Proxy-"));

	/* A small content-type buffer truncates. */
	fd = temp_fd();
	assert_int_equal(
		download_url(url_a("/ok"), &pol, fd, NULL, ct, 4, &err), DR_OK);
	assert_string_equal(ct, "ima");
	assert_int_equal(fd_size(fd), OK_SIZE);
	close(fd);
}

static void test_ok_chunked(void **state)
{
	dr_download_policy pol = local_policy();
	unsigned char *body;
	uint64_t size = 0;
	dr_error err;
	size_t n, i;
	int fd;

	(void)state;
	assert_int_equal(get(url_a("/ok-chunked"), &pol, &size, &err, &fd),
			 DR_OK);
	assert_int_equal(size, CHUNKED_SIZE);
	body = fd_read(fd, &n);
	assert_int_equal(n, CHUNKED_SIZE);
	for (i = 0; i < n; i++)
		if (body[i] != pattern(i))
			fail_msg("byte %zu differs", i);
	free(body);
	close(fd);
}

static void test_http_statuses(void **state)
{
	dr_download_policy pol = local_policy();
	dr_error err;
	char want[256];
	int fd;

	(void)state;
	assert_int_equal(
		get(url_a("/missing?token=SECRET"), &pol, NULL, &err, &fd),
		DR_ERR_NOT_FOUND);
	assert_string_equal(err.code, "output_expired");
	assert_false(err.retryable);
	snprintf(want, sizeof(want),
		 "the output is gone (HTTP 404): http://127.0.0.1:%d/missing",
		 port_a);
	assert_string_equal(err.message, want);
	assert_int_equal(fd_size(fd), 0); /* error bodies are not kept */
	close(fd);

	assert_int_equal(get(url_a("/gone"), &pol, NULL, &err, NULL),
			 DR_ERR_NOT_FOUND);
	assert_string_equal(err.code, "output_expired");
	assert_false(err.retryable);

	assert_int_equal(get(url_a("/error"), &pol, NULL, &err, NULL),
			 DR_ERR_UNAVAILABLE);
	assert_string_equal(err.code, "download_failed");
	assert_true(err.retryable);
	assert_true(err.retry_after == 7.0);

	assert_int_equal(get(url_a("/busy"), &pol, NULL, &err, NULL),
			 DR_ERR_RATE_LIMITED);
	assert_string_equal(err.code, "download_failed");
	assert_true(err.retryable);
	assert_true(err.retry_after == 30.0);

	assert_int_equal(get(url_a("/forbidden"), &pol, NULL, &err, NULL),
			 DR_ERR_PROVIDER);
	assert_string_equal(err.code, "download_failed");
	assert_false(err.retryable);
	snprintf(want, sizeof(want),
		 "download failed with HTTP 403: http://127.0.0.1:%d/forbidden",
		 port_a);
	assert_string_equal(err.message, want);

	assert_int_equal(get(url_a("/no-content"), &pol, NULL, &err, NULL),
			 DR_ERR_PROVIDER);
	assert_string_equal(err.code, "download_failed");
	assert_false(err.retryable);
}

static void test_too_large(void **state)
{
	dr_download_policy pol = local_policy();
	double t0;
	dr_error err;
	char want[256];
	int fd;

	(void)state;
	/* Declared Content-Length over the cap: refused before the body. */
	pol.max_bytes = 1000;
	t0 = now_seconds();
	assert_int_equal(get(url_a("/big"), &pol, NULL, &err, &fd),
			 DR_ERR_TOO_LARGE);
	assert_true(elapsed_since(t0) < 1.0);
	assert_string_equal(err.code, "output_too_large");
	assert_false(err.retryable);
	snprintf(want, sizeof(want),
		 "output of 10000000 bytes is over the limit of 1000 bytes: "
		 "http://127.0.0.1:%d/big",
		 port_a);
	assert_string_equal(err.message, want);
	assert_int_equal(fd_size(fd), 0);
	close(fd);

	/* Chunked: no length to check, the count stops it. */
	pol.max_bytes = 10000;
	assert_int_equal(get(url_a("/big-chunked"), &pol, NULL, &err, &fd),
			 DR_ERR_TOO_LARGE);
	assert_string_equal(err.code, "output_too_large");
	snprintf(want, sizeof(want),
		 "output is over the limit of 10000 bytes: "
		 "http://127.0.0.1:%d/big-chunked",
		 port_a);
	assert_string_equal(err.message, want);
	assert_true(fd_size(fd) <= 10000);
	close(fd);

	/* Exactly the cap passes, one byte less does not; both ways. */
	pol.max_bytes = OK_SIZE;
	assert_int_equal(get(url_a("/ok"), &pol, NULL, &err, NULL), DR_OK);
	pol.max_bytes = OK_SIZE - 1;
	assert_int_equal(get(url_a("/ok"), &pol, NULL, &err, NULL),
			 DR_ERR_TOO_LARGE);
	pol.max_bytes = CHUNKED_SIZE;
	assert_int_equal(get(url_a("/ok-chunked"), &pol, NULL, &err, NULL),
			 DR_OK);
	pol.max_bytes = CHUNKED_SIZE - 1;
	assert_int_equal(get(url_a("/ok-chunked"), &pol, NULL, &err, NULL),
			 DR_ERR_TOO_LARGE);
	assert_string_equal(err.code, "output_too_large");
}

/* Under low_speed_limit for low_speed_time: abandoned with its own code,
 * so the pipeline can limit how often such a server is tried. */
static void test_slow_drip(void **state)
{
	dr_download_policy pol = local_policy();
	double t0 = now_seconds();
	dr_error err;

	(void)state;
	assert_int_equal(get(url_a("/drip"), &pol, NULL, &err, NULL),
			 DR_ERR_TIMEOUT);
	assert_string_equal(err.code, "download_too_slow");
	assert_true(err.retryable);
	assert_true(elapsed_since(t0) < 6.0);
}

/* A server that takes the request and sends nothing is too slow, too. */
static void test_silent_server(void **state)
{
	dr_download_policy pol = local_policy();
	double t0 = now_seconds();
	dr_error err;

	(void)state;
	assert_int_equal(get(url_a("/silent"), &pol, NULL, &err, NULL),
			 DR_ERR_TIMEOUT);
	assert_string_equal(err.code, "download_too_slow");
	assert_true(elapsed_since(t0) < 6.0);
}

struct marks {
	int calls;
	double elapsed;
};

static void count_mark(void *arg, double elapsed)
{
	struct marks *m = arg;

	m->calls++;
	m->elapsed = elapsed;
}

/* The policy's mark is called once when a download has run mark_after
 * seconds, and never for a quicker one. */
static void test_mark(void **state)
{
	dr_download_policy pol = local_policy();
	struct marks m = { 0, 0 };
	dr_error err;

	(void)state;
	pol.mark = count_mark;
	pol.mark_arg = &m;
	pol.mark_after = 5;
	assert_int_equal(get(url_a("/ok"), &pol, NULL, &err, NULL), DR_OK);
	assert_int_equal(m.calls, 0);

	pol.mark_after = 0.5;
	assert_int_equal(get(url_a("/drip"), &pol, NULL, &err, NULL),
			 DR_ERR_TIMEOUT);
	assert_int_equal(m.calls, 1);
	assert_true(m.elapsed >= 0.5 && m.elapsed < 2.0);
}

/* With sha256_hex, the body's SHA-256 comes back hashed as it arrived:
 * the same as the file's, for a plain and a chunked body; "" after a
 * failure. */
static void test_streamed_sha256(void **state)
{
	static const char *const paths[] = { "/ok", "/ok-chunked" };
	dr_download_policy pol = local_policy();
	char sha[DR_SHA256_HEX_LEN + 1], want[DR_SHA256_HEX_LEN + 1];
	uint64_t size = 0;
	dr_error err;

	(void)state;
	pol.sha256_hex = sha;
	for (size_t k = 0; k < 2; k++) {
		int fd = -1;

		memset(sha, 'x', sizeof(sha));
		assert_int_equal(get(url_a(paths[k]), &pol, &size, &err, &fd),
				 DR_OK);
		assert_int_equal(digest_sha256_fd_hex(fd, size, want, &err),
				 DR_OK);
		close(fd);
		assert_int_equal(strlen(sha), DR_SHA256_HEX_LEN);
		assert_string_equal(sha, want);
	}
	memset(sha, 'x', sizeof(sha));
	assert_int_equal(get(url_a("/missing"), &pol, NULL, &err, NULL),
			 DR_ERR_NOT_FOUND);
	assert_string_equal(sha, "");
}

struct beats {
	int calls;
	int stop_after; /* answer nonzero at this call */
};

static int count_beat(void *arg)
{
	struct beats *b = arg;

	return ++b->calls >= b->stop_after;
}

/* The policy's beat is called every beat_every seconds while bytes
 * arrive, never while the server sends nothing, and a nonzero answer ends
 * the download at once with lease_lost. */
static void test_beat(void **state)
{
	dr_download_policy pol = local_policy();
	struct beats b = { 0, 3 };
	double t0 = now_seconds();
	dr_error err;

	(void)state;
	pol.low_speed_limit = 0;
	pol.beat = count_beat;
	pol.beat_arg = &b;
	pol.beat_every = 0.5;
	assert_int_equal(get(url_a("/drip"), &pol, NULL, &err, NULL),
			 DR_ERR_CONFLICT);
	assert_string_equal(err.code, "lease_lost");
	assert_int_equal(b.calls, 3);
	assert_true(elapsed_since(t0) < 8.0);

	b.calls = 0;
	b.stop_after = 1000;
	pol.total_timeout = 2;
	assert_int_equal(get(url_a("/silent"), &pol, NULL, &err, NULL),
			 DR_ERR_TIMEOUT);
	assert_int_equal(b.calls, 0);

	pol.total_timeout = 10;
	assert_int_equal(get(url_a("/ok"), &pol, NULL, &err, NULL), DR_OK);
	assert_int_equal(b.calls, 0);
}

/* The call's deadline comes before the low-speed check would: that is a
 * timeout, not a slow server. */
static void test_deadline_before_low_speed(void **state)
{
	dr_download_policy pol = local_policy();
	double t0 = now_seconds();
	dr_error err;

	(void)state;
	pol.total_timeout = 1.0;
	pol.low_speed_time = 5;
	assert_int_equal(get(url_a("/drip"), &pol, NULL, &err, NULL),
			 DR_ERR_TIMEOUT);
	assert_string_equal(err.code, "download_timeout");
	assert_true(err.retryable);
	assert_true(elapsed_since(t0) < 3.0);
}

static void test_total_timeout(void **state)
{
	dr_download_policy pol = local_policy();
	double t0 = now_seconds();
	dr_error err;

	(void)state;
	pol.low_speed_limit = 0;
	pol.total_timeout = 1.0;
	assert_int_equal(get(url_a("/drip"), &pol, NULL, &err, NULL),
			 DR_ERR_TIMEOUT);
	assert_string_equal(err.code, "download_timeout");
	assert_true(err.retryable);
	assert_true(elapsed_since(t0) < 3.0);
}

static void test_connect_refused(void **state)
{
	dr_download_policy pol = local_policy();
	char url[128];
	dr_error err;
	int fd, port;

	(void)state;
	fd = loopback_listen(64, &port);
	assert_true(fd >= 0);
	close(fd); /* nothing listens there now */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok?k=v", port);
	assert_int_equal(get(url, &pol, NULL, &err, NULL), DR_ERR_NETWORK);
	assert_string_equal(err.code, "download_network");
	assert_true(err.retryable);
	assert_null(strstr(err.message, "k=v"));
}

static void test_write_failure(void **state)
{
	dr_download_policy pol = local_policy();
	uint64_t size = 1;
	dr_error err;
	int fd = open("/dev/null", O_RDONLY);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(
		download_url(url_a("/ok"), &pol, fd, &size, NULL, 0, &err),
		DR_ERR_IO);
	assert_string_equal(err.code, "write_failed");
	assert_int_equal(size, 0);
	close(fd);
}

/* ------------------------------------------------------------------
 * Redirects
 */

static void test_redirect_followed(void **state)
{
	dr_download_policy pol = local_policy();
	uint64_t size;
	dr_error err;

	(void)state;
	assert_int_equal(get(url_a("/redir-rel"), &pol, &size, &err, NULL),
			 DR_OK);
	assert_int_equal(size, OK_SIZE);
	assert_int_equal(get(url_a("/redir-abs"), &pol, &size, &err, NULL),
			 DR_OK);
	assert_int_equal(size, OK_SIZE);
	assert_int_equal(get(url_a("/redir-chain"), &pol, &size, &err, NULL),
			 DR_OK);
	assert_int_equal(size, OK_SIZE);
	/* A redirect body larger than the discard limit is dropped. */
	assert_int_equal(get(url_a("/redir-bigbody"), &pol, &size, &err, NULL),
			 DR_OK);
	assert_int_equal(size, OK_SIZE);
	/* The final status counts, after the redirect. */
	assert_int_equal(get(url_a("/redir-404"), &pol, NULL, &err, NULL),
			 DR_ERR_NOT_FOUND);
	assert_string_equal(err.code, "output_expired");
	assert_int_equal(
		get(url_a("/redir-nolocation"), &pol, NULL, &err, NULL),
		DR_ERR_PROVIDER);
	assert_string_equal(err.code, "download_failed");
	assert_int_equal(
		get(url_a("/redir-badlocation"), &pol, NULL, &err, NULL),
		DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
}

static void test_redirect_limits(void **state)
{
	dr_download_policy pol = local_policy();
	dr_error err;
	int before = requests();

	(void)state;
	assert_int_equal(get(url_a("/redir-loop"), &pol, NULL, &err, NULL),
			 DR_ERR_PROVIDER);
	assert_string_equal(err.code, "download_failed");
	assert_non_null(strstr(err.message, "too many redirects"));
	assert_false(err.retryable);
	usleep(50000);
	assert_int_equal(requests() - before, pol.max_redirects + 1);

	pol.max_redirects = 0;
	assert_int_equal(get(url_a("/redir-rel"), &pol, NULL, &err, NULL),
			 DR_ERR_PROVIDER);
	assert_string_equal(err.code, "download_failed");
	pol.max_redirects = 1;
	assert_int_equal(get(url_a("/redir-rel"), &pol, NULL, &err, NULL),
			 DR_OK);
	assert_int_equal(get(url_a("/redir-chain"), &pol, NULL, &err, NULL),
			 DR_ERR_PROVIDER);
}

static void test_redirect_refused(void **state)
{
	dr_download_policy pol = local_policy();
	int before_b = conns(1);
	char want[256];
	dr_error err;

	(void)state;
	/* A host off the allowlist. */
	assert_int_equal(get(url_a("/redir-evil"), &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	snprintf(want, sizeof(want),
		 "redirect rejected: host evil.example.com is not on the "
		 "download allowlist: http://evil.example.com:%d/ok",
		 port_a);
	assert_string_equal(err.message, want);

	/* Schemes: file: and ftp: */
	assert_int_equal(get(url_a("/redir-file"), &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	assert_string_equal(
		err.message,
		"redirect rejected: scheme \"file\" is not "
		"allowed (allowed: https, http): file:///etc/passwd");
	assert_int_equal(get(url_a("/redir-ftp"), &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");

	/* 0.0.0.0 reaches the local host on Linux: refused even with
	 * allow_private, before connecting. */
	pol.hosts = hosts_any;
	assert_int_equal(get(url_a("/redir-zero"), &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "address_not_allowed");
	snprintf(want, sizeof(want),
		 "redirect rejected: 0.0.0.0 is an unspecified, multicast, "
		 "broadcast or reserved address: http://0.0.0.0:%d/ok",
		 port_b);
	assert_string_equal(err.message, want);
	assert_int_equal(conns(1), before_b);
}

/* With allow_private off, a public server (port A, made public by the
 * swapped check) redirecting to loopback is refused without a connection
 * to the loopback target (port B), whether the target is a literal or a
 * name. */
static void test_redirect_to_loopback(void **state)
{
	dr_download_policy pol = local_policy();
	int before_a, before_b = conns(1);
	uint64_t size;
	dr_error err;

	(void)state;
	address_check = pretend_a_public;
	pol.allow_private = 0;
	pol.hosts = hosts_any;
	/* The swap works: the origin is reachable. */
	assert_int_equal(get(url_a("/ok"), &pol, &size, &err, NULL), DR_OK);
	assert_int_equal(size, OK_SIZE);

	before_a = conns(0);
	assert_int_equal(get(url_a("/redir-b-literal"), &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "address_not_allowed");
	assert_int_equal(conns(0), before_a + 1);
	assert_int_equal(conns(1), before_b);

	assert_int_equal(get(url_a("/redir-b-name"), &pol, NULL, &err, NULL),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "address_not_allowed");
	assert_non_null(strstr(err.message, "localhost"));
	assert_int_equal(conns(0), before_a + 2);
	assert_int_equal(conns(1), before_b);
}

/* ------------------------------------------------------------------
 * Error mapping without a network
 */

static void test_error_mapping(void **state)
{
	struct transfer t;
	struct hop h;
	dr_error err;

	(void)state;
	memset(&t, 0, sizeof(t));
	memset(&h, 0, sizeof(h));
	snprintf(h.shown, sizeof(h.shown), "https://cdn.example/x");
	snprintf(h.host, sizeof(h.host), "cdn.example");

	/* A bad certificate is not transient; a cut handshake may be. */
	transport_error(CURLE_PEER_FAILED_VERIFICATION, &t, &h, "", &err);
	assert_int_equal(err.status, DR_ERR_NETWORK);
	assert_string_equal(err.code, "download_network");
	assert_false(err.retryable);
	transport_error(CURLE_SSL_CONNECT_ERROR, &t, &h, "", &err);
	assert_true(err.retryable);
	transport_error(CURLE_COULDNT_RESOLVE_HOST, &t, &h,
			"Could not resolve host: cdn.example", &err);
	assert_true(err.retryable);
	assert_string_equal(err.message,
			    "download failed: Could not resolve host: "
			    "cdn.example: https://cdn.example/x");
	transport_error(CURLE_OPERATION_TIMEDOUT, &t, &h, "", &err);
	assert_int_equal(err.status, DR_ERR_TIMEOUT);
	assert_string_equal(err.code, "download_timeout");
	assert_true(err.retryable);
	t.too_slow = 1;
	transport_error(CURLE_OPERATION_TIMEDOUT, &t, &h,
			"Operation too slow. Less than 1024 bytes/sec "
			"transferred the last 2 seconds",
			&err);
	assert_int_equal(err.status, DR_ERR_TIMEOUT);
	assert_string_equal(err.code, "download_too_slow");
	assert_true(err.retryable);
	assert_string_equal(err.message,
			    "download abandoned as too slow: Operation too "
			    "slow. Less than 1024 bytes/sec transferred the "
			    "last 2 seconds: https://cdn.example/x");
	t.too_slow = 0;

	/* All addresses refused at connect time. */
	t.refused = 2;
	snprintf(t.refused_addr, sizeof(t.refused_addr), "10.1.2.3");
	t.refused_why = "a loopback, private or link-local address";
	transport_error(CURLE_COULDNT_CONNECT, &t, &h, "", &err);
	assert_string_equal(err.code, "address_not_allowed");
	assert_string_equal(err.message,
			    "connection refused: host cdn.example resolves "
			    "to 10.1.2.3, a loopback, private or link-local "
			    "address: https://cdn.example/x");
	assert_false(err.retryable);
	/* One refused, another tried and failed: the network's fault. */
	t.opened = 1;
	transport_error(CURLE_COULDNT_CONNECT, &t, &h, "", &err);
	assert_string_equal(err.code, "download_network");
	assert_true(err.retryable);
}

static void test_shown_url(void **state)
{
	CURLU *u = curl_url();
	char shown[SHOWN_URL_MAX + 1];
	char long_url[600];
	int n;

	(void)state;
	assert_int_equal(curl_url_set(u, CURLUPART_URL,
				      "https://u:p@Host.example:8443/a/b?"
				      "token=x#frag",
				      0),
			 CURLUE_OK);
	show_url(u, shown, sizeof(shown));
	assert_string_equal(shown, "https://Host.example:8443/a/b");

	n = snprintf(long_url, sizeof(long_url), "https://h.example/");
	memset(long_url + n, 'p', 400);
	long_url[n + 400] = '\0';
	assert_int_equal(curl_url_set(u, CURLUPART_URL, long_url, 0),
			 CURLUE_OK);
	show_url(u, shown, sizeof(shown));
	assert_int_equal(strlen(shown), SHOWN_URL_MAX);
	assert_memory_equal(shown + SHOWN_URL_MAX - 3, "...", 3);
	curl_url_cleanup(u);
}

/* ------------------------------------------------------------------
 * data: URIs
 */

static dr_status data(const char *uri, uint64_t max, unsigned char **out,
		      size_t *n, char *mt, size_t mtsz, dr_error *err)
{
	uint64_t size = 12345;
	int fd = temp_fd();
	dr_status st;

	dr_error_clear(err);
	st = download_data_uri(uri, max, fd, &size, mt, mtsz, err);
	*out = fd_read(fd, n);
	if (st == DR_OK)
		assert_int_equal(size, *n);
	else
		assert_int_equal(size, 0);
	close(fd);
	return st;
}

static void expect_data(const char *uri, const char *body, size_t len,
			const char *mediatype)
{
	unsigned char *out;
	char mt[64];
	dr_error err;
	size_t n;

	if (data(uri, 1 << 20, &out, &n, mt, sizeof(mt), &err) != DR_OK)
		fail_msg("%s: %s", uri, err.message);
	assert_int_equal(n, len);
	assert_memory_equal(out, body, len);
	assert_string_equal(mt, mediatype);
	free(out);
}

static void expect_data_error(const char *uri, uint64_t max, dr_status status,
			      const char *code)
{
	unsigned char *out;
	dr_error err;
	size_t n;

	if (data(uri, max, &out, &n, NULL, 0, &err) != status)
		fail_msg("%s: %s %s", uri, err.code, err.message);
	assert_string_equal(err.code, code);
	assert_int_equal(n, 0); /* nothing written */
	free(out);
}

static void test_data_uri(void **state)
{
	(void)state;
	expect_data("data:text/plain;base64,SGVsbG8sIFdvcmxkIQ==",
		    "Hello, World!", 13, "text/plain");
	expect_data("data:;base64,SGVsbG8", "Hello", 5,
		    "text/plain;charset=US-ASCII"); /* no padding */
	expect_data("data:;base64,SGVsbG8=", "Hello", 5,
		    "text/plain;charset=US-ASCII");
	expect_data("data:;BASE64,SGVsbA", "Hell", 4,
		    "text/plain;charset=US-ASCII");
	expect_data("DATA:image/png;base64,iVBORw0KGgo=", "\x89PNG\r\n\x1a\n",
		    8, "image/png");
	expect_data("data:text/plain;charset=utf-8;base64,/w==", "\xff", 1,
		    "text/plain;charset=utf-8");
	expect_data("data:,Hello%2C%20World%21", "Hello, World!", 13,
		    "text/plain;charset=US-ASCII");
	expect_data("data:;charset=utf-8,a+b%00c", "a+b\0c", 5,
		    "text/plain;charset=utf-8");
	expect_data("data:application/json,%7B%7d", "{}", 2,
		    "application/json");
	expect_data("data:image/png;base64,", "", 0, "image/png");
	expect_data("data:,", "", 0, "text/plain;charset=US-ASCII");
}

static void test_data_uri_bad(void **state)
{
	(void)state;
	expect_data_error("data:text/plain;base64", 100, DR_ERR_INVALID,
			  "bad_data_uri"); /* no comma */
	expect_data_error("data:text/plain", 100, DR_ERR_INVALID,
			  "bad_data_uri");
	expect_data_error("https://example.com/x.png", 100, DR_ERR_INVALID,
			  "bad_data_uri");
	expect_data_error("dat:,x", 100, DR_ERR_INVALID, "bad_data_uri");
	expect_data_error("data:;base64,SGV sbG8", 100, DR_ERR_INVALID,
			  "bad_data_uri"); /* white space */
	expect_data_error("data:;base64,SGVs\nbG8=", 100, DR_ERR_INVALID,
			  "bad_data_uri");
	expect_data_error("data:;base64,SGVsbG8*", 100, DR_ERR_INVALID,
			  "bad_data_uri");
	expect_data_error("data:;base64,SG-_", 100, DR_ERR_INVALID,
			  "bad_data_uri"); /* URL-safe alphabet */
	expect_data_error("data:;base64,S", 100, DR_ERR_INVALID,
			  "bad_data_uri"); /* 1 char left over */
	expect_data_error("data:;base64,SGVsbA=", 100, DR_ERR_INVALID,
			  "bad_data_uri"); /* wrong padding */
	expect_data_error("data:;base64,SGVsbG8==", 100, DR_ERR_INVALID,
			  "bad_data_uri");
	expect_data_error("data:;base64,SG=Vs", 100, DR_ERR_INVALID,
			  "bad_data_uri"); /* padding inside */
	expect_data_error("data:;base64,SGVs%3D", 100, DR_ERR_INVALID,
			  "bad_data_uri");
	expect_data_error("data:,abc%2", 100, DR_ERR_INVALID, "bad_data_uri");
	expect_data_error("data:,abc%", 100, DR_ERR_INVALID, "bad_data_uri");
	expect_data_error("data:,%zz", 100, DR_ERR_INVALID, "bad_data_uri");
	expect_data_error(NULL, 100, DR_ERR_INVALID, "bad_data_uri");
}

static void test_data_uri_cap(void **state)
{
	unsigned char *out;
	dr_error err;
	size_t n, len;
	char *huge;
	double t0;

	(void)state;
	/* 20 bytes over a cap of 10, both encodings */
	expect_data_error("data:;base64,QUFBQUFBQUFBQUFBQUFBQUFBQUE=", 10,
			  DR_ERR_TOO_LARGE, "output_too_large");
	expect_data_error("data:,aaaaaaaaaaaaaaaaaaaa", 10, DR_ERR_TOO_LARGE,
			  "output_too_large");
	expect_data_error("data:,%41%41%41%41", 3, DR_ERR_TOO_LARGE,
			  "output_too_large");
	expect_data_error("data:,x", 0, DR_ERR_TOO_LARGE, "output_too_large");
	/* exactly the cap */
	assert_int_equal(data("data:,%41%41%41%41", 4, &out, &n, NULL, 0, &err),
			 DR_OK);
	assert_int_equal(n, 4);
	free(out);
	assert_int_equal(
		data("data:;base64,QUFBQQ", 4, &out, &n, NULL, 0, &err), DR_OK);
	free(out);
	assert_int_equal(data("data:,", 0, &out, &n, NULL, 0, &err), DR_OK);
	free(out);

	/* A huge URI (64 MiB of base64, then a bad character) is refused
	 * from its length alone: nothing decoded, nothing written. */
	len = (size_t)64 << 20;
	huge = malloc(len + 32);
	assert_non_null(huge);
	memcpy(huge, "data:;base64,", 13);
	memset(huge + 13, 'A', len);
	huge[13 + len - 1] = '!';
	huge[13 + len] = '\0';
	t0 = now_seconds();
	assert_int_equal(data(huge, 1 << 20, &out, &n, NULL, 0, &err),
			 DR_ERR_TOO_LARGE);
	assert_true(elapsed_since(t0) < 2.0);
	assert_string_equal(err.code, "output_too_large");
	assert_string_equal(err.message,
			    "data: URI holds 50331648 bytes or more, over the "
			    "limit of 1048576 bytes");
	assert_int_equal(n, 0);
	free(out);
	free(huge);
}

/* A larger payload crosses the write buffer several times. */
static void test_data_uri_roundtrip(void **state)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
				       "nopqrstuvwxyz0123456789+/";
	size_t len = 100003, i, n, enc_len = 0;
	unsigned char *raw, *out;
	char *uri;
	dr_error err;

	(void)state;
	raw = malloc(len);
	uri = malloc(32 + len / 3 * 4 + 8);
	assert_non_null(raw);
	assert_non_null(uri);
	for (i = 0; i < len; i++)
		raw[i] = (unsigned char)(i * 131 + (i >> 8));
	enc_len = (size_t)snprintf(uri, 64,
				   "data:application/octet-stream;base64,");
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 |
			     (uint32_t)raw[i + 1] << 8 | raw[i + 2];

		uri[enc_len++] = alphabet[v >> 18 & 63];
		uri[enc_len++] = alphabet[v >> 12 & 63];
		uri[enc_len++] = alphabet[v >> 6 & 63];
		uri[enc_len++] = alphabet[v & 63];
	}
	if (len - i == 1) {
		uri[enc_len++] = alphabet[raw[i] >> 2];
		uri[enc_len++] = alphabet[(raw[i] & 3) << 4];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)raw[i] << 8 | raw[i + 1];

		uri[enc_len++] = alphabet[v >> 10 & 63];
		uri[enc_len++] = alphabet[v >> 4 & 63];
		uri[enc_len++] = alphabet[(v & 15) << 2];
	}
	uri[enc_len] = '\0'; /* unpadded */
	assert_int_equal(data(uri, len, &out, &n, NULL, 0, &err), DR_OK);
	assert_int_equal(n, len);
	assert_memory_equal(out, raw, len);
	free(out);
	free(uri);
	free(raw);
}

static void test_data_uri_write_failure(void **state)
{
	uint64_t size = 1;
	dr_error err;
	int fd = open("/dev/null", O_RDONLY);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(
		download_data_uri("data:,abc", 100, fd, &size, NULL, 0, &err),
		DR_ERR_IO);
	assert_string_equal(err.code, "write_failed");
	assert_int_equal(size, 0);
	close(fd);
}

/* ------------------------------------------------------------------
 * Policy from the environment
 */

static void test_policy_env(void **state)
{
	static const char *const defaults[] = { "replicate.delivery", NULL };
	dr_download_policy pol;
	char **buf = (char **)1;

	(void)state;
	memset(&pol, 0, sizeof(pol));
	pol.hosts = defaults;
	unsetenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE");
	unsetenv("DARKROOM_DOWNLOAD_ALLOW_HTTP");
	unsetenv("DARKROOM_DOWNLOAD_HOSTS");
	netpolicy_env(&pol, &buf);
	assert_null(buf);
	assert_ptr_equal(pol.hosts, defaults);
	assert_int_equal(pol.allow_private, 0);
	assert_int_equal(pol.allow_http, 0);

	setenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE", "1", 1);
	setenv("DARKROOM_DOWNLOAD_ALLOW_HTTP", "1", 1);
	setenv("DARKROOM_DOWNLOAD_HOSTS", " a.com, *.b.com ,,\tc.com\t,", 1);
	netpolicy_env(&pol, &buf);
	assert_int_equal(pol.allow_private, 1);
	assert_int_equal(pol.allow_http, 1);
	assert_non_null(buf);
	assert_ptr_equal(pol.hosts, (const char *const *)buf);
	assert_string_equal(pol.hosts[0], "a.com");
	assert_string_equal(pol.hosts[1], "*.b.com");
	assert_string_equal(pol.hosts[2], "c.com");
	assert_null(pol.hosts[3]);
	assert_true(netpolicy_host_allowed("x.b.com", pol.hosts));
	assert_false(netpolicy_host_allowed("b.com", pol.hosts));
	netpolicy_free_hosts(buf);

	/* Anything but "1" turns a flag off; "*" allows any host. */
	setenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE", "yes", 1);
	setenv("DARKROOM_DOWNLOAD_ALLOW_HTTP", "0", 1);
	setenv("DARKROOM_DOWNLOAD_HOSTS", "*", 1);
	pol.hosts = defaults;
	netpolicy_env(&pol, &buf);
	assert_int_equal(pol.allow_private, 0);
	assert_int_equal(pol.allow_http, 0);
	assert_string_equal(pol.hosts[0], "*");
	assert_null(pol.hosts[1]);
	netpolicy_free_hosts(buf);

	/* An empty list keeps the adapter's. */
	setenv("DARKROOM_DOWNLOAD_HOSTS", " , ", 1);
	pol.hosts = defaults;
	netpolicy_env(&pol, &buf);
	assert_null(buf);
	assert_ptr_equal(pol.hosts, defaults);

	unsetenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE");
	unsetenv("DARKROOM_DOWNLOAD_ALLOW_HTTP");
	unsetenv("DARKROOM_DOWNLOAD_HOSTS");
	netpolicy_free_hosts(NULL);
	netpolicy_env(NULL, NULL);
}

/* ------------------------------------------------------------------
 * Local files (download_local)
 */

struct local_tree {
	char dir[256];	/* scratch */
	char root[300]; /* dir/work: the adapter's work folder */
};

static void local_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

/* dir/work/{j_A-1/{ok.png, sub/deep.txt, link -> secret, dirlink ->
 * outside, fifo}, j_A/plain.txt, j_A-2 -> outside, j_B-1/other.png},
 * dir/outside/secret, dir/work2/j_A-1/x. */
static void local_tree_make(struct local_tree *t)
{
	char p[600];

	snprintf(t->dir, sizeof(t->dir), "%s/test_download.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->root, sizeof(t->root), "%s/work", t->dir);
#define MK(fmt) (snprintf(p, sizeof(p), fmt, t->dir), p)
	assert_int_equal(mkdir(MK("%s/work"), 0700), 0);
	assert_int_equal(mkdir(MK("%s/work/j_A-1"), 0700), 0);
	assert_int_equal(mkdir(MK("%s/work/j_A-1/sub"), 0700), 0);
	assert_int_equal(mkdir(MK("%s/work/j_A"), 0700), 0);
	assert_int_equal(mkdir(MK("%s/work/j_B-1"), 0700), 0);
	assert_int_equal(mkdir(MK("%s/outside"), 0700), 0);
	assert_int_equal(mkdir(MK("%s/work2"), 0700), 0);
	assert_int_equal(mkdir(MK("%s/work2/j_A-1"), 0700), 0);
	local_write(MK("%s/work/j_A-1/ok.png"), "hello");
	local_write(MK("%s/work/j_A-1/sub/deep.txt"), "deep");
	local_write(MK("%s/work/j_A/plain.txt"), "plain");
	local_write(MK("%s/work/j_B-1/other.png"), "other job");
	local_write(MK("%s/outside/secret"), "secret");
	local_write(MK("%s/work2/j_A-1/x"), "neighbour");
	assert_int_equal(mkfifo(MK("%s/work/j_A-1/fifo"), 0600), 0);
	{
		char target[600];

		snprintf(target, sizeof(target), "%s/outside/secret", t->dir);
		assert_int_equal(symlink(target, MK("%s/work/j_A-1/link")), 0);
		snprintf(target, sizeof(target), "%s/outside", t->dir);
		assert_int_equal(symlink(target, MK("%s/work/j_A-1/dirlink")),
				 0);
		assert_int_equal(symlink(target, MK("%s/work/j_A-2")), 0);
	}
#undef MK
}

static void local_tree_free(struct local_tree *t)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	assert_int_equal(system(cmd), 0);
}

/* download_local() of root-relative `rel` ("" for the root itself) as job
 * j_A; the file's bytes into `got` on success. */
static dr_status local_open(const struct local_tree *t, const char *root,
			    const char *rel, uint64_t max, char *got,
			    size_t gotsz, dr_error *err)
{
	char path[700];
	uint64_t size = 99;
	int fd = 12345;
	dr_status st;

	snprintf(path, sizeof(path), "%s%s", t->dir, rel);
	dr_error_clear(err);
	st = download_local(path, root, "j_A", max, &fd, &size, err);
	if (st != DR_OK) {
		assert_int_equal(fd, -1);
		assert_int_equal(size, 0);
		return st;
	}
	assert_true(fd >= 0);
	assert_true(size < gotsz);
	assert_int_equal(pread(fd, got, gotsz - 1, 0), (ssize_t)size);
	got[size] = '\0';
	/* Read-only, and blocking again. */
	assert_int_equal(fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK),
			 O_RDONLY);
	close(fd);
	return DR_OK;
}

static void test_local_files(void **state)
{
	static const char *const refused[] = {
		"/work/j_A-1/../../outside/secret", /* .. */
		"/work/../outside/secret",
		"/work/j_A-1/./ok.png",		  /* . */
		"/work/j_A-1/../j_B-1/other.png", /* .. into another job */
		"/work/j_B-1/other.png",	  /* another job's folder */
		"/work/j_AB-1/x",		  /* not "j_A" + '-' */
		"/work/ok.png",			  /* right under the root */
		"/work/j_A-1/link",		  /* a symlink to a file */
		"/work/j_A-1/dirlink/secret",	  /* through a folder link */
		"/work/j_A-2/secret",		  /* the job folder is a link */
		"/work/j_A-1/fifo",		  /* not a regular file */
		"/work/j_A-1/sub",		  /* a folder */
		"/work/j_A-1",			  /* the job folder itself */
		"/work/j_A-1/",
		"/work/j_A-1/ok.png/",
		"/work2/j_A-1/x", /* a folder whose name starts like the root */
		"/outside/secret",
	};
	struct local_tree t;
	char root[400], got[64];
	dr_error err;

	(void)state;
	local_tree_make(&t);
	snprintf(root, sizeof(root), "%s", t.root);

	assert_int_equal(local_open(&t, root, "/work/j_A-1/ok.png", 1000, got,
				    sizeof(got), &err),
			 DR_OK);
	assert_string_equal(got, "hello");
	assert_int_equal(local_open(&t, root, "/work/j_A-1/sub/deep.txt", 1000,
				    got, sizeof(got), &err),
			 DR_OK);
	assert_string_equal(got, "deep");
	assert_int_equal(local_open(&t, root, "/work/j_A/plain.txt", 1000, got,
				    sizeof(got), &err),
			 DR_OK);
	assert_string_equal(got, "plain");
	assert_int_equal(local_open(&t, root, "/work//j_A-1//ok.png", 1000, got,
				    sizeof(got), &err),
			 DR_OK);

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		dr_status st = local_open(&t, root, refused[i], 1000, got,
					  sizeof(got), &err);

		if (st != DR_ERR_INVALID ||
		    strcmp(err.code, "local_file_not_allowed") != 0)
			fail_msg("%s: status %d code %s (%s)", refused[i],
				 (int)st, err.code, err.message);
		assert_false(err.retryable);
		assert_non_null(strstr(err.message, refused[i]));
	}

	/* An adapter that declared no work folder hands over no file,
	 * wherever it is. */
	assert_int_equal(local_open(&t, NULL, "/work/j_A-1/ok.png", 1000, got,
				    sizeof(got), &err),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "local_file_not_allowed");
	dr_error_clear(&err);
	{
		uint64_t size;
		int fd;

		assert_int_equal(download_local("/etc/passwd", NULL, "j_A",
						1000, &fd, &size, &err),
				 DR_ERR_INVALID);
		assert_string_equal(err.code, "local_file_not_allowed");
		assert_int_equal(download_local("/etc/passwd", root, "j_A",
						1000, &fd, &size, &err),
				 DR_ERR_INVALID);
		assert_string_equal(err.code, "local_file_not_allowed");
	}

	/* Gone, or over the size cap. */
	assert_int_equal(local_open(&t, root, "/work/j_A-1/missing", 1000, got,
				    sizeof(got), &err),
			 DR_ERR_NOT_FOUND);
	assert_string_equal(err.code, "output_missing");
	assert_int_equal(local_open(&t, root, "/work/j_A-1/ok.png", 4, got,
				    sizeof(got), &err),
			 DR_ERR_TOO_LARGE);
	assert_string_equal(err.code, "output_too_large");
	local_tree_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_ipv4),
		cmocka_unit_test(test_address_ipv6),
		cmocka_unit_test(test_address_other_families),
		cmocka_unit_test(test_host_allowlist),
		cmocka_unit_test(test_shown_url),
		cmocka_unit_test(test_error_mapping),
		cmocka_unit_test(test_data_uri),
		cmocka_unit_test(test_data_uri_bad),
		cmocka_unit_test(test_data_uri_cap),
		cmocka_unit_test(test_data_uri_roundtrip),
		cmocka_unit_test(test_data_uri_write_failure),
		cmocka_unit_test(test_policy_env),
		cmocka_unit_test(test_local_files),
		cmocka_unit_test(test_odd_hosts_refused),
		cmocka_unit_test(test_schemes_and_urls),
		cmocka_unit_test(test_dns_rebinding),
		cmocka_unit_test(test_ok_body_exact),
		cmocka_unit_test(test_ok_chunked),
		cmocka_unit_test(test_http_statuses),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_slow_drip),
		cmocka_unit_test(test_silent_server),
		cmocka_unit_test(test_deadline_before_low_speed),
		cmocka_unit_test(test_mark),
		cmocka_unit_test(test_beat),
		cmocka_unit_test(test_streamed_sha256),
		cmocka_unit_test(test_total_timeout),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_write_failure),
		cmocka_unit_test(test_redirect_followed),
		cmocka_unit_test(test_redirect_limits),
		cmocka_unit_test(test_redirect_refused),
		cmocka_unit_test_teardown(test_redirect_to_loopback,
					  restore_check),
	};

	return cmocka_run_group_tests(tests, server_start, server_stop);
}
