//! The origin's side of `Federation.Feedback`: refused whole when this
//! node's feedback is off or the request holds no items or too many; else
//! every item checked field by field (its seq an add entry of this node's
//! own origin log, its date within [today - 30, today + 1], its outcome and
//! actions known, anonymous senders only from an operator) and answered on
//! its own. Accepted items go to the [`Records`](super::record::Records);
//! refused ones change nothing and are counted per member and reason.

use crate::{
    counters::{Counters, RequestRefusal},
    outcome::{parse_day, utc_day, Action, FeedbackOutcome},
    proto::{self, LogOp, MemberKind},
    store::Store,
    trust::list::TrustList,
};

use super::{
    record::{Received, RecordError, Sender},
    Feedback, Mode,
};

/// Most items in one request.
pub(crate) const MAX_ITEMS: usize = 1000;

/// How many days back an item's date may be.
pub(crate) const MAX_AGE_DAYS: i64 = 30;

/// Why a whole Feedback request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FeedbackError {
    #[error("this node does not accept feedback ([feedback] mode = off)")]
    Off,
    #[error("items: must hold 1 to {MAX_ITEMS} items, not {0}")]
    Items(usize),
    #[error("this node relays no anonymous feedback: {0}")]
    NoRelay(&'static str),
    #[error("feedback: at most {} items per member and UTC day, {} requests per second; try again in {}s", super::LIMIT.units_per_day, super::LIMIT.per_second, .0.retry_after.as_secs().max(1))]
    Limit(crate::ratelimit::Refused),
    #[error("recording feedback")]
    Record(#[from] RecordError),
    #[error("recording anonymous feedback")]
    Relay(#[from] super::relay::RelayError),
}

impl From<FeedbackError> for tonic::Status {
    fn from(e: FeedbackError) -> tonic::Status {
        match e {
            FeedbackError::Off | FeedbackError::NoRelay(_) => {
                tonic::Status::failed_precondition(e.to_string())
            }
            FeedbackError::Items(_) => tonic::Status::invalid_argument(e.to_string()),
            FeedbackError::Limit(_) => tonic::Status::resource_exhausted(e.to_string()),
            FeedbackError::Record(_) | FeedbackError::Relay(_) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "feedback not recorded");
                tonic::Status::unavailable("the node could not record the feedback")
            }
        }
    }
}

/// One item refused: the field, the rule, and the reason it is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemRefusal {
    pub field: String,
    pub rule: String,
    pub reason: RequestRefusal,
}

/// What the handler needs besides the request.
pub(crate) struct Receiver<'a> {
    pub feedback: &'a Feedback,
    pub node_id: &'a str,
    pub store: &'a Store,
    pub list: &'a TrustList,
    pub counters: &'a Counters,
    pub now: i64,
}

impl Receiver<'_> {
    /// Answers `req` from `member` (authorized for `feedback` already).
    pub(crate) fn receive(
        &self,
        member: &str,
        req: &proto::FeedbackRequest,
    ) -> Result<proto::FeedbackResponse, FeedbackError> {
        if self.feedback.mode == Mode::Off {
            self.counters
                .request_refused(member, RequestRefusal::FeedbackOff);
            return Err(FeedbackError::Off);
        }
        if req.items.is_empty() || req.items.len() > MAX_ITEMS {
            self.counters
                .request_refused(member, RequestRefusal::FeedbackItems);
            return Err(FeedbackError::Items(req.items.len()));
        }
        if let Err(r) = self.feedback.limits.check(
            member,
            req.items.len() as u64,
            super::LIMIT,
            self.now as f64,
        ) {
            self.counters
                .request_refused(member, RequestRefusal::FeedbackLimit);
            return Err(FeedbackError::Limit(r));
        }
        let mut results = Vec::with_capacity(req.items.len());
        for (i, item) in req.items.iter().enumerate() {
            match self.check(member, i, item) {
                Ok((received, case_ref)) => {
                    let r = self.feedback.records.record(&received)?;
                    if r.newly_flagged {
                        tracing::warn!(origin = %self.node_id, seq = received.seq, case_ref = %case_ref, "indicator flagged for review: false positives from two or more distinct senders");
                    }
                    results.push(proto::FeedbackResult {
                        accepted: true,
                        ..Default::default()
                    });
                }
                Err(refusal) => {
                    self.counters.request_refused(member, refusal.reason);
                    self.feedback.records.refused(1);
                    tracing::warn!(member, field = %refusal.field, rule = %refusal.rule, "feedback item refused");
                    results.push(proto::FeedbackResult {
                        accepted: false,
                        field: refusal.field,
                        rule: refusal.rule,
                    });
                }
            }
        }
        Ok(proto::FeedbackResponse { results })
    }

    /// Checks item `i`; gives what to record and the case reference of its
    /// add entry (for the review log).
    fn check(
        &self,
        member: &str,
        i: usize,
        item: &proto::FeedbackItem,
    ) -> Result<(Received, String), ItemRefusal> {
        let refuse = |field: &str, rule: String, reason| ItemRefusal {
            field: format!("items[{i}].{field}"),
            rule,
            reason,
        };
        let (outcome, actions, day) = check_fields(&format!("items[{i}]"), item, self.now)?;
        let sender = if item.anonymous_senders == 0 {
            Sender::Named(member.to_string())
        } else {
            let operator = self
                .list
                .member(member)
                .is_some_and(|m| m.kind == MemberKind::Operator as i32);
            if !operator {
                return Err(refuse(
                    "anonymous_senders",
                    "must be 0 unless the sender is an operator relaying anonymous feedback".into(),
                    RequestRefusal::FeedbackAnonymous,
                ));
            }
            let members = self.list.body().members.len();
            if item.anonymous_senders as usize > members {
                return Err(refuse(
                    "anonymous_senders",
                    format!("must be at most the trust list's members ({members})"),
                    RequestRefusal::FeedbackAnonymous,
                ));
            }
            if actions.len() > 1 {
                return Err(refuse(
                    "actions",
                    "a relayed item names at most one action".into(),
                    RequestRefusal::FeedbackActions,
                ));
            }
            Sender::Relay {
                relay: member.to_string(),
                count: item.anonymous_senders,
            }
        };
        let case_ref = check_add(
            self.store,
            self.node_id,
            item.seq,
            "this node's own origin log",
        )
        .map_err(|rule| refuse("seq", rule, RequestRefusal::FeedbackSeq))?;
        Ok((
            Received {
                seq: item.seq,
                outcome,
                actions,
                day,
                sender,
            },
            case_ref,
        ))
    }
}

/// Checks an item's outcome, actions and date (as `<at>.outcome` and so
/// on) on the node's day `now`; gives them parsed.
pub(crate) fn check_fields(
    at: &str,
    item: &proto::FeedbackItem,
    now: i64,
) -> Result<(FeedbackOutcome, Vec<Action>, i64), ItemRefusal> {
    let refuse = |field: &str, rule: String, reason| ItemRefusal {
        field: format!("{at}.{field}"),
        rule,
        reason,
    };
    let outcome = super::outcome_from_wire(item.outcome).ok_or_else(|| {
        refuse(
            "outcome",
            "must be confirmed, false_positive or flood".into(),
            RequestRefusal::FeedbackOutcome,
        )
    })?;
    let mut actions: Vec<Action> = Vec::new();
    for a in &item.actions {
        let Some(a) = super::action_from_wire(*a) else {
            return Err(refuse(
                "actions",
                "each must be blocked or closed".into(),
                RequestRefusal::FeedbackActions,
            ));
        };
        if actions.contains(&a) {
            return Err(refuse(
                "actions",
                "each action at most once".into(),
                RequestRefusal::FeedbackActions,
            ));
        }
        actions.push(a);
    }
    let today = utc_day(now);
    let day =
        parse_day(&item.date).map_err(|rule| refuse("date", rule, RequestRefusal::FeedbackDate))?;
    if day < today - MAX_AGE_DAYS || day > today + 1 {
        return Err(refuse(
            "date",
            format!("must be within {MAX_AGE_DAYS} days before today (UTC) and tomorrow"),
            RequestRefusal::FeedbackDate,
        ));
    }
    Ok((outcome, actions, day))
}

/// Checks that `seq` names an add entry of `origin`'s log in `store`
/// (described as `log` in the rule); gives the entry's case reference.
pub(crate) fn check_add(
    store: &Store,
    origin: &str,
    seq: u64,
    log: &str,
) -> Result<String, String> {
    let rule = |why: &str| format!("must name an add entry of {log} ({why})");
    if seq == 0 {
        return Err(rule("0 is no entry"));
    }
    let batch = match store.batch_holding(origin, seq) {
        Ok(Some(b)) => b,
        Ok(None) => return Err(rule("no such entry")),
        Err(e) => {
            tracing::error!(error = %crate::telemetry::chain(&e), "reading an origin log for feedback");
            return Err(rule("the entry could not be read"));
        }
    };
    if batch.header.op != LogOp::Add as i32 {
        return Err(rule("it is a retract or extend entry"));
    }
    Ok(batch.header.case_ref.clone())
}
