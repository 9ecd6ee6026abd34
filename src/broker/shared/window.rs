//! One partition's in-flight window of a shared group (pure: no I/O, time passed in).
//!
//! Offsets below the position are done. From the position to `next` (the first offset never
//! handed out), an offset with an entry is not done yet: available (maybe not before some
//! time), locked to a member until a deadline, or on its way to the dead-letter topic; an
//! offset without an entry was done out of order. The position is the smallest entry (or
//! `next`). Memory is bounded by the cap on entries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::config::SharedGroupConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// May be handed out from `at` on.
    Available { at: Instant },
    /// Handed out to `member` until `until` (the id is shared by the records of one hand-out).
    Locked { member: Arc<str>, until: Instant },
    /// Going to the dead-letter topic: the intent is stored before the write, with the
    /// dead-letter partition's end offset at that moment, so recovery scans only from there.
    DeadLettering { dlq_from: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Hand-outs so far.
    pub deliveries: u32,
    pub slot: Slot,
    /// The last reason a member gave (release or reject), or why the broker gave up.
    pub reason: String,
}

/// How a member settles one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleAction {
    /// Done.
    Accept,
    /// Give it back: available after `delay` (`None`: the group's backoff).
    Release {
        delay: Option<Duration>,
        reason: String,
    },
    /// Straight to the dead-letter topic.
    Reject { reason: String },
    /// Still working: the lock lasts another ack timeout.
    Extend,
}

/// What a settle did to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    Available,
    Extended,
    /// It must go to the dead-letter topic (its slot is `DeadLettering` once the caller set it).
    DeadLetter,
}

/// Why a settle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleRefused {
    #[error("offset {0} is done already (or before the group's position)")]
    Done(u64),
    #[error("offset {0} was never handed out")]
    NotHandedOut(u64),
    #[error(
        "offset {offset} is not locked to member {member:?} (its lock expired or it is another member's)"
    )]
    NotLocked { offset: u64, member: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub next: u64,
    pub entries: BTreeMap<u64, Entry>,
}

impl Window {
    pub fn new(next: u64) -> Self {
        Self {
            next,
            entries: BTreeMap::new(),
        }
    }

    /// The first offset not done.
    pub fn position(&self) -> u64 {
        self.entries.keys().next().copied().unwrap_or(self.next)
    }

    /// Drops what retention removed: offsets below `log_start` are gone.
    pub fn clamp_to(&mut self, log_start: u64) {
        if self.next < log_start {
            self.next = log_start;
        }
        self.entries = self.entries.split_off(&log_start);
    }

    /// Ends expired locks: the record becomes available after the backoff, or, after its last
    /// delivery, must go to the dead-letter topic (returned).
    pub fn expire(&mut self, now: Instant, config: &SharedGroupConfig) -> Vec<u64> {
        let mut dead = Vec::new();
        for (&offset, e) in &mut self.entries {
            if let Slot::Locked { until, .. } = e.slot
                && until <= now
            {
                if e.deliveries >= config.max_deliveries {
                    if e.reason.is_empty() {
                        e.reason = "ack timeout".into();
                    }
                    dead.push(offset);
                } else {
                    e.slot = Slot::Available {
                        at: now + config.backoff.delay(e.deliveries),
                    };
                }
            }
        }
        dead
    }

    /// Available offsets due at `now`, in order, at most `max`.
    pub fn due(&self, now: Instant, max: usize) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e.slot, Slot::Available { at } if at <= now))
            .map(|(&o, _)| o)
            .take(max)
            .collect()
    }

    /// Room for offsets never handed out, under the cap.
    pub fn room(&self, cap: usize) -> usize {
        cap.saturating_sub(self.entries.len())
    }

    /// Locks an offset to `member` (a new one at `next`, or an available one), counting a
    /// delivery; returns the delivery count.
    pub fn lock(&mut self, offset: u64, member: &Arc<str>, until: Instant) -> u32 {
        let slot = Slot::Locked {
            member: Arc::clone(member),
            until,
        };
        if offset >= self.next {
            self.next = offset + 1;
            self.entries.insert(
                offset,
                Entry {
                    deliveries: 1,
                    slot,
                    reason: String::new(),
                },
            );
            return 1;
        }
        let e = self
            .entries
            .get_mut(&offset)
            .expect("locking an offset in the window");
        e.deliveries += 1;
        e.slot = slot;
        e.deliveries
    }

    /// Settles one record for `member`.
    ///
    /// # Errors
    /// The record is done, never handed out, or not locked to `member`.
    pub fn settle(
        &mut self,
        offset: u64,
        member: &str,
        action: &SettleAction,
        now: Instant,
        config: &SharedGroupConfig,
    ) -> Result<Settled, SettleRefused> {
        if offset >= self.next {
            return Err(SettleRefused::NotHandedOut(offset));
        }
        let Some(e) = self.entries.get_mut(&offset) else {
            return Err(SettleRefused::Done(offset));
        };
        match &e.slot {
            Slot::Locked { member: m, until } if **m == *member && *until > now => {}
            _ => {
                return Err(SettleRefused::NotLocked {
                    offset,
                    member: member.to_string(),
                });
            }
        }
        Ok(match action {
            SettleAction::Accept => {
                self.entries.remove(&offset);
                Settled::Done
            }
            SettleAction::Extend => {
                if let Slot::Locked { until, .. } = &mut e.slot {
                    *until = now + config.ack_timeout;
                }
                Settled::Extended
            }
            SettleAction::Reject { reason } => {
                e.reason = if reason.is_empty() {
                    "rejected".into()
                } else {
                    reason.clone()
                };
                Settled::DeadLetter
            }
            SettleAction::Release { delay, reason } => {
                if !reason.is_empty() {
                    e.reason = reason.clone();
                }
                if e.deliveries >= config.max_deliveries {
                    if e.reason.is_empty() {
                        e.reason = "released after the last delivery".into();
                    }
                    Settled::DeadLetter
                } else {
                    let delay = delay.unwrap_or_else(|| config.backoff.delay(e.deliveries));
                    e.slot = Slot::Available { at: now + delay };
                    Settled::Available
                }
            }
        })
    }

    /// When something next becomes due (an available record or a lock expiring).
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e.slot {
                Slot::Available { at } => Some(at),
                Slot::Locked { until, .. } => Some(until),
                Slot::DeadLettering { .. } => None,
            })
            .min()
    }

    /// Offsets whose dead letter is to be written (or checked, after a crash).
    pub fn dead_lettering(&self) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e.slot, Slot::DeadLettering { .. }))
            .map(|(&o, _)| o)
            .collect()
    }

    /// Entries locked right now, by member.
    pub fn locked(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.slot, Slot::Locked { .. }))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SharedGroupConfig {
        SharedGroupConfig {
            max_deliveries: 2,
            ..SharedGroupConfig::new("g")
        }
    }

    #[test]
    fn position_is_the_first_offset_not_done() {
        let c = config();
        let now = Instant::now();
        let until = now + c.ack_timeout;
        let mut w = Window::new(10);
        for o in 10..14 {
            w.lock(o, &"a".into(), until);
        }
        assert_eq!(w.position(), 10);
        assert_eq!(
            w.settle(11, "a", &SettleAction::Accept, now, &c),
            Ok(Settled::Done)
        );
        assert_eq!(w.position(), 10);
        assert_eq!(
            w.settle(10, "a", &SettleAction::Accept, now, &c),
            Ok(Settled::Done)
        );
        assert_eq!(w.position(), 12);
        assert_eq!(
            w.settle(11, "a", &SettleAction::Accept, now, &c),
            Err(SettleRefused::Done(11))
        );
        assert_eq!(
            w.settle(12, "b", &SettleAction::Accept, now, &c),
            Err(SettleRefused::NotLocked {
                offset: 12,
                member: "b".into()
            })
        );
        assert_eq!(
            w.settle(20, "a", &SettleAction::Accept, now, &c),
            Err(SettleRefused::NotHandedOut(20))
        );
    }

    #[test]
    fn expired_lock_redelivers_then_dead_letters() {
        let c = config();
        let now = Instant::now();
        let mut w = Window::new(0);
        w.lock(0, &"a".into(), now + c.ack_timeout);
        assert!(w.due(now, 10).is_empty());
        let later = now + c.ack_timeout;
        assert!(w.expire(later, &c).is_empty());
        assert_eq!(w.due(later, 10), vec![0]);
        assert_eq!(w.lock(0, &"b".into(), later + c.ack_timeout), 2);
        assert_eq!(w.expire(later + c.ack_timeout, &c), vec![0]);
        assert_eq!(w.entries[&0].reason, "ack timeout");
    }

    #[test]
    fn release_with_delay_is_due_only_after_it() {
        let c = config();
        let now = Instant::now();
        let mut w = Window::new(0);
        w.lock(0, &"a".into(), now + c.ack_timeout);
        let release = SettleAction::Release {
            delay: Some(Duration::from_secs(5)),
            reason: "busy".into(),
        };
        assert_eq!(w.settle(0, "a", &release, now, &c), Ok(Settled::Available));
        assert!(w.due(now + Duration::from_millis(4999), 10).is_empty());
        assert_eq!(w.due(now + Duration::from_secs(5), 10), vec![0]);
    }
}
