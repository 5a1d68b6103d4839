//! Retention: purging dead entries from the origin logs on disk.
//!
//! This module owns the retention purge. Tokens are personal data of the
//! people behind the identifiers: once an indicator has been expired or
//! retracted for longer than the retention period, no node keeps its token
//! or metadata. Every node purges every origin's log (its own and its
//! replicas) by the same rule, so the coalition converges on the same data.
//!
//! A purge replaces an entry by [`crate::batch::purged`], which keeps only
//! the entry's salted hash. The signed header is untouched and
//! `entries_root` recomputes from the kept hashes, so every batch still
//! verifies and the chain of header hashes is unchanged: replication,
//! fork detection and [`crate::trust::batches::verify`] work on purged logs as
//! before. [`crate::index::Index::apply`] skips purged entries.
//!
//! The rule, per (origin, token), follows the index's replay of the log:
//! ADD makes the token live with the header's `valid_until_unix` (0 =
//! never); EXTEND moves `valid_until` of a live token and does nothing
//! otherwise; RETRACT makes it dead from the batch's `created_unix`. A token
//! whose final state has been dead (retracted, or expired at its
//! `valid_until`) since before `now - retention` has every entry of that
//! origin naming it purged, so the replay after a purge is the replay before
//! it minus indicators that were no longer active anyway.
//!
//! Batches are rewritten in log order, so a purge interrupted by a crash
//! never leaves an ADD standing without its later RETRACT.
//!
//! Memory: a purge holds the state of at most [`MAX_TRACKED`] (2^20)
//! (origin, token)s, about 60 to 120 MB, however many the store holds. It
//! tracks only the candidates: the (origin, token)s named by a batch that
//! can leave them dead by the cutoff (a RETRACT or EXTEND created by then,
//! an ADD or EXTEND whose `valid_until` is by then), since the entry that
//! decides a doomed token's final state is in such a batch; a pass over the
//! store finds them, a second replays only them, a third rewrites. With
//! more candidates than that, it works through the token space in parts
//! (by the tokens' first 32 bits), splitting a part again while it holds
//! more, three passes a part.
//!
//! A rewritten batch is a new record in the store's append-only segment
//! files; the superseded one (with its tokens) stays there, so a purge that
//! rewrote anything ends with [`Store::compact`], which copies the live data
//! into a fresh store and deletes the old files: the purged tokens leave the
//! disk.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    batch::{self, Batch},
    proto::LogOp,
    store::{Store, StoreError},
    time::Clock,
    token::Token,
};

/// What a purge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PurgeStats {
    pub batches_rewritten: u64,
    pub entries_purged: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The final state of one (origin, token) in log order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Added (perhaps extended since): valid until then, 0 for never.
    Live { valid_until: i64 },
    /// Not live since then: retracted, or only ever named by EXTENDs that
    /// found nothing to extend.
    Dead { since: i64 },
}

impl State {
    /// Whether the token has been dead since at or before `cutoff`.
    fn dead_by(self, cutoff: i64) -> bool {
        match self {
            State::Live { valid_until } => valid_until != 0 && valid_until <= cutoff,
            State::Dead { since } => since <= cutoff,
        }
    }
}

/// Most (origin, token) states a purge holds at once.
pub(crate) const MAX_TRACKED: usize = 1 << 20;

/// Whether batch `b` can leave a token it names dead by `cutoff`: the entry
/// that decides a doomed token's final state is in such a batch (a RETRACT
/// or an orphan EXTEND created by then, an ADD or EXTEND setting a
/// `valid_until` by then).
fn may_doom(b: &Batch, cutoff: i64) -> bool {
    let h = &b.header;
    let expires = State::Live {
        valid_until: h.valid_until_unix,
    }
    .dead_by(cutoff);
    let ends = State::Dead {
        since: h.created_unix,
    }
    .dead_by(cutoff);
    match b.op() {
        LogOp::Add => expires,
        LogOp::Extend => expires || ends,
        LogOp::Retract => ends,
        LogOp::Unspecified => false,
    }
}

/// Where `t` is in the token space, by its first 32 bits.
fn place(t: &Token) -> u64 {
    u64::from(u32::from_be_bytes([t.0[0], t.0[1], t.0[2], t.0[3]]))
}

/// The whole token space, as [`place`] numbers it: `0..1 << 32`.
const ALL_TOKENS: (u64, u64) = (0, 1 << 32);

/// The state over the log of the (origin, token)s tracked, origins interned.
#[derive(Default)]
struct Replay {
    origins: HashMap<String, u32>,
    /// Last sequence number seen per origin: batches past it are not judged.
    seen: HashMap<u32, u64>,
    /// The tracked (origin, token)s; `None` until the replay names one.
    states: HashMap<(u32, Token), Option<State>>,
}

/// The tokens of a batch's entries not purged yet.
fn live_tokens(b: &Batch) -> impl Iterator<Item = Token> + '_ {
    b.raw
        .entries
        .iter()
        .filter(|e| e.purged_hash.is_empty())
        .filter_map(|e| Token::from_slice(&e.token).ok())
}

impl Replay {
    fn origin(&mut self, name: &str) -> u32 {
        if let Some(&o) = self.origins.get(name) {
            return o;
        }
        let o = self.origins.len() as u32;
        self.origins.insert(name.to_string(), o);
        o
    }

    /// Tracks, up to `max` of them, the (origin, token)s placed in
    /// `lo..hi` that a batch of the store may leave dead by `cutoff`.
    /// Returns how many entries name one, and whether some went untracked.
    fn track_candidates(
        &mut self,
        store: &Store,
        cutoff: i64,
        (lo, hi): (u64, u64),
        max: usize,
    ) -> Result<(usize, bool), StoreError> {
        let (mut named, mut full) = (0, false);
        for b in store.batches() {
            let b = b?;
            if !may_doom(&b, cutoff) {
                continue;
            }
            let o = self.origin(b.origin());
            for t in live_tokens(&b).filter(|t| (lo..hi).contains(&place(t))) {
                named += 1;
                if self.states.len() < max || self.states.contains_key(&(o, t)) {
                    self.states.insert((o, t), None);
                } else {
                    full = true;
                }
            }
        }
        Ok((named, full))
    }

    fn apply(&mut self, b: &Batch) {
        let o = self.origin(b.origin());
        let seen = self.seen.entry(o).or_insert(0);
        *seen = (*seen).max(b.last_seq());
        let h = &b.header;
        let op = b.op();
        for token in live_tokens(b) {
            let Some(state) = self.states.get_mut(&(o, token)) else {
                continue;
            };
            match op {
                LogOp::Add => {
                    *state = Some(State::Live {
                        valid_until: h.valid_until_unix,
                    });
                }
                LogOp::Retract => {
                    *state = Some(State::Dead {
                        since: h.created_unix,
                    });
                }
                LogOp::Extend => match state {
                    Some(State::Live { valid_until }) => *valid_until = h.valid_until_unix,
                    Some(State::Dead { .. }) => {}
                    None => {
                        *state = Some(State::Dead {
                            since: h.created_unix,
                        });
                    }
                },
                // The index refuses such a batch; leave it alone.
                LogOp::Unspecified => {}
            }
        }
    }

    /// Catches up with batches appended since the first pass, so that a
    /// token re-added or extended meanwhile is judged by its new state.
    fn catch_up(&mut self, store: &Store) -> Result<(), StoreError> {
        for (origin, head) in store.heads()? {
            let Some(&o) = self.origins.get(&origin) else {
                // A new origin: none of its tokens is judged.
                continue;
            };
            let seen = self.seen.get(&o).copied().unwrap_or(0);
            if head.last_seq <= seen {
                continue;
            }
            for b in store.decoded_after(&origin, seen) {
                self.apply(&b?);
            }
        }
        Ok(())
    }
}

/// Purges, across every origin's log in `store`, the entries of every
/// (origin, token) whose final state at `now` is dead since before
/// `now - retention_secs`:
/// - retracted: the last entry for (origin, token) in log order is a RETRACT
///   whose batch `created_unix` <= now - retention_secs; or
/// - expired: the last ADD/EXTEND for (origin, token) set valid_until (from
///   its header; 0 = never) and valid_until <= now - retention_secs, with no
///   later ADD/EXTEND/RETRACT changing that.
///
/// (An EXTEND after a RETRACT, or with no ADD before it, changes nothing, as
/// in the index's replay.)
///
/// For such a (origin, token), EVERY entry of that origin mentioning the
/// token (adds, extends, retracts) is purged. A token re-added later (its
/// last entry an active ADD) is kept entirely. Already purged entries are
/// skipped. Batches whose entries change are written back with
/// [`Store::rewrite`], then the store is flushed. Returns the stats.
///
/// Reads and rewrites the store synchronously; [`run`] does it off the runtime
/// (tests call this directly).
#[cfg(test)]
pub(crate) async fn purge(
    store: &Store,
    retention_secs: i64,
    now: i64,
) -> Result<PurgeStats, RetentionError> {
    let stats = purge_blocking(store, retention_secs, now, None)?;
    store.flush().await?;
    Ok(stats)
}

/// The purge without the flush. Stops between batches once `stop` is
/// cancelled (what was rewritten so far stays consistent: log order).
fn purge_blocking(
    store: &Store,
    retention_secs: i64,
    now: i64,
    stop: Option<&CancellationToken>,
) -> Result<PurgeStats, RetentionError> {
    let cutoff = now.saturating_sub(retention_secs.max(0));
    let stats = purge_tracking(store, cutoff, stop, MAX_TRACKED)?;
    if stats.batches_rewritten > 0 {
        // The superseded batch records (the purged tokens) are still in the
        // segment files: rewrite the store so that they leave the disk.
        store.compact()?;
    }
    Ok(stats)
}

/// The purge's passes, holding at most `max_tracked` (origin, token)
/// states: the candidates of the whole token space if they fit, else of
/// one part of it at a time, a part split again while it holds more.
fn purge_tracking(
    store: &Store,
    cutoff: i64,
    stop: Option<&CancellationToken>,
    max_tracked: usize,
) -> Result<PurgeStats, RetentionError> {
    let mut stats = PurgeStats::default();
    let mut parts = vec![ALL_TOKENS];
    while let Some((lo, hi)) = parts.pop() {
        if stop.is_some_and(|s| s.is_cancelled()) {
            break;
        }
        let mut replay = Replay::default();
        let (named, full) = replay.track_candidates(store, cutoff, (lo, hi), max_tracked)?;
        if full && hi - lo > 1 {
            // A quarter to spare: tokens do not fall evenly into parts.
            let n = ((named + named / 4).div_ceil(max_tracked) as u64).clamp(2, hi - lo);
            let step = (hi - lo).div_ceil(n);
            parts.extend(
                (lo..hi)
                    .step_by(step as usize)
                    .map(|at| (at, (at + step).min(hi))),
            );
            continue;
        }
        if replay.states.is_empty() {
            continue;
        }
        for b in store.batches() {
            replay.apply(&b?);
        }
        replay.catch_up(store)?;
        replay
            .states
            .retain(|_, s| s.is_some_and(|s| s.dead_by(cutoff)));
        if !replay.states.is_empty() {
            let done = rewrite_doomed(store, &replay, stop)?;
            stats.batches_rewritten += done.batches_rewritten;
            stats.entries_purged += done.entries_purged;
        }
    }
    Ok(stats)
}

/// Rewrites, in log order, every batch naming an (origin, token) still
/// tracked by `replay` (the doomed ones), with those entries purged.
fn rewrite_doomed(
    store: &Store,
    replay: &Replay,
    stop: Option<&CancellationToken>,
) -> Result<PurgeStats, RetentionError> {
    let mut stats = PurgeStats::default();
    let doomed = &replay.states;
    for b in store.batches() {
        if stop.is_some_and(|s| s.is_cancelled()) {
            break;
        }
        let b = b?;
        let Some(&o) = replay.origins.get(b.origin()) else {
            continue;
        };
        if b.last_seq() > replay.seen.get(&o).copied().unwrap_or(0) {
            continue;
        }
        let doomed_at = |e: &crate::proto::LogEntry| {
            e.purged_hash.is_empty()
                && Token::from_slice(&e.token).is_ok_and(|t| doomed.contains_key(&(o, t)))
        };
        if !b.raw.entries.iter().any(doomed_at) {
            continue;
        }
        if let Err(e) = b.check_entries() {
            tracing::warn!(
                origin = b.origin(),
                first_seq = b.first_seq(),
                "retention: not purging a batch that does not check: {e}"
            );
            continue;
        }
        let mut purged = b.clone();
        let mut n = 0u64;
        for e in purged.raw.entries.iter_mut() {
            if doomed_at(e) {
                *e = batch::purged(e);
                n += 1;
            }
        }
        let ok = purged.hash() == b.hash()
            && purged.raw.header == b.raw.header
            && purged.raw.signature == b.raw.signature
            && purged.check_entries().is_ok();
        if !ok {
            tracing::error!(
                origin = b.origin(),
                first_seq = b.first_seq(),
                "retention: a purged batch would no longer verify; not written"
            );
            debug_assert!(ok, "a purged batch must keep its header and entries_root");
            continue;
        }
        store.rewrite(&purged)?;
        stats.batches_rewritten += 1;
        stats.entries_purged += n;
    }
    Ok(stats)
}

/// Purges at start and then every `interval` until `stop` is cancelled,
/// judging what is past retention at `clock`'s time, and logging counts
/// (never tokens) at info when something was purged.
pub(crate) async fn run(
    store: Arc<Store>,
    retention: Duration,
    interval: Duration,
    clock: Clock,
    stop: CancellationToken,
) {
    let retention_secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let mut timer = tokio::time::interval(interval.max(Duration::from_secs(1)));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = timer.tick() => {}
        }
        let (s, st) = (store.clone(), stop.clone());
        let now = clock.now();
        let result =
            tokio::task::spawn_blocking(move || purge_blocking(&s, retention_secs, now, Some(&st)))
                .await;
        match result {
            Ok(Ok(stats)) => {
                if stats.batches_rewritten > 0 {
                    if let Err(e) = store.flush().await {
                        tracing::warn!(
                            "retention: flushing after the purge: {}",
                            crate::telemetry::chain(&e)
                        );
                        continue;
                    }
                    tracing::info!(
                        entries = stats.entries_purged,
                        batches = stats.batches_rewritten,
                        "retention: purged {} entries past retention in {} batches",
                        stats.entries_purged,
                        stats.batches_rewritten
                    );
                }
            }
            Ok(Err(e)) => {
                tracing::warn!("retention: purge failed: {}", crate::telemetry::chain(&e))
            }
            Err(e) => tracing::error!("retention: purge task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{index::Index, keys::signing::SigningKeyFile, proto::BatchHeader};

    const DAY: i64 = 86_400;
    const RETENTION: i64 = 30 * DAY;
    const NOW: i64 = 1_000 * DAY;

    /// Appends batches of one origin, chained.
    struct Log<'a> {
        store: &'a Store,
        origin: &'static str,
        key: SigningKeyFile,
        next: u64,
        prev: [u8; 32],
    }

    impl<'a> Log<'a> {
        fn new(store: &'a Store, origin: &'static str) -> Log<'a> {
            Log {
                store,
                origin,
                key: SigningKeyFile::generate(),
                next: 1,
                prev: [0; 32],
            }
        }

        fn push(&mut self, op: LogOp, created: i64, valid_until: i64, tokens: &[Token]) -> Batch {
            let header = BatchHeader {
                origin: self.origin.into(),
                first_seq: self.next,
                prev_hash: self.prev.to_vec(),
                created_unix: created,
                op: op as i32,
                case_ref: "case-7".into(),
                tier: 1,
                valid_until_unix: valid_until,
                reason: if op == LogOp::Retract {
                    "wrong".into()
                } else {
                    String::new()
                },
                ..Default::default()
            };
            let entries = tokens.iter().map(|t| batch::entry(t, 6, 1)).collect();
            let b = batch::sign(header, entries, &self.key);
            self.store.append(&b).unwrap();
            self.next = b.last_seq() + 1;
            self.prev = b.hash();
            b
        }
    }

    /// A recognisable token that is unlikely to occur by chance on disk.
    fn tok(n: u8) -> Token {
        let mut t = [0u8; 32];
        for (i, b) in t.iter_mut().enumerate() {
            *b = n ^ (i as u8).wrapping_mul(37) ^ 0xA5;
        }
        t[0] = n;
        Token(t)
    }

    fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let bytes = std::fs::read(&p).unwrap();
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        return true;
                    }
                }
            }
        }
        false
    }

    fn all_batches(store: &Store) -> Vec<Batch> {
        store.batches().map(Result::unwrap).collect()
    }

    /// Tokens still present (unpurged) in the store, per origin.
    fn present(store: &Store) -> Vec<(String, Token)> {
        let mut out = Vec::new();
        for b in all_batches(store) {
            for e in &b.raw.entries {
                if e.purged_hash.is_empty() {
                    out.push((b.origin().to_string(), Token::from_slice(&e.token).unwrap()));
                }
            }
        }
        out
    }

    fn has(store: &Store, origin: &str, t: Token) -> bool {
        present(store).contains(&(origin.to_string(), t))
    }

    #[tokio::test]
    async fn the_rules_for_expiry_retraction_readding_and_extension() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let long_ago = NOW - 100 * DAY;
        let recently = NOW - 10 * DAY;
        let (expired_old, expired_recent, never) = (tok(1), tok(2), tok(3));
        let (retracted_old, retracted_recent, readded) = (tok(4), tok(5), tok(6));
        let (extended_live, extended_dead, future) = (tok(7), tok(8), tok(9));
        let (extend_after_retract, orphan_extend) = (tok(10), tok(11));

        let mut a = Log::new(&store, "bank");
        a.push(LogOp::Add, long_ago - DAY, long_ago, &[expired_old, never]);
        a.push(LogOp::Add, long_ago - DAY, 0, &[never]);
        a.push(LogOp::Add, long_ago - DAY, recently, &[expired_recent]);
        a.push(
            LogOp::Add,
            long_ago - 2 * DAY,
            0,
            &[
                retracted_old,
                retracted_recent,
                readded,
                extend_after_retract,
            ],
        );
        a.push(
            LogOp::Retract,
            long_ago,
            0,
            &[retracted_old, readded, extend_after_retract],
        );
        a.push(
            LogOp::Extend,
            long_ago,
            0,
            &[extend_after_retract, orphan_extend],
        );
        a.push(LogOp::Retract, recently, 0, &[retracted_recent]);
        a.push(LogOp::Add, recently, 0, &[readded]);
        // Expired long ago but extended: judged by the extension.
        a.push(
            LogOp::Add,
            long_ago - 5 * DAY,
            long_ago - 4 * DAY,
            &[extended_live, extended_dead],
        );
        a.push(
            LogOp::Extend,
            long_ago - 4 * DAY,
            NOW + DAY,
            &[extended_live],
        );
        // Extended, but to a date itself past retention.
        a.push(
            LogOp::Extend,
            long_ago - 4 * DAY,
            long_ago - DAY,
            &[extended_dead],
        );
        a.push(LogOp::Add, long_ago, NOW + 100 * DAY, &[future]);
        // Another origin naming the same expired token, still live there.
        let mut b = Log::new(&store, "liaison");
        b.push(LogOp::Add, long_ago, 0, &[expired_old]);
        store.flush().await.unwrap();

        let before = all_batches(&store);
        let stats = purge(&store, RETENTION, NOW).await.unwrap();

        for t in [
            expired_old,
            retracted_old,
            extended_dead,
            extend_after_retract,
            orphan_extend,
        ] {
            assert!(!has(&store, "bank", t), "{t:?} purged");
        }
        for t in [
            expired_recent,
            never,
            retracted_recent,
            readded,
            extended_live,
            future,
        ] {
            assert!(has(&store, "bank", t), "{t:?} kept");
        }
        assert!(has(&store, "liaison", expired_old), "purges are per origin");
        // Every entry of a purged (origin, token): add, retract, extend.
        // expired_old 1, retracted_old 2, extended_dead 2,
        // extend_after_retract 3, orphan_extend 1.
        assert_eq!(stats.entries_purged, 9);
        // Every entry of a re-added token stays, its retract too.
        let readded_entries = all_batches(&store)
            .iter()
            .flat_map(|b| b.raw.entries.clone())
            .filter(|e| *e.token == readded.0)
            .count();
        assert_eq!(readded_entries, 3);

        let after = all_batches(&store);
        assert_eq!(before.len(), after.len());
        let mut changed = 0;
        for (x, y) in before.iter().zip(&after) {
            assert_eq!(x.hash(), y.hash(), "chain unchanged");
            assert_eq!(x.raw.header, y.raw.header);
            assert_eq!(x.raw.signature, y.raw.signature);
            y.check_entries().unwrap();
            assert_eq!(
                batch::entries_root(&x.raw.entries),
                batch::entries_root(&y.raw.entries)
            );
            changed += u64::from(x != y);
        }
        assert_eq!(changed, stats.batches_rewritten);
        assert_eq!(stats.batches_rewritten, 6);
        assert_eq!(store.head("bank").unwrap().unwrap().hash, a.prev);

        // Replay of the purged logs: no hit for purged tokens, the rest as before.
        let mut purged_ix = Index::new();
        let mut full_ix = Index::new();
        for (x, y) in before.iter().zip(&after) {
            full_ix.apply(x).unwrap();
            purged_ix.apply(y).unwrap();
        }
        for t in [
            expired_old,
            retracted_old,
            extended_dead,
            extend_after_retract,
            orphan_extend,
        ] {
            assert!(purged_ix.entry_of(&t, "bank").is_none());
            assert_eq!(
                purged_ix
                    .active(&t, NOW)
                    .filter(|i| &*i.origin == "bank")
                    .count(),
                0
            );
        }
        for t in (1..=11).map(tok) {
            let names = |ix: &Index| ix.active(&t, NOW).collect::<Vec<_>>();
            assert_eq!(
                names(&full_ix),
                names(&purged_ix),
                "{t:?}: same active indicators"
            );
        }

        // A second run changes nothing.
        let again = purge(&store, RETENTION, NOW).await.unwrap();
        assert_eq!(again, PurgeStats::default());
        assert_eq!(all_batches(&store), after);
    }

    /// Fills a store with 40 tokens of each fate: expired, retracted,
    /// retracted and re-added, extended past retention, never expiring.
    fn many_fates(store: &Store) {
        let mut a = Log::new(store, "bank");
        let fate = |f: u8| (0..40u8).map(|i| tok(f * 40 + i)).collect::<Vec<_>>();
        let long_ago = NOW - 100 * DAY;
        a.push(LogOp::Add, long_ago - DAY, long_ago, &fate(0));
        a.push(LogOp::Add, long_ago - DAY, 0, &[fate(1), fate(2)].concat());
        a.push(LogOp::Retract, long_ago, 0, &[fate(1), fate(2)].concat());
        a.push(LogOp::Add, long_ago, 0, &fate(2));
        a.push(LogOp::Add, long_ago - DAY, long_ago, &fate(3));
        a.push(LogOp::Extend, long_ago, NOW + DAY, &fate(3));
        a.push(LogOp::Add, long_ago - DAY, 0, &fate(4));
    }

    /// A purge with more candidates than it may track works through the
    /// token space in parts and purges exactly what one pass would.
    #[tokio::test]
    async fn a_purge_over_its_memory_bound_works_in_parts_to_the_same_result() {
        let (whole, parted) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (whole, parted) = (
            Store::open(whole.path(), 8).unwrap(),
            Store::open(parted.path(), 8).unwrap(),
        );
        many_fates(&whole);
        many_fates(&parted);
        let cutoff = NOW - RETENTION;
        let one = purge_tracking(&whole, cutoff, None, MAX_TRACKED).unwrap();
        let by_parts = purge_tracking(&parted, cutoff, None, 7).unwrap();
        // 40 expired, 80 entries of 40 retracted.
        assert_eq!(one.entries_purged, 120);
        assert_eq!(by_parts.entries_purged, one.entries_purged);
        assert_eq!(present(&parted), present(&whole));
        assert_eq!(present(&whole).len(), 40 * 3 + 40 * 2 + 40);
    }

    /// Builds a store with an expired, a retracted and a kept token, and purges it.
    async fn purged_store(dir: &std::path::Path) -> [Token; 3] {
        let (expired, retracted, kept) = (tok(21), tok(22), tok(23));
        let store = Store::open(dir, 8).unwrap();
        let mut a = Log::new(&store, "bank");
        a.push(LogOp::Add, NOW - 200 * DAY, NOW - 100 * DAY, &[expired]);
        a.push(LogOp::Add, NOW - 200 * DAY, 0, &[retracted, kept]);
        a.push(LogOp::Retract, NOW - 100 * DAY, 0, &[retracted]);
        store.flush().await.unwrap();
        for t in [expired, retracted, kept] {
            assert!(files_contain(dir, &t.0), "the test can see tokens on disk");
        }
        let stats = purge(&store, RETENTION, NOW).await.unwrap();
        assert_eq!(
            stats,
            PurgeStats {
                batches_rewritten: 3,
                entries_purged: 3
            }
        );
        [expired, retracted, kept]
    }

    #[tokio::test]
    async fn a_purge_is_durable_and_batches_still_check_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let [_, _, kept] = purged_store(dir.path()).await;
        let store = Store::open(dir.path(), 8).unwrap();
        assert_eq!(present(&store), vec![("bank".to_string(), kept)]);
        for b in all_batches(&store) {
            b.check_entries().unwrap();
        }
        assert!(files_contain(dir.path(), &kept.0));
    }

    /// The store keeps superseded batch records until it is compacted; the
    /// purge's compaction must remove them.
    #[tokio::test]
    async fn purged_token_bytes_leave_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let [expired, retracted, _] = purged_store(dir.path()).await;
        for t in [expired, retracted] {
            assert!(!files_contain(dir.path(), &t.0), "{t:?} gone from disk");
        }
    }

    /// The runner judges by the clock it is given, not the system's: at
    /// `NOW` (in 1972) one token is past retention, while another, which
    /// expires a day after `NOW` (and so decades before the system time),
    /// is not. The purge decides every token before it rewrites any, so
    /// once the first is gone the second was kept.
    #[tokio::test]
    async fn the_runner_purges_at_start_by_its_clock_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), 8).unwrap());
        let (t, live) = (tok(31), tok(32));
        let mut log = Log::new(&store, "bank");
        log.push(LogOp::Add, NOW - 100 * DAY, NOW + DAY, &[live]);
        log.push(LogOp::Add, NOW - 100 * DAY, NOW - 50 * DAY, &[t]);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            store.clone(),
            Duration::from_secs(RETENTION as u64),
            Duration::from_secs(3600),
            Clock::fixed(NOW as f64),
            stop.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while has(&store, "bank", t) {
            assert!(tokio::time::Instant::now() < deadline, "purged at start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(has(&store, "bank", live), "not past retention at NOW");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}
