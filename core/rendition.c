/*
 * rendition.c - a rendition stored: key, object metadata, upload, row (see
 * rendition.h).
 *
 * Written once for the pipeline and reprocess, which had each their own
 * copy; the row statement is the single upsert both run, so the two
 * cannot drift apart again.
 */
#include "rendition.h"

#include <stdio.h>
#include <string.h>

#include "digest.h"
#include "objects.h"

void rendition_preset_hash(const dr_preset *p, char out[17])
{
	char text[128], full[DR_SHA256_HEX_LEN + 1];

	snprintf(text, sizeof(text), "%d:%d:%d:%d:%d", p->width, p->height,
		 (int)p->fit, (int)p->format, p->quality);
	digest_sha256_hex(text, strlen(text), full);
	memcpy(out, full, 16);
	out[16] = '\0';
}

void rendition_preset_tag(const dr_preset *p, char out[DR_TAG_LEN + 1])
{
	char text[128], full[DR_SHA256_HEX_LEN + 1];

	/* The settings as rendition_preset_hash() spells them, after the
	 * renderer's version: either changing gives other bytes. */
	snprintf(text, sizeof(text), "r%d:%d:%d:%d:%d:%d", DR_RENDERER_VERSION,
		 p->width, p->height, (int)p->fit, (int)p->format, p->quality);
	digest_sha256_hex(text, strlen(text), full);
	memcpy(out, full, DR_TAG_LEN);
	out[DR_TAG_LEN] = '\0';
}

dr_status rendition_key(const char *sha256, const dr_preset *preset,
			const char *ext, char out[DR_KEY_MAX], dr_error *err)
{
	char tag[DR_TAG_LEN + 1];
	int n;

	rendition_preset_tag(preset, tag);
	n = snprintf(out, DR_KEY_MAX, "%.2s/%s/%s.%s.%s", sha256, sha256,
		     preset->name, tag, ext);
	if (n < 0 || n >= DR_KEY_MAX)
		return dr_fail(err, DR_ERR_TOO_LARGE, "key_too_long",
			       "the storage key of rendition %.100s is too "
			       "long",
			       preset->name);
	return DR_OK;
}

int rendition_stored(const dr_store_dest *d, const char *key, uint64_t size)
{
	const dr_sink_ops *ops = d->sink->plugin->desc->sink;
	uint64_t have = 0;
	dr_error err;

	dr_error_clear(&err);
	return ops->stat &&
	       ops->stat(d->sink->state, key, &have, &err) == DR_OK &&
	       have == size;
}

dr_status rendition_put(const dr_store_dest *d, const char *key,
			const dr_source *src, const char *mime,
			const char *sha256_hex, dr_error *err)
{
	const dr_sink_ops *ops = d->sink->plugin->desc->sink;
	const char *names[] = { "job-id", "model" };
	const char *values[] = { d->job_id, d->model };
	dr_object_meta meta;

	memset(&meta, 0, sizeof(meta));
	meta.content_type = mime;
	meta.cache_control = DR_CACHE_CONTROL;
	meta.sha256_hex = sha256_hex;
	meta.n_meta = 2;
	meta.meta_names = names;
	meta.meta_values = values;
	return ops->put(d->sink->state, key, src, &meta, err);
}

dr_status rendition_url(const dr_store_dest *d, const char *key,
			char url[DR_URL_MAX], dr_error *err)
{
	const dr_sink_ops *ops = d->sink->plugin->desc->sink;

	if (ops->public_url(d->sink->state, key, url, DR_URL_MAX) != DR_OK)
		return dr_fail(err, DR_ERR_TOO_LARGE, "url_too_long",
			       "the public URL of %s is too long", key);
	return DR_OK;
}

dr_status rendition_store(const dr_store_dest *d, const char *sha256,
			  const dr_rendition *r, int check,
			  dr_rendition_row *row, dr_error *err)
{
	dr_source src = { r->data, -1, r->len };
	char hex[DR_SHA256_HEX_LEN + 1];
	dr_status st;

	memset(row, 0, sizeof(*row));
	row->preset = r->preset;
	row->mime = r->mime;
	row->width = r->width;
	row->height = r->height;
	row->bytes = r->len;
	rendition_preset_hash(r->preset, row->preset_hash);
	st = rendition_key(sha256, r->preset, r->ext, row->key, err);
	if (st != DR_OK)
		return st;
	/* The key names the content, the settings and the renderer, so an
	 * object under it of the same size holds these very bytes. */
	if (!check || !rendition_stored(d, row->key, src.size)) {
		digest_sha256_hex(r->data, r->len, hex);
		st = rendition_put(d, row->key, &src, row->mime, hex, err);
		if (st != DR_OK)
			return st;
		row->uploaded = 1;
	}
	return rendition_url(d, row->key, row->url, err);
}

dr_status rendition_upsert(dr_db *db, const char *output_id,
			   const dr_rendition_row *row, double grace,
			   dr_error *err)
{
	dr_db_rows *rows = NULL;
	const char *old = NULL;
	dr_status st;

	/* The key the row had, locked until the caller commits, so two
	 * reprocesses of one output count each key they replace once. */
	st = db_query(db,
		      "SELECT storage_key FROM renditions WHERE output_id = ?"
		      " AND name = ? FOR UPDATE",
		      &rows, err,
		      DB_ARGS(DB_STR(output_id), DB_STR(row->preset->name)));
	if (st != DR_OK)
		return st;
	if (rows->n_rows == 1)
		old = db_cell(rows, 0, 0);
	/* No URL: it is made from the key when the row is read (jobs.h),
	 * and a row made again drops the one an older darkroom stored. */
	st = db_exec(db,
		     "INSERT INTO renditions (output_id, name, storage_key,"
		     " url, content_type, width, height, bytes, preset_hash,"
		     " created_at) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?,"
		     " NOW(6))"
		     " ON DUPLICATE KEY UPDATE"
		     " storage_key = VALUES(storage_key), url = NULL,"
		     " content_type = VALUES(content_type),"
		     " width = VALUES(width), height = VALUES(height),"
		     " bytes = VALUES(bytes),"
		     " preset_hash = VALUES(preset_hash),"
		     " created_at = VALUES(created_at)",
		     NULL, err,
		     DB_ARGS(DB_STR(output_id), DB_STR(row->preset->name),
			     DB_STR(row->key), DB_STR(row->mime),
			     DB_INT((int64_t)row->width),
			     DB_INT((int64_t)row->height), DB_U64(row->bytes),
			     DB_STR(row->preset_hash)));
	if (st == DR_OK && (!old || strcmp(old, row->key) != 0))
		st = objects_ref(db, row->key, DR_OBJECT_RENDITION, row->bytes,
				 err);
	if (st == DR_OK && old && strcmp(old, row->key) != 0)
		st = objects_unref(db, old, 1,
				   grace > 0 ? grace : DR_OBJECT_NEVER, NULL,
				   err);
	if (st == DR_OK && old && strcmp(old, row->key) == 0)
		st = objects_unpin(db, row->key, err); /* no new reference */
	db_rows_free(rows);
	return st;
}
