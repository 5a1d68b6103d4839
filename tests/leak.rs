//! Raw identifiers never reach disk, logs, or another node. Every flow runs
//! with recognisable raw values at trace log level: on one node (contribute,
//! match, stream, pre-hashed tokens, retract, extend, list, status, error
//! paths, restart), and across a federation (replication, remote matching by
//! prefix queries, rekey after a key rotation, their error paths), and what
//! a bank's analysts and the liaison do with the results (watchlist alerts,
//! dispositions on alerts and hits with a case-system reference, case
//! packages, flood quarantines, named feedback to the origin, the origin's
//! outcomes, the outcome figures as Markdown, SVG, CSV and JSON, their error
//! paths). Then every data directory, everything every node printed (stdout
//! and stderr), every answer and CLI output and file a client received, and
//! the bytes of every gRPC message exchanged between nodes (captured on
//! every peer listener) are searched for each raw value and each canonical
//! form.

mod support;

use std::path::Path;

use cix::proto::{self, Kind, MatchStatus, PeerCapability};
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
                seconds: cix::time::Clock::system().now() + 86_400,
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
    let mut places = files(&node.data_dir());
    places.push(("logs".to_string(), logs.into_bytes()));
    let found = search(&places);
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

/// Every place a raw value could have reached, searched for every needle.
/// Every node's logs (which must hold trace lines: the most it logs) and
/// every file of its data directory, each named.
fn logs_and_data(c: &Coalition) -> Vec<(String, Vec<u8>)> {
    let mut places = Vec::new();
    for n in &c.nodes {
        let logs = n.logs();
        assert!(logs.contains("TRACE"), "the node logged at trace level");
        places.push((format!("{} logs", n.dir.display()), logs.into_bytes()));
        places.extend(files(&n.data_dir()));
    }
    places
}

fn search(places: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for n in needles() {
        for (what, bytes) in places {
            if contains(bytes, n.as_bytes()) {
                found.push(format!("{what} contains {n:?}"));
            }
        }
    }
    found
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|(p, b)| (p.display().to_string(), b))
        .collect()
}

fn all_ids() -> Vec<proto::Identifier> {
    CANARIES
        .iter()
        .map(|(k, v, _)| id(*k, v))
        .chain(INVALID_CANARIES.iter().map(|(k, v)| id(*k, v)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_identifier_reaches_a_peer_in_any_flow() {
    const LIAISON: usize = 0;
    const BANK: usize = 1;
    const ASKER: usize = 2;
    let mut c = Coalition::new(&["liaison-leak", "bank-leak", "asker-leak"]);
    c.list.members[ASKER].capabilities = vec![PeerCapability::Query as i32];
    c.rewrite_root();
    let capture = c.tmp.path().join("capture");
    for n in &mut c.nodes {
        n.capture = Some(capture.clone());
    }
    c.start_all();

    // Contribute (valid and invalid items) and replicate.
    let items: Vec<_> = CANARIES
        .iter()
        .map(|(k, v, _)| item(*k, v))
        .chain(INVALID_CANARIES.iter().map(|(k, v)| item(*k, v)))
        .collect();
    let r = c.contribute(LIAISON, items, "CASE-LEAK-FED").await;
    assert_eq!(r.last_seq, CANARIES.len() as u64);
    let tokens: Vec<Vec<u8>> = r
        .results
        .iter()
        .filter(|x| !x.token.is_empty())
        .map(|x| x.token.clone())
        .collect();
    for (k, v, _) in CANARIES {
        c.wait_match(BANK, *k, v, MatchStatus::Match).await;
    }

    // Local screening at the bank: unary, stream, pre-hashed, error paths.
    let mut bank = c.nodes[BANK].clients().await;
    bank.screening
        .r#match(proto::MatchRequest {
            identifiers: all_ids(),
        })
        .await
        .unwrap();
    let mut s = bank
        .screening
        .match_stream(futures::stream::iter(vec![proto::MatchRequest {
            identifiers: all_ids(),
        }]))
        .await
        .unwrap()
        .into_inner();
    while s.message().await.unwrap().is_some() {}
    let mut t = bank
        .screening
        .match_tokens(futures::stream::iter(vec![proto::MatchTokensRequest {
            tokens: tokens.concat(),
        }]))
        .await
        .unwrap()
        .into_inner();
    while t.message().await.unwrap().is_some() {}
    // Every error message a client receives is searched too.
    let mut errors: Vec<String> = Vec::new();
    let mut bad = bank
        .screening
        .match_tokens(futures::stream::iter(vec![proto::MatchTokensRequest {
            tokens: CANARIES[5].2.as_bytes().to_vec(),
        }]))
        .await
        .unwrap()
        .into_inner();
    errors.push(bad.message().await.unwrap_err().message().to_string());

    // Remote matching by prefix queries, and its error paths.
    let mut asker = c.nodes[ASKER].clients().await;
    let remote = asker
        .screening
        .match_remote(proto::MatchRemoteRequest {
            peer: "bank-leak".into(),
            identifiers: all_ids(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        remote
            .results
            .iter()
            .filter(|r| status_of(r) == MatchStatus::Match)
            .count(),
        CANARIES.len()
    );
    let e = asker
        .screening
        .match_remote(proto::MatchRemoteRequest {
            peer: CANARIES[5].1.into(),
            identifiers: all_ids(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    errors.push(e.message().to_string());
    let mut fed = c.federation(BANK, ASKER).await.unwrap();
    let e = fed
        .query_prefix(proto::QueryPrefixRequest {
            prefixes: vec![1 << 20],
            prefix_bits: 20,
            by_epoch: Vec::new(),
        })
        .await
        .unwrap_err();
    errors.push(e.message().to_string());

    // Contribution error paths, retraction, extension at the liaison.
    let mut liaison = c.nodes[LIAISON].clients().await;
    let e = liaison
        .contribution
        .contribute(contribute_req(
            vec![item(Kind::Email, CANARIES[5].1)],
            "bad\u{7}label",
        ))
        .await
        .unwrap_err();
    errors.push(e.message().to_string());
    let e = liaison
        .contribution
        .retract(proto::RetractRequest {
            identifiers: all_ids(),
            case_ref: "CASE-LEAK-FED".into(),
            reason: "both selectors".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    errors.push(e.message().to_string());
    liaison
        .contribution
        .retract(proto::RetractRequest {
            identifiers: vec![id(CANARIES[0].0, CANARIES[0].1)],
            reason: "leak test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.wait_match(BANK, CANARIES[0].0, CANARIES[0].1, MatchStatus::NoMatch)
        .await;
    liaison
        .contribution
        .extend(proto::ExtendRequest {
            case_ref: "CASE-LEAK-FED".into(),
            valid_until: Some(prost_types::Timestamp {
                seconds: cix::time::Clock::system().now() + 86_400,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    // Key rotation: epoch 2 installed and listed, then rekey from raw values.
    let key2 = cix::keys::TokenKey::generate();
    let key2_path = c.tmp.path().join("epoch-2.key");
    key2.write_new(&key2_path).unwrap();
    drop((bank, liaison, asker, fed));
    for n in &mut c.nodes {
        n.append_config(&format!(
            "\n[[token_epoch]]\nid = 2\nkey_file = {:?}\n",
            key2_path.display().to_string()
        ));
        n.restart();
    }
    let now = cix::time::Clock::system().now();
    let signed = c.next(|l| {
        l.epochs.push(proto::KeyEpoch {
            id: 2,
            valid_from: now - 1,
            valid_until: now + 86_400,
            key_sha256: key2.fingerprint(),
        })
    });
    let mut fed = c.federation(LIAISON, BANK).await.unwrap();
    fed.publish_trust_list(signed).await.unwrap();
    for i in 0..3 {
        c.wait_for_version(i, 2).await;
    }
    let r = c.rekey(LIAISON, all_ids()).await;
    assert_eq!(
        r.rekeyed,
        CANARIES.len() as u64 - 1,
        "all but the retracted one"
    );
    // The rekeyed batch reaches the bank (the asker keeps no replica).
    let start = std::time::Instant::now();
    while c.heads(BANK).await != c.heads(LIAISON).await {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "rekey never replicated"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(c.heads(BANK).await[0].1 > CANARIES.len() as u64 + 1);
    let mut asker = c.nodes[ASKER].clients().await;
    asker
        .screening
        .match_remote(proto::MatchRemoteRequest {
            peer: "bank-leak".into(),
            identifiers: all_ids(),
        })
        .await
        .unwrap();
    drop((asker, fed));
    for n in &mut c.nodes {
        assert!(n.stop());
    }

    let mut places = logs_and_data(&c);
    assert_eq!(errors.len(), 5);
    places.push(("error messages".to_string(), errors.join("\n").into_bytes()));
    let captured = files(&capture);
    assert_eq!(captured.len(), 3, "one capture per node's peer listener");
    let wire: Vec<u8> = captured.iter().flat_map(|(_, b)| b.clone()).collect();
    places.extend(captured);
    let found = search(&places);
    assert!(
        found.is_empty(),
        "raw identifiers leaked:\n{}",
        found.join("\n")
    );

    // Not vacuous: the capture holds the inter-node traffic itself (tokens
    // in replicated batches and prefix answers, the case label, the methods),
    // and the peer's store holds the replicated case label.
    for t in &tokens[1..] {
        assert!(
            contains(&wire, t),
            "a replicated token is missing from the capture"
        );
    }
    for what in [
        &b"CASE-LEAK-FED"[..],
        b"/cix.v1.Federation/Pull",
        b"/cix.v1.Federation/QueryPrefix",
    ] {
        assert!(
            contains(&wire, what),
            "{} missing from the capture",
            String::from_utf8_lossy(what)
        );
    }
    assert!(files_under(&c.nodes[BANK].data_dir())
        .iter()
        .any(|(_, b)| contains(b, b"CASE-LEAK-FED")));
}

/// Runs `cix ARGS` against `node`, asserting success; gives one place to
/// search: the command, its stdout and its stderr.
fn cli_ok(node: &TestNode, args: &[&str]) -> (String, Vec<u8>) {
    let (ok, out, err) = run_cli(node, args);
    assert!(ok, "cix {}: {err}", args.join(" "));
    (
        format!("cix {}", args.join(" ")),
        format!("{out}\n{err}").into_bytes(),
    )
}

fn disposition_hit(origin: &str, seq: u64, watch_reference: &str) -> proto::DispositionTarget {
    proto::DispositionTarget {
        target: Some(proto::disposition_target::Target::Hit(proto::HitTarget {
            origin: origin.into(),
            seq,
            watch_reference: watch_reference.into(),
        })),
    }
}

fn disposition_alert(alert: u64) -> proto::DispositionTarget {
    proto::DispositionTarget {
        target: Some(proto::disposition_target::Target::Alert(alert)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_identifier_reaches_disk_logs_outputs_or_a_peer_through_dispositions_feedback_and_reports(
) {
    const LIAISON: usize = 0;
    const BANK: usize = 1;
    const CASE: &str = "CASE-LEAK-FB";
    let mut c = Coalition::new(&["liaison-leak", "bank-leak"]);
    let capture = c.tmp.path().join("capture");
    for n in &mut c.nodes {
        n.capture = Some(capture.clone());
        feedback_on(n);
    }
    // Five hits a day quarantine an indicator at the bank.
    c.nodes[BANK].append_config("\n[flood]\nhits_per_day = 5\nwatch_entries_per_day = 3\n");
    c.start_all();
    let out_dir = c.tmp.path().join("outputs");
    std::fs::create_dir_all(&out_dir).unwrap();
    // Every answer a client receives and every CLI output, searched too.
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let answer =
        |what: &str, v: &dyn std::fmt::Debug| (what.to_string(), format!("{v:?}").into_bytes());

    // The bank watches every canary (and the invalid ones) under its own
    // references; the liaison contributes them; the bank's alerts rise.
    let watch_ref = |i: usize| format!("LEAK-W-{i:02}");
    let watched = watchlist(&c.nodes[BANK])
        .await
        .add(proto::WatchAddRequest {
            items: all_ids()
                .into_iter()
                .enumerate()
                .map(|(i, ident)| proto::WatchItem {
                    reference: watch_ref(i),
                    item: Some(proto::watch_item::Item::Identifier(ident)),
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    outputs.push(answer("Watchlist.Add", &watched));
    let mut sub = subscribe(&c.nodes[BANK], 0).await.unwrap();
    let items: Vec<_> = CANARIES
        .iter()
        .map(|(k, v, _)| item(*k, v))
        .chain(INVALID_CANARIES.iter().map(|(k, v)| item(*k, v)))
        .collect();
    let r = c.contribute(LIAISON, items, CASE).await;
    assert_eq!(r.last_seq, CANARIES.len() as u64);
    let tokens: Vec<Vec<u8>> = r
        .results
        .iter()
        .filter(|x| !x.token.is_empty())
        .map(|x| x.token.clone())
        .collect();
    let raised = next(&mut sub, CANARIES.len()).await;
    outputs.push(answer("Alerts.Subscribe", &raised));
    let alert_of = |i: usize| {
        raised
            .iter()
            .find(|e| e.watch_reference == watch_ref(i))
            .unwrap_or_else(|| panic!("no alert for canary {i}: {raised:?}"))
            .clone()
    };

    // Dispositions at the bank: on an alert with a case-system reference
    // (the API and the CLI), on a hit with and without its watch reference.
    let mut bank = c.nodes[BANK].clients().await;
    let a0 = alert_of(0);
    let rec = bank
        .dispositions
        .record(proto::RecordDispositionRequest {
            target: Some(disposition_alert(a0.alert)),
            disposition: "confirmed".into(),
            actions: vec!["reported".into(), "blocked".into()],
            case_system_ref: "SAR-LEAK-0001".into(),
        })
        .await
        .unwrap()
        .into_inner();
    outputs.push(answer("Dispositions.Record alert", &rec));
    let a1 = alert_of(1);
    outputs.push(cli_ok(
        &c.nodes[BANK],
        &[
            "disposition",
            "record",
            "--alert",
            &a1.alert.to_string(),
            "--outcome",
            "confirmed",
            "--action",
            "closed",
            "--case-system-ref",
            "SAR-LEAK-0002",
        ],
    ));
    let a2 = alert_of(2);
    let hit2 = format!("liaison-leak:{}", a2.seq);
    outputs.push(cli_ok(
        &c.nodes[BANK],
        &[
            "disposition",
            "record",
            "--hit",
            &hit2,
            "--watch-ref",
            &watch_ref(2),
            "--outcome",
            "false_positive",
        ],
    ));
    let a3 = alert_of(3);
    for d in ["under_review", "confirmed"] {
        let rec = bank
            .dispositions
            .record(proto::RecordDispositionRequest {
                target: Some(disposition_hit("liaison-leak", a3.seq, "")),
                disposition: d.into(),
                actions: vec!["reported".into()],
                case_system_ref: "SAR-LEAK-0003".into(),
            })
            .await
            .unwrap()
            .into_inner();
        outputs.push(answer("Dispositions.Record hit", &rec));
    }
    // Their error paths, with raw values inside.
    let refused = [
        proto::RecordDispositionRequest {
            target: Some(disposition_alert(a0.alert)),
            disposition: "confirmed".into(),
            actions: vec![],
            case_system_ref: format!("{}\u{7}", CANARIES[5].1),
        },
        proto::RecordDispositionRequest {
            target: Some(disposition_alert(a0.alert)),
            disposition: CANARIES[5].1.into(),
            actions: vec![CANARIES[6].1.into()],
            case_system_ref: String::new(),
        },
        proto::RecordDispositionRequest {
            target: Some(disposition_hit(CANARIES[5].1, 1, "")),
            disposition: "confirmed".into(),
            actions: vec![],
            case_system_ref: String::new(),
        },
    ];
    for req in refused {
        let e = bank.dispositions.record(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        errors.push(e.message().to_string());
    }
    let listed = bank
        .dispositions
        .list(proto::ListDispositionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.records.len(), 5, "{listed:?}");
    outputs.push(answer("Dispositions.List", &listed));
    outputs.push(cli_ok(&c.nodes[BANK], &["disposition", "list"]));
    outputs.push(cli_ok(&c.nodes[BANK], &["disposition", "list", "--json"]));
    outputs.push(cli_ok(&c.nodes[BANK], &["alerts", "list"]));

    // Case packages: the API and `cix report case`, of alerts and hits.
    let mut packages = Vec::new();
    for target in [
        disposition_alert(a0.alert),
        disposition_hit("liaison-leak", a3.seq, ""),
        disposition_hit("liaison-leak", a2.seq, &watch_ref(2)),
    ] {
        let json = bank
            .reports
            .case_report(proto::CaseReportRequest {
                target: Some(target),
            })
            .await
            .unwrap()
            .into_inner()
            .json;
        packages.push(json.clone());
        outputs.push(("Reports.CaseReport".to_string(), json.into_bytes()));
    }
    let e = bank
        .reports
        .case_report(proto::CaseReportRequest {
            target: Some(disposition_hit(CANARIES[7].1, 1, "")),
        })
        .await
        .unwrap_err();
    errors.push(e.message().to_string());
    let case_file = out_dir.join("case-a1.json");
    cli_ok(
        &c.nodes[BANK],
        &[
            "report",
            "case",
            "--alert",
            &a1.alert.to_string(),
            "--out",
            case_file.to_str().unwrap(),
        ],
    );
    outputs.push(cli_ok(
        &c.nodes[BANK],
        &[
            "report",
            "case",
            "--hit",
            &hit2,
            "--watch-ref",
            &watch_ref(2),
        ],
    ));
    let package = std::fs::read_to_string(&case_file).unwrap();
    assert!(package.contains("SAR-LEAK-0002"), "{package}");
    packages.push(package);

    // Flood control at the bank: five screenings quarantine every canary,
    // and each origin hears `flood` once.
    for _ in 0..5 {
        let m = bank
            .screening
            .r#match(proto::MatchRequest {
                identifiers: all_ids(),
            })
            .await
            .unwrap()
            .into_inner();
        outputs.push(answer("Screening.Match", &m));
    }
    let quarantined = bank.quarantines().await.unwrap();
    assert_eq!(quarantined.len(), CANARIES.len(), "{quarantined:?}");
    outputs.push(answer("Quarantine.List", &quarantined));
    outputs.push(cli_ok(&c.nodes[BANK], &["quarantine", "list"]));

    // Every feedback item (four dispositions, eight floods) reaches the
    // liaison.
    let fed_back = 4 + CANARIES.len() as u64;
    c.nodes[BANK]
        .wait_status("every feedback item delivered", |s| {
            s.flood_feedback_sent == CANARIES.len() as u64
                && s.feedback_delivered == fed_back
                && s.feedback_pending == 0
        })
        .await;
    c.nodes[LIAISON]
        .wait_status("every feedback item recorded", |s| {
            s.feedback_received == fed_back
        })
        .await;

    // The liaison's view: the Outcomes answer and `cix outcomes`.
    let mut liaison = c.nodes[LIAISON].clients().await;
    let heard = liaison
        .outcomes
        .list(proto::ListOutcomesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(heard.indicators.len(), CANARIES.len(), "{heard:?}");
    outputs.push(answer("Outcomes.List", &heard));
    let e = liaison
        .outcomes
        .list(proto::ListOutcomesRequest {
            case_ref: format!("{}\u{7}", CANARIES[5].1),
        })
        .await
        .unwrap_err();
    errors.push(e.message().to_string());
    outputs.push(cli_ok(&c.nodes[LIAISON], &["outcomes"]));
    outputs.push(cli_ok(
        &c.nodes[LIAISON],
        &["outcomes", "--case-ref", CASE, "--json"],
    ));

    // The outcome figures at both: the answer, and `cix report outcomes`
    // in every format, the chart included.
    let today = cix::outcome::day_string(cix::outcome::utc_day(cix::time::system_now().unwrap()));
    for (i, name) in [(LIAISON, "liaison"), (BANK, "bank")] {
        let figures = c.nodes[i]
            .clients()
            .await
            .figures
            .outcomes(proto::OutcomesRequest {
                from: today.clone(),
                to: today.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        outputs.push(answer("Figures.Outcomes", &figures));
        let md = out_dir.join(format!("outcomes-{name}.md"));
        cli_ok(
            &c.nodes[i],
            &[
                "report",
                "outcomes",
                "--from",
                &today,
                "--out",
                md.to_str().unwrap(),
            ],
        );
        assert!(out_dir.join(format!("outcomes-{name}.svg")).is_file());
        for format in ["csv", "json"] {
            outputs.push(cli_ok(
                &c.nodes[i],
                &["report", "outcomes", "--from", &today, "--format", format],
            ));
        }
    }
    drop((bank, liaison));
    for n in &mut c.nodes {
        assert!(n.stop());
    }

    let mut places = logs_and_data(&c);
    assert_eq!(errors.len(), 5);
    places.push(("error messages".to_string(), errors.join("\n").into_bytes()));
    let written = files(&out_dir);
    assert_eq!(written.len(), 5, "a case package, two reports, two charts");
    places.extend(written.iter().cloned());
    places.extend(outputs.iter().cloned());
    let captured = files(&capture);
    let wire: Vec<u8> = captured.iter().flat_map(|(_, b)| b.clone()).collect();
    places.extend(captured);
    let found = search(&places);
    assert!(
        found.is_empty(),
        "raw identifiers leaked:\n{}",
        found.join("\n")
    );

    // Not vacuous: the places hold what each flow produced.
    let frames = feedback_frames(&capture);
    let sent: Vec<proto::FeedbackItem> = feedback_requests(&frames)
        .into_iter()
        .flat_map(|r| r.items)
        .collect();
    assert!(sent.len() as u64 >= fed_back, "{sent:?}");
    for (header, data) in &frames {
        for t in &tokens {
            assert!(!contains(data, t), "{header} carries a token");
        }
        assert!(
            !contains(data, CASE.as_bytes()),
            "{header} carries the case"
        );
    }
    assert!(contains(&wire, b"/cix.v1.Federation/Feedback"));
    for p in &packages {
        assert!(p.contains(CASE) && p.contains("liaison-leak"), "{p}");
    }
    let all_outputs: Vec<u8> = outputs.iter().flat_map(|(_, b)| b.clone()).collect();
    for what in [
        &b"SAR-LEAK-0001"[..],
        b"SAR-LEAK-0003",
        b"false_positive",
        b"hits_per_day",
        CASE.as_bytes(),
    ] {
        assert!(
            contains(&all_outputs, what),
            "{} missing from the outputs",
            String::from_utf8_lossy(what)
        );
    }
    let md = std::fs::read_to_string(out_dir.join("outcomes-bank.md")).unwrap();
    assert!(md.contains("| email |"), "{md}");
    assert!(files_under(&c.nodes[BANK].data_dir())
        .iter()
        .any(|(_, b)| contains(b, b"SAR-LEAK-0001")));
}
