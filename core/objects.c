/*
 * objects.c - pins, references and removals of stored objects (see
 * objects.h).
 *
 * Every statement names the row by its primary key, so a pin, a reference
 * and a removal of the same key meet on one row lock and never on a gap.
 * The remover holds that lock across the sink's remove: the one window
 * where an object is neither in the sink for sure nor free to be put
 * again is closed to pins, which wait for it.
 */
#include "objects.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

/* 1 while a pin holds the row: a pin not yet followed by its reference
 * that has not ended. */
#define PINNED "(pins > 0 AND pinned_until > NOW(6))"

dr_status objects_pin(dr_db *db, const char *const *keys,
		      const char *const *kinds, size_t n, double hold,
		      dr_error *err)
{
	int64_t us = (int64_t)(hold * 1e6);
	dr_status st;

	if (db_in_transaction(db))
		return dr_fail(err, DR_ERR_INTERNAL, "in_transaction",
			       "objects are pinned in a transaction of their "
			       "own");
	if (n == 0)
		return DR_OK;
	st = db_begin(db, err);
	for (size_t i = 0; i < n && st == DR_OK; i++)
		st = db_exec(db,
			     "INSERT INTO objects (storage_key, kind, refs,"
			     " state, remove_after, pins, pinned_until,"
			     " created_at, updated_at)"
			     " VALUES (?, ?, 0, 'pinned',"
			     " NOW(6) + INTERVAL ? MICROSECOND, 1,"
			     " NOW(6) + INTERVAL ? MICROSECOND, NOW(6), NOW(6))"
			     " ON DUPLICATE KEY UPDATE"
			     " remove_after = IF(refs > 0, NULL,"
			     " IF(state = 'removing', remove_after,"
			     " GREATEST(COALESCE(remove_after, NOW(6)),"
			     " NOW(6) + INTERVAL ? MICROSECOND))),"
			     " state = IF(refs > 0, 'stored',"
			     " IF(state = 'removing', 'removing', 'pinned')),"
			     " pins = IF(pinned_until > NOW(6), pins + 1, 1),"
			     " pinned_until = GREATEST(COALESCE(pinned_until,"
			     " NOW(6)), NOW(6) + INTERVAL ? MICROSECOND),"
			     " updated_at = NOW(6)",
			     NULL, err,
			     DB_ARGS(DB_STR(keys[i]), DB_STR(kinds[i]),
				     DB_INT(us), DB_INT(us), DB_INT(us),
				     DB_INT(us)));
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK && db_in_transaction(db))
		db_rollback(db);
	return st;
}

/* The pin count's share of a reference or an unpin: one pin less, and
 * none left clears the pin's end (pins is assigned after pinned_until, so
 * both read the count before the decrement). */
#define UNPIN                                                                  \
	" pinned_until = IF(pins <= 1, NULL, pinned_until),"                   \
	" pins = IF(pins > 0, pins - 1, 0),"

dr_status objects_ref(dr_db *db, const char *key, const char *kind,
		      uint64_t bytes, dr_error *err)
{
	return db_exec(
		db,
		"INSERT INTO objects (storage_key, kind, bytes, refs,"
		" state, remove_after, created_at, updated_at)"
		" VALUES (?, ?, ?, 1, 'stored', NULL, NOW(6), NOW(6))"
		" ON DUPLICATE KEY UPDATE refs = refs + 1,"
		" bytes = VALUES(bytes), state = 'stored',"
		" remove_after = NULL, attempts = 0, last_error = NULL," UNPIN
		" updated_at = NOW(6)",
		NULL, err, DB_ARGS(DB_STR(key), DB_STR(kind), DB_U64(bytes)));
}

dr_status objects_unpin(dr_db *db, const char *key, dr_error *err)
{
	return db_exec(db,
		       "UPDATE objects SET" UNPIN " updated_at = NOW(6)"
		       " WHERE storage_key = ?",
		       NULL, err, DB_ARGS(DB_STR(key)));
}

/* Keys one statement of objects_unref_many() names at most. */
#define LIST 100

/* Fill args[0..LIST) with keys[0..m), repeating the last. */
static void list_args(dr_db_arg *args, const char *const *keys, size_t m)
{
	for (size_t i = 0; i < LIST; i++)
		args[i] = DB_STR(keys[i < m ? i : m - 1]);
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Lock the rows of keys[0..n) (sorted) and count into *released those
 * whose refs is at most their count. */
static dr_status lock_counted(dr_db *db, const char *const *keys,
			      const unsigned *counts, size_t n,
			      uint64_t *released, dr_error *err)
{
	static char *sql;
	const char *text = db_sql_list("SELECT storage_key, refs FROM objects"
				       " WHERE storage_key IN (?*)"
				       " ORDER BY storage_key FOR UPDATE",
				       LIST, &sql);
	dr_db_arg args[LIST];
	dr_status st = DR_OK;

	for (size_t at = 0; at < n && st == DR_OK; at += LIST) {
		size_t m = n - at < LIST ? n - at : LIST;
		dr_db_rows *rows = NULL;

		list_args(args, keys + at, m);
		st = db_query(db, text, &rows, err, args, LIST);
		for (size_t r = 0; st == DR_OK && r < rows->n_rows; r++) {
			const char *k = db_cell(rows, r, 0);
			const char *const *hit = bsearch(
				&k, keys + at, m, sizeof(*keys), cmp_key);

			if (hit && strtoull(db_cell(rows, r, 1), NULL, 10) <=
					   counts[hit - keys])
				(*released)++;
		}
		db_rows_free(rows);
	}
	return st;
}

dr_status objects_unref_many(dr_db *db, const char *const *keys,
			     const unsigned *counts, size_t n, double grace,
			     uint64_t *released, dr_error *err)
{
	/* refs is assigned last, so the other columns read the count
	 * before the decrement whichever way the server orders the SET
	 * list. A NULL interval (grace < 0) gives a NULL remove_after:
	 * never due. */
	static char *sql;
	const char *text = db_sql_list(
		"UPDATE objects SET state = IF(refs <= ?, 'removing', state),"
		" remove_after = IF(refs <= ?,"
		" NOW(6) + INTERVAL ? MICROSECOND, remove_after),"
		" updated_at = NOW(6), refs = IF(refs > ?, refs - ?, 0)"
		" WHERE storage_key IN (?*)",
		LIST, &sql);
	dr_db_arg us = grace >= 0 ? DB_INT((int64_t)(grace * 1e6)) : DB_NULL;
	dr_db_arg args[5 + LIST];
	const char **group;
	uint64_t mine = 0;
	dr_status st;

	if (n == 0)
		return DR_OK;
	st = lock_counted(db, keys, counts, n, &mine, err);
	if (st != DR_OK)
		return st;
	/* One statement per LIST keys of one count (nearly always 1). */
	group = dr_xmalloc(n * sizeof(*group));
	for (size_t i = 0; i < n && st == DR_OK; i++) {
		size_t m = 0;
		int first = 1;

		for (size_t j = 0; j < i && first; j++)
			first = counts[j] != counts[i];
		if (!first)
			continue; /* this count's keys went with an earlier one
				   */
		for (size_t j = i; j < n; j++)
			if (counts[j] == counts[i])
				group[m++] = keys[j];
		for (size_t at = 0; at < m && st == DR_OK; at += LIST) {
			size_t k = m - at < LIST ? m - at : LIST;

			args[0] = args[1] = args[3] = args[4] =
				DB_INT((int64_t)counts[i]);
			args[2] = us;
			list_args(args + 5, group + at, k);
			st = db_exec(db, text, NULL, err, args, 5 + LIST);
		}
	}
	free(group);
	if (st == DR_OK && released)
		*released += mine;
	return st;
}

dr_status objects_unref(dr_db *db, const char *key, unsigned n, double grace,
			int *released, dr_error *err)
{
	uint64_t r = 0;
	dr_status st = objects_unref_many(db, &key, &n, 1, grace, &r, err);

	if (released)
		*released = r > 0;
	return st;
}

/* Record a failed removal of `key` (in the open transaction): attempts
 * + 1, the error, and the next try after the backoff. */
static dr_status removal_failed(dr_db *db, const char *key, unsigned attempts,
				const dr_error *why, dr_error *err)
{
	double delay = DR_OBJECT_RETRY_BASE;

	for (unsigned i = 1; i < attempts && delay < DR_OBJECT_RETRY_MAX; i++)
		delay *= 2;
	if (delay > DR_OBJECT_RETRY_MAX)
		delay = DR_OBJECT_RETRY_MAX;
	return db_exec(db,
		       "UPDATE objects SET attempts = attempts + 1,"
		       " last_error = LEFT(?, 255),"
		       " remove_after = NOW(6) + INTERVAL ? MICROSECOND,"
		       " updated_at = NOW(6) WHERE storage_key = ?",
		       NULL, err,
		       DB_ARGS(DB_STR(why->message),
			       DB_INT((int64_t)(delay * 1e6)), DB_STR(key)));
}

/* Remove one due object: lock its row, re-check, remove, delete the row
 * (or record the sink's failure); one transaction. */
static dr_status remove_one(dr_db *db, struct dr_instance *sink,
			    const char *key, dr_object_removals *r,
			    dr_error *err)
{
	const dr_sink_ops *ops = sink->plugin->desc->sink;
	dr_db_rows *rows = NULL;
	unsigned attempts;
	int removed = 0;
	dr_error why;
	dr_status st;

	st = db_begin(db, err);
	if (st != DR_OK)
		return st;
	st = db_query(db,
		      "SELECT attempts, " PINNED " FROM objects"
		      " WHERE storage_key = ? AND refs = 0"
		      " AND remove_after <= NOW(6) FOR UPDATE",
		      &rows, err, DB_ARGS(DB_STR(key)));
	if (st != DR_OK)
		goto end;
	if (rows->n_rows == 0 || strcmp(db_cell(rows, 0, 1), "0") != 0) {
		/* Used again since it was read, or pinned: kept, and a pin
		 * moves the removal to its end, so the object is not looked
		 * at again before. */
		r->skipped++;
		if (rows->n_rows == 1)
			st = db_exec(db,
				     "UPDATE objects SET remove_after ="
				     " GREATEST(remove_after, pinned_until)"
				     " WHERE storage_key = ?",
				     NULL, err, DB_ARGS(DB_STR(key)));
		goto end;
	}
	attempts = (unsigned)strtoul(db_cell(rows, 0, 0), NULL, 10);
	dr_error_clear(&why);
	if (ops->remove(sink->state, key, &why) == DR_OK) {
		st = db_exec(db, "DELETE FROM objects WHERE storage_key = ?",
			     NULL, err, DB_ARGS(DB_STR(key)));
		removed = st == DR_OK;
	} else {
		st = removal_failed(db, key, attempts + 1, &why, err);
		if (st == DR_OK) {
			r->failed++;
			dr_log(DR_LOG_WARNING,
			       "event=object.remove_failed key=%s attempts=%u "
			       "code=%s reason=\"%.200s\"",
			       key, attempts + 1, why.code, why.message);
		}
	}
end:
	db_rows_free(rows);
	if (st == DR_OK)
		st = db_commit(db, err);
	if (st != DR_OK) {
		/* After a failed COMMIT too: the handle stays failed until
		 * rolled back (db.h). */
		db_rollback(db);
		return st;
	}
	if (removed) {
		r->removed++;
		dr_log(DR_LOG_INFO, "event=object.removed key=%s", key);
		metrics_add(db, "darkroom_objects_removed_total", "", 1);
	}
	return DR_OK;
}

dr_status objects_remove_due(dr_db *db, struct dr_instance *sink,
			     unsigned batch, dr_object_removals *r,
			     dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	if (db_in_transaction(db))
		return dr_fail(err, DR_ERR_INTERNAL, "in_transaction",
			       "objects are removed in transactions of their "
			       "own");
	st = db_query(db,
		      "SELECT storage_key FROM objects WHERE remove_after <="
		      " NOW(6) AND refs = 0 ORDER BY remove_after LIMIT ?",
		      &rows, err, DB_ARGS(DB_INT((int64_t)batch)));
	if (st != DR_OK)
		return st;
	for (size_t i = 0; i < rows->n_rows && st == DR_OK; i++) {
		r->looked++;
		st = remove_one(db, sink, db_cell(rows, i, 0), r, err);
	}
	db_rows_free(rows);
	return st;
}

dr_status objects_count_due(dr_db *db, uint64_t *n, dr_error *err)
{
	dr_db_rows *rows = NULL;
	dr_status st;

	*n = 0;
	st = db_query(db,
		      "SELECT COUNT(*) FROM objects WHERE remove_after <="
		      " NOW(6) AND refs = 0 AND NOT " PINNED,
		      &rows, err, DB_NOARGS);
	if (st != DR_OK)
		return st;
	*n = strtoull(db_cell(rows, 0, 0), NULL, 10);
	db_rows_free(rows);
	return DR_OK;
}

dr_status objects_due_in(dr_db *db, double *seconds, dr_error *err)
{
	return db_query_seconds(db,
				"SELECT TIMESTAMPDIFF(MICROSECOND, NOW(6),"
				" MIN(remove_after)) FROM objects",
				seconds, err);
}

int objects_step(dr_object_pass *p, dr_db *db, struct dr_instance *sink,
		 double interval, double now)
{
	uint64_t looked;
	dr_error err;

	if (!sink)
		return 0;
	if (!p->busy) {
		if (p->started && now < p->next)
			return 0;
		p->started = 1;
		p->busy = 1;
		memset(&p->done, 0, sizeof(p->done));
	}
	looked = p->done.looked;
	dr_error_clear(&err);
	if (objects_remove_due(db, sink, DR_OBJECT_BATCH, &p->done, &err) !=
	    DR_OK) {
		dr_log(DR_LOG_WARNING,
		       "event=objects.remove_pass_failed code=%s "
		       "reason=\"%.200s\"",
		       err.code, err.message);
	} else if (p->done.looked - looked >= DR_OBJECT_BATCH) {
		return 1;
	}
	if (p->done.removed || p->done.failed)
		dr_log(DR_LOG_INFO,
		       "event=objects.removed removed=%llu failed=%llu "
		       "skipped=%llu",
		       (unsigned long long)p->done.removed,
		       (unsigned long long)p->done.failed,
		       (unsigned long long)p->done.skipped);
	p->busy = 0;
	p->next = now + interval;
	return 0;
}

void objects_step_soon(dr_object_pass *p, dr_db *db, double now)
{
	double in = -1;
	dr_error err;

	dr_error_clear(&err);
	if (p->busy || objects_due_in(db, &in, &err) != DR_OK || in < 0)
		return;
	if (now + in < p->next)
		p->next = now + in;
}
