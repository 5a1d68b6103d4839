//! Who may call the member listener: mutual TLS 1.3 with a certificate from
//! the member's client CA, and a capability checked on every request.

mod support;

use std::sync::Arc;

use cix::{
    client::Clients,
    proto::{self, Kind},
    tls,
};
use rustls::pki_types::ServerName;
use support::*;
use tonic::Code;

fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

fn roots(node: &TestNode) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::load_certs(&node.dir.join("tls/ca.crt")).unwrap() {
        roots.add(c).unwrap();
    }
    roots
}

fn wait_for_log(node: &TestNode, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !node.logs().contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "node never logged {needle:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether a gRPC call over a client with this TLS config gets any answer
/// from a handler (it must not).
async fn status_call(
    node: &TestNode,
    config: rustls::ClientConfig,
) -> Result<proto::StatusResponse, String> {
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let channel = match tls::connect(&node.addr, Some("localhost"), Arc::new(config)).await {
        Ok(c) => c,
        Err(e) => return Err(e.to_string()),
    };
    let mut clients = Clients::new(channel);
    clients
        .admin
        .status(proto::StatusRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_never_reaches_a_handler() {
    let mut node = TestNode::new("bank-auth-1");
    node.start();
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&node))
        .with_no_client_auth();
    let r = status_call(&node, config).await;
    let e = r.expect_err("answered without a client certificate");
    // Refused by TLS, not by the capability check behind it.
    assert!(
        !e.contains("Unauthenticated") && !e.contains("PermissionDenied"),
        "{e}"
    );
    wait_for_log(&node, "tls handshake refused");
    assert!(
        !node.logs().contains("request authorized"),
        "a request got past the handshake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_at_the_handshake() {
    let mut node = TestNode::new("bank-auth-2");
    node.start();
    // A whole other PKI, whose client is even listed by fingerprint.
    let other = tempfile::tempdir().unwrap();
    let (_, _, ca) = cix::testbed::init::new_ca("someone else's CA").unwrap();
    let cert = other.path().join("c.crt");
    let key = other.path().join("c.key");
    let spki = cix::testbed::init::issue_client(&ca, "intruder", &cert, &key).unwrap();
    assert!(!spki.is_empty());
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&node))
        .with_client_auth_cert(
            tls::load_certs(&cert).unwrap(),
            tls::load_key(&key).unwrap().clone_key(),
        )
        .unwrap();
    let e = status_call(&node, config)
        .await
        .expect_err("answered a certificate from an unknown CA");
    assert!(
        !e.contains("Unauthenticated") && !e.contains("PermissionDenied"),
        "{e}"
    );
    wait_for_log(&node, "tls handshake refused");
    assert!(!node.logs().contains("request authorized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_only_client_is_refused() {
    let mut node = TestNode::new("bank-auth-3");
    node.start();
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots(&node))
        .with_client_auth_cert(
            tls::load_certs(&node.dir.join("tls/client.crt")).unwrap(),
            tls::load_key(&node.dir.join("tls/client.key"))
                .unwrap()
                .clone_key(),
        )
        .unwrap();
    // At the TLS layer itself: the handshake fails.
    let tcp = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    let r = tokio_rustls::TlsConnector::from(Arc::new(config.clone()))
        .connect(server_name(), tcp)
        .await;
    assert!(r.is_err(), "TLS 1.2 handshake succeeded");
    assert!(status_call(&node, config).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_checked_per_request() {
    let mut node = TestNode::new("bank-auth-4");
    let screener = node.add_client("screener", &["screen"]);
    let stranger = node.add_client("stranger", &[]);
    node.start();

    let mut s = node.identity_of(&screener).connect().await.unwrap();
    // screen: allowed
    let r = s
        .screening
        .r#match(proto::MatchRequest {
            identifiers: vec![id(Kind::Email, "a@b.example")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status_of(&r.results[0]), proto::MatchStatus::NoMatch);
    // contribute and admin: denied, on the same connection, every time
    for _ in 0..2 {
        let e = s
            .contribution
            .contribute(contribute_req(
                vec![item(Kind::Email, "a@b.example")],
                "CASE-X",
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.message().contains("contribute"), "{}", e.message());
        let e = s.admin.status(proto::StatusRequest {}).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    // A certificate from the CA with no grant: denied everywhere but health.
    let mut x = node.identity_of(&stranger).connect().await.unwrap();
    let e = x
        .screening
        .r#match(proto::MatchRequest {
            identifiers: vec![id(Kind::Email, "a@b.example")],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains(&stranger.spki),
        "names the key: {}",
        e.message()
    );

    // The operator can, and nothing was written by the refused calls.
    let st = node
        .clients()
        .await
        .admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.batches, 0);
}

/// A client session store that keeps what rustls's own does and counts
/// the TLS 1.3 tickets a server sent.
#[derive(Debug)]
struct CountingSessions {
    inner: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl rustls::client::ClientSessionStore for CountingSessions {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.insert_tls13_ticket(name, value)
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_listener_sends_no_session_ticket_and_a_second_connection_is_a_full_handshake() {
    let mut node = TestNode::new("bank-auth-resume");
    node.start();
    let sessions = Arc::new(CountingSessions {
        inner: rustls::client::ClientSessionMemoryCache::new(16),
        tickets: Default::default(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&node))
        .with_client_auth_cert(
            tls::load_certs(&node.dir.join("tls/client.crt")).unwrap(),
            tls::load_key(&node.dir.join("tls/client.key"))
                .unwrap()
                .clone_key(),
        )
        .unwrap();
    // A client that would resume if the listener let it.
    config.resumption = rustls::client::Resumption::store(sessions.clone());
    // Whole calls: the client reads everything the listener sent after
    // the handshake, tickets included.
    for _ in 0..2 {
        status_call(&node, config.clone()).await.unwrap();
    }
    assert_eq!(
        sessions.tickets.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the member listener sent TLS 1.3 session tickets"
    );
    let tcp = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
}
