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
    Ok(())
}
