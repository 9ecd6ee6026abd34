//! Recovery of partition logs after damage, over many seeds: cut or corrupt the active segment,
//! corrupt a sealed one, delete or truncate indexes. After reopening, every record before the
//! damage reads back exactly, nothing corrupt is returned as valid, and appends go on at the right
//! offset.

use std::path::{Path, PathBuf};

use crate::storage::batch::{BatchMeta, Compression, Encoder};
use crate::storage::log::PartitionLog;
use crate::storage::{LogConfig, LogFiles, Record, StorageError};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// The formats every test runs over: v1 records, v2 batches plain and zstd-compressed.
const FORMATS: [LogConfig; 3] = [
    LogConfig {
        segment_bytes: 2048,
        compression: Compression::None,
        write_v1: true,
    },
    LogConfig {
        segment_bytes: 2048,
        compression: Compression::None,
        write_v1: false,
    },
    LogConfig {
        segment_bytes: 2048,
        compression: Compression::Zstd,
        write_v1: false,
    },
];

fn files() -> Arc<LogFiles> {
    Arc::new(LogFiles::new(8))
}

fn random_record(rng: &mut StdRng, offset: u64) -> Record {
    let key: Vec<u8> = (0..rng.gen_range(0..12)).map(|_| rng.r#gen()).collect();
    let len = rng.gen_range(0..200);
    let value: Vec<u8> = if rng.gen_bool(0.5) {
        (0..len).map(|_| rng.r#gen()).collect()
    } else {
        (0..len).map(|i| b"compressible "[i % 13]).collect()
    };
    let headers = if rng.gen_bool(0.3) {
        vec![("h".to_string(), Bytes::from(vec![rng.r#gen::<u8>(); 3]))]
    } else {
        Vec::new()
    };
    Record {
        offset,
        timestamp: rng.r#gen(),
        key: key.into(),
        value: value.into(),
        headers,
    }
}

/// What a test wrote: the records, and the appends (first offset, count) they were written in.
struct Written {
    records: Vec<Record>,
    appends: Vec<(u64, usize)>,
}

/// Writes random batches; returns the records written.
fn fill(dir: &Path, rng: &mut StdRng, config: LogConfig) -> Written {
    let mut log = PartitionLog::open(dir, config, &files()).unwrap();
    let mut all = Vec::new();
    let mut appends = Vec::new();
    let total = rng.gen_range(20..120);
    while all.len() < total {
        let n = rng.gen_range(1..8);
        let batch: Vec<Record> = (0..n)
            .map(|i| random_record(rng, (all.len() + i) as u64))
            .collect();
        log.append(&batch).unwrap();
        appends.push((all.len() as u64, n));
        all.extend(batch);
    }
    Written {
        records: all,
        appends,
    }
}

/// Segment bases in order, from the file names.
fn segments(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn file(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// Reads offsets one at a time from the start; returns what read back, stopping at the first
/// error (which is returned too).
fn read_one_by_one(log: &PartitionLog) -> (Vec<Record>, Option<StorageError>) {
    let mut out = Vec::new();
    for offset in log.start_offset()..log.end_offset() {
        match log
            .plan_read(offset, 1, u64::MAX, log.end_offset())
            .and_then(|p| p.execute())
        {
            Ok(mut r) => {
                assert_eq!(r.len(), 1);
                out.push(r.remove(0));
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// Byte span of the frame holding each record of the segment starting at `base` (relative to
/// that file): the record's own in v1, its batch's in v2.
fn positions(w: &Written, base: u64, end: u64, config: LogConfig) -> Vec<(u64, u64, u64)> {
    let mut pos = 0u64;
    let mut out = Vec::new();
    for &(first, n) in w.appends.iter().filter(|(f, _)| (base..end).contains(f)) {
        let records = &w.records[first as usize..first as usize + n];
        if config.write_v1 {
            for r in records {
                let start = pos;
                pos += r.encoded_len() as u64;
                out.push((r.offset, start, pos));
            }
        } else {
            let mut buf = Vec::new();
            let len =
                Encoder::default().encode(records, config.compression, &BatchMeta::NONE, &mut buf)
                    as u64;
            out.extend(records.iter().map(|r| (r.offset, pos, pos + len)));
            pos += len;
        }
    }
    out
}

/// The offsets whose frame holds byte `at` of the segment starting at `base`.
fn hit(w: &Written, base: u64, end: u64, config: LogConfig, at: u64) -> std::ops::Range<u64> {
    let hits: Vec<u64> = positions(w, base, end, config)
        .into_iter()
        .filter(|(_, start, end)| (*start..*end).contains(&at))
        .map(|(o, _, _)| o)
        .collect();
    hits[0]..hits[hits.len() - 1] + 1
}

/// Reads every offset of `all` one by one: only `damaged` fails (closed), every other record reads
/// back exactly at its offset.
fn assert_only_damaged_fails(
    log: &PartitionLog,
    all: &[Record],
    damaged: &std::ops::Range<u64>,
    seed: u64,
) {
    for offset in 0..all.len() as u64 {
        let res = log
            .plan_read(offset, 1, u64::MAX, log.end_offset())
            .and_then(|p| p.execute());
        if damaged.contains(&offset) {
            assert!(
                matches!(
                    res,
                    Err(StorageError::Corrupt { .. } | StorageError::Damaged { .. })
                ),
                "seed {seed}: damaged offset {offset} gave {res:?}"
            );
        } else {
            assert_eq!(
                res.unwrap(),
                vec![all[offset as usize].clone()],
                "seed {seed} offset {offset}"
            );
        }
    }
}

fn check_appends_continue(dir: &Path, rng: &mut StdRng, expected_end: u64, config: LogConfig) {
    let mut log = PartitionLog::open(dir, config, &files()).unwrap();
    assert_eq!(log.end_offset(), expected_end);
    let extra = random_record(rng, expected_end);
    log.append(std::slice::from_ref(&extra)).unwrap();
    drop(log);
    let log = PartitionLog::open(dir, config, &files()).unwrap();
    let got = log
        .plan_read(expected_end, 1, u64::MAX, expected_end + 1)
        .unwrap()
        .execute()
        .unwrap();
    assert_eq!(got, vec![extra]);
}

#[test]
fn active_segment_cut_at_random_positions() {
    for (seed, config) in (0..150).flat_map(|s| FORMATS.map(|c| (s, c))) {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let w = fill(dir.path(), &mut rng, config);
        let all = &w.records;
        let active = *segments(dir.path()).last().unwrap();
        let path = file(dir.path(), active, "log");
        let len = std::fs::metadata(&path).unwrap().len();
        let cut = rng.gen_range(0..=len);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let whole = positions(&w, active, all.len() as u64, config)
            .iter()
            .filter(|(_, _, end)| *end <= cut)
            .count() as u64;
        let log = PartitionLog::open(dir.path(), config, &files()).unwrap();
        let expected_end = active + whole;
        assert_eq!(
            log.end_offset(),
            expected_end,
            "seed {seed}: cut at {cut} of {len}"
        );
        let (got, err) = read_one_by_one(&log);
        assert!(err.is_none(), "seed {seed}: {err:?}");
        assert_eq!(got, all[..expected_end as usize], "seed {seed}");
        drop(log);
        check_appends_continue(dir.path(), &mut rng, expected_end, config);
    }
}

/// A flipped byte in the active segment is damage, not a torn tail: the damaged record's offset
/// fails closed, every other record keeps its offset, and no offset is ever given out again.
#[test]
fn active_segment_flipped_byte_costs_only_the_damaged_record() {
    for (seed, config) in (0..150).flat_map(|s| FORMATS.map(|c| (s, c))) {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let dir = tempfile::tempdir().unwrap();
        let w = fill(dir.path(), &mut rng, config);
        let all = &w.records;
        let active = *segments(dir.path()).last().unwrap();
        let path = file(dir.path(), active, "log");
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.is_empty() {
            continue;
        }
        let at = rng.gen_range(0..bytes.len());
        bytes[at] ^= 1 << rng.gen_range(0..8);
        std::fs::write(&path, &bytes).unwrap();
        let damaged = hit(&w, active, all.len() as u64, config, at as u64);
        let log = PartitionLog::open(dir.path(), config, &files()).unwrap();
        let end = log.end_offset();
        assert!(
            end >= all.len() as u64,
            "seed {seed}: flip at byte {at}: end {end} would reuse acknowledged offsets"
        );
        let reported: Vec<_> = log.damage().map(|d| d.offsets.clone()).collect();
        assert!(
            reported.iter().any(|r| r.contains(&damaged.start)),
            "seed {seed}: damage at {damaged:?} not reported: {reported:?}"
        );
        assert_only_damaged_fails(&log, all, &damaged, seed);
        // A read across the damage returns the good records before it.
        if damaged.start > active {
            let got = log
                .plan_read(active, usize::MAX, u64::MAX, end)
                .unwrap()
                .execute()
                .unwrap();
            assert_eq!(
                got,
                all[active as usize..damaged.start as usize],
                "seed {seed}"
            );
        }
        drop(log);
        check_appends_continue(dir.path(), &mut rng, end, config);
    }
}

#[test]
fn sealed_segment_damage_fails_closed_and_spares_the_rest() {
    let mut tested = 0;
    for (seed, config) in (0..200).flat_map(|s| FORMATS.map(|c| (s, c))) {
        let mut rng = StdRng::seed_from_u64(2000 + seed);
        let dir = tempfile::tempdir().unwrap();
        let w = fill(dir.path(), &mut rng, config);
        let all = &w.records;
        let bases = segments(dir.path());
        if bases.len() < 2 {
            continue;
        }
        tested += 1;
        let i = rng.gen_range(0..bases.len() - 1);
        let (base, next) = (bases[i], bases[i + 1]);
        let path = file(dir.path(), base, "log");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = rng.gen_range(0..bytes.len());
        bytes[at] ^= 1 << rng.gen_range(0..8);
        std::fs::write(&path, &bytes).unwrap();
        let damaged = hit(&w, base, next, config, at as u64);
        let log = PartitionLog::open(dir.path(), config, &files()).unwrap();
        assert_eq!(
            log.end_offset(),
            all.len() as u64,
            "seed {seed}: sealed data is never cut"
        );
        assert_only_damaged_fails(&log, all, &damaged, seed);
        drop(log);
        check_appends_continue(dir.path(), &mut rng, all.len() as u64, config);
    }
    assert!(tested > 300, "only {tested} seeds had sealed segments");
}

#[test]
fn missing_or_truncated_indexes_are_rebuilt() {
    for (seed, config) in (0..150).flat_map(|s| FORMATS.map(|c| (s, c))) {
        let mut rng = StdRng::seed_from_u64(3000 + seed);
        let dir = tempfile::tempdir().unwrap();
        let w = fill(dir.path(), &mut rng, config);
        let all = &w.records;
        let bases = segments(dir.path());
        let base = bases[rng.gen_range(0..bases.len())];
        let which = ["index", "timeindex"][rng.gen_range(0..2)];
        let path = file(dir.path(), base, which);
        match rng.gen_range(0..3) {
            0 => {
                let _ = std::fs::remove_file(&path);
            }
            1 => {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .unwrap();
                f.set_len(rng.gen_range(0..=len)).unwrap();
            }
            _ => {
                // A stale index: entries that point at the wrong places.
                let mut bytes = std::fs::read(&path).unwrap_or_default();
                for b in bytes.iter_mut().take(64) {
                    *b = rng.r#gen();
                }
                std::fs::write(&path, &bytes).unwrap();
            }
        }
        let log = PartitionLog::open(dir.path(), config, &files()).unwrap();
        assert_eq!(log.end_offset(), all.len() as u64, "seed {seed}");
        let (got, err) = read_one_by_one(&log);
        assert!(
            err.is_none(),
            "seed {seed}: damaged {which} was not rebuilt: {err:?}"
        );
        assert_eq!(&got, all, "seed {seed}");
        drop(log);
        check_appends_continue(dir.path(), &mut rng, all.len() as u64, config);
    }
}
