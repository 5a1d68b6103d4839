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
    /// A file operation on a node's files failed.
    #[error("{what} {}", .path.display())]
    Io {
        /// The operation, as a verb ("reading", "writing", ...).
        what: &'static str,
        /// The file operated on.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Making a node directory with [`init::init`] failed.
    #[error("making the node directory {}", .dir.display())]
    Init {
        /// The node directory.
        dir: PathBuf,
        /// Why `init` failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A node directory made for a federated node has no peer certificate.
    #[error("node directory {} has no peer certificate", .0.display())]
    NotFederated(PathBuf),
    /// A node's config does not read or parse.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A key file does not read or write.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// Certificates, keys or a TLS connection failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A member-API connection failed.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// A node refused a call.
    #[error(transparent)]
    Refused(#[from] tonic::Status),
    /// The clock does not read.
    #[error(transparent)]
    Clock(#[from] crate::time::ClockError),
    /// The node process could not be spawned.
    #[error("starting `cix serve`")]
    Spawn(#[source] std::io::Error),
    /// Checking on, killing or waiting for the node process failed.
    #[error("watching the node process")]
    Process(#[source] std::io::Error),
    /// The node exited before writing its address file.
    #[error("node exited at start ({status}); see {}", .log.display())]
    ExitedAtStart {
        /// How it exited.
        status: ExitStatus,
        /// Where its stderr went.
        log: PathBuf,
    },
    /// The node wrote no address file within its start timeout.
    #[error("node did not start within {seconds} s; see {}", .log.display())]
    StartTimeout {
        /// The start timeout, in seconds.
        seconds: u64,
        /// Where its stderr went.
        log: PathBuf,
    },
    /// The node was already stopped or killed.
    #[error("the node is not running")]
    NotRunning,
    /// SIGTERM could not be sent.
    #[error("sending SIGTERM")]
    Signal(#[source] nix::Error),
    /// The node did not exit in time after SIGTERM and was killed.
    #[error("node did not stop within {seconds} s")]
    StopTimeout {
        /// The stop timeout, in seconds.
        seconds: u64,
    },
    /// The node stopped with a status other than 0.
    #[error("node exited with {0}")]
    Unclean(ExitStatus),
    /// The blocking task starting or stopping the node failed.
    #[error("the task running the node process failed")]
    Task(#[source] tokio::task::JoinError),
    /// Every port of the range [`process::free_port`] picks from is taken.
    #[error("no free port on 127.0.0.1 between 20000 and 32000")]
    NoFreePort,
    /// The node never confirmed its own log's head with a peer in time.
    #[error("{who} never confirmed its own log's head with a peer within {seconds} s")]
    OwnLogNotReady {
        /// The node, as the caller named it.
        who: String,
        /// How long was waited, in seconds.
        seconds: u64,
    },
    /// A value never reached the match status waited for.
    #[error("replication did not arrive within {seconds} s")]
    MatchStatusNotReached {
        /// How long was waited, in seconds.
        seconds: u64,
    },
    /// The node's alert engine still had work queued, or never reached the
    /// state waited for.
    #[error("{who}'s alert engine did not finish {what} within {seconds} s")]
    AlertsNotIdle {
        /// The node, as the caller named it.
        who: String,
        /// What was waited for.
        what: String,
        /// How long was waited, in seconds.
        seconds: u64,
    },
    /// The node never held the trust-list version waited for.
    #[error("the node never reached trust list version {version} within {seconds} s")]
    TrustVersionNotReached {
        /// The version waited for.
        version: u64,
        /// How long was waited, in seconds.
        seconds: u64,
    },
}
