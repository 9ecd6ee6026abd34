//! Importing the original Obelisk's data directory into a broker, keeping offsets.
//!
//! The original keeps `<src>/<topic>/partition-<N>.log` (the frames exactly as on the wire) with
//! `partition-<N>.idx` (one i64 LE byte position per record: entry i is offset i), and consumer
//! offsets in `<src>/../consumers/<id>.json`. It has no checksums, so everything is validated
//! before anything is written: every frame whole and decodable, of the topic its directory names,
//! and every index entry pointing exactly at its frame, in order, covering the log. Damage is
//! reported with the file and byte position, and nothing is imported.
//!
//! Each topic is then created with (highest N) + 1 partitions and each partition's records are
//! produced in order with an explicit partition, so offsets, timestamps, keys and values are the
//! original's. Consumer files become consumer groups (the file stem is the group name) with the
//! same committed offsets. If a write fails part-way, the topics this import created are deleted.

mod groups;
mod scan;

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use crate::broker::{Broker, BrokerError, ProduceRecord, TopicConfig};
use groups::GroupPlan;
use scan::{FrameReader, PartitionPlan, TopicPlan};

/// Records per produce call while importing.
const CHUNK_RECORDS: usize = 1000;
/// Key and value bytes per produce call while importing.
const CHUNK_BYTES: usize = 1 << 20;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportReport {
    pub topics: Vec<ImportedTopic>,
    pub groups: Vec<ImportedGroup>,
    /// Things skipped or adjusted (unrecognised files, offsets past a partition's end...).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedTopic {
    pub name: String,
    pub partitions: u32,
    /// Records imported per partition (index = partition).
    pub records: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedGroup {
    pub name: String,
    pub offsets: Vec<GroupOffset>,
}

/// A committed position: the next offset the group reads in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: u32,
    pub next_offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: damaged at byte {position}: {reason}; nothing was imported", path.display())]
    Damaged {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("{} is missing; nothing was imported", .0.display())]
    Missing(PathBuf),
    #[error("{}: {reason}; nothing was imported", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error(
        "topic {topic:?} already exists in the broker and has held records (log end {log_end}); \
         delete it or import into an empty broker; nothing was imported"
    )]
    TopicNotEmpty { topic: String, log_end: u64 },
    #[error(
        "topic {topic:?} already exists with {existing} partitions but the import needs {needed}; \
         nothing was imported"
    )]
    TooFewPartitions {
        topic: String,
        existing: u32,
        needed: u32,
    },
    #[error("the broker refused {what}: {source}; the topics this import created were deleted")]
    Broker {
        what: String,
        #[source]
        source: BrokerError,
    },
    #[error("{}: changed during the import ({reason}); the topics this import created were deleted", path.display())]
    Changed { path: PathBuf, reason: String },
}

impl ImportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Imports the original data directory `src` (the original's `data_dir`, `data/topics` by
/// default) into `broker`; consumer files are read from `src/../consumers`.
///
/// # Errors
/// `Damaged`, `Missing`, `Unsupported` or `Io` when the files do not validate (nothing is
/// written); `TopicNotEmpty` / `TooFewPartitions` when a topic exists in the broker and cannot
/// take the import; `Broker` or `Changed` when writing fails part-way (the topics created are
/// deleted again).
pub async fn import(src: &Path, broker: &Broker) -> Result<ImportReport, ImportError> {
    let src = src.to_path_buf();
    let max_record_bytes = broker.config().max_record_bytes;
    let scan_root = src.clone();
    let (topics, groups, warnings) = tokio::task::spawn_blocking(move || {
        let mut warnings = Vec::new();
        let topics = scan::scan_topics(&scan_root, max_record_bytes, &mut warnings)?;
        let consumers = scan_root.join("..").join("consumers");
        let groups = groups::scan_groups(&consumers, &topics, &mut warnings)?;
        Ok::<_, ImportError>((topics, groups, warnings))
    })
    .await
    .map_err(|e| ImportError::io(&src, std::io::Error::other(e)))??;
    for w in &warnings {
        tracing::warn!("{w}");
    }

    // Check the broker can take every topic before writing any.
    let mut existing = Vec::new();
    for t in &topics {
        let needed = t.partition_count();
        match broker.describe_topic(&t.name) {
            Ok(desc) => {
                if let Some(p) = desc.partitions.iter().find(|p| p.log_end > 0) {
                    return Err(ImportError::TopicNotEmpty {
                        topic: t.name.clone(),
                        log_end: p.log_end,
                    });
                }
                if desc.config.partitions < needed {
                    return Err(ImportError::TooFewPartitions {
                        topic: t.name.clone(),
                        existing: desc.config.partitions,
                        needed,
                    });
                }
                existing.push((t.name.clone(), desc.config.partitions));
            }
            Err(BrokerError::TopicNotFound(_)) => {}
            Err(source) => {
                return Err(ImportError::Broker {
                    what: format!("topic {:?}", t.name),
                    source,
                });
            }
        }
    }

    let mut created = Vec::new();
    match write(broker, &topics, &groups, &existing, &mut created).await {
        Ok((topics, groups)) => Ok(ImportReport {
            topics,
            groups,
            warnings,
        }),
        Err(e) => {
            for name in created {
                if let Err(de) = broker.delete_topic(&name).await {
                    tracing::error!(topic = name, error = %de, "removing a half-imported topic failed");
                }
            }
            Err(e)
        }
    }
}

/// Creates the topics, writes the records and commits the groups' offsets. Names each topic it
/// creates in `created`, for clean-up on failure.
async fn write(
    broker: &Broker,
    topics: &[TopicPlan],
    groups: &[GroupPlan],
    existing: &[(String, u32)],
    created: &mut Vec<String>,
) -> Result<(Vec<ImportedTopic>, Vec<ImportedGroup>), ImportError> {
    let mut imported = Vec::new();
    for t in topics {
        let partitions = match existing.iter().find(|(name, _)| *name == t.name) {
            Some((_, n)) => *n,
            None => {
                let config = TopicConfig {
                    partitions: t.partition_count(),
                    retention_ms: 0,
                    retention_bytes: 0,
                    compression: Default::default(),
                };
                broker
                    .create_topic(&t.name, config)
                    .await
                    .map_err(|source| ImportError::Broker {
                        what: format!("creating topic {:?}", t.name),
                        source,
                    })?;
                created.push(t.name.clone());
                config.partitions
            }
        };
        for (&partition, plan) in &t.partitions {
            write_partition(broker, &t.name, partition, plan).await?;
            tracing::info!(
                topic = t.name,
                partition,
                records = plan.records,
                "legacy partition imported"
            );
        }
        imported.push(ImportedTopic {
            name: t.name.clone(),
            partitions,
            records: (0..partitions).map(|p| t.records(p)).collect(),
        });
    }
    let mut imported_groups = Vec::new();
    for g in groups {
        let mut offsets = Vec::new();
        for (topic, parts) in &g.offsets {
            let list: Vec<(u32, u64)> = parts.iter().map(|(&p, &o)| (p, o)).collect();
            broker
                .commit(topic, &g.name, &list)
                .await
                .map_err(|source| ImportError::Broker {
                    what: format!("the offsets of group {:?} on {topic:?}", g.name),
                    source,
                })?;
            offsets.extend(
                list.into_iter()
                    .map(|(partition, next_offset)| GroupOffset {
                        topic: topic.clone(),
                        partition,
                        next_offset,
                    }),
            );
        }
        imported_groups.push(ImportedGroup {
            name: g.name.clone(),
            offsets,
        });
    }
    Ok((imported, imported_groups))
}

/// Produces one partition's records in order, checking each lands at its original offset.
async fn write_partition(
    broker: &Broker,
    topic: &str,
    partition: u32,
    plan: &PartitionPlan,
) -> Result<(), ImportError> {
    let (tx, mut rx) = mpsc::channel(2);
    let (log, name) = (plan.log.clone(), topic.to_string());
    let reader = tokio::task::spawn_blocking(move || read_chunks(&log, &name, partition, &tx));
    let mut next = 0u64;
    while let Some(chunk) = rx.recv().await {
        let chunk: Vec<ProduceRecord> = chunk?;
        let count = chunk.len() as u64;
        let acks = broker
            .produce(topic, chunk)
            .await
            .map_err(|source| ImportError::Broker {
                what: format!("records of {topic}/{partition}"),
                source,
            })?;
        let expected = (next..next + count).map(|offset| (partition, offset));
        if !acks.iter().map(|a| (a.partition, a.offset)).eq(expected) {
            return Err(ImportError::Changed {
                path: plan.log.clone(),
                reason: format!(
                    "records from offset {next} did not land at their original offsets in {topic}/{partition} \
                     (was something else producing to it?)"
                ),
            });
        }
        next += count;
    }
    let _ = reader.await;
    if next != plan.records {
        return Err(ImportError::Changed {
            path: plan.log.clone(),
            reason: format!("{} records were validated, {next} read", plan.records),
        });
    }
    Ok(())
}

/// Sends the log's records in chunks (blocking; runs on the blocking pool). Stops when the
/// receiver is gone.
fn read_chunks(
    log: &Path,
    topic: &str,
    partition: u32,
    tx: &mpsc::Sender<Result<Vec<ProduceRecord>, ImportError>>,
) {
    let mut reader = match FrameReader::open(log) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    let mut chunk = Vec::new();
    let mut bytes = 0usize;
    loop {
        match reader.next_record(topic, partition) {
            Ok(Some((_, record))) => {
                bytes += record.key.len() + record.value.len();
                chunk.push(record);
                if chunk.len() >= CHUNK_RECORDS || bytes >= CHUNK_BYTES {
                    bytes = 0;
                    if tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
}
