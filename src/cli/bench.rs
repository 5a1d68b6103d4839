//! `cix bench`: the modes' flags and which measurements each runs. The
//! measuring is in [`crate::bench`]; this module only reads flags, runs the
//! parts in order and reports the figures.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::bench::{
    compaction, enumerate,
    node::{self, Loaded},
    replicate, report,
    screen::{self, ScreenRun},
    watch, Better, Figure,
};

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
    /// node afterwards (`cix serve --config PATH/node/node.toml`).
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

/// The continuous-screening run.
#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Watch entries the bank registers (the targets apply at 10,000,000).
    #[arg(long, default_value_t = 10_000_000)]
    pub watch_entries: usize,
    /// New indicators contributed once the entries are registered, checked
    /// against them.
    #[arg(long, default_value_t = 1_000_000)]
    pub checked: usize,
    /// Of the new indicators, how many are watched at the bank.
    #[arg(long, default_value_t = 1_000)]
    pub planted: usize,
}

/// The modes of `cix bench`.
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
    /// hits (`--hit-percent`); the in-process engine runs again with flood
    /// control counting every hit, as the node does.
    Screen {
        /// Sizes and output.
        #[command(flatten)]
        sizes: BenchSizes,
        /// The share of the screened identifiers that hit, percent (1 to
        /// 100): more hits, more for flood control to count.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
        hit_percent: u64,
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
        /// Sizes and output.
        #[command(flatten)]
        sizes: BenchSizes,
    },
    /// Memory: a real node process loaded with `--indicators`: resident
    /// memory, store bytes per indicator, cold start.
    Memory {
        /// Sizes and output.
        #[command(flatten)]
        sizes: BenchSizes,
    },
    /// Unary Screening.Match of one identifier over an established mTLS
    /// connection: p50/p99 at a fixed rate, and the throughput of concurrent
    /// unary clients.
    Latency {
        /// Sizes and output.
        #[command(flatten)]
        sizes: BenchSizes,
        /// The unary latency run.
        #[command(flatten)]
        latency: LatencyArgs,
    },
    /// Replication between real nodes (a liaison and two banks): a new node
    /// catching up on `--indicators`, then a new contribution timed to a
    /// match at a bank kept busy by screening clients.
    Replicate {
        /// Sizes and output.
        #[command(flatten)]
        sizes: BenchSizes,
        /// The freshness-under-load run.
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Unary Screening.Match p99 (at `--rate`, one identifier each) of a
    /// real node loaded with `--indicators` while it compacts its store
    /// (Admin.Compact), against the same node idle for `--seconds` before.
    Compaction {
        /// Sizes and output.
        #[command(flatten)]
        sizes: BenchSizes,
        /// The unary latency run (`--clients` is not used).
        #[command(flatten)]
        latency: LatencyArgs,
    },
    /// Continuous screening between real nodes (a liaison and a bank): the
    /// bank registers `--watch-entries` (rate, memory, cold start with and
    /// without them), the liaison contributes `--checked` new indicators
    /// (`--planted` of them watched) timed until their alerts are raised,
    /// then new contributions timed to their alerts at a client subscribed
    /// at the bank, kept busy by screening clients.
    Watch {
        /// Sizes and output.
        #[command(flatten)]
        sizes: BenchSizes,
        /// The continuous-screening run.
        #[command(flatten)]
        watch: WatchArgs,
        /// The freshness-under-load run.
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Every figure with a target: screen, ingest, latency, memory,
    /// replicate and watch, one table (not compaction: see its mode).
    All {
        /// Sizes and output.
        #[command(flatten)]
        sizes: BenchSizes,
        /// The continuous-screening run.
        #[command(flatten)]
        watch: WatchArgs,
        /// The unary latency run.
        #[command(flatten)]
        latency: LatencyArgs,
        /// The freshness-under-load run.
        #[command(flatten)]
        load: LoadArgs,
        /// Include the Redis comparison.
        #[arg(long)]
        vs_redis: bool,
    },
}

/// `cix bench ...`.
pub(super) async fn bench(b: BenchCommand) -> Result<()> {
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
            hit_percent,
            epochs,
            threads,
            vs_redis,
            in_process,
        } => {
            let hit_percent = hit_percent as usize;
            let run = bench_in_process(&sizes, hit_percent, epochs, threads, vs_redis).await?;
            let mut figures = run.figures.clone();
            if !in_process {
                let known = (sizes.queries * hit_percent / 100).min(sizes.indicators);
                let mut l = bench_load(&sizes, known).await?;
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
        BenchCommand::Compaction { sizes, latency } => {
            let mut l = bench_load(&sizes, 1_000).await?;
            let mut figures = vec![l.ingest_figure()];
            let queries = node::queries(&l.known, 100_000, sizes.seed);
            figures.extend(compaction::run(&mut l, &queries, latency.rate, latency.seconds).await?);
            l.stop().await?;
            report(&figures, sizes.json)
        }
        BenchCommand::Replicate { sizes, load } => {
            let figures = bench_replicate(&sizes, &load).await?;
            report(&figures, sizes.json)
        }
        BenchCommand::Watch { sizes, watch, load } => {
            let figures = bench_watch(&sizes, &watch, &load).await?;
            report(&figures, sizes.json)
        }
        BenchCommand::All {
            sizes,
            watch,
            latency,
            load,
            vs_redis,
        } => {
            let run = bench_in_process(&sizes, 1, 1, None, vs_redis).await?;
            let mut figures = run.figures.clone();
            let mut l = bench_load(&sizes, sizes.queries / 100).await?;
            figures.push(l.ingest_figure());
            figures.extend(bench_node_screen(&mut l, &sizes, &run).await?);
            figures.extend(bench_latency(&mut l, &sizes, &latency).await?);
            figures.extend(l.memory().await?);
            l.stop().await?;
            figures.extend(bench_replicate(&sizes, &load).await?);
            figures.extend(bench_watch(&sizes, &watch, &load).await?);
            report(&figures, sizes.json)
        }
    }
}

/// A node process loaded with `sizes.indicators`, `known` of them kept to
/// plant as hits.
async fn bench_load(sizes: &BenchSizes, known: usize) -> Result<Loaded> {
    Loaded::start(
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
    hit_percent: usize,
    epochs: u32,
    threads: Option<usize>,
    vs_redis: bool,
) -> Result<ScreenRun> {
    let o = screen::ScreenOptions {
        indicators: sizes.indicators,
        queries: sizes.queries,
        epochs,
        seed: sizes.seed,
        hit_percent,
        threads: threads.unwrap_or_else(screen::default_threads),
        vs_redis,
        batch: sizes.batch,
    };
    tokio::task::spawn_blocking(move || screen::run(&o)).await?
}

/// The loaded node's bulk screening, compared with the in-process run.
async fn bench_node_screen(
    l: &mut Loaded,
    sizes: &BenchSizes,
    run: &ScreenRun,
) -> Result<Vec<Figure>> {
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

async fn bench_latency(l: &mut Loaded, sizes: &BenchSizes, a: &LatencyArgs) -> Result<Vec<Figure>> {
    let queries = node::queries(&l.known, 100_000, sizes.seed);
    l.latency(&queries, a.rate, a.seconds, a.clients).await
}

async fn bench_replicate(sizes: &BenchSizes, load: &LoadArgs) -> Result<Vec<Figure>> {
    replicate::run(&replicate::ReplicateOptions {
        indicators: sizes.indicators,
        batch: sizes.batch,
        seed: sizes.seed,
        clients: load.load_clients,
        probes: load.probes,
    })
    .await
}

async fn bench_watch(sizes: &BenchSizes, w: &WatchArgs, load: &LoadArgs) -> Result<Vec<Figure>> {
    watch::run(
        &watch::WatchOptions {
            indicators: sizes.indicators,
            entries: w.watch_entries,
            checked: w.checked,
            planted: w.planted,
            batch: sizes.batch,
            seed: sizes.seed,
            clients: load.load_clients,
            probes: load.probes,
        },
        sizes.keep.as_deref(),
    )
    .await
}
