//! The compaction figures of `cix bench`: unary `Screening.Match` latency
//! of a loaded node while it compacts its store (`Admin.Compact`, the copy
//! a retention purge ends with), against the same node idle just before.
//! Matching never reads the store, and the compaction copies on a blocking
//! thread without holding the store's lock, so the two should be close.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{Context, Result};

use super::{
    node::{percentile, unary_requests, Loaded},
    Better, Figure,
};
use crate::{ident::Kind, proto};

/// Match p99 idle, for `seconds` at `rate` per second, then Match p99 from
/// the start to the end of a compaction, the ratio (target at most 2), how
/// long the compaction took and the store's size before and after.
pub(crate) async fn run(
    l: &mut Loaded,
    queries: &[(Kind, String)],
    rate: u32,
    seconds: f64,
) -> Result<Vec<Figure>> {
    let requests = unary_requests(queries, 1000);
    let n = ((f64::from(rate) * seconds) as usize).max(1);
    let idle = l.paced(requests.clone(), rate, n, None).await?;

    let compacted = Arc::new(AtomicBool::new(false));
    let mut admin = l.connect().await?.admin;
    let flag = compacted.clone();
    let started = Instant::now();
    let compaction = tokio::spawn(async move {
        let r = admin.compact(proto::CompactRequest {}).await;
        flag.store(true, Ordering::Release);
        (r, started.elapsed())
    });
    let during = l.paced(requests, rate, n, Some(compacted)).await?;
    let (done, took) = compaction.await?;
    let done = done.context("compacting the node's store")?.into_inner();

    let (idle_p99, during_p99) = (percentile(&idle, 0.99), percentile(&during, 0.99));
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let n = l.indicators;
    Ok(vec![
        Figure::new(
            format!("compaction: unary Match p99 idle ({n} indicators, {rate} requests/s)"),
            idle_p99,
            "µs",
            None,
            Better::Lower,
        ),
        Figure::new(
            format!(
                "compaction: unary Match p99 while the store compacts ({} requests)",
                during.len()
            ),
            during_p99,
            "µs",
            None,
            Better::Lower,
        ),
        Figure::new(
            "compaction: Match p99 compacting / idle",
            during_p99 / idle_p99.max(1e-9),
            "ratio",
            Some(2.0),
            Better::Lower,
        ),
        Figure::new(
            "compaction: unary Match max while the store compacts",
            percentile(&during, 1.0),
            "µs",
            None,
            Better::Lower,
        ),
        Figure::new(
            "compaction: time to compact the store",
            took.as_secs_f64(),
            "s",
            None,
            Better::Lower,
        ),
        Figure::new(
            "compaction: store on disk before",
            mib(done.store_bytes_before),
            "MiB",
            None,
            Better::Lower,
        ),
        Figure::new(
            "compaction: store on disk after",
            mib(done.store_bytes_after),
            "MiB",
            None,
            Better::Lower,
        ),
    ])
}
