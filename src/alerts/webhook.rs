//! The webhook sink: one task POSTs every event of the alert log, in order,
//! one request in flight, as its JSON form ([`AlertEvent::json`]) to the
//! bank's case system, signed (`X-Cix-Signature: sha256=<hex of
//! HMAC-SHA256(secret, "<timestamp>.<body>")>`, `X-Cix-Timestamp`) and keyed
//! (`Idempotency-Key: <event number>`). A 2xx answer moves the sink's
//! durable cursor in the alert log; anything else (a redirect too: none is
//! ever followed) is retried with backoff from 1 s doubling to 5 min, the
//! same event with the same key, until it is acknowledged. HTTPS with the
//! receiver's CA, or plain HTTP to loopback (the config checks which). The
//! URL is logged and shown without its user info or query; the secret is
//! read from a 0600 file and held zeroized.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::log::{AlertEvent, AlertLog, AlertLogError};
use crate::{
    keys::file::{read_private, PrivateFileError},
    time::Clock,
    tls::{https_client_config, TlsError},
};

/// The webhook's cursor name in the alert log.
pub(crate) const SINK: &str = "webhook";

/// The first and the longest wait between attempts at one event.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Events read from the log at a time.
const PAGE: usize = 64;

/// The shortest secret taken, in bytes.
const MIN_SECRET: usize = 16;

/// Why the webhook could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("alerts.webhook.secret_file {path}")]
    ReadSecret {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "alerts.webhook.secret_file {} is accessible by group or others (mode {mode:o}); run: chmod 600 {}",
        .path.display(),
        .path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("alerts.webhook.secret_file {path}: must hold at least {MIN_SECRET} bytes")]
    ShortSecret { path: PathBuf },
    #[error("alerts.webhook.ca_file")]
    Tls(#[source] TlsError),
    #[error("alerts.webhook.url: has no host")]
    NoHost,
}

/// The webhook's figures for Status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WebhookStatus {
    /// Events not yet acknowledged (newest - cursor).
    pub pending: u64,
    /// Since the node started: events acknowledged, and attempts failed.
    pub delivered: u64,
    pub failures: u64,
    /// The last failure (empty if none), the URL without user info or query.
    pub last_error: String,
}

/// The webhook sink.
pub(crate) struct Webhook {
    url: http::Uri,
    /// `scheme://host[:port]/path`: how the URL is logged and shown.
    shown: String,
    host: String,
    port: u16,
    /// `Host` header: host[:port], no user info.
    authority: String,
    tls: Option<tokio_rustls::TlsConnector>,
    secret: Zeroizing<Vec<u8>>,
    timeout: Duration,
    backoff_min: Duration,
    log: Arc<AlertLog>,
    clock: Clock,
    delivered: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<String>,
}

/// The URL as it may be logged: no user info, no query.
fn shown(url: &http::Uri) -> String {
    let host = url.host().unwrap_or("");
    let port = url.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{host}{port}{}",
        url.scheme_str().unwrap_or(""),
        url.path()
    )
}

fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, WebhookError> {
    let mut data = read_private(path).map_err(|e| match e {
        PrivateFileError::Io(source) => WebhookError::ReadSecret {
            path: path.to_path_buf(),
            source,
        },
        PrivateFileError::Permissions { mode } => WebhookError::Permissions {
            path: path.to_path_buf(),
            mode,
        },
    })?;
    while data.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        data.pop();
    }
    if data.len() < MIN_SECRET {
        return Err(WebhookError::ShortSecret {
            path: path.to_path_buf(),
        });
    }
    Ok(data)
}

/// HMAC-SHA256(secret, "<timestamp>.<body>"), lowercase hex: the
/// `X-Cix-Signature` value after `sha256=`.
pub(crate) fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

impl Webhook {
    /// The sink for `url` (checked by the config: https, or http to
    /// loopback), signing with the secret in `secret_file` (0600), trusting
    /// `ca_file` for https; each delivery may take `timeout`.
    pub(crate) fn open(
        url: http::Uri,
        secret_file: &Path,
        ca_file: Option<&Path>,
        timeout: Duration,
        log: Arc<AlertLog>,
        clock: Clock,
    ) -> Result<Webhook, WebhookError> {
        let secret = read_secret(secret_file)?;
        let https = url.scheme_str() == Some("https");
        let tls = match ca_file {
            Some(ca) if https => Some(tokio_rustls::TlsConnector::from(
                https_client_config(ca).map_err(WebhookError::Tls)?,
            )),
            _ => None,
        };
        let host = url
            .host()
            .ok_or(WebhookError::NoHost)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = match (url.host(), url.port_u16()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => String::new(),
        };
        Ok(Webhook {
            shown: shown(&url),
            url,
            host,
            port,
            authority,
            tls,
            secret,
            timeout,
            backoff_min: BACKOFF_MIN,
            log,
            clock,
            delivered: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
        })
    }

    /// The figures for Status.
    pub(crate) fn status(&self) -> WebhookStatus {
        WebhookStatus {
            pending: self
                .log
                .newest()
                .saturating_sub(self.log.cursor(SINK).unwrap_or(0)),
            delivered: self.delivered.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }

    fn failed(&self, error: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = error;
    }

    /// Delivers every event after the cursor, then each new one, until
    /// `stop`.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        tracing::info!(url = %self.shown, "alert webhook started");
        let mut newest = self.log.subscribe();
        let mut backoff = self.backoff_min;
        loop {
            let events = self.next_events();
            let events = match events {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(error = %crate::telemetry::chain(&e), "alert webhook: reading the alert log");
                    self.failed(format!(
                        "reading the alert log: {}",
                        crate::telemetry::chain(&e)
                    ));
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let Some(last) = events.last().map(|e| e.number) else {
                let cursor = self.log.cursor(SINK).unwrap_or(0);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = newest.wait_for(|n| *n > cursor) => if r.is_err() { return },
                }
                continue;
            };
            for event in &events {
                loop {
                    let attempt = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = self.deliver(event) => r,
                    };
                    match attempt {
                        Ok(()) => {
                            backoff = self.backoff_min;
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(url = %self.shown, event = event.number, %error, retry_in_ms = backoff.as_millis() as u64, "alert webhook delivery failed; retrying");
                            self.failed(error);
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
            }
            tracing::debug!(up_to = last, "alert webhook: events delivered");
        }
    }

    /// The next page after the cursor. A cursor older than the oldest
    /// retained event (a webhook configured after a purge; retention never
    /// passes a configured sink's cursor) starts at the oldest.
    fn next_events(&self) -> Result<Vec<AlertEvent>, AlertLogError> {
        let cursor = self.log.cursor(SINK)?;
        match self.log.read(cursor, PAGE) {
            Err(AlertLogError::Expired { oldest, .. }) => {
                tracing::warn!(
                    cursor,
                    oldest,
                    "alert webhook: events before the oldest retained were purged before this webhook was configured; starting at the oldest"
                );
                self.log.set_cursor(SINK, oldest - 1)?;
                self.log.read(oldest - 1, PAGE)
            }
            other => other,
        }
    }

    /// One attempt at `event`: acknowledged (and the cursor moved) or why not.
    async fn deliver(&self, event: &AlertEvent) -> Result<(), String> {
        let body = serde_json::to_vec(&event.json()).expect("a JSON value serializes");
        let timestamp = self.clock.now();
        let request = http::Request::post(self.url.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, &self.authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", event.number.to_string())
            .header("X-Cix-Timestamp", timestamp.to_string())
            .header(
                "X-Cix-Signature",
                format!("sha256={}", signature(&self.secret, timestamp, &body)),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let status = tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| format!("{}: no answer within {:?}", self.shown, self.timeout))??;
        if !status.is_success() {
            let what = if status.is_redirection() {
                "a redirect, not followed"
            } else {
                "not a 2xx"
            };
            return Err(format!("{}: answered {status} ({what})", self.shown));
        }
        self.log
            .set_cursor(SINK, event.number)
            .map_err(|e| format!("keeping the cursor: {}", crate::telemetry::chain(&e)))?;
        self.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Connects (TLS for https), sends `request`, returns the answer's status.
    async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::StatusCode, String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("{}: {what}: {e}", self.shown);
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| fail("connecting", &e))?;
        match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| fail("server name", &e))?;
                let stream = tls.connect(name, tcp).await.map_err(|e| fail("TLS", &e))?;
                send(stream, request).await.map_err(|e| fail("HTTP", &e))
            }
            None => send(tcp, request).await.map_err(|e| fail("HTTP", &e)),
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; the answer's status.
async fn send<S>(
    io: S,
    request: http::Request<Full<Bytes>>,
) -> Result<http::StatusCode, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let conn = tokio::spawn(conn);
    let answer = sender.send_request(request).await;
    conn.abort();
    Ok(answer?.status())
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, convert::Infallible, net::SocketAddr};

    use hyper::{body::Incoming, service::service_fn, Request, Response};
    use tokio::sync::watch;

    use super::*;
    use crate::alerts::log::tests::event;

    const SECRET: &[u8] = b"a webhook secret of some length\n";

    /// What the test receiver got: headers and body of each request.
    #[derive(Clone, Debug)]
    struct Received {
        key: String,
        timestamp: String,
        signature: String,
        body: Vec<u8>,
    }

    /// A real HTTP server on 127.0.0.1: answers each request with the next
    /// scripted status (then 200), with `Location` for redirects.
    struct Receiver {
        addr: SocketAddr,
        got: watch::Receiver<Vec<Received>>,
    }

    async fn receiver(script: Vec<(u16, Option<String>)>) -> Receiver {
        receiver_on(script, None).await
    }

    /// [`receiver`], over TLS when `tls` is given.
    async fn receiver_on(
        script: Vec<(u16, Option<String>)>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, got) = watch::channel(Vec::new());
        let tx = Arc::new(tx);
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (tx, script) = (tx.clone(), script.clone());
                let service = service_fn(move |req: Request<Incoming>| {
                    let (tx, script) = (tx.clone(), script.clone());
                    async move {
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default()
                        };
                        let (key, timestamp, signature) = (
                            header("idempotency-key"),
                            header("x-cix-timestamp"),
                            header("x-cix-signature"),
                        );
                        let body = http_body_util::BodyExt::collect(req.into_body())
                            .await
                            .unwrap()
                            .to_bytes()
                            .to_vec();
                        tx.send_modify(|v| {
                            v.push(Received {
                                key,
                                timestamp,
                                signature,
                                body,
                            })
                        });
                        let (status, location) = script.lock().pop_front().unwrap_or((200, None));
                        let mut answer = Response::builder().status(status);
                        if let Some(l) = location {
                            answer = answer.header("location", l);
                        }
                        Ok::<_, Infallible>(answer.body(Full::new(Bytes::new())).unwrap())
                    }
                });
                let tls = tls.clone();
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            let stream = tls.accept(stream).await.unwrap();
                            http.serve_connection(TokioIo::new(stream), service).await
                        }
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                    }
                });
            }
        });
        Receiver { addr, got }
    }

    impl Receiver {
        async fn until(&mut self, n: usize) -> Vec<Received> {
            tokio::time::timeout(Duration::from_secs(30), self.got.wait_for(|v| v.len() >= n))
                .await
                .expect("the receiver got the requests in time")
                .unwrap()
                .clone()
        }
    }

    fn secret_file(dir: &Path) -> PathBuf {
        let path = dir.join("webhook.secret");
        crate::keys::file::write_new_private(&path, SECRET).unwrap();
        path
    }

    fn webhook(dir: &Path, addr: SocketAddr, log: &Arc<AlertLog>) -> Arc<Webhook> {
        let url: http::Uri = format!("http://{addr}/hook?token=x").parse().unwrap();
        let mut w = Webhook::open(
            url,
            &secret_file(dir),
            None,
            Duration::from_secs(5),
            log.clone(),
            Clock::fixed(1_800_000_000.0),
        )
        .unwrap();
        // Retries in tests come fast; the doubling is the same.
        w.backoff_min = Duration::from_millis(20);
        Arc::new(w)
    }

    /// Until the webhook's cursor reaches `n`.
    async fn cursor_at(log: &AlertLog, n: u64) {
        let mut newest = log.subscribe();
        tokio::time::timeout(Duration::from_secs(30), async {
            while log.cursor(SINK).unwrap() < n {
                // The cursor moves after the receiver answers: poll it.
                let _ = tokio::time::timeout(Duration::from_millis(10), newest.changed()).await;
            }
        })
        .await
        .expect("the cursor moved in time");
    }

    fn check_signed(r: &Received) -> serde_json::Value {
        let ts: i64 = r.timestamp.parse().unwrap();
        assert_eq!(ts, 1_800_000_000, "the node's clock");
        // The receiver's own HMAC over "timestamp.body".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"a webhook secret of some length").unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(&r.body);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(r.signature, want);
        serde_json::from_slice(&r.body).unwrap()
    }

    #[tokio::test]
    async fn events_are_delivered_in_order_and_signed() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AlertLog::open(&dir.path().join("alerts")).unwrap());
        log.append((1..=3).map(|a| event(a, 10)).collect(), vec![])
            .unwrap();
        let mut server = receiver(vec![]).await;
        let w = webhook(dir.path(), server.addr, &log);
        let stop = CancellationToken::new();
        tokio::spawn(w.clone().run(stop.clone()));
        server.until(3).await;
        log.append(vec![event(4, 11)], vec![]).unwrap();
        let got = server.until(4).await;
        for (i, r) in got.iter().enumerate() {
            let n = i as u64 + 1;
            assert_eq!(r.key, n.to_string());
            let j = check_signed(r);
            assert_eq!(j["number"], n);
            assert_eq!(j["watch_reference"], format!("cust-{n}"));
        }
        cursor_at(&log, 4).await;
        let s = w.status();
        assert_eq!((s.pending, s.delivered, s.failures), (0, 4, 0));
        stop.cancel();
    }

    #[tokio::test]
    async fn a_failing_receiver_gets_the_same_event_until_it_acknowledges() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AlertLog::open(&dir.path().join("alerts")).unwrap());
        log.append((1..=2).map(|a| event(a, 10)).collect(), vec![])
            .unwrap();
        let mut server = receiver(vec![(500, None), (500, None), (500, None)]).await;
        let w = webhook(dir.path(), server.addr, &log);
        let stop = CancellationToken::new();
        tokio::spawn(w.clone().run(stop.clone()));
        let got = server.until(5).await;
        let keys: Vec<&str> = got.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["1", "1", "1", "1", "2"]);
        assert_eq!(got[0].body, got[3].body, "the same event, retried");
        cursor_at(&log, 2).await;
        let s = w.status();
        assert_eq!((s.pending, s.delivered, s.failures), (0, 2, 3));
        assert!(s.last_error.contains("500"), "{}", s.last_error);
        assert!(
            !s.last_error.contains("token=x"),
            "no query: {}",
            s.last_error
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_the_event_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AlertLog::open(&dir.path().join("alerts")).unwrap());
        log.append(vec![event(1, 10)], vec![]).unwrap();
        let elsewhere = receiver(vec![]).await;
        let to = format!("http://{}/stolen", elsewhere.addr);
        let mut server = receiver(vec![(302, Some(to))]).await;
        let w = webhook(dir.path(), server.addr, &log);
        let stop = CancellationToken::new();
        tokio::spawn(w.clone().run(stop.clone()));
        let got = server.until(2).await;
        assert_eq!(got[0].key, "1");
        assert_eq!(got[1].key, "1");
        cursor_at(&log, 1).await;
        assert!(
            elsewhere.got.borrow().is_empty(),
            "the redirect's target got nothing"
        );
        let s = w.status();
        assert_eq!((s.delivered, s.failures), (1, 1));
        assert!(s.last_error.contains("302"), "{}", s.last_error);
        stop.cancel();
    }

    #[tokio::test]
    async fn the_cursor_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut server = receiver(vec![]).await;
        {
            let log = Arc::new(AlertLog::open(&dir.path().join("alerts")).unwrap());
            log.append((1..=2).map(|a| event(a, 10)).collect(), vec![])
                .unwrap();
            let stop = CancellationToken::new();
            let task = tokio::spawn(webhook(dir.path(), server.addr, &log).run(stop.clone()));
            server.until(2).await;
            cursor_at(&log, 2).await;
            stop.cancel();
            task.await.unwrap();
        }
        std::fs::remove_file(dir.path().join("webhook.secret")).unwrap();
        let log = Arc::new(AlertLog::open(&dir.path().join("alerts")).unwrap());
        log.append(vec![event(3, 11)], vec![]).unwrap();
        let w = webhook(dir.path(), server.addr, &log);
        assert_eq!(w.status().pending, 1);
        let stop = CancellationToken::new();
        tokio::spawn(w.run(stop.clone()));
        cursor_at(&log, 3).await;
        let keys: Vec<String> = server.until(3).await.into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["1", "2", "3"], "nothing acknowledged is sent again");
        stop.cancel();
    }

    /// Over https, the receiver's certificate is checked against `ca_file`
    /// (here a TLS 1.2 receiver, the oldest version taken).
    #[tokio::test]
    async fn https_delivers_to_a_receiver_certified_by_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node");
        crate::testbed::init::init(
            &node,
            &crate::testbed::init::InitOptions {
                node_id: "receiver",
                listen: "127.0.0.1:0",
                ..Default::default()
            },
        )
        .unwrap();
        let certs = crate::tls::load_certs(&node.join("tls/node.crt")).unwrap();
        let key = crate::tls::load_key(&node.join("tls/node.key")).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let mut server = receiver_on(vec![], Some(acceptor)).await;
        let log = Arc::new(AlertLog::open(&dir.path().join("alerts")).unwrap());
        log.append(vec![event(1, 10)], vec![]).unwrap();
        let url: http::Uri = format!("https://{}/hook", server.addr).parse().unwrap();
        let w = Arc::new(
            Webhook::open(
                url,
                &secret_file(dir.path()),
                Some(&node.join("tls/ca.crt")),
                Duration::from_secs(5),
                log.clone(),
                Clock::fixed(1_800_000_000.0),
            )
            .unwrap(),
        );
        let stop = CancellationToken::new();
        tokio::spawn(w.run(stop.clone()));
        let got = server.until(1).await;
        check_signed(&got[0]);
        cursor_at(&log, 1).await;
        stop.cancel();
    }

    #[test]
    fn the_secret_file_must_be_private_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, SECRET).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = read_secret(&path).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
        let short = dir.path().join("short");
        crate::keys::file::write_new_private(&short, b"tiny\n").unwrap();
        let e = read_secret(&short).unwrap_err().to_string();
        assert!(
            e.contains("at least 16 bytes") && !e.contains("tiny"),
            "{e}"
        );
    }

    #[test]
    fn the_url_is_shown_without_user_info_or_query() {
        let url: http::Uri = "https://cases.example:8443/cix/hook?key=s3cret"
            .parse()
            .unwrap();
        assert_eq!(shown(&url), "https://cases.example:8443/cix/hook");
    }
}
