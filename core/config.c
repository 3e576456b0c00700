/*
 * config.c - darkroom.conf: reading, validating, environment overrides.
 *
 * The file is read in two passes. The first (read_sections) only checks
 * the shape: section headers, `key = value` lines, quoting, duplicates and
 * the size caps, and records every section with its raw entries. The
 * second resolves values: every section whose keys the core knows (the
 * core sections and the presets) goes through ONE generic function,
 * resolve_values(), driven by a dr_config_key table - the same struct a
 * plugin declares - so an unknown key, a bad value, a missing required key
 * and an environment override behave the same in [server] as in
 * [sink "s3"]. Plugin sections are resolved later by
 * config_resolve_plugin(), once the plugin host knows the plugin's table.
 * Checks that the key types cannot express (ranges, enumerations, cross
 * references between sections) run after the generic pass and report
 * against the line the value came from.
 *
 * Messages are "<path>:<line>: <what>". <path> is the path given to
 * config_parse(), or the absolute path from config_load(). Errors about
 * the environment or the file as a whole carry no line: "<path>: ...".
 * No message ever quotes a value, so no secret can leak through one.
 *
 * Ownership: one allocation (config_impl) holds the public dr_config
 * followed by private bookkeeping; everything hangs off it and
 * config_free() releases it in one go.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#ifdef DR_PLUGIN_DIR
#define DEFAULT_PLUGIN_DIR DR_PLUGIN_DIR
#else
#define DEFAULT_PLUGIN_DIR "/usr/local/lib/darkroom/plugins"
#endif

#ifdef DR_MIGRATIONS_DIR
#define DEFAULT_MIGRATIONS_DIR DR_MIGRATIONS_DIR
#else
#define DEFAULT_MIGRATIONS_DIR "/usr/local/share/darkroom/migrations"
#endif

/* Hard limits: the file is operator input, but fuzzers and typos too. */
#define CONF_MAX_FILE	  (1024 * 1024) /* bytes in darkroom.conf */
#define CONF_MAX_LINE	  4096 /* bytes in one line, or one env value */
#define CONF_MAX_SECTIONS 1024
#define CONF_MAX_KEYS	  256	      /* entries in one section */
#define KEYFILE_MAX	  (64 * 1024) /* bytes in api_key_file */
#define API_KEY_MIN	  16
#define API_KEY_MAX	  256
#define API_KEYS_MAX	  1024
#define PRESET_NAME_MAX	  32
#define INSTANCE_NAME_MAX 64
#define DURATION_MAX	  1e9 /* seconds (about 31 years) */
#define LABEL_MAX	  96  /* "[adapter \"<64 chars>\"]" */
#define FAIR_KEY_MAX	  64  /* bytes of a metadata key (jobs.h) */

/* Where an effective value came from. */
enum { ORIGIN_UNSET = 0, ORIGIN_DEFAULT, ORIGIN_FILE, ORIGIN_ENV };

/* One declared key after resolution. Copies what it needs of the key
 * table, because a plugin's table goes away when the plugin is unloaded. */
typedef struct conf_item {
	char *name;
	dr_config_type type;
	unsigned flags; /* DR_CFG_REQUIRED | DR_CFG_SECRET */
	int origin;	/* ORIGIN_* */
	int line;	/* line of the entry, or of the section header */
	char *env;	/* the variable, when origin is ORIGIN_ENV */
	char *value;	/* effective text; NULL when unset */
	int64_t num;	/* INT, BOOL (0/1), DURATION (whole seconds) */
	double seconds; /* DURATION, INT */
	int boolean;	/* BOOL */
} conf_item;

/* The items are in table order; a plugin section's `plugin` comes last. */
struct dr_conf_values {
	conf_item *items;
	size_t n;
};

/* ------------------------------------------------------------------------
 * The core's key tables. Ranges and enumerations are checked after the
 * generic pass (see resolve_server() and friends).
 */
enum {
	SRV_PLUGIN_DIR,
	SRV_API_KEYS,
	SRV_API_KEY_FILE,
	SRV_PUBLIC_URL,
	SRV_MAX_BODY,
	SRV_JSON_MAX_DEPTH,
	SRV_DEFAULT_ADAPTER,
	SRV_SINK,
	SRV_DEFAULT_RENDITIONS,
	SRV_LOG_LEVEL,
	SRV_CALLBACK_SECRET,
	SRV_CALLBACK_SECRET_PREVIOUS,
	SRV_FAIR_KEY,
	SRV_COUNT
};

static const dr_config_key server_keys[SRV_COUNT + 1] = {
	[SRV_PLUGIN_DIR] = { .name = "plugin_dir",
			     .type = DR_CFG_PATH,
			     .default_value = DEFAULT_PLUGIN_DIR,
			     .help = "folder of the plugin .so files" },
	[SRV_API_KEYS] = { .name = "api_keys",
			   .type = DR_CFG_LIST,
			   .flags = DR_CFG_SECRET,
			   .help = "API keys accepted by /v1/ "
				   "(DARKROOM_API_KEY "
				   "adds one)" },
	[SRV_API_KEY_FILE] = { .name = "api_key_file",
			       .type = DR_CFG_PATH,
			       .flags = DR_CFG_SECRET,
			       .help = "file of API keys, one per line" },
	[SRV_PUBLIC_URL] = { .name = "public_url",
			     .type = DR_CFG_URL,
			     .env = "DARKROOM_PUBLIC_URL",
			     .help = "base URL providers reach darkroom at" },
	[SRV_MAX_BODY] = { .name = "max_body",
			   .type = DR_CFG_INT,
			   .default_value = "1M",
			   .help = "largest request body, 1k to 64M" },
	[SRV_JSON_MAX_DEPTH] = { .name = "json_max_depth",
				 .type = DR_CFG_INT,
				 .default_value = "32",
				 .help = "deepest JSON nesting, 2 to 256" },
	[SRV_DEFAULT_ADAPTER] = { .name = "default_adapter",
				  .type = DR_CFG_STRING,
				  .env = "DARKROOM_DEFAULT_ADAPTER",
				  .help = "adapter instance of jobs naming "
					  "none" },
	[SRV_SINK] = { .name = "sink",
		       .type = DR_CFG_STRING,
		       .default_value = "fs",
		       .env = "DARKROOM_SINK",
		       .help = "sink instance outputs are stored in" },
	[SRV_DEFAULT_RENDITIONS] = { .name = "default_renditions",
				     .type = DR_CFG_LIST,
				     .default_value = "thumb, card",
				     .help = "presets of jobs naming none" },
	[SRV_LOG_LEVEL] = { .name = "log_level",
			    .type = DR_CFG_STRING,
			    .default_value = "info",
			    .help = "err, warning, notice, info or debug" },
	[SRV_CALLBACK_SECRET] = { .name = "callback_secret",
				  .type = DR_CFG_STRING,
				  .env = "DARKROOM_CALLBACK_SECRET",
				  .flags = DR_CFG_SECRET,
				  .help = "whsec_<base64> secret signing "
					  "client "
					  "callbacks" },
	[SRV_CALLBACK_SECRET_PREVIOUS] = { .name = "callback_secret_previous",
					   .type = DR_CFG_STRING,
					   .env = "DARKROOM_CALLBACK_SECRET_"
						  "PREVIOUS",
					   .flags = DR_CFG_SECRET,
					   .help = "the secret callback_secret "
						   "replaces: callbacks are "
						   "signed with both during a "
						   "rotation" },
	[SRV_FAIR_KEY] = { .name = "fair_key",
			   .type = DR_CFG_STRING,
			   .help = "metadata.KEY: jobs are claimed round-robin "
				   "across the values of that metadata key "
				   "(empty: oldest first)" },
	[SRV_COUNT] = { .name = NULL },
};

enum {
	DB_HOST,
	DB_PORT,
	DB_SOCKET,
	DB_USER,
	DB_PASSWORD,
	DB_NAME,
	DB_CONNECT_TIMEOUT,
	DB_IO_TIMEOUT,
	DB_MIGRATIONS_DIR,
	DB_COUNT
};

static const dr_config_key database_keys[DB_COUNT + 1] = {
	[DB_HOST] = { .name = "host",
		      .type = DR_CFG_STRING,
		      .default_value = "localhost",
		      .help = "server host; localhost uses the socket" },
	[DB_PORT] = { .name = "port",
		      .type = DR_CFG_INT,
		      .default_value = "3306",
		      .help = "TCP port" },
	[DB_SOCKET] = { .name = "socket",
			.type = DR_CFG_PATH,
			.help = "unix socket (host localhost)" },
	[DB_USER] = { .name = "user",
		      .type = DR_CFG_STRING,
		      .default_value = "darkroom",
		      .help = "user name" },
	[DB_PASSWORD] = { .name = "password",
			  .type = DR_CFG_STRING,
			  .env = "DARKROOM_DB_PASSWORD",
			  .flags = DR_CFG_SECRET,
			  .help = "password" },
	[DB_NAME] = { .name = "name",
		      .type = DR_CFG_STRING,
		      .default_value = "darkroom",
		      .help = "database name: 1 to 64 of A-Z a-z 0-9 _" },
	[DB_CONNECT_TIMEOUT] = { .name = "connect_timeout",
				 .type = DR_CFG_DURATION,
				 .default_value = "2s",
				 .help = "connect timeout" },
	[DB_IO_TIMEOUT] = { .name = "io_timeout",
			    .type = DR_CFG_DURATION,
			    .default_value = "10s",
			    .help = "read and write timeout" },
	[DB_MIGRATIONS_DIR] = { .name = "migrations_dir",
				.type = DR_CFG_PATH,
				.default_value = DEFAULT_MIGRATIONS_DIR,
				.help = "folder of the migration .sql files" },
	[DB_COUNT] = { .name = NULL },
};

enum {
	WRK_PROCESSES,
	WRK_MAX_ATTEMPTS,
	WRK_LEASE,
	WRK_POLL_MIN,
	WRK_POLL_MAX,
	WRK_PROVIDER_DEADLINE,
	WRK_SHUTDOWN_GRACE,
	WRK_WAKEUP_SOCKET,
	WRK_RETRY_BASE,
	WRK_RETRY_MAX,
	WRK_SUBMIT_GRACE,
	WRK_COUNT
};

static const dr_config_key worker_keys[WRK_COUNT + 1] = {
	[WRK_PROCESSES] = { .name = "processes",
			    .type = DR_CFG_INT,
			    .default_value = "2",
			    .help = "worker processes, 1 to 64" },
	[WRK_MAX_ATTEMPTS] = { .name = "max_attempts",
			       .type = DR_CFG_INT,
			       .default_value = "10",
			       .help = "tries of one step, 1 to 100" },
	[WRK_LEASE] = { .name = "lease",
			.type = DR_CFG_DURATION,
			.default_value = "60s",
			.help = "how long a claimed job stays claimed" },
	[WRK_POLL_MIN] = { .name = "poll_min",
			   .type = DR_CFG_DURATION,
			   .default_value = "2s",
			   .help = "first interval between polls" },
	[WRK_POLL_MAX] = { .name = "poll_max",
			   .type = DR_CFG_DURATION,
			   .default_value = "60s",
			   .help = "longest interval between polls" },
	[WRK_PROVIDER_DEADLINE] = { .name = "provider_deadline",
				    .type = DR_CFG_DURATION,
				    .default_value = "24h",
				    .help = "time a prediction may take from "
					    "its submit before its job "
					    "fails" },
	[WRK_SHUTDOWN_GRACE] = { .name = "shutdown_grace",
				 .type = DR_CFG_DURATION,
				 .default_value = "10s",
				 .help = "time a child gets on SIGTERM" },
	[WRK_WAKEUP_SOCKET] = { .name = "wakeup_socket",
				.type = DR_CFG_PATH,
				.default_value = "/run/darkroom/wakeup.sock",
				.help = "unix datagram socket the API pokes "
					"idle workers through" },
	[WRK_RETRY_BASE] = { .name = "retry_base",
			     .type = DR_CFG_DURATION,
			     .default_value = "2s",
			     .help = "first retry delay of a failed step" },
	[WRK_RETRY_MAX] = { .name = "retry_max",
			    .type = DR_CFG_DURATION,
			    .default_value = "10m",
			    .help = "longest retry delay" },
	[WRK_SUBMIT_GRACE] = { .name = "submit_grace",
			       .type = DR_CFG_DURATION,
			       .default_value = "30s",
			       .help = "after a crash mid-submit, an adapter "
				       "without reconcile waits this long for "
				       "the provider's webhook before "
				       "submitting again" },
	[WRK_COUNT] = { .name = NULL },
};

/* [limits]: download caps, time limits and pixel limits. */
enum {
	LIM_MAX_OUTPUT_BYTES,
	LIM_MAX_IMAGE_BYTES,
	LIM_MAX_PIXELS,
	LIM_MAX_PAGES,
	LIM_DOWNLOAD_TIMEOUT,
	LIM_CONNECT_TIMEOUT,
	LIM_LOW_SPEED_LIMIT,
	LIM_LOW_SPEED_TIME,
	LIM_MAX_REDIRECTS,
	LIM_DOWNLOAD_BUDGET,
	LIM_MAX_WEBHOOK_BODY,
	LIM_MAX_BATCH_BODY,
	LIM_MAX_STEPS,
	LIM_MAX_UPLOAD,
	LIM_COUNT
};

static const dr_config_key limits_keys[LIM_COUNT + 1] = {
	[LIM_MAX_OUTPUT_BYTES] = { .name = "max_output_bytes",
				   .type = DR_CFG_INT,
				   .default_value = "512M",
				   .help = "largest output downloaded" },
	[LIM_MAX_IMAGE_BYTES] = { .name = "max_image_bytes",
				  .type = DR_CFG_INT,
				  .default_value = "64M",
				  .help = "largest image file decoded" },
	[LIM_MAX_PIXELS] = { .name = "max_pixels",
			     .type = DR_CFG_INT,
			     .default_value = "100000000",
			     .help = "width x height x pages of an image" },
	[LIM_MAX_PAGES] = { .name = "max_pages",
			    .type = DR_CFG_INT,
			    .default_value = "256",
			    .help = "frames of an animated image" },
	[LIM_DOWNLOAD_TIMEOUT] = { .name = "download_timeout",
				   .type = DR_CFG_DURATION,
				   .default_value = "300s",
				   .help = "longest download of one output" },
	[LIM_CONNECT_TIMEOUT] = { .name = "download_connect_timeout",
				  .type = DR_CFG_DURATION,
				  .default_value = "10s",
				  .help = "longest connect of a download" },
	[LIM_LOW_SPEED_LIMIT] = { .name = "download_low_speed",
				  .type = DR_CFG_INT,
				  .default_value = "1k",
				  .help = "bytes per second below which ..." },
	[LIM_LOW_SPEED_TIME] = { .name = "download_low_speed_time",
				 .type = DR_CFG_DURATION,
				 .default_value = "30s",
				 .help = "... a download this long is "
					 "abandoned" },
	[LIM_MAX_REDIRECTS] = { .name = "download_max_redirects",
				.type = DR_CFG_INT,
				.default_value = "5",
				.help = "redirects followed by a download" },
	[LIM_DOWNLOAD_BUDGET] = { .name = "download_budget",
				  .type = DR_CFG_DURATION,
				  .default_value = "10m",
				  .help = "time one output may take to "
					  "download, "
					  "all its retries included" },
	[LIM_MAX_WEBHOOK_BODY] = { .name = "max_webhook_body",
				   .type = DR_CFG_INT,
				   .default_value = "64M",
				   .help = "largest provider webhook body "
					   "(POST /v1/hooks/*)" },
	[LIM_MAX_BATCH_BODY] = { .name = "max_batch_body",
				 .type = DR_CFG_INT,
				 .default_value = "16M",
				 .help = "largest batch body "
					 "(POST /v1/batches)" },
	[LIM_MAX_STEPS] = { .name = "max_steps",
			    .type = DR_CFG_INT,
			    .default_value = "16",
			    .help = "most steps of a workflow job" },
	[LIM_MAX_UPLOAD] = { .name = "max_upload",
			     .type = DR_CFG_INT,
			     .default_value = "100M",
			     .help = "largest uploaded file "
				     "(POST /v1/files)" },
	[LIM_COUNT] = { .name = NULL },
};

/* [files]: uploaded input files (core/files.h). `ttl` is read like a
 * retention setting ("off" or a duration, days allowed). */
enum { FIL_TTL, FIL_URL_TTL, FIL_URL_SECRET, FIL_COUNT };

static const dr_config_key files_keys[FIL_COUNT + 1] = {
	[FIL_TTL] = { .name = "ttl",
		      .type = DR_CFG_STRING,
		      .default_value = "7d",
		      .help = "how long an uploaded file is kept when no job "
			      "still running uses it, or off (for ever)" },
	[FIL_URL_TTL] = { .name = "url_ttl",
			  .type = DR_CFG_DURATION,
			  .default_value = "1h",
			  .help = "how long a URL given to a provider for a "
				  "$file reference stays valid" },
	[FIL_URL_SECRET] = { .name = "url_secret",
			     .type = DR_CFG_STRING,
			     .env = "DARKROOM_FILES_URL_SECRET",
			     .flags = DR_CFG_SECRET,
			     .help = "key signing the fs sink's file URLs "
				     "(unset: derived from the first API "
				     "key)" },
	[FIL_COUNT] = { .name = NULL },
};

/* [retention]: how long rows kept for a while stay (core/retention.h).
 * Each is `off` or a duration of at least RETENTION_MIN, written as for
 * any duration or in days (`7d`); parse_retention() reads them, so they
 * are strings to the generic pass. */
enum {
	RET_IDEMPOTENCY_KEYS,
	RET_WEBHOOK_DELIVERIES,
	RET_SUPERSEDED,
	RET_JOBS,
	RET_SUCCEEDED, /* the three ended statuses, in deletion.c's order */
	RET_FAILED,
	RET_CANCELED,
	RET_COUNT
};

static const dr_config_key retention_keys[RET_COUNT + 1] = {
	[RET_IDEMPOTENCY_KEYS] = { .name = "idempotency_keys",
				   .type = DR_CFG_STRING,
				   .default_value = "24h",
				   .help = "how long an Idempotency-Key holds "
					   "its job, or off (for ever)" },
	[RET_WEBHOOK_DELIVERIES] = { .name = "webhook_deliveries",
				     .type = DR_CFG_STRING,
				     .default_value = "7d",
				     .help = "how long a provider webhook's "
					     "delivery id is remembered, at "
					     "least 10m, or off (for ever)" },
	[RET_SUPERSEDED] = { .name = "superseded",
			     .type = DR_CFG_STRING,
			     .default_value = "1h",
			     .help = "how long a stored object no row uses "
				     "any more stays in the sink (a rendition "
				     "replaced by reprocess), or off (for "
				     "ever)" },
	[RET_JOBS] = { .name = "jobs",
		       .type = DR_CFG_STRING,
		       .default_value = "off",
		       .help = "how long an ended job is kept before it is "
			       "deleted with its outputs and objects, or off "
			       "(for ever)" },
	[RET_SUCCEEDED] = { .name = "succeeded",
			    .type = DR_CFG_STRING,
			    .default_value = "",
			    .help = "jobs for succeeded jobs (empty: as "
				    "jobs)" },
	[RET_FAILED] = { .name = "failed",
			 .type = DR_CFG_STRING,
			 .default_value = "",
			 .help = "jobs for failed jobs (empty: as jobs)" },
	[RET_CANCELED] = { .name = "canceled",
			   .type = DR_CFG_STRING,
			   .default_value = "",
			   .help = "jobs for canceled jobs (empty: as jobs)" },
	[RET_COUNT] = { .name = NULL },
};

/* Shortest retention (seconds): the SQL takes whole seconds. */
#define RETENTION_MIN 1.0
/* Shortest retention of webhook delivery ids: above the signature
 * tolerance of Standard Webhooks (5 minutes), so a replay the verifier
 * still accepts is still recognised as a duplicate. */
#define RETENTION_WEBHOOK_MIN 600.0

enum { PRE_WIDTH, PRE_HEIGHT, PRE_FIT, PRE_FORMAT, PRE_QUALITY, PRE_COUNT };

static const dr_config_key preset_keys[PRE_COUNT + 1] = {
	[PRE_WIDTH] = { .name = "width",
			.type = DR_CFG_INT,
			.flags = DR_CFG_REQUIRED,
			.help = "box width in pixels, 1 to 16384" },
	[PRE_HEIGHT] = { .name = "height",
			 .type = DR_CFG_INT,
			 .flags = DR_CFG_REQUIRED,
			 .help = "box height in pixels, 1 to 16384" },
	[PRE_FIT] = { .name = "fit",
		      .type = DR_CFG_STRING,
		      .default_value = "inside",
		      .help = "inside or cover" },
	[PRE_FORMAT] = { .name = "format",
			 .type = DR_CFG_STRING,
			 .default_value = "webp",
			 .help = "webp, avif, jpeg or png" },
	[PRE_QUALITY] = { .name = "quality",
			  .type = DR_CFG_INT,
			  .default_value = "80",
			  .help = "encoder quality, 1 to 100" },
	[PRE_COUNT] = { .name = NULL },
};

/* The presets that exist when the file declares none. */
static const dr_preset builtin_presets[] = {
	{ "thumb", 256, 256, DR_FIT_INSIDE, DR_FORMAT_WEBP, 80 },
	{ "card", 1280, 720, DR_FIT_COVER, DR_FORMAT_WEBP, 82 },
};

static const char *const fit_names[] = {
	[DR_FIT_INSIDE] = "inside",
	[DR_FIT_COVER] = "cover",
};

static const char *const format_names[] = {
	[DR_FORMAT_WEBP] = "webp",
	[DR_FORMAT_AVIF] = "avif",
	[DR_FORMAT_JPEG] = "jpeg",
	[DR_FORMAT_PNG] = "png",
};

static const struct {
	const char *name;
	int level;
} log_levels[] = {
	{ "err", DR_LOG_ERR },	     { "warning", DR_LOG_WARNING },
	{ "notice", DR_LOG_NOTICE }, { "info", DR_LOG_INFO },
	{ "debug", DR_LOG_DEBUG },
};

/* Section types the file may contain. */
enum {
	CORE_SERVER,
	CORE_DATABASE,
	CORE_WORKER,
	CORE_LIMITS,
	CORE_RETENTION,
	CORE_FILES,
	CORE_COUNT
};

static const struct {
	const char *type;
	size_t name_max;	   /* 0: unnamed section */
	const dr_config_key *keys; /* core sections only */
} section_types[] = {
	[CORE_SERVER] = { "server", 0, server_keys },
	[CORE_DATABASE] = { "database", 0, database_keys },
	[CORE_WORKER] = { "worker", 0, worker_keys },
	[CORE_LIMITS] = { "limits", 0, limits_keys },
	[CORE_RETENTION] = { "retention", 0, retention_keys },
	[CORE_FILES] = { "files", 0, files_keys },
	{ "preset", PRESET_NAME_MAX, preset_keys },
	{ "adapter", INSTANCE_NAME_MAX, NULL },
	{ "sink", INSTANCE_NAME_MAX, NULL },
};

#define N_SECTION_TYPES (sizeof(section_types) / sizeof(section_types[0]))

/* The public config followed by what only this file sees. */
typedef struct config_impl {
	dr_config pub; /* first, so a dr_config * is a config_impl * */
	/* Resolved values of each core section: the section's own values
	 * when it is in the file, else absent[i] (owned here). */
	const dr_conf_values *core[CORE_COUNT];
	dr_conf_values *absent[CORE_COUNT];
	char **renditions; /* owned; pub.server.default_renditions */
	int builtin_presets;
} config_impl;

static config_impl *impl_of(const dr_config *cfg)
{
	return (config_impl *)cfg;
}

/* ------------------------------------------------------------------------
 * Small helpers. ASCII only: <ctype.h> depends on the locale.
 */
static int is_blank(int c)
{
	return c == ' ' || c == '\t';
}

static int is_key_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int is_name_char(int c)
{
	return is_key_char(c) || c == '-';
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* `s` (of `len` bytes) is 1..max bytes of [a-z0-9_-]. */
static int valid_name(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!is_name_char((unsigned char)s[i]))
			return 0;
	return 1;
}

/* Trim blanks off both ends of `s` in place; returns the new start. */
static char *trim(char *s)
{
	size_t n;

	while (is_blank(*s))
		s++;
	n = strlen(s);
	while (n > 0 && is_blank(s[n - 1]))
		s[--n] = '\0';
	return s;
}

static dr_status fail_at(dr_error *err, dr_status status, const char *path,
			 int line, const char *fmt, ...) DR_PRINTF(5, 6);

/* Fill err with "path:line: <fmt>" (or "path: <fmt>" when line is 0). */
static dr_status fail_at(dr_error *err, dr_status status, const char *path,
			 int line, const char *fmt, ...)
{
	char msg[sizeof(err->message)];
	int n;
	va_list ap;

	if (line > 0)
		n = snprintf(msg, sizeof(msg), "%s:%d: ", path, line);
	else
		n = snprintf(msg, sizeof(msg), "%s: ", path);
	if (n < 0)
		n = 0;
	if ((size_t)n < sizeof(msg)) {
		va_start(ap, fmt);
		vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return dr_fail(err, status, "config", "%s", msg);
}

/* "[server]" or "[adapter \"name\"]" into buf. */
static const char *section_label(const char *type, const char *name, char *buf,
				 size_t bufsz)
{
	if (name)
		snprintf(buf, bufsz, "[%s \"%s\"]", type, name);
	else
		snprintf(buf, bufsz, "[%s]", type);
	return buf;
}

/*
 * Join `rel` to the absolute folder `dir`. Leading "./" and "../"
 * components of `rel` are folded into `dir` so printed paths read well;
 * `dir` is canonical when it comes from config_load(), so this is exact.
 * An absolute `rel` is returned as is. Caller frees.
 */
static char *path_join(const char *dir, const char *rel)
{
	size_t dlen = strlen(dir), rlen, n;
	char *out;

	if (rel[0] == '/')
		return dr_xstrdup(rel);
	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	for (;;) {
		if (rel[0] == '.' && (rel[1] == '/' || rel[1] == '\0')) {
			rel += 1;
		} else if (rel[0] == '.' && rel[1] == '.' &&
			   (rel[2] == '/' || rel[2] == '\0')) {
			rel += 2;
			while (dlen > 1 && dir[dlen - 1] != '/')
				dlen--;
			if (dlen > 1)
				dlen--;
		} else {
			break;
		}
		while (*rel == '/')
			rel++;
	}
	rlen = strlen(rel);
	out = dr_xmalloc(dlen + 1 + rlen + 1);
	memcpy(out, dir, dlen);
	n = dlen;
	if (rlen > 0) {
		if (!(dlen == 1 && dir[0] == '/'))
			out[n++] = '/';
		memcpy(out + n, rel, rlen);
		n += rlen;
	}
	out[n] = '\0';
	return out;
}

/* The absolute folder of `path` (relative paths against the working
 * directory). NULL with errno set when getcwd fails. Caller frees. */
static char *folder_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *folder, *cwd, *abs;

	if (!slash)
		folder = dr_xstrdup(".");
	else if (slash == path)
		folder = dr_xstrdup("/");
	else
		folder = dr_xstrndup(path, (size_t)(slash - path));
	if (folder[0] == '/')
		return folder;
	cwd = getcwd(NULL, 0);
	if (!cwd) {
		free(folder);
		return NULL;
	}
	abs = path_join(cwd, folder);
	free(cwd);
	free(folder);
	return abs;
}

/*
 * Read at most `max` bytes of the file at `path` into a malloc'd,
 * NUL-terminated buffer. Returns 0, or -1 with errno set (EFBIG when the
 * file is larger than `max`).
 */
static int read_file(const char *path, size_t max, char **data, size_t *len)
{
	int fd, saved;
	char *buf;
	size_t n = 0;
	ssize_t r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	buf = dr_xmalloc(max + 2);
	while (n < max + 1) {
		r = read(fd, buf + n, max + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto err_read;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > max) {
		errno = EFBIG;
		goto err_read;
	}
	close(fd);
	buf[n] = '\0';
	*data = buf;
	*len = n;
	return 0;

err_read:
	saved = errno;
	free(buf);
	close(fd);
	errno = saved;
	return -1;
}

/* ------------------------------------------------------------------------
 * Parse helpers.
 */
int config_parse_size(const char *s, int64_t *out)
{
	char *end;
	long long v;
	int64_t mult = 1;

	if (!s || !out || !is_digit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || v < 0)
		return -1;
	if (*end != '\0') {
		switch (*end) {
		case 'k':
		case 'K':
			mult = 1024;
			break;
		case 'm':
		case 'M':
			mult = 1024 * 1024;
			break;
		case 'g':
		case 'G':
			mult = 1024 * 1024 * 1024;
			break;
		default:
			return -1;
		}
		if (end[1] != '\0')
			return -1;
	}
	if (v > INT64_MAX / mult)
		return -1;
	*out = (int64_t)v * mult;
	return 0;
}

/*
 * Only [0-9]+(.[0-9]+)? reaches strtod, so no sign, blank, exponent, hex,
 * "inf" or "nan" slips through; under a locale whose decimal point is not
 * '.', strtod stops early and the end check rejects the value instead of
 * misreading it.
 */
int config_parse_duration(const char *s, double *out)
{
	const char *p = s, *suffix;
	char *end;
	double v, mult;

	if (!s || !out || !is_digit((unsigned char)*p))
		return -1;
	while (is_digit((unsigned char)*p))
		p++;
	if (*p == '.') {
		p++;
		if (!is_digit((unsigned char)*p))
			return -1;
		while (is_digit((unsigned char)*p))
			p++;
	}
	suffix = p;
	if (strcmp(suffix, "") == 0 || strcmp(suffix, "s") == 0)
		mult = 1;
	else if (strcmp(suffix, "ms") == 0)
		mult = 0.001;
	else if (strcmp(suffix, "m") == 0)
		mult = 60;
	else if (strcmp(suffix, "h") == 0)
		mult = 3600;
	else
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end != suffix)
		return -1;
	v *= mult;
	if (!(v >= 0 && v <= DURATION_MAX))
		return -1;
	*out = v;
	return 0;
}

int config_parse_rate(const char *s, double *per_second)
{
	static const struct {
		const char *unit;
		double seconds;
	} units[] = { { "s", 1 },      { "sec", 1 },	 { "second", 1 },
		      { "min", 60 },   { "minute", 60 }, { "h", 3600 },
		      { "hour", 3600 } };
	const char *p = s, *slash;
	char num[32];
	double seconds;
	size_t n;

	if (!s || !per_second)
		return -1;
	if (*s == '\0' || strcmp(s, "off") == 0) {
		*per_second = 0;
		return 0;
	}
	slash = strchr(s, '/');
	if (!slash)
		return -1;
	n = (size_t)(slash - s);
	while (n > 0 && is_blank(s[n - 1]))
		n--;
	if (n == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, s, n);
	num[n] = '\0';
	p = slash + 1;
	while (is_blank(*p))
		p++;
	seconds = 0;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(p, units[i].unit) == 0)
			seconds = units[i].seconds;
	/* The number reads like a duration without a suffix. */
	if (seconds == 0 || config_parse_duration(num, per_second) != 0)
		return -1;
	*per_second /= seconds;
	if (!(*per_second >= DR_RATE_MIN && *per_second <= DR_RATE_MAX))
		return -1;
	return 0;
}

int config_parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	if (!s || !out)
		return -1;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

int config_db_name_valid(const char *name)
{
	size_t n = 0;

	if (!name)
		return 0;
	for (; name[n]; n++) {
		char c = name[n];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_'))
			return 0;
	}
	return n >= 1 && n <= DR_DB_NAME_MAX;
}

/* A port number "1".."65535" (digits only); -1 otherwise. */
static int parse_port(const char *s)
{
	char *end;
	long v;

	if (!is_digit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
		return -1;
	return (int)v;
}

/* http:// or https://, then an authority with a non-empty host (and a
 * numeric port if any), and no blanks or control bytes anywhere. */
static int valid_url(const char *s)
{
	const char *p, *auth, *auth_end, *host, *host_end, *at;

	if (strncasecmp(s, "http://", 7) == 0)
		auth = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		auth = s + 8;
	else
		return 0;
	for (p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return 0;
	auth_end = auth + strcspn(auth, "/?#");
	host = auth;
	for (at = auth; at < auth_end; at++)
		if (*at == '@')
			host = at + 1;
	if (*host == '[') {
		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (!host_end || host_end == host + 1)
			return 0;
		host_end++;
	} else {
		host_end = host;
		while (host_end < auth_end && *host_end != ':')
			host_end++;
		if (host_end == host)
			return 0;
	}
	if (host_end < auth_end) {
		long port = 0;

		if (*host_end != ':' || host_end + 1 == auth_end)
			return 0;
		for (p = host_end + 1; p < auth_end; p++) {
			if (!is_digit((unsigned char)*p))
				return 0;
			port = port * 10 + (*p - '0');
			if (port > 65535)
				return 0;
		}
		if (port == 0)
			return 0;
	}
	return 1;
}

/*
 * Normalise a comma-separated list: items trimmed, joined with ",".
 * An empty or all-blank `raw` is the empty list. Returns a malloc'd string,
 * or NULL when an item is empty ("a,,b", "a,").
 */
static char *normalize_list(const char *raw)
{
	char *copy = dr_xstrdup(raw), *out, *item, *next;
	size_t n = 0, len;

	out = dr_xmalloc(strlen(raw) + 1);
	out[0] = '\0';
	item = trim(copy);
	if (*item == '\0') {
		free(copy);
		return out;
	}
	for (;;) {
		next = strchr(item, ',');
		if (next)
			*next = '\0';
		item = trim(item);
		len = strlen(item);
		if (len == 0) {
			free(copy);
			free(out);
			return NULL;
		}
		if (n > 0)
			out[n++] = ',';
		memcpy(out + n, item, len);
		n += len;
		out[n] = '\0';
		if (!next)
			break;
		item = next + 1;
	}
	free(copy);
	return out;
}

/* Split a normalised list into a malloc'd array of malloc'd items. */
static void split_list(const char *list, char ***items, size_t *n)
{
	const char *p, *comma;
	size_t count = 1, i = 0;
	char **arr;

	*items = NULL;
	*n = 0;
	if (*list == '\0')
		return;
	for (p = list; *p; p++)
		if (*p == ',')
			count++;
	arr = dr_xcalloc(count, sizeof(*arr));
	for (p = list; i < count; i++) {
		comma = strchr(p, ',');
		if (comma) {
			arr[i] = dr_xstrndup(p, (size_t)(comma - p));
			p = comma + 1;
		} else {
			arr[i] = dr_xstrdup(p);
		}
	}
	*items = arr;
	*n = count;
}

/* ------------------------------------------------------------------------
 * Pass 1: the shape of the file.
 */

/* The index in section_types of `type` (len bytes), or -1. */
static int section_type_index(const char *type, size_t len)
{
	for (size_t i = 0; i < N_SECTION_TYPES; i++)
		if (strlen(section_types[i].type) == len &&
		    memcmp(section_types[i].type, type, len) == 0)
			return (int)i;
	return -1;
}

/* `[type]`, `[type "name"]` or `[type name]`; `s` starts at '['. */
static dr_status parse_header(dr_config *cfg, char *s, int line, dr_error *err)
{
	char *p = s + 1, *type, *name = NULL, label[LABEL_MAX];
	size_t type_len, name_len = 0;
	int have_name = 0, t;
	dr_conf_section *sec;

	while (is_blank(*p))
		p++;
	type = p;
	while (is_key_char((unsigned char)*p))
		p++;
	type_len = (size_t)(p - type);
	if (type_len == 0 || !(is_blank(*p) || *p == ']' || *p == '"'))
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "bad section header: expected [type] or "
			       "[type \"name\"]");
	while (is_blank(*p))
		p++;
	if (*p == '"') {
		name = ++p;
		while (*p && *p != '"')
			p++;
		if (*p != '"')
			return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
				       "bad section header: unterminated "
				       "quoted name");
		name_len = (size_t)(p - name);
		p++;
		have_name = 1;
	} else if (*p && *p != ']') {
		name = p;
		while (*p && !is_blank(*p) && *p != ']')
			p++;
		name_len = (size_t)(p - name);
		have_name = 1;
	}
	while (is_blank(*p))
		p++;
	if (*p != ']')
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "bad section header: expected ']'");
	p++;
	while (is_blank(*p))
		p++;
	if (*p != '\0')
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "text after the section header (comments "
			       "must be on a line of their own)");

	type[type_len] = '\0';
	t = section_type_index(type, type_len);
	if (t < 0)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "unknown section [%s]", type);
	if (section_types[t].name_max == 0 && have_name)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "section [%s] takes no name", type);
	if (section_types[t].name_max > 0 && !have_name)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "section [%s] needs a name, like [%s \"name\"]",
			       type, type);
	if (have_name && !valid_name(name, name_len, section_types[t].name_max))
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "bad %s name: expected 1 to %zu of a-z, 0-9, "
			       "'_' and '-'",
			       type, section_types[t].name_max);
	if (name)
		name[name_len] = '\0';

	for (size_t i = 0; i < cfg->n_sections; i++) {
		dr_conf_section *o = &cfg->sections[i];

		if (strcmp(o->type, type) != 0)
			continue;
		if ((!o->name && !name) ||
		    (o->name && name && strcmp(o->name, name) == 0))
			return fail_at(
				err, DR_ERR_CONFIG, cfg->path, line,
				"duplicate section %s (first at line "
				"%d)",
				section_label(type, name, label, sizeof(label)),
				o->line);
	}
	if (cfg->n_sections >= CONF_MAX_SECTIONS)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "more than %d sections", CONF_MAX_SECTIONS);

	cfg->sections = dr_xrealloc(
		cfg->sections, (cfg->n_sections + 1) * sizeof(*cfg->sections));
	sec = &cfg->sections[cfg->n_sections++];
	memset(sec, 0, sizeof(*sec));
	sec->type = dr_xstrdup(type);
	sec->name = name ? dr_xstrdup(name) : NULL;
	sec->line = line;
	return DR_OK;
}

/*
 * Undo the quotes of a value that starts with '"' and has been trimmed on
 * the right, in place. Returns NULL or what is wrong.
 */
static const char *unquote(char *v)
{
	char *r = v + 1, *w = v;

	for (;;) {
		if (*r == '\0')
			return "unterminated quoted value";
		if (*r == '"')
			break;
		if (*r == '\\') {
			r++;
			if (*r != '"' && *r != '\\')
				return "bad escape in quoted value (only \\\" "
				       "and \\\\ are known)";
		}
		*w++ = *r++;
	}
	r++;
	if (*r != '\0')
		return "text after the closing quote (comments must be on a "
		       "line of their own)";
	*w = '\0';
	return NULL;
}

/* `key = value` in the current section; `s` starts at the key. */
static dr_status parse_entry(dr_config *cfg, dr_conf_section *sec, char *s,
			     int line, dr_error *err)
{
	char *eq = strchr(s, '='), *key, *value, label[LABEL_MAX];
	const char *what;
	dr_conf_entry *e;

	if (!eq)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "expected 'key = value'");
	*eq = '\0';
	key = trim(s);
	for (char *p = key; *p; p++)
		if (!is_key_char((unsigned char)*p))
			return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
				       "bad key name: expected a-z, 0-9 and "
				       "'_'");
	if (*key == '\0')
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "missing key name before '='");
	value = trim(eq + 1);
	if (*value == '"') {
		what = unquote(value);
		if (what)
			return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
				       "%s", what);
	}
	section_label(sec->type, sec->name, label, sizeof(label));
	for (size_t i = 0; i < sec->n_entries; i++)
		if (strcmp(sec->entries[i].key, key) == 0)
			return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
				       "duplicate key '%s' in %s (first at "
				       "line %d)",
				       key, label, sec->entries[i].line);
	if (sec->n_entries >= CONF_MAX_KEYS)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, line,
			       "more than %d keys in %s", CONF_MAX_KEYS, label);
	sec->entries = dr_xrealloc(sec->entries, (sec->n_entries + 1) *
							 sizeof(*sec->entries));
	e = &sec->entries[sec->n_entries++];
	e->key = dr_xstrdup(key);
	e->value = dr_xstrdup(value);
	e->line = line;
	return DR_OK;
}

static dr_status parse_line(dr_config *cfg, char *line, int lineno,
			    dr_error *err)
{
	char *s = line;

	while (is_blank(*s))
		s++;
	if (*s == '\0' || *s == '#' || *s == ';')
		return DR_OK;
	if (*s == '[')
		return parse_header(cfg, s, lineno, err);
	if (cfg->n_sections == 0)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, lineno,
			       "line outside of any section (a [section] "
			       "header must come first)");
	return parse_entry(cfg, &cfg->sections[cfg->n_sections - 1], s, lineno,
			   err);
}

static dr_status read_sections(dr_config *cfg, const char *text, size_t len,
			       dr_error *err)
{
	const char *p = text, *end = text + len, *nul, *nl;
	char line[CONF_MAX_LINE + 1];
	int lineno = 0;
	size_t n;
	dr_status st;

	if (len > CONF_MAX_FILE)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, 0,
			       "file is larger than 1 MiB");
	nul = len ? memchr(text, '\0', len) : NULL;
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		lineno++;
		if (nul && nul >= p && nul < p + n)
			return fail_at(err, DR_ERR_CONFIG, cfg->path, lineno,
				       "NUL byte in the line");
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > CONF_MAX_LINE)
			return fail_at(err, DR_ERR_CONFIG, cfg->path, lineno,
				       "line longer than %d bytes",
				       CONF_MAX_LINE);
		memcpy(line, p, n);
		line[n] = '\0';
		p = nl ? nl + 1 : end;
		st = parse_line(cfg, line, lineno, err);
		if (st != DR_OK)
			return st;
	}
	return DR_OK;
}

/* ------------------------------------------------------------------------
 * Pass 2: values.
 */
static void values_free(dr_conf_values *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++) {
		free(v->items[i].name);
		free(v->items[i].env);
		free(v->items[i].value);
	}
	free(v->items);
	free(v);
}

static dr_status item_fail(dr_error *err, const dr_config *cfg,
			   const char *label, const conf_item *it,
			   const char *fmt, ...) DR_PRINTF(5, 6);

/* Report a bad value of `it`, saying where it came from; never quotes it. */
static dr_status item_fail(dr_error *err, const dr_config *cfg,
			   const char *label, const conf_item *it,
			   const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (it->origin == ORIGIN_ENV)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, 0,
			       "environment %s: bad value for '%s' in %s: %s",
			       it->env, it->name, label, what);
	if (it->origin == ORIGIN_DEFAULT)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, it->line,
			       "bad default value for '%s' in %s: %s (set "
			       "'%s' in the file)",
			       it->name, label, what, it->name);
	return fail_at(err, DR_ERR_CONFIG, cfg->path, it->line,
		       "bad value for '%s' in %s: %s", it->name, label, what);
}

/* Check `raw` against the item's type and store its forms in the item.
 * Returns NULL, or what a good value looks like. */
static const char *convert_value(const dr_config *cfg, conf_item *it,
				 const char *raw)
{
	int required = (it->flags & DR_CFG_REQUIRED) != 0;

	switch (it->type) {
	case DR_CFG_STRING:
		if (required && *raw == '\0')
			return "must not be empty";
		it->value = dr_xstrdup(raw);
		return NULL;
	case DR_CFG_INT:
		if (config_parse_size(raw, &it->num) < 0)
			return "expected a whole number, optionally with a k, "
			       "M or G suffix, like 1M";
		it->seconds = (double)it->num;
		it->value = dr_xstrdup(raw);
		return NULL;
	case DR_CFG_BOOL:
		if (config_parse_bool(raw, &it->boolean) < 0)
			return "expected true/false, yes/no, on/off or 1/0";
		it->num = it->boolean;
		it->value = dr_xstrdup(it->boolean ? "true" : "false");
		return NULL;
	case DR_CFG_DURATION:
		if (config_parse_duration(raw, &it->seconds) < 0)
			return "expected a duration like 30s, 250ms, 10m or 2h";
		it->num = (int64_t)it->seconds;
		it->value = dr_xstrdup(raw);
		return NULL;
	case DR_CFG_LIST:
		it->value = normalize_list(raw);
		if (!it->value)
			return "expected a comma-separated list without empty "
			       "items";
		if (required && *it->value == '\0')
			return "must not be empty";
		return NULL;
	case DR_CFG_URL:
		if (!valid_url(raw))
			return "expected an http:// or https:// URL with a "
			       "host";
		it->value = dr_xstrdup(raw);
		return NULL;
	case DR_CFG_PATH:
		if (*raw == '\0')
			return "expected a file path";
		it->value = path_join(cfg->dir, raw);
		return NULL;
	}
	return "the key has an unknown type";
}

static const dr_conf_entry *find_entry(const dr_conf_section *sec,
				       const char *key)
{
	if (!sec)
		return NULL;
	for (size_t i = 0; i < sec->n_entries; i++)
		if (strcmp(sec->entries[i].key, key) == 0)
			return &sec->entries[i];
	return NULL;
}

/* 1 when `key` is one the core reads in every [adapter] section (rate,
 * burst, training_deadline: config.h), not the plugin's. */
static int core_adapter_key(const dr_conf_section *sec, const char *key)
{
	return sec && strcmp(sec->type, "adapter") == 0 &&
	       (strcmp(key, "rate") == 0 || strcmp(key, "burst") == 0 ||
		strcmp(key, "training_deadline") == 0);
}

/* A plugin's table is outside input too: check it before using it. */
static dr_status check_table(const dr_config *cfg, const char *label, int line,
			     const dr_config_key *keys, size_t n,
			     int plugin_section, dr_error *err)
{
	for (size_t i = 0; i < n; i++) {
		const dr_config_key *k = &keys[i];

		if (k->type < DR_CFG_STRING || k->type > DR_CFG_PATH)
			return fail_at(err, DR_ERR_PLUGIN, cfg->path, line,
				       "%s: key '%s' is declared with an "
				       "unknown type",
				       label, k->name);
		if (plugin_section && strcmp(k->name, "plugin") == 0)
			return fail_at(err, DR_ERR_PLUGIN, cfg->path, line,
				       "%s: the plugin declares the reserved "
				       "key 'plugin'",
				       label);
		for (size_t j = 0; j < i; j++)
			if (strcmp(keys[j].name, k->name) == 0)
				return fail_at(err, DR_ERR_PLUGIN, cfg->path,
					       line,
					       "%s: key '%s' is declared twice",
					       label, k->name);
	}
	return DR_OK;
}

/*
 * THE resolver: check the entries of `sec` (NULL: the section is absent)
 * against `keys` ({NULL}-terminated, or NULL for none), then give every
 * declared key its value: the environment variable `env` when set and not
 * empty, else the file, else `dyn[i]` (a default computed at load, may be
 * NULL), else the table's default. `plugin_section` allows the key
 * `plugin` and records it as a last STRING item. On success *out is the
 * caller's; on failure nothing is allocated.
 */
static dr_status resolve_values(const dr_config *cfg,
				const dr_conf_section *sec, const char *label,
				int sec_line, const dr_config_key *keys,
				const char *const *dyn, int plugin_section,
				dr_conf_values **out, dr_error *err)
{
	size_t nkeys = 0;
	dr_conf_values *v;
	const dr_conf_entry *e;
	const char *raw, *what, *env, *def;
	conf_item *it;
	dr_status st;

	while (keys && keys[nkeys].name)
		nkeys++;
	st = check_table(cfg, label, sec_line, keys, nkeys, plugin_section,
			 err);
	if (st != DR_OK)
		return st;
	for (size_t i = 0; sec && i < sec->n_entries; i++) {
		size_t j;

		e = &sec->entries[i];
		if (plugin_section && (strcmp(e->key, "plugin") == 0 ||
				       core_adapter_key(sec, e->key)))
			continue;
		for (j = 0; j < nkeys; j++)
			if (strcmp(keys[j].name, e->key) == 0)
				break;
		if (j == nkeys)
			return fail_at(err, DR_ERR_CONFIG, cfg->path, e->line,
				       "unknown key '%s' in %s", e->key, label);
	}

	v = dr_xcalloc(1, sizeof(*v));
	v->items = dr_xcalloc(nkeys + 1, sizeof(*v->items));
	for (size_t i = 0; i < nkeys; i++) {
		it = &v->items[v->n++];
		it->name = dr_xstrdup(keys[i].name);
		it->type = keys[i].type;
		it->flags = keys[i].flags & (DR_CFG_REQUIRED | DR_CFG_SECRET);
		e = find_entry(sec, keys[i].name);
		env = keys[i].env ? getenv(keys[i].env) : NULL;
		def = dyn && dyn[i] ? dyn[i] : keys[i].default_value;
		if (env && *env) {
			raw = env;
			it->origin = ORIGIN_ENV;
			it->env = dr_xstrdup(keys[i].env);
			it->line = e ? e->line : sec_line;
			if (strlen(env) > CONF_MAX_LINE) {
				st = item_fail(err, cfg, label, it,
					       "longer than %d bytes",
					       CONF_MAX_LINE);
				goto err_values;
			}
		} else if (e) {
			raw = e->value;
			it->origin = ORIGIN_FILE;
			it->line = e->line;
		} else if (def) {
			raw = def;
			it->origin = ORIGIN_DEFAULT;
			it->line = sec_line;
		} else {
			if (it->flags & DR_CFG_REQUIRED) {
				st = fail_at(err, DR_ERR_CONFIG, cfg->path,
					     sec_line,
					     "missing required key '%s' in "
					     "%s%s%s%s",
					     it->name, label,
					     keys[i].env ? " (or set " : "",
					     keys[i].env ? keys[i].env : "",
					     keys[i].env ? ")" : "");
				goto err_values;
			}
			continue;
		}
		what = convert_value(cfg, it, raw);
		if (what) {
			st = item_fail(err, cfg, label, it, "%s", what);
			goto err_values;
		}
	}
	if (plugin_section) {
		it = &v->items[v->n++];
		it->name = dr_xstrdup("plugin");
		it->type = DR_CFG_STRING;
		e = find_entry(sec, "plugin");
		if (e) {
			it->origin = ORIGIN_FILE;
			it->line = e->line;
			if (!valid_name(e->value, strlen(e->value),
					INSTANCE_NAME_MAX)) {
				st = item_fail(err, cfg, label, it,
					       "expected a plugin name of a-z, "
					       "0-9, '_' and '-'");
				goto err_values;
			}
			it->value = dr_xstrdup(e->value);
		}
	}
	*out = v;
	return DR_OK;

err_values:
	values_free(v);
	return st;
}

static const conf_item *find_item(const dr_conf_values *v, const char *key)
{
	if (!v || !key)
		return NULL;
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->items[i].name, key) == 0)
			return &v->items[i];
	return NULL;
}

/* An integer item within [min, max], else an error saying `what`. */
static dr_status check_range(const dr_config *cfg, const char *label,
			     const conf_item *it, int64_t min, int64_t max,
			     const char *what, dr_error *err)
{
	if (it->num >= min && it->num <= max)
		return DR_OK;
	return item_fail(err, cfg, label, it, "%s", what);
}

/* A duration item above 0. */
static dr_status check_positive(const dr_config *cfg, const char *label,
				const conf_item *it, dr_error *err)
{
	if (it->seconds > 0)
		return DR_OK;
	return item_fail(err, cfg, label, it, "expected a duration above 0");
}

/* The index of `s` in a names table indexed by enum value, or 0. */
static int name_index(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 1; i < n; i++)
		if (names[i] && strcmp(names[i], s) == 0)
			return (int)i;
	return 0;
}

/*
 * Resolve one core section (sec NULL when absent from the file) with
 * `dyn` defaults, and record the values: in the section when it exists,
 * else in impl->absent. The values are owned before anything else can
 * fail, so config_free() reclaims them on every path.
 */
static dr_status resolve_core(config_impl *impl, int kind, dr_conf_section *sec,
			      const char *const *dyn, dr_error *err)
{
	char label[LABEL_MAX];
	dr_conf_values *v;
	dr_status st;

	section_label(section_types[kind].type, NULL, label, sizeof(label));
	st = resolve_values(&impl->pub, sec, label, sec ? sec->line : 0,
			    section_types[kind].keys, dyn, 0, &v, err);
	if (st != DR_OK)
		return st;
	if (sec)
		sec->values = v;
	else
		impl->absent[kind] = v;
	impl->core[kind] = v;
	return DR_OK;
}

/* NULL when `key` is a usable API key, else what is wrong with it. */
static const char *api_key_problem(const char *key, size_t len)
{
	if (len < API_KEY_MIN)
		return "is shorter than 16 characters";
	if (len > API_KEY_MAX)
		return "is longer than 256 characters";
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)key[i] <= ' ' ||
		    (unsigned char)key[i] >= 0x7f)
			return "contains a blank or a character that is not "
			       "printable ASCII";
	return NULL;
}

/* Add a checked key to the config, once. -1 when there are too many. */
static int add_api_key(dr_config *cfg, const char *key, size_t len)
{
	for (size_t i = 0; i < cfg->server.n_api_keys; i++)
		if (strlen(cfg->server.api_keys[i]) == len &&
		    memcmp(cfg->server.api_keys[i], key, len) == 0)
			return 0;
	if (cfg->server.n_api_keys >= API_KEYS_MAX)
		return -1;
	cfg->server.api_keys =
		dr_xrealloc(cfg->server.api_keys,
			    (cfg->server.n_api_keys + 1) * sizeof(char *));
	cfg->server.api_keys[cfg->server.n_api_keys++] = dr_xstrndup(key, len);
	return 0;
}

/* The lines of api_key_file: one key each, blank and '#' lines skipped. */
static dr_status read_api_key_file(dr_config *cfg, const char *label,
				   const conf_item *it, dr_error *err)
{
	char *text, *p, *nl, *line;
	const char *what;
	size_t len;
	int lineno = 0;
	dr_status st = DR_OK;

	if (read_file(it->value, KEYFILE_MAX, &text, &len) < 0) {
		/* No file adds no key: every /v1/ request is refused until
		 * one exists (`make run` writes it on its first start), which
		 * fails closed and lets a fresh checkout's CLI run. */
		if (errno == ENOENT) {
			dr_log(DR_LOG_WARNING,
			       "event=config.api_key_file_missing file=%s "
			       "reason=\"it adds no API key\"",
			       it->value);
			return DR_OK;
		}
		if (errno == EFBIG)
			return item_fail(err, cfg, label, it,
					 "%s is larger than 64 KiB", it->value);
		return item_fail(err, cfg, label, it, "cannot read %s: %s",
				 it->value, strerror(errno));
	}
	if (memchr(text, '\0', len)) {
		st = item_fail(err, cfg, label, it, "%s contains a NUL byte",
			       it->value);
		goto out;
	}
	for (p = text; *p; p = nl ? nl + 1 : p + strlen(p)) {
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		lineno++;
		line = p;
		while (is_blank(*line))
			line++;
		len = strlen(line);
		while (len > 0 &&
		       (is_blank(line[len - 1]) || line[len - 1] == '\r'))
			len--;
		if (len == 0 || line[0] == '#')
			continue;
		what = api_key_problem(line, len);
		if (what) {
			st = item_fail(err, cfg, label, it,
				       "%s line %d: the API key %s", it->value,
				       lineno, what);
			goto out;
		}
		if (add_api_key(cfg, line, len) < 0) {
			st = item_fail(err, cfg, label, it,
				       "more than %d API keys", API_KEYS_MAX);
			goto out;
		}
		if (!nl)
			break;
	}
out:
	free(text);
	return st;
}

/* The union of api_keys, api_key_file and DARKROOM_API_KEY. */
static dr_status collect_api_keys(dr_config *cfg, const char *label,
				  const dr_conf_values *v, dr_error *err)
{
	const conf_item *list = &v->items[SRV_API_KEYS];
	const conf_item *file = &v->items[SRV_API_KEY_FILE];
	const char *p, *comma, *what, *env;
	size_t len, idx = 0;
	dr_status st;

	for (p = list->value; p && *p; p = comma ? comma + 1 : p + len) {
		comma = strchr(p, ',');
		len = comma ? (size_t)(comma - p) : strlen(p);
		idx++;
		what = api_key_problem(p, len);
		if (what)
			return item_fail(err, cfg, label, list,
					 "API key #%zu %s", idx, what);
		if (add_api_key(cfg, p, len) < 0)
			return item_fail(err, cfg, label, list,
					 "more than %d API keys", API_KEYS_MAX);
		if (!comma)
			break;
	}
	if (file->value) {
		st = read_api_key_file(cfg, label, file, err);
		if (st != DR_OK)
			return st;
	}
	env = getenv("DARKROOM_API_KEY");
	if (env && *env) {
		what = api_key_problem(env, strlen(env));
		if (what)
			return fail_at(err, DR_ERR_CONFIG, cfg->path, 0,
				       "environment DARKROOM_API_KEY: the API "
				       "key %s",
				       what);
		if (add_api_key(cfg, env, strlen(env)) < 0)
			return fail_at(err, DR_ERR_CONFIG, cfg->path, 0,
				       "more than %d API keys", API_KEYS_MAX);
	}
	return DR_OK;
}

/*
 * The metadata key of a fair_key value "metadata.KEY", or NULL when the
 * value has another form. KEY follows the rule jobs.c holds metadata keys
 * to at intake (1-64 characters of A-Z a-z 0-9 . _ -, not starting with .
 * or -), so that the key can name a key some job has.
 */
static const char *fair_key_of(const char *v)
{
	static const char prefix[] = "metadata.";
	const char *k;
	size_t n;

	if (strncmp(v, prefix, sizeof(prefix) - 1) != 0)
		return NULL;
	k = v + sizeof(prefix) - 1;
	n = strlen(k);
	if (n == 0 || n > FAIR_KEY_MAX || k[0] == '.' || k[0] == '-')
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!is_name_char((unsigned char)k[i]) && k[i] != '.' &&
		    !(k[i] >= 'A' && k[i] <= 'Z'))
			return NULL;
	return k;
}

static dr_status resolve_server(config_impl *impl, dr_error *err)
{
	dr_config *cfg = &impl->pub;
	dr_conf_section *sec = config_section(cfg, "server", NULL);
	const char *dyn[SRV_COUNT] = { NULL };
	const char *label = "[server]", *port_env, *url_env;
	const char *only_adapter = NULL;
	char url[64];
	size_t n_adapters = 0, len;
	int port = 8080;
	conf_item *it;
	dr_status st;

	for (size_t i = 0; i < cfg->n_sections; i++) {
		if (strcmp(cfg->sections[i].type, "adapter") == 0) {
			n_adapters++;
			only_adapter = cfg->sections[i].name;
		}
	}
	if (n_adapters == 1)
		dyn[SRV_DEFAULT_ADAPTER] = only_adapter;

	/* The default public URL follows DARKROOM_PORT, like `make run`. */
	port_env = getenv("DARKROOM_PORT");
	url_env = getenv("DARKROOM_PUBLIC_URL");
	if (port_env && *port_env && !find_entry(sec, "public_url") &&
	    !(url_env && *url_env)) {
		port = parse_port(port_env);
		if (port < 0)
			return fail_at(err, DR_ERR_CONFIG, cfg->path, 0,
				       "environment DARKROOM_PORT: bad value: "
				       "expected a port number from 1 to "
				       "65535");
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	dyn[SRV_PUBLIC_URL] = url;

	st = resolve_core(impl, CORE_SERVER, sec, dyn, err);
	if (st != DR_OK)
		return st;
	it = impl->core[CORE_SERVER]->items;

	cfg->server.plugin_dir = it[SRV_PLUGIN_DIR].value;

	len = strlen(it[SRV_PUBLIC_URL].value);
	while (len > 0 && it[SRV_PUBLIC_URL].value[len - 1] == '/')
		it[SRV_PUBLIC_URL].value[--len] = '\0';
	cfg->server.public_url = it[SRV_PUBLIC_URL].value;

	st = check_range(cfg, label, &it[SRV_MAX_BODY], 1024, 64 * 1024 * 1024,
			 "expected a size from 1k to 64M", err);
	if (st != DR_OK)
		return st;
	cfg->server.max_body = (size_t)it[SRV_MAX_BODY].num;

	st = check_range(cfg, label, &it[SRV_JSON_MAX_DEPTH], 2, 256,
			 "expected a whole number from 2 to 256", err);
	if (st != DR_OK)
		return st;
	cfg->server.json_max_depth = (int)it[SRV_JSON_MAX_DEPTH].num;

	cfg->server.callback_secret = it[SRV_CALLBACK_SECRET].value;
	cfg->server.callback_secret_previous =
		it[SRV_CALLBACK_SECRET_PREVIOUS].value &&
				it[SRV_CALLBACK_SECRET_PREVIOUS].value[0]
			? it[SRV_CALLBACK_SECRET_PREVIOUS].value
			: NULL;
	/* Empty is off, as absent: a config template can leave it blank. */
	cfg->server.fair_key = NULL;
	if (it[SRV_FAIR_KEY].value && it[SRV_FAIR_KEY].value[0]) {
		cfg->server.fair_key = fair_key_of(it[SRV_FAIR_KEY].value);
		if (!cfg->server.fair_key)
			return item_fail(err, cfg, label, &it[SRV_FAIR_KEY],
					 "expected metadata.KEY, KEY 1-64 "
					 "characters of A-Z a-z 0-9 . _ - not "
					 "starting with . or -");
	}
	cfg->server.log_level = 0;
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++)
		if (strcmp(it[SRV_LOG_LEVEL].value, log_levels[i].name) == 0)
			cfg->server.log_level = log_levels[i].level;
	if (cfg->server.log_level == 0)
		return item_fail(err, cfg, label, &it[SRV_LOG_LEVEL],
				 "expected err, warning, notice, info or "
				 "debug");

	if (!it[SRV_DEFAULT_ADAPTER].value) {
		if (n_adapters == 0)
			return fail_at(err, DR_ERR_CONFIG, cfg->path,
				       sec ? sec->line : 0,
				       "missing required key 'default_adapter' "
				       "in [server]: the file has no [adapter] "
				       "section");
		return fail_at(err, DR_ERR_CONFIG, cfg->path,
			       sec ? sec->line : 0,
			       "missing required key 'default_adapter' in "
			       "[server]: there are %zu adapters to choose "
			       "from",
			       n_adapters);
	}
	if (!valid_name(it[SRV_DEFAULT_ADAPTER].value,
			strlen(it[SRV_DEFAULT_ADAPTER].value),
			INSTANCE_NAME_MAX))
		return item_fail(err, cfg, label, &it[SRV_DEFAULT_ADAPTER],
				 "expected an adapter instance name");
	if (!config_section(cfg, "adapter", it[SRV_DEFAULT_ADAPTER].value))
		return item_fail(err, cfg, label, &it[SRV_DEFAULT_ADAPTER],
				 "no [adapter \"%s\"] section",
				 it[SRV_DEFAULT_ADAPTER].value);
	cfg->server.default_adapter = it[SRV_DEFAULT_ADAPTER].value;

	/* With no [sink] section at all the plugin host reports it; with
	 * some, the active one must be among them. */
	if (!valid_name(it[SRV_SINK].value, strlen(it[SRV_SINK].value),
			INSTANCE_NAME_MAX))
		return item_fail(err, cfg, label, &it[SRV_SINK],
				 "expected a sink instance name");
	if (!config_section(cfg, "sink", it[SRV_SINK].value)) {
		for (size_t i = 0; i < cfg->n_sections; i++)
			if (strcmp(cfg->sections[i].type, "sink") == 0)
				return item_fail(err, cfg, label, &it[SRV_SINK],
						 "no [sink \"%s\"] section",
						 it[SRV_SINK].value);
	}
	cfg->server.sink = it[SRV_SINK].value;

	return collect_api_keys(cfg, label, impl->core[CORE_SERVER], err);
}

static dr_status resolve_database(config_impl *impl, dr_conf_section *sec,
				  dr_error *err)
{
	dr_config *cfg = &impl->pub;
	const char *label = "[database]";
	const conf_item *it;
	dr_status st;

	st = resolve_core(impl, CORE_DATABASE, sec, NULL, err);
	if (st != DR_OK)
		return st;
	it = impl->core[CORE_DATABASE]->items;
	st = check_range(cfg, label, &it[DB_PORT], 1, 65535,
			 "expected a port number from 1 to 65535", err);
	if (st == DR_OK && *it[DB_USER].value == '\0')
		st = item_fail(err, cfg, label, &it[DB_USER],
			       "must not be empty");
	if (st == DR_OK && !config_db_name_valid(it[DB_NAME].value))
		st = item_fail(err, cfg, label, &it[DB_NAME],
			       "expected 1 to %d letters, digits or "
			       "underscores",
			       DR_DB_NAME_MAX);
	if (st == DR_OK)
		st = check_positive(cfg, label, &it[DB_CONNECT_TIMEOUT], err);
	if (st == DR_OK)
		st = check_positive(cfg, label, &it[DB_IO_TIMEOUT], err);
	if (st != DR_OK)
		return st;
	cfg->database.host = it[DB_HOST].value;
	cfg->database.port = (unsigned)it[DB_PORT].num;
	cfg->database.socket = it[DB_SOCKET].value;
	cfg->database.user = it[DB_USER].value;
	cfg->database.password = it[DB_PASSWORD].value;
	cfg->database.name = it[DB_NAME].value;
	cfg->database.connect_timeout = it[DB_CONNECT_TIMEOUT].seconds;
	cfg->database.io_timeout = it[DB_IO_TIMEOUT].seconds;
	cfg->database.migrations_dir = it[DB_MIGRATIONS_DIR].value;
	return DR_OK;
}

static dr_status resolve_limits(config_impl *impl, dr_conf_section *sec,
				dr_error *err)
{
	dr_config *cfg = &impl->pub;
	const char *label = "[limits]";
	const conf_item *it;
	dr_status st;

	st = resolve_core(impl, CORE_LIMITS, sec, NULL, err);
	if (st != DR_OK)
		return st;
	it = impl->core[CORE_LIMITS]->items;
	st = check_range(cfg, label, &it[LIM_MAX_OUTPUT_BYTES], 1024,
			 (int64_t)1 << 40, "expected a size from 1k to 1T", err);
	if (st == DR_OK)
		st = check_range(cfg, label, &it[LIM_MAX_IMAGE_BYTES], 1024,
				 (int64_t)1 << 32,
				 "expected a size from 1k to 4G", err);
	if (st == DR_OK)
		st = check_range(cfg, label, &it[LIM_MAX_PIXELS], 1,
				 (int64_t)1 << 40, "expected a positive number",
				 err);
	if (st == DR_OK)
		st = check_range(cfg, label, &it[LIM_MAX_PAGES], 1, 100000,
				 "expected a whole number from 1 to 100000",
				 err);
	if (st == DR_OK)
		st = check_range(cfg, label, &it[LIM_MAX_REDIRECTS], 0, 20,
				 "expected a whole number from 0 to 20", err);
	if (st == DR_OK)
		st = check_positive(cfg, label, &it[LIM_DOWNLOAD_TIMEOUT], err);
	if (st == DR_OK)
		st = check_positive(cfg, label, &it[LIM_CONNECT_TIMEOUT], err);
	if (st == DR_OK)
		st = check_positive(cfg, label, &it[LIM_DOWNLOAD_BUDGET], err);
	if (st == DR_OK)
		st = check_range(cfg, label, &it[LIM_MAX_WEBHOOK_BODY], 1024,
				 (int64_t)1 << 30,
				 "expected a size from 1k to 1G", err);
	if (st == DR_OK)
		st = check_range(cfg, label, &it[LIM_MAX_BATCH_BODY], 1024,
				 (int64_t)1 << 30,
				 "expected a size from 1k to 1G", err);
	if (st == DR_OK)
		st = check_range(
			cfg, label, &it[LIM_MAX_STEPS], 1, DR_MAX_STEPS_LIMIT,
			"expected a number of steps from 1 to 64", err);
	if (st == DR_OK)
		st = check_range(cfg, label, &it[LIM_MAX_UPLOAD], 1024,
				 (int64_t)5 << 30,
				 "expected a size from 1k to 5G", err);
	if (st != DR_OK)
		return st;
	cfg->limits.max_output_bytes = (uint64_t)it[LIM_MAX_OUTPUT_BYTES].num;
	cfg->limits.max_image_bytes = (uint64_t)it[LIM_MAX_IMAGE_BYTES].num;
	cfg->limits.max_pixels = (uint64_t)it[LIM_MAX_PIXELS].num;
	cfg->limits.max_pages = (int)it[LIM_MAX_PAGES].num;
	cfg->limits.download_timeout = it[LIM_DOWNLOAD_TIMEOUT].seconds;
	cfg->limits.connect_timeout = it[LIM_CONNECT_TIMEOUT].seconds;
	cfg->limits.low_speed_limit = (long)it[LIM_LOW_SPEED_LIMIT].num;
	cfg->limits.low_speed_time = it[LIM_LOW_SPEED_TIME].seconds;
	cfg->limits.max_redirects = (int)it[LIM_MAX_REDIRECTS].num;
	cfg->limits.download_budget = it[LIM_DOWNLOAD_BUDGET].seconds;
	cfg->limits.max_webhook_body = (size_t)it[LIM_MAX_WEBHOOK_BODY].num;
	cfg->limits.max_batch_body = (size_t)it[LIM_MAX_BATCH_BODY].num;
	cfg->limits.max_steps = (int)it[LIM_MAX_STEPS].num;
	cfg->limits.max_upload = (uint64_t)it[LIM_MAX_UPLOAD].num;
	return DR_OK;
}

/*
 * A retention setting: "off" (0: kept for ever), a duration as
 * config_parse_duration() reads it, or whole days ("7d"). 0, or -1 for
 * anything else.
 */
static int parse_retention(const char *s, double *out)
{
	size_t n = strlen(s);
	int64_t days;
	char digits[16];

	if (strcmp(s, "off") == 0) {
		*out = 0;
		return 0;
	}
	if (n >= 2 && n - 1 < sizeof(digits) && s[n - 1] == 'd') {
		memcpy(digits, s, n - 1);
		digits[n - 1] = '\0';
		for (size_t i = 0; i < n - 1; i++)
			if (!is_digit((unsigned char)digits[i]))
				return -1;
		/* Digits only, so the size parser reads a plain number. */
		if (config_parse_size(digits, &days) < 0 ||
		    days > (int64_t)(DURATION_MAX / 86400))
			return -1;
		*out = (double)days * 86400;
		return 0;
	}
	return config_parse_duration(s, out);
}

static dr_status resolve_retention(config_impl *impl, dr_conf_section *sec,
				   dr_error *err)
{
	static const double min[RET_COUNT] = {
		[RET_IDEMPOTENCY_KEYS] = RETENTION_MIN,
		[RET_WEBHOOK_DELIVERIES] = RETENTION_WEBHOOK_MIN,
		[RET_SUPERSEDED] = RETENTION_MIN,
		[RET_JOBS] = RETENTION_MIN,
		[RET_SUCCEEDED] = RETENTION_MIN,
		[RET_FAILED] = RETENTION_MIN,
		[RET_CANCELED] = RETENTION_MIN,
	};
	dr_config *cfg = &impl->pub;
	const char *label = "[retention]";
	double v[RET_COUNT];
	const conf_item *it;
	dr_status st;

	st = resolve_core(impl, CORE_RETENTION, sec, NULL, err);
	if (st != DR_OK)
		return st;
	it = impl->core[CORE_RETENTION]->items;
	for (int i = 0; i < RET_COUNT; i++) {
		if (i > RET_JOBS && it[i].value[0] == '\0') {
			v[i] = v[RET_JOBS]; /* as jobs (read before) */
			continue;
		}
		if (parse_retention(it[i].value, &v[i]) < 0)
			return item_fail(err, cfg, label, &it[i],
					 "expected off or a duration like "
					 "24h or 7d");
		if (strcmp(it[i].value, "off") != 0 && v[i] < min[i])
			return item_fail(err, cfg, label, &it[i],
					 "expected off or at least %s",
					 min[i] == RETENTION_MIN ? "1s"
								 : "10m");
	}
	cfg->retention.idempotency_keys = v[RET_IDEMPOTENCY_KEYS];
	cfg->retention.webhook_deliveries = v[RET_WEBHOOK_DELIVERIES];
	cfg->retention.superseded = v[RET_SUPERSEDED];
	for (int i = 0; i < 3; i++)
		cfg->retention.jobs[i] = v[RET_SUCCEEDED + i];
	return DR_OK;
}

static dr_status resolve_files(config_impl *impl, dr_conf_section *sec,
			       dr_error *err)
{
	dr_config *cfg = &impl->pub;
	const char *label = "[files]";
	const conf_item *it;
	double ttl;
	dr_status st;

	st = resolve_core(impl, CORE_FILES, sec, NULL, err);
	if (st != DR_OK)
		return st;
	it = impl->core[CORE_FILES]->items;
	if (parse_retention(it[FIL_TTL].value, &ttl) < 0 ||
	    (strcmp(it[FIL_TTL].value, "off") != 0 && ttl < RETENTION_MIN))
		return item_fail(err, cfg, label, &it[FIL_TTL],
				 "expected off or a duration like 24h or 7d");
	st = check_positive(cfg, label, &it[FIL_URL_TTL], err);
	if (st != DR_OK)
		return st;
	if (it[FIL_URL_TTL].seconds < 1 || it[FIL_URL_TTL].seconds > 7 * 86400)
		return item_fail(err, cfg, label, &it[FIL_URL_TTL],
				 "expected 1s to 7 days (the longest an S3 "
				 "presigned URL may last)");
	if (it[FIL_URL_SECRET].value && it[FIL_URL_SECRET].value[0] &&
	    strlen(it[FIL_URL_SECRET].value) < 16)
		return item_fail(err, cfg, label, &it[FIL_URL_SECRET],
				 "expected at least 16 characters");
	cfg->files.ttl = ttl;
	cfg->files.url_ttl = it[FIL_URL_TTL].seconds;
	cfg->files.url_secret =
		it[FIL_URL_SECRET].value && it[FIL_URL_SECRET].value[0]
			? it[FIL_URL_SECRET].value
			: NULL;
	return DR_OK;
}

static dr_status resolve_worker(config_impl *impl, dr_conf_section *sec,
				dr_error *err)
{
	dr_config *cfg = &impl->pub;
	const char *label = "[worker]";
	const conf_item *it;
	dr_status st;

	st = resolve_core(impl, CORE_WORKER, sec, NULL, err);
	if (st != DR_OK)
		return st;
	it = impl->core[CORE_WORKER]->items;
	st = check_range(cfg, label, &it[WRK_PROCESSES], 1, 64,
			 "expected a whole number from 1 to 64", err);
	if (st == DR_OK)
		st = check_range(cfg, label, &it[WRK_MAX_ATTEMPTS], 1, 100,
				 "expected a whole number from 1 to 100", err);
	if (st == DR_OK)
		st = check_positive(cfg, label, &it[WRK_LEASE], err);
	if (st == DR_OK)
		st = check_positive(cfg, label, &it[WRK_POLL_MIN], err);
	if (st == DR_OK && it[WRK_POLL_MAX].seconds < it[WRK_POLL_MIN].seconds)
		st = item_fail(err, cfg, label, &it[WRK_POLL_MAX],
			       "must not be shorter than poll_min");
	if (st == DR_OK)
		st = check_positive(cfg, label, &it[WRK_PROVIDER_DEADLINE],
				    err);
	if (st == DR_OK)
		st = check_positive(cfg, label, &it[WRK_RETRY_BASE], err);
	if (st == DR_OK && it[WRK_RETRY_MAX].seconds < it[WRK_RETRY_BASE].seconds)
		st = item_fail(err, cfg, label, &it[WRK_RETRY_MAX],
			       "must not be shorter than retry_base");
	if (st != DR_OK)
		return st;
	cfg->worker.processes = (int)it[WRK_PROCESSES].num;
	cfg->worker.max_attempts = (int)it[WRK_MAX_ATTEMPTS].num;
	cfg->worker.lease = it[WRK_LEASE].seconds;
	cfg->worker.poll_min = it[WRK_POLL_MIN].seconds;
	cfg->worker.poll_max = it[WRK_POLL_MAX].seconds;
	cfg->worker.provider_deadline = it[WRK_PROVIDER_DEADLINE].seconds;
	cfg->worker.shutdown_grace = it[WRK_SHUTDOWN_GRACE].seconds;
	cfg->worker.wakeup_socket = it[WRK_WAKEUP_SOCKET].value;
	cfg->worker.retry_base = it[WRK_RETRY_BASE].seconds;
	cfg->worker.retry_max = it[WRK_RETRY_MAX].seconds;
	cfg->worker.submit_grace = it[WRK_SUBMIT_GRACE].seconds;
	return DR_OK;
}

/* A [preset "name"] section into the next slot of cfg->presets. */
static dr_status resolve_preset(config_impl *impl, dr_conf_section *sec,
				dr_error *err)
{
	dr_config *cfg = &impl->pub;
	char label[LABEL_MAX];
	const conf_item *it;
	dr_preset *p;
	dr_status st;
	int fit, format;

	section_label(sec->type, sec->name, label, sizeof(label));
	st = resolve_values(cfg, sec, label, sec->line, preset_keys, NULL, 0,
			    &sec->values, err);
	if (st != DR_OK)
		return st;
	it = sec->values->items;
	st = check_range(cfg, label, &it[PRE_WIDTH], 1, 16384,
			 "expected a whole number from 1 to 16384", err);
	if (st == DR_OK)
		st = check_range(cfg, label, &it[PRE_HEIGHT], 1, 16384,
				 "expected a whole number from 1 to 16384",
				 err);
	if (st == DR_OK)
		st = check_range(cfg, label, &it[PRE_QUALITY], 1, 100,
				 "expected a whole number from 1 to 100", err);
	if (st != DR_OK)
		return st;
	fit = name_index(fit_names, sizeof(fit_names) / sizeof(fit_names[0]),
			 it[PRE_FIT].value);
	if (!fit)
		return item_fail(err, cfg, label, &it[PRE_FIT],
				 "expected inside or cover");
	format = name_index(format_names,
			    sizeof(format_names) / sizeof(format_names[0]),
			    it[PRE_FORMAT].value);
	if (!format)
		return item_fail(err, cfg, label, &it[PRE_FORMAT],
				 "expected webp, avif, jpeg or png");
	p = &cfg->presets[cfg->n_presets++];
	p->name = sec->name;
	p->width = (int)it[PRE_WIDTH].num;
	p->height = (int)it[PRE_HEIGHT].num;
	p->fit = (dr_fit)fit;
	p->format = (dr_format)format;
	p->quality = (int)it[PRE_QUALITY].num;
	return DR_OK;
}

/* At load an adapter or sink section is only checked for its shape: the
 * key names (pass 1) and the `plugin` it names; an adapter's core keys
 * `rate`, `burst` and `training_deadline` are read here (config.h). */
static dr_status check_plugin_section(const dr_config *cfg,
				      dr_conf_section *sec, dr_error *err)
{
	const dr_conf_entry *e = find_entry(sec, "plugin");
	char label[LABEL_MAX];
	int64_t burst;

	section_label(sec->type, sec->name, label, sizeof(label));
	if (e && !valid_name(e->value, strlen(e->value), INSTANCE_NAME_MAX))
		return fail_at(err, DR_ERR_CONFIG, cfg->path, e->line,
			       "bad value for 'plugin' in %s: expected a "
			       "plugin name of a-z, 0-9, '_' and '-'",
			       label);
	sec->rate = 0;
	sec->burst = 1;
	sec->training_deadline = DR_TRAINING_DEADLINE_DEFAULT;
	if (strcmp(sec->type, "adapter") != 0)
		return DR_OK;
	e = find_entry(sec, "training_deadline");
	if (e &&
	    (config_parse_duration(e->value, &sec->training_deadline) != 0 ||
	     !(sec->training_deadline >= 1) ||
	     sec->training_deadline > DR_TRAINING_DEADLINE_MAX))
		return fail_at(err, DR_ERR_CONFIG, cfg->path, e->line,
			       "bad value for 'training_deadline' in %s: "
			       "expected a duration from 1s to 30 days "
			       "(e.g. 6h)",
			       label);
	e = find_entry(sec, "rate");
	if (e && config_parse_rate(e->value, &sec->rate) != 0)
		return fail_at(err, DR_ERR_CONFIG, cfg->path, e->line,
			       "bad value for 'rate' in %s: expected N/s, "
			       "N/min or N/h (at least one a day, at most "
			       "%.0f per second), or off",
			       label, DR_RATE_MAX);
	e = find_entry(sec, "burst");
	if (e && (config_parse_size(e->value, &burst) != 0 || burst < 1 ||
		  burst > DR_BURST_MAX ||
		  strspn(e->value, "0123456789") != strlen(e->value)))
		return fail_at(err, DR_ERR_CONFIG, cfg->path, e->line,
			       "bad value for 'burst' in %s: expected a whole "
			       "number of creates, 1 to %d",
			       label, DR_BURST_MAX);
	if (e)
		sec->burst = (int)burst;
	return DR_OK;
}

/* default_renditions, once the presets are known. */
static dr_status resolve_renditions(config_impl *impl, dr_error *err)
{
	dr_config *cfg = &impl->pub;
	const conf_item *it =
		&impl->core[CORE_SERVER]->items[SRV_DEFAULT_RENDITIONS];
	size_t n;

	split_list(it->value, &impl->renditions, &n);
	cfg->server.default_renditions = (const char *const *)impl->renditions;
	cfg->server.n_default_renditions = n;
	for (size_t i = 0; i < n; i++) {
		const char *name = impl->renditions[i];

		if (!valid_name(name, strlen(name), PRESET_NAME_MAX))
			return item_fail(err, cfg, "[server]", it,
					 "expected preset names");
		if (!config_preset(cfg, name))
			return item_fail(err, cfg, "[server]", it,
					 "no preset '%s'%s", name,
					 impl->builtin_presets
						 ? ""
						 : " (the file declares its "
						   "own presets)");
		for (size_t j = 0; j < i; j++)
			if (strcmp(impl->renditions[j], name) == 0)
				return item_fail(err, cfg, "[server]", it,
						 "'%s' is listed twice", name);
	}
	return DR_OK;
}

/*
 * Everything after pass 1: the sections the core knows in file order (so
 * the first error reported is the first in the file), then the core
 * sections the file lacks, then the references between sections.
 */
static dr_status resolve_all(config_impl *impl, dr_error *err)
{
	dr_config *cfg = &impl->pub;
	size_t n_presets = 0;
	dr_conf_section *sec;
	dr_status st = DR_OK;

	for (size_t i = 0; i < cfg->n_sections; i++)
		if (strcmp(cfg->sections[i].type, "preset") == 0)
			n_presets++;
	impl->builtin_presets = n_presets == 0;
	if (n_presets == 0)
		n_presets =
			sizeof(builtin_presets) / sizeof(builtin_presets[0]);
	cfg->presets = dr_xcalloc(n_presets, sizeof(*cfg->presets));

	for (size_t i = 0; i < cfg->n_sections && st == DR_OK; i++) {
		sec = &cfg->sections[i];
		switch (section_type_index(sec->type, strlen(sec->type))) {
		case CORE_SERVER:
			st = resolve_server(impl, err);
			break;
		case CORE_DATABASE:
			st = resolve_database(impl, sec, err);
			break;
		case CORE_WORKER:
			st = resolve_worker(impl, sec, err);
			break;
		case CORE_LIMITS:
			st = resolve_limits(impl, sec, err);
			break;
		case CORE_RETENTION:
			st = resolve_retention(impl, sec, err);
			break;
		case CORE_FILES:
			st = resolve_files(impl, sec, err);
			break;
		default:
			if (strcmp(sec->type, "preset") == 0)
				st = resolve_preset(impl, sec, err);
			else
				st = check_plugin_section(cfg, sec, err);
			break;
		}
	}
	if (st == DR_OK && !impl->core[CORE_SERVER])
		st = resolve_server(impl, err);
	if (st == DR_OK && !impl->core[CORE_DATABASE])
		st = resolve_database(impl, NULL, err);
	if (st == DR_OK && !impl->core[CORE_WORKER])
		st = resolve_worker(impl, NULL, err);
	if (st == DR_OK && !impl->core[CORE_LIMITS])
		st = resolve_limits(impl, NULL, err);
	if (st == DR_OK && !impl->core[CORE_RETENTION])
		st = resolve_retention(impl, NULL, err);
	if (st == DR_OK && !impl->core[CORE_FILES])
		st = resolve_files(impl, NULL, err);
	if (st != DR_OK)
		return st;

	if (impl->builtin_presets) {
		memcpy(cfg->presets, builtin_presets, sizeof(builtin_presets));
		cfg->n_presets =
			sizeof(builtin_presets) / sizeof(builtin_presets[0]);
	}
	return resolve_renditions(impl, err);
}

/* Parse `text` into a new config that takes `path` and `dir` (malloc'd)
 * over, whatever happens. */
static dr_status parse_text(char *path, char *dir, const char *text, size_t len,
			    dr_config **out, dr_error *err)
{
	config_impl *impl = dr_xcalloc(1, sizeof(*impl));
	dr_status st;

	impl->pub.path = path;
	impl->pub.dir = dir;
	st = read_sections(&impl->pub, text, len, err);
	if (st == DR_OK)
		st = resolve_all(impl, err);
	if (st != DR_OK) {
		config_free(&impl->pub);
		return st;
	}
	*out = &impl->pub;
	return DR_OK;
}

/* ------------------------------------------------------------------------
 * Public functions.
 */
dr_status config_parse(const char *name, const char *text, size_t len,
		       dr_config **out, dr_error *err)
{
	char *dir;

	if (!name || !out || (!text && len > 0))
		return dr_fail(err, DR_ERR_INVALID, "config",
			       "config_parse: missing argument");
	dir = folder_of(name);
	if (!dir)
		return fail_at(err, DR_ERR_IO, name, 0,
			       "cannot find the working directory: %s",
			       strerror(errno));
	return parse_text(dr_xstrdup(name), dir, text ? text : "", len, out,
			  err);
}

dr_status config_load(const char *path, dr_config **out, dr_error *err)
{
	char *abs, *dir, *text;
	size_t len;
	dr_status st;

	if (!path || !out)
		return dr_fail(err, DR_ERR_INVALID, "config",
			       "config_load: missing argument");
	abs = realpath(path, NULL);
	if (!abs)
		return fail_at(err, DR_ERR_IO, path, 0, "cannot open: %s",
			       strerror(errno));
	if (read_file(abs, CONF_MAX_FILE, &text, &len) < 0) {
		if (errno == EFBIG)
			st = fail_at(err, DR_ERR_CONFIG, abs, 0,
				     "file is larger than 1 MiB");
		else
			st = fail_at(err, DR_ERR_IO, abs, 0, "cannot read: %s",
				     strerror(errno));
		free(abs);
		return st;
	}
	dir = folder_of(abs); /* abs is absolute: no getcwd, cannot fail */
	if (!dir) {
		st = fail_at(err, DR_ERR_IO, abs, 0, "cannot find its folder");
		free(text);
		free(abs);
		return st;
	}
	st = parse_text(abs, dir, text, len, out, err);
	free(text);
	return st;
}

void config_free(dr_config *cfg)
{
	config_impl *impl;

	if (!cfg)
		return;
	impl = impl_of(cfg);
	for (size_t i = 0; i < cfg->n_sections; i++) {
		dr_conf_section *sec = &cfg->sections[i];

		for (size_t j = 0; j < sec->n_entries; j++) {
			free(sec->entries[j].key);
			free(sec->entries[j].value);
		}
		free(sec->entries);
		values_free(sec->values);
		free(sec->type);
		free(sec->name);
	}
	free(cfg->sections);
	for (size_t i = 0; i < CORE_COUNT; i++)
		values_free(impl->absent[i]);
	for (size_t i = 0; i < cfg->server.n_api_keys; i++)
		free(cfg->server.api_keys[i]);
	free(cfg->server.api_keys);
	for (size_t i = 0; i < cfg->server.n_default_renditions; i++)
		free(impl->renditions[i]);
	free(impl->renditions);
	free(cfg->presets);
	free(cfg->path);
	free(cfg->dir);
	free(impl);
}

/* The checkout's conf/darkroom.conf when this program runs from a build
 * folder of a darkroom checkout (<checkout>/build/darkroom: the folder
 * above the executable's holds conf/darkroom.conf and
 * core/darkroom-plugin.h), else NULL. An installed program never sits
 * next to core/, so it keeps the system path. */
static const char *checkout_config(void)
{
	static char path[PATH_MAX];
	char exe[PATH_MAX], marker[PATH_MAX];
	struct stat st;
	ssize_t n;
	char *slash;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	for (int up = 0; up < 2; up++) {
		slash = strrchr(exe, '/');
		if (!slash || slash == exe)
			return NULL;
		*slash = '\0';
	}
	if ((size_t)snprintf(marker, sizeof(marker),
			     "%s/core/darkroom-plugin.h",
			     exe) >= sizeof(marker) ||
	    stat(marker, &st) != 0 || !S_ISREG(st.st_mode))
		return NULL;
	if ((size_t)snprintf(path, sizeof(path), "%s/conf/darkroom.conf",
			     exe) >= sizeof(path) ||
	    stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return NULL;
	return path;
}

const char *config_default_path(const char *fallback)
{
	const char *env = getenv("DARKROOM_CONF");
	const char *checkout;

	if (env && *env)
		return env;
	checkout = checkout_config();
	return checkout ? checkout : fallback;
}

const dr_preset *config_preset(const dr_config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_presets; i++)
		if (strcmp(cfg->presets[i].name, name) == 0)
			return &cfg->presets[i];
	return NULL;
}

dr_conf_section *config_section(const dr_config *cfg, const char *type,
				const char *name)
{
	if (!cfg || !type)
		return NULL;
	for (size_t i = 0; i < cfg->n_sections; i++) {
		dr_conf_section *sec = &cfg->sections[i];

		if (strcmp(sec->type, type) != 0)
			continue;
		if (!name ? !sec->name
			  : sec->name && strcmp(sec->name, name) == 0)
			return sec;
	}
	return NULL;
}

dr_status config_resolve_plugin(const dr_config *cfg, dr_conf_section *sec,
				const dr_config_key *keys, dr_error *err)
{
	char label[LABEL_MAX];
	dr_conf_values *v;
	dr_status st;

	if (!cfg || !sec || !sec->name ||
	    (strcmp(sec->type, "adapter") != 0 &&
	     strcmp(sec->type, "sink") != 0))
		return dr_fail(err, DR_ERR_INVALID, "config",
			       "config_resolve_plugin: not a plugin section");
	section_label(sec->type, sec->name, label, sizeof(label));
	for (size_t i = 0; keys && keys[i].name; i++)
		if (core_adapter_key(sec, keys[i].name))
			return fail_at(err, DR_ERR_PLUGIN, cfg->path, sec->line,
				       "%s: the plugin declares the reserved "
				       "key '%s'",
				       label, keys[i].name);
	st = resolve_values(cfg, sec, label, sec->line, keys, NULL, 1, &v, err);
	if (st != DR_OK)
		return st;
	values_free(sec->values);
	sec->values = v;
	return DR_OK;
}

const char *config_section_plugin(const dr_conf_section *sec)
{
	const dr_conf_entry *e;

	if (!sec)
		return NULL;
	e = find_entry(sec, "plugin");
	return e ? e->value : sec->name;
}

const char *confv_get(const dr_conf_values *v, const char *key)
{
	const conf_item *it = find_item(v, key);

	return it ? it->value : NULL;
}

int64_t confv_int(const dr_conf_values *v, const char *key)
{
	const conf_item *it = find_item(v, key);

	return it && it->value ? it->num : 0;
}

double confv_seconds(const dr_conf_values *v, const char *key)
{
	const conf_item *it = find_item(v, key);

	return it && it->value ? it->seconds : 0;
}

int confv_bool(const dr_conf_values *v, const char *key)
{
	const conf_item *it = find_item(v, key);

	return it && it->value ? it->boolean : 0;
}

int confv_is_secret(const dr_conf_values *v, const char *key)
{
	const conf_item *it = find_item(v, key);

	return it ? (it->flags & DR_CFG_SECRET) != 0 : 0;
}

/* ------------------------------------------------------------------------
 * Printing.
 */

/* `key = value`, quoted when the value would not read back as it is. */
static void print_kv(FILE *f, const char *key, const char *value)
{
	size_t len = strlen(value);

	if (len == 0) {
		fprintf(f, "%s =\n", key);
		return;
	}
	if (!is_blank(value[0]) && value[0] != '"' &&
	    !is_blank(value[len - 1])) {
		fprintf(f, "%s = %s\n", key, value);
		return;
	}
	fprintf(f, "%s = \"", key);
	for (const char *p = value; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', f);
		fputc(*p, f);
	}
	fputs("\"\n", f);
}

static void print_values(FILE *f, const dr_conf_values *v, const char *skip)
{
	for (size_t i = 0; v && i < v->n; i++) {
		const conf_item *it = &v->items[i];

		if (!it->value || (skip && strcmp(it->name, skip) == 0))
			continue;
		if (it->origin == ORIGIN_ENV)
			fprintf(f, "# from the environment: %s\n", it->env);
		if (it->flags & DR_CFG_SECRET)
			fprintf(f, "%s = (secret)\n", it->name);
		else
			print_kv(f, it->name, it->value);
	}
}

void config_print(const dr_config *cfg, FILE *f)
{
	const config_impl *impl;
	char label[LABEL_MAX];

	if (!cfg || !f)
		return;
	impl = impl_of(cfg);
	fprintf(f, "# darkroom configuration in effect\n# file: %s\n",
		cfg->path);
	for (size_t k = 0; k < CORE_COUNT; k++) {
		fprintf(f, "\n[%s]\n", section_types[k].type);
		if (k == CORE_SERVER)
			fprintf(f,
				"# api keys: %zu in effect, from api_keys, "
				"api_key_file and DARKROOM_API_KEY (never "
				"shown)\n",
				cfg->server.n_api_keys);
		print_values(f, impl->core[k],
			     k == CORE_SERVER ? "api_keys" : NULL);
	}
	for (size_t i = 0; i < cfg->n_presets; i++) {
		const dr_preset *p = &cfg->presets[i];

		fprintf(f, "\n[preset \"%s\"]\n", p->name);
		if (impl->builtin_presets)
			fputs("# built in (the file declares no preset)\n", f);
		fprintf(f,
			"width = %d\nheight = %d\nfit = %s\nformat = %s\n"
			"quality = %d\n",
			p->width, p->height, fit_names[p->fit],
			format_names[p->format], p->quality);
	}
	for (size_t i = 0; i < cfg->n_sections; i++) {
		const dr_conf_section *sec = &cfg->sections[i];

		if (strcmp(sec->type, "adapter") != 0 &&
		    strcmp(sec->type, "sink") != 0)
			continue;
		fprintf(f, "\n%s\n",
			section_label(sec->type, sec->name, label,
				      sizeof(label)));
		if (sec->rate > 0)
			fprintf(f, "rate = %.17g/s\nburst = %d\n", sec->rate,
				sec->burst);
		if (strcmp(sec->type, "adapter") == 0 &&
		    sec->training_deadline != DR_TRAINING_DEADLINE_DEFAULT)
			fprintf(f, "training_deadline = %.17gs\n",
				sec->training_deadline);
		if (sec->values) {
			print_values(f, sec->values, NULL);
			continue;
		}
		/* Unchecked: which keys are secret is not known yet. */
		fprintf(f, "plugin = %s\n", config_section_plugin(sec));
		for (size_t j = 0; j < sec->n_entries; j++)
			if (strcmp(sec->entries[j].key, "plugin") != 0 &&
			    !core_adapter_key(sec, sec->entries[j].key))
				fprintf(f,
					"%s = (not shown: plugin not "
					"loaded)\n",
					sec->entries[j].key);
	}
}
