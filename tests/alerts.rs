//! Continuous screening end to end: real nodes over real mutual TLS, a
//! bank's book on the watchlist, and the alerts its node raises, updates
//! and withdraws as indicators arrive, change and go, read by a live
//! subscriber and by the paged list; the Alerts service's capability and
//! cursor rules.

mod support;

use cix::proto::{self, AlertAction, AlertCause, AlertEvent, Kind};
use support::*;

/// The env variable that holds a debug build's alert engine before it
/// takes its next piece of work, while the named file exists.
const HOLD_ENV: &str = "CIX_TEST_ALERTS_HOLD_FILE";

fn witem(reference: &str, kind: Kind, value: &str) -> proto::WatchItem {
    proto::WatchItem {
        reference: reference.into(),
        item: Some(proto::watch_item::Item::Identifier(id(kind, value))),
    }
}

async fn watch(n: &TestNode, items: Vec<proto::WatchItem>) -> Vec<proto::WatchAddStatus> {
    let r = watchlist(n)
        .await
        .add(proto::WatchAddRequest { items })
        .await
        .unwrap()
        .into_inner();
    r.results.iter().map(|r| r.status()).collect()
}

fn summary(e: &AlertEvent) -> (AlertAction, AlertCause, &str, &str, &str) {
    (
        e.action(),
        e.cause(),
        e.watch_reference.as_str(),
        e.origin.as_str(),
        e.case_ref.as_str(),
    )
}

fn emails(prefix: &str, k: usize) -> Vec<String> {
    (0..k)
        .map(|i| format!("{prefix}.{i}@alerts.example"))
        .collect()
}

fn email_items(values: &[String]) -> Vec<proto::ContributionItem> {
    values.iter().map(|v| item(Kind::Email, v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_contribution_raises_an_extension_updates_a_retraction_withdraws_and_a_new_one_raises_again(
) {
    let mut n = TestNode::new("bank-a");
    n.start();
    let v = emails("customer", 3);
    let st = watch(
        &n,
        vec![
            witem("CUST-0001", Kind::Email, &v[0]),
            witem("CUST-0002", Kind::Email, &v[1]),
            witem("CUST-0003", Kind::Email, &v[2]),
        ],
    )
    .await;
    assert_eq!(st, vec![proto::WatchAddStatus::Added; 3]);
    let mut sub = subscribe(&n, 0).await.unwrap();
    nothing_more(&mut sub).await;

    let mut c = n.clients().await;
    let now = cix::time::system_now().unwrap();
    let mut req = contribute_req(email_items(&v[..2]), "CASE-A-1");
    req.valid_until = Some(prost_types::Timestamp {
        seconds: now + 30 * 86_400,
        nanos: 0,
    });
    let added = c.contribution.contribute(req).await.unwrap().into_inner();
    let mut raised = next(&mut sub, 2).await;
    raised.sort_by(|a, b| a.watch_reference.cmp(&b.watch_reference));
    for (e, r) in raised.iter().zip(["CUST-0001", "CUST-0002"]) {
        assert_eq!(
            summary(e),
            (
                AlertAction::Raised,
                AlertCause::Contributed,
                r,
                "bank-a",
                "CASE-A-1"
            )
        );
        assert_eq!(e.kind(), Kind::Email);
        assert_eq!(e.tier(), proto::Tier::Confirmed);
        assert_eq!(e.valid_until.as_ref().unwrap().seconds, now + 30 * 86_400);
        assert!((added.first_seq..=added.last_seq).contains(&e.seq));
        assert_eq!(e.epoch, 1);
        assert!(e.created_at.is_some() && e.recorded_at.is_some());
    }
    let mut numbers: Vec<u64> = raised.iter().map(|e| e.number).collect();
    numbers.sort();
    assert_eq!(numbers, vec![1, 2]);

    // The expiry moves: updated, for that entry only.
    c.contribution
        .extend(proto::ExtendRequest {
            tokens: vec![proto::PrecomputedToken {
                kind: Kind::Email as i32,
                token: added.results[0].token.clone(),
                epoch: added.results[0].epoch,
            }],

            valid_until: Some(prost_types::Timestamp {
                seconds: now + 60 * 86_400,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let up = next(&mut sub, 1).await;
    assert_eq!(
        summary(&up[0]),
        (
            AlertAction::Updated,
            AlertCause::Extended,
            "CUST-0001",
            "bank-a",
            "CASE-A-1"
        )
    );
    assert_eq!(
        up[0].valid_until.as_ref().unwrap().seconds,
        now + 60 * 86_400
    );
    assert_eq!(up[0].number, 3);

    // Retracted: withdrawn; contributed again: raised again.
    c.contribution
        .retract(proto::RetractRequest {
            identifiers: vec![id(Kind::Email, &v[1])],
            reason: "cleared".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let w = next(&mut sub, 1).await;
    assert_eq!(
        summary(&w[0]),
        (
            AlertAction::Withdrawn,
            AlertCause::Retracted,
            "CUST-0002",
            "bank-a",
            "CASE-A-1"
        )
    );
    let first_alert = raised
        .iter()
        .find(|e| e.watch_reference == "CUST-0002")
        .unwrap()
        .alert;
    assert_eq!(w[0].alert, first_alert);
    c.contribution
        .contribute(contribute_req(email_items(&v[1..2]), "CASE-A-1"))
        .await
        .unwrap();
    let again = next(&mut sub, 1).await;
    assert_eq!(
        summary(&again[0]),
        (
            AlertAction::Raised,
            AlertCause::Contributed,
            "CUST-0002",
            "bank-a",
            "CASE-A-1"
        )
    );
    assert_eq!(again[0].number, 5);
    nothing_more(&mut sub).await;

    // The paged list says the same, numbered without gaps.
    let listed = list_all(&n).await;
    assert_eq!(
        listed.iter().map(|e| e.number).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    // Never a raw value in an event.
    for e in &listed {
        let text = format!("{e:?}");
        for value in &v {
            assert!(!text.contains(value.as_str()), "{text}");
        }
    }
    let s = n.status().await;
    assert_eq!(s.alerts_open, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_entry_that_already_matches_raises_once_and_its_removal_withdraws() {
    let mut n = TestNode::new("bank-a");
    n.start();
    let v = emails("known", 2);
    let mut c = n.clients().await;
    c.contribution
        .contribute(contribute_req(email_items(&v), "CASE-B"))
        .await
        .unwrap();
    let mut sub = subscribe(&n, 0).await.unwrap();
    assert_eq!(
        watch(&n, vec![witem("REF-77", Kind::Email, &v[0])]).await,
        vec![proto::WatchAddStatus::Added]
    );
    let e = next(&mut sub, 1).await;
    assert_eq!(
        summary(&e[0]),
        (
            AlertAction::Raised,
            AlertCause::Registered,
            "REF-77",
            "bank-a",
            "CASE-B"
        )
    );
    // The same row again changes nothing and raises nothing.
    assert_eq!(
        watch(&n, vec![witem("REF-77", Kind::Email, &v[0])]).await,
        vec![proto::WatchAddStatus::AlreadyPresent]
    );
    nothing_more(&mut sub).await;
    // A second reference for the same identifier is a second alert.
    watch(&n, vec![witem("REF-78", Kind::Email, &v[0])]).await;
    let e2 = next(&mut sub, 1).await;
    assert_eq!(e2[0].watch_reference, "REF-78");
    assert_ne!(e2[0].alert, e[0].alert);

    let removed = watchlist(&n)
        .await
        .remove(proto::WatchRemoveRequest {
            references: vec!["REF-77".into()],
            items: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed, 1);
    let w = next(&mut sub, 1).await;
    assert_eq!(
        summary(&w[0]),
        (
            AlertAction::Withdrawn,
            AlertCause::EntryRemoved,
            "REF-77",
            "bank-a",
            "CASE-B"
        )
    );
    assert_eq!(w[0].alert, e[0].alert);
    nothing_more(&mut sub).await;
    assert_eq!(n.status().await.alerts_open, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_on_the_nodes_clock_withdraws_and_a_restart_keeps_the_alerts() {
    let t0 = cix::time::system_now().unwrap();
    let mut n = TestNode::new("bank-a");
    n.use_test_clock(t0);
    n.start();
    let v = emails("expiring", 2);
    watch(
        &n,
        vec![
            witem("E-1", Kind::Email, &v[0]),
            witem("E-2", Kind::Email, &v[1]),
        ],
    )
    .await;
    let mut c = n.clients().await;
    let mut short = contribute_req(email_items(&v[..1]), "CASE-SHORT");
    short.valid_until = Some(prost_types::Timestamp {
        seconds: t0 + 3_600,
        nanos: 0,
    });
    c.contribution.contribute(short).await.unwrap();
    c.contribution
        .contribute(contribute_req(email_items(&v[1..]), "CASE-LONG"))
        .await
        .unwrap();
    let mut sub = subscribe(&n, 0).await.unwrap();
    let raised = next(&mut sub, 2).await;
    assert!(raised.iter().all(|e| e.action() == AlertAction::Raised));

    // Restarted: the open alerts are read back, nothing is raised twice.
    drop(sub);
    n.restart();
    let mut sub = subscribe(&n, 2).await.unwrap();
    nothing_more(&mut sub).await;
    assert_eq!(n.status().await.alerts_open, 2);

    n.set_time(t0 + 7_200);
    let w = next(&mut sub, 1).await;
    assert_eq!(
        summary(&w[0]),
        (
            AlertAction::Withdrawn,
            AlertCause::Expired,
            "E-1",
            "bank-a",
            "CASE-SHORT"
        )
    );
    assert_eq!(w[0].number, 3);
    nothing_more(&mut sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_the_apply_and_the_alert_loses_nothing() {
    let mut n = TestNode::new("bank-a");
    let hold = n.tmp.path().join("alerts-held");
    n.env.push((HOLD_ENV.into(), hold.clone()));
    n.start();
    let v = emails("crash", 3);
    watch(
        &n,
        v.iter()
            .enumerate()
            .map(|(i, x)| witem(&format!("K-{i}"), Kind::Email, x))
            .collect(),
    )
    .await;
    // The engine is held: the contribution is acknowledged (durable), its
    // alerts not yet written; then the node is killed.
    std::fs::write(&hold, b"held\n").unwrap();
    let mut c = n.clients().await;
    c.contribution
        .contribute(contribute_req(email_items(&v), "CASE-CRASH"))
        .await
        .unwrap();
    let held = n.status().await;
    assert_eq!(held.alerts_newest, 0);
    n.kill9();
    std::fs::remove_file(&hold).unwrap();
    n.start();
    let mut sub = subscribe(&n, 0).await.unwrap();
    let mut e = next(&mut sub, 3).await;
    e.sort_by(|a, b| a.watch_reference.cmp(&b.watch_reference));
    for (i, e) in e.iter().enumerate() {
        assert_eq!(
            summary(e),
            (
                AlertAction::Raised,
                AlertCause::Recovered,
                format!("K-{i}").as_str(),
                "bank-a",
                "CASE-CRASH"
            )
        );
    }
    nothing_more(&mut sub).await;

    // A subscriber that reconnects with its cursor gets what follows it.
    c = n.clients().await;
    c.contribution
        .retract(proto::RetractRequest {
            identifiers: vec![id(Kind::Email, &v[0])],
            reason: "cleared".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut again = subscribe(&n, 2).await.unwrap();
    let tail = next(&mut again, 2).await;
    assert_eq!(tail[0].number, 3);
    assert_eq!(tail[1].number, 4);
    assert_eq!(tail[1].action(), AlertAction::Withdrawn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_batch_raises_at_the_bank_and_nothing_of_the_watchlist_leaves_it() {
    let mut co = Coalition::new(&["liaison-a", "bank-b"]);
    let capture = co.nodes[1].tmp.path().join("capture");
    co.nodes[1].capture = Some(capture.clone());
    let capture_a = co.nodes[0].tmp.path().join("capture");
    co.nodes[0].capture = Some(capture_a.clone());
    co.start_all();
    let book: Vec<String> = (0..50)
        .map(|i| format!("book.holder.{i}@bank-b.example"))
        .collect();
    let refs: Vec<String> = (0..50).map(|i| format!("BANKB-CUSTOMER-{i:05}")).collect();
    watch(
        &co.nodes[1],
        book.iter()
            .zip(&refs)
            .map(|(v, r)| witem(r, Kind::Email, v))
            .collect(),
    )
    .await;
    let mut sub = subscribe(&co.nodes[1], 0).await.unwrap();
    let case: Vec<String> = book[..3]
        .iter()
        .cloned()
        .chain(emails("other", 5))
        .collect();
    co.contribute(0, email_items(&case), "LIAISON-CASE-9").await;
    let mut e = next(&mut sub, 3).await;
    e.sort_by(|a, b| a.watch_reference.cmp(&b.watch_reference));
    for (e, r) in e.iter().zip(&refs[..3]) {
        assert_eq!(
            summary(e),
            (
                AlertAction::Raised,
                AlertCause::Replicated,
                r.as_str(),
                "liaison-a",
                "LIAISON-CASE-9"
            )
        );
    }
    nothing_more(&mut sub).await;
    // The liaison's node raised nothing: it watches nothing.
    assert!(list_all(&co.nodes[0]).await.is_empty());

    let mut stopped = Vec::new();
    for n in &mut co.nodes {
        stopped.push(n.stop());
    }
    // Neither raw values nor references in any peer message; no raw value
    // on either node's disk; neither in any log line.
    for dir in [&capture, &capture_a] {
        for (path, bytes) in files_under(dir) {
            for needle in book.iter().chain(&refs) {
                assert!(
                    !contains(&bytes, needle.as_bytes()),
                    "{needle} in a captured peer message {}",
                    path.display()
                );
            }
        }
    }
    for n in &co.nodes {
        for (path, bytes) in files_under(&n.data_dir()) {
            for needle in &book {
                assert!(
                    !contains(&bytes, needle.as_bytes()),
                    "{needle} on disk in {}",
                    path.display()
                );
            }
        }
        let logs = n.logs();
        for needle in book.iter().chain(&refs) {
            assert!(!logs.contains(needle.as_str()), "{needle} in the logs");
        }
    }
    assert!(stopped.iter().all(|s| *s));
}

#[tokio::test]
async fn alerts_need_the_watchlist_capability_and_read_from_a_cursor() {
    let mut node = TestNode::new("bank-alerts-1");
    let screener = node.add_client("screener", &["screen"]);
    let case_system = node.add_client("cases", &["watchlist"]);
    node.start();

    // Without `watchlist`: refused, both calls.
    let mut s = node.identity_of(&screener).connect().await.unwrap();
    let e = s
        .alerts
        .list(proto::ListAlertsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("watchlist"), "{}", e.message());
    let e = s
        .alerts
        .subscribe(proto::SubscribeRequest { after: 0 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    // With it: an empty log reads as such.
    let mut c = node.identity_of(&case_system).connect().await.unwrap();
    let page = c
        .alerts
        .list(proto::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(page.events.is_empty());
    assert_eq!((page.oldest, page.newest), (1, 0));
    let e = c
        .alerts
        .list(proto::ListAlertsRequest {
            after: 0,
            limit: 1001,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("limit"), "{}", e.message());
    // A cursor beyond the newest event (a log restored from an older copy,
    // say) is refused rather than waited on.
    let e = c
        .alerts
        .subscribe(proto::SubscribeRequest { after: 5 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("beyond the newest"), "{}", e.message());
    // From the start: the stream opens and waits for events.
    c.alerts
        .subscribe(proto::SubscribeRequest { after: 0 })
        .await
        .unwrap();

    let st = node.status().await;
    assert_eq!((st.alerts_newest, st.alerts_oldest), (0, 1));
    assert_eq!(st.webhook_pending, 0);
    assert!(node.data_dir().join("alerts").is_dir());

    // `cix alerts list` with the case system's certificate: the same page.
    let out = std::process::Command::new(BIN)
        .args(["alerts", "list", "--format", "jsonl", "--dir"])
        .arg(&node.dir)
        .arg("--cert")
        .arg(&case_system.cert)
        .arg("--key")
        .arg(&case_system.key)
        .env_remove("CIX_DIR")
        .env_remove("CIX_NODE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "no events: {out:?}");
    // And with the screener's (no `watchlist`): refused, saying so.
    let out = std::process::Command::new(BIN)
        .args(["alerts", "list", "--dir"])
        .arg(&node.dir)
        .arg("--cert")
        .arg(&screener.cert)
        .arg("--key")
        .arg(&screener.key)
        .env_remove("CIX_DIR")
        .env_remove("CIX_NODE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PermissionDenied") && err.contains("watchlist"),
        "{err}"
    );
}
