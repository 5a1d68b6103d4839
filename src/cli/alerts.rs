//! `cix alerts tail` (the node's live alert stream, Alerts.Subscribe) and
//! `cix alerts list` (one page, Alerts.List): each event as a line of text,
//! or with `--format jsonl` as the same JSON the webhook posts
//! ([`crate::alerts::log::AlertEvent::json`]), one per line.

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;

use super::conn::{status_error, Conn};
use crate::{alerts::log::AlertEvent, proto, time::format_time};

/// `cix alerts`.
#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Follow the node's alert log: every event after --after, then each
    /// new one as it comes, until interrupted.
    Tail(TailArgs),
    /// One page of the node's alert log.
    List(ListArgs),
}

/// How events are printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One line of text per event.
    Text,
    /// One JSON object per line, as the webhook posts it.
    Jsonl,
}

/// `cix alerts tail`.
#[derive(Args, Debug)]
pub struct TailArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    /// Start after this event number (the last one already handled; 0:
    /// from the oldest retained).
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `cix alerts list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    /// Events numbered after this.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// At most this many (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Runs `cix alerts`.
pub(super) async fn alerts(c: AlertsCommand) -> Result<()> {
    match c {
        AlertsCommand::Tail(a) => {
            let mut clients = a.conn.connect().await?;
            let mut stream = clients
                .alerts
                .subscribe(proto::SubscribeRequest { after: a.after })
                .await
                .map_err(status_error)?
                .into_inner();
            while let Some(e) = stream.next().await {
                print_event(&e.map_err(status_error)?, a.format)?;
            }
            Ok(())
        }
        AlertsCommand::List(a) => {
            let mut clients = a.conn.connect().await?;
            let page = clients
                .alerts
                .list(proto::ListAlertsRequest {
                    after: a.after,
                    limit: a.limit,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            for e in &page.events {
                print_event(e, a.format)?;
            }
            if a.format == Format::Text {
                eprintln!(
                    "{} events; the log holds {} to {}",
                    page.events.len(),
                    page.oldest,
                    page.newest
                );
            }
            Ok(())
        }
    }
}

fn print_event(p: &proto::AlertEvent, format: Format) -> Result<()> {
    let e = AlertEvent::from_proto(p)
        .with_context(|| format!("event {}: a value this cix does not know", p.number))?;
    match format {
        Format::Jsonl => println!("{}", e.json()),
        Format::Text => println!("{}", text(&e)),
    }
    Ok(())
}

/// One line: number, time, action and cause, the watch reference and the
/// indicator.
fn text(e: &AlertEvent) -> String {
    format!(
        "#{} {} {} ({}) alert {} ref {} {} origin {} case {} tier {} epoch {} seq {} valid until {}",
        e.number,
        format_time(e.recorded),
        e.action.as_str(),
        e.cause.as_str(),
        e.alert,
        e.reference,
        e.kind.as_str(),
        e.origin,
        e.case_ref,
        e.tier.as_str(),
        e.epoch,
        e.seq,
        e.valid_until.map(format_time).unwrap_or_else(|| "never".into()),
    )
}
