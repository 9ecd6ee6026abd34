//! `obelisk dlq list|replay <group>` (shared groups, issue 14): the dead letters of a shared
//! group (its dead-letter topic, named in the group's settings), and re-producing them to the
//! topic and partition they came from, as read from their `obelisk-origin-*` headers (the
//! `obelisk-*` headers the broker added are dropped; key, value, timestamp and the record's own
//! headers are kept). Replaying does not remove the dead letters (the dead-letter topic is a
//! log): `--from` picks up where an earlier replay stopped (it prints the next offset).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::connect::{ServerArgs, reply};
use super::table::{Table, pretty_json, print_stdout};
use crate::proto as pb;

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// The dead letters of a shared group: origin, deliveries, reason, value.
    List {
        group: String,
        /// The first dead-letter offset to show.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Re-produce the dead letters of a shared group to their origin topic and partition.
    Replay {
        group: String,
        /// The first dead-letter offset to replay.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many.
        #[arg(long)]
        count: Option<u64>,
    },
}

const ORIGIN_TOPIC: &str = "obelisk-origin-topic";
const ORIGIN_PARTITION: &str = "obelisk-origin-partition";
const ORIGIN_OFFSET: &str = "obelisk-origin-offset";
const DELIVERIES: &str = "obelisk-deliveries";
const REASON: &str = "obelisk-reason";

fn header(r: &pb::Record, name: &str) -> String {
    r.headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// The dead letters of `group` from dead-letter offset `from`, at most `count`.
async fn read(
    client: &mut crate::client::Client,
    group: &str,
    from: u64,
    count: Option<u64>,
) -> anyhow::Result<(String, Vec<pb::Record>)> {
    let described = reply(
        client
            .describe_shared_group(pb::DescribeSharedGroupRequest {
                group: group.into(),
                topic: String::new(),
            })
            .await,
    )?;
    let dlq = described
        .settings
        .map(|s| s.dead_letter_topic)
        .unwrap_or_default();
    let topic = reply(
        client
            .describe_topic(pb::DescribeTopicRequest { name: dlq.clone() })
            .await,
    )?;
    let first = topic.topic.as_ref().and_then(|t| t.partitions.first());
    let (start, end) = first.map_or((0, 0), |p| (p.log_start_offset, p.log_end_offset));
    let mut at = from.max(start);
    let mut out = Vec::new();
    let limit = count.unwrap_or(u64::MAX);
    while at < end && (out.len() as u64) < limit {
        let got = reply(
            client
                .fetch(pb::FetchRequest {
                    topic: dlq.clone(),
                    partition: 0,
                    offset: at,
                    max_records: 500,
                    ..Default::default()
                })
                .await,
        )?
        .records;
        let Some(last) = got.last() else { break };
        at = last.offset + 1;
        let room = usize::try_from(limit - out.len() as u64).unwrap_or(usize::MAX);
        out.extend(got.into_iter().take(room));
    }
    Ok((dlq, out))
}

/// Runs a dlq subcommand.
///
/// # Errors
/// The broker cannot be reached or refuses a call (NotFound for an unknown group), or a dead
/// letter has no origin headers (replay).
pub async fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.server.connect().await?;
    let text = match args.command {
        DlqCommand::List { group, from, count } => {
            let (dlq, records) = read(&mut client, &group, from, count).await?;
            if args.json {
                let rows: Vec<_> = records
                    .iter()
                    .map(|r| {
                        json!({
                            "offset": r.offset,
                            "origin_topic": header(r, ORIGIN_TOPIC),
                            "origin_partition": header(r, ORIGIN_PARTITION).parse::<u32>().ok(),
                            "origin_offset": header(r, ORIGIN_OFFSET).parse::<u64>().ok(),
                            "deliveries": header(r, DELIVERIES).parse::<u32>().ok(),
                            "reason": header(r, REASON),
                            "record": super::record_json::proto_record_to_json(r),
                        })
                    })
                    .collect();
                pretty_json(&json!({"dead_letter_topic": dlq, "dead_letters": rows}))
            } else if records.is_empty() {
                format!("no dead letters in {dlq}\n")
            } else {
                let mut t = Table::new(&["OFFSET", "ORIGIN", "DELIVERIES", "REASON", "VALUE"]);
                for r in &records {
                    let mut value = String::from_utf8_lossy(&r.value).into_owned();
                    if value.chars().count() > 40 {
                        value = value.chars().take(39).collect::<String>() + "…";
                    }
                    t.row(vec![
                        r.offset.to_string(),
                        format!(
                            "{}/{}@{}",
                            header(r, ORIGIN_TOPIC),
                            header(r, ORIGIN_PARTITION),
                            header(r, ORIGIN_OFFSET)
                        ),
                        header(r, DELIVERIES),
                        header(r, REASON),
                        value.replace(['\n', '\t'], " "),
                    ]);
                }
                t.render()
            }
        }
        DlqCommand::Replay { group, from, count } => {
            let (dlq, records) = read(&mut client, &group, from, count).await?;
            let mut replayed = 0u64;
            let mut next = from;
            for r in &records {
                let topic = header(r, ORIGIN_TOPIC);
                let partition: u32 = header(r, ORIGIN_PARTITION).parse().map_err(|_| {
                    anyhow::anyhow!(
                        "dead letter {dlq}@{} has no {ORIGIN_PARTITION} header: not replayed \
                         (replay stopped there; {replayed} replayed)",
                        r.offset
                    )
                })?;
                anyhow::ensure!(
                    !topic.is_empty(),
                    "dead letter {dlq}@{} has no {ORIGIN_TOPIC} header: not replayed (replay \
                     stopped there; {replayed} replayed)",
                    r.offset
                );
                let headers = r
                    .headers
                    .iter()
                    .filter(|(k, _)| !k.starts_with("obelisk-"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                reply(
                    client
                        .produce(pb::ProduceRequest {
                            topic,
                            records: vec![pb::ProducerRecord {
                                key: r.key.clone(),
                                value: r.value.clone(),
                                headers,
                                timestamp_ns: Some(r.timestamp_ns),
                                partition: Some(partition),
                            }],
                            idempotence: None,
                        })
                        .await,
                )?;
                replayed += 1;
                next = r.offset + 1;
            }
            if args.json {
                pretty_json(&json!({"dead_letter_topic": dlq, "replayed": replayed, "next": next}))
            } else {
                format!(
                    "replayed {replayed} dead letters of {dlq} to their origin; next: --from {next}\n"
                )
            }
        }
    };
    print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}
