//! The authorizing facade: every adapter reaches the broker through a [`Caller`], a broker handle
//! bound to one principal. Each method checks the ACLs once per request and resource (never per
//! record, and without allocating) and then calls the [`Broker`] method of the same name.
//!
//! # Adding a Broker method
//! Give it a `Caller` method here that names what it touches (`self.authorize(Operation, Resource)`
//! for each topic, group or the cluster) before calling through, and call that from the
//! adapters. Lists filter out what the caller may not describe. A denial never reveals whether
//! the resource exists: the check runs before any lookup, and its message is the same either way.

use std::sync::Arc;

use super::{
    Broker, BrokerError, ConsumedRecord, FetchRequest, FetchResponse, GroupMembership,
    GroupPartition, JoinRequest, MemberRef, Membership, PartitionSnapshot, PendingProduce,
    PollRequest, Position, ProduceRecord, ProducerGrant, ProducerIdentity, RecordAck,
    SubscribeRequest, Subscription, TopicConfig, TopicDescription,
};
use crate::auth::{AclRule, Credentials, Operation, Principal, Resource, Security};

/// A broker handle acting for one principal. Cheap to make, one per request or connection.
#[derive(Clone)]
pub struct Caller {
    broker: Broker,
    principal: Principal,
    security: Option<Arc<Security>>,
    /// replication (issue 17): what a cluster follower does with this caller's writes.
    routing: Routing,
}

/// replication (issue 17): what a cluster node that is not the leader does with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// Forwards it to the leader (protocols whose clients cannot route: legacy TCP, REST).
    #[default]
    Forward,
    /// Refuses it with `NotLeader` naming the leader (gRPC: clients follow it).
    Redirect,
}

impl Broker {
    /// Turns security on (or sets it explicitly off) for every caller from now on. Set once,
    /// before serving; returns false (and changes nothing) if it was already set.
    pub fn secure(&self, security: Security) -> bool {
        self.inner.security.set(Arc::new(security)).is_ok()
    }

    /// The security settings, if [`Broker::secure`] was called.
    pub fn security(&self) -> Option<&Arc<Security>> {
        self.inner.security.get()
    }

    /// A handle acting for the principal behind `creds`.
    ///
    /// # Errors
    /// `Unauthenticated` when security is on and `creds` name nobody (counted and logged).
    pub fn authenticate(&self, creds: Credentials<'_>) -> Result<Caller, BrokerError> {
        let principal = match self.security() {
            None => Principal::Anonymous,
            Some(s) => s.authenticate(creds).inspect_err(|e| {
                tracing::info!(error = %e, "request unauthenticated");
                self.inner.observer.unauthenticated();
            })?,
        };
        Ok(self.caller(principal))
    }

    /// A handle acting for `principal`, already authenticated.
    pub fn caller(&self, principal: Principal) -> Caller {
        Caller {
            broker: self.clone(),
            principal,
            security: self.security().cloned(),
            routing: Routing::Forward,
        }
    }
}

impl Caller {
    /// replication (issue 17): writes on a cluster follower fail with `NotLeader` instead of
    /// being forwarded.
    #[must_use]
    pub fn with_routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }

    /// Refuses a write a follower would forward when the caller redirects instead.
    ///
    /// # Errors
    /// `NotLeader` on a cluster follower, for a redirecting caller.
    pub fn route(&self) -> Result<(), BrokerError> {
        match self.routing {
            Routing::Forward => Ok(()),
            Routing::Redirect => self.broker.check_leader(),
        }
    }

    /// replication (issue 17): the cluster's nodes, leader and replicas.
    ///
    /// # Errors
    /// `PermissionDenied` without Describe on the cluster.
    pub fn cluster_metadata(&self) -> Result<super::ClusterMetadata, BrokerError> {
        self.authorize(Operation::Describe, Resource::Cluster)?;
        Ok(self.broker.cluster_metadata())
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The broker itself, for what needs no authorization (health, metrics).
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    fn may(&self, operation: Operation, resource: &Resource<'_>) -> bool {
        self.security
            .as_ref()
            .is_none_or(|s| s.allows(&self.principal, operation, resource))
    }

    /// Checks one operation on one resource.
    ///
    /// # Errors
    /// `PermissionDenied` (logged with the principal, operation and resource, and counted).
    pub fn authorize(
        &self,
        operation: Operation,
        resource: Resource<'_>,
    ) -> Result<(), BrokerError> {
        if self.may(operation, &resource) {
            return Ok(());
        }
        let principal = self.principal.name();
        tracing::warn!(
            principal,
            operation = operation.as_str(),
            resource = %resource,
            "access denied"
        );
        self.broker
            .inner
            .observer
            .access_denied(operation, resource.kind());
        Err(BrokerError::PermissionDenied(format!(
            "principal {principal:?} may not {operation} {resource}; an ACL must allow it"
        )))
    }

    fn topic(&self, operation: Operation, topic: &str) -> Result<(), BrokerError> {
        self.authorize(operation, Resource::Topic(topic))
    }

    fn topic_and_group(&self, topic: &str, group: &str) -> Result<(), BrokerError> {
        self.topic(Operation::Consume, topic)?;
        self.authorize(Operation::Consume, Resource::Group(group))
    }

    // ---- produce ----

    pub async fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<RecordAck>, BrokerError> {
        self.topic(Operation::Produce, topic)?;
        self.route()?;
        self.broker.produce(topic, records).await
    }

    pub async fn enqueue(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<PendingProduce, BrokerError> {
        self.topic(Operation::Produce, topic)?;
        self.route()?;
        self.broker.enqueue(topic, records).await
    }

    /// An append by an idempotent producer (`producer` set) or a plain one, as [`Caller::enqueue`].
    pub async fn enqueue_from(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
        producer: Option<&ProducerIdentity>,
    ) -> Result<PendingProduce, BrokerError> {
        self.topic(Operation::Produce, topic)?;
        self.route()?;
        self.broker.enqueue_from(topic, records, producer).await
    }

    /// A producer id and epoch (formatv2). Any authenticated caller may have one: an id grants
    /// no access by itself, every produce that carries it is authorized per topic.
    pub async fn init_producer(&self, existing: Option<i64>) -> Result<ProducerGrant, BrokerError> {
        self.broker.init_producer(existing).await
    }

    // ---- consume ----

    pub async fn poll(&self, req: PollRequest) -> Result<Vec<ConsumedRecord>, BrokerError> {
        self.topic_and_group(&req.topic, &req.group)?;
        self.broker.poll(req).await
    }

    pub async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse, BrokerError> {
        self.topic(Operation::Consume, &req.topic)?;
        self.broker.fetch(req).await
    }

    pub fn subscribe(&self, req: SubscribeRequest) -> Result<Subscription, BrokerError> {
        match &req.group {
            Some(group) => self.topic_and_group(&req.topic, group)?,
            None => self.topic(Operation::Consume, &req.topic)?,
        }
        self.broker.subscribe(req)
    }

    pub async fn commit(
        &self,
        topic: &str,
        group: &str,
        offsets: &[(u32, u64)],
    ) -> Result<(), BrokerError> {
        self.topic_and_group(topic, group)?;
        self.route()?;
        self.broker.commit(topic, group, offsets).await
    }

    pub async fn reset(
        &self,
        topic: &str,
        group: &str,
        to: Position,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        self.topic_and_group(topic, group)?;
        self.route()?;
        self.broker.reset(topic, group, to).await
    }

    // ---- topics and groups ----

    pub async fn create_topic(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<TopicDescription, BrokerError> {
        self.topic(Operation::Admin, name)?;
        self.broker.create_topic(name, config).await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        self.topic(Operation::Admin, name)?;
        self.broker.delete_topic(name).await
    }

    /// The topics the caller may describe.
    pub fn list_topics(&self) -> Vec<TopicDescription> {
        let mut all = self.broker.list_topics();
        all.retain(|t| self.may(Operation::Describe, &Resource::Topic(&t.name)));
        all
    }

    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription, BrokerError> {
        self.topic(Operation::Describe, name)?;
        self.broker.describe_topic(name)
    }

    pub fn topic_snapshot(&self, name: &str) -> Result<Vec<PartitionSnapshot>, BrokerError> {
        self.topic(Operation::Describe, name)?;
        self.broker.topic_snapshot(name)
    }

    /// The first offset at or after `ts` in every partition of `topic` (seek by time).
    pub fn offsets_for_timestamp(
        &self,
        topic: &str,
        ts: i64,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        self.topic(Operation::Describe, topic)?;
        self.broker.offsets_for_timestamp(topic, ts)
    }

    /// Every partition's state, broker-wide (the console's overview and rate history).
    ///
    /// # Errors
    /// `PermissionDenied` without describe on the cluster.
    pub fn partition_snapshots(&self) -> Result<Vec<PartitionSnapshot>, BrokerError> {
        self.authorize(Operation::Describe, Resource::Cluster)?;
        Ok(self.broker.partition_snapshots())
    }

    /// The groups the caller may describe.
    pub fn list_groups(&self) -> Vec<String> {
        let mut all = self.broker.list_groups();
        all.retain(|g| self.may(Operation::Describe, &Resource::Group(g)));
        all
    }

    /// A group's offsets, on the topics the caller may describe.
    pub fn describe_group(&self, group: &str) -> Result<Vec<GroupPartition>, BrokerError> {
        self.authorize(Operation::Describe, Resource::Group(group))?;
        let mut parts = self.broker.describe_group(group)?;
        parts.retain(|p| self.may(Operation::Describe, &Resource::Topic(&p.topic)));
        Ok(parts)
    }

    // ---- groups with members (issue 13): consume on the group and on its topics ----

    /// Consume on the group and on every topic a member of it would read: those named, and
    /// the ones the group was created with.
    fn group_topics(&self, group: &str, topics: &[String]) -> Result<(), BrokerError> {
        self.authorize(Operation::Consume, Resource::Group(group))?;
        for topic in topics {
            self.topic(Operation::Consume, topic)?;
        }
        if let Some(g) = self.broker.group_membership(group) {
            for topic in &g.topics {
                self.topic(Operation::Consume, topic)?;
            }
        }
        Ok(())
    }

    pub async fn join_group(&self, req: JoinRequest) -> Result<Membership, BrokerError> {
        self.group_topics(&req.group, &req.topics)?;
        self.broker.join_group(req).await
    }

    pub async fn create_group(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<GroupMembership, BrokerError> {
        self.group_topics(group, topics)?;
        self.broker.create_group(group, topics).await
    }

    pub async fn join_http_member(
        &self,
        group: &str,
        member_id: &str,
    ) -> Result<GroupMembership, BrokerError> {
        self.group_topics(group, &[])?;
        self.broker.join_http_member(group, member_id).await
    }

    pub async fn leave_group(
        &self,
        group: &str,
        member_id: &str,
    ) -> Result<GroupMembership, BrokerError> {
        self.authorize(Operation::Consume, Resource::Group(group))?;
        self.broker.leave_group(group, member_id).await
    }

    /// The group's members and assignment (`None`: no such group).
    pub fn group_membership(&self, group: &str) -> Result<Option<GroupMembership>, BrokerError> {
        self.authorize(Operation::Describe, Resource::Group(group))?;
        Ok(self.broker.group_membership(group))
    }

    pub async fn delete_group(&self, group: &str) -> Result<(), BrokerError> {
        self.authorize(Operation::Admin, Resource::Group(group))?;
        self.route()?;
        self.broker.delete_group(group).await
    }

    /// A commit by a member (fenced when it does not own the partitions) or, without one, as
    /// [`Caller::commit`].
    pub async fn commit_as(
        &self,
        topic: &str,
        group: &str,
        offsets: &[(u32, u64)],
        member: Option<&MemberRef>,
    ) -> Result<(), BrokerError> {
        self.topic_and_group(topic, group)?;
        self.route()?;
        self.broker.commit_as(topic, group, offsets, member).await
    }

    // ---- ACLs (admin on the cluster) ----

    /// The ACL rules in force.
    ///
    /// # Errors
    /// `PermissionDenied` without admin on the cluster.
    pub fn list_acls(&self) -> Result<Vec<AclRule>, BrokerError> {
        self.authorize(Operation::Admin, Resource::Cluster)?;
        Ok(self
            .security
            .as_ref()
            .map(|s| s.acls().snapshot().to_vec())
            .unwrap_or_default())
    }

    /// Adds a rule, durably. Returns whether it was new.
    ///
    /// # Errors
    /// `PermissionDenied` without admin on the cluster, `InvalidArgument` for a bad rule,
    /// `FailedPrecondition`-like `InvalidArgument` when security is off, `Unavailable` when the
    /// file cannot be written.
    pub async fn add_acl(&self, rule: AclRule) -> Result<bool, BrokerError> {
        self.authorize(Operation::Admin, Resource::Cluster)?;
        rule.validate().map_err(BrokerError::InvalidArgument)?;
        let security = self.acl_store()?;
        self.route()?;
        // cluster metadata (issue 17): in a cluster every node applies the rule.
        if let Some(p) = self
            .broker
            .replicate_meta(super::meta::MetaWrite::AddAcl(rule.clone()))
        {
            return p.await;
        }
        let res = tokio::task::spawn_blocking(move || security.acls().add(rule)).await;
        acl_written(res)
    }

    /// Removes a rule, durably. Returns whether it was there.
    ///
    /// # Errors
    /// As [`Caller::add_acl`].
    pub async fn remove_acl(&self, rule: AclRule) -> Result<bool, BrokerError> {
        self.authorize(Operation::Admin, Resource::Cluster)?;
        let security = self.acl_store()?;
        self.route()?;
        if let Some(p) = self
            .broker
            .replicate_meta(super::meta::MetaWrite::RemoveAcl(rule.clone()))
        {
            return p.await;
        }
        let res = tokio::task::spawn_blocking(move || security.acls().remove(&rule)).await;
        acl_written(res)
    }

    fn acl_store(&self) -> Result<Arc<Security>, BrokerError> {
        self.security
            .as_ref()
            .filter(|s| s.is_enabled())
            .cloned()
            .ok_or_else(|| {
                BrokerError::InvalidArgument(
                    "authentication is off on this broker (no token file and no client CA): \
                     ACLs would not apply"
                        .into(),
                )
            })
    }
}

fn acl_written(
    res: Result<Result<bool, crate::auth::StoreError>, tokio::task::JoinError>,
) -> Result<bool, BrokerError> {
    match res {
        Ok(Ok(changed)) => Ok(changed),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "ACL change not saved");
            Err(BrokerError::Unavailable(
                "the ACL change could not be saved; see the broker log".into(),
            ))
        }
        Err(e) => Err(BrokerError::Unavailable(format!(
            "the ACL change stopped unexpectedly: {e}"
        ))),
    }
}

impl super::observe::Observer {
    fn access_denied(&self, operation: Operation, resource: crate::auth::ResourceKind) {
        if let Some(e) = self.events() {
            e.access_denied(operation, resource);
        }
    }

    fn unauthenticated(&self) {
        if let Some(e) = self.events() {
            e.unauthenticated();
        }
    }
}

// ==== shared groups (issue 14) ====
impl Caller {
    pub async fn create_shared_group(
        &self,
        group: &str,
        config: super::shared::SharedGroupConfig,
    ) -> Result<super::shared::SharedGroupConfig, BrokerError> {
        self.authorize(Operation::Consume, Resource::Group(group))?;
        self.topic(Operation::Admin, &config.dead_letter_topic)?;
        self.broker.create_shared_group(group, config).await
    }

    pub async fn shared_poll(
        &self,
        req: super::shared::SharedPollRequest,
    ) -> Result<Vec<super::shared::Delivery>, BrokerError> {
        self.topic_and_group(&req.topic, &req.group)?;
        self.broker.shared_poll(req).await
    }

    /// [`Caller::shared_poll`] that stops waiting when `stop` is cancelled (a stream's).
    pub async fn shared_poll_until(
        &self,
        req: super::shared::SharedPollRequest,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Vec<super::shared::Delivery>, BrokerError> {
        self.topic_and_group(&req.topic, &req.group)?;
        self.broker.shared_poll_until(req, stop).await
    }

    pub async fn settle(
        &self,
        group: &str,
        topic: &str,
        member: &str,
        settlements: &[super::shared::Settlement],
    ) -> Result<Vec<super::shared::SettleOutcome>, BrokerError> {
        self.topic_and_group(topic, group)?;
        self.broker.settle(group, topic, member, settlements).await
    }

    /// Whether `group` is a shared group (no authorization: the describe that follows checks).
    pub fn is_shared_group(&self, group: &str) -> bool {
        self.broker.shared_group_config(group).is_some()
    }

    pub async fn shared_group_state(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<
        (
            super::shared::SharedGroupConfig,
            Vec<super::shared::SharedPartitionState>,
        ),
        BrokerError,
    > {
        self.authorize(Operation::Describe, Resource::Group(group))?;
        let config = self
            .broker
            .shared_group_config(group)
            .ok_or_else(|| BrokerError::GroupNotFound(group.to_string()))?;
        let state = self.broker.shared_group_state(group, topic).await?;
        Ok((config, state))
    }

    /// A shared group seen as a plain group: each partition's position (the first offset not
    /// yet done) stands for the committed offset. `None` when `group` is not a shared group.
    pub async fn shared_group_positions(
        &self,
        group: &str,
    ) -> Result<Option<Vec<GroupPartition>>, BrokerError> {
        if !self.is_shared_group(group) {
            return Ok(None);
        }
        let (_, parts) = self.shared_group_state(group, None).await?;
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            if !self.may(Operation::Describe, &Resource::Topic(&p.topic)) {
                continue;
            }
            let Ok(t) = self.broker.describe_topic(&p.topic) else {
                continue; // deleted since
            };
            let log_end = t
                .partitions
                .iter()
                .find(|x| x.partition == p.partition)
                .map_or(p.next, |x| x.log_end);
            out.push(GroupPartition {
                topic: p.topic,
                partition: p.partition,
                committed: p.position,
                log_end,
                lag: log_end.saturating_sub(p.position),
            });
        }
        Ok(Some(out))
    }
}
// ==== end shared groups (issue 14) ====
