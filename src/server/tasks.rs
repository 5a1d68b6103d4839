//! The node's background tasks that are not a protocol: merging the
//! index's pending changes once writes pause, rebuilding the key ring when
//! a new trust list changes the epochs, checking stored batches and fork
//! evidence again against every new trust list (signatures after a key
//! rotation, [`crate::logs::recheck_signatures`]; evidence in force and
//! freezes, [`crate::federation::forks::recheck`]), and the retention purge (its
//! schedule; the purge itself is [`crate::retention`]), the alert log's
//! retention ([`crate::alerts::log::retain`]) and its webhook sink
//! ([`crate::alerts::webhook`]), and the alert engine's thread
//! ([`crate::alerts::engine`]). Each stops when the node's stop token is
//! cancelled.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::{RwLock, RwLockUpgradableReadGuard};
use tokio_util::sync::CancellationToken;

use crate::{
    alerts::engine::Deps, config::Config, epochs::KeyRing, index::Index, node::NodeState,
    trust::list::TrustList,
};

/// Starts every background task of this module.
pub(super) fn spawn(state: &Arc<NodeState>, config: &Config, stop: &CancellationToken) {
    tokio::spawn(merge_when_idle(state.index.clone(), stop.clone()));
    if state.trust.is_some() {
        tokio::spawn(rebuild_keys_on_change(state.clone(), stop.clone()));
        tokio::spawn(recheck_on_change(state.clone(), stop.clone()));
    }
    tokio::spawn(crate::retention::run(
        state.store.clone(),
        config.retention,
        config.purge_interval,
        state.clock.clone(),
        stop.clone(),
    ));
    let sinks = match &state.webhook {
        Some(w) => {
            tokio::spawn(w.clone().run(stop.clone()));
            vec![crate::alerts::webhook::SINK]
        }
        None => Vec::new(),
    };
    tokio::spawn(crate::alerts::log::retain(
        state.alert_log.clone(),
        config.alert_retention,
        config.purge_interval,
        sinks,
        state.clock.clone(),
        stop.clone(),
    ));
    start_alerts(state, stop);
    tokio::spawn(flush_flood(state.clone(), stop.clone()));
}

/// How often flood control's counts are written to disk.
const FLOOD_FLUSH: Duration = Duration::from_secs(5);

/// Writes flood control's counts every [`FLOOD_FLUSH`], and once more as
/// the node stops.
async fn flush_flood(state: Arc<NodeState>, stop: CancellationToken) {
    let flush = |state: Arc<NodeState>| async move {
        let flood = state.flood.clone();
        let now = state.clock.now();
        match tokio::task::spawn_blocking(move || flood.flush(now)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "flood counts not written; trying again")
            }
            Err(_) => tracing::error!("flood counts not written: the flush failed"),
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(FLOOD_FLUSH) => flush(state.clone()).await,
        }
    }
    flush(state).await;
}

/// Starts the alert engine's thread when the node keeps a watchlist, and
/// stops it with the node.
fn start_alerts(state: &Arc<NodeState>, stop: &CancellationToken) {
    let Some(watchlist) = state.watchlist.clone() else {
        return;
    };
    let deps = Deps {
        watchlist,
        log: state.alert_log.clone(),
        index: state.index.clone(),
        keys: state.keys.clone(),
        clock: state.clock.clone(),
        node_id: state.node_id.clone(),
        dispositions: state.dispositions.clone(),
        flood: Some(state.flood.clone()),
    };
    if state.monitor.start(deps, &state.logs).is_none() {
        return;
    }
    let (monitor, stop) = (state.monitor.clone(), stop.clone());
    tokio::spawn(async move {
        stop.cancelled().await;
        monitor.stop();
    });
}

/// Merges the index's pending changes once writes pause for a second.
/// Until then every look-up that misses the sorted array also probes the
/// change map (up to a quarter of the indicators after a large ingest, one
/// cache miss per probe); merged, look-ups are batched array reads again.
/// The new array is built under an upgradable read lock, beside look-ups
/// (writes wait, and so do look-ups that come after a waiting write); the
/// write lock is held only to swap it in and free the old one.
async fn merge_when_idle(index: Arc<RwLock<Index>>, stop: CancellationToken) {
    let mut last = index.read().pending().1;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let (pending, applied) = index.read().pending();
        if pending > 0 && applied == last {
            let index = index.clone();
            let merged = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let ix = index.upgradable_read();
                let merged = ix.merged()?;
                let built = started.elapsed();
                // Installing frees the old arrays too (a small part of it).
                RwLockUpgradableReadGuard::upgrade(ix).install(merged);
                Some((built, started.elapsed() - built))
            })
            .await;
            if let Ok(Some((built, locked))) = merged {
                tracing::debug!(
                    changes = pending,
                    built_ms = built.as_millis() as u64,
                    write_locked_us = locked.as_micros() as u64,
                    "index changes merged while writes paused"
                );
            }
        }
        last = applied;
    }
}

/// Runs `f` with the list in force each time a new trust list is applied,
/// until `stop`.
async fn on_each_new_list<F, Fut>(state: &NodeState, stop: CancellationToken, mut f: F)
where
    F: FnMut(Arc<TrustList>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(trust) = state.trust.clone() else {
        return;
    };
    let mut changed = trust.subscribe();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
                f(trust.current()).await;
            }
        }
    }
}

/// A new trust list may change epoch windows: rebuild the key ring.
async fn rebuild_keys_on_change(state: Arc<NodeState>, stop: CancellationToken) {
    on_each_new_list(&state, stop, |list| {
        match KeyRing::build(&state.loaded_keys, Some(&list.body().epochs), false) {
            Ok(ring) => {
                state.keys.set(ring);
                tracing::info!(
                    version = list.version(),
                    "key epochs updated from the trust list"
                );
            }
            Err(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "key epochs not updated")
            }
        }
        std::future::ready(())
    })
    .await
}

/// A new trust list may rotate an origin's key (stored batches signed again
/// or dropped), suspend an origin or make fork evidence no longer verify:
/// check the store again, on the blocking pool.
async fn recheck_on_change(state: Arc<NodeState>, stop: CancellationToken) {
    on_each_new_list(&state, stop, |list| {
        let state = state.clone();
        // A freeze lifted or a suspension ended: what it hid counts again
        // (the engine scans once the check below is done with the index).
        let monitor = state.monitor.clone();
        async move {
            let done = tokio::task::spawn_blocking(move || {
                let r = state.logs.recheck_signatures(&list, &state.node_id, &state.signer)?;
                state.counters.batches_rechecked(r.dropped, r.resigned);
                crate::federation::forks::recheck(&state.logs, &list, &state.counters)
            })
            .await;
            monitor.rescan();
            match done {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %crate::telemetry::chain(&e), "checking the store against the new trust list"),
                Err(e) => tracing::error!(error = %e, "checking the store against the new trust list"),
            }
        }
    })
    .await
}
