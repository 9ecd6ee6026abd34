//! The service around the Broker: health, reflection, shutdown with idle clients, and the unary
//! request timeout that must not cut streams or long polls.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use obelisk::proto as pb;
use tonic::transport::Channel;

use crate::common::server::TestServer;
use crate::{pos, record};

async fn channel(s: &TestServer) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", s.server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_the_broker_is_serving() {
    let s = TestServer::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&s).await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "obelisk.v1.Broker".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_broker_service() {
    let s = TestServer::start().await;
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            channel(&s).await,
        );
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut resp = reflection
        .server_reflection_info(futures_util::stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let listed = format!("{:?}", resp.next().await.unwrap().unwrap());
    assert!(listed.contains("obelisk.v1.Broker"), "{listed}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_idle_clients_or_open_subscriptions() {
    let mut s = TestServer::start().await;
    let idle = channel(&s).await;
    s.create_topic("idle", None).await;
    let mut sub = s
        .client
        .subscribe(pb::SubscribeRequest {
            topic: "idle".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let started = std::time::Instant::now();
    s.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap();
    assert!(
        !matches!(end, Some(Ok(_))),
        "the subscription ended: {end:?}"
    );
    drop(idle);
}

/// A server whose unary deadline is 200 ms, with topic "slow".
async fn short_deadline() -> TestServer {
    let mut s = TestServer::start_with(|c| c.request_timeout_ms = 200).await;
    s.create_topic("slow", None).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_does_not_cut_a_subscription() {
    let mut s = short_deadline().await;
    let mut sub = s
        .client
        .subscribe(pb::SubscribeRequest {
            topic: "slow".into(),
            start: pos(pb::position::Target::Latest(true)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Not a wait for a state: the subscription must outlive the unary deadline (200 ms) before
    // anything is produced, so time has to pass.
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.client
        .produce(pb::ProduceRequest {
            topic: "slow".into(),
            records: vec![record("k", "late")],
            idempotence: None,
        })
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a record arrives")
        .expect("the stream is still open")
        .expect("no error");
    assert_eq!(msg.records[0].value, Bytes::from_static(b"late"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_past_the_request_timeout_is_answered_empty_within_it() {
    let mut s = short_deadline().await;
    let got = s
        .client
        .poll(pb::PollRequest {
            topic: "slow".into(),
            group: "g".into(),
            max_wait_ms: 10_000,
            start_if_new: pb::StartPosition::Latest as i32,
            ..Default::default()
        })
        .await
        .expect("answered within the deadline")
        .into_inner();
    assert!(got.records.is_empty());
    s.stop().await;
}
