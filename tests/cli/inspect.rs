//! `inspect` on a clean data directory and on one with a flipped byte; it must change nothing.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{assert_ok, json_lines, obelisk, start, stderr, stdout, with_server};

/// The `.log` files under a data directory.
fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every file's bytes under `dir`, to show a command changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_passes_clean_data_and_reports_a_flipped_byte() {
    let (dir, server, url) = start().await;
    let input: String = (0..200)
        .map(|i| format!("key-{i}:value number {i}\n"))
        .collect();
    assert_ok(
        &obelisk(
            with_server(&url, &["produce", "orders", "--key-separator", ":"]),
            input.as_bytes(),
        )
        .await,
    );
    assert_ok(
        &obelisk(
            with_server(&url, &["consume", "orders", "--group", "g", "--count", "5"]),
            b"",
        )
        .await,
    );
    server.stop().await;
    let data = dir.path().to_str().unwrap().to_string();

    let clean = obelisk(vec!["inspect".into(), data.clone(), "--json".into()], b"").await;
    assert_ok(&clean);
    let report: Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let parts = report["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 4);
    assert_eq!(
        parts
            .iter()
            .map(|p| p["records"].as_u64().unwrap())
            .sum::<u64>(),
        200
    );
    assert!(
        parts
            .iter()
            .all(|p| p["status"] == "ok" && p["first_offset"] == 0),
        "{report}"
    );
    let text = obelisk(vec!["inspect".into(), data.clone()], b"").await;
    assert_ok(&text);
    assert!(
        stdout(&text).contains("no damage found"),
        "{}",
        stdout(&text)
    );
    let records = obelisk(
        vec![
            "inspect".into(),
            data.clone(),
            "--records".into(),
            "--json".into(),
            "--topic".into(),
            "orders".into(),
        ],
        b"",
    )
    .await;
    assert_ok(&records);
    let dumped = json_lines(&records);
    assert_eq!(dumped.len(), 200);
    assert!(
        dumped
            .iter()
            .any(|r| r["key"] == "key-7" && r["value"] == "value number 7")
    );

    // Flip one byte in the middle of the largest log, after the clean shutdown.
    let log = logs(dir.path())
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();
    let before = snapshot(dir.path());
    let damaged = obelisk(vec!["inspect".into(), data.clone()], b"").await;
    assert_eq!(damaged.status.code(), Some(3), "{}", stdout(&damaged));
    let out = stdout(&damaged);
    let line = out
        .lines()
        .find(|l| l.starts_with("damage: "))
        .unwrap_or_else(|| panic!("no damage line in {out}"));
    assert!(
        line.contains(log.to_str().unwrap()) && line.contains(" at byte "),
        "{line}"
    );
    assert!(out.contains("DAMAGED"), "{out}");
    assert!(
        stderr(&damaged).starts_with("error: 1 damaged place"),
        "{}",
        stderr(&damaged)
    );
    assert_eq!(snapshot(dir.path()), before, "inspect is read-only");

    let not_data = obelisk(vec!["inspect".into(), format!("{data}/topics/orders")], b"").await;
    assert_eq!(not_data.status.code(), Some(1));
    assert!(
        stderr(&not_data).contains("is it an Obelisk data directory?"),
        "{}",
        stderr(&not_data)
    );
}

/// formatv2: `inspect` verifies both on-disk formats: the checked-in v1 and v2 data directories
/// check out, with every record, and say which format (and compression) their frames are in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_verifies_the_v1_and_v2_fixtures() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format");
    for (version, records, v1, v2, compressed) in
        [("v1", 101u64, 101u64, 0u64, 0u64), ("v2", 240, 0, 16, 8)]
    {
        let data = fixtures.join(version);
        let before = snapshot(&data);
        let out = obelisk(
            vec![
                "inspect".into(),
                data.to_str().unwrap().into(),
                "--json".into(),
            ],
            b"",
        )
        .await;
        assert_ok(&out);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], true, "{version}: {report}");
        let parts = report["partitions"].as_array().unwrap();
        let sum = |field: &str| {
            parts
                .iter()
                .map(|p| p[field].as_u64().unwrap())
                .sum::<u64>()
        };
        assert_eq!(
            (
                sum("records"),
                sum("v1_records"),
                sum("v2_batches"),
                sum("compressed_batches")
            ),
            (records, v1, v2, compressed),
            "{version}: {report}"
        );
        assert_eq!(snapshot(&data), before, "inspect is read-only");
    }
}
