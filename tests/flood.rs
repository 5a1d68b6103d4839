//! Flood control end to end, on a real node over real mutual TLS with low
//! thresholds (5 hits, 3 watch entries a day): hits are marked from the one
//! that reaches the threshold on (Match and MatchTokens), new alerts pause,
//! a lift raises them and unmarks hits for the rest of the UTC day, the
//! next day counts afresh, counts and quarantines survive kill -9 after a
//! flush; the Quarantine service needs `admin` and names bad input; no raw
//! value reaches the data directory or the logs. Across a coalition, a
//! bank's quarantine reaches the indicator's origin once as `flood`
//! feedback, carrying no value, token or case reference.

mod support;

use std::time::Duration;

use cix::{
    client::Clients,
    outcome::DAY,
    proto::{self, Kind},
};
use support::*;

const THRESHOLDS: &str = "\n[flood]\nhits_per_day = 5\nwatch_entries_per_day = 3\n";

/// A node on the test clock at one hour into today (UTC), with low
/// thresholds and a client that may screen but not administer.
fn node(id: &str) -> (TestNode, ClientFiles, i64) {
    let mut n = TestNode::new(id);
    n.append_config(THRESHOLDS);
    let screener = n.add_client("screener", &["screen"]);
    let now = cix::time::system_now().unwrap();
    let t0 = now.div_euclid(DAY) * DAY + 3600;
    n.use_test_clock(t0);
    n.start();
    (n, screener, t0)
}

/// Whether a single Match of `value` hits, and whether the hit is marked.
async fn marked(c: &mut Clients, value: &str) -> bool {
    let r = match_one(c, Kind::Email, value).await;
    assert_eq!(status_of(&r), proto::MatchStatus::Match);
    r.hits[0].quarantined
}

/// The same through MatchTokens with the indicator's token.
async fn marked_by_token(c: &mut Clients, token: &[u8]) -> bool {
    let req = proto::MatchTokensRequest {
        tokens: token.to_vec(),
    };
    let mut s = c
        .screening
        .match_tokens(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let m = s.message().await.unwrap().unwrap();
    assert_eq!(status_of(&m.results[0]), proto::MatchStatus::Match);
    m.results[0].hits[0].quarantined
}

/// `cix quarantine ARGS... --dir` the node's directory: its stdout, or
/// its stderr as the error.
fn cli(n: &TestNode, args: &[&str]) -> Result<String, String> {
    let o = std::process::Command::new(BIN)
        .arg("quarantine")
        .args(args)
        .arg("--dir")
        .arg(&n.dir)
        .env_remove("CIX_NODE")
        .env_remove("CIX_DIR")
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    if o.status.success() {
        Ok(text(o.stdout))
    } else {
        Err(text(o.stderr))
    }
}

async fn contribute(c: &mut Clients, value: &str, case: &str) -> proto::ContributeResponse {
    c.contribution
        .contribute(contribute_req(vec![item(Kind::Email, value)], case))
        .await
        .unwrap()
        .into_inner()
}

/// Moves the clock to `unix` and waits until a flush of the counts (every
/// 5 s) has run at that time, so everything counted before is on disk.
async fn flushed_after(n: &TestNode, unix: i64) {
    n.set_time(unix);
    for _ in 0..300 {
        if n.status().await.flood_counts_flushed_at == unix {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no flush of the flood counts in 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_marked_from_the_threshold_lifted_for_the_day_counted_afresh_and_kept_across_kill9(
) {
    let (mut n, screener, t0) = node("bank-f");
    let mut c = n.clients().await;
    let flooding = "pooled.account@flood.example";
    let quiet = "one.customer@flood.example";
    let added = contribute(&mut c, flooding, "CASE-FLOOD").await;
    contribute(&mut c, quiet, "CASE-QUIET").await;
    let token = added.results[0].token.clone();

    for _ in 0..4 {
        assert!(!marked(&mut c, flooding).await, "below the threshold");
    }
    assert!(marked_by_token(&mut c, &token).await, "the hit reaching it");
    assert!(marked(&mut c, flooding).await);
    assert!(marked_by_token(&mut c, &token).await);
    for _ in 0..3 {
        assert!(!marked(&mut c, quiet).await, "another indicator is not");
    }

    let list = c.quarantines().await.unwrap();
    assert_eq!(list.len(), 1);
    let q = &list[0];
    assert_eq!(
        (
            q.origin.as_str(),
            q.seq,
            q.case_ref.as_str(),
            q.reason.as_str()
        ),
        ("bank-f", added.first_seq, "CASE-FLOOD", "hits_per_day")
    );
    assert_eq!((q.hits, q.kind), (5, Kind::Email as i32));
    assert_eq!(q.since.as_ref().unwrap().seconds, t0);
    let s = n.status().await;
    assert_eq!((s.indicators_quarantined, s.quarantines_total), (1, 1));

    // Admin only; bad input named; an indicator not quarantined is NOT_FOUND.
    let mut s_only = n.identity_of(&screener).connect().await.unwrap();
    let e = s_only.quarantines().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = s_only
        .lift_quarantine("bank-f", added.first_seq)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = c.lift_quarantine("", 1).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("origin:"), "{e:?}");
    let e = c.lift_quarantine("Bank F", 1).await.unwrap_err();
    assert!(e.message().starts_with("origin:"), "{e:?}");
    let e = c.lift_quarantine("bank-f", 0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("seq:"), "{e:?}");
    let e = c
        .lift_quarantine("bank-f", added.first_seq + 1)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(c.quarantines().await.unwrap().len(), 1, "nothing changed");

    // The command line: the list, and a lift, unmarked for the rest of
    // the day however many hits.
    let seq = added.first_seq;
    let listed = cli(&n, &["list"]).unwrap();
    assert!(
        listed.starts_with(&format!("bank-f:{seq} email case=CASE-FLOOD since=")),
        "{listed}"
    );
    assert!(
        listed.contains("hits=5 watch_entries=0 reason=hits_per_day"),
        "{listed}"
    );
    let e = cli(&n, &["lift", "bank-f"]).unwrap_err();
    assert!(e.contains("must be ORIGIN:SEQ"), "{e}");
    let lifted = cli(&n, &["lift", &format!("bank-f:{seq}")]).unwrap();
    assert!(lifted.contains(&format!("lifted bank-f:{seq}")), "{lifted}");
    assert!(c.quarantines().await.unwrap().is_empty());
    for _ in 0..6 {
        assert!(!marked(&mut c, flooding).await);
    }
    assert_eq!(n.status().await.quarantines_lifted, 1);

    // The next UTC day counts afresh.
    n.set_time(t0 + DAY);
    for _ in 0..4 {
        assert!(!marked(&mut c, flooding).await);
    }
    assert!(marked(&mut c, flooding).await);
    assert!(!marked(&mut c, quiet).await);

    // Kill -9 after a flush: today's counts and the quarantine are kept.
    flushed_after(&n, t0 + DAY + 60).await;
    n.kill9();
    n.start();
    let mut c = n.clients().await;
    assert_eq!(c.quarantines().await.unwrap().len(), 1);
    assert!(marked(&mut c, flooding).await);
    for _ in 0..3 {
        assert!(!marked(&mut c, quiet).await, "hits 2 to 4 of the day");
    }
    assert!(
        marked(&mut c, quiet).await,
        "hit 5 of the day, one before the kill"
    );

    // No raw value on disk or in the logs.
    n.stop();
    for (path, bytes) in files_under(&n.data_dir()) {
        for v in [flooding, quiet] {
            assert!(!contains(&bytes, v.as_bytes()), "{v} in {path:?}");
        }
    }
    let logs = n.logs();
    assert!(logs.contains("indicator quarantined"));
    for v in [flooding, quiet] {
        assert!(!logs.contains(v), "{v} in the logs");
    }
}

fn witem(reference: &str, value: &str) -> proto::WatchItem {
    proto::WatchItem {
        reference: reference.into(),
        item: Some(proto::watch_item::Item::Identifier(id(Kind::Email, value))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_past_the_watch_entry_threshold_pause_until_a_lift_raises_them() {
    let (n, _, _) = node("bank-w");
    let merchant = "shared.merchant@flood.example";
    let refs: Vec<String> = (1..=5).map(|i| format!("CUST-{i:04}")).collect();
    let r = watchlist(&n)
        .await
        .add(proto::WatchAddRequest {
            items: refs.iter().map(|r| witem(r, merchant)).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r
        .results
        .iter()
        .all(|r| r.status() == proto::WatchAddStatus::Added));
    let mut sub = subscribe(&n, 0).await.unwrap();
    let mut c = n.clients().await;
    let added = contribute(&mut c, merchant, "CASE-MERCHANT").await;

    // Two distinct watch entries raise; the third reaches the threshold.
    let raised = next(&mut sub, 2).await;
    assert!(raised
        .iter()
        .all(|e| e.action() == proto::AlertAction::Raised));
    nothing_more(&mut sub).await;
    let list = c.quarantines().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].reason, "watch_entries_per_day");
    assert_eq!((list[0].seq, list[0].watch_entries), (added.first_seq, 3));
    let s = n.status().await;
    assert!(s.flood_alerts_paused >= 3, "{}", s.flood_alerts_paused);
    assert!(marked(&mut c, merchant).await, "its hits are marked");

    // The lift raises the three paused alerts and unmarks hits.
    c.lift_quarantine("bank-w", added.first_seq).await.unwrap();
    let later = next(&mut sub, 3).await;
    assert!(later
        .iter()
        .all(|e| e.action() == proto::AlertAction::Raised && e.case_ref == "CASE-MERCHANT"));
    let mut all: Vec<String> = raised
        .iter()
        .chain(&later)
        .map(|e| e.watch_reference.clone())
        .collect();
    all.sort();
    assert_eq!(all, refs);
    nothing_more(&mut sub).await;
    assert!(!marked(&mut c, merchant).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_quarantine_reaches_the_origin_as_flood_feedback() {
    const LIAISON: usize = 0;
    const BANK: usize = 1;
    const CASE: &str = "CASE-FLOOD-FB";
    let pooled = "pooled.account@flood-feedback.example";
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    let capture = c.tmp.path().join("capture");
    for n in &mut c.nodes {
        n.capture = Some(capture.clone());
        feedback_on(n);
    }
    c.nodes[BANK].append_config(THRESHOLDS);
    c.start_all();
    let added = c
        .contribute(LIAISON, vec![item(Kind::Email, pooled)], CASE)
        .await;
    assert_eq!(added.first_seq, 1);
    let token = added.results[0].token.clone();
    assert_eq!(token.len(), 32);
    c.converge().await;

    // The bank's hits on the liaison's indicator: the fifth reaches the
    // threshold and quarantines it on the bank.
    let mut bank = c.nodes[BANK].clients().await;
    for _ in 0..4 {
        assert!(!marked(&mut bank, pooled).await, "below the threshold");
    }
    assert!(marked(&mut bank, pooled).await, "the hit reaching it");
    let q = bank.quarantines().await.unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!((q[0].origin.as_str(), q[0].seq), ("liaison-a", 1));
    let before = c.nodes[LIAISON].status().await.feedback_received;
    assert_eq!(before, 0);

    // The next flush hands one `flood` item to the queue; it reaches the
    // origin, which records it.
    c.nodes[BANK]
        .wait_status("the flood feedback delivered", |s| {
            s.flood_feedback_sent == 1 && s.feedback_delivered == 1 && s.feedback_pending == 0
        })
        .await;
    let s = c.nodes[LIAISON]
        .wait_status("the flood feedback received", |s| {
            s.feedback_received > before
        })
        .await;
    assert_eq!((s.feedback_received, s.feedback_received_refused), (1, 0));

    // Once per quarantine: more hits and a later flush send nothing more.
    let flushed = c.nodes[BANK].status().await.flood_counts_flushed_at;
    for _ in 0..3 {
        assert!(marked(&mut bank, pooled).await);
    }
    let s = c.nodes[BANK]
        .wait_status("a flush after the later hits", |s| {
            s.flood_counts_flushed_at > flushed
        })
        .await;
    assert_eq!(
        (s.flood_feedback_sent, s.feedback_queued, s.feedback_pending),
        (1, 1, 0)
    );
    assert_eq!(c.nodes[LIAISON].status().await.feedback_received, 1);

    // The origin's own view: one flood on that indicator of that case.
    let listed = c.nodes[LIAISON].outcomes().await;
    assert_eq!(listed.indicators.len(), 1, "{listed:?}");
    let i = &listed.indicators[0];
    assert_eq!((i.seq, i.case_ref.as_str()), (1, CASE));
    let counts = i.counts.unwrap();
    assert_eq!(
        (
            counts.floods,
            counts.confirmations,
            counts.false_positives,
            counts.flagged
        ),
        (1, 0, 0, 0),
        "{counts:?}"
    );
    assert_eq!(listed.cases.len(), 1);
    assert_eq!(listed.cases[0].counts.unwrap().floods, 1);

    // On the wire: one item, outcome FLOOD, about seq 1; no raw value, no
    // token, no case reference in any Feedback frame either way.
    let frames = feedback_frames(&capture);
    let requests = feedback_requests(&frames);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].items.len(), 1, "{requests:?}");
    let sent = &requests[0].items[0];
    assert_eq!(sent.outcome(), proto::FeedbackOutcome::Flood);
    assert_eq!((sent.seq, sent.anonymous_senders), (1, 0));
    assert!(sent.actions.is_empty(), "{sent:?}");
    assert!(
        frames.iter().any(|(h, _)| h.starts_with("response")),
        "no Feedback response captured"
    );
    for (header, data) in &frames {
        for needle in [pooled.as_bytes(), token.as_slice(), CASE.as_bytes()] {
            assert!(
                !contains(data, needle),
                "{header} carries {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}
