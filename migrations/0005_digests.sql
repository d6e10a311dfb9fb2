-- Digests: scheduled summaries for compliance leads.
-- Times as in 0001: RFC 3339 UTC text with milliseconds (text order is time order).

-- Every digest written to the outbox, in the same transaction as its outbox
-- rows: a digest is recorded once, so it goes out once.
CREATE TABLE digests (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    scheduled_at TEXT NOT NULL,   -- the scheduled time it is for (the last one, when combined)
    period_start TEXT NOT NULL,
    period_end   TEXT NOT NULL,
    slots        INTEGER NOT NULL, -- scheduled times covered (> 1: a combined catch-up)
    trigger      TEXT NOT NULL,    -- schedule | catch_up | send_now
    content_hash TEXT NOT NULL,    -- SHA-256 of the rendered text part
    created_at   TEXT NOT NULL,
    UNIQUE (name, scheduled_at)
);

-- Where each digest's schedule stands: every scheduled time up to `last_slot`
-- is done. Set to the start time when a digest is first seen (no backlog of
-- digests for the time before it existed) or its schedule changes.
CREATE TABLE digest_schedules (
    name      TEXT PRIMARY KEY,
    last_slot TEXT NOT NULL,
    schedule  TEXT NOT NULL,      -- pattern and zone the slot was computed with
    updated   TEXT NOT NULL
);
