//! The original's consumer offset files, `<consumers>/<id>.json`, read as consumer groups.
//!
//! A file looks like `{"orders": 0, "orders_partitions": {"0": 29, "1": 27}}`: for each
//! partitioned topic, `<topic>_partitions` maps a partition number to the next offset to read.
//! A plain `"<topic>": N` is the offset of the original's older single-file topics, which this
//! import does not read; it is ignored (with a warning when it is not 0 and the topic has no
//! partitioned offsets).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ImportError;
use super::scan::TopicPlan;
use crate::broker::NameKind;
use crate::broker::names;

/// One consumer file, resolved against the topics being imported.
#[derive(Debug, Clone)]
pub(super) struct GroupPlan {
    pub name: String,
    /// topic → partition → next offset.
    pub offsets: BTreeMap<String, BTreeMap<u32, u64>>,
}

/// Reads every `*.json` in `dir` (a missing directory means no groups). Offsets for topics not
/// imported, or for partitions they lack, are skipped; offsets past a partition's end are lowered
/// to it (the original's Commit could overshoot). Each such case is noted in `warnings`.
pub(super) fn scan_groups(
    dir: &Path,
    topics: &[TopicPlan],
    warnings: &mut Vec<String>,
) -> Result<Vec<GroupPlan>, ImportError> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImportError::io(dir, e)),
    };
    let mut files: Vec<PathBuf> = listing
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| ImportError::io(dir, e))?;
    files.sort();
    let mut groups = Vec::new();
    for path in files {
        if path.extension().is_none_or(|ext| ext != "json") {
            warnings.push(format!("ignored {}: not a consumer file", path.display()));
            continue;
        }
        let raw = read_file(&path)?;
        groups.push(resolve(&path, raw, topics, warnings)?);
    }
    Ok(groups)
}

/// One consumer file as written.
struct ConsumerFile {
    group: String,
    /// topic → partition → next offset.
    partitioned: BTreeMap<String, BTreeMap<u32, u64>>,
    /// Offsets of single-file topics: (topic, offset).
    single: Vec<(String, u64)>,
}

fn read_file(path: &Path) -> Result<ConsumerFile, ImportError> {
    let unsupported = |reason: String| ImportError::Unsupported {
        path: path.to_path_buf(),
        reason,
    };
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    names::validate(NameKind::Group, &name)
        .map_err(|e| unsupported(format!("{e}; rename the file or move it aside")))?;
    let bytes = std::fs::read(path).map_err(|e| ImportError::io(path, e))?;
    let json: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| unsupported(format!("not a JSON object of offsets: {e}")))?;
    let mut partitioned = BTreeMap::new();
    let mut single = Vec::new();
    for (key, value) in json {
        match (key.strip_suffix("_partitions"), value) {
            (Some(topic), Value::Object(parts)) => {
                let mut offsets = BTreeMap::new();
                for (p, off) in parts {
                    let partition = p.parse::<u32>().map_err(|_| {
                        unsupported(format!("{key}: {p:?} is not a partition number"))
                    })?;
                    let offset = off.as_u64().ok_or_else(|| {
                        unsupported(format!(
                            "{key}.{p}: {off} is not an offset (a non-negative integer)"
                        ))
                    })?;
                    offsets.insert(partition, offset);
                }
                partitioned.insert(topic.to_string(), offsets);
            }
            (_, Value::Number(n)) => {
                let offset = n.as_u64().ok_or_else(|| {
                    unsupported(format!(
                        "{key}: {n} is not an offset (a non-negative integer)"
                    ))
                })?;
                single.push((key, offset));
            }
            (_, other) => {
                return Err(unsupported(format!(
                    "{key}: expected an offset or an object of partition offsets, found {other}"
                )));
            }
        }
    }
    Ok(ConsumerFile {
        group: name,
        partitioned,
        single,
    })
}

fn resolve(
    path: &Path,
    ConsumerFile {
        group,
        partitioned,
        single,
    }: ConsumerFile,
    topics: &[TopicPlan],
    warnings: &mut Vec<String>,
) -> Result<GroupPlan, ImportError> {
    let file = path.display();
    for (topic, offset) in single {
        if offset != 0 && !partitioned.contains_key(&topic) {
            warnings.push(format!(
                "{file}: ignored offset {offset} of {topic:?}: the original's single-file topics \
                 are not imported"
            ));
        }
    }
    let mut offsets = BTreeMap::new();
    for (topic, parts) in partitioned {
        let Some(plan) = topics.iter().find(|t| t.name == topic) else {
            warnings.push(format!(
                "{file}: ignored the offsets of topic {topic:?}: it is not being imported"
            ));
            continue;
        };
        let mut resolved = BTreeMap::new();
        for (partition, offset) in parts {
            if partition >= plan.partition_count() {
                if offset > 0 {
                    warnings.push(format!(
                        "{file}: ignored offset {offset} of {topic}/{partition}: the topic has no such partition"
                    ));
                }
                continue;
            }
            let end = plan.records(partition);
            if offset > end {
                warnings.push(format!(
                    "{file}: offset {offset} of {topic}/{partition} is past its end; lowered to {end}"
                ));
            }
            resolved.insert(partition, offset.min(end));
        }
        if !resolved.is_empty() {
            offsets.insert(topic, resolved);
        }
    }
    Ok(GroupPlan {
        name: group,
        offsets,
    })
}
