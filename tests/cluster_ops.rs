//! replication (issue 17, operations): real `obelisk serve` processes with every node-to-node
//! link through a fault-injecting proxy of ours (`cluster_support::proxy`: cut a node off,
//! delay, drop, heal), 3 and 5 nodes, and membership changes (`obelisk cluster
//! add-node|remove-node`). Clients log every acknowledged record; at the end the checker reads
//! every partition on every running node: each acknowledged record exactly once, at the offset
//! its ack named, the same records in the same order on every replica.
//!
//! Rounds of the long test: `OBELISK_CHAOS_ROUNDS` (default 2, the CI run; `scripts/chaos.sh`
//! runs 50).

mod cluster_support;

use std::process::Command;
use std::time::Duration;

use cluster_support::{
    Cluster, Ledger, PARTITIONS, PATIENCE, TOPIC, check, free_port, produce, produce_request,
    rounds,
};
use obelisk::client::{self, LeaderClient};
use obelisk::proto as pb;

/// A leader cut off from the others: the majority elects a new leader and takes writes; the
/// old leader never acknowledges what it was sent while cut off (it cannot commit it); healed,
/// it catches up and holds what every other replica holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_majority_is_replaced_and_catches_up_after_heal() {
    let mut cluster = Cluster::start_proxied(3).await;
    let net = cluster.net.take().expect("proxied");
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    for b in 0..3 {
        produce(&mut client, &mut ledger, &format!("before{b}"), 12).await;
    }
    let leader = client.current().expect("a leader answered").to_string();
    let old = cluster.node_at(&leader).id;
    net.isolate(old);
    let stranded_values: Vec<String> = (0..6).map(|i| format!("stranded-{i}")).collect();
    let stranded = {
        let (leader, req) = (leader.clone(), produce_request(&stranded_values));
        tokio::spawn(async move {
            let mut c = client::connect(&leader).await.unwrap();
            c.produce(req).await
        })
    };
    for b in 0..3 {
        produce(&mut client, &mut ledger, &format!("majority{b}"), 12).await;
    }
    assert_ne!(
        client.current(),
        Some(leader.as_str()),
        "a new leader took the writes"
    );
    // Still cut off, the old leader answers the write it could not commit with an error.
    let outcome = tokio::time::timeout(PATIENCE, stranded)
        .await
        .expect("the old leader answers instead of hanging")
        .unwrap();
    let err = outcome.expect_err("a leader cut off from its majority acknowledged a write");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    ledger.maybe.extend(stranded_values);
    net.heal();
    for b in 0..2 {
        produce(&mut client, &mut ledger, &format!("healed{b}"), 12).await;
    }
    check(&cluster, &ledger).await;
}

/// The long run with network faults: every round delays and drops on every link, cuts one
/// node off (the leader every other round) and heals, then kills the leader with SIGKILL and
/// restarts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_delays_drops_cut_off_nodes_and_leader_kills() {
    let mut cluster = Cluster::start_proxied(3).await;
    let net = cluster.net.take().expect("proxied");
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    for round in 0..rounds() {
        net.degrade(Duration::from_millis(20), 0.005);
        for b in 0..3 {
            produce(&mut client, &mut ledger, &format!("r{round}-b{b}"), 12).await;
        }
        let leader = client.current().expect("a leader answered").to_string();
        let leader_id = cluster.node_at(&leader).id;
        let victim = if round % 2 == 0 {
            leader_id
        } else {
            leader_id % 3 + 1
        };
        net.isolate(victim);
        for b in 0..3 {
            produce(&mut client, &mut ledger, &format!("r{round}-cut{b}"), 12).await;
        }
        net.heal();
        let leader = client.current().expect("a leader answered").to_string();
        cluster.node_at(&leader).kill9();
        for b in 0..2 {
            produce(&mut client, &mut ledger, &format!("r{round}-kill{b}"), 12).await;
        }
        cluster.node_at(&leader).start();
    }
    net.degrade(Duration::ZERO, 0.0);
    check(&cluster, &ledger).await;
}

/// Five nodes: with the leader and one follower cut off, the other three elect a leader and
/// take writes; healed, and after a follower's kill and restart, all five agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_take_writes_with_two_cut_off_and_all_five_agree() {
    let mut cluster = Cluster::start_proxied(5).await;
    let net = cluster.net.take().expect("proxied");
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    for b in 0..3 {
        produce(&mut client, &mut ledger, &format!("five{b}"), 12).await;
    }
    let leader = client.current().expect("a leader answered").to_string();
    let leader_id = cluster.node_at(&leader).id;
    let follower_id = leader_id % 5 + 1;
    net.isolate(leader_id);
    net.isolate(follower_id);
    for b in 0..3 {
        produce(&mut client, &mut ledger, &format!("three-of-five{b}"), 12).await;
    }
    let new_leader = client.current().expect("a leader answered").to_string();
    let new_id = cluster.node_at(&new_leader).id;
    assert!(
        ![leader_id, follower_id].contains(&new_id),
        "the majority's leader (node {new_id}) is not one of the cut-off nodes"
    );
    net.heal();
    let other = (1..=5).find(|id| *id != new_id).expect("another node");
    cluster.node(other).kill9();
    for b in 0..2 {
        produce(&mut client, &mut ledger, &format!("healed{b}"), 12).await;
    }
    cluster.node(other).start();
    check(&cluster, &ledger).await;
}

/// Runs the CLI; its stdout, after asserting it succeeded.
async fn cli(args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_obelisk"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The voters a node's Metadata lists.
async fn voters(url: &str) -> Vec<u64> {
    let mut c = client::connect(url).await.unwrap();
    let m = c
        .metadata(obelisk::proto::MetadataRequest { topics: Vec::new() })
        .await
        .unwrap()
        .into_inner();
    let mut v: Vec<u64> = m
        .nodes
        .iter()
        .filter(|n| n.voter)
        .map(|n| n.node_id)
        .collect();
    v.sort_unstable();
    v
}

/// A node started with `--join` is added with `obelisk cluster add-node`, catches up on every
/// record written before and serves them; a node removed with `remove-node` no longer counts:
/// with it stopped, one more node can die and the remaining two of three still take writes
/// (had it stayed a member, two of four would be no majority).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_to_a_running_cluster_catches_up_and_a_removed_one_no_longer_counts() {
    let mut cluster = Cluster::start(3).await;
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    for b in 0..4 {
        produce(&mut client, &mut ledger, &format!("three{b}"), 12).await;
    }
    let raft4 = free_port();
    let addr4 = format!("127.0.0.1:{raft4}");
    cluster.add(4, raft4, format!("4={addr4}"), String::new(), true);
    let node2 = cluster.node(2).grpc_url();
    let added = cli(vec![
        "cluster".into(),
        "add-node".into(),
        "4".into(),
        addr4,
        "--server".into(),
        node2.clone(),
        "--json".into(),
    ])
    .await;
    let added: serde_json::Value = serde_json::from_str(&added).unwrap();
    let voter4 = added["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["node_id"] == 4 && n["voter"] == true);
    assert!(voter4, "node 4 is a voter: {added}");
    assert_eq!(voters(&node2).await, vec![1, 2, 3, 4]);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    for b in 0..2 {
        produce(&mut client, &mut ledger, &format!("four{b}"), 12).await;
    }
    // Node 4 holds everything, the records from before it joined included.
    check(&cluster, &ledger).await;

    cli(vec![
        "cluster".into(),
        "remove-node".into(),
        "1".into(),
        "--server".into(),
        node2.clone(),
    ])
    .await;
    cluster.node(1).kill9();
    assert_eq!(voters(&node2).await, vec![2, 3, 4]);
    cluster.node(3).kill9();
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    for b in 0..2 {
        produce(&mut client, &mut ledger, &format!("two-of-three{b}"), 12).await;
    }
    cluster.node(3).start();
    check(&cluster, &ledger).await;
}

/// With a snapshot every 20 log entries, a follower that was down while the others wrote far
/// more (and purged their Raft logs behind their snapshots) is caught up by the leader from a
/// snapshot and then holds every record, at the same offsets as the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_while_the_log_was_purged_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start_with(3, &["--raft-snapshot-every", "20"]).await;
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    for b in 0..5 {
        produce(&mut client, &mut ledger, &format!("before{b}"), 12).await;
    }
    let leader = client.current().expect("a leader answered").to_string();
    let down = cluster.node_at(&leader).id % 3 + 1;
    cluster.node(down).kill9();
    // A commit while the node is down: its log entry is purged behind a snapshot below, so the
    // node can only learn it from the snapshot's metadata.
    let committed: Vec<(u32, u64)> = (0..PARTITIONS).map(|p| (p, 10 + u64::from(p))).collect();
    commit(&leader, "snapped", &committed).await;
    for b in 0..70 {
        produce(&mut client, &mut ledger, &format!("while-down{b}"), 12).await;
    }
    cluster.node(down).start();
    for b in 0..2 {
        produce(&mut client, &mut ledger, &format!("after{b}"), 12).await;
    }
    check(&cluster, &ledger).await;
    let log = std::fs::read_to_string(cluster.node(down).dir.join("node.log")).unwrap();
    assert!(
        log.contains("installed a snapshot"),
        "node {down} caught up by a snapshot:\n{log}"
    );
    let url = cluster.node(down).grpc_url();
    assert_eq!(
        committed_offsets(&url, "snapped").await,
        committed,
        "node {down} has the offsets committed while it was down"
    );
}

/// Commits `offsets` of `group` in the topic through the node at `url` (the leader).
async fn commit(url: &str, group: &str, offsets: &[(u32, u64)]) {
    let mut c = client::connect(url).await.unwrap();
    c.commit(pb::CommitRequest {
        topic: TOPIC.into(),
        group: group.into(),
        offsets: offsets
            .iter()
            .map(|&(partition, offset)| pb::PartitionOffset { partition, offset })
            .collect(),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// The group's committed offsets in the topic on the node at `url`, by partition.
async fn committed_offsets(url: &str, group: &str) -> Vec<(u32, u64)> {
    let mut c = client::connect(url).await.unwrap();
    let g = c
        .describe_group(pb::DescribeGroupRequest {
            group: group.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut out: Vec<(u32, u64)> = g
        .partitions
        .into_iter()
        .filter(|p| p.topic == TOPIC)
        .map(|p| (p.partition, p.committed_offset))
        .collect();
    out.sort_unstable();
    out
}

/// A follower behind the leader (its links slowed) is not the judge of offsets it has not
/// applied yet: a commit of the leader's ends through it is forwarded and stored, and a reset
/// to latest through it commits the leader's ends, not its own older ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_forwards_commits_and_resets_the_leader_decides() {
    let mut cluster = Cluster::start_proxied(3).await;
    let net = cluster.net.take().expect("proxied");
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    produce(&mut client, &mut ledger, "first", 12).await;
    let leader = client.current().expect("a leader answered").to_string();
    let leader_id = cluster.node_at(&leader).id;
    let slow = leader_id % 3 + 1;
    net.degrade_node(slow, Duration::from_millis(400), 0.0);
    for b in 0..3 {
        produce(&mut client, &mut ledger, &format!("lagged{b}"), 12).await;
    }
    let mut ends: Vec<(u32, u64)> = (0..PARTITIONS)
        .map(|p| {
            let end = ledger
                .acked
                .iter()
                .filter(|(q, _, _)| *q == p)
                .map(|(_, o, _)| o + 1)
                .max()
                .unwrap_or(0);
            (p, end)
        })
        .collect();
    ends.sort_unstable();
    let url = cluster.node(slow).grpc_url();
    let mut c = client::connect(&url).await.unwrap();
    let mut req = tonic::Request::new(pb::CommitRequest {
        topic: TOPIC.into(),
        group: "behind".into(),
        offsets: ends
            .iter()
            .map(|&(partition, offset)| pb::PartitionOffset { partition, offset })
            .collect(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("obelisk-forward", "1".parse().unwrap());
    c.commit(req)
        .await
        .expect("the leader's ends, committed through a follower behind it");
    assert_eq!(committed_offsets(&url, "behind").await, ends);
    let port = cluster.node(slow).http;
    let (code, body) = tokio::task::spawn_blocking(move || {
        cluster_support::http(
            port,
            "POST",
            &format!("/topics/{TOPIC}/reset"),
            r#"{"group":"reset-behind","to":"latest"}"#,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut reset: Vec<(u32, u64)> = answer["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            (
                u32::try_from(o["partition"].as_u64().unwrap()).unwrap(),
                o["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    reset.sort_unstable();
    assert_eq!(reset, ends, "the reset answers the leader's ends: {body}");
    assert_eq!(committed_offsets(&url, "reset-behind").await, ends);
    net.degrade_node(slow, Duration::ZERO, 0.0);
    check(&cluster, &ledger).await;
}

/// A producer id granted through one follower is usable through another that is behind (its
/// links slowed): that node waits to apply the grant instead of refusing "unknown producer id".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_id_granted_through_one_follower_is_usable_through_a_lagging_one() {
    let mut cluster = Cluster::start_proxied(3).await;
    let net = cluster.net.take().expect("proxied");
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    produce(&mut client, &mut ledger, "first", 3).await;
    let leader = client.current().expect("a leader answered").to_string();
    let leader_id = cluster.node_at(&leader).id;
    let granting = leader_id % 3 + 1;
    let slow = granting % 3 + 1;
    assert_ne!(slow, leader_id);
    net.degrade_node(slow, Duration::from_millis(400), 0.0);
    let forwarded = |msg| {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut()
            .insert("obelisk-forward", "1".parse().unwrap());
        req
    };
    let mut a = client::connect(&cluster.node(granting).grpc_url())
        .await
        .unwrap();
    let mut b = client::connect(&cluster.node(slow).grpc_url())
        .await
        .unwrap();
    for i in 0..3 {
        let grant = a
            .init_producer(forwarded(pb::InitProducerRequest { producer_id: None }))
            .await
            .unwrap()
            .into_inner();
        let value = format!("through-the-slow-one-{i}");
        let mut req = tonic::Request::new(pb::ProduceRequest {
            topic: TOPIC.into(),
            records: vec![pb::ProducerRecord {
                value: value.clone().into(),
                partition: Some(0),
                ..Default::default()
            }],
            idempotence: Some(pb::IdempotentProduce {
                producer_id: grant.producer_id,
                producer_epoch: grant.producer_epoch,
                sequences: [(0, 0)].into(),
            }),
        });
        req.metadata_mut()
            .insert("obelisk-forward", "1".parse().unwrap());
        let ack = b
            .produce(req)
            .await
            .unwrap_or_else(|e| panic!("produce {i} with {grant:?}: {e:?}"))
            .into_inner()
            .acks[0];
        ledger.acked.push((ack.partition, ack.offset, value));
    }
    net.degrade_node(slow, Duration::ZERO, 0.0);
    check(&cluster, &ledger).await;
}
