//! The cluster harness of tests/cluster_ops.rs (issue 17, operations): real `obelisk serve`
//! processes on loopback ports, optionally with every node-to-node link through the
//! fault-injecting [`proxy`]; the ledger of acknowledged records and the Jepsen-style checker
//! (every acknowledged record exactly once, at its acknowledged offset, the same on every
//! replica). The same harness as tests/cluster.rs, plus the proxy, `--join` and removed nodes.
#![allow(dead_code)]

pub mod proxy;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use obelisk::client::{self, LeaderClient};
use obelisk::proto as pb;

/// Upper bound for anything these tests wait for, so a bug fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(60);
pub const TOPIC: &str = "chaos";
pub const PARTITIONS: u32 = 3;

#[path = "../ports/mod.rs"]
mod ports;
pub use ports::free_port;

/// One node: its ports, its data directory, and its process while it runs.
pub struct Node {
    pub id: u64,
    pub grpc: u16,
    pub http: u16,
    pub tcp: u16,
    pub dir: PathBuf,
    peers: String,
    /// `--raft-via`: this node's routes through the proxy (empty: direct).
    pub via: String,
    /// Started with `--join` (added to a running cluster).
    pub join: bool,
    pub raft: u16,
    /// More `serve` arguments.
    pub extra: Vec<String>,
    child: Option<Child>,
}

impl Node {
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    pub fn start(&mut self) {
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
            .args(if self.via.is_empty() {
                vec![]
            } else {
                vec!["--raft-via".to_string(), self.via.clone()]
            })
            .args(if self.join { &["--join"][..] } else { &[] })
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

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn kill9(&mut self) {
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

pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The proxy between the nodes, when started with one.
    pub net: Option<proxy::Network>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `n` nodes talking directly.
    pub async fn start(n: u64) -> Self {
        Self::launch(n, false, &[]).await
    }

    /// `n` nodes talking directly, each started with `extra` `serve` arguments too.
    pub async fn start_with(n: u64, extra: &[&str]) -> Self {
        Self::launch(n, false, extra).await
    }

    /// `n` nodes, every node-to-node link through the fault-injecting proxy.
    pub async fn start_proxied(n: u64) -> Self {
        Self::launch(n, true, &[]).await
    }

    async fn launch(n: u64, proxied: bool, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let raft_ports: BTreeMap<u64, u16> = (1..=n).map(|id| (id, free_port())).collect();
        let peers = raft_ports
            .iter()
            .map(|(id, p)| format!("{id}=127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let net = if proxied {
            let addrs = raft_ports
                .iter()
                .map(|(id, p)| (*id, SocketAddr::from(([127, 0, 0, 1], *p))))
                .collect();
            Some(proxy::Network::start(&addrs).await)
        } else {
            None
        };
        let mut cluster = Self {
            nodes: Vec::new(),
            net,
            dir,
        };
        for (id, raft) in raft_ports {
            let via = cluster.net.as_ref().map(|n| n.via(id)).unwrap_or_default();
            cluster.add(id, raft, peers.clone(), via, false);
            cluster.node(id).extra = extra.iter().map(ToString::to_string).collect();
        }
        for node in &mut cluster.nodes {
            node.start();
        }
        cluster
    }

    /// One more node (`join`: started now, to be added to the running cluster).
    pub fn add(&mut self, id: u64, raft: u16, peers: String, via: String, join: bool) {
        let d = self.dir.path().join(format!("node{id}"));
        std::fs::create_dir_all(&d).unwrap();
        let mut node = Node {
            id,
            grpc: free_port(),
            http: free_port(),
            tcp: free_port(),
            dir: d,
            peers,
            via,
            join,
            raft,
            extra: Vec::new(),
            child: None,
        };
        if join {
            node.start();
        }
        self.nodes.push(node);
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("a node")
    }

    /// The gRPC addresses of the running nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.running())
            .map(Node::grpc_url)
            .collect()
    }

    pub fn node_at(&mut self, url: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.grpc_url() == url)
            .expect("a node of the cluster")
    }

    pub fn logs(&self) -> String {
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
pub struct Ledger {
    pub acked: Vec<(u32, u64, String)>,
    pub maybe: Vec<String>,
}

/// Produces one batch of `n` records (values unique) through the leader, logging the acks; a
/// batch whose outcome is unknown is logged as such and sent again under new values, until one
/// is acknowledged (within PATIENCE).
pub async fn produce(client: &mut LeaderClient, ledger: &mut Ledger, tag: &str, n: u32) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for attempt in 0.. {
        let values: Vec<String> = (0..n).map(|i| format!("{tag}.{attempt}-{i}")).collect();
        let req = produce_request(&values);
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

/// A produce of `values`, spread over the partitions.
pub fn produce_request(values: &[String]) -> pb::ProduceRequest {
    pb::ProduceRequest {
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
    }
}

/// Every record of every partition on the node at `url`.
pub async fn read_all(url: &str) -> Result<BTreeMap<u32, Vec<(u64, String)>>, String> {
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
pub async fn check(cluster: &Cluster, ledger: &Ledger) {
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
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

pub fn rounds() -> usize {
    std::env::var("OBELISK_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}
