//! Webhook receiver: one HTTP request per notification, body from a template.
//!
//! The receiving system must be able to trust and de-duplicate what it gets:
//! every request carries `Idempotency-Key` (the same on every retry) and, with
//! a shared secret, a signature header `t=UNIX_SECONDS,v1=HEX` where HEX is
//! HMAC-SHA256(secret, "{t}.{body}"). The timestamp lets the receiver refuse
//! replays. Retries belong to the outbox: 5xx, 429, timeouts and connection
//! errors are transient; any other 4xx is permanent (dead letter, with the
//! response), because sending the same request again cannot fix it.

use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::scrub::Scrubber;
use super::{DeliveryError, Notification};
use crate::config::WebhookConfig;
use crate::templates::Templates;

pub struct WebhookReceiver {
    name: String,
    url: SecretString,
    method: reqwest::Method,
    headers: HeaderMap,
    template: String,
    secret: Option<SecretString>,
    signature_header: HeaderName,
    params: std::collections::BTreeMap<String, String>,
    client: reqwest::Client,
    templates: Arc<Templates>,
    /// Takes the URL, header values, secret and params out of stored errors.
    scrub: Scrubber,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URL, headers and secret may all carry credentials.
        f.debug_struct("WebhookReceiver")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

/// The signature header value for a body sent at `timestamp` (unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let t = timestamp.to_string();
    let mac =
        crate::util::hmac_sha256_hex(secret.as_bytes(), &[t.as_bytes(), b".", body.as_bytes()]);
    format!("t={timestamp},v1={mac}")
}

impl WebhookReceiver {
    pub fn new(cfg: &WebhookConfig, templates: Arc<Templates>) -> Result<Self, String> {
        let at = format!("receivers.{}", cfg.name);
        if !templates.contains(&cfg.template) {
            return Err(format!(
                "{at}.template: no template named `{}` (have: {})",
                cfg.template,
                templates.names().join(", ")
            ));
        }
        let method = reqwest::Method::from_bytes(cfg.method.as_bytes())
            .map_err(|_| format!("{at}.method: `{}` is not an HTTP method", cfg.method))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(concat!("kyc-sentinel/", env!("CARGO_PKG_VERSION"))),
        );
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("{at}.headers: `{k}` is not a header name"))?;
            let mut value = HeaderValue::from_str(v.expose_secret())
                .map_err(|_| format!("{at}.headers.{k}: not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let signature_header = HeaderName::from_bytes(cfg.signature_header.as_bytes())
            .map_err(|_| format!("{at}.signature_header: not a header name"))?;
        let params: std::collections::BTreeMap<String, String> = cfg
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
            .collect();
        // Render once now: a template that needs a missing param fails at start-up.
        templates
            .render_with(&cfg.template, &Notification::sample(&cfg.name), &params)
            .map_err(|e| format!("{at}.template: {e}"))?;
        // No redirect is followed: a 3xx would carry the secret headers, the
        // body and its signature to wherever the receiver points. No Referer.
        let client = crate::util::http_client()
            .timeout(cfg.timeout.0)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .build()
            .map_err(|e| format!("{at}: HTTP client: {e}"))?;
        let scrub = Scrubber::new(
            std::iter::once(cfg.url.expose_secret())
                .chain(cfg.headers.values().map(ExposeSecret::expose_secret))
                .chain(cfg.secret.iter().map(ExposeSecret::expose_secret))
                .chain(cfg.params.values().map(ExposeSecret::expose_secret)),
        );
        Ok(Self {
            scrub,
            name: cfg.name.clone(),
            url: cfg.url.clone(),
            method,
            headers,
            template: cfg.template.clone(),
            secret: cfg.secret.clone(),
            signature_header,
            params,
            client,
            templates,
        })
    }

    pub async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let at = format!("webhook `{}` ({})", self.name, n.key);
        // A template that cannot render will not render on retry either.
        let body = match &n.digest {
            // A digest's body is its data (the alert templates expect alerts).
            Some(d) => {
                serde_json::json!({ "digest": d.name, "subject": d.subject, "report": d.data })
                    .to_string()
            }
            None => self
                .templates
                .render_with(&self.template, n, &self.params)
                .map_err(|e| DeliveryError::Permanent(format!("{at}: {e}")))?,
        };
        let mut req = self
            .client
            .request(self.method.clone(), self.url.expose_secret())
            .headers(self.headers.clone())
            .header("Idempotency-Key", &n.key);
        if let Some(secret) = &self.secret {
            let ts = chrono::Utc::now().timestamp();
            req = req.header(
                self.signature_header.clone(),
                signature(secret.expose_secret(), ts, &body),
            );
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                return Err(DeliveryError::Transient(format!(
                    "{at}: {}",
                    self.cause(&e)
                )));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        // A 3xx names only its status: its Location may hold a secret.
        if status.is_redirection() {
            return Err(DeliveryError::Permanent(format!(
                "{at}: HTTP {status}: redirects are not followed; configure the final URL"
            )));
        }
        let text = answer_start(resp).await;
        let msg = format!("{at}: HTTP {status}: {}", self.scrub.excerpt(&text));
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(DeliveryError::Transient(msg))
        } else {
            Err(DeliveryError::Permanent(msg))
        }
    }

    /// Why a request got no answer, without the URL: timeout, connection
    /// refused, DNS failure... (the innermost cause names it).
    fn cause(&self, e: &reqwest::Error) -> String {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        // The innermost cause is the specific one (`Connection refused`).
        let detail = causes
            .iter()
            .rev()
            .find(|c| !c.is_empty())
            .map(|c| self.scrub.excerpt(c))
            .unwrap_or_default();
        if detail.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {detail}")
        }
    }
}

/// Bytes of an error answer read at most: enough for the excerpt; a receiver
/// cannot make us buffer a large body.
const ANSWER_READ: usize = 4096;

/// The start of an error answer (lossy UTF-8), read up to [`ANSWER_READ`] bytes.
async fn answer_start(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < ANSWER_READ {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    buf.truncate(ANSWER_READ);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            signature("s3cret", 1_700_000_000, "{\"a\":1}"),
            "t=1700000000,v1=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }
}
