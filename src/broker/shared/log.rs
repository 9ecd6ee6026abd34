//! A shared group's state log (`shared-groups/<group>.log`) and its group commit.
//!
//! Every hand-out or settle call changes a few cells of the group's windows under the group's
//! lock and appends them as one frame ([`encode_frame`]) to the log's pending buffer; then,
//! with the lock released, it waits until the log is durable up to its frame. One flusher
//! task per group writes whatever frames are pending at once and fsyncs them with one
//! `fdatasync`, so calls that arrive while a write is in progress share the next one (a group
//! commit, like the record batcher's). The log is in the order of the changes, so a durable
//! frame means every earlier one is durable too.
//!
//! A frame: `u32 length | u32 crc32c | payload`, the payload a varint sequence number, the
//! Unix time in ns it was made at (8 bytes), then per changed window: topic, partition,
//! position, next, the members it names, and runs of consecutive offsets whose cells are the
//! same (state, deliveries, member, time as a zigzag delta in ns from the frame's time,
//! dead-letter offset, reason). Done cells are runs of state 0.
//!
//! The snapshot (`<group>.json`, see `store`) records the sequence number it includes; a
//! compaction writes a new snapshot and empties the log when it passes [`COMPACT_AT`]. On
//! start, the snapshot is loaded and the frames after its sequence number are replayed; a torn
//! or corrupt tail (a crash in the middle of a write) is cut off.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::time::Instant;

use super::window::{CellView, State, Window};
use crate::sync::lock;

/// A log longer than this is compacted into the snapshot (by default).
pub const COMPACT_AT: u64 = 8 << 20;

const FRAME_HEADER: usize = 8;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Unix ns of `at`, given the pair (`now`, `now_unix`).
pub fn to_unix(at: Instant, now: Instant, now_unix: i64) -> i64 {
    if at >= now {
        now_unix.saturating_add(i64::try_from((at - now).as_nanos()).unwrap_or(i64::MAX))
    } else {
        now_unix.saturating_sub(i64::try_from((now - at).as_nanos()).unwrap_or(i64::MAX))
    }
}

/// The instant of Unix ns `at_ns` (times in the past become `now`).
pub fn from_unix(at_ns: i64, now: Instant, now_unix: i64) -> Instant {
    let ahead = at_ns.saturating_sub(now_unix);
    now + std::time::Duration::from_nanos(u64::try_from(ahead).unwrap_or(0))
}

/// Appends one frame with the dirty cells of `windows` (clearing them) to `out`; returns
/// whether there was anything to write.
pub fn encode_frame<'a>(
    seq: u64,
    windows: impl Iterator<Item = (&'a (String, u32), &'a mut Window)>,
    out: &mut Vec<u8>,
) -> bool {
    let (now, now_unix) = (Instant::now(), crate::clock::now_ns());
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    put_varint(out, seq);
    out.extend_from_slice(&now_unix.to_le_bytes());
    let mut sections = Vec::new();
    for ((topic, partition), w) in windows {
        if !w.is_dirty() {
            continue;
        }
        let (dirty, _) = w.take_dirty();
        let mut s = Vec::with_capacity(32 + dirty.len() * 4);
        put_str(&mut s, topic);
        put_varint(&mut s, u64::from(*partition));
        put_varint(&mut s, w.position());
        put_varint(&mut s, w.next());
        // Runs of equal cells; members named by their index in this section's table.
        let mut members: Vec<&str> = Vec::new();
        let mut runs: Vec<(u64, u64, CellView<'_>)> = Vec::new();
        for o in dirty {
            let v = w.view(o);
            match runs.last_mut() {
                Some((first, len, last)) if *first + *len == o && *last == v => *len += 1,
                _ => runs.push((o, 1, v)),
            }
        }
        let mut body = Vec::with_capacity(runs.len() * 12);
        let mut prev_end = 0u64;
        for (first, len, v) in &runs {
            put_varint(&mut body, first - prev_end);
            prev_end = first + len;
            put_varint(&mut body, *len);
            body.push(v.state as u8);
            put_varint(&mut body, u64::from(v.deliveries));
            let m = if v.state == State::Locked {
                match members.iter().position(|m| *m == v.member) {
                    Some(i) => i,
                    None => {
                        members.push(v.member);
                        members.len() - 1
                    }
                }
            } else {
                0
            };
            put_varint(&mut body, m as u64);
            let at = match v.state {
                State::Available | State::Locked => to_unix(v.at, now, now_unix) - now_unix,
                _ => 0,
            };
            put_varint(&mut body, zigzag(at));
            put_varint(&mut body, v.dlq_from);
            put_str(&mut body, v.reason);
        }
        put_varint(&mut s, members.len() as u64);
        for m in &members {
            put_str(&mut s, m);
        }
        put_varint(&mut s, runs.len() as u64);
        s.extend_from_slice(&body);
        sections.push(s);
    }
    if sections.is_empty() {
        out.truncate(start);
        return false;
    }
    put_varint(out, sections.len() as u64);
    for s in sections {
        out.extend_from_slice(&s);
    }
    let len = u32::try_from(out.len() - start - FRAME_HEADER).expect("a frame under 4 GiB");
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    true
}

/// Why a frame did not decode.
#[derive(Debug, thiserror::Error)]
#[error("state log frame: {0}")]
pub struct FrameError(&'static str);

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, FrameError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.b.split_first().ok_or(FrameError("cut short"))?;
            self.b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(FrameError("varint too long"))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(FrameError("cut short"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn str(&mut self) -> Result<&'a str, FrameError> {
        let n = usize::try_from(self.varint()?).map_err(|_| FrameError("length"))?;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| FrameError("a string is not UTF-8"))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        u32::try_from(self.varint()?).map_err(|_| FrameError("a number out of range"))
    }
}

/// Applies one frame's payload to `windows` (new windows start at their stored position);
/// returns its sequence number.
///
/// # Errors
/// A payload that does not decode.
pub fn apply_frame(
    payload: &[u8],
    windows: &mut HashMap<(String, u32), Window>,
    skip_through: u64,
) -> Result<u64, FrameError> {
    let (now, now_unix) = (Instant::now(), crate::clock::now_ns());
    let mut r = Reader { b: payload };
    let seq = r.varint()?;
    let base_unix = i64::from_le_bytes(r.bytes(8)?.try_into().expect("8 bytes"));
    if seq <= skip_through {
        return Ok(seq);
    }
    let sections = r.varint()?;
    for _ in 0..sections {
        let topic = r.str()?.to_string();
        let partition = r.u32()?;
        let position = r.varint()?;
        let next = r.varint()?;
        let n_members = r.varint()?;
        let mut members = Vec::new();
        for _ in 0..n_members {
            members.push(r.str()?);
        }
        let w = windows
            .entry((topic, partition))
            .or_insert_with(|| Window::new(position, now));
        let n_runs = r.varint()?;
        let mut prev_end = 0u64;
        for _ in 0..n_runs {
            let first = prev_end
                .checked_add(r.varint()?)
                .ok_or(FrameError("offset"))?;
            let len = r.varint()?;
            prev_end = first.checked_add(len).ok_or(FrameError("offset"))?;
            let state = State::from_u8(r.bytes(1)?[0]).ok_or(FrameError("state"))?;
            let deliveries = r.u32()?;
            let member = usize::try_from(r.varint()?).map_err(|_| FrameError("member"))?;
            let at = unzigzag(r.varint()?);
            let dlq_from = r.varint()?;
            let reason = r.str()?;
            let member = if state == State::Locked {
                *members.get(member).ok_or(FrameError("member index"))?
            } else {
                ""
            };
            let view = CellView {
                state,
                deliveries,
                member,
                at: from_unix(base_unix.saturating_add(at), now, now_unix),
                dlq_from,
                reason,
            };
            if len > 1 << 32 {
                return Err(FrameError("run too long"));
            }
            for o in first..prev_end {
                w.restore(o, &view);
            }
        }
        w.restore_bounds(position, next);
        w.take_dirty();
    }
    Ok(seq)
}

/// What [`replay`] read from a log.
pub struct Replayed {
    /// The last frame's sequence number (at least the snapshot's).
    pub last_seq: u64,
    /// Bytes of whole frames (the log is cut there).
    pub len: u64,
}

/// Replays the log at `path` onto `windows`, skipping frames through `snapshot_seq`, and cuts
/// off a torn tail (what a crash leaves: a short or bad last frame, or zeros to the end).
///
/// # Errors
/// I/O errors; a frame whose checksum holds but that does not decode (a bug, not a crash); a
/// frame that fails its checksum with frames after it (damage: nothing is cut).
pub fn replay(
    path: &Path,
    windows: &mut HashMap<(String, u32), Window>,
    snapshot_seq: u64,
) -> std::io::Result<Replayed> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut at = 0usize;
    let mut last_seq = snapshot_seq;
    while bytes.len() - at >= FRAME_HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            // A crash leaves a torn last frame, or zeros to the end; a bad frame with more after
            // it is damage, and cutting there would forget settles already answered.
            if at + FRAME_HEADER + len == bytes.len() || bytes[at..].iter().all(|&b| b == 0) {
                break;
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "shared group state log {} is damaged at byte {at} (a frame fails its \
                     checksum and frames follow it)",
                    path.display()
                ),
            ));
        }
        let seq = apply_frame(payload, windows, snapshot_seq)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        last_seq = last_seq.max(seq);
        at += FRAME_HEADER + len;
    }
    if at < bytes.len() {
        tracing::warn!(file = %path.display(), kept = at, cut = bytes.len() - at, "shared group state log: a torn or corrupt tail was cut off");
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(at as u64)?;
        f.sync_all()?;
    }
    Ok(Replayed {
        last_seq,
        len: at as u64,
    })
}

struct Pending {
    /// Frames not written yet.
    buf: Vec<u8>,
    /// The last sequence number handed out.
    last_seq: u64,
    /// A flusher task is running.
    flushing: bool,
    /// Bytes in the log file.
    len: u64,
    /// Set when a write or fsync failed: nothing is known about what reached the disk after
    /// the last durable frame, so every later call fails until the broker restarts.
    failed: Option<String>,
}

/// The open state log of one group, with its group commit.
pub struct StateLog {
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
    pending: Mutex<Pending>,
    /// The highest durable sequence number.
    durable: watch::Sender<u64>,
    /// A compaction is scheduled or running.
    pub compacting: AtomicBool,
}

pub fn path(dir: &Path, group: &str) -> PathBuf {
    dir.join(format!("{group}.log"))
}

impl StateLog {
    /// Opens (creating) the log at `path`, `len` bytes long, whose last frame is `last_seq`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(path: PathBuf, last_seq: u64, len: u64) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Self {
            path,
            file: Arc::new(Mutex::new(file)),
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                last_seq,
                flushing: false,
                len,
                failed: None,
            }),
            durable: watch::Sender::new(last_seq),
            compacting: AtomicBool::new(false),
        })
    }

    /// Appends a frame of the dirty cells of `windows` to the pending buffer (call it under
    /// the group's lock, so frames are in the order of the changes); returns the sequence
    /// number to wait for: this frame's, or the last one's when nothing changed.
    pub fn stage<'a>(
        &self,
        windows: impl Iterator<Item = (&'a (String, u32), &'a mut Window)>,
    ) -> u64 {
        let mut p = lock(&self.pending);
        let seq = p.last_seq + 1;
        if encode_frame(seq, windows, &mut p.buf) {
            p.last_seq = seq;
        }
        p.last_seq
    }

    /// The last sequence number staged.
    pub fn last_seq(&self) -> u64 {
        lock(&self.pending).last_seq
    }

    /// Whether the log is at least `threshold` bytes long.
    pub fn wants_compaction(&self, threshold: u64) -> bool {
        lock(&self.pending).len >= threshold
    }

    /// Waits until frame `seq` (and every earlier one) is durable, starting the flusher when
    /// none runs.
    ///
    /// # Errors
    /// Why the log failed (a write or fsync error, now or earlier).
    pub async fn wait(self: &Arc<Self>, seq: u64) -> Result<(), String> {
        let mut rx = self.durable.subscribe();
        loop {
            {
                let mut p = lock(&self.pending);
                if let Some(e) = &p.failed {
                    return Err(e.clone());
                }
                if *rx.borrow_and_update() >= seq {
                    return Ok(());
                }
                if !p.flushing {
                    p.flushing = true;
                    tokio::spawn(Arc::clone(self).flush());
                }
            }
            if rx.changed().await.is_err() {
                return Err("the state log closed".into());
            }
        }
    }

    /// The flusher: writes what is pending, fsyncs, publishes, until nothing is pending.
    async fn flush(self: Arc<Self>) {
        loop {
            let (buf, seq) = {
                let mut p = lock(&self.pending);
                if p.buf.is_empty() {
                    p.flushing = false;
                    return;
                }
                (std::mem::take(&mut p.buf), p.last_seq)
            };
            let n = buf.len() as u64;
            let file = Arc::clone(&self.file);
            let res = tokio::task::spawn_blocking(move || {
                let mut f = lock(&file);
                f.write_all(&buf)?;
                f.sync_data()
            })
            .await;
            let res = match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match res {
                Ok(()) => {
                    lock(&self.pending).len += n;
                    self.durable.send_replace(seq);
                }
                Err(e) => {
                    let why = format!(
                        "writing {}: {e}; the group's calls fail until the broker restarts",
                        self.path.display()
                    );
                    tracing::error!(error = %why, "shared group state log failed");
                    let mut p = lock(&self.pending);
                    p.failed = Some(why);
                    p.flushing = false;
                    drop(p);
                    self.durable.send_modify(|_| {});
                    return;
                }
            }
        }
    }

    /// Empties the log after a snapshot through its last frame was stored: call it with the
    /// group's lock held and everything staged durable.
    ///
    /// # Errors
    /// I/O errors (the log then fails like a failed write).
    pub fn truncate(&self) -> std::io::Result<()> {
        let res = {
            let f = lock(&self.file);
            f.set_len(0).and_then(|()| f.sync_all())
        };
        match &res {
            Ok(()) => lock(&self.pending).len = 0,
            Err(e) => {
                lock(&self.pending).failed = Some(format!(
                    "emptying {} after a compaction: {e}; the group's calls fail until the \
                     broker restarts",
                    self.path.display()
                ));
                self.durable.send_modify(|_| {});
            }
        }
        res
    }

    /// Marks the log as failed (the group was deleted under it, or its snapshot failed).
    pub fn fail(&self, why: String) {
        lock(&self.pending).failed = Some(why);
        self.durable.send_modify(|_| {});
    }

    /// Whether a compaction may start now (none scheduled); marks one scheduled.
    pub fn begin_compaction(&self, threshold: u64) -> bool {
        self.wants_compaction(threshold)
            && self
                .compacting
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::shared::SharedGroupConfig;
    use crate::broker::shared::window::SettleAction;

    #[test]
    fn frames_replay_to_the_same_windows_and_a_torn_tail_is_cut() {
        let c = SharedGroupConfig::new("g");
        let now = Instant::now();
        let mut windows: HashMap<(String, u32), Window> = HashMap::new();
        let w = windows
            .entry(("t".into(), 0))
            .or_insert_with(|| Window::new(0, now));
        for o in 0..100 {
            w.lock(o, &"a".into(), now + c.ack_timeout);
        }
        let mut log = Vec::new();
        assert!(encode_frame(1, windows.iter_mut(), &mut log));
        let w = windows.get_mut(&("t".into(), 0)).unwrap();
        for o in (0..100).filter(|o| o % 3 != 1) {
            w.settle(o, "a", &SettleAction::Accept, now, &c).unwrap();
        }
        let rel = SettleAction::Release {
            delay: None,
            reason: "r".into(),
        };
        w.settle(1, "a", &rel, now, &c).unwrap();
        w.set_dead_lettering(4, 9);
        assert!(encode_frame(2, windows.iter_mut(), &mut log));
        assert!(!encode_frame(3, windows.iter_mut(), &mut log));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.log");
        let whole = log.len();
        log.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
        std::fs::write(&p, &log).unwrap();
        let mut back = HashMap::new();
        let r = replay(&p, &mut back, 0).unwrap();
        assert_eq!((r.last_seq, r.len), (2, whole as u64));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), whole as u64);
        let (a, b) = (&windows[&("t".into(), 0)], &back[&("t".into(), 0)]);
        assert_eq!(
            (a.position(), a.next(), a.in_flight()),
            (b.position(), b.next(), b.in_flight())
        );
        let strip = |w: &Window| -> Vec<(u64, State, u32, String, String)> {
            w.cells()
                .map(|(o, v)| (o, v.state, v.deliveries, v.member.into(), v.reason.into()))
                .collect()
        };
        assert_eq!(strip(a), strip(b));
        // A frame through the snapshot's sequence number is skipped.
        let mut skipped = HashMap::new();
        assert_eq!(replay(&p, &mut skipped, 2).unwrap().last_seq, 2);
        assert!(skipped.is_empty());
        // A flipped byte in the first frame, with the second after it, is damage: replay refuses
        // and cuts nothing.
        let mut damaged = std::fs::read(&p).unwrap();
        damaged[FRAME_HEADER + 2] ^= 0x10;
        std::fs::write(&p, &damaged).unwrap();
        let err = replay(&p, &mut HashMap::new(), 0)
            .err()
            .expect("damage is refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("damaged at byte 0"), "{err}");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), whole as u64);
    }
}
