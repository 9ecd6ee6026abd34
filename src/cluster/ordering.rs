//! Forwarded writes keep their order (issue 17): a follower forwards the writes it is given one
//! after another, each once the leader answered the one before, so writes made one after another
//! on a follower (pipelined legacy frames, a REST client's requests) enter the leader's log in
//! that order. Concurrent forwards could be reordered between requests on the way.
//!
//! The cost: a follower's forwarded writes are serialised (one leader round trip and commit each);
//! clients that can route send to the leader instead.

use tokio::sync::{mpsc, oneshot};

use super::types::Command;
use super::{Cluster, ProposeResult};

/// Where a follower's writes wait for their turn to be forwarded.
pub(crate) type Forwarder = mpsc::UnboundedSender<(Command, oneshot::Sender<ProposeResult>)>;

impl Cluster {
    /// Starts the task that forwards writes to the leader in arrival order; it ends when the
    /// returned sender is dropped.
    pub(crate) fn ordered_forwarder(&self) -> Forwarder {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Command, oneshot::Sender<ProposeResult>)>();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((cmd, reply)) = rx.recv().await {
                let _ = reply.send(me.forward(cmd).await);
            }
        });
        tx
    }
}
