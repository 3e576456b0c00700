-- 0001_init: the whole schema of darkroom.
--
-- Times are DATETIME(6) in UTC, written from the database clock (NOW(6))
-- wherever ordering or leases depend on them. Text is utf8mb4; ids and
-- hashes are ascii. Every table is InnoDB (the queue relies on row locks
-- and SKIP LOCKED). Provider ids, webhook ids and idempotency keys are
-- opaque and case-sensitive, so their keys compare with ascii_bin (the
-- default ascii_general_ci would make "msg_aB" and "msg_Ab" one key).
--
-- Every statement is re-runnable (IF NOT EXISTS): MariaDB commits DDL at
-- once, so after a failure half-way `darkroom migrate` simply runs the
-- file again (see core/migrate.c).

-- jobs: one row per job, and the durable queue at the same time.
--   A worker may act on a job when run_at <= NOW(6); final jobs with
--   nothing left to do have run_at NULL. Claiming a job sets lease_owner,
--   bumps lease_version (the fencing token) and moves run_at to the lease
--   expiry, so an expired lease makes the job claimable again with no
--   separate rescue query. Every write of an attempt checks
--   lease_version; bumping it (cancel, claim) fences out older holders.
CREATE TABLE IF NOT EXISTS jobs (
  id               CHAR(28) CHARACTER SET ascii NOT NULL,
  status           ENUM('queued','starting','processing','persisting',
                        'succeeded','failed','canceled') NOT NULL,
  step             VARCHAR(16) CHARACTER SET ascii NOT NULL DEFAULT 'submit',
  adapter          VARCHAR(64) NOT NULL,
  model            VARCHAR(255) NOT NULL,
  version          VARCHAR(128) NULL,
  input            MEDIUMTEXT NOT NULL,
  prompt           TEXT NULL,
  metadata         TEXT NULL,
  renditions       TEXT NOT NULL,
  callback_url     VARCHAR(2048) NULL,
  prediction_id    VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
  prediction_status VARCHAR(16) CHARACTER SET ascii NULL,
  prediction       MEDIUMTEXT NULL,
  predict_time     DOUBLE NULL,
  progress         DOUBLE NULL,
  attempts         INT UNSIGNED NOT NULL DEFAULT 0,
  error_step       VARCHAR(16) CHARACTER SET ascii NULL,
  error_code       VARCHAR(48) CHARACTER SET ascii NULL,
  error_message    VARCHAR(1024) NULL,
  cancel_requested TINYINT(1) NOT NULL DEFAULT 0,
  run_at           DATETIME(6) NULL,
  lease_owner      VARCHAR(64) CHARACTER SET ascii NULL,
  lease_version    BIGINT UNSIGNED NOT NULL DEFAULT 0,
  submitted_at     DATETIME(6) NULL,
  provider_deadline DATETIME(6) NULL,
  callback_state   ENUM('none','pending','delivered','failed') NOT NULL DEFAULT 'none',
  callback_attempts INT UNSIGNED NOT NULL DEFAULT 0,
  created_at       DATETIME(6) NOT NULL,
  updated_at       DATETIME(6) NOT NULL,
  completed_at     DATETIME(6) NULL,
  PRIMARY KEY (id),
  KEY jobs_ready (run_at, id),
  KEY jobs_status (status, id),
  KEY jobs_model (model, id),
  KEY jobs_adapter (adapter, id),
  UNIQUE KEY jobs_prediction (adapter, prediction_id),
  FULLTEXT KEY jobs_prompt (prompt)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- job_metadata: the client's metadata, one row per key, for search.
CREATE TABLE IF NOT EXISTS job_metadata (
  job_id   CHAR(28) CHARACTER SET ascii NOT NULL,
  k        VARCHAR(64) NOT NULL,
  v        VARCHAR(1024) NOT NULL,
  PRIMARY KEY (job_id, k),
  KEY job_metadata_kv (k, v(191), job_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- job_events: append-only audit log of every state change, provider
-- webhook, submit, error and callback delivery of a job.
CREATE TABLE IF NOT EXISTS job_events (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  job_id      CHAR(28) CHARACTER SET ascii NOT NULL,
  at          DATETIME(6) NOT NULL,
  kind        VARCHAR(32) CHARACTER SET ascii NOT NULL,
  from_status VARCHAR(16) CHARACTER SET ascii NULL,
  to_status   VARCHAR(16) CHARACTER SET ascii NULL,
  detail      MEDIUMTEXT NULL,
  PRIMARY KEY (id),
  KEY job_events_job (job_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- outputs: every file or text a prediction produced. Rows are recorded
--   'pending' when the prediction succeeds (`source`: the URL, data: URI
--   or text as the provider gave it; `source_url` for display) and become
--   'stored' once persisted. `storage_key` is content-addressed, so equal
--   files share one object.
CREATE TABLE IF NOT EXISTS outputs (
  id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  job_id         CHAR(28) CHARACTER SET ascii NOT NULL,
  idx            INT UNSIGNED NOT NULL,
  kind           ENUM('image','video','audio','text','file') NOT NULL,
  source_url     VARCHAR(2048) NULL,
  source         MEDIUMTEXT NULL,
  state          ENUM('pending','stored','failed') NOT NULL DEFAULT 'pending',
  storage_key    VARCHAR(512) CHARACTER SET ascii NULL,
  url            VARCHAR(2048) NULL,
  content_type   VARCHAR(127) CHARACTER SET ascii NULL,
  bytes          BIGINT UNSIGNED NULL,
  sha256         CHAR(64) CHARACTER SET ascii NULL,
  width          INT UNSIGNED NULL,
  height         INT UNSIGNED NULL,
  format         VARCHAR(16) CHARACTER SET ascii NULL,
  blurhash       VARCHAR(128) CHARACTER SET ascii NULL,
  dominant_color CHAR(7) CHARACTER SET ascii NULL,
  phash          CHAR(16) CHARACTER SET ascii NULL,
  text           MEDIUMTEXT NULL,
  created_at     DATETIME(6) NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY outputs_job_idx (job_id, idx),
  KEY outputs_sha256 (sha256),
  KEY outputs_created (created_at, id),
  FULLTEXT KEY outputs_text (text)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- renditions: derived images of an output, one per preset. `preset_hash`
-- identifies the preset settings that made it, so reprocessing writes
-- only what is new or changed.
CREATE TABLE IF NOT EXISTS renditions (
  output_id    BIGINT UNSIGNED NOT NULL,
  name         VARCHAR(64) CHARACTER SET ascii NOT NULL,
  storage_key  VARCHAR(512) CHARACTER SET ascii NOT NULL,
  url          VARCHAR(2048) NOT NULL,
  content_type VARCHAR(127) CHARACTER SET ascii NOT NULL,
  width        INT UNSIGNED NOT NULL,
  height       INT UNSIGNED NOT NULL,
  bytes        BIGINT UNSIGNED NOT NULL,
  preset_hash  CHAR(16) CHARACTER SET ascii NOT NULL,
  created_at   DATETIME(6) NOT NULL,
  PRIMARY KEY (output_id, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- webhook_deliveries: ids of provider webhook deliveries already applied,
-- kept at least as long as the signature tolerance (duplicates are
-- acknowledged without effect).
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  adapter     VARCHAR(64) CHARACTER SET ascii NOT NULL,
  delivery_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  received_at DATETIME(6) NOT NULL,
  PRIMARY KEY (adapter, delivery_id),
  KEY webhook_deliveries_age (received_at)
) ENGINE=InnoDB DEFAULT CHARSET=ascii;

-- idempotency_keys: Idempotency-Key of POST /v1/jobs, per API key.
--   `scope` is a hash of the API key (never the key itself), so two
--   clients cannot collide; `request_hash` is the SHA-256 of the body.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  scope        CHAR(16) CHARACTER SET ascii NOT NULL,
  idem_key     VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  request_hash CHAR(64) CHARACTER SET ascii NOT NULL,
  job_id       CHAR(28) CHARACTER SET ascii NOT NULL,
  created_at   DATETIME(6) NOT NULL,
  PRIMARY KEY (scope, idem_key),
  KEY idempotency_keys_age (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=ascii;
