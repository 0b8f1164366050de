//! Stream retention: which of a stream's events are still served.

use std::time::Duration;

/// Limits on what of a stream is served: events outside them are no longer
/// returned by any read (see `docs/forgetting.md`). Unset limits keep
/// what the stream had.
///
/// ```
/// use std::time::Duration;
/// use eventfold::StreamRetention;
/// let keep = StreamRetention::new().max_count(100).max_age(Duration::from_secs(30 * 86_400));
/// assert_eq!(keep.max_count, Some(100));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamRetention {
    /// Serve only versions from this one on.
    pub truncate_before: Option<u64>,
    /// Serve only the newest this many events (0 lifts the limit).
    pub max_count: Option<u64>,
    /// Serve only events younger than this (zero lifts the limit).
    pub max_age: Option<Duration>,
}

impl StreamRetention {
    /// No change yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop serving the versions below `version`.
    pub fn truncate_before(mut self, version: u64) -> Self {
        self.truncate_before = Some(version);
        self
    }

    /// Serve only the newest `count` events (0: no limit).
    pub fn max_count(mut self, count: u64) -> Self {
        self.max_count = Some(count);
        self
    }

    /// Serve only events recorded within `age` (zero: no limit).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }
}

/// Where a stream is in its life, with its retention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamLifecycle {
    /// Soft-deleted and not appended to since: hidden from reads and listings.
    pub deleted: bool,
    /// Deleted for good: never written again.
    pub tombstoned: bool,
    /// Versions below this one are not served (1: none hidden by truncation).
    pub truncate_before: u64,
    /// Only the newest this many events are served.
    pub max_count: Option<u64>,
    /// Only events younger than this are served.
    pub max_age: Option<Duration>,
}
