//! `cix quarantine list` (Quarantine.List) and `cix quarantine lift
//! ORIGIN:SEQ` (Quarantine.Lift): flood control's quarantines on the node,
//! under the client capability `admin`.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::conn::{status_error, Conn};
use crate::{api::convert, time::format_time};

/// `cix quarantine`.
#[derive(Subcommand, Debug)]
pub enum QuarantineCommand {
    /// Every quarantined indicator: origin:seq, kind, case, since, the
    /// counts that day and the threshold reached.
    List {
        /// How to reach the node.
        #[command(flatten)]
        conn: Conn,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lift one quarantine: the indicator is exempt for the rest of the
    /// UTC day and the alerts it paused are raised.
    Lift(LiftArgs),
}

/// `cix quarantine lift`.
#[derive(Args, Debug)]
pub struct LiftArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    /// The indicator: its origin's member id and the sequence number of its
    /// add entry, as `cix quarantine list` prints them.
    #[arg(value_name = "ORIGIN:SEQ", value_parser = indicator)]
    pub indicator: (String, u64),
}

/// Parses `ORIGIN:SEQ`.
fn indicator(s: &str) -> Result<(String, u64), String> {
    let rule = || format!("{s:?}: must be ORIGIN:SEQ, e.g. liaison:42");
    let (origin, seq) = s.rsplit_once(':').ok_or_else(rule)?;
    let seq = seq.parse::<u64>().map_err(|_| rule())?;
    if origin.is_empty() {
        return Err(rule());
    }
    Ok((origin.to_string(), seq))
}

/// Runs `cix quarantine`.
pub(super) async fn quarantine(c: QuarantineCommand) -> Result<()> {
    match c {
        QuarantineCommand::List { conn, json } => {
            let mut clients = conn.connect().await?;
            let list = clients.quarantines().await.map_err(status_error)?;
            for q in &list {
                let kind = convert::kind(q.kind).map(|k| k.as_str()).unwrap_or("?");
                let since = format_time(q.since.as_ref().map_or(0, |t| t.seconds));
                if json {
                    let v = serde_json::json!({
                        "origin": q.origin, "seq": q.seq, "kind": kind, "case_ref": q.case_ref,
                        "since": since, "hits": q.hits, "watch_entries": q.watch_entries,
                        "reason": q.reason,
                    });
                    println!("{v}");
                } else {
                    println!(
                        "{}:{} {kind} case={} since={since} hits={} watch_entries={} reason={}",
                        q.origin, q.seq, q.case_ref, q.hits, q.watch_entries, q.reason
                    );
                }
            }
            if list.is_empty() && !json {
                println!("no indicator is quarantined");
            }
            Ok(())
        }
        QuarantineCommand::Lift(a) => {
            let (origin, seq) = &a.indicator;
            let mut clients = a.conn.connect().await?;
            clients
                .lift_quarantine(origin, *seq)
                .await
                .map_err(status_error)?;
            println!("lifted {origin}:{seq} for the rest of the UTC day");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::indicator;

    #[test]
    fn an_indicator_is_origin_colon_seq() {
        assert_eq!(indicator("liaison-nl:118"), Ok(("liaison-nl".into(), 118)));
        for bad in ["liaison", ":1", "liaison:", "liaison:x", "liaison:-1"] {
            let e = indicator(bad).unwrap_err();
            assert!(e.contains("must be ORIGIN:SEQ"), "{bad}: {e}");
        }
    }
}
