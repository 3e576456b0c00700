/*
 * jobs.h - the job model: validating job requests, storing and reading
 * jobs, rendering the job object of CONTRACT §2, cancel and retry.
 *
 * This module owns the SQL of the jobs, job_metadata and
 * idempotency_keys tables as the API reads and creates them. Every later
 * change of a job (its status, a client's cancel and retry) and every
 * event belongs to jobstate.h; claims and leases to queue.h.
 *
 * Output and rendition rows keep storage keys, not URLs: the `url` of
 * each is made when the job is rendered, from its key and the public
 * base URL of the sink the caller passes (the active sink of the reading
 * process, through its public_url operation). So a changed CDN host or
 * port shows in every answer without a rewrite of the rows.
 */
#ifndef DR_JOBS_H
#define DR_JOBS_H

#include <json-c/json.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "db.h"
#include "error.h"
#include "ids.h"
#include "plugin.h"

#define DR_MAX_METADATA_KEYS 16
#define DR_MAX_METADATA_BYTES 4096
#define DR_MAX_METADATA_KEY 64 /* bytes of a key */
#define DR_MAX_METADATA_FILTERS DR_MAX_METADATA_KEYS
#define DR_MAX_RENDITIONS 16
#define DR_MAX_MODEL_LEN 255
#define DR_MAX_URL_LEN 2048
#define DR_MAX_IDEMPOTENCY_KEY 255
#define DR_MAX_PROMPT_INDEX 16384 /* bytes of a prompt kept for search */
#define DR_MAX_FAIR_VALUE	255 /* characters of jobs.fair_value (queue.h) */

/* A validated POST /v1/jobs body. Strings point into `root`, which the
 * caller releases with jobs_request_free(). */
typedef struct dr_job_request {
	json_object *root;
	const char *adapter;
	const char *model;
	json_object *input;
	json_object *metadata;   /* object of strings, or NULL */
	const char *renditions[DR_MAX_RENDITIONS];
	size_t n_renditions;
	const char *callback_url; /* or NULL */
	/* A workflow (jobs_parse_workflow()): its steps in order, each a
	 * request of its own whose `input` is the step's input as written
	 * and whose `root` holds its adapter, model and renditions;
	 * step_names[i] is step i's name. The workflow's own adapter and
	 * model are its last step's, its input the workflow's input, and it
	 * has no renditions. NULL and 0 for a job that is one prediction. */
	struct dr_job_request *steps;
	const char **step_names;
	size_t n_steps;
	int training;		 /* POST /v1/trainings: kind 'training',
				    `model` is the trainer */
	const char *destination; /* a training's destination model */
} dr_job_request;

#define DR_FIELD_MAX 160 /* bytes of a field name: steps[15].input.… */

/*
 * Validate a parsed request body (takes a new reference to `root` on
 * success). On DR_ERR_INVALID, err->message starts with the offending
 * field ("input: must be an object") and *field (static or pointing into
 * root) names it, for the 422 problem document. Checks the adapter exists
 * in `plugins` and runs its validate operation, and that every rendition
 * names a preset of `cfg`.
 */
dr_status jobs_parse_request(const dr_config *cfg, const dr_plugins *plugins,
			     json_object *root, dr_job_request *out,
			     const char **field, dr_error *err) DR_WARN_UNUSED;

/*
 * Validate a parsed workflow request body (CONTRACT §2, Workflows: `input`
 * and `steps`, with `metadata` and `callback_url`), as jobs_parse_request()
 * does each step (its {"$ref"} values seen as strings by the adapter's
 * check), and every reference between them (workflow.h). At most
 * [limits] max_steps steps. On DR_ERR_INVALID `field` (DR_FIELD_MAX
 * bytes) names the offending field ("steps[1].input.prompt") and
 * err->message starts with it. Takes a new reference to `root` on
 * success; the caller releases *out with jobs_request_free().
 */
dr_status jobs_parse_workflow(const dr_config *cfg, const dr_plugins *plugins,
			      json_object *root, dr_job_request *out,
			      char field[DR_FIELD_MAX],
			      dr_error *err) DR_WARN_UNUSED;

void jobs_request_free(dr_job_request *req);

/*
 * Validate a POST /v1/trainings body (`adapter`, `trainer`,
 * `destination`, `input`, `callback_url`, `metadata`) into a request
 * jobs_create() stores as a job of kind 'training': `model` is the
 * trainer, no renditions. As jobs_parse_request() for errors; an adapter
 * whose ops do not run trainings is refused naming `adapter`, and the
 * adapter's validate sees the job with kind DR_JOB_TRAINING (a trainer
 * without its version is refused there, naming `trainer`).
 */
dr_status jobs_parse_training(const dr_config *cfg, const dr_plugins *plugins,
			      json_object *root, dr_job_request *out,
			      const char **field, dr_error *err) DR_WARN_UNUSED;

/* 1 when `s` is a job kind a list filters by (prediction, training,
 * workflow). */
int jobs_kind_valid(const char *s);

/* Check a callback_url value `v` as jobs_parse_request() does (a string,
 * an http(s) URL the callback rules allow, a callback_secret to sign
 * with). DR_ERR_INVALID with *field = "callback_url" and the reason. */
dr_status jobs_check_callback_url(const dr_config *cfg, json_object *v,
				  const char **field,
				  dr_error *err) DR_WARN_UNUSED;

/* Idempotency: who asked (a hash of the API key) and with what key. */
typedef struct dr_idempotency {
	const char *scope;     /* 16 hex chars, or NULL for none */
	const char *key;       /* the Idempotency-Key header, or NULL */
	const char *body_hash; /* SHA-256 hex of the request body */
} dr_idempotency;

/*
 * The functions below that render job objects or outputs take `sink`, the
 * active sink instance (borrowed, created), which makes each `url` from
 * the row's storage key. NULL when the process has none: each `url` is
 * then what the row stored (NULL for rows written since URLs are made
 * when read). A sink whose public_url fails gives a null `url`.
 */

/* 1 when `idem` holds a key that names a job made with the same body (a
 * replay, which jobs_create() answers with that job, whatever became of
 * the files its input names); 0 otherwise, a database error included
 * (jobs_create() meets it again). An expired key still counts here. */
int jobs_idempotent_replay(dr_db *db, const dr_idempotency *idem);

/*
 * Store a new queued job with its metadata rows and a "created" event, in
 * one transaction. With an idempotency key already used: the same body
 * gives DR_OK with *replayed = 1 and the earlier job's id; another body
 * gives DR_ERR_CONFLICT. A key older than [retention] idempotency_keys
 * (when not off) is expired: it is replaced and a new job is made. The id is
 * written to id_out. When `out` is not NULL the job object (CONTRACT §2) is
 * appended to it: the new job as stored (read back by the INSERT itself, no
 * further query), or for a replay the earlier job as it is now. A failure to
 * render (a job too large for `out`, or the database gone while reading a
 * replay) is returned with the job already stored and id_out set.
 */
dr_status jobs_create(dr_db *db, const dr_config *cfg,
		      const struct dr_instance *sink, const dr_job_request *req,
		      const dr_idempotency *idem,
		      char id_out[DR_JOB_ID_LEN + 1], int *replayed,
		      dr_buf *out, dr_error *err) DR_WARN_UNUSED;

/*
 * Store the n jobs reqs[i] of batch `batch_id` in the caller's open
 * transaction: queued, each with its item key keys[i] (NULL for none),
 * its metadata rows and a "created" event whose detail names the batch,
 * written by multi-row statements (db_insert_rows()); a workflow item
 * (reqs[i].n_steps) with its steps, as jobs_create() stores them. ids[i]
 * gets job i's new id; ids are made in order, so the jobs sort as the
 * items did. On failure the caller rolls back.
 */
dr_status jobs_insert_batch(dr_db *db, const dr_config *cfg,
			    const char *batch_id, const dr_job_request *reqs,
			    const char *const *keys, size_t n,
			    char (*ids)[DR_JOB_ID_LEN + 1],
			    dr_error *err) DR_WARN_UNUSED;

/* Append the job object of job `id` (CONTRACT §2) to `out`.
 * DR_ERR_NOT_FOUND when there is no such job. */
dr_status jobs_render(dr_db *db, const dr_config *cfg,
		      const struct dr_instance *sink, const char *id,
		      dr_buf *out, dr_error *err) DR_WARN_UNUSED;

/* The job object of job `id` as a client callback carries it (the
 * "data" of its message): without its "callback" member, which changes
 * with every try, so that every try of one message sends the same job. */
dr_status jobs_render_message(dr_db *db, const dr_config *cfg,
			      const struct dr_instance *sink, const char *id,
			      dr_buf *out, dr_error *err) DR_WARN_UNUSED;

/* Columns of each row of jobs_callback_attempts(), in order. */
enum {
	JOBS_ATTEMPT_DELIVERY, /* the delivery's id, its webhook-id */
	JOBS_ATTEMPT_NUMBER,   /* 1, 2… within the delivery */
	JOBS_ATTEMPT_STARTED,  /* "YYYY-MM-DD HH:MM:SS.ffffff" */
	JOBS_ATTEMPT_MS,       /* how long it took */
	JOBS_ATTEMPT_STATUS,   /* the HTTP status, NULL for no answer */
	JOBS_ATTEMPT_ERROR     /* NULL when it was delivered */
};

/* Every try of job `id`'s callback deliveries (callback_attempts),
 * oldest delivery first, each in order; *rows is the caller's to free
 * (db_rows_free), empty for a job without any. */
dr_status jobs_callback_attempts(dr_db *db, const char *id, dr_db_rows **rows,
				 dr_error *err) DR_WARN_UNUSED;

/* A metadata.KEY=VALUE filter: jobs whose metadata has KEY with VALUE.
 * Several filters all apply (AND). */
typedef struct dr_metadata_filter {
	const char *key;
	const char *value;
} dr_metadata_filter;

/*
 * Check the filters f[0..n) of a list or search: at most
 * DR_MAX_METADATA_FILTERS; each key a valid metadata key (1-64 characters
 * of A-Z a-z 0-9 . _ -, not starting with . or -); each value one a job
 * can have (key and value at most DR_MAX_METADATA_BYTES together; empty
 * is fine); no key twice, comparing keys without letter case as the
 * database does (a job has one value per key, so a repeated key could
 * only match nothing). On DR_ERR_INVALID, *bad is the index of the
 * offending filter (n when there are too many) and err->message says
 * why, starting with "metadata.KEY: ".
 */
dr_status jobs_check_metadata_filters(const dr_metadata_filter *f, size_t n,
				      size_t *bad, dr_error *err)
	DR_WARN_UNUSED;

/*
 * Append to `sql` the condition " AND EXISTS (...)" of each of `n`
 * metadata filters on the job id in column `job_id` ("jobs.id",
 * "o.job_id"): two parameters each, key then value, in filter order.
 */
dr_status jobs_metadata_sql(dr_buf *sql, const char *job_id, size_t n)
	DR_WARN_UNUSED;

/* Appends to `sql` a list or search query for a combination of filters
 * (`mask`, the caller's bits) and `n_meta` metadata filters. */
typedef dr_status (*jobs_filter_sql_fn)(dr_buf *sql, unsigned mask,
					size_t n_meta);

/*
 * Run the query `build` makes for `mask` and `n_meta` metadata filters
 * with args[0..n), into *rows (the caller frees them). Without metadata
 * filters the text is built once per process into cache[mask] (the
 * caller's array, one slot per mask, never freed) and its statement is
 * cached. With them it is built for this call, behind an optimizer
 * setting where the server has it (asked once per process), and
 * prepared, run and closed: 16 filter counts times every mask would be
 * too many prepared statements for the server.
 */
dr_status jobs_filtered_query(dr_db *db, jobs_filter_sql_fn build,
			      char **cache, unsigned mask, size_t n_meta,
			      const dr_db_arg *args, size_t n,
			      dr_db_rows **rows, dr_error *err) DR_WARN_UNUSED;

typedef struct dr_job_filter {
	const char *status;  /* or NULL */
	const char *model;   /* or NULL */
	const char *adapter; /* or NULL */
	const char *cursor;  /* a job id: list jobs older than it, or NULL */
	const char *batch;   /* a batch id: its jobs only, or NULL */
	const char *kind;    /* prediction, training, workflow, or NULL */
	dr_metadata_filter meta[DR_MAX_METADATA_FILTERS]; /* all apply */
	size_t n_meta; /* checked with jobs_check_metadata_filters() */
	int limit;           /* 1..100 */
} dr_job_filter;

/* One filter of a list as a name and a value: a query parameter of GET
 * /v1/jobs or /v1/outputs ("status", "metadata.user"), or the option of
 * `darkroom jobs list` / `darkroom outputs` that stands for it. */
typedef struct dr_filter_arg {
	const char *name;
	const char *value;
} dr_filter_arg;

#define DR_LIST_LIMIT_DEFAULT 20
#define DR_LIST_LIMIT_MAX 100

/* Refuse filter `name`: err gets DR_ERR_INVALID, code "invalid_parameter",
 * message "<name>: <fmt…>" (the name cut at 80 bytes); *field = name. */
dr_status jobs_filter_refuse(dr_error *err, const char **field,
			     const char *name, const char *fmt, ...)
	DR_PRINTF(4, 5);

/*
 * The part of jobs_filter_parse() and outputs_filter_parse() both lists
 * share. Every args[i].name must be one of `names` (NULL-terminated) or
 * metadata.KEY, and no name may come twice (the list would mean two
 * things); values[k] gets the value of names[k], or NULL. The metadata
 * filters go to meta[0..*n_meta), checked with
 * jobs_check_metadata_filters(); a "limit" among `names` is read into
 * *limit (1..DR_LIST_LIMIT_MAX, DR_LIST_LIMIT_DEFAULT when absent).
 * Everything points into args. On DR_ERR_INVALID (code
 * "invalid_parameter"), *field is the offending name (an args name, or
 * "metadata" for too many filters) and err->message starts with it and
 * ": ".
 */
dr_status jobs_filter_args(const dr_filter_arg *args, size_t n,
			   const char *const *names, const char **values,
			   dr_metadata_filter *meta, size_t *n_meta,
			   int *limit, const char **field, dr_error *err)
	DR_WARN_UNUSED;

/*
 * Read the filters of a job list (status, model, adapter, batch, limit,
 * cursor, metadata.KEY; see CONTRACT) from name/value pairs into *f, checked:
 * the one validation of GET /v1/jobs and `darkroom jobs list`. *f points into
 * args. DR_ERR_INVALID as jobs_filter_args() says (*field names the
 * filter, err->message says why, starting with "<field>: ").
 */
dr_status jobs_filter_parse(const dr_filter_arg *args, size_t n,
			    dr_job_filter *f, const char **field,
			    dr_error *err) DR_WARN_UNUSED;

/* Append {"data": [...], "next_cursor": ...} for the filter, newest
 * first. */
dr_status jobs_list(dr_db *db, const dr_config *cfg,
		    const struct dr_instance *sink, const dr_job_filter *f,
		    dr_buf *out, dr_error *err) DR_WARN_UNUSED;

/* Columns of an output row and of a rendition row, in the order
 * jobs_append_output() reads them (o. and r. are the table aliases). The
 * url columns are read for rows without a key only (see above). */
#define DR_OUTPUT_COLUMNS                                                     \
	"o.id, o.idx, o.kind, o.source_url, o.url, o.storage_key,"           \
	" o.content_type, o.bytes, o.sha256, o.width, o.height, o.format,"   \
	" o.blurhash, o.dominant_color, o.phash, o.text"
#define DR_RENDITION_COLUMNS                                                  \
	"r.output_id, r.name, r.url, r.storage_key, r.content_type,"         \
	" r.width, r.height, r.bytes"

/* Append output row `i` of `outs` (DR_OUTPUT_COLUMNS) with its renditions
 * from `rends` (DR_RENDITION_COLUMNS, may be NULL) as a JSON object
 * WITHOUT its closing brace, so callers can add members. Each `url` is
 * made from the row's key through `sink` (see above), into a stack
 * buffer and then `b`: nothing is allocated per row. */
dr_status jobs_append_output(dr_buf *b, const struct dr_instance *sink,
			     const dr_db_rows *outs, size_t i,
			     const dr_db_rows *rends) DR_WARN_UNUSED;

/* 1 when `s` is one of the seven job statuses. */
int jobs_status_valid(const char *s);

#endif
