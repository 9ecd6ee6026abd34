//! replication (issue 17): three real `obelisk serve` processes (the built binary) on loopback
//! ports form a cluster. Clients log every acknowledged record; the leader is killed with
//! SIGKILL, produces must succeed again on a new leader, the dead node restarts and catches up;
//! at the end a checker reads every partition on every node: each acknowledged record is there
//! exactly once, at the offset its ack named, and every replica holds the same records in the
//! same order.
//!
//! Rounds: `OBELISK_CHAOS_ROUNDS` (default 2, the CI run; `scripts/chaos.sh` runs 50).

mod ports;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use obelisk::client::{self, LeaderClient};
use obelisk::proto as pb;
use ports::free_port;

/// Upper bound for anything these tests wait for, so a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);
const TOPIC: &str = "chaos";
const PARTITIONS: u32 = 3;

/// One node: its ports, its data directory, and its process while it runs.
struct Node {
    id: u64,
    grpc: u16,
    http: u16,
    tcp: u16,
    dir: PathBuf,
    peers: String,
    /// More `serve` arguments (security settings).
    extra: Vec<String>,
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
            .args(["serve", "--tcp-addr", &format!("127.0.0.1:{}", self.tcp)])
            .args(["--grpc-addr", &format!("127.0.0.1:{}", self.grpc)])
            .args(["--http-addr", &format!("127.0.0.1:{}", self.http)])
            .args(["--node-id", &self.id.to_string(), "--peers", &self.peers])
            .args(["--default-partitions", &PARTITIONS.to_string()])
            .args(&self.extra)
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
        Self::start_with(n, |_| Vec::new())
    }

    /// A cluster whose nodes get more `serve` arguments, made from the cluster's directory.
    fn start_with(n: u64, extra: impl Fn(&std::path::Path) -> Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let extra = extra(dir.path());
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
                    http: free_port(),
                    tcp: free_port(),
                    dir: d,
                    peers: peers.clone(),
                    extra: extra.clone(),
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

    /// Waits until every node is ready (`/health/ready` 200): it knows the leader and is not
    /// behind it. A follower learns of a new leader with its first AppendEntries; until then it
    /// rightly answers "no leader is known yet", so a test that checks what a follower names
    /// waits for this first.
    async fn await_ready(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        for node in &self.nodes {
            loop {
                let port = node.http;
                let answer =
                    tokio::task::spawn_blocking(move || try_http(port, "GET", "/health/ready", ""))
                        .await
                        .unwrap();
                match answer {
                    Ok((200, _)) => break,
                    other => assert!(
                        tokio::time::Instant::now() < deadline,
                        "node {} never became ready: {other:?}\n{}",
                        node.id,
                        self.logs()
                    ),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(n.dir.join("node.log")).unwrap_or_default();
                // A panic anywhere in the log, then its end.
                let lines: Vec<&str> = log.lines().collect();
                let panics: Vec<String> = lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.contains("panicked"))
                    .take(3)
                    .map(|(i, _)| lines[i..lines.len().min(i + 3)].join("\n"))
                    .collect();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                format!(
                    "--- node {} ---\n{}{}",
                    n.id,
                    panics
                        .iter()
                        .map(|l| format!("{l}\n...\n"))
                        .collect::<String>(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Every acknowledged record (its value and where the ack said it landed), and the values of
/// requests whose outcome is unknown (the node died with the request in flight): those may be
/// stored, at most once.
#[derive(Default)]
struct Ledger {
    acked: Vec<(u32, u64, String)>,
    maybe: Vec<String>,
}

/// Produces one batch of `n` records (values unique) through the leader, logging the acks; a
/// batch whose outcome is unknown is logged as such and sent again under new values, until one
/// is acknowledged (within PATIENCE).
async fn produce(client: &mut LeaderClient, ledger: &mut Ledger, tag: &str, n: u32) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for attempt in 0.. {
        let values: Vec<String> = (0..n).map(|i| format!("{tag}.{attempt}-{i}")).collect();
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
        match client.produce(req).await {
            Ok(resp) => {
                assert_eq!(resp.acks.len(), values.len());
                for (ack, v) in resp.acks.into_iter().zip(values) {
                    ledger.acked.push((ack.partition, ack.offset, v));
                }
                return;
            }
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "produce {tag} not acknowledged in time: {e}"
                );
                ledger.maybe.extend(values);
            }
        }
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
        let known: std::collections::HashSet<&str> = ledger
            .acked
            .iter()
            .map(|(_, _, v)| v.as_str())
            .chain(ledger.maybe.iter().map(String::as_str))
            .collect();
        if let Some(v) = seen.keys().find(|v| !known.contains(**v)) {
            panic!("node {}: {v:?} was never produced", i + 1);
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

/// One HTTP/1.1 request over a fresh connection; the status code and the body.
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    try_http(port, method, path, body).unwrap()
}

/// [`http`], with a failure to connect, write or read returned instead of panicking.
fn try_http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(PATIENCE))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {out:?}")))?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
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
    cluster.await_ready().await;
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
    // Any node describes the cluster: three voters, one leader, every partition on all three.
    let m = c
        .metadata(pb::MetadataRequest {
            topics: vec![TOPIC.into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.nodes.len(), 3, "{m:?}");
    assert!(m.nodes.iter().all(|n| n.voter), "{m:?}");
    let leader_id = m.leader.expect("a leader");
    let leader_node = m.nodes.iter().find(|n| n.node_id == leader_id).unwrap();
    assert_eq!(format!("http://{}", leader_node.grpc_addr), leader);
    assert_eq!(m.partitions.len(), PARTITIONS as usize, "{m:?}");
    assert!(
        m.partitions
            .iter()
            .all(|p| p.leader == leader_id && p.replicas.len() == 3)
    );
    // REST produce on a follower is forwarded to the leader.
    let follower_node = cluster
        .nodes
        .iter()
        .find(|n| n.grpc_url() == follower)
        .unwrap();
    let (code, body) = http(
        follower_node.http,
        "POST",
        &format!("/topics/{TOPIC}/messages"),
        r#"{"records":[{"value":"via-rest","partition":1}]}"#,
    );
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
        // A chunked body: the JSON is between the chunk-size lines.
        serde_json::from_str(body.lines().nth(1).unwrap_or("")).unwrap()
    });
    let ack = &v["acks"][0];
    ledger.acked.push((
        ack["partition"].as_u64().unwrap() as u32,
        ack["offset"].as_u64().unwrap(),
        "via-rest".into(),
    ));
    // The leader reports itself in the metrics.
    let leader_node = cluster
        .nodes
        .iter()
        .find(|n| n.grpc_url() == leader)
        .unwrap();
    let (code, page) = http(leader_node.http, "GET", "/metrics", "");
    assert_eq!(code, 200);
    let line = page
        .lines()
        .find(|l| l.starts_with("obelisk_raft_leader{"))
        .unwrap_or_else(|| panic!("no obelisk_raft_leader in\n{page}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert!(page.contains("obelisk_raft_term{"), "{page}");
    check(&cluster, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotent_producer_writes_once_through_the_leader() {
    let cluster = Cluster::start(3);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    // Finds the leader (and creates the topic).
    produce(&mut client, &mut ledger, "plain", 3).await;
    let leader = client.current().unwrap().to_string();
    let producer = client::Producer::new(
        client::connect(&leader).await.unwrap(),
        client::ProducerConfig::default(),
    )
    .await
    .expect("an idempotent producer id from the cluster");
    let mut acks = Vec::new();
    for i in 0..50 {
        let value = format!("idem-{i}");
        let ack = producer
            .send(
                TOPIC,
                pb::ProducerRecord {
                    value: Bytes::from(value.clone()),
                    partition: Some(i % PARTITIONS),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        acks.push((value, ack));
    }
    for (value, ack) in acks {
        let ack = ack.await.unwrap().unwrap();
        ledger.acked.push((ack.partition, ack.offset, value));
    }
    producer.close().await;
    check(&cluster, &ledger).await;
}

/// A producer id granted through a follower can be used through that follower at once: the
/// follower checks the identity before it forwards the produce, so it must have applied the
/// grant before answering InitProducer (it did not, and the CLI's first produce through a
/// follower was refused now and then with "unknown producer id").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_id_granted_through_a_follower_is_usable_there_at_once() {
    let cluster = Cluster::start(3);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    // Finds the leader and creates the topic.
    produce(&mut client, &mut ledger, "first", 3).await;
    cluster.await_ready().await;
    let leader = client.current().unwrap().to_string();
    let follower = cluster.urls().into_iter().find(|u| *u != leader).unwrap();
    let mut f = client::connect(&follower).await.unwrap();
    for i in 0..20 {
        let grant = f
            .init_producer(forwarded(pb::InitProducerRequest { producer_id: None }))
            .await
            .unwrap()
            .into_inner();
        let value = format!("granted-{i}");
        let ack = f
            .produce(forwarded(pb::ProduceRequest {
                topic: TOPIC.into(),
                records: vec![pb::ProducerRecord {
                    value: Bytes::from(value.clone()),
                    partition: Some(1),
                    ..Default::default()
                }],
                idempotence: Some(pb::IdempotentProduce {
                    producer_id: grant.producer_id,
                    producer_epoch: grant.producer_epoch,
                    sequences: [(1, 0)].into(),
                }),
            }))
            .await
            .unwrap_or_else(|e| panic!("produce {i} with {grant:?}: {e:?}"))
            .into_inner()
            .acks[0];
        ledger.acked.push((ack.partition, ack.offset, value));
    }
    check(&cluster, &ledger).await;
}

/// The original's producers work against any node: pipelined legacy frames sent to a follower
/// are forwarded to the leader, each frame gets its own `OK`, and every replica stores each
/// record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_frames_on_a_follower_are_each_acknowledged_and_stored_once() {
    use obelisk::legacy::codec::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cluster = Cluster::start(3);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    // Finds the leader and creates the topic.
    produce(&mut client, &mut ledger, "first", 3).await;
    let leader = client.current().unwrap().to_string();
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.grpc_url() != leader)
        .unwrap();
    let values: Vec<String> = (0..40).map(|i| format!("legacy-{i}")).collect();
    let mut frames = Vec::new();
    for (i, v) in values.iter().enumerate() {
        Message {
            timestamp: 1_700_000_000_000 + i as i64,
            topic: Bytes::from_static(TOPIC.as_bytes()),
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from(v.clone()),
        }
        .encode_frame(&mut frames);
    }
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", follower.tcp))
        .await
        .unwrap();
    s.write_all(&frames).await.unwrap(); // one write: the frames arrive together
    let mut replies = vec![0u8; 3 * values.len()];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut replies))
        .await
        .expect("replies in time")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&replies),
        "OK\n".repeat(values.len()),
        "every frame is acknowledged"
    );
    // Acknowledged: on the leader now, each once (check() then proves every replica agrees).
    let stored = read_all(&leader).await.unwrap();
    for v in &values {
        let n = stored.values().flatten().filter(|(_, r)| r == v).count();
        assert_eq!(n, 1, "{v:?} is stored once on the leader");
    }
    for (p, records) in &stored {
        let mut last = None;
        for (offset, value) in records {
            if let Some(n) = value.strip_prefix("legacy-") {
                ledger.acked.push((*p, *offset, value.clone()));
                // Forwarded in order: each partition holds its frames in the order they were sent.
                let n: usize = n.parse().unwrap();
                assert!(
                    last < Some(n),
                    "partition {p}: legacy-{n} stored after legacy-{last:?}"
                );
                last = Some(n);
            }
        }
    }
    check(&cluster, &ledger).await;
}

/// The CLI does not route: its writes to a follower are forwarded to the leader (the CLI asks
/// with `obelisk-forward`), and what it acknowledges is on every replica once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_produces_through_a_follower() {
    let cluster = Cluster::start(3);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    // Finds the leader and creates the topic.
    produce(&mut client, &mut ledger, "first", 3).await;
    let leader = client.current().unwrap().to_string();
    let follower = cluster.urls().into_iter().find(|u| *u != leader).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_obelisk"))
            .args([
                "produce",
                TOPIC,
                "--partition",
                "2",
                "--value",
                "from-the-cli",
            ])
            .args(["--acks", "--server", &follower])
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
    let stored = read_all(&leader).await.unwrap();
    let at: Vec<(u32, u64)> = stored
        .iter()
        .flat_map(|(p, rs)| rs.iter().map(move |(o, v)| (*p, *o, v)))
        .filter(|(_, _, v)| v.as_str() == "from-the-cli")
        .map(|(p, o, _)| (p, o))
        .collect();
    assert_eq!(at.len(), 1, "stored once on the leader: {at:?}");
    assert_eq!(at[0].0, 2, "in the partition asked for");
    assert_eq!(
        stdout.trim(),
        format!("{} {}", at[0].0, at[0].1),
        "the CLI printed where it landed"
    );
    ledger.acked.push((at[0].0, at[0].1, "from-the-cli".into()));
    check(&cluster, &ledger).await;
}

// ==== cluster metadata (issue 17, cluster-meta) ====

fn tp(partition: u32, offset: u64) -> pb::PartitionOffset {
    pb::PartitionOffset { partition, offset }
}

/// The group's committed offsets on the node at `url`, by partition.
async fn committed(url: &str, group: &str) -> Result<BTreeMap<u32, u64>, String> {
    let mut c = client::connect(url).await.map_err(|e| e.to_string())?;
    let g = c
        .describe_group(pb::DescribeGroupRequest {
            group: group.into(),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok(g.partitions
        .into_iter()
        .filter(|p| p.topic == TOPIC)
        .map(|p| (p.partition, p.committed_offset))
        .collect())
}

/// Waits until every node in `urls` returns `want` as the group's committed offsets.
async fn await_committed(
    cluster: &Cluster,
    urls: &[String],
    group: &str,
    want: &BTreeMap<u32, u64>,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for url in urls {
        loop {
            let got = committed(url, group).await;
            if got.as_ref() == Ok(want) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{url}: the committed offsets of {group} are {got:?}, not {want:?}\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A request asking a follower to forward it to the leader.
fn forwarded<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("obelisk-forward", "1".parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_leader_kill_on_every_node() {
    let mut cluster = Cluster::start(3);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    for b in 0..3 {
        produce(&mut client, &mut ledger, &format!("b{b}"), 12).await;
    }
    cluster.await_ready().await;
    let leader = client.current().unwrap().to_string();
    let followers: Vec<String> = cluster
        .urls()
        .into_iter()
        .filter(|u| *u != leader)
        .collect();
    let mut c = client::connect(&leader).await.unwrap();
    c.commit(pb::CommitRequest {
        topic: TOPIC.into(),
        group: "g".into(),
        offsets: vec![tp(0, 4), tp(1, 7), tp(2, 12)],
        ..Default::default()
    })
    .await
    .unwrap();
    // A follower redirects a commit (gRPC), or forwards it when asked.
    let mut f = client::connect(&followers[0]).await.unwrap();
    let err = f
        .commit(pb::CommitRequest {
            topic: TOPIC.into(),
            group: "g".into(),
            offsets: vec![tp(0, 5)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert_eq!(client::leader_hint(&err).as_deref(), Some(leader.as_str()));
    f.commit(forwarded(pb::CommitRequest {
        topic: TOPIC.into(),
        group: "g".into(),
        offsets: vec![tp(0, 6)],
        ..Default::default()
    }))
    .await
    .unwrap();
    // Forwarded, the leader still checks it: beyond the log end is refused.
    let err = f
        .commit(forwarded(pb::CommitRequest {
            topic: TOPIC.into(),
            group: "g".into(),
            offsets: vec![tp(0, 1_000)],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    // A reset through REST on a follower is forwarded too; a second group, deleted later.
    let follower_http = cluster
        .nodes
        .iter()
        .find(|n| n.grpc_url() == followers[1])
        .unwrap()
        .http;
    let (code, body) = http(
        follower_http,
        "POST",
        &format!("/topics/{TOPIC}/reset"),
        r#"{"group":"doomed","to":"latest"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let want: BTreeMap<u32, u64> = [(0, 6), (1, 7), (2, 12)].into();
    let latest: BTreeMap<u32, u64> = [(0, 12), (1, 12), (2, 12)].into();
    await_committed(&cluster, &cluster.urls(), "g", &want).await;
    await_committed(&cluster, &cluster.urls(), "doomed", &latest).await;

    cluster.node_at(&leader).kill9();
    produce(&mut client, &mut ledger, "after", 3).await;
    let new_leader = client.current().unwrap().to_string();
    assert_ne!(new_leader, leader, "a new leader took the writes");
    // Deleting a group on the new leader deletes it everywhere.
    client::connect(&new_leader)
        .await
        .unwrap()
        .delete_group(pb::DeleteGroupRequest {
            group: "doomed".into(),
        })
        .await
        .unwrap();
    cluster.node_at(&leader).start();
    // Every node, the restarted one included, returns what was committed.
    await_committed(&cluster, &cluster.urls(), "g", &want).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for url in cluster.urls() {
        loop {
            match committed(&url, "doomed").await {
                Err(e) if e.contains("does not exist") => break,
                other => assert!(
                    tokio::time::Instant::now() < deadline,
                    "{url}: doomed still there: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    check(&cluster, &ledger).await;
}

/// A group consumer polls and commits through the leader; the leader is killed mid-way; it goes
/// on with the new leader from the committed offsets. It reads every acknowledged record once,
/// in offset order per partition (no gap, nothing twice), and nothing that was never produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reads_through_a_failover_without_gap_or_uncommitted_record() {
    let mut cluster = Cluster::start(3);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    for b in 0..4 {
        produce(&mut client, &mut ledger, &format!("before{b}"), 12).await;
    }
    let mut next: BTreeMap<u32, u64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let mut read: Vec<(u32, u64, String)> = Vec::new();
    // Polls once from the node at `url` and commits what it read; false when it failed.
    async fn step(
        url: &str,
        next: &mut BTreeMap<u32, u64>,
        read: &mut Vec<(u32, u64, String)>,
    ) -> bool {
        let Ok(mut c) = client::connect(url).await else {
            return false;
        };
        let Ok(resp) = c
            .poll(pb::PollRequest {
                topic: TOPIC.into(),
                group: "reader".into(),
                max_records: 10,
                ..Default::default()
            })
            .await
        else {
            return false;
        };
        let records = resp.into_inner().records;
        for r in &records {
            assert_eq!(
                r.offset, next[&r.partition],
                "partition {}: read from the committed offset, no gap and nothing twice",
                r.partition
            );
            next.insert(r.partition, r.offset + 1);
            read.push((
                r.partition,
                r.offset,
                String::from_utf8_lossy(&r.value).into_owned(),
            ));
        }
        let offsets = next.iter().map(|(p, o)| tp(*p, *o)).collect();
        c.commit(pb::CommitRequest {
            topic: TOPIC.into(),
            group: "reader".into(),
            offsets,
            ..Default::default()
        })
        .await
        .is_ok()
    }
    let leader = client.current().unwrap().to_string();
    for _ in 0..2 {
        assert!(
            step(&leader, &mut next, &mut read).await,
            "{}",
            cluster.logs()
        );
    }
    cluster.node_at(&leader).kill9();
    for b in 0..2 {
        produce(&mut client, &mut ledger, &format!("after{b}"), 12).await;
    }
    let new_leader = client.current().unwrap().to_string();
    // The next poll starts where the old leader's last commit put the group.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while read.len() < ledger.acked.len() {
        if !step(&new_leader, &mut next, &mut read).await {
            assert!(tokio::time::Instant::now() < deadline, "{}", cluster.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let known: std::collections::HashSet<&str> = ledger
        .acked
        .iter()
        .map(|(_, _, v)| v.as_str())
        .chain(ledger.maybe.iter().map(String::as_str))
        .collect();
    for (p, o, v) in &read {
        assert!(
            known.contains(v.as_str()),
            "{p}/{o}: {v:?} was never produced"
        );
    }
    for (p, o, v) in &ledger.acked {
        assert!(
            read.contains(&(*p, *o, v.clone())),
            "acknowledged {v:?} at {p}/{o} was not read"
        );
    }
    cluster.node_at(&leader).start();
    check(&cluster, &ledger).await;
}

const ROOT: &str = "root-token";
const ALICE: &str = "alice-token";

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// An ACL added on the leader (gRPC) or on a follower (REST, forwarded) holds on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_added_on_one_node_holds_on_all() {
    let cluster = Cluster::start_with(3, |dir| {
        let tokens = dir.join("tokens");
        let lines = [
            obelisk::auth::tokens::line_for(ROOT, "root"),
            obelisk::auth::tokens::line_for(ALICE, "alice"),
        ];
        std::fs::write(&tokens, lines.join("\n")).unwrap();
        vec![
            "--auth-token-file".into(),
            tokens.display().to_string(),
            "--super-users".into(),
            "root".into(),
        ]
    });
    // Find the leader as root (creating the topic).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let leader = 'found: loop {
        for url in cluster.urls() {
            let Ok(mut c) = client::connect(&url).await else {
                continue;
            };
            let req = with_token(
                pb::CreateTopicRequest {
                    name: TOPIC.into(),
                    ..Default::default()
                },
                ROOT,
            );
            match c.create_topic(req).await {
                Ok(_) => {}
                Err(e) if e.code() == tonic::Code::AlreadyExists => {}
                Err(_) => continue,
            }
            let m = c
                .metadata(with_token(pb::MetadataRequest::default(), ROOT))
                .await;
            if let Ok(m) = m {
                let m = m.into_inner();
                if m.leader == Some(m.node_id) {
                    break 'found url;
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let describe = |url: String| async move {
        let mut c = client::connect(&url).await.unwrap();
        c.describe_topic(with_token(
            pb::DescribeTopicRequest { name: TOPIC.into() },
            ALICE,
        ))
        .await
        .map(|_| ())
        .map_err(|e| e.code())
    };
    for url in cluster.urls() {
        assert_eq!(
            describe(url.clone()).await,
            Err(tonic::Code::PermissionDenied),
            "{url}: no ACL yet"
        );
    }
    let rule = pb::AclRule {
        principal: "alice".into(),
        resource_type: pb::AclResourceType::Topic as i32,
        name: TOPIC.into(),
        pattern: pb::AclPattern::Literal as i32,
        operation: pb::AclOperation::Describe as i32,
        effect: pb::AclEffect::Allow as i32,
    };
    let mut c = client::connect(&leader).await.unwrap();
    let added = c
        .add_acl(with_token(
            pb::AddAclRequest {
                acl: Some(rule.clone()),
            },
            ROOT,
        ))
        .await
        .unwrap()
        .into_inner()
        .added;
    assert!(added);
    let wait_for = |want: Result<(), tonic::Code>| {
        let urls = cluster.urls();
        async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            for url in urls {
                while describe(url.clone()).await != want {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{url}: not {want:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    wait_for(Ok(())).await;
    // Removed through a follower (gRPC, asking to be forwarded, as the CLI does): gone
    // everywhere.
    let follower = cluster.urls().into_iter().find(|u| *u != leader).unwrap();
    let mut req = with_token(pb::RemoveAclRequest { acl: Some(rule) }, ROOT);
    req.metadata_mut()
        .insert("obelisk-forward", "1".parse().unwrap());
    let mut f = client::connect(&follower).await.unwrap();
    assert!(f.remove_acl(req).await.unwrap().into_inner().removed);
    wait_for(Err(tonic::Code::PermissionDenied)).await;
}
/// The batching producer, given a follower first, finds the leader, and follows the next one
/// when the leader is killed: every record acknowledged, each stored once on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batching_producer_follows_the_leader_through_a_kill() {
    let mut cluster = Cluster::start(3);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    produce(&mut client, &mut ledger, "first", 3).await; // creates the topic
    let leader = client.current().unwrap().to_string();
    let mut nodes: Vec<String> = cluster
        .urls()
        .into_iter()
        .filter(|u| *u != leader)
        .collect();
    nodes.push(leader.clone()); // a follower first
    let producer = client::Producer::for_cluster(nodes, client::ProducerConfig::default())
        .await
        .expect("a producer on the cluster's leader");
    let send = |tag: &'static str| {
        let producer = &producer;
        async move {
            let mut acks = Vec::new();
            for i in 0..30u32 {
                let value = format!("{tag}-{i}");
                let record = pb::ProducerRecord {
                    value: Bytes::from(value.clone()),
                    partition: Some(i % PARTITIONS),
                    ..Default::default()
                };
                acks.push((value, producer.send(TOPIC, record).await.unwrap()));
            }
            let mut out = Vec::new();
            for (value, ack) in acks {
                let ack = ack
                    .await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{value}: {e}"));
                out.push((ack.partition, ack.offset, value));
            }
            out
        }
    };
    ledger.acked.extend(send("before").await);
    cluster.node_at(&leader).kill9();
    ledger.acked.extend(send("after").await);
    producer.close().await;
    cluster.node_at(&leader).start();
    check(&cluster, &ledger).await;
}
/// Readiness per node: every node of a cluster with a leader is ready and reports its role,
/// term and leader in `/health`; a node left alone (two of three killed) knows no leader and
/// answers 503 with the reason, until the others are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_leader_is_not_ready() {
    let mut cluster = Cluster::start(3);
    let mut client = LeaderClient::new(cluster.urls(), PATIENCE);
    let mut ledger = Ledger::default();
    produce(&mut client, &mut ledger, "first", 3).await;
    let leader = client.current().unwrap().to_string();
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.http).collect();
    let await_http = |port: u16, path: &'static str, want: u16, needle: &'static str| async move {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (code, body) = tokio::task::spawn_blocking(move || http(port, "GET", path, ""))
                .await
                .unwrap();
            if code == want && body.contains(needle) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{port}{path}: {code} {body}, not {want} with {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    for &port in &ports {
        await_http(port, "/ready", 200, "ready").await;
        let body = await_http(port, "/health", 200, "\"cluster\"").await;
        assert!(body.contains("\"term\""), "{body}");
    }
    let leader_http = cluster
        .nodes
        .iter()
        .find(|n| n.grpc_url() == leader)
        .unwrap()
        .http;
    await_http(leader_http, "/health", 200, "\"role\":\"leader\"").await;
    // Two of three gone: the survivor knows no leader.
    let survivor = cluster
        .nodes
        .iter()
        .position(|n| n.grpc_url() != leader)
        .unwrap();
    for i in 0..3 {
        if i != survivor {
            cluster.nodes[i].kill9();
        }
    }
    let survivor_http = cluster.nodes[survivor].http;
    let body = await_http(survivor_http, "/ready", 503, "no cluster leader").await;
    assert!(body.contains("not_ready"), "{body}");
    await_http(survivor_http, "/health/ready", 503, "no cluster leader").await;
    for i in 0..3 {
        if i != survivor {
            cluster.nodes[i].start();
        }
    }
    for &port in &ports {
        await_http(port, "/ready", 200, "ready").await;
    }
}
// ==== end cluster metadata ====
