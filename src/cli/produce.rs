//! `obelisk produce <topic>`: records from stdin (a line each, or JSON lines) or from `--value`,
//! sent in batches by the [`Producer`]; `--acks` prints where each record landed.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::connect::ServerArgs;
use crate::client::{AckFuture, ClientError, Producer, ProducerConfig};
use crate::proto as pb;

/// Acks kept waiting before the reader pauses for the oldest (bounds memory on huge inputs).
const MAX_PENDING_ACKS: usize = 100_000;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Topic to produce to (created on first use unless the broker disables that).
    pub topic: String,
    /// Send one record with this value instead of reading stdin.
    #[arg(long, conflicts_with_all = ["json", "key_separator"])]
    pub value: Option<String>,
    /// Key of every record (or of the --value record).
    #[arg(long, conflicts_with_all = ["json", "key_separator"])]
    pub key: Option<String>,
    /// Split each stdin line at the first SEP into key and value (e.g. --key-separator ':').
    #[arg(long, value_name = "SEP", conflicts_with = "json")]
    pub key_separator: Option<String>,
    /// Read JSON lines: {"key","value","headers":{..},"partition"?,"timestamp_ns"?}.
    #[arg(long)]
    pub json: bool,
    /// A header for every record (repeatable; not with --json, where headers are per line).
    #[arg(long = "header", value_name = "NAME=VALUE", conflicts_with = "json")]
    pub headers: Vec<String>,
    /// Send every record to this partition instead of choosing by key.
    #[arg(long, conflicts_with = "json")]
    pub partition: Option<u32>,
    /// Print "partition offset" for each record once it is acknowledged, in input order.
    #[arg(long)]
    pub acks: bool,
    /// Records per batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// How long a batch waits for more records, in ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
}

/// Turns input lines into records.
struct LineParser {
    json: bool,
    separator: Option<Vec<u8>>,
    key: Bytes,
    headers: HashMap<String, Bytes>,
    partition: Option<u32>,
}

impl LineParser {
    fn new(args: &ProduceArgs) -> anyhow::Result<Self> {
        let mut headers = HashMap::new();
        for h in &args.headers {
            let Some((name, value)) = h.split_once('=') else {
                bail!("--header {h:?}: expected NAME=VALUE");
            };
            headers.insert(name.to_string(), Bytes::copy_from_slice(value.as_bytes()));
        }
        if args.key_separator.as_deref() == Some("") {
            bail!("--key-separator must not be empty");
        }
        Ok(Self {
            json: args.json,
            separator: args.key_separator.as_ref().map(|s| s.as_bytes().to_vec()),
            key: args
                .key
                .as_ref()
                .map(|k| Bytes::copy_from_slice(k.as_bytes()))
                .unwrap_or_default(),
            headers,
            partition: args.partition,
        })
    }

    /// The record of one line (without its newline); `None` for a blank line in JSON mode.
    fn parse(&self, line: &[u8], number: u64) -> anyhow::Result<Option<pb::ProducerRecord>> {
        if self.json {
            let text = std::str::from_utf8(line)
                .map_err(|_| anyhow::anyhow!("line {number}: not UTF-8, so not JSON"))?;
            if text.trim().is_empty() {
                return Ok(None);
            }
            return super::record_json::producer_record_from_json(text)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("line {number}: {e}"));
        }
        let (key, value) = match &self.separator {
            None => (self.key.clone(), Bytes::copy_from_slice(line)),
            Some(sep) => {
                let at = line
                    .windows(sep.len())
                    .position(|w| w == sep.as_slice())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "line {number} has no key separator {:?}",
                            String::from_utf8_lossy(sep)
                        )
                    })?;
                (
                    Bytes::copy_from_slice(&line[..at]),
                    Bytes::copy_from_slice(&line[at + sep.len()..]),
                )
            }
        };
        Ok(Some(self.record(key, value)))
    }

    fn record(&self, key: Bytes, value: Bytes) -> pb::ProducerRecord {
        pb::ProducerRecord {
            key,
            value,
            headers: self.headers.clone(),
            timestamp_ns: None,
            partition: self.partition,
        }
    }
}

/// Acks in input order; prints them with `--acks`.
struct AckQueue {
    pending: VecDeque<AckFuture>,
    print: bool,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl AckQueue {
    fn done(&mut self, ack: Result<pb::RecordAck, ClientError>) -> anyhow::Result<()> {
        let ack = ack?;
        if self.print {
            writeln!(self.out, "{} {}", ack.partition, ack.offset).context("writing to stdout")?;
        }
        Ok(())
    }

    /// Takes the acks that have already arrived, in order, without waiting.
    fn drain_ready(&mut self) -> anyhow::Result<()> {
        while let Some(front) = self.pending.front_mut() {
            match front.try_recv() {
                Ok(ack) => {
                    self.pending.pop_front();
                    self.done(ack)?;
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => break,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(ClientError::Closed.into());
                }
            }
        }
        if self.print {
            self.out.flush().context("writing to stdout")?;
        }
        Ok(())
    }

    async fn wait_oldest(&mut self) -> anyhow::Result<()> {
        if let Some(front) = self.pending.pop_front() {
            self.done(front.await.unwrap_or(Err(ClientError::Closed)))?;
        }
        Ok(())
    }
}

/// Sends the records and waits for every ack.
///
/// # Errors
/// The broker cannot be reached, a line does not parse, or a record is refused.
pub async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let parser = LineParser::new(&args)?;
    let client = args.server.connect().await?;
    let producer = Producer::new(
        client,
        ProducerConfig {
            batch_records: args.batch_size as usize,
            linger: Duration::from_millis(args.linger_ms),
            ..ProducerConfig::default()
        },
    )
    .await?;
    let mut acks = AckQueue {
        pending: VecDeque::new(),
        print: args.acks,
        out: std::io::BufWriter::new(std::io::stdout()),
    };
    let sent = send_all(&args, &parser, &producer, &mut acks).await;
    // What was sent is acknowledged (or refused) before we report; a refusal explains a stopped
    // producer better than the "stopped" itself, so it wins.
    let mut refused = None;
    while !acks.pending.is_empty() {
        if let Err(e) = acks.wait_oldest().await {
            refused = Some(e);
            break;
        }
    }
    producer.close().await;
    if args.acks {
        acks.out.flush().context("writing to stdout")?;
    }
    match (refused, sent) {
        (Some(e), _) | (None, Err(e)) => Err(e),
        (None, Ok(())) => Ok(ExitCode::SUCCESS),
    }
}

async fn send_all(
    args: &ProduceArgs,
    parser: &LineParser,
    producer: &Producer,
    acks: &mut AckQueue,
) -> anyhow::Result<()> {
    if let Some(value) = &args.value {
        let record = parser.record(parser.key.clone(), Bytes::copy_from_slice(value.as_bytes()));
        acks.pending
            .push_back(producer.send(&args.topic, record).await?);
        return Ok(());
    }
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if stdin
            .read_until(b'\n', &mut line)
            .await
            .context("reading stdin")?
            == 0
        {
            return Ok(());
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let Some(record) = parser.parse(&line, number)? else {
            continue;
        };
        acks.pending
            .push_back(producer.send(&args.topic, record).await?);
        acks.drain_ready()?;
        if acks.pending.len() >= MAX_PENDING_ACKS {
            acks.wait_oldest().await?;
        }
    }
}
