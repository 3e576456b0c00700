-- 0007_plugin_kv: a small durable key-value store per plugin instance
-- (host->kv_get and kv_put of darkroom-plugin.h, core/plugin.c).
--
-- instance: the config section's name ([adapter "replicate"] ->
--   'replicate'), so two sections of one plugin keep apart.
-- k: the plugin's key, 1 to 128 bytes of [A-Za-z0-9._-].
-- v: the value, text up to 64 KiB (a signing secret the worker fetched
--   from the provider, for the FastCGI app to verify webhooks with).
-- updated_at: when it was last written, on the database clock.
--
-- Re-runnable: CREATE TABLE IF NOT EXISTS.

CREATE TABLE IF NOT EXISTS plugin_kv (
  instance VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  k VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  v TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  updated_at DATETIME(6) NOT NULL,
  PRIMARY KEY (instance, k)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
