-- Lines of a window that are not JSON records (quarantined verbatim by fetch, see
-- docs/LOGPULL.md): their count and the first positions, recorded with `staged`, so an
-- operator sees them on the window instead of in a discarded task result
-- (issue 11 item 7). Forward-only (docs/MIGRATIONS.md).
ALTER TABLE windows
    ADD COLUMN malformed_lines bigint NOT NULL DEFAULT 0 CHECK (malformed_lines >= 0),
    -- [{"line": n, "offset": bytes, "reason": "..."}], at most the first 16.
    ADD COLUMN malformed_sample jsonb;
