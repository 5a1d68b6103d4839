//! `cix.v1.Federation` on the peer listener: GetTrustList, PublishTrustList,
//! Pull, Watch and QueryPrefix. Thin: each handler takes the caller
//! ([`PeerMember`], authorized by [`crate::auth::peers`] for membership and
//! capability before it got here) and the request, calls the federation
//! domain ([`crate::federation::trust_serve`],
//! [`crate::federation::send_batches`],
//! [`crate::federation::answer_prefix`]) and maps the outcome to a
//! response or a [`tonic::Status`]. Pull and Watch streams last only while
//! the caller keeps the right to them ([`peers::while_authorized`]).
//! Feedback goes to [`crate::feedback::receive`].

use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::{
    auth::peers::{self, PeerMember, PeerStream},
    counters::Counters,
    federation::{
        answer_prefix::PrefixAnswers,
        send_batches::BatchSender,
        trust_serve::{self, PublishRate},
    },
    feedback::{
        receive::{FeedbackError, Receiver},
        relay::RelayReceiver,
    },
    node::NodeState,
    proto::{self, federation_server},
    tls::TlsIdentity,
    trust::{list::TrustList, state::TrustState},
};

pub(crate) struct FederationService {
    state: Arc<NodeState>,
    trust: Arc<TrustState>,
    counters: Arc<Counters>,
    batches: BatchSender,
    prefixes: Arc<PrefixAnswers>,
    publish_rate: PublishRate,
}

impl FederationService {
    pub(crate) fn new(
        state: Arc<NodeState>,
        trust: Arc<TrustState>,
        counters: Arc<Counters>,
        batches: BatchSender,
        prefixes: PrefixAnswers,
        publish_rate: PublishRate,
    ) -> FederationService {
        FederationService {
            state,
            trust,
            counters,
            batches,
            prefixes: Arc::new(prefixes),
            publish_rate,
        }
    }

    /// Runs a feedback handler's work off the workers (store reads, keyed
    /// hashes and an fsync per request) against the trust list in force and
    /// the node's time.
    async fn feedback_work(
        &self,
        work: impl FnOnce(&NodeState, &TrustList, i64) -> Result<proto::FeedbackResponse, FeedbackError>
            + Send
            + 'static,
    ) -> Result<Response<proto::FeedbackResponse>, Status> {
        let state = self.state.clone();
        let trust = self.trust.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let list = trust.current();
            work(&state, &list, state.clock.now())
        })
        .await
        .map_err(|_| Status::internal("the node could not answer the feedback"))?
        .map_err(Status::from)?;
        Ok(Response::new(answer))
    }
}

impl FederationService {
    /// `stream` for as long as the caller keeps the right to it.
    fn while_authorized<T: Send + 'static>(
        &self,
        peer: Option<TlsIdentity>,
        path: &'static str,
        stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    ) -> PeerStream<T> {
        peers::while_authorized(
            self.trust.clone(),
            self.counters.clone(),
            peer,
            path,
            stream,
        )
    }
}

fn member<T>(req: &Request<T>) -> Option<&str> {
    req.extensions().get::<PeerMember>().map(|m| m.id.as_str())
}

#[tonic::async_trait]
impl federation_server::Federation for FederationService {
    async fn get_trust_list(
        &self,
        req: Request<proto::GetTrustListRequest>,
    ) -> Result<Response<proto::GetTrustListResponse>, Status> {
        Ok(Response::new(trust_serve::newer_than(
            &self.trust,
            req.get_ref().have_version,
        )))
    }

    async fn publish_trust_list(
        &self,
        req: Request<proto::SignedTrustList>,
    ) -> Result<Response<proto::PublishTrustListResponse>, Status> {
        let r = trust_serve::publish(
            &self.trust,
            &self.counters,
            &self.publish_rate,
            req.get_ref(),
            member(&req),
        )
        .await?;
        Ok(Response::new(r))
    }

    async fn query_prefix(
        &self,
        req: Request<proto::QueryPrefixRequest>,
    ) -> Result<Response<proto::QueryPrefixResponse>, Status> {
        // Off the workers: lookups under short prefixes walk much of the
        // index, and the answer records the quota it takes (an fsync).
        let member = member(&req).unwrap_or_default().to_string();
        let prefixes = self.prefixes.clone();
        let req = req.into_inner();
        let answer = tokio::task::spawn_blocking(move || prefixes.answer(&member, &req))
            .await
            .map_err(|_| Status::internal("the node could not answer the prefix query"))?
            .map_err(Status::from)?;
        Ok(Response::new(answer))
    }

    async fn feedback(
        &self,
        req: Request<proto::FeedbackRequest>,
    ) -> Result<Response<proto::FeedbackResponse>, Status> {
        let member = member(&req).unwrap_or_default().to_string();
        let req = req.into_inner();
        self.feedback_work(move |state, list, now| {
            Receiver {
                feedback: &state.feedback_state,
                node_id: &state.node_id,
                store: &state.store,
                list,
                counters: &state.counters,
                now,
            }
            .receive(&member, &req)
        })
        .await
    }

    async fn relay_feedback(
        &self,
        req: Request<proto::RelayFeedbackRequest>,
    ) -> Result<Response<proto::FeedbackResponse>, Status> {
        let member = member(&req).unwrap_or_default().to_string();
        let req = req.into_inner();
        self.feedback_work(move |state, list, now| {
            let fb = &state.feedback_state;
            RelayReceiver {
                relay: fb.relay.as_deref(),
                mode: fb.mode,
                node_id: &state.node_id,
                store: &state.store,
                list,
                counters: &state.counters,
                now,
            }
            .receive(&member, &req)
        })
        .await
    }

    type PullStream = PeerStream<proto::PullResponse>;

    async fn pull(
        &self,
        req: Request<proto::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let member_id = member(&req).unwrap_or_default().to_string();
        let peer = req.extensions().get::<TlsIdentity>().cloned();
        let stream = self
            .batches
            .pull(member_id, req.into_inner().have)
            .map_err(Status::from)?;
        Ok(Response::new(self.while_authorized(
            peer,
            "/cix.v1.Federation/Pull",
            stream.map(|r| r.map_err(Status::from)),
        )))
    }

    type WatchStream = PeerStream<proto::WatchResponse>;

    async fn watch(
        &self,
        req: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let member_id = member(&req).unwrap_or_default().to_string();
        let peer = req.extensions().get::<TlsIdentity>().cloned();
        let stream = self.batches.watch(&member_id).map_err(Status::from)?;
        Ok(Response::new(self.while_authorized(
            peer,
            "/cix.v1.Federation/Watch",
            stream.map(|r| r.map_err(Status::from)),
        )))
    }
}
