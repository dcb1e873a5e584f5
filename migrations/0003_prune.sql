-- Retention: deletion receipts, and an index for the prune scan.
-- Forward-only (docs/MIGRATIONS.md); described in docs/RETENTION.md.

-- One row per object the prune function deleted: what, why, when, in which run.
-- Receipts are never updated or deleted. Together with the catalog row
-- (archived_objects, kept after pruning) and the chain link (kept forever) they prove
-- that a window's object is gone because a rule said so, not because it was lost.
CREATE TABLE deletion_receipts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The prune run that deleted the object (also in its audit_events row).
    run_id         uuid NOT NULL,
    -- `retention:<days>d`, `orphan` or `staging-stale`.
    rule           text NOT NULL CHECK (rule ~ '^(retention:[0-9]+d|orphan|staging-stale)$'),
    -- The window the object belonged to; NULL for an orphan no window claims.
    window_id      bigint REFERENCES windows (id),
    -- Taken from the catalog, or parsed from the object key for sweeps (no foreign key:
    -- an orphan may name a zone that no longer exists).
    zone_id        uuid,
    tenant_id      uuid,
    object_key     text NOT NULL,
    -- The catalog's hash of the deleted object; NULL for sweeps (never catalogued).
    object_sha256  bytea CHECK (length(object_sha256) = 32),
    size_bytes     bigint CHECK (size_bytes >= 0),
    deleted_at     timestamptz NOT NULL DEFAULT now()
);
-- A window is pruned by retention once: a re-run or a healed crash cannot write a
-- second retention receipt for it.
CREATE UNIQUE INDEX deletion_receipts_retention_window
    ON deletion_receipts (window_id) WHERE rule LIKE 'retention:%';
CREATE INDEX deletion_receipts_zone ON deletion_receipts (zone_id, deleted_at);
CREATE INDEX deletion_receipts_run ON deletion_receipts (run_id);

-- The prune scan walks archived windows by id (keyset pages). Pruned windows pile up
-- for years; this partial index keeps the scan proportional to what is still archived.
CREATE INDEX windows_archived_by_id ON windows (id) WHERE state = 'archived';
