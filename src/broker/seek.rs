//! Where a time falls in a topic: each partition's first offset at or after a timestamp, without
//! touching any group (the console's and `GET /topics/{topic}/offsets`'s seek by time).

use super::Broker;
use super::consume::resolve_positions;
use super::error::BrokerError;
use super::types::Position;

impl Broker {
    /// Each partition's first acknowledged offset whose timestamp is at or after `ts` (Unix
    /// nanoseconds), or its log end when there is none, as `(partition, offset)`.
    ///
    /// # Errors
    /// `InvalidName`, `TopicNotFound`, `DataLoss` when the search meets damaged data.
    pub fn offsets_for_timestamp(
        &self,
        topic: &str,
        ts: i64,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        let t = self.existing_topic(topic)?;
        resolve_positions(&t, Position::Timestamp(ts))
    }
}
