//! gRPC health and reflection on a real node over real mutual TLS, on its
//! settable clock: Screening, Federation and the node as a whole serve;
//! past the trust list's expiry Federation is NOT_SERVING while Screening
//! goes on; past every key epoch Screening, and with it the node, is
//! NOT_SERVING; `cix health [--service S]` says so by its exit status; and
//! reflection answers in v1alpha as in v1.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

async fn status_of(c: &mut cix::client::Clients, service: &str) -> ServingStatus {
    let r = c
        .health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(r.status).unwrap()
}

/// Waits (bounded) until `service` reports `want`.
async fn wait_for(c: &mut cix::client::Clients, service: &str, want: ServingStatus) {
    let start = Instant::now();
    loop {
        let got = status_of(c, service).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{service:?} stayed {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_trust_list_and_the_key_epochs_on_the_nodes_clock() {
    let mut c = Coalition::new(&["bank-a"]);
    let now = cix::time::system_now().unwrap();
    c.nodes[0].use_test_clock(now);
    c.start_all();
    let mut clients = c.nodes[0].clients().await;
    for service in [
        "",
        "cix.v1.Screening",
        "cix.v1.Federation",
        "cix.v1.Contribution",
    ] {
        assert_eq!(
            status_of(&mut clients, service).await,
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = clients
        .health
        .check(HealthCheckRequest {
            service: "cix.v1.Nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let (ok, out, err) = run_cli(&c.nodes[0], &["health"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "the node: SERVING");

    // Past the trust list's expiry (30 days): replication stops, screening
    // goes on.
    c.nodes[0].set_time(now + 31 * 86_400);
    wait_for(&mut clients, "cix.v1.Federation", ServingStatus::NotServing).await;
    assert_eq!(
        status_of(&mut clients, "cix.v1.Screening").await,
        ServingStatus::Serving
    );
    assert_eq!(status_of(&mut clients, "").await, ServingStatus::Serving);
    let (ok, out, err) = run_cli(&c.nodes[0], &["health", "--service", "cix.v1.Federation"]);
    assert!(!ok, "{out}");
    assert!(err.contains("cix.v1.Federation: NOT_SERVING"), "{err}");
    let (ok, out, err) = run_cli(&c.nodes[0], &["health", "--service", "cix.v1.Screening"]);
    assert!(ok, "{out}{err}");

    // Past every key epoch (a year): nothing can match.
    c.nodes[0].set_time(now + 400 * 86_400);
    wait_for(&mut clients, "cix.v1.Screening", ServingStatus::NotServing).await;
    assert_eq!(status_of(&mut clients, "").await, ServingStatus::NotServing);
    let (ok, _, err) = run_cli(&c.nodes[0], &["health"]);
    assert!(!ok);
    assert!(err.contains("the node: NOT_SERVING"), "{err}");

    // Back within both: serving again.
    c.nodes[0].set_time(now + 60);
    wait_for(&mut clients, "", ServingStatus::Serving).await;
    wait_for(&mut clients, "cix.v1.Federation", ServingStatus::Serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_in_v1alpha_as_in_v1() {
    use tonic_reflection::pb::{v1, v1alpha};
    let mut c = Coalition::new(&["bank-a"]);
    c.start_all();
    let channel = c.nodes[0].identity().channel().await.unwrap();

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = alpha
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("{answer:?}");
    };
    let alpha_names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();

    let mut v1c = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let answer = v1c
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("{answer:?}");
    };
    let v1_names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in [
        "cix.v1.Screening",
        "cix.v1.Watchlist",
        "grpc.health.v1.Health",
    ] {
        assert!(
            alpha_names.iter().any(|n| n == name),
            "v1alpha lacks {name}: {alpha_names:?}"
        );
    }
    let (mut a, mut b) = (alpha_names.clone(), v1_names.clone());
    a.sort();
    b.sort();
    a.retain(|n| !n.starts_with("grpc.reflection."));
    b.retain(|n| !n.starts_with("grpc.reflection."));
    assert_eq!(a, b, "the same services either way");
}
