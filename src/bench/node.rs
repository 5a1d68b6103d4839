//! The node figures of `cix bench`: a real `cix serve` process on loopback,
//! measured from real mTLS clients. [`Loaded::start`] contributes the
//! synthetic indicators (the ingest figure: contributions of a batch each,
//! durably acknowledged); then bulk screening over `Screening.MatchStream`
//! and pre-hashed `Screening.MatchTokens` (1% hits), unary `Screening.Match`
//! latency at a fixed request rate and the throughput of concurrent unary
//! clients, and the node's resident memory, store bytes per indicator and
//! cold start (process start to a Status answer) on the filled store.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{screen::rss_of, Better, Figure};
use crate::{
    api::convert,
    client::{Clients, Identity},
    ident::{self, Kind},
    keys::TokenKey,
    proto,
    testbed::{
        init,
        process::{Launch, NodeProcess},
        synth::Synth,
    },
    token::Tokenizer,
};

/// Items per request message, at most.
const MAX_BATCH: usize = 10_000;

async fn connect(dir: &Path) -> Result<Clients> {
    Ok(Identity::from_dir(dir)?.connect().await?)
}

/// Contribution requests in flight: while the node signs, stores, flushes
/// and applies one batch (under its write lock), it normalizes and hashes
/// the next.
pub(crate) const INGEST_IN_FLIGHT: usize = 2;

/// Contributes `n` synthetic identifiers (seeded) through `c`, `batch` per
/// request under one case reference per 100,000, each acknowledged only once
/// durable, [`INGEST_IN_FLIGHT`] requests at a time, with the `plant`
/// identifiers in place of generated ones, spread evenly. Returns about
/// `want_known` of the generated ones (spread evenly) and the rate.
pub(crate) async fn contribute(
    c: &mut Clients,
    n: usize,
    seed: u64,
    batch: usize,
    want_known: usize,
    plant: &[(Kind, String)],
) -> Result<(Vec<(Kind, String)>, f64)> {
    use futures::StreamExt;
    let batch = batch.clamp(1, MAX_BATCH);
    let mut synth = Synth::new(seed);
    let mut known = Vec::new();
    let stride = (n / want_known.max(1)).max(1);
    let plant_stride = (n / plant.len().max(1)).max(1);
    let mut requests = Vec::with_capacity(n.div_ceil(batch));
    let mut done = 0;
    while done < n {
        let m = (n - done).min(batch);
        let items = (0..m)
            .map(|i| {
                let at = done + i;
                let (k, v) = synth.any(at);
                let (k, v) = match plant.get(at / plant_stride) {
                    Some(p) if at % plant_stride == plant_stride / 2 => p.clone(),
                    _ => (k, v),
                };
                if known.len() < want_known && at % stride == 0 {
                    known.push((k, v.clone()));
                }
                proto::ContributionItem {
                    item: Some(proto::contribution_item::Item::Identifier(
                        convert::identifier_of(k, &v),
                    )),
                }
            })
            .collect();
        requests.push(proto::ContributeRequest {
            items,
            case_ref: format!("BENCH-{}", done / 100_000),
            tier: proto::Tier::Confirmed as i32,
            valid_until: None,
        });
        done += m;
    }
    let start = Instant::now();
    let mut answers = futures::stream::iter(requests)
        .map(|r| {
            let mut c = c.clone();
            async move { c.contribution.contribute(r).await }
        })
        .buffer_unordered(INGEST_IN_FLIGHT);
    while let Some(a) = answers.next().await {
        a.context("contributing")?;
    }
    Ok((known, n as f64 / start.elapsed().as_secs_f64().max(1e-9)))
}

/// Contributes one identifier as a case of its own (confirmed, no
/// expiry), durably acknowledged.
pub(crate) async fn contribute_one(
    c: &mut Clients,
    (kind, value): &(Kind, String),
    case_ref: &str,
) -> Result<()> {
    c.contribution
        .contribute(proto::ContributeRequest {
            items: vec![proto::ContributionItem {
                item: Some(proto::contribution_item::Item::Identifier(
                    convert::identifier_of(*kind, value),
                )),
            }],
            case_ref: case_ref.to_string(),
            tier: proto::Tier::Confirmed as i32,
            valid_until: None,
        })
        .await
        .context("contributing")?;
    Ok(())
}

/// Waits (bounded) until the node has merged its index after an ingest, as
/// it does once writes pause: screening is measured in that steady state.
pub(crate) async fn settle(c: &mut Clients) -> Result<()> {
    let start = Instant::now();
    while c
        .admin
        .status(proto::StatusRequest {})
        .await?
        .into_inner()
        .index_pending
        > 0
    {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "the node did not merge its index within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `total` queries: the `known` ones spread through fresh identifiers.
pub(crate) fn queries(known: &[(Kind, String)], total: usize, seed: u64) -> Vec<(Kind, String)> {
    let mut q: Vec<(Kind, String)> = known.iter().take(total).cloned().collect();
    let hits = q.len();
    let mut fresh = Synth::new(seed ^ 0x5eed);
    while q.len() < total {
        q.push(fresh.any(q.len()));
    }
    let len = q.len();
    for i in 0..hits {
        q.swap(i, (i * 7919) % len);
    }
    q
}

/// Reads a stream of answers to its end; returns how many items matched.
async fn matches_in(mut s: tonic::Streaming<proto::MatchResponse>) -> Result<usize> {
    let mut n = 0;
    while let Some(r) = s.message().await? {
        n += r
            .results
            .iter()
            .filter(|x| x.status == proto::MatchStatus::Match as i32)
            .count();
    }
    Ok(n)
}

/// A node process loaded with synthetic indicators, and a client of it.
pub(crate) struct Loaded {
    /// The temporary directory holding `dir`, unless it is kept.
    _tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    launch: Launch,
    node: NodeProcess,
    /// Clients of the node (new ones after the cold start of [`Loaded::memory`]).
    pub clients: Clients,
    /// Indicators contributed.
    pub indicators: usize,
    /// Contributed identifiers to plant as hits (1% of `queries`).
    pub known: Vec<(Kind, String)>,
    /// Indicators per second of the contribution, each request durably acknowledged.
    pub ingest_rate: f64,
    /// Items per request message: the `batch` given to [`Loaded::start`], at
    /// most 10,000.
    pub batch: usize,
}

impl Loaded {
    /// Starts a node in a temporary directory (or in `keep`, created and
    /// left behind) and contributes `indicators` synthetic identifiers,
    /// `batch` per request.
    pub(crate) async fn start(
        indicators: usize,
        want_known: usize,
        seed: u64,
        batch: usize,
        keep: Option<&Path>,
    ) -> Result<Loaded> {
        let (tmp, root) = match keep {
            Some(root) => {
                anyhow::ensure!(
                    !root.exists(),
                    "{} already exists; --keep takes a new path",
                    root.display()
                );
                std::fs::create_dir_all(root)?;
                (None, root.to_path_buf())
            }
            None => {
                let tmp = tempfile::tempdir()?;
                let root = tmp.path().to_path_buf();
                (Some(tmp), root)
            }
        };
        let dir = root.join("node");
        let made = init::init(
            &dir,
            &init::InitOptions {
                node_id: "bench-node",
                listen: "127.0.0.1:0",
                ..Default::default()
            },
        )?;
        let launch = Launch::new(&made.config, &root.join("node.log"));
        let node = NodeProcess::start_async(launch.clone()).await?;
        let mut clients = connect(&dir).await?;
        let (known, ingest_rate) =
            contribute(&mut clients, indicators, seed, batch, want_known, &[]).await?;
        settle(&mut clients).await?;
        Ok(Loaded {
            _tmp: tmp,
            dir,
            launch,
            node,
            clients,
            indicators,
            known,
            ingest_rate,
            batch: batch.clamp(1, MAX_BATCH),
        })
    }

    /// Another connection to the node.
    pub(crate) async fn connect(&self) -> Result<Clients> {
        connect(&self.dir).await
    }

    /// The ingest figure: indicators per second, durably acknowledged.
    pub(crate) fn ingest_figure(&self) -> Figure {
        Figure::new(
            format!(
                "ingest: durably acknowledged ({} per request, {INGEST_IN_FLIGHT} in flight)",
                self.batch
            ),
            self.ingest_rate,
            "indicators/s",
            Some(200_000.0),
            Better::Higher,
        )
    }

    /// Bulk screening of `queries` over one `MatchStream` and the same
    /// identifiers pre-hashed over one `MatchTokens`; checks both find the
    /// same hits. Returns (identifiers/s, tokens/s, hits).
    pub(crate) async fn stream(&mut self, queries: &[(Kind, String)]) -> Result<(f64, f64, usize)> {
        let requests: Vec<proto::MatchRequest> = queries
            .chunks(self.batch)
            .map(|ch| proto::MatchRequest {
                identifiers: ch
                    .iter()
                    .map(|(k, v)| convert::identifier_of(*k, v))
                    .collect(),
            })
            .collect();
        let start = Instant::now();
        let s = self
            .clients
            .screening
            .match_stream(futures::stream::iter(requests))
            .await?;
        let matched = matches_in(s.into_inner()).await?;
        let stream_rate = queries.len() as f64 / start.elapsed().as_secs_f64().max(1e-9);

        let key = TokenKey::load(&self.dir.join("keys/epoch-1.key"))?;
        let tokenizer = Tokenizer::new(&key);
        let mut buf = Vec::new();
        let tokens: Vec<u8> = queries
            .iter()
            .filter_map(|(k, v)| {
                ident::normalize_into(*k, v, &mut buf).ok()?;
                Some(tokenizer.token(*k, &buf).0)
            })
            .flatten()
            .collect();
        let requests: Vec<proto::MatchTokensRequest> = tokens
            .chunks(32 * self.batch)
            .map(|ch| proto::MatchTokensRequest {
                tokens: ch.to_vec(),
            })
            .collect();
        let start = Instant::now();
        let s = self
            .clients
            .screening
            .match_tokens(futures::stream::iter(requests))
            .await?;
        let token_matches = matches_in(s.into_inner()).await?;
        let tokens_rate = (tokens.len() / 32) as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let planted = self.known.len().min(queries.len());
        anyhow::ensure!(
            matched == token_matches && matched >= planted,
            "identifiers matched {matched}, tokens {token_matches}, planted {planted}"
        );
        Ok((stream_rate, tokens_rate, matched))
    }

    /// Unary `Screening.Match` of one identifier: the latency of each request
    /// over one established connection, sent at `rate` per second for
    /// `seconds` (measured from the send: the runtime's timer wakes the
    /// sender up to a millisecond late, which is the client's delay, not the
    /// node's; an answer slower than the interval delays the next send, and
    /// shows in the figures as itself), then the throughput of `clients`
    /// concurrent clients, each on its own connection, for `seconds`.
    pub(crate) async fn latency(
        &mut self,
        queries: &[(Kind, String)],
        rate: u32,
        seconds: f64,
        clients: usize,
    ) -> Result<Vec<Figure>> {
        let one = |i: usize| proto::MatchRequest {
            identifiers: vec![convert::identifier_of(
                queries[i % queries.len()].0,
                &queries[i % queries.len()].1,
            )],
        };
        let paced = unary_requests(queries, 1000);
        let n = ((f64::from(rate) * seconds) as usize).max(1);
        let latencies = self.paced(paced, rate, n, None).await?;
        let (p50, p99, max) = (
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
        );

        let mut conns = Vec::with_capacity(clients);
        for _ in 0..clients {
            conns.push(self.connect().await?);
        }
        let run_for = Duration::from_secs_f64(seconds);
        let start = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(c, mut cl)| {
                let qs: Vec<proto::MatchRequest> = (0..1000).map(|i| one(c * 1000 + i)).collect();
                tokio::spawn(async move {
                    let mut done = 0usize;
                    while start.elapsed() < run_for {
                        cl.screening.r#match(qs[done % qs.len()].clone()).await?;
                        done += 1;
                    }
                    anyhow::Ok(done)
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        let throughput = total as f64 / start.elapsed().as_secs_f64();
        Ok(vec![
            Figure::new(
                format!("latency: unary Match p50 at {rate} requests/s"),
                p50,
                "µs",
                Some(250.0),
                Better::Lower,
            ),
            Figure::new(
                format!("latency: unary Match p99 at {rate} requests/s"),
                p99,
                "µs",
                Some(1000.0),
                Better::Lower,
            ),
            Figure::new(
                format!("latency: unary Match max at {rate} requests/s"),
                max,
                "µs",
                None,
                Better::Lower,
            ),
            Figure::new(
                format!("latency: unary Match, {clients} concurrent clients"),
                throughput,
                "requests/s",
                None,
                Better::Higher,
            ),
        ])
    }

    /// Latencies of unary `Screening.Match` requests (`paced`, in turn)
    /// sent at `rate` per second over one established connection, sorted:
    /// `n` of them, or, given `until`, as many as are sent before it is set.
    /// The paced client runs alone on one thread (a current-thread
    /// runtime), as a latency-minded caller would: no hand-offs between the
    /// client's own threads in the measurement.
    pub(crate) async fn paced(
        &self,
        paced: Vec<proto::MatchRequest>,
        rate: u32,
        n: usize,
        until: Option<Arc<AtomicBool>>,
    ) -> Result<Vec<Duration>> {
        let dir = self.dir.clone();
        let mut latencies = tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let mut c = connect(&dir).await?;
                // Warm the connection up.
                for r in paced.iter().take(100) {
                    c.screening.r#match(r.clone()).await?;
                }
                let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
                let mut latencies = Vec::with_capacity(n);
                let start = tokio::time::Instant::now();
                for i in 0.. {
                    let done = match &until {
                        // At least one Match is timed, however soon the
                        // flag comes (a tiny store compacts in no time).
                        Some(flag) => i > 0 && flag.load(Ordering::Acquire),
                        None => i >= n,
                    };
                    if done {
                        break;
                    }
                    tokio::time::sleep_until(start + interval * i as u32).await;
                    let r = paced[i % paced.len()].clone();
                    let sent = Instant::now();
                    c.screening.r#match(r).await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .await??;
        anyhow::ensure!(!latencies.is_empty(), "no Match was timed");
        latencies.sort();
        Ok(latencies)
    }

    /// Resident memory and store bytes now, then cold start: the node is
    /// stopped and started again on its store, timed to its first Status
    /// answer, and its resident memory then.
    pub(crate) async fn memory(&mut self) -> Result<Vec<Figure>> {
        let pid = self.node.pid().context("node pid")?;
        let rss = rss_of(pid);
        let status = self
            .clients
            .admin
            .status(proto::StatusRequest {})
            .await?
            .into_inner();
        self.node.stop_async().await?.clean()?;
        let start = Instant::now();
        self.node = NodeProcess::start_async(self.launch.clone()).await?;
        self.clients = connect(&self.dir).await?;
        let after = self
            .clients
            .admin
            .status(proto::StatusRequest {})
            .await?
            .into_inner();
        let cold = start.elapsed().as_secs_f64();
        let rss_restarted = rss_of(self.node.pid().context("node pid")?);
        anyhow::ensure!(
            after.indicators == status.indicators,
            "after a restart the node holds {} indicators, before {}",
            after.indicators,
            status.indicators
        );
        let n = self.indicators;
        let per = |v: f64| v / n.max(1) as f64;
        Ok(vec![
            Figure::new(
                format!("memory: node resident ({n} indicators)"),
                rss as f64 / (1024.0 * 1024.0),
                "MiB",
                (n >= 10_000_000).then_some(1024.0),
                Better::Lower,
            ),
            Figure::new(
                "memory: node resident per indicator",
                per(rss as f64),
                "bytes",
                None,
                Better::Lower,
            ),
            Figure::new(
                format!("memory: node resident after a cold start ({n} indicators)"),
                rss_restarted as f64 / (1024.0 * 1024.0),
                "MiB",
                (n >= 10_000_000).then_some(1024.0),
                Better::Lower,
            ),
            Figure::new(
                "memory: store on disk per indicator",
                per(status.store_bytes as f64),
                "bytes",
                Some(100.0),
                Better::Lower,
            ),
            Figure::new(
                format!("memory: cold start ({n} indicators)"),
                cold,
                "s",
                (n >= 10_000_000).then_some(5.0),
                Better::Lower,
            ),
        ])
    }

    /// Stops the node (SIGTERM); fails unless it exited 0.
    pub(crate) async fn stop(mut self) -> Result<()> {
        self.node.stop_async().await?.clean()?;
        Ok(())
    }
}

/// `n` unary Match requests of one identifier each, the queries in turn.
pub(crate) fn unary_requests(queries: &[(Kind, String)], n: usize) -> Vec<proto::MatchRequest> {
    (0..n)
        .map(|i| {
            let (k, v) = &queries[i % queries.len()];
            proto::MatchRequest {
                identifiers: vec![convert::identifier_of(*k, v)],
            }
        })
        .collect()
}

/// The `p` quantile of sorted `latencies`, in µs.
pub(crate) fn percentile(latencies: &[Duration], p: f64) -> f64 {
    latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e6
}

/// Figures of the node's bulk screening, with the in-process engine rate
/// measured in the same run for the ratio.
pub(crate) fn stream_figures(
    n: usize,
    stream_rate: f64,
    tokens_rate: f64,
    engine_rate: f64,
) -> Vec<Figure> {
    vec![
        Figure::new(
            format!("screen: node MatchStream over mTLS ({n} indicators, 1% hits)"),
            stream_rate,
            "identifiers/s",
            Some(2_000_000.0),
            Better::Higher,
        ),
        Figure::new(
            "screen: node MatchStream / in-process engine",
            stream_rate / engine_rate.max(1e-9),
            "ratio",
            Some(0.4),
            Better::Higher,
        ),
        Figure::new(
            "screen: node MatchTokens over mTLS",
            tokens_rate,
            "tokens/s",
            Some(4_000_000.0),
            Better::Higher,
        ),
    ]
}
