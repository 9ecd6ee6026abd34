//! Views the console needs, open to every client like the rest of the API:
//!
//! - `GET /topics?offset=&limit=&prefix=`: the topic list, paged. Without `limit` every topic (as
//!   before); with it at most [`MAX_TOPIC_PAGE`]. Always gives `total` (topics matching `prefix`).
//! - `GET /topics/{topic}/offsets?timestamp_ns=N`: each partition's log start and end, and with
//!   `timestamp_ns` the first offset at or after that time (seek by time).
//! - `GET /stats/overview`: uptime, disk used, counts, connections per protocol.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::HttpState;
use super::auth::Authed;
use super::error::ApiError;
use super::extract::{Path, Query};
use super::stats::TopicOut;
use crate::rfc3339::format_unix_ns;
use crate::status::{ListenerState, ListenerStatus, Protocol};

/// Most topics one page of `GET /topics` holds.
pub const MAX_TOPIC_PAGE: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPage {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
    prefix: Option<String>,
}

/// `GET /topics`.
pub async fn list_topics(
    Authed(caller): Authed,
    Query(q): Query<TopicPage>,
) -> Result<axum::Json<Value>, ApiError> {
    if q.limit == Some(0) || q.limit.is_some_and(|l| l > MAX_TOPIC_PAGE) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_TOPIC_PAGE}"
        )));
    }
    let prefix = q.prefix.unwrap_or_default();
    let mut all = caller.list_topics();
    all.retain(|t| t.name.starts_with(&prefix));
    let total = all.len();
    let limit = q.limit.unwrap_or(usize::MAX);
    let topics: Vec<TopicOut> = all
        .into_iter()
        .skip(q.offset)
        .take(limit)
        .map(TopicOut::from)
        .collect();
    Ok(axum::Json(json!({
        "topics": topics,
        "total": total,
        "offset": q.offset,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetsParams {
    timestamp_ns: Option<i64>,
}

/// `GET /topics/{topic}/offsets`.
pub async fn topic_offsets(
    Authed(caller): Authed,
    Path(topic): Path<String>,
    Query(q): Query<OffsetsParams>,
) -> Result<axum::Json<Value>, ApiError> {
    let desc = caller.describe_topic(&topic)?;
    let at = match q.timestamp_ns {
        Some(ts) => Some(caller.offsets_for_timestamp(&topic, ts)?),
        None => None,
    };
    let partitions: Vec<Value> = desc
        .partitions
        .iter()
        .map(|p| {
            let mut v = json!({
                "partition": p.partition,
                "log_start": p.log_start,
                "log_end": p.log_end,
            });
            if let Some(at) = &at {
                let offset = at
                    .iter()
                    .find(|(id, _)| *id == p.partition)
                    .map_or(p.log_end, |(_, o)| *o);
                v["offset"] = json!(offset);
            }
            v
        })
        .collect();
    let mut out = json!({"topic": topic, "partitions": partitions});
    if let Some(ts) = q.timestamp_ns {
        out["timestamp_ns"] = json!(ts);
    }
    Ok(axum::Json(out))
}

fn listener(l: &ListenerStatus) -> Value {
    let state = match l.state() {
        ListenerState::Disabled => "disabled",
        ListenerState::Down => "down",
        ListenerState::Up => "up",
    };
    json!({
        "state": state,
        "open": l.open_connections(),
        "max": l.max_connections(),
        "refused": l.refused_connections(),
    })
}

/// `GET /stats/overview`.
pub async fn overview(
    State(state): State<HttpState>,
    Authed(caller): Authed,
) -> Result<axum::Json<Value>, ApiError> {
    let snaps = caller.partition_snapshots()?;
    let topics = snaps
        .iter()
        .map(|p| p.topic.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let disk: u64 = snaps.iter().map(|p| p.size_bytes).sum();
    let segments: usize = snaps.iter().map(|p| p.segments).sum();
    let records: u64 = snaps
        .iter()
        .map(|p| p.log_end.saturating_sub(p.log_start))
        .sum();
    let read_only = snaps.iter().filter(|p| p.failure.is_some()).count();
    let mut connections = serde_json::Map::new();
    for proto in [Protocol::Grpc, Protocol::Legacy, Protocol::Http] {
        if let Some(l) = state.status.listener(proto) {
            connections.insert(proto.as_str().to_string(), listener(l));
        }
    }
    let uptime = state.status.uptime();
    Ok(axum::Json(json!({
        "started_at": format_unix_ns(state.status.started_at_unix_ns()),
        "uptime_seconds": uptime.as_secs_f64(),
        "topics": topics,
        "partitions": snaps.len(),
        "read_only_partitions": read_only,
        "segments": segments,
        "records": records,
        "disk_bytes": disk,
        "groups": caller.list_groups().len(),
        "connections": connections,
    })))
}
