//! Contribution: this node's own origin log. Adds, retractions and expiry
//! changes become batches appended to the log and applied to the index (one
//! outcome, [`crate::logs`]), flushed to disk, and only then acknowledged.
//! While the own log is set aside at start, contributions are refused: a
//! new batch would reuse the set-aside batch's sequence numbers.
//!
//! An operation whose entries do not fit in one batch of `max_batch_bytes`
//! becomes several, chained as usual, each durable before the next, and is
//! acknowledged once the last is. A retry after a crash between them
//! completes it: what was written counts as already present (contribute,
//! rekey) or is no longer found (retract or extend by case).
//!
//! One lock serializes every write to the own log, so that the decision
//! ("already present", "not found") and the append see the same state and
//! the log's numbering and hash chain stay contiguous. Invalid items are
//! answered per item and never reach the log. Raw identifiers are
//! normalized and hashed here and dropped; only tokens are written.

use std::{
    collections::{HashMap, HashSet},
    hash::BuildHasherDefault,
    sync::Arc,
};

use tokio::sync::watch;

use crate::{
    batch,
    epochs::{Epoch, KeyRing, Keys},
    ident::{self, Kind, Reason},
    index::{Indicator, Tier},
    keys::signing::SigningKeyFile,
    logs::{LogsError, OriginLogs},
    proto::{BatchHeader, LogOp},
    store::StoreError,
    token::Token,
};

#[derive(Debug, thiserror::Error)]
pub enum ContributionError {
    /// A request-level field breaks a rule; nothing was written.
    #[error("{field}: {rule}")]
    Invalid { field: &'static str, rule: String },
    #[error("no key epoch is valid now; contributions need one")]
    NoValidEpoch,
    #[error(
        "this node has not yet confirmed its own log's head with a peer (after data loss a \
         sequence number must never be reused); retry shortly"
    )]
    NotReady,
    /// A stored batch of the own log did not apply at start and is set
    /// aside: a new batch would reuse its sequence numbers.
    #[error(
        "this node's own log is set aside from sequence {first_seq} ({rule}); contributions are \
         refused until an operator acts (see the README)"
    )]
    OwnLogSetAside { first_seq: u64, rule: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    OriginLogs(#[from] LogsError),
}

/// Tokens seen in one request, hashed by their own first eight bytes.
type TokenSet = HashSet<Token, BuildHasherDefault<crate::index::TokenHasher>>;

fn invalid(field: &'static str, rule: impl Into<String>) -> ContributionError {
    ContributionError::Invalid {
        field,
        rule: rule.into(),
    }
}

/// One item of a contribute, retract or extend request.
pub(crate) enum Item<'a> {
    /// A raw identifier: normalized and hashed here.
    Raw {
        kind: Result<Kind, Reason>,
        value: &'a str,
    },
    /// A token the member computed under `epoch`.
    Token {
        kind: Result<Kind, Reason>,
        token: &'a [u8],
        epoch: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ItemStatus {
    Stored,
    AlreadyPresent,
    Invalid,
    Retracted,
    Extended,
    NotFound,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ItemOutcome {
    pub status: ItemStatus,
    pub token: Option<Token>,
    pub epoch: u32,
    /// For `Invalid`: a fixed reason word.
    pub reason: &'static str,
}

impl ItemOutcome {
    fn invalid(reason: &'static str) -> ItemOutcome {
        ItemOutcome {
            status: ItemStatus::Invalid,
            token: None,
            epoch: 0,
            reason,
        }
    }

    fn of(status: ItemStatus, token: Token, epoch: u32) -> ItemOutcome {
        ItemOutcome {
            status,
            token: Some(token),
            epoch,
            reason: "",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Written {
    pub results: Vec<ItemOutcome>,
    /// Sequence numbers of the appended entries (0, 0 when nothing was appended).
    pub first_seq: u64,
    pub last_seq: u64,
}

/// What a rekey did (counts only: the identifiers are dropped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RekeyCounts {
    pub rekeyed: u64,
    pub current: u64,
    pub not_held: u64,
    pub invalid: u64,
    /// The newest valid epoch, under which indicators were re-contributed.
    pub epoch: u32,
}

/// What a retraction or extension applies to.
pub(crate) enum Selector<'a> {
    Items(Vec<Item<'a>>),
    Case(&'a str),
}

/// Case references and reasons: 1 to 128 characters of printable ASCII or space.
/// The same rule ([`batch::is_label`]) holds for peers' batches.
pub(crate) fn check_label(field: &'static str, s: &str) -> Result<(), ContributionError> {
    if !batch::is_label(s) {
        return Err(invalid(field, batch::LABEL_RULE));
    }
    Ok(())
}

pub(crate) struct Contributions {
    origin: String,
    logs: Arc<OriginLogs>,
    keys: Keys,
    signer: Arc<SigningKeyFile>,
    /// False until this node's own log head is confirmed (see
    /// [`crate::federation::receive_batches`]); contributions wait for it.
    ready: watch::Receiver<bool>,
    /// Most bytes of one encoded batch this node writes.
    max_batch_bytes: usize,
    write: tokio::sync::Mutex<()>,
}

struct Resolved {
    token: Token,
    kind: Kind,
    epoch: u32,
}

/// Batch-level fields of one append.
struct Header<'a> {
    op: LogOp,
    case_ref: &'a str,
    tier: Tier,
    valid_until: i64,
    reason: &'a str,
}

impl Contributions {
    pub(crate) fn new(
        origin: String,
        logs: Arc<OriginLogs>,
        keys: Keys,
        signer: Arc<SigningKeyFile>,
        ready: watch::Receiver<bool>,
        max_batch_bytes: usize,
    ) -> Contributions {
        Contributions {
            origin,
            logs,
            keys,
            signer,
            ready,
            max_batch_bytes,
            write: tokio::sync::Mutex::new(()),
        }
    }

    /// Adds indicators. `valid_until` (unix seconds) must lie after `now`.
    pub(crate) async fn contribute(
        &self,
        items: Vec<Item<'_>>,
        case_ref: &str,
        tier: Tier,
        valid_until: Option<i64>,
        now: i64,
    ) -> Result<Written, ContributionError> {
        check_label("case_ref", case_ref)?;
        check_future("valid_until", valid_until, now)?;
        let ring = self.keys.get();
        let newest = ring
            .newest_valid(now)
            .ok_or(ContributionError::NoValidEpoch)?;
        let resolved: Vec<Result<Resolved, &'static str>> = items
            .into_iter()
            .map(|i| resolve(i, &ring, newest, now))
            .collect();

        let _guard = self.write.lock().await;
        let mut seen = TokenSet::default();
        let mut entries = Vec::new();
        let mut results = Vec::with_capacity(resolved.len());
        {
            let index = self.logs.index.read();
            for r in resolved {
                let r = match r {
                    Ok(r) => r,
                    Err(reason) => {
                        results.push(ItemOutcome::invalid(reason));
                        continue;
                    }
                };
                let present = index
                    .entry_of(&r.token, &self.origin)
                    .is_some_and(|e| e.active_at(now));
                if present || !seen.insert(r.token) {
                    results.push(ItemOutcome::of(
                        ItemStatus::AlreadyPresent,
                        r.token,
                        r.epoch,
                    ));
                } else {
                    results.push(ItemOutcome::of(ItemStatus::Stored, r.token, r.epoch));
                    entries.push(r);
                }
            }
        }
        let header = Header {
            op: LogOp::Add,
            case_ref,
            tier,
            valid_until: valid_until.unwrap_or(0),
            reason: "",
        };
        let (first_seq, last_seq) = self.append_locked(header, entries, now).await?;
        Ok(Written {
            results,
            first_seq,
            last_seq,
        })
    }

    /// Key rotation: for each raw identifier this node holds an active
    /// indicator for under another epoch, contributes it again under the
    /// newest valid epoch with the same kind, tier, case reference and
    /// expiry (batches per such group, each durable before the answer).
    /// Idempotent: identifiers already held under the newest epoch count as
    /// current.
    pub(crate) async fn rekey(
        &self,
        items: Vec<Item<'_>>,
        now: i64,
    ) -> Result<RekeyCounts, ContributionError> {
        let ring = self.keys.get();
        let newest = ring
            .newest_valid(now)
            .ok_or(ContributionError::NoValidEpoch)?;
        let candidates: Vec<Result<Vec<Resolved>, &'static str>> = items
            .iter()
            .map(|i| match i {
                Item::Raw { .. } => resolve_all_epochs(i, &ring),
                Item::Token { .. } => Err("format"),
            })
            .collect();
        let mut counts = RekeyCounts {
            epoch: newest.id,
            ..Default::default()
        };
        let _guard = self.write.lock().await;
        // (case reference, tier, valid_until) -> new entries.
        let mut groups: HashMap<(Arc<str>, Tier, i64), Vec<Resolved>> = HashMap::new();
        {
            let index = self.logs.index.read();
            let mut seen = TokenSet::default();
            for c in candidates {
                let Ok(c) = c else {
                    counts.invalid += 1;
                    continue;
                };
                let Some(new) = c.iter().find(|r| r.epoch == newest.id) else {
                    counts.not_held += 1;
                    continue;
                };
                let held = |r: &Resolved| {
                    index
                        .active(&r.token, now)
                        .find(|i| *i.origin == *self.origin)
                };
                if held(new).is_some() || !seen.insert(new.token) {
                    counts.current += 1;
                    continue;
                }
                match c.iter().filter(|r| r.epoch != newest.id).find_map(held) {
                    Some(old) => {
                        counts.rekeyed += 1;
                        groups
                            .entry((old.case_ref, old.tier, old.valid_until.unwrap_or(0)))
                            .or_default()
                            .push(Resolved {
                                token: new.token,
                                kind: new.kind,
                                epoch: newest.id,
                            });
                    }
                    None => counts.not_held += 1,
                }
            }
        }
        for ((case_ref, tier, valid_until), entries) in groups {
            let header = Header {
                op: LogOp::Add,
                case_ref: &case_ref,
                tier,
                valid_until,
                reason: "",
            };
            self.append_locked(header, entries, now).await?;
        }
        tracing::info!(
            origin = %self.origin,
            epoch = counts.epoch,
            rekeyed = counts.rekeyed,
            current = counts.current,
            not_held = counts.not_held,
            invalid = counts.invalid,
            "rekey"
        );
        Ok(counts)
    }

    /// Retracts this node's own indicators.
    pub(crate) async fn retract(
        &self,
        selector: Selector<'_>,
        reason: &str,
        now: i64,
    ) -> Result<Written, ContributionError> {
        check_label("reason", reason)?;
        let header = Header {
            op: LogOp::Retract,
            case_ref: "",
            tier: Tier::Confirmed,
            valid_until: 0,
            reason,
        };
        self.change(selector, header, ItemStatus::Retracted, now)
            .await
    }

    /// Moves `valid_until` of this node's own indicators.
    pub(crate) async fn extend(
        &self,
        selector: Selector<'_>,
        valid_until: i64,
        now: i64,
    ) -> Result<Written, ContributionError> {
        check_future("valid_until", Some(valid_until), now)?;
        let header = Header {
            op: LogOp::Extend,
            case_ref: "",
            tier: Tier::Confirmed,
            valid_until,
            reason: "",
        };
        self.change(selector, header, ItemStatus::Extended, now)
            .await
    }

    /// Retract or extend: finds the own indicators the selector names
    /// (present in the index, expired or not) and appends them.
    async fn change(
        &self,
        selector: Selector<'_>,
        header: Header<'_>,
        done: ItemStatus,
        now: i64,
    ) -> Result<Written, ContributionError> {
        if let Selector::Case(c) = &selector {
            check_label("case_ref", c)?;
        }
        // Identifiers may have been contributed under any epoch the node holds.
        let ring = self.keys.get();
        let candidates: Option<Vec<Result<Vec<Resolved>, &'static str>>> = match &selector {
            Selector::Items(items) => {
                Some(items.iter().map(|i| resolve_all_epochs(i, &ring)).collect())
            }
            Selector::Case(_) => None,
        };
        let _guard = self.write.lock().await;
        let mut entries = Vec::new();
        let mut results = Vec::new();
        {
            let index = self.logs.index.read();
            match (&selector, candidates) {
                (Selector::Case(case_ref), _) => {
                    for (token, kind, epoch) in index.tokens_of_case(&self.origin, case_ref, now) {
                        entries.push(Resolved { token, kind, epoch });
                    }
                }
                (Selector::Items(_), Some(candidates)) => {
                    let mut seen = TokenSet::default();
                    for c in candidates {
                        let c = match c {
                            Ok(c) => c,
                            Err(reason) => {
                                results.push(ItemOutcome::invalid(reason));
                                continue;
                            }
                        };
                        let mut outcome: Option<ItemOutcome> = None;
                        for r in c {
                            if index.entry_of(&r.token, &self.origin).is_some()
                                && seen.insert(r.token)
                            {
                                outcome.get_or_insert(ItemOutcome::of(done, r.token, r.epoch));
                                entries.push(r);
                            }
                        }
                        results.push(outcome.unwrap_or(ItemOutcome {
                            status: ItemStatus::NotFound,
                            token: None,
                            epoch: 0,
                            reason: "",
                        }));
                    }
                }
                (Selector::Items(_), None) => unreachable!("candidates computed for items"),
            }
        }
        let (first_seq, last_seq) = self.append_locked(header, entries, now).await?;
        Ok(Written {
            results,
            first_seq,
            last_seq,
        })
    }

    /// Appends the entries to the own log in batches of at most
    /// `max_batch_bytes`, each durable and applied before the next. The
    /// caller holds the write lock. Returns the entries' sequence numbers.
    async fn append_locked(
        &self,
        h: Header<'_>,
        entries: Vec<Resolved>,
        now: i64,
    ) -> Result<(u64, u64), ContributionError> {
        if entries.is_empty() {
            return Ok((0, 0));
        }
        if !*self.ready.borrow() {
            return Err(ContributionError::NotReady);
        }
        if let Some(s) = self.logs.waiting(&self.origin) {
            return Err(ContributionError::OwnLogSetAside {
                first_seq: s.first_seq,
                rule: s.rule.clone(),
            });
        }
        let head = self.logs.store.head(&self.origin)?.unwrap_or_default();
        let header = BatchHeader {
            origin: self.origin.clone(),
            first_seq: head.last_seq + 1,
            prev_hash: head.hash.to_vec(),
            created_unix: now,
            op: h.op as i32,
            case_ref: h.case_ref.to_string(),
            tier: h.tier as i32,
            valid_until_unix: h.valid_until,
            reason: h.reason.to_string(),
            ..Default::default()
        };
        let entries = entries
            .iter()
            .map(|r| batch::entry(&r.token, r.kind.code() as i32, r.epoch))
            .collect();
        let first_seq = header.first_seq;
        let mut last_seq = head.last_seq;
        for batch in batch::sign_bounded(header, entries, self.max_batch_bytes, &self.signer) {
            // Durable before anyone is told.
            last_seq = self.logs.append(&batch, true).await?.last_seq;
            tracing::info!(
                origin = %self.origin,
                op = h.op.as_str_name(),
                first_seq = batch.first_seq(),
                last_seq,
                entries = batch.header.count,
                "appended to origin log"
            );
        }
        Ok((first_seq, last_seq))
    }

    /// This node's own active indicators, in token order, after `after`.
    pub(crate) fn list(&self, after: Option<Token>, limit: usize, now: i64) -> Vec<Indicator> {
        self.logs
            .index
            .read()
            .page_of_origin(&self.origin, after, limit, now)
    }
}

fn check_future(field: &'static str, t: Option<i64>, now: i64) -> Result<(), ContributionError> {
    match t {
        Some(t) if t <= now => Err(invalid(field, "must lie in the future")),
        _ => Ok(()),
    }
}

/// Resolves an item to its token: raw values under `newest`, tokens under
/// their own epoch (which must be valid now).
fn resolve(
    item: Item<'_>,
    ring: &KeyRing,
    newest: &Epoch,
    now: i64,
) -> Result<Resolved, &'static str> {
    match item {
        Item::Raw { kind, value } => {
            let kind = kind.map_err(Reason::as_str)?;
            let canonical = ident::normalize(kind, value).map_err(Reason::as_str)?;
            Ok(Resolved {
                token: newest.tokenizer.token(kind, canonical.as_bytes()),
                kind,
                epoch: newest.id,
            })
        }
        Item::Token { kind, token, epoch } => {
            let kind = kind.map_err(Reason::as_str)?;
            let token = Token::from_slice(token).map_err(|_| "token_length")?;
            let e = ring.get(epoch).ok_or("unknown_epoch")?;
            if !e.valid_at(now) {
                return Err("epoch_not_valid");
            }
            Ok(Resolved { token, kind, epoch })
        }
    }
}

/// For retract/extend: every token the item may have been stored under.
fn resolve_all_epochs(item: &Item<'_>, ring: &KeyRing) -> Result<Vec<Resolved>, &'static str> {
    match item {
        Item::Raw { kind, value } => {
            let kind = (*kind).map_err(Reason::as_str)?;
            let canonical = ident::normalize(kind, value).map_err(Reason::as_str)?;
            Ok(ring
                .all()
                .iter()
                .map(|e| Resolved {
                    token: e.tokenizer.token(kind, canonical.as_bytes()),
                    kind,
                    epoch: e.id,
                })
                .collect())
        }
        Item::Token { kind, token, epoch } => {
            let kind = (*kind).map_err(Reason::as_str)?;
            let token = Token::from_slice(token).map_err(|_| "token_length")?;
            Ok(vec![Resolved {
                token,
                kind,
                epoch: *epoch,
            }])
        }
    }
}
