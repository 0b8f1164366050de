//! [`StoreBuilder`]: every setting of a store, with defaults that suit a service.

use std::path::PathBuf;

use super::Store;
use crate::lmdb::Durability;
use crate::vocab::Result;

/// Settings for opening a [`Store`]. Made by [`Store::builder`].
///
/// ```
/// use eventfold::{Durability, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::builder(dir.path())
///     .durability(Durability::Sync)
///     .map_size(1 << 30)
///     .max_batch_events(4096)
///     .open()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct StoreBuilder {
    pub(crate) dir: PathBuf,
    pub(crate) durability: Durability,
    pub(crate) map_size: usize,
    pub(crate) max_readers: u32,
    pub(crate) max_batch_events: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_batch_delay: std::time::Duration,
    pub(crate) max_event_size: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) sync_interval: std::time::Duration,
    pub(crate) on_commit: Option<crate::writer::CommitHook>,
    pub(crate) faults: crate::writer::FaultPlan,
}

/// Default map size: the most the store may grow to. LMDB reserves this much
/// address space; the file grows only as events are written.
pub const DEFAULT_MAP_SIZE: usize = 64 << 30;

impl StoreBuilder {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        StoreBuilder {
            dir: dir.into(),
            durability: Durability::Sync,
            map_size: DEFAULT_MAP_SIZE,
            max_readers: 1024,
            max_batch_events: 16_384,
            max_batch_bytes: 32 << 20,
            max_batch_delay: std::time::Duration::from_millis(1),
            max_event_size: 4 << 20,
            queue_capacity: 4096,
            sync_interval: std::time::Duration::from_millis(10),
            on_commit: None,
            faults: crate::writer::FaultPlan::default(),
        }
    }

    /// Durability of commits (default [`Durability::Sync`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The largest size the store may reach, in bytes (default 64 GiB),
    /// rounded up to the OS page size. Hitting it is
    /// [`Error::StorageFull`](crate::Error::StorageFull); reopen with a larger
    /// value to go on.
    pub fn map_size(mut self, bytes: usize) -> Self {
        self.map_size = bytes;
        self
    }

    /// Most concurrent read transactions, across all processes (default 1024).
    pub fn max_readers(mut self, readers: u32) -> Self {
        self.max_readers = readers.max(1);
        self
    }

    /// Most events the writer puts in one commit (default 16,384). A request
    /// is never split; the limit only stops more requests joining the batch.
    pub fn max_batch_events(mut self, events: usize) -> Self {
        self.max_batch_events = events.max(1);
        self
    }

    /// Most encoded bytes the writer puts in one commit (default 32 MiB).
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes.max(1);
        self
    }

    /// Longest the writer may hold a commit open to let appenders it expects
    /// join the batch (default 1 ms; never more than half the last commit's
    /// duration). It only waits when the previous commit served several
    /// appenders, so a lone appender never waits. `Duration::ZERO` turns it off.
    pub fn max_batch_delay(mut self, delay: std::time::Duration) -> Self {
        self.max_batch_delay = delay;
        self
    }

    /// Calls `hook` on the writer thread right after each commit, with the
    /// position of the commit's last event, before subscribers are woken
    /// and appenders answered: for metrics and latency probes (the peers
    /// harness times W7 with it). Keep it to a few hundred nanoseconds, since
    /// every append waits for it, and never block in it. A panic in it is
    /// caught and ignored: the commit stands.
    pub fn on_commit(mut self, hook: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_commit = Some(crate::writer::CommitHook(std::sync::Arc::new(hook)));
        self
    }

    /// Largest payload of one event, in bytes (default 4 MiB).
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes.max(1);
        self
    }

    /// How many requests may wait for the writer before appenders block
    /// (default 4096). Appends are never dropped: a full queue makes the
    /// appender wait.
    pub fn queue_capacity(mut self, requests: usize) -> Self {
        self.queue_capacity = requests.max(1);
        self
    }

    /// Under [`Durability::Relaxed`] and [`Durability::NoSync`]: the longest
    /// the writer leaves the log unsynced while a read model or durable
    /// consumer waits for events that are committed but not yet durable
    /// (default 10 ms). Those followers never apply an event a power cut
    /// could undo, so they wait for a sync; a commit made meanwhile makes
    /// the one before it durable under `Relaxed`. Unused under `Sync`.
    pub fn sync_interval(mut self, interval: std::time::Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Makes the `n`th commit of this open (counted from 1) fail before it
    /// reaches the disk. For tests of failure handling only.
    #[cfg(feature = "fault-injection")]
    pub fn fail_commit_at(mut self, n: u64) -> Self {
        self.faults.fail_commit_at = Some(n);
        self
    }

    /// Makes the `n`th commit of this open (counted from 1) reach LMDB and
    /// then report a failed fsync. For tests of failure handling only.
    #[cfg(feature = "fault-injection")]
    pub fn fail_sync_at(mut self, n: u64) -> Self {
        self.faults.fail_sync_at = Some(n);
        self
    }

    /// Opens the store for reading and writing, creating the directory and
    /// databases when they do not exist. Takes the directory's writer lock:
    /// a second writing process gets [`Error::Locked`](crate::Error::Locked).
    pub fn open(self) -> Result<Store> {
        Store::open_with(self, false)
    }

    /// Opens an existing store read-only. Works beside a writing process;
    /// never creates anything.
    pub fn open_read_only(self) -> Result<Store> {
        Store::open_with(self, true)
    }

    pub(crate) fn page_rounded_map_size(&self) -> usize {
        const PAGE: usize = 64 << 10; // a multiple of every common page size
        // Past the largest multiple of PAGE, that one: no machine maps so
        // much, and the open then fails with what LMDB says.
        self.map_size.max(PAGE).div_ceil(PAGE).checked_mul(PAGE).unwrap_or(usize::MAX & !(PAGE - 1))
    }
}
