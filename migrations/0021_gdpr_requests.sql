-- Data-subject requests (GDPR) as first-class operations (docs/GDPR.md): access
-- searches (Art. 15) and tenant erasures (Art. 17), each recorded with who asked, when
-- and what, its outcome, and — for an erasure — the two-step confirmation.
-- Forward-only (docs/MIGRATIONS.md).

CREATE TABLE gdpr_requests (
    id                    uuid PRIMARY KEY,
    tenant_id             uuid NOT NULL REFERENCES tenants (id),
    -- `access` (search), `erasure` (crypto-shred the tenant, delete its objects).
    kind                  text NOT NULL CHECK (kind IN ('access', 'erasure')),
    -- access: running → done | failed. erasure: requested → erasing (keys shredded,
    -- objects being deleted) → done, or requested → expired | refused.
    state                 text NOT NULL CHECK (state IN
                            ('running', 'requested', 'erasing', 'done', 'failed', 'expired', 'refused')),
    requested_by          text NOT NULL,
    requested_at          timestamptz NOT NULL DEFAULT now(),
    -- What was asked: an access search's fields, values, range and zones; an
    -- erasure's reason and what it would delete.
    criteria              jsonb NOT NULL DEFAULT '{}',
    -- Erasure only: SHA-256 of the one-time confirmation token (the token itself is
    -- shown once, to the requester) and until when it may be used.
    confirm_token_sha256  bytea CHECK (length(confirm_token_sha256) = 32),
    confirm_expires_at    timestamptz,
    confirmed_by          text,
    confirmed_at          timestamptz,
    finished_at           timestamptz,
    -- Counts (records found, bytes scanned; keys shredded, objects deleted), or the
    -- error that stopped the request.
    result                jsonb NOT NULL DEFAULT '{}',
    CHECK (kind = 'erasure' OR confirm_token_sha256 IS NULL)
);
CREATE INDEX gdpr_requests_tenant ON gdpr_requests (tenant_id, requested_at DESC);

-- An erasure deletes every object of the tenant before its retention ends; its
-- receipts name the request (`erasure:<request id>`) so verify can tell a confirmed
-- erasure from a deletion no rule allowed.
ALTER TABLE deletion_receipts DROP CONSTRAINT deletion_receipts_rule_check;
ALTER TABLE deletion_receipts ADD CONSTRAINT deletion_receipts_rule_check
    CHECK (rule ~ '^(retention:[0-9]+d|orphan|staging-stale|erasure:[0-9a-f-]{36})$');
CREATE UNIQUE INDEX deletion_receipts_erasure_window
    ON deletion_receipts (window_id) WHERE rule LIKE 'erasure:%';
