-- Escalation policies: which steps of which policy an alert has had.
-- Times as in 0001: RFC 3339 UTC text with milliseconds (text order is time order).

-- One row per (alert, policy), written in the batch transaction that stores
-- the alert. `next_step` moves only in the transaction that writes the step's
-- outbox rows, so a restart neither repeats nor skips a step.
CREATE TABLE escalations (
    fingerprint TEXT NOT NULL,
    policy      TEXT NOT NULL,
    started_at  TEXT NOT NULL,          -- steps' `after` counts from here
    next_step   INTEGER NOT NULL DEFAULT 0,  -- 0-based index of the next step to send
    ended_at    TEXT,                   -- NULL while steps remain
    end_reason  TEXT,                   -- completed | acknowledged | resolved | policy_removed
    PRIMARY KEY (fingerprint, policy)
) WITHOUT ROWID;
CREATE INDEX escalations_active ON escalations (started_at) WHERE ended_at IS NULL;

-- Each step sent: the digest's "last step sent", and the proof a step went once.
CREATE TABLE escalation_steps (
    fingerprint     TEXT NOT NULL,
    policy          TEXT NOT NULL,
    step            INTEGER NOT NULL,   -- 0-based
    due_at          TEXT NOT NULL,
    sent_at         TEXT NOT NULL,
    late            INTEGER NOT NULL,   -- 1: sent well after due (the engine was down)
    receivers       TEXT NOT NULL,      -- JSON array of receiver names
    idempotency_key TEXT NOT NULL,      -- outbox key: hash of (fingerprint, step)
    PRIMARY KEY (fingerprint, policy, step)
) WITHOUT ROWID;
