/*
 * rendition.h - a rendition stored: its key, its object metadata, its
 * upload to the active sink and its row in `renditions`.
 *
 * The one place that decides how a rendition is kept, for both makers:
 * the persistence pipeline (pipeline.h), which stores a job's renditions
 * as it stores its outputs, and `darkroom reprocess` (reprocess.h), which
 * makes them again for stored outputs. So a rendition made by either has
 * the same key, the same headers and the same row, byte for byte.
 *
 *   key       ab/<sha256 of the original>/<preset>.<tag>.<ext>, the tag
 *             naming the preset's settings and the renderer's version
 *             (rendition_preset_tag), so other settings make another key
 *             and bytes once served under a key never change; rows
 *             written before tags keep their untagged keys
 *             (ab/<sha256>/<preset>.<ext>) until a reprocess replaces them
 *   object    Content-Type of the rendition, Cache-Control immutable
 *             (DR_CACHE_CONTROL), its SHA-256 for integrity headers, and
 *             the job id and model as object metadata (x-amz-meta-*);
 *   row       (output_id, name) upserted with key, type, size, bytes
 *             and the preset's settings hash (rendition_preset_hash);
 *             a row made again gets a new created_at. Its url column is
 *             left NULL: URLs are made from keys when jobs are read
 *             (jobs.h), so a changed public base URL needs no rewrite.
 *             The URL is still made when storing (rendition_url), so a
 *             key whose URL the sink cannot make fails the step as
 *             before.
 *
 * The pipeline stores its originals through rendition_put() too, so every
 * object darkroom writes carries the same headers.
 *
 * Who may call whom: below the pipeline and reprocess, which call it; it
 * calls db, digest, objects (the references of rendition rows), image
 * (the rendition type) and the sink through the plugin host, never a
 * step, the engine or jobstate.
 */
#ifndef DR_RENDITION_H
#define DR_RENDITION_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "error.h"
#include "image.h"
#include "plugin.h"

/* Cache-Control of every stored object. */
#define DR_CACHE_CONTROL "public, max-age=31536000, immutable"

/* Longest storage key and public URL kept (NUL included). */
#define DR_KEY_MAX 600
#define DR_URL_MAX 2300

/* Where objects go and whose they are (all borrowed). */
typedef struct dr_store_dest {
	struct dr_instance *sink; /* the active sink instance */
	const char *job_id;	  /* object metadata job-id */
	const char *model;	  /* object metadata model */
} dr_store_dest;

/* A stored rendition: what its row in `renditions` holds. */
typedef struct dr_rendition_row {
	const dr_preset *preset;
	char key[DR_KEY_MAX];
	char url[DR_URL_MAX]; /* its public URL when stored: checked, not
				 kept in the row */
	const char *mime; /* static string */
	int width, height;
	uint64_t bytes;
	char preset_hash[17];
	int uploaded; /* rendition_store: 1 when a put was made */
} dr_rendition_row;

/* A short stable hash of a preset's settings (16 hex digits and a NUL in
 * `out`), stored with each rendition: renditions made with other settings
 * are made again by `darkroom reprocess` (reprocess.h). */
void rendition_preset_hash(const dr_preset *p, char out[17]);

/* Version of the renderer (image.c): raised when the same settings make
 * other bytes (other libvips options, another encoder setting), so new
 * renditions get new keys. */
#define DR_RENDERER_VERSION 1
/* Hex digits of a rendition key's tag. */
#define DR_TAG_LEN 8

/* The tag of `p` in rendition keys: the first DR_TAG_LEN hex digits of
 * the SHA-256 of DR_RENDERER_VERSION and the preset's settings (size,
 * fit, format, quality; not its name), NUL-terminated in `out`. */
void rendition_preset_tag(const dr_preset *p, char out[DR_TAG_LEN + 1]);

/* The storage key of the rendition of `preset` (its name and tag) with
 * extension `ext` of the original whose SHA-256 is `sha256` (64 hex
 * digits) into `out`: ab/<sha256>/<name>.<tag>.<ext>. DR_ERR_TOO_LARGE
 * (key_too_long) when it does not fit. */
dr_status rendition_key(const char *sha256, const dr_preset *preset,
			const char *ext, char out[DR_KEY_MAX],
			dr_error *err) DR_WARN_UNUSED;

/* Whether the sink of `d` holds `key` with `size` bytes. Keys are
 * content-addressed, so "same key, same size" is taken as "same bytes";
 * a sink without stat, or a stat that fails, answers no. */
int rendition_stored(const dr_store_dest *d, const char *key, uint64_t size);

/*
 * Put `src` under `key` in the sink of `d` with the headers every stored
 * object carries: Content-Type `mime`, DR_CACHE_CONTROL, `sha256_hex` (of
 * the bytes, or NULL) and the job id and model of `d` as metadata. The
 * sink's status and error; src is borrowed.
 */
dr_status rendition_put(const dr_store_dest *d, const char *key,
			const dr_source *src, const char *mime,
			const char *sha256_hex, dr_error *err) DR_WARN_UNUSED;

/* The public URL of `key` in the sink of `d` into `url`; DR_ERR_TOO_LARGE
 * (url_too_long) when it does not fit DR_URL_MAX. */
dr_status rendition_url(const dr_store_dest *d, const char *key,
			char url[DR_URL_MAX], dr_error *err) DR_WARN_UNUSED;

/*
 * Store rendition `r` (made by image.h) of the original whose SHA-256 is
 * `sha256` and fill *row: key, public URL (url_too_long when the sink
 * cannot make it), type, size, bytes, preset and its hash. `check` 1
 * skips the upload when the sink already holds an object of that size
 * under the key, which names content, settings and renderer (the
 * pipeline's shortcut for content stored before;
 * row->uploaded says whether a put was made); 0 always puts. On failure
 * *row is partly filled and nothing else is changed; r stays the
 * caller's.
 */
dr_status rendition_store(const dr_store_dest *d, const char *sha256,
			  const dr_rendition *r, int check,
			  dr_rendition_row *row, dr_error *err) DR_WARN_UNUSED;

/*
 * Insert or update the row of `row` for output `output_id` (its key is
 * output_id and the preset's name), created_at now, url NULL (see the
 * top of this file), and count the change of key in `objects`
 * (objects.h): a new key gets a reference; a key the row had before and
 * no longer has loses one, its removal queued `grace` seconds later when
 * nothing else uses it ([retention] superseded). A few statements: the
 * caller owns the transaction they run in.
 */
dr_status rendition_upsert(dr_db *db, const char *output_id,
			   const dr_rendition_row *row, double grace,
			   dr_error *err) DR_WARN_UNUSED;

#endif
