//! Wall-clock time as the broker stores it: Unix nanoseconds (record timestamps, flush times,
//! unique names). Below every other module, so the core and the adapters share one definition.

/// The current Unix time in nanoseconds (0 before 1970, saturating far in the future).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
