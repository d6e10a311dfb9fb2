//! Email receiver: one message per notification, through a pooled async SMTP
//! transport, or as `.eml` files when no SMTP relay is configured.
//!
//! The `Message-ID` is derived from the notification's idempotency key and
//! the receiver, so a message re-sent after a crash or a failed attempt has the
//! same id and mail clients and archives treat it as one. For the same reason
//! the `.eml` file is named after that key (lettre's file transport names
//! files with a random UUID, so a retry would leave two files); the message
//! text is still lettre's.

use std::path::PathBuf;
use std::sync::Arc;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::scrub::Scrubber;
use super::{DeliveryError, Notification};
use crate::config::{EmailConfig, SmtpTls};
use crate::templates::Templates;

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

pub struct EmailReceiver {
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    subject_template: String,
    html_template: String,
    text_template: String,
    transport: Transport,
    templates: Arc<Templates>,
    /// Takes the SMTP credentials out of stored errors.
    scrub: Scrubber,
}

impl std::fmt::Debug for EmailReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the SMTP credentials.
        f.debug_struct("EmailReceiver")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `<KEY.RECEIVER@kyc-sentinel>`; only characters a msg-id allows.
pub fn message_id(key: &str, receiver: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("<{}.{}@kyc-sentinel>", clean(key), clean(receiver))
}

fn mailbox(at: &str, field: &str, a: &str) -> Result<Mailbox, String> {
    a.parse()
        .map_err(|e| format!("{at}.{field}: `{a}` is not an email address: {e}"))
}

impl EmailReceiver {
    pub fn new(cfg: &EmailConfig, templates: Arc<Templates>) -> Result<Self, String> {
        let at = format!("receivers.{}", cfg.name);
        for (field, t) in [
            ("subject_template", &cfg.subject_template),
            ("html_template", &cfg.html_template),
            ("text_template", &cfg.text_template),
        ] {
            if !templates.contains(t) {
                return Err(format!("{at}.{field}: no template named `{t}`"));
            }
        }
        let transport = match &cfg.smtp {
            None => Transport::Files(cfg.eml_dir.clone()),
            Some(s) => {
                let tls = || -> Result<TlsParameters, String> {
                    let mut b = TlsParameters::builder(s.host.clone());
                    if let Some(ca) = &s.ca_cert {
                        let pem = std::fs::read(ca).map_err(|e| {
                            format!("{at}.smtp.ca_cert: {}: cannot read: {e}", ca.display())
                        })?;
                        let cert = Certificate::from_pem(&pem).map_err(|e| {
                            format!(
                                "{at}.smtp.ca_cert: {}: not a PEM certificate: {e}",
                                ca.display()
                            )
                        })?;
                        b = b.add_root_certificate(cert);
                    }
                    b.build().map_err(|e| format!("{at}.smtp: TLS setup: {e}"))
                };
                let tls = match s.tls {
                    SmtpTls::Starttls => Tls::Required(tls()?),
                    SmtpTls::Tls => Tls::Wrapper(tls()?),
                    SmtpTls::None => {
                        if !crate::config::is_loopback_host(&s.host) {
                            return Err(format!(
                                "{at}.smtp.tls: `none` is allowed only for a loopback host"
                            ));
                        }
                        Tls::None
                    }
                };
                let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
                    .port(s.port())
                    .tls(tls)
                    .timeout(Some(s.timeout.0))
                    .pool_config(PoolConfig::new().max_size(s.pool_size));
                if let (Some(u), Some(p)) = (&s.username, &s.password) {
                    b = b.credentials(Credentials::new(u.clone(), p.expose_secret().to_owned()));
                }
                Transport::Smtp(b.build())
            }
        };
        let scrub = Scrubber::new(cfg.smtp.iter().flat_map(|s| {
            s.username
                .as_deref()
                .into_iter()
                .chain(s.password.as_ref().map(ExposeSecret::expose_secret))
        }));
        Ok(Self {
            scrub,
            name: cfg.name.clone(),
            from: mailbox(&at, "from", &cfg.from)?,
            to: cfg
                .to
                .iter()
                .map(|a| mailbox(&at, "to", a))
                .collect::<Result<_, _>>()?,
            cc: cfg
                .cc
                .iter()
                .map(|a| mailbox(&at, "cc", a))
                .collect::<Result<_, _>>()?,
            subject_template: cfg.subject_template.clone(),
            html_template: cfg.html_template.clone(),
            text_template: cfg.text_template.clone(),
            transport,
            templates,
        })
    }

    /// The message as it will be sent (also what `.eml` files hold).
    pub fn message(&self, n: &Notification) -> Result<Message, String> {
        let render = |t: &str| self.templates.render(t, n);
        // A digest was rendered when it was scheduled; it is sent as it is.
        let (subject, text, html) = match &n.digest {
            Some(d) => (d.subject.clone(), d.text.clone(), d.html.clone()),
            None => (
                render(&self.subject_template)?,
                render(&self.text_template)?,
                render(&self.html_template)?,
            ),
        };
        // A header is one line: a template's trailing newline is not part of it.
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(message_id(&n.key, &self.name)));
        for t in &self.to {
            b = b.to(t.clone());
        }
        for c in &self.cc {
            b = b.cc(c.clone());
        }
        b.multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )
        .map_err(|e| format!("building the message: {e}"))
    }

    pub async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let at = format!("email `{}` ({})", self.name, n.key);
        let msg = self
            .message(n)
            .map_err(|e| DeliveryError::Permanent(format!("{at}: {e}")))?;
        match &self.transport {
            Transport::Smtp(t) => t.send(msg).await.map(|_| ()).map_err(|e| {
                // lettre names the cause (`Connection error: Connection
                // refused`, `permanent error (550): ...`); the server's text
                // is cut and scrubbed like a webhook's answer.
                let why = self.scrub.excerpt(&e.to_string());
                if e.is_permanent() {
                    DeliveryError::Permanent(format!("{at}: SMTP refused: {why}"))
                } else if e.is_timeout() {
                    DeliveryError::Transient(format!("{at}: SMTP timed out: {why}"))
                } else {
                    DeliveryError::Transient(format!("{at}: SMTP: {why}"))
                }
            }),
            Transport::Files(dir) => {
                let dir = dir.clone();
                let id = message_id(&n.key, &self.name);
                let file = id.trim_matches(['<', '>']).replace('@', "_") + ".eml";
                let bytes = msg.formatted();
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    // Write then rename: a reader never sees half a message,
                    // and a retry replaces the file instead of adding one.
                    let tmp = dir.join(format!(".{file}.tmp"));
                    std::fs::write(&tmp, &bytes)?;
                    std::fs::rename(&tmp, dir.join(&file))
                })
                .await
                .map_err(|e| DeliveryError::Transient(format!("{at}: {e}")))?
                .map_err(|e| DeliveryError::Transient(format!("{at}: .eml file: {e}")))
            }
        }
    }
}
