-- Pushed batches enter the window ledger (issue 12, docs/INGEST.md "Archive step").
-- Forward-only.
--
-- Every accepted Logpush batch becomes one window of its zone: spanning the batch's
-- edge time, entering as 'staged' (the receiver has sealed it in staging), and moving
-- on through the same encrypt → upload stages, chain, restore, verify and prune as a
-- pulled window. Pulled windows tile a zone's time; batch windows may overlap each
-- other (datasets, batches of the same minute), so the span is unique only among
-- pulled windows.
ALTER TABLE windows ADD COLUMN batch_id uuid UNIQUE REFERENCES push_batches (id);
ALTER TABLE windows DROP CONSTRAINT windows_zone_id_start_at_end_at_key;
CREATE UNIQUE INDEX windows_pull_span ON windows (zone_id, start_at, end_at)
    WHERE batch_id IS NULL;

-- A batch's progress is its window's state now: one truth, not two.
DROP INDEX push_batches_state;
ALTER TABLE push_batches DROP COLUMN state, DROP COLUMN archive_key, DROP COLUMN state_since;
DROP TYPE push_batch_state;
