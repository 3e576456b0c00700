-- 0011_callback_deliveries: client callbacks get tables of their own.
--
-- callback_deliveries: one row per message darkroom owes a client, the
--   single truth about it. `id` is the message's webhook-id, the same on
--   every try (receivers drop duplicates by it); a job's end is
--   'msg_<job id>_<completed_at as epoch seconds, "." as "_">', so a job
--   retried by its client that ends again owes a new message with a new
--   id. `type` is the envelope's type (job.succeeded, job.failed,
--   job.canceled); `job_id` names the job it is about, and is NULL-able
--   so that messages about something else (a batch) can live here too.
--   `url` is the callback_url when the message was made. `state`:
--   pending (a try is due at `next_at`), delivered (a 2xx answer, at
--   `delivered_at`), failed (given up: the schedule ran out, 410, an
--   address never allowed). `attempts` counts every try; `round_start`
--   the tries made before the latest manual resend (POST
--   /v1/jobs/{id}/callback/retry), so that Svix's schedule starts again
--   from its first wait. `last_status` is the last try's HTTP status
--   (NULL when it got no answer), `last_error` its error.
--
-- callback_attempts: every try of a delivery: its number (1, 2…), when it
--   started (database clock), how long it took, the HTTP status (NULL for
--   no answer) and the error, cut to the column.
--
-- Both are written by the worker with the fenced write of the job's queue
-- state (core/jobstate.c) and deleted with their job (core/deletion.c).
--
-- Backfill: every job that ended with a callback gets its delivery, with
-- the webhook-id it was sent with, its state and its count of tries; its
-- last status and delivery time come from its "callback" events. Tries
-- made before this migration are not copied into callback_attempts (the
-- job's events still list them). jobs.callback_state and
-- jobs.callback_attempts, which the backfill reads, go in a file of
-- their own (0015_callback_columns.sql), so this one can always run
-- again.
--
-- Re-runnable: IF NOT EXISTS throughout, and an INSERT that skips
-- deliveries already there.

CREATE TABLE IF NOT EXISTS callback_deliveries (
  id           VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  type         VARCHAR(32) CHARACTER SET ascii NOT NULL,
  job_id       CHAR(28) CHARACTER SET ascii NULL,
  url          VARCHAR(2048) NOT NULL,
  state        ENUM('pending','delivered','failed') NOT NULL,
  attempts     INT UNSIGNED NOT NULL DEFAULT 0,
  round_start  INT UNSIGNED NOT NULL DEFAULT 0,
  last_status  SMALLINT UNSIGNED NULL,
  last_error   VARCHAR(1024) NULL,
  next_at      DATETIME(6) NULL,
  created_at   DATETIME(6) NOT NULL,
  delivered_at DATETIME(6) NULL,
  PRIMARY KEY (id),
  KEY callback_deliveries_job (job_id, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS callback_attempts (
  delivery_id  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  attempt      INT UNSIGNED NOT NULL,
  started_at   DATETIME(6) NOT NULL,
  duration_ms  INT UNSIGNED NOT NULL,
  http_status  SMALLINT UNSIGNED NULL,
  error        VARCHAR(1024) NULL,
  PRIMARY KEY (delivery_id, attempt)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO callback_deliveries (id, type, job_id, url, state, attempts,
                                 last_status, next_at, created_at,
                                 delivered_at)
  SELECT CONCAT('msg_', j.id, '_',
                REPLACE(UNIX_TIMESTAMP(j.completed_at), '.', '_')),
         CONCAT('job.', j.status), j.id, j.callback_url, j.callback_state,
         j.callback_attempts,
         (SELECT NULLIF(JSON_VALUE(e.detail, '$.http_status'), '0')
            FROM job_events e
           WHERE e.job_id = j.id AND e.kind = 'callback'
             AND JSON_VALUE(e.detail, '$.http_status') IS NOT NULL
           ORDER BY e.id DESC LIMIT 1),
         IF(j.callback_state = 'pending', COALESCE(j.run_at, NOW(6)), NULL),
         j.completed_at,
         IF(j.callback_state = 'delivered',
            COALESCE((SELECT MAX(e.at) FROM job_events e
                       WHERE e.job_id = j.id AND e.kind = 'callback'
                         AND JSON_VALUE(e.detail, '$.delivery') = 'delivered'),
                     j.completed_at),
            NULL)
    FROM jobs j
   WHERE j.callback_state <> 'none' AND j.callback_url IS NOT NULL
     AND j.completed_at IS NOT NULL
  ON DUPLICATE KEY UPDATE id = callback_deliveries.id;
