//! The alert log: one durable, gap-free, numbered log of alert events per
//! node, in its own sled database (`<data_dir>/alerts`), beside the engine's
//! state (which alerts are open, opaque to this module) and the durable
//! cursors of the sinks (the webhook). An event is flushed to disk before
//! any consumer can see it: [`AlertLog::append`] wakes subscribers only
//! after the flush. Also here: the event's one JSON form (the webhook's body
//! and `cix alerts --format jsonl`), its protobuf form (on disk and on the
//! wire), the live stream of events from a cursor ([`AlertLog::follow`]),
//! and the retention purge, which never drops an event a configured sink
//! has not acknowledged. Watch references are on disk here (the bank's own
//! opaque keys) but never in a log line or an error message.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;
use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    ident::Kind,
    index::Tier,
    proto,
    time::{format_time, Clock},
};

/// What happened to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// The triple gained its first active indicator.
    Raised,
    /// Its tier or expiry changed.
    Updated,
    /// It has no active indicator left.
    Withdrawn,
}

/// Why it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// A contribution at this node (its own origin log).
    Contributed,
    /// A batch from a peer.
    Replicated,
    /// A new watch entry that already matches (the baseline).
    Registered,
    /// Found at start: applied before a stop, not yet alerted.
    Recovered,
    /// The indicator was retracted.
    Retracted,
    /// The indicator expired.
    Expired,
    /// Fork evidence froze the origin, or the origin was suspended.
    Frozen,
    /// The indicator's key epoch is no longer valid.
    EpochEnded,
    /// The watch entry was removed.
    EntryRemoved,
    /// An extension moved the expiry.
    Extended,
}

const ACTIONS: [(Action, proto::AlertAction, &str); 3] = [
    (Action::Raised, proto::AlertAction::Raised, "raised"),
    (Action::Updated, proto::AlertAction::Updated, "updated"),
    (
        Action::Withdrawn,
        proto::AlertAction::Withdrawn,
        "withdrawn",
    ),
];

const CAUSES: [(Cause, proto::AlertCause, &str); 10] = [
    (
        Cause::Contributed,
        proto::AlertCause::Contributed,
        "contributed",
    ),
    (
        Cause::Replicated,
        proto::AlertCause::Replicated,
        "replicated",
    ),
    (
        Cause::Registered,
        proto::AlertCause::Registered,
        "registered",
    ),
    (Cause::Recovered, proto::AlertCause::Recovered, "recovered"),
    (Cause::Retracted, proto::AlertCause::Retracted, "retracted"),
    (Cause::Expired, proto::AlertCause::Expired, "expired"),
    (Cause::Frozen, proto::AlertCause::Frozen, "frozen"),
    (
        Cause::EpochEnded,
        proto::AlertCause::EpochEnded,
        "epoch_ended",
    ),
    (
        Cause::EntryRemoved,
        proto::AlertCause::EntryRemoved,
        "entry_removed",
    ),
    (Cause::Extended, proto::AlertCause::Extended, "extended"),
];

/// The row of `v` in its table (every value has one).
fn row<T: Copy + PartialEq, P: Copy>(
    table: &'static [(T, P, &'static str)],
    v: T,
) -> &'static (T, P, &'static str) {
    table
        .iter()
        .find(|r| r.0 == v)
        .expect("every value has a row in its table")
}

/// The value of a protobuf code, if the table has it.
fn by_code<T: Copy, P: Copy + Into<i32>>(table: &[(T, P, &str)], code: i32) -> Option<T> {
    table.iter().find(|r| r.1.into() == code).map(|r| r.0)
}

impl Action {
    /// The lower-case word of the JSON form and the CLI.
    pub(crate) fn as_str(self) -> &'static str {
        row(&ACTIONS, self).2
    }
}

impl Cause {
    /// The lower-case word of the JSON form and the CLI (`epoch_ended`).
    pub(crate) fn as_str(self) -> &'static str {
        row(&CAUSES, self).2
    }
}

/// One event of the alert log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AlertEvent {
    /// Position in the log, from 1, without gaps (set by
    /// [`AlertLog::append`], ignored on input).
    pub number: u64,
    /// This node's id of the (watch entry, origin, case reference) triple.
    pub alert: u64,
    pub action: Action,
    pub cause: Cause,
    /// The bank's own reference of the watch entry.
    pub reference: String,
    pub kind: Kind,
    /// Member id of the contributor.
    pub origin: String,
    pub case_ref: String,
    pub tier: Tier,
    /// Unix seconds: when the indicator was contributed, and its expiry.
    pub created: i64,
    pub valid_until: Option<i64>,
    pub epoch: u32,
    /// The add entry's sequence number in the origin's log.
    pub seq: u64,
    /// Unix seconds, node clock: when the event was logged.
    pub recorded: i64,
}

fn timestamp(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

impl AlertEvent {
    /// The protobuf form: the wire's, and the log's on disk.
    pub(crate) fn to_proto(&self) -> proto::AlertEvent {
        proto::AlertEvent {
            number: self.number,
            alert: self.alert,
            action: row(&ACTIONS, self.action).1.into(),
            cause: row(&CAUSES, self.cause).1.into(),
            watch_reference: self.reference.clone(),
            kind: i32::from(self.kind.code()),
            origin: self.origin.clone(),
            case_ref: self.case_ref.clone(),
            tier: self.tier as i32,
            created_at: Some(timestamp(self.created)),
            valid_until: self.valid_until.map(timestamp),
            epoch: self.epoch,
            seq: self.seq,
            recorded_at: Some(timestamp(self.recorded)),
        }
    }

    /// The event of a protobuf form; `None` if an enum holds a value this
    /// build does not know.
    pub(crate) fn from_proto(p: &proto::AlertEvent) -> Option<AlertEvent> {
        let secs = |t: &Option<prost_types::Timestamp>| t.as_ref().map_or(0, |t| t.seconds);
        Some(AlertEvent {
            number: p.number,
            alert: p.alert,
            action: by_code(&ACTIONS, p.action)?,
            cause: by_code(&CAUSES, p.cause)?,
            reference: p.watch_reference.clone(),
            kind: u8::try_from(p.kind).ok().and_then(Kind::from_code)?,
            origin: p.origin.clone(),
            case_ref: p.case_ref.clone(),
            tier: Tier::from_code(p.tier)?,
            created: secs(&p.created_at),
            valid_until: p.valid_until.as_ref().map(|t| t.seconds),
            epoch: p.epoch,
            seq: p.seq,
            recorded: secs(&p.recorded_at),
        })
    }

    /// The event's JSON form, the one the webhook posts and `cix alerts
    /// --format jsonl` prints: the protobuf's field names, times in RFC
    /// 3339, kind, tier, action and cause as lower-case words.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "number": self.number,
            "alert": self.alert,
            "action": self.action.as_str(),
            "cause": self.cause.as_str(),
            "watch_reference": self.reference,
            "kind": self.kind.as_str(),
            "origin": self.origin,
            "case_ref": self.case_ref,
            "tier": self.tier.as_str(),
            "created_at": format_time(self.created),
            "valid_until": self.valid_until.map(format_time),
            "epoch": self.epoch,
            "seq": self.seq,
            "recorded_at": format_time(self.recorded),
        })
    }
}

/// Why the alert log failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertLogError {
    #[error("opening the alert log in {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("the alert log's database")]
    Db(#[from] sled::Error),
    #[error("alert log record {0} does not decode")]
    Corrupt(String),
    #[error("events after {after} are no longer retained: the oldest retained event is {oldest}")]
    Expired { after: u64, oldest: u64 },
    #[error("{after} is beyond the newest event of this node's alert log, {newest}")]
    Ahead { after: u64, newest: u64 },
}

/// A record of the engine's state tree: (key, value), both opaque here.
pub(crate) type StateRecord = (Vec<u8>, Vec<u8>);
/// A write to it: (key, `Some(value)` to insert, `None` to remove).
pub(crate) type StateWrite = (Vec<u8>, Option<Vec<u8>>);

/// The sled record (meta tree) of the newest number given, which outlives
/// the purge of every event.
const NEWEST: &[u8] = b"newest";

/// The alert log. `Send + Sync`; appends are serialized inside.
pub(crate) struct AlertLog {
    db: sled::Db,
    events: sled::Tree,
    state: sled::Tree,
    cursors: sled::Tree,
    meta: sled::Tree,
    newest: AtomicU64,
    oldest: AtomicU64,
    /// Held by `append` and `purge`: one numbering, one purge at a time.
    writing: Mutex<()>,
    notify: watch::Sender<u64>,
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn number_of(key: &[u8]) -> Result<u64, AlertLogError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| AlertLogError::Corrupt("event key".into()))
}

impl AlertLog {
    /// Opens (or creates) the log in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<AlertLog, AlertLogError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(8 * 1024 * 1024)
            .use_compression(false);
        let db = crate::store::open_db(&config).map_err(|source| AlertLogError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        let events = db.open_tree("events")?;
        let meta = db.open_tree("meta")?;
        let newest = match meta.get(NEWEST)? {
            Some(v) => number_of(&v)?,
            None => 0,
        };
        let oldest = match events.first()? {
            Some((k, _)) => number_of(&k)?,
            None => newest + 1,
        };
        Ok(AlertLog {
            state: db.open_tree("state")?,
            cursors: db.open_tree("cursors")?,
            events,
            meta,
            db,
            newest: AtomicU64::new(newest),
            oldest: AtomicU64::new(oldest),
            writing: Mutex::new(()),
            notify: watch::channel(newest).0,
        })
    }

    /// Appends events (numbered from newest+1, no gaps) and applies the
    /// engine's state writes (key, `Some(value)` = insert, `None` = remove)
    /// in one sled transaction, flushed before it returns; then wakes
    /// subscribers. Returns the numbers given.
    // The alert engine is the caller.
    pub(crate) fn append(
        &self,
        mut events: Vec<AlertEvent>,
        state: Vec<StateWrite>,
    ) -> Result<Range<u64>, AlertLogError> {
        let _writing = self.writing.lock();
        let first = self.newest.load(Ordering::Acquire) + 1;
        for (i, e) in events.iter_mut().enumerate() {
            e.number = first + i as u64;
        }
        let end = first + events.len() as u64;
        let encoded: Vec<(u64, Vec<u8>)> = events
            .iter()
            .map(|e| (e.number, e.to_proto().encode_to_vec()))
            .collect();
        (&self.events, &self.state, &self.meta)
            .transaction(|(ev, st, meta)| {
                for (n, bytes) in &encoded {
                    ev.insert(&be(*n), bytes.as_slice())?;
                }
                for (k, v) in &state {
                    match v {
                        Some(v) => st.insert(k.as_slice(), v.as_slice())?,
                        None => st.remove(k.as_slice())?,
                    };
                }
                if !encoded.is_empty() {
                    meta.insert(NEWEST, &be(end - 1))?;
                }
                Ok::<_, ConflictableTransactionError<AlertLogError>>(())
            })
            .map_err(transaction_error)?;
        self.db.flush()?;
        if !encoded.is_empty() {
            self.newest.store(end - 1, Ordering::Release);
            // Subscribers learn of the events only now that they are durable.
            self.notify.send_replace(end - 1);
        }
        Ok(first..end)
    }

    /// Every record of the engine's state tree (read at the engine's start).
    pub(crate) fn state(&self) -> Result<Vec<StateRecord>, AlertLogError> {
        self.state
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Into::into))
            .collect()
    }

    /// One record of the engine's state tree.
    pub(crate) fn state_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, AlertLogError> {
        Ok(self.state.get(key)?.map(|v| v.to_vec()))
    }

    /// Events numbered > `after`, at most `limit`, in order. An `after`
    /// below oldest-1 is [`AlertLogError::Expired`] (naming the oldest
    /// retained number); one beyond the newest is [`AlertLogError::Ahead`].
    pub(crate) fn read(&self, after: u64, limit: usize) -> Result<Vec<AlertEvent>, AlertLogError> {
        let newest = self.newest();
        if after > newest {
            return Err(AlertLogError::Ahead { after, newest });
        }
        let expired = || AlertLogError::Expired {
            after,
            oldest: self.oldest(),
        };
        if after.saturating_add(1) < self.oldest() {
            return Err(expired());
        }
        let mut out = Vec::with_capacity(limit.min(1024));
        // Only up to the newest published: what is not yet flushed stays unseen.
        for r in self.events.range(be(after + 1)..=be(newest)).take(limit) {
            let (k, v) = r?;
            let n = number_of(&k)?;
            // A purge between the check above and this read.
            if n != after + 1 + out.len() as u64 {
                return Err(expired());
            }
            out.push(decode(n, &v)?);
        }
        Ok(out)
    }

    /// The newest event's number; 0 when none was ever appended.
    pub(crate) fn newest(&self) -> u64 {
        self.newest.load(Ordering::Acquire)
    }

    /// The oldest retained event's number (newest+1 when none is retained).
    pub(crate) fn oldest(&self) -> u64 {
        self.oldest.load(Ordering::Acquire)
    }

    /// The newest number, as it changes (after each durable append).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// The durable cursor of sink `name`: the last event it acknowledged
    /// (0: none).
    pub(crate) fn cursor(&self, name: &str) -> Result<u64, AlertLogError> {
        match self.cursors.get(name)? {
            Some(v) => number_of(&v),
            None => Ok(0),
        }
    }

    /// Moves sink `name`'s cursor to `number`, flushed before it returns.
    pub(crate) fn set_cursor(&self, name: &str, number: u64) -> Result<(), AlertLogError> {
        self.cursors.insert(name, &be(number))?;
        self.db.flush()?;
        Ok(())
    }

    /// Deletes the events recorded before `recorded_before` (unix seconds)
    /// and numbered at most `delivered`, oldest first, stopping at the
    /// first that must stay. Returns how many went.
    pub(crate) fn purge(&self, recorded_before: i64, delivered: u64) -> Result<u64, AlertLogError> {
        let _writing = self.writing.lock();
        let mut batch = sled::Batch::default();
        let mut last = None;
        for r in self.events.range(..=be(delivered)) {
            let (k, v) = r?;
            let n = number_of(&k)?;
            if decode(n, &v)?.recorded >= recorded_before {
                break;
            }
            batch.remove(k);
            last = Some(n);
        }
        let Some(last) = last else {
            return Ok(0);
        };
        let gone = last + 1 - self.oldest();
        // Readers see the new oldest first, so none reads a hole unawares.
        self.oldest.store(last + 1, Ordering::Release);
        self.events.apply_batch(batch)?;
        self.db.flush()?;
        Ok(gone)
    }

    /// The live stream of every event numbered > `after`: first the
    /// retained backlog, read from the log in pages of `page`, then each
    /// new event once it is durable, until the receiver is dropped or
    /// `stop`. The channel holds at most one page: a slow reader holds
    /// nothing but its place in the log. A cursor the log no longer holds
    /// (older than the oldest retained event, or beyond the newest) is an
    /// error at once; one that retention passes while the reader lags ends
    /// the stream with that error.
    pub(crate) fn follow(
        self: &Arc<Self>,
        after: u64,
        page: usize,
        stop: CancellationToken,
    ) -> Result<mpsc::Receiver<Result<AlertEvent, AlertLogError>>, AlertLogError> {
        // The first page now, so that a bad cursor is the call's error.
        let first = self.read(after, page)?;
        let (tx, rx) = mpsc::channel(page.max(1));
        let log = self.clone();
        let mut newest = self.subscribe();
        tokio::spawn(async move {
            let mut after = after;
            let mut events = first;
            loop {
                if events.is_empty() {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tx.closed() => return,
                        changed = newest.wait_for(|n| *n > after) => {
                            if changed.is_err() {
                                return;
                            }
                        }
                    }
                }
                for e in events.drain(..) {
                    after = e.number;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        sent = tx.send(Ok(e)) => if sent.is_err() { return },
                    }
                }
                match log.read(after, page) {
                    Ok(next) => events = next,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

fn decode(n: u64, v: &[u8]) -> Result<AlertEvent, AlertLogError> {
    proto::AlertEvent::decode(v)
        .ok()
        .and_then(|p| AlertEvent::from_proto(&p))
        .ok_or_else(|| AlertLogError::Corrupt(format!("event {n}")))
}

fn transaction_error(e: TransactionError<AlertLogError>) -> AlertLogError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

/// The retention purge, every `interval` until `stop`: deletes the events
/// recorded (by `clock`) longer than `retention` ago that every sink named
/// in `sinks` has acknowledged (with no sink: every such event).
pub(crate) async fn retain(
    log: Arc<AlertLog>,
    retention: Duration,
    interval: Duration,
    sinks: Vec<&'static str>,
    clock: Clock,
    stop: CancellationToken,
) {
    loop {
        let cutoff = clock
            .now()
            .saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
        let log2 = log.clone();
        let sinks2 = sinks.clone();
        let purged = tokio::task::spawn_blocking(move || {
            let mut delivered = log2.newest();
            for s in &sinks2 {
                delivered = delivered.min(log2.cursor(s)?);
            }
            log2.purge(cutoff, delivered)
        })
        .await;
        match purged {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                events = n,
                "alert log: delivered events past retention purged"
            ),
            Ok(Err(e)) => tracing::error!(error = %crate::telemetry::chain(&e), "alert log purge"),
            Err(e) => tracing::error!(error = %e, "alert log purge"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event as the engine would give it (number left to append).
    pub(crate) fn event(alert: u64, recorded: i64) -> AlertEvent {
        AlertEvent {
            number: 0,
            alert,
            action: Action::Raised,
            cause: Cause::Replicated,
            reference: format!("cust-{alert}"),
            kind: Kind::Iban,
            origin: "liaison".into(),
            case_ref: "case-1".into(),
            tier: Tier::Probable,
            created: 1_700_000_000,
            valid_until: Some(1_800_000_000),
            epoch: 1,
            seq: 7,
            recorded,
        }
    }

    #[test]
    fn numbering_goes_on_without_gaps_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AlertLog::open(dir.path()).unwrap();
            assert_eq!((log.newest(), log.oldest()), (0, 1));
            assert_eq!(
                log.append(vec![event(1, 10), event(2, 10)], vec![])
                    .unwrap(),
                1..3
            );
            assert_eq!(log.append(vec![], vec![]).unwrap(), 3..3);
            assert_eq!(log.append(vec![event(3, 11)], vec![]).unwrap(), 3..4);
        }
        let log = AlertLog::open(dir.path()).unwrap();
        assert_eq!((log.newest(), log.oldest()), (3, 1));
        assert_eq!(log.append(vec![event(4, 12)], vec![]).unwrap(), 4..5);
        let all = log.read(0, 100).unwrap();
        assert_eq!(
            all.iter().map(|e| e.number).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let mut want = event(3, 11);
        want.number = 3;
        assert_eq!(all[2], want, "the event reads back as appended");
    }

    #[test]
    fn state_writes_are_kept_with_their_events() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AlertLog::open(dir.path()).unwrap();
            log.append(
                vec![event(1, 10)],
                vec![
                    (b"a".to_vec(), Some(b"1".to_vec())),
                    (b"b".to_vec(), Some(b"2".to_vec())),
                ],
            )
            .unwrap();
            log.append(
                vec![event(1, 11)],
                vec![(b"a".to_vec(), None), (b"c".to_vec(), Some(b"3".to_vec()))],
            )
            .unwrap();
        }
        let log = AlertLog::open(dir.path()).unwrap();
        assert_eq!(
            log.state().unwrap(),
            vec![
                (b"b".to_vec(), b"2".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        assert_eq!(log.newest(), 2);
    }

    #[test]
    fn reads_come_in_pages_from_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let log = AlertLog::open(dir.path()).unwrap();
        log.append((1..=10).map(|a| event(a, 10)).collect(), vec![])
            .unwrap();
        let numbers = |v: Vec<AlertEvent>| v.iter().map(|e| e.number).collect::<Vec<_>>();
        assert_eq!(numbers(log.read(0, 4).unwrap()), [1, 2, 3, 4]);
        assert_eq!(numbers(log.read(4, 4).unwrap()), [5, 6, 7, 8]);
        assert_eq!(numbers(log.read(8, 4).unwrap()), [9, 10]);
        assert!(log.read(10, 4).unwrap().is_empty());
        assert!(matches!(
            log.read(11, 4),
            Err(AlertLogError::Ahead {
                after: 11,
                newest: 10
            })
        ));
    }

    #[test]
    fn a_cursor_older_than_the_oldest_retained_event_names_that_event() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AlertLog::open(dir.path()).unwrap();
            log.append((1..=6).map(|a| event(a, 100 + a as i64)).collect(), vec![])
                .unwrap();
            // Recorded before 104 and delivered up to 5: events 1 to 3 go.
            assert_eq!(log.purge(104, 5).unwrap(), 3);
            // Delivered only up to 3: nothing more goes, however old.
            assert_eq!(log.purge(1000, 3).unwrap(), 0);
        }
        let log = AlertLog::open(dir.path()).unwrap();
        assert_eq!((log.oldest(), log.newest()), (4, 6));
        let e = log.read(2, 10).unwrap_err();
        assert!(
            matches!(
                e,
                AlertLogError::Expired {
                    after: 2,
                    oldest: 4
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("the oldest retained event is 4"),
            "{e}"
        );
        assert_eq!(log.read(3, 10).unwrap().len(), 3);
        // Every event purged: the numbering still goes on.
        assert_eq!(log.purge(1000, 6).unwrap(), 3);
        assert_eq!((log.oldest(), log.newest()), (7, 6));
        drop(log);
        let log = AlertLog::open(dir.path()).unwrap();
        assert_eq!((log.oldest(), log.newest()), (7, 6));
        assert_eq!(log.append(vec![event(7, 200)], vec![]).unwrap(), 7..8);
    }

    #[test]
    fn sink_cursors_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AlertLog::open(dir.path()).unwrap();
            assert_eq!(log.cursor("webhook").unwrap(), 0);
            log.set_cursor("webhook", 5).unwrap();
        }
        let log = AlertLog::open(dir.path()).unwrap();
        assert_eq!(log.cursor("webhook").unwrap(), 5);
    }

    #[test]
    fn the_json_form_uses_the_protos_names_and_words() {
        let mut e = event(9, 1_700_000_100);
        e.number = 3;
        e.cause = Cause::EpochEnded;
        e.action = Action::Withdrawn;
        let j = e.json();
        assert_eq!(j["number"], 3);
        assert_eq!(j["action"], "withdrawn");
        assert_eq!(j["cause"], "epoch_ended");
        assert_eq!(j["kind"], "iban");
        assert_eq!(j["tier"], "probable");
        assert_eq!(j["watch_reference"], "cust-9");
        assert_eq!(j["created_at"], "2023-11-14T22:13:20Z");
        assert_eq!(j["recorded_at"], "2023-11-14T22:15:00Z");
        e.valid_until = None;
        assert!(e.json()["valid_until"].is_null());
        assert_eq!(AlertEvent::from_proto(&e.to_proto()), Some(e));
    }

    async fn next(rx: &mut mpsc::Receiver<Result<AlertEvent, AlertLogError>>) -> u64 {
        rx.recv().await.unwrap().unwrap().number
    }

    #[tokio::test]
    async fn a_follower_gets_the_backlog_then_each_new_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AlertLog::open(dir.path()).unwrap());
        log.append((1..=5).map(|a| event(a, 10)).collect(), vec![])
            .unwrap();
        let stop = CancellationToken::new();
        let mut rx = log.follow(2, 2, stop.clone()).unwrap();
        for want in 3..=5 {
            assert_eq!(next(&mut rx).await, want);
        }
        // Caught up: the next event comes once appended.
        log.append(vec![event(6, 11)], vec![]).unwrap();
        assert_eq!(next(&mut rx).await, 6);
        log.append((7..=9).map(|a| event(a, 12)).collect(), vec![])
            .unwrap();
        for want in 7..=9 {
            assert_eq!(next(&mut rx).await, want);
        }
        stop.cancel();
        assert!(rx.recv().await.is_none(), "the stream ends with the node");
    }

    #[tokio::test]
    async fn a_follower_from_a_purged_cursor_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AlertLog::open(dir.path()).unwrap());
        log.append((1..=10).map(|a| event(a, 10)).collect(), vec![])
            .unwrap();
        log.purge(11, 2).unwrap();
        let e = log.follow(0, 10, CancellationToken::new()).unwrap_err();
        assert!(
            matches!(e, AlertLogError::Expired { oldest: 3, .. }),
            "{e:?}"
        );
        // A slow follower that retention passes ends with the error.
        let mut rx = log.follow(2, 1, CancellationToken::new()).unwrap();
        assert_eq!(next(&mut rx).await, 3);
        log.purge(11, 8).unwrap();
        let mut last = None;
        while let Some(r) = rx.recv().await {
            last = Some(r);
        }
        assert!(
            matches!(last, Some(Err(AlertLogError::Expired { oldest: 9, .. }))),
            "{last:?}"
        );
    }
}
