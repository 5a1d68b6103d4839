//! `cix status`: the node's Admin.Status, as text or one JSON object;
//! `cix compact`: Admin.Compact.

use anyhow::Result;

use super::conn::{status_error, Conn};
use crate::{api::convert, proto, time::format_time};

/// `cix status`.
pub(super) async fn status(conn: Conn, json: bool) -> Result<()> {
    let mut clients = conn.connect().await?;
    let s = clients
        .admin
        .status(proto::StatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let kind_name = |k: i32| convert::kind(k).map(|k| k.as_str()).unwrap_or("?");
    if json {
        let v = serde_json::json!({
            "node_id": s.node_id,
            "version": s.version,
            "uptime_seconds": s.uptime_seconds,
            "indicators": s.indicators,
            "by_kind": s.by_kind.iter().map(|k| (kind_name(k.kind).to_string(), k.count)).collect::<std::collections::BTreeMap<_, _>>(),
            "origins": s.origins.iter().map(|o| serde_json::json!({"origin": o.origin, "indicators": o.indicators, "last_seq": o.last_seq})).collect::<Vec<_>>(),
            "epochs": s.epochs.iter().map(|e| serde_json::json!({
                "id": e.id, "key_fingerprint": e.key_fingerprint, "valid_now": e.valid_now,
                "valid_from": format_time(e.valid_from.as_ref().map(|t| t.seconds).unwrap_or(0)),
                "valid_until": format_time(e.valid_until.as_ref().map(|t| t.seconds).unwrap_or(0)),
            })).collect::<Vec<_>>(),
            "store_bytes": s.store_bytes,
            "batches": s.batches,
            "trust_version": s.trust_version,
            "trust_expires_at": s.trust_expires_at.as_ref().map(|t| format_time(t.seconds)),
            "trust_members": s.trust_members,
            "peer_connections": s.peer_connections,
            "warnings": s.warnings,
            "own_log_ready": s.own_log_ready,
            "queries_served": s.queries_served.iter().map(|q| serde_json::json!({"member": q.member, "requests": q.requests, "prefixes": q.prefixes, "refused": q.refused})).collect::<Vec<_>>(),
            "member_requests_limited": s.member_requests_limited,
            "index_pending": s.index_pending,
            "peers": s.peers.iter().map(|p| serde_json::json!({
                "member": p.member, "connected": p.connected, "last_error": p.last_error,
                "last_failure": p.last_failure, "failures_in_a_row": p.failures_in_a_row,
                "next_attempt": p.next_attempt.as_ref().map(|t| format_time(t.seconds)),
                "last_pull": p.last_pull.as_ref().map(|t| format_time(t.seconds)),
                "origins": p.origins.iter().map(|o| serde_json::json!({"origin": o.origin, "peer_last_seq": o.peer_last_seq, "lag": o.lag})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "forks": s.forks.iter().map(|f| serde_json::json!({"origin": f.origin, "frozen_from_seq": f.frozen_from_seq})).collect::<Vec<_>>(),
            "forks_lifted": s.forks_lifted.iter().map(|f| serde_json::json!({"origin": f.origin, "fork_point": f.frozen_from_seq, "lifted_because": f.lifted_because})).collect::<Vec<_>>(),
            "fork_evidence_lifted": s.fork_evidence_lifted,
            "batches_dropped_unverified": s.batches_dropped_unverified,
            "batches_resigned": s.batches_resigned,
            "watchlist": s.watchlist_enabled.then(|| serde_json::json!({
                "entries": s.watch_entries,
                "lacking_newest_epoch": s.watch_entries_lacking_newest_epoch,
                "newest_valid_epoch": s.watch_newest_valid_epoch,
            })),
            "alerts_newest": s.alerts_newest,
            "alerts_oldest": s.alerts_oldest,
            "webhook_pending": s.webhook_pending,
            "webhook_delivered": s.webhook_delivered,
            "webhook_failures": s.webhook_failures,
            "webhook_last_error": s.webhook_last_error,
            "alert_engine": serde_json::json!({
                "open": s.alerts_open,
                "raised": s.alerts_raised,
                "updated": s.alerts_updated,
                "withdrawn": s.alerts_withdrawn,
                "work_pending": s.alert_work_pending,
                "scans": s.alert_scans,
            }),
            "dispositions": serde_json::json!({
                "recorded": s.dispositions_recorded,
                "confirmed": s.dispositions_confirmed,
                "false_positive": s.dispositions_false_positive,
                "alerts_settled": s.alerts_settled,
                "alerts_not_raised": s.alerts_not_raised,
                "feedback_failed": s.dispositions_feedback_failed,
            }),
            "flood": serde_json::json!({
                "quarantined": s.indicators_quarantined,
                "quarantines": s.quarantines_total,
                "lifted": s.quarantines_lifted,
                "alerts_paused": s.flood_alerts_paused,
                "feedback_sent": s.flood_feedback_sent,
                "counts_flushed_at": s.flood_counts_flushed_at,
            }),
            "set_aside": s.set_aside.iter().map(|a| serde_json::json!({"origin": a.origin, "first_seq": a.first_seq, "rule": a.rule, "fork_evidence": a.fork_evidence})).collect::<Vec<_>>(),
            "peer_counters": s.peer_counters.iter().map(peer_counters_json).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("node        {} (cix {})", s.node_id, s.version);
    println!("uptime      {}s", s.uptime_seconds);
    println!("indicators  {}", s.indicators);
    for k in s.by_kind.iter().filter(|k| k.count > 0) {
        println!("  {:<13} {}", kind_name(k.kind), k.count);
    }
    for o in &s.origins {
        println!(
            "origin      {} indicators={} last_seq={}",
            o.origin, o.indicators, o.last_seq
        );
    }
    for e in &s.epochs {
        println!(
            "epoch       {} valid {}..{} now={} key sha256 {}",
            e.id,
            format_time(e.valid_from.as_ref().map(|t| t.seconds).unwrap_or(0)),
            format_time(e.valid_until.as_ref().map(|t| t.seconds).unwrap_or(0)),
            e.valid_now,
            e.key_fingerprint
        );
    }
    println!("store       {} bytes, {} batches", s.store_bytes, s.batches);
    if s.trust_version > 0 {
        println!(
            "trust list  version {} expires {} members {} peer connections {}",
            s.trust_version,
            format_time(s.trust_expires_at.as_ref().map(|t| t.seconds).unwrap_or(0)),
            s.trust_members,
            s.peer_connections
        );
    }
    if s.trust_version > 0 {
        println!(
            "own log     {}",
            if s.own_log_ready {
                "ready"
            } else {
                "waiting to confirm its head with a peer"
            }
        );
    }
    for p in &s.peers {
        let lag: u64 = p.origins.iter().map(|o| o.lag).sum();
        println!(
            "peer        {} {} lag {} last pull {}{}",
            p.member,
            if p.connected {
                "connected"
            } else {
                "disconnected"
            },
            lag,
            p.last_pull
                .as_ref()
                .map(|t| format_time(t.seconds))
                .unwrap_or_else(|| "never".into()),
            if p.last_error.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.last_error)
            }
        );
        if let Some(t) = &p.next_attempt {
            println!(
                "            backed off: {} failures in a row, last {}; next attempt {}",
                p.failures_in_a_row,
                p.last_failure,
                format_time(t.seconds)
            );
        }
    }
    for f in &s.forks {
        println!(
            "FORK        origin {} signed two different batches; frozen from entry {} (in force: lifted once the operators suspend it before that entry or rotate its key at or before it)",
            f.origin, f.frozen_from_seq
        );
    }
    for f in &s.forks_lifted {
        println!(
            "FORK LIFTED origin {} from entry {}: {}; kept as a record, not used",
            f.origin, f.frozen_from_seq, f.lifted_because
        );
    }
    println!(
        "alerts      {} open; log newest {} oldest retained {}; since start raised {} updated {} withdrawn {}; engine queue {}",
        s.alerts_open,
        s.alerts_newest,
        s.alerts_oldest,
        s.alerts_raised,
        s.alerts_updated,
        s.alerts_withdrawn,
        s.alert_work_pending
    );
    if s.dispositions_recorded > 0 {
        println!(
            "dispositions {} recorded; in force {} confirmed {} false positive; {} alerts settled ({} raises skipped since start); {} refused for feedback not queued",
            s.dispositions_recorded,
            s.dispositions_confirmed,
            s.dispositions_false_positive,
            s.alerts_settled,
            s.alerts_not_raised,
            s.dispositions_feedback_failed
        );
    }
    if s.webhook_pending + s.webhook_delivered + s.webhook_failures > 0 {
        println!(
            "webhook     pending {} delivered {} failures {}{}",
            s.webhook_pending,
            s.webhook_delivered,
            s.webhook_failures,
            if s.webhook_last_error.is_empty() {
                String::new()
            } else {
                format!(" (last: {})", s.webhook_last_error)
            }
        );
    }
    if s.quarantines_total + s.indicators_quarantined > 0 {
        println!(
            "flood       {} quarantined; since start {} begun {} lifted, {} alerts paused, {} flood feedback",
            s.indicators_quarantined,
            s.quarantines_total,
            s.quarantines_lifted,
            s.flood_alerts_paused,
            s.flood_feedback_sent
        );
    }
    if s.batches_dropped_unverified + s.batches_resigned > 0 {
        println!(
            "KEY ROTATION {} stored batches dropped (no longer verifying; pulled again), {} of the own log signed again",
            s.batches_dropped_unverified, s.batches_resigned
        );
    }
    if s.watchlist_enabled {
        println!(
            "WATCHLIST   {} entries; {} lack the newest valid epoch {} (register them again to complete them)",
            s.watch_entries, s.watch_entries_lacking_newest_epoch, s.watch_newest_valid_epoch
        );
    }
    for a in &s.set_aside {
        if a.fork_evidence {
            println!(
                "SET ASIDE   fork evidence of {}: {}; kept, not used",
                a.origin, a.rule
            );
        } else {
            println!(
                "SET ASIDE   batch {} #{}: {}; the origin's log waits here for an operator (README)",
                a.origin, a.first_seq, a.rule
            );
        }
    }
    for q in &s.queries_served {
        println!(
            "queries     from {}: {} requests, {} prefixes answered, {} refused by limits",
            q.member, q.requests, q.prefixes, q.refused
        );
    }
    if s.member_requests_limited > 0 {
        println!(
            "limited     {} member-listener calls refused by the match limits",
            s.member_requests_limited
        );
    }
    if s.index_pending > 0 {
        println!(
            "index       {} changes not yet merged (merged once writes pause)",
            s.index_pending
        );
    }
    for c in &s.peer_counters {
        println!("counters    {}", peer_counters_line(c));
    }
    for w in &s.warnings {
        println!("WARNING     {w}");
    }
    Ok(())
}

/// `cix compact`.
pub(super) async fn compact(conn: Conn) -> Result<()> {
    let mut clients = conn.connect().await?;
    let r = clients
        .admin
        .compact(proto::CompactRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    println!(
        "store compacted: {} bytes before, {} after",
        r.store_bytes_before, r.store_bytes_after
    );
    Ok(())
}

fn reason_counts(r: &[proto::ReasonCount]) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|r| format!("{}={}", r.reason, r.count))
        .collect();
    parts.join(" ")
}

/// One peer's counters for `cix status`: only what is non-zero.
fn peer_counters_line(c: &proto::PeerCounters) -> String {
    let mut parts = Vec::new();
    if c.pulls > 0 {
        parts.push(format!("pulls {}", c.pulls));
    }
    for (what, r) in [
        ("batches", &c.batches),
        ("rejected", &c.batches_rejected),
        ("fork evidence", &c.fork_evidence),
        ("fork evidence rejected", &c.fork_evidence_rejected),
        ("sessions ended", &c.sessions_failed),
        ("requests refused", &c.requests_refused),
        ("withheld", &c.withheld),
        ("streams cut", &c.streams_cut),
        ("trust answers refused", &c.trust_answers_refused),
    ] {
        if !r.is_empty() {
            parts.push(format!("{what} {}", reason_counts(r)));
        }
    }
    if c.queries_answered > 0 {
        parts.push(format!(
            "queries answered {} ({} prefixes)",
            c.queries_answered, c.prefixes_answered
        ));
    }
    format!("{}: {}", c.member, parts.join("; "))
}

fn peer_counters_json(c: &proto::PeerCounters) -> serde_json::Value {
    let map = |r: &[proto::ReasonCount]| {
        r.iter()
            .map(|r| (r.reason.clone(), r.count))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    serde_json::json!({
        "member": c.member,
        "pulls": c.pulls,
        "batches": map(&c.batches),
        "batches_rejected": map(&c.batches_rejected),
        "fork_evidence": map(&c.fork_evidence),
        "fork_evidence_rejected": map(&c.fork_evidence_rejected),
        "sessions_failed": map(&c.sessions_failed),
        "requests_refused": map(&c.requests_refused),
        "withheld": map(&c.withheld),
        "streams_cut": map(&c.streams_cut),
        "trust_answers_refused": map(&c.trust_answers_refused),
        "queries_answered": c.queries_answered,
        "prefixes_answered": c.prefixes_answered,
    })
}
