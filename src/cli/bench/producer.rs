//! One bench producer: sends batches closed-loop (the next as soon as an in-flight slot frees) or
//! open-loop at a fixed rate, and records each record's ack latency in an HdrHistogram.
//!
//! In open loop, a batch's latency is measured from the time it was *scheduled* to go out, not
//! from when it actually went: if the broker stalls and sends fall behind, the wait counts, so a
//! stall shows in the tail instead of silently lowering the offered load (coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, mpsc};

use super::payload;
use super::transport::{AckHalf, Batch, SendHalf};

/// Largest latency recorded, in µs (larger values are clamped to it).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A new latency histogram in µs with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

/// Records `n` samples of `latency`, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, latency: Duration, n: u64) {
    let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
    // In range by the clamp above, so this cannot fail.
    let _ = h.record_n(us, n);
}

/// The run's shared clock: monotonic start plus the wall time it corresponds to.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub start: Instant,
    pub wall_start_ns: i64,
}

impl Clock {
    pub fn now() -> Self {
        Self {
            start: Instant::now(),
            wall_start_ns: crate::broker::now_ns(),
        }
    }

    /// Unix ns of a monotonic instant.
    pub fn wall_ns(&self, at: Instant) -> i64 {
        self.wall_start_ns + at.saturating_duration_since(self.start).as_nanos() as i64
    }
}

/// What one producer does.
#[derive(Debug, Clone)]
pub struct ProducerSpec {
    pub id: u32,
    /// Records to send; `None` until `deadline`.
    pub count: Option<u64>,
    pub deadline: Option<Instant>,
    pub batch: usize,
    pub in_flight: usize,
    /// Open loop: time between batches. `None`: closed loop.
    pub batch_interval: Option<Duration>,
    pub message_size: usize,
    pub topics: Arc<Vec<String>>,
    /// formatv2: what the values hold after their header.
    pub payload: super::payload::Kind,
}

/// How it went.
pub struct ProducerOutcome {
    /// Records acknowledged: sequences `0..acked`.
    pub acked: u64,
    pub latency: Histogram<u64>,
    pub finished: Instant,
    pub error: Option<String>,
}

/// Open loop: a tick at `start + k × every` for k = 0, 1, … until `deadline`, from a thread of
/// its own, because the async timer's millisecond granularity would add up to a millisecond of
/// lateness to every scheduled send (and so to every measured latency). Ticks queue up while the
/// sender is held back, so the offered load does not drop when the broker stalls.
fn pacer(
    start: Instant,
    every: Duration,
    deadline: Option<Instant>,
) -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for k in 0u64.. {
            let at = start + every.mul_f64(k as f64);
            if deadline.is_some_and(|d| at >= d) {
                return;
            }
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            // The sender is gone: the count was reached or it failed.
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs one producer to the end of its count or deadline.
pub async fn run(
    spec: ProducerSpec,
    mut tx: SendHalf,
    mut rx: AckHalf,
    clock: Clock,
    progress: Arc<AtomicU64>,
) -> ProducerOutcome {
    let permits = Arc::new(Semaphore::new(spec.in_flight.max(1)));
    // (scheduled send time, records) of each batch sent, in order.
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(Instant, usize)>();
    let mut ticks = spec
        .batch_interval
        .map(|every| pacer(clock.start, every, spec.deadline));
    let sender = {
        let permits = Arc::clone(&permits);
        let spec = spec.clone();
        async move {
            let mut sequence = 0u64;
            let mut error = None;
            for k in 0u64.. {
                let remaining = spec.count.map_or(u64::MAX, |c| c - sequence);
                if remaining == 0 || spec.deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                // Closed by the acknowledging side when it fails.
                let Ok(permit) = permits.acquire().await else {
                    break;
                };
                permit.forget();
                let scheduled = match (&mut ticks, spec.batch_interval) {
                    (Some(ticks), Some(every)) => {
                        if ticks.recv().await.is_none() {
                            break; // The deadline passed.
                        }
                        clock.start + every.mul_f64(k as f64)
                    }
                    _ => Instant::now(),
                };
                let n = remaining.min(spec.batch as u64) as usize;
                let values = (0..n as u64)
                    .map(|i| {
                        Bytes::from(payload::encode_kind(
                            spec.id,
                            sequence + i,
                            spec.message_size,
                            spec.payload,
                        ))
                    })
                    .collect();
                let topic =
                    &spec.topics[((u64::from(spec.id) + k) % spec.topics.len() as u64) as usize];
                let batch = Batch {
                    topic,
                    values,
                    timestamp_ns: clock.wall_ns(scheduled),
                };
                if let Err(e) = tx.send(batch).await {
                    error = Some(e);
                    break;
                }
                if sent_tx.send((scheduled, n)).is_err() {
                    break;
                }
                sequence += n as u64;
            }
            drop(sent_tx);
            tx.close().await;
            error
        }
    };
    let acker = async {
        let mut latency = histogram();
        let mut acked = 0u64;
        let mut error = None;
        let mut finished = clock.start;
        while let Some((scheduled, n)) = sent_rx.recv().await {
            match rx.ack(n).await {
                Ok(at) => {
                    record(
                        &mut latency,
                        at.saturating_duration_since(scheduled),
                        n as u64,
                    );
                    acked += n as u64;
                    finished = at;
                    progress.fetch_add(n as u64, Ordering::Relaxed);
                    permits.add_permits(1);
                }
                Err(e) => {
                    error = Some(e);
                    permits.close();
                    break;
                }
            }
        }
        (latency, acked, finished, error)
    };
    let (send_error, (latency, acked, finished, ack_error)) = tokio::join!(sender, acker);
    ProducerOutcome {
        acked,
        latency,
        finished,
        error: ack_error
            .or(send_error)
            .map(|e| format!("producer {}: {e}", spec.id)),
    }
}
