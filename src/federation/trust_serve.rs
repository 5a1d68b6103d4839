//! Serving the trust list to peers (the answering side of
//! `Federation.GetTrustList` and `PublishTrustList`): a peer asking with the
//! version it holds gets the list in force when it is newer, after the
//! key-changing lists it needs to walk to it (within [`ANSWER_BYTES`]); a
//! list that is not signed by the keys in force, newer by more than one
//! version, is refused as a gap and has the node ask its peers for the
//! chain at once; a list a peer
//! hands over is offered to [`TrustState::offer`], which applies it only if
//! it passes every rule of an update. A list over
//! [`crate::trust::list::MAX_LIST_BYTES`] is refused first; any other list
//! than the one in force takes one of the member's publishes ([`PublishRate`], by the node's
//! clock) before anything is verified. Refused lists are counted per
//! member, by reason (over the rate, over the list's bounds, any other rule).
//! The pushing and polling side is [`super::trust_sync`].

use prost::Message;

use crate::{
    counters::{Counters, RequestRefusal, UNLISTED},
    proto::{GetTrustListResponse, PublishTrustListResponse, SignedTrustList},
    ratelimit::{Limiter, Refused, Rule},
    time::Clock,
    trust::{
        list::{check_encoded_size, TrustError},
        state::{OfferError, Offered, TrustState},
    },
};

/// Most bytes of the lists in one GetTrustList answer: 15 MiB, a margin
/// under what peers decode ([`crate::batch::PEER_MESSAGE_BYTES`]).
pub(crate) const ANSWER_BYTES: usize = 15 << 20;

/// The version in force and, when it is newer than `have_version`, the
/// key-changing lists kept that are newer than `have_version` (oldest first)
/// and the list itself: all of them when they fit in [`ANSWER_BYTES`], else
/// the oldest lists that fit, marked partial, without the list in force.
pub(crate) fn newer_than(trust: &TrustState, have_version: u64) -> GetTrustListResponse {
    let list = trust.current();
    let mut answer = GetTrustListResponse {
        version: list.version(),
        ..Default::default()
    };
    if list.version() <= have_version {
        return answer;
    }
    let kept = trust.chain();
    let mut room = ANSWER_BYTES.saturating_sub(list.encoded().len() + 16);
    for (_, signed) in kept
        .iter()
        .filter(|(v, _)| *v > have_version && *v < list.version())
    {
        let bytes = signed.encoded_len() + 16;
        if bytes > room {
            answer.chain_partial = true;
            break;
        }
        room -= bytes;
        answer.chain.push(signed.clone());
    }
    if !answer.chain_partial {
        answer.list = Some(list.signed().clone());
    }
    answer
}

/// How many lists each member may publish: a token bucket per member, by
/// the node's clock.
pub(crate) struct PublishRate {
    limiter: Limiter,
    rule: Rule,
    clock: Clock,
}

impl PublishRate {
    /// `per_second` publishes per member, `burst` at once.
    pub(crate) fn new(per_second: u32, burst: u32, clock: Clock) -> PublishRate {
        PublishRate {
            limiter: Limiter::new(),
            rule: Rule {
                per_second: f64::from(per_second),
                burst: f64::from(burst),
                units_per_day: 0,
            },
            clock,
        }
    }

    fn check(&self, member: &str) -> Result<(), Refused> {
        self.limiter
            .check(member, 0, self.rule, self.clock.now_f64())
    }
}

/// Why a published list was not applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    /// The member published more lists than its rate allows.
    #[error("trust list publishes per member: {0}")]
    Limited(Refused),
    /// The list was offered and refused, or could not be kept.
    #[error(transparent)]
    Offer(#[from] OfferError),
}

/// Offers the list `member` (when known) handed over, within the member's
/// publish rate; counts a refusal.
pub(crate) async fn publish(
    trust: &TrustState,
    counters: &Counters,
    rate: &PublishRate,
    signed: &SignedTrustList,
    member: Option<&str>,
) -> Result<PublishTrustListResponse, PublishError> {
    if trust.is_current(signed) {
        let version = trust.current().version();
        return Ok(PublishTrustListResponse {
            version,
            applied: false,
        });
    }
    let refuse = |reason| {
        if let Some(m) = member {
            counters.request_refused(m, reason);
        }
    };
    if let Err(e) = check_encoded_size(signed) {
        refuse(RequestRefusal::TrustListBounds);
        return Err(OfferError::Rejected(e).into());
    }
    if let Err(r) = rate.check(member.unwrap_or(UNLISTED)) {
        refuse(RequestRefusal::TrustListRate);
        tracing::warn!(
            member = member.unwrap_or(UNLISTED),
            retry_after_ms = r.retry_after.as_millis() as u64,
            "trust list publish refused: over the member's publish rate"
        );
        return Err(PublishError::Limited(r));
    }
    let from = member.map(|m| format!("peer {m}")).unwrap_or_default();
    let outcome = trust.offer(signed, &from).await;
    match &outcome {
        Err(OfferError::Rejected(e)) => refuse(match e {
            TrustError::OverBounds { .. } => RequestRefusal::TrustListBounds,
            _ => RequestRefusal::TrustList,
        }),
        Err(OfferError::Gap { .. }) => {
            // The lists between may be with the peers: ask them now.
            refuse(RequestRefusal::TrustList);
            trust.request_catch_up();
        }
        _ => {}
    }
    let (version, applied) = match outcome? {
        Offered::Same { version } => (version, false),
        Offered::Applied { to, .. } => (to, true),
    };
    Ok(PublishTrustListResponse { version, applied })
}
