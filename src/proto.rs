//! The code generated from `proto/obelisk/v1/broker.proto` (messages, server and client).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("obelisk.v1");

/// The encoded file descriptor set of the proto files, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/obelisk_descriptor.bin"));
