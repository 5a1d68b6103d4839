//! The member API end to end: a real `cix serve` process, real mutual TLS,
//! real sled on disk.

mod support;

use std::time::Duration;

use cix::proto::{self, Kind};
use support::*;
use tonic::Code;

const EMAIL: &str = "Payer.Example@Mail.Example";
const IBAN: &str = "GB82 WEST 1234 5698 7654 32";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contribute_then_match_gives_a_hit_with_its_metadata() {
    let mut node = TestNode::new("liaison-a");
    node.start();
    let mut c = node.clients().await;
    let mut req = contribute_req(
        vec![item(Kind::Email, EMAIL), item(Kind::Iban, IBAN)],
        "CASE-2026-17",
    );
    req.tier = proto::Tier::Probable as i32;
    let now = cix::time::Clock::system().now();
    let until = now + 3600;
    req.valid_until = Some(prost_types::Timestamp {
        seconds: until,
        nanos: 0,
    });
    let resp = c.contribution.contribute(req).await.unwrap().into_inner();
    assert_eq!(resp.results.len(), 2);
    assert!(resp
        .results
        .iter()
        .all(|r| r.status == proto::ItemStatus::Stored as i32));
    assert_eq!((resp.first_seq, resp.last_seq), (1, 2));

    // Another spelling of the same e-mail normalizes to the same token.
    let r = match_one(&mut c, Kind::Email, "  payer.example@mail.example. ").await;
    assert_eq!(status_of(&r), proto::MatchStatus::Match);
    assert_eq!(r.hits.len(), 1);
    let h = &r.hits[0];
    assert_eq!(h.origin, "liaison-a");
    assert_eq!(h.case_ref, "CASE-2026-17");
    assert_eq!(h.tier, proto::Tier::Probable as i32);
    assert_eq!(h.kind, Kind::Email as i32);
    assert_eq!(h.epoch, 1);
    assert_eq!(h.valid_until.as_ref().unwrap().seconds, until);
    let created = h.created_at.as_ref().unwrap().seconds;
    assert!((now - created).abs() < 60);

    // Same token, other kind: no match (the kind is part of the token).
    let r = match_one(&mut c, Kind::Domain, "mail.example").await;
    assert_eq!(status_of(&r), proto::MatchStatus::NoMatch);

    // Contributing again is idempotent.
    let again = c
        .contribution
        .contribute(contribute_req(
            vec![item(Kind::Email, EMAIL)],
            "CASE-2026-17",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.results[0].status,
        proto::ItemStatus::AlreadyPresent as i32
    );
    assert_eq!((again.first_seq, again.last_seq), (0, 0));

    // Pre-hashed screening finds the token the node returned.
    let token = resp.results[1].token.clone();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(proto::MatchTokensRequest {
        tokens: [token.clone(), vec![0u8; 32]].concat(),
    })
    .await
    .unwrap();
    drop(tx);
    let mut stream = c
        .screening
        .match_tokens(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let m = stream.message().await.unwrap().unwrap();
    assert_eq!(status_of(&m.results[0]), proto::MatchStatus::Match);
    assert_eq!(m.results[0].hits[0].kind, Kind::Iban as i32);
    assert_eq!(status_of(&m.results[1]), proto::MatchStatus::NoMatch);
    assert!(stream.message().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retract_expire_and_restart() {
    let mut node = TestNode::new("liaison-b");
    let t0 = cix::time::Clock::system().now();
    node.use_test_clock(t0);
    node.start();
    let mut c = node.clients().await;
    c.contribution
        .contribute(contribute_req(
            vec![
                item(Kind::Email, EMAIL),
                item(Kind::Phone, "+44 20 7946 0000"),
            ],
            "CASE-R",
        ))
        .await
        .unwrap();
    // Expires two seconds from now (the node's time).
    let mut short = contribute_req(
        vec![item(Kind::Domain, "short-lived.example")],
        "CASE-SHORT",
    );
    short.valid_until = Some(prost_types::Timestamp {
        seconds: t0 + 2,
        nanos: 0,
    });
    c.contribution.contribute(short).await.unwrap();
    assert_eq!(
        status_of(&match_one(&mut c, Kind::Domain, "short-lived.example").await),
        proto::MatchStatus::Match
    );

    // Retract by identifier.
    let r = c
        .contribution
        .retract(proto::RetractRequest {
            identifiers: vec![id(Kind::Email, EMAIL)],
            reason: "case closed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.retracted, 1);
    assert_eq!(r.results[0].status, proto::ItemStatus::Retracted as i32);
    assert_eq!(
        status_of(&match_one(&mut c, Kind::Email, EMAIL).await),
        proto::MatchStatus::NoMatch
    );
    assert_eq!(
        status_of(&match_one(&mut c, Kind::Phone, "+442079460000").await),
        proto::MatchStatus::Match
    );

    node.set_time(t0 + 3);
    assert_eq!(
        status_of(&match_one(&mut c, Kind::Domain, "short-lived.example").await),
        proto::MatchStatus::NoMatch,
        "expired indicators do not match"
    );

    // Restart: the index is rebuilt from the store and says the same.
    drop(c);
    node.restart();
    let mut c = node.clients().await;
    assert_eq!(
        status_of(&match_one(&mut c, Kind::Phone, "0044 20 7946 0000").await),
        proto::MatchStatus::Match
    );
    assert_eq!(
        status_of(&match_one(&mut c, Kind::Email, EMAIL).await),
        proto::MatchStatus::NoMatch
    );
    assert_eq!(
        status_of(&match_one(&mut c, Kind::Domain, "short-lived.example").await),
        proto::MatchStatus::NoMatch
    );
    // A retracted indicator can be re-added; the log order decides.
    c.contribution
        .contribute(contribute_req(vec![item(Kind::Email, EMAIL)], "CASE-R2"))
        .await
        .unwrap();
    let r = match_one(&mut c, Kind::Email, EMAIL).await;
    assert_eq!(r.hits[0].case_ref, "CASE-R2");

    // Retract by case reference; extend by case reference.
    let ext = c
        .contribution
        .extend(proto::ExtendRequest {
            case_ref: "CASE-R".into(),
            valid_until: Some(prost_types::Timestamp {
                seconds: t0 + 7200,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ext.extended, 1,
        "only the phone is still active under CASE-R"
    );
    let r = c
        .contribution
        .retract(proto::RetractRequest {
            case_ref: "CASE-R".into(),
            reason: "closed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.retracted, 1);
    let s = c
        .admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.indicators, 1, "only CASE-R2's e-mail is active");
    assert_eq!(s.node_id, "liaison-b");
    assert_eq!(s.origins[0].last_seq, 7);
    assert!(node.stop());
}

/// The member listener's optional match limit, on a clock that stands
/// still until the test moves it: the refusals are exact, and a window
/// passes by setting the time, not by waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_limits_refill_by_the_nodes_clock() {
    let mut node = TestNode::new("bank-limit-clock");
    node.append_config("\n[limits]\nmatch_requests_per_second = 1\nmatch_burst = 2\n");
    let t0 = cix::time::Clock::system().now();
    node.use_test_clock(t0);
    node.start();
    let mut c = node.clients().await;
    let mut call = async || {
        c.screening
            .r#match(proto::MatchRequest {
                identifiers: vec![id(Kind::Domain, "limited.example")],
            })
            .await
            .map(|_| ())
    };
    call().await.unwrap();
    call().await.unwrap();
    let e = call().await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(cix::client::retry_hint(&e), Some(Duration::from_secs(1)));
    assert!(call().await.is_err(), "the clock has not moved");
    node.set_time(t0 + 1);
    call().await.unwrap();
    assert!(call().await.is_err(), "one call refilled per second");
    node.set_time(t0 + 60);
    call().await.unwrap();
    call().await.unwrap();
    assert!(call().await.is_err(), "the bucket holds the burst only");
    let s = node.status().await;
    assert_eq!(s.member_requests_limited, 4);
    assert!(node.logs().contains("member listener call refused"));
}

/// The match limit counts each message of a stream as one request, as a
/// unary call is: a stream is refused mid-way once the caller's burst is
/// spent, and its later messages are neither answered nor counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_limits_count_every_message_of_a_stream_and_refuse_it_mid_stream() {
    let mut node = TestNode::new("bank-limit-stream");
    node.append_config("\n[limits]\nmatch_requests_per_second = 1\nmatch_burst = 3\n");
    let t0 = cix::time::Clock::system().now();
    node.use_test_clock(t0);
    node.start();
    let mut c = node.clients().await;
    let request = || proto::MatchRequest {
        identifiers: vec![id(Kind::Domain, "streamed.example")],
    };
    let mut s = c
        .screening
        .match_stream(futures::stream::iter((0..6).map(move |_| request())))
        .await
        .unwrap()
        .into_inner();
    for n in 0..3 {
        let r = s
            .message()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("message {n}"));
        assert_eq!(r.results.len(), 1);
    }
    let e = s.message().await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("requests per second"),
        "{}",
        e.message()
    );
    assert_eq!(cix::client::retry_hint(&e), Some(Duration::from_secs(1)));
    assert!(
        matches!(s.message().await, Ok(None) | Err(_)),
        "the stream ended"
    );
    // The stream took the whole burst: a unary call is refused too.
    let e = c.screening.r#match(request()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    let st = node.status().await;
    assert_eq!(
        st.member_requests_limited, 2,
        "one refusal per stream, one per call"
    );
}

/// One invalid identifier of each kind, with the reason the spec gives.
const INVALID: &[(Kind, &str, &str)] = &[
    (Kind::Iban, "GB82 WEST 1234 5698 7654 33", "checksum"),
    (Kind::Iban, " - ", "empty"),
    (Kind::Pan, "4111 1111 1111 1112", "checksum"),
    (Kind::BankAccount, "US::123", "format"),
    (Kind::Merchant, "123456", "format"),
    (Kind::Wallet, "btc:", "format"),
    (Kind::Email, "not-an-email", "format"),
    (Kind::Phone, "020 7946 0000", "format"),
    (Kind::Domain, "https://example.com/", "format"),
    (Kind::Unspecified, "anything", "kind"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_items_are_answered_per_item_and_change_nothing() {
    let mut node = TestNode::new("bank-c");
    node.start();
    let mut c = node.clients().await;
    let before = c
        .admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();

    let items = INVALID.iter().map(|(k, v, _)| item(*k, v)).collect();
    let resp = c
        .contribution
        .contribute(contribute_req(items, "CASE-BAD"))
        .await
        .unwrap()
        .into_inner();
    for ((kind, _, reason), r) in INVALID.iter().zip(&resp.results) {
        assert_eq!(r.status, proto::ItemStatus::Invalid as i32, "{kind:?}");
        assert_eq!(&r.invalid_reason, reason, "{kind:?}");
        assert!(r.token.is_empty());
    }
    assert_eq!((resp.first_seq, resp.last_seq), (0, 0));

    let m = c
        .screening
        .r#match(proto::MatchRequest {
            identifiers: INVALID.iter().map(|(k, v, _)| id(*k, v)).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    for ((kind, _, reason), r) in INVALID.iter().zip(&m.results) {
        assert_eq!(status_of(r), proto::MatchStatus::Invalid, "{kind:?}");
        assert_eq!(&r.invalid_reason, reason, "{kind:?}");
    }

    // Pre-computed tokens: wrong length, unknown epoch.
    let bad_tokens = vec![
        proto::ContributionItem {
            item: Some(proto::contribution_item::Item::Token(
                proto::PrecomputedToken {
                    kind: Kind::Email as i32,
                    token: vec![1; 31],
                    epoch: 1,
                },
            )),
        },
        proto::ContributionItem {
            item: Some(proto::contribution_item::Item::Token(
                proto::PrecomputedToken {
                    kind: Kind::Email as i32,
                    token: vec![1; 32],
                    epoch: 9,
                },
            )),
        },
    ];
    let resp = c
        .contribution
        .contribute(contribute_req(bad_tokens, "CASE-BAD"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results[0].invalid_reason, "token_length");
    assert_eq!(resp.results[1].invalid_reason, "unknown_epoch");

    // Request-level rules: INVALID_ARGUMENT naming the field and the rule.
    let e = c
        .contribution
        .contribute(contribute_req(vec![item(Kind::Email, EMAIL)], "bad\tlabel"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("case_ref") && e.message().contains("printable ASCII"),
        "{}",
        e.message()
    );
    let mut past = contribute_req(vec![item(Kind::Email, EMAIL)], "CASE-PAST");
    past.valid_until = Some(prost_types::Timestamp {
        seconds: 1000,
        nanos: 0,
    });
    let e = c.contribution.contribute(past).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("valid_until"), "{}", e.message());
    let e = c
        .contribution
        .retract(proto::RetractRequest {
            case_ref: "X".into(),
            identifiers: vec![id(Kind::Email, EMAIL)],
            reason: "r".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("selector"));

    let after = c
        .admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.indicators, before.indicators);
    assert_eq!(after.batches, 0, "nothing was written");
    // Error messages never echo the raw value.
    assert!(!e.message().contains(EMAIL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_and_messages_are_refused() {
    let mut node = TestNode::new("bank-d");
    node.append_config("\n[limits]\nmax_batch_items = 100\nmax_message_bytes = 65536\n");
    node.start();
    let mut c = node.clients().await;
    let many: Vec<_> = (0..101)
        .map(|i| id(Kind::Domain, &format!("d{i}.example")))
        .collect();
    let e = c
        .screening
        .r#match(proto::MatchRequest {
            identifiers: many.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("identifiers") && e.message().contains("100"),
        "{}",
        e.message()
    );
    let e = c
        .contribution
        .contribute(contribute_req(
            many.iter().map(|i| item(Kind::Domain, &i.value)).collect(),
            "CASE-BIG",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);

    // Within the item limit but over the byte limit: refused by the transport.
    let big: Vec<_> = (0..10)
        .map(|i| {
            id(
                Kind::Email,
                &format!("{}{i}@example.test", "x".repeat(8000)),
            )
        })
        .collect();
    let e = c
        .screening
        .r#match(proto::MatchRequest { identifiers: big })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");

    // The stream refuses an oversized message and ends.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(proto::MatchRequest {
        identifiers: many[..3].to_vec(),
    })
    .await
    .unwrap();
    tx.send(proto::MatchRequest { identifiers: many })
        .await
        .unwrap();
    drop(tx);
    let mut s = c
        .screening
        .match_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().results.len(), 3);
    assert_eq!(
        s.message().await.unwrap_err().code(),
        Code::ResourceExhausted
    );

    let st = c
        .admin
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.batches, 0);
}

/// `cix.v1.Identifier.value` on the wire as raw bytes, for a client that
/// sends what a `string` must not hold.
#[derive(Clone, PartialEq, prost::Message)]
struct RawMatchRequest {
    #[prost(message, repeated, tag = "1")]
    identifiers: Vec<RawIdentifier>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawIdentifier {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifier_values_that_are_not_utf8_are_refused_naming_the_item() {
    use tonic::{codegen::http::uri::PathAndQuery, IntoRequest};
    let mut node = TestNode::new("bank-g");
    node.start();
    let mut c = node.clients().await;
    c.contribution
        .contribute(contribute_req(vec![item(Kind::Email, EMAIL)], "CASE-UTF8"))
        .await
        .unwrap();
    let raw = |values: &[&[u8]]| RawMatchRequest {
        identifiers: values
            .iter()
            .map(|v| RawIdentifier {
                kind: Kind::Email as i32,
                value: v.to_vec(),
            })
            .collect(),
    };
    let good = raw(&[EMAIL.as_bytes(), b"other@mail.example"]);
    let bad = raw(&[EMAIL.as_bytes(), b"payer\xff@mail.example"]);
    let codec = || tonic_prost::ProstCodec::<RawMatchRequest, proto::MatchResponse>::default();
    let mut grpc = tonic::client::Grpc::new(node.identity().channel().await.unwrap());
    let mut unary = async |req: &RawMatchRequest| {
        grpc.ready().await.unwrap();
        let path = PathAndQuery::from_static("/cix.v1.Screening/Match");
        grpc.unary(req.clone().into_request(), path, codec())
            .await
            .map(|r| r.into_inner())
    };

    // The same bytes as the proto's client sends: answered alike.
    let m = unary(&good).await.unwrap();
    let statuses: Vec<_> = m.results.iter().map(status_of).collect();
    assert_eq!(
        statuses,
        [proto::MatchStatus::Match, proto::MatchStatus::NoMatch]
    );
    let e = unary(&bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("identifiers[1].value") && e.message().contains("UTF-8"),
        "{}",
        e.message()
    );

    // The stream answers the good message, refuses the bad one and ends.
    grpc.ready().await.unwrap();
    let mut s = grpc
        .streaming(
            futures::stream::iter([good, bad, raw(&[EMAIL.as_bytes()])]).into_request(),
            PathAndQuery::from_static("/cix.v1.Screening/MatchStream"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().results.len(), 2);
    let e = s.message().await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("identifiers[1].value"),
        "{}",
        e.message()
    );
    assert!(s.message().await.unwrap_or(None).is_none());
    // Nothing echoes the value.
    assert!(!node.logs().contains("payer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_own_indicators() {
    let mut node = TestNode::new("liaison-e");
    node.start();
    let mut c = node.clients().await;
    let items = (0..25)
        .map(|i| item(Kind::Domain, &format!("site{i}.example")))
        .collect();
    c.contribution
        .contribute(contribute_req(items, "CASE-LIST"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let p = c
            .contribution
            .list(proto::ListRequest {
                page_size: 10,
                page_token: page_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(p.indicators.iter().map(|i| i.token.clone()));
        if p.next_page_token.is_empty() {
            break;
        }
        page_token = p.next_page_token;
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "pages are in token order without repeats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_standard_tools() {
    let mut node = TestNode::new("bank-f");
    node.start();
    let channel = node.identity().channel().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "cix.v1.Screening".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut s = refl
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        s.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "cix.v1.Screening",
        "cix.v1.Contribution",
        "cix.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_within_the_deadline_and_exits_zero() {
    let mut node = TestNode::new("bank-g");
    node.append_config("\n[shutdown]\ndrain_seconds = 1\n");
    node.start();
    let mut c = node.clients().await;
    c.contribution
        .contribute(contribute_req(vec![item(Kind::Email, EMAIL)], "CASE-DRAIN"))
        .await
        .unwrap();
    // A bulk stream the client never closes.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(proto::MatchRequest {
        identifiers: vec![id(Kind::Email, EMAIL)],
    })
    .await
    .unwrap();
    let mut s = c
        .screening
        .match_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status_of(&s.message().await.unwrap().unwrap().results[0]),
        proto::MatchStatus::Match
    );
    let stopped = tokio::task::spawn_blocking(move || {
        let ok = node.stop();
        (ok, node)
    });
    let (ok, mut node) = stopped.await.unwrap();
    assert!(ok, "node exited non-zero\n{}", node.logs());
    assert!(
        node.logs().contains("drain deadline passed"),
        "{}",
        node.logs()
    );
    assert!(node.logs().contains("store flushed; node stopped"));
    drop(tx);
    // Everything acknowledged is there after the cut.
    node.start();
    let mut c = node.clients().await;
    assert_eq!(
        status_of(&match_one(&mut c, Kind::Email, EMAIL).await),
        proto::MatchStatus::Match
    );
}

/// Contributions wait in the index's change map; once writes pause the node
/// merges them into its sorted array (Status shows the count going to zero)
/// and matching, retraction and the counts are unchanged by the merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_changes_are_merged_once_writes_pause() {
    let mut node = TestNode::new("liaison-m");
    node.start();
    let mut c = node.clients().await;
    c.contribution
        .contribute(contribute_req(
            vec![item(Kind::Email, EMAIL), item(Kind::Iban, IBAN)],
            "CASE-M",
        ))
        .await
        .unwrap();
    let status = |s: proto::StatusResponse| (s.index_pending, s.indicators);
    let before = status(
        c.admin
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    // Both wait in the change map, unless the node already paused for two
    // of its one-second ticks between the answer and this call (a loaded
    // machine), in which case they are merged already.
    assert_eq!(before.1, 2);
    assert!(before.0 == 2 || before.0 == 0, "pending {}", before.0);
    let start = std::time::Instant::now();
    loop {
        let now = status(
            c.admin
                .status(proto::StatusRequest {})
                .await
                .unwrap()
                .into_inner(),
        );
        if now.0 == 0 {
            assert_eq!(now.1, 2, "the merge keeps every indicator");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not merged after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = match_one(&mut c, Kind::Email, EMAIL).await;
    assert_eq!(status_of(&r), proto::MatchStatus::Match);
    c.contribution
        .retract(proto::RetractRequest {
            identifiers: vec![proto::Identifier {
                kind: Kind::Email as i32,
                value: EMAIL.into(),
            }],
            reason: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = match_one(&mut c, Kind::Email, EMAIL).await;
    assert_eq!(status_of(&r), proto::MatchStatus::NoMatch);
    let r = match_one(&mut c, Kind::Iban, IBAN).await;
    assert_eq!(status_of(&r), proto::MatchStatus::Match);
}
