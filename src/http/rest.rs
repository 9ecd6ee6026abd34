//! REST produce and consume: each handler converts JSON into one Broker call and the result back
//! (record shapes in [`super::records`]).
//!
//! - `POST /topics/{topic}/messages`: the original's single form `{"key","value","timestamp"?}`
//!   → 201 `{"status":"accepted","topic","key","timestamp","timestamp_ns","partition","offset"}`,
//!   or the batch form `{"records":[…]}` → 201 `{"status":"accepted","topic","count","acks"}`.
//!   Both answer only after the broker acknowledged (the records are durable per the durability
//!   mode); an error means nothing of the request was acknowledged.
//! - `GET /topics/{topic}/messages?partition=&offset=&limit=&max_bytes=&max_wait_ms=`: fetch.
//! - `POST /topics/{topic}/poll` `{"group","max_records"?,"max_bytes"?,"max_wait_ms"?,"start"?}`.
//! - `POST /topics/{topic}/commit` `{"group","offsets":[{"partition","offset"}]}`.
//! - `POST /topics/{topic}/reset` `{"group","to":"earliest"|"latest"|{"offset":N}|{"timestamp_ns":N}}`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::HttpState;
use super::auth::Authed;
use super::error::ApiError;
use super::extract::{Json, Path, Query, from_object};
use super::records::{BatchIn, RecordIn, RecordOut};
use crate::broker::{
    BrokerError, FetchRequest, PollRequest, Position, ReadLimits, RecordAck, StartPosition, now_ns,
};

/// `POST /topics/{topic}/messages`.
pub async fn produce(
    Authed(caller): Authed,
    Path(topic): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let now = now_ns();
    let is_batch = body.as_object().is_some_and(|o| o.contains_key("records"));
    if is_batch {
        let batch: BatchIn = from_object(body)?;
        let records = batch
            .records
            .into_iter()
            .map(|r| from_object::<RecordIn>(r)?.into_record(now))
            .collect::<Result<Vec<_>, _>>()?;
        let acks = caller.produce(&topic, records).await?;
        let acks: Vec<AckOut> = acks.into_iter().map(AckOut::from).collect();
        let body = json!({"status": "accepted", "topic": topic, "count": acks.len(), "acks": acks});
        return Ok((StatusCode::CREATED, axum::Json(body)).into_response());
    }
    let single: RecordIn = from_object(body)?;
    let key_echo = single.key.clone().or_else(|| single.key_base64.clone());
    let record = single.into_record(now)?;
    let timestamp = record.timestamp.unwrap_or(now);
    let acks = caller.produce(&topic, vec![record]).await?;
    let ack = acks
        .first()
        .copied()
        .ok_or_else(|| BrokerError::Unavailable("the broker acknowledged no record".into()))?;
    let body = json!({
        "status": "accepted",
        "topic": topic,
        "key": key_echo.unwrap_or_default(),
        "timestamp": crate::rfc3339::format_unix_ns(timestamp),
        "timestamp_ns": timestamp,
        "partition": ack.partition,
        "offset": ack.offset,
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckOut {
    pub partition: u32,
    pub offset: u64,
}

impl From<RecordAck> for AckOut {
    fn from(a: RecordAck) -> Self {
        Self {
            partition: a.partition,
            offset: a.offset,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchParams {
    #[serde(default)]
    partition: u32,
    #[serde(default)]
    offset: u64,
    limit: Option<usize>,
    max_bytes: Option<usize>,
    #[serde(default)]
    max_wait_ms: u64,
}

/// `GET /topics/{topic}/messages`: a stateless read of one partition.
pub async fn fetch(
    State(state): State<HttpState>,
    Authed(caller): Authed,
    Path(topic): Path<String>,
    Query(q): Query<FetchParams>,
) -> Result<axum::Json<Value>, ApiError> {
    let req = FetchRequest {
        topic: topic.clone(),
        partition: q.partition,
        offset: q.offset,
        limits: state.limits(q.limit, q.max_bytes, q.max_wait_ms),
    };
    let resp = caller.fetch(req).await?;
    let next = resp.records.last().map_or(q.offset, |r| r.offset + 1);
    let records: Vec<RecordOut> = resp
        .records
        .iter()
        .map(|r| RecordOut::new(q.partition, r))
        .collect();
    Ok(axum::Json(json!({
        "topic": topic,
        "partition": q.partition,
        "log_start": resp.log_start,
        "log_end": resp.log_end,
        "next_offset": next,
        "records": records,
    })))
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Start {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollBody {
    group: String,
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    #[serde(default)]
    max_wait_ms: u64,
    /// Where a group without committed offsets starts.
    #[serde(default)]
    start: Start,
    /// A member of a group with members (groups, issue 13); the epoch defaults to its current.
    member_id: Option<String>,
    member_epoch: Option<u64>,
    /// `record`: a shared group's hand-out, settled per record (shared groups, issue 14).
    #[serde(default)]
    ack_mode: super::shared::AckMode,
}

/// `POST /topics/{topic}/poll`: records from the group's committed offsets (does not commit).
/// `next_offsets` is what to commit after processing them.
pub async fn poll(
    State(state): State<HttpState>,
    Authed(caller): Authed,
    Path(topic): Path<String>,
    Json(body): Json<PollBody>,
) -> Result<axum::Json<Value>, ApiError> {
    if body.ack_mode == super::shared::AckMode::Record {
        let limits = state.limits(body.max_records, body.max_bytes, body.max_wait_ms);
        return super::shared::poll(&caller, topic, body.group, body.member_id, limits).await;
    }
    let req = PollRequest {
        topic: topic.clone(),
        group: body.group.clone(),
        limits: state.limits(body.max_records, body.max_bytes, body.max_wait_ms),
        start_if_new: match body.start {
            Start::Earliest => StartPosition::Earliest,
            Start::Latest => StartPosition::Latest,
        },
        member: super::groups::member_ref(&caller, &body.group, body.member_id, body.member_epoch),
    };
    let records = caller.poll(req).await?;
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    for r in &records {
        next.insert(r.partition, r.record.offset + 1);
    }
    let next: Vec<AckOut> = next
        .into_iter()
        .map(|(partition, offset)| AckOut { partition, offset })
        .collect();
    let records: Vec<RecordOut> = records.iter().map(RecordOut::from).collect();
    Ok(axum::Json(json!({
        "topic": topic,
        "group": body.group,
        "records": records,
        "next_offsets": next,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    group: String,
    offsets: Vec<AckOut>,
    member_id: Option<String>,
    member_epoch: Option<u64>,
}

/// `POST /topics/{topic}/commit`: stores the group's next offsets, durably.
pub async fn commit(
    Authed(caller): Authed,
    Path(topic): Path<String>,
    Json(body): Json<CommitBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let offsets: Vec<(u32, u64)> = body
        .offsets
        .iter()
        .map(|o| (o.partition, o.offset))
        .collect();
    let member = super::groups::member_ref(&caller, &body.group, body.member_id, body.member_epoch);
    caller
        .commit_as(&topic, &body.group, &offsets, member.as_ref())
        .await?;
    Ok(axum::Json(
        json!({"topic": topic, "group": body.group, "offsets": body.offsets}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    group: String,
    to: Value,
}

/// `POST /topics/{topic}/reset`: moves the group in every partition.
pub async fn reset(
    Authed(caller): Authed,
    Path(topic): Path<String>,
    Json(body): Json<ResetBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let to = position(&body.to)?;
    let offsets = caller.reset(&topic, &body.group, to).await?;
    let offsets: Vec<AckOut> = offsets
        .into_iter()
        .map(|(partition, offset)| AckOut { partition, offset })
        .collect();
    Ok(axum::Json(
        json!({"topic": topic, "group": body.group, "offsets": offsets}),
    ))
}

fn position(to: &Value) -> Result<Position, ApiError> {
    const EXPECTED: &str =
        "\"to\" must be \"earliest\", \"latest\", {\"offset\": N} or {\"timestamp_ns\": N}";
    match to {
        Value::String(s) if s == "earliest" => Ok(Position::Earliest),
        Value::String(s) if s == "latest" => Ok(Position::Latest),
        Value::Object(o) if o.len() == 1 => {
            if let Some(v) = o.get("offset") {
                v.as_u64()
                    .map(Position::Offset)
                    .ok_or_else(|| ApiError::invalid("\"offset\" must be a non-negative integer"))
            } else if let Some(v) = o.get("timestamp_ns") {
                v.as_i64()
                    .map(Position::Timestamp)
                    .ok_or_else(|| ApiError::invalid("\"timestamp_ns\" must be an integer"))
            } else {
                Err(ApiError::invalid(EXPECTED))
            }
        }
        _ => Err(ApiError::invalid(EXPECTED)),
    }
}

impl HttpState {
    /// Read limits from request values: defaults when absent, capped by the HTTP config (a long
    /// poll never outlives the request timeout).
    pub(super) fn limits(
        &self,
        max_records: Option<usize>,
        max_bytes: Option<usize>,
        max_wait_ms: u64,
    ) -> ReadLimits {
        let cfg = &self.config;
        ReadLimits {
            max_records: max_records
                .unwrap_or(ReadLimits::DEFAULT_MAX_RECORDS)
                .clamp(1, cfg.max_records),
            max_bytes: max_bytes
                .unwrap_or(ReadLimits::DEFAULT_MAX_BYTES)
                .clamp(1, cfg.max_read_bytes),
            max_wait: Duration::from_millis(max_wait_ms).min(cfg.max_wait),
        }
    }
}
