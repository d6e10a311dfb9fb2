-- Push ingestion (Argos webhooks) beside polling: which path found each
-- version first. A version is written once, by whichever batch commits it
-- first, so counting at commit time counts "found first".

-- The path that found the current version: poll | webhook | backfill.
-- NULL for versions written before this migration.
ALTER TABLE submission_versions ADD COLUMN found_by TEXT;

-- Versions found first, per path, since the store was created.
CREATE TABLE version_sources (
    source   TEXT PRIMARY KEY,
    versions INTEGER NOT NULL
);
