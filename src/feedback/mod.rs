//! Feedback to the contributor: what a member's analysts concluded about an
//! indicator (confirmed, false positive, flood), sent to the indicator's
//! origin only, opt-in per node (`[feedback] mode`, off by default).
//!
//! - [`queue`]: the sender's durable queue (`<data_dir>/feedback`), the
//!   [`crate::outcome::FeedbackSink`] that dispositions and flood control
//!   call; a send returns once the item is on disk;
//! - [`deliver`]: the sender's delivery task, per origin in order over the
//!   peer dialer, removing only what the origin answered;
//! - [`receive`]: the origin's side of `Federation.Feedback`, checking every
//!   item field by field against this node's own origin log;
//! - [`record`]: the origin's record of what it received, per indicator and
//!   sender, idempotent, and which indicators are flagged for review;
//! - [`relay`]: an operator node's relay of anonymous feedback
//!   (`Federation.RelayFeedback`): distinct senders counted by a keyed hash
//!   discarded with its 30-day window, forwarded once a UTC day, shuffled,
//!   under the operator's identity.
//!
//! A feedback item carries the sequence number of the add entry, the
//! outcome, the actions that may leave the bank (never `reported`) and the
//! UTC date; never a token, kind, case reference or watch reference.

pub(crate) mod deliver;
pub mod queue;
pub(crate) mod receive;
pub mod record;
pub(crate) mod relay;

use std::sync::Arc;

use std::path::Path;

use crate::{
    outcome::{Action, FeedbackOutcome, FeedbackSink, NoFeedback},
    proto,
};

pub(crate) use crate::config::FeedbackMode as Mode;

/// The feedback side of a node: its mode, the sender's queue (when on) and
/// the origin's record of what it received.
pub(crate) struct Feedback {
    pub mode: Mode,
    /// Named feedback, to each origin under this node's identity.
    pub queue: Option<Arc<queue::Queue>>,
    /// Anonymous feedback, to the relay.
    pub anonymous: Option<Arc<queue::Queue>>,
    pub records: Arc<record::Records>,
    /// The relay of anonymous feedback: open whenever feedback is on (the
    /// trust list says whether this node is an operator that relays).
    pub relay: Option<Arc<relay::Relay>>,
    /// `[feedback] relay`: the operator that relays this node's anonymous
    /// feedback, when named in the config.
    pub relay_to: Option<String>,
    /// Items each member may send this node as an origin ([`LIMIT`]).
    pub limits: crate::ratelimit::Limiter,
}

/// What one member may send a node, as an origin or as a relay: requests
/// per second with a burst, and items per UTC day. Far above what analysts
/// and flood control give; it bounds what a hostile member can make a node
/// store (each new item is an entry on disk). Kept in memory: a restart
/// starts the day's count afresh.
pub(crate) const LIMIT: crate::ratelimit::Rule = crate::ratelimit::Rule {
    per_second: 10.0,
    burst: 20.0,
    units_per_day: 100_000,
};

/// Feedback counts for Status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FeedbackStatus {
    pub queued: u64,
    pub delivered: u64,
    pub refused: u64,
    pub pending: u64,
    pub received: u64,
    pub received_refused: u64,
    pub flagged_for_review: u64,
    pub relay_received: u64,
    pub relay_forwarded: u64,
    pub relay_pending: u64,
}

/// Why the feedback side could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The sender's queue.
    #[error(transparent)]
    Queue(#[from] queue::QueueOpenError),
    /// The origin's record.
    #[error(transparent)]
    Record(#[from] record::RecordError),
    /// The relay of anonymous feedback.
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
}

impl Feedback {
    /// Opens the record (always: an origin answers what it heard) and,
    /// when feedback is on, the queue.
    pub(crate) fn open(
        data_dir: &Path,
        mode: Mode,
        relay_to: Option<String>,
    ) -> Result<Feedback, OpenError> {
        let on = mode != Mode::Off;
        let relay_dir = data_dir.join(relay::RELAY_DIR);
        // The relay opens whenever its folder exists, feedback on or off, so
        // that its batches already acknowledged are delivered and its past
        // windows deleted; it relays only while on.
        let relay = if on || relay_dir.exists() {
            Some(Arc::new(relay::Relay::open(data_dir)?))
        } else {
            None
        };
        Ok(Feedback {
            mode,
            queue: on
                .then(|| queue::Queue::open(data_dir))
                .transpose()?
                .map(Arc::new),
            anonymous: on
                .then(|| queue::Queue::open_anonymous(data_dir))
                .transpose()?
                .map(Arc::new),
            records: Arc::new(record::Records::open(data_dir)?),
            relay,
            relay_to,
            limits: crate::ratelimit::Limiter::new(),
        })
    }

    /// Each queue with the route its items take: named items to their
    /// origins, anonymous ones to the relay, whatever the mode is now.
    pub(crate) fn deliveries(&self) -> Vec<(Arc<queue::Queue>, deliver::Route)> {
        let mut out = Vec::new();
        if let Some(q) = &self.queue {
            out.push((q.clone(), deliver::Route::Origin));
        }
        if let Some(q) = &self.anonymous {
            out.push((q.clone(), deliver::Route::Relay(self.relay_to.clone())));
        }
        out
    }

    /// The sink dispositions and flood control call: the queue when
    /// feedback is on, else one that drops everything.
    pub(crate) fn sink(&self) -> Arc<dyn FeedbackSink> {
        match (self.mode, &self.queue, &self.anonymous) {
            (Mode::Named, Some(q), _) | (Mode::Anonymous, _, Some(q)) => q.clone(),
            _ => Arc::new(NoFeedback),
        }
    }

    pub(crate) fn status(&self) -> FeedbackStatus {
        let mut s = self.records.status();
        for q in self.queue.iter().chain(&self.anonymous) {
            let c = q.counts();
            s.queued += c.queued;
            s.delivered += c.delivered;
            s.refused += c.refused;
            s.pending += c.pending;
        }
        if let Some(r) = &self.relay {
            let c = r.counts();
            s.relay_received = c.received;
            s.relay_forwarded = c.forwarded;
            s.relay_pending = c.pending;
        }
        s
    }
}

/// One indicator of this node's own log heard about, with its case.
#[derive(Debug, Clone)]
pub(crate) struct OwnOutcome {
    pub case_ref: String,
    pub outcomes: record::IndicatorOutcomes,
}

impl Feedback {
    /// What this node heard about its own indicators (all, or one case's),
    /// by seq, each with the case reference of its add entry.
    pub(crate) fn own_outcomes(
        &self,
        store: &crate::store::Store,
        node_id: &str,
        case_ref: Option<&str>,
    ) -> Result<Vec<OwnOutcome>, OutcomesError> {
        let mut out = Vec::new();
        for o in self.records.all()? {
            let case = store
                .batch_holding(node_id, o.seq)?
                .map(|b| b.header.case_ref.clone())
                .unwrap_or_default();
            if case_ref.is_none_or(|c| c == case) {
                out.push(OwnOutcome {
                    case_ref: case,
                    outcomes: o,
                });
            }
        }
        Ok(out)
    }
}

/// Why the outcomes could not be listed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutcomesError {
    #[error(transparent)]
    Record(#[from] record::RecordError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// An outcome as one byte in the feedback databases' keys.
pub(crate) fn outcome_byte(o: FeedbackOutcome) -> u8 {
    match o {
        FeedbackOutcome::Confirmed => b'c',
        FeedbackOutcome::FalsePositive => b'f',
        FeedbackOutcome::Flood => b'x',
    }
}

/// The outcome of a key byte.
pub(crate) fn outcome_of(b: u8) -> Option<FeedbackOutcome> {
    FeedbackOutcome::ALL
        .into_iter()
        .find(|o| outcome_byte(*o) == b)
}

/// The wire value of an outcome.
pub(crate) fn outcome_to_wire(o: FeedbackOutcome) -> proto::FeedbackOutcome {
    match o {
        FeedbackOutcome::Confirmed => proto::FeedbackOutcome::Confirmed,
        FeedbackOutcome::FalsePositive => proto::FeedbackOutcome::FalsePositive,
        FeedbackOutcome::Flood => proto::FeedbackOutcome::Flood,
    }
}

/// The outcome of a wire value; `None` for unspecified or unknown.
pub(crate) fn outcome_from_wire(v: i32) -> Option<FeedbackOutcome> {
    match proto::FeedbackOutcome::try_from(v).ok()? {
        proto::FeedbackOutcome::Confirmed => Some(FeedbackOutcome::Confirmed),
        proto::FeedbackOutcome::FalsePositive => Some(FeedbackOutcome::FalsePositive),
        proto::FeedbackOutcome::Flood => Some(FeedbackOutcome::Flood),
        proto::FeedbackOutcome::Unspecified => None,
    }
}

/// The wire value of an action that may leave the bank; `None` for
/// `reported`, which has no wire value.
pub(crate) fn action_to_wire(a: Action) -> Option<proto::FeedbackAction> {
    match a {
        Action::Blocked => Some(proto::FeedbackAction::Blocked),
        Action::Closed => Some(proto::FeedbackAction::Closed),
        Action::Reported => None,
    }
}

/// The action of a wire value; `None` for unspecified or unknown.
pub(crate) fn action_from_wire(v: i32) -> Option<Action> {
    match proto::FeedbackAction::try_from(v).ok()? {
        proto::FeedbackAction::Blocked => Some(Action::Blocked),
        proto::FeedbackAction::Closed => Some(Action::Closed),
        proto::FeedbackAction::Unspecified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_has_no_wire_value() {
        assert_eq!(action_to_wire(Action::Reported), None);
        for a in [Action::Blocked, Action::Closed] {
            let w = action_to_wire(a).unwrap();
            assert_eq!(action_from_wire(w as i32), Some(a));
        }
        for o in FeedbackOutcome::ALL {
            assert_eq!(outcome_from_wire(outcome_to_wire(o) as i32), Some(o));
        }
        assert_eq!(outcome_from_wire(0), None);
        assert_eq!(outcome_from_wire(99), None);
        assert_eq!(action_from_wire(99), None);
    }
}
