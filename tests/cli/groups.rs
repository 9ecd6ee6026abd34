//! `obelisk consume --group` as a group member (issue 13): two CLI consumers split the
//! partitions, `groups describe` shows them, and a consumer killed with SIGKILL has its
//! partitions reassigned to the other within the session timeout.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use obelisk::client::BrokerClient;
use obelisk::proto as pb;
use tonic::transport::Channel;

use super::{assert_ok, common, obelisk, stdout, with_server};

const PATIENCE: Duration = Duration::from_secs(30);

/// A `consume --follow` child whose stdout lines arrive on a channel.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(url: &str, topic: &str, group: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_obelisk"))
            .args(with_server(
                url,
                &["consume", topic, "--group", group, "--follow"],
            ))
            .env_remove("OBELISK_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn describe(c: &mut BrokerClient<Channel>, group: &str) -> Option<pb::DescribeGroupResponse> {
    c.describe_group(pb::DescribeGroupRequest {
        group: group.into(),
    })
    .await
    .ok()
    .map(tonic::Response::into_inner)
}

fn owned(m: &pb::GroupMember) -> usize {
    m.partitions.iter().map(|t| t.partitions.len()).sum()
}

/// Polls DescribeGroup until `ok` holds.
async fn wait_for(
    c: &mut BrokerClient<Channel>,
    group: &str,
    what: &str,
    ok: impl Fn(&pb::DescribeGroupResponse) -> bool,
) -> pb::DescribeGroupResponse {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(d) = describe(c, group).await
            && ok(&d)
        {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            describe(c, group).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn produce(c: &mut BrokerClient<Channel>, topic: &str, prefix: &str) {
    let records = (0..4)
        .map(|p| pb::ProducerRecord {
            value: format!("{prefix}-{p}").into_bytes().into(),
            partition: Some(p),
            ..Default::default()
        })
        .collect();
    c.produce(pb::ProduceRequest {
        topic: topic.into(),
        records,
        idempotence: None,
    })
    .await
    .expect("produce");
}

/// Lines of `f` until every one of `want` arrived.
fn read_until(f: &Follower, want: &[String]) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while !want.iter().all(|w| got.contains(w)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match f.lines.recv_timeout(left) {
            Ok(l) => got.push(l),
            Err(_) => panic!("waiting for {want:?}, got {got:?}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cli_consumers_split_partitions_and_a_killed_ones_move_within_the_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.group_session_timeout_ms = 2000;
    let server = common::start(config).await;
    let url = format!("http://{}", server.grpc_addr);
    let mut c = common::grpc_client(&server).await;
    c.create_topic(pb::CreateTopicRequest {
        name: "t".into(),
        config: Some(pb::TopicConfig {
            partitions: 4,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let first = Follower::start(&url, "t", "g");
    wait_for(&mut c, "g", "first member owns everything", |d| {
        d.members.len() == 1 && owned(&d.members[0]) == 4
    })
    .await;
    let second = Follower::start(&url, "t", "g");
    let split = wait_for(&mut c, "g", "two members, two partitions each", |d| {
        d.state == "stable" && d.members.len() == 2 && d.members.iter().all(|m| owned(m) == 2)
    })
    .await;
    assert!(split.members.iter().all(|m| m.client_id == "obelisk-cli"));
    // `groups describe` shows the members.
    let o = obelisk(with_server(&url, &["groups", "describe", "g"]), b"").await;
    assert_ok(&o);
    assert!(stdout(&o).contains("state stable"), "{}", stdout(&o));
    assert!(stdout(&o).contains("2 member(s)"), "{}", stdout(&o));
    // Each prints only the records of its own partitions.
    produce(&mut c, "t", "before").await;
    let want: Vec<String> = (0..4).map(|p| format!("before-{p}")).collect();
    let deadline = Instant::now() + PATIENCE;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    while !want.iter().all(|w| a.contains(w) || b.contains(w)) {
        assert!(Instant::now() < deadline, "{a:?} {b:?}");
        a.extend(first.lines.try_iter());
        b.extend(second.lines.try_iter());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(b.len(), 2, "{b:?}");
    // kill -9 the first: the second gets all four partitions.
    let mut first = first;
    let killed = Instant::now();
    first.child.kill().expect("SIGKILL");
    first.child.wait().unwrap();
    wait_for(&mut c, "g", "the survivor owns everything", |d| {
        d.members.len() == 1 && owned(&d.members[0]) == 4
    })
    .await;
    let moved = killed.elapsed();
    assert!(moved < PATIENCE);
    eprintln!("partitions of the killed consumer reassigned after {moved:?}");
    produce(&mut c, "t", "after").await;
    let want: Vec<String> = (0..4).map(|p| format!("after-{p}")).collect();
    read_until(&second, &want);
    drop(second);
    server.stop().await;
}
