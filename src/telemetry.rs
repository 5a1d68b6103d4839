//! Logging: tracing to stderr, human-readable or JSON, filtered by
//! `CIX_LOG` (or `RUST_LOG`) with a default level. Stdout stays free for
//! command output. Nothing logged anywhere in cix carries a raw identifier.

use tracing_subscriber::{fmt, EnvFilter};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber. `default` applies when neither
/// `CIX_LOG` nor `RUST_LOG` is set, e.g. "info" or "warn".
pub fn init(format: LogFormat, default: &str) {
    let filter = std::env::var("CIX_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
