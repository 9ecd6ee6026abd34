//! The built `obelisk` binary in a child process: started on a data directory with gRPC and HTTP
//! on port 0 (the addresses are read from its JSON log), optionally under a low `RLIMIT_NOFILE`
//! (through util-linux's `prlimit`), stopped with SIGTERM or killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use obelisk::client::BrokerClient;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

/// Upper bound for anything these tests wait for, so a bug fails a test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How a child is started.
#[derive(Default, Clone)]
pub struct Options {
    /// Soft and hard `RLIMIT_NOFILE` of the child.
    pub nofile: Option<u64>,
    /// More `serve` flags.
    pub flags: Vec<String>,
}

pub struct Broker {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

/// Starts `obelisk serve` on `data_dir` and returns once both listeners are up (after recovery).
///
/// # Panics
/// When the child exits or does not listen within [`PATIENCE`]; the panic shows its log.
pub async fn start(data_dir: &Path, options: &Options) -> Broker {
    let bin = env!("CARGO_BIN_EXE_obelisk");
    let mut cmd = match options.nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args([
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ])
    .args(["--tcp-addr", "off"])
    .arg("--data-dir")
    .arg(data_dir)
    .args(&options.flags)
    .env("OBELISK_LOG_FORMAT", "json")
    .env(
        "OBELISK_LOG_LEVEL",
        "warn,obelisk::server=info,obelisk::http=info",
    )
    .env_remove("RUST_LOG")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the obelisk binary starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let lines = Arc::clone(&log);
    std::thread::spawn(move || {
        let (mut grpc, mut http, mut tx) = (None, None, Some(tx));
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                let fields = &event["fields"];
                let addr = |k: &str| fields[k].as_str().and_then(|a| a.parse().ok());
                match fields["message"].as_str() {
                    Some("gRPC listening") => grpc = addr("grpc_addr"),
                    Some("HTTP listening") => http = addr("addr"),
                    _ => {}
                }
                if let (Some(g), Some(h)) = (grpc, http)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send((g, h));
                }
            }
            lines.lock().unwrap().push(line);
        }
    });
    let started = tokio::time::timeout(PATIENCE, rx).await;
    let Ok(Ok((grpc, http))) = started else {
        let _ = child.kill();
        let status = child.wait();
        panic!(
            "the broker did not start ({status:?}); its log:\n{}",
            log.lock().unwrap().join("\n")
        );
    };
    Broker {
        child,
        grpc,
        http,
        log,
    }
}

impl Drop for Broker {
    /// A test that fails part-way does not leave its broker running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Broker {
    pub async fn client(&self) -> BrokerClient<Channel> {
        obelisk::client::connect(&format!("http://{}", self.grpc))
            .await
            .expect("client connects")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, and wait for a clean exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "SIGTERM sent");
        let status = self.wait_exit().await;
        assert!(status.success(), "clean exit, got {status}");
    }

    async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broker did not exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running (it did not crash).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("waitable").is_none()
    }

    /// Everything the broker logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `GET path` over HTTP/1.1: status and body.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(self.http)
            .await
            .expect("HTTP connects");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request sent");
        let mut raw = Vec::new();
        tokio::time::timeout(PATIENCE, s.read_to_end(&mut raw))
            .await
            .expect("HTTP answers")
            .expect("HTTP reads");
        super::support::split_http(&raw)
    }

    /// `GET path` as JSON.
    pub async fn http_json(&self, path: &str) -> (u16, Value) {
        let (code, body) = self.http_get(path).await;
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path} answered {code} with non-JSON {body:?}: {e}"));
        (code, json)
    }
}

/// `obelisk inspect --json <dir>`: the exit code and the report.
pub fn inspect(data_dir: &Path) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_obelisk"))
        .arg("inspect")
        .arg("--json")
        .arg(data_dir)
        .output()
        .expect("inspect runs");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspect printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}
