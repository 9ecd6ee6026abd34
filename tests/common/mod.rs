//! Test harness: a real server in-process on ephemeral loopback ports, over a temporary data
//! directory, and clients connected to it.
#![allow(dead_code)]

pub mod broker;
pub mod server;
pub mod wait;

use std::path::Path;

use obelisk::client::{self, BrokerClient};
use obelisk::config::Config;
use obelisk::server::RunningServer;
use tonic::transport::Channel;

/// A configuration for tests: every listener on 127.0.0.1:0, data in `dir`.
pub fn test_config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        grpc_addr: "127.0.0.1:0".into(),
        tcp_addr: "off".into(),
        http_addr: "off".into(),
        log_level: "warn".into(),
        ..Config::default()
    }
}

pub async fn start(config: Config) -> RunningServer {
    obelisk::server::start(config.validate().expect("valid test config"))
        .await
        .expect("server starts")
}

pub async fn grpc_client(server: &RunningServer) -> BrokerClient<Channel> {
    client::connect(&format!("http://{}", server.grpc_addr))
        .await
        .expect("client connects")
}

/// `config` with the legacy TCP and HTTP listeners on too, each on its own ephemeral port.
pub fn with_every_listener(mut config: Config) -> Config {
    config.tcp_addr = "127.0.0.1:0".into();
    config.http_addr = "127.0.0.1:0".into();
    config
}
