//! Middleware around every route: request metrics by call, and JSON bodies for the bare error
//! responses that axum and tower-http produce themselves (unknown method, body over the limit
//! announced by `Content-Length`, timeout).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::{ErrorCode, codes, error_response};

/// Records `obelisk_request_duration_seconds{protocol="http",call}` and, for error responses,
/// `obelisk_errors_total{protocol="http",kind}`.
pub(super) async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let call = call_name(
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let resp = next.run(req).await;
    // Every error response carries its code ([`json_errors`] adds one to bare ones); a 503 from
    // `/health` or `/health/ready` is a report, not a failed request, and has none.
    let error = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    crate::metrics::record_request_kind("http", call, started, error);
    resp
}

/// Gives a JSON error body to error responses that have none (they carry no [`ErrorCode`]).
pub(super) async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let keep = !(status.is_client_error() || status.is_server_error())
        || resp.extensions().get::<ErrorCode>().is_some()
        || resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if keep {
        return resp;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this path",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than the limit",
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => {
            "the request did not complete in time; its outcome is unknown"
        }
        StatusCode::NOT_FOUND => "no such endpoint",
        _ => "the request failed",
    };
    let mut out = error_response(status, fallback_code(status), message);
    if let Some(allow) = resp.headers().get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

fn fallback_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => codes::METHOD_NOT_ALLOWED,
        StatusCode::PAYLOAD_TOO_LARGE => codes::PAYLOAD_TOO_LARGE,
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => codes::TIMEOUT,
        StatusCode::NOT_FOUND => codes::NOT_FOUND,
        s if s.is_client_error() => codes::INVALID_REQUEST,
        _ => codes::INTERNAL,
    }
}

/// The `call` label: a fixed name per route and method.
fn call_name(method: &Method, path: Option<&str>) -> &'static str {
    let Some(path) = path else {
        return "unmatched";
    };
    match (method.as_str(), path) {
        ("POST", "/topics/{topic}/messages") => "produce",
        ("GET", "/topics/{topic}/messages") => "fetch",
        ("POST", "/topics/{topic}/poll") => "poll",
        ("POST", "/topics/{topic}/commit") => "commit",
        ("POST", "/topics/{topic}/reset") => "reset",
        ("GET", "/topics") => "list_topics",
        ("POST", "/topics") => "create_topic",
        ("GET", "/topics/{topic}") => "describe_topic",
        ("DELETE", "/topics/{topic}") => "delete_topic",
        ("GET", "/groups") => "list_groups",
        ("GET", "/groups/{group}") => "describe_group",
        ("GET", "/stats") => "stats",
        ("GET", "/health") => "health",
        ("GET", "/health/live") => "live",
        ("GET", "/health/ready") => "ready",
        ("GET", "/metrics") => "metrics",
        // Console (issue 18).
        ("GET", "/stats/overview") => "overview",
        ("GET", "/stats/history") => "history",
        ("GET", "/groups/{group}/history") => "group_history",
        ("GET", "/topics/{topic}/offsets") => "topic_offsets",
        ("GET", "/ui" | "/ui/" | "/ui/{*path}") => "ui",
        ("POST", "/topics/{topic}/acks") => "settle", // shared groups (issue 14)
        _ => "other",
    }
}
