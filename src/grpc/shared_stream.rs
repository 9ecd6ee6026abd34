//! The SharedConsume stream (shared groups, issue 14): a member opens it naming the group, the
//! topic, its id and its credit; the server pushes records as they become available (the core's
//! long-wait hand-out, woken by new records, releases and locks or delays falling due) while
//! fewer than the credit are handed out on the stream and not settled, and answers each settle
//! batch sent on the same stream. A dropped stream is a crashed member: nothing is released,
//! its locks stay until they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::status::to_status;
use crate::broker::shared::{SettleAction, SettleOutcome, Settled, Settlement, SharedPollRequest};
use crate::broker::{BrokerError, Caller, ReadLimits};
use crate::proto as pb;
use crate::sync::lock;
use pb::shared_consume_request::Kind;
use pb::shared_consume_response::Kind as Out;

pub type SharedConsumeStream = ReceiverStream<Result<pb::SharedConsumeResponse, Status>>;

/// The credit when the open gives none.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1000;

/// What the stream has handed out and not seen settled, against its credit: (partition,
/// offset) → the lock's deadline (unix ns). A lock past its deadline no longer counts (the
/// record may be another member's by now; a late settle of it is refused and forgotten).
#[derive(Default)]
struct Credit {
    out: HashMap<(u32, u64), i64>,
    max: usize,
}

struct Shared {
    credit: Mutex<Credit>,
    /// Woken when the credit has room again.
    room: Notify,
}

impl Shared {
    /// Records the stream may hand out now, and when a lock it counts next expires.
    fn room(&self) -> (usize, Option<i64>) {
        let now = crate::broker::now_ns();
        let mut c = lock(&self.credit);
        c.out.retain(|_, until| *until > now);
        let next = c.out.values().min().copied();
        (c.max.saturating_sub(c.out.len()), next)
    }

    /// Forgets what a settle batch ended (everything but a successful extend, whose lock now
    /// runs to `extended_until`).
    fn settled(&self, keys: &[(u32, u64)], outcomes: &[SettleOutcome], extended_until: i64) {
        let mut c = lock(&self.credit);
        for (k, o) in keys.iter().zip(outcomes) {
            if matches!(o, Ok(Settled::Extended)) {
                if let Some(until) = c.out.get_mut(k) {
                    *until = extended_until;
                }
            } else {
                c.out.remove(k);
            }
        }
        drop(c);
        self.room.notify_one();
    }
}

/// Runs one SharedConsume stream. `limits` holds the server's longest wait and the defaults.
///
/// # Errors
/// INVALID_ARGUMENT when the first message is not an open or names no member; later failures
/// (the hand-out's or a settle's) end the stream with their status.
pub async fn shared_consume(
    caller: Caller,
    shutdown: CancellationToken,
    limits: ReadLimits,
    mut inbound: Streaming<pb::SharedConsumeRequest>,
) -> Result<SharedConsumeStream, Status> {
    let first = inbound
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("SharedConsume ended before its open message"))?;
    let Some(Kind::Open(open)) = first.kind else {
        return Err(Status::invalid_argument(
            "the first message of SharedConsume must be `open`",
        ));
    };
    if open.member_id.is_empty() {
        return Err(Status::invalid_argument(
            "SharedConsume needs a member id (any stable non-empty id of the worker)",
        ));
    }
    let max = if open.max_in_flight == 0 {
        DEFAULT_MAX_IN_FLIGHT
    } else {
        open.max_in_flight
    };
    let shared = Arc::new(Shared {
        credit: Mutex::new(Credit {
            out: HashMap::new(),
            max: max as usize,
        }),
        room: Notify::new(),
    });
    let per_message = ReadLimits::from_wire(open.max_records, open.max_bytes, 0);
    let poll = SharedPollRequest {
        group: open.group,
        topic: open.topic,
        member: open.member_id,
        limits: ReadLimits {
            max_wait: limits.max_wait,
            ..per_message
        },
    };
    let (tx, rx) = mpsc::channel(16);
    let stop = shutdown.child_token();
    tokio::spawn(hand_out(
        caller.clone(),
        poll.clone(),
        Arc::clone(&shared),
        tx.clone(),
        stop.clone(),
    ));
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                msg = inbound.next() => msg,
                () = stop.cancelled() => break,
            };
            let Some(Ok(msg)) = msg else { break };
            let res = match msg.kind {
                Some(Kind::Settle(s)) => settle(&caller, &poll, &shared, s).await,
                Some(Kind::Credit(c)) => {
                    lock(&shared.credit).max = c.max_in_flight as usize;
                    shared.room.notify_one();
                    Ok(None)
                }
                Some(Kind::Open(_)) => Err(BrokerError::InvalidArgument(
                    "this stream is open already; open a new stream for another group or topic"
                        .into(),
                )),
                None => Err(BrokerError::InvalidArgument(
                    "a SharedConsume message needs a kind (open, settle or credit)".into(),
                )),
            };
            let sent = match res {
                Ok(None) => true,
                Ok(Some(answer)) => tx.send(Ok(answer)).await.is_ok(),
                Err(e) => {
                    let _ = tx.send(Err(to_status(&e))).await;
                    false
                }
            };
            if !sent {
                break;
            }
        }
        // The member is gone (or failed): the hand-out stops; its locks stay until they expire.
        stop.cancel();
    });
    Ok(ReceiverStream::new(rx))
}

/// One settle batch through the caller, answered with its results.
async fn settle(
    caller: &Caller,
    poll: &SharedPollRequest,
    shared: &Shared,
    s: pb::SharedConsumeSettle,
) -> Result<Option<pb::SharedConsumeResponse>, BrokerError> {
    let ss = super::shared::settlements(s.settlements)?;
    let started = crate::broker::now_ns();
    let outcomes = caller
        .settle(&poll.group, &poll.topic, &poll.member, &ss)
        .await?;
    let ack_timeout = caller
        .broker()
        .shared_group_config(&poll.group)
        .map_or(0, |c| {
            i64::try_from(c.ack_timeout.as_nanos()).unwrap_or(i64::MAX)
        });
    let keys: Vec<_> = ss.iter().map(|s| (s.partition, s.offset)).collect();
    shared.settled(&keys, &outcomes, started.saturating_add(ack_timeout));
    let results = super::shared::results(&ss, outcomes).results;
    Ok(Some(pb::SharedConsumeResponse {
        kind: Some(Out::Settled(pb::SharedConsumeSettled { id: s.id, results })),
    }))
}

/// Pushes records while the credit has room, waiting (in the core) for them to become
/// available; ends when the broker drains, the member goes, or a hand-out fails.
async fn hand_out(
    caller: Caller,
    mut poll: SharedPollRequest,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<pb::SharedConsumeResponse, Status>>,
    stop: CancellationToken,
) {
    let most = poll.limits.max_records;
    loop {
        let room = shared.room.notified();
        tokio::pin!(room);
        room.as_mut().enable();
        let (credit, expires) = shared.room();
        if credit == 0 {
            // Room comes back with a settle, a larger credit, or a counted lock expiring.
            let wait = expires.map_or(std::time::Duration::from_secs(3600), |at| {
                let ns = at.saturating_sub(crate::broker::now_ns()).max(0);
                std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
            });
            tokio::select! {
                () = &mut room => {}
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return,
            }
            continue;
        }
        poll.limits.max_records = credit.min(most);
        // Not cancelled in the middle of a pass: what it locks is sent, or given back below.
        let got = caller.shared_poll_until(poll.clone(), &stop).await;
        if stop.is_cancelled() {
            if let Ok(ds) = got {
                let keys = ds.iter().map(|d| (d.partition, d.record.offset)).collect();
                give_back(&caller, &poll, keys).await;
            }
            return;
        }
        match got {
            Err(e) => {
                let _ = tx.send(Err(to_status(&e))).await;
                stop.cancel();
                return;
            }
            Ok(ds) if ds.is_empty() => {
                // Draining: no more hand-outs; settles are still answered until the server stops.
                if caller.broker().is_draining() {
                    return;
                }
            }
            Ok(ds) => {
                let keys: Vec<(u32, u64)> =
                    ds.iter().map(|d| (d.partition, d.record.offset)).collect();
                lock(&shared.credit)
                    .out
                    .extend(keys.iter().zip(&ds).map(|(k, d)| (*k, d.lock_deadline_ns)));
                let msg = pb::SharedConsumeResponse {
                    kind: Some(Out::Deliveries(super::shared::deliveries(ds))),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    // The stream closed before they were queued to it: nobody saw them.
                    stop.cancel();
                    give_back(&caller, &poll, keys).await;
                    return;
                }
            }
        }
    }
}

/// Gives back records locked for a stream that ended before they were sent (nobody saw them):
/// available again at once, their hand-out not counted as a delivery.
async fn give_back(caller: &Caller, poll: &SharedPollRequest, keys: Vec<(u32, u64)>) {
    if keys.is_empty() {
        return;
    }
    let ss: Vec<Settlement> = keys
        .into_iter()
        .map(|(partition, offset)| Settlement {
            partition,
            offset,
            action: SettleAction::NotSent,
        })
        .collect();
    if let Err(e) = caller
        .settle(&poll.group, &poll.topic, &poll.member, &ss)
        .await
    {
        tracing::warn!(group = %poll.group, error = %e, "giving back records of a closed stream failed; they come back when their locks expire");
    }
}
