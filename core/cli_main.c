/*
 * cli_main.c - the `darkroom` command: subcommands for operators.
 *
 *   darkroom [--config FILE] COMMAND [ARGS]
 *
 * Every command is a row of one table (commands[] at the end): its name
 * (one word, or a group and a word: "jobs list"), its positional
 * arguments, its options, its --help text and its handler. The table
 * drives the parsing (unknown options, missing values, stray arguments,
 * --help anywhere), the overall usage, each group's help and
 * `darkroom help COMMAND`, so a handler only reads what was given.
 *
 * Exit codes: 0 success, 1 failure (one line on stderr), 2 usage error.
 */
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batches.h"
#include "buf.h"
#include "config.h"
#include "db.h"
#include "deletion.h"
#include "events.h"
#include "files.h"
#include "ids.h"
#include "image.h"
#include "jobs.h"
#include "jobstate.h"
#include "log.h"
#include "migrate.h"
#include "objects.h"
#include "outputs.h"
#include "plugin.h"
#include "plugin_http.h"
#include "queue.h"
#include "ratelimit.h"
#include "reprocess.h"
#include "retention.h"
#include "table.h"
#include "worker.h"

#define EXIT_USAGE 2
#define CLI_MAX_POSITIONAL 100

typedef struct cli {
	const char *conf_path;
} cli;

/* One option as given, in command-line order. */
typedef struct cli_given {
	const char *opt;   /* as spelled in the command's options */
	const char *value; /* or NULL for a flag */
} cli_given;

struct cli_cmd;

/* A command line read against its command's row. */
typedef struct cli_args {
	const struct cli_cmd *cmd;
	cli_given *given; /* n_given of them */
	size_t n_given;
	const char *pos[CLI_MAX_POSITIONAL];
	size_t n_pos;
} cli_args;

/* A row of the command table. */
typedef struct cli_cmd {
	const char *name;     /* "migrate", "jobs list" */
	const char *args;     /* positional arguments for the overview: "ID" */
	const char *summary;  /* one line for the overview */
	size_t min_pos, max_pos;
	const char *missing;  /* the error when positionals are missing */
	const char *opts;     /* "--dir= --json": '=' takes a value */
	const char *help;     /* the --help text */
	int (*run)(const cli *c, const cli_args *a);
} cli_cmd;

/* Whether flag `opt` was given. */
static int cli_flag(const cli_args *a, const char *opt)
{
	for (size_t i = 0; i < a->n_given; i++)
		if (strcmp(a->given[i].opt, opt) == 0)
			return 1;
	return 0;
}

/* The value of the last `opt` given, or NULL. */
static const char *cli_value(const cli_args *a, const char *opt)
{
	const char *v = NULL;

	for (size_t i = 0; i < a->n_given; i++)
		if (strcmp(a->given[i].opt, opt) == 0)
			v = a->given[i].value;
	return v;
}

static int load_config(const cli *c, dr_config **cfg)
{
	dr_error err;

	dr_error_clear(&err);
	if (config_load(config_default_path(c->conf_path), cfg, &err) !=
	    DR_OK) {
		fprintf(stderr, "darkroom: %s%s\n", err.message,
			err.status == DR_ERR_IO && !getenv("DARKROOM_CONF")
				? " (name the config file with --config or "
				  "DARKROOM_CONF)"
				: "");
		return -1;
	}
	return 0;
}

static void migrate_report(void *ctx, const char *plugin, const char *instance,
			   const dr_error *err)
{
	(void)ctx;
	fprintf(stderr,
		"darkroom migrate: warning: [adapter \"%s\"] (plugin %s) "
		"could not do its upkeep: %s; the worker tries again when it "
		"starts\n",
		instance, plugin, err->message);
}

/*
 * After the migrations: run once the upkeep of every adapter that has one
 * (replicate fetches its webhook signing secret and keeps it in
 * plugin_kv), so a fresh install has what the FastCGI app reads before
 * the first worker starts. Only those adapter instances are created: no
 * sink, no local adapter's work folder (migrate may run as another user
 * than the service). Whatever fails here is a warning on stderr: the
 * worker does the same when it starts and every minute.
 */
static void migrate_upkeep(const dr_config *cfg)
{
	dr_plugins *plugins = NULL;
	dr_error err;
	dr_db *db;

	dr_error_clear(&err);
	if (plugins_init(cfg, PLUGINS_CREATE_UPKEEP, &plugins, &err) != DR_OK) {
		fprintf(stderr,
			"darkroom migrate: warning: the adapters' upkeep did "
			"not run: %s\n",
			err.message);
		return;
	}
	db = db_new(cfg);
	plugins_set_db(plugins, db);
	(void)plugins_maintain_report(plugins, migrate_report, NULL);
	plugins_set_db(plugins, NULL);
	plugins_free(plugins);
	db_free(db);
}

static int cmd_migrate(const cli *c, const cli_args *a)
{
	const char *dir = cli_value(a, "--dir");
	dr_config *cfg = NULL;
	dr_error err;
	int rc;

	if (load_config(c, &cfg))
		return 1;
	dr_error_clear(&err);
	rc = migrate_run(cfg, dir ? dir : cfg->database.migrations_dir, stdout,
			 &err) == DR_OK
		     ? 0
		     : 1;
	if (rc)
		fprintf(stderr, "darkroom migrate: %s\n", err.message);
	else
		migrate_upkeep(cfg);
	config_free(cfg);
	return rc;
}

static int cmd_config_check(const cli *c, const cli_args *a)
{
	dr_config *cfg = NULL;
	dr_plugins *plugins = NULL;
	dr_error err;

	if (load_config(c, &cfg))
		return 1;
	dr_error_clear(&err);
	/* Instances are created too (no network at create): plugins check
	 * their own values there. */
	if (plugins_init(cfg, 1, &plugins, &err) != DR_OK) {
		fprintf(stderr, "darkroom: %s\n", err.message);
		config_free(cfg);
		return 1;
	}
	if (cli_flag(a, "--print"))
		config_print(cfg, stdout);
	if (cfg->server.n_api_keys == 0)
		fprintf(stderr, "darkroom: warning: no API key is configured; "
				"the API will refuse every request\n");
	printf("ok: %s\n", cfg->path);
	plugins_free(plugins);
	config_free(cfg);
	return 0;
}

static int cmd_worker(const cli *c, const cli_args *a)
{
	const char *v = cli_value(a, "--processes");
	dr_config *cfg = NULL;
	long processes = 0;
	int rc;

	if (v) {
		char *end = NULL;

		processes = strtol(v, &end, 10);
		if (!*v || *end || processes < 1 || processes > 64) {
			fprintf(stderr, "darkroom worker: --processes takes 1 "
					"to 64\n");
			return EXIT_USAGE;
		}
	}
	if (load_config(c, &cfg))
		return 1;
	if (processes)
		cfg->worker.processes = (int)processes;
	dr_log_init("worker", cfg->server.log_level, 1);
	rc = worker_main(cfg);
	config_free(cfg);
	return rc;
}

static const char *kind_name(dr_plugin_kind k)
{
	return k == DR_PLUGIN_ADAPTER ? "adapter"
	       : k == DR_PLUGIN_SINK  ? "sink"
				      : "?";
}

static int cmd_plugins_list(const cli *c, const cli_args *a)
{
	const char *dir = cli_value(a, "--dir");
	dr_config *cfg = NULL;
	dr_loaded_plugin *list = NULL;
	size_t n = 0;
	char *errors = NULL;
	dr_error err;
	int rc = 0;

	if (!dir) {
		if (load_config(c, &cfg))
			return 1;
		dir = cfg->server.plugin_dir;
	}
	dr_error_clear(&err);
	if (plugins_scan(dir, &list, &n, &errors, &err) != DR_OK) {
		fprintf(stderr, "darkroom: %s\n", err.message);
		config_free(cfg);
		return 1;
	}
	printf("%-12s %-8s %-8s %s\n", "NAME", "KIND", "VERSION",
	       "DESCRIPTION");
	for (size_t i = 0; i < n; i++)
		printf("%-12s %-8s %-8s %s\n", list[i].desc->name,
		       kind_name(list[i].desc->kind),
		       list[i].desc->version ? list[i].desc->version : "-",
		       list[i].desc->description ? list[i].desc->description
						 : "");
	if (errors && *errors) {
		fputs(errors, stderr);
		rc = 1;
	}
	free(errors);
	plugins_list_free(list, n);
	config_free(cfg);
	return rc;
}

/* ------------------------------------------------------------------------
 * Shared by the database commands (jobs, outputs, reprocess).
 */

/* Largest JSON answer the CLI reads back (a page of 100 jobs). */
#define CLI_JSON_MAX (64u << 20)

/* One line on stderr for a failed call, naming an unreachable database. */
static void report(const char *cmd, const dr_error *err)
{
	if (err->status == DR_ERR_UNAVAILABLE)
		fprintf(stderr, "darkroom %s: database unavailable: %s\n", cmd,
			err->message);
	else
		fprintf(stderr, "darkroom %s: %s\n", cmd, err->message);
}

/* Load the config and connect. -1 (reported, nothing held) on failure. */
static int open_db(const cli *c, const char *cmd, dr_config **cfg,
		   dr_db **db)
{
	dr_error err;

	*db = NULL;
	if (load_config(c, cfg))
		return -1;
	*db = db_new(*cfg);
	dr_error_clear(&err);
	if (db_ping(*db, &err) != DR_OK) {
		report(cmd, &err);
		db_free(*db);
		config_free(*cfg);
		*db = NULL;
		*cfg = NULL;
		return -1;
	}
	return 0;
}

/* `rate` (creates per second) as the config spells it: "10/s",
 * "600/min" stays "10/s"; under one a second, per minute or hour. */
static void rate_text(double rate, char *buf, size_t bufsz)
{
	if (!(rate > 0))
		snprintf(buf, bufsz, "off");
	else if (rate >= 1)
		snprintf(buf, bufsz, "%g/s", rate);
	else if (rate * 60 >= 1)
		snprintf(buf, bufsz, "%g/min", rate * 60);
	else
		snprintf(buf, bufsz, "%g/h", rate * 3600);
}

static int cmd_limits(const cli *c, const cli_args *a)
{
	static const char *const heads[] = { "ADAPTER", "RATE", "BURST",
					     "BOOKED_AHEAD", "LINE_AHEAD" };
	int json = cli_flag(a, "--json");
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	ratelimit_state *list = NULL;
	size_t n = 0;
	dr_error err;

	if (open_db(c, "limits", &cfg, &db))
		return 1;
	dr_error_clear(&err);
	if (ratelimit_list(db, cfg, &list, &n, &err) != DR_OK) {
		report("limits", &err);
		db_free(db);
		config_free(cfg);
		return 1;
	}
	if (json) {
		json_object *arr = json_object_new_array();

		for (size_t i = 0; i < n; i++) {
			json_object *o = json_object_new_object();
			int on = list[i].per_second > 0;

			json_object_object_add(
				o, "adapter",
				json_object_new_string(list[i].name));
			json_object_object_add(
				o, "rate_per_second",
				on ? json_object_new_double(list[i].per_second)
				   : NULL);
			json_object_object_add(
				o, "burst",
				on ? json_object_new_int(list[i].burst) : NULL);
			json_object_object_add(
				o, "booked_seconds",
				json_object_new_double(list[i].booked));
			json_object_object_add(
				o, "line_seconds",
				json_object_new_double(list[i].waiting));
			json_object_array_add(arr, o);
		}
		printf("%s\n", json_object_to_json_string_ext(
				       arr, JSON_C_TO_STRING_PLAIN));
		json_object_put(arr);
	} else {
		dr_table *t = table_new(5, heads, NULL);

		for (size_t i = 0; i < n; i++) {
			char rate[32], burst[16], booked[32], line[32];
			const char *row[5];
			int on = list[i].per_second > 0;

			rate_text(list[i].per_second, rate, sizeof(rate));
			snprintf(burst, sizeof(burst), "%d", list[i].burst);
			snprintf(booked, sizeof(booked), "%.3fs",
				 list[i].booked);
			snprintf(line, sizeof(line), "%.3fs", list[i].waiting);
			row[0] = list[i].name;
			row[1] = rate;
			row[2] = on ? burst : NULL;
			row[3] = on ? booked : NULL;
			row[4] = on ? line : NULL;
			table_add(t, row);
		}
		table_print(t, stdout);
		table_free(t);
	}
	free(list);
	db_free(db);
	config_free(cfg);
	return 0;
}

/*
 * Load and create the active sink alone (no adapter), whose public_url
 * makes the URLs of the job objects and outputs a command shows (jobs.h):
 * *sink is NULL when no sink is configured. -1 (reported, *plugins NULL)
 * when it cannot start. The caller frees *plugins with plugins_free().
 */
static int open_sink(const char *cmd, const dr_config *cfg,
		     dr_plugins **plugins, struct dr_instance **sink)
{
	dr_error err;

	*sink = NULL;
	dr_error_clear(&err);
	if (plugins_init(cfg, PLUGINS_CREATE_SINK, plugins, &err) != DR_OK) {
		report(cmd, &err);
		return -1;
	}
	*sink = plugins_sink(*plugins, cfg->server.sink);
	return 0;
}

/* The filter options of `jobs list` and `outputs` as the name/value pairs
 * jobs_filter_parse() and outputs_filter_parse() read (the same as the
 * API's query parameters), with the option each came from for messages. */
typedef struct cli_filters {
	dr_filter_arg *args;
	const char **opt;   /* args[i] came from opt[i]: "--status" */
	char **owned;       /* metadata.KEY names and "--metadata K=V" */
	size_t n, n_owned;
} cli_filters;

/* The filter options and the parameter each stands for; --metadata K=V
 * stands for metadata.K=V. */
static const struct {
	const char *opt, *name;
} filter_opts[] = {
	{ "--status", "status" },
	{ "--model", "model" },
	{ "--adapter", "adapter" },
	{ "--sha256", "sha256" },
	{ "--since", "since" },
	{ "--until", "until" },
	{ "-q", "q" },
	{ "--limit", "limit" },
	{ "--cursor", "cursor" },
	{ "--batch", "batch" },
	{ "--kind", "kind" },
};

static void cli_filters_free(cli_filters *fs)
{
	for (size_t i = 0; i < fs->n_owned; i++)
		free(fs->owned[i]);
	free(fs->owned);
	free(fs->opt);
	free(fs->args);
}

/*
 * The filters among the options of `a` (all but --json) into *fs, which
 * the caller frees with cli_filters_free() either way. 0, or -1 after one
 * line on stderr for --metadata without KEY=VALUE.
 */
static int cli_filters_read(const cli_args *a, cli_filters *fs)
{
	size_t nk = sizeof(filter_opts) / sizeof(filter_opts[0]);

	fs->args = dr_xcalloc(a->n_given + 1, sizeof(*fs->args));
	fs->opt = dr_xcalloc(a->n_given + 1, sizeof(*fs->opt));
	fs->owned = dr_xcalloc(2 * a->n_given + 1, sizeof(*fs->owned));
	fs->n = fs->n_owned = 0;
	for (size_t i = 0; i < a->n_given; i++) {
		const char *o = a->given[i].opt, *v = a->given[i].value;
		const char *eq = v ? strchr(v, '=') : NULL;
		size_t k, klen;
		char *name, *spelled;

		for (k = 0; k < nk && strcmp(o, filter_opts[k].opt) != 0; k++)
			;
		if (k < nk) {
			fs->opt[fs->n] = o;
			fs->args[fs->n].name = filter_opts[k].name;
			fs->args[fs->n++].value = v;
			continue;
		}
		if (strcmp(o, "--metadata") != 0)
			continue;
		if (!eq || eq == v) {
			fprintf(stderr, "darkroom %s: --metadata takes "
					"KEY=VALUE\n",
				a->cmd->name);
			return -1;
		}
		klen = (size_t)(eq - v);
		name = dr_xmalloc(9 + klen + 1);
		memcpy(name, "metadata.", 9);
		memcpy(name + 9, v, klen);
		name[9 + klen] = '\0';
		spelled = dr_xmalloc(strlen(v) + 12);
		snprintf(spelled, strlen(v) + 12, "--metadata %s", v);
		fs->owned[fs->n_owned++] = name;
		fs->owned[fs->n_owned++] = spelled;
		fs->opt[fs->n] = spelled;
		fs->args[fs->n].name = name;
		fs->args[fs->n++].value = eq + 1;
	}
	return 0;
}

/* One line on stderr for filters the parse refused: the option (the last
 * one that stands for `field`) and why. */
static void cli_filters_report(const char *cmd, const cli_filters *fs,
			       const char *field, const dr_error *err)
{
	const char *opt = "--metadata", *why = err->message;
	size_t fl = field ? strlen(field) : 0;

	for (size_t i = 0; field && i < fs->n; i++)
		if (strcmp(fs->args[i].name, field) == 0)
			opt = fs->opt[i];
	/* The message starts with "<field>: " (the field maybe cut). */
	if (fl && strncmp(why, field, fl) == 0 && strncmp(why + fl, ": ", 2) == 0)
		why += fl + 2;
	else if (strstr(why, ": "))
		why = strstr(why, ": ") + 2;
	fprintf(stderr, "darkroom %s: %s: %s\n", cmd, opt, why);
}

/* The string member `key` of `o`, or NULL (absent, null). */
static const char *jstr(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return NULL;
	return json_object_get_string(v);
}

static json_object *jget(json_object *o, const char *key)
{
	json_object *v = NULL;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* "2026-11-21T10:00:00.123Z" (or the database form) as
 * "2026-11-21 10:00:00". */
static const char *short_time(const char *t, char out[24])
{
	if (!t)
		return NULL;
	snprintf(out, 24, "%.19s", t);
	if (out[10] == 'T')
		out[10] = ' ';
	return out;
}

/* Print the JSON in `b` as it is, or parse it into *root (-1, reported,
 * when it does not parse: a bug). */
static int parse_answer(const char *cmd, const dr_buf *b, json_object **root)
{
	*root = b->data ? json_tokener_parse(b->data) : NULL;
	if (!*root) {
		fprintf(stderr, "darkroom %s: unreadable answer\n", cmd);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * jobs list | show | retry | cancel
 */

static void job_error_text(json_object *job, char *out, size_t n)
{
	json_object *e = jget(job, "error");

	out[0] = '\0';
	if (e && json_object_is_type(e, json_type_object))
		snprintf(out, n, "%s%s%s%s/%s: %s",
			 jstr(e, "workflow_step") ? "step " : "",
			 jstr(e, "workflow_step") ? jstr(e, "workflow_step")
						  : "",
			 jstr(e, "workflow_step") ? ": " : "",
			 jstr(e, "step") ? jstr(e, "step") : "?",
			 jstr(e, "code") ? jstr(e, "code") : "?",
			 jstr(e, "message") ? jstr(e, "message") : "");
}

static void progress_text(json_object *job, char out[16])
{
	json_object *p = jget(job, "progress");

	if (p && !json_object_is_type(p, json_type_null))
		snprintf(out, 16, "%.0f%%", 100 * json_object_get_double(p));
	else
		snprintf(out, 16, "-");
}

static void print_jobs_table(json_object *root)
{
	static const char *const heads[] = {"ID",	"STATUS",  "ADAPTER",
					    "MODEL",	"PROGRESS", "CREATED",
					    "ERROR"};
	static const size_t max[] = {0, 0, 0, 48, 0, 0, 72};
	json_object *data = jget(root, "data");
	dr_table *t = table_new(7, heads, max);

	for (size_t i = 0; data && i < json_object_array_length(data); i++) {
		json_object *j = json_object_array_get_idx(data, i);
		char prog[16], created[24], error[700];
		const char *row[7];

		progress_text(j, prog);
		job_error_text(j, error, sizeof(error));
		row[0] = jstr(j, "id");
		row[1] = jstr(j, "status");
		row[2] = jstr(j, "adapter");
		row[3] = jstr(j, "model");
		row[4] = prog;
		row[5] = short_time(jstr(j, "created_at"), created);
		row[6] = error[0] ? error : NULL;
		table_add(t, row);
	}
	table_print(t, stdout);
	table_free(t);
	if (jstr(root, "next_cursor"))
		printf("\nnext page: --cursor %s\n", jstr(root, "next_cursor"));
}

static int cmd_jobs_list(const cli *c, const cli_args *a)
{
	const char *cmd = a->cmd->name, *field = NULL;
	dr_job_filter f;
	cli_filters fs;
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	dr_plugins *plugins = NULL;
	struct dr_instance *sink = NULL;
	json_object *root = NULL;
	dr_buf out;
	dr_error err;
	int json = cli_flag(a, "--json"), rc = EXIT_USAGE;

	if (cli_filters_read(a, &fs))
		goto out;
	dr_error_clear(&err);
	if (jobs_filter_parse(fs.args, fs.n, &f, &field, &err) != DR_OK) {
		cli_filters_report(cmd, &fs, field, &err);
		goto out;
	}
	rc = 1;
	if (open_db(c, cmd, &cfg, &db))
		goto out;
	dr_buf_init(&out, CLI_JSON_MAX);
	dr_error_clear(&err);
	if (open_sink(cmd, cfg, &plugins, &sink) != 0) {
		/* reported */
	} else if (jobs_list(db, cfg, sink, &f, &out, &err) != DR_OK) {
		report(cmd, &err);
	} else if (json) {
		printf("%s\n", out.data);
		rc = 0;
	} else if (parse_answer(cmd, &out, &root) == 0) {
		print_jobs_table(root);
		rc = 0;
	}
	json_object_put(root);
	dr_buf_free(&out);
	plugins_free(plugins);
	db_free(db);
	config_free(cfg);
out:
	cli_filters_free(&fs);
	return rc;
}

static void show_field(const char *name, const char *value)
{
	printf("%-12s %s\n", name, value && *value ? value : "-");
}

static void print_events(const dr_db_rows *ev)
{
	static const char *const heads[] = {"TIME", "KIND", "CHANGE",
					    "DETAIL"};
	static const size_t max[] = {0, 0, 0, 100};
	dr_table *t = table_new(4, heads, max);

	for (size_t i = 0; i < ev->n_rows; i++) {
		const char *from = db_cell(ev, i, DR_EVENT_FROM);
		const char *to = db_cell(ev, i, DR_EVENT_TO);
		char at[32], change[48];
		const char *row[4];

		snprintf(at, sizeof(at), "%.23s", db_cell(ev, i, DR_EVENT_AT));
		if (from || to)
			snprintf(change, sizeof(change), "%s\xe2\x86\x92%s",
				 from ? from : "", to ? to : "");
		row[0] = at;
		row[1] = db_cell(ev, i, DR_EVENT_KIND);
		row[2] = from || to ? change : NULL;
		row[3] = db_cell(ev, i, DR_EVENT_DETAIL);
		table_add(t, row);
	}
	table_print(t, stdout);
	table_free(t);
}

static void print_outputs(json_object *outs)
{
	static const char *const heads[] = {"IDX",  "NAME",  "TYPE",
					    "SIZE", "BYTES", "URL"};
	dr_table *t = table_new(6, heads, NULL);

	for (size_t i = 0; outs && i < json_object_array_length(outs); i++) {
		json_object *o = json_object_array_get_idx(outs, i);
		json_object *rs = jget(o, "renditions");
		char idx[16], size[32] = "", bytes[24] = "";
		const char *row[6];

		snprintf(idx, sizeof(idx), "%d",
			 json_object_get_int(jget(o, "index")));
		if (jget(o, "width") && jstr(o, "width"))
			snprintf(size, sizeof(size), "%sx%s", jstr(o, "width"),
				 jstr(o, "height"));
		if (jstr(o, "bytes"))
			snprintf(bytes, sizeof(bytes), "%s", jstr(o, "bytes"));
		row[0] = idx;
		row[1] = jstr(o, "kind");
		row[2] = jstr(o, "content_type");
		row[3] = size[0] ? size : NULL;
		row[4] = bytes[0] ? bytes : NULL;
		row[5] = jstr(o, "url") ? jstr(o, "url") : jstr(o, "source_url");
		table_add(t, row);
		for (size_t k = 0; rs && k < json_object_array_length(rs);
		     k++) {
			json_object *r = json_object_array_get_idx(rs, k);
			char name[80];

			snprintf(name, sizeof(name), "  %s", jstr(r, "name"));
			snprintf(size, sizeof(size), "%sx%s", jstr(r, "width"),
				 jstr(r, "height"));
			row[0] = "";
			row[1] = name;
			row[2] = jstr(r, "content_type");
			row[3] = size;
			row[4] = jstr(r, "bytes");
			row[5] = jstr(r, "url");
			table_add(t, row);
		}
	}
	table_print(t, stdout);
	table_free(t);
}

/* The callback's tries: the delivery (its webhook-id), the try, when it
 * started, how long it took, the HTTP status and the error. */
static void print_attempts(const dr_db_rows *at)
{
	static const char *const heads[] = { "WEBHOOK-ID", "TRY",    "STARTED",
					     "MS",	   "STATUS", "ERROR" };
	static const size_t max[] = { 0, 0, 0, 0, 0, 100 };
	dr_table *t = table_new(6, heads, max);

	for (size_t i = 0; i < at->n_rows; i++) {
		char started[32];
		const char *row[6];

		snprintf(started, sizeof(started), "%.23s",
			 db_cell(at, i, JOBS_ATTEMPT_STARTED));
		row[0] = db_cell(at, i, JOBS_ATTEMPT_DELIVERY);
		row[1] = db_cell(at, i, JOBS_ATTEMPT_NUMBER);
		row[2] = started;
		row[3] = db_cell(at, i, JOBS_ATTEMPT_MS);
		row[4] = db_cell(at, i, JOBS_ATTEMPT_STATUS);
		row[5] = db_cell(at, i, JOBS_ATTEMPT_ERROR);
		table_add(t, row);
	}
	table_print(t, stdout);
	table_free(t);
}

/* The job object's "callback" as "STATE, N attempts, last status S, next
 * try T" in `buf`, or "" when the job has none. */
static void callback_text(json_object *j, char *buf, size_t n)
{
	json_object *cb = jget(j, "callback");
	char t[24];

	buf[0] = '\0';
	if (!cb || !json_object_is_type(cb, json_type_object))
		return;
	snprintf(buf, n, "%s, %s attempt%s, last status %s, next try %s",
		 jstr(cb, "state") ? jstr(cb, "state") : "-",
		 jstr(cb, "attempts") ? jstr(cb, "attempts") : "0",
		 json_object_get_int(jget(cb, "attempts")) == 1 ? "" : "s",
		 jstr(cb, "last_status") ? jstr(cb, "last_status") : "-",
		 jstr(cb, "next_at") ? short_time(jstr(cb, "next_at"), t)
				     : "-");
}

/* A workflow's steps in order, as a timeline: each step's status, model,
 * prediction, tries, when it ended and why it failed. */
static void print_steps(json_object *steps)
{
	static const char *const heads[] = { "#",	   "STEP",
					     "STATUS",	   "MODEL",
					     "PREDICTION", "TRIES",
					     "COMPLETED",  "ERROR" };
	static const size_t max[] = { 0, 0, 0, 60, 0, 0, 0, 80 };
	dr_table *t = table_new(8, heads, max);
	size_t n = steps ? json_object_array_length(steps) : 0;

	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(steps, i);
		json_object *pred = jget(s, "prediction");
		char idx[24], done[24], err[200];
		const char *row[8];

		snprintf(idx, sizeof(idx), "%zu", i + 1);
		job_error_text(s, err, sizeof(err));
		row[0] = idx;
		row[1] = jstr(s, "name");
		row[2] = jstr(s, "status");
		row[3] = jstr(s, "model");
		row[4] = pred && json_object_is_type(pred, json_type_object)
				 ? jstr(pred, "id")
				 : NULL;
		row[5] = jstr(s, "attempts");
		row[6] = short_time(jstr(s, "completed_at"), done);
		row[7] = err;
		table_add(t, row);
	}
	table_print(t, stdout);
	table_free(t);
}

static void print_job(json_object *j, const dr_db_rows *ev,
		      const dr_db_rows *at)
{
	json_object *pred = jget(j, "prediction");
	char buf[700], t1[24], t2[24], t3[24];

	show_field("id", jstr(j, "id"));
	show_field("kind", jstr(j, "kind"));
	if (jstr(j, "workflow_id")) {
		snprintf(buf, sizeof(buf), "%s (step %s)",
			 jstr(j, "workflow_id"),
			 jstr(j, "name") ? jstr(j, "name") : "-");
		show_field("workflow", buf);
	}
	show_field("status", jstr(j, "status"));
	show_field("adapter", jstr(j, "adapter"));
	show_field("model", jstr(j, "model"));
	show_field("version", jstr(j, "version"));
	show_field("kind", jstr(j, "kind"));
	if (jget(j, "training")) {
		json_object *tr = jget(j, "training");

		show_field("destination", jstr(tr, "destination"));
		show_field("trained", jstr(tr, "version"));
	}
	progress_text(j, buf);
	show_field("progress", buf);
	show_field("attempts", jstr(j, "attempts"));
	show_field("created", short_time(jstr(j, "created_at"), t1));
	show_field("updated", short_time(jstr(j, "updated_at"), t2));
	show_field("completed", short_time(jstr(j, "completed_at"), t3));
	buf[0] = '\0';
	if (pred && json_object_is_type(pred, json_type_object))
		snprintf(buf, sizeof(buf), "%s (%s)",
			 jstr(pred, "id") ? jstr(pred, "id") : "-",
			 jstr(pred, "status") ? jstr(pred, "status") : "-");
	show_field("prediction", buf);
	job_error_text(j, buf, sizeof(buf));
	show_field("error", buf);
	show_field("metadata", jget(j, "metadata")
				       ? json_object_to_json_string_ext(
						 jget(j, "metadata"),
						 JSON_C_TO_STRING_PLAIN)
				       : NULL);
	show_field("input", json_object_to_json_string_ext(
				    jget(j, "input"), JSON_C_TO_STRING_PLAIN));
	show_field("callback", jget(j, "callback")
				       ? jstr(jget(j, "callback"), "url")
				       : NULL);
	callback_text(j, buf, sizeof(buf));
	show_field("delivery", buf);
	if (jget(j, "steps")) {
		printf("\nSTEPS\n");
		print_steps(jget(j, "steps"));
	}
	printf("\nEVENTS\n");
	print_events(ev);
	printf("\nOUTPUTS\n");
	print_outputs(jget(j, "outputs"));
	if (at->n_rows > 0) {
		printf("\nCALLBACK ATTEMPTS\n");
		print_attempts(at);
	}
}

static int cmd_jobs_show(const cli *c, const cli_args *a)
{
	const char *cmd = a->cmd->name, *id = a->pos[0];
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	dr_plugins *plugins = NULL;
	struct dr_instance *sink = NULL;
	dr_db_rows *ev = NULL, *at = NULL;
	json_object *root = NULL;
	dr_buf out;
	dr_error err;
	int json = cli_flag(a, "--json"), rc = 1;

	if (open_db(c, cmd, &cfg, &db))
		return 1;
	dr_buf_init(&out, CLI_JSON_MAX);
	dr_error_clear(&err);
	if (open_sink(cmd, cfg, &plugins, &sink) != 0) {
		/* reported */
	} else if (jobs_render(db, cfg, sink, id, &out, &err) != DR_OK ||
		   (!json && events_list(db, id, &ev, &err) != DR_OK) ||
		   (!json &&
		    jobs_callback_attempts(db, id, &at, &err) != DR_OK)) {
		report(cmd, &err);
	} else if (json) {
		printf("%s\n", out.data);
		rc = 0;
	} else if (parse_answer(cmd, &out, &root) == 0) {
		print_job(root, ev, at);
		rc = 0;
	}
	json_object_put(root);
	db_rows_free(at);
	db_rows_free(ev);
	dr_buf_free(&out);
	plugins_free(plugins);
	db_free(db);
	config_free(cfg);
	return rc;
}

/* jobs retry ID / jobs cancel ID: print "ID STATUS" of the job after;
 * jobs retry --callback ID: "ID callback STATE" of its callback after. */
static int jobs_action(const cli *c, const cli_args *a, int retry)
{
	int callback = retry && cli_flag(a, "--callback");
	const char *cmd = a->cmd->name, *id = a->pos[0];
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	json_object *root = NULL;
	dr_buf out;
	dr_error err;
	dr_status st;
	int rc = 1;

	if (open_db(c, cmd, &cfg, &db))
		return 1;
	dr_buf_init(&out, CLI_JSON_MAX);
	dr_error_clear(&err);
	st = callback ? jobstate_client_callback_retry(db, id, &err)
	     : retry  ? jobstate_client_retry(db, id, &err)
		      : jobstate_client_cancel(db, id, &err);
	if (st == DR_OK) {
		queue_wakeup_send(cfg->worker.wakeup_socket);
		/* Only the status is shown: no sink, no URL made. */
		st = jobs_render(db, cfg, NULL, id, &out, &err);
	}
	if (st != DR_OK) {
		report(cmd, &err);
	} else if (parse_answer(cmd, &out, &root) != 0) {
		/* reported */
	} else if (callback) {
		json_object *cb = jget(root, "callback");

		printf("%s callback %s\n", id,
		       cb && jstr(cb, "state") ? jstr(cb, "state") : "-");
		rc = 0;
	} else {
		json_object *cr = jget(root, "cancel_requested");

		printf("%s %s%s\n", id, jstr(root, "status"),
		       !retry &&
				       strcmp(jstr(root, "status"),
					      jobstate_name(DR_JOB_CANCELED)) !=
					       0 &&
				       (!cr || json_object_get_boolean(cr))
			       ? " (cancel requested)"
			       : "");
		rc = 0;
	}
	json_object_put(root);
	dr_buf_free(&out);
	db_free(db);
	config_free(cfg);
	return rc;
}

static int cmd_jobs_retry(const cli *c, const cli_args *a)
{
	return jobs_action(c, a, 1);
}

static int cmd_jobs_cancel(const cli *c, const cli_args *a)
{
	return jobs_action(c, a, 0);
}

/* ------------------------------------------------------------------------
 * batches list | show | cancel
 */

/*
 * Print list answer `out` ({"data": [...], "next_cursor"}) of command
 * `cmd`: as it is with `json`, else a table of `n` columns `heads`, one
 * row per item made by `row`, and the option of the next page. 0, or 1
 * when the answer does not parse (reported).
 */
static int print_list(const char *cmd, dr_buf *out, int json, size_t n,
		      const char *const *heads,
		      void (*row)(dr_table *t, json_object *item))
{
	json_object *root = NULL, *data;
	dr_table *t;

	if (json) {
		printf("%s\n", out->data);
		return 0;
	}
	if (parse_answer(cmd, out, &root) != 0)
		return 1;
	data = jget(root, "data");
	t = table_new(n, heads, NULL);
	for (size_t i = 0; data && i < json_object_array_length(data); i++)
		row(t, json_object_array_get_idx(data, i));
	table_print(t, stdout);
	table_free(t);
	if (jstr(root, "next_cursor"))
		printf("\nnext page: --cursor %s\n", jstr(root, "next_cursor"));
	json_object_put(root);
	return 0;
}

/* "n/n/n/n/n" of a batch's counts: queued, running, succeeded, failed,
 * canceled. */
static void counts_text(json_object *b, char out[96])
{
	json_object *c = jget(b, "counts");

	snprintf(out, 96, "%d/%d/%d/%d/%d",
		 json_object_get_int(jget(c, "queued")),
		 json_object_get_int(jget(c, "running")),
		 json_object_get_int(jget(c, "succeeded")),
		 json_object_get_int(jget(c, "failed")),
		 json_object_get_int(jget(c, "canceled")));
}

static void print_batch_row(dr_table *t, json_object *b)
{
	char counts[96], created[24], completed[24];
	const char *row[5];

	counts_text(b, counts);
	row[0] = jstr(b, "id");
	row[1] = jstr(b, "status");
	row[2] = counts;
	row[3] = short_time(jstr(b, "created_at"), created);
	row[4] = short_time(jstr(b, "completed_at"), completed);
	table_add(t, row);
}

static const char *const batch_heads[] = {
	"ID", "STATUS", "QUEUED/RUNNING/SUCCEEDED/FAILED/CANCELED", "CREATED",
	"COMPLETED"
};

/* The --limit and --cursor of a list command (a cursor is an id that
 * is_id() takes). 0, or EXIT_USAGE after a line on stderr. */
static int page_opts(const cli_args *a, int (*is_id)(const char *), int *limit,
		     const char **cursor)
{
	const char *cmd = a->cmd->name, *lim = cli_value(a, "--limit");

	*limit = DR_LIST_LIMIT_DEFAULT;
	*cursor = cli_value(a, "--cursor");
	if (lim) {
		char *end;
		long v = strtol(lim, &end, 10);

		if (*lim == '\0' || *end != '\0' || v < 1 ||
		    v > DR_LIST_LIMIT_MAX) {
			fprintf(stderr,
				"darkroom %s: --limit: must be 1 to "
				"100\n",
				cmd);
			return EXIT_USAGE;
		}
		*limit = (int)v;
	}
	if (*cursor && !is_id(*cursor)) {
		fprintf(stderr,
			"darkroom %s: --cursor: not a cursor from a "
			"previous page\n",
			cmd);
		return EXIT_USAGE;
	}
	return 0;
}

static int cmd_batches_list(const cli *c, const cli_args *a)
{
	const char *cmd = a->cmd->name, *cursor;
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	int json = cli_flag(a, "--json"), rc = 1, limit;
	dr_buf out;
	dr_error err;

	if (page_opts(a, ids_is_batch_id, &limit, &cursor))
		return EXIT_USAGE;
	if (open_db(c, cmd, &cfg, &db))
		return 1;
	dr_buf_init(&out, CLI_JSON_MAX);
	dr_error_clear(&err);
	if (batches_list(db, limit, cursor, &out, &err) != DR_OK)
		report(cmd, &err);
	else
		rc = print_list(cmd, &out, json, 5, batch_heads,
				print_batch_row);
	dr_buf_free(&out);
	db_free(db);
	config_free(cfg);
	return rc;
}

/* batches show ID / batches cancel ID: the batch (after the cancel). */
static int batches_action(const cli *c, const cli_args *a, int cancel)
{
	const char *cmd = a->cmd->name, *id = a->pos[0];
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	json_object *root = NULL;
	size_t n = 0;
	int rc = 1;
	dr_buf out;
	dr_error err;
	dr_status st = DR_OK;

	if (!ids_is_batch_id(id)) {
		fprintf(stderr, "darkroom %s: %s: not a batch id (b_...)\n",
			cmd, id);
		return 1;
	}
	if (open_db(c, cmd, &cfg, &db))
		return 1;
	dr_buf_init(&out, CLI_JSON_MAX);
	dr_error_clear(&err);
	if (cancel) {
		st = batches_cancel(db, id, &n, &err);
		if (st == DR_OK && n)
			queue_wakeup_send(cfg->worker.wakeup_socket);
	}
	if (st == DR_OK)
		st = batches_render(db, id, &out, &err);
	if (st != DR_OK) {
		report(cmd, &err);
	} else if (!cancel && cli_flag(a, "--json")) {
		printf("%s\n", out.data);
		rc = 0;
	} else if (parse_answer(cmd, &out, &root) == 0) {
		dr_table *t = table_new(5, batch_heads, NULL);
		json_object *jobs = jget(root, "jobs");

		print_batch_row(t, root);
		table_print(t, stdout);
		table_free(t);
		if (cancel) {
			printf("%zu job%s asked to cancel\n", n,
			       n == 1 ? "" : "s");
		} else {
			static const char *const heads[] = { "KEY", "JOB" };
			dr_table *jt = table_new(2, heads, NULL);

			printf("\n");
			for (size_t i = 0;
			     jobs && i < json_object_array_length(jobs); i++) {
				json_object *j =
					json_object_array_get_idx(jobs, i);
				const char *row[2];

				row[0] = jstr(j, "key");
				row[1] = jstr(j, "id");
				table_add(jt, row);
			}
			table_print(jt, stdout);
			table_free(jt);
		}
		rc = 0;
	}
	json_object_put(root);
	dr_buf_free(&out);
	db_free(db);
	config_free(cfg);
	return rc;
}

static int cmd_batches_show(const cli *c, const cli_args *a)
{
	return batches_action(c, a, 0);
}

static int cmd_batches_cancel(const cli *c, const cli_args *a)
{
	return batches_action(c, a, 1);
}

/* ------------------------------------------------------------------------
 * files list | show | delete
 */

static const char *const file_heads[] = { "ID",	     "TYPE",	    "BYTES",
					  "SHA256",  "FILENAME",    "CREATED",
					  "EXPIRES", "RUNNING JOBS" };

static void print_file_row(dr_table *t, json_object *f)
{
	char created[24], expires[24], sha[16], bytes[24], running[24];
	const char *row[8];

	snprintf(sha, sizeof(sha), "%.12s",
		 jstr(f, "sha256") ? jstr(f, "sha256") : "");
	snprintf(bytes, sizeof(bytes), "%lld",
		 (long long)json_object_get_int64(jget(f, "bytes")));
	snprintf(running, sizeof(running), "%d",
		 json_object_get_int(jget(f, "jobs_running")));
	row[0] = jstr(f, "id");
	row[1] = jstr(f, "content_type");
	row[2] = bytes;
	row[3] = sha;
	row[4] = jstr(f, "filename");
	row[5] = short_time(jstr(f, "created_at"), created);
	row[6] = short_time(jstr(f, "expires_at"), expires);
	row[7] = running;
	table_add(t, row);
}

static int cmd_files_list(const cli *c, const cli_args *a)
{
	const char *cmd = a->cmd->name, *cursor;
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	int rc = 1, limit;
	dr_buf out;
	dr_error err;

	if (page_opts(a, ids_is_file_id, &limit, &cursor))
		return EXIT_USAGE;
	if (open_db(c, cmd, &cfg, &db))
		return 1;
	dr_buf_init(&out, CLI_JSON_MAX);
	dr_error_clear(&err);
	if (files_list(db, cfg, limit, cursor, &out, &err) != DR_OK)
		report(cmd, &err);
	else
		rc = print_list(cmd, &out, cli_flag(a, "--json"), 8, file_heads,
				print_file_row);
	dr_buf_free(&out);
	db_free(db);
	config_free(cfg);
	return rc;
}

/* files show ID / files delete ID. */
static int files_action(const cli *c, const cli_args *a, int del)
{
	const char *cmd = a->cmd->name, *id = a->pos[0];
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	dr_plugins *plugins = NULL;
	struct dr_instance *sink = NULL;
	json_object *root = NULL;
	int rc = 1;
	dr_buf out;
	dr_error err;

	if (!ids_is_file_id(id)) {
		fprintf(stderr, "darkroom %s: %s: not a file id (f_...)\n", cmd,
			id);
		return 1;
	}
	if (open_db(c, cmd, &cfg, &db))
		return 1;
	if (del && open_sink(cmd, cfg, &plugins, &sink) != 0) {
		db_free(db);
		config_free(cfg);
		return 1;
	}
	dr_buf_init(&out, CLI_JSON_MAX);
	dr_error_clear(&err);
	if (del) {
		if (files_delete(db, sink, id, &err) != DR_OK) {
			report(cmd, &err);
		} else {
			printf("deleted %s\n", id);
			rc = 0;
		}
	} else if (files_render(db, cfg, id, &out, &err) != DR_OK) {
		report(cmd, &err);
	} else if (cli_flag(a, "--json")) {
		printf("%s\n", out.data);
		rc = 0;
	} else if (parse_answer(cmd, &out, &root) == 0) {
		dr_table *t = table_new(8, file_heads, NULL);

		print_file_row(t, root);
		table_print(t, stdout);
		table_free(t);
		printf("\n");
		show_field("sha256", jstr(root, "sha256"));
		show_field("key", jstr(root, "key"));
		show_field("url", jstr(root, "url"));
		rc = 0;
	}
	json_object_put(root);
	dr_buf_free(&out);
	plugins_free(plugins);
	db_free(db);
	config_free(cfg);
	return rc;
}

static int cmd_files_show(const cli *c, const cli_args *a)
{
	return files_action(c, a, 0);
}

static int cmd_files_delete(const cli *c, const cli_args *a)
{
	return files_action(c, a, 1);
}

/* Set by SIGINT and SIGTERM once catch_interrupts() ran: long commands
 * stop after the batch under way. */
static volatile sig_atomic_t stop_requested;

static void on_interrupt(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void catch_interrupts(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* `jobs delete --metadata K=V...`: a selector deletion, run here to its
 * end (or until only jobs that have not ended are left). */
static int delete_selected(const char *cmd, dr_db *db, const cli_filters *fs)
{
	static const char *const names[] = { NULL };
	dr_metadata_filter meta[DR_MAX_METADATA_FILTERS];
	char id[DR_DELETION_ID_LEN + 1];
	const char *field = NULL;
	json_object *root = NULL, *counts;
	size_t n_meta;
	int limit, more = 1, tty = isatty(STDERR_FILENO), rc = 1;
	dr_buf out;
	dr_error err;
	dr_status st;

	dr_error_clear(&err);
	if (jobs_filter_args(fs->args, fs->n, names, NULL, meta, &n_meta,
			     &limit, &field, &err) != DR_OK) {
		cli_filters_report(cmd, fs, field, &err);
		return EXIT_USAGE;
	}
	catch_interrupts();
	st = deletion_request(db, meta, n_meta, "cli", id, &err);
	if (st != DR_OK) {
		report(cmd, &err);
		return 1;
	}
	while (st == DR_OK && more && !stop_requested) {
		st = deletion_run_batch(db, id, &more, &err);
		if (tty && st == DR_OK)
			fprintf(stderr, "\rdelete: %s ...", id);
	}
	if (tty)
		fputc('\n', stderr);
	dr_buf_init(&out, CLI_JSON_MAX);
	if (st == DR_OK)
		st = deletion_render(db, id, &out, &err);
	if (st != DR_OK) {
		report(cmd, &err);
		/* Recorded and due: the worker carries it on. */
		fprintf(stderr,
			"darkroom %s: deletion %s goes on in the worker (GET "
			"/v1/deletions/%s)\n",
			cmd, id, id);
	} else if (parse_answer(cmd, &out, &root) == 0) {
		counts = jget(root, "counts");
		printf("%s %s: %s jobs deleted, %s objects released", id,
		       jstr(root, "state"), jstr(counts, "jobs_deleted"),
		       jstr(counts, "objects_released"));
		if (stop_requested)
			printf("; interrupted: the worker carries it on");
		else if (strcmp(jstr(root, "state"), "done") != 0)
			printf(", %s jobs not ended yet (canceled; the worker "
			       "deletes them once they end)",
			       jstr(counts, "jobs_waiting"));
		printf("\n");
		rc = stop_requested ? 130 : 0;
	}
	json_object_put(root);
	dr_buf_free(&out);
	return rc;
}

static int cmd_jobs_delete(const cli *c, const cli_args *a)
{
	const char *cmd = a->cmd->name;
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	cli_filters fs;
	dr_error err;
	int rc = EXIT_USAGE;

	if (cli_filters_read(a, &fs))
		goto out;
	if ((fs.n > 0) == (a->n_pos > 0)) {
		fprintf(stderr,
			"darkroom %s: give job ids or --metadata KEY=VALUE "
			"filters (not both)\n",
			cmd);
		goto out;
	}
	rc = 1;
	if (open_db(c, cmd, &cfg, &db))
		goto out;
	if (fs.n > 0) {
		rc = delete_selected(cmd, db, &fs);
		goto out;
	}
	rc = 0;
	for (size_t i = 0; i < a->n_pos; i++) {
		dr_deletion_counts n;

		dr_error_clear(&err);
		if (deletion_delete_job(db, a->pos[i], "cli", NULL, &n, &err) !=
		    DR_OK) {
			fprintf(stderr, "darkroom %s: %s: %s\n", cmd, a->pos[i],
				err.message);
			rc = 1;
			continue;
		}
		printf("%s deleted (%llu objects released)\n", a->pos[i],
		       (unsigned long long)n.objects_released);
	}
	/* The worker removes the released objects: wake it. */
	queue_wakeup_send(cfg->worker.wakeup_socket);
out:
	cli_filters_free(&fs);
	db_free(db);
	config_free(cfg);
	return rc;
}

/* ------------------------------------------------------------------------
 * outputs
 */

static void print_outputs_table(json_object *root)
{
	static const char *const heads[] = {
		"JOB",	 "IDX",	    "KIND",	  "MODEL", "SIZE",
		"BYTES", "CREATED", "RENDITIONS", "URL"};
	static const size_t max[] = {0, 0, 0, 40, 0, 0, 0, 40, 0};
	json_object *data = jget(root, "data");
	dr_table *t = table_new(9, heads, max);

	for (size_t i = 0; data && i < json_object_array_length(data); i++) {
		json_object *o = json_object_array_get_idx(data, i);
		json_object *rs = jget(o, "renditions");
		char size[32] = "", created[24], names[256] = "";
		const char *row[9];
		size_t n = 0;

		if (jstr(o, "width"))
			snprintf(size, sizeof(size), "%sx%s", jstr(o, "width"),
				 jstr(o, "height"));
		for (size_t k = 0; rs && k < json_object_array_length(rs) &&
				   n < sizeof(names) - 1;
		     k++) {
			int w = snprintf(names + n, sizeof(names) - n, "%s%s",
					 k ? "," : "",
					 jstr(json_object_array_get_idx(rs, k),
					      "name"));

			if (w > 0)
				n += (size_t)w;
		}
		row[0] = jstr(o, "job_id");
		row[1] = jstr(o, "index");
		row[2] = jstr(o, "kind");
		row[3] = jstr(o, "model");
		row[4] = size[0] ? size : NULL;
		row[5] = jstr(o, "bytes");
		row[6] = short_time(jstr(o, "created_at"), created);
		row[7] = names[0] ? names : NULL;
		row[8] = jstr(o, "url");
		table_add(t, row);
	}
	table_print(t, stdout);
	table_free(t);
	if (jstr(root, "next_cursor"))
		printf("\nnext page: --cursor %s\n", jstr(root, "next_cursor"));
}

static int cmd_outputs(const cli *c, const cli_args *a)
{
	const char *cmd = a->cmd->name, *field = NULL;
	dr_output_filter f;
	cli_filters fs;
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	dr_plugins *plugins = NULL;
	struct dr_instance *sink = NULL;
	json_object *root = NULL;
	dr_buf out;
	dr_error err;
	int json = cli_flag(a, "--json"), rc = EXIT_USAGE;

	if (cli_filters_read(a, &fs))
		goto out;
	dr_error_clear(&err);
	if (outputs_filter_parse(fs.args, fs.n, &f, &field, &err) != DR_OK) {
		cli_filters_report(cmd, &fs, field, &err);
		goto out;
	}
	rc = 1;
	if (open_db(c, cmd, &cfg, &db))
		goto out;
	dr_buf_init(&out, CLI_JSON_MAX);
	dr_error_clear(&err);
	if (open_sink(cmd, cfg, &plugins, &sink) != 0) {
		/* reported */
	} else if (outputs_search(db, sink, &f, &out, &err) != DR_OK) {
		report(cmd, &err);
	} else if (json) {
		printf("%s\n", out.data);
		rc = 0;
	} else if (parse_answer(cmd, &out, &root) == 0) {
		print_outputs_table(root);
		rc = 0;
	}
	json_object_put(root);
	dr_buf_free(&out);
	plugins_free(plugins);
	db_free(db);
	config_free(cfg);
out:
	cli_filters_free(&fs);
	return rc;
}

/* ------------------------------------------------------------------------
 * reprocess
 */

static int cmd_reprocess(const cli *c, const cli_args *a)
{
	const char *cmd = a->cmd->name;
	const char *names[DR_MAX_RENDITIONS];
	size_t n_names = 0;
	char since[48], until[48];
	dr_reprocess_opts o;
	dr_reprocess_stats s;
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	dr_plugins *plugins = NULL;
	dr_error err;
	dr_status st;
	int all = 0, rc = 1;

	memset(&o, 0, sizeof(o));
	for (size_t i = 0; i < a->n_given; i++) {
		const char *opt = a->given[i].opt, *v = a->given[i].value;

		if (strcmp(opt, "--all") == 0) {
			all = 1;
		} else if (strcmp(opt, "--dry-run") == 0) {
			o.dry_run = 1;
		} else if (strcmp(opt, "--model") == 0) {
			o.model = v;
		} else if (strcmp(opt, "--job") == 0) {
			if (!ids_is_job_id(v)) {
				fprintf(stderr, "darkroom %s: --job: '%s' is "
						"not a job id\n",
					cmd, v);
				return EXIT_USAGE;
			}
			o.job_id = v;
		} else if (strcmp(opt, "--preset") == 0) {
			if (n_names == DR_MAX_RENDITIONS) {
				fprintf(stderr, "darkroom %s: at most %d "
						"--preset\n",
					cmd, DR_MAX_RENDITIONS);
				return EXIT_USAGE;
			}
			names[n_names++] = v;
		} else {
			int is_since = strcmp(opt, "--since") == 0;

			if (outputs_parse_time(v, is_since ? since : until)) {
				fprintf(stderr, "darkroom %s: %s takes an ISO "
						"8601 UTC time, e.g. "
						"2026-11-21T10:00:00Z\n",
					cmd, opt);
				return EXIT_USAGE;
			}
			if (is_since)
				o.since = since;
			else
				o.until = until;
		}
	}
	if (!all && !o.model && !o.job_id && !o.since && !o.until) {
		fprintf(stderr, "darkroom %s: say which outputs: --all, "
				"--model, --job, --since or --until\n",
			cmd);
		return EXIT_USAGE;
	}
	if (all && (o.model || o.job_id || o.since || o.until)) {
		fprintf(stderr, "darkroom %s: --all goes alone, without "
				"--model, --job, --since or --until\n",
			cmd);
		return EXIT_USAGE;
	}
	if (load_config(c, &cfg))
		return 1;
	for (size_t i = 0; i < n_names; i++) {
		const dr_preset *p = config_preset(cfg, names[i]);

		if (!p) {
			fprintf(stderr, "darkroom %s: no preset named '%s' in "
					"%s\n",
				cmd, names[i], cfg->path);
			config_free(cfg);
			return EXIT_USAGE;
		}
		o.presets[o.n_presets++] = p;
	}
	dr_error_clear(&err);
	if (image_init("darkroom") != DR_OK) {
		fprintf(stderr, "darkroom %s: libvips did not start\n", cmd);
		goto out;
	}
	if (plugins_init(cfg, 1, &plugins, &err) != DR_OK) {
		fprintf(stderr, "darkroom %s: %s\n", cmd, err.message);
		goto out;
	}
	db = db_new(cfg);
	if (db_ping(db, &err) != DR_OK) {
		report(cmd, &err);
		goto out;
	}
	catch_interrupts();
	o.progress = stderr;
	o.tty = isatty(STDERR_FILENO);
	o.stop = &stop_requested;
	st = reprocess_run(cfg, db, plugins, &o, &s, &err);
	printf("reprocess: %llu of %llu outputs, %llu renditions %s, "
	       "%llu already current, %llu failed\n",
	       (unsigned long long)s.done, (unsigned long long)s.outputs,
	       (unsigned long long)s.made, o.dry_run ? "to make" : "made",
	       (unsigned long long)s.current, (unsigned long long)s.failed);
	if (st != DR_OK) {
		report(cmd, &err);
	} else if (s.interrupted) {
		fprintf(stderr, "darkroom %s: interrupted; run the same "
				"command again to continue\n",
			cmd);
		rc = 130;
	} else if (s.failed) {
		fprintf(stderr, "darkroom %s: %llu outputs failed (see "
				"above)\n",
			cmd, (unsigned long long)s.failed);
	} else {
		rc = 0;
	}
out:
	db_free(db);
	plugins_free(plugins);
	config_free(cfg);
	return rc;
}

/* ------------------------------------------------------------------------
 * prune
 */

/* A setting as written in the config ("24h", "7d"): whole days, else
 * hours, minutes or seconds. */
static void spell_duration(double v, char *out, size_t size)
{
	long long s = (long long)v;

	if (s % 86400 == 0)
		snprintf(out, size, "%lldd", s / 86400);
	else if (s % 3600 == 0)
		snprintf(out, size, "%lldh", s / 3600);
	else if (s % 60 == 0)
		snprintf(out, size, "%lldm", s / 60);
	else
		snprintf(out, size, "%llds", s);
}

/* Delete the ended jobs past [retention] jobs, a transaction per batch
 * until one is short or Ctrl-C; progress and the longest transaction
 * (its locks are held that long) on stderr; the batches write the pass's
 * audit record as they go, and it is done at the end. */
static dr_status prune_jobs(dr_db *db, const dr_config *cfg, int tty,
			    dr_expiry *x, dr_error *err)
{
	uint64_t batches = 0;
	double longest = 0;
	dr_status st = DR_OK;
	int more = 1;

	x->by = "cli";
	while (st == DR_OK && more && !stop_requested) {
		struct timespec t0, t1;
		double ms;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		st = deletion_expired_batch(db, cfg, DR_DELETION_BATCH, x,
					    &more, err);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		     (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
		if (ms > longest)
			longest = ms;
		batches++;
		if (tty)
			fprintf(stderr, "\rprune: jobs: %llu deleted",
				(unsigned long long)x->c.jobs_deleted);
	}
	if (tty)
		fputc('\n', stderr);
	fprintf(stderr,
		"prune: jobs: %llu deleted in %llu transactions, the longest "
		"%.1f ms\n",
		(unsigned long long)x->c.jobs_deleted,
		(unsigned long long)batches, longest);
	if (st == DR_OK)
		st = deletion_expiry_done(db, x, err);
	return st;
}

static int cmd_prune(const cli *c, const cli_args *a)
{
	const char *cmd = a->cmd->name;
	int dry = cli_flag(a, "--dry-run"), tty = isatty(STDERR_FILENO);
	uint64_t n[DR_RET_TABLES] = { 0 }, objs = 0;
	size_t files_n = 0;
	dr_expiry jobs;
	int any_jobs = 0;
	dr_object_removals rm;
	dr_config *cfg = NULL;
	dr_db *db = NULL;
	dr_plugins *plugins = NULL;
	struct dr_instance *sink = NULL;
	dr_error err;
	dr_status st = DR_OK;
	int interrupted = 0;

	memset(&rm, 0, sizeof(rm));
	memset(&jobs, 0, sizeof(jobs));
	if (open_db(c, cmd, &cfg, &db))
		return 1;
	for (int i = 0; i < 3; i++)
		any_jobs |= cfg->retention.jobs[i] > 0;
	if (!dry && open_sink(cmd, cfg, &plugins, &sink) != 0) {
		db_free(db);
		config_free(cfg);
		return 1;
	}
	catch_interrupts();
	dr_error_clear(&err);
	for (int t = 0; t < DR_RET_TABLES && st == DR_OK && !interrupted; t++) {
		dr_retention_stats s;

		if (retention_setting(cfg, t) <= 0)
			continue;
		if (dry) {
			st = retention_count(db, cfg, t, &n[t], &err);
			continue;
		}
		st = retention_table(db, cfg, t, DR_RETENTION_BATCH, stderr,
				     tty, &stop_requested, &s, &err);
		n[t] = s.deleted;
		interrupted = s.interrupted;
	}
	/* Ended jobs past [retention] jobs: batches of DR_DELETION_BATCH,
	 * one audit record for them all (deletion.h). */
	if (st == DR_OK && !interrupted && any_jobs) {
		if (dry) {
			st = deletion_count_expired(db, cfg,
						    &jobs.c.jobs_deleted, &err);
		} else {
			st = prune_jobs(db, cfg, tty, &jobs, &err);
			interrupted = stop_requested != 0;
		}
	}
	/* Objects no row uses: a deleted job's, due at once, and those
	 * replaced, due after [retention] superseded; batches until one
	 * finds fewer than a batch due (objects.h). */
	if (st == DR_OK && !interrupted) {
		if (dry) {
			st = objects_count_due(db, &objs, &err);
		} else if (!sink) {
			st = dr_fail(&err, DR_ERR_CONFIG, "sink_missing",
				     "no sink is configured");
		} else {
			uint64_t looked;

			do {
				looked = rm.looked;
				st = objects_remove_due(
					db, sink, DR_OBJECT_BATCH, &rm, &err);
			} while (st == DR_OK && !stop_requested &&
				 rm.looked - looked >= DR_OBJECT_BATCH);
			interrupted = stop_requested != 0;
			objs = rm.removed;
			if (rm.failed)
				fprintf(stderr,
					"prune: objects: %llu removals failed "
					"(tried again later)\n",
					(unsigned long long)rm.failed);
		}
	}
	/* Uploaded files past [files] ttl that no running job uses
	 * (files.h). */
	if (st == DR_OK && !interrupted && dry && cfg->files.ttl > 0) {
		uint64_t would = 0;

		st = files_count_expired(db, &would, &err);
		files_n = (size_t)would;
	} else if (st == DR_OK && !interrupted && cfg->files.ttl > 0) {
		size_t got;

		do {
			got = 0;
			st = files_expire(db, sink, DR_FILES_PAGE_MAX, &got,
					  &err);
			files_n += got;
		} while (st == DR_OK && !stop_requested &&
			 got == DR_FILES_PAGE_MAX);
		interrupted = stop_requested != 0;
	}
	if (st != DR_OK && dry)
		goto out; /* no counts to show */
	printf("prune:%s", dry ? " would remove" : "");
	for (int t = 0; t < DR_RET_TABLES; t++) {
		double keep = retention_setting(cfg, t);
		char spelled[32];

		if (keep > 0) {
			spell_duration(keep, spelled, sizeof(spelled));
			printf("%s %llu %s (older than %s)", t ? "," : "",
			       (unsigned long long)n[t],
			       retention_table_name(t), spelled);
		} else {
			printf("%s %s kept (retention off)", t ? "," : "",
			       retention_table_name(t));
		}
	}
	if (any_jobs)
		printf(", %llu jobs (ended before their [retention] setting)",
		       (unsigned long long)jobs.c.jobs_deleted);
	else
		printf(", jobs kept (retention off)");
	if (cfg->files.ttl > 0)
		printf(", %zu files (past [files] ttl)", files_n);
	else
		printf(", files kept ([files] ttl off)");
	printf(", %llu objects (no longer used)", (unsigned long long)objs);
	printf("%s\n", dry ? "; nothing changed (dry run)" : "");
out:
	plugins_free(plugins);
	db_free(db);
	config_free(cfg);
	if (st != DR_OK) {
		report(cmd, &err);
		return 1;
	}
	if (interrupted) {
		fprintf(stderr,
			"darkroom %s: interrupted; run it again to "
			"continue\n",
			cmd);
		return 130;
	}
	return 0;
}

static int cmd_version(const cli *c, const cli_args *a)
{
	(void)c;
	(void)a;
	printf("darkroom %s (plugin ABI %u)\n", DR_VERSION,
	       DR_PLUGIN_ABI_VERSION);
	return 0;
}

/* ------------------------------------------------------------------------
 * The command table
 */

/* The help texts are laid out by hand, as printed. */
/* clang-format off */
static const cli_cmd commands[] = {
	{
		.name = "migrate",
		.summary = "create or upgrade the database schema",
		.opts = "--dir=",
		.help = "usage: darkroom migrate [--dir DIR]\n\n"
			"Create the database if needed and apply the migrations "
			"not yet applied,\nin order. Safe to run again. Refuses a "
			"database newer than this darkroom.\n"
			"Then runs once the upkeep of the adapters that have "
			"one (replicate fetches\nits webhook signing secret "
			"and stores it for the app); a failure there is a\n"
			"warning, and the worker tries again when it "
			"starts.\n\n"
			"  --dir DIR  migrations folder (default: [database] "
			"migrations_dir)",
		.run = cmd_migrate,
	},
	{
		.name = "worker",
		.summary = "run the job workers (foreground)",
		.opts = "--processes=",
		.help = "usage: darkroom worker [--processes N]\n\n"
			"Run the job workers in the foreground: a supervisor "
			"and [worker] processes\nchildren that claim due jobs "
			"from MariaDB and run their steps (submit,\npoll, "
			"cancel). SIGTERM or SIGINT stops them gracefully; "
			"logs go to stderr.\n\n"
			"  --processes N  worker processes (default: [worker] "
			"processes), 1 to 64",
		.run = cmd_worker,
	},
	{
		.name = "jobs list",
		.summary = "list jobs (filters, table or --json)",
		.opts = "--status= --model= --adapter= --metadata= --limit= "
			"--cursor= --batch= --kind= --json",
		.help = "usage: darkroom jobs list [--status S] [--model M] "
			"[--adapter A] [--batch B]\n"
			"                         [--kind K]\n"
			"                         [--metadata K=V]... [--limit N] "
			"[--cursor C] [--json]\n\n"
			"List jobs, newest first, as an aligned table (ID, "
			"STATUS, ADAPTER, MODEL,\nPROGRESS, CREATED, ERROR); the "
			"same query as GET /v1/jobs.\n\n"
			"  --status S      jobs in this status, one of\n"
			"                  " JOBSTATE_NAMES "\n"
			"  --model M       jobs of this model\n"
			"  --adapter A     jobs of this adapter\n"
			"  --batch B       jobs of batch B (b_...)\n"
			"  --kind K        jobs of this kind: prediction, "
			"training or workflow\n"
			"  --metadata K=V  jobs whose metadata has K with value "
			"V; repeat it (up to\n"
			"                  16 keys) for jobs that have all of "
			"them\n"
			"  --limit N       jobs per page, 1 to 100 (default 20)\n"
			"  --cursor C      the next page (printed under a full "
			"page)\n"
			"  --json          print the API's JSON answer instead",
		.run = cmd_jobs_list,
	},
	{
		.name = "jobs show",
		.args = "ID",
		.summary = "a job, its event log and its outputs",
		.min_pos = 1,
		.max_pos = 1,
		.missing = "give a job id",
		.opts = "--json",
		.help = "usage: darkroom jobs show ID [--json]\n\n"
			"Show a job: its fields (its callback among them: "
			"the URL, and its latest\ndelivery's state, "
			"attempts, last HTTP status and next try), its "
			"event\nlog (time, kind, status change, detail), its "
			"outputs with their\nrenditions, and every try of "
			"its callback (webhook-id, try, start,\n"
			"milliseconds, HTTP status, error).\n\n"
			"  --json  print the job object as GET /v1/jobs/ID "
			"answers it",
		.run = cmd_jobs_show,
	},
	{
		.name = "jobs retry",
		.args = "ID",
		.summary = "start a failed or canceled job again, or send "
			   "its callback again",
		.min_pos = 1,
		.max_pos = 1,
		.missing = "give a job id",
		.opts = "--callback",
		.help = "usage: darkroom jobs retry [--callback] ID\n\n"
			"Start a failed or canceled job again, wake the "
			"workers and print the\njob's new status. A job "
			"that failed while its outputs were stored\n"
			"(download, render, upload, index) resumes there; "
			"any other is submitted\nagain as a new "
			"prediction. Exit status 1 when there is no such "
			"job or\nit is in another state.\n\n"
			"  --callback  send the ended job's callback again "
			"instead (as POST\n              "
			"/v1/jobs/ID/callback/retry): its latest delivery, "
			"delivered or\n              given up, is tried "
			"again with the same webhook-id; prints\n"
			"              \"ID callback pending\". Exit status "
			"1 when the job has not\n              ended, has "
			"no callback_url or its callback is still pending.",
		.run = cmd_jobs_retry,
	},
	{
		.name = "jobs cancel",
		.args = "ID",
		.summary = "cancel a job",
		.min_pos = 1,
		.max_pos = 1,
		.missing = "give a job id",
		.help = "usage: darkroom jobs cancel ID\n\n"
			"Cancel a job: a queued job ends at once; a "
			"running one is canceled at\nthe provider by a "
			"worker (woken now). Prints the job's status. "
			"Exit\nstatus 1 when there is no such job or it "
			"already ended.",
		.run = cmd_jobs_cancel,
	},
	{
		.name = "jobs delete",
		.args = "ID...",
		.summary = "delete ended jobs and what only they stored",
		.opts = "--metadata=",
		.max_pos = CLI_MAX_POSITIONAL,
		.help = "usage: darkroom jobs delete ID...\n"
			"       darkroom jobs delete --metadata K=V...\n\n"
			"Delete jobs as DELETE /v1/jobs/{id} does: the job, "
			"its outputs, renditions,\nmetadata, events and "
			"idempotency keys, and every stored object no other\n"
			"job uses (the worker removes those from the sink). "
			"Only ended jobs\n(succeeded, failed, canceled). Each "
			"deletion leaves an audit record.\n\n"
			"  --metadata K=V  delete every job whose metadata has "
			"K with value V\n"
			"                  (repeat: all must match), as "
			"DELETE /v1/jobs?metadata.K=V:\n"
			"                  batches of 100 jobs; jobs that have "
			"not ended are\n"
			"                  canceled and deleted by the worker "
			"once they end\n\n"
			"Prints one line per job (or the deletion's counts). "
			"Exit status 1 when a\njob was not deleted (unknown, "
			"or not ended: cancel it first), one line\non stderr "
			"each. At most 100 ids per run. Metadata values match "
			"exactly (letter\ncase and spaces count). A deletion "
			"by metadata that is interrupted (Ctrl-C,\nexit status "
			"130) or fails goes on in the worker.",
		.run = cmd_jobs_delete,
	},
	{
		.name = "batches list",
		.summary = "list batches (table or --json)",
		.opts = "--limit= --cursor= --json",
		.help = "usage: darkroom batches list [--limit N] [--cursor C] "
			"[--json]\n\n"
			"List batches (POST /v1/batches), newest first, as an "
			"aligned table: ID,\nSTATUS (running or completed), "
			"the counts of its jobs by status\n(queued/running/"
			"succeeded/failed/canceled), CREATED, COMPLETED.\n\n"
			"  --limit N   batches per page, 1 to 100 (default 20)\n"
			"  --cursor C  the next page (printed under a full "
			"page)\n"
			"  --json      print {\"data\": [...], "
			"\"next_cursor\": ...} instead",
		.run = cmd_batches_list,
	},
	{
		.name = "batches show",
		.args = "ID",
		.summary = "a batch, its counts and its jobs",
		.min_pos = 1,
		.max_pos = 1,
		.missing = "give a batch id",
		.opts = "--json",
		.help = "usage: darkroom batches show ID [--json]\n\n"
			"Show a batch: its status and the counts of its jobs, "
			"then each item's\nkey and job id in item order "
			"(`darkroom jobs list --batch ID` lists\nthe jobs "
			"themselves). Exit status 1 when there is no such "
			"batch.\n\n"
			"  --json  print the batch object as GET "
			"/v1/batches/ID answers it",
		.run = cmd_batches_show,
	},
	{
		.name = "batches cancel",
		.args = "ID",
		.summary = "cancel every job of a batch not yet ended",
		.min_pos = 1,
		.max_pos = 1,
		.missing = "give a batch id",
		.help = "usage: darkroom batches cancel ID\n\n"
			"Cancel every job of the batch that has not ended, as "
			"POST\n/v1/batches/ID/cancel does: queued jobs end at "
			"once, running ones are\ncanceled at the provider by "
			"a worker (woken now). Prints the batch and\nhow many "
			"jobs were asked to cancel. Exit status 1 when there "
			"is no such\nbatch.",
		.run = cmd_batches_cancel,
	},
	{
		.name = "files list",
		.summary = "list uploaded files (table or --json)",
		.opts = "--limit= --cursor= --json",
		.help = "usage: darkroom files list [--limit N] [--cursor C] "
			"[--json]\n\n"
			"List uploaded input files (POST /v1/files), newest "
			"first, as an aligned\ntable: ID, TYPE, BYTES, the "
			"start of the SHA256, FILENAME, CREATED,\nEXPIRES "
			"([files] ttl) and RUNNING JOBS (jobs not ended that "
			"use it).\n\n"
			"  --limit N   files per page, 1 to 100 (default 20)\n"
			"  --cursor C  the next page (printed under a full "
			"page)\n"
			"  --json      print {\"data\": [...], "
			"\"next_cursor\": ...} instead",
		.run = cmd_files_list,
	},
	{
		.name = "files show",
		.args = "ID",
		.summary = "an uploaded file",
		.min_pos = 1,
		.max_pos = 1,
		.missing = "give a file id",
		.opts = "--json",
		.help = "usage: darkroom files show ID [--json]\n\n"
			"Show an uploaded file: its row as in `files list`, "
			"then its full\nSHA-256, storage key and URL. Exit "
			"status 1 when there is no such file.\n\n"
			"  --json  print the file object as GET /v1/files/ID "
			"answers it",
		.run = cmd_files_show,
	},
	{
		.name = "files delete",
		.args = "ID",
		.summary = "delete an uploaded file",
		.min_pos = 1,
		.max_pos = 1,
		.missing = "give a file id",
		.help = "usage: darkroom files delete ID\n\n"
			"Delete an uploaded file, its row and its stored "
			"object, as DELETE\n/v1/files/ID does. Exit status 1 "
			"when there is no such file, or while a\njob that "
			"has not ended uses it.",
		.run = cmd_files_delete,
	},
	{
		.name = "outputs",
		.summary = "search the stored outputs",
		.opts = "--model= --adapter= --sha256= --metadata= --since= "
			"--until= -q= --limit= --cursor= --json",
		.help = "usage: darkroom outputs [--model M] [--adapter A] "
			"[--sha256 HEX]\n"
			"                        [--metadata K=V]... "
			"[--since T] [--until T] [-q TEXT]\n"
			"                        [--limit N] [--cursor C] "
			"[--json]\n\n"
			"Search the output index like GET /v1/outputs, newest "
			"first.\n\n"
			"  --model M        outputs of jobs of this model\n"
			"  --adapter A      outputs of jobs of this adapter\n"
			"  --sha256 HEX     outputs with these bytes\n"
			"  --metadata K=V   outputs of jobs whose metadata has K "
			"with value V;\n"
			"                   repeat it (up to 16 keys) for jobs "
			"that have all of them\n"
			"  --since T        made at or after T (ISO 8601 UTC, "
			"e.g. 2026-11-21T10:00:00Z)\n"
			"  --until T        made before T\n"
			"  -q TEXT          text outputs and prompts containing "
			"TEXT\n"
			"  --limit N        outputs per page, 1 to 100 (default "
			"20)\n"
			"  --cursor C       the next page\n"
			"  --json           print the API's JSON answer instead",
		.run = cmd_outputs,
	},
	{
		.name = "reprocess",
		.summary = "make renditions again (new or changed presets)",
		.opts = "--all --model= --job= --since= --until= --preset= "
			"--dry-run",
		.help = "usage: darkroom reprocess --all [--preset NAME]... "
			"[--dry-run]\n"
			"       darkroom reprocess (--model M | --job ID | "
			"--since T | --until T)...\n"
			"                          [--preset NAME]... "
			"[--dry-run]\n\n"
			"Make renditions again for stored image outputs, e.g. "
			"after a preset was\nadded or changed: for each output "
			"(oldest first), each preset its job asked\nfor (or "
			"each --preset) whose rendition is missing or was made "
			"with other\nsettings is made from the original, read "
			"back from the sink, and stored.\nRenditions already "
			"current are left alone, so running the same command\n"
			"again after an interruption (Ctrl-C stops after the "
			"current output)\ncontinues where it stopped. Progress "
			"goes to stderr.\n\n"
			"  --all           every stored image output\n"
			"  --model M       outputs of jobs of this model\n"
			"  --job ID        outputs of this job\n"
			"  --since T       outputs made at or after T (ISO 8601 "
			"UTC)\n"
			"  --until T       outputs made before T\n"
			"  --preset NAME   make this preset (repeatable) instead "
			"of the job's list\n"
			"  --dry-run       count what would be made, store "
			"nothing\n\n"
			"Exit status: 0 done, 1 an output failed or the database "
			"is unavailable,\n130 interrupted.",
		.run = cmd_reprocess,
	},
	{
		.name = "prune",
		.summary = "remove expired idempotency keys, webhook ids, "
			   "jobs and unused objects",
		.opts = "--dry-run",
		.help = "usage: darkroom prune [--dry-run]\n\n"
			"Apply the [retention] settings now, as the worker does "
			"every minute:\nremove the idempotency keys and the "
			"webhook delivery ids older than\ntheir setting, "
			"1000 rows per statement, each statement committed\n"
			"on its own; delete the ended jobs older than [retention] "
			"jobs (or their\nstatus's setting), 100 per "
			"transaction, leaving one audit record; then\nremove "
			"from the sink the stored objects no row uses any more "
			"(a deleted\njob's at once, a rendition replaced by "
			"reprocess after [retention]\nsuperseded), 100 at a "
			"time. Progress goes to stderr; the summary (rows,\n"
			"jobs and objects removed) to stdout. Ctrl-C stops "
			"after the current batch.\n\n"
			"  --dry-run  count the rows that would go, change "
			"nothing\n\n"
			"Exit status: 0 done, 1 the database is unavailable, "
			"130 interrupted.",
		.run = cmd_prune,
	},
	{
		.name = "config check",
		.summary = "validate the configuration",
		.opts = "--print",
		.help = "usage: darkroom config check [--print]\n\n"
			"Validate the configuration file and the plugin sections "
			"(loading each\nadapter's plugin and the active sink's; "
			"other sinks are only parsed).\nPrints 'ok' or the first "
			"error as file:line: message.\n\n"
			"  --print  also print the effective configuration "
			"(secrets hidden)",
		.run = cmd_config_check,
	},
	{
		.name = "plugins list",
		.summary = "list the plugins in the plugin directory",
		.opts = "--dir=",
		.help = "usage: darkroom plugins list [--dir DIR]\n\n"
			"List the plugins found in the plugin directory (default: "
			"[server] plugin_dir)\nwith their kind, version and "
			"description. Files that fail to load are\nreported with "
			"the reason and make the exit status 1.",
		.run = cmd_plugins_list,
	},
	{
		.name = "limits",
		.summary = "show the adapters' create-rate limits",
		.opts = "--json",
		.help = "usage: darkroom limits [--json]\n\n"
			"Show each configured adapter's create-rate limit "
			"([adapter] rate and\nburst) and its state in the "
			"database: how many seconds of create slots\nare "
			"booked ahead (BOOKED_AHEAD) and how far the line of "
			"jobs put off\nbeyond the booking horizon reaches "
			"(LINE_AHEAD). An adapter without a\nlimit shows "
			"RATE off.\n\n"
			"  --json  print a JSON array of {adapter, "
			"rate_per_second, burst,\n          booked_seconds, "
			"line_seconds} instead\n\n"
			"Exit status: 0 done, 1 the database is unavailable.",
		.run = cmd_limits,
	},
	{
		.name = "version",
		.summary = "print the version",
		.help = "usage: darkroom version\n\n"
			"Print darkroom's version and its plugin ABI "
			"version.",
		.run = cmd_version,
	},
};
/* clang-format on */

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Print the overview: every command of the table, then the options. */
static void usage(FILE *f)
{
	fputs("usage: darkroom [--config FILE] COMMAND [ARGS]\n\nCommands:\n",
	      f);
	for (size_t i = 0; i < N_COMMANDS; i++) {
		char spelled[64];

		snprintf(spelled, sizeof(spelled), "%s%s%s", commands[i].name,
			 commands[i].args ? " " : "",
			 commands[i].args ? commands[i].args : "");
		fprintf(f, "  %-15s %s\n", spelled, commands[i].summary);
	}
	fputs("  help COMMAND    the help of a command (as COMMAND --help)\n"
	      "\n"
	      "Options:\n"
	      "  --config FILE   config file (default $DARKROOM_CONF; in a\n"
	      "                  checkout's build folder, its\n"
	      "                  conf/darkroom.conf; else " DR_SYSCONF ")\n"
	      "  --help          show this help; COMMAND --help for a "
	      "command\n",
	      f);
}

/* The length of the group word of `name` ("jobs" of "jobs list"), or 0
 * when the command stands alone. */
static size_t group_len(const char *name)
{
	const char *sp = strchr(name, ' ');

	return sp ? (size_t)(sp - name) : 0;
}

static int in_group(const cli_cmd *cmd, const char *group)
{
	size_t n = group_len(cmd->name);

	return n && strlen(group) == n && strncmp(cmd->name, group, n) == 0;
}

/* The help of a group: its commands and where their help is. */
static void group_help(const char *group)
{
	const char *sep = "";

	printf("usage: darkroom %s ", group);
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (in_group(&commands[i], group)) {
			printf("%s%s", sep, commands[i].name + strlen(group) + 1);
			sep = "|";
		}
	puts(" ...\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (in_group(&commands[i], group)) {
			char spelled[64];

			snprintf(spelled, sizeof(spelled), "%s%s%s",
				 commands[i].name + strlen(group) + 1,
				 commands[i].args ? " " : "",
				 commands[i].args ? commands[i].args : "");
			printf("  %-15s %s\n", spelled, commands[i].summary);
		}
	printf("\ndarkroom %s SUBCOMMAND --help for each.\n", group);
}

/* "give a subcommand: list, show, retry or cancel" for a group. */
static void group_missing(const char *group)
{
	size_t n = 0, k = 0;

	for (size_t i = 0; i < N_COMMANDS; i++)
		n += (size_t)in_group(&commands[i], group);
	fprintf(stderr, "darkroom %s: give a subcommand: ", group);
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (in_group(&commands[i], group)) {
			k++;
			fprintf(stderr, "%s%s",
				k == 1	 ? ""
				: k == n ? " or "
					 : ", ",
				commands[i].name + strlen(group) + 1);
		}
	fputc('\n', stderr);
}

/*
 * Find the command that argv[0..argc) names: *cmd and the number of words
 * its name took (*words), or NULL. When argv[0] is a group, *group is set
 * to it (and *cmd to NULL if argv[1] names none of the group).
 */
static void find_command(int argc, char **argv, const cli_cmd **cmd,
			 int *words, const char **group)
{
	*cmd = NULL;
	*words = 0;
	*group = NULL;
	for (size_t i = 0; i < N_COMMANDS; i++) {
		const cli_cmd *c = &commands[i];
		size_t g = group_len(c->name);

		if (!g && strcmp(c->name, argv[0]) == 0) {
			*cmd = c;
			*words = 1;
			return;
		}
		if (g && in_group(c, argv[0])) {
			*group = argv[0];
			if (argc > 1 && strcmp(c->name + g + 1, argv[1]) == 0) {
				*cmd = c;
				*words = 2;
				return;
			}
		}
	}
}

static int is_help(const char *s)
{
	return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0;
}

/* 1 when `arg` is an option of `opts` (see cli_cmd) that takes a value, 0
 * for a flag, -1 when it is none of them. */
static int opt_takes(const char *opts, const char *arg)
{
	size_t n = strlen(arg);

	for (const char *p = opts; p && *p;) {
		size_t len = strcspn(p, " ");

		if (n && (len == n || (len == n + 1 && p[n] == '=')) &&
		    strncmp(p, arg, n) == 0)
			return len > n;
		p += len;
		p += strspn(p, " ");
	}
	return -1;
}

/*
 * Read args[0..argc) (what follows the command's name) against the
 * command's row into *a: options with their values in order, positionals
 * up to max_pos. 0, or EXIT_USAGE after one line on stderr (an unknown
 * option or a stray argument, an option without its value, a missing
 * positional). a->given is the caller's to free either way.
 */
static int parse_args(const cli_cmd *cmd, int argc, char **args, cli_args *a)
{
	memset(a, 0, sizeof(*a));
	a->cmd = cmd;
	a->given = dr_xcalloc((size_t)argc + 1, sizeof(*a->given));
	for (int i = 0; i < argc; i++) {
		int takes = opt_takes(cmd->opts, args[i]);

		if (takes >= 0) {
			a->given[a->n_given].opt = args[i];
			a->given[a->n_given].value = NULL;
			if (takes) {
				if (i + 1 >= argc) {
					fprintf(stderr, "darkroom %s: %s needs "
							"a value\n",
						cmd->name, args[i]);
					return EXIT_USAGE;
				}
				a->given[a->n_given].value = args[++i];
			}
			a->n_given++;
		} else if (args[i][0] != '-' && a->n_pos < cmd->max_pos) {
			a->pos[a->n_pos++] = args[i];
		} else {
			fprintf(stderr, "darkroom %s: unexpected argument "
					"'%s'\n",
				cmd->name, args[i]);
			return EXIT_USAGE;
		}
	}
	if (a->n_pos < cmd->min_pos) {
		fprintf(stderr, "darkroom %s: %s\n", cmd->name, cmd->missing);
		return EXIT_USAGE;
	}
	return 0;
}

/* `darkroom help [COMMAND]`: the overview, a group's or a command's
 * help; an unknown name is a usage error. */
static int help_command(int argc, char **argv)
{
	const cli_cmd *cmd;
	const char *group;
	int words;

	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	find_command(argc - 1, argv + 1, &cmd, &words, &group);
	if (cmd && words == argc - 1) {
		puts(cmd->help);
		return 0;
	}
	if (!cmd && group && argc == 2) {
		group_help(group);
		return 0;
	}
	fprintf(stderr, "darkroom help: no command '%s%s%s' (see darkroom "
			"--help)\n",
		argv[1], argc > 2 ? " " : "", argc > 2 ? argv[2] : "");
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	cli c = {DR_SYSCONF};
	const cli_cmd *cmd;
	const char *group;
	cli_args a;
	int i = 1, words, rc;

	dr_log_init("cli", DR_LOG_WARNING, 0);
	/* The worker and migrate run plugins that make requests. */
	plugins_set_http(&plugin_http_client);
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			c.conf_path = argv[i + 1];
			setenv("DARKROOM_CONF", argv[i + 1], 1);
			i += 2;
		} else if (is_help(argv[i])) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("darkroom %s\n", DR_VERSION);
			return 0;
		} else {
			fprintf(stderr, "darkroom: unknown option '%s'\n",
				argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i == argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	argc -= i;
	argv += i;
	if (strcmp(argv[0], "help") == 0)
		return help_command(argc, argv);
	find_command(argc, argv, &cmd, &words, &group);
	if (!cmd && group) {
		if (argc < 2) {
			group_missing(group);
			return EXIT_USAGE;
		}
		if (is_help(argv[1])) {
			group_help(group);
			return 0;
		}
		fprintf(stderr, "darkroom %s: unknown subcommand '%s'\n",
			group, argv[1]);
		return EXIT_USAGE;
	}
	if (!cmd) {
		fprintf(stderr,
			"darkroom: unknown command '%s' (see darkroom --help)\n",
			argv[0]);
		return EXIT_USAGE;
	}
	for (int k = words; k < argc; k++)
		if (is_help(argv[k])) {
			puts(cmd->help);
			return 0;
		}
	rc = parse_args(cmd, argc - words, argv + words, &a);
	if (rc == 0)
		rc = cmd->run(&c, &a);
	free(a.given);
	return rc;
}
