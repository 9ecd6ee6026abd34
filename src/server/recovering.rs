//! What the listeners answer while the broker recovers its data directory: gRPC health says
//! NOT_SERVING, HTTP liveness is 200 and readiness 503 "recovering", and every other request gets
//! UNAVAILABLE / 503 with a message to retry. Probes see the truth instead of a refused
//! connection, and nothing can reach a half-recovered core.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::broker::now_ns;
use crate::rfc3339::format_unix_ns;

const MESSAGE: &str = "the broker is recovering its data directory; retry shortly";

/// The HTTP router served during recovery.
pub fn router() -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async {
                axum::Json(json!({"status": "alive", "timestamp": format_unix_ns(now_ns())}))
            }),
        )
        .route(
            "/health/ready",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({"status": "not_ready", "reason": "recovering"})),
                )
            }),
        )
        .route(
            "/health",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({
                        "status": "unhealthy",
                        "timestamp": format_unix_ns(now_ns()),
                        "reason": "recovering",
                    })),
                )
            }),
        )
        .fallback(|| async { unavailable() })
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"error": {"code": "unavailable", "message": MESSAGE}})),
    )
        .into_response()
}

/// A gRPC response with status UNAVAILABLE and no body (a "trailers-only" response).
fn grpc_unavailable() -> Response {
    (
        [
            ("content-type", "application/grpc"),
            ("grpc-status", "14"),
            (
                "grpc-message",
                "the%20broker%20is%20recovering%20its%20data%20directory%3B%20retry%20shortly",
            ),
        ],
        "",
    )
        .into_response()
}

/// Serves the recovery answers on clones of the listeners until `done` fires.
pub struct RecoveryServers {
    done: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RecoveryServers {
    /// Starts serving on `grpc` and `http` (clones of the real listeners' sockets).
    pub fn start(grpc: TcpListener, http: Option<TcpListener>) -> Self {
        let done = CancellationToken::new();
        let mut tasks = Vec::new();
        let stop = done.clone();
        tasks.push(tokio::spawn(async move {
            let (reporter, health) = tonic_health::server::health_reporter();
            reporter
                .set_service_status(crate::grpc::HEALTH_SERVICE, ServingStatus::NotServing)
                .await;
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            // Health answers NOT_SERVING; every other call gets UNAVAILABLE (which clients retry),
            // not the UNIMPLEMENTED an unknown service would get.
            let routes = tonic::service::Routes::new(health)
                .prepare()
                .into_axum_router()
                .fallback(|| async { grpc_unavailable() });
            let res = axum::serve(grpc, routes)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "gRPC recovery listener failed");
            }
        }));
        if let Some(listener) = http {
            let stop = done.clone();
            tasks.push(tokio::spawn(async move {
                let res = axum::serve(listener, router())
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(e) = res {
                    tracing::warn!(error = %e, "HTTP recovery listener failed");
                }
            }));
        }
        Self { done, tasks }
    }

    /// Stops the recovery answers (connections opened during recovery are closed, so clients
    /// reconnect to the real servers).
    pub async fn stop(self) {
        self.done.cancel();
        for mut t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(2), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str) -> (StatusCode, serde_json::Value) {
        let resp = router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn probes_tell_the_truth_while_recovering() {
        let (s, b) = get("/health/live").await;
        assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("alive")));
        let (s, b) = get("/health/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b, json!({"status": "not_ready", "reason": "recovering"}));
        let (s, b) = get("/health").await;
        assert_eq!(
            (s, b["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("unhealthy"))
        );
        let (s, b) = get("/topics").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b["error"]["code"], "unavailable");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grpc_says_not_serving_and_unavailable_over_a_socket() {
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap();
        let servers = RecoveryServers::start(grpc, None);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: crate::grpc::HEALTH_SERVICE.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
        );
        let mut client = crate::client::BrokerClient::new(channel);
        let err = client
            .list_topics(crate::proto::ListTopicsRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(err.message().contains("recovering"), "{}", err.message());
        servers.stop().await;
    }
}
