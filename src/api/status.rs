//! Domain errors as gRPC statuses, in one place: which code each failure
//! gets, and which ones are logged here because their message must not
//! reach the caller (store failures become a plain INTERNAL that says
//! nothing was acknowledged).

use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    alerts::log::AlertLogError,
    contribution::ContributionError,
    federation::{
        answer_prefix::PrefixError, ask_prefix::RemoteError, send_batches::SendError,
        trust_serve::PublishError,
    },
    flood::LiftError,
    node::NodeError,
    ratelimit::Refused,
    store::StoreError,
    trust::{list::TrustError, state::OfferError},
    watchlist::WatchError,
};

impl From<WatchError> for Status {
    fn from(e: WatchError) -> Status {
        tracing::error!(error = %crate::telemetry::chain(&e), "watchlist failed");
        Status::internal("the node could not update its watchlist; nothing was acknowledged")
    }
}

/// RESOURCE_EXHAUSTED for a rate limit, with the wait in the message and as
/// a `google.rpc.RetryInfo` detail that clients can act on.
pub(crate) fn exhausted(r: Refused) -> Status {
    exhausted_saying(r.to_string(), r)
}

/// [`exhausted`] with a message naming the limit.
fn exhausted_saying(message: String, r: Refused) -> Status {
    Status::with_error_details(
        tonic::Code::ResourceExhausted,
        message,
        ErrorDetails::with_retry_info(Some(r.retry_after)),
    )
}

impl From<LiftError> for Status {
    fn from(e: LiftError) -> Status {
        match e {
            LiftError::NotQuarantined { .. } => Status::not_found(e.to_string()),
            LiftError::Store(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "quarantine lift not written");
                Status::internal("the node could not write the lift; the quarantine holds")
            }
        }
    }
}

impl From<PublishError> for Status {
    fn from(e: PublishError) -> Status {
        match e {
            PublishError::Limited(r) => exhausted_saying(e.to_string(), r),
            PublishError::Offer(e) => e.into(),
        }
    }
}

impl From<ContributionError> for Status {
    fn from(e: ContributionError) -> Status {
        match e {
            ContributionError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            ContributionError::NoValidEpoch | ContributionError::OwnLogSetAside { .. } => {
                Status::failed_precondition(e.to_string())
            }
            ContributionError::NotReady => Status::unavailable(e.to_string()),
            ContributionError::Store(_) | ContributionError::OriginLogs(_) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "contribution failed in the store");
                Status::internal("the node could not store the request; nothing was acknowledged")
            }
        }
    }
}

impl From<RemoteError> for Status {
    fn from(e: RemoteError) -> Status {
        match e {
            RemoteError::NotFederated => Status::failed_precondition(e.to_string()),
            RemoteError::UnknownPeer
            | RemoteError::NoEndpoint(_)
            | RemoteError::HoldsNothing(_) => Status::invalid_argument(e.to_string()),
            RemoteError::Connect { .. } => Status::unavailable(e.to_string()),
            RemoteError::Peer { ref status, .. } => Status::with_details(
                status.code(),
                e.to_string(),
                status.details().to_vec().into(),
            ),
        }
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        tracing::error!(error = %crate::telemetry::chain(&e), "reading the node's state");
        Status::internal("the node could not read its store")
    }
}

/// INTERNAL for a compaction that failed (logged here, with its cause).
pub(crate) fn compaction_failed(e: StoreError) -> Status {
    tracing::error!(error = %crate::telemetry::chain(&e), "compacting the store");
    Status::internal("the node could not compact its store")
}

impl From<SendError> for Status {
    fn from(e: SendError) -> Status {
        if let SendError::Busy { .. } = e {
            return Status::resource_exhausted(e.to_string());
        }
        tracing::error!(error = %crate::telemetry::chain(&e), "reading the store for a peer");
        Status::internal("the node could not read its store")
    }
}

impl From<PrefixError> for Status {
    fn from(e: PrefixError) -> Status {
        match e {
            PrefixError::Limited(r) => exhausted(r),
            PrefixError::Full { .. } | PrefixError::TooLarge { .. } => {
                Status::failed_precondition(e.to_string())
            }
            PrefixError::Unrecorded(_) => Status::unavailable(e.to_string()),
            e => Status::invalid_argument(e.to_string()),
        }
    }
}

impl From<OfferError> for Status {
    fn from(e: OfferError) -> Status {
        match &e {
            OfferError::Rejected(t) => match t {
                TrustError::Decode(_)
                | TrustError::Invalid { .. }
                | TrustError::OverBounds { .. } => Status::invalid_argument(e.to_string()),
                TrustError::BelowThreshold { .. } => Status::permission_denied(e.to_string()),
                _ => Status::failed_precondition(e.to_string()),
            },
            OfferError::Gap { .. } => Status::failed_precondition(format!(
                "{}; this node is asking its peers for them now",
                crate::telemetry::chain(&e)
            )),
            OfferError::Chain(_) => Status::failed_precondition(crate::telemetry::chain(&e)),
            OfferError::Store(_) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "trust list could not be kept");
                Status::internal("the node could not store the trust list; nothing changed")
            }
            OfferError::Stopped => Status::unavailable(e.to_string()),
        }
    }
}

impl From<AlertLogError> for Status {
    fn from(e: AlertLogError) -> Status {
        match e {
            AlertLogError::Expired { .. } => Status::out_of_range(e.to_string()),
            AlertLogError::Ahead { .. } => Status::failed_precondition(e.to_string()),
            AlertLogError::Open { .. } | AlertLogError::Db(_) | AlertLogError::Corrupt(_) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "reading the alert log");
                Status::internal("the node could not read its alert log")
            }
        }
    }
}
