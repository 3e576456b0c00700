/*
 * test_config.c - unit tests of core/config.c.
 *
 * Most cases parse text in memory with config_parse() under the name
 * "t.conf" (so messages start with "t.conf:<line>:") and check either the
 * typed values or the status and message. Environment cases set the
 * variables themselves; every test starts with them unset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* Every config needs an adapter (default_adapter must name one). */
#define ADAPTER "[adapter \"null\"]\n"

static const char *const env_vars[] = {
    "DARKROOM_PUBLIC_URL", "DARKROOM_API_KEY",	   "DARKROOM_SINK",
    "DARKROOM_PORT",	   "DARKROOM_DB_PASSWORD", "DARKROOM_CONF",
    "TEST_PLUGIN_TOKEN",   "TEST_PLUGIN_ROOT",
};

static int clear_env(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++)
		unsetenv(env_vars[i]);
	return 0;
}

static dr_config *parse_ok(const char *text)
{
	dr_config *cfg = NULL;
	dr_error err = {0};
	dr_status st = config_parse("t.conf", text, strlen(text), &cfg, &err);

	if (st != DR_OK)
		print_error("unexpected failure: %s\n", err.message);
	assert_int_equal(st, DR_OK);
	assert_non_null(cfg);
	return cfg;
}

/* Parse must fail with DR_ERR_CONFIG, *out untouched, and a message
 * containing `where` and `what` (either may be NULL). */
static void parse_fail(const char *text, const char *where, const char *what)
{
	dr_config *cfg = (dr_config *)&clear_env; /* sentinel */
	dr_error err = {0};
	dr_status st = config_parse("t.conf", text, strlen(text), &cfg, &err);

	if (st != DR_ERR_CONFIG || (where && !strstr(err.message, where)) ||
	    (what && !strstr(err.message, what)))
		print_error("status %d, message '%s', wanted '%s' and '%s'\n",
			    st, err.message, where ? where : "",
			    what ? what : "");
	assert_int_equal(st, DR_ERR_CONFIG);
	assert_ptr_equal(cfg, (dr_config *)&clear_env);
	if (where)
		assert_non_null(strstr(err.message, where));
	if (what)
		assert_non_null(strstr(err.message, what));
}

/* --------------------------------------------------------------- values */

static const char full_file[] =
    "# a full file\n"
    "[server]\n"
    "plugin_dir = /opt/dr/plugins\n"
    "api_keys = aaaaaaaaaaaaaaaa1, bbbbbbbbbbbbbbbb2\n"
    "public_url = https://dr.example.com/\n"
    "max_body = 2M\n"
    "json_max_depth = 64\n"
    "default_adapter = rep\n"
    "sink = s3\n"
    "default_renditions = small\n"
    "log_level = debug\n"
    "\n"
    "[database]\n"
    "host = db.internal\n"
    "port = 3307\n"
    "socket = /run/mysqld/mysqld.sock\n"
    "user = dr\n"
    "password = hunter2hunter2\n"
    "name = drdb\n"
    "connect_timeout = 500ms\n"
    "io_timeout = 1m\n"
    "migrations_dir = /opt/dr/migrations\n"
    "[worker]\n"
    "processes = 4\n"
    "max_attempts = 5\n"
    "lease = 2m\n"
    "poll_min = 1.5s\n"
    "poll_max = 30\n"
    "provider_deadline = 2h\n"
    "shutdown_grace = 0\n"
    "[limits]\n"
    "[preset small]\n"
    "width = 1k\n"
    "height = 100\n"
    "fit = cover\n"
    "format = avif\n"
    "quality = 50\n"
    "[adapter \"rep\"]\n"
    "plugin = replicate\n"
    "token = x\n"
    "[adapter \"other\"]\n"
    "[sink \"s3\"]\n"
    "bucket = b\n";

static void test_full_file(void **state)
{
	dr_config *cfg = parse_ok(full_file);
	const dr_preset *p;

	(void)state;
	assert_string_equal(cfg->path, "t.conf");
	assert_true(cfg->dir[0] == '/');
	assert_string_equal(cfg->server.plugin_dir, "/opt/dr/plugins");
	assert_int_equal(cfg->server.n_api_keys, 2);
	assert_string_equal(cfg->server.api_keys[0], "aaaaaaaaaaaaaaaa1");
	assert_string_equal(cfg->server.api_keys[1], "bbbbbbbbbbbbbbbb2");
	assert_string_equal(cfg->server.public_url, "https://dr.example.com");
	assert_int_equal(cfg->server.max_body, 2 * 1024 * 1024);
	assert_int_equal(cfg->server.json_max_depth, 64);
	assert_string_equal(cfg->server.default_adapter, "rep");
	assert_string_equal(cfg->server.sink, "s3");
	assert_int_equal(cfg->server.n_default_renditions, 1);
	assert_string_equal(cfg->server.default_renditions[0], "small");
	assert_int_equal(cfg->server.log_level, DR_LOG_DEBUG);

	assert_string_equal(cfg->database.host, "db.internal");
	assert_int_equal(cfg->database.port, 3307);
	assert_string_equal(cfg->database.socket, "/run/mysqld/mysqld.sock");
	assert_string_equal(cfg->database.user, "dr");
	assert_string_equal(cfg->database.password, "hunter2hunter2");
	assert_string_equal(cfg->database.name, "drdb");
	assert_true(fabs(cfg->database.connect_timeout - 0.5) < 1e-9);
	assert_true(cfg->database.io_timeout == 60);
	assert_string_equal(cfg->database.migrations_dir, "/opt/dr/migrations");

	assert_int_equal(cfg->worker.processes, 4);
	assert_int_equal(cfg->worker.max_attempts, 5);
	assert_true(cfg->worker.lease == 120);
	assert_true(cfg->worker.poll_min == 1.5);
	assert_true(cfg->worker.poll_max == 30);
	assert_true(cfg->worker.provider_deadline == 7200);
	assert_true(cfg->worker.shutdown_grace == 0);

	assert_int_equal(cfg->n_presets, 1);
	p = config_preset(cfg, "small");
	assert_non_null(p);
	assert_int_equal(p->width, 1024);
	assert_int_equal(p->height, 100);
	assert_int_equal(p->fit, DR_FIT_COVER);
	assert_int_equal(p->format, DR_FORMAT_AVIF);
	assert_int_equal(p->quality, 50);
	assert_null(config_preset(cfg, "thumb"));

	assert_int_equal(cfg->n_sections, 8);
	assert_non_null(config_section(cfg, "server", NULL));
	assert_non_null(config_section(cfg, "limits", NULL));
	assert_non_null(config_section(cfg, "adapter", "rep"));
	assert_null(config_section(cfg, "adapter", "nope"));
	assert_null(config_section(cfg, "adapter", NULL));
	assert_string_equal(
	    config_section_plugin(config_section(cfg, "adapter", "rep")),
	    "replicate");
	assert_string_equal(
	    config_section_plugin(config_section(cfg, "adapter", "other")),
	    "other");
	/* Plugin sections are only recorded until resolved. */
	assert_null(config_section(cfg, "adapter", "rep")->values);
	assert_int_equal(config_section(cfg, "sink", "s3")->n_entries, 1);
	/* Core sections carry their resolved values. */
	assert_int_equal(
	    confv_int(config_section(cfg, "server", NULL)->values, "max_body"),
	    2 * 1024 * 1024);
	assert_true(confv_is_secret(
	    config_section(cfg, "database", NULL)->values, "password"));
	config_free(cfg);
}

static void test_defaults(void **state)
{
	dr_config *cfg = parse_ok(ADAPTER);

	(void)state;
#ifdef DR_PLUGIN_DIR
	assert_string_equal(cfg->server.plugin_dir, DR_PLUGIN_DIR);
#else
	assert_string_equal(cfg->server.plugin_dir,
			    "/usr/local/lib/darkroom/plugins");
#endif
#ifdef DR_MIGRATIONS_DIR
	assert_string_equal(cfg->database.migrations_dir, DR_MIGRATIONS_DIR);
#else
	assert_string_equal(cfg->database.migrations_dir,
			    "/usr/local/share/darkroom/migrations");
#endif
	assert_int_equal(cfg->server.n_api_keys, 0);
	assert_string_equal(cfg->server.public_url, "http://127.0.0.1:8080");
	assert_int_equal(cfg->server.max_body, 1024 * 1024);
	assert_int_equal(cfg->server.json_max_depth, 32);
	assert_string_equal(cfg->server.default_adapter, "null");
	assert_string_equal(cfg->server.sink, "fs");
	assert_int_equal(cfg->server.n_default_renditions, 2);
	assert_string_equal(cfg->server.default_renditions[0], "thumb");
	assert_string_equal(cfg->server.default_renditions[1], "card");
	assert_int_equal(cfg->server.log_level, DR_LOG_INFO);

	assert_string_equal(cfg->database.host, "localhost");
	assert_int_equal(cfg->database.port, 3306);
	assert_null(cfg->database.socket);
	assert_string_equal(cfg->database.user, "darkroom");
	assert_null(cfg->database.password);
	assert_string_equal(cfg->database.name, "darkroom");
	assert_true(cfg->database.connect_timeout == 2);
	assert_true(cfg->database.io_timeout == 10);

	assert_int_equal(cfg->worker.processes, 2);
	assert_int_equal(cfg->worker.max_attempts, 10);
	assert_true(cfg->worker.lease == 60);
	assert_true(cfg->worker.poll_min == 2);
	assert_true(cfg->worker.poll_max == 60);
	assert_true(cfg->worker.provider_deadline == 86400);
	assert_true(cfg->worker.shutdown_grace == 10);
	assert_int_equal(cfg->n_sections, 1);
	config_free(cfg);
}

static void test_empty_file_needs_adapter(void **state)
{
	(void)state;
	parse_fail("", "t.conf: ", "'default_adapter'");
	parse_fail("[server]\n", "t.conf:1: ", "no [adapter] section");
}

static void test_builtin_presets(void **state)
{
	dr_config *cfg = parse_ok(ADAPTER);
	const dr_preset *t, *c;

	(void)state;
	assert_int_equal(cfg->n_presets, 2);
	t = config_preset(cfg, "thumb");
	c = config_preset(cfg, "card");
	assert_non_null(t);
	assert_non_null(c);
	assert_int_equal(t->width, 256);
	assert_int_equal(t->height, 256);
	assert_int_equal(t->fit, DR_FIT_INSIDE);
	assert_int_equal(t->format, DR_FORMAT_WEBP);
	assert_int_equal(t->quality, 80);
	assert_int_equal(c->width, 1280);
	assert_int_equal(c->height, 720);
	assert_int_equal(c->fit, DR_FIT_COVER);
	assert_int_equal(c->format, DR_FORMAT_WEBP);
	assert_int_equal(c->quality, 82);
	assert_null(config_preset(cfg, "nope"));
	assert_null(config_preset(NULL, "thumb"));
	config_free(cfg);
}

static void test_preset_override(void **state)
{
	dr_config *cfg = parse_ok("[server]\n"
				  "default_renditions = thumb\n" ADAPTER
				  "[preset \"thumb\"]\n"
				  "width = 100\n"
				  "height = 50\n");
	const dr_preset *t = config_preset(cfg, "thumb");

	(void)state;
	assert_non_null(t);
	assert_int_equal(t->width, 100);
	assert_int_equal(t->height, 50);
	assert_int_equal(t->fit, DR_FIT_INSIDE);
	assert_int_equal(t->format, DR_FORMAT_WEBP);
	assert_int_equal(t->quality, 80);
	/* Declaring a preset replaces the built-in set. */
	assert_int_equal(cfg->n_presets, 1);
	assert_null(config_preset(cfg, "card"));
	config_free(cfg);
}

static void test_declared_presets_drop_builtins(void **state)
{
	(void)state;
	/* The default "thumb, card" now names a preset that is gone. */
	parse_fail(ADAPTER "[preset thumb]\nwidth = 1\nheight = 1\n",
		   "t.conf: ", "no preset 'card'");
}

static void test_empty_default_renditions(void **state)
{
	dr_config *cfg = parse_ok("[server]\ndefault_renditions =\n" ADAPTER);

	(void)state;
	assert_int_equal(cfg->server.n_default_renditions, 0);
	config_free(cfg);
}

static void test_relative_paths(void **state)
{
	const char *text = "[server]\n"
			   "plugin_dir = ../build/plugins\n"
			   "[database]\n"
			   "socket = ./var/my.sock\n"
			   "migrations_dir = /abs/migrations\n" ADAPTER;
	dr_config *cfg = NULL;
	dr_error err = {0};
	char *cwd;
	char want[4096];

	(void)state;
	assert_int_equal(config_parse("/etc/darkroom/darkroom.conf", text,
				      strlen(text), &cfg, &err),
			 DR_OK);
	assert_string_equal(cfg->dir, "/etc/darkroom");
	assert_string_equal(cfg->server.plugin_dir, "/etc/build/plugins");
	assert_string_equal(cfg->database.socket, "/etc/darkroom/var/my.sock");
	assert_string_equal(cfg->database.migrations_dir, "/abs/migrations");
	config_free(cfg);

	/* A relative name: its folder against the working directory. */
	cfg = parse_ok(text);
	cwd = getcwd(NULL, 0);
	assert_non_null(cwd);
	assert_string_equal(cfg->dir, cwd);
	snprintf(want, sizeof(want), "%s/var/my.sock", cwd);
	assert_string_equal(cfg->database.socket, want);
	free(cwd);
	config_free(cfg);
}

static void test_quoted_values(void **state)
{
	/* (name takes only A-Z a-z 0-9 _, so the unquoted value with inner
	 * quotes goes to user, and the spaced one joins the escapes.) */
	dr_config *cfg = parse_ok("[database]\n"
				  "password = \"  a\\\"b\\\\c  \"\n"
				  "host = \"\"\n"
				  "user = plain \"inner\" quotes\n"
				  "name = \"quoted_name\"\n" ADAPTER);

	(void)state;
	assert_string_equal(cfg->database.password, "  a\"b\\c  ");
	assert_string_equal(cfg->database.host, "");
	assert_string_equal(cfg->database.user, "plain \"inner\" quotes");
	assert_string_equal(cfg->database.name, "quoted_name");
	config_free(cfg);
}

static void test_quoted_errors(void **state)
{
	(void)state;
	parse_fail("[database]\nuser = \"abc\n", "t.conf:2:", "unterminated");
	parse_fail("[database]\nuser = \"a\\nb\"\n", "t.conf:2:", "bad escape");
	parse_fail("[database]\nuser = \"ab\" # c\n",
		   "t.conf:2:", "after the closing quote");
}

static void test_comments(void **state)
{
	dr_config *cfg = parse_ok("# comment\n"
				  "; another\n"
				  "   # indented\n"
				  "\t; tabbed\n"
				  "\n"
				  "[database]\n"
				  "# user = nobody\n"
				  "user = bob # not a comment\n"
				  "  name   =   spaced  \n" ADAPTER);

	(void)state;
	/* No inline comments: the text after the value is part of it. */
	assert_string_equal(cfg->database.user, "bob # not a comment");
	assert_string_equal(cfg->database.name, "spaced");
	config_free(cfg);
}

static void test_crlf_and_bom(void **state)
{
	dr_config *cfg = parse_ok("\xEF\xBB\xBF[database]\r\n"
				  "user = win\r\n"
				  "[adapter \"null\"]\r\n");

	(void)state;
	assert_string_equal(cfg->database.user, "win");
	config_free(cfg);
}

static void test_section_headers(void **state)
{
	dr_config *cfg = parse_ok("[ adapter   \"a-1\" ]\n"
				  "[adapter b_2]\n"
				  "[server]\n"
				  "default_adapter = b_2\n"
				  "[sink fs]\n");

	(void)state;
	assert_non_null(config_section(cfg, "adapter", "a-1"));
	assert_non_null(config_section(cfg, "adapter", "b_2"));
	assert_string_equal(cfg->server.default_adapter, "b_2");
	assert_int_equal(config_section(cfg, "adapter", "b_2")->line, 2);
	config_free(cfg);
}

/* --------------------------------------------------------------- errors */

static void test_unknown_key(void **state)
{
	(void)state;
	parse_fail("[server]\nmax_body = 1M\nfoo = 1\n" ADAPTER,
		   "t.conf:3: ", "unknown key 'foo' in [server]");
	parse_fail(ADAPTER "[limits]\nmax_pixel = 1\n",
		   "t.conf:3: ", "unknown key 'max_pixel' in [limits]");
	parse_fail(ADAPTER "[limits]\nmax_pages = 0\n", "t.conf:3: ",
		   "max_pages");
	parse_fail(ADAPTER "[limits]\nmax_output_bytes = 12\n", "t.conf:3: ",
		   "max_output_bytes");
	parse_fail(ADAPTER "[preset p]\nwidth = 1\nheight = 1\ndepth = 2\n",
		   "t.conf:5: ", "unknown key 'depth' in [preset \"p\"]");
}

static void test_unknown_section(void **state)
{
	(void)state;
	parse_fail(ADAPTER "\n[servers]\n",
		   "t.conf:3: ", "unknown section [servers]");
	parse_fail("[Server]\n", "t.conf:1: ", "bad section header");
}

static void test_section_name_rules(void **state)
{
	(void)state;
	parse_fail("[server \"x\"]\n", "t.conf:1: ", "takes no name");
	parse_fail("[adapter]\n", "t.conf:1: ", "needs a name");
	parse_fail("[adapter \"\"]\n", "t.conf:1: ", "bad adapter name");
	parse_fail("[adapter \"Big\"]\n", "t.conf:1: ", "bad adapter name");
	parse_fail("[preset "
		   "\"a23456789012345678901234567890123\"]\n",
		   "t.conf:1: ", "bad preset name");
	parse_fail("[adapter \"x]\n", "t.conf:1: ", "unterminated");
	parse_fail("[adapter x y]\n", "t.conf:1: ", "expected ']'");
	parse_fail("[server] # c\n", "t.conf:1: ", "after the section header");
}

static void test_duplicate_key(void **state)
{
	(void)state;
	parse_fail("[worker]\nlease = 1s\n\nlease = 2s\n" ADAPTER, "t.conf:4: ",
		   "duplicate key 'lease' in [worker] (first at line 2)");
}

static void test_duplicate_section(void **state)
{
	(void)state;
	parse_fail("[server]\n" ADAPTER "[server]\n", "t.conf:3: ",
		   "duplicate section [server] (first at line 1)");
	parse_fail(ADAPTER "[adapter null]\n",
		   "t.conf:2: ", "duplicate section [adapter \"null\"]");
}

static void test_key_outside_section(void **state)
{
	(void)state;
	parse_fail("# hello\nmax_body = 1M\n[server]\n",
		   "t.conf:2: ", "outside of any section");
}

static void test_missing_equals(void **state)
{
	(void)state;
	parse_fail("[server]\nmax_body 1M\n",
		   "t.conf:2: ", "expected 'key = value'");
	parse_fail("[server]\n= 1M\n", "t.conf:2: ", "missing key name");
	parse_fail("[server]\nMax_Body = 1M\n", "t.conf:2: ", "bad key name");
}

static void test_bad_int(void **state)
{
	(void)state;
	parse_fail("[server]\njson_max_depth = abc\n" ADAPTER,
		   "t.conf:2: ", "bad value for 'json_max_depth' in [server]");
	parse_fail("[server]\njson_max_depth = -3\n" ADAPTER,
		   "t.conf:2: ", "'json_max_depth'");
	parse_fail("[server]\njson_max_depth = 1000\n" ADAPTER,
		   "t.conf:2: ", "from 2 to 256");
	parse_fail("[database]\nport = 70000\n" ADAPTER,
		   "t.conf:2: ", "bad value for 'port' in [database]");
	parse_fail("[worker]\nprocesses = 0\n" ADAPTER,
		   "t.conf:2: ", "'processes'");
	parse_fail("[worker]\nmax_attempts = 101\n" ADAPTER,
		   "t.conf:2: ", "'max_attempts'");
}

/* [database] name: 1 to 64 of A-Z a-z 0-9 _, refused with file:line
 * otherwise, so no name can reach CREATE DATABASE as SQL. */
static void test_database_name(void **state)
{
	static const char *const bad[] = {
		"bad-name", "drop`db", "a b", "x;DROP DATABASE y", "naïve",
		"db.name", "a'b", "in\"side",
		"a1234567890123456789012345678901234567890123456789012345678901234",
	};
	static const char *const good[] = {
		"d", "darkroom", "Darkroom_Test_2", "0123", "_",
		"a123456789012345678901234567890123456789012345678901234567890123",
	};
	char text[256];
	dr_config *cfg;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "# db\n[database]\nname = %s\n" ADAPTER,
			 bad[i]);
		parse_fail(text, "t.conf:3: ",
			   "bad value for 'name' in [database]: expected 1 to "
			   "64 letters, digits or underscores");
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "[database]\nname = %s\n" ADAPTER,
			 good[i]);
		cfg = parse_ok(text);
		assert_string_equal(cfg->database.name, good[i]);
		config_free(cfg);
	}
}

static void test_bad_size(void **state)
{
	(void)state;
	parse_fail("[server]\nmax_body = 1X\n" ADAPTER, "t.conf:2: ",
		   "bad value for 'max_body' in [server]: expected a whole "
		   "number");
	parse_fail("[server]\nmax_body = 1MB\n" ADAPTER,
		   "t.conf:2: ", "'max_body'");
	parse_fail("[server]\nmax_body = 512\n" ADAPTER,
		   "t.conf:2: ", "expected a size from 1k to 64M");
	parse_fail("[server]\nmax_body = 65M\n" ADAPTER,
		   "t.conf:2: ", "'max_body'");
}

static void test_bad_duration(void **state)
{
	(void)state;
	parse_fail("[worker]\nlease = 5 minutes\n" ADAPTER, "t.conf:2: ",
		   "bad value for 'lease' in [worker]: expected a duration");
	parse_fail("[worker]\nlease = 0\n" ADAPTER, "t.conf:2: ", "above 0");
	parse_fail("[database]\nio_timeout = -1s\n" ADAPTER,
		   "t.conf:2: ", "'io_timeout'");
	parse_fail("[worker]\npoll_min = 10s\npoll_max = 5s\n" ADAPTER,
		   "t.conf:3: ", "'poll_max'");
}

static void test_bad_url(void **state)
{
	(void)state;
	parse_fail("[server]\npublic_url = ftp://x.example\n" ADAPTER,
		   "t.conf:2: ",
		   "bad value for 'public_url' in [server]: expected an "
		   "http:// or https:// URL");
	parse_fail("[server]\npublic_url = http://\n" ADAPTER,
		   "t.conf:2: ", "'public_url'");
	parse_fail("[server]\npublic_url = http:///path\n" ADAPTER,
		   "t.conf:2: ", "'public_url'");
	parse_fail("[server]\npublic_url = http://h:99999\n" ADAPTER,
		   "t.conf:2: ", "'public_url'");
	parse_fail("[server]\npublic_url = http://a b\n" ADAPTER,
		   "t.conf:2: ", "'public_url'");
}

static void test_good_urls(void **state)
{
	dr_config *cfg = parse_ok(
	    "[server]\npublic_url = HTTPS://u@[::1]:8443///\n" ADAPTER);

	(void)state;
	assert_string_equal(cfg->server.public_url, "HTTPS://u@[::1]:8443");
	config_free(cfg);
	cfg = parse_ok("[server]\npublic_url = http://h/base/?q=1\n" ADAPTER);
	assert_string_equal(cfg->server.public_url, "http://h/base/?q=1");
	config_free(cfg);
}

static void test_bad_log_level(void **state)
{
	(void)state;
	parse_fail("[server]\nlog_level = loud\n" ADAPTER,
		   "t.conf:2: ", "bad value for 'log_level' in [server]");
}

/* fair_key: metadata.KEY, KEY a metadata key as intake accepts them;
 * empty or absent is off. A bad one names the key. */
static void test_fair_key(void **state)
{
	static const char *const bad[] = {
		"tenant",	  "metadata.",	    "metadata..x",
		"metadata.-x",	  "metadata.a b",   "metadata.a/b",
		"Metadata.x",	  "metadata.\xc3\xa9", "input.tenant",
		"metadata.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaa",
	};
	dr_config *cfg = parse_ok(ADAPTER);
	char text[256];

	(void)state;
	assert_null(cfg->server.fair_key);
	config_free(cfg);
	cfg = parse_ok("[server]\nfair_key =\n" ADAPTER);
	assert_null(cfg->server.fair_key);
	config_free(cfg);
	cfg = parse_ok("[server]\nfair_key = metadata.tenant\n" ADAPTER);
	assert_string_equal(cfg->server.fair_key, "tenant");
	config_free(cfg);
	cfg = parse_ok("[server]\nfair_key = metadata.Org.id-2_b\n" ADAPTER);
	assert_string_equal(cfg->server.fair_key, "Org.id-2_b");
	config_free(cfg);
	/* 64 characters is the longest metadata key. */
	cfg = parse_ok("[server]\nfair_key = metadata."
		       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		       "aaaaaaaa\n" ADAPTER);
	assert_int_equal(strlen(cfg->server.fair_key), 64);
	config_free(cfg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[server]\nfair_key = %s\n%s",
			 bad[i], ADAPTER);
		parse_fail(text, "t.conf:2: ",
			   "bad value for 'fair_key' in [server]: expected "
			   "metadata.KEY");
	}
}

static void test_bad_fit_format(void **state)
{
	(void)state;
	parse_fail(ADAPTER "[preset p]\nwidth = 1\nheight = 1\nfit = fill\n",
		   "t.conf:5: ",
		   "bad value for 'fit' in [preset \"p\"]: expected inside or "
		   "cover");
	parse_fail(ADAPTER "[preset p]\nwidth = 1\nheight = 1\nformat = gif\n",
		   "t.conf:5: ",
		   "bad value for 'format' in [preset \"p\"]: expected webp");
}

static void test_bad_quality(void **state)
{
	(void)state;
	parse_fail(ADAPTER "[preset p]\nwidth = 1\nheight = 1\nquality = 0\n",
		   "t.conf:5: ", "bad value for 'quality' in [preset \"p\"]");
	parse_fail(ADAPTER "[preset p]\nwidth = 1\nheight = 1\nquality = 101\n",
		   "t.conf:5: ", "bad value for 'quality' in [preset \"p\"]");
}

static void test_preset_missing_width(void **state)
{
	(void)state;
	parse_fail(ADAPTER "\n[preset \"p\"]\nheight = 10\n", "t.conf:3: ",
		   "missing required key 'width' in [preset \"p\"]");
	parse_fail(ADAPTER "[preset \"p\"]\nwidth = 10\n",
		   "t.conf:2: ", "missing required key 'height'");
	parse_fail(ADAPTER "[preset \"p\"]\nwidth = 16385\nheight = 1\n",
		   "t.conf:3: ", "'width'");
}

static void test_unknown_rendition(void **state)
{
	(void)state;
	parse_fail("[server]\ndefault_renditions = thumb, hero\n" ADAPTER,
		   "t.conf:2: ",
		   "bad value for 'default_renditions' in [server]: no preset "
		   "'hero'");
	parse_fail("[server]\ndefault_renditions = thumb,,card\n" ADAPTER,
		   "t.conf:2: ", "without empty items");
	parse_fail("[server]\ndefault_renditions = thumb, thumb\n" ADAPTER,
		   "t.conf:2: ", "listed twice");
}

static void test_unknown_default_adapter(void **state)
{
	(void)state;
	parse_fail("[server]\ndefault_adapter = gpu\n" ADAPTER, "t.conf:2: ",
		   "bad value for 'default_adapter' in [server]: no [adapter "
		   "\"gpu\"] section");
	/* Two adapters: no default to guess. */
	parse_fail("[server]\n" ADAPTER "[adapter two]\n",
		   "t.conf:1: ", "missing required key 'default_adapter'");
}

static void test_sink_must_exist(void **state)
{
	dr_config *cfg;

	(void)state;
	parse_fail("[server]\nsink = s3\n" ADAPTER "[sink fs]\n",
		   "t.conf:2: ", "no [sink \"s3\"] section");
	/* Without any [sink] section the plugin host reports it later. */
	cfg = parse_ok("[server]\nsink = s3\n" ADAPTER);
	assert_string_equal(cfg->server.sink, "s3");
	config_free(cfg);
}

static void test_short_api_key(void **state)
{
	dr_error err = {0};
	dr_config *cfg = NULL;
	const char *text = "[server]\napi_keys = goodkey-0123456789, "
			   "tooshort-123\n" ADAPTER;

	(void)state;
	parse_fail(text, "t.conf:2: ", "API key #2 is shorter than 16");
	/* The message never shows the key. */
	assert_int_equal(config_parse("t.conf", text, strlen(text), &cfg, &err),
			 DR_ERR_CONFIG);
	assert_null(strstr(err.message, "tooshort"));
	assert_null(strstr(err.message, "goodkey"));
	parse_fail(
	    "[server]\napi_keys = \"has space in the key 12345\"\n" ADAPTER,
	    "t.conf:2: ", "API key #1 contains a blank");
}

static void test_plugin_key_checked_at_load(void **state)
{
	(void)state;
	parse_fail(ADAPTER "plugin = ../evil\n", "t.conf:2: ",
		   "bad value for 'plugin' in [adapter \"null\"]");
}

/* [adapter] rate and burst (core keys of every adapter section): N/s,
 * N/min, N/h, off; burst a whole number; bad values name the key and the
 * line; the plugin's own table never sees them. */
static void test_adapter_rate(void **state)
{
	static const struct {
		const char *text;
		double want;
	} good[] = {
		{"600/min", 10},     {"10/s", 10},	  {"1/s", 1},
		{"6 / min", 0.1},    {"3600/h", 1},	  {"0.5/sec", 0.5},
		{"90/minute", 1.5},  {"7200/hour", 2},	  {"2/second", 2},
		{"off", 0},	     {"", 0},		  {"0.05/h", 0.05 / 3600},
	};
	static const char *const bad[] = {
		"600",	   "600/day", "/min",	 "0/s",	     "-5/s",
		"x/s",	   "10/",     "10/s/s", "1e9/s",    "10 per s",
		"nan/s",   "inf/min", "0.01/h", /* under one a day */
	};
	dr_config *cfg;
	dr_conf_section *sec;
	dr_error err = {0};
	double r;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		r = -1;
		if (config_parse_rate(good[i].text, &r) != 0)
			print_error("rejected '%s'\n", good[i].text);
		assert_int_equal(config_parse_rate(good[i].text, &r), 0);
		assert_true(fabs(r - good[i].want) < 1e-9);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (config_parse_rate(bad[i], &r) == 0)
			print_error("accepted '%s'\n", bad[i]);
		assert_int_equal(config_parse_rate(bad[i], &r), -1);
	}

	/* Defaults: no limit, burst 1. */
	cfg = parse_ok(ADAPTER);
	sec = config_section(cfg, "adapter", "null");
	assert_true(sec->rate == 0);
	assert_int_equal(sec->burst, 1);
	config_free(cfg);

	cfg = parse_ok(ADAPTER "rate = 600/min\nburst = 5\n");
	sec = config_section(cfg, "adapter", "null");
	assert_true(sec->rate == 10);
	assert_int_equal(sec->burst, 5);
	/* Not the plugin's keys: its table (none here) accepts the section. */
	assert_int_equal(config_resolve_plugin(cfg, sec, NULL, &err), DR_OK);
	config_free(cfg);

	parse_fail(ADAPTER "rate = 600\n", "t.conf:2: ",
		   "bad value for 'rate' in [adapter \"null\"]: expected N/s, "
		   "N/min or N/h");
	parse_fail(ADAPTER "rate = 10/s\nburst = 0\n", "t.conf:3: ",
		   "bad value for 'burst' in [adapter \"null\"]");
	parse_fail(ADAPTER "burst = 2k\n", "t.conf:2: ", "'burst'");
	parse_fail(ADAPTER "burst = 10001\n", "t.conf:2: ", "'burst'");
	parse_fail(ADAPTER "burst = -1\n", "t.conf:2: ", "'burst'");
	/* A sink has no such keys. */
	cfg = parse_ok("[server]\nsink = s\n" ADAPTER "[sink s]\nrate = 10/s\n");
	assert_int_equal(config_resolve_plugin(
				 cfg, config_section(cfg, "sink", "s"), NULL,
				 &err),
			 DR_ERR_CONFIG);
	assert_non_null(strstr(err.message, "unknown key 'rate'"));
	config_free(cfg);
}

/* [adapter] training_deadline (a core key of every adapter section): 6h
 * by default, a duration of 1s to 30 days, reserved from plugins. */
static void test_adapter_training_deadline(void **state)
{
	static const dr_config_key reserved[] = {
		{ "training_deadline", DR_CFG_DURATION, NULL, NULL, 0, NULL },
		{ NULL, 0, NULL, NULL, 0, NULL },
	};
	dr_config *cfg;
	dr_conf_section *sec;
	dr_error err = { 0 };

	(void)state;
	cfg = parse_ok(ADAPTER);
	sec = config_section(cfg, "adapter", "null");
	assert_true(sec->training_deadline == 6 * 3600);
	config_free(cfg);

	cfg = parse_ok(ADAPTER "training_deadline = 90m\n");
	sec = config_section(cfg, "adapter", "null");
	assert_true(sec->training_deadline == 5400);
	assert_int_equal(config_resolve_plugin(cfg, sec, NULL, &err), DR_OK);
	assert_int_equal(config_resolve_plugin(cfg, sec, reserved, &err),
			 DR_ERR_PLUGIN);
	assert_non_null(
		strstr(err.message, "reserved key 'training_deadline'"));
	config_free(cfg);

	parse_fail(ADAPTER "training_deadline = 0s\n", "t.conf:2: ",
		   "bad value for 'training_deadline' in [adapter \"null\"]");
	parse_fail(ADAPTER "training_deadline = soon\n",
		   "t.conf:2: ", "'training_deadline'");
	parse_fail(ADAPTER "training_deadline = 721h\n",
		   "t.conf:2: ", "'training_deadline'");
	/* A sink has no such key. */
	cfg = parse_ok("[server]\nsink = s\n" ADAPTER
		       "[sink s]\ntraining_deadline = 1h\n");
	assert_int_equal(config_resolve_plugin(cfg,
					       config_section(cfg, "sink", "s"),
					       NULL, &err),
			 DR_ERR_CONFIG);
	config_free(cfg);
}

/* An adapter plugin may not declare the core's keys rate and burst. */
static void test_adapter_rate_reserved(void **state)
{
	static const dr_config_key reserved[] = {
	    {"burst", DR_CFG_INT, NULL, NULL, 0, NULL},
	    {NULL, 0, NULL, NULL, 0, NULL},
	};
	dr_config *cfg;
	dr_error err = {0};

	(void)state;
	cfg = parse_ok(ADAPTER);
	assert_int_equal(
		config_resolve_plugin(cfg, config_section(cfg, "adapter", "null"),
				      reserved, &err),
		DR_ERR_PLUGIN);
	assert_non_null(strstr(err.message, "reserved key 'burst'"));
	config_free(cfg);
}

static void test_limits(void **state)
{
	char *big, *line;
	size_t n;
	dr_config *cfg = (dr_config *)&clear_env;
	dr_error err = {0};

	(void)state;
	/* A line over 4096 bytes. */
	line = malloc(5000);
	assert_non_null(line);
	memcpy(line, "[server]\nlog_level = ", 21);
	memset(line + 21, 'x', 4200);
	memcpy(line + 4221, "\n", 2);
	parse_fail(line, "t.conf:2: ", "line longer than 4096");
	free(line);

	/* A file over 1 MiB. */
	n = 1024 * 1024 + 1;
	big = malloc(n + 1);
	assert_non_null(big);
	memset(big, '#', n);
	big[n] = '\0';
	parse_fail(big, "t.conf: ", "larger than 1 MiB");
	free(big);

	/* A NUL byte. */
	assert_int_equal(
	    config_parse("t.conf", "[server]\n\0x\n", 12, &cfg, &err),
	    DR_ERR_CONFIG);
	assert_non_null(strstr(err.message, "t.conf:2: "));
	assert_ptr_equal(cfg, (dr_config *)&clear_env);
}

/* [limits] download_budget: 10 minutes unless set; a positive duration. */
static void test_download_budget(void **state)
{
	dr_config *cfg;

	(void)state;
	cfg = parse_ok(ADAPTER);
	assert_true(cfg->limits.download_budget == 600.0);
	config_free(cfg);
	cfg = parse_ok(ADAPTER "[limits]\ndownload_budget = 90s\n");
	assert_true(cfg->limits.download_budget == 90.0);
	config_free(cfg);
	parse_fail(ADAPTER "[limits]\ndownload_budget = 0\n", "t.conf:3: ",
		   "download_budget");
	parse_fail(ADAPTER "[limits]\ndownload_budget = soon\n",
		   "t.conf:3: ", "download_budget");
}

/* [limits] max_webhook_body: 64 MiB unless set, 1k to 1G, apart from
 * [server] max_body. */
static void test_max_webhook_body(void **state)
{
	dr_config *cfg;

	(void)state;
	cfg = parse_ok(ADAPTER);
	assert_int_equal(cfg->limits.max_webhook_body, 64 * 1024 * 1024);
	assert_int_equal(cfg->server.max_body, 1024 * 1024);
	config_free(cfg);
	cfg = parse_ok(ADAPTER "[limits]\nmax_webhook_body = 8M\n");
	assert_int_equal(cfg->limits.max_webhook_body, 8 * 1024 * 1024);
	assert_int_equal(cfg->server.max_body, 1024 * 1024);
	config_free(cfg);
	cfg = parse_ok(ADAPTER "[limits]\nmax_webhook_body = 1G\n");
	assert_int_equal(cfg->limits.max_webhook_body, 1024 * 1024 * 1024);
	config_free(cfg);
	parse_fail(ADAPTER "[limits]\nmax_webhook_body = 512\n",
		   "t.conf:3: ", "max_webhook_body");
	parse_fail(ADAPTER "[limits]\nmax_webhook_body = 2G\n",
		   "t.conf:3: ", "max_webhook_body");
	parse_fail(ADAPTER "[server]\nmax_webhook_body = 8M\n",
		   "t.conf:3: ", "max_webhook_body");
}

/* [limits] max_upload (100 MiB unless set, 1k to 5G) and [files]: ttl
 * (7d, off or a duration, days allowed), url_ttl (1h, at most 7 days),
 * url_secret (16 characters or more; unset: NULL). */
static void test_files_settings(void **state)
{
	dr_config *cfg;

	(void)state;
	cfg = parse_ok(ADAPTER);
	assert_int_equal(cfg->limits.max_upload, 100 * 1024 * 1024);
	assert_true(cfg->files.ttl == 7 * 86400);
	assert_true(cfg->files.url_ttl == 3600);
	assert_null(cfg->files.url_secret);
	config_free(cfg);
	cfg = parse_ok(ADAPTER
		       "[limits]\nmax_upload = 5G\n[files]\nttl = off\n"
		       "url_ttl = 168h\nurl_secret = 0123456789abcdef\n");
	assert_int_equal(cfg->limits.max_upload, (uint64_t)5 << 30);
	assert_true(cfg->files.ttl == 0);
	assert_true(cfg->files.url_ttl == 7 * 86400);
	assert_string_equal(cfg->files.url_secret, "0123456789abcdef");
	config_free(cfg);
	cfg = parse_ok(ADAPTER "[files]\nttl = 36h\n");
	assert_true(cfg->files.ttl == 36 * 3600);
	config_free(cfg);
	parse_fail(ADAPTER "[limits]\nmax_upload = 512\n",
		   "t.conf:3: ", "max_upload");
	parse_fail(ADAPTER "[limits]\nmax_upload = 6G\n",
		   "t.conf:3: ", "max_upload");
	parse_fail(ADAPTER "[files]\nttl = soon\n", "t.conf:3: ", "ttl");
	parse_fail(ADAPTER "[files]\nurl_ttl = 169h\n",
		   "t.conf:3: ", "url_ttl");
	parse_fail(ADAPTER "[files]\nurl_secret = short\n",
		   "t.conf:3: ", "url_secret");
	parse_fail(ADAPTER "[files]\nlifetime = 1d\n",
		   "t.conf:3: ", "lifetime");
}

/* [retention]: 24h and 7d unless set; off, a duration, or whole days;
 * unknown keys refused with file:line like everywhere. */
static void test_retention(void **state)
{
	dr_config *cfg;

	(void)state;
	cfg = parse_ok(ADAPTER);
	assert_true(cfg->retention.idempotency_keys == 86400.0);
	assert_true(cfg->retention.webhook_deliveries == 7 * 86400.0);
	assert_true(cfg->retention.superseded == 3600.0);
	config_free(cfg);
	cfg = parse_ok(ADAPTER "[retention]\nidempotency_keys = off\n"
			       "webhook_deliveries = 30d\nsuperseded = 1s\n");
	assert_true(cfg->retention.superseded == 1.0);
	assert_true(cfg->retention.idempotency_keys == 0);
	assert_true(cfg->retention.webhook_deliveries == 30 * 86400.0);
	config_free(cfg);
	cfg = parse_ok(ADAPTER "[retention]\nidempotency_keys = 90s\n"
			       "webhook_deliveries = 12h\n");
	assert_true(cfg->retention.idempotency_keys == 90.0);
	assert_true(cfg->retention.webhook_deliveries == 12 * 3600.0);
	config_free(cfg);
	/* Jobs: off by default; each ended status as jobs unless set. */
	cfg = parse_ok(ADAPTER);
	for (int i = 0; i < 3; i++)
		assert_true(cfg->retention.jobs[i] == 0);
	config_free(cfg);
	cfg = parse_ok(ADAPTER "[retention]\njobs = 30d\nfailed = 7d\n");
	assert_true(cfg->retention.jobs[0] == 30 * 86400.0); /* succeeded */
	assert_true(cfg->retention.jobs[1] == 7 * 86400.0);  /* failed */
	assert_true(cfg->retention.jobs[2] == 30 * 86400.0); /* canceled */
	config_free(cfg);
	cfg = parse_ok(ADAPTER "[retention]\ncanceled = 1h\n");
	assert_true(cfg->retention.jobs[0] == 0);
	assert_true(cfg->retention.jobs[1] == 0);
	assert_true(cfg->retention.jobs[2] == 3600.0);
	config_free(cfg);
	cfg = parse_ok(ADAPTER "[retention]\njobs = 1d\nsucceeded = off\n");
	assert_true(cfg->retention.jobs[0] == 0);
	assert_true(cfg->retention.jobs[1] == 86400.0);
	config_free(cfg);
	parse_fail(ADAPTER "[retention]\nfailed = soon\n", "t.conf:3: ",
		   "'failed'");
	parse_fail(ADAPTER "[retention]\njobs = 0\n", "t.conf:3: ",
		   "at least 1s");
	parse_fail(ADAPTER "[retention]\nforever = 30d\n", "t.conf:3: ",
		   "'forever'");
	parse_fail(ADAPTER "[retention]\nidempotency_keys = 1w\n", "t.conf:3: ",
		   "bad value for 'idempotency_keys' in [retention]: expected "
		   "off or a duration like 24h or 7d");
	parse_fail(ADAPTER "[retention]\nidempotency_keys = 0\n",
		   "t.conf:3: ", "at least 1s");
	parse_fail(ADAPTER "[retention]\nidempotency_keys = 500ms\n",
		   "t.conf:3: ", "at least 1s");
	parse_fail(ADAPTER "[retention]\nidempotency_keys = d\n",
		   "t.conf:3: ", "'idempotency_keys'");
	parse_fail(ADAPTER "[retention]\nidempotency_keys = -1d\n",
		   "t.conf:3: ", "'idempotency_keys'");
	parse_fail(ADAPTER "[retention]\nidempotency_keys = 99999999d\n",
		   "t.conf:3: ", "'idempotency_keys'");
	parse_fail(ADAPTER "[retention]\nsuperseded = 0\n",
		   "t.conf:3: ", "at least 1s");
	parse_fail(ADAPTER "[retention]\nwebhook_deliveries = 5m\n",
		   "t.conf:3: ", "at least 10m");
	parse_fail(ADAPTER "[retention \"x\"]\n",
		   "t.conf:2: ", "section [retention] takes no name");
}

/* ---------------------------------------------------------- environment */

static void test_env_public_url(void **state)
{
	dr_config *cfg;

	(void)state;
	setenv("DARKROOM_PUBLIC_URL", "https://env.example.com/", 1);
	cfg = parse_ok(
	    "[server]\npublic_url = https://file.example.com\n" ADAPTER);
	assert_string_equal(cfg->server.public_url, "https://env.example.com");
	config_free(cfg);

	/* An empty variable counts as unset. */
	setenv("DARKROOM_PUBLIC_URL", "", 1);
	cfg = parse_ok(
	    "[server]\npublic_url = https://file.example.com\n" ADAPTER);
	assert_string_equal(cfg->server.public_url, "https://file.example.com");
	config_free(cfg);
}

static void test_env_bad_value(void **state)
{
	(void)state;
	setenv("DARKROOM_PUBLIC_URL", "not a url", 1);
	parse_fail(ADAPTER, "t.conf: ",
		   "environment DARKROOM_PUBLIC_URL: bad value for "
		   "'public_url' in [server]");
	unsetenv("DARKROOM_PUBLIC_URL");

	setenv("DARKROOM_SINK", "s3", 1);
	parse_fail(ADAPTER "[sink fs]\n", "t.conf: ",
		   "environment DARKROOM_SINK: bad value for 'sink'");
	unsetenv("DARKROOM_SINK");

	setenv("DARKROOM_API_KEY", "short", 1);
	parse_fail(ADAPTER, "t.conf: ", "environment DARKROOM_API_KEY");
	unsetenv("DARKROOM_API_KEY");

	setenv("DARKROOM_PORT", "80a", 1);
	parse_fail(ADAPTER, "t.conf: ", "environment DARKROOM_PORT");
}

static void test_env_api_key_added(void **state)
{
	dr_config *cfg;

	(void)state;
	setenv("DARKROOM_API_KEY", "envkey-0123456789abcdef", 1);
	cfg = parse_ok("[server]\napi_keys = filekey-0123456789abc\n" ADAPTER);
	assert_int_equal(cfg->server.n_api_keys, 2);
	assert_string_equal(cfg->server.api_keys[0], "filekey-0123456789abc");
	assert_string_equal(cfg->server.api_keys[1], "envkey-0123456789abcdef");
	config_free(cfg);

	/* The same key twice counts once. */
	cfg =
	    parse_ok("[server]\napi_keys = envkey-0123456789abcdef\n" ADAPTER);
	assert_int_equal(cfg->server.n_api_keys, 1);
	config_free(cfg);

	cfg = parse_ok(ADAPTER);
	assert_int_equal(cfg->server.n_api_keys, 1);
	config_free(cfg);
}

static void test_env_sink(void **state)
{
	dr_config *cfg;

	(void)state;
	setenv("DARKROOM_SINK", "s3", 1);
	cfg =
	    parse_ok("[server]\nsink = fs\n" ADAPTER "[sink fs]\n[sink s3]\n");
	assert_string_equal(cfg->server.sink, "s3");
	config_free(cfg);
}

static void test_env_port_default_url(void **state)
{
	dr_config *cfg;

	(void)state;
	setenv("DARKROOM_PORT", "9091", 1);
	cfg = parse_ok(ADAPTER);
	assert_string_equal(cfg->server.public_url, "http://127.0.0.1:9091");
	config_free(cfg);

	/* A public_url in the file does not depend on the port. */
	setenv("DARKROOM_PORT", "garbage", 1);
	cfg = parse_ok("[server]\npublic_url = http://x.example\n" ADAPTER);
	assert_string_equal(cfg->server.public_url, "http://x.example");
	config_free(cfg);
}

static void test_env_db_password(void **state)
{
	dr_config *cfg;

	(void)state;
	setenv("DARKROOM_DB_PASSWORD", "from-env", 1);
	cfg = parse_ok("[database]\npassword = from-file\n" ADAPTER);
	assert_string_equal(cfg->database.password, "from-env");
	config_free(cfg);
}

/* ------------------------------------------------------- plugin sections */

static const dr_config_key sample_keys[] = {
    {"token", DR_CFG_STRING, NULL, "TEST_PLUGIN_TOKEN", DR_CFG_SECRET,
     "API token"},
    {"base_url", DR_CFG_URL, NULL, NULL, DR_CFG_REQUIRED, "base URL"},
    {"root", DR_CFG_PATH, "data", "TEST_PLUGIN_ROOT", 0, "folder"},
    {"verbose", DR_CFG_BOOL, "no", NULL, 0, "chatty"},
    {"timeout", DR_CFG_DURATION, "30s", NULL, 0, "timeout"},
    {"max_bytes", DR_CFG_INT, "1M", NULL, 0, "cap"},
    {"hosts", DR_CFG_LIST, NULL, NULL, 0, "allowlist"},
    {NULL, 0, NULL, NULL, 0, NULL},
};

/* Parse `text` under /srv/dr/t.conf and resolve [sink "s"] with the
 * sample table; returns the status, err filled. */
static dr_status resolve_sample(const char *text, dr_config **cfgp,
				dr_error *err)
{
	dr_config *cfg = NULL;
	dr_conf_section *sec;

	setenv("DARKROOM_SINK", "s", 1); /* the active sink must exist */
	assert_int_equal(
	    config_parse("/srv/dr/t.conf", text, strlen(text), &cfg, err),
	    DR_OK);
	sec = config_section(cfg, "sink", "s");
	assert_non_null(sec);
	*cfgp = cfg;
	return config_resolve_plugin(cfg, sec, sample_keys, err);
}

static void test_plugin_resolve(void **state)
{
	dr_config *cfg;
	dr_error err = {0};
	const dr_conf_values *v;

	(void)state;
	assert_int_equal(resolve_sample(ADAPTER
					"[sink s]\n"
					"plugin = s3\n"
					"token = tok-secret\n"
					"base_url = https://cdn.example\n"
					"verbose = on\n"
					"hosts = a.example , *.b.example\n",
					&cfg, &err),
			 DR_OK);
	v = config_section(cfg, "sink", "s")->values;
	assert_non_null(v);
	assert_string_equal(confv_get(v, "token"), "tok-secret");
	assert_true(confv_is_secret(v, "token"));
	assert_false(confv_is_secret(v, "base_url"));
	assert_string_equal(confv_get(v, "base_url"), "https://cdn.example");
	/* Defaults applied, PATH made absolute against the file's folder. */
	assert_string_equal(confv_get(v, "root"), "/srv/dr/data");
	assert_int_equal(confv_bool(v, "verbose"), 1);
	assert_true(confv_seconds(v, "timeout") == 30);
	assert_int_equal(confv_int(v, "timeout"), 30);
	assert_int_equal(confv_int(v, "max_bytes"), 1024 * 1024);
	assert_string_equal(confv_get(v, "hosts"), "a.example,*.b.example");
	assert_string_equal(confv_get(v, "plugin"), "s3");
	assert_string_equal(
	    config_section_plugin(config_section(cfg, "sink", "s")), "s3");
	/* Undeclared keys read as unset. */
	assert_null(confv_get(v, "nope"));
	assert_int_equal(confv_int(v, "nope"), 0);
	assert_null(confv_get(NULL, "token"));
	config_free(cfg);
}

static void test_plugin_unknown_key(void **state)
{
	dr_config *cfg;
	dr_error err = {0};

	(void)state;
	assert_int_equal(resolve_sample(ADAPTER "[sink s]\n"
						"base_url = https://x\n"
						"colour = red\n",
					&cfg, &err),
			 DR_ERR_CONFIG);
	assert_non_null(strstr(err.message, "/srv/dr/t.conf:4: "));
	assert_non_null(
	    strstr(err.message, "unknown key 'colour' in [sink \"s\"]"));
	assert_null(config_section(cfg, "sink", "s")->values);
	config_free(cfg);
}

static void test_plugin_required_missing(void **state)
{
	dr_config *cfg;
	dr_error err = {0};

	(void)state;
	assert_int_equal(
	    resolve_sample(ADAPTER "\n[sink s]\ntoken = t\n", &cfg, &err),
	    DR_ERR_CONFIG);
	assert_non_null(strstr(err.message, "/srv/dr/t.conf:3: "));
	assert_non_null(strstr(
	    err.message, "missing required key 'base_url' in [sink \"s\"]"));
	config_free(cfg);
}

static void test_plugin_bad_values(void **state)
{
	dr_config *cfg;
	dr_error err = {0};

	(void)state;
	assert_int_equal(resolve_sample(ADAPTER "[sink s]\n"
						"base_url = https://x\n"
						"verbose = maybe\n",
					&cfg, &err),
			 DR_ERR_CONFIG);
	assert_non_null(strstr(err.message, "t.conf:4: bad value for "
					    "'verbose' in [sink \"s\"]"));
	config_free(cfg);

	assert_int_equal(resolve_sample(ADAPTER "[sink s]\n"
						"base_url = https://x\n"
						"timeout = soon\n",
					&cfg, &err),
			 DR_ERR_CONFIG);
	assert_non_null(strstr(err.message, "t.conf:4: bad value for "
					    "'timeout'"));
	config_free(cfg);

	assert_int_equal(resolve_sample(ADAPTER "[sink s]\n"
						"base_url = https://x\n"
						"hosts = a,\n",
					&cfg, &err),
			 DR_ERR_CONFIG);
	assert_non_null(strstr(err.message, "t.conf:4: bad value for "
					    "'hosts'"));
	config_free(cfg);
}

static void test_plugin_env_override(void **state)
{
	dr_config *cfg;
	dr_error err = {0};
	const dr_conf_values *v;

	(void)state;
	setenv("TEST_PLUGIN_TOKEN", "env-token", 1);
	setenv("TEST_PLUGIN_ROOT", "media", 1);
	assert_int_equal(resolve_sample(ADAPTER "[sink s]\n"
						"base_url = https://x\n"
						"token = file-token\n"
						"root = /abs\n",
					&cfg, &err),
			 DR_OK);
	v = config_section(cfg, "sink", "s")->values;
	assert_string_equal(confv_get(v, "token"), "env-token");
	assert_string_equal(confv_get(v, "root"), "/srv/dr/media");
	config_free(cfg);
}

static void test_plugin_resolve_again(void **state)
{
	dr_config *cfg;
	dr_error err = {0};
	dr_conf_section *sec;
	const dr_conf_values *v;
	static const dr_config_key strict[] = {{NULL, 0, NULL, NULL, 0, NULL}};

	(void)state;
	assert_int_equal(resolve_sample(ADAPTER
					"[sink s]\nbase_url = https://x\n",
					&cfg, &err),
			 DR_OK);
	sec = config_section(cfg, "sink", "s");
	v = sec->values;
	/* A failed resolution leaves the previous values in place. */
	assert_int_equal(config_resolve_plugin(cfg, sec, strict, &err),
			 DR_ERR_CONFIG);
	assert_ptr_equal(sec->values, v);
	/* No keys at all: only `plugin` is allowed. */
	sec = config_section(cfg, "adapter", "null");
	assert_int_equal(config_resolve_plugin(cfg, sec, NULL, &err), DR_OK);
	assert_non_null(sec->values);
	assert_null(confv_get(sec->values, "plugin"));
	/* Not a plugin section. */
	assert_int_equal(config_resolve_plugin(cfg, NULL, NULL, &err),
			 DR_ERR_INVALID);
	config_free(cfg);
}

static void test_plugin_bad_table(void **state)
{
	dr_config *cfg;
	dr_error err = {0};
	dr_conf_section *sec;
	static const dr_config_key twice[] = {
	    {"a", DR_CFG_STRING, NULL, NULL, 0, NULL},
	    {"a", DR_CFG_STRING, NULL, NULL, 0, NULL},
	    {NULL, 0, NULL, NULL, 0, NULL},
	};
	static const dr_config_key reserved[] = {
	    {"plugin", DR_CFG_STRING, NULL, NULL, 0, NULL},
	    {NULL, 0, NULL, NULL, 0, NULL},
	};

	(void)state;
	cfg = parse_ok(ADAPTER);
	sec = config_section(cfg, "adapter", "null");
	assert_int_equal(config_resolve_plugin(cfg, sec, twice, &err),
			 DR_ERR_PLUGIN);
	assert_non_null(strstr(err.message, "declared twice"));
	assert_int_equal(config_resolve_plugin(cfg, sec, reserved, &err),
			 DR_ERR_PLUGIN);
	config_free(cfg);
}

/* --------------------------------------------------------- parse helpers */

static void test_parse_size(void **state)
{
	int64_t v;
	static const char *const bad[] = {
	    "",
	    "-1",
	    "+1",
	    " 1",
	    "1 ",
	    "1.5M",
	    "1KB",
	    "1T",
	    "k",
	    "0x10",
	    "99999999999999999999",
	    "9223372036854775807k",
	    "1kk",
	};

	(void)state;
	assert_int_equal(config_parse_size("1048576", &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(config_parse_size("512k", &v), 0);
	assert_int_equal(v, 512 * 1024);
	assert_int_equal(config_parse_size("512K", &v), 0);
	assert_int_equal(v, 512 * 1024);
	assert_int_equal(config_parse_size("1M", &v), 0);
	assert_int_equal(v, 1024 * 1024);
	assert_int_equal(config_parse_size("2g", &v), 0);
	assert_int_equal(v, 2LL * 1024 * 1024 * 1024);
	assert_int_equal(config_parse_size("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(config_parse_size("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 42;
		if (config_parse_size(bad[i], &v) != -1)
			print_error("accepted '%s'\n", bad[i]);
		assert_int_equal(config_parse_size(bad[i], &v), -1);
		assert_int_equal(v, 42);
	}
	assert_int_equal(config_parse_size(NULL, &v), -1);
}

static void test_parse_duration(void **state)
{
	double d;
	static const char *const bad[] = {
	    "",	  "-1",	  "+1",	  " 1",	   "1 s",	   "s",
	    "1.", ".5",	  "1e3",  "0x1",   "inf",	   "nan",
	    "1d", "1sec", "10mm", "1.5.5", "99999999999h",
	};

	(void)state;
	assert_int_equal(config_parse_duration("30", &d), 0);
	assert_true(d == 30);
	assert_int_equal(config_parse_duration("30s", &d), 0);
	assert_true(d == 30);
	assert_int_equal(config_parse_duration("250ms", &d), 0);
	assert_true(fabs(d - 0.25) < 1e-12);
	assert_int_equal(config_parse_duration("10m", &d), 0);
	assert_true(d == 600);
	assert_int_equal(config_parse_duration("2h", &d), 0);
	assert_true(d == 7200);
	assert_int_equal(config_parse_duration("1.5s", &d), 0);
	assert_true(d == 1.5);
	assert_int_equal(config_parse_duration("0", &d), 0);
	assert_true(d == 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = 42;
		if (config_parse_duration(bad[i], &d) != -1)
			print_error("accepted '%s'\n", bad[i]);
		assert_int_equal(config_parse_duration(bad[i], &d), -1);
		assert_true(d == 42);
	}
}

static void test_parse_bool(void **state)
{
	int b;
	static const char *const yes[] = {"true", "yes",  "on",
					  "1",	  "TRUE", "Yes"};
	static const char *const no[] = {"false", "no", "off", "0", "OFF"};
	static const char *const bad[] = {"",	   "2",	    "y",      "n",
					  "truee", " true", "enabled"};

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = -1;
		assert_int_equal(config_parse_bool(yes[i], &b), 0);
		assert_int_equal(b, 1);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = -1;
		assert_int_equal(config_parse_bool(no[i], &b), 0);
		assert_int_equal(b, 0);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b = -1;
		assert_int_equal(config_parse_bool(bad[i], &b), -1);
		assert_int_equal(b, -1);
	}
}

/* ------------------------------------------------------ files and print */

/* A fresh temporary folder; caller removes it. */
static void make_tmpdir(char *buf, size_t n)
{
	snprintf(buf, n, "/tmp/dr-test-config-XXXXXX");
	assert_non_null(mkdtemp(buf));
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void remove_file(const char *dir, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
}

static void test_api_key_file(void **state)
{
	char dir[64], name[128];
	const char *text = "[server]\n"
			   "api_keys = listkey-0123456789ab\n"
			   "api_key_file = keys\n" ADAPTER;
	dr_config *cfg = NULL;
	dr_error err = {0};

	(void)state;
	make_tmpdir(dir, sizeof(dir));
	snprintf(name, sizeof(name), "%s/t.conf", dir);
	write_file(dir, "keys",
		   "# keys of darkroom\n"
		   "\n"
		   "  filekey-one-0123456789  \n"
		   "filekey-two-0123456789\r\n"
		   "listkey-0123456789ab\n");
	assert_int_equal(config_parse(name, text, strlen(text), &cfg, &err),
			 DR_OK);
	assert_int_equal(cfg->server.n_api_keys, 3);
	assert_string_equal(cfg->server.api_keys[0], "listkey-0123456789ab");
	assert_string_equal(cfg->server.api_keys[1], "filekey-one-0123456789");
	assert_string_equal(cfg->server.api_keys[2], "filekey-two-0123456789");
	config_free(cfg);

	/* A bad key in the file: its line, never the key. */
	write_file(dir, "keys", "filekey-one-0123456789\n\nshortkey\n");
	cfg = (dr_config *)&clear_env;
	assert_int_equal(config_parse(name, text, strlen(text), &cfg, &err),
			 DR_ERR_CONFIG);
	assert_ptr_equal(cfg, (dr_config *)&clear_env);
	assert_non_null(strstr(err.message, "t.conf:3: "));
	assert_non_null(strstr(err.message, "keys line 3"));
	assert_null(strstr(err.message, "shortkey"));

	/* A missing file adds no key (a fresh checkout before `make run`
	 * writes it); the other sources still count. */
	remove_file(dir, "keys");
	assert_int_equal(config_parse(name, text, strlen(text), &cfg, &err),
			 DR_OK);
	assert_int_equal(cfg->server.n_api_keys, 1);
	assert_string_equal(cfg->server.api_keys[0], "listkey-0123456789ab");
	config_free(cfg);

	/* One that cannot be read is an error naming it. */
	snprintf(name, sizeof(name), "%s/keys", dir);
	assert_int_equal(mkdir(name, 0700), 0);
	snprintf(name, sizeof(name), "%s/t.conf", dir);
	cfg = (dr_config *)&clear_env;
	assert_int_equal(config_parse(name, text, strlen(text), &cfg, &err),
			 DR_ERR_CONFIG);
	assert_ptr_equal(cfg, (dr_config *)&clear_env);
	assert_non_null(strstr(err.message, "t.conf:3: "));
	assert_non_null(strstr(err.message, dir));
	assert_non_null(strstr(err.message, "/keys"));
	snprintf(name, sizeof(name), "%s/keys", dir);
	rmdir(name);
	rmdir(dir);
}

static void test_config_load(void **state)
{
	char dir[64], name[128], sub[128];
	dr_config *cfg = NULL;
	dr_error err = {0};

	(void)state;
	make_tmpdir(dir, sizeof(dir));
	snprintf(sub, sizeof(sub), "%s/conf", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	write_file(sub, "darkroom.conf",
		   "[server]\nplugin_dir = ../plugins\n" ADAPTER
		   "[worker]\nlease = 1\n");
	snprintf(name, sizeof(name), "%s/conf/../conf/darkroom.conf", dir);
	assert_int_equal(config_load(name, &cfg, &err), DR_OK);
	/* realpath'd: mkdtemp under /tmp is canonical here. */
	snprintf(name, sizeof(name), "%s/conf/darkroom.conf", dir);
	assert_string_equal(cfg->path, name);
	assert_string_equal(cfg->dir, sub);
	snprintf(name, sizeof(name), "%s/plugins", dir);
	assert_string_equal(cfg->server.plugin_dir, name);
	config_free(cfg);

	/* Errors name the absolute path and the line. */
	write_file(sub, "darkroom.conf", ADAPTER "[worker]\nlease = x\n");
	snprintf(name, sizeof(name), "%s/conf/darkroom.conf", dir);
	cfg = (dr_config *)&clear_env;
	assert_int_equal(config_load(name, &cfg, &err), DR_ERR_CONFIG);
	assert_ptr_equal(cfg, (dr_config *)&clear_env);
	assert_non_null(strstr(err.message, "darkroom.conf:3: bad value for "
					    "'lease' in [worker]"));

	remove_file(sub, "darkroom.conf");
	assert_int_equal(config_load(name, &cfg, &err), DR_ERR_IO);
	assert_non_null(strstr(err.message, "darkroom.conf"));
	assert_ptr_equal(cfg, (dr_config *)&clear_env);
	rmdir(sub);
	rmdir(dir);
}

/* The shipped conf/darkroom.conf is valid (its api_key_file aside, which
 * `make run` creates: parse it from memory with that line dropped). */
static void test_shipped_config(void **state)
{
#ifdef DR_SOURCE_DIR
	char *text = NULL, *p;
	size_t len = 0;
	FILE *f = fopen(DR_SOURCE_DIR "/conf/darkroom.conf", "r");
	dr_config *cfg = NULL;
	dr_error err = {0};
	dr_status st;

	(void)state;
	assert_non_null(f);
	text = malloc(1024 * 1024);
	assert_non_null(text);
	len = fread(text, 1, 1024 * 1024 - 1, f);
	fclose(f);
	text[len] = '\0';
	p = strstr(text, "\napi_key_file");
	assert_non_null(p);
	p[1] = '#';
	st = config_parse(DR_SOURCE_DIR "/conf/darkroom.conf", text, len, &cfg,
			  &err);
	if (st != DR_OK)
		print_error("%s\n", err.message);
	assert_int_equal(st, DR_OK);
	assert_string_equal(cfg->server.plugin_dir,
			    DR_SOURCE_DIR "/build/plugins");
	assert_string_equal(cfg->database.socket,
			    DR_SOURCE_DIR "/var/mysqld.sock");
	assert_string_equal(cfg->database.migrations_dir,
			    DR_SOURCE_DIR "/migrations");
	assert_string_equal(cfg->server.default_adapter, "exec");
	assert_string_equal(cfg->server.sink, "fs");
	assert_non_null(config_preset(cfg, "thumb"));
	assert_non_null(config_preset(cfg, "card"));
	assert_string_equal(
	    config_section_plugin(config_section(cfg, "sink", "fs")), "fs");
	/* DARKROOM_SINK=s3 and the DARKROOM_S3_* variables need no edit. */
	assert_string_equal(
	    config_section_plugin(config_section(cfg, "sink", "s3")), "s3");
	config_free(cfg);
	free(text);
#else
	(void)state;
	skip();
#endif
}

static void test_print_hides_secrets(void **state)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f;
	dr_config *cfg;
	dr_error err = {0};
	static const dr_config_key keys[] = {
	    {"secret_key", DR_CFG_STRING, NULL, NULL, DR_CFG_SECRET, NULL},
	    {"bucket", DR_CFG_STRING, NULL, NULL, 0, NULL},
	    {NULL, 0, NULL, NULL, 0, NULL},
	};
	static const char *const secrets[] = {
	    "ENVAPIKEY-0123456789", "LISTAPIKEY-0123456789",
	    "DBPASSWORD",	    "S3SECRET",
	    "UNRESOLVED",
	};

	(void)state;
	setenv("DARKROOM_API_KEY", "ENVAPIKEY-0123456789", 1);
	cfg = parse_ok("[server]\n"
		       "api_keys = LISTAPIKEY-0123456789\n"
		       "log_level = debug\n"
		       "sink = s3\n"
		       "[database]\n"
		       "password = DBPASSWORD\n"
		       "user = \" padded \"\n" ADAPTER "[sink \"s3\"]\n"
		       "secret_key = S3SECRET\n"
		       "bucket = media-bucket\n"
		       "[sink \"other\"]\n"
		       "hidden = UNRESOLVED\n");
	assert_int_equal(
	    config_resolve_plugin(cfg, config_section(cfg, "sink", "s3"), keys,
				  &err),
	    DR_OK);
	f = open_memstream(&out, &len);
	assert_non_null(f);
	config_print(cfg, f);
	fclose(f);
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		if (strstr(out, secrets[i]))
			print_error("printed %s:\n%s\n", secrets[i], out);
		assert_null(strstr(out, secrets[i]));
	}
	assert_non_null(strstr(out, "api keys: 2 in effect"));
	assert_non_null(strstr(out, "password = (secret)"));
	assert_non_null(strstr(out, "secret_key = (secret)"));
	assert_non_null(strstr(out, "bucket = media-bucket"));
	assert_non_null(strstr(out, "log_level = debug"));
	assert_non_null(strstr(out, "user = \" padded \""));
	assert_non_null(strstr(out, "[preset \"thumb\"]"));
	assert_non_null(strstr(out, "[sink \"other\"]"));
	config_free(cfg);

	/* What it prints reads back (minus the keys it cannot show). */
	cfg = parse_ok(out);
	assert_string_equal(cfg->database.user, " padded ");
	assert_string_equal(cfg->database.password, "(secret)");
	assert_int_equal(cfg->server.log_level, DR_LOG_DEBUG);
	config_free(cfg);
	free(out);
}

static void test_default_path(void **state)
{
	(void)state;
	assert_string_equal(config_default_path("/etc/x.conf"), "/etc/x.conf");
	setenv("DARKROOM_CONF", "", 1);
	assert_string_equal(config_default_path("/etc/x.conf"), "/etc/x.conf");
	setenv("DARKROOM_CONF", "/tmp/y.conf", 1);
	assert_string_equal(config_default_path("/etc/x.conf"), "/tmp/y.conf");
	config_free(NULL);
}

#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_full_file),
	    T(test_defaults),
	    T(test_empty_file_needs_adapter),
	    T(test_builtin_presets),
	    T(test_preset_override),
	    T(test_declared_presets_drop_builtins),
	    T(test_empty_default_renditions),
	    T(test_relative_paths),
	    T(test_quoted_values),
	    T(test_quoted_errors),
	    T(test_comments),
	    T(test_crlf_and_bom),
	    T(test_section_headers),
	    T(test_unknown_key),
	    T(test_unknown_section),
	    T(test_section_name_rules),
	    T(test_duplicate_key),
	    T(test_duplicate_section),
	    T(test_key_outside_section),
	    T(test_missing_equals),
	    T(test_bad_int),
	    T(test_database_name),
	    T(test_bad_size),
	    T(test_bad_duration),
	    T(test_retention),
	    T(test_bad_url),
	    T(test_good_urls),
	    T(test_bad_log_level),
	    T(test_fair_key),
	    T(test_bad_fit_format),
	    T(test_bad_quality),
	    T(test_preset_missing_width),
	    T(test_unknown_rendition),
	    T(test_unknown_default_adapter),
	    T(test_sink_must_exist),
	    T(test_short_api_key),
	    T(test_plugin_key_checked_at_load),
	    T(test_adapter_rate),
	    T(test_adapter_rate_reserved),
	    T(test_adapter_training_deadline),
	    T(test_limits),
	    T(test_download_budget),
	    T(test_max_webhook_body),
	    T(test_files_settings),
	    T(test_env_public_url),
	    T(test_env_bad_value),
	    T(test_env_api_key_added),
	    T(test_env_sink),
	    T(test_env_port_default_url),
	    T(test_env_db_password),
	    T(test_plugin_resolve),
	    T(test_plugin_unknown_key),
	    T(test_plugin_required_missing),
	    T(test_plugin_bad_values),
	    T(test_plugin_env_override),
	    T(test_plugin_resolve_again),
	    T(test_plugin_bad_table),
	    T(test_parse_size),
	    T(test_parse_duration),
	    T(test_parse_bool),
	    T(test_api_key_file),
	    T(test_config_load),
	    T(test_shipped_config),
	    T(test_print_hides_secrets),
	    T(test_default_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
