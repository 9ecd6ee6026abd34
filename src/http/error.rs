//! HTTP errors: the one table mapping every [`BrokerError`] to a status and a JSON body
//! `{"error":{"code":"…","message":"…"}}`, and the request-level errors (malformed JSON, bad
//! query or path, body too large, timeout, unknown route).
//!
//! `code` is [`BrokerError::kind`] (`topic_not_found`, `overloaded`…) or one of the request
//! codes below; `message` is meant for a person. Internal details (paths, I/O errors) never reach
//! the client: the core logs them, and server-side errors are logged here too.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::broker::BrokerError;

/// The error `code` of a response, kept in its extensions for the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// Request codes that are not broker errors.
pub mod codes {
    /// The body is not JSON.
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// JSON of the wrong shape, or a bad query string or path parameter.
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const TIMEOUT: &str = "timeout";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const INTERNAL: &str = "internal";
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The body is not valid JSON.
    #[error("{0}")]
    MalformedJson(String),
    /// The JSON, query string or path does not describe a valid request.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }

    /// The status and code of this error: the one mapping table.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Broker(e) => (broker_status(e), e.kind()),
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, codes::MALFORMED_JSON),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, codes::INVALID_REQUEST),
            Self::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, codes::PAYLOAD_TOO_LARGE)
            }
        }
    }
}

/// The HTTP status of each broker error (DESIGN.md's table). No `_` arm: a new error kind does
/// not build until it is mapped here.
fn broker_status(e: &BrokerError) -> StatusCode {
    match e {
        BrokerError::InvalidName { .. }
        | BrokerError::InvalidArgument(_)
        | BrokerError::RecordTooLarge { .. } => StatusCode::BAD_REQUEST,
        BrokerError::TopicNotFound(_) | BrokerError::GroupNotFound(_) => StatusCode::NOT_FOUND,
        BrokerError::TopicExists(_) => StatusCode::CONFLICT,
        BrokerError::OffsetOutOfRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        BrokerError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
        BrokerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        BrokerError::DataLoss(_) => StatusCode::INTERNAL_SERVER_ERROR,
        BrokerError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        BrokerError::PermissionDenied(_) => StatusCode::FORBIDDEN,
        BrokerError::Fenced { .. }
        | BrokerError::GroupHasMembers { .. }
        | BrokerError::GroupExists(_) => StatusCode::CONFLICT,
        BrokerError::MemberNotFound { .. } => StatusCode::NOT_FOUND,
        BrokerError::ProducerSequence { .. } => StatusCode::CONFLICT,
        BrokerError::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A JSON error response with its code recorded in the extensions. 429 and 503 carry
/// `Retry-After: 1`.
pub fn error_response(status: StatusCode, code: &'static str, message: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response();
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp.extensions_mut().insert(ErrorCode(code));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.to_string();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), code, %message, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), code, %message, "request rejected");
        }
        error_response(status, code, &message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::NameKind;

    #[test]
    fn every_broker_error_has_its_status() {
        let cases = [
            (
                BrokerError::InvalidName {
                    kind: NameKind::Topic,
                    name: "a/b".into(),
                    reason: "r",
                },
                400,
            ),
            (BrokerError::InvalidArgument("x".into()), 400),
            (BrokerError::RecordTooLarge { size: 2, max: 1 }, 400),
            (BrokerError::TopicNotFound("t".into()), 404),
            (BrokerError::GroupNotFound("g".into()), 404),
            (BrokerError::TopicExists("t".into()), 409),
            (
                BrokerError::OffsetOutOfRange {
                    topic: "t".into(),
                    partition: 0,
                    offset: 9,
                    start: 0,
                    end: 1,
                },
                416,
            ),
            (BrokerError::Overloaded("q".into()), 429),
            (BrokerError::Unavailable("u".into()), 503),
            (BrokerError::DataLoss("d".into()), 500),
        ];
        for (err, status) in cases {
            let kind = err.kind();
            let resp = ApiError::from(err).into_response();
            assert_eq!(resp.status().as_u16(), status, "{kind}");
            assert_eq!(resp.extensions().get::<ErrorCode>(), Some(&ErrorCode(kind)));
            assert_eq!(
                resp.headers()
                    .get(header::CONTENT_TYPE)
                    .map(|v| v.as_bytes()),
                Some(&b"application/json"[..])
            );
            assert_eq!(
                resp.headers().contains_key(header::RETRY_AFTER),
                status == 429 || status == 503
            );
        }
    }
}
