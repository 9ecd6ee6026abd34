//! The data directory belongs to one broker at a time.

use crate::common::broker::{TestBroker, open, try_open};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_has_one_broker_at_a_time() {
    let TestBroker {
        broker,
        config,
        dir,
    } = TestBroker::open().await;
    let Err(e) = try_open(config.clone()).await else {
        panic!("a second broker opened the same data directory");
    };
    assert!(
        e.to_string().contains("in use by another obelisk process"),
        "{e}"
    );
    broker.shutdown().await;
    let again = open(config).await; // free after shutdown
    again.shutdown().await;
    drop(dir);
}
