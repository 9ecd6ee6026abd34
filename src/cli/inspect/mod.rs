//! `obelisk inspect <data dir>`: an offline, read-only check of a data directory.
//!
//! It walks `topics/<topic>/<partition>/*.log` and reads the files directly (never through
//! `PartitionLog`, whose recovery truncates torn tails): per partition it prints segments, records,
//! first and last offset and bytes; it verifies every record's CRC32C and offset, the offsets
//! across segments, each offset index and each sealed time index against its log, and that group
//! offset files parse. Damage exits with code 3 and names the file and byte position; warnings
//! (what the broker repairs on start) do not change the exit code.

mod segment;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use super::table::{Table, human_bytes, pretty_json, print_stdout};
use crate::storage::Record;
use crate::storage::layout::{self, SegmentFile};
use segment::{Finding, Role, Severity};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The broker's data directory (the one holding topics/).
    pub data_dir: PathBuf,
    /// Only this topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Only this partition.
    #[arg(long)]
    pub partition: Option<u32>,
    /// Print every record to stdout (the summary then goes to stderr).
    #[arg(long)]
    pub records: bool,
    /// JSON output: the summary as one document, records as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// One partition's totals.
struct PartitionSummary {
    topic: String,
    partition: u32,
    segments: usize,
    records: u64,
    first: Option<u64>,
    end: Option<u64>,
    bytes: u64,
    status: Status,
    /// Readable frames by format (formatv2).
    frames: crate::storage::verify::FrameCounts,
}

/// A partition's state, worst finding first in severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Ok,
    Warning,
    Damaged,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Damaged => "DAMAGED",
        }
    }
}

fn worst(findings: &[Finding]) -> Status {
    findings
        .iter()
        .map(|f| match f.severity {
            Severity::Damage => Status::Damaged,
            Severity::Warning => Status::Warning,
        })
        .max()
        .unwrap_or(Status::Ok)
}

/// Runs the check.
///
/// # Errors
/// The directory is not a data directory or cannot be listed.
pub fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let topics_dir = args.data_dir.join("topics");
    if !topics_dir.is_dir() {
        if !args.data_dir.is_dir() {
            bail!("{} is not a directory", args.data_dir.display());
        }
        bail!(
            "{} has no topics/ directory: is it an Obelisk data directory?",
            args.data_dir.display()
        );
    }
    let mut printer = RecordPrinter::new(args.records, args.json);
    let mut summaries = Vec::new();
    let mut findings = Vec::new();
    for topic in numbered_or_named(&topics_dir, false)? {
        if args.topic.as_ref().is_some_and(|t| *t != topic.0) {
            continue;
        }
        inspect_topic(
            &topics_dir.join(&topic.0),
            &topic.0,
            args,
            &mut printer,
            &mut summaries,
            &mut findings,
        )?;
    }
    if args.topic.is_none() && args.partition.is_none() {
        findings.extend(check_groups(&args.data_dir.join("groups")));
    }
    printer.finish()?;
    let damage = findings
        .iter()
        .filter(|f| f.severity == Severity::Damage)
        .count();
    let report = if args.json {
        pretty_json(&json_report(args, &summaries, &findings))
    } else {
        text_report(&summaries, &findings)
    };
    if args.records {
        eprint!("{report}");
    } else {
        print_stdout(&report)?;
    }
    if damage > 0 {
        eprintln!(
            "error: {damage} damaged place(s) in {}; see the report above",
            args.data_dir.display()
        );
        return Ok(ExitCode::from(super::EXIT_DATA_PROBLEM));
    }
    Ok(ExitCode::SUCCESS)
}

/// Directory entries sorted: `(name, number)` where the number is the name parsed as an integer
/// (partitions), or every directory by name (topics) when `numbered` is false.
fn numbered_or_named(dir: &Path, numbered: bool) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        match (numbered, name.parse::<u64>()) {
            (true, Ok(n)) => out.push((name, n)),
            (true, Err(_)) => {}
            (false, _) => out.push((name, 0)),
        }
    }
    out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    Ok(out)
}

fn inspect_topic(
    dir: &Path,
    topic: &str,
    args: &InspectArgs,
    printer: &mut RecordPrinter,
    summaries: &mut Vec<PartitionSummary>,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<()> {
    let config = dir.join("topic.json");
    let declared = match fs::read(&config).map(|b| serde_json::from_slice::<Value>(&b)) {
        Ok(Ok(v)) => v["partitions"].as_u64(),
        Ok(Err(e)) => {
            findings.push(damage(&config, format!("does not parse: {e}")));
            None
        }
        Err(e) => {
            findings.push(damage(&config, format!("cannot be read: {e}")));
            None
        }
    };
    let partitions = numbered_or_named(dir, true)?;
    if let Some(n) = declared {
        for p in 0..n {
            if !partitions.iter().any(|(_, q)| *q == p) {
                findings.push(damage(
                    &dir.join(p.to_string()),
                    format!("partition {p} of {n} is missing"),
                ));
            }
        }
    }
    for (name, p) in partitions {
        let Ok(partition) = u32::try_from(p) else {
            continue;
        };
        if args.partition.is_some_and(|only| only != partition) {
            continue;
        }
        let mut found = Vec::new();
        let mut summary =
            inspect_partition(&dir.join(name), topic, partition, printer, &mut found)?;
        summary.status = worst(&found).max(summary.status);
        findings.extend(found);
        summaries.push(summary);
    }
    Ok(())
}

fn inspect_partition(
    dir: &Path,
    topic: &str,
    partition: u32,
    printer: &mut RecordPrinter,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<PartitionSummary> {
    let mut bases = Vec::new();
    let mut others = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match layout::log_file_base(&name) {
            Some(base) => bases.push(base),
            None => others.push(name),
        }
    }
    bases.sort_unstable();
    for name in others {
        let stem = name
            .strip_suffix(".index")
            .or_else(|| name.strip_suffix(".timeindex"));
        if let Some(base) = stem.and_then(|s| s.parse::<u64>().ok())
            && !bases.contains(&base)
        {
            findings.push(Finding {
                severity: Severity::Warning,
                file: dir.join(&name),
                position: None,
                message: "index without a log file".into(),
            });
        }
    }
    let mut summary = PartitionSummary {
        topic: topic.to_string(),
        partition,
        segments: bases.len(),
        records: 0,
        first: bases.first().copied(),
        end: None,
        bytes: 0,
        status: Status::Ok,
        frames: Default::default(),
    };
    let mut expected_base: Option<u64> = None;
    for (i, &base) in bases.iter().enumerate() {
        let role = match bases.get(i + 1) {
            Some(&end) if end > base => Role::Sealed { end },
            _ => Role::Active,
        };
        if let Some(e) = expected_base
            && e != base
        {
            let message = if base > e {
                format!("offsets {e} to {} are missing between segments", base - 1)
            } else {
                format!(
                    "this segment starts at offset {base}, inside the previous one (ends at {e})"
                )
            };
            findings.push(damage(&segment_path(dir, base), message));
        }
        let mut each = |r: &Record| printer.print(topic, partition, r);
        let report = segment::check(dir, base, role, &mut each)
            .with_context(|| format!("reading {}", segment_path(dir, base).display()))?;
        summary.records += report.readable;
        summary.bytes += report.bytes;
        summary.frames.add(report.frames);
        let next = base + report.offsets;
        expected_base = Some(next);
        summary.end = Some(next);
        findings.extend(report.findings);
    }
    if let Some(e) = printer.error.take() {
        return Err(e);
    }
    Ok(summary)
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    layout::segment_path(dir, base, SegmentFile::Log)
}

fn damage(file: &Path, message: String) -> Finding {
    Finding {
        severity: Severity::Damage,
        file: file.to_path_buf(),
        position: None,
        message,
    }
}

/// Group offset files (`groups/<group>.json`) must parse as topic → partition → offset.
fn check_groups(dir: &Path) -> Vec<Finding> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let parsed = fs::read(&path).map_err(|e| e.to_string()).and_then(|b| {
            serde_json::from_slice::<crate::storage::offsets::GroupOffsets>(&b)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = parsed {
            out.push(damage(&path, format!("group offsets do not parse: {e}")));
        }
    }
    out
}

/// Prints records as they are read (`--records`), in text or JSON lines.
struct RecordPrinter {
    enabled: bool,
    json: bool,
    out: std::io::BufWriter<std::io::Stdout>,
    error: Option<anyhow::Error>,
}

impl RecordPrinter {
    fn new(enabled: bool, json: bool) -> Self {
        Self {
            enabled,
            json,
            out: std::io::BufWriter::new(std::io::stdout()),
            error: None,
        }
    }

    fn print(&mut self, topic: &str, partition: u32, r: &Record) {
        use std::io::Write;
        if !self.enabled || self.error.is_some() {
            return;
        }
        let line = if self.json {
            let headers: Vec<(&str, &[u8])> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_ref()))
                .collect();
            let mut v = super::record_json::record_to_json(
                partition,
                r.offset,
                r.timestamp,
                &r.key,
                &r.value,
                &headers,
            );
            v["topic"] = json!(topic);
            v.to_string()
        } else {
            let mut s = format!(
                "{topic}/{partition} offset={} time={} key={:?} value={:?}",
                r.offset,
                super::time::format_rfc3339(r.timestamp),
                String::from_utf8_lossy(&r.key),
                String::from_utf8_lossy(&r.value)
            );
            for (k, v) in &r.headers {
                s.push_str(&format!(" header.{k}={:?}", String::from_utf8_lossy(v)));
            }
            s
        };
        if let Err(e) = writeln!(self.out, "{line}") {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                self.enabled = false;
            } else {
                self.error = Some(anyhow::Error::new(e).context("writing to stdout"));
            }
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        use std::io::Write;
        match self.out.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(anyhow::Error::new(e).context("writing to stdout"))
            }
            _ => Ok(()),
        }
    }
}

fn text_report(summaries: &[PartitionSummary], findings: &[Finding]) -> String {
    let mut t = Table::new(&[
        "TOPIC",
        "PARTITION",
        "SEGMENTS",
        "RECORDS",
        "FIRST",
        "LAST",
        "BYTES",
        "STATUS",
    ]);
    for s in summaries {
        let last = match (s.first, s.end) {
            (Some(first), Some(end)) if end > first => (end - 1).to_string(),
            _ => "-".into(),
        };
        t.row(vec![
            s.topic.clone(),
            s.partition.to_string(),
            s.segments.to_string(),
            s.records.to_string(),
            s.first.map_or("-".into(), |f| f.to_string()),
            last,
            human_bytes(s.bytes),
            s.status.name().into(),
        ]);
    }
    let mut out = if t.is_empty() {
        "no partitions\n".to_string()
    } else {
        t.render()
    };
    for f in findings {
        let kind = match f.severity {
            Severity::Damage => "damage",
            Severity::Warning => "warning",
        };
        let at = f
            .position
            .map(|p| format!(" at byte {p}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{kind}: {}{at}: {}\n",
            f.file.display(),
            f.message
        ));
    }
    if findings.iter().all(|f| f.severity != Severity::Damage) {
        out.push_str("no damage found\n");
    }
    out
}

fn json_report(args: &InspectArgs, summaries: &[PartitionSummary], findings: &[Finding]) -> Value {
    json!({
        "data_dir": args.data_dir.display().to_string(),
        "ok": findings.iter().all(|f| f.severity != Severity::Damage),
        "partitions": summaries.iter().map(|s| json!({
            "topic": s.topic,
            "partition": s.partition,
            "segments": s.segments,
            "records": s.records,
            "first_offset": s.first,
            "last_offset": match (s.first, s.end) {
                (Some(first), Some(end)) if end > first => Some(end - 1),
                _ => None,
            },
            "bytes": s.bytes,
            "status": s.status.name().to_ascii_lowercase(),
            "v1_records": s.frames.v1_records,
            "v2_batches": s.frames.v2_batches,
            "compressed_batches": s.frames.compressed_batches,
        })).collect::<Vec<_>>(),
        "findings": findings.iter().map(|f| json!({
            "severity": match f.severity { Severity::Damage => "damage", Severity::Warning => "warning" },
            "file": f.file.display().to_string(),
            "position": f.position,
            "message": f.message,
        })).collect::<Vec<_>>(),
    })
}
