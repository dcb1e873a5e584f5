-- Why Rainlogs paused a zone by itself ("parked"): a credential Cloudflare refused
-- (401/403), no token stored, the tenant shredded, a key the keyring cannot open — an
-- error no retry of a window can fix. NULL when the zone runs, or when an operator
-- paused it. Parked zones are neither planned nor reconciled, and the fetch stage
-- leaves their windows `planned` without asking Cloudflare; `rainlogs zone resume`
-- or a new token (`rainlogs zone set --token-env`) clears it. docs/PIPELINE.md.
-- Forward-only (docs/MIGRATIONS.md).
ALTER TABLE zones ADD COLUMN paused_reason text;
ALTER TABLE zones ADD CONSTRAINT zones_parked_is_paused CHECK (paused_reason IS NULL OR paused);
