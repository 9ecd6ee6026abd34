//! replication (issue 17, snapshots): what a cluster snapshot needs from the broker: the
//! topics with their settings and each partition's records up to a point, read under the
//! state machine (no write is applied meanwhile).

use super::{Broker, BrokerError, TopicConfig};
use crate::storage::Record;

/// Records read per step.
const STEP_RECORDS: usize = 10_000;
const STEP_BYTES: usize = 64 << 20;

impl Broker {
    /// Every topic and its settings.
    pub(crate) fn topic_configs(&self) -> Vec<(String, TopicConfig)> {
        self.topics()
            .iter()
            .map(|t| (t.name.clone(), t.config))
            .collect()
    }

    /// A partition's first offset and its records from there up to `end`.
    ///
    /// # Errors
    /// `TopicNotFound`, `InvalidArgument` (no such partition), storage errors.
    pub(crate) fn partition_records(
        &self,
        topic: &str,
        partition: u32,
        end: u64,
    ) -> Result<(u64, Vec<Record>), BrokerError> {
        let t = self
            .topic(topic)
            .ok_or_else(|| BrokerError::TopicNotFound(topic.to_string()))?;
        let p = t.partition(partition).ok_or_else(|| {
            BrokerError::InvalidArgument(format!(
                "partition {partition} of {topic:?} does not exist"
            ))
        })?;
        let core = p.core();
        let start = core.start_offset().min(end);
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let step = core
                .read(at, STEP_RECORDS, STEP_BYTES)
                .map_err(|e| BrokerError::from_storage(topic, partition, e))?;
            let Some(last) = step.last() else { break };
            at = last.offset + 1;
            out.extend(step.into_iter().filter(|r| r.offset < end));
        }
        Ok((start, out))
    }
}
