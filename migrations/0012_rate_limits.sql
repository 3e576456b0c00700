-- 0012_rate_limits: a create-rate limit per adapter instance, shared by
-- every worker on every host (core/ratelimit.h).
--
-- rate_limits: one row per adapter instance with a `rate` ([adapter "x"]
--   name -> 'x'). GCRA on the database clock: `tat` is the theoretical
--   arrival time of the next create (a create is allowed once
--   tat - tau <= NOW(6)); a job that reserves a slot moves it on by one
--   emission interval. `queue_end` is where the jobs put off beyond the
--   booking horizon stand in line (each one a step further), so they do
--   not all come back at once; NULL when nobody waits. `per_second` and
--   `burst` are the settings of the last worker that used the row, for
--   /metrics and `darkroom limits`. Written only in the limit's own short
--   transaction, never inside a claim.
--
-- jobs.rate_slot: the slot a job booked (a create allowed at that time);
--   the job is released to run_at = rate_slot and, claimed again then,
--   submits without reserving again. NULL when nothing is booked.
--
-- Re-runnable: IF NOT EXISTS throughout.

CREATE TABLE IF NOT EXISTS rate_limits (
  name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  tat DATETIME(6) NOT NULL,
  queue_end DATETIME(6) NULL,
  per_second DOUBLE NOT NULL DEFAULT 0,
  burst INT NOT NULL DEFAULT 1,
  updated_at DATETIME(6) NOT NULL,
  PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS rate_slot DATETIME(6) NULL;
