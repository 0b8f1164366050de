//! The group-commit writer: one thread owns every LMDB write transaction.
//!
//! Appenders encode their events on their own thread, then queue a
//! [`Request`] on a bounded channel. The writer takes the first request,
//! drains whatever else is queued (up to the batch limits), checks and writes
//! every request in one transaction, commits once (one fsync), answers each
//! request with its own result and wakes subscribers. An answer goes into
//! the request's ticket (`ticket.rs`), which wakes the appender: a blocked
//! thread or, for an awaited ticket, the task's `Waker`.

mod apply;
mod batch;
mod index;
mod scavenge;
pub(crate) mod shared;
mod side;
mod ticket;

pub(crate) use index::rebuild as rebuild_indexes;
pub(crate) use shared::CommitWakeups;
pub(crate) use side::{Delete, Put, SideWrite, boxed};
pub use ticket::AppendTicket;
#[cfg(feature = "async")]
pub use ticket::{AppendFuture, AppendManyFuture};
pub(crate) use ticket::{ReplySender, ticket};

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use heed::{Env, WithoutTls};

use crate::lmdb::env::Dbs;
use crate::record::EncodedEvent;
use crate::vocab::{AppendResult, ExpectedVersion};
use crate::vocab::{Error, Result};
use shared::Shared;

/// Events for one stream, with the version the appender expects.
#[derive(Debug)]
pub(crate) struct StreamAppend {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<EncodedEvent>,
}

/// One all-or-nothing unit of work for the writer.
#[derive(Debug)]
pub(crate) struct Request {
    pub appends: Vec<StreamAppend>,
    pub side_writes: Vec<Box<dyn SideWrite>>,
    /// A DCB condition, checked in the batch before anything of the
    /// request is written.
    pub condition: Option<Box<crate::vocab::AppendCondition>>,
    /// A change to a stream's lifecycle or retention, made in the same
    /// transaction as the request's appends (the event that records it).
    pub lifecycle: Option<Box<(String, Lifecycle)>>,
    pub reply: ReplySender,
    /// When it was submitted, for the append latency metrics.
    pub submitted: std::time::Instant,
}

/// A change to a stream's lifecycle or retention (see `lmdb/stream_meta.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lifecycle {
    /// Hide everything up to the stream's version now, and the stream,
    /// until its next append.
    SoftDelete,
    /// Refuse every later read and write of the stream.
    Tombstone,
    /// Set the limits given; `None` keeps a limit as it is, 0 lifts it.
    Retention { truncate_before: Option<u64>, max_count: Option<u64>, max_age_us: Option<u64> },
    /// Remove the stream's stored events below this version, which must
    /// all be hidden already (`scavenge.rs`); the request has no appends.
    Scavenge { below: u64 },
}

/// The writer's answer to a request. It carries the request's encoded events
/// back too, so their buffers are freed on the appender's thread: freeing
/// another thread's allocations was a tenth of the writer thread's time on
/// bulk appends, and the writer is the one thread every append waits for.
pub(crate) struct Reply {
    pub outcome: Result<Vec<AppendResult>>,
    pub spent: Vec<StreamAppend>,
    /// When the request was submitted and when the writer took it into a
    /// transaction: the appender records its latencies, off the writer.
    pub submitted: std::time::Instant,
    pub taken: std::time::Instant,
}

impl Request {
    fn event_count(&self) -> usize {
        self.appends.iter().map(|a| a.events.len()).sum::<usize>().max(1)
    }

    fn byte_count(&self) -> usize {
        self.appends.iter().flat_map(|a| a.events.iter()).map(|e| e.value.len()).sum()
    }
}

/// What the writer's queue carries. There is no "close" message: the writer
/// stops when the last sender is gone, after answering everything queued,
/// so no request can be left in the queue without an answer.
pub(crate) enum Command {
    Write(Request),
    /// Make every commit so far durable (`Store::sync`), then answer with
    /// the durable head.
    Sync(Sender<Result<u64>>),
    /// A follower of durable positions (projection runner, durable
    /// consumer) is waiting: sync within `sync_interval` unless commits make
    /// the log durable first.
    WantDurable,
}

/// Writer settings taken from the builder.
/// A function the writer calls after each commit, with the new head.
#[derive(Clone)]
pub(crate) struct CommitHook(pub std::sync::Arc<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for CommitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitHook(..)")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    pub durability: crate::lmdb::Durability,
    /// Longest a commit stays unsynced while a follower waits for it
    /// (`Relaxed` and `NoSync`).
    pub sync_interval: std::time::Duration,
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
    /// Longest the writer waits for expected appenders before committing.
    pub max_batch_delay: std::time::Duration,
    pub map_size: usize,
    pub on_commit: Option<CommitHook>,
    pub faults: FaultPlan,
}

/// Failures to inject, for tests of the failure paths. Only the
/// `fault-injection` feature can set them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FaultPlan {
    /// Abort the Nth commit (counted from 1 since open) as if it had failed.
    pub fail_commit_at: Option<u64>,
    /// Let the Nth commit reach LMDB, then report it failed, as a failed
    /// fsync would: the callers are not acknowledged and the store is poisoned.
    pub fail_sync_at: Option<u64>,
}

/// The handle the store keeps to its writer thread. The queue's sender is
/// kept apart (the store guards it), because dropping the last sender is
/// what stops the writer.
pub(crate) struct WriterHandle {
    join: Option<JoinHandle<()>>,
}

impl WriterHandle {
    pub(crate) fn spawn(
        env: Env<WithoutTls>,
        dbs: Dbs,
        shared: Arc<Shared>,
        config: WriterConfig,
        capacity: usize,
        start: batch::StartState,
    ) -> Result<(Self, Sender<Command>)> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let join = std::thread::Builder::new()
            .name("eventfold-writer".into())
            .spawn(move || batch::Writer::new(env, dbs, shared, config, start).run(rx))
            .map_err(|e| Error::io("eventfold-writer thread", e))?;
        Ok((WriterHandle { join: Some(join) }, tx))
    }

    /// Waits for the writer to answer what is queued and stop. The caller
    /// must have dropped every sender of the queue first.
    pub(crate) fn join(&mut self) {
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

pub(crate) use batch::StartState;
