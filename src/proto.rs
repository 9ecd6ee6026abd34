//! The code generated from `proto/obelisk/v1/broker.proto` (messages, server and client).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("obelisk.v1");

/// The encoded file descriptor set of the proto files, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/obelisk_descriptor.bin"));

/// replication (issue 17): the node-to-node service of a cluster (`proto/obelisk/cluster/v1`).
pub mod cluster {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("obelisk.cluster.v1");
}
