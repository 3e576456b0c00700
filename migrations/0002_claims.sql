-- 0002_claims.sql - count claims of a job whose previous lease was
-- abandoned (its worker died or stalled mid-step), so that a job whose
-- adapter crashes the worker every time fails instead of being retried
-- forever. queue_claim() sets it; engine_run() fails the job with code
-- worker_crashed at ENGINE_MAX_ABANDONED (core/engine.h).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS claims INT UNSIGNED NOT NULL DEFAULT 0;
