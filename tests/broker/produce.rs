//! Producing: placement, offsets, what polling then returns, and what survives a restart.

use obelisk::broker::ConsumedRecord;

use crate::common::broker::{TestBroker, rec};
use crate::{poll_req, sorted};

/// 20 keyed records and one for "user-123" on "orders" (4 partitions, auto-created); what a new
/// group polls afterwards.
async fn orders() -> (TestBroker, Vec<ConsumedRecord>) {
    let b = TestBroker::open().await;
    let acks = b
        .produce(
            "orders",
            (0..20)
                .map(|i| rec(&format!("k{i}"), &format!("v{i}")))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(acks.len(), 20);
    b.produce("orders", vec![rec("user-123", "x")])
        .await
        .unwrap();
    let first = sorted(b.poll(poll_req("orders", "g")).await.unwrap());
    assert_eq!(first.len(), 21);
    (b, first)
}

/// Commits everything `first` holds for group "g".
async fn commit_all(b: &TestBroker, first: &[ConsumedRecord]) {
    let commit: Vec<(u32, u64)> = (0..4)
        .map(|p| (p, first.iter().filter(|r| r.partition == p).count() as u64))
        .collect();
    b.commit("orders", "g", &commit).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_placement_is_fnv1a_like_the_original() {
    let b = TestBroker::open().await;
    // "user-123" goes to partition 3 of 4.
    let a = b
        .produce("orders", vec![rec("user-123", "x")])
        .await
        .unwrap();
    assert_eq!(a[0].partition, 3);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_without_commit_returns_the_same_records() {
    let (b, first) = orders().await;
    let again = sorted(b.poll(poll_req("orders", "g")).await.unwrap());
    assert_eq!(first, again, "poll without commit returns the same records");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_dense_from_zero_per_partition() {
    let (b, first) = orders().await;
    for p in 0..4 {
        let offs: Vec<u64> = first
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.record.offset)
            .collect();
        assert_eq!(offs, (0..offs.len() as u64).collect::<Vec<_>>());
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_moves_the_group_past_what_it_read() {
    let (b, first) = orders().await;
    commit_all(&b, &first).await;
    assert!(b.poll(poll_req("orders", "g")).await.unwrap().is_empty());
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_and_records_survive_a_restart() {
    let (b, first) = orders().await;
    commit_all(&b, &first).await;
    let b = b.restart().await;
    assert!(
        b.poll(poll_req("orders", "g")).await.unwrap().is_empty(),
        "commit survived"
    );
    let other = sorted(b.poll(poll_req("orders", "fresh")).await.unwrap());
    assert_eq!(
        other, first,
        "every record survived the restart, byte for byte"
    );
    let desc = b.describe_group("g").unwrap();
    assert_eq!(desc.iter().map(|g| g.lag).sum::<u64>(), 0);
    b.shutdown().await;
}

/// In `fsync` mode both writers (a thread per partition, the default on this runtime, and a
/// runtime task using the blocking pool) acknowledge every record of concurrent produces once,
/// at dense offsets, and every acknowledged record is there after a restart (shutdown waits for
/// the writer to finish what was queued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_fsync_writers_keep_every_acknowledged_record_over_a_restart() {
    use obelisk::broker::FsyncWriter;
    for writer in [FsyncWriter::Thread, FsyncWriter::Task] {
        let b = TestBroker::open_with(|c| c.batch.fsync_writer = writer).await;
        b.create("w", 2).await;
        let produces = (0..16).map(|i| {
            let records = (0..5)
                .map(|j| rec(&format!("k{}", (i + j) % 7), &format!("v{i}-{j}")))
                .collect();
            b.produce("w", records)
        });
        let acks: Vec<_> = futures_util::future::join_all(produces)
            .await
            .into_iter()
            .flat_map(|r| r.expect("acknowledged"))
            .collect();
        assert_eq!(acks.len(), 80, "{writer:?}");
        for p in 0..2 {
            let mut offsets: Vec<u64> = acks
                .iter()
                .filter(|a| a.partition == p)
                .map(|a| a.offset)
                .collect();
            offsets.sort_unstable();
            let dense: Vec<u64> = (0..offsets.len() as u64).collect();
            assert_eq!(offsets, dense, "{writer:?}: partition {p}");
        }
        let b = b.restart().await;
        let mut req = poll_req("w", "g");
        req.limits.max_records = 1000;
        let got = b.poll(req).await.unwrap();
        assert_eq!(got.len(), 80, "{writer:?}: all survive the restart");
        b.shutdown().await;
    }
}
