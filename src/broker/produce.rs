//! Produce: validate, choose partitions, hand records to the batchers, wait for durability.

use std::sync::Arc;

use tokio::sync::oneshot;

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
        self.produce_queued(topic, records)
            .await?
            .acknowledged()
            .await
    }

    /// The first half of [`Broker::produce`]: validates the records and queues them for writing,
    /// returning once they are queued (not yet durable). Records of produces queued one after
    /// the other are stored in that order within a partition, which is how a pipelining
    /// connection keeps its order while many of its produces wait for one group commit.
    ///
    /// # Errors
    /// As [`Broker::produce`], except storage failures found while writing, which
    /// [`QueuedProduce::acknowledged`] reports.
    pub async fn produce_queued(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<QueuedProduce, BrokerError> {
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
        let mut waits = Vec::new();
        for (p, (recs, idx)) in groups.into_iter().enumerate() {
            if recs.is_empty() {
                continue;
            }
            let ack = self.enqueue(&topic, p as u32, recs).await?;
            waits.push((p as u32, idx, ack));
        }
        Ok(QueuedProduce {
            topic: topic.name.clone(),
            waits,
            total,
        })
    }

    /// Queues records in one partition's batcher; the receiver yields their first offset.
    async fn enqueue(
        &self,
        topic: &Topic,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<AckReceiver, BrokerError> {
        let p = topic
            .partition(partition)
            .expect("partition chosen within range");
        p.append(records, self.inner.config.enqueue_timeout)
            .await
            .map_err(|e| match e {
                AppendError::QueueFull => BrokerError::Overloaded(format!(
                    "the write queue of {}/{partition} is full",
                    topic.name
                )),
                AppendError::Storage(e) => BrokerError::from_storage(&topic.name, partition, e),
            })
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

type AckReceiver = oneshot::Receiver<Result<u64, StorageError>>;

/// A produce whose records are queued for writing (see [`Broker::produce_queued`]). The records
/// are written whether or not this is awaited.
#[must_use = "await `acknowledged` to learn whether the records are durable"]
pub struct QueuedProduce {
    topic: String,
    /// Per partition written to: the partition, the request index of each record, the ack.
    waits: Vec<(u32, Vec<usize>, AckReceiver)>,
    total: usize,
}

impl QueuedProduce {
    /// Waits until the records are durable; returns, in request order, where each landed.
    ///
    /// # Errors
    /// `Unavailable` when storage failed or the broker stopped before writing them.
    pub async fn acknowledged(self) -> Result<Vec<RecordAck>, BrokerError> {
        let mut acks = vec![
            RecordAck {
                partition: 0,
                offset: 0
            };
            self.total
        ];
        for (partition, idx, ack) in self.waits {
            let first = match ack.await {
                Ok(res) => res,
                Err(_) => Err(StorageError::Closed),
            }
            .map_err(|e| BrokerError::from_storage(&self.topic, partition, e))?;
            for (k, i) in idx.into_iter().enumerate() {
                acks[i] = RecordAck {
                    partition,
                    offset: first + k as u64,
                };
            }
        }
        Ok(acks)
    }
}
