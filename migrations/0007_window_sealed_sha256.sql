-- The SHA-256 of the archive object encrypt sealed, recorded with `sealed` in the same
-- transaction (issue 11 item 9). Upload commits a window only if the object it read
-- back and verified is exactly this one: an object overwritten by an encrypt run that
-- lost its row lock (its PUT landing after another run sealed the window) is caught
-- there and sealed again, instead of being catalogued under the other run's record.
-- Forward-only (docs/MIGRATIONS.md); described in docs/PIPELINE.md.
ALTER TABLE windows
    ADD COLUMN sealed_sha256 bytea CHECK (sealed_sha256 IS NULL OR length(sealed_sha256) = 32);
