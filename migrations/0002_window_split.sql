-- Window splitting (docs/PIPELINE.md): a window too large or too slow to fetch in one
-- Logpull request is replaced by its two halves. The parent keeps its row in state
-- 'split' (no object, no chain link; its reason in last_error) and each half points
-- at it, so the ledger shows how every minute came to be covered.
-- Forward-only: never edit a released migration (docs/MIGRATIONS.md).

ALTER TYPE window_state ADD VALUE IF NOT EXISTS 'split';

ALTER TABLE windows ADD COLUMN parent_id bigint REFERENCES windows (id);
CREATE INDEX windows_parent ON windows (parent_id) WHERE parent_id IS NOT NULL;
