//! Shared groups over gRPC (issue 14): per-record settling, redelivery, dead letters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use obelisk::client::{BrokerClient, SharedStream};
use obelisk::proto as pb;
use rand::Rng;
use tonic::transport::Channel;

use super::common::server::TestServer;
use super::record;

type Client = BrokerClient<Channel>;

fn settings(ack_timeout_ms: u32, max_deliveries: u32) -> pb::SharedGroupSettings {
    pb::SharedGroupSettings {
        ack_timeout_ms,
        max_deliveries,
        ..Default::default()
    }
}

async fn create_group(c: &mut Client, group: &str, s: pb::SharedGroupSettings) {
    c.create_shared_group(pb::CreateSharedGroupRequest {
        group: group.into(),
        settings: Some(s),
    })
    .await
    .unwrap();
}

async fn take(
    c: &mut Client,
    group: &str,
    topic: &str,
    member: &str,
    max: u32,
    wait_ms: u32,
) -> Vec<pb::SharedDelivery> {
    c.shared_poll(pb::SharedPollRequest {
        group: group.into(),
        topic: topic.into(),
        member_id: member.into(),
        max_records: max,
        max_wait_ms: wait_ms,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .deliveries
}

fn settlement(d: &pb::SharedDelivery, kind: pb::SettleKind, reason: &str) -> pb::Settlement {
    let r = d.record.as_ref().unwrap();
    pb::Settlement {
        partition: r.partition,
        offset: r.offset,
        kind: kind as i32,
        delay_ms: None,
        reason: reason.into(),
    }
}

async fn settle(
    c: &mut Client,
    group: &str,
    topic: &str,
    member: &str,
    settlements: Vec<pb::Settlement>,
) -> Vec<pb::SettleResult> {
    c.settle(pb::SettleRequest {
        group: group.into(),
        topic: topic.into(),
        member_id: member.into(),
        settlements,
    })
    .await
    .unwrap()
    .into_inner()
    .results
}

async fn produce(c: &mut Client, topic: &str, records: Vec<pb::ProducerRecord>) {
    c.produce(pb::ProduceRequest {
        topic: topic.into(),
        records,
        idempotence: None,
    })
    .await
    .unwrap();
}

/// Every record of the dead-letter topic (one partition).
async fn dead_letters(c: &mut Client, dlq: &str) -> Vec<pb::Record> {
    c.fetch(pb::FetchRequest {
        topic: dlq.into(),
        partition: 0,
        offset: 0,
        max_records: 10_000,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .records
}

fn header(r: &pb::Record, name: &str) -> String {
    String::from_utf8(r.headers.get(name).map(|v| v.to_vec()).unwrap_or_default()).unwrap()
}

fn offset(d: &pb::SharedDelivery) -> (u32, u64) {
    let r = d.record.as_ref().unwrap();
    (r.partition, r.offset)
}

/// A worker of a shared group: unary (SharedPoll, Settle) or on its SharedConsume stream, so
/// each test below shows the semantics on both.
enum Member {
    Unary {
        c: Client,
        group: String,
        topic: String,
        id: String,
    },
    Stream(SharedStream),
}

#[derive(Clone, Copy, Debug)]
enum Api {
    Unary,
    Stream,
}

impl Member {
    /// `credit`: the stream's max in flight (unary: the poll's max records).
    async fn new(api: Api, c: &Client, group: &str, topic: &str, id: &str, credit: u32) -> Self {
        match api {
            Api::Unary => Member::Unary {
                c: c.clone(),
                group: group.into(),
                topic: topic.into(),
                id: id.into(),
            },
            Api::Stream => {
                let s = SharedStream::open(&mut c.clone(), topic, group, id, credit)
                    .await
                    .unwrap();
                Member::Stream(s)
            }
        }
    }

    /// Records handed out, waiting up to `wait_ms` for some.
    async fn take(&mut self, max: u32, wait_ms: u32) -> Vec<pb::SharedDelivery> {
        match self {
            Member::Unary {
                c,
                group,
                topic,
                id,
            } => take(c, group, topic, id, max, wait_ms).await,
            Member::Stream(s) => {
                let wait = Duration::from_millis(u64::from(wait_ms));
                match tokio::time::timeout(wait, s.deliveries()).await {
                    Err(_) => Vec::new(),
                    Ok(got) => got.unwrap().expect("the stream ended"),
                }
            }
        }
    }

    async fn settle(&mut self, settlements: Vec<pb::Settlement>) -> Vec<pb::SettleResult> {
        match self {
            Member::Unary {
                c,
                group,
                topic,
                id,
            } => settle(c, group, topic, id, settlements).await,
            Member::Stream(s) => {
                for x in settlements {
                    s.push(x);
                }
                s.settle().await.unwrap()
            }
        }
    }
}

#[tokio::test]
async fn poison_record_is_dead_lettered_once_while_the_rest_flows() {
    poison_record(Api::Unary).await;
}

#[tokio::test]
async fn poison_record_is_dead_lettered_once_over_the_stream() {
    poison_record(Api::Stream).await;
}

async fn poison_record(api: Api) {
    let mut s = TestServer::start().await;
    s.create_topic("jobs", Some(1)).await;
    let c = &mut s.client;
    create_group(c, "workers", settings(60_000, 3)).await;
    let mut records = vec![record("poison", "bad")];
    records.extend((1..20).map(|i| record("k", &format!("v{i}"))));
    produce(c, "jobs", records).await;

    // Member a takes the poison record and holds it; b gets everything behind it meanwhile.
    let mut a = Member::new(api, c, "workers", "jobs", "a", 1).await;
    let mut b = Member::new(api, c, "workers", "jobs", "b", 5).await;
    let first = a.take(1, 1000).await;
    assert_eq!(first.len(), 1);
    assert_eq!(offset(&first[0]), (0, 0));
    assert_eq!(first[0].deliveries, 1);
    let mut accepted = Vec::new();
    while accepted.len() < 19 {
        let got = b.take(5, 1000).await;
        assert!(
            !got.is_empty(),
            "records behind a locked poison record must flow"
        );
        let acks: Vec<_> = got
            .iter()
            .map(|d| settlement(d, pb::SettleKind::Accept, ""))
            .collect();
        for r in b.settle(acks).await {
            assert_eq!(r.outcome, "done", "{r:?}");
            accepted.push(r.offset);
        }
    }
    assert_eq!(accepted, (1..20).collect::<Vec<u64>>());

    // The poison record: released each time, delivered max_deliveries (3) times, to whichever
    // member takes it next (a stream's member is always waiting for records).
    let mut members = [a, b];
    let mut holder = 0;
    let mut deliveries = vec![1];
    let mut current = first;
    loop {
        let rel = settlement(&current[0], pb::SettleKind::Release, "cannot parse");
        let res = members[holder].settle(vec![rel]).await;
        if res[0].outcome == "dead_lettered" {
            break;
        }
        assert_eq!(res[0].outcome, "available", "{:?}", res[0]);
        current = Vec::new();
        for round in 0..20 {
            holder = round % 2;
            current = members[holder].take(10, 300).await;
            if !current.is_empty() {
                break;
            }
        }
        assert_eq!(current.len(), 1);
        assert_eq!(offset(&current[0]), (0, 0));
        deliveries.push(current[0].deliveries);
    }
    assert_eq!(deliveries, vec![1, 2, 3]);
    for m in &mut members {
        assert!(m.take(10, 100).await.is_empty());
    }

    let dlq = dead_letters(c, "workers.dlq").await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let d = &dlq[0];
    assert_eq!(d.value.as_ref(), b"bad");
    assert_eq!(header(d, "obelisk-origin-topic"), "jobs");
    assert_eq!(header(d, "obelisk-origin-partition"), "0");
    assert_eq!(header(d, "obelisk-origin-offset"), "0");
    assert_eq!(header(d, "obelisk-deliveries"), "3");
    assert_eq!(header(d, "obelisk-reason"), "cannot parse");

    let state = c
        .describe_shared_group(pb::DescribeSharedGroupRequest {
            group: "workers".into(),
            topic: "jobs".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.partitions.len(), 1);
    assert_eq!(state.partitions[0].position, 20);
    assert_eq!(state.partitions[0].in_flight, 0);
    s.stop().await;
}

#[tokio::test]
async fn settle_refuses_what_is_not_locked_to_the_member() {
    let mut s = TestServer::start().await;
    s.create_topic("t", Some(1)).await;
    let c = &mut s.client;
    produce(c, "t", vec![record("k", "v")]).await;
    let got = take(c, "g", "t", "a", 10, 1000).await;
    assert_eq!(got.len(), 1);
    let accept = settlement(&got[0], pb::SettleKind::Accept, "");
    let res = settle(c, "g", "t", "b", vec![accept.clone()]).await;
    assert!(res[0].error.contains("not locked to member"), "{res:?}");
    let res = settle(c, "g", "t", "a", vec![accept.clone()]).await;
    assert_eq!(res[0].outcome, "done");
    let res = settle(c, "g", "t", "a", vec![accept]).await;
    assert!(res[0].error.contains("done already"), "{res:?}");
    let mut none = settlement(&got[0], pb::SettleKind::Accept, "");
    none.kind = pb::SettleKind::Unspecified as i32;
    let err = c
        .settle(pb::SettleRequest {
            group: "g".into(),
            topic: "t".into(),
            member_id: "a".into(),
            settlements: vec![none],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = c
        .shared_poll(pb::SharedPollRequest {
            group: "g".into(),
            topic: "t".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("member id"), "{err:?}");
    s.stop().await;
}

/// What the workers saw, shared between them.
#[derive(Default)]
struct Ledger {
    /// (partition, offset) → (member, lock deadline ns) of locks a worker still holds.
    held: HashMap<(u32, u64), (String, i64)>,
    /// Accepts the broker confirmed, per record.
    accepted: HashMap<(u32, u64), u32>,
    violations: Vec<String>,
}

#[tokio::test]
async fn four_workers_settle_every_record_once() {
    four_workers(Api::Unary).await;
}

/// A crash of a stream's worker drops the stream (nothing settled) and opens a new one.
#[tokio::test]
async fn four_workers_on_streams_settle_every_record_once() {
    four_workers(Api::Stream).await;
}

async fn four_workers(api: Api) {
    const PARTITIONS: u32 = 3;
    const RECORDS: usize = 300;
    let mut s = TestServer::start().await;
    s.create_topic("work", Some(PARTITIONS)).await;
    let mut c = s.client.clone();
    create_group(&mut c, "pool", settings(400, 4)).await;
    let records: Vec<_> = (0..RECORDS)
        .map(|i| record(&format!("k{i}"), "v"))
        .collect();
    produce(&mut c, "work", records).await;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut workers = Vec::new();
    for w in 0..4 {
        let mut c = s.client.clone();
        let ledger = Arc::clone(&ledger);
        workers.push(tokio::spawn(async move {
            let member = format!("w{w}");
            let mut m = Member::new(api, &c, "pool", "work", &member, 8).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            while tokio::time::Instant::now() < deadline {
                let got = m.take(8, 200).await;
                let now = obelisk::broker::now_ns();
                let mut batch = Vec::new();
                {
                    let mut l = ledger.lock().unwrap();
                    for d in &got {
                        let key = offset(d);
                        if let Some((m, until)) = l.held.get(&key)
                            && *until > now + 50_000_000
                        {
                            let v = format!("{key:?} handed to {member} while locked to {m}");
                            l.violations.push(v);
                        }
                        l.held.insert(key, (member.clone(), d.lock_deadline_ns));
                    }
                }
                // A crash: the whole batch is dropped without a settle.
                let crash = rand::thread_rng().gen_bool(0.1);
                if crash {
                    drop(m);
                    m = Member::new(api, &c, "pool", "work", &member, 8).await;
                    continue;
                }
                for d in &got {
                    let roll: f64 = rand::thread_rng().r#gen();
                    let kind = if roll < 0.7 {
                        pb::SettleKind::Accept
                    } else if roll < 0.9 {
                        pb::SettleKind::Release
                    } else if roll < 0.95 {
                        pb::SettleKind::Reject
                    } else {
                        continue; // this one is left to its ack timeout
                    };
                    if kind != pb::SettleKind::Accept {
                        // Given up before the settle is sent: another member may get it next.
                        ledger.lock().unwrap().held.remove(&offset(d));
                    }
                    batch.push(settlement(d, kind, "random"));
                }
                if !batch.is_empty() {
                    let res = m.settle(batch).await;
                    let mut l = ledger.lock().unwrap();
                    for r in res {
                        if r.outcome == "done" {
                            *l.accepted.entry((r.partition, r.offset)).or_default() += 1;
                            l.held.remove(&(r.partition, r.offset));
                        }
                    }
                }
                let state = c
                    .describe_shared_group(pb::DescribeSharedGroupRequest {
                        group: "pool".into(),
                        topic: "work".into(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let finished = state.partitions.len() == PARTITIONS as usize
                    && state.partitions.iter().all(|p| p.in_flight == 0)
                    && state.partitions.iter().map(|p| p.position).sum::<u64>() == RECORDS as u64;
                if finished {
                    break;
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let dlq: Vec<(u32, u64)> = dead_letters(&mut c, "pool.dlq")
        .await
        .iter()
        .map(|r| {
            (
                header(r, "obelisk-origin-partition").parse().unwrap(),
                header(r, "obelisk-origin-offset").parse().unwrap(),
            )
        })
        .collect();
    let l = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(l.violations.is_empty(), "{:?}", l.violations);
    let dead: HashSet<_> = dlq.iter().copied().collect();
    assert_eq!(dead.len(), dlq.len(), "a record was dead-lettered twice");
    for (k, n) in &l.accepted {
        assert_eq!(*n, 1, "{k:?} accepted {n} times");
        assert!(!dead.contains(k), "{k:?} accepted and dead-lettered");
    }
    // Every record ends accepted once or dead-lettered once: none is lost.
    let mut per_partition: BTreeMap<u32, u64> = BTreeMap::new();
    for k in l.accepted.keys().chain(dead.iter()) {
        *per_partition.entry(k.0).or_default() += 1;
    }
    assert_eq!(
        per_partition.values().sum::<u64>(),
        RECORDS as u64,
        "accepted {} + dead {}",
        l.accepted.len(),
        dead.len()
    );
    s.stop().await;
}

#[tokio::test]
async fn a_group_name_is_either_shared_or_with_members() {
    let mut s = TestServer::start().await;
    s.create_topic("t", Some(1)).await;
    let c = &mut s.client;
    create_group(c, "sg", settings(0, 0)).await;
    let again = c
        .create_shared_group(pb::CreateSharedGroupRequest {
            group: "sg".into(),
            settings: None,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again:?}");
    let join = pb::JoinGroupRequest {
        kind: Some(pb::join_group_request::Kind::Join(pb::JoinGroupJoin {
            group: "sg".into(),
            topics: vec!["t".into()],
            ..Default::default()
        })),
    };
    let err = c
        .join_group(tokio_stream::iter(vec![join]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("shared group"), "{err:?}");
    let bad = c
        .create_shared_group(pb::CreateSharedGroupRequest {
            group: "other".into(),
            settings: Some(pb::SharedGroupSettings {
                dead_letter_topic: "no/slash".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    s.stop().await;
}

#[tokio::test]
async fn the_rust_shared_consumer_settles_in_batches() {
    let mut s = TestServer::start().await;
    s.create_topic("rc", Some(2)).await;
    let records = (0..10).map(|i| record(&format!("k{i}"), "v")).collect();
    produce(&mut s.client, "rc", records).await;
    let mut w = obelisk::client::SharedConsumer::new(s.client.clone(), "rc", "rcg", "w1");
    w.max_wait_ms = 500;
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let got = w.poll().await.unwrap();
        assert!(!got.is_empty(), "records must keep coming: {seen:?}");
        for d in &got {
            let key = offset(d);
            // The first delivery of partition 0's offset 0 is released once; the rest accepted.
            if key == (0, 0) && d.deliveries == 1 {
                w.release(d, Some(0), "later");
            } else {
                w.accept(d);
                seen.push(key);
            }
        }
    }
    let results = w.flush().await.unwrap();
    assert!(results.iter().all(|r| r.error.is_empty()), "{results:?}");
    assert!(w.poll().await.unwrap().is_empty());
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 10);
    s.stop().await;
}

#[tokio::test]
async fn delete_group_deletes_a_shared_group_and_keeps_its_dead_letters() {
    let mut s = TestServer::start().await;
    s.create_topic("dt", Some(1)).await;
    let c = &mut s.client;
    produce(c, "dt", vec![record("k", "v")]).await;
    let got = take(c, "dg", "dt", "a", 10, 1000).await;
    let rej = settlement(&got[0], pb::SettleKind::Reject, "no");
    assert_eq!(
        settle(c, "dg", "dt", "a", vec![rej]).await[0].outcome,
        "dead_lettered"
    );
    c.delete_group(pb::DeleteGroupRequest { group: "dg".into() })
        .await
        .unwrap();
    let err = c
        .describe_shared_group(pb::DescribeSharedGroupRequest {
            group: "dg".into(),
            topic: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(dead_letters(c, "dg.dlq").await.len(), 1);
    // Used again, it starts over from the log start.
    let again = take(c, "dg", "dt", "a", 10, 1000).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].deliveries, 1);
    s.stop().await;
}

#[tokio::test]
async fn list_groups_and_describe_group_show_a_shared_group_by_its_positions() {
    let mut s = TestServer::start().await;
    s.create_topic("lg", Some(2)).await;
    let records = (0..6).map(|i| record(&format!("k{i}"), "v")).collect();
    produce(&mut s.client, "lg", records).await;
    let c = &mut s.client;
    let got = take(c, "lgg", "lg", "a", 10, 0).await;
    assert_eq!(got.len(), 6);
    // Accept everything but one record of partition 0's lowest offset.
    let lowest = got
        .iter()
        .filter(|d| offset(d).0 == 0)
        .map(offset)
        .min()
        .unwrap();
    let batch = got
        .iter()
        .filter(|d| offset(d) != lowest)
        .map(|d| settlement(d, pb::SettleKind::Accept, ""))
        .collect();
    settle(c, "lgg", "lg", "a", batch).await;
    let groups = c
        .list_groups(pb::ListGroupsRequest {})
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert!(groups.contains(&"lgg".to_string()), "{groups:?}");
    let d = c
        .describe_group(pb::DescribeGroupRequest {
            group: "lgg".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.state, "shared");
    assert_eq!(d.topics, vec!["lg".to_string()]);
    let by_partition: BTreeMap<u32, (u64, u64, u64)> = d
        .partitions
        .iter()
        .map(|p| (p.partition, (p.committed_offset, p.log_end_offset, p.lag)))
        .collect();
    let end0 = by_partition[&0].1;
    assert_eq!(by_partition[&0], (lowest.1, end0, end0 - lowest.1), "{d:?}");
    let end1 = by_partition[&1].1;
    assert_eq!(by_partition[&1], (end1, end1, 0), "{d:?}");
    assert_eq!(end0 + end1, 6);
    s.stop().await;
}

#[tokio::test]
async fn the_shared_consume_stream_refuses_bad_input_with_a_clear_status() {
    use pb::shared_consume_request::Kind;
    let mut s = TestServer::start().await;
    s.create_topic("bi", Some(1)).await;
    let c = &mut s.client;
    produce(c, "bi", vec![record("k", "v")]).await;
    let credit = pb::SharedConsumeRequest {
        kind: Some(Kind::Credit(pb::SharedConsumeCredit { max_in_flight: 1 })),
    };
    let err = c
        .shared_consume(tokio_stream::iter(vec![credit]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("must be `open`"), "{err:?}");
    let err = SharedStream::open(c, "bi", "big", "", 1)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument));
    assert!(err.to_string().contains("member id"), "{err:?}");
    let mut gone = SharedStream::open(c, "no-such-topic", "big", "a", 1)
        .await
        .unwrap();
    let err = gone.next().await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err:?}");

    // A settlement without a kind ends the stream with INVALID_ARGUMENT; the lock stays a's.
    let mut a = SharedStream::open(c, "bi", "big", "a", 1).await.unwrap();
    let got = a.deliveries().await.unwrap().unwrap();
    let mut none = settlement(&got[0], pb::SettleKind::Accept, "");
    none.kind = pb::SettleKind::Unspecified as i32;
    a.push(none);
    let err = a.settle().await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err:?}");
    let mut again = SharedStream::open(c, "bi", "big", "a", 1).await.unwrap();
    again.accept(&got[0]);
    let res = again.settle().await.unwrap();
    assert_eq!(res[0].outcome, "done", "{res:?}");
    s.stop().await;
}
