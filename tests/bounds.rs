//! Size bounds between real nodes: an operation with more entries than one
//! batch holds is written as several batches that replicate (at a lowered
//! `limits.max_batch_bytes`, and at the 2 MiB default with a case of 80,000
//! indicators, one batch of which no peer decoded before), and remote
//! matching whose prefixes would make an answer larger than the asker
//! decodes is sent in requests that fit, the quota counting what was
//! answered.

mod support;

use std::time::{Duration, Instant};

use cix::proto::{self, Kind, MatchStatus};
use support::*;

fn domains(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}.example")).collect()
}

fn items(values: &[String]) -> Vec<proto::ContributionItem> {
    values.iter().map(|v| item(Kind::Domain, v)).collect()
}

async fn retract_case(c: &Coalition, i: usize, case_ref: &str) -> u64 {
    let mut cl = c.nodes[i].clients().await;
    cl.contribution
        .retract(proto::RetractRequest {
            case_ref: case_ref.into(),
            reason: "case closed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .retracted
}

/// Waits (bounded) until node `i` holds `n` active indicators.
async fn wait_indicators(c: &Coalition, i: usize, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = c.nodes[i].status().await;
        if s.indicators == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never held {n} indicators: {} (peers: {:?})",
            c.ids[i],
            s.indicators,
            s.peer_counters
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn assert_nothing_refused(c: &Coalition, i: usize) {
    for k in c.nodes[i].status().await.peer_counters {
        assert!(k.batches_rejected.is_empty(), "{k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_larger_than_one_batch_is_written_in_batches_that_replicate_and_retract() {
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    // About 1,000 entries per batch.
    c.nodes[0].append_config("\n[limits]\nmax_batch_bytes = 65536\n");
    c.start_all();
    let v = domains("split", 3_000);
    let r = c.contribute(0, items(&v), "CASE-SPLIT").await;
    assert_eq!((r.first_seq, r.last_seq), (1, 3_000));
    assert!(c.nodes[0].status().await.batches >= 3);
    wait_indicators(&c, 1, 3_000).await;

    assert_eq!(retract_case(&c, 0, "CASE-SPLIT").await, 3_000);
    assert!(c.nodes[0].status().await.batches >= 6);
    wait_indicators(&c, 1, 0).await;
    for value in [&v[0], &v[1_500], &v[2_999]] {
        c.wait_match(1, Kind::Domain, value, MatchStatus::NoMatch)
            .await;
    }
    // A retry finds nothing left to retract.
    assert_eq!(retract_case(&c, 0, "CASE-SPLIT").await, 0);
    assert_nothing_refused(&c, 1).await;
    assert_eq!(c.converge().await, vec![("liaison-a".to_string(), 6_000)]);

    c.nodes[1].restart();
    c.wait_match(1, Kind::Domain, &v[0], MatchStatus::NoMatch)
        .await;
    assert_eq!(c.nodes[1].status().await.indicators, 0);
    assert_eq!(c.converge().await, vec![("liaison-a".to_string(), 6_000)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retracting_a_case_of_eighty_thousand_indicators_reaches_a_peer_at_the_default_bound() {
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    c.start_all();
    let mut stored = 0;
    for round in 0..8 {
        let v = domains(&format!("huge-{round}"), 10_000);
        stored += c.contribute(0, items(&v), "CASE-HUGE").await.results.len() as u64;
    }
    assert_eq!(stored, 80_000);
    wait_indicators(&c, 1, 80_000).await;
    // One batch of these would be some 4.6 MB: over 2 MiB, and over the
    // 4 MiB a peer decoded by default.
    assert_eq!(retract_case(&c, 0, "CASE-HUGE").await, 80_000);
    wait_indicators(&c, 1, 0).await;
    c.wait_match(1, Kind::Domain, "huge-7-9999.example", MatchStatus::NoMatch)
        .await;
    assert_nothing_refused(&c, 1).await;

    c.nodes[1].restart();
    c.wait_match(1, Kind::Domain, "huge-0-0.example", MatchStatus::NoMatch)
        .await;
    assert_eq!(c.converge().await, vec![("liaison-a".to_string(), 160_000)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_matching_of_many_prefixes_fits_every_answer_and_counts_what_was_answered() {
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    c.start_all();
    let hit = "remote-hit.example";
    c.contribute(1, vec![item(Kind::Domain, hit)], "CASE-REMOTE")
        .await;
    // 3,000 identifiers: at the default policy (buckets of 64), 1,024
    // prefixes in one answer made some 6 MB, over what the asker decoded.
    let mut v = domains("remote", 2_999);
    v.push(hit.to_string());
    let mut cl = c.nodes[0].clients().await;
    let r = cl
        .screening
        .match_remote(proto::MatchRemoteRequest {
            peer: "bank-b".into(),
            identifiers: v.iter().map(|d| id(Kind::Domain, d)).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results.len(), 3_000);
    let matched: Vec<usize> = (0..r.results.len())
        .filter(|&i| status_of(&r.results[i]) == MatchStatus::Match)
        .collect();
    assert_eq!(matched, [2_999]);
    // The answerer counted every prefix it answered, in requests of at
    // most 170 (one per identifier but for a few shared prefixes).
    let k = c.nodes[1].counters("liaison-a").await;
    assert!((2_950..=3_000).contains(&k.prefixes_answered), "{k:?}");
    assert_eq!(
        k.queries_answered,
        k.prefixes_answered.div_ceil(170),
        "{k:?}"
    );
    assert!(k.requests_refused.is_empty(), "{k:?}");

    // The answering node restarts and answers again (once the asker has
    // reconnected).
    c.nodes[1].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let req = proto::MatchRemoteRequest {
            peer: "bank-b".into(),
            identifiers: vec![id(Kind::Domain, hit)],
        };
        match cl.screening.match_remote(req).await {
            Ok(r) => break r.into_inner(),
            Err(s) if Instant::now() < deadline => {
                eprintln!("not yet: {s:?}");
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(s) => panic!("bank-b never answered again: {s:?}"),
        }
    };
    assert_eq!(status_of(&r.results[0]), MatchStatus::Match);
}
