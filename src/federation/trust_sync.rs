//! Keeps this node on the newest trust list (the asking side of
//! `Federation.GetTrustList` and `PublishTrustList`): pushes a newly applied
//! list to every active peer, polls peers for newer versions every
//! `trust.sync_seconds`, cuts off members whose sharing basis ran out
//! (every second, in a task of its own), and logs the list's expiry
//! warnings by the node's clock. The answering side
//! is [`super::trust_serve`].

use std::{sync::Arc, time::Duration};

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::{PeerDialer, PEER_CALL_TIMEOUT};
use crate::{
    proto::{GetTrustListRequest, Member},
    time::Clock,
    trust::state::TrustState,
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

/// Asks every peer for a newer list and offers what comes back.
pub(crate) async fn poll(trust: &TrustState, dialer: &PeerDialer) {
    let have = trust.current().version();
    let calls = peers(trust).into_iter().map(|m| async move {
        let r = tokio::time::timeout(PEER_CALL_TIMEOUT, async {
            let mut c = dialer
                .federation(&m)
                .await
                .map_err(|e| crate::telemetry::chain(&e))?;
            c.get_trust_list(GetTrustListRequest { have_version: have })
                .await
                .map_err(|s| s.message().to_string())
        })
        .await;
        match r {
            Ok(Ok(resp)) => resp.into_inner().list.map(|l| (m.id, l)),
            Ok(Err(e)) => {
                tracing::debug!(peer = %m.id, error = %e, "trust list poll failed");
                None
            }
            Err(_) => None,
        }
    });
    for (peer, list) in join_all(calls).await.into_iter().flatten() {
        let _ = trust.offer(&list, &format!("peer {peer}")).await;
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
            _ = poll_timer.tick() => {
                poll(&trust, &dialer).await;
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
