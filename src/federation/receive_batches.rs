//! Pull-based replication of every origin log between member nodes.
//!
//! For each peer (an active member with `replicate` and an endpoint), a loop
//! keeps a `Watch` stream open (push hints: "origin X is at N") and pulls
//! when the peer is ahead or its history differs, and on a timer (every
//! `pull_seconds`) to repair anything missed. Every batch received is
//! verified against the origin's entry in the trust list in force, whoever
//! relayed it ([`crate::trust::batches::verify`]), then must extend the origin's
//! chain exactly; a batch that fails is logged with the peer and origin and
//! dropped, and the rest of the stream goes on. A batch already held is a
//! no-op; a different, validly signed batch at a sequence number already
//! held is fork evidence: kept, passed on, and the origin frozen from there.
//! A node's contributions wait until its own log's head is confirmed with a
//! peer, so that a node restarted after data loss never reuses a sequence
//! number. A batch younger than the retention period that arrives with
//! purged entries is refused: no honest node purges those, so a relay
//! stripped them (an older batch's purged entries cannot be told apart
//! from an honest purge with this format; see the README).

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;
use prost::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::PeerDialer;
use crate::{
    batch::{self, Batch},
    epochs::now_unix,
    logs::{LogsError, OriginLogs},
    proto::{
        federation_client::FederationClient, pull_response, ForkEvidence, LogBatch, Member,
        OriginHead, PeerCapability, PullRequest, WatchRequest,
    },
    store::{Store, StoreError},
    trust::state::TrustState,
};

/// What became of one received batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    Applied,
    Duplicate,
    /// Its predecessor is missing: it waits for a later pull.
    Gap,
    Rejected,
    Fork,
}

/// What this node last saw of a peer.
#[derive(Debug, Clone, Default)]
pub struct PeerView {
    pub connected: bool,
    pub heads: HashMap<String, u64>,
    pub last_pull_unix: i64,
    pub last_error: String,
}

pub struct Replication {
    pub logs: Arc<OriginLogs>,
    pub trust: Arc<TrustState>,
    pub dialer: PeerDialer,
    pub pull_interval: Duration,
    /// The coalition's retention period: no honest node purges an entry of
    /// a batch younger than this.
    pub retention: Duration,
    /// Members to pull from (empty: all).
    pub only: Vec<String>,
    apply: tokio::sync::Mutex<()>,
    ready: watch::Sender<bool>,
    views: Mutex<HashMap<String, PeerView>>,
}

/// Every origin's head, with hashes, as a pull request or watch message.
pub fn heads(store: &Store) -> Result<Vec<OriginHead>, StoreError> {
    Ok(store
        .heads()?
        .into_iter()
        .map(|(origin, h)| OriginHead {
            origin,
            last_seq: h.last_seq,
            hash: h.hash.to_vec(),
        })
        .collect())
}

/// Peers to replicate with: active members with `replicate` and an
/// endpoint, limited to `only` when it names any.
fn peers(trust: &TrustState, only: &[String]) -> Vec<Member> {
    trust.peers(Some(PeerCapability::Replicate), only)
}

impl Replication {
    pub fn new(
        logs: Arc<OriginLogs>,
        trust: Arc<TrustState>,
        dialer: PeerDialer,
        pull_interval: Duration,
        retention: Duration,
        only: Vec<String>,
    ) -> (Arc<Replication>, watch::Receiver<bool>) {
        // With no peer to ask, the own log's head is what the store says.
        let (ready, rx) = watch::channel(peers(&trust, &only).is_empty());
        let r = Replication {
            logs,
            trust,
            dialer,
            pull_interval,
            retention,
            only,
            apply: tokio::sync::Mutex::new(()),
            ready,
            views: Mutex::new(HashMap::new()),
        };
        (Arc::new(r), rx)
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// What this node last saw of each peer.
    pub fn views(&self) -> Vec<(String, PeerView)> {
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

    /// Pulls everything `peer` holds that this node lacks.
    pub async fn pull(
        &self,
        client: &mut FederationClient<Channel>,
        peer: &str,
    ) -> Result<PullStats, String> {
        let _guard = self.apply.lock().await;
        let have = heads(&self.logs.store).map_err(|e| e.to_string())?;
        let mut stream = client
            .pull(PullRequest { have })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        let mut stats = PullStats::default();
        let result = loop {
            match stream.message().await {
                Ok(Some(m)) => match m.item {
                    Some(pull_response::Item::Batch(b)) => {
                        stats.count(self.ingest_batch(b, peer).await)
                    }
                    Some(pull_response::Item::Fork(ev)) => {
                        self.ingest_fork(ev, peer).await;
                    }
                    None => {}
                },
                Ok(None) => break Ok(()),
                Err(s) => break Err(format!("{:?}: {}", s.code(), s.message())),
            }
        };
        // Replicated batches are flushed per pull: a crash before this
        // loses nothing that cannot be pulled again.
        if stats.applied > 0 {
            self.logs.store.flush().await.map_err(|e| e.to_string())?;
        }
        self.view(peer, |v| v.last_pull_unix = now_unix());
        if stats.applied > 0 || stats.rejected > 0 {
            tracing::info!(
                peer,
                applied = stats.applied,
                duplicates = stats.duplicates,
                rejected = stats.rejected,
                gaps = stats.gaps,
                "pulled"
            );
        }
        result.map(|_| stats)
    }

    /// Verifies and applies one batch received from `peer`.
    pub async fn ingest_batch(&self, raw: LogBatch, peer: &str) -> Ingest {
        let b = match Batch::decode(raw) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(peer, error = %e, "batch rejected");
                return Ingest::Rejected;
            }
        };
        let list = self.trust.current();
        if let Err(e) = crate::trust::batches::verify(&b, &list) {
            tracing::warn!(peer, origin = b.origin(), first_seq = b.first_seq(), error = %e, "batch rejected");
            return Ingest::Rejected;
        }
        // A purge only touches entries dead for longer than the retention
        // period, so their batch is older than that: a purged entry in a
        // younger batch was stripped on the way.
        let young = b.header.created_unix + self.retention.as_secs() as i64 > now_unix();
        if young && b.raw.entries.iter().any(|e| !e.purged_hash.is_empty()) {
            tracing::warn!(peer, origin = b.origin(), first_seq = b.first_seq(), "batch rejected: entries purged before the retention period allows (stripped on the way)");
            return Ingest::Rejected;
        }
        let store = &self.logs.store;
        let head = match store.head(b.origin()) {
            Ok(h) => h.unwrap_or_default(),
            Err(e) => {
                tracing::error!(error = %e, "reading a head");
                return Ingest::Rejected;
            }
        };
        if b.first_seq() <= head.last_seq {
            return match store.batch_holding(b.origin(), b.first_seq()) {
                Ok(Some(mine)) if mine.hash() == b.hash() => Ingest::Duplicate,
                Ok(Some(mine)) => {
                    let ev = ForkEvidence {
                        first: Some(mine.raw),
                        second: Some(b.raw),
                    };
                    self.ingest_fork(ev, peer).await;
                    Ingest::Fork
                }
                _ => Ingest::Duplicate,
            };
        }
        if b.first_seq() > head.last_seq + 1 {
            return Ingest::Gap;
        }
        match self.logs.append(&b, false).await {
            Ok(_) => Ingest::Applied,
            Err(LogsError::Store(StoreError::ChainBroken { .. })) => {
                tracing::warn!(
                    peer,
                    origin = b.origin(),
                    first_seq = b.first_seq(),
                    "batch rejected: it does not extend this node's history of the origin"
                );
                Ingest::Rejected
            }
            Err(e) => {
                tracing::error!(peer, origin = b.origin(), error = %e, "batch could not be stored");
                Ingest::Rejected
            }
        }
    }

    /// Checks fork evidence (two different batches of one origin, both
    /// validly signed, overlapping in sequence numbers), keeps it and
    /// freezes the origin from the earlier first sequence number.
    pub async fn ingest_fork(&self, ev: ForkEvidence, peer: &str) -> bool {
        let list = self.trust.current();
        let (Some(a), Some(b)) = (ev.first.clone(), ev.second.clone()) else {
            return false;
        };
        let (Ok(a), Ok(b)) = (Batch::decode(a), Batch::decode(b)) else {
            tracing::warn!(peer, "fork evidence rejected: does not decode");
            return false;
        };
        let valid = a.origin() == b.origin()
            && a.hash() != b.hash()
            && a.first_seq() <= b.last_seq()
            && b.first_seq() <= a.last_seq()
            && crate::trust::batches::verify(&a, &list).is_ok()
            && crate::trust::batches::verify(&b, &list).is_ok();
        if !valid {
            tracing::warn!(
                peer,
                origin = a.origin(),
                "fork evidence rejected: not two validly signed, different, overlapping batches"
            );
            return false;
        }
        let from = batch::fork_point(&ev).unwrap_or(1);
        match self.logs.store.put_fork(a.origin(), &ev) {
            Ok(true) => {
                let _ = self.logs.store.flush().await;
                tracing::error!(origin = a.origin(), frozen_from_seq = from, peer, "fork: the origin signed two different batches; frozen until the operators act (suspend it, rotate its key)");
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "keeping fork evidence"),
        }
        self.logs.index.write().freeze(a.origin(), from);
        true
    }
}

/// Counts of one pull.
#[derive(Debug, Default, Clone, Copy)]
pub struct PullStats {
    pub applied: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub rejected: u64,
    pub forks: u64,
}

impl PullStats {
    fn count(&mut self, i: Ingest) {
        match i {
            Ingest::Applied => self.applied += 1,
            Ingest::Duplicate => self.duplicates += 1,
            Ingest::Gap => self.gaps += 1,
            Ingest::Rejected => self.rejected += 1,
            Ingest::Fork => self.forks += 1,
        }
    }
}

/// Whether a peer's announced head calls for a pull.
fn wants_pull(store: &Store, h: &OriginHead) -> bool {
    match store.head(&h.origin) {
        Ok(Some(mine)) => {
            h.last_seq > mine.last_seq || (h.last_seq == mine.last_seq && h.hash != mine.hash)
        }
        Ok(None) => h.last_seq > 0,
        Err(_) => false,
    }
}

async fn session(
    repl: &Replication,
    member: &Member,
    stop: &CancellationToken,
) -> Result<(), String> {
    let channel = repl
        .dialer
        .channel(member)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = FederationClient::new(channel);
    let mut watch = client
        .watch(WatchRequest {})
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    repl.view(&member.id, |v| {
        v.connected = true;
        v.last_error.clear();
    });
    repl.pull(&mut client, &member.id).await?;
    // The own log's head is confirmed once one peer's history is in.
    repl.ready.send_if_modified(|r| !std::mem::replace(r, true));
    let mut tick = tokio::time::interval(repl.pull_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = watch.message() => {
                let m = m.map_err(|s| format!("{:?}: {}", s.code(), s.message()))?.ok_or("watch stream ended")?;
                let pull = m.heads.iter().any(|h| wants_pull(&repl.logs.store, h));
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
        let member = peers(&repl.trust, &repl.only)
            .into_iter()
            .find(|m| m.id == id);
        let Some(member) = member else {
            repl.view(&id, |v| v.connected = false);
            return;
        };
        if let Err(e) = session(&repl, &member, &stop).await {
            tracing::debug!(peer = %id, error = %e, "replication session ended");
            repl.view(&id, |v| {
                v.connected = false;
                v.last_error = e;
            });
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Runs replication with every peer until `stop`; follows trust-list changes.
pub async fn run(repl: Arc<Replication>, stop: CancellationToken) {
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut changed = repl.trust.subscribe();
    loop {
        running.retain(|_, h| !h.is_finished());
        for m in peers(&repl.trust, &repl.only) {
            running.entry(m.id.clone()).or_insert_with(|| {
                tokio::spawn(peer_loop(repl.clone(), m.id.clone(), stop.clone()))
            });
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = changed.changed() => {}
            _ = tokio::time::sleep(repl.pull_interval) => {}
        }
    }
    for (_, h) in running {
        let _ = h.await;
    }
}

/// Decodes a stored batch for sending.
pub fn stored_batch(bytes: &[u8]) -> Option<LogBatch> {
    LogBatch::decode(bytes).ok()
}
