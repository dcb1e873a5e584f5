-- Accounts of the HTTP API (docs/API.md): users with a role, either of one tenant or
-- provider-wide (spanning every tenant), and their API keys. Forward-only
-- (docs/MIGRATIONS.md).

CREATE TYPE api_role AS ENUM ('admin', 'operator', 'auditor', 'viewer');

-- A person or a machine calling the API. `tenant_id` NULL: a provider-wide user (a
-- managed-service provider's staff), whose role applies to every tenant; otherwise the
-- user sees its own tenant only, whatever its role.
CREATE TABLE api_users (
    id           uuid PRIMARY KEY,
    tenant_id    uuid REFERENCES tenants (id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role         api_role NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    -- A disabled user's keys stop working at once (checked on every request).
    disabled_at  timestamptz
);
-- Names are unique within a tenant, and among provider-wide users.
CREATE UNIQUE INDEX api_users_name
    ON api_users (coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), name);

-- An API key: `rl_<env>_<random><checksum>`, shown once at creation. Only its SHA-256
-- is kept; `prefix` (the key up to its first random characters) finds the row through
-- an index, so an unknown key costs one index lookup and a well-formed but wrong one
-- one constant-time comparison — never a slow hash per request.
CREATE TABLE api_keys (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES api_users (id),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    prefix         text NOT NULL,
    secret_sha256  bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL,
    expires_at     timestamptz,
    revoked_at     timestamptz,
    -- Updated at most once a minute per key (a write per request would be a cost).
    last_used_at   timestamptz
);
CREATE INDEX api_keys_prefix ON api_keys (prefix);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- The audit log is read by tenant, newest first (GET /v1/tenants/{t}/audit-events).
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id);
