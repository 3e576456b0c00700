/*
 * plugin.h - the plugin host: loading, checking and instantiating plugins.
 *
 * Plugins are shared objects in the configured plugin directory, named
 * <plugin>.so. Loading one dlopen()s it with RTLD_NOW | RTLD_LOCAL, looks
 * up the single entry symbol, and checks the descriptor: ABI version and
 * struct size exactly, kind, name, and the mandatory operations of its
 * kind. Every failure names the file and what was wrong. A plugin is only
 * ever loaded from the configured directory, by a plain file name.
 *
 * For every [adapter "x"] and [sink "y"] section of the config, the host
 * loads the plugin the section names (once per plugin), validates the
 * section's keys against the plugin's table, and creates an instance.
 */
#ifndef DR_PLUGIN_HOST_H
#define DR_PLUGIN_HOST_H

#include <stddef.h>

#include "config.h"
#include "darkroom-plugin.h"
#include "error.h"

/* A loaded plugin file. */
typedef struct dr_loaded_plugin {
	const dr_plugin *desc; /* the core's copy of the plugin's descriptor
				  (malloc), whose adapter or sink table is
				  a full-size copy of the plugin's: the
				  operations beyond a smaller table are NULL */
	void *handle; /* dlopen handle */
	char *path;
} dr_loaded_plugin;

/* A configured instance of a plugin (the host's side of dr_instance). */
struct dr_instance {
	const char *name;           /* section name */
	const dr_loaded_plugin *plugin;
	dr_conf_section *section;   /* resolved values in section->values */
	const dr_config *cfg;
	void *state;                /* from the plugin's create() */
	char *local_root;           /* the work folder an adapter declared
				       with host->local_root (malloc), or
				       NULL: it hands over no local file */
	struct dr_db *db;           /* for host->kv_get/kv_put (borrowed,
				       plugins_set_db), or NULL: no kv */
	struct plugin_http *http;   /* host->http_request's client, made at
				       the first request */
};

typedef struct dr_plugins {
	dr_loaded_plugin *loaded;
	size_t n_loaded;
	struct dr_instance *adapters;
	size_t n_adapters;
	struct dr_instance *sinks;
	size_t n_sinks;
} dr_plugins;

/* The services table handed to every plugin. */
const dr_host *plugin_host_services(void);

/*
 * Load the plugin file `dir`/`name`.so and check its descriptor. `name` must
 * be a plain name ([a-z0-9_-]). On success fills *out (release with
 * plugin_unload). Errors (DR_ERR_PLUGIN unless noted): missing file
 * (DR_ERR_NOT_FOUND), dlopen failure, missing entry symbol, entry returning
 * NULL, ABI version mismatch (message names both versions), struct size
 * mismatch, unknown kind, missing mandatory operation (named), descriptor
 * name not matching the file name.
 */
dr_status plugin_load(const char *dir, const char *name, dr_loaded_plugin *out,
		      dr_error *err) DR_WARN_UNUSED;

/* dlclose and free; accepts a zeroed struct. */
void plugin_unload(dr_loaded_plugin *p);

/* What plugins_init() creates, besides loading and checking the plugins. */
enum {
	PLUGINS_CHECK_ONLY = 0,	   /* no instance (config check) */
	PLUGINS_CREATE_ALL = 1,	   /* every instance (the app, the worker) */
	PLUGINS_CREATE_UPKEEP = 2, /* only the adapter instances with a
				      maintain() (darkroom migrate): no sink,
				      no work folder of a local adapter */
	PLUGINS_CREATE_SINK = 3	   /* only the active sink's instance (the
				      commands that show jobs and outputs,
				      to make their URLs) */
};

/*
 * Load the plugins of every adapter section and of the active sink's
 * section ([server] sink) of `cfg`, resolve the sections' keys, and create
 * the instances `create_instances` (PLUGINS_*) asks for. Checks that the
 * default adapter and the active sink exist. On failure everything loaded
 * is released and err says which section and why.
 */
dr_status plugins_init(const dr_config *cfg, int create_instances,
		       dr_plugins **out, dr_error *err) DR_WARN_UNUSED;

/* Give every instance of `p` the database handle host->kv_get and
 * kv_put use (borrowed: it must outlive `p`, or be replaced by NULL
 * first). Without one, they answer DR_ERR_UNAVAILABLE. */
void plugins_set_db(dr_plugins *p, struct dr_db *db);

/* The HTTP client behind host->http_request in this process (plugin_http.h:
 * &plugin_http_client), set once before plugins run. Unset, a plugin's
 * request fails with DR_ERR_UNAVAILABLE, code http_unavailable: so
 * darkroom.fcgi, which makes no outbound request, links no HTTP client. */
struct plugin_http_ops;
void plugins_set_http(const struct plugin_http_ops *ops);

/* Call maintain() of every adapter instance that has one (see
 * darkroom-plugin.h), logging each failure once; the caller (the worker)
 * calls it again DR_MAINTAIN_INTERVAL seconds later. Returns how many
 * failed. */
int plugins_maintain(dr_plugins *p);

/* The same, handing each failure to `report` (the instance's plugin and
 * section names and the error, borrowed for the call) instead of the log:
 * for `darkroom migrate`, which says it in one line of its own. */
int plugins_maintain_report(dr_plugins *p,
			    void (*report)(void *ctx, const char *plugin,
					   const char *instance,
					   const dr_error *err),
			    void *ctx);

/* Destroy instances and unload plugins; NULL is a no-op. */
void plugins_free(dr_plugins *p);

/* The adapter instance named `name`, or NULL. */
struct dr_instance *plugins_adapter(const dr_plugins *p, const char *name);

/* The sink instance named `name`, or NULL. */
struct dr_instance *plugins_sink(const dr_plugins *p, const char *name);

/*
 * Every *.so in `dir`, loaded and checked, for `darkroom plugins list`.
 * Files that fail to load are reported in `errors` (one line each, caller
 * frees with free()) and skipped. Caller frees with plugins_list_free().
 */
dr_status plugins_scan(const char *dir, dr_loaded_plugin **out, size_t *n,
		       char **errors, dr_error *err) DR_WARN_UNUSED;
void plugins_list_free(dr_loaded_plugin *list, size_t n);

#endif
