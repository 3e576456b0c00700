/*
 * migrate.h - schema migrations.
 *
 * migrations/NNNN_name.sql files are applied in order, each recorded in
 * schema_migrations(version, name, checksum, applied_at). Running twice
 * applies nothing new. A database recording a version the code does not
 * know is refused (the code is older than the database).
 */
#ifndef DR_MIGRATE_H
#define DR_MIGRATE_H

#include <stdio.h>

#include "buf.h"
#include "config.h"
#include "error.h"

/*
 * Create the configured database if missing and apply every migration in
 * `dir` not yet recorded, printing one line per applied file to `out`
 * (may be NULL). DR_ERR_CONFLICT when the database is newer than `dir`,
 * DR_ERR_IO for an unreadable folder, DR_ERR_DATABASE for a failing
 * statement (with the file and statement number in the message).
 */
dr_status migrate_run(const dr_config *cfg, const char *dir, FILE *out,
		      dr_error *err) DR_WARN_UNUSED;

/*
 * Append `name` to b as a MariaDB quoted identifier: in backticks, each
 * backtick inside doubled ("a`b" -> "`a``b`"), so no name can end the
 * identifier early. DR_ERR_INVALID for an empty name, DR_ERR_TOO_LARGE
 * when b's limit is reached (b unchanged then).
 */
dr_status migrate_quote_ident(dr_buf *b, const char *name) DR_WARN_UNUSED;

#endif
