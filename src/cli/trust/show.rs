//! `cix trust show`: the list as text or one JSON object.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::read_body;
use crate::{
    proto::{Member, MemberKind, MemberStatus, PeerCapability},
    time::format_time,
    time::system_now,
    trust::list::{self, QueryPolicy, TrustList},
};

/// Options of `cix trust show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Trust-list file.
    #[arg(long)]
    pub file: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `MEMBER_KIND_BANK` → `bank`.
fn short_name(name: Option<&str>, prefix: &str) -> String {
    name.map(|n| n.trim_start_matches(prefix).to_ascii_lowercase())
        .unwrap_or_else(|| "unknown".to_string())
}

fn kind_name(k: i32) -> String {
    short_name(
        MemberKind::try_from(k).ok().map(|k| k.as_str_name()),
        "MEMBER_KIND_",
    )
}

fn status_name(s: i32) -> String {
    short_name(
        MemberStatus::try_from(s).ok().map(|s| s.as_str_name()),
        "MEMBER_STATUS_",
    )
}

/// Known capabilities by name; a value this build does not know (kept in the
/// list, never granted) as `unknown(7)`.
fn cap_names(m: &Member) -> Vec<String> {
    m.capabilities
        .iter()
        .map(|&c| match PeerCapability::try_from(c) {
            Ok(k) => short_name(Some(k.as_str_name()), "PEER_CAPABILITY_"),
            Err(_) => format!("unknown({c})"),
        })
        .collect()
}

pub(super) fn show(a: ShowArgs) -> Result<()> {
    let (signed, b) = read_body(&a.file)?;
    let valid = list::count_valid(&signed, &b.operator_keys);
    let now = system_now()?;
    if a.json {
        let q = QueryPolicy::of(&b);
        let v = serde_json::json!({
            "coalition_id": b.coalition_id,
            "version": b.version,
            "issued_at": format_time(b.issued_at),
            "expires_at": format_time(b.expires_at),
            "expired": now >= b.expires_at,
            "threshold": b.threshold,
            "operator_keys": b.operator_keys.iter().map(|k| serde_json::json!({
                "id": k.id, "public_key": hex::encode(&k.public_key),
            })).collect::<Vec<_>>(),
            "query_policy": serde_json::json!({"prefix_bits": q.prefix_bits, "bucket_size": q.bucket_size,
                "requests_per_second": q.requests_per_second, "burst": q.burst,
                "prefixes_per_day": q.prefixes_per_day}),
            "epochs": b.epochs.iter().map(|e| serde_json::json!({
                "id": e.id, "valid_from": format_time(e.valid_from),
                "valid_until": format_time(e.valid_until), "key_sha256": e.key_sha256,
            })).collect::<Vec<_>>(),
            "members": b.members.iter().map(|m| serde_json::json!({
                "id": m.id, "name": m.name, "kind": kind_name(m.kind),
                "capabilities": cap_names(m), "status": status_name(m.status),
                "active_now": TrustList::is_active(m, now),
                "suspended_after_seq": m.suspended_after_seq,
                "sharing_basis_expires_at": (m.sharing_basis_expires_at != 0).then(|| format_time(m.sharing_basis_expires_at)),
                "endpoint": m.endpoint, "tls_spki_sha256": m.tls_spki_sha256,
                "signing_keys": m.signing_keys.iter().map(|k| serde_json::json!({
                    "public_key": hex::encode(&k.public_key), "retired": k.retired, "last_seq": k.last_seq,
                    "first_seq": k.first_seq,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "signatures": signed.signatures.len(),
            "valid_signatures": valid,
        });
        println!("{v}");
        return Ok(());
    }
    println!("coalition   {}", b.coalition_id);
    println!("version     {}", b.version);
    println!("issued      {}", format_time(b.issued_at));
    println!(
        "expires     {}{}",
        format_time(b.expires_at),
        if now >= b.expires_at {
            " (EXPIRED)"
        } else {
            ""
        }
    );
    println!(
        "threshold   {} of {} operator keys",
        b.threshold,
        b.operator_keys.len()
    );
    for k in &b.operator_keys {
        println!("operator    {} {}", k.id, hex::encode(&k.public_key));
    }
    for e in &b.epochs {
        println!(
            "epoch       {} valid {}..{} key sha256 {}",
            e.id,
            format_time(e.valid_from),
            format_time(e.valid_until),
            e.key_sha256
        );
    }
    let q = QueryPolicy::of(&b);
    println!(
        "queries     prefix {} bits, buckets of {}, {}/s (burst {}), {} prefixes/day per member",
        q.prefix_bits, q.bucket_size, q.requests_per_second, q.burst, q.prefixes_per_day
    );
    for m in &b.members {
        let mut status = status_name(m.status);
        if m.status == MemberStatus::Suspended as i32 {
            status.push_str(&format!(" after seq {}", m.suspended_after_seq));
        }
        if m.sharing_basis_expires_at != 0 {
            status.push_str(&format!(
                ", sharing basis until {}",
                format_time(m.sharing_basis_expires_at)
            ));
        }
        println!("member      {} ({:?}) {}", m.id, m.name, kind_name(m.kind));
        println!("  status      {status}");
        println!("  caps        {}", cap_names(m).join(", "));
        println!(
            "  endpoint    {}",
            if m.endpoint.is_empty() {
                "(none)"
            } else {
                &m.endpoint
            }
        );
        for s in &m.tls_spki_sha256 {
            println!("  tls spki    {s}");
        }
        for k in &m.signing_keys {
            let mut state = if k.retired {
                format!("retired after seq {}", k.last_seq)
            } else {
                "current".to_string()
            };
            if k.first_seq > 1 {
                state.push_str(&format!(", signs from seq {}", k.first_seq));
            }
            println!("  log key     {} {state}", hex::encode(&k.public_key));
        }
    }
    println!(
        "signatures  {} ({valid} valid of its operator keys, {} needed)",
        signed.signatures.len(),
        b.threshold
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_capability_shown_by_value() {
        let m = Member {
            capabilities: vec![
                PeerCapability::Contribute as i32,
                99,
                PeerCapability::Query as i32,
            ],
            ..Member::default()
        };
        assert_eq!(cap_names(&m), ["contribute", "unknown(99)", "query"]);
    }
}
