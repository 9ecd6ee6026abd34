//! A pipelining client of the original Obelisk's binary protocol (the legacy listener speaks it):
//! a frame is `u32 LE length` + `i64 LE timestamp | u32 LE topic_len | topic | u32 LE key_len |
//! key | u32 LE value_len | value`; the server answers every frame, in order, with `OK\n` or
//! `NACK:<reason>\n`. The protocol has no batches: a bench batch is that many frames written at
//! once.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::transport::Batch;

pub struct Writer {
    socket: OwnedWriteHalf,
    buf: BytesMut,
}

pub struct Reader {
    socket: BufReader<OwnedReadHalf>,
    line: Vec<u8>,
}

/// Connects to a legacy listener.
///
/// # Errors
/// Nothing listens at `addr`.
pub async fn connect(addr: SocketAddr) -> Result<(Writer, Reader), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot reach the legacy listener at {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    Ok((
        Writer {
            socket: w,
            buf: BytesMut::new(),
        },
        Reader {
            socket: BufReader::new(r),
            line: Vec::new(),
        },
    ))
}

/// Appends one frame (empty key) to `out`.
pub fn encode_frame(out: &mut BytesMut, timestamp_ns: i64, topic: &str, value: &[u8]) {
    let body = 8 + 4 + topic.len() + 4 + 4 + value.len();
    out.reserve(4 + body);
    out.put_u32_le(body as u32);
    out.put_i64_le(timestamp_ns);
    out.put_u32_le(topic.len() as u32);
    out.put_slice(topic.as_bytes());
    out.put_u32_le(0);
    out.put_u32_le(value.len() as u32);
    out.put_slice(value);
}

impl Writer {
    /// Writes the batch's frames with one write.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn send(&mut self, batch: Batch<'_>) -> Result<(), String> {
        self.buf.clear();
        for v in &batch.values {
            encode_frame(&mut self.buf, batch.timestamp_ns, batch.topic, v);
        }
        self.socket
            .write_all(&self.buf)
            .await
            .map_err(|e| format!("legacy connection failed: {e}"))
    }

    pub async fn close(mut self) {
        let _ = self.socket.shutdown().await;
    }
}

impl Reader {
    /// Reads the replies of the oldest `frames` frames.
    ///
    /// # Errors
    /// A NACK, or the connection failed.
    pub async fn ack(&mut self, frames: usize) -> Result<Instant, String> {
        for _ in 0..frames {
            self.line.clear();
            let n = self
                .socket
                .read_until(b'\n', &mut self.line)
                .await
                .map_err(|e| format!("legacy connection failed: {e}"))?;
            if n == 0 {
                return Err("the legacy listener closed the connection".into());
            }
            if self.line != b"OK\n" {
                return Err(format!(
                    "the legacy listener answered {:?}",
                    String::from_utf8_lossy(&self.line).trim_end()
                ));
            }
        }
        Ok(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_matches_the_original() {
        let mut out = BytesMut::new();
        encode_frame(&mut out, -1, "t", b"hi");
        let expect: Vec<u8> = [
            &23u32.to_le_bytes()[..],
            &(-1i64).to_le_bytes(),
            &1u32.to_le_bytes(),
            b"t",
            &0u32.to_le_bytes(),
            &2u32.to_le_bytes(),
            b"hi",
        ]
        .concat();
        assert_eq!(&out[..], &expect[..]);
    }

    #[tokio::test]
    async fn pipelined_frames_get_replies_in_order() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A stand-in listener: OK for each frame, NACK for the topic "bad".
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            loop {
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
                s.read_exact(&mut body).await.unwrap();
                let reply: &[u8] = if &body[12..15] == b"bad" {
                    b"NACK:PUBLISH_FAILED\n"
                } else {
                    b"OK\n"
                };
                s.write_all(reply).await.unwrap();
            }
        });
        let (mut w, mut r) = connect(addr).await.unwrap();
        let values = vec![bytes::Bytes::from_static(b"v"); 3];
        for _ in 0..2 {
            w.send(Batch {
                topic: "ok",
                values: values.clone(),
                timestamp_ns: 0,
            })
            .await
            .unwrap();
        }
        r.ack(3).await.unwrap();
        r.ack(3).await.unwrap();
        w.send(Batch {
            topic: "bad",
            values,
            timestamp_ns: 0,
        })
        .await
        .unwrap();
        let err = r.ack(3).await.unwrap_err();
        assert!(err.contains("NACK:PUBLISH_FAILED"), "{err}");
    }
}
