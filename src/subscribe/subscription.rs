//! Subscriptions: follow the global log (or one stream) from a chosen point,
//! first catching up from LMDB in bounded batches, then waiting for the
//! writer's wake-ups.
//!
//! Correctness rests on one rule: the wake-up channel carries no data. A
//! subscription registers its channel *before* its first read, and every read
//! starts at the subscription's own next position. A commit that lands after a
//! read's snapshot always sends a wake-up (or finds one pending, since the
//! channel is bounded(1) and coalescing), and the next read starts exactly
//! where the previous one stopped. So nothing is missed or repeated at the
//! switch from catch-up to live, whatever the writer does meanwhile.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::read::{ReadAll, ReadStream};
use crate::store::Store;
use crate::vocab::Filter;
use crate::vocab::RecordedEvent;
use crate::vocab::{Error, Result};

/// Default number of log positions a subscription reads per read transaction.
pub const DEFAULT_SUBSCRIPTION_BATCH: usize = 512;

/// How often a subscription on a read-only store looks at the log again:
/// another process writes, so no wake-up reaches this one.
const READ_ONLY_POLL: Duration = Duration::from_millis(50);

/// Where a subscription starts in the global log.
///
/// More starting points may be added: a `match` outside eventfold needs a
/// wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeFrom {
    /// From position 1: every event, then live.
    Start,
    /// From the event right after this position (the position itself is not
    /// delivered). Pass the last position you processed to resume.
    AfterPosition(u64),
    /// From this position, inclusive.
    AtPosition(u64),
    /// Only events committed after the subscription is made (live only).
    End,
}

/// The events a subscription reads in one go, with the next position to read.
pub(crate) struct LogBatch {
    pub events: Vec<RecordedEvent>,
    /// The position after the last one looked at (filtered-out events count).
    pub next: u64,
    /// The head of the read's snapshot (its durable part when following
    /// `Durable`).
    pub head: u64,
    /// `recorded_at` of the last position looked at (0 when none).
    pub last_recorded_at: u64,
    /// The event id at the last position looked at: a checkpoint keeps it,
    /// so that a log that lost that position (a power cut) and gave it to
    /// another event is told apart from the log it was made from.
    pub last_event_id: Option<uuid::Uuid>,
}

/// Which end of the log a follower reads up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Follow {
    /// Everything committed.
    Committed,
    /// Only what is durable ([`Store::durable_head`]): for derived state that
    /// outlives the process, which must never be ahead of what a power cut
    /// leaves of the log.
    Durable,
}

/// Reads positions `next..next+batch` (bounded by the head — the durable
/// head when following `Durable` — and by `up_to`) in one read
/// transaction, keeping the events that pass `filter`, and releases the
/// transaction before returning.
pub(crate) fn read_log_batch(
    store: &Store,
    next: u64,
    batch: usize,
    up_to: u64,
    filter: &Filter,
    follow: Follow,
) -> Result<LogBatch> {
    // Read before the snapshot is taken: whatever was durable then is in it.
    let durable = match follow {
        Follow::Committed => u64::MAX,
        Follow::Durable => store.durable_head()?,
    };
    let reader = store.read()?;
    let head = reader.head()?.min(durable);
    let last = head.min(up_to);
    if next > last {
        return Ok(LogBatch { events: Vec::new(), next, head, last_recorded_at: 0, last_event_id: None });
    }
    let end = last.min(next.saturating_add((batch.max(1) as u64).saturating_sub(1)));
    let mut events = Vec::new();
    let mut last_recorded_at = 0;
    let mut last_event_id = None;
    for event in reader.all(ReadAll::from_position(next).up_to_position(end))? {
        let event = event?;
        last_recorded_at = event.recorded_at();
        last_event_id = Some(event.event_id());
        if filter.is_empty() || filter.matches(event.stream_id(), event.event_type()) {
            events.push(event.to_owned()?);
        }
    }
    Ok(LogBatch { events, next: end.saturating_add(1), head, last_recorded_at, last_event_id })
}

/// A live view of the log: an iterator of owned events that never ends while
/// the store is open.
///
/// Made by [`Store::subscribe`] and [`Store::subscribe_to_stream`]. It reads
/// the log in batches of [`DEFAULT_SUBSCRIPTION_BATCH`] positions (one short
/// read transaction each), then blocks until the writer commits more. Events
/// arrive in position order, each once.
///
/// The handle owns no thread: dropping it is all it takes to stop. It keeps
/// the store open (it holds a clone of the handle); [`Store::close`] ends every
/// subscription: they deliver what is committed, then finish.
///
/// ```
/// use eventfold::{ExpectedVersion, Filter, NewEvent, Store, SubscribeFrom};
/// use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let mut sub = store.subscribe(SubscribeFrom::Start, Filter::new().category("order"))?;
/// store.append("order-1", ExpectedVersion::Any, [NewEvent::json("Placed", &serde_json::json!({}))])?;
/// let event = sub.next_timeout(Duration::from_secs(5))?.expect("committed above");
/// assert_eq!((event.position, event.event_type.as_str()), (1, "Placed"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Subscription {
    store: Store,
    filter: Filter,
    /// Events of a stream subscription below this version are skipped.
    min_version: u64,
    next: u64,
    batch: usize,
    buf: VecDeque<RecordedEvent>,
    wake: Receiver<u64>,
    /// The writer went away: deliver what is in the log, then end.
    closed: bool,
    last_position: u64,
    follow: Follow,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.filter)
            .field("next_position", &self.next)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Follows the global log from `from`, keeping the events that pass
    /// `filter`. See [`Subscription`].
    pub fn subscribe(&self, from: SubscribeFrom, filter: Filter) -> Result<Subscription> {
        // Register before looking at the head: a commit between the two then
        // still leaves a wake-up behind.
        let wake = self.commit_wakeups();
        let next = match from {
            SubscribeFrom::Start => 1,
            SubscribeFrom::AfterPosition(p) => p.saturating_add(1),
            SubscribeFrom::AtPosition(p) => p.max(1),
            SubscribeFrom::End => self.read()?.head()?.saturating_add(1),
        };
        Ok(Subscription::new(self.clone(), filter, 0, next, wake))
    }

    /// Follows one stream from its version `from_version` (inclusive): `1`
    /// (or `0`) for the whole stream, the current version + 1 for only what
    /// comes next. The stream need not exist yet.
    pub fn subscribe_to_stream(&self, stream: &str, from_version: u64) -> Result<Subscription> {
        crate::vocab::validate_stream_id(stream)?;
        let wake = self.commit_wakeups();
        let reader = self.read()?;
        // Start the log scan at the first wanted event when it exists (the
        // stream index finds it), else after the current head.
        let first = reader
            .stream(stream, ReadStream::forward().from_version(from_version.max(1)).limit(1))?
            .next()
            .transpose()?
            .map(|e| e.position());
        let next = match first {
            Some(p) => p,
            None => reader.head()?.saturating_add(1),
        };
        drop(reader);
        Ok(Subscription::new(self.clone(), Filter::new().stream(stream), from_version, next, wake))
    }
}

impl Subscription {
    fn new(store: Store, filter: Filter, min_version: u64, next: u64, wake: Receiver<u64>) -> Self {
        Subscription {
            store,
            filter,
            min_version,
            next,
            batch: DEFAULT_SUBSCRIPTION_BATCH,
            buf: VecDeque::new(),
            wake,
            closed: false,
            last_position: next.saturating_sub(1),
            follow: Follow::Committed,
        }
    }

    /// Delivers only events that are durable ([`Store::durable_head`]), so
    /// that whatever is done with them can never be ahead of what a power
    /// cut leaves of the log. The same as the default under
    /// [`Durability::Sync`](crate::Durability::Sync); under `Relaxed` and
    /// `NoSync` events arrive once synced, at most
    /// [`sync_interval`](crate::StoreBuilder::sync_interval) after they
    /// are committed. Durable consumers' subscriptions are made this way.
    pub fn durable_only(mut self) -> Self {
        self.follow = Follow::Durable;
        self
    }

    /// Reads up to `batch` log positions per read transaction (default
    /// [`DEFAULT_SUBSCRIPTION_BATCH`]). Smaller batches release LMDB pages
    /// sooner; larger ones cost fewer transactions.
    pub fn with_batch_size(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The filter this subscription applies.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The position of the last event handed out (or the position before the
    /// starting point when none has been): resume with
    /// [`SubscribeFrom::AfterPosition`] of it.
    pub fn last_position(&self) -> u64 {
        self.last_position
    }

    /// Whether the store has closed: the subscription delivers what remains
    /// in the log and then ends.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next event if one is committed, without waiting for a commit.
    /// `Ok(None)` means the subscription is caught up.
    pub fn try_next(&mut self) -> Result<Option<RecordedEvent>> {
        self.fill()?;
        Ok(self.pop())
    }

    /// The next event, waiting at most `timeout` for one to be committed.
    ///
    /// `Ok(None)` when the time passed with nothing new. After the store has
    /// closed and every committed event was delivered, returns
    /// [`Error::Closed`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.fill()? {
                return Ok(self.pop());
            }
            if self.closed {
                return Err(Error::Closed);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Ok(None);
            }
            self.wait(Some(left));
        }
    }

    /// Blocks for the next event; `Ok(None)` once the store has closed and
    /// every committed event was delivered.
    pub fn next_blocking(&mut self) -> Result<Option<RecordedEvent>> {
        loop {
            if self.fill()? {
                return Ok(self.pop());
            }
            if self.closed {
                return Ok(None);
            }
            self.wait(None);
        }
    }

    fn pop(&mut self) -> Option<RecordedEvent> {
        let e = self.buf.pop_front()?;
        self.last_position = e.position;
        Some(e)
    }

    /// Reads batches until an event is buffered or the log is exhausted.
    /// Returns whether an event is ready.
    fn fill(&mut self) -> Result<bool> {
        while self.buf.is_empty() {
            let b = read_log_batch(&self.store, self.next, self.batch, u64::MAX, &self.filter, self.follow)?;
            crate::metrics::subscription_lag(b.head.saturating_sub(b.next.saturating_sub(1)));
            let scanned = b.next > self.next;
            self.next = b.next;
            let min_version = self.min_version;
            self.buf.extend(b.events.into_iter().filter(|e| e.version >= min_version));
            if !scanned {
                if self.follow == Follow::Durable {
                    // Caught up with what is durable: have the writer sync
                    // what is committed beyond it (its wake-up follows).
                    self.store.want_durable();
                }
                break;
            }
        }
        Ok(!self.buf.is_empty())
    }

    /// Waits for the writer's next commit (or the timeout, or the store's close).
    fn wait(&mut self, timeout: Option<Duration>) {
        if self.store.is_read_only() {
            // Another process writes: no wake-up will come, look again soon.
            std::thread::sleep(timeout.map_or(READ_ONLY_POLL, |t| t.min(READ_ONLY_POLL)));
            return;
        }
        let r = match timeout {
            Some(t) => self.wake.recv_timeout(t),
            None => self.wake.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        if let Err(RecvTimeoutError::Disconnected) = r {
            // The final commits happened before the close: one more read
            // (done by the caller's loop) finds them.
            self.closed = true;
        }
    }
}

impl Iterator for Subscription {
    type Item = Result<RecordedEvent>;

    /// Blocks for the next event; ends after the store closes and every
    /// committed event was delivered.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_blocking().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{ExpectedVersion, NewEvent};

    fn ev(ty: &str) -> NewEvent {
        NewEvent::json(ty, &serde_json::json!({}))
    }

    #[test]
    fn from_variants_pick_the_right_first_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("a-1", ExpectedVersion::Any, [ev("X"), ev("Y"), ev("Z")]).unwrap();
        let first =
            |from| store.subscribe(from, Filter::new()).unwrap().try_next().unwrap().map(|e| e.position);
        assert_eq!(first(SubscribeFrom::Start), Some(1));
        assert_eq!(first(SubscribeFrom::AfterPosition(1)), Some(2));
        assert_eq!(first(SubscribeFrom::AtPosition(2)), Some(2));
        assert_eq!(first(SubscribeFrom::End), None);
    }

    #[test]
    fn registering_and_dropping_leaves_no_sender_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sub = store.subscribe(SubscribeFrom::End, Filter::new()).unwrap();
        assert_eq!(store.followers(), 1);
        drop(sub);
        store.append("a-1", ExpectedVersion::Any, [ev("X")]).unwrap();
        assert_eq!(store.followers(), 0);
    }

    #[test]
    fn close_ends_after_the_committed_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut sub = store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap().with_batch_size(1);
        store.append("a-1", ExpectedVersion::Any, [ev("X"), ev("Y")]).unwrap();
        store.clone().close().unwrap();
        let all: Vec<u64> = sub.by_ref().map(|e| e.unwrap().position).collect();
        assert_eq!(all, vec![1, 2]);
        assert!(matches!(sub.next_timeout(Duration::from_secs(1)), Err(Error::Closed)));
    }
}
