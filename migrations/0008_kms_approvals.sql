-- Approvals for destructive key operations served from the queue (issue 11 item 11).
-- Forward-only (docs/MIGRATIONS.md); described in docs/KMS.md ("Approvals").
--
-- A `kms.shred_tenant` task is carried out only with the id of an unused, unexpired
-- approval for that operation and tenant, written by an operator command
-- (`rainlogs kms approve shred-tenant`), so a message planted in Redis alone cannot
-- crypto-shred a tenant. An approval is used once.
CREATE TABLE kms_approvals (
    id           uuid PRIMARY KEY,
    operation    text NOT NULL CHECK (operation IN ('kms.shred_tenant')),
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    approved_by  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    CHECK (expires_at > created_at)
);
