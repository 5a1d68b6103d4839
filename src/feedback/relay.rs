//! The operator's relay of anonymous feedback (`Federation.RelayFeedback`),
//! and what it keeps (`<data_dir>/feedback_relay`, its own sled database,
//! one tree so that each step is one atomic write):
//!
//! - per 30-day window (UTC day / 30), a random 32-byte key;
//! - per (window, origin, seq, outcome, sender) the first 16 bytes of
//!   HMAC-SHA256(window key, sender id, origin, seq, outcome), with the
//!   actions seen and those already forwarded: this counts distinct senders
//!   without keeping who they are; a window's key and hashes are deleted
//!   once the window has passed, so no hash lives more than 30 days;
//! - the (origin, seq, outcome) groups changed since the last batch;
//! - per (origin, seq, outcome, action, UTC day) the count forwarded, for
//!   the operator's outcome figures.
//!
//! Once a UTC day (on the node's clock) the changed groups become one batch:
//! per group an item counting the senders new since the last batch, and one
//! per action counting those who newly took it, all dated the day before,
//! shuffled across every origin, and queued durably for delivery to each
//! origin under the relay's own identity ([`super::deliver`]). No sender id
//! reaches the database, the queue, a log line or a counter.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use rand::{seq::SliceRandom, RngCore};
use sha2::Sha256;
use sled::Transactional;
use tokio_util::sync::CancellationToken;

use crate::{
    counters::{Counters, RequestRefusal, ANONYMOUS},
    outcome::{day_string, utc_day, Action, FeedbackOutcome},
    proto::{self, MemberKind, PeerCapability},
    store::Store,
    time::Clock,
    trust::list::TrustList,
};

use super::{
    outcome_byte, outcome_of,
    queue::{Queue, QueueOpenError},
    receive::{admit, check_fields, AddLookup, Checked, FeedbackError, Found, ItemRefusal, Later},
    Mode,
};

/// The relay's folder in the data directory.
pub(crate) const RELAY_DIR: &str = "feedback_relay";
/// Days a sender hash may count: a window's length.
pub(crate) const WINDOW_DAYS: i64 = 30;
/// How often the batch task looks at the clock.
const TICK: Duration = Duration::from_secs(1);
const HASH_LEN: usize = 16;

const KEY: u8 = b'k';
const SENDER: u8 = b's';
const PENDING: u8 = b'p';
const RELAYED: u8 = b'r';
const META_BATCH_DAY: &[u8] = b"m:batch_day";

/// Actions as bits; `TOTAL` marks a sender already counted for its outcome.
const BLOCKED: u8 = 1;
const CLOSED: u8 = 2;
const TOTAL: u8 = 0x80;

/// Why the relay could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The database could not be opened.
    #[error("opening the feedback relay {path}")]
    Open {
        /// The relay's folder.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// A read or write of the relay failed.
    #[error("the feedback relay")]
    Db(#[from] sled::Error),
    /// The relay's outbound queue.
    #[error("the relay's outbound queue")]
    Queue(#[from] QueueOpenError),
}

/// What an operator relayed, as the outcome figures count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relayed {
    pub origin: String,
    pub seq: u64,
    pub outcome: FeedbackOutcome,
    /// `None`: the count is of senders of the outcome; `Some`: of those
    /// who took the action.
    pub action: Option<Action>,
    pub day: i64,
    pub senders: u64,
}

/// The relay's counts since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RelayCounts {
    pub received: u64,
    pub forwarded: u64,
    pub pending: u64,
}

/// The relay: its database, its outbound queue and its counts.
pub(crate) struct Relay {
    db: sled::Db,
    tree: sled::Tree,
    /// The outbound queue, delivered by its own task to each origin.
    pub out: Arc<Queue>,
    /// Serializes receiving and batching.
    write: Mutex<()>,
    received: AtomicU64,
    /// Items each sender may send ([`super::LIMIT`]); in memory only.
    limits: crate::ratelimit::Limiter,
}

fn window_of(day: i64) -> u64 {
    (day.div_euclid(WINDOW_DAYS) as u64) ^ (1 << 63)
}

fn day_bytes(day: i64) -> [u8; 8] {
    ((day as u64) ^ (1 << 63)).to_be_bytes()
}

fn day_from(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

/// origin | 0 | seq (8) | outcome (1): one group.
fn group(origin: &str, seq: u64, outcome: FeedbackOutcome) -> Vec<u8> {
    let mut k = origin.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k.push(outcome_byte(outcome));
    k
}

fn parse_group(g: &[u8]) -> Option<(String, u64, FeedbackOutcome)> {
    let end = g.iter().position(|b| *b == 0)?;
    let rest = &g[end + 1..];
    if rest.len() != 9 {
        return None;
    }
    Some((
        String::from_utf8(g[..end].to_vec()).ok()?,
        u64::from_be_bytes(rest[..8].try_into().ok()?),
        outcome_of(rest[8])?,
    ))
}

fn prefixed(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![tag];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn bits_of(actions: &[Action]) -> u8 {
    actions.iter().fold(0, |b, a| match a {
        Action::Blocked => b | BLOCKED,
        Action::Closed => b | CLOSED,
        Action::Reported => b,
    })
}

/// One accepted item, before it is written.
struct Accepted {
    origin: String,
    seq: u64,
    outcome: FeedbackOutcome,
    bits: u8,
}

impl Relay {
    /// Opens (or creates) the relay and its outbound queue.
    pub(crate) fn open(data_dir: &Path) -> Result<Relay, RelayError> {
        let path = data_dir.join(RELAY_DIR);
        let db = crate::store::open_db(&sled::Config::new().path(&path)).map_err(|source| {
            RelayError::Open {
                path: path.clone(),
                source,
            }
        })?;
        let tree = db.open_tree("relay")?;
        Ok(Relay {
            db: db.clone(),
            tree,
            out: Arc::new(Queue::on(db.clone(), "out")?),
            write: Mutex::new(()),
            received: AtomicU64::new(0),
            limits: crate::ratelimit::Limiter::new(),
        })
    }

    pub(crate) fn counts(&self) -> RelayCounts {
        let q = self.out.counts();
        RelayCounts {
            received: self.received.load(Ordering::Relaxed),
            forwarded: q.delivered,
            pending: q.pending + self.tree.scan_prefix([PENDING]).count() as u64,
        }
    }

    /// The window key of `window`, made (and flushed) the first time.
    fn key(&self, window: u64) -> Result<Vec<u8>, RelayError> {
        let k = prefixed(KEY, &[&window.to_be_bytes()]);
        if let Some(v) = self.tree.get(&k)? {
            return Ok(v.to_vec());
        }
        let mut key = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        self.tree.insert(k, key.as_slice())?;
        self.db.flush()?;
        Ok(key)
    }

    /// Records accepted items of one sender in one atomic write, flushed.
    fn record(&self, sender: &str, now: i64, items: &[Accepted]) -> Result<(), RelayError> {
        let _w = self.write.lock();
        // A day turned since the last batch: that day's batch first, so an
        // item received today never joins it.
        self.batch_if_due(utc_day(now))?;
        let window = window_of(utc_day(now));
        let key = self.key(window)?;
        let mut batch = sled::Batch::default();
        // Entries written earlier in this request, as they will be.
        let mut staged: std::collections::HashMap<Vec<u8>, (u8, u8)> = Default::default();
        for a in items {
            let g = group(&a.origin, a.seq, a.outcome);
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
            mac.update(b"cix-relay-v1\0");
            mac.update(sender.as_bytes());
            mac.update(&[0]);
            mac.update(&g);
            let hash = mac.finalize().into_bytes();
            let k = prefixed(SENDER, &[&window.to_be_bytes(), &g, &hash[..HASH_LEN]]);
            let (seen, sent) = match staged.get(&k) {
                Some(&v) => v,
                None => match self.tree.get(&k)? {
                    Some(v) if v.len() == 2 => (v[0], v[1]),
                    _ => (0, 0),
                },
            };
            let seen_now = seen | a.bits | TOTAL;
            if seen_now == seen {
                continue;
            }
            staged.insert(k.clone(), (seen_now, sent));
            batch.insert(k, &[seen_now, sent]);
            batch.insert(prefixed(PENDING, &[&g]), &[]);
        }
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        self.received
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Makes the day's batch when the UTC day has turned since the last
    /// one, then deletes windows that have passed. Gives how many items it
    /// queued.
    pub(crate) fn tick(&self, now: i64) -> Result<usize, RelayError> {
        let _w = self.write.lock();
        let today = utc_day(now);
        let queued = self.batch_if_due(today)?;
        self.discard_before(window_of(today))?;
        Ok(queued)
    }

    /// The batch of the days before `today` not batched yet, if any.
    fn batch_if_due(&self, today: i64) -> Result<usize, RelayError> {
        match self.tree.get(META_BATCH_DAY)?.and_then(|v| day_from(&v)) {
            Some(last) if today > last => self.batch(today),
            Some(_) => Ok(0),
            None => {
                self.tree.insert(META_BATCH_DAY, &day_bytes(today))?;
                self.db.flush()?;
                Ok(0)
            }
        }
    }

    /// One batch: per changed group and window, the senders new since the
    /// last batch, dated the day before `today` (or the window's last day,
    /// so that a window's counts stay in it), shuffled, queued and closed
    /// in one atomic write.
    fn batch(&self, today: i64) -> Result<usize, RelayError> {
        let mut items: Vec<(String, proto::FeedbackItem)> = Vec::new();
        let mut done: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let windows: Vec<sled::IVec> = self
            .tree
            .scan_prefix([KEY])
            .keys()
            .collect::<Result<_, _>>()?;
        let mut relayed: std::collections::HashMap<Vec<u8>, u32> = Default::default();
        for kv in self.tree.scan_prefix([PENDING]) {
            let (pk, _) = kv?;
            done.push((pk.to_vec(), None));
            let g = &pk[1..];
            let Some((origin, seq, outcome)) = parse_group(g) else {
                continue;
            };
            for w in &windows {
                let Some(w_bytes) = w.get(1..9) else { continue };
                let index =
                    (u64::from_be_bytes(w_bytes.try_into().expect("8 bytes")) ^ (1 << 63)) as i64;
                let date = (today - 1).min((index + 1) * WINDOW_DAYS - 1);
                let (mut total, mut blocked, mut closed) = (0u32, 0u32, 0u32);
                for kv in self.tree.scan_prefix(prefixed(SENDER, &[w_bytes, g])) {
                    let (k, v) = kv?;
                    if v.len() != 2 || k.len() != 1 + 8 + g.len() + HASH_LEN {
                        continue;
                    }
                    let (seen, sent) = (v[0], v[1]);
                    let new = seen & !sent;
                    total += u32::from(new & TOTAL != 0);
                    blocked += u32::from(new & BLOCKED != 0);
                    closed += u32::from(new & CLOSED != 0);
                    if new != 0 {
                        done.push((k.to_vec(), Some(vec![seen, seen])));
                    }
                }
                for (action, n) in [
                    (None, total),
                    (Some(Action::Blocked), blocked),
                    (Some(Action::Closed), closed),
                ] {
                    if n == 0 {
                        continue;
                    }
                    let bits = action.map_or(0, |a| bits_of(&[a]));
                    let rk = prefixed(RELAYED, &[g, &[bits], &day_bytes(date)]);
                    let before = match relayed.get(&rk) {
                        Some(&b) => b,
                        None => self
                            .tree
                            .get(&rk)?
                            .filter(|v| v.len() == 4)
                            .map_or(0, |v| u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
                    };
                    relayed.insert(rk, before + n);
                    items.push((
                        origin.clone(),
                        proto::FeedbackItem {
                            seq,
                            outcome: super::outcome_to_wire(outcome) as i32,
                            actions: action
                                .and_then(super::action_to_wire)
                                .map(|a| a as i32)
                                .into_iter()
                                .collect(),
                            date: day_string(date),
                            anonymous_senders: n,
                        },
                    ));
                }
            }
        }
        items.shuffle(&mut rand::rngs::OsRng);
        let queued = self.out.keyed(&items)?;
        done.extend(
            relayed
                .into_iter()
                .map(|(k, n)| (k, Some(n.to_be_bytes().to_vec()))),
        );
        done.push((META_BATCH_DAY.to_vec(), Some(day_bytes(today).to_vec())));
        // The items queued and the batch closed in one atomic write: a
        // crash leaves both or neither.
        (&self.tree, self.out.tree())
            .transaction(|(t, o)| {
                for (k, v) in &queued {
                    o.insert(k.as_slice(), v.as_slice())?;
                }
                for (k, v) in &done {
                    match v {
                        Some(v) => t.insert(k.as_slice(), v.as_slice())?,
                        None => t.remove(k.as_slice())?,
                    };
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => RelayError::Db(e),
                sled::transaction::TransactionError::Abort(()) => {
                    RelayError::Db(sled::Error::Unsupported("aborted".into()))
                }
            })?;
        self.db.flush()?;
        self.out.pushed(queued.len());
        if !items.is_empty() {
            tracing::info!(
                items = items.len(),
                "anonymous feedback batch queued for its origins"
            );
        }
        Ok(items.len())
    }

    /// Deletes the keys and sender hashes of windows before `window`.
    fn discard_before(&self, window: u64) -> Result<(), RelayError> {
        let mut gone = sled::Batch::default();
        let mut any = false;
        for k in self.tree.scan_prefix([KEY]).keys() {
            let k = k?;
            let Some(w) = k.get(1..9).and_then(|b| b.try_into().ok()) else {
                continue;
            };
            if u64::from_be_bytes(w) >= window {
                continue;
            }
            any = true;
            for sk in self.tree.scan_prefix(prefixed(SENDER, &[&k[1..9]])).keys() {
                gone.remove(sk?);
            }
            gone.remove(k);
        }
        if any {
            self.tree.apply_batch(gone)?;
            self.db.flush()?;
            tracing::info!("anonymous feedback: a past window's key and sender hashes deleted");
        }
        Ok(())
    }

    /// Everything this relay forwarded, for the outcome figures.
    pub(crate) fn relayed(&self) -> Result<Vec<Relayed>, RelayError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([RELAYED]) {
            let (k, v) = kv?;
            let k = &k[1..];
            if k.len() < 9 + 1 + 8 || v.len() != 4 {
                continue;
            }
            let (g, rest) = k.split_at(k.len() - 9);
            let Some((origin, seq, outcome)) = parse_group(g) else {
                continue;
            };
            let action = match rest[0] {
                0 => None,
                BLOCKED => Some(Action::Blocked),
                CLOSED => Some(Action::Closed),
                _ => continue,
            };
            let Some(day) = day_from(&rest[1..]) else {
                continue;
            };
            out.push(Relayed {
                origin,
                seq,
                outcome,
                action,
                day,
                senders: u64::from(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            });
        }
        Ok(out)
    }
}

/// Whether this node relays anonymous feedback under `list`: its feedback
/// on, and its own entry an operator's with `feedback` and `replicate`.
pub(crate) fn relays(mode: Mode, list: &TrustList, node_id: &str) -> Result<(), &'static str> {
    if mode == Mode::Off {
        return Err("its [feedback] mode is off");
    }
    let me = list
        .member(node_id)
        .ok_or("it is not on the trust list in force")?;
    if me.kind != MemberKind::Operator as i32 {
        return Err("it is not an operator's node");
    }
    if !TrustList::has_capability(me, PeerCapability::Feedback) {
        return Err("its trust-list entry lacks the feedback capability");
    }
    // A relay checks every item against the origin's log as it holds it.
    if !TrustList::has_capability(me, PeerCapability::Replicate) {
        return Err("its trust-list entry lacks the replicate capability");
    }
    Ok(())
}

/// What the RelayFeedback handler needs besides the request.
pub(crate) struct RelayReceiver<'a> {
    pub relay: Option<&'a Relay>,
    pub mode: Mode,
    pub node_id: &'a str,
    pub store: &'a Store,
    pub list: &'a TrustList,
    pub counters: &'a Counters,
    pub now: i64,
}

impl RelayReceiver<'_> {
    /// Answers `req` from `member` (authorized for `feedback` already). The
    /// member's id is used for the keyed hash only: refusals are counted
    /// under [`ANONYMOUS`] and logged without it.
    pub(crate) fn receive(
        &self,
        member: &str,
        req: &proto::RelayFeedbackRequest,
    ) -> Result<proto::FeedbackResponse, FeedbackError> {
        let relay = match (self.relay, relays(self.mode, self.list, self.node_id)) {
            (Some(r), Ok(())) => r,
            (_, Err(why)) => {
                self.counters
                    .request_refused(ANONYMOUS, RequestRefusal::FeedbackNoRelay);
                return Err(FeedbackError::NoRelay(why));
            }
            (None, Ok(())) => {
                self.counters
                    .request_refused(ANONYMOUS, RequestRefusal::FeedbackNoRelay);
                return Err(FeedbackError::NoRelay("its feedback is off"));
            }
        };
        admit(
            req.items.len(),
            &relay.limits,
            member,
            ANONYMOUS,
            self.counters,
            self.now,
        )?;
        let mut results = Vec::with_capacity(req.items.len());
        let mut accepted = Vec::new();
        let mut adds = AddLookup::new(self.store, true);
        for (i, item) in req.items.iter().enumerate() {
            match self.check(member, i, item, &mut adds)? {
                Checked::Accept(a) => {
                    accepted.push(a);
                    results.push(proto::FeedbackResult {
                        accepted: true,
                        ..Default::default()
                    });
                }
                Checked::Refuse(refusal) => {
                    self.counters.request_refused(ANONYMOUS, refusal.reason);
                    tracing::warn!(field = %refusal.field, rule = %refusal.rule, "anonymous feedback item refused");
                    results.push(refusal.result());
                }
                Checked::Later(later) => results.push(later.result()),
            }
        }
        let later = results.iter().filter(|r| r.retry_later).count() as u64;
        relay.limits.refund(member, later, self.now as f64);
        if !accepted.is_empty() {
            relay.record(member, self.now, &accepted)?;
        }
        Ok(proto::FeedbackResponse { results })
    }

    fn check(
        &self,
        member: &str,
        i: usize,
        r: &proto::RelayedFeedback,
        adds: &mut AddLookup<'_>,
    ) -> Result<Checked<Accepted>, crate::store::StoreError> {
        let refuse = |field: &str, rule: &str, reason| {
            Checked::Refuse(ItemRefusal {
                field: format!("items[{i}].{field}"),
                rule: rule.to_string(),
                reason,
            })
        };
        let Some(item) = &r.item else {
            return Ok(refuse("item", "required", RequestRefusal::FeedbackSeq));
        };
        let (outcome, actions, day) =
            match check_fields(&format!("items[{i}].item"), item, self.now) {
                Ok(f) => f,
                Err(r) => return Ok(Checked::Refuse(r)),
            };
        if item.anonymous_senders != 0 {
            return Ok(refuse(
                "item.anonymous_senders",
                "must be 0: the relay counts the senders",
                RequestRefusal::FeedbackAnonymous,
            ));
        }
        let origin = r.origin.as_str();
        if self.list.member(origin).is_none() {
            return Ok(refuse(
                "origin",
                "must be a member on the trust list in force",
                RequestRefusal::FeedbackOrigin,
            ));
        }
        if origin == self.node_id {
            return Ok(refuse(
                "origin",
                "must not be the relay: its own indicators take named feedback",
                RequestRefusal::FeedbackOrigin,
            ));
        }
        if origin == member {
            return Ok(refuse(
                "origin",
                "must not be the sender: a member gives no feedback on its own indicators",
                RequestRefusal::FeedbackOrigin,
            ));
        }
        let add = match adds.check(origin, item.seq, "the origin's log as this relay holds it")? {
            Found::Add(add) => add,
            Found::Refuse(rule) => {
                return Ok(refuse("item.seq", &rule, RequestRefusal::FeedbackSeq))
            }
            Found::Later(rule) => {
                return Ok(Checked::Later(Later {
                    field: format!("items[{i}].item.seq"),
                    rule,
                }))
            }
        };
        if let Err(rule) = add.not_before(day) {
            return Ok(refuse("item.date", &rule, RequestRefusal::FeedbackDate));
        }
        Ok(Checked::Accept(Accepted {
            origin: origin.to_string(),
            seq: item.seq,
            outcome,
            bits: bits_of(&actions),
        }))
    }
}

/// The batch task: looks at the node's clock every second, until `stop`.
pub(crate) async fn run(relay: Arc<Relay>, clock: Clock, stop: CancellationToken) {
    loop {
        let r = relay.clone();
        let now = clock.now();
        match tokio::task::spawn_blocking(move || r.tick(now)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "anonymous feedback batch not made; tried again")
            }
            Err(_) => tracing::error!("anonymous feedback batch task failed; tried again"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::DAY;

    fn accepted(origin: &str, seq: u64, outcome: FeedbackOutcome, bits: u8) -> Accepted {
        Accepted {
            origin: origin.into(),
            seq,
            outcome,
            bits,
        }
    }

    fn drain(r: &Relay) -> Vec<(String, proto::FeedbackItem)> {
        let mut out = Vec::new();
        for o in r.out.origins().unwrap() {
            let q = r.out.next(&o, 10_000).unwrap();
            let keys: Vec<_> = q.iter().map(|q| q.key.clone()).collect();
            out.extend(q.into_iter().map(|q| (o.clone(), q.item)));
            r.out.remove(&keys, keys.len() as u64, 0).unwrap();
        }
        out.sort_by_key(|(o, i)| (o.clone(), i.seq, i.outcome, i.actions.clone()));
        out
    }

    #[test]
    fn counts_distinct_senders_once_a_day_and_forgets_them_with_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let day0 = 20_430; // the first day of a window (20430 = 681 * 30)
        let at = |d: i64| d * DAY + 3600;
        let r = Relay::open(dir.path()).unwrap();
        assert_eq!(
            r.tick(at(day0)).unwrap(),
            0,
            "the first day starts the count"
        );
        let fp = FeedbackOutcome::FalsePositive;
        r.record("bank-a", at(day0), &[accepted("liaison-a", 3, fp, 0)])
            .unwrap();
        // The same sender again, with an action: not a second sender.
        r.record("bank-a", at(day0), &[accepted("liaison-a", 3, fp, BLOCKED)])
            .unwrap();
        r.record("bank-b", at(day0), &[accepted("liaison-a", 3, fp, 0)])
            .unwrap();
        r.record(
            "bank-b",
            at(day0),
            &[accepted("liaison-b", 9, FeedbackOutcome::Confirmed, CLOSED)],
        )
        .unwrap();
        assert_eq!(
            r.tick(at(day0) + 3600).unwrap(),
            0,
            "nothing before the day ends"
        );
        assert_eq!(r.counts().pending, 2);
        assert_eq!(r.tick(at(day0 + 1)).unwrap(), 4);
        let items = drain(&r);
        let shown: Vec<_> = items
            .iter()
            .map(|(o, i)| {
                (
                    o.as_str(),
                    i.seq,
                    i.outcome,
                    i.actions.clone(),
                    i.anonymous_senders,
                    i.date.clone(),
                )
            })
            .collect();
        let date = day_string(day0);
        let (c, f) = (
            proto::FeedbackOutcome::Confirmed as i32,
            proto::FeedbackOutcome::FalsePositive as i32,
        );
        let (b, cl) = (
            proto::FeedbackAction::Blocked as i32,
            proto::FeedbackAction::Closed as i32,
        );
        assert_eq!(
            shown,
            [
                ("liaison-a", 3, f, vec![], 2, date.clone()),
                ("liaison-a", 3, f, vec![b], 1, date.clone()),
                ("liaison-b", 9, c, vec![], 1, date.clone()),
                ("liaison-b", 9, c, vec![cl], 1, date.clone()),
            ]
        );
        // A sender already counted adds nothing the next day; a new one does.
        r.record("bank-a", at(day0 + 1), &[accepted("liaison-a", 3, fp, 0)])
            .unwrap();
        r.record("bank-c", at(day0 + 1), &[accepted("liaison-a", 3, fp, 0)])
            .unwrap();
        assert_eq!(r.tick(at(day0 + 2)).unwrap(), 1);
        let items = drain(&r);
        assert_eq!(items[0].1.anonymous_senders, 1);
        assert_eq!(
            r.relayed().unwrap().iter().map(|x| x.senders).sum::<u64>(),
            6
        );

        // No sender id anywhere in the relay's files.
        drop(r);
        for entry in walk(dir.path()) {
            let data = std::fs::read(&entry).unwrap();
            for id in [b"bank-a".as_slice(), b"bank-b", b"bank-c"] {
                assert!(
                    !data.windows(id.len()).any(|w| w == id),
                    "{} holds {}",
                    entry.display(),
                    String::from_utf8_lossy(id)
                );
            }
        }
        // A new window: the old key and hashes are gone, so a sender counts
        // again (stated in README), and the forwarded counts stay.
        let r = Relay::open(dir.path()).unwrap();
        let next = day0 + WINDOW_DAYS;
        r.tick(at(next)).unwrap();
        assert_eq!(r.tree.scan_prefix([KEY]).count(), 0);
        assert_eq!(r.tree.scan_prefix([SENDER]).count(), 0);
        r.record("bank-a", at(next), &[accepted("liaison-a", 3, fp, 0)])
            .unwrap();
        assert_eq!(r.tick(at(next + 1)).unwrap(), 1);
        assert_eq!(
            r.relayed().unwrap().iter().map(|x| x.senders).sum::<u64>(),
            7
        );
    }

    #[test]
    fn each_windows_counts_stay_in_that_window_and_a_batch_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let last = 20_459; // the last day of a window (682 * 30 - 1)
        let at = |d: i64| d * DAY + 60;
        let fp = FeedbackOutcome::FalsePositive;
        {
            let r = Relay::open(dir.path()).unwrap();
            r.tick(at(last)).unwrap();
            r.record("bank-a", at(last), &[accepted("liaison-a", 1, fp, 0)])
                .unwrap();
            // Past midnight, before any tick: the day's batch is made first,
            // and the same sender counts anew in the new window.
            r.record("bank-a", at(last + 1), &[accepted("liaison-a", 1, fp, 0)])
                .unwrap();
            assert_eq!(r.out.pending(), 1);
            r.tick(at(last + 2)).unwrap();
            let items = drain(&r);
            let dated: Vec<_> = items
                .iter()
                .map(|(_, i)| (i.date.clone(), i.anonymous_senders))
                .collect();
            assert_eq!(
                dated,
                [(day_string(last), 1), (day_string(last + 1), 1)],
                "each window's count dated within it"
            );
        }
        // Reopened: the batches were closed with their items; nothing again.
        let r = Relay::open(dir.path()).unwrap();
        assert_eq!(r.tick(at(last + 3)).unwrap(), 0);
        assert_eq!(r.counts().pending, 0);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
