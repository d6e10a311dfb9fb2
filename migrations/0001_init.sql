-- kyc-sentinel state store, SQLite.
-- Times are RFC 3339 UTC text with milliseconds ("2026-11-26T08:00:00.000Z"),
-- so text order is time order and the file stays readable with the sqlite3 shell.

-- The last processed version of every submission, for change detection.
CREATE TABLE submission_versions (
    submission_id TEXT PRIMARY KEY,
    content_hash  TEXT NOT NULL,
    kyc_result    TEXT,            -- lower-cased kyc.result of that version
    created_at    TEXT,
    event_time    TEXT NOT NULL,
    first_seen    TEXT NOT NULL,
    last_changed  TEXT NOT NULL,
    raw           TEXT             -- the version's JSON; NULL once purged by retention
);
CREATE INDEX submission_versions_undecided
    ON submission_versions (created_at)
    WHERE kyc_result IS NULL OR kyc_result IN ('pending', 'incomplete');

-- Rules without a window fire at most once per submission.
CREATE TABLE rule_fired (
    rule_id       TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    PRIMARY KEY (rule_id, submission_id)
) WITHOUT ROWID;

CREATE TABLE submission_results (
    submission_id TEXT PRIMARY KEY,
    kyc_result    TEXT
) WITHOUT ROWID;

-- Window members; consumed members stay so a submission never counts twice.
CREATE TABLE window_members (
    rule_id       TEXT NOT NULL,
    group_key     TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    event_time    TEXT NOT NULL,
    consumed      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rule_id, group_key, submission_id)
) WITHOUT ROWID;
CREATE INDEX window_members_time ON window_members (event_time);

CREATE TABLE throttles (
    rule_id      TEXT NOT NULL,
    throttle_key TEXT NOT NULL,
    until        TEXT NOT NULL,
    PRIMARY KEY (rule_id, throttle_key)
) WITHOUT ROWID;

-- applicant_id -> submissions and emails, for derived.applicant_*.
CREATE TABLE applicants (
    applicant_id  TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    email         TEXT,
    event_time    TEXT NOT NULL,
    PRIMARY KEY (applicant_id, submission_id)
) WITHOUT ROWID;

CREATE TABLE alerts (
    fingerprint   TEXT PRIMARY KEY,
    rule_id       TEXT NOT NULL,
    rule_version  TEXT NOT NULL,
    severity      TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    group_key     TEXT,
    event_time    TEXT NOT NULL,
    fired_at      TEXT NOT NULL,
    body          TEXT NOT NULL    -- the alert as `eval` prints it
);
CREATE INDEX alerts_fired_at ON alerts (fired_at);
CREATE INDEX alerts_submission ON alerts (submission_id);

-- One row per (alert, receiver): delivered at least once, same idempotency key.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    fingerprint     TEXT NOT NULL,
    receiver        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | dead
    last_error      TEXT,
    done_at         TEXT,
    UNIQUE (fingerprint, receiver)
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';

CREATE TABLE delivery_attempts (
    id        INTEGER PRIMARY KEY,
    outbox_id INTEGER NOT NULL REFERENCES outbox (id),
    at        TEXT NOT NULL,
    ok        INTEGER NOT NULL,
    detail    TEXT
);

CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL,   -- decision | rule_error | delivery | dead_letter | ...
    submission_id TEXT,
    version_hash  TEXT,
    rule_id       TEXT,
    rule_version  TEXT,
    fingerprint   TEXT,
    detail        TEXT             -- JSON: what decided it
);
CREATE INDEX audit_submission ON audit_log (submission_id);
CREATE INDEX audit_fingerprint ON audit_log (fingerprint);

-- API calls per UTC day, for the daily budget.
CREATE TABLE api_budget (
    day   TEXT PRIMARY KEY,
    calls INTEGER NOT NULL
);

-- Small named values: poll cursor and the like.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
