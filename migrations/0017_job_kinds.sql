-- 0017_job_kinds: what a job runs (POST /v1/jobs with `steps`,
-- POST /v1/trainings).
--
-- jobs.kind: `prediction` (one model call), `training` (a fine-tuning
--   run: the adapter's training operation), or `workflow` (a sequence of
--   model calls; the job itself calls no provider).
-- A workflow's steps are jobs of their own (kind `prediction`), each with
--   its own status, attempts, prediction, events, outputs, leases and
--   retries:
--   parent_id:  the workflow job the step belongs to, NULL for every other
--               job;
--   step_index: the step's place in the workflow, from 0;
--   step_name:  the step's `name`, unique within the workflow; on a
--               workflow that failed or was canceled, the step that ended
--               it (error.workflow_step).
--   A workflow job is created with all its steps in one transaction; only
--   the step that runs next is due. The workflow's status follows its
--   steps' (core/jobstate.c) in the transactions that move them.
-- jobs.training_version: a succeeded training's new model version
--   ("owner/name:<version id>"), NULL otherwise.
--
-- Re-runnable: IF NOT EXISTS throughout.

ALTER TABLE jobs
  ADD COLUMN IF NOT EXISTS kind ENUM('prediction','training','workflow')
      NOT NULL DEFAULT 'prediction',
  ADD COLUMN IF NOT EXISTS parent_id CHAR(28) CHARACTER SET ascii NULL,
  ADD COLUMN IF NOT EXISTS step_index SMALLINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS step_name VARCHAR(64) CHARACTER SET ascii NULL,
  ADD COLUMN IF NOT EXISTS training_version VARCHAR(255) NULL,
  ADD INDEX IF NOT EXISTS jobs_parent (parent_id, step_index);
