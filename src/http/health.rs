//! Probes and scrapes: `/health` (component report, 503 when unhealthy), `/health/live`,
//! `/health/ready` (503 with a reason when not ready) and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::HttpState;
use crate::broker::now_ns;
use crate::rfc3339::format_unix_ns;
use crate::status::health::{self, Health};

/// `GET /health`: 200, or 503 when any component is unhealthy.
pub async fn health(State(state): State<HttpState>) -> Response {
    let report = health::evaluate(&state.broker, &state.status);
    let code = if report.status == Health::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(report)).into_response()
}

/// `GET /health/live`: the process answers.
pub async fn live() -> Response {
    axum::Json(json!({"status": "alive", "timestamp": format_unix_ns(now_ns())})).into_response()
}

/// `GET /health/ready`: whether to send traffic here (200, listing damaged data if there is any;
/// 503 with a reason when not ready).
pub async fn ready(State(state): State<HttpState>) -> Response {
    let readiness = if state.shutdown.is_cancelled() {
        Err("shutting down".to_string())
    } else {
        health::readiness(&state.broker, &state.status)
    };
    match readiness {
        Ok(()) => {
            let damage = health::damage_report(&state.broker, &state.broker.partition_snapshots());
            if damage.is_empty() {
                axum::Json(json!({"status": "ready"})).into_response()
            } else {
                axum::Json(json!({"status": "ready", "damaged": damage})).into_response()
            }
        }
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
}

/// `GET /metrics`: every series in the Prometheus text exposition format.
pub async fn metrics() -> Response {
    let page = tokio::task::spawn_blocking(crate::metrics::render)
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        page,
    )
        .into_response()
}
