//! What a bench run measured, as a table for people or JSON for scripts, and the live progress
//! line (stderr, only on a terminal).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::Plan;
use crate::cli::table::Table;

pub struct ProduceStats {
    pub records: u64,
    pub seconds: f64,
    pub latency: Histogram<u64>,
}

pub struct ConsumeStats {
    pub consumers: u32,
    /// Records read by all consumers together.
    pub records: u64,
    pub seconds: f64,
    pub end_to_end: Option<Histogram<u64>>,
}

pub struct Verification {
    /// Records checked by all consumers together.
    pub checked: u64,
    pub error_count: u64,
    pub errors: Vec<String>,
}

pub struct Outcome {
    pub plan: Plan,
    pub produce: Option<ProduceStats>,
    pub consume: Option<ConsumeStats>,
    pub verification: Option<Verification>,
    /// Failures that stopped a producer or consumer.
    pub errors: Vec<String>,
    /// formatv2: bytes of the in-process broker's segment logs after the run.
    pub disk_bytes: Option<u64>,
}

impl Outcome {
    /// True when the numbers can be trusted: no failures, and verification (if any) passed.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
            && self
                .verification
                .as_ref()
                .is_none_or(|v| v.error_count == 0)
    }

    pub fn verification_failed(&self) -> bool {
        self.verification
            .as_ref()
            .is_some_and(|v| v.error_count > 0)
    }

    fn bytes(&self, records: u64) -> u64 {
        records * self.plan.message_size.max(super::payload::HEADER) as u64
    }

    pub fn produce_rate(&self) -> Option<(f64, f64)> {
        let p = self.produce.as_ref().filter(|_| self.ok())?;
        rates(p.records, self.bytes(p.records), p.seconds)
    }

    pub fn consume_rate(&self) -> Option<(f64, f64)> {
        let c = self.consume.as_ref().filter(|_| self.ok())?;
        rates(c.records, self.bytes(c.records), c.seconds)
    }

    pub fn to_json(&self) -> Value {
        let produce = self.produce.as_ref().map(|p| {
            let rate = self.produce_rate();
            json!({
                "records": p.records,
                "bytes": self.bytes(p.records),
                "seconds": p.seconds,
                "records_per_sec": rate.map(|r| r.0),
                "mb_per_sec": rate.map(|r| r.1),
                "latency_us": latency_json(&p.latency),
            })
        });
        let consume = self.consume.as_ref().map(|c| {
            let rate = self.consume_rate();
            json!({
                "consumers": c.consumers,
                "records": c.records,
                "bytes": self.bytes(c.records),
                "seconds": c.seconds,
                "records_per_sec": rate.map(|r| r.0),
                "mb_per_sec": rate.map(|r| r.1),
                "end_to_end_latency_us": c.end_to_end.as_ref().map(latency_json),
            })
        });
        let verification = self.verification.as_ref().map(|v| {
            json!({
                "ok": v.error_count == 0,
                "records_checked": v.checked,
                "error_count": v.error_count,
                "errors": v.errors,
            })
        });
        json!({
            "ok": self.ok(),
            "command": self.plan.command_line(),
            "config": self.plan,
            "produce": produce,
            "consume": consume,
            "verification": verification,
            "errors": self.errors,
            "disk": self.disk_json(),
        })
    }

    /// formatv2: what the records took on disk, per record and against their values' size.
    fn disk_json(&self) -> Option<Value> {
        let bytes = self.disk_bytes?;
        let records = self.produce.as_ref().map(|p| p.records)?;
        let raw = self.bytes(records);
        Some(json!({
            "log_bytes": bytes,
            "bytes_per_record": (records > 0).then(|| bytes as f64 / records as f64),
            "of_raw_values": (raw > 0).then(|| bytes as f64 / raw as f64),
        }))
    }

    pub fn to_text(&self) -> String {
        let p = &self.plan;
        let mut out = format!("{}\n{}\n\n", p.describe(), p.command_line());
        if !self.errors.is_empty() || self.verification_failed() {
            out.push_str("FAILED: no rate is reported because the run did not check out\n");
            for e in &self.errors {
                out.push_str(&format!("  error: {e}\n"));
            }
            if let Some(v) = &self.verification {
                for e in &v.errors {
                    out.push_str(&format!("  verification: {e}\n"));
                }
                if v.error_count > v.errors.len() as u64 {
                    out.push_str(&format!(
                        "  verification: … {} problems in all\n",
                        v.error_count
                    ));
                }
            }
            return out;
        }
        let mut t = Table::new(&[
            "",
            "records",
            "seconds",
            "records/s",
            "MB/s",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
        ]);
        let row = |name: String,
                   records: u64,
                   seconds: f64,
                   rate: Option<(f64, f64)>,
                   h: Option<&Histogram<u64>>| {
            let (rps, mbs) = rate.map_or(("-".into(), "-".into()), |(r, m)| {
                (format!("{r:.0}"), format!("{m:.2}"))
            });
            let mut cells = vec![name, records.to_string(), format!("{seconds:.2}"), rps, mbs];
            for q in [50.0, 90.0, 99.0, 99.9] {
                cells.push(h.map_or("-".into(), |h| human_us(h.value_at_percentile(q))));
            }
            cells.push(h.map_or("-".into(), |h| human_us(h.max())));
            cells
        };
        if let Some(s) = &self.produce {
            t.row(row(
                "produce (ack latency)".into(),
                s.records,
                s.seconds,
                self.produce_rate(),
                Some(&s.latency),
            ));
        }
        if let Some(c) = &self.consume {
            let name = if c.end_to_end.is_some() {
                format!("consume ×{} (end-to-end)", c.consumers)
            } else {
                format!("consume ×{}", c.consumers)
            };
            t.row(row(
                name,
                c.records,
                c.seconds,
                self.consume_rate(),
                c.end_to_end.as_ref(),
            ));
        }
        out.push_str(&t.render());
        if let Some(v) = &self.verification {
            out.push_str(&format!(
                "\nverification: ok: {} records checked (offsets contiguous per partition, \
                 checksums valid, every acknowledged record exactly once per consumer)\n",
                v.checked
            ));
        }
        if let Some(d) = self.disk_json() {
            out.push_str(&format!(
                "\non disk: {} bytes of segment logs, {:.1} bytes per record, {:.1}% of the values' \
                 size\n",
                d["log_bytes"],
                d["bytes_per_record"].as_f64().unwrap_or(0.0),
                d["of_raw_values"].as_f64().unwrap_or(0.0) * 100.0
            ));
        }
        out.push_str("MB/s counts record values, 10^6 bytes per MB.\n");
        out
    }
}

fn rates(records: u64, bytes: u64, seconds: f64) -> Option<(f64, f64)> {
    (seconds > 0.0).then(|| (records as f64 / seconds, bytes as f64 / seconds / 1e6))
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": h.value_at_percentile(50.0),
        "p90": h.value_at_percentile(90.0),
        "p99": h.value_at_percentile(99.0),
        "p99_9": h.value_at_percentile(99.9),
        "max": h.max(),
        "mean": h.mean(),
    })
}

/// `850` → `850 µs`, `1234` → `1.23 ms`, `1_500_000` → `1.50 s`.
pub fn human_us(us: u64) -> String {
    match us {
        0..1000 => format!("{us} µs"),
        1000..1_000_000 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// A live line on stderr: records produced and consumed, and their rates over the last second.
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(
        enabled: bool,
        produced: Arc<AtomicU64>,
        consumed: Arc<AtomicU64>,
        total: Option<u64>,
    ) -> Self {
        let bar = if enabled && std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut last = (Instant::now(), 0u64, 0u64);
            loop {
                tick.tick().await;
                let (p, c) = (
                    produced.load(Ordering::Relaxed),
                    consumed.load(Ordering::Relaxed),
                );
                let secs = last.0.elapsed().as_secs_f64().max(1e-3);
                let (pr, cr) = ((p - last.1) as f64 / secs, (c - last.2) as f64 / secs);
                let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
                shown.set_message(format!(
                    "produced {p}{of} ({pr:.0}/s)   consumed {c} ({cr:.0}/s)"
                ));
                shown.tick();
                if last.0.elapsed() >= Duration::from_secs(1) {
                    last = (Instant::now(), p, c);
                }
            }
        });
        Self { bar, task }
    }

    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
