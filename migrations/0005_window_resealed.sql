-- The "re-sealed once" mark becomes a column (it was a prefix of windows.last_error).
-- Forward-only (docs/MIGRATIONS.md); described in docs/PIPELINE.md ("Replays").
--
-- Set when upload sends a window back to encrypt because its archive object failed
-- verification; a window is sent back at most once, so a second failure is final for
-- the message (dead-lettered with its reason) instead of a loop.
ALTER TABLE windows ADD COLUMN resealed boolean NOT NULL DEFAULT false;
UPDATE windows SET resealed = true
 WHERE starts_with(last_error, 'archive object failed verification, sealing again');
