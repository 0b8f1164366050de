//! [`Store`]: the handle an application keeps. Opening, appending, reading,
//! statistics and closing.

mod batched;
mod builder;
mod dcb;
mod lifecycle;
mod open;
mod scavenge;

pub use batched::{AllBatches, StreamBatches};
pub use builder::{DEFAULT_MAP_SIZE, StoreBuilder};
pub use dcb::QueryResult;
pub use lifecycle::LIFECYCLE_STREAM;
pub use scavenge::{SCAVENGE_STEP, ScavengeProgress, ScavengeReport};

use std::any::Any;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::Sender;
#[cfg(feature = "async")]
use crossbeam_channel::TrySendError;
use heed::{Env, WithoutTls};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::lmdb::env::Dbs;
use crate::lmdb::{Durability, lock};
use crate::metrics;
use crate::read::{ReadAll, ReadStream, Reader};
use crate::record::{self, EncodedEvent};
use crate::vocab::{AppendResult, ExpectedVersion, NewEvent};
use crate::vocab::{Error, Result};
pub use crate::writer::AppendTicket;
pub(crate) use crate::writer::CommitWakeups;
use crate::writer::shared::Shared;
#[cfg(feature = "async")]
pub use crate::writer::{AppendFuture, AppendManyFuture};
use crate::writer::{Command, Request, WriterHandle};
pub(crate) use crate::writer::{Delete, Put, SideWrite, StreamAppend, boxed};

/// An open event store. Cheap to clone: clones share one environment and one
/// writer thread. The writer stops when the last clone is dropped or
/// [`Store::close`] is called.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    env: Env<WithoutTls>,
    dbs: Dbs,
    shared: Arc<Shared>,
    /// The writer's queue; `None` for a read-only store and after `close`.
    /// Senders hold the read lock while they send, so `close` (the write
    /// lock) knows no request is on its way once it has taken the sender.
    tx: RwLock<Option<Sender<Command>>>,
    read_only: bool,
    writer: Mutex<Option<WriterHandle>>,
    max_event_size: usize,
    map_size: usize,
    durability: Durability,
    store_id: Uuid,
    created_at: u64,
    /// State that features keep once per open store (the projections'
    /// environment), by type, opened on first use.
    extensions: Mutex<Vec<Arc<dyn Any + Send + Sync>>>,
    _lock: Option<lock::WriterLock>,
}

impl Inner {
    /// Stops the writer: takes the queue's sender (waiting for senders in
    /// the middle of a send), which ends the queue, and waits until the
    /// writer has answered everything queued, synced and stopped. Then says
    /// whether a write failure poisoned the store. [`Store::close`] and the
    /// drop of the last clone both end the store this way; a second call
    /// finds the writer stopped and only reports.
    fn close(&self) -> Result<()> {
        drop(self.tx.write().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(mut w) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            w.join();
        }
        self.shared.notifier.close();
        match self.shared.poisoned() {
            Some(reason) => Err(Error::Poisoned { reason: reason.to_string() }),
            None => Ok(()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No one is left to tell: the writer logged the poisoning when it
        // happened.
        let _ = self.close();
    }
}

/// Counters that show what the store and its writer have done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreStats {
    /// Position of the last event (= number of events; positions are gapless).
    pub head: u64,
    /// Number of streams.
    pub streams: u64,
    /// Size of the data file in bytes.
    pub size_on_disk: u64,
    /// The configured map size (the most the file may grow to).
    pub map_size: u64,
    /// Commits made by this process's writer since open.
    pub commits: u64,
    /// Batches the writer took from its queue since open.
    pub batches: u64,
    /// Requests the writer handled since open.
    pub requests: u64,
    /// Requests answered with an error since open.
    pub rejected: u64,
    /// Events written since open.
    pub events_written: u64,
    /// Record bytes written since open.
    pub bytes_written: u64,
    /// The most requests one batch held.
    pub max_batch_requests: u64,
}

type StreamEvents<S> = (S, ExpectedVersion, Vec<NewEvent>);

impl Store {
    /// Settings for opening the store in `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> StoreBuilder {
        StoreBuilder::new(dir)
    }

    /// Opens (or creates) the store in `dir` with default settings.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store> {
        StoreBuilder::new(dir).open()
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The store's unique id, fixed at creation.
    pub fn store_id(&self) -> Uuid {
        self.inner.store_id
    }

    /// When the store was created, in microseconds since the Unix epoch.
    pub fn created_at(&self) -> u64 {
        self.inner.created_at
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Appends `events` to `stream` if its version matches `expected`.
    ///
    /// All the events are written, at consecutive positions, or none. When
    /// every event id is already stored at this place (a retry), the original
    /// result is returned with `already_stored` set and nothing is written.
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Result<AppendResult> {
        let span = tracing::debug_span!(
            "append",
            stream,
            first_position = tracing::field::Empty,
            last_position = tracing::field::Empty,
        );
        let _entered = span.enter();
        let result = self.submit(stream, expected, events)?.wait();
        if let Ok(r) = &result {
            span.record("first_position", r.first_position).record("last_position", r.last_position);
        }
        result
    }

    /// Appends to several streams atomically: if any stream's expected version
    /// does not match, nothing is written. Returns one result per stream, in order.
    pub fn append_many<S: AsRef<str>>(
        &self,
        appends: impl IntoIterator<Item = StreamEvents<S>>,
    ) -> Result<Vec<AppendResult>> {
        let span = tracing::debug_span!(
            "append",
            streams = tracing::field::Empty,
            first_position = tracing::field::Empty,
            last_position = tracing::field::Empty,
        );
        let _entered = span.enter();
        let result = self.submit_many(appends)?.wait_many();
        if let Ok(r) = &result {
            span.record("streams", r.len());
            if let Some(first) = r.iter().map(|a| a.first_position).min() {
                span.record("first_position", first);
            }
            if let Some(last) = r.iter().map(|a| a.last_position).max() {
                span.record("last_position", last);
            }
        }
        result
    }

    /// [`append`](Store::append) for async code: the same checks and
    /// result, awaited instead of blocking the thread.
    ///
    /// It validates and encodes the events on the task's thread when first
    /// polled, queues the request ([`submit`](Store::submit)) and awaits the
    /// ticket, which the writer thread completes by waking the task when it
    /// answers. `store.submit(..)?.await` is the same thing, written out.
    /// While the writer's queue is full ([`StoreBuilder::queue_capacity`]
    /// requests waiting) the future waits for room as a task, woken when
    /// the writer takes requests off the queue; no executor thread is
    /// blocked. Dropping the future before the request is queued appends
    /// nothing; dropping it after does not cancel the append.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// use eventfold::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let placed = NewEvent::json("Placed", &serde_json::json!({"total": 12}));
    /// let r = store.append_async("order-1", ExpectedVersion::NoStream, [placed]).await?;
    /// assert_eq!((r.first_position, r.stream_version), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "async")]
    pub async fn append_async(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Result<AppendResult> {
        let append = metrics::count_refusal(self.prepare(stream, expected, events))?;
        metrics::count_refusal(check_ids(std::slice::from_ref(&append)))?;
        metrics::count_refusal(self.send_async(vec![append], Vec::new()).await)?.await
    }

    /// [`append_many`](Store::append_many) for async code: an atomic
    /// multi-stream append, awaited; see [`append_async`](Store::append_async).
    /// `store.submit_many(..)?.results().await` is the same thing.
    #[cfg(feature = "async")]
    pub async fn append_many_async<S: AsRef<str>>(
        &self,
        appends: impl IntoIterator<Item = StreamEvents<S>>,
    ) -> Result<Vec<AppendResult>> {
        let prepared = metrics::count_refusal(self.prepare_many(appends))?;
        if prepared.is_empty() {
            return metrics::count_refusal(Err(Error::EmptyAppend));
        }
        metrics::count_refusal(self.send_async(prepared, Vec::new()).await)?.results().await
    }

    /// [`send`](Store::send) for async code: while the writer's queue is
    /// full it waits for room as a task (woken by the writer when it takes
    /// requests off the queue) instead of blocking the executor's thread.
    #[cfg(feature = "async")]
    pub(crate) async fn send_async(
        &self,
        appends: Vec<StreamAppend>,
        side_writes: Vec<Box<dyn SideWrite>>,
    ) -> Result<AppendTicket> {
        if let Some(reason) = self.inner.shared.poisoned() {
            return Err(Error::Poisoned { reason: reason.to_string() });
        }
        if self.inner.read_only {
            return Err(Error::ReadOnly);
        }
        let (reply, ticket) = crate::writer::ticket();
        let submitted = std::time::Instant::now();
        let mut command = Some(Command::Write(Request {
            appends,
            side_writes,
            condition: None,
            lifecycle: None,
            reply,
            submitted,
        }));
        std::future::poll_fn(|cx| {
            let Some(queued) = command.take() else {
                return std::task::Poll::Ready(Err(Error::Closed));
            };
            // The sender is looked up at each try and never kept, so a
            // waiting task cannot hold the queue open against `close`.
            let try_send = |queued: Command| {
                let tx = self.inner.tx.read().unwrap_or_else(|p| p.into_inner());
                match tx.as_ref() {
                    None => Err(TrySendError::Disconnected(queued)),
                    Some(tx) => tx.try_send(queued),
                }
            };
            let queued = match try_send(queued) {
                Ok(()) => return std::task::Poll::Ready(Ok(())),
                Err(TrySendError::Disconnected(_)) => return std::task::Poll::Ready(Err(Error::Closed)),
                Err(TrySendError::Full(queued)) => queued,
            };
            self.inner.shared.queue_space.wait(cx.waker());
            match try_send(queued) {
                Ok(()) => std::task::Poll::Ready(Ok(())),
                Err(TrySendError::Disconnected(_)) => std::task::Poll::Ready(Err(Error::Closed)),
                Err(TrySendError::Full(queued)) => {
                    command = Some(queued);
                    std::task::Poll::Pending
                }
            }
        })
        .await?;
        Ok(ticket)
    }

    /// Queues an append and returns at once with a ticket to wait on or,
    /// with the `async` feature, to await. Events are validated and encoded
    /// before this returns.
    pub fn submit(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Result<AppendTicket> {
        let append = metrics::count_refusal(self.prepare(stream, expected, events))?;
        metrics::count_refusal(check_ids(std::slice::from_ref(&append)))?;
        metrics::count_refusal(self.send(vec![append], Vec::new()))
    }

    /// Queues an atomic multi-stream append; see [`Store::append_many`].
    pub fn submit_many<S: AsRef<str>>(
        &self,
        appends: impl IntoIterator<Item = StreamEvents<S>>,
    ) -> Result<AppendTicket> {
        let prepared = metrics::count_refusal(self.prepare_many(appends))?;
        if prepared.is_empty() {
            return metrics::count_refusal(Err(Error::EmptyAppend));
        }
        metrics::count_refusal(self.send(prepared, Vec::new()))
    }

    /// Validates and encodes a multi-stream request: each stream once, each
    /// event id once. An empty list is left to the caller to judge.
    pub(crate) fn prepare_many<S: AsRef<str>>(
        &self,
        appends: impl IntoIterator<Item = StreamEvents<S>>,
    ) -> Result<Vec<StreamAppend>> {
        let mut prepared = Vec::new();
        let mut seen = HashSet::new();
        for (stream, expected, events) in appends {
            let stream = stream.as_ref();
            if !seen.insert(stream.to_string()) {
                return Err(Error::DuplicateStreamInRequest { stream: stream.to_string() });
            }
            prepared.push(self.prepare(stream, expected, events)?);
        }
        check_ids(&prepared)?;
        Ok(prepared)
    }

    pub(crate) fn prepare(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Result<StreamAppend> {
        crate::vocab::validate_stream_id(stream)?;
        let events: Vec<NewEvent> = events.into_iter().collect();
        if stream.starts_with('$') && events.iter().any(|e| !e.system && !e.imported) {
            return Err(Error::InvalidStreamId {
                stream: stream.to_string(),
                reason: "stream ids starting with `$` are reserved for the streams the store writes itself"
                    .into(),
            });
        }
        let events: Vec<EncodedEvent> = events
            .into_iter()
            .map(|e| record::encode(stream, e, self.inner.max_event_size))
            .collect::<Result<_>>()?;
        if events.is_empty() {
            return Err(Error::EmptyAppend);
        }
        Ok(StreamAppend { stream_id: stream.to_string(), expected, events })
    }

    /// Sends a request to the writer. Also used for checkpoint and snapshot
    /// writes, which ride in the same batches as appends.
    pub(crate) fn send(
        &self,
        appends: Vec<StreamAppend>,
        side_writes: Vec<Box<dyn SideWrite>>,
    ) -> Result<AppendTicket> {
        self.send_request(appends, side_writes, None)
    }

    /// [`send`](Store::send) with a DCB condition for the writer to check.
    pub(crate) fn send_request(
        &self,
        appends: Vec<StreamAppend>,
        side_writes: Vec<Box<dyn SideWrite>>,
        condition: Option<crate::vocab::AppendCondition>,
    ) -> Result<AppendTicket> {
        self.send_full(appends, side_writes, condition, None)
    }

    /// [`send_request`](Store::send_request) with a change to a stream's
    /// lifecycle for the writer to make in the same transaction.
    pub(crate) fn send_full(
        &self,
        appends: Vec<StreamAppend>,
        side_writes: Vec<Box<dyn SideWrite>>,
        condition: Option<crate::vocab::AppendCondition>,
        lifecycle: Option<(String, crate::writer::Lifecycle)>,
    ) -> Result<AppendTicket> {
        let lifecycle = lifecycle.map(Box::new);
        let condition = condition.map(Box::new);
        if let Some(reason) = self.inner.shared.poisoned() {
            return Err(Error::Poisoned { reason: reason.to_string() });
        }
        let (reply, ticket) = crate::writer::ticket();
        let submitted = std::time::Instant::now();
        self.command(Command::Write(Request {
            appends,
            side_writes,
            condition,
            lifecycle,
            reply,
            submitted,
        }))?;
        Ok(ticket)
    }

    /// Queues a command for the writer; `Closed` once the store is closed.
    fn command(&self, command: Command) -> Result<()> {
        if self.inner.read_only {
            return Err(Error::ReadOnly);
        }
        let tx = self.inner.tx.read().unwrap_or_else(|p| p.into_inner());
        tx.as_ref().ok_or(Error::Closed)?.send(command).map_err(|_| Error::Closed)
    }

    /// Makes every event committed so far durable, whatever the store's
    /// [`Durability`], and returns the position of the last one. Under
    /// `Sync` everything acknowledged is durable already and this costs
    /// nothing; under `Relaxed` and `NoSync` it is one fsync, taken by the
    /// writer between two commits (appends go on around it). Use it after
    /// a bulk load with `NoSync`, or before telling the world that
    /// something is on disk.
    pub fn sync(&self) -> Result<u64> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.command(Command::Sync(reply))?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Position of the last event known to be on disk, so that a power cut
    /// cannot undo it: the head under [`Durability::Sync`]; under
    /// `Relaxed` up to one commit behind it, under `NoSync` the head at the
    /// last [`sync`](Store::sync). Read models and durable consumers never
    /// apply an event past it. A read-only store cannot know what another
    /// process has synced and answers its head.
    pub fn durable_head(&self) -> Result<u64> {
        if self.is_read_only() {
            return self.head();
        }
        Ok(self.inner.shared.durable.load(Ordering::Acquire))
    }

    /// Asks the writer to make the log durable soon (within
    /// `sync_interval`), for a follower of durable positions that has
    /// caught up with them. Never blocks; a no-op when nothing is pending.
    pub(crate) fn want_durable(&self) {
        let s = &self.inner.shared;
        if self.inner.read_only
            || s.durable.load(Ordering::Acquire) >= s.head.load(Ordering::Acquire)
            || s.durable_requested.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let tx = self.inner.tx.read().unwrap_or_else(|p| p.into_inner());
        let sent = tx.as_ref().is_some_and(|tx| tx.try_send(Command::WantDurable).is_ok());
        if !sent {
            // A full queue: the writer is busy and commits soon anyway; let
            // the next caller ask again.
            s.durable_requested.store(false, Ordering::Release);
        }
    }

    /// Builds the secondary indexes (by event type, category and tag) of
    /// the whole log anew, in one transaction: readers see the old indexes
    /// until it commits, appends wait while it runs. A store needs this only
    /// when its indexes are damaged (`verify` says so); a store written
    /// before indexes gets them at its first writable open. `progress` is
    /// called with the events indexed so far and the log's head. Returns how
    /// many events were indexed.
    pub fn reindex(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<u64> {
        if self.inner.read_only {
            return Err(Error::ReadOnly);
        }
        crate::writer::rebuild_indexes(&self.inner.env, &self.inner.dbs, progress)
    }

    /// A consistent read-only snapshot of the store; see [`Reader`].
    pub fn read(&self) -> Result<Reader> {
        let txn = self.inner.env.clone().static_read_txn()?;
        Ok(Reader::new(txn, self.inner.dbs))
    }

    /// The global log as owned events, renewing the read transaction every
    /// `batch` positions.
    pub fn read_all_batched(&self, options: ReadAll, batch: usize) -> Result<AllBatches> {
        AllBatches::new(self.clone(), options, batch)
    }

    /// One stream as owned events, renewing the read transaction every `batch` events.
    pub fn read_stream_batched(
        &self,
        stream: &str,
        options: ReadStream,
        batch: usize,
    ) -> Result<StreamBatches> {
        StreamBatches::new(self.clone(), stream, options, batch)
    }

    /// Position of the last committed event. For a writable store this is the
    /// writer's view and costs nothing; a read-only store asks LMDB.
    pub fn head(&self) -> Result<u64> {
        if self.is_read_only() {
            self.read()?.head()
        } else {
            Ok(self.inner.shared.head.load(Ordering::Acquire))
        }
    }

    /// Counters of the store and its writer.
    pub fn stats(&self) -> Result<StoreStats> {
        let reader = self.read()?;
        let s = &self.inner.shared;
        let size_on_disk = std::fs::metadata(self.inner.dir.join("data.mdb")).map(|m| m.len()).unwrap_or(0);
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Ok(StoreStats {
            head: reader.head()?,
            streams: reader.stream_count()?,
            size_on_disk,
            map_size: self.inner.map_size as u64,
            commits: get(&s.commits),
            batches: get(&s.batches),
            requests: get(&s.requests),
            rejected: get(&s.rejected),
            events_written: get(&s.events_written),
            bytes_written: get(&s.bytes_written),
            max_batch_requests: get(&s.max_batch_requests),
        })
    }

    /// Whether an earlier write failure has poisoned the store, and why.
    pub fn poisoned(&self) -> Option<String> {
        self.inner.shared.poisoned().map(str::to_string)
    }

    /// Finishes queued writes, makes everything committed durable (also
    /// under `Relaxed` and `NoSync`) and stops the writer. Every request
    /// queued before the close gets its answer; a write that comes later,
    /// from this or any clone of the handle, fails with [`Error::Closed`].
    /// Clones can still read, and subscriptions deliver what is committed,
    /// then end.
    pub fn close(self) -> Result<()> {
        self.inner.close()
    }

    /// A channel that receives the head after each commit (coalesced: one
    /// wake-up waits at most), for a follower of the log to register
    /// *before* its first read. After [`close`](Store::close) it is
    /// disconnected at once, so the follower ends.
    pub(crate) fn commit_wakeups(&self) -> crossbeam_channel::Receiver<u64> {
        self.inner.shared.notifier.register()
    }

    /// Wake-ups after each commit for a follower that blocks on them or,
    /// with the `async` feature, polls them from a task. As
    /// [`commit_wakeups`](Store::commit_wakeups): register *before* the
    /// first read; disconnected at once after [`close`](Store::close).
    /// Dropping it unregisters the follower at once.
    pub(crate) fn follow_commits(&self) -> CommitWakeups {
        self.inner.shared.notifier.follow()
    }

    /// How many followers are registered for wake-ups (for tests).
    #[cfg(test)]
    pub(crate) fn followers(&self) -> usize {
        self.inner.shared.notifier.len()
    }

    pub(crate) fn env(&self) -> &Env<WithoutTls> {
        &self.inner.env
    }

    /// The durability the store was opened with.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    pub(crate) fn map_size(&self) -> usize {
        self.inner.map_size
    }

    /// The `T` this store keeps for a feature, made by `open` on first use.
    /// `open` runs under a lock, so it runs once per store however many
    /// threads ask; when it answers `None` (nothing to open yet), nothing
    /// is kept and the next call asks again.
    pub(crate) fn extension<T: Any + Send + Sync>(
        &self,
        open: impl FnOnce() -> Result<Option<T>>,
    ) -> Result<Option<Arc<T>>> {
        let mut kept = self.inner.extensions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = kept.iter().find_map(|e| e.clone().downcast::<T>().ok()) {
            return Ok(Some(found));
        }
        let Some(made) = open()? else { return Ok(None) };
        let made = Arc::new(made);
        kept.push(made.clone());
        Ok(Some(made))
    }

    #[cfg(test)]
    pub(crate) fn env_and_dbs(&self) -> (&Env<WithoutTls>, Dbs) {
        (&self.inner.env, self.inner.dbs)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.dir)
            .field("read_only", &self.is_read_only())
            .finish_non_exhaustive()
    }
}

/// Rejects a request that names one event id twice.
pub(crate) fn check_ids(appends: &[StreamAppend]) -> Result<()> {
    let total: usize = appends.iter().map(|a| a.events.len()).sum();
    if total < 2 {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(total);
    for e in appends.iter().flat_map(|a| a.events.iter()) {
        if !seen.insert(e.event_id) {
            return Err(Error::DuplicateEventId { event_id: e.event_id, stream: None, position: None });
        }
    }
    Ok(())
}

#[cfg(test)]
mod held_writer;

#[cfg(all(test, feature = "async"))]
mod queue_full_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lmdb::{keys, meta};
    use crate::read::ReadAll;

    fn ev(n: u64) -> NewEvent {
        NewEvent::json("E", &serde_json::json!({ "n": n }))
    }

    #[test]
    fn unknown_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            meta::overwrite_for_test(&mut wtxn, &dbs, Some(99), None).unwrap();
            wtxn.commit().unwrap();
        }
        match Store::open(dir.path()) {
            Err(Error::UnsupportedFormat { found: 99, supported }) => {
                assert_eq!(supported, meta::FORMAT_VERSION)
            }
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
    }

    #[test]
    fn other_rkyv_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            meta::overwrite_for_test(&mut wtxn, &dbs, None, Some("rkyv0.8 be align1 ptr64")).unwrap();
            wtxn.commit().unwrap();
        }
        let err = Store::builder(dir.path()).open_read_only().unwrap_err();
        assert!(matches!(err, Error::ArchiveFormatMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("rkyv0.8 be align1 ptr64"));
    }

    /// Guards that a damaged record surfaces as `Corruption` on every read path.
    #[test]
    fn flipped_byte_in_a_stored_record_is_corruption_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("c-1", ExpectedVersion::Any, [ev(1), ev(2), ev(3)]).unwrap();
        {
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            let mut value = dbs.events.get(&wtxn, &keys::position_key(2)).unwrap().unwrap().to_vec();
            value[5] ^= 0xff;
            dbs.events.put(&mut wtxn, &keys::position_key(2), &value).unwrap();
            wtxn.commit().unwrap();
        }
        let r = store.read().unwrap();
        assert!(matches!(r.event(2), Err(Error::Corruption { position: 2, .. })));
        let results: Vec<_> = r.all(ReadAll::new()).unwrap().collect();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(Error::Corruption { position: 2, .. })));
        assert_eq!(results.len(), 2, "iteration stops at the first corrupt record");
        let mut s = r.stream("c-1", crate::read::ReadStream::forward()).unwrap();
        assert!(s.next().unwrap().is_ok());
        assert!(matches!(s.next(), Some(Err(Error::Corruption { position: 2, .. }))));
        assert!(s.next().is_none());
    }

    #[test]
    fn missing_index_run_is_index_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("c-1", ExpectedVersion::Any, [ev(1)]).unwrap();
        store.append("d-1", ExpectedVersion::Any, [ev(1)]).unwrap();
        store.append("c-1", ExpectedVersion::Any, [ev(2)]).unwrap();
        {
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            assert!(dbs.stream_index.delete(&mut wtxn, &keys::stream_version_key(1, 2)).unwrap());
            wtxn.commit().unwrap();
        }
        let r = store.read().unwrap();
        let results: Vec<_> = r.stream("c-1", crate::read::ReadStream::forward()).unwrap().collect();
        assert!(results[0].is_ok());
        assert!(
            matches!(results[1], Err(Error::IndexCorruption { index: "stream_index", .. })),
            "{results:?}"
        );
    }

    #[test]
    fn adjacent_appends_extend_one_index_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..10 {
            store.append("run-1", ExpectedVersion::Exact(i), [ev(i)]).unwrap();
        }
        store.append("other-1", ExpectedVersion::Any, [ev(0)]).unwrap();
        store.append("run-1", ExpectedVersion::Exact(10), [ev(10), ev(11)]).unwrap();
        let (env, dbs) = store.env_and_dbs();
        let rtxn = env.read_txn().unwrap();
        let runs: Vec<(u64, u64, keys::Run)> = dbs
            .stream_index
            .iter(&rtxn)
            .unwrap()
            .map(|kv| {
                let (k, v) = kv.unwrap();
                let (no, first) = keys::parse_stream_version_key("stream_index", k).unwrap();
                (no, first, keys::Run::decode(v).unwrap())
            })
            .collect();
        assert_eq!(
            runs,
            vec![
                (1, 1, keys::Run { first_position: 1, count: 10 }),
                (1, 11, keys::Run { first_position: 12, count: 2 }),
                (2, 1, keys::Run { first_position: 11, count: 1 }),
            ]
        );
    }
}
