//! `obelisk consume <topic>`: print records as values, `key<TAB>value` lines or JSON lines.
//!
//! - With `--group G` (and without `--no-commit`), it joins the group as a member (the server
//!   assigns its partitions: two `consume --group G` split them), Polls its partitions and
//!   Commits what it printed, so the next run continues where this one stopped (at least once: a
//!   record printed just before a crash may be printed again, by this or another member).
//!   `--from` first Resets the group there (refused while the group has members).
//!   `--instance-id` makes it a static member.
//! - Without `--group` there is no consumer group at all: it reads with Subscribe from `--from`
//!   (default earliest) and commits nothing, so reading leaves no trace on the broker.
//! - `--follow` keeps printing new records until interrupted (with a group, as a member that
//!   commits as it goes; without one, by Subscribe). `--no-commit` with a group reads from the
//!   group's position (or `--from`) without joining it or moving it.
//! - With `--group G --shared` it is a worker of the shared group `G` (issue 14) on a
//!   SharedConsume stream: records are pushed to it (locked to it, shared with the other
//!   workers of `G`) and every printed record is accepted (settled in one batch per push);
//!   records taken but not printed (a closed stdout, `--count` reached) are released for the
//!   other workers.
//! - Without `--follow` it stops once no record arrived for `--wait-ms`, or after `--count`.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::connect::{ServerArgs, reply};
use super::position::Position;
use crate::client::{
    ClientError, Consumer, GroupConfig, GroupConsumer, Partition, RebalanceListener,
    SharedConsumer, SharedEvent, SharedStream,
};
use crate::proto as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The value, then a newline.
    Value,
    /// The key, a tab, the value, then a newline.
    Kv,
    /// One JSON object per line with partition, offset, timestamp_ns, key, value and headers.
    Json,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    pub topic: String,
    /// Consumer group: read from its committed offsets and commit what is printed. Without one,
    /// nothing is committed and reading starts at --from (default earliest).
    #[arg(long)]
    pub group: Option<String>,
    /// Where to start: earliest, latest, an offset (in every partition), a time like
    /// 2026-01-01T00:00:00Z, or @<unix_ns>. With a group that commits, the group is reset there.
    #[arg(long, value_name = "POSITION")]
    pub from: Option<Position>,
    /// Keep waiting for new records until interrupted (Ctrl-C).
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// How to print each record.
    #[arg(long, value_enum, default_value_t = Format::Value)]
    pub format: Format,
    /// Do not commit offsets (the group's position does not move).
    #[arg(long)]
    pub no_commit: bool,
    /// Without --follow: stop when no record arrived for this long, in ms.
    #[arg(long, default_value_t = 500)]
    pub wait_ms: u32,
    /// With --group: join as a static member with this id (coming back with it within the
    /// session timeout gets the same partitions back without a rebalance).
    #[arg(long, value_name = "ID", requires = "group")]
    pub instance_id: Option<String>,
    /// With --group: the group is a shared group (a work queue): take records locked to this
    /// worker and accept each one printed.
    #[arg(long, requires = "group", conflicts_with_all = ["from", "no_commit", "instance_id"])]
    pub shared: bool,
}

/// Where printed records go; a closed stdout (`| head`) ends the command quietly.
struct Output {
    out: io::BufWriter<io::Stdout>,
    format: Format,
    remaining: Option<u64>,
    closed: bool,
}

impl Output {
    /// Prints records until `--count` or a closed pipe; returns how many were printed.
    fn print(&mut self, records: &[pb::Record]) -> anyhow::Result<usize> {
        let mut printed = 0;
        for r in records {
            if self.done() {
                break;
            }
            match self.write(r) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    self.closed = true;
                    break;
                }
                Err(e) => return Err(e).context("writing to stdout"),
            }
            printed += 1;
            if let Some(n) = &mut self.remaining {
                *n -= 1;
            }
        }
        match self.out.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.closed = true,
            other => other.context("writing to stdout")?,
        }
        Ok(printed)
    }

    fn write(&mut self, r: &pb::Record) -> io::Result<()> {
        match self.format {
            Format::Value => {
                self.out.write_all(&r.value)?;
            }
            Format::Kv => {
                self.out.write_all(&r.key)?;
                self.out.write_all(b"\t")?;
                self.out.write_all(&r.value)?;
            }
            Format::Json => {
                serde_json::to_writer(&mut self.out, &super::record_json::proto_record_to_json(r))?;
            }
        }
        self.out.write_all(b"\n")
    }

    fn done(&self) -> bool {
        self.closed || self.remaining == Some(0)
    }
}

/// Reads and prints records.
///
/// # Errors
/// The broker cannot be reached or refuses a call (unknown topic, bad group name, ...).
pub async fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.connect().await?;
    let mut out = Output {
        out: io::BufWriter::new(io::stdout()),
        format: args.format,
        remaining: args.count,
        closed: false,
    };
    if out.done() {
        return Ok(ExitCode::SUCCESS);
    }
    let commit = !args.no_commit && args.group.is_some();
    match &args.group {
        Some(group) if args.shared => shared_loop(client, &args, group, &mut out).await?,
        Some(group) if commit => member_loop(client, &args, group, &mut out).await?,
        _ => subscribe_loop(client, &args, &mut out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Consumes as a member of the group until caught up (or, with `--follow`, interrupted).
async fn member_loop(
    mut client: crate::client::Client,
    args: &ConsumeArgs,
    group: &str,
    out: &mut Output,
) -> Result<(), anyhow::Error> {
    if let Some(from) = args.from {
        reply(
            client
                .reset(pb::ResetRequest {
                    topic: args.topic.clone(),
                    group: group.to_string(),
                    to: Some(from.to_proto()),
                })
                .await,
        )?;
    }
    let mut config = GroupConfig::new(group, &[&args.topic]);
    config.instance_id.clone_from(&args.instance_id);
    config.client_id = "obelisk-cli".into();
    config.max_wait_ms = if args.follow { 1000 } else { args.wait_ms };
    let mut consumer = GroupConsumer::join(client, config, Box::new(LogListener)).await?;
    loop {
        consumer.set_max_records(out.remaining.map_or(500, |n| n.min(500) as u32));
        let records = tokio::select! {
            r = consumer.poll() => r?,
            _ = tokio::signal::ctrl_c() => {
                consumer.close().await?;
                return Ok(());
            }
        };
        if records.is_empty() && !args.follow {
            consumer.close().await?;
            return Ok(());
        }
        out.print(&records)?;
        if out.closed {
            // Not everything returned was printed: leave it uncommitted for the next owner.
            return Ok(());
        }
        consumer.commit().await?;
        if out.done() {
            consumer.close().await?;
            return Ok(());
        }
    }
}

/// Works as a member of a shared group on its SharedConsume stream: prints what is pushed to
/// it and accepts it (one settle batch per push); what it took but did not print is released.
async fn shared_loop(
    client: crate::client::Client,
    args: &ConsumeArgs,
    group: &str,
    out: &mut Output,
) -> Result<(), anyhow::Error> {
    let member = format!(
        "obelisk-cli-{}-{}",
        std::process::id(),
        crate::broker::now_ns()
    );
    let credit = |out: &Output| out.remaining.map_or(500, |n| n.min(500) as u32);
    let mut stream = SharedStream::open(
        &mut client.clone(),
        &args.topic,
        group,
        &member,
        credit(out),
    )
    .await?;
    let wait = Duration::from_millis(u64::from(if args.follow { 1000 } else { args.wait_ms }));
    let mut unprinted = Vec::new();
    loop {
        let next = tokio::select! {
            r = tokio::time::timeout(wait, stream.next()) => r,
            _ = tokio::signal::ctrl_c() => break,
        };
        let taken = match next {
            Err(_) if args.follow => continue,
            Err(_) | Ok(Ok(None)) => break,
            Ok(Ok(Some(SharedEvent::Deliveries(d)))) => d,
            Ok(Ok(Some(SharedEvent::Settled { results, .. }))) => {
                warn_refused(&results);
                continue;
            }
            Ok(Err(e)) => return Err(e.into()),
        };
        let records: Vec<pb::Record> = taken.iter().filter_map(|d| d.record.clone()).collect();
        let printed = out.print(&records)?;
        for d in &taken[..printed] {
            stream.accept(d);
        }
        unprinted.extend_from_slice(&taken[printed..]);
        if out.done() {
            break;
        }
        stream.set_credit(credit(out)).await?;
        // Settled at once (one batch), so what was printed is not handed out again.
        warn_refused(&stream.settle().await?);
    }
    warn_refused(&stream.settle().await?);
    unprinted.extend(stream.close().await?);
    // Taken but not printed: given back at once for the other workers.
    let mut worker = SharedConsumer::new(client, &args.topic, group, &member);
    for d in &unprinted {
        worker.release(d, Some(0), "not printed");
    }
    warn_refused(&worker.flush().await?);
    Ok(())
}

fn warn_refused(results: &[pb::SettleResult]) {
    for r in results {
        if !r.error.is_empty() {
            tracing::warn!(partition = r.partition, offset = r.offset, error = %r.error, "a settle was refused");
        }
    }
}

/// Logs the member's assignment changes (visible with `--log-level info` / RUST_LOG).
struct LogListener;

impl RebalanceListener for LogListener {
    fn on_assigned(&mut self, partitions: &[Partition]) {
        tracing::info!(?partitions, "partitions assigned");
    }
    fn on_revoked(&mut self, partitions: &[Partition]) {
        tracing::info!(?partitions, "partitions revoked");
    }
    fn on_lost(&mut self, partitions: &[Partition]) {
        tracing::warn!(?partitions, "partitions lost (fenced); rejoining");
    }
}

/// Reads without committing: no group (from --from), or a group's position with --no-commit.
async fn subscribe_loop(
    client: crate::client::Client,
    args: &ConsumeArgs,
    out: &mut Output,
) -> Result<(), anyhow::Error> {
    let group = args.group.clone().unwrap_or_default();
    let mut consumer = Consumer::new(client, &args.topic, &group);
    let mut stream = consumer
        .subscribe(args.from.map(Position::to_proto))
        .await?;
    let wait = Duration::from_millis(u64::from(args.wait_ms));
    loop {
        let message = stream.message();
        let next = if args.follow {
            tokio::select! {
                n = message => Some(n),
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        } else {
            tokio::select! {
                n = tokio::time::timeout(wait, message) => n.ok(),
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        };
        let Some(next) = next else {
            return Ok(()); // Caught up: nothing new within --wait-ms.
        };
        let Some(batch) = next.map_err(ClientError::from)? else {
            if args.follow {
                anyhow::bail!("the broker ended the subscription (is it shutting down?)");
            }
            return Ok(());
        };
        out.print(&batch.records)?;
        if out.done() {
            return Ok(());
        }
    }
}
