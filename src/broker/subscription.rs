//! Subscriptions: a pull-driven stream of records as they are acknowledged.
//!
//! A subscription holds only its positions; each [`Subscription::next_batch`] reads what is new
//! (from the ring buffer when it is recent) or waits for the next acknowledgement. The caller pulls
//! when its transport has room, so a slow subscriber holds back only itself and the broker buffers
//! nothing for it.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Broker;
use super::consume::resolve_positions;
use super::error::{BrokerError, NameKind};
use super::groups::MemberView;
use super::names;
use super::observe::OpenSubscription;
use super::types::{ConsumedRecord, Position, StartPosition, SubscribeRequest};
use crate::storage::Topic;

pub struct Subscription {
    topic: Arc<Topic>,
    positions: Vec<u64>,
    changes: watch::Receiver<u64>,
    max_records: usize,
    /// The broker's drain signal: the subscription ends on it.
    drain: CancellationToken,
    /// Set once the subscription reported its end (topic deleted).
    ended: bool,
    /// Partition to read first next time, so that one busy partition cannot starve the others.
    next_first: usize,
    /// Reports this subscription open to the broker's observer until it is dropped.
    _open: OpenSubscription,
    /// A member's subscription follows its assignment (groups, issue 13).
    lease: Option<Lease>,
}

/// What a member's subscription follows: the partitions it may read, by index.
struct Lease {
    broker: Broker,
    group: String,
    view: watch::Receiver<MemberView>,
    active: Vec<bool>,
}

impl Lease {
    /// Applies the member's latest view: revoked partitions stop; newly assigned ones start at
    /// the group's committed offsets. An ended membership is an error (fenced).
    fn refresh(&mut self, topic: &Topic, positions: &mut [u64]) -> Result<(), BrokerError> {
        let closed = self.view.has_changed().is_err();
        let view = self.view.borrow_and_update().clone();
        if let Some(why) = view
            .ended
            .or_else(|| closed.then(|| "the membership ended".to_string()))
        {
            return Err(BrokerError::Fenced {
                group: self.group.clone(),
                reason: why,
            });
        }
        let now: Vec<bool> = topic
            .partitions()
            .iter()
            .map(|p| {
                view.assigned
                    .iter()
                    .any(|tp| tp.topic == topic.name && tp.partition == p.id())
            })
            .collect();
        if now.iter().zip(&self.active).any(|(n, a)| *n && !*a) {
            let committed =
                self.broker
                    .group_positions(topic, &self.group, StartPosition::Earliest)?;
            for (i, (n, a)) in now.iter().zip(&self.active).enumerate() {
                if *n && !*a {
                    positions[i] = committed[i];
                }
            }
        }
        self.active = now;
        Ok(())
    }
}

impl Broker {
    /// Starts a subscription from `start`, or from the group's committed offsets (earliest where
    /// it has none).
    ///
    /// # Errors
    /// `InvalidName`, `TopicNotFound`, `InvalidArgument` (neither a group nor a start), `DataLoss`.
    pub fn subscribe(&self, req: SubscribeRequest) -> Result<Subscription, BrokerError> {
        let topic = self.existing_topic(&req.topic)?;
        let lease = match (&req.group, &req.member) {
            (Some(group), Some(member)) => {
                names::validate(NameKind::Group, group)?;
                Some(Lease {
                    broker: self.clone(),
                    group: group.clone(),
                    view: self.member_watch(group, member)?,
                    active: vec![false; topic.partitions().len()],
                })
            }
            (None, Some(_)) => {
                return Err(BrokerError::InvalidArgument(
                    "a subscription with a member id needs its group".into(),
                ));
            }
            (Some(group), None) => {
                if self.inner.groups.has_members(group) {
                    return Err(BrokerError::GroupHasMembers {
                        group: group.clone(),
                        what: "subscribe with the member id and epoch of a member (join the group)"
                            .into(),
                    });
                }
                None
            }
            (None, None) => None,
        };
        let mut positions: Vec<u64> = match (req.start, &req.group) {
            (Some(pos), _) => resolve_positions(&topic, pos)?
                .into_iter()
                .map(|(_, o)| o)
                .collect(),
            (None, Some(group)) => {
                names::validate(NameKind::Group, group)?;
                self.group_positions(&topic, group, StartPosition::Earliest)?
            }
            (None, None) => resolve_positions(&topic, Position::Earliest)?
                .into_iter()
                .map(|(_, o)| o)
                .collect(),
        };
        let mut lease = lease;
        if let Some(l) = &mut lease {
            l.refresh(&topic, &mut positions)?;
        }
        Ok(Subscription {
            lease,
            _open: OpenSubscription::start(&self.inner.observer, &topic.name),
            changes: topic.watch_changes(),
            topic,
            positions,
            max_records: if req.max_records_per_batch == 0 {
                super::ReadLimits::DEFAULT_MAX_RECORDS
            } else {
                req.max_records_per_batch
            },
            drain: self.inner.drain.token(),
            next_first: 0,
            ended: false,
        })
    }
}

impl Subscription {
    /// The next records, waiting for new ones when there are none. `None` once the broker drains
    /// (or stops).
    ///
    /// # Errors
    /// `OffsetOutOfRange` when retention removed the subscriber's position, `DataLoss`,
    /// `Unavailable`.
    pub async fn next_batch(&mut self) -> Option<Result<Vec<ConsumedRecord>, BrokerError>> {
        // Set when the wait below saw the member's view change (which marks it seen).
        let mut reassigned = false;
        loop {
            if self.drain.is_cancelled() || self.ended {
                return None;
            }
            if self.topic.is_closed() {
                // Deleted under the subscriber: say so once, then end.
                self.ended = true;
                return Some(Err(BrokerError::TopicNotFound(self.topic.name.clone())));
            }
            self.changes.borrow_and_update();
            if let Some(lease) = &mut self.lease
                && (std::mem::take(&mut reassigned) || lease.view.has_changed().unwrap_or(true))
                && let Err(e) = lease.refresh(&self.topic, &mut self.positions)
            {
                self.ended = true;
                return Some(Err(e));
            }
            let n = self.positions.len();
            let first = self.next_first % n;
            self.next_first = self.next_first.wrapping_add(1);
            // Read partitions in rotated order.
            let mut out = Vec::new();
            for k in 0..n {
                let i = (first + k) % n;
                if out.len() >= self.max_records {
                    break;
                }
                if self.lease.as_ref().is_some_and(|l| !l.active[i]) {
                    continue;
                }
                let got = match read_one(
                    &self.topic,
                    i,
                    self.positions[i],
                    self.max_records - out.len(),
                ) {
                    Ok(g) => g,
                    Err(e) => return Some(Err(e)),
                };
                if let Some(last) = got.last() {
                    self.positions[i] = last.record.offset + 1;
                }
                out.extend(got);
            }
            if !out.is_empty() {
                return Some(Ok(out));
            }
            let assignment = async {
                match &mut self.lease {
                    // A closed channel is seen by `refresh` as the membership's end.
                    Some(l) => {
                        let _ = l.view.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.changes.changed() => if changed.is_err() { return None },
                () = self.drain.cancelled() => return None,
                () = self.topic.closed() => {}
                () = assignment => reassigned = true,
            }
        }
    }

    /// Current position (next offset) per partition.
    pub fn positions(&self) -> &[u64] {
        &self.positions
    }
}

fn read_one(
    topic: &Topic,
    partition: usize,
    position: u64,
    max_records: usize,
) -> Result<Vec<ConsumedRecord>, BrokerError> {
    let p = &topic.partitions()[partition];
    let records = p
        .core()
        .read(position, max_records, super::ReadLimits::DEFAULT_MAX_BYTES)
        .map_err(|e| BrokerError::from_storage(&topic.name, p.id(), e))?;
    Ok(records
        .into_iter()
        .map(|record| ConsumedRecord {
            partition: p.id(),
            record,
        })
        .collect())
}
