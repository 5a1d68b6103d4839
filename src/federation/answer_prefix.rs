//! Answering k-anonymous prefix queries of other members (the serving side
//! of `Federation.QueryPrefix`).
//!
//! The asking node sends only the first `prefix_bits` bits (16 to 24, the
//! trust list's query policy) of its tokens. This node returns every active
//! indicator under each prefix, of every origin it holds and every epoch
//! valid now, padded with decoys to a multiple of the policy's bucket size,
//! in token order, so the answer's size does not tell how many indicators
//! are real. A decoy is a token under the same prefix that matches nothing,
//! carrying the metadata of a real indicator found from a secret point of
//! the token space, so that decoys' metadata follows the real indicators'
//! own distribution. Decoys derive from a secret of this node (kept in the
//! store), the prefix, the valid epochs and the UTC day: the same question
//! asked the same day gets the same answer, so that comparing two answers
//! shows only real changes, not which entries are decoys.
//! The asker compares full tokens locally ([`super::ask_prefix`]): this node
//! never sees a token or learns whether it matched.
//!
//! What that buys, exactly: the answering member holds the token key too, so
//! it can hash candidate identifiers and keep those under the prefix. It
//! narrows the asker's identifier to about one in 2^prefix_bits of the
//! identifier space, and no further (docs/THREAT_MODEL.md gives the figures).
//!
//! During a key rotation the asker uses the per-epoch form (`by_epoch`,
//! [`Gate::answer_by_epoch`]): for each valid epoch, prefixes of that
//! epoch's tokens with lengths adding up to `prefix_bits` over the epochs,
//! each answered with the indicators of that epoch only, so that the two
//! independent tokens of one value still tell this node `prefix_bits` bits
//! in all. Every answer carries this node's active indicators per valid
//! epoch (counted at most once a minute), from which the asker chooses the
//! lengths; the daily quota charges a prefix what it reveals
//! ([`prefix_cost`]). Such an answer is bounded as a whole (its entries at
//! their widest within [`super::PREFIX_ANSWER_BYTES`]), a prefix shorter
//! than the policy's being allowed more entries.
//!
//! Answers are bounded: a request carries at most
//! [`super::prefixes_per_request`] prefixes under the policy, and a prefix
//! holding more real entries than one answer carries
//! ([`super::entries_per_prefix`]) refuses the request rather than truncate
//! it (a truncated answer would lose matches), so the largest answer fits in
//! what the asker decodes. The daily quota counts the prefixes answered: a
//! request refused after its quota was taken gives it back. The policy's
//! `prefixes_per_day` is the coalition's figure for one asking member; this
//! node grants its share, the figure divided (rounded up) among the active
//! members with an endpoint that hold indicators (replicate or contribute)
//! other than the asker ([`daily_share`]), recomputed from the list in
//! force at each request. Each member's usage of the day is recorded in the
//! store (durably, before the answer goes out, so that a crash can only
//! over-count; a refund is recorded too) and read back at start.
//!
//! [`Gate`] checks the request, applies the per-member limits and pads;
//! [`PrefixAnswers`] gives it the trust list's policy, the index, the valid
//! epochs and the node's clock. Answers and refusals (by reason) are counted
//! in the node's [`Counters`].

use std::sync::Arc;

use hmac::{Hmac, Mac};
use parking_lot::{Mutex, RwLock};
use rand::{rngs::StdRng, Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::{
    entries_per_prefix, prefixes_per_request, widest_answer_entries, MAX_PREFIXES_PER_REQUEST,
};
use crate::{
    counters::{Counters, RequestRefusal},
    ident::Kind,
    index::{Index, Indicator, Tier},
    proto::{
        EpochCount, PeerCapability, PrefixBucket, PrefixEntry, QueryPrefixRequest,
        QueryPrefixResponse,
    },
    ratelimit::{Limiter, Refused, Rule},
    screening::Engine,
    store::{Store, StoreError},
    time::Clock,
    token::Token,
    trust::{
        list::{QueryPolicy, TrustList},
        state::TrustState,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    #[error("prefix_bits: must be {expected} (the coalition's query policy), got {got}")]
    Bits { expected: u32, got: u32 },
    #[error("prefixes: at least 1 and at most {max} per request (what one answer carries under the query policy), got {got}")]
    Count { max: usize, got: usize },
    #[error("prefixes[{index}]: must be below 2^prefix_bits")]
    Range { index: usize },
    #[error("prefixes[{index}]: holds more than {max} indicators, more than one answer carries; the coalition's query policy needs more prefix_bits")]
    Full { index: usize, max: usize },
    #[error("{0}")]
    Limited(Refused),
    #[error("prefixes, prefix_bits: must be empty and 0 when by_epoch is given")]
    Mixed,
    #[error("by_epoch[{index}].epoch: must be a key epoch valid now, listed once")]
    Epoch { index: usize },
    #[error("by_epoch[{index}].prefix_bits: must be at most {max} (the coalition's query policy), got {got}")]
    EpochBits { index: usize, max: u32, got: u32 },
    #[error("by_epoch[{index}].prefixes[{at}]: must be below 2^prefix_bits")]
    EpochRange { index: usize, at: usize },
    #[error("by_epoch: at most {max} prefixes in all per request, got {got}")]
    EpochCount { max: usize, got: usize },
    #[error("by_epoch[{index}].prefixes[{at}]: the answer would hold more than {max} entries, more than one answer carries; ask fewer or longer prefixes")]
    TooLarge { index: usize, at: usize, max: usize },
    /// The usage could not be recorded, so the request is not answered.
    #[error("this node could not record the daily query quota: {}", crate::telemetry::chain(.0))]
    Unrecorded(StoreError),
}

impl PrefixError {
    /// The counted reason.
    pub fn reason(&self) -> RequestRefusal {
        match self {
            PrefixError::Bits { .. } => RequestRefusal::PrefixBits,
            PrefixError::Count { .. } => RequestRefusal::PrefixCount,
            PrefixError::Range { .. } => RequestRefusal::PrefixRange,
            PrefixError::Full { .. } => RequestRefusal::PrefixFull,
            PrefixError::Limited(_) => RequestRefusal::PrefixLimit,
            PrefixError::Mixed | PrefixError::EpochCount { .. } => RequestRefusal::PrefixCount,
            PrefixError::Epoch { .. } => RequestRefusal::PrefixEpoch,
            PrefixError::EpochBits { .. } => RequestRefusal::PrefixBits,
            PrefixError::EpochRange { .. } => RequestRefusal::PrefixRange,
            PrefixError::TooLarge { .. } => RequestRefusal::PrefixFull,
            PrefixError::Unrecorded(_) => RequestRefusal::QuotaUnrecorded,
        }
    }
}

/// What one member asked of this node (counts only), as read from the
/// node's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueryCounts {
    pub requests: u64,
    pub prefixes: u64,
    /// Requests refused by the query policy's limits.
    pub refused: u64,
}

/// The answering side: limits and padded answers; counts go to the node's
/// counters.
pub(crate) struct Gate {
    limiter: Limiter,
    counters: Arc<Counters>,
    /// Where each member's daily usage is recorded (none: memory only).
    store: Option<Arc<Store>>,
    /// Held while a usage is recorded, so that the last record written is
    /// the last usage taken.
    recording: Mutex<()>,
    /// What decoys derive from.
    secret: [u8; 32],
}

impl Gate {
    /// A gate that keeps its counts in memory only, with a fresh secret.
    #[cfg(test)]
    pub(crate) fn new(counters: Arc<Counters>) -> Gate {
        let mut secret = [0u8; 32];
        rand::thread_rng().fill(&mut secret);
        Gate {
            limiter: Limiter::new(),
            counters,
            store: None,
            recording: Mutex::new(()),
            secret,
        }
    }

    /// A gate that records each member's daily usage in `store` and starts
    /// from the usage recorded there for today (`now`, unix seconds; older
    /// days are pruned), with the node's decoy secret.
    pub(crate) fn persistent(
        counters: Arc<Counters>,
        store: Arc<Store>,
        now: i64,
    ) -> Result<Gate, StoreError> {
        let limiter = Limiter::new();
        for (member, day, used) in store.query_usage(now.div_euclid(DAY))? {
            limiter.restore(&member, day, used);
        }
        Ok(Gate {
            limiter,
            counters,
            secret: store.decoy_secret()?,
            store: Some(store),
            recording: Mutex::new(()),
        })
    }

    /// Writes `member`'s usage of the day as the limiter holds it now.
    fn record(&self, member: &str) -> Result<(), PrefixError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let _in_order = self.recording.lock();
        match self.limiter.used(member) {
            Some((day, used)) => store
                .put_query_usage(member, day, used)
                .map_err(PrefixError::Unrecorded),
            None => Ok(()),
        }
    }

    /// Takes one request and `units` of `member`'s daily quota under
    /// `policy`, recorded for good (when there is a daily quota) before
    /// anything is answered.
    fn take(
        &self,
        member: &str,
        units: u64,
        policy: QueryPolicy,
        now_secs: f64,
    ) -> Result<(), PrefixError> {
        let rule = Rule {
            per_second: f64::from(policy.requests_per_second),
            burst: f64::from(policy.burst.max(1)),
            units_per_day: policy.prefixes_per_day,
        };
        self.limiter
            .check(member, units, rule, now_secs)
            .map_err(PrefixError::Limited)?;
        if rule.units_per_day > 0 {
            self.record(member)?;
        }
        Ok(())
    }

    /// Gives back `units` that [`Gate::take`] took for a request not
    /// answered after all, and records the usage again.
    fn give_back(&self, member: &str, units: u64, policy: QueryPolicy, now_secs: f64) {
        self.limiter.refund(member, units, now_secs);
        if policy.prefixes_per_day > 0 {
            if let Err(e) = self.record(member) {
                // The record over-counts: the safe side.
                tracing::warn!(%member, "{e}");
            }
        }
    }

    /// Counts and logs the outcome of `member`'s request for `prefixes`
    /// prefixes (either form), and passes it on.
    fn counted(
        &self,
        member: &str,
        prefixes: usize,
        r: Result<Vec<PrefixBucket>, PrefixError>,
    ) -> Result<Vec<PrefixBucket>, PrefixError> {
        match &r {
            Ok(_) => {
                self.counters.query_answered(member, prefixes as u64);
                tracing::info!(%member, prefixes, "prefix query answered");
            }
            Err(e) => {
                self.counters.request_refused(member, e.reason());
                if let PrefixError::Limited(r) = e {
                    tracing::warn!(%member, prefixes, retry_after_ms = r.retry_after.as_millis() as u64, "prefix query refused: {}", r.limit);
                }
            }
        }
        r
    }

    /// Answers `member`'s request, or refuses it (changing nothing but the
    /// refusal count).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn answer(
        &self,
        member: &str,
        req: &QueryPrefixRequest,
        policy: QueryPolicy,
        index: &RwLock<Index>,
        valid_epochs: &[u32],
        decoy_origins: &[Arc<str>],
        now: i64,
        now_secs: f64,
    ) -> Result<Vec<PrefixBucket>, PrefixError> {
        let r = self.checked(
            member,
            req,
            policy,
            index,
            valid_epochs,
            decoy_origins,
            now,
            now_secs,
        );
        self.counted(member, req.prefixes.len(), r)
    }

    #[allow(clippy::too_many_arguments)]
    fn checked(
        &self,
        member: &str,
        req: &QueryPrefixRequest,
        policy: QueryPolicy,
        index: &RwLock<Index>,
        valid_epochs: &[u32],
        decoy_origins: &[Arc<str>],
        now: i64,
        now_secs: f64,
    ) -> Result<Vec<PrefixBucket>, PrefixError> {
        let bits = policy.prefix_bits;
        if req.prefix_bits != bits {
            return Err(PrefixError::Bits {
                expected: bits,
                got: req.prefix_bits,
            });
        }
        let n = req.prefixes.len();
        let max = prefixes_per_request(&policy);
        if n == 0 || n > max {
            return Err(PrefixError::Count { max, got: n });
        }
        if let Some(index) = req.prefixes.iter().position(|p| u64::from(*p) >> bits != 0) {
            return Err(PrefixError::Range { index });
        }
        self.take(member, n as u64, policy, now_secs)?;
        let real: Vec<Vec<Indicator>> = {
            let index = index.read();
            req.prefixes
                .iter()
                .map(|p| index.under_prefix(bits, *p, now, |e| valid_epochs.contains(&e)))
                .collect()
        };
        let cap = entries_per_prefix(&policy);
        if let Some(index) = real.iter().position(|r| r.len() > cap) {
            // Not answered: the quota taken above is given back.
            self.give_back(member, n as u64, policy, now_secs);
            return Err(PrefixError::Full { index, max: cap });
        }
        let bucket = policy.bucket_size.max(1) as usize;
        let mut epochs = valid_epochs.to_vec();
        epochs.sort_unstable();
        let index = index.read();
        Ok(req
            .prefixes
            .iter()
            .zip(real)
            .map(|(p, real)| {
                let padded = real.len().div_ceil(bucket).max(1) * bucket;
                let mut entries: Vec<PrefixEntry> = real.iter().map(entry).collect();
                let mut rng = decoy_rng(&self.secret, bits, *p, now.div_euclid(DAY), &epochs);
                while entries.len() < padded {
                    entries.push(decoy(
                        &mut rng,
                        bits,
                        *p,
                        &index,
                        &epochs,
                        decoy_origins,
                        now,
                    ));
                }
                // Token order: the same for the same entries, whichever are real.
                entries.sort_unstable_by(|a, b| a.token.cmp(&b.token));
                PrefixBucket {
                    prefix: *p,
                    entries,
                }
            })
            .collect())
    }

    /// Counts per asking member (those that were answered or refused by
    /// the limits), from the node's counters.
    pub(crate) fn counts(&self) -> Vec<(String, QueryCounts)> {
        self.counters
            .snapshot()
            .peers
            .into_iter()
            .map(|(m, c)| {
                let q = QueryCounts {
                    requests: c.queries_answered,
                    prefixes: c.prefixes_answered,
                    refused: c.refused(RequestRefusal::PrefixLimit),
                };
                (m, q)
            })
            .filter(|(_, q)| q.requests > 0 || q.refused > 0)
            .collect()
    }

    /// Answers `member`'s request in the per-epoch form (`by_epoch`), or
    /// refuses it (changing nothing but the refusal count). `counts` holds
    /// every epoch valid now with this node's active indicators under it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn answer_by_epoch(
        &self,
        member: &str,
        req: &QueryPrefixRequest,
        policy: QueryPolicy,
        index: &RwLock<Index>,
        counts: &[(u32, u64)],
        decoy_origins: &[Arc<str>],
        now: i64,
        now_secs: f64,
    ) -> Result<Vec<PrefixBucket>, PrefixError> {
        let n: usize = req.by_epoch.iter().map(|e| e.prefixes.len()).sum();
        let r = self.checked_by_epoch(
            member,
            req,
            policy,
            index,
            counts,
            decoy_origins,
            now,
            now_secs,
        );
        self.counted(member, n, r)
    }

    #[allow(clippy::too_many_arguments)]
    fn checked_by_epoch(
        &self,
        member: &str,
        req: &QueryPrefixRequest,
        policy: QueryPolicy,
        index: &RwLock<Index>,
        counts: &[(u32, u64)],
        decoy_origins: &[Arc<str>],
        now: i64,
        now_secs: f64,
    ) -> Result<Vec<PrefixBucket>, PrefixError> {
        let most_bits = policy.prefix_bits;
        if !req.prefixes.is_empty() || req.prefix_bits != 0 {
            return Err(PrefixError::Mixed);
        }
        let mut seen: Vec<u32> = Vec::with_capacity(req.by_epoch.len());
        for (i, e) in req.by_epoch.iter().enumerate() {
            if seen.contains(&e.epoch) || !counts.iter().any(|(id, _)| *id == e.epoch) {
                return Err(PrefixError::Epoch { index: i });
            }
            seen.push(e.epoch);
            if e.prefix_bits > most_bits {
                return Err(PrefixError::EpochBits {
                    index: i,
                    max: most_bits,
                    got: e.prefix_bits,
                });
            }
        }
        let n: usize = req.by_epoch.iter().map(|e| e.prefixes.len()).sum();
        if n > MAX_PREFIXES_PER_REQUEST {
            return Err(PrefixError::EpochCount {
                max: MAX_PREFIXES_PER_REQUEST,
                got: n,
            });
        }
        for (i, e) in req.by_epoch.iter().enumerate() {
            if let Some(at) = e
                .prefixes
                .iter()
                .position(|p| u64::from(*p) >> e.prefix_bits != 0)
            {
                return Err(PrefixError::EpochRange { index: i, at });
            }
        }
        let all: u64 = counts.iter().map(|(_, c)| c).sum();
        let of = |epoch: u32| {
            counts
                .iter()
                .find(|(id, _)| *id == epoch)
                .map_or(0, |c| c.1)
        };
        let cost: u64 = req
            .by_epoch
            .iter()
            .map(|e| {
                prefix_cost(most_bits, e.prefix_bits, of(e.epoch), all)
                    .saturating_mul(e.prefixes.len() as u64)
            })
            .fold(0, u64::saturating_add);
        self.take(member, cost, policy, now_secs)?;
        // Real entries, each prefix padded to whole buckets, all within what
        // one answer carries; a lookup stops as soon as it would not fit.
        let bucket = policy.bucket_size.max(1) as usize;
        let most = widest_answer_entries(n);
        let mut used = 0usize;
        let mut real: Vec<(u32, u32, u32, Vec<Indicator>)> = Vec::with_capacity(n);
        {
            let index = index.read();
            for (i, e) in req.by_epoch.iter().enumerate() {
                for (at, p) in e.prefixes.iter().enumerate() {
                    let room = most.saturating_sub(used);
                    let found = index
                        .under_prefix_at_most(e.prefix_bits, *p, now, |x| x == e.epoch, room)
                        .filter(|r| used + r.len().div_ceil(bucket).max(1) * bucket <= most);
                    let Some(found) = found else {
                        // Not answered: the quota taken above is given back.
                        self.give_back(member, cost, policy, now_secs);
                        return Err(PrefixError::TooLarge {
                            index: i,
                            at,
                            max: most,
                        });
                    };
                    used += found.len().div_ceil(bucket).max(1) * bucket;
                    real.push((e.epoch, e.prefix_bits, *p, found));
                }
            }
        }
        let index = index.read();
        Ok(real
            .into_iter()
            .map(|(epoch, bits, p, real)| {
                let padded = real.len().div_ceil(bucket).max(1) * bucket;
                let mut entries: Vec<PrefixEntry> = real.iter().map(entry).collect();
                let mut rng = decoy_rng(&self.secret, bits, p, now.div_euclid(DAY), &[epoch]);
                while entries.len() < padded {
                    entries.push(decoy_under(
                        &mut rng,
                        bits,
                        p,
                        &index,
                        epoch,
                        decoy_origins,
                        now,
                    ));
                }
                // Token order: the same for the same entries, whichever are real.
                entries.sort_unstable_by(|a, b| a.token.cmp(&b.token));
                PrefixBucket { prefix: p, entries }
            })
            .collect())
    }
}

/// What a `bits`-bit prefix under one epoch costs of the daily quota, in
/// prefixes of the policy's length (`policy_bits`, B) over all valid epochs:
/// it covers 2^(B - bits) of them, holding the epoch's share
/// (`of_epoch` / `of_all`) of the indicators, so
/// `max(1, ceil(2^(B - bits) * of_epoch / of_all))`; 1 when nothing is held.
pub(crate) fn prefix_cost(policy_bits: u32, bits: u32, of_epoch: u64, of_all: u64) -> u64 {
    if of_all == 0 {
        return 1;
    }
    let scale = 1u128 << policy_bits.saturating_sub(bits).min(64);
    let c = (scale * u128::from(of_epoch.min(of_all))).div_ceil(u128::from(of_all));
    u64::try_from(c).unwrap_or(u64::MAX).max(1)
}

/// Serving `QueryPrefix` for the peer listener: the [`Gate`] with the
/// trust list's query policy, the index and valid epochs, and the node's
/// clock.
pub(crate) struct PrefixAnswers {
    gate: Arc<Gate>,
    trust: Arc<TrustState>,
    engine: Engine,
    clock: Clock,
    /// Active indicators per valid epoch, and when they were counted.
    counts: parking_lot::Mutex<Option<CountedAt>>,
}

/// Active indicators per valid epoch (epoch id, count), and when (unix
/// seconds) they were counted.
type CountedAt = (i64, Vec<(u32, u64)>);

/// How long (seconds of the node's clock) the per-epoch counts an answer
/// carries and the quota cost uses are kept before they are counted again.
const COUNTS_FOR: i64 = 60;

impl PrefixAnswers {
    pub(crate) fn new(
        gate: Arc<Gate>,
        trust: Arc<TrustState>,
        engine: Engine,
        clock: Clock,
    ) -> Self {
        PrefixAnswers {
            gate,
            trust,
            engine,
            clock,
            counts: parking_lot::Mutex::new(None),
        }
    }

    /// Active indicators of each epoch valid at `now`, counted at most once
    /// every [`COUNTS_FOR`] seconds (a walk over the index).
    fn epoch_counts(&self, now: i64) -> Vec<(u32, u64)> {
        let valid = self.engine.valid_epochs(now);
        let mut cached = self.counts.lock();
        if let Some((at, c)) = cached.as_ref() {
            let same = c.len() == valid.len() && c.iter().all(|(e, _)| valid.contains(e));
            if same && (0..COUNTS_FOR).contains(&(now - at)) {
                return c.clone();
            }
        }
        let held = self.engine.index().read().active_by_epoch(now);
        let c: Vec<(u32, u64)> = valid
            .iter()
            .map(|e| (*e, held.iter().find(|(id, _)| id == e).map_or(0, |h| h.1)))
            .collect();
        *cached = Some((now, c.clone()));
        c
    }

    /// Answers (or refuses) `member`'s request, in either form; the answer
    /// carries this node's active indicators per valid epoch.
    pub(crate) fn answer(
        &self,
        member: &str,
        req: &QueryPrefixRequest,
    ) -> Result<QueryPrefixResponse, PrefixError> {
        let list = self.trust.current();
        let mut policy = QueryPolicy::of(list.body());
        let now_secs = self.clock.now_f64();
        let now = now_secs.floor() as i64;
        policy.prefixes_per_day = daily_share(
            policy.prefixes_per_day,
            answering_nodes(&list.body().members, member, now),
        );
        // Decoys name origins that could really have contributed.
        let origins: Vec<Arc<str>> = self
            .trust
            .peers(Some(PeerCapability::Contribute), &[])
            .iter()
            .map(|m| m.id.as_str().into())
            .chain(std::iter::once(self.trust.node_id().into()))
            .collect();
        let now_secs = self.clock.now_f64();
        let now = now_secs.floor() as i64;
        let counts = self.epoch_counts(now);
        let buckets = if req.by_epoch.is_empty() {
            self.gate.answer(
                member,
                req,
                policy,
                self.engine.index(),
                &self.engine.valid_epochs(now),
                &origins,
                now,
                now_secs,
            )?
        } else {
            self.gate.answer_by_epoch(
                member,
                req,
                policy,
                self.engine.index(),
                &counts,
                &origins,
                now,
                now_secs,
            )?
        };
        Ok(QueryPrefixResponse {
            buckets,
            epochs: counts
                .into_iter()
                .map(|(epoch, active)| EpochCount { epoch, active })
                .collect(),
        })
    }
}

const DAY: i64 = 86_400;

/// The members that can answer `asker`'s prefix queries: active, with an
/// endpoint, holding indicators (the replicate or contribute capability),
/// other than the asker. At least one: this node answers.
pub(crate) fn answering_nodes(members: &[crate::proto::Member], asker: &str, now: i64) -> u64 {
    let n = members
        .iter()
        .filter(|m| {
            m.id != asker
                && !m.endpoint.is_empty()
                && TrustList::is_active(m, now)
                && (TrustList::has_capability(m, PeerCapability::Replicate)
                    || TrustList::has_capability(m, PeerCapability::Contribute))
        })
        .count() as u64;
    n.max(1)
}

/// This node's share of the coalition's daily prefix quota `per_day` (0: no
/// quota) among `nodes` answering nodes, rounded up: asking every one of
/// them, a member reads at most `per_day + nodes - 1` prefixes a day.
pub(crate) fn daily_share(per_day: u64, nodes: u64) -> u64 {
    per_day.div_ceil(nodes.max(1))
}

/// The generator of the decoys under `prefix` for UTC day `day` and the
/// valid `epochs` (sorted): HMAC-SHA256 of them under the node's secret.
fn decoy_rng(secret: &[u8; 32], bits: u32, prefix: u32, day: i64, epochs: &[u32]) -> StdRng {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"cix prefix-query decoys v1");
    mac.update(&bits.to_be_bytes());
    mac.update(&prefix.to_be_bytes());
    mac.update(&day.to_be_bytes());
    for e in epochs {
        mac.update(&e.to_be_bytes());
    }
    StdRng::from_seed(mac.finalize().into_bytes().into())
}

fn entry(i: &Indicator) -> PrefixEntry {
    PrefixEntry {
        token: i.token.0.to_vec(),
        kind: i32::from(i.kind.code()),
        origin: i.origin.to_string(),
        tier: i.tier as i32,
        case_ref: i.case_ref.to_string(),
        created_unix: i.created,
        valid_until_unix: i.valid_until.unwrap_or(0),
        epoch: i.epoch,
        seq: i.seq,
    }
}

/// How many indicators a decoy looks through, from its secret point, for
/// one of a valid epoch to copy.
const TEMPLATE_SCAN: usize = 64;

/// A decoy of `epoch` under a prefix of 0 to 24 bits: [`decoy`] takes at
/// least one bit, and a 0-bit prefix is either 1-bit one.
#[allow(clippy::too_many_arguments)]
fn decoy_under(
    rng: &mut StdRng,
    bits: u32,
    prefix: u32,
    index: &Index,
    epoch: u32,
    origins: &[Arc<str>],
    now: i64,
) -> PrefixEntry {
    let (bits, prefix) = if bits == 0 {
        (1, rng.gen::<u32>() & 1)
    } else {
        (bits, prefix)
    };
    decoy(rng, bits, prefix, index, &[epoch], origins, now)
}

/// A decoy under `prefix`: the metadata of the first active indicator of a
/// valid epoch at or after a point `rng` draws (not one under `prefix`
/// itself, which the answer may carry), or, in an index holding none,
/// made-up metadata fixed for the UTC day. Its token, under `prefix`,
/// derives from `rng` and the indicator copied, so that a decoy whose
/// indicator goes is replaced whole (one entry gone, one new), as a real
/// entry that goes is, and never shows the same token with other metadata.
/// It matches nothing (a pseudo-random 256-bit value) and cannot be told
/// from a real entry without knowing the values behind the real ones.
fn decoy(
    rng: &mut impl Rng,
    bits: u32,
    prefix: u32,
    index: &Index,
    epochs: &[u32],
    origins: &[Arc<str>],
    now: i64,
) -> PrefixEntry {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let mut from = [0u8; 32];
    rng.fill_bytes(&mut from);
    let copied = index
        .live_from(&Token(from), now, |e| epochs.contains(&e), TEMPLATE_SCAN)
        .filter(|i| crate::index::token_prefix(&i.token, bits) != prefix);
    let mut d = Sha256::new();
    d.update(seed);
    if let Some(real) = &copied {
        d.update(real.origin.as_bytes());
        d.update(real.seq.to_be_bytes());
    }
    let mut token: [u8; 32] = d.finalize().into();
    let low = u32::from_be_bytes([token[0], token[1], token[2], token[3]]) & (u32::MAX >> bits);
    token[..4].copy_from_slice(&((prefix << (32 - bits)) | low).to_be_bytes());
    if let Some(real) = copied {
        return PrefixEntry {
            token: token.to_vec(),
            ..entry(&real)
        };
    }
    let created = now - now.rem_euclid(DAY) - rng.gen_range(0..180 * 86_400);
    PrefixEntry {
        token: token.to_vec(),
        kind: i32::from(Kind::ALL[rng.gen_range(0..Kind::ALL.len())].code()),
        origin: origins
            .get(rng.gen_range(0..origins.len().max(1)))
            .map(|o| o.to_string())
            .unwrap_or_default(),
        tier: Tier::Confirmed as i32,
        case_ref: format!("case-{:08x}", rng.gen::<u32>()),
        created_unix: created,
        valid_until_unix: if rng.gen_bool(0.5) {
            0
        } else {
            created + 365 * 86_400
        },
        epoch: epochs
            .get(rng.gen_range(0..epochs.len().max(1)))
            .copied()
            .unwrap_or(1),
        seq: rng.gen_range(1..1_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        batch,
        federation::ask_prefix::{compare, prefixes_of},
        index::token_prefix,
        keys::signing::SigningKeyFile,
        proto::BatchHeader,
        proto::LogOp,
        screening::{Hashed, Outcome},
        token::Token,
    };

    fn index_with(tokens: &[Token]) -> RwLock<Index> {
        let header = BatchHeader {
            origin: "liaison".into(),
            first_seq: 1,
            created_unix: 100,
            op: LogOp::Add as i32,
            case_ref: "case-1".into(),
            tier: 1,
            ..Default::default()
        };
        let entries = tokens.iter().map(|t| batch::entry(t, 6, 1)).collect();
        let mut ix = Index::new();
        ix.apply(&batch::sign(header, entries, &SigningKeyFile::generate()))
            .unwrap();
        RwLock::new(ix)
    }

    fn policy(bucket: u32) -> QueryPolicy {
        QueryPolicy {
            bucket_size: bucket,
            ..QueryPolicy::DEFAULT
        }
    }

    #[test]
    fn answers_are_padded_to_the_bucket_and_compare_finds_only_real_tokens() {
        let mut ts: Vec<Token> = (0..5u8).map(|i| Token([i + 1; 32])).collect();
        // Four more tokens under the prefix of the first one.
        for i in 0..4u8 {
            let mut t = [0xee; 32];
            t[..4].copy_from_slice(&[1, 1, 1, i]);
            ts.push(Token(t));
        }
        let ix = index_with(&ts);
        let gate = Gate::new(Arc::new(Counters::new()));
        let origins: Vec<Arc<str>> = vec!["liaison".into(), "bank".into()];
        let hashed: Vec<Hashed> = vec![
            Ok(vec![(1, ts[0])]),
            Ok(vec![(1, Token([0x77; 32]))]),
            Err(crate::ident::Reason::Checksum),
            Ok(vec![(2, ts[1])]),
        ];
        let prefixes = prefixes_of(&hashed, 20);
        let req = QueryPrefixRequest {
            prefixes: prefixes.clone(),
            prefix_bits: 20,
            by_epoch: Vec::new(),
        };
        let buckets = gate
            .answer("asker", &req, policy(4), &ix, &[1, 2], &origins, 200, 1e9)
            .unwrap();
        assert_eq!(buckets.len(), prefixes.len());
        // Token 1's prefix holds 5 real entries: padded to 8.
        assert_eq!(buckets[0].entries.len(), 8);
        assert!(buckets
            .iter()
            .all(|b| b.entries.len() % 4 == 0 && !b.entries.is_empty()));
        for b in &buckets {
            for e in &b.entries {
                assert_eq!(
                    token_prefix(&Token(e.token.clone().try_into().unwrap()), 20),
                    b.prefix
                );
            }
        }
        let out = compare(&hashed, &buckets, &|_| true);
        assert!(
            matches!(&out[0], Outcome::Match(h) if h.len() == 1 && h[0].case_ref.as_ref() == "case-1")
        );
        assert_eq!(out[1], Outcome::NoMatch);
        assert_eq!(out[2], Outcome::Invalid("checksum"));
        assert_eq!(
            out[3],
            Outcome::NoMatch,
            "token held under epoch 1, asked under 2"
        );
        assert_eq!(gate.counts()[0].1.prefixes, prefixes.len() as u64);
    }

    #[test]
    fn bad_requests_and_limits_are_refused_and_counted() {
        let ix = index_with(&[Token([1; 32])]);
        let counters = Arc::new(Counters::new());
        let gate = Gate::new(counters.clone());
        let p = QueryPolicy {
            requests_per_second: 1,
            burst: 1,
            prefixes_per_day: 3,
            ..QueryPolicy::DEFAULT
        };
        let ask = |prefixes: Vec<u32>, bits: u32, t: f64| {
            let req = QueryPrefixRequest {
                prefixes,
                prefix_bits: bits,
                by_epoch: Vec::new(),
            };
            gate.answer("m", &req, p, &ix, &[1], &[], 200, t)
        };
        assert!(matches!(
            ask(vec![1], 16, 0.0),
            Err(PrefixError::Bits {
                expected: 20,
                got: 16
            })
        ));
        assert!(matches!(
            ask(vec![], 20, 0.0),
            Err(PrefixError::Count { .. })
        ));
        assert!(matches!(
            ask(vec![1, 1 << 20], 20, 0.0),
            Err(PrefixError::Range { index: 1 })
        ));
        ask(vec![1, 2], 20, 10.0).unwrap();
        assert!(
            matches!(ask(vec![3], 20, 10.0), Err(PrefixError::Limited(r)) if r.limit == "requests per second")
        );
        assert!(
            matches!(ask(vec![3, 4], 20, 12.0), Err(PrefixError::Limited(r)) if r.limit == "per day")
        );
        ask(vec![3], 20, 14.0).unwrap();
        let c = gate.counts()[0].1;
        assert_eq!((c.requests, c.prefixes, c.refused), (2, 3, 2));
        // Every refusal is counted by its reason.
        let m = counters.peer("m");
        let refused: Vec<(RequestRefusal, u64)> = RequestRefusal::ALL
            .iter()
            .map(|r| (*r, m.refused(*r)))
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(
            refused,
            [
                (RequestRefusal::PrefixBits, 1),
                (RequestRefusal::PrefixCount, 1),
                (RequestRefusal::PrefixRange, 1),
                (RequestRefusal::PrefixLimit, 2),
            ]
        );
        assert_eq!((m.queries_answered, m.prefixes_answered), (2, 3));
    }

    #[test]
    fn a_prefix_holding_more_than_one_answer_carries_is_refused_and_takes_no_quota() {
        // 257 indicators under one 20-bit prefix: one more than an answer
        // carries at the default bucket size.
        let full: Vec<Token> = (0..=256u16)
            .map(|i| {
                let mut t = [0x33; 32];
                t[..3].copy_from_slice(&[1, 1, 0x10]);
                t[3..5].copy_from_slice(&i.to_be_bytes());
                Token(t)
            })
            .collect();
        let ix = index_with(&full);
        let crowded = token_prefix(&full[0], 20);
        let counters = Arc::new(Counters::new());
        let gate = Gate::new(counters.clone());
        let p = QueryPolicy {
            prefixes_per_day: 2,
            ..QueryPolicy::DEFAULT
        };
        let ask = |prefixes: Vec<u32>, t: f64| {
            let req = QueryPrefixRequest {
                prefixes,
                prefix_bits: 20,
                by_epoch: Vec::new(),
            };
            gate.answer("m", &req, p, &ix, &[1], &[], 200, t)
        };
        assert!(matches!(
            ask(vec![7, crowded], 10.0),
            Err(PrefixError::Full { index: 1, max: 256 })
        ));
        // The refused request took none of the daily quota of two.
        let answered = ask(vec![7, 8], 11.0).unwrap();
        assert_eq!(answered.len(), 2);
        assert!(matches!(
            ask(vec![9], 12.0),
            Err(PrefixError::Limited(r)) if r.limit == "per day"
        ));
        // More prefixes than an answer may carry: refused, naming the bound.
        let most = prefixes_per_request(&p);
        let too_many: Vec<u32> = (0..=most as u32).collect();
        let e = ask(too_many, 13.0).unwrap_err();
        assert!(matches!(e, PrefixError::Count { max, got } if max == most && got == most + 1));
        assert!(
            e.to_string()
                .starts_with("prefixes: at least 1 and at most 170"),
            "{e}"
        );
        let m = counters.peer("m");
        assert_eq!(m.refused(RequestRefusal::PrefixFull), 1);
        assert_eq!(m.refused(RequestRefusal::PrefixCount), 1);
        assert_eq!(m.refused(RequestRefusal::PrefixLimit), 1);
        assert_eq!((m.queries_answered, m.prefixes_answered), (1, 2));
    }

    fn index_of_epochs(tokens: &[(Token, u32)]) -> RwLock<Index> {
        let header = BatchHeader {
            origin: "liaison".into(),
            first_seq: 1,
            created_unix: 100,
            op: LogOp::Add as i32,
            case_ref: "case-1".into(),
            tier: 1,
            ..Default::default()
        };
        let entries = tokens.iter().map(|(t, e)| batch::entry(t, 6, *e)).collect();
        let mut ix = Index::new();
        ix.apply(&batch::sign(header, entries, &SigningKeyFile::generate()))
            .unwrap();
        RwLock::new(ix)
    }

    fn by_epoch(groups: &[(u32, u32, Vec<u32>)]) -> QueryPrefixRequest {
        QueryPrefixRequest {
            by_epoch: groups
                .iter()
                .map(
                    |(epoch, prefix_bits, prefixes)| crate::proto::EpochPrefixes {
                        epoch: *epoch,
                        prefix_bits: *prefix_bits,
                        prefixes: prefixes.clone(),
                    },
                )
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_per_epoch_form_answers_each_prefix_with_its_epochs_indicators_only() {
        // Epoch 1: three tokens; epoch 2: two, one of them under the same
        // 12-bit prefix as an epoch-1 token.
        let t = |b: u8, c: u8| {
            let mut t = [9u8; 32];
            t[..3].copy_from_slice(&[b, c, 0x42]);
            t[31] = c;
            Token(t)
        };
        let held = [
            (t(0x10, 1), 1),
            (t(0x20, 2), 1),
            (t(0x30, 3), 1),
            (t(0x10, 4), 2),
            (t(0x90, 5), 2),
        ];
        let ix = index_of_epochs(&held);
        let gate = Gate::new(Arc::new(Counters::new()));
        let counts = [(1, 3), (2, 2)];
        let origins: Vec<Arc<str>> = vec!["liaison".into()];
        // No daily quota: a 0-bit prefix costs 2^20 * 2/5 prefixes.
        let p = QueryPolicy {
            prefixes_per_day: 0,
            ..policy(4)
        };
        let p12 = token_prefix(&held[0].0, 12);
        let req = by_epoch(&[(1, 12, vec![p12]), (2, 0, vec![0])]);
        let buckets = gate
            .answer_by_epoch("m", &req, p, &ix, &counts, &origins, 200, 1e9)
            .unwrap();
        assert_eq!(buckets.len(), 2);
        assert!(buckets.iter().all(|b| b.entries.len() == 4));
        let real = |b: &PrefixBucket| -> Vec<[u8; 32]> {
            let mut r: Vec<[u8; 32]> = b
                .entries
                .iter()
                .map(|e| <[u8; 32]>::try_from(e.token.as_slice()).unwrap())
                .filter(|tk| held.iter().any(|(h, _)| h.0 == *tk))
                .collect();
            r.sort();
            r
        };
        // Under epoch 1's 12-bit prefix: its own token, not epoch 2's.
        assert_eq!(real(&buckets[0]), vec![held[0].0 .0]);
        assert!(buckets[0].entries.iter().all(|e| e.epoch == 1
            && token_prefix(&Token(e.token.clone().try_into().unwrap()), 12) == p12));
        // Under epoch 2's 0-bit prefix: every epoch-2 indicator, decoys of epoch 2.
        assert_eq!(real(&buckets[1]), vec![held[3].0 .0, held[4].0 .0]);
        assert!(buckets[1].entries.iter().all(|e| e.epoch == 2));
        // The asker finds both, each under the epoch it was made with.
        let hashed: Vec<Hashed> = vec![
            Ok(vec![(1, held[0].0), (2, Token([0x77; 32]))]),
            Ok(vec![(1, Token([0x66; 32])), (2, held[4].0)]),
            Ok(vec![(1, held[3].0), (2, Token([0x55; 32]))]),
        ];
        let out = compare(&hashed, &buckets, &|_| true);
        assert!(matches!(&out[0], Outcome::Match(h) if h.len() == 1 && h[0].epoch == 1));
        assert!(matches!(&out[1], Outcome::Match(h) if h.len() == 1 && h[0].epoch == 2));
        assert_eq!(
            out[2],
            Outcome::NoMatch,
            "an epoch-2 token asked as epoch 1"
        );
        // A request with no prefix: the counts only, no quota.
        let probe = by_epoch(&[(1, 0, vec![]), (2, 0, vec![])]);
        let none = gate
            .answer_by_epoch("m", &probe, p, &ix, &counts, &origins, 200, 2e9)
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(gate.counts()[0].1.prefixes, 2);
    }

    #[test]
    fn per_epoch_fields_out_of_rule_are_refused_naming_the_field_and_counted() {
        let ix = index_of_epochs(&[(Token([1; 32]), 1), (Token([2; 32]), 2)]);
        let counters = Arc::new(Counters::new());
        let gate = Gate::new(counters.clone());
        let counts = [(1, 1), (2, 1)];
        let p = QueryPolicy {
            prefixes_per_day: 20,
            prefix_bits: 16,
            ..QueryPolicy::DEFAULT
        };
        let mut t = 0.0;
        let mut ask = |req: QueryPrefixRequest, p: QueryPolicy| {
            t += 10.0;
            gate.answer_by_epoch("m", &req, p, &ix, &counts, &[], 200, t)
        };
        let mut mixed = by_epoch(&[(1, 8, vec![1])]);
        mixed.prefixes = vec![1];
        let too_many = by_epoch(&[(1, 12, (0..=1024).collect())]);
        let cases: Vec<(QueryPrefixRequest, &str)> = vec![
            (mixed, "prefixes, prefix_bits: must be empty"),
            (
                by_epoch(&[(3, 8, vec![1])]),
                "by_epoch[0].epoch: must be a key epoch valid now",
            ),
            (
                by_epoch(&[(1, 8, vec![1]), (1, 8, vec![2])]),
                "by_epoch[1].epoch: must be a key epoch valid now, listed once",
            ),
            (
                by_epoch(&[(2, 8, vec![1]), (1, 17, vec![1])]),
                "by_epoch[1].prefix_bits: must be at most 16",
            ),
            (
                by_epoch(&[(1, 8, vec![1]), (2, 4, vec![15, 16])]),
                "by_epoch[1].prefixes[1]: must be below 2^prefix_bits",
            ),
            (too_many, "by_epoch: at most 1024 prefixes in all"),
        ];
        for (req, msg) in cases {
            let e = ask(req, p).unwrap_err();
            assert!(e.to_string().starts_with(msg), "{e}");
        }
        // An answer that would not fit in one: refused whole, quota given back.
        let big = QueryPolicy {
            bucket_size: 4096,
            prefixes_per_day: 0,
            ..p
        };
        let e = ask(by_epoch(&[(1, 8, (0..11).collect())]), big).unwrap_err();
        assert!(
            matches!(
                e,
                PrefixError::TooLarge {
                    index: 0,
                    at: 10,
                    ..
                }
            ),
            "{e}"
        );
        // 20 prefixes of quota left: a 12-bit prefix under epoch 1 costs
        // 2^4 * 1/2 = 8.
        ask(by_epoch(&[(1, 12, vec![1, 2])]), p).unwrap();
        assert!(matches!(
            ask(by_epoch(&[(1, 12, vec![3, 4])]), p),
            Err(PrefixError::Limited(r)) if r.limit == "per day"
        ));
        ask(by_epoch(&[(1, 15, vec![3, 4])]), p).unwrap();
        let m = counters.peer("m");
        let refused: Vec<(RequestRefusal, u64)> = RequestRefusal::ALL
            .iter()
            .map(|r| (*r, m.refused(*r)))
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(
            refused,
            [
                (RequestRefusal::PrefixBits, 1),
                (RequestRefusal::PrefixCount, 2),
                (RequestRefusal::PrefixRange, 1),
                (RequestRefusal::PrefixFull, 1),
                (RequestRefusal::PrefixLimit, 1),
                (RequestRefusal::PrefixEpoch, 2),
            ]
        );
        assert_eq!((m.queries_answered, m.prefixes_answered), (2, 4));
    }

    #[test]
    fn a_prefix_costs_its_epochs_share_of_the_policy_length_prefixes_it_covers() {
        // One epoch, the policy's length: 1, as in the older form.
        assert_eq!(prefix_cost(20, 20, 1000, 1000), 1);
        // Half the indicators, 10 bits short: 2^10 / 2.
        assert_eq!(prefix_cost(20, 10, 500, 1000), 512);
        assert_eq!(prefix_cost(20, 10, 501, 1000), 514);
        // Few indicators under a short prefix: at least 1.
        assert_eq!(prefix_cost(20, 17, 1, 1000), 1);
        assert_eq!(prefix_cost(20, 3, 0, 1000), 1);
        // The whole set under a 0-bit prefix: every prefix of the policy.
        assert_eq!(prefix_cost(20, 0, 1000, 1000), 1 << 20);
        // Nothing held: 1.
        assert_eq!(prefix_cost(20, 0, 0, 0), 1);
    }

    /// A node-sized index of realistic indicators, merged: five origins,
    /// each with its own form of case reference, batches of 1 to 30
    /// entries, mostly recent, tiers, kinds, expiries and two epochs mixed
    /// as contributions mix them. Seeded: the same index every run.
    fn realistic_index(indicators: usize, now: i64) -> RwLock<Index> {
        let mut rng = StdRng::seed_from_u64(0xc1c5);
        let key = SigningKeyFile::generate();
        let origins = [
            "liaison-uk",
            "bank-alpha",
            "bank-beta",
            "le-fr",
            "bank-gamma",
        ];
        let mut next_seq = [1u64; 5];
        let mut ix = Index::new();
        let mut made = 0;
        while made < indicators {
            let o = [0, 1, 1, 2, 3, 4, 4, 4][rng.gen_range(0..8)];
            let n = rng.gen_range(1..=30u64).min(rng.gen_range(1..=30));
            let age = (rng.gen::<f64>().powi(2) * 400.0 * 86_400.0) as i64;
            let created = now - age;
            let case_ref = match o {
                0 => format!("UK-CEOP-2026-{:05}", rng.gen_range(0..100_000)),
                1 => format!("BA{:08}", rng.gen_range(0..100_000_000)),
                2 => format!("fraud/2026/{}", rng.gen_range(1..5_000)),
                3 => format!("PN-{:06}-X", rng.gen_range(0..1_000_000)),
                _ => format!("ref-{:08x}", rng.gen::<u32>()),
            };
            let valid_until = if rng.gen_bool(0.4) {
                0
            } else {
                now + rng.gen_range(1..700 * 86_400)
            };
            let header = BatchHeader {
                origin: origins[o].into(),
                first_seq: next_seq[o],
                created_unix: created,
                op: LogOp::Add as i32,
                case_ref,
                tier: [1, 1, 1, 2, 2, 3][rng.gen_range(0..6)],
                valid_until_unix: valid_until,
                ..Default::default()
            };
            next_seq[o] += n;
            let epoch = if age < 60 * 86_400 { 2 } else { 1 };
            let entries = (0..n)
                .map(|_| {
                    let kind = [1, 1, 2, 3, 3, 3, 6, 7][rng.gen_range(0..8)];
                    batch::entry(&Token(rng.gen()), kind, epoch)
                })
                .collect();
            ix.apply(&batch::sign(header, entries, &key)).unwrap();
            made += n as usize;
        }
        ix.merge();
        RwLock::new(ix)
    }

    const OPEN: QueryPolicy = QueryPolicy {
        prefix_bits: 16,
        bucket_size: 4,
        requests_per_second: 1_000_000,
        burst: 1_000_000,
        prefixes_per_day: 0,
    };

    fn ask_all(
        gate: &Gate,
        ix: &RwLock<Index>,
        prefixes: std::ops::Range<u32>,
        now: i64,
    ) -> Vec<PrefixBucket> {
        let origins: Vec<Arc<str>> = vec!["liaison-uk".into(), "bank-alpha".into()];
        let prefixes: Vec<u32> = prefixes.collect();
        prefixes
            .chunks(100)
            .flat_map(|c| {
                let req = QueryPrefixRequest {
                    prefixes: c.to_vec(),
                    prefix_bits: 16,
                    ..Default::default()
                };
                gate.answer("asker", &req, OPEN, ix, &[1, 2], &origins, now, now as f64)
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn the_same_prefix_asked_twice_the_same_day_gets_the_same_answer_so_intersecting_answers_tells_nothing(
    ) {
        let now = 1_800_000_000;
        let ix = realistic_index(20_000, now);
        let gate = Gate::new(Arc::new(Counters::new()));
        let first = ask_all(&gate, &ix, 0..300, now);
        let again = ask_all(&gate, &ix, 0..300, now + 3_600);
        assert_eq!(first, again, "two answers to one question on one day");
        // The answers differ from another node's (another secret) and from
        // the next day's: the decoys are not a function of the prefix alone.
        let other = ask_all(&Gate::new(Arc::new(Counters::new())), &ix, 0..300, now);
        assert_ne!(first, other);
        let tomorrow = ask_all(&gate, &ix, 0..300, now + 86_400);
        assert_ne!(first, tomorrow);
    }

    /// What an asker sees of an entry besides its token, coarsened into
    /// categories: kind, origin, tier, the case reference's form and
    /// length, age, time left, epoch, and the sequence number against the
    /// highest the asker has seen of that origin.
    fn features(
        e: &PrefixEntry,
        now: i64,
        heads: &std::collections::HashMap<String, u64>,
    ) -> Vec<String> {
        let log2 = |x: i64| 64 - (x.max(0) as u64).leading_zeros();
        let shape: String = e
            .case_ref
            .chars()
            .map(|c| match c {
                '0'..='9' => '9',
                'a'..='z' => 'a',
                'A'..='Z' => 'A',
                c => c,
            })
            .collect();
        let head = heads.get(&e.origin).copied().unwrap_or(1).max(1);
        vec![
            format!("kind {}", e.kind),
            format!("origin {}", e.origin),
            format!("tier {}", e.tier),
            format!("shape {shape}"),
            format!("length {}", e.case_ref.len()),
            format!("age {}", log2((now - e.created_unix) / 3_600)),
            format!(
                "left {}",
                if e.valid_until_unix == 0 {
                    99
                } else {
                    log2((e.valid_until_unix - now) / 86_400)
                }
            ),
            format!("epoch {}", e.epoch),
            format!("seq {}", e.seq * 10 / head),
            format!("seq bits {}", log2(e.seq as i64)),
        ]
    }

    /// The area under the ROC curve of a naive Bayes classifier trained on
    /// `train` and scored on `test` (entries labelled real or decoy): 0.5
    /// is chance, 1.0 tells every decoy apart.
    fn classifier_auc(train: &[(Vec<String>, bool)], test: &[(Vec<String>, bool)]) -> f64 {
        let mut counts: std::collections::HashMap<(usize, &str), [f64; 2]> = Default::default();
        let mut class = [0f64; 2];
        for (f, real) in train {
            class[*real as usize] += 1.0;
            for (i, v) in f.iter().enumerate() {
                counts.entry((i, v.as_str())).or_default()[*real as usize] += 1.0;
            }
        }
        let mut scored: Vec<(f64, bool)> = test
            .iter()
            .map(|(f, real)| {
                let score = f
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let c = counts.get(&(i, v.as_str())).copied().unwrap_or_default();
                        ((c[1] + 1.0) / (class[1] + 2.0)).ln()
                            - ((c[0] + 1.0) / (class[0] + 2.0)).ln()
                    })
                    .sum::<f64>();
                (score, *real)
            })
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Mann-Whitney: the chance that a real entry outscores a decoy, ties halved.
        let (mut below, mut wins) = (0f64, 0f64);
        let mut i = 0;
        while i < scored.len() {
            let j = (i..scored.len())
                .find(|&j| scored[j].0 != scored[i].0)
                .unwrap_or(scored.len());
            let reals = scored[i..j].iter().filter(|s| s.1).count() as f64;
            let decoys = (j - i) as f64 - reals;
            wins += reals * (below + decoys / 2.0);
            below += decoys;
            i = j;
        }
        let reals = scored.iter().filter(|s| s.1).count() as f64;
        wins / (reals * below)
    }

    fn labelled(
        buckets: &[PrefixBucket],
        ix: &RwLock<Index>,
        now: i64,
        heads: &std::collections::HashMap<String, u64>,
    ) -> Vec<(Vec<String>, bool)> {
        let ix = ix.read();
        buckets
            .iter()
            .flat_map(|b| &b.entries)
            .map(|e| {
                let t = Token(e.token.clone().try_into().unwrap());
                (features(e, now, heads), ix.active(&t, now).len() > 0)
            })
            .collect()
    }

    #[test]
    fn a_classifier_over_many_answers_tells_decoys_from_real_entries_no_better_than_chance() {
        let now = 1_800_000_000;
        let ix = realistic_index(60_000, now);
        let gate = Gate::new(Arc::new(Counters::new()));
        // The asker knows every origin's head (the highest seq it has seen).
        let answers = ask_all(&gate, &ix, 0..6_000, now);
        let mut heads = std::collections::HashMap::new();
        for e in answers.iter().flat_map(|b| &b.entries) {
            let h = heads.entry(e.origin.clone()).or_insert(0);
            *h = (*h).max(e.seq);
        }
        let (train, test) = answers.split_at(3_000);
        let (train, test) = (
            labelled(train, &ix, now, &heads),
            labelled(test, &ix, now, &heads),
        );
        let real = test.iter().filter(|t| t.1).count();
        assert!(
            real > 2_000 && test.len() - real > 2_000,
            "{real} real of {}",
            test.len()
        );
        let auc = classifier_auc(&train, &test);
        assert!((auc - 0.5).abs() < 0.03, "decoys told apart: AUC {auc:.3}");

        // The same classifier against made-up metadata (an index whose
        // indicators are not merged yet, so decoys have none to copy) tells
        // nearly every decoy apart: the test has the power to fail.
        let unmerged = {
            let mut rng = StdRng::seed_from_u64(7);
            let key = SigningKeyFile::generate();
            let mut ix = Index::new();
            for b in 0..2_000u64 {
                let header = BatchHeader {
                    origin: "bank-alpha".into(),
                    first_seq: 1 + b * 10,
                    created_unix: now - rng.gen_range(0..300 * 86_400),
                    op: LogOp::Add as i32,
                    case_ref: format!("BA{:08}", rng.gen_range(0..100_000_000)),
                    tier: [1, 2, 3][rng.gen_range(0..3)],
                    ..Default::default()
                };
                let entries = (0..10)
                    .map(|_| batch::entry(&Token(rng.gen()), 3, 1))
                    .collect();
                ix.apply(&batch::sign(header, entries, &key)).unwrap();
            }
            RwLock::new(ix)
        };
        let answers = ask_all(&gate, &unmerged, 0..2_000, now);
        let (train, test) = answers.split_at(1_000);
        let (train, test) = (
            labelled(train, &unmerged, now, &heads),
            labelled(test, &unmerged, now, &heads),
        );
        let auc = classifier_auc(&train, &test);
        assert!(auc > 0.95, "made-up metadata not told apart: AUC {auc:.3}");
    }

    #[test]
    fn the_daily_quota_is_the_coalitions_divided_among_the_members_that_can_answer() {
        use crate::proto::Member;
        let member = |id: &str, caps: &[PeerCapability], endpoint: &str| Member {
            id: id.into(),
            endpoint: endpoint.into(),
            capabilities: caps.iter().map(|c| *c as i32).collect(),
            status: crate::proto::MemberStatus::Active as i32,
            ..Default::default()
        };
        use PeerCapability::*;
        let members = [
            member("a", &[Replicate, Query], "a:1"),
            member("b", &[Contribute], "b:1"),
            member("c", &[Replicate, Contribute], "c:1"),
            member("d", &[Query], "d:1"),
            member("e", &[Replicate], ""),
            member("f", &[Replicate, Query], "f:1"),
            Member {
                status: crate::proto::MemberStatus::Suspended as i32,
                ..member("g", &[Replicate], "g:1")
            },
        ];
        // a, b, c, f hold indicators and answer; d only asks; e has no
        // endpoint; g is suspended.
        assert_eq!(answering_nodes(&members, "d", 0), 4);
        // An asker that answers too is not one of its own answerers.
        assert_eq!(answering_nodes(&members, "a", 0), 3);
        assert_eq!(daily_share(100_000, 4), 25_000);
        assert_eq!(daily_share(10, 4), 3);
        assert_eq!(daily_share(10, 3), 4);
        assert_eq!(daily_share(0, 4), 0, "no quota stays no quota");
        assert_eq!(answering_nodes(&members[3..4], "d", 0), 1);
    }
}
