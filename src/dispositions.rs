//! The bank's dispositions: what its analysts concluded about an alert or
//! a hit (a [`Disposition`], the [`Action`]s taken, an optional reference
//! into the bank's own case system), each a numbered record in its own
//! sled database (`<data_dir>/dispositions`), opened by the node and handed
//! here. A later record on the same target replaces the earlier as the one
//! in force; every record is kept (the history).
//!
//! A record whose target names a watch entry (an alert, or a hit given the
//! watch reference it matched) is also about a (watch entry, origin, case
//! reference) triple: when its disposition [settles](Disposition::settles)
//! the triple, the alert engine never raises an alert for it again
//! ([`Dispositions::is_settled`], in memory, read back at open); a later
//! `under_review` on the triple unsettles it.
//!
//! Nothing here is free text: a case-system reference follows the rules of
//! a case reference ([`batch::is_label`]). Records hold the bank's own
//! watch references (as the alert log does), never a raw identifier or a
//! token; errors name fields and rules, never a value.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use parking_lot::{Mutex, RwLock};
use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::{
    batch,
    outcome::{Action, Disposition},
    proto,
};

/// A (watch entry, origin, case reference) triple: one alert's identity.
pub(crate) type Triple = (u32, Arc<str>, Arc<str>);

/// The meta record of the next record id.
const NEXT: &[u8] = b"next";

/// What a disposition is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// An alert id of this node's alert log.
    Alert(u64),
    /// A hit the analyst chose: the indicator (origin, sequence number of
    /// its add entry) and, optionally, the watch reference it matched.
    Hit {
        origin: String,
        seq: u64,
        watch_reference: Option<String>,
    },
}

impl Target {
    /// The key of the target's record in force.
    fn key(&self) -> Vec<u8> {
        match self {
            Target::Alert(a) => [b"a".as_slice(), &a.to_be_bytes()].concat(),
            Target::Hit {
                origin,
                seq,
                watch_reference,
            } => {
                let mut k = vec![b'h'];
                k.extend_from_slice(&seq.to_be_bytes());
                k.extend_from_slice(&(origin.len() as u16).to_be_bytes());
                k.extend_from_slice(origin.as_bytes());
                k.extend_from_slice(watch_reference.as_deref().unwrap_or("").as_bytes());
                k
            }
        }
    }

    /// The protobuf form.
    pub(crate) fn to_proto(&self) -> proto::DispositionTarget {
        use proto::disposition_target::Target as T;
        proto::DispositionTarget {
            target: Some(match self {
                Target::Alert(a) => T::Alert(*a),
                Target::Hit {
                    origin,
                    seq,
                    watch_reference,
                } => T::Hit(proto::HitTarget {
                    origin: origin.clone(),
                    seq: *seq,
                    watch_reference: watch_reference.clone().unwrap_or_default(),
                }),
            }),
        }
    }

    /// The target of a protobuf form, checked field by field (but for the
    /// member-id rule of a hit's origin, which the API checks).
    pub(crate) fn from_proto(
        p: Option<&proto::DispositionTarget>,
    ) -> Result<Target, DispositionError> {
        use proto::disposition_target::Target as T;
        match p.and_then(|t| t.target.as_ref()) {
            None => Err(invalid("target", "an alert or a hit is required")),
            Some(T::Alert(0)) => Err(invalid("target.alert", "alert ids start at 1")),
            Some(T::Alert(a)) => Ok(Target::Alert(*a)),
            Some(T::Hit(h)) => {
                // The member-id rule is the trust list's (a floor above):
                // the API checks it first; here only the bound.
                if h.origin.is_empty() || h.origin.len() > 64 {
                    return Err(invalid("target.hit.origin", "1 to 64 characters"));
                }
                if h.seq == 0 {
                    return Err(invalid("target.hit.seq", "sequence numbers start at 1"));
                }
                let watch_reference = (!h.watch_reference.is_empty())
                    .then(|| h.watch_reference.clone())
                    .map(|r| {
                        if r.len() > MAX_WATCH_REFERENCE || r.chars().any(char::is_control) {
                            Err(invalid(
                                "target.hit.watch_reference",
                                format!(
                                    "at most {MAX_WATCH_REFERENCE} bytes, no control characters"
                                ),
                            ))
                        } else {
                            Ok(r)
                        }
                    })
                    .transpose()?;
                Ok(Target::Hit {
                    origin: h.origin.clone(),
                    seq: h.seq,
                    watch_reference,
                })
            }
        }
    }
}

/// The longest watch reference a hit target may name (a longer one names
/// no watch entry: the watchlist refuses them).
const MAX_WATCH_REFERENCE: usize = 256;

/// The words of a disposition, checked: the disposition, its actions
/// (sorted, once each) and the optional case-system reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub disposition: Disposition,
    pub actions: Vec<Action>,
    pub case_system_ref: Option<String>,
}

impl Outcome {
    /// Parses the request's words: every one from its fixed list, the
    /// case-system reference under the rules of a case reference.
    pub(crate) fn parse(
        disposition: &str,
        actions: &[String],
        case_system_ref: &str,
    ) -> Result<Outcome, DispositionError> {
        let names = |all: &[&str]| all.join(", ");
        let disposition = Disposition::parse(disposition).ok_or_else(|| {
            invalid(
                "disposition",
                format!(
                    "must be one of {}",
                    names(&Disposition::ALL.map(Disposition::as_str))
                ),
            )
        })?;
        if actions.len() > Action::ALL.len() {
            return Err(invalid(
                "actions",
                format!("at most {} actions", Action::ALL.len()),
            ));
        }
        let mut parsed = Vec::with_capacity(actions.len());
        for a in actions {
            parsed.push(Action::parse(a).ok_or_else(|| {
                invalid(
                    "actions",
                    format!(
                        "each must be one of {}",
                        names(&Action::ALL.map(Action::as_str))
                    ),
                )
            })?);
        }
        parsed.sort();
        parsed.dedup();
        let case_system_ref = match case_system_ref {
            "" => None,
            s if batch::is_label(s) => Some(s.to_string()),
            _ => return Err(invalid("case_system_ref", batch::LABEL_RULE)),
        };
        Ok(Outcome {
            disposition,
            actions: parsed,
            case_system_ref,
        })
    }
}

/// What a target resolved to: the indicator it is about and, when it names
/// a watch entry, the triple it may settle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct About {
    pub origin: String,
    pub seq: u64,
    pub case_ref: String,
    /// The watch entry's reference ("" for a hit given none).
    pub watch_reference: String,
    pub entry: Option<u32>,
}

/// One recorded disposition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub id: u64,
    pub target: Target,
    pub outcome: Outcome,
    /// Unix seconds, node clock.
    pub recorded: i64,
    pub about: About,
}

impl Record {
    /// The protobuf form (on the wire and, inside [`proto::StoredDisposition`], on disk).
    pub(crate) fn to_proto(&self, in_force: bool) -> proto::DispositionRecord {
        proto::DispositionRecord {
            id: self.id,
            target: Some(self.target.to_proto()),
            disposition: self.outcome.disposition.as_str().into(),
            actions: self
                .outcome
                .actions
                .iter()
                .map(|a| a.as_str().into())
                .collect(),
            case_system_ref: self.outcome.case_system_ref.clone().unwrap_or_default(),
            recorded_at: Some(prost_types::Timestamp {
                seconds: self.recorded,
                nanos: 0,
            }),
            origin: self.about.origin.clone(),
            seq: self.about.seq,
            case_ref: self.about.case_ref.clone(),
            watch_reference: self.about.watch_reference.clone(),
            in_force,
        }
    }

    fn encode(&self) -> Vec<u8> {
        proto::StoredDisposition {
            record: Some(self.to_proto(false)),
            entry: self.about.entry.map_or(0, |e| u64::from(e) + 1),
        }
        .encode_to_vec()
    }

    fn decode(id: u64, b: &[u8]) -> Result<Record, DispositionError> {
        let corrupt = || DispositionError::Corrupt(id);
        let s = proto::StoredDisposition::decode(b).map_err(|_| corrupt())?;
        let r = s.record.ok_or_else(corrupt)?;
        let target = Target::from_proto(r.target.as_ref()).map_err(|_| corrupt())?;
        let outcome = Outcome::parse(&r.disposition, &r.actions, &r.case_system_ref)
            .map_err(|_| corrupt())?;
        let entry = match s.entry {
            0 => None,
            e => Some(u32::try_from(e - 1).map_err(|_| corrupt())?),
        };
        Ok(Record {
            id: r.id,
            target,
            outcome,
            recorded: r.recorded_at.map_or(0, |t| t.seconds),
            about: About {
                origin: r.origin,
                seq: r.seq,
                case_ref: r.case_ref,
                watch_reference: r.watch_reference,
                entry,
            },
        })
    }

    fn triple(&self) -> Option<Triple> {
        let a = &self.about;
        a.entry
            .map(|e| (e, a.origin.as_str().into(), a.case_ref.as_str().into()))
    }
}

/// Which records a list returns.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub alert: Option<u64>,
    pub hit: Option<(String, u64)>,
    pub disposition: Option<Disposition>,
    pub in_force_only: bool,
}

impl Filter {
    fn admits(&self, r: &Record, in_force: bool) -> bool {
        let target_ok = match (&self.alert, &self.hit, &r.target) {
            (Some(a), _, Target::Alert(b)) => a == b,
            (Some(_), _, _) => false,
            (None, Some((o, s)), Target::Hit { origin, seq, .. }) => o == origin && s == seq,
            (None, Some(_), _) => false,
            (None, None, _) => true,
        };
        target_ok
            && self.disposition.is_none_or(|d| d == r.outcome.disposition)
            && (in_force || !self.in_force_only)
    }
}

/// The dispositions' figures, for Status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DispositionCounts {
    /// Records kept, replaced ones included.
    pub recorded: u64,
    /// Targets whose record in force says `confirmed`, and `false_positive`.
    pub confirmed: u64,
    pub false_positive: u64,
    /// Triples settled now.
    pub settled: u64,
    /// Raises skipped for a settled triple since the start.
    pub not_raised: u64,
    /// Records refused since the start because feedback was not queued.
    pub feedback_failed: u64,
}

/// Why a disposition was not recorded or read.
#[derive(Debug, thiserror::Error)]
pub enum DispositionError {
    /// A request field breaks a rule; nothing was recorded.
    #[error("{field}: {rule}")]
    Invalid { field: &'static str, rule: String },
    /// The target names nothing this node knows; nothing was recorded.
    #[error("{field}: {what}")]
    NotFound {
        field: &'static str,
        what: &'static str,
    },
    #[error("the dispositions' database")]
    Db(#[from] sled::Error),
    #[error("disposition record {0} does not decode")]
    Corrupt(u64),
}

fn invalid(field: &'static str, rule: impl Into<String>) -> DispositionError {
    DispositionError::Invalid {
        field,
        rule: rule.into(),
    }
}

fn transaction_error(e: TransactionError<DispositionError>) -> DispositionError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => DispositionError::Db(e),
    }
}

fn triple_key(t: &Triple) -> Vec<u8> {
    let mut k = t.0.to_be_bytes().to_vec();
    k.extend_from_slice(&(t.1.len() as u16).to_be_bytes());
    k.extend_from_slice(t.1.as_bytes());
    k.extend_from_slice(t.2.as_bytes());
    k
}

fn id_of(b: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes)
}

/// In-force counts by disposition (under_review, confirmed, false_positive).
type ByDisposition = [u64; 3];

fn slot(d: Disposition) -> usize {
    match d {
        Disposition::UnderReview => 0,
        Disposition::Confirmed => 1,
        Disposition::FalsePositive => 2,
    }
}

/// The bank's dispositions. `Send + Sync`; records are written one at a time.
pub(crate) struct Dispositions {
    db: sled::Db,
    records: sled::Tree,
    /// Target key → id of its record in force.
    in_force: sled::Tree,
    /// Triple key → id of the newest record about it.
    triples: sled::Tree,
    meta: sled::Tree,
    settled: RwLock<HashSet<Triple>>,
    in_force_counts: Mutex<ByDisposition>,
    recorded: AtomicU64,
    not_raised: AtomicU64,
    feedback_failed: AtomicU64,
    writing: Mutex<()>,
}

impl Dispositions {
    /// Reads the dispositions of `db` (the node's `<data_dir>/dispositions`)
    /// back: the triples settled and the counts.
    pub(crate) fn open(db: sled::Db) -> Result<Dispositions, DispositionError> {
        let d = Dispositions {
            records: db.open_tree("records")?,
            in_force: db.open_tree("in_force")?,
            triples: db.open_tree("triples")?,
            meta: db.open_tree("meta")?,
            db,
            settled: RwLock::default(),
            in_force_counts: Mutex::default(),
            recorded: AtomicU64::new(0),
            not_raised: AtomicU64::new(0),
            feedback_failed: AtomicU64::new(0),
            writing: Mutex::new(()),
        };
        d.recorded.store(d.records.len() as u64, Ordering::Relaxed);
        let mut counts = ByDisposition::default();
        for r in d.in_force.iter() {
            let (_, id) = r?;
            let id = id_of(&id).ok_or(DispositionError::Corrupt(0))?;
            counts[slot(d.get(id)?.outcome.disposition)] += 1;
        }
        *d.in_force_counts.lock() = counts;
        let mut settled = HashSet::new();
        for r in d.triples.iter() {
            let (_, id) = r?;
            let id = id_of(&id).ok_or(DispositionError::Corrupt(0))?;
            let rec = d.get(id)?;
            if rec.outcome.disposition.settles() {
                settled.extend(rec.triple());
            }
        }
        *d.settled.write() = settled;
        Ok(d)
    }

    fn get(&self, id: u64) -> Result<Record, DispositionError> {
        let v = self
            .records
            .get(id.to_be_bytes())?
            .ok_or(DispositionError::Corrupt(id))?;
        Record::decode(id, &v)
    }

    /// The record in force for `target`, if any.
    pub(crate) fn in_force(&self, target: &Target) -> Result<Option<Record>, DispositionError> {
        match self.in_force.get(target.key())? {
            Some(id) => {
                let id = id_of(&id).ok_or(DispositionError::Corrupt(0))?;
                self.get(id).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Records `outcome` on `target` (resolved to `about`) at `now`, as the
    /// one in force for the target and, if it names a watch entry, for its
    /// triple; durable (flushed) before it returns.
    pub(crate) fn record(
        &self,
        target: Target,
        outcome: Outcome,
        about: About,
        now: i64,
    ) -> Result<Record, DispositionError> {
        let _writing = self.writing.lock();
        let id = match self.meta.get(NEXT)? {
            Some(v) => id_of(&v).ok_or(DispositionError::Corrupt(0))?,
            None => 1,
        };
        let rec = Record {
            id,
            target,
            outcome,
            recorded: now,
            about,
        };
        let previous = self.in_force(&rec.target)?;
        let bytes = rec.encode();
        let tkey = rec.target.key();
        let triple = rec.triple();
        let triple_key = triple.as_ref().map(triple_key);
        (&self.records, &self.in_force, &self.triples, &self.meta)
            .transaction(|(records, in_force, triples, meta)| {
                records.insert(&id.to_be_bytes(), bytes.as_slice())?;
                in_force.insert(tkey.as_slice(), &id.to_be_bytes())?;
                if let Some(k) = &triple_key {
                    triples.insert(k.as_slice(), &id.to_be_bytes())?;
                }
                meta.insert(NEXT, &(id + 1).to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<DispositionError>>(())
            })
            .map_err(transaction_error)?;
        self.db.flush()?;
        self.recorded.fetch_add(1, Ordering::Relaxed);
        {
            let mut c = self.in_force_counts.lock();
            if let Some(p) = &previous {
                c[slot(p.outcome.disposition)] -= 1;
            }
            c[slot(rec.outcome.disposition)] += 1;
        }
        if let Some(t) = triple {
            let mut s = self.settled.write();
            if rec.outcome.disposition.settles() {
                s.insert(t);
            } else {
                s.remove(&t);
            }
        }
        Ok(rec)
    }

    /// Whether the triple is settled: the engine raises no alert for it.
    pub(crate) fn is_settled(&self, t: &Triple) -> bool {
        self.settled.read().contains(t)
    }

    /// Counts one raise skipped for a settled triple.
    pub(crate) fn not_raised(&self) {
        self.not_raised.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one record refused because its feedback was not queued.
    pub(crate) fn feedback_failed(&self) {
        self.feedback_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Records with id > `after` that `filter` admits, at most `limit`,
    /// each with whether it is in force.
    pub(crate) fn list(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<(Record, bool)>, DispositionError> {
        let mut out = Vec::new();
        for r in self.records.range(after.saturating_add(1).to_be_bytes()..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = r?;
            let id = id_of(&k).ok_or(DispositionError::Corrupt(0))?;
            let rec = Record::decode(id, &v)?;
            let in_force = self
                .in_force
                .get(rec.target.key())?
                .is_some_and(|v| id_of(&v) == Some(id));
            if filter.admits(&rec, in_force) {
                out.push((rec, in_force));
            }
        }
        Ok(out)
    }

    /// The newest record id (0 when none).
    pub(crate) fn newest(&self) -> Result<u64, DispositionError> {
        Ok(self
            .meta
            .get(NEXT)?
            .and_then(|v| id_of(&v))
            .map_or(0, |n| n - 1))
    }

    /// The figures now.
    pub(crate) fn counts(&self) -> DispositionCounts {
        let c = *self.in_force_counts.lock();
        DispositionCounts {
            recorded: self.recorded.load(Ordering::Relaxed),
            confirmed: c[1],
            false_positive: c[2],
            settled: self.settled.read().len() as u64,
            not_raised: self.not_raised.load(Ordering::Relaxed),
            feedback_failed: self.feedback_failed.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about(entry: Option<u32>) -> About {
        About {
            origin: "liaison".into(),
            seq: 7,
            case_ref: "CASE-1".into(),
            watch_reference: "CUST-1".into(),
            entry,
        }
    }

    fn outcome(d: &str, actions: &[&str]) -> Outcome {
        let actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
        Outcome::parse(d, &actions, "").unwrap()
    }

    #[test]
    fn the_words_are_checked_field_by_field() {
        let err = |d: &str, a: &[&str], c: &str| {
            let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            Outcome::parse(d, &a, c).unwrap_err().to_string()
        };
        assert!(err("confirmd", &[], "").starts_with("disposition: must be one of"));
        assert!(err("confirmed", &["frozen"], "").starts_with("actions: each must be one of"));
        assert_eq!(
            err("confirmed", &[], "tab\there"),
            format!("case_system_ref: {}", batch::LABEL_RULE)
        );
        assert!(err("confirmed", &[], &"x".repeat(129)).starts_with("case_system_ref"));
        let o = Outcome::parse(
            "false_positive",
            &["closed".into(), "blocked".into(), "closed".into()],
            "SAR-2026-0042",
        )
        .unwrap();
        assert_eq!(o.actions, vec![Action::Blocked, Action::Closed]);
        assert_eq!(o.case_system_ref.as_deref(), Some("SAR-2026-0042"));
        assert!(Target::from_proto(None).is_err());
        let hit = proto::DispositionTarget {
            target: Some(proto::disposition_target::Target::Hit(proto::HitTarget {
                origin: String::new(),
                seq: 1,
                watch_reference: String::new(),
            })),
        };
        assert!(Target::from_proto(Some(&hit))
            .unwrap_err()
            .to_string()
            .starts_with("target.hit.origin"));
    }

    #[test]
    fn a_later_record_replaces_the_earlier_and_settling_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Dispositions::open(sled::open(dir.path()).unwrap()).unwrap();
        let triple: Triple = (3, "liaison".into(), "CASE-1".into());
        {
            let d = open();
            let a = d
                .record(
                    Target::Alert(1),
                    outcome("under_review", &[]),
                    about(Some(3)),
                    100,
                )
                .unwrap();
            assert_eq!(a.id, 1);
            assert!(!d.is_settled(&triple), "under_review stops nothing");
            d.record(
                Target::Alert(1),
                outcome("confirmed", &["reported", "blocked"]),
                about(Some(3)),
                200,
            )
            .unwrap();
            assert!(d.is_settled(&triple));
            let hit = Target::Hit {
                origin: "liaison".into(),
                seq: 7,
                watch_reference: None,
            };
            d.record(hit, outcome("false_positive", &[]), about(None), 300)
                .unwrap();
            let c = d.counts();
            assert_eq!(
                (c.recorded, c.confirmed, c.false_positive, c.settled),
                (3, 1, 1, 1)
            );
        }
        let d = open();
        assert!(d.is_settled(&triple), "read back at open");
        let c = d.counts();
        assert_eq!(
            (c.recorded, c.confirmed, c.false_positive, c.settled),
            (3, 1, 1, 1)
        );
        let all = d.list(0, 10, &Filter::default()).unwrap();
        assert_eq!(
            all.iter().map(|(r, f)| (r.id, *f)).collect::<Vec<_>>(),
            vec![(1, false), (2, true), (3, true)]
        );
        assert_eq!(
            all[1].0.outcome.actions,
            vec![Action::Reported, Action::Blocked]
        );
        let only = Filter {
            alert: Some(1),
            in_force_only: true,
            ..Filter::default()
        };
        assert_eq!(d.list(0, 10, &only).unwrap().len(), 1);
        assert_eq!(d.newest().unwrap(), 3);
        // A later under_review on the triple unsettles it.
        d.record(
            Target::Alert(1),
            outcome("under_review", &[]),
            about(Some(3)),
            400,
        )
        .unwrap();
        assert!(!d.is_settled(&triple));
        assert_eq!(d.counts().confirmed, 0);
    }
}
