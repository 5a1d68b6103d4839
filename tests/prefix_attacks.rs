//! Prefix queries against the claims made for them, by a real node as the
//! answerer and an asker holding a member's peer credentials speaking the
//! real protocol: the coalition's daily quota is shared among the nodes
//! that can answer and holds across a restart of the answering node, and
//! asking one prefix again the same day (before and after a restart) gets
//! the same answer, so comparing answers does not tell decoys from real
//! entries. The statistics over many answers (a classifier against decoys'
//! metadata) are in `federation::answer_prefix`'s unit tests.

mod support;

use cix::proto::{self, Kind, PeerCapability};
use support::*;

const LIAISON: usize = 0;
const BANK: usize = 1;
const REPLICA: usize = 3;
const ASKER: usize = 4;

fn prefix_of(token: &[u8]) -> u32 {
    u32::from_be_bytes(token[..4].try_into().unwrap()) >> 12
}

fn ask(prefixes: &[u32]) -> proto::QueryPrefixRequest {
    proto::QueryPrefixRequest {
        prefixes: prefixes.to_vec(),
        prefix_bits: 20,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_prefix_quota_is_the_coalitions_shared_among_answering_nodes_and_holds_across_a_restart(
) {
    // Four members hold indicators (every capability); the asker may only
    // query. A coalition-wide quota of 10 prefixes a day: a share of
    // ceil(10 / 4) = 3 at each of the four nodes the asker can ask.
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c", "replica-d", "asker-e"]);
    c.list.members[ASKER].capabilities = vec![PeerCapability::Query as i32];
    c.list.query_policy = Some(proto::QueryPolicy {
        prefix_bits: 20,
        bucket_size: 8,
        requests_per_second: 100,
        burst: 100,
        prefixes_per_day: 10,
    });
    c.rewrite_root();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Early in a UTC day, so that the day does not turn under the test.
    let morning = start - start.rem_euclid(86_400) + 3_600;
    c.nodes[LIAISON].use_test_clock(morning);
    c.nodes[LIAISON].start();
    c.nodes[BANK].start();
    let stored = c
        .contribute(
            LIAISON,
            vec![item(Kind::Email, "quota-hit@example.org")],
            "CASE-Q",
        )
        .await;
    let p = prefix_of(&stored.results[0].token);

    let mut asker = c.federation(LIAISON, ASKER).await.unwrap();
    let first = asker.query_prefix(ask(&[p])).await.unwrap().into_inner();
    // Asked again the same day: the same answer, decoys and all.
    let again = asker.query_prefix(ask(&[p])).await.unwrap().into_inner();
    assert_eq!(first, again);
    assert_eq!(first.buckets[0].entries.len(), 8);
    // Two taken of a share of 3: two more are over it, one is not.
    let e = asker.query_prefix(ask(&[p ^ 1, p ^ 2])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("per day"), "{}", e.message());
    asker.query_prefix(ask(&[p ^ 1])).await.unwrap();
    let e = asker.query_prefix(ask(&[p ^ 2])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");

    // Restarted, the node still knows today's usage: the asker's share is
    // spent until the UTC day turns.
    c.nodes[LIAISON].restart();
    let mut asker = c.federation(LIAISON, ASKER).await.unwrap();
    let e = asker.query_prefix(ask(&[p])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("per day"), "{}", e.message());
    let k = c.nodes[LIAISON].counters("asker-e").await;
    assert_eq!(
        reason_count(&k.requests_refused, "prefix_limit"),
        1,
        "{k:?}"
    );

    // Another member (one that answers too: three answer it, a share of
    // 4) gets the answer the asker got before the restart: the decoys
    // derive from a secret the node keeps.
    let mut replica = c.federation(LIAISON, REPLICA).await.unwrap();
    let after = replica.query_prefix(ask(&[p])).await.unwrap().into_inner();
    assert_eq!(first, after);
    replica
        .query_prefix(ask(&[p ^ 1, p ^ 2, p ^ 3]))
        .await
        .unwrap();
    let e = replica.query_prefix(ask(&[p])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");

    // The next UTC day the share is whole again.
    c.nodes[LIAISON].set_time(morning + 86_400);
    asker.query_prefix(ask(&[p, p ^ 1, p ^ 2])).await.unwrap();
    let e = asker.query_prefix(ask(&[p])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
}
