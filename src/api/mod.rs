//! gRPC services of the member listener. Handlers are thin: they check the
//! request's shape (limits, required fields), call the domain
//! ([`crate::screening`], [`crate::contribution`], the alert log) and map the outcome to a
//! response or a precise [`tonic::Status`]. Conversions between protobuf and
//! domain types live in [`convert`]; the mapping of domain errors to
//! statuses in [`status`]. No message
//! built here ever contains a raw identifier: invalid items are answered
//! with a reason word, request errors name the field and the rule.

pub(crate) mod admin;
pub(crate) mod alerts;
pub(crate) mod contribution;
pub(crate) mod convert;
pub(crate) mod dispositions;
pub(crate) mod federation;
pub(crate) mod figures;
pub(crate) mod outcomes;
pub(crate) mod quarantine;
pub(crate) mod screening;
pub(crate) mod status;
pub(crate) mod watchlist;
pub(crate) mod wire;

pub(crate) use status::exhausted;

use tonic::Status;

/// A List call's page size: `limit`, or `default` for 0; refused above `max`.
pub(crate) fn page_limit(limit: u32, default: u32, max: u32) -> Result<u32, Status> {
    match limit {
        0 => Ok(default),
        l if l > max => Err(Status::invalid_argument(format!(
            "limit: at most {max}, got {l}"
        ))),
        l => Ok(l),
    }
}

/// Refuses a request with more items than the node's limit.
pub(crate) fn check_batch(field: &str, len: usize, max: usize) -> Result<(), Status> {
    if len > max {
        return Err(Status::resource_exhausted(format!(
            "{field}: at most {max} items per request, got {len}; split the batch"
        )));
    }
    Ok(())
}
