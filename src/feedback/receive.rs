//! The origin's side of `Federation.Feedback`: refused whole when this
//! node's feedback is off or the request holds no items or too many; else
//! every item checked field by field (its seq an add entry of this node's
//! own origin log, its date from that entry's day to tomorrow, its outcome
//! and actions known, anonymous senders only from an operator) and
//! answered on its own. Accepted items go to the [`Records`](super::record::Records);
//! refused ones change nothing and are counted per member and reason.

use crate::{
    counters::{Counters, RequestRefusal},
    outcome::{parse_day, utc_day, Action, FeedbackOutcome},
    proto::{self, LogOp, MemberKind, PeerCapability},
    store::Store,
    trust::list::TrustList,
};

use super::{
    record::{Received, RecordError, Sender},
    Feedback, Mode,
};

/// Most items in one request.
pub(crate) const MAX_ITEMS: usize = 1000;

/// Batches one request may make the receiver read to check its items;
/// items past that are answered `retry_later`.
pub(crate) const MAX_BATCH_READS: usize = 32;

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
    #[error("reading an origin log for feedback")]
    Store(#[from] crate::store::StoreError),
}

impl From<FeedbackError> for tonic::Status {
    fn from(e: FeedbackError) -> tonic::Status {
        match e {
            FeedbackError::Off | FeedbackError::NoRelay(_) => {
                tonic::Status::failed_precondition(e.to_string())
            }
            FeedbackError::Items(_) => tonic::Status::invalid_argument(e.to_string()),
            FeedbackError::Limit(_) => tonic::Status::resource_exhausted(e.to_string()),
            FeedbackError::Record(_) | FeedbackError::Relay(_) | FeedbackError::Store(_) => {
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
        admit(
            req.items.len(),
            &self.feedback.limits,
            member,
            member,
            self.counters,
            self.now,
        )?;
        let mut results = Vec::with_capacity(req.items.len());
        let mut adds = AddLookup::new(self.store, false);
        for (i, item) in req.items.iter().enumerate() {
            match self.check(member, i, item, &mut adds)? {
                Checked::Accept((received, case_ref)) => {
                    let r = self.feedback.records.record(&received)?;
                    if r.newly_flagged {
                        tracing::warn!(origin = %self.node_id, seq = received.seq, case_ref = %case_ref, "indicator flagged for review: false positives from two or more distinct senders");
                    }
                    results.push(proto::FeedbackResult {
                        accepted: true,
                        ..Default::default()
                    });
                }
                Checked::Refuse(refusal) => {
                    self.counters.request_refused(member, refusal.reason);
                    self.feedback.records.refused(1);
                    tracing::warn!(member, field = %refusal.field, rule = %refusal.rule, "feedback item refused");
                    results.push(refusal.result());
                }
                Checked::Later(later) => results.push(later.result()),
            }
        }
        // What waits for later is not charged to the member's day.
        let later = results.iter().filter(|r| r.retry_later).count() as u64;
        self.feedback.limits.refund(member, later, self.now as f64);
        Ok(proto::FeedbackResponse { results })
    }

    /// Checks item `i`; gives what to record and the case reference of its
    /// add entry (for the review log), or why not.
    fn check(
        &self,
        member: &str,
        i: usize,
        item: &proto::FeedbackItem,
        adds: &mut AddLookup<'_>,
    ) -> Result<Checked<(Received, String)>, crate::store::StoreError> {
        let refuse = |field: &str, rule: String, reason| ItemRefusal {
            field: format!("items[{i}].{field}"),
            rule,
            reason,
        };
        let (outcome, actions, day) = match check_fields(&format!("items[{i}]"), item, self.now) {
            Ok(f) => f,
            Err(r) => return Ok(Checked::Refuse(r)),
        };
        let sender = if item.anonymous_senders == 0 {
            Sender::Named(member.to_string())
        } else {
            match self.relayed_count(member, item.anonymous_senders, actions.len()) {
                Ok(count) => Sender::Relay {
                    relay: member.to_string(),
                    count,
                },
                Err((field, rule, reason)) => {
                    return Ok(Checked::Refuse(refuse(field, rule, reason)))
                }
            }
        };
        let add = match adds.check(self.node_id, item.seq, "this node's own origin log")? {
            Found::Add(add) => add,
            Found::Refuse(rule) => {
                return Ok(Checked::Refuse(refuse(
                    "seq",
                    rule,
                    RequestRefusal::FeedbackSeq,
                )))
            }
            Found::Later(rule) => {
                return Ok(Checked::Later(Later {
                    field: format!("items[{i}].seq"),
                    rule,
                }))
            }
        };
        if let Err(rule) = add.not_before(day) {
            return Ok(Checked::Refuse(refuse(
                "date",
                rule,
                RequestRefusal::FeedbackDate,
            )));
        }
        Ok(Checked::Accept((
            Received {
                seq: item.seq,
                outcome,
                actions,
                day,
                sender,
            },
            add.case_ref,
        )))
    }

    /// Whether `member` may say `count` anonymous senders stand behind an
    /// item with `actions` actions (an operator's node, at most one
    /// action); gives the count, at most the active members with `feedback`
    /// other than this origin and the relay.
    fn relayed_count(
        &self,
        member: &str,
        count: u32,
        actions: usize,
    ) -> Result<u32, (&'static str, String, RequestRefusal)> {
        let operator = self
            .list
            .member(member)
            .is_some_and(|m| m.kind == MemberKind::Operator as i32);
        if !operator {
            return Err((
                "anonymous_senders",
                "must be 0 unless the sender is an operator relaying anonymous feedback".into(),
                RequestRefusal::FeedbackAnonymous,
            ));
        }
        let senders = self
            .list
            .body()
            .members
            .iter()
            .filter(|m| {
                m.id != member
                    && m.id != self.node_id
                    && TrustList::is_active(m, self.now)
                    && TrustList::has_capability(m, PeerCapability::Feedback)
            })
            .count();
        if actions > 1 {
            return Err((
                "actions",
                "a relayed item names at most one action".into(),
                RequestRefusal::FeedbackActions,
            ));
        }
        // More than could have sent it, as this node's list stands: counted
        // as that many (the relay's list may be newer, a sender suspended
        // since), never refused, so that nothing acknowledged is lost.
        Ok(count.min(u32::try_from(senders).unwrap_or(u32::MAX)))
    }
}

/// What checking one item gave.
pub(crate) enum Checked<T> {
    /// To record.
    Accept(T),
    /// Refused for good.
    Refuse(ItemRefusal),
    /// Not decided now; the sender keeps it.
    Later(Later),
}

/// What looking an add entry up gave.
pub(crate) enum Found {
    Add(Add),
    /// Refused for good: the rule.
    Refuse(String),
    /// Not decided now: why.
    Later(String),
}

/// An item the receiver cannot decide yet: the field and why.
pub(crate) struct Later {
    pub field: String,
    pub rule: String,
}

impl Later {
    pub(crate) fn result(self) -> proto::FeedbackResult {
        proto::FeedbackResult {
            accepted: false,
            field: self.field,
            rule: self.rule,
            retry_later: true,
        }
    }
}

impl ItemRefusal {
    pub(crate) fn result(self) -> proto::FeedbackResult {
        proto::FeedbackResult {
            accepted: false,
            field: self.field,
            rule: self.rule,
            retry_later: false,
        }
    }
}

/// An add entry found for an item.
pub(crate) struct Add {
    pub case_ref: String,
    /// The UTC day the entry was created.
    pub day: i64,
}

impl Add {
    /// Whether an outcome dated `day` may be about this entry: not before
    /// its day (one day of clock skew allowed).
    pub(crate) fn not_before(&self, day: i64) -> Result<(), String> {
        if day < self.day - 1 {
            return Err(format!(
                "must not be before the add entry's day ({})",
                crate::outcome::day_string(self.day)
            ));
        }
        Ok(())
    }
}

/// Looks add entries up for one request: each batch read once, at most
/// [`MAX_BATCH_READS`] batches; past that, and (for a relay, whose copy
/// of a log may lag) past the head it holds, the item waits.
pub(crate) struct AddLookup<'a> {
    store: &'a Store,
    lag_waits: bool,
    read: Vec<ReadBatch>,
}

/// A batch read for a request: origin, first and last seq, and the add
/// entry's case reference and day if it is an add.
type ReadBatch = (String, u64, u64, Option<(String, i64)>);

impl<'a> AddLookup<'a> {
    pub(crate) fn new(store: &'a Store, lag_waits: bool) -> AddLookup<'a> {
        AddLookup {
            store,
            lag_waits,
            read: Vec::new(),
        }
    }

    /// Whether `seq` names an add entry of `origin`'s log (described as
    /// `log` in the rule). A store error ends the request.
    pub(crate) fn check(
        &mut self,
        origin: &str,
        seq: u64,
        log: &str,
    ) -> Result<Found, crate::store::StoreError> {
        let rule = |why: &str| format!("must name an add entry of {log} ({why})");
        if seq == 0 {
            return Ok(Found::Refuse(rule("0 is no entry")));
        }
        let known = self
            .read
            .iter()
            .find(|(o, first, last, _)| o == origin && (*first..=*last).contains(&seq));
        let add = match known {
            Some((.., add)) => add.clone(),
            None => {
                let head = self.store.head(origin)?.map_or(0, |h| h.last_seq);
                if seq > head {
                    return Ok(if self.lag_waits {
                        Found::Later(rule("not held here yet"))
                    } else {
                        Found::Refuse(rule("no such entry"))
                    });
                }
                if self.read.len() >= MAX_BATCH_READS {
                    return Ok(Found::Later(format!(
                        "one request may make this node read at most {MAX_BATCH_READS} batches"
                    )));
                }
                let Some(batch) = self.store.batch_holding(origin, seq)? else {
                    return Ok(Found::Refuse(rule("no such entry")));
                };
                let h = &batch.header;
                let add = (h.op == LogOp::Add as i32)
                    .then(|| (h.case_ref.clone(), utc_day(h.created_unix)));
                self.read.push((
                    origin.to_string(),
                    batch.first_seq(),
                    batch.last_seq(),
                    add.clone(),
                ));
                add
            }
        };
        Ok(match add {
            Some((case_ref, day)) => Found::Add(Add { case_ref, day }),
            None => Found::Refuse(rule("it is a retract or extend entry")),
        })
    }
}

/// Admits a request of `items` items from `member` before any item is
/// looked at: 1 to [`MAX_ITEMS`], within the member's [`super::LIMIT`] in
/// `limits`; a refusal is counted under `counted_as`.
pub(crate) fn admit(
    items: usize,
    limits: &crate::ratelimit::Limiter,
    member: &str,
    counted_as: &str,
    counters: &Counters,
    now: i64,
) -> Result<(), FeedbackError> {
    if items == 0 || items > MAX_ITEMS {
        counters.request_refused(counted_as, RequestRefusal::FeedbackItems);
        return Err(FeedbackError::Items(items));
    }
    if let Err(r) = limits.check(member, items as u64, super::LIMIT, now as f64) {
        counters.request_refused(counted_as, RequestRefusal::FeedbackLimit);
        return Err(FeedbackError::Limit(r));
    }
    Ok(())
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
    if day > today + 1 {
        return Err(refuse(
            "date",
            "must not be after tomorrow (UTC)".into(),
            RequestRefusal::FeedbackDate,
        ));
    }
    Ok((outcome, actions, day))
}
