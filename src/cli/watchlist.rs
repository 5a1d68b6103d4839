//! `cix watchlist add|sync|remove|list|count`: the bank's book on the
//! node's watchlist. Rows come from a CSV file (a value column and a
//! reference column, [`super::bulk`]) or, with `--tokens`, hex tokens
//! computed under `--epoch`; they go in batches of `--batch` items with a
//! progress bar, and a summary counts what happened, with invalid rows by
//! reason and row number, never their values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::{
    bulk::{self, Input, Row},
    conn::{status_error, Conn},
};
use crate::{api::convert, ident::Kind, proto, token::Token};

/// Rows listed per invalid reason in the summary.
const ROWS_LISTED: usize = 20;

#[derive(Subcommand, Debug)]
pub enum WatchlistCommand {
    /// Registers rows: adding the same rows again changes nothing.
    Add(WatchAddArgs),
    /// Makes the watchlist equal to the file: registers every row, then
    /// removes every entry the file does not hold (only once all was sent).
    Sync(WatchAddArgs),
    /// Removes every entry of the references given.
    Remove(WatchRemoveArgs),
    /// Prints entries: reference, kind, epochs.
    List(WatchListArgs),
    /// Prints how many entries, per epoch, and how many lack the newest.
    Count {
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Args, Debug)]
pub struct WatchAddArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub input: Input,
    /// CSV column holding each row's reference (the bank's own key of the
    /// record: 1 to 128 printable ASCII characters, no space).
    #[arg(long, requires = "column")]
    pub ref_column: Option<String>,
    /// The reference of a single value given on the command line.
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// The values are tokens (64 hex characters) computed under --epoch.
    #[arg(long, requires = "epoch")]
    pub tokens: bool,
    /// The key epoch of --tokens.
    #[arg(long)]
    pub epoch: Option<u32>,
    /// Items per request (at most the node's limits.max_batch_items).
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
}

#[derive(Args, Debug)]
pub struct WatchRemoveArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// A reference whose entries to remove (repeatable).
    #[arg(long = "ref")]
    pub references: Vec<String>,
    /// A file of references: one per line, or CSV with --ref-column.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The CSV column of the references in --file.
    #[arg(long, requires = "file")]
    pub ref_column: Option<String>,
    /// References per request.
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
}

#[derive(Args, Debug)]
pub struct WatchListArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// Only the entries of this reference.
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// In reference order (else by entry id).
    #[arg(long)]
    pub by_reference: bool,
    /// Entries to print at most.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

pub(super) async fn watchlist(c: WatchlistCommand) -> Result<()> {
    match c {
        WatchlistCommand::Add(a) => add(a, false).await,
        WatchlistCommand::Sync(a) => add(a, true).await,
        WatchlistCommand::Remove(a) => remove(a).await,
        WatchlistCommand::List(a) => list(a).await,
        WatchlistCommand::Count { conn } => count(conn).await,
    }
}

fn rows(a: &WatchAddArgs) -> Result<Vec<Row>> {
    if a.ref_column.is_none() && a.reference.is_none() {
        bail!("give --ref-column (a CSV file) or --ref (one value): every entry needs a reference");
    }
    let mut rows = a.input.read_with_reference(a.ref_column.as_deref())?;
    if let Some(r) = &a.reference {
        if rows.len() != 1 {
            bail!("--ref names the reference of a single value; for a file use --ref-column");
        }
        rows[0].reference = r.clone();
    }
    Ok(rows)
}

fn item(a: &WatchAddArgs, r: &Row) -> proto::WatchItem {
    let item = if a.tokens {
        proto::watch_item::Item::Token(proto::PrecomputedToken {
            kind: r.kind.map(convert::kind_to_proto).unwrap_or(0),
            // A malformed token goes as it is; the node names the rule.
            token: Token::from_hex(&r.value)
                .map(|t| t.0.to_vec())
                .unwrap_or_default(),
            epoch: a.epoch.unwrap_or(0),
        })
    } else {
        proto::watch_item::Item::Identifier(r.identifier())
    };
    proto::WatchItem {
        reference: r.reference.clone(),
        item: Some(item),
    }
}

/// What a run did, for the summary.
#[derive(Default)]
struct Tally {
    added: u64,
    present: u64,
    completed: u64,
    /// Reason -> row numbers.
    invalid: BTreeMap<String, Vec<usize>>,
}

impl Tally {
    fn invalid(&mut self, reason: &str, row: usize) {
        self.invalid
            .entry(reason.to_string())
            .or_default()
            .push(row);
    }

    fn print(&self, removed: Option<u64>) -> u64 {
        let invalid: usize = self.invalid.values().map(Vec::len).sum();
        let mut line = format!(
            "{} added, {} already present, {} completed, {invalid} invalid",
            self.added, self.present, self.completed
        );
        if let Some(n) = removed {
            line.push_str(&format!(", {n} removed"));
        }
        println!("{line}");
        for (reason, rows) in &self.invalid {
            let shown: Vec<String> = rows
                .iter()
                .take(ROWS_LISTED)
                .map(|r| r.to_string())
                .collect();
            let more = rows.len().saturating_sub(ROWS_LISTED);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            println!(
                "  invalid ({reason}): {} row(s): {}{more}",
                rows.len(),
                shown.join(", ")
            );
        }
        invalid as u64
    }
}

async fn add(a: WatchAddArgs, sync: bool) -> Result<()> {
    let rows = rows(&a)?;
    let mut clients = a.conn.connect().await?;
    let pb = bulk::progress(rows.len(), if sync { "syncing" } else { "registering" });
    let mut tally = Tally::default();
    let batch = a.batch.max(1);
    if sync {
        let n_batches = rows.len().div_ceil(batch).max(1);
        let mut reqs = Vec::with_capacity(n_batches);
        for i in 0..n_batches {
            let chunk = rows
                .get(i * batch..((i + 1) * batch).min(rows.len()))
                .unwrap_or(&[]);
            reqs.push(proto::WatchSyncRequest {
                items: chunk.iter().map(|r| item(&a, r)).collect(),
                commit: i + 1 == n_batches,
            });
        }
        let pb2 = pb.clone();
        let stream = futures::stream::iter(reqs).map(move |r| {
            pb2.inc(r.items.len() as u64);
            r
        });
        let sum = clients
            .watchlist
            .sync(stream)
            .await
            .map_err(status_error)?
            .into_inner();
        pb.finish_and_clear();
        tally.added = sum.added;
        tally.present = sum.already_present;
        tally.completed = sum.completed;
        for i in &sum.invalid_items {
            let row = rows.get(i.position as usize).map_or(0, |r| r.row);
            tally.invalid(&i.reason, row);
        }
        let listed = tally.invalid.values().map(Vec::len).sum::<usize>() as u64;
        if sum.invalid > listed {
            tally.invalid("not listed", 0);
        }
        if !sum.committed {
            bail!("the node did not commit the sync; nothing was removed");
        }
        tally.print(Some(sum.removed));
        return Ok(());
    }
    for chunk in rows.chunks(batch) {
        let req = proto::WatchAddRequest {
            items: chunk.iter().map(|r| item(&a, r)).collect(),
        };
        let resp = clients
            .watchlist
            .add(req)
            .await
            .map_err(status_error)?
            .into_inner();
        for (row, res) in chunk.iter().zip(&resp.results) {
            match proto::WatchAddStatus::try_from(res.status) {
                Ok(proto::WatchAddStatus::Added) => tally.added += 1,
                Ok(proto::WatchAddStatus::AlreadyPresent) => tally.present += 1,
                Ok(proto::WatchAddStatus::Completed) => tally.completed += 1,
                _ => tally.invalid(&res.invalid_reason, row.row),
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    tally.print(None);
    Ok(())
}

use futures::StreamExt;

fn read_references(a: &WatchRemoveArgs) -> Result<Vec<String>> {
    let mut refs = a.references.clone();
    let Some(path) = &a.file else {
        return Ok(refs);
    };
    match &a.ref_column {
        Some(col) => {
            let mut r = csv::Reader::from_path(path)
                .with_context(|| format!("opening {}", path.display()))?;
            let at = r
                .headers()
                .with_context(|| format!("{}: reading the header row", path.display()))?
                .iter()
                .position(|h| h == col)
                .with_context(|| format!("{}: no column named {col:?}", path.display()))?;
            for (i, rec) in r.records().enumerate() {
                let rec = rec.map_err(|_| {
                    anyhow::anyhow!("{}: data row {}: malformed", path.display(), i + 1)
                })?;
                refs.push(rec.get(at).unwrap_or("").to_string());
            }
        }
        None => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            refs.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
    }
    Ok(refs)
}

async fn remove(a: WatchRemoveArgs) -> Result<()> {
    let refs = read_references(&a)?;
    if refs.is_empty() {
        bail!("give --ref R (repeatable) or --file");
    }
    let mut clients = a.conn.connect().await?;
    let mut removed = 0;
    for chunk in refs.chunks(a.batch.max(1)) {
        let resp = clients
            .watchlist
            .remove(proto::WatchRemoveRequest {
                references: chunk.to_vec(),
                items: Vec::new(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        removed += resp.removed;
    }
    println!("{removed} removed");
    Ok(())
}

fn kind_name(k: i32) -> &'static str {
    convert::kind(k).map_or("unknown", Kind::as_str)
}

async fn list(a: WatchListArgs) -> Result<()> {
    let mut clients = a.conn.connect().await?;
    let mut token = String::new();
    let mut printed = 0;
    loop {
        let resp = clients
            .watchlist
            .list(proto::WatchListRequest {
                order: if a.by_reference {
                    proto::WatchOrder::Reference
                } else {
                    proto::WatchOrder::EntryId
                } as i32,
                page_token: token,
                page_size: (a.limit - printed).clamp(1, 1000) as u32,
                reference: a.reference.clone().unwrap_or_default(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        for e in &resp.entries {
            let epochs: Vec<String> = e.epochs.iter().map(|x| x.to_string()).collect();
            println!(
                "{}\t{}\tepochs {}",
                e.reference,
                kind_name(e.kind),
                epochs.join(",")
            );
        }
        printed += resp.entries.len();
        token = resp.next_page_token;
        if token.is_empty() || printed >= a.limit {
            return Ok(());
        }
    }
}

async fn count(conn: Conn) -> Result<()> {
    let mut clients = conn.connect().await?;
    let c = clients
        .watchlist
        .count(proto::WatchCountRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    println!("{} entries", c.entries);
    for e in &c.by_epoch {
        println!("  epoch {}: {}", e.epoch, e.entries);
    }
    println!(
        "{} lack the newest valid epoch {} (register them again to complete them)",
        c.lacking_newest_epoch, c.newest_valid_epoch
    );
    Ok(())
}
