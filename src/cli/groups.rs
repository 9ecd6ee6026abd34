//! `obelisk groups list|describe|reset|delete`: consumer groups' committed offsets and lag, and
//! their members (state, epoch, each member's partitions and lag).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::connect::{ServerArgs, reply};
use super::position::Position;
use super::table::{Table, pretty_json};
use crate::proto as pb;

#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Groups that have committed offsets.
    List,
    /// A group's committed offset, log end and lag per topic partition, and its members.
    Describe { group: String },
    /// Delete a group's committed offsets and membership (refused while members are connected).
    Delete { group: String },
    /// Move a group's committed offsets in one topic.
    Reset {
        group: String,
        #[arg(long)]
        topic: String,
        /// earliest, latest, an offset (in every partition, clamped to each partition's range),
        /// a time like 2026-01-01T00:00:00Z, or @<unix_ns>.
        #[arg(long, value_name = "POSITION")]
        to: Position,
    },
}

/// Runs a groups subcommand.
///
/// # Errors
/// The broker cannot be reached or refuses the call (e.g. NotFound for an unknown group).
pub async fn run(args: GroupsArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.server.connect().await?;
    let output = match args.command {
        GroupsCommand::List => {
            let mut groups = reply(client.list_groups(pb::ListGroupsRequest {}).await)?.groups;
            groups.sort();
            if args.json {
                pretty_json(&json!(groups))
            } else if groups.is_empty() {
                "no groups\n".into()
            } else {
                let mut t = Table::new(&["GROUP"]);
                for g in groups {
                    t.row(vec![g]);
                }
                t.render()
            }
        }
        GroupsCommand::Describe { group } => {
            let mut d = reply(
                client
                    .describe_group(pb::DescribeGroupRequest { group })
                    .await,
            )?;
            d.partitions
                .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            if args.json {
                pretty_json(&json!({
                    "group": d.group,
                    "partitions": d.partitions.iter().map(|p| json!({
                        "topic": p.topic,
                        "partition": p.partition,
                        "committed_offset": p.committed_offset,
                        "log_end_offset": p.log_end_offset,
                        "lag": p.lag,
                    })).collect::<Vec<_>>(),
                    "total_lag": d.partitions.iter().map(|p| p.lag).sum::<u64>(),
                    "state": d.state,
                    "epoch": d.epoch,
                    "topics": d.topics,
                    "members": d.members.iter().map(|m| json!({
                        "member_id": m.member_id,
                        "instance_id": m.instance_id,
                        "client_id": m.client_id,
                        "address": m.address,
                        "kind": m.kind,
                        "connected": m.connected,
                        "member_epoch": m.member_epoch,
                        "partitions": partitions_json(&m.partitions),
                        "revoking": partitions_json(&m.revoking),
                        "lag": m.lag,
                    })).collect::<Vec<_>>(),
                }))
            } else {
                let mut t = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"]);
                for p in &d.partitions {
                    t.row(vec![
                        p.topic.clone(),
                        p.partition.to_string(),
                        p.committed_offset.to_string(),
                        p.log_end_offset.to_string(),
                        p.lag.to_string(),
                    ]);
                }
                let lag: u64 = d.partitions.iter().map(|p| p.lag).sum();
                let mut text = format!("group {}: total lag {lag}\n\n{}", d.group, t.render());
                text.push_str(&members_text(&d));
                text
            }
        }
        GroupsCommand::Delete { group } => {
            reply(
                client
                    .delete_group(pb::DeleteGroupRequest {
                        group: group.clone(),
                    })
                    .await,
            )?;
            if args.json {
                pretty_json(&json!({"group": group, "deleted": true}))
            } else {
                format!("group {group} deleted\n")
            }
        }
        GroupsCommand::Reset { group, topic, to } => {
            let mut offsets = reply(
                client
                    .reset(pb::ResetRequest {
                        topic: topic.clone(),
                        group: group.clone(),
                        to: Some(to.to_proto()),
                    })
                    .await,
            )?
            .offsets;
            offsets.sort_by_key(|o| o.partition);
            if args.json {
                pretty_json(&json!({
                    "group": group,
                    "topic": topic,
                    "offsets": offsets.iter().map(|o| json!({
                        "partition": o.partition,
                        "offset": o.offset,
                    })).collect::<Vec<_>>(),
                }))
            } else {
                let mut t = Table::new(&["PARTITION", "OFFSET"]);
                for o in &offsets {
                    t.row(vec![o.partition.to_string(), o.offset.to_string()]);
                }
                format!(
                    "group {group} on topic {topic} reset to {to}\n\n{}",
                    t.render()
                )
            }
        }
    };
    super::table::print_stdout(&output)?;
    Ok(ExitCode::SUCCESS)
}

fn partitions_text(tps: &[pb::TopicPartitions]) -> String {
    tps.iter()
        .map(|t| {
            let ps: Vec<String> = t.partitions.iter().map(u32::to_string).collect();
            format!("{}:{}", t.topic, ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn partitions_json(tps: &[pb::TopicPartitions]) -> serde_json::Value {
    tps.iter()
        .map(|t| (t.topic.clone(), json!(t.partitions)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The members part of `groups describe` (empty for a group that never had members).
fn members_text(d: &pb::DescribeGroupResponse) -> String {
    if d.members.is_empty() && d.epoch == 0 {
        return String::new();
    }
    let mut t = Table::new(&[
        "MEMBER",
        "INSTANCE",
        "CLIENT",
        "ADDRESS",
        "EPOCH",
        "PARTITIONS",
        "REVOKING",
        "LAG",
    ]);
    for m in &d.members {
        t.row(vec![
            m.member_id.clone(),
            m.instance_id.clone(),
            m.client_id.clone(),
            if m.connected {
                m.address.clone()
            } else {
                "(disconnected)".into()
            },
            m.member_epoch.to_string(),
            partitions_text(&m.partitions),
            partitions_text(&m.revoking),
            m.lag.to_string(),
        ]);
    }
    format!(
        "\nstate {}, epoch {}, {} member(s)\n\n{}",
        d.state,
        d.epoch,
        d.members.len(),
        t.render()
    )
}
