-- Catalog keys are full bucket keys (issue 18 item 7, docs/VERIFY.md): upload records
-- the object's key with the bucket prefix it was written under (RAINLOGS_S3_PREFIX),
-- so verify, restore, prune and an auditor find the object whatever prefix the reading
-- process is configured with. Forward-only.
--
-- Rows written before were relative to the writer's prefix, which SQL cannot know:
-- `rainlogs migrate` (with the S3 settings) and `rainlogs run` at start complete them
-- (`pipeline::complete_catalog_keys`: a key still starting with 'archive/' gets the
-- configured prefix; with an empty prefix the keys are already full).
COMMENT ON COLUMN archived_objects.object_key IS
    'full bucket key: the writer''s RAINLOGS_S3_PREFIX followed by archive/{tenant}/{zone}/...';
