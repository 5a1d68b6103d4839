//! `cix.v1.Watchlist`: Add, AddStream, Remove, List, Count and Sync over
//! the node's [`crate::watchlist`]. Handlers check the request's shape,
//! resolve each item on the blocking pool (raw values normalized and
//! hashed under every valid epoch, then dropped; the buffer of canonical
//! forms is zeroized, [`Engine::hash_identifiers_checked`]), call the
//! watchlist and tell the alert monitor of new and removed entries. Every
//! message passes the member listener's `max_batch_items` (and the
//! decoder's `max_message_bytes`). No answer or error names a value or a
//! reference: invalid items get a reason word.

use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{check_batch, convert};
use crate::{
    alerts::engine::Monitor,
    epochs::Keys,
    ident::Reason,
    node::NodeState,
    proto::{self, watch_item::Item, watchlist_server},
    screening::Engine,
    token::Token,
    watchlist::{Added, EntryView, NewEntry, Removal, SyncSession, Watchlist, REFERENCE_MAX},
};

/// Invalid items reported by position in a stream's summary, at most.
const INVALID_LISTED: usize = 1000;
/// Entries per List page: the default and the most.
const PAGE_DEFAULT: u32 = 100;
const PAGE_MAX: u32 = 1000;

pub(crate) struct WatchlistService {
    state: Arc<NodeState>,
    engine: Engine,
    max_items: usize,
}

impl WatchlistService {
    pub(crate) fn new(state: Arc<NodeState>, engine: Engine, max_items: usize) -> Self {
        WatchlistService {
            state,
            engine,
            max_items,
        }
    }

    fn watchlist(&self) -> Result<Arc<Watchlist>, Status> {
        self.state.watchlist.clone().ok_or_else(|| {
            Status::failed_precondition(
                "watchlist.key_file: not set in the node's config; the node keeps no watchlist without it",
            )
        })
    }

    fn ctx(&self) -> Result<Ctx, Status> {
        Ok(Ctx {
            watchlist: self.watchlist()?,
            engine: self.engine.clone(),
            keys: self.state.keys.clone(),
            monitor: self.state.monitor.clone(),
            now: self.state.clock.now(),
            max_items: self.max_items,
        })
    }
}

/// What one request's work on the blocking pool needs.
struct Ctx {
    watchlist: Arc<Watchlist>,
    engine: Engine,
    keys: Keys,
    monitor: Arc<Monitor>,
    now: i64,
    max_items: usize,
}

/// One item resolved: its (epoch, token) pairs, or why it is invalid.
type Resolved = Result<Vec<(u32, Token)>, &'static str>;

/// A reason word for an invalid item.
struct Why(&'static str);

impl From<Reason> for Why {
    fn from(r: Reason) -> Why {
        Why(r.as_str())
    }
}

/// A reference: 1 to 128 printable ASCII characters, no space.
fn check_reference(r: &str) -> Result<(), &'static str> {
    if r.is_empty() || r.len() > REFERENCE_MAX {
        return Err("reference_length");
    }
    if !r.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("reference_chars");
    }
    Ok(())
}

/// INVALID_ARGUMENT for a refused reference in `field`.
fn bad_reference(field: &str, why: &str) -> Status {
    Status::invalid_argument(format!(
        "{field}: {why}: a reference is 1 to {REFERENCE_MAX} printable ASCII characters (0x21..0x7e)"
    ))
}

/// Resolves items to (epoch, token) pairs: identifiers under every epoch
/// valid now, tokens under their own (which must be valid now). With
/// `need_reference`, each item's reference must pass [`check_reference`]
/// and differ from its value; without, an empty reference is allowed.
fn resolve(
    ctx: &Ctx,
    items: &[proto::WatchItem],
    need_reference: bool,
) -> Result<Vec<Resolved>, Status> {
    let ring = ctx.keys.get();
    let valid = ctx.engine.valid_epochs(ctx.now);
    let reference_ok = |r: &str| {
        if need_reference || !r.is_empty() {
            check_reference(r)
        } else {
            Ok(())
        }
    };
    let idents: Vec<(usize, &proto::Identifier)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| match &it.item {
            Some(Item::Identifier(id)) => Some((i, id)),
            _ => None,
        })
        .collect();
    if !idents.is_empty() && valid.is_empty() {
        return Err(Status::failed_precondition(
            "no key epoch is valid now; identifiers cannot be hashed",
        ));
    }
    let mut hashed = ctx
        .engine
        .hash_identifiers_checked(
            idents
                .iter()
                .map(|(_, id)| (convert::kind(id.kind), id.value.as_str())),
            ctx.now,
            |j, canonical| {
                let (i, id) = idents[j];
                let r = items[i].reference.as_str();
                reference_ok(r).map_err(Why)?;
                if !r.is_empty() && (r == id.value || r.as_bytes() == canonical) {
                    return Err(Why("reference_is_value"));
                }
                Ok(())
            },
        )
        .into_iter();
    Ok(items
        .iter()
        .map(|it| match &it.item {
            Some(Item::Identifier(_)) => hashed
                .next()
                .expect("one result per identifier")
                .map_err(|w: Why| w.0),
            Some(Item::Token(t)) => {
                reference_ok(&it.reference)?;
                convert::kind(t.kind).map_err(Reason::as_str)?;
                let token = Token::from_slice(&t.token).map_err(|_| "token_length")?;
                if it.reference == token.to_hex() {
                    return Err("reference_is_value");
                }
                let e = ring.get(t.epoch).ok_or("unknown_epoch")?;
                if !e.valid_at(ctx.now) {
                    return Err("epoch_not_valid");
                }
                Ok(vec![(t.epoch, token)])
            }
            None => Err("item"),
        })
        .collect())
}

fn kind_of(it: &proto::WatchItem) -> i32 {
    match &it.item {
        Some(Item::Identifier(id)) => id.kind,
        Some(Item::Token(t)) => t.kind,
        None => 0,
    }
}

/// One batch checked and hashed, not yet registered.
struct Prepared {
    /// A result per item: `Ok` for the entries (to be replaced by what
    /// registering did), the reason for the invalid ones.
    out: Vec<Result<Added, &'static str>>,
    entries: Vec<NewEntry>,
}

/// Checks and hashes one batch (no lock held: it runs while the previous
/// batch of a stream is being written).
fn prepare(ctx: &Ctx, items: Vec<proto::WatchItem>) -> Result<Prepared, Status> {
    check_batch("items", items.len(), ctx.max_items)?;
    let resolved = resolve(ctx, &items, true)?;
    let mut out: Vec<Result<Added, &'static str>> = Vec::with_capacity(items.len());
    let mut entries = Vec::with_capacity(items.len());
    for (it, r) in items.into_iter().zip(resolved) {
        match r {
            Ok(tokens) => {
                let kind = convert::kind(kind_of(&it)).expect("resolved items have a kind");
                entries.push(NewEntry {
                    reference: it.reference,
                    kind,
                    tokens,
                });
                out.push(Ok(Added::Added));
            }
            Err(why) => out.push(Err(why)),
        }
    }
    Ok(Prepared { out, entries })
}

/// Registers a prepared batch (durable on return): a result per item;
/// marks registered entries in `session`; tells the monitor of new and
/// completed entries.
fn commit(
    ctx: &Ctx,
    p: Prepared,
    session: Option<&mut SyncSession>,
) -> Result<Vec<Result<Added, &'static str>>, Status> {
    let Prepared { mut out, entries } = p;
    let added = ctx.watchlist.add(&entries)?;
    let mut news = Vec::new();
    let mut done = added.into_iter().zip(entries);
    let mut session = session;
    for slot in out.iter_mut().filter(|r| r.is_ok()) {
        let ((a, id), e) = done.next().expect("one answer per entry");
        *slot = Ok(a);
        if let Some(s) = session.as_deref_mut() {
            s.mark(id);
        }
        if a != Added::AlreadyPresent {
            news.push((id, e.tokens));
        }
    }
    if !news.is_empty() {
        ctx.monitor.registered(&news);
    }
    Ok(out)
}

/// Registers one batch: [`prepare`] then [`commit`].
fn register(
    ctx: &Ctx,
    items: Vec<proto::WatchItem>,
    session: Option<&mut SyncSession>,
) -> Result<Vec<Result<Added, &'static str>>, Status> {
    commit(ctx, prepare(ctx, items)?, session)
}

fn add_result(r: &Result<Added, &'static str>) -> proto::WatchAddResult {
    use proto::WatchAddStatus as S;
    let (status, reason) = match r {
        Ok(Added::Added) => (S::Added, ""),
        Ok(Added::AlreadyPresent) => (S::AlreadyPresent, ""),
        Ok(Added::Completed) => (S::Completed, ""),
        Err(why) => (S::Invalid, *why),
    };
    proto::WatchAddResult {
        status: status as i32,
        invalid_reason: reason.to_string(),
    }
}

/// Counts the results of one batch into a stream's summary.
fn summarize(sum: &mut proto::WatchSummary, first: u64, results: &[Result<Added, &'static str>]) {
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(Added::Added) => sum.added += 1,
            Ok(Added::AlreadyPresent) => sum.already_present += 1,
            Ok(Added::Completed) => sum.completed += 1,
            Err(why) => {
                sum.invalid += 1;
                if sum.invalid_items.len() < INVALID_LISTED {
                    sum.invalid_items.push(proto::WatchInvalidItem {
                        position: first + i as u64,
                        reason: why.to_string(),
                    });
                }
            }
        }
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    joined(tokio::task::spawn_blocking(f).await)
}

/// The answer of a task on the blocking pool; INTERNAL if it panicked.
fn joined<T>(r: Result<Result<T, Status>, tokio::task::JoinError>) -> Result<T, Status> {
    r.unwrap_or_else(|_| Err(Status::internal("a watchlist request failed")))
}

/// A message of AddStream or Sync: its items, and whether it commits.
trait StreamMessage: Send + 'static {
    fn into_parts(self) -> (Vec<proto::WatchItem>, bool);
}

impl StreamMessage for proto::WatchAddRequest {
    fn into_parts(self) -> (Vec<proto::WatchItem>, bool) {
        (self.items, false)
    }
}

impl StreamMessage for proto::WatchSyncRequest {
    fn into_parts(self) -> (Vec<proto::WatchItem>, bool) {
        (self.items, self.commit)
    }
}

/// A batch of a stream being registered on the blocking pool: its first
/// item's position in the stream, and the registration.
type InFlight = (
    u64,
    tokio::task::JoinHandle<
        Result<(Vec<Result<Added, &'static str>>, Option<SyncSession>), Status>,
    >,
);

/// Waits for the batch in flight, if any, and counts its results.
async fn land(
    inflight: &mut Option<InFlight>,
    sum: &mut proto::WatchSummary,
    session: &mut Option<SyncSession>,
) -> Result<(), Status> {
    if let Some((first, h)) = inflight.take() {
        let (results, s) = joined(h.await)?;
        *session = s;
        summarize(sum, first, &results);
    }
    Ok(())
}

/// Registers every message of a stream, in order, one batch written at a
/// time while the next is checked and hashed; with `sync`, sweeps at the
/// end if the last message says commit.
async fn register_stream<M: StreamMessage>(
    ctx: Ctx,
    mut inbound: Streaming<M>,
    sync: bool,
) -> Result<proto::WatchSummary, Status> {
    let ctx = Arc::new(ctx);
    let mut session = sync.then(SyncSession::default);
    let mut sum = proto::WatchSummary::default();
    let mut seen = 0u64;
    let mut commit_seen = false;
    let mut inflight: Option<InFlight> = None;
    let result = async {
        while let Some(m) = inbound.next().await {
            let (items, commits) = m?.into_parts();
            if commit_seen {
                return Err(Status::invalid_argument(
                    "commit: only the last message of a Sync may say commit",
                ));
            }
            commit_seen = commits;
            let n = items.len() as u64;
            let c = ctx.clone();
            let prepared = blocking(move || prepare(&c, items)).await?;
            land(&mut inflight, &mut sum, &mut session).await?;
            let c = ctx.clone();
            let mut s = session.take();
            inflight = Some((
                seen,
                tokio::task::spawn_blocking(move || {
                    let r = commit(&c, prepared, s.as_mut())?;
                    Ok((r, s))
                }),
            ));
            seen += n;
        }
        Ok(())
    }
    .await;
    // What is in flight lands (durably) whatever ended the stream.
    let landed = land(&mut inflight, &mut sum, &mut session).await;
    result?;
    landed?;
    if let (Some(s), true) = (session, commit_seen) {
        let c = ctx.clone();
        let removed = blocking(move || Ok(c.watchlist.sync_commit(&s)?)).await?;
        if !removed.is_empty() {
            ctx.monitor.removed(&removed);
        }
        sum.removed = removed.len() as u64;
        sum.committed = true;
    }
    Ok(sum)
}

fn entry(v: EntryView) -> proto::WatchEntry {
    proto::WatchEntry {
        id: v.id,
        reference: v.reference,
        kind: convert::kind_to_proto(v.kind),
        epochs: v.epochs,
    }
}

fn bad_token() -> Status {
    Status::invalid_argument("page_token: must be a token from a previous List answer")
}

#[tonic::async_trait]
impl watchlist_server::Watchlist for WatchlistService {
    async fn add(
        &self,
        req: Request<proto::WatchAddRequest>,
    ) -> Result<Response<proto::WatchAddResponse>, Status> {
        let ctx = self.ctx()?;
        let items = req.into_inner().items;
        let results = blocking(move || register(&ctx, items, None)).await?;
        Ok(Response::new(proto::WatchAddResponse {
            results: results.iter().map(add_result).collect(),
        }))
    }

    async fn add_stream(
        &self,
        req: Request<Streaming<proto::WatchAddRequest>>,
    ) -> Result<Response<proto::WatchSummary>, Status> {
        let ctx = self.ctx()?;
        register_stream(ctx, req.into_inner(), false)
            .await
            .map(Response::new)
    }

    async fn sync(
        &self,
        req: Request<Streaming<proto::WatchSyncRequest>>,
    ) -> Result<Response<proto::WatchSummary>, Status> {
        let ctx = self.ctx()?;
        register_stream(ctx, req.into_inner(), true)
            .await
            .map(Response::new)
    }

    async fn remove(
        &self,
        req: Request<proto::WatchRemoveRequest>,
    ) -> Result<Response<proto::WatchRemoveResponse>, Status> {
        let ctx = self.ctx()?;
        let r = req.into_inner();
        check_batch("references", r.references.len(), ctx.max_items)?;
        check_batch("items", r.items.len(), ctx.max_items)?;
        for (i, reference) in r.references.iter().enumerate() {
            check_reference(reference)
                .map_err(|why| bad_reference(&format!("references[{i}]"), why))?;
        }
        let out = blocking(move || {
            let resolved = resolve(&ctx, &r.items, false)?;
            let mut removals: Vec<Removal> = r
                .references
                .iter()
                .cloned()
                .map(Removal::Reference)
                .collect();
            let mut invalid = Vec::new();
            for (it, res) in r.items.iter().zip(resolved) {
                match res {
                    Ok(tokens) => {
                        invalid.push(None);
                        removals.push(Removal::Tokens {
                            reference: (!it.reference.is_empty()).then(|| it.reference.clone()),
                            tokens: tokens.into_iter().map(|(_, t)| t).collect(),
                        });
                    }
                    Err(why) => invalid.push(Some(why)),
                }
            }
            let removed = ctx.watchlist.remove(&removals)?;
            if !removed.ids.is_empty() {
                ctx.monitor.removed(&removed.ids);
            }
            let (per_ref, per_item) = removed.per_item.split_at(r.references.len());
            let mut per_item = per_item.iter();
            Ok(proto::WatchRemoveResponse {
                removed: removed.ids.len() as u64,
                removed_per_reference: per_ref.to_vec(),
                items: invalid
                    .into_iter()
                    .map(|why| match why {
                        Some(why) => proto::WatchRemoveResult {
                            removed: 0,
                            invalid_reason: why.to_string(),
                        },
                        None => proto::WatchRemoveResult {
                            removed: *per_item.next().expect("one count per removal"),
                            invalid_reason: String::new(),
                        },
                    })
                    .collect(),
            })
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn list(
        &self,
        req: Request<proto::WatchListRequest>,
    ) -> Result<Response<proto::WatchListResponse>, Status> {
        let w = self.watchlist()?;
        let r = req.into_inner();
        let size = match r.page_size {
            0 => PAGE_DEFAULT,
            n if n <= PAGE_MAX => n,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "page_size: at most {PAGE_MAX}"
                )))
            }
        } as usize;
        let by_reference = r.order == proto::WatchOrder::Reference as i32;
        if !r.reference.is_empty() {
            check_reference(&r.reference).map_err(|why| bad_reference("reference", why))?;
        }
        let out = blocking(move || {
            if !r.reference.is_empty() {
                let entries = w.of_reference(&r.reference)?;
                return Ok(proto::WatchListResponse {
                    entries: entries.into_iter().map(entry).collect(),
                    next_page_token: String::new(),
                });
            }
            let entries = if by_reference {
                let after = match r.page_token.split_once(':') {
                    None if r.page_token.is_empty() => None,
                    Some((id, reference)) => {
                        Some((id.parse().map_err(|_| bad_token())?, reference))
                    }
                    None => return Err(bad_token()),
                };
                w.page_by_reference(after.map(|(id, r): (u32, &str)| (r, id)), size)?
            } else {
                let after = match r.page_token.as_str() {
                    "" => None,
                    t => Some(t.parse().map_err(|_| bad_token())?),
                };
                w.page_by_id(after, size)?
            };
            let next_page_token = match entries.last() {
                Some(v) if entries.len() == size && by_reference => {
                    format!("{}:{}", v.id, v.reference)
                }
                Some(v) if entries.len() == size => v.id.to_string(),
                _ => String::new(),
            };
            Ok(proto::WatchListResponse {
                entries: entries.into_iter().map(entry).collect(),
                next_page_token,
            })
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn count(
        &self,
        _req: Request<proto::WatchCountRequest>,
    ) -> Result<Response<proto::WatchCountResponse>, Status> {
        let w = self.watchlist()?;
        let counts = w.counts();
        let status = self
            .state
            .watch_status(self.state.clock.now())
            .unwrap_or_else(|| unreachable!("the watchlist is open"));
        Ok(Response::new(proto::WatchCountResponse {
            entries: counts.entries,
            by_epoch: counts
                .by_epoch
                .iter()
                .map(|&(epoch, entries)| proto::WatchEpochCount { epoch, entries })
                .collect(),
            newest_valid_epoch: status.newest_valid_epoch,
            lacking_newest_epoch: status.lacking_newest_epoch,
        }))
    }
}
