/*
 * reprocess.c - renditions made again for stored outputs (see reprocess.h).
 *
 * Outputs are read in pages of PAGE rows by ascending id (keyset paging:
 * `o.id > last`), so a run over millions of outputs holds one page in
 * memory and a row added meanwhile is seen or not, never twice. The
 * selection is one SQL text with optional filters written as
 * `(? IS NULL OR ...)`, so the statement cache holds one statement.
 */
#include "reprocess.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"
#include "jsonutil.h"
#include "objects.h"
#include "rendition.h"

#define PAGE "50" /* outputs read per query */
/* Non-terminal progress: a line at most this often (seconds). */
#define PLAIN_INTERVAL 1.0
/* Terminal progress: redraw at most this often (seconds). */
#define TTY_INTERVAL 0.1
#define BAR_WIDTH 20

#define SELECT_FILTERS                                                        \
	" FROM outputs o JOIN jobs j ON j.id = o.job_id"                      \
	" WHERE o.kind = 'image' AND o.state = 'stored'"                      \
	" AND o.storage_key IS NOT NULL AND o.sha256 IS NOT NULL"            \
	" AND (? IS NULL OR j.model = ?) AND (? IS NULL OR o.job_id = ?)"    \
	" AND (? IS NULL OR o.created_at >= ?)"                               \
	" AND (? IS NULL OR o.created_at < ?)"

static const char count_sql[] = "SELECT COUNT(*)" SELECT_FILTERS;
static const char page_sql[] =
	"SELECT o.id, o.storage_key, o.sha256, o.job_id, j.model,"
	" j.renditions" SELECT_FILTERS " AND o.id > ? ORDER BY o.id LIMIT " PAGE;

typedef struct progress {
	FILE *f;
	int tty;
	double start, last;
	int drawn; /* a bar is on the terminal line */
} progress;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Draw the bar or print a plain line when due (always when `final`). */
static void progress_show(progress *p, const dr_reprocess_stats *s, int final)
{
	double t = now_s(), el = t - p->start;
	double rate = el > 0 ? (double)s->done / el : 0;
	double eta = rate > 0 ? (double)(s->outputs - s->done) / rate : 0;
	long e = (long)(eta + 0.5);

	if (!p->f)
		return;
	if (!final && t - p->last < (p->tty ? TTY_INTERVAL : PLAIN_INTERVAL) &&
	    s->done != 1)
		return;
	p->last = t;
	if (p->tty) {
		char bar[BAR_WIDTH + 1];
		int fill = s->outputs ? (int)(s->done * BAR_WIDTH / s->outputs)
				      : BAR_WIDTH;

		for (int i = 0; i < BAR_WIDTH; i++)
			bar[i] = i < fill ? '#' : '-';
		bar[BAR_WIDTH] = '\0';
		fprintf(p->f,
			"\r[%s] %llu/%llu outputs  %.1f/s  ETA %ld:%02ld\033[K",
			bar, (unsigned long long)s->done,
			(unsigned long long)s->outputs, rate, e / 60, e % 60);
		p->drawn = 1;
		if (final) {
			fputc('\n', p->f);
			p->drawn = 0;
		}
	} else {
		fprintf(p->f, "reprocess: %llu/%llu outputs, %.1f/s, ETA %ld s\n",
			(unsigned long long)s->done,
			(unsigned long long)s->outputs, rate, e);
	}
	fflush(p->f);
}

/* A message about one output, on its own line (below the bar). */
static void progress_note(progress *p, const char *fmt, const char *a,
			  const char *b)
{
	if (!p->f)
		return;
	if (p->drawn) {
		fputs("\r\033[K", p->f);
		p->drawn = 0;
	}
	fprintf(p->f, fmt, a, b);
	fputc('\n', p->f);
	fflush(p->f);
}

/* The presets wanted for an output: the named ones, or the job's list
 * (names no longer in the config are skipped, as the pipeline does). */
static size_t wanted_presets(const dr_config *cfg, const dr_reprocess_opts *o,
			     const char *list, const dr_preset **out)
{
	json_object *arr = NULL;
	size_t n = 0;
	dr_error err;

	if (o->n_presets) {
		memcpy(out, o->presets, o->n_presets * sizeof(*out));
		return o->n_presets;
	}
	if (!list || json_parse_limited(list, strlen(list), 4, &arr, &err) !=
			     DR_OK)
		return 0;
	for (size_t i = 0; json_object_is_type(arr, json_type_array) &&
			   i < json_object_array_length(arr) &&
			   n < DR_MAX_RENDITIONS;
	     i++) {
		const char *name = json_object_get_string(
			json_object_array_get_idx(arr, i));
		const dr_preset *p = name ? config_preset(cfg, name) : NULL;

		if (p)
			out[n++] = p;
	}
	json_object_put(arr);
	return n;
}

/* Keep only the presets whose rendition row is missing or stale. */
static dr_status stale_presets(dr_db *db, const char *output_id,
			       const dr_preset **ps, size_t *n, dr_error *err)
{
	dr_db_rows *rows = NULL;
	size_t k = 0;
	dr_status st;

	st = db_query(db,
		      "SELECT name, preset_hash FROM renditions"
		      " WHERE output_id = ?",
		      &rows, err, DB_ARGS(DB_STR(output_id)));
	if (st != DR_OK)
		return st;
	for (size_t i = 0; i < *n; i++) {
		char hash[17];
		int current = 0;

		rendition_preset_hash(ps[i], hash);
		for (size_t r = 0; r < rows->n_rows && !current; r++)
			current = strcmp(db_cell(rows, r, 0), ps[i]->name) == 0 &&
				  strcmp(db_cell(rows, r, 1), hash) == 0;
		if (!current)
			ps[k++] = ps[i];
	}
	*n = k;
	db_rows_free(rows);
	return DR_OK;
}

/* What reprocessing one output works with. */
typedef struct rp_ctx {
	const dr_config *cfg;
	dr_db *db;
	struct dr_instance *sink;
} rp_ctx;

/* Store the renditions of one output and upsert their rows (one
 * transaction, which also moves the references from the keys they
 * replace to the new ones). Row: id, storage_key, sha256, job_id, model.
 * Every rendition is put, never skipped for an object of its size under
 * its key, so a damaged object is mended by a reprocess. *gone is 1 when
 * the job was deleted meanwhile: no rows, its pins let go. */
static dr_status store(rp_ctx *x, const dr_db_rows *rows, size_t i,
		       const dr_rendition *rends, size_t n, int *gone,
		       dr_error *err)
{
	dr_db_rows *job = NULL;
	dr_store_dest d = { x->sink, db_cell(rows, i, 3), db_cell(rows, i, 4) };
	dr_rendition_row made[DR_MAX_RENDITIONS];
	char keys[DR_MAX_RENDITIONS][DR_KEY_MAX];
	const char *kp[DR_MAX_RENDITIONS], *kinds[DR_MAX_RENDITIONS];
	dr_status st = DR_OK;

	/* Pinned before they are put (objects.h), as the pipeline does. */
	for (size_t j = 0; j < n && st == DR_OK; j++) {
		st = rendition_key(db_cell(rows, i, 2), rends[j].preset,
				   rends[j].ext, keys[j], err);
		kp[j] = keys[j];
		kinds[j] = DR_OBJECT_RENDITION;
	}
	if (st == DR_OK)
		st = objects_pin(x->db, kp, kinds, n, DR_OBJECT_PIN_HOLD, err);
	for (size_t k = 0; k < n && st == DR_OK; k++)
		st = rendition_store(&d, db_cell(rows, i, 2), &rends[k], 0,
				     &made[k], err);
	if (st != DR_OK)
		return st;
	st = db_begin(x->db, err);
	if (st != DR_OK)
		return st;
	/* The job's row first, as a delete locks it (deletion.c): a job
	 * deleted since its output was read gets no rows, and the pins made
	 * for it are let go. */
	st = db_query(x->db, "SELECT id FROM jobs WHERE id = ? FOR UPDATE",
		      &job, err, DB_ARGS(DB_STR(db_cell(rows, i, 3))));
	*gone = st == DR_OK && job->n_rows == 0;
	db_rows_free(job);
	for (size_t k = 0; k < n && st == DR_OK; k++)
		st = *gone ? objects_unpin(x->db, made[k].key, err)
			   : rendition_upsert(
				     x->db, db_cell(rows, i, 0), &made[k],
				     x->cfg->retention.superseded, err);
	if (st == DR_OK)
		st = db_commit(x->db, err);
	if (st != DR_OK)
		db_rollback(x->db);
	return st;
}

/* Reprocess output row `i` of `rows`: *made gets the renditions made.
 * Failures of this output alone come back as their status with err set;
 * the caller tells them from run-stopping ones by the status. */
static dr_status one_output(rp_ctx *x, const dr_reprocess_opts *o,
			    const dr_db_rows *rows, size_t i, uint64_t *made,
			    dr_error *err)
{
	const dr_config *cfg = x->cfg;
	const dr_sink_ops *ops = x->sink->plugin->desc->sink;
	const dr_preset *ps[DR_MAX_RENDITIONS];
	dr_rendition rends[DR_MAX_RENDITIONS];
	dr_image_limits lim = {cfg->limits.max_pixels,
			       cfg->limits.max_image_bytes,
			       cfg->limits.max_pages};
	dr_image_info info;
	size_t n = wanted_presets(cfg, o, db_cell(rows, i, 5), ps);
	void *data = NULL;
	size_t len = 0;
	int gone = 0;
	dr_status st;

	*made = 0;
	if (n == 0)
		return DR_OK;
	st = stale_presets(x->db, db_cell(rows, i, 0), ps, &n, err);
	if (st != DR_OK || n == 0)
		return st;
	if (o->dry_run) {
		*made = n;
		return DR_OK;
	}
	st = ops->get(x->sink->state, db_cell(rows, i, 1),
		      cfg->limits.max_image_bytes, &data, &len, err);
	if (st != DR_OK)
		return st;
	memset(rends, 0, sizeof(rends));
	st = image_process(data, len, &lim, ps, n, &info, rends, err);
	free(data);
	if (st != DR_OK)
		return st;
	st = store(x, rows, i, rends, n, &gone, err);
	for (size_t k = 0; k < n; k++)
		image_rendition_free(&rends[k]);
	if (st == DR_OK && !gone)
		*made = n;
	return st;
}

/* Statuses after which the next output would fail the same way. */
static int stops_run(dr_status st)
{
	return st == DR_ERR_UNAVAILABLE || st == DR_ERR_DATABASE;
}

dr_status reprocess_run(const dr_config *cfg, dr_db *db,
			const dr_plugins *plugins, const dr_reprocess_opts *o,
			dr_reprocess_stats *stats, dr_error *err)
{
	const char *model = o->model, *job = o->job_id;
	const char *since = o->since, *until = o->until;
	dr_db_rows *rows = NULL;
	uint64_t last = 0;
	progress p = {o->progress, o->tty, now_s(), 0, 0};
	rp_ctx x = { cfg, db, NULL };
	dr_status st;

	memset(stats, 0, sizeof(*stats));
	x.sink = plugins_sink(plugins, cfg->server.sink);
	if (!x.sink)
		return dr_fail(err, DR_ERR_CONFIG, "sink_missing",
			       "no sink is configured");
	st = db_query(db, count_sql, &rows, err,
		      DB_ARGS(DB_STR(model), DB_STR(model), DB_STR(job),
			      DB_STR(job), DB_STR(since), DB_STR(since),
			      DB_STR(until), DB_STR(until)));
	if (st != DR_OK)
		return st;
	stats->outputs = strtoull(db_cell(rows, 0, 0), NULL, 10);
	db_rows_free(rows);
	rows = NULL;
	while (!(o->stop && *o->stop)) {
		st = db_query(db, page_sql, &rows, err,
			      DB_ARGS(DB_STR(model), DB_STR(model), DB_STR(job),
				      DB_STR(job), DB_STR(since), DB_STR(since),
				      DB_STR(until), DB_STR(until),
				      DB_U64(last)));
		if (st != DR_OK)
			break;
		if (rows->n_rows == 0)
			break;
		for (size_t i = 0; i < rows->n_rows; i++) {
			uint64_t made = 0;
			dr_error one;

			if (o->stop && *o->stop)
				break;
			dr_error_clear(&one);
			st = one_output(&x, o, rows, i, &made, &one);
			last = strtoull(db_cell(rows, i, 0), NULL, 10);
			stats->done++;
			stats->made += made;
			if (st == DR_OK && made == 0)
				stats->current++;
			if (st != DR_OK && stops_run(st)) {
				*err = one;
				break;
			}
			if (st != DR_OK) {
				stats->failed++;
				progress_note(&p, "reprocess: output %s: %s",
					      db_cell(rows, i, 0),
					      one.message);
				st = DR_OK;
			}
			progress_show(&p, stats, 0);
		}
		db_rows_free(rows);
		rows = NULL;
		if (st != DR_OK)
			break;
	}
	db_rows_free(rows);
	if (o->stop && *o->stop && stats->done < stats->outputs)
		stats->interrupted = 1;
	progress_show(&p, stats, 1);
	return st;
}
