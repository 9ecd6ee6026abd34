//! The Broker core, called directly: produce, poll, commit, reset, fetch, subscribe, admin, errors,
//! restart. Timing logic runs on tokio's paused clock. One scenario per test, each on its own
//! broker from [`common::broker::TestBroker`].

#[path = "../common/mod.rs"]
mod common;

mod consume;
mod data_dir;
mod deleted_topic;
mod errors;
mod groups;
mod multi_partition;
mod produce;
mod subscribe;
mod timing;

use obelisk::broker::{ConsumedRecord, PollRequest, ReadLimits, StartPosition};

fn poll_req(topic: &str, group: &str) -> PollRequest {
    PollRequest {
        topic: topic.into(),
        group: group.into(),
        limits: ReadLimits::default(),
        start_if_new: StartPosition::Earliest,
        member: None,
    }
}

/// Poll interleaves partitions (starting with a different one each time); order within a partition
/// is what is promised, so comparisons sort by (partition, offset).
fn sorted(mut records: Vec<ConsumedRecord>) -> Vec<ConsumedRecord> {
    records.sort_by_key(|r| (r.partition, r.record.offset));
    records
}
