/*
 * mock_host.h - a stand-in for the darkroom core, for plugin unit tests.
 *
 * collectd's plugin_mock.c idea: a plugin test links the plugin's objects
 * with this file instead of the daemon, hands mock_host() to the plugin's
 * create(), and drives its operations directly. The mock includes nothing
 * but darkroom-plugin.h and the C library, which also proves that a plugin
 * needs nothing else from the core.
 *
 * Each mock instance carries its own configuration (set by key, with the
 * defaults of the plugin's key table applied), the log lines the plugin
 * wrote, its public URL, its key-value store (in memory) and its HTTP
 * client (the core's own, core/plugin_http.c, compiled in; untrusted URLs
 * are all allowed, as the tests' servers are on loopback). Randomness
 * and the clock are global and can be made deterministic or failing.
 */
#ifndef DR_MOCK_HOST_H
#define DR_MOCK_HOST_H

#include <stddef.h>

#include "darkroom-plugin.h"

/* The host table to pass to a plugin's create(). */
const dr_host *mock_host(void);

/* The same table as an older core of this ABI version would hand over:
 * only its first `size` bytes (e.g. offsetof(dr_host, local_root)), the
 * services after them absent. One static copy, replaced by each call. */
const dr_host *mock_host_sized(size_t size);

/*
 * A new instance called `name` (e.g. "fs") for `plugin`: the values of its
 * key table start at their defaults, and asking for a key the table does
 * not declare is counted (see mock_host_undeclared). `plugin` may be NULL:
 * then any key may be set and asked for. Free with mock_instance_free().
 */
dr_instance *mock_instance_new(const char *name, const dr_plugin *plugin);

/* Release the instance and everything it captured; NULL is a no-op. */
void mock_instance_free(dr_instance *inst);

/* Set `key` to a copy of `value`; NULL unsets it (defaults included). */
void mock_host_set(dr_instance *inst, const char *key, const char *value);

/* What host->public_url() answers; NULL by default. */
void mock_host_set_public_url(dr_instance *inst, const char *url);

/* The work folder the plugin declared with host->local_root(), or NULL. */
const char *mock_host_local_root(const dr_instance *inst);

/* How many times the plugin asked for a key its table does not declare. */
int mock_host_undeclared(const dr_instance *inst);

/* Captured log lines, each "<level> <message>", e.g. "debug event=x". */
size_t mock_host_log_count(const dr_instance *inst);
const char *mock_host_log_line(const dr_instance *inst, size_t i);
/* 1 when some captured line contains `needle`. */
int mock_host_log_has(const dr_instance *inst, const char *needle);
void mock_host_log_clear(dr_instance *inst);

/* What host->random_bytes() does: real getrandom() (the default), a
 * deterministic sequence restarted by each call to mock_host_random(), or
 * fail with DR_ERR_IO. */
enum mock_random { MOCK_RANDOM_REAL, MOCK_RANDOM_FIXED, MOCK_RANDOM_FAIL };
void mock_host_random(enum mock_random mode);

/* host->webhook_document gives `doc` (borrowed; NULL: the body), as the
 * core gives a delivery whose data: URIs it took out. */
void mock_host_set_document(const char *doc);

/* host->kv_get/kv_put keep values per instance in memory. Set (NULL:
 * delete) a value as if written at `updated_at`; read one (NULL when
 * unset); make every call answer DR_ERR_UNAVAILABLE (down = 1), as when
 * the database is away; count the calls the plugin made. */
void mock_host_kv_set(dr_instance *inst, const char *key, const char *value,
		      double updated_at);
const char *mock_host_kv_value(const dr_instance *inst, const char *key);
void mock_host_kv_down(dr_instance *inst, int down);
int mock_host_kv_gets(const dr_instance *inst);
int mock_host_kv_puts(const dr_instance *inst);

/* 1 when `p` came from the host's memory services (mem_alloc, calloc,
 * realloc, strdup, strndup) and mem_free has not released it since: a test
 * checks that what a plugin hands the core was allocated the host's way.
 * Memory released with plain free() stays listed (an address malloc hands
 * out again may then answer 1) until mock_host_mem_forget() empties the
 * list. */
int mock_host_mem_owns(const void *p);
void mock_host_mem_forget(void);

/* What host->now() answers; 0 (the default) means the real clock. */
void mock_host_set_now(double t);

#endif
