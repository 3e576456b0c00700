/*
 * reprocess.h - make renditions again for stored outputs (`darkroom
 * reprocess`), e.g. after a preset was added to the config or changed.
 *
 * For every stored image output that matches the selection, in ascending
 * outputs.id order, the presets wanted (the job's requested renditions, or
 * the presets named on the command line) are compared with its rendition
 * rows: a preset whose row is missing, or whose preset_hash differs from
 * the preset's current hash (rendition_preset_hash), is made again. The
 * original is read back from the active sink (at most max_image_bytes),
 * decoded once for all those presets, the renditions are stored as
 * rendition.h says (the pipeline's keys, headers and rows) and their rows
 * are upserted in one transaction per output.
 *
 * Resumable by construction: a rendition row with the current hash is the
 * record that the work is done, so a run stopped at any point (SIGINT, a
 * crash, a lost database) is continued by running the same command again;
 * it skips what is already current and does only what is left.
 *
 * A changed preset has a new tag, so its renditions go under new keys
 * (rendition.h) and the row switches in the transaction that upserts it;
 * the key it replaces (a key of the old settings, or a key written before
 * tags) loses a reference, and when no row uses it any more its object is
 * removed after [retention] superseded (objects.h) by the worker or
 * `darkroom prune`.
 */
#ifndef DR_REPROCESS_H
#define DR_REPROCESS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "db.h"
#include "error.h"
#include "jobs.h"
#include "plugin.h"

/* What to reprocess. Every selector may be NULL; all NULL means every
 * stored image output. */
typedef struct dr_reprocess_opts {
	const char *model;  /* jobs.model equals */
	const char *job_id; /* one job */
	const char *since;  /* outputs.created_at >= (database form) */
	const char *until;  /* outputs.created_at < (database form) */
	/* Presets to make; n_presets 0: each job's requested renditions. */
	const dr_preset *presets[DR_MAX_RENDITIONS];
	size_t n_presets;
	int dry_run;  /* count what would be made, store nothing */
	FILE *progress; /* progress and per-output errors, or NULL */
	int tty;        /* `progress` is a terminal: one updating bar */
	/* Set (by a signal handler) to stop after the current output. */
	volatile sig_atomic_t *stop;
} dr_reprocess_opts;

typedef struct dr_reprocess_stats {
	uint64_t outputs;    /* matching outputs */
	uint64_t done;       /* outputs looked at */
	uint64_t made;       /* renditions made (or, dry run, to make) */
	uint64_t current;    /* outputs that needed nothing */
	uint64_t failed;     /* outputs that could not be reprocessed */
	int interrupted;     /* stopped by *stop before the end */
} dr_reprocess_stats;

/*
 * Run a reprocess with the active sink of `plugins` (created instances).
 * image_init() must have been called. Per-output failures (original
 * missing, corrupt image, a put that failed) are reported on
 * opts->progress, counted in stats->failed, and the run goes on; the
 * status is not DR_OK only for failures that stop the run (database
 * unavailable, no sink), with err filled. `stats` is filled either way.
 */
dr_status reprocess_run(const dr_config *cfg, dr_db *db,
			const dr_plugins *plugins, const dr_reprocess_opts *opts,
			dr_reprocess_stats *stats, dr_error *err) DR_WARN_UNUSED;

#endif
