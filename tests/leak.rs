//! Raw identifiers never reach disk or logs. A full contribute, match,
//! stream, retract and error-path run with recognisable raw values at trace
//! log level; then the node's data directory and everything it printed are
//! searched for each raw value and each canonical form.

mod support;

use cix::proto::{self, Kind};
use support::*;

/// (kind, raw value as a member's system would send it, canonical form).
const CANARIES: &[(Kind, &str, &str)] = &[
    (
        Kind::Iban,
        "de89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
    ),
    (Kind::Pan, "4929-4208-1717-3321", "4929420817173321"),
    (
        Kind::BankAccount,
        " us : 021000021 : 7731-0042-99 ",
        "US:021000021:7731004299",
    ),
    (
        Kind::Merchant,
        "445566:leakmerch00042",
        "445566:LEAKMERCH00042",
    ),
    (
        Kind::Wallet,
        "ETH:0xAbCdEf0123456789aBcDeF0123456789AbCdEf77",
        "eth:0xabcdef0123456789abcdef0123456789abcdef77",
    ),
    (
        Kind::Email,
        " Leak.Canary.7731@Example-Bank.TEST ",
        "leak.canary.7731@example-bank.test",
    ),
    (Kind::Phone, "0044 (0) 7911-123-456", "+4407911123456"),
    (
        Kind::Domain,
        "Canary-Leak-Domain.EXAMPLE.",
        "canary-leak-domain.example",
    ),
];

/// Invalid values, recognisable too: they must not be echoed either.
const INVALID_CANARIES: &[(Kind, &str)] = &[
    (Kind::Iban, "DE89 3704 0044 0532 0130 01"),
    (Kind::Email, "leak.canary.invalid.at.example"),
    (Kind::Phone, "07911 555 0199"),
    (Kind::Domain, "https://canary-invalid.example/path"),
];

fn needles() -> Vec<String> {
    let mut n = Vec::new();
    for (_, raw, canonical) in CANARIES {
        n.push(raw.to_string());
        n.push(raw.trim().to_string());
        n.push(canonical.to_string());
    }
    for (_, raw) in INVALID_CANARIES {
        n.push(raw.to_string());
    }
    n.sort();
    n.dedup();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_identifiers_never_reach_disk_or_logs() {
    // Every canonical form in this table is what the node itself computes.
    for (kind, raw, canonical) in CANARIES {
        let k = cix::ident::Kind::from_code(*kind as u8).unwrap();
        assert_eq!(cix::ident::normalize(k, raw).unwrap().as_str(), *canonical);
    }
    let mut node = TestNode::new("liaison-leak");
    node.start();
    let mut c = node.clients().await;

    let items: Vec<_> = CANARIES
        .iter()
        .map(|(k, v, _)| item(*k, v))
        .chain(INVALID_CANARIES.iter().map(|(k, v)| item(*k, v)))
        .collect();
    let resp = c
        .contribution
        .contribute(contribute_req(items, "CASE-LEAK-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.results
            .iter()
            .filter(|r| r.status == proto::ItemStatus::Stored as i32)
            .count(),
        CANARIES.len()
    );

    // Unary match, stream, pre-hashed.
    let all_ids: Vec<_> = CANARIES
        .iter()
        .map(|(k, v, _)| id(*k, v))
        .chain(INVALID_CANARIES.iter().map(|(k, v)| id(*k, v)))
        .collect();
    let m = c
        .screening
        .r#match(proto::MatchRequest {
            identifiers: all_ids.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        m.results
            .iter()
            .filter(|r| status_of(r) == proto::MatchStatus::Match)
            .count(),
        CANARIES.len()
    );
    let mut s = c
        .screening
        .match_stream(futures::stream::iter(vec![
            proto::MatchRequest {
                identifiers: all_ids.clone(),
            },
            proto::MatchRequest {
                identifiers: all_ids.clone(),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    while s.message().await.unwrap().is_some() {}
    let tokens: Vec<u8> = resp.results.iter().flat_map(|r| r.token.clone()).collect();
    let mut t = c
        .screening
        .match_tokens(futures::stream::iter(vec![proto::MatchTokensRequest {
            tokens,
        }]))
        .await
        .unwrap()
        .into_inner();
    while t.message().await.unwrap().is_some() {}

    // Error paths with raw values inside.
    let _ = c
        .contribution
        .contribute(contribute_req(
            vec![item(Kind::Email, CANARIES[5].1)],
            "bad\u{7}label",
        ))
        .await
        .unwrap_err();
    let _ = c
        .contribution
        .retract(proto::RetractRequest {
            identifiers: all_ids.clone(),
            case_ref: "CASE-LEAK-1".into(),
            reason: "both selectors".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();

    // Retract by identifier, extend, list, status; restart and match again.
    c.contribution
        .retract(proto::RetractRequest {
            identifiers: all_ids[..2].to_vec(),
            reason: "leak test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.contribution
        .extend(proto::ExtendRequest {
            case_ref: "CASE-LEAK-1".into(),
            valid_until: Some(prost_types::Timestamp {
                seconds: cix::keyring::now_unix() + 86_400,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    c.contribution
        .list(proto::ListRequest::default())
        .await
        .unwrap();
    c.admin.status(proto::StatusRequest {}).await.unwrap();
    drop(c);
    node.restart();
    let mut c = node.clients().await;
    c.screening
        .r#match(proto::MatchRequest {
            identifiers: all_ids,
        })
        .await
        .unwrap();
    drop(c);
    assert!(node.stop());

    let logs = node.logs();
    assert!(logs.contains("TRACE"), "the node logged at trace level");
    assert!(logs.contains("appended to origin log"));
    let mut found = Vec::new();
    for n in needles() {
        if logs.contains(&n) {
            found.push(format!("logs contain {n:?}"));
        }
        for (path, bytes) in files_under(&node.data_dir()) {
            if contains(&bytes, n.as_bytes()) {
                found.push(format!("{} contains {n:?}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "raw identifiers leaked:\n{}",
        found.join("\n")
    );
    // The search is not vacuous: the store holds the case label it was given.
    let store_has_case = files_under(&node.data_dir())
        .iter()
        .any(|(_, b)| contains(b, b"CASE-LEAK-1"));
    assert!(
        store_has_case,
        "the data directory search found nothing at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_carries_no_raw_identifier_to_a_peer() {
    let mut c = Coalition::new(&["liaison-leak", "bank-leak"]);
    c.start_all();
    let items: Vec<_> = CANARIES.iter().map(|(k, v, _)| item(*k, v)).collect();
    let r = c.contribute(0, items, "CASE-LEAK-FED").await;
    assert_eq!(r.last_seq, CANARIES.len() as u64);
    for (k, v, _) in CANARIES {
        c.wait_match(1, *k, v, proto::MatchStatus::Match).await;
    }
    // Retract one and let it travel too.
    let mut a = c.nodes[0].clients().await;
    a.contribution
        .retract(proto::RetractRequest {
            identifiers: vec![id(CANARIES[0].0, CANARIES[0].1)],
            reason: "leak test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.wait_match(1, CANARIES[0].0, CANARIES[0].1, proto::MatchStatus::NoMatch)
        .await;
    let mut found = Vec::new();
    for n in &c.nodes {
        let logs = n.logs();
        assert!(logs.contains("TRACE"));
        for needle in needles() {
            if logs.contains(&needle) {
                found.push(format!("{} logs contain {needle:?}", n.dir.display()));
            }
            for (path, bytes) in files_under(&n.data_dir()) {
                if contains(&bytes, needle.as_bytes()) {
                    found.push(format!("{} contains {needle:?}", path.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "raw identifiers leaked:\n{}",
        found.join("\n")
    );
    // Not vacuous: the peer's store holds the replicated case label.
    assert!(files_under(&c.nodes[1].data_dir())
        .iter()
        .any(|(_, b)| contains(b, b"CASE-LEAK-FED")));
}
