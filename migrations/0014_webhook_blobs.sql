-- 0014_webhook_blobs: files a provider sent inside a webhook as data:
-- URIs, decoded, until the worker has stored them.
--
-- The FastCGI app has no output sink, so it keeps the bytes here, in
-- pieces of at most 1 MiB (a row stays far below max_allowed_packet and
-- MEDIUMBLOB's 16 MiB whatever the file's size; each row says the
-- file's `total` bytes, so a reader can tell a whole file from one whose
-- rows went meanwhile), and the webhook's
-- document keeps a reference of a few dozen bytes instead
-- (data:<type>;darkroom-blob=<id>,), so jobs.prediction and
-- outputs.source stay small. `id` is 128 random bits (base32), so no
-- delivery can name another's file. `job_id` is NULL until the delivery's
-- outputs are recorded for a job, in the same transaction; rows of a
-- delivery that recorded none (a duplicate, a stale or unknown
-- prediction) are deleted by the app right after, and any left by a crash
-- in between by the worker an hour later. The worker's index transaction
-- deletes a job's rows once its outputs are stored; deleting a job
-- deletes them too.
CREATE TABLE IF NOT EXISTS webhook_blobs (
  id          CHAR(26) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  seq         INT UNSIGNED NOT NULL,
  job_id      CHAR(28) CHARACTER SET ascii NULL,
  media_type  VARCHAR(127) CHARACTER SET ascii NOT NULL DEFAULT '',
  total       BIGINT UNSIGNED NOT NULL,
  data        MEDIUMBLOB NOT NULL,
  created_at  DATETIME(6) NOT NULL,
  PRIMARY KEY (id, seq),
  KEY webhook_blobs_job (job_id, created_at)
) ENGINE=InnoDB;

-- outputs.source_kind 'blob': `source` is the id of such a file.
ALTER TABLE outputs
  MODIFY COLUMN source_kind ENUM('url','data','path','blob') NULL;
