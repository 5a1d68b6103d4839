//! A local coalition on one machine, for the demo, `cix bench` and the
//! integration tests: everything about running real nodes side by side on
//! loopback. Nothing here is part of a node.
//!
//! - [`init`]: a ready-to-run node directory with a demo CA (`cix init`).
//! - [`coalition`]: operators' keys, the coalition's token key, the members'
//!   federated node directories and the trust list naming them, signed and
//!   installed; connections to a member's peer listener as another member.
//! - [`process`]: `cix serve` child processes: the one place one is
//!   spawned, waited for (its address file) and stopped; free ports.
//! - [`wait`]: bounded waits on a running node's member API (its own log
//!   ready, a value's match status, a trust-list version).
//! - [`synth`]: synthetic identifiers.

pub mod coalition;
pub mod init;
pub mod process;
pub mod synth;
pub mod wait;

use std::{path::PathBuf, process::ExitStatus};

/// What went wrong while setting up, running or waiting on local nodes.
/// Messages never carry an identifier.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("{what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("making the node directory {}", .dir.display())]
    Init {
        dir: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("node directory {} has no peer certificate", .0.display())]
    NotFederated(PathBuf),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error(transparent)]
    Refused(#[from] tonic::Status),
    #[error(transparent)]
    Clock(#[from] crate::time::ClockError),
    #[error("starting `cix serve`")]
    Spawn(#[source] std::io::Error),
    #[error("watching the node process")]
    Process(#[source] std::io::Error),
    #[error("node exited at start ({status}); see {}", .log.display())]
    ExitedAtStart { status: ExitStatus, log: PathBuf },
    #[error("node did not start within {seconds} s; see {}", .log.display())]
    StartTimeout { seconds: u64, log: PathBuf },
    #[error("the node is not running")]
    NotRunning,
    #[error("sending SIGTERM")]
    Signal(#[source] nix::Error),
    #[error("node did not stop within {seconds} s")]
    StopTimeout { seconds: u64 },
    #[error("node exited with {0}")]
    Unclean(ExitStatus),
    #[error("the task running the node process failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("no free port on 127.0.0.1 between 20000 and 32000")]
    NoFreePort,
    #[error("{who} never confirmed its own log's head with a peer within {seconds} s")]
    OwnLogNotReady { who: String, seconds: u64 },
    #[error("replication did not arrive within {seconds} s")]
    MatchStatusNotReached { seconds: u64 },
    #[error("the node never reached trust list version {version} within {seconds} s")]
    TrustVersionNotReached { version: u64, seconds: u64 },
}
