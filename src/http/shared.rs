//! Shared groups over REST (issue 14): `POST /topics/{topic}/poll` with `"ack_mode": "record"`
//! hands records out (each locked to the member), `POST /topics/{topic}/acks` settles a batch.

use std::time::Duration;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::HttpState;
use super::auth::Authed;
use super::error::ApiError;
use super::extract::{Json, Path};
use super::records::RecordOut;
use crate::broker::shared::{SettleAction, Settled, Settlement, SharedPollRequest};
use crate::broker::{Caller, ReadLimits};

/// How a poll's records are acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// Commit offsets (the default).
    #[default]
    Offset,
    /// Settle each record (a shared group).
    Record,
}

#[derive(Debug, Serialize)]
struct DeliveryOut {
    #[serde(flatten)]
    record: RecordOut,
    deliveries: u32,
    lock_deadline_ns: i64,
}

/// A shared-group hand-out for `member_id`.
///
/// # Errors
/// 400 without a member id; as [`Caller::shared_poll`].
pub async fn poll(
    caller: &Caller,
    topic: String,
    group: String,
    member_id: Option<String>,
    limits: ReadLimits,
) -> Result<axum::Json<Value>, ApiError> {
    let member = member_id.ok_or_else(|| {
        ApiError::invalid("ack_mode \"record\" needs a member_id (any stable id)")
    })?;
    let ds = caller
        .shared_poll(SharedPollRequest {
            group: group.clone(),
            topic: topic.clone(),
            member,
            limits,
        })
        .await?;
    let records: Vec<DeliveryOut> = ds
        .iter()
        .map(|d| DeliveryOut {
            record: RecordOut::new(d.partition, &d.record),
            deliveries: d.deliveries,
            lock_deadline_ns: d.lock_deadline_ns,
        })
        .collect();
    Ok(axum::Json(json!({
        "topic": topic,
        "group": group,
        "records": records,
    })))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Accept,
    Release,
    Reject,
    Extend,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckIn {
    partition: u32,
    offset: u64,
    action: Action,
    delay_ms: Option<u64>,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcksBody {
    group: String,
    member_id: String,
    acks: Vec<AckIn>,
}

/// `POST /topics/{topic}/acks`: settles a batch; each ack gets `outcome` or `error`.
///
/// # Errors
/// As [`Caller::settle`].
pub async fn acks(
    State(_state): State<HttpState>,
    Authed(caller): Authed,
    Path(topic): Path<String>,
    Json(body): Json<AcksBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let ss: Vec<Settlement> = body
        .acks
        .into_iter()
        .map(|a| Settlement {
            partition: a.partition,
            offset: a.offset,
            action: match a.action {
                Action::Accept => SettleAction::Accept,
                Action::Release => SettleAction::Release {
                    delay: a.delay_ms.map(Duration::from_millis),
                    reason: a.reason,
                },
                Action::Reject => SettleAction::Reject { reason: a.reason },
                Action::Extend => SettleAction::Extend,
            },
        })
        .collect();
    let outcomes = caller
        .settle(&body.group, &topic, &body.member_id, &ss)
        .await?;
    let results: Vec<Value> = ss
        .iter()
        .zip(outcomes)
        .map(|(s, o)| match o {
            Ok(settled) => json!({
                "partition": s.partition,
                "offset": s.offset,
                "outcome": match settled {
                    Settled::Done => "done",
                    Settled::Available => "available",
                    Settled::Extended => "extended",
                    Settled::DeadLetter => "dead_lettered",
                },
            }),
            Err(e) => json!({
                "partition": s.partition,
                "offset": s.offset,
                "error": e.to_string(),
            }),
        })
        .collect();
    Ok(axum::Json(
        json!({ "topic": topic, "group": body.group, "results": results }),
    ))
}
