//! The request layer around every gRPC service: counts each request in flight on its connection
//! until its response ends (so idle connections can be closed, see
//! [`crate::server::connections`]), and gives requests tonic itself refuses the code of the
//! error table.
//!
//! tonic answers a request body that is not the message it should be with INTERNAL ("failed to
//! decode Protobuf message", "Unexpected EOF decoding stream", a bad compression flag) and one
//! above `max_message_bytes` with OUT_OF_RANGE, before any of our code runs. DESIGN.md says
//! malformed or oversized requests get INVALID_ARGUMENT, and OUT_OF_RANGE means an offset out of
//! range; so those answers are rewritten here, recognised by tonic's messages (pinned by
//! `tests/faults_connections.rs`, so a tonic upgrade that rewords them fails there).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap, HeaderValue};
use tower::{Layer, Service};

use super::incoming::ConnectionInfo;
use crate::server::connections::TrackedBody;

/// tonic's messages for a request message that does not decode (code INTERNAL).
const MALFORMED: [&str; 3] = [
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream",
    "protocol error: received message with invalid compression flag",
];
/// tonic's message for a request message over the size limit (code OUT_OF_RANGE).
const TOO_LARGE: &str = "Error, decoded message length too large: ";

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLayer;

impl<S> Layer<S> for RequestLayer {
    type Service = Requests<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Requests { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Requests<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for Requests<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let in_flight = req
            .extensions()
            .get::<ConnectionInfo>()
            .map(|c| c.activity.begin());
        let response = self.inner.call(req);
        Box::pin(async move {
            let (mut parts, body) = response.await?.into_parts();
            remap_refused_requests(&mut parts.headers);
            let body = TrackedBody::new(body, in_flight).map_trailers(remap_refused_requests);
            Ok(http::Response::from_parts(parts, Body::new(body)))
        })
    }
}

/// Rewrites tonic's own answers to malformed and oversized requests to INVALID_ARGUMENT (in the
/// headers of a trailers-only response, or in trailers).
pub fn remap_refused_requests(headers: &mut HeaderMap) {
    // Most responses (every OK one) stop here, before the message is decoded.
    let Some(code) = headers.get("grpc-status") else {
        return;
    };
    if !matches!(code.as_bytes(), b"13" | b"11") {
        return;
    }
    let message = headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default();
    let message = match code.as_bytes() {
        b"13" if MALFORMED.iter().any(|m| message.starts_with(m)) => {
            format!("malformed request message: {message}")
        }
        b"11" if message.starts_with(TOO_LARGE) => {
            format!(
                "request message length too large: {}",
                &message[TOO_LARGE.len()..]
            )
        }
        _ => return,
    };
    headers.insert("grpc-status", HeaderValue::from_static("3"));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(&message)) {
        headers.insert("grpc-message", v);
    }
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let hex = v
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (v[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remapped(code: &'static str, message: &str) -> (String, String) {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static(code));
        h.insert(
            "grpc-message",
            HeaderValue::from_str(&percent_encode(message)).unwrap(),
        );
        remap_refused_requests(&mut h);
        let get = |k| percent_decode(h.get(k).unwrap().as_bytes());
        (get("grpc-status"), get("grpc-message"))
    }

    #[test]
    fn tonic_refusals_become_invalid_argument() {
        let (code, msg) = remapped(
            "13",
            "failed to decode Protobuf message: invalid wire type value: 7",
        );
        assert_eq!(code, "3");
        assert!(
            msg.starts_with("malformed request message: failed"),
            "{msg}"
        );
        let (code, msg) = remapped(
            "11",
            "Error, decoded message length too large: found 100 bytes, the limit is: 10 bytes",
        );
        assert_eq!(code, "3");
        assert_eq!(
            msg,
            "request message length too large: found 100 bytes, the limit is: 10 bytes"
        );
    }

    #[test]
    fn other_statuses_are_left_alone() {
        let out_of_range = "offset 9 of t/0 is out of range (log 0..1)";
        assert_eq!(
            remapped("11", out_of_range),
            ("11".into(), out_of_range.into())
        );
        assert_eq!(
            remapped("13", "boom 100%"),
            ("13".into(), "boom 100%".into())
        );
    }
}
