//! `kyc-sentinel notify-test` (send one alert through one receiver now) and
//! `kyc-sentinel render` (print a template, send nothing).

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{NotifyTestArgs, RenderArgs};
use crate::config::{ReceiverConfig, TemplatesConfig};
use crate::notify::Notification;
use crate::templates::Templates;

fn alert_file(path: Option<&std::path::Path>, receiver: &str) -> anyhow::Result<Notification> {
    match path {
        None => Ok(Notification::sample(receiver)),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            Notification::from_alert_text(receiver, &text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
    }
}

pub fn notify_test(args: NotifyTestArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::compose::load_config(&args.config).map_err(anyhow::Error::msg)?;
    // The name first: building receivers needs templates and connections.
    if !cfg.receivers.iter().any(|r| r.name() == args.receiver) {
        let names: Vec<&str> = cfg.receivers.iter().map(|r| r.name()).collect();
        anyhow::bail!(
            "{}: no receiver named `{}` (receivers: {})",
            args.config.display(),
            args.receiver,
            names.join(", ")
        );
    }
    let n = fresh_key(
        alert_file(args.alert.as_deref(), &args.receiver)?,
        args.alert.is_none(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Built (and dropped) inside the runtime: the SMTP pool spawns tasks.
    let result = rt.block_on(async {
        let receivers = crate::compose::build_receivers(&cfg)?;
        let r = receivers
            .iter()
            .find(|r| r.name == args.receiver)
            .expect("checked above");
        anyhow::Ok((r.name.clone(), r.deliver(&n).await))
    })?;
    let (name, outcome) = result;
    match outcome {
        Ok(()) => {
            println!("sent to `{name}` (idempotency key {})", n.key);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("receiver `{name}` failed: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// A test gets its own idempotency key (`test-` and 32 random hex digits), so
/// a de-duplicating receiver does not drop the second test as a repeat. The
/// made-up sample alert gets a fresh fingerprint too (a `file` receiver keys
/// its lines by it); alerts from `--alert FILE` keep theirs.
fn fresh_key(mut n: Notification, sample: bool) -> Notification {
    let hex = |n: usize| -> String {
        (0..n)
            .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
            .collect()
    };
    n.key = format!("test-{}", hex(32));
    if sample {
        for a in &mut n.alerts {
            a["fingerprint"] = serde_json::Value::from(hex(64));
        }
    }
    n
}

pub fn render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let cfg = match &args.config {
        Some(p) => Some(crate::compose::load_config(p).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let tcfg = cfg
        .as_ref()
        .map_or_else(TemplatesConfig::default, |c| c.templates.clone());
    let templates = Templates::load(&tcfg)
        .map_err(|e| anyhow::anyhow!("the templates have problems:\n{}", e.join("\n")))?;
    let mut params = crate::templates::sample_params();
    if let (Some(cfg), Some(name)) = (&cfg, &args.receiver) {
        match cfg.receivers.iter().find(|r| r.name() == name) {
            Some(ReceiverConfig::Webhook(w)) => {
                use secrecy::ExposeSecret;
                params = w
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
                    .collect();
            }
            Some(_) => {}
            None => anyhow::bail!("no receiver named `{name}` in the config"),
        }
    }
    let n = alert_file(
        args.alert.as_deref(),
        args.receiver.as_deref().unwrap_or("render"),
    )?;
    let out = templates
        .render_with(&args.template, &n, &params)
        .map_err(anyhow::Error::msg)?;
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
