//! The SharedStream (shared groups, issue 14): a worker of a shared group on one SharedConsume
//! stream. The broker pushes records while fewer than the credit are unsettled; settlements
//! are queued ([`SharedStream::accept`] …) and sent as one batch by [`SharedStream::flush`],
//! answered on the same stream. Dropping it is a crash: its locks stay until they expire.

use std::collections::VecDeque;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{BrokerClient, ClientError, Transport, settlement};
use crate::proto as pb;
use pb::shared_consume_request::Kind;
use pb::shared_consume_response::Kind as Out;

/// What the broker sent on the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedEvent {
    /// Records handed out to this worker (locked to it, their counts durable).
    Deliveries(Vec<pb::SharedDelivery>),
    /// The answer to the settle batch `id` (every outcome in it durable).
    Settled {
        id: u64,
        results: Vec<pb::SettleResult>,
    },
}

pub struct SharedStream {
    tx: mpsc::Sender<pb::SharedConsumeRequest>,
    inbound: tonic::Streaming<pb::SharedConsumeResponse>,
    pending: Vec<pb::Settlement>,
    /// Events read while waiting for a settle's answer, returned by `next` first.
    early: VecDeque<SharedEvent>,
    next_id: u64,
}

impl SharedStream {
    /// Opens the stream as `member` (any stable id of this worker) with a credit of
    /// `max_in_flight` records unsettled (0: the broker's default, 1000).
    ///
    /// # Errors
    /// The broker refused the open.
    pub async fn open<T: Transport>(
        client: &mut BrokerClient<T>,
        topic: &str,
        group: &str,
        member: &str,
        max_in_flight: u32,
    ) -> Result<Self, ClientError> {
        Self::open_with(
            client,
            pb::SharedConsumeOpen {
                group: group.into(),
                topic: topic.into(),
                member_id: member.into(),
                max_in_flight,
                ..Default::default()
            },
        )
        .await
    }

    /// Opens the stream with every field of the open message.
    ///
    /// # Errors
    /// The broker refused the open.
    pub async fn open_with<T: Transport>(
        client: &mut BrokerClient<T>,
        open: pb::SharedConsumeOpen,
    ) -> Result<Self, ClientError> {
        let (tx, rx) = mpsc::channel(64);
        let first = pb::SharedConsumeRequest {
            kind: Some(Kind::Open(open)),
        };
        tx.send(first).await.map_err(|_| ClientError::Closed)?;
        let inbound = client
            .shared_consume(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Self {
            tx,
            inbound,
            pending: Vec::new(),
            early: VecDeque::new(),
            next_id: 1,
        })
    }

    /// The next event; `None` when the broker ended the stream (it drains).
    ///
    /// # Errors
    /// The status the broker ended the stream with.
    pub async fn next(&mut self) -> Result<Option<SharedEvent>, ClientError> {
        if let Some(e) = self.early.pop_front() {
            return Ok(Some(e));
        }
        self.read().await
    }

    async fn read(&mut self) -> Result<Option<SharedEvent>, ClientError> {
        loop {
            let Some(msg) = self.inbound.message().await? else {
                return Ok(None);
            };
            match msg.kind {
                Some(Out::Deliveries(d)) => return Ok(Some(SharedEvent::Deliveries(d.deliveries))),
                Some(Out::Settled(s)) => {
                    return Ok(Some(SharedEvent::Settled {
                        id: s.id,
                        results: s.results,
                    }));
                }
                None => {}
            }
        }
    }

    /// The next records handed out (settle answers arriving meanwhile are dropped); `None`
    /// when the stream ended.
    ///
    /// # Errors
    /// As [`SharedStream::next`].
    pub async fn deliveries(&mut self) -> Result<Option<Vec<pb::SharedDelivery>>, ClientError> {
        loop {
            match self.next().await? {
                None => return Ok(None),
                Some(SharedEvent::Deliveries(d)) => return Ok(Some(d)),
                Some(SharedEvent::Settled { .. }) => {}
            }
        }
    }

    pub fn accept(&mut self, d: &pb::SharedDelivery) {
        self.pending
            .push(settlement(d, pb::SettleKind::Accept, None, ""));
    }

    /// Gives the record back, available after `delay_ms` (`None`: the group's backoff).
    pub fn release(&mut self, d: &pb::SharedDelivery, delay_ms: Option<u32>, reason: &str) {
        self.pending
            .push(settlement(d, pb::SettleKind::Release, delay_ms, reason));
    }

    /// Sends the record to the group's dead-letter topic.
    pub fn reject(&mut self, d: &pb::SharedDelivery, reason: &str) {
        self.pending
            .push(settlement(d, pb::SettleKind::Reject, None, reason));
    }

    /// Keeps the record locked for another ack timeout.
    pub fn extend(&mut self, d: &pb::SharedDelivery) {
        self.pending
            .push(settlement(d, pb::SettleKind::Extend, None, ""));
    }

    /// Queues any settlement.
    pub fn push(&mut self, s: pb::Settlement) {
        self.pending.push(s);
    }

    /// Sends the queued settlements as one batch without waiting for its answer (an
    /// [`SharedEvent::Settled`] with the returned id); `None` when nothing was queued.
    ///
    /// # Errors
    /// `Closed` when the stream has ended.
    pub async fn flush(&mut self) -> Result<Option<u64>, ClientError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let id = self.next_id;
        self.next_id += 1;
        let settle = pb::SharedConsumeSettle {
            id,
            settlements: std::mem::take(&mut self.pending),
        };
        self.tx
            .send(pb::SharedConsumeRequest {
                kind: Some(Kind::Settle(settle)),
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(Some(id))
    }

    /// Sends the queued settlements and waits for their results (records pushed meanwhile are
    /// kept for [`SharedStream::next`]).
    ///
    /// # Errors
    /// The stream ended (`Closed` when it ended cleanly) before the answer.
    pub async fn settle(&mut self) -> Result<Vec<pb::SettleResult>, ClientError> {
        let Some(want) = self.flush().await? else {
            return Ok(Vec::new());
        };
        loop {
            match self.read().await? {
                None => return Err(ClientError::Closed),
                Some(SharedEvent::Settled { id, results }) if id == want => return Ok(results),
                Some(e) => self.early.push_back(e),
            }
        }
    }

    /// Changes the credit: records unsettled on this stream at most (0 pauses the hand-out).
    ///
    /// # Errors
    /// `Closed` when the stream has ended.
    pub async fn set_credit(&mut self, max_in_flight: u32) -> Result<(), ClientError> {
        self.tx
            .send(pb::SharedConsumeRequest {
                kind: Some(Kind::Credit(pb::SharedConsumeCredit { max_in_flight })),
            })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Ends the stream cleanly: half-closes it (queued settlements not flushed are dropped) and
    /// reads it to its end. Returns the records handed out that [`SharedStream::next`] did not
    /// return yet: they are still locked to the member (release them with a unary Settle, e.g.
    /// [`super::SharedConsumer`] of the same member, or let their locks expire).
    ///
    /// # Errors
    /// The status the broker ended the stream with.
    pub async fn close(self) -> Result<Vec<pb::SharedDelivery>, ClientError> {
        let Self {
            tx,
            mut inbound,
            early,
            ..
        } = self;
        drop(tx);
        let mut left: Vec<pb::SharedDelivery> = Vec::new();
        for e in early {
            if let SharedEvent::Deliveries(d) = e {
                left.extend(d);
            }
        }
        while let Some(msg) = inbound.message().await? {
            if let Some(Out::Deliveries(d)) = msg.kind {
                left.extend(d.deliveries);
            }
        }
        Ok(left)
    }
}
