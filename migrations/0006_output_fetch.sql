-- 0006_output_fetch: how the pipeline may fetch each pending output, and
-- what fetching it has cost so far (core/pipeline.c).
--
-- source_kind: what the adapter said `source` is: 'url' (downloaded under
--   the rules of core/download.h), 'data' (a data: URI, decoded) or 'path'
--   (a local file, read only from the job's own folder under the work
--   folder the adapter declared). A source is never taken for a local
--   file because it starts with '/'. NULL for text outputs, and for rows
--   recorded before this migration (then told apart by their prefix).
-- fetch_started_at: when the first download of the output began, on the
--   database clock. [limits] download_budget counts from it, across
--   retries and worker restarts.
-- slow_fetches: downloads of the output abandoned for low speed
--   (download_too_slow); after a few the job fails instead of retrying.
-- A retry of a failed job (POST /v1/jobs/{id}/retry) clears the last two.
ALTER TABLE outputs
  ADD COLUMN IF NOT EXISTS source_kind ENUM('url','data','path') NULL,
  ADD COLUMN IF NOT EXISTS fetch_started_at DATETIME(6) NULL,
  ADD COLUMN IF NOT EXISTS slow_fetches TINYINT UNSIGNED NOT NULL DEFAULT 0;
