/*
 * cli_main.c - the `darkroom` command: subcommands for operators.
 *
 *   darkroom [--config FILE] COMMAND [ARGS]
 *
 * Exit codes: 0 success, 1 failure (one line on stderr), 2 usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "migrate.h"
#include "plugin.h"
#include "worker.h"

#define EXIT_USAGE 2

typedef struct cli {
	const char *conf_path;
} cli;

static void usage(FILE *f)
{
	fputs("usage: darkroom [--config FILE] COMMAND [ARGS]\n"
	      "\n"
	      "Commands:\n"
	      "  migrate         create or upgrade the database schema\n"
	      "  worker          run the job workers (foreground)\n"
	      "  config check    validate the configuration\n"
	      "  plugins list    list the plugins in the plugin directory\n"
	      "  version         print the version\n"
	      "\n"
	      "Options:\n"
	      "  --config FILE   config file (default $DARKROOM_CONF, else\n"
	      "                  " DR_SYSCONF ")\n"
	      "  --help          show this help; COMMAND --help for a "
	      "command\n",
	      f);
}

static int wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
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

static int cmd_migrate(const cli *c, int argc, char **argv)
{
	const char *dir = NULL;
	dr_config *cfg = NULL;
	dr_error err;
	int rc;

	if (wants_help(argc, argv)) {
		puts("usage: darkroom migrate [--dir DIR]\n\n"
		     "Create the database if needed and apply the migrations "
		     "not yet applied,\nin order. Safe to run again. Refuses a "
		     "database newer than this darkroom.\n\n"
		     "  --dir DIR  migrations folder (default: [database] "
		     "migrations_dir)");
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else {
			fprintf(stderr, "darkroom migrate: unexpected argument "
					"'%s'\n",
				argv[i]);
			return EXIT_USAGE;
		}
	}
	if (load_config(c, &cfg))
		return 1;
	dr_error_clear(&err);
	rc = migrate_run(cfg, dir ? dir : cfg->database.migrations_dir, stdout,
			 &err) == DR_OK
		     ? 0
		     : 1;
	if (rc)
		fprintf(stderr, "darkroom migrate: %s\n", err.message);
	config_free(cfg);
	return rc;
}

static int cmd_config(const cli *c, int argc, char **argv)
{
	dr_config *cfg = NULL;
	dr_plugins *plugins = NULL;
	dr_error err;
	int print = 0;

	if (wants_help(argc, argv) || argc < 2) {
		puts("usage: darkroom config check [--print]\n\n"
		     "Validate the configuration file and the plugin sections "
		     "(loading each\nplugin). Prints 'ok' or the first error "
		     "as file:line: message.\n\n"
		     "  --print  also print the effective configuration "
		     "(secrets hidden)");
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "check") != 0) {
		fprintf(stderr, "darkroom config: unknown subcommand '%s'\n",
			argv[1]);
		return EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--print") == 0) {
			print = 1;
		} else {
			fprintf(stderr, "darkroom config check: unexpected "
					"argument '%s'\n",
				argv[i]);
			return EXIT_USAGE;
		}
	}
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
	if (print)
		config_print(cfg, stdout);
	if (cfg->server.n_api_keys == 0)
		fprintf(stderr, "darkroom: warning: no API key is configured; "
				"the API will refuse every request\n");
	printf("ok: %s\n", cfg->path);
	plugins_free(plugins);
	config_free(cfg);
	return 0;
}

static int cmd_worker(const cli *c, int argc, char **argv)
{
	dr_config *cfg = NULL;
	long processes = 0;
	int rc;

	if (wants_help(argc, argv)) {
		puts("usage: darkroom worker [--processes N]\n\n"
		     "Run the job workers in the foreground: a supervisor "
		     "and [worker] processes\nchildren that claim due jobs "
		     "from MariaDB and run their steps (submit,\npoll, "
		     "cancel). SIGTERM or SIGINT stops them gracefully; "
		     "logs go to stderr.\n\n"
		     "  --processes N  worker processes (default: [worker] "
		     "processes), 1 to 64");
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		char *end = NULL;

		if (strcmp(argv[i], "--processes") == 0 && i + 1 < argc) {
			processes = strtol(argv[++i], &end, 10);
			if (*end || processes < 1 || processes > 64) {
				fprintf(stderr, "darkroom worker: --processes "
						"takes 1 to 64\n");
				return EXIT_USAGE;
			}
		} else {
			fprintf(stderr,
				"darkroom worker: unexpected argument '%s'\n",
				argv[i]);
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

static int cmd_plugins(const cli *c, int argc, char **argv)
{
	const char *dir = NULL;
	dr_config *cfg = NULL;
	dr_loaded_plugin *list = NULL;
	size_t n = 0;
	char *errors = NULL;
	dr_error err;
	int rc = 0;

	if (wants_help(argc, argv) || argc < 2) {
		puts("usage: darkroom plugins list [--dir DIR]\n\n"
		     "List the plugins found in the plugin directory (default: "
		     "[server] plugin_dir)\nwith their kind, version and "
		     "description. Files that fail to load are\nreported with "
		     "the reason and make the exit status 1.");
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "list") != 0) {
		fprintf(stderr, "darkroom plugins: unknown subcommand '%s'\n",
			argv[1]);
		return EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else {
			fprintf(stderr, "darkroom plugins list: unexpected "
					"argument '%s'\n",
				argv[i]);
			return EXIT_USAGE;
		}
	}
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

int main(int argc, char **argv)
{
	cli c = {DR_SYSCONF};
	int i = 1;

	dr_log_init("cli", DR_LOG_WARNING, 0);
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			c.conf_path = argv[i + 1];
			setenv("DARKROOM_CONF", argv[i + 1], 1);
			i += 2;
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
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
	if (strcmp(argv[0], "migrate") == 0)
		return cmd_migrate(&c, argc, argv);
	if (strcmp(argv[0], "config") == 0)
		return cmd_config(&c, argc, argv);
	if (strcmp(argv[0], "worker") == 0)
		return cmd_worker(&c, argc, argv);
	if (strcmp(argv[0], "plugins") == 0)
		return cmd_plugins(&c, argc, argv);
	if (strcmp(argv[0], "version") == 0) {
		printf("darkroom %s (plugin ABI %u)\n", DR_VERSION,
		       DR_PLUGIN_ABI_VERSION);
		return 0;
	}
	if (strcmp(argv[0], "help") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "darkroom: unknown command '%s' (see darkroom --help)\n",
		argv[0]);
	return EXIT_USAGE;
}
