//! Produce: validate, choose partitions, hand records to the batchers, wait for durability.

use std::sync::Arc;

use futures_util::future::try_join_all;

use super::error::{BrokerError, NameKind};
use super::names;
use super::types::{ProduceRecord, RecordAck};
use super::{Broker, now_ns};
use crate::storage::record::encoded_len;
use crate::storage::{AppendError, Record, StorageError, Topic, TopicConfig};

impl Broker {
    /// Appends `records` to `topic` and returns, in request order, where each landed, once all are
    /// durable. Creates the topic when auto-creation is on.
    ///
    /// # Errors
    /// `InvalidName`, `InvalidArgument` (empty batch, bad partition, bad header), `RecordTooLarge`,
    /// `TopicNotFound`, `Overloaded` (queue full), `Unavailable` (storage failed or stopping).
    pub async fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<RecordAck>, BrokerError> {
        let count = records.len() as u64;
        let result = self.produce_records(topic, records).await;
        // Label by topic only when it exists, so that bad or unknown names cannot add series.
        let known = result.is_ok() || self.topic(topic).is_some();
        crate::metrics::record_produce(known.then_some(topic), count, result.as_ref().map(|_| ()));
        result
    }

    async fn produce_records(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<RecordAck>, BrokerError> {
        names::validate(NameKind::Topic, topic)?;
        if records.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "a produce request needs at least one record".into(),
            ));
        }
        self.check_records(&records)?;
        let topic = self.topic_for_write(topic).await?;
        let partitions = topic.config.partitions;
        let now = now_ns();
        // Per partition: the records and the request index of each.
        let mut groups: Vec<(Vec<Record>, Vec<usize>)> =
            (0..partitions).map(|_| (Vec::new(), Vec::new())).collect();
        for (i, r) in records.into_iter().enumerate() {
            let p = match r.partition {
                Some(p) if p >= partitions => {
                    return Err(BrokerError::InvalidArgument(format!(
                        "partition {p} does not exist: topic {:?} has partitions 0 to {}",
                        topic.name,
                        partitions - 1
                    )));
                }
                Some(p) => p,
                None => topic.partition_for_key(&r.key),
            };
            let (recs, idx) = &mut groups[p as usize];
            recs.push(Record {
                offset: 0,
                timestamp: r.timestamp.unwrap_or(now),
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
            idx.push(i);
        }
        let total: usize = groups.iter().map(|(r, _)| r.len()).sum();
        let waits = groups
            .into_iter()
            .enumerate()
            .filter(|(_, (recs, _))| !recs.is_empty())
            .map(|(p, (recs, idx))| {
                let topic = Arc::clone(&topic);
                async move {
                    let first = self.append(&topic, p as u32, recs).await?;
                    Ok::<_, BrokerError>((p as u32, first, idx))
                }
            });
        let results = try_join_all(waits).await?;
        let mut acks = vec![
            RecordAck {
                partition: 0,
                offset: 0
            };
            total
        ];
        for (partition, first, idx) in results {
            for (k, i) in idx.into_iter().enumerate() {
                acks[i] = RecordAck {
                    partition,
                    offset: first + k as u64,
                };
            }
        }
        Ok(acks)
    }

    async fn append(
        &self,
        topic: &Topic,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<u64, BrokerError> {
        let p = topic
            .partition(partition)
            .expect("partition chosen within range");
        let storage = |e| BrokerError::from_storage(&topic.name, partition, e);
        let rx = p
            .append(records, self.inner.config.enqueue_timeout)
            .await
            .map_err(|e| match e {
                AppendError::QueueFull => BrokerError::Overloaded(format!(
                    "the write queue of {}/{partition} is full",
                    topic.name
                )),
                AppendError::Storage(e) => storage(e),
            })?;
        match rx.await {
            Ok(res) => res.map_err(storage),
            Err(_) => Err(storage(StorageError::Closed)),
        }
    }

    fn check_records(&self, records: &[ProduceRecord]) -> Result<(), BrokerError> {
        let max = self.inner.config.max_record_bytes;
        for r in records {
            let size = encoded_len(&r.key, &r.value, &r.headers);
            if size > max {
                return Err(BrokerError::RecordTooLarge { size, max });
            }
            if let Some((name, _)) = r.headers.iter().find(|(n, _)| n.len() > u16::MAX as usize) {
                return Err(BrokerError::InvalidArgument(format!(
                    "header name of {} bytes is too long (at most 65535)",
                    name.len()
                )));
            }
        }
        Ok(())
    }

    /// The topic for a write: existing, or created with the defaults when auto-creation is on.
    async fn topic_for_write(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if !self.inner.config.auto_create_topics {
            return Err(BrokerError::TopicNotFound(name.to_string()));
        }
        match self
            .create_topic(
                name,
                TopicConfig {
                    partitions: 0,
                    retention_ms: 0,
                    retention_bytes: 0,
                },
            )
            .await
        {
            Ok(_) | Err(BrokerError::TopicExists(_)) => self
                .topic(name)
                .ok_or_else(|| BrokerError::TopicNotFound(name.to_string())),
            Err(e) => Err(e),
        }
    }
}
