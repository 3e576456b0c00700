/*
 * files.h - uploaded input files (POST /v1/files, table `files`,
 * migrations/0019_files.sql) and the {"$file": "f_..."} references that
 * job inputs make to them.
 *
 * The life of a file:
 *
 *   spool     the FastCGI app writes the request body to an unlinked
 *             temporary file while hashing it (files_spool_*), so an
 *             upload of any size costs a fixed amount of memory;
 *   create    its type is read from its first bytes (sniff.h) and
 *             checked against the declared one (files_check_type), then
 *             it is stored through the active sink under the private key
 *             "files/<id>" and its row written (files_create);
 *   use       a job or batch item whose input holds {"$file": id}
 *             anywhere is refused at intake when the file is unknown
 *             (files_check_input, 422 naming the field); the transaction
 *             that creates the job links it (files_link_job, table
 *             job_files). When the job is submitted, the engine hands the
 *             provider the input with each reference replaced by a URL it
 *             can fetch (files_resolve_input): the sink's presigned URL
 *             (s3), or a signed URL of darkroom's own,
 *             {public_url}/v1/files/{id}/content?exp=...&sig=... (fs),
 *             valid for [files] url_ttl. The job's stored input keeps the
 *             reference: a presigned URL is a secret;
 *   delete    DELETE /v1/files/{id} (files_delete), refused with 409
 *             while a job that has not ended uses it; or expiry: a file
 *             past [files] ttl that no such job uses is deleted by the
 *             worker's retention pass and `darkroom prune`
 *             (files_expire). The row goes first, then the object.
 *
 * Who may call whom: uses db, config, ids, digest, sniff and the sink
 * through the plugin host; called by api (the endpoints, intake checks),
 * jobs and batches (links in the create transaction), engine (resolution
 * at submit), retention and cli_main. Nothing here knows a worker or a
 * step.
 */
#ifndef DR_FILES_H
#define DR_FILES_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "db.h"
#include "digest.h"
#include "error.h"
#include "ids.h"

struct dr_instance;

#define DR_FILE_HEAD	  64	      /* bytes kept to sniff the type */
#define DR_FILE_FIELD_MAX 160	      /* a field name in a 422 */
#define DR_FILE_URL_MAX	  4096	      /* a URL handed to a provider */
#define DR_MAX_FILE_REFS  64	      /* $file references in one input */
#define DR_FILE_NAME_MAX  255	      /* bytes of ?filename= */
#define DR_FILES_PAGE_MAX 100	      /* files in one page of a list */
#define DR_FILE_SERVE_MAX (16u << 20) /* served from memory at most */

/* A request body spooled to a temporary file. */
typedef struct dr_upload {
	int fd;	       /* unlinked temporary file, or -1 */
	uint64_t size; /* bytes written */
	unsigned char head[DR_FILE_HEAD];
	size_t head_len;
	char sha256[DR_SHA256_HEX_LEN + 1]; /* after files_spool_finish() */
	void *md;			    /* the running hash (EVP_MD_CTX) */
} dr_upload;

/*
 * Open an unlinked temporary file in `dir` (NULL: $TMPDIR, else /tmp)
 * for an upload and start its hash. DR_OK, or DR_ERR_IO. Release with
 * files_spool_close() whatever happens.
 */
dr_status files_spool_open(dr_upload *up, const char *dir,
			   dr_error *err) DR_WARN_UNUSED;

/* Append n bytes to the spool and the hash. DR_OK or DR_ERR_IO (a full
 * disk: "spool_full"). */
dr_status files_spool_write(dr_upload *up, const void *data, size_t n,
			    dr_error *err) DR_WARN_UNUSED;

/* End the hash: up->sha256 holds the hex digest of every byte written. */
void files_spool_finish(dr_upload *up);

/* Close the file and free the hash; a no-op on a closed spool. */
void files_spool_close(dr_upload *up);

/*
 * What an upload is, from its bytes, and whether darkroom takes it: PNG,
 * JPEG, WebP, GIF, AVIF, HEIC, TIFF images and ZIP archives. `declared`
 * is the request's Content-Type (parameters ignored; NULL, "" and
 * application/octet-stream declare nothing). DR_OK with *mime set (a
 * static string); DR_ERR_UNSUPPORTED (415, code unsupported_media_type)
 * for any other kind of bytes, an empty body included; DR_ERR_INVALID
 * (422, code content_type_mismatch) when the declared type names another
 * type than the bytes are.
 */
dr_status files_check_type(const dr_upload *up, const char *declared,
			   const char **mime, dr_error *err) DR_WARN_UNUSED;

/*
 * Store the spooled upload through `sink` under "files/<new id>" and
 * write its row (expires_at from [files] ttl), then append the file
 * object to `out` (see files_render). `filename` may be NULL. On a failed
 * row the object is removed again. DR_OK, or the sink's or database's
 * error.
 */
dr_status files_create(dr_db *db, const dr_config *cfg,
		       const struct dr_instance *sink, const dr_upload *up,
		       const char *mime, const char *filename, dr_buf *out,
		       char id_out[DR_JOB_ID_LEN + 1],
		       dr_error *err) DR_WARN_UNUSED;

/*
 * Append file `id` as JSON to `out`: {"id", "content_type", "bytes",
 * "sha256", "filename", "key", "url", "created_at", "expires_at",
 * "jobs_running"} where url is {public_url}/v1/files/{id}/content (read
 * with the API key) and jobs_running counts the jobs not yet ended that
 * use it. DR_ERR_NOT_FOUND when there is no such file.
 */
dr_status files_render(dr_db *db, const dr_config *cfg, const char *id,
		       dr_buf *out, dr_error *err) DR_WARN_UNUSED;

/*
 * Append a page of files, newest first, as {"data": [...],
 * "next_cursor": id or null}: at most `limit` (1..DR_FILES_PAGE_MAX)
 * files older than `cursor` (a file id from an earlier page, or NULL).
 */
dr_status files_list(dr_db *db, const dr_config *cfg, int limit,
		     const char *cursor, dr_buf *out,
		     dr_error *err) DR_WARN_UNUSED;

/*
 * Delete file `id`: its row and links, then its object through `sink`
 * (a sink failure after the row is gone is logged; the object is then
 * only dead weight under a key no row names). DR_ERR_NOT_FOUND,
 * DR_ERR_CONFLICT (code file_in_use) while a job that has not ended
 * uses it.
 */
dr_status files_delete(dr_db *db, const struct dr_instance *sink,
		       const char *id, dr_error *err) DR_WARN_UNUSED;

/*
 * Delete up to `limit` files past their expires_at that no job still
 * running uses, as files_delete() does; *n_deleted says how many.
 */
dr_status files_expire(dr_db *db, const struct dr_instance *sink, int limit,
		       size_t *n_deleted, dr_error *err) DR_WARN_UNUSED;

/* How many files files_expire() would delete now (prune --dry-run). */
dr_status files_count_expired(dr_db *db, uint64_t *n,
			      dr_error *err) DR_WARN_UNUSED;

/*
 * Check the {"$file": ...} references in `input` (a job's input object;
 * `prefix` names it in messages, e.g. "input" or "items[2].input"): each
 * must be an object of that one member, a file id of a file that exists.
 * At most DR_MAX_FILE_REFS distinct files. DR_OK (also when there is no
 * reference: no database call then); DR_ERR_INVALID with `field`
 * (DR_FILE_FIELD_MAX bytes) set to the reference's place, e.g.
 * "input.image" or "input.images[1]", and err->message starting with it.
 */
dr_status files_check_input(dr_db *db, json_object *input, const char *prefix,
			    char field[DR_FILE_FIELD_MAX],
			    dr_error *err) DR_WARN_UNUSED;

/*
 * In the caller's transaction: link job `job_id` to every file its
 * `input` references (rows of job_files), reading each file's row with a
 * shared lock so a delete cannot pass in between. No database call when
 * there is no reference. DR_ERR_INVALID (code unknown_file) when a file
 * is gone meanwhile.
 */
dr_status files_link_job(dr_db *db, const char *job_id, json_object *input,
			 dr_error *err) DR_WARN_UNUSED;

/*
 * The input to hand the provider: `input_json` with every {"$file": id}
 * replaced by a URL of the file's bytes, valid for [files] url_ttl from
 * `at` (epoch seconds, whole seconds count: the same `at` makes the same
 * URLs, so the engine signs with an attempt's recorded start and the
 * reconcile of a lost create sees what that attempt sent): the
 * sink's presign(), or darkroom's own signed content URL when the sink
 * has none. *out is NULL when the input has no reference (use
 * input_json as is), else malloc'd JSON text the caller frees. DR_OK;
 * DR_ERR_NOT_FOUND (code file_not_found, not retryable) for a file
 * deleted since intake; DR_ERR_CONFIG when no URL can be signed.
 */
dr_status files_resolve_input(dr_db *db, const dr_config *cfg,
			      const struct dr_instance *sink,
			      const char *input_json, double at, char **out,
			      dr_error *err) DR_WARN_UNUSED;

/*
 * Signed content URLs. files_url_sig() writes the hex HMAC-SHA256 of
 * "<id>\n<exp>" under the files URL key ([files] url_secret, else a key
 * derived from the first API key) into sig; 0, or -1 when there is no
 * key. files_url_check() says whether `sig` (hex) is that signature of
 * (id, exp) and exp (seconds since the epoch, decimal) is not before
 * `now`: 1 or 0, compared in constant time.
 */
int files_url_sig(const dr_config *cfg, const char *id, int64_t exp,
		  char sig[DR_SHA256_HEX_LEN + 1]);
int files_url_check(const dr_config *cfg, const char *id, const char *exp,
		    const char *sig, double now);

/*
 * The bytes of file `id` to serve: *fd and *size from the sink's open()
 * when it has one, else the object read into `body` (at most its
 * limit) with *fd = -1. *content_type points into a static table.
 * DR_ERR_NOT_FOUND for an unknown file or a missing object.
 */
dr_status files_content(dr_db *db, const struct dr_instance *sink,
			const char *id, int *fd, uint64_t *size, dr_buf *body,
			const char **content_type,
			dr_error *err) DR_WARN_UNUSED;

#endif
