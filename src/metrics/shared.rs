//! The shared-group series (issue 14), read at scrape time from every broker: records in
//! flight and locked, redeliveries and dead letters since the broker started, and the age of
//! the oldest unsettled record, each by group.

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use super::live_sources;
use crate::broker::shared::SharedGroupStats;

fn each(mut f: impl FnMut(&SharedGroupStats, &[KeyValue])) {
    for (broker, _) in live_sources() {
        for s in broker.shared_group_stats() {
            f(&s, &[KeyValue::new("group", s.group.clone())]);
        }
    }
}

pub(super) fn register(meter: &Meter) {
    meter
        .u64_observable_gauge("obelisk_shared_group_in_flight_records")
        .with_description("Records of a shared group handed out and not done (locked, available again, or on their way to the dead-letter topic)")
        .with_callback(|o| each(|s, l| o.observe(s.in_flight, l)))
        .build();
    meter
        .u64_observable_gauge("obelisk_shared_group_locked_records")
        .with_description("Records of a shared group locked to a member")
        .with_callback(|o| each(|s, l| o.observe(s.locked, l)))
        .build();
    meter
        .u64_observable_counter("obelisk_shared_group_redeliveries")
        .with_description(
            "Hand-outs of a record that had been handed out before, since the broker started",
        )
        .with_callback(|o| each(|s, l| o.observe(s.redeliveries, l)))
        .build();
    meter
        .u64_observable_counter("obelisk_shared_group_dead_lettered_records")
        .with_description(
            "Records a shared group wrote to its dead-letter topic since the broker started",
        )
        .with_callback(|o| each(|s, l| o.observe(s.dead_lettered, l)))
        .build();
    meter
        .f64_observable_gauge("obelisk_shared_group_oldest_unsettled_age_seconds")
        .with_description("Age (from its produce timestamp) of the oldest record of a shared group not done; 0 when none is in flight")
        .with_unit("s")
        .with_callback(|o| each(|s, l| o.observe(s.oldest_unsettled_age_secs, l)))
        .build();
}
