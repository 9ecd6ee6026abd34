//! One legacy connection: read frames, hand them to the broker concurrently, reply in order.
//!
//! Two halves run together in the connection's task:
//! - the **reader** decodes frames from the socket and passes them on through a bounded channel.
//!   It stops at end of stream, at a fatal frame (longer than 10 MiB), after the idle timeout with
//!   no complete frame, or when the server shuts down;
//! - the **writer** turns each frame into a reply future (a `Broker::produce` call for a message)
//!   and keeps up to `max_in_flight` of them in a FIFO ([`FuturesOrdered`]), so pipelined frames
//!   reach the batcher together and share a group commit, while replies leave strictly in frame
//!   order. Replies are buffered and flushed when no further reply is ready at once.
//!
//! A message is queued to the broker in frame order (the futures are first polled in push order
//! and the partition queues are FIFO), so records with the same key keep the order they were sent.
//! `OK` is written only after the broker acknowledged the record, i.e. after it is durable.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec::{self, Frame, Message, Reply};
use super::replies;
use super::stats::LegacyStats;
use crate::broker::{Broker, ProduceRecord};

/// Bytes read from the socket at least per read call.
const READ_CHUNK: usize = 16 * 1024;
/// Largest single reservation while a big frame arrives (the buffer grows as bytes come, so a
/// peer announcing 10 MiB and sending nothing does not cost 10 MiB).
const MAX_RESERVE: usize = 1 << 20;
/// Reply bytes buffered before a write is forced.
const WRITE_BUFFER: usize = 16 * 1024;
/// Frames decoded and waiting for the writer, beyond those in flight.
const HANDOFF_DEPTH: usize = 64;
/// After a fatal frame, how long unread input is drained so the final reply is not lost to a
/// TCP reset.
const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// What one connection needs from the server.
#[derive(Clone)]
pub(crate) struct ConnectionContext {
    pub broker: Broker,
    pub idle_timeout: Duration,
    pub max_in_flight: usize,
    pub shutdown_grace: Duration,
    pub shutdown: CancellationToken,
    pub stats: std::sync::Arc<LegacyStats>,
}

/// What the reader hands to the writer.
enum Inbound {
    Frame(Frame),
    /// A reply after which the connection closes.
    Fatal(Reply),
}

/// Why the reader stopped.
#[derive(Debug)]
enum ReadEnd {
    /// The peer closed its side; `partial` bytes of an unfinished frame were dropped unanswered.
    Eof { partial: usize },
    Idle,
    Shutdown,
    Fatal,
    /// The writer stopped (the peer went away), so reading on is pointless.
    WriterGone,
    Failed(std::io::Error),
}

type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Serves one connection until it ends. Errors are logged here, not returned: one connection's
/// trouble is not the server's.
pub(crate) async fn run(stream: TcpStream, ctx: ConnectionContext) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(HANDOFF_DEPTH.min(ctx.max_in_flight).max(1));
    let writer_gone = CancellationToken::new();
    let reader = read_frames(rd, tx, &ctx, &writer_gone);
    let writer = async {
        let result = write_replies(wr, rx, &ctx).await;
        writer_gone.cancel();
        result
    };
    let both = async { tokio::join!(reader, writer) };
    let grace_over = async {
        ctx.shutdown.cancelled().await;
        tokio::time::sleep(ctx.shutdown_grace).await;
    };
    tokio::select! {
        ((end, rd), written) = both => {
            tracing::debug!(?end, "connection reader stopped");
            match (&end, written) {
                (ReadEnd::Failed(e), _) => {
                    ctx.stats.note_connection_error();
                    tracing::debug!(error = %e, "reading from the connection failed");
                }
                (_, Err(e)) => {
                    ctx.stats.note_connection_error();
                    tracing::debug!(error = %e, "writing replies failed");
                }
                (ReadEnd::Fatal, Ok(())) => {
                    ctx.stats.note_connection_error();
                    drain_input(rd, &ctx.shutdown).await;
                }
                (ReadEnd::Eof { partial }, Ok(())) if *partial > 0 => {
                    tracing::debug!(partial, "peer closed inside a frame; it gets no reply");
                }
                _ => {}
            }
        }
        () = grace_over => {
            tracing::warn!("connection still busy after the shutdown grace period; closing it");
        }
    }
    tracing::debug!("connection closed");
}

/// Reads and decodes frames until the connection's input ends; returns why, and the read half
/// (for draining after a fatal frame).
async fn read_frames(
    mut rd: OwnedReadHalf,
    tx: mpsc::Sender<Inbound>,
    ctx: &ConnectionContext,
    writer_gone: &CancellationToken,
) -> (ReadEnd, OwnedReadHalf) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let idle = tokio::time::sleep(ctx.idle_timeout);
    tokio::pin!(idle);
    loop {
        // Hand over every complete frame already buffered.
        loop {
            if ctx.shutdown.is_cancelled() {
                return (ReadEnd::Shutdown, rd);
            }
            let item = match codec::decode_frame(&mut buf) {
                Ok(None) => break,
                Ok(Some(frame)) => Inbound::Frame(frame),
                Err(e) => {
                    tracing::warn!(error = %e, "fatal frame; closing the connection");
                    let _ = tx.send(Inbound::Fatal(replies::for_frame_error(&e))).await;
                    return (ReadEnd::Fatal, rd);
                }
            };
            idle.as_mut().reset(Instant::now() + ctx.idle_timeout);
            if tx.send(item).await.is_err() {
                return (ReadEnd::WriterGone, rd);
            }
        }
        let want = codec::missing_bytes(&buf).unwrap_or(0).min(MAX_RESERVE);
        buf.reserve(want.max(READ_CHUNK));
        tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => return (ReadEnd::Shutdown, rd),
            () = writer_gone.cancelled() => return (ReadEnd::WriterGone, rd),
            () = &mut idle => {
                tracing::debug!(timeout = ?ctx.idle_timeout, "idle timeout; closing the connection");
                return (ReadEnd::Idle, rd);
            }
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) => return (ReadEnd::Eof { partial: buf.len() }, rd),
                Ok(_) => {}
                Err(e) => return (ReadEnd::Failed(e), rd),
            },
        }
    }
}

/// Produces each frame's reply and writes the replies in order, until the reader is done and
/// every reply is written; then closes the write side.
async fn write_replies(
    wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Inbound>,
    ctx: &ConnectionContext,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, wr);
    let mut in_flight: FuturesOrdered<ReplyFuture> = FuturesOrdered::new();
    let mut input_open = true;
    let mut unflushed = false;
    let cap = ctx.max_in_flight.max(1);
    loop {
        // Take whatever is ready without waiting.
        let mut progressed = false;
        while input_open && in_flight.len() < cap {
            match rx.try_recv() {
                Ok(item) => {
                    input_open &= push(&mut in_flight, item, ctx);
                    progressed = true;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => input_open = false,
            }
        }
        while let Some(Some(reply)) = in_flight.next().now_or_never() {
            write_reply(&mut out, reply, ctx).await?;
            unflushed = true;
            progressed = true;
        }
        if progressed {
            continue;
        }
        // Nothing is ready: send what is buffered before waiting.
        if unflushed {
            out.flush().await?;
            unflushed = false;
        }
        if !input_open && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                write_reply(&mut out, reply, ctx).await?;
                unflushed = true;
            }
            item = rx.recv(), if input_open && in_flight.len() < cap => match item {
                Some(item) => input_open &= push(&mut in_flight, item, ctx),
                None => input_open = false,
            },
        }
    }
    out.shutdown().await
}

/// Queues the reply future of one inbound item; returns false when no input may follow it.
fn push(in_flight: &mut FuturesOrdered<ReplyFuture>, item: Inbound, ctx: &ConnectionContext) -> bool {
    match item {
        Inbound::Frame(Frame::Message(message)) => {
            in_flight.push_back(Box::pin(publish(ctx.broker.clone(), message)));
            true
        }
        Inbound::Frame(Frame::Empty) => {
            tracing::debug!("frame of length 0");
            in_flight.push_back(Box::pin(std::future::ready(replies::EMPTY_FRAME)));
            true
        }
        Inbound::Frame(Frame::Malformed(e)) => {
            tracing::debug!(error = %e, "malformed frame body");
            in_flight.push_back(Box::pin(std::future::ready(replies::for_message_error(&e))));
            true
        }
        Inbound::Fatal(reply) => {
            in_flight.push_back(Box::pin(std::future::ready(reply)));
            false
        }
    }
}

async fn write_reply(
    out: &mut BufWriter<OwnedWriteHalf>,
    reply: Reply,
    ctx: &ConnectionContext,
) -> std::io::Result<()> {
    if reply != Reply::Ok {
        ctx.stats.note_nack();
    }
    out.write_all(reply.as_bytes()).await
}

/// The translation step: one legacy message becomes one `Broker::produce` of one record.
async fn publish(broker: Broker, message: Message) -> Reply {
    // A topic that is not UTF-8 becomes a name with U+FFFD in it, which the broker refuses as an
    // invalid name (only ASCII letters, digits, '.', '_' and '-' are allowed) before touching
    // the disk.
    let topic = String::from_utf8_lossy(&message.topic);
    let record = ProduceRecord {
        key: message.key,
        value: message.value,
        headers: Vec::new(),
        timestamp: Some(message.timestamp),
        partition: None,
    };
    match broker.produce(&topic, vec![record]).await {
        Ok(_) => Reply::Ok,
        Err(e) => {
            let reply = replies::for_broker_error(&e);
            match reply {
                Reply::PublishFailed => tracing::warn!(%topic, error = %e, "produce failed"),
                _ => tracing::debug!(%topic, error = %e, "produce refused"),
            }
            reply
        }
    }
}

/// Reads and discards input until the peer closes, for at most [`CLOSE_DRAIN`], so closing with
/// unread input does not reset the connection before the peer has read the last reply.
async fn drain_input(mut rd: OwnedReadHalf, shutdown: &CancellationToken) {
    let mut sink = vec![0u8; READ_CHUNK];
    let drain = async {
        while let Ok(n) = rd.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = drain => {}
        () = tokio::time::sleep(CLOSE_DRAIN) => {}
        () = shutdown.cancelled() => {}
    }
}
