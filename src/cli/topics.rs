//! `obelisk topics list|create|delete|describe`: tables for people, `--json` for scripts.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::connect::{ServerArgs, reply};
use super::table::{Table, human_bytes, human_retention_ms, pretty_json};
use crate::proto as pb;

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: TopicsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Every topic with its partitions, records and size.
    List,
    /// Create a topic (0 or unset: the broker's defaults).
    Create {
        name: String,
        #[arg(long, default_value_t = 0)]
        partitions: u32,
        /// Delete sealed segments older than this, in ms (0: keep forever).
        #[arg(long, default_value_t = 0)]
        retention_ms: u64,
        /// Keep each partition under about this many bytes (0: no limit).
        #[arg(long, default_value_t = 0)]
        retention_bytes: u64,
        /// How the topic's batches are compressed on disk: none, lz4 or zstd.
        #[arg(long, default_value = "none")]
        compression: crate::storage::batch::Compression,
    },
    /// Delete a topic, its data and the groups' offsets for it.
    Delete { name: String },
    /// A topic's settings and partitions.
    Describe { name: String },
}

/// Runs a topics subcommand.
///
/// # Errors
/// The broker cannot be reached or refuses the call.
pub async fn run(args: TopicsArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.server.connect().await?;
    let output = match args.command {
        TopicsCommand::List => {
            let topics = reply(client.list_topics(pb::ListTopicsRequest {}).await)?.topics;
            if args.json {
                pretty_json(&Value::Array(topics.iter().map(topic_json).collect()))
            } else if topics.is_empty() {
                "no topics\n".into()
            } else {
                let mut t = Table::new(&["TOPIC", "PARTITIONS", "RECORDS", "SIZE", "RETENTION"]);
                for topic in &topics {
                    let c = topic.config.unwrap_or_default();
                    t.row(vec![
                        topic.name.clone(),
                        c.partitions.to_string(),
                        records(topic).to_string(),
                        human_bytes(size(topic)),
                        retention(&c),
                    ]);
                }
                t.render()
            }
        }
        TopicsCommand::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
            compression,
        } => {
            let topic = reply(
                client
                    .create_topic(pb::CreateTopicRequest {
                        name,
                        config: Some(pb::TopicConfig {
                            partitions,
                            retention_ms,
                            retention_bytes,
                            compression: crate::grpc::compression_to_pb(compression),
                        }),
                    })
                    .await,
            )?
            .topic
            .unwrap_or_default();
            if args.json {
                pretty_json(&topic_json(&topic))
            } else {
                let c = topic.config.unwrap_or_default();
                format!(
                    "created topic {} with {} partitions, retention {}\n",
                    topic.name,
                    c.partitions,
                    retention(&c)
                )
            }
        }
        TopicsCommand::Delete { name } => {
            reply(
                client
                    .delete_topic(pb::DeleteTopicRequest { name: name.clone() })
                    .await,
            )?;
            if args.json {
                pretty_json(&json!({ "deleted": name }))
            } else {
                format!("deleted topic {name}\n")
            }
        }
        TopicsCommand::Describe { name } => {
            let topic = reply(
                client
                    .describe_topic(pb::DescribeTopicRequest { name })
                    .await,
            )?
            .topic
            .unwrap_or_default();
            if args.json {
                pretty_json(&topic_json(&topic))
            } else {
                describe_text(&topic)
            }
        }
    };
    super::table::print_stdout(&output)?;
    Ok(ExitCode::SUCCESS)
}

fn records(t: &pb::TopicDescription) -> u64 {
    t.partitions
        .iter()
        .map(|p| p.log_end_offset.saturating_sub(p.log_start_offset))
        .sum()
}

fn size(t: &pb::TopicDescription) -> u64 {
    t.partitions.iter().map(|p| p.size_bytes).sum()
}

fn retention(c: &pb::TopicConfig) -> String {
    match (c.retention_ms, c.retention_bytes) {
        (0, 0) => "forever".into(),
        (ms, 0) => human_retention_ms(ms),
        (0, b) => format!("{} per partition", human_bytes(b)),
        (ms, b) => format!(
            "{} or {} per partition",
            human_retention_ms(ms),
            human_bytes(b)
        ),
    }
}

fn topic_json(t: &pb::TopicDescription) -> Value {
    let c = t.config.unwrap_or_default();
    json!({
        "name": t.name,
        "partitions": c.partitions,
        "retention_ms": c.retention_ms,
        "retention_bytes": c.retention_bytes,
        "compression": crate::grpc::compression_from_pb(c.compression)
            .map_or_else(|_| c.compression.to_string(), |k| k.to_string()),
        "records": records(t),
        "size_bytes": size(t),
        "partition_details": t.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "log_start_offset": p.log_start_offset,
            "log_end_offset": p.log_end_offset,
            "size_bytes": p.size_bytes,
            "segments": p.segments,
            "read_only": p.read_only,
        })).collect::<Vec<_>>(),
    })
}

fn describe_text(t: &pb::TopicDescription) -> String {
    let c = t.config.unwrap_or_default();
    let mut out = format!(
        "topic {}: {} partitions, {} records, {}, retention {}\n\n",
        t.name,
        c.partitions,
        records(t),
        human_bytes(size(t)),
        retention(&c)
    );
    let mut table = Table::new(&[
        "PARTITION",
        "START",
        "END",
        "RECORDS",
        "SIZE",
        "SEGMENTS",
        "STATE",
    ]);
    for p in &t.partitions {
        table.row(vec![
            p.partition.to_string(),
            p.log_start_offset.to_string(),
            p.log_end_offset.to_string(),
            p.log_end_offset
                .saturating_sub(p.log_start_offset)
                .to_string(),
            human_bytes(p.size_bytes),
            p.segments.to_string(),
            if p.read_only { "read-only" } else { "ok" }.into(),
        ]);
    }
    out.push_str(&table.render());
    out
}
