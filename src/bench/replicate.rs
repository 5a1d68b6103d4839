//! `cix bench replicate`: the demo's three-member coalition as real node
//! processes. The liaison contributes the synthetic indicators while one
//! bank follows; then the second bank starts empty and is timed until it
//! holds every indicator (pull, signature and chain checks, store, index),
//! from process start and from its first answer. Then freshness under load:
//! `clients` screening clients keep the second bank busy while the liaison
//! contributes a new indicator, timed until it matches at that bank.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{ensure, Result};

use super::{node, Better, Figure};
use crate::{
    client::Clients,
    ident::Kind,
    proto,
    testbed::{
        coalition::{CoalitionSpec, LocalCoalition},
        process::NodeProcess,
        synth::Synth,
        wait,
    },
};

/// What `cix bench replicate` runs.
pub(crate) struct ReplicateOptions {
    /// Indicators the liaison contributes and the new node catches up on.
    pub indicators: usize,
    /// Items per contribution request.
    pub batch: usize,
    /// Seed of the synthetic identifiers.
    pub seed: u64,
    /// Screening clients running flat out during the freshness probes.
    pub clients: usize,
    /// Freshness probes (the figure is the slowest).
    pub probes: usize,
}

async fn connect(c: &LocalCoalition, i: usize) -> Result<Clients> {
    Ok(c.members[i].connect().await?)
}

/// Screening clients keeping a member's node busy: each sends Match
/// requests of 1,000 identifiers (1% known) flat out on its own connection.
pub(crate) struct ScreeningLoad {
    stop: Arc<AtomicBool>,
    screened: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    since: (Instant, u64),
}

impl ScreeningLoad {
    /// Starts `clients` clients on member `i`'s node, and measures from
    /// half a second later (once every client is sending).
    pub(crate) async fn start(
        c: &LocalCoalition,
        i: usize,
        clients: usize,
        known: &[(Kind, String)],
        seed: u64,
    ) -> Result<ScreeningLoad> {
        let stop = Arc::new(AtomicBool::new(false));
        let screened = Arc::new(AtomicU64::new(0));
        let request = proto::MatchRequest {
            identifiers: node::queries(known, 1_000, seed ^ 0x10ad)
                .iter()
                .map(|(k, v)| proto::Identifier {
                    kind: i32::from(k.code()),
                    value: v.clone(),
                })
                .collect(),
        };
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let mut cl = connect(c, i).await?;
            let (stop, screened, request) = (stop.clone(), screened.clone(), request.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    cl.screening.r#match(request.clone()).await?;
                    screened.fetch_add(1_000, Ordering::Relaxed);
                }
                anyhow::Ok(())
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let since = (Instant::now(), screened.load(Ordering::Relaxed));
        Ok(ScreeningLoad {
            stop,
            screened,
            tasks,
            since,
        })
    }

    /// Stops the clients; the identifiers per second they screened while
    /// measured. Fails if any client's request failed.
    pub(crate) async fn stop(self) -> Result<f64> {
        let rate = (self.screened.load(Ordering::Relaxed) - self.since.1) as f64
            / self.since.0.elapsed().as_secs_f64().max(1e-9);
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await??;
        }
        Ok(rate)
    }
}

/// Waits (up to 600 s) until member `c`'s node holds `n` active indicators.
pub(crate) async fn wait_indicators(c: &mut Clients, n: u64, who: &str) -> Result<()> {
    let start = Instant::now();
    while indicators(c).await? < n {
        ensure!(
            start.elapsed() < Duration::from_secs(600),
            "{who} did not hold {n} indicators within 600 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn indicators(c: &mut Clients) -> Result<u64> {
    Ok(c.admin
        .status(proto::StatusRequest {})
        .await?
        .into_inner()
        .indicators)
}

/// Runs the replication figures on a new three-member coalition in a
/// temporary directory, and stops its nodes whether or not the measuring
/// succeeds.
pub(crate) async fn run(o: &ReplicateOptions) -> Result<Vec<Figure>> {
    let tmp = tempfile::tempdir()?;
    let c = LocalCoalition::create(tmp.path(), &CoalitionSpec::demo(tmp.path()))?;
    let mut nodes = vec![
        NodeProcess::start_async(c.members[0].launch()).await?,
        NodeProcess::start_async(c.members[1].launch()).await?,
    ];
    let result = measure(&c, o, &mut nodes).await;
    for n in &mut nodes {
        let _ = n.stop_async().await;
    }
    result
}

async fn measure(
    c: &LocalCoalition,
    o: &ReplicateOptions,
    nodes: &mut Vec<NodeProcess>,
) -> Result<Vec<Figure>> {
    let mut liaison = connect(c, 0).await?;
    wait::own_log_ready(&mut liaison, "liaison-a").await?;
    let (known, _) =
        node::contribute(&mut liaison, o.indicators, o.seed, o.batch, 1_000, &[]).await?;
    let held = indicators(&mut liaison).await?;

    // The second bank starts empty and catches up.
    let start = Instant::now();
    nodes.push(NodeProcess::start_async(c.members[2].launch()).await?);
    let mut bank = connect(c, 2).await?;
    let up = start.elapsed();
    wait_indicators(&mut bank, held, "bank-c").await?;
    let caught_up = start.elapsed();
    // Spot check: contributed identifiers match there.
    for k in known.iter().step_by(100) {
        wait::match_status(&mut bank, k, proto::MatchStatus::Match, Instant::now()).await?;
    }

    // Freshness under load.
    let load = ScreeningLoad::start(c, 2, o.clients, &known, o.seed).await?;
    let mut fresh = Synth::new(o.seed ^ 0xf7e5);
    let mut worst = Duration::ZERO;
    let mut probe_result = Ok(());
    for p in 0..o.probes.max(1) {
        let item: (Kind, String) = fresh.any(p);
        let since = Instant::now();
        let r = async {
            node::contribute_one(&mut liaison, &item, &format!("FRESH-{p}")).await?;
            anyhow::Ok(
                wait::match_status(&mut bank, &item, proto::MatchStatus::Match, since).await?,
            )
        }
        .await;
        match r {
            Ok(took) => worst = worst.max(took),
            Err(e) => {
                probe_result = Err(e);
                break;
            }
        }
    }
    let load_rate = load.stop().await?;
    probe_result?;

    let n = held;
    Ok(vec![
        Figure::new(
            format!("replicate: {n} indicators to a new node, from process start"),
            caught_up.as_secs_f64(),
            "s",
            Some(5.0),
            Better::Lower,
        ),
        Figure::new(
            "replicate: of which the node's start",
            up.as_secs_f64(),
            "s",
            None,
            Better::Lower,
        ),
        Figure::new(
            "replicate: rate after start",
            n as f64 / (caught_up - up).as_secs_f64().max(1e-9),
            "indicators/s",
            None,
            Better::Higher,
        ),
        Figure::new(
            format!(
                "replicate: new contribution to match at a bank under load ({} clients, slowest of {})",
                o.clients,
                o.probes.max(1)
            ),
            worst.as_secs_f64(),
            "s",
            Some(2.0),
            Better::Lower,
        ),
        Figure::new(
            "replicate: the bank's screening load meanwhile",
            load_rate,
            "identifiers/s",
            None,
            Better::Higher,
        ),
    ])
}
