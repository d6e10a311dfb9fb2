//! Digests: scheduled summaries for compliance leads, one message per period
//! in their own time zone.
//!
//! Digests that never send, stick on a past time, or send twice after a
//! restart are what users of other tools complain about; the design answers
//! each. Every scheduled time is a UTC instant ([`Schedule`]); the store keeps
//! the last one done per digest, and a digest is recorded in the same
//! transaction as its outbox rows, so it is written once and the outbox
//! delivers it at least once with one idempotency key. On start, every
//! scheduled time missed while the engine was down is sent (one digest each,
//! or one `combined`), and nothing already sent is sent again.
//!
//! The scheduler is a task (`select!` over the next scheduled time and
//! shutdown) with an injectable [`Clock`], so tests move time by hand.

pub mod report;
mod schedule;

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
pub use report::{Report, ReportInput};
pub use schedule::{MAX_CATCH_UP, Schedule};

use crate::config::{CatchUp, Config, DigestConfig};
use crate::outbox_payload::RenderedDigest;
use crate::store::prelude::*;
use crate::store::{DigestRecord, OutboxInsert};
use crate::templates::Templates;

pub use crate::store::meta::LAST_POLL_META;

/// One digest written to the outbox (or found already written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub name: String,
    pub scheduled_at: DateTime<Utc>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub slots: u32,
    /// The outbox key (email `Message-ID`, webhook `Idempotency-Key`).
    pub key: String,
    /// False when this digest had been recorded before: nothing new was written.
    pub recorded: bool,
}

/// The template names of a digest: (subject, text, html).
fn template_names(base: &str) -> (String, String, String) {
    (
        format!("{base}_subject.txt"),
        format!("{base}.txt"),
        format!("{base}.html"),
    )
}

/// Checks that a digest's three templates exist.
pub fn check_templates(d: &DigestConfig, templates: &Templates) -> Result<(), String> {
    let (s, t, h) = template_names(&d.template);
    for name in [s, t, h] {
        if !templates.contains(&name) {
            return Err(format!(
                "digests.{d}.template: no template named `{name}` (a digest needs `{t}.html`, `{t}.txt` and `{t}_subject.txt`)",
                d = d.name,
                t = d.template
            ));
        }
    }
    Ok(())
}

/// Renders a report with a digest's templates.
pub fn render(
    templates: &Templates,
    template: &str,
    report: &Report,
) -> Result<RenderedDigest, String> {
    let (s, t, h) = template_names(template);
    let ctx = serde_json::json!({ "report": report });
    let subject = templates.render_value(&s, &ctx)?;
    Ok(RenderedDigest {
        name: report.name.clone(),
        subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
        text: templates.render_value(&t, &ctx)?,
        html: templates.render_value(&h, &ctx)?,
        data: serde_json::to_value(report).expect("a report serializes"),
    })
}

/// The period a digest scheduled at `slot` covers: `period` back from it,
/// else since the previous scheduled time.
pub fn period_for(d: &DigestConfig, s: &Schedule, slot: DateTime<Utc>) -> DateTime<Utc> {
    match d.period {
        Some(p) => slot - chrono::Duration::from_std(p.0).unwrap_or(chrono::Duration::days(1)),
        None => s
            .previous_before(slot)
            .unwrap_or(slot - chrono::Duration::days(1)),
    }
}

/// Reads the store and builds the report of `[start, end)`.
pub async fn gather(
    store: &dyn StateStore,
    d: &DigestConfig,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    slots: u32,
    trigger: &str,
    daily_budget: u64,
) -> anyhow::Result<Report> {
    let at = || format!("digest `{}` for {start}..{end}", d.name);
    let len = end - start;
    let api_day = (end - chrono::Duration::milliseconds(1))
        .format("%Y-%m-%d")
        .to_string();
    let last_poll = store
        .get_meta(LAST_POLL_META)
        .await
        .with_context(at)?
        .and_then(|s| crate::store::parse_time("meta.last_successful_poll", &s).ok());
    let input = ReportInput {
        name: d.name.clone(),
        timezone: d.timezone.clone(),
        trigger: trigger.to_owned(),
        period_start: start,
        period_end: end,
        slots,
        alerts: store
            .alerts_fired_between(start, end)
            .await
            .with_context(at)?,
        previous: store
            .alerts_fired_between(start - len, start)
            .await
            .with_context(at)?,
        open: store.open_alerts_before(end).await.with_context(at)?,
        rule_errors: store
            .rule_errors_between(start, end)
            .await
            .with_context(at)?,
        dead_letters: store
            .dead_letters_between(start, end)
            .await
            .with_context(at)?,
        last_successful_poll: last_poll.filter(|t| *t <= end),
        api_calls: store.api_calls_on(&api_day).await.with_context(at)?,
        api_day,
        daily_budget,
        shadow: crate::store::shadow::ShadowStore::shadow_counts(store, start, end)
            .await
            .with_context(at)?,
    };
    Ok(report::build(
        &input,
        &d.filters,
        report::Limits {
            top: d.top,
            open: d.open_alerts_limit,
        },
    ))
}

/// Renders the digest `d` as it would be at `at` (the period ending then),
/// sending nothing: `digest --preview` and the demo's `digest.html`.
pub async fn preview(
    store: &dyn StateStore,
    templates: &Templates,
    d: &DigestConfig,
    at: DateTime<Utc>,
    daily_budget: u64,
) -> anyhow::Result<RenderedDigest> {
    let s = Schedule::parse(&d.schedule, &d.timezone)
        .map_err(|e| anyhow::anyhow!("digests.{}: {e}", d.name))?;
    let report = gather(
        store,
        d,
        period_for(d, &s, at),
        at,
        1,
        "preview",
        daily_budget,
    )
    .await?;
    render(templates, &d.template, &report).map_err(anyhow::Error::msg)
}

/// The outbox key of a digest: readable, and unique per digest and time.
pub fn outbox_key(name: &str, scheduled_at: DateTime<Utc>) -> String {
    format!("digest-{name}-{}", scheduled_at.format("%Y%m%dT%H%M%SZ"))
}

struct Plan {
    cfg: DigestConfig,
    schedule: Schedule,
}

/// Runs the configured digests against a store.
pub struct Digester {
    store: Arc<dyn StateStore>,
    templates: Arc<Templates>,
    plans: Vec<Plan>,
    daily_budget: u64,
    wake: Option<Arc<Notify>>,
}

impl Digester {
    /// None when the config has no digests.
    pub fn from_config(
        cfg: &Config,
        store: Arc<dyn StateStore>,
    ) -> anyhow::Result<Option<Digester>> {
        if cfg.digests.is_empty() {
            return Ok(None);
        }
        // With the links: each alert of a digest links to its console page.
        let templates = Arc::new(
            Templates::load(&cfg.templates)
                .map_err(|errs| {
                    anyhow::anyhow!("the templates have problems:\n{}", errs.join("\n"))
                })?
                .with_links(crate::templates::Links::from_config(cfg)),
        );
        let mut plans = Vec::new();
        let mut errs = Vec::new();
        for d in &cfg.digests {
            if let Err(e) = check_templates(d, &templates) {
                errs.push(e);
            }
            match Schedule::parse(&d.schedule, &d.timezone) {
                Ok(schedule) => plans.push(Plan {
                    cfg: d.clone(),
                    schedule,
                }),
                Err(e) => errs.push(format!("digests.{}: {e}", d.name)),
            }
        }
        anyhow::ensure!(
            errs.is_empty(),
            "the digests have problems:\n{}",
            errs.join("\n")
        );
        Ok(Some(Digester {
            store,
            templates,
            plans,
            daily_budget: cfg.argos.daily_budget,
            wake: None,
        }))
    }

    /// Wakes the outbox when a digest is written (else it finds it within its idle wait).
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    fn plan(&self, name: &str) -> anyhow::Result<&Plan> {
        self.plans
            .iter()
            .find(|p| p.cfg.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.plans.iter().map(|p| p.cfg.name.as_str()).collect();
                anyhow::anyhow!("no digest named `{name}` (digests: {})", names.join(", "))
            })
    }

    /// Renders digest `name` for the period ending at `at`; sends nothing.
    pub async fn preview(&self, name: &str, at: DateTime<Utc>) -> anyhow::Result<RenderedDigest> {
        let p = self.plan(name)?;
        preview(
            self.store.as_ref(),
            &self.templates,
            &p.cfg,
            at,
            self.daily_budget,
        )
        .await
    }

    /// Writes digest `name` for the period ending at `at` to the outbox now,
    /// off schedule (the schedule is not moved).
    pub async fn send_now(&self, name: &str, at: DateTime<Utc>) -> anyhow::Result<Sent> {
        let p = self.plan(name)?;
        let start = period_for(&p.cfg, &p.schedule, at);
        self.write(p, at, start, 1, "send_now", false).await
    }

    /// Writes every digest whose scheduled time came by `now` and is not
    /// done: the missed ones after downtime too, each or combined.
    pub async fn run_due(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<Sent>> {
        let mut out = Vec::new();
        for p in &self.plans {
            let name = &p.cfg.name;
            let anchor = self
                .store
                .digest_anchor(name, &p.schedule.key(), now)
                .await
                .with_context(|| format!("digest `{name}`"))?;
            let slots = p.schedule.between(anchor, now, MAX_CATCH_UP);
            let Some(&last) = slots.last() else { continue };
            if slots.len() > 1 || now - last > chrono::Duration::minutes(5) {
                tracing::info!(
                    digest = %name, missed = slots.len(), since = %anchor,
                    "digest times passed while the engine was not running; sending them now"
                );
            }
            let trigger = |slot: DateTime<Utc>| {
                if now - slot > chrono::Duration::minutes(5) {
                    "catch_up"
                } else {
                    "schedule"
                }
            };
            match p.cfg.catch_up {
                CatchUp::Each => {
                    for &slot in &slots {
                        let start = period_for(&p.cfg, &p.schedule, slot);
                        out.push(self.write(p, slot, start, 1, trigger(slot), true).await?);
                    }
                }
                CatchUp::Combined => {
                    let start = period_for(&p.cfg, &p.schedule, slots[0]);
                    let n = slots.len() as u32;
                    out.push(self.write(p, last, start, n, trigger(last), true).await?);
                }
            }
        }
        Ok(out)
    }

    /// Renders and records one digest with its outbox rows, in one transaction.
    async fn write(
        &self,
        p: &Plan,
        scheduled_at: DateTime<Utc>,
        start: DateTime<Utc>,
        slots: u32,
        trigger: &str,
        advance: bool,
    ) -> anyhow::Result<Sent> {
        let d = &p.cfg;
        let report = gather(
            self.store.as_ref(),
            d,
            start,
            scheduled_at,
            slots,
            trigger,
            self.daily_budget,
        )
        .await?;
        let rendered = render(&self.templates, &d.template, &report)
            .map_err(|e| anyhow::anyhow!("digest `{}`: {e}", d.name))?;
        let key = outbox_key(&d.name, scheduled_at);
        let hash =
            crate::util::sha256_hex(format!("{}\n{}", rendered.text, rendered.html).as_bytes());
        let payload = serde_json::json!({ "digest": rendered }).to_string();
        let outbox: Vec<OutboxInsert> = d
            .receivers
            .iter()
            .map(|r| OutboxInsert {
                fingerprint: key.clone(),
                receiver: r.clone(),
                payload: payload.clone(),
            })
            .collect();
        let rec = DigestRecord {
            name: d.name.clone(),
            scheduled_at,
            period_start: start,
            period_end: scheduled_at,
            slots,
            trigger: trigger.to_owned(),
            content_hash: hash,
        };
        let recorded = self
            .store
            .record_digest(&rec, &outbox, advance)
            .await
            .with_context(|| format!("recording digest `{}` for {scheduled_at}", d.name))?;
        if recorded {
            crate::telemetry::emit::digest(&d.name, trigger);
            tracing::info!(
                digest = %d.name, key = %key, period_start = %start, period_end = %scheduled_at,
                slots, trigger, alerts = report.totals.alerts, open = report.open_alerts.count,
                "digest written to the outbox"
            );
            if let Some(w) = &self.wake {
                w.notify_one();
            }
        } else {
            tracing::debug!(digest = %d.name, key = %key, "digest already recorded; not sent again");
        }
        Ok(Sent {
            name: d.name.clone(),
            scheduled_at,
            period_start: start,
            period_end: scheduled_at,
            slots,
            key,
            recorded,
        })
    }

    /// The scheduler: catch up, then sleep until the next scheduled time of
    /// any digest (or shutdown), write what is due, repeat. A store error is
    /// logged and retried a minute later; nothing is skipped, since the
    /// schedule only moves when a digest is recorded.
    pub async fn run(self, clock: Arc<dyn Clock>, shutdown: CancellationToken) {
        loop {
            let now = clock.now();
            let mut next = self
                .plans
                .iter()
                .filter_map(|p| p.schedule.next_after(now))
                .min();
            if let Err(e) = self.run_due(now).await {
                tracing::error!("digests: {e:#}; trying again in a minute");
                let retry = now + chrono::Duration::minutes(1);
                next = Some(next.map_or(retry, |n| n.min(retry)));
            }
            let Some(next) = next else {
                // No schedule has a future time (croner stops at year 5000).
                shutdown.cancelled().await;
                return;
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = clock.sleep_until(next) => {}
            }
        }
    }
}

/// Starts the scheduler task on `tasks` when the config has digests.
pub fn spawn(
    cfg: &Config,
    store: Arc<dyn StateStore>,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    Ok(Digester::from_config(cfg, store)?
        .map(|d| tasks.spawn(d.with_wake(wake).run(clock, shutdown))))
}
