//! Draining: "stop waiting, we are draining", one signal for every wait of the core.
//!
//! The server fires it ([`Broker::drain`]) when shutdown starts, before the listeners drain:
//! long polls and long fetches in flight answer at once with what they have, subscriptions end,
//! and new waits end as soon as they start. The waits are here, not in the adapters, so gRPC,
//! HTTP and the legacy listener behave alike. Produces are not affected: they are still taken and
//! acknowledged until [`Broker::shutdown`], which drains first if nobody did.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::Broker;

#[derive(Debug, Default)]
pub(crate) struct Drain {
    token: CancellationToken,
    /// Polls and fetches waiting for records right now.
    waiting: AtomicUsize,
}

impl Drain {
    /// Completes once the broker drains (at once if it already has).
    pub(super) fn fired(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    pub(super) fn is_fired(&self) -> bool {
        self.token.is_cancelled()
    }

    /// An owned handle on the signal, for waits that outlive a borrow (subscriptions).
    pub(super) fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Counts one read as waiting until the guard is dropped.
    pub(super) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(self)
    }
}

pub(super) struct Waiting<'a>(&'a Drain);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Broker {
    /// Ends every wait: long polls and fetches answer with what they have (often nothing),
    /// subscriptions end, and later waits return at once. Produces go on until
    /// [`Broker::shutdown`]. Idempotent; the server calls it when it starts stopping.
    pub fn drain(&self) {
        if !self.inner.drain.is_fired() {
            tracing::info!("draining: long polls, fetches and subscriptions end now");
        }
        self.inner.drain.token.cancel();
    }

    /// Whether [`Broker::drain`] (or [`Broker::shutdown`]) was called.
    pub fn is_draining(&self) -> bool {
        self.inner.drain.is_fired()
    }

    /// Polls and fetches waiting for records right now (subscriptions are not counted: see
    /// [`Broker::topic_watchers`]).
    pub fn waiting_reads(&self) -> usize {
        self.inner.drain.waiting.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::broker::{
        Broker, BrokerConfig, FetchRequest, PollRequest, ProduceRecord, ReadLimits, StartPosition,
        SubscribeRequest, TopicConfig,
    };

    /// On paused time a wait that ignored the drain would move the clock by its whole 30 s.
    #[tokio::test(start_paused = true)]
    async fn after_a_drain_waits_end_at_once_and_produces_go_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = Broker::open(
            BrokerConfig {
                data_dir: dir.path().to_path_buf(),
                ..BrokerConfig::default()
            },
            &tokio::runtime::Handle::current(),
        )
        .expect("broker opens");
        let one = TopicConfig {
            partitions: 1,
            retention_ms: 0,
            retention_bytes: 0,
            compression: Default::default(),
        };
        broker.create_topic("t", one).await.expect("topic");
        let long = ReadLimits {
            max_wait: Duration::from_secs(30),
            ..ReadLimits::default()
        };
        assert!(!broker.is_draining());
        broker.drain();
        assert!(broker.is_draining());

        let started = tokio::time::Instant::now();
        let polled = broker
            .poll(PollRequest {
                topic: "t".into(),
                group: "g".into(),
                limits: long,
                start_if_new: StartPosition::Earliest,
                member: None,
            })
            .await
            .expect("poll");
        let fetched = broker
            .fetch(FetchRequest {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                limits: long,
            })
            .await
            .expect("fetch");
        let mut sub = broker
            .subscribe(SubscribeRequest {
                topic: "t".into(),
                group: None,
                start: None,
                max_records_per_batch: 0,
                member: None,
            })
            .expect("subscribe");
        assert!(sub.next_batch().await.is_none(), "the subscription ended");
        assert_eq!((polled, fetched.records), (vec![], vec![]));
        assert_eq!(started.elapsed(), Duration::ZERO, "nothing waited");
        assert_eq!(broker.waiting_reads(), 0);

        let acks = broker
            .produce(
                "t",
                vec![ProduceRecord {
                    value: "still taken".into(),
                    ..ProduceRecord::default()
                }],
            )
            .await
            .expect("produce while draining");
        assert_eq!(acks[0].offset, 0);
        broker.shutdown().await;
    }
}
