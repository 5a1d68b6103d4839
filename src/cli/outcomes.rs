//! `cix outcomes [--case-ref X]`: what this node, as an origin, heard back
//! about its own indicators (`cix.v1.Outcomes`, client capability
//! `contribute`): one line per indicator and per case, or one JSON object.

use anyhow::Result;
use clap::Args;

use super::conn::{status_error, Conn};
use crate::proto;

/// `cix outcomes`.
#[derive(Args, Debug)]
pub struct OutcomesArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    /// Only this case reference's indicators.
    #[arg(long)]
    pub case_ref: Option<String>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn counts_json(c: &proto::OutcomeCounts) -> serde_json::Value {
    serde_json::json!({
        "confirmations": c.confirmations,
        "false_positives": c.false_positives,
        "blocked": c.blocked,
        "closed": c.closed,
        "floods": c.floods,
        "false_positive_senders": c.false_positive_senders,
        "flagged": c.flagged,
    })
}

fn counts_text(c: &proto::OutcomeCounts) -> String {
    format!(
        "confirmed {} false_positive {} (senders {}) blocked {} closed {} flood {}{}",
        c.confirmations,
        c.false_positives,
        c.false_positive_senders,
        c.blocked,
        c.closed,
        c.floods,
        if c.flagged > 0 {
            "  FLAGGED FOR REVIEW"
        } else {
            ""
        }
    )
}

/// Lists the outcomes.
pub(super) async fn outcomes(a: OutcomesArgs) -> Result<()> {
    let mut clients = a.conn.connect().await?;
    let r = clients
        .outcomes
        .list(proto::ListOutcomesRequest {
            case_ref: a.case_ref.unwrap_or_default(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if a.json {
        let v = serde_json::json!({
            "indicators": r.indicators.iter().map(|i| serde_json::json!({
                "seq": i.seq, "case_ref": i.case_ref,
                "first_date": i.first_date, "last_date": i.last_date,
                "counts": counts_json(&i.counts.unwrap_or_default()),
            })).collect::<Vec<_>>(),
            "cases": r.cases.iter().map(|c| serde_json::json!({
                "case_ref": c.case_ref, "indicators": c.indicators,
                "counts": counts_json(&c.counts.unwrap_or_default()),
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    if r.indicators.is_empty() {
        println!("no feedback received");
        return Ok(());
    }
    println!("indicators:");
    for i in &r.indicators {
        println!(
            "  seq {} case {:?} {}..{}: {}",
            i.seq,
            i.case_ref,
            i.first_date,
            i.last_date,
            counts_text(&i.counts.unwrap_or_default())
        );
    }
    println!("cases:");
    for c in &r.cases {
        println!(
            "  {:?} ({} indicators): {}",
            c.case_ref,
            c.indicators,
            counts_text(&c.counts.unwrap_or_default())
        );
    }
    Ok(())
}
