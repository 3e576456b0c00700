-- 0015_callback_columns: jobs.callback_state and jobs.callback_attempts
-- go. Since 0011 a job's callback lives in callback_deliveries and
-- callback_attempts, and nothing reads these columns; 0011's backfill
-- did, so they are dropped here, in a file of their own, and 0011 can be
-- run again until this one has run.
--
-- Re-runnable: IF EXISTS.
ALTER TABLE jobs
  DROP COLUMN IF EXISTS callback_state,
  DROP COLUMN IF EXISTS callback_attempts;
