//! `sentinel.yaml`: load -> validate -> build.
//!
//! Loading turns text into structs (unknown keys refused, with
//! `path:line:column`); `${ENV_VAR}` references are replaced first, so secrets
//! stay out of the file. Validation is pure and collects every problem before
//! reporting. Relative paths are resolved against the config file's folder, so
//! the daemon behaves the same from any working directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::util::parse_duration;

/// A duration written as `30s`, `15m`, `24h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub argos: ArgosConfig,
    #[serde(default)]
    pub poll: PollConfig,
    /// Folder of rule files.
    #[serde(default = "default_rules")]
    pub rules: PathBuf,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Where alerts go. Every alert goes to every receiver listed here.
    #[serde(default = "default_receivers")]
    pub receivers: Vec<ReceiverConfig>,
}

fn default_rules() -> PathBuf {
    PathBuf::from("rules")
}

fn default_receivers() -> Vec<ReceiverConfig> {
    vec![ReceiverConfig {
        name: "log".into(),
        kind: ReceiverKind::Log,
    }]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgosConfig {
    /// `https://rest-api.argosidentity.com`, or the simulator's address.
    pub base_url: String,
    /// The account's API key; prefer `${ARGOS_API_KEY}`. When absent the
    /// environment variable `ARGOS_API_KEY` is read.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// The account has Argos's encryption option switched on.
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    #[serde(default = "d_retries")]
    pub max_retries: u32,
    /// Client-side ceiling on calls per second (Argos allows 5,000).
    #[serde(default = "d_rate")]
    pub rate_limit_per_sec: u32,
    #[serde(default = "d_page")]
    pub page_size: u32,
    /// Calls per UTC day the engine may spend (Argos allows 500,000); a warning at 80%.
    #[serde(default = "d_budget")]
    pub daily_budget: u64,
    /// First retry delay after a failed call (doubles, with jitter).
    #[serde(default)]
    pub retry_base_delay: Option<Dur>,
}

fn d_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn d_retries() -> u32 {
    5
}
fn d_rate() -> u32 {
    20
}
fn d_page() -> u32 {
    100
}
fn d_budget() -> u64 {
    100_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// How often the current UTC day is listed.
    #[serde(default = "d_interval")]
    pub interval: Dur,
    /// For how long after 00:00 UTC the previous day is listed too.
    #[serde(default = "d_overlap")]
    pub midnight_overlap: Dur,
    /// Undecided (pending/Incomplete) submissions are re-fetched by id until
    /// decided or older than this.
    #[serde(default = "d_horizon")]
    pub pending_horizon: Dur,
}

fn d_interval() -> Dur {
    Dur(Duration::from_secs(30))
}
fn d_overlap() -> Dur {
    Dur(Duration::from_secs(3600))
}
fn d_horizon() -> Dur {
    Dur(Duration::from_secs(7 * 86_400))
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            interval: d_interval(),
            midnight_overlap: d_overlap(),
            pending_horizon: d_horizon(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite file (created if missing).
    #[serde(default = "d_store")]
    pub path: PathBuf,
}

fn d_store() -> PathBuf {
    PathBuf::from("kyc-sentinel.db")
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { path: d_store() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// First retry delay; doubles per attempt up to `retry_max`.
    #[serde(default = "d_retry_base")]
    pub retry_base: Dur,
    #[serde(default = "d_retry_max")]
    pub retry_max: Dur,
    /// A notification still undelivered this long after its alert goes to the dead letter.
    #[serde(default = "d_max_age")]
    pub max_age: Dur,
    /// How long shutdown waits for the outbox to drain.
    #[serde(default = "d_flush")]
    pub flush_deadline: Dur,
}

fn d_retry_base() -> Dur {
    Dur(Duration::from_secs(5))
}
fn d_retry_max() -> Dur {
    Dur(Duration::from_secs(300))
}
fn d_max_age() -> Dur {
    Dur(Duration::from_secs(86_400))
}
fn d_flush() -> Dur {
    Dur(Duration::from_secs(5))
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            retry_base: d_retry_base(),
            retry_max: d_retry_max(),
            max_age: d_max_age(),
            flush_deadline: d_flush(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(flatten)]
    pub kind: ReceiverKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReceiverKind {
    /// One log line per alert (masked; at `warn` level).
    Log,
    /// Appends each alert as one JSON line to a file.
    File { path: PathBuf },
}

/// Replaces `${NAME}` with the environment variable NAME. A missing variable is
/// an error naming the line, so a secret never silently becomes empty.
pub fn interpolate_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                errors.push(format!("line {}: `${{` without a closing `}}`", n + 1));
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let name = &after[..end];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => errors.push(format!(
                    "line {}: environment variable `{name}` is not set",
                    n + 1
                )),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}

/// Strips serde-saphyr's trailing " at line L, column C" (we print the
/// position in front, as `path:line:column:`).
fn bare_message(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(", column ") => &msg[..i],
        _ => msg,
    }
}

impl Config {
    /// Reads, interpolates and parses the file; relative paths in it become
    /// relative to its folder.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(path, &text, |k| std::env::var(k).ok())
    }

    pub fn parse(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let text = interpolate_env(text, env).map_err(|e| {
            e.lines()
                .map(|l| format!("{}:{l}", path.display()))
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let mut cfg: Config = serde_saphyr::from_str(&text).map_err(|e| {
            let msg = e.without_snippet().to_string();
            match e.location() {
                Some(l) => format!(
                    "{}:{}:{}: {}",
                    path.display(),
                    l.line(),
                    l.column(),
                    bare_message(&msg)
                ),
                None => format!("{}: {}", path.display(), bare_message(&msg)),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.rules = base.join(&cfg.rules);
        cfg.store.path = base.join(&cfg.store.path);
        for r in &mut cfg.receivers {
            if let ReceiverKind::File { path } = &mut r.kind {
                *path = base.join(&*path);
            }
        }
        cfg.validate().map_err(|errs| {
            errs.iter()
                .map(|e| format!("{}: {e}", path.display()))
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        Ok(cfg)
    }

    /// Checks what the types cannot say. Pure; collects every problem.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if !(self.argos.base_url.starts_with("http://")
            || self.argos.base_url.starts_with("https://"))
        {
            errs.push(format!(
                "argos.base_url: `{}` is not an http(s) URL",
                self.argos.base_url
            ));
        }
        if self.argos.rate_limit_per_sec == 0 || self.argos.rate_limit_per_sec > 5000 {
            errs.push(
                "argos.rate_limit_per_sec: must be between 1 and 5000 (Argos's limit)".into(),
            );
        }
        if self.argos.page_size == 0 {
            errs.push("argos.page_size: must be at least 1".into());
        }
        if self.poll.interval.0 < Duration::from_secs(1) {
            errs.push("poll.interval: must be at least 1s".into());
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.receivers {
            if !names.insert(r.name.as_str()) {
                errs.push(format!("receivers: the name `{}` is used twice", r.name));
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("conf/sentinel.yaml"), text, |k| {
            (k == "KEY").then(|| "s3cret".to_string())
        })
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolves_paths() {
        let c = parse("argos:\n  base_url: http://127.0.0.1:8080\n  api_key: ${KEY}\n").unwrap();
        assert_eq!(c.poll.interval, Dur(Duration::from_secs(30)));
        assert_eq!(c.rules, PathBuf::from("conf/rules"));
        assert_eq!(c.store.path, PathBuf::from("conf/kyc-sentinel.db"));
        use secrecy::ExposeSecret;
        assert_eq!(c.argos.api_key.unwrap().expose_secret(), "s3cret");
    }

    #[test]
    fn unknown_key_is_refused_with_position() {
        let err = parse("argos:\n  base_url: http://x\n  colour: blue\n").unwrap_err();
        assert_eq!(
            err,
            "conf/sentinel.yaml:3:3: unknown field `colour`, expected one of base_url, api_key, encrypted, timeout, max_retries, rate_limit_per_sec, page_size, daily_budget, retry_base_delay"
        );
    }

    #[test]
    fn missing_env_var_names_the_line() {
        let err = parse("argos:\n  base_url: http://x\n  api_key: ${NOPE}\n").unwrap_err();
        assert_eq!(
            err,
            "conf/sentinel.yaml:line 3: environment variable `NOPE` is not set"
        );
    }

    #[test]
    fn bad_duration_and_validation_errors() {
        let err =
            parse("argos:\n  base_url: http://x\npoll:\n  interval: 5 minutes\n").unwrap_err();
        assert!(
            err.starts_with("conf/sentinel.yaml:4:13: invalid duration `5 minutes`"),
            "{err}"
        );
        let err = parse("argos:\n  base_url: ftp://x\n  rate_limit_per_sec: 9000\n").unwrap_err();
        assert_eq!(
            err,
            "conf/sentinel.yaml: argos.base_url: `ftp://x` is not an http(s) URL\n\
             conf/sentinel.yaml: argos.rate_limit_per_sec: must be between 1 and 5000 (Argos's limit)"
        );
    }
}
