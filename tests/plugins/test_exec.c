/*
 * test_exec.c - the `exec` adapter against the mock host.
 *
 * Each test gets a scratch directory holding the work directory and a
 * small shell script standing in for the model; the script's first
 * argument picks what it does (dump its argv, fail, hang with a child,
 * leave files, print). The script is run by the plugin with execve: the
 * hostile inputs below reach it as argv elements, and a marker file shows
 * that nothing ran them.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "darkroom-plugin.h"
#include "mock_host.h"

const dr_plugin *dr_plugin_entry(void);

typedef struct fixture {
	const dr_plugin *plugin;
	dr_instance *inst;
	void *state;
	dr_error err;
	char dir[256];	   /* scratch */
	char workdir[300]; /* dir/work */
	char prog[300];	   /* dir/model.sh */
} fixture;

static const char model_script[] =
	"#!/bin/sh\n"
	"mode=$1; shift\n"
	"case $mode in\n"
	"argv) printf '%s\\0' \"$@\" > argv.bin ;;\n"
	"fail) echo 'line one' >&2; echo 'the last error line' >&2; exit 3 ;;\n"
	"hang) sleep 60 & echo $! > grandchild.pid; echo $$ > child.pid;"
	" wait ;;\n"
	"files) echo a > b.txt; echo b > a.txt; mkdir sub; echo c > sub/c;"
	" ln -s /etc/passwd link; ln -s a.txt link2 ;;\n"
	"many) for i in 1 2 3; do echo $i > f$i; done ;;\n"
	"say) printf 'hello\\nworld\\n' ;;\n"
	"env) env > env.txt ;;\n"
	"signal) kill -9 $$ ;;\n"
	"slow) sleep 2 ;;\n"
	"esac\n";

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void rm_rf(const char *path)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

/* Create the instance with `args` and extra key=value pairs. */
static dr_status make(fixture *f, const char *args, ...)
{
	va_list ap;
	const char *k;

	if (f->state) {
		f->plugin->destroy(f->state);
		f->state = NULL;
	}
	mock_instance_free(f->inst);
	f->inst = mock_instance_new("exec", f->plugin);
	mock_host_set(f->inst, "program", f->prog);
	mock_host_set(f->inst, "workdir", f->workdir);
	mock_host_set(f->inst, "args", args);
	va_start(ap, args);
	while ((k = va_arg(ap, const char *)) != NULL)
		mock_host_set(f->inst, k, va_arg(ap, const char *));
	va_end(ap);
	memset(&f->err, 0, sizeof(f->err));
	return f->plugin->create(mock_host(), f->inst, &f->state, &f->err);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/test_exec.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->workdir, sizeof(f->workdir), "%s/work", f->dir);
	snprintf(f->prog, sizeof(f->prog), "%s/model.sh", f->dir);
	write_file(f->prog, model_script, 0755);
	f->plugin = dr_plugin_entry();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	f->plugin->destroy(f->state);
	if (f->inst)
		assert_int_equal(mock_host_undeclared(f->inst), 0);
	mock_instance_free(f->inst);
	rm_rf(f->dir);
	free(f);
	return 0;
}

static void clear_prediction(dr_prediction *p)
{
	free(p->id);
	free(p->version);
	free(p->error);
	free(p->raw_json);
	free(p->completed_at);
	for (size_t i = 0; i < p->n_outputs; i++)
		free(p->outputs[i].value);
	free(p->outputs);
	memset(p, 0, sizeof(*p));
}

static dr_job_view job(const char *id, const char *input)
{
	dr_job_view v;

	memset(&v, 0, sizeof(v));
	v.id = id;
	v.model = "darkroom/offline";
	v.input_json = input;
	v.attempt = 1;
	return v;
}

static dr_status submit(fixture *f, const char *id, const char *input,
			dr_prediction *p)
{
	dr_job_view v = job(id, input);

	memset(p, 0, sizeof(*p));
	memset(&f->err, 0, sizeof(f->err));
	return f->plugin->adapter->submit(f->state, &v, p, &f->err);
}

/* The contents of a file (malloc'd), its length in *len. */
static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = calloc(1, 1 << 20);
	size_t n;

	assert_non_null(fp);
	assert_non_null(buf);
	n = fread(buf, 1, (1 << 20) - 1, fp);
	fclose(fp);
	if (len)
		*len = n;
	return buf;
}

static void test_descriptor(void **state)
{
	const dr_plugin *p = dr_plugin_entry();

	(void)state;
	assert_int_equal(p->abi_version, DR_PLUGIN_ABI_VERSION);
	assert_int_equal(p->size, sizeof(dr_plugin));
	assert_string_equal(p->name, "exec");
	assert_int_equal(p->kind, DR_PLUGIN_ADAPTER);
	assert_non_null(p->adapter->submit);
	assert_non_null(p->adapter->validate);
	assert_null(p->adapter->get);
	assert_null(p->adapter->download_hosts);
	p->destroy(NULL);
}

static void test_config_refused(void **state)
{
	fixture *f = *state;

	assert_int_equal(make(f, "{unclosed", NULL), DR_ERR_CONFIG);
	assert_int_equal(make(f, "a}b", NULL), DR_ERR_CONFIG);
	assert_int_equal(make(f, "{1abc}", NULL), DR_ERR_CONFIG);
	assert_int_equal(make(f, "x", "env", "not an entry", NULL),
			 DR_ERR_CONFIG);
	assert_int_equal(make(f, "x", "max_concurrent", "0", NULL),
			 DR_ERR_CONFIG);
	assert_int_equal(make(f, "x", "program", "relative/prog", NULL),
			 DR_ERR_CONFIG);
	assert_int_equal(make(f, "x", "program", "/nonexistent/prog", NULL),
			 DR_ERR_CONFIG);
	assert_int_equal(make(f, "argv {a} --n={b=7}", NULL), DR_OK);
}

/* Hostile values each arrive as exactly one argv element, unchanged. */
static void test_hostile_inputs_one_argument_each(void **state)
{
	fixture *f = *state;
	static const char *const expect[] = {
		"it's \"quoted\"",
		"a; touch MARK",
		"$(touch MARK) `touch MARK`",
		"line1\nline2\n",
		"../../etc/passwd",
		"x --option=1",
		"pre-$HOME-*-?-[a]-post",
		"42",
		"-3.5",
		"true",
		"unicode \xc3\xa9\xe2\x82\xac",
		"",
	};
	const char *input =
		"{\"q\": \"it's \\\"quoted\\\"\", \"s\": \"a; touch MARK\","
		" \"c\": \"$(touch MARK) `touch MARK`\","
		" \"n\": \"line1\\nline2\\n\", \"p\": \"../../etc/passwd\","
		" \"o\": \"x --option=1\", \"g\": \"pre-$HOME-*-?-[a]-post\","
		" \"i\": 42, \"d\": -3.5, \"b\": true,"
		" \"u\": \"unicode \\u00e9\\u20ac\", \"e\": \"\"}";
	dr_prediction p;
	char *buf;
	size_t len, off = 0, k = 0;

	assert_int_equal(make(f,
			      "argv {q} {s} {c} {n} {p} {o} {g} {i} --d={d} "
			      "{b} {u} {e}",
			      NULL),
			 DR_OK);
	assert_int_equal(submit(f, "j_hostile", input, &p), DR_OK);
	assert_int_equal(p.status, DR_PRED_SUCCEEDED);
	assert_string_equal(p.id, "exec-j_hostile-1");
	assert_int_equal(p.n_outputs, 1);
	assert_int_equal(p.outputs[0].kind, DR_OUTPUT_PATH);
	assert_int_equal(p.outputs[0].value[0], '/');
	assert_non_null(strstr(p.outputs[0].value, "/j_hostile-1/argv.bin"));
	buf = slurp(p.outputs[0].value, &len);
	while (off < len) {
		const char *arg = buf + off;

		assert_true(k < sizeof(expect) / sizeof(expect[0]));
		if (k == 8)
			assert_string_equal(arg, "--d=-3.5");
		else
			assert_string_equal(arg, expect[k]);
		off += strlen(arg) + 1;
		k++;
	}
	assert_int_equal(k, sizeof(expect) / sizeof(expect[0]));
	free(buf);
	/* Nothing ran the values: no MARK anywhere. */
	{
		char mark[400];

		snprintf(mark, sizeof(mark), "%s/j_hostile-1/MARK", f->workdir);
		assert_int_equal(access(mark, F_OK), -1);
		assert_int_equal(access("MARK", F_OK), -1);
	}
	clear_prediction(&p);
}

static void test_long_value_one_argument(void **state)
{
	fixture *f = *state;
	size_t n = 100000, len;
	char *input = malloc(n + 32), *buf;
	dr_prediction p;

	assert_non_null(input);
	memcpy(input, "{\"v\": \"", 7);
	memset(input + 7, 'x', n);
	memcpy(input + 7 + n, "\"}", 3);
	assert_int_equal(make(f, "argv {v}", NULL), DR_OK);
	assert_int_equal(submit(f, "j_long", input, &p), DR_OK);
	assert_int_equal(p.status, DR_PRED_SUCCEEDED);
	buf = slurp(p.outputs[0].value, &len);
	assert_int_equal(len, n + 1);
	assert_int_equal(strlen(buf), n);
	free(buf);
	clear_prediction(&p);
	/* Over what one argument can hold: refused. */
	input = realloc(input, 200000 + 32);
	assert_non_null(input);
	memcpy(input, "{\"v\": \"", 7);
	memset(input + 7, 'y', 200000);
	memcpy(input + 7 + 200000, "\"}", 3);
	assert_int_equal(submit(f, "j_long2", input, &p), DR_ERR_INVALID);
	assert_non_null(strstr(f->err.message, "input.v"));
	free(input);
}

static void test_refused_inputs(void **state)
{
	fixture *f = *state;
	dr_job_view v;
	dr_prediction p;

	assert_int_equal(make(f, "argv {a} --b={b=1} {c=dflt}", NULL), DR_OK);
	/* validate (intake) and submit refuse the same things. */
	v = job("j_1", "{\"a\": \"--rm\"}");
	assert_int_equal(f->plugin->adapter->validate(f->state, &v, &f->err),
			 DR_ERR_INVALID);
	assert_string_equal(f->err.message, "input.a: must not start with '-'");
	v = job("j_1", "{\"a\": -1}");
	assert_int_equal(f->plugin->adapter->validate(f->state, &v, &f->err),
			 DR_ERR_INVALID);
	v = job("j_1", "{\"b\": 2}");
	assert_int_equal(f->plugin->adapter->validate(f->state, &v, &f->err),
			 DR_ERR_INVALID);
	assert_string_equal(f->err.message, "input.a: required by the program");
	v = job("j_1", "{\"a\": null}");
	assert_int_equal(f->plugin->adapter->validate(f->state, &v, &f->err),
			 DR_ERR_INVALID);
	v = job("j_1", "{\"a\": {\"x\": 1}}");
	assert_int_equal(f->plugin->adapter->validate(f->state, &v, &f->err),
			 DR_ERR_INVALID);
	v = job("j_1", "{\"a\": \"x\\u0000y\"}");
	assert_int_equal(f->plugin->adapter->validate(f->state, &v, &f->err),
			 DR_ERR_INVALID);
	v = job("j_1", "[1]");
	assert_int_equal(f->plugin->adapter->validate(f->state, &v, &f->err),
			 DR_ERR_INVALID);
	/* A '-' after the template's own text is fine. */
	v = job("j_1", "{\"a\": \"ok\", \"b\": \"-5\"}");
	assert_int_equal(f->plugin->adapter->validate(f->state, &v, &f->err),
			 DR_OK);
	assert_int_equal(submit(f, "j_dash", "{\"a\": \"-x\"}", &p),
			 DR_ERR_INVALID);
	assert_null(p.id);
	/* A job id that is no file name is refused. */
	assert_int_equal(submit(f, "../evil", "{\"a\": \"x\"}", &p),
			 DR_ERR_INVALID);
}

static void test_defaults(void **state)
{
	fixture *f = *state;
	dr_prediction p;
	char *buf;
	size_t len;

	assert_int_equal(make(f, "argv {a=first} --b={b=7}", NULL), DR_OK);
	assert_int_equal(submit(f, "j_def", "{}", &p), DR_OK);
	buf = slurp(p.outputs[0].value, &len);
	assert_int_equal(len, strlen("first") + 1 + strlen("--b=7") + 1);
	assert_string_equal(buf, "first");
	assert_string_equal(buf + 6, "--b=7");
	free(buf);
	clear_prediction(&p);
}

/* A process state from /proc: 0 when gone, else the state letter. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fp = fopen(path, "r");
	if (!fp)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

static int read_pid(const char *path)
{
	char *s = slurp(path, NULL);
	int pid = (int)strtol(s, NULL, 10);

	free(s);
	return pid;
}

static void test_timeout_kills_group(void **state)
{
	fixture *f = *state;
	dr_prediction p;
	char path[400];
	pid_t child, grand;
	double t0 = (double)time(NULL);

	assert_int_equal(make(f, "hang", "timeout", "1s", NULL), DR_OK);
	assert_int_equal(submit(f, "j_hang", "{}", &p), DR_ERR_TOO_LARGE);
	assert_string_equal(f->err.code, "exec_timeout");
	assert_false(f->err.retryable);
	assert_null(p.id);
	assert_true((double)time(NULL) - t0 < 10);
	snprintf(path, sizeof(path), "%s/j_hang-1/child.pid", f->workdir);
	child = read_pid(path);
	snprintf(path, sizeof(path), "%s/j_hang-1/grandchild.pid", f->workdir);
	grand = read_pid(path);
	assert_true(child > 1 && grand > 1);
	/* Neither is alive (a zombie waiting for init is dead). */
	for (int i = 0; i < 50; i++) {
		char c = proc_state(grand);

		if (c == 0 || c == 'Z')
			break;
		usleep(20000);
	}
	assert_true(proc_state(child) == 0 || proc_state(child) == 'Z');
	assert_true(proc_state(grand) == 0 || proc_state(grand) == 'Z');
	assert_int_equal(kill(-child, 0) == 0 && proc_state(grand) != 'Z' &&
				 proc_state(grand) != 0,
			 0);
}

static void test_nonzero_exit_fails(void **state)
{
	fixture *f = *state;
	dr_prediction p;

	assert_int_equal(make(f, "fail", NULL), DR_OK);
	assert_int_equal(submit(f, "j_fail", "{}", &p), DR_OK);
	assert_int_equal(p.status, DR_PRED_FAILED);
	assert_string_equal(p.id, "exec-j_fail-1");
	assert_non_null(p.error);
	assert_string_equal(p.error,
			    "exit status 3: line one\nthe last error line");
	assert_int_equal(p.n_outputs, 0);
	clear_prediction(&p);

	assert_int_equal(make(f, "signal", NULL), DR_OK);
	assert_int_equal(submit(f, "j_sig", "{}", &p), DR_OK);
	assert_int_equal(p.status, DR_PRED_FAILED);
	assert_string_equal(p.error, "killed by signal 9");
	clear_prediction(&p);
}

static void test_outputs_are_regular_files(void **state)
{
	fixture *f = *state;
	dr_prediction p;
	char want[400];

	assert_int_equal(make(f, "files", NULL), DR_OK);
	assert_int_equal(submit(f, "j_files", "{}", &p), DR_OK);
	assert_int_equal(p.status, DR_PRED_SUCCEEDED);
	assert_int_equal(p.n_outputs, 2);
	snprintf(want, sizeof(want), "%s/j_files-1/a.txt", f->workdir);
	assert_string_equal(p.outputs[0].value, want);
	snprintf(want, sizeof(want), "%s/j_files-1/b.txt", f->workdir);
	assert_string_equal(p.outputs[1].value, want);
	assert_int_equal(p.outputs[0].kind, DR_OUTPUT_PATH);
	clear_prediction(&p);

	assert_int_equal(make(f, "many", "max_output_files", "2", NULL), DR_OK);
	assert_int_equal(submit(f, "j_many", "{}", &p), DR_ERR_TOO_LARGE);
	assert_string_equal(f->err.code, "too_many_outputs");
	assert_int_equal(p.n_outputs, 0);
}

/* The adapter declares its work folder, and every file it hands over
 * lies in the job's own folder there: the core reads nothing else. */
static void test_declares_local_root(void **state)
{
	fixture *f = *state;
	dr_prediction p;
	char job_dir[400];

	assert_int_equal(make(f, "files", NULL), DR_OK);
	assert_non_null(mock_host_local_root(f->inst));
	assert_string_equal(mock_host_local_root(f->inst), f->workdir);
	assert_int_equal(submit(f, "j_root", "{}", &p), DR_OK);
	assert_int_equal(p.n_outputs, 2);
	snprintf(job_dir, sizeof(job_dir), "%s/j_root-", f->workdir);
	for (size_t i = 0; i < p.n_outputs; i++) {
		assert_int_equal(p.outputs[i].kind, DR_OUTPUT_PATH);
		assert_memory_equal(p.outputs[i].value, job_dir,
				    strlen(job_dir));
	}
	clear_prediction(&p);
}

/* A host table of this ABI version that ends before the memory services
 * (and so before local_root): no darkroom hands one out, and the adapter
 * refuses it with a message instead of calling through NULL. One that ends
 * after them, without the services exec does not use (kv, http), works. */
static void test_older_core(void **state)
{
	fixture *f = *state;
	const dr_host *old = mock_host_sized(offsetof(dr_host, local_root));
	dr_prediction p;

	assert_false(DR_HOST_HAS(old, mem_alloc));
	f->inst = mock_instance_new("exec", f->plugin);
	mock_host_set(f->inst, "program", f->prog);
	mock_host_set(f->inst, "workdir", f->workdir);
	mock_host_set(f->inst, "args", "files");
	assert_int_equal(f->plugin->create(old, f->inst, &f->state, &f->err),
			 DR_ERR_CONFIG);
	assert_null(f->state);
	assert_string_equal(f->err.code, "bad_host");
	assert_non_null(strstr(f->err.message, "lacks the memory services"));

	old = mock_host_sized(offsetof(dr_host, kv_get));
	assert_true(DR_HOST_HAS(old, mem_free));
	assert_false(DR_HOST_HAS(old, kv_get));
	assert_int_equal(f->plugin->create(old, f->inst, &f->state, &f->err),
			 DR_OK);
	assert_string_equal(mock_host_local_root(f->inst), f->workdir);
	assert_int_equal(submit(f, "j_old", "{}", &p), DR_OK);
	assert_int_equal(p.status, DR_PRED_SUCCEEDED);
	assert_int_equal(p.n_outputs, 2);
	clear_prediction(&p);
}

static void test_stdout_text(void **state)
{
	fixture *f = *state;
	dr_prediction p;

	assert_int_equal(make(f, "say", "stdout_text", "true", NULL), DR_OK);
	assert_int_equal(submit(f, "j_say", "{}", &p), DR_OK);
	assert_int_equal(p.status, DR_PRED_SUCCEEDED);
	assert_int_equal(p.n_outputs, 1);
	assert_int_equal(p.outputs[0].kind, DR_OUTPUT_TEXT);
	assert_string_equal(p.outputs[0].value, "hello\nworld\n");
	clear_prediction(&p);

	/* Off by default: stdout is dropped. */
	assert_int_equal(make(f, "say", NULL), DR_OK);
	assert_int_equal(submit(f, "j_say2", "{}", &p), DR_OK);
	assert_int_equal(p.n_outputs, 0);
	clear_prediction(&p);
}

static void test_minimal_environment(void **state)
{
	fixture *f = *state;
	dr_prediction p;
	char *env, home[400];

	setenv("DARKROOM_TEST_SECRET", "leak", 1);
	assert_int_equal(make(f, "env", "env", "FOO=bar baz, X=1", NULL),
			 DR_OK);
	assert_int_equal(submit(f, "j_env", "{}", &p), DR_OK);
	assert_int_equal(p.n_outputs, 1);
	env = slurp(p.outputs[0].value, NULL);
	assert_null(strstr(env, "DARKROOM_TEST_SECRET"));
	assert_non_null(strstr(env, "FOO=bar baz\n"));
	assert_non_null(strstr(env, "X=1\n"));
	assert_non_null(strstr(env, "PATH=/usr/bin:/bin\n"));
	assert_non_null(strstr(env, "LANG=C.UTF-8\n"));
	snprintf(home, sizeof(home), "HOME=%s\n", f->workdir);
	assert_non_null(strstr(env, home));
	free(env);
	clear_prediction(&p);
	unsetenv("DARKROOM_TEST_SECRET");
}

/* Two submits at once with max_concurrent = 1: the second waits. */
static void test_concurrency_slots(void **state)
{
	fixture *f = *state;
	dr_prediction p;
	char slot[400];
	pid_t pid;
	int status, busy = 0;

	assert_int_equal(make(f, "slow", "max_concurrent", "1", NULL), DR_OK);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dr_prediction q;
		dr_job_view v = job("j_first", "{}");
		dr_error e;
		dr_status st;

		memset(&e, 0, sizeof(e));
		st = f->plugin->adapter->submit(f->state, &v, &q, &e);
		_exit(st == DR_OK && q.status == DR_PRED_SUCCEEDED ? 0 : 1);
	}
	/* Wait until the first holds the slot: its job directory is made
	 * after the slot is taken. */
	snprintf(slot, sizeof(slot), "%s/j_first-1", f->workdir);
	for (int i = 0; i < 300 && !busy; i++) {
		busy = access(slot, F_OK) == 0;
		if (!busy)
			usleep(10000);
	}
	assert_true(busy);
	assert_int_equal(submit(f, "j_second", "{}", &p), DR_ERR_RATE_LIMITED);
	assert_true(f->err.retry_after >= 1);
	assert_null(p.id);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Free again. */
	assert_int_equal(make(f, "say", "max_concurrent", "1", NULL), DR_OK);
	assert_int_equal(submit(f, "j_third", "{}", &p), DR_OK);
	clear_prediction(&p);
}

/* Job directories past `keep` go at the next submit. */
static void test_old_dirs_removed(void **state)
{
	fixture *f = *state;
	dr_prediction p;
	char old[400];

	assert_int_equal(make(f, "say", "keep", "0s", NULL), DR_OK);
	assert_int_equal(submit(f, "j_a", "{}", &p), DR_OK);
	clear_prediction(&p);
	snprintf(old, sizeof(old), "%s/j_a-1", f->workdir);
	assert_int_equal(access(old, F_OK), 0);
	sleep(2);
	assert_int_equal(submit(f, "j_b", "{}", &p), DR_OK);
	clear_prediction(&p);
	assert_int_equal(access(old, F_OK), -1);
}

/* What the adapter hands the core (its state, the prediction's id, error,
 * outputs array and every value) comes from the host's allocator. */
static void test_host_allocator(void **state)
{
	fixture *f = *state;
	dr_prediction p;

	mock_host_mem_forget();
	assert_int_equal(make(f, "files", NULL), DR_OK);
	assert_true(mock_host_mem_owns(f->state));
	assert_int_equal(submit(f, "j_mem", "{}", &p), DR_OK);
	assert_int_equal(p.n_outputs, 2);
	assert_true(mock_host_mem_owns(p.id));
	assert_true(mock_host_mem_owns(p.outputs));
	for (size_t i = 0; i < p.n_outputs; i++)
		assert_true(mock_host_mem_owns(p.outputs[i].value));
	clear_prediction(&p);

	mock_host_mem_forget();
	assert_int_equal(make(f, "say", "stdout_text", "true", NULL), DR_OK);
	assert_int_equal(submit(f, "j_mem2", "{}", &p), DR_OK);
	assert_int_equal(p.n_outputs, 1);
	assert_true(mock_host_mem_owns(p.outputs[0].value));
	clear_prediction(&p);

	mock_host_mem_forget();
	assert_int_equal(make(f, "fail", NULL), DR_OK);
	assert_int_equal(submit(f, "j_mem3", "{}", &p), DR_OK);
	assert_true(mock_host_mem_owns(p.error));
	clear_prediction(&p);
	mock_host_mem_forget();
}

/* Too many template words is a configuration error, named as such. */
static void test_too_many_words(void **state)
{
	fixture *f = *state;
	char args[2 * 257 + 1];

	for (int i = 0; i < 257; i++)
		memcpy(args + 2 * i, "x ", 2);
	args[2 * 257] = '\0';
	assert_int_equal(make(f, args, NULL), DR_ERR_CONFIG);
	assert_string_equal(f->err.message, "args: more than 256 words");
	args[2 * 256] = '\0'; /* 256 words: fine */
	assert_int_equal(make(f, args, NULL), DR_OK);
}

static void test_cancel(void **state)
{
	fixture *f = *state;
	dr_job_view v = job("j_c", "{}");

	assert_int_equal(make(f, "say", NULL), DR_OK);
	assert_int_equal(f->plugin->adapter->cancel(f->state, &v, &f->err),
			 DR_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_descriptor),
		cmocka_unit_test_setup_teardown(test_config_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_hostile_inputs_one_argument_each, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_value_one_argument,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_inputs, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_kills_group, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_nonzero_exit_fails, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_outputs_are_regular_files,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_declares_local_root, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_older_core, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stdout_text, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_minimal_environment, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrency_slots, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_old_dirs_removed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_allocator, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_too_many_words, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
