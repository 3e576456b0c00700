-- 0013_fair_claims.sql - claims round-robin across tenants ([server]
-- fair_key = metadata.KEY, core/queue.h).
--
-- jobs.fair_value: the job's value of the metadata key fair_key named
--   when the job was created ('' without fair_key, or when the job has
--   no such key), cut to 255 characters. Compared byte for byte
--   (utf8mb4_bin): "Acme" and "acme" are two tenants. It is written at
--   intake only, so a change of fair_key applies to jobs created after it;
--   rows already here keep '' (fair_key did not exist before this
--   migration, so '' is what intake would have written for them).
-- jobs_fair (fair_value, run_at): a claim finds the tenants with a due
--   job by a loose index scan (one dive per tenant) and takes a tenant's
--   oldest due job by one index lookup.
-- fair_cursor: one row, the tenant served last; a claim serves the next
--   tenant after it that has a due job.
--
-- Re-runnable: IF NOT EXISTS throughout, INSERT IGNORE.

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS
  fair_value VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin
  NOT NULL DEFAULT '';

ALTER TABLE jobs ADD INDEX IF NOT EXISTS jobs_fair (fair_value, run_at);

CREATE TABLE IF NOT EXISTS fair_cursor (
  id          TINYINT UNSIGNED NOT NULL,
  fair_value  VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO fair_cursor (id, fair_value) VALUES (1, '');
