-- Where a zone's logs are fetched from, as a property of the zone (not of the process).
-- Forward-only (docs/MIGRATIONS.md); described in docs/PIPELINE.md ("Where logs come from").
--
-- 'cloudflare': Cloudflare's Logpull API; a worker sends the zone's token only to the
--   Cloudflare API base it is configured with, which must be on its allow-list.
-- 'simulator': the Logpull simulator at simulator_url (the demo and tests register zones
--   this way); the zone's token goes to that URL and nowhere else.
CREATE TYPE logpull_endpoint AS ENUM ('cloudflare', 'simulator');

ALTER TABLE zones
    ADD COLUMN endpoint logpull_endpoint NOT NULL DEFAULT 'cloudflare',
    ADD COLUMN simulator_url text,
    -- Zones of a `rainlogs demo` run: driven by that run only (the scheduler and the
    -- reconciler of `rainlogs run` leave them alone), paused when it ends.
    ADD COLUMN demo boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT zones_simulator_url CHECK ((endpoint = 'simulator') = (simulator_url IS NOT NULL)),
    ADD CONSTRAINT zones_demo_is_simulated CHECK (NOT demo OR endpoint = 'simulator');
