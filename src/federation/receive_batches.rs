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
//! held is fork evidence: kept, passed on, and the origin frozen from there.
//! A node's contributions wait until its own log's head is confirmed with a
//! peer, so that a node restarted after data loss never reuses a sequence
//! number. A batch younger than the retention period that arrives with
//! purged entries is refused: no honest node purges those, so a relay
//! stripped them (an older batch's purged entries cannot be told apart
//! from an honest purge with this format; see the README).
//!
//! Every outcome is counted in the node's [`Counters`], per peer.

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{transport::Channel, Status};

use super::{compare_heads, heads, Heads, PeerDialer};
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
    trust::state::TrustState,
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
}

pub(crate) struct Replication {
    pub logs: Arc<OriginLogs>,
    pub trust: Arc<TrustState>,
    pub dialer: PeerDialer,
    pub settings: Settings,
    counters: Arc<Counters>,
    clock: Clock,
    apply: tokio::sync::Mutex<()>,
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
            apply: tokio::sync::Mutex::new(()),
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

    /// Pulls everything `peer` holds that this node lacks. Returns what this
    /// pull counted (the peer's counters since it began).
    pub(crate) async fn pull(
        &self,
        client: &mut FederationClient<Channel>,
        peer: &str,
    ) -> Result<PeerCounts, PullError> {
        let _guard = self.apply.lock().await;
        // Pulls from one peer run one at a time: the counters' difference
        // is this pull's.
        let before = self.counters.peer(peer);
        let have = heads(&self.logs.store).map_err(PullError::Heads)?;
        let mut stream = client
            .pull(PullRequest { have })
            .await
            .map_err(PullError::Refused)?
            .into_inner();
        let result = loop {
            match stream.message().await {
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
        let bytes = prost::Message::encoded_len(&raw);
        let b = match Batch::decode(raw) {
            Ok(b) => b,
            Err(e) => return self.refused(peer, None, BatchRefused::Verify(e)),
        };
        // Before verifying: the rest of its origin is a gap until a peer
        // sends a batch that fits.
        if bytes > batch::MAX_RECEIVED_BYTES {
            return self.refused(peer, Some(&b), BatchRefused::Oversized { bytes });
        }
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

    async fn admit(&self, b: &Batch, peer: &str) -> Result<BatchOutcome, BatchRefused> {
        crate::trust::batches::verify(b, &self.trust.current())?;
        // Every field within what honest nodes write, before anything is
        // stored: a stored batch must apply to the index, at every start.
        b.check_fields().map_err(BatchRefused::InvalidField)?;
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

    /// Checks fork evidence received from `peer` (two different batches of
    /// one origin, both validly signed and within every field rule,
    /// overlapping in sequence numbers), keeps it, freezes the origin from the earlier first sequence number,
    /// and counts the outcome.
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
        let (Some(a), Some(b)) = (ev.first.clone(), ev.second.clone()) else {
            return Err(EvidenceRefused::Incomplete);
        };
        let a = Batch::decode(a).map_err(EvidenceRefused::Decode)?;
        let b = Batch::decode(b).map_err(EvidenceRefused::Decode)?;
        let fork = a.origin() == b.origin()
            && a.hash() != b.hash()
            && a.first_seq() <= b.last_seq()
            && b.first_seq() <= a.last_seq();
        if !fork {
            return Err(EvidenceRefused::NotAFork);
        }
        for x in [&a, &b] {
            crate::trust::batches::verify(x, &list).map_err(EvidenceRefused::Unverified)?;
            // Bad bytes are never kept, by this path either.
            x.check_fields().map_err(EvidenceRefused::InvalidField)?;
        }
        let from = batch::fork_point(&ev).unwrap_or(1);
        let kept = match self.logs.store.put_fork(a.origin(), &ev) {
            Ok(true) => {
                let _ = self.logs.store.flush().await;
                tracing::error!(origin = a.origin(), frozen_from_seq = from, peer, "fork: the origin signed two different batches; frozen until the operators act (suspend it, rotate its key)");
                Ok(EvidenceOutcome::New)
            }
            Ok(false) => Ok(EvidenceOutcome::Known),
            Err(e) => {
                tracing::error!(origin = a.origin(), error = %crate::telemetry::chain(&e), "keeping fork evidence");
                Err(EvidenceRefused::Store(e))
            }
        };
        self.logs.index.write().freeze(a.origin(), from);
        kept
    }
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
/// brings the peer's batch there, fork evidence). A peer behind has
/// nothing to send. Reads only this node's head.
fn wants_pull(repl: &Replication, h: &crate::proto::OriginHead) -> bool {
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

async fn session(
    repl: &Replication,
    member: &Member,
    stop: &CancellationToken,
) -> Result<(), SessionError> {
    let channel = repl
        .dialer
        .channel(member)
        .await
        .map_err(SessionError::Connect)?;
    let mut client = super::client(channel);
    let mut watch = client
        .watch(WatchRequest {})
        .await
        .map_err(SessionError::WatchRefused)?
        .into_inner();
    repl.view(&member.id, |v| {
        v.connected = true;
        v.last_error.clear();
    });
    repl.pull(&mut client, &member.id).await?;
    // The own log's head is confirmed once one peer's history is in.
    repl.ready.send_if_modified(|r| !std::mem::replace(r, true));
    let mut tick = tokio::time::interval(repl.settings.pull_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = watch.message() => {
                let m = m.map_err(SessionError::Watch)?.ok_or(SessionError::WatchEnded)?;
                let pull = m.heads.iter().any(|h| wants_pull(repl, h));
                repl.view(&member.id, |v| {
                    for h in &m.heads {
                        v.heads.insert(h.origin.clone(), h.last_seq);
                    }
                });
                if pull {
                    repl.pull(&mut client, &member.id).await?;
                }
            }
            _ = tick.tick() => {
                repl.pull(&mut client, &member.id).await?;
            }
        }
    }
}

async fn peer_loop(repl: Arc<Replication>, id: String, stop: CancellationToken) {
    loop {
        let member = peers(&repl.trust, &repl.settings.only)
            .into_iter()
            .find(|m| m.id == id);
        let Some(member) = member else {
            repl.view(&id, |v| v.connected = false);
            return;
        };
        if let Err(e) = session(&repl, &member, &stop).await {
            repl.counters.session_failed(&id, e.failure());
            tracing::debug!(peer = %id, reason = e.failure().name(), error = %crate::telemetry::chain(&e), "replication session ended");
            repl.view(&id, |v| {
                v.connected = false;
                v.last_error = e.to_string();
            });
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
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
        // What Status shows as the peer's last error names the step and the
        // peer's status code.
        assert_eq!(
            SessionError::from(PullError::Refused(s())).to_string(),
            "pull refused: Unavailable: gone"
        );
    }
}
