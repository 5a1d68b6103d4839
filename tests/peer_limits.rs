//! What a peer may cost a node, on real nodes over real mutual TLS: trust
//! lists over their bounds refused before any signature is checked, a
//! member's publishes held to its rate (by the node's settable clock), the
//! operators' list applied while a member floods the node with bogus ones,
//! and the peer listener's limits on connections and handshakes.
//!
//! Every refusal is asserted by its typed reason, as the node counts it in
//! Status; after each attack the node is restarted and serves.

mod support;

use std::time::Duration;

use cix::{counters::UNLISTED, keys::signing::SigningKeyFile, proto, trust::list};
use support::*;
use tokio::{io::AsyncReadExt, net::TcpStream};
use tonic::Code;

/// Appends `[peer_listener.limits]` with `keys` to the node's config.
fn peer_limits(node: &TestNode, keys: &str) {
    node.append_config(&format!("\n[peer_listener.limits]\n{keys}\n"));
}

/// `body` signed by `n` keys no operator holds.
fn signed_by_strangers(body: &proto::TrustList, n: usize) -> proto::SignedTrustList {
    let mut s = proto::SignedTrustList {
        body: prost::Message::encode_to_vec(body),
        signatures: vec![],
    };
    for _ in 0..n {
        list::sign(&mut s, &SigningKeyFile::generate());
    }
    s
}

async fn version_held(c: &Coalition, node: usize, from: usize) -> u64 {
    c.trust_list_held(node, from).await.version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_flooding_bogus_lists_is_refused_by_type_while_the_list_suspending_it_applies() {
    let mut c = Coalition::new(&["bank-a", "bank-b", "liaison-c"]);
    c.nodes[0].start();
    let mut fed = c.federation(0, 1).await.unwrap();
    let mut next = c.list.clone();
    next.version += 1;

    // Over-signed: the three operators and four strangers, seven signatures
    // where the list in force and the offered one name three keys each.
    let mut over_signed = c.sign(&next, &[0, 1, 2]);
    for _ in 0..4 {
        list::sign(&mut over_signed, &SigningKeyFile::generate());
    }
    let e = fed.publish_trust_list(over_signed).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().contains("signatures: at most 6"),
        "{}",
        e.message()
    );
    // Oversized: a member name past the 1 MiB bound of a list.
    let mut big = next.clone();
    big.members[1].name = "x".repeat(list::MAX_LIST_BYTES);
    let oversized = signed_by_strangers(&big, 2);
    let e = fed.publish_trust_list(oversized.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message()
            .contains("signed list: must be at most 1048576 bytes"),
        "{}",
        e.message()
    );
    // Bogus: a newer list signed by strangers, within its bounds.
    let bogus = signed_by_strangers(&next, 3);
    let e = fed.publish_trust_list(bogus.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{}", e.message());

    // The flood: bogus and oversized lists on many streams at once, each
    // stream going on until the node cuts the member off.
    let refusals = [
        Code::InvalidArgument,
        Code::PermissionDenied,
        Code::ResourceExhausted,
    ];
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (mut fed, bogus, oversized) = (fed.clone(), bogus.clone(), oversized.clone());
            tokio::spawn(async move {
                for i in 0..20_000 {
                    let list = if i % 4 == 0 { &oversized } else { &bogus };
                    match fed.publish_trust_list(list.clone()).await {
                        Ok(_) => panic!("a bogus list was accepted"),
                        Err(e) if refusals.contains(&e.code()) => continue,
                        Err(e) => return e.code(),
                    }
                }
                panic!("the flooding member was never cut off");
            })
        })
        .collect();
    // While it floods, refused on every count, the operators publish the
    // list that suspends it.
    c.nodes[0]
        .wait_counters("bank-b", "refused a flood by rate and bounds", |n| {
            let refused = |r| reason_count(&n.requests_refused, r);
            refused("trust_list_rate") >= 10 && refused("trust_list_bounds") >= 4
        })
        .await;
    let v2 = c.next(|l| {
        l.members[1].status = proto::MemberStatus::Suspended as i32;
        l.members[1].suspended_after_seq = 0;
    });
    let r = c.publish(0, 2, v2).await;
    assert!(r.applied);
    assert_eq!(r.version, 2);
    // Every stream of the flood ends cut off, not refused.
    for t in flood {
        let code = t.await.unwrap();
        assert!(!refusals.contains(&code), "{code:?}");
    }

    // Each refusal under its reason: the bounds before any signature, the
    // rate before verification, the rest by the update rules.
    let n = c.nodes[0].counters("bank-b").await;
    let refused = |r| reason_count(&n.requests_refused, r);
    eprintln!("the flooding member's refusals: {:?}", n.requests_refused);
    assert!(refused("trust_list_bounds") >= 2, "{n:?}");
    assert!(refused("trust_list_rate") >= 1, "{n:?}");
    assert!(refused("trust_list") >= 1, "{n:?}");
    // The suspended member is cut off; the others are served.
    assert!(
        c.federation(0, 1).await.is_err() || {
            let mut f = c.federation(0, 1).await.unwrap();
            f.get_trust_list(proto::GetTrustListRequest::default())
                .await
                .is_err()
        }
    );
    assert_eq!(version_held(&c, 0, 2).await, 2);

    c.nodes[0].restart();
    assert_eq!(version_held(&c, 0, 2).await, 2);
    assert_eq!(c.nodes[0].status().await.trust_version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publish_within_a_second_is_refused_by_the_members_rate() {
    let mut c = Coalition::new(&["bank-a", "bank-b", "liaison-c"]);
    let now = cix::time::Clock::system().now();
    c.nodes[0].use_test_clock(now);
    peer_limits(
        &c.nodes[0],
        "trust_publish_per_second = 1\ntrust_publish_burst = 1",
    );
    c.nodes[0].start();
    let mut fed = c.federation(0, 1).await.unwrap();

    let v2 = c.next(|l| l.members[0].name = "Bank A (2)".into());
    assert!(
        fed.publish_trust_list(v2.clone())
            .await
            .unwrap()
            .into_inner()
            .applied
    );
    // Within the same second by the node's clock: refused, naming the limit.
    let v3 = c.next(|l| l.members[0].name = "Bank A (3)".into());
    let e = fed.publish_trust_list(v3.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(
        e.message().contains("trust list publishes per member")
            && e.message().contains("requests per second"),
        "{}",
        e.message()
    );
    let n = c.nodes[0].counters("bank-b").await;
    assert_eq!(
        reason_count(&n.requests_refused, "trust_list_rate"),
        1,
        "{n:?}"
    );
    assert_eq!(c.nodes[0].status().await.trust_version, 2);
    // The list in force again costs nothing and takes no publish.
    let same = fed.publish_trust_list(v2).await.unwrap().into_inner();
    assert_eq!((same.applied, same.version), (false, 2));
    // Another member has its own rate.
    assert!(c.publish(0, 2, v3).await.applied);
    // A second later by the node's clock, the member may publish again.
    c.nodes[0].set_time(now + 1);
    let v4 = c.next(|l| l.members[0].name = "Bank A (4)".into());
    assert!(
        fed.publish_trust_list(v4)
            .await
            .unwrap()
            .into_inner()
            .applied
    );
    let n = c.nodes[0].counters("bank-b").await;
    assert_eq!(
        reason_count(&n.requests_refused, "trust_list_rate"),
        1,
        "{n:?}"
    );

    c.nodes[0].restart();
    assert_eq!(version_held(&c, 0, 1).await, 4);
}

/// Whether the node closed `s` (EOF or reset) within `within`.
async fn closed_by_node(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// An honest connection, served, then three that never send a byte, in
/// this order.
async fn honest_and_silent(
    c: &Coalition,
    addr: &str,
) -> (
    proto::federation_client::FederationClient<tonic::transport::Channel>,
    Vec<TcpStream>,
) {
    let mut honest = c.federation(0, 1).await.unwrap();
    honest
        .get_trust_list(proto::GetTrustListRequest::default())
        .await
        .unwrap();
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    (honest, silent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_listener_refuses_connections_over_its_limits_and_cuts_silent_handshakes() {
    let mut c = Coalition::new(&["bank-a", "bank-b"]);
    peer_limits(
        &c.nodes[0],
        "max_connections = 4\nmax_handshakes = 2\nhandshake_timeout_seconds = 3",
    );
    c.nodes[0].start();
    let addr = c.nodes[0].peer_addr();
    let refused = |n: &proto::PeerCounters, r| reason_count(&n.requests_refused, r);

    // One honest connection and two silent ones take both handshake slots:
    // a third silent one is closed at accept.
    let (mut honest, mut silent) = honest_and_silent(&c, &addr).await;
    assert!(closed_by_node(&mut silent.pop().unwrap(), Duration::from_secs(20)).await);
    c.nodes[0]
        .wait_counters(UNLISTED, "refused a handshake over the limit", |n| {
            refused(n, "handshake_limit") == 1
        })
        .await;
    // The silent ones are cut at the handshake timeout.
    for s in &mut silent {
        assert!(closed_by_node(s, Duration::from_secs(30)).await);
    }
    c.nodes[0]
        .wait_counters(UNLISTED, "cut silent handshakes", |n| {
            refused(n, "handshake_timeout") == 2
        })
        .await;

    // Two honest connections and two silent ones fill the four places: a
    // third silent one, the fifth connection, is closed at accept.
    let (second, mut silent) = honest_and_silent(&c, &addr).await;
    assert!(closed_by_node(&mut silent.pop().unwrap(), Duration::from_secs(20)).await);
    let n = c.nodes[0]
        .wait_counters(UNLISTED, "refused a connection over the limit", |n| {
            refused(n, "connection_limit") == 1
        })
        .await;
    assert_eq!(refused(&n, "handshake_limit"), 1, "{n:?}");
    // The honest connections were served throughout.
    honest
        .get_trust_list(proto::GetTrustListRequest::default())
        .await
        .unwrap();
    for s in &mut silent {
        assert!(closed_by_node(s, Duration::from_secs(30)).await);
    }
    drop((honest, second));
    // Once the silent ones are gone an honest peer connects again.
    c.nodes[0]
        .wait_counters(UNLISTED, "cut silent handshakes", |n| {
            refused(n, "handshake_timeout") == 4
        })
        .await;
    assert_eq!(version_held(&c, 0, 1).await, 1);

    c.nodes[0].restart();
    assert_eq!(version_held(&c, 0, 1).await, 1);
}
