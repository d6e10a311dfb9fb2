//! [`LifecycleStore`] on SQLite: the decision is `crate::lifecycle::decide`'s.

use chrono::Utc;
use sqlx::Row;

use super::SqliteStore;
use crate::lifecycle::{Current, check_request, decide};
use crate::store::lifecycle::{
    Action, AlertFilter, AlertListItem, AlertState, ChangeError, LifecycleStore, Policy,
};
use crate::store::{Result, StoreError, fmt_time};

impl From<sqlx::Error> for ChangeError {
    fn from(e: sqlx::Error) -> Self {
        ChangeError::Store(StoreError::from(e))
    }
}

#[async_trait::async_trait]
impl LifecycleStore for SqliteStore {
    async fn change_alert_under(
        &self,
        fingerprint: &str,
        by: &str,
        action: Action,
        policy: &Policy,
    ) -> std::result::Result<AlertState, ChangeError> {
        check_request(by, &action)?;
        let now = fmt_time(Utc::now());
        // BEGIN IMMEDIATE: the state read and the write below are one step.
        let mut tx = self.write_tx().await?;
        let severity: Option<String> =
            sqlx::query_scalar("SELECT severity FROM alerts WHERE fingerprint = ?")
                .bind(fingerprint)
                .fetch_optional(&mut *tx)
                .await?;
        let current = match severity {
            None => None,
            Some(severity) => Some(
                sqlx::query(
                    "SELECT state, changed_by, changed_at, outcome FROM alert_states WHERE fingerprint = ?",
                )
                .bind(fingerprint)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| Current {
                    state: AlertState::parse(&r.get::<String, _>(0)).unwrap_or(AlertState::Open),
                    by: r.get(1),
                    at: r.get(2),
                    severity: severity.clone(),
                    outcome: r.get(3),
                })
                .unwrap_or_else(|| Current {
                    severity,
                    ..Current::open()
                }),
            ),
        };
        let d = decide(fingerprint, current, by, &action, policy)?;
        sqlx::query(
            "INSERT INTO alert_states (fingerprint, state, changed_at, changed_by, note, outcome) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET state = excluded.state, \
             changed_at = excluded.changed_at, changed_by = excluded.changed_by, note = excluded.note, \
             outcome = excluded.outcome",
        )
        .bind(fingerprint)
        .bind(d.to.as_str())
        .bind(&now)
        .bind(by)
        .bind(&d.note)
        .bind(&d.outcome)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO alert_state_changes (fingerprint, at, by, from_state, to_state, note, outcome) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(fingerprint)
        .bind(&now)
        .bind(by)
        .bind(d.from.as_str())
        .bind(d.to.as_str())
        .bind(&d.note)
        .bind(&d.outcome)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO audit_log (at, kind, fingerprint, detail) VALUES (?, 'state_change', ?, ?)",
        )
        .bind(&now)
        .bind(fingerprint)
        .bind(d.audit_detail(by).to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(d.to)
    }

    async fn list_alerts(&self, f: &AlertFilter) -> Result<Vec<AlertListItem>> {
        let rows = sqlx::query(
            "SELECT a.fingerprint, a.rule_id, a.severity, a.submission_id, a.fired_at, \
             COALESCE(s.state, 'open'), s.changed_by, s.outcome, \
             EXISTS (SELECT 1 FROM audit_log l WHERE l.kind = 'silenced' AND l.fingerprint = a.fingerprint) \
             FROM alerts a LEFT JOIN alert_states s ON s.fingerprint = a.fingerprint \
             WHERE (?1 IS NULL OR COALESCE(s.state, 'open') = ?1) AND (?2 IS NULL OR a.rule_id = ?2) \
             AND (?3 IS NULL OR a.fired_at >= ?3) AND a.mode = 'live' ORDER BY a.fired_at DESC, a.fingerprint",
        )
        .bind(f.state.map(AlertState::as_str))
        .bind(&f.rule)
        .bind(f.since.map(fmt_time))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AlertListItem {
                fingerprint: r.get(0),
                rule: r.get(1),
                severity: r.get(2),
                submission_id: r.get(3),
                fired_at: r.get(4),
                state: AlertState::parse(&r.get::<String, _>(5)).unwrap_or(AlertState::Open),
                changed_by: r.get(6),
                outcome: r.get(7),
                silenced: r.get::<i64, _>(8) != 0,
            })
            .collect())
    }
}
