//! Per-group figures for the metrics (read at scrape time, nothing recorded on the hot path
//! but two counters): records in flight and locked, redeliveries and dead letters since the
//! broker started, and the age of the oldest unsettled record (now minus the produce
//! timestamp of the record at the group's position, over the partitions with records in
//! flight).

use std::sync::atomic::{AtomicU64, Ordering};

use super::Broker;
use crate::sync::lock;

/// Counters a group keeps as it works.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Hand-outs of a record that had been handed out before.
    pub redeliveries: AtomicU64,
    /// Records written to the dead-letter topic.
    pub dead_lettered: AtomicU64,
}

impl Counters {
    pub fn add_redeliveries(&self, n: u64) {
        if n > 0 {
            self.redeliveries.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// One shared group's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedGroupStats {
    pub group: String,
    pub in_flight: u64,
    pub locked: u64,
    pub redeliveries: u64,
    pub dead_lettered: u64,
    /// Seconds; 0 when nothing is in flight.
    pub oldest_unsettled_age_secs: f64,
}

/// The windows' figures the last time the group's lock was free at a scrape.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    pub in_flight: u64,
    pub locked: u64,
    /// (topic, partition, position) of the windows with records in flight.
    pub positions: Vec<(String, u32, u64)>,
}

impl Broker {
    /// Every shared group's figures (for the metrics).
    pub fn shared_group_stats(&self) -> Vec<SharedGroupStats> {
        let groups: Vec<_> = lock(&self.inner.shared.groups).values().cloned().collect();
        let now = super::super::now_ns();
        let mut out: Vec<SharedGroupStats> = groups
            .iter()
            .map(|g| {
                // A scrape never waits for the group: when a call holds its lock, the figures
                // of the last scrape that found it free are shown.
                if let Ok(st) = g.state.try_lock() {
                    let mut s = Snapshot::default();
                    for ((t, p), w) in &st.topics {
                        s.in_flight += w.in_flight() as u64;
                        s.locked += w.locked() as u64;
                        if w.in_flight() > 0 {
                            s.positions.push((t.clone(), *p, w.position()));
                        }
                    }
                    *lock(&g.last_stats) = s;
                }
                let s = lock(&g.last_stats).clone();
                let oldest = s
                    .positions
                    .iter()
                    .filter_map(|(t, p, o)| {
                        let topic = self.topic(t)?;
                        let part = topic.partitions().iter().find(|x| x.id() == *p)?;
                        let r = part.core().read(*o, 1, 1 << 20).ok()?.into_iter().next()?;
                        Some(r.timestamp)
                    })
                    .min();
                SharedGroupStats {
                    group: g.name.clone(),
                    in_flight: s.in_flight,
                    locked: s.locked,
                    redeliveries: g.counters.redeliveries.load(Ordering::Relaxed),
                    dead_lettered: g.counters.dead_lettered.load(Ordering::Relaxed),
                    oldest_unsettled_age_secs: oldest
                        .map_or(0.0, |ts| now.saturating_sub(ts).max(0) as f64 / 1e9),
                }
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }
}
