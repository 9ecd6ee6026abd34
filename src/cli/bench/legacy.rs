//! The bench's legacy-protocol producer: [`crate::legacy::client`]'s connection, split so that
//! sending and reading replies run in separate tasks. The protocol has no batches: a bench batch
//! is that many frames written at once, and its ack is that many `OK` replies in order.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::transport::Batch;
use crate::legacy::client::{FrameWriter, LegacyClient, ReplyReader};
use crate::legacy::codec::{Message, Reply};

pub struct Writer(FrameWriter);

pub struct Reader(ReplyReader);

/// Connects to a legacy listener.
///
/// # Errors
/// Nothing listens at `addr`.
pub async fn connect(addr: SocketAddr) -> Result<(Writer, Reader), String> {
    let client = LegacyClient::connect(addr)
        .await
        .map_err(|e| format!("cannot reach the legacy listener at {addr}: {e}"))?;
    let (w, r) = client.into_split();
    Ok((Writer(w), Reader(r)))
}

impl Writer {
    /// Writes the batch's frames (empty keys) with one write.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn send(&mut self, batch: Batch<'_>) -> Result<(), String> {
        let topic = Bytes::copy_from_slice(batch.topic.as_bytes());
        let failed = |e| format!("legacy connection failed: {e}");
        for value in batch.values {
            let message = Message {
                timestamp: batch.timestamp_ns,
                topic: topic.clone(),
                key: Bytes::new(),
                value,
            };
            self.0.write_message(&message).await.map_err(failed)?;
        }
        self.0.flush().await.map_err(failed)
    }

    pub async fn close(mut self) {
        let _ = self.0.shutdown().await;
    }
}

impl Reader {
    /// Reads the replies of the oldest `frames` frames.
    ///
    /// # Errors
    /// A NACK, or the connection failed.
    pub async fn ack(&mut self, frames: usize) -> Result<Instant, String> {
        for _ in 0..frames {
            match self.0.read_reply().await {
                Ok(Some(Reply::Ok)) => {}
                Ok(Some(nack)) => {
                    return Err(format!(
                        "the legacy listener answered {:?}",
                        String::from_utf8_lossy(nack.as_bytes()).trim_end()
                    ));
                }
                Ok(None) => return Err("the legacy listener closed the connection".into()),
                Err(e) => return Err(format!("legacy connection failed: {e}")),
            }
        }
        Ok(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn pipelined_frames_get_replies_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A stand-in listener: OK for each frame, NACK for the topic "bad"; it keeps the frames.
        let frames = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut frames = Vec::new();
            loop {
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).await.is_err() {
                    return frames;
                }
                let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
                s.read_exact(&mut body).await.unwrap();
                let reply: &[u8] = if &body[12..15] == b"bad" {
                    b"NACK:PUBLISH_FAILED\n"
                } else {
                    b"OK\n"
                };
                s.write_all(reply).await.unwrap();
                frames.push([&len[..], &body].concat());
            }
        });
        let (mut w, mut r) = connect(addr).await.unwrap();
        let values = vec![Bytes::from_static(b"hi"); 3];
        for _ in 0..2 {
            w.send(Batch {
                topic: "t",
                values: values.clone(),
                timestamp_ns: -1,
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
        w.close().await;
        let frames = frames.await.unwrap();
        assert_eq!(frames.len(), 9);
        // The original's layout: u32 length, i64 timestamp, then u32-prefixed topic, key, value.
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
        assert_eq!(frames[0], expect);
    }
}
