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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        keys::signing::SigningKeyFile,
        store::Store,
        trust::{
            edit,
            list::{sign, verify_chain, verify_root, MAX_LIST_BYTES},
        },
    };

    const NOW: i64 = 1_700_000_000;

    /// Version `v` of a list padded to about 900 KiB, operator keys 1..=3,
    /// threshold 2 or 3 by the version's parity (so every version changes
    /// the threshold and is kept), signed by all three.
    fn padded(v: u64) -> SignedTrustList {
        let keys: Vec<_> = (1..=3u8)
            .map(|n| SigningKeyFile::from_seed(&[n; 32]).verifying_key())
            .collect();
        let mut m = edit::member(
            "bank-a",
            "",
            crate::proto::MemberKind::Bank,
            &"a".repeat(64),
            "",
        );
        m.name = "x".repeat(MAX_LIST_BYTES / 10 * 9);
        let t = 2 + (v % 2) as u32;
        let mut b = edit::new_list("c1", &keys, t, vec![], vec![m], NOW - 10, NOW + 86_400);
        b.version = v;
        let mut s = edit::unsigned(&b);
        for n in 1..=3u8 {
            sign(&mut s, &SigningKeyFile::from_seed(&[n; 32]));
        }
        s
    }

    #[tokio::test]
    async fn an_answer_holds_the_oldest_kept_lists_that_fit_and_the_rest_come_when_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let root_file = dir.path().join("root.ctl");
        let v1 = padded(1);
        std::fs::write(&root_file, v1.encode_to_vec()).unwrap();
        let store = Arc::new(Store::open(&dir.path().join("data"), 8).unwrap());
        let trust = TrustState::open(
            store,
            &root_file,
            None,
            "bank-a",
            0,
            Clock::fixed(NOW as f64),
        )
        .await
        .unwrap();
        for v in 2..=20 {
            trust.offer(&padded(v), "test").await.unwrap();
        }
        let first = newer_than(&trust, 1);
        assert_eq!(first.version, 20);
        assert!(first.chain_partial);
        assert!(first.list.is_none());
        let bytes: usize = first.chain.iter().map(|l| l.encoded_len()).sum();
        assert!(bytes <= ANSWER_BYTES, "{bytes}");
        let got = first.chain.len();
        assert!((10..19).contains(&got), "{got} lists");
        // Asked again from the last list it brought: the rest and the list.
        let last = crate::trust::list::decode_body(&first.chain[got - 1])
            .unwrap()
            .version;
        assert_eq!(last, 1 + got as u64);
        let second = newer_than(&trust, last);
        assert!(!second.chain_partial);
        assert_eq!(second.list, Some(padded(20)));
        // Together they walk from version 1 to version 20.
        let mut steps = first.chain;
        steps.extend(second.chain);
        steps.extend(second.list);
        assert_eq!(steps.len(), 19);
        let walked = verify_chain(&verify_root(&v1, None).unwrap(), &steps, NOW).unwrap();
        assert_eq!(walked.last().unwrap().version(), 20);
        // A caller at the version in force gets no list.
        let none = newer_than(&trust, 20);
        assert!(none.list.is_none() && none.chain.is_empty());
    }
}
