-- Alert lifecycle: open -> acknowledged -> resolved. No row means open.
CREATE TABLE alert_states (
    fingerprint TEXT PRIMARY KEY,
    state       TEXT NOT NULL,          -- open | acknowledged | resolved
    changed_at  TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    note        TEXT,
    outcome     TEXT                    -- for resolved
);

-- Every change, for the audit log: who, when, from, to.
CREATE TABLE alert_state_changes (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    at          TEXT NOT NULL,
    by          TEXT NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    note        TEXT,
    outcome     TEXT
);
CREATE INDEX alert_state_changes_fp ON alert_state_changes (fingerprint);
