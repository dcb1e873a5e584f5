-- Keyed chain links (chain format version 2, docs/CHAIN.md).
-- Forward-only (docs/MIGRATIONS.md).
--
-- Links written before this migration stay what they are: version 1, plain SHA-256,
-- and keep verifying. Every link written after it is version 2: an HMAC-SHA-256 under
-- the tenant's chain key, which the kms derives from tenant key version `key_version`
-- and which is never stored here, so a database writer cannot forge a link. A zone's
-- chain switches at its first version-2 link (its MAC covers the last version-1 hash).
ALTER TABLE chain_links ADD COLUMN version smallint NOT NULL DEFAULT 1
    CHECK (version IN (1, 2));
ALTER TABLE chain_links ADD COLUMN key_version integer CHECK (key_version >= 1);
ALTER TABLE chain_links ADD CONSTRAINT chain_links_keyed_iff_v2
    CHECK ((version = 2) = (key_version IS NOT NULL));
-- The default only upgraded existing rows: a writer must say which version it wrote.
ALTER TABLE chain_links ALTER COLUMN version DROP DEFAULT;
