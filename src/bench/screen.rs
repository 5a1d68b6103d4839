//! `cix bench screen`: the in-process match engine against a minimal
//! reference loop doing the same work (normalize with the same `ident`
//! code, HMAC-SHA256 under every valid epoch with the same pre-keyed
//! states, look-up in a plain hash map keyed by the token's first 8 bytes),
//! both on every core, in the same run. Mixed kinds of synthetic
//! identifiers (valid IBANs and PANs with check digits, etc.), 1% hits
//! (`--hit-percent`). The engine runs once more with every hit counted by
//! flood control as the node counts it ([`crate::flood`]), so the cost of
//! counting shows beside the engine alone.

use std::{collections::HashMap, hash::BuildHasherDefault, sync::Arc, time::Instant};

use parking_lot::RwLock;

use super::{cores, Better, Figure};
use crate::{
    batch,
    epochs::{Epoch, KeyRing, Keys},
    flood::{Flood, Thresholds},
    ident::{self, Kind},
    index::{Index, TokenHasher},
    keys::{signing::SigningKeyFile, TokenKey},
    outcome::NoFeedback,
    proto::{BatchHeader, LogOp},
    screening::{subject, Engine, Outcome},
    testbed::synth::Synth,
    time::system_now,
    token::{Token, Tokenizer},
};

/// What the in-process run of `cix bench screen` does.
pub struct ScreenOptions {
    /// Indicators in the index.
    pub indicators: usize,
    /// Identifiers screened, `hit_percent` of them hits.
    pub queries: usize,
    /// The share of the screened identifiers that hit, percent (1 to 100).
    pub hit_percent: usize,
    /// Valid key epochs (at least 1); the indicators are under the newest.
    pub epochs: u32,
    /// Seed of the synthetic identifiers.
    pub seed: u64,
    /// Worker threads of the engine and of the reference loop.
    pub threads: usize,
    /// Also run the workload through a Redis set (`redis-server` needed).
    pub vs_redis: bool,
    /// Items per Redis command (the node's message size).
    pub batch: usize,
}

/// What one run measured: its figures, and the rates other figures compare with.
pub struct ScreenRun {
    /// Every figure of the run, in table order.
    pub figures: Vec<Figure>,
    /// Identifiers per second through the in-process engine.
    pub engine_rate: f64,
    /// Identifiers per second through Redis, with `vs_redis`.
    pub redis_rate: Option<f64>,
}

/// What `--vs-redis` says when the Redis client was left out of the build.
#[cfg(not(feature = "redis-bench"))]
pub const NO_REDIS: &str = "cix was built without the redis-bench feature; \
    --vs-redis needs it: rebuild without --no-default-features, or with --features redis-bench";

/// Identifiers per engine call and per reference batch.
const CHUNK: usize = 5_000;

/// Builds the index and the queries: `indicators` synthetic identifiers
/// contributed under the newest epoch, `queries` of which `hit_percent`% are among them.
fn setup(o: &ScreenOptions, now: i64) -> (Engine, Vec<Epoch>, Vec<(Kind, String)>) {
    let epochs: Vec<Epoch> = (1..=o.epochs.max(1))
        .map(|id| {
            let key = TokenKey::generate();
            Epoch {
                id,
                valid_from: now - 86_400 + i64::from(id),
                valid_until: now + 86_400,
                fingerprint: key.fingerprint(),
                tokenizer: Tokenizer::new(&key),
            }
        })
        .collect();
    let newest = epochs.last().expect("an epoch");
    let mut synth = Synth::new(o.seed);
    let mut index = Index::new();
    let signer = SigningKeyFile::generate();
    let mut known: Vec<(Kind, String)> = Vec::new();
    let mut buf = Vec::new();
    let want = o.queries * o.hit_percent.clamp(1, 100) / 100;
    let stride = (o.indicators / want.max(1)).max(1);
    let mut seq = 1u64;
    let mut n = 0usize;
    while n < o.indicators {
        let m = (o.indicators - n).min(10_000);
        let entries = (0..m)
            .map(|i| {
                let (k, v) = synth.any(n + i);
                ident::normalize_into(k, &v, &mut buf).expect("valid synthetic");
                let t = newest.tokenizer.token(k, &buf);
                if known.len() < want && (n + i) % stride == 0 {
                    known.push((k, v));
                }
                batch::entry(&t, i32::from(k.code()), newest.id)
            })
            .collect();
        index
            .apply(&signed_add(
                seq,
                &format!("BENCH-{}", n / 10_000),
                entries,
                &signer,
            ))
            .expect("a valid batch");
        seq += m as u64;
        n += m;
    }
    let hits = want.min(known.len());
    let mut queries: Vec<(Kind, String)> = known.into_iter().take(hits).collect();
    let mut fresh = Synth::new(o.seed ^ 0x5eed);
    while queries.len() < o.queries {
        let (k, v) = fresh.any(queries.len());
        queries.push((k, v));
    }
    // Spread the hits through the workload.
    let len = queries.len();
    for i in 0..hits {
        queries.swap(i, (i * 7919) % len);
    }
    index.merge();
    let ring = KeyRing::new(epochs.clone());
    let engine = Engine::new(Arc::new(RwLock::new(index)), Keys::new(ring));
    (engine, epochs, queries)
}

/// A signed batch adding `entries` (confirmed, made now) to the log of
/// the benchmarks' origin, from `first_seq`.
pub fn signed_add(
    first_seq: u64,
    case_ref: &str,
    entries: Vec<crate::proto::LogEntry>,
    signer: &SigningKeyFile,
) -> crate::batch::Batch {
    let header = BatchHeader {
        origin: "bench-origin".into(),
        first_seq,
        // Synthetic data: any reading of the clock will do.
        created_unix: crate::time::Clock::system().now(),
        op: LogOp::Add as i32,
        case_ref: case_ref.into(),
        tier: 1,
        ..Default::default()
    };
    batch::sign(header, entries, signer)
}

fn on_threads<F>(queries: &[(Kind, String)], threads: usize, f: F) -> (f64, usize)
where
    F: Fn(&[(Kind, String)]) -> usize + Sync,
{
    let per = queries.len().div_ceil(threads.max(1)).max(1);
    let start = Instant::now();
    let hits = std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = queries
            .chunks(per)
            .map(|part| s.spawn(move || part.chunks(CHUNK).map(f).sum::<usize>()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).sum()
    });
    (
        queries.len() as f64 / start.elapsed().as_secs_f64().max(1e-9),
        hits,
    )
}

/// Runs the comparison and returns its figures.
pub fn run(o: &ScreenOptions) -> anyhow::Result<ScreenRun> {
    // Refused before any work, not after the setup.
    #[cfg(not(feature = "redis-bench"))]
    anyhow::ensure!(!o.vs_redis, NO_REDIS);
    let t = Instant::now();
    let rss_before = rss_bytes();
    let (engine, epochs, queries) = setup(o, system_now()?);
    let setup_secs = t.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    // The queries (strings) are part of the growth; count them out.
    let query_bytes: usize = queries.iter().map(|(_, v)| v.capacity() + 32).sum();
    let per_indicator = (rss_after.saturating_sub(rss_before) as f64 - query_bytes as f64).max(0.0)
        / o.indicators.max(1) as f64;
    let now = system_now()?;

    // The reference: the same tokens in a plain map.
    let mut reference: HashMap<Token, u32, BuildHasherDefault<TokenHasher>> = HashMap::default();
    {
        let index = engine.index().read();
        let mut i = 0u32;
        index.for_each_token(|t| {
            reference.insert(*t, i);
            i += 1;
        });
    }
    let tokenizers: Vec<&Tokenizer> = epochs.iter().map(|e| &e.tokenizer).collect();
    let (ref_rate, ref_hits) = on_threads(&queries, o.threads, |chunk| {
        let mut buf = Vec::with_capacity(128);
        let mut tokens: Vec<Token> = Vec::with_capacity(64 * tokenizers.len());
        let mut hits = 0;
        for batch in chunk.chunks(64) {
            tokens.clear();
            for (k, v) in batch {
                if ident::normalize_into(*k, v, &mut buf).is_ok() {
                    tokens.extend(tokenizers.iter().map(|t| t.token(*k, &buf)));
                }
            }
            hits += tokens.iter().filter(|t| reference.contains_key(*t)).count();
        }
        hits
    });
    let (engine_rate, engine_hits) = on_threads(&queries, o.threads, |chunk| {
        engine
            .match_identifiers(chunk.iter().map(|(k, v)| (Ok(*k), v.as_str())), now)
            .iter()
            .filter(|o| matches!(o, Outcome::Match(_)))
            .count()
    });
    assert_eq!(engine_hits, ref_hits, "engine and reference disagree");
    // The same with every hit counted by flood control, as the node's
    // screening service does (a store of its own, never flushed here).
    let flood_dir = tempfile::tempdir()?;
    let flood = Flood::open(
        flood_dir.path(),
        Thresholds::default(),
        Arc::new(NoFeedback),
        now,
    )?;
    let (flood_rate, _) = on_threads(&queries, o.threads, |chunk| {
        let out = engine.match_identifiers(chunk.iter().map(|(k, v)| (Ok(*k), v.as_str())), now);
        let mut hits = 0;
        for o in &out {
            if let Outcome::Match(h) = o {
                hits += 1;
                for i in h {
                    flood.hit(subject(i), now);
                }
            }
        }
        hits
    });
    let heap = engine.index().read().heap_bytes();
    #[cfg(not(feature = "redis-bench"))]
    let redis: Option<(f64, u64)> = None;
    #[cfg(feature = "redis-bench")]
    let mut redis = None;
    #[cfg(feature = "redis-bench")]
    if o.vs_redis {
        anyhow::ensure!(
            super::redis::RedisServer::available(),
            "--vs-redis needs redis-server: run scripts/install-redis.sh"
        );
        let server = super::redis::RedisServer::start()?;
        let mut tokens = Vec::with_capacity(o.indicators);
        engine.index().read().for_each_token(|t| tokens.push(*t));
        let memory = server.load(&tokens)?;
        drop(tokens);
        let newest = &epochs.last().expect("an epoch").tokenizer;
        let (rate, hits) = server.screen(newest, &queries, o.batch)?;
        anyhow::ensure!(
            hits == engine_hits,
            "Redis found {hits} hits, the engine {engine_hits}"
        );
        redis = Some((rate, memory));
    }
    let mut figures = vec![
        Figure::new(
            format!(
                "screen: setup ({} indicators, {} epochs)",
                o.indicators, o.epochs
            ),
            setup_secs,
            "s",
            None,
            Better::Lower,
        ),
        Figure::new(
            "screen: index heap per indicator (accounted)",
            heap as f64 / o.indicators.max(1) as f64,
            "bytes",
            Some(1024.0 * 1024.0 * 1024.0 / 10_000_000.0),
            Better::Lower,
        ),
        // The benchmark's own process, holding the synthetic identifiers and
        // the reference map too: for information; the memory target is the
        // node's (`cix bench memory`).
        Figure::new(
            "screen: bench process RSS growth per indicator (incl. setup garbage)",
            per_indicator,
            "bytes",
            None,
            Better::Lower,
        ),
        Figure::new(
            format!("screen: in-process engine ({} threads)", o.threads),
            engine_rate,
            "identifiers/s",
            None,
            Better::Higher,
        ),
        Figure::new(
            format!(
                "screen: in-process engine + flood counting ({} threads)",
                o.threads
            ),
            flood_rate,
            "identifiers/s",
            None,
            Better::Higher,
        ),
        Figure::new(
            "screen: with flood counting / without",
            flood_rate / engine_rate,
            "ratio",
            None,
            Better::Higher,
        ),
        Figure::new(
            format!("screen: reference loop ({} threads)", o.threads),
            ref_rate,
            "identifiers/s",
            None,
            Better::Higher,
        ),
        Figure::new(
            "screen: engine / reference",
            engine_rate / ref_rate,
            "ratio",
            Some(0.8),
            Better::Higher,
        ),
        Figure::new(
            format!("screen: hits found ({}% planted)", o.hit_percent),
            engine_hits as f64,
            "identifiers",
            None,
            Better::Higher,
        ),
    ];
    if let Some((rate, memory)) = redis {
        figures.push(Figure::new(
            format!(
                "screen: Redis set, client hashes, pipelined SMISMEMBER of {} ({} connections)",
                o.batch, o.threads
            ),
            rate,
            "identifiers/s",
            None,
            Better::Higher,
        ));
        figures.push(Figure::new(
            "screen: Redis memory per indicator",
            memory as f64 / o.indicators.max(1) as f64,
            "bytes",
            None,
            Better::Lower,
        ));
    }
    Ok(ScreenRun {
        figures,
        engine_rate,
        redis_rate: redis.map(|r| r.0),
    })
}

/// Resident set size of this process (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    rss_at("/proc/self/status")
}

/// Resident set size of process `pid` (Linux; 0 elsewhere).
pub fn rss_of(pid: u32) -> u64 {
    rss_at(&format!("/proc/{pid}/status"))
}

fn rss_at(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Default worker threads: every core.
pub fn default_threads() -> usize {
    cores()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_and_reference_agree_on_a_small_workload() {
        let run = run(&ScreenOptions {
            indicators: 5_000,
            queries: 20_000,
            epochs: 2,
            seed: 1,
            hit_percent: 1,
            threads: 2,
            vs_redis: false,
            batch: 1_000,
        })
        .unwrap();
        let hits = run.figures.last().unwrap().value;
        assert!(hits >= 150.0, "about 1% of 20,000 planted, got {hits}");
    }
}
