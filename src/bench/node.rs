//! `cix bench node`: a real `cix serve` process on loopback, measured from
//! a real mTLS client: ingest (contributions durably acknowledged), bulk
//! screening over `Screening.MatchStream` and pre-hashed
//! `Screening.MatchTokens`, the node's resident memory and store bytes per
//! indicator, and cold start (process start to a Status answer) on the
//! filled store. Synthetic identifiers of every kind, 1% hits.

use std::{path::Path, time::Instant};

use anyhow::{Context, Result};

use super::{screen::rss_of, Better, Figure};
use crate::{
    cli::{demo::Node, init},
    client::{Clients, Identity},
    ident::{self, Kind},
    proto,
    synth::Synth,
    token::{TokenKey, Tokenizer},
};

pub struct NodeOptions {
    pub indicators: usize,
    pub queries: usize,
    pub seed: u64,
    /// Items per request message.
    pub batch: usize,
}

fn identifier(k: Kind, v: &str) -> proto::Identifier {
    proto::Identifier {
        kind: i32::from(k.code()),
        value: v.to_string(),
    }
}

async fn connect(dir: &Path) -> Result<Clients> {
    Ok(Identity::from_dir(dir)?.connect().await?)
}

pub async fn run(o: &NodeOptions) -> Result<Vec<Figure>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("node");
    let made = init::init(
        &dir,
        &init::InitOptions {
            node_id: "bench-node",
            listen: "127.0.0.1:0",
            ..Default::default()
        },
    )?;
    let log = tmp.path().join("node.log");
    let mut node = Node::start(&made.config, &log).await?;
    let mut c = connect(&dir).await?;
    let batch = o.batch.clamp(1, 10_000);

    // Ingest: contributions of `batch` items, each flushed before its answer.
    let mut synth = Synth::new(o.seed);
    let mut known = Vec::new();
    let want_hits = o.queries / 100;
    let stride = (o.indicators / want_hits.max(1)).max(1);
    let start = Instant::now();
    let mut n = 0;
    while n < o.indicators {
        let m = (o.indicators - n).min(batch);
        let items = (0..m)
            .map(|i| {
                let (k, v) = synth.any(n + i);
                if known.len() < want_hits && (n + i) % stride == 0 {
                    known.push((k, v.clone()));
                }
                proto::ContributionItem {
                    item: Some(proto::contribution_item::Item::Identifier(identifier(
                        k, &v,
                    ))),
                }
            })
            .collect();
        c.contribution
            .contribute(proto::ContributeRequest {
                items,
                case_ref: format!("BENCH-{}", n / 100_000),
                tier: proto::Tier::Confirmed as i32,
                valid_until: None,
            })
            .await
            .context("contributing")?;
        n += m;
    }
    let ingest = o.indicators as f64 / start.elapsed().as_secs_f64().max(1e-9);
    let pid = node.pid().context("node pid")?;
    let rss = rss_of(pid);
    let status = c.admin.status(proto::StatusRequest {}).await?.into_inner();

    // Queries: 1% known, the rest fresh.
    let mut queries: Vec<(Kind, String)> = known;
    let mut fresh = Synth::new(o.seed ^ 0x5eed);
    while queries.len() < o.queries {
        queries.push(fresh.any(queries.len()));
    }
    let requests: Vec<proto::MatchRequest> = queries
        .chunks(batch)
        .map(|ch| proto::MatchRequest {
            identifiers: ch.iter().map(|(k, v)| identifier(*k, v)).collect(),
        })
        .collect();
    let start = Instant::now();
    let mut s = c
        .screening
        .match_stream(futures::stream::iter(requests))
        .await?
        .into_inner();
    let mut matched = 0usize;
    while let Some(r) = s.message().await? {
        matched += r
            .results
            .iter()
            .filter(|x| x.status == proto::MatchStatus::Match as i32)
            .count();
    }
    let stream_rate = queries.len() as f64 / start.elapsed().as_secs_f64().max(1e-9);

    // Pre-hashed tokens under the node's own key.
    let key = TokenKey::load(&dir.join("keys/epoch-1.key"))?;
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
    let n_tokens = tokens.len() / 32;
    let token_requests: Vec<proto::MatchTokensRequest> = tokens
        .chunks(32 * batch)
        .map(|ch| proto::MatchTokensRequest {
            tokens: ch.to_vec(),
        })
        .collect();
    let start = Instant::now();
    let mut s = c
        .screening
        .match_tokens(futures::stream::iter(token_requests))
        .await?
        .into_inner();
    let mut token_matches = 0usize;
    while let Some(r) = s.message().await? {
        token_matches += r
            .results
            .iter()
            .filter(|x| x.status == proto::MatchStatus::Match as i32)
            .count();
    }
    let tokens_rate = n_tokens as f64 / start.elapsed().as_secs_f64().max(1e-9);
    anyhow::ensure!(
        matched == token_matches && matched >= want_hits.min(o.indicators),
        "identifiers matched {matched}, tokens {token_matches}, planted {want_hits}"
    );

    // Cold start on the filled store.
    drop(c);
    node.stop().await?;
    let addr = dir.join("data").join(crate::server::MEMBER_ADDR_FILE);
    let _ = std::fs::remove_file(&addr);
    let start = Instant::now();
    let mut node = Node::start(&made.config, &log).await?;
    let mut c = connect(&dir).await?;
    c.admin.status(proto::StatusRequest {}).await?;
    let cold = start.elapsed().as_secs_f64();
    drop(c);
    node.stop().await?;

    let per = |v: f64| v / o.indicators.max(1) as f64;
    let n = o.indicators;
    Ok(vec![
        Figure::new(
            format!("node: ingest, durably acknowledged ({batch} per request)"),
            ingest,
            "indicators/s",
            Some(200_000.0),
            Better::Higher,
        ),
        Figure::new(
            format!("node: MatchStream over mTLS ({n} indicators, 1% hits)"),
            stream_rate,
            "identifiers/s",
            Some(2_000_000.0),
            Better::Higher,
        ),
        Figure::new(
            "node: MatchTokens over mTLS",
            tokens_rate,
            "tokens/s",
            Some(4_000_000.0),
            Better::Higher,
        ),
        Figure::new(
            format!("node: resident memory ({n} indicators)"),
            rss as f64 / (1024.0 * 1024.0),
            "MiB",
            (n >= 10_000_000).then_some(1024.0),
            Better::Lower,
        ),
        Figure::new(
            "node: resident memory per indicator",
            per(rss as f64),
            "bytes",
            None,
            Better::Lower,
        ),
        Figure::new(
            "node: store on disk per indicator",
            per(status.store_bytes as f64),
            "bytes",
            Some(100.0),
            Better::Lower,
        ),
        Figure::new(
            format!("node: cold start ({n} indicators)"),
            cold,
            "s",
            (n >= 10_000_000).then_some(5.0),
            Better::Lower,
        ),
    ])
}
