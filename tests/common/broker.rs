//! A Broker core on a temporary data directory, for tests that call the core directly.

use std::ops::Deref;

use bytes::Bytes;
use obelisk::broker::{Broker, BrokerConfig, ProduceRecord, TopicConfig};

/// A broker that owns its data directory (removed when this is dropped).
pub struct TestBroker {
    pub broker: Broker,
    pub config: BrokerConfig,
    pub dir: tempfile::TempDir,
}

impl Deref for TestBroker {
    type Target = Broker;

    fn deref(&self) -> &Broker {
        &self.broker
    }
}

impl TestBroker {
    /// A broker with the default configuration.
    pub async fn open() -> Self {
        Self::open_with(|_| {}).await
    }

    /// A broker with the default configuration changed by `tune`.
    pub async fn open_with(tune: impl FnOnce(&mut BrokerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        tune(&mut config);
        let broker = open(config.clone()).await;
        Self {
            broker,
            config,
            dir,
        }
    }

    /// Creates `name` with `partitions` partitions and no retention limits.
    pub async fn create(&self, name: &str, partitions: u32) {
        self.create_with(name, topic_config(partitions)).await;
    }

    pub async fn create_with(&self, name: &str, config: TopicConfig) {
        self.broker
            .create_topic(name, config)
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    }

    /// Shuts the broker down and opens the same directory again, as a restart would.
    pub async fn restart(self) -> Self {
        let Self {
            broker,
            config,
            dir,
        } = self;
        broker.shutdown().await;
        drop(broker);
        let broker = open(config.clone()).await;
        Self {
            broker,
            config,
            dir,
        }
    }

    pub async fn shutdown(self) {
        self.broker.shutdown().await;
    }
}

/// Opens a broker on `config` (the one place tests open one, should opening change).
pub async fn open(config: BrokerConfig) -> Broker {
    try_open(config).await.expect("broker opens")
}

/// A topic configuration with `partitions` partitions and no retention limits.
pub fn topic_config(partitions: u32) -> TopicConfig {
    TopicConfig {
        partitions,
        retention_ms: 0,
        retention_bytes: 0,
        compression: Default::default(),
    }
}

/// A record with a key and a value, placed and stamped by the broker.
pub fn rec(key: &str, value: &str) -> ProduceRecord {
    ProduceRecord {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..ProduceRecord::default()
    }
}

/// Opens a broker on `config`, or says why not.
///
/// # Errors
/// What [`Broker::open`] fails with.
pub async fn try_open(config: BrokerConfig) -> Result<Broker, obelisk::broker::BrokerError> {
    Broker::open(config, &tokio::runtime::Handle::current())
}
