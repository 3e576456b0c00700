/*
 * files.c - uploaded input files and $file references (see files.h).
 *
 * Files are stored under "files/<id>": one object per upload, never
 * shared, so a file's row owns its object outright and deleting the row
 * deletes the object (no reference count of objects is needed; the
 * references that matter, jobs using the file, are the rows of
 * job_files).
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonutil.h"
#include "log.h"
#include "plugin.h"
#include "sniff.h"

#define KEY_PREFIX "files/"
/* Statuses of a job that has ended: such a job no longer holds a file. */
#define ENDED "('succeeded','failed','canceled')"

/* ------------------------------------------------------------- spooling */

dr_status files_spool_open(dr_upload *up, const char *dir, dr_error *err)
{
	char path[4096];
	int n;

	memset(up, 0, sizeof(*up));
	up->fd = -1;
	if (!dir)
		dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	up->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (up->fd < 0) {
		/* A file system without O_TMPFILE: a named file, unlinked
		 * at once. */
		n = snprintf(path, sizeof(path), "%s/darkroom-upload-XXXXXX",
			     dir);
		if (n < 0 || (size_t)n >= sizeof(path))
			return dr_fail(err, DR_ERR_IO, "spool_failed",
				       "the spool folder's path is too long");
		up->fd = mkostemp(path, O_CLOEXEC);
		if (up->fd < 0)
			return dr_fail(err, DR_ERR_IO, "spool_failed",
				       "cannot make a temporary file in %s: %s",
				       dir, strerror(errno));
		unlink(path);
	}
	up->md = EVP_MD_CTX_new();
	if (!up->md || EVP_DigestInit_ex(up->md, EVP_sha256(), NULL) != 1)
		dr_die("cannot start a SHA-256 hash");
	return DR_OK;
}

dr_status files_spool_write(dr_upload *up, const void *data, size_t n,
			    dr_error *err)
{
	const unsigned char *p = data;
	size_t left = n;

	if (up->head_len < DR_FILE_HEAD) {
		size_t k = DR_FILE_HEAD - up->head_len;

		if (k > n)
			k = n;
		memcpy(up->head + up->head_len, p, k);
		up->head_len += k;
	}
	if (EVP_DigestUpdate(up->md, data, n) != 1)
		dr_die("SHA-256 update failed");
	while (left) {
		ssize_t w = write(up->fd, p, left);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return dr_fail(err, DR_ERR_IO,
				       errno == ENOSPC || errno == EDQUOT
					       ? "spool_full"
					       : "spool_failed",
				       "cannot spool the upload: %s",
				       strerror(errno));
		p += w;
		left -= (size_t)w;
	}
	up->size += n;
	return DR_OK;
}

void files_spool_finish(dr_upload *up)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (EVP_DigestFinal_ex(up->md, md, &len) != 1 || len != DR_SHA256_LEN)
		dr_die("SHA-256 final failed");
	digest_hex(md, DR_SHA256_LEN, up->sha256);
}

void files_spool_close(dr_upload *up)
{
	if (up->fd >= 0)
		close(up->fd);
	up->fd = -1;
	EVP_MD_CTX_free(up->md);
	up->md = NULL;
}

/* ----------------------------------------------------------------- types */

/* The types darkroom takes, as sniff.c names them. */
static const char *const accepted[] = {
	"image/png",  "image/jpeg",	 "image/webp",
	"image/gif",  "image/avif",	 "image/heic",
	"image/tiff", "application/zip", NULL,
};

/* The accepted type `s` names (its static string), or NULL. */
static const char *accepted_type(const char *s, size_t n)
{
	for (int i = 0; accepted[i]; i++)
		if (strlen(accepted[i]) == n &&
		    strncasecmp(s, accepted[i], n) == 0)
			return accepted[i];
	return NULL;
}

dr_status files_check_type(const dr_upload *up, const char *declared,
			   const char **mime, dr_error *err)
{
	dr_sniff sn;
	const char *type;
	size_t n;

	sniff_head(up->head, up->head_len, &sn);
	type = up->size ? accepted_type(sn.mime, strlen(sn.mime)) : NULL;
	if (!type)
		return dr_fail(err, DR_ERR_UNSUPPORTED,
			       "unsupported_media_type",
			       "the bytes are %s, not a PNG, JPEG, WebP, GIF, "
			       "AVIF, HEIC or TIFF image or a ZIP archive",
			       up->size ? sn.mime : "empty");
	*mime = type;
	if (!declared)
		return DR_OK;
	while (*declared == ' ')
		declared++;
	n = strcspn(declared, "; ");
	if (n == 0 ||
	    (n == 24 &&
	     strncasecmp(declared, "application/octet-stream", 24) == 0))
		return DR_OK;
	if ((n == 9 && strncasecmp(declared, "image/jpg", 9) == 0 &&
	     strcmp(type, "image/jpeg") == 0) ||
	    (n == 28 &&
	     strncasecmp(declared, "application/x-zip-compressed", 28) == 0 &&
	     strcmp(type, "application/zip") == 0))
		return DR_OK;
	if (n == strlen(type) && strncasecmp(declared, type, n) == 0)
		return DR_OK;
	return dr_fail(err, DR_ERR_INVALID, "content_type_mismatch",
		       "Content-Type says %.*s but the bytes are %s",
		       (int)(n > 100 ? 100 : n), declared, type);
}

/* -------------------------------------------------------------- objects */

static const dr_sink_ops *sink_ops(const struct dr_instance *sink)
{
	return sink ? sink->plugin->desc->sink : NULL;
}

/* The file's row: content_type, bytes, sha256, filename, storage_key,
 * created_at, expires_at, and the count of jobs not ended using it. */
#define FILE_COLUMNS                                                           \
	"f.id, f.content_type, f.bytes, f.sha256, f.filename,"                 \
	" f.storage_key, f.created_at, f.expires_at,"                          \
	" (SELECT COUNT(*) FROM job_files jf JOIN jobs j ON j.id = jf.job_id"  \
	"  WHERE jf.file_id = f.id AND j.status NOT IN " ENDED ")"

static dr_status render_row(const dr_config *cfg, const dr_db_rows *r, size_t i,
			    dr_buf *b)
{
	dr_status st;

	st = dr_buf_puts(b, "{\"id\":");
	if (st == DR_OK)
		st = dr_buf_json_string(b, db_cell(r, i, 0));
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"content_type\":");
	if (st == DR_OK)
		st = dr_buf_json_string(b, db_cell(r, i, 1));
	if (st == DR_OK)
		st = dr_buf_printf(b,
				   ",\"bytes\":%s,\"sha256\":\"%s\","
				   "\"filename\":",
				   db_cell(r, i, 2), db_cell(r, i, 3));
	if (st == DR_OK)
		st = db_cell(r, i, 4) ? dr_buf_json_string(b, db_cell(r, i, 4))
				      : dr_buf_puts(b, "null");
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"key\":");
	if (st == DR_OK)
		st = dr_buf_json_string(b, db_cell(r, i, 5));
	if (st == DR_OK)
		st = dr_buf_printf(b, ",\"url\":\"%s/v1/files/%s/content\"",
				   cfg->server.public_url, db_cell(r, i, 0));
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"created_at\":");
	if (st == DR_OK)
		st = json_append_time(b, db_cell(r, i, 6));
	if (st == DR_OK)
		st = dr_buf_puts(b, ",\"expires_at\":");
	if (st == DR_OK)
		st = json_append_time(b, db_cell(r, i, 7));
	if (st == DR_OK)
		st = dr_buf_printf(b, ",\"jobs_running\":%s}",
				   db_cell(r, i, 8) ? db_cell(r, i, 8) : "0");
	return st;
}

dr_status files_create(dr_db *db, const dr_config *cfg,
		       const struct dr_instance *sink, const dr_upload *up,
		       const char *mime, const char *filename, dr_buf *out,
		       char id_out[DR_JOB_ID_LEN + 1], dr_error *err)
{
	const dr_sink_ops *ops = sink_ops(sink);
	char id[DR_JOB_ID_LEN + 1], key[64];
	dr_source src;
	dr_object_meta meta;
	dr_db_rows *rows = NULL;
	dr_status st;

	if (!ops)
		return dr_fail(err, DR_ERR_CONFIG, "no_sink",
			       "no sink is configured to store files in");
	if (ids_new_file_id(id) != DR_OK)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "no random bytes for a file id");
	snprintf(key, sizeof(key), KEY_PREFIX "%s", id);
	memset(&src, 0, sizeof(src));
	src.fd = up->fd;
	src.size = up->size;
	memset(&meta, 0, sizeof(meta));
	meta.content_type = mime;
	meta.cache_control = "private, no-store";
	meta.sha256_hex = up->sha256;
	st = ops->put(sink->state, key, &src, &meta, err);
	if (st != DR_OK)
		return st;
	st = db_exec(db,
		     "INSERT INTO files (id, content_type, bytes, sha256,"
		     " filename, storage_key, created_at, expires_at)"
		     " VALUES (?, ?, ?, ?, ?, ?, NOW(6),"
		     " IF(? > 0, NOW(6) + INTERVAL ? SECOND, NULL))",
		     NULL, err,
		     DB_ARGS(DB_STR(id), DB_STR(mime), DB_U64(up->size),
			     DB_STR(up->sha256), DB_STR(filename), DB_STR(key),
			     DB_INT((int64_t)cfg->files.ttl),
			     DB_INT((int64_t)cfg->files.ttl)));
	if (st != DR_OK) {
		dr_error rerr;

		if (ops->remove(sink->state, key, &rerr) != DR_OK)
			dr_log(DR_LOG_WARNING,
			       "event=file.orphan key=%s code=%s", key,
			       rerr.code);
		return st;
	}
	memcpy(id_out, id, sizeof(id));
	st = db_query(db, "SELECT " FILE_COLUMNS " FROM files f WHERE f.id = ?",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK && rows->n_rows != 1)
		st = dr_fail(err, DR_ERR_INTERNAL, "internal",
			     "the new file was not found");
	if (st == DR_OK && render_row(cfg, rows, 0, out) != DR_OK)
		st = dr_fail(err, DR_ERR_TOO_LARGE, "too_large",
			     "the file does not fit in the answer");
	db_rows_free(rows);
	return st;
}

dr_status files_render(dr_db *db, const dr_config *cfg, const char *id,
		       dr_buf *out, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	if (!ids_is_file_id(id))
		return dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			       "no such file");
	st = db_query(db, "SELECT " FILE_COLUMNS " FROM files f WHERE f.id = ?",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK && rows->n_rows == 0)
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found", "no file %s",
			     id);
	if (st == DR_OK && render_row(cfg, rows, 0, out) != DR_OK)
		st = dr_fail(err, DR_ERR_TOO_LARGE, "too_large",
			     "the file does not fit in the answer");
	db_rows_free(rows);
	return st;
}

dr_status files_list(dr_db *db, const dr_config *cfg, int limit,
		     const char *cursor, dr_buf *out, dr_error *err)
{
	dr_db_rows *rows = NULL;
	size_t n;
	dr_status st;

	if (limit < 1 || limit > DR_FILES_PAGE_MAX)
		return dr_fail(err, DR_ERR_INVALID, "invalid_parameter",
			       "limit: expected 1 to %d", DR_FILES_PAGE_MAX);
	if (cursor && !ids_is_file_id(cursor))
		return dr_fail(err, DR_ERR_INVALID, "invalid_parameter",
			       "cursor: not a cursor from a previous page");
	/* Ids are ULIDs: their order is their creation order. */
	if (cursor)
		st = db_query(db,
			      "SELECT " FILE_COLUMNS " FROM files f"
			      " WHERE f.id < ? ORDER BY f.id DESC LIMIT ?",
			      &rows, err,
			      DB_ARGS(DB_STR(cursor), DB_INT(limit + 1)));
	else
		st = db_query(db,
			      "SELECT " FILE_COLUMNS " FROM files f"
			      " ORDER BY f.id DESC LIMIT ?",
			      &rows, err, DB_ARGS(DB_INT(limit + 1)));
	if (st != DR_OK)
		return st;
	n = rows->n_rows > (size_t)limit ? (size_t)limit : rows->n_rows;
	st = dr_buf_puts(out, "{\"data\":[");
	for (size_t i = 0; st == DR_OK && i < n; i++) {
		if (i)
			st = dr_buf_puts(out, ",");
		if (st == DR_OK)
			st = render_row(cfg, rows, i, out);
	}
	if (st == DR_OK)
		st = dr_buf_puts(out, "],\"next_cursor\":");
	if (st == DR_OK)
		st = rows->n_rows > n ? dr_buf_printf(out, "\"%s\"}",
						      db_cell(rows, n - 1, 0))
				      : dr_buf_puts(out, "null}");
	if (st != DR_OK)
		st = dr_fail(err, DR_ERR_TOO_LARGE, "too_large",
			     "the page does not fit in the answer");
	db_rows_free(rows);
	return st;
}

/* Delete the row of `id` (locked first) unless a job not ended uses it,
 * and its links; the storage key into key. `expired_only`: only when
 * past its expires_at. *gone = 0 when it was kept (busy or not due). */
static dr_status delete_row(dr_db *db, const char *id, int expired_only,
			    char key[256], int *gone, dr_error *err)
{
	dr_db_rows *rows = NULL, *busy = NULL;
	dr_status st;

	*gone = 0;
	st = db_begin(db, err);
	if (st != DR_OK)
		return st;
	st = db_query(db,
		      expired_only
			      ? "SELECT storage_key FROM files WHERE id = ?"
				" AND expires_at < NOW(6) FOR UPDATE"
			      : "SELECT storage_key FROM files WHERE id = ?"
				" FOR UPDATE",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK && rows->n_rows == 0 && !expired_only)
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found", "no file %s",
			     id);
	if (st != DR_OK || rows->n_rows == 0)
		goto rollback;
	snprintf(key, 256, "%s", db_cell(rows, 0, 0));
	st = db_query(db,
		      "SELECT j.id FROM job_files jf JOIN jobs j"
		      " ON j.id = jf.job_id WHERE jf.file_id = ?"
		      " AND j.status NOT IN " ENDED " LIMIT 1",
		      &busy, err, DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		goto rollback;
	if (busy->n_rows) {
		if (!expired_only)
			st = dr_fail(err, DR_ERR_CONFLICT, "file_in_use",
				     "file %s is used by job %s, which has "
				     "not ended",
				     id, db_cell(busy, 0, 0));
		goto rollback;
	}
	st = db_exec(db, "DELETE FROM job_files WHERE file_id = ?", NULL, err,
		     DB_ARGS(DB_STR(id)));
	if (st == DR_OK)
		st = db_exec(db, "DELETE FROM files WHERE id = ?", NULL, err,
			     DB_ARGS(DB_STR(id)));
	if (st != DR_OK)
		goto rollback;
	st = db_commit(db, err);
	if (st != DR_OK) {
		db_rollback(db);
		goto out;
	}
	*gone = 1;
	goto out;
rollback:
	db_rollback(db);
out:
	db_rows_free(rows);
	db_rows_free(busy);
	return st;
}

/* Remove the object of a deleted file; a failure is logged only. */
static void remove_object(const struct dr_instance *sink, const char *id,
			  const char *key)
{
	const dr_sink_ops *ops = sink_ops(sink);
	dr_error rerr;

	dr_error_clear(&rerr);
	if (!ops || ops->remove(sink->state, key, &rerr) != DR_OK)
		dr_log(DR_LOG_WARNING,
		       "event=file.remove_failed file=%s key=%s code=%s", id,
		       key, ops ? rerr.code : "no_sink");
}

dr_status files_delete(dr_db *db, const struct dr_instance *sink,
		       const char *id, dr_error *err)
{
	char key[256];
	int gone;
	dr_status st;

	if (!ids_is_file_id(id))
		return dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			       "no such file");
	st = delete_row(db, id, 0, key, &gone, err);
	if (st == DR_OK && gone) {
		remove_object(sink, id, key);
		dr_log(DR_LOG_INFO, "event=file.deleted file=%s", id);
	}
	return st;
}

/* Files past their expiry that no job not ended uses. */
#define EXPIRED                                                                \
	" FROM files f WHERE f.expires_at < NOW(6)"                            \
	" AND NOT EXISTS (SELECT 1 FROM job_files jf JOIN jobs j"              \
	" ON j.id = jf.job_id WHERE jf.file_id = f.id"                         \
	" AND j.status NOT IN " ENDED ")"

dr_status files_count_expired(dr_db *db, uint64_t *n, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	*n = 0;
	st = db_query(db, "SELECT COUNT(*)" EXPIRED, &rows, err, DB_NOARGS);
	if (st == DR_OK && rows->n_rows == 1 && db_cell(rows, 0, 0))
		*n = strtoull(db_cell(rows, 0, 0), NULL, 10);
	db_rows_free(rows);
	return st;
}

dr_status files_expire(dr_db *db, const struct dr_instance *sink, int limit,
		       size_t *n_deleted, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	*n_deleted = 0;
	st = db_query(db,
		      "SELECT f.id" EXPIRED " ORDER BY f.expires_at LIMIT ?",
		      &rows, err, DB_ARGS(DB_INT(limit)));
	for (size_t i = 0; st == DR_OK && i < rows->n_rows; i++) {
		const char *id = db_cell(rows, i, 0);
		char key[256];
		int gone;

		st = delete_row(db, id, 1, key, &gone, err);
		if (st == DR_OK && gone) {
			remove_object(sink, id, key);
			dr_log(DR_LOG_INFO, "event=file.expired file=%s", id);
			(*n_deleted)++;
		}
	}
	db_rows_free(rows);
	return st;
}

/* ----------------------------------------------------------- references */

/* A walk over an input's {"$file": id} references. */
typedef struct ref_walk {
	char path[DR_FILE_FIELD_MAX]; /* where the walk is */
	size_t len;
	/* Called for each well-formed reference; returns a value to put
	 * in its place (resolve), or NULL to leave it. */
	dr_status (*visit)(struct ref_walk *w, const char *id,
			   json_object **replace, dr_error *err);
	dr_db *db;
	const dr_config *cfg;
	const struct dr_instance *sink;
	const char *job_id;
	double at; /* resolve: when the URLs' validity starts */
	const char *ids[DR_MAX_FILE_REFS]; /* distinct ids seen */
	size_t n_ids;
} ref_walk;

/* Append ".key" or "[i]" to the walk's path; the length before. */
static size_t path_push(ref_walk *w, const char *key, size_t idx)
{
	size_t before = w->len;
	int n;

	if (key)
		n = snprintf(w->path + w->len, sizeof(w->path) - w->len, ".%s",
			     key);
	else
		n = snprintf(w->path + w->len, sizeof(w->path) - w->len,
			     "[%zu]", idx);
	if (n > 0)
		w->len += (size_t)n < sizeof(w->path) - w->len
				  ? (size_t)n
				  : sizeof(w->path) - w->len - 1;
	return before;
}

static void path_pop(ref_walk *w, size_t before)
{
	w->len = before;
	w->path[before] = '\0';
}

/* The reference `v` is, checked: its id, or NULL when `v` is no
 * reference (no "$file" member). DR_ERR_INVALID for a malformed one. */
static dr_status ref_of(ref_walk *w, json_object *v, const char **id,
			dr_error *err)
{
	json_object *f;

	*id = NULL;
	if (!json_object_is_type(v, json_type_object) ||
	    !json_object_object_get_ex(v, "$file", &f))
		return DR_OK;
	if (json_object_object_length(v) != 1 ||
	    !json_object_is_type(f, json_type_string) ||
	    !ids_is_file_id(json_object_get_string(f)))
		return dr_fail(err, DR_ERR_INVALID, "invalid_field",
			       "%s: a file reference is {\"$file\": "
			       "\"f_...\"}, a file id and nothing else",
			       w->path);
	*id = json_object_get_string(f);
	return DR_OK;
}

/* Note `id` among the walk's distinct ids; DR_ERR_INVALID past the
 * limit. *fresh = 1 when it was not there yet. */
static dr_status note_id(ref_walk *w, const char *id, int *fresh, dr_error *err)
{
	*fresh = 0;
	for (size_t i = 0; i < w->n_ids; i++)
		if (strcmp(w->ids[i], id) == 0)
			return DR_OK;
	if (w->n_ids == DR_MAX_FILE_REFS)
		return dr_fail(err, DR_ERR_INVALID, "invalid_field",
			       "%s: an input references at most %d files",
			       w->path, DR_MAX_FILE_REFS);
	w->ids[w->n_ids++] = id;
	*fresh = 1;
	return DR_OK;
}

static dr_status walk(ref_walk *w, json_object *v, dr_error *err);

/* Handle member or element `child` of a container; *replace set when
 * the visit gave one. */
static dr_status walk_child(ref_walk *w, json_object *child,
			    json_object **replace, dr_error *err)
{
	const char *id;
	dr_status st;

	*replace = NULL;
	st = ref_of(w, child, &id, err);
	if (st != DR_OK)
		return st;
	if (!id)
		return walk(w, child, err);
	return w->visit(w, id, replace, err);
}

static dr_status walk(ref_walk *w, json_object *v, dr_error *err)
{
	json_object *rep;
	dr_status st = DR_OK;

	if (json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, key, child)
		{
			size_t before = path_push(w, key, 0);

			st = walk_child(w, child, &rep, err);
			if (st == DR_OK && rep)
				/* replaces the value in place: the
				 * iteration goes on over the same entries */
				json_object_object_add(v, key, rep);
			path_pop(w, before);
			if (st != DR_OK)
				return st;
		}
	} else if (json_object_is_type(v, json_type_array)) {
		size_t n = json_object_array_length(v);

		for (size_t i = 0; i < n; i++) {
			size_t before = path_push(w, NULL, i);

			st = walk_child(w, json_object_array_get_idx(v, i),
					&rep, err);
			if (st == DR_OK && rep)
				json_object_array_put_idx(v, i, rep);
			path_pop(w, before);
			if (st != DR_OK)
				return st;
		}
	}
	return st;
}

static void walk_init(ref_walk *w, const char *prefix)
{
	memset(w, 0, sizeof(*w));
	w->len = (size_t)snprintf(w->path, sizeof(w->path), "%s", prefix);
	if (w->len >= sizeof(w->path))
		w->len = sizeof(w->path) - 1;
}

/* Collect the distinct ids only. */
static dr_status visit_collect(ref_walk *w, const char *id,
			       json_object **replace, dr_error *err)
{
	int fresh;

	(void)replace;
	return note_id(w, id, &fresh, err);
}

/* Intake: the file must exist. */
static dr_status visit_check(ref_walk *w, const char *id, json_object **replace,
			     dr_error *err)
{
	dr_db_rows *rows = NULL;
	int fresh;
	dr_status st;

	(void)replace;
	st = note_id(w, id, &fresh, err);
	if (st != DR_OK || !fresh)
		return st;
	st = db_query(w->db, "SELECT 1 FROM files WHERE id = ?", &rows, err,
		      DB_ARGS(DB_STR(id)));
	if (st == DR_OK && rows->n_rows == 0)
		st = dr_fail(err, DR_ERR_INVALID, "unknown_file",
			     "%s: no file %s (upload it with POST /v1/files)",
			     w->path, id);
	db_rows_free(rows);
	return st;
}

dr_status files_check_input(dr_db *db, json_object *input, const char *prefix,
			    char field[DR_FILE_FIELD_MAX], dr_error *err)
{
	ref_walk w;
	dr_status st;

	walk_init(&w, prefix);
	w.db = db;
	w.visit = visit_check;
	/* A job's whole input is an object of the model's fields, never a
	 * reference itself. */
	if (json_object_is_type(input, json_type_object) &&
	    json_object_object_get_ex(input, "$file", NULL)) {
		snprintf(field, DR_FILE_FIELD_MAX, "%s", prefix);
		return dr_fail(err, DR_ERR_INVALID, "invalid_field",
			       "%s: the input itself cannot be a file "
			       "reference; name it in a field",
			       prefix);
	}
	st = walk(&w, input, err);
	if (st == DR_ERR_INVALID) {
		/* err->message starts with the path, up to ':' */
		size_t n = strcspn(err->message, ":");

		snprintf(field, DR_FILE_FIELD_MAX, "%.*s", (int)n,
			 err->message);
	}
	return st;
}

dr_status files_link_job(dr_db *db, const char *job_id, json_object *input,
			 dr_error *err)
{
	ref_walk w;
	dr_status st;

	walk_init(&w, "input");
	w.visit = visit_collect;
	st = walk(&w, input, err);
	for (size_t i = 0; st == DR_OK && i < w.n_ids; i++) {
		dr_db_rows *rows = NULL;

		/* The shared lock makes a delete of the file wait for this
		 * transaction, and then see the link. */
		st = db_query(db,
			      "SELECT id FROM files WHERE id = ?"
			      " LOCK IN SHARE MODE",
			      &rows, err, DB_ARGS(DB_STR(w.ids[i])));
		if (st == DR_OK && rows->n_rows == 0)
			st = dr_fail(err, DR_ERR_INVALID, "unknown_file",
				     "input: file %s was deleted", w.ids[i]);
		db_rows_free(rows);
		if (st == DR_OK)
			st = db_exec(db,
				     "INSERT IGNORE INTO job_files (job_id,"
				     " file_id) VALUES (?, ?)",
				     NULL, err,
				     DB_ARGS(DB_STR(job_id), DB_STR(w.ids[i])));
	}
	return st;
}

/* ---------------------------------------------------------- signed URLs */

/* The key signing content URLs: url_secret, or one derived from the
 * first API key (so every process of one configuration agrees). */
static int url_key(const dr_config *cfg, unsigned char key[32])
{
	static const char label[] = "darkroom files url key";
	unsigned int len = 0;

	if (cfg->files.url_secret) {
		digest_sha256(cfg->files.url_secret,
			      strlen(cfg->files.url_secret), key);
		return 0;
	}
	if (cfg->server.n_api_keys == 0)
		return -1;
	if (!HMAC(EVP_sha256(), cfg->server.api_keys[0],
		  (int)strlen(cfg->server.api_keys[0]),
		  (const unsigned char *)label, sizeof(label) - 1, key, &len) ||
	    len != 32)
		return -1;
	return 0;
}

int files_url_sig(const dr_config *cfg, const char *id, int64_t exp,
		  char sig[DR_SHA256_HEX_LEN + 1])
{
	unsigned char key[32], mac[32];
	unsigned int len = 0;
	char msg[64];
	int n;

	if (url_key(cfg, key) != 0)
		return -1;
	n = snprintf(msg, sizeof(msg), "%s\n%" PRId64, id, exp);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return -1;
	if (!HMAC(EVP_sha256(), key, sizeof(key), (const unsigned char *)msg,
		  (size_t)n, mac, &len) ||
	    len != 32)
		return -1;
	digest_hex(mac, 32, sig);
	OPENSSL_cleanse(key, sizeof(key));
	return 0;
}

int files_url_check(const dr_config *cfg, const char *id, const char *exp,
		    const char *sig, double now)
{
	char want[DR_SHA256_HEX_LEN + 1];
	char *end;
	long long e;

	if (!id || !exp || !sig || !*exp || strlen(exp) > 18 ||
	    strspn(exp, "0123456789") != strlen(exp) ||
	    strlen(sig) != DR_SHA256_HEX_LEN)
		return 0;
	errno = 0;
	e = strtoll(exp, &end, 10);
	if (errno || *end || (double)e < now)
		return 0;
	if (files_url_sig(cfg, id, (int64_t)e, want) != 0)
		return 0;
	return CRYPTO_memcmp(want, sig, DR_SHA256_HEX_LEN) == 0;
}

/* ----------------------------------------------------------- resolution */

/* Submit: the URL of the file. */
static dr_status visit_resolve(ref_walk *w, const char *id,
			       json_object **replace, dr_error *err)
{
	const dr_sink_ops *ops = sink_ops(w->sink);
	dr_db_rows *rows = NULL;
	char url[DR_FILE_URL_MAX];
	dr_status st;

	st = db_query(w->db, "SELECT storage_key FROM files WHERE id = ?",
		      &rows, err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK && rows->n_rows == 0) {
		st = dr_fail(err, DR_ERR_NOT_FOUND, "file_not_found",
			     "%s: file %s was deleted", w->path, id);
		err->retryable = 0;
	}
	if (st == DR_OK && ops && ops->presign) {
		st = ops->presign(w->sink->state, db_cell(rows, 0, 0), w->at,
				  w->cfg->files.url_ttl, url, sizeof(url), err);
		if (st != DR_ERR_UNSUPPORTED)
			goto done;
		/* A sink that cannot presign this object (s3 with SigV2):
		 * darkroom's own signed URL instead. */
		dr_error_clear(err);
		st = DR_OK;
	}
	if (st == DR_OK) {
		int64_t exp = (int64_t)w->at + (int64_t)w->cfg->files.url_ttl;
		char sig[DR_SHA256_HEX_LEN + 1];

		if (files_url_sig(w->cfg, id, exp, sig) != 0)
			st = dr_fail(err, DR_ERR_CONFIG, "no_url_key",
				     "no key to sign file URLs with: set "
				     "[files] url_secret or an API key");
		else
			snprintf(url, sizeof(url),
				 "%s/v1/files/%s/content?exp=%" PRId64
				 "&sig=%s",
				 w->cfg->server.public_url, id, exp, sig);
	}
done:
	db_rows_free(rows);
	if (st == DR_OK)
		*replace = json_object_new_string(url);
	return st;
}

dr_status files_resolve_input(dr_db *db, const dr_config *cfg,
			      const struct dr_instance *sink,
			      const char *input_json, double at, char **out,
			      dr_error *err)
{
	json_object *root;
	ref_walk w;
	dr_status st;

	*out = NULL;
	/* Most inputs have no reference: skip the parse. */
	if (!input_json || !strstr(input_json, "\"$file\""))
		return DR_OK;
	root = json_tokener_parse(input_json);
	if (!root)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "a stored input is not JSON");
	walk_init(&w, "input");
	w.db = db;
	w.cfg = cfg;
	w.sink = sink;
	w.at = at;
	w.visit = visit_resolve;
	st = walk(&w, root, err);
	if (st == DR_ERR_UNAVAILABLE)
		err->retryable = 1; /* nothing was sent: try again later */
	if (st == DR_OK)
		*out = dr_xstrdup(json_object_to_json_string_ext(
			root, JSON_C_TO_STRING_PLAIN |
				      JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
	return st;
}

/* -------------------------------------------------------------- content */

dr_status files_content(dr_db *db, const struct dr_instance *sink,
			const char *id, int *fd, uint64_t *size, dr_buf *body,
			const char **content_type, dr_error *err)
{
	const dr_sink_ops *ops = sink_ops(sink);
	dr_db_rows *rows = NULL;
	const char *ct;
	dr_status st;

	*fd = -1;
	*size = 0;
	if (!ids_is_file_id(id))
		return dr_fail(err, DR_ERR_NOT_FOUND, "not_found",
			       "no such file");
	st = db_query(
		db, "SELECT storage_key, content_type FROM files WHERE id = ?",
		&rows, err, DB_ARGS(DB_STR(id)));
	if (st == DR_OK && rows->n_rows == 0)
		st = dr_fail(err, DR_ERR_NOT_FOUND, "not_found", "no file %s",
			     id);
	if (st == DR_OK && !ops)
		st = dr_fail(err, DR_ERR_CONFIG, "no_sink",
			     "no sink is configured");
	if (st != DR_OK)
		goto out;
	ct = db_cell(rows, 0, 1);
	*content_type = accepted_type(ct, strlen(ct));
	if (!*content_type)
		*content_type = "application/octet-stream";
	if (ops->open) {
		st = ops->open(sink->state, db_cell(rows, 0, 0), fd, size, err);
	} else {
		void *data = NULL;
		size_t len = 0;

		st = ops->get(sink->state, db_cell(rows, 0, 0),
			      DR_FILE_SERVE_MAX, &data, &len, err);
		if (st == DR_OK && dr_buf_append(body, data, len) != DR_OK)
			st = dr_fail(err, DR_ERR_TOO_LARGE, "too_large",
				     "the file is too large to serve here");
		free(data);
	}
out:
	db_rows_free(rows);
	return st;
}
