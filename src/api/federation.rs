//! `cix.v1.Federation` on the peer listener: GetTrustList, PublishTrustList.
//! The caller was authorized by [`crate::trust::auth`] before it got here.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    proto::{self, federation_server},
    trust::{
        auth::PeerMember,
        list::TrustError,
        state::{OfferError, Offered, TrustState},
    },
};

pub struct FederationService {
    trust: Arc<TrustState>,
}

impl FederationService {
    pub fn new(trust: Arc<TrustState>) -> FederationService {
        FederationService { trust }
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
}
