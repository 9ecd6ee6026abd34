//! The SharedConsumer (shared groups, issue 14): a worker of a shared group takes records, each
//! locked to it, and settles them in batches.

use tonic::transport::Channel;

use super::{BrokerClient, ClientError, Transport};
use crate::proto as pb;

/// A worker of one shared group on one topic. Settlements are collected with [`accept`],
/// [`release`], [`reject`] and [`extend`] and sent in one batch by [`flush`] (and by every
/// [`poll`], before it takes more).
///
/// [`accept`]: SharedConsumer::accept
/// [`release`]: SharedConsumer::release
/// [`reject`]: SharedConsumer::reject
/// [`extend`]: SharedConsumer::extend
/// [`flush`]: SharedConsumer::flush
/// [`poll`]: SharedConsumer::poll
pub struct SharedConsumer<T: Transport = Channel> {
    client: BrokerClient<T>,
    topic: String,
    group: String,
    member: String,
    pending: Vec<pb::Settlement>,
    pub max_records: u32,
    pub max_wait_ms: u32,
}

impl<T: Transport> SharedConsumer<T> {
    /// `member` is any stable id of this worker (a random one per process is fine).
    pub fn new(client: BrokerClient<T>, topic: &str, group: &str, member: &str) -> Self {
        Self {
            client,
            topic: topic.to_string(),
            group: group.to_string(),
            member: member.to_string(),
            pending: Vec::new(),
            max_records: 100,
            max_wait_ms: 1000,
        }
    }

    /// Sends the pending settlements, then takes records (long poll up to `max_wait_ms`). The
    /// per-record results of that flush are not returned: call [`SharedConsumer::flush`] first
    /// to see which settlements were refused.
    ///
    /// # Errors
    /// The broker's error (pending settlements are kept when the flush fails).
    pub async fn poll(&mut self) -> Result<Vec<pb::SharedDelivery>, ClientError> {
        self.flush().await?;
        let resp = self
            .client
            .shared_poll(pb::SharedPollRequest {
                group: self.group.clone(),
                topic: self.topic.clone(),
                member_id: self.member.clone(),
                max_records: self.max_records,
                max_wait_ms: self.max_wait_ms,
                ..Default::default()
            })
            .await?;
        Ok(resp.into_inner().deliveries)
    }

    fn push(
        &mut self,
        d: &pb::SharedDelivery,
        kind: pb::SettleKind,
        delay_ms: Option<u32>,
        reason: &str,
    ) {
        self.pending.push(settlement(d, kind, delay_ms, reason));
    }

    pub fn accept(&mut self, d: &pb::SharedDelivery) {
        self.push(d, pb::SettleKind::Accept, None, "");
    }

    /// Gives the record back, available after `delay_ms` (`None`: the group's backoff).
    pub fn release(&mut self, d: &pb::SharedDelivery, delay_ms: Option<u32>, reason: &str) {
        self.push(d, pb::SettleKind::Release, delay_ms, reason);
    }

    /// Sends the record to the group's dead-letter topic.
    pub fn reject(&mut self, d: &pb::SharedDelivery, reason: &str) {
        self.push(d, pb::SettleKind::Reject, None, reason);
    }

    /// Keeps the record locked for another ack timeout.
    pub fn extend(&mut self, d: &pb::SharedDelivery) {
        self.push(d, pb::SettleKind::Extend, None, "");
    }

    /// Sends the pending settlements in one batch; returns each one's result (an `error` set
    /// when it was refused, e.g. its lock had expired).
    ///
    /// # Errors
    /// The broker's error; the settlements stay pending.
    pub async fn flush(&mut self) -> Result<Vec<pb::SettleResult>, ClientError> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let resp = self
            .client
            .settle(pb::SettleRequest {
                group: self.group.clone(),
                topic: self.topic.clone(),
                member_id: self.member.clone(),
                settlements: self.pending.clone(),
            })
            .await?;
        self.pending.clear();
        Ok(resp.into_inner().results)
    }
}

/// The settlement of a handed-out record.
pub fn settlement(
    d: &pb::SharedDelivery,
    kind: pb::SettleKind,
    delay_ms: Option<u32>,
    reason: &str,
) -> pb::Settlement {
    let (partition, offset) = d
        .record
        .as_ref()
        .map_or((0, 0), |r| (r.partition, r.offset));
    pb::Settlement {
        partition,
        offset,
        kind: kind as i32,
        delay_ms,
        reason: reason.to_string(),
    }
}
