//! A whole server in-process (gRPC on an ephemeral port; other listeners as configured) over a
//! temporary data directory, with a connected gRPC client: the one set-up of the gRPC tests.

use obelisk::client::BrokerClient;
use obelisk::config::Config;
use obelisk::proto as pb;
use obelisk::server::RunningServer;
use tonic::transport::Channel;

pub struct TestServer {
    pub server: RunningServer,
    /// Connected to `server`; clone it for a second connection's worth of calls.
    pub client: BrokerClient<Channel>,
    pub config: Config,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with [`super::test_config`].
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with [`super::test_config`] changed by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = super::test_config(dir.path());
        tune(&mut config);
        Self::launch(config, dir).await
    }

    async fn launch(config: Config, dir: tempfile::TempDir) -> Self {
        let server = super::start(config.clone()).await;
        let client = super::grpc_client(&server).await;
        Self {
            server,
            client,
            config,
            dir,
        }
    }

    /// Creates `name` over gRPC; `partitions: None` takes the server's default.
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: Option<u32>,
    ) -> pb::TopicDescription {
        let config = partitions.map(|partitions| pb::TopicConfig {
            partitions,
            retention_ms: 0,
            retention_bytes: 0,
            compression: 0,
        });
        self.client
            .create_topic(pb::CreateTopicRequest {
                name: name.into(),
                config,
            })
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"))
            .into_inner()
            .topic
            .expect("the created topic")
    }

    /// Stops the server and starts it again on the same data directory, with a new client.
    pub async fn restart(self) -> Self {
        let Self {
            server,
            config,
            dir,
            ..
        } = self;
        server.stop().await;
        Self::launch(config, dir).await
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
