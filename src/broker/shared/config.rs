//! A shared group's settings, chosen at creation (stored in its state file).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Redelivery delay after a release without a delay of its own, or an expired lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Backoff {
    /// The same delay every time.
    Fixed {
        #[serde(with = "millis")]
        delay: Duration,
    },
    /// `base * 2^(deliveries - 1)`, at most `max`.
    Exponential {
        #[serde(with = "millis")]
        base: Duration,
        #[serde(with = "millis")]
        max: Duration,
    },
}

impl Backoff {
    /// The delay before the next delivery of a record delivered `deliveries` times.
    pub fn delay(&self, deliveries: u32) -> Duration {
        match *self {
            Self::Fixed { delay } => delay,
            Self::Exponential { base, max } => {
                let shift = deliveries.saturating_sub(1).min(31);
                base.saturating_mul(1u32 << shift).min(max)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedGroupConfig {
    /// How long a handed-out record stays locked to its member without a settle.
    #[serde(with = "millis")]
    pub ack_timeout: Duration,
    /// Hand-outs of a record before it goes to the dead-letter topic.
    pub max_deliveries: u32,
    /// Records not done per partition at most (bounds memory and the state file).
    pub max_in_flight: usize,
    pub dead_letter_topic: String,
    pub backoff: Backoff,
}

impl SharedGroupConfig {
    pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_DELIVERIES: u32 = 5;
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

    /// The defaults for `group`: 30 s ack timeout, 5 deliveries, dead letters to `<group>.dlq`,
    /// redelivery at once.
    pub fn new(group: &str) -> Self {
        Self {
            ack_timeout: Self::DEFAULT_ACK_TIMEOUT,
            max_deliveries: Self::DEFAULT_MAX_DELIVERIES,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            dead_letter_topic: format!("{group}.dlq"),
            backoff: Backoff::Fixed {
                delay: Duration::ZERO,
            },
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_up_to_its_cap() {
        let b = Backoff::Exponential {
            base: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        let d: Vec<_> = (1..=5).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 500, 500]);
    }
}
