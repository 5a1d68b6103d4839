//! Alert delivery end to end, with real node processes over real mutual
//! TLS: the webhook POSTing to a real HTTP receiver on loopback (retried
//! after a 5xx and after a redirect it never follows, signed as README's
//! "Alerts" section tells a receiver to verify, never carrying a raw
//! value); a key rotation whose rekeyed indicators join the alerts already
//! open instead of raising them again; and a subscriber that reconnects
//! with its cursor, getting every later event once and in order, or
//! OUT_OF_RANGE once retention has passed it.

mod support;

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cix::{
    keys::TokenKey,
    proto::{self, AlertAction, AlertCause, AlertEvent, Kind, MatchStatus, WatchAddStatus},
};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use support::*;
use tokio::sync::watch;

// ---------------------------------------------------------------------------
// Watchlist and alert log helpers.

/// Registers `(reference, e-mail)` rows; the status of each.
async fn watch(n: &TestNode, rows: &[(&str, &str)]) -> Vec<WatchAddStatus> {
    let items = rows
        .iter()
        .map(|(r, v)| proto::WatchItem {
            reference: r.to_string(),
            item: Some(proto::watch_item::Item::Identifier(id(Kind::Email, v))),
        })
        .collect();
    let r = watchlist(n)
        .await
        .add(proto::WatchAddRequest { items })
        .await
        .unwrap()
        .into_inner();
    r.results.iter().map(|r| r.status()).collect()
}

fn emails(values: &[&str]) -> Vec<proto::ContributionItem> {
    values.iter().map(|v| item(Kind::Email, v)).collect()
}

/// (number, action, cause, reference) of each event.
fn brief(events: &[AlertEvent]) -> Vec<(u64, AlertAction, AlertCause, String)> {
    events
        .iter()
        .map(|e| (e.number, e.action(), e.cause(), e.watch_reference.clone()))
        .collect()
}

/// Polls Status until `done` holds (bounded), and returns it.
async fn status_until(
    n: &TestNode,
    what: &str,
    done: impl Fn(&proto::StatusResponse) -> bool,
) -> proto::StatusResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = n.status().await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never {what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// A webhook receiver: a real HTTP/1.1 server on 127.0.0.1 (hyper).

/// One request as the receiver got it.
#[derive(Clone, Debug)]
struct Got {
    method: String,
    target: String,
    /// Every header, name lower-cased as HTTP/1 allows.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The status it was answered with.
    answered: u16,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct Receiver {
    addr: SocketAddr,
    got: watch::Receiver<Vec<Got>>,
}

/// A receiver answering each request with the next scripted status (and
/// `Location`, if given), then 200 once the script is done.
async fn receiver(script: Vec<(u16, Option<String>)>) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, got) = watch::channel(Vec::new());
    let tx = Arc::new(tx);
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tx, script) = (tx.clone(), script.clone());
            let service = service_fn(move |req: Request<Incoming>| {
                let (tx, script) = (tx.clone(), script.clone());
                async move {
                    let method = req.method().to_string();
                    let target = req.uri().to_string();
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(n, v)| {
                            (
                                n.as_str().to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect();
                    let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
                    let (status, location) =
                        script.lock().unwrap().pop_front().unwrap_or((200, None));
                    tx.send_modify(|v| {
                        v.push(Got {
                            method,
                            target,
                            headers,
                            body,
                            answered: status,
                        })
                    });
                    let mut answer = Response::builder().status(status);
                    if let Some(l) = location {
                        answer = answer.header("location", l);
                    }
                    Ok::<_, Infallible>(answer.body(Full::new(Bytes::new())).unwrap())
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Receiver { addr, got }
}

impl Receiver {
    /// Once `n` requests came (bounded wait): all of them.
    async fn until(&mut self, n: usize) -> Vec<Got> {
        let waited =
            tokio::time::timeout(Duration::from_secs(30), self.got.wait_for(|v| v.len() >= n))
                .await
                .map(|got| got.unwrap().clone());
        match waited {
            Ok(got) => got,
            Err(_) => {
                let got = self.got.borrow().clone();
                panic!(
                    "the receiver got {} requests, not {n}, in 30 s: {got:?}",
                    got.len()
                )
            }
        }
    }
}

/// A query parameter of the webhook URL: the receiver sees it, the node's
/// logs and Status never do.
const URL_QUERY_SECRET: &str = "hook-query-s3cret";

/// Writes a 0600 secret file (with the trailing newline an editor or
/// `echo` leaves, which the node drops) and points the node's webhook at
/// `addr`. Returns the secret file's path.
fn configure_webhook(n: &TestNode, addr: SocketAddr) -> PathBuf {
    let path = n.dir.join("keys/webhook.secret");
    cix::keys::file::write_new_private(&path, b"receiver-shared-secret-0123456789\n").unwrap();
    n.append_config(&format!(
        "\n[alerts.webhook]\nurl = \"http://{addr}/cix/hook?key={URL_QUERY_SECRET}\"\nsecret_file = {:?}\ntimeout = \"5s\"\n",
        path.display().to_string()
    ));
    path
}

/// What README's receiver does: the secret is the file's bytes without
/// trailing CR/LF; the HMAC-SHA256 over the timestamp, a dot and the raw
/// body is compared (in constant time) with `X-Cix-Signature`; a timestamp
/// more than 300 s away is refused.
fn verify(secret_file: &Path, r: &Got) -> Result<(), String> {
    let file = std::fs::read(secret_file).unwrap();
    let end = file
        .iter()
        .rposition(|b| *b != b'\r' && *b != b'\n')
        .map_or(0, |i| i + 1);
    let secret = &file[..end];
    let ts = r.header("X-Cix-Timestamp");
    let ts_n: i64 = ts.parse().map_err(|_| format!("timestamp {ts:?}"))?;
    let now = cix::time::system_now().unwrap();
    if (now - ts_n).abs() > 300 {
        return Err(format!("timestamp {ts_n} is {}s away", now - ts_n));
    }
    let sig = r.header("X-Cix-Signature");
    let hex_sig = sig
        .strip_prefix("sha256=")
        .ok_or_else(|| format!("signature {sig:?}"))?;
    let mac_bytes = hex::decode(hex_sig).map_err(|e| format!("signature hex: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    mac.verify_slice(&mac_bytes)
        .map_err(|_| "the signature does not verify".to_string())
}

/// Neither a raw value in any request (target, headers, body) nor in the
/// node's logs; nor the URL's query in the logs.
fn assert_no_raw_values(n: &TestNode, got: &[Got], values: &[&str]) {
    for r in got {
        let mut text = format!("{} {}\n", r.method, r.target);
        for (k, v) in &r.headers {
            text.push_str(&format!("{k}: {v}\n"));
        }
        for v in values {
            assert!(!text.contains(v), "{v} in a request's headers: {text}");
            assert!(
                !contains(&r.body, v.as_bytes()),
                "{v} in a request's body: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    let logs = n.logs();
    for v in values {
        assert!(!logs.contains(v), "{v} in the node's logs");
    }
    assert!(
        !logs.contains(URL_QUERY_SECRET),
        "the webhook URL's query in the node's logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_retries_after_503_with_the_same_signed_event_then_delivers_the_rest_in_order()
{
    let mut rx = receiver(vec![(503, None), (503, None)]).await;
    let mut n = TestNode::new("bank-a");
    let secret = configure_webhook(&n, rx.addr);
    n.start();
    let values = [
        "hook.one@delivery.example",
        "hook.two@delivery.example",
        "hook.three@delivery.example",
    ];
    let refs = ["WH-0001", "WH-0002", "WH-0003"];
    let rows: Vec<(&str, &str)> = refs.iter().copied().zip(values).collect();
    assert_eq!(watch(&n, &rows).await, vec![WatchAddStatus::Added; 3]);
    let mut c = n.clients().await;
    let mut case = emails(&values);
    case.push(item(Kind::Email, "not.watched@delivery.example"));
    c.contribution
        .contribute(contribute_req(case, "CASE-HOOK"))
        .await
        .unwrap();

    // The first attempt is refused: all three events wait for it.
    rx.until(1).await;
    let s = n.status().await;
    assert_eq!(s.webhook_pending, 3, "{s:?}");
    assert_eq!(s.webhook_delivered, 0);

    let got = rx.until(5).await;
    let s = status_until(&n, "webhook pending back to 0", |s| s.webhook_pending == 0).await;
    assert_eq!((s.webhook_delivered, s.webhook_failures), (3, 2), "{s:?}");
    assert!(s.webhook_last_error.contains("503"), "{s:?}");
    assert!(
        !s.webhook_last_error.contains(URL_QUERY_SECRET),
        "the URL's query in Status: {}",
        s.webhook_last_error
    );
    let got_now = rx.got.borrow().clone();
    assert_eq!(
        got_now.len(),
        5,
        "nothing sent after acceptance: {got_now:?}"
    );

    let keys: Vec<&str> = got.iter().map(|r| r.header("Idempotency-Key")).collect();
    assert_eq!(keys, ["1", "1", "1", "2", "3"]);
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [503, 503, 200, 200, 200]
    );
    assert_eq!(got[0].body, got[1].body, "the same event, retried");
    assert_eq!(got[0].body, got[2].body, "the same event, retried");
    let mut seen_refs = Vec::new();
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, format!("/cix/hook?key={URL_QUERY_SECRET}"));
        assert_eq!(r.header("content-type"), "application/json");
        if let Err(e) = verify(&secret, r) {
            panic!("request {}: {e}", r.header("Idempotency-Key"));
        }
        let j = r.json();
        assert_eq!(j["number"].to_string(), r.header("Idempotency-Key"));
        assert_eq!(j["action"], "raised");
        assert_eq!(j["cause"], "contributed");
        assert_eq!(j["origin"], "bank-a");
        assert_eq!(j["case_ref"], "CASE-HOOK");
        assert_eq!(j["kind"], "email");
        assert_eq!(j["tier"], "confirmed");
        assert_eq!(j["epoch"], 1);
        assert!(j["valid_until"].is_null(), "{j}");
        if r.answered == 200 {
            seen_refs.push(j["watch_reference"].as_str().unwrap().to_string());
        }
    }
    // The accepted deliveries: strictly increasing numbers, each event once.
    let accepted: Vec<u64> = got
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.json()["number"].as_u64().unwrap())
        .collect();
    assert_eq!(accepted, [1, 2, 3]);
    seen_refs.sort();
    assert_eq!(seen_refs, refs);
    // A tampered body does not verify with the same headers.
    let mut forged = got[2].clone();
    forged.body = String::from_utf8(forged.body)
        .unwrap()
        .replacen("\"raised\"", "\"updated\"", 1)
        .into_bytes();
    assert_ne!(forged.body, got[2].body);
    assert!(verify(&secret, &forged).is_err(), "the check can fail");

    assert!(n.stop());
    assert_no_raw_values(&n, &got, &values);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_does_not_follow_a_redirect_and_sends_the_same_event_again() {
    let elsewhere = receiver(vec![]).await;
    let to = format!("http://{}/stolen", elsewhere.addr);
    let mut rx = receiver(vec![(302, Some(to))]).await;
    let mut n = TestNode::new("bank-a");
    let secret = configure_webhook(&n, rx.addr);
    n.start();
    let value = "redirected@delivery.example";
    assert_eq!(
        watch(&n, &[("WH-REDIRECT", value)]).await,
        vec![WatchAddStatus::Added]
    );
    let mut c = n.clients().await;
    c.contribution
        .contribute(contribute_req(emails(&[value]), "CASE-302"))
        .await
        .unwrap();
    let got = rx.until(2).await;
    let s = status_until(&n, "webhook pending back to 0", |s| s.webhook_pending == 0).await;
    assert_eq!((s.webhook_delivered, s.webhook_failures), (1, 1), "{s:?}");
    assert!(
        s.webhook_last_error.contains("302") && s.webhook_last_error.contains("not followed"),
        "{s:?}"
    );
    assert_eq!(
        got.iter()
            .map(|r| (r.header("Idempotency-Key"), r.answered))
            .collect::<Vec<_>>(),
        [("1", 302), ("1", 200)]
    );
    assert_eq!(got[0].body, got[1].body, "the same event, sent again");
    for r in &got {
        verify(&secret, r).unwrap();
        assert_eq!(r.json()["watch_reference"], "WH-REDIRECT");
    }
    assert!(
        elsewhere.got.borrow().is_empty(),
        "the redirect's target got {:?}",
        elsewhere.got.borrow()
    );
    assert_eq!(rx.got.borrow().len(), 2);
    assert!(n.stop());
    assert_no_raw_values(&n, &got, &[value]);
}

// ---------------------------------------------------------------------------
// A key rotation: the rekeyed indicator joins the alert already open.

const LIAISON: usize = 0;
const BANK: usize = 1;

/// The epochs of `value`'s hits at node `i`, sorted.
async fn epochs_hit(co: &Coalition, i: usize, value: &str) -> Vec<u32> {
    let mut c = co.nodes[i].clients().await;
    let mut e: Vec<u32> = match_one(&mut c, Kind::Email, value)
        .await
        .hits
        .iter()
        .map(|h| h.epoch)
        .collect();
    e.sort();
    e
}

async fn wait_epochs_hit(co: &Coalition, i: usize, value: &str, want: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = epochs_hit(co, i, value).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{value} never hit under epochs {want:?} at {}: {got:?}",
            co.ids[i]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_under_a_second_epoch_raises_no_alert_again_and_the_alert_outlives_the_first_epoch()
{
    let mut co = Coalition::new(&["liaison-a", "bank-b"]);
    let now = cix::time::Clock::system().now();
    for n in &mut co.nodes {
        n.use_test_clock(now);
    }
    co.start_all();
    // EARLY: registered again before its indicator is rekeyed; LATE: after;
    // LEFT: never rekeyed; NEW: first registered after the rotation.
    let values = [
        "rekey.early@rotation.example",
        "rekey.late@rotation.example",
        "left.behind@rotation.example",
        "new.entry@rotation.example",
    ];
    let refs = ["ROT-EARLY", "ROT-LATE", "ROT-LEFT", "ROT-NEW"];
    let book: Vec<(&str, &str)> = refs.iter().copied().zip(values).collect();
    let bank = &co.nodes[BANK];
    assert_eq!(
        watch(bank, &book[..3]).await,
        vec![WatchAddStatus::Added; 3]
    );
    co.contribute(LIAISON, emails(&values), "CASE-ROT").await;
    let mut sub = subscribe(bank, 0).await.unwrap();
    let mut raised = next(&mut sub, 3).await;
    raised.sort_by(|a, b| a.watch_reference.cmp(&b.watch_reference));
    for (e, r) in raised.iter().zip(["ROT-EARLY", "ROT-LATE", "ROT-LEFT"]) {
        assert_eq!(
            (e.action(), e.cause(), e.watch_reference.as_str(), e.epoch),
            (AlertAction::Raised, AlertCause::Replicated, r, 1)
        );
        assert_eq!(
            (e.origin.as_str(), e.case_ref.as_str()),
            ("liaison-a", "CASE-ROT")
        );
    }
    drop(sub);

    // The rotation: both nodes hold the epoch-2 key; the list adds epoch 2
    // and ends epoch 1 at `end1` (on the nodes' clocks, which stand still
    // until the test moves them).
    let key2 = TokenKey::generate();
    let key2_path = co.tmp.path().join("epoch-2.key");
    key2.write_new(&key2_path).unwrap();
    for i in [LIAISON, BANK] {
        co.nodes[i].append_config(&format!(
            "\n[[token_epoch]]\nid = 2\nkey_file = {:?}\n",
            key2_path.display().to_string()
        ));
        co.nodes[i].restart();
    }
    let end1 = now + 600;
    let signed = co.next(|l| {
        l.epochs[0].valid_until = end1;
        l.epochs.push(proto::KeyEpoch {
            id: 2,
            valid_from: now - 1,
            valid_until: now + 365 * 86_400,
            key_sha256: key2.fingerprint(),
        });
    });
    co.publish(LIAISON, BANK, signed.clone()).await;
    co.publish(BANK, LIAISON, signed).await;
    co.wait_for_version(LIAISON, 2).await;
    co.wait_for_version(BANK, 2).await;
    let bank = &co.nodes[BANK];
    let s = bank.status().await;
    assert_eq!(s.epochs.iter().filter(|e| e.valid_now).count(), 2, "{s:?}");
    assert_eq!(s.watch_entries_lacking_newest_epoch, 3);

    assert_eq!(
        watch(bank, &book[..1]).await,
        vec![WatchAddStatus::Completed]
    );
    let r = co
        .rekey(
            LIAISON,
            vec![id(Kind::Email, values[0]), id(Kind::Email, values[1])],
        )
        .await;
    assert_eq!((r.rekeyed, r.current, r.epoch), (2, 0, 2));
    wait_epochs_hit(&co, BANK, values[0], &[1, 2]).await;
    wait_epochs_hit(&co, BANK, values[1], &[1, 2]).await;
    assert_eq!(epochs_hit(&co, BANK, values[2]).await, vec![1]);
    // The whole book again, NEW with it: its `registered` raise comes in
    // the same round as whatever the others' registration does.
    let bank = &co.nodes[BANK];
    assert_eq!(
        watch(bank, &book).await,
        vec![
            WatchAddStatus::AlreadyPresent,
            WatchAddStatus::Completed,
            WatchAddStatus::Completed,
            WatchAddStatus::Added,
        ]
    );
    let mut sub = subscribe(bank, 3).await.unwrap();
    let e = next(&mut sub, 1).await;
    assert_eq!(
        brief(&e),
        [(
            4,
            AlertAction::Raised,
            AlertCause::Registered,
            "ROT-NEW".into()
        )]
    );
    assert_eq!(e[0].epoch, 1);
    nothing_more(&mut sub).await;
    assert_eq!(bank.status().await.alerts_open, 4);

    // Epoch 1 ends: what only it holds is withdrawn; the rekeyed alerts
    // stay open on their epoch-2 members, neither withdrawn nor raised again.
    for n in &co.nodes {
        n.set_time(end1);
    }
    let mut w = next(&mut sub, 2).await;
    w.sort_by(|a, b| a.watch_reference.cmp(&b.watch_reference));
    assert_eq!(
        w.iter()
            .map(|e| (e.action(), e.cause(), e.watch_reference.as_str()))
            .collect::<Vec<_>>(),
        [
            (AlertAction::Withdrawn, AlertCause::EpochEnded, "ROT-LEFT"),
            (AlertAction::Withdrawn, AlertCause::EpochEnded, "ROT-NEW"),
        ]
    );
    nothing_more(&mut sub).await;
    let all = list_all(bank).await;
    assert_eq!(
        all.iter().map(|e| e.number).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6],
        "{:?}",
        brief(&all)
    );
    for r in ["ROT-EARLY", "ROT-LATE"] {
        let of: Vec<AlertAction> = all
            .iter()
            .filter(|e| e.watch_reference == r)
            .map(|e| e.action())
            .collect();
        assert_eq!(of, [AlertAction::Raised], "{r}: {:?}", brief(&all));
    }
    let s = bank.status().await;
    assert_eq!((s.alerts_open, s.alerts_raised), (2, 1), "{s:?}");
    // The epoch-2 copies are what still match.
    assert_eq!(epochs_hit(&co, BANK, values[0]).await, vec![2]);
    assert_eq!(
        status_of(&match_one(&mut bank.clients().await, Kind::Email, values[2]).await),
        MatchStatus::NoMatch
    );
}

// ---------------------------------------------------------------------------
// A subscriber's cursor across reconnects, and past retention.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_reconnecting_with_its_cursor_gets_every_later_event_once_until_retention_passes_it(
) {
    let t0 = cix::time::system_now().unwrap();
    let mut n = TestNode::new("bank-a");
    n.use_test_clock(t0);
    n.append_config("\n[store]\npurge_interval = \"1s\"\n\n[alerts]\nretention = \"1h\"\n");
    n.start();
    let values: Vec<String> = (1..=6)
        .map(|i| format!("cursor.{i}@delivery.example"))
        .collect();
    let refs: Vec<String> = (1..=6).map(|i| format!("CUR-{i}")).collect();
    let rows: Vec<(&str, &str)> = refs
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(String::as_str))
        .collect();
    assert_eq!(watch(&n, &rows).await, vec![WatchAddStatus::Added; 6]);
    let mut c = n.clients().await;
    let contribute = |at: &[usize]| {
        let items = at.iter().map(|&i| item(Kind::Email, &values[i])).collect();
        contribute_req(items, "CASE-CUR")
    };

    let mut sub = subscribe(&n, 0).await.unwrap();
    c.contribution
        .contribute(contribute(&[0, 1]))
        .await
        .unwrap();
    let first = next(&mut sub, 2).await;
    assert_eq!(first.iter().map(|e| e.number).collect::<Vec<_>>(), [1, 2]);
    let last = first.last().unwrap().number;
    drop(sub);

    // Disconnected: three more events.
    c.contribution.contribute(contribute(&[2])).await.unwrap();
    c.contribution.contribute(contribute(&[3])).await.unwrap();
    c.contribution
        .retract(proto::RetractRequest {
            identifiers: vec![id(Kind::Email, &values[0])],
            reason: "cleared".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    status_until(&n, "five events", |s| s.alerts_newest == 5).await;

    let mut sub = subscribe(&n, last).await.unwrap();
    let missed = next(&mut sub, 3).await;
    assert_eq!(
        brief(&missed),
        [
            (
                3,
                AlertAction::Raised,
                AlertCause::Contributed,
                "CUR-3".into()
            ),
            (
                4,
                AlertAction::Raised,
                AlertCause::Contributed,
                "CUR-4".into()
            ),
            (
                5,
                AlertAction::Withdrawn,
                AlertCause::Retracted,
                "CUR-1".into()
            ),
        ]
    );
    // Then live, on the same stream.
    c.contribution.contribute(contribute(&[4])).await.unwrap();
    let live = next(&mut sub, 1).await;
    assert_eq!(
        brief(&live),
        [(
            6,
            AlertAction::Raised,
            AlertCause::Contributed,
            "CUR-5".into()
        )]
    );
    nothing_more(&mut sub).await;
    drop(sub);

    // Half an hour on, one more event; an hour after the first ones, those
    // are past retention (no sink holds them) and purged.
    n.set_time(t0 + 1_800);
    c.contribution.contribute(contribute(&[5])).await.unwrap();
    status_until(&n, "seven events", |s| s.alerts_newest == 7).await;
    n.set_time(t0 + 3_600 + 60);
    let s = status_until(&n, "events 1 to 6 purged", |s| s.alerts_oldest == 7).await;
    assert_eq!(s.alerts_newest, 7);

    for after in [0, 5] {
        let e = subscribe(&n, after).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::OutOfRange, "after {after}: {e:?}");
        assert!(
            e.message().contains("the oldest retained event is 7"),
            "{}",
            e.message()
        );
    }
    let e = alerts(&n)
        .await
        .list(proto::ListAlertsRequest {
            after: 0,
            limit: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange);
    // A cursor at the oldest retained event's predecessor still reads on.
    let mut sub = subscribe(&n, 6).await.unwrap();
    let kept = next(&mut sub, 1).await;
    assert_eq!(
        brief(&kept),
        [(
            7,
            AlertAction::Raised,
            AlertCause::Contributed,
            "CUR-6".into()
        )]
    );
    assert_eq!(kept[0].recorded_at.as_ref().unwrap().seconds, t0 + 1_800);
}
