/*
 * batches.h - batches of jobs (POST /v1/batches, CONTRACT §2 "Batches"):
 * validating a batch request, creating its jobs in one transaction,
 * rendering the batch object, listing and canceling batches.
 *
 * This module owns the SQL of the batches table. The jobs of a batch are
 * ordinary jobs (jobs.h writes them, with their batch_id and item key);
 * their ends complete the batch (jobstate.c, in the transaction of the
 * end, which also opens the batch.completed delivery that callback.c
 * sends with batches_render()'s object). A batch's counts are not stored: they
 * are counted from its jobs (GROUP BY status on the index jobs_batch), so they
 * hold under any number of workers, and a deleted job leaves them.
 *
 * Its place in the module order: above jobs and jobstate, below the entry
 * points (api, cli_main) and the callback step.
 */
#ifndef DR_BATCHES_H
#define DR_BATCHES_H

#include <json-c/json.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "db.h"
#include "error.h"
#include "ids.h"
#include "jobs.h"
#include "plugin.h"

#define DR_MAX_BATCH_ITEMS 1000
#define DR_MAX_BATCH_KEY   255 /* bytes of an item's key */
#define DR_BATCH_FIELD_MAX 96  /* bytes of a field name: items[999].…*/

/* A validated POST /v1/batches body: items[i] is item i merged over the
 * defaults, validated as a job request; keys[i] its key or NULL (pointing
 * into root). */
typedef struct dr_batch_request {
	json_object *root;
	dr_job_request *items;
	const char **keys;
	size_t n_items;
	const char *callback_url; /* batch.completed goes there, or NULL */
} dr_batch_request;

/*
 * Validate a parsed batch body: "items" (1..DR_MAX_BATCH_ITEMS objects),
 * "defaults" (an object, optional), "callback_url" (optional, checked as
 * a job's: jobs_check_callback_url()), nothing else. Each item is merged
 * over the defaults (its members replace the defaults'; "metadata" is
 * merged key by key) and validated by jobs_parse_request(); item keys
 * ("key", 1..DR_MAX_BATCH_KEY bytes of text) must differ. On
 * DR_ERR_INVALID, field (DR_BATCH_FIELD_MAX bytes) names the offending
 * field ("items[3].input", "defaults.model" when the bad value came from
 * the defaults, "items", "body") and err->message starts with it. On
 * success *out holds references the caller releases with
 * batches_request_free(); on failure there is nothing to release.
 */
dr_status batches_parse_request(const dr_config *cfg, const dr_plugins *plugins,
				json_object *root, dr_batch_request *out,
				char field[DR_BATCH_FIELD_MAX],
				dr_error *err) DR_WARN_UNUSED;

void batches_request_free(dr_batch_request *req);

/*
 * Create the batch and all its jobs in one transaction (jobs_insert_batch()).
 * With an idempotency key already used for a batch: the same body gives
 * DR_OK with *replayed = 1 and the batch as it is now; another body
 * DR_ERR_CONFLICT. The batch object (CONTRACT §2) is appended to `out`
 * and its id written to id_out.
 */
dr_status batches_create(dr_db *db, const dr_config *cfg,
			 const dr_batch_request *req,
			 const dr_idempotency *idem,
			 char id_out[DR_JOB_ID_LEN + 1], int *replayed,
			 dr_buf *out, dr_error *err) DR_WARN_UNUSED;

/* Append the batch object of batch `id` to `out`. DR_ERR_NOT_FOUND when
 * there is no such batch. */
dr_status batches_render(dr_db *db, const char *id, dr_buf *out,
			 dr_error *err) DR_WARN_UNUSED;

/*
 * Cancel every job of batch `id` that has not ended, each through the
 * client's cancel of a job (jobstate_client_cancel(): queued jobs end at
 * once, submitted ones are canceled at the provider by a worker). A job
 * that ends meanwhile is left as it ended. *n_canceled (may be NULL)
 * gets how many jobs were asked to cancel. DR_ERR_NOT_FOUND when there is
 * no such batch.
 */
dr_status batches_cancel(dr_db *db, const char *id, size_t *n_canceled,
			 dr_error *err) DR_WARN_UNUSED;

/* Append {"data": [<batch object without "jobs">...], "next_cursor":
 * ...} of the newest `limit` batches older than `cursor` (a batch id, or
 * NULL). */
dr_status batches_list(dr_db *db, int limit, const char *cursor, dr_buf *out,
		       dr_error *err) DR_WARN_UNUSED;

#endif
