-- How many times each tenant key version has encrypted under a random 96-bit nonce
-- (data-key wraps and credential secrets). AES-GCM with random nonces must stay below
-- 2^32 encryptions per key (NIST SP 800-38D, 8.3); the kms rotates the tenant key
-- automatically once a version reaches RAINLOGS_KMS_ROTATE_AFTER_WRAPS (docs/KMS.md).
-- Forward-only (docs/MIGRATIONS.md). Keys created before this migration start from 0:
-- their earlier uses are not known, which is why the default threshold (2^31) leaves
-- half the budget as margin.
ALTER TABLE tenant_keys ADD COLUMN wraps bigint NOT NULL DEFAULT 0 CHECK (wraps >= 0);
