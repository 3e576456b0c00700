/*
 * objects.h - the stored objects and who uses them (table `objects`,
 * migrations/0009_objects.sql): pins, references, and the durable queue
 * of objects to remove from the sink.
 *
 * Keys are content-addressed, so one object may serve many index rows
 * (two outputs of equal bytes, their renditions). An object's row counts
 * them in `refs`; an object is removed only when that count is 0, and
 * only after a grace period, so a page rendered with its URL a moment ago
 * keeps working.
 * The life of an object:
 *
 *   pin       before a worker uploads a key (objects_pin, its own short
 *             transaction): pins + 1, and the pin lasts at least
 *             DR_OBJECT_PIN_HOLD (pinned_until); while a pin holds it the
 *             object is never removed, whatever else happens to its row
 *             (a job delete that drops its last reference meanwhile), so
 *             content a job is storing again is never removed under it.
 *             A new row's removal is queued for the pin's end, so a pin
 *             that no reference follows (the job failed) expires, and its
 *             object is removed then; a row whose removal is queued
 *             already keeps its time (a deleted job's object: at once),
 *             held off by the pin alone, so once the pin's reference or
 *             unpin comes it is removed when it was due;
 *   ref       the index transaction that writes the row using the key
 *             (objects_ref): refs + 1, pins - 1 (the pin it follows),
 *             state stored; objects_unpin() when the row already used the
 *             key (pins - 1 only);
 *   unref     a row stops using it (objects_unref: a rendition moved to
 *             a new key, a job deleted): refs - n; at 0 its removal is
 *             queued `grace` seconds later ([retention] superseded for a
 *             replaced rendition, 0 for a deleted job; state removing);
 *   remove    objects_remove_due(): a due object (refs 0, remove_after
 *             passed, no pin) is re-checked under a row lock (refs still
 *             0, still due, not pinned: a pin or ref meanwhile cancels
 *             it, a pin moves it to the pin's end), removed through the
 *             sink's `remove` while the lock is held (a pin of the same
 *             key waits and then finds no row, so the job uploads again),
 *             and its row deleted. A sink that fails keeps the row:
 *             attempts + 1, last_error, and a new remove_after with
 *             backoff; it is never forgotten.
 *
 * A pin is counted, not owned: a pin whose job failed before its
 * reference stays counted until pinned_until, which only keeps the object
 * longer (never shorter) than needed.
 *
 * Objects stored before 0009 are counted by the migration; an object with
 * no row is never removed.
 *
 * Who may call whom: uses db, config and the sink through the plugin
 * host; called by rendition (references of rendition rows), pipeline
 * (pins and references of outputs), reprocess, deletion (references
 * of deleted jobs), worker and cli_main (removals). Nothing here knows a
 * job or a step.
 */
#ifndef DR_OBJECTS_H
#define DR_OBJECTS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "error.h"
#include "plugin.h"

/* Kinds of object (objects.kind). */
#define DR_OBJECT_ORIGINAL  "original"
#define DR_OBJECT_RENDITION "rendition"

/* Seconds a pin keeps an object with no reference: longer than any
 * persist step runs between its pin and its index transaction. */
#define DR_OBJECT_PIN_HOLD 86400.0
/* Objects one objects_remove_due() call looks at, at most. */
#define DR_OBJECT_BATCH 100
/* Backoff of a failed removal: BASE * 2^(attempts - 1) seconds, at most
 * MAX. */
#define DR_OBJECT_RETRY_BASE 60.0
#define DR_OBJECT_RETRY_MAX  21600.0
/* A grace that never ends: objects_unref() queues no removal. */
#define DR_OBJECT_NEVER (-1.0)

/*
 * Pin keys[0..n) (kinds[i] the kind of keys[i]) before uploading them:
 * one transaction, committed before the call returns; `hold` seconds
 * (DR_OBJECT_PIN_HOLD in the pipeline). Must not be called inside a
 * transaction (DR_ERR_INTERNAL): the pin must be visible to removers
 * before the upload starts.
 */
dr_status objects_pin(dr_db *db, const char *const *keys,
		      const char *const *kinds, size_t n, double hold,
		      dr_error *err) DR_WARN_UNUSED;

/*
 * One more index row uses `key` (of kind `kind`, `bytes` long): refs + 1,
 * state stored, any queued removal cancelled. One statement: the caller
 * runs it in the transaction that writes the row.
 */
dr_status objects_ref(dr_db *db, const char *key, const char *kind,
		      uint64_t bytes, dr_error *err) DR_WARN_UNUSED;

/*
 * The reference a pinned key was pinned for will not come (the row
 * already used the key): pins - 1. One statement, in the caller's
 * transaction; a key with no row is left alone.
 */
dr_status objects_unpin(dr_db *db, const char *key,
			dr_error *err) DR_WARN_UNUSED;

/*
 * `n` index rows less use `key`: refs - n, the row locked until the
 * caller's transaction ends; when that leaves none, its removal is queued
 * `grace` seconds from now (0: due at once; DR_OBJECT_NEVER: never) and
 * *released (may be NULL) is set to 1, else 0. A key with no row is left
 * alone (*released 0). Two statements, in the caller's transaction.
 */
dr_status objects_unref(dr_db *db, const char *key, unsigned n, double grace,
			int *released, dr_error *err) DR_WARN_UNUSED;

/*
 * objects_unref() for many keys at once: keys[i] loses counts[i] (1 or
 * more) references, keys[0..n) distinct and sorted by strcmp (the order
 * their rows are locked in). *released (may be NULL) is added the number
 * of keys left with none. A few statements per 100 keys, in the caller's
 * transaction.
 */
dr_status objects_unref_many(dr_db *db, const char *const *keys,
			     const unsigned *counts, size_t n, double grace,
			     uint64_t *released, dr_error *err) DR_WARN_UNUSED;

/* What objects_remove_due() did. */
typedef struct dr_object_removals {
	uint64_t removed; /* objects removed from the sink, rows deleted */
	uint64_t skipped; /* pinned or used again when re-checked */
	uint64_t failed;  /* the sink failed: retried later */
	uint64_t looked;  /* due objects looked at */
} dr_object_removals;

/*
 * Remove at most `batch` due objects (refs 0, remove_after passed) from
 * `sink` (a created sink instance, borrowed), oldest due first, each in
 * its own short transaction as the top of this file says; *r is added
 * to. A sink failure is recorded on the row and logged, not returned;
 * the status is not DR_OK only when the database fails (err filled).
 * Must not be called inside a transaction (DR_ERR_INTERNAL).
 */
dr_status objects_remove_due(dr_db *db, struct dr_instance *sink,
			     unsigned batch, dr_object_removals *r,
			     dr_error *err) DR_WARN_UNUSED;

/* Count the objects due for removal now into *n; changes nothing. */
dr_status objects_count_due(dr_db *db, uint64_t *n,
			    dr_error *err) DR_WARN_UNUSED;

/* The worker's place in its removal passes: zero it first. */
typedef struct dr_object_pass {
	int started;		 /* a pass has been scheduled */
	int busy;		 /* a pass is under way */
	double next;		 /* monotonic time of the next pass */
	dr_object_removals done; /* in this pass */
} dr_object_pass;

/*
 * The worker's share: when a pass is due (the first call, then `interval`
 * seconds after the end of the last, or sooner as objects_step_soon()
 * says) or under way, one objects_remove_due() batch; the pass ends with
 * a batch that looked at fewer than DR_OBJECT_BATCH objects (one log line
 * when it removed or failed any). Does nothing without a sink. Returns 1
 * while the pass has more to do, else 0.
 */
int objects_step(dr_object_pass *p, dr_db *db, struct dr_instance *sink,
		 double interval, double now);

/* Seconds until the first queued removal is due into *seconds (0 when
 * one is due now; -1 when none is queued). */
dr_status objects_due_in(dr_db *db, double *seconds,
			 dr_error *err) DR_WARN_UNUSED;

/* Bring the next pass of `p` forward to when the first queued removal is
 * due, so a removal a job delete queued is done in seconds, not at the
 * next interval. A database failure leaves `p` as it was. */
void objects_step_soon(dr_object_pass *p, dr_db *db, double now);

#endif
