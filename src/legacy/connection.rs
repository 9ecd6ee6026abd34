//! One legacy connection: read frames, hand them to the broker concurrently, reply in order.
//!
//! Two halves run together in the connection's task:
//! - the **reader** decodes frames from the socket and, one frame at a time and in order, queues
//!   each message in the broker (`Broker::enqueue`, which returns once the record is in
//!   its partition's write queue, not yet durable). It passes the reply future of each frame to
//!   the writer. It stops at end of stream, at a fatal frame (longer than 10 MiB), after the idle
//!   timeout with no complete frame, or when the server shuts down;
//! - the **writer** keeps the reply futures in a FIFO ([`FuturesOrdered`]) and writes the replies
//!   strictly in frame order, buffering them and flushing when no further reply is ready at once.
//!
//! Frames that arrive together are queued together (issue 12): every complete frame already
//! read is decoded at once, and a run of consecutive messages to one topic becomes one
//! `Broker::enqueue` of all its records (one request in each partition's write queue, one
//! acknowledgement), each frame still answered on its own and in order. So pipelined frames wait
//! for durability together and share a group commit, while records with the same key are stored
//! in the order they were sent. At most `max_in_flight` frames are
//! queued and unanswered; beyond that the reader stops reading and TCP pushes back on the client.
//! `OK` is written only after the broker acknowledged the record, i.e. after it is durable.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec::{self, Frame, Message, Reply};
use super::replies;
use super::stats::LegacyStats;
use crate::broker::{BrokerError, Caller, ProduceRecord};

/// Bytes read from the socket at least per read call.
const READ_CHUNK: usize = 16 * 1024;
/// Largest single reservation while a big frame arrives (the buffer grows as bytes come, so a
/// peer announcing 10 MiB and sending nothing does not cost 10 MiB).
const MAX_RESERVE: usize = 1 << 20;
/// Reply bytes buffered before a write is forced.
const WRITE_BUFFER: usize = 16 * 1024;
/// When the server ends a connection, the longest it drains unread input (see [`drain_input`]).
const CLOSE_DRAIN: Duration = Duration::from_secs(1);
/// ... and how long it waits for more input once none is pending.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// What one connection needs from the server.
#[derive(Clone)]
pub(crate) struct ConnectionContext {
    /// The broker, acting for the listener's principal; `None`: authentication is on and the
    /// listener has none, so every produce is refused.
    pub caller: Option<Caller>,
    pub idle_timeout: Duration,
    /// The idle timeout until the first complete frame (at most `idle_timeout`).
    pub first_frame_timeout: Duration,
    /// At least 1, at most `Semaphore::MAX_PERMITS`.
    pub max_in_flight: usize,
    pub shutdown_grace: Duration,
    pub shutdown: CancellationToken,
    pub stats: Arc<LegacyStats>,
}

/// What the reader hands to the writer: the replies of one frame or of a run of frames queued
/// together, and their places in the in-flight limit (given back once the replies are written).
struct Pending {
    reply: ReplyFuture,
    slot: Option<OwnedSemaphorePermit>,
}

/// The replies of a [`Pending`], in frame order.
enum Replies {
    One(Reply),
    Many(Vec<Reply>),
}

impl Replies {
    fn as_slice(&self) -> &[Reply] {
        match self {
            Self::One(r) => std::slice::from_ref(r),
            Self::Many(v) => v,
        }
    }
}

/// Most frames queued in the broker as one request.
const MAX_RUN: usize = 1024;

/// Why the reader stopped.
#[derive(Debug)]
enum ReadEnd {
    /// The peer closed its side; `partial` bytes of an unfinished frame were dropped unanswered.
    Eof {
        partial: usize,
    },
    Idle,
    Shutdown,
    Fatal,
    /// The writer stopped (the peer went away), so reading on is pointless.
    WriterGone,
    Failed(std::io::Error),
}

type ReplyFuture = Pin<Box<dyn Future<Output = Replies> + Send>>;

fn ready(reply: Reply) -> ReplyFuture {
    Box::pin(std::future::ready(Replies::One(reply)))
}

/// Serves one connection until it ends. Errors are logged here, not returned: one connection's
/// trouble is not the server's.
pub(crate) async fn run(stream: TcpStream, ctx: ConnectionContext) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    run_halves(rd, wr, ctx).await;
}

/// As [`run`], over a TLS stream (security, issue 15).
pub(crate) async fn run_tls(
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    ctx: ConnectionContext,
) {
    let (rd, wr) = tokio::io::split(stream);
    run_halves(rd, wr, ctx).await;
}

async fn run_halves<R, W>(rd: R, wr: W, ctx: ConnectionContext)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    // Unbounded, as the in-flight semaphore bounds what the reader sends.
    let (tx, rx) = mpsc::unbounded_channel();
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
                (ReadEnd::Fatal | ReadEnd::Shutdown | ReadEnd::Idle, Ok(())) => {
                    drain_input(rd).await;
                }
                (ReadEnd::Eof { partial }, Ok(())) => {
                    if *partial > 0 {
                        tracing::debug!(partial, "peer closed inside a frame; it gets no reply");
                    }
                }
                (ReadEnd::WriterGone, Ok(())) => {}
            }
        }
        () = grace_over => {
            tracing::warn!("connection still busy after the shutdown grace period; closing it");
        }
    }
    tracing::debug!("connection closed");
}

/// Reads and decodes frames, queues their messages in the broker in order and hands their reply
/// futures to the writer, until the connection's input ends; returns why, and the read half (to
/// drain it before closing).
async fn read_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    tx: mpsc::UnboundedSender<Pending>,
    ctx: &ConnectionContext,
    writer_gone: &CancellationToken,
) -> (ReadEnd, R) {
    let slots = Arc::new(Semaphore::new(ctx.max_in_flight));
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Until the first frame, the shorter first-frame timeout: a silent socket lets go soon.
    let idle = tokio::time::sleep_until(after(ctx.first_frame_timeout));
    tokio::pin!(idle);
    loop {
        // Hand over every complete frame already buffered: runs of messages to one topic are
        // queued as one request.
        let mut run: Vec<Message> = Vec::new();
        let mut run_slot: Option<OwnedSemaphorePermit> = None;
        loop {
            if ctx.shutdown.is_cancelled() {
                return (ReadEnd::Shutdown, rd);
            }
            let frame = match codec::decode_frame(&mut buf) {
                Ok(None) => break,
                Ok(Some(frame)) => frame,
                Err(e) => {
                    tracing::warn!(error = %e, "fatal frame; closing the connection");
                    ctx.stats.note_connection_error();
                    if !flush_run(ctx, &tx, &mut run, &mut run_slot).await {
                        return (ReadEnd::WriterGone, rd);
                    }
                    let reply = replies::for_frame_error(&e);
                    let _ = tx.send(Pending {
                        reply: ready(reply),
                        slot: None,
                    });
                    return (ReadEnd::Fatal, rd);
                }
            };
            idle.as_mut().reset(after(ctx.idle_timeout));
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    // Before waiting for room, queue what was gathered (its replies free room).
                    if !flush_run(ctx, &tx, &mut run, &mut run_slot).await {
                        return (ReadEnd::WriterGone, rd);
                    }
                    tokio::select! {
                        slot = slots.clone().acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => return (ReadEnd::WriterGone, rd),
                        },
                        () = ctx.shutdown.cancelled() => return (ReadEnd::Shutdown, rd),
                        () = writer_gone.cancelled() => return (ReadEnd::WriterGone, rd),
                    }
                }
            };
            let reply = match frame {
                Frame::Message(message) if ctx.caller.is_some() => {
                    let joins =
                        run.last().is_none_or(|m| m.topic == message.topic) && run.len() < MAX_RUN;
                    if !joins && !flush_run(ctx, &tx, &mut run, &mut run_slot).await {
                        return (ReadEnd::WriterGone, rd);
                    }
                    run.push(message);
                    match run_slot.as_mut() {
                        Some(s) => s.merge(slot),
                        None => run_slot = Some(slot),
                    }
                    continue;
                }
                Frame::Message(_) => ready(codec::Reply::Unauthenticated),
                Frame::Empty => {
                    tracing::debug!("frame of length 0");
                    ready(replies::EMPTY_FRAME)
                }
                Frame::Malformed(e) => {
                    tracing::debug!(error = %e, "malformed frame body");
                    ready(replies::for_message_error(&e))
                }
            };
            if !flush_run(ctx, &tx, &mut run, &mut run_slot).await {
                return (ReadEnd::WriterGone, rd);
            }
            let pending = Pending {
                reply,
                slot: Some(slot),
            };
            if tx.send(pending).is_err() {
                return (ReadEnd::WriterGone, rd);
            }
        }
        if !flush_run(ctx, &tx, &mut run, &mut run_slot).await {
            return (ReadEnd::WriterGone, rd);
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

/// Queues the gathered run of messages (one topic) in the broker and hands its replies to the
/// writer; false when the writer is gone.
async fn flush_run(
    ctx: &ConnectionContext,
    tx: &mpsc::UnboundedSender<Pending>,
    run: &mut Vec<Message>,
    slot: &mut Option<OwnedSemaphorePermit>,
) -> bool {
    if run.is_empty() {
        return true;
    }
    let messages = std::mem::take(run);
    let reply = match &ctx.caller {
        Some(caller) => queue(caller, messages).await,
        None => ready(codec::Reply::Unauthenticated),
    };
    tx.send(Pending {
        reply,
        slot: slot.take(),
    })
    .is_ok()
}

/// Writes the replies in frame order until the reader is done and every reply is written; then
/// closes the write side.
async fn write_replies<W: AsyncWrite + Unpin>(
    wr: W,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    ctx: &ConnectionContext,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, wr);
    let mut in_flight: FuturesOrdered<ReplyFuture> = FuturesOrdered::new();
    // The in-flight slots, in the same order as `in_flight`.
    let mut slots = VecDeque::new();
    let mut input_open = true;
    let mut unflushed = false;
    loop {
        // Take whatever is ready without waiting.
        let mut progressed = false;
        while input_open {
            match rx.try_recv() {
                Ok(pending) => {
                    in_flight.push_back(pending.reply);
                    slots.push_back(pending.slot);
                    progressed = true;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => input_open = false,
            }
        }
        while let Some(Some(reply)) = in_flight.next().now_or_never() {
            write_reply(&mut out, reply, ctx).await?;
            slots.pop_front();
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
                slots.pop_front();
                unflushed = true;
            }
            pending = rx.recv(), if input_open => match pending {
                Some(pending) => {
                    in_flight.push_back(pending.reply);
                    slots.push_back(pending.slot);
                }
                None => input_open = false,
            },
        }
    }
    out.shutdown().await
}

async fn write_reply<W: AsyncWrite + Unpin>(
    out: &mut BufWriter<W>,
    replies: Replies,
    ctx: &ConnectionContext,
) -> std::io::Result<()> {
    for &reply in replies.as_slice() {
        if reply != Reply::Ok {
            ctx.stats.note_nack();
        }
        out.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

/// The translation step: each legacy message becomes one record produced to its topic, a run of
/// messages to one topic one request. Returns once the records are queued in the broker; the
/// future yields the replies, in order, once they are durable (or refused). Each frame keeps its
/// own answer: a record is acknowledged when its partition stored it, and when a run is refused
/// for one record's sake (too large, a bad header), its frames are queued one by one instead.
async fn queue(broker: &Caller, mut messages: Vec<Message>) -> ReplyFuture {
    // A topic that is not UTF-8 becomes a name with U+FFFD in it, which the broker refuses as an
    // invalid name (only ASCII letters, digits, '.', '_' and '-' are allowed) before touching
    // the disk.
    let topic = String::from_utf8_lossy(&messages[0].topic).into_owned();
    let n = messages.len();
    let record = |message: Message| ProduceRecord {
        key: message.key,
        value: message.value,
        headers: Vec::new(),
        timestamp: Some(message.timestamp),
        partition: None,
    };
    let started = std::time::Instant::now();
    if n == 1 {
        let one = messages.pop().map(record).into_iter().collect();
        return match broker.enqueue(&topic, one).await {
            Ok(queued) => Box::pin(async move {
                let res = queued.acks().await;
                crate::metrics::record_request(
                    "legacy",
                    "produce",
                    started,
                    res.as_ref().map(|_| ()),
                );
                Replies::One(match res {
                    Ok(_) => Reply::Ok,
                    Err(e) => refused(&topic, &e),
                })
            }),
            Err(e) => {
                crate::metrics::record_request("legacy", "produce", started, Err(&e));
                ready(refused(&topic, &e))
            }
        };
    }
    let records = messages.iter().cloned().map(record).collect();
    match broker.enqueue(&topic, records).await {
        Ok(queued) => Box::pin(async move {
            let outcomes = queued.acks_each().await;
            let replies = outcomes
                .iter()
                .map(|res| {
                    let res = res.as_ref().map(|_| ()).map_err(|e| &**e);
                    crate::metrics::record_request("legacy", "produce", started, res);
                    match res {
                        Ok(()) => Reply::Ok,
                        Err(e) => refused(&topic, e),
                    }
                })
                .collect();
            Replies::Many(replies)
        }),
        // Refused for one record (nothing of the run was queued): each frame on its own.
        Err(BrokerError::RecordTooLarge { .. } | BrokerError::InvalidArgument(_)) => {
            let mut each = Vec::with_capacity(n);
            for message in messages {
                each.push(Box::pin(queue(broker, vec![message])).await);
            }
            Box::pin(async move {
                let mut replies = Vec::with_capacity(n);
                for r in each {
                    replies.extend_from_slice(r.await.as_slice());
                }
                Replies::Many(replies)
            })
        }
        Err(e) => {
            for _ in 0..n {
                crate::metrics::record_request("legacy", "produce", started, Err(&e));
            }
            let reply = refused(&topic, &e);
            Box::pin(std::future::ready(Replies::Many(vec![reply; n])))
        }
    }
}

/// The reply to a refused produce, logged: storage trouble as a warning, bad input at debug.
fn refused(topic: &str, err: &BrokerError) -> Reply {
    let reply = replies::for_broker_error(err);
    match reply {
        Reply::PublishFailed => tracing::warn!(topic, error = %err, "produce failed"),
        _ => tracing::debug!(topic, error = %err, "produce refused"),
    }
    reply
}

/// The instant `duration` from now, or about 30 years away for a duration too long to add.
fn after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

/// Reads and discards what the peer still sends, so that closing with unread input does not
/// reset the connection (which can destroy replies the peer has not read yet). Stops when the
/// peer closes, when nothing more arrives for [`DRAIN_QUIET`], or after [`CLOSE_DRAIN`]: an idle
/// peer costs nothing, a silent one at most [`DRAIN_QUIET`].
async fn drain_input<R: AsyncRead + Unpin>(mut rd: R) {
    let deadline = Instant::now() + CLOSE_DRAIN;
    let mut sink = vec![0u8; READ_CHUNK];
    loop {
        let quiet = (Instant::now() + DRAIN_QUIET).min(deadline);
        match tokio::time::timeout_at(quiet, rd.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        if Instant::now() >= deadline {
            return;
        }
    }
}
