-- Push ingestion (issue 12, docs/INGEST.md): Logpush destinations and the batches they
-- deliver. Forward-only.

-- How a zone's logs arrive: pulled through Logpull, pushed by Logpush, or pushed with
-- Logpull repairing push gaps.
CREATE TYPE zone_mode AS ENUM ('pull', 'push', 'hybrid');
ALTER TABLE zones ADD COLUMN mode zone_mode NOT NULL DEFAULT 'pull';

-- One Logpush HTTP destination per (zone, dataset) job, addressed by /push/{id}.
-- The secret is stored only as its SHA-256 (it is 32 random bytes).
CREATE TABLE push_destinations (
    id             uuid PRIMARY KEY,
    zone_id        uuid NOT NULL REFERENCES zones (id),
    dataset        text NOT NULL CHECK (dataset ~ '^[a-z][a-z0-9_]{0,63}$'),
    secret_sha256  bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz,
    -- Last validation upload (gzip of {"content":"tests"}) Cloudflare sent.
    validated_at   timestamptz,
    -- Last batch accepted (duplicates included): delivery health.
    last_batch_at  timestamptz,
    UNIQUE (zone_id, dataset)
);

CREATE TYPE push_batch_state AS ENUM ('sealed', 'archived');

-- Every accepted batch. A row exists only once the batch is sealed in staging; the
-- receiver answers 2xx only after its commit. content_sha256 is the SHA-256 of the
-- decompressed NDJSON (= the sealed trailer's plaintext hash): a re-delivered batch
-- finds its row and is not stored again.
CREATE TABLE push_batches (
    id               uuid PRIMARY KEY,
    destination_id   uuid NOT NULL REFERENCES push_destinations (id),
    zone_id          uuid NOT NULL REFERENCES zones (id),
    content_sha256   bytea NOT NULL CHECK (length(content_sha256) = 32),
    record_count     bigint NOT NULL CHECK (record_count > 0),
    malformed_lines  bigint NOT NULL DEFAULT 0 CHECK (malformed_lines >= 0),
    ndjson_bytes     bigint NOT NULL CHECK (ndjson_bytes > 0),
    gzip_bytes       bigint NOT NULL CHECK (gzip_bytes > 0),
    -- Edge time span of the records (NULL when no line carried a timestamp).
    first_edge_at    timestamptz,
    last_edge_at     timestamptz,
    -- Receive time, microseconds: also the staged object's encryption context.
    received_at      timestamptz NOT NULL,
    state            push_batch_state NOT NULL DEFAULT 'sealed',
    staging_key      text NOT NULL UNIQUE,
    archive_key      text UNIQUE,
    state_since      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (destination_id, content_sha256),
    CHECK ((first_edge_at IS NULL) = (last_edge_at IS NULL)),
    CHECK (first_edge_at IS NULL OR first_edge_at <= last_edge_at)
);
CREATE INDEX push_batches_state ON push_batches (state, state_since);
CREATE INDEX push_batches_zone_edge ON push_batches (zone_id, first_edge_at);
