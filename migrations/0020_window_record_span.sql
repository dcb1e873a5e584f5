-- Pulled windows record the time span of their records (issue 11 item 6,
-- docs/LOGPULL.md "Late records"). Forward-only.
--
-- Logpull serves a window by the time Cloudflare *received* its records; a record's
-- own time (EdgeEndTimestamp, else its start) can be minutes earlier. Restore trims by
-- record time, so it must know which windows hold records of a range: each pulled
-- window's earliest and latest record time, set (at microsecond precision, truncated)
-- when it is staged. NULL for windows staged before this migration, for empty windows
-- and when no record carried a time: restore then assumes the documented lag. A pushed
-- batch's window already spans its records' time (start_at, end_at).
ALTER TABLE windows
    ADD COLUMN first_record_at timestamptz,
    ADD COLUMN last_record_at  timestamptz,
    ADD CONSTRAINT windows_record_span CHECK (
        (first_record_at IS NULL) = (last_record_at IS NULL)
        AND (first_record_at IS NULL OR first_record_at <= last_record_at));
