//! A minimal HTTP/1.1 client for `POST /topics/{topic}/messages` with JSON batches
//! (`{"records":[{"key":"","value":"…"}]}`), pipelined on one keep-alive connection: requests are
//! written back to back and responses read in order. Enough HTTP for a benchmark (status line,
//! headers, a Content-Length or chunked body), no dependency beyond tokio.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::transport::Batch;

/// Longest status line or header accepted.
const MAX_LINE: usize = 16 << 10;

pub struct Writer {
    socket: OwnedWriteHalf,
    host: String,
    buf: Vec<u8>,
}

pub struct Reader {
    socket: BufReader<OwnedReadHalf>,
    line: Vec<u8>,
}

/// Connects to an HTTP listener.
///
/// # Errors
/// Nothing listens at `addr`.
pub async fn connect(addr: SocketAddr) -> Result<(Writer, Reader), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot reach the HTTP listener at {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    Ok((
        Writer {
            socket: w,
            host: addr.to_string(),
            buf: Vec::new(),
        },
        Reader {
            socket: BufReader::new(r),
            line: Vec::new(),
        },
    ))
}

/// The request for one batch.
pub fn encode_request(out: &mut Vec<u8>, host: &str, batch: &Batch<'_>) -> Result<(), String> {
    let records: Vec<serde_json::Value> = batch
        .values
        .iter()
        .map(|v| {
            std::str::from_utf8(v)
                .map(|value| serde_json::json!({ "key": "", "value": value }))
                .map_err(|_| "HTTP bench values must be UTF-8".to_string())
        })
        .collect::<Result<_, _>>()?;
    let body = serde_json::to_vec(&serde_json::json!({ "records": records }))
        .map_err(|e| e.to_string())?;
    out.clear();
    out.extend_from_slice(
        format!(
            "POST /topics/{}/messages HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            batch.topic,
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    Ok(())
}

impl Writer {
    /// Writes the batch's request.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn send(&mut self, batch: Batch<'_>) -> Result<(), String> {
        encode_request(&mut self.buf, &self.host, &batch)?;
        self.socket
            .write_all(&self.buf)
            .await
            .map_err(|e| format!("HTTP connection failed: {e}"))
    }

    /// Stops sending without half-closing: an HTTP/1.1 server may drop a connection whose read side
    /// ended before it wrote the last responses. The connection closes when the reader is dropped.
    pub async fn close(self) {
        self.socket.forget();
    }
}

impl Reader {
    async fn line(&mut self) -> Result<String, String> {
        self.line.clear();
        let n = (&mut self.socket)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut self.line)
            .await
            .map_err(|e| format!("HTTP connection failed: {e}"))?;
        if n == 0 {
            return Err("the HTTP listener closed the connection".into());
        }
        if self.line.last() != Some(&b'\n') {
            return Err("the HTTP listener sent an overlong line".into());
        }
        Ok(String::from_utf8_lossy(&self.line).trim_end().to_string())
    }

    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut body = vec![0u8; n];
        self.socket
            .read_exact(&mut body)
            .await
            .map_err(|e| format!("HTTP connection failed: {e}"))?;
        Ok(body)
    }

    /// Reads the oldest response; 2xx is an ack.
    ///
    /// # Errors
    /// Another status (with its body), or a broken connection or response.
    pub async fn ack(&mut self) -> Result<Instant, String> {
        let status_line = self.line().await?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let header = self.line().await?;
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value
                        .parse()
                        .map_err(|_| format!("bad Content-Length {value:?}"))?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let size_line = self.line().await?;
                let hex = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad chunk size {size_line:?}"))?;
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                body.extend(self.exact(size).await?);
                self.exact(2).await?;
            }
            body
        } else {
            self.exact(length).await?
        };
        if (200..300).contains(&status) {
            Ok(Instant::now())
        } else {
            let text = String::from_utf8_lossy(&body);
            Err(format!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::post;

    #[tokio::test]
    async fn pipelined_posts_get_responses_in_order() {
        async fn handler(Path(topic): Path<String>, body: String) -> (StatusCode, String) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let n = v["records"].as_array().map_or(0, Vec::len);
            if topic == "bad" {
                (StatusCode::BAD_REQUEST, "{\"error\":\"bad topic\"}".into())
            } else {
                (StatusCode::CREATED, format!("{{\"records\":{n}}}"))
            }
        }
        let app = Router::new().route("/topics/{topic}/messages", post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (mut w, mut r) = connect(addr).await.unwrap();
        let values = vec![bytes::Bytes::from_static(b"v\"quoted\""); 2];
        for topic in ["a", "b", "bad"] {
            w.send(Batch {
                topic,
                values: values.clone(),
                timestamp_ns: 0,
            })
            .await
            .unwrap();
        }
        r.ack().await.unwrap();
        r.ack().await.unwrap();
        let err = r.ack().await.unwrap_err();
        assert!(
            err.starts_with("HTTP 400") && err.contains("bad topic"),
            "{err}"
        );
    }
}
