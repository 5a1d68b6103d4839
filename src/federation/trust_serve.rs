//! Serving the trust list to peers (the answering side of
//! `Federation.GetTrustList` and `PublishTrustList`): a peer asking with the
//! version it holds gets the list in force when it is newer; a list a peer
//! hands over is offered to [`TrustState::offer`], which applies it only if
//! it passes every rule of an update. Refused lists are counted per member.
//! The pushing and polling side is [`super::trust_sync`].

use crate::{
    counters::{Counters, RequestRefusal},
    proto::{GetTrustListResponse, PublishTrustListResponse, SignedTrustList},
    trust::state::{OfferError, Offered, TrustState},
};

/// The version in force, and the list itself when it is newer than
/// `have_version`.
pub(crate) fn newer_than(trust: &TrustState, have_version: u64) -> GetTrustListResponse {
    let list = trust.current();
    let newer = list.version() > have_version;
    GetTrustListResponse {
        version: list.version(),
        list: newer.then(|| list.signed().clone()),
    }
}

/// Offers the list `member` (when known) handed over; counts a refusal.
pub(crate) async fn publish(
    trust: &TrustState,
    counters: &Counters,
    signed: &SignedTrustList,
    member: Option<&str>,
) -> Result<PublishTrustListResponse, OfferError> {
    let from = member.map(|m| format!("peer {m}")).unwrap_or_default();
    let outcome = trust.offer(signed, &from).await;
    if let (Err(OfferError::Rejected(_)), Some(m)) = (&outcome, member) {
        counters.request_refused(m, RequestRefusal::TrustList);
    }
    let (version, applied) = match outcome? {
        Offered::Same { version } => (version, false),
        Offered::Applied { to, .. } => (to, true),
    };
    Ok(PublishTrustListResponse { version, applied })
}
