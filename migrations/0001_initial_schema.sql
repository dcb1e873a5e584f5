-- Rainlogs initial schema. Forward-only: never edit a released migration (docs/MIGRATIONS.md).

-- A customer. Retention and legal hold apply to all its zones unless a zone overrides.
CREATE TABLE tenants (
    id              uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    retention_days  integer NOT NULL DEFAULT 395 CHECK (retention_days > 0),
    legal_hold      boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- A Cloudflare zone whose logs are archived. The API token is stored only encrypted
-- (sealed by the kms function, bound to tenant, zone and purpose).
CREATE TABLE zones (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id),
    cf_zone_id         text NOT NULL UNIQUE CHECK (cf_zone_id ~ '^[0-9a-f]{32}$'),
    name               text NOT NULL,
    cadence_seconds    integer NOT NULL DEFAULT 60 CHECK (cadence_seconds BETWEEN 15 AND 3600),
    backfill_from      timestamptz NOT NULL,
    fields             text[] NOT NULL DEFAULT '{}',
    retention_days     integer CHECK (retention_days > 0),
    legal_hold         boolean NOT NULL DEFAULT false,
    paused             boolean NOT NULL DEFAULT false,
    token_ciphertext   bytea,
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX zones_tenant ON zones (tenant_id);

-- The ledger: every planned window and where it stands. Postgres is the truth;
-- Redis only carries messages about these rows.
CREATE TYPE window_state AS ENUM (
    'planned', 'fetching', 'staged', 'sealed', 'archived', 'empty', 'failed_permanent', 'pruned'
);

CREATE TABLE windows (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    zone_id       uuid NOT NULL REFERENCES zones (id),
    start_at      timestamptz NOT NULL,
    end_at        timestamptz NOT NULL,
    state         window_state NOT NULL DEFAULT 'planned',
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    state_since   timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (end_at > start_at),
    UNIQUE (zone_id, start_at, end_at)
);
CREATE INDEX windows_state ON windows (state, state_since);

-- One archived object per window (absent for empty windows).
CREATE TABLE archived_objects (
    window_id         bigint PRIMARY KEY REFERENCES windows (id),
    object_key        text NOT NULL UNIQUE,
    size_bytes        bigint NOT NULL CHECK (size_bytes >= 0),
    object_sha256     bytea NOT NULL CHECK (length(object_sha256) = 32),
    plaintext_sha256  bytea NOT NULL CHECK (length(plaintext_sha256) = 32),
    plaintext_bytes   bigint NOT NULL CHECK (plaintext_bytes >= 0),
    record_count      bigint NOT NULL CHECK (record_count >= 0),
    key_version       integer NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- The per-zone hash chain. (zone_id, seq) is the primary key and prev_hash must equal
-- the previous link's hash, so two concurrent appends cannot both take a sequence
-- number: the chain cannot fork. Empty and pruned windows keep their links.
CREATE TABLE chain_links (
    zone_id           uuid NOT NULL REFERENCES zones (id),
    seq               bigint NOT NULL CHECK (seq >= 0),
    window_id         bigint NOT NULL UNIQUE REFERENCES windows (id),
    prev_hash         bytea NOT NULL CHECK (length(prev_hash) = 32),
    link_hash         bytea NOT NULL UNIQUE CHECK (length(link_hash) = 32),
    object_sha256     bytea CHECK (length(object_sha256) = 32),
    plaintext_sha256  bytea CHECK (length(plaintext_sha256) = 32),
    record_count      bigint NOT NULL CHECK (record_count >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (zone_id, seq)
);

-- Per-tenant data-encryption key versions, wrapped under a master key version.
CREATE TYPE key_state AS ENUM ('active', 'retired', 'shredded');

CREATE TABLE tenant_keys (
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    version          integer NOT NULL CHECK (version >= 1),
    master_version   integer NOT NULL CHECK (master_version >= 1),
    wrapped_key      bytea,
    state            key_state NOT NULL DEFAULT 'active',
    created_at       timestamptz NOT NULL DEFAULT now(),
    shredded_at      timestamptz,
    PRIMARY KEY (tenant_id, version),
    -- A shredded key has no material left.
    CHECK ((state = 'shredded') = (wrapped_key IS NULL))
);
CREATE UNIQUE INDEX tenant_keys_one_active ON tenant_keys (tenant_id) WHERE state = 'active';

-- Who did what, when, with what result. Never holds key material or log data.
CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    operation   text NOT NULL,
    tenant_id   uuid,
    zone_id     uuid,
    key_version integer,
    result      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_at ON audit_events (at);

-- End-to-end probes (`rainlogs probe`, the skeleton flow): one row per probe task,
-- proving Redis → dispatcher → function → Garage + Postgres works.
CREATE TABLE probe_runs (
    task_id      uuid PRIMARY KEY,
    object_key   text NOT NULL,
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),
    size_bytes   bigint NOT NULL,
    attempt      integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
