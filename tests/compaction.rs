//! Compaction of a real node's store (`Admin.Compact`, as a retention purge
//! runs it) while the node goes on: held mid-copy by the test build's pause
//! (`CIX_TEST_COMPACTION_PAUSE_FILE`), the node still screens, serves a
//! peer's Pull and takes a contribution, and nothing is lost once the
//! compaction finishes.

mod support;

use std::time::{Duration, Instant};

use cix::proto;
use support::*;

/// Bounds every wait, so that a node that stalls fails the test instead of
/// hanging it.
const WAIT: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?} while the store compacts"))
}

/// Every batch of `origin` that node 0 streams to a Pull from scratch by node 1.
async fn pulled(c: &Coalition, origin: &str) -> usize {
    let mut f = c.federation(0, 1).await.unwrap();
    let mut s = f
        .pull(proto::PullRequest { have: vec![] })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(r) = s.message().await.unwrap() {
        if let Some(proto::pull_response::Item::Batch(b)) = r.item {
            let h = <proto::BatchHeader as prost::Message>::decode(b.header.as_slice()).unwrap();
            n += usize::from(h.origin == origin);
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screening_pull_and_contributions_go_on_while_the_store_compacts() {
    let mut c = Coalition::new(&["liaison", "bank"]);
    let pause = c.nodes[0].pause_compactions();
    c.start_all();
    let (before, during) = (
        "compaction-before@example.org",
        "compaction-during@example.org",
    );
    c.contribute(0, vec![item(proto::Kind::Email, before)], "CASE-1")
        .await;
    c.contribute(
        0,
        vec![item(proto::Kind::Email, "second@example.org")],
        "CASE-1",
    )
    .await;

    let mut admin = c.nodes[0].clients().await;
    let compaction =
        tokio::spawn(async move { admin.admin.compact(proto::CompactRequest {}).await });
    let deadline = Instant::now() + WAIT;
    while !pause.exists() {
        assert!(
            Instant::now() < deadline && !compaction.is_finished(),
            "the compaction never reached its pause\n{}",
            c.nodes[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut screening = c.nodes[0].clients().await;
    let hit = bounded(
        "Match",
        match_one(&mut screening, proto::Kind::Email, before),
    )
    .await;
    assert_eq!(status_of(&hit), proto::MatchStatus::Match);
    assert_eq!(bounded("a peer's Pull", pulled(&c, "liaison")).await, 2);
    bounded(
        "a contribution",
        c.contribute(0, vec![item(proto::Kind::Email, during)], "CASE-2"),
    )
    .await;
    assert!(
        pause.exists() && !compaction.is_finished(),
        "all of it answered while the compaction was under way"
    );

    std::fs::remove_file(&pause).unwrap();
    let done = bounded("the compaction", compaction)
        .await
        .unwrap()
        .expect("the compaction succeeds")
        .into_inner();
    assert!(done.store_bytes_after > 0, "{done:?}");
    assert_eq!(bounded("a peer's Pull", pulled(&c, "liaison")).await, 3);

    c.nodes[0].restart();
    let mut screening = c.nodes[0].clients().await;
    for v in [before, during] {
        let r = bounded("Match", match_one(&mut screening, proto::Kind::Email, v)).await;
        assert_eq!(
            status_of(&r),
            proto::MatchStatus::Match,
            "{v} after restart"
        );
    }
    assert_eq!(c.nodes[0].status().await.batches, 3);
}
