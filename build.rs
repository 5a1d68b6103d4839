//! Compiles `proto/` with protox (no system protoc) and writes the
//! descriptor set that gRPC server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/cix/v1/common.proto",
    "proto/cix/v1/screening.proto",
    "proto/cix/v1/contribution.proto",
    "proto/cix/v1/admin.proto",
    "proto/cix/v1/log.proto",
    "proto/cix/v1/trust.proto",
    "proto/cix/v1/federation.proto",
    "proto/cix/v1/watchlist.proto",
    "proto/cix/v1/alerts.proto",
    "proto/cix/v1/alert_state.proto",
    "proto/cix/v1/outcomes.proto",
    "proto/cix/v1/figures.proto",
    "proto/cix/v1/disposition.proto",
    "proto/cix/v1/quarantine.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("cix_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // Log entries decode as slices of their batch's buffer: a cold start
        // reads millions of them, and one allocation per token and salt
        // would dominate it.
        .bytes(".cix.v1.LogEntry")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    tonic_build::manual::Builder::new()
        .build_client(false)
        .compile(&[screening_service()]);
    Ok(())
}

/// `cix.v1.Screening` as the node serves it: the same package, service,
/// method names and paths as `proto/cix/v1/screening.proto` (clients use
/// the client generated from the proto), but `Match` and `MatchStream`
/// decode their requests into `crate::api::wire::MatchRequestView` (with
/// `crate::api::wire::ViewCodec`), the same wire format with each
/// identifier's value borrowed from the message buffer instead of copied
/// into a `String` of its own.
fn screening_service() -> tonic_build::manual::Service {
    const VIEW: &str = "crate::api::wire::MatchRequestView";
    let method = |name: &str, route: &str, input: &str| {
        let codec = if input == VIEW {
            "crate::api::wire::ViewCodec"
        } else {
            "tonic_prost::ProstCodec"
        };
        tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type(input)
            .output_type("crate::proto::MatchResponse")
            .codec_path(codec)
    };
    tonic_build::manual::Service::builder()
        .package("cix.v1")
        .name("Screening")
        .method(method("r#match", "Match", VIEW).build())
        .method(
            method("match_stream", "MatchStream", VIEW)
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .method(
            method(
                "match_tokens",
                "MatchTokens",
                "crate::proto::MatchTokensRequest",
            )
            .client_streaming()
            .server_streaming()
            .build(),
        )
        .method(
            method(
                "match_remote",
                "MatchRemote",
                "crate::proto::MatchRemoteRequest",
            )
            .build(),
        )
        .build()
}
