//! `cix disposition record` (Dispositions.Record) and `cix disposition
//! list` (Dispositions.List): a bank analyst's outcome of an alert or a
//! hit, and the records kept. The words are checked by the node, which
//! names the field and the rule of a refused one.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::conn::{status_error, Conn};
use crate::{proto, time::format_time};

/// `cix disposition`.
#[derive(Subcommand, Debug)]
pub enum DispositionCommand {
    /// Record an outcome of an alert or a hit; it replaces the one in force.
    Record(RecordArgs),
    /// The dispositions recorded, oldest first.
    List(ListArgs),
}

/// What a command is about: an alert or a hit, and the watch reference a
/// hit matched.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    #[command(flatten)]
    pub which: Which,
    /// With --hit: the watch reference it matched (a disposition then
    /// settles that entry's alerts too).
    #[arg(long, requires = "hit")]
    pub watch_ref: Option<String>,
}

/// An alert or a hit.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct Which {
    /// An alert id (as `cix alerts` prints it).
    #[arg(long)]
    pub alert: Option<u64>,
    /// A hit: the indicator's origin and the sequence number of its add
    /// entry, as ORIGIN:SEQ.
    #[arg(long, value_parser = parse_hit, value_name = "ORIGIN:SEQ")]
    pub hit: Option<(String, u64)>,
}

/// `ORIGIN:SEQ`.
fn parse_hit(s: &str) -> Result<(String, u64), String> {
    let (origin, seq) = s
        .rsplit_once(':')
        .ok_or("must be ORIGIN:SEQ, e.g. liaison-a:42")?;
    let seq = seq
        .parse::<u64>()
        .map_err(|_| "SEQ must be a sequence number, e.g. liaison-a:42")?;
    Ok((origin.to_string(), seq))
}

impl TargetArgs {
    /// The protobuf target.
    pub(super) fn to_proto(&self) -> proto::DispositionTarget {
        use proto::disposition_target::Target as T;
        let watch_ref = self.watch_ref.as_deref();
        let target = match (&self.which.alert, &self.which.hit) {
            (Some(a), _) => T::Alert(*a),
            (None, Some((origin, seq))) => T::Hit(proto::HitTarget {
                origin: origin.clone(),
                seq: *seq,
                watch_reference: watch_ref.unwrap_or_default().to_string(),
            }),
            (None, None) => unreachable!("clap requires one of --alert and --hit"),
        };
        proto::DispositionTarget {
            target: Some(target),
        }
    }
}

/// `cix disposition record`.
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub target: TargetArgs,
    /// under_review, confirmed or false_positive.
    #[arg(long)]
    pub outcome: String,
    /// An action taken: reported, blocked or closed (repeat for several).
    #[arg(long = "action")]
    pub actions: Vec<String>,
    /// The case in the bank's own system (a case reference's rules).
    #[arg(long)]
    pub case_system_ref: Option<String>,
}

/// `cix disposition list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    /// Records after this id.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// At most this many (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Only records about this alert.
    #[arg(long)]
    pub alert: Option<u64>,
    /// Only records about this hit (ORIGIN:SEQ).
    #[arg(long, value_parser = parse_hit, value_name = "ORIGIN:SEQ")]
    pub hit: Option<(String, u64)>,
    /// Only records with this disposition.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only the records in force.
    #[arg(long)]
    pub in_force: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Runs `cix disposition`.
pub(super) async fn disposition(c: DispositionCommand) -> Result<()> {
    match c {
        DispositionCommand::Record(a) => {
            let mut clients = a.conn.connect().await?;
            let r = clients
                .dispositions
                .record(proto::RecordDispositionRequest {
                    target: Some(a.target.to_proto()),
                    disposition: a.outcome,
                    actions: a.actions,
                    case_system_ref: a.case_system_ref.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{}", text(&r));
            Ok(())
        }
        DispositionCommand::List(a) => {
            let mut clients = a.conn.connect().await?;
            let (hit_origin, hit_seq) = a.hit.unwrap_or_default();
            let page = clients
                .dispositions
                .list(proto::ListDispositionsRequest {
                    after: a.after,
                    limit: a.limit,
                    alert: a.alert.unwrap_or(0),
                    hit_origin,
                    hit_seq,
                    disposition: a.outcome.unwrap_or_default(),
                    in_force_only: a.in_force,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            for r in &page.records {
                if a.json {
                    println!("{}", json(r).context("a record this cix cannot print")?);
                } else {
                    println!("{}", text(r));
                }
            }
            if !a.json {
                eprintln!(
                    "{} records; the newest is {}",
                    page.records.len(),
                    page.newest
                );
            }
            Ok(())
        }
    }
}

fn target_text(t: Option<&proto::DispositionTarget>) -> String {
    use proto::disposition_target::Target as T;
    match t.and_then(|t| t.target.as_ref()) {
        Some(T::Alert(a)) => format!("alert {a}"),
        Some(T::Hit(h)) => format!("hit {}:{}", h.origin, h.seq),
        None => "?".into(),
    }
}

/// One line: id, time, target, disposition, actions, references.
fn text(r: &proto::DispositionRecord) -> String {
    format!(
        "#{} {} {} {} actions [{}] origin {} seq {} case {} ref {} case-system-ref {}{}",
        r.id,
        format_time(r.recorded_at.as_ref().map_or(0, |t| t.seconds)),
        target_text(r.target.as_ref()),
        r.disposition,
        r.actions.join(","),
        r.origin,
        r.seq,
        r.case_ref,
        r.watch_reference,
        if r.case_system_ref.is_empty() {
            "-"
        } else {
            &r.case_system_ref
        },
        if r.in_force { " (in force)" } else { "" },
    )
}

fn json(r: &proto::DispositionRecord) -> Result<serde_json::Value> {
    use proto::disposition_target::Target as T;
    let target = match r.target.as_ref().and_then(|t| t.target.as_ref()) {
        Some(T::Alert(a)) => serde_json::json!({ "alert": a }),
        Some(T::Hit(h)) => serde_json::json!({ "hit": {
            "origin": h.origin, "seq": h.seq, "watch_reference": h.watch_reference,
        }}),
        None => anyhow::bail!("record {} has no target", r.id),
    };
    Ok(serde_json::json!({
        "id": r.id,
        "recorded_at": format_time(r.recorded_at.as_ref().map_or(0, |t| t.seconds)),
        "target": target,
        "disposition": r.disposition,
        "actions": r.actions,
        "case_system_ref": r.case_system_ref,
        "origin": r.origin,
        "seq": r.seq,
        "case_ref": r.case_ref,
        "watch_reference": r.watch_reference,
        "in_force": r.in_force,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_is_origin_colon_seq() {
        assert_eq!(parse_hit("liaison-a:42"), Ok(("liaison-a".into(), 42)));
        assert!(parse_hit("liaison-a").is_err());
        assert!(parse_hit("liaison-a:x").is_err());
    }
}
