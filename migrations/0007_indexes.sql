-- Lookups the hot path makes that 0001/0002 left to a scan.

-- The pipeline prefetches `rule_fired` by submission: key it that way round.
-- (Keyed (rule_id, submission_id), every prefetch scanned the whole table.)
CREATE TABLE rule_fired_by_submission (
    submission_id TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    PRIMARY KEY (submission_id, rule_id)
) WITHOUT ROWID;
INSERT INTO rule_fired_by_submission (submission_id, rule_id)
    SELECT submission_id, rule_id FROM rule_fired;
DROP TABLE rule_fired;
ALTER TABLE rule_fired_by_submission RENAME TO rule_fired;
