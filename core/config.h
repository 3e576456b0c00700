/*
 * config.h - darkroom.conf: parsing, validation, environment overrides.
 *
 * One INI-style file. Sections are `[server]`, `[database]`, `[worker]`,
 * `[limits]`, `[retention]`, and named instances `[preset "thumb"]`,
 * `[adapter "replicate"]`, `[sink "fs"]` (the quoted name may also be bare:
 * `[adapter replicate]`).
 * Lines are `key = value`; `#` or `;` at the start of a line begins a
 * comment; values may be wrapped in double quotes to keep leading or
 * trailing spaces. Every key is declared in a dr_config_key table (the
 * core's own sections here, a plugin's in its descriptor), so unknown keys,
 * duplicate keys and bad values are rejected the same way everywhere, with
 * "file:line: message". Relative paths are resolved against the folder of
 * the config file. Environment variables named in the tables override the
 * file. The result is immutable after loading.
 */
#ifndef DR_CONFIG_H
#define DR_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "darkroom-plugin.h"
#include "error.h"

/* The most [limits] max_steps may be: steps of one workflow job. */
#define DR_MAX_STEPS_LIMIT 64

/* The values of one section after validation, defaults and environment. */
typedef struct dr_conf_values dr_conf_values;

/* One raw section as read from the file. */
typedef struct dr_conf_entry {
	char *key;
	char *value;
	int line;
} dr_conf_entry;

typedef struct dr_conf_section {
	char *type; /* "server", "adapter", ... */
	char *name; /* instance name, NULL for unnamed sections */
	int line;
	dr_conf_entry *entries;
	size_t n_entries;
	dr_conf_values *values; /* resolved; NULL for plugin sections until
				   config_resolve_plugin() */
	/* [adapter] only, core keys read at load (core/ratelimit.h): `rate`
	 * in creates per second (0: no limit, the default) and `burst`
	 * (creates allowed at once, default 1). */
	double rate;
	int burst;
	/* [adapter] only, core key: `training_deadline`, the seconds a
	 * training (POST /v1/trainings) may run at the provider before it
	 * is canceled and fails with provider_deadline (default 6h); the
	 * predictions' deadline is [worker] provider_deadline. */
	double training_deadline;
} dr_conf_section;

typedef enum dr_fit { DR_FIT_INSIDE = 1, DR_FIT_COVER } dr_fit;

typedef enum dr_format {
	DR_FORMAT_WEBP = 1,
	DR_FORMAT_AVIF,
	DR_FORMAT_JPEG,
	DR_FORMAT_PNG
} dr_format;

/* A rendition preset from a [preset "name"] section. */
typedef struct dr_preset {
	const char *name;
	int width;   /* 1..16384 */
	int height;  /* 1..16384 */
	dr_fit fit;
	dr_format format;
	int quality; /* 1..100 */
} dr_preset;

typedef struct dr_config {
	char *path; /* absolute path of the file */
	char *dir;  /* its folder, for relative paths */

	struct {
		const char *plugin_dir;     /* absolute */
		char **api_keys;            /* from api_keys, api_key_file, env */
		size_t n_api_keys;
		const char *public_url;     /* no trailing slash */
		size_t max_body;            /* bytes */
		int json_max_depth;
		const char *default_adapter;
		const char *sink;           /* instance name of the active sink */
		const char *const *default_renditions;
		size_t n_default_renditions;
		int log_level;              /* DR_LOG_* */
		const char *callback_secret; /* secret; NULL: no callbacks */
		/* secret; the one callback_secret replaces, also signed
		 * with during a rotation; NULL: none */
		const char *callback_secret_previous;
		/* fair_key's metadata key (what follows "metadata."), or NULL:
		 * off. Intake stores each job's value of it in
		 * jobs.fair_value; workers then claim round-robin across
		 * those values (queue.h). */
		const char *fair_key;
	} server;

	struct {
		const char *host;   /* "localhost" means the unix socket */
		unsigned port;
		const char *socket; /* absolute, or NULL */
		const char *user;
		const char *password; /* secret */
		const char *name;     /* config_db_name_valid() */
		double connect_timeout; /* seconds */
		double io_timeout;      /* seconds, read and write */
		const char *migrations_dir; /* absolute: `darkroom migrate` */
	} database;

	struct {
		int processes;
		int max_attempts;
		double lease;          /* seconds */
		double poll_min;       /* seconds between polls of a prediction */
		double poll_max;
		double provider_deadline; /* seconds a prediction may take
					     from its submit */
		double shutdown_grace; /* seconds a child gets on SIGTERM */
		const char *wakeup_socket; /* absolute path */
		double retry_base;     /* first retry delay of a failed step */
		double retry_max;      /* longest retry delay */
		double submit_grace;   /* wait for a webhook after a crash
					  mid-submit before submitting again
					  (adapters without reconcile) */
	} worker;

	struct {
		uint64_t max_output_bytes; /* largest output downloaded */
		uint64_t max_image_bytes;  /* largest image file decoded */
		uint64_t max_pixels;       /* width x height x pages */
		int max_pages;
		double download_timeout;
		double connect_timeout;
		long low_speed_limit;      /* bytes/s below which, for ... */
		double low_speed_time;     /* ... this long, a download fails */
		int max_redirects;
		double download_budget;    /* seconds one output may take to
					      download, retries included */
		size_t max_webhook_body;   /* bytes of a provider webhook
					      body (every other request:
					      server.max_body) */
		size_t max_batch_body;	   /* bytes of a POST /v1/batches
					      body */
		int max_steps;		   /* steps of a workflow job, 1 to
					      DR_MAX_STEPS_LIMIT */
		uint64_t max_upload;	   /* bytes of a POST /v1/files body */
	} limits;

	/* Uploaded input files (core/files.h). */
	struct {
		double ttl;	/* seconds a file is kept; 0: for ever */
		double url_ttl; /* seconds a provider's URL of one is valid */
		const char *url_secret; /* secret; NULL: derived from the
					   first API key */
	} files;

	/* Seconds rows are kept (core/retention.h); 0: off, kept for ever.
	 * Whole seconds, at least 1 (webhook_deliveries at least 600). */
	struct {
		double idempotency_keys;   /* from created_at */
		double webhook_deliveries; /* from received_at */
		double superseded; /* an object no row uses stays this long
				      in the sink (core/objects.h) */
		double jobs[3];	   /* an ended job is kept this long after
				      completed_at (core/deletion.h), by
				      status: succeeded, failed, canceled */
	} retention;

	dr_preset *presets;
	size_t n_presets;

	dr_conf_section *sections; /* every section, in file order */
	size_t n_sections;
} dr_config;

/*
 * Read and validate the file at `path` (core sections fully; adapter and
 * sink sections only for their shape: a plugin's keys are checked by
 * config_resolve_plugin() once the plugin is loaded). Applies the
 * environment overrides of CONTRACT §1 (DARKROOM_API_KEY adds a key,
 * DARKROOM_PUBLIC_URL, DARKROOM_PORT for the default public URL,
 * DARKROOM_SINK). On failure returns DR_ERR_CONFIG (or DR_ERR_IO) with
 * "path:line: message" in err->message and *out untouched. The caller owns
 * *out and frees it with config_free().
 */
dr_status config_load(const char *path, dr_config **out, dr_error *err)
	DR_WARN_UNUSED;

/* Same as config_load() but from text in memory; `name` is used in
 * messages and its folder for relative paths. For tests and fuzzing. */
dr_status config_parse(const char *name, const char *text, size_t len,
		       dr_config **out, dr_error *err) DR_WARN_UNUSED;

/* Release everything; NULL is a no-op. */
void config_free(dr_config *cfg);

/* The config file path to use: $DARKROOM_CONF; else, for a program run
 * from the build folder of a checkout (not installed), the checkout's
 * conf/darkroom.conf; else `fallback`. The result is static or the
 * caller's: never freed. */
const char *config_default_path(const char *fallback);

/* The preset named `name`, or NULL. */
const dr_preset *config_preset(const dr_config *cfg, const char *name);

/* The section [type "name"], or NULL. */
dr_conf_section *config_section(const dr_config *cfg, const char *type,
				const char *name);

/*
 * Check a plugin instance's section against the plugin's key table (keys
 * may be NULL: no keys besides `plugin`), apply defaults and environment,
 * resolve paths, and store the result in sec->values. DR_ERR_CONFIG with
 * "path:line: message" for an unknown key, a bad value or a missing
 * required key. The key `plugin` (which plugin serves the instance) is
 * always allowed.
 */
dr_status config_resolve_plugin(const dr_config *cfg, dr_conf_section *sec,
				const dr_config_key *keys, dr_error *err)
	DR_WARN_UNUSED;

/* The plugin a plugin section names: its `plugin` key, else its name. */
const char *config_section_plugin(const dr_conf_section *sec);

/* Accessors on resolved values; NULL / 0 / false when unset. The key must
 * be declared. Strings live as long as the config. */
const char *confv_get(const dr_conf_values *v, const char *key);
int64_t confv_int(const dr_conf_values *v, const char *key);
double confv_seconds(const dr_conf_values *v, const char *key);
int confv_bool(const dr_conf_values *v, const char *key);
int confv_is_secret(const dr_conf_values *v, const char *key);

/*
 * Parse helpers shared with the plugin host, exposed for tests. Each
 * returns 0 on success and -1 on a bad value.
 *   size:     "1048576", "512k", "1M", "2G" (binary multiples)
 *   duration: "30", "30s", "250ms", "10m", "2h" -> seconds
 *   bool:     true/false yes/no on/off 1/0
 */
int config_parse_size(const char *s, int64_t *out);
int config_parse_duration(const char *s, double *out);
int config_parse_bool(const char *s, int *out);

/*
 * A create rate, "N/s", "N/min" or "N/h" (also sec, second, minute,
 * hour; N a positive number, from DR_RATE_MIN to DR_RATE_MAX per
 * second), into
 * creates per second; "off" or "" is 0 (no limit). 0, or -1 on a bad
 * value.
 */
int config_parse_rate(const char *s, double *per_second);

/* The smallest and largest rate (creates per second: one a day, so the
 * limit's microsecond arithmetic cannot overflow) and the largest burst
 * an adapter may set. */
#define DR_RATE_MIN  (1.0 / 86400)
#define DR_RATE_MAX  100000.0
#define DR_BURST_MAX 10000

/* An adapter's training_deadline: default 6 h, at most 30 days. */
#define DR_TRAINING_DEADLINE_DEFAULT 21600.0
#define DR_TRAINING_DEADLINE_MAX     2592000.0

/* Longest [database] name (MariaDB's identifier limit). */
#define DR_DB_NAME_MAX 64

/* 1 when `name` is a database name darkroom accepts: 1 to DR_DB_NAME_MAX
 * characters of A-Z a-z 0-9 _ (the loader refuses anything else, so a
 * name never needs more than identifier quoting in SQL). */
int config_db_name_valid(const char *name);

/* Write the effective configuration as INI to `f`, secrets shown as
 * "(secret)". For `darkroom config check --print`. */
void config_print(const dr_config *cfg, FILE *f);

#endif
