//! The origin's record of the feedback it received (`<data_dir>/feedback_received`,
//! its own sled database): one entry per (indicator, outcome, named
//! sender) with its actions and first and last day, so a sender counts once
//! however often and on however many days it repeats itself. A relay's
//! entries are per (indicator, outcome, batch date, action or none, relay):
//! its count of new distinct anonymous senders of the outcome, or of those
//! who newly took the action.
//! Per indicator it sums confirmations, false positives, actions and
//! floods, and flags for review an indicator that two or more distinct
//! senders (named senders, plus the anonymous senders relays counted)
//! reported false positive.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use parking_lot::Mutex;

use super::{outcome_byte, outcome_of};
use crate::outcome::{Action, FeedbackOutcome};

/// The record's folder in the data directory.
pub(crate) const RECORD_DIR: &str = "feedback_received";

/// Why the record could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The database could not be opened.
    #[error("opening the feedback record {path}")]
    Open {
        /// The record's folder.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// A read or write of the record failed.
    #[error("the feedback record")]
    Db(#[from] sled::Error),
}

/// Who sent an item, as the origin records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sender {
    /// A member, by its id (its mTLS identity).
    Named(String),
    /// An operator relaying `count` distinct anonymous senders.
    Relay { relay: String, count: u32 },
}

/// One checked item to record.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub seq: u64,
    pub outcome: FeedbackOutcome,
    pub actions: Vec<Action>,
    pub day: i64,
    pub sender: Sender,
}

/// What this origin heard about one indicator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IndicatorOutcomes {
    pub seq: u64,
    pub confirmations: u64,
    pub false_positives: u64,
    pub blocked: u64,
    pub closed: u64,
    pub floods: u64,
    /// Distinct senders of false positives (named plus anonymous counts).
    pub false_positive_senders: u64,
    pub flagged: bool,
    pub first_day: i64,
    pub last_day: i64,
}

/// One item heard, as the outcome figures count it: no sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heard {
    pub seq: u64,
    pub outcome: FeedbackOutcome,
    pub actions: Vec<Action>,
    pub day: i64,
    /// How many senders it stands for: 1 for a named sender, the relay's
    /// count of anonymous ones.
    pub senders: u64,
    /// Whether it counts for its outcome (and its actions), or, a relay's
    /// count of senders who took an action, for its actions only.
    pub of_outcome: bool,
}

/// Whether recording an item changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The item was new (not a retry).
    pub new: bool,
    /// This item made the indicator flagged for review.
    pub newly_flagged: bool,
}

/// Senders of false positives from two on flag an indicator.
pub(crate) const FLAG_SENDERS: u64 = 2;

pub(crate) struct Records {
    db: sled::Db,
    items: sled::Tree,
    flagged: Mutex<BTreeSet<u64>>,
    received: AtomicU64,
    refused: AtomicU64,
}

const RELAY: u8 = b'r';
const NAMED_BY_SENDER: u8 = b'N';

const BLOCKED: u8 = 1;
const CLOSED: u8 = 2;

fn action_bits(actions: &[Action]) -> u8 {
    actions.iter().fold(0, |bits, a| match a {
        Action::Blocked => bits | BLOCKED,
        Action::Closed => bits | CLOSED,
        Action::Reported => bits,
    })
}

/// A named sender's key: seq (8, big-endian) | outcome (1) | `N` | sender
/// id; value: action bits (1) | 0 (4) | first day (8) | last day (8), both
/// offset big-endian. One entry per sender, outcome and indicator, however
/// many days it repeats: what one member can make an origin store is
/// bounded by the indicators it may name.
///
/// A relay's key: seq (8) | outcome (1) | day (8, offset big-endian) | `r`
/// | action bits (1) | relay id; value: action bits (1) | count (4,
/// big-endian): one per batch date, each a count of new senders.
///
/// (Earlier records keyed named senders by day too: seq | outcome | day |
/// `n` | sender id, with the 5-byte value; read as such.)
fn key(r: &Received) -> Vec<u8> {
    let mut k = r.seq.to_be_bytes().to_vec();
    k.push(outcome_byte(r.outcome));
    match &r.sender {
        Sender::Named(id) => {
            k.push(NAMED_BY_SENDER);
            k.extend_from_slice(id.as_bytes());
        }
        Sender::Relay { relay, .. } => {
            k.extend_from_slice(&day_bytes(r.day));
            k.push(RELAY);
            k.push(action_bits(&r.actions));
            k.extend_from_slice(relay.as_bytes());
        }
    }
    k
}

fn day_bytes(day: i64) -> [u8; 8] {
    ((day as u64) ^ (1 << 63)).to_be_bytes()
}

fn day_of(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

fn relay_value(bits: u8, count: u32) -> [u8; 5] {
    let mut v = [0u8; 5];
    v[0] = bits;
    v[1..].copy_from_slice(&count.to_be_bytes());
    v
}

fn named_value(bits: u8, first: i64, last: i64) -> [u8; 21] {
    let mut v = [0u8; 21];
    v[0] = bits;
    v[5..13].copy_from_slice(&day_bytes(first));
    v[13..21].copy_from_slice(&day_bytes(last));
    v
}

/// One stored entry, decoded.
struct Entry {
    outcome: FeedbackOutcome,
    day: i64,
    last_day: i64,
    relay: bool,
    sender: Vec<u8>,
    bits: u8,
    count: u32,
}

fn decode(k: &[u8], v: &[u8]) -> Option<(u64, Entry)> {
    if k.len() < 10 {
        return None;
    }
    let seq = u64::from_be_bytes(k[..8].try_into().ok()?);
    let outcome = outcome_of(k[8])?;
    if k[9] == NAMED_BY_SENDER {
        if v.len() != 21 {
            return None;
        }
        return Some((
            seq,
            Entry {
                outcome,
                day: day_of(&v[5..13])?,
                last_day: day_of(&v[13..21])?,
                relay: false,
                sender: k[10..].to_vec(),
                bits: v[0],
                count: 0,
            },
        ));
    }
    if k.len() < 18 || v.len() != 5 {
        return None;
    }
    let day = day_of(&k[9..17])?;
    let relay = k[17] == RELAY;
    let sender = if relay { k.get(19..)? } else { &k[18..] };
    Some((
        seq,
        Entry {
            outcome,
            day,
            last_day: day,
            relay,
            sender: sender.to_vec(),
            bits: v[0],
            count: u32::from_be_bytes(v[1..5].try_into().ok()?),
        },
    ))
}

/// Days a relay's counts of distinct senders hold for: its window
/// ([`super::relay::WINDOW_DAYS`]).
fn window(day: i64) -> i64 {
    day.div_euclid(super::relay::WINDOW_DAYS)
}

fn summarize(seq: u64, entries: &[Entry]) -> IndicatorOutcomes {
    let mut o = IndicatorOutcomes {
        seq,
        first_day: i64::MAX,
        last_day: i64::MIN,
        ..IndicatorOutcomes::default()
    };
    // Named: each sender once per outcome, its actions merged.
    let mut named: BTreeMap<(u8, &[u8]), u8> = BTreeMap::new();
    // A relay's new false-positive senders, per relay and window.
    let mut relayed_fp: BTreeMap<(&[u8], i64), u64> = BTreeMap::new();
    for e in entries {
        o.first_day = o.first_day.min(e.day);
        o.last_day = o.last_day.max(e.last_day);
        if !e.relay {
            *named
                .entry((outcome_byte(e.outcome), &e.sender))
                .or_default() |= e.bits;
            continue;
        }
        let weight = u64::from(e.count);
        // A relay's entry with an action counts that action only.
        if e.bits == 0 {
            match e.outcome {
                FeedbackOutcome::Confirmed => o.confirmations += weight,
                FeedbackOutcome::FalsePositive => {
                    o.false_positives += weight;
                    *relayed_fp.entry((&e.sender, window(e.day))).or_default() += weight;
                }
                FeedbackOutcome::Flood => o.floods += weight,
            }
        }
        if e.bits & BLOCKED != 0 {
            o.blocked += weight;
        }
        if e.bits & CLOSED != 0 {
            o.closed += weight;
        }
    }
    let mut named_fp = 0;
    for ((outcome, _), bits) in &named {
        match outcome_of(*outcome) {
            Some(FeedbackOutcome::Confirmed) => o.confirmations += 1,
            Some(FeedbackOutcome::FalsePositive) => {
                o.false_positives += 1;
                named_fp += 1;
            }
            Some(FeedbackOutcome::Flood) => o.floods += 1,
            None => {}
        }
        o.blocked += u64::from(bits & BLOCKED != 0);
        o.closed += u64::from(bits & CLOSED != 0);
    }
    // Toward the review flag a relay counts its largest window, and only
    // the largest relay: a sender repeating itself in a later window, or
    // through a second relay, must not make two senders of one. (A member
    // sending both named and anonymously cannot be told apart; README.)
    let relayed = relayed_fp.values().copied().max().unwrap_or(0);
    o.false_positive_senders = named_fp + relayed;
    o.flagged = o.false_positive_senders >= FLAG_SENDERS;
    o
}

impl Records {
    pub(crate) fn open(data_dir: &Path) -> Result<Records, RecordError> {
        let path = data_dir.join(RECORD_DIR);
        let db = crate::store::open_db(&sled::Config::new().path(&path)).map_err(|source| {
            RecordError::Open {
                path: path.clone(),
                source,
            }
        })?;
        let items = db.open_tree("items")?;
        let records = Records {
            db,
            items,
            flagged: Mutex::new(BTreeSet::new()),
            received: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        };
        let flagged = records
            .all()?
            .into_iter()
            .filter(|o| o.flagged)
            .map(|o| o.seq)
            .collect();
        *records.flagged.lock() = flagged;
        Ok(records)
    }

    /// Records `r` once (a retry changes nothing); flushed before it returns.
    pub(crate) fn record(&self, r: &Received) -> Result<Recorded, RecordError> {
        let k = key(r);
        let bits = action_bits(&r.actions);
        let old = self.items.get(&k)?;
        let value: Vec<u8> = match &r.sender {
            Sender::Named(_) => {
                let (b, first, last) = old
                    .as_deref()
                    .filter(|v| v.len() == 21)
                    .and_then(|v| Some((v[0], day_of(&v[5..13])?, day_of(&v[13..21])?)))
                    .map_or((bits, r.day, r.day), |(b, f, l)| {
                        (b | bits, f.min(r.day), l.max(r.day))
                    });
                named_value(b, first, last).to_vec()
            }
            Sender::Relay { count, .. } => {
                let (b, c) = old
                    .as_deref()
                    .filter(|v| v.len() == 5)
                    .map_or((bits, *count), |v| {
                        (
                            v[0] | bits,
                            u32::from_be_bytes([v[1], v[2], v[3], v[4]]).max(*count),
                        )
                    });
                relay_value(b, c).to_vec()
            }
        };
        if old.as_deref() == Some(value.as_slice()) {
            return Ok(Recorded {
                new: false,
                newly_flagged: false,
            });
        }
        self.items.insert(k, value)?;
        self.db.flush()?;
        self.received.fetch_add(1, Ordering::Relaxed);
        let now = self.of(r.seq)?;
        let newly_flagged = now.flagged && self.flagged.lock().insert(r.seq);
        Ok(Recorded {
            new: true,
            newly_flagged,
        })
    }

    /// Counts an item refused.
    pub(crate) fn refused(&self, n: u64) {
        self.refused.fetch_add(n, Ordering::Relaxed);
    }

    /// What was heard about indicator `seq`.
    pub(crate) fn of(&self, seq: u64) -> Result<IndicatorOutcomes, RecordError> {
        let mut entries = Vec::new();
        for kv in self.items.scan_prefix(seq.to_be_bytes()) {
            let (k, v) = kv?;
            if let Some((_, e)) = decode(&k, &v) {
                entries.push(e);
            }
        }
        Ok(summarize(seq, &entries))
    }

    /// Every item heard, by seq then day, without its sender.
    pub(crate) fn heard(&self) -> Result<Vec<Heard>, RecordError> {
        let actions_of = |bits: u8| -> Vec<Action> {
            [(BLOCKED, Action::Blocked), (CLOSED, Action::Closed)]
                .into_iter()
                .filter(|(bit, _)| bits & bit != 0)
                .map(|(_, a)| a)
                .collect()
        };
        let mut out = Vec::new();
        // A named sender once per indicator and outcome (entries of earlier
        // records, one per day, merged): its first day, its actions.
        let mut named: BTreeMap<(u64, u8, Vec<u8>), (i64, u8)> = BTreeMap::new();
        for kv in self.items.iter() {
            let (k, v) = kv?;
            let Some((seq, e)) = decode(&k, &v) else {
                continue;
            };
            if !e.relay {
                let m = named
                    .entry((seq, outcome_byte(e.outcome), e.sender))
                    .or_insert((e.day, 0));
                m.0 = m.0.min(e.day);
                m.1 |= e.bits;
                continue;
            }
            out.push(Heard {
                seq,
                outcome: e.outcome,
                actions: actions_of(e.bits),
                day: e.day,
                senders: u64::from(e.count),
                of_outcome: e.bits == 0,
            });
        }
        for ((seq, outcome, _), (day, bits)) in named {
            let Some(outcome) = outcome_of(outcome) else {
                continue;
            };
            out.push(Heard {
                seq,
                outcome,
                actions: actions_of(bits),
                day,
                senders: 1,
                of_outcome: true,
            });
        }
        out.sort_by_key(|h| (h.seq, h.day));
        Ok(out)
    }

    /// Every indicator heard about, by seq.
    pub(crate) fn all(&self) -> Result<Vec<IndicatorOutcomes>, RecordError> {
        let mut out = Vec::new();
        let mut current: Option<(u64, Vec<Entry>)> = None;
        for kv in self.items.iter() {
            let (k, v) = kv?;
            let Some((seq, e)) = decode(&k, &v) else {
                continue;
            };
            match &mut current {
                Some((s, es)) if *s == seq => es.push(e),
                _ => {
                    if let Some((s, es)) = current.take() {
                        out.push(summarize(s, &es));
                    }
                    current = Some((seq, vec![e]));
                }
            }
        }
        if let Some((s, es)) = current {
            out.push(summarize(s, &es));
        }
        Ok(out)
    }

    pub(crate) fn status(&self) -> super::FeedbackStatus {
        super::FeedbackStatus {
            received: self.received.load(Ordering::Relaxed),
            received_refused: self.refused.load(Ordering::Relaxed),
            flagged_for_review: self.flagged.lock().len() as u64,
            ..super::FeedbackStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(seq: u64, day: i64, sender: Sender) -> Received {
        Received {
            seq,
            outcome: FeedbackOutcome::FalsePositive,
            actions: vec![],
            day,
            sender,
        }
    }

    #[test]
    fn entries_of_earlier_records_merge_with_new_ones_by_sender() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::open(dir.path()).unwrap();
        // As earlier records wrote it: seq | outcome | day | `n` | sender.
        let mut old = 7u64.to_be_bytes().to_vec();
        old.push(outcome_byte(FeedbackOutcome::FalsePositive));
        old.extend_from_slice(&day_bytes(20_000));
        old.push(b'n');
        old.extend_from_slice(b"bank-a");
        r.items.insert(old, &relay_value(BLOCKED, 0)).unwrap();
        r.record(&fp(7, 20_002, Sender::Named("bank-a".into())))
            .unwrap();
        let o = r.of(7).unwrap();
        assert_eq!(
            (
                o.false_positives,
                o.false_positive_senders,
                o.blocked,
                o.flagged
            ),
            (1, 1, 1, false)
        );
        assert_eq!((o.first_day, o.last_day), (20_000, 20_002));
        let heard = r.heard().unwrap();
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert_eq!(
            (heard[0].day, heard[0].actions.as_slice()),
            (20_000, [Action::Blocked].as_slice())
        );
    }

    #[test]
    fn retries_count_once_and_two_senders_flag() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::open(dir.path()).unwrap();
        let a = Sender::Named("bank-a".into());
        assert!(r.record(&fp(5, 20_000, a.clone())).unwrap().new);
        assert!(!r.record(&fp(5, 20_000, a.clone())).unwrap().new);
        // Another day of the same sender: its last day moves, and it is
        // still one sender.
        assert!(r.record(&fp(5, 20_001, a.clone())).unwrap().new);
        assert!(
            r.record(&fp(5, 19_990, a.clone())).unwrap().new,
            "an earlier day moves the first day"
        );
        let o = r.of(5).unwrap();
        assert_eq!((o.false_positives, o.false_positive_senders), (1, 1));
        assert_eq!((o.first_day, o.last_day), (19_990, 20_001));
        assert!(!o.flagged);
        let b = Sender::Named("bank-b".into());
        assert!(r.record(&fp(5, 20_000, b)).unwrap().newly_flagged);
        assert!(r.of(5).unwrap().flagged);
        assert_eq!(r.status().flagged_for_review, 1);
        drop(r);
        let r = Records::open(dir.path()).unwrap();
        assert_eq!(r.status().flagged_for_review, 1, "kept across restarts");
        let relay = Sender::Relay {
            relay: "operator".into(),
            count: 2,
        };
        assert!(r.record(&fp(9, 20_000, relay)).unwrap().newly_flagged);
        let mut c = fp(9, 20_000, Sender::Named("bank-a".into()));
        c.outcome = FeedbackOutcome::Confirmed;
        c.actions = vec![Action::Closed, Action::Blocked];
        r.record(&c).unwrap();
        let all = r.all().unwrap();
        assert_eq!(all.iter().map(|o| o.seq).collect::<Vec<_>>(), [5, 9]);
        // One anonymous sender in each of two windows of a relay is not two
        // senders; nor is one through each of two relays.
        let one = |relay: &str| Sender::Relay {
            relay: relay.into(),
            count: 1,
        };
        r.record(&fp(11, 20_000, one("operator"))).unwrap();
        r.record(&fp(11, 20_000 + 30, one("operator"))).unwrap();
        r.record(&fp(11, 20_001, one("operator-2"))).unwrap();
        let o = r.of(11).unwrap();
        assert_eq!(
            (o.false_positives, o.false_positive_senders, o.flagged),
            (3, 1, false)
        );
        // A named sender beside them is a second sender.
        assert!(
            r.record(&fp(11, 20_001, Sender::Named("bank-c".into())))
                .unwrap()
                .newly_flagged
        );
        assert_eq!(
            (all[1].confirmations, all[1].blocked, all[1].closed),
            (1, 1, 1)
        );
    }
}
