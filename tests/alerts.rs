//! The Alerts service on a real node over mTLS: only for clients with the
//! `watchlist` capability; List and Subscribe from a cursor, with the
//! cursor's rules (beyond the newest event: FAILED_PRECONDITION; a page
//! over 1000: INVALID_ARGUMENT naming `limit`); the alert log in Status.
//! Events themselves come from the alert engine (tests with watch entries).

mod support;

use cix::proto;
use support::*;
use tonic::Code;

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
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("watchlist"), "{}", e.message());
    let e = s
        .alerts
        .subscribe(proto::SubscribeRequest { after: 0 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

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
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("limit"), "{}", e.message());
    // A cursor beyond the newest event (a log restored from an older copy,
    // say) is refused rather than waited on.
    let e = c
        .alerts
        .subscribe(proto::SubscribeRequest { after: 5 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
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
