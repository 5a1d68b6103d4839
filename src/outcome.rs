//! The words of the coalition's Report and Disrupt half, shared by every
//! module that records, carries or counts what a hit led to: a bank's
//! [`Disposition`] of a hit or alert and the [`Action`]s it took, the
//! [`FeedbackOutcome`] an origin may hear of, the indicator such words are
//! about ([`IndicatorRef`]: origin and the sequence number of its add
//! entry), UTC days, and the [`FeedbackSink`] through which dispositions and
//! flood control hand feedback to the delivery queue without knowing it.
//!
//! Nothing here holds an identifier, token, case reference or watch
//! reference: these types are what may leave a bank, and less.

use std::sync::Arc;

use crate::time::{format_time, parse_time};

/// Seconds in a UTC day.
pub const DAY: i64 = 86_400;

/// A bank's outcome for a hit or an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disposition {
    /// An analyst is looking at it; stops nothing.
    UnderReview,
    /// A true positive.
    Confirmed,
    /// The indicator matched an innocent customer.
    FalsePositive,
}

impl Disposition {
    /// Every disposition, in order.
    pub const ALL: [Disposition; 3] = [
        Disposition::UnderReview,
        Disposition::Confirmed,
        Disposition::FalsePositive,
    ];

    /// The wire and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::UnderReview => "under_review",
            Disposition::Confirmed => "confirmed",
            Disposition::FalsePositive => "false_positive",
        }
    }

    /// Parses a wire or CLI name.
    pub fn parse(s: &str) -> Option<Disposition> {
        Disposition::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Whether this outcome settles the (watch entry, origin, case): no
    /// further alert is raised for it.
    pub fn settles(self) -> bool {
        !matches!(self, Disposition::UnderReview)
    }
}

/// What a bank did about a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// A suspicious-activity report was filed. Never leaves the bank (SAR
    /// confidentiality, e.g. 31 CFR 1020.320(e), and tipping-off rules).
    Reported,
    /// The account or card was blocked.
    Blocked,
    /// The relationship was closed.
    Closed,
}

impl Action {
    /// Every action, in order.
    pub const ALL: [Action; 3] = [Action::Reported, Action::Blocked, Action::Closed];

    /// The wire and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reported => "reported",
            Action::Blocked => "blocked",
            Action::Closed => "closed",
        }
    }

    /// Parses a wire or CLI name.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether this action may be told to the origin in feedback.
    pub fn may_leave(self) -> bool {
        !matches!(self, Action::Reported)
    }
}

/// The actions of `actions` that may leave the bank, sorted, once each.
pub fn leaving(actions: &[Action]) -> Vec<Action> {
    let mut out: Vec<Action> = actions.iter().copied().filter(|a| a.may_leave()).collect();
    out.sort();
    out.dedup();
    out
}

/// What an origin hears about one of its indicators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedbackOutcome {
    /// A bank confirmed a hit as a true positive.
    Confirmed,
    /// A bank found the hit to be a false positive.
    FalsePositive,
    /// The indicator matched far more than a real one should and was
    /// quarantined at a bank.
    Flood,
}

impl FeedbackOutcome {
    /// Every outcome, in order.
    pub const ALL: [FeedbackOutcome; 3] = [
        FeedbackOutcome::Confirmed,
        FeedbackOutcome::FalsePositive,
        FeedbackOutcome::Flood,
    ];

    /// The wire and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackOutcome::Confirmed => "confirmed",
            FeedbackOutcome::FalsePositive => "false_positive",
            FeedbackOutcome::Flood => "flood",
        }
    }

    /// Parses a wire or CLI name.
    pub fn parse(s: &str) -> Option<FeedbackOutcome> {
        FeedbackOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The feedback a disposition gives, if any (`under_review` gives none).
    pub fn of(d: Disposition) -> Option<FeedbackOutcome> {
        match d {
            Disposition::UnderReview => None,
            Disposition::Confirmed => Some(FeedbackOutcome::Confirmed),
            Disposition::FalsePositive => Some(FeedbackOutcome::FalsePositive),
        }
    }
}

/// An indicator as its origin knows it: the origin's member id and the
/// sequence number of the add entry in force.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndicatorRef {
    /// The origin's member id.
    pub origin: Arc<str>,
    /// The sequence number of the add entry in the origin's log.
    pub seq: u64,
}

/// The UTC day number (days since 1970-01-01) of unix seconds `unix`.
pub fn utc_day(unix: i64) -> i64 {
    unix.div_euclid(DAY)
}

/// A UTC day number as `YYYY-MM-DD`.
pub fn day_string(day: i64) -> String {
    format_time(day.max(0) * DAY)[..10].to_string()
}

/// Parses `YYYY-MM-DD` into a UTC day number.
pub fn parse_day(s: &str) -> Result<i64, String> {
    let rule = || "must be a UTC date such as 2026-12-07".to_string();
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(rule());
    }
    let t = parse_time(&format!("{s}T00:00:00Z")).map_err(|_| rule())?;
    let day = utc_day(t);
    // humantime accepts 2026-02-30 as March 2nd; a date must name itself.
    if day_string(day) != s {
        return Err(rule());
    }
    Ok(day)
}

/// Why feedback could not be queued.
#[derive(Debug, thiserror::Error)]
#[error("feedback could not be queued: {0}")]
pub struct QueueError(pub String);

/// Where dispositions and flood control hand feedback about an indicator
/// for delivery to its origin. The sink decides whether feedback is on and
/// where it goes; a caller only says what happened and on which UTC day.
pub trait FeedbackSink: Send + Sync {
    /// Queues `outcome` (with the `actions` that may leave the bank) about
    /// `about`, dated `day`. Returns once it is durable, or an error.
    fn send(
        &self,
        about: &IndicatorRef,
        outcome: FeedbackOutcome,
        actions: &[Action],
        day: i64,
    ) -> Result<(), QueueError>;
}

/// The sink of a node whose feedback is off: drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFeedback;

impl FeedbackSink for NoFeedback {
    fn send(
        &self,
        _: &IndicatorRef,
        _: FeedbackOutcome,
        _: &[Action],
        _: i64,
    ) -> Result<(), QueueError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Disposition::ALL {
            assert_eq!(Disposition::parse(d.as_str()), Some(d));
        }
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        for o in FeedbackOutcome::ALL {
            assert_eq!(FeedbackOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Disposition::parse("Confirmed"), None);
        assert_eq!(Action::parse(""), None);
    }

    #[test]
    fn reported_never_leaves() {
        assert_eq!(
            leaving(&[
                Action::Closed,
                Action::Reported,
                Action::Blocked,
                Action::Closed
            ]),
            vec![Action::Blocked, Action::Closed]
        );
        assert!(!Action::Reported.may_leave());
    }

    #[test]
    fn only_settling_dispositions_give_feedback() {
        assert!(!Disposition::UnderReview.settles());
        assert_eq!(FeedbackOutcome::of(Disposition::UnderReview), None);
        assert_eq!(
            FeedbackOutcome::of(Disposition::FalsePositive),
            Some(FeedbackOutcome::FalsePositive)
        );
    }

    #[test]
    fn days() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(-1), -1);
        assert_eq!(utc_day(DAY - 1), 0);
        let d = parse_day("2026-12-07").unwrap();
        assert_eq!(day_string(d), "2026-12-07");
        assert_eq!(utc_day(d * DAY + 3600), d);
        for bad in [
            "2026-2-07",
            "2026-02-30",
            "20261207",
            "2026-12-07T00:00:00Z",
            "",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }
}
