/*
 * exec.c - the `exec` adapter: a model that is a program on this machine.
 *
 * The configuration names the program and an argument template; a job's
 * input fills the template and the program runs with fork + execve, never
 * through a shell, so no input value can inject a command, a redirection or
 * an extra argument:
 *
 *   [adapter "exec"]
 *   plugin = exec
 *   program = offline-model.sh
 *   args = --prompt {prompt} --seed {seed=0} --width {width=768} --out .
 *
 * The template. Words are separated by spaces. A word may contain
 * placeholders `{name}` or `{name=default}` (name: [A-Za-z_][A-Za-z0-9_]*,
 * the default runs to the closing brace); a word cannot otherwise hold a
 * brace. A placeholder takes input[name]: a string as it is, a number or
 * boolean as its JSON text; a missing or null field takes the default, and
 * without one the job is refused ("input.NAME: required by the program").
 * Substitution happens inside a word and never splits it: a value with
 * spaces, quotes, `;`, `$(...)` or newlines is one argv element. Objects,
 * arrays and values holding NUL are refused. Because programs parse
 * options, a value may not make a word start with '-' unless the template
 * word itself starts with '-' ("--seed={seed}" accepts "-1"; a bare
 * "{seed}" refuses it): "input.NAME: must not start with '-'". These checks
 * run at intake (validate), so a bad job gets 422 and never runs.
 *
 * Running. submit() is synchronous: it runs the program to its end and
 * returns a final prediction, "exec-<job id>-<attempt>":
 *   - a fresh directory <workdir>/<job id>-<attempt> (0700) is the cwd;
 *     every regular file the program leaves there (not symlinks, not
 *     directories; sorted by name; at most max_output_files) becomes a
 *     DR_OUTPUT_PATH output, and with stdout_text its standard output
 *     (valid UTF-8, at most 1 MiB) becomes a text output after them.
 *     create() declares the workdir with host->local_root, so the core
 *     reads those files only from the job's own directory, without
 *     following a symlink: a file the program (or something it left
 *     behind) swaps for a symlink after the listing is refused, not
 *     followed;
 *   - its own process group, stdin /dev/null, stdout and stderr captured
 *     (stdout up to 1 MiB, the last 4 KiB of stderr), no core dumps, every
 *     other descriptor closed, a minimal environment (PATH=/usr/bin:/bin,
 *     HOME=<workdir>, LANG=C.UTF-8, then the `env` list);
 *   - when it exits, the whole group is killed (stragglers left in the
 *     background die with it); after `timeout` the group is killed and the
 *     job fails with code exec_timeout;
 *   - exit status 0: succeeded; non-zero: failed, "exit status N: <the last
 *     stderr lines>"; a signal: failed, "killed by signal N".
 * Over-limit results (timeout, too many files, stdout too large or not
 * text) are DR_ERR_TOO_LARGE, not retryable, so the core fails the job at
 * once with the code given.
 *
 * Concurrency: at most max_concurrent programs run on this machine across
 * all worker processes, counted by flock() on <workdir>/.slot-N; when all
 * are taken submit answers DR_ERR_RATE_LIMITED, retry_after 1 s.
 *
 * Clean-up: the core reads the files after submit returns (the persist
 * step), and tells the adapter nothing when it is done, so job directories
 * are kept and each submit removes those older than `keep` (1 h).
 *
 * The core holds the job's lease while submit runs: keep `timeout` below
 * the worker's lease.
 *
 * get() is absent: after submit the prediction is final. cancel() has
 * nothing to stop (the program runs inside submit) and succeeds.
 *
 * The plugin uses only the host table: no core symbol. Memory comes from
 * the host's allocator (host->mem_*), which never returns NULL (out of
 * memory aborts the process), so there are no out-of-memory paths here;
 * only json-c allocates on its own. The forked child (child_exec) is the
 * exception: it calls no host service at all, see there.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "darkroom-plugin.h"

#define EXEC_ID_MAX	 64
#define EXEC_ID_PREFIX	 "exec-"
#define EXEC_STDOUT_MAX	 (1024 * 1024)	  /* captured standard output */
#define EXEC_STDERR_KEEP 4096		  /* tail of standard error kept */
#define EXEC_ERROR_MAX	 500		  /* stderr tail in the job error */
#define EXEC_WORD_MAX	 (128 * 1024 - 1) /* Linux MAX_ARG_STRLEN - NUL */
#define EXEC_ARGV_MAX	 (1024 * 1024)	  /* all arguments together */
#define EXEC_WORDS_MAX	 256		  /* template words */
#define EXEC_ENV_MAX	 64		  /* `env` entries */
#define EXEC_SLOTS_MAX	 256		  /* max_concurrent */
#define EXEC_FILES_MAX	 1024		  /* max_output_files */
#define EXEC_TREE_DEPTH	 16		  /* clean-up recursion */
#define EXEC_EXIT_LINGER 0.2		  /* s to drain pipes after exit */

typedef struct exec_adapter {
	const dr_host *host;
	const dr_instance *inst;
	const char *program;
	const char *workdir;
	char **words; /* the template, split */
	size_t n_words;
	char **env; /* NAME=VALUE, NULL-terminated, fixed ones included */
	double timeout;
	double keep;
	int max_concurrent;
	int max_files;
	int stdout_text;
} exec_adapter;

static const dr_config_key exec_keys[] = {
	{ "program", DR_CFG_PATH, NULL, NULL, DR_CFG_REQUIRED,
	  "the program to run (absolute, or relative to the config file)" },
	{ "args", DR_CFG_STRING, "", NULL, 0,
	  "argument template: words with {name} or {name=default} taken "
	  "from the job's input; never split, never run by a shell" },
	{ "workdir", DR_CFG_PATH, "/tmp/darkroom-exec", NULL, 0,
	  "directory of the per-job directories and the slot locks" },
	{ "timeout", DR_CFG_DURATION, "300s", NULL, 0,
	  "the program's whole process group is killed after this" },
	{ "max_concurrent", DR_CFG_INT, "1", NULL, 0,
	  "programs running at once on this machine (1..256)" },
	{ "stdout_text", DR_CFG_BOOL, "false", NULL, 0,
	  "standard output becomes a text output" },
	{ "max_output_files", DR_CFG_INT, "16", NULL, 0,
	  "most files a run may leave (more fails the job)" },
	{ "env", DR_CFG_LIST, NULL, NULL, 0,
	  "NAME=VALUE entries added to the program's environment" },
	{ "keep", DR_CFG_DURATION, "1h", NULL, 0,
	  "job directories older than this are removed at the next submit" },
	{ NULL, 0, NULL, NULL, 0, NULL },
};

/* ------------------------------------------------------------------------
 * Small helpers
 */

static void free_strv(const dr_host *host, char **v)
{
	if (!v)
		return;
	for (size_t i = 0; v[i]; i++)
		host->mem_free(v[i]);
	host->mem_free(v);
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int is_name_start(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(int c)
{
	return is_name_start(c) || (c >= '0' && c <= '9');
}

/* A growable byte buffer with a hard cap. */
typedef struct exec_buf {
	const dr_host *host; /* its allocator */
	char *data;
	size_t len, cap, max;
	int over; /* something did not fit under max */
} exec_buf;

static int buf_add(exec_buf *b, const char *s, size_t n)
{
	if (b->len + n > b->max) {
		b->over = 1;
		return -1;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *d;

		while (cap < b->len + n + 1)
			cap *= 2;
		d = b->host->mem_realloc(b->data, cap);
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

/* ------------------------------------------------------------------------
 * The template
 */

/* Check one template word; a message into msg when it is malformed. */
static int word_check(const char *w, char *msg, size_t msgsz)
{
	for (const char *p = w; *p; p++) {
		if (*p == '}') {
			snprintf(msg, msgsz, "'}' without '{' in \"%.60s\"", w);
			return -1;
		}
		if (*p != '{')
			continue;
		p++;
		if (!is_name_start((unsigned char)*p)) {
			snprintf(msg, msgsz,
				 "'{' must start a {name} in \"%.60s\"", w);
			return -1;
		}
		while (is_name_char((unsigned char)*p))
			p++;
		if (*p == '=')
			while (*p && *p != '}' && *p != '{')
				p++;
		if (*p != '}') {
			snprintf(msg, msgsz, "unclosed {name} in \"%.60s\"", w);
			return -1;
		}
	}
	return 0;
}

/*
 * Fill template word `w` from `input` (a JSON object or NULL) into a new
 * string at *out (host->mem_alloc'd). DR_OK or DR_ERR_INVALID naming the
 * field.
 */
static dr_status word_fill(exec_adapter *a, const char *w, json_object *input,
			   char **out, dr_error *err)
{
	exec_buf b = { a->host, NULL, 0, 0, EXEC_WORD_MAX, 0 };
	const char *p = w;
	int rc = 0;

	*out = NULL;
	while (*p && rc == 0) {
		const char *open = strchr(p, '{');
		const char *name, *def = NULL, *val = NULL;
		size_t name_len, def_len = 0, val_len = 0;
		char field[80];
		json_object *v = NULL;

		if (!open) {
			rc = buf_add(&b, p, strlen(p));
			break;
		}
		if (open > p)
			rc = buf_add(&b, p, (size_t)(open - p));
		name = open + 1;
		for (p = name; is_name_char((unsigned char)*p); p++)
			;
		name_len = (size_t)(p - name);
		if (*p == '=') {
			def = ++p;
			while (*p != '}')
				p++;
			def_len = (size_t)(p - def);
		}
		p++; /* the '}' (checked at create) */
		snprintf(field, sizeof(field), "%.*s", (int)name_len, name);
		if (input && json_object_object_get_ex(input, field, &v) && v) {
			switch (json_object_get_type(v)) {
			case json_type_string:
				val = json_object_get_string(v);
				val_len = (size_t)json_object_get_string_len(v);
				if (memchr(val, '\0', val_len)) {
					a->host->mem_free(b.data);
					return a->host->fail(
						err, DR_ERR_INVALID,
						"invalid_input",
						"input.%s: must not contain "
						"NUL",
						field);
				}
				break;
			case json_type_int:
			case json_type_double:
			case json_type_boolean:
				val = json_object_to_json_string_ext(
					v, JSON_C_TO_STRING_PLAIN);
				val_len = strlen(val);
				break;
			default:
				a->host->mem_free(b.data);
				return a->host->fail(
					err, DR_ERR_INVALID, "invalid_input",
					"input.%s: must be a string, number "
					"or boolean",
					field);
			}
		} else if (def) {
			val = def;
			val_len = def_len;
		} else {
			a->host->mem_free(b.data);
			return a->host->fail(
				err, DR_ERR_INVALID, "invalid_input",
				"input.%s: required by the program", field);
		}
		/* Programs parse options: a value must not make a word
		 * start with '-' (the template word's own '-' is fine). */
		if (b.len == 0 && val_len > 0 && val[0] == '-') {
			a->host->mem_free(b.data);
			return a->host->fail(
				err, DR_ERR_INVALID, "invalid_input",
				"input.%s: must not start with '-'", field);
		}
		if (rc == 0)
			rc = buf_add(&b, val, val_len);
		if (b.over) {
			a->host->mem_free(b.data);
			return a->host->fail(err, DR_ERR_INVALID,
					     "invalid_input",
					     "input.%s: too long for a program "
					     "argument (at most %d bytes)",
					     field, EXEC_WORD_MAX);
		}
	}
	if (rc == 0 && !b.data)
		b.data = a->host->mem_strdup(""); /* an empty argument */
	if (rc != 0) {
		a->host->mem_free(b.data);
		return a->host->fail(err, DR_ERR_INVALID, "invalid_input",
				     "an argument is over %d bytes",
				     EXEC_WORD_MAX);
	}
	*out = b.data;
	return DR_OK;
}

/* Parse the job's input: a JSON object (NULL input means {}). */
static dr_status parse_input(exec_adapter *a, const dr_job_view *job,
			     json_object **out, dr_error *err)
{
	json_tokener *tok;
	json_object *o;

	*out = NULL;
	if (!job->input_json || !job->input_json[0])
		return DR_OK;
	tok = json_tokener_new_ex(64);
	if (!tok)
		return a->host->fail(err, DR_ERR_NOMEM, "out_of_memory",
				     "out of memory");
	o = json_tokener_parse_ex(tok, job->input_json,
				  (int)strlen(job->input_json));
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		json_tokener_free(tok);
		return a->host->fail(err, DR_ERR_INVALID, "invalid_input",
				     "input: must be a JSON object");
	}
	json_tokener_free(tok);
	*out = o;
	return DR_OK;
}

/* The program's argv (NULL-terminated, host->mem_alloc'd) for this job. */
static dr_status build_argv(exec_adapter *a, const dr_job_view *job,
			    char ***argv_out, dr_error *err)
{
	json_object *input = NULL;
	char **argv;
	size_t total = 0;
	dr_status st;

	*argv_out = NULL;
	st = parse_input(a, job, &input, err);
	if (st != DR_OK)
		return st;
	argv = a->host->mem_calloc(a->n_words + 2, sizeof(*argv));
	argv[0] = a->host->mem_strdup(a->program);
	total = strlen(argv[0]) + 1;
	for (size_t i = 0; i < a->n_words && st == DR_OK; i++) {
		st = word_fill(a, a->words[i], input, &argv[i + 1], err);
		if (st == DR_OK) {
			total += strlen(argv[i + 1]) + 1;
			if (total > EXEC_ARGV_MAX)
				st = a->host->fail(err, DR_ERR_INVALID,
						   "invalid_input",
						   "input: the program's "
						   "arguments would be over "
						   "%d bytes",
						   EXEC_ARGV_MAX);
		}
	}
	json_object_put(input);
	if (st != DR_OK) {
		free_strv(a->host, argv);
		return st;
	}
	*argv_out = argv;
	return DR_OK;
}

/* ------------------------------------------------------------------------
 * Instance
 */

static void exec_destroy(void *state)
{
	exec_adapter *a = state;

	if (!a)
		return;
	free_strv(a->host, a->words);
	free_strv(a->host, a->env);
	a->host->mem_free(a);
}

/* Split `s` at spaces (and tabs) into a NULL-terminated vector; NULL when
 * it has more than EXEC_WORDS_MAX words. */
static char **split_words(const dr_host *host, const char *s, size_t *n_out)
{
	char **v = host->mem_calloc(EXEC_WORDS_MAX + 1, sizeof(*v));
	size_t n = 0;

	while (s && *s) {
		size_t len;

		while (*s == ' ' || *s == '\t')
			s++;
		len = strcspn(s, " \t");
		if (!len)
			break;
		if (n == EXEC_WORDS_MAX) {
			free_strv(host, v);
			return NULL;
		}
		v[n] = host->mem_strndup(s, len);
		n++;
		s += len;
	}
	*n_out = n;
	return v;
}

/* Append "NAME=VALUE" to env unless an entry of that NAME is there. */
static void env_add(const dr_host *host, char **env, size_t *n,
		    const char *entry, size_t len)
{
	size_t name_len = strcspn(entry, "=");

	for (size_t i = 0; i < *n; i++)
		if (strncmp(env[i], entry, name_len + 1) == 0)
			return;
	env[*n] = host->mem_strndup(entry, len);
	(*n)++;
}

/* The environment: the `env` list first (it wins), then the fixed ones. */
static dr_status build_env(exec_adapter *a, dr_error *err)
{
	const char *list = a->host->config_get(a->inst, "env");
	char home[PATH_MAX + 8];
	const char *fixed[3];
	size_t n = 0;

	a->env = a->host->mem_calloc(EXEC_ENV_MAX + 4, sizeof(*a->env));
	while (list && *list) {
		const char *e;
		size_t len;

		while (*list == ' ' || *list == ',')
			list++;
		len = strcspn(list, ",");
		while (len && list[len - 1] == ' ')
			len--;
		if (!len)
			break;
		e = list;
		list += len;
		if (!is_name_start((unsigned char)e[0]))
			goto bad;
		for (size_t i = 1; i < len && e[i] != '='; i++)
			if (!is_name_char((unsigned char)e[i]))
				goto bad;
		if (!memchr(e, '=', len))
			goto bad;
		if (n == EXEC_ENV_MAX)
			return a->host->fail(err, DR_ERR_CONFIG, "bad_config",
					     "env: more than %d entries",
					     EXEC_ENV_MAX);
		env_add(a->host, a->env, &n, e, len);
		continue;
	bad:
		return a->host->fail(err, DR_ERR_CONFIG, "bad_config",
				     "env: \"%.*s\" is not NAME=VALUE",
				     (int)(len > 60 ? 60 : len), e);
	}
	snprintf(home, sizeof(home), "HOME=%s", a->workdir);
	fixed[0] = "PATH=/usr/bin:/bin";
	fixed[1] = home;
	fixed[2] = "LANG=C.UTF-8";
	for (size_t i = 0; i < 3; i++)
		env_add(a->host, a->env, &n, fixed[i], strlen(fixed[i]));
	return DR_OK;
}

/* Make the work directory (and its parents) when missing, and refuse one
 * that others could write into. */
static dr_status prepare_workdir(exec_adapter *a, dr_error *err)
{
	char path[PATH_MAX];
	struct stat sb;

	if (snprintf(path, sizeof(path), "%s", a->workdir) >= (int)sizeof(path))
		return a->host->fail(err, DR_ERR_CONFIG, "bad_config",
				     "workdir: path too long");
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			return a->host->fail(err, DR_ERR_CONFIG, "bad_config",
					     "workdir: cannot create %s: %s",
					     path, strerror(errno));
		*p = '/';
	}
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return a->host->fail(err, DR_ERR_CONFIG, "bad_config",
				     "workdir: cannot create %s: %s", path,
				     strerror(errno));
	if (lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
		return a->host->fail(err, DR_ERR_CONFIG, "bad_config",
				     "workdir: %s is not a directory", path);
	if (sb.st_uid != geteuid() || (sb.st_mode & 022))
		return a->host->fail(err, DR_ERR_CONFIG, "bad_config",
				     "workdir: %s must be ours and writable "
				     "by nobody else",
				     path);
	return DR_OK;
}

static dr_status exec_create(const dr_host *host, const dr_instance *inst,
			     void **state, dr_error *err)
{
	exec_adapter *a;
	const char *args;
	char msg[160];
	int64_t n;
	dr_status st;

	*state = NULL;
	/* Every core of this ABI version hands over the memory services (and
	 * local_root before them); a table that ends earlier is not one
	 * darkroom makes, refused rather than called through NULL. */
	if (!DR_HOST_HAS(host, mem_free))
		return host->fail(err, DR_ERR_CONFIG, "bad_host",
				  "the host table (%u bytes) lacks the memory "
				  "services; update darkroom",
				  (unsigned)host->size);
	a = host->mem_calloc(1, sizeof(*a));
	a->host = host;
	a->inst = inst;
	a->program = host->config_get(inst, "program");
	a->workdir = host->config_get(inst, "workdir");
	a->timeout = host->config_seconds(inst, "timeout");
	a->keep = host->config_seconds(inst, "keep");
	a->stdout_text = host->config_bool(inst, "stdout_text");
	st = DR_ERR_CONFIG;
	if (!a->program || a->program[0] != '/') {
		host->fail(err, st, "bad_config",
			   "program: an absolute path is required");
		goto fail;
	}
	if (access(a->program, X_OK) != 0) {
		host->fail(err, st, "bad_config",
			   "program: %s is not executable: %s", a->program,
			   strerror(errno));
		goto fail;
	}
	if (!a->workdir || a->workdir[0] != '/') {
		host->fail(err, st, "bad_config",
			   "workdir: an absolute path is required");
		goto fail;
	}
	if (a->timeout <= 0) {
		host->fail(err, st, "bad_config", "timeout: must be > 0");
		goto fail;
	}
	n = host->config_int(inst, "max_concurrent");
	if (n < 1 || n > EXEC_SLOTS_MAX) {
		host->fail(err, st, "bad_config",
			   "max_concurrent: must be 1..%d", EXEC_SLOTS_MAX);
		goto fail;
	}
	a->max_concurrent = (int)n;
	n = host->config_int(inst, "max_output_files");
	if (n < 1 || n > EXEC_FILES_MAX) {
		host->fail(err, st, "bad_config",
			   "max_output_files: must be 1..%d", EXEC_FILES_MAX);
		goto fail;
	}
	a->max_files = (int)n;
	args = host->config_get(inst, "args");
	a->words = split_words(host, args, &a->n_words);
	if (!a->words) {
		host->fail(err, st, "bad_config", "args: more than %d words",
			   EXEC_WORDS_MAX);
		goto fail;
	}
	for (size_t i = 0; i < a->n_words; i++) {
		if (word_check(a->words[i], msg, sizeof(msg)) != 0) {
			host->fail(err, st, "bad_config", "args: %s", msg);
			goto fail;
		}
	}
	st = build_env(a, err);
	if (st == DR_OK)
		st = prepare_workdir(a, err);
	/* The core reads our outputs only from the job folders under the
	 * work folder. */
	if (st == DR_OK)
		st = host->local_root(inst, a->workdir, err);
	if (st != DR_OK)
		goto fail;
	*state = a;
	return DR_OK;
fail:
	exec_destroy(a);
	return st;
}

/* ------------------------------------------------------------------------
 * Job directories
 */

/* Remove `name` under directory fd `dfd`, recursively, never following a
 * symlink. Best effort. */
static void remove_tree(int dfd, const char *name, int depth)
{
	struct stat sb;
	DIR *d;
	int fd;
	struct dirent *de;

	if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
		return;
	if (!S_ISDIR(sb.st_mode)) {
		unlinkat(dfd, name, 0);
		return;
	}
	if (depth < EXEC_TREE_DEPTH) {
		fd = openat(dfd, name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			d = fdopendir(fd);
			if (!d) {
				close(fd);
			} else {
				while ((de = readdir(d)) != NULL) {
					if (strcmp(de->d_name, ".") == 0 ||
					    strcmp(de->d_name, "..") == 0)
						continue;
					remove_tree(fd, de->d_name, depth + 1);
				}
				closedir(d);
			}
		}
	}
	unlinkat(dfd, name, AT_REMOVEDIR);
}

/* Remove job directories older than `keep` (not the slot files). */
static void remove_old_dirs(exec_adapter *a)
{
	time_t limit = time(NULL) - (time_t)a->keep;
	struct dirent *de;
	struct stat sb;
	DIR *d;
	int fd;

	fd = open(a->workdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(sb.st_mode) && sb.st_mtime < limit) {
			remove_tree(fd, de->d_name, 0);
			a->host->log(a->inst, DR_LOG_DEBUG,
				     "event=exec.dir_removed dir=%s",
				     de->d_name);
		}
	}
	closedir(d);
}

/* A job id is a file name here: letters, digits, '_' and '-' only. */
static int job_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > 40 || id[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_name_char((unsigned char)id[i]) && id[i] != '-')
			return 0;
	return 1;
}

/* ------------------------------------------------------------------------
 * Slots
 */

/* Take a free slot: a locked descriptor, -1 when all are busy, -2 on a
 * file system error (errno set). */
static int slot_take(exec_adapter *a)
{
	char path[PATH_MAX];

	for (int i = 0; i < a->max_concurrent; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/.slot-%d", a->workdir, i);
		fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
			  0600);
		if (fd < 0)
			return -2;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return fd;
		close(fd);
	}
	return -1;
}

/* ------------------------------------------------------------------------
 * Running the program
 */

typedef struct exec_run {
	exec_buf out;
	char err_tail[EXEC_STDERR_KEEP];
	size_t err_len; /* bytes in err_tail */
	int status;	/* from waitpid */
	int timed_out;
	int exec_errno; /* execve failed in the child */
} exec_run;

static void keep_tail(exec_run *r, const char *s, size_t n)
{
	if (n >= EXEC_STDERR_KEEP) {
		memcpy(r->err_tail, s + n - EXEC_STDERR_KEEP, EXEC_STDERR_KEEP);
		r->err_len = EXEC_STDERR_KEEP;
		return;
	}
	if (r->err_len + n > EXEC_STDERR_KEEP) {
		size_t drop = r->err_len + n - EXEC_STDERR_KEEP;

		memmove(r->err_tail, r->err_tail + drop, r->err_len - drop);
		r->err_len -= drop;
	}
	memcpy(r->err_tail + r->err_len, s, n);
	r->err_len += n;
}

/*
 * The child after fork: only async-signal-safe calls until execve, and
 * plain libc, never the host table. The worker may have other threads
 * (libvips, libcurl's resolver), so the child inherits whatever locks they
 * held at fork time: a malloc (which host->mem_alloc is) could wait forever
 * on the allocator's lock, and host->log takes the logger's. Everything
 * the child needs (argv, envp, the directory) was allocated before fork.
 */
static _Noreturn void child_exec(const char *dir, char **argv, char **envp,
				 int out_fd, int err_fd, int report_fd)
{
	struct rlimit no_core = { 0, 0 };
	sigset_t none;
	int in_fd, e;

	setpgid(0, 0);
	/* Die with the worker even when it is killed outright. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL); /* ignored dispositions survive execve */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	setrlimit(RLIMIT_CORE, &no_core);
	in_fd = open("/dev/null", O_RDONLY);
	if (in_fd < 0 || dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 ||
	    dup2(err_fd, 2) < 0 || chdir(dir) != 0)
		goto fail;
	/* Nothing of the worker's (database, sockets) reaches the program;
	 * report_fd is close-on-exec. */
	if ((report_fd > 3 && close_range(3, (unsigned)report_fd - 1, 0)) ||
	    close_range((unsigned)report_fd + 1, ~0u, 0))
		for (int fd = 3; fd < 1024; fd++)
			if (fd != report_fd)
				close(fd);
	execve(argv[0], argv, envp);
fail:
	e = errno;
	if (write(report_fd, &e, sizeof(e)) < 0)
		_exit(127);
	_exit(127);
}

/* Read what is there on fd; 0 at EOF, 1 when more may come. */
static int drain(int fd, exec_run *r, int is_out)
{
	char buf[16384];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (n == 0)
		return 0;
	if (is_out)
		buf_add(&r->out, buf, (size_t)n); /* over max: r->out.over */
	else
		keep_tail(r, buf, (size_t)n);
	return 1;
}

/*
 * Run argv in `dir` until it exits or the timeout, then kill its whole
 * process group and reap it. DR_OK with r filled; DR_ERR_IO when it could
 * not be started.
 */
static dr_status run_program(exec_adapter *a, const char *dir, char **argv,
			     exec_run *r, dr_error *err)
{
	int out_p[2] = { -1, -1 }, err_p[2] = { -1, -1 }, rep_p[2] = { -1, -1 };
	double deadline = mono_now() + a->timeout, exited_at = 0;
	int open_out, open_err, exited = 0;
	pid_t pid;
	dr_status st = DR_OK;

	if (pipe2(out_p, O_CLOEXEC) != 0 || pipe2(err_p, O_CLOEXEC) != 0 ||
	    pipe2(rep_p, O_CLOEXEC) != 0) {
		st = a->host->fail(err, DR_ERR_IO, "io_error",
				   "cannot make pipes: %s", strerror(errno));
		err->retryable = 1;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		st = a->host->fail(err, DR_ERR_IO, "io_error",
				   "cannot fork: %s", strerror(errno));
		err->retryable = 1; /* nothing ran: try again later */
		goto out;
	}
	if (pid == 0)
		child_exec(dir, argv, a->env, out_p[1], err_p[1], rep_p[1]);
	setpgid(pid, pid); /* also here: no race with an early kill */
	close(out_p[1]);
	close(err_p[1]);
	close(rep_p[1]);
	out_p[1] = err_p[1] = rep_p[1] = -1;
	fcntl(out_p[0], F_SETFL, O_NONBLOCK);
	fcntl(err_p[0], F_SETFL, O_NONBLOCK);
	open_out = open_err = 1;

	/* Until the program exits and its pipes close (a straggler may keep
	 * them open: it gets EXEC_EXIT_LINGER), or the timeout. */
	for (;;) {
		struct pollfd pf[2];
		nfds_t n = 0;
		double now = mono_now(), wait_s;
		siginfo_t si;

		if (!exited) {
			memset(&si, 0, sizeof(si));
			if (waitid(P_PID, (id_t)pid, &si,
				   WEXITED | WNOHANG | WNOWAIT) == 0 &&
			    si.si_pid == pid) {
				exited = 1;
				exited_at = now;
			}
		}
		if (exited && ((!open_out && !open_err) ||
			       now - exited_at > EXEC_EXIT_LINGER))
			break;
		if (now >= deadline) {
			r->timed_out = 1;
			break;
		}
		if (open_out)
			pf[n++] = (struct pollfd){ out_p[0], POLLIN, 0 };
		if (open_err)
			pf[n++] = (struct pollfd){ err_p[0], POLLIN, 0 };
		wait_s = deadline - now;
		if (wait_s > 0.05)
			wait_s = 0.05; /* exit is noticed by polling */
		if (n == 0) {
			struct timespec ts = { 0, (long)(wait_s * 1e9) };

			nanosleep(&ts, NULL);
			continue;
		}
		if (poll(pf, n, (int)(wait_s * 1000) + 1) <= 0)
			continue;
		for (nfds_t i = 0; i < n; i++) {
			int is_out = pf[i].fd == out_p[0];

			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (!drain(pf[i].fd, r, is_out)) {
				if (is_out)
					open_out = 0;
				else
					open_err = 0;
			}
		}
	}
	/* The group goes, whatever is left of it. */
	kill(-pid, SIGKILL);
	while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
		;
	/* What the program wrote before it ended; a process that left the
	 * group may hold the pipes, so this is bounded. */
	for (double end = mono_now() + 1;
	     (open_out || open_err) && mono_now() < end;) {
		struct pollfd pf[2];
		nfds_t n = 0;

		if (open_out)
			pf[n++] = (struct pollfd){ out_p[0], POLLIN, 0 };
		if (open_err)
			pf[n++] = (struct pollfd){ err_p[0], POLLIN, 0 };
		if (poll(pf, n, 100) <= 0)
			break;
		for (nfds_t i = 0; i < n; i++) {
			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (!drain(pf[i].fd, r, pf[i].fd == out_p[0])) {
				if (pf[i].fd == out_p[0])
					open_out = 0;
				else
					open_err = 0;
			}
		}
	}
	{
		ssize_t got;
		int e = 0;

		got = read(rep_p[0], &e, sizeof(e));
		if (got == (ssize_t)sizeof(e))
			r->exec_errno = e;
	}
out:
	for (int i = 0; i < 2; i++) {
		if (out_p[i] >= 0)
			close(out_p[i]);
		if (err_p[i] >= 0)
			close(err_p[i]);
		if (rep_p[i] >= 0)
			close(rep_p[i]);
	}
	return st;
}

/* ------------------------------------------------------------------------
 * Results
 */

static int name_cmp(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* 1 when s[0..n) is UTF-8 without NUL. */
static int utf8_text(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t k;

		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3;
		else
			return 0;
		for (size_t j = 1; j <= k; j++)
			if (i + j >= n || (s[i + j] & 0xc0) != 0x80)
				return 0;
		i += k + 1;
	}
	return 1;
}

/* The error text of a failed run: "exit status N: <last stderr lines>"
 * (host->mem_alloc'd). */
static char *failure_text(const dr_host *host, const exec_run *r)
{
	char tail[EXEC_ERROR_MAX + 1], *msg;
	size_t n = r->err_len, start = 0, len;

	while (n > 0 &&
	       (r->err_tail[n - 1] == '\n' || r->err_tail[n - 1] == ' ' ||
		r->err_tail[n - 1] == '\r' || r->err_tail[n - 1] == '\t'))
		n--;
	if (n > EXEC_ERROR_MAX) {
		start = n - EXEC_ERROR_MAX;
		/* Begin at a line when one starts in the window. */
		for (size_t i = start; i < n; i++) {
			if (r->err_tail[i] == '\n') {
				start = i + 1;
				break;
			}
		}
		/* Never in the middle of a UTF-8 sequence. */
		while (start < n &&
		       ((unsigned char)r->err_tail[start] & 0xc0) == 0x80)
			start++;
	}
	len = n - start;
	memcpy(tail, r->err_tail + start, len);
	tail[len] = '\0';
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)tail[i] < 0x20 && tail[i] != '\n')
			tail[i] = ' ';
	if (!utf8_text((const unsigned char *)tail, len))
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)tail[i] >= 0x80)
				tail[i] = '?';
	len = strlen(tail) + 64;
	msg = host->mem_alloc(len);
	if (WIFSIGNALED(r->status))
		snprintf(msg, len, "killed by signal %d%s%s",
			 WTERMSIG(r->status), tail[0] ? ": " : "", tail);
	else
		snprintf(msg, len, "exit status %d%s%s", WEXITSTATUS(r->status),
			 tail[0] ? ": " : "", tail);
	return msg;
}

/* Free the outputs of a prediction being built. */
static void outputs_free(const dr_host *host, dr_prediction *p)
{
	for (size_t i = 0; i < p->n_outputs; i++)
		host->mem_free(p->outputs[i].value);
	host->mem_free(p->outputs);
	p->outputs = NULL;
	p->n_outputs = 0;
}

/* The regular files of the job directory as outputs, then stdout. */
static dr_status collect_outputs(exec_adapter *a, const char *dir, exec_run *r,
				 dr_prediction *p, dr_error *err)
{
	char **names = NULL;
	size_t n = 0, cap = (size_t)a->max_files + 1;
	struct dirent *de;
	struct stat sb;
	dr_status st = DR_OK;
	DIR *d;
	int fd;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return a->host->fail(err, DR_ERR_IO, "io_error",
				     "cannot read the job directory: %s",
				     strerror(errno));
	}
	names = a->host->mem_calloc(cap, sizeof(*names));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(sb.st_mode))
			continue; /* symlinks, directories, fifos: not ours */
		if (n == (size_t)a->max_files) {
			st = a->host->fail(err, DR_ERR_TOO_LARGE,
					   "too_many_outputs",
					   "the program left more than %d "
					   "files",
					   a->max_files);
			break;
		}
		names[n++] = a->host->mem_strdup(de->d_name);
	}
	closedir(d);
	if (st == DR_OK && a->stdout_text && r->out.over)
		st = a->host->fail(err, DR_ERR_TOO_LARGE, "output_too_large",
				   "the program wrote more than %d bytes to "
				   "standard output",
				   EXEC_STDOUT_MAX);
	if (st == DR_OK && a->stdout_text && r->out.len &&
	    !utf8_text((const unsigned char *)r->out.data, r->out.len))
		st = a->host->fail(err, DR_ERR_UNSUPPORTED, "bad_output",
				   "the program's standard output is not "
				   "UTF-8 text");
	if (st == DR_OK) {
		size_t total = n + (a->stdout_text && r->out.len ? 1 : 0);

		qsort(names, n, sizeof(*names), name_cmp);
		p->outputs = a->host->mem_calloc(total ? total : 1,
						 sizeof(*p->outputs));
		for (size_t i = 0; i < n; i++) {
			size_t len = strlen(dir) + strlen(names[i]) + 2;
			char *path = a->host->mem_alloc(len);

			snprintf(path, len, "%s/%s", dir, names[i]);
			p->outputs[p->n_outputs].kind = DR_OUTPUT_PATH;
			p->outputs[p->n_outputs++].value = path;
		}
		if (total > n) {
			p->outputs[p->n_outputs].kind = DR_OUTPUT_TEXT;
			p->outputs[p->n_outputs++].value = r->out.data;
			r->out.data = NULL;
		}
	}
	for (size_t i = 0; i < n; i++)
		a->host->mem_free(names[i]);
	a->host->mem_free(names);
	if (st != DR_OK)
		outputs_free(a->host, p);
	return st;
}

/* ------------------------------------------------------------------------
 * Operations
 */

static dr_status exec_validate(void *state, const dr_job_view *job,
			       dr_error *err)
{
	exec_adapter *a = state;
	char **argv = NULL;
	dr_status st;

	if (!job->model || !job->model[0])
		return a->host->fail(err, DR_ERR_INVALID, "invalid_input",
				     "model must not be empty");
	st = build_argv(a, job, &argv, err);
	free_strv(a->host, argv);
	return st;
}

static dr_status exec_submit(void *state, const dr_job_view *job,
			     dr_prediction *out, dr_error *err)
{
	exec_adapter *a = state;
	char dir[PATH_MAX], id[EXEC_ID_MAX + 1];
	char **argv = NULL;
	exec_run r;
	double t0;
	int slot = -1;
	dr_status st;

	memset(out, 0, sizeof(*out));
	memset(&r, 0, sizeof(r));
	r.out.host = a->host;
	r.out.max = a->stdout_text ? EXEC_STDOUT_MAX : 0;
	if (!job_id_ok(job->id) ||
	    snprintf(id, sizeof(id), "%s%s-%d", EXEC_ID_PREFIX, job->id,
		     job->attempt) >= (int)sizeof(id))
		return a->host->fail(err, DR_ERR_INVALID, "invalid_input",
				     "the job id must be 1 to 40 letters, "
				     "digits, '_' or '-'");
	st = build_argv(a, job, &argv, err);
	if (st != DR_OK)
		return st;
	slot = slot_take(a);
	if (slot < 0) {
		free_strv(a->host, argv);
		if (slot == -2)
			return a->host->fail(err, DR_ERR_IO, "io_error",
					     "cannot open a slot file in %s: "
					     "%s",
					     a->workdir, strerror(errno));
		st = a->host->fail(err, DR_ERR_RATE_LIMITED, "busy",
				   "all %d program slots are busy",
				   a->max_concurrent);
		err->retry_after = 1;
		err->retryable = 1;
		return st;
	}
	remove_old_dirs(a);
	snprintf(dir, sizeof(dir), "%s/%s-%d", a->workdir, job->id,
		 job->attempt);
	{
		/* An earlier run of this very attempt (a crash) starts over. */
		int wfd = open(a->workdir,
			       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (wfd >= 0) {
			remove_tree(wfd, strrchr(dir, '/') + 1, 0);
			close(wfd);
		}
	}
	if (mkdir(dir, 0700) != 0) {
		st = a->host->fail(err, DR_ERR_IO, "io_error",
				   "cannot create the job directory: %s",
				   strerror(errno));
		goto out;
	}
	t0 = mono_now();
	a->host->log(a->inst, DR_LOG_INFO,
		     "event=exec.start job=%s attempt=%d program=%s", job->id,
		     job->attempt, a->program);
	st = run_program(a, dir, argv, &r, err);
	if (st != DR_OK)
		goto out;
	out->predict_time = mono_now() - t0;
	out->progress = -1;
	if (r.timed_out) {
		st = a->host->fail(err, DR_ERR_TOO_LARGE, "exec_timeout",
				   "the program ran longer than %.0f s and "
				   "was killed",
				   a->timeout);
		goto out;
	}
	if (r.exec_errno) {
		st = a->host->fail(err, DR_ERR_CONFIG, "exec_failed",
				   "cannot run %s: %s", a->program,
				   strerror(r.exec_errno));
		goto out;
	}
	if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) {
		st = collect_outputs(a, dir, &r, out, err);
		if (st != DR_OK)
			goto out;
		out->status = DR_PRED_SUCCEEDED;
	} else {
		out->status = DR_PRED_FAILED;
		out->error = failure_text(a->host, &r);
	}
	out->id = a->host->mem_strdup(id);
	a->host->log(a->inst, DR_LOG_INFO,
		     "event=exec.done job=%s status=%s outputs=%zu "
		     "seconds=%.2f",
		     job->id,
		     out->status == DR_PRED_SUCCEEDED ? "succeeded" : "failed",
		     out->n_outputs, out->predict_time);
out:
	if (st != DR_OK) {
		a->host->log(a->inst, DR_LOG_WARNING,
			     "event=exec.failed job=%s code=%s", job->id,
			     err->code);
		outputs_free(a->host, out);
		a->host->mem_free(out->error);
		a->host->mem_free(out->id);
		memset(out, 0, sizeof(*out));
	}
	a->host->mem_free(r.out.data);
	free_strv(a->host, argv);
	close(slot);
	return st;
}

/* The program ran inside submit: there is nothing left to stop. */
static dr_status exec_cancel(void *state, const dr_job_view *job, dr_error *err)
{
	(void)state;
	(void)job;
	(void)err;
	return DR_OK;
}

static const dr_adapter_ops exec_ops = {
	.size = sizeof(dr_adapter_ops),
	.validate = exec_validate,
	.submit = exec_submit,
	.get = NULL,
	.cancel = exec_cancel,
	.webhook = NULL,
	.download_hosts = NULL,
};

static const dr_plugin exec_plugin = {
	.abi_version = DR_PLUGIN_ABI_VERSION,
	.size = sizeof(dr_plugin),
	.name = "exec",
	.kind = DR_PLUGIN_ADAPTER,
	.version = "1.0",
	.description = "runs a local program (argument template, no shell)",
	.config_keys = exec_keys,
	.create = exec_create,
	.destroy = exec_destroy,
	.adapter = &exec_ops,
};

DR_PLUGIN_DEFINE(exec_plugin)
