//! A small legacy-protocol producer client: connect, send frames (pipelined or not), read the
//! replies in order. Used by the tests and by the benchmark tool.
//!
//! [`LegacyClient::into_split`] gives a [`FrameWriter`] and a [`ReplyReader`] that can run in
//! separate tasks, for a producer that keeps a window of frames in flight.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::Semaphore;

use super::codec::{self, Message, Reply, UnknownReply};

/// Bytes of frames buffered before the writer sends them.
const WRITE_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("legacy connection I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    UnknownReply(#[from] UnknownReply),
    #[error("the server closed the connection before replying")]
    Closed,
    #[error("the server closed the connection inside a reply line ({0} bytes of it received)")]
    ClosedMidReply(usize),
}

/// A connection to a legacy listener.
pub struct LegacyClient {
    writer: FrameWriter,
    reader: ReplyReader,
}

impl LegacyClient {
    /// Connects (with `TCP_NODELAY`, as the frames are small and replies are awaited).
    ///
    /// # Errors
    /// [`ClientError::Io`] when the connection cannot be made.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        Ok(Self {
            writer: FrameWriter {
                out: BufWriter::with_capacity(WRITE_BUFFER, wr),
                frame: BytesMut::new(),
            },
            reader: ReplyReader {
                rd,
                buf: BytesMut::with_capacity(1024),
            },
        })
    }

    pub fn writer(&mut self) -> &mut FrameWriter {
        &mut self.writer
    }

    pub fn reader(&mut self) -> &mut ReplyReader {
        &mut self.reader
    }

    /// The two halves, to drive from separate tasks.
    pub fn into_split(self) -> (FrameWriter, ReplyReader) {
        (self.writer, self.reader)
    }

    /// Sends one message and waits for its reply.
    ///
    /// # Errors
    /// I/O errors, an unrecognised reply, or the server closing the connection.
    pub async fn produce(&mut self, message: &Message) -> Result<Reply, ClientError> {
        self.writer.write_message(message).await?;
        self.writer.flush().await?;
        self.reader.expect_reply().await
    }

    /// Sends every message with up to `window` frames awaiting replies, reading replies while
    /// writing; returns the replies in order. A `window` of 0 is taken as 1.
    ///
    /// # Errors
    /// As [`LegacyClient::produce`]; replies already read are lost with the error.
    pub async fn produce_pipelined(
        &mut self,
        messages: &[Message],
        window: usize,
    ) -> Result<Vec<Reply>, ClientError> {
        let window = Semaphore::new(window.max(1));
        let writer = &mut self.writer;
        let reader = &mut self.reader;
        let write = async {
            for message in messages {
                match window.try_acquire() {
                    Ok(permit) => permit.forget(),
                    Err(_) => {
                        // About to wait for replies: send what is buffered first.
                        writer.flush().await?;
                        if let Ok(permit) = window.acquire().await {
                            permit.forget();
                        }
                    }
                }
                writer.write_message(message).await?;
            }
            writer.flush().await?;
            Ok::<_, ClientError>(())
        };
        let read = async {
            let mut replies = Vec::with_capacity(messages.len());
            while replies.len() < messages.len() {
                replies.push(reader.expect_reply().await?);
                window.add_permits(1);
            }
            Ok::<_, ClientError>(replies)
        };
        // The first error ends both halves (a reader waiting for replies that will never come,
        // or a writer waiting for room in the window).
        let ((), replies) = tokio::try_join!(write, read)?;
        Ok(replies)
    }
}

/// The sending half: buffers frames and writes them on [`FrameWriter::flush`] (or when the
/// buffer is full).
pub struct FrameWriter {
    out: BufWriter<OwnedWriteHalf>,
    /// One frame being encoded, reused so that a frame costs no allocation.
    frame: BytesMut,
}

impl FrameWriter {
    /// Queues one framed message.
    ///
    /// # Errors
    /// I/O errors when the buffer had to be written out.
    pub async fn write_message(&mut self, message: &Message) -> Result<(), ClientError> {
        self.frame.clear();
        self.frame
            .reserve(codec::LENGTH_PREFIX_LEN + message.encoded_len());
        message.encode_frame(&mut self.frame);
        Ok(self.out.write_all(&self.frame).await?)
    }

    /// Queues raw bytes (for tests of malformed input).
    ///
    /// # Errors
    /// I/O errors when the buffer had to be written out.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        Ok(self.out.write_all(bytes).await?)
    }

    /// Sends everything queued.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        Ok(self.out.flush().await?)
    }

    /// Sends everything queued, then closes the sending side (a TCP half-close).
    ///
    /// # Errors
    /// I/O errors.
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        Ok(self.out.shutdown().await?)
    }
}

/// The receiving half: reply lines, in order.
pub struct ReplyReader {
    rd: OwnedReadHalf,
    buf: BytesMut,
}

impl ReplyReader {
    /// The next reply, or `None` when the server closed the connection between replies.
    ///
    /// # Errors
    /// I/O errors, an unrecognised line, or the connection closing inside a line.
    pub async fn read_reply(&mut self) -> Result<Option<Reply>, ClientError> {
        loop {
            if let Some(reply) = codec::decode_reply(&mut self.buf)? {
                return Ok(Some(reply));
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return match self.buf.len() {
                    0 => Ok(None),
                    n => Err(ClientError::ClosedMidReply(n)),
                };
            }
        }
    }

    /// The next reply; the connection closing first is an error.
    ///
    /// # Errors
    /// As [`ReplyReader::read_reply`], and [`ClientError::Closed`].
    pub async fn expect_reply(&mut self) -> Result<Reply, ClientError> {
        self.read_reply().await?.ok_or(ClientError::Closed)
    }

    /// Every byte the server sends until it closes the connection (for tests).
    ///
    /// # Errors
    /// I/O errors (a reset connection included).
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut all = self.buf.split().to_vec();
        self.rd.read_to_end(&mut all).await?;
        Ok(all)
    }
}
