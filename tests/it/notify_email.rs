//! Email delivery against a real SMTP server (aiosmtpd), plain and STARTTLS
//! with a self-signed certificate, read back with Python's MIME parser; and
//! the `.eml` file transport.

use crate::notify_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::smtp::{Smtp, parse_eml};
use notify_common::*;
use serde_json::Value;

fn mail_receiver(smtp: &str) -> String {
    format!(
        "  - name: mail\n    type: email\n    from: 'kyc-sentinel <sentinel@example.com>'\n    \
         to: [compliance@example.com]\n    cc: [lead@example.com]\n{smtp}"
    )
}

fn assert_message(m: &Value, key: &str) {
    assert_eq!(m["from"], "kyc-sentinel <sentinel@example.com>");
    assert_eq!(m["to"], "compliance@example.com");
    assert_eq!(m["cc"], "lead@example.com");
    assert_eq!(m["envelope_to"], "compliance@example.com, lead@example.com");
    assert_eq!(
        m["subject"],
        "[kyc-sentinel] CRITICAL: 2 alerts of 2 rules: aml-red-flag-high (1), duplicate-applicant (1)"
    );
    assert_eq!(m["message_id"], format!("<{key}.mail@kyc-sentinel>"));
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["parts"], serde_json::json!(["text/plain", "text/html"]));
    let text = m["text"].as_str().unwrap();
    let html = m["html"].as_str().unwrap();
    for body in [text, html] {
        assert!(body.contains("aml-red-flag-high"), "{body}");
        // Default templates carry no identity number at all, not even masked.
        assert!(!body.contains("2876543"), "{body}");
    }
    assert!(html.contains("<table"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_smtp_arrives_once_with_the_same_message_id_after_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path(), &["--fail-first", "1"]);
    let h = Harness::new(
        dir.path(),
        &mail_receiver(&format!(
            "    smtp:\n      host: 127.0.0.1\n      port: {}\n      tls: none\n      timeout: 5s\n",
            smtp.port
        )),
        "",
    )
    .await;
    let key = h.enqueue("mail", 2).await;
    let stats = h.deliver_until_settled(Duration::from_secs(15)).await;
    assert_eq!((stats.delivered, stats.dead, stats.pending), (1, 0, 0));
    assert_eq!(h.attempts().await, vec![false, true], "451 then 250");

    let refused = smtp.messages("refused");
    let accepted = smtp.messages("accepted");
    assert_eq!((refused.len(), accepted.len()), (1, 1), "arrives once");
    assert_message(&accepted[0], &key);
    assert_eq!(refused[0]["message_id"], accepted[0]["message_id"]);
    assert_eq!(accepted[0]["tls"], "no");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_self_signed_certificate_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key_file)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl makes a certificate");
    let smtp = Smtp::start(
        dir.path(),
        &[
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key_file.to_str().unwrap(),
            "--auth",
            &format!("sentinel:{SMTP_PASSWORD}"),
            "--fail-first",
            "1",
        ],
    );
    let h = Harness::new(
        dir.path(),
        &mail_receiver(&format!(
            "    smtp:\n      host: 127.0.0.1\n      port: {}\n      tls: starttls\n      \
             username: sentinel\n      password: ${{SMTP_PASSWORD}}\n      ca_cert: cert.pem\n      timeout: 5s\n",
            smtp.port
        )),
        "",
    )
    .await;
    assert!(
        !format!("{:?}", h.cfg).contains(SMTP_PASSWORD),
        "the password stays out of Debug"
    );
    let key = h.enqueue("mail", 2).await;
    let stats = h.deliver_until_settled(Duration::from_secs(15)).await;
    assert_eq!((stats.delivered, stats.dead, stats.pending), (1, 0, 0));
    let accepted = smtp.messages("accepted");
    assert_eq!(accepted.len(), 1, "arrives once");
    assert_message(&accepted[0], &key);
    assert_eq!(accepted[0]["tls"], "yes", "sent after STARTTLS");
    let refused = smtp.messages("refused");
    assert_eq!(refused[0]["message_id"], accepted[0]["message_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_refuses_an_untrusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key_file)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let smtp = Smtp::start(
        dir.path(),
        &[
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key_file.to_str().unwrap(),
        ],
    );
    // No ca_cert: the self-signed certificate is not trusted.
    let h = Harness::new(
        dir.path(),
        &mail_receiver(&format!(
            "    smtp:\n      host: 127.0.0.1\n      port: {}\n      tls: starttls\n      timeout: 5s\n",
            smtp.port
        )),
        "",
    )
    .await;
    let key = h.enqueue("mail", 2).await;
    h.outbox.deliver_due().await.unwrap();
    let (state, error) = h.outbox_row(&key).await;
    assert_eq!(state, "pending", "retried, never sent in clear: {error}");
    assert!(smtp.messages("").is_empty());
}

#[tokio::test]
async fn without_smtp_messages_become_eml_files_named_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), &mail_receiver("    eml_dir: outgoing\n"), "").await;
    let key = h.enqueue("mail", 2).await;
    let stats = h.deliver_until_settled(Duration::from_secs(5)).await;
    assert_eq!(stats.delivered, 1);
    let file = dir
        .path()
        .join("outgoing")
        .join(format!("{key}.mail_kyc-sentinel.eml"));
    assert!(file.exists(), "{}", file.display());
    let m = parse_eml(&file);
    assert_eq!(m["message_id"], format!("<{key}.mail@kyc-sentinel>"));
    assert_eq!(m["parts"], serde_json::json!(["text/plain", "text/html"]));
    assert_eq!(
        std::fs::read_dir(dir.path().join("outgoing"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn tls_none_is_refused_for_a_remote_host() {
    let text = "argos:\n  base_url: http://x\nreceivers:\n  - name: mail\n    type: email\n    \
                from: a@example.com\n    to: [b@example.com]\n    smtp:\n      host: smtp.example.com\n      tls: none\n";
    let err = kyc_sentinel::compose::parse_config(Path::new("s.yaml"), text, |_| None).unwrap_err();
    assert_eq!(
        err,
        "s.yaml:10:12: receivers.mail.smtp.tls: `none` sends mail and password in clear text; it is allowed only for a loopback host (localhost, 127.0.0.1, ::1), not `smtp.example.com`; use starttls or tls"
    );
}
