//! `obelisk cluster add-node|remove-node` (replication, issue 17): membership changes. The CLI
//! asks the node named by `--server` for its node-to-node address (Metadata), or takes
//! `--raft-server`, and sends the change there (`ChangeMembership`); that node forwards it to
//! the leader, which makes it with openraft's `add_learner` / `change_membership`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::connect::reply;
use super::table::{Table, pretty_json};
use crate::client::Client;
use crate::cluster::membership::{CHANGE_TIMEOUT, MembershipChange, MembershipResult};
use crate::cluster::types::{decode, encode};
use crate::proto as pb;

#[derive(Debug, Args)]
pub struct AddNodeArgs {
    /// The new node's id (its `--node-id`).
    pub node_id: u64,
    /// Its node-to-node address, as the other nodes reach it (host:port).
    pub addr: String,
    /// The node-to-node address of any node to send the change to (default: the one of the
    /// node `--server` names, from its Metadata).
    #[arg(long)]
    pub raft_server: Option<String>,
}

#[derive(Debug, Args)]
pub struct RemoveNodeArgs {
    /// The id of the node to remove.
    pub node_id: u64,
    /// As for add-node.
    #[arg(long)]
    pub raft_server: Option<String>,
}

impl AddNodeArgs {
    pub fn change(self) -> (MembershipChange, Option<String>) {
        (
            MembershipChange::Add {
                node_id: self.node_id,
                addr: self.addr,
            },
            self.raft_server,
        )
    }
}

impl RemoveNodeArgs {
    pub fn change(self) -> (MembershipChange, Option<String>) {
        (
            MembershipChange::Remove {
                node_id: self.node_id,
            },
            self.raft_server,
        )
    }
}

/// Sends `change` and prints the members after it.
///
/// # Errors
/// The node cannot be reached, or the change was refused.
pub async fn run(
    client: &mut Client,
    change: MembershipChange,
    raft_server: Option<String>,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let raft_server = match raft_server {
        Some(a) => a,
        None => {
            let m = reply(
                client
                    .metadata(pb::MetadataRequest { topics: Vec::new() })
                    .await,
            )?;
            m.nodes
                .iter()
                .find(|n| n.node_id == m.node_id)
                .map(|n| n.cluster_addr.clone())
                .context("the node asked is not a cluster member: pass --raft-server")?
        }
    };
    let url = if raft_server.contains("://") {
        raft_server
    } else {
        format!("http://{raft_server}")
    };
    let mut raft = pb::cluster::cluster_client::ClusterClient::connect(url.clone())
        .await
        .with_context(|| format!("connecting to the node-to-node port {url}"))?;
    let mut req = tonic::Request::new(pb::cluster::RaftPayload {
        group: 0,
        payload: encode(&change)?.into(),
    });
    req.set_timeout(CHANGE_TIMEOUT);
    let payload = raft.change_membership(req).await?.into_inner().payload;
    let members = decode::<MembershipResult>(&payload)?
        .map_err(|why| anyhow::anyhow!("the change was not made: {why}"))?;
    let output = if json_out {
        pretty_json(&json!({
            "nodes": members.iter().map(|(id, addr, voter)| json!({
                "node_id": id, "cluster_addr": addr, "voter": voter,
            })).collect::<Vec<_>>(),
        }))
    } else {
        let mut t = Table::new(&["NODE", "ROLE", "CLUSTER"]);
        for (id, addr, voter) in &members {
            let role = if *voter { "voter" } else { "learner" };
            t.row(vec![id.to_string(), role.to_string(), addr.clone()]);
        }
        t.render()
    };
    super::table::print_stdout(&output)?;
    Ok(ExitCode::SUCCESS)
}
