-- Twin of SQLite's 0009_shadow.sql (issue 18): shadow rules' alerts are
-- recorded beside the live ones but never routed, escalated or counted by a
-- digest; `replaces` is the live rule a shadow rule is a candidate for.
ALTER TABLE alerts ADD COLUMN mode TEXT NOT NULL DEFAULT 'live';
ALTER TABLE alerts ADD COLUMN replaces TEXT;
CREATE INDEX alerts_mode_event ON alerts (mode, event_time);
