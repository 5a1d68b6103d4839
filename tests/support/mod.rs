//! Shared helpers for the integration tests: real `cix serve` processes on
//! 127.0.0.1 with an ephemeral port, real mutual TLS, real sled on disk,
//! with stdout and stderr captured at trace level for the leak checks.

#![allow(dead_code)]

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cix::{
    client::{Clients, Identity},
    proto,
    testbed::init,
};

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
    child: Option<Child>,
    runs: usize,
    pub addr: String,
    /// Where the node captures its peer listener's gRPC messages
    /// (`CIX_CAPTURE_PEER_MESSAGES`), if anywhere.
    pub capture: Option<PathBuf>,
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
        let addr_file = self.data_dir().join("member.addr");
        let _ = fs::remove_file(&addr_file);
        self.runs += 1;
        let out =
            fs::File::create(self.dir.join(format!("logs/stdout-{}.log", self.runs))).unwrap();
        let err =
            fs::File::create(self.dir.join(format!("logs/stderr-{}.log", self.runs))).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("CIX_LOG", "trace")
            .env(
                cix::capture::ENV,
                self.capture.as_deref().unwrap_or(Path::new("")),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(a) = fs::read_to_string(&addr_file) {
                if a.ends_with('\n') {
                    self.addr = a.trim().to_string();
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("node exited at start: {status}\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "node did not start\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM and wait; returns whether the node exited 0.
    pub fn stop(&mut self) -> bool {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s.success();
            }
            assert!(Instant::now() < deadline, "node did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
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

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

/// Every file under `dir`, recursively, with its bytes.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
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

/// A free TCP port on 127.0.0.1 for a node to bind next. Taken below the
/// kernel's ephemeral range (32768 and up), so that no `:0` bind of a node
/// starting meanwhile can take it; distinct within this test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7919);
    loop {
        let port =
            20_000 + (offset.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl TestNode {
    /// A federated node directory: peer listener on a free port, the
    /// coalition's token key installed. Its trust list is written by
    /// [`Coalition`].
    pub fn new_federated(node_id: &str, token_key: &Path) -> (TestNode, String, String, String) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node");
        let peer = format!("127.0.0.1:{}", free_port());
        let made = init::init(
            &dir,
            &init::InitOptions {
                node_id,
                listen: "127.0.0.1:0",
                force: false,
                peer_listen: Some(&peer),
                token_key: Some(token_key),
            },
        )
        .unwrap();
        fs::create_dir_all(dir.join("logs")).unwrap();
        // Tests want trust-list checks often.
        let text = fs::read_to_string(&made.config).unwrap();
        fs::write(
            &made.config,
            text.replace(
                "root_file = \"trust/root.ctl\"",
                "root_file = \"trust/root.ctl\"\nsync_seconds = 1",
            ) + "\n[replication]\npull_seconds = 1\n",
        )
        .unwrap();
        let node = TestNode {
            config: made.config,
            dir,
            tmp,
            child: None,
            runs: 0,
            capture: None,
            addr: String::new(),
        };
        (
            node,
            peer,
            made.peer_spki_sha256.unwrap(),
            made.signing_public_hex,
        )
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

/// A small coalition of real nodes under one operator-signed trust list.
pub struct Coalition {
    pub tmp: tempfile::TempDir,
    pub operators: Vec<cix::keys::signing::SigningKeyFile>,
    pub token_key: PathBuf,
    pub nodes: Vec<TestNode>,
    /// Member ids, in node order.
    pub ids: Vec<String>,
    /// Peer SPKI fingerprints, in node order.
    pub spkis: Vec<String>,
    pub list: proto::TrustList,
}

pub const COALITION: &str = "test-coalition";

impl Coalition {
    /// Nodes (not started) and a version-1 list: three operator keys,
    /// threshold two, every node an active member with every capability.
    pub fn new(ids: &[&str]) -> Coalition {
        let tmp = tempfile::tempdir().unwrap();
        let token_key = tmp.path().join("epoch-1.key");
        let key = cix::keys::TokenKey::generate();
        key.write_new(&token_key).unwrap();
        let operators: Vec<_> = (0..3)
            .map(|_| cix::keys::signing::SigningKeyFile::generate())
            .collect();
        let now = cix::epochs::now_unix();
        let mut nodes = Vec::new();
        let mut members = Vec::new();
        let mut spkis = Vec::new();
        for id in ids {
            let (node, peer, spki, signing) = TestNode::new_federated(id, &token_key);
            let mut m = cix::trust::list::member(
                id,
                &format!("Test member {id}"),
                proto::MemberKind::Bank,
                &spki,
                &peer,
            );
            m.signing_keys.push(proto::LogSigningKey {
                public_key: hex::decode(&signing).unwrap(),
                retired: false,
                last_seq: 0,
            });
            members.push(m);
            spkis.push(spki);
            nodes.push(node);
        }
        let list = cix::trust::list::new_list(
            COALITION,
            &operators
                .iter()
                .map(|k| k.verifying_key())
                .collect::<Vec<_>>(),
            2,
            vec![proto::KeyEpoch {
                id: 1,
                valid_from: now - 86_400,
                valid_until: now + 365 * 86_400,
                key_sha256: key.fingerprint(),
            }],
            members,
            now,
            now + 30 * 86_400,
        );
        let c = Coalition {
            tmp,
            operators,
            token_key,
            nodes,
            ids: ids.iter().map(|s| s.to_string()).collect(),
            spkis,
            list,
        };
        let root = c.sign(&c.list, &[0, 1]);
        for n in &c.nodes {
            fs::write(
                n.dir.join("trust/root.ctl"),
                prost::Message::encode_to_vec(&root),
            )
            .unwrap();
        }
        c
    }

    /// Re-signs `self.list` (edited before the nodes start) as every node's root list.
    pub fn rewrite_root(&self) {
        let root = self.sign(&self.list, &[0, 1]);
        for n in &self.nodes {
            fs::write(
                n.dir.join("trust/root.ctl"),
                prost::Message::encode_to_vec(&root),
            )
            .unwrap();
        }
    }

    /// Signs `body` with the operators at `signers`.
    pub fn sign(&self, body: &proto::TrustList, signers: &[usize]) -> proto::SignedTrustList {
        let mut signed = proto::SignedTrustList {
            body: prost::Message::encode_to_vec(body),
            signatures: vec![],
        };
        for &i in signers {
            cix::trust::list::sign(&mut signed, &self.operators[i]);
        }
        signed
    }

    /// The next version of the list, edited by `edit`, signed by operators 0 and 1.
    pub fn next(&mut self, edit: impl FnOnce(&mut proto::TrustList)) -> proto::SignedTrustList {
        self.list.version += 1;
        self.list.issued_at = cix::epochs::now_unix();
        edit(&mut self.list);
        self.sign(&self.list, &[0, 1])
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
        let (cert, key) = self.nodes[as_node].peer_cert();
        self.federation_with(to, &cert, &key).await
    }

    pub async fn federation_with(
        &self,
        to: usize,
        cert: &Path,
        key: &Path,
    ) -> Result<proto::federation_client::FederationClient<tonic::transport::Channel>, String> {
        let config = cix::tls::peer_client_config(cert, key, vec![self.spkis[to].clone()])
            .map_err(|e| e.to_string())?;
        let channel = cix::tls::connect(&self.nodes[to].peer_addr(), None, config)
            .await
            .map_err(|e| e.to_string())?;
        Ok(proto::federation_client::FederationClient::new(channel))
    }

    /// Waits (bounded) until node `i` holds trust-list `version`.
    pub async fn wait_for_version(&self, i: usize, version: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.nodes[i].status().await.trust_version == version {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never reached trust list version {version}",
                self.ids[i]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
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
        loop {
            if status_of(&match_one(&mut c, kind, value).await) == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{value:?} never became {want:?} at {}",
                self.ids[i]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
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
