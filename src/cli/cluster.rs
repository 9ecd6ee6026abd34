//! `obelisk cluster status` (replication, issue 17): the cluster as the node asked sees it.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::connect::{ServerArgs, reply};
use super::table::{Table, pretty_json};
use crate::proto as pb;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The nodes, the leader, the Raft term and what the node asked has applied.
    Status,
    /// Adds a node (started with `--join`): a learner until it has caught up, then a voter.
    AddNode(super::cluster_membership::AddNodeArgs),
    /// Removes a node from the cluster (it stops taking part; stop its process after).
    RemoveNode(super::cluster_membership::RemoveNodeArgs),
}

/// Runs a cluster subcommand.
///
/// # Errors
/// The broker cannot be reached or refuses the call.
pub async fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.server.connect().await?;
    let change = match args.command {
        ClusterCommand::Status => None,
        ClusterCommand::AddNode(a) => Some(a.change()),
        ClusterCommand::RemoveNode(a) => Some(a.change()),
    };
    if let Some((change, raft_server)) = change {
        return super::cluster_membership::run(&mut client, change, raft_server, args.json).await;
    }
    let m = reply(
        client
            .metadata(pb::MetadataRequest { topics: Vec::new() })
            .await,
    )?;
    let output = if args.json {
        pretty_json(&json!({
            "node_id": m.node_id,
            "leader": m.leader,
            "term": m.term,
            "applied_index": m.applied_index,
            "nodes": m.nodes.iter().map(|n| json!({
                "node_id": n.node_id,
                "grpc_addr": n.grpc_addr,
                "cluster_addr": n.cluster_addr,
                "voter": n.voter,
            })).collect::<Vec<_>>(),
        }))
    } else if m.nodes.is_empty() {
        "a single node (not a cluster)\n".to_string()
    } else {
        let mut t = Table::new(&["NODE", "ROLE", "GRPC", "CLUSTER"]);
        for n in &m.nodes {
            let role = if m.leader == Some(n.node_id) {
                "leader"
            } else if n.voter {
                "follower"
            } else {
                "learner"
            };
            t.row(vec![
                n.node_id.to_string(),
                role.to_string(),
                if n.grpc_addr.is_empty() {
                    "?".into()
                } else {
                    n.grpc_addr.clone()
                },
                n.cluster_addr.clone(),
            ]);
        }
        format!(
            "asked node {}: term {}, applied index {}\n{}",
            m.node_id,
            m.term,
            m.applied_index.map_or("-".to_string(), |i| i.to_string()),
            t.render()
        )
    };
    super::table::print_stdout(&output)?;
    Ok(ExitCode::SUCCESS)
}
