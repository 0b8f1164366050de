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
//!
//! Polled as a `Stream` (feature `async`, `SubscriptionStream`), a
//! subscription reads the same way and waits on the same registration: a
//! task keeps its `Waker` there before it looks at the channel, and the
//! writer wakes it with each send that fills the channel, so the rule holds
//! for tasks too. The registration ends when the subscription is dropped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::read::{ReadAll, ReadStream};
use crate::store::{CommitWakeups, Store};
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
    if reader.uses_index(filter) {
        return indexed_batch(&reader, next, batch, last, head, filter);
    }
    let end = last.min(next.saturating_add((batch.max(1) as u64).saturating_sub(1)));
    let mut events = Vec::new();
    let mut last_recorded_at = 0;
    let mut last_event_id = None;
    for event in reader.all(ReadAll::from_position(next).up_to_position(end))? {
        let event = event?;
        last_recorded_at = event.recorded_at();
        last_event_id = Some(event.event_id());
        if event.passes(filter) {
            events.push(event.to_owned()?);
        }
    }
    Ok(LogBatch { events, next: end.saturating_add(1), head, last_recorded_at, last_event_id })
}

/// [`read_log_batch`] for a filter the indexes serve: up to `batch`
/// matching events of `next..=last`, read through the index, so a
/// follower of a quiet category in a busy log reads only its events. The
/// batch ends at its last event when it is full, else at `last`; the
/// checkpoint fields describe the event at the batch's end.
fn indexed_batch(
    reader: &crate::read::Reader,
    next: u64,
    batch: usize,
    last: u64,
    head: u64,
    filter: &Filter,
) -> Result<LogBatch> {
    let batch = batch.max(1);
    let options = ReadAll::from_position(next).up_to_position(last).filter(filter.clone()).limit(batch);
    let mut events = Vec::new();
    for event in reader.all(options)? {
        events.push(event?.to_owned()?);
    }
    let end = match events.last() {
        Some(e) if events.len() >= batch => e.position,
        _ => last,
    };
    let (last_recorded_at, last_event_id) = match events.last() {
        Some(e) if e.position == end => (e.recorded_at, Some(e.event_id)),
        _ => match reader.event(end)? {
            Some(e) => (e.recorded_at(), Some(e.event_id())),
            // Scavenged: there is no event to name (`Reader::event` has
            // already told a removed position from a damaged one).
            None => (events.last().map_or(0, |e| e.recorded_at), None),
        },
    };
    Ok(LogBatch { events, next: end.saturating_add(1), head, last_recorded_at, last_event_id })
}

/// A live view of the log: an iterator of owned events that never ends while
/// the store is open.
///
/// Made by [`Store::subscribe`] and [`Store::subscribe_to_stream`]. It reads
/// the log in batches of [`DEFAULT_SUBSCRIPTION_BATCH`] positions (one short
/// read transaction each), then blocks until the writer commits more. Events
/// arrive in position order, each once. With the `async` feature,
/// `into_stream` turns it into a `futures_core::Stream` of the same events,
/// for a task to await (`SubscriptionStream`).
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
    wake: CommitWakeups,
    /// The writer went away: deliver what is in the log, then end.
    closed: bool,
    last_position: u64,
    follow: Follow,
}

/// What one batch read found.
enum Read {
    /// Events are buffered.
    Ready,
    /// Positions were read, none kept by the filter: the log goes on.
    Skipped,
    /// Nothing new: caught up with the log (or its durable part).
    CaughtUp,
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
        let wake = self.follow_commits();
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
        let wake = self.follow_commits();
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
    fn new(store: Store, filter: Filter, min_version: u64, next: u64, wake: CommitWakeups) -> Self {
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

    /// This subscription as an async `Stream` of the same events (feature
    /// `async`); see [`SubscriptionStream`].
    #[cfg(feature = "async")]
    pub fn into_stream(self) -> SubscriptionStream {
        SubscriptionStream { sub: self, ended: false }
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
            match self.read_batch()? {
                Read::Skipped => {}
                Read::Ready | Read::CaughtUp => break,
            }
        }
        Ok(!self.buf.is_empty())
    }

    /// Reads one batch of the log (one short read transaction).
    fn read_batch(&mut self) -> Result<Read> {
        let b = read_log_batch(&self.store, self.next, self.batch, u64::MAX, &self.filter, self.follow)?;
        crate::metrics::subscription_lag(b.head.saturating_sub(b.next.saturating_sub(1)));
        let scanned = b.next > self.next;
        self.next = b.next;
        let min_version = self.min_version;
        self.buf.extend(b.events.into_iter().filter(|e| e.version >= min_version));
        if !self.buf.is_empty() {
            return Ok(Read::Ready);
        }
        if scanned {
            return Ok(Read::Skipped);
        }
        if self.follow == Follow::Durable {
            // Caught up with what is durable: have the writer sync what is
            // committed beyond it. The sync wakes followers, as a commit
            // does, so the wake-up follows.
            self.store.want_durable();
        }
        Ok(Read::CaughtUp)
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

/// A [`Subscription`] as a `futures_core::Stream` (feature `async`), for a
/// task instead of a thread: the same events, in the same order, each once,
/// as the blocking iterator. Made by [`Subscription::into_stream`]; it is a
/// type of its own because a `Subscription` is an `Iterator`, and with
/// both `Iterator` and `StreamExt` in scope `sub.next()` would be ambiguous.
///
/// When it has caught up, the stream waits for the writer's next commit
/// without a thread: the writer's commit notifier wakes the task (for a
/// [`durable_only`](Subscription::durable_only) subscription, such as a
/// durable consumer's, a sync that makes events durable wakes it too). It
/// ends (`None`) once the store has closed and every committed event has
/// been delivered. Dropping it unregisters it from the notifier at once.
///
/// The catch-up reads from LMDB run inside `poll_next`, on the polling
/// task's thread: each poll reads at most one batch
/// ([`with_batch_size`](Subscription::with_batch_size) positions, one short
/// read transaction), which waits on no I/O but page faults of the memory
/// map, and a poll whose batch the filter emptied yields to the executor
/// before the next one.
///
/// On a store opened read-only another process writes, so no commit wakes
/// this one: the stream delivers what is committed, then yields
/// [`Error::ReadOnlyStream`] and ends, rather than poll on a timer it does
/// not have. Follow such a store with [`try_next`](Subscription::try_next)
/// on a timer of your runtime, or with the blocking iterator on a thread of
/// its own.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use eventfold::{ExpectedVersion, Filter, NewEvent, Store, SubscribeFrom};
/// use futures_util::StreamExt;
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let mut orders = store.subscribe(SubscribeFrom::Start, Filter::new().category("order"))?.into_stream();
/// store.append_async("order-1", ExpectedVersion::Any, [NewEvent::json("Placed", &serde_json::json!({}))]).await?;
/// let event = orders.next().await.expect("committed above")?;
/// assert_eq!((event.position, event.event_type.as_str()), (1, "Placed"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "async")]
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct SubscriptionStream {
    sub: Subscription,
    /// Ended on a read-only store, after its error.
    ended: bool,
}

#[cfg(feature = "async")]
impl SubscriptionStream {
    /// The subscription: its [`last_position`](Subscription::last_position),
    /// [`filter`](Subscription::filter), [`is_closed`](Subscription::is_closed).
    pub fn get_ref(&self) -> &Subscription {
        &self.sub
    }

    /// Back to the blocking subscription, at the same position.
    pub fn into_inner(self) -> Subscription {
        self.sub
    }
}

#[cfg(feature = "async")]
impl futures_core::Stream for SubscriptionStream {
    type Item = Result<RecordedEvent>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        let sub = &mut this.sub;
        loop {
            if let Some(event) = sub.pop() {
                return Poll::Ready(Some(Ok(event)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match sub.read_batch() {
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(Read::Ready) => continue,
                Ok(Read::Skipped) => {
                    // More log to read: let other tasks run between batches.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Ok(Read::CaughtUp) => {}
            }
            if sub.closed {
                return Poll::Ready(None);
            }
            if sub.store.is_read_only() {
                this.ended = true;
                return Poll::Ready(Some(Err(Error::ReadOnlyStream)));
            }
            match sub.wake.poll_wake(cx) {
                Poll::Pending => return Poll::Pending,
                // A commit (or a sync, for a durable-only subscription):
                // read again from the next position.
                Poll::Ready(Some(_)) => {}
                // The final commits happened before the close: one more
                // read finds them.
                Poll::Ready(None) => sub.closed = true,
            }
        }
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
        let to_stream = store.subscribe_to_stream("a-1", 1).unwrap();
        assert_eq!(store.followers(), 2);
        drop(sub);
        assert_eq!(store.followers(), 1, "unregistered at the drop, not at the next commit");
        drop(to_stream);
        assert_eq!(store.followers(), 0);
        store.append("a-1", ExpectedVersion::Any, [ev("X")]).unwrap();
        assert_eq!(store.followers(), 0);
    }

    /// Guards that a stream dropped while it waits stops costing the
    /// writer at once (the notifier forgets it at the drop).
    #[cfg(feature = "async")]
    #[test]
    fn dropping_a_pending_stream_unregisters_it_at_once() {
        use futures_core::Stream;
        use std::task::{Context, Waker};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut stream = store.subscribe(SubscribeFrom::End, Filter::new()).unwrap().into_stream();
        let poll = std::pin::Pin::new(&mut stream).poll_next(&mut Context::from_waker(Waker::noop()));
        assert!(poll.is_pending());
        assert_eq!(store.followers(), 1);
        drop(stream);
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
