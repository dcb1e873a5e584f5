-- Landing ingest (issue 12 item 7, docs/INGEST.md "S3-compatible destination"):
-- Logpush jobs that write gzip NDJSON objects into a landing bucket Rainlogs reads and
-- empties. Forward-only.

-- A destination is reached over HTTP (the receiver) or through the landing bucket,
-- under its own prefix ('{id}/'); Cloudflare's write-only key is never stored.
ALTER TABLE push_destinations
    ADD COLUMN kind text NOT NULL DEFAULT 'http' CHECK (kind IN ('http', 's3')),
    ADD COLUMN landing_prefix text UNIQUE,
    ADD CONSTRAINT push_destinations_landing_prefix
        CHECK ((kind = 's3') = (landing_prefix IS NOT NULL));

-- Where a batch came from in the landing bucket, and when Cloudflare wrote it there
-- (the object's LastModified): the time plaintext rested in landing is
-- received_at - landed_at, plus the delete right after the commit.
ALTER TABLE push_batches
    ADD COLUMN landing_key text,
    ADD COLUMN landed_at timestamptz,
    ADD CONSTRAINT push_batches_landing CHECK ((landing_key IS NULL) = (landed_at IS NULL));

-- Landing objects that could not be ingested (not gzip, over a limit): moved to
-- 'rejected/{key}' in the landing bucket and listed here for an operator; never
-- deleted silently. One row per object key.
CREATE TABLE landing_rejects (
    id              bigserial PRIMARY KEY,
    destination_id  uuid NOT NULL REFERENCES push_destinations (id),
    landing_key     text NOT NULL,
    rejected_key    text NOT NULL,
    size_bytes      bigint NOT NULL CHECK (size_bytes >= 0),
    landed_at       timestamptz,
    code            text NOT NULL,
    reason          text NOT NULL,
    rejected_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (destination_id, landing_key)
);
