//! The `obelisk` binary as a user runs it: client commands against a real server in-process on
//! 127.0.0.1:0, `inspect` on data directories, and `bench` on tiny workloads (no timing asserts).

mod common;

#[path = "cli/bench.rs"]
mod bench;
#[path = "cli/client_commands.rs"]
mod client_commands;
#[path = "cli/config.rs"]
mod config;
#[path = "cli/errors.rs"]
mod errors;
#[path = "cli/groups.rs"]
mod groups;
#[path = "cli/inspect.rs"]
mod inspect;
#[path = "cli/logs.rs"]
mod logs;
#[path = "cli/shared.rs"]
mod shared;

use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Runs the built binary with `args`, feeding `stdin`, off the async runtime's threads.
async fn obelisk(args: Vec<String>, stdin: &[u8]) -> Output {
    let stdin = stdin.to_vec();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_obelisk"))
            .args(&args)
            .env_remove("OBELISK_SERVER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut input = child.stdin.take().expect("stdin is piped");
        input.write_all(&stdin).expect("stdin takes the input");
        drop(input);
        child.wait_with_output().expect("the binary runs")
    })
    .await
    .expect("the runner thread does not panic")
}

/// Runs `obelisk serve` with `args` and `env` (the environment otherwise free of `OBELISK_*` and
/// `RUST_LOG`), legacy and HTTP off, over a data directory that cannot be created: it logs its
/// start, fails to open the directory and exits, so its whole output is there without stopping
/// a server.
fn serve_with_unusable_data_dir(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_obelisk"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OBELISK_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG")
        .args(["serve", "--tcp-addr", "off", "--http-addr", "off"])
        .arg("--data-dir")
        .arg(blocker.join("data"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs")
}

/// `args` with `--server <server>` appended.
fn with_server(server: &str, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(ToString::to_string).collect();
    v.push("--server".into());
    v.push(server.into());
    v
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn sorted_lines(o: &Output) -> Vec<String> {
    let mut v: Vec<String> = stdout(o).lines().map(ToString::to_string).collect();
    v.sort();
    v
}

async fn start() -> (tempfile::TempDir, obelisk::server::RunningServer, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(common::test_config(dir.path())).await;
    let url = format!("http://{}", server.grpc_addr);
    (dir, server, url)
}
