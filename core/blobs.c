/*
 * blobs.c - a webhook's decoded data: URIs in MariaDB (see blobs.h).
 */
#include "blobs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The piece decoded at a time: a whole number of base64 quads. */
#define DECODE_CAP (BLOBS_PIECE / 3 * 3)

/* Insert item `it` of `text`, decoded piece by piece into `piece`. */
static dr_status insert_item(dr_db *db, const unsigned char *text,
			     const dr_datascan_item *it, const char *job_id,
			     unsigned char *piece, uint64_t *bytes,
			     dr_error *err)
{
	size_t pos = it->start, n;
	unsigned seq = 0;
	dr_status st;

	for (;;) {
		datascan_decode(text, it, &pos, piece, DECODE_CAP, &n);
		if (n == 0 && seq > 0)
			return DR_OK;
		st = db_exec(db,
			     "INSERT INTO webhook_blobs (id, seq, job_id,"
			     " media_type, total, data, created_at)"
			     " VALUES (?, ?, ?, ?, ?, ?, NOW(6))",
			     NULL, err,
			     DB_ARGS(DB_STR(it->id), DB_INT(seq),
				     DB_STR(job_id), DB_STR(it->media),
				     DB_U64(it->bytes), DB_BLOB(piece, n)));
		if (st != DR_OK)
			return st;
		*bytes += n;
		seq++;
		if (n == 0)
			return DR_OK;
	}
}

dr_status blobs_insert(dr_db *db, const unsigned char *text,
		       const dr_datascan_item *it, const char *job_id,
		       uint64_t *bytes, dr_error *err)
{
	unsigned char *piece = dr_xmalloc(DECODE_CAP);
	dr_status st;

	*bytes = 0;
	st = insert_item(db, text, it, job_id, piece, bytes, err);
	free(piece);
	return st;
}

dr_status blobs_store(dr_db *db, const unsigned char *body,
		      const dr_datascan *s, uint64_t *bytes, dr_error *err)
{
	unsigned char *piece;
	dr_status st;

	*bytes = 0;
	if (s->n == 0)
		return DR_OK;
	piece = dr_xmalloc(DECODE_CAP);
	st = db_begin(db, err);
	for (size_t i = 0; i < s->n && st == DR_OK; i++)
		st = insert_item(db, body, &s->items[i], NULL, piece, bytes,
				 err);
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK) {
		db_rollback(db);
		*bytes = 0;
	}
	free(piece);
	return st;
}

dr_status blobs_claim(dr_db *db, const char *id, const char *job_id,
		      int *claimed, dr_error *err)
{
	uint64_t n = 0;
	dr_status st;

	*claimed = 0;
	st = db_exec(db,
		     "UPDATE webhook_blobs SET job_id = ?"
		     " WHERE id = ? AND (job_id IS NULL OR job_id = ?)",
		     &n, err,
		     DB_ARGS(DB_STR(job_id), DB_STR(id), DB_STR(job_id)));
	if (st == DR_OK)
		*claimed = n > 0;
	return st;
}

dr_status blobs_drop_unclaimed(dr_db *db, const dr_datascan *s, dr_error *err)
{
	for (size_t i = 0; i < s->n; i++) {
		dr_status st =
			db_exec(db,
				"DELETE FROM webhook_blobs"
				" WHERE id = ? AND job_id IS NULL",
				NULL, err, DB_ARGS(DB_STR(s->items[i].id)));

		if (st != DR_OK)
			return st;
	}
	return DR_OK;
}

static dr_status write_all(int fd, const char *p, size_t n, dr_error *err)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return dr_fail(err, DR_ERR_IO, "write_failed",
				       "cannot write the webhook's file: %s",
				       strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return DR_OK;
}

dr_status blobs_read(dr_db *db, const char *id, const char *job_id,
		     uint64_t max, int fd, uint64_t *size, char *ctype,
		     size_t ctsz, dr_error *err)
{
	uint64_t total = 0, want = 0;
	dr_status st = DR_OK;

	if (ctsz)
		ctype[0] = '\0';
	for (unsigned seq = 0;; seq++) {
		dr_db_rows *rows = NULL;
		unsigned long len;

		/* One piece per query: the worker never holds the file. */
		st = db_query(
			db,
			"SELECT data, media_type, total FROM webhook_blobs"
			" WHERE id = ? AND seq = ? AND job_id = ?",
			&rows, err,
			DB_ARGS(DB_STR(id), DB_INT(seq), DB_STR(job_id)));
		if (st != DR_OK)
			return st;
		if (rows->n_rows == 0) {
			db_rows_free(rows);
			if (seq == 0)
				return dr_fail(err, DR_ERR_NOT_FOUND,
					       "blob_missing",
					       "the file the webhook carried "
					       "is no longer kept (blob %s)",
					       id);
			break;
		}
		len = rows->lens[0];
		if (seq == 0 && ctsz)
			snprintf(ctype, ctsz, "%s", db_cell(rows, 0, 1));
		if (seq == 0)
			want = strtoull(db_cell(rows, 0, 2), NULL, 10);
		if (len > max - total) {
			db_rows_free(rows);
			return dr_fail(err, DR_ERR_TOO_LARGE,
				       "output_too_large",
				       "the webhook's file holds more than "
				       "%" PRIu64 " bytes, the limit",
				       max);
		}
		st = write_all(fd, db_cell(rows, 0, 0), len, err);
		db_rows_free(rows);
		if (st != DR_OK)
			return st;
		total += len;
		if (len == 0 || total >= want)
			break;
	}
	if (total != want)
		/* Rows deleted while this read went on (the job stored or
		 * deleted by another worker): never a shorter file. */
		return dr_fail(err, DR_ERR_NOT_FOUND, "blob_missing",
			       "the file the webhook carried is incomplete "
			       "(%" PRIu64 " of %" PRIu64 " bytes; blob %s)",
			       total, want, id);
	*size = total;
	return DR_OK;
}

dr_status blobs_delete_job(dr_db *db, const char *job_id, dr_error *err)
{
	return db_exec(db, "DELETE FROM webhook_blobs WHERE job_id = ?", NULL,
		       err, DB_ARGS(DB_STR(job_id)));
}
