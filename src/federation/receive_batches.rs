//! Receiving origin-log batches: pulling from and watching peers (the
//! asking side of `Federation.Pull` and `Watch`).
//!
//! For each peer (an active member with `replicate` and an endpoint), a loop
//! keeps a `Watch` stream open (push hints: "origin X is at N") and pulls
//! when this node lacks the peer's head or its history differs there
//! ([`super::compare_heads`]), and on a timer (every `pull_seconds`) to repair
//! anything missed. Every batch received is verified against the origin's
//! entry in the trust list in force, whoever relayed it
//! ([`crate::trust::batches::verify`]), then must extend the origin's chain
//! exactly; a batch that fails is refused with a typed reason
//! ([`BatchRejection`]), logged with the peer and origin, counted, and
//! dropped, and the rest of the stream goes on. A batch already held is a
//! no-op; a different, validly signed batch at a sequence number already
//! held is fork evidence: kept (the lowest fork point of all evidence found,
//! [`super::forks`]), passed on, and the origin frozen from there.
//! A node's contributions wait until its own log's head is confirmed with
//! its peers, so that a node restarted after data loss never reuses a
//! sequence number: they open once at least one peer has answered a pull,
//! every other peer has answered or failed a session (unreachable, stalled,
//! cut off), and this node holds at least as much of its own log as any
//! answering peer announced ([`Replication::update_ready`]). A node with no
//! peers is ready at once. A batch younger than the retention period that arrives with
//! purged entries is refused: no honest node purges those, so a relay
//! stripped them (an older batch's purged entries cannot be told apart
//! from an honest purge with this format; see the README).
//!
//! Sessions are independent: the stream of one peer is read with no lock
//! that another peer's session needs; applying a batch takes only its
//! origin's lock, so two peers relaying one origin never race on its chain.
//! A session ends, counted as a [`SessionFailure`], when the peer stalls (no
//! answer to opening a stream within [`PEER_CALL_TIMEOUT`], or a Pull silent
//! for the idle deadline), when a pull brings any batch or fork evidence
//! refused for its own fault (the pull runs to its end first, so every
//! refusal is counted), and at once when the trust list in force no longer
//! lets this node replicate with the peer (re-checked at every new list and
//! as the node's clock moves). The peer is then retried after an exponential
//! backoff with jitter, reset by a healthy session; the other peers go on.
//!
//! Every outcome is counted in the node's [`Counters`], per peer.

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{transport::Channel, Status};

use super::{compare_heads, heads, Heads, PeerDialer, PEER_CALL_TIMEOUT};
use crate::{
    batch::{self, Batch, BatchError},
    counters::{
        BatchOutcome, BatchRejection, Counters, EvidenceOutcome, EvidenceRejection, PeerCounts,
        SessionFailure,
    },
    logs::{LogsError, OriginLogs},
    proto::{
        federation_client::FederationClient, pull_response, ForkEvidence, LogBatch, Member,
        PeerCapability, PullRequest, WatchRequest,
    },
    store::StoreError,
    time::Clock,
    tls::TlsError,
    trust::{list::TrustList, state::TrustState},
};

/// What became of one received batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ingest {
    Applied,
    Duplicate,
    /// Its predecessor is missing: it waits for a later pull.
    Gap,
    /// It differs from this node's batch at those sequence numbers: kept as
    /// fork evidence, the origin frozen.
    Fork,
    Rejected(BatchRejection),
}

/// Why a received batch was refused, as the log shows it. Never holds a
/// token or an identifier: origins are member ids.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchRefused {
    #[error(transparent)]
    Verify(#[from] BatchError),
    #[error("entries purged before the retention period allows (stripped on the way)")]
    StrippedPurge,
    #[error("batch numbered from 0 or holding no entries")]
    Numbering,
    /// A field outside the bounds honest nodes write; names the field and
    /// the rule, never a value.
    #[error("invalid field: {0}")]
    InvalidField(BatchError),
    #[error("it does not extend this node's history of the origin")]
    Chain,
    #[error("reading this node's history of the origin: {}", crate::telemetry::chain(.0))]
    HeadRead(StoreError),
    #[error("this node's head of the origin is at or past {seq}, but no batch of it holds {seq}")]
    NotHeld { seq: u64 },
    #[error("batch could not be stored: {}", crate::telemetry::chain(.0))]
    Store(StoreError),
    #[error("batch stored but not indexed: {}", crate::telemetry::chain(.0))]
    Index(LogsError),
    #[error("it differs from this node's batch there, but the two are not fork evidence under the trust list in force: {}", crate::telemetry::chain(.0))]
    UnprovenFork(EvidenceRefused),
    #[error(
        "batch of {bytes} bytes: must encode in at most {} bytes",
        batch::MAX_RECEIVED_BYTES
    )]
    Oversized { bytes: usize },
    #[error("{}", crate::telemetry::chain(.0))]
    SetAside(LogsError),
}

impl BatchRefused {
    /// The counted reason.
    pub(crate) fn reason(&self) -> BatchRejection {
        match self {
            BatchRefused::Verify(e) => match e {
                BatchError::Decode(_) => BatchRejection::Decode,
                BatchError::Count { .. } | BatchError::Root { .. } | BatchError::Entry { .. } => {
                    BatchRejection::Entries
                }
                BatchError::UnknownOrigin { .. } => BatchRejection::UnknownOrigin,
                BatchError::NotContributor { .. } => BatchRejection::NotContributor,
                BatchError::Signature { .. } => BatchRejection::Signature,
                BatchError::PastSharingBasis { .. } => BatchRejection::PastSharingBasis,
                BatchError::PastSuspension { .. } => BatchRejection::PastSuspension,
                BatchError::Field { .. } => BatchRejection::InvalidField,
            },
            BatchRefused::StrippedPurge => BatchRejection::StrippedPurge,
            BatchRefused::Numbering => BatchRejection::Numbering,
            BatchRefused::InvalidField(_) => BatchRejection::InvalidField,
            BatchRefused::Chain => BatchRejection::BrokenChain,
            BatchRefused::HeadRead(_) | BatchRefused::NotHeld { .. } => BatchRejection::HeadRead,
            BatchRefused::Store(_) => BatchRejection::Store,
            BatchRefused::Index(_) => BatchRejection::Index,
            BatchRefused::UnprovenFork(_) => BatchRejection::UnprovenFork,
            BatchRefused::Oversized { .. } => BatchRejection::Oversized,
            BatchRefused::SetAside(_) => BatchRejection::OriginSetAside,
        }
    }

    /// Whether the fault is this node's (its store), not the batch's.
    fn is_local(&self) -> bool {
        matches!(
            self,
            BatchRefused::HeadRead(_)
                | BatchRefused::NotHeld { .. }
                | BatchRefused::Store(_)
                | BatchRefused::Index(_)
        )
    }
}

/// Why fork evidence was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EvidenceRefused {
    #[error("fork evidence lacks one of its two batches")]
    Incomplete,
    #[error("fork evidence does not decode: {}", crate::telemetry::chain(.0))]
    Decode(BatchError),
    #[error("fork evidence is not two different, overlapping batches of one origin")]
    NotAFork,
    #[error("a batch of the fork evidence does not verify: {}", crate::telemetry::chain(.0))]
    Unverified(BatchError),
    /// Names the field and the rule, never a value.
    #[error("a batch of the fork evidence has an invalid field: {}", crate::telemetry::chain(.0))]
    InvalidField(BatchError),
    #[error("fork evidence valid, the origin frozen, but not kept: {}", crate::telemetry::chain(.0))]
    Store(StoreError),
}

impl EvidenceRefused {
    /// The counted reason.
    pub(crate) fn reason(&self) -> EvidenceRejection {
        match self {
            EvidenceRefused::Incomplete => EvidenceRejection::Incomplete,
            EvidenceRefused::Decode(_) => EvidenceRejection::Decode,
            EvidenceRefused::NotAFork => EvidenceRejection::NotAFork,
            EvidenceRefused::Unverified(_) => EvidenceRejection::Unverified,
            EvidenceRefused::InvalidField(_) => EvidenceRejection::InvalidField,
            EvidenceRefused::Store(_) => EvidenceRejection::Store,
        }
    }
}

/// Why a pull from a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    #[error("reading this node's heads: {}", crate::telemetry::chain(.0))]
    Heads(StoreError),
    #[error("pull refused: {:?}: {}", .0.code(), .0.message())]
    Refused(Status),
    #[error("pull stream broke: {:?}: {}", .0.code(), .0.message())]
    Stream(Status),
    #[error("flushing the store: {}", crate::telemetry::chain(.0))]
    Flush(StoreError),
    #[error("pull stalled: no answer or message within the deadline")]
    Stalled,
    #[error("pull given up: the session was ended")]
    Cut,
}

/// Why a replication session with a peer ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("could not connect: {}", crate::telemetry::chain(.0))]
    Connect(TlsError),
    #[error("watch refused: {:?}: {}", .0.code(), .0.message())]
    WatchRefused(Status),
    #[error("watch stream broke: {:?}: {}", .0.code(), .0.message())]
    Watch(Status),
    #[error("watch stream ended")]
    WatchEnded,
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error("{step} stalled: no answer within the peer call deadline")]
    Stalled { step: &'static str },
    #[error("cut off: {refused} batches or fork evidence of the last pull refused")]
    InvalidBatches { refused: u64 },
    #[error("announced this node's own log at {announced}, but its pull left it at {held}")]
    Undelivered { announced: u64, held: u64 },
    #[error("ended: {0}")]
    Deauthorized(Deauthorized),
}

/// Why the trust list in force no longer lets this node replicate with a
/// peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Deauthorized {
    #[error("this node's trust list has expired")]
    ListExpired,
    #[error("the peer is no longer an active member with `replicate` and an endpoint")]
    NotAPeer,
    #[error("the peer's endpoint or TLS key changed")]
    Moved,
}

impl SessionError {
    /// The counted reason.
    pub(crate) fn failure(&self) -> SessionFailure {
        match self {
            SessionError::Connect(_) => SessionFailure::Connect,
            SessionError::WatchRefused(_) => SessionFailure::WatchRefused,
            SessionError::Watch(_) | SessionError::WatchEnded => SessionFailure::WatchEnded,
            SessionError::Pull(PullError::Refused(_)) => SessionFailure::PullRefused,
            SessionError::Pull(PullError::Stream(_)) => SessionFailure::PullStream,
            SessionError::Pull(PullError::Heads(_) | PullError::Flush(_)) => SessionFailure::Store,
            SessionError::Pull(PullError::Stalled) | SessionError::Stalled { .. } => {
                SessionFailure::Stalled
            }
            SessionError::InvalidBatches { .. } => SessionFailure::InvalidBatches,
            SessionError::Undelivered { .. } => SessionFailure::Undelivered,
            SessionError::Pull(PullError::Cut) | SessionError::Deauthorized(_) => {
                SessionFailure::Deauthorized
            }
        }
    }
}

/// What this node last saw of a peer.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerView {
    pub connected: bool,
    pub heads: HashMap<String, u64>,
    pub last_pull_unix: i64,
    pub last_error: String,
    /// Why the last session ended, if one has.
    pub last_failure: Option<SessionFailure>,
    /// Sessions failed in a row (0 after a healthy one).
    pub failures_in_a_row: u32,
    /// When the next attempt is due by the node's clock (0: none pending).
    pub next_attempt_unix: i64,
    /// A pull from the peer ran to its end since the node started.
    answered: bool,
    /// The peer answered, or a session with it failed, since the node
    /// started: readiness no longer waits for it.
    settled: bool,
    /// The head of this node's own log that the peer's open session
    /// announced (0 when none is open).
    own_head: u64,
}

/// How replication runs (from the node's config).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub pull_interval: Duration,
    /// The coalition's retention period: no honest node purges an entry of
    /// a batch younger than this.
    pub retention: Duration,
    /// Members to pull from (empty: all).
    pub only: Vec<String>,
    /// Longest silence of a Pull stream before the session ends.
    pub pull_idle: Duration,
    /// Reconnect backoff: the first wait, and the longest.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

pub(crate) struct Replication {
    pub logs: Arc<OriginLogs>,
    pub trust: Arc<TrustState>,
    pub dialer: PeerDialer,
    pub settings: Settings,
    counters: Arc<Counters>,
    clock: Clock,
    /// One lock per listed origin: held while a batch of it is checked
    /// against the chain and applied, never across a network read.
    origins: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    ready: watch::Sender<bool>,
    views: Mutex<HashMap<String, PeerView>>,
}

/// Peers to replicate with: active members with `replicate` and an
/// endpoint, limited to `only` when it names any.
fn peers(trust: &TrustState, only: &[String]) -> Vec<Member> {
    trust.peers(Some(PeerCapability::Replicate), only)
}

impl Replication {
    pub(crate) fn new(
        logs: Arc<OriginLogs>,
        trust: Arc<TrustState>,
        dialer: PeerDialer,
        settings: Settings,
        counters: Arc<Counters>,
        clock: Clock,
    ) -> (Arc<Replication>, watch::Receiver<bool>) {
        // With no peer to ask, the own log's head is what the store says.
        let (ready, rx) = watch::channel(peers(&trust, &settings.only).is_empty());
        let r = Replication {
            logs,
            trust,
            dialer,
            settings,
            counters,
            clock,
            origins: Mutex::new(HashMap::new()),
            ready,
            views: Mutex::new(HashMap::new()),
        };
        (Arc::new(r), rx)
    }

    pub(crate) fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// What this node last saw of each peer.
    pub(crate) fn views(&self) -> Vec<(String, PeerView)> {
        let mut v: Vec<_> = self
            .views
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn view(&self, peer: &str, f: impl FnOnce(&mut PeerView)) {
        f(self.views.lock().entry(peer.to_string()).or_default());
    }

    /// Pulls everything `peer` holds that this node lacks, until the
    /// stream ends, stays silent for the idle deadline, or `cut`. Returns
    /// what this pull counted (the peer's counters since it began).
    pub(crate) async fn pull(
        &self,
        client: &mut FederationClient<Channel>,
        peer: &str,
        cut: &CancellationToken,
    ) -> Result<PeerCounts, PullError> {
        // Pulls from one peer run one at a time: the counters' difference
        // is this pull's.
        let before = self.counters.peer(peer);
        let have = heads(&self.logs.store).map_err(PullError::Heads)?;
        let mut stream = within(cut, PEER_CALL_TIMEOUT, client.pull(PullRequest { have }))
            .await
            .map_err(Waited::pull_error)?
            .map_err(PullError::Refused)?
            .into_inner();
        let result = loop {
            let m = match within(cut, self.settings.pull_idle, stream.message()).await {
                Ok(m) => m,
                Err(e) => break Err(e.pull_error()),
            };
            match m {
                Ok(Some(m)) => match m.item {
                    Some(pull_response::Item::Batch(b)) => {
                        self.ingest_batch(b, peer).await;
                    }
                    Some(pull_response::Item::Fork(ev)) => {
                        // Counted and logged; the stream goes on either way.
                        let _ = self.ingest_fork(ev, peer).await;
                    }
                    None => {}
                },
                Ok(None) => break Ok(()),
                Err(s) => break Err(PullError::Stream(s)),
            }
        };
        let pulled = self.counters.peer(peer).since(&before);
        // Replicated batches are flushed per pull: a crash before this
        // loses nothing that cannot be pulled again.
        if pulled.batches(BatchOutcome::Applied) > 0 {
            self.logs.store.flush().await.map_err(PullError::Flush)?;
        }
        self.view(peer, |v| v.last_pull_unix = self.clock.now());
        if pulled.batches(BatchOutcome::Applied) > 0 || pulled.rejected_total() > 0 {
            tracing::info!(
                peer,
                applied = pulled.batches(BatchOutcome::Applied),
                duplicates = pulled.batches(BatchOutcome::Duplicate),
                rejected = pulled.rejected_total(),
                gaps = pulled.batches(BatchOutcome::Gap),
                forks = pulled.batches(BatchOutcome::Fork),
                "pulled"
            );
        }
        result?;
        self.counters.pull_completed(peer);
        Ok(self.counters.peer(peer).since(&before))
    }

    /// Verifies and applies one batch received from `peer`, and counts the
    /// outcome.
    pub(crate) async fn ingest_batch(&self, raw: LogBatch, peer: &str) -> Ingest {
        // Decoding, hashing every entry and the signature check cost CPU in
        // proportion to what the peer sent: on the blocking pool, so that a
        // peer sending large batches does not hold up the async workers.
        let list = self.trust.current();
        let checked = tokio::task::spawn_blocking(move || checked(raw, &list)).await;
        let b = match checked {
            Ok(Ok(b)) => b,
            Ok(Err(refusal)) => {
                let (b, r) = *refusal;
                return self.refused(peer, b.as_ref(), r);
            }
            Err(e) => {
                tracing::error!(peer, error = %e, "checking a received batch");
                return self.refused(
                    peer,
                    None,
                    BatchRefused::Verify(BatchError::Decode("the check did not finish".into())),
                );
            }
        };
        let lock = self.origin_lock(b.origin());
        let _applying = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        match self.admit(&b, peer).await {
            Ok(o) => {
                self.counters.batch(peer, o);
                match o {
                    BatchOutcome::Applied => Ingest::Applied,
                    BatchOutcome::Duplicate => Ingest::Duplicate,
                    BatchOutcome::Gap => Ingest::Gap,
                    BatchOutcome::Fork => Ingest::Fork,
                }
            }
            Err(r) => self.refused(peer, Some(&b), r),
        }
    }

    /// The lock of a listed origin (an unlisted one is refused unapplied:
    /// it gets none, so that no peer can grow the map).
    fn origin_lock(&self, origin: &str) -> Option<Arc<tokio::sync::Mutex<()>>> {
        self.trust.current().member(origin)?;
        Some(
            self.origins
                .lock()
                .entry(origin.to_string())
                .or_default()
                .clone(),
        )
    }

    fn refused(&self, peer: &str, b: Option<&Batch>, r: BatchRefused) -> Ingest {
        let reason = r.reason();
        self.counters.batch_rejected(peer, reason);
        let (origin, first_seq) = b.map_or(("", 0), |b| (b.origin(), b.first_seq()));
        if r.is_local() {
            tracing::error!(peer, origin, first_seq, reason = reason.name(), error = %r, "batch rejected");
        } else {
            tracing::warn!(peer, origin, first_seq, reason = reason.name(), error = %r, "batch rejected");
        }
        Ingest::Rejected(reason)
    }

    /// Takes a batch [`checked`] against the trust list: what it does to
    /// this node's history of its origin.
    async fn admit(&self, b: &Batch, peer: &str) -> Result<BatchOutcome, BatchRefused> {
        // A purge only touches entries dead for longer than the retention
        // period, so their batch is older than that: a purged entry in a
        // younger batch was stripped on the way.
        let young = younger_than(b, self.settings.retention, self.clock.now())
            .map_err(BatchRefused::InvalidField)?;
        if young && b.raw.entries.iter().any(|e| !e.purged_hash.is_empty()) {
            return Err(BatchRefused::StrippedPurge);
        }
        if b.first_seq() == 0 || b.header.count == 0 {
            return Err(BatchRefused::Numbering);
        }
        let store = &self.logs.store;
        let head = store
            .head(b.origin())
            .map_err(BatchRefused::HeadRead)?
            .unwrap_or_default();
        if b.first_seq() <= head.last_seq {
            let mine = store
                .batch_holding(b.origin(), b.first_seq())
                .map_err(BatchRefused::HeadRead)?
                .ok_or(BatchRefused::NotHeld { seq: b.first_seq() })?;
            if mine.hash() == b.hash() {
                return Ok(BatchOutcome::Duplicate);
            }
            let ev = ForkEvidence {
                first: Some(mine.raw),
                second: Some(b.raw.clone()),
            };
            return match self.keep_fork(ev, peer).await {
                // Valid evidence: the origin is frozen even if the store
                // could not keep it.
                Ok(_) | Err(EvidenceRefused::Store(_)) => Ok(BatchOutcome::Fork),
                Err(e) => Err(BatchRefused::UnprovenFork(e)),
            };
        }
        if b.first_seq() > head.last_seq.saturating_add(1) {
            return Ok(BatchOutcome::Gap);
        }
        match self.logs.append(b, false).await {
            Ok(_) => Ok(BatchOutcome::Applied),
            Err(LogsError::Store(
                StoreError::ChainBroken { .. } | StoreError::NotContiguous { .. },
            )) => Err(BatchRefused::Chain),
            Err(LogsError::Store(e)) => Err(BatchRefused::Store(e)),
            Err(e @ LogsError::Index(_)) => Err(BatchRefused::Index(e)),
            Err(e @ LogsError::SetAside { .. }) => Err(BatchRefused::SetAside(e)),
        }
    }

    /// Checks fork evidence received from `peer` ([`super::forks::check`]),
    /// keeps it if its fork point is lower than that of the evidence kept
    /// for the origin, freezes the origin from the kept evidence's fork
    /// point, and counts the outcome.
    pub(crate) async fn ingest_fork(
        &self,
        ev: ForkEvidence,
        peer: &str,
    ) -> Result<EvidenceOutcome, EvidenceRefused> {
        let r = self.keep_fork(ev, peer).await;
        match &r {
            Ok(o) => self.counters.evidence(peer, *o),
            Err(e) => {
                self.counters.evidence_rejected(peer, e.reason());
                if !matches!(e, EvidenceRefused::Store(_)) {
                    tracing::warn!(peer, reason = e.reason().name(), error = %e, "fork evidence rejected");
                }
            }
        }
        r
    }

    async fn keep_fork(
        &self,
        ev: ForkEvidence,
        peer: &str,
    ) -> Result<EvidenceOutcome, EvidenceRefused> {
        let list = self.trust.current();
        let (origin, from) = super::forks::check(&ev, &list)?;
        // Of all the evidence found, the one with the lowest fork point is
        // kept, whatever the order it came in.
        let kept = match self.logs.store.put_fork(&origin, &ev) {
            Ok(true) => {
                let _ = self.logs.store.flush().await;
                tracing::error!(origin = origin.as_str(), frozen_from_seq = from, peer, "fork: the origin signed two different batches; frozen until the operators act (suspend it, rotate its key)");
                Ok(EvidenceOutcome::New)
            }
            Ok(false) => Ok(EvidenceOutcome::Known),
            Err(e) => {
                tracing::error!(origin = %origin, error = %crate::telemetry::chain(&e), "keeping fork evidence");
                Err(EvidenceRefused::Store(e))
            }
        };
        match super::forks::refreeze(&self.logs, &list, &origin) {
            Ok(()) => kept,
            Err(e) => {
                // Valid evidence freezes the origin even if the store fails.
                tracing::error!(origin = %origin, error = %crate::telemetry::chain(&e), "reading fork evidence");
                let mut index = self.logs.index.write();
                let at = index
                    .frozen()
                    .into_iter()
                    .find(|(o, _)| *o == origin)
                    .map_or(from, |(_, s)| s.min(from));
                index.set_frozen(&origin, Some(at));
                kept
            }
        }
    }
}

/// Decodes a received batch and checks it by itself, before anything of
/// this node's is read: its size, its signature and origin against the
/// trust list in force (`list`), and every field within the bounds honest
/// nodes write (a stored batch must apply to the index, at every start).
/// CPU-bound; run on the blocking pool.
fn checked(raw: LogBatch, list: &TrustList) -> Result<Batch, Box<(Option<Batch>, BatchRefused)>> {
    let bytes = prost::Message::encoded_len(&raw);
    let b = Batch::decode(raw).map_err(|e| Box::new((None, BatchRefused::Verify(e))))?;
    // Before verifying: the rest of its origin is a gap until a peer
    // sends a batch that fits.
    if bytes > batch::MAX_RECEIVED_BYTES {
        return Err(Box::new((Some(b), BatchRefused::Oversized { bytes })));
    }
    if let Err(e) = crate::trust::batches::verify(&b, list) {
        return Err(Box::new((Some(b), BatchRefused::Verify(e))));
    }
    if let Err(e) = b.check_fields() {
        return Err(Box::new((Some(b), BatchRefused::InvalidField(e))));
    }
    Ok(b)
}

/// Whether `b` was made less than `retention` before `now`. A creation
/// time so far ahead that adding the retention period overflows is refused.
fn younger_than(b: &Batch, retention: Duration, now: i64) -> Result<bool, BatchError> {
    let end = i64::try_from(retention.as_secs())
        .ok()
        .and_then(|r| b.header.created_unix.checked_add(r))
        .ok_or_else(|| BatchError::Field {
            origin: b.origin().to_string(),
            first_seq: b.first_seq(),
            field: "created_unix".into(),
            rule: "created_unix + retention must not overflow",
        })?;
    Ok(end > now)
}

/// Whether a peer's announced head is worth a pull: it is ahead of this
/// node's, or at the same sequence number with another hash (a pull then
/// brings the peer's batch there, fork evidence), of an origin the list in
/// force names. A peer behind has nothing to send. Reads only this node's
/// head.
fn wants_pull(repl: &Replication, h: &crate::proto::OriginHead) -> bool {
    // An origin the list does not name has nothing this node would take.
    if repl.trust.current().member(&h.origin).is_none() {
        return false;
    }
    match repl.logs.store.head(&h.origin) {
        Ok(mine) => {
            let mine = mine.unwrap_or_default();
            matches!(
                compare_heads(mine.last_seq, &mine.hash, h),
                Heads::PeerAhead | Heads::SameSeqDiffers
            )
        }
        Err(e) => {
            tracing::error!(origin = %h.origin, error = %crate::telemetry::chain(&e), "reading a head");
            false
        }
    }
}

/// Why a bounded wait for a peer ended without its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    /// The deadline passed.
    TooLong,
    /// The session was ended meanwhile.
    Cut,
}

impl Waited {
    fn pull_error(self) -> PullError {
        match self {
            Waited::TooLong => PullError::Stalled,
            Waited::Cut => PullError::Cut,
        }
    }

    fn session_error(self, step: &'static str) -> SessionError {
        match self {
            Waited::TooLong => SessionError::Stalled { step },
            Waited::Cut => SessionError::Pull(PullError::Cut),
        }
    }
}

/// `fut`, unless `cut` comes first or it takes longer than `limit`.
async fn within<T>(
    cut: &CancellationToken,
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Waited> {
    tokio::select! {
        _ = cut.cancelled() => Err(Waited::Cut),
        r = tokio::time::timeout(limit, fut) => r.map_err(|_| Waited::TooLong),
    }
}

/// Batches and fork evidence of a pull refused for their own fault, not
/// this node's store.
fn refused_for_their_fault(pulled: &PeerCounts) -> u64 {
    let batches: u64 = BatchRejection::ALL
        .iter()
        .filter(|r| {
            !matches!(
                r,
                BatchRejection::HeadRead | BatchRejection::Store | BatchRejection::Index
            )
        })
        .map(|r| pulled.rejected(*r))
        .sum();
    let evidence: u64 = EvidenceRejection::ALL
        .iter()
        .filter(|r| **r != EvidenceRejection::Store)
        .map(|r| pulled.evidence_rejected(*r))
        .sum();
    batches + evidence
}

/// The wait before attempt `failures + 1` after `failures` failed sessions
/// in a row: `min` doubled per earlier failure, at most `max`, then up to a
/// quarter shorter at random (so that peers cut off together do not all
/// come back together), never under `min`.
fn backoff(min: Duration, max: Duration, failures: u32, jitter: f64) -> Duration {
    let doubled = min.saturating_mul(1u32 << failures.saturating_sub(1).min(30));
    let base = doubled.min(max);
    base.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0)).max(min)
}

impl Replication {
    /// Whether the list in force still lets this node replicate with `m` as
    /// dialled: the list has not expired, and `m` is still a peer at the
    /// same endpoint with the same TLS keys.
    fn authorization(&self, m: &Member) -> Result<(), Deauthorized> {
        if self.trust.current().is_expired(self.clock.now()) {
            return Err(Deauthorized::ListExpired);
        }
        match peers(&self.trust, &self.settings.only)
            .into_iter()
            .find(|p| p.id == m.id)
        {
            None => Err(Deauthorized::NotAPeer),
            Some(p) if p.endpoint != m.endpoint || p.tls_spki_sha256 != m.tls_spki_sha256 => {
                Err(Deauthorized::Moved)
            }
            Some(_) => Ok(()),
        }
    }

    /// Records the heads a peer announced. Only origins the list in force names are kept, so that no peer can
    /// grow this node's memory with made-up origins.
    fn announced(&self, peer: &str, heads: &[crate::proto::OriginHead]) {
        let own = self.trust.node_id();
        let list = self.trust.current();
        self.view(peer, |v| {
            for h in heads.iter().filter(|h| list.member(&h.origin).is_some()) {
                v.heads.insert(h.origin.clone(), h.last_seq);
                if h.origin == own {
                    v.own_head = h.last_seq;
                }
            }
        });
    }

    /// This node's head of its own log (`None` if unreadable: readiness
    /// then waits).
    fn own_head(&self) -> Option<u64> {
        match self.logs.store.head(self.trust.node_id()) {
            Ok(h) => Some(h.map_or(0, |h| h.last_seq)),
            Err(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "reading this node's own head");
                None
            }
        }
    }

    /// A pull within a session: afterwards the peer has answered, or is cut
    /// off for refused batches, or (before contributions open) for having
    /// announced more of this node's own log than it brought.
    async fn pull_from(
        &self,
        client: &mut FederationClient<Channel>,
        peer: &str,
        cut: &CancellationToken,
    ) -> Result<(), SessionError> {
        let pulled = self.pull(client, peer, cut).await?;
        let refused = refused_for_their_fault(&pulled);
        if refused > 0 {
            return Err(SessionError::InvalidBatches { refused });
        }
        if !self.is_ready() {
            let announced = self.views.lock().get(peer).map_or(0, |v| v.own_head);
            let held = self.own_head().unwrap_or(0);
            if announced > held {
                return Err(SessionError::Undelivered { announced, held });
            }
        }
        self.view(peer, |v| {
            v.answered = true;
            v.settled = true;
        });
        self.update_ready();
        Ok(())
    }

    /// Opens contributions once the own log's head is confirmed: some peer
    /// answered a pull, every peer answered or failed a session, and no
    /// peer with an open session announced more of the own log than this
    /// node holds (it is pulled from first). With no peers, at once.
    pub(crate) fn update_ready(&self) {
        if self.is_ready() {
            return;
        }
        let peers = peers(&self.trust, &self.settings.only);
        let Some(mine) = self.own_head() else { return };
        let mut answered = peers.is_empty();
        {
            let views = self.views.lock();
            for p in &peers {
                let Some(v) = views.get(&p.id) else { return };
                if !v.settled || v.own_head > mine {
                    return;
                }
                answered |= v.answered;
            }
        }
        if answered && !self.ready.send_replace(true) {
            tracing::info!(
                own_head = mine,
                "own log's head confirmed with the peers: contributions open"
            );
        }
    }
}

async fn session(
    repl: &Replication,
    member: &Member,
    cut: &CancellationToken,
) -> Result<(), SessionError> {
    let channel = repl
        .dialer
        .channel(member)
        .await
        .map_err(SessionError::Connect)?;
    let mut client = super::client(channel);
    let mut watch = within(cut, PEER_CALL_TIMEOUT, client.watch(WatchRequest {}))
        .await
        .map_err(|w| w.session_error("watch"))?
        .map_err(SessionError::WatchRefused)?
        .into_inner();
    // A Watch opens with every head the peer holds: what readiness needs
    // to know before the first pull.
    let first = within(cut, PEER_CALL_TIMEOUT, watch.message())
        .await
        .map_err(|w| w.session_error("watch"))?
        .map_err(SessionError::Watch)?
        .ok_or(SessionError::WatchEnded)?;
    repl.announced(&member.id, &first.heads);
    repl.view(&member.id, |v| {
        v.connected = true;
        v.last_error.clear();
        v.next_attempt_unix = 0;
    });
    repl.pull_from(&mut client, &member.id, cut).await?;
    let mut tick = tokio::time::interval(repl.settings.pull_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cut.cancelled() => return Err(PullError::Cut.into()),
            m = watch.message() => {
                let m = m.map_err(SessionError::Watch)?.ok_or(SessionError::WatchEnded)?;
                let pull = m.heads.iter().any(|h| wants_pull(repl, h));
                repl.announced(&member.id, &m.heads);
                if pull {
                    repl.pull_from(&mut client, &member.id, cut).await?;
                }
            }
            _ = tick.tick() => {
                repl.pull_from(&mut client, &member.id, cut).await?;
            }
        }
    }
}

/// One session with `member`, ended at once (between two batches, never
/// inside one) when the list in force stops authorizing it or the node
/// stops.
async fn authorized_session(
    repl: &Replication,
    member: &Member,
    stop: &CancellationToken,
) -> Result<(), SessionError> {
    let cut = stop.child_token();
    let run = session(repl, member, &cut);
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => r,
        why = repl.trust.until_refused(|_| repl.authorization(member)) => {
            cut.cancel();
            let _ = run.await;
            Err(SessionError::Deauthorized(why))
        }
    }
}

async fn peer_loop(repl: Arc<Replication>, id: String, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let member = peers(&repl.trust, &repl.settings.only)
            .into_iter()
            .find(|m| m.id == id);
        let Some(member) = member else {
            repl.view(&id, |v| {
                v.connected = false;
                v.own_head = 0;
                v.next_attempt_unix = 0;
            });
            repl.update_ready();
            return;
        };
        if repl.authorization(&member).is_err() {
            // This node's list has expired: nothing to do until a newer one
            // (or one that no longer lists the peer).
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = repl.trust.until_refused(|_| match repl.authorization(&member) {
                    Err(Deauthorized::ListExpired) => Ok(()),
                    _ => Err(()),
                }) => {}
            }
            continue;
        }
        let pulls = repl.counters.peer(&id).pulls;
        let Err(e) = authorized_session(&repl, &member, &stop).await else {
            continue;
        };
        if stop.is_cancelled() {
            return;
        }
        let failure = e.failure();
        let healthy = repl.counters.peer(&id).pulls > pulls
            && !matches!(
                failure,
                SessionFailure::InvalidBatches | SessionFailure::Undelivered
            );
        failures = if healthy {
            1
        } else {
            failures.saturating_add(1)
        };
        let wait = match failure {
            // Not the peer's doing: dial again as the list now says.
            SessionFailure::Deauthorized => Duration::ZERO,
            _ => backoff(
                repl.settings.backoff_min,
                repl.settings.backoff_max,
                failures,
                rand::random(),
            ),
        };
        repl.counters.session_failed(&id, failure);
        match failure {
            SessionFailure::Connect | SessionFailure::WatchEnded => {
                tracing::debug!(peer = %id, reason = failure.name(), error = %crate::telemetry::chain(&e), wait_ms = wait.as_millis() as u64, "replication session ended")
            }
            _ => {
                tracing::warn!(peer = %id, reason = failure.name(), error = %crate::telemetry::chain(&e), wait_ms = wait.as_millis() as u64, "replication session ended")
            }
        }
        let now = repl.clock.now();
        repl.view(&id, |v| {
            v.connected = false;
            v.last_error = e.to_string();
            v.last_failure = Some(failure);
            v.failures_in_a_row = failures;
            v.next_attempt_unix = now.saturating_add(wait.as_secs_f64().ceil() as i64);
            v.settled = true;
            v.own_head = 0;
        });
        repl.update_ready();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Runs replication with every peer until `stop`; follows trust-list changes.
pub(crate) async fn run(repl: Arc<Replication>, stop: CancellationToken) {
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut changed = repl.trust.subscribe();
    loop {
        running.retain(|_, h| !h.is_finished());
        for m in peers(&repl.trust, &repl.settings.only) {
            running.entry(m.id.clone()).or_insert_with(|| {
                tokio::spawn(peer_loop(repl.clone(), m.id.clone(), stop.clone()))
            });
        }
        // Peers gone from the list no longer hold readiness back.
        repl.update_ready();
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = changed.changed() => {}
            _ = tokio::time::sleep(repl.settings.pull_interval) => {}
        }
    }
    for (_, h) in running {
        let _ = h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_of_a_refusal_has_its_own_reason() {
        let o = || "liaison".to_string();
        let cases = [
            (
                BatchRefused::Verify(BatchError::Decode("x".into())),
                BatchRejection::Decode,
            ),
            (
                BatchRefused::Verify(BatchError::Count {
                    origin: o(),
                    expected: 3,
                    got: 2,
                }),
                BatchRejection::Entries,
            ),
            (
                BatchRefused::Verify(BatchError::Root {
                    origin: o(),
                    first_seq: 1,
                }),
                BatchRejection::Entries,
            ),
            (
                BatchRefused::Verify(BatchError::UnknownOrigin { origin: o() }),
                BatchRejection::UnknownOrigin,
            ),
            (
                BatchRefused::Verify(BatchError::NotContributor { origin: o() }),
                BatchRejection::NotContributor,
            ),
            (
                BatchRefused::Verify(BatchError::Signature {
                    origin: o(),
                    first_seq: 4,
                }),
                BatchRejection::Signature,
            ),
            (
                BatchRefused::Verify(BatchError::PastSuspension {
                    origin: o(),
                    last_seq: 3,
                    limit: 2,
                }),
                BatchRejection::PastSuspension,
            ),
            (
                BatchRefused::Verify(BatchError::PastSharingBasis { origin: o() }),
                BatchRejection::PastSharingBasis,
            ),
            (BatchRefused::StrippedPurge, BatchRejection::StrippedPurge),
            (BatchRefused::Numbering, BatchRejection::Numbering),
            (
                BatchRefused::Verify(BatchError::Field {
                    origin: o(),
                    first_seq: 1,
                    field: "op".into(),
                    rule: "r",
                }),
                BatchRejection::InvalidField,
            ),
            (BatchRefused::Chain, BatchRejection::BrokenChain),
            (
                BatchRefused::HeadRead(StoreError::Corrupt("x".into())),
                BatchRejection::HeadRead,
            ),
            (BatchRefused::NotHeld { seq: 2 }, BatchRejection::HeadRead),
            (
                BatchRefused::Store(StoreError::Corrupt("x".into())),
                BatchRejection::Store,
            ),
            (
                BatchRefused::UnprovenFork(EvidenceRefused::NotAFork),
                BatchRejection::UnprovenFork,
            ),
            (
                BatchRefused::Oversized { bytes: 1 << 24 },
                BatchRejection::Oversized,
            ),
        ];
        for (refused, reason) in cases {
            assert_eq!(refused.reason(), reason, "{refused}");
        }
    }

    #[test]
    fn a_creation_time_that_overflows_with_the_retention_period_is_refused() {
        let header = crate::proto::BatchHeader {
            origin: "liaison".into(),
            first_seq: 1,
            created_unix: i64::MAX,
            ..Default::default()
        };
        let b = Batch::decode(LogBatch {
            header: prost::Message::encode_to_vec(&header),
            ..Default::default()
        })
        .unwrap();
        let year = Duration::from_secs(365 * 86_400);
        let e = younger_than(&b, year, 0).unwrap_err();
        assert!(matches!(e, BatchError::Field { ref field, .. } if field == "created_unix"));
        assert_eq!(
            BatchRefused::InvalidField(e).reason(),
            BatchRejection::InvalidField
        );
        assert!(younger_than(&b, Duration::from_secs(u64::MAX), 0).is_err());
        assert_eq!(younger_than(&b, Duration::ZERO, 0), Ok(true));
    }

    #[test]
    fn backoff_doubles_from_the_minimum_to_the_maximum_with_up_to_a_quarter_off() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(300));
        let b = |n, j| backoff(min, max, n, j);
        assert_eq!(b(1, 0.0), min);
        assert_eq!(b(2, 0.0), Duration::from_secs(2));
        assert_eq!(b(4, 0.0), Duration::from_secs(8));
        assert_eq!(b(9, 0.0), Duration::from_secs(256));
        assert_eq!(b(10, 0.0), max);
        assert_eq!(b(u32::MAX, 0.0), max);
        assert_eq!(b(10, 1.0), Duration::from_secs(225));
        // Never under the minimum, whatever the jitter.
        assert_eq!(b(1, 1.0), min);
        assert_eq!(b(0, 0.5), min);
    }

    #[test]
    fn only_refusals_for_the_batches_own_fault_cut_a_peer_off() {
        let c = Counters::new();
        c.batch_rejected("p", BatchRejection::Store);
        c.batch_rejected("p", BatchRejection::Index);
        c.evidence_rejected("p", EvidenceRejection::Store);
        c.batch("p", BatchOutcome::Gap);
        assert_eq!(refused_for_their_fault(&c.peer("p")), 0);
        c.batch_rejected("p", BatchRejection::Signature);
        c.evidence_rejected("p", EvidenceRejection::NotAFork);
        assert_eq!(refused_for_their_fault(&c.peer("p")), 2);
    }

    #[test]
    fn session_errors_name_their_failure() {
        let s = || Status::unavailable("gone");
        assert_eq!(
            SessionError::WatchRefused(s()).failure(),
            SessionFailure::WatchRefused
        );
        assert_eq!(
            SessionError::WatchEnded.failure(),
            SessionFailure::WatchEnded
        );
        assert_eq!(
            SessionError::Watch(s()).failure(),
            SessionFailure::WatchEnded
        );
        assert_eq!(
            SessionError::from(PullError::Refused(s())).failure(),
            SessionFailure::PullRefused
        );
        assert_eq!(
            SessionError::from(PullError::Stream(s())).failure(),
            SessionFailure::PullStream
        );
        assert_eq!(
            SessionError::from(PullError::Flush(StoreError::Corrupt("x".into()))).failure(),
            SessionFailure::Store
        );
        assert_eq!(
            SessionError::from(PullError::Stalled).failure(),
            SessionFailure::Stalled
        );
        assert_eq!(
            SessionError::Stalled { step: "watch" }.failure(),
            SessionFailure::Stalled
        );
        assert_eq!(
            SessionError::InvalidBatches { refused: 3 }.failure(),
            SessionFailure::InvalidBatches
        );
        assert_eq!(
            SessionError::Undelivered {
                announced: 3,
                held: 1
            }
            .failure(),
            SessionFailure::Undelivered
        );
        assert_eq!(
            SessionError::Deauthorized(Deauthorized::ListExpired).failure(),
            SessionFailure::Deauthorized
        );
        // What Status shows as the peer's last error names the step and the
        // peer's status code.
        assert_eq!(
            SessionError::from(PullError::Refused(s())).to_string(),
            "pull refused: Unavailable: gone"
        );
    }
}
