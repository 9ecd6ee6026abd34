//! Connections over a listener's limit: the reply each protocol understands ([`Refusal`]),
//! sending it without letting refused sockets pile up ([`refuse`]), and one rate-limited warning
//! for them all ([`RefusalLog`]).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::h2_refusal as h2;
use crate::status::Protocol;

/// How often at most a refused connection is logged per listener; the refusals in between are
/// counted in the next line.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Refused connections waiting for their reply to be read at once, per listener; beyond it a
/// refused connection is closed without waiting.
pub const MAX_LINGERING: usize = 8;
/// How long a refused connection may take to read its reply and close.
pub const LINGER: Duration = Duration::from_millis(500);

/// What a connection over the limit is told before it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client's first call is answered RESOURCE_EXHAUSTED, then GOAWAY (see `h2_refusal.rs`); a
    /// client that sends no call gets SETTINGS and a GOAWAY `ENHANCE_YOUR_CALM` with the reason.
    /// Either way it fails at once instead of waiting.
    Grpc,
    /// `HTTP/1.1 429 Too Many Requests` with the JSON error body of every other error.
    Http,
    /// The legacy protocol's `NACK:PUBLISH_FAILED` line (DESIGN.md: overloaded).
    Legacy,
}

const REFUSAL_REASON: &str = "too many connections; retry later";

impl Refusal {
    /// The bytes sent to a refused connection that gets no more (for gRPC, when no call is
    /// answered: SETTINGS and a GOAWAY `ENHANCE_YOUR_CALM`).
    pub fn reply(self) -> Vec<u8> {
        match self {
            Self::Grpc => {
                let mut out = h2::SETTINGS.to_vec();
                out.extend_from_slice(&h2::goaway(0, h2::ENHANCE_YOUR_CALM, REFUSAL_REASON));
                out
            }
            Self::Http => {
                let body =
                    format!(r#"{{"error":{{"code":"overloaded","message":"{REFUSAL_REASON}"}}}}"#);
                format!(
                    "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
                     retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            Self::Legacy => crate::legacy::codec::Reply::PublishFailed
                .as_bytes()
                .to_vec(),
        }
    }
}

/// Lets one log line through per `REFUSAL_LOG_INTERVAL` (10 s) and counts the ones held back,
/// for events that can come by the thousand (refused connections, accept failures when out of
/// descriptors).
#[derive(Debug, Default)]
pub struct LogGate {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogGate {
    /// `Some(held back since the last line)` when a line may be logged now; else `None` (and the
    /// event is counted).
    pub fn open(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = crate::sync::lock(&self.last);
        if last.is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_INTERVAL) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// One warning per `REFUSAL_LOG_INTERVAL` (10 s) for refused connections, with the count of
/// those not logged since the last one.
#[derive(Debug)]
pub struct RefusalLog {
    protocol: Protocol,
    gate: LogGate,
}

impl RefusalLog {
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            gate: LogGate::default(),
        }
    }

    /// Logs a refused connection from `peer`, unless one was logged within the interval.
    pub fn refused(&self, peer: SocketAddr, max_connections: usize) {
        let Some(suppressed) = self.gate.open() else {
            return;
        };
        tracing::warn!(
            protocol = self.protocol.as_str(),
            %peer,
            max_connections,
            refused_since_last_warning = suppressed,
            "connection refused: the listener is at its connection limit"
        );
    }
}

/// Sends `refusal` on a connection over the limit and closes it. In a task (at most
/// `MAX_LINGERING` at once; beyond, the reply is sent and the connection closed at once), a
/// gRPC client's first call is answered; then the peer's input is read and discarded until it
/// closes, at most `LINGER` (0.5 s), so the peer reads the reply before the connection ends and
/// closing with unread input does not reset the connection under the reply.
pub fn refuse(stream: TcpStream, refusal: Refusal, lingering: &Arc<Semaphore>) {
    let permit = Arc::clone(lingering).try_acquire_owned().ok();
    let first = match (refusal, &permit) {
        (Refusal::Grpc, Some(_)) => h2::SETTINGS.to_vec(),
        _ => refusal.reply(),
    };
    // A fresh socket's send buffer is empty: the reply fits without waiting.
    if stream.try_write(&first).is_err() {
        return;
    }
    let Some(permit) = permit else {
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        if refusal == Refusal::Grpc {
            let answered =
                tokio::time::timeout(LINGER, h2::answer_first_call(&mut stream, REFUSAL_REASON))
                    .await;
            if !matches!(answered, Ok(Ok(true))) {
                // Bounded too: a peer that stops reading (its SETTINGS ACKs filled the send
                // buffer) would otherwise hold this task, its socket and a lingering slot forever.
                let bye = h2::goaway(0, h2::ENHANCE_YOUR_CALM, REFUSAL_REASON);
                let _ = tokio::time::timeout(LINGER, stream.write_all(&bye)).await;
            }
        }
        let _ = tokio::time::timeout(LINGER, drain(&stream)).await;
        let _ = stream.shutdown().await;
        drop(permit);
    });
}

async fn drain(stream: &TcpStream) {
    let mut sink = [0u8; 4096];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_refusal_is_a_settings_and_a_goaway_frame() {
        let r = Refusal::Grpc.reply();
        assert_eq!(&r[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let len = u32::from_be_bytes([0, r[9], r[10], r[11]]) as usize;
        assert_eq!(r[12], 7, "GOAWAY");
        assert_eq!(r.len(), 18 + len);
        assert_eq!(&r[22..26], &0xbu32.to_be_bytes(), "ENHANCE_YOUR_CALM");
        assert_eq!(&r[26..], REFUSAL_REASON.as_bytes());
    }

    #[test]
    fn http_refusal_is_a_complete_429() {
        let r = String::from_utf8(Refusal::Http.reply()).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
    }

    #[test]
    fn refusals_are_logged_once_per_interval() {
        let log = RefusalLog::new(Protocol::Grpc);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        for _ in 0..100 {
            log.refused(peer, 1);
        }
        assert_eq!(log.gate.suppressed.load(Ordering::Relaxed), 99);
        assert_eq!(log.gate.open(), None, "still within the interval");
    }
}
