-- 0010_deletions: deleting jobs, and objects pinned by count.
--
-- objects: `pins` counts the pins not yet followed by their reference
--   (a worker pins a key before it uploads, its index transaction refers
--   to it), and `pinned_until` is when the latest pin ends. An object is
--   removed only when refs is 0, its removal is due, and no pin holds it
--   (pins 0, or pinned_until passed: a pin that no reference followed, a
--   job that failed, ends by itself). Before, a pin lived in
--   remove_after, which the removal a job delete queues would overwrite.
--   Rows pinned now are carried over as one pin each.
--
-- deletions: one row per deletion of jobs, the audit record of it, never
--   removed by retention. `kind`: 'job' (DELETE /v1/jobs/{id}, `darkroom
--   jobs delete ID`), 'selector' (DELETE /v1/jobs?metadata.K=V, done by
--   the worker in batches), 'retention' (the worker's pass over
--   [retention] jobs). `selector` is the request's filters as JSON (or the
--   job id, or the retention settings); `requested_by` the scope of the
--   API key (16 hex of its SHA-256, as idempotency_keys.scope), or 'cli'
--   or 'retention'. `state`: queued, running, done. The counts:
--   jobs_deleted; jobs_waiting, jobs matched that had not ended (canceled
--   by the deletion, deleted once they end); objects_released, stored
--   objects whose last reference went (removed from the sink by the
--   worker after the commit). `cutoff`: a selector deletes the jobs
--   created up to it (the request's time), never one made later.
--
-- jobs_ended: jobs by status and end time, for [retention] jobs;
-- idempotency_keys_job: the keys of a job, deleted with it.
--
-- Re-runnable: IF NOT EXISTS throughout; the carry-over only touches
-- rows still without a pin count.

ALTER TABLE objects
  ADD COLUMN IF NOT EXISTS pins INT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS pinned_until DATETIME(6) NULL;

UPDATE objects SET pins = 1, pinned_until = remove_after
  WHERE state = 'pinned' AND pins = 0 AND remove_after IS NOT NULL;

CREATE TABLE IF NOT EXISTS deletions (
  id               CHAR(28) CHARACTER SET ascii NOT NULL,
  kind             ENUM('job','selector','retention') NOT NULL,
  state            ENUM('queued','running','done') NOT NULL,
  selector         TEXT NOT NULL,
  requested_by     VARCHAR(64) CHARACTER SET ascii NOT NULL,
  cutoff           DATETIME(6) NOT NULL,
  jobs_deleted     BIGINT UNSIGNED NOT NULL DEFAULT 0,
  jobs_waiting     BIGINT UNSIGNED NOT NULL DEFAULT 0,
  objects_released BIGINT UNSIGNED NOT NULL DEFAULT 0,
  run_at           DATETIME(6) NULL,
  created_at       DATETIME(6) NOT NULL,
  updated_at       DATETIME(6) NOT NULL,
  finished_at      DATETIME(6) NULL,
  PRIMARY KEY (id),
  KEY deletions_ready (run_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

ALTER TABLE jobs ADD INDEX IF NOT EXISTS jobs_ended (status, completed_at);
ALTER TABLE idempotency_keys ADD INDEX IF NOT EXISTS idempotency_keys_job (job_id);
