//! `cix bench watch`: continuous screening at a bank's scale, on the demo's
//! coalition as real node processes (the liaison and bank-b). The liaison
//! contributes `--indicators`, which bank-b replicates; bank-b is restarted
//! (the cold start without a watchlist), registers `--watch-entries`
//! synthetic customers over one mTLS `Watchlist.AddStream` (each message
//! durable before the next is taken), and is restarted again (the cold
//! start with them). Then the liaison contributes `--checked` new
//! indicators, `--planted` of them watched at bank-b, timed until bank-b
//! has raised their alerts (the alert engine's busy time is the figure);
//! and freshness: a new contribution at the liaison timed to its alert on a
//! stream subscribed at bank-b, while screening clients keep bank-b busy.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};

use super::{
    node,
    replicate::{wait_indicators, ScreeningLoad},
    screen::rss_of,
    Better, Figure,
};
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

/// What `cix bench watch` runs.
pub(crate) struct WatchOptions {
    /// Indicators the liaison contributes first (bank-b's index).
    pub indicators: usize,
    /// Watch entries bank-b registers.
    pub entries: usize,
    /// New indicators contributed once the entries are registered.
    pub checked: usize,
    /// Of those, how many are watched at bank-b.
    pub planted: usize,
    /// Items per contribution and per watchlist message (at most 10,000).
    pub batch: usize,
    /// Seed of the synthetic identifiers.
    pub seed: u64,
    /// Screening clients keeping bank-b busy during the freshness probes.
    pub clients: usize,
    /// Freshness probes (the figure is the slowest).
    pub probes: usize,
}

/// The liaison and the bank, as member indices of the demo coalition.
const LIAISON: usize = 0;
const BANK: usize = 1;

/// The most time any one wait of this benchmark takes before it fails.
const PATIENCE: Duration = Duration::from_secs(600);

/// Runs the figures on a new coalition in a temporary directory (or in
/// `keep`, created and left behind), and stops its nodes whether or not the measuring succeeds.
pub(crate) async fn run(o: &WatchOptions, keep: Option<&Path>) -> Result<Vec<Figure>> {
    let tmp = tempfile::tempdir()?;
    let root = match keep {
        Some(root) => {
            ensure!(
                !root.exists(),
                "{} already exists; --keep takes a new path",
                root.display()
            );
            std::fs::create_dir_all(root)?;
            root
        }
        None => tmp.path(),
    };
    let c = LocalCoalition::create(root, &CoalitionSpec::demo(root))?;
    let mut nodes = vec![
        NodeProcess::start_async(c.members[LIAISON].launch()).await?,
        NodeProcess::start_async(c.members[BANK].launch()).await?,
    ];
    let result = measure(&c, o, &mut nodes).await;
    for n in &mut nodes {
        let _ = n.stop_async().await;
    }
    result
}

async fn status(c: &mut Clients) -> Result<proto::StatusResponse> {
    Ok(c.admin.status(proto::StatusRequest {}).await?.into_inner())
}

/// Stops bank-b and starts it again on its store: the time from process
/// start to its first Status answer, and a client of the new process.
async fn cold_start(c: &LocalCoalition, bank: &mut NodeProcess) -> Result<(f64, Clients)> {
    bank.stop_async().await?.clean()?;
    let start = Instant::now();
    *bank = NodeProcess::start_async(c.members[BANK].launch()).await?;
    let mut clients = c.members[BANK].connect().await?;
    status(&mut clients).await?;
    Ok((start.elapsed().as_secs_f64(), clients))
}

/// [`wait::alerts_idle`] at bank-b, within [`PATIENCE`].
async fn engine_idle(
    bank: &mut Clients,
    what: &str,
    done: impl Fn(&proto::StatusResponse) -> bool,
) -> Result<proto::StatusResponse> {
    Ok(wait::alerts_idle(bank, "bank-b", what, PATIENCE, done).await?)
}

/// The synthetic book: `n` entries (references `CUST-…`), as AddStream
/// messages of `batch`, and `keep` of its identifiers spread through it.
fn book(
    n: usize,
    batch: usize,
    seed: u64,
    keep: usize,
) -> (Vec<proto::WatchAddRequest>, Vec<(Kind, String)>) {
    let mut synth = Synth::new(seed ^ 0xb00c);
    let stride = (n / keep.max(1)).max(1);
    let mut kept = Vec::with_capacity(keep);
    let mut messages = Vec::with_capacity(n.div_ceil(batch));
    let mut done = 0;
    while done < n {
        let m = (n - done).min(batch);
        let items = (done..done + m)
            .map(|i| {
                let (kind, value) = synth.any(i);
                if kept.len() < keep && i % stride == 0 {
                    kept.push((kind, value.clone()));
                }
                proto::WatchItem {
                    reference: format!("CUST-{i:09}"),
                    item: Some(proto::watch_item::Item::Identifier(proto::Identifier {
                        kind: i32::from(kind.code()),
                        value,
                    })),
                }
            })
            .collect();
        messages.push(proto::WatchAddRequest { items });
        done += m;
    }
    (messages, kept)
}

async fn measure(
    c: &LocalCoalition,
    o: &WatchOptions,
    nodes: &mut [NodeProcess],
) -> Result<Vec<Figure>> {
    let batch = o.batch.clamp(1, 10_000);
    let mut liaison = c.members[LIAISON].connect().await?;
    wait::own_log_ready(&mut liaison, "liaison-a").await?;
    let (known, _) =
        node::contribute(&mut liaison, o.indicators, o.seed, batch, 1_000, &[]).await?;
    let base = status(&mut liaison).await?.indicators;
    let mut bank = c.members[BANK].connect().await?;
    wait_indicators(&mut bank, base, "bank-b").await?;
    node::settle(&mut bank).await?;

    // Cold start without a watchlist, then the book registered.
    let (cold_without, mut bank) = cold_start(c, &mut nodes[BANK]).await?;
    node::settle(&mut bank).await?;
    engine_idle(&mut bank, "its start", |s| s.alert_scans >= 1).await?;
    let pid = nodes[BANK].pid().context("bank-b's pid")?;
    let rss_before = rss_of(pid);
    let (messages, watched) = book(o.entries, batch, o.seed, o.planted + o.probes.max(1));
    let start = Instant::now();
    let summary = bank
        .watchlist
        .add_stream(futures::stream::iter(messages))
        .await?
        .into_inner();
    let register = start.elapsed().as_secs_f64();
    ensure!(
        summary.invalid == 0,
        "bank-b refused {} synthetic watch entries",
        summary.invalid
    );
    let registered = summary.added + summary.already_present;
    ensure!(
        registered == o.entries as u64,
        "bank-b answered {registered} of {} watch entries",
        o.entries
    );
    let s = engine_idle(&mut bank, "the registration", |_| true).await?;
    let entries = s.watch_entries;
    let epochs = s.epochs.iter().filter(|e| e.valid_now).count() as u64;
    let rss_after = rss_of(pid);

    // Cold start with the watchlist; its start scan of the index.
    let (cold_with, mut bank) = cold_start(c, &mut nodes[BANK]).await?;
    let start = Instant::now();
    let s = engine_idle(&mut bank, "its start", |s| s.alert_scans >= 1).await?;
    let start_scan = start.elapsed().as_secs_f64();
    let rss_restarted = rss_of(nodes[BANK].pid().context("bank-b's pid")?);
    ensure!(
        s.watch_entries == entries,
        "after a restart bank-b holds {} watch entries, before {entries}",
        s.watch_entries
    );

    // New indicators, some watched, replicated and checked.
    let (planted, probes) = watched.split_at(o.planted.min(watched.len()));
    let before = status(&mut bank).await?;
    let start = Instant::now();
    node::contribute(&mut liaison, o.checked, o.seed ^ 0xc4ec, batch, 0, planted).await?;
    let held = status(&mut liaison).await?.indicators;
    wait_indicators(&mut bank, held, "bank-b").await?;
    let want = before.alerts_raised + planted.len() as u64;
    let after = engine_idle(&mut bank, "the new indicators", |s| s.alerts_raised >= want).await?;
    let to_last_alert = start.elapsed().as_secs_f64();
    let busy = (after.alert_engine_busy_ms - before.alert_engine_busy_ms) as f64 / 1e3;

    // Freshness: a new contribution to its alert at a subscribed client.
    let mut alerts = bank
        .alerts
        .subscribe(proto::SubscribeRequest {
            after: after.alerts_newest,
        })
        .await?
        .into_inner();
    let load = ScreeningLoad::start(c, BANK, o.clients, &known, o.seed).await?;
    let mut worst = Duration::ZERO;
    let mut probe_result = Ok(());
    for (p, item) in probes.iter().enumerate() {
        let case_ref = format!("WATCH-FRESH-{p}");
        let since = Instant::now();
        let r = async {
            node::contribute_one(&mut liaison, item, &case_ref).await?;
            loop {
                let e = tokio::time::timeout(Duration::from_secs(30), alerts.message())
                    .await
                    .context("no alert within 30 s of a contribution of a watched value")??
                    .context("bank-b ended the alert stream")?;
                if e.case_ref == case_ref && e.action() == proto::AlertAction::Raised {
                    return anyhow::Ok(since.elapsed());
                }
            }
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

    let at_scale = o.entries >= 10_000_000;
    let n = entries;
    Ok(vec![
        Figure::new(
            format!("watch: {n} entries registered over mTLS (AddStream, {batch} a message)"),
            o.entries as f64 / register.max(1e-9),
            "entries/s",
            Some(400_000.0),
            Better::Higher,
        ),
        Figure::new(
            format!("watch: node resident per entry and key epoch ({epochs} valid), beyond the index, after a cold start"),
            rss_restarted.saturating_sub(rss_before) as f64 / (n.max(1) * epochs.max(1)) as f64,
            "bytes",
            Some(32.0),
            Better::Lower,
        ),
        Figure::new(
            "watch: the same, just after the registration",
            rss_after.saturating_sub(rss_before) as f64 / (n.max(1) * epochs.max(1)) as f64,
            "bytes",
            None,
            Better::Lower,
        ),
        Figure::new(
            format!(
                "watch: {} replicated indicators checked against {n} entries (alert engine busy)",
                o.checked
            ),
            busy,
            "s",
            (at_scale && o.checked >= 1_000_000).then_some(2.0),
            Better::Lower,
        ),
        Figure::new(
            "watch: of which watched, alerts raised at bank-b",
            (after.alerts_raised - before.alerts_raised) as f64,
            "alerts",
            None,
            Better::Higher,
        ),
        Figure::new(
            "watch: from the first of them contributed to the last alert raised",
            to_last_alert,
            "s",
            None,
            Better::Lower,
        ),
        Figure::new(
            format!(
                "watch: new contribution to an alert at a subscribed client ({} clients, slowest of {})",
                o.clients,
                probes.len()
            ),
            worst.as_secs_f64(),
            "s",
            at_scale.then_some(1.0),
            Better::Lower,
        ),
        Figure::new(
            "watch: the bank's screening load meanwhile",
            load_rate,
            "identifiers/s",
            None,
            Better::Higher,
        ),
        Figure::new(
            format!("watch: cold start ({base} indicators, {n} entries)"),
            cold_with,
            "s",
            None,
            Better::Lower,
        ),
        Figure::new(
            "watch: cold start with the entries / without",
            cold_with / cold_without.max(1e-9),
            "ratio",
            Some(1.5),
            Better::Lower,
        ),
        Figure::new(
            "watch: the start's scan of the index against the entries",
            start_scan,
            "s",
            None,
            Better::Lower,
        ),
    ])
}
