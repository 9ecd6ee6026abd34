//! What a shared group's in-flight state costs in memory (issue 14: at most 64 bytes per
//! in-flight record): a counting global allocator measures the bytes a partition's window
//! holds for 100,000 records handed out to four members, then with a share of them released
//! (available again) or extended. The window is the whole in-flight state of a partition; the
//! member table, the counters and the state log's staging buffer do not grow per record.
#![allow(unsafe_code)] // a counting GlobalAlloc needs `unsafe impl`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use obelisk::broker::shared::SharedGroupConfig;
use obelisk::broker::shared::window::{SettleAction, Window};
use tokio::time::Instant;

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + layout.size() as i64));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - layout.size() as i64));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> i64 {
    LIVE.with(Cell::get)
}

const RECORDS: u64 = 100_000;

#[test]
fn in_flight_state_costs_at_most_64_bytes_a_record() {
    let config = SharedGroupConfig::new("g");
    let members: Vec<Arc<str>> = (0..4).map(|i| format!("worker-{i}").into()).collect();
    let now = Instant::now();
    let before = live();
    let mut w = Window::new(0, now);
    // Hand-outs of 500 records at a time, round robin over the members.
    for o in 0..RECORDS {
        let m = &members[(o / 500) as usize % members.len()];
        w.lock(o, m, now + config.ack_timeout);
        if o % 500 == 499 {
            w.take_dirty(); // what staging a call's frame does
        }
    }
    w.take_dirty();
    let locked = live() - before;
    assert_eq!(w.in_flight(), RECORDS as usize);
    let per_record = locked as f64 / RECORDS as f64;
    println!("{RECORDS} records locked: {locked} bytes = {per_record:.1} bytes a record");
    assert!(per_record <= 64.0, "{per_record} bytes a record");

    // A tenth released (available again, without a reason), a tenth extended.
    for o in (0..RECORDS).step_by(10) {
        let m = &members[(o / 500) as usize % members.len()];
        let release = SettleAction::Release {
            delay: Some(Duration::from_secs(1)),
            reason: String::new(),
        };
        w.settle(o, m, &release, now, &config).unwrap();
        w.settle(o + 1, m, &SettleAction::Extend, now, &config)
            .unwrap();
    }
    w.take_dirty();
    let mixed = live() - before;
    let per_record = mixed as f64 / RECORDS as f64;
    println!("after releases and extends: {mixed} bytes = {per_record:.1} bytes a record");
    assert!(per_record <= 64.0, "{per_record} bytes a record");
    assert_eq!(w.in_flight(), RECORDS as usize);
    drop(w);
}
