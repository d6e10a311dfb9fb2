//! The command line, as clap sees it. Each command's work is in
//! [`crate::commands`]; this file only describes flags and their help.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Compliance rules and alerting engine for Argos Identity KYC/AML submissions.
///
/// kyc-sentinel polls the Argos REST API for new and changed submissions,
/// evaluates YAML/Rhai rules over them and delivers alerts at least once,
/// each re-send with the same idempotency key.
#[derive(Debug, Parser)]
#[command(name = "kyc-sentinel", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// See the engine work in one command: a simulated Argos account, the
    /// shipped rules, alerts written to demo-out/, a summary at the end.
    Demo(DemoArgs),
    /// Run a local Argos API simulator (for tests, demos and staging).
    Simulate(SimulateArgs),
    /// Validate rule files: every problem as `path:line:column: message`, exit 2 if any.
    Check(CheckArgs),
    /// Evaluate rules over submissions from a file or stdin; print alerts as JSON lines.
    Eval(EvalArgs),
    /// Run rule unit tests (`*.test.yaml` files); exit 1 with a diff on failure.
    Test(TestArgs),
    /// Run the daemon: poll Argos, evaluate rules, deliver alerts, until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Evaluate past days through the same store: a second run over a range alerts nothing.
    Backfill(BackfillArgs),
    /// Explain decisions: why an alert fired, what each rule saw on a submission; export the log.
    Audit(AuditArgs),
    /// Acknowledge an alert: you own it (stops its escalation).
    Ack(AckArgs),
    /// Resolve an alert with an outcome (false_positive, escalated_to_aml_officer, reported, or free text).
    ///
    /// Under four-eyes (`lifecycle.four_eyes`: from --config, else as the daemon last recorded
    /// it in the store) resolving an alert of those severities only proposes it (`pending
    /// approval`): --by must name an enabled console user with the role to resolve it (a lead
    /// for critical), and a different lead approves or rejects it in the console or with
    /// `POST /api/alerts/FP/approve` under their own token. The CLI cannot approve.
    Resolve(ResolveArgs),
    /// List alerts and their state.
    Alerts(AlertsArgs),
    /// Silences: matching alerts are recorded in the audit log but not sent.
    Silence(SilenceArgs),
    /// Send a sample alert (or one from a file) through one receiver, now.
    NotifyTest(NotifyTestArgs),
    /// Print a template rendered for an alert file, without sending anything.
    Render(RenderArgs),
    /// Render a configured digest without sending it (--preview), or send it now (--send-now).
    Digest(DigestArgs),
    /// Shadow rules (`mode: shadow`): what they recorded beside the rules they replace.
    Shadow(ShadowArgs),
    /// Replay a candidate rule set over the stored versions and compare it with the live
    /// alerts and the analysts' outcomes; sends and writes nothing.
    Backtest(BacktestArgs),
    /// Console users: add, list, disable, and per-user API tokens.
    Users(UsersArgs),
    /// Operate on the state store itself (copy a SQLite store into PostgreSQL).
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every table of a SQLite store into an empty PostgreSQL database
    /// and verify the row counts (nothing is committed unless all match).
    Migrate {
        /// The SQLite store: `sqlite:PATH`.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: `postgres://USER@HOST:PORT/DB` (password
        /// from PGPASSWORD; `?sslmode=..&sslrootcert=..` as libpq names them).
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Args)]
pub struct ShadowArgs {
    #[command(subcommand)]
    pub command: ShadowCommand,
}

#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Per shadow rule: alerts it recorded, alerts of the rule it replaces, and the
    /// overlap by submission (both / only one).
    Report {
        /// The configuration file (its store and rules; secrets need not be set).
        #[arg(long, short)]
        config: PathBuf,
        /// How far back, by when alerts were recorded (e.g. `24h`, `7d`).
        #[arg(long, default_value = "7d", value_parser = parse_duration_arg)]
        since: std::time::Duration,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The configuration file (its store; secrets need not be set).
    #[arg(long, short)]
    pub config: PathBuf,
    /// The candidate rule set: a folder of rule files (or one file).
    #[arg(long)]
    pub rules: PathBuf,
    /// First UTC day of event time, YYYYMMDD (default: the oldest stored version).
    #[arg(long, value_parser = parse_day)]
    pub from: Option<chrono::NaiveDate>,
    /// Last UTC day (inclusive), YYYYMMDD (default: the newest).
    #[arg(long, value_parser = parse_day)]
    pub to: Option<chrono::NaiveDate>,
    /// One JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when the candidates would not fire on a submission an analyst reported.
    #[arg(long)]
    pub fail_on_missed_reported: bool,
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is read from a prompt, or one line of stdin with --password-stdin.
    Add {
        #[command(flatten)]
        at: StoreLocation,
        name: String,
        /// viewer, analyst, lead or admin.
        #[arg(long)]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print a new API token for the user (shown once; the store keeps its hash).
    Token {
        #[command(flatten)]
        at: StoreLocation,
        name: String,
    },
    /// List users and their roles.
    List {
        #[command(flatten)]
        at: StoreLocation,
    },
    /// Disable a user: their sessions and tokens end now.
    Disable {
        #[command(flatten)]
        at: StoreLocation,
        name: String,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["preview", "send_now"])))]
pub struct DigestArgs {
    /// The configuration file (its `digests:`, store and receivers are used).
    /// With --preview, variables that are not set (secrets) are not needed.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The digest's name in the config.
    #[arg(long)]
    pub name: String,
    /// Print the text part and write nothing to the outbox.
    #[arg(long)]
    pub preview: bool,
    /// Write the digest to the outbox and deliver it now (off schedule).
    #[arg(long)]
    pub send_now: bool,
    /// End of the period, RFC 3339 (e.g. `2026-11-26T23:00:00Z`); default now.
    #[arg(long, value_parser = parse_time_arg)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// With --preview, also write the HTML part to this file.
    #[arg(long, requires = "preview")]
    pub out: Option<PathBuf>,
}

fn parse_time_arg(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("`{s}` is not an RFC 3339 time (e.g. 2026-11-26T23:00:00Z)"))
}

#[derive(Debug, Args)]
pub struct AckArgs {
    #[command(flatten)]
    pub at: StoreLocation,
    /// The alert's fingerprint, or any unique prefix of it of 8 or more hex
    /// characters (messages show 12; `alerts list` and `audit` show it too).
    /// An ambiguous prefix lists the alerts it matches.
    pub fingerprint: String,
    /// Who acknowledges.
    #[arg(long)]
    pub by: String,
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    pub at: StoreLocation,
    /// The alert's fingerprint, or any unique prefix of it of 8 or more hex characters.
    pub fingerprint: String,
    /// Who resolves (under four-eyes: an enabled console user allowed to resolve the alert).
    #[arg(long)]
    pub by: String,
    /// false_positive, escalated_to_aml_officer, reported, or free text.
    #[arg(long)]
    pub outcome: String,
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: AlertsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Alerts newest first, with their state.
    List {
        #[command(flatten)]
        at: StoreLocation,
        /// open, acknowledged, resolved or historical (recorded by a quiet backfill).
        #[arg(long)]
        state: Option<String>,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Only alerts fired on or after this UTC day (YYYYMMDD).
        #[arg(long, value_parser = parse_day)]
        since: Option<chrono::NaiveDate>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Where the state store is: from the config, or a file named directly.
/// Only the store is used, so secrets in the config (`${ARGOS_API_KEY}`)
/// need not be set.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct StoreLocation {
    /// The configuration file (its `store.path`, and its rules where needed).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The SQLite state store file.
    #[arg(long)]
    pub store: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SilenceArgs {
    #[command(subcommand)]
    pub command: SilenceCommand,
}

#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Silence alerts of a rule and/or matching KEY=VALUE for a while. A silence
    /// that no rule could ever match (an unknown rule, label or value) is refused
    /// with the known ones listed, unless --force.
    Add {
        #[command(flatten)]
        at: StoreLocation,
        /// Only alerts of this rule id.
        #[arg(long)]
        rule: Option<String>,
        /// KEY=VALUE that must hold (rule, severity, submission_id, group_key, fingerprint or a label); repeatable.
        #[arg(long = "match", value_name = "KEY=VALUE")]
        matchers: Vec<String>,
        /// How long, e.g. `24h`, `7d`.
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Why (kept in the store and in the audit log of each silenced alert).
        #[arg(long)]
        reason: String,
        /// Who (default: $USER).
        #[arg(long)]
        author: Option<String>,
        /// Rule folder the silence is checked against (default: the config's, or
        /// `rules` here with --store).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Keep a silence that matches no rule or label known today.
        #[arg(long)]
        force: bool,
    },
    /// List silences in force (with --all, expired ones too).
    List {
        #[command(flatten)]
        at: StoreLocation,
        #[arg(long)]
        all: bool,
    },
    /// End a silence now.
    Expire {
        #[command(flatten)]
        at: StoreLocation,
        /// The silence id (from `silence list`).
        id: i64,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The store (with --config, its rules are used too).
    #[command(flatten)]
    pub at: StoreLocation,
    /// Explain every decision about this submission, and the rules that did not fire.
    #[arg(long, conflicts_with_all = ["alert", "export"])]
    pub submission: Option<String>,
    /// Explain one alert: rule version, what each condition saw, window members, deliveries.
    #[arg(long, conflicts_with = "export")]
    pub alert: Option<String>,
    /// Write the audit log between --from and --to (UTC days, inclusive) as JSON lines.
    #[arg(long, requires_all = ["from", "to"])]
    pub export: bool,
    #[arg(long, value_parser = parse_day)]
    pub from: Option<chrono::NaiveDate>,
    #[arg(long, value_parser = parse_day)]
    pub to: Option<chrono::NaiveDate>,
}

#[derive(Debug, Args)]
pub struct NotifyTestArgs {
    /// The configuration file (sentinel.yaml).
    #[arg(long, short)]
    pub config: PathBuf,
    /// The receiver's name in the config.
    #[arg(long)]
    pub receiver: String,
    /// An alert as `eval` prints it (or an array / JSON lines of them); an alert may carry
    /// its submission under `submission`. Default: a built-in sample with made-up data.
    #[arg(long)]
    pub alert: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Template name (e.g. `slack.json`, `email.html`).
    #[arg(long)]
    pub template: String,
    /// Alert file (as for notify-test).
    #[arg(long)]
    pub alert: Option<PathBuf>,
    /// Take templates dir, time zone and dashboard link from this config.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Render with this receiver's params (webhooks).
    #[arg(long)]
    pub receiver: Option<String>,
}

pub use crate::telemetry::LogFormat;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (sentinel.yaml); see the README's configuration reference.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Log format; `RUST_LOG` sets the level (default `info`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The configuration file (sentinel.yaml).
    #[arg(long, short)]
    pub config: PathBuf,
    /// First UTC day, YYYYMMDD.
    #[arg(long, value_parser = parse_day)]
    pub from: chrono::NaiveDate,
    /// Last UTC day (inclusive), YYYYMMDD.
    #[arg(long, value_parser = parse_day)]
    pub to: chrono::NaiveDate,
    /// Days fetched at the same time (they are still evaluated in date order).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Notify as `run` would. Without it the history is judged quietly: alerts
    /// are recorded (state `historical`), audited and counted, nobody is told.
    #[arg(long)]
    pub notify: bool,
    /// Log format; `RUST_LOG` sets the level (default `info`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

fn parse_day(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y%m%d")
        .map_err(|_| format!("`{s}` is not a day written YYYYMMDD (e.g. 20261126)"))
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the demo runs.
    #[arg(long, default_value = "20s", value_parser = parse_duration_arg)]
    pub duration: std::time::Duration,
    /// Folder for the demo's output files.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Seed of the simulated account.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Submissions already in the account when the demo starts.
    #[arg(long, default_value_t = 400)]
    pub backlog: usize,
    /// New submissions per second while the demo runs.
    #[arg(long, default_value_t = 3.0)]
    pub rate: f64,
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::util::parse_duration(s)
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Seed of the deterministic generator: the same seed gives the same submissions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Submissions in the initial backlog.
    #[arg(long, default_value_t = 500)]
    pub submissions: usize,
    /// Live arrivals per second after start (0 = none). Some arrive pending and are decided later.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// API key the simulator accepts in `x-api-key`; any other key gets 403.
    #[arg(
        long,
        env = "ARGOS_API_KEY",
        default_value = "sim-key",
        hide_env_values = true
    )]
    pub api_key: String,
    /// Answer in Argos encrypted mode (`{"data": ..., "isEncrypted": true}`).
    #[arg(long)]
    pub encrypted: bool,
    /// Fraction of requests (0..1) answered with a fault: 429, 5xx, a slow or truncated body.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Write every version of every submission as JSON lines, in the order they changed.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// How long a live arrival stays `pending` before it is approved or rejected (e.g. `30s`).
    #[arg(long, default_value = "30s")]
    pub decide_after: String,
    /// End of the backlog, RFC 3339 or `YYYY-MM-DD-HH-MM-SS-ZZZ` (default: now). With a fixed
    /// base time the same seed gives the same backlog, timestamps included.
    #[arg(long)]
    pub base_time: Option<String>,
    /// POST an Argos webhook for every version published after start to this URL
    /// (e.g. `http://127.0.0.1:8088/argos/webhook/TOKEN`); encrypted with `--encrypted`.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Fraction (0..1) of webhook events dropped (seeded by `--seed`), as Argos warns webhooks can be lost.
    #[arg(long, default_value_t = 0.0, requires = "webhook_url")]
    pub webhook_drop: f64,
    /// Spread the backlog over this many days before the base time (default: since 00:00 UTC
    /// of the base time). Benchmarks spread 100k or 1M submissions over e.g. 100 days.
    #[arg(long)]
    pub backlog_days: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Folder of rule files (`*.yaml`).
    #[arg(long, default_value = "rules")]
    pub rules: PathBuf,
    /// Check a whole configuration: the file, its rules, routes, receivers and templates.
    #[arg(long, short, conflicts_with = "rules")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Folder of rule files, or one rule file.
    #[arg(long, default_value = "rules")]
    pub rules: PathBuf,
    /// JSON Lines of submissions, a JSON array, or Argos response bodies; `-` or absent = stdin.
    #[arg(long)]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test files or folders (default: the rules folder).
    pub paths: Vec<PathBuf>,
    /// Folder of rule files the tests run against.
    #[arg(long, default_value = "rules")]
    pub rules: PathBuf,
}
