//! `cix demo`: a three-node coalition on loopback, end to end, as members
//! and operators would run it. Operators make their keys and sign a trust
//! list naming a liaison and two banks; each member's node is started as a
//! child process (`cix serve`). The liaison contributes synthetic
//! indicators, screens a generated file of mixed identifiers (some known)
//! over a bulk stream and retracts the case; then the operators suspend one
//! bank and the demo shows the new list reaching the other nodes and the
//! suspended bank's open connection being cut, with the times. Each step
//! checks its own result, so the demo fails loudly if a node misbehaves.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use prost::Message;
use tonic::transport::Channel;

use super::bulk;
use crate::{
    api::convert,
    client::{Clients, Identity},
    epochs::now_unix,
    ident::Kind,
    keys::{signing::SigningKeyFile, TokenKey},
    proto::{self, federation_client::FederationClient, MemberKind},
    testbed::{init, synth::Synth},
    tls,
    trust::{edit, list},
};

/// Known indicators the liaison contributes.
const KNOWN: usize = 1_000;

/// The demo coalition's members: (id, kind).
const MEMBERS: [(&str, MemberKind); 3] = [
    ("liaison-a", MemberKind::Liaison),
    ("bank-b", MemberKind::Bank),
    ("bank-c", MemberKind::Bank),
];

pub async fn run(identifiers: usize, keep: Option<PathBuf>) -> Result<()> {
    let tmp;
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
    let mut coalition = DemoCoalition::create(&dir)?;
    println!(
        "-- operators signed trust list v{} (3 operator keys, threshold 2, {} members, token key epoch 1)",
        coalition.list.version,
        coalition.list.members.len()
    );
    let mut nodes = Vec::new();
    for (i, (id, _)) in MEMBERS.iter().enumerate() {
        match Node::start(&coalition.configs[i], &coalition.dirs[i].join("node.log")).await {
            Ok(n) => nodes.push(n),
            Err(e) => {
                for n in &mut nodes {
                    let _ = n.stop().await;
                }
                return Err(e.context(format!("starting {id}")));
            }
        }
    }
    println!(
        "-- nodes {} running, each with a member and a peer listener (mutual TLS 1.3)",
        MEMBERS.map(|(id, _)| id).join(", ")
    );
    let mut result = steps(&coalition, identifiers).await;
    if result.is_ok() {
        result = trust_steps(&mut coalition).await;
    }
    let mut stopped = Ok(());
    for n in &mut nodes {
        let r = n.stop().await.map(|took| {
            println!(
                "-- node stopped cleanly on SIGTERM in {} ms",
                took.as_millis()
            );
        });
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

/// Operators' keys, the members' node directories and the list in force.
pub(crate) struct DemoCoalition {
    operators: Vec<SigningKeyFile>,
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) configs: Vec<PathBuf>,
    peer_spkis: Vec<String>,
    list: proto::TrustList,
}

impl DemoCoalition {
    pub(crate) fn create(dir: &Path) -> Result<DemoCoalition> {
        let operators: Vec<_> = (0..3).map(|_| SigningKeyFile::generate()).collect();
        let token_key_path = dir.join("coalition-epoch-1.key");
        if token_key_path.exists() {
            std::fs::remove_file(&token_key_path)?;
        }
        let token_key = TokenKey::generate();
        token_key.write_new(&token_key_path)?;
        let now = now_unix();
        let (mut dirs, mut configs, mut peer_spkis, mut members) = (vec![], vec![], vec![], vec![]);
        for (id, kind) in MEMBERS {
            let node_dir = dir.join(id);
            let peer = format!("127.0.0.1:{}", free_port()?);
            let made = init::init(
                &node_dir,
                &init::InitOptions {
                    node_id: id,
                    listen: "127.0.0.1:0",
                    force: true,
                    peer_listen: Some(&peer),
                    token_key: Some(&token_key_path),
                },
            )?;
            let spki = made
                .peer_spki_sha256
                .context("federated init gives a peer key")?;
            let mut m = edit::member(id, &format!("Demo {id}"), kind, &spki, &peer);
            m.signing_keys.push(proto::LogSigningKey {
                public_key: hex::decode(&made.signing_public_hex)?,
                retired: false,
                last_seq: 0,
            });
            members.push(m);
            dirs.push(node_dir);
            configs.push(made.config);
            peer_spkis.push(spki);
        }
        let list = edit::new_list(
            "demo-coalition",
            &operators
                .iter()
                .map(|k| k.verifying_key())
                .collect::<Vec<_>>(),
            2,
            vec![proto::KeyEpoch {
                id: 1,
                valid_from: now - 86_400,
                valid_until: now + 365 * 86_400,
                key_sha256: token_key.fingerprint(),
            }],
            members,
            now,
            now + 90 * 86_400,
        );
        let c = DemoCoalition {
            operators,
            dirs,
            configs,
            peer_spkis,
            list,
        };
        let root = c.signed();
        for d in &c.dirs {
            std::fs::write(d.join("trust/root.ctl"), root.encode_to_vec())?;
        }
        Ok(c)
    }

    /// The list signed by two of the three operators.
    fn signed(&self) -> proto::SignedTrustList {
        let mut signed = proto::SignedTrustList {
            body: self.list.encode_to_vec(),
            signatures: vec![],
        };
        for k in &self.operators[..2] {
            list::sign(&mut signed, k);
        }
        signed
    }

    /// A Federation client to member `to`'s peer listener, as member `from`.
    async fn federation(&self, to: usize, from: usize) -> Result<FederationClient<Channel>> {
        Ok(FederationClient::new(self.peer_channel(to, from).await?))
    }

    /// A connection to member `to`'s peer listener, as member `from`.
    async fn peer_channel(&self, to: usize, from: usize) -> Result<Channel> {
        let d = &self.dirs[from];
        let config = tls::peer_client_config(
            &d.join("tls/peer.crt"),
            &d.join("tls/peer.key"),
            vec![self.peer_spkis[to].clone()],
        )?;
        let addr =
            std::fs::read_to_string(self.dirs[to].join("data").join(crate::node::PEER_ADDR_FILE))?;
        Ok(tls::connect(addr.trim(), None, config).await?)
    }
}

/// A free port below the kernel's ephemeral range (32768 and up), so that
/// the nodes' own `:0` binds cannot take it before its node starts.
fn free_port() -> Result<u16> {
    use rand::Rng;
    for _ in 0..1000 {
        let port = rand::thread_rng().gen_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 between 20000 and 32000")
}

/// Operators suspend bank-c: the list spreads, bank-c's open stream is cut.
async fn trust_steps(c: &mut DemoCoalition) -> Result<()> {
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

    c.list.version += 1;
    c.list.issued_at = now_unix();
    c.list.members[2].status = proto::MemberStatus::Suspended as i32;
    let v2 = c.signed();
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
    let b = Identity::from_dir(&c.dirs[1])?;
    let mut bank_b = b.connect().await?;
    loop {
        let s = bank_b
            .admin
            .status(proto::StatusRequest {})
            .await?
            .into_inner();
        if s.trust_version == c.list.version {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "bank-b never received the new list"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// Waits (bounded) until a node has confirmed its own log's head with a
/// peer, so that it takes contributions.
pub(crate) async fn wait_own_log_ready(clients: &mut Clients, who: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let s = clients
            .admin
            .status(proto::StatusRequest {})
            .await?
            .into_inner();
        if s.own_log_ready {
            return Ok(());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "{who} never reached its peers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `value` has `want` status at a node; returns how long it took.
pub(crate) async fn wait_for(
    clients: &mut Clients,
    item: &(Kind, String),
    want: proto::MatchStatus,
    since: Instant,
) -> Result<Duration> {
    loop {
        let r = clients
            .screening
            .r#match(proto::MatchRequest {
                identifiers: vec![proto::Identifier {
                    kind: convert::kind_to_proto(item.0),
                    value: item.1.clone(),
                }],
            })
            .await?
            .into_inner();
        if r.results.first().map(|r| r.status) == Some(want as i32) {
            return Ok(since.elapsed());
        }
        ensure!(
            since.elapsed() < Duration::from_secs(30),
            "replication did not arrive within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn steps(c: &DemoCoalition, identifiers: usize) -> Result<()> {
    let mut liaison = Identity::from_dir(&c.dirs[0])?.connect().await?;
    let mut bank_b = Identity::from_dir(&c.dirs[1])?.connect().await?;
    let mut bank_c = Identity::from_dir(&c.dirs[2])?.connect().await?;

    // The liaison's node confirms its own log's head with a peer first.
    wait_own_log_ready(&mut liaison, "liaison-a").await?;

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
                        proto::Identifier {
                            kind: convert::kind_to_proto(*k),
                            value: v.clone(),
                        },
                    )),
                })
                .collect(),
            case_ref: "DEMO-CASE-2026-001".into(),
            tier: proto::Tier::Confirmed as i32,
            valid_until: Some(convert::timestamp(now_unix() + 90 * 86_400)),
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
    let at_b = wait_for(&mut bank_b, last, proto::MatchStatus::Match, start).await?;
    let at_c = wait_for(&mut bank_c, last, proto::MatchStatus::Match, start).await?;
    println!(
        "-- they matched at bank-b {:.1} ms and at bank-c {:.1} ms after the contribution (pulled, signature and chain verified)",
        at_b.as_secs_f64() * 1e3,
        at_c.as_secs_f64() * 1e3
    );

    // A bank screens a file of mixed identifiers; 1 in 100 is known.
    let file = c.dirs[1].join("screen.csv");
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
    let out_path = c.dirs[1].join("results.jsonl");
    let mut out = bulk::Out::open(Some(&out_path), Some(bulk::OutFormat::Jsonl))?;
    let s = super::bulk_match(&mut bank_b, input.read()?, 5_000, &mut out, true, None).await?;
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
            identifiers: vec![proto::Identifier {
                kind: convert::kind_to_proto(known[0].0),
                value: known[0].1.clone(),
            }],
            reason: "identifier cleared by the investigation".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(r.retracted == 1, "the retraction did not apply");
    let gone_b = wait_for(&mut bank_b, &known[0], proto::MatchStatus::NoMatch, start).await?;
    let gone_c = wait_for(&mut bank_c, &known[0], proto::MatchStatus::NoMatch, start).await?;
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

/// A node running as a child process (of the demo or a benchmark), killed
/// if dropped while running.
pub struct Node {
    child: tokio::process::Child,
}

impl Node {
    /// Starts `cix serve --config CONFIG` with its output in `log`, and
    /// waits until its member listener is up.
    pub async fn start(config: &Path, log: &Path) -> Result<Node> {
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
            .join(crate::node::MEMBER_ADDR_FILE);
        // Generous: a cold start at 10M indicators takes seconds.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut node = Node { child };
        while !addr_file.exists() {
            if let Some(status) = node.child.try_wait()? {
                bail!("node exited at start ({status}); see {}", log.display());
            }
            if Instant::now() > deadline {
                bail!("node did not start within 120 s; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(node)
    }

    /// The child's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then wait for a clean exit; returns how long it took.
    pub async fn stop(&mut self) -> Result<Duration> {
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
        Ok(start.elapsed())
    }
}
