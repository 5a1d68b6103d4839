//! k-anonymous prefix queries between real nodes: a member that keeps no
//! replica screens through a peer (`cix match --remote`, Screening.MatchRemote)
//! and gets the same answers as a local match; answers are padded to the
//! coalition's bucket size; the `query` capability, the prefix length and the
//! per-member limits are enforced, with a retry hint and counts in status.

mod support;

use std::time::Duration;

use cix::proto::{self, Kind, MatchStatus, PeerCapability};
use support::*;

const LIAISON: usize = 0;
const BANK: usize = 1;
const ASKER: usize = 2;

/// liaison-a and bank-b hold replicas; asker-c may only query (no replica).
/// Buckets of 8; 2 requests/s with a burst of 4 per asking member.
fn coalition() -> Coalition {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "asker-c"]);
    c.list.members[ASKER].capabilities = vec![PeerCapability::Query as i32];
    c.list.members[LIAISON]
        .capabilities
        .retain(|&k| k != PeerCapability::Query as i32);
    c.list.query_policy = Some(proto::QueryPolicy {
        prefix_bits: 20,
        bucket_size: 8,
        requests_per_second: 2,
        burst: 4,
        prefixes_per_day: 0,
    });
    c.rewrite_root();
    c.start_all();
    c
}

/// Origin, case, kind, epoch, seq.
type HitKey = (String, String, i32, u32, u64);

fn key(r: &proto::MatchResult) -> (i32, Vec<HitKey>, String) {
    let mut hits: Vec<_> = r
        .hits
        .iter()
        .map(|h| (h.origin.clone(), h.case_ref.clone(), h.kind, h.epoch, h.seq))
        .collect();
    hits.sort();
    (r.status, hits, r.invalid_reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_matching_answers_like_a_local_match_and_limits_hold() {
    let c = coalition();
    let hits = [
        (Kind::Email, "prefix-query-hit@example.org"),
        (Kind::Iban, "GB82 WEST 1234 5698 7654 32"),
        (Kind::Domain, "prefix-query-hit.example"),
    ];
    let items: Vec<_> = hits.iter().map(|(k, v)| item(*k, v)).collect();
    let stored = c.contribute(LIAISON, items, "CASE-PREFIX").await;
    c.wait_match(BANK, Kind::Domain, hits[2].1, MatchStatus::Match)
        .await;

    // The asker keeps no replica: it knows nothing locally.
    let mut asker = c.nodes[ASKER].clients().await;
    assert_eq!(
        status_of(&match_one(&mut asker, Kind::Email, hits[0].1).await),
        MatchStatus::NoMatch
    );

    // Remote answers equal the bank's local answers, item by item.
    let mut identifiers: Vec<_> = hits.iter().map(|(k, v)| id(*k, v)).collect();
    identifiers.push(id(Kind::Email, "nobody-here@example.org"));
    identifiers.push(id(Kind::Iban, "GB82 WEST 1234 5698 7654 33"));
    identifiers.push(id(Kind::Unspecified, "whatever"));
    let remote = asker
        .screening
        .match_remote(proto::MatchRemoteRequest {
            peer: "bank-b".into(),
            identifiers: identifiers.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut bank = c.nodes[BANK].clients().await;
    let local = bank
        .screening
        .r#match(proto::MatchRequest { identifiers })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(remote.results.len(), local.results.len());
    for (r, l) in remote.results.iter().zip(&local.results) {
        assert_eq!(key(r), key(l));
    }
    let statuses: Vec<_> = remote.results.iter().map(status_of).collect();
    use MatchStatus::*;
    assert_eq!(statuses, [Match, Match, Match, NoMatch, Invalid, Invalid]);

    // On the wire: whole buckets of the policy's size, the real token inside.
    let token = stored.results[0].token.clone();
    let prefix = u32::from_be_bytes(token[..4].try_into().unwrap()) >> 12;
    let mut fed = c.federation(BANK, ASKER).await.unwrap();
    let r = fed
        .query_prefix(proto::QueryPrefixRequest {
            prefixes: vec![prefix, prefix ^ 0x5a5a],
            prefix_bits: 20,
            by_epoch: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.buckets.len(), 2);
    assert!(r.buckets.iter().all(|b| b.entries.len() == 8));
    assert_eq!(
        r.buckets[0]
            .entries
            .iter()
            .filter(|e| e.token == token)
            .count(),
        1
    );
    for b in &r.buckets {
        for e in &b.entries {
            let p = u32::from_be_bytes(e.token[..4].try_into().unwrap()) >> 12;
            assert_eq!(p, b.prefix, "every entry lies under its prefix");
        }
    }

    // The prefix length is the coalition's.
    let e = fed
        .query_prefix(proto::QueryPrefixRequest {
            prefixes: vec![1],
            prefix_bits: 24,
            by_epoch: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("prefix_bits"), "{}", e.message());

    // Without the query capability: refused before any handler.
    let mut liaison = c.federation(BANK, LIAISON).await.unwrap();
    let e = liaison
        .query_prefix(proto::QueryPrefixRequest {
            prefixes: vec![prefix],
            prefix_bits: 20,
            by_epoch: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // Limits: a burst of 4, then RESOURCE_EXHAUSTED with a retry hint.
    let mut refused = None;
    for _ in 0..12 {
        if let Err(e) = fed
            .query_prefix(proto::QueryPrefixRequest {
                prefixes: vec![prefix],
                prefix_bits: 20,
                by_epoch: Vec::new(),
            })
            .await
        {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("the per-member limit never tripped");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    let hint = cix::client::retry_hint(&e).expect("a retry hint");
    assert!(
        hint > Duration::ZERO && hint <= Duration::from_secs(1),
        "{hint:?}"
    );
    assert!(e.message().contains("retry after"), "{}", e.message());

    // An unknown peer is named as the field in error.
    let e = asker
        .screening
        .match_remote(proto::MatchRemoteRequest {
            peer: "no-such-member".into(),
            identifiers: vec![id(Kind::Email, hits[0].1)],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("peer:"), "{}", e.message());

    // Counts, never tokens or values, in status and logs.
    let s = c.nodes[BANK].status().await;
    let q = s
        .queries_served
        .iter()
        .find(|q| q.member == "asker-c")
        .expect("counts for asker-c");
    assert!(
        q.requests >= 4 && q.prefixes >= 5 && q.refused >= 1,
        "{q:?}"
    );
    // Every refusal by its reason, per member.
    let k = c.nodes[BANK].counters("asker-c").await;
    assert_eq!(
        (k.queries_answered, k.prefixes_answered),
        (q.requests, q.prefixes)
    );
    assert!(
        reason_count(&k.requests_refused, "prefix_bits") >= 1
            && reason_count(&k.requests_refused, "prefix_limit") == q.refused,
        "{k:?}"
    );
    let l = c.nodes[BANK].counters("liaison-a").await;
    assert!(
        reason_count(&l.requests_refused, "missing_capability") >= 1,
        "{l:?}"
    );
    assert_eq!(l.queries_answered, 0);
    let logs = c.nodes[BANK].logs();
    assert!(logs.contains("prefix query refused"));
    assert!(!logs.contains(&hex::encode(&token)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cix_match_remote_prints_the_same_rows_as_a_local_match() {
    let c = coalition();
    let values = ["cli-remote-a.example", "cli-remote-b.example"];
    let items: Vec<_> = values.iter().map(|v| item(Kind::Domain, v)).collect();
    c.contribute(LIAISON, items, "CASE-CLI").await;
    c.wait_match(BANK, Kind::Domain, values[1], MatchStatus::Match)
        .await;
    let input = c.nodes[ASKER].dir.join("screen.txt");
    std::fs::write(
        &input,
        format!("{}\nnot-listed.example\n{}\n", values[0], values[1]),
    )
    .unwrap();
    let run = |node: usize, remote: bool| {
        let out = c.nodes[node].dir.join(format!("out-{remote}.jsonl"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cix"));
        cmd.arg("match")
            .arg("--dir")
            .arg(&c.nodes[node].dir)
            .args(["--kind", "domain", "--file"])
            .arg(&input)
            .arg("--out")
            .arg(&out);
        if remote {
            cmd.args(["--remote", "bank-b"]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(out).unwrap()
    };
    let remote = run(ASKER, true);
    let local = run(BANK, false);
    assert_eq!(remote, local);
    assert_eq!(remote.matches("\"MATCH\"").count(), 2, "{remote}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_member_listener_limits_refuse_with_a_retry_hint() {
    let mut node = TestNode::new("bank-limited");
    node.append_config("\n[limits]\nmatch_requests_per_second = 1\nmatch_burst = 2\n");
    node.start();
    let mut c = node.clients().await;
    let mut refused = None;
    for _ in 0..6 {
        let r = c
            .screening
            .r#match(proto::MatchRequest {
                identifiers: vec![id(Kind::Domain, "limited.example")],
            })
            .await;
        if let Err(e) = r {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("the member-listener limit never tripped");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(cix::client::retry_hint(&e).is_some());
    let s = c
        .admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.member_requests_limited >= 1);
    assert!(node.logs().contains("member listener call refused"));
}
