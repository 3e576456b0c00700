-- 0003_metrics: counters of GET /metrics that must survive restarts and
-- add up across every process (the FastCGI app and each worker), and the
-- heartbeats of worker processes. See core/metrics.c.

-- metric_counters: one row per Prometheus sample that only ever grows.
--   `name` is the full sample name (darkroom_..._total, or a histogram's
--   _bucket/_sum/_count); `labels` the label text exactly as exposed
--   (`adapter="replicate",result="accepted"`, already escaped; '' for
--   none). Writers add with INSERT ... ON DUPLICATE KEY UPDATE, so no
--   process holds a counter in memory.
CREATE TABLE IF NOT EXISTS metric_counters (
  name   VARCHAR(64) CHARACTER SET ascii NOT NULL,
  labels VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  value  DOUBLE NOT NULL DEFAULT 0,
  PRIMARY KEY (name, labels)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- worker_heartbeats: one row per worker process (owner = host:pid, the
--   lease owner name), refreshed every few seconds; a process seen within
--   15 seconds counts as alive. A process that stops cleanly deletes its
--   row; rows of killed processes simply age out.
CREATE TABLE IF NOT EXISTS worker_heartbeats (
  owner   VARCHAR(64) CHARACTER SET ascii NOT NULL,
  pid     INT UNSIGNED NOT NULL,
  host    VARCHAR(64) NOT NULL,
  seen_at DATETIME(6) NOT NULL,
  PRIMARY KEY (owner),
  KEY worker_heartbeats_seen (seen_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
