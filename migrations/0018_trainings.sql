-- 0018_trainings: what POST /v1/trainings stores besides migration 0017.
--
-- jobs.destination: a training's destination model ("owner/name"), where
--   the provider puts the new version; NULL for every other job. A column
--   of its own rather than a member of `input`: the input is sent to the
--   provider as it is, and the destination is not part of it.
-- outputs.kind gains 'weights': a training's trained weights, stored and
--   indexed like any file output, without renditions.
--
-- Re-runnable: IF NOT EXISTS, and MODIFY to the same list is a no-op.

ALTER TABLE jobs
  ADD COLUMN IF NOT EXISTS destination VARCHAR(255) NULL;

ALTER TABLE outputs
  MODIFY COLUMN kind ENUM('image','video','audio','text','file','weights')
      NOT NULL;
