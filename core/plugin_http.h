/*
 * plugin_http.h - the HTTP client behind host->http_request.
 *
 * Place in the order of modules: part of the plugin host (below plugin.c,
 * which owns one client per instance), beside download.c, whose address
 * and host rules it applies to untrusted URLs through the policy's
 * function pointers. It needs nothing else from the core: the plugin
 * tests' mock host (tests/plugins/mock_host.c) compiles this file in, so
 * plugins are tested against the client they get in production.
 */
#ifndef DR_PLUGIN_HTTP_H
#define DR_PLUGIN_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

#include "darkroom-plugin.h"

typedef struct plugin_http plugin_http;

/* How untrusted URLs (dr_http_request.untrusted) are judged: the rules
 * of download.h, through its own functions (netpolicy_host_allowed and
 * netpolicy_address_allowed in the core). */
typedef struct plugin_http_policy {
	int allow_http;              /* plain http allowed */
	int allow_private;           /* loopback and private addresses */
	const char *const *hosts;    /* allowlist, NULL-terminated; NULL: none */
	int (*host_allowed)(const char *host, const char *const *hosts);
	int (*address_allowed)(const struct sockaddr *sa, int allow_private);
} plugin_http_policy;

/* A client with its own connections (kept alive between requests);
 * aborts when out of memory. Free with plugin_http_free (NULL is a
 * no-op). */
plugin_http *plugin_http_new(void);
void plugin_http_free(plugin_http *c);

/*
 * One request, with its retries, as documented for host->http_request in
 * darkroom-plugin.h. `pol` judges untrusted URLs (may be NULL: then every
 * untrusted request is refused). On DR_OK resp->body is malloc'd (free()
 * or plugin_http_response_free); on failure it is NULL.
 */
dr_status plugin_http_request(plugin_http *c, const plugin_http_policy *pol,
			      const dr_http_request *req,
			      dr_http_response *resp, dr_error *err);

/* Free resp->body and clear it; NULL is a no-op. */
void plugin_http_response_free(dr_http_response *resp);

/* The client as a table, for plugins_set_http() (plugin.h): the plugin
 * host reaches this module only through it, so a program that never sets
 * it (darkroom.fcgi, which makes no outbound request) links no libcurl. */
typedef struct plugin_http_ops {
	plugin_http *(*new_client)(void);
	void (*free_client)(plugin_http *c);
	dr_status (*request)(plugin_http *c, const plugin_http_policy *pol,
			     const dr_http_request *req, dr_http_response *resp,
			     dr_error *err);
} plugin_http_ops;

/* plugin_http_new, plugin_http_free and plugin_http_request. */
extern const plugin_http_ops plugin_http_client;

/* Seconds a Retry-After value asks for (delta-seconds, blanks around
 * allowed, or an HTTP-date, relative to `now`, a past date giving 0), or
 * -1 when absent, unreadable, negative or over 10^9 seconds. The one
 * parser of the header in the worker: client callbacks use it too. */
double plugin_http_retry_after(const char *value, double now);

#endif
