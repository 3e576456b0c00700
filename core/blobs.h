/*
 * blobs.h - the files of a provider's webhook, decoded from its data: URIs
 * (datascan.h), kept in MariaDB (webhook_blobs, 0014_webhook_blobs.sql)
 * from the delivery until the worker has stored them in the sink.
 *
 * Why MariaDB: the FastCGI app has no sink, may run on another host than
 * the workers, and must answer the provider only once the delivery is
 * durable; the database is the one store both sides already share, and a
 * row per MiB keeps every packet small. The life of a file:
 *   1. the app stores it (blobs_store), job_id NULL, after the adapter
 *      found the delivery authentic and before the engine applies it;
 *   2. recording the prediction's outputs claims it for the job
 *      (blobs_claim, in news.c's transaction); the app then drops what no
 *      output claimed (blobs_drop_unclaimed: a duplicate, a stale or
 *      unknown prediction);
 *   3. the worker reads it into a file (blobs_read) like a download, and
 *      its index transaction deletes the job's files (blobs_delete_job);
 *      deleting the job deletes them too (deletion.c), and the worker's
 *      retention pass deletes unclaimed ones an hour old (retention.c:
 *      a crash between 1 and 2).
 * A failed job keeps its files, so that `retry` can store them.
 */
#ifndef DR_BLOBS_H
#define DR_BLOBS_H

#include <stddef.h>
#include <stdint.h>

#include "datascan.h"
#include "db.h"
#include "error.h"

/* Decoded bytes per row. */
#define BLOBS_PIECE (1u << 20)

/* Seconds after which an unclaimed file is deleted by retention, and the
 * rows one of its statements deletes at most. */
#define BLOBS_UNCLAIMED_AGE   3600
#define BLOBS_RETENTION_BATCH 16

/*
 * Decode and insert every item of `s` (taken from `body`) in one
 * transaction; nothing is left behind on failure. *bytes gets the decoded
 * total. A database error as db.h gives it.
 */
dr_status blobs_store(dr_db *db, const unsigned char *body,
		      const dr_datascan *s, uint64_t *bytes,
		      dr_error *err) DR_WARN_UNUSED;

/*
 * In the caller's transaction: decode and insert item `it` of `text` (a
 * body, or one data: URI: datascan_one), claimed by job `job_id` (NULL:
 * unclaimed). *bytes gets its decoded length.
 */
dr_status blobs_insert(dr_db *db, const unsigned char *text,
		       const dr_datascan_item *it, const char *job_id,
		       uint64_t *bytes, dr_error *err) DR_WARN_UNUSED;

/*
 * In the caller's transaction: give the unclaimed file `id` to job
 * `job_id`. *claimed is 1 when it was there, unclaimed or the job's
 * already, 0 when not (a reference the app did not make, or another
 * job's file).
 */
dr_status blobs_claim(dr_db *db, const char *id, const char *job_id,
		      int *claimed, dr_error *err) DR_WARN_UNUSED;

/* Delete the items of `s` that no job claimed. */
dr_status blobs_drop_unclaimed(dr_db *db, const dr_datascan *s,
			       dr_error *err) DR_WARN_UNUSED;

/*
 * Write file `id` of job `job_id` to fd (at its current offset), piece by
 * piece: *size gets its length, ctype (ctsz bytes, may be 0) its media
 * type. DR_ERR_NOT_FOUND (code blob_missing) when the job has no such
 * file, DR_ERR_TOO_LARGE (output_too_large) past `max` bytes, DR_ERR_IO
 * when the write fails.
 */
dr_status blobs_read(dr_db *db, const char *id, const char *job_id,
		     uint64_t max, int fd, uint64_t *size, char *ctype,
		     size_t ctsz, dr_error *err) DR_WARN_UNUSED;

/* In the caller's transaction: delete every file of job `job_id`. */
dr_status blobs_delete_job(dr_db *db, const char *job_id,
			   dr_error *err) DR_WARN_UNUSED;

#endif
