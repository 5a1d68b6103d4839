//! Fork evidence in force: whether evidence proves a fork under the trust
//! list in force ([`check`]), and where each origin is frozen
//! ([`refreeze`]).
//!
//! Of all the evidence found for an origin, the one with the lowest fork
//! point is kept ([`crate::store::Store::put_fork`]), so every node, before
//! and after a restart, freezes the origin at the same point. Evidence is
//! checked again at every start and whenever a new trust list is applied
//! ([`recheck`]): evidence that no longer verifies under the list in force
//! (the operators suspended the origin before its fork point, or rotated
//! its key with a continuation point at or before it, so that neither
//! forked batch verifies) is lifted: moved to the store's lifted records
//! (an audit record, shown in Status, never relayed) and no longer
//! freezes. Lifted evidence that a later list lets verify again goes back
//! in force. An origin is frozen in the index from the fork point of its
//! evidence in force, or, when the list suspends it, past the last
//! sequence number the suspension accepts, whichever is lower.

use crate::{
    batch::{fork_point, Batch},
    counters::Counters,
    logs::OriginLogs,
    proto::{ForkEvidence, MemberStatus},
    store::{Store, StoreError},
    trust::list::TrustList,
};

use super::receive_batches::EvidenceRefused;

/// Checks fork evidence against `list`: two batches that decode, of one
/// origin, different, overlapping in sequence numbers, each validly signed
/// for its sequence numbers by a key the list allows there (within any
/// suspension or sharing-basis bound) and within every field rule. Returns
/// the origin and the fork point. CPU-bound (two signature checks).
pub(crate) fn check(ev: &ForkEvidence, list: &TrustList) -> Result<(String, u64), EvidenceRefused> {
    let (Some(a), Some(b)) = (ev.first.clone(), ev.second.clone()) else {
        return Err(EvidenceRefused::Incomplete);
    };
    let a = Batch::decode(a).map_err(EvidenceRefused::Decode)?;
    let b = Batch::decode(b).map_err(EvidenceRefused::Decode)?;
    let fork = a.origin() == b.origin()
        && a.hash() != b.hash()
        && a.first_seq() <= b.last_seq()
        && b.first_seq() <= a.last_seq();
    if !fork {
        return Err(EvidenceRefused::NotAFork);
    }
    for x in [&a, &b] {
        crate::trust::batches::verify(x, list).map_err(EvidenceRefused::Unverified)?;
        // Bad bytes are never kept, by this path either.
        x.check_fields().map_err(EvidenceRefused::InvalidField)?;
    }
    let from = fork_point(ev).unwrap_or(1);
    Ok((a.origin().to_string(), from))
}

/// Where `origin`'s entries stop matching under `list`: the fork point of
/// the evidence kept in `store`, or past what a suspension accepts,
/// whichever is lower; `None`: nowhere.
fn freeze_point(store: &Store, list: &TrustList, origin: &str) -> Result<Option<u64>, StoreError> {
    let fork = store.fork_point(origin)?;
    let suspended = list
        .member(origin)
        .filter(|m| m.status == MemberStatus::Suspended as i32)
        .map(|m| m.suspended_after_seq.saturating_add(1));
    Ok([fork, suspended].into_iter().flatten().min())
}

/// Sets where `origin` is frozen in the index from the store's evidence
/// and `list`. Reads the store under the index's lock, so that of two
/// callers racing, the last to set it has read the store last.
pub(crate) fn refreeze(
    logs: &OriginLogs,
    list: &TrustList,
    origin: &str,
) -> Result<(), StoreError> {
    let mut index = logs.index.write();
    let at = freeze_point(&logs.store, list, origin)?;
    index.set_frozen(origin, at);
    Ok(())
}

/// Checks every fork evidence held against `list`: kept evidence that no
/// longer verifies is lifted, lifted evidence that verifies again goes
/// back in force (unless evidence as low is kept), each logged and
/// counted; then every origin's freeze is set again. Returns how many
/// were lifted. CPU-bound: on the blocking pool.
pub(crate) fn recheck(
    logs: &OriginLogs,
    list: &TrustList,
    counters: &Counters,
) -> Result<u64, StoreError> {
    let store = &logs.store;
    let mut lifted = 0;
    for (origin, ev) in store.forks()? {
        let Err(e) = check(&ev, list) else { continue };
        if store.lift_fork(&origin, &ev)? {
            lifted += 1;
            counters.fork_lifted();
            tracing::warn!(origin = %origin, frozen_from_seq = fork_point(&ev).unwrap_or(1), reason = e.reason().name(), error = %e, "fork evidence lifted: it no longer verifies under the trust list in force; kept as an audit record, not relayed");
        }
    }
    for (origin, ev) in store.lifted_forks()? {
        if check(&ev, list).is_ok() && store.unlift_fork(&origin, &ev)? {
            tracing::error!(origin = %origin, frozen_from_seq = fork_point(&ev).unwrap_or(1), "lifted fork evidence verifies again under the trust list in force: the origin is frozen again");
        }
    }
    let mut origins: Vec<String> = logs
        .index
        .read()
        .frozen()
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    origins.extend(store.forks()?.into_iter().map(|(o, _)| o));
    origins.extend(
        list.body()
            .members
            .iter()
            .filter(|m| m.status == MemberStatus::Suspended as i32)
            .map(|m| m.id.clone()),
    );
    origins.sort();
    origins.dedup();
    for o in &origins {
        refreeze(logs, list, o)?;
    }
    Ok(lifted)
}

/// One fork evidence as Status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForkState {
    pub origin: String,
    /// Its fork point.
    pub fork_point: u64,
    /// `None` while in force; why it no longer verifies under the list in
    /// force, once lifted.
    pub lifted_because: Option<String>,
}

/// The evidence in force, then the lifted evidence, each by origin.
pub(crate) fn states(
    store: &Store,
    list: Option<&TrustList>,
) -> Result<Vec<ForkState>, StoreError> {
    let mut out: Vec<ForkState> = store
        .forks()?
        .into_iter()
        .map(|(origin, ev)| ForkState {
            origin,
            fork_point: fork_point(&ev).unwrap_or(1),
            lifted_because: None,
        })
        .collect();
    for (origin, ev) in store.lifted_forks()? {
        let why = match list.map(|l| check(&ev, l)) {
            Some(Err(e)) => e.to_string(),
            _ => "lifted under an earlier trust list".to_string(),
        };
        out.push(ForkState {
            origin,
            fork_point: fork_point(&ev).unwrap_or(1),
            lifted_because: Some(why),
        });
    }
    Ok(out)
}
