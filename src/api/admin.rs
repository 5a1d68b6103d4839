//! `cix.v1.Admin`: the node's state.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::{
    batch::fork_point,
    counters::{
        BatchOutcome, BatchRejection, EvidenceOutcome, EvidenceRejection, RequestRefusal,
        SessionFailure, Snapshot,
    },
    epochs::now_unix,
    federation::receive_batches::Replication,
    node::NodeState,
    proto::{self, admin_server},
};

pub struct AdminService {
    node: Arc<NodeState>,
    replication: Option<Arc<Replication>>,
}

impl AdminService {
    pub fn new(node: Arc<NodeState>, replication: Option<Arc<Replication>>) -> AdminService {
        AdminService { node, replication }
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn status(
        &self,
        _req: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let now = now_unix();
        let n = &self.node;
        let (by_kind, by_origin) = n.index.read().counts(now);
        let heads = n.store.heads().map_err(|e| {
            tracing::error!(error = %e, "reading origin heads");
            Status::internal("the node could not read its store")
        })?;
        let mut origins: Vec<proto::OriginStatus> = heads
            .iter()
            .map(|(origin, head)| proto::OriginStatus {
                origin: origin.clone(),
                indicators: by_origin
                    .iter()
                    .find(|(o, _)| &**o == origin)
                    .map(|(_, c)| *c)
                    .unwrap_or(0),
                last_seq: head.last_seq,
            })
            .collect();
        origins.sort_by(|a, b| a.origin.cmp(&b.origin));
        let trust = n
            .trust
            .as_ref()
            .map(|t| (t.current(), t.warning(now), t.connections().len()));
        let mine: std::collections::HashMap<&str, u64> = heads
            .iter()
            .map(|(o, h)| (o.as_str(), h.last_seq))
            .collect();
        let peers = self
            .replication
            .as_ref()
            .map(|r| r.views())
            .unwrap_or_default()
            .into_iter()
            .map(|(member, v)| {
                let mut origins: Vec<proto::OriginLag> = v
                    .heads
                    .iter()
                    .map(|(o, seq)| proto::OriginLag {
                        origin: o.clone(),
                        peer_last_seq: *seq,
                        lag: seq.saturating_sub(mine.get(o.as_str()).copied().unwrap_or(0)),
                    })
                    .collect();
                origins.sort_by(|a, b| a.origin.cmp(&b.origin));
                proto::PeerStatus {
                    member,
                    connected: v.connected,
                    origins,
                    last_pull: (v.last_pull_unix > 0).then(|| convert::timestamp(v.last_pull_unix)),
                    last_error: v.last_error,
                }
            })
            .collect();
        let forks = n
            .store
            .forks()
            .map_err(|_| Status::internal("the node could not read its store"))?
            .into_iter()
            .map(|(origin, ev)| proto::ForkStatus {
                origin,
                frozen_from_seq: fork_point(&ev).unwrap_or(1),
            })
            .collect();
        Ok(Response::new(proto::StatusResponse {
            queries_served: n
                .queries
                .counts()
                .into_iter()
                .map(|(member, c)| proto::QueryStats {
                    member,
                    requests: c.requests,
                    prefixes: c.prefixes,
                    refused: c.refused,
                })
                .collect(),
            member_requests_limited: n.match_limits.refused(),
            index_pending: n.index.read().pending().0 as u64,
            peer_counters: peer_counters(&n.counters.snapshot()),
            peers,
            forks,
            own_log_ready: self.replication.as_ref().is_none_or(|r| r.is_ready()),
            trust_version: trust.as_ref().map(|(l, ..)| l.version()).unwrap_or(0),
            trust_expires_at: trust
                .as_ref()
                .map(|(l, ..)| convert::timestamp(l.expires_at())),
            trust_members: trust
                .as_ref()
                .map(|(l, ..)| l.body().members.len() as u32)
                .unwrap_or(0),
            warnings: trust
                .as_ref()
                .and_then(|(_, w, _)| w.clone())
                .into_iter()
                .collect(),
            peer_connections: trust.as_ref().map(|(.., c)| *c as u32).unwrap_or(0),
            node_id: n.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: n.started.elapsed().as_secs(),
            indicators: by_kind.iter().map(|(_, c)| c).sum(),
            by_kind: by_kind
                .iter()
                .map(|(k, c)| proto::KindCount {
                    kind: convert::kind_to_proto(*k),
                    count: *c,
                })
                .collect(),
            origins,
            epochs: n
                .keys
                .get()
                .all()
                .iter()
                .map(|e| proto::EpochStatus {
                    id: e.id,
                    valid_from: Some(convert::timestamp(e.valid_from)),
                    valid_until: Some(convert::timestamp(e.valid_until)),
                    key_fingerprint: e.fingerprint.clone(),
                    valid_now: e.valid_at(now),
                })
                .collect(),
            store_bytes: n.store.size_on_disk(),
            started_at: Some(convert::timestamp(n.started_unix)),
            batches: n.store.batch_count() as u64,
        }))
    }
}

/// The node's counters as Status shows them: one entry per peer, each
/// reason under its stable name, zero counts left out.
pub fn peer_counters(snapshot: &Snapshot) -> Vec<proto::PeerCounters> {
    fn reasons<R: Copy>(
        all: &[R],
        name: impl Fn(R) -> &'static str,
        count: impl Fn(R) -> u64,
    ) -> Vec<proto::ReasonCount> {
        all.iter()
            .map(|r| proto::ReasonCount {
                reason: name(*r).to_string(),
                count: count(*r),
            })
            .filter(|r| r.count > 0)
            .collect()
    }
    snapshot
        .peers
        .iter()
        .map(|(member, c)| proto::PeerCounters {
            member: member.clone(),
            batches: reasons(BatchOutcome::ALL, BatchOutcome::name, |o| c.batches(o)),
            batches_rejected: reasons(BatchRejection::ALL, BatchRejection::name, |r| c.rejected(r)),
            fork_evidence: reasons(EvidenceOutcome::ALL, EvidenceOutcome::name, |o| {
                c.evidence(o)
            }),
            fork_evidence_rejected: reasons(EvidenceRejection::ALL, EvidenceRejection::name, |r| {
                c.evidence_rejected(r)
            }),
            pulls: c.pulls,
            sessions_failed: reasons(SessionFailure::ALL, SessionFailure::name, |f| {
                c.sessions_failed(f)
            }),
            requests_refused: reasons(RequestRefusal::ALL, RequestRefusal::name, |r| c.refused(r)),
            queries_answered: c.queries_answered,
            prefixes_answered: c.prefixes_answered,
        })
        .collect()
}
