//! Per-caller rate limits: a token bucket (requests per second with a
//! burst) and an optional daily quota of units (e.g. prefixes), reset at
//! midnight UTC. Used for other members' prefix queries (limits from the
//! trust list's query policy) and, optionally, for the member listener's
//! match calls (limits from the node's configuration). The limiter keeps
//! its counts in memory; a user that must keep the daily quota across
//! restarts records [`Limiter::used`] and hands it back at start
//! ([`Limiter::restore`]), as the prefix-query side does with the store.
//!
//! Callers are keys chosen by the user of the limiter (a member id, a client
//! certificate's SPKI hash); nothing else is kept. A refusal says how long
//! to wait, so that clients can back off instead of retrying blindly.
//! Callers pass the time (the node's [`crate::time::Clock`]), so a test
//! moves a window along by setting the clock, never by waiting.

use std::{collections::HashMap, time::Duration};

use parking_lot::Mutex;

/// The limits for one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rule {
    /// Requests per second refilled into the bucket.
    pub per_second: f64,
    /// Requests the bucket holds when full.
    pub burst: f64,
    /// Units per UTC day (0: no daily quota).
    pub units_per_day: u64,
}

/// Why a request was refused, and when to try again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Refused {
    pub retry_after: Duration,
    /// "requests per second" or "per day".
    pub limit: &'static str,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rate limit exceeded ({}); retry after {:.3} s",
            self.limit,
            self.retry_after.as_secs_f64()
        )
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// Seconds (fractional) of the last refill.
    at: f64,
    day: i64,
    used_today: u64,
}

/// Token buckets per caller.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Daily usage read back at start ([`Limiter::restore`]): caller →
    /// (UTC day, units used), taken into a caller's bucket when it is made.
    restored: Mutex<HashMap<String, (i64, u64)>>,
}

const DAY: i64 = 86_400;

impl Limiter {
    pub(crate) fn new() -> Limiter {
        Limiter::default()
    }

    /// Takes one request and `units` of the daily quota for `caller` at
    /// `now` (unix seconds, fractional), or says how long to wait. A refused
    /// request takes nothing.
    pub(crate) fn check(
        &self,
        caller: &str,
        units: u64,
        rule: Rule,
        now: f64,
    ) -> Result<(), Refused> {
        let mut buckets = self.buckets.lock();
        let today = now.div_euclid(DAY as f64) as i64;
        let b = buckets.entry(caller.to_string()).or_insert_with(|| {
            let (day, used_today) = self.restored.lock().remove(caller).unwrap_or((today, 0));
            Bucket {
                tokens: rule.burst,
                at: now,
                day,
                used_today,
            }
        });
        b.tokens = (b.tokens + (now - b.at).max(0.0) * rule.per_second).min(rule.burst);
        b.at = now;
        if b.day != today {
            b.day = today;
            b.used_today = 0;
        }
        if rule.units_per_day > 0 && b.used_today.saturating_add(units) > rule.units_per_day {
            let next_day = ((today + 1) * DAY) as f64;
            return Err(Refused {
                retry_after: Duration::from_secs_f64((next_day - now).max(0.001)),
                limit: "per day",
            });
        }
        if b.tokens < 1.0 {
            let wait = (1.0 - b.tokens) / rule.per_second.max(f64::MIN_POSITIVE);
            return Err(Refused {
                retry_after: Duration::from_secs_f64(wait.clamp(0.001, 86_400.0)),
                limit: "requests per second",
            });
        }
        b.tokens -= 1.0;
        b.used_today += units;
        Ok(())
    }

    /// Starts `caller` at `used` units of its quota for UTC day `day` (days
    /// since the epoch), as recorded before a restart. A later day starts
    /// from nothing, as always.
    pub(crate) fn restore(&self, caller: &str, day: i64, used: u64) {
        self.restored.lock().insert(caller.to_string(), (day, used));
    }

    /// The UTC day of `caller`'s quota and the units it has used that day,
    /// if it has asked since the start (or was restored).
    pub(crate) fn used(&self, caller: &str) -> Option<(i64, u64)> {
        match self.buckets.lock().get(caller) {
            Some(b) => Some((b.day, b.used_today)),
            None => self.restored.lock().get(caller).copied(),
        }
    }

    /// Gives back `units` of `caller`'s daily quota that [`Limiter::check`]
    /// took for a request then not answered, if the day has not turned since
    /// (`now`, unix seconds). The request itself stays counted against the
    /// rate.
    pub(crate) fn refund(&self, caller: &str, units: u64, now: f64) {
        let today = now.div_euclid(DAY as f64) as i64;
        if let Some(b) = self.buckets.lock().get_mut(caller) {
            if b.day == today {
                b.used_today = b.used_today.saturating_sub(units);
            }
        }
    }
}

/// An optional limit on calls per caller, with a count of refusals.
#[derive(Debug, Default)]
pub(crate) struct CallerLimits {
    limiter: Limiter,
    rule: Option<Rule>,
    refused: std::sync::atomic::AtomicU64,
}

impl CallerLimits {
    /// `per_second` 0: no limit. `burst` 0: the per-second rate.
    pub(crate) fn new(per_second: u32, burst: u32) -> CallerLimits {
        CallerLimits {
            rule: (per_second > 0).then(|| Rule {
                per_second: f64::from(per_second),
                burst: f64::from(if burst == 0 { per_second } else { burst }),
                units_per_day: 0,
            }),
            ..Default::default()
        }
    }

    /// Takes one call for `caller` at `now` (unix seconds, fractional: the
    /// node's clock), or says how long to wait.
    pub(crate) fn check(&self, caller: &str, now: f64) -> Result<(), Refused> {
        let Some(rule) = self.rule else {
            return Ok(());
        };
        self.limiter.check(caller, 0, rule, now).inspect_err(|r| {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                retry_after_ms = r.retry_after.as_millis() as u64,
                "member listener call refused: {}",
                r.limit
            );
        })
    }

    /// Calls refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Rule = Rule {
        per_second: 2.0,
        burst: 3.0,
        units_per_day: 10,
    };

    #[test]
    fn burst_then_refill() {
        let l = Limiter::new();
        let t = 1_000.0;
        for _ in 0..3 {
            l.check("a", 1, RULE, t).unwrap();
        }
        let r = l.check("a", 1, RULE, t).unwrap_err();
        assert_eq!(r.limit, "requests per second");
        assert!((r.retry_after.as_secs_f64() - 0.5).abs() < 1e-6, "{r:?}");
        // Another caller has its own bucket.
        l.check("b", 1, RULE, t).unwrap();
        // Half a second later one token is back.
        l.check("a", 1, RULE, t + 0.5).unwrap();
        assert!(l.check("a", 1, RULE, t + 0.5).is_err());
    }

    #[test]
    fn daily_quota_resets_at_midnight_utc_and_refusals_take_nothing() {
        let l = Limiter::new();
        let day2 = 2.0 * DAY as f64;
        let t = day2 - 100.0;
        l.check("a", 8, RULE, t).unwrap();
        let r = l.check("a", 3, RULE, t + 1.0).unwrap_err();
        assert_eq!(r.limit, "per day");
        assert!((r.retry_after.as_secs_f64() - 99.0).abs() < 1e-6, "{r:?}");
        l.check("a", 2, RULE, t + 2.0).unwrap();
        assert!(l.check("a", 1, RULE, t + 3.0).is_err());
        l.check("a", 10, RULE, day2 + 1.0).unwrap();
        // A refund gives back today's units only.
        l.refund("a", 4, day2 + 2.0);
        l.check("a", 4, RULE, day2 + 3.0).unwrap();
        assert!(l.check("a", 1, RULE, day2 + 4.0).is_err());
        l.refund("a", 5, 3.0 * DAY as f64);
        assert!(l.check("a", 1, RULE, day2 + 5.0).is_err());
    }

    #[test]
    fn a_restored_daily_usage_counts_on_its_day_only() {
        let l = Limiter::new();
        let day2 = 2.0 * DAY as f64;
        l.restore("a", 2, 9);
        l.restore("b", 1, 9);
        assert_eq!(l.used("a"), Some((2, 9)));
        l.check("a", 1, RULE, day2 + 1.0).unwrap();
        assert!(l.check("a", 1, RULE, day2 + 2.0).is_err());
        assert_eq!(l.used("a"), Some((2, 10)));
        // Yesterday's usage does not count today.
        l.check("b", 10, RULE, day2 + 1.0).unwrap();
        assert_eq!(l.used("b"), Some((2, 10)));
        assert_eq!(l.used("c"), None);
    }

    #[test]
    fn caller_limits_follow_the_time_given_and_count_refusals() {
        let none = CallerLimits::new(0, 0);
        for _ in 0..100 {
            none.check("x", 1_000.0).unwrap();
        }
        assert_eq!(none.refused(), 0);

        let l = CallerLimits::new(1, 2);
        let t = 1_000.0;
        l.check("x", t).unwrap();
        l.check("x", t).unwrap();
        let r = l.check("x", t).unwrap_err();
        assert_eq!(r.limit, "requests per second");
        assert!((r.retry_after.as_secs_f64() - 1.0).abs() < 1e-6, "{r:?}");
        assert_eq!(l.refused(), 1);
        l.check("y", t).unwrap();
        // A second later, by the clock, one call is allowed again.
        l.check("x", t + 1.0).unwrap();
        assert!(l.check("x", t + 1.0).is_err());
        assert_eq!(l.refused(), 2);
        // Without a burst the rate is the burst.
        let l = CallerLimits::new(3, 0);
        for _ in 0..3 {
            l.check("x", t).unwrap();
        }
        assert!(l.check("x", t).is_err());
    }
}
