/*
 * plugin.c - the plugin host: loading, checking and instantiating plugins.
 *
 * This module owns every dlopen() handle of the process and the dr_host
 * table plugins call back through. It is built like lighttpd's and
 * SQLite's loaders: a plugin is found only by a plain name in the one
 * configured directory (never a path a config value could steer), its
 * descriptor is checked field by field in a fixed order before anything
 * else in it is trusted, and each check fails with a sentence naming the
 * file, because a refused plugin is an operator's problem and the message
 * is all they get.
 *
 * The descriptor is read in ABI order: abi_version and size are the first
 * two members in every ABI version, so they can be read from any plugin;
 * the other members are only looked at once both match exactly.
 *
 * The operations table of a plugin built against an older header of the
 * same ABI version is shorter than the core's (operations are appended).
 * Rather than every caller checking the table's size before each call,
 * the loader copies the descriptor and the table into memory of its own,
 * the table zero-filled to the core's size, so an operation the plugin's
 * table does not reach reads as NULL everywhere in the core.
 *
 * plugins_init() sizes its arrays up front and never moves them, because
 * create() receives pointers to the instances (dr_instance) and loaded
 * plugins that must stay valid until destroy().
 */
#include "plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "buf.h"
#include "datascan.h"
#include "db.h"
#include "ids.h"
#include "log.h"
#include "netpolicy.h"
#include "plugin_http.h"
#include "webhook.h"

/* Longest plugin name, and the most files plugins_scan() looks at. */
#define PLUGIN_NAME_MAX 64
#define PLUGIN_SCAN_MAX 1024
/* Cap on the error text plugins_scan() collects. */
#define PLUGIN_SCAN_ERRORS_MAX (64 * 1024)
/* One plugin log message, before the core's prefix. */
#define PLUGIN_LOG_MAX 1536

/* ------------------------------------------------------------------------
 * Names and messages
 */

/* 1 when `name` is 1..64 bytes of [a-z0-9_-]: a file name, never a path. */
static int valid_plugin_name(const char *name)
{
	size_t n = 0;

	if (!name)
		return 0;
	for (const char *s = name; *s; s++, n++) {
		int ok = (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
			 *s == '_' || *s == '-';

		if (!ok || n >= PLUGIN_NAME_MAX)
			return 0;
	}
	return n > 0;
}

/*
 * Copy untrusted text (a name from a config file or a plugin descriptor)
 * into buf for a message: at most bufsz - 1 bytes, control and non-ASCII
 * bytes shown as '?', "..." when cut. Returns buf.
 */
static const char *printable(const char *s, char *buf, size_t bufsz)
{
	size_t i = 0;

	if (!s)
		s = "(null)";
	for (; s[i] && i + 1 < bufsz; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	buf[i] = '\0';
	if (s[i] && bufsz >= 4)
		memcpy(buf + bufsz - 4, "...", 4);
	return buf;
}

/* "dir/name.so", malloc'd. */
static char *plugin_path(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + sizeof("/.so");
	char *path = dr_xmalloc(n);

	snprintf(path, n, "%s/%s.so", dir, name);
	return path;
}

static const char *kind_name(dr_plugin_kind kind)
{
	switch (kind) {
	case DR_PLUGIN_ADAPTER:
		return "adapter";
	case DR_PLUGIN_SINK:
		return "sink";
	}
	return "unknown";
}

/* ------------------------------------------------------------------------
 * Loading one file
 */

/* The descriptor and its operations table as the core keeps them (see
 * the file comment); dr_loaded_plugin.desc points at `desc`. */
typedef struct desc_copy {
	dr_plugin desc;
	union {
		dr_adapter_ops adapter;
		dr_sink_ops sink;
	} ops;
} desc_copy;

/*
 * The size of the kind's operations table (see "Operation tables" in
 * darkroom-plugin.h): not larger than the core's table, at least up to
 * the kind's last mandatory operation, and a whole number of members.
 */
static dr_status check_ops_size(const dr_plugin *d, const char *path,
				dr_error *err)
{
	const char *kind = kind_name(d->kind);
	int adapter = d->kind == DR_PLUGIN_ADAPTER;
	size_t have = adapter ? d->adapter->size : d->sink->size;
	size_t max = adapter ? sizeof(dr_adapter_ops) : sizeof(dr_sink_ops);
	size_t min = adapter ? DR_ADAPTER_OPS_MIN_SIZE : DR_SINK_OPS_MIN_SIZE;

	if (have > max)
		return dr_fail(err, DR_ERR_PLUGIN, "plugin_abi_mismatch",
			       "%s plugin '%s' has an operations table of %zu "
			       "bytes, this darkroom knows %zu (built against "
			       "a newer darkroom-plugin.h of ABI %u); update "
			       "darkroom or rebuild the plugin against this "
			       "darkroom's darkroom-plugin.h (%s)",
			       kind, d->name, have, max,
			       (unsigned)DR_PLUGIN_ABI_VERSION, path);
	if (have < min || have % sizeof(void *) != 0)
		return dr_fail(err, DR_ERR_PLUGIN, "plugin_invalid",
			       "%s plugin '%s' has an operations table of %zu "
			       "bytes, not a table of at least %zu (set its "
			       "size to sizeof(dr_%s_ops)) (%s)",
			       kind, d->name, have, min, kind, path);
	return DR_OK;
}

/*
 * The kind-specific checks: the operations table of the kind, its size,
 * and its mandatory members. The first missing one is named. `d` is the
 * core's copy, its table already padded.
 */
static dr_status check_ops(const dr_plugin *d, const char *path, dr_error *err)
{
	const char *kind = kind_name(d->kind);
	const char *missing = NULL;

	if (!d->create)
		missing = "create";
	else if (!d->destroy)
		missing = "destroy";
	else if (d->kind == DR_PLUGIN_ADAPTER && !d->adapter->submit)
		missing = "submit";
	else if (d->kind == DR_PLUGIN_SINK && !d->sink->put)
		missing = "put";
	else if (d->kind == DR_PLUGIN_SINK && !d->sink->get)
		missing = "get";
	else if (d->kind == DR_PLUGIN_SINK && !d->sink->remove)
		missing = "remove";
	else if (d->kind == DR_PLUGIN_SINK && !d->sink->public_url)
		missing = "public_url";
	if (missing)
		return dr_fail(err, DR_ERR_PLUGIN, "plugin_invalid",
			       "%s plugin '%s' lacks the mandatory operation "
			       "'%s' (%s)",
			       kind, d->name, missing, path);
	return DR_OK;
}

/*
 * The config key table: every entry named and typed, and none called
 * `plugin`, which the host reserves for choosing the plugin.
 */
static dr_status check_keys(const dr_plugin *d, const char *path, dr_error *err)
{
	char shown[PLUGIN_NAME_MAX + 1];

	if (!d->config_keys)
		return DR_OK;
	for (const dr_config_key *k = d->config_keys; k->name; k++) {
		if (!k->name[0] || strcmp(k->name, "plugin") == 0)
			return dr_fail(
				err, DR_ERR_PLUGIN, "plugin_invalid",
				"plugin %s declares the config key '%s', "
				"which is reserved",
				path, k->name);
		if (k->type < DR_CFG_STRING || k->type > DR_CFG_PATH)
			return dr_fail(err, DR_ERR_PLUGIN, "plugin_invalid",
				       "plugin %s declares the config key '%s' "
				       "with unknown type %d",
				       path,
				       printable(k->name, shown, sizeof(shown)),
				       (int)k->type);
	}
	return DR_OK;
}

/*
 * Check a descriptor in ABI order (see the file comment). `name` is the
 * name the file was loaded by.
 */
static dr_status check_descriptor(const dr_plugin *d, const char *name,
				  const char *path, dr_error *err)
{
	char shown[PLUGIN_NAME_MAX + 1];

	if (d->abi_version != DR_PLUGIN_ABI_VERSION)
		return dr_fail(err, DR_ERR_PLUGIN, "plugin_abi_mismatch",
			       "plugin %s was built for plugin ABI %u, this "
			       "darkroom speaks ABI %u; rebuild it against "
			       "this darkroom's darkroom-plugin.h",
			       path, (unsigned)d->abi_version,
			       (unsigned)DR_PLUGIN_ABI_VERSION);
	if (d->size != sizeof(dr_plugin))
		return dr_fail(err, DR_ERR_PLUGIN, "plugin_abi_mismatch",
			       "plugin %s has a descriptor of %u bytes, this "
			       "darkroom expects %zu (same ABI version, "
			       "different build); rebuild it",
			       path, (unsigned)d->size, sizeof(dr_plugin));
	if (!d->name || strcmp(d->name, name) != 0)
		return dr_fail(err, DR_ERR_PLUGIN, "plugin_invalid",
			       "plugin %s calls itself '%s'; a plugin's file "
			       "must be named after it",
			       path, printable(d->name, shown, sizeof(shown)));
	if (d->kind != DR_PLUGIN_ADAPTER && d->kind != DR_PLUGIN_SINK)
		return dr_fail(err, DR_ERR_PLUGIN, "plugin_invalid",
			       "plugin %s has unknown kind %d (expected %d, "
			       "adapter, or %d, sink)",
			       path, (int)d->kind, DR_PLUGIN_ADAPTER,
			       DR_PLUGIN_SINK);
	if ((d->kind == DR_PLUGIN_ADAPTER && !d->adapter) ||
	    (d->kind == DR_PLUGIN_SINK && !d->sink))
		return dr_fail(err, DR_ERR_PLUGIN, "plugin_invalid",
			       "%s plugin '%s' has no %s operations table (%s)",
			       kind_name(d->kind), d->name,
			       kind_name(d->kind), path);
	return check_ops_size(d, path, err);
}

/*
 * The core's copy of a checked descriptor: the plugin's table copied
 * over a zeroed full-size one, so operations beyond it are NULL, and the
 * kind's other table pointer cleared. Caller frees.
 */
static desc_copy *copy_descriptor(const dr_plugin *d)
{
	desc_copy *c = dr_xcalloc(1, sizeof(*c));

	c->desc = *d;
	if (d->kind == DR_PLUGIN_ADAPTER) {
		memcpy(&c->ops.adapter, d->adapter, d->adapter->size);
		c->ops.adapter.size = sizeof(dr_adapter_ops);
		c->desc.adapter = &c->ops.adapter;
		c->desc.sink = NULL;
	} else {
		memcpy(&c->ops.sink, d->sink, d->sink->size);
		c->ops.sink.size = sizeof(dr_sink_ops);
		c->desc.sink = &c->ops.sink;
		c->desc.adapter = NULL;
	}
	return c;
}

dr_status plugin_load(const char *dir, const char *name, dr_loaded_plugin *out,
		      dr_error *err)
{
	char shown[PLUGIN_NAME_MAX + 1];
	struct stat sb;
	dr_plugin_entry_fn entry;
	const dr_plugin *desc;
	desc_copy *copy;
	const char *dl_msg;
	void *handle, *sym;
	char *path;
	dr_status st;

	memset(out, 0, sizeof(*out));
	if (!valid_plugin_name(name))
		return dr_fail(err, DR_ERR_INVALID, "plugin_invalid_name",
			       "invalid plugin name '%s': a plugin is named by "
			       "1 to %d characters of a-z, 0-9, '_' and '-'",
			       printable(name, shown, sizeof(shown)),
			       PLUGIN_NAME_MAX);
	if (!dir || !dir[0])
		return dr_fail(err, DR_ERR_CONFIG, "plugin_dir",
			       "no plugin directory configured to load "
			       "plugin '%s' from",
			       name);

	path = plugin_path(dir, name);
	if (stat(path, &sb) != 0 && errno == ENOENT) {
		st = dr_fail(err, DR_ERR_NOT_FOUND, "plugin_not_found",
			     "plugin '%s' not found: %s does not exist", name,
			     path);
		goto err_path;
	}

	dlerror();
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		dl_msg = dlerror();
		st = dr_fail(err, DR_ERR_PLUGIN, "plugin_load_failed",
			     "cannot load plugin %s: %s", path,
			     dl_msg ? dl_msg : "unknown dlopen error");
		goto err_path;
	}

	dlerror();
	sym = dlsym(handle, DR_PLUGIN_ENTRY_SYMBOL);
	if (!sym) {
		st = dr_fail(err, DR_ERR_PLUGIN, "plugin_invalid",
			     "plugin %s does not export the symbol %s (is it a "
			     "darkroom plugin?)",
			     path, DR_PLUGIN_ENTRY_SYMBOL);
		goto err_handle;
	}
	/* POSIX guarantees a data pointer from dlsym converts back to the
	 * function pointer it came from. */
	entry = (dr_plugin_entry_fn)sym;

	desc = entry();
	if (!desc) {
		st = dr_fail(err, DR_ERR_PLUGIN, "plugin_invalid",
			     "plugin %s: %s() returned NULL", path,
			     DR_PLUGIN_ENTRY_SYMBOL);
		goto err_handle;
	}
	st = check_descriptor(desc, name, path, err);
	if (st != DR_OK)
		goto err_handle;
	copy = copy_descriptor(desc);
	st = check_ops(&copy->desc, path, err);
	if (st == DR_OK)
		st = check_keys(&copy->desc, path, err);
	if (st != DR_OK)
		goto err_copy;

	out->desc = &copy->desc;
	out->handle = handle;
	out->path = path;
	return DR_OK;

err_copy:
	free(copy);
err_handle:
	dlclose(handle);
err_path:
	free(path);
	return st;
}

void plugin_unload(dr_loaded_plugin *p)
{
	if (!p)
		return;
	if (p->handle)
		dlclose(p->handle);
	/* desc is the first member of the desc_copy it came from. */
	free((void *)p->desc);
	free(p->path);
	memset(p, 0, sizeof(*p));
}

/* ------------------------------------------------------------------------
 * The services table
 */

static const char *inst_plugin_name(const dr_instance *inst)
{
	if (!inst || !inst->plugin || !inst->plugin->desc)
		return "?";
	return inst->plugin->desc->name;
}

static const dr_conf_values *inst_values(const dr_instance *inst)
{
	if (!inst || !inst->section)
		return NULL;
	return inst->section->values;
}

/* Log one line as "plugin=<plugin> instance=<name> <message>"; control
 * characters in the message become spaces. */
static void host_log(const dr_instance *inst, int level, const char *fmt, ...)
{
	char msg[PLUGIN_LOG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One event, one line, whatever the plugin put in its text. */
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = ' ';
	dr_log(level, "plugin=%s instance=%s %s", inst_plugin_name(inst),
	       inst && inst->name ? inst->name : "?", msg);
}

static const char *host_config_get(const dr_instance *inst, const char *key)
{
	const dr_conf_values *v = inst_values(inst);

	return v ? confv_get(v, key) : NULL;
}

static int64_t host_config_int(const dr_instance *inst, const char *key)
{
	const dr_conf_values *v = inst_values(inst);

	return v ? confv_int(v, key) : 0;
}

static double host_config_seconds(const dr_instance *inst, const char *key)
{
	const dr_conf_values *v = inst_values(inst);

	return v ? confv_seconds(v, key) : 0;
}

static int host_config_bool(const dr_instance *inst, const char *key)
{
	const dr_conf_values *v = inst_values(inst);

	return v ? confv_bool(v, key) : 0;
}

static const char *host_instance_name(const dr_instance *inst)
{
	return inst ? inst->name : NULL;
}

static const char *host_public_url(const dr_instance *inst)
{
	if (!inst || !inst->cfg)
		return NULL;
	return inst->cfg->server.public_url;
}

static double host_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* dr_fail() for plugins, to the letter. */
static dr_status host_fail(dr_error *err, dr_status status, const char *code,
			   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	status = dr_vfail(err, status, code, fmt, ap);
	va_end(ap);
	return status;
}

/* host->local_root: keep the adapter's work folder, spelled without
 * empty components or a trailing '/', for download_local(). Only its
 * spelling is checked here: the folder is opened (and may not exist
 * yet) when an output is read. */
static dr_status host_local_root(const dr_instance *inst, const char *dir,
				 dr_error *err)
{
	struct dr_instance *mut = (struct dr_instance *)inst;
	size_t len, n = 0;
	char *norm;

	if (!inst || !inst->plugin ||
	    inst->plugin->desc->kind != DR_PLUGIN_ADAPTER)
		return host_fail(err, DR_ERR_INVALID, "invalid_argument",
				 "local_root: only an adapter hands over "
				 "local files");
	if (!dir || dir[0] != '/')
		return host_fail(err, DR_ERR_INVALID, "invalid_argument",
				 "local_root: an absolute path is required");
	len = strlen(dir);
	if (len >= PATH_MAX)
		return host_fail(err, DR_ERR_INVALID, "invalid_argument",
				 "local_root: the path is too long");
	norm = dr_xmalloc(len + 1);
	for (const char *c = dir; *c;) {
		const char *end = strchrnul(c, '/');
		size_t k = (size_t)(end - c);

		if ((k == 1 && c[0] == '.') ||
		    (k == 2 && c[0] == '.' && c[1] == '.')) {
			free(norm);
			return host_fail(err, DR_ERR_INVALID,
					 "invalid_argument",
					 "local_root: %s holds a '.' or '..' "
					 "component",
					 dir);
		}
		if (k > 0) {
			norm[n++] = '/';
			memcpy(norm + n, c, k);
			n += k;
		}
		c = *end ? end + 1 : end;
	}
	norm[n] = '\0';
	if (n == 0) {
		free(norm);
		return host_fail(err, DR_ERR_INVALID, "invalid_argument",
				 "local_root: '/' cannot be a work folder");
	}
	free(mut->local_root);
	mut->local_root = norm;
	return DR_OK;
}

/* ------------------------------------------------------------------------
 * The key-value store (table plugin_kv, migrations/0007_plugin_kv.sql)
 */

/* Longest instance name the table keeps. */
#define KV_INSTANCE_MAX 64

/* A key, or the instance name (max bytes): [A-Za-z0-9._-], not empty. */
static int kv_name_ok(const char *s, size_t max)
{
	size_t n = 0;

	if (!s)
		return 0;
	for (; s[n]; n++) {
		char c = s[n];

		if (n >= max || !((c >= 'a' && c <= 'z') ||
				  (c >= 'A' && c <= 'Z') ||
				  (c >= '0' && c <= '9') || c == '.' ||
				  c == '_' || c == '-'))
			return 0;
	}
	return n > 0;
}

/* The checks both calls share: a database, a good key and instance. */
static dr_status kv_check(const dr_instance *inst, const char *key,
			  dr_error *err)
{
	if (!inst || !inst->db)
		return host_fail(err, DR_ERR_UNAVAILABLE, "kv_unavailable",
				 "this process has no database for the "
				 "plugin's key-value store");
	if (!kv_name_ok(key, DR_KV_KEY_MAX))
		return host_fail(err, DR_ERR_INVALID, "invalid_argument",
				 "kv: a key is 1 to %d characters of "
				 "A-Z, a-z, 0-9, '.', '_' and '-'",
				 DR_KV_KEY_MAX);
	if (!kv_name_ok(inst->name, KV_INSTANCE_MAX))
		return host_fail(err, DR_ERR_INVALID, "invalid_argument",
				 "kv: the instance name must be 1 to %d "
				 "characters of A-Z, a-z, 0-9, '.', '_' and "
				 "'-' for the key-value store",
				 KV_INSTANCE_MAX);
	return DR_OK;
}

/* A database failure as the plugin sees it: unavailable, detail kept. */
static dr_status kv_db_failed(const dr_error *dberr, dr_error *err)
{
	return host_fail(err, DR_ERR_UNAVAILABLE, "kv_unavailable",
			 "the plugin key-value store cannot be reached: %s",
			 dberr->message);
}

static dr_status host_kv_get(const dr_instance *inst, const char *key,
			     char **value, double *updated_at, dr_error *err)
{
	dr_db_rows *rows = NULL;
	const char *v, *t;
	dr_error dberr;
	dr_status st;

	*value = NULL;
	if (updated_at)
		*updated_at = 0;
	st = kv_check(inst, key, err);
	if (st != DR_OK)
		return st;
	dr_error_clear(&dberr);
	if (db_query(inst->db,
		     "SELECT v, UNIX_TIMESTAMP(updated_at) FROM plugin_kv"
		     " WHERE instance = ? AND k = ?",
		     &rows, &dberr,
		     DB_ARGS(DB_STR(inst->name), DB_STR(key))) != DR_OK)
		return kv_db_failed(&dberr, err);
	v = db_cell(rows, 0, 0);
	t = db_cell(rows, 0, 1);
	if (!v) {
		db_rows_free(rows);
		return host_fail(err, DR_ERR_NOT_FOUND, "not_found",
				 "kv: no value for '%s'", key);
	}
	*value = dr_xstrdup(v);
	if (updated_at && t)
		*updated_at = strtod(t, NULL);
	db_rows_free(rows);
	return DR_OK;
}

static dr_status host_kv_put(const dr_instance *inst, const char *key,
			     const char *value, dr_error *err)
{
	dr_error dberr;
	dr_status st;

	st = kv_check(inst, key, err);
	if (st != DR_OK)
		return st;
	if (value && strlen(value) > DR_KV_VALUE_MAX)
		return host_fail(err, DR_ERR_TOO_LARGE, "invalid_argument",
				 "kv: a value is at most %d bytes",
				 DR_KV_VALUE_MAX);
	dr_error_clear(&dberr);
	if (value)
		st = db_exec(
			inst->db,
			"INSERT INTO plugin_kv (instance, k, v, updated_at)"
			" VALUES (?, ?, ?, NOW(6)) ON DUPLICATE KEY UPDATE"
			" v = VALUES(v), updated_at = NOW(6)",
			NULL, &dberr,
			DB_ARGS(DB_STR(inst->name), DB_STR(key),
				DB_STR(value)));
	else
		st = db_exec(
			inst->db,
			"DELETE FROM plugin_kv WHERE instance = ? AND k = ?",
			NULL, &dberr, DB_ARGS(DB_STR(inst->name), DB_STR(key)));
	return st == DR_OK ? DR_OK : kv_db_failed(&dberr, err);
}

/* The HTTP client host->http_request uses (plugins_set_http), or NULL. */
static const plugin_http_ops *http_client;

void plugins_set_http(const plugin_http_ops *ops)
{
	http_client = ops;
}

/* host->http_request: the instance's client (plugin_http.c), with the
 * download rules of this process (download.h: the adapter's
 * download_hosts, then the DARKROOM_DOWNLOAD_* variables) for untrusted
 * URLs, judged by download.c's own functions. */
static dr_status host_http_request(const dr_instance *inst,
				   const dr_http_request *req,
				   dr_http_response *resp, dr_error *err)
{
	struct dr_instance *mut = (struct dr_instance *)inst;
	dr_download_policy dp;
	plugin_http_policy pol;
	char **hosts_buf = NULL;
	dr_status st;

	if (!inst || !req) {
		memset(resp, 0, sizeof(*resp));
		return host_fail(err, DR_ERR_INVALID, "invalid_argument",
				 "http_request: no instance or request");
	}
	if (!http_client) {
		memset(resp, 0, sizeof(*resp));
		return host_fail(err, DR_ERR_UNAVAILABLE, "http_unavailable",
				 "http_request: this program makes no outbound "
				 "requests (the worker does)");
	}
	if (!mut->http)
		mut->http = http_client->new_client();
	memset(&dp, 0, sizeof(dp));
	if (inst->plugin && inst->plugin->desc->kind == DR_PLUGIN_ADAPTER)
		dp.hosts = inst->plugin->desc->adapter->download_hosts;
	netpolicy_env(&dp, &hosts_buf);
	pol.allow_http = dp.allow_http;
	pol.allow_private = dp.allow_private;
	pol.hosts = dp.hosts;
	pol.host_allowed = netpolicy_host_allowed;
	pol.address_allowed = netpolicy_address_allowed;
	st = http_client->request(mut->http, &pol, req, resp, err);
	netpolicy_free_hosts(hosts_buf);
	return st;
}

/* host->mem_strndup: strndup() semantics (stops at a NUL), aborting on
 * out of memory; dr_xstrndup copies exactly n bytes. */
static char *host_mem_strndup(const char *s, size_t n)
{
	return dr_xstrndup(s, strnlen(s, n));
}

static const dr_host host_services = {
	.abi_version = DR_PLUGIN_ABI_VERSION,
	.size = sizeof(dr_host),
	.log = host_log,
	.config_get = host_config_get,
	.config_int = host_config_int,
	.config_seconds = host_config_seconds,
	.config_bool = host_config_bool,
	.instance_name = host_instance_name,
	.public_url = host_public_url,
	.random_bytes = ids_random,
	.now = host_now,
	.fail = host_fail,
	.webhook_header = webhook_header,
	.webhook_verify = webhook_verify,
	.local_root = host_local_root,
	.mem_alloc = dr_xmalloc,
	.mem_calloc = dr_xcalloc,
	.mem_realloc = dr_xrealloc,
	.mem_strdup = dr_xstrdup,
	.mem_strndup = host_mem_strndup,
	.mem_free = free,
	.kv_get = host_kv_get,
	.kv_put = host_kv_put,
	.http_request = host_http_request,
	.webhook_document = datascan_document,
};

const dr_host *plugin_host_services(void)
{
	return &host_services;
}

/* ------------------------------------------------------------------------
 * Instances from the config
 */

static int is_plugin_section(const dr_conf_section *sec)
{
	return strcmp(sec->type, "adapter") == 0 ||
	       strcmp(sec->type, "sink") == 0;
}

static struct dr_instance *find_instance(struct dr_instance *list, size_t n,
					 const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, name) == 0)
			return &list[i];
	return NULL;
}

static dr_loaded_plugin *find_loaded(dr_plugins *p, const char *name)
{
	for (size_t i = 0; i < p->n_loaded; i++)
		if (strcmp(p->loaded[i].desc->name, name) == 0)
			return &p->loaded[i];
	return NULL;
}

/*
 * The loaded plugin named by `sec`, loading it on first use. Errors are
 * prefixed with the section's place in the file.
 */
static dr_status section_plugin(const dr_config *cfg, dr_plugins *p,
				const dr_conf_section *sec,
				dr_loaded_plugin **out, dr_error *err)
{
	const char *name = config_section_plugin(sec);
	dr_loaded_plugin *lp = find_loaded(p, name ? name : "");
	dr_error inner;
	dr_status st;

	if (lp) {
		*out = lp;
		return DR_OK;
	}
	dr_error_clear(&inner);
	lp = &p->loaded[p->n_loaded];
	st = plugin_load(cfg->server.plugin_dir, name, lp, &inner);
	if (st != DR_OK)
		return dr_fail(err, st, inner.code, "%s:%d: [%s \"%s\"] %s",
			       cfg->path, sec->line, sec->type, sec->name,
			       inner.message);
	/* Names are unique among loaded plugins without a further check:
	 * each is loaded once, by the name it was looked up under, and
	 * plugin_load() insists that the descriptor's name is that name. */
	p->n_loaded++;
	dr_log(DR_LOG_INFO, "event=plugin.loaded plugin=%s kind=%s path=%s",
	       lp->desc->name, kind_name(lp->desc->kind), lp->path);
	*out = lp;
	return DR_OK;
}

/*
 * Set up the instance of one [adapter]/[sink] section: plugin, kind,
 * keys, and (when asked) create(). On success the instance is counted in
 * `p` so plugins_free() releases it.
 */
static dr_status init_section(const dr_config *cfg, dr_plugins *p,
			      dr_conf_section *sec, int create_instances,
			      dr_error *err)
{
	int is_sink = strcmp(sec->type, "sink") == 0;
	dr_plugin_kind want = is_sink ? DR_PLUGIN_SINK : DR_PLUGIN_ADAPTER;
	struct dr_instance *list = is_sink ? p->sinks : p->adapters;
	size_t *count = is_sink ? &p->n_sinks : &p->n_adapters;
	struct dr_instance *inst, *dup;
	dr_loaded_plugin *lp = NULL;
	dr_error inner;
	void *state = NULL;
	dr_status st;

	if (!sec->name || !sec->name[0])
		return dr_fail(err, DR_ERR_CONFIG, "config_invalid",
			       "%s:%d: a [%s] section needs a name, e.g. "
			       "[%s \"%s\"]",
			       cfg->path, sec->line, sec->type, sec->type,
			       is_sink ? "fs" : "replicate");
	dup = find_instance(list, *count, sec->name);
	if (dup)
		return dr_fail(err, DR_ERR_CONFIG, "config_invalid",
			       "%s:%d: duplicate [%s \"%s\"] (first at line "
			       "%d)",
			       cfg->path, sec->line, sec->type, sec->name,
			       dup->section->line);

	st = section_plugin(cfg, p, sec, &lp, err);
	if (st != DR_OK)
		return st;
	if (lp->desc->kind != want)
		return dr_fail(err, DR_ERR_CONFIG, "plugin_wrong_kind",
			       "%s:%d: [%s \"%s\"] names plugin '%s', which is "
			       "%s %s",
			       cfg->path, sec->line, sec->type, sec->name,
			       lp->desc->name, is_sink ? "an" : "a",
			       kind_name(lp->desc->kind));
	st = config_resolve_plugin(cfg, sec, lp->desc->config_keys, err);
	if (st != DR_OK)
		return st;

	inst = &list[*count];
	inst->name = sec->name;
	inst->plugin = lp;
	inst->section = sec;
	inst->cfg = cfg;
	inst->state = NULL;
	if (create_instances == PLUGINS_CREATE_ALL ||
	    (create_instances == PLUGINS_CREATE_SINK && is_sink) ||
	    (create_instances == PLUGINS_CREATE_UPKEEP && !is_sink &&
	     lp->desc->adapter->maintain)) {
		dr_error_clear(&inner);
		st = lp->desc->create(&host_services, inst, &state, &inner);
		if (st != DR_OK) {
			if (!inner.message[0])
				snprintf(inner.message, sizeof(inner.message),
					 "%s", dr_strerror(st));
			st = dr_fail(err, st, inner.code,
				     "%s:%d: [%s \"%s\"] plugin '%s' could not "
				     "start: %s",
				     cfg->path, sec->line, sec->type, sec->name,
				     lp->desc->name, inner.message);
			free(inst->local_root);
			if (http_client)
				http_client->free_client(inst->http);
			memset(inst, 0, sizeof(*inst));
			return st;
		}
		inst->state = state;
	}
	(*count)++;
	return DR_OK;
}

/* default_adapter must name an adapter instance; the sink must name a
 * sink instance once any sink is configured. */
static dr_status check_choices(const dr_config *cfg, const dr_plugins *p,
			       dr_error *err)
{
	const char *adapter = cfg->server.default_adapter;
	const char *sink = cfg->server.sink;

	if (adapter && adapter[0] && !plugins_adapter(p, adapter))
		return dr_fail(err, DR_ERR_CONFIG, "config_invalid",
			       "%s: default_adapter '%s' is not configured: "
			       "there is no [adapter \"%s\"] section",
			       cfg->path, adapter, adapter);
	if (p->n_sinks == 0)
		return DR_OK;
	if (!sink || !sink[0])
		return dr_fail(err, DR_ERR_CONFIG, "config_invalid",
			       "%s: sinks are configured but [server] sink "
			       "does not choose one",
			       cfg->path);
	if (!plugins_sink(p, sink))
		return dr_fail(err, DR_ERR_CONFIG, "config_invalid",
			       "%s: sink '%s' is not configured: there is no "
			       "[sink \"%s\"] section",
			       cfg->path, sink, sink);
	return DR_OK;
}

dr_status plugins_init(const dr_config *cfg, int create_instances,
		       dr_plugins **out, dr_error *err)
{
	size_t n_adapters = 0, n_sinks = 0;
	dr_plugins *p;
	dr_status st;

	*out = NULL;
	for (size_t i = 0; i < cfg->n_sections; i++) {
		const dr_conf_section *sec = &cfg->sections[i];

		if (!is_plugin_section(sec))
			continue;
		if (strcmp(sec->type, "sink") == 0)
			n_sinks++;
		else
			n_adapters++;
	}

	/* Sized once: instances and loaded plugins must not move. */
	p = dr_xcalloc(1, sizeof(*p));
	p->loaded = dr_xcalloc(n_adapters + n_sinks, sizeof(*p->loaded));
	p->adapters = dr_xcalloc(n_adapters, sizeof(*p->adapters));
	p->sinks = dr_xcalloc(n_sinks, sizeof(*p->sinks));

	for (size_t i = 0; i < cfg->n_sections; i++) {
		dr_conf_section *sec = &cfg->sections[i];

		if (!is_plugin_section(sec))
			continue;
		/* Only the active sink is checked and started: a process
		 * stores through one sink, and an inactive [sink "s3"] need
		 * not have credentials where they are not used. */
		if (strcmp(sec->type, "sink") == 0 && cfg->server.sink &&
		    strcmp(sec->name, cfg->server.sink) != 0)
			continue;
		st = init_section(cfg, p, sec, create_instances, err);
		if (st != DR_OK)
			goto err_plugins;
	}
	st = check_choices(cfg, p, err);
	if (st != DR_OK)
		goto err_plugins;

	*out = p;
	return DR_OK;

err_plugins:
	plugins_free(p);
	return st;
}

void plugins_set_db(dr_plugins *p, struct dr_db *db)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_adapters; i++)
		p->adapters[i].db = db;
	for (size_t i = 0; i < p->n_sinks; i++)
		p->sinks[i].db = db;
}

static void log_maintain_failure(void *ctx, const char *plugin,
				 const char *instance, const dr_error *err)
{
	(void)ctx;
	dr_log(DR_LOG_WARNING,
	       "event=plugin.maintain_failed plugin=%s instance=%s "
	       "code=%s reason=\"%s\"",
	       plugin, instance, err->code[0] ? err->code : "-", err->message);
}

int plugins_maintain(dr_plugins *p)
{
	return plugins_maintain_report(p, log_maintain_failure, NULL);
}

int plugins_maintain_report(dr_plugins *p,
			    void (*report)(void *ctx, const char *plugin,
					   const char *instance,
					   const dr_error *err),
			    void *ctx)
{
	int failed = 0;

	if (!p)
		return 0;
	for (size_t i = 0; i < p->n_adapters; i++) {
		struct dr_instance *inst = &p->adapters[i];
		const dr_adapter_ops *ops = inst->plugin->desc->adapter;
		dr_error err;
		dr_status st;

		if (!ops->maintain || !inst->state)
			continue;
		dr_error_clear(&err);
		st = ops->maintain(inst->state, &err);
		if (st == DR_OK)
			continue;
		failed++;
		if (!err.message[0])
			snprintf(err.message, sizeof(err.message), "%s",
				 dr_strerror(st));
		report(ctx, inst_plugin_name(inst), inst->name, &err);
	}
	return failed;
}

/* Destroy in reverse order of creation within each kind. */
static void destroy_instances(struct dr_instance *list, size_t n)
{
	while (n-- > 0) {
		struct dr_instance *inst = &list[n];

		if (inst->state && inst->plugin)
			inst->plugin->desc->destroy(inst->state);
		inst->state = NULL;
		free(inst->local_root);
		inst->local_root = NULL;
		if (http_client)
			http_client->free_client(inst->http);
		inst->http = NULL;
	}
}

void plugins_free(dr_plugins *p)
{
	if (!p)
		return;
	destroy_instances(p->sinks, p->n_sinks);
	destroy_instances(p->adapters, p->n_adapters);
	for (size_t i = p->n_loaded; i-- > 0;)
		plugin_unload(&p->loaded[i]);
	free(p->sinks);
	free(p->adapters);
	free(p->loaded);
	free(p);
}

struct dr_instance *plugins_adapter(const dr_plugins *p, const char *name)
{
	if (!p || !name)
		return NULL;
	return find_instance(p->adapters, p->n_adapters, name);
}

struct dr_instance *plugins_sink(const dr_plugins *p, const char *name)
{
	if (!p || !name)
		return NULL;
	return find_instance(p->sinks, p->n_sinks, name);
}

/* ------------------------------------------------------------------------
 * Listing a directory
 */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The plugin names (file names without ".so") of every *.so in `dir`,
 * sorted, in a malloc'd array of malloc'd strings. */
static dr_status scan_names(const char *dir, char ***names, size_t *n,
			    dr_error *err)
{
	struct dirent *de;
	char **list = NULL;
	size_t count = 0;
	DIR *d;
	int e;

	d = opendir(dir);
	if (!d) {
		e = errno;
		return dr_fail(err, e == ENOENT ? DR_ERR_NOT_FOUND : DR_ERR_IO,
			       "plugin_dir",
			       "cannot list plugin directory %s: %s", dir,
			       strerror(e));
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (len <= 3 || strcmp(de->d_name + len - 3, ".so") != 0)
			continue;
		if (count == PLUGIN_SCAN_MAX)
			break;
		list = dr_xrealloc(list, (count + 1) * sizeof(*list));
		list[count++] = dr_xstrndup(de->d_name, len - 3);
	}
	closedir(d);
	if (count)
		qsort(list, count, sizeof(*list), cmp_str);
	*names = list;
	*n = count;
	return DR_OK;
}

dr_status plugins_scan(const char *dir, dr_loaded_plugin **out, size_t *n,
		       char **errors, dr_error *err)
{
	char shown[PLUGIN_NAME_MAX + 1];
	dr_loaded_plugin *list;
	char **names = NULL;
	size_t n_names = 0, count = 0;
	dr_buf eb;
	dr_status st;

	*out = NULL;
	*n = 0;
	if (errors)
		*errors = NULL;
	if (!dir)
		return dr_fail(err, DR_ERR_INVALID, "plugin_dir",
			       "no plugin directory given");
	st = scan_names(dir, &names, &n_names, err);
	if (st != DR_OK)
		return st;

	dr_buf_init(&eb, PLUGIN_SCAN_ERRORS_MAX);
	list = dr_xcalloc(n_names, sizeof(*list));
	for (size_t i = 0; i < n_names; i++) {
		dr_error e;

		dr_error_clear(&e);
		if (!valid_plugin_name(names[i]))
			dr_fail(&e, DR_ERR_INVALID, "plugin_invalid_name",
				"%s/%s.so: not a plugin file name (a plugin is "
				"named by 1 to %d characters of a-z, 0-9, '_' "
				"and '-')",
				dir, printable(names[i], shown, sizeof(shown)),
				PLUGIN_NAME_MAX);
		else if (plugin_load(dir, names[i], &list[count], &e) == DR_OK)
			count++;
		/* A full error buffer only loses lines, never plugins. */
		if (e.status != DR_OK && dr_buf_printf(&eb, "%s\n", e.message))
			dr_log(DR_LOG_DEBUG, "event=plugin.scan_errors_full");
		free(names[i]);
	}
	free(names);

	if (errors && eb.len)
		*errors = dr_buf_steal(&eb);
	dr_buf_free(&eb);
	*out = list;
	*n = count;
	return DR_OK;
}

void plugins_list_free(dr_loaded_plugin *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		plugin_unload(&list[i]);
	free(list);
}
