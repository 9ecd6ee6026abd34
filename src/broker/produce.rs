//! Produce: validate, choose partitions, hand records to the batchers, wait for durability.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::error::{BrokerError, NameKind};
use super::names;
use super::observe::BrokerEvents;
use super::types::{ProduceRecord, RecordAck};
use super::{Broker, now_ns};
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
        self.enqueue(topic, records).await?.acks().await
    }

    /// The first half of [`Broker::produce`]: validates and queues the records, returning once they
    /// are in their partitions' queues. Requests enqueued one after another are stored in that
    /// order, so a pipelining transport enqueues in arrival order and awaits the acks concurrently.
    ///
    /// # Errors
    /// As [`Broker::produce`]; storage failures surface from [`PendingProduce::acks`].
    pub async fn enqueue(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<PendingProduce, BrokerError> {
        self.enqueue_from(topic, records, None).await
    }

    /// [`Broker::enqueue`] for an idempotent producer (when `producer` is set): each partition's
    /// share is checked against the producer's sequence there; a retry of a stored share is
    /// answered with its original offsets and not stored again.
    ///
    /// # Errors
    /// As [`Broker::enqueue`], and `InvalidArgument` for an unknown producer or a partition
    /// without a sequence; `ProducerSequence` (from the acks) for a gap or an older epoch.
    pub async fn enqueue_from(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
        producer: Option<&super::ProducerIdentity>,
    ) -> Result<PendingProduce, BrokerError> {
        let count = records.len() as u64;
        let checked = match producer {
            Some(p) => self.check_producer_applied(p).await,
            None => Ok(()),
        };
        let result = match checked {
            Err(e) => Err(e),
            Ok(()) => self.enqueue_records(topic, records, producer).await,
        };
        if let Err(e) = &result {
            // Label by topic only when it exists, so that bad or unknown names cannot add series.
            if let Some(events) = self.inner.observer.events() {
                let known = self.topic(topic).is_some();
                events.produced(known.then_some(topic), count, Err(e));
            }
        }
        result
    }

    async fn enqueue_records(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
        producer: Option<&super::ProducerIdentity>,
    ) -> Result<PendingProduce, BrokerError> {
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
        let total = records.len();
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
        // replication (issue 17): in a cluster the shares are one command, stored by every node
        // once committed.
        if let Some(r) = self.replicator() {
            let room = self.replicated_room(r, &topic.name).await?;
            let mut shares = Vec::new();
            let mut indexes = Vec::new();
            for (p, (recs, idx)) in groups.into_iter().enumerate() {
                if recs.is_empty() {
                    continue;
                }
                let partition = p as u32;
                let append = producer
                    .map(|id| Self::producer_append(id, &topic.name, partition))
                    .transpose()?;
                shares.push((partition, recs, append));
                indexes.push((partition, idx));
            }
            return Ok(PendingProduce {
                events: self.inner.observer.events().cloned(),
                topic: Arc::clone(&topic),
                total,
                waits: Vec::new(),
                replicated: Some((
                    {
                        let proposal = r.produce(topic.name.clone(), shares);
                        Box::pin(async move {
                            let out = proposal.await;
                            drop(room);
                            out
                        })
                    },
                    indexes,
                )),
            });
        }
        // Room in every partition's queue first, then the records: a request is queued whole or
        // not at all (a read-only partition or a full queue refuses it before anything is stored).
        let mut slots = Vec::new();
        for (p, (recs, idx)) in groups.into_iter().enumerate() {
            if recs.is_empty() {
                continue;
            }
            let partition = p as u32;
            let append = producer
                .map(|id| Self::producer_append(id, &topic.name, partition))
                .transpose()?;
            let part = topic
                .partition(partition)
                .expect("partition chosen within range");
            let slot = part
                .reserve(self.inner.config.enqueue_timeout)
                .await
                .map_err(|e| match e {
                    AppendError::QueueFull => BrokerError::Overloaded(format!(
                        "the write queue of {}/{partition} is full",
                        topic.name
                    )),
                    AppendError::Storage(e) => BrokerError::from_storage(&topic.name, partition, e),
                })?;
            slots.push((partition, slot, recs, idx, append));
        }
        let waits = slots
            .into_iter()
            .map(|(partition, slot, recs, idx, append)| {
                (partition, slot.send_from(recs, append), idx)
            })
            .collect();
        Ok(PendingProduce {
            events: self.inner.observer.events().cloned(),
            topic: Arc::clone(&topic),
            total,
            waits,
            replicated: None,
        })
    }

    /// Where an idempotent producer's share of `partition` continues its sequence.
    fn producer_append(
        id: &super::ProducerIdentity,
        topic: &str,
        partition: u32,
    ) -> Result<crate::storage::producers::ProducerAppend, BrokerError> {
        let Some(&sequence) = id.sequences.get(&partition) else {
            return Err(BrokerError::InvalidArgument(format!(
                "idempotent produce without a sequence for partition {partition} of {topic:?}, \
                 which receives records of it"
            )));
        };
        Ok(crate::storage::producers::ProducerAppend {
            id: id.producer_id,
            epoch: id.producer_epoch,
            sequence,
        })
    }

    fn check_records(&self, records: &[ProduceRecord]) -> Result<(), BrokerError> {
        let max = self.inner.config.max_record_bytes;
        for r in records {
            // The limit is on what the producer sent (key, value, headers), not on framing.
            let size = r.key.len()
                + r.value.len()
                + r.headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len())
                    .sum::<usize>();
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
        if let Some(e) = self.offline(name) {
            return Err(e);
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
                    compression: Default::default(),
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

/// One partition's share of a produce: its partition, its ack, and the request index of each record.
type PartitionWait = (
    u32,
    oneshot::Receiver<Result<u64, StorageError>>,
    Vec<usize>,
);

/// Records queued by [`Broker::enqueue`], waiting for durability.
pub struct PendingProduce {
    /// The broker's observer, told how the produce ended.
    events: Option<Arc<dyn BrokerEvents>>,
    topic: Arc<Topic>,
    total: usize,
    waits: Vec<PartitionWait>,
    /// replication (issue 17): the proposal of a cluster node, and the request index of each
    /// record of each share (`waits` is empty then).
    replicated: Option<Replicated>,
}

type Replicated = (
    super::replication::Proposal<Vec<u64>>,
    Vec<(u32, Vec<usize>)>,
);

impl PendingProduce {
    /// Waits until every record is durable; returns where each landed, in request order.
    ///
    /// # Errors
    /// `Unavailable` when storage failed (nothing of a failed partition's share was stored).
    pub async fn acks(self) -> Result<Vec<RecordAck>, BrokerError> {
        let topic = Arc::clone(&self.topic);
        let events = self.events.clone();
        let count = self.total as u64;
        let result = self.wait().await;
        if let Some(events) = events {
            events.produced(Some(&topic.name), count, result.as_ref().map(|_| ()));
        }
        result
    }

    /// As [`PendingProduce::acks`], with each record's own outcome, in request order: a record
    /// whose partition stored its share is acknowledged even when another partition failed (the
    /// legacy listener answers each frame of a run queued together on its own).
    pub async fn acks_each(self) -> Vec<Result<RecordAck, Arc<BrokerError>>> {
        if self.replicated.is_some() {
            // A cluster stores a request as one Raft command: all of it or none of it.
            let total = self.total;
            return match self.acks().await {
                Ok(acks) => acks.into_iter().map(Ok).collect(),
                Err(e) => {
                    let e = Arc::new(e);
                    (0..total).map(|_| Err(Arc::clone(&e))).collect()
                }
            };
        }
        let unset = Arc::new(BrokerError::Unavailable("not acknowledged".into()));
        let mut out: Vec<Result<RecordAck, Arc<BrokerError>>> =
            (0..self.total).map(|_| Err(Arc::clone(&unset))).collect();
        let mut first_error = None;
        for (partition, rx, idx) in self.waits {
            let res = match rx.await {
                Ok(res) => res,
                Err(_) => Err(StorageError::Closed),
            };
            match res {
                Ok(first) => {
                    for (k, i) in idx.into_iter().enumerate() {
                        out[i] = Ok(RecordAck {
                            partition,
                            offset: first + k as u64,
                        });
                    }
                }
                Err(e) => {
                    let e = Arc::new(BrokerError::from_storage(&self.topic.name, partition, e));
                    for i in idx {
                        out[i] = Err(Arc::clone(&e));
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(events) = &self.events {
            let result = first_error.as_deref().map_or(Ok(()), Err);
            events.produced(Some(&self.topic.name), self.total as u64, result);
        }
        out
    }

    async fn wait(self) -> Result<Vec<RecordAck>, BrokerError> {
        let mut acks = vec![
            RecordAck {
                partition: 0,
                offset: 0
            };
            self.total
        ];
        if let Some((proposal, shares)) = self.replicated {
            let firsts = proposal.await?;
            for ((partition, idx), first) in shares.into_iter().zip(firsts) {
                for (k, i) in idx.into_iter().enumerate() {
                    acks[i] = RecordAck {
                        partition,
                        offset: first + k as u64,
                    };
                }
            }
            return Ok(acks);
        }
        // Every partition's outcome, so a failure can say what was stored anyway.
        let (mut stored, mut failed) = (Vec::new(), None);
        for (partition, rx, idx) in self.waits {
            let first = match rx.await {
                Ok(res) => res,
                Err(_) => Err(StorageError::Closed),
            };
            match first {
                Ok(first) => {
                    stored.push(partition);
                    for (k, i) in idx.into_iter().enumerate() {
                        acks[i] = RecordAck {
                            partition,
                            offset: first + k as u64,
                        };
                    }
                }
                Err(e) if failed.is_none() => {
                    failed = Some(BrokerError::from_storage(&self.topic.name, partition, e));
                }
                Err(_) => {}
            }
        }
        match failed {
            None => {}
            Some(BrokerError::Unavailable(why)) if !stored.is_empty() => {
                let list: Vec<String> = stored.iter().map(u32::to_string).collect();
                return Err(BrokerError::Unavailable(format!(
                    "{why}; this request's records for partition(s) {} of {} were stored before \
                     the failure (a retry of the whole request stores those again)",
                    list.join(", "),
                    self.topic.name
                )));
            }
            Some(e) => return Err(e),
        }
        Ok(acks)
    }
}
