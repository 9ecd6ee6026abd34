//! The SharedConsume half of `obelisk bench --mode shared` (shared groups, issue 14): the same
//! workers on streams. Each opens a SharedConsume stream with a credit of two batches
//! (`--consumer-batch` records a push), accepts every pushed record in one settle batch sent
//! on the stream without waiting for its answer, and counts the records whose answer is
//! "done" (durable).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::{self, SharedEvent, SharedStream};
use crate::proto as pb;

/// What the stream workers did.
pub struct StreamOutcome {
    pub secs: f64,
    pub pushes: u64,
    pub settles: u64,
}

/// Runs `workers` stream workers of `group` on `topic` until `count` records are accepted.
///
/// # Errors
/// The broker refuses a call or ends a stream, a settle is refused, or the records are not all
/// accepted within 300 s.
pub async fn run(
    grpc: &str,
    topic: &str,
    group: &str,
    workers: u32,
    batch: u32,
    count: u64,
) -> anyhow::Result<StreamOutcome> {
    let accepted = Arc::new(AtomicU64::new(0));
    let pushes = Arc::new(AtomicU64::new(0));
    let settles = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for w in 0..workers {
        let mut c = client::connect(grpc).await?;
        let open = pb::SharedConsumeOpen {
            group: group.into(),
            topic: topic.into(),
            member_id: format!("bench-stream-worker-{w}"),
            max_in_flight: batch.saturating_mul(2),
            max_records: batch,
            max_bytes: 0,
        };
        streams.push(SharedStream::open_with(&mut c, open).await?);
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for mut s in streams {
        let (accepted, pushes, settles) = (
            Arc::clone(&accepted),
            Arc::clone(&pushes),
            Arc::clone(&settles),
        );
        set.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(300);
            while accepted.load(Ordering::Relaxed) < count {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "not every record was accepted within 300 s"
                );
                let Ok(event) = tokio::time::timeout(Duration::from_millis(20), s.next()).await
                else {
                    continue;
                };
                match event? {
                    None => anyhow::bail!("a SharedConsume stream ended"),
                    Some(SharedEvent::Deliveries(ds)) => {
                        pushes.fetch_add(1, Ordering::Relaxed);
                        for d in &ds {
                            s.accept(d);
                        }
                        settles.fetch_add(1, Ordering::Relaxed);
                        s.flush().await?;
                    }
                    Some(SharedEvent::Settled { results, .. }) => {
                        if let Some(bad) = results.iter().find(|r| r.outcome != "done") {
                            anyhow::bail!("a settle was refused: {bad:?}");
                        }
                        accepted.fetch_add(results.len() as u64, Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        accepted.load(Ordering::Relaxed) == count,
        "{} records accepted on streams, {count} produced",
        accepted.load(Ordering::Relaxed)
    );
    Ok(StreamOutcome {
        secs,
        pushes: pushes.load(Ordering::Relaxed),
        settles: settles.load(Ordering::Relaxed),
    })
}
