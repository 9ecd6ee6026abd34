//! replication (issue 17): three real `obelisk serve` processes (the built binary) on loopback
//! ports form a cluster. Clients log every acknowledged record; the leader is killed with
//! SIGKILL, produces must succeed again on a new leader, the dead node restarts and catches up;
//! at the end a checker reads every partition on every node: each acknowledged record is there
//! exactly once, at the offset its ack named, and every replica holds the same records in the
//! same order.
//!
//! Rounds: `OBELISK_CHAOS_ROUNDS` (default 2, the CI run; `scripts/chaos.sh` runs 50).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use obelisk::client::{self, LeaderClient};
use obelisk::proto as pb;

/// Upper bound for anything these tests wait for, so a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);
const TOPIC: &str = "chaos";
const PARTITIONS: u32 = 3;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node: its ports, its data directory, and its process while it runs.
struct Node {
    id: u64,
    grpc: u16,
    dir: PathBuf,
    peers: String,
    child: Option<Child>,
}

impl Node {
    fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    fn start(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_obelisk"))
            .args(["serve", "--tcp-addr", "off", "--http-addr", "off"])
            .args(["--grpc-addr", &format!("127.0.0.1:{}", self.grpc)])
            .args(["--node-id", &self.id.to_string(), "--peers", &self.peers])
            .args(["--default-partitions", &PARTITIONS.to_string()])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .env("OBELISK_LOG_LEVEL", "warn,obelisk=info")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the obelisk binary starts");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Cluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(n: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let raft_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peers = raft_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<Node> = (1..=n)
            .map(|id| {
                let d = dir.path().join(format!("node{id}"));
                std::fs::create_dir_all(&d).unwrap();
                Node {
                    id,
                    grpc: free_port(),
                    dir: d,
                    peers: peers.clone(),
                    child: None,
                }
            })
            .collect();
        for node in &mut nodes {
            node.start();
        }
        Self { nodes, _dir: dir }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::grpc_url).collect()
    }

    fn node_at(&mut self, url: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.grpc_url() == url)
            .expect("a node of the cluster")
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(n.dir.join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                format!(
                    "--- node {} ---\n{}",
                    n.id,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Every acknowledged record: its value and where the ack said it landed.
#[derive(Default)]
struct Ledger {
    acked: Vec<(u32, u64, String)>,
}

/// Produces one batch of `n` records (values unique) through the leader, logging the acks.
async fn produce(client: &mut LeaderClient, ledger: &mut Ledger, tag: &str, n: u32) {
    let values: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let req = pb::ProduceRequest {
        topic: TOPIC.into(),
        records: values
            .iter()
            .enumerate()
            .map(|(i, v)| pb::ProducerRecord {
                value: Bytes::from(v.clone()),
                partition: Some(i as u32 % PARTITIONS),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let resp = client
        .produce(req)
        .await
        .unwrap_or_else(|e| panic!("produce {tag} failed: {e}"));
    assert_eq!(resp.acks.len(), values.len());
    for (ack, v) in resp.acks.into_iter().zip(values) {
        ledger.acked.push((ack.partition, ack.offset, v));
    }
}

/// Every record of every partition on the node at `url`.
async fn read_all(url: &str) -> Result<BTreeMap<u32, Vec<(u64, String)>>, String> {
    let mut c = client::connect(url).await.map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        let mut records = Vec::new();
        loop {
            let resp = c
                .fetch(pb::FetchRequest {
                    topic: TOPIC.into(),
                    partition: p,
                    offset: records.len() as u64,
                    max_records: 10_000,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            if resp.records.is_empty() {
                break;
            }
            for r in resp.records {
                records.push((r.offset, String::from_utf8_lossy(&r.value).into_owned()));
            }
        }
        out.insert(p, records);
    }
    Ok(out)
}

/// Waits until every node holds the same records, then checks them against the ledger.
async fn check(cluster: &Cluster, ledger: &Ledger) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let urls = cluster.urls();
    let replicas = loop {
        let mut all = Vec::new();
        for u in &urls {
            match read_all(u).await {
                Ok(r) => all.push(r),
                Err(_) => break,
            }
        }
        let acked_ends: HashMap<u32, u64> =
            ledger
                .acked
                .iter()
                .fold(HashMap::new(), |mut m, (p, o, _)| {
                    let e = m.entry(*p).or_insert(0);
                    *e = (*e).max(o + 1);
                    m
                });
        let complete = all.len() == urls.len()
            && all.iter().all(|r| r == &all[0])
            && acked_ends
                .iter()
                .all(|(p, end)| all[0].get(p).map_or(0, |v| v.len() as u64) >= *end);
        if complete {
            break all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replicas did not converge in time\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (i, replica) in replicas.iter().enumerate() {
        let mut seen: HashMap<&str, (u32, u64)> = HashMap::new();
        for (p, records) in replica {
            for (k, (offset, value)) in records.iter().enumerate() {
                assert_eq!(
                    *offset,
                    k as u64,
                    "node {}: offsets of {p} are dense",
                    i + 1
                );
                assert!(
                    seen.insert(value, (*p, *offset)).is_none(),
                    "node {}: {value:?} is stored twice",
                    i + 1
                );
            }
        }
        for (p, offset, value) in &ledger.acked {
            assert_eq!(
                seen.get(value.as_str()),
                Some(&(*p, *offset)),
                "node {}: acknowledged {value:?} is not at {p}/{offset}",
                i + 1
            );
        }
    }
}

fn rounds() -> usize {
    std::env::var("OBELISK_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_leader_kills_on_every_replica() {
    let mut cluster = Cluster::start(3);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    for round in 0..rounds() {
        for b in 0..4 {
            produce(&mut client, &mut ledger, &format!("r{round}-b{b}"), 12).await;
        }
        let leader = client.current().expect("a leader answered").to_string();
        cluster.node_at(&leader).kill9();
        // The survivors elect a new leader and take writes again.
        for b in 0..3 {
            produce(&mut client, &mut ledger, &format!("r{round}-after{b}"), 12).await;
        }
        assert_ne!(
            client.current(),
            Some(leader.as_str()),
            "a new leader took the writes"
        );
        cluster.node_at(&leader).start();
    }
    check(&cluster, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_grpc_produce_naming_the_leader() {
    let cluster = Cluster::start(3);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    produce(&mut client, &mut ledger, "first", 3).await;
    let leader = client.current().unwrap().to_string();
    let follower = cluster.urls().into_iter().find(|u| *u != leader).unwrap();
    let mut c = client::connect(&follower).await.unwrap();
    let err = c
        .produce(pb::ProduceRequest {
            topic: TOPIC.into(),
            records: vec![pb::ProducerRecord {
                value: Bytes::from_static(b"x"),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert_eq!(
        client::leader_hint(&err).as_deref(),
        Some(leader.as_str()),
        "{err:?}"
    );
    assert!(
        err.message().contains("not the cluster leader"),
        "{}",
        err.message()
    );
    // Asked to forward, the follower hands the write to the leader.
    let mut req = tonic::Request::new(pb::ProduceRequest {
        topic: TOPIC.into(),
        records: vec![pb::ProducerRecord {
            value: Bytes::from_static(b"forwarded"),
            partition: Some(0),
            ..Default::default()
        }],
        ..Default::default()
    });
    req.metadata_mut()
        .insert("obelisk-forward", "1".parse().unwrap());
    let ack = c.produce(req).await.unwrap().into_inner().acks[0];
    ledger
        .acked
        .push((ack.partition, ack.offset, "forwarded".into()));
    check(&cluster, &ledger).await;
    let _ = Path::new("");
}
