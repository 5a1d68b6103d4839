//! Screening from the command line: `cix match` (one value, or a bulk file
//! or stdin over one `MatchStream`, or with `--remote` through a peer's
//! node by prefix queries) and `cix token` (the token of values under a key
//! file, offline). [`bulk_match`] is also the demo's bulk screening.

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::StreamExt;

use super::{
    bulk::{self, reason_suffix, HitRow, Input, Out, OutFormat, ResultRow},
    conn::{status_error, Conn},
};
use crate::{
    api::convert,
    client::Clients,
    ident::{self, Kind},
    index::Tier,
    keys::TokenKey,
    proto,
    time::format_time,
    token::Tokenizer,
};

/// Options of `cix match`.
#[derive(Args, Debug)]
pub struct MatchArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    /// The values to screen.
    #[command(flatten)]
    pub input: Input,
    /// Write one result per input row here (CSV, or JSON lines for .jsonl/.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Result format (default: from --out's extension, else CSV).
    #[arg(long, value_enum)]
    pub format: Option<OutFormat>,
    /// Identifiers per streamed message (with --remote, per call, at most
    /// 170: what one prefix query carries under the default query policy).
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
    /// Screen through this member's node (member id) by k-anonymous prefix
    /// queries, made by your own node, instead of your node's replica. Same
    /// input and output; subject to the coalition's query limits.
    #[arg(long, value_name = "PEER")]
    pub remote: Option<String>,
}

/// `cix token`.
pub(super) fn token_command(
    kind: Kind,
    key_file: &std::path::Path,
    json: bool,
    value: Option<String>,
) -> Result<()> {
    let key = TokenKey::load(key_file)?;
    let tokenizer = Tokenizer::new(&key);
    let values: Box<dyn Iterator<Item = std::io::Result<String>>> = match value {
        Some(v) => Box::new(std::iter::once(Ok(v))),
        None => {
            use std::io::BufRead;
            Box::new(std::io::stdin().lock().lines())
        }
    };
    let mut rejected = 0usize;
    for (i, v) in values.enumerate() {
        let v = v.context("reading stdin")?;
        let v = v.strip_suffix('\r').unwrap_or(&v);
        match ident::normalize(kind, v) {
            Ok(c) => {
                let t = tokenizer.token(kind, c.as_bytes());
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"kind": kind.as_str(), "canonical": c.as_str(), "token": t.to_hex()})
                    );
                } else {
                    println!("{t}");
                }
            }
            Err(r) => {
                rejected += 1;
                eprintln!("value {}: rejected: {}", i + 1, r.as_str());
            }
        }
    }
    if rejected > 0 {
        bail!("{rejected} value(s) rejected");
    }
    Ok(())
}

/// `cix match`.
pub(super) async fn match_command(a: MatchArgs) -> Result<()> {
    let rows = a.input.read()?;
    let mut clients = a.conn.connect().await?;
    if !a.input.is_bulk() && a.out.is_none() {
        let row = &rows[0];
        let identifiers = vec![proto::Identifier {
            kind: row.kind.map(convert::kind_to_proto).unwrap_or(0),
            value: row.value.clone(),
        }];
        let resp = match &a.remote {
            Some(peer) => {
                let req = proto::MatchRemoteRequest {
                    peer: peer.clone(),
                    identifiers,
                };
                with_retry(|| {
                    let mut s = clients.screening.clone();
                    let req = req.clone();
                    async move { s.match_remote(req).await.map(|r| r.into_inner()) }
                })
                .await?
            }
            None => clients
                .screening
                .r#match(proto::MatchRequest { identifiers })
                .await
                .map_err(status_error)?
                .into_inner(),
        };
        let r = resp.results.first().context("node sent no result")?;
        let rr = result_row(1, row.kind.map(|k| k.as_str()).unwrap_or("?"), r);
        println!("{}{}", rr.status, reason_suffix(&rr.invalid_reason));
        for h in &rr.hits {
            println!(
                "  origin={} case={:?} tier={} created={} valid_until={} epoch={}",
                h.origin,
                h.case_ref,
                h.tier,
                h.created_at,
                h.valid_until.as_deref().unwrap_or("never"),
                h.epoch
            );
        }
        return Ok(());
    }
    let mut out = Out::open(a.out.as_deref(), a.format)?;
    let s = bulk_match(
        &mut clients,
        rows,
        a.batch,
        &mut out,
        a.out.is_some(),
        a.remote.as_deref(),
    )
    .await?;
    out.finish()?;
    eprintln!(
        "items {}  matched {}  invalid {}  in {:.2}s ({:.0}/s)",
        s.items,
        s.matched,
        s.invalid,
        s.seconds,
        s.items as f64 / s.seconds.max(1e-9)
    );
    Ok(())
}

/// Result row of one match outcome.
fn result_row(row: usize, kind: &str, r: &proto::MatchResult) -> ResultRow {
    let status = match proto::MatchStatus::try_from(r.status) {
        Ok(proto::MatchStatus::Match) => "MATCH",
        Ok(proto::MatchStatus::NoMatch) => "NO_MATCH",
        Ok(proto::MatchStatus::Invalid) => "INVALID",
        _ => "UNKNOWN",
    };
    ResultRow {
        row,
        kind: kind.to_string(),
        status,
        hits: r
            .hits
            .iter()
            .map(|h| HitRow {
                origin: h.origin.clone(),
                case_ref: h.case_ref.clone(),
                tier: Tier::from_code(h.tier).map(|t| t.as_str()).unwrap_or("?"),
                created_at: format_time(h.created_at.as_ref().map(|t| t.seconds).unwrap_or(0)),
                valid_until: h.valid_until.as_ref().map(|t| format_time(t.seconds)),
                epoch: h.epoch,
            })
            .collect(),
        invalid_reason: r.invalid_reason.clone(),
    }
}

/// Totals of a bulk match.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct MatchSummary {
    /// Rows screened.
    pub items: usize,
    /// Rows with a hit (`MATCH`).
    pub matched: usize,
    /// Rows the node found invalid.
    pub invalid: usize,
    /// Seconds from the first request to the last answer.
    pub seconds: f64,
}

/// Screens `rows` over one `MatchStream`, writing each result to `out`.
pub(super) async fn bulk_match(
    clients: &mut Clients,
    rows: Vec<bulk::Row>,
    batch: usize,
    out: &mut Out,
    show_progress: bool,
    remote: Option<&str>,
) -> Result<MatchSummary> {
    if let Some(peer) = remote {
        return remote_match(clients, peer, rows, batch, out, show_progress).await;
    }
    let rows = std::sync::Arc::new(rows);
    let batch = batch.max(1);
    let chunks = rows.len().div_ceil(batch);
    let pb = show_progress.then(|| bulk::progress(rows.len(), "screening"));
    let start = Instant::now();
    let req_rows = rows.clone();
    let requests = futures::stream::iter(0..chunks).map(move |i| {
        let chunk = &req_rows[i * batch..((i + 1) * batch).min(req_rows.len())];
        proto::MatchRequest {
            identifiers: chunk.iter().map(bulk::Row::identifier).collect(),
        }
    });
    let mut responses = clients
        .screening
        .match_stream(requests)
        .await
        .map_err(status_error)?
        .into_inner();
    let mut summary = MatchSummary {
        items: rows.len(),
        ..Default::default()
    };
    let mut i = 0usize;
    while let Some(resp) = responses.message().await.map_err(status_error)? {
        let chunk = &rows[i * batch..((i + 1) * batch).min(rows.len())];
        write_results(chunk, &resp, &mut summary, out, pb.as_ref())?;
        i += 1;
    }
    if i != chunks {
        bail!("node answered {i} of {chunks} batches");
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// One result row per input row, counted in the summary.
fn write_results(
    chunk: &[bulk::Row],
    resp: &proto::MatchResponse,
    summary: &mut MatchSummary,
    out: &mut Out,
    pb: Option<&indicatif::ProgressBar>,
) -> Result<()> {
    if resp.results.len() != chunk.len() {
        bail!(
            "node answered {} results for {} items",
            resp.results.len(),
            chunk.len()
        );
    }
    for (row, r) in chunk.iter().zip(&resp.results) {
        let kind = row.kind.map(|k| k.as_str()).unwrap_or("?");
        let rr = result_row(row.row, kind, r);
        summary.matched += usize::from(rr.status == "MATCH");
        summary.invalid += usize::from(rr.status == "INVALID");
        out.write(&rr)?;
    }
    if let Some(pb) = pb {
        pb.inc(chunk.len() as u64);
    }
    Ok(())
}

/// Longest wait a remote match honours from a peer's retry hint before it
/// gives up and reports the limit.
const MAX_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends one request, waiting out RESOURCE_EXHAUSTED answers whose retry
/// hint is short.
async fn with_retry<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                match crate::client::retry_hint(&s).filter(|d| *d <= MAX_RETRY_WAIT) {
                    Some(wait) => {
                        eprintln!("{}; waiting {:.1} s", s.message(), wait.as_secs_f64());
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(status_error(s)),
                }
            }
            Err(s) => return Err(status_error(s)),
        }
    }
}

async fn remote_match(
    clients: &mut Clients,
    peer: &str,
    rows: Vec<bulk::Row>,
    batch: usize,
    out: &mut Out,
    show_progress: bool,
) -> Result<MatchSummary> {
    let pb = show_progress.then(|| bulk::progress(rows.len(), "screening remotely"));
    let start = Instant::now();
    let mut summary = MatchSummary {
        items: rows.len(),
        ..Default::default()
    };
    // One peer request per call under the default query policy: a call
    // refused by the peer's limits and sent again re-asks only its own
    // prefixes, none already counted against the daily quota.
    let per_call =
        crate::federation::prefixes_per_request(&crate::trust::list::QueryPolicy::DEFAULT);
    for chunk in rows.chunks(batch.clamp(1, per_call)) {
        let req = proto::MatchRemoteRequest {
            peer: peer.to_string(),
            identifiers: chunk.iter().map(bulk::Row::identifier).collect(),
        };
        let resp = with_retry(|| {
            let mut s = clients.screening.clone();
            let req = req.clone();
            async move { s.match_remote(req).await.map(|r| r.into_inner()) }
        })
        .await?;
        write_results(chunk, &resp, &mut summary, out, pb.as_ref())?;
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}
