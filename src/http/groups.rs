//! The original's consumer-group endpoints (groups, issue 13), on the group coordinator:
//!
//! - `POST /consumer-groups` `{"group_id","topics":[…]}` → the group (409 if it exists).
//! - `GET /consumer-groups/{group}` → the group.
//! - `DELETE /consumer-groups/{group}` → 204 (409 while members are connected).
//! - `POST /consumer-groups/{group}/members` `{"member_id"}` → the group, the member in it.
//! - `DELETE /consumer-groups/{group}/members/{member}` → the group without the member.
//!
//! The group's shape is the original's: `{"id","topics","members":{id:{"id","joined_at",
//! "partitions"}},"assignments":{member:[partitions]},"generation","last_rebalance"}`, plus
//! `state`, `epoch` and, per member, `epoch`, `kind`, `connected`, `lag`, `revoking` and
//! `topic_partitions` (partitions per topic: `partitions` alone is ambiguous for a member of
//! several topics). An HTTP member stays while it polls (`POST /topics/{t}/poll` with
//! `member_id`) within the session timeout; its revoked partitions are released at its next
//! poll, so it should commit what it processed before polling again.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Authed;
use super::error::ApiError;
use super::extract::{Json, Path};
use crate::broker::{BrokerError, Caller, GroupMembership, MemberKind, MemberRef, TopicPartition};
use crate::rfc3339::format_unix_ns;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    group_id: String,
    #[serde(default)]
    topics: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    #[serde(default)]
    member_id: String,
}

/// `POST /consumer-groups`.
pub async fn create(
    Authed(caller): Authed,
    Json(body): Json<CreateBody>,
) -> Result<axum::Json<Value>, ApiError> {
    if body.group_id.is_empty() {
        return Err(BrokerError::InvalidArgument("group_id is required".into()).into());
    }
    if body.topics.is_empty() {
        return Err(BrokerError::InvalidArgument("topics are required".into()).into());
    }
    let g = caller.create_group(&body.group_id, &body.topics).await?;
    Ok(axum::Json(group_json(&g)))
}

/// `GET /consumer-groups/{group}`.
pub async fn describe(
    Authed(caller): Authed,
    Path(group): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    crate::broker::names::validate(crate::broker::NameKind::Group, &group)?;
    let g = caller
        .group_membership(&group)?
        .ok_or(BrokerError::GroupNotFound(group))?;
    Ok(axum::Json(group_json(&g)))
}

/// `DELETE /consumer-groups/{group}`.
pub async fn delete(
    Authed(caller): Authed,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    caller.delete_group(&group).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /consumer-groups/{group}/members`.
pub async fn join(
    Authed(caller): Authed,
    Path(group): Path<String>,
    Json(body): Json<JoinBody>,
) -> Result<axum::Json<Value>, ApiError> {
    if body.member_id.is_empty() {
        return Err(BrokerError::InvalidArgument("member_id is required".into()).into());
    }
    let g = caller.join_http_member(&group, &body.member_id).await?;
    Ok(axum::Json(group_json(&g)))
}

/// `DELETE /consumer-groups/{group}/members/{member}`.
pub async fn leave(
    Authed(caller): Authed,
    Path((group, member)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let g = caller.leave_group(&group, &member).await?;
    Ok(axum::Json(group_json(&g)))
}

/// The member a REST poll or commit names: its epoch is the one given, else its current one.
pub fn member_ref(
    caller: &Caller,
    group: &str,
    member_id: Option<String>,
    epoch: Option<u64>,
) -> Option<MemberRef> {
    let id = member_id.filter(|m| !m.is_empty())?;
    let epoch = epoch
        .or_else(|| caller.broker().member_epoch(group, &id))
        .unwrap_or(0);
    Some(MemberRef { id, epoch })
}

fn by_topic(tps: &[TopicPartition]) -> BTreeMap<&str, Vec<u32>> {
    let mut out: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in tps {
        out.entry(&tp.topic).or_default().push(tp.partition);
    }
    out
}

/// The original's group shape, with this broker's additions.
pub fn group_json(g: &GroupMembership) -> Value {
    let mut members = serde_json::Map::new();
    let mut assignments = serde_json::Map::new();
    for m in &g.members {
        let partitions: Vec<u32> = m.partitions.iter().map(|tp| tp.partition).collect();
        assignments.insert(m.id.clone(), json!(partitions));
        members.insert(
            m.id.clone(),
            json!({
                "id": m.id,
                "joined_at": format_unix_ns(m.joined_at_ns),
                "partitions": partitions,
                "topic_partitions": by_topic(&m.partitions),
                "revoking": by_topic(&m.revoking),
                "epoch": m.epoch,
                "instance_id": m.instance_id,
                "client_id": m.client_id,
                "address": m.address,
                "kind": match m.kind { MemberKind::Stream => "stream", MemberKind::Http => "http" },
                "connected": m.connected,
                "lag": m.lag,
            }),
        );
    }
    json!({
        "id": g.group,
        "topics": g.topics,
        "members": members,
        "assignments": assignments,
        "generation": g.epoch,
        "epoch": g.epoch,
        "state": g.phase.name(),
        "rebalances": g.rebalances,
        "last_rebalance": format_unix_ns(g.last_rebalance_ns),
    })
}
