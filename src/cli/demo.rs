//! `cix demo`: a three-node coalition on loopback, end to end, as members
//! and operators would run it. Operators make their keys and sign a trust
//! list naming a liaison and two banks; each member's node is started as a
//! child process (`cix serve`). The liaison contributes synthetic
//! indicators, a bank screens a generated file of mixed identifiers (some
//! known) over a bulk stream, and the liaison retracts one indicator. The
//! bank then registers its book of customers on its watchlist and follows
//! its alert log: the liaison contributes a second case naming three of
//! those customers, the three alerts arrive on the bank's live stream, and
//! a retraction withdraws one of them, with the times; the bank's analysts
//! confirm one of the two left and mark the other a false positive. Then the operators
//! suspend the other bank and the demo shows the new list reaching the
//! nodes and the suspended bank's open connection being cut, with the
//! times. The demo ends with the bank's outcome figures. Each step checks its own result, so the demo fails loudly if a
//! node misbehaves. Output names references, kinds and cases, never a raw
//! value.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, ensure, Context, Result};

mod outcomes;

use super::{bulk, screen::bulk_match};
use crate::{
    alerts::log::{Action, AlertEvent},
    api::convert,
    ident::Kind,
    proto,
    testbed::{
        coalition::{CoalitionSpec, LocalCoalition},
        process::NodeProcess,
        synth::Synth,
        wait,
    },
    time::system_now,
};

/// Known indicators the liaison contributes.
const KNOWN: usize = 1_000;

/// Customers in bank-b's book, all on its watchlist.
const BOOK: usize = 100_000;
/// Watch entries per AddStream message (the node's default batch limit).
const WATCH_BATCH: usize = 10_000;
/// The second case: its reference and how many indicators it names.
const CASE_2: &str = "DEMO-CASE-2026-002";
const CASE_2_ITEMS: usize = 50;
/// The customers of the book (by position) whose identifiers the second
/// case names.
const CAUGHT: [usize; 3] = [41, 31_336, 99_998];
/// How long the demo waits for the alert engine or an alert.
const ALERT_WAIT: Duration = Duration::from_secs(30);

/// `cix demo`: screens `identifiers` identifiers, in `keep` (created if
/// missing and left behind) or a temporary directory.
pub(super) async fn run(identifiers: usize, keep: Option<PathBuf>) -> Result<()> {
    let tmp;
    let kept = keep.is_some();
    let dir = match keep {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            d
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    println!(
        "== cix demo: a three-member coalition on loopback, in {}",
        dir.display()
    );
    let mut coalition = LocalCoalition::create(&dir, &CoalitionSpec::demo(&dir))?;
    // Every member's node sends feedback on its dispositions to the origin
    // (named), and takes feedback on its own indicators.
    for m in &coalition.members {
        let mut f = std::fs::OpenOptions::new().append(true).open(&m.config)?;
        f.write_all(b"\n[feedback]\nmode = \"named\"\n")?;
    }
    println!(
        "-- operators signed trust list v{} (3 operator keys, threshold 2, {} members, token key epoch 1)",
        coalition.list.version,
        coalition.list.members.len()
    );
    let mut nodes = Vec::new();
    for m in &coalition.members {
        match NodeProcess::start_async(m.launch()).await {
            Ok(n) => nodes.push(n),
            Err(e) => {
                for n in &mut nodes {
                    let _ = n.stop_async().await;
                }
                return Err(anyhow::Error::new(e).context(format!("starting {}", m.id)));
            }
        }
    }
    let ids: Vec<&str> = coalition.members.iter().map(|m| m.id.as_str()).collect();
    println!(
        "-- nodes {} running, each with a member and a peer listener (mutual TLS 1.3)",
        ids.join(", ")
    );
    let mut result = steps(&coalition, identifiers).await;
    let mut open = Vec::new();
    if result.is_ok() {
        result = watch_steps(&coalition).await.map(|o| open = o);
    }
    if result.is_ok() {
        result = outcomes::settle(&coalition, &open, CASE_2).await;
    }
    if result.is_ok() {
        result = trust_steps(&mut coalition).await;
    }
    if result.is_ok() {
        result = outcomes::report(&coalition, kept.then_some(dir.as_path())).await;
    }
    let mut stopped = Ok(());
    for n in &mut nodes {
        let r = match n.stop_async().await.and_then(|s| s.clean()) {
            Ok(took) => {
                println!(
                    "-- node stopped cleanly on SIGTERM in {} ms",
                    took.as_millis()
                );
                Ok(())
            }
            Err(e) => Err(e),
        };
        if stopped.is_ok() {
            stopped = r;
        }
    }
    std::io::stdout().flush()?;
    result?;
    stopped?;
    println!("== demo complete");
    Ok(())
}

/// bank-b registers its book on its watchlist and follows its alert log;
/// the liaison's second case names three of its customers (three alerts
/// raised), then retracts one of them (its alert withdrawn). Returns the
/// two alerts still open.
async fn watch_steps(c: &LocalCoalition) -> Result<Vec<AlertEvent>> {
    let mut liaison = c.members[0].connect().await?;
    let mut bank_b = c.members[1].connect().await?;

    // bank-b's book: one identifier per customer, under the bank's own
    // reference; a seed of its own, so no customer is a known indicator.
    let mut synth = Synth::new(7_2026);
    let mut seen = std::collections::HashSet::new();
    let book: Vec<(String, Kind, String)> = (0..)
        .map(|n| synth.any(n))
        .filter(|(k, v)| seen.insert((*k, v.clone())))
        .take(BOOK)
        .enumerate()
        .map(|(i, (k, v))| (format!("CUST-{:06}", i + 1), k, v))
        .collect();
    let messages: Vec<proto::WatchAddRequest> = book
        .chunks(WATCH_BATCH)
        .map(|chunk| proto::WatchAddRequest {
            items: chunk
                .iter()
                .map(|(r, k, v)| proto::WatchItem {
                    reference: r.clone(),
                    item: Some(proto::watch_item::Item::Identifier(convert::identifier_of(
                        *k, v,
                    ))),
                })
                .collect(),
        })
        .collect();
    let sent = messages.len();
    let start = Instant::now();
    let sum = bank_b
        .watchlist
        .add_stream(futures::stream::iter(messages))
        .await?
        .into_inner();
    let took = start.elapsed();
    ensure!(
        sum.added == BOOK as u64 && sum.invalid == 0,
        "expected {BOOK} watch entries added, node added {} ({} invalid)",
        sum.added,
        sum.invalid
    );
    println!(
        "-- bank-b registered {} customers (CUST-000001..CUST-{BOOK:06}) on its watchlist over one AddStream of {sent} messages in {:.0} ms: {:.0} entries/s, kept only as keyed hashes",
        sum.added,
        took.as_secs_f64() * 1e3,
        sum.added as f64 / took.as_secs_f64().max(1e-9)
    );
    // The engine checks the new entries against every indicator held (the
    // baseline); the subscription starts after whatever that logged.
    let status = wait::alerts_idle(&mut bank_b, "bank-b", "the registration", ALERT_WAIT, |s| {
        s.watchlist_enabled
    })
    .await?;
    println!(
        "-- bank-b's alert engine had checked the whole book against its {} indicators {:.0} ms after registration began: {} alert(s) open",
        status.indicators,
        start.elapsed().as_secs_f64() * 1e3,
        status.alerts_open
    );
    let cursor = status.alerts_newest;
    let mut events = bank_b
        .alerts
        .subscribe(proto::SubscribeRequest { after: cursor })
        .await?
        .into_inner();

    // The liaison's second case names three of bank-b's customers among
    // identifiers the bank does not hold.
    let mut other = Synth::new(8_2026);
    let mut case: Vec<(Kind, String)> = (0..)
        .map(|n| other.any(n))
        .filter(|(k, v)| seen.insert((*k, v.clone())))
        .take(CASE_2_ITEMS - CAUGHT.len())
        .collect();
    // Spread through the case, not at its head.
    for (at, &i) in CAUGHT.iter().enumerate() {
        let (_, k, v) = &book[i];
        case.insert(at * CASE_2_ITEMS / CAUGHT.len() + 7, (*k, v.clone()));
    }
    let request = proto::ContributeRequest {
        items: case
            .iter()
            .map(|(k, v)| proto::ContributionItem {
                item: Some(proto::contribution_item::Item::Identifier(
                    convert::identifier_of(*k, v),
                )),
            })
            .collect(),
        case_ref: CASE_2.into(),
        tier: proto::Tier::Probable as i32,
        valid_until: Some(convert::timestamp(system_now()? + 90 * 86_400)),
    };
    let start = Instant::now();
    let (resp, raised) = tokio::try_join!(
        async { Ok(liaison.contribution.contribute(request).await?.into_inner()) },
        case_events(&mut events, CAUGHT.len(), start)
    )?;
    let stored = resp
        .results
        .iter()
        .filter(|r| r.status == proto::ItemStatus::Stored as i32)
        .count();
    ensure!(
        stored == CASE_2_ITEMS,
        "expected {CASE_2_ITEMS} stored, node stored {stored}"
    );
    println!(
        "-- liaison-a contributed {stored} indicators (case {CASE_2}), three of them identifiers of bank-b's customers; bank-b's live alert stream (Alerts.Subscribe after #{cursor}):"
    );
    for (e, at) in &raised {
        print_alert(e, *at, "contribution");
    }
    let mut got: Vec<&str> = raised.iter().map(|(e, _)| e.reference.as_str()).collect();
    got.sort_unstable();
    let want: Vec<&str> = CAUGHT.iter().map(|&i| book[i].0.as_str()).collect();
    ensure!(
        got == want && raised.iter().all(|(e, _)| e.action == Action::Raised),
        "expected alerts raised for {}, got {}",
        want.join(", "),
        raised
            .iter()
            .map(|(e, _)| format!("{} {}", e.action.as_str(), e.reference))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The case changes: the liaison retracts one of the three.
    let (reference, k, v) = &book[CAUGHT[0]];
    let request = proto::RetractRequest {
        identifiers: vec![convert::identifier_of(*k, v)],
        reason: "identifier cleared by the investigation".into(),
        ..Default::default()
    };
    let start = Instant::now();
    let (r, withdrawn) = tokio::try_join!(
        async { Ok(liaison.contribution.retract(request).await?.into_inner()) },
        case_events(&mut events, 1, start)
    )?;
    ensure!(r.retracted == 1, "the retraction did not apply");
    println!("-- liaison-a retracted one of the three; bank-b's stream:");
    for (e, at) in &withdrawn {
        print_alert(e, *at, "retraction");
    }
    let (e, _) = &withdrawn[0];
    ensure!(
        e.action == Action::Withdrawn && e.reference == *reference,
        "expected {reference}'s alert withdrawn, got {} {}",
        e.action.as_str(),
        e.reference
    );
    Ok(raised
        .into_iter()
        .map(|(e, _)| e)
        .filter(|e| e.reference != *reference)
        .collect())
}

/// The next `n` events of the second case on `events`, each with the time
/// since `since` it arrived; events of other cases are passed over. Fails
/// after [`ALERT_WAIT`].
async fn case_events(
    events: &mut tonic::Streaming<proto::AlertEvent>,
    n: usize,
    since: Instant,
) -> Result<Vec<(AlertEvent, Duration)>> {
    let mut got = Vec::with_capacity(n);
    let read = async {
        while got.len() < n {
            let Some(p) = events.message().await? else {
                bail!("bank-b's alert stream ended");
            };
            let e = AlertEvent::from_proto(&p).with_context(|| {
                format!("alert event {}: a value this cix does not know", p.number)
            })?;
            if e.case_ref == CASE_2 {
                got.push((e, since.elapsed()));
            }
        }
        Ok(())
    };
    let read = tokio::time::timeout(ALERT_WAIT, read).await;
    match read {
        Ok(r) => r.map(|()| got),
        Err(_) => Err(anyhow!(
            "bank-b's alert stream brought {} of {n} expected event(s) of case {CASE_2} within {} s",
            got.len(),
            ALERT_WAIT.as_secs()
        )),
    }
}

/// One alert as the bank sees it: no value, only its own reference.
fn print_alert(e: &AlertEvent, after: Duration, what: &str) {
    println!(
        "   #{:<3} {:<9} {} {:<12} origin={} case={} tier={} cause={}: {:.1} ms after the {what}",
        e.number,
        e.action.as_str(),
        e.reference,
        e.kind.as_str(),
        e.origin,
        e.case_ref,
        e.tier.as_str(),
        e.cause.as_str(),
        after.as_secs_f64() * 1e3
    );
}

/// Operators suspend bank-c: the list spreads, bank-c's open stream is cut.
async fn trust_steps(c: &mut LocalCoalition) -> Result<()> {
    // bank-c keeps a stream open on liaison-a's peer listener.
    let channel = c.peer_channel(0, 2).await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    ensure!(
        watch.message().await?.is_some(),
        "no health update on the open stream"
    );
    println!("-- bank-c holds a stream open on liaison-a's peer listener");

    let v2 = c.next(|l| l.members[2].status = proto::MemberStatus::Suspended as i32);
    let start = Instant::now();
    let r = c
        .federation(0, 1)
        .await?
        .publish_trust_list(v2)
        .await?
        .into_inner();
    ensure!(r.applied, "liaison-a did not apply the new list");
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = watch.message().await {}
    })
    .await;
    ensure!(
        cut.is_ok(),
        "bank-c's stream stayed open after its suspension"
    );
    println!(
        "-- operators published v{} suspending bank-c: its open stream was closed {:.1} ms after publication",
        c.list.version,
        start.elapsed().as_secs_f64() * 1e3
    );
    let mut bank_b = c.members[1].connect().await?;
    wait::trust_version(&mut bank_b, c.list.version, Duration::from_secs(30)).await?;
    println!(
        "-- bank-b received v{} from its peers {:.1} ms after publication, without operator action",
        c.list.version,
        start.elapsed().as_secs_f64() * 1e3
    );
    let refused = match c.federation(0, 2).await {
        Ok(mut f) => f
            .get_trust_list(proto::GetTrustListRequest::default())
            .await
            .is_err(),
        Err(_) => true,
    };
    ensure!(refused, "a suspended member was let back in");
    println!("-- bank-c's new connections are refused at the TLS handshake");
    Ok(())
}

async fn steps(c: &LocalCoalition, identifiers: usize) -> Result<()> {
    let mut liaison = c.members[0].connect().await?;
    let mut bank_b = c.members[1].connect().await?;
    let mut bank_c = c.members[2].connect().await?;

    // The liaison's node confirms its own log's head with a peer first.
    wait::own_log_ready(&mut liaison, "liaison-a").await?;

    // A liaison contributes the identifiers of a confirmed case.
    let mut synth = Synth::new(2026);
    let mut seen = std::collections::HashSet::new();
    let known: Vec<(Kind, String)> = (0..)
        .map(|n| synth.any(n))
        .filter(|(k, v)| seen.insert((*k, v.clone())))
        .take(KNOWN)
        .collect();
    let start = Instant::now();
    let resp = liaison
        .contribution
        .contribute(proto::ContributeRequest {
            items: known
                .iter()
                .map(|(k, v)| proto::ContributionItem {
                    item: Some(proto::contribution_item::Item::Identifier(
                        convert::identifier_of(*k, v),
                    )),
                })
                .collect(),
            case_ref: "DEMO-CASE-2026-001".into(),
            tier: proto::Tier::Confirmed as i32,
            valid_until: Some(convert::timestamp(system_now()? + 90 * 86_400)),
        })
        .await?
        .into_inner();
    let stored = resp
        .results
        .iter()
        .filter(|r| r.status == proto::ItemStatus::Stored as i32)
        .count();
    ensure!(
        stored == KNOWN,
        "expected {KNOWN} stored, node stored {stored}"
    );
    println!(
        "-- liaison-a contributed {stored} indicators (case DEMO-CASE-2026-001) as one signed batch, entries {}..{}, on disk in {:.1} ms",
        resp.first_seq,
        resp.last_seq,
        start.elapsed().as_secs_f64() * 1e3
    );
    let last = &known[KNOWN - 1];
    let at_b = wait::match_status(&mut bank_b, last, proto::MatchStatus::Match, start).await?;
    let at_c = wait::match_status(&mut bank_c, last, proto::MatchStatus::Match, start).await?;
    println!(
        "-- they matched at bank-b {:.1} ms and at bank-c {:.1} ms after the contribution (pulled, signature and chain verified)",
        at_b.as_secs_f64() * 1e3,
        at_c.as_secs_f64() * 1e3
    );

    // A bank screens a file of mixed identifiers; 1 in 100 is known.
    let file = c.members[1].dir.join("screen.csv");
    let expected = write_screening_file(&file, identifiers, &known, &mut synth)?;
    println!(
        "-- bank-b screens {identifiers} identifiers from {} ({expected} known)",
        file.display()
    );
    let input = bulk::Input {
        kind: None,
        file: Some(file),
        column: Some("value".into()),
        kind_column: Some("kind".into()),
        value: None,
    };
    let out_path = c.members[1].dir.join("results.jsonl");
    let mut out = bulk::Out::open(Some(&out_path), Some(bulk::OutFormat::Jsonl))?;
    let s = bulk_match(&mut bank_b, input.read()?, 5_000, &mut out, true, None).await?;
    out.finish()?;
    println!(
        "-- {} screened at bank-b in {:.2}s: {:.0} identifiers/s over one mTLS stream; {} hits, {} invalid",
        s.items,
        s.seconds,
        s.items as f64 / s.seconds.max(1e-9),
        s.matched,
        s.invalid
    );
    ensure!(
        s.matched == expected,
        "expected {expected} hits, got {}",
        s.matched
    );
    print_sample_hits(&out_path)?;

    // The case changes: the liaison retracts one indicator; the retraction travels too.
    let start = Instant::now();
    let r = liaison
        .contribution
        .retract(proto::RetractRequest {
            identifiers: vec![convert::identifier_of(known[0].0, &known[0].1)],
            reason: "identifier cleared by the investigation".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(r.retracted == 1, "the retraction did not apply");
    let gone_b =
        wait::match_status(&mut bank_b, &known[0], proto::MatchStatus::NoMatch, start).await?;
    let gone_c =
        wait::match_status(&mut bank_c, &known[0], proto::MatchStatus::NoMatch, start).await?;
    println!(
        "-- liaison-a retracted one indicator: it stopped matching at bank-b after {:.1} ms and at bank-c after {:.1} ms",
        gone_b.as_secs_f64() * 1e3,
        gone_c.as_secs_f64() * 1e3
    );
    let status = bank_b
        .admin
        .status(proto::StatusRequest {})
        .await?
        .into_inner();
    println!(
        "-- bank-b holds {} active indicators from {} origin(s), {} batches, {} bytes on disk; replication lag {}",
        status.indicators,
        status.origins.len(),
        status.batches,
        status.store_bytes,
        status
            .peers
            .iter()
            .map(|p| format!("{}={}", p.member, p.origins.iter().map(|o| o.lag).sum::<u64>()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Writes `n` rows of kind,value; returns how many are known.
fn write_screening_file(
    path: &Path,
    n: usize,
    known: &[(Kind, String)],
    synth: &mut Synth,
) -> Result<usize> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["kind", "value"])?;
    let mut expected = 0;
    for i in 0..n {
        if i % 100 == 7 {
            let (k, v) = &known[(i / 100) % known.len()];
            w.write_record([k.as_str(), v.as_str()])?;
            expected += 1;
        } else {
            let (k, v) = synth.any(i);
            w.write_record([k.as_str(), v.as_str()])?;
        }
    }
    w.flush()?;
    Ok(expected)
}

fn print_sample_hits(results: &Path) -> Result<()> {
    let text = std::fs::read_to_string(results)?;
    for line in text.lines().filter(|l| l.contains("\"MATCH\"")).take(3) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let hit = &v["hits"][0];
        println!(
            "   row {:>6} {:<12} MATCH origin={} case={} tier={} valid_until={}",
            v["row"],
            v["kind"].as_str().unwrap_or(""),
            hit["origin"].as_str().unwrap_or(""),
            hit["case_ref"].as_str().unwrap_or(""),
            hit["tier"].as_str().unwrap_or(""),
            hit["valid_until"].as_str().unwrap_or("never")
        );
    }
    Ok(())
}
