/*
 * pipeline.c - download, type, render, upload, index (see pipeline.h).
 *
 * Files go through a temporary file (unlinked at once) and are hashed,
 * typed and uploaded from it, so a large video never sits in memory; images
 * (up to [limits] max_image_bytes) are decoded from it too, libvips reading
 * the file as it goes (image_process_fd): a 50-megapixel PNG costs its
 * decode, not its bytes on top. Renditions are stored as rendition.h says,
 * the same way `darkroom reprocess` stores them. Nothing is written to the
 * database until every output of the job is in the sink (but the pins of
 * the keys about to be stored, objects.h, one short transaction per
 * output); then one transaction indexes them all, counts their
 * references, and moves the job to `succeeded`.
 *
 * A downloaded file is hashed as its bytes arrive (download.h), and a
 * training's weights, which may take longer than the lease to fetch, keep
 * the lease extended while they flow (keep_lease).
 *
 * Round trips are counted, because a worker waiting on one is a worker not
 * rendering: the lease is extended between outputs only once an eighth of
 * it has passed, and a rendition of an original the sink does not hold yet
 * is uploaded without asking the sink first whether it has it (the
 * original's own check answered that: renditions are stored before their
 * original).
 */
#include "pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blobs.h"
#include "digest.h"
#include "download.h"
#include "image.h"
#include "jobs.h"
#include "jobstate.h"
#include "jsonutil.h"
#include "log.h"
#include "metrics.h"
#include "objects.h"
#include "rendition.h"
#include "sniff.h"

/* A first download of an output records when it began only once it has
 * run this long (or failed): quick downloads, nearly all of them, cost no
 * database write, and a worker dying in the middle of a long one leaves
 * at most this much of the output's download_budget uncounted. */
#define BUDGET_MARK_AFTER 1.0
/* Tries of an output after a download abandoned for low speed
 * (download_too_slow): a server that drips once may have had a bad
 * moment; twice in a row, it is not worth a worker's time. */
#define SLOW_RETRIES 1

typedef struct stored_output {
	const char *row_id; /* outputs.id */
	const char *kind;
	char key[DR_KEY_MAX];
	char url[DR_URL_MAX]; /* made to check the sink can (url_too_long
				 otherwise); the row keeps the key only */
	const char *mime;
	uint64_t bytes;
	char sha256[DR_SHA256_HEX_LEN + 1];
	int is_image;
	dr_image_info info;
	dr_rendition_row rends[DR_MAX_RENDITIONS];
	size_t n_rends;
} stored_output;

/* What one persist step works with. */
typedef struct persist_ctx {
	const dr_step_ctx *e;
	dr_claim *c;
	dr_store_dest dest; /* the active sink, the job's id and model */
	dr_download_policy policy;
	char **env_hosts;
	const dr_preset *presets[DR_MAX_RENDITIONS];
	size_t n_presets;
	const char *step; /* the sub-step running, for errors */
	int new_content; /* the sink lacks the output being stored */
	const char *local_root; /* the adapter's declared work folder */
	double selected_at; /* metrics_now() when the rows were read */
	/* The output being downloaded from the network, for the decision
	 * to try it again after a failure (download_again). */
	const char *fetch_row; /* its outputs.id, or NULL */
	double fetch_t0;       /* metrics_now() when its budget began */
	int fetch_slow;        /* its earlier low-speed abandons */
	int fetch_unstamped;   /* its fetch_started_at is still NULL */
	double extended; /* metrics_now() when the lease was last extended */
	/* The SHA-256 of the file fetch() wrote, when it was hashed as it
	 * arrived (a network download); "" when it must be read again. */
	char streamed_sha256[DR_SHA256_HEX_LEN + 1];
} persist_ctx;

/* Columns of the pending outputs query (pipeline_persist). */
enum {
	OUT_ID,
	OUT_IDX,
	OUT_KIND,
	OUT_SOURCE,
	OUT_TEXT,
	OUT_SOURCE_KIND,
	OUT_SPENT_US,
	OUT_SLOW
};

static int temp_file(dr_error *err)
{
	const char *dir = getenv("TMPDIR");
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/darkroom-XXXXXX",
		 dir && *dir ? dir : "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		dr_fail(err, DR_ERR_IO, "io_error",
			"cannot create a temporary file: %s", strerror(errno));
		return -1;
	}
	unlink(path);
	return fd;
}

/* An object a sink writing UPLOAD_RATE_FLOOR bytes a second would take
 * more than half the lease to store is stored under a lease made long
 * enough for that first, at most UPLOAD_LEASE_MAX seconds (a worker that
 * dies meanwhile holds the job that long). */
#define UPLOAD_RATE_FLOOR (256.0 * 1024)
#define UPLOAD_LEASE_MAX  7200.0

/* Store one object in the sink unless an object of that size is there
 * (rendition_stored); `check` 0 skips asking (the caller knows the answer
 * is no, or that storing the same bytes again is cheaper than asking). */
static dr_status put_object(persist_ctx *x, const char *key,
			    const dr_source *src, const char *mime,
			    const char *sha, int check, dr_error *err)
{
	double t0;
	dr_status st;

	if (check && rendition_stored(&x->dest, key, src->size))
		return DR_OK;
	/* The sink reads the file in one call, with no beat: a large one
	 * (trained weights) gets a lease long enough for a slow sink first
	 * (UPLOAD_RATE_FLOOR, at most UPLOAD_LEASE_MAX). */
	if ((double)src->size / UPLOAD_RATE_FLOOR >
	    x->e->cfg->worker.lease / 2) {
		double need = x->e->cfg->worker.lease +
			      (double)src->size / UPLOAD_RATE_FLOOR;

		st = queue_extend(
			x->e->db, x->c,
			need < UPLOAD_LEASE_MAX ? need : UPLOAD_LEASE_MAX, err);
		if (st != DR_OK) {
			dr_log(DR_LOG_WARNING,
			       "event=job.lease_lost job=%s step=upload",
			       x->c->id);
			return st;
		}
		x->extended = metrics_now();
	}
	t0 = metrics_now();
	st = rendition_put(&x->dest, key, src, mime, sha, err);
	metrics_step(x->e->db, "upload", metrics_now() - t0);
	if (st == DR_OK)
		metrics_add(x->e->db, "darkroom_stored_bytes_total", "",
			    (double)src->size);
	return st;
}

/*
 * Record that output x->fetch_row's first download began at x->fetch_t0,
 * on the database clock. Lost (the database being down), the budget
 * starts at the next try instead, which still has its download_timeout.
 */
static void budget_stamp(persist_ctx *x)
{
	dr_error werr;

	x->fetch_unstamped = 0;
	if (db_exec(x->e->db,
		    "UPDATE outputs SET fetch_started_at = NOW(6) - INTERVAL"
		    " ? MICROSECOND WHERE id = ? AND fetch_started_at IS NULL",
		    NULL, &werr,
		    DB_ARGS(DB_INT((int64_t)((metrics_now() - x->fetch_t0) *
					     1e6)),
			    DB_STR(x->fetch_row))) != DR_OK)
		dr_log(DR_LOG_WARNING,
		       "event=job.budget_unrecorded job=%s output=%s code=%s",
		       x->c->id, x->fetch_row, werr.code);
}

/* dr_download_policy.mark: the first download of the output has run for
 * BUDGET_MARK_AFTER seconds. */
static void budget_mark(void *arg, double elapsed)
{
	(void)elapsed;
	budget_stamp(arg);
}

/*
 * Before a network download of output row `i`: its budget ([limits]
 * download_budget) counts from its first download, recorded in the row
 * (budget_stamp, once that download has run BUDGET_MARK_AFTER seconds or
 * failed) so another worker, or a restarted one, goes on counting; this
 * try may take only what is left. DR_OK with *pol cut to that, or
 * download_timeout (not retryable) when nothing is left.
 */
static dr_status budget_start(persist_ctx *x, const dr_db_rows *rows, size_t i,
			      dr_download_policy *pol, dr_error *err)
{
	const char *spent_us = db_cell(rows, i, OUT_SPENT_US);
	const char *slow = db_cell(rows, i, OUT_SLOW);
	double budget = x->e->cfg->limits.download_budget;
	double spent = 0, left;

	x->fetch_row = db_cell(rows, i, OUT_ID);
	x->fetch_slow = slow ? (int)strtol(slow, NULL, 10) : 0;
	x->fetch_unstamped = !spent_us;
	if (spent_us)
		spent = strtod(spent_us, NULL) / 1e6 +
			(metrics_now() - x->selected_at);
	x->fetch_t0 = metrics_now() - spent;
	left = budget - spent;
	if (left <= 0) {
		x->fetch_row = NULL;
		return dr_fail(err, DR_ERR_TIMEOUT, "download_timeout",
			       "output %s: its download budget of %.0f s is "
			       "spent (%.0f s since its first download began)",
			       db_cell(rows, i, OUT_IDX), budget, spent);
	}
	if (pol->total_timeout <= 0 || pol->total_timeout > left)
		pol->total_timeout = left;
	if (x->fetch_unstamped) {
		pol->mark = budget_mark;
		pol->mark_arg = x;
		pol->mark_after = BUDGET_MARK_AFTER;
	}
	return DR_OK;
}

/*
 * Fetch output row `i` into a new temporary file: download its URL or
 * decode its data: URI. A local file is opened in place, and only when the
 * adapter called it one (source_kind 'path') and it lies in the job's own
 * folder under the work folder the adapter declared (download_local):
 * a source is never read from disk because it starts with '/'. Rows
 * recorded before source_kind existed are told apart by their prefix,
 * under the same checks.
 */
static dr_status fetch(persist_ctx *x, const dr_db_rows *rows, size_t i,
		       int *fd_out, uint64_t *size, char *ctype, size_t ctsz,
		       dr_error *err)
{
	const dr_config *cfg = x->e->cfg;
	const char *source = db_cell(rows, i, OUT_SOURCE);
	const char *kind = db_cell(rows, i, OUT_SOURCE_KIND);
	dr_download_policy pol = x->policy;
	dr_status st;
	int fd, data;

	x->streamed_sha256[0] = '\0';
	pol.sha256_hex = x->streamed_sha256;

	if (ctsz)
		ctype[0] = '\0';
	if (kind ? strcmp(kind, "path") == 0 : source[0] == '/')
		return download_local(source, x->local_root, x->c->id,
				      cfg->limits.max_output_bytes, fd_out,
				      size, err);
	if (kind && strcmp(kind, "blob") == 0) {
		/* A file the webhook carried, kept by the app (blobs.h). */
		fd = temp_file(err);
		if (fd < 0)
			return DR_ERR_IO;
		st = blobs_read(x->e->db, source, x->c->id,
				cfg->limits.max_output_bytes, fd, size, ctype,
				ctsz, err);
		if (st != DR_OK) {
			close(fd);
			return st;
		}
		*fd_out = fd;
		return DR_OK;
	}
	data = kind ? strcmp(kind, "data") == 0
		    : strncmp(source, "data:", 5) == 0;
	if (!data) {
		st = budget_start(x, rows, i, &pol, err);
		if (st != DR_OK)
			return st;
	}
	fd = temp_file(err);
	if (fd < 0)
		return DR_ERR_IO;
	if (data) {
		st = download_data_uri(source, cfg->limits.max_output_bytes, fd,
				       size, ctype, ctsz, err);
	} else {
		st = download_url(source, &pol, fd, size, ctype, ctsz, err);
		if (st != DR_OK && x->fetch_unstamped)
			budget_stamp(x); /* the next try counts this one */
	}
	if (st != DR_OK) {
		close(fd);
		return st;
	}
	*fd_out = fd;
	return DR_OK;
}

/*
 * Extend the claim's lease once an eighth of it has passed since the last
 * extension: between outputs, and (dr_download_policy.beat) while the
 * bytes of a long download flow, so a weights file that takes longer than
 * the lease to fetch keeps its worker. 0, or 1 when the lease was lost.
 */
static int keep_lease(persist_ctx *x)
{
	dr_error err;

	if (metrics_now() - x->extended < x->e->cfg->worker.lease / 8)
		return 0;
	dr_error_clear(&err);
	if (queue_extend(x->e->db, x->c, x->e->cfg->worker.lease, &err) !=
	    DR_OK) {
		dr_log(DR_LOG_WARNING, "event=job.lease_lost job=%s step=%s",
		       x->c->id, x->step);
		return 1;
	}
	x->extended = metrics_now();
	return 0;
}

/* dr_download_policy.beat */
static int download_beat(void *arg)
{
	return keep_lease(arg);
}

/* Add `note` to the end of err's message, as far as it fits. */
static void add_note(dr_error *err, const char *note)
{
	size_t n = strlen(err->message);

	snprintf(err->message + n, sizeof(err->message) - n, "%s", note);
}

/*
 * After a network download failed in a way that trying again may fix,
 * with the next try `delay` seconds away: whether to try again. A
 * download abandoned for low speed is tried again SLOW_RETRIES times at
 * most (counted in the row, so a worker restart does not reset it), and
 * no try starts once the output's download budget would be spent by
 * then. When not, err's message says why and the job fails with the
 * download's own code.
 */
static int download_again(persist_ctx *x, dr_error *err, double delay)
{
	double budget = x->e->cfg->limits.download_budget;
	double spent = metrics_now() - x->fetch_t0;
	char note[160];

	if (strcmp(err->code, "download_too_slow") == 0) {
		uint64_t n = 0;
		dr_error werr;

		if (x->fetch_slow + 1 > SLOW_RETRIES) {
			snprintf(note, sizeof(note),
				 " (abandoned for low speed %d times)",
				 x->fetch_slow + 1);
			add_note(err, note);
			return 0;
		}
		if (db_exec(x->e->db,
			    "UPDATE outputs o JOIN jobs j ON j.id = o.job_id"
			    " SET o.slow_fetches = o.slow_fetches + 1"
			    " WHERE o.id = ? AND j.lease_version = ?",
			    &n, &werr,
			    DB_ARGS(DB_STR(x->fetch_row),
				    DB_U64(x->c->lease_version))) != DR_OK)
			dr_log(DR_LOG_WARNING,
			       "event=job.slow_unrecorded job=%s output=%s "
			       "code=%s",
			       x->c->id, x->fetch_row, werr.code);
	}
	if (spent + delay >= budget) {
		snprintf(note, sizeof(note),
			 " (giving up: the next try would start after the "
			 "download budget of %.0f s)",
			 budget);
		add_note(err, note);
		return 0;
	}
	return 1;
}

/*
 * Pin the keys of output `o` about to be stored (objects.h): its own and
 * those of its `n` renditions, in one short transaction before the sink
 * is asked or written, so a removal of the same content queued earlier
 * cannot take an object this step counts as stored.
 */
static dr_status pin(persist_ctx *x, const stored_output *o,
		     const dr_rendition *rends, size_t n, dr_error *err)
{
	char keys[DR_MAX_RENDITIONS][DR_KEY_MAX];
	const char *k[DR_MAX_RENDITIONS + 1], *kinds[DR_MAX_RENDITIONS + 1];
	size_t m = 0;
	dr_status st;

	k[m] = o->key;
	kinds[m++] = DR_OBJECT_ORIGINAL;
	for (size_t i = 0; i < n; i++) {
		st = rendition_key(o->sha256, rends[i].preset, rends[i].ext,
				   keys[i], err);
		if (st != DR_OK)
			return st;
		k[m] = keys[i];
		kinds[m++] = DR_OBJECT_RENDITION;
	}
	return objects_pin(x->e->db, k, kinds, m, DR_OBJECT_PIN_HOLD, err);
}

/* Render the renditions of the image file open as `fd` (decoded from the
 * file as libvips reads it, never held in memory whole) and store them
 * (rendition.h). */
static dr_status render(persist_ctx *x, stored_output *o, int fd, dr_error *err)
{
	const dr_config *cfg = x->e->cfg;
	dr_image_limits lim = {cfg->limits.max_pixels,
			       cfg->limits.max_image_bytes,
			       cfg->limits.max_pages};
	dr_rendition rends[DR_MAX_RENDITIONS];
	double t0 = metrics_now();
	dr_status st;

	x->step = "render";
	memset(rends, 0, sizeof(rends));
	st = image_process_fd(fd, &lim, x->presets, x->n_presets, &o->info,
			      rends, err);
	if (st != DR_OK)
		return st;
	metrics_step(x->e->db, "render", metrics_now() - t0);
	o->is_image = 1;
	x->step = "upload";
	st = pin(x, o, rends, x->n_presets, err);
	/* Asked once, after the pin and before the renditions: they are
	 * stored before the original, so a sink without the original may
	 * lack them too, and one with it had them stored by the step that
	 * stored it. */
	if (st == DR_OK)
		x->new_content = !rendition_stored(&x->dest, o->key, o->bytes);
	for (size_t i = 0; i < x->n_presets && st == DR_OK; i++) {
		dr_rendition_row *r = &o->rends[o->n_rends];

		/* Content the sink lacks is put without asking first. */
		t0 = metrics_now();
		st = rendition_store(&x->dest, o->sha256, &rends[i],
				     !x->new_content, r, err);
		if (st != DR_OK)
			break;
		o->n_rends++;
		if (r->uploaded) {
			metrics_step(x->e->db, "upload", metrics_now() - t0);
			metrics_add(x->e->db, "darkroom_stored_bytes_total", "",
				    (double)r->bytes);
		}
	}
	for (size_t i = 0; i < x->n_presets; i++)
		image_rendition_free(&rends[i]);
	return st;
}

/* Persist one pending output (a row of the OUT_ columns). */
static dr_status persist_one(persist_ctx *x, const dr_db_rows *rows, size_t i,
			     stored_output *o, dr_error *err)
{
	const char *kind = db_cell(rows, i, OUT_KIND);
	const char *source = db_cell(rows, i, OUT_SOURCE);
	const char *text = db_cell(rows, i, OUT_TEXT);
	unsigned char head[64];
	char ctype[128] = "";
	dr_sniff sn;
	uint64_t size = 0;
	int fd = -1;
	double t0;
	dr_status st;

	o->row_id = db_cell(rows, i, 0);
	if (strcmp(kind, "text") == 0) {
		/* Text the model produced: stored as a UTF-8 object too. */
		dr_source src = {text ? text : "", -1, text ? strlen(text) : 0};

		x->step = "upload";
		digest_sha256_hex(src.data, src.size, o->sha256);
		o->kind = "text";
		o->mime = "text/plain; charset=utf-8";
		o->bytes = src.size;
		snprintf(o->key, sizeof(o->key), "%.2s/%s.txt", o->sha256,
			 o->sha256);
		st = pin(x, o, NULL, 0, err);
		if (st == DR_OK)
			st = put_object(x, o->key, &src, o->mime, o->sha256, 1,
					err);
		if (st == DR_OK)
			st = rendition_url(&x->dest, o->key, o->url, err);
		return st;
	}
	/* Set before the first failure it names: a missing source is the
	 * download's, not the step an earlier output ended in. */
	x->step = "download";
	if (!source)
		return dr_fail(err, DR_ERR_INVALID, "bad_output",
			       "output %s has no source", db_cell(rows, i, 1));
	x->fetch_row = NULL;
	t0 = metrics_now();
	st = fetch(x, rows, i, &fd, &size, ctype, sizeof(ctype), err);
	if (st != DR_OK)
		return st;
	metrics_step(x->e->db, "download", metrics_now() - t0);
	metrics_add(x->e->db, "darkroom_downloaded_bytes_total", "",
		    (double)size);
	memset(head, 0, sizeof(head));
	if (pread(fd, head, sizeof(head), 0) < 0) {
		st = dr_fail(err, DR_ERR_IO, "io_error",
			     "reading the downloaded file failed");
		goto out;
	}
	sniff_head(head, size < sizeof(head) ? (size_t)size : sizeof(head),
		   &sn);
	if (size == 0) {
		st = dr_fail(err, DR_ERR_INVALID, "empty_output",
			     "output %s is empty", db_cell(rows, i, 1));
		goto out;
	}
	/* A file served as an image that is no image we decode is refused:
	 * what it claims and what it is disagree. */
	if (!sn.decodable && strncmp(ctype, "image/", 6) == 0) {
		st = dr_fail(err, DR_ERR_UNSUPPORTED, "unsupported_type",
			     "output %s is served as %.40s but its bytes are "
			     "%s",
			     db_cell(rows, i, 1), ctype, sn.mime);
		x->step = "download";
		goto out;
	}
	o->kind = sn.kind;
	if (x->c->training) {
		/* A training's outputs are its weights: stored as they are,
		 * never rendered, whatever their bytes look like. */
		o->kind = "weights";
		sn.decodable = 0;
	}
	/* Types a browser would run (HTML, SVG, XML) are stored as plain
	 * bytes, so a CDN serving them from our domain runs no script. */
	o->mime = strcmp(sn.mime, "text/html") == 0 ||
				  strcmp(sn.mime, "image/svg+xml") == 0 ||
				  strstr(sn.mime, "xml") != NULL
			  ? "application/octet-stream"
			  : sn.mime;
	o->bytes = size;
	if (x->streamed_sha256[0])
		memcpy(o->sha256, x->streamed_sha256, sizeof(o->sha256));
	else
		st = digest_sha256_fd_hex(fd, size, o->sha256, err);
	if (st != DR_OK)
		goto out;
	snprintf(o->key, sizeof(o->key), "%.2s/%s.%s", o->sha256, o->sha256,
		 sn.ext);
	if (sn.decodable) {
		if (size > x->e->cfg->limits.max_image_bytes) {
			x->step = "render";
			st = dr_fail(err, DR_ERR_TOO_LARGE, "image_too_large",
				     "output %s is a %llu-byte image, over "
				     "max_image_bytes",
				     db_cell(rows, i, 1),
				     (unsigned long long)size);
			goto out;
		}
		st = render(x, o, fd, err);
		if (st != DR_OK)
			goto out;
	} else {
		x->step = "upload";
		st = pin(x, o, NULL, 0, err);
		if (st != DR_OK)
			goto out;
		x->new_content = !rendition_stored(&x->dest, o->key, size);
	}
	x->step = "upload";
	if (x->new_content) {
		dr_source src = {NULL, fd, size};

		st = put_object(x, o->key, &src, o->mime, o->sha256, 0, err);
	}
	if (st == DR_OK)
		st = rendition_url(&x->dest, o->key, o->url, err);
out:
	close(fd);
	return st;
}

/* The index transaction: outputs, renditions, and the job's end. */
static dr_status index_all(persist_ctx *x, stored_output *outs, size_t n,
			   dr_error *err)
{
	dr_db *db = x->e->db;
	dr_status st;

	st = db_begin(db, err);
	if (st != DR_OK)
		return st;
	for (size_t i = 0; i < n && st == DR_OK; i++) {
		stored_output *o = &outs[i];
		char w[16] = "", h[16] = "";

		if (!o->row_id)
			continue; /* stored by an earlier step */
		if (o->is_image) {
			snprintf(w, sizeof(w), "%d", o->info.width);
			snprintf(h, sizeof(h), "%d", o->info.height);
		}
		st = db_exec(
			db,
			"UPDATE outputs SET state = 'stored', kind = ?,"
			" storage_key = ?, url = NULL, content_type = ?,"
			" bytes = ?, sha256 = ?, width = NULLIF(?, ''),"
			" height = NULLIF(?, ''), format = ?, blurhash = ?,"
			" dominant_color = ?, phash = ? WHERE id = ?",
			NULL, err,
			DB_ARGS(DB_STR(o->kind), DB_STR(o->key),
				DB_STR(o->mime), DB_U64(o->bytes),
				DB_STR(o->sha256), DB_STR(w), DB_STR(h),
				DB_STR(o->is_image ? o->info.format : NULL),
				DB_STR(o->is_image ? o->info.blurhash : NULL),
				DB_STR(o->is_image ? o->info.dominant_color
						   : NULL),
				DB_STR(o->is_image ? o->info.phash : NULL),
				DB_STR(o->row_id)));
		/* The row was pending (no key): its key gains a reference. */
		if (st == DR_OK)
			st = objects_ref(db, o->key, DR_OBJECT_ORIGINAL,
					 o->bytes, err);
		for (size_t k = 0; k < o->n_rends && st == DR_OK; k++)
			st = rendition_upsert(db, o->row_id, &o->rends[k],
					      x->e->cfg->retention.superseded,
					      err);
	}
	if (st == DR_OK)
		st = jobstate_succeed(db, x->c->id, x->c->lease_version, err);
	/* The files the webhook carried are in the sink now. */
	if (st == DR_OK)
		st = blobs_delete_job(db, x->c->id, err);
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK)
		db_rollback(db);
	return st;
}

/* The job's rendition presets, from its `renditions` JSON list. */
static dr_status job_presets(persist_ctx *x, const char *list, dr_error *err)
{
	json_object *arr = NULL;
	dr_status st;

	st = json_parse_limited(list, strlen(list), 4, &arr, err);
	if (st != DR_OK)
		return st;
	for (size_t i = 0; json_object_is_type(arr, json_type_array) &&
			   i < json_object_array_length(arr) &&
			   x->n_presets < DR_MAX_RENDITIONS;
	     i++) {
		const char *name = json_object_get_string(
			json_object_array_get_idx(arr, i));
		const dr_preset *p = name ? config_preset(x->e->cfg, name)
					  : NULL;

		if (!p) {
			/* A preset removed from the config since intake. */
			dr_log(DR_LOG_WARNING,
			       "event=job.preset_missing job=%s preset=%s",
			       x->c->id, name ? name : "?");
			continue;
		}
		x->presets[x->n_presets++] = p;
	}
	json_object_put(arr);
	return DR_OK;
}

/* An outcome of kind `kind` for the (sub-)step `step`. */
static dr_step_outcome outcome(dr_step_kind kind, const char *step)
{
	dr_step_outcome o;

	memset(&o, 0, sizeof(o));
	o.kind = kind;
	snprintf(o.step, sizeof(o.step), "%s", step);
	return o;
}

dr_step_outcome pipeline_persist(const dr_step_ctx *e)
{
	const dr_config *cfg = e->cfg;
	dr_claim *c = e->claim;
	dr_step_outcome o = outcome(DR_STEP_DONE, c->step);
	struct dr_instance *adapter = plugins_adapter(e->plugins, c->adapter);
	persist_ctx x;
	dr_db_rows *rows = NULL, *job = NULL;
	stored_output *outs = NULL;
	dr_error err;
	dr_status st;

	memset(&x, 0, sizeof(x));
	dr_error_clear(&err);
	x.e = e;
	x.c = c;
	x.step = "persist";
	x.dest.sink = plugins_sink(e->plugins, cfg->server.sink);
	x.dest.job_id = c->id;
	x.dest.model = c->model;
	if (!x.dest.sink) {
		o = outcome(DR_STEP_FAIL, "upload");
		dr_fail(&o.why, DR_ERR_INTERNAL, "sink_missing",
			"no sink is configured");
		return o;
	}
	x.policy.hosts = adapter ? adapter->plugin->desc->adapter->download_hosts
				 : NULL;
	x.policy.max_bytes = cfg->limits.max_output_bytes;
	x.policy.connect_timeout = cfg->limits.connect_timeout;
	x.policy.total_timeout = cfg->limits.download_timeout;
	x.policy.low_speed_limit = cfg->limits.low_speed_limit;
	x.policy.low_speed_time = cfg->limits.low_speed_time;
	x.policy.max_redirects = cfg->limits.max_redirects;
	netpolicy_env(&x.policy, &x.env_hosts);
	x.local_root = adapter ? adapter->local_root : NULL;
	x.policy.beat = download_beat;
	x.policy.beat_arg = &x;
	x.policy.beat_every = cfg->worker.lease / 8;

	st = db_query(e->db,
		      "SELECT renditions, training_version FROM jobs"
		      " WHERE id = ?",
		      &job, &err, DB_ARGS(DB_STR(c->id)));
	if (st == DR_OK && job->n_rows == 1 && c->training &&
	    !db_cell(job, 0, 1)) {
		/* A training is worth nothing without its new version. */
		o = outcome(DR_STEP_FAIL, "persist");
		dr_fail(&o.why, DR_ERR_PROVIDER, "training_version_missing",
			"the provider's succeeded training names no new model "
			"version");
		goto out;
	}
	if (st == DR_OK && job->n_rows == 1)
		st = job_presets(&x, db_cell(job, 0, 0), &err);
	if (st == DR_OK)
		st = db_query(e->db,
			      "SELECT id, idx, kind, source, text, source_kind,"
			      " TIMESTAMPDIFF(MICROSECOND, fetch_started_at,"
			      " NOW(6)), slow_fetches FROM outputs"
			      " WHERE job_id = ? AND state = 'pending'"
			      " ORDER BY idx",
			      &rows, &err, DB_ARGS(DB_STR(c->id)));
	x.selected_at = metrics_now();
	if (st != DR_OK) {
		o.kind = DR_STEP_RETRY;
		o.delay = queue_backoff(cfg, c->attempts + 1);
		o.why = err;
		goto out;
	}
	outs = dr_xcalloc(rows->n_rows ? rows->n_rows : 1, sizeof(*outs));
	x.extended = metrics_now();
	for (size_t i = 0; i < rows->n_rows; i++) {
		st = persist_one(&x, rows, i, &outs[i], &err);
		if (st == DR_ERR_CONFLICT &&
		    strcmp(err.code, "lease_lost") == 0)
			goto out; /* logged by keep_lease() */
		if (st != DR_OK)
			break;
		/* Long jobs keep their lease: renewed once an eighth of it
		 * has passed, so an output always starts with at least 7/8
		 * of it left, without a write after every short output. */
		if (keep_lease(&x))
			goto out;
	}
	if (st == DR_OK) {
		double t0 = metrics_now();

		x.step = "index";
		st = index_all(&x, outs, rows->n_rows, &err);
		if (st == DR_OK) {
			metrics_step(e->db, "index", metrics_now() - t0);
			dr_log(DR_LOG_INFO,
			       "event=job.succeeded job=%s outputs=%zu "
			       "adapter=%s",
			       c->id, rows->n_rows, c->adapter);
			goto out;
		}
		if (st == DR_ERR_CONFLICT) {
			dr_log(DR_LOG_WARNING,
			       "event=job.lease_lost job=%s step=index", c->id);
			goto out;
		}
	}
	dr_log(DR_LOG_WARNING,
	       "event=job.persist_failed job=%s step=%s code=%s "
	       "retryable=%d reason=\"%.200s\"",
	       c->id, x.step, err.code, err.retryable, err.message);
	{
		/* The sub-step that failed names the error. */
		double delay = queue_asked_delay(
			err.retry_after, queue_backoff(cfg, c->attempts + 1));
		int again = err.retryable || st == DR_ERR_UNAVAILABLE;

		if (again && x.fetch_row && strcmp(x.step, "download") == 0)
			again = download_again(&x, &err, delay);
		o = outcome(again ? DR_STEP_RETRY : DR_STEP_FAIL, x.step);
		o.delay = delay;
		o.count_attempt = 1;
		o.why = err;
		if (!again && !err.code[0])
			snprintf(o.why.code, sizeof(o.why.code), "%s",
				 "persist_failed");
	}
out:
	free(outs);
	db_rows_free(rows);
	db_rows_free(job);
	netpolicy_free_hosts(x.env_hosts);
	return o;
}
