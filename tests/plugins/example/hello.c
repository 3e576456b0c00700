/*
 * hello.c - a complete, minimal darkroom adapter, built outside the tree.
 *
 * plugins/README.md walks through this file. submit() answers at once
 * with a succeeded prediction holding two outputs: a 1x1 PNG as a data:
 * URI and a greeting as text. No network, no webhooks, no get().
 *
 * Build it against an installed darkroom with
 *   cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags darkroom-plugin) -o hello.so hello.c
 * (against a staged `make install DESTDIR=...`, PKG_CONFIG_PATH and
 * PKG_CONFIG_SYSROOT_DIR point into DESTDIR: see plugins/README.md) and
 * configure it:
 *   [adapter "hello"]
 *   greeting = Hello, darkroom
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <darkroom-plugin.h>

/* A 1x1 PNG, base64. */
#define HELLO_PNG                                                          \
	"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ" \
	"AAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="

/* The keys of [adapter "..."] sections using this plugin. The core checks
 * them, applies the default and the environment override. */
static const dr_config_key hello_keys[] = {
	{ .name = "greeting", .type = DR_CFG_STRING,
	  .default_value = "Hello", .env = "HELLO_GREETING",
	  .help = "text the text output starts with" },
	{ NULL }
};

/* Per-instance state: one per config section, per process. */
typedef struct hello {
	const dr_host *host;
	const dr_instance *inst;
	const char *greeting; /* the host's copy, valid until destroy() */
} hello;

static dr_status hello_create(const dr_host *host, const dr_instance *inst,
			      void **state, dr_error *err)
{
	/* The host's allocator never returns NULL: out of memory aborts. */
	hello *h = host->mem_calloc(1, sizeof(*h));

	(void)err; /* nothing here can fail */
	h->host = host;
	h->inst = inst;
	h->greeting = host->config_get(inst, "greeting");
	host->log(inst, DR_LOG_INFO, "event=hello.created greeting_len=%zu",
		  strlen(h->greeting));
	*state = h;
	return DR_OK;
}

static void hello_destroy(void *state)
{
	free(state); /* free(NULL) is a no-op, as destroy(NULL) must be */
}

/* Everything put into `out` is malloc'd (the host's allocator gives
 * such memory): the core owns and frees it. */
static dr_status hello_submit(void *state, const dr_job_view *job,
			      dr_prediction *out, dr_error *err)
{
	hello *h = state;
	size_t n = strlen(h->greeting) + strlen(job->model) + 8;
	char *text = h->host->mem_alloc(n);

	(void)err;
	out->outputs = h->host->mem_calloc(2, sizeof(*out->outputs));
	out->id = h->host->mem_alloc(strlen(job->id) + 7);
	snprintf(out->id, strlen(job->id) + 7, "hello-%s", job->id);
	snprintf(text, n, "%s from %s", h->greeting, job->model);
	out->status = DR_PRED_SUCCEEDED;
	out->progress = 1.0;
	out->predict_time = 0;
	out->outputs[0].kind = DR_OUTPUT_DATA;
	out->outputs[0].value = h->host->mem_alloc(sizeof(HELLO_PNG));
	out->outputs[1].kind = DR_OUTPUT_TEXT;
	out->outputs[1].value = text;
	out->n_outputs = 2;
	memcpy(out->outputs[0].value, HELLO_PNG, sizeof(HELLO_PNG));
	return DR_OK;
}

static const dr_adapter_ops hello_ops = {
	.size = sizeof(dr_adapter_ops),
	.submit = hello_submit, /* the only mandatory operation */
};

static const dr_plugin hello_plugin = {
	.abi_version = DR_PLUGIN_ABI_VERSION,
	.size = sizeof(dr_plugin),
	.name = "hello", /* must match the file name, hello.so */
	.kind = DR_PLUGIN_ADAPTER,
	.version = "1.0",
	.description = "example adapter: answers at once with a PNG and text",
	.config_keys = hello_keys,
	.create = hello_create,
	.destroy = hello_destroy,
	.adapter = &hello_ops,
};

DR_PLUGIN_DEFINE(hello_plugin)
