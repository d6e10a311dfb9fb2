-- The analyst console (issue 17): people, their tokens and sessions, and what
-- they do to an alert beside its state (assignment, notes, reveals).
-- Times as in 0001: RFC 3339 UTC text with milliseconds.

-- Local users. `password_hash` is an argon2id PHC string; NULL for a user who
-- only signs in through the proxy or uses tokens.
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,          -- viewer | analyst | lead | admin
    password_hash TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL
);

-- Per-user API tokens, kept as SHA-256 of 32 random bytes: a token has the
-- entropy a password lacks, so a fast hash is enough (and keeps every API
-- call from paying an argon2 round).
CREATE TABLE user_tokens (
    token_hash TEXT PRIMARY KEY,
    name       TEXT NOT NULL REFERENCES users (name),
    created_at TEXT NOT NULL
);

-- Console sessions, by SHA-256 of the cookie value (a stolen file holds no
-- usable cookie). In the store, so a reload or a restart keeps people signed in.
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);

-- Failed sign-ins, keyed `user:NAME` or `addr:IP`, for the rate limit.
CREATE TABLE login_failures (
    key TEXT NOT NULL,
    at  TEXT NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (key, at);

-- Who holds an alert now (history is in the audit log).
CREATE TABLE alert_assignees (
    fingerprint TEXT PRIMARY KEY,
    assignee    TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX alert_assignees_who ON alert_assignees (assignee);

-- Notes on an alert, besides those a state change carries.
CREATE TABLE alert_notes (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    at          TEXT NOT NULL,
    by          TEXT NOT NULL,
    note        TEXT NOT NULL
);
CREATE INDEX alert_notes_fp ON alert_notes (fingerprint);

-- The inbox filters by state and severity, newest first, over a long history.
CREATE INDEX alert_states_state ON alert_states (state);
CREATE INDEX alerts_rule_fired ON alerts (rule_id, fired_at);
CREATE INDEX alerts_group_key ON alerts (group_key);
CREATE INDEX applicants_email ON applicants (email);
