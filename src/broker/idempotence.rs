//! formatv2: idempotent producers at the broker: handing out producer ids and epochs
//! (`InitProducer`), kept durable in `<data_dir>/producers.json`, and the identity a produce
//! carries. The per-partition de-duplication is storage's (`storage::producers`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError};
use crate::sync::lock;

/// The identity of an idempotent produce: who, which epoch, and per partition the sequence
/// number of this request's first record there (sequence numbers count records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub sequences: HashMap<u32, i32>,
}

/// A producer id and epoch handed out by [`Broker::init_producer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerGrant {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Allocations {
    /// The next id handed out.
    next_id: i64,
    /// The current epoch of ids re-initialised at least once (others are at epoch 0).
    #[serde(default)]
    epochs: HashMap<i64, i16>,
    /// replication (issue 17): the Raft log index of the last grant applied (a cluster node
    /// applying grants again after a restart skips those it holds).
    #[serde(default)]
    applied_index: u64,
}

/// The durable allocator of producer ids.
pub(crate) struct ProducerIds {
    path: PathBuf,
    state: std::sync::Mutex<Allocations>,
}

const FILE: &str = "producers.json";

impl ProducerIds {
    /// Reads `<data_dir>/producers.json` (absent: nothing handed out yet).
    ///
    /// # Errors
    /// A file that exists but does not parse (ids could be handed out twice).
    pub(crate) fn open(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join(FILE);
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{} does not parse: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Allocations::default(),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        Ok(Self {
            path,
            state: std::sync::Mutex::new(state),
        })
    }

    fn grant(&self, existing: Option<i64>) -> Result<ProducerGrant, BrokerError> {
        self.grant_at(existing, None)
            .map(|g| g.expect("a grant outside a cluster is never skipped"))
    }

    /// A grant; in a cluster (`index` set) `None` when the grant at that log index was already
    /// applied.
    fn grant_at(
        &self,
        existing: Option<i64>,
        index: Option<u64>,
    ) -> Result<Option<ProducerGrant>, BrokerError> {
        let mut state = lock(&self.state);
        if index.is_some_and(|i| i <= state.applied_index) {
            return Ok(None);
        }
        let grant = match existing {
            None => ProducerGrant {
                producer_id: state.next_id,
                producer_epoch: 0,
            },
            Some(id) if id < 0 || id >= state.next_id => {
                return Err(BrokerError::InvalidArgument(format!(
                    "producer id {id} was never handed out by this broker; call InitProducer \
                     without one"
                )));
            }
            Some(id) => {
                let epoch = state.epochs.get(&id).copied().unwrap_or(0);
                let next = epoch.checked_add(1).ok_or_else(|| {
                    BrokerError::InvalidArgument(format!(
                        "producer id {id} has used every epoch; call InitProducer without one"
                    ))
                })?;
                ProducerGrant {
                    producer_id: id,
                    producer_epoch: next,
                }
            }
        };
        let mut next = Allocations {
            next_id: state.next_id.max(grant.producer_id + 1),
            epochs: state.epochs.clone(),
            applied_index: index.unwrap_or(state.applied_index),
        };
        if grant.producer_epoch > 0 {
            next.epochs.insert(grant.producer_id, grant.producer_epoch);
        }
        self.save(&next).map_err(|e| {
            tracing::error!(file = %self.path.display(), error = %e, "could not store producer ids");
            BrokerError::Unavailable("could not store the producer id allocation; see the broker log".into())
        })?;
        *state = next;
        Ok(Some(grant))
    }

    /// The current epoch of `id`, if it was handed out (a produce with any other id is refused).
    fn epoch(&self, id: i64) -> Option<i16> {
        let state = lock(&self.state);
        (id >= 0 && id < state.next_id).then(|| state.epochs.get(&id).copied().unwrap_or(0))
    }

    fn save(&self, a: &Allocations) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(a).map_err(std::io::Error::other)?)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// How long a cluster node behind the leader waits to apply a producer grant it has not seen.
const GRANT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Broker {
    /// Hands out an idempotent producer identity: a new id at epoch 0, or (given the id a
    /// producer had) the same id at the next epoch, which fences every older instance of it.
    /// Durable before it returns.
    ///
    /// # Errors
    /// `InvalidArgument` for an id never handed out; `Unavailable` when it cannot be stored.
    pub async fn init_producer(&self, existing: Option<i64>) -> Result<ProducerGrant, BrokerError> {
        // replication (issue 17): grants are commands, so every node hands out the same ids.
        if let Some(r) = self.replicator() {
            return r.init_producer(existing).await;
        }
        let broker = self.clone();
        tokio::task::spawn_blocking(move || broker.inner.producer_ids.grant(existing))
            .await
            .map_err(|_| BrokerError::Unavailable("producer id allocation failed".into()))?
    }

    /// [`Broker::check_producer`], and on a cluster node that has not applied the identity's
    /// grant yet (it was granted through another node, and this one is behind the leader):
    /// waits, up to [`GRANT_WAIT`], for this node to apply more and checks again.
    pub(crate) async fn check_producer_applied(
        &self,
        p: &ProducerIdentity,
    ) -> Result<(), BrokerError> {
        // Any node may be behind the one that answered the grant (the leader too: it applies
        // committed entries on its own time). An id nobody granted waits out GRANT_WAIT.
        let Some(r) = self.replicator() else {
            return self.check_producer(p);
        };
        let deadline = tokio::time::Instant::now() + GRANT_WAIT;
        loop {
            let applied = r.readiness().applied;
            let granted_here = self
                .inner
                .producer_ids
                .epoch(p.producer_id)
                .is_some_and(|e| e >= p.producer_epoch);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if granted_here || left.is_zero() {
                return self.check_producer(p);
            }
            r.applied_past(applied, left).await;
        }
    }

    /// Refuses a produce by an id or epoch this broker never handed out, and fences an epoch
    /// older than the id's newest (before any partition has seen the newer one).
    pub(crate) fn check_producer(&self, p: &ProducerIdentity) -> Result<(), BrokerError> {
        let Some(current) = self.inner.producer_ids.epoch(p.producer_id) else {
            return Err(BrokerError::InvalidArgument(format!(
                "unknown producer id {}: call InitProducer first",
                p.producer_id
            )));
        };
        if p.producer_epoch < current {
            return Err(BrokerError::ProducerSequence {
                message: crate::storage::producers::SequenceError::Fenced {
                    id: p.producer_id,
                    epoch: p.producer_epoch,
                    current,
                }
                .to_string(),
                expected: None,
            });
        }
        if p.producer_epoch > current {
            return Err(BrokerError::InvalidArgument(format!(
                "producer {} has epoch {current}; epoch {} was never handed out",
                p.producer_id, p.producer_epoch
            )));
        }
        Ok(())
    }
}

impl Broker {
    /// replication (issue 17): applies a committed grant (log index `index`); `None` when it
    /// was applied before a restart.
    pub(crate) async fn apply_init_producer(
        &self,
        existing: Option<i64>,
        index: u64,
    ) -> Result<Option<ProducerGrant>, BrokerError> {
        let broker = self.clone();
        tokio::task::spawn_blocking(move || {
            broker.inner.producer_ids.grant_at(existing, Some(index))
        })
        .await
        .map_err(|_| BrokerError::Unavailable("producer id allocation failed".into()))?
    }
}
