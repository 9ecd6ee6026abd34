//! The consumer-group membership series (groups, issue 13), read at scrape time: members per
//! group, rebalances so far, lag per member. (Rebalance durations are events, recorded by
//! [`super::Recorder`].) Member ids label only the lag of live members, so the series stay
//! bounded by the members connected.

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use super::live_sources;

pub(super) fn register(meter: &Meter) {
    meter
        .u64_observable_gauge("obelisk_group_members")
        .with_description(
            "Members of a consumer group (static members within their session timeout included)",
        )
        .with_callback(|o| {
            for (broker, _) in live_sources() {
                for g in broker.group_memberships() {
                    o.observe(g.members.len() as u64, &[KeyValue::new("group", g.group)]);
                }
            }
        })
        .build();
    meter
        .u64_observable_counter("obelisk_group_rebalances")
        .with_description("Rebalances of a consumer group (membership or subscription changes) since the broker started")
        .with_callback(|o| {
            for (broker, _) in live_sources() {
                for g in broker.group_memberships() {
                    o.observe(g.rebalances, &[KeyValue::new("group", g.group)]);
                }
            }
        })
        .build();
    meter
        .u64_observable_gauge("obelisk_group_member_lag_messages")
        .with_description(
            "Records after the group's committed offsets in the partitions a member owns",
        )
        .with_callback(|o| {
            for (broker, _) in live_sources() {
                for g in broker.group_memberships() {
                    for m in g.members {
                        o.observe(
                            m.lag,
                            &[
                                KeyValue::new("group", g.group.clone()),
                                KeyValue::new("member", m.id),
                            ],
                        );
                    }
                }
            }
        })
        .build();
}
