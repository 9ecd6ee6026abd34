//! Recovery of partition logs after damage, over many seeds: cut or corrupt the active segment,
//! corrupt a sealed one, delete or truncate indexes. After reopening, every record before the
//! damage reads back exactly, nothing corrupt is returned as valid, and appends go on at the right
//! offset.

use std::path::{Path, PathBuf};

use crate::storage::log::PartitionLog;
use crate::storage::{LogConfig, LogFiles, Record, StorageError};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const CONFIG: LogConfig = LogConfig {
    segment_bytes: 2048,
};

fn files() -> Arc<LogFiles> {
    Arc::new(LogFiles::new(8))
}

fn random_record(rng: &mut StdRng, offset: u64) -> Record {
    let key: Vec<u8> = (0..rng.gen_range(0..12)).map(|_| rng.r#gen()).collect();
    let value: Vec<u8> = (0..rng.gen_range(0..200)).map(|_| rng.r#gen()).collect();
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

/// Writes random batches; returns the records written.
fn fill(dir: &Path, rng: &mut StdRng) -> Vec<Record> {
    let mut log = PartitionLog::open(dir, CONFIG, &files()).unwrap();
    let mut all = Vec::new();
    let total = rng.gen_range(20..120);
    while all.len() < total {
        let n = rng.gen_range(1..8);
        let batch: Vec<Record> = (0..n)
            .map(|i| random_record(rng, (all.len() + i) as u64))
            .collect();
        log.append(&batch).unwrap();
        all.extend(batch);
    }
    all
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

/// Byte position of each record of the segment starting at `base` (relative to that file).
fn positions(records: &[Record], base: u64, end: u64) -> Vec<(u64, u64, u64)> {
    let mut pos = 0u64;
    records[base as usize..end as usize]
        .iter()
        .map(|r| {
            let start = pos;
            pos += r.encoded_len() as u64;
            (r.offset, start, pos)
        })
        .collect()
}

/// Reads every offset of `all` one by one: only `damaged` fails (closed), every other record reads
/// back exactly at its offset.
fn assert_only_damaged_fails(log: &PartitionLog, all: &[Record], damaged: u64, seed: u64) {
    for offset in 0..all.len() as u64 {
        let res = log
            .plan_read(offset, 1, u64::MAX, log.end_offset())
            .and_then(|p| p.execute());
        if offset == damaged {
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

fn check_appends_continue(dir: &Path, rng: &mut StdRng, expected_end: u64) {
    let mut log = PartitionLog::open(dir, CONFIG, &files()).unwrap();
    assert_eq!(log.end_offset(), expected_end);
    let extra = random_record(rng, expected_end);
    log.append(std::slice::from_ref(&extra)).unwrap();
    drop(log);
    let log = PartitionLog::open(dir, CONFIG, &files()).unwrap();
    let got = log
        .plan_read(expected_end, 1, u64::MAX, expected_end + 1)
        .unwrap()
        .execute()
        .unwrap();
    assert_eq!(got, vec![extra]);
}

#[test]
fn active_segment_cut_at_random_positions() {
    for seed in 0..150 {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let all = fill(dir.path(), &mut rng);
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
        let whole = positions(&all, active, all.len() as u64)
            .iter()
            .filter(|(_, _, end)| *end <= cut)
            .count() as u64;
        let log = PartitionLog::open(dir.path(), CONFIG, &files()).unwrap();
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
        check_appends_continue(dir.path(), &mut rng, expected_end);
    }
}

/// A flipped byte in the active segment is damage, not a torn tail: the damaged record's offset
/// fails closed, every other record keeps its offset, and no offset is ever given out again.
#[test]
fn active_segment_flipped_byte_costs_only_the_damaged_record() {
    for seed in 0..150 {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let dir = tempfile::tempdir().unwrap();
        let all = fill(dir.path(), &mut rng);
        let active = *segments(dir.path()).last().unwrap();
        let path = file(dir.path(), active, "log");
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.is_empty() {
            continue;
        }
        let at = rng.gen_range(0..bytes.len());
        bytes[at] ^= 1 << rng.gen_range(0..8);
        std::fs::write(&path, &bytes).unwrap();
        let damaged = positions(&all, active, all.len() as u64)
            .into_iter()
            .find(|(_, start, end)| (*start..*end).contains(&(at as u64)))
            .unwrap()
            .0;
        let log = PartitionLog::open(dir.path(), CONFIG, &files()).unwrap();
        let end = log.end_offset();
        assert!(
            end >= all.len() as u64,
            "seed {seed}: flip at byte {at}: end {end} would reuse acknowledged offsets"
        );
        let reported: Vec<_> = log.damage().map(|d| d.offsets.clone()).collect();
        assert!(
            reported.iter().any(|r| r.contains(&damaged)),
            "seed {seed}: damage at {damaged} not reported: {reported:?}"
        );
        assert_only_damaged_fails(&log, &all, damaged, seed);
        // A read across the damage returns the good records before it.
        if damaged > active {
            let got = log
                .plan_read(active, usize::MAX, u64::MAX, end)
                .unwrap()
                .execute()
                .unwrap();
            assert_eq!(got, all[active as usize..damaged as usize], "seed {seed}");
        }
        drop(log);
        check_appends_continue(dir.path(), &mut rng, end);
    }
}

#[test]
fn sealed_segment_damage_fails_closed_and_spares_the_rest() {
    let mut tested = 0;
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(2000 + seed);
        let dir = tempfile::tempdir().unwrap();
        let all = fill(dir.path(), &mut rng);
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
        let damaged = positions(&all, base, next)
            .into_iter()
            .find(|(_, start, end)| (*start..*end).contains(&(at as u64)))
            .unwrap()
            .0;
        let log = PartitionLog::open(dir.path(), CONFIG, &files()).unwrap();
        assert_eq!(
            log.end_offset(),
            all.len() as u64,
            "seed {seed}: sealed data is never cut"
        );
        assert_only_damaged_fails(&log, &all, damaged, seed);
        drop(log);
        check_appends_continue(dir.path(), &mut rng, all.len() as u64);
    }
    assert!(tested > 100, "only {tested} seeds had sealed segments");
}

#[test]
fn missing_or_truncated_indexes_are_rebuilt() {
    for seed in 0..150 {
        let mut rng = StdRng::seed_from_u64(3000 + seed);
        let dir = tempfile::tempdir().unwrap();
        let all = fill(dir.path(), &mut rng);
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
        let log = PartitionLog::open(dir.path(), CONFIG, &files()).unwrap();
        assert_eq!(log.end_offset(), all.len() as u64, "seed {seed}");
        let (got, err) = read_one_by_one(&log);
        assert!(
            err.is_none(),
            "seed {seed}: damaged {which} was not rebuilt: {err:?}"
        );
        assert_eq!(got, all, "seed {seed}");
        drop(log);
        check_appends_continue(dir.path(), &mut rng, all.len() as u64);
    }
}
