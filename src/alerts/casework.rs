//! Casework on alerts and hits: recording a bank's disposition (the target
//! resolved against the alert engine's state, the index and the watchlist;
//! the feedback it gives handed to the node's sink; the record kept in
//! [`crate::dispositions`]), and the case package a bank files with its
//! financial intelligence unit.
//!
//! Feedback is queued *before* the record is written: a sink that refuses
//! fails the call and nothing is recorded, so a disposition in force has
//! always had its feedback queued (a record written after a queued feedback
//! that then fails to write is retried by the analyst, and the origin hears
//! the same outcome twice, which it counts once per sender). A disposition
//! that repeats the outcome and the actions that may leave of the one in
//! force for its target queues nothing again.

use parking_lot::RwLock;

use crate::{
    alerts::{
        engine::alert_of,
        log::{AlertLog, AlertLogError},
    },
    dispositions::{About, DispositionError, Dispositions, Outcome, Record, Target},
    index::Index,
    outcome::{leaving, utc_day, FeedbackOutcome, FeedbackSink, IndicatorRef, QueueError},
    time::format_time,
    trust::state::TrustState,
    watchlist::{WatchError, Watchlist},
};

/// Why casework failed.
#[derive(Debug, thiserror::Error)]
pub enum CaseworkError {
    #[error(transparent)]
    Disposition(#[from] DispositionError),
    #[error(transparent)]
    AlertLog(#[from] AlertLogError),
    #[error("watchlist")]
    Watchlist(#[from] WatchError),
    #[error(transparent)]
    Feedback(#[from] QueueError),
}

/// What casework reads and writes.
pub(crate) struct Casework<'a> {
    pub log: &'a AlertLog,
    pub index: &'a RwLock<Index>,
    pub watchlist: Option<&'a Watchlist>,
    pub dispositions: &'a Dispositions,
    pub feedback: &'a dyn FeedbackSink,
    pub trust: Option<&'a TrustState>,
    pub node_id: &'a str,
}

/// An indicator's metadata as a case package shows it.
struct Meta {
    kind: &'static str,
    tier: &'static str,
    created: i64,
    valid_until: Option<i64>,
    epoch: u32,
}

fn not_found(field: &'static str, what: &'static str) -> CaseworkError {
    DispositionError::NotFound { field, what }.into()
}

impl Casework<'_> {
    /// What `target` is about, and its indicator's metadata.
    fn resolve(&self, target: &Target) -> Result<(About, Meta), CaseworkError> {
        match target {
            Target::Alert(a) => {
                let v = alert_of(self.log, *a)?.ok_or_else(|| {
                    not_found("target.alert", "no alert of this node has this id")
                })?;
                Ok((
                    About {
                        origin: v.origin,
                        seq: v.seq,
                        case_ref: v.case_ref,
                        watch_reference: v.reference,
                        entry: Some(v.entry),
                    },
                    Meta {
                        kind: v.kind.as_str(),
                        tier: v.tier.as_str(),
                        created: v.created,
                        valid_until: v.valid_until,
                        epoch: v.epoch,
                    },
                ))
            }
            Target::Hit {
                origin,
                seq,
                watch_reference,
            } => {
                let i = self.index.read().by_seq(origin, *seq).ok_or_else(|| {
                    not_found(
                        "target.hit",
                        "this node holds no indicator of this origin and sequence number",
                    )
                })?;
                let entry = match watch_reference {
                    None => None,
                    Some(r) => {
                        let wl = self.watchlist.ok_or_else(|| {
                            CaseworkError::from(DispositionError::Invalid {
                                field: "target.hit.watch_reference",
                                rule: "this node keeps no watchlist".into(),
                            })
                        })?;
                        let matching = wl.lookup(&wl.hash(&i.token));
                        let e = wl
                            .of_reference(r)?
                            .into_iter()
                            .find(|e| matching.contains(&e.id))
                            .ok_or_else(|| {
                                not_found(
                                    "target.hit.watch_reference",
                                    "no watch entry of this reference matches the indicator",
                                )
                            })?;
                        Some(e.id)
                    }
                };
                Ok((
                    About {
                        origin: i.origin.to_string(),
                        seq: i.seq,
                        case_ref: i.case_ref.to_string(),
                        watch_reference: watch_reference.clone().unwrap_or_default(),
                        entry,
                    },
                    Meta {
                        kind: i.kind.as_str(),
                        tier: i.tier.as_str(),
                        created: i.created,
                        valid_until: i.valid_until,
                        epoch: i.epoch,
                    },
                ))
            }
        }
    }

    /// Records `outcome` on `target` at `now` (see the module header for
    /// the order of feedback and record).
    pub(crate) fn record(
        &self,
        target: Target,
        outcome: Outcome,
        now: i64,
    ) -> Result<Record, CaseworkError> {
        let (about, _) = self.resolve(&target)?;
        if let Some(fo) = FeedbackOutcome::of(outcome.disposition) {
            let leaves = leaving(&outcome.actions);
            let repeated = self.dispositions.in_force(&target)?.is_some_and(|p| {
                p.outcome.disposition == outcome.disposition
                    && leaving(&p.outcome.actions) == leaves
            });
            if !repeated {
                let about = IndicatorRef {
                    origin: about.origin.as_str().into(),
                    seq: about.seq,
                };
                if let Err(e) = self.feedback.send(&about, fo, &leaves, utc_day(now)) {
                    self.dispositions.feedback_failed();
                    return Err(e.into());
                }
            }
        }
        Ok(self.dispositions.record(target, outcome, about, now)?)
    }

    /// The case package of `target` at `now`: the indicator's metadata, the
    /// contributor's name and contact from the trust list in force, the case
    /// reference, and the disposition in force (if any). Never a raw value
    /// or a token.
    pub(crate) fn case_package(
        &self,
        target: &Target,
        now: i64,
    ) -> Result<serde_json::Value, CaseworkError> {
        let (about, meta) = self.resolve(target)?;
        let list = self.trust.map(|t| t.current());
        let member = list
            .as_ref()
            .and_then(|l| l.body().members.iter().find(|m| m.id == about.origin));
        let disposition = self.dispositions.in_force(target)?.map(|r| {
            serde_json::json!({
                "disposition": r.outcome.disposition.as_str(),
                "actions": r.outcome.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                "case_system_ref": r.outcome.case_system_ref,
                "recorded_at": format_time(r.recorded),
            })
        });
        let target = match target {
            Target::Alert(a) => serde_json::json!({ "alert": a }),
            Target::Hit {
                origin,
                seq,
                watch_reference,
            } => serde_json::json!({ "hit": {
                "origin": origin, "seq": seq, "watch_reference": watch_reference,
            }}),
        };
        Ok(serde_json::json!({
            "format": "cix-case-package-1",
            "node": self.node_id,
            "generated_at": format_time(now),
            "target": target,
            "indicator": {
                "origin": about.origin,
                "seq": about.seq,
                "kind": meta.kind,
                "tier": meta.tier,
                "created_at": format_time(meta.created),
                "valid_until": meta.valid_until.map(format_time),
                "epoch": meta.epoch,
            },
            "contributor": {
                "member": about.origin,
                "name": member.map(|m| m.name.clone()),
                "contact": member.map(|m| m.contact.clone()).filter(|c| !c.is_empty()),
            },
            "case_ref": about.case_ref,
            "watch_reference": about.watch_reference,
            "disposition": disposition,
        }))
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;
    use prost::Message;

    use super::*;
    use crate::{
        outcome::{Action, Disposition},
        proto,
    };

    /// One feedback as a sink was handed it.
    type Sent = (IndicatorRef, FeedbackOutcome, Vec<Action>, i64);

    /// A sink that keeps what it is handed, or refuses everything.
    #[derive(Default)]
    struct Sink {
        refuse: bool,
        sent: Mutex<Vec<Sent>>,
    }

    impl FeedbackSink for Sink {
        fn send(
            &self,
            about: &IndicatorRef,
            outcome: FeedbackOutcome,
            actions: &[Action],
            day: i64,
        ) -> Result<(), QueueError> {
            if self.refuse {
                return Err(QueueError("the queue is full".into()));
            }
            self.sent
                .lock()
                .push((about.clone(), outcome, actions.to_vec(), day));
            Ok(())
        }
    }

    /// An alert log holding alert 5's last state (entry 2, liaison, seq 9).
    fn log_with_alert(dir: &std::path::Path) -> AlertLog {
        let log = AlertLog::open(&dir.join("alerts")).unwrap();
        let open = proto::OpenAlert {
            alert: 5,
            entry: 2,
            origin: "liaison".into(),
            case_ref: "CASE-1".into(),
            watch_reference: "CUST-1".into(),
            kind: i32::from(crate::ident::Kind::Email.code()),
            tier: 1,
            seq: 9,
            ..Default::default()
        };
        let key = [&b"a"[..], &5u64.to_be_bytes()].concat();
        log.append(vec![], vec![(key, Some(open.encode_to_vec()))])
            .unwrap();
        log
    }

    #[test]
    fn feedback_is_queued_before_the_record_and_a_refusal_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with_alert(dir.path());
        let index = RwLock::new(Index::new());
        let dispositions =
            Dispositions::open(sled::Config::new().temporary(true).open().unwrap()).unwrap();
        let refusing = Sink {
            refuse: true,
            ..Sink::default()
        };
        let keeping = Sink::default();
        let work = |feedback: &Sink| {
            let cw = Casework {
                log: &log,
                index: &index,
                watchlist: None,
                dispositions: &dispositions,
                feedback,
                trust: None,
                node_id: "bank",
            };
            let o =
                Outcome::parse("confirmed", &["reported".into(), "blocked".into()], "").unwrap();
            cw.record(Target::Alert(5), o, 3 * 86_400 + 10)
        };
        assert!(matches!(work(&refusing), Err(CaseworkError::Feedback(_))));
        let c = dispositions.counts();
        assert_eq!((c.recorded, c.feedback_failed), (0, 1));
        let r = work(&keeping).unwrap();
        assert_eq!(r.outcome.disposition, Disposition::Confirmed);
        assert_eq!((r.about.entry, r.about.seq), (Some(2), 9));
        // The same outcome again queues nothing more.
        work(&keeping).unwrap();
        let sent = keeping.sent.lock();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0],
            (
                IndicatorRef {
                    origin: "liaison".into(),
                    seq: 9
                },
                FeedbackOutcome::Confirmed,
                vec![Action::Blocked],
                3
            ),
            "`reported` never leaves"
        );
        assert!(dispositions.is_settled(&(2, "liaison".into(), "CASE-1".into())));
        let cw = Casework {
            log: &log,
            index: &index,
            watchlist: None,
            dispositions: &dispositions,
            feedback: &keeping,
            trust: None,
            node_id: "bank",
        };
        assert!(matches!(
            cw.record(
                Target::Alert(6),
                Outcome::parse("under_review", &[], "").unwrap(),
                0
            ),
            Err(CaseworkError::Disposition(
                DispositionError::NotFound { .. }
            ))
        ));
    }
}
