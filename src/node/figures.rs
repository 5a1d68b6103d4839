//! The facts the node's records give for the outcome figures
//! ([`crate::report::outcomes`]): indicators held by creation time, alerts
//! raised from the alert log. Each record's module says what it holds; this
//! file only gathers.

use super::NodeState;
use crate::{
    alerts::log::{Action as AlertAction, AlertLogError},
    outcome::{utc_day, DAY},
    report::outcomes::{aggregate, Fact, Figures, Period, Scope},
};

/// Alert-log events read per page while gathering.
const PAGE: usize = 10_000;

impl NodeState {
    /// The outcome figures of `period`, suppressed.
    pub(crate) fn outcome_figures(&self, period: Period) -> Result<Figures, AlertLogError> {
        let (from, to) = (period.from * DAY, period.to * DAY + DAY - 1);
        let mut facts: Vec<Fact> = self
            .index
            .read()
            .created_within(from, to)
            .into_iter()
            .map(|(kind, at)| Fact::Contributed { kind, at })
            .collect();
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
        Ok(aggregate(&self.node_id, Scope::Node, period, facts))
    }
}
