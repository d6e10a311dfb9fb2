//! The pipeline's role: versions seen, the rule engine's state, and the one
//! transaction that commits a batch (see [`crate::store::PipelineStore::commit_batch`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{PgStore, insert_many};
use crate::store::prelude::*;
use crate::store::{
    BatchCommit, BatchPrefetch, OpenWindows, Result, SeenVersion, StateChange, StoreError,
    StoredWindowMember, fmt_time, parse_time,
};

fn window_member(r: &sqlx::postgres::PgRow) -> Result<StoredWindowMember> {
    Ok(StoredWindowMember {
        rule_id: r.get(0),
        key: r.get(1),
        submission_id: r.get(2),
        event_time: parse_time("window_members.event_time", &r.get::<String, _>(3))?,
        consumed: r.get(4),
    })
}

#[async_trait::async_trait]
impl PipelineStore for PgStore {
    async fn seen_versions(&self, ids: &[&str]) -> Result<HashMap<String, SeenVersion>> {
        let rows = sqlx::query(
            "SELECT submission_id, content_hash, kyc_result FROM submission_versions \
             WHERE submission_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get(0),
                    SeenVersion {
                        content_hash: r.get(1),
                        kyc_result: r.get(2),
                    },
                )
            })
            .collect())
    }

    async fn undecided_since(
        &self,
        horizon: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<DateTime<Utc>>)>> {
        let rows = sqlx::query(
            "SELECT submission_id, created_at FROM submission_versions \
             WHERE (kyc_result IS NULL OR kyc_result IN ('pending', 'incomplete')) \
             AND created_at >= $1 ORDER BY created_at",
        )
        .bind(fmt_time(horizon))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let created: Option<String> = r.get(1);
                let created = created
                    .map(|t| parse_time("submission_versions.created_at", &t))
                    .transpose()?;
                Ok((r.get(0), created))
            })
            .collect()
    }

    async fn prefetch(
        &self,
        submission_ids: &[&str],
        applicant_ids: &[&str],
    ) -> Result<BatchPrefetch> {
        let mut out = BatchPrefetch::default();
        let rows = sqlx::query(
            "SELECT submission_id, kyc_result FROM submission_results WHERE submission_id = ANY($1)",
        )
        .bind(submission_ids)
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            out.results.insert(r.get(0), r.get(1));
        }
        let rows = sqlx::query(
            "SELECT rule_id, submission_id FROM rule_fired WHERE submission_id = ANY($1)",
        )
        .bind(submission_ids)
        .fetch_all(&self.pool)
        .await?;
        out.fired = rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        let rows = sqlx::query(
            "SELECT applicant_id, submission_id, email, event_time FROM applicants \
             WHERE applicant_id = ANY($1)",
        )
        .bind(applicant_ids)
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let t: String = r.get(3);
            out.applicants.entry(r.get(0)).or_default().push((
                r.get(1),
                r.get(2),
                parse_time("applicants.event_time", &t)?,
            ));
        }
        Ok(out)
    }

    async fn open_windows(&self, since: DateTime<Utc>) -> Result<OpenWindows> {
        let since = fmt_time(since);
        let members = sqlx::query(
            "SELECT rule_id, group_key, submission_id, event_time, consumed FROM window_members \
             WHERE event_time > $1",
        )
        .bind(&since)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(window_member)
        .collect::<Result<Vec<_>>>()?;
        let rows =
            sqlx::query("SELECT rule_id, throttle_key, until FROM throttles WHERE until > $1")
                .bind(&since)
                .fetch_all(&self.pool)
                .await?;
        let throttles = rows
            .into_iter()
            .map(|r| {
                let t: String = r.get(2);
                Ok((r.get(0), r.get(1), parse_time("throttles.until", &t)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((members, throttles))
    }

    /// The stored members among `(rule_id, group_key, submission_id)` triples.
    async fn window_memberships(
        &self,
        members: &[(&str, &str, &str)],
    ) -> Result<Vec<StoredWindowMember>> {
        let rules: Vec<&str> = members.iter().map(|m| m.0).collect();
        let keys: Vec<&str> = members.iter().map(|m| m.1).collect();
        let ids: Vec<&str> = members.iter().map(|m| m.2).collect();
        sqlx::query(
            "SELECT w.rule_id, w.group_key, w.submission_id, w.event_time, w.consumed \
             FROM window_members w \
             JOIN unnest($1::text[], $2::text[], $3::text[]) AS m (rule_id, group_key, submission_id) \
             ON w.rule_id = m.rule_id AND w.group_key = m.group_key AND w.submission_id = m.submission_id",
        )
        .bind(&rules)
        .bind(&keys)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(window_member)
        .collect()
    }

    async fn latest_window_event(&self) -> Result<Option<DateTime<Utc>>> {
        let t: Option<String> = sqlx::query_scalar("SELECT MAX(event_time) FROM window_members")
            .fetch_one(&self.pool)
            .await?;
        t.map(|t| parse_time("window_members.event_time", &t))
            .transpose()
    }

    /// See [`crate::store::PipelineStore::commit_batch`]: one transaction, fenced when leading.
    async fn commit_batch(&self, batch: BatchCommit) -> Result<()> {
        let now = fmt_time(Utc::now());
        // One upsert statement may not touch a key twice (see write_state).
        let versions = last_per_key(batch.versions.iter().collect(), |v| v.submission_id.clone());
        let mut tx = self.write_tx().await?;
        insert_many(
            &mut tx,
            "INSERT INTO submission_versions \
             (submission_id, content_hash, kyc_result, created_at, event_time, first_seen, last_changed, raw, found_by)",
            9,
            "ON CONFLICT (submission_id) DO UPDATE SET content_hash = excluded.content_hash, \
             kyc_result = excluded.kyc_result, created_at = excluded.created_at, \
             event_time = excluded.event_time, last_changed = excluded.last_changed, raw = excluded.raw, \
             found_by = excluded.found_by",
            &versions,
            |q, v| {
                q.bind(&v.submission_id)
                    .bind(&v.content_hash)
                    .bind(v.kyc_result.as_deref().map(str::to_ascii_lowercase))
                    .bind(v.created_at.map(fmt_time))
                    .bind(fmt_time(v.event_time))
                    .bind(&now)
                    .bind(&now)
                    .bind(&v.raw)
                    .bind(batch.source.as_str())
            },
        )
        .await?;
        if !batch.versions.is_empty() {
            sqlx::query(
                "INSERT INTO version_sources (source, versions) VALUES ($1, $2) \
                 ON CONFLICT (source) DO UPDATE SET versions = version_sources.versions + excluded.versions",
            )
            .bind(batch.source.as_str())
            .bind(batch.versions.len() as i64)
            .execute(&mut *tx)
            .await?;
        }
        write_state(&mut tx, &batch.state).await?;
        insert_many(
            &mut tx,
            "INSERT INTO alerts (fingerprint, rule_id, rule_version, severity, submission_id, \
             group_key, event_time, fired_at, body, historical)",
            10,
            "ON CONFLICT DO NOTHING",
            &batch.alerts,
            |q, a| {
                q.bind(&a.fingerprint)
                    .bind(&a.rule_id)
                    .bind(&a.rule_version)
                    .bind(&a.severity)
                    .bind(&a.submission_id)
                    .bind(&a.group_key)
                    .bind(fmt_time(a.event_time))
                    .bind(&now)
                    .bind(&a.body)
                    .bind(batch.historical)
            },
        )
        .await?;
        // Shadow rules' alerts: recorded beside the live ones, never routed.
        insert_many(
            &mut tx,
            "INSERT INTO alerts (fingerprint, rule_id, rule_version, severity, submission_id, \
             group_key, event_time, fired_at, body, historical, mode, replaces)",
            12,
            "ON CONFLICT DO NOTHING",
            &batch.shadow_alerts,
            |q, s| {
                let a = &s.alert;
                q.bind(&a.fingerprint)
                    .bind(&a.rule_id)
                    .bind(&a.rule_version)
                    .bind(&a.severity)
                    .bind(&a.submission_id)
                    .bind(&a.group_key)
                    .bind(fmt_time(a.event_time))
                    .bind(&now)
                    .bind(&a.body)
                    .bind(batch.historical)
                    .bind("shadow")
                    .bind(&s.replaces)
            },
        )
        .await?;
        if batch.historical {
            // Judged quietly: nobody was told, so nobody has to act on them.
            insert_many(
                &mut tx,
                "INSERT INTO alert_states (fingerprint, state, changed_at, changed_by)",
                4,
                "ON CONFLICT DO NOTHING",
                &batch.alerts,
                |q, a| {
                    q.bind(&a.fingerprint)
                        .bind("historical")
                        .bind(&now)
                        .bind("backfill")
                },
            )
            .await?;
        }
        // DO NOTHING: the same alert re-decided after a crash keeps its row.
        insert_many(
            &mut tx,
            "INSERT INTO outbox (fingerprint, receiver, payload, created_at, next_attempt_at)",
            5,
            "ON CONFLICT DO NOTHING",
            &batch.outbox,
            |q, o| {
                q.bind(&o.fingerprint)
                    .bind(&o.receiver)
                    .bind(&o.payload)
                    .bind(&now)
                    .bind(&now)
            },
        )
        .await?;
        super::outbox::join_groups(&mut tx, &batch.notify, &now).await?;
        insert_many(
            &mut tx,
            "INSERT INTO audit_log (at, kind, submission_id, version_hash, rule_id, rule_version, \
             fingerprint, detail)",
            8,
            "",
            &batch.audit,
            |q, a| {
                q.bind(&now)
                    .bind(a.kind)
                    .bind(&a.submission_id)
                    .bind(&a.version_hash)
                    .bind(&a.rule_id)
                    .bind(&a.rule_version)
                    .bind(&a.fingerprint)
                    .bind(a.detail.to_string())
            },
        )
        .await?;
        for (k, v) in &batch.meta {
            set_meta(&mut tx, k, v).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn submissions_raw(&self, ids: &[&str]) -> Result<HashMap<String, serde_json::Value>> {
        let rows = sqlx::query(
            "SELECT submission_id, raw FROM submission_versions \
             WHERE raw IS NOT NULL AND submission_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let raw: String = r.get(1);
            let v = serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
                what: "submission_versions.raw",
                detail: e.to_string(),
            })?;
            out.insert(r.get(0), v);
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl MetaStore for PgStore {
    async fn add_api_calls(&self, day: &str, n: u64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let calls: i64 = sqlx::query_scalar(
            "INSERT INTO api_budget (day, calls) VALUES ($1, $2) \
             ON CONFLICT (day) DO UPDATE SET calls = api_budget.calls + excluded.calls RETURNING calls",
        )
        .bind(day)
        .bind(n as i64)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(calls.max(0) as u64)
    }

    async fn found_first(&self) -> Result<HashMap<String, u64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT source, versions FROM version_sources")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (s, n.max(0) as u64))
            .collect())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        set_meta(&mut tx, key, value).await?;
        Ok(tx.commit().await?)
    }

    /// Argos calls counted for a UTC day (`YYYY-MM-DD`).
    async fn api_calls_on(&self, day: &str) -> Result<u64> {
        let n: Option<i64> = sqlx::query_scalar("SELECT calls FROM api_budget WHERE day = $1")
            .bind(day)
            .fetch_optional(self.pool())
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }
}

async fn set_meta(conn: &mut sqlx::PgConnection, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

/// The rule engine's state changes. Each table's rows keep their journal
/// order (a later upsert of the same key wins); window adds and consumes stay
/// in journal order.
async fn write_state(conn: &mut sqlx::PgConnection, state: &[StateChange]) -> Result<()> {
    let mut results = Vec::new();
    let mut applicants = Vec::new();
    let mut fired = Vec::new();
    let mut throttles = Vec::new();
    let mut window_ops: Vec<&StateChange> = Vec::new();
    for change in state {
        match change {
            StateChange::Result { .. } => results.push(change),
            StateChange::Applicant { .. } => applicants.push(change),
            StateChange::Fired { .. } => fired.push(change),
            StateChange::Throttle { .. } => throttles.push(change),
            StateChange::WindowAdd { .. } | StateChange::WindowConsume { .. } => {
                window_ops.push(change)
            }
        }
    }
    // PostgreSQL refuses one upsert statement that touches a key twice
    // ("ON CONFLICT DO UPDATE command cannot affect row a second time"):
    // the last change of a key wins, as it would row by row.
    let results = last_per_key(results, |c| match c {
        StateChange::Result { submission_id, .. } => submission_id.clone(),
        _ => unreachable!("only results here"),
    });
    let throttles = last_per_key(throttles, |c| match c {
        StateChange::Throttle { rule_id, key, .. } => format!("{rule_id}\u{0}{key}"),
        _ => unreachable!("only throttles here"),
    });
    insert_many(
        conn,
        "INSERT INTO submission_results (submission_id, kyc_result)",
        2,
        "ON CONFLICT (submission_id) DO UPDATE SET kyc_result = excluded.kyc_result",
        &results,
        |q, c| match c {
            StateChange::Result {
                submission_id,
                kyc_result,
            } => q.bind(submission_id).bind(kyc_result),
            _ => unreachable!("only results here"),
        },
    )
    .await?;
    insert_many(
        conn,
        "INSERT INTO applicants (applicant_id, submission_id, email, event_time)",
        4,
        "ON CONFLICT DO NOTHING",
        &applicants,
        |q, c| match c {
            StateChange::Applicant {
                applicant_id,
                submission_id,
                email,
                event_time,
            } => q
                .bind(applicant_id)
                .bind(submission_id)
                .bind(email)
                .bind(fmt_time(*event_time)),
            _ => unreachable!("only applicants here"),
        },
    )
    .await?;
    insert_many(
        conn,
        "INSERT INTO rule_fired (rule_id, submission_id)",
        2,
        "ON CONFLICT DO NOTHING",
        &fired,
        |q, c| match c {
            StateChange::Fired {
                rule_id,
                submission_id,
            } => q.bind(rule_id).bind(submission_id),
            _ => unreachable!("only fired here"),
        },
    )
    .await?;
    insert_many(
        conn,
        "INSERT INTO throttles (rule_id, throttle_key, until)",
        3,
        "ON CONFLICT (rule_id, throttle_key) DO UPDATE SET until = excluded.until",
        &throttles,
        |q, c| match c {
            StateChange::Throttle {
                rule_id,
                key,
                until,
            } => q.bind(rule_id).bind(key).bind(fmt_time(*until)),
            _ => unreachable!("only throttles here"),
        },
    )
    .await?;
    // Runs of window adds go in one statement; a consume waits for the adds before it.
    let mut adds: Vec<&StateChange> = Vec::new();
    for change in window_ops {
        match change {
            StateChange::WindowAdd { .. } => adds.push(change),
            StateChange::WindowConsume {
                rule_id,
                key,
                submission_ids,
            } => {
                insert_window_adds(conn, &adds).await?;
                adds.clear();
                sqlx::query(
                    "UPDATE window_members SET consumed = true \
                     WHERE rule_id = $1 AND group_key = $2 AND submission_id = ANY($3)",
                )
                .bind(rule_id)
                .bind(key)
                .bind(submission_ids)
                .execute(&mut *conn)
                .await?;
            }
            _ => unreachable!("only window changes here"),
        }
    }
    insert_window_adds(conn, &adds).await
}

/// The last of each key's items, in the order of their last occurrence.
fn last_per_key<T: Copy>(items: Vec<T>, key: impl Fn(T) -> String) -> Vec<T> {
    let mut last: HashMap<String, usize> = HashMap::new();
    for (i, c) in items.iter().enumerate() {
        last.insert(key(*c), i);
    }
    items
        .iter()
        .enumerate()
        .filter(|(i, c)| last[&key(**c)] == *i)
        .map(|(_, c)| *c)
        .collect()
}

async fn insert_window_adds(conn: &mut sqlx::PgConnection, adds: &[&StateChange]) -> Result<()> {
    insert_many(
        conn,
        "INSERT INTO window_members (rule_id, group_key, submission_id, event_time)",
        4,
        "ON CONFLICT DO NOTHING",
        adds,
        |q, c| match c {
            StateChange::WindowAdd {
                rule_id,
                key,
                submission_id,
                event_time,
            } => q
                .bind(rule_id)
                .bind(key)
                .bind(submission_id)
                .bind(fmt_time(*event_time)),
            _ => unreachable!("only window adds here"),
        },
    )
    .await
}
