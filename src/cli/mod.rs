//! The `cix` command line: the argument definitions ([`Cli`], [`Command`])
//! and [`run`], which hands each command to its module, one command family
//! per file. `main.rs` parses, sets up logging and calls [`run`]. Every
//! client command is a real mTLS client of a node. Command output goes to
//! stdout, logs and progress to stderr.
//!
//! - [`serve`], [`init`]: run a node; write a node directory.
//! - [`records`]: contribute, retract, indicators, rekey (the node's own log).
//! - [`screen`]: match (local or remote) and token; [`bulk`]: their input and output.
//! - [`status`]: the node's status; [`alerts`](mod@alerts): the node's alert log.
//! - [`keygen`], [`trust`]: the operators' keys and the trust list.
//! - [`bench`](mod@bench), [`demo`]: measured figures; the local coalition end to end.
//! - [`watchlist`]: the bank's book on the node's watchlist.
//! - [`disposition`]: the bank's outcomes of alerts and hits; [`report`]:
//!   reports drawn from the node's records (the case package, the outcome
//!   figures).
//! - [`outcomes`](mod@outcomes): the feedback an origin heard about its indicators.
//! - [`conn`]: how a client command reaches its node.

mod alerts;
mod bench;
mod bulk;
mod conn;
mod demo;
mod disposition;
mod health;
mod init;
mod keygen;
mod outcomes;
mod quarantine;
mod records;
mod report;
mod screen;
mod serve;
mod status;
mod trust;
mod watchlist;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::{ident::Kind, telemetry::LogFormat, testbed::init::InitOptions};
use conn::Conn;

/// The `cix` command line.
#[derive(Parser, Debug)]
// clap turns doc comments into help text: items without help stay without.
#[allow(missing_docs)]
#[command(
    name = "cix",
    version,
    about = "Coalition Indicator eXchange: node and tools"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `cix`.
#[derive(Subcommand, Debug)]
#[allow(missing_docs)] // clap turns doc comments into help text, as above
pub enum Command {
    /// Run a node.
    Serve {
        /// Node config (TOML).
        #[arg(long, env = "CIX_CONFIG")]
        config: PathBuf,
    },
    /// Write a ready-to-run node directory (config, demo CA and certificates, token key).
    Init {
        /// Directory to write (created if missing; must be empty without --force).
        dir: PathBuf,
        /// Overwrite a non-empty directory, including its store.
        #[arg(long)]
        force: bool,
        /// This node's member id.
        #[arg(long, default_value = "local")]
        node_id: String,
        /// The member listener's address, HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: String,
        /// Make a federated node with its peer listener here (needs the
        /// operators' signed trust list at DIR/trust/root.ctl to start).
        #[arg(long)]
        peer_listen: Option<String>,
        /// Install this token key file (the coalition's key for epoch 1).
        #[arg(long)]
        token_key: Option<PathBuf>,
    },
    /// Run a small local federation end to end: a node, a contribution, bulk screening.
    Demo {
        /// Identifiers to screen.
        #[arg(long, default_value_t = 100_000)]
        identifiers: usize,
        /// Keep the demo directory here instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Print the token of identifiers (reads values from stdin without VALUE).
    Token {
        /// Identifier kind of the values: iban, pan, bank_account, merchant, wallet, email, phone, domain.
        #[arg(long, value_parser = bulk::parse_kind)]
        kind: Kind,
        /// Token key file of the epoch (64 hex characters, mode 0600).
        #[arg(long)]
        key_file: PathBuf,
        /// One JSON object per value on stdout: kind, canonical, token.
        #[arg(long)]
        json: bool,
        /// The value (put it after `--` if it begins with '-').
        value: Option<String>,
    },
    /// Contribute indicators to the node's origin log.
    Contribute(records::ContributeArgs),
    /// Retract this node's own indicators.
    Retract(records::RetractArgs),
    /// List or extend this node's own indicators.
    #[command(subcommand)]
    Indicators(records::IndicatorsCommand),
    /// Screen identifiers against the node (or, with --remote, through a peer's node).
    Match(screen::MatchArgs),
    /// Measure: enumeration cost for a key holder, the engine against a reference loop.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Key rotation: re-contribute, under the newest key epoch, the node's own
    /// indicators for the identifiers given (raw values are never stored).
    Rekey(records::RekeyArgs),
    /// Read the node's alert log: follow it live, or list a page.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// What this node heard back (feedback) about its own indicators, per
    /// indicator and per case.
    Outcomes(outcomes::OutcomesArgs),
    /// Reports drawn from the node's records (under `admin`): the case
    /// package of an alert or a hit, the coalition's outcome figures.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Check the node's gRPC health (exit status 0 while serving): the
    /// node as a whole, or one service (`cix.v1.Screening`,
    /// `cix.v1.Federation`, ...).
    Health {
        /// How to reach the node.
        #[command(flatten)]
        conn: Conn,
        /// The service; empty, the node as a whole (which follows
        /// Screening).
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Show the node's status.
    Status {
        /// How to reach the node.
        #[command(flatten)]
        conn: Conn,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite the node's store with only its live data (as a retention
    /// purge does), while the node goes on serving; prints the store's size
    /// before and after.
    Compact {
        /// How to reach the node.
        #[command(flatten)]
        conn: Conn,
    },
    /// Make an Ed25519 key pair, or with --token a token key.
    #[command(long_about = keygen::KEYGEN_LONG_ABOUT)]
    Keygen(keygen::KeygenArgs),
    /// Edit, sign, verify, show and publish the coalition trust list.
    #[command(subcommand, long_about = trust::TRUST_LONG_ABOUT)]
    Trust(trust::TrustCommand),
    /// The watchlist: the bank's book under continuous screening.
    #[command(subcommand)]
    Watchlist(watchlist::WatchlistCommand),
    /// Dispositions: the bank's outcomes of alerts and hits.
    #[command(subcommand)]
    Disposition(disposition::DispositionCommand),
    /// Flood control: list the quarantined indicators, or lift one.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config } => serve::serve(&config).await,
        Command::Init {
            dir,
            force,
            node_id,
            listen,
            peer_listen,
            token_key,
        } => init::init(
            &dir,
            &InitOptions {
                node_id: &node_id,
                listen: &listen,
                force,
                peer_listen: peer_listen.as_deref(),
                token_key: token_key.as_deref(),
            },
        ),
        Command::Demo { identifiers, keep } => demo::run(identifiers, keep).await,
        Command::Token {
            kind,
            key_file,
            json,
            value,
        } => screen::token_command(kind, &key_file, json, value),
        Command::Contribute(a) => records::contribute(a).await,
        Command::Retract(a) => records::retract(a).await,
        Command::Indicators(c) => records::indicators(c).await,
        Command::Match(a) => screen::match_command(a).await,
        Command::Rekey(a) => records::rekey(a).await,
        Command::Bench(b) => bench::bench(b).await,
        Command::Alerts(c) => alerts::alerts(c).await,
        Command::Outcomes(a) => outcomes::outcomes(a).await,
        Command::Disposition(c) => disposition::disposition(c).await,
        Command::Report(c) => report::report(c).await,
        Command::Health { conn, service } => health::health(conn, service).await,
        Command::Status { conn, json } => status::status(conn, json).await,
        Command::Compact { conn } => status::compact(conn).await,
        Command::Keygen(a) => keygen::keygen(a),
        Command::Trust(c) => trust::trust(c).await,
        Command::Watchlist(c) => watchlist::watchlist(c).await,
        Command::Quarantine(c) => quarantine::quarantine(c).await,
    }
}
