//! The writer thread's loop: drain a batch, apply it in one transaction,
//! commit once, answer everyone.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use heed::{Env, RwTxn, WithoutTls};

use super::apply::{BatchCtx, Step};
use super::shared::Shared;
use super::{Command, Reply, Request, WriterConfig};
use crate::lmdb::Durability;
use crate::lmdb::env::Dbs;
use crate::lmdb::meta::KEY_NEXT_STREAM;
use crate::metrics;
use crate::vocab::AppendResult;
use crate::vocab::{Error, Result, from_heed};

/// What the writer needs to know about the log when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartState {
    pub head: u64,
    pub last_recorded_at: u64,
    pub next_stream_no: u64,
    /// The greatest key of `event_ids` (all zeros when empty).
    pub last_event_id: [u8; 16],
}

/// A transaction that could not be committed.
struct TxnFailure {
    /// What the requests of the transaction get; an `Error::Poisoned`
    /// (whose reason poisons the store) when `poison` is set.
    error: Error,
    /// Set when the store can no longer be trusted to write (failed commit).
    poison: bool,
}

type Outcome = Result<Vec<AppendResult>>;

/// The requests taken from the queue for the next commit.
#[derive(Default)]
struct Gathered {
    requests: Vec<Request>,
    events: usize,
    bytes: usize,
    /// `Store::sync` callers, answered once the batch is committed and synced.
    syncs: Vec<Sender<Result<u64>>>,
    /// A follower asked for durable positions.
    want_durable: bool,
}

impl Gathered {
    fn take(&mut self, command: Command) {
        match command {
            Command::Write(r) => {
                self.events = self.events.saturating_add(r.event_count());
                self.bytes = self.bytes.saturating_add(r.byte_count());
                self.requests.push(r);
            }
            Command::Sync(reply) => self.syncs.push(reply),
            Command::WantDurable => self.want_durable = true,
        }
    }

    /// Whether more requests may join: not past the limits, and no sync
    /// caller is kept waiting for requests queued after it.
    fn has_room(&self, max_events: usize, max_bytes: usize) -> bool {
        self.syncs.is_empty() && self.events < max_events && self.bytes < max_bytes
    }
}

pub(crate) struct Writer {
    env: Env<WithoutTls>,
    pub(super) dbs: Dbs,
    shared: Arc<Shared>,
    pub(super) config: WriterConfig,
    pub(super) state: StartState,
    commit_attempts: u64,
    /// When the writer must sync at the latest, because a follower of
    /// durable positions waits (`Relaxed` and `NoSync` only).
    sync_due: Option<Instant>,
    metrics: metrics::WriterMetrics,
}

fn poison_reason(error: &Error) -> String {
    match error {
        Error::Poisoned { reason } => reason.clone(),
        other => other.to_string(),
    }
}

impl Writer {
    pub(crate) fn new(
        env: Env<WithoutTls>,
        dbs: Dbs,
        shared: Arc<Shared>,
        config: WriterConfig,
        state: StartState,
    ) -> Self {
        let metrics = metrics::WriterMetrics::new();
        Writer { env, dbs, shared, config, state, commit_attempts: 0, sync_due: None, metrics }
    }

    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        let mut batch = Gathered::default();
        // How many requests the next batch can expect: those answered by the
        // last commit (their appenders are about to send again) plus those
        // of other appenders that queued up while it ran.
        let mut expected = 0usize;
        let mut last_commit = Duration::ZERO;
        let (max_events, max_bytes) = (self.config.max_batch_events, self.config.max_batch_bytes);
        loop {
            // The queue ends when the store drops its last sender (close, or
            // the last handle gone); `recv` hands out everything queued
            // before it reports that, so every request is answered.
            let first = match self.sync_due {
                Some(due) => match rx.recv_deadline(due) {
                    Ok(command) => command,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync(Vec::new());
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(command) => command,
                    Err(_) => break,
                },
            };
            batch.take(first);
            while batch.has_room(max_events, max_bytes) {
                match rx.try_recv() {
                    Ok(command) => batch.take(command),
                    Err(_) => break,
                }
            }
            self.shared.queue_space.wake_all();
            // Appenders answered by the last commit come back within
            // microseconds; waiting a little for them (never more than half
            // a commit) turns two half-full commits into one full one. A lone
            // appender never waits: it is all the batch expects.
            let delay = self.config.max_batch_delay.min(last_commit.checked_div(2).unwrap_or_default());
            if !delay.is_zero() && batch.requests.len() < expected {
                let deadline = later(delay);
                while batch.requests.len() < expected && batch.has_room(max_events, max_bytes) {
                    match rx.recv_deadline(deadline) {
                        Ok(command) => batch.take(command),
                        Err(_) => break,
                    }
                }
            }
            let size = batch.requests.len();
            let mut others = rx.len();
            if size > 0 {
                let started = Instant::now();
                others = self.process(&mut batch.requests, || rx.len());
                last_commit = started.elapsed();
            }
            expected = size.saturating_add(others);
            batch.events = 0;
            batch.bytes = 0;
            if std::mem::take(&mut batch.want_durable) {
                self.want_durable();
            }
            let syncs = std::mem::take(&mut batch.syncs);
            if !syncs.is_empty() || self.sync_due.is_some_and(|due| Instant::now() >= due) {
                self.sync(syncs);
            }
        }
        // A clean close leaves nothing to the operating system: what was
        // committed is on disk when `close` returns, whatever the durability.
        if self.shared.durable.load(Ordering::Acquire) < self.state.head {
            self.sync(Vec::new());
        }
        self.shared.notifier.close();
        self.shared.queue_space.wake_all();
    }

    /// Schedules a sync for a follower of durable positions, unless the log
    /// is durable already.
    fn want_durable(&mut self) {
        if self.shared.durable.load(Ordering::Acquire) >= self.state.head {
            self.shared.durable_requested.store(false, Ordering::Release);
        } else if self.sync_due.is_none() {
            self.sync_due = Some(later(self.config.sync_interval));
        }
    }

    /// Makes every commit so far durable and tells the followers. A failed
    /// sync poisons the store, as a failed commit does: the kernel may have
    /// dropped the dirty pages, so a retry proves nothing.
    fn sync(&mut self, replies: Vec<Sender<Result<u64>>>) {
        self.sync_due = None;
        let head = self.state.head;
        let s = &self.shared;
        let outcome = match s.poisoned() {
            Some(reason) => Err(reason.to_string()),
            None if s.durable.load(Ordering::Acquire) >= head => Ok(head),
            None => match self.env.force_sync() {
                Ok(()) => {
                    s.durable.fetch_max(head, Ordering::AcqRel);
                    s.notifier.notify(head);
                    Ok(head)
                }
                Err(e) => {
                    let reason = format!("sync failed: {e}; the disk may be full or failing");
                    self.poison(&reason);
                    Err(reason)
                }
            },
        };
        self.shared.durable_requested.store(false, Ordering::Release);
        for reply in replies {
            let _ = reply.send(outcome.clone().map_err(|reason| Error::Poisoned { reason }));
        }
    }

    /// Poisons the store: every later write is refused until a reopen.
    fn poison(&self, reason: &str) {
        if self.shared.poisoned().is_none() {
            metrics::poisoned();
        }
        tracing::error!(reason, "eventfold store poisoned: writes are refused until it is reopened");
        self.shared.poison(reason);
    }

    /// Commits `batch` and answers its requests. Returns how many requests
    /// were queued just before the answers went out: they come from other
    /// appenders, since every appender in the batch was still waiting. Counted
    /// after answering, the queue would also hold answered appenders that
    /// already came back, counting them twice, and the next batch would wait
    /// out its whole window for requests that never come.
    fn process(&mut self, batch: &mut Vec<Request>, queued: impl Fn() -> usize) -> usize {
        let s = &self.shared;
        Shared::bump(&s.batches, 1);
        Shared::bump(&s.requests, batch.len() as u64);
        s.max_batch_requests.fetch_max(batch.len() as u64, Ordering::Relaxed);
        let started = Instant::now();
        let before = Counts::of(s, self.state.head);
        let span = tracing::debug_span!(
            "commit",
            requests = batch.len(),
            first_position = before.head.saturating_add(1),
            last_position = tracing::field::Empty,
            events = tracing::field::Empty,
        );
        let _entered = span.enter();
        let outcomes: Vec<Outcome> = match s.poisoned() {
            Some(reason) => {
                let reason = reason.to_string();
                batch.iter().map(|_| Err(Error::Poisoned { reason: reason.clone() })).collect()
            }
            None => match std::panic::catch_unwind(AssertUnwindSafe(|| self.commit_batch(batch))) {
                Ok(outcomes) => outcomes,
                Err(panic) => {
                    let msg = crate::vocab::panic_message(panic.as_ref());
                    let reason = format!("the writer thread panicked: {msg}");
                    self.poison(&reason);
                    batch.iter().map(|_| Err(Error::Poisoned { reason: reason.clone() })).collect()
                }
            },
        };
        let others = queued();
        // Everything is recorded before the first answer goes out, so an
        // appender that has its answer sees the metrics of its append.
        let answered = Instant::now();
        let after = Counts::of(&self.shared, self.state.head);
        let events = after.events.saturating_sub(before.events);
        span.record("last_position", after.head).record("events", events);
        let mut appended = 0u64;
        for (req, outcome) in batch.iter().zip(&outcomes) {
            // Requests with side writes only (checkpoints, snapshots) are
            // not appends.
            match outcome {
                _ if req.appends.is_empty() => {}
                Ok(_) => appended = appended.saturating_add(1),
                Err(e) => metrics::rejected(e),
            }
        }
        let record = metrics::BatchRecord {
            requests: batch.len(),
            events,
            bytes: after.bytes.saturating_sub(before.bytes),
            committed: after.commits > before.commits,
            commit: answered.saturating_duration_since(started),
            queued: others,
            appended,
        };
        self.metrics.batch(&record, answered);
        for (req, outcome) in batch.drain(..).zip(outcomes) {
            if outcome.is_err() {
                Shared::bump(&self.shared.rejected, 1);
            }
            let (submitted, taken) = (req.submitted, started);
            // Wakes the appender's thread or task; an appender that gave
            // up waiting is not our failure.
            req.reply.send(Reply { outcome, spent: req.appends, submitted, taken });
        }
        others
    }

    /// Applies the batch in one transaction. When LMDB fails mid-batch (for
    /// example the map is full), the transaction is aborted and each request
    /// is retried alone, so one oversized request does not fail its neighbours.
    fn commit_batch(&mut self, batch: &mut [Request]) -> Vec<Outcome> {
        match self.try_batch(batch) {
            Ok(outcomes) => outcomes,
            Err(failure) if failure.poison => {
                let reason = poison_reason(&failure.error);
                self.poison(&reason);
                batch.iter().map(|_| Err(Error::Poisoned { reason: reason.clone() })).collect()
            }
            Err(failure) if batch.len() == 1 => vec![Err(failure.error)],
            Err(_) => {
                let mut outcomes = Vec::with_capacity(batch.len());
                for req in batch.iter_mut() {
                    // Once one retry has poisoned the store, nothing after
                    // it may be committed or acknowledged.
                    if let Some(reason) = self.shared.poisoned() {
                        outcomes.push(Err(Error::Poisoned { reason: reason.to_string() }));
                        continue;
                    }
                    match self.try_batch(std::slice::from_mut(req)) {
                        Ok(mut o) => outcomes.push(
                            o.pop().unwrap_or_else(|| Err(Error::internal("a request got no outcome"))),
                        ),
                        Err(f) if f.poison => {
                            let reason = poison_reason(&f.error);
                            self.poison(&reason);
                            outcomes.push(Err(Error::Poisoned { reason }));
                        }
                        Err(f) => outcomes.push(Err(f.error)),
                    }
                }
                outcomes
            }
        }
    }

    fn try_batch(&mut self, batch: &mut [Request]) -> Result<Vec<Outcome>, TxnFailure> {
        let map_size = self.config.map_size;
        let fail = |e: heed::Error| TxnFailure { error: from_heed(e, map_size), poison: false };
        let now = crate::vocab::now_micros().max(self.state.last_recorded_at);
        let mut wtxn = self.env.write_txn().map_err(fail)?;
        let mut ctx = BatchCtx {
            heads: HashMap::new(),
            pos: self.state.head,
            next_stream_no: self.state.next_stream_no,
            last_event_id: self.state.last_event_id,
            now,
            last_time: self.state.last_recorded_at,
            events: 0,
            bytes: 0,
            side_writes: 0,
            index: super::index::IndexBuffer::default(),
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for req in batch.iter_mut() {
            match self.apply(&mut wtxn, &mut ctx, req) {
                Ok(results) => outcomes.push(Ok(results)),
                Err(Step::Reject(e)) => outcomes.push(Err(e)),
                Err(Step::Abort(e)) => {
                    wtxn.abort();
                    return Err(fail(e));
                }
            }
        }
        if ctx.pos == self.state.head && ctx.side_writes == 0 {
            // Only rejections and idempotent retries: nothing to commit.
            wtxn.abort();
            return Ok(outcomes);
        }
        if let Err(e) = self.finish(&mut wtxn, &ctx) {
            wtxn.abort();
            return Err(fail(e));
        }
        let attempt = self.commit_attempts.saturating_add(1);
        self.commit_attempts = attempt;
        if self.config.faults.fail_commit_at == Some(attempt) {
            wtxn.abort();
            let reason = format!("commit failed: injected failure of commit {attempt}");
            return Err(TxnFailure { error: Error::Poisoned { reason }, poison: true });
        }
        if let Err(e) = wtxn.commit() {
            let os_error = match &e {
                heed::Error::Io(io) => io.raw_os_error(),
                _ => None,
            };
            let text = e.to_string();
            let error = from_heed(e, map_size);
            if matches!(error, Error::StorageFull { .. }) {
                return Err(TxnFailure { error, poison: false });
            }
            // ENOSPC, EIO: LMDB reports a short write to a full disk as EIO.
            let hint =
                if matches!(os_error, Some(28) | Some(5)) { "; the disk may be full or failing" } else { "" };
            let reason = format!("commit failed: {text}{hint}");
            return Err(TxnFailure { error: Error::Poisoned { reason }, poison: true });
        }
        if self.config.faults.fail_sync_at == Some(attempt) {
            // The pages reached LMDB but their durability is unknown: do not
            // acknowledge, and refuse further writes until a reopen.
            let reason = format!("fsync failed: injected failure of commit {attempt}");
            return Err(TxnFailure { error: Error::Poisoned { reason }, poison: true });
        }
        let s = &self.shared;
        match self.config.durability {
            Durability::Sync => s.durable.fetch_max(ctx.pos, Ordering::AcqRel),
            // This commit's data sync also flushed the previous commit's
            // meta page: that one is durable now, this one is not yet.
            Durability::Relaxed => s.durable.fetch_max(self.state.head, Ordering::AcqRel),
            Durability::NoSync => 0,
        };
        self.state.head = ctx.pos;
        self.state.last_recorded_at = ctx.last_time;
        self.state.next_stream_no = ctx.next_stream_no;
        self.state.last_event_id = ctx.last_event_id;
        s.head.store(ctx.pos, Ordering::Release);
        Shared::bump(&s.commits, 1);
        Shared::bump(&s.events_written, ctx.events);
        Shared::bump(&s.bytes_written, ctx.bytes);
        if let Some(hook) = &self.config.on_commit {
            // The commit stands whatever the hook does: a panic in it must
            // not turn durable appends into reported failures.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| (hook.0)(ctx.pos)));
        }
        s.notifier.notify(ctx.pos);
        Ok(outcomes)
    }

    /// Writes the batch's dirty stream heads and the stream counter.
    fn finish(&self, wtxn: &mut RwTxn, ctx: &BatchCtx) -> heed::Result<()> {
        if let Some(index) = self.dbs.index {
            ctx.index.flush(wtxn, index)?;
        }
        for (stream, (head, dirty)) in &ctx.heads {
            if *dirty {
                self.dbs.streams.put(wtxn, stream.as_bytes(), &head.encode())?;
            }
        }
        if ctx.next_stream_no != self.state.next_stream_no {
            self.dbs.meta.put(wtxn, KEY_NEXT_STREAM, &ctx.next_stream_no.to_le_bytes())?;
        }
        Ok(())
    }
}

/// The writer's counters at one instant, to tell what a batch did.
struct Counts {
    head: u64,
    commits: u64,
    events: u64,
    bytes: u64,
}

impl Counts {
    fn of(s: &Shared, head: u64) -> Self {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            head,
            commits: get(&s.commits),
            events: get(&s.events_written),
            bytes: get(&s.bytes_written),
        }
    }
}

/// The instant `delay` from now (far in the future when that overflows).
fn later(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay).unwrap_or(now)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::record;
    use crate::store::Store;
    use crate::vocab::{ExpectedVersion, NewEvent};
    use crate::writer::{FaultPlan, StreamAppend};

    /// Guards the batch window's estimate of the next batch: `process`
    /// counts the queue before any answer goes out. Counted after, the
    /// answered appenders that came back at once were counted twice, the
    /// estimate exceeded the appenders there are, and every next batch
    /// waited out its whole window (W2 in `docs/benchmarks.md`).
    #[test]
    fn process_counts_the_queue_before_any_answer_goes_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (env, dbs) = store.env_and_dbs();
        let config = WriterConfig {
            durability: crate::Durability::Sync,
            sync_interval: Duration::ZERO,
            max_batch_events: 1000,
            max_batch_bytes: 1 << 20,
            max_batch_delay: Duration::ZERO,
            map_size: crate::DEFAULT_MAP_SIZE,
            on_commit: None,
            faults: FaultPlan::default(),
        };
        let start = StartState { head: 0, last_recorded_at: 0, next_stream_no: 1, last_event_id: [0; 16] };
        let mut writer = Writer::new(env.clone(), dbs, Arc::new(Shared::default()), config, start);
        let (mut batch, mut replies) = (Vec::new(), Vec::new());
        for i in 0..3 {
            let (tx, rx) = crate::writer::ticket();
            let event = record::encode("s", NewEvent::json("E", &i), 1 << 20).unwrap();
            let appends = vec![StreamAppend {
                stream_id: format!("s-{i}"),
                expected: ExpectedVersion::Any,
                events: vec![event],
            }];
            batch.push(Request {
                appends,
                side_writes: Vec::new(),
                condition: None,
                lifecycle: None,
                reply: tx,
                submitted: Instant::now(),
            });
            replies.push(rx);
        }
        let others = writer.process(&mut batch, || {
            assert!(
                replies.iter().all(|r| !r.is_answered()),
                "an answer went out before the queue was counted"
            );
            5
        });
        assert_eq!(others, 5);
        for r in replies {
            assert_eq!(r.wait_many().unwrap().len(), 1);
        }
    }

    fn request(stream: &str, payload_len: usize) -> (Request, crate::writer::AppendTicket) {
        let (tx, rx) = crate::writer::ticket();
        let event = record::encode(stream, NewEvent::binary("E", vec![1u8; payload_len]), 8 << 20).unwrap();
        let appends = vec![StreamAppend {
            stream_id: stream.to_string(),
            expected: ExpectedVersion::Any,
            events: vec![event],
        }];
        (
            Request {
                appends,
                side_writes: Vec::new(),
                condition: None,
                lifecycle: None,
                reply: tx,
                submitted: Instant::now(),
            },
            rx,
        )
    }

    /// Guards the retry-alone path after a failed batch: once one retried
    /// request poisoned the store, the requests after it were still
    /// committed and acknowledged. They must get `Poisoned`, and nothing
    /// after the poison may reach the log.
    #[test]
    fn retries_after_a_failed_batch_stop_at_the_poison() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path()).map_size(1 << 20).open().unwrap();
        let (env, dbs) = store.env_and_dbs();
        let config = WriterConfig {
            durability: crate::Durability::Sync,
            sync_interval: Duration::ZERO,
            max_batch_events: 1000,
            max_batch_bytes: 64 << 20,
            max_batch_delay: Duration::ZERO,
            map_size: 1 << 20,
            on_commit: None,
            // The first retry's commit fails as a failed fsync would.
            faults: FaultPlan { fail_commit_at: Some(1), fail_sync_at: None },
        };
        let start = StartState { head: 0, last_recorded_at: 0, next_stream_no: 1, last_event_id: [0; 16] };
        let shared = Arc::new(Shared::default());
        let mut writer = Writer::new(env.clone(), dbs, shared.clone(), config, start);
        // The middle request cannot fit in the map, so the batch fails and
        // each request is retried alone.
        let (a, ra) = request("a-1", 10);
        let (b, rb) = request("b-1", 4 << 20);
        let (c, rc) = request("c-1", 10);
        writer.process(&mut vec![a, b, c], || 0);
        for (name, rx) in [("first", ra), ("second", rb), ("third", rc)] {
            let outcome = rx.wait_many();
            assert!(matches!(outcome, Err(Error::Poisoned { .. })), "{name} request: {outcome:?}");
        }
        assert!(shared.poisoned().is_some());
        assert_eq!(store.read().unwrap().head().unwrap(), 0, "nothing after the poison was committed");
    }
}
