//! Security over real sockets (issue 15): TLS with certificates made at test time, bearer tokens,
//! mTLS principals, ACLs checked in the core, on gRPC, REST and the legacy protocol; certificate
//! rotation; and the refusal of insecure non-loopback listeners.

mod cli;
mod config;
mod groups;
mod grpc;
mod http;
mod legacy;
mod support;
mod tls;
