//! TLS for the node's listeners and its clients, with rustls and the ring
//! provider only.
//!
//! The member listener speaks TLS 1.3 only and requires a client certificate
//! that chains to the member's client CA. Each accepted connection carries a
//! [`TlsIdentity`]: the SHA-256 of the client certificate's DER
//! SubjectPublicKeyInfo, so that a caller is its key, whatever certificate
//! wraps it. tonic's built-in TLS can do neither, so the listener accepts with
//! tokio-rustls and hands the streams to `serve_with_incoming`.
//!
//! The peer listener (other members' nodes) pins certificates by public key
//! instead: a client certificate is accepted only if its SPKI fingerprint
//! belongs to an active member of the trust list (optionally also chaining
//! to a coalition CA), and outgoing peer connections accept only the
//! fingerprints the list gives for that member. Every accepted connection is
//! registered in a [`Connections`] registry so that a member cut off by a
//! new trust list loses its open connections and streams at once.
//!
//! Neither listener resumes TLS sessions (no session cache, no TLS 1.3
//! tickets) and no client config offers to: every connection presents its
//! certificate and is checked afresh. A private key file is read only when
//! group and others have no access to it (mode 0600 or stricter), and its
//! bytes are zeroized once the key is loaded.
//!
//! Both listeners accept within [`AcceptLimits`]: connections open at once,
//! handshakes in flight and the handshake timeout, so that connections that
//! never authenticate cannot pile up.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
};

use futures::FutureExt;
use parking_lot::Mutex;
use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        Resumption,
    },
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        NoServerSessionStorage, WebPkiClientVerifier,
    },
    sign::{CertifiedKey, SingleCertAndKey},
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::{server::Connected, Channel, Endpoint};

use zeroize::Zeroizing;

use crate::{
    counters::{Counters, RequestRefusal, UNLISTED},
    keys::file::{read_private, PrivateFileError},
};

/// The identity of the peer at the other end of a TLS connection, attached
/// to every request of that connection.
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    /// SHA-256 of the client certificate's SubjectPublicKeyInfo, lowercase hex.
    pub spki_sha256: Arc<str>,
}

/// What a listener lets unauthenticated and authenticated connections
/// hold: connections open at once (handshakes included), handshakes in
/// flight, and how long a handshake may take. Connections over a limit are
/// closed at accept; a handshake that does not finish in time is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptLimits {
    /// Connections open at once, handshakes included.
    pub max_connections: usize,
    /// TLS handshakes in flight.
    pub max_handshakes: usize,
    /// How long a client gets to finish the TLS handshake.
    pub handshake_timeout: Duration,
}

impl AcceptLimits {
    /// The member listener's (and a default for a listener whose callers
    /// are known): no cap on connections (the callers are the member's own
    /// systems), 64 handshakes in flight, 10 s each.
    pub const MEMBER: AcceptLimits = AcceptLimits {
        max_connections: Semaphore::MAX_PERMITS,
        max_handshakes: 64,
        handshake_timeout: Duration::from_secs(10),
    };
}

/// Why a TLS configuration could not be built or a connection not opened.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file does not read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A private key file grants group or others some access.
    #[error(
        "key file {} is accessible by group or others (mode {mode:o}); run: chmod 600 {}",
        .path.display(),
        .path.display()
    )]
    Permissions {
        /// The private key file.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
    /// A PEM file holds no item of the kind needed.
    #[error("{path}: no PEM {what} found")]
    NoPem {
        /// The file.
        path: PathBuf,
        /// What was looked for: `certificate` or `private key`.
        what: &'static str,
    },
    /// A PEM file does not parse.
    #[error("{path}: bad PEM: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A certificate does not parse as X.509; carries the parser's message.
    #[error("certificate is not valid X.509: {0}")]
    Certificate(String),
    /// rustls refused the configuration: a CA certificate, the certificate
    /// and key, or the protocol versions.
    #[error("tls configuration")]
    Config(#[from] rustls::Error),
    /// The verifier of client certificates against a CA could not be built;
    /// carries rustls's message.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    /// The address to connect to is not HOST:PORT, or gives no valid server
    /// name; carries the address.
    #[error("node address {0:?}: must be HOST:PORT")]
    Address(String),
    /// The connection, TCP or TLS, could not be made.
    #[error("connecting to {addr}: {message}")]
    Connect {
        /// The address, HOST:PORT.
        addr: String,
        /// The error and its causes.
        message: String,
    },
}

/// The one crypto provider cix uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoPem {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// Reads the private key of a PEM file, refusing a file that group or
/// others may access (as for every secret file, [`crate::keys::file`]).
/// The file's bytes and the key are zeroized when dropped.
pub fn load_key(path: &Path) -> Result<Zeroizing<PrivateKeyDer<'static>>, TlsError> {
    let data = read_private(path).map_err(|e| match e {
        PrivateFileError::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
        PrivateFileError::Permissions { mode } => TlsError::Permissions {
            path: path.to_path_buf(),
            mode,
        },
    })?;
    PrivateKeyDer::from_pem_slice(&data)
        .map(Zeroizing::new)
        .map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPem {
                path: path.to_path_buf(),
                what: "private key",
            },
            e => TlsError::Pem {
                path: path.to_path_buf(),
                message: e.to_string(),
            },
        })
}

/// The certificate chain of `cert` with the private key of `key`, checked
/// to belong together, for a listener or a client to present. The key's
/// bytes are handed to the provider by reference and zeroized here.
fn certified_key(cert: &Path, key: &Path) -> Result<Arc<SingleCertAndKey>, TlsError> {
    let certs = load_certs(cert)?;
    let der = load_key(key)?;
    let certified = CertifiedKey::new(certs, rustls::crypto::ring::sign::any_supported_type(&der)?);
    match certified.keys_match() {
        // As rustls's own loading: a key whose public half it cannot
        // derive is not an inconsistency.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Arc::new(SingleCertAndKey::from(certified)))
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// SHA-256 of a certificate's DER SubjectPublicKeyInfo, lowercase hex.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(
        parsed.tbs_certificate.subject_pki.raw,
    )))
}

/// The member listener's TLS: 1.3 only, client certificate from `client_ca`
/// required. Session resumption is off, as on the peer listener: every
/// connection shows its certificate afresh.
pub fn member_server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certified_key(cert, key)?);
    config.alpn_protocols = vec![b"h2".to_vec()];
    no_server_resumption(&mut config);
    Ok(Arc::new(config))
}

/// Turns session resumption off on a listener: no session kept, no TLS 1.3
/// ticket sent.
fn no_server_resumption(config: &mut ServerConfig) {
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
}

/// A client's TLS: trusts `ca` for the server, presents `cert`/`key`; never
/// resumes a session.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_client_cert_resolver(certified_key(cert, key)?);
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The TLS of an HTTPS client that is not a member client (the alert
/// webhook): TLS 1.2 or 1.3, the server's certificate checked against
/// `ca`, no client certificate, HTTP/1.1.
pub fn https_client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An accepted, authenticated TLS connection. It fails every read and
/// write once its registry closes it, which ends the HTTP/2 connection and
/// every stream on it.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    peer: TlsIdentity,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    _registration: Registration,
    /// The connection's place under [`AcceptLimits::max_connections`].
    _slot: OwnedSemaphorePermit,
}

impl PeerStream {
    fn check_closed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.closed.poll_unpin(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed: caller no longer authorized",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

/// Open connections by caller key, so that a caller's connections can be cut.
#[derive(Clone, Default)]
pub struct Connections {
    inner: Arc<ConnectionsInner>,
}

#[derive(Default)]
struct ConnectionsInner {
    next: AtomicU64,
    open: Mutex<HashMap<u64, (Arc<str>, CancellationToken)>>,
}

/// Removes a connection from its registry when the connection ends.
struct Registration {
    id: u64,
    registry: Arc<ConnectionsInner>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.open.lock().remove(&self.id);
    }
}

impl Connections {
    fn register(&self, spki: Arc<str>) -> (Registration, CancellationToken) {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.inner.open.lock().insert(id, (spki, token.clone()));
        (
            Registration {
                id,
                registry: self.inner.clone(),
            },
            token,
        )
    }

    /// Closes every open connection whose caller key fails `keep`; returns
    /// the fingerprints closed.
    pub fn close_unless(&self, keep: impl Fn(&str) -> bool) -> Vec<Arc<str>> {
        let mut closed = Vec::new();
        for (spki, token) in self.inner.open.lock().values() {
            if !keep(spki) && !token.is_cancelled() {
                token.cancel();
                closed.push(spki.clone());
            }
        }
        closed
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.inner.open.lock().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Connected for PeerStream {
    type ConnectInfo = TlsIdentity;
    fn connect_info(&self) -> TlsIdentity {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_closed(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_closed(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_closed(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts TCP connections, runs each TLS handshake in its own task (a slow
/// client never holds up the others) and yields the authenticated streams.
/// Within `limits`: a connection over `max_connections` or
/// `max_handshakes` is closed at once, a handshake over `handshake_timeout`
/// is cut; each is counted in `counters` (when given) under [`UNLISTED`].
/// Stops when the returned receiver is dropped.
pub fn accept_loop(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    connections: Connections,
    limits: AcceptLimits,
    counters: Option<Arc<Counters>>,
) -> mpsc::Receiver<Result<PeerStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let handshakes = Arc::new(Semaphore::new(
        limits.max_handshakes.min(Semaphore::MAX_PERMITS),
    ));
    let count = move |r: RequestRefusal| {
        if let Some(c) = &counters {
            c.request_refused(UNLISTED, r);
        }
    };
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(peer = %addr, max = limits.max_connections, "connection refused: as many open as allowed");
                count(RequestRefusal::ConnectionLimit);
                continue;
            };
            let Ok(handshaking) = handshakes.clone().try_acquire_owned() else {
                tracing::debug!(peer = %addr, max = limits.max_handshakes, "connection refused: as many handshakes in flight as allowed");
                count(RequestRefusal::HandshakeLimit);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let connections = connections.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let tls =
                    tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await;
                drop(handshaking);
                let tls = match tls {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %addr, error = %e, "tls handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %addr, "tls handshake timed out");
                        count(RequestRefusal::HandshakeTimeout);
                        return;
                    }
                };
                match authenticated(tls, addr, &connections, slot) {
                    Ok(stream) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Err(e) => tracing::debug!(peer = %addr, error = %e, "tls handshake refused"),
                }
            });
        }
    });
    rx
}

fn authenticated(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    addr: SocketAddr,
    connections: &Connections,
    slot: OwnedSemaphorePermit,
) -> io::Result<PeerStream> {
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| io::Error::new(io::ErrorKind::PermissionDenied, "no client certificate"))?;
    let fp =
        spki_sha256(cert).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    tracing::debug!(peer = %addr, spki_sha256 = %fp, "tls connection accepted");
    let spki: Arc<str> = fp.into();
    let (registration, token) = connections.register(spki.clone());
    Ok(PeerStream {
        inner: tls,
        peer: TlsIdentity { spki_sha256: spki },
        closed: Box::pin(token.cancelled_owned()),
        _registration: registration,
        _slot: slot,
    })
}

/// Opens a gRPC channel over mutual TLS to `addr` (HOST:PORT). The server
/// name checked against the certificate is `server_name`, or HOST.
pub async fn connect(
    addr: &str,
    server_name: Option<&str>,
    config: Arc<ClientConfig>,
) -> Result<Channel, TlsError> {
    connect_tuned(addr, server_name, config, |e| e).await
}

/// [`connect`], with the channel's endpoint adjusted by `tune` first
/// (keepalive, deadlines).
pub async fn connect_tuned(
    addr: &str,
    server_name: Option<&str>,
    config: Arc<ClientConfig>,
    tune: impl FnOnce(Endpoint) -> Endpoint,
) -> Result<Channel, TlsError> {
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| TlsError::Address(addr.to_string()))?;
    let name = ServerName::try_from(server_name.unwrap_or(host).to_string())
        .map_err(|_| TlsError::Address(addr.to_string()))?;
    let connector = TlsConnector::from(config);
    let target = addr.to_string();
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| TlsError::Address(addr.to_string()))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    tune(endpoint)
        .connect_with_connector(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            let name = name.clone();
            let target = target.clone();
            async move {
                let tcp = TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| TlsError::Connect {
            addr: addr.to_string(),
            message: crate::telemetry::chain(&e),
        })
}

/// Decides whether a certificate's SPKI fingerprint may connect.
pub type SpkiPolicy = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Client-certificate verifier of the peer listener: the certificate's
/// public key must be allowed by `policy` (an active member's TLS identity);
/// with `ca`, the certificate must also chain to the coalition CA.
pub struct SpkiClientVerifier {
    policy: SpkiPolicy,
    ca: Option<Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for SpkiClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpkiClientVerifier")
            .field("ca", &self.ca.is_some())
            .finish()
    }
}

impl ClientCertVerifier for SpkiClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca
            .as_ref()
            .map(|c| c.root_hint_subjects())
            .unwrap_or(&[])
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let fp = spki_sha256(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if !(self.policy)(&fp) {
            tracing::warn!(spki_sha256 = %fp, "peer certificate refused: not an active member of the trust list");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        if let Some(ca) = &self.ca {
            ca.verify_client_cert(end_entity, intermediates, now)
                .inspect_err(|e| tracing::warn!(spki_sha256 = %fp, error = %e, "peer certificate refused: not from the coalition CA"))?;
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The peer listener's TLS: 1.3 only, a client certificate whose key
/// `policy` allows (and, with `coalition_ca`, chaining to it). Session
/// resumption is off: every connection shows its certificate afresh.
pub fn peer_server_config(
    cert: &Path,
    key: &Path,
    coalition_ca: Option<&Path>,
    policy: SpkiPolicy,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let ca = match coalition_ca {
        Some(path) => Some(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(path)?), provider.clone())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?,
        ),
        None => None,
    };
    let verifier = Arc::new(SpkiClientVerifier {
        policy,
        ca,
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certified_key(cert, key)?);
    config.alpn_protocols = vec![b"h2".to_vec()];
    no_server_resumption(&mut config);
    Ok(Arc::new(config))
}

/// Server-certificate verifier for outgoing peer connections: the server's
/// key must be one the trust list gives for that member. Host names are not
/// checked: the pinned key is the identity.
#[derive(Debug)]
pub struct SpkiServerVerifier {
    expected: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SpkiServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = spki_sha256(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.expected.contains(&fp) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS for an outgoing peer connection: presents `cert`/`key`, accepts only
/// a server whose SPKI fingerprint is in `expected_server_spki`; never
/// resumes a session.
pub fn peer_client_config(
    cert: &Path,
    key: &Path,
    expected_server_spki: Vec<String>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(SpkiServerVerifier {
        expected: expected_server_spki,
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(certified_key(cert, key)?);
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}
