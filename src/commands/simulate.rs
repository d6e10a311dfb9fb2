//! `kyc-sentinel simulate`: runs the Argos API simulator until Ctrl-C.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::SimulateArgs;
use crate::simulator::{FaultConfig, SimConfig, Simulator};

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.fault_rate) {
        anyhow::bail!(
            "--fault-rate must be between 0 and 1, got {}",
            args.fault_rate
        );
    }
    if !(0.0..=1.0).contains(&args.webhook_drop) {
        anyhow::bail!(
            "--webhook-drop must be between 0 and 1, got {}",
            args.webhook_drop
        );
    }
    if let Some(u) = &args.webhook_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        anyhow::bail!("--webhook-url: `{u}` is not an http(s) URL");
    }
    if args.rate < 0.0 || !args.rate.is_finite() {
        anyhow::bail!("--rate must be 0 or more, got {}", args.rate);
    }
    let decide_after = crate::util::parse_duration(&args.decide_after)
        .map_err(|e| anyhow::anyhow!("--decide-after: {e}"))?;
    let base_time = match &args.base_time {
        None => None,
        Some(t) => Some(crate::argos::parse_timestamp(t).ok_or_else(|| {
            anyhow::anyhow!("--base-time: `{t}` is not RFC 3339 nor YYYY-MM-DD-HH-MM-SS-ZZZ")
        })?),
    };
    let config = SimConfig {
        base_time,
        listen: args.listen,
        seed: args.seed,
        submissions: args.submissions,
        rate: args.rate,
        api_key: args.api_key,
        encrypted: args.encrypted,
        faults: FaultConfig {
            rate: args.fault_rate,
            ..FaultConfig::default()
        },
        decide_after,
        dump_path: args.dump.clone(),
        webhook: args
            .webhook_url
            .clone()
            .map(|url| crate::simulator::WebhookPush {
                url,
                drop: args.webhook_drop,
            }),
        backlog_span: args
            .backlog_days
            .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400)),
        ..SimConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let handle = Simulator::start(config)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        // The first line of output is the address, so scripts can read it.
        println!("listening on {}", handle.base_url());
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        handle.shutdown().await?;
        if let Some(p) = &args.dump {
            eprintln!("wrote {}", p.display());
        }
        Ok(ExitCode::SUCCESS)
    })
}
