//! Replication between real nodes over real mutual TLS: full mesh and chain
//! topologies, retractions, catch-up after a stop, convergence after
//! isolation, and 100,000 indicators reaching two peers.

mod support;

use std::time::Duration;

use cix::proto::{self, Kind, MatchStatus};
use support::*;

fn domains(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}.example")).collect()
}

fn items(values: &[String]) -> Vec<proto::ContributionItem> {
    values.iter().map(|v| item(Kind::Domain, v)).collect()
}

/// Asserts that node `i` refused no batch from any peer.
async fn assert_nothing_refused(c: &Coalition, i: usize) {
    for k in c.nodes[i].status().await.peer_counters {
        assert!(
            k.batches_rejected.is_empty(),
            "{} refused batches from {}: {:?}",
            c.ids[i],
            k.member,
            k.batches_rejected
        );
    }
}

async fn retract(c: &Coalition, i: usize, value: &str) {
    let mut cl = c.nodes[i].clients().await;
    let r = cl
        .contribution
        .retract(proto::RetractRequest {
            identifiers: vec![id(Kind::Domain, value)],
            reason: "case changed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.retracted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_a_contribution_and_its_retraction_reach_every_node() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c"]);
    c.start_all();
    let v = domains("mesh", 3);
    let r = c.contribute(0, items(&v), "CASE-MESH").await;
    assert_eq!((r.first_seq, r.last_seq), (1, 3));
    for i in 1..3 {
        let took = c
            .wait_match(i, Kind::Domain, &v[1], MatchStatus::Match)
            .await;
        eprintln!("contribution reached {} in {took:?}", c.ids[i]);
    }
    let hit = match_one(&mut c.nodes[2].clients().await, Kind::Domain, &v[0]).await;
    assert_eq!(hit.hits[0].origin, "liaison-a");
    assert_eq!(hit.hits[0].case_ref, "CASE-MESH");
    retract(&c, 0, &v[1]).await;
    for i in 1..3 {
        c.wait_match(i, Kind::Domain, &v[1], MatchStatus::NoMatch)
            .await;
    }
    // The others still match.
    c.wait_match(2, Kind::Domain, &v[2], MatchStatus::Match)
        .await;
    let heads = c.converge().await;
    assert_eq!(heads, vec![("liaison-a".to_string(), 4)]);
    // Status shows each peer and no lag once converged.
    let s = c.nodes[1].status().await;
    assert_eq!(s.peers.len(), 2);
    assert!(s.own_log_ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_relays_batches_a_and_c_never_talk() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c"]);
    c.pull_only_from(0, &["bank-b"]);
    c.pull_only_from(1, &["liaison-a", "bank-c"]);
    c.pull_only_from(2, &["bank-b"]);
    c.start_all();
    let v = domains("chain", 2);
    c.contribute(0, items(&v), "CASE-CHAIN").await;
    c.wait_match(2, Kind::Domain, &v[0], MatchStatus::Match)
        .await;
    retract(&c, 0, &v[0]).await;
    c.wait_match(2, Kind::Domain, &v[0], MatchStatus::NoMatch)
        .await;
    c.wait_match(2, Kind::Domain, &v[1], MatchStatus::Match)
        .await;
    // C's contributions travel the other way.
    let w = domains("from-c", 1);
    c.contribute(2, items(&w), "CASE-C").await;
    c.wait_match(0, Kind::Domain, &w[0], MatchStatus::Match)
        .await;
    c.converge().await;
    // A and C never connected to each other: neither lists the other as a peer.
    let a = c.nodes[0].status().await;
    assert!(
        a.peers.iter().all(|p| p.member != "bank-c"),
        "{:?}",
        a.peers
    );
    let cc = c.nodes[2].status().await;
    assert!(
        cc.peers.iter().all(|p| p.member != "liaison-a"),
        "{:?}",
        cc.peers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_catches_up_and_an_isolated_one_converges() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c"]);
    c.start_all();
    // Stopped while contributions go on.
    assert!(c.nodes[2].stop());
    let v = domains("while-down", 5);
    c.contribute(0, items(&v[..3]), "CASE-DOWN-1").await;
    c.contribute(0, items(&v[3..]), "CASE-DOWN-2").await;
    c.nodes[2].start();
    for x in &v {
        c.wait_match(2, Kind::Domain, x, MatchStatus::Match).await;
    }

    // Isolated: C's peer listener moves to another port and C pulls from no
    // one, while both sides take contributions.
    assert!(c.nodes[2].stop());
    let config = std::fs::read_to_string(&c.nodes[2].config).unwrap();
    let endpoint = c.list.members[2].endpoint.clone();
    let isolated = config
        .replace(
            &format!("listen = \"{endpoint}\""),
            &format!("listen = \"127.0.0.1:{}\"", free_port()),
        )
        .replace(
            "pull_seconds = 1\n",
            "pull_seconds = 1\npeers = [\"nobody\"]\n",
        );
    assert_ne!(isolated, config);
    std::fs::write(&c.nodes[2].config, &isolated).unwrap();
    c.nodes[2].start();
    let a_side = domains("a-side", 4);
    let c_side = domains("c-side", 3);
    c.contribute(0, items(&a_side), "CASE-A-SIDE").await;
    c.contribute(2, items(&c_side), "CASE-C-SIDE").await;
    c.wait_match(1, Kind::Domain, &a_side[0], MatchStatus::Match)
        .await;
    // A while later, shown by the others' attempts to reach bank-c's old
    // endpoint failing again and again: bank-c pulled nothing from anyone.
    for i in 0..2 {
        let k = c.nodes[i].counters("bank-c").await;
        let failed = reason_count(&k.sessions_failed, "connect");
        c.nodes[i]
            .wait_counters("bank-c", "failed to reach bank-c twice more", |k| {
                reason_count(&k.sessions_failed, "connect") >= failed + 2
            })
            .await;
    }
    for k in c.nodes[2].status().await.peer_counters {
        assert_eq!(k.pulls, 0, "the isolated node pulled from {}", k.member);
        assert!(
            k.batches.is_empty(),
            "the isolated node received data: {k:?}"
        );
    }
    assert_eq!(
        status_of(&match_one(&mut c.nodes[2].clients().await, Kind::Domain, &a_side[0]).await),
        MatchStatus::NoMatch,
        "the isolated node received data"
    );
    // Rejoin.
    assert!(c.nodes[2].stop());
    std::fs::write(&c.nodes[2].config, &config).unwrap();
    c.nodes[2].start();
    let heads = c.converge().await;
    assert_eq!(
        heads,
        vec![("bank-c".to_string(), 3), ("liaison-a".to_string(), 9)]
    );
    // Identical indicator sets: every value matches everywhere, with the same counts.
    let all: Vec<String> = v.iter().chain(&a_side).chain(&c_side).cloned().collect();
    let mut counts = Vec::new();
    for i in 0..3 {
        for x in &all {
            c.wait_match(i, Kind::Domain, x, MatchStatus::Match).await;
        }
        let s = c.nodes[i].status().await;
        counts.push((
            s.indicators,
            s.origins
                .iter()
                .map(|o| (o.origin.clone(), o.indicators))
                .collect::<Vec<_>>(),
        ));
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
    assert_eq!(counts[0].0, all.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_indicators_replicate_to_two_peers() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c"]);
    c.start_all();
    let mut synth = cix::testbed::synth::Synth::new(4242);
    let mut tokens: Vec<u8> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stored = 0u64;
    for round in 0..10 {
        let batch: Vec<proto::ContributionItem> = (0..10_000)
            .map(|n| {
                let (k, v) = synth.any(round * 10_000 + n);
                item(proto::Kind::try_from(k.code() as i32).unwrap(), &v)
            })
            .collect();
        let r = c.contribute(0, batch, &format!("CASE-BULK-{round}")).await;
        for res in &r.results {
            if res.status == proto::ItemStatus::Stored as i32 && seen.insert(res.token.clone()) {
                tokens.extend_from_slice(&res.token);
                stored += 1;
            }
        }
    }
    assert!(stored > 99_000, "{stored}");
    let heads = c.converge().await;
    assert_eq!(heads, vec![("liaison-a".to_string(), stored)]);
    // Each node's index equals the union of the logs: every token matches,
    // and the counts agree.
    for i in 0..3 {
        let s = c.nodes[i].status().await;
        assert_eq!(s.indicators, stored, "{}", c.ids[i]);
        let mut cl = c.nodes[i].clients().await;
        let reqs: Vec<_> = tokens
            .chunks(32 * 10_000)
            .map(|ch| proto::MatchTokensRequest {
                tokens: ch.to_vec(),
            })
            .collect();
        let mut stream = cl
            .screening
            .match_tokens(futures::stream::iter(reqs))
            .await
            .unwrap()
            .into_inner();
        let mut matched = 0u64;
        while let Some(m) = stream.message().await.unwrap() {
            matched += m
                .results
                .iter()
                .filter(|r| status_of(r) == MatchStatus::Match)
                .count() as u64;
        }
        assert_eq!(matched, stored, "{}", c.ids[i]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_tokens_leave_the_disk_and_a_new_node_still_syncs_everything() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c"]);
    for n in &c.nodes {
        n.append_config("\n[store]\nretention = \"1s\"\npurge_interval = \"1s\"\n");
    }
    c.nodes[0].start();
    c.nodes[1].start();
    // Short-lived indicators next to a lasting one.
    let short = domains("short-lived", 3);
    let mut req = contribute_req(items(&short), "CASE-SHORT");
    req.valid_until = Some(prost_types::Timestamp {
        seconds: cix::time::Clock::system().now() + 2,
        nanos: 0,
    });
    let mut a = c.nodes[0].clients().await;
    let r = loop {
        match a.contribution.contribute(req.clone()).await {
            Ok(r) => break r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => panic!("{s:?}"),
        }
    };
    let tokens: Vec<Vec<u8>> = r.results.iter().map(|x| x.token.clone()).collect();
    let lasting = domains("lasting", 1);
    c.contribute(0, items(&lasting), "CASE-LASTING").await;
    c.wait_match(1, Kind::Domain, &short[0], MatchStatus::Match)
        .await;
    // Expired (2 s) and past retention (1 s): purged from both nodes' disks.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let on_disk = [0, 1].iter().any(|&i| {
            files_under(&c.nodes[i].data_dir())
                .iter()
                .any(|(_, bytes)| tokens.iter().any(|t| contains(bytes, t)))
        });
        if !on_disk {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "purged tokens still on disk"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        c.nodes[0].logs().contains("purged"),
        "the purge logged nothing"
    );
    c.wait_match(1, Kind::Domain, &lasting[0], MatchStatus::Match)
        .await;
    // A new node syncs the whole history, purged batches included: every
    // batch still verifies against its origin's signature.
    c.nodes[2].start();
    let heads = c.converge().await;
    assert_eq!(heads, vec![("liaison-a".to_string(), 4)]);
    c.wait_match(2, Kind::Domain, &lasting[0], MatchStatus::Match)
        .await;
    assert_eq!(
        status_of(&match_one(&mut c.nodes[2].clients().await, Kind::Domain, &short[0]).await),
        MatchStatus::NoMatch
    );
    assert_nothing_refused(&c, 2).await;
    let applied: u64 = c.nodes[2]
        .status()
        .await
        .peer_counters
        .iter()
        .map(|k| reason_count(&k.batches, "applied"))
        .sum();
    assert!(applied >= 1, "the new node applied nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contributor_restored_after_data_loss_never_reuses_a_sequence_number() {
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    c.start_all();
    let v = domains("before-loss", 3);
    let r = c.contribute(0, items(&v), "CASE-BEFORE").await;
    assert_eq!(r.last_seq, 3);
    c.wait_match(1, Kind::Domain, &v[2], MatchStatus::Match)
        .await;
    // The liaison's disk is lost.
    assert!(c.nodes[0].stop());
    std::fs::remove_dir_all(c.nodes[0].data_dir().join("store")).unwrap();
    c.nodes[0].start();
    // Its next contribution continues the log the coalition holds.
    let w = domains("after-loss", 2);
    let r = c.contribute(0, items(&w), "CASE-AFTER").await;
    assert_eq!((r.first_seq, r.last_seq), (4, 5));
    c.wait_match(1, Kind::Domain, &w[1], MatchStatus::Match)
        .await;
    c.wait_match(0, Kind::Domain, &v[0], MatchStatus::Match)
        .await;
    let heads = c.converge().await;
    assert_eq!(heads, vec![("liaison-a".to_string(), 5)]);
    assert_nothing_refused(&c, 1).await;
}
