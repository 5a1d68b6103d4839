//! The trust list on real nodes: propagation between three nodes, peer
//! authentication over pinned mutual TLS, cut-off of a suspended member's
//! open stream (and of a member whose sharing basis runs out), expiry of
//! the list (on the nodes' settable clocks), refused lists leaving the
//! stored list unchanged, and the start-up checks (token key fingerprints,
//! a corrupted stored list).

mod support;

use std::time::{Duration, Instant};

use cix::proto;
use support::*;
use tonic::Code;

async fn held_list(c: &Coalition, node: usize) -> proto::SignedTrustList {
    c.trust_list_held(node, node).await.list.unwrap()
}

/// Node `from` asks node `to`'s peer listener for its list on a new
/// connection: `Err` if the connection or the call is refused.
async fn get_list_on_a_new_connection(c: &Coalition, to: usize, from: usize) -> Result<(), String> {
    get_list_on(c.federation(to, from).await).await
}

/// Asks for the list on `connection` (as opened): `Err` if the connection
/// or the call is refused.
async fn get_list_on(
    connection: Result<
        proto::federation_client::FederationClient<tonic::transport::Channel>,
        String,
    >,
) -> Result<(), String> {
    connection?
        .get_trust_list(proto::GetTrustListRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_list_published_to_one_node_reaches_the_other_two() {
    let mut c = Coalition::new(&["bank-a", "bank-b", "liaison-c"]);
    c.start_all();
    for i in 0..3 {
        assert_eq!(c.nodes[i].status().await.trust_version, 1);
    }
    let v2 = c.next(|l| l.members[0].name = "Bank A (renamed)".into());
    let r = c
        .federation(0, 2)
        .await
        .unwrap()
        .publish_trust_list(v2.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(r.applied);
    assert_eq!(r.version, 2);
    c.wait_for_version(1, 2).await;
    c.wait_for_version(2, 2).await;
    // Every node holds the operators' exact bytes.
    for i in 0..3 {
        assert_eq!(held_list(&c, i).await, v2);
    }
    // Publishing the same list again changes nothing.
    let again = c
        .federation(1, 0)
        .await
        .unwrap()
        .publish_trust_list(v2)
        .await
        .unwrap()
        .into_inner();
    assert!(!again.applied);
    // A node that was down catches up by itself when it returns.
    c.nodes[2].stop();
    let v3 = c.next(|l| l.members[1].name = "Bank B (renamed)".into());
    c.federation(0, 1)
        .await
        .unwrap()
        .publish_trust_list(v3)
        .await
        .unwrap();
    c.wait_for_version(1, 3).await;
    c.nodes[2].start();
    c.wait_for_version(2, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_lists_leave_the_stored_list_byte_identical() {
    let mut c = Coalition::new(&["bank-a", "bank-b"]);
    // Every case from one member in a row: more than its publish rate.
    c.nodes[0].append_config(
        "\n[peer_listener.limits]\ntrust_publish_per_second = 100\ntrust_publish_burst = 100\n",
    );
    c.start_all();
    let before = held_list(&c, 0).await;
    let now = cix::time::Clock::system().now();

    let mut cases: Vec<(&str, proto::SignedTrustList, Code)> = Vec::new();
    // Rollback: version 0 < 1.
    let mut body = c.list.clone();
    body.version = 0;
    cases.push(("rollback", c.sign(&body, &[0, 1]), Code::FailedPrecondition));
    // Same version, other content.
    let mut body = c.list.clone();
    body.members[0].name = "changed".into();
    cases.push((
        "same version, other content",
        c.sign(&body, &[0, 1]),
        Code::FailedPrecondition,
    ));
    // Expired.
    let mut body = c.list.clone();
    body.version = 2;
    body.issued_at = now - 100;
    body.expires_at = now - 10;
    cases.push(("expired", c.sign(&body, &[0, 1]), Code::FailedPrecondition));
    // Below threshold; one key twice.
    let mut body = c.list.clone();
    body.version = 2;
    cases.push(("one signature", c.sign(&body, &[0]), Code::PermissionDenied));
    cases.push((
        "one key twice",
        c.sign(&body, &[0, 0]),
        Code::PermissionDenied,
    ));
    // Signed by keys not in the list.
    let mut rogue = c.sign(&body, &[]);
    for _ in 0..3 {
        cix::trust::list::sign(&mut rogue, &cix::keys::signing::SigningKeyFile::generate());
    }
    cases.push(("unknown keys", rogue, Code::PermissionDenied));
    // Wrong coalition.
    let mut body = c.list.clone();
    body.version = 2;
    body.coalition_id = "other-coalition".into();
    cases.push((
        "wrong coalition",
        c.sign(&body, &[0, 1]),
        Code::FailedPrecondition,
    ));
    // Operator keys rotated, signed only by the new keys.
    let mut body = c.list.clone();
    body.version = 2;
    let fresh: Vec<_> = (0..2)
        .map(|_| cix::keys::signing::SigningKeyFile::generate())
        .collect();
    body.operator_keys = fresh
        .iter()
        .enumerate()
        .map(|(i, k)| proto::OperatorKey {
            id: format!("new-{i}"),
            public_key: k.verifying_key().to_bytes().to_vec(),
        })
        .collect();
    let mut only_new = proto::SignedTrustList {
        body: prost::Message::encode_to_vec(&body),
        signatures: vec![],
    };
    for k in &fresh {
        cix::trust::list::sign(&mut only_new, k);
    }
    cases.push((
        "rotation signed by new keys only",
        only_new.clone(),
        Code::PermissionDenied,
    ));
    // Corrupted in transit: one byte of the body flipped.
    let mut corrupt = c.sign(&c.list, &[0, 1]);
    corrupt.body[10] ^= 0x40;
    cases.push(("corrupted body", corrupt, Code::InvalidArgument));

    let mut fed = c.federation(0, 1).await.unwrap();
    for (what, list, _) in &cases {
        let e = fed.publish_trust_list(list.clone()).await.expect_err(what);
        // The exact code depends on the rule: but never OK, always with a reason.
        assert!(!e.message().is_empty(), "{what}");
        assert_eq!(
            held_list(&c, 0).await,
            before,
            "{what} changed the stored list"
        );
    }
    for (what, list, code) in &cases[..8] {
        let e = fed.publish_trust_list(list.clone()).await.unwrap_err();
        assert_eq!(e.code(), *code, "{what}: {}", e.message());
    }
    assert_eq!(c.nodes[0].status().await.trust_version, 1);

    // Rotation done right: signed by enough old keys and enough new keys.
    let mut right = only_new;
    cix::trust::list::sign(&mut right, &c.operators[0]);
    cix::trust::list::sign(&mut right, &c.operators[2]);
    let r = fed
        .publish_trust_list(right.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(r.applied);
    assert_eq!(held_list(&c, 0).await, right);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_pinned_by_the_trust_list() {
    let mut c = Coalition::new(&["bank-a", "bank-b", "liaison-c"]);
    // liaison-c's data-sharing agreement has run out.
    c.list.members[2].sharing_basis_expires_at = cix::time::Clock::system().now() - 60;
    let root = c.sign(&c.list, &[0, 1]);
    for n in &c.nodes {
        std::fs::write(
            n.dir.join("trust/root.ctl"),
            prost::Message::encode_to_vec(&root),
        )
        .unwrap();
    }
    c.start_all();

    // A member: answered.
    assert!(c
        .federation(0, 1)
        .await
        .unwrap()
        .get_trust_list(proto::GetTrustListRequest::default())
        .await
        .is_ok());

    // A member whose sharing basis expired: refused at the handshake, logged with its key.
    let r = get_list_on_a_new_connection(&c, 0, 2).await;
    assert!(r.is_err(), "expired sharing basis admitted");
    wait_for_log(&c.nodes[0], &c.spkis[2]).await;

    // A certificate from the node's own CA but not on the list.
    let stranger = c.nodes[1].add_client("stranger", &[]);
    let r = get_list_on(c.federation_with(0, &stranger.cert, &stranger.key).await).await;
    assert!(r.is_err(), "certificate not on the list admitted");
    wait_for_log(&c.nodes[0], &stranger.spki).await;
    assert!(c.nodes[0]
        .logs()
        .contains("not an active member of the trust list"));

    // No client certificate at all.
    let config = rustls::ClientConfig::builder_with_provider(cix::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyServer))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(c.nodes[0].peer_addr())
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await;
    // TLS 1.3 reports a missing client certificate on the first read.
    if let Ok(mut s) = tls {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await;
        assert!(
            !matches!(n, Ok(n) if n > 0),
            "answered without a client certificate"
        );
    }

    // An outgoing connection to a server whose key is not the member's: refused by pinning.
    let (cert, key) = c.nodes[1].peer_cert();
    let wrong_pin = cix::tls::peer_client_config(&cert, &key, vec![c.spkis[1].clone()]).unwrap();
    let r = match cix::tls::connect(&c.nodes[0].peer_addr(), None, wrong_pin).await {
        Ok(ch) => proto::federation_client::FederationClient::new(ch)
            .get_trust_list(proto::GetTrustListRequest::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(r.is_err(), "a server with an unpinned key was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_members_open_stream_ends_when_the_list_is_applied() {
    let mut c = Coalition::new(&["bank-a", "bank-b", "liaison-c"]);
    c.start_all();
    // liaison-c holds a stream open on bank-a's peer listener.
    let (cert, key) = c.nodes[2].peer_cert();
    let config = cix::tls::peer_client_config(&cert, &key, vec![c.spkis[0].clone()]).unwrap();
    let channel = cix::tls::connect(&c.nodes[0].peer_addr(), None, config)
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());

    let v2 = c.next(|l| {
        l.members[2].status = proto::MemberStatus::Suspended as i32;
        l.members[2].suspended_after_seq = 0;
    });
    let start = Instant::now();
    c.federation(0, 1)
        .await
        .unwrap()
        .publish_trust_list(v2)
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the suspended member's stream stayed open\n{}",
        c.nodes[0]
            .logs()
            .lines()
            .filter(|l| l.contains("trust list applied")
                || l.contains("DEBUG cut")
                || l.contains("connection closed")
                || l.contains("error"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "suspended member's stream closed {:?} after publishing",
        start.elapsed()
    );
    wait_for_log(
        &c.nodes[0],
        "peer connection closed: member no longer active",
    )
    .await;
    // And it cannot come back on a new connection.
    let r = get_list_on_a_new_connection(&c, 0, 2).await;
    assert!(r.is_err());
    // The other members are untouched.
    assert!(c
        .federation(0, 1)
        .await
        .unwrap()
        .get_trust_list(proto::GetTrustListRequest::default())
        .await
        .is_ok());
}

/// A sharing basis runs out between lists: at the node's time (set past
/// it, not waited for) the member's open stream is closed and it cannot
/// connect again, while the list itself is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharing_basis_running_out_closes_the_members_open_stream() {
    let mut c = Coalition::new(&["bank-a", "bank-b", "liaison-c"]);
    let now = cix::time::Clock::system().now();
    c.list.members[2].sharing_basis_expires_at = now + 3600;
    c.rewrite_root();
    for n in &mut c.nodes {
        n.use_test_clock(now);
    }
    c.start_all();
    let (cert, key) = c.nodes[2].peer_cert();
    let config = cix::tls::peer_client_config(&cert, &key, vec![c.spkis[0].clone()]).unwrap();
    let channel = cix::tls::connect(&c.nodes[0].peer_addr(), None, config)
        .await
        .unwrap();
    let mut watch = tonic_health::pb::health_client::HealthClient::new(channel)
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());

    c.nodes[0].set_time(now + 3600);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived the sharing basis");
    wait_for_log(
        &c.nodes[0],
        "peer connection closed: member no longer active",
    )
    .await;
    let r = get_list_on_a_new_connection(&c, 0, 2).await;
    assert!(r.is_err(), "admitted after its sharing basis ran out");
    let s = c.nodes[0].status().await;
    assert_eq!((s.trust_version, s.trust_members), (1, 3));
    assert!(c
        .federation(0, 1)
        .await
        .unwrap()
        .get_trust_list(proto::GetTrustListRequest::default())
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_key_that_does_not_match_its_epoch_refuses_to_start() {
    let c = Coalition::new(&["bank-a"]);
    let node = &c.nodes[0];
    let key_file = node.dir.join("keys/epoch-1.key");
    std::fs::remove_file(&key_file).unwrap();
    cix::keys::TokenKey::generate()
        .write_new(&key_file)
        .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&node.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match epoch 1"), "{err}");
    assert!(err.contains("never match"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_list_corrupted_on_disk_stops_the_node() {
    let mut c = Coalition::new(&["bank-a"]);
    c.start_all();
    assert!(c.nodes[0].stop());
    let data = c.nodes[0].data_dir();
    {
        let store = cix::store::Store::open(&data, 8).unwrap();
        let mut bytes = store.trust_list().unwrap().unwrap();
        let n = bytes.len();
        bytes[n - 5] ^= 0x01;
        store.put_trust_list(&bytes).await.unwrap();
    }
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&c.nodes[0].config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trust list kept in the store fails verification"),
        "{err}"
    );
}

async fn wait_for_log(node: &TestNode, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.logs().contains(needle) {
        assert!(Instant::now() < deadline, "node never logged {needle:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Accepts any server certificate: for probing the server's client-auth
/// requirement only.
#[derive(Debug)]
struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        cix::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_list_closes_the_peer_listener_but_for_trust_list_rpcs() {
    let mut c = Coalition::new(&["bank-a", "bank-b"]);
    let now = cix::time::Clock::system().now();
    c.list.expires_at = now + 3;
    let root = c.sign(&c.list, &[0, 1]);
    for n in &mut c.nodes {
        std::fs::write(
            n.dir.join("trust/root.ctl"),
            prost::Message::encode_to_vec(&root),
        )
        .unwrap();
        n.use_test_clock(now);
    }
    c.start_all();
    // Inside the warning window: a warning in the status.
    let s = c.nodes[0].status().await;
    assert!(
        s.warnings.iter().any(|w| w.contains("expires at")),
        "{:?}",
        s.warnings
    );
    assert_eq!(s.trust_members, 2);

    // Past the expiry.
    for n in &c.nodes {
        n.set_time(now + 4);
    }
    let (cert, key) = c.nodes[1].peer_cert();
    let config = cix::tls::peer_client_config(&cert, &key, vec![c.spkis[0].clone()]).unwrap();
    let channel = cix::tls::connect(&c.nodes[0].peer_addr(), None, config)
        .await
        .unwrap();
    let e = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("expired"), "{}", e.message());
    let s = c.nodes[0].status().await;
    assert!(
        s.warnings.iter().any(|w| w.contains("expired")),
        "{:?}",
        s.warnings
    );
    // Local screening goes on.
    let mut m = c.nodes[0].clients().await;
    assert_eq!(
        status_of(&match_one(&mut m, proto::Kind::Email, "a@b.example").await),
        proto::MatchStatus::NoMatch
    );
    // A fresh list can still arrive, and reopens the listener.
    let mut fed = proto::federation_client::FederationClient::new(channel.clone());
    assert!(fed
        .get_trust_list(proto::GetTrustListRequest::default())
        .await
        .is_ok());
    let v2 = c.next(|l| l.expires_at = now + 30 * 86_400);
    assert!(
        fed.publish_trust_list(v2)
            .await
            .unwrap()
            .into_inner()
            .applied
    );
    assert!(tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .is_ok());
    wait_for_log(&c.nodes[0], "expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_the_capability_is_refused_before_any_handler() {
    let mut c = Coalition::new(&["bank-a", "bank-b"]);
    c.list.members[1].capabilities = vec![proto::PeerCapability::Contribute as i32];
    let root = c.sign(&c.list, &[0, 1]);
    for n in &c.nodes {
        std::fs::write(
            n.dir.join("trust/root.ctl"),
            prost::Message::encode_to_vec(&root),
        )
        .unwrap();
    }
    c.start_all();
    let (cert, key) = c.nodes[1].peer_cert();
    let config = cix::tls::peer_client_config(&cert, &key, vec![c.spkis[0].clone()]).unwrap();
    let channel = cix::tls::connect(&c.nodes[0].peer_addr(), None, config)
        .await
        .unwrap();
    // A replication call: bank-b lacks `replicate`.
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let e = grpc
        .unary::<proto::GetTrustListRequest, proto::GetTrustListResponse, _>(
            tonic::Request::new(proto::GetTrustListRequest::default()),
            http::uri::PathAndQuery::from_static("/cix.v1.Federation/Pull"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("bank-b") && e.message().contains("replicate"),
        "{}",
        e.message()
    );
    wait_for_log(&c.nodes[0], "peer request refused: capability missing").await;
    assert!(c.nodes[0].logs().contains("bank-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_coalition_ca_a_listed_key_must_also_chain_to_it() {
    let mut c = Coalition::new(&["bank-a", "bank-b"]);
    // bank-a demands certificates from its own CA; bank-b's peer certificate
    // comes from bank-b's CA. A second bank-b certificate from bank-a's CA
    // is listed too.
    let ca = cix::testbed::init::load_ca(&c.nodes[0].dir).unwrap();
    let cert = c.tmp.path().join("b-by-a.crt");
    let key = c.tmp.path().join("b-by-a.key");
    let spki =
        cix::testbed::init::issue_client(&ca, "bank-b via coalition CA", &cert, &key).unwrap();
    c.list.members[1].tls_spki_sha256.push(spki);
    let root = c.sign(&c.list, &[0, 1]);
    for n in &c.nodes {
        std::fs::write(
            n.dir.join("trust/root.ctl"),
            prost::Message::encode_to_vec(&root),
        )
        .unwrap();
    }
    c.nodes[0].append_config("");
    let text = std::fs::read_to_string(&c.nodes[0].config).unwrap();
    std::fs::write(
        &c.nodes[0].config,
        text.replace(
            "key = \"tls/peer.key\"",
            "key = \"tls/peer.key\"\ncoalition_ca = \"tls/ca.crt\"",
        ),
    )
    .unwrap();
    c.start_all();
    let refused = match c.federation(0, 1).await {
        Ok(mut f) => f
            .get_trust_list(proto::GetTrustListRequest::default())
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(
        refused,
        "a listed key outside the coalition CA was admitted"
    );
    wait_for_log(&c.nodes[0], "not from the coalition CA").await;
    let mut f = c.federation_with(0, &cert, &key).await.unwrap();
    assert!(f
        .get_trust_list(proto::GetTrustListRequest::default())
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cix_trust_publish_hands_a_signed_file_to_a_live_node() {
    let mut c = Coalition::new(&["bank-a", "bank-b"]);
    c.start_all();
    let v2 = c.next(|l| l.members[1].name = "Bank B, published from the CLI".into());
    let file = c.tmp.path().join("v2.ctl");
    std::fs::write(&file, prost::Message::encode_to_vec(&v2)).unwrap();
    let (cert, key) = c.nodes[1].peer_cert();
    let out = std::process::Command::new(BIN)
        .args(["trust", "publish", "--file"])
        .arg(&file)
        .args([
            "--node",
            &c.nodes[0].peer_addr(),
            "--node-spki",
            &c.spkis[0],
            "--cert",
        ])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_for_version(0, 2).await;
    c.wait_for_version(1, 2).await;
}
