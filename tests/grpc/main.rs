//! The gRPC API over real sockets: a server in-process on 127.0.0.1:0 and the generated client
//! ([`common::server::TestServer`]), one scenario per test.

#[path = "../common/mod.rs"]
mod common;

mod compression;
mod errors;
mod groups;
mod idempotence;
mod produce_consume;
mod produce_stream;
mod service;
mod shared; // shared groups (issue 14)
mod subscribe;

use bytes::Bytes;
use obelisk::client::BrokerClient;
use obelisk::proto as pb;
use tonic::transport::Channel;

fn record(key: &str, value: &str) -> pb::ProducerRecord {
    pb::ProducerRecord {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..Default::default()
    }
}

fn poll(topic: &str, group: &str) -> pb::PollRequest {
    pb::PollRequest {
        topic: topic.into(),
        group: group.into(),
        ..Default::default()
    }
}

/// The records a poll returns (the call must succeed).
async fn polled(c: &mut BrokerClient<Channel>, topic: &str, group: &str) -> Vec<pb::Record> {
    c.poll(poll(topic, group))
        .await
        .unwrap()
        .into_inner()
        .records
}

/// Poll interleaves partitions; order within a partition is what is promised.
fn sorted(mut records: Vec<pb::Record>) -> Vec<pb::Record> {
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

fn pos(target: pb::position::Target) -> Option<pb::Position> {
    Some(pb::Position {
        target: Some(target),
    })
}
