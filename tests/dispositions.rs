//! Dispositions end to end on a real node over real mutual TLS: a bank's
//! `confirmed` or `false_positive` stops an alert from being raised again
//! (also after a restart and after the contributor retracts and
//! re-contributes the same case), `under_review` stops nothing, refused
//! input names the field and changes nothing, the `disposition`
//! capability is required, the case package carries the indicator's
//! metadata and never a raw value, and the CLI round trip.

mod support;

use std::process::{Command, Stdio};

use cix::proto::{self, AlertAction, Kind};
use support::*;

const VALUE: &str = "disposed.customer@dispositions.example";
const CASE: &str = "CASE-D-1";

fn witem(reference: &str, value: &str) -> proto::WatchItem {
    proto::WatchItem {
        reference: reference.into(),
        item: Some(proto::watch_item::Item::Identifier(id(Kind::Email, value))),
    }
}

fn alert_target(a: u64) -> Option<proto::DispositionTarget> {
    Some(proto::DispositionTarget {
        target: Some(proto::disposition_target::Target::Alert(a)),
    })
}

fn record_req(a: u64, d: &str, actions: &[&str], csr: &str) -> proto::RecordDispositionRequest {
    proto::RecordDispositionRequest {
        target: alert_target(a),
        disposition: d.into(),
        actions: actions.iter().map(|s| s.to_string()).collect(),
        case_system_ref: csr.into(),
    }
}

async fn contribute(n: &TestNode) {
    let mut c = n.clients().await;
    c.contribution
        .contribute(contribute_req(vec![item(Kind::Email, VALUE)], CASE))
        .await
        .unwrap();
}

async fn retract(n: &TestNode) {
    let mut c = n.clients().await;
    c.contribution
        .retract(proto::RetractRequest {
            identifiers: vec![id(Kind::Email, VALUE)],
            reason: "cleared".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn status(n: &TestNode) -> proto::StatusResponse {
    let mut c = n.clients().await;
    c.admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// A node watching VALUE, with one alert raised for it; returns the
/// subscription and the alert id.
async fn node_with_alert(n: &mut TestNode) -> (tonic::Streaming<proto::AlertEvent>, u64) {
    n.start();
    watchlist(n)
        .await
        .add(proto::WatchAddRequest {
            items: vec![witem("CUST-D-1", VALUE)],
        })
        .await
        .unwrap();
    let mut sub = subscribe(n, 0).await.unwrap();
    contribute(n).await;
    let e = next(&mut sub, 1).await;
    assert_eq!(e[0].action(), AlertAction::Raised);
    (sub, e[0].alert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_alert_is_not_raised_again_after_retraction_and_recontribution_nor_after_a_restart(
) {
    let mut n = TestNode::new("bank-a");
    let (mut sub, first) = node_with_alert(&mut n).await;
    let mut c = n.clients().await;
    // under_review stops nothing: retracted and contributed again, raised again.
    let r = c
        .dispositions
        .record(record_req(first, "under_review", &[], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.id, r.in_force, r.case_ref.as_str()), (1, true, CASE));
    retract(&n).await;
    contribute(&n).await;
    let e = next(&mut sub, 2).await;
    assert_eq!(e[0].action(), AlertAction::Withdrawn);
    assert_eq!(e[1].action(), AlertAction::Raised);
    let second = e[1].alert;
    assert_ne!(second, first);

    // confirmed settles the triple: the open alert stays until withdrawn,
    // and is never raised again.
    let r = c
        .dispositions
        .record(record_req(
            second,
            "confirmed",
            &["closed", "reported", "blocked"],
            "SAR-2026-0042",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.actions, vec!["reported", "blocked", "closed"]);
    assert_eq!(r.origin, "bank-a");
    retract(&n).await;
    let e = next(&mut sub, 1).await;
    assert_eq!(e[0].action(), AlertAction::Withdrawn);
    contribute(&n).await;
    nothing_more(&mut sub).await;
    let s = status(&n).await;
    assert_eq!(
        (
            s.dispositions_recorded,
            s.dispositions_confirmed,
            s.alerts_settled
        ),
        (2, 1, 1)
    );
    assert!(s.alerts_not_raised >= 1, "{s:?}");

    // Durable: after a restart, neither the recovery scan nor another
    // retraction and re-contribution raises it.
    n.restart();
    let mut sub = subscribe(&n, e[0].number).await.unwrap();
    retract(&n).await;
    contribute(&n).await;
    nothing_more(&mut sub).await;
    let mut c = n.clients().await;
    let page = c
        .dispositions
        .list(proto::ListDispositionsRequest {
            in_force_only: true,
            disposition: "confirmed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].case_system_ref, "SAR-2026-0042");
    assert_eq!(page.newest, 2);
    assert_eq!(status(&n).await.alerts_settled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_positive_on_a_hit_with_its_watch_reference_settles_the_alert_and_the_case_package_has_no_raw_value(
) {
    let mut n = TestNode::new("bank-a");
    let (mut sub, alert) = node_with_alert(&mut n).await;
    let mut c = n.clients().await;
    let hit = match_one(&mut c, Kind::Email, VALUE).await.hits[0].clone();
    let target = Some(proto::DispositionTarget {
        target: Some(proto::disposition_target::Target::Hit(proto::HitTarget {
            origin: hit.origin.clone(),
            seq: hit.seq,
            watch_reference: "CUST-D-1".into(),
        })),
    });
    let r = c
        .dispositions
        .record(proto::RecordDispositionRequest {
            target: target.clone(),
            disposition: "false_positive".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.seq, hit.seq);
    // A hit's case package, while the node holds its indicator.
    let hit_json = c
        .reports
        .case_report(proto::CaseReportRequest {
            target: target.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let v: serde_json::Value = serde_json::from_str(&hit_json).unwrap();
    assert_eq!(v["disposition"]["disposition"], "false_positive");
    assert_eq!(v["watch_reference"], "CUST-D-1");
    retract(&n).await;
    let e = next(&mut sub, 1).await;
    assert_eq!(e[0].action(), AlertAction::Withdrawn);
    contribute(&n).await;
    nothing_more(&mut sub).await;
    assert_eq!(status(&n).await.dispositions_false_positive, 1);

    // The case package of the alert (withdrawn since): metadata, no value.
    let json = c
        .reports
        .case_report(proto::CaseReportRequest {
            target: alert_target(alert),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["indicator"]["kind"], "email");
    assert_eq!(v["indicator"]["tier"], "confirmed");
    assert_eq!(v["indicator"]["origin"], "bank-a");
    assert_eq!(v["indicator"]["seq"], hit.seq);
    assert_eq!(v["case_ref"], CASE);
    assert_eq!(v["contributor"]["member"], "bank-a");
    assert!(v["indicator"]["created_at"].is_string());

    // The raw value is nowhere: packages, data dir, logs.
    n.stop();
    let raw = VALUE.as_bytes();
    assert!(!contains(json.as_bytes(), raw));
    assert!(!contains(hit_json.as_bytes(), raw));
    for (path, bytes) in files_under(&n.data_dir()) {
        assert!(
            !contains(&bytes, raw),
            "{} holds the raw value",
            path.display()
        );
    }
    assert!(!n.logs().contains(VALUE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_input_names_the_field_and_changes_nothing_and_the_capability_is_required() {
    let mut n = TestNode::new("bank-a");
    let other = n.add_client("analyst-without", &["watchlist"]);
    let (_sub, alert) = node_with_alert(&mut n).await;
    let mut c = n.clients().await;
    let cases = [
        (
            record_req(999, "confirmed", &[], ""),
            tonic::Code::NotFound,
            "target.alert",
        ),
        (
            record_req(alert, "confirmd", &[], ""),
            tonic::Code::InvalidArgument,
            "disposition",
        ),
        (
            record_req(alert, "confirmed", &["frozen"], ""),
            tonic::Code::InvalidArgument,
            "actions",
        ),
        (
            record_req(alert, "confirmed", &[], "bad\u{7}ref"),
            tonic::Code::InvalidArgument,
            "case_system_ref",
        ),
        (
            proto::RecordDispositionRequest {
                disposition: "confirmed".into(),
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
            "target",
        ),
        (
            proto::RecordDispositionRequest {
                target: Some(proto::DispositionTarget {
                    target: Some(proto::disposition_target::Target::Hit(proto::HitTarget {
                        origin: "bank-a".into(),
                        seq: 424_242,
                        watch_reference: String::new(),
                    })),
                }),
                disposition: "confirmed".into(),
                ..Default::default()
            },
            tonic::Code::NotFound,
            "target.hit",
        ),
    ];
    for (req, code, field) in cases {
        let e = c.dispositions.record(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().starts_with(&format!("{field}:")), "{e:?}");
    }
    let s = status(&n).await;
    assert_eq!((s.dispositions_recorded, s.alerts_settled), (0, 0));

    let mut without = n.identity_of(&other).connect().await.unwrap();
    let e = without
        .dispositions
        .record(record_req(alert, "confirmed", &[], ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = without
        .reports
        .case_report(proto::CaseReportRequest {
            target: alert_target(alert),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert_eq!(status(&n).await.dispositions_recorded, 0);
}

fn cix(n: &TestNode, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--dir")
        .arg(&n.dir)
        .env_remove("CIX_DIR")
        .env_remove("CIX_NODE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_records_lists_and_writes_the_case_package() {
    let mut n = TestNode::new("bank-a");
    let (_sub, alert) = node_with_alert(&mut n).await;
    let a = alert.to_string();
    let out = cix(
        &n,
        &[
            "disposition",
            "record",
            "--alert",
            &a,
            "--outcome",
            "confirmed",
            "--action",
            "blocked",
            "--case-system-ref",
            "SAR-9",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.contains(&format!("alert {alert} confirmed")), "{line}");
    let out = cix(
        &n,
        &["disposition", "record", "--alert", &a, "--outcome", "maybe"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("disposition: must be one of"));
    let out = cix(&n, &["disposition", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["actions"], serde_json::json!(["blocked"]));
    assert_eq!(rows[0]["in_force"], true);
    let file = n.dir.join("case.json");
    let out = cix(
        &n,
        &[
            "report",
            "case",
            "--alert",
            &a,
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(v["disposition"]["case_system_ref"], "SAR-9");
    assert_eq!(v["watch_reference"], "CUST-D-1");
    assert!(!contains(&std::fs::read(&file).unwrap(), VALUE.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_package_names_the_contributor_and_its_contact_from_the_trust_list() {
    const LIAISON: usize = 0;
    const BANK: usize = 1;
    let mut c = Coalition::new(&["liaison-d", "bank-d"]);
    c.list.members[LIAISON].contact = "FIU desk +1 555 0100".into();
    c.rewrite_root();
    c.start_all();
    let bank = &c.nodes[BANK];
    watchlist(bank)
        .await
        .add(proto::WatchAddRequest {
            items: vec![witem("CUST-D-9", VALUE)],
        })
        .await
        .unwrap();
    let mut sub = subscribe(bank, 0).await.unwrap();
    c.contribute(LIAISON, vec![item(Kind::Email, VALUE)], CASE)
        .await;
    let e = next(&mut sub, 1).await;
    assert_eq!(e[0].origin, "liaison-d");
    let mut cl = bank.clients().await;
    cl.dispositions
        .record(record_req(e[0].alert, "confirmed", &["reported"], "SAR-1"))
        .await
        .unwrap();
    let json = cl
        .reports
        .case_report(proto::CaseReportRequest {
            target: alert_target(e[0].alert),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["contributor"]["member"], "liaison-d");
    assert_eq!(v["contributor"]["name"], "Test member liaison-d");
    assert_eq!(v["contributor"]["contact"], "FIU desk +1 555 0100");
    assert_eq!(v["indicator"]["origin"], "liaison-d");
    assert_eq!(v["disposition"]["actions"], serde_json::json!(["reported"]));
    assert!(!contains(json.as_bytes(), VALUE.as_bytes()));
}
