//! A filesystem that fills up: writes fail as I/O errors (never a signal), nothing unstored is
//! acknowledged, the broker restarts on the full disk, and partitions take writes again on their
//! own once space is freed.
//!
//! The test mounts a small tmpfs of its own; where it cannot (no privilege to mount), it says so
//! and passes without running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tonic::Code;

use super::child::{self, Options, PATIENCE};
use super::{Grpc, create_topic, read_range, try_produce};

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Self { mount, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Takes `bytes` of the filesystem in a file, to be given back later.
fn take_space(path: &Path, bytes: usize) {
    std::fs::write(path, vec![0xab; bytes]).expect("the filler fits");
}

/// Produces 1 KiB records until the broker refuses; returns the acknowledged (offset, value)
/// pairs and the refusal.
async fn produce_until_refused(
    c: &mut Grpc,
    from: &mut u64,
) -> (Vec<(u64, Vec<u8>)>, tonic::Status) {
    let mut acked = Vec::new();
    loop {
        let values: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                let mut v = format!("rec-{:08}-", *from + i).into_bytes();
                v.resize(1024, b'.');
                v
            })
            .collect();
        match try_produce(c, "t", values.clone()).await {
            Ok(offsets) => {
                *from += values.len() as u64;
                acked.extend(offsets.into_iter().zip(values));
            }
            Err(e) => return (acked, e),
        }
        assert!(acked.len() < 1_000_000, "the disk never filled up");
    }
}

async fn assert_all_readable(c: &mut Grpc, acked: &[(u64, Vec<u8>)]) {
    let Some(end) = acked.last().map(|(o, _)| o + 1) else {
        return;
    };
    let got = read_range(c, "t", 0, 0, end).await;
    assert_eq!(
        got.len(),
        acked.len(),
        "every acknowledged record reads back"
    );
    for (r, (offset, value)) in got.iter().zip(acked) {
        assert!(
            r.offset == *offset && r.value.as_ref() == value.as_slice(),
            "offset {offset} read back as offset {} with other bytes",
            r.offset
        );
    }
}

/// Frees the filler's space and waits for a produce to succeed: it lands right after the last ack,
/// so nothing unacknowledged became visible.
async fn free_and_produce(c: &mut Grpc, filler: &Path, acked: &[(u64, Vec<u8>)]) -> u64 {
    std::fs::remove_file(filler).expect("filler removed");
    let offset = produce_eventually(c).await;
    assert_eq!(
        offset,
        acked.len() as u64,
        "offsets continue after the last ack"
    );
    offset
}

async fn produce_eventually(c: &mut Grpc) -> u64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match try_produce(c, "t", vec![b"after".to_vec()]).await {
            Ok(offsets) => return offsets[0],
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the partition never took writes again: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_an_error_the_broker_survives_and_recovers_from() {
    let disk = match SmallDisk::mount("6m") {
        Ok(d) => d,
        Err(why) => {
            eprintln!(
                "SKIPPED a_full_disk_is_an_error_the_broker_survives_and_recovers_from: cannot mount a tmpfs here ({why})"
            );
            return;
        }
    };
    let data = disk.mount.join("data");
    let options = Options {
        flags: vec!["--segment-bytes".into(), "65536".into()],
        ..Options::default()
    };
    let mut broker = child::start(&data, &options).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 1).await;
    let filler = disk.mount.join("filler");
    take_space(&filler, 2 << 20);
    let mut next = 0u64;

    // 1. Fill the disk: writes fail cleanly, the broker stays up, what was acked stays readable.
    let (mut acked, refusal) = produce_until_refused(&mut c, &mut next).await;
    assert!(!acked.is_empty(), "some records fit");
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    assert!(
        broker.is_running(),
        "a full disk is an error, not a crash; the log:\n{}",
        broker.log()
    );
    let (code, ready) = broker.http_json("/health/ready").await;
    assert_eq!(code, 503, "a read-only partition is not ready: {ready}");
    assert_all_readable(&mut c, &acked).await;
    // A topic created on the full disk is created whole or not at all.
    let created = c
        .create_topic(obelisk::proto::CreateTopicRequest {
            name: "late".into(),
            config: None,
        })
        .await;
    let leftovers: Vec<_> = std::fs::read_dir(data.join("topics"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('.') || (created.is_err() && n == "late"))
        .collect();
    assert!(leftovers.is_empty(), "a failed creation left {leftovers:?}");
    if let Err(e) = &created {
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }

    // 2. Free space: the partition comes back on its own, continuing right after the acks.
    let offset = free_and_produce(&mut c, &filler, &acked).await;
    acked.push((offset, b"after".to_vec()));
    next = offset + 1;
    let (code, _) = broker.http_json("/health/ready").await;
    assert_eq!(code, 200, "ready again");

    // 3. Full again, killed, and restarted on the full disk: it starts, serves reads, and once
    //    space is freed takes writes.
    take_space(&filler, 1 << 20);
    let (more, _) = produce_until_refused(&mut c, &mut next).await;
    acked.extend(more);
    broker.kill9();
    let broker = child::start(&data, &options).await;
    let mut c = broker.client().await;
    assert_all_readable(&mut c, &acked).await;
    free_and_produce(&mut c, &filler, &acked).await;
    broker.stop().await;
}
