-- Logpush jobs Rainlogs created through Cloudflare's jobs API (issue 12, item 6;
-- docs/INGEST.md "Operators"), and their delivery health as read back from that API.
-- Forward-only.

-- One row per job Rainlogs created for a destination. The destination URL given to
-- Cloudflare carries the destination's secret: it is never stored, only the public base
-- URL it was built from. The status columns hold the job as last polled.
CREATE TABLE logpush_jobs (
    id                          uuid PRIMARY KEY,
    zone_id                     uuid NOT NULL REFERENCES zones (id),
    destination_id              uuid NOT NULL REFERENCES push_destinations (id),
    -- The job's id at Cloudflare (unique per account; per zone here).
    cf_job_id                   bigint NOT NULL,
    dataset                     text NOT NULL,
    name                        text NOT NULL,
    fields                      text[] NOT NULL,
    public_url                  text NOT NULL,
    max_upload_bytes            bigint,
    max_upload_records          bigint,
    max_upload_interval_seconds integer,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    disabled_at                 timestamptz,
    deleted_at                  timestamptz,
    -- As last polled (the latest logpush_job_changes row, kept here for listing).
    enabled                     boolean NOT NULL,
    last_complete               timestamptz,
    last_error                  timestamptz,
    error_message               text,
    polled_at                   timestamptz,
    UNIQUE (zone_id, cf_job_id)
);
-- A destination feeds at most one live job.
CREATE UNIQUE INDEX logpush_jobs_live_destination ON logpush_jobs (destination_id)
    WHERE deleted_at IS NULL;

-- Every change of a job's enabled flag, last_complete, last_error or error_message, as
-- first seen by a poll (Cloudflare keeps only the latest failure: a failure that came
-- and went between two polls is not seen).
CREATE TABLE logpush_job_changes (
    id             bigserial PRIMARY KEY,
    job_id         uuid NOT NULL REFERENCES logpush_jobs (id),
    observed_at    timestamptz NOT NULL DEFAULT now(),
    enabled        boolean NOT NULL,
    last_complete  timestamptz,
    last_error     timestamptz,
    error_message  text,
    -- The job no longer exists at Cloudflare (deleted outside Rainlogs).
    gone           boolean NOT NULL DEFAULT false
);
CREATE INDEX logpush_job_changes_job ON logpush_job_changes (job_id, id);
