-- 0009_objects: one row per stored object, with the number of index rows
-- that use it, so an object nothing uses any more can be removed.
--
-- objects: `storage_key` as in outputs and renditions; `kind` says what
--   the object is ('original': an output's file or text; 'rendition'),
--   a plain string, so other kinds of stored files join without another
--   migration; `bytes` its size once indexed; `refs` the outputs and
--   renditions rows whose storage_key it is. `state`:
--     pinned    a worker is about to upload it (refs 0): kept until
--               `remove_after`, the end of the pin;
--     stored    refs > 0;
--     removing  refs fell to 0: the worker removes it from the sink at
--               `remove_after` ([retention] superseded after the last
--               reference went), re-checking refs under a row lock;
--               `attempts` and `last_error` count a sink that failed,
--               and remove_after moves on with backoff.
--   `objects_due` finds due removals along the time.
--
-- Rows are counted from the outputs and renditions that exist now.
-- Re-runnable: CREATE ... IF NOT EXISTS, and the counts are written
-- again from the index rows (the truth) when the backfill runs again.

CREATE TABLE IF NOT EXISTS objects (
  storage_key  VARCHAR(512) CHARACTER SET ascii NOT NULL,
  kind         VARCHAR(16) CHARACTER SET ascii NOT NULL,
  bytes        BIGINT UNSIGNED NULL,
  refs         INT UNSIGNED NOT NULL DEFAULT 0,
  state        ENUM('pinned','stored','removing') NOT NULL,
  remove_after DATETIME(6) NULL,
  attempts     INT UNSIGNED NOT NULL DEFAULT 0,
  last_error   VARCHAR(255) NULL,
  created_at   DATETIME(6) NOT NULL,
  updated_at   DATETIME(6) NOT NULL,
  PRIMARY KEY (storage_key),
  KEY objects_due (remove_after)
) ENGINE=InnoDB DEFAULT CHARSET=ascii;

INSERT INTO objects (storage_key, kind, bytes, refs, state, created_at,
                     updated_at)
  SELECT storage_key, 'original', MAX(bytes), COUNT(*), 'stored',
         MIN(created_at), NOW(6)
    FROM outputs WHERE storage_key IS NOT NULL GROUP BY storage_key
  ON DUPLICATE KEY UPDATE refs = VALUES(refs), state = 'stored',
                          remove_after = NULL;

INSERT INTO objects (storage_key, kind, bytes, refs, state, created_at,
                     updated_at)
  SELECT storage_key, 'rendition', MAX(bytes), COUNT(*), 'stored',
         MIN(created_at), NOW(6)
    FROM renditions GROUP BY storage_key
  ON DUPLICATE KEY UPDATE refs = VALUES(refs), state = 'stored',
                          remove_after = NULL;
