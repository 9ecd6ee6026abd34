//! Shared groups over gRPC (issue 14): conversions between the proto messages and the core's
//! types, and one function per RPC that the service calls.

use std::time::Duration;

use super::convert;
use crate::broker::shared::{
    Backoff, Delivery, SettleAction, SettleOutcome, Settled, Settlement, SharedGroupConfig,
    SharedPartitionState, SharedPollRequest, millis_or,
};
use crate::broker::{BrokerError, Caller, ReadLimits};
use crate::proto as pb;

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Settings from the wire, zeros taking the defaults.
pub fn config(group: &str, s: Option<pb::SharedGroupSettings>) -> SharedGroupConfig {
    let mut c = SharedGroupConfig::new(group);
    let Some(s) = s else { return c };
    c.ack_timeout = millis_or(s.ack_timeout_ms, c.ack_timeout);
    if s.max_deliveries > 0 {
        c.max_deliveries = s.max_deliveries;
    }
    if s.max_in_flight > 0 {
        c.max_in_flight = s.max_in_flight as usize;
    }
    if !s.dead_letter_topic.is_empty() {
        c.dead_letter_topic = s.dead_letter_topic;
    }
    let base = Duration::from_millis(u64::from(s.backoff_base_ms));
    c.backoff = if s.backoff_exponential {
        Backoff::Exponential {
            base,
            max: millis_or(s.backoff_max_ms, Duration::from_secs(60)),
        }
    } else {
        Backoff::Fixed { delay: base }
    };
    c
}

pub fn settings(c: &SharedGroupConfig) -> pb::SharedGroupSettings {
    let (backoff_exponential, backoff_base_ms, backoff_max_ms) = match c.backoff {
        Backoff::Fixed { delay } => (false, ms(delay), 0),
        Backoff::Exponential { base, max } => (true, ms(base), ms(max)),
    };
    pb::SharedGroupSettings {
        ack_timeout_ms: ms(c.ack_timeout),
        max_deliveries: c.max_deliveries,
        max_in_flight: u32::try_from(c.max_in_flight).unwrap_or(u32::MAX),
        dead_letter_topic: c.dead_letter_topic.clone(),
        backoff_exponential,
        backoff_base_ms,
        backoff_max_ms,
    }
}

pub fn poll_request(r: pb::SharedPollRequest, limits: ReadLimits) -> SharedPollRequest {
    SharedPollRequest {
        group: r.group,
        topic: r.topic,
        member: r.member_id,
        limits,
    }
}

pub fn deliveries(ds: Vec<Delivery>) -> pb::SharedPollResponse {
    pb::SharedPollResponse {
        deliveries: ds
            .into_iter()
            .map(|d| pb::SharedDelivery {
                record: Some(convert::record(d.partition, d.record)),
                deliveries: d.deliveries,
                lock_deadline_ns: d.lock_deadline_ns,
            })
            .collect(),
    }
}

/// The batch's settlements.
///
/// # Errors
/// `InvalidArgument` for a settlement without a kind.
pub fn settlements(ss: Vec<pb::Settlement>) -> Result<Vec<Settlement>, BrokerError> {
    ss.into_iter()
        .map(|s| {
            let action = match s.kind() {
                pb::SettleKind::Accept => SettleAction::Accept,
                pb::SettleKind::Release => SettleAction::Release {
                    delay: s.delay_ms.map(|d| Duration::from_millis(u64::from(d))),
                    reason: s.reason,
                },
                pb::SettleKind::Reject => SettleAction::Reject { reason: s.reason },
                pb::SettleKind::Extend => SettleAction::Extend,
                pb::SettleKind::Unspecified => {
                    return Err(BrokerError::InvalidArgument(format!(
                        "settlement of partition {} offset {} has no kind (accept, release, reject or extend)",
                        s.partition, s.offset
                    )));
                }
            };
            Ok(Settlement {
                partition: s.partition,
                offset: s.offset,
                action,
            })
        })
        .collect()
}

pub fn results(ss: &[Settlement], outcomes: Vec<SettleOutcome>) -> pb::SettleResponse {
    pb::SettleResponse {
        results: ss
            .iter()
            .zip(outcomes)
            .map(|(s, o)| {
                let (outcome, error) = match o {
                    Ok(Settled::Done) => ("done", String::new()),
                    Ok(Settled::Available) => ("available", String::new()),
                    Ok(Settled::Extended) => ("extended", String::new()),
                    Ok(Settled::DeadLetter) => ("dead_lettered", String::new()),
                    Err(e) => ("", e.to_string()),
                };
                pb::SettleResult {
                    partition: s.partition,
                    offset: s.offset,
                    error,
                    outcome: outcome.into(),
                }
            })
            .collect(),
    }
}

fn partition(s: SharedPartitionState) -> pb::SharedPartition {
    pb::SharedPartition {
        topic: s.topic,
        partition: s.partition,
        position: s.position,
        next: s.next,
        in_flight: u32::try_from(s.in_flight).unwrap_or(u32::MAX),
        locked: u32::try_from(s.locked).unwrap_or(u32::MAX),
        deliveries: s.deliveries.into_iter().collect(),
    }
}

/// Settle: converts, settles through the caller, converts back.
///
/// # Errors
/// As [`Caller::settle`], or a settlement without a kind.
pub async fn settle(
    caller: Caller,
    r: pb::SettleRequest,
) -> Result<pb::SettleResponse, BrokerError> {
    let ss = settlements(r.settlements)?;
    let outcomes = caller.settle(&r.group, &r.topic, &r.member_id, &ss).await?;
    Ok(results(&ss, outcomes))
}

/// DescribeSharedGroup.
///
/// # Errors
/// As [`Caller::shared_group_state`].
/// DescribeGroup of a shared group (`None`: not one): its position per partition as the
/// committed offset, the log end and the lag, and the state "shared" (no members: workers of a
/// shared group are not members).
///
/// # Errors
/// The caller may not describe the group, or it is damaged.
pub async fn describe_as_group(
    caller: &Caller,
    group: &str,
) -> Result<Option<pb::DescribeGroupResponse>, BrokerError> {
    let Some(parts) = caller.shared_group_positions(group).await? else {
        return Ok(None);
    };
    let partitions: Vec<pb::GroupPartition> = parts
        .into_iter()
        .map(|p| pb::GroupPartition {
            topic: p.topic,
            partition: p.partition,
            committed_offset: p.committed,
            log_end_offset: p.log_end,
            lag: p.lag,
        })
        .collect();
    let mut topics: Vec<String> = partitions.iter().map(|p| p.topic.clone()).collect();
    topics.dedup();
    Ok(Some(pb::DescribeGroupResponse {
        group: group.to_string(),
        partitions,
        state: "shared".into(),
        topics,
        ..Default::default()
    }))
}

pub async fn describe(
    caller: Caller,
    r: pb::DescribeSharedGroupRequest,
) -> Result<pb::DescribeSharedGroupResponse, BrokerError> {
    let topic = (!r.topic.is_empty()).then_some(r.topic.as_str());
    let (config, parts) = caller.shared_group_state(&r.group, topic).await?;
    Ok(pb::DescribeSharedGroupResponse {
        settings: Some(settings(&config)),
        partitions: parts.into_iter().map(partition).collect(),
    })
}
