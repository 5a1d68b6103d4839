//! This node's own indicators: `cix contribute`, `cix retract`, `cix
//! indicators list|extend` and `cix rekey`, each a client of the node's
//! Contribution service.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::{
    bulk::{self, reason_suffix, Input},
    conn::{status_error, Conn},
};
use crate::{
    api::convert,
    ident::Kind,
    index::Tier,
    proto,
    time::system_now,
    time::{format_time, parse_time},
    token::Token,
};

/// Options of `cix contribute`.
#[derive(Args, Debug)]
pub struct ContributeArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    /// The values to contribute.
    #[command(flatten)]
    pub input: Input,
    /// Opaque case label (1-128 printable ASCII characters); never a raw identifier.
    #[arg(long)]
    pub case_ref: String,
    /// confirmed, probable or suspected.
    #[arg(long, default_value = "confirmed", value_parser = parse_tier)]
    pub tier: Tier,
    /// Expiry, RFC 3339 (e.g. 2027-06-30T00:00:00Z).
    #[arg(long, conflicts_with = "valid_for")]
    pub valid_until: Option<String>,
    /// Expiry from now, e.g. 90d or 12h.
    #[arg(long)]
    pub valid_for: Option<humantime::Duration>,
    /// Items per request.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
}

/// Options of `cix retract`.
#[derive(Args, Debug)]
pub struct RetractArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    /// Why (1-128 printable ASCII characters).
    #[arg(long)]
    pub reason: String,
    /// Retract every indicator of this case.
    #[arg(long, conflicts_with_all = ["token", "value", "file"])]
    pub case_ref: Option<String>,
    /// Retract by token (hex); needs --kind and --epoch.
    #[arg(long, requires = "epoch")]
    pub token: Vec<String>,
    /// Key epoch of the --token values.
    #[arg(long)]
    pub epoch: Option<u32>,
    /// The values to retract (without --case-ref or --token).
    #[command(flatten)]
    pub input: Input,
}

/// The `cix indicators` subcommands.
#[derive(Subcommand, Debug)]
pub enum IndicatorsCommand {
    /// This node's own active indicators.
    List {
        /// How to reach the node.
        #[command(flatten)]
        conn: Conn,
        /// One JSON object per indicator.
        #[arg(long)]
        json: bool,
        /// Stop after this many (default: all).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Move valid_until of own indicators (by case reference or tokens).
    Extend {
        /// How to reach the node.
        #[command(flatten)]
        conn: Conn,
        /// Extend every indicator of this case.
        #[arg(long, conflicts_with = "token")]
        case_ref: Option<String>,
        /// Extend by token (hex; repeat); needs --kind and --epoch.
        #[arg(long, requires_all = ["kind", "epoch"])]
        token: Vec<String>,
        /// Identifier kind of the --token values.
        #[arg(long, value_parser = bulk::parse_kind)]
        kind: Option<Kind>,
        /// Key epoch of the --token values.
        #[arg(long)]
        epoch: Option<u32>,
        /// New expiry, RFC 3339.
        #[arg(long, conflicts_with = "valid_for")]
        valid_until: Option<String>,
        /// New expiry from now, e.g. 180d.
        #[arg(long)]
        valid_for: Option<humantime::Duration>,
    },
}

/// Options of `cix rekey`.
#[derive(Args, Debug)]
pub struct RekeyArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    /// The identifiers to re-contribute.
    #[command(flatten)]
    pub input: Input,
    /// Identifiers per request.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| "use confirmed, probable or suspected".to_string())
}

fn expiry(until: &Option<String>, for_: &Option<humantime::Duration>) -> Result<Option<i64>> {
    Ok(match (until, for_) {
        (Some(u), _) => Some(parse_time(u).map_err(|r| anyhow::anyhow!("--valid-until: {r}"))?),
        (None, Some(d)) => Some(system_now()? + d.as_secs() as i64),
        (None, None) => None,
    })
}

/// `cix contribute`.
pub(super) async fn contribute(a: ContributeArgs) -> Result<()> {
    let rows = a.input.read()?;
    let valid_until = expiry(&a.valid_until, &a.valid_for)?.map(convert::timestamp);
    let mut clients = a.conn.connect().await?;
    let pb = a
        .input
        .is_bulk()
        .then(|| bulk::progress(rows.len(), "contributing"));
    let start = Instant::now();
    let (mut stored, mut present, mut invalid) = (0usize, 0usize, 0usize);
    for chunk in rows.chunks(a.batch.max(1)) {
        let req = proto::ContributeRequest {
            items: chunk
                .iter()
                .map(|r| proto::ContributionItem {
                    item: Some(proto::contribution_item::Item::Identifier(
                        proto::Identifier {
                            kind: r.kind.map(convert::kind_to_proto).unwrap_or(0),
                            value: r.value.clone(),
                        },
                    )),
                })
                .collect(),
            case_ref: a.case_ref.clone(),
            tier: a.tier as i32,
            valid_until,
        };
        let resp = clients
            .contribution
            .contribute(req)
            .await
            .map_err(status_error)?
            .into_inner();
        for (row, res) in chunk.iter().zip(&resp.results) {
            match proto::ItemStatus::try_from(res.status) {
                Ok(proto::ItemStatus::Stored) => stored += 1,
                Ok(proto::ItemStatus::AlreadyPresent) => present += 1,
                _ => {
                    invalid += 1;
                    eprintln!("row {}: invalid: {}", row.row, res.invalid_reason);
                }
            }
            if !a.input.is_bulk() {
                println!(
                    "{}",
                    Token::from_slice(&res.token)
                        .map(|t| t.to_hex())
                        .unwrap_or_default()
                );
            }
        }
        if let Some(pb) = &pb {
            pb.inc(chunk.len() as u64);
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "items {}  stored {stored}  already present {present}  invalid {invalid}  ({:.0}/s)",
        rows.len(),
        rows.len() as f64 / secs.max(1e-9)
    );
    if invalid > 0 {
        bail!("{invalid} item(s) invalid");
    }
    Ok(())
}

fn token_items(
    tokens: &[String],
    kind: Option<Kind>,
    epoch: Option<u32>,
) -> Result<Vec<proto::PrecomputedToken>> {
    let kind = kind.context("--token needs --kind")?;
    let epoch = epoch.context("--token needs --epoch")?;
    tokens
        .iter()
        .map(|t| {
            let t = Token::from_hex(t).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
            Ok(proto::PrecomputedToken {
                kind: convert::kind_to_proto(kind),
                token: t.0.to_vec(),
                epoch,
            })
        })
        .collect()
}

/// `cix retract`.
pub(super) async fn retract(a: RetractArgs) -> Result<()> {
    let mut req = proto::RetractRequest {
        reason: a.reason.clone(),
        ..Default::default()
    };
    if let Some(c) = &a.case_ref {
        req.case_ref = c.clone();
    } else if !a.token.is_empty() {
        req.tokens = token_items(&a.token, a.input.kind, a.epoch)?;
    } else {
        req.identifiers = a
            .input
            .read()?
            .into_iter()
            .map(|mut r| proto::Identifier {
                kind: r.kind.map(convert::kind_to_proto).unwrap_or(0),
                value: std::mem::take(&mut r.value),
            })
            .collect();
    }
    let mut clients = a.conn.connect().await?;
    let resp = clients
        .contribution
        .retract(req)
        .await
        .map_err(status_error)?
        .into_inner();
    for (i, r) in resp.results.iter().enumerate() {
        let status = proto::ItemStatus::try_from(r.status)
            .map(|s| s.as_str_name())
            .unwrap_or("?");
        println!(
            "item {}: {}{}",
            i + 1,
            status.trim_start_matches("ITEM_STATUS_"),
            reason_suffix(&r.invalid_reason)
        );
    }
    println!("retracted {}", resp.retracted);
    Ok(())
}

/// `cix indicators ...`.
pub(super) async fn indicators(c: IndicatorsCommand) -> Result<()> {
    match c {
        IndicatorsCommand::List { conn, json, limit } => {
            let mut clients = conn.connect().await?;
            let mut page_token = String::new();
            let mut shown = 0usize;
            loop {
                let resp = clients
                    .contribution
                    .list(proto::ListRequest {
                        page_size: 1000,
                        page_token: page_token.clone(),
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                for i in &resp.indicators {
                    if limit.is_some_and(|l| shown >= l) {
                        return Ok(());
                    }
                    shown += 1;
                    let token = Token::from_slice(&i.token)
                        .map(|t| t.to_hex())
                        .unwrap_or_default();
                    let kind = convert::kind(i.kind).map(|k| k.as_str()).unwrap_or("?");
                    let until = i.valid_until.as_ref().map(|t| format_time(t.seconds));
                    let tier = Tier::from_code(i.tier).map(|t| t.as_str()).unwrap_or("?");
                    let created =
                        format_time(i.created_at.as_ref().map(|t| t.seconds).unwrap_or(0));
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"token": token, "kind": kind, "epoch": i.epoch, "tier": tier,
                                "case_ref": i.case_ref, "created_at": created, "valid_until": until, "seq": i.seq})
                        );
                    } else {
                        println!(
                            "{token} {kind} epoch={} tier={tier} case={:?} created={created} valid_until={} seq={}",
                            i.epoch,
                            i.case_ref,
                            until.as_deref().unwrap_or("never"),
                            i.seq
                        );
                    }
                }
                if resp.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = resp.next_page_token;
            }
        }
        IndicatorsCommand::Extend {
            conn,
            case_ref,
            token,
            kind,
            epoch,
            valid_until,
            valid_for,
        } => {
            let until =
                expiry(&valid_until, &valid_for)?.context("give --valid-until or --valid-for")?;
            let mut req = proto::ExtendRequest {
                valid_until: Some(convert::timestamp(until)),
                ..Default::default()
            };
            match case_ref {
                Some(c) => req.case_ref = c,
                None => req.tokens = token_items(&token, kind, epoch)?,
            }
            let mut clients = conn.connect().await?;
            let resp = clients
                .contribution
                .extend(req)
                .await
                .map_err(status_error)?
                .into_inner();
            println!("extended {} until {}", resp.extended, format_time(until));
            Ok(())
        }
    }
}

/// `cix rekey`.
pub(super) async fn rekey(a: RekeyArgs) -> Result<()> {
    let rows = a.input.read()?;
    let mut clients = a.conn.connect().await?;
    let mut total = proto::RekeyResponse::default();
    for chunk in rows.chunks(a.batch.max(1)) {
        let req = proto::RekeyRequest {
            identifiers: chunk.iter().map(bulk::Row::identifier).collect(),
        };
        let r = clients
            .contribution
            .rekey(req)
            .await
            .map_err(status_error)?
            .into_inner();
        total.rekeyed += r.rekeyed;
        total.current += r.current;
        total.not_held += r.not_held;
        total.invalid += r.invalid;
        total.epoch = r.epoch;
    }
    println!(
        "epoch {}: rekeyed {}  already current {}  not held {}  invalid {}",
        total.epoch, total.rekeyed, total.current, total.not_held, total.invalid
    );
    Ok(())
}
