-- 0019_files: uploaded input files (POST /v1/files) and the jobs that use
-- them.
--
-- files: one row per upload. `id` is "f_" and a ULID, like job ids.
--   `storage_key` is where the sink keeps the bytes: "files/<id>", a
--   private prefix (the web-server configs of conf/ refuse /media/files/,
--   and the s3 sink stores it without a public ACL). `sha256` is of the
--   bytes as received, `content_type` what the bytes are (core/sniff.c),
--   `filename` the client's ?filename= (NULL without one).
--   `expires_at`: created_at + [files] ttl, NULL for never; a file past it
--   that no job still running uses is deleted by the retention pass.
-- job_files: which jobs use which file: a row per ({"$file": id}, job),
--   written in the transaction that creates the job (batch items too).
--   A file is "in use" while a row of it names a job that has not ended;
--   rows of deleted jobs or files are only dead weight, removed with the
--   file.
--
-- Re-runnable: IF NOT EXISTS throughout.

CREATE TABLE IF NOT EXISTS files (
  id           CHAR(28) CHARACTER SET ascii NOT NULL,
  content_type VARCHAR(127) CHARACTER SET ascii NOT NULL,
  bytes        BIGINT UNSIGNED NOT NULL,
  sha256       CHAR(64) CHARACTER SET ascii NOT NULL,
  filename     VARCHAR(255) NULL,
  storage_key  VARCHAR(255) CHARACTER SET ascii NOT NULL,
  created_at   DATETIME(6) NOT NULL,
  expires_at   DATETIME(6) NULL,
  PRIMARY KEY (id),
  KEY files_expires (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS job_files (
  job_id  CHAR(28) CHARACTER SET ascii NOT NULL,
  file_id CHAR(28) CHARACTER SET ascii NOT NULL,
  PRIMARY KEY (file_id, job_id),
  KEY job_files_job (job_id)
) ENGINE=InnoDB DEFAULT CHARSET=ascii;
