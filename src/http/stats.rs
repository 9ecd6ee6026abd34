//! Topic and group state as JSON: `/stats` (the original's shape), topic admin and group views.
//!
//! - `GET /stats?topic=T` → `{"topic","buffered","persisted","ring_buffer_records"}`, summed over
//!   the topic's partitions. As in the original, `buffered + persisted` is what the topic holds:
//!   `buffered` is acknowledged but not yet durable (written, awaiting the fsync tick in `interval`
//!   mode; always 0 in `fsync` mode), `persisted` is durable on disk. `ring_buffer_records` counts
//!   the recent records also held in memory (a cache of persisted or buffered ones, not a third
//!   kind).
//! - `GET /topics/{topic}`, `POST /topics`, `DELETE /topics/{topic}` (`GET /topics`, paged, is in
//!   [`super::browse`]).
//! - `GET /groups`, `GET /groups/{group}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::Authed;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::broker::{Caller, MemberDescription, TopicConfig, TopicDescription};

#[derive(Debug, Deserialize)]
pub struct StatsParams {
    topic: Option<String>,
}

/// `GET /stats?topic=T`.
pub async fn stats(
    Authed(caller): Authed,
    Query(q): Query<StatsParams>,
) -> Result<axum::Json<Value>, ApiError> {
    let topic = q.topic.ok_or_else(|| {
        ApiError::invalid("the topic query parameter is required: /stats?topic=NAME")
    })?;
    let desc = caller.describe_topic(&topic)?;
    let stored: u64 = desc
        .partitions
        .iter()
        .map(|p| p.log_end.saturating_sub(p.log_start))
        .sum();
    let (mut buffered, mut ring_buffer_records) = (0u64, 0usize);
    for p in caller.topic_snapshot(&topic)? {
        buffered += p.unsynced_records;
        ring_buffer_records += p.ring_records;
    }
    // Unsynced records are the newest ones, never below the log start: all are still stored.
    let buffered = buffered.min(stored);
    Ok(axum::Json(json!({
        "topic": topic,
        "buffered": buffered,
        "persisted": stored - buffered,
        "ring_buffer_records": ring_buffer_records,
    })))
}

/// A topic as JSON.
#[derive(Debug, Serialize)]
pub struct TopicOut {
    pub name: String,
    pub partition_count: u32,
    pub retention_ms: u64,
    pub retention_bytes: u64,
    /// formatv2: how the topic's batches are compressed on disk.
    pub compression: crate::storage::batch::Compression,
    /// Records stored, over all partitions.
    pub messages: u64,
    pub size_bytes: u64,
    pub partitions: Vec<PartitionOut>,
}

#[derive(Debug, Serialize)]
pub struct PartitionOut {
    pub partition: u32,
    pub log_start: u64,
    pub log_end: u64,
    pub messages: u64,
    pub size_bytes: u64,
    pub segments: usize,
    pub read_only: bool,
}

impl From<TopicDescription> for TopicOut {
    fn from(d: TopicDescription) -> Self {
        let partitions: Vec<PartitionOut> = d
            .partitions
            .iter()
            .map(|p| PartitionOut {
                partition: p.partition,
                log_start: p.log_start,
                log_end: p.log_end,
                messages: p.log_end.saturating_sub(p.log_start),
                size_bytes: p.size_bytes,
                segments: p.segments,
                read_only: p.read_only,
            })
            .collect();
        Self {
            name: d.name,
            partition_count: d.config.partitions,
            retention_ms: d.config.retention_ms,
            retention_bytes: d.config.retention_bytes,
            compression: d.config.compression,
            messages: partitions.iter().map(|p| p.messages).sum(),
            size_bytes: partitions.iter().map(|p| p.size_bytes).sum(),
            partitions,
        }
    }
}

/// `GET /topics/{topic}`.
pub async fn describe_topic(
    Authed(caller): Authed,
    Path(topic): Path<String>,
) -> Result<axum::Json<TopicOut>, ApiError> {
    Ok(axum::Json(caller.describe_topic(&topic)?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopicBody {
    name: String,
    /// 0 or absent: the server's default.
    #[serde(default)]
    partitions: u32,
    #[serde(default)]
    retention_ms: u64,
    #[serde(default)]
    retention_bytes: u64,
    /// formatv2: none (default), lz4 or zstd.
    #[serde(default)]
    compression: crate::storage::batch::Compression,
}

/// `POST /topics` → 201 with the topic and a `Location` header.
pub async fn create_topic(
    Authed(caller): Authed,
    Json(body): Json<CreateTopicBody>,
) -> Result<Response, ApiError> {
    let desc = caller
        .create_topic(
            &body.name,
            TopicConfig {
                partitions: body.partitions,
                retention_ms: body.retention_ms,
                retention_bytes: body.retention_bytes,
                compression: body.compression,
            },
        )
        .await?;
    let mut resp = (StatusCode::CREATED, axum::Json(TopicOut::from(desc))).into_response();
    // The name was validated by the broker: only [A-Za-z0-9._-], always a valid header value.
    if let Ok(location) = HeaderValue::from_str(&format!("/topics/{}", body.name)) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

/// `DELETE /topics/{topic}` → 204.
pub async fn delete_topic(
    Authed(caller): Authed,
    Path(topic): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.delete_topic(&topic).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /groups`.
pub async fn list_groups(Authed(caller): Authed) -> axum::Json<Value> {
    axum::Json(json!({ "groups": caller.list_groups() }))
}

/// `GET /groups/{group}`: committed offsets and lag per topic partition.
pub async fn describe_group(
    Authed(caller): Authed,
    Path(group): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    // A shared group (issue 14) is described by its positions: the first offset not yet done.
    let shared = caller.shared_group_positions(&group).await?;
    let is_shared = shared.is_some();
    let parts = match shared {
        Some(parts) => parts,
        None => caller.describe_group(&group)?,
    };
    let total_lag: u64 = parts.iter().map(|p| p.lag).sum();
    let partitions: Vec<Value> = parts
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "log_end": p.log_end,
                "lag": p.lag,
            })
        })
        .collect();
    let mut out = json!({"group": group, "total_lag": total_lag, "partitions": partitions});
    if is_shared {
        out["state"] = json!("shared");
        out["shared"] = shared_json(&caller, &group).await?;
        return Ok(axum::Json(out));
    }
    // Groups with members (issue 13): their state, epoch and members with their partitions.
    if let Some(m) = caller.group_membership(&group)? {
        out["state"] = json!(m.phase.name());
        out["epoch"] = json!(m.epoch);
        out["members"] = m.members.iter().map(member_json).collect();
    }
    Ok(axum::Json(out))
}

/// A shared group's settings and in-flight windows (issue 14): per partition the records not
/// done, how many are locked to a member and how many were handed out more than once; and how
/// many records its dead-letter topic holds.
async fn shared_json(caller: &Caller, group: &str) -> Result<Value, ApiError> {
    let (config, parts) = caller.shared_group_state(group, None).await?;
    let windows: Vec<Value> = parts
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "position": p.position,
                "next": p.next,
                "in_flight": p.in_flight,
                "locked": p.locked,
                "redelivered": p.deliveries.values().filter(|d| **d > 1).count(),
                "max_deliveries_seen": p.deliveries.values().max().copied().unwrap_or(0),
            })
        })
        .collect();
    // Absent until the first dead letter, or hidden from a caller who may not describe it.
    let dead_letters = caller
        .describe_topic(&config.dead_letter_topic)
        .ok()
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| p.log_end.saturating_sub(p.log_start))
                .sum::<u64>()
        });
    Ok(json!({
        "ack_timeout_ms": u64::try_from(config.ack_timeout.as_millis()).unwrap_or(u64::MAX),
        "max_deliveries": config.max_deliveries,
        "max_in_flight": config.max_in_flight,
        "dead_letter_topic": config.dead_letter_topic,
        "dead_letters": dead_letters,
        "in_flight": parts.iter().map(|p| p.in_flight).sum::<usize>(),
        "locked": parts.iter().map(|p| p.locked).sum::<usize>(),
        "partitions": windows,
    }))
}

fn member_json(m: &MemberDescription) -> Value {
    let partitions: Vec<Value> = m
        .partitions
        .iter()
        .map(|tp| json!({"topic": tp.topic, "partition": tp.partition}))
        .collect();
    json!({
        "member_id": m.id,
        "instance_id": m.instance_id,
        "client_id": m.client_id,
        "address": m.address,
        "epoch": m.epoch,
        "connected": m.connected,
        "lag": m.lag,
        "partitions": partitions,
    })
}
