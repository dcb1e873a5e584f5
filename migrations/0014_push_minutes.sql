-- Push coverage (issue 12, docs/INGEST.md "Coverage for push"): records received per
-- minute of edge time, per zone and dataset. Pushed batches do not tile time the way
-- pulled windows do, so this is what says which minutes of a push zone have logs.
-- Forward-only.
CREATE TABLE push_minutes (
    zone_id  uuid NOT NULL REFERENCES zones (id),
    dataset  text NOT NULL,
    minute   timestamptz NOT NULL CHECK (extract(second FROM minute) = 0),
    -- Records whose edge time (EdgeEndTimestamp, else the start: what Logpull selects
    -- by) is in [minute, minute + 1 min), over all accepted batches (re-deliveries are
    -- not counted twice: they are not accepted twice).
    records  bigint NOT NULL CHECK (records > 0),
    batches  integer NOT NULL CHECK (batches > 0),
    PRIMARY KEY (zone_id, dataset, minute)
);
