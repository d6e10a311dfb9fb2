//! `console:` (the analyst console's sign-in) and `lifecycle:` (four-eyes).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::Dur;

/// How people sign in to the console.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleAuth {
    /// Local users (`kyc-sentinel users add`), a login form and a session cookie.
    #[default]
    Local,
    /// A reverse proxy (oauth2-proxy and the like) says who it is, in a header.
    Proxy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The console's (and the alert API's) own address; absent: they are
    /// served on `telemetry.listen` beside `/metrics`. A restart applies a change.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    #[serde(default)]
    pub auth: ConsoleAuth,
    /// With `auth: proxy`: the only peer addresses whose user header is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    /// With `auth: proxy`: the header naming the person.
    #[serde(default = "d_user_header")]
    pub user_header: String,
    /// With `auth: proxy`: a header of comma-separated groups, mapped to roles by `group_roles`.
    #[serde(default)]
    pub groups_header: Option<String>,
    /// Group -> role (viewer, analyst, lead, admin); the highest mapped role wins.
    #[serde(default)]
    pub group_roles: BTreeMap<String, String>,
    /// The role of a proxy user whose groups map to none (absent: refused).
    #[serde(default)]
    pub default_role: Option<String>,
    /// A session unused this long ends.
    #[serde(default = "d_idle")]
    pub idle_timeout: Dur,
    /// A session ends this long after sign-in, used or not.
    #[serde(default = "d_absolute")]
    pub absolute_timeout: Dur,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: None,
            auth: ConsoleAuth::Local,
            trusted_proxies: Vec::new(),
            user_header: d_user_header(),
            groups_header: None,
            group_roles: BTreeMap::new(),
            default_role: None,
            idle_timeout: d_idle(),
            absolute_timeout: d_absolute(),
        }
    }
}

fn d_user_header() -> String {
    "X-Forwarded-User".into()
}

fn d_idle() -> Dur {
    Dur(Duration::from_secs(30 * 60))
}

fn d_absolute() -> Dur {
    Dur(Duration::from_secs(12 * 3600))
}

const ROLES: &[&str] = &["viewer", "analyst", "lead", "admin"];

impl ConsoleConfig {
    /// Names the key of each problem. Pure.
    pub(super) fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (group, role) in &self.group_roles {
            if !ROLES.contains(&role.as_str()) {
                errs.push(format!(
                    "console.group_roles.{group}: `{role}` is not a role (viewer, analyst, lead, admin)"
                ));
            }
        }
        if let Some(r) = &self.default_role
            && !ROLES.contains(&r.as_str())
        {
            errs.push(format!(
                "console.default_role: `{r}` is not a role (viewer, analyst, lead, admin)"
            ));
        }
        if self.auth == ConsoleAuth::Proxy && self.trusted_proxies.is_empty() {
            errs.push(
                "console.trusted_proxies: `auth: proxy` needs the proxy's address(es), \
                 else anyone could send the user header"
                    .into(),
            );
        }
        errs
    }
}

/// `lifecycle:`: how alerts may be closed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Severities whose resolution waits for a second, different lead's approval.
    #[serde(default)]
    pub four_eyes: Vec<String>,
}
