//! Keeps this node on the newest trust list (the asking side of
//! `Federation.GetTrustList` and `PublishTrustList`): pushes a newly applied
//! list to every active peer, polls peers for newer versions every
//! `trust.sync_seconds` (and at once when a list arrived that needs lists
//! this node lacks), walking the chain of key-changing lists a peer sends
//! to its newest list as one offer ([`TrustState::offer_chain`]; a refused
//! answer is counted for the peer by [`TrustAnswerRefusal`]), cuts off
//! members whose sharing basis ran out (every second, in a task of its
//! own), and logs the list's expiry warnings by the node's clock. The
//! answering side is [`super::trust_serve`].

use std::{sync::Arc, time::Duration};

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::{PeerDialer, PEER_CALL_TIMEOUT};
use crate::{
    counters::{Counters, TrustAnswerRefusal},
    proto::{GetTrustListRequest, Member, SignedTrustList},
    time::Clock,
    trust::{
        list::{decode_body, ChainError, TrustError, MAX_CHAIN_LISTS},
        state::{OfferError, TrustState},
    },
};

/// Active members with a peer endpoint, other than this node.
fn peers(trust: &TrustState) -> Vec<Member> {
    trust.peers(None, &[])
}

/// Hands the list in force to every peer.
pub(crate) async fn push(trust: &TrustState, dialer: &PeerDialer) {
    let list = trust.current();
    let calls = peers(trust).into_iter().map(|m| {
        let signed = list.signed().clone();
        async move {
            let r = tokio::time::timeout(PEER_CALL_TIMEOUT, async {
                let mut c = dialer
                    .federation(&m)
                    .await
                    .map_err(|e| crate::telemetry::chain(&e))?;
                c.publish_trust_list(signed).await.map_err(|s| s.message().to_string())
            })
            .await;
            match r {
                Ok(Ok(resp)) => tracing::debug!(peer = %m.id, applied = resp.get_ref().applied, version = resp.get_ref().version, "trust list pushed"),
                Ok(Err(e)) => tracing::debug!(peer = %m.id, error = %e, "trust list push failed"),
                Err(_) => tracing::debug!(peer = %m.id, "trust list push timed out"),
            }
        }
    });
    join_all(calls).await;
}

/// What a peer's answers to GetTrustList brought: the lists to walk, or
/// why the answer is refused before any is verified.
async fn fetch_chain(
    dialer: &PeerDialer,
    m: &Member,
    have: u64,
) -> Result<Result<Vec<SignedTrustList>, TrustAnswerRefusal>, String> {
    let mut c = dialer
        .federation(m)
        .await
        .map_err(|e| crate::telemetry::chain(&e))?;
    let mut steps = Vec::new();
    let mut at = have;
    // Each partial answer brings at least one list, so the rounds are
    // bounded by the lists a chain may hold.
    for _ in 0..MAX_CHAIN_LISTS {
        let resp = c
            .get_trust_list(GetTrustListRequest { have_version: at })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        steps.extend(resp.chain);
        if steps.len() > MAX_CHAIN_LISTS {
            return Ok(Err(TrustAnswerRefusal::Bounds));
        }
        if !resp.chain_partial {
            steps.extend(resp.list);
            return Ok(Ok(steps));
        }
        // Partial: ask again from the last list it brought, which must be
        // newer than what was asked.
        match steps.last().map(decode_body) {
            Some(Ok(b)) if b.version > at => at = b.version,
            Some(Err(_)) => return Ok(Err(TrustAnswerRefusal::Step)),
            _ => return Ok(Err(TrustAnswerRefusal::Order)),
        }
    }
    Ok(Err(TrustAnswerRefusal::Bounds))
}

/// The counted reason of a refused answer.
fn refusal(e: &OfferError) -> Option<TrustAnswerRefusal> {
    let rule = match e {
        OfferError::Rejected(t) | OfferError::Gap { source: t, .. } => t,
        OfferError::Chain(c) => match c.step_error() {
            Some(t) => t,
            None if matches!(c, ChainError::Empty) => return Some(TrustAnswerRefusal::Order),
            None => return Some(TrustAnswerRefusal::Bounds),
        },
        OfferError::Store(_) | OfferError::Stopped => return None,
    };
    Some(match rule {
        TrustError::OverBounds { .. } => TrustAnswerRefusal::Bounds,
        TrustError::Rollback { .. }
        | TrustError::NotNewer { .. }
        | TrustError::SameVersionDifferent { .. } => TrustAnswerRefusal::Order,
        _ => TrustAnswerRefusal::Step,
    })
}

/// Asks every peer for a newer list (with the key-changing lists between)
/// and walks what comes back; a refused answer is counted for its peer.
pub(crate) async fn poll(trust: &TrustState, dialer: &PeerDialer, counters: &Counters) {
    let have = trust.current().version();
    let calls = peers(trust).into_iter().map(|m| async move {
        let r = tokio::time::timeout(PEER_CALL_TIMEOUT, fetch_chain(dialer, &m, have)).await;
        match r {
            Ok(Ok(answer)) => Some((m.id, answer)),
            Ok(Err(e)) => {
                tracing::debug!(peer = %m.id, error = %e, "trust list poll failed");
                None
            }
            Err(_) => None,
        }
    });
    for (peer, answer) in join_all(calls).await.into_iter().flatten() {
        let steps = match answer {
            Ok(steps) => steps,
            Err(r) => {
                tracing::warn!(peer = %peer, reason = %r, "trust list answer refused before any list was verified");
                counters.trust_answer_refused(&peer, r);
                continue;
            }
        };
        // Nothing newer; or another peer's answer brought this node past
        // the version this one was asked from: nothing to do.
        if steps.is_empty() || trust.current().version() != have {
            continue;
        }
        if let Err(e) = trust.offer_chain(&steps, &format!("peer {peer}")).await {
            if let Some(r) = refusal(&e) {
                counters.trust_answer_refused(&peer, r);
            }
        }
    }
}

/// Every second until `stop`, closes the connections of members whose
/// sharing basis ran out between lists. A task of its own, so that no push,
/// poll or offer can delay a cut-off.
async fn sweep(trust: Arc<TrustState>, stop: CancellationToken) {
    let mut second = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = second.tick() => {
                trust.cut_off();
            }
        }
    }
}

/// Runs until `stop`.
pub(crate) async fn run(
    trust: Arc<TrustState>,
    dialer: PeerDialer,
    counters: Arc<Counters>,
    interval: Duration,
    clock: Clock,
    stop: CancellationToken,
) {
    tokio::spawn(sweep(trust.clone(), stop.clone()));
    let mut changed = trust.subscribe();
    let mut poll_timer = tokio::time::interval(interval);
    let mut last_warning = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
                push(&trust, &dialer).await;
            }
            _ = trust.catch_up_requested() => {
                poll(&trust, &dialer, &counters).await;
            }
            _ = poll_timer.tick() => {
                poll(&trust, &dialer, &counters).await;
                let now = clock.now();
                let warning = trust.warning(now);
                if let Some(w) = &warning {
                    if trust.current().is_expired(now) {
                        tracing::error!("{w}");
                    } else {
                        tracing::warn!("{w}");
                    }
                }
                if warning.is_none() && last_warning.is_some() {
                    tracing::info!("trust list no longer near expiry");
                }
                last_warning = warning;
            }
        }
    }
}
