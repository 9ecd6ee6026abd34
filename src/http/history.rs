//! Recent history for the console's charts, sampled in the server every [`SAMPLE_INTERVAL`] and
//! kept for [`SAMPLES_KEPT`] samples (6 minutes), in memory only:
//!
//! - `GET /stats/history` → `{"interval_ms","samples":[{"t_ms","produce_rate","consume_rate",
//!   "produced_total","consumed_total","disk_bytes"}]}`, oldest first.
//! - `GET /groups/{group}/history` → `{"group","interval_ms","samples":[{"t_ms","lag"}]}`.
//!
//! `produced_total` is the records the partitions have written since the broker opened;
//! `consumed_total` is the sum of every group's committed offsets, so `consume_rate` is the rate
//! at which groups commit progress (records per second). A rate is the change since the previous
//! sample, never negative (a deleted topic or a group reset back does not show as a negative
//! rate). At most [`MAX_GROUPS_TRACKED`] groups keep a lag history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use serde::Serialize;
use serde_json::{Value, json};

use super::HttpState;
use super::auth::Authed;
use super::error::ApiError;
use super::extract::Path;
use crate::auth::{Operation, Resource};
use crate::broker::{Broker, WeakBroker, now_ns};

pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
pub const SAMPLES_KEPT: usize = 180;
pub const MAX_GROUPS_TRACKED: usize = 1000;

/// One point of the overview chart.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RateSample {
    pub t_ms: i64,
    pub produce_rate: f64,
    pub consume_rate: f64,
    pub produced_total: u64,
    pub consumed_total: u64,
    pub disk_bytes: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct LagSample {
    pub t_ms: i64,
    pub lag: u64,
}

/// The samples of one server (shared by its HTTP handlers).
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Samples>,
}

#[derive(Debug, Default)]
struct Samples {
    rates: VecDeque<RateSample>,
    lags: BTreeMap<String, VecDeque<LagSample>>,
}

fn push<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == SAMPLES_KEPT {
        q.pop_front();
    }
    q.push_back(v);
}

impl History {
    /// Takes one sample of `broker` now.
    pub fn sample(&self, broker: &Broker) {
        let t_ms = now_ns() / 1_000_000;
        let (mut produced, mut disk) = (0u64, 0u64);
        for p in broker.partition_snapshots() {
            produced += p.writes.records;
            disk += p.size_bytes;
        }
        let mut consumed = 0u64;
        let mut lags: Vec<(String, u64)> = Vec::new();
        for group in broker.list_groups() {
            // A shared group (issue 14): its positions, the first offsets not yet done.
            let positions = match shared_positions(broker, &group) {
                Some(p) => p,
                None => match broker.describe_group(&group) {
                    Ok(parts) => parts.iter().map(|p| (p.committed, p.lag)).collect(),
                    Err(_) => continue,
                },
            };
            consumed += positions.iter().map(|(done, _)| done).sum::<u64>();
            if lags.len() < MAX_GROUPS_TRACKED {
                lags.push((group, positions.iter().map(|(_, lag)| lag).sum()));
            }
        }
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (produce_rate, consume_rate) = match s.rates.back() {
            Some(prev) if t_ms > prev.t_ms => {
                let secs = (t_ms - prev.t_ms) as f64 / 1000.0;
                (
                    produced.saturating_sub(prev.produced_total) as f64 / secs,
                    consumed.saturating_sub(prev.consumed_total) as f64 / secs,
                )
            }
            _ => (0.0, 0.0),
        };
        push(
            &mut s.rates,
            RateSample {
                t_ms,
                produce_rate,
                consume_rate,
                produced_total: produced,
                consumed_total: consumed,
                disk_bytes: disk,
            },
        );
        // Groups that are gone stop being kept.
        let live: std::collections::HashSet<&str> = lags.iter().map(|(g, _)| g.as_str()).collect();
        s.lags.retain(|g, _| live.contains(g.as_str()));
        for (group, lag) in lags {
            push(s.lags.entry(group).or_default(), LagSample { t_ms, lag });
        }
    }

    pub fn rates(&self) -> Vec<RateSample> {
        let s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        s.rates.iter().copied().collect()
    }

    pub fn lag(&self, group: &str) -> Vec<LagSample> {
        let s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        s.lags
            .get(group)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Samples `broker` every [`SAMPLE_INTERVAL`] on the current runtime until the broker is
    /// dropped or shuts down. Does nothing outside a runtime.
    pub fn spawn_sampler(self: &Arc<Self>, broker: &Broker) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (history, weak, stop) = (
            Arc::clone(self),
            broker.downgrade(),
            broker.shutdown_token(),
        );
        rt.spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if !sample_once(&history, &weak).await {
                    return;
                }
            }
        });
    }
}

/// A shared group's (position, lag) per partition; `None` when `group` is not a shared group.
/// Called on a blocking thread (the group's state is behind an async lock).
fn shared_positions(broker: &Broker, group: &str) -> Option<Vec<(u64, u64)>> {
    broker.shared_group_config(group)?;
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let parts = handle
        .block_on(broker.shared_group_state(group, None))
        .ok()?;
    Some(
        parts
            .iter()
            .map(|p| {
                let end = broker
                    .describe_topic(&p.topic)
                    .ok()
                    .and_then(|t| {
                        t.partitions
                            .iter()
                            .find(|d| d.partition == p.partition)
                            .map(|d| d.log_end)
                    })
                    .unwrap_or(p.position);
                (p.position, end.saturating_sub(p.position))
            })
            .collect(),
    )
}

/// One sample on a blocking thread (it walks every partition); false once the broker is gone.
async fn sample_once(history: &Arc<History>, weak: &WeakBroker) -> bool {
    let Some(broker) = weak.upgrade() else {
        return false;
    };
    let history = Arc::clone(history);
    tokio::task::spawn_blocking(move || history.sample(&broker))
        .await
        .is_ok()
}

/// `GET /stats/history`.
pub async fn rates(
    State(state): State<HttpState>,
    Authed(caller): Authed,
) -> Result<axum::Json<Value>, ApiError> {
    caller.authorize(Operation::Describe, Resource::Cluster)?;
    Ok(axum::Json(json!({
        "interval_ms": SAMPLE_INTERVAL.as_millis() as u64,
        "samples": state.history.rates(),
    })))
}

/// `GET /groups/{group}/history`: 404 for an unknown group.
pub async fn group_lag(
    State(state): State<HttpState>,
    Authed(caller): Authed,
    Path(group): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    // A shared group (issue 14) has positions, not committed offsets.
    if caller.shared_group_positions(&group).await?.is_none() {
        caller.describe_group(&group)?;
    }
    Ok(axum::Json(json!({
        "group": group,
        "interval_ms": SAMPLE_INTERVAL.as_millis() as u64,
        "samples": state.history.lag(&group),
    })))
}
