//! Logs: text on a terminal, JSON for shippers; level from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber (once; later calls are ignored, which
/// lets tests run several commands in one process).
pub fn init_logs(format: LogFormat) {
    init_logs_at(format, "info");
}

/// As [`init_logs`], with another level when `RUST_LOG` is unset.
pub fn init_logs_at(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
