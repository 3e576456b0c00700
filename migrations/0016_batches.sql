-- 0016_batches: batches of jobs (POST /v1/batches).
--
-- batches: one row per batch. `id` is "b_" and a ULID, like job ids.
--   `idem_scope`/`idem_key`/`request_hash`: the Idempotency-Key the batch
--   was made with (scope: the API key's hash, as in idempotency_keys),
--   NULL without one; a unique key makes a repeat find the batch.
--   `callback_url`: where its one batch.completed message goes (a row of
--   callback_deliveries, id "msg_<batch id>", carried by the job whose
--   end completed the batch), NULL for none.
--   `n_jobs` is how many jobs it was made with. `completed_at` is set once,
--   in the transaction of the job end that left no job of the batch
--   running (core/jobstate.c), and never cleared.
--   The counts of the batch object are not stored: they are counted from
--   the jobs (GROUP BY status on jobs_batch), so they are right whatever
--   number of workers moves the jobs, and a deleted job simply leaves them.
--
-- jobs.batch_id: the batch a job belongs to (NULL for a job of its own);
-- jobs.batch_key: the item's `key`, NULL when it had none.
--
-- Re-runnable: IF NOT EXISTS throughout.

CREATE TABLE IF NOT EXISTS batches (
  id           CHAR(28) CHARACTER SET ascii NOT NULL,
  idem_scope   CHAR(16) CHARACTER SET ascii NULL,
  idem_key     VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL,
  request_hash CHAR(64) CHARACTER SET ascii NULL,
  callback_url VARCHAR(2048) NULL,
  n_jobs       INT UNSIGNED NOT NULL,
  created_at   DATETIME(6) NOT NULL,
  completed_at DATETIME(6) NULL,
  PRIMARY KEY (id),
  UNIQUE KEY batches_idem (idem_scope, idem_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

ALTER TABLE jobs
  ADD COLUMN IF NOT EXISTS batch_id CHAR(28) CHARACTER SET ascii NULL,
  ADD COLUMN IF NOT EXISTS batch_key VARCHAR(255) NULL,
  ADD INDEX IF NOT EXISTS jobs_batch (batch_id, status);
