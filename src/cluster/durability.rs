//! interval durability (issue 17): in `interval` mode the Raft log is fdatasync'ed on the same
//! interval as the partitions (in `fsync` mode every append is, see `log_store`).

use std::time::Duration;

use super::Cluster;
use super::log_store::LogStore;
use crate::sync::lock;

impl Cluster {
    /// Syncs `log` every `period` until the node stops, and once more then.
    pub(crate) fn spawn_log_sync(&self, log: LogStore, period: Duration) {
        let stop = self.inner.stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    () = stop.cancelled() => true,
                };
                let log = log.clone();
                match tokio::task::spawn_blocking(move || log.sync()).await {
                    Ok(Err(e)) => tracing::error!(error = %e, "syncing the Raft log failed"),
                    Err(e) => tracing::error!(error = %e, "syncing the Raft log stopped"),
                    Ok(Ok(())) => {}
                }
                if stopping {
                    break;
                }
            }
        });
        lock(&self.inner.tasks).push(task);
    }
}
