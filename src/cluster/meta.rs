//! cluster metadata (issue 17): committed offsets, group deletion and ACLs as Raft commands
//! ([`Command::Meta`], applied by `broker::meta`), and the leader's check of the ones a follower
//! forwards.

use super::Cluster;
use super::types::{Command, CommandReply, Refusal};
use crate::broker::BrokerError;
use crate::broker::meta::MetaWrite;
use crate::broker::replication::Proposal;

impl Cluster {
    /// Proposes a metadata write; resolves once this node applied it (a read of this node
    /// afterwards sees it), to whether it changed anything on the leader.
    pub(crate) fn propose_meta(&self, write: MetaWrite) -> Proposal<bool> {
        let p = self.submit(Command::Meta(write), true);
        Box::pin(async move {
            match p.await? {
                CommandReply::Changed(changed) => Ok(changed),
                other => Err(BrokerError::Unavailable(format!(
                    "unexpected reply to a metadata write: {other:?}"
                ))),
            }
        })
    }

    /// A command forwarded by a follower, checked here first when the leader's state decides
    /// (a group's members live on the leader; the follower may be behind the partitions).
    pub(crate) async fn propose_forwarded(&self, cmd: Command) -> super::ProposeResult {
        if let Command::Meta(write) = &cmd
            && let Err(e) = self.broker().check_meta(write)
        {
            return Ok((CommandReply::Refused(Refusal::from_broker(e)), 0));
        }
        match self.entering_log(cmd) {
            Ok(cmd) => self.propose_here(cmd).await,
            Err(e) => Ok((CommandReply::Refused(Refusal::from_broker(e)), 0)),
        }
    }

    /// A command as the leader puts it in the log: a group reset resolved against the leader's
    /// partitions (see [`MetaWrite::Reset`]).
    ///
    /// # Errors
    /// What resolving it fails with.
    pub(crate) fn entering_log(&self, cmd: Command) -> Result<Command, BrokerError> {
        match cmd {
            Command::Meta(write @ MetaWrite::Reset { .. }) => {
                Ok(Command::Meta(self.broker().resolve_meta(write)?))
            }
            other => Ok(other),
        }
    }
}
