//! The one clock events, checkpoints and snapshots are stamped with.

/// Microseconds since the Unix epoch; 0 for a clock set before 1970.
pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
