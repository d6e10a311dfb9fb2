-- The console's inbox over a long history (issue 17: inbox p95 < 200 ms with
-- 100,000 alerts). Filtering `alerts` (wide rows: the JSON body) joined to
-- its state and assignee walked most of the history for a rare filter and
-- counted every match. Instead, one narrow row per live alert, kept by
-- triggers in the same transaction as every write that changes it, so no
-- write path can forget it:
--
-- `alert_inbox`: what the inbox shows and filters on, clustered newest-last
-- by (fired_at, fingerprint), so "newest first" is a walk of the table.
-- `labels` is the alert's labels as RS key US value RS ... RS (ASCII 30/31):
-- an exact `KEY=VALUE` filter is a substring test, no JSON per row.
-- Shadow alerts (mode 'shadow') are not in the inbox: nobody acts on them.
CREATE TABLE alert_inbox (
    fired_at      TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    severity      TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    group_key     TEXT,
    labels        TEXT NOT NULL,
    state         TEXT NOT NULL,
    assignee      TEXT,
    silenced      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (fired_at, fingerprint)
) WITHOUT ROWID;
-- Each index of a WITHOUT ROWID table ends with the key (fired_at,
-- fingerprint): a filter's index is walked newest first, no sort.
CREATE UNIQUE INDEX alert_inbox_fp ON alert_inbox (fingerprint);
CREATE INDEX alert_inbox_state ON alert_inbox (state);
-- A state and a severity that rarely meet (acknowledged criticals) would
-- walk all of one of them: this pair is found directly.
CREATE INDEX alert_inbox_state_severity ON alert_inbox (state, severity);
CREATE INDEX alert_inbox_assignee ON alert_inbox (assignee);
CREATE INDEX alert_inbox_severity ON alert_inbox (severity);
CREATE INDEX alert_inbox_rule ON alert_inbox (rule_id);

-- Live alerts per state: the inbox's counts as opened, without a scan.
CREATE TABLE alert_state_counts (
    state TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
);

CREATE TRIGGER alert_inbox_add AFTER INSERT ON alerts WHEN NEW.mode = 'live'
BEGIN
    INSERT OR IGNORE INTO alert_inbox (fired_at, fingerprint, rule_id, severity, submission_id,
        group_key, labels, state, assignee, silenced)
    VALUES (NEW.fired_at, NEW.fingerprint, NEW.rule_id, NEW.severity, NEW.submission_id,
        NEW.group_key,
        CASE WHEN json_valid(NEW.body) THEN COALESCE((
            SELECT char(30) || group_concat(key || char(31) || value, char(30)) || char(30)
            FROM json_each(NEW.body, '$.labels')), '') ELSE '' END,
        COALESCE((SELECT state FROM alert_states WHERE fingerprint = NEW.fingerprint), 'open'),
        (SELECT assignee FROM alert_assignees WHERE fingerprint = NEW.fingerprint),
        EXISTS (SELECT 1 FROM audit_log l WHERE l.kind = 'silenced' AND l.fingerprint = NEW.fingerprint));
END;
CREATE TRIGGER alert_inbox_drop AFTER DELETE ON alerts
BEGIN
    DELETE FROM alert_inbox WHERE fingerprint = OLD.fingerprint;
END;

CREATE TRIGGER alert_inbox_state_add AFTER INSERT ON alert_states
BEGIN
    UPDATE alert_inbox SET state = NEW.state WHERE fingerprint = NEW.fingerprint;
END;
CREATE TRIGGER alert_inbox_state_set AFTER UPDATE OF state ON alert_states
BEGIN
    UPDATE alert_inbox SET state = NEW.state WHERE fingerprint = NEW.fingerprint;
END;
CREATE TRIGGER alert_inbox_state_drop AFTER DELETE ON alert_states
BEGIN
    UPDATE alert_inbox SET state = 'open' WHERE fingerprint = OLD.fingerprint;
END;

CREATE TRIGGER alert_inbox_assignee_add AFTER INSERT ON alert_assignees
BEGIN
    UPDATE alert_inbox SET assignee = NEW.assignee WHERE fingerprint = NEW.fingerprint;
END;
CREATE TRIGGER alert_inbox_assignee_set AFTER UPDATE OF assignee ON alert_assignees
BEGIN
    UPDATE alert_inbox SET assignee = NEW.assignee WHERE fingerprint = NEW.fingerprint;
END;
CREATE TRIGGER alert_inbox_assignee_drop AFTER DELETE ON alert_assignees
BEGIN
    UPDATE alert_inbox SET assignee = NULL WHERE fingerprint = OLD.fingerprint;
END;

CREATE TRIGGER alert_inbox_silenced AFTER INSERT ON audit_log
WHEN NEW.kind = 'silenced' AND NEW.fingerprint IS NOT NULL
BEGIN
    UPDATE alert_inbox SET silenced = 1 WHERE fingerprint = NEW.fingerprint;
END;

-- The counts follow the inbox rows.
CREATE TRIGGER alert_state_counts_add AFTER INSERT ON alert_inbox
BEGIN
    INSERT INTO alert_state_counts (state, n) VALUES (NEW.state, 1)
    ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER alert_state_counts_move AFTER UPDATE OF state ON alert_inbox
WHEN OLD.state <> NEW.state
BEGIN
    UPDATE alert_state_counts SET n = n - 1 WHERE state = OLD.state;
    INSERT INTO alert_state_counts (state, n) VALUES (NEW.state, 1)
    ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER alert_state_counts_drop AFTER DELETE ON alert_inbox
BEGIN
    UPDATE alert_state_counts SET n = n - 1 WHERE state = OLD.state;
END;

-- The alerts already stored.
INSERT INTO alert_inbox (fired_at, fingerprint, rule_id, severity, submission_id, group_key,
    labels, state, assignee, silenced)
SELECT a.fired_at, a.fingerprint, a.rule_id, a.severity, a.submission_id, a.group_key,
    CASE WHEN json_valid(a.body) THEN COALESCE((
        SELECT char(30) || group_concat(key || char(31) || value, char(30)) || char(30)
        FROM json_each(a.body, '$.labels')), '') ELSE '' END,
    COALESCE(s.state, 'open'), g.assignee,
    EXISTS (SELECT 1 FROM audit_log l WHERE l.kind = 'silenced' AND l.fingerprint = a.fingerprint)
FROM alerts a
LEFT JOIN alert_states s ON s.fingerprint = a.fingerprint
LEFT JOIN alert_assignees g ON g.fingerprint = a.fingerprint
WHERE a.mode = 'live';
