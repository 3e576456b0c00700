/*
 * test_plugin.c - the plugin host: loading and checking plugin files,
 * listing a directory, the services table, and instances from a config.
 *
 * The plugins are the fixtures built from the .c files of
 * tests/plugins/fixtures into DR_BUILD_DIR/tests/fixtures: good.so,
 * goodsink.so, oldops.so and oldsink.so (short operations tables, as from
 * an older header of this ABI version) are valid, every other one is
 * wrong in exactly one way.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "plugin.h"
#include "plugin_http.h"

#ifndef DR_BUILD_DIR
#error "DR_BUILD_DIR must name the build folder (the Makefile passes it)"
#endif

#define FIXTURES DR_BUILD_DIR "/tests/fixtures"

/* The fixtures that must be refused, and a piece of each one's message. */
static const struct {
	const char *name;
	dr_status status;
	const char *message;
} bad_fixtures[] = {
	{ "nosym", DR_ERR_PLUGIN,
	  "does not export the symbol dr_plugin_entry" },
	{ "nullentry", DR_ERR_PLUGIN, "dr_plugin_entry() returned NULL" },
	{ "badabi", DR_ERR_PLUGIN,
	  "was built for plugin ABI 999, this darkroom speaks ABI 2" },
	{ "badsize", DR_ERR_PLUGIN, "has a descriptor of" },
	{ "wrongname", DR_ERR_PLUGIN, "calls itself 'other'" },
	{ "badkind", DR_ERR_PLUGIN, "has unknown kind 7" },
	{ "nosubmit", DR_ERR_PLUGIN,
	  "adapter plugin 'nosubmit' lacks the mandatory operation 'submit'" },
	{ "noput", DR_ERR_PLUGIN,
	  "sink plugin 'noput' lacks the mandatory operation 'put'" },
	{ "bigops", DR_ERR_PLUGIN,
	  "adapter plugin 'bigops' has an operations table of" },
	{ "tinyops", DR_ERR_PLUGIN,
	  "adapter plugin 'tinyops' has an operations table of" },
};
#define N_BAD (sizeof(bad_fixtures) / sizeof(bad_fixtures[0]))

/* ------------------------------------------------------------------------
 * Helpers
 */

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* A fresh temporary directory; remove with rm_rf(). */
static void make_tmp(char *buf, size_t n)
{
	snprintf(buf, n, "/tmp/test_plugin.XXXXXX");
	assert_non_null(mkdtemp(buf));
}

static void rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void link_fixture(const char *name, const char *dir, const char *as)
{
	char from[512], to[512];

	snprintf(from, sizeof(from), FIXTURES "/%s.so", name);
	snprintf(to, sizeof(to), "%s/%s", dir, as);
	assert_int_equal(symlink(from, to), 0);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int is_zeroed(const dr_loaded_plugin *p)
{
	return !p->desc && !p->handle && !p->path;
}

/* ------------------------------------------------------------------------
 * plugin_load
 */

static void test_load_good(void **state)
{
	dr_loaded_plugin p;
	dr_error err;

	(void)state;
	assert_int_equal(plugin_load(FIXTURES, "good", &p, &err), DR_OK);
	assert_non_null(p.handle);
	assert_string_equal(p.path, FIXTURES "/good.so");
	assert_string_equal(p.desc->name, "good");
	assert_int_equal(p.desc->kind, DR_PLUGIN_ADAPTER);
	assert_non_null(p.desc->adapter->submit);
	plugin_unload(&p);
	assert_true(is_zeroed(&p));
	plugin_unload(&p); /* a zeroed struct is fine */
	plugin_unload(NULL);
}

/* The same file loaded twice gets two working handles (dlopen counts). */
static void test_load_twice(void **state)
{
	dr_loaded_plugin a, b;
	dr_error err;

	(void)state;
	assert_int_equal(plugin_load(FIXTURES, "goodsink", &a, &err), DR_OK);
	assert_int_equal(plugin_load(FIXTURES, "goodsink", &b, &err), DR_OK);
	/* Each load has its own copy of the descriptor (see plugin.c), of
	 * the one file mapped once. */
	assert_ptr_not_equal(a.desc, b.desc);
	assert_ptr_equal(a.desc->create, b.desc->create);
	assert_ptr_equal(a.desc->sink->put, b.desc->sink->put);
	plugin_unload(&a);
	assert_string_equal(b.desc->name, "goodsink");
	plugin_unload(&b);
}

static void test_load_missing(void **state)
{
	dr_loaded_plugin p;
	dr_error err;

	(void)state;
	memset(&p, 0xff, sizeof(p));
	assert_int_equal(plugin_load(FIXTURES, "absent", &p, &err),
			 DR_ERR_NOT_FOUND);
	assert_string_equal(err.message, "plugin 'absent' not found: " FIXTURES
					 "/absent.so does not exist");
	assert_string_equal(err.code, "plugin_not_found");
	assert_true(is_zeroed(&p));
}

static void test_load_not_elf(void **state)
{
	char dir[64], path[128];
	dr_loaded_plugin p;
	dr_error err;

	(void)state;
	make_tmp(dir, sizeof(dir));
	write_file(dir, "junk.so", "this is not a shared object\n");
	snprintf(path, sizeof(path), "cannot load plugin %s/junk.so: ", dir);
	assert_int_equal(plugin_load(dir, "junk", &p, &err), DR_ERR_PLUGIN);
	assert_string_equal(err.code, "plugin_load_failed");
	/* Our sentence, then dlerror()'s. */
	assert_memory_equal(err.message, path, strlen(path));
	assert_true(strlen(err.message) > strlen(path));
	assert_true(is_zeroed(&p));
	rm_rf(dir);
}

/* Each broken fixture is refused with its own message naming the file. */
static void test_load_bad_fixtures(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_BAD; i++) {
		char path[256];
		dr_loaded_plugin p;
		dr_error err;
		dr_status st;

		snprintf(path, sizeof(path), FIXTURES "/%s.so",
			 bad_fixtures[i].name);
		st = plugin_load(FIXTURES, bad_fixtures[i].name, &p, &err);
		if (st != bad_fixtures[i].status ||
		    !strstr(err.message, bad_fixtures[i].message) ||
		    !strstr(err.message, path))
			fail_msg("%s: status %d, message: %s",
				 bad_fixtures[i].name, (int)st, err.message);
		assert_int_equal(err.status, st);
		assert_true(is_zeroed(&p));
	}
}

static void test_load_abi_message(void **state)
{
	dr_loaded_plugin p;
	dr_error err;

	(void)state;
	assert_int_equal(plugin_load(FIXTURES, "badabi", &p, &err),
			 DR_ERR_PLUGIN);
	assert_string_equal(err.code, "plugin_abi_mismatch");
	assert_string_equal(err.message,
			    "plugin " FIXTURES "/badabi.so was built for "
			    "plugin ABI 999, this darkroom speaks ABI 2; "
			    "rebuild it against this darkroom's "
			    "darkroom-plugin.h");
}

static void test_load_size_message(void **state)
{
	char want[512];
	dr_loaded_plugin p;
	dr_error err;

	(void)state;
	snprintf(want, sizeof(want),
		 "plugin %s/badsize.so has a descriptor of %zu bytes, this "
		 "darkroom expects %zu (same ABI version, different build); "
		 "rebuild it",
		 FIXTURES, sizeof(dr_plugin) + 8, sizeof(dr_plugin));
	assert_int_equal(plugin_load(FIXTURES, "badsize", &p, &err),
			 DR_ERR_PLUGIN);
	assert_string_equal(err.message, want);
}

/* A table smaller than the core's (an older header of this ABI version)
 * loads; the operations beyond its size are NULL even though the plugin's
 * memory there holds functions. */
static void test_load_short_tables(void **state)
{
	dr_loaded_plugin a, s;
	dr_error err;

	(void)state;
	assert_int_equal(plugin_load(FIXTURES, "oldops", &a, &err), DR_OK);
	assert_int_equal(a.desc->adapter->size, sizeof(dr_adapter_ops));
	assert_non_null(a.desc->adapter->validate);
	assert_non_null(a.desc->adapter->submit);
	assert_null(a.desc->adapter->get);
	assert_null(a.desc->adapter->cancel);
	assert_null(a.desc->adapter->webhook);
	assert_null(a.desc->adapter->reconcile);
	assert_null(a.desc->sink);
	plugin_unload(&a);
	assert_true(is_zeroed(&a));

	assert_int_equal(plugin_load(FIXTURES, "oldsink", &s, &err), DR_OK);
	assert_non_null(s.desc->sink->put);
	assert_non_null(s.desc->sink->public_url);
	assert_null(s.desc->sink->stat);
	assert_null(s.desc->adapter);
	plugin_unload(&s);
}

/* A table larger than the core's (a newer header) is refused, naming
 * both sizes; so is one too small to hold the mandatory operations. */
static void test_load_ops_size_messages(void **state)
{
	char want[768];
	dr_loaded_plugin p;
	dr_error err;

	(void)state;
	snprintf(want, sizeof(want),
		 "adapter plugin 'bigops' has an operations table of %zu "
		 "bytes, this darkroom knows %zu (built against a newer "
		 "darkroom-plugin.h of ABI 2); update darkroom or rebuild the "
		 "plugin against this darkroom's darkroom-plugin.h "
		 "(%s/bigops.so)",
		 sizeof(dr_adapter_ops) + sizeof(void *),
		 sizeof(dr_adapter_ops), FIXTURES);
	assert_int_equal(plugin_load(FIXTURES, "bigops", &p, &err),
			 DR_ERR_PLUGIN);
	assert_string_equal(err.code, "plugin_abi_mismatch");
	assert_string_equal(err.message, want);
	assert_true(is_zeroed(&p));

	snprintf(want, sizeof(want),
		 "adapter plugin 'tinyops' has an operations table of %zu "
		 "bytes, not a table of at least %zu (set its size to "
		 "sizeof(dr_adapter_ops)) (%s/tinyops.so)",
		 offsetof(dr_adapter_ops, submit), DR_ADAPTER_OPS_MIN_SIZE,
		 FIXTURES);
	assert_int_equal(plugin_load(FIXTURES, "tinyops", &p, &err),
			 DR_ERR_PLUGIN);
	assert_string_equal(err.code, "plugin_invalid");
	assert_string_equal(err.message, want);
}

/* Names that are not plain names are refused before any file is looked
 * at: "../good" would reach a real plugin one folder up. */
static void test_load_invalid_names(void **state)
{
	const char *bad[] = { "../good", "a/b",	    "",	     "/good",
			      "Good",	 "good.so", "go od", "g\xc3\xb6od",
			      ".",	 "..",	    NULL };
	char dir[64], sub[96], name65[66];
	dr_loaded_plugin p;
	dr_error err;

	(void)state;
	make_tmp(dir, sizeof(dir));
	snprintf(sub, sizeof(sub), "%s/p", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	link_fixture("good", dir, "good.so");
	link_fixture("good", sub, "good.so");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(plugin_load(sub, bad[i], &p, &err),
				 DR_ERR_INVALID);
		assert_string_equal(err.code, "plugin_invalid_name");
		assert_true(is_zeroed(&p));
	}
	/* Not NOT_FOUND: the directory is never consulted. */
	assert_int_equal(plugin_load("/nonexistent", "a/b", &p, &err),
			 DR_ERR_INVALID);
	assert_non_null(strstr(err.message, "invalid plugin name 'a/b'"));

	/* 64 characters is a name, 65 is not. */
	memset(name65, 'x', 65);
	name65[65] = '\0';
	assert_int_equal(plugin_load(sub, name65, &p, &err), DR_ERR_INVALID);
	name65[64] = '\0';
	assert_int_equal(plugin_load(sub, name65, &p, &err), DR_ERR_NOT_FOUND);

	/* The good one, by its plain name, loads. */
	assert_int_equal(plugin_load(sub, "good", &p, &err), DR_OK);
	plugin_unload(&p);
	rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * plugins_scan
 */

static void test_scan_fixtures(void **state)
{
	dr_loaded_plugin *list;
	size_t n, files = 0, lines = 0;
	char *errors;
	dr_error err;
	DIR *d;
	struct dirent *de;
	int saw_good = 0, saw_goodsink = 0;

	(void)state;
	assert_int_equal(plugins_scan(FIXTURES, &list, &n, &errors, &err),
			 DR_OK);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			assert_true(strcmp(list[i - 1].desc->name,
					   list[i].desc->name) < 0);
		saw_good |= strcmp(list[i].desc->name, "good") == 0;
		saw_goodsink |= strcmp(list[i].desc->name, "goodsink") == 0;
	}
	assert_true(saw_good && saw_goodsink);

	/* Every bad fixture is reported, on its own line. */
	assert_non_null(errors);
	for (size_t i = 0; i < N_BAD; i++)
		assert_non_null(strstr(errors, bad_fixtures[i].message));
	for (const char *s = errors; *s; s++)
		lines += *s == '\n';
	d = opendir(FIXTURES);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		files += len > 3 && strcmp(de->d_name + len - 3, ".so") == 0;
	}
	closedir(d);
	assert_int_equal(n + lines, files);
	free(errors);
	plugins_list_free(list, n);
}

/* The plugins this tree ships all pass the loader's checks. */
static void test_scan_shipped(void **state)
{
	dr_loaded_plugin *list;
	size_t n;
	char *errors;
	dr_error err;
	int saw_fs = 0, saw_null = 0;

	(void)state;
	assert_int_equal(
		plugins_scan(DR_BUILD_DIR "/plugins", &list, &n, &errors, &err),
		DR_OK);
	if (errors)
		fail_msg("shipped plugins refused:\n%s", errors);
	for (size_t i = 0; i < n; i++) {
		saw_fs |= strcmp(list[i].desc->name, "fs") == 0;
		saw_null |= strcmp(list[i].desc->name, "null") == 0;
	}
	assert_true(saw_fs && saw_null);
	plugins_list_free(list, n);
}

static void test_scan_dir(void **state)
{
	dr_loaded_plugin *list;
	char dir[64];
	char *errors;
	size_t n;
	dr_error err;

	(void)state;
	make_tmp(dir, sizeof(dir));
	/* Empty: nothing, no errors. */
	assert_int_equal(plugins_scan(dir, &list, &n, &errors, &err), DR_OK);
	assert_int_equal(n, 0);
	assert_null(errors);
	plugins_list_free(list, n);

	link_fixture("good", dir, "good.so");
	link_fixture("goodsink", dir, "Bad.so");
	write_file(dir, "README", "not a plugin");
	write_file(dir, ".so", "no name");
	assert_int_equal(plugins_scan(dir, &list, &n, &errors, &err), DR_OK);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].desc->name, "good");
	assert_non_null(errors);
	assert_non_null(strstr(errors, "/Bad.so: not a plugin file name"));
	assert_null(strstr(errors, "README"));
	free(errors);
	plugins_list_free(list, n);

	/* errors may be NULL when the caller does not want them. */
	assert_int_equal(plugins_scan(dir, &list, &n, NULL, &err), DR_OK);
	assert_int_equal(n, 1);
	plugins_list_free(list, n);
	plugins_list_free(NULL, 0);
	rm_rf(dir);
}

static void test_scan_missing_dir(void **state)
{
	dr_loaded_plugin *list;
	char *errors;
	size_t n;
	dr_error err;

	(void)state;
	assert_int_equal(
		plugins_scan("/nonexistent/plugins", &list, &n, &errors, &err),
		DR_ERR_NOT_FOUND);
	assert_null(list);
	assert_int_equal(n, 0);
	assert_null(errors);
	assert_non_null(strstr(err.message, "/nonexistent/plugins"));
}

/* ------------------------------------------------------------------------
 * The services table
 */

static void test_host_table(void **state)
{
	const dr_host *h = plugin_host_services();
	unsigned char buf[1000];
	int nonzero = 0;
	double now;
	dr_error err;

	(void)state;
	assert_int_equal(h->abi_version, DR_PLUGIN_ABI_VERSION);
	assert_int_equal(h->size, sizeof(dr_host));

	memset(buf, 0, sizeof(buf));
	assert_int_equal(h->random_bytes(buf, sizeof(buf)), DR_OK);
	for (size_t i = 0; i < sizeof(buf); i++)
		nonzero += buf[i] != 0;
	assert_true(nonzero > 900);
	assert_int_equal(h->random_bytes(buf, 0), DR_OK);

	now = h->now();
	assert_true(now > (double)time(NULL) - 5);
	assert_true(now < (double)time(NULL) + 5);

	err.retryable = 1;
	err.retry_after = 3;
	/* (*h->fail): cmocka defines a macro fail(). */
	assert_int_equal((*h->fail)(&err, DR_ERR_IO, "sink_full",
				    "disk %s at %d%%", "full", 100),
			 DR_ERR_IO);
	assert_int_equal(err.status, DR_ERR_IO);
	assert_string_equal(err.code, "sink_full");
	assert_string_equal(err.message, "disk full at 100%");
	assert_int_equal(err.retryable, 0);
	assert_true(err.retry_after == 0);
	assert_int_equal((*h->fail)(NULL, DR_ERR_IO, NULL, "x"), DR_ERR_IO);
}

/* Run `fn` in a child whose stderr goes to a pipe; 1 when the child was
 * killed by SIGABRT having written `needle`. Under ASan the allocator
 * itself reports a huge request and ends the child its own way, so only
 * the non-zero end is checked there. */
static int dies_with(void (*fn)(const dr_host *), const dr_host *h,
		     const char *needle)
{
	char out[4096];
	size_t len = 0;
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 2);
		close(fds[0]);
		fn(h);
		_exit(0);
	}
	close(fds[1]);
	while (len + 1 < sizeof(out) &&
	       (n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
#if defined(__SANITIZE_ADDRESS__)
	(void)needle;
	return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#else
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT &&
	       strstr(out, needle) != NULL;
#endif
}

static void huge_alloc(const dr_host *h)
{
	h->mem_free(h->mem_alloc(SIZE_MAX - 64));
}

static void huge_calloc(const dr_host *h)
{
	h->mem_free(h->mem_calloc(SIZE_MAX / 2, 4));
}

static void huge_realloc(const dr_host *h)
{
	h->mem_free(h->mem_realloc(NULL, SIZE_MAX - 64));
}

/* The memory services: malloc semantics, never NULL, and out of memory
 * ends the process with a message rather than returning NULL. */
static void test_host_memory(void **state)
{
	const dr_host *h = plugin_host_services();
	unsigned char *z;
	char *s;
	void *p;

	(void)state;
	p = h->mem_alloc(0);
	assert_non_null(p);
	p = h->mem_realloc(p, 100);
	assert_non_null(p);
	h->mem_free(p);
	h->mem_free(NULL);
	z = h->mem_calloc(16, 8);
	for (size_t i = 0; i < 128; i++)
		assert_int_equal(z[i], 0);
	free(z); /* plain free() releases it too */
	s = h->mem_strdup("darkroom");
	assert_string_equal(s, "darkroom");
	h->mem_free(s);
	s = h->mem_strndup("darkroom", 4);
	assert_string_equal(s, "dark");
	h->mem_free(s);
	s = h->mem_strndup("ab", 100); /* stops at the NUL */
	assert_string_equal(s, "ab");
	h->mem_free(s);

	assert_true(dies_with(huge_alloc, h, "out of memory"));
	assert_true(dies_with(huge_calloc, h, "out of memory"));
	assert_true(dies_with(huge_realloc, h, "out of memory"));
}

/* ------------------------------------------------------------------------
 * host->http_request
 */

/* A server thread answering each connection with the next canned answer
 * (whole HTTP/1.1 messages, connection closed), then stopping. */
typedef struct canned {
	int fd, port;
	const char *const *answers;
	int served;
	pthread_t thread;
} canned;

static void *canned_main(void *arg)
{
	canned *c = arg;

	for (const char *const *a = c->answers; *a; a++) {
		char buf[4096];
		int conn = accept(c->fd, NULL, NULL);

		if (conn < 0)
			break;
		/* The request head (no body in these tests). */
		(void)!read(conn, buf, sizeof(buf));
		(void)!write(conn, *a, strlen(*a));
		close(conn);
		c->served++;
	}
	return NULL;
}

static void canned_start(canned *c, const char *const *answers)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	memset(c, 0, sizeof(*c));
	c->answers = answers;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c->fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(c->fd, 8), 0);
	assert_int_equal(getsockname(c->fd, (struct sockaddr *)&sa, &len), 0);
	c->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&c->thread, NULL, canned_main, c), 0);
}

static void canned_stop(canned *c)
{
	shutdown(c->fd, SHUT_RDWR);
	close(c->fd);
	pthread_join(c->thread, NULL);
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_http_retry_after(void **state)
{
	/* Wed, 21 Oct 2015 07:28:00 GMT */
	const double date = 1445412480.0;

	(void)state;
	assert_true(plugin_http_retry_after("120", date) == 120.0);
	assert_true(plugin_http_retry_after("0", date) == 0.0);
	assert_true(plugin_http_retry_after("Wed, 21 Oct 2015 07:28:00 GMT",
					    date - 30) == 30.0);
	/* RFC 850 and asctime dates too. */
	assert_true(plugin_http_retry_after(
			    "Wednesday, 21-Oct-15 07:28:00 GMT", date - 45) ==
		    45.0);
	assert_true(plugin_http_retry_after("Wed Oct 21 07:28:00 2015",
					    date - 10) == 10.0);
	/* A date in the past: no wait. */
	assert_true(plugin_http_retry_after("Wed, 21 Oct 2015 07:28:00 GMT",
					    date + 100) == 0.0);
	assert_true(plugin_http_retry_after(NULL, date) < 0);
	assert_true(plugin_http_retry_after("", date) < 0);
	assert_true(plugin_http_retry_after("soon", date) < 0);
	assert_true(plugin_http_retry_after("12abc", date) < 0);
	assert_true(plugin_http_retry_after("-5", date) < 0);
}

/* A 503 with Retry-After is tried again after the wait it asks; the
 * answer's status, Content-Type and body come back; a body over the cap
 * is refused; a closed port is "not sent", retryable. */
static void test_http_request(void **state)
{
	static const char *const answers[] = {
		"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
		"Content-Length: 0\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
		"Content-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}",
		"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 60\r\n"
		"Content-Length: 0\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n"
		"Connection: close\r\n\r\n01234567890123456789",
		NULL,
	};
	const dr_host *h = plugin_host_services();
	struct dr_instance inst;
	dr_http_request req;
	dr_http_response resp;
	char url[64];
	dr_error err;
	canned c;
	double t0;

	(void)state;
	memset(&inst, 0, sizeof(inst));
	inst.name = "t";
	canned_start(&c, answers);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", c.port);
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = url;
	req.body = "{}";
	req.body_len = 2;
	req.timeout = 5;
	req.retries = 2;
	/* Without a client (darkroom.fcgi sets none): unavailable, at once. */
	plugins_set_http(NULL);
	assert_int_equal(h->http_request(&inst, &req, &resp, &err),
			 DR_ERR_UNAVAILABLE);
	assert_string_equal(err.code, "http_unavailable");
	assert_null(resp.body);
	plugins_set_http(&plugin_http_client);
	t0 = mono();
	assert_int_equal(h->http_request(&inst, &req, &resp, &err), DR_OK);
	assert_true(mono() - t0 >= 0.9);
	assert_int_equal(resp.tries, 2);
	assert_int_equal(resp.status, 201);
	assert_int_equal(resp.sent, 1);
	assert_string_equal(resp.content_type, "application/json");
	assert_string_equal(resp.body, "{\"ok\":true}");
	assert_int_equal(resp.body_len, 11);
	h->mem_free(resp.body);

	/* Asked to wait longer than max_retry_wait: the 429 comes back. */
	req.max_retry_wait = 5;
	assert_int_equal(h->http_request(&inst, &req, &resp, &err), DR_OK);
	assert_int_equal(resp.tries, 1);
	assert_int_equal(resp.status, 429);
	assert_true(resp.retry_after == 60.0);
	h->mem_free(resp.body);

	req.retries = 0;
	req.max_response = 10;
	assert_int_equal(h->http_request(&inst, &req, &resp, &err),
			 DR_ERR_TOO_LARGE);
	assert_string_equal(err.code, "http_too_large");
	assert_null(resp.body);
	canned_stop(&c);
	assert_int_equal(c.served, 4);

	/* Nobody listens any more: surely not sent, retryable. */
	req.max_response = 0;
	assert_int_equal(h->http_request(&inst, &req, &resp, &err),
			 DR_ERR_NETWORK);
	assert_string_equal(err.code, "http_not_sent");
	assert_int_equal(err.retryable, 1);
	assert_int_equal(resp.sent, 0);
	plugin_http_free(inst.http);
}

/* Untrusted URLs follow the download rules: scheme, host allowlist, and
 * public addresses only (checked when connecting). */
static void test_http_untrusted(void **state)
{
	const dr_host *h = plugin_host_services();
	struct dr_instance inst;
	dr_http_request req;
	dr_http_response resp;
	dr_error err;

	(void)state;
	unsetenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE");
	unsetenv("DARKROOM_DOWNLOAD_ALLOW_HTTP");
	unsetenv("DARKROOM_DOWNLOAD_HOSTS");
	memset(&inst, 0, sizeof(inst));
	inst.name = "t";
	memset(&req, 0, sizeof(req));
	req.untrusted = 1;
	req.timeout = 5;

	req.url = "http://127.0.0.1:9/x";
	assert_int_equal(h->http_request(&inst, &req, &resp, &err),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	assert_non_null(strstr(err.message, "scheme http"));
	req.url = "https://127.0.0.1:9/x";
	assert_int_equal(h->http_request(&inst, &req, &resp, &err),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "url_not_allowed");
	assert_non_null(strstr(err.message, "host 127.0.0.1"));
	req.url = "file:///etc/passwd";
	assert_int_equal(h->http_request(&inst, &req, &resp, &err),
			 DR_ERR_INVALID);
	/* Host allowed, address not: refused when connecting. */
	setenv("DARKROOM_DOWNLOAD_HOSTS", "127.0.0.1", 1);
	req.url = "https://127.0.0.1:9/x";
	assert_int_equal(h->http_request(&inst, &req, &resp, &err),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "address_not_allowed");
	assert_int_equal(resp.sent, 0);
	/* The same URL, trusted (from the configuration): any address. */
	req.untrusted = 0;
	assert_int_equal(h->http_request(&inst, &req, &resp, &err),
			 DR_ERR_NETWORK);
	assert_string_equal(err.code, "http_not_sent");
	unsetenv("DARKROOM_DOWNLOAD_HOSTS");
	plugin_http_free(inst.http);
}

/* A hand-made instance: the services that need no config. */
static void test_host_instance(void **state)
{
	const dr_host *h = plugin_host_services();
	dr_loaded_plugin lp;
	dr_config cfg;
	struct dr_instance inst;
	char captured[4096];
	dr_error err;
	FILE *tmp;
	size_t n;
	int saved;

	(void)state;
	assert_int_equal(plugin_load(FIXTURES, "good", &lp, &err), DR_OK);
	memset(&cfg, 0, sizeof(cfg));
	cfg.server.public_url = "https://darkroom.example.com";
	memset(&inst, 0, sizeof(inst));
	inst.name = "gpu1";
	inst.plugin = &lp;
	inst.cfg = &cfg;

	assert_string_equal(h->instance_name(&inst), "gpu1");
	assert_string_equal(h->public_url(&inst),
			    "https://darkroom.example.com");
	/* No resolved section: unset, not a crash. */
	assert_null(h->config_get(&inst, "greeting"));
	assert_int_equal(h->config_int(&inst, "count"), 0);
	assert_int_equal(h->config_bool(&inst, "fail"), 0);
	assert_true(h->config_seconds(&inst, "count") == 0);

	/* The log line carries the plugin and instance names. */
	dr_log_init("test", DR_LOG_DEBUG, 0);
	tmp = tmpfile();
	assert_non_null(tmp);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	h->log(&inst, DR_LOG_WARNING, "event=test.hello n=%d", 42);
	h->log(&inst, DR_LOG_ERR, "event=test.multi text=%s", "a\nb");
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(tmp);
	n = fread(captured, 1, sizeof(captured) - 1, tmp);
	captured[n] = '\0';
	fclose(tmp);
	assert_non_null(strstr(captured, "level=warning"));
	assert_non_null(strstr(captured, "plugin=good instance=gpu1 "
					 "event=test.hello n=42\n"));
	assert_non_null(strstr(captured, "event=test.multi text=a b\n"));
	plugin_unload(&lp);
}

/* host->local_root: an adapter's work folder, kept tidily spelled for
 * the pipeline; refused when relative, "/", with "." or "..", or from a
 * sink. */
static void test_host_local_root(void **state)
{
	static const char *const bad[] = {
		"var/exec",
		"",
		"/",
		"///",
		"/var/./exec",
		"/var/../etc",
		"/var/exec/..",
		"/var/exec/.",
	};
	const dr_host *h = plugin_host_services();
	dr_loaded_plugin lp, sink;
	struct dr_instance inst, sinst;
	dr_error err;

	(void)state;
	assert_true(DR_HOST_HAS(h, local_root));
	assert_int_equal(plugin_load(FIXTURES, "good", &lp, &err), DR_OK);
	assert_int_equal(plugin_load(FIXTURES, "goodsink", &sink, &err), DR_OK);
	memset(&inst, 0, sizeof(inst));
	inst.name = "exec";
	inst.plugin = &lp;

	assert_int_equal(h->local_root(&inst, "/var/lib/darkroom/exec", &err),
			 DR_OK);
	assert_string_equal(inst.local_root, "/var/lib/darkroom/exec");
	assert_int_equal(h->local_root(&inst, "//var//exec///", &err), DR_OK);
	assert_string_equal(inst.local_root, "/var/exec");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		dr_error_clear(&err);
		assert_int_equal(h->local_root(&inst, bad[i], &err),
				 DR_ERR_INVALID);
		assert_string_equal(err.code, "invalid_argument");
		/* The folder declared before stays. */
		assert_string_equal(inst.local_root, "/var/exec");
	}
	assert_int_equal(h->local_root(&inst, NULL, &err), DR_ERR_INVALID);

	memset(&sinst, 0, sizeof(sinst));
	sinst.name = "fs";
	sinst.plugin = &sink;
	assert_int_equal(h->local_root(&sinst, "/srv/media", &err),
			 DR_ERR_INVALID);
	assert_null(sinst.local_root);

	free(inst.local_root);
	plugin_unload(&sink);
	plugin_unload(&lp);
}

/* ------------------------------------------------------------------------
 * plugins_init
 */

/* Parse a config made of a [server] section pointing at the fixtures and
 * `body`. */
static dr_config *parse_config(const char *body)
{
	char text[4096];
	dr_config *cfg = NULL;
	dr_error err;
	int n;

	n = snprintf(text, sizeof(text),
		     "[server]\n"
		     "plugin_dir = " FIXTURES "\n"
		     "public_url = https://darkroom.example.com\n"
		     "%s",
		     body);
	assert_true(n > 0 && (size_t)n < sizeof(text));
	if (config_parse("test.conf", text, (size_t)n, &cfg, &err) != DR_OK)
		fail_msg("config_parse: %s", err.message);
	return cfg;
}

/* plugins_init must fail on `body` with `status` and a message holding
 * `needle`. */
static void expect_init_error(const char *body, int create, dr_status status,
			      const char *needle)
{
	dr_config *cfg = parse_config(body);
	dr_plugins *p = (dr_plugins *)1;
	dr_error err;
	dr_status st;

	st = plugins_init(cfg, create, &p, &err);
	if (st != status || !strstr(err.message, needle))
		fail_msg("status %d, message: %s", (int)st, err.message);
	assert_null(p);
	config_free(cfg);
}

/* plugins_maintain: every adapter instance with maintain() is called,
 * each failure logged with its instance and code and counted; adapters
 * without the operation are left alone. */
static void test_maintain(void **state)
{
	char captured[4096];
	dr_config *cfg;
	dr_plugins *p;
	dr_error err;
	FILE *tmp;
	int saved, failed;
	size_t n;

	(void)state;
	cfg = parse_config("default_adapter = m1\n"
			   "\n"
			   "[adapter \"m1\"]\n"
			   "plugin = maint\n"
			   "\n"
			   "[adapter \"m2\"]\n"
			   "plugin = maint\n"
			   "fail = true\n"
			   "\n"
			   "[adapter \"good\"]\n");
	dr_log_init("test", DR_LOG_ERR, 0);
	if (plugins_init(cfg, 1, &p, &err) != DR_OK)
		fail_msg("plugins_init: %s", err.message);
	dr_log_init("test", DR_LOG_INFO, 0);
	tmp = tmpfile();
	assert_non_null(tmp);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	failed = plugins_maintain(p);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(tmp);
	n = fread(captured, 1, sizeof(captured) - 1, tmp);
	captured[n] = '\0';
	fclose(tmp);
	dr_log_init("test", DR_LOG_ERR, 0);
	assert_int_equal(failed, 1);
	assert_non_null(strstr(captured, "plugin=maint instance=m1 "
					 "event=maint.called"));
	assert_non_null(strstr(captured, "plugin=maint instance=m2 "
					 "event=maint.called"));
	assert_non_null(strstr(captured, "event=plugin.maintain_failed "
					 "plugin=maint instance=m2 "
					 "code=maint_failed"));
	assert_null(strstr(captured, "instance=m1 code="));
	assert_int_equal(plugins_maintain(NULL), 0);
	plugins_free(p);
	config_free(cfg);
}

/* PLUGINS_CREATE_UPKEEP (darkroom migrate): only the adapter instances
 * with maintain() are created; the others and the sink are loaded and
 * checked but not started. plugins_maintain_report hands each failure to
 * its caller instead of the log. */
static int upkeep_reports;

static void upkeep_report(void *ctx, const char *plugin, const char *instance,
			  const dr_error *err)
{
	assert_ptr_equal(ctx, &upkeep_reports);
	assert_string_equal(plugin, "maint");
	assert_string_equal(instance, "m2");
	assert_string_equal(err->code, "maint_failed");
	assert_string_equal(err->message, "asked to fail");
	upkeep_reports++;
}

static void test_create_upkeep_only(void **state)
{
	dr_config *cfg;
	dr_plugins *p;
	dr_error err;

	(void)state;
	cfg = parse_config("default_adapter = good\n"
			   "sink = goodsink\n"
			   "\n"
			   "[adapter \"m1\"]\n"
			   "plugin = maint\n"
			   "\n"
			   "[adapter \"m2\"]\n"
			   "plugin = maint\n"
			   "fail = true\n"
			   "\n"
			   "[adapter \"good\"]\n"
			   "\n"
			   "[sink \"goodsink\"]\n");
	dr_log_init("test", DR_LOG_ERR, 0);
	if (plugins_init(cfg, PLUGINS_CREATE_UPKEEP, &p, &err) != DR_OK)
		fail_msg("plugins_init: %s", err.message);
	assert_non_null(plugins_adapter(p, "m1"));
	assert_non_null(plugins_adapter(p, "m1")->state);
	assert_non_null(plugins_adapter(p, "m2")->state);
	assert_non_null(plugins_adapter(p, "good"));
	assert_null(plugins_adapter(p, "good")->state);
	assert_non_null(plugins_sink(p, "goodsink"));
	assert_null(plugins_sink(p, "goodsink")->state);
	upkeep_reports = 0;
	assert_int_equal(
		plugins_maintain_report(p, upkeep_report, &upkeep_reports), 1);
	assert_int_equal(upkeep_reports, 1);
	plugins_free(p);
	config_free(cfg);
}

static void test_init_good(void **state)
{
	const dr_host *h = plugin_host_services();
	dr_config *cfg;
	dr_plugins *p;
	struct dr_instance *a, *b, *s;
	dr_error err;

	(void)state;
	cfg = parse_config("default_adapter = good\n"
			   "sink = store\n"
			   "\n"
			   "[adapter \"good\"]\n"
			   "greeting = hi\n"
			   "count = 3\n"
			   "\n"
			   "[adapter \"second\"]\n"
			   "plugin = good\n"
			   "\n"
			   "[sink \"store\"]\n"
			   "plugin = goodsink\n");
	dr_log_init("test", DR_LOG_ERR, 0);
	if (plugins_init(cfg, 1, &p, &err) != DR_OK)
		fail_msg("plugins_init: %s", err.message);
	assert_int_equal(p->n_loaded, 2);
	assert_int_equal(p->n_adapters, 2);
	assert_int_equal(p->n_sinks, 1);

	a = plugins_adapter(p, "good");
	b = plugins_adapter(p, "second");
	s = plugins_sink(p, "store");
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(s);
	assert_null(plugins_adapter(p, "store"));
	assert_null(plugins_sink(p, "good"));
	assert_null(plugins_adapter(p, "nope"));
	assert_null(plugins_adapter(NULL, "good"));

	/* One plugin, two instances, two states. */
	assert_ptr_equal(a->plugin, b->plugin);
	assert_non_null(a->state);
	assert_non_null(b->state);
	assert_ptr_not_equal(a->state, b->state);
	assert_string_equal(s->plugin->desc->name, "goodsink");

	/* The services read the instance's own section, defaults applied. */
	assert_string_equal(h->instance_name(b), "second");
	assert_string_equal(h->config_get(a, "greeting"), "hi");
	assert_string_equal(h->config_get(b, "greeting"), "hello");
	assert_int_equal(h->config_int(a, "count"), 3);
	assert_int_equal(h->config_int(b, "count"), 0);
	assert_int_equal(h->config_bool(a, "fail"), 0);
	assert_string_equal(h->public_url(a), "https://darkroom.example.com");

	plugins_free(p);
	plugins_free(NULL);
	config_free(cfg);
}

/* `config check` mode: loaded and validated, nothing created. */
static void test_init_no_create(void **state)
{
	dr_config *cfg;
	dr_plugins *p;
	dr_error err;

	(void)state;
	cfg = parse_config("[adapter \"good\"]\n"
			   "fail = yes\n");
	if (plugins_init(cfg, 0, &p, &err) != DR_OK)
		fail_msg("plugins_init: %s", err.message);
	assert_int_equal(p->n_adapters, 1);
	assert_null(plugins_adapter(p, "good")->state);
	plugins_free(p);
	config_free(cfg);
}

static void test_init_unknown_key(void **state)
{
	(void)state;
	expect_init_error("[adapter \"good\"]\n"
			  "greeting = hi\n"
			  "colour = blue\n",
			  1, DR_ERR_CONFIG, "colour");
	/* With "path:line: " in front: the key is on line 6. */
	expect_init_error("[adapter \"good\"]\n"
			  "greeting = hi\n"
			  "colour = blue\n",
			  0, DR_ERR_CONFIG, "test.conf:6:");
}

static void test_init_wrong_kind(void **state)
{
	(void)state;
	expect_init_error("sink = x\n"
			  "[adapter \"good\"]\n"
			  "[sink \"x\"]\n"
			  "plugin = good\n",
			  1, DR_ERR_CONFIG,
			  "[sink \"x\"] names plugin 'good', which is an "
			  "adapter");
	expect_init_error("default_adapter = y\n"
			  "[adapter \"y\"]\n"
			  "plugin = goodsink\n",
			  1, DR_ERR_CONFIG,
			  "[adapter \"y\"] names plugin 'goodsink', which is a "
			  "sink");
}

static void test_init_missing_plugin(void **state)
{
	(void)state;
	expect_init_error(
		"[adapter \"ghost\"]\n", 1, DR_ERR_NOT_FOUND,
		"[adapter \"ghost\"] plugin 'ghost' not found: " FIXTURES
		"/ghost.so does not exist");
}

static void test_init_bad_plugin(void **state)
{
	(void)state;
	expect_init_error("[adapter \"badabi\"]\n", 0, DR_ERR_PLUGIN,
			  "was built for plugin ABI 999");
}

/* config_parse() already refuses a `plugin` value that is not a name; the
 * host refuses it again, without touching the file system, should one
 * ever get through (here: edited into the parsed config). */
static void test_init_plugin_path(void **state)
{
	dr_config *cfg;
	dr_plugins *p;
	dr_error err;
	char *value = NULL;

	(void)state;
	cfg = parse_config("[adapter \"x\"]\n"
			   "plugin = abcdefg\n");
	for (size_t i = 0; i < cfg->n_sections; i++)
		for (size_t j = 0; j < cfg->sections[i].n_entries; j++)
			if (strcmp(cfg->sections[i].entries[j].key, "plugin") ==
			    0)
				value = cfg->sections[i].entries[j].value;
	assert_non_null(value);
	assert_int_equal(strlen(value), strlen("../good"));
	memcpy(value, "../good", strlen(value));
	assert_int_equal(plugins_init(cfg, 1, &p, &err), DR_ERR_INVALID);
	assert_null(p);
	assert_non_null(strstr(err.message, "invalid plugin name '../good'"));
	config_free(cfg);
}

/* A create() that fails is reported with the section, and everything
 * created before it is destroyed (the sanitizer build checks the leak). */
static void test_init_create_fails(void **state)
{
	(void)state;
	expect_init_error("default_adapter = first\n"
			  "sink = s\n"
			  "[adapter \"first\"]\n"
			  "plugin = good\n"
			  "[sink \"s\"]\n"
			  "plugin = goodsink\n"
			  "[adapter \"second\"]\n"
			  "plugin = good\n"
			  "fail = true\n",
			  1, DR_ERR_CONFIG,
			  "[adapter \"second\"] plugin 'good' could not start: "
			  "asked to fail by its config");
}

/*
 * Two plugins claiming the same name. Plugins are looked up by file name
 * and a descriptor must carry its file's name, so the only way to get two
 * files claiming one name is a copy or link under another name: "other.so"
 * being good.so. It is refused by name before any instance is made, and
 * a config using both names fails as a whole (the sanitizer build checks
 * that the first plugin is released).
 */
static void test_init_duplicate_name(void **state)
{
	char dir[64], text[1024];
	dr_config *cfg = NULL;
	dr_plugins *p = (dr_plugins *)1;
	dr_loaded_plugin lp;
	dr_error err;
	int n;

	(void)state;
	make_tmp(dir, sizeof(dir));
	link_fixture("good", dir, "good.so");
	link_fixture("good", dir, "other.so");

	assert_int_equal(plugin_load(dir, "other", &lp, &err), DR_ERR_PLUGIN);
	assert_non_null(strstr(err.message, "other.so calls itself 'good'"));
	assert_true(is_zeroed(&lp));

	n = snprintf(text, sizeof(text),
		     "[server]\n"
		     "plugin_dir = %s\n"
		     "public_url = https://darkroom.example.com\n"
		     "default_adapter = a\n"
		     "[adapter \"a\"]\n"
		     "plugin = good\n"
		     "[adapter \"b\"]\n"
		     "plugin = other\n",
		     dir);
	assert_true(n > 0 && (size_t)n < sizeof(text));
	if (config_parse("test.conf", text, (size_t)n, &cfg, &err) != DR_OK)
		fail_msg("config_parse: %s", err.message);
	assert_int_equal(plugins_init(cfg, 1, &p, &err), DR_ERR_PLUGIN);
	assert_null(p);
	assert_non_null(strstr(err.message, "[adapter \"b\"]"));
	assert_non_null(strstr(err.message, "calls itself 'good'"));
	config_free(cfg);
	rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_good),
		cmocka_unit_test(test_load_twice),
		cmocka_unit_test(test_load_missing),
		cmocka_unit_test(test_load_not_elf),
		cmocka_unit_test(test_load_bad_fixtures),
		cmocka_unit_test(test_load_abi_message),
		cmocka_unit_test(test_load_size_message),
		cmocka_unit_test(test_load_short_tables),
		cmocka_unit_test(test_load_ops_size_messages),
		cmocka_unit_test(test_load_invalid_names),
		cmocka_unit_test(test_scan_fixtures),
		cmocka_unit_test(test_scan_shipped),
		cmocka_unit_test(test_scan_dir),
		cmocka_unit_test(test_scan_missing_dir),
		cmocka_unit_test(test_host_table),
		cmocka_unit_test(test_host_memory),
		cmocka_unit_test(test_http_retry_after),
		cmocka_unit_test(test_http_request),
		cmocka_unit_test(test_http_untrusted),
		cmocka_unit_test(test_host_instance),
		cmocka_unit_test(test_host_local_root),
		cmocka_unit_test(test_maintain),
		cmocka_unit_test(test_create_upkeep_only),
		cmocka_unit_test(test_init_good),
		cmocka_unit_test(test_init_no_create),
		cmocka_unit_test(test_init_unknown_key),
		cmocka_unit_test(test_init_wrong_kind),
		cmocka_unit_test(test_init_missing_plugin),
		cmocka_unit_test(test_init_bad_plugin),
		cmocka_unit_test(test_init_plugin_path),
		cmocka_unit_test(test_init_create_fails),
		cmocka_unit_test(test_init_duplicate_name),
	};

	/* The environment must not steer the configs these tests parse. */
	unsetenv("DARKROOM_SINK");
	unsetenv("DARKROOM_PUBLIC_URL");
	unsetenv("DARKROOM_PORT");
	unsetenv("DARKROOM_API_KEY");
	unsetenv("DARKROOM_CDN_BASE_URL");
	dr_log_init("test", DR_LOG_ERR, 0);
	plugins_set_http(&plugin_http_client);
	return cmocka_run_group_tests_name("plugin host", tests, NULL, NULL);
}
