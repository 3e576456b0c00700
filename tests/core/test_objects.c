/*
 * test_objects.c - core/objects.c against a real MariaDB
 * (tests/core/dbserver.h, migrations applied) and an in-memory sink:
 * pins and references counted, a rendition row that changes key moves
 * its reference and queues the old key's removal, due objects removed
 * through the sink, a removal skipped when the key was pinned or used
 * again after it was listed, and a sink that fails retried later, never
 * forgotten; pins counted (an object released while pinned is kept), the
 * first removal due and the worker's pass brought forward to it; and
 * migration 0009's backfill, run twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dbserver.h"
#include "migrate.h"
#include "rendition.h"
/* The .c, for remove_one(): a key listed as due, then pinned. */
#include "objects.c"

static dr_config cfg;
static dr_db *db;

/* The sink: remembers the keys removed; can be told to fail. */
static struct {
	int removes;
	int fail;
	char last[DR_KEY_MAX];
	dr_db *other;	   /* when set, a second session pins the key ... */
	dr_status pinned; /* ... during the removal, with this outcome */
} sk;

static dr_status mock_remove(void *state, const char *key, dr_error *err)
{
	(void)state;
	sk.removes++;
	snprintf(sk.last, sizeof(sk.last), "%s", key);
	if (sk.other) {
		const char *kind = DR_OBJECT_ORIGINAL;
		dr_error e2;

		sk.pinned = objects_pin(sk.other, &key, &kind, 1, 3600, &e2);
	}
	if (sk.fail)
		return dr_fail(err, DR_ERR_UNAVAILABLE, "sink_unavailable",
			       "the bucket is away");
	return DR_OK;
}

static const dr_sink_ops ops = { .remove = mock_remove };
static const dr_plugin desc = { .name = "mock", .sink = &ops };
static const dr_loaded_plugin loaded = { .desc = &desc };
static struct dr_instance inst = { .name = "mock", .plugin = &loaded };

static int group_setup(void **state)
{
	(void)state;
	return dbserver_open("test_objects", "drt_objects", &cfg, &db) != 0 ? -1
									    : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dbserver_close(db);
	return 0;
}

static int empty(void **state)
{
	dr_error err;

	(void)state;
	memset(&sk, 0, sizeof(sk));
	assert_ok(db_exec_text(db, "DELETE FROM objects", &err), err);
	assert_ok(db_exec_text(db, "DELETE FROM renditions", &err), err);
	return 0;
}

/* Column `col` of the row of `key` as text, "(none)" without a row and
 * "(null)" for NULL; malloc'd. */
static char *col(const char *key, const char *col)
{
	char sql[200];
	dr_db_rows *rows = NULL;
	dr_error err;
	char *v;

	snprintf(sql, sizeof(sql),
		 "SELECT %s FROM objects WHERE"
		 " storage_key = ?",
		 col);
	assert_ok(db_query_uncached(db, sql, &rows, &err, DB_ARGS(DB_STR(key))),
		  err);
	v = strdup(rows->n_rows == 0	 ? "(none)"
		   : db_cell(rows, 0, 0) ? db_cell(rows, 0, 0)
					 : "(null)");
	db_rows_free(rows);
	return v;
}

static void assert_col(const char *key, const char *c, const char *want)
{
	char *v = col(key, c);

	if (strcmp(v, want) != 0)
		fail_msg("%s of %s: %s, expected %s", c, key, v, want);
	free(v);
}

static void pin1(const char *key, const char *kind, double hold)
{
	dr_error err;

	assert_ok(objects_pin(db, &key, &kind, 1, hold, &err), err);
}

/* Make the removal of `key` due now, as when its pins have ended. */
static void make_due(const char *key)
{
	dr_error err;

	assert_ok(db_exec(db,
			  "UPDATE objects SET remove_after = NOW(6) -"
			  " INTERVAL 1 SECOND, pinned_until = IF(pins > 0,"
			  " NOW(6) - INTERVAL 1 SECOND, NULL)"
			  " WHERE storage_key = ?",
			  NULL, &err, DB_ARGS(DB_STR(key))),
		  err);
}

/* Pins make rows with no reference, kept for the hold; references count
 * up and cancel removals; the last unref queues a removal after the
 * grace; a pin of a queued key pushes it back. */
static void test_pin_ref_unref(void **state)
{
	const char *keys[] = { "ab/a.png", "ab/a/thumb.12345678.webp" };
	const char *kinds[] = { DR_OBJECT_ORIGINAL, DR_OBJECT_RENDITION };
	dr_error err;

	(void)state;
	assert_ok(objects_pin(db, keys, kinds, 2, 3600, &err), err);
	assert_col(keys[0], "CONCAT(kind, ' ', refs, ' ', state)",
		   "original 0 pinned");
	assert_col(keys[1], "CONCAT(kind, ' ', refs, ' ', state)",
		   "rendition 0 pinned");
	assert_col(keys[0],
		   "remove_after BETWEEN NOW(6) + INTERVAL 3590 SECOND AND"
		   " NOW(6) + INTERVAL 3610 SECOND",
		   "1");

	/* Pins run in a transaction of their own. */
	assert_ok(db_begin(db, &err), err);
	assert_int_equal(objects_pin(db, keys, kinds, 1, 3600, &err),
			 DR_ERR_INTERNAL);
	db_rollback(db);

	assert_ok(objects_ref(db, keys[0], DR_OBJECT_ORIGINAL, 1234, &err),
		  err);
	assert_ok(objects_ref(db, keys[0], DR_OBJECT_ORIGINAL, 1234, &err),
		  err);
	assert_col(keys[0], "CONCAT(refs, ' ', state, ' ', bytes)",
		   "2 stored 1234");
	assert_col(keys[0], "remove_after", "(null)");
	/* A pin of a used key changes nothing that matters. */
	pin1(keys[0], DR_OBJECT_ORIGINAL, 3600);
	assert_col(keys[0], "CONCAT(refs, ' ', state)", "2 stored");
	assert_col(keys[0], "remove_after", "(null)");

	assert_ok(objects_unref(db, keys[0], 1, 60, NULL, &err), err);
	assert_col(keys[0], "CONCAT(refs, ' ', state)", "1 stored");
	assert_col(keys[0], "remove_after", "(null)");
	assert_ok(objects_unref(db, keys[0], 1, 60, NULL, &err), err);
	assert_col(keys[0], "CONCAT(refs, ' ', state)", "0 removing");
	assert_col(keys[0],
		   "remove_after BETWEEN NOW(6) + INTERVAL 50 SECOND AND"
		   " NOW(6) + INTERVAL 70 SECOND",
		   "1");
	/* One unref too many stays at 0. */
	assert_ok(objects_unref(db, keys[0], 1, 60, NULL, &err), err);
	assert_col(keys[0], "refs", "0");
	/* Pinned again: the queued removal keeps its time, and the pin
	 * holds it off until the pin's end (pinned_until), so the removal
	 * is done at its own time once the pin lets go. */
	pin1(keys[0], DR_OBJECT_ORIGINAL, 3600);
	/* (2 pins: the pin of the used key above had no reference after
	 * it, and stays counted until it ends.) */
	assert_col(keys[0], "CONCAT(refs, ' ', state, ' ', pins)",
		   "0 removing 2");
	assert_col(keys[0],
		   "remove_after BETWEEN NOW(6) + INTERVAL 50 SECOND AND"
		   " NOW(6) + INTERVAL 70 SECOND",
		   "1");
	assert_col(keys[0], "pinned_until > NOW(6) + INTERVAL 3500 SECOND",
		   "1");
	/* Used again: the removal is off. */
	assert_ok(objects_ref(db, keys[0], DR_OBJECT_ORIGINAL, 1234, &err),
		  err);
	assert_col(keys[0], "CONCAT(refs, ' ', state)", "1 stored");
	assert_col(keys[0], "remove_after", "(null)");

	/* Grace off: refs 0 but never due. */
	assert_ok(objects_unref(db, keys[0], 1, DR_OBJECT_NEVER, NULL, &err),
		  err);
	assert_col(keys[0], "CONCAT(refs, ' ', state)", "0 removing");
	assert_col(keys[0], "remove_after", "(null)");

	/* A key with no row is left alone. */
	assert_ok(objects_unref(db, "ab/none.png", 1, 60, NULL, &err), err);
	assert_col("ab/none.png", "refs", "(none)");
}

/* Pins are counted: each pin adds one and lasts to the latest end; a
 * reference or an unpin takes one away, and the last clears the end; a
 * pin whose end passed counts no more. */
static void test_pin_counting(void **state)
{
	const char *key = "ab/p.png";
	dr_error err;

	(void)state;
	pin1(key, DR_OBJECT_ORIGINAL, 3600); /* two jobs store it */
	pin1(key, DR_OBJECT_ORIGINAL, 60);   /* (a shorter pin) */
	assert_col(key, "CONCAT(refs, ' ', pins, ' ', state)", "0 2 pinned");
	assert_col(key,
		   "pinned_until BETWEEN NOW(6) + INTERVAL 3590 SECOND AND"
		   " NOW(6) + INTERVAL 3610 SECOND",
		   "1");
	/* The first indexes it: one pin left, still holding. */
	assert_ok(objects_ref(db, key, DR_OBJECT_ORIGINAL, 5, &err), err);
	assert_col(key, "CONCAT(refs, ' ', pins, ' ', state)", "1 1 stored");
	assert_col(key, "pinned_until > NOW(6) + INTERVAL 3590 SECOND", "1");
	/* The second's row used the key already: unpin. */
	assert_ok(objects_unpin(db, key, &err), err);
	assert_col(key, "CONCAT(refs, ' ', pins)", "1 0");
	assert_col(key, "pinned_until", "(null)");
	/* Never below 0. */
	assert_ok(objects_unpin(db, key, &err), err);
	assert_col(key, "CONCAT(refs, ' ', pins)", "1 0");
	assert_ok(objects_ref(db, key, DR_OBJECT_ORIGINAL, 5, &err), err);
	assert_col(key, "CONCAT(refs, ' ', pins)", "2 0");
	assert_col(key, "pinned_until", "(null)");
	/* A key with no row is left alone. */
	assert_ok(objects_unpin(db, "ab/none.png", &err), err);
	assert_col("ab/none.png", "pins", "(none)");

	/* A pin that ended (its job failed) is not counted by the next. */
	pin1("ab/q.png", DR_OBJECT_ORIGINAL, 3600);
	make_due("ab/q.png");
	assert_col("ab/q.png", "CONCAT(pins, ' ', pinned_until < NOW(6))",
		   "1 1");
	pin1("ab/q.png", DR_OBJECT_ORIGINAL, 3600);
	assert_col("ab/q.png", "pins", "1");
	assert_col("ab/q.png", "pinned_until > NOW(6) + INTERVAL 3590 SECOND",
		   "1");
}

/* An object that loses its last reference while another job holds a pin
 * on it (n references at once, as a deleted job drops them) is released
 * but not removed: the removal is skipped and moved to the pin's end. */
static void test_unref_while_pinned(void **state)
{
	const char *key = "ab/held.png";
	dr_object_removals r;
	int released = -1;
	uint64_t n = 9;
	dr_error err;

	(void)state;
	memset(&r, 0, sizeof(r));
	pin1(key, DR_OBJECT_ORIGINAL, 3600);
	pin1(key, DR_OBJECT_ORIGINAL, 3600);
	assert_ok(objects_ref(db, key, DR_OBJECT_ORIGINAL, 5, &err), err);
	assert_ok(objects_unref(db, key, 1, 0, &released, &err), err);
	assert_int_equal(released, 1);
	assert_col(key, "CONCAT(refs, ' ', pins, ' ', state)", "0 1 removing");
	assert_col(key, "remove_after <= NOW(6)", "1");
	assert_ok(objects_count_due(db, &n, &err), err);
	assert_int_equal(n, 0);
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.looked, 1);
	assert_int_equal(r.skipped, 1);
	assert_int_equal(r.removed, 0);
	assert_int_equal(sk.removes, 0);
	assert_col(key, "remove_after = pinned_until", "1");
	/* Skipped until the pin's end: not looked at again. */
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.looked, 1);

	/* n references at once; released only by the last. */
	for (int i = 0; i < 3; i++)
		assert_ok(objects_ref(db, "ab/n.png", DR_OBJECT_ORIGINAL, 5,
				      &err),
			  err);
	assert_ok(objects_unref(db, "ab/n.png", 2, 60, &released, &err), err);
	assert_int_equal(released, 0);
	assert_col("ab/n.png", "CONCAT(refs, ' ', state)", "1 stored");
	assert_col("ab/n.png", "remove_after", "(null)");
	assert_ok(objects_unref(db, "ab/n.png", 2, 60, &released, &err), err);
	assert_int_equal(released, 1);
	assert_col("ab/n.png", "CONCAT(refs, ' ', state)", "0 removing");
	assert_col("ab/n.png",
		   "remove_after BETWEEN NOW(6) + INTERVAL 50 SECOND AND"
		   " NOW(6) + INTERVAL 70 SECOND",
		   "1");
	/* Two rows of one job: both at once, released. */
	assert_ok(objects_ref(db, "ab/two.png", DR_OBJECT_ORIGINAL, 5, &err),
		  err);
	assert_ok(objects_ref(db, "ab/two.png", DR_OBJECT_ORIGINAL, 5, &err),
		  err);
	assert_ok(objects_unref(db, "ab/two.png", 2, 0, &released, &err), err);
	assert_int_equal(released, 1);
	assert_col("ab/two.png", "CONCAT(refs, ' ', state)", "0 removing");
	released = -1;
	assert_ok(objects_unref(db, "ab/none.png", 2, 0, &released, &err), err);
	assert_int_equal(released, 0);
}

/* Set the removal of `key` (a row with no reference) `s` seconds from
 * now. */
static void due_at(const char *key, int s)
{
	dr_error err;

	assert_ok(db_exec(db,
			  "INSERT INTO objects (storage_key, kind, refs, state,"
			  " remove_after, created_at, updated_at) VALUES"
			  " (?, 'original', 0, 'removing',"
			  " NOW(6) + INTERVAL ? SECOND, NOW(6), NOW(6))",
			  NULL, &err, DB_ARGS(DB_STR(key), DB_INT(s))),
		  err);
}

/* The first queued removal, in seconds (0 when due, -1 when none), and
 * the worker's pass brought forward to it. */
static void test_due_in(void **state)
{
	dr_object_pass p;
	double in = 0;
	dr_error err;

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_ok(objects_due_in(db, &in, &err), err);
	assert_true(in == -1);
	assert_ok(objects_ref(db, "ab/used.png", "original", 1, &err), err);
	assert_ok(objects_due_in(db, &in, &err), err);
	assert_true(in == -1);
	p.started = 1;
	p.next = 1000;
	objects_step_soon(&p, db, 10);
	assert_true(p.next == 1000); /* none queued */

	due_at("ab/later.png", 100);
	assert_ok(objects_due_in(db, &in, &err), err);
	assert_true(in > 90 && in <= 100);
	due_at("ab/sooner.png", 30);
	assert_ok(objects_due_in(db, &in, &err), err);
	assert_true(in > 20 && in <= 30);
	objects_step_soon(&p, db, 10);
	assert_true(p.next > 30 && p.next <= 40);
	p.next = 5; /* sooner already: kept */
	objects_step_soon(&p, db, 10);
	assert_true(p.next == 5);

	due_at("ab/due.png", -5);
	assert_ok(objects_due_in(db, &in, &err), err);
	assert_true(in == 0);
	p.next = 1000;
	p.busy = 1; /* a pass under way: left alone */
	objects_step_soon(&p, db, 10);
	assert_true(p.next == 1000);
	p.busy = 0;
	objects_step_soon(&p, db, 10);
	assert_true(p.next == 10);
}

/* A rendition row made again under a new key moves its reference: the
 * new key +1, the old -1 and queued; made again under the same key, no
 * change. */
static void test_rendition_switch(void **state)
{
	dr_preset p = { "thumb", 16, 16, DR_FIT_INSIDE, DR_FORMAT_WEBP, 80 };
	dr_rendition_row row;
	dr_error err;

	(void)state;
	memset(&row, 0, sizeof(row));
	row.preset = &p;
	row.mime = "image/webp";
	row.width = row.height = 16;
	row.bytes = 99;
	snprintf(row.preset_hash, sizeof(row.preset_hash), "%s",
		 "0123456789abcdef");
	snprintf(row.key, sizeof(row.key), "%s", "ab/x/thumb.webp");
	assert_ok(db_begin(db, &err), err);
	assert_ok(rendition_upsert(db, "1", &row, 30, &err), err);
	assert_ok(rendition_upsert(db, "2", &row, 30, &err), err);
	assert_ok(db_commit(db, &err), err);
	assert_col("ab/x/thumb.webp", "CONCAT(kind, ' ', refs, ' ', state)",
		   "rendition 2 stored");

	snprintf(row.key, sizeof(row.key), "%s", "ab/x/thumb.aaaaaaaa.webp");
	assert_ok(db_begin(db, &err), err);
	assert_ok(rendition_upsert(db, "1", &row, 30, &err), err);
	assert_ok(db_commit(db, &err), err);
	assert_col("ab/x/thumb.webp", "CONCAT(refs, ' ', state)", "1 stored");
	assert_col("ab/x/thumb.aaaaaaaa.webp", "CONCAT(refs, ' ', state)",
		   "1 stored");
	assert_ok(db_begin(db, &err), err);
	assert_ok(rendition_upsert(db, "1", &row, 30, &err), err); /* same */
	assert_ok(rendition_upsert(db, "2", &row, 30, &err), err);
	assert_ok(db_commit(db, &err), err);
	assert_col("ab/x/thumb.aaaaaaaa.webp", "refs", "2");
	assert_col("ab/x/thumb.webp", "CONCAT(refs, ' ', state)", "0 removing");
	assert_col("ab/x/thumb.webp",
		   "remove_after BETWEEN NOW(6) + INTERVAL 20 SECOND AND"
		   " NOW(6) + INTERVAL 40 SECOND",
		   "1");
}

/* Only due objects with no reference go, through the sink, and their
 * rows with them. */
static void test_remove_due(void **state)
{
	dr_object_removals r;
	uint64_t n = 0;
	dr_error err;

	(void)state;
	memset(&r, 0, sizeof(r));
	pin1("ab/due.png", DR_OBJECT_ORIGINAL, 3600);
	make_due("ab/due.png");
	pin1("ab/later.png", DR_OBJECT_ORIGINAL, 3600);
	pin1("ab/used.png", DR_OBJECT_ORIGINAL, 3600);
	assert_ok(objects_ref(db, "ab/used.png", "original", 1, &err), err);
	assert_ok(objects_count_due(db, &n, &err), err);
	assert_int_equal(n, 1);

	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.removed, 1);
	assert_int_equal(r.looked, 1);
	assert_int_equal(sk.removes, 1);
	assert_string_equal(sk.last, "ab/due.png");
	assert_col("ab/due.png", "refs", "(none)");
	assert_col("ab/later.png", "refs", "0");
	assert_col("ab/used.png", "refs", "1");
	assert_ok(objects_count_due(db, &n, &err), err);
	assert_int_equal(n, 0);

	/* Not in a caller's transaction. */
	assert_ok(db_begin(db, &err), err);
	assert_int_equal(objects_remove_due(db, &inst, 10, &r, &err),
			 DR_ERR_INTERNAL);
	db_rollback(db);
}

/* A key listed as due, then pinned (a job storing the same content) or
 * used again before the remover locks its row: not removed. */
static void test_removal_skipped_when_pinned_again(void **state)
{
	const char *key = "ab/again.png";
	dr_object_removals r;
	dr_error err;

	(void)state;
	memset(&r, 0, sizeof(r));
	pin1(key, DR_OBJECT_ORIGINAL, 3600);
	make_due(key);
	/* The remover has listed it; a job pins it now. */
	pin1(key, DR_OBJECT_ORIGINAL, 3600);
	assert_ok(remove_one(db, &inst, key, &r, &err), err);
	assert_int_equal(r.skipped, 1);
	assert_int_equal(r.removed, 0);
	assert_int_equal(sk.removes, 0);
	assert_col(key, "CONCAT(refs, ' ', state)", "0 pinned");

	/* Due again, then referenced before the lock. */
	make_due(key);
	assert_ok(objects_ref(db, key, DR_OBJECT_ORIGINAL, 5, &err), err);
	assert_ok(remove_one(db, &inst, key, &r, &err), err);
	assert_int_equal(r.skipped, 2);
	assert_int_equal(sk.removes, 0);
	assert_col(key, "CONCAT(refs, ' ', state)", "1 stored");
}

/* While the sink removes an object its row is locked: a job pinning the
 * same key from another session waits (here: gives up after the lock
 * wait timeout of 1 s) rather than believe the object is there; once the
 * removal is done its pin makes a new row, so it uploads again. */
static void test_pin_waits_for_removal(void **state)
{
	const char *key = "ab/racing.png";
	dr_object_removals r;
	dr_db *other = db_new(&cfg);
	dr_error err;

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_ok(db_exec_text(other,
			       "SET SESSION innodb_lock_wait_timeout = 1",
			       &err),
		  err);
	pin1(key, DR_OBJECT_ORIGINAL, 3600);
	make_due(key);
	sk.other = other;
	sk.pinned = DR_OK;
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	sk.other = NULL;
	assert_int_equal(r.removed, 1);
	assert_int_not_equal(sk.pinned, DR_OK);
	assert_col(key, "refs", "(none)");
	pin1(key, DR_OBJECT_ORIGINAL, 3600);
	assert_col(key, "CONCAT(refs, ' ', state)", "0 pinned");
	db_free(other);
}

/* A sink that fails: the row stays, attempts and the error recorded, the
 * next try after a backoff that grows; once the sink works, it goes. */
static void test_failing_sink_retried(void **state)
{
	const char *key = "ab/stuck.png";
	dr_object_removals r;
	dr_error err;

	(void)state;
	memset(&r, 0, sizeof(r));
	pin1(key, DR_OBJECT_ORIGINAL, 3600);
	make_due(key);
	sk.fail = 1;
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.failed, 1);
	assert_int_equal(sk.removes, 1);
	assert_col(key, "attempts", "1");
	assert_col(key, "last_error", "the bucket is away");
	assert_col(key,
		   "remove_after BETWEEN NOW(6) + INTERVAL 50 SECOND AND"
		   " NOW(6) + INTERVAL 70 SECOND",
		   "1");
	/* Not due yet: not tried. */
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(sk.removes, 1);
	make_due(key);
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.failed, 2);
	assert_col(key, "attempts", "2");
	assert_col(key,
		   "remove_after BETWEEN NOW(6) + INTERVAL 110 SECOND AND"
		   " NOW(6) + INTERVAL 130 SECOND",
		   "1");
	make_due(key);
	sk.fail = 0;
	assert_ok(objects_remove_due(db, &inst, 10, &r, &err), err);
	assert_int_equal(r.removed, 1);
	assert_int_equal(sk.removes, 3);
	assert_col(key, "refs", "(none)");
}

/* The worker's pass: nothing without a sink; batches of
 * DR_OBJECT_BATCH, the pass ending with a short one; then the
 * interval. */
static void test_worker_step(void **state)
{
	dr_object_pass p;
	dr_error err;

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_ok(db_exec(db,
			  "INSERT INTO objects (storage_key, kind, refs, state,"
			  " remove_after, created_at, updated_at)"
			  " SELECT CONCAT('ab/n', seq, '.png'), 'original', 0,"
			  " 'removing', NOW(6) - INTERVAL 1 SECOND, NOW(6),"
			  " NOW(6) FROM seq_1_to_1000 WHERE seq <= ?",
			  NULL, &err, DB_ARGS(DB_INT(DR_OBJECT_BATCH + 5))),
		  err);
	assert_int_equal(objects_step(&p, db, NULL, 60, 10.0), 0); /* no sink */
	assert_int_equal(sk.removes, 0);
	assert_int_equal(objects_step(&p, db, &inst, 60, 10.0), 1);
	assert_int_equal(sk.removes, DR_OBJECT_BATCH);
	assert_int_equal(objects_step(&p, db, &inst, 60, 10.1), 0);
	assert_int_equal(sk.removes, DR_OBJECT_BATCH + 5);
	pin1("ab/z.png", DR_OBJECT_ORIGINAL, 3600);
	make_due("ab/z.png");
	assert_int_equal(objects_step(&p, db, &inst, 60, 69.0), 0);
	assert_int_equal(sk.removes, DR_OBJECT_BATCH + 5);
	assert_int_equal(objects_step(&p, db, &inst, 60, 70.2), 0);
	assert_int_equal(sk.removes, DR_OBJECT_BATCH + 6);
}

/* Migration 0009 counts the references of the rows that exist, and
 * counts them again (not twice) when it runs again. */
static void test_migration_backfill(void **state)
{
	dr_error err;

	(void)state;
	assert_ok(db_exec_text(db, "DELETE FROM outputs WHERE job_id ="
				   " 'j_0000000000000000000000BACK'",
			       &err),
		  err);
	assert_ok(db_exec_text(
			  db,
			  "INSERT INTO outputs (job_id, idx, kind, state,"
			  " storage_key, bytes, created_at) VALUES"
			  " ('j_0000000000000000000000BACK', 0, 'image',"
			  " 'stored', 'ab/shared.png', 10, NOW(6)),"
			  " ('j_0000000000000000000000BACK', 1, 'image',"
			  " 'stored', 'ab/shared.png', 10, NOW(6)),"
			  " ('j_0000000000000000000000BACK', 2, 'text',"
			  " 'pending', NULL, NULL, NOW(6))",
			  &err),
		  err);
	assert_ok(db_exec_text(
			  db,
			  "INSERT INTO renditions (output_id, name,"
			  " storage_key, content_type, width, height, bytes,"
			  " preset_hash, created_at) VALUES"
			  " (1, 'thumb', 'ab/shared/thumb.webp', 'image/webp',"
			  " 1, 1, 7, '0123456789abcdef', NOW(6)),"
			  " (2, 'thumb', 'ab/shared/thumb.webp', 'image/webp',"
			  " 1, 1, 7, '0123456789abcdef', NOW(6)),"
			  " (2, 'card', 'ab/shared/card.jpg', 'image/jpeg',"
			  " 1, 1, 8, '0123456789abcdef', NOW(6))",
			  &err),
		  err);
	for (int run = 0; run < 2; run++) {
		assert_ok(db_exec_text(db,
				       "DELETE FROM schema_migrations WHERE"
				       " version = 9",
				       &err),
			  err);
		assert_ok(migrate_run(&cfg, DR_SOURCE_DIR "/migrations", NULL,
				      &err),
			  err);
		assert_col("ab/shared.png",
			   "CONCAT(kind, ' ', refs, ' ', state, ' ', bytes)",
			   "original 2 stored 10");
		assert_col("ab/shared/thumb.webp",
			   "CONCAT(kind, ' ', refs, ' ', state, ' ', bytes)",
			   "rendition 2 stored 7");
		assert_col("ab/shared/card.jpg", "CONCAT(kind, ' ', refs)",
			   "rendition 1");
	}
	assert_ok(db_exec_text(db, "DELETE FROM outputs WHERE job_id ="
				   " 'j_0000000000000000000000BACK'",
			       &err),
		  err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_pin_ref_unref, empty),
		cmocka_unit_test_setup(test_pin_counting, empty),
		cmocka_unit_test_setup(test_unref_while_pinned, empty),
		cmocka_unit_test_setup(test_due_in, empty),
		cmocka_unit_test_setup(test_rendition_switch, empty),
		cmocka_unit_test_setup(test_remove_due, empty),
		cmocka_unit_test_setup(test_removal_skipped_when_pinned_again,
				       empty),
		cmocka_unit_test_setup(test_pin_waits_for_removal, empty),
		cmocka_unit_test_setup(test_failing_sink_retried, empty),
		cmocka_unit_test_setup(test_worker_step, empty),
		cmocka_unit_test_setup(test_migration_backfill, empty),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
