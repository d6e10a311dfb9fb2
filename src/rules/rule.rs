//! A compiled rule: what the loader produces and the engine runs.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use super::condition::Condition;
use super::path::FieldPath;

/// How urgent an alert is; ordered from `info` to `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const NAMES: &'static str = "info, low, medium, high, critical";

    pub fn parse(text: &str) -> Option<Severity> {
        Some(match text {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `mode:`: whether a rule's alerts are acted on (`live`, the default) or
/// only recorded (`shadow`: evaluated with the same state semantics, stored
/// and audited, never routed, escalated or counted in digests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    #[default]
    Live,
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Shadow => "shadow",
        }
    }

    pub fn is_shadow(self) -> bool {
        self == Mode::Shadow
    }
}

/// `window:`: count distinct matching submissions per group key.
#[derive(Debug, Clone)]
pub struct Window {
    pub group_by: Vec<FieldPath>,
    pub threshold: u32,
    pub within: Duration,
}

/// Where a rule was written, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    /// `summary:`: a one-line minijinja template for the subject and first
    /// line of messages (rendered with the alert; syntax checked at load).
    pub summary: Option<String>,
    /// `playbook_url:`: where the team's procedure for this alert is written.
    pub playbook_url: Option<String>,
    pub severity: Severity,
    /// In the order written (alerts print them so).
    pub labels: Map<String, Value>,
    pub when: Condition,
    pub window: Option<Window>,
    pub throttle: Option<Duration>,
    /// Empty means the default: the window's `group_by`, else `submission_id`.
    pub throttle_by: Vec<FieldPath>,
    pub origin: Origin,
    /// `mode:` (default live).
    pub mode: Mode,
    /// `replaces:`: the live rule a shadow rule is a candidate for.
    pub replaces: Option<String>,
    /// sha256 of the rule's canonical definition (keys sorted, durations in
    /// seconds): changes exactly when the rule's meaning may change.
    pub version: String,
    /// True when the condition contains a script (the benchmark splits on it).
    pub has_script: bool,
}
