//! The tonic service: each RPC converts its request, calls the Broker, converts the answer.

use std::pin::Pin;
use std::time::Instant;

use futures_util::stream::{FuturesOrdered, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::incoming::ConnectionInfo;
use super::status::to_status;
use crate::auth::Credentials;
use crate::broker::{
    Broker, BrokerError, Caller, FetchRequest, PollRequest, ReadLimits, SubscribeRequest,
};
use crate::proto as pb;

/// Batches of one ProduceStream being stored at once, and their bytes of keys and values; more
/// wait in the HTTP/2 window, so a stream holds a bounded amount of the broker's memory.
const STREAM_IN_FLIGHT: usize = 64;
const STREAM_IN_FLIGHT_BYTES: usize = 64 << 20;

/// The `obelisk.v1.Broker` service.
#[derive(Clone)]
pub struct BrokerService {
    broker: Broker,
    /// Cancelled when the server stops: produce streams stop reading on it (waits and
    /// subscriptions end on the broker's own drain).
    shutdown: CancellationToken,
    /// Longest long-poll wait, kept inside the unary request deadline so a poll answers (empty)
    /// instead of failing with DEADLINE_EXCEEDED.
    max_wait: std::time::Duration,
}

impl BrokerService {
    pub fn new(
        broker: Broker,
        shutdown: CancellationToken,
        request_timeout: std::time::Duration,
    ) -> Self {
        Self {
            broker,
            shutdown,
            max_wait: request_timeout.mul_f64(0.9),
        }
    }

    fn limits(&self, max_records: u32, max_bytes: u32, max_wait_ms: u32) -> ReadLimits {
        let mut limits = ReadLimits::from_wire(max_records, max_bytes, max_wait_ms);
        limits.max_wait = limits.max_wait.min(self.max_wait);
        limits
    }

    /// The broker, acting for the request's caller: its bearer token (`authorization`
    /// metadata) or its verified client certificate. Every RPC goes through this.
    pub(super) fn caller<T>(&self, req: &Request<T>) -> Result<Caller, BrokerError> {
        let token = req
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().ok().and_then(crate::auth::bearer).unwrap_or(""));
        let verified = req
            .extensions()
            .get::<ConnectionInfo>()
            .and_then(|c| c.principal.as_deref());
        // replication (issue 17): on a cluster follower, produce fails with the leader's address
        // (clients follow it) unless the client asks to be forwarded.
        let routing = if req.metadata().contains_key("obelisk-forward") {
            crate::broker::Routing::Forward
        } else {
            crate::broker::Routing::Redirect
        };
        self.broker
            .authenticate(Credentials { token, verified })
            .map(|c| c.with_routing(routing))
    }
}

type RpcResult<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn done<T>(call: &'static str, started: Instant, res: Result<T, BrokerError>) -> RpcResult<T> {
    crate::metrics::record_request("grpc", call, started, res.as_ref().map(|_| ()));
    res.map(Response::new).map_err(|e| to_status(&e))
}

#[tonic::async_trait]
impl pb::broker_server::Broker for BrokerService {
    async fn produce(&self, req: Request<pb::ProduceRequest>) -> RpcResult<pb::ProduceResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let req = req.into_inner();
        let res = async {
            let producer = convert::producer_identity(req.idempotence)?;
            caller?
                .enqueue_from(
                    &req.topic,
                    convert::producer_records(req.records),
                    producer.as_ref(),
                )
                .await?
                .acks()
                .await
        }
        .await
        .map(|a| pb::ProduceResponse {
            acks: convert::acks(a),
        });
        done("produce", started, res)
    }

    type ProduceStreamStream = ReceiverStream<Result<pb::ProduceStreamAck, Status>>;

    async fn produce_stream(
        &self,
        req: Request<Streaming<pb::ProduceStreamRequest>>,
    ) -> RpcResult<Self::ProduceStreamStream> {
        // replication (issue 17): a stream opened on a follower is refused at once with the
        // leader's address (its batches would each be refused), so a producer follows it.
        let broker = self
            .caller(&req)
            .and_then(|c| c.route().map(|()| c))
            .map_err(|e| {
                crate::metrics::record_request("grpc", "produce_stream", Instant::now(), Err(&e));
                to_status(&e)
            })?;
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_IN_FLIGHT);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut in_flight = FuturesOrdered::new();
            let mut in_flight_bytes = 0usize;
            let mut reading = true;
            // A message that did not decode ends the stream with INVALID_ARGUMENT once the batches
            // before it are acknowledged (a client that hung up ends it quietly).
            let mut malformed: Option<Status> = None;
            loop {
                let has_room =
                    in_flight.len() < STREAM_IN_FLIGHT && in_flight_bytes < STREAM_IN_FLIGHT_BYTES;
                tokio::select! {
                    biased;
                    Some((ack, bytes)) = in_flight.next(), if !in_flight.is_empty() => {
                        in_flight_bytes -= bytes;
                        if tx.send(Ok(ack)).await.is_err() {
                            // The client is gone; the batches already handed over still complete.
                            reading = false;
                        }
                    }
                    msg = inbound.next(), if reading && has_room => match msg {
                        Some(Ok(batch)) => {
                            let bytes: usize = batch.records.iter().map(|r| r.key.len() + r.value.len()).sum();
                            in_flight_bytes += bytes;
                            // Enqueued here, in stream order, so batches are stored in the order
                            // they were sent; their acks are awaited concurrently below.
                            let started = Instant::now();
                            let sequence = batch.sequence;
                            let pending = match convert::producer_identity(batch.idempotence) {
                                Ok(producer) => broker
                                    .enqueue_from(&batch.topic, convert::producer_records(batch.records), producer.as_ref())
                                    .await,
                                Err(e) => Err(e),
                            };
                            in_flight.push_back(async move {
                                let res = match pending {
                                    Ok(p) => p.acks().await,
                                    Err(e) => Err(e),
                                };
                                crate::metrics::record_request("grpc", "produce_stream", started, res.as_ref().map(|_| ()));
                                let ack = match res {
                                    Ok(a) => pb::ProduceStreamAck { sequence, acks: convert::acks(a), error: None },
                                    Err(e) => pb::ProduceStreamAck {
                                        sequence,
                                        acks: Vec::new(),
                                        error: Some(pb::Error { code: super::status::code_of(&e) as i32, message: e.to_string() }),
                                    },
                                };
                                (ack, bytes)
                            });
                        }
                        Some(Err(status)) => {
                            tracing::debug!(%status, "produce stream ended by the client");
                            if matches!(status.code(), tonic::Code::Internal | tonic::Code::InvalidArgument | tonic::Code::OutOfRange) {
                                malformed = Some(Status::invalid_argument(format!(
                                    "a message of the stream could not be read: {}",
                                    status.message()
                                )));
                            }
                            reading = false;
                        }
                        None => reading = false,
                    },
                    () = shutdown.cancelled(), if reading => reading = false,
                    else => break,
                }
                if !reading && in_flight.is_empty() {
                    break;
                }
            }
            if let Some(status) = malformed {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn poll(&self, req: Request<pb::PollRequest>) -> RpcResult<pb::PollResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let r = req.into_inner();
        let start_if_new = convert::start_position(r.start_if_new());
        let poll = PollRequest {
            topic: r.topic,
            group: r.group,
            limits: self.limits(r.max_records, r.max_bytes, r.max_wait_ms),
            start_if_new,
            member: convert::member(r.member_id, r.member_epoch),
        };
        let res = async { caller?.poll(poll).await }
            .await
            .map(|recs| pb::PollResponse {
                records: convert::consumed(recs),
            });
        done("poll", started, res)
    }

    async fn fetch(&self, req: Request<pb::FetchRequest>) -> RpcResult<pb::FetchResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let r = req.into_inner();
        let partition = r.partition;
        let fetch = FetchRequest {
            topic: r.topic,
            partition,
            offset: r.offset,
            limits: self.limits(r.max_records, r.max_bytes, r.max_wait_ms),
        };
        let res = async { caller?.fetch(fetch).await }
            .await
            .map(|f| pb::FetchResponse {
                records: f
                    .records
                    .into_iter()
                    .map(|rec| convert::record(partition, rec))
                    .collect(),
                log_start_offset: f.log_start,
                log_end_offset: f.log_end,
            });
        done("fetch", started, res)
    }

    type SubscribeStream = BoxStream<pb::SubscribeResponse>;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> RpcResult<Self::SubscribeStream> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let r = req.into_inner();
        let res = caller.and_then(|c| {
            c.subscribe(SubscribeRequest {
                topic: r.topic,
                group: (!r.group.is_empty()).then_some(r.group),
                start: convert::position(r.start),
                max_records_per_batch: r.max_records_per_message as usize,
                member: convert::member(r.member_id, r.member_epoch),
            })
        });
        crate::metrics::record_request("grpc", "subscribe", started, res.as_ref().map(|_| ()));
        let sub = res.map_err(|e| to_status(&e))?;
        // Pulled by tonic only when the HTTP/2 stream has room: a slow subscriber holds back only
        // itself, and nothing is buffered for it beyond the message being sent. The stream ends
        // when the broker drains (`next_batch` says so).
        let stream = futures_util::stream::unfold((sub, false), |(mut sub, failed)| async move {
            if failed {
                return None;
            }
            match sub.next_batch().await? {
                Ok(records) => Some((
                    Ok(pb::SubscribeResponse {
                        records: convert::consumed(records),
                    }),
                    (sub, false),
                )),
                Err(e) => Some((Err(to_status(&e)), (sub, true))),
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn commit(&self, req: Request<pb::CommitRequest>) -> RpcResult<pb::CommitResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let r = req.into_inner();
        let res = async {
            caller?
                .commit_as(
                    &r.topic,
                    &r.group,
                    &convert::offsets(&r.offsets),
                    convert::member(r.member_id, r.member_epoch).as_ref(),
                )
                .await
        }
        .await
        .map(|()| pb::CommitResponse {});
        done("commit", started, res)
    }

    async fn reset(&self, req: Request<pb::ResetRequest>) -> RpcResult<pb::ResetResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let r = req.into_inner();
        let res = match (caller, convert::position(r.to)) {
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(BrokerError::InvalidArgument(
                "reset needs a target: earliest, latest, offset or timestamp_ns".into(),
            )),
            (Ok(c), Some(to)) => c.reset(&r.topic, &r.group, to).await,
        }
        .map(|o| pb::ResetResponse {
            offsets: convert::partition_offsets(o),
        });
        done("reset", started, res)
    }

    async fn init_producer(
        &self,
        req: Request<pb::InitProducerRequest>,
    ) -> RpcResult<pb::InitProducerResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let res = async { caller?.init_producer(req.into_inner().producer_id).await }
            .await
            .map(|g| pb::InitProducerResponse {
                producer_id: g.producer_id,
                producer_epoch: i32::from(g.producer_epoch),
            });
        done("init_producer", started, res)
    }

    async fn create_topic(
        &self,
        req: Request<pb::CreateTopicRequest>,
    ) -> RpcResult<pb::CreateTopicResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let r = req.into_inner();
        let res = async {
            let config = convert::topic_config(r.config)?;
            caller?.create_topic(&r.name, config).await
        }
        .await
        .map(|t| pb::CreateTopicResponse {
            topic: Some(convert::topic(t)),
        });
        done("create_topic", started, res)
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> RpcResult<pb::DeleteTopicResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let name = req.into_inner().name;
        let res = async { caller?.delete_topic(&name).await }
            .await
            .map(|()| pb::DeleteTopicResponse {});
        done("delete_topic", started, res)
    }

    async fn list_topics(
        &self,
        req: Request<pb::ListTopicsRequest>,
    ) -> RpcResult<pb::ListTopicsResponse> {
        let started = Instant::now();
        let res = self.caller(&req).map(|c| pb::ListTopicsResponse {
            topics: c.list_topics().into_iter().map(convert::topic).collect(),
        });
        done("list_topics", started, res)
    }

    async fn describe_topic(
        &self,
        req: Request<pb::DescribeTopicRequest>,
    ) -> RpcResult<pb::DescribeTopicResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let name = req.into_inner().name;
        let res = caller
            .and_then(|c| c.describe_topic(&name))
            .map(|t| pb::DescribeTopicResponse {
                topic: Some(convert::topic(t)),
            });
        done("describe_topic", started, res)
    }

    async fn list_groups(
        &self,
        req: Request<pb::ListGroupsRequest>,
    ) -> RpcResult<pb::ListGroupsResponse> {
        let started = Instant::now();
        let res = self.caller(&req).map(|c| pb::ListGroupsResponse {
            groups: c.list_groups(),
        });
        done("list_groups", started, res)
    }

    async fn describe_group(
        &self,
        req: Request<pb::DescribeGroupRequest>,
    ) -> RpcResult<pb::DescribeGroupResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let group = req.into_inner().group;
        // shared groups (issue 14) are described by their positions.
        let shared = match &caller {
            Ok(c) => super::shared::describe_as_group(c, &group).await,
            Err(_) => Ok(None),
        };
        let res = caller.and_then(|c| {
            if let Some(resp) = shared? {
                return Ok(resp);
            }
            let parts = c.describe_group(&group)?;
            let mut resp = pb::DescribeGroupResponse {
                group: group.clone(),
                partitions: parts.into_iter().map(convert::group_partition).collect(),
                ..Default::default()
            };
            super::groups::describe_members(c.group_membership(&group)?, &mut resp);
            Ok(resp)
        });
        done("describe_group", started, res)
    }

    // ==== security ====
    async fn list_acls(
        &self,
        req: Request<pb::ListAclsRequest>,
    ) -> RpcResult<pb::ListAclsResponse> {
        let started = Instant::now();
        let res = self.caller(&req).and_then(|c| super::acl::list(&c));
        done("list_acls", started, res)
    }

    async fn add_acl(&self, req: Request<pb::AddAclRequest>) -> RpcResult<pb::AddAclResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let res = async { super::acl::add(&caller?, req.into_inner()).await }.await;
        done("add_acl", started, res)
    }

    async fn remove_acl(
        &self,
        req: Request<pb::RemoveAclRequest>,
    ) -> RpcResult<pb::RemoveAclResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let res = async { super::acl::remove(&caller?, req.into_inner()).await }.await;
        done("remove_acl", started, res)
    }
    // ==== end security ====

    // ==== groups (issue 13) ====
    type JoinGroupStream = super::groups::JoinGroupStream;

    async fn join_group(
        &self,
        req: Request<Streaming<pb::JoinGroupRequest>>,
    ) -> RpcResult<Self::JoinGroupStream> {
        let started = Instant::now();
        let address = req
            .extensions()
            .get::<super::incoming::ConnectionInfo>()
            .map(|c| c.peer.to_string())
            .or_else(|| req.remote_addr().map(|a| a.to_string()))
            .unwrap_or_default();
        let res = match self.caller(&req) {
            Ok(caller) => {
                super::groups::join_group(caller, self.shutdown.clone(), address, req.into_inner())
                    .await
            }
            Err(e) => Err(to_status(&e)),
        };
        crate::metrics::record_request("grpc", "join_group", started, Ok(()));
        res.map(Response::new)
    }

    async fn delete_group(
        &self,
        req: Request<pb::DeleteGroupRequest>,
    ) -> RpcResult<pb::DeleteGroupResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let res = async { caller?.delete_group(&req.into_inner().group).await }
            .await
            .map(|()| pb::DeleteGroupResponse {});
        done("delete_group", started, res)
    }
    // ==== end groups (issue 13) ====

    // ==== shared groups (issue 14) ====
    async fn create_shared_group(
        &self,
        req: Request<pb::CreateSharedGroupRequest>,
    ) -> RpcResult<pb::CreateSharedGroupResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let r = req.into_inner();
        let config = super::shared::config(&r.group, r.settings);
        let res = async { caller?.create_shared_group(&r.group, config).await }
            .await
            .map(|c| pb::CreateSharedGroupResponse {
                settings: Some(super::shared::settings(&c)),
            });
        done("create_shared_group", started, res)
    }

    async fn shared_poll(
        &self,
        req: Request<pb::SharedPollRequest>,
    ) -> RpcResult<pb::SharedPollResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let r = req.into_inner();
        let limits = self.limits(r.max_records, r.max_bytes, r.max_wait_ms);
        let poll = super::shared::poll_request(r, limits);
        let res = async { caller?.shared_poll(poll).await }
            .await
            .map(super::shared::deliveries);
        done("shared_poll", started, res)
    }

    async fn settle(&self, req: Request<pb::SettleRequest>) -> RpcResult<pb::SettleResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let res = async { super::shared::settle(caller?, req.into_inner()).await }.await;
        done("settle", started, res)
    }

    async fn describe_shared_group(
        &self,
        req: Request<pb::DescribeSharedGroupRequest>,
    ) -> RpcResult<pb::DescribeSharedGroupResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let res = async { super::shared::describe(caller?, req.into_inner()).await }.await;
        done("describe_shared_group", started, res)
    }

    type SharedConsumeStream = super::shared_stream::SharedConsumeStream;

    async fn shared_consume(
        &self,
        req: Request<Streaming<pb::SharedConsumeRequest>>,
    ) -> RpcResult<Self::SharedConsumeStream> {
        let started = Instant::now();
        let limits = self.limits(0, 0, u32::MAX);
        let res = match self.caller(&req) {
            Ok(caller) => {
                super::shared_stream::shared_consume(
                    caller,
                    self.shutdown.clone(),
                    limits,
                    req.into_inner(),
                )
                .await
            }
            Err(e) => Err(to_status(&e)),
        };
        crate::metrics::record_request("grpc", "shared_consume", started, Ok(()));
        res.map(Response::new)
    }
    // ==== end shared groups (issue 14) ====

    // ==== replication (issue 17) ====
    async fn metadata(&self, req: Request<pb::MetadataRequest>) -> RpcResult<pb::MetadataResponse> {
        let started = Instant::now();
        let caller = self.caller(&req);
        let res = caller.and_then(|c| super::cluster::metadata(c, req.into_inner()));
        done("metadata", started, res)
    }
    // ==== end replication (issue 17) ====
}
