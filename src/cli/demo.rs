//! `cix demo`: one node on loopback, end to end, as a member would run it.
//! Makes a node directory, starts `cix serve` as a child process, contributes
//! synthetic indicators as a liaison, screens a generated file of mixed
//! identifiers (some known) over a bulk stream, retracts a case, and stops
//! the node with SIGTERM. Each step checks its own result, so the demo fails
//! loudly if the node misbehaves. (It grows into a three-node federation
//! when replication lands.)

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use super::{bulk, init};
use crate::{
    api::convert,
    client::{Clients, Identity},
    ident::Kind,
    proto,
    synth::Synth,
};

/// Known indicators the liaison contributes.
const KNOWN: usize = 1_000;

pub async fn run(identifiers: usize, keep: Option<PathBuf>) -> Result<()> {
    let tmp;
    let dir = match keep {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    println!("== cix demo in {}", dir.display());
    let made = init::init(
        &dir,
        &init::InitOptions {
            node_id: "demo-liaison",
            listen: "127.0.0.1:0",
            force: true,
        },
    )?;
    let mut node = Node::start(&made.config, &dir.join("node.log")).await?;
    let result = steps(&dir, identifiers).await;
    let stopped = node.stop().await;
    result?;
    stopped?;
    println!("== demo complete");
    Ok(())
}

async fn steps(dir: &Path, identifiers: usize) -> Result<()> {
    let identity = Identity::from_dir(dir)?;
    println!("-- node listening on {} (mutual TLS 1.3)", identity.node);
    let mut clients = identity.connect().await?;

    // A liaison contributes the identifiers of a confirmed case.
    let mut synth = Synth::new(2026);
    let mut seen = std::collections::HashSet::new();
    let known: Vec<(Kind, String)> = (0..)
        .map(|n| synth.any(n))
        .filter(|(k, v)| seen.insert((*k, v.clone())))
        .take(KNOWN)
        .collect();
    let start = Instant::now();
    let resp = clients
        .contribution
        .contribute(proto::ContributeRequest {
            items: known
                .iter()
                .map(|(k, v)| proto::ContributionItem {
                    item: Some(proto::contribution_item::Item::Identifier(
                        proto::Identifier {
                            kind: convert::kind_to_proto(*k),
                            value: v.clone(),
                        },
                    )),
                })
                .collect(),
            case_ref: "DEMO-CASE-2026-001".into(),
            tier: proto::Tier::Confirmed as i32,
            valid_until: Some(convert::timestamp(crate::keyring::now_unix() + 90 * 86_400)),
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
        "-- liaison contributed {stored} indicators (case DEMO-CASE-2026-001), log entries {}..{}, flushed in {:.1} ms",
        resp.first_seq,
        resp.last_seq,
        start.elapsed().as_secs_f64() * 1e3
    );

    // A bank screens a file of mixed identifiers; 1 in 100 is known.
    let file = dir.join("screen.csv");
    let expected = write_screening_file(&file, identifiers, &known, &mut synth)?;
    println!(
        "-- screening {identifiers} identifiers from {} ({expected} known)",
        file.display()
    );
    let input = bulk::Input {
        kind: None,
        file: Some(file),
        column: Some("value".into()),
        kind_column: Some("kind".into()),
        value: None,
    };
    let out_path = dir.join("results.jsonl");
    let mut out = bulk::Out::open(Some(&out_path), Some(bulk::OutFormat::Jsonl))?;
    let s = super::bulk_match(&mut clients, input.read()?, 5_000, &mut out, true).await?;
    out.finish()?;
    println!(
        "-- {} screened in {:.2}s: {:.0} identifiers/s over one mTLS stream; {} hits, {} invalid",
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

    // The case changes: the liaison retracts it; its indicators stop matching.
    let r = clients
        .contribution
        .retract(proto::RetractRequest {
            case_ref: "DEMO-CASE-2026-001".into(),
            reason: "case closed in demo".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let again = match_known(&mut clients, &known[..10]).await?;
    ensure!(again == 0, "retracted indicators still match");
    println!(
        "-- case retracted ({} indicators); the same identifiers now give NO_MATCH",
        r.retracted
    );
    let status = clients
        .admin
        .status(proto::StatusRequest {})
        .await?
        .into_inner();
    println!(
        "-- status: node {} holds {} active indicators, {} batches, {} bytes on disk",
        status.node_id, status.indicators, status.batches, status.store_bytes
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

async fn match_known(clients: &mut Clients, items: &[(Kind, String)]) -> Result<usize> {
    let resp = clients
        .screening
        .r#match(proto::MatchRequest {
            identifiers: items
                .iter()
                .map(|(k, v)| proto::Identifier {
                    kind: convert::kind_to_proto(*k),
                    value: v.clone(),
                })
                .collect(),
        })
        .await?
        .into_inner();
    Ok(resp
        .results
        .iter()
        .filter(|r| r.status == proto::MatchStatus::Match as i32)
        .count())
}

/// A node running as a child process of the demo.
struct Node {
    child: tokio::process::Child,
}

impl Node {
    async fn start(config: &Path, log: &Path) -> Result<Node> {
        let log_file = std::fs::File::create(log)?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("starting `cix serve`")?;
        let addr_file = config
            .parent()
            .unwrap_or(Path::new("."))
            .join("data")
            .join(crate::server::MEMBER_ADDR_FILE);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut node = Node { child };
        while !addr_file.exists() {
            if let Some(status) = node.child.try_wait()? {
                bail!("node exited at start ({status}); see {}", log.display());
            }
            if Instant::now() > deadline {
                bail!("node did not start within 30 s; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(node)
    }

    /// SIGTERM, then wait for a clean exit.
    async fn stop(&mut self) -> Result<()> {
        let start = Instant::now();
        if let Some(pid) = self.child.id() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .context("sending SIGTERM")?;
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("node did not stop within 30 s")??;
        ensure!(status.success(), "node exited with {status}");
        println!(
            "-- node stopped cleanly on SIGTERM in {} ms",
            start.elapsed().as_millis()
        );
        std::io::stdout().flush()?;
        Ok(())
    }
}
