//! Topic and group files left incomplete or damaged (by kill -9 during creation or deletion, a
//! failed creation, or the disk): one bad topic or group never keeps the broker or the other topics
//! down, nothing acknowledged is dropped, and deletion is all or nothing.

use std::sync::{Arc, Mutex};

use obelisk::proto as pb;
use rand::{Rng, SeedableRng};
use tonic::Code;

use super::child::{self, Options};
use super::{
    Grpc, commit, create_topic, fetch, produce_values, topic_names, try_fetch, try_produce,
};

fn values(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("r{i}").into_bytes()).collect()
}

async fn read_values(c: &mut Grpc, topic: &str) -> Vec<Vec<u8>> {
    fetch(c, topic, 0, 0, 1000)
        .await
        .into_iter()
        .map(|r| r.value.to_vec())
        .collect()
}

async fn poll(c: &mut Grpc, topic: &str, group: &str) -> Result<Vec<pb::Record>, tonic::Status> {
    Ok(c.poll(pb::PollRequest {
        topic: topic.into(),
        group: group.into(),
        max_records: 100,
        ..Default::default()
    })
    .await?
    .into_inner()
    .records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_and_damaged_topics_and_groups_never_keep_the_broker_down() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = child::start(&data, &Options::default()).await;
    let mut c = broker.client().await;
    for t in ["keep", "lost-config", "bad-config", "broken"] {
        create_topic(&mut c, t, 1).await;
        produce_values(&mut c, t, values(10)).await;
    }
    commit(&mut c, "keep", "good", 0, 4).await;
    commit(&mut c, "keep", "bad", 0, 7).await;
    broker.stop().await;

    let topics = data.join("topics");
    std::fs::remove_file(topics.join("lost-config/topic.json")).unwrap();
    std::fs::write(topics.join("bad-config/topic.json"), b"{\"partitions\":").unwrap();
    // What a kill -9 during an older, non-atomic creation left: a directory without a config.
    std::fs::create_dir_all(topics.join("half-made/0")).unwrap();
    std::fs::write(topics.join("half-made/0/00000000000000000000.log"), b"").unwrap();
    // What a kill -9 during a creation leaves now: the temporary directory.
    std::fs::create_dir_all(topics.join(".creating~17/0")).unwrap();
    // A partition that cannot be opened: its directory is a file.
    std::fs::remove_dir_all(topics.join("broken/0")).unwrap();
    std::fs::write(topics.join("broken/0"), b"not a directory").unwrap();
    std::fs::write(data.join("groups/bad.json"), b"{\"keep\":{\"0\":").unwrap();

    let broker = child::start(&data, &Options::default()).await;
    let mut c = broker.client().await;
    let names = topic_names(&mut c).await;
    assert_eq!(
        names,
        vec!["bad-config", "keep", "lost-config"],
        "{names:?}"
    );
    for t in ["keep", "lost-config", "bad-config"] {
        assert_eq!(
            read_values(&mut c, t).await,
            values(10),
            "{t} kept every record"
        );
    }
    assert!(
        !topics.join("half-made").exists(),
        "an empty half-made topic is removed"
    );
    assert!(
        !topics.join(".creating~17").exists(),
        "an unfinished creation is removed"
    );
    assert!(
        topics.join("lost-config/topic.json").exists(),
        "the config is rebuilt"
    );
    assert!(
        topics.join("bad-config/topic.json.damaged").exists(),
        "the bad one is kept aside"
    );

    let err = try_produce(&mut c, "broken", values(1)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("offline"), "{}", err.message());
    let err = try_fetch(&mut c, "broken", 0, 0, 1).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unavailable,
        "reads say it is offline too: {err:?}"
    );

    assert_eq!(poll(&mut c, "keep", "good").await.unwrap()[0].offset, 4);
    let err = poll(&mut c, "keep", "bad").await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(err.message().contains("reset"), "{}", err.message());

    let (code, health) = broker.http_json("/health").await;
    assert_eq!(code, 200);
    let details = &health["components"]["storage"]["details"];
    assert_eq!(health["components"]["storage"]["status"], "degraded");
    assert_eq!(details["offline_topics"][0]["topic"], "broken", "{details}");
    assert_eq!(details["damaged_groups"][0]["group"], "bad", "{details}");

    // The operator's ways out: reset the group, delete the offline topic.
    c.reset(pb::ResetRequest {
        topic: "keep".into(),
        group: "bad".into(),
        to: Some(pb::Position {
            target: Some(pb::position::Target::Offset(7)),
        }),
    })
    .await
    .expect("reset of a damaged group");
    assert_eq!(poll(&mut c, "keep", "bad").await.unwrap()[0].offset, 7);
    c.delete_topic(pb::DeleteTopicRequest {
        name: "broken".into(),
    })
    .await
    .expect("an offline topic can be deleted");
    assert_eq!(produce_values(&mut c, "broken", values(1)).await, vec![0]);
    let (_, health) = broker.http_json("/health").await;
    assert_eq!(
        health["components"]["storage"]["status"], "healthy",
        "{health}"
    );
    broker.stop().await;
}

/// An operation that was in flight when the broker was killed: it may or may not have happened.
#[derive(Clone, Debug)]
enum Op {
    Create(String, u32),
    Delete(String),
}

/// What the test knows: acknowledged topics with their partition counts, acknowledged deletions.
#[derive(Default)]
struct Known {
    created: Vec<(String, u32)>,
    deleted: Vec<String>,
}

/// Topic creation and deletion under kill -9 at random points: the broker always starts again,
/// every acknowledged creation is there and whole, every acknowledged deletion is gone, and what
/// was in flight either happened whole or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_topic_creation_and_deletion() {
    let rounds = super::rounds(24);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let known: Arc<Mutex<Known>> = Arc::default();
    let mut in_flight: Option<Op> = None;
    for round in 0..rounds {
        let mut rng = rand::rngs::StdRng::seed_from_u64(round);
        let broker = child::start(&data, &Options::default()).await;
        let mut c = broker.client().await;
        check_topics(&mut c, &data, &known, in_flight.take(), round).await;
        let (ops_tx, mut ops_rx) = tokio::sync::watch::channel(0usize);
        let worker = {
            let known = Arc::clone(&known);
            let mut c = c.clone();
            let seed = rng.r#gen::<u64>();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                for k in 0.. {
                    let victim = known.lock().unwrap().created.last().map(|(n, _)| n.clone());
                    let op = match victim {
                        Some(name) if rng.gen_bool(0.3) => Op::Delete(name),
                        _ => Op::Create(format!("r{round}-{k}"), rng.gen_range(1..=16)),
                    };
                    let done = match &op {
                        Op::Delete(name) => c
                            .delete_topic(pb::DeleteTopicRequest { name: name.clone() })
                            .await
                            .is_ok(),
                        Op::Create(name, partitions) => c
                            .create_topic(pb::CreateTopicRequest {
                                name: name.clone(),
                                config: Some(pb::TopicConfig {
                                    partitions: *partitions,
                                    retention_ms: 0,
                                    retention_bytes: 0,
                                    compression: 0,
                                }),
                            })
                            .await
                            .is_ok(),
                    };
                    if !done {
                        return op;
                    }
                    let mut k = known.lock().unwrap();
                    match op {
                        Op::Delete(name) => {
                            k.created.retain(|(n, _)| *n != name);
                            k.deleted.push(name);
                        }
                        Op::Create(name, partitions) => k.created.push((name, partitions)),
                    }
                    drop(k);
                    ops_tx.send_modify(|n| *n += 1);
                }
                unreachable!("the loop ends when the broker dies")
            })
        };
        let target = rng.gen_range(1..12);
        let _ = tokio::time::timeout(child::PATIENCE, ops_rx.wait_for(|n| *n >= target)).await;
        tokio::time::sleep(std::time::Duration::from_micros(rng.gen_range(0..3000))).await;
        broker.kill9();
        in_flight = Some(worker.await.expect("the worker ends when the broker dies"));
    }
    let broker = child::start(&data, &Options::default()).await;
    let mut c = broker.client().await;
    check_topics(&mut c, &data, &known, in_flight, rounds).await;
    broker.stop().await;
}

async fn partitions_of(c: &mut Grpc, name: &str) -> Option<usize> {
    let d = c
        .describe_topic(pb::DescribeTopicRequest { name: name.into() })
        .await
        .ok()?
        .into_inner();
    d.topic.map(|t| t.partitions.len())
}

/// Checks the broker against what is known, then settles the operation that was in flight by
/// what the broker shows (it must be all or nothing).
async fn check_topics(
    c: &mut Grpc,
    data: &std::path::Path,
    known: &Mutex<Known>,
    in_flight: Option<Op>,
    round: u64,
) {
    let names = topic_names(c).await;
    let (created, deleted) = {
        let k = known.lock().unwrap();
        (k.created.clone(), k.deleted.clone())
    };
    let pending_delete = match &in_flight {
        Some(Op::Delete(n)) => Some(n.clone()),
        _ => None,
    };
    for (name, partitions) in &created {
        if pending_delete.as_ref() == Some(name) {
            continue;
        }
        let got = partitions_of(c, name).await;
        assert_eq!(
            got,
            Some(*partitions as usize),
            "round {round}: acknowledged topic {name} is missing or not whole"
        );
    }
    for name in &deleted {
        assert!(
            !names.contains(name),
            "round {round}: deleted {name} came back"
        );
    }
    match in_flight {
        Some(Op::Create(name, partitions)) if names.contains(&name) => {
            let got = partitions_of(c, &name).await;
            assert_eq!(
                got,
                Some(partitions as usize),
                "round {round}: {name} half made"
            );
            known.lock().unwrap().created.push((name, partitions));
        }
        Some(Op::Delete(name)) if !names.contains(&name) => {
            let mut k = known.lock().unwrap();
            k.created.retain(|(n, _)| *n != name);
            k.deleted.push(name);
        }
        _ => {}
    }
    let leftovers: Vec<_> = std::fs::read_dir(data.join("topics"))
        .expect("topics dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "round {round}: leftovers {leftovers:?}"
    );
}

/// kill -9 between a deletion's rename and the removal of the groups' offsets leaves offsets of a
/// topic that is gone: a new topic of that name must not inherit them (its consumers would skip
/// its first records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_topic_never_inherits_the_offsets_of_a_deleted_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = child::start(&data, &Options::default()).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 1).await;
    create_topic(&mut c, "other", 1).await;
    produce_values(&mut c, "t", values(5)).await;
    produce_values(&mut c, "other", values(5)).await;
    commit(&mut c, "t", "g", 0, 5).await;
    commit(&mut c, "other", "g", 0, 3).await;
    broker.kill9();
    // What the kill leaves when it lands right after the deletion's rename.
    std::fs::create_dir_all(data.join("trash")).unwrap();
    std::fs::rename(data.join("topics/t"), data.join("trash/1-0")).unwrap();

    let broker = child::start(&data, &Options::default()).await;
    let mut c = broker.client().await;
    produce_values(&mut c, "t", values(2)).await;
    let got = poll(&mut c, "t", "g").await.expect("poll of the new topic");
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1],
        "the new topic is read from its start"
    );
    assert_eq!(
        poll(&mut c, "other", "g").await.unwrap()[0].offset,
        3,
        "other offsets stay"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_is_all_or_nothing_even_with_a_249_byte_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let long = "a".repeat(249);
    let broker = child::start(&data, &Options::default()).await;
    let mut c = broker.client().await;
    create_topic(&mut c, &long, 1).await;
    produce_values(&mut c, &long, values(5)).await;
    c.delete_topic(pb::DeleteTopicRequest { name: long.clone() })
        .await
        .expect("a topic with the longest name deletes");
    assert!(topic_names(&mut c).await.is_empty());
    broker.kill9();

    let broker = child::start(&data, &Options::default()).await;
    let mut c = broker.client().await;
    assert!(topic_names(&mut c).await.is_empty(), "it stays deleted");
    assert_eq!(
        produce_values(&mut c, &long, vec![b"fresh".to_vec()]).await,
        vec![0],
        "a new topic of that name starts empty"
    );
    assert_eq!(read_values(&mut c, &long).await, vec![b"fresh".to_vec()]);

    // A deletion that cannot move the files changes nothing.
    create_topic(&mut c, "stays", 1).await;
    produce_values(&mut c, "stays", values(3)).await;
    let trash = data.join("trash");
    let _ = std::fs::remove_dir_all(&trash);
    std::fs::write(&trash, b"in the way").unwrap();
    let err = c
        .delete_topic(pb::DeleteTopicRequest {
            name: "stays".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(topic_names(&mut c).await.contains(&"stays".to_string()));
    assert_eq!(read_values(&mut c, "stays").await, values(3));
    assert_eq!(produce_values(&mut c, "stays", values(1)).await, vec![3]);
    std::fs::remove_file(&trash).unwrap();
    broker.stop().await;
}
