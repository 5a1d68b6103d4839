//! Logging: tracing to stderr, human-readable or JSON, filtered by
//! `CIX_LOG` (or `RUST_LOG`) with a default level. Stdout stays free for
//! command output. Nothing logged anywhere in cix carries a raw identifier.

use tracing_subscriber::{fmt, EnvFilter};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
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

/// An error with its causes, "what failed: why: why", for log lines and
/// messages that show one error whole. Errors in cix put their cause either
/// in their own message or behind `source()`, never both; a cause whose
/// text the message already holds (as some libraries' errors repeat their
/// source) is not repeated, so each cause appears once.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("reading config file x.toml")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn chain_names_each_cause_once() {
        let e = Outer {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"),
        };
        assert_eq!(
            chain(&e),
            "reading config file x.toml: No such file or directory"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("transport error: No such file or directory")]
    struct Repeats {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn chain_skips_a_cause_its_message_already_holds() {
        let e = Repeats {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"),
        };
        assert_eq!(chain(&e), "transport error: No such file or directory");
    }
}
