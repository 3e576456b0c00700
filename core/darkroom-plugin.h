/*
 * darkroom-plugin.h - the plugin ABI of darkroom.
 *
 * This is the only header a plugin includes, and it needs nothing but the
 * C standard library. A plugin is a shared object exporting exactly one
 * symbol, DR_PLUGIN_ENTRY_SYMBOL, a function returning a pointer to a
 * `static const dr_plugin` descriptor. The core checks the descriptor's
 * ABI version and struct size exactly and refuses anything else, then
 * checks the size of the kind's operations table (see "Operation tables"
 * below) and that the operations its kind requires are present.
 *
 * A plugin reaches the core only through the dr_host table handed to its
 * create() function (logging, configuration, randomness, time, memory, a
 * key-value store, HTTP), never through core symbols. New host services and new operations are appended
 * at the end of their tables; any change that moves or changes an existing
 * member bumps DR_PLUGIN_ABI_VERSION. A plugin that uses a host service
 * added after the first release of its ABI version checks that the core
 * has it with DR_HOST_HAS(host, member) before calling it.
 *
 * Kinds:
 *   - adapters run predictions at a model provider (replicate, cog, exec);
 *   - sinks store objects for serving (s3, fs).
 *
 * Memory: strings and arrays a plugin returns inside dr_prediction are
 * allocated with malloc() (host->mem_alloc and its kin give such memory)
 * and owned by the core once the call returns; the
 * core releases them with dr_prediction_clear semantics (free() of every
 * member). Everything the core passes in is borrowed for the call only.
 *
 * Threads: each process creates its own plugin instances and calls one
 * instance from one thread at a time. A plugin may keep per-instance state
 * (connections, caches) without locking.
 */
#ifndef DARKROOM_PLUGIN_H
#define DARKROOM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to the structures below. */
#define DR_PLUGIN_ABI_VERSION 2u

/* The one symbol every plugin exports, and its type. */
#define DR_PLUGIN_ENTRY_SYMBOL "dr_plugin_entry"

#if defined(__GNUC__)
#define DR_EXPORT __attribute__((visibility("default")))
#define DR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DR_EXPORT
#define DR_PRINTF(f, a)
#endif

/*
 * Status codes shared by the core and plugins. dr_strerror() in the core
 * names them; details go into a dr_error, never into a global.
 */
typedef enum dr_status {
	DR_OK = 0,
	DR_ERR_NOMEM,        /* allocation failed */
	DR_ERR_INVALID,      /* bad argument or input (the caller's fault) */
	DR_ERR_NOT_FOUND,    /* no such object, job, prediction, file */
	DR_ERR_CONFLICT,     /* state does not allow it (already final, busy) */
	DR_ERR_TOO_LARGE,    /* over a configured limit */
	DR_ERR_UNSUPPORTED,  /* the operation or type is not supported */
	DR_ERR_AUTH,         /* credentials or signature rejected */
	DR_ERR_RATE_LIMITED, /* try again after dr_error.retry_after */
	DR_ERR_UNAVAILABLE,  /* a dependency is down; retrying may help */
	DR_ERR_TIMEOUT,      /* gave up waiting */
	DR_ERR_NETWORK,      /* transport failure */
	DR_ERR_PROVIDER,     /* the provider answered with an error */
	DR_ERR_IO,           /* local file system failure */
	DR_ERR_CONFIG,       /* configuration invalid */
	DR_ERR_PLUGIN,       /* plugin missing, incompatible or misbehaving */
	DR_ERR_DATABASE,     /* database failure other than unavailability */
	DR_ERR_INTERNAL,     /* a bug */
	DR_STATUS_COUNT
} dr_status;

/*
 * Error detail filled by whoever fails. `code` is a stable machine-readable
 * token shown to users in the job's error (e.g. "output_too_large"),
 * `message` is one human sentence without secrets. `retry_after` > 0 asks
 * the caller not to retry before that many seconds (the core waits at
 * most one day, and never past a prediction's provider deadline; NaN,
 * infinities and values <= 0 leave the core's own backoff); `retryable`
 * says whether trying again can succeed at all.
 */
typedef struct dr_error {
	dr_status status;
	int retryable;
	double retry_after;
	char code[48];
	char message[512];
} dr_error;

/* Log levels: the syslog severities. */
enum {
	DR_LOG_ERR = 3,
	DR_LOG_WARNING = 4,
	DR_LOG_NOTICE = 5,
	DR_LOG_INFO = 6,
	DR_LOG_DEBUG = 7
};

/* ------------------------------------------------------------------------
 * Configuration keys. A plugin declares the keys of its section in a table
 * ending with a {NULL} entry; the core rejects unknown keys and bad values
 * with file:line before the plugin is created, applies defaults, and applies
 * the environment variable `env` (if set) over the file.
 */
typedef enum dr_config_type {
	DR_CFG_STRING = 1,
	DR_CFG_INT,      /* decimal integer, optional k/M/G suffix (x1024) */
	DR_CFG_BOOL,     /* true/false, yes/no, on/off, 1/0 */
	DR_CFG_DURATION, /* number with ms, s, m, h suffix; plain = seconds */
	DR_CFG_LIST,     /* comma-separated strings */
	DR_CFG_URL,      /* http:// or https:// URL */
	DR_CFG_PATH      /* file path; relative to the config file's folder */
} dr_config_type;

enum {
	DR_CFG_REQUIRED = 1u << 0, /* must be set in the file or environment */
	DR_CFG_SECRET = 1u << 1    /* never printed, logged or shown */
};

typedef struct dr_config_key {
	const char *name;
	dr_config_type type;
	const char *default_value; /* NULL: no default */
	const char *env;           /* environment override, or NULL */
	unsigned flags;
	const char *help;
} dr_config_key;

/* ------------------------------------------------------------------------
 * Services the core hands to a plugin. `inst` identifies the calling
 * plugin instance; pass back the pointer given to create().
 */
typedef struct dr_instance dr_instance;
typedef struct dr_webhook_request dr_webhook_request;

/* Limits of host->http_request. */
#define DR_HTTP_MAX_RESPONSE (16u << 20) /* largest max_response */
#define DR_HTTP_MAX_RETRIES 5

/* A request for host->http_request. Borrowed for the call. */
typedef struct dr_http_request {
	const char *method;         /* "GET" (or NULL), "HEAD", "POST", "PUT",
				       "PATCH" or "DELETE" */
	const char *url;            /* http:// or https:// */
	const char *const *headers; /* extra "Name: value" lines,
				       NULL-terminated, or NULL; "Name:"
				       removes a header curl would send */
	const void *body;           /* POST, PUT, PATCH, DELETE: the body
				       (NULL: empty); ignored for GET, HEAD */
	size_t body_len;
	double timeout;             /* one try, whole; <= 0: 30 s */
	double connect_timeout;     /* <= 0: 10 s */
	size_t max_response;        /* body cap, bytes; 0: 1 MiB; at most
				       DR_HTTP_MAX_RESPONSE */
	int retries;                /* further tries, 0..DR_HTTP_MAX_RETRIES:
				       after a 429 or 503 answer, or a failure
				       before the request left */
	double max_retry_wait;      /* longest wait before a further try
				       (Retry-After, else 1, 2, 4... s);
				       <= 0: 30 s; an answer asking for longer
				       ends the tries and is returned */
	int untrusted;              /* the URL came from outside the
				       configuration (a provider's answer):
				       the download rules apply (see below) */
} dr_http_request;

/* The answer of host->http_request. */
typedef struct dr_http_response {
	long status;              /* the HTTP status */
	char *body;               /* NUL-terminated, body_len bytes (free it
				     with mem_free); NULL after a failure */
	size_t body_len;
	char content_type[128];   /* the Content-Type, "" when none (cut) */
	double retry_after;       /* seconds the Retry-After header asks for
				     (delta-seconds or an HTTP-date), or -1 */
	int sent;                 /* 0: the last try surely never reached
				     the server; 1: it may have */
	int tries;                /* tries made */
} dr_http_response;

typedef struct dr_host {
	uint32_t abi_version; /* DR_PLUGIN_ABI_VERSION of the core */
	uint32_t size;        /* sizeof(dr_host) of the core */

	/* One log line; the core adds the plugin and instance names. */
	void (*log)(const dr_instance *inst, int level, const char *fmt, ...)
		DR_PRINTF(3, 4);

	/* The instance's value for a declared key after defaults and
	 * environment, or NULL when unset. DR_CFG_PATH values come back
	 * absolute. Valid for the life of the instance. */
	const char *(*config_get)(const dr_instance *inst, const char *key);

	/* Parsed numeric forms of declared keys (0 / false when unset). */
	int64_t (*config_int)(const dr_instance *inst, const char *key);
	double (*config_seconds)(const dr_instance *inst, const char *key);
	int (*config_bool)(const dr_instance *inst, const char *key);

	/* The instance name from the config section, e.g. "replicate" or
	 * "gpu1" for [adapter "gpu1"]. */
	const char *(*instance_name)(const dr_instance *inst);

	/* The public base URL of this darkroom (no trailing slash), for
	 * webhook URLs: e.g. https://darkroom.example.com */
	const char *(*public_url)(const dr_instance *inst);

	/* Cryptographically secure random bytes; DR_OK or an error. */
	dr_status (*random_bytes)(void *buf, size_t len);

	/* Wall-clock time in seconds since the epoch, with sub-second part. */
	double (*now)(void);

	/* Fill an error: status, stable code, printf message. Returns
	 * `status` so a plugin can write `return host->fail(err, ...)`. */
	dr_status (*fail)(dr_error *err, dr_status status, const char *code,
			  const char *fmt, ...) DR_PRINTF(4, 5);

	/* The value of request header `name` (lower case), or NULL. */
	const char *(*webhook_header)(const struct dr_webhook_request *req,
				      const char *name);

	/* Verify a Standard Webhooks delivery (webhook-id, webhook-timestamp,
	 * webhook-signature headers; HMAC-SHA256 over id.timestamp.body;
	 * v1 entries only; constant-time comparison) against each of the
	 * `n` secrets ("whsec_<base64>" or raw base64), allowing `tolerance`
	 * seconds of clock difference. DR_OK, or DR_ERR_AUTH with a reason
	 * (err->code "bad_signature", "stale_timestamp", "missing_header"),
	 * or DR_ERR_CONFIG for an undecodable secret. */
	dr_status (*webhook_verify)(const struct dr_webhook_request *req,
				    const char *const *secrets, size_t n,
				    double tolerance, dr_error *err);

	/* Declare that this adapter instance hands over local files
	 * (DR_OUTPUT_PATH outputs) and where: `dir`, an absolute path
	 * without "." or ".." components (the instance's work folder),
	 * holds one folder per job, named the job id or the job id, '-' and
	 * anything ("j_01JD...-2"). The core reads a DR_OUTPUT_PATH output
	 * only when it is a regular file inside the folder of its own job,
	 * reached without following a symlink, and refuses any other with
	 * code local_file_not_allowed; an instance that declared no folder
	 * hands over no local file at all. Call it from create(); a later
	 * call replaces the folder. DR_OK, or DR_ERR_INVALID (a relative
	 * path, "." or "..", "/", or a sink instance). */
	dr_status (*local_root)(const dr_instance *inst, const char *dir,
				dr_error *err);

	/* Memory. Each returns memory that free() (or mem_free) releases,
	 * so it may go into a dr_prediction, and never returns NULL: out of
	 * memory (or a calloc size that overflows) writes one line to
	 * stderr and aborts the process, as the core itself does, so a
	 * plugin needs no out-of-memory paths. A size of 0 gives a unique
	 * pointer; mem_realloc(NULL, n) is mem_alloc(n); mem_strndup copies
	 * at most n bytes and adds a NUL; mem_free(NULL) does nothing. */
	void *(*mem_alloc)(size_t n);
	void *(*mem_calloc)(size_t n, size_t size);
	void *(*mem_realloc)(void *p, size_t n);
	char *(*mem_strdup)(const char *s);
	char *(*mem_strndup)(const char *s, size_t n);
	void (*mem_free)(void *p);

	/* A small durable key-value store of this instance, shared by every
	 * darkroom process that uses its section (kept in the database,
	 * table plugin_kv, keyed by instance name and key): for what one
	 * process learns and another needs, such as a signing secret the
	 * worker fetches from the provider (in maintain()) and the FastCGI
	 * app reads to verify webhooks without calling the provider.
	 * `key`: 1 to DR_KV_KEY_MAX bytes of [A-Za-z0-9._-]; a value: text of
	 * at most DR_KV_VALUE_MAX bytes without NUL.
	 *
	 * kv_get: DR_OK with *value (mem_alloc'd, the caller frees it) and,
	 * when `updated_at` is not NULL, the time of its last kv_put
	 * (seconds since the epoch); DR_ERR_NOT_FOUND when unset;
	 * DR_ERR_UNAVAILABLE when this process has no database (config
	 * check) or it cannot be reached; DR_ERR_INVALID for a bad key.
	 * kv_put: set `key` to `value` (replacing it), or delete it when
	 * `value` is NULL; DR_OK or the errors of kv_get. Each call is one
	 * short database round trip: cache what is read often. */
	dr_status (*kv_get)(const dr_instance *inst, const char *key,
			    char **value, double *updated_at, dr_error *err);
	dr_status (*kv_put)(const dr_instance *inst, const char *key,
			    const char *value, dr_error *err);

	/* An HTTP request on the instance's own connections (kept alive
	 * between calls, so call it from the instance's thread only).
	 * Redirects are not followed, no signal is raised, content
	 * encodings are decoded, and the body read is capped at
	 * req->max_response. A try that fails before the request left
	 * (resolving, connecting, the TLS handshake) or answers 429 or 503
	 * is made again up to req->retries times, after what Retry-After
	 * asks (at most req->max_retry_wait) or a backoff; nothing else is
	 * repeated, as a create may not be idempotent.
	 *
	 * A trusted URL (from the configuration) may use any address and
	 * the proxies of the environment. With req->untrusted the rules of
	 * output downloads apply instead (the core's own code): https only
	 * (http with DARKROOM_DOWNLOAD_ALLOW_HTTP=1), the host on the
	 * adapter's download_hosts or DARKROOM_DOWNLOAD_HOSTS, public
	 * addresses only (checked at connect time), no proxy.
	 *
	 * DR_OK when an answer came, whatever its status (the caller judges
	 * it), with *resp filled. Otherwise resp->body is NULL, resp->sent
	 * says whether the last try may have reached the server, and err:
	 * DR_ERR_NETWORK "http_not_sent" (retryable: nothing left),
	 * DR_ERR_TIMEOUT "http_timeout", DR_ERR_NETWORK "http_failed" (the
	 * connection failed after sending), DR_ERR_TOO_LARGE
	 * "http_too_large", DR_ERR_INVALID "url_not_allowed" or
	 * "address_not_allowed" (untrusted URLs; a bad URL), with curl's
	 * message, which names hosts, never headers. In darkroom.fcgi, which
	 * makes no outbound request, it fails at once: DR_ERR_UNAVAILABLE
	 * "http_unavailable". */
	dr_status (*http_request)(const dr_instance *inst,
				  const dr_http_request *req,
				  dr_http_response *resp, dr_error *err);

	/* The document of webhook delivery `req` to parse: its body, with
	 * each large base64 data: URI under the top-level "output" member
	 * (4 KiB and more) replaced by a short reference to the decoded
	 * file, which the core keeps and resolves itself:
	 * "data:<media type>;darkroom-blob=<id>," - an empty data: URI, so
	 * it passes where the file's would, as a file output. An adapter
	 * parsing this never holds a copy of a file of tens of megabytes.
	 * Signatures stay those of req->body, as received (webhook_verify
	 * reads that). NUL-terminated, *len set to its length; req->body
	 * itself when nothing was replaced. Borrowed for the call. Check
	 * DR_HOST_HAS(host, webhook_document) and parse req->body where it
	 * is absent. */
	const char *(*webhook_document)(const struct dr_webhook_request *req,
					size_t *len);
} dr_host;

/* Limits of host->kv_get / kv_put. */
#define DR_KV_KEY_MAX 128
#define DR_KV_VALUE_MAX 65535

/* Whether the core's host table has service `member`: a plugin built
 * against this header may be loaded by an older core of the same ABI
 * version, whose table ends before the services appended later. */
#define DR_HOST_HAS(host, member)                                            \
	((host)->size >=                                                     \
	 offsetof(dr_host, member) + sizeof(((const dr_host *)0)->member))

/* ------------------------------------------------------------------------
 * Adapters.
 */

/* What an adapter sees of a job. Borrowed for the call. */
typedef struct dr_job_view {
	const char *id;            /* darkroom job id, "j_..." */
	const char *model;         /* as the client gave it */
	const char *input_json;    /* the job's input object as JSON text */
	const char *prediction_id; /* the provider's id, or NULL before submit */
	const char *webhook_url;   /* where the provider should POST events;
				      carries ?job=<id> so a delivery for a
				      prediction whose create answer was lost
				      still finds its job */
	int attempt;               /* 1 for the first try of the current step */
	double submitted_at;       /* when an earlier submit attempt began
				      (seconds since the epoch), or 0 */
	/* Appended: what the job runs. DR_JOB_PREDICTION (0) for every job
	 * of an adapter whose ops do not set `trainings`. For
	 * DR_JOB_TRAINING, `model` is the trainer ("owner/name:<version>")
	 * and `destination` the model the new version goes to
	 * ("owner/name"); NULL otherwise. */
	int kind;
	const char *destination;
} dr_job_view;

/* dr_job_view.kind */
enum { DR_JOB_PREDICTION = 0, DR_JOB_TRAINING = 1 };

typedef enum dr_prediction_status {
	DR_PRED_UNKNOWN = 0,
	DR_PRED_STARTING,
	DR_PRED_PROCESSING,
	DR_PRED_SUCCEEDED,
	DR_PRED_FAILED,
	DR_PRED_CANCELED,
	DR_PRED_ABORTED /* the provider dropped it before it started */
} dr_prediction_status;

typedef enum dr_output_kind {
	DR_OUTPUT_URL = 1, /* a file at an http(s) URL, to download */
	DR_OUTPUT_DATA,    /* a file inline as a data: URI */
	DR_OUTPUT_TEXT,    /* text produced by the model */
	DR_OUTPUT_PATH     /* a local file, read in place: only from an
			      instance that declared its work folder with
			      host->local_root, and only from the job's own
			      folder there (adapters that run programs) */
} dr_output_kind;

typedef struct dr_output_ref {
	dr_output_kind kind;
	char *value; /* URL, data: URI, text or absolute path (malloc);
			only DR_OUTPUT_PATH makes a value a local file */
} dr_output_ref;

/*
 * A prediction as normalised by an adapter. All pointers are malloc'd and
 * owned by the core after the call; unset strings are NULL.
 */
typedef struct dr_prediction {
	char *id;                 /* provider's prediction id: 1 to 64
				     printable ASCII characters (the core
				     refuses any other as bad_prediction_id) */
	dr_prediction_status status;
	double progress;          /* 0..1, or < 0 when unknown */
	double predict_time;      /* seconds of model time, or < 0 */
	char *version;            /* model version the provider ran */
	char *error;              /* provider's error text when failed */
	char *raw_json;           /* the provider's document, for the log */
	char *completed_at;       /* ISO 8601 as the provider gave it */
	size_t n_outputs;
	dr_output_ref *outputs;
	int data_removed;         /* the provider already deleted the files */
	char *trained_version;	  /* appended: a succeeded training's new
				     model version ("owner/name:<id>"), or
				     NULL; the core reads it for trainings
				     only */
} dr_prediction;

/* A provider webhook delivery, as received. Borrowed for the call. */
struct dr_webhook_request {
	const char *const *header_names;  /* lower-case */
	const char *const *header_values;
	size_t n_headers;
	const unsigned char *body;
	size_t body_len;
	double received_at; /* the core's clock, seconds since the epoch */
};

/*
 * Operation tables. dr_adapter_ops and dr_sink_ops start with `size`,
 * which a plugin sets to sizeof() of the table it was built with. New
 * operations are appended at the end of a table within an ABI version, so
 * the core accepts, within the same DR_PLUGIN_ABI_VERSION:
 *   - a table of its own size;
 *   - a smaller one (a plugin built against an older header of the same
 *     ABI version), as long as it holds every mandatory operation of its
 *     kind (DR_ADAPTER_OPS_MIN_SIZE, DR_SINK_OPS_MIN_SIZE): the operations
 *     beyond its size are absent, as if NULL, whatever the bytes after
 *     the plugin's table hold;
 * and refuses a larger one (a plugin built against a newer header, whose
 * operations this core does not know) with a message naming both sizes:
 * update darkroom, or rebuild the plugin against this darkroom's header.
 */
#define DR_OPS_END(type, member)                                             \
	(offsetof(type, member) + sizeof(((const type *)0)->member))

typedef struct dr_adapter_ops {
	size_t size; /* sizeof(dr_adapter_ops) */

	/* Check a job at intake (model syntax, input the provider cannot
	 * take) without network calls. DR_OK or DR_ERR_INVALID with the
	 * field in the message. Optional. */
	dr_status (*validate)(void *state, const dr_job_view *job,
			      dr_error *err);

	/* Start the prediction. On DR_OK `out` holds at least the id and a
	 * status (possibly already final). DR_ERR_RATE_LIMITED with
	 * retry_after, DR_ERR_UNAVAILABLE/NETWORK (retryable when the request
	 * surely was not sent), DR_ERR_INVALID for a rejected input.
	 * Mandatory. */
	dr_status (*submit)(void *state, const dr_job_view *job,
			    dr_prediction *out, dr_error *err);

	/* Fetch the prediction's current state. Optional: NULL for providers
	 * that only push (the core then waits for webhooks until a deadline). */
	dr_status (*get)(void *state, const dr_job_view *job,
			 dr_prediction *out, dr_error *err);

	/* Ask the provider to stop the prediction. Optional. */
	dr_status (*cancel)(void *state, const dr_job_view *job, dr_error *err);

	/* Verify a webhook delivery (signature, token, timestamp) and parse it.
	 * DR_ERR_AUTH when it is not authentic; DR_OK with `out` filled and
	 * `delivery_id` set to a stable id of this delivery (malloc, or NULL
	 * when the provider has none) for duplicate detection: any length
	 * and any bytes but NUL (the core keys on its SHA-256). Optional. */
	dr_status (*webhook)(void *state, const dr_webhook_request *req,
			     dr_prediction *out, char **delivery_id,
			     dr_error *err);

	/* Hosts output downloads may come from by default (NULL-terminated,
	 * "*.example.com" matches subdomains). NULL: none (data: URIs need
	 * no host; local files need host->local_root). */
	const char *const *download_hosts;

	/* After a crash between sending a create and recording its answer:
	 * find the prediction an earlier attempt of this job may have made
	 * (job->submitted_at says when it began). DR_OK with `out` filled,
	 * DR_ERR_NOT_FOUND when there is none (the core submits again).
	 * Optional: without it the core waits for a webhook carrying the
	 * job id for a grace period, then submits again. */
	dr_status (*reconcile)(void *state, const dr_job_view *job,
			       dr_prediction *out, dr_error *err);

	/* Upkeep outside any job or request, such as fetching a webhook
	 * signing secret from the provider and keeping it with
	 * host->kv_put for the FastCGI app, which must never wait on the
	 * provider. The worker calls it when it starts and then about once a
	 * minute (DR_MAINTAIN_INTERVAL), from one of its processes, and
	 * `darkroom migrate` once after the migrations; it may
	 * take as long as its own timeouts allow (no job waits on it). A
	 * failure is logged by the core and the call comes again at the next
	 * interval. Optional. */
	dr_status (*maintain)(void *state, dr_error *err);

	/* Nonzero: the adapter runs trainings (POST /v1/trainings). Then
	 * validate, submit, get, cancel and reconcile are also called with
	 * job->kind == DR_JOB_TRAINING (job->model the trainer,
	 * job->destination the destination model), and a succeeded
	 * training's prediction carries `trained_version` and the weights
	 * as its outputs (stored with kind "weights", no renditions).
	 * Absent or 0: trainings are refused at intake (422 naming
	 * `adapter`), and the adapter never sees one. Optional. */
	int trainings;
} dr_adapter_ops;

/* Seconds between the worker's calls of an adapter's maintain(). */
#define DR_MAINTAIN_INTERVAL 60

/* The smallest adapter table the core accepts: through `submit`. */
#define DR_ADAPTER_OPS_MIN_SIZE DR_OPS_END(dr_adapter_ops, submit)

/* ------------------------------------------------------------------------
 * Sinks.
 */

/* Bytes to store: from memory when `data` is not NULL, otherwise from the
 * file descriptor `fd` (read from offset 0 with pread). */
typedef struct dr_source {
	const void *data;
	int fd;
	uint64_t size;
} dr_source;

typedef struct dr_object_meta {
	const char *content_type;  /* e.g. "image/webp" */
	const char *cache_control; /* e.g. "public, max-age=31536000, immutable" */
	const char *sha256_hex;    /* of the bytes, for integrity headers */
	size_t n_meta;             /* user metadata (x-amz-meta-*) */
	const char *const *meta_names;
	const char *const *meta_values;
} dr_object_meta;

typedef struct dr_sink_ops {
	size_t size; /* sizeof(dr_sink_ops) */

	/* Store the object under `key` (a relative path of [A-Za-z0-9._/-],
	 * no "..", no leading "/"), replacing any object there atomically:
	 * a reader sees the old bytes or the new, never a part. Mandatory. */
	dr_status (*put)(void *state, const char *key, const dr_source *src,
			 const dr_object_meta *meta, dr_error *err);

	/* Read the object into a malloc'd buffer owned by the caller.
	 * DR_ERR_NOT_FOUND when absent, DR_ERR_TOO_LARGE over `max_bytes`.
	 * Mandatory. */
	dr_status (*get)(void *state, const char *key, uint64_t max_bytes,
			 void **data, size_t *len, dr_error *err);

	/* Delete the object; deleting an absent object is DR_OK. Mandatory. */
	dr_status (*remove)(void *state, const char *key, dr_error *err);

	/* Write the public URL of `key` into buf (NUL-terminated). DR_OK,
	 * or DR_ERR_TOO_LARGE when it does not fit. Mandatory. Called
	 * whenever a job or output is read (rows keep keys, not URLs), by
	 * the FastCGI app and the CLI too: no I/O, no allocation. */
	dr_status (*public_url)(void *state, const char *key, char *buf,
				size_t bufsz);

	/* Size of the object, DR_ERR_NOT_FOUND when absent. Optional. */
	dr_status (*stat)(void *state, const char *key, uint64_t *size,
			  dr_error *err);

	/* Open the object for reading: *fd (the caller closes it) reads
	 * its bytes from offset 0, *size of them. DR_ERR_NOT_FOUND when
	 * absent. Optional: a sink that keeps objects in local files (fs)
	 * has it, so the core can serve a large private object without
	 * holding it in memory; without it the core reads through get(). */
	dr_status (*open)(void *state, const char *key, int *fd, uint64_t *size,
			  dr_error *err);

	/* Write into buf (NUL-terminated) a URL through which anyone
	 * holding it may GET the object for `ttl` seconds (1 s to 7 days)
	 * from `at` (epoch seconds; whole seconds count), whatever its ACL:
	 * an S3 presigned URL. The same arguments make the same URL (the
	 * core signs a job's files at its attempt's start, so a lost
	 * create's reconcile sees what was sent). No I/O. DR_OK,
	 * DR_ERR_TOO_LARGE when it does not fit, DR_ERR_INVALID for a bad
	 * key or ttl. Optional: without it the core hands out signed URLs
	 * of its own (GET /v1/files/{id}/content) for private objects. */
	dr_status (*presign)(void *state, const char *key, double at,
			     double ttl, char *buf, size_t bufsz,
			     dr_error *err);
} dr_sink_ops;

/* The smallest sink table the core accepts: through `public_url`. */
#define DR_SINK_OPS_MIN_SIZE DR_OPS_END(dr_sink_ops, public_url)

/* ------------------------------------------------------------------------
 * The descriptor.
 */
typedef enum dr_plugin_kind {
	DR_PLUGIN_ADAPTER = 1,
	DR_PLUGIN_SINK = 2
} dr_plugin_kind;

typedef struct dr_plugin {
	uint32_t abi_version; /* DR_PLUGIN_ABI_VERSION */
	uint32_t size;        /* sizeof(dr_plugin) */
	const char *name;     /* unique among plugins, [a-z0-9_-] */
	dr_plugin_kind kind;
	const char *version;     /* the plugin's own version string */
	const char *description; /* one line for `darkroom plugins list` */
	const dr_config_key *config_keys; /* {NULL}-terminated, or NULL */

	/* Make an instance from its config section. `*state` is the
	 * plugin's, passed to every operation and to destroy(). The host
	 * and inst pointers stay valid until destroy(). Mandatory. */
	dr_status (*create)(const dr_host *host, const dr_instance *inst,
			    void **state, dr_error *err);

	/* Release an instance; accepts NULL. Mandatory. */
	void (*destroy)(void *state);

	const dr_adapter_ops *adapter; /* DR_PLUGIN_ADAPTER */
	const dr_sink_ops *sink;       /* DR_PLUGIN_SINK */
} dr_plugin;

typedef const dr_plugin *(*dr_plugin_entry_fn)(void);

/* Declare the entry point in the plugin: DR_PLUGIN_DEFINE(my_descriptor) */
#define DR_PLUGIN_DEFINE(descriptor)                                         \
	DR_EXPORT const dr_plugin *dr_plugin_entry(void);                    \
	DR_EXPORT const dr_plugin *dr_plugin_entry(void)                     \
	{                                                                    \
		return &(descriptor);                                        \
	}

#ifdef __cplusplus
}
#endif

#endif /* DARKROOM_PLUGIN_H */
