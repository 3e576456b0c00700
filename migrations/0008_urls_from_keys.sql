-- 0008_urls_from_keys: rows keep storage keys, not URLs.
--
-- The `url` of every output and rendition in the job object, GET
-- /v1/outputs, callbacks and the dashboard is made when the row is read,
-- from `storage_key` and the active sink's current public base URL
-- (core/jobs.c). So a changed CDN host (DARKROOM_CDN_BASE_URL, a sink's
-- base_url or public_base_url) or `make run` port needs no rewrite of the
-- rows, and a command run with another public URL stores none.
--
-- New rows get NULL in the url columns; renditions.url was NOT NULL, so
-- it becomes NULL-able (outputs.url always was). The columns stay for
-- now, unread for every row that has a key (every stored row has one);
-- a later migration may drop them.
--
-- Re-runnable: MODIFY leaves an already altered column as it is.

ALTER TABLE renditions MODIFY url VARCHAR(2048) NULL;
