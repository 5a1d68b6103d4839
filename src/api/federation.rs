//! `cix.v1.Federation` on the peer listener: GetTrustList, PublishTrustList,
//! Pull, Watch and QueryPrefix (answered by [`crate::federation::prefix::Gate`]). The caller was authorized by [`crate::auth::peers`]
//! (membership and capability) before it got here.

use std::{collections::HashMap, pin::Pin, sync::Arc};

use futures::Stream;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    auth::peers::PeerMember,
    epochs::now_unix,
    federation::{
        prefix::{Gate, PrefixError},
        replicate::{heads, stored_batch},
    },
    logs::OriginLogs,
    proto::PeerCapability,
    proto::{self, federation_server, pull_response},
    ratelimit::now_secs,
    screening::Engine,
    trust::list::QueryPolicy,
    trust::{
        list::TrustError,
        state::{OfferError, Offered, TrustState},
    },
};

pub struct FederationService {
    trust: Arc<TrustState>,
    logs: Arc<OriginLogs>,
    engine: Engine,
    queries: Arc<Gate>,
    /// Cancelled when the node stops: ends the long-lived Watch streams so
    /// that shutdown need not wait for its drain deadline.
    stop: CancellationToken,
}

impl FederationService {
    pub fn new(
        trust: Arc<TrustState>,
        logs: Arc<OriginLogs>,
        engine: Engine,
        queries: Arc<Gate>,
        stop: CancellationToken,
    ) -> FederationService {
        FederationService {
            trust,
            logs,
            engine,
            queries,
            stop,
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn store_error(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "reading the store for a peer");
    Status::internal("the node could not read its store")
}

fn prefix_status(e: PrefixError) -> Status {
    match e {
        PrefixError::Limited(r) => super::exhausted(r),
        e => Status::invalid_argument(e.to_string()),
    }
}

impl From<OfferError> for Status {
    fn from(e: OfferError) -> Status {
        match &e {
            OfferError::Rejected(t) => match t {
                TrustError::Decode(_) | TrustError::Invalid { .. } => {
                    Status::invalid_argument(e.to_string())
                }
                TrustError::BelowThreshold { .. } => Status::permission_denied(e.to_string()),
                _ => Status::failed_precondition(e.to_string()),
            },
            OfferError::Store(_) => {
                tracing::error!(error = %e, "trust list could not be kept");
                Status::internal("the node could not store the trust list; nothing changed")
            }
        }
    }
}

#[tonic::async_trait]
impl federation_server::Federation for FederationService {
    async fn get_trust_list(
        &self,
        req: Request<proto::GetTrustListRequest>,
    ) -> Result<Response<proto::GetTrustListResponse>, Status> {
        let list = self.trust.current();
        let newer = list.version() > req.get_ref().have_version;
        Ok(Response::new(proto::GetTrustListResponse {
            version: list.version(),
            list: newer.then(|| list.signed().clone()),
        }))
    }

    async fn publish_trust_list(
        &self,
        req: Request<proto::SignedTrustList>,
    ) -> Result<Response<proto::PublishTrustListResponse>, Status> {
        let from = req
            .extensions()
            .get::<PeerMember>()
            .map(|m| format!("peer {}", m.id))
            .unwrap_or_default();
        let outcome = self.trust.offer(req.get_ref(), &from).await?;
        let (version, applied) = match outcome {
            Offered::Same { version } => (version, false),
            Offered::Applied { to, .. } => (to, true),
        };
        Ok(Response::new(proto::PublishTrustListResponse {
            version,
            applied,
        }))
    }

    async fn query_prefix(
        &self,
        req: Request<proto::QueryPrefixRequest>,
    ) -> Result<Response<proto::QueryPrefixResponse>, Status> {
        let member = req
            .extensions()
            .get::<PeerMember>()
            .map(|m| m.id.clone())
            .unwrap_or_default();
        let list = self.trust.current();
        let policy = QueryPolicy::of(list.body());
        // Decoys name origins that could really have contributed.
        let origins: Vec<Arc<str>> = self
            .trust
            .peers(Some(PeerCapability::Contribute), &[])
            .iter()
            .map(|m| m.id.as_str().into())
            .chain(std::iter::once(self.trust.node_id().into()))
            .collect();
        let now = now_unix();
        let buckets = self
            .queries
            .answer(
                &member,
                req.get_ref(),
                policy,
                self.engine.index(),
                &self.engine.valid_epochs(now),
                &origins,
                now,
                now_secs(),
            )
            .map_err(prefix_status)?;
        Ok(Response::new(proto::QueryPrefixResponse { buckets }))
    }

    type PullStream = BoxStream<proto::PullResponse>;

    async fn pull(
        &self,
        req: Request<proto::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let store = self.logs.store.clone();
        let have: HashMap<String, proto::OriginHead> = req
            .into_inner()
            .have
            .into_iter()
            .map(|h| (h.origin.clone(), h))
            .collect();
        let forks = store.forks().map_err(store_error)?;
        let origins = store.heads().map_err(store_error)?;
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(async move {
            for (_, ev) in forks {
                let item = pull_response::Item::Fork(ev);
                if tx
                    .send(Ok(proto::PullResponse { item: Some(item) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            for (origin, head) in origins {
                let mut after = have.get(&origin).map(|h| h.last_seq).unwrap_or(0);
                // A caller whose history differs at its head gets our batch
                // there, so that it sees the fork.
                if let Some(h) = have.get(&origin).filter(|h| h.last_seq > 0) {
                    if let Ok(Some(b)) = store.batch_holding(&origin, h.last_seq) {
                        if b.hash().as_slice() != h.hash.as_slice() || b.last_seq() != h.last_seq {
                            after = b.first_seq() - 1;
                        }
                    }
                }
                if head.last_seq <= after {
                    continue;
                }
                for raw in store.batches_after(&origin, after) {
                    let Some(batch) = raw.ok().and_then(|r| stored_batch(&r)) else {
                        let _ = tx
                            .send(Err(Status::internal("the node could not read its store")))
                            .await;
                        return;
                    };
                    let item = pull_response::Item::Batch(batch);
                    if tx
                        .send(Ok(proto::PullResponse { item: Some(item) }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchStream = BoxStream<proto::WatchResponse>;

    async fn watch(
        &self,
        _req: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let store = self.logs.store.clone();
        let mut updates = self.logs.subscribe();
        let first = heads(&store).map_err(store_error)?;
        let (tx, rx) = mpsc::channel(64);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            if tx
                .send(Ok(proto::WatchResponse { heads: first }))
                .await
                .is_err()
            {
                return;
            }
            loop {
                let update = tokio::select! {
                    _ = stop.cancelled() => return,
                    u = updates.recv() => u,
                };
                let heads = match update {
                    Ok(u) => match store.head(&u.origin) {
                        Ok(Some(h)) => vec![proto::OriginHead {
                            origin: u.origin,
                            last_seq: h.last_seq,
                            hash: h.hash.to_vec(),
                        }],
                        _ => continue,
                    },
                    // Missed some: send them all again.
                    Err(RecvError::Lagged(_)) => match heads(&store) {
                        Ok(h) => h,
                        Err(_) => return,
                    },
                    Err(RecvError::Closed) => return,
                };
                if tx.send(Ok(proto::WatchResponse { heads })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
