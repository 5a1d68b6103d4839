//! Shared helpers for the integration tests: real `cix serve` processes on
//! 127.0.0.1 with an ephemeral port, real mutual TLS, real sled on disk,
//! with stdout and stderr captured at trace level for the leak checks. The
//! node processes, the coalition and the waits are `cix::testbed`'s; this
//! module adds what tests need on top (panics with the node's logs, test
//! timings, extra client certificates).

// Shared by every test crate, each using a part: `pub` so that all can.
#![allow(dead_code, unreachable_pub)]

use std::{
    fs,
    io::Write,
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cix::{
    client::{Clients, Identity},
    proto::{self, alerts_client::AlertsClient, watchlist_client::WatchlistClient, AlertEvent},
    testbed::{
        coalition::{CoalitionSpec, LocalCoalition, MemberNode, MemberSpec},
        init,
        process::{Launch, NodeProcess},
        wait,
    },
};

use tonic::{transport::Channel, Streaming};

pub const BIN: &str = env!("CARGO_BIN_EXE_cix");

/// A client certificate of a test node.
#[derive(Clone, Debug)]
pub struct ClientFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub spki: String,
}

pub struct TestNode {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub config: PathBuf,
    child: Option<NodeProcess>,
    runs: usize,
    pub addr: String,
    /// Where the node captures its peer listener's gRPC messages
    /// (`CIX_CAPTURE_PEER_MESSAGES`), if anywhere.
    pub capture: Option<PathBuf>,
    /// The node's settable clock (`CIX_TEST_CLOCK_FILE`), if it runs on one:
    /// see [`TestNode::use_test_clock`].
    pub clock: Option<PathBuf>,
    /// Where the node's compactions pause mid-copy
    /// (`CIX_TEST_COMPACTION_PAUSE_FILE`), if they do: see
    /// [`TestNode::pause_compactions`].
    pub compaction_pause: Option<PathBuf>,
    /// More environment for the node's process (a debug build's test hooks).
    pub env: Vec<(String, PathBuf)>,
}

impl TestNode {
    /// A fresh node directory (not started).
    pub fn new(node_id: &str) -> TestNode {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node");
        let made = init::init(
            &dir,
            &init::InitOptions {
                node_id,
                listen: "127.0.0.1:0",
                force: false,
                ..Default::default()
            },
        )
        .unwrap();
        fs::create_dir_all(dir.join("logs")).unwrap();
        TestNode {
            config: made.config,
            dir,
            tmp,
            child: None,
            runs: 0,
            capture: None,
            clock: None,
            compaction_pause: None,
            env: Vec::new(),
            addr: String::new(),
        }
    }

    /// Appends text to the node's config (before start).
    pub fn append_config(&self, text: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&self.config)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Issues a client certificate from the node's CA and grants it `caps`
    /// (none: known to the CA but granted nothing).
    pub fn add_client(&self, name: &str, caps: &[&str]) -> ClientFiles {
        let ca = init::load_ca(&self.dir).unwrap();
        let cert = self.dir.join(format!("tls/{name}.crt"));
        let key = self.dir.join(format!("tls/{name}.key"));
        let spki = init::issue_client(&ca, name, &cert, &key).unwrap();
        if !caps.is_empty() {
            let caps: Vec<String> = caps.iter().map(|c| format!("{c:?}")).collect();
            self.append_config(&format!(
                "\n[[member_listener.client]]\nname = {name:?}\nspki_sha256 = {spki:?}\ncapabilities = [{}]\n",
                caps.join(", ")
            ));
        }
        ClientFiles { cert, key, spki }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts `cix serve` and waits until the member listener is up.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.runs += 1;
        let logs = self.dir.join("logs");
        let mut launch = Launch::new(
            &self.config,
            &logs.join(format!("stdout-{}.log", self.runs)),
        )
        .env("CIX_LOG", "trace")
        .env(
            cix::capture::ENV,
            self.capture.as_deref().unwrap_or(Path::new("")),
        )
        .env(
            cix::time::TEST_CLOCK_ENV,
            self.clock.as_deref().unwrap_or(Path::new("")),
        )
        .env(
            cix::store::TEST_COMPACTION_PAUSE_ENV,
            self.compaction_pause.as_deref().unwrap_or(Path::new("")),
        );
        for (k, v) in &self.env {
            launch = launch.env(k, v);
        }
        launch.program = Some(BIN.into());
        launch.stderr = logs.join(format!("stderr-{}.log", self.runs));
        launch.start_timeout = Duration::from_secs(30);
        match NodeProcess::start(&launch) {
            Ok(p) => {
                self.addr = p.addr().to_string();
                self.child = Some(p);
            }
            Err(e) => panic!("{e}\n{}", self.logs()),
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.child.take().expect("running").kill().unwrap();
    }

    /// SIGTERM and wait; returns whether the node exited 0.
    pub fn stop(&mut self) -> bool {
        match self.child.take().expect("running").stop() {
            Ok(s) => s.status.success(),
            Err(e) => panic!("node did not stop on SIGTERM: {e}"),
        }
    }

    /// From its next start on, the node runs on a settable clock standing
    /// at `unix` seconds until [`TestNode::set_time`] moves it: expiry,
    /// validity windows and limits follow it, so a test sets the time past
    /// an expiry instead of sleeping. Needs a build that can be given a time
    /// (debug, what `cargo test` builds, or `--features test-clock`).
    pub fn use_test_clock(&mut self, unix: i64) {
        if !cix::time::SETTABLE {
            panic!("this build of cix cannot be given a time: test a debug build or use --features test-clock");
        }
        self.clock = Some(self.tmp.path().join("clock"));
        self.set_time(unix);
    }

    /// From its next start on, each compaction of the node's store creates
    /// the returned file once it has copied its first batch body and waits,
    /// mid-copy, until the test removes it (a debug build's hook).
    pub fn pause_compactions(&mut self) -> PathBuf {
        let path = self.tmp.path().join("compaction-paused");
        self.compaction_pause = Some(path.clone());
        path
    }

    /// Moves the node's settable clock to `unix` seconds; a running node
    /// reads it the next time it looks at the time. Replaced whole (renamed
    /// into place), so the node never reads half a time.
    pub fn set_time(&self, unix: i64) {
        let path = self.clock.as_ref().expect("use_test_clock first");
        let next = path.with_extension("next");
        fs::write(&next, format!("{unix}\n")).unwrap();
        fs::rename(&next, path).unwrap();
    }

    pub fn restart(&mut self) {
        assert!(self.stop(), "node did not exit 0\n{}", self.logs());
        self.start();
    }

    /// Everything the node printed on stdout and stderr, over all runs.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for e in fs::read_dir(self.dir.join("logs")).unwrap() {
            s.push_str(&fs::read_to_string(e.unwrap().path()).unwrap_or_default());
        }
        s
    }

    /// The operator identity made by `cix init` (all capabilities).
    pub fn identity(&self) -> Identity {
        Identity {
            node: self.addr.clone(),
            server_name: None,
            ca: self.dir.join("tls/ca.crt"),
            cert: self.dir.join("tls/client.crt"),
            key: self.dir.join("tls/client.key"),
        }
    }

    pub fn identity_of(&self, c: &ClientFiles) -> Identity {
        Identity {
            cert: c.cert.clone(),
            key: c.key.clone(),
            ..self.identity()
        }
    }

    pub async fn clients(&self) -> Clients {
        self.identity().connect().await.unwrap()
    }
}

pub fn id(kind: proto::Kind, value: &str) -> proto::Identifier {
    proto::Identifier {
        kind: kind as i32,
        value: value.to_string(),
    }
}

pub fn item(kind: proto::Kind, value: &str) -> proto::ContributionItem {
    proto::ContributionItem {
        item: Some(proto::contribution_item::Item::Identifier(id(kind, value))),
    }
}

pub fn contribute_req(
    items: Vec<proto::ContributionItem>,
    case_ref: &str,
) -> proto::ContributeRequest {
    proto::ContributeRequest {
        items,
        case_ref: case_ref.into(),
        tier: proto::Tier::Confirmed as i32,
        valid_until: None,
    }
}

pub async fn match_one(c: &mut Clients, kind: proto::Kind, value: &str) -> proto::MatchResult {
    let r = c
        .screening
        .r#match(proto::MatchRequest {
            identifiers: vec![id(kind, value)],
        })
        .await
        .unwrap()
        .into_inner();
    r.results.into_iter().next().unwrap()
}

pub fn status_of(r: &proto::MatchResult) -> proto::MatchStatus {
    proto::MatchStatus::try_from(r.status).unwrap()
}

/// Every file under `dir`, recursively, with its bytes. A running node may
/// swap directories meanwhile (a compaction renames the store's): one that
/// is gone by the time it is read is skipped, and the next call sees the
/// new one.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => panic!("reading {}: {e}", d.display()),
        };
        for e in entries {
            let Ok(e) = e else { continue };
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// A free TCP port on 127.0.0.1 for a node to bind next (see
/// [`cix::testbed::process::free_port`]).
pub fn free_port() -> u16 {
    cix::testbed::process::free_port().unwrap()
}

impl TestNode {
    /// A federated node directory: peer listener on a free port, the
    /// coalition's token key installed. Its trust list is written by
    /// [`Coalition`].
    pub fn new_federated(node_id: &str, token_key: &Path) -> (TestNode, String, String, String) {
        let tmp = tempfile::tempdir().unwrap();
        let made = MemberNode::create(&tmp.path().join("node"), node_id, token_key).unwrap();
        let (peer, spki) = (made.peer_listen.clone(), made.peer_spki.clone());
        let signing = hex::encode(made.signing_public.as_bytes());
        (TestNode::federated(tmp, &made), peer, spki, signing)
    }

    /// A test node on a federated directory: trust-list checks and pulls
    /// every second, reconnects after 0.2 to 2 seconds.
    fn federated(tmp: tempfile::TempDir, made: &MemberNode) -> TestNode {
        fs::create_dir_all(made.dir.join("logs")).unwrap();
        let text = fs::read_to_string(&made.config).unwrap();
        fs::write(
            &made.config,
            text.replace(
                "root_file = \"trust/root.ctl\"",
                "root_file = \"trust/root.ctl\"\nsync_seconds = 1",
            ) + "\n[replication]\npull_seconds = 1\nbackoff_min = \"200ms\"\nbackoff_max = \"2s\"\n",
        )
        .unwrap();
        TestNode {
            config: made.config.clone(),
            dir: made.dir.clone(),
            tmp,
            child: None,
            runs: 0,
            capture: None,
            clock: None,
            compaction_pause: None,
            env: Vec::new(),
            addr: String::new(),
        }
    }

    /// The peer listener's address, once started.
    pub fn peer_addr(&self) -> String {
        fs::read_to_string(self.data_dir().join("peer.addr"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn peer_cert(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("tls/peer.crt"), self.dir.join("tls/peer.key"))
    }

    pub async fn status(&self) -> proto::StatusResponse {
        self.clients()
            .await
            .admin
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }
}

/// A small coalition of real nodes under one operator-signed trust list:
/// the testbed's [`LocalCoalition`] (operators, token key, the list, signing
/// and the next version: reached through `Deref`) with a [`TestNode`] per
/// member, each in its own temporary directory.
pub struct Coalition {
    pub tmp: tempfile::TempDir,
    pub local: LocalCoalition,
    pub nodes: Vec<TestNode>,
    /// Member ids, in node order.
    pub ids: Vec<String>,
    /// Peer SPKI fingerprints, in node order.
    pub spkis: Vec<String>,
}

pub const COALITION: &str = "test-coalition";

impl Deref for Coalition {
    type Target = LocalCoalition;
    fn deref(&self) -> &LocalCoalition {
        &self.local
    }
}

impl DerefMut for Coalition {
    fn deref_mut(&mut self) -> &mut LocalCoalition {
        &mut self.local
    }
}

impl Coalition {
    /// Nodes (not started) and a version-1 list: three operator keys,
    /// threshold two, every node an active member with every capability.
    pub fn new(ids: &[&str]) -> Coalition {
        let tmp = tempfile::tempdir().unwrap();
        let node_tmps: Vec<_> = ids.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        let spec = CoalitionSpec {
            coalition_id: COALITION.to_string(),
            members: ids
                .iter()
                .zip(&node_tmps)
                .map(|(id, t)| MemberSpec {
                    id: id.to_string(),
                    name: format!("Test member {id}"),
                    kind: proto::MemberKind::Bank,
                    dir: t.path().join("node"),
                })
                .collect(),
            list_valid_for: Duration::from_secs(30 * 86_400),
        };
        let local = LocalCoalition::create(tmp.path(), &spec).unwrap();
        let nodes = node_tmps
            .into_iter()
            .zip(&local.members)
            .map(|(t, m)| TestNode::federated(t, m))
            .collect();
        Coalition {
            tmp,
            nodes,
            ids: ids.iter().map(|s| s.to_string()).collect(),
            spkis: local.members.iter().map(|m| m.peer_spki.clone()).collect(),
            local,
        }
    }

    /// Re-signs `self.list` (edited before the nodes start) as every node's root list.
    pub fn rewrite_root(&self) {
        self.local.write_root().unwrap();
    }

    pub fn start_all(&mut self) {
        for n in &mut self.nodes {
            n.start();
        }
    }

    /// A Federation client to node `to`, as member `as_node` (its peer certificate).
    pub async fn federation(
        &self,
        to: usize,
        as_node: usize,
    ) -> Result<proto::federation_client::FederationClient<tonic::transport::Channel>, String> {
        self.local
            .federation(to, as_node)
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn federation_with(
        &self,
        to: usize,
        cert: &Path,
        key: &Path,
    ) -> Result<proto::federation_client::FederationClient<tonic::transport::Channel>, String> {
        let channel = self
            .local
            .peer_channel_with(to, cert, key)
            .await
            .map_err(|e| e.to_string())?;
        Ok(proto::federation_client::FederationClient::new(channel))
    }

    /// Node `to`'s answer to GetTrustList from version 0 (its list in
    /// force), asked as member `from`.
    pub async fn trust_list_held(&self, to: usize, from: usize) -> proto::GetTrustListResponse {
        self.federation(to, from)
            .await
            .unwrap()
            .get_trust_list(proto::GetTrustListRequest { have_version: 0 })
            .await
            .unwrap()
            .into_inner()
    }

    /// Publishes `list` to node `to` as member `from`; panics if refused.
    pub async fn publish(
        &self,
        to: usize,
        from: usize,
        list: proto::SignedTrustList,
    ) -> proto::PublishTrustListResponse {
        self.federation(to, from)
            .await
            .unwrap()
            .publish_trust_list(list)
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits (bounded) until node `i` holds trust-list `version`.
    pub async fn wait_for_version(&self, i: usize, version: u64) {
        let mut c = self.nodes[i].clients().await;
        if let Err(e) = wait::trust_version(&mut c, version, Duration::from_secs(20)).await {
            panic!(
                "node {} never reached trust list version {version}: {e}",
                self.ids[i]
            );
        }
    }
}

impl Coalition {
    /// Restricts node `i` to pull only from `peers` (for chain topologies).
    pub fn pull_only_from(&self, i: usize, peers: &[&str]) {
        let config = &self.nodes[i].config;
        let text = fs::read_to_string(config).unwrap();
        let list: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
        fs::write(
            config,
            text.replace(
                "pull_seconds = 1\n",
                &format!("pull_seconds = 1\npeers = [{}]\n", list.join(", ")),
            ),
        )
        .unwrap();
    }

    /// Contributes at node `i`, waiting (bounded) while the node has not yet
    /// confirmed its own log's head with a peer.
    pub async fn contribute(
        &self,
        i: usize,
        items: Vec<proto::ContributionItem>,
        case_ref: &str,
    ) -> proto::ContributeResponse {
        let mut c = self.nodes[i].clients().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c
                .contribution
                .contribute(contribute_req(items.clone(), case_ref))
                .await
            {
                Ok(r) => return r.into_inner(),
                Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(s) => panic!("contribute at {}: {s:?}", self.ids[i]),
            }
        }
    }

    /// Rekeys at node `i`, waiting (bounded) while the node has not yet
    /// confirmed its own log's head with a peer (as after a restart).
    pub async fn rekey(
        &self,
        i: usize,
        identifiers: Vec<proto::Identifier>,
    ) -> proto::RekeyResponse {
        let mut c = self.nodes[i].clients().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let req = proto::RekeyRequest {
                identifiers: identifiers.clone(),
            };
            match c.contribution.rekey(req).await {
                Ok(r) => return r.into_inner(),
                Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(s) => panic!("rekey at {}: {s:?}", self.ids[i]),
            }
        }
    }

    /// Waits (bounded) until `value` has `want` status at node `i`.
    pub async fn wait_match(
        &self,
        i: usize,
        kind: proto::Kind,
        value: &str,
        want: proto::MatchStatus,
    ) -> Duration {
        let start = Instant::now();
        let mut c = self.nodes[i].clients().await;
        let item = (
            cix::ident::Kind::from_code(kind as u8).unwrap(),
            value.to_string(),
        );
        match wait::match_status(&mut c, &item, want, start).await {
            Ok(took) => took,
            Err(e) => panic!("{value:?} never became {want:?} at {}: {e}", self.ids[i]),
        }
    }

    /// Per-origin heads of node `i`.
    pub async fn heads(&self, i: usize) -> Vec<(String, u64)> {
        let mut h: Vec<_> = self.nodes[i]
            .status()
            .await
            .origins
            .into_iter()
            .map(|o| (o.origin, o.last_seq))
            .collect();
        h.sort();
        h
    }

    /// Waits (bounded) until every node holds the same heads, and returns them.
    pub async fn converge(&self) -> Vec<(String, u64)> {
        let start = Instant::now();
        loop {
            let mut all = Vec::new();
            for i in 0..self.nodes.len() {
                all.push(self.heads(i).await);
            }
            if all.windows(2).all(|w| w[0] == w[1]) {
                return all.remove(0);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "nodes never converged: {all:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// The node's counters, as Status shows them.

/// The count under `reason` in one of Status' reason lists (0 when absent).
pub fn reason_count(list: &[proto::ReasonCount], reason: &str) -> u64 {
    list.iter()
        .filter(|r| r.reason == reason)
        .map(|r| r.count)
        .sum()
}

impl TestNode {
    /// This node's counters for `peer` (all zero when nothing was counted).
    pub async fn counters(&self, peer: &str) -> proto::PeerCounters {
        self.status()
            .await
            .peer_counters
            .into_iter()
            .find(|c| c.member == peer)
            .unwrap_or_else(|| proto::PeerCounters {
                member: peer.to_string(),
                ..Default::default()
            })
    }

    /// Waits (bounded) until `done` holds for this node's counters for
    /// `peer`, and returns them.
    pub async fn wait_counters(
        &self,
        peer: &str,
        what: &str,
        done: impl Fn(&proto::PeerCounters) -> bool,
    ) -> proto::PeerCounters {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = self.counters(peer).await;
            if done(&c) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "never {what}; counters for {peer}: {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Coalition {
    /// The next version of the list with every operator key replaced by a
    /// fresh one and the threshold set to `threshold`, signed as a rotation
    /// must be (by [`SIGNERS`] of the keys before it and by every new key);
    /// the new keys become `operators`, so later versions are theirs to sign.
    pub fn rotate_operators(&mut self, threshold: u32) -> proto::SignedTrustList {
        let fresh: Vec<_> = (0..3)
            .map(|_| cix::keys::signing::SigningKeyFile::generate())
            .collect();
        self.list.version += 1;
        self.list.threshold = threshold;
        self.list.operator_keys = fresh
            .iter()
            .enumerate()
            .map(|(i, k)| proto::OperatorKey {
                id: format!("op-v{}-{i}", self.list.version),
                public_key: k.verifying_key().to_bytes().to_vec(),
            })
            .collect();
        let mut signed = self.sign(&self.list, &[0, 1]);
        for k in &fresh {
            cix::trust::list::sign(&mut signed, k);
        }
        self.local.operators = fresh;
        signed
    }

    /// The next version of the list after `edit`, signed by every operator
    /// key in force.
    pub fn next_by_all(
        &mut self,
        edit: impl FnOnce(&mut proto::TrustList),
    ) -> proto::SignedTrustList {
        self.list.version += 1;
        edit(&mut self.list);
        let all: Vec<usize> = (0..self.operators.len()).collect();
        self.sign(&self.list, &all)
    }
}

// ---------------------------------------------------------------------------
// Watchlist and alerts.

/// A Watchlist client on a connection of its own.
pub async fn watchlist(n: &TestNode) -> WatchlistClient<Channel> {
    WatchlistClient::new(n.identity().channel().await.unwrap())
}

/// An Alerts client on a connection of its own.
pub async fn alerts(n: &TestNode) -> AlertsClient<Channel> {
    AlertsClient::new(n.identity().channel().await.unwrap())
}

/// A subscription from `after`, on a connection of its own.
pub async fn subscribe(n: &TestNode, after: u64) -> Result<Streaming<AlertEvent>, tonic::Status> {
    alerts(n)
        .await
        .subscribe(proto::SubscribeRequest { after })
        .await
        .map(|r| r.into_inner())
}

/// The next `k` events of a subscription (bounded wait).
pub async fn next(s: &mut Streaming<AlertEvent>, k: usize) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    while out.len() < k {
        match tokio::time::timeout(Duration::from_secs(60), s.message()).await {
            Ok(Ok(Some(e))) => out.push(e),
            Ok(Ok(None)) => panic!("the subscription ended after {out:?}"),
            Ok(Err(e)) => panic!("the subscription failed after {out:?}: {e:?}"),
            Err(_) => panic!("no alert in 60 s after {out:?}"),
        }
    }
    out
}

/// No further event within a short while (the caller waited for a later
/// event first, so that the engine had time to act on what came before, or
/// this is a check that nothing at all comes).
pub async fn nothing_more(s: &mut Streaming<AlertEvent>) {
    if let Ok(m) = tokio::time::timeout(Duration::from_millis(1500), s.message()).await {
        panic!("unexpected event: {m:?}");
    }
}

/// Every event of the alert log (the first 1,000).
pub async fn list_all(n: &TestNode) -> Vec<AlertEvent> {
    alerts(n)
        .await
        .list(proto::ListAlertsRequest {
            after: 0,
            limit: 1000,
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

/// Runs `cix ARGS --dir <node's dir>` as a real process (no `CIX_DIR` or
/// `CIX_NODE` from the environment): success, stdout, stderr.
pub fn run_cli(node: &TestNode, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--dir")
        .arg(&node.dir)
        .env_remove("CIX_DIR")
        .env_remove("CIX_NODE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------
// Feedback and peer-message captures.

/// Turns `[feedback] mode = "named"` on (before start).
pub fn feedback_on(n: &TestNode) {
    n.append_config("\n[feedback]\nmode = \"named\"\n");
}

/// The Feedback frames (request and response bodies, with their capture
/// headers) in every capture file under `capture`.
pub fn feedback_frames(capture: &Path) -> Vec<(String, Vec<u8>)> {
    method_frames(capture, "/cix.v1.Federation/Feedback")
}

/// The frames of `method` (request and response bodies, with their capture
/// headers) in every capture file under `capture`.
pub fn method_frames(capture: &Path, method: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (_, bytes) in files_under(capture) {
        let mut rest = bytes.as_slice();
        while let Some(i) = rest.windows(5).position(|w| w == b"\n--- ") {
            rest = &rest[i + 5..];
            let end = rest.iter().position(|b| *b == b'\n').unwrap();
            let header = String::from_utf8_lossy(&rest[..end]).into_owned();
            let n: usize = header
                .rsplit_once(" (")
                .and_then(|(_, t)| t.strip_suffix(" bytes)"))
                .and_then(|t| t.parse().ok())
                .unwrap();
            let data = rest[end + 1..end + 1 + n].to_vec();
            rest = &rest[end + 1 + n..];
            if header.contains(method) {
                out.push((header, data));
            }
        }
    }
    out
}

/// The Feedback requests decoded from captured frames (each frame holding
/// one whole gRPC message: a 5-byte prefix, then the body).
pub fn feedback_requests(frames: &[(String, Vec<u8>)]) -> Vec<proto::FeedbackRequest> {
    frames
        .iter()
        .filter(|(h, data)| h.starts_with("request") && data.len() > 5)
        .map(|(h, data)| {
            prost::Message::decode(&data[5..])
                .unwrap_or_else(|e| panic!("{h}: not one whole FeedbackRequest: {e}"))
        })
        .collect()
}

impl TestNode {
    /// Everything this node heard about its own indicators (Outcomes.List).
    pub async fn outcomes(&self) -> proto::ListOutcomesResponse {
        self.clients()
            .await
            .outcomes
            .list(proto::ListOutcomesRequest::default())
            .await
            .unwrap()
            .into_inner()
    }

    /// The node's outcome figures of one UTC day, `YYYY-MM-DD`
    /// (Figures.Outcomes).
    pub async fn figures_of_day(&self, day: &str) -> proto::OutcomesReport {
        self.clients()
            .await
            .figures
            .outcomes(proto::OutcomesRequest {
                from: day.into(),
                to: day.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits (bounded, 60 s) until `f` holds of this node's Status, and
    /// returns that Status.
    pub async fn wait_status(
        &self,
        what: &str,
        f: impl Fn(&proto::StatusResponse) -> bool,
    ) -> proto::StatusResponse {
        self.wait_status_for(what, Duration::from_secs(60), f).await
    }

    /// [`TestNode::wait_status`] with another bound.
    pub async fn wait_status_for(
        &self,
        what: &str,
        bound: Duration,
        f: impl Fn(&proto::StatusResponse) -> bool,
    ) -> proto::StatusResponse {
        let start = Instant::now();
        loop {
            let s = self.status().await;
            if f(&s) {
                return s;
            }
            assert!(
                start.elapsed() < bound,
                "never reached {what} in {bound:?}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
