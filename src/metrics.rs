//! Metrics (placeholder until the OpenTelemetry module lands).
use std::time::Instant;

use crate::broker::BrokerError;

pub fn record_request(
    _protocol: &'static str,
    _call: &'static str,
    _started: Instant,
    _err: Option<&BrokerError>,
) {
}

#[derive(Default)]
pub struct SubscriptionGuard;
impl SubscriptionGuard {
    pub fn new() -> Self {
        Self
    }
}

pub struct ConnectionGuard;
impl ConnectionGuard {
    pub fn new(_p: &'static str) -> Self {
        Self
    }
}
pub fn connection_refused(_p: &'static str) {}
