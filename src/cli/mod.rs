//! The `cix` command line: argument definitions and the commands.
//! `main.rs` parses, sets up logging and calls [`run`]. Every client command
//! is a real mTLS client of a node. Command output goes to stdout, logs and
//! progress to stderr.

pub mod bulk;
pub mod demo;
pub mod operator;

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::{
    api::convert,
    client::{Clients, Identity},
    config::Config,
    epochs::now_unix,
    ident::{self, Kind},
    index::Tier,
    keys::TokenKey,
    proto,
    telemetry::LogFormat,
    testbed::init,
    time::{format_time, parse_time},
    token::{Token, Tokenizer},
};
use bulk::{HitRow, Input, Out, OutFormat, ResultRow};

#[derive(Parser, Debug)]
#[command(
    name = "cix",
    version,
    about = "Coalition Indicator eXchange: node and tools"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node.
    Serve {
        /// Node config (TOML).
        #[arg(long, env = "CIX_CONFIG")]
        config: PathBuf,
    },
    /// Write a ready-to-run node directory (config, demo CA and certificates, token key).
    Init {
        dir: PathBuf,
        /// Overwrite a non-empty directory, including its store.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "local")]
        node_id: String,
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
    Contribute(ContributeArgs),
    /// Retract this node's own indicators.
    Retract(RetractArgs),
    /// List or extend this node's own indicators.
    #[command(subcommand)]
    Indicators(IndicatorsCommand),
    /// Screen identifiers against the node (or, with --remote, through a peer's node).
    Match(MatchArgs),
    /// Measure: enumeration cost for a key holder, the engine against a reference loop.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Key rotation: re-contribute, under the newest key epoch, the node's own
    /// indicators for the identifiers given (raw values are never stored).
    Rekey(RekeyArgs),
    /// Show the node's status.
    Status {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
    /// Make an Ed25519 key pair, or with --token a token key.
    #[command(long_about = operator::KEYGEN_LONG_ABOUT)]
    Keygen(operator::KeygenArgs),
    /// Edit, sign, verify, show and publish the coalition trust list.
    #[command(subcommand, long_about = operator::TRUST_LONG_ABOUT)]
    Trust(operator::TrustCommand),
}

/// How to reach the node and who to be.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// A directory made by `cix init`: defaults for every option below.
    #[arg(long, env = "CIX_DIR", default_value = ".")]
    pub dir: PathBuf,
    /// The node's member listener, HOST:PORT.
    #[arg(long, env = "CIX_NODE")]
    pub node: Option<String>,
    /// Name to check in the node's certificate (default: HOST).
    #[arg(long)]
    pub server_name: Option<String>,
    /// CA of the node's server certificate (PEM).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
}

impl Conn {
    pub fn identity(&self) -> Result<Identity> {
        let from_dir = Identity::from_dir(&self.dir);
        let mut id = match (&self.node, &self.ca, &self.cert, &self.key, from_dir) {
            (_, _, _, _, Ok(id)) => id,
            (Some(node), Some(ca), Some(cert), Some(key), Err(_)) => Identity {
                node: node.clone(),
                server_name: None,
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            },
            (.., Err(e)) => return Err(anyhow::Error::new(e).context(
                "give --dir (a directory made by `cix init`) or all of --node, --ca, --cert, --key",
            )),
        };
        if let Some(n) = &self.node {
            id.node = n.clone();
        }
        if let Some(c) = &self.ca {
            id.ca = c.clone();
        }
        if let Some(c) = &self.cert {
            id.cert = c.clone();
        }
        if let Some(k) = &self.key {
            id.key = k.clone();
        }
        id.server_name = self.server_name.clone();
        Ok(id)
    }

    pub async fn connect(&self) -> Result<Clients> {
        Ok(self.identity()?.connect().await?)
    }
}

#[derive(Args, Debug)]
pub struct ContributeArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub input: Input,
    /// Opaque case label (1-128 printable ASCII characters); never a raw identifier.
    #[arg(long)]
    pub case_ref: String,
    /// confirmed, probable or suspected.
    #[arg(long, default_value = "confirmed", value_parser = parse_tier)]
    pub tier: Tier,
    /// Expiry, RFC 3339 (e.g. 2027-06-30T00:00:00Z).
    #[arg(long, conflicts_with = "valid_for")]
    pub valid_until: Option<String>,
    /// Expiry from now, e.g. 90d or 12h.
    #[arg(long)]
    pub valid_for: Option<humantime::Duration>,
    /// Items per request.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
}

#[derive(Args, Debug)]
pub struct RetractArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// Why (1-128 printable ASCII characters).
    #[arg(long)]
    pub reason: String,
    /// Retract every indicator of this case.
    #[arg(long, conflicts_with_all = ["token", "value", "file"])]
    pub case_ref: Option<String>,
    /// Retract by token (hex); needs --kind and --epoch.
    #[arg(long, requires = "epoch")]
    pub token: Vec<String>,
    #[arg(long)]
    pub epoch: Option<u32>,
    #[command(flatten)]
    pub input: Input,
}

#[derive(Subcommand, Debug)]
pub enum IndicatorsCommand {
    /// This node's own active indicators.
    List {
        #[command(flatten)]
        conn: Conn,
        /// One JSON object per indicator.
        #[arg(long)]
        json: bool,
        /// Stop after this many (default: all).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Move valid_until of own indicators (by case reference or tokens).
    Extend {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, conflicts_with = "token")]
        case_ref: Option<String>,
        #[arg(long, requires_all = ["kind", "epoch"])]
        token: Vec<String>,
        #[arg(long, value_parser = bulk::parse_kind)]
        kind: Option<Kind>,
        #[arg(long)]
        epoch: Option<u32>,
        /// New expiry, RFC 3339.
        #[arg(long, conflicts_with = "valid_for")]
        valid_until: Option<String>,
        /// New expiry from now, e.g. 180d.
        #[arg(long)]
        valid_for: Option<humantime::Duration>,
    },
}

#[derive(Args, Debug)]
pub struct MatchArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub input: Input,
    /// Write one result per input row here (CSV, or JSON lines for .jsonl/.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Result format (default: from --out's extension, else CSV).
    #[arg(long, value_enum)]
    pub format: Option<OutFormat>,
    /// Identifiers per streamed message.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
    /// Screen through this member's node (member id) by k-anonymous prefix
    /// queries, made by your own node, instead of your node's replica. Same
    /// input and output; subject to the coalition's query limits.
    #[arg(long, value_name = "PEER")]
    pub remote: Option<String>,
}

/// Sizes and output of the node benchmarks.
#[derive(Args, Debug, Clone)]
pub struct BenchSizes {
    /// Indicators loaded (the memory and cold-start targets apply at 10,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    pub indicators: usize,
    /// Identifiers screened.
    #[arg(long, default_value_t = 2_000_000)]
    pub queries: usize,
    /// Items per request message and per contribution.
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// Seed of the synthetic identifiers.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print only a JSON array of figures on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Keep the benchmark node's directory (config, keys, store, log) at
    /// this new path instead of a temporary one, to restart or profile the
    /// node afterwards (`cix serve --config PATH/node/cix.toml`).
    #[arg(long, value_name = "PATH")]
    pub keep: Option<PathBuf>,
}

/// The unary latency run.
#[derive(Args, Debug, Clone)]
pub struct LatencyArgs {
    /// Requests per second of the latency run (one identifier each).
    #[arg(long, default_value_t = 1_000)]
    pub rate: u32,
    /// Seconds of each part (paced requests, then concurrent clients).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Concurrent unary clients, each on its own connection.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
}

/// The freshness-under-load run.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Screening clients keeping the bank busy (1,000 identifiers a request).
    #[arg(long = "load-clients", default_value_t = 64)]
    pub load_clients: usize,
    /// New contributions timed to a match (the figure is the slowest).
    #[arg(long, default_value_t = 5)]
    pub probes: usize,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// How fast a member holding the token key hashes and tests candidate
    /// identifiers (canonical UK mobile numbers, +447 and 9 digits) with cix's
    /// own token code on every core; planted indicators must all be found.
    Enumerate {
        /// Candidates to hash (the time for 10^8 is extrapolated from fewer).
        #[arg(long, default_value_t = 100_000_000)]
        candidates: u64,
        /// Indicator tokens planted among the candidates.
        #[arg(long, default_value_t = 1_000)]
        planted: usize,
        /// Worker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Print only a JSON array of figures on stdout (the table goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Bulk screening: the in-process engine (normalize, HMAC under every
    /// valid epoch, look-up) against a minimal reference loop doing the same
    /// work, both on every core; then a real node process loaded with the
    /// same number of indicators, screened over mTLS with MatchStream and
    /// pre-hashed MatchTokens, and the ratio to the engine. Mixed kinds, 1%
    /// hits.
    Screen {
        #[command(flatten)]
        sizes: BenchSizes,
        /// Valid key epochs in the in-process run (2: a rotation window).
        #[arg(long, default_value_t = 1)]
        epochs: u32,
        /// Worker threads of the in-process run (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Also the design a bank would otherwise build: tokens in a Redis
        /// set, the client hashing and asking with pipelined SMISMEMBER
        /// (needs redis-server: scripts/install-redis.sh).
        #[arg(long)]
        vs_redis: bool,
        /// Only the in-process run, no node.
        #[arg(long)]
        in_process: bool,
    },
    /// Ingest: a real node process, contributions of `--batch` indicators
    /// from one client, each acknowledged once durable.
    Ingest {
        #[command(flatten)]
        sizes: BenchSizes,
    },
    /// Memory: a real node process loaded with `--indicators`: resident
    /// memory, store bytes per indicator, cold start.
    Memory {
        #[command(flatten)]
        sizes: BenchSizes,
    },
    /// Unary Screening.Match of one identifier over an established mTLS
    /// connection: p50/p99 at a fixed rate, and the throughput of concurrent
    /// unary clients.
    Latency {
        #[command(flatten)]
        sizes: BenchSizes,
        #[command(flatten)]
        latency: LatencyArgs,
    },
    /// Replication between real nodes (a liaison and two banks): a new node
    /// catching up on `--indicators`, then a new contribution timed to a
    /// match at a bank kept busy by screening clients.
    Replicate {
        #[command(flatten)]
        sizes: BenchSizes,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Every figure with a target: screen, ingest, latency, memory and
    /// replicate, one table.
    All {
        #[command(flatten)]
        sizes: BenchSizes,
        #[command(flatten)]
        latency: LatencyArgs,
        #[command(flatten)]
        load: LoadArgs,
        /// Include the Redis comparison.
        #[arg(long)]
        vs_redis: bool,
    },
}

#[derive(Args, Debug)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub input: Input,
    /// Identifiers per request.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| "use confirmed, probable or suspected".to_string())
}

fn expiry(until: &Option<String>, for_: &Option<humantime::Duration>) -> Result<Option<i64>> {
    Ok(match (until, for_) {
        (Some(u), _) => Some(parse_time(u).map_err(|r| anyhow::anyhow!("--valid-until: {r}"))?),
        (None, Some(d)) => Some(now_unix() + d.as_secs() as i64),
        (None, None) => None,
    })
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("node refused: {:?}: {}", s.code(), s.message())
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            crate::server::run(config, crate::server::shutdown::signal()).await?;
            Ok(())
        }
        Command::Init {
            dir,
            force,
            node_id,
            listen,
            peer_listen,
            token_key,
        } => {
            let made = init::init(
                &dir,
                &init::InitOptions {
                    node_id: &node_id,
                    listen: &listen,
                    force,
                    peer_listen: peer_listen.as_deref(),
                    token_key: token_key.as_deref(),
                },
            )?;
            println!("node directory: {}", made.dir.display());
            println!("config:         {}", made.config.display());
            println!("client spki:    {}", made.client_spki_sha256);
            println!("token key:      sha256 {}", made.token_key_sha256);
            println!(
                "log signing:    {}  (public key, for the operators' trust list)",
                made.signing_public_hex
            );
            if let Some(peer) = &made.peer_spki_sha256 {
                println!("peer spki:      {peer}  (for the operators' trust list)");
                println!(
                    "trust list:     put the signed list at {}",
                    dir.join("trust/root.ctl").display()
                );
            }
            println!(
                "start it with:  cix serve --config {}",
                made.config.display()
            );
            Ok(())
        }
        Command::Demo { identifiers, keep } => demo::run(identifiers, keep).await,
        Command::Token {
            kind,
            key_file,
            json,
            value,
        } => token_command(kind, &key_file, json, value),
        Command::Contribute(a) => contribute(a).await,
        Command::Retract(a) => retract(a).await,
        Command::Indicators(c) => indicators(c).await,
        Command::Match(a) => match_command(a).await,
        Command::Rekey(a) => rekey(a).await,
        Command::Bench(b) => bench(b).await,
        Command::Status { conn, json } => status(conn, json).await,
        Command::Keygen(a) => operator::keygen(a),
        Command::Trust(c) => operator::trust(c).await,
    }
}

fn token_command(
    kind: Kind,
    key_file: &std::path::Path,
    json: bool,
    value: Option<String>,
) -> Result<()> {
    let key = TokenKey::load(key_file)?;
    let tokenizer = Tokenizer::new(&key);
    let values: Box<dyn Iterator<Item = std::io::Result<String>>> = match value {
        Some(v) => Box::new(std::iter::once(Ok(v))),
        None => {
            use std::io::BufRead;
            Box::new(std::io::stdin().lock().lines())
        }
    };
    let mut rejected = 0usize;
    for (i, v) in values.enumerate() {
        let v = v.context("reading stdin")?;
        let v = v.strip_suffix('\r').unwrap_or(&v);
        match ident::normalize(kind, v) {
            Ok(c) => {
                let t = tokenizer.token(kind, c.as_bytes());
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"kind": kind.as_str(), "canonical": c.as_str(), "token": t.to_hex()})
                    );
                } else {
                    println!("{t}");
                }
            }
            Err(r) => {
                rejected += 1;
                eprintln!("value {}: rejected: {}", i + 1, r.as_str());
            }
        }
    }
    if rejected > 0 {
        bail!("{rejected} value(s) rejected");
    }
    Ok(())
}

async fn contribute(a: ContributeArgs) -> Result<()> {
    let rows = a.input.read()?;
    let valid_until = expiry(&a.valid_until, &a.valid_for)?.map(convert::timestamp);
    let mut clients = a.conn.connect().await?;
    let pb = a
        .input
        .is_bulk()
        .then(|| bulk::progress(rows.len(), "contributing"));
    let start = Instant::now();
    let (mut stored, mut present, mut invalid) = (0usize, 0usize, 0usize);
    for chunk in rows.chunks(a.batch.max(1)) {
        let req = proto::ContributeRequest {
            items: chunk
                .iter()
                .map(|r| proto::ContributionItem {
                    item: Some(proto::contribution_item::Item::Identifier(
                        proto::Identifier {
                            kind: r.kind.map(convert::kind_to_proto).unwrap_or(0),
                            value: r.value.clone(),
                        },
                    )),
                })
                .collect(),
            case_ref: a.case_ref.clone(),
            tier: a.tier as i32,
            valid_until,
        };
        let resp = clients
            .contribution
            .contribute(req)
            .await
            .map_err(status_error)?
            .into_inner();
        for (row, res) in chunk.iter().zip(&resp.results) {
            match proto::ItemStatus::try_from(res.status) {
                Ok(proto::ItemStatus::Stored) => stored += 1,
                Ok(proto::ItemStatus::AlreadyPresent) => present += 1,
                _ => {
                    invalid += 1;
                    eprintln!("row {}: invalid: {}", row.row, res.invalid_reason);
                }
            }
            if !a.input.is_bulk() {
                println!(
                    "{}",
                    Token::from_slice(&res.token)
                        .map(|t| t.to_hex())
                        .unwrap_or_default()
                );
            }
        }
        if let Some(pb) = &pb {
            pb.inc(chunk.len() as u64);
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "items {}  stored {stored}  already present {present}  invalid {invalid}  ({:.0}/s)",
        rows.len(),
        rows.len() as f64 / secs.max(1e-9)
    );
    if invalid > 0 {
        bail!("{invalid} item(s) invalid");
    }
    Ok(())
}

fn token_items(
    tokens: &[String],
    kind: Option<Kind>,
    epoch: Option<u32>,
) -> Result<Vec<proto::PrecomputedToken>> {
    let kind = kind.context("--token needs --kind")?;
    let epoch = epoch.context("--token needs --epoch")?;
    tokens
        .iter()
        .map(|t| {
            let t = Token::from_hex(t).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
            Ok(proto::PrecomputedToken {
                kind: convert::kind_to_proto(kind),
                token: t.0.to_vec(),
                epoch,
            })
        })
        .collect()
}

async fn retract(a: RetractArgs) -> Result<()> {
    let mut req = proto::RetractRequest {
        reason: a.reason.clone(),
        ..Default::default()
    };
    if let Some(c) = &a.case_ref {
        req.case_ref = c.clone();
    } else if !a.token.is_empty() {
        req.tokens = token_items(&a.token, a.input.kind, a.epoch)?;
    } else {
        req.identifiers = a
            .input
            .read()?
            .into_iter()
            .map(|r| proto::Identifier {
                kind: r.kind.map(convert::kind_to_proto).unwrap_or(0),
                value: r.value,
            })
            .collect();
    }
    let mut clients = a.conn.connect().await?;
    let resp = clients
        .contribution
        .retract(req)
        .await
        .map_err(status_error)?
        .into_inner();
    for (i, r) in resp.results.iter().enumerate() {
        let status = proto::ItemStatus::try_from(r.status)
            .map(|s| s.as_str_name())
            .unwrap_or("?");
        println!(
            "item {}: {}{}",
            i + 1,
            status.trim_start_matches("ITEM_STATUS_"),
            reason_suffix(&r.invalid_reason)
        );
    }
    println!("retracted {}", resp.retracted);
    Ok(())
}

fn reason_suffix(r: &str) -> String {
    if r.is_empty() {
        String::new()
    } else {
        format!(" ({r})")
    }
}

async fn indicators(c: IndicatorsCommand) -> Result<()> {
    match c {
        IndicatorsCommand::List { conn, json, limit } => {
            let mut clients = conn.connect().await?;
            let mut page_token = String::new();
            let mut shown = 0usize;
            loop {
                let resp = clients
                    .contribution
                    .list(proto::ListRequest {
                        page_size: 1000,
                        page_token: page_token.clone(),
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                for i in &resp.indicators {
                    if limit.is_some_and(|l| shown >= l) {
                        return Ok(());
                    }
                    shown += 1;
                    let token = Token::from_slice(&i.token)
                        .map(|t| t.to_hex())
                        .unwrap_or_default();
                    let kind = convert::kind(i.kind).map(|k| k.as_str()).unwrap_or("?");
                    let until = i.valid_until.as_ref().map(|t| format_time(t.seconds));
                    let tier = Tier::from_code(i.tier).map(|t| t.as_str()).unwrap_or("?");
                    let created =
                        format_time(i.created_at.as_ref().map(|t| t.seconds).unwrap_or(0));
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"token": token, "kind": kind, "epoch": i.epoch, "tier": tier,
                                "case_ref": i.case_ref, "created_at": created, "valid_until": until, "seq": i.seq})
                        );
                    } else {
                        println!(
                            "{token} {kind} epoch={} tier={tier} case={:?} created={created} valid_until={} seq={}",
                            i.epoch,
                            i.case_ref,
                            until.as_deref().unwrap_or("never"),
                            i.seq
                        );
                    }
                }
                if resp.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = resp.next_page_token;
            }
        }
        IndicatorsCommand::Extend {
            conn,
            case_ref,
            token,
            kind,
            epoch,
            valid_until,
            valid_for,
        } => {
            let until =
                expiry(&valid_until, &valid_for)?.context("give --valid-until or --valid-for")?;
            let mut req = proto::ExtendRequest {
                valid_until: Some(convert::timestamp(until)),
                ..Default::default()
            };
            match case_ref {
                Some(c) => req.case_ref = c,
                None => req.tokens = token_items(&token, kind, epoch)?,
            }
            let mut clients = conn.connect().await?;
            let resp = clients
                .contribution
                .extend(req)
                .await
                .map_err(status_error)?
                .into_inner();
            println!("extended {} until {}", resp.extended, format_time(until));
            Ok(())
        }
    }
}

/// Result row of one match outcome.
fn result_row(row: usize, kind: &str, r: &proto::MatchResult) -> ResultRow {
    let status = match proto::MatchStatus::try_from(r.status) {
        Ok(proto::MatchStatus::Match) => "MATCH",
        Ok(proto::MatchStatus::NoMatch) => "NO_MATCH",
        Ok(proto::MatchStatus::Invalid) => "INVALID",
        _ => "UNKNOWN",
    };
    ResultRow {
        row,
        kind: kind.to_string(),
        status,
        hits: r
            .hits
            .iter()
            .map(|h| HitRow {
                origin: h.origin.clone(),
                case_ref: h.case_ref.clone(),
                tier: Tier::from_code(h.tier).map(|t| t.as_str()).unwrap_or("?"),
                created_at: format_time(h.created_at.as_ref().map(|t| t.seconds).unwrap_or(0)),
                valid_until: h.valid_until.as_ref().map(|t| format_time(t.seconds)),
                epoch: h.epoch,
            })
            .collect(),
        invalid_reason: r.invalid_reason.clone(),
    }
}

/// Totals of a bulk match.
#[derive(Debug, Default, Clone, Copy)]
pub struct MatchSummary {
    pub items: usize,
    pub matched: usize,
    pub invalid: usize,
    pub seconds: f64,
}

/// Screens `rows` over one `MatchStream`, writing each result to `out`.
pub async fn bulk_match(
    clients: &mut Clients,
    rows: Vec<bulk::Row>,
    batch: usize,
    out: &mut Out,
    show_progress: bool,
    remote: Option<&str>,
) -> Result<MatchSummary> {
    if let Some(peer) = remote {
        return remote_match(clients, peer, rows, batch, out, show_progress).await;
    }
    let rows = std::sync::Arc::new(rows);
    let batch = batch.max(1);
    let chunks = rows.len().div_ceil(batch);
    let pb = show_progress.then(|| bulk::progress(rows.len(), "screening"));
    let start = Instant::now();
    let req_rows = rows.clone();
    let requests = futures::stream::iter(0..chunks).map(move |i| {
        let chunk = &req_rows[i * batch..((i + 1) * batch).min(req_rows.len())];
        proto::MatchRequest {
            identifiers: chunk.iter().map(identifier).collect(),
        }
    });
    let mut responses = clients
        .screening
        .match_stream(requests)
        .await
        .map_err(status_error)?
        .into_inner();
    let mut summary = MatchSummary {
        items: rows.len(),
        ..Default::default()
    };
    let mut i = 0usize;
    while let Some(resp) = responses.message().await.map_err(status_error)? {
        let chunk = &rows[i * batch..((i + 1) * batch).min(rows.len())];
        write_results(chunk, &resp, &mut summary, out, pb.as_ref())?;
        i += 1;
    }
    if i != chunks {
        bail!("node answered {i} of {chunks} batches");
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// One result row per input row, counted in the summary.
fn write_results(
    chunk: &[bulk::Row],
    resp: &proto::MatchResponse,
    summary: &mut MatchSummary,
    out: &mut Out,
    pb: Option<&indicatif::ProgressBar>,
) -> Result<()> {
    if resp.results.len() != chunk.len() {
        bail!(
            "node answered {} results for {} items",
            resp.results.len(),
            chunk.len()
        );
    }
    for (row, r) in chunk.iter().zip(&resp.results) {
        let kind = row.kind.map(|k| k.as_str()).unwrap_or("?");
        let rr = result_row(row.row, kind, r);
        summary.matched += usize::from(rr.status == "MATCH");
        summary.invalid += usize::from(rr.status == "INVALID");
        out.write(&rr)?;
    }
    if let Some(pb) = pb {
        pb.inc(chunk.len() as u64);
    }
    Ok(())
}

/// An input row as an identifier of a request.
fn identifier(r: &bulk::Row) -> proto::Identifier {
    proto::Identifier {
        kind: r.kind.map(convert::kind_to_proto).unwrap_or(0),
        value: r.value.clone(),
    }
}

/// Longest wait a remote match honours from a peer's retry hint before it
/// gives up and reports the limit.
const MAX_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends one request, waiting out RESOURCE_EXHAUSTED answers whose retry
/// hint is short.
async fn with_retry<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                match crate::api::retry_hint(&s).filter(|d| *d <= MAX_RETRY_WAIT) {
                    Some(wait) => {
                        eprintln!("{}; waiting {:.1} s", s.message(), wait.as_secs_f64());
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(status_error(s)),
                }
            }
            Err(s) => return Err(status_error(s)),
        }
    }
}

async fn remote_match(
    clients: &mut Clients,
    peer: &str,
    rows: Vec<bulk::Row>,
    batch: usize,
    out: &mut Out,
    show_progress: bool,
) -> Result<MatchSummary> {
    let pb = show_progress.then(|| bulk::progress(rows.len(), "screening remotely"));
    let start = Instant::now();
    let mut summary = MatchSummary {
        items: rows.len(),
        ..Default::default()
    };
    for chunk in rows.chunks(batch.max(1)) {
        let req = proto::MatchRemoteRequest {
            peer: peer.to_string(),
            identifiers: chunk.iter().map(identifier).collect(),
        };
        let resp = with_retry(|| {
            let mut s = clients.screening.clone();
            let req = req.clone();
            async move { s.match_remote(req).await.map(|r| r.into_inner()) }
        })
        .await?;
        write_results(chunk, &resp, &mut summary, out, pb.as_ref())?;
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

async fn bench(b: BenchCommand) -> Result<()> {
    use crate::bench::{enumerate, report};
    match b {
        BenchCommand::Enumerate {
            candidates,
            planted,
            threads,
            json,
        } => {
            let threads = threads.unwrap_or_else(enumerate::default_threads);
            let figures =
                tokio::task::spawn_blocking(move || enumerate::run(candidates, planted, threads).0)
                    .await?;
            report(&figures, json)
        }
        BenchCommand::Screen {
            sizes,
            epochs,
            threads,
            vs_redis,
            in_process,
        } => {
            let run = bench_in_process(&sizes, epochs, threads, vs_redis).await?;
            let mut figures = run.figures.clone();
            if !in_process {
                let mut l = bench_load(&sizes, sizes.queries / 100).await?;
                figures.push(l.ingest_figure());
                figures.extend(bench_node_screen(&mut l, &sizes, &run).await?);
                l.stop().await?;
            }
            report(&figures, sizes.json)
        }
        BenchCommand::Ingest { sizes } => {
            let l = bench_load(&sizes, 0).await?;
            let figures = vec![l.ingest_figure()];
            l.stop().await?;
            report(&figures, sizes.json)
        }
        BenchCommand::Memory { sizes } => {
            let mut l = bench_load(&sizes, 0).await?;
            let mut figures = vec![l.ingest_figure()];
            figures.extend(l.memory().await?);
            l.stop().await?;
            report(&figures, sizes.json)
        }
        BenchCommand::Latency { sizes, latency } => {
            let mut l = bench_load(&sizes, 1_000).await?;
            let figures = bench_latency(&mut l, &sizes, &latency).await?;
            l.stop().await?;
            report(&figures, sizes.json)
        }
        BenchCommand::Replicate { sizes, load } => {
            let figures = bench_replicate(&sizes, &load).await?;
            report(&figures, sizes.json)
        }
        BenchCommand::All {
            sizes,
            latency,
            load,
            vs_redis,
        } => {
            let run = bench_in_process(&sizes, 1, None, vs_redis).await?;
            let mut figures = run.figures.clone();
            let mut l = bench_load(&sizes, sizes.queries / 100).await?;
            figures.push(l.ingest_figure());
            figures.extend(bench_node_screen(&mut l, &sizes, &run).await?);
            figures.extend(bench_latency(&mut l, &sizes, &latency).await?);
            figures.extend(l.memory().await?);
            l.stop().await?;
            figures.extend(bench_replicate(&sizes, &load).await?);
            report(&figures, sizes.json)
        }
    }
}

/// A node process loaded with `sizes.indicators`, `known` of them kept to
/// plant as hits.
async fn bench_load(sizes: &BenchSizes, known: usize) -> Result<crate::bench::node::Loaded> {
    crate::bench::node::Loaded::start(
        sizes.indicators,
        known,
        sizes.seed,
        sizes.batch,
        sizes.keep.as_deref(),
    )
    .await
}

/// The in-process run (engine against reference, and Redis with `vs_redis`).
async fn bench_in_process(
    sizes: &BenchSizes,
    epochs: u32,
    threads: Option<usize>,
    vs_redis: bool,
) -> Result<crate::bench::screen::ScreenRun> {
    use crate::bench::screen;
    let o = screen::ScreenOptions {
        indicators: sizes.indicators,
        queries: sizes.queries,
        epochs,
        seed: sizes.seed,
        threads: threads.unwrap_or_else(screen::default_threads),
        vs_redis,
        batch: sizes.batch,
    };
    tokio::task::spawn_blocking(move || screen::run(&o)).await?
}

/// The loaded node's bulk screening, compared with the in-process run.
async fn bench_node_screen(
    l: &mut crate::bench::node::Loaded,
    sizes: &BenchSizes,
    run: &crate::bench::screen::ScreenRun,
) -> Result<Vec<crate::bench::Figure>> {
    use crate::bench::{node, Better, Figure};
    let queries = node::queries(&l.known, sizes.queries, sizes.seed);
    let (stream, tokens, _) = l.stream(&queries).await?;
    let mut figures = node::stream_figures(sizes.indicators, stream, tokens, run.engine_rate);
    if let Some(redis) = run.redis_rate {
        figures.push(Figure::new(
            "screen: node MatchStream / Redis",
            stream / redis,
            "ratio",
            Some(1.0),
            Better::Higher,
        ));
    }
    Ok(figures)
}

async fn bench_latency(
    l: &mut crate::bench::node::Loaded,
    sizes: &BenchSizes,
    a: &LatencyArgs,
) -> Result<Vec<crate::bench::Figure>> {
    let queries = crate::bench::node::queries(&l.known, 100_000, sizes.seed);
    l.latency(&queries, a.rate, a.seconds, a.clients).await
}

async fn bench_replicate(sizes: &BenchSizes, load: &LoadArgs) -> Result<Vec<crate::bench::Figure>> {
    crate::bench::replicate::run(&crate::bench::replicate::ReplicateOptions {
        indicators: sizes.indicators,
        batch: sizes.batch,
        seed: sizes.seed,
        clients: load.load_clients,
        probes: load.probes,
    })
    .await
}

async fn rekey(a: RekeyArgs) -> Result<()> {
    let rows = a.input.read()?;
    let mut clients = a.conn.connect().await?;
    let mut total = proto::RekeyResponse::default();
    for chunk in rows.chunks(a.batch.max(1)) {
        let req = proto::RekeyRequest {
            identifiers: chunk.iter().map(identifier).collect(),
        };
        let r = clients
            .contribution
            .rekey(req)
            .await
            .map_err(status_error)?
            .into_inner();
        total.rekeyed += r.rekeyed;
        total.current += r.current;
        total.not_held += r.not_held;
        total.invalid += r.invalid;
        total.epoch = r.epoch;
    }
    println!(
        "epoch {}: rekeyed {}  already current {}  not held {}  invalid {}",
        total.epoch, total.rekeyed, total.current, total.not_held, total.invalid
    );
    Ok(())
}

use futures::StreamExt;

async fn match_command(a: MatchArgs) -> Result<()> {
    let rows = a.input.read()?;
    let mut clients = a.conn.connect().await?;
    if !a.input.is_bulk() && a.out.is_none() {
        let row = &rows[0];
        let identifiers = vec![proto::Identifier {
            kind: row.kind.map(convert::kind_to_proto).unwrap_or(0),
            value: row.value.clone(),
        }];
        let resp = match &a.remote {
            Some(peer) => {
                let req = proto::MatchRemoteRequest {
                    peer: peer.clone(),
                    identifiers,
                };
                with_retry(|| {
                    let mut s = clients.screening.clone();
                    let req = req.clone();
                    async move { s.match_remote(req).await.map(|r| r.into_inner()) }
                })
                .await?
            }
            None => clients
                .screening
                .r#match(proto::MatchRequest { identifiers })
                .await
                .map_err(status_error)?
                .into_inner(),
        };
        let r = resp.results.first().context("node sent no result")?;
        let rr = result_row(1, row.kind.map(|k| k.as_str()).unwrap_or("?"), r);
        println!("{}{}", rr.status, reason_suffix(&rr.invalid_reason));
        for h in &rr.hits {
            println!(
                "  origin={} case={:?} tier={} created={} valid_until={} epoch={}",
                h.origin,
                h.case_ref,
                h.tier,
                h.created_at,
                h.valid_until.as_deref().unwrap_or("never"),
                h.epoch
            );
        }
        return Ok(());
    }
    let mut out = Out::open(a.out.as_deref(), a.format)?;
    let s = bulk_match(
        &mut clients,
        rows,
        a.batch,
        &mut out,
        a.out.is_some(),
        a.remote.as_deref(),
    )
    .await?;
    out.finish()?;
    eprintln!(
        "items {}  matched {}  invalid {}  in {:.2}s ({:.0}/s)",
        s.items,
        s.matched,
        s.invalid,
        s.seconds,
        s.items as f64 / s.seconds.max(1e-9)
    );
    Ok(())
}

async fn status(conn: Conn, json: bool) -> Result<()> {
    let mut clients = conn.connect().await?;
    let s = clients
        .admin
        .status(proto::StatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let kind_name = |k: i32| convert::kind(k).map(|k| k.as_str()).unwrap_or("?");
    if json {
        let v = serde_json::json!({
            "node_id": s.node_id,
            "version": s.version,
            "uptime_seconds": s.uptime_seconds,
            "indicators": s.indicators,
            "by_kind": s.by_kind.iter().map(|k| (kind_name(k.kind).to_string(), k.count)).collect::<std::collections::BTreeMap<_, _>>(),
            "origins": s.origins.iter().map(|o| serde_json::json!({"origin": o.origin, "indicators": o.indicators, "last_seq": o.last_seq})).collect::<Vec<_>>(),
            "epochs": s.epochs.iter().map(|e| serde_json::json!({
                "id": e.id, "key_fingerprint": e.key_fingerprint, "valid_now": e.valid_now,
                "valid_from": format_time(e.valid_from.as_ref().map(|t| t.seconds).unwrap_or(0)),
                "valid_until": format_time(e.valid_until.as_ref().map(|t| t.seconds).unwrap_or(0)),
            })).collect::<Vec<_>>(),
            "store_bytes": s.store_bytes,
            "batches": s.batches,
            "trust_version": s.trust_version,
            "trust_expires_at": s.trust_expires_at.as_ref().map(|t| format_time(t.seconds)),
            "trust_members": s.trust_members,
            "peer_connections": s.peer_connections,
            "warnings": s.warnings,
            "own_log_ready": s.own_log_ready,
            "queries_served": s.queries_served.iter().map(|q| serde_json::json!({"member": q.member, "requests": q.requests, "prefixes": q.prefixes, "refused": q.refused})).collect::<Vec<_>>(),
            "member_requests_limited": s.member_requests_limited,
            "index_pending": s.index_pending,
            "peers": s.peers.iter().map(|p| serde_json::json!({
                "member": p.member, "connected": p.connected, "last_error": p.last_error,
                "last_pull": p.last_pull.as_ref().map(|t| format_time(t.seconds)),
                "origins": p.origins.iter().map(|o| serde_json::json!({"origin": o.origin, "peer_last_seq": o.peer_last_seq, "lag": o.lag})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "forks": s.forks.iter().map(|f| serde_json::json!({"origin": f.origin, "frozen_from_seq": f.frozen_from_seq})).collect::<Vec<_>>(),
            "peer_counters": s.peer_counters.iter().map(peer_counters_json).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("node        {} (cix {})", s.node_id, s.version);
    println!("uptime      {}s", s.uptime_seconds);
    println!("indicators  {}", s.indicators);
    for k in s.by_kind.iter().filter(|k| k.count > 0) {
        println!("  {:<13} {}", kind_name(k.kind), k.count);
    }
    for o in &s.origins {
        println!(
            "origin      {} indicators={} last_seq={}",
            o.origin, o.indicators, o.last_seq
        );
    }
    for e in &s.epochs {
        println!(
            "epoch       {} valid {}..{} now={} key sha256 {}",
            e.id,
            format_time(e.valid_from.as_ref().map(|t| t.seconds).unwrap_or(0)),
            format_time(e.valid_until.as_ref().map(|t| t.seconds).unwrap_or(0)),
            e.valid_now,
            e.key_fingerprint
        );
    }
    println!("store       {} bytes, {} batches", s.store_bytes, s.batches);
    if s.trust_version > 0 {
        println!(
            "trust list  version {} expires {} members {} peer connections {}",
            s.trust_version,
            format_time(s.trust_expires_at.as_ref().map(|t| t.seconds).unwrap_or(0)),
            s.trust_members,
            s.peer_connections
        );
    }
    if s.trust_version > 0 {
        println!(
            "own log     {}",
            if s.own_log_ready {
                "ready"
            } else {
                "waiting to confirm its head with a peer"
            }
        );
    }
    for p in &s.peers {
        let lag: u64 = p.origins.iter().map(|o| o.lag).sum();
        println!(
            "peer        {} {} lag {} last pull {}{}",
            p.member,
            if p.connected {
                "connected"
            } else {
                "disconnected"
            },
            lag,
            p.last_pull
                .as_ref()
                .map(|t| format_time(t.seconds))
                .unwrap_or_else(|| "never".into()),
            if p.last_error.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.last_error)
            }
        );
    }
    for f in &s.forks {
        println!(
            "FORK        origin {} signed two different batches; frozen from entry {}",
            f.origin, f.frozen_from_seq
        );
    }
    for q in &s.queries_served {
        println!(
            "queries     from {}: {} requests, {} prefixes answered, {} refused by limits",
            q.member, q.requests, q.prefixes, q.refused
        );
    }
    if s.member_requests_limited > 0 {
        println!(
            "limited     {} member-listener calls refused by the match limits",
            s.member_requests_limited
        );
    }
    if s.index_pending > 0 {
        println!(
            "index       {} changes not yet merged (merged once writes pause)",
            s.index_pending
        );
    }
    for c in &s.peer_counters {
        println!("counters    {}", peer_counters_line(c));
    }
    for w in &s.warnings {
        println!("WARNING     {w}");
    }
    Ok(())
}

fn reason_counts(r: &[proto::ReasonCount]) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|r| format!("{}={}", r.reason, r.count))
        .collect();
    parts.join(" ")
}

/// One peer's counters for `cix status`: only what is non-zero.
fn peer_counters_line(c: &proto::PeerCounters) -> String {
    let mut parts = Vec::new();
    if c.pulls > 0 {
        parts.push(format!("pulls {}", c.pulls));
    }
    for (what, r) in [
        ("batches", &c.batches),
        ("rejected", &c.batches_rejected),
        ("fork evidence", &c.fork_evidence),
        ("fork evidence rejected", &c.fork_evidence_rejected),
        ("sessions ended", &c.sessions_failed),
        ("requests refused", &c.requests_refused),
    ] {
        if !r.is_empty() {
            parts.push(format!("{what} {}", reason_counts(r)));
        }
    }
    if c.queries_answered > 0 {
        parts.push(format!(
            "queries answered {} ({} prefixes)",
            c.queries_answered, c.prefixes_answered
        ));
    }
    format!("{}: {}", c.member, parts.join("; "))
}

fn peer_counters_json(c: &proto::PeerCounters) -> serde_json::Value {
    let map = |r: &[proto::ReasonCount]| {
        r.iter()
            .map(|r| (r.reason.clone(), r.count))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    serde_json::json!({
        "member": c.member,
        "pulls": c.pulls,
        "batches": map(&c.batches),
        "batches_rejected": map(&c.batches_rejected),
        "fork_evidence": map(&c.fork_evidence),
        "fork_evidence_rejected": map(&c.fork_evidence_rejected),
        "sessions_failed": map(&c.sessions_failed),
        "requests_refused": map(&c.requests_refused),
        "queries_answered": c.queries_answered,
        "prefixes_answered": c.prefixes_answered,
    })
}
