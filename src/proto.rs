//! Generated protobuf and gRPC code for package `cix.v1`, and the encoded
//! descriptor set that server reflection serves.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("cix.v1");

/// The `FileDescriptorSet` of `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cix_descriptor.bin"));
