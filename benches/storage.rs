//! Criterion benchmarks of the storage core through the Broker, in-process: appends (100 B and
//! 1 KiB records, batches of 1 and 100, `interval` and `fsync` durability) and reads (ring buffer
//! and disk), and (formatv2) the on-disk formats side by side: v1 frames against v2 batches
//! plain, lz4 and zstd (4 producers, batches of 100, both durability modes). Run with
//! `cargo bench --bench storage`.

use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use obelisk::broker::{
    Broker, BrokerConfig, Durability, FetchRequest, ProduceRecord, ReadLimits, TopicConfig,
};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn open(rt: &Runtime, dir: &std::path::Path, durability: Durability, ring: usize) -> Broker {
    open_format(rt, dir, durability, ring, Format::V2("none"))
}

/// formatv2: which on-disk format (and compression) a bench broker writes.
#[derive(Clone, Copy)]
enum Format {
    V1,
    V2(&'static str),
}

fn open_format(
    rt: &Runtime,
    dir: &std::path::Path,
    durability: Durability,
    ring: usize,
    format: Format,
) -> Broker {
    rt.block_on(async {
        let broker = Broker::open(
            BrokerConfig {
                data_dir: dir.to_path_buf(),
                durability,
                ring_buffer_bytes: ring,
                write_v1: matches!(format, Format::V1),
                ..BrokerConfig::default()
            },
            rt.handle(),
        )
        .expect("broker opens");
        let compression = match format {
            Format::V1 => "none",
            Format::V2(c) => c,
        };
        broker
            .create_topic(
                "b",
                TopicConfig {
                    partitions: 4,
                    retention_ms: 0,
                    retention_bytes: 0,
                    compression: compression.parse().expect("a codec"),
                },
            )
            .await
            .expect("topic");
        broker
    })
}

/// formatv2: v1 against v2 (plain, lz4, zstd) appends of 4 producers x 8 batches of 100 x 100 B.
fn formats(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("format");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for (mode, durability) in [
        ("interval", Durability::Interval(Duration::from_millis(100))),
        ("fsync", Durability::Fsync),
    ] {
        for (name, format) in [
            ("v1", Format::V1),
            ("v2", Format::V2("none")),
            ("v2-lz4", Format::V2("lz4")),
            ("v2-zstd", Format::V2("zstd")),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let broker = open_format(&rt, dir.path(), durability, 4 << 20, format);
            let (producers, in_flight, per_batch) = (4, 8, 100);
            group.throughput(Throughput::Elements(
                (producers * in_flight * per_batch) as u64,
            ));
            group.bench_function(BenchmarkId::new(mode, name), |b| {
                b.to_async(&rt).iter(|| {
                    let broker = broker.clone();
                    async move {
                        let mut tasks = Vec::new();
                        for p in 0..producers {
                            for _ in 0..in_flight {
                                let broker = broker.clone();
                                let recs = batch(100, per_batch, Some(p as u32));
                                tasks.push(tokio::spawn(async move {
                                    broker.produce("b", recs).await.expect("ack")
                                }));
                            }
                        }
                        for t in tasks {
                            t.await.expect("task");
                        }
                    }
                });
            });
            rt.block_on(broker.shutdown());
        }
    }
    group.finish();
}

fn batch(size: usize, n: usize, partition: Option<u32>) -> Vec<ProduceRecord> {
    let value = Bytes::from(vec![b'x'; size]);
    (0..n)
        .map(|_| ProduceRecord {
            value: value.clone(),
            partition,
            ..ProduceRecord::default()
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for (mode, durability) in [
        ("interval", Durability::Interval(Duration::from_millis(100))),
        ("fsync", Durability::Fsync),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(&rt, dir.path(), durability, 4 << 20);
        for size in [100usize, 1024] {
            for per_batch in [1usize, 100] {
                // 4 producers, each with 8 batches in flight: what group commit is for.
                let producers = 4;
                let in_flight = 8;
                let records = (producers * in_flight * per_batch) as u64;
                group.throughput(Throughput::Elements(records));
                let id = BenchmarkId::new(mode, format!("{size}B/batch{per_batch}"));
                group.bench_function(id, |b| {
                    b.to_async(&rt).iter(|| {
                        let broker = broker.clone();
                        async move {
                            let mut tasks = Vec::new();
                            for p in 0..producers {
                                for _ in 0..in_flight {
                                    let broker = broker.clone();
                                    let recs = batch(size, per_batch, Some(p as u32));
                                    tasks.push(tokio::spawn(async move {
                                        broker.produce("b", recs).await.expect("ack")
                                    }));
                                }
                            }
                            for t in tasks {
                                t.await.expect("task");
                            }
                        }
                    });
                });
            }
        }
        rt.block_on(broker.shutdown());
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("read");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let dir = tempfile::tempdir().expect("tempdir");
    // A small ring (1 MiB) so old offsets come from disk and recent ones from memory.
    let broker = open(
        &rt,
        dir.path(),
        Durability::Interval(Duration::from_millis(100)),
        1 << 20,
    );
    let total = 200_000u64;
    rt.block_on(async {
        for _ in 0..total / 1000 {
            broker
                .produce("b", batch(100, 1000, Some(0)))
                .await
                .expect("ack");
        }
    });
    let per_read = 1000usize;
    for (name, offset) in [("ring", total - per_read as u64), ("disk", 0)] {
        group.throughput(Throughput::Elements(per_read as u64));
        group.bench_function(BenchmarkId::new(name, "100B/1000"), |b| {
            b.to_async(&rt).iter(|| {
                let broker = broker.clone();
                async move {
                    let got = broker
                        .fetch(FetchRequest {
                            topic: "b".into(),
                            partition: 0,
                            offset,
                            limits: ReadLimits {
                                max_records: per_read,
                                max_bytes: 16 << 20,
                                max_wait: Duration::ZERO,
                            },
                        })
                        .await
                        .expect("fetch");
                    assert_eq!(got.records.len(), per_read);
                }
            });
        });
    }
    rt.block_on(broker.shutdown());
    group.finish();
}

criterion_group!(benches, append, read, formats);
criterion_main!(benches);
