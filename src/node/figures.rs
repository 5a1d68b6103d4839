//! The facts the node's records give for the outcome figures
//! ([`crate::report::outcomes`]): indicators held by creation time, hits and
//! first hits from flood control's daily counts, alerts raised from the
//! alert log, the dispositions in force, and on an origin the feedback it
//! received, per case (never who sent it). Each record's module says what it
//! holds; this file only gathers, on the caller's (blocking) thread.

use std::{collections::HashMap, sync::Arc};

use super::NodeState;
use crate::{
    alerts::log::{Action as AlertAction, AlertLogError},
    dispositions::{DispositionError, Filter},
    feedback::{record::RecordError, relay::RelayError},
    flood::FloodError,
    index::Held,
    outcome::{utc_day, IndicatorRef, DAY},
    report::outcomes::{aggregate, Fact, Figures, Period, Scope},
};

/// Alert-log events and dispositions read per page while gathering.
const PAGE: usize = 10_000;

/// Why the figures could not be gathered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FiguresError {
    #[error("reading the alert log")]
    AlertLog(#[from] AlertLogError),
    #[error("reading flood control's counts")]
    Flood(#[from] FloodError),
    #[error("reading the dispositions")]
    Dispositions(#[from] DispositionError),
    #[error("reading the feedback received")]
    Feedback(#[from] RecordError),
    #[error("reading the feedback relayed")]
    Relay(#[from] RelayError),
}

impl NodeState {
    /// The outcome figures of `period`, suppressed.
    pub(crate) fn outcome_figures(&self, period: Period) -> Result<Figures, FiguresError> {
        let (from, to) = (period.from * DAY, period.to * DAY + DAY - 1);
        let held = self.index.read().held();
        let mut facts: Vec<Fact> = held
            .iter()
            .filter(|h| (from..=to).contains(&h.created))
            .map(|h| Fact::Contributed {
                kind: h.kind,
                at: h.created,
            })
            .collect();
        // Each indicator held by origin and add entry: what the counts,
        // dispositions and feedback name.
        let known: HashMap<(Arc<str>, u64), &Held> = held
            .iter()
            .map(|h| ((h.origin.clone(), h.seq), h))
            .collect();
        let of = |r: &IndicatorRef| {
            known
                .get(&(r.origin.clone(), r.seq))
                .map(|h| (h.kind, h.created))
        };

        let hits = self
            .flood
            .figures(period.from, period.to, self.clock.now())?;
        for d in &hits.by_day {
            if let Some((kind, _)) = of(&d.about) {
                facts.push(Fact::Hits {
                    kind,
                    day: d.day,
                    count: d.hits,
                });
            }
        }
        for (r, at) in &hits.first_hit {
            if let Some((kind, created)) = of(r) {
                facts.push(Fact::FirstHit {
                    kind,
                    day: utc_day(*at),
                    delay: at - created,
                });
            }
        }

        let mut after = 0;
        loop {
            let page = self.alert_log.read(after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.number;
            facts.extend(
                page.iter()
                    .filter(|e| e.action == AlertAction::Raised)
                    .map(|e| Fact::AlertRaised {
                        kind: e.kind,
                        day: utc_day(e.recorded),
                    }),
            );
        }

        let in_force = Filter {
            in_force_only: true,
            ..Filter::default()
        };
        let mut after = 0;
        loop {
            let page = self.dispositions.list(after, PAGE, &in_force)?;
            let Some((last, _)) = page.last() else { break };
            after = last.id;
            for (r, _) in &page {
                let about = IndicatorRef {
                    origin: r.about.origin.as_str().into(),
                    seq: r.about.seq,
                };
                if let Some((kind, _)) = of(&about) {
                    facts.push(Fact::Disposed {
                        kind,
                        day: utc_day(r.recorded),
                        disposition: r.outcome.disposition,
                        actions: r.outcome.actions.clone(),
                    });
                }
            }
        }
        let case_of = |origin: &Arc<str>, seq: u64| {
            known.get(&(origin.clone(), seq)).map_or_else(
                || "(no longer held)".to_string(),
                |i| i.case_ref.to_string(),
            )
        };
        // As an operator: the anonymous feedback it relayed, per origin and
        // case (counts of senders only; it keeps no sender).
        let relayed = match &self.feedback_state.relay {
            Some(r) => r.relayed()?,
            None => Vec::new(),
        };
        // As an origin: what this node heard about its own indicators.
        let own: Arc<str> = self.node_id.as_str().into();
        let heard = self.feedback_state.records.heard()?;
        let scope = if !relayed.is_empty() {
            Scope::Operator
        } else if !heard.is_empty() {
            Scope::Origin
        } else {
            Scope::Node
        };
        for r in relayed {
            let origin: Arc<str> = r.origin.as_str().into();
            facts.push(Fact::Feedback {
                case: format!("{}: {}", r.origin, case_of(&origin, r.seq)),
                day: r.day,
                outcome: r.outcome,
                actions: r.action.into_iter().collect(),
                senders: r.senders,
                of_outcome: r.action.is_none(),
            });
        }
        for h in heard {
            facts.push(Fact::Feedback {
                case: case_of(&own, h.seq),
                day: h.day,
                outcome: h.outcome,
                actions: h.actions,
                senders: h.senders,
                of_outcome: h.of_outcome,
            });
        }
        Ok(aggregate(&self.node_id, scope, period, facts))
    }
}
