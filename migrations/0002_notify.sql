-- Notification routing state: silences and durable grouping.
-- Times as in 0001: RFC 3339 UTC text with milliseconds (text order is time order).

-- `kyc-sentinel silence add`: alerts matching a silence are recorded, not sent.
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY,
    rule_id    TEXT,                 -- NULL: any rule
    matchers   TEXT NOT NULL,        -- JSON object KEY -> VALUE, all must equal
    reason     TEXT NOT NULL,
    author     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    starts_at  TEXT NOT NULL,
    ends_at    TEXT NOT NULL         -- `silence expire` sets it to now
);
CREATE INDEX silences_ends ON silences (ends_at);

-- One row per (receiver, routing group) with alerts waiting or a repeat
-- interval running. Alerts wait here, in the store, so a crash loses no group.
CREATE TABLE notify_groups (
    receiver     TEXT NOT NULL,
    group_key    TEXT NOT NULL,
    flush_at     TEXT,               -- when the waiting alerts go out; NULL: none waiting
    repeat_until TEXT,               -- no next notification of this group before it
    repeat_ms    INTEGER NOT NULL,
    PRIMARY KEY (receiver, group_key)
) WITHOUT ROWID;
CREATE INDEX notify_groups_due ON notify_groups (flush_at) WHERE flush_at IS NOT NULL;

-- Each routed alert, per receiver; outbox_id is the notification that carried
-- it (set in the same transaction that writes that outbox row).
CREATE TABLE notify_pending (
    receiver    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    added_at    TEXT NOT NULL,
    outbox_id   INTEGER REFERENCES outbox (id),
    PRIMARY KEY (receiver, fingerprint)
) WITHOUT ROWID;
CREATE INDEX notify_pending_waiting ON notify_pending (receiver, group_key) WHERE outbox_id IS NULL;
