//! Durability: a contribution acknowledged before a kill -9 is there after
//! the restart.

mod support;

use cix::proto::{self, Kind};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_right_after_an_acknowledged_contribution_loses_nothing() {
    let mut node = TestNode::new("liaison-crash");
    node.start();
    let mut acknowledged = Vec::new();
    for round in 0..5 {
        let mut c = node.clients().await;
        let values: Vec<String> = (0..200)
            .map(|i| format!("crash-{round}-{i}.example"))
            .collect();
        let resp = c
            .contribution
            .contribute(contribute_req(
                values.iter().map(|v| item(Kind::Domain, v)).collect(),
                &format!("CASE-CRASH-{round}"),
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(resp
            .results
            .iter()
            .all(|r| r.status == proto::ItemStatus::Stored as i32));
        acknowledged.extend(values);
        // No shutdown, no flush on exit: SIGKILL the moment the answer arrived.
        node.kill9();
        node.start();
    }
    let mut c = node.clients().await;
    let r = c
        .screening
        .r#match(proto::MatchRequest {
            identifiers: acknowledged.iter().map(|v| id(Kind::Domain, v)).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    let hits = r
        .results
        .iter()
        .filter(|r| status_of(r) == proto::MatchStatus::Match)
        .count();
    assert_eq!(hits, acknowledged.len());
    let st = c
        .admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.origins[0].last_seq, 1000);
}
