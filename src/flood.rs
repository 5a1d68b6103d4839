//! Flood control: counts per indicator ([`IndicatorRef`]) and UTC day the
//! hits this node answered and the distinct watch entries the alert engine
//! matched, and quarantines an indicator past either threshold (a pooled
//! account or a common merchant id contributed by mistake would otherwise
//! flood every bank's review queue).
//!
//! A quarantined indicator still answers, marked; its new alerts pause;
//! the origin hears of it once through the [`FeedbackSink`]. An operator
//! lifts a quarantine, which exempts the indicator for the rest of the UTC
//! day. Counts live in sharded maps touched only by hits (a miss never
//! reaches this module) and are flushed to `<data_dir>/flood` (sled) by
//! [`Flood::flush`], so a restart keeps today's counts, first-hit times and
//! the quarantines. Nothing here keeps an identifier, a token or a watch
//! reference: only origin, sequence number, counts, node-local watch entry
//! numbers, and the indicator's kind and case reference for the list.

use std::{
    collections::{hash_map::DefaultHasher, HashMap},
    hash::{Hash, Hasher},
    path::Path,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc,
    },
};

use parking_lot::Mutex;
use prost::Message;

use crate::{
    ident::Kind,
    outcome::{utc_day, FeedbackOutcome, FeedbackSink, IndicatorRef},
};

/// Shards of the counters: hits of different indicators rarely wait on
/// each other.
const SHARDS: usize = 32;

/// Tree of per-day counts: key day (8 bytes BE) | seq (8) | origin.
const DAYS: &str = "days";
/// Tree of first-hit times: key seq (8) | origin.
const FIRST: &str = "first";
/// Tree of quarantines and exemptions: key seq (8) | origin.
const HELD: &str = "held";

/// Why flood control's store (`<data_dir>/flood`) failed.
#[derive(Debug, thiserror::Error)]
pub enum FloodError {
    /// sled failed.
    #[error("flood store")]
    Db(#[from] sled::Error),
    /// A stored record does not decode.
    #[error("flood store: a record does not decode")]
    Decode(#[from] prost::DecodeError),
}

/// The thresholds (`[flood]` in the config), per indicator and UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Thresholds {
    pub hits_per_day: u64,
    pub watch_entries_per_day: u64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            hits_per_day: 1000,
            watch_entries_per_day: 100,
        }
    }
}

/// The indicator a hit or a watch match is on: what flood control counts
/// it by and shows of it (never its token).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub origin: &'a Arc<str>,
    /// The sequence number of its add entry.
    pub seq: u64,
    pub kind: Kind,
    pub case_ref: &'a Arc<str>,
}

/// Which threshold quarantined an indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Hits,
    WatchEntries,
}

impl Reason {
    /// The wire and CLI name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Hits => "hits_per_day",
            Reason::WatchEntries => "watch_entries_per_day",
        }
    }
}

/// One quarantine in force, as `cix quarantine list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quarantine {
    pub about: IndicatorRef,
    pub kind: Kind,
    pub case_ref: String,
    /// When it began, unix seconds.
    pub since: i64,
    /// Hits and distinct watch entries counted on the day it began.
    pub hits: u64,
    pub watch_entries: u64,
    pub reason: Reason,
}

/// Flood control's figures for Status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FloodStatus {
    /// Indicators quarantined now.
    pub quarantined: u64,
    /// Quarantines begun since the node started.
    pub quarantines: u64,
    /// Quarantines lifted since the node started.
    pub lifted: u64,
    /// Alerts not raised because their indicator was quarantined, since the
    /// node started (an alert paused again at each re-check counts again).
    pub alerts_paused: u64,
    /// `flood` feedback handed to the sink since the node started.
    pub feedback_sent: u64,
    /// When the counts were last flushed, unix seconds (0: not yet).
    pub flushed_at: i64,
}

/// Hits on one indicator on one UTC day, for the coalition's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DayHits {
    /// The UTC day number ([`crate::outcome::utc_day`]).
    pub day: i64,
    /// The indicator.
    pub about: IndicatorRef,
    /// Hits this node answered on it that day.
    pub hits: u64,
}

/// What a report needs from flood control.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HitFigures {
    /// Hits per UTC day and indicator in the range asked, by day then indicator.
    pub by_day: Vec<DayHits>,
    /// The first hit this node answered on each indicator, unix seconds
    /// (every indicator ever hit, whatever the range).
    pub first_hit: Vec<(IndicatorRef, i64)>,
}

/// Why a lift was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LiftError {
    #[error("indicator {origin}:{seq} is not quarantined")]
    NotQuarantined { origin: String, seq: u64 },
    #[error(transparent)]
    Store(#[from] FloodError),
}

/// One indicator's state in memory.
#[derive(Debug, Clone, Default)]
struct State {
    /// The UTC day the counts are of.
    day: i64,
    hits: u64,
    /// Distinct watch entries matched that day, at most the threshold.
    entries: Vec<u32>,
    /// First hit since this state was made, unix seconds (0: none); the
    /// store keeps the earliest.
    first_hit: i64,
    held: Option<Held>,
    /// Exempt (lifted) for this UTC day.
    exempt_day: Option<i64>,
    /// Changed since the last flush.
    dirty: bool,
    /// The previous day's counts, when the day turned before they were
    /// flushed: (day, hits, entries).
    unflushed: Option<(i64, u64, Vec<u32>)>,
}

#[derive(Debug, Clone)]
struct Held {
    kind: Kind,
    case_ref: Arc<str>,
    since: i64,
    hits: u64,
    watch_entries: u64,
    reason: Reason,
    /// The origin was told (handed to the sink).
    told: bool,
}

impl State {
    /// Moves the counts to `day` (a new day counts afresh).
    fn roll(&mut self, day: i64) {
        if self.day != day {
            if self.dirty {
                self.unflushed = Some((self.day, self.hits, std::mem::take(&mut self.entries)));
            }
            self.day = day;
            self.hits = 0;
            self.entries.clear();
        }
    }

    fn quarantined(&self, day: i64) -> bool {
        self.held.is_some() && self.exempt_day != Some(day)
    }

    /// Quarantines if a threshold is reached; whether it is quarantined.
    fn check(&mut self, i: Subject<'_>, t: Thresholds, now: i64, began: &AtomicU64) -> bool {
        let day = self.day;
        if self.exempt_day == Some(day) {
            return false;
        }
        if self.held.is_some() {
            return true;
        }
        let reason = if self.hits >= t.hits_per_day {
            Reason::Hits
        } else if self.entries.len() as u64 >= t.watch_entries_per_day {
            Reason::WatchEntries
        } else {
            return false;
        };
        self.held = Some(Held {
            kind: i.kind,
            case_ref: i.case_ref.clone(),
            since: now,
            hits: self.hits,
            watch_entries: self.entries.len() as u64,
            reason,
            told: false,
        });
        began.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            origin = %i.origin,
            seq = i.seq,
            reason = reason.as_str(),
            "indicator quarantined: it matched more than a real one should"
        );
        true
    }
}

/// Counts, quarantines, and their store.
pub(crate) struct Flood {
    thresholds: Thresholds,
    shards: Vec<Mutex<HashMap<IndicatorRef, State>>>,
    db: sled::Db,
    sink: Arc<dyn FeedbackSink>,
    /// One flush at a time.
    flushing: Mutex<()>,
    began: AtomicU64,
    lifted: AtomicU64,
    paused: AtomicU64,
    told: AtomicU64,
    flushed_at: AtomicI64,
}

/// Persisted counts of one indicator on one day.
#[derive(Clone, PartialEq, prost::Message)]
struct DayRecord {
    #[prost(uint64, tag = "1")]
    hits: u64,
    #[prost(uint32, repeated, tag = "2")]
    entries: Vec<u32>,
}

/// A persisted quarantine or exemption.
#[derive(Clone, PartialEq, prost::Message)]
struct HeldRecord {
    #[prost(bool, tag = "1")]
    held: bool,
    #[prost(string, tag = "2")]
    kind: String,
    #[prost(string, tag = "3")]
    case_ref: String,
    #[prost(int64, tag = "4")]
    since: i64,
    #[prost(uint64, tag = "5")]
    hits: u64,
    #[prost(uint64, tag = "6")]
    watch_entries: u64,
    #[prost(bool, tag = "7")]
    by_watch_entries: bool,
    #[prost(bool, tag = "8")]
    told: bool,
    /// The UTC day the indicator is exempt, plus one (0: none).
    #[prost(int64, tag = "9")]
    exempt_day_plus_one: i64,
}

fn ref_key(r: &IndicatorRef) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + r.origin.len());
    k.extend_from_slice(&r.seq.to_be_bytes());
    k.extend_from_slice(r.origin.as_bytes());
    k
}

fn ref_of(k: &[u8]) -> Option<IndicatorRef> {
    let seq = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let origin = std::str::from_utf8(&k[8..]).ok()?;
    Some(IndicatorRef {
        origin: origin.into(),
        seq,
    })
}

fn day_key(day: i64, r: &IndicatorRef) -> Vec<u8> {
    let mut k = (day.max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(&ref_key(r));
    k
}

impl Flood {
    /// Opens (or creates) the store in `dir` and reads back today's counts
    /// (`now` by the node's clock) and the quarantines. First-hit times stay
    /// on disk: a later hit never replaces one there.
    pub(crate) fn open(
        dir: &Path,
        thresholds: Thresholds,
        sink: Arc<dyn FeedbackSink>,
        now: i64,
    ) -> Result<Flood, FloodError> {
        let db = sled::open(dir)?;
        let flood = Flood {
            thresholds,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            db,
            sink,
            flushing: Mutex::new(()),
            began: AtomicU64::new(0),
            lifted: AtomicU64::new(0),
            paused: AtomicU64::new(0),
            told: AtomicU64::new(0),
            flushed_at: AtomicI64::new(0),
        };
        let today = utc_day(now);
        let load = |r: IndicatorRef, f: &mut dyn FnMut(&mut State)| {
            let mut shard = flood.shard(&r).lock();
            let s = shard.entry(r).or_insert_with(|| State {
                day: today,
                ..State::default()
            });
            f(s);
        };
        for kv in flood
            .db
            .open_tree(DAYS)?
            .scan_prefix((today as u64).to_be_bytes())
        {
            let (k, v) = kv?;
            let Some(r) = ref_of(&k[8..]) else { continue };
            let d = DayRecord::decode(&*v)?;
            load(r, &mut |s| {
                s.hits = d.hits;
                s.entries = d.entries.clone();
            });
        }
        for kv in flood.db.open_tree(HELD)?.iter() {
            let (k, v) = kv?;
            let Some(r) = ref_of(&k) else { continue };
            let h = HeldRecord::decode(&*v)?;
            load(r, &mut |s| {
                s.exempt_day = (h.exempt_day_plus_one > 0).then(|| h.exempt_day_plus_one - 1);
                s.held = match (h.held, Kind::parse(&h.kind)) {
                    (true, Ok(kind)) => Some(Held {
                        kind,
                        case_ref: h.case_ref.as_str().into(),
                        since: h.since,
                        hits: h.hits,
                        watch_entries: h.watch_entries,
                        reason: if h.by_watch_entries {
                            Reason::WatchEntries
                        } else {
                            Reason::Hits
                        },
                        told: h.told,
                    }),
                    _ => None,
                };
                // A quarantine whose origin was not told before the stop:
                // the first flush tries again.
                s.dirty |= s.held.as_ref().is_some_and(|h| !h.told);
            });
        }
        Ok(flood)
    }

    fn shard(&self, r: &IndicatorRef) -> &Mutex<HashMap<IndicatorRef, State>> {
        let mut h = DefaultHasher::new();
        r.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    /// With the state of `i` on the UTC day of `now`.
    fn with<T>(&self, i: Subject<'_>, now: i64, f: impl FnOnce(&mut State) -> T) -> T {
        let r = IndicatorRef {
            origin: i.origin.clone(),
            seq: i.seq,
        };
        let day = utc_day(now);
        let mut shard = self.shard(&r).lock();
        let s = shard.entry(r).or_insert_with(|| State {
            day,
            ..State::default()
        });
        s.roll(day);
        f(s)
    }

    /// Counts one hit answered on `i` at `now`; whether the hit is
    /// quarantined (the hit that reaches the threshold is).
    pub(crate) fn hit(&self, i: Subject<'_>, now: i64) -> bool {
        let t = self.thresholds;
        self.with(i, now, |s| {
            s.hits = s.hits.saturating_add(1);
            if s.first_hit == 0 {
                s.first_hit = now.max(1);
            }
            s.dirty = true;
            s.check(i, t, now, &self.began)
        })
    }

    /// Counts watch entry `entry` matched by `i` at `now`; whether the
    /// indicator is quarantined (its new alerts pause).
    pub(crate) fn watch_match(&self, i: Subject<'_>, entry: u32, now: i64) -> bool {
        let t = self.thresholds;
        self.with(i, now, |s| {
            if (s.entries.len() as u64) < t.watch_entries_per_day && !s.entries.contains(&entry) {
                s.entries.push(entry);
                s.dirty = true;
            }
            s.check(i, t, now, &self.began)
        })
    }

    /// Counts one alert not raised because its indicator is quarantined.
    pub(crate) fn paused(&self) {
        self.paused.fetch_add(1, Ordering::Relaxed);
    }

    /// The quarantines in force, by origin and sequence number.
    pub(crate) fn list(&self, now: i64) -> Vec<Quarantine> {
        let day = utc_day(now);
        let mut out: Vec<Quarantine> = self
            .shards
            .iter()
            .flat_map(|sh| {
                sh.lock()
                    .iter()
                    .filter(|(_, s)| s.quarantined(day))
                    .filter_map(|(r, s)| {
                        let h = s.held.as_ref()?;
                        Some(Quarantine {
                            about: r.clone(),
                            kind: h.kind,
                            case_ref: h.case_ref.to_string(),
                            since: h.since,
                            hits: h.hits,
                            watch_entries: h.watch_entries,
                            reason: h.reason,
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| a.about.cmp(&b.about));
        out
    }

    /// Lifts the quarantine of `about`: the indicator is exempt for the
    /// rest of the UTC day of `now`, and counted afresh from the next.
    /// Durable before it returns.
    pub(crate) fn lift(&self, about: &IndicatorRef, now: i64) -> Result<(), LiftError> {
        let day = utc_day(now);
        let lifted = {
            let mut shard = self.shard(about).lock();
            match shard.get_mut(about) {
                Some(s) if s.quarantined(day) => {
                    s.held = None;
                    s.exempt_day = Some(day);
                    s.dirty = true;
                    true
                }
                _ => false,
            }
        };
        if !lifted {
            return Err(LiftError::NotQuarantined {
                origin: about.origin.to_string(),
                seq: about.seq,
            });
        }
        self.lifted.fetch_add(1, Ordering::Relaxed);
        tracing::info!(origin = %about.origin, seq = about.seq, "quarantine lifted for the rest of the UTC day");
        self.flush(now)?;
        Ok(())
    }

    /// Tells the origin of every new quarantine (once each), and writes
    /// every changed count, first-hit time and quarantine durably.
    pub(crate) fn flush(&self, now: i64) -> Result<(), FloodError> {
        let _one = self.flushing.lock();
        let (days, first, held) = (
            self.db.open_tree(DAYS)?,
            self.db.open_tree(FIRST)?,
            self.db.open_tree(HELD)?,
        );
        let today = utc_day(now);
        let mut tell: Vec<(IndicatorRef, i64)> = Vec::new();
        let mut dirty: Vec<(IndicatorRef, State)> = Vec::new();
        for sh in &self.shards {
            let mut sh = sh.lock();
            // Indicators last counted on an earlier day, held by nothing:
            // what they counted is on disk, and memory stays bounded by
            // the indicators hit today.
            sh.retain(|_, s| {
                s.dirty
                    || s.day >= today
                    || s.held.is_some()
                    || s.exempt_day.is_some_and(|d| d >= today)
            });
            for (r, s) in sh.iter_mut().filter(|(_, s)| s.dirty) {
                if let Some(h) = s.held.as_ref().filter(|h| !h.told) {
                    tell.push((r.clone(), utc_day(h.since)));
                }
                dirty.push((r.clone(), s.clone()));
                s.dirty = false;
                s.unflushed = None;
            }
        }
        // Outside the shard locks: the sink writes durably.
        let mut told = Vec::new();
        for (r, day) in tell {
            match self.sink.send(&r, FeedbackOutcome::Flood, &[], day) {
                Ok(()) => {
                    self.told.fetch_add(1, Ordering::Relaxed);
                    told.push(r);
                }
                Err(e) => {
                    tracing::warn!(origin = %r.origin, seq = r.seq, error = %e, "flood feedback not queued; trying again at the next flush");
                }
            }
        }
        for (r, s) in &mut dirty {
            let told_now = told.contains(r);
            if let Some(h) = s.held.as_mut() {
                h.told |= told_now;
            }
            if told_now || s.held.as_ref().is_some_and(|h| !h.told) {
                // Keep memory equal to what is written.
                let mut sh = self.shard(r).lock();
                if let Some(m) = sh.get_mut(r) {
                    if let Some(h) = m.held.as_mut() {
                        h.told |= told_now;
                    }
                    // Not told: the next flush tries again.
                    m.dirty |= !told_now;
                }
            }
            let rec = DayRecord {
                hits: s.hits,
                entries: s.entries.clone(),
            };
            days.insert(day_key(s.day, r), rec.encode_to_vec())?;
            if let Some((day, hits, entries)) = s.unflushed.take() {
                let rec = DayRecord { hits, entries };
                days.insert(day_key(day, r), rec.encode_to_vec())?;
            }
            // The first hit ever stays: an indicator forgotten from memory
            // and hit again later must not move it.
            if s.first_hit > 0 {
                let _ = first.compare_and_swap(
                    ref_key(r),
                    None as Option<&[u8]>,
                    Some(&s.first_hit.to_be_bytes()[..]),
                )?;
            }
            let rec = match (&s.held, s.exempt_day) {
                (None, None) => None,
                (h, exempt) => Some(HeldRecord {
                    held: h.is_some(),
                    kind: h
                        .as_ref()
                        .map(|h| h.kind.as_str().to_string())
                        .unwrap_or_default(),
                    case_ref: h
                        .as_ref()
                        .map(|h| h.case_ref.to_string())
                        .unwrap_or_default(),
                    since: h.as_ref().map_or(0, |h| h.since),
                    hits: h.as_ref().map_or(0, |h| h.hits),
                    watch_entries: h.as_ref().map_or(0, |h| h.watch_entries),
                    by_watch_entries: h.as_ref().is_some_and(|h| h.reason == Reason::WatchEntries),
                    told: h.as_ref().is_some_and(|h| h.told),
                    exempt_day_plus_one: exempt.map_or(0, |d| d + 1),
                }),
            };
            match rec {
                Some(rec) => held.insert(ref_key(r), rec.encode_to_vec())?,
                None => held.remove(ref_key(r))?,
            };
        }
        self.db.flush()?;
        self.flushed_at.store(now, Ordering::Relaxed);
        Ok(())
    }

    /// Flood control's figures now.
    pub(crate) fn status(&self, now: i64) -> FloodStatus {
        let day = utc_day(now);
        let quarantined = self
            .shards
            .iter()
            .map(|sh| sh.lock().values().filter(|s| s.quarantined(day)).count() as u64)
            .sum();
        FloodStatus {
            quarantined,
            quarantines: self.began.load(Ordering::Relaxed),
            lifted: self.lifted.load(Ordering::Relaxed),
            alerts_paused: self.paused.load(Ordering::Relaxed),
            feedback_sent: self.told.load(Ordering::Relaxed),
            flushed_at: self.flushed_at.load(Ordering::Relaxed),
        }
    }

    /// Hits per UTC day and indicator for days `from..=to`, and every
    /// indicator's first hit (after a flush, so what is counted is there).
    pub(crate) fn figures(&self, from: i64, to: i64, now: i64) -> Result<HitFigures, FloodError> {
        self.flush(now)?;
        let mut by_day = Vec::new();
        let (lo, hi) = (
            (from.max(0) as u64).to_be_bytes(),
            (to.max(0) as u64).to_be_bytes(),
        );
        for kv in self.db.open_tree(DAYS)?.range(lo..) {
            let (k, v) = kv?;
            if k[..8] > hi[..] {
                break;
            }
            let Some(about) = ref_of(&k[8..]) else {
                continue;
            };
            let day = u64::from_be_bytes(k[..8].try_into().expect("8 bytes")) as i64;
            let hits = DayRecord::decode(&*v)?.hits;
            if hits > 0 {
                by_day.push(DayHits { day, about, hits });
            }
        }
        let mut first_hit = Vec::new();
        for kv in self.db.open_tree(FIRST)?.iter() {
            let (k, v) = kv?;
            if let (Some(r), Ok(b)) = (ref_of(&k), <[u8; 8]>::try_from(&*v)) {
                first_hit.push((r, i64::from_be_bytes(b)));
            }
        }
        first_hit.sort();
        Ok(HitFigures { by_day, first_hit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::QueueError;

    #[derive(Default)]
    struct Told(Mutex<Vec<(IndicatorRef, FeedbackOutcome, i64)>>);

    impl FeedbackSink for Told {
        fn send(
            &self,
            about: &IndicatorRef,
            outcome: FeedbackOutcome,
            actions: &[crate::outcome::Action],
            day: i64,
        ) -> Result<(), QueueError> {
            assert!(actions.is_empty());
            self.0.lock().push((about.clone(), outcome, day));
            Ok(())
        }
    }

    /// An indicator's name and case, kept for the test's length.
    struct Ind(Arc<str>, u64, Arc<str>);

    impl Ind {
        fn s(&self) -> Subject<'_> {
            Subject {
                origin: &self.0,
                seq: self.1,
                kind: Kind::Iban,
                case_ref: &self.2,
            }
        }
    }

    fn ind(origin: &str, seq: u64) -> Ind {
        Ind(origin.into(), seq, "case-1".into())
    }

    const T: Thresholds = Thresholds {
        hits_per_day: 5,
        watch_entries_per_day: 3,
    };
    const NOW: i64 = 1_800_000_000;

    fn open(dir: &Path, told: Arc<Told>) -> Flood {
        Flood::open(dir, T, told, NOW).unwrap()
    }

    #[test]
    fn the_hit_reaching_the_threshold_is_quarantined_and_the_origin_told_once() {
        let dir = tempfile::tempdir().unwrap();
        let told = Arc::new(Told::default());
        let f = open(dir.path(), told.clone());
        let i = ind("liaison", 3);
        let marks: Vec<bool> = (0..7).map(|k| f.hit(i.s(), NOW + k)).collect();
        assert_eq!(marks, [false, false, false, false, true, true, true]);
        assert!(!f.hit(ind("liaison", 4).s(), NOW));
        f.flush(NOW).unwrap();
        f.flush(NOW).unwrap();
        let day = utc_day(NOW);
        assert_eq!(
            *told.0.lock(),
            vec![(
                IndicatorRef {
                    origin: "liaison".into(),
                    seq: 3
                },
                FeedbackOutcome::Flood,
                day
            )]
        );
        let l = f.list(NOW);
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].hits, l[0].reason), (5, Reason::Hits));
        assert_eq!(f.status(NOW).quarantined, 1);
    }

    #[test]
    fn distinct_watch_entries_pause_and_a_lift_exempts_for_the_day() {
        let dir = tempfile::tempdir().unwrap();
        let f = open(dir.path(), Arc::new(Told::default()));
        let i = ind("liaison", 9);
        assert!(!f.watch_match(i.s(), 1, NOW));
        assert!(!f.watch_match(i.s(), 1, NOW));
        assert!(!f.watch_match(i.s(), 2, NOW));
        assert!(f.watch_match(i.s(), 3, NOW));
        assert!(f.watch_match(i.s(), 4, NOW));
        let r = IndicatorRef {
            origin: "liaison".into(),
            seq: 9,
        };
        f.lift(&r, NOW).unwrap();
        assert!(matches!(
            f.lift(&r, NOW),
            Err(LiftError::NotQuarantined { .. })
        ));
        assert!(!f.watch_match(i.s(), 5, NOW));
        assert!((0..10).all(|_| !f.hit(i.s(), NOW)));
        // The next day counts afresh.
        let next = NOW + crate::outcome::DAY;
        assert!((0..4).all(|_| !f.hit(i.s(), next)));
        assert!(f.hit(i.s(), next));
    }

    #[test]
    fn a_day_turned_before_a_flush_keeps_its_counts_and_the_first_hit_stays() {
        let dir = tempfile::tempdir().unwrap();
        let f = open(dir.path(), Arc::new(Told::default()));
        let i = ind("a", 1);
        f.hit(i.s(), NOW);
        f.hit(i.s(), NOW);
        let next = NOW + crate::outcome::DAY;
        f.hit(i.s(), next);
        f.flush(next).unwrap();
        // Two days on, the indicator is forgotten from memory and hit again.
        f.flush(next + crate::outcome::DAY).unwrap();
        f.hit(i.s(), next + crate::outcome::DAY);
        let day = utc_day(NOW);
        let fig = f.figures(day, day + 2, next + crate::outcome::DAY).unwrap();
        let by_day: Vec<(i64, u64)> = fig.by_day.iter().map(|d| (d.day, d.hits)).collect();
        assert_eq!(by_day, [(day, 2), (day + 1, 1), (day + 2, 1)]);
        assert_eq!(fig.first_hit.len(), 1);
        assert_eq!(fig.first_hit[0].1, NOW);
    }

    struct Full;

    impl FeedbackSink for Full {
        fn send(
            &self,
            _: &IndicatorRef,
            _: FeedbackOutcome,
            _: &[crate::outcome::Action],
            _: i64,
        ) -> Result<(), QueueError> {
            Err(QueueError("the disk is full".into()))
        }
    }

    #[test]
    fn an_origin_not_told_before_a_stop_is_told_after_the_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let f = Flood::open(dir.path(), T, Arc::new(Full), NOW).unwrap();
            for _ in 0..5 {
                f.hit(ind("a", 1).s(), NOW);
            }
            f.flush(NOW).unwrap();
            assert_eq!(f.list(NOW).len(), 1);
        }
        let told = Arc::new(Told::default());
        let f = open(dir.path(), told.clone());
        f.flush(NOW + 60).unwrap();
        assert_eq!(told.0.lock().len(), 1, "told at the first flush");
        f.flush(NOW + 120).unwrap();
        assert_eq!(told.0.lock().len(), 1, "and once");
    }

    #[test]
    fn a_reopen_keeps_todays_counts_first_hits_and_quarantines() {
        let dir = tempfile::tempdir().unwrap();
        {
            let f = open(dir.path(), Arc::new(Told::default()));
            for _ in 0..3 {
                f.hit(ind("a", 1).s(), NOW);
            }
            for _ in 0..5 {
                f.hit(ind("b", 2).s(), NOW + 10);
            }
            f.flush(NOW).unwrap();
        }
        let told = Arc::new(Told::default());
        let f = open(dir.path(), told.clone());
        assert_eq!(f.list(NOW).len(), 1);
        assert!(!f.hit(ind("a", 1).s(), NOW));
        assert!(f.hit(ind("a", 1).s(), NOW));
        f.flush(NOW).unwrap();
        // "b" was told before the reopen; only "a" now.
        assert_eq!(told.0.lock().len(), 1);
        let fig = f.figures(utc_day(NOW), utc_day(NOW), NOW).unwrap();
        let hits: Vec<u64> = fig.by_day.iter().map(|d| d.hits).collect();
        assert_eq!(hits, [5, 5]);
        assert_eq!(
            fig.first_hit.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
            [NOW, NOW + 10]
        );
        assert!(f
            .figures(0, utc_day(NOW) - 1, NOW)
            .unwrap()
            .by_day
            .is_empty());
    }
}
