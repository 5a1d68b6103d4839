//! Replication under attack, on real nodes over real mutual TLS: a relay
//! that tampers with the batches it passes on (refused; an honest path still
//! delivers), an origin that signs two different histories (the fork is
//! recorded, propagated and freezes the origin everywhere), a retired
//! signing key or a suspension bounding what a lagging node accepts, a
//! relay that strips a live entry by "purging" it (refused), a batch
//! larger than peers take (refused; the rest of the pull still arrives), and
//! a peer answering GetTrustList with a bad chain of lists (too many, one
//! oversized, out of order, a step below the old threshold, the newest list
//! without the key change before it: nothing applied, counted by reason).
//!
//! Every refusal is asserted by its typed reason, as the receiving node
//! counts it per peer in Status; "nothing more happened" is shown by pulls
//! the node completed meanwhile, never by sleeping.
//!
//! The misbehaving members are `FakePeer`s: real tonic servers in the test
//! process, behind the crate's own peer-listener TLS, serving whatever
//! batches the test hands them.

mod support;

use std::{
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use cix::{
    batch,
    counters::{BatchOutcome, BatchRejection, RequestRefusal, SessionFailure},
    ident,
    keys::signing::SigningKeyFile,
    keys::TokenKey,
    proto::{
        self,
        federation_server::{Federation, FederationServer},
        pull_response, Kind, MatchStatus,
    },
    token::{Token, Tokenizer},
};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use prost::Message;
use support::*;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

// ---------------------------------------------------------------------------
// A fake member's peer listener.

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What a fake peer answers; shared with the test so that it can change it.
#[derive(Clone, Default)]
struct FakeState {
    /// Streamed, in order, on every Pull.
    responses: Arc<Mutex<Vec<proto::PullResponse>>>,
    /// Sent once on every Watch (then the stream stays open).
    heads: Arc<Mutex<Vec<proto::OriginHead>>>,
    pulls: Arc<AtomicUsize>,
    /// What GetTrustList answers (by default: version 0, no list).
    trust_answer: Arc<Mutex<Option<proto::GetTrustListResponse>>>,
    /// When set, every Pull stream sends nothing and never ends.
    stall: Arc<AtomicBool>,
    /// How long Watch takes to answer.
    watch_delay: Arc<Mutex<Duration>>,
    /// Watch streams open now.
    watching: Arc<AtomicUsize>,
}

/// Counts a Watch stream as open until the stream is dropped.
struct OpenWatch(Arc<AtomicUsize>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tonic::async_trait]
impl Federation for FakeState {
    async fn feedback(
        &self,
        _req: Request<proto::FeedbackRequest>,
    ) -> Result<Response<proto::FeedbackResponse>, Status> {
        Err(Status::unimplemented(
            "a relay under test takes no feedback",
        ))
    }

    async fn relay_feedback(
        &self,
        _req: Request<proto::RelayFeedbackRequest>,
    ) -> Result<Response<proto::FeedbackResponse>, Status> {
        Err(Status::unimplemented(
            "a relay under test relays no feedback",
        ))
    }

    async fn query_prefix(
        &self,
        _req: Request<proto::QueryPrefixRequest>,
    ) -> Result<Response<proto::QueryPrefixResponse>, Status> {
        Err(Status::unimplemented(
            "a relay under test answers no queries",
        ))
    }

    async fn get_trust_list(
        &self,
        _req: Request<proto::GetTrustListRequest>,
    ) -> Result<Response<proto::GetTrustListResponse>, Status> {
        let answer = self.trust_answer.lock().clone();
        Ok(Response::new(answer.unwrap_or_default()))
    }

    async fn publish_trust_list(
        &self,
        _req: Request<proto::SignedTrustList>,
    ) -> Result<Response<proto::PublishTrustListResponse>, Status> {
        Ok(Response::new(proto::PublishTrustListResponse {
            version: 0,
            applied: false,
        }))
    }

    type PullStream = BoxStream<proto::PullResponse>;

    async fn pull(
        &self,
        _req: Request<proto::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        self.pulls.fetch_add(1, Ordering::SeqCst);
        if self.stall.load(Ordering::SeqCst) {
            return Ok(Response::new(Box::pin(futures::stream::pending())));
        }
        let items = self.responses.lock().clone();
        Ok(Response::new(Box::pin(futures::stream::iter(
            items.into_iter().map(Ok),
        ))))
    }

    type WatchStream = BoxStream<proto::WatchResponse>;

    async fn watch(
        &self,
        _req: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let delay = *self.watch_delay.lock();
        tokio::time::sleep(delay).await;
        let heads = self.heads.lock().clone();
        let first = futures::stream::once(async move { Ok(proto::WatchResponse { heads }) });
        self.watching.fetch_add(1, Ordering::SeqCst);
        let open = OpenWatch(self.watching.clone());
        let rest = futures::stream::pending().map(move |m| {
            let _open = &open;
            m
        });
        Ok(Response::new(Box::pin(first.chain(rest))))
    }
}

/// A member's peer listener run by the test: real TLS 1.3 with client
/// certificates (any key accepted), serving what the test says.
struct FakePeer {
    id: String,
    addr: String,
    spki: String,
    cert: PathBuf,
    key: PathBuf,
    state: FakeState,
    task: tokio::task::JoinHandle<()>,
}

impl FakePeer {
    async fn start(dir: &Path, id: &str) -> FakePeer {
        let (_, _, ca) = cix::testbed::init::new_ca(&format!("fake CA {id}")).unwrap();
        let cert = dir.join(format!("{id}.crt"));
        let key = dir.join(format!("{id}.key"));
        // A client-auth certificate: nodes pin peers by SPKI only.
        let spki = cix::testbed::init::issue_client(&ca, id, &cert, &key).unwrap();
        let anyone: cix::tls::SpkiPolicy = Arc::new(|_: &str| true);
        let config = cix::tls::peer_server_config(&cert, &key, None, anyone).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let incoming = ReceiverStream::new(cix::tls::accept_loop(
            listener,
            config,
            cix::tls::Connections::default(),
            cix::tls::AcceptLimits::MEMBER,
            None,
        ));
        let state = FakeState::default();
        let service = FederationServer::new(state.clone());
        let task = tokio::spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = r {
                eprintln!("fake peer stopped: {e}");
            }
        });
        FakePeer {
            id: id.to_string(),
            addr,
            spki,
            cert,
            key,
            state,
            task,
        }
    }

    /// Its trust-list entry: an active member with `caps`, its TLS key and endpoint.
    fn member(&self, caps: &[proto::PeerCapability]) -> proto::Member {
        let mut m = cix::trust::edit::member(
            &self.id,
            &format!("Fake member {}", self.id),
            proto::MemberKind::Bank,
            &self.spki,
            &self.addr,
        );
        m.capabilities = caps.iter().map(|c| *c as i32).collect();
        m
    }

    /// What every Pull streams from now on.
    fn serve(&self, batches: &[proto::LogBatch]) {
        *self.state.responses.lock() = batches
            .iter()
            .map(|b| proto::PullResponse {
                item: Some(pull_response::Item::Batch(b.clone())),
            })
            .collect();
    }

    /// What every Watch announces first.
    fn announce(&self, heads: Vec<proto::OriginHead>) {
        *self.state.heads.lock() = heads;
    }

    fn pulls(&self) -> usize {
        self.state.pulls.load(Ordering::SeqCst)
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// Helpers.

/// Re-signs the coalition's current list (same version) and writes it as
/// every node's root list. Before the nodes first start.
fn write_root(c: &Coalition) {
    let root = c.sign(&c.list, &[0, 1]);
    for n in &c.nodes {
        write_root_of(n, &root);
    }
}

fn write_root_of(n: &TestNode, root: &proto::SignedTrustList) {
    std::fs::write(n.dir.join("trust/root.ctl"), root.encode_to_vec()).unwrap();
}

fn member_mut<'a>(l: &'a mut proto::TrustList, id: &str) -> &'a mut proto::Member {
    l.members.iter_mut().find(|m| m.id == id).unwrap()
}

/// Replaces the `peers = [...]` line that `pull_only_from` wrote.
fn set_peers(n: &TestNode, peers: &[&str]) {
    let text = std::fs::read_to_string(&n.config).unwrap();
    let list: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    let mut replaced = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("peers = ") {
                replaced = true;
                format!("peers = [{}]", list.join(", "))
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(replaced, "no peers line in {}", n.config.display());
    std::fs::write(&n.config, out.join("\n") + "\n").unwrap();
}

fn tokenizer(c: &Coalition) -> Tokenizer {
    Tokenizer::new(&TokenKey::load(&c.token_key).unwrap())
}

/// The coalition token of a domain, as a contributing node computes it.
fn domain_token(t: &Tokenizer, value: &str) -> Token {
    let canonical = ident::normalize(ident::Kind::Domain, value).unwrap();
    t.token(ident::Kind::Domain, canonical.as_bytes())
}

fn domain_entry(t: &Tokenizer, value: &str) -> proto::LogEntry {
    batch::entry(
        &domain_token(t, value),
        i32::from(ident::Kind::Domain.code()),
        1,
    )
}

/// An ADD batch of `origin`, signed by `key`.
fn add_batch(
    origin: &str,
    first_seq: u64,
    prev_hash: Vec<u8>,
    entries: Vec<proto::LogEntry>,
    case_ref: &str,
    key: &SigningKeyFile,
) -> batch::Batch {
    let header = proto::BatchHeader {
        origin: origin.into(),
        first_seq,
        prev_hash,
        created_unix: cix::time::Clock::system().now(),
        op: proto::LogOp::Add as i32,
        case_ref: case_ref.into(),
        tier: proto::Tier::Confirmed as i32,
        ..Default::default()
    };
    batch::sign(header, entries, key)
}

fn header_of(b: &proto::LogBatch) -> proto::BatchHeader {
    proto::BatchHeader::decode(b.header.as_slice()).unwrap()
}

/// Every batch of `origin` node `node` streams to a Pull from scratch by the
/// member holding `cert`/`key`.
async fn pull_all(
    c: &Coalition,
    node: usize,
    cert: &Path,
    key: &Path,
    origin: &str,
) -> Vec<proto::LogBatch> {
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut f = c.federation_with(node, cert, key).await.unwrap();
        let mut s = f
            .pull(proto::PullRequest { have: vec![] })
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = s.message().await.unwrap() {
            if let Some(pull_response::Item::Batch(b)) = m.item {
                if header_of(&b).origin == origin {
                    out.push(b);
                }
            }
        }
        out
    })
    .await
    .expect("pull did not finish")
}

/// A log with ANSI colour codes removed.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn log_lines(text: &str, needles: &[&str]) -> Vec<String> {
    plain(text)
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Waits (bounded) until one line of the node's logs holds every needle.
async fn wait_log_line(n: &TestNode, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = log_lines(&n.logs(), needles).into_iter().next() {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?}; rejections and forks logged:\n{}",
            log_lines(&n.logs(), &["rejected"])
                .into_iter()
                .chain(log_lines(&n.logs(), &["fork"]))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Batches from a peer refused for `r`.
fn rejected(k: &proto::PeerCounters, r: BatchRejection) -> u64 {
    reason_count(&k.batches_rejected, r.name())
}

/// Batches from a peer taken or held with outcome `o`.
fn received(k: &proto::PeerCounters, o: BatchOutcome) -> u64 {
    reason_count(&k.batches, o.name())
}

/// Asserts that every batch refused from this peer was refused for one of `reasons`.
fn assert_refused_only_for(k: &proto::PeerCounters, reasons: &[BatchRejection]) {
    let names: Vec<&str> = reasons.iter().map(|r| r.name()).collect();
    assert!(
        k.batches_rejected
            .iter()
            .all(|r| names.contains(&r.reason.as_str())),
        "refused from {} for other reasons than {names:?}: {:?}",
        k.member,
        k.batches_rejected
    );
}

/// Asserts that each pull from the peer refused exactly `per_pull` batches
/// for `r`: `k.pulls` completed pulls, and perhaps one under way.
fn assert_refused_per_pull(k: &proto::PeerCounters, r: BatchRejection, per_pull: u64) {
    let n = rejected(k, r);
    assert!(
        per_pull * k.pulls <= n && n <= per_pull * (k.pulls + 1),
        "{n} batches refused for {r} in {} pulls from {}, not {per_pull} a pull",
        k.pulls,
        k.member
    );
}

/// Waits until node `n` has completed `more` pulls from `peer` beyond `since`
/// (later pulls changed nothing, where the test then checks it).
async fn wait_more_pulls(n: &TestNode, peer: &str, since: &proto::PeerCounters, more: u64) {
    let want = since.pulls + more;
    n.wait_counters(peer, &format!("{want} pulls completed"), |k| {
        k.pulls >= want
    })
    .await;
}

/// Every peer's counters at node `n`.
async fn all_counters(n: &TestNode) -> Vec<proto::PeerCounters> {
    n.status().await.peer_counters
}

/// Waits (bounded) until node `i` holds exactly these heads.
async fn wait_heads(c: &Coalition, i: usize, want: &[(&str, u64)]) {
    let want: Vec<(String, u64)> = want.iter().map(|(o, s)| (o.to_string(), *s)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = c.heads(i).await;
        if have == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {have:?}, never {want:?}",
            c.ids[i]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_is(
    c: &mut proto::screening_client::ScreeningClient<tonic::transport::Channel>,
    value: &str,
) -> MatchStatus {
    let r = c
        .r#match(proto::MatchRequest {
            identifiers: vec![id(Kind::Domain, value)],
        })
        .await
        .unwrap()
        .into_inner();
    status_of(&r.results[0])
}

/// Asserts the match status of each value at node `i` now.
async fn assert_matches(c: &Coalition, i: usize, values: &[&str], want: MatchStatus) {
    let mut cl = c.nodes[i].clients().await;
    for v in values {
        assert_eq!(
            status_is(&mut cl.screening, v).await,
            want,
            "{v} at {}",
            c.ids[i]
        );
    }
}

fn rcv(value: &str) -> proto::ContributionItem {
    item(Kind::Domain, value)
}

// ---------------------------------------------------------------------------

/// Lists `relay` as a full member (contribute, replicate, query) with a log
/// signing key of its own, written to every node's root list; returns the key.
fn list_contributing_member(c: &mut Coalition, relay: &FakePeer) -> SigningKeyFile {
    let key = SigningKeyFile::generate();
    let mut m = relay.member(&[
        proto::PeerCapability::Contribute,
        proto::PeerCapability::Replicate,
        proto::PeerCapability::Query,
    ]);
    m.signing_keys.push(proto::LogSigningKey {
        public_key: key.verifying_key().to_bytes().to_vec(),
        retired: false,
        last_seq: 0,
        first_seq: 0,
    });
    c.list.members.push(m);
    write_root(c);
    key
}

/// Lists `id` as a contributing origin with no node and no endpoint (TLS key
/// `spki_seed` as hex), whose log signing key the test holds; returns it.
/// The caller writes the root list.
fn list_test_held_origin(c: &mut Coalition, id: &str, spki_seed: u64) -> SigningKeyFile {
    let key = SigningKeyFile::generate();
    let mut m = cix::trust::edit::member(
        id,
        "Test-held origin",
        proto::MemberKind::Liaison,
        &format!("{spki_seed:064x}"),
        "",
    );
    m.capabilities = vec![proto::PeerCapability::Contribute as i32];
    m.signing_keys.push(proto::LogSigningKey {
        public_key: key.verifying_key().to_bytes().to_vec(),
        retired: false,
        last_seq: 0,
        first_seq: 0,
    });
    c.list.members.push(m);
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_tampers_is_refused_and_an_honest_path_still_delivers() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c"]);
    let relay = FakePeer::start(c.tmp.path(), "relay-x").await;
    // The relay is a full member, with a log signing key of its own.
    let relay_key = list_contributing_member(&mut c, &relay);
    c.pull_only_from(0, &["bank-b"]);
    c.pull_only_from(1, &["liaison-a"]);
    c.pull_only_from(2, &["relay-x"]);
    c.nodes[0].start();
    c.nodes[1].start();

    // liaison-a contributes three batches of three; bank-b gets them directly.
    let values: Vec<Vec<String>> = (0..3)
        .map(|b| (0..3).map(|i| format!("real-{b}-{i}.example")).collect())
        .collect();
    for (b, v) in values.iter().enumerate() {
        let r = c
            .contribute(0, v.iter().map(|x| rcv(x)).collect(), &format!("CASE-{b}"))
            .await;
        let b = b as u64;
        assert_eq!((r.first_seq, r.last_seq), (3 * b + 1, 3 * b + 3));
    }
    c.wait_match(1, Kind::Domain, &values[2][2], MatchStatus::Match)
        .await;

    // The relay pulls liaison-a's real batches, as any member may.
    let real = pull_all(&c, 0, &relay.cert, &relay.key, "liaison-a").await;
    assert_eq!(real.len(), 3, "liaison-a's batches");
    let t = tokenizer(&c);
    let evil = "tampered.example";
    // (a) one entry's token changed.
    let mut changed = real[0].clone();
    changed.entries[1].token = domain_token(&t, evil).0.to_vec().into();
    // (b) an entry dropped from the middle.
    let mut dropped = real[1].clone();
    dropped.entries.remove(1);
    // (c) two entries swapped.
    let mut swapped = real[2].clone();
    swapped.entries.swap(0, 2);
    // (d) batch 2's header and entries changed and re-signed by the relay's own key.
    let mut h = header_of(&real[1]);
    h.case_ref = "RELAY-FORGED".into();
    let mut entries = real[1].entries.clone();
    entries[0] = domain_entry(&t, evil);
    let resigned = batch::sign(h, entries, &relay_key).raw;
    // (e) a forged next batch of liaison-a, chained to its real head, signed by the relay.
    let next = add_batch(
        "liaison-a",
        10,
        batch::Batch::decode(real[2].clone())
            .unwrap()
            .hash()
            .to_vec(),
        vec![domain_entry(&t, evil)],
        "RELAY-NEXT",
        &relay_key,
    )
    .raw;
    // (f) batch 1's header edited (case reference) but not re-signed.
    let mut edited = real[0].clone();
    let mut h = header_of(&real[0]);
    h.case_ref = "EDITED".into();
    edited.header = h.encode_to_vec();

    relay.serve(&[changed, dropped, swapped, resigned, next, edited]);
    relay.announce(vec![proto::OriginHead {
        origin: "liaison-a".into(),
        last_seq: 10,
        hash: vec![0xab; 32],
    }]);
    c.nodes[2].start();

    // bank-c refuses every one, counted against the relay: (a), (b) and (c)
    // because the entries do not match the signed header, (d), (e) and (f)
    // because no signing key of liaison-a allowed there signed them.
    let tampered = |k: &proto::PeerCounters| {
        k.pulls >= 1
            && rejected(k, BatchRejection::Entries) >= 3
            && rejected(k, BatchRejection::Signature) >= 3
    };
    let k = c.nodes[2]
        .wait_counters("relay-x", "refused the relay's six batches", tampered)
        .await;
    assert_refused_only_for(&k, &[BatchRejection::Entries, BatchRejection::Signature]);
    assert_refused_per_pull(&k, BatchRejection::Entries, 3);
    assert_refused_per_pull(&k, BatchRejection::Signature, 3);
    assert!(relay.pulls() >= 1);
    // A few more pulls from the relay: still nothing of liaison-a.
    wait_more_pulls(&c.nodes[2], "relay-x", &k, 2).await;
    let k = c.nodes[2].counters("relay-x").await;
    assert!(
        k.batches.is_empty(),
        "taken from the relay: {:?}",
        k.batches
    );
    assert_refused_only_for(&k, &[BatchRejection::Entries, BatchRejection::Signature]);
    let heads = c.heads(2).await;
    assert!(
        heads.iter().all(|(o, s)| o != "liaison-a" || *s == 0),
        "bank-c took liaison-a's batches from a tampering relay: {heads:?}"
    );
    assert!(c.nodes[2].status().await.forks.is_empty());
    let mut all: Vec<&str> = values.iter().flatten().map(String::as_str).collect();
    all.push(evil);
    assert_matches(&c, 2, &all, MatchStatus::NoMatch).await;

    // The honest path: bank-c also pulls from bank-b.
    assert!(c.nodes[2].stop());
    set_peers(&c.nodes[2], &["relay-x", "bank-b"]);
    c.nodes[2].start();
    for v in values.iter().flatten() {
        c.wait_match(2, Kind::Domain, v, MatchStatus::Match).await;
    }
    let heads = c.converge().await;
    assert_eq!(heads, vec![("liaison-a".to_string(), 9)]);
    // What bank-c holds is liaison-a's, not the relay's.
    let mut cl = c.nodes[2].clients().await;
    let hit = match_one(&mut cl, Kind::Domain, &values[1][0]).await;
    assert_eq!(hit.hits.len(), 1);
    assert_eq!(hit.hits[0].origin, "liaison-a");
    assert_eq!(hit.hits[0].case_ref, "CASE-1");
    assert_matches(&c, 2, &[evil], MatchStatus::NoMatch).await;
    // The relay is still connected, still refused, and never caused a fork
    // (this run of bank-c counts from its restart).
    let pulls = relay.pulls();
    let k = c.nodes[2]
        .wait_counters(
            "relay-x",
            "refused the relay again after the restart",
            tampered,
        )
        .await;
    assert_refused_only_for(&k, &[BatchRejection::Entries, BatchRejection::Signature]);
    assert!(
        k.batches.is_empty(),
        "taken from the relay: {:?}",
        k.batches
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.pulls() <= pulls {
        assert!(
            Instant::now() < deadline,
            "the relay was not pulled from after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = c.nodes[2].counters("bank-b").await;
    assert!(b.batches_rejected.is_empty(), "{:?}", b.batches_rejected);
    assert!(received(&b, BatchOutcome::Applied) >= 3, "{b:?}");
    assert_eq!(c.heads(2).await, vec![("liaison-a".to_string(), 9)]);
    for i in 0..3 {
        assert!(c.nodes[i].status().await.forks.is_empty(), "{}", c.ids[i]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_is_recorded_propagated_and_freezes_the_origin_everywhere() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c"]);
    let fake_x = FakePeer::start(c.tmp.path(), "fake-x").await;
    let fake_y = FakePeer::start(c.tmp.path(), "fake-y").await;
    // liaison-x: an origin whose key the test holds; no node runs it.
    let x_key = list_test_held_origin(&mut c, "liaison-x", 0x5eed);
    c.list
        .members
        .push(fake_x.member(&[proto::PeerCapability::Replicate]));
    c.list
        .members
        .push(fake_y.member(&[proto::PeerCapability::Replicate]));
    write_root(&c);
    c.pull_only_from(0, &["fake-x", "bank-b"]);
    c.pull_only_from(1, &["fake-y", "liaison-a"]);
    c.pull_only_from(2, &["liaison-a"]);

    // Two different, validly signed first batches of liaison-x.
    let t = tokenizer(&c);
    let (vx, vy) = ("fork-x.example", "fork-y.example");
    let x1 = add_batch(
        "liaison-x",
        1,
        vec![0; 32],
        vec![domain_entry(&t, vx)],
        "CASE-X",
        &x_key,
    );
    let y1 = add_batch(
        "liaison-x",
        1,
        vec![0; 32],
        vec![domain_entry(&t, vy)],
        "CASE-Y",
        &x_key,
    );
    assert_ne!(x1.hash(), y1.hash());
    for (fake, b) in [(&fake_x, &x1), (&fake_y, &y1)] {
        fake.serve(std::slice::from_ref(&b.raw));
        fake.announce(vec![proto::OriginHead {
            origin: "liaison-x".into(),
            last_seq: 1,
            hash: b.hash().to_vec(),
        }]);
    }
    c.start_all();

    // Every node ends up with the fork recorded: liaison-a and bank-b from
    // each other, bank-c (which pulls only from liaison-a) from the evidence.
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let forks = c.nodes[i].status().await.forks;
            if !forks.is_empty() {
                assert_eq!(forks.len(), 1, "{} {forks:?}", c.ids[i]);
                assert_eq!(forks[0].origin, "liaison-x");
                assert_eq!(forks[0].frozen_from_seq, 1);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never recorded the fork\n{}",
                c.ids[i],
                log_lines(&c.nodes[i].logs(), &["liaison-x"]).join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_log_line(
            &c.nodes[i],
            &["fork:", "origin=\"liaison-x\"", "frozen_from_seq=1"],
        )
        .await;
    }
    assert!(fake_x.pulls() >= 1 && fake_y.pulls() >= 1);
    // liaison-a and bank-b saw the fork themselves (a batch differing from
    // theirs, or the other's evidence); bank-c from liaison-a's evidence.
    for i in 0..2 {
        let seen: u64 = all_counters(&c.nodes[i])
            .await
            .iter()
            .map(|k| received(k, BatchOutcome::Fork) + reason_count(&k.fork_evidence, "new"))
            .sum();
        assert!(seen >= 1, "{} recorded the fork from nothing", c.ids[i]);
    }
    let k = c.nodes[2]
        .wait_counters("liaison-a", "took fork evidence", |k| {
            reason_count(&k.fork_evidence, "new") == 1
        })
        .await;
    assert!(k.fork_evidence_rejected.is_empty(), "{k:?}");
    // Nothing refused anywhere: both histories are validly signed.
    for i in 0..3 {
        for k in all_counters(&c.nodes[i]).await {
            assert!(
                k.batches_rejected.is_empty(),
                "{} refused from {}: {:?}",
                c.ids[i],
                k.member,
                k.batches_rejected
            );
        }
    }
    // Neither history of liaison-x matches anywhere, now or a few pulls later.
    let peers_of = [
        &["fake-x", "bank-b"][..],
        &["fake-y", "liaison-a"],
        &["liaison-a"],
    ];
    for _ in 0..2 {
        for i in 0..3 {
            assert_matches(&c, i, &[vx, vy], MatchStatus::NoMatch).await;
        }
        let mut now = Vec::new();
        for (i, peers) in peers_of.iter().enumerate() {
            for p in *peers {
                now.push((i, *p, c.nodes[i].counters(p).await));
            }
        }
        for (i, p, k) in &now {
            wait_more_pulls(&c.nodes[*i], p, k, 2).await;
        }
    }
    // The first batch each of liaison-a and bank-b received is kept.
    assert_eq!(
        c.heads(0).await,
        vec![("liaison-x".to_string(), 1)],
        "liaison-a"
    );
    assert_eq!(
        c.heads(1).await,
        vec![("liaison-x".to_string(), 1)],
        "bank-b"
    );
    // The evidence is kept: after a restart bank-c still shows the fork and
    // still matches neither history.
    c.nodes[2].restart();
    let forks = c.nodes[2].status().await.forks;
    assert_eq!(forks.len(), 1, "{forks:?}");
    assert_eq!(
        (forks[0].origin.as_str(), forks[0].frozen_from_seq),
        ("liaison-x", 1)
    );
    assert_matches(&c, 2, &[vx, vy], MatchStatus::NoMatch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_key_or_suspension_bounds_what_a_lagging_node_accepts() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c", "bank-d"]);
    c.pull_only_from(1, &["liaison-a"]);
    c.pull_only_from(2, &["liaison-a"]);
    c.pull_only_from(3, &["bank-c"]);
    c.nodes[0].start();
    c.nodes[1].start();
    c.nodes[2].start();
    // bank-b stops before liaison-a contributes anything: it lags.
    assert!(c.nodes[1].stop());
    let values: Vec<String> = (1..=5).map(|i| format!("lag-{i}.example")).collect();
    for (i, v) in values.iter().enumerate() {
        let r = c.contribute(0, vec![rcv(v)], &format!("CASE-{i}")).await;
        assert_eq!((r.first_seq, r.last_seq), (i as u64 + 1, i as u64 + 1));
    }
    wait_heads(&c, 2, &[("liaison-a", 5)]).await;

    // The operators retire liaison-a's key after sequence 3, with no new key.
    let v2 = c.next(|l| {
        let k = &mut member_mut(l, "liaison-a").signing_keys[0];
        k.retired = true;
        k.last_seq = 3;
    });
    assert!(
        c.federation(0, 2)
            .await
            .unwrap()
            .publish_trust_list(v2.clone())
            .await
            .unwrap()
            .into_inner()
            .applied
    );
    c.wait_for_version(0, 2).await;
    c.wait_for_version(2, 2).await;

    // bank-b returns with the new list as its root (its store holds v1).
    write_root_of(&c.nodes[1], &v2);
    c.nodes[1].start();
    assert_eq!(c.nodes[1].status().await.trust_version, 2);
    wait_heads(&c, 1, &[("liaison-a", 3)]).await;
    // Batches 4 and 5, signed by the retired key past its last sequence
    // number: refused on every pull.
    let k = c.nodes[1]
        .wait_counters("liaison-a", "refused batches 4 and 5", |k| {
            k.pulls >= 1 && rejected(k, BatchRejection::Signature) >= 2
        })
        .await;
    assert_refused_only_for(&k, &[BatchRejection::Signature]);
    assert_refused_per_pull(&k, BatchRejection::Signature, 2);
    assert_eq!(received(&k, BatchOutcome::Applied), 3, "{k:?}");
    // Several pulls later: still 3.
    wait_more_pulls(&c.nodes[1], "liaison-a", &k, 3).await;
    assert_eq!(c.heads(1).await, vec![("liaison-a".to_string(), 3)]);
    let k = c.nodes[1].counters("liaison-a").await;
    assert_refused_only_for(&k, &[BatchRejection::Signature]);
    assert_eq!(received(&k, BatchOutcome::Applied), 3, "{k:?}");
    let v: Vec<&str> = values.iter().map(String::as_str).collect();
    assert_matches(&c, 1, &v[..3], MatchStatus::Match).await;
    assert_matches(&c, 1, &v[3..], MatchStatus::NoMatch).await;

    // The operators suspend liaison-a after sequence 2. A fresh node that
    // pulls from bank-c (which holds 1..=5) takes 1 and 2 only.
    let v3 = c.next(|l| {
        let a = member_mut(l, "liaison-a");
        a.status = proto::MemberStatus::Suspended as i32;
        a.suspended_after_seq = 2;
    });
    assert!(
        c.federation(2, 1)
            .await
            .unwrap()
            .publish_trust_list(v3.clone())
            .await
            .unwrap()
            .into_inner()
            .applied
    );
    c.wait_for_version(2, 3).await;
    write_root_of(&c.nodes[3], &v3);
    c.nodes[3].start();
    assert_eq!(c.nodes[3].status().await.trust_version, 3);
    wait_heads(&c, 3, &[("liaison-a", 2)]).await;
    // Batches 3, 4 and 5 end past the suspension's last sequence number.
    let k = c.nodes[3]
        .wait_counters("bank-c", "refused batches 3 to 5", |k| {
            k.pulls >= 1 && rejected(k, BatchRejection::PastSuspension) >= 3
        })
        .await;
    assert_refused_only_for(&k, &[BatchRejection::PastSuspension]);
    assert_refused_per_pull(&k, BatchRejection::PastSuspension, 3);
    assert_eq!(received(&k, BatchOutcome::Applied), 2, "{k:?}");
    wait_more_pulls(&c.nodes[3], "bank-c", &k, 3).await;
    assert_eq!(c.heads(3).await, vec![("liaison-a".to_string(), 2)]);
    let k = c.nodes[3].counters("bank-c").await;
    assert_refused_only_for(&k, &[BatchRejection::PastSuspension]);
    assert_eq!(received(&k, BatchOutcome::Applied), 2, "{k:?}");
    assert_matches(&c, 3, &v[..2], MatchStatus::Match).await;
    assert_matches(&c, 3, &v[2..], MatchStatus::NoMatch).await;
}

/// A relay may not suppress a live indicator by handing on its batch with the
/// entry "purged" (replaced by its salted hash, as retention does to dead
/// entries): the batch still verifies, so the receiving node must refuse it
/// (no honest node purges an entry of a batch younger than the retention
/// period) and take the real batch from an honest peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cannot_silently_strip_a_live_indicator_by_purging_its_entry() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c"]);
    let relay = FakePeer::start(c.tmp.path(), "relay-x").await;
    c.list.members.push(relay.member(&[
        proto::PeerCapability::Replicate,
        proto::PeerCapability::Query,
    ]));
    write_root(&c);
    c.pull_only_from(0, &["bank-b"]);
    c.pull_only_from(1, &["liaison-a"]);
    c.pull_only_from(2, &["relay-x"]);
    c.nodes[0].start();
    c.nodes[1].start();
    let values: Vec<String> = (0..3).map(|i| format!("live-{i}.example")).collect();
    c.contribute(0, values.iter().map(|v| rcv(v)).collect(), "CASE-LIVE")
        .await;
    c.wait_match(1, Kind::Domain, &values[2], MatchStatus::Match)
        .await;
    let real = pull_all(&c, 0, &relay.cert, &relay.key, "liaison-a").await;
    assert_eq!(real.len(), 1);
    // The relay replaces a live, never-expiring, never-retracted entry by its
    // hash, as a retention purge would: the batch still verifies.
    let mut stripped = real[0].clone();
    stripped.entries[1] = batch::purged(&stripped.entries[1]);
    relay.serve(&[stripped]);
    c.nodes[2].start();
    // bank-c refuses it: an entry purged in a batch younger than the
    // retention period was stripped on the way.
    let stripped =
        |k: &proto::PeerCounters| k.pulls >= 1 && rejected(k, BatchRejection::StrippedPurge) >= 1;
    let k = c.nodes[2]
        .wait_counters("relay-x", "refused the stripped batch", stripped)
        .await;
    assert_refused_only_for(&k, &[BatchRejection::StrippedPurge]);
    assert_refused_per_pull(&k, BatchRejection::StrippedPurge, 1);
    assert!(
        k.batches.is_empty(),
        "taken from the relay: {:?}",
        k.batches
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.pulls() < 2 {
        assert!(
            Instant::now() < deadline,
            "bank-c never pulled from the relay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        c.heads(2).await,
        Vec::<(String, u64)>::new(),
        "bank-c took the stripped batch from the relay"
    );
    assert_matches(&c, 2, &[values[0].as_str()], MatchStatus::NoMatch).await;
    // Then the honest path too.
    assert!(c.nodes[2].stop());
    set_peers(&c.nodes[2], &["relay-x", "bank-b"]);
    c.nodes[2].start();
    c.wait_match(2, Kind::Domain, &values[0], MatchStatus::Match)
        .await;
    assert_eq!(c.converge().await, vec![("liaison-a".to_string(), 3)]);
    for v in &values {
        c.wait_match(2, Kind::Domain, v, MatchStatus::Match).await;
    }
    // Holding the real batch, bank-c still refuses the relay's stripped one.
    let k = c.nodes[2]
        .wait_counters("relay-x", "refused the stripped batch again", stripped)
        .await;
    assert_refused_only_for(&k, &[BatchRejection::StrippedPurge]);
    assert!(
        k.batches.is_empty(),
        "taken from the relay: {:?}",
        k.batches
    );
    let b = c.nodes[2].counters("bank-b").await;
    assert_eq!(received(&b, BatchOutcome::Applied), 1, "{b:?}");
    assert!(b.batches_rejected.is_empty(), "{b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_batch_with_an_unknown_kind_or_a_short_token_is_refused_before_it_is_stored() {
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    let relay = FakePeer::start(c.tmp.path(), "relay-x").await;
    // A listed member with a log signing key of its own: what it signs verifies.
    let relay_key = list_contributing_member(&mut c, &relay);
    c.pull_only_from(1, &["relay-x"]);
    let t = tokenizer(&c);
    let good = add_batch(
        "relay-x",
        1,
        vec![0; 32],
        vec![domain_entry(&t, "valid.example")],
        "CASE-VALID",
        &relay_key,
    );
    let prev = good.hash().to_vec();
    // Signed by the member, chained to its head, but with fields no honest
    // node writes: an unknown kind, and a token of 31 bytes.
    let mut unknown_kind = domain_entry(&t, "unknown-kind.example");
    unknown_kind.kind = 99;
    let unknown_kind = add_batch(
        "relay-x",
        2,
        prev.clone(),
        vec![unknown_kind],
        "CASE-KIND",
        &relay_key,
    );
    let mut short = domain_entry(&t, "short-token.example");
    short.token = short.token.slice(..31);
    let short = add_batch("relay-x", 2, prev, vec![short], "CASE-SHORT", &relay_key);
    relay.announce(vec![proto::OriginHead {
        origin: "relay-x".into(),
        last_seq: 2,
        hash: unknown_kind.hash().to_vec(),
    }]);
    relay.serve(&[good.raw, unknown_kind.raw, short.raw]);
    c.nodes[1].start();

    let refused = |k: &proto::PeerCounters| {
        k.pulls >= 1
            && rejected(k, BatchRejection::InvalidField) >= 2
            && received(k, BatchOutcome::Applied) >= 1
    };
    let k = c.nodes[1]
        .wait_counters("relay-x", "refused both invalid batches", refused)
        .await;
    assert_refused_only_for(&k, &[BatchRejection::InvalidField]);
    assert_refused_per_pull(&k, BatchRejection::InvalidField, 2);
    assert_eq!(received(&k, BatchOutcome::Applied), 1, "{k:?}");
    // The origin's head did not move past the valid batch.
    assert_eq!(c.heads(1).await, vec![("relay-x".to_string(), 1)]);
    c.wait_match(1, Kind::Domain, "valid.example", MatchStatus::Match)
        .await;
    let line = wait_log_line(&c.nodes[1], &["batch rejected", "invalid_field"]).await;
    assert!(
        line.contains("kind") || line.contains("token"),
        "the refusal names the field: {line}"
    );

    // Nothing bad was stored: the node restarts, and still serves.
    c.nodes[1].restart();
    c.wait_match(1, Kind::Domain, "valid.example", MatchStatus::Match)
        .await;
    assert_eq!(c.heads(1).await, vec![("relay-x".to_string(), 1)]);
    assert_matches(&c, 1, &["unknown-kind.example"], MatchStatus::NoMatch).await;
}

// ----- bounded batches: a batch larger than peers take is refused by its
// reason, and what follows it in the same pull still arrives.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_batch_is_refused_and_another_origin_in_the_same_pull_still_arrives() {
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    let relay = FakePeer::start(c.tmp.path(), "relay-x").await;
    let relay_key = list_contributing_member(&mut c, &relay);
    // liaison-z: another origin whose key the test holds; no node runs it.
    let z_key = list_test_held_origin(&mut c, "liaison-z", 0x2a);
    write_root(&c);
    c.pull_only_from(1, &["relay-x"]);

    // Validly signed by the member, chained from nothing, but over what
    // peers take (and over the 4 MiB a client decoded by default): 160,000
    // entries, about 9 MiB.
    let entries: Vec<proto::LogEntry> = (0..160_000u64)
        .map(|i| {
            let mut t = [0x5a; 32];
            t[..8].copy_from_slice(&i.to_be_bytes());
            batch::entry(&Token(t), i32::from(ident::Kind::Domain.code()), 1)
        })
        .collect();
    let big = add_batch("relay-x", 1, vec![0; 32], entries, "CASE-BIG", &relay_key);
    let bytes = big.raw.encoded_len();
    assert!(bytes > batch::MAX_RECEIVED_BYTES && bytes < batch::PEER_MESSAGE_BYTES);
    let t = tokenizer(&c);
    let z1 = add_batch(
        "liaison-z",
        1,
        vec![0; 32],
        vec![domain_entry(&t, "after-the-big-one.example")],
        "CASE-Z",
        &z_key,
    );
    relay.announce(vec![
        proto::OriginHead {
            origin: "relay-x".into(),
            last_seq: big.last_seq(),
            hash: big.hash().to_vec(),
        },
        proto::OriginHead {
            origin: "liaison-z".into(),
            last_seq: 1,
            hash: z1.hash().to_vec(),
        },
    ]);
    relay.serve(&[big.raw, z1.raw]);
    c.nodes[1].start();

    let done = |k: &proto::PeerCounters| {
        k.pulls >= 1
            && rejected(k, BatchRejection::Oversized) >= 1
            && received(k, BatchOutcome::Applied) >= 1
    };
    let k = c.nodes[1]
        .wait_counters(
            "relay-x",
            "refused the oversized batch and took the next",
            done,
        )
        .await;
    assert_refused_only_for(&k, &[BatchRejection::Oversized]);
    assert_eq!(received(&k, BatchOutcome::Applied), 1, "{k:?}");
    c.wait_match(
        1,
        Kind::Domain,
        "after-the-big-one.example",
        MatchStatus::Match,
    )
    .await;
    assert_eq!(c.heads(1).await, vec![("liaison-z".to_string(), 1)]);

    // Nothing of the big batch was stored: the node restarts and serves.
    c.nodes[1].restart();
    c.wait_match(
        1,
        Kind::Domain,
        "after-the-big-one.example",
        MatchStatus::Match,
    )
    .await;
    assert_eq!(c.heads(1).await, vec![("liaison-z".to_string(), 1)]);
}

// ----- A bad stored batch never bricks a node

/// The first sequence numbers of the batches of `origin` a member pulling
/// from scratch gets from node `node`.
async fn pulled_seqs(c: &Coalition, node: usize, as_node: usize, origin: &str) -> Vec<u64> {
    let (cert, key) = c.nodes[as_node].peer_cert();
    pull_all(c, node, &cert, &key, origin)
        .await
        .iter()
        .map(|b| header_of(b).first_seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_batch_that_breaks_a_field_rule_is_set_aside_at_start_never_a_failed_start() {
    let mut c = Coalition::new(&["bank-b", "bank-c"]);
    let x_key = list_test_held_origin(&mut c, "liaison-x", 0x5eed);
    write_root(&c);
    c.pull_only_from(0, &["bank-c"]);
    c.pull_only_from(1, &["bank-b"]);
    c.start_all();
    c.contribute(0, vec![rcv("own-b.example")], "CASE-B").await;
    c.contribute(1, vec![rcv("own-c.example")], "CASE-C").await;
    c.wait_match(0, Kind::Domain, "own-c.example", MatchStatus::Match)
        .await;
    c.nodes[0].stop();

    // Written into bank-b's store as a build that checked no field took
    // them, every one signed by its origin: liaison-x's first batch, then
    // one with an unknown kind and a valid one after it; and, in bank-b's
    // own log, a batch with a token of 31 bytes. Fork evidence of
    // liaison-x whose second batch has the unknown kind, too.
    let t = tokenizer(&c);
    {
        let store = cix::store::Store::open(&c.nodes[0].data_dir(), 8).unwrap();
        let x1 = add_batch(
            "liaison-x",
            1,
            vec![0; 32],
            vec![domain_entry(&t, "x-good.example")],
            "CASE-X",
            &x_key,
        );
        let mut unknown_kind = domain_entry(&t, "x-bad.example");
        unknown_kind.kind = 99;
        let x2 = add_batch(
            "liaison-x",
            2,
            x1.hash().to_vec(),
            vec![unknown_kind.clone()],
            "CASE-X",
            &x_key,
        );
        let x3 = add_batch(
            "liaison-x",
            3,
            x2.hash().to_vec(),
            vec![domain_entry(&t, "x-after.example")],
            "CASE-X",
            &x_key,
        );
        for b in [&x1, &x2, &x3] {
            store.append(b).unwrap();
        }
        let other_x1 = add_batch(
            "liaison-x",
            1,
            vec![0; 32],
            vec![unknown_kind],
            "CASE-X",
            &x_key,
        );
        let ev = proto::ForkEvidence {
            first: Some(x1.raw.clone()),
            second: Some(other_x1.raw),
        };
        assert!(store.put_fork("liaison-x", &ev).unwrap());
        let own_key = SigningKeyFile::load(&c.nodes[0].dir.join("keys/log-signing.key")).unwrap();
        let head = store.head("bank-b").unwrap().unwrap();
        let mut short = domain_entry(&t, "own-short.example");
        short.token = short.token.slice(..31);
        let own2 = add_batch(
            "bank-b",
            head.last_seq + 1,
            head.hash.to_vec(),
            vec![short],
            "CASE-B",
            &own_key,
        );
        store.append(&own2).unwrap();
        store.flush_blocking().unwrap();
    }

    // It starts, and again after a restart: each time the same is set
    // aside, the rest serves.
    for _ in 0..2 {
        c.nodes[0].start();
        assert_matches(
            &c,
            0,
            &["own-b.example", "own-c.example", "x-good.example"],
            MatchStatus::Match,
        )
        .await;
        assert_matches(&c, 0, &["x-after.example"], MatchStatus::NoMatch).await;
        let s = c.nodes[0].status().await;
        let aside: Vec<_> = s
            .set_aside
            .iter()
            .map(|a| {
                (
                    a.origin.as_str(),
                    a.first_seq,
                    a.rule.as_str(),
                    a.fork_evidence,
                )
            })
            .collect();
        assert_eq!(
            aside,
            vec![
                ("bank-b", 2, "entries[0].token: must be 32 bytes", false),
                (
                    "liaison-x",
                    2,
                    "entries[0].kind: must be a known kind",
                    false
                ),
                (
                    "liaison-x",
                    1,
                    "entries[0].kind: must be a known kind",
                    true
                ),
            ]
        );
        assert!(s.forks.is_empty(), "bad evidence freezes nothing");
        // The heads it announces stop before the set-aside batches, and a
        // member pulling from scratch gets neither, nor what follows.
        assert_eq!(
            c.heads(0).await,
            vec![
                ("bank-b".to_string(), 1),
                ("bank-c".to_string(), 1),
                ("liaison-x".to_string(), 1)
            ]
        );
        assert_eq!(pulled_seqs(&c, 0, 1, "liaison-x").await, vec![1]);
        assert_eq!(pulled_seqs(&c, 0, 1, "bank-b").await, vec![1]);
        // A contribution would reuse the set-aside batch's numbers.
        let mut cl = c.nodes[0].clients().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let refused = loop {
            let req = contribute_req(vec![rcv("new-b.example")], "CASE-B");
            match cl.contribution.contribute(req).await {
                Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                other => break other.unwrap_err(),
            }
        };
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
        assert!(
            refused.message().contains("set aside from sequence 2"),
            "{refused:?}"
        );
        c.nodes[0].stop();
    }
    // bank-c, pulling only from bank-b, took liaison-x's first batch, nothing after.
    c.nodes[0].start();
    c.wait_match(1, Kind::Domain, "x-good.example", MatchStatus::Match)
        .await;
    assert_eq!(
        c.heads(1).await,
        vec![
            ("bank-b".to_string(), 1),
            ("bank-c".to_string(), 1),
            ("liaison-x".to_string(), 1)
        ]
    );
    assert_matches(&c, 1, &["x-after.example"], MatchStatus::NoMatch).await;
    assert!(c.nodes[1].status().await.set_aside.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_evidence_with_a_bad_field_is_refused_by_its_reason_and_freezes_nothing() {
    let mut c = Coalition::new(&["bank-b"]);
    let relay = FakePeer::start(c.tmp.path(), "relay-x").await;
    let relay_key = list_contributing_member(&mut c, &relay);
    c.pull_only_from(0, &["relay-x"]);
    let t = tokenizer(&c);
    let good = add_batch(
        "relay-x",
        1,
        vec![0; 32],
        vec![domain_entry(&t, "good.example")],
        "CASE-1",
        &relay_key,
    );
    // Signed by the member at the same sequence number: a fork, but with
    // a kind no honest node writes.
    let mut unknown_kind = domain_entry(&t, "bad.example");
    unknown_kind.kind = 99;
    let bad = add_batch(
        "relay-x",
        1,
        vec![0; 32],
        vec![unknown_kind],
        "CASE-2",
        &relay_key,
    );
    let ev = proto::ForkEvidence {
        first: Some(good.raw.clone()),
        second: Some(bad.raw),
    };
    *relay.state.responses.lock() = vec![
        proto::PullResponse {
            item: Some(pull_response::Item::Fork(ev)),
        },
        proto::PullResponse {
            item: Some(pull_response::Item::Batch(good.raw.clone())),
        },
    ];
    relay.announce(vec![proto::OriginHead {
        origin: "relay-x".into(),
        last_seq: 1,
        hash: good.hash().to_vec(),
    }]);
    c.nodes[0].start();
    let k = c.nodes[0]
        .wait_counters("relay-x", "refused the evidence", |k| {
            k.pulls >= 1 && reason_count(&k.fork_evidence_rejected, "invalid_field") >= 1
        })
        .await;
    assert!(k.fork_evidence.is_empty(), "{k:?}");
    assert_eq!(
        k.fork_evidence_rejected
            .iter()
            .map(|r| r.reason.as_str())
            .collect::<Vec<_>>(),
        vec!["invalid_field"]
    );
    // Not kept, the origin not frozen: its valid batch applies and matches.
    c.wait_match(0, Kind::Domain, "good.example", MatchStatus::Match)
        .await;
    assert!(c.nodes[0].status().await.forks.is_empty());
    c.nodes[0].restart();
    let s = c.nodes[0].status().await;
    assert!(s.forks.is_empty() && s.set_aside.is_empty(), "{s:?}");
    c.wait_match(0, Kind::Domain, "good.example", MatchStatus::Match)
        .await;
}

// ----- One stalled or hostile peer stops nothing; sessions re-authorized

/// Sets `key = value` (TOML) in the node's `[replication]` section.
fn set_replication(n: &TestNode, key: &str, value: &str) {
    let text = std::fs::read_to_string(&n.config).unwrap();
    assert!(
        text.contains("pull_seconds = 1\n"),
        "{}",
        n.config.display()
    );
    let prefix = format!("{key} = ");
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with(&prefix)).collect();
    std::fs::write(
        &n.config,
        (kept.join("\n") + "\n").replacen(
            "pull_seconds = 1\n",
            &format!("pull_seconds = 1\n{key} = {value}\n"),
            1,
        ),
    )
    .unwrap();
}

/// Replication sessions with a peer ended for `f`.
fn ended(k: &proto::PeerCounters, f: SessionFailure) -> u64 {
    reason_count(&k.sessions_failed, f.name())
}

/// Waits (bounded) until the fake peer has `n` Watch streams open.
async fn wait_watching(p: &FakePeer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.state.watching.load(Ordering::SeqCst) != n {
        assert!(
            Instant::now() < deadline,
            "{} has {} watch streams open, never {n}",
            p.id,
            p.state.watching.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Publishes `v` at node `node`, as node 1, and checks it was applied.
async fn publish_at(c: &Coalition, node: usize, v: proto::SignedTrustList) {
    let r = c
        .federation(node, 1)
        .await
        .unwrap()
        .publish_trust_list(v)
        .await
        .unwrap()
        .into_inner();
    assert!(r.applied);
}

/// A Watch at node `node` as the member holding `cert`/`key`, its first
/// message read.
async fn open_watch(
    c: &Coalition,
    node: usize,
    cert: &Path,
    key: &Path,
) -> tonic::Streaming<proto::WatchResponse> {
    try_open_watch(c, node, cert, key).await.unwrap()
}

/// [`open_watch`], or the node's refusal.
async fn try_open_watch(
    c: &Coalition,
    node: usize,
    cert: &Path,
    key: &Path,
) -> Result<tonic::Streaming<proto::WatchResponse>, Status> {
    let mut f = c.federation_with(node, cert, key).await.unwrap();
    let mut w = f.watch(proto::WatchRequest {}).await?.into_inner();
    assert!(w.message().await?.is_some());
    Ok(w)
}

/// How a stream served to a test-held client ended, waited for (bounded).
async fn stream_end(w: &mut tonic::Streaming<proto::WatchResponse>) -> Status {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match w.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Status::ok("ended"),
                Err(s) => return s,
            }
        }
    })
    .await
    .expect("the stream outlived the member's right to it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_stops_neither_replication_nor_contributions() {
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    let stalled = FakePeer::start(c.tmp.path(), "stall-x").await;
    c.list
        .members
        .push(stalled.member(&[proto::PeerCapability::Replicate]));
    write_root(&c);
    // Its Watch answers; every Pull sends nothing and never ends. bank-b
    // gives up on a silent pull after 2 s; liaison-a not within the test.
    stalled.state.stall.store(true, Ordering::SeqCst);
    set_replication(&c.nodes[0], "pull_idle_timeout", "\"120s\"");
    set_replication(&c.nodes[1], "pull_idle_timeout", "\"2s\"");
    c.start_all();

    // bank-b opens contributions once stall-x is cut off as stalled.
    let r = c
        .contribute(1, vec![rcv("stalled-0.example")], "CASE-0")
        .await;
    assert_eq!((r.first_seq, r.last_seq), (1, 1));
    c.nodes[1]
        .wait_counters("stall-x", "cut off the stalled peer", |k| {
            ended(k, SessionFailure::Stalled) >= 1
        })
        .await;
    // liaison-a takes bank-b's batches while its own pull from stall-x is
    // still open, sending nothing.
    for i in 0..3 {
        let v = format!("stalled-{i}.example");
        if i > 0 {
            c.contribute(1, vec![rcv(&v)], &format!("CASE-{i}")).await;
        }
        c.wait_match(0, Kind::Domain, &v, MatchStatus::Match).await;
    }
    let k = c.nodes[0].counters("stall-x").await;
    assert_eq!(
        (k.pulls, ended(&k, SessionFailure::Stalled)),
        (0, 0),
        "{k:?}"
    );
    let status = c.nodes[0].status().await;
    let p = status.peers.iter().find(|p| p.member == "stall-x").unwrap();
    assert!(p.connected, "{p:?}");
    let b = c.nodes[0].counters("bank-b").await;
    assert!(received(&b, BatchOutcome::Applied) >= 3, "{b:?}");
    assert!(b.batches_rejected.is_empty(), "{b:?}");
    // At bank-b, stall-x is retried after its backoff and stalls again;
    // Status shows it backed off.
    c.nodes[1]
        .wait_counters("stall-x", "retried the stalled peer", |k| {
            ended(k, SessionFailure::Stalled) >= 2 && k.pulls == 0
        })
        .await;
    let status = c.nodes[1].status().await;
    let p = status.peers.iter().find(|p| p.member == "stall-x").unwrap();
    assert_eq!(p.last_failure, "stalled", "{p:?}");
    assert!(p.failures_in_a_row >= 1, "{p:?}");

    // Restarted with the 2 s deadline, liaison-a opens contributions with
    // stall-x still stalling, and serves.
    assert!(c.nodes[0].stop());
    set_replication(&c.nodes[0], "pull_idle_timeout", "\"2s\"");
    c.nodes[0].start();
    let r = c
        .contribute(0, vec![rcv("stalled-9.example")], "CASE-9")
        .await;
    assert_eq!((r.first_seq, r.last_seq), (1, 1));
    c.wait_match(1, Kind::Domain, "stalled-9.example", MatchStatus::Match)
        .await;
    assert_matches(
        &c,
        0,
        &["stalled-0.example", "stalled-2.example"],
        MatchStatus::Match,
    )
    .await;
    let k = c.nodes[0].counters("stall-x").await;
    assert!(ended(&k, SessionFailure::Stalled) >= 1, "{k:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contributions_wait_for_the_peer_that_holds_more_of_the_own_log() {
    let mut c = Coalition::new(&["liaison-a"]);
    let knows = FakePeer::start(c.tmp.path(), "knows-x").await;
    let empty = FakePeer::start(c.tmp.path(), "empty-y").await;
    for p in [&knows, &empty] {
        c.list
            .members
            .push(p.member(&[proto::PeerCapability::Replicate]));
    }
    write_root(&c);
    c.nodes[0].start();
    let r = c.contribute(0, vec![rcv("own-1.example")], "CASE-1").await;
    assert_eq!(r.first_seq, 1);
    // A copy of the data directory holding batch 1 only.
    assert!(c.nodes[0].stop());
    let backup = c.tmp.path().join("backup");
    copy_dir(&c.nodes[0].data_dir(), &backup);
    c.nodes[0].start();
    for i in 2..=3 {
        let r = c
            .contribute(0, vec![rcv(&format!("own-{i}.example"))], "CASE")
            .await;
        assert_eq!(r.first_seq, i);
    }
    let held = pull_all(&c, 0, &knows.cert, &knows.key, "liaison-a").await;
    assert_eq!(held.len(), 3);
    assert!(c.nodes[0].stop());

    // liaison-a comes back from the old copy. knows-x holds its batches 1 to
    // 3 and is slow to answer; empty-y answers at once, knowing nothing.
    std::fs::remove_dir_all(c.nodes[0].data_dir()).unwrap();
    copy_dir(&backup, &c.nodes[0].data_dir());
    knows.serve(&held);
    knows.announce(vec![proto::OriginHead {
        origin: "liaison-a".into(),
        last_seq: 3,
        hash: batch::Batch::decode(held[2].clone())
            .unwrap()
            .hash()
            .to_vec(),
    }]);
    *knows.state.watch_delay.lock() = Duration::from_secs(2);
    c.nodes[0].start();
    let r = c.contribute(0, vec![rcv("own-4.example")], "CASE-4").await;
    assert_eq!(
        (r.first_seq, r.last_seq),
        (4, 4),
        "contributions opened before the peer holding more of the own log answered"
    );
    let k = c.nodes[0].counters("knows-x").await;
    assert_eq!(received(&k, BatchOutcome::Applied), 2, "{k:?}");
    assert!(k.batches_rejected.is_empty(), "{k:?}");
    assert!(c.nodes[0].status().await.forks.is_empty());
    assert_eq!(c.heads(0).await, vec![("liaison-a".to_string(), 4)]);
    assert_matches(
        &c,
        0,
        &["own-1.example", "own-3.example", "own-4.example"],
        MatchStatus::Match,
    )
    .await;

    c.nodes[0].restart();
    let r = c.contribute(0, vec![rcv("own-5.example")], "CASE-5").await;
    assert_eq!(r.first_seq, 5);
    assert!(c.nodes[0].status().await.forks.is_empty());

    // A peer announcing more of the own log than its pull brings holds
    // nothing back: it is cut off as undelivered.
    knows.announce(vec![proto::OriginHead {
        origin: "liaison-a".into(),
        last_seq: 9,
        hash: vec![0xab; 32],
    }]);
    *knows.state.watch_delay.lock() = Duration::ZERO;
    c.nodes[0].restart();
    let r = c.contribute(0, vec![rcv("own-6.example")], "CASE-6").await;
    assert_eq!(r.first_seq, 6);
    let k = c.nodes[0]
        .wait_counters("knows-x", "cut off the peer that announced more", |k| {
            ended(k, SessionFailure::Undelivered) >= 1
        })
        .await;
    assert!(k.batches_rejected.is_empty(), "{k:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_both_ways_when_a_member_loses_the_right_or_the_list_expires() {
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    let x = FakePeer::start(c.tmp.path(), "member-x").await;
    c.list.members.push(x.member(&[
        proto::PeerCapability::Replicate,
        proto::PeerCapability::Query,
    ]));
    write_root(&c);
    c.pull_only_from(1, &["liaison-a"]);
    let now = cix::time::Clock::system().now();
    c.nodes[0].use_test_clock(now);
    // Two lists published within one second of its clock: more than a
    // member's publish rate.
    c.nodes[0].append_config(
        "\n[peer_listener.limits]\ntrust_publish_per_second = 100\ntrust_publish_burst = 100\n",
    );
    c.start_all();
    // liaison-a watches member-x; member-x watches liaison-a.
    wait_watching(&x, 1).await;
    let mut inbound = open_watch(&c, 0, &x.cert, &x.key).await;
    let replicate_only = |l: &mut proto::TrustList, caps: &[proto::PeerCapability]| {
        member_mut(l, "member-x").capabilities = caps.iter().map(|c| *c as i32).collect();
    };

    // member-x loses `replicate` and stays active: both directions end at
    // once, not at a reconnect.
    let v2 = c.next(|l| replicate_only(l, &[proto::PeerCapability::Query]));
    publish_at(&c, 0, v2).await;
    let s = stream_end(&mut inbound).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("`replicate`"), "{s:?}");
    wait_watching(&x, 0).await;
    let k = c.nodes[0]
        .wait_counters("member-x", "ended the session with member-x", |k| {
            ended(k, SessionFailure::Deauthorized) >= 1
                && reason_count(&k.streams_cut, RequestRefusal::MissingCapability.name()) >= 1
        })
        .await;
    assert_eq!(ended(&k, SessionFailure::Deauthorized), 1, "{k:?}");

    // Given `replicate` back, it is dialled again; then suspended, both
    // directions end again.
    let v3 = c.next(|l| replicate_only(l, &[proto::PeerCapability::Replicate]));
    publish_at(&c, 0, v3).await;
    wait_watching(&x, 1).await;
    let mut inbound = open_watch(&c, 0, &x.cert, &x.key).await;
    let v4 = c.next(|l| member_mut(l, "member-x").status = proto::MemberStatus::Suspended as i32);
    publish_at(&c, 0, v4).await;
    let s = stream_end(&mut inbound).await;
    assert_ne!(s.code(), tonic::Code::Ok, "{s:?}");
    wait_watching(&x, 0).await;
    c.nodes[0]
        .wait_counters("member-x", "ended the session with member-x again", |k| {
            ended(k, SessionFailure::Deauthorized) >= 2
        })
        .await;

    // liaison-a's own list expires by its clock: bank-b's Watch on it is cut,
    // and its session with bank-b ends.
    c.nodes[1]
        .wait_counters("liaison-a", "pulled from liaison-a", |k| k.pulls >= 1)
        .await;
    // And liaison-a's own session with bank-b is up (its first dial may
    // have come before bank-b listened), so that the expiry is what ends it.
    c.nodes[0]
        .wait_counters("bank-b", "pulled from bank-b", |k| k.pulls >= 1)
        .await;
    let expires = c.nodes[0].status().await.trust_expires_at.unwrap().seconds;
    c.nodes[0].set_time(expires + 1);
    let k = c.nodes[0]
        .wait_counters("bank-b", "cut bank-b's watch as the list expired", |k| {
            reason_count(&k.streams_cut, RequestRefusal::ListExpired.name()) >= 1
                && ended(k, SessionFailure::Deauthorized) >= 1
        })
        .await;
    assert!(k.batches_rejected.is_empty(), "{k:?}");

    // Back at a time the list holds, after a restart liaison-a serves.
    c.nodes[0].set_time(now + 60);
    c.nodes[0].restart();
    let r = c.contribute(0, vec![rcv("reauth.example")], "CASE-R").await;
    assert_eq!(r.first_seq, 1);
    c.wait_match(1, Kind::Domain, "reauth.example", MatchStatus::Match)
        .await;
    assert_eq!(x.state.watching.load(Ordering::SeqCst), 0);
}

// ----- A member cannot make this node serve it stream after stream

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_opening_more_watch_streams_than_it_may_is_refused_and_counted() {
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    // Only liaison-a runs: the test opens bank-b's streams itself.
    c.nodes[0].start();
    let (cert, key) = c.nodes[1].peer_cert();
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(
            try_open_watch(&c, 0, &cert, &key)
                .await
                .expect("a member's first two watches"),
        );
    }
    let e = try_open_watch(&c, 0, &cert, &key)
        .await
        .expect_err("a third watch at once");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("at most 2"), "{e:?}");
    let k = c.nodes[0].counters("bank-b").await;
    assert_eq!(
        reason_count(&k.requests_refused, "stream_limit"),
        1,
        "{k:?}"
    );

    // One ends: its slot frees, and a watch is served again.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match try_open_watch(&c, 0, &cert, &key).await {
            Ok(w) => {
                open.push(w);
                break;
            }
            Err(e) if e.code() == tonic::Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("no watch after one ended: {e:?}"),
        }
    }
    drop(open);
    c.nodes[0].restart();
    assert!(try_open_watch(&c, 0, &cert, &key).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_trust_list_answer_with_a_bad_chain_applies_nothing_and_is_counted() {
    let mut c = Coalition::new(&["bank-a"]);
    let fake = FakePeer::start(c.tmp.path(), "fake-x").await;
    // Listed with an endpoint and no capability: bank-a asks it for newer
    // lists every second, and for nothing else.
    c.list.members.push(fake.member(&[]));
    write_root(&c);
    c.nodes[0].start();
    let before = c.trust_list_held(0, 0).await.list.unwrap();
    // Version 2 replaces the operator keys (threshold 3); version 3 is
    // signed by the new keys only.
    let v2 = c.rotate_operators(3);
    let v3 = c.next_by_all(|l| l.members[0].name = "Bank A, after the rotation".into());
    let answer = |chain: Vec<proto::SignedTrustList>, list: Option<proto::SignedTrustList>| {
        proto::GetTrustListResponse {
            version: 3,
            list,
            chain,
            chain_partial: false,
        }
    };
    // One old key's signature of the rotation broken: below the old threshold.
    let mut broken = v2.clone();
    broken.signatures[0].signature[0] ^= 0x01;
    let oversized = proto::SignedTrustList {
        body: vec![0x0a; cix::trust::list::MAX_LIST_BYTES + 1],
        signatures: vec![],
    };
    let cases = [
        (
            "more lists than a chain holds",
            answer(vec![v2.clone(); 65], Some(v3.clone())),
            "bounds",
        ),
        (
            "a list over its size",
            answer(vec![oversized], Some(v3.clone())),
            "bounds",
        ),
        (
            "the chain out of order",
            answer(vec![v2.clone(), v3.clone()], Some(v2.clone())),
            "order",
        ),
        (
            "one step signed below the old threshold",
            answer(vec![broken], Some(v3.clone())),
            "step",
        ),
        (
            "the newest list without the rotation before it",
            answer(vec![], Some(v3.clone())),
            "step",
        ),
    ];
    for (what, a, reason) in cases {
        let had = reason_count(
            &c.nodes[0].counters("fake-x").await.trust_answers_refused,
            reason,
        );
        *fake.state.trust_answer.lock() = Some(a);
        c.nodes[0]
            .wait_counters("fake-x", &format!("refused {what} as {reason}"), |k| {
                reason_count(&k.trust_answers_refused, reason) > had
            })
            .await;
        assert_eq!(c.nodes[0].status().await.trust_version, 1, "{what}");
        assert_eq!(
            c.trust_list_held(0, 0).await.list.unwrap(),
            before,
            "{what} changed the list in force"
        );
    }
    // The same peer with the whole chain in order: applied.
    *fake.state.trust_answer.lock() = Some(answer(vec![v2.clone()], Some(v3.clone())));
    c.wait_for_version(0, 3).await;
    assert_eq!(c.trust_list_held(0, 0).await.list.unwrap(), v3);
    assert_eq!(c.trust_list_held(0, 0).await.chain, [v2]);
}

// ---------------------------------------------------------------------------
// Fork evidence: one freeze point, lifted by the operators' actions.

impl FakePeer {
    /// What every Pull streams from now on: these fork evidence.
    fn serve_evidence(&self, evidence: &[proto::ForkEvidence]) {
        *self.state.responses.lock() = evidence
            .iter()
            .map(|ev| proto::PullResponse {
                item: Some(pull_response::Item::Fork(ev.clone())),
            })
            .collect();
    }
}

fn evidence(a: &batch::Batch, b: &batch::Batch) -> proto::ForkEvidence {
    proto::ForkEvidence {
        first: Some(a.raw.clone()),
        second: Some(b.raw.clone()),
    }
}

/// The fork points of node `n`'s evidence in force and lifted, by origin.
async fn fork_points(n: &TestNode) -> (Vec<(String, u64)>, Vec<(String, u64)>) {
    let s = n.status().await;
    let pts = |f: &[proto::ForkStatus]| -> Vec<(String, u64)> {
        f.iter()
            .map(|f| (f.origin.clone(), f.frozen_from_seq))
            .collect()
    };
    (pts(&s.forks), pts(&s.forks_lifted))
}

/// Waits (bounded) until node `n` holds this evidence in force and lifted.
async fn wait_forks(n: &TestNode, in_force: &[(&str, u64)], lifted: &[(&str, u64)]) {
    let own = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(o, s)| (o.to_string(), *s)).collect()
    };
    let want = (own(in_force), own(lifted));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = fork_points(n).await;
        if have == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "forks (in force, lifted) {have:?}, never {want:?}\n{}",
            log_lines(&n.logs(), &["fork"]).join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether node `node` sends any fork evidence to a Pull from scratch by
/// the member holding `cert`/`key`.
async fn serves_evidence(c: &Coalition, node: usize, cert: &Path, key: &Path) -> bool {
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut f = c.federation_with(node, cert, key).await.unwrap();
        let mut s = f
            .pull(proto::PullRequest { have: vec![] })
            .await
            .unwrap()
            .into_inner();
        let mut any = false;
        while let Some(m) = s.message().await.unwrap() {
            any |= matches!(m.item, Some(pull_response::Item::Fork(_)));
        }
        any
    })
    .await
    .expect("pull did not finish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_at_two_fork_points_freezes_from_the_lower_in_either_order_and_after_a_restart() {
    let mut c = Coalition::new(&["bank-a", "bank-b"]);
    let fake_x = FakePeer::start(c.tmp.path(), "fake-x").await;
    let fake_y = FakePeer::start(c.tmp.path(), "fake-y").await;
    let x_key = list_test_held_origin(&mut c, "liaison-x", 0x5eed);
    for f in [&fake_x, &fake_y] {
        c.list
            .members
            .push(f.member(&[proto::PeerCapability::Replicate]));
    }
    write_root(&c);
    c.pull_only_from(0, &["fake-x"]);
    c.pull_only_from(1, &["fake-y"]);
    let t = tokenizer(&c);
    let b = |seq: u64, prev: Vec<u8>, v: &str| {
        add_batch(
            "liaison-x",
            seq,
            prev,
            vec![domain_entry(&t, v)],
            "CASE-X",
            &x_key,
        )
    };
    // Two forks of liaison-x: at its first batch, and at its second.
    let (x1, y1) = (
        b(1, vec![0; 32], "x1.example"),
        b(1, vec![0; 32], "y1.example"),
    );
    let (x2, y2) = (
        b(2, x1.hash().to_vec(), "x2.example"),
        b(2, x1.hash().to_vec(), "y2.example"),
    );
    let (low, high) = (evidence(&x1, &y1), evidence(&x2, &y2));
    // bank-a gets the higher first, bank-b the lower first.
    fake_x.serve_evidence(&[high.clone(), low.clone()]);
    fake_y.serve_evidence(&[low, high]);
    c.start_all();
    for (i, fake) in [(0, "fake-x"), (1, "fake-y")] {
        c.nodes[i]
            .wait_counters(fake, "took both evidence", |k| {
                k.pulls >= 1
                    && reason_count(&k.fork_evidence, "new")
                        + reason_count(&k.fork_evidence, "known")
                        >= 2
            })
            .await;
        wait_forks(&c.nodes[i], &[("liaison-x", 1)], &[]).await;
    }
    // Kept: the lower, whatever came first; bank-b kept its first.
    let k = c.nodes[0].counters("fake-x").await;
    assert_eq!(reason_count(&k.fork_evidence, "new"), 2, "{k:?}");
    let k = c.nodes[1].counters("fake-y").await;
    assert_eq!(reason_count(&k.fork_evidence, "new"), 1, "{k:?}");
    // The same after a restart, before and after a pull brings both again.
    for i in 0..2 {
        fake_x.serve_evidence(&[]);
        fake_y.serve_evidence(&[]);
        c.nodes[i].restart();
        assert_eq!(
            fork_points(&c.nodes[i]).await,
            (vec![("liaison-x".to_string(), 1)], vec![]),
            "{}",
            c.ids[i]
        );
    }
}

/// liaison-a, its log at 4, lists a retired key (it leaked) that may sign
/// up to 3; a relay, fake-x, hands on a batch at 3 forged with it. Returns
/// the relay, the values of liaison-a's four batches, the forged value and
/// batch, once every node holds the fork from 3.
async fn forged_with_a_retired_key(
    c: &mut Coalition,
) -> (FakePeer, Vec<String>, String, batch::Batch) {
    let fake = FakePeer::start(c.tmp.path(), "fake-x").await;
    let leaked = SigningKeyFile::generate();
    member_mut(&mut c.list, "liaison-a")
        .signing_keys
        .push(proto::LogSigningKey {
            public_key: leaked.verifying_key().to_bytes().to_vec(),
            retired: true,
            last_seq: 3,
            first_seq: 0,
        });
    c.list
        .members
        .push(fake.member(&[proto::PeerCapability::Replicate]));
    write_root(c);
    c.start_all();
    let values: Vec<String> = (1..=4).map(|i| format!("genuine-{i}.example")).collect();
    for (i, v) in values.iter().enumerate() {
        c.contribute(0, vec![rcv(v)], &format!("CASE-{i}")).await;
    }
    for i in 1..c.nodes.len() {
        wait_heads(c, i, &[("liaison-a", 4)]).await;
    }
    let held = pull_all(c, 1, &fake.cert, &fake.key, "liaison-a").await;
    let second = batch::Batch::decode(held[1].clone()).unwrap();
    let t = tokenizer(c);
    let forged_value = "forged.example".to_string();
    let forged = add_batch(
        "liaison-a",
        3,
        second.hash().to_vec(),
        vec![domain_entry(&t, &forged_value)],
        "CASE-F",
        &leaked,
    );
    fake.serve(std::slice::from_ref(&forged.raw));
    for i in 0..c.nodes.len() {
        wait_forks(&c.nodes[i], &[("liaison-a", 3)], &[]).await;
    }
    let v: Vec<&str> = values.iter().map(String::as_str).collect();
    for i in 0..c.nodes.len() {
        assert_matches(c, i, &v[..2], MatchStatus::Match).await;
        assert_matches(c, i, &v[2..], MatchStatus::NoMatch).await;
        assert_matches(c, i, &[&forged_value], MatchStatus::NoMatch).await;
    }
    (fake, values, forged_value, forged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_before_the_fork_point_lifts_evidence_forged_with_a_retired_key_also_at_a_node_down_meanwhile(
) {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c"]);
    let (fake, values, forged_value, _) = forged_with_a_retired_key(&mut c).await;
    // bank-c is down when the operators act.
    assert!(c.nodes[2].stop());
    let v2 = c.next(|l| {
        let a = member_mut(l, "liaison-a");
        a.status = proto::MemberStatus::Suspended as i32;
        a.suspended_after_seq = 2;
    });
    // Published to liaison-a too: suspended, it is no peer of the others.
    assert!(c.publish(0, 1, v2.clone()).await.applied);
    c.publish(1, 2, v2.clone()).await;
    c.wait_for_version(1, 2).await;
    c.wait_for_version(0, 2).await;
    assert_lifted_by_suspension(&c, 0, &values, &forged_value, &fake).await;
    assert_lifted_by_suspension(&c, 1, &values, &forged_value, &fake).await;
    assert_eq!(c.nodes[1].status().await.fork_evidence_lifted, 1);
    // bank-c starts with the new list: its stored evidence no longer
    // verifies, so it freezes nothing.
    write_root_of(&c.nodes[2], &v2);
    c.nodes[2].start();
    assert_eq!(c.nodes[2].status().await.trust_version, 2);
    assert_lifted_by_suspension(&c, 2, &values, &forged_value, &fake).await;
    // Still so after a restart.
    c.nodes[1].restart();
    assert_lifted_by_suspension(&c, 1, &values, &forged_value, &fake).await;
}

/// At node `i`, liaison-a's fork at 3 is lifted (the list suspends it after
/// 2): its first two values match again, nothing past the bound does, and
/// the evidence is not served.
async fn assert_lifted_by_suspension(
    c: &Coalition,
    i: usize,
    values: &[String],
    forged: &str,
    fake: &FakePeer,
) {
    let n = &c.nodes[i];
    wait_forks(n, &[], &[("liaison-a", 3)]).await;
    let s = n.status().await;
    assert!(!s.forks_lifted[0].lifted_because.is_empty(), "{s:?}");
    let v: Vec<&str> = values.iter().map(String::as_str).collect();
    assert_matches(c, i, &v[..2], MatchStatus::Match).await;
    assert_matches(c, i, &v[2..], MatchStatus::NoMatch).await;
    assert_matches(c, i, &[forged], MatchStatus::NoMatch).await;
    assert!(!serves_evidence(c, i, &fake.cert, &fake.key).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_at_the_fork_point_lifts_it_and_the_origin_signs_its_log_again_under_the_new_key(
) {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c"]);
    let (fake, values, forged_value, forged) = forged_with_a_retired_key(&mut c).await;
    let new_key = SigningKeyFile::generate();
    let v2 = c.next(|l| {
        cix::trust::edit::rotate_signing_key(
            member_mut(l, "liaison-a"),
            &new_key.verifying_key(),
            3,
        )
        .unwrap()
    });
    assert!(c.publish(1, 2, v2.clone()).await.applied);
    for i in 0..3 {
        c.wait_for_version(i, 2).await;
    }
    // Neither forked batch verifies any more: the evidence is lifted; the
    // other nodes drop their copy of liaison-a from 3 (signed by the old
    // key), which liaison-a, still on its old key, cannot sign anew.
    for i in 0..3 {
        wait_forks(&c.nodes[i], &[], &[("liaison-a", 3)]).await;
    }
    for i in 1..3 {
        wait_heads(&c, i, &[("liaison-a", 2)]).await;
        assert_eq!(c.nodes[i].status().await.batches_dropped_unverified, 2);
    }
    // liaison-a restarts with its new key: it signs 3 and 4 again (same
    // headers, same hashes), and every node takes them.
    assert!(c.nodes[0].stop());
    let key_file = c.nodes[0].dir.join("keys/log-signing.key");
    std::fs::remove_file(&key_file).unwrap();
    new_key.write_new(&key_file).unwrap();
    c.nodes[0].start();
    assert_eq!(c.nodes[0].status().await.batches_resigned, 2);
    for i in 1..3 {
        wait_heads(&c, i, &[("liaison-a", 4)]).await;
    }
    let v: Vec<&str> = values.iter().map(String::as_str).collect();
    for i in 0..3 {
        assert_matches(&c, i, &v, MatchStatus::Match).await;
        assert_matches(&c, i, &[&forged_value], MatchStatus::NoMatch).await;
        assert!(!serves_evidence(&c, i, &fake.cert, &fake.key).await);
    }
    // The forged batch verifies nowhere: the relay still hands it on, and
    // every node refuses it for its signature.
    for i in 1..3 {
        let k = c.nodes[i].counters("fake-x").await;
        wait_more_pulls(&c.nodes[i], "fake-x", &k, 1).await;
        let k = c.nodes[i]
            .wait_counters("fake-x", "refused the forged batch", |k| {
                rejected(k, BatchRejection::Signature) >= 1
            })
            .await;
        assert_refused_only_for(
            &k,
            &[BatchRejection::Signature, BatchRejection::UnprovenFork],
        );
    }
    let list = cix::trust::list::verify_root(&v2, None).unwrap();
    assert!(cix::trust::batches::verify(&forged, &list).is_err());
    // A restart leaves it so.
    c.nodes[1].restart();
    wait_forks(&c.nodes[1], &[], &[("liaison-a", 3)]).await;
    assert_eq!(c.heads(1).await, vec![("liaison-a".to_string(), 4)]);
    assert_matches(&c, 1, &v, MatchStatus::Match).await;
}
