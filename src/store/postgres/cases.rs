//! [`CaseStore`] on PostgreSQL: the console's inbox, case, assignment, notes
//! and reveals (the trait and its types are in `store::cases`).
//!
//! What a person does (assign, note, reveal, a state change) is valid from
//! any instance, leader or standby: those transactions are not fenced (as
//! `change_alert_under`), so the console works on every instance.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use super::PgStore;
use crate::store::cases::{
    Assignee, COUNT_CAP, Case, CaseStore, HealthFacts, InboxItem, InboxQuery, RuleStats,
};
use crate::store::lifecycle::{Action, AlertState, ChangeError, LifecycleError, Policy};
use crate::store::lookup::LookupError;
use crate::store::prelude::*;
use crate::store::silences::{NewSilence, Silence};
use crate::store::{Result, fmt_time};

/// A WHERE clause under construction: `$n` placeholders numbered as values
/// are bound, so a clause can never disagree with its binds.
struct Where {
    sql: Vec<String>,
    binds: Vec<String>,
}

impl Where {
    /// Adds `clause`, each `{}` in it a new placeholder bound to the next of `vs`.
    fn add(&mut self, clause: &str, vs: &[&str]) {
        let mut out = String::new();
        let mut parts = clause.split("{}");
        out.push_str(parts.next().unwrap_or_default());
        for (part, v) in parts.zip(vs) {
            self.binds.push((*v).to_owned());
            out.push_str(&format!("${}", self.binds.len()));
            out.push_str(part);
        }
        self.sql.push(out);
    }
}

/// The WHERE clause of the inbox over `alert_inbox i` (one narrow row per
/// live alert, kept by triggers; migration 0005) and its bound values.
/// `with_state` false leaves the state filter out (counts per state).
fn inbox_where(q: &InboxQuery, with_state: bool) -> (String, Vec<String>) {
    let mut w = Where {
        sql: vec!["true".to_owned()],
        binds: Vec::new(),
    };
    if with_state && let Some(st) = &q.state {
        if st == "silenced" {
            w.sql.push("i.silenced".to_owned());
        } else {
            w.add("i.state = {}", &[st]);
        }
    }
    if let Some(v) = &q.severity {
        w.add("i.severity = {}", &[v]);
    }
    if let Some(v) = &q.rule {
        w.add("i.rule_id = {}", &[v]);
    }
    if let Some((k, v)) = &q.label {
        // `labels` is RS key US value RS ...: an exact pair is a substring.
        w.add(
            "strpos(i.labels, chr(30) || {} || chr(31) || {} || chr(30)) > 0",
            &[k, v],
        );
    }
    match &q.assignee {
        Assignee::Anyone => {}
        Assignee::Nobody => w.sql.push("i.assignee IS NULL".into()),
        Assignee::Person(p) => w.add("i.assignee = {}", &[p]),
    }
    if let Some(t) = q.since {
        w.add("i.fired_at >= {}", &[&fmt_time(t)]);
    }
    if let Some(t) = q.until {
        w.add("i.fired_at < {}", &[&fmt_time(t)]);
    }
    if let Some(term) = &q.search {
        // Exact matches only, each on an index: no scan of submission bodies.
        w.add(
            "i.fingerprint IN (SELECT fingerprint FROM alerts WHERE submission_id = {} \
             OR group_key = {} OR submission_id IN \
             (SELECT submission_id FROM applicants WHERE applicant_id = {} OR email = {}))",
            &[term, term, term, term],
        );
    }
    (w.sql.join(" AND "), w.binds)
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_all<'q>(mut query: PgQuery<'q>, binds: &'q [String]) -> PgQuery<'q> {
    for b in binds {
        query = query.bind(b.as_str());
    }
    query
}

/// Whether the query filters on nothing but the state (the inbox as opened).
fn only_state(q: &InboxQuery) -> bool {
    q.severity.is_none()
        && q.rule.is_none()
        && q.label.is_none()
        && q.assignee == Assignee::Anyone
        && q.since.is_none()
        && q.until.is_none()
        && q.search.is_none()
}

#[async_trait::async_trait]
impl CaseStore for PgStore {
    async fn find(&self, prefix: &str) -> Result<std::result::Result<String, LookupError>> {
        self.resolve_fingerprint(prefix).await
    }

    async fn inbox(&self, q: &InboxQuery) -> Result<(Vec<InboxItem>, i64)> {
        let (cond, binds) = inbox_where(q, true);
        let sql = format!(
            "SELECT i.fingerprint, i.rule_id, i.severity, i.submission_id, i.group_key, i.fired_at, \
             i.state, i.assignee, i.silenced FROM alert_inbox i WHERE {cond} \
             ORDER BY i.fired_at DESC, i.fingerprint DESC LIMIT {} OFFSET {}",
            q.limit.clamp(1, 500),
            q.offset.max(0)
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &binds)
            .fetch_all(self.pool())
            .await?;
        let items = rows
            .into_iter()
            .map(|r| InboxItem {
                fingerprint: r.get(0),
                rule: r.get(1),
                severity: r.get(2),
                submission_id: r.get(3),
                group_key: r.get(4),
                fired_at: r.get(5),
                state: r.get(6),
                assignee: r.get(7),
                silenced: r.get(8),
            })
            .collect();
        let total = match (only_state(q), q.state.as_deref()) {
            (true, None) => self.state_totals().await?.iter().map(|(_, n)| n).sum(),
            (true, Some(st)) if st != "silenced" => self
                .state_totals()
                .await?
                .into_iter()
                .find(|(s, _)| s == st)
                .map_or(0, |(_, n)| n),
            _ => {
                // Counted up to a cap, as on SQLite (the page says "or more").
                let sql = format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM alert_inbox i WHERE {cond} LIMIT {}) t",
                    COUNT_CAP + 1
                );
                bind_all(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .fetch_one(self.pool())
                    .await?
                    .get(0)
            }
        };
        Ok((items, total))
    }

    async fn state_counts(&self, q: &InboxQuery) -> Result<Vec<(String, i64)>> {
        if only_state(q) {
            return self.state_totals().await;
        }
        let (cond, binds) = inbox_where(q, false);
        let sql = format!(
            "SELECT st, COUNT(*) FROM (SELECT i.state AS st FROM alert_inbox i WHERE {cond} \
             ORDER BY i.fired_at DESC LIMIT {}) t GROUP BY st ORDER BY st",
            COUNT_CAP + 1
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &binds)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn next_unassigned(&self, q: &InboxQuery) -> Result<Option<String>> {
        let q = InboxQuery {
            state: Some("open".into()),
            assignee: Assignee::Nobody,
            ..q.clone()
        };
        let (cond, binds) = inbox_where(&q, true);
        let sql = format!(
            "SELECT i.fingerprint FROM alert_inbox i WHERE {cond} \
             ORDER BY i.fired_at, i.fingerprint LIMIT 1"
        );
        let row = bind_all(sqlx::query(AssertSqlSafe(sql)), &binds)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn case(&self, fingerprint: &str) -> Result<Option<Case>> {
        let Some(view) = self.alert_view(fingerprint).await? else {
            return Ok(None);
        };
        let Some(record) = self.alert(fingerprint).await? else {
            return Ok(None);
        };
        let audit = self.audit_for_alert(fingerprint).await?;
        let assignee =
            sqlx::query_scalar("SELECT assignee FROM alert_assignees WHERE fingerprint = $1")
                .bind(fingerprint)
                .fetch_optional(self.pool())
                .await?;
        let state = sqlx::query("SELECT outcome, note FROM alert_states WHERE fingerprint = $1")
            .bind(fingerprint)
            .fetch_optional(self.pool())
            .await?;
        let (outcome, note) = state.map_or((None, None), |r| (r.get(0), r.get(1)));
        let submission = self
            .submissions_raw(&[view.submission_id.as_str()])
            .await?
            .remove(&view.submission_id);
        let members = match &view.group_key {
            Some(g) => sqlx::query(
                "SELECT submission_id, event_time FROM window_members \
                 WHERE rule_id = $1 AND group_key = $2 ORDER BY event_time",
            )
            .bind(&view.rule)
            .bind(g)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
            None => Vec::new(),
        };
        Ok(Some(Case {
            members,
            view,
            record,
            audit,
            assignee,
            submission,
            outcome,
            note,
        }))
    }

    async fn change(
        &self,
        fingerprint: &str,
        by: &str,
        action: Action,
        policy: &Policy,
    ) -> std::result::Result<AlertState, ChangeError> {
        self.change_alert_under(fingerprint, by, action, policy)
            .await
    }

    async fn assign(
        &self,
        fingerprint: &str,
        to: &str,
        by: &str,
    ) -> std::result::Result<(), ChangeError> {
        let now = fmt_time(Utc::now());
        let mut tx = self.pool().begin().await?;
        exists(&mut tx, fingerprint).await?;
        sqlx::query(
            "INSERT INTO alert_assignees (fingerprint, assignee, at) VALUES ($1, $2, $3) \
             ON CONFLICT (fingerprint) DO UPDATE SET assignee = excluded.assignee, at = excluded.at",
        )
        .bind(fingerprint)
        .bind(to)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            &now,
            "assignment",
            fingerprint,
            serde_json::json!({"by": by, "to": to}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_note(
        &self,
        fingerprint: &str,
        by: &str,
        note: &str,
    ) -> std::result::Result<(), ChangeError> {
        let now = fmt_time(Utc::now());
        let mut tx = self.pool().begin().await?;
        exists(&mut tx, fingerprint).await?;
        sqlx::query("INSERT INTO alert_notes (fingerprint, at, by, note) VALUES ($1, $2, $3, $4)")
            .bind(fingerprint)
            .bind(&now)
            .bind(by)
            .bind(note)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            &now,
            "note",
            fingerprint,
            serde_json::json!({"by": by, "note": note}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_reveal(&self, fingerprint: &str, by: &str, field: &str) -> Result<()> {
        let now = fmt_time(Utc::now());
        let mut tx = self.pool().begin().await?;
        // The field's name, never its value: the audit log is not a copy of the data.
        audit(
            &mut tx,
            &now,
            "reveal",
            fingerprint,
            serde_json::json!({"by": by, "field": field}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rule_stats(&self, now: DateTime<Utc>) -> Result<Vec<RuleStats>> {
        let rows = sqlx::query(
            "SELECT a.rule_id, COUNT(*) FILTER (WHERE a.fired_at >= $1), COUNT(*), \
             COUNT(*) FILTER (WHERE s.state = 'resolved'), \
             COUNT(*) FILTER (WHERE s.state = 'resolved' AND s.outcome = 'false_positive') \
             FROM alerts a LEFT JOIN alert_states s ON s.fingerprint = a.fingerprint \
             WHERE a.fired_at >= $2 GROUP BY a.rule_id ORDER BY a.rule_id",
        )
        .bind(fmt_time(now - chrono::Duration::hours(24)))
        .bind(fmt_time(now - chrono::Duration::days(7)))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| RuleStats {
                rule: r.get(0),
                last_24h: r.get(1),
                last_7d: r.get(2),
                resolved: r.get(3),
                false_positive: r.get(4),
            })
            .collect())
    }

    async fn health(&self, today: &str) -> Result<HealthFacts> {
        let outbox = self.outbox_stats().await?;
        Ok(HealthFacts {
            last_poll: self.get_meta(crate::store::meta::LAST_POLL_META).await?,
            api_calls_today: self.api_calls_on(today).await?,
            outbox_pending: outbox.pending,
            dead_letters: outbox.dead,
        })
    }

    async fn add_silence(&self, s: &NewSilence) -> Result<i64> {
        SilenceStore::add_silence(self, s).await
    }

    async fn silences(&self, now: DateTime<Utc>, include_expired: bool) -> Result<Vec<Silence>> {
        SilenceStore::silences(self, now, include_expired).await
    }

    async fn expire_silence(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        SilenceStore::expire_silence(self, id, now).await
    }
}

impl PgStore {
    /// Live alerts per state, from the counts the triggers of migration 0005
    /// keep: no scan of a long history.
    async fn state_totals(&self) -> Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT state, n FROM alert_state_counts WHERE n > 0 ORDER BY state")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// Refuses an action on an alert that is not stored; locks its row (`FOR
/// SHARE`) so the alert cannot go away under the action.
async fn exists(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    fingerprint: &str,
) -> std::result::Result<(), ChangeError> {
    let found: Option<bool> =
        sqlx::query_scalar("SELECT true FROM alerts WHERE fingerprint = $1 FOR SHARE")
            .bind(fingerprint)
            .fetch_optional(&mut **tx)
            .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(LifecycleError::NoSuchAlert(fingerprint.to_owned()).into()),
    }
}

async fn audit(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    at: &str,
    kind: &str,
    fingerprint: &str,
    detail: serde_json::Value,
) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (at, kind, fingerprint, detail) VALUES ($1, $2, $3, $4)")
        .bind(at)
        .bind(kind)
        .bind(fingerprint)
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
