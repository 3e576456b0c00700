-- 0005_webhook_delivery_keys: any delivery id a provider sends is stored.
--
-- webhook_deliveries: a provider's delivery id is opaque bytes, up to 256
--   of them for a Standard Webhooks id (the verifier's limit, core/webhook.c)
--   and of any length for another adapter's. The duplicate check keys on
--   `delivery_key`, the SHA-256 of the whole id (32 bytes, binary, so the
--   key stays small and exact whatever the id holds); `delivery_id` keeps
--   the id's first 256 bytes as they came, for people. Rows recorded
--   before keep working: their key is computed here from the same bytes.
--
-- Re-runnable: ADD COLUMN IF NOT EXISTS, an UPDATE that skips rows done,
-- and ALTERs that leave an already altered table as it is.

ALTER TABLE webhook_deliveries
  ADD COLUMN IF NOT EXISTS delivery_key BINARY(32) NULL AFTER adapter;

UPDATE webhook_deliveries SET delivery_key = UNHEX(SHA2(delivery_id, 256))
  WHERE delivery_key IS NULL;

ALTER TABLE webhook_deliveries
  MODIFY delivery_key BINARY(32) NOT NULL,
  MODIFY delivery_id VARBINARY(256) NOT NULL,
  DROP PRIMARY KEY,
  ADD PRIMARY KEY (adapter, delivery_key);
