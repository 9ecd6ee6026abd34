//! The Consumer: poll a group's records (or subscribe), and commit what was processed.

use std::collections::BTreeMap;

use tonic::transport::Channel;

use super::{BrokerClient, ClientError, Transport};
use crate::proto as pb;

/// A consumer of one topic in one group.
pub struct Consumer<T: Transport = Channel> {
    client: BrokerClient<T>,
    topic: String,
    group: String,
    pub max_records: u32,
    pub max_wait_ms: u32,
}

impl<T: Transport> Consumer<T> {
    pub fn new(client: BrokerClient<T>, topic: &str, group: &str) -> Self {
        Self {
            client,
            topic: topic.to_string(),
            group: group.to_string(),
            max_records: 500,
            max_wait_ms: 1000,
        }
    }

    /// Records from the group's committed offsets (long poll up to `max_wait_ms`).
    ///
    /// # Errors
    /// The broker's error.
    pub async fn poll(&mut self) -> Result<Vec<pb::Record>, ClientError> {
        let resp = self
            .client
            .poll(pb::PollRequest {
                topic: self.topic.clone(),
                group: self.group.clone(),
                max_records: self.max_records,
                max_bytes: 0,
                max_wait_ms: self.max_wait_ms,
                start_if_new: pb::StartPosition::Earliest as i32,
                ..Default::default()
            })
            .await?;
        Ok(resp.into_inner().records)
    }

    /// Commits the offsets after `records` (the next offset per partition).
    ///
    /// # Errors
    /// The broker's error.
    pub async fn commit(&mut self, records: &[pb::Record]) -> Result<(), ClientError> {
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        for r in records {
            let e = next.entry(r.partition).or_default();
            *e = (*e).max(r.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        self.client
            .commit(pb::CommitRequest {
                topic: self.topic.clone(),
                group: self.group.clone(),
                offsets: next
                    .into_iter()
                    .map(|(partition, offset)| pb::PartitionOffset { partition, offset })
                    .collect(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// A stream of records from the group's position, or from `start`.
    ///
    /// # Errors
    /// The broker's error.
    pub async fn subscribe(
        &mut self,
        start: Option<pb::Position>,
    ) -> Result<tonic::Streaming<pb::SubscribeResponse>, ClientError> {
        let resp = self
            .client
            .subscribe(pb::SubscribeRequest {
                topic: self.topic.clone(),
                group: self.group.clone(),
                start,
                max_records_per_message: 0,
                ..Default::default()
            })
            .await?;
        Ok(resp.into_inner())
    }
}
