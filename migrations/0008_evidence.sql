-- Day one: quiet history and complete delivery evidence.
-- Times as in 0001: RFC 3339 UTC text with milliseconds (text order is time order).

-- Alerts judged by a quiet `backfill`: recorded, never notified, escalated or
-- counted as new by a digest (their `alert_states` row says `historical`).
ALTER TABLE alerts ADD COLUMN historical INTEGER NOT NULL DEFAULT 0;

-- Which alerts each notification carried: one alert, a routing group, an
-- escalation step, a digest. Kept by the trigger below, so every writer of the
-- outbox (pipeline, group flush, escalation, digest) links its rows in its own
-- transaction without knowing about this table.
CREATE TABLE outbox_alerts (
    outbox_id   INTEGER NOT NULL REFERENCES outbox (id),
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (outbox_id, fingerprint)
) WITHOUT ROWID;
CREATE INDEX outbox_alerts_fingerprint ON outbox_alerts (fingerprint);

-- Every `fingerprint` in the payload that names a stored alert: the alerts of
-- a group or an escalation step (`$.alerts[*]`), a bare alert (rows from
-- before routing), the alerts a digest lists (anywhere under `$.digest`).
CREATE TRIGGER outbox_link_alerts AFTER INSERT ON outbox
BEGIN
    INSERT OR IGNORE INTO outbox_alerts (outbox_id, fingerprint)
    SELECT DISTINCT NEW.id, t.value FROM json_tree(NEW.payload) t
    WHERE t.key = 'fingerprint' AND t.type = 'text'
      AND EXISTS (SELECT 1 FROM alerts a WHERE a.fingerprint = t.value);
END;

INSERT OR IGNORE INTO outbox_alerts (outbox_id, fingerprint)
SELECT DISTINCT o.id, t.value FROM outbox o, json_tree(o.payload) t
WHERE t.key = 'fingerprint' AND t.type = 'text'
  AND EXISTS (SELECT 1 FROM alerts a WHERE a.fingerprint = t.value);

-- Every delivery attempt becomes an audit row for each alert it carried (one
-- row without a fingerprint when it carried none), in the transaction that
-- records the attempt: receiver, time, attempt number, outcome, idempotency
-- key. `record_deliveries` updates the outbox row before inserting the
-- attempt, so `o.attempts` and `o.state` are the attempt's own.
CREATE TRIGGER delivery_attempt_audit AFTER INSERT ON delivery_attempts
BEGIN
    INSERT INTO audit_log (at, kind, fingerprint, detail)
    SELECT NEW.at, 'delivery', l.fingerprint, json_object(
        'receiver', o.receiver,
        'attempt', o.attempts,
        'outcome', CASE WHEN NEW.ok THEN 'delivered'
                        WHEN o.state = 'dead' THEN 'failed, given up (dead letter)'
                        ELSE 'failed, will retry' END,
        'error', NEW.detail,
        'idempotency_key', o.fingerprint,
        'notification', CASE WHEN json_type(o.payload, '$.digest') IS NOT NULL THEN 'digest'
                             WHEN json_type(o.payload, '$.escalation') = 'object' THEN 'escalation step'
                             WHEN json_array_length(o.payload, '$.alerts') > 1 THEN 'grouped'
                             ELSE 'alert' END,
        'alerts_carried', (SELECT COUNT(*) FROM outbox_alerts c WHERE c.outbox_id = o.id))
    FROM outbox o LEFT JOIN outbox_alerts l ON l.outbox_id = o.id
    WHERE o.id = NEW.outbox_id;
END;

-- The attempts recorded before this migration, as the trigger would have
-- written them (attempt numbers counted per notification, in order).
INSERT INTO audit_log (at, kind, fingerprint, detail)
SELECT d.at, 'delivery', l.fingerprint, json_object(
    'receiver', o.receiver,
    'attempt', d.n,
    'outcome', CASE WHEN d.ok THEN 'delivered'
                    WHEN o.state = 'dead' AND d.n = o.attempts THEN 'failed, given up (dead letter)'
                    ELSE 'failed, will retry' END,
    'error', d.detail,
    'idempotency_key', o.fingerprint,
    'notification', CASE WHEN json_type(o.payload, '$.digest') IS NOT NULL THEN 'digest'
                         WHEN json_type(o.payload, '$.escalation') = 'object' THEN 'escalation step'
                         WHEN json_array_length(o.payload, '$.alerts') > 1 THEN 'grouped'
                         ELSE 'alert' END,
    'alerts_carried', (SELECT COUNT(*) FROM outbox_alerts c WHERE c.outbox_id = o.id))
FROM (SELECT id, outbox_id, at, ok, detail,
             ROW_NUMBER() OVER (PARTITION BY outbox_id ORDER BY id) AS n
      FROM delivery_attempts) d
JOIN outbox o ON o.id = d.outbox_id
LEFT JOIN outbox_alerts l ON l.outbox_id = o.id
ORDER BY d.id;

CREATE INDEX audit_at ON audit_log (at);
