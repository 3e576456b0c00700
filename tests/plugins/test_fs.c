/*
 * test_fs.c - the `fs` sink against the mock host.
 *
 * Each test gets a fresh temporary directory; the sink's root is "root"
 * inside it (created by the sink), so a test can also look next to the
 * root to prove nothing escaped it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "darkroom-plugin.h"
#include "mock_host.h"

const dr_plugin *dr_plugin_entry(void);

typedef struct fixture {
	char tmp[64];	/* the test's directory */
	char root[128]; /* tmp/root, the sink's root */
	dr_instance *inst;
	const dr_plugin *plugin;
	const dr_sink_ops *ops;
	void *state;
	dr_error err;
} fixture;

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

static void rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* dir/rel in a static buffer: one use per expression. */
static char *path_in(const char *dir, const char *rel)
{
	static char buf[512];

	snprintf(buf, sizeof(buf), "%s/%s", dir, rel);
	return buf;
}

/* The content of a file as a NUL-terminated string, or NULL. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* Entries of `dir` whose name starts with ".tmp." */
static int count_temp_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, ".tmp.", 5) == 0)
			n++;
	closedir(d);
	return n;
}

/* Entries of `dir` besides "." and "..". */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static dr_status put_text(fixture *f, const char *key, const char *text)
{
	dr_source src = { .data = text, .fd = -1, .size = strlen(text) };

	memset(&f->err, 0, sizeof(f->err));
	return f->ops->put(f->state, key, &src, NULL, &f->err);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->tmp, sizeof(f->tmp), "/tmp/test_fs.XXXXXX");
	assert_non_null(mkdtemp(f->tmp));
	snprintf(f->root, sizeof(f->root), "%s/root", f->tmp);
	f->plugin = dr_plugin_entry();
	f->ops = f->plugin->sink;
	f->inst = mock_instance_new("fs", f->plugin);
	mock_host_set(f->inst, "root", f->root);
	mock_host_set(f->inst, "base_url", "https://cdn.example.com/media");
	mock_host_random(MOCK_RANDOM_REAL);
	*state = f;
	return 0;
}

/* setup, then create the instance. */
static int setup_created(void **state)
{
	fixture *f;

	setup(state);
	f = *state;
	assert_int_equal(
		f->plugin->create(mock_host(), f->inst, &f->state, &f->err),
		DR_OK);
	assert_non_null(f->state);
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	f->plugin->destroy(f->state);
	assert_int_equal(mock_host_undeclared(f->inst), 0);
	mock_instance_free(f->inst);
	rm_rf(f->tmp);
	free(f);
	mock_host_random(MOCK_RANDOM_REAL);
	return 0;
}

/* ------------------------------------------------------------------------
 * Descriptor and create
 */

static void test_descriptor(void **state)
{
	const dr_plugin *p = dr_plugin_entry();

	(void)state;
	assert_int_equal(p->abi_version, DR_PLUGIN_ABI_VERSION);
	assert_int_equal(p->size, sizeof(dr_plugin));
	assert_string_equal(p->name, "fs");
	assert_int_equal(p->kind, DR_PLUGIN_SINK);
	assert_non_null(p->sink->put);
	assert_non_null(p->sink->get);
	assert_non_null(p->sink->remove);
	assert_non_null(p->sink->public_url);
	assert_non_null(p->sink->stat);
	assert_null(p->adapter);
}

static void test_create_makes_root(void **state)
{
	fixture *f = *state;
	struct stat sb;

	assert_int_equal(stat(f->root, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0755);
}

static void test_create_missing_root(void **state)
{
	fixture *f = *state;

	mock_host_set(f->inst, "root", NULL);
	assert_int_equal(
		f->plugin->create(mock_host(), f->inst, &f->state, &f->err),
		DR_ERR_CONFIG);
	assert_null(f->state);
	assert_string_equal(f->err.code, "invalid_config");
	assert_non_null(strstr(f->err.message, "root"));
}

static void test_create_missing_base_url(void **state)
{
	fixture *f = *state;

	mock_host_set(f->inst, "base_url", NULL);
	assert_int_equal(
		f->plugin->create(mock_host(), f->inst, &f->state, &f->err),
		DR_ERR_CONFIG);
	assert_null(f->state);
	assert_non_null(strstr(f->err.message, "base_url"));
}

static void test_create_bad_modes(void **state)
{
	fixture *f = *state;
	const char *bad[] = { "0999", "", "abc", "077777", "-1", "7 " };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mock_host_set(f->inst, "dir_mode", bad[i]);
		assert_int_equal(f->plugin->create(mock_host(), f->inst,
						   &f->state, &f->err),
				 DR_ERR_CONFIG);
		assert_null(f->state);
		assert_non_null(strstr(f->err.message, "dir_mode"));
	}
	mock_host_set(f->inst, "dir_mode", "0700");
	mock_host_set(f->inst, "file_mode", "8");
	assert_int_equal(
		f->plugin->create(mock_host(), f->inst, &f->state, &f->err),
		DR_ERR_CONFIG);
	assert_non_null(strstr(f->err.message, "file_mode"));
}

/* A root that cannot be a directory: an error, not a crash. (Tests run as
 * root, so a chmod'ed directory would not stop anything.) */
static void test_create_root_is_file(void **state)
{
	fixture *f = *state;

	write_file(f->root, "not a directory");
	assert_int_equal(
		f->plugin->create(mock_host(), f->inst, &f->state, &f->err),
		DR_ERR_IO);
	assert_null(f->state);
	assert_string_equal(f->err.code, "sink_io");
	assert_non_null(strstr(f->err.message, f->root));
}

static void test_root_replaced_by_file(void **state)
{
	fixture *f = *state;
	void *data = NULL;
	size_t len = 0;
	uint64_t size;

	assert_int_equal(rmdir(f->root), 0);
	write_file(f->root, "not a directory");
	assert_int_equal(put_text(f, "a/b.txt", "x"), DR_ERR_IO);
	assert_string_equal(f->err.code, "sink_io");
	assert_int_equal(
		f->ops->get(f->state, "a/b.txt", 100, &data, &len, &f->err),
		DR_ERR_IO);
	assert_null(data);
	assert_int_equal(f->ops->stat(f->state, "b.txt", &size, &f->err),
			 DR_ERR_IO);
	assert_int_equal(f->ops->remove(f->state, "b.txt", &f->err), DR_ERR_IO);
}

static void test_modes_applied(void **state)
{
	fixture *f = *state;
	struct stat sb;

	mock_host_set(f->inst, "dir_mode", "0750");
	mock_host_set(f->inst, "file_mode", "0600");
	assert_int_equal(
		f->plugin->create(mock_host(), f->inst, &f->state, &f->err),
		DR_OK);
	assert_int_equal(put_text(f, "d/e.txt", "x"), DR_OK);
	assert_int_equal(stat(path_in(f->root, "d"), &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0750);
	assert_int_equal(stat(path_in(f->root, "d/e.txt"), &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
}

/* ------------------------------------------------------------------------
 * put
 */

static void test_put_memory(void **state)
{
	fixture *f = *state;
	struct stat sb;
	char *got;

	assert_int_equal(put_text(f, "hello.txt", "hello world"), DR_OK);
	got = slurp(path_in(f->root, "hello.txt"));
	assert_string_equal(got, "hello world");
	free(got);
	assert_int_equal(stat(path_in(f->root, "hello.txt"), &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0644);
	assert_int_equal(count_temp_files(f->root), 0);
}

static void test_put_empty(void **state)
{
	fixture *f = *state;
	dr_source src = { .data = NULL, .fd = -1, .size = 0 };
	uint64_t size = 99;

	assert_int_equal(f->ops->put(f->state, "empty", &src, NULL, &f->err),
			 DR_OK);
	assert_int_equal(f->ops->stat(f->state, "empty", &size, &f->err),
			 DR_OK);
	assert_int_equal(size, 0);
}

/* From a file descriptor, larger than the copy buffer, leaving the
 * descriptor's offset where it was (pread). */
static void test_put_fd(void **state)
{
	fixture *f = *state;
	const size_t n = 200000;
	unsigned char *bytes = malloc(n);
	dr_source src;
	void *data = NULL;
	size_t len = 0;
	int fd;

	assert_non_null(bytes);
	for (size_t i = 0; i < n; i++)
		bytes[i] = (unsigned char)(i * 7 + 3);
	fd = open(path_in(f->tmp, "source.bin"), O_RDWR | O_CREAT | O_TRUNC,
		  0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, n), (ssize_t)n);
	assert_int_equal(lseek(fd, 5, SEEK_SET), 5);

	src = (dr_source){ .data = NULL, .fd = fd, .size = n };
	assert_int_equal(
		f->ops->put(f->state, "ab/cd.bin", &src, NULL, &f->err), DR_OK);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 5);
	close(fd);

	assert_int_equal(
		f->ops->get(f->state, "ab/cd.bin", n, &data, &len, &f->err),
		DR_OK);
	assert_int_equal(len, n);
	assert_memory_equal(data, bytes, n);
	free(data);
	free(bytes);
}

/* A source shorter than it claims fails and leaves nothing behind. */
static void test_put_fd_short(void **state)
{
	fixture *f = *state;
	dr_source src;
	int fd;

	write_file(path_in(f->tmp, "short.bin"), "12345");
	fd = open(path_in(f->tmp, "short.bin"), O_RDONLY);
	assert_true(fd >= 0);
	src = (dr_source){ .data = NULL, .fd = fd, .size = 10 };
	assert_int_equal(
		f->ops->put(f->state, "short.bin", &src, NULL, &f->err),
		DR_ERR_IO);
	assert_string_equal(f->err.code, "sink_io");
	assert_non_null(strstr(f->err.message, "shorter"));
	close(fd);
	assert_int_equal(count_entries(f->root), 0);
}

static void test_put_no_source(void **state)
{
	fixture *f = *state;
	dr_source src = { .data = NULL, .fd = -1, .size = 3 };

	assert_int_equal(f->ops->put(f->state, "x", &src, NULL, &f->err),
			 DR_ERR_INVALID);
	assert_int_equal(f->ops->put(f->state, "x", NULL, NULL, &f->err),
			 DR_ERR_INVALID);
	assert_int_equal(count_entries(f->root), 0);
}

static void test_put_nested(void **state)
{
	fixture *f = *state;
	struct stat sb;
	char *got;

	assert_int_equal(put_text(f, "a/b/c/d.webp", "deep"), DR_OK);
	assert_int_equal(stat(path_in(f->root, "a/b/c"), &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0755);
	got = slurp(path_in(f->root, "a/b/c/d.webp"));
	assert_string_equal(got, "deep");
	free(got);
	/* A sibling in an existing directory. */
	assert_int_equal(put_text(f, "a/b/e.webp", "next"), DR_OK);
	assert_int_equal(count_temp_files(path_in(f->root, "a/b/c")), 0);
}

/* Overwriting replaces the file (a new inode by rename): a reader that
 * opened the old object still reads the old bytes, whole. */
static void test_put_overwrite_atomic(void **state)
{
	fixture *f = *state;
	char buf[16] = { 0 };
	struct stat before, after;
	char *got;
	int fd;

	assert_int_equal(put_text(f, "x/obj.txt", "old bytes"), DR_OK);
	assert_int_equal(stat(path_in(f->root, "x/obj.txt"), &before), 0);
	fd = open(path_in(f->root, "x/obj.txt"), O_RDONLY);
	assert_true(fd >= 0);

	assert_int_equal(put_text(f, "x/obj.txt", "new"), DR_OK);
	assert_int_equal(stat(path_in(f->root, "x/obj.txt"), &after), 0);
	assert_true(before.st_ino != after.st_ino);
	assert_int_equal(read(fd, buf, sizeof(buf) - 1), 9);
	assert_string_equal(buf, "old bytes");
	close(fd);

	got = slurp(path_in(f->root, "x/obj.txt"));
	assert_string_equal(got, "new");
	free(got);
	assert_int_equal(count_temp_files(path_in(f->root, "x")), 0);
	assert_int_equal(count_entries(path_in(f->root, "x")), 1);
}

static void test_put_over_directory(void **state)
{
	fixture *f = *state;

	assert_int_equal(put_text(f, "dir/file", "x"), DR_OK);
	assert_int_equal(put_text(f, "dir", "x"), DR_ERR_IO);
	assert_string_equal(f->err.code, "sink_io");
	assert_int_equal(count_temp_files(f->root), 0);
}

/* A failing write (here: over RLIMIT_FSIZE) removes the temporary file
 * and leaves the previous object as it was. */
static void test_put_write_error_cleans_up(void **state)
{
	fixture *f = *state;
	struct rlimit old, lim;
	char big[8192];
	dr_source src = { .data = big, .fd = -1, .size = sizeof(big) };
	dr_status st;
	char *got;

	memset(big, 'z', sizeof(big));
	assert_int_equal(put_text(f, "keep.txt", "previous"), DR_OK);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 1024;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	st = f->ops->put(f->state, "keep.txt", &src, NULL, &f->err);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);

	assert_int_equal(st, DR_ERR_IO);
	assert_string_equal(f->err.code, "sink_io");
	assert_non_null(strstr(f->err.message, "keep.txt"));
	assert_int_equal(count_temp_files(f->root), 0);
	got = slurp(path_in(f->root, "keep.txt"));
	assert_string_equal(got, "previous");
	free(got);
}

static void test_put_random_fails(void **state)
{
	fixture *f = *state;

	mock_host_random(MOCK_RANDOM_FAIL);
	assert_int_not_equal(put_text(f, "r/x.txt", "x"), DR_OK);
	assert_string_equal(f->err.code, "sink_io");
	assert_int_equal(count_temp_files(path_in(f->root, "r")), 0);
	assert_int_equal(count_entries(path_in(f->root, "r")), 0);
}

/* A temporary name that is taken is skipped, not reused. */
static void test_put_temp_name_taken(void **state)
{
	fixture *f = *state;
	unsigned char r[8];
	char name[32];
	char *got;

	mock_host_random(MOCK_RANDOM_FIXED);
	assert_int_equal(mock_host()->random_bytes(r, sizeof(r)), DR_OK);
	snprintf(name, sizeof(name), ".tmp.%02x%02x%02x%02x%02x%02x%02x%02x",
		 r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
	write_file(path_in(f->root, name), "squatter");

	mock_host_random(MOCK_RANDOM_FIXED); /* same sequence again */
	assert_int_equal(put_text(f, "t.txt", "mine"), DR_OK);
	got = slurp(path_in(f->root, name));
	assert_string_equal(got, "squatter");
	free(got);
	got = slurp(path_in(f->root, "t.txt"));
	assert_string_equal(got, "mine");
	free(got);
	assert_int_equal(count_temp_files(f->root), 1);
}

/* A symbolic link inside the root cannot lead a write outside it. */
static void test_put_symlink_escape(void **state)
{
	fixture *f = *state;
	char outside[128], target[160];
	void *data = NULL;
	size_t len;

	snprintf(outside, sizeof(outside), "%s/outside", f->tmp);
	assert_int_equal(mkdir(outside, 0755), 0);
	assert_int_equal(symlink(outside, path_in(f->root, "evil")), 0);

	assert_int_equal(put_text(f, "evil/x.txt", "escaped"), DR_ERR_IO);
	assert_string_equal(f->err.code, "sink_io");
	assert_int_equal(count_entries(outside), 0);

	write_file(path_in(outside, "secret"), "s");
	assert_int_equal(
		f->ops->get(f->state, "evil/secret", 100, &data, &len, &f->err),
		DR_ERR_NOT_FOUND);
	assert_null(data);
	/* A link as the object itself is not followed either. */
	snprintf(target, sizeof(target), "%s/secret", outside);
	assert_int_equal(symlink(target, path_in(f->root, "link")), 0);
	assert_int_equal(
		f->ops->get(f->state, "link", 100, &data, &len, &f->err),
		DR_ERR_NOT_FOUND);
}

static void test_bad_keys(void **state)
{
	fixture *f = *state;
	char long_key[600];
	char long_seg[300];
	const char *bad[] = {
		"../x",	       "/abs",	   "a//b", "a/../b", "",
		"a/",	       "..",	   ".",	   "./a",    "a/./b",
		".hidden",     "a/.tmp.x", "a b",  "a\\b",   "a?b",
		"caf\xc3\xa9", "a\nb",	   "x/..", long_key, long_seg,
	};
	char url[256];
	void *data = NULL;
	size_t len;
	uint64_t size;

	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	memset(long_seg, 's', sizeof(long_seg) - 1);
	long_seg[sizeof(long_seg) - 1] = '\0';

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(put_text(f, bad[i], "x"), DR_ERR_INVALID);
		assert_string_equal(f->err.code, "invalid_key");
		assert_int_equal(
			f->ops->get(f->state, bad[i], 10, &data, &len, &f->err),
			DR_ERR_INVALID);
		assert_int_equal(f->ops->remove(f->state, bad[i], &f->err),
				 DR_ERR_INVALID);
		assert_int_equal(f->ops->stat(f->state, bad[i], &size, &f->err),
				 DR_ERR_INVALID);
		assert_int_equal(
			f->ops->public_url(f->state, bad[i], url, sizeof(url)),
			DR_ERR_INVALID);
	}
	assert_int_equal(put_text(f, NULL, "x"), DR_ERR_INVALID);
	assert_int_equal(count_entries(f->root), 0);
	assert_int_equal(count_entries(f->tmp), 1); /* just the root */
}

static void test_good_keys(void **state)
{
	fixture *f = *state;
	char key[513];

	assert_int_equal(put_text(f, "A-Z_a.z-0.9", "x"), DR_OK);
	assert_int_equal(put_text(f, "a.b/c..d/e...", "x"), DR_OK);
	/* Exactly the longest key. */
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	for (size_t i = 200; i < sizeof(key) - 1; i += 200)
		key[i] = '/';
	assert_int_equal(put_text(f, key, "x"), DR_OK);
}

/* ------------------------------------------------------------------------
 * get, stat, remove, public_url
 */

static void test_get_roundtrip(void **state)
{
	fixture *f = *state;
	void *data = NULL;
	size_t len = 0;

	assert_int_equal(put_text(f, "g/h.txt", "round trip"), DR_OK);
	assert_int_equal(
		f->ops->get(f->state, "g/h.txt", 10, &data, &len, &f->err),
		DR_OK);
	assert_int_equal(len, 10);
	assert_memory_equal(data, "round trip", 10);
	free(data);
}

static void test_get_not_found(void **state)
{
	fixture *f = *state;
	void *data = (void *)1;
	size_t len = 1;

	assert_int_equal(
		f->ops->get(f->state, "nope.txt", 10, &data, &len, &f->err),
		DR_ERR_NOT_FOUND);
	assert_null(data);
	assert_int_equal(len, 0);
	assert_int_equal(f->ops->get(f->state, "no/such/dir.txt", 10, &data,
				     &len, &f->err),
			 DR_ERR_NOT_FOUND);
	/* A directory is not an object; a file is not a directory. */
	assert_int_equal(put_text(f, "d/f", "x"), DR_OK);
	assert_int_equal(f->ops->get(f->state, "d", 10, &data, &len, &f->err),
			 DR_ERR_NOT_FOUND);
	assert_int_equal(
		f->ops->get(f->state, "d/f/g", 10, &data, &len, &f->err),
		DR_ERR_NOT_FOUND);
}

static void test_get_too_large(void **state)
{
	fixture *f = *state;
	void *data = NULL;
	size_t len = 0;

	assert_int_equal(put_text(f, "big.txt", "0123456789"), DR_OK);
	assert_int_equal(
		f->ops->get(f->state, "big.txt", 9, &data, &len, &f->err),
		DR_ERR_TOO_LARGE);
	assert_null(data);
	assert_string_equal(f->err.code, "too_large");
	assert_int_equal(
		f->ops->get(f->state, "big.txt", 0, &data, &len, &f->err),
		DR_ERR_TOO_LARGE);
}

static void test_get_empty(void **state)
{
	fixture *f = *state;
	void *data = NULL;
	size_t len = 5;

	assert_int_equal(put_text(f, "e", ""), DR_OK);
	assert_int_equal(f->ops->get(f->state, "e", 0, &data, &len, &f->err),
			 DR_OK);
	assert_non_null(data);
	assert_int_equal(len, 0);
	free(data);
}

static void test_stat(void **state)
{
	fixture *f = *state;
	uint64_t size = 0;

	assert_int_equal(put_text(f, "s/t.txt", "12345"), DR_OK);
	assert_int_equal(f->ops->stat(f->state, "s/t.txt", &size, &f->err),
			 DR_OK);
	assert_int_equal(size, 5);
	assert_int_equal(f->ops->stat(f->state, "s/u.txt", &size, &f->err),
			 DR_ERR_NOT_FOUND);
	assert_int_equal(f->ops->stat(f->state, "s", &size, &f->err),
			 DR_ERR_NOT_FOUND);
}

/* open: the object's own bytes from offset 0, its size; refusals as
 * stat's (a missing object, a directory, a bad key). */
static void test_open(void **state)
{
	fixture *f = *state;
	uint64_t size = 0;
	char buf[16];
	int fd = -1;

	assert_non_null(f->ops->open);
	assert_int_equal(put_text(f, "files/f_1", "private!"), DR_OK);
	assert_int_equal(
		f->ops->open(f->state, "files/f_1", &fd, &size, &f->err),
		DR_OK);
	assert_true(fd >= 0);
	assert_int_equal(size, 8);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 8);
	assert_memory_equal(buf, "private!", 8);
	close(fd);
	fd = -1;
	assert_int_equal(
		f->ops->open(f->state, "files/f_2", &fd, &size, &f->err),
		DR_ERR_NOT_FOUND);
	assert_int_equal(fd, -1);
	assert_int_equal(f->ops->open(f->state, "files", &fd, &size, &f->err),
			 DR_ERR_NOT_FOUND);
	assert_int_equal(f->ops->open(f->state, "../x", &fd, &size, &f->err),
			 DR_ERR_INVALID);
	assert_int_equal(fd, -1);
}

static void test_remove(void **state)
{
	fixture *f = *state;
	uint64_t size;

	assert_int_equal(put_text(f, "r/m.txt", "x"), DR_OK);
	assert_int_equal(f->ops->remove(f->state, "r/m.txt", &f->err), DR_OK);
	assert_int_equal(f->ops->stat(f->state, "r/m.txt", &size, &f->err),
			 DR_ERR_NOT_FOUND);
	/* Absent object, absent directory, a file in the way: all DR_OK. */
	assert_int_equal(f->ops->remove(f->state, "r/m.txt", &f->err), DR_OK);
	assert_int_equal(f->ops->remove(f->state, "q/m.txt", &f->err), DR_OK);
	assert_int_equal(put_text(f, "file", "x"), DR_OK);
	assert_int_equal(f->ops->remove(f->state, "file/m.txt", &f->err),
			 DR_OK);
	/* A directory is not removed as an object. */
	assert_int_equal(f->ops->remove(f->state, "r", &f->err), DR_ERR_IO);
}

static void test_public_url(void **state)
{
	fixture *f = *state;
	const char *want = "https://cdn.example.com/media/ab/cd.webp";
	char url[256];
	char small[16];
	char exact[41];

	assert_int_equal(
		f->ops->public_url(f->state, "ab/cd.webp", url, sizeof(url)),
		DR_OK);
	assert_string_equal(url, want);

	assert_int_equal(strlen(want) + 1, sizeof(exact));
	assert_int_equal(f->ops->public_url(f->state, "ab/cd.webp", exact,
					    sizeof(exact)),
			 DR_OK);
	assert_string_equal(exact, want);
	assert_int_equal(f->ops->public_url(f->state, "ab/cd.webp", exact,
					    sizeof(exact) - 1),
			 DR_ERR_TOO_LARGE);
	assert_string_equal(exact, "");
	assert_int_equal(f->ops->public_url(f->state, "ab/cd.webp", small,
					    sizeof(small)),
			 DR_ERR_TOO_LARGE);
	assert_int_equal(f->ops->public_url(f->state, "ab/cd.webp", small, 0),
			 DR_ERR_TOO_LARGE);
}

static void test_public_url_trailing_slash(void **state)
{
	fixture *f = *state;
	char url[256];

	mock_host_set(f->inst, "base_url", "http://127.0.0.1:8080/media//");
	assert_int_equal(
		f->plugin->create(mock_host(), f->inst, &f->state, &f->err),
		DR_OK);
	assert_int_equal(
		f->ops->public_url(f->state, "x.png", url, sizeof(url)), DR_OK);
	assert_string_equal(url, "http://127.0.0.1:8080/media/x.png");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_descriptor),
		cmocka_unit_test_setup_teardown(test_create_makes_root,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_create_missing_root, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_create_missing_base_url,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_bad_modes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_create_root_is_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_root_replaced_by_file,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_modes_applied, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_put_memory, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_put_empty, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_put_fd, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_put_fd_short,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_put_no_source,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_put_nested, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_put_overwrite_atomic,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_put_over_directory,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_put_write_error_cleans_up,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_put_random_fails,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_put_temp_name_taken,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_put_symlink_escape,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_bad_keys, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_good_keys, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_get_roundtrip,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_get_not_found,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_get_too_large,
						setup_created, teardown),
		cmocka_unit_test_setup_teardown(test_get_empty, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_stat, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_open, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_remove, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_public_url, setup_created,
						teardown),
		cmocka_unit_test_setup_teardown(test_public_url_trailing_slash,
						setup, teardown),
	};

	return cmocka_run_group_tests_name("fs sink", tests, NULL, NULL);
}
