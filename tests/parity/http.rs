//! Just enough HTTP/1.1 client for the tests, over a `TcpStream`: one request per connection.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::common::wait::PATIENCE;

/// `segment` percent-encoded for a URL path: everything but `[A-Za-z0-9_-]`, so `.` and `..`
/// reach the router as names rather than as dot-segments.
pub fn path_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One HTTP/1.1 request on a new connection (`Connection: close`): (status, JSON body or null).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("HTTP connects");
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: parity\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("writes");
        // The server may answer (413) and close before the whole body is sent.
        let _ = stream.write_all(body.as_bytes()).await;
        let mut raw = Vec::new();
        // A reset after the answer (the body was refused mid-way) still leaves the answer read.
        let _ = stream.read_to_end(&mut raw).await;
        raw
    };
    let raw = timeout(PATIENCE, exchange)
        .await
        .expect("HTTP answers in time");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        !head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked")),
        "JSON answers have a length: {head}"
    );
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
