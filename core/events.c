/*
 * events.c - a job's event log, oldest first (see events.h).
 */
#include "events.h"

dr_status events_list(dr_db *db, const char *id, dr_db_rows **rows,
		      dr_error *err)
{
	return db_query(db,
			"SELECT at, kind, from_status, to_status, detail"
			" FROM job_events WHERE job_id = ? ORDER BY id",
			rows, err, DB_ARGS(DB_STR(id)));
}
