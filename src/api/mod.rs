//! gRPC services of the member listener. Handlers are thin: they check the
//! request's shape (limits, required fields), call the domain
//! ([`crate::screening`], [`crate::contribution`]) and map the outcome to a
//! response or a precise [`tonic::Status`]. Conversions between protobuf and
//! domain types live in [`convert`]; error mapping lives here. No message
//! built here ever contains a raw identifier: invalid items are answered
//! with a reason word, request errors name the field and the rule.

pub mod admin;
pub mod contribution;
pub mod convert;
pub mod federation;
pub mod screening;
pub mod wire;

use tonic::Status;

use tonic_types::{ErrorDetails, StatusExt};

use crate::{contribution::ContributionError, ratelimit::Refused};

/// Refuses a request with more items than the node's limit.
pub fn check_batch(field: &str, len: usize, max: usize) -> Result<(), Status> {
    if len > max {
        return Err(Status::resource_exhausted(format!(
            "{field}: at most {max} items per request, got {len}; split the batch"
        )));
    }
    Ok(())
}

/// RESOURCE_EXHAUSTED for a rate limit, with the wait in the message and as
/// a `google.rpc.RetryInfo` detail that clients can act on.
pub fn exhausted(r: Refused) -> Status {
    Status::with_error_details(
        tonic::Code::ResourceExhausted,
        r.to_string(),
        ErrorDetails::with_retry_info(Some(r.retry_after)),
    )
}

/// The retry hint of a RESOURCE_EXHAUSTED status, if it carries one.
pub fn retry_hint(s: &Status) -> Option<std::time::Duration> {
    s.get_details_retry_info().and_then(|r| r.retry_delay)
}

impl From<ContributionError> for Status {
    fn from(e: ContributionError) -> Status {
        match e {
            ContributionError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            ContributionError::NoValidEpoch => Status::failed_precondition(e.to_string()),
            ContributionError::NotReady => Status::unavailable(e.to_string()),
            ContributionError::Store(_) | ContributionError::OriginLogs(_) => {
                tracing::error!(error = %e, "contribution failed in the store");
                Status::internal("the node could not store the request; nothing was acknowledged")
            }
        }
    }
}
