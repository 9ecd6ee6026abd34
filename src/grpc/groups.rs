//! The JoinGroup stream and the group conversions (groups, issue 13): the stream turns client
//! messages into [`crate::broker::Membership`] calls and the member's views into responses.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::status::to_status;
use crate::broker::{
    BrokerError, Caller, GroupMembership, JoinRequest, MemberKind, MemberView, TopicPartition,
};
use crate::proto as pb;
use pb::join_group_request::Kind;

pub type JoinGroupStream = ReceiverStream<Result<pb::JoinGroupResponse, Status>>;

/// Runs one JoinGroup stream: the first message must be the join; the membership ends when the
/// stream does (or the server stops).
///
/// # Errors
/// The join's failure, or INVALID_ARGUMENT when the first message is not a join.
pub async fn join_group(
    caller: Caller,
    shutdown: CancellationToken,
    address: String,
    mut inbound: Streaming<pb::JoinGroupRequest>,
) -> Result<JoinGroupStream, Status> {
    let first = inbound
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("JoinGroup ended before its join message"))?;
    let Some(Kind::Join(join)) = first.kind else {
        return Err(Status::invalid_argument(
            "the first message of JoinGroup must be `join`",
        ));
    };
    let session_ms = u32::try_from(caller.broker().config().group_session_timeout.as_millis())
        .unwrap_or(u32::MAX);
    let mut membership = caller
        .join_group(JoinRequest {
            group: join.group,
            topics: join.topics,
            instance_id: (!join.instance_id.is_empty()).then_some(join.instance_id),
            client_id: join.client_id,
            address,
        })
        .await
        .map_err(|e| to_status(&e))?;
    let (tx, rx) = mpsc::channel(8);
    let _ = tx.send(Ok(response(&membership.view(), session_ms))).await;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                view = membership.changed() => {
                    if let Some(why) = view.ended {
                        let _ = tx.send(Err(to_status(&BrokerError::Fenced {
                            group: membership.group().to_string(),
                            reason: why,
                        }))).await;
                        break;
                    }
                    if tx.send(Ok(response(&view, session_ms))).await.is_err() {
                        break;
                    }
                }
                msg = inbound.next() => {
                    let Some(Ok(msg)) = msg else { break };
                    let res = match msg.kind {
                        Some(Kind::Heartbeat(_)) => membership.heartbeat(),
                        Some(Kind::Release(r)) => {
                            // Releasing is also a sign of life.
                            let _ = membership.heartbeat();
                            membership.release(&partitions_in(&r.partitions)).await
                        }
                        Some(Kind::Leave(_)) => {
                            if let Err(e) = membership.leave().await {
                                tracing::warn!(error = %e, "leaving a group failed");
                            }
                            return;
                        }
                        Some(Kind::Join(_)) => Err(BrokerError::InvalidArgument(
                            "this stream already joined; open a new stream to join again".into(),
                        )),
                        None => Err(BrokerError::InvalidArgument("a JoinGroup message needs a kind".into())),
                    };
                    if let Err(e) = res {
                        let _ = tx.send(Err(to_status(&e))).await;
                        break;
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

fn response(view: &MemberView, session_ms: u32) -> pb::JoinGroupResponse {
    pb::JoinGroupResponse {
        member_id: view.member_id.clone(),
        member_epoch: view.epoch,
        group_epoch: view.group_epoch,
        assigned: topic_partitions(&view.assigned),
        revoke: topic_partitions(&view.revoking),
        session_timeout_ms: session_ms,
    }
}

/// Partitions grouped by topic.
pub fn topic_partitions(tps: &[TopicPartition]) -> Vec<pb::TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in tps {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| pb::TopicPartitions {
            topic: topic.to_string(),
            partitions,
        })
        .collect()
}

pub fn partitions_in(tps: &[pb::TopicPartitions]) -> Vec<TopicPartition> {
    tps.iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.topic.as_str(), p))
        })
        .collect()
}

/// DescribeGroup's membership fields.
pub fn describe_members(m: Option<GroupMembership>, resp: &mut pb::DescribeGroupResponse) {
    let Some(m) = m else {
        resp.state = crate::broker::GroupPhase::Empty.name().to_string();
        return;
    };
    resp.state = m.phase.name().to_string();
    resp.epoch = m.epoch;
    resp.topics = m.topics;
    resp.members = m
        .members
        .into_iter()
        .map(|d| pb::GroupMember {
            member_id: d.id,
            instance_id: d.instance_id.unwrap_or_default(),
            client_id: d.client_id,
            address: d.address,
            member_epoch: d.epoch,
            partitions: topic_partitions(&d.partitions),
            revoking: topic_partitions(&d.revoking),
            lag: d.lag,
            connected: d.connected,
            kind: match d.kind {
                MemberKind::Stream => "stream",
                MemberKind::Http => "http",
            }
            .to_string(),
            joined_at_ns: d.joined_at_ns,
        })
        .collect();
}
