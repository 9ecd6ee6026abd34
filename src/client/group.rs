//! The group consumer: a member of a consumer group (JoinGroup stream) that polls only the
//! partitions the server assigns it.
//!
//! - Assignment and revocation reach the [`RebalanceListener`]. A revoked partition is
//!   committed (the positions after the records already returned by `poll`: records returned
//!   by one poll count as processed at the next call, like Kafka's auto-commit) and only then
//!   released, so its next owner starts where this one stopped.
//! - A fenced call (FAILED_PRECONDITION: removed after a session timeout, replaced) or an ended
//!   stream makes it rejoin: the listener hears `on_lost` for what it held, then `on_assigned`.
//! - A long poll is cut short when the assignment changes, so a revocation is answered at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{BrokerClient, ClientError, Transport};
use crate::proto as pb;
use pb::join_group_request::Kind;

/// A topic and a partition.
pub type Partition = (String, u32);

/// Told of the member's partitions as they change. Every method has an empty default.
pub trait RebalanceListener: Send {
    /// Partitions newly assigned to this member.
    fn on_assigned(&mut self, _partitions: &[Partition]) {}
    /// Partitions taken away: called before the consumer commits and releases them.
    fn on_revoked(&mut self, _partitions: &[Partition]) {}
    /// Partitions lost without a release (the member was fenced); they may already be with
    /// another member.
    fn on_lost(&mut self, _partitions: &[Partition]) {}
}

/// A listener that does nothing.
pub struct NoListener;
impl RebalanceListener for NoListener {}

/// How the member joins and polls.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group: String,
    pub topics: Vec<String>,
    /// Static membership: rejoining with it within the session timeout gets the same
    /// partitions back without a rebalance.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub max_records: u32,
    /// Long-poll wait of one `poll`.
    pub max_wait_ms: u32,
    /// Read with member Subscribe streams (one per topic; the server follows the assignment)
    /// instead of Poll calls: records are pushed, for the highest throughput.
    pub stream: bool,
}

impl GroupConfig {
    pub fn new(group: &str, topics: &[&str]) -> Self {
        Self {
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            instance_id: None,
            client_id: "obelisk-rust".into(),
            max_records: 500,
            max_wait_ms: 1000,
            stream: false,
        }
    }
}

#[derive(Debug, Clone)]
enum SessionState {
    Active(pb::JoinGroupResponse),
    Ended(String),
}

/// One JoinGroup stream.
struct Session {
    requests: mpsc::Sender<pb::JoinGroupRequest>,
    state: watch::Receiver<SessionState>,
    member_id: String,
    epoch: u64,
    task: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    async fn open<T: Transport>(
        client: &mut BrokerClient<T>,
        config: &GroupConfig,
    ) -> Result<Self, ClientError> {
        let (requests, rx) = mpsc::channel(16);
        let join = pb::JoinGroupRequest {
            kind: Some(Kind::Join(pb::JoinGroupJoin {
                group: config.group.clone(),
                topics: config.topics.clone(),
                instance_id: config.instance_id.clone().unwrap_or_default(),
                client_id: config.client_id.clone(),
            })),
        };
        requests.send(join).await.map_err(|_| ClientError::Closed)?;
        let mut inbound = client
            .join_group(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let first = inbound.message().await?.ok_or(ClientError::Closed)?;
        let (member_id, epoch) = (first.member_id.clone(), first.member_epoch);
        let beat = Duration::from_millis(u64::from(first.session_timeout_ms.max(300)) / 3);
        let (tx, state) = watch::channel(SessionState::Active(first));
        let heartbeats = requests.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(beat);
            tick.tick().await;
            loop {
                tokio::select! {
                    msg = inbound.message() => match msg {
                        Ok(Some(m)) => { let _ = tx.send(SessionState::Active(m)); }
                        Ok(None) => { let _ = tx.send(SessionState::Ended("the broker ended the membership".into())); break; }
                        Err(s) => { let _ = tx.send(SessionState::Ended(s.message().to_string())); break; }
                    },
                    _ = tick.tick() => {
                        let hb = pb::JoinGroupRequest { kind: Some(Kind::Heartbeat(pb::JoinGroupHeartbeat {})) };
                        if heartbeats.send(hb).await.is_err() { break; }
                    }
                }
            }
        });
        Ok(Self {
            requests,
            state,
            member_id,
            epoch,
            task,
        })
    }
}

fn flatten(tps: &[pb::TopicPartitions]) -> BTreeSet<Partition> {
    tps.iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.clone(), p)))
        .collect()
}

fn grouped(parts: &[Partition]) -> Vec<pb::TopicPartitions> {
    let mut by: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, p) in parts {
        by.entry(t).or_default().push(*p);
    }
    by.into_iter()
        .map(|(t, ps)| pb::TopicPartitions {
            topic: t.to_string(),
            partitions: ps,
        })
        .collect()
}

/// A member id and epoch: which membership a stream belongs to.
type MembershipKey = (String, u64);

/// A member of a consumer group.
pub struct GroupConsumer<T: Transport = Channel> {
    client: BrokerClient<T>,
    config: GroupConfig,
    session: Option<Session>,
    assigned: BTreeSet<Partition>,
    /// The next offset after the records returned so far, per partition.
    delivered: BTreeMap<Partition, u64>,
    committed: BTreeMap<Partition, u64>,
    listener: Box<dyn RebalanceListener>,
    next_topic: usize,
    /// Stream mode: the Subscribe streams of the membership (member id, epoch) they belong to.
    streams: Option<(MembershipKey, Vec<tonic::Streaming<pb::SubscribeResponse>>)>,
}

impl<T: Transport> GroupConsumer<T> {
    /// Joins the group.
    ///
    /// # Errors
    /// The broker's refusal (unknown topic, bad name...) or a connection failure.
    pub async fn join(
        mut client: BrokerClient<T>,
        config: GroupConfig,
        listener: Box<dyn RebalanceListener>,
    ) -> Result<Self, ClientError> {
        let session = Session::open(&mut client, &config).await?;
        let mut me = Self {
            client,
            config,
            session: Some(session),
            assigned: BTreeSet::new(),
            delivered: BTreeMap::new(),
            committed: BTreeMap::new(),
            listener,
            next_topic: 0,
            streams: None,
        };
        me.reconcile().await?;
        Ok(me)
    }

    /// The member id and epoch of the current membership.
    pub fn member(&self) -> Option<(&str, u64)> {
        self.session
            .as_ref()
            .map(|s| (s.member_id.as_str(), s.epoch))
    }

    /// Records one poll returns at most.
    pub fn set_max_records(&mut self, n: u32) {
        self.config.max_records = n;
    }

    /// Partitions this member consumes now.
    pub fn assignment(&self) -> Vec<Partition> {
        self.assigned.iter().cloned().collect()
    }

    /// Applies the latest membership state: rejoins after an end, commits and releases revoked
    /// partitions, reports new ones.
    async fn reconcile(&mut self) -> Result<(), ClientError> {
        let state = match &mut self.session {
            Some(s) => s.state.borrow_and_update().clone(),
            None => SessionState::Ended("not joined".into()),
        };
        let resp = match state {
            SessionState::Active(r) => r,
            SessionState::Ended(why) => {
                tracing::info!(
                    group = self.config.group,
                    reason = why,
                    "membership ended; rejoining"
                );
                self.session = None;
                let lost: Vec<Partition> = std::mem::take(&mut self.assigned).into_iter().collect();
                for p in &lost {
                    self.delivered.remove(p);
                }
                if !lost.is_empty() {
                    self.listener.on_lost(&lost);
                }
                self.session = Some(Session::open(&mut self.client, &self.config).await?);
                return Box::pin(self.reconcile()).await;
            }
        };
        let revoke: Vec<Partition> = flatten(&resp.revoke)
            .into_iter()
            .filter(|p| self.assigned.contains(p))
            .collect();
        if !revoke.is_empty() {
            self.listener.on_revoked(&revoke);
            // Released even if the commit fails: the next owner then reads again from the last
            // commit (at least once), where holding on would stall the partition.
            if let Err(e) = self.commit_partitions(&revoke).await {
                tracing::warn!(group = self.config.group, error = %e, "commit before release failed");
            }
            for p in &revoke {
                self.assigned.remove(p);
                self.delivered.remove(p);
            }
        }
        // Everything the server still has us own but no longer assigns goes back (a revoke we
        // applied before, or one sent again).
        let all_revoke = flatten(&resp.revoke);
        if !all_revoke.is_empty()
            && let Some(s) = &self.session
        {
            let release = pb::JoinGroupRequest {
                kind: Some(Kind::Release(pb::JoinGroupRelease {
                    partitions: grouped(&all_revoke.into_iter().collect::<Vec<_>>()),
                })),
            };
            let _ = s.requests.send(release).await;
        }
        let now = flatten(&resp.assigned);
        let new: Vec<Partition> = now.difference(&self.assigned).cloned().collect();
        let gone: Vec<Partition> = self.assigned.difference(&now).cloned().collect();
        for p in &gone {
            self.assigned.remove(p);
            self.delivered.remove(p);
        }
        if !gone.is_empty() {
            self.listener.on_lost(&gone);
        }
        if !new.is_empty() {
            self.assigned.extend(new.iter().cloned());
            self.listener.on_assigned(&new);
        }
        Ok(())
    }

    /// Records from the member's partitions (long poll up to `max_wait_ms`, cut short by an
    /// assignment change). The records of the previous call count as processed: their
    /// partitions are committed before being released.
    ///
    /// # Errors
    /// The broker's error (other than fencing, which rejoins) or a connection failure.
    pub async fn poll(&mut self) -> Result<Vec<pb::Record>, ClientError> {
        self.reconcile().await?;
        if self.config.stream {
            return self.poll_stream().await;
        }
        let topics: Vec<String> = self
            .assigned
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let wait = Duration::from_millis(u64::from(self.config.max_wait_ms));
        let Some(session) = &mut self.session else {
            return Ok(Vec::new());
        };
        if topics.is_empty() {
            let _ = tokio::time::timeout(wait, session.state.changed()).await;
            return Ok(Vec::new());
        }
        self.next_topic = self.next_topic.wrapping_add(1);
        let topic = topics[self.next_topic % topics.len()].clone();
        let req = pb::PollRequest {
            topic: topic.clone(),
            group: self.config.group.clone(),
            max_records: self.config.max_records,
            max_wait_ms: if topics.len() > 1 {
                0
            } else {
                self.config.max_wait_ms
            },
            member_id: session.member_id.clone(),
            member_epoch: session.epoch,
            ..Default::default()
        };
        let mut client = self.client.clone();
        let res = tokio::select! {
            r = client.poll(req) => Some(r),
            _ = session.state.changed() => None,
        };
        let records = match res {
            None => return Ok(Vec::new()),
            Some(Ok(r)) => r.into_inner().records,
            Some(Err(s)) if s.code() == tonic::Code::FailedPrecondition => {
                tracing::info!(
                    group = self.config.group,
                    reason = s.message(),
                    "fenced; rejoining"
                );
                // Rejoin at the next call.
                self.session = None;
                return Ok(Vec::new());
            }
            Some(Err(s)) => return Err(s.into()),
        };
        for r in &records {
            let e = self
                .delivered
                .entry((topic.clone(), r.partition))
                .or_default();
            *e = (*e).max(r.offset + 1);
        }
        Ok(records)
    }

    /// Stream mode's `poll`: the next message of one of the member's Subscribe streams.
    async fn poll_stream(&mut self) -> Result<Vec<pb::Record>, ClientError> {
        let wait = Duration::from_millis(u64::from(self.config.max_wait_ms));
        let Some(session) = &mut self.session else {
            return Ok(Vec::new());
        };
        let key = (session.member_id.clone(), session.epoch);
        if self.streams.as_ref().map(|(k, _)| k) != Some(&key) {
            let mut streams = Vec::new();
            for topic in &self.config.topics {
                let opened = self
                    .client
                    .clone()
                    .subscribe(pb::SubscribeRequest {
                        topic: topic.clone(),
                        group: self.config.group.clone(),
                        max_records_per_message: self.config.max_records,
                        member_id: key.0.clone(),
                        member_epoch: key.1,
                        ..Default::default()
                    })
                    .await;
                match opened {
                    Ok(r) => streams.push(r.into_inner()),
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                        self.session = None;
                        return Ok(Vec::new());
                    }
                    Err(s) => return Err(s.into()),
                }
            }
            self.streams = Some((key, streams));
        }
        let Some((_, streams)) = &mut self.streams else {
            return Ok(Vec::new());
        };
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        self.next_topic = self.next_topic.wrapping_add(1);
        let i = self.next_topic % streams.len();
        let topic = self.config.topics[i].clone();
        let got = tokio::select! {
            m = streams[i].message() => Some(m),
            _ = session.state.changed() => None,
            () = tokio::time::sleep(wait) => None,
        };
        let records = match got {
            None => return Ok(Vec::new()),
            Some(Ok(Some(m))) => m.records,
            Some(Ok(None)) => {
                self.streams = None;
                return Ok(Vec::new());
            }
            Some(Err(s)) if s.code() == tonic::Code::FailedPrecondition => {
                self.session = None;
                self.streams = None;
                return Ok(Vec::new());
            }
            Some(Err(s)) => return Err(s.into()),
        };
        // A record of a partition this member has not been told of yet: its assignment is on
        // the way (the stream follows the server's view); take it in before deciding.
        if records
            .iter()
            .any(|r| !self.assigned.contains(&(topic.clone(), r.partition)))
        {
            self.reconcile().await?;
        }
        // The server sends only partitions it assigns this member, so every record is handed
        // out (dropping one would skip it for good); one read just before a revocation the
        // member already released is its next owner's too (at least once), and is not counted
        // for commits.
        for r in &records {
            let p = (topic.clone(), r.partition);
            if self.assigned.contains(&p) {
                let e = self.delivered.entry(p).or_default();
                *e = (*e).max(r.offset + 1);
            }
        }
        Ok(records)
    }

    /// Commits the positions after every record returned so far.
    ///
    /// # Errors
    /// The broker's error; FAILED_PRECONDITION when the member was fenced (nothing changed).
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let parts: Vec<Partition> = self.delivered.keys().cloned().collect();
        let res = self.commit_partitions(&parts).await;
        if res
            .as_ref()
            .is_err_and(|e| e.code() == Some(tonic::Code::FailedPrecondition))
        {
            // Fenced: rejoin at the next poll.
            self.session = None;
        }
        res
    }

    async fn commit_partitions(&mut self, parts: &[Partition]) -> Result<(), ClientError> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        let mut by_topic: BTreeMap<String, Vec<pb::PartitionOffset>> = BTreeMap::new();
        for p in parts {
            let Some(&next) = self.delivered.get(p) else {
                continue;
            };
            if self.committed.get(p) == Some(&next) {
                continue;
            }
            by_topic
                .entry(p.0.clone())
                .or_default()
                .push(pb::PartitionOffset {
                    partition: p.1,
                    offset: next,
                });
        }
        for (topic, offsets) in by_topic {
            let done: Vec<(Partition, u64)> = offsets
                .iter()
                .map(|o| ((topic.clone(), o.partition), o.offset))
                .collect();
            self.client
                .commit(pb::CommitRequest {
                    topic,
                    group: self.config.group.clone(),
                    offsets,
                    member_id: session.member_id.clone(),
                    member_epoch: session.epoch,
                })
                .await?;
            self.committed.extend(done);
        }
        Ok(())
    }

    /// Commits what was returned and leaves the group (a static member too): its partitions
    /// move at once.
    ///
    /// # Errors
    /// The commit's error.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let committed = self.commit().await;
        if let Some(s) = self.session.take() {
            let leave = pb::JoinGroupRequest {
                kind: Some(Kind::Leave(pb::JoinGroupLeave {})),
            };
            let _ = s.requests.send(leave).await;
            let mut state = s.state.clone();
            // The server ends the stream once the member is gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while matches!(*state.borrow_and_update(), SessionState::Active(_)) {
                    if state.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        committed
    }
}
