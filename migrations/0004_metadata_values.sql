-- 0004_metadata_values.sql - job_metadata.v holds any value a job may
-- have: the API allows 4096 bytes of keys and values in all (one key of
-- one character and a 4095-byte value), so a value longer than the
-- 1024 characters of 0001 was refused by the database (and the job with
-- it answered with an internal error). Widening a VARCHAR whose length
-- already takes two bytes is an instant change in InnoDB; the search
-- index keeps its prefix v(191).
ALTER TABLE job_metadata MODIFY v VARCHAR(4096) NOT NULL;
