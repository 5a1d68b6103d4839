//! The alert engine: keeps the open alerts equal to what the index holds
//! for the watchlist's entries, and appends every difference to the alert
//! log.
//!
//! An alert is one (watch entry, origin, case reference) triple. It is
//! open while at least one of its *members* (an indicator token of that
//! origin and case whose watch hash names the entry) is active: not
//! retracted, not expired, not frozen by fork evidence or a suspension,
//! under a key epoch valid now. It is `raised` when it opens, `updated`
//! when its tier or expiry changes, `withdrawn` when its last member goes.
//! A rekey adds a member under the new epoch to an alert already open:
//! nothing new is raised.
//!
//! One thread owns the state and takes work in order from a queue: every
//! batch the origin logs apply (`logs::Applied`, tokens only), watch
//! entries registered or removed, and a tick each second (expiry; a full
//! re-check when the frozen origins or the valid epochs change). Each
//! round's events and state changes go to the log in one durable write
//! ([`AlertLog::append`]) before anything is changed in memory, so a failed
//! write changes nothing and is tried again by a re-scan.
//!
//! A triple a disposition settled (`confirmed`, `false_positive`,
//! [`crate::dispositions`]) is never raised again: an alert open when it
//! is settled stays open (listed, with its disposition) until its members
//! go, and whatever indicator of the same origin and case matches the
//! entry later (a re-contribution after a retraction, a rekey, a scan)
//! raises nothing. Each raised alert's last state is also kept, under
//! [`ALERT_PREFIX`], after its withdrawal: what a disposition or a case
//! package of it reads ([`alert_of`]).
//!
//! At start, the open alerts are read back from the log's state, checked
//! again, and the whole index is scanned (in 256 steps, each under a short
//! read lock): whatever was applied before a stop but not yet alerted is
//! raised then (cause `recovered`). An indicator applied therefore always
//! has its alerts, whatever stopped the node in between.
//!
//! Every (watch entry, indicator) match found is told to flood control
//! ([`crate::flood`]); while the indicator is quarantined, an alert not yet
//! open for it is not raised (paused), and a lift's re-scan raises it.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::Duration,
};

use parking_lot::{Mutex, RwLock};
use prost::Message;

use crate::{
    alerts::log::{Action, AlertEvent, AlertLog, AlertLogError, Cause},
    dispositions::{Dispositions, Triple},
    epochs::Keys,
    flood::Flood,
    ident::Kind,
    index::{Index, Indicator, Tier},
    logs::{Applied, OriginLogs},
    proto::{self, LogOp},
    screening::subject,
    telemetry::chain,
    time::Clock,
    token::Token,
    watchlist::{EntryId, Watchlist},
};

/// The state-tree key of the next alert id.
const NEXT_KEY: &[u8] = b"next";

/// The state-tree prefix of every raised alert's last state (`a` + its id),
/// kept after its withdrawal.
const ALERT_PREFIX: u8 = b'a';

fn alert_key(alert: u64) -> Vec<u8> {
    [&[ALERT_PREFIX][..], &alert.to_be_bytes()].concat()
}

/// How often the engine looks at the clock (expiry) when no work arrives.
const TICK: Duration = Duration::from_secs(1);

/// Every this many ticks, every open alert is checked again even if
/// nothing seemed to change.
const FULL_CHECK_TICKS: u32 = 60;

/// The environment variable that holds a test build's engine before it
/// takes its next piece of work, while the file it names exists (at most
/// five minutes): a test can then stop the node between an indicator's
/// apply and its alerts. Honoured only by debug builds and builds with the
/// `test-clock` feature; a release build ignores it.
#[cfg_attr(not(any(debug_assertions, feature = "test-clock")), allow(dead_code))]
const TEST_HOLD_ENV: &str = "CIX_TEST_ALERTS_HOLD_FILE";

/// Waits while [`TEST_HOLD_ENV`] names a file that exists.
fn test_hold() {
    #[cfg(any(debug_assertions, feature = "test-clock"))]
    if let Some(path) = std::env::var_os(TEST_HOLD_ENV).filter(|p| !p.is_empty()) {
        let path = std::path::PathBuf::from(path);
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Work for the engine's thread.
enum Work {
    Applied(Applied),
    Registered(Vec<(EntryId, Vec<(u32, Token)>)>),
    Removed(Vec<EntryId>),
    /// Scan the whole index again (a new trust list may have lifted a
    /// freeze or a suspension).
    Rescan,
    Stop,
}

/// What the engine has done, for Status and metrics.
#[derive(Default)]
struct Stats {
    open: AtomicU64,
    raised: AtomicU64,
    updated: AtomicU64,
    withdrawn: AtomicU64,
    pending: AtomicU64,
    scans: AtomicU64,
    write_failures: AtomicU64,
    busy_micros: AtomicU64,
}

/// The engine's figures as Status reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MonitorStatus {
    /// Alerts open now.
    pub open: u64,
    /// Events logged since the start, by action.
    pub raised: u64,
    pub updated: u64,
    pub withdrawn: u64,
    /// Work queued and not yet done (applied batches, registrations).
    pub pending: u64,
    /// Whole-index scans done since the start (the start's included).
    pub scans: u64,
    /// Rounds whose write to the alert log failed (each re-scanned later).
    pub write_failures: u64,
    /// Time spent on applied batches since the start, milliseconds.
    pub busy_ms: u64,
}

/// What the engine needs to run.
pub(crate) struct Deps {
    pub watchlist: Arc<Watchlist>,
    pub log: Arc<AlertLog>,
    pub index: Arc<RwLock<Index>>,
    pub keys: Keys,
    pub clock: Clock,
    /// This node's member id: its own batches are `contributed`.
    pub node_id: String,
    /// The triples settled by a disposition: never raised again.
    pub dispositions: Arc<Dispositions>,
    /// Flood control: counts the watch entries each indicator matches and
    /// pauses the alerts of a quarantined one (none in some unit tests).
    pub flood: Option<Arc<Flood>>,
}

/// The handle every service holds: queues work for the engine's thread.
pub(crate) struct Monitor {
    tx: mpsc::Sender<Work>,
    rx: Mutex<Option<mpsc::Receiver<Work>>>,
    stats: Arc<Stats>,
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor::new()
    }
}

impl Monitor {
    /// A monitor whose queue fills until [`Monitor::start`].
    pub(crate) fn new() -> Monitor {
        let (tx, rx) = mpsc::channel();
        Monitor {
            tx,
            rx: Mutex::new(Some(rx)),
            stats: Arc::default(),
        }
    }

    fn send(&self, w: Work) {
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(w).is_err() {
            self.stats.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// New or completed watch entries with their tokens (epoch, token):
    /// alerts for what already matches (the baseline). Queued; returns at
    /// once.
    pub(crate) fn registered(&self, entries: &[(EntryId, Vec<(u32, Token)>)]) {
        if !entries.is_empty() {
            self.send(Work::Registered(entries.to_vec()));
        }
    }

    /// Watch entries removed: their open alerts are withdrawn. Queued;
    /// returns at once.
    pub(crate) fn removed(&self, entries: &[EntryId]) {
        if !entries.is_empty() {
            self.send(Work::Removed(entries.to_vec()));
        }
    }

    /// Scans the whole index again (after a new trust list).
    pub(crate) fn rescan(&self) {
        self.send(Work::Rescan);
    }

    /// Stops the engine's thread after the work queued before.
    pub(crate) fn stop(&self) {
        let _ = self.tx.send(Work::Stop);
    }

    /// The engine's figures now.
    pub(crate) fn status(&self) -> MonitorStatus {
        let s = &self.stats;
        MonitorStatus {
            open: s.open.load(Ordering::Relaxed),
            raised: s.raised.load(Ordering::Relaxed),
            updated: s.updated.load(Ordering::Relaxed),
            withdrawn: s.withdrawn.load(Ordering::Relaxed),
            pending: s.pending.load(Ordering::Relaxed),
            scans: s.scans.load(Ordering::Relaxed),
            write_failures: s.write_failures.load(Ordering::Relaxed),
            busy_ms: s.busy_micros.load(Ordering::Relaxed) / 1000,
        }
    }

    /// Starts the engine's thread: it tells `logs` to queue every batch
    /// applied from now on, reads the open alerts back, checks them, scans
    /// the index, then takes the queue in order. Once only; `None` if
    /// already started.
    pub(crate) fn start(
        &self,
        deps: Deps,
        logs: &OriginLogs,
    ) -> Option<std::thread::JoinHandle<()>> {
        let rx = self.rx.lock().take()?;
        let tx = self.tx.clone();
        let stats = self.stats.clone();
        let pending = self.stats.clone();
        logs.on_applied(Box::new(move |a| {
            pending.pending.fetch_add(1, Ordering::Relaxed);
            if tx.send(Work::Applied(a)).is_err() {
                pending.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }));
        std::thread::Builder::new()
            .name("cix-alerts".into())
            .spawn(move || Engine::new(deps, stats).run(rx))
            .ok()
    }
}

/// A raised alert as its last state says (open or withdrawn since).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AlertView {
    pub alert: u64,
    pub entry: EntryId,
    pub origin: String,
    pub case_ref: String,
    pub reference: String,
    pub kind: Kind,
    pub tier: Tier,
    pub created: i64,
    pub valid_until: Option<i64>,
    pub epoch: u32,
    pub seq: u64,
}

/// The last state of alert `alert` of `log`, if it was ever raised (and
/// raised by a build that keeps it, or is open).
pub(crate) fn alert_of(log: &AlertLog, alert: u64) -> Result<Option<AlertView>, AlertLogError> {
    let v = match log.state_record(&alert_key(alert))? {
        Some(v) => v,
        None => match log.state_record(&alert.to_be_bytes())? {
            Some(v) => v,
            None => return Ok(None),
        },
    };
    let o = Open::decode(&v).ok_or_else(|| AlertLogError::Corrupt(format!("alert {alert}")))?;
    let s = o.shown.expect("decoded alerts are shown");
    Ok(Some(AlertView {
        alert: o.alert,
        entry: o.entry,
        origin: o.origin.to_string(),
        case_ref: o.case.to_string(),
        reference: o.reference,
        kind: o.kind,
        tier: s.tier,
        created: s.created,
        valid_until: s.valid_until,
        epoch: s.epoch,
        seq: s.seq,
    }))
}

/// What an alert's last event said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shown {
    tier: Tier,
    created: i64,
    valid_until: Option<i64>,
    epoch: u32,
    seq: u64,
}

impl Shown {
    fn of(i: &Indicator) -> Shown {
        Shown {
            tier: i.tier,
            created: i.created,
            valid_until: i.valid_until,
            epoch: i.epoch,
            seq: i.seq,
        }
    }

    /// Whether a change from `self` to `new` is an `updated` event (a
    /// new epoch or sequence number alone is not).
    fn differs(&self, new: &Shown) -> bool {
        self.tier != new.tier || self.valid_until != new.valid_until
    }
}

/// One open alert (or one being opened in this round).
#[derive(Clone, Debug)]
struct Open {
    alert: u64,
    entry: EntryId,
    origin: Arc<str>,
    case: Arc<str>,
    reference: String,
    kind: Kind,
    members: Vec<Token>,
    /// `None` until its first event (raised) is logged.
    shown: Option<Shown>,
}

impl Open {
    fn encode(&self) -> Vec<u8> {
        let s = self.shown.expect("only logged alerts are stored");
        proto::OpenAlert {
            alert: self.alert,
            entry: self.entry,
            origin: self.origin.to_string(),
            case_ref: self.case.to_string(),
            watch_reference: self.reference.clone(),
            kind: i32::from(self.kind.code()),
            members: self.members.iter().flat_map(|t| t.0).collect(),
            tier: s.tier as i32,
            created_unix: s.created,
            valid_until_unix: s.valid_until.unwrap_or(0),
            epoch: s.epoch,
            seq: s.seq,
        }
        .encode_to_vec()
    }

    fn decode(b: &[u8]) -> Option<Open> {
        let p = proto::OpenAlert::decode(b).ok()?;
        if p.members.len() % 32 != 0 {
            return None;
        }
        Some(Open {
            alert: p.alert,
            entry: p.entry,
            origin: p.origin.into(),
            case: p.case_ref.into(),
            reference: p.watch_reference,
            kind: u8::try_from(p.kind).ok().and_then(Kind::from_code)?,
            members: p
                .members
                .chunks(32)
                .filter_map(|c| Token::from_slice(c).ok())
                .collect(),
            shown: Some(Shown {
                tier: Tier::from_code(p.tier)?,
                created: p.created_unix,
                valid_until: (p.valid_until_unix != 0).then_some(p.valid_until_unix),
                epoch: p.epoch,
                seq: p.seq,
            }),
        })
    }
}

/// Whether one member still holds its alert open.
enum Member {
    Active(Indicator),
    Gone(Cause),
}

/// The engine's thread: the open alerts, and what it needs to check them.
struct Engine {
    d: Deps,
    stats: Arc<Stats>,
    open: HashMap<u64, Open>,
    by_triple: HashMap<Triple, u64>,
    by_entry: HashMap<EntryId, Vec<u64>>,
    next_alert: u64,
    /// What the last full check saw: the epochs valid and the frozen
    /// origins; a change calls for another.
    seen: (Vec<u32>, Vec<(String, u64)>),
    /// A write failed: scan again at the next tick.
    dirty: bool,
}

/// One round's outcome before it is written: the alerts touched (their
/// new state, or withdrawn) and the events.
#[derive(Default)]
struct Round {
    /// Alert ids touched, in the order first touched.
    touched: Vec<u64>,
    seen: HashSet<u64>,
    /// Working copies of the touched alerts (new ones included).
    work: HashMap<u64, Open>,
    /// Alerts opened in this round, by triple.
    new: HashMap<Triple, u64>,
    /// The cause of a withdrawal known before the index is read (the
    /// entry was removed).
    why: HashMap<u64, Cause>,
    next_alert: u64,
}

impl Engine {
    fn new(d: Deps, stats: Arc<Stats>) -> Engine {
        Engine {
            d,
            stats,
            open: HashMap::new(),
            by_triple: HashMap::new(),
            by_entry: HashMap::new(),
            next_alert: 1,
            seen: (Vec::new(), Vec::new()),
            dirty: false,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Work>) {
        self.load();
        self.check_all();
        self.scan(Cause::Recovered);
        self.seen = self.signature(self.d.clock.now());
        let mut ticks = 0u32;
        loop {
            match rx.recv_timeout(TICK) {
                Ok(w) => {
                    test_hold();
                    self.stats.pending.fetch_sub(1, Ordering::Relaxed);
                    if !self.work(w) {
                        return;
                    }
                    // Take what queued meanwhile before the tick's checks.
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            ticks += 1;
            let now = self.d.clock.now();
            let seen = self.signature(now);
            if self.dirty {
                self.dirty = false;
                self.load();
                self.check_all();
                self.scan(Cause::Recovered);
            } else if seen.0 != self.seen.0 {
                // An epoch began or ended: its indicators count or no longer do.
                self.check_all();
                self.scan(Cause::Recovered);
            } else if seen.1 != self.seen.1 || ticks % FULL_CHECK_TICKS == 0 {
                self.check_all();
                if seen.1.len() < self.seen.1.len() {
                    // A freeze lifted: what it hid counts again.
                    self.scan(Cause::Recovered);
                }
            } else {
                self.check_due(now);
            }
            self.seen = seen;
        }
    }

    /// Does one piece of work; `false` to stop.
    fn work(&mut self, w: Work) -> bool {
        match w {
            Work::Applied(a) => {
                let started = std::time::Instant::now();
                let cause = self.cause_of(&a);
                self.on_tokens(&a.tokens, cause, cause);
                self.stats
                    .busy_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            Work::Registered(entries) => self.on_registered(&entries),
            Work::Removed(ids) => self.on_removed(&ids),
            Work::Rescan => self.scan(Cause::Recovered),
            Work::Stop => return false,
        }
        true
    }

    /// The epochs valid now and the frozen origins, sorted.
    fn signature(&self, now: i64) -> (Vec<u32>, Vec<(String, u64)>) {
        let mut epochs = self.valid_epochs(now);
        epochs.sort_unstable();
        let mut frozen = self.d.index.read().frozen();
        frozen.sort();
        (epochs, frozen)
    }

    fn valid_epochs(&self, now: i64) -> Vec<u32> {
        self.d.keys.get().valid_at(now).map(|e| e.id).collect()
    }

    /// What an applied batch is, for its events: a raise or withdrawal it
    /// causes is `contributed` (this node's log) or `replicated`, an
    /// extension `extended`, a retraction `retracted`.
    fn cause_of(&self, a: &Applied) -> Cause {
        match a.op {
            LogOp::Retract => Cause::Retracted,
            LogOp::Extend => Cause::Extended,
            _ if a.origin == self.d.node_id => Cause::Contributed,
            _ => Cause::Replicated,
        }
    }

    /// Reads the open alerts back from the log's state.
    fn load(&mut self) {
        self.open.clear();
        self.by_triple.clear();
        self.by_entry.clear();
        self.next_alert = 1;
        let records = match self.d.log.state() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %chain(&e), "alert state not read; scanning again in a second");
                self.dirty = true;
                return;
            }
        };
        for (k, v) in records {
            if k.first() == Some(&ALERT_PREFIX) {
                continue;
            }
            if k == NEXT_KEY {
                if let Ok(b) = <[u8; 8]>::try_from(v.as_slice()) {
                    self.next_alert = self.next_alert.max(u64::from_be_bytes(b));
                }
                continue;
            }
            match Open::decode(&v) {
                Some(o) => {
                    self.next_alert = self.next_alert.max(o.alert + 1);
                    self.index_open(o);
                }
                None => tracing::error!("an open alert's record does not decode; left as it is"),
            }
        }
        self.stats
            .open
            .store(self.open.len() as u64, Ordering::Relaxed);
    }

    fn index_open(&mut self, o: Open) {
        self.by_triple
            .insert((o.entry, o.origin.clone(), o.case.clone()), o.alert);
        self.by_entry.entry(o.entry).or_default().push(o.alert);
        self.open.insert(o.alert, o);
    }

    fn unindex_open(&mut self, alert: u64) {
        if let Some(o) = self.open.remove(&alert) {
            self.by_triple
                .remove(&(o.entry, o.origin.clone(), o.case.clone()));
            if let Some(v) = self.by_entry.get_mut(&o.entry) {
                v.retain(|a| *a != alert);
                if v.is_empty() {
                    self.by_entry.remove(&o.entry);
                }
            }
        }
    }

    fn round(&self) -> Round {
        Round {
            next_alert: self.next_alert,
            ..Round::default()
        }
    }

    /// The working copy of an open alert in this round.
    fn touch<'r>(&self, r: &'r mut Round, alert: u64) -> Option<&'r mut Open> {
        if let std::collections::hash_map::Entry::Vacant(v) = r.work.entry(alert) {
            v.insert(self.open.get(&alert)?.clone());
        }
        if r.seen.insert(alert) {
            r.touched.push(alert);
        }
        r.work.get_mut(&alert)
    }

    /// Tokens some batch changed (or a scan found): each token whose watch
    /// hash names entries is looked up in the index, and every alert of
    /// those entries it is (or was) a member of is checked again.
    /// `gone` is the cause of a member whose index entry is gone or no
    /// longer of its case; `raise` the cause of an alert opened.
    fn on_tokens(&mut self, tokens: &[Token], raise: Cause, gone: Cause) {
        let wl = &self.d.watchlist;
        if wl.len() == 0 {
            return;
        }
        let hashes: Vec<_> = tokens.iter().map(|t| wl.hash(t)).collect();
        let found: Vec<(EntryId, Token)> = wl
            .lookup_all(&hashes)
            .into_iter()
            .map(|(at, id)| (id, tokens[at]))
            .collect();
        if found.is_empty() {
            return;
        }
        self.check_members(&found, raise, gone);
    }

    /// For each (entry, token): opens or joins the alerts of the token's
    /// active indicators, leaves the alerts of the entry it no longer
    /// holds open, and writes what changed.
    fn check_members(&mut self, found: &[(EntryId, Token)], raise: Cause, gone: Cause) {
        let now = self.d.clock.now();
        let valid = self.valid_epochs(now);
        let mut r = self.round();
        let mut new_entries: HashMap<EntryId, Option<(String, Kind)>> = HashMap::new();
        {
            let index = self.d.index.read();
            for (id, t) in found {
                let act: Vec<Indicator> = index
                    .active(t, now)
                    .filter(|i| valid.contains(&i.epoch))
                    .collect();
                for i in &act {
                    let key: Triple = (*id, i.origin.clone(), i.case_ref.clone());
                    let paused = self
                        .d
                        .flood
                        .as_ref()
                        .is_some_and(|f| f.watch_match(subject(i), *id, now));
                    let alert = match self.by_triple.get(&key).or(r.new.get(&key)) {
                        Some(a) => *a,
                        None if self.d.dispositions.is_settled(&key) => {
                            self.d.dispositions.not_raised();
                            continue;
                        }
                        None if paused => {
                            if let Some(f) = &self.d.flood {
                                f.paused();
                            }
                            continue;
                        }
                        None => {
                            let alert = r.next_alert;
                            r.next_alert += 1;
                            r.work.insert(
                                alert,
                                Open {
                                    alert,
                                    entry: *id,
                                    origin: i.origin.clone(),
                                    case: i.case_ref.clone(),
                                    reference: String::new(),
                                    kind: i.kind,
                                    members: Vec::new(),
                                    shown: None,
                                },
                            );
                            r.new.insert(key, alert);
                            new_entries.insert(*id, None);
                            alert
                        }
                    };
                    if let Some(o) = self.touch(&mut r, alert) {
                        if !o.members.contains(t) {
                            o.members.push(*t);
                        }
                    }
                }
                // The entry's alerts this token was a member of and no
                // longer holds open are checked in `settle`.
                for alert in self.by_entry.get(id).cloned().unwrap_or_default() {
                    if self.open.get(&alert).is_some_and(|o| o.members.contains(t)) {
                        self.touch(&mut r, alert);
                    }
                }
            }
        }
        // References of entries with a new alert (read from the watchlist's files).
        for (id, v) in new_entries.iter_mut() {
            *v = match self.d.watchlist.entry(*id) {
                Ok(Some(e)) => Some((e.reference, e.kind)),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %chain(&e), "watch entry not read; its alert waits for the next scan");
                    self.dirty = true;
                    None
                }
            };
        }
        for o in r.work.values_mut().filter(|o| o.shown.is_none()) {
            match new_entries.get(&o.entry).cloned().flatten() {
                Some((reference, kind)) => {
                    o.reference = reference;
                    o.kind = kind;
                }
                // Removed meanwhile (or unreadable): nothing to raise.
                None => o.members.clear(),
            }
        }
        self.settle(r, now, &valid, raise, gone);
    }

    /// Checks every member of the touched alerts against the index, makes
    /// the events, writes them with the new state and, once written, keeps
    /// the new state.
    fn settle(&mut self, mut r: Round, now: i64, valid: &[u32], raise: Cause, gone: Cause) {
        let mut events = Vec::new();
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        {
            let index = self.d.index.read();
            for alert in &r.touched {
                let Some(o) = r.work.get_mut(alert) else {
                    continue;
                };
                let mut best: Option<Indicator> = None;
                let mut why = r.why.get(alert).copied().unwrap_or(gone);
                let (origin, case) = (o.origin.clone(), o.case.clone());
                o.members.retain(
                    |t| match member(&index, t, &origin, &case, now, valid, gone) {
                        Member::Active(i) => {
                            if best
                                .as_ref()
                                .is_none_or(|b| (i.epoch, i.seq) > (b.epoch, b.seq))
                            {
                                best = Some(i);
                            }
                            true
                        }
                        Member::Gone(c) => {
                            why = c;
                            false
                        }
                    },
                );
                let key = alert.to_be_bytes().to_vec();
                match (best, o.shown) {
                    (None, None) => {}
                    (None, Some(s)) => {
                        events.push(event(o, &s, Action::Withdrawn, why, now));
                        writes.push((key, None));
                    }
                    (Some(b), None) => {
                        let s = Shown::of(&b);
                        o.shown = Some(s);
                        events.push(event(o, &s, Action::Raised, raise, now));
                        writes.push((alert_key(*alert), Some(o.encode())));
                        writes.push((key, Some(o.encode())));
                    }
                    (Some(b), Some(old)) => {
                        let s = Shown::of(&b);
                        o.shown = Some(s);
                        if old.differs(&s) {
                            let cause = if raise == Cause::Registered || raise == Cause::Recovered {
                                raise
                            } else {
                                gone
                            };
                            events.push(event(o, &s, Action::Updated, cause, now));
                        }
                        writes.push((alert_key(*alert), Some(o.encode())));
                        writes.push((key, Some(o.encode())));
                    }
                }
            }
        }
        if writes.is_empty() {
            return;
        }
        if r.next_alert != self.next_alert {
            writes.push((NEXT_KEY.to_vec(), Some(r.next_alert.to_be_bytes().to_vec())));
        }
        let counts = events.iter().fold([0u64; 3], |mut c, e: &AlertEvent| {
            c[match e.action {
                Action::Raised => 0,
                Action::Updated => 1,
                Action::Withdrawn => 2,
            }] += 1;
            c
        });
        if let Err(e) = self.d.log.append(events, writes) {
            tracing::error!(error = %chain(&e), "alert events not written; scanning again in a second");
            self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
            self.dirty = true;
            return;
        }
        self.next_alert = r.next_alert;
        for alert in r.touched {
            let Some(o) = r.work.remove(&alert) else {
                continue;
            };
            self.unindex_open(alert);
            if o.shown.is_some() && !o.members.is_empty() {
                self.index_open(o);
            }
        }
        let s = &self.stats;
        s.raised.fetch_add(counts[0], Ordering::Relaxed);
        s.updated.fetch_add(counts[1], Ordering::Relaxed);
        s.withdrawn.fetch_add(counts[2], Ordering::Relaxed);
        s.open.store(self.open.len() as u64, Ordering::Relaxed);
    }

    /// Baseline: what new entries' tokens already match.
    fn on_registered(&mut self, entries: &[(EntryId, Vec<(u32, Token)>)]) {
        let found: Vec<(EntryId, Token)> = entries
            .iter()
            .flat_map(|(id, ts)| ts.iter().map(move |(_, t)| (*id, *t)))
            .collect();
        self.check_members(&found, Cause::Registered, Cause::Retracted);
    }

    /// Removed entries: every open alert of theirs is withdrawn.
    fn on_removed(&mut self, ids: &[EntryId]) {
        let now = self.d.clock.now();
        let mut r = self.round();
        for id in ids {
            for alert in self.by_entry.get(id).cloned().unwrap_or_default() {
                if let Some(o) = self.touch(&mut r, alert) {
                    o.members.clear();
                    r.why.insert(alert, Cause::EntryRemoved);
                }
            }
        }
        let valid = self.valid_epochs(now);
        self.settle(r, now, &valid, Cause::EntryRemoved, Cause::EntryRemoved);
    }

    /// Checks every open alert's members (and that its entry still holds
    /// them: an entry removed while the node was down withdraws its
    /// alerts).
    fn check_all(&mut self) {
        let alerts: Vec<u64> = self.open.keys().copied().collect();
        self.check_alerts(&alerts);
    }

    /// Checks the open alerts whose expiry has passed.
    fn check_due(&mut self, now: i64) {
        let due: Vec<u64> = self
            .open
            .values()
            .filter(|o| {
                o.shown
                    .and_then(|s| s.valid_until)
                    .is_some_and(|u| u <= now)
            })
            .map(|o| o.alert)
            .collect();
        self.check_alerts(&due);
    }

    fn check_alerts(&mut self, alerts: &[u64]) {
        if alerts.is_empty() {
            return;
        }
        // In alert order, so that one round's events come in a stable order.
        let mut alerts = alerts.to_vec();
        alerts.sort_unstable();
        let now = self.d.clock.now();
        let valid = self.valid_epochs(now);
        let wl = self.d.watchlist.clone();
        let mut r = self.round();
        for alert in &alerts {
            if let Some(o) = self.touch(&mut r, *alert) {
                let entry = o.entry;
                o.members
                    .retain(|t| wl.lookup(&wl.hash(t)).contains(&entry));
                if o.members.is_empty() {
                    r.why.insert(*alert, Cause::EntryRemoved);
                }
            }
        }
        self.settle(r, now, &valid, Cause::Recovered, Cause::Retracted);
    }

    /// Scans every token of the index against the watchlist, in 256 steps
    /// (each holding the index's read lock only to copy one step's tokens).
    fn scan(&mut self, cause: Cause) {
        self.stats.scans.fetch_add(1, Ordering::Relaxed);
        if self.d.watchlist.len() == 0 {
            return;
        }
        let started = std::time::Instant::now();
        for p in 0..=255u8 {
            let tokens = self.d.index.read().tokens_under8(p);
            self.on_tokens(&tokens, cause, Cause::Retracted);
        }
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            open = self.open.len(),
            "index scanned against the watchlist"
        );
    }
}

/// Whether one member token still holds alert `o` open, and if not why.
fn member(
    index: &Index,
    t: &Token,
    origin: &str,
    case: &str,
    now: i64,
    valid: &[u32],
    gone: Cause,
) -> Member {
    let Some(e) = index.entry_of(t, origin) else {
        return Member::Gone(gone);
    };
    let i = index.resolve(*t, &e);
    if &*i.case_ref != case {
        return Member::Gone(gone);
    }
    if index.frozen_from(origin).is_some_and(|f| e.seq >= f) {
        return Member::Gone(Cause::Frozen);
    }
    if !e.active_at(now) {
        return Member::Gone(Cause::Expired);
    }
    if !valid.contains(&e.epoch) {
        return Member::Gone(Cause::EpochEnded);
    }
    Member::Active(i)
}

fn event(o: &Open, s: &Shown, action: Action, cause: Cause, now: i64) -> AlertEvent {
    AlertEvent {
        number: 0,
        alert: o.alert,
        action,
        cause,
        reference: o.reference.clone(),
        kind: o.kind,
        origin: o.origin.to_string(),
        case_ref: o.case.to_string(),
        tier: s.tier,
        created: s.created,
        valid_until: s.valid_until,
        epoch: s.epoch,
        seq: s.seq,
        recorded: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        batch::{self, Batch},
        epochs::{Epoch, KeyRing},
        keys::{signing::SigningKeyFile, TokenKey},
        proto::BatchHeader,
        token::Tokenizer,
        watchlist::{NewEntry, Removal, WatchKey},
    };

    struct T {
        _tmp: tempfile::TempDir,
        engine: Engine,
        wl: Arc<Watchlist>,
        log: Arc<AlertLog>,
        index: Arc<RwLock<Index>>,
        clock: Clock,
        signer: SigningKeyFile,
    }

    fn epoch(id: u32, from: i64, until: i64) -> Epoch {
        let key = TokenKey::from_hex(&format!("{id:02x}").repeat(32)).unwrap();
        Epoch {
            id,
            valid_from: from,
            valid_until: until,
            fingerprint: String::new(),
            tokenizer: Tokenizer::new(&key),
        }
    }

    fn setup() -> T {
        let tmp = tempfile::tempdir().unwrap();
        let kp = tmp.path().join("watch.key");
        WatchKey::generate(&kp).unwrap();
        let wl = Arc::new(
            Watchlist::open(&tmp.path().join("watchlist"), WatchKey::load(&kp).unwrap()).unwrap(),
        );
        let log = Arc::new(AlertLog::open(&tmp.path().join("alerts")).unwrap());
        let index = Arc::new(RwLock::new(Index::new()));
        let clock = Clock::fixed(1_000.0);
        let engine = engine_of(
            &wl,
            &log,
            &index,
            &clock,
            vec![epoch(1, 0, 5_000), epoch(2, 0, 9_000)],
        );
        T {
            _tmp: tmp,
            engine,
            wl,
            log,
            index,
            clock,
            signer: SigningKeyFile::generate(),
        }
    }

    fn engine_of(
        wl: &Arc<Watchlist>,
        log: &Arc<AlertLog>,
        index: &Arc<RwLock<Index>>,
        clock: &Clock,
        epochs: Vec<Epoch>,
    ) -> Engine {
        let mut e = Engine::new(
            Deps {
                watchlist: wl.clone(),
                log: log.clone(),
                index: index.clone(),
                keys: Keys::new(KeyRing::new(epochs)),
                clock: clock.clone(),
                node_id: "bank".into(),
                dispositions: Arc::new(
                    Dispositions::open(sled::Config::new().temporary(true).open().unwrap())
                        .unwrap(),
                ),
                flood: None,
            },
            Arc::default(),
        );
        e.load();
        e
    }

    fn tok(b: u8) -> Token {
        Token([b; 32])
    }

    /// A batch of `origin` (email entries of `tokens`, one epoch).
    #[allow(clippy::too_many_arguments)]
    fn batch_of(
        t: &T,
        origin: &str,
        op: LogOp,
        first: u64,
        tokens: &[u8],
        epoch: u32,
        case: &str,
        tier: i32,
        valid_until: i64,
    ) -> Batch {
        let header = BatchHeader {
            origin: origin.into(),
            first_seq: first,
            created_unix: 900,
            op: op as i32,
            case_ref: case.into(),
            tier,
            valid_until_unix: valid_until,
            ..Default::default()
        };
        let entries = tokens
            .iter()
            .map(|b| batch::entry(&tok(*b), 6, epoch))
            .collect();
        batch::sign(header, entries, &t.signer)
    }

    fn apply(t: &mut T, b: Batch) {
        t.index.write().apply(&b).unwrap();
        let a = Applied {
            origin: b.header.origin.clone(),
            op: LogOp::try_from(b.header.op).unwrap(),
            tokens: b
                .raw
                .entries
                .iter()
                .map(|e| Token::from_slice(&e.token).unwrap())
                .collect(),
        };
        assert!(t.engine.work(Work::Applied(a)));
    }

    fn watch(t: &mut T, reference: &str, tokens: &[(u32, u8)]) -> EntryId {
        let tokens: Vec<(u32, Token)> = tokens.iter().map(|(e, b)| (*e, tok(*b))).collect();
        let (_, id) =
            t.wl.add(&[NewEntry {
                reference: reference.into(),
                kind: Kind::Email,
                tokens: tokens.clone(),
            }])
            .unwrap()[0];
        assert!(t.engine.work(Work::Registered(vec![(id, tokens)])));
        id
    }

    type Seen = (Action, Cause, String, String, String);

    fn events(t: &T) -> Vec<Seen> {
        t.log
            .read(0, 1000)
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.cause, e.reference, e.origin, e.case_ref))
            .collect()
    }

    fn ev(a: Action, c: Cause, r: &str, o: &str, case: &str) -> Seen {
        (a, c, r.into(), o.into(), case.into())
    }

    #[test]
    fn raised_updated_withdrawn_and_raised_again_as_batches_apply() {
        let mut t = setup();
        watch(&mut t, "C-1", &[(1, 7)]);
        watch(&mut t, "C-2", &[(1, 8)]);
        assert!(events(&t).is_empty(), "nothing matches yet");
        let b = batch_of(&t, "bank", LogOp::Add, 1, &[7, 8, 9], 1, "K", 1, 3_000);
        apply(&mut t, b);
        let b = batch_of(&t, "liaison", LogOp::Add, 1, &[7], 1, "L", 2, 0);
        apply(&mut t, b);
        let b = batch_of(&t, "bank", LogOp::Extend, 4, &[7], 1, "", 0, 4_000);
        apply(&mut t, b);
        let b = batch_of(&t, "bank", LogOp::Retract, 5, &[8], 1, "", 0, 0);
        apply(&mut t, b);
        let b = batch_of(&t, "bank", LogOp::Add, 6, &[8], 1, "K", 1, 0);
        apply(&mut t, b);
        use Action::*;
        assert_eq!(
            events(&t),
            vec![
                ev(Raised, Cause::Contributed, "C-1", "bank", "K"),
                ev(Raised, Cause::Contributed, "C-2", "bank", "K"),
                ev(Raised, Cause::Replicated, "C-1", "liaison", "L"),
                ev(Updated, Cause::Extended, "C-1", "bank", "K"),
                ev(Withdrawn, Cause::Retracted, "C-2", "bank", "K"),
                ev(Raised, Cause::Contributed, "C-2", "bank", "K"),
            ]
        );
        let all = t.log.read(0, 1000).unwrap();
        assert_eq!(
            all.iter().map(|e| e.number).collect::<Vec<_>>(),
            (1..=6).collect::<Vec<_>>()
        );
        assert_eq!(all[3].valid_until, Some(4_000));
        assert_eq!(all[2].tier, Tier::Probable);
        assert_eq!(all[0].alert, all[3].alert, "one alert per triple");
        assert_ne!(all[1].alert, all[5].alert, "a new alert after a withdrawal");
        assert_eq!(t.engine.open.len(), 3);
    }

    #[test]
    fn a_settled_triple_is_never_raised_again_and_under_review_stops_nothing() {
        use crate::dispositions::{About, Outcome, Target};
        let mut t = setup();
        let c1 = watch(&mut t, "C-1", &[(1, 7)]);
        let b = batch_of(&t, "liaison", LogOp::Add, 1, &[7], 1, "L", 1, 0);
        apply(&mut t, b);
        let settle = |t: &T, d: &str| {
            let about = About {
                origin: "liaison".into(),
                seq: 1,
                case_ref: "L".into(),
                watch_reference: "C-1".into(),
                entry: Some(c1),
            };
            let o = Outcome::parse(d, &[], "").unwrap();
            t.engine
                .d
                .dispositions
                .record(Target::Alert(1), o, about, 1_000)
                .unwrap();
        };
        settle(&t, "confirmed");
        // The open alert stays open until its members go.
        assert_eq!(t.engine.open.len(), 1);
        let b = batch_of(&t, "liaison", LogOp::Retract, 2, &[7], 1, "", 0, 0);
        apply(&mut t, b);
        let b = batch_of(&t, "liaison", LogOp::Add, 3, &[7], 1, "L", 1, 0);
        apply(&mut t, b);
        t.engine.scan(Cause::Recovered);
        use Action::*;
        assert_eq!(
            events(&t),
            vec![
                ev(Raised, Cause::Replicated, "C-1", "liaison", "L"),
                ev(Withdrawn, Cause::Retracted, "C-1", "liaison", "L"),
            ]
        );
        assert_eq!(t.engine.d.dispositions.counts().not_raised, 2);
        // A later under_review unsettles it: the next match raises.
        settle(&t, "under_review");
        t.engine.scan(Cause::Recovered);
        assert_eq!(
            events(&t).last().unwrap(),
            &ev(Raised, Cause::Recovered, "C-1", "liaison", "L")
        );
        assert!(
            alert_of(&t.log, 1).unwrap().is_some(),
            "kept after withdrawal"
        );
    }

    #[test]
    fn a_rekey_raises_nothing_and_the_alert_lasts_until_its_last_epoch() {
        let mut t = setup();
        watch(&mut t, "C-1", &[(1, 7), (2, 17)]);
        let b = batch_of(&t, "liaison", LogOp::Add, 1, &[7], 1, "L", 1, 0);
        apply(&mut t, b);
        // The same indicator under epoch 2 (a rekey), then epoch 1 ends.
        let b = batch_of(&t, "liaison", LogOp::Add, 2, &[17], 2, "L", 1, 0);
        apply(&mut t, b);
        assert_eq!(events(&t).len(), 1, "{:?}", events(&t));
        t.clock.set(6_000.0);
        t.engine.check_all();
        assert_eq!(events(&t).len(), 1, "the epoch-2 copy holds it open");
        t.clock.set(9_500.0);
        t.engine.check_all();
        assert_eq!(
            events(&t).last().unwrap(),
            &ev(Action::Withdrawn, Cause::EpochEnded, "C-1", "liaison", "L")
        );
    }

    #[test]
    fn expiry_freeze_baseline_and_removal() {
        let mut t = setup();
        let b = batch_of(&t, "liaison", LogOp::Add, 1, &[7, 8, 9], 1, "L", 1, 2_000);
        apply(&mut t, b);
        let b = batch_of(&t, "other", LogOp::Add, 1, &[9], 1, "O", 1, 0);
        apply(&mut t, b);
        watch(&mut t, "C-7", &[(1, 7)]);
        let c8 = watch(&mut t, "C-8", &[(1, 8)]);
        watch(&mut t, "C-9", &[(1, 9)]);
        t.wl.remove(&[Removal::Reference("C-8".into())]).unwrap();
        assert!(t.engine.work(Work::Removed(vec![c8])));
        t.clock.set(2_500.0);
        t.engine.check_due(2_500);
        t.index.write().set_frozen("other", Some(1));
        t.engine.check_all();
        use Action::*;
        assert_eq!(
            events(&t),
            vec![
                ev(Raised, Cause::Registered, "C-7", "liaison", "L"),
                ev(Raised, Cause::Registered, "C-8", "liaison", "L"),
                ev(Raised, Cause::Registered, "C-9", "liaison", "L"),
                ev(Raised, Cause::Registered, "C-9", "other", "O"),
                ev(Withdrawn, Cause::EntryRemoved, "C-8", "liaison", "L"),
                ev(Withdrawn, Cause::Expired, "C-7", "liaison", "L"),
                ev(Withdrawn, Cause::Expired, "C-9", "liaison", "L"),
                ev(Withdrawn, Cause::Frozen, "C-9", "other", "O"),
            ]
        );
        assert!(t.engine.open.is_empty());
    }

    #[test]
    fn a_restart_reads_the_open_alerts_back_and_a_scan_finds_what_was_not_alerted() {
        let mut t = setup();
        watch(&mut t, "C-1", &[(1, 7)]);
        watch(&mut t, "C-2", &[(1, 8)]);
        let b = batch_of(&t, "liaison", LogOp::Add, 1, &[7], 1, "L", 1, 0);
        apply(&mut t, b);
        // Applied to the index, never shown to the engine (a kill -9).
        let b = batch_of(&t, "liaison", LogOp::Add, 2, &[8], 1, "L", 1, 0);
        t.index.write().apply(&b).unwrap();
        let first = t.engine.open.keys().copied().collect::<Vec<_>>();
        let mut again = engine_of(&t.wl, &t.log, &t.index, &t.clock, vec![epoch(1, 0, 5_000)]);
        assert_eq!(again.open.keys().copied().collect::<Vec<_>>(), first);
        again.check_all();
        again.scan(Cause::Recovered);
        let e = events(&t);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[1],
            ev(Action::Raised, Cause::Recovered, "C-2", "liaison", "L")
        );
        let all = t.log.read(0, 10).unwrap();
        assert!(
            all[1].alert > all[0].alert,
            "alert ids go on after a restart"
        );
    }
}
