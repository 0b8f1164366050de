//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! eventfold records its metrics with the `metrics` crate's macros. Until
//! the application installs a recorder (Prometheus, StatsD, its own…)
//! they cost a relaxed atomic load each and go nowhere. The names are the
//! constants of this module; `docs/metrics.md` says what each one means.
//! Metrics are process-wide: two stores open in one process add up into
//! the same counters.
//!
//! The writer records once per batch, not once per request or event,
//! through handles it looks up once a second: its thread is the one every
//! append waits for. An append's latencies are recorded by the appender's
//! own thread when it has its answer.
//!
//! With the `prometheus` feature, `serve_prometheus` installs a
//! Prometheus recorder and serves the metrics over HTTP in Prometheus'
//! text format; `render_prometheus` gives the same text to serve another
//! way.
//!
//! ```
//! // Names to query, alert on or assert in tests.
//! assert_eq!(eventfold::metrics::APPENDS_TOTAL, "eventfold_appends_total");
//! ```

#[cfg(feature = "prometheus")]
mod prometheus;

#[cfg(feature = "prometheus")]
pub use prometheus::{MetricsServer, install_prometheus_recorder, render_prometheus, serve_prometheus};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::vocab::Error;

/// Counter: append requests committed (or found already stored), one per
/// `append`, `append_many` or `submit`, however many events it carries.
pub const APPENDS_TOTAL: &str = "eventfold_appends_total";
/// Counter, label `reason`: append requests refused, by the caller's
/// thread (`invalid`, `closed`, `read_only`, `poisoned`) or by the writer
/// (`wrong_expected_version`, `duplicate_event_id`, `storage_full`,
/// `poisoned`, `damaged`); anything else is `other`.
pub const APPENDS_REJECTED_TOTAL: &str = "eventfold_appends_rejected_total";
/// Counter: events written to the log.
pub const EVENTS_APPENDED_TOTAL: &str = "eventfold_events_appended_total";
/// Counter: record bytes written to the log.
pub const APPENDED_BYTES_TOTAL: &str = "eventfold_appended_bytes_total";
/// Counter: commits of the writer (each is one fsync under `Durability::Sync`).
pub const COMMITS_TOTAL: &str = "eventfold_commits_total";
/// Histogram, seconds: from a request's submission until the appender
/// has its answer (queue, batch, commit, reply). Recorded when the answer
/// is waited for (`append`, `AppendTicket::wait`).
pub const APPEND_LATENCY_SECONDS: &str = "eventfold_append_latency_seconds";
/// Histogram, seconds: from a request's submission until the writer takes
/// it into a transaction.
pub const APPEND_QUEUE_SECONDS: &str = "eventfold_append_queue_seconds";
/// Histogram, seconds: how long the writer took to write and commit one
/// batch (from opening its transaction to the commit's return, with the
/// fsync and any retries of single requests).
pub const COMMIT_DURATION_SECONDS: &str = "eventfold_commit_duration_seconds";
/// Histogram: requests per batch of the writer.
pub const BATCH_REQUESTS: &str = "eventfold_batch_requests";
/// Histogram: events written per batch of the writer.
pub const BATCH_EVENTS: &str = "eventfold_batch_events";
/// Gauge: commands waiting in the writer's queue, sampled at each batch
/// when its answers go out.
pub const QUEUE_DEPTH: &str = "eventfold_queue_depth";
/// Counter: stores poisoned by a failed commit, sync or a panic of the writer.
pub const POISONINGS_TOTAL: &str = "eventfold_poisonings_total";
/// Histogram: how many committed positions a subscription had not read
/// yet, observed at each of its reads of the log (0 when caught up).
pub const SUBSCRIPTION_LAG_EVENTS: &str = "eventfold_subscription_lag_events";
/// Gauge, label `consumer`: positions between a durable consumer's
/// committed checkpoint and the head, as of its last ack or commit.
pub const CONSUMER_LAG_EVENTS: &str = "eventfold_consumer_lag_events";
/// Gauge, label `projection`: positions between a projection's checkpoint
/// and the head, as of its last step.
pub const PROJECTION_LAG_EVENTS: &str = "eventfold_projection_lag_events";
/// Counter, label `projection`: events applied to a projection's read model
/// (rebuilds included).
pub const PROJECTION_EVENTS_TOTAL: &str = "eventfold_projection_events_total";
/// Histogram, seconds, label `projection`: one projection batch, from the
/// read of the log to the commit of the read model.
pub const PROJECTION_BATCH_SECONDS: &str = "eventfold_projection_batch_seconds";
/// Counter, label `projection`: projections that stopped on a failure of
/// their `apply` (or a panic in it, or a storage error).
pub const PROJECTION_FAILURES_TOTAL: &str = "eventfold_projection_failures_total";

/// Bumped by [`describe`], which follows the installation of a recorder:
/// kept metric handles are looked up again at once, not up to a second later.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Gives every eventfold metric its description and unit in the installed
/// recorder (the `# HELP` lines of Prometheus' format). Call it after
/// installing a recorder of your own: the writer then records into it from
/// its next batch (otherwise within a second). `serve_prometheus` calls it.
pub fn describe() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    describe_counter!(APPENDS_TOTAL, Unit::Count, "Append requests committed or found already stored.");
    describe_counter!(APPENDS_REJECTED_TOTAL, Unit::Count, "Append requests refused, by reason.");
    describe_counter!(EVENTS_APPENDED_TOTAL, Unit::Count, "Events written to the log.");
    describe_counter!(APPENDED_BYTES_TOTAL, Unit::Bytes, "Record bytes written to the log.");
    describe_counter!(COMMITS_TOTAL, Unit::Count, "Commits of the writer.");
    describe_histogram!(
        APPEND_LATENCY_SECONDS,
        Unit::Seconds,
        "From an append's submission to its answer: queue, batch, commit."
    );
    describe_histogram!(
        APPEND_QUEUE_SECONDS,
        Unit::Seconds,
        "From an append's submission until the writer takes it into a transaction."
    );
    describe_histogram!(
        COMMIT_DURATION_SECONDS,
        Unit::Seconds,
        "Writing and committing one batch of the writer, fsync included."
    );
    describe_histogram!(BATCH_REQUESTS, Unit::Count, "Requests per batch of the writer.");
    describe_histogram!(BATCH_EVENTS, Unit::Count, "Events written per batch of the writer.");
    describe_gauge!(QUEUE_DEPTH, Unit::Count, "Commands waiting in the writer's queue.");
    describe_counter!(POISONINGS_TOTAL, Unit::Count, "Stores poisoned by a failed write.");
    describe_histogram!(
        SUBSCRIPTION_LAG_EVENTS,
        Unit::Count,
        "Committed positions a subscription had not read yet, at each of its reads."
    );
    describe_gauge!(
        CONSUMER_LAG_EVENTS,
        Unit::Count,
        "Positions between a durable consumer's checkpoint and the head."
    );
    describe_gauge!(
        PROJECTION_LAG_EVENTS,
        Unit::Count,
        "Positions between a projection's checkpoint and the head."
    );
    describe_counter!(PROJECTION_EVENTS_TOTAL, Unit::Count, "Events applied to a projection's read model.");
    describe_histogram!(PROJECTION_BATCH_SECONDS, Unit::Seconds, "One projection batch, read to commit.");
    describe_counter!(PROJECTION_FAILURES_TOTAL, Unit::Count, "Projections stopped by a failure.");
}

/// The `reason` label of a refused append: a fixed set, whatever the error.
pub(crate) fn rejection_reason(error: &Error) -> &'static str {
    match error {
        Error::WrongExpectedVersion { .. } => "wrong_expected_version",
        Error::DuplicateEventId { .. } => "duplicate_event_id",
        Error::InvalidStreamId { .. }
        | Error::InvalidEventType { .. }
        | Error::InvalidPayload { .. }
        | Error::InvalidMetadata { .. }
        | Error::EventTooLarge { .. }
        | Error::EmptyAppend
        | Error::DuplicateStreamInRequest { .. }
        | Error::InvalidName { .. }
        | Error::InvalidTag { .. } => "invalid",
        Error::AppendConditionFailed { .. } => "append_condition_failed",
        Error::StorageFull { .. } => "storage_full",
        Error::Poisoned { .. } => "poisoned",
        Error::Closed => "closed",
        Error::ReadOnly => "read_only",
        e if e.is_damage() => "damaged",
        _ => "other",
    }
}

/// Counts an append refused with `error`.
pub(crate) fn rejected(error: &Error) {
    counter!(APPENDS_REJECTED_TOTAL, "reason" => rejection_reason(error)).increment(1);
}

/// `result`, counting its error as a refused append.
pub(crate) fn count_refusal<T>(result: Result<T, Error>) -> Result<T, Error> {
    if let Err(e) = &result {
        rejected(e);
    }
    result
}

/// What the writer records once per batch.
pub(crate) struct BatchRecord {
    pub requests: usize,
    pub events: u64,
    pub bytes: u64,
    /// Whether the batch made a commit (not only refusals and retries).
    pub committed: bool,
    /// How long the batch took, transaction to commit.
    pub commit: Duration,
    pub queued: usize,
    /// Its append requests that went through.
    pub appended: u64,
}

/// How long metric handles are kept before they are looked up again: a
/// recorder installed without [`describe`] gets the writer's metrics at
/// most this much later.
const HANDLES_FOR: Duration = Duration::from_secs(1);

/// The writer's metric handles, looked up once a second instead of once
/// per record: a lookup costs a hash and a map read in the recorder, and
/// the writer thread is the one every append waits for.
pub(crate) struct WriterMetrics {
    requests: ::metrics::Histogram,
    events: ::metrics::Histogram,
    commit: ::metrics::Histogram,
    queue: ::metrics::Gauge,
    commits: ::metrics::Counter,
    events_total: ::metrics::Counter,
    bytes: ::metrics::Counter,
    appends: ::metrics::Counter,
    looked_up: Looked,
}

/// When handles were looked up, and in which generation.
#[derive(Clone, Copy)]
struct Looked {
    at: Instant,
    generation: u64,
}

impl Looked {
    fn now(at: Instant) -> Self {
        Looked { at, generation: GENERATION.load(Ordering::Acquire) }
    }

    /// Whether handles looked up then may be used at `now`.
    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < HANDLES_FOR
            && self.generation == GENERATION.load(Ordering::Acquire)
    }
}

impl WriterMetrics {
    pub(crate) fn new() -> Self {
        // The generation first: a recorder installed while the handles are
        // looked up then leaves them stale for one batch, not one second.
        let looked_up = Looked::now(Instant::now());
        WriterMetrics {
            requests: histogram!(BATCH_REQUESTS),
            events: histogram!(BATCH_EVENTS),
            commit: histogram!(COMMIT_DURATION_SECONDS),
            queue: gauge!(QUEUE_DEPTH),
            commits: counter!(COMMITS_TOTAL),
            events_total: counter!(EVENTS_APPENDED_TOTAL),
            bytes: counter!(APPENDED_BYTES_TOTAL),
            appends: counter!(APPENDS_TOTAL),
            looked_up,
        }
    }

    /// Records one batch, answered at `now`.
    pub(crate) fn batch(&mut self, b: &BatchRecord, now: Instant) {
        if !self.looked_up.fresh(now) {
            *self = WriterMetrics::new();
        }
        self.requests.record(b.requests as f64);
        self.events.record(b.events as f64);
        self.queue.set(b.queued as f64);
        if b.committed {
            self.commits.increment(1);
            self.commit.record(b.commit.as_secs_f64());
        }
        if b.events > 0 {
            self.events_total.increment(b.events);
            self.bytes.increment(b.bytes);
        }
        if b.appended > 0 {
            self.appends.increment(b.appended);
        }
    }
}

/// An appender thread's latency histograms, looked up again once a
/// second as the writer's are.
struct LatencyHandles {
    queue: ::metrics::Histogram,
    total: ::metrics::Histogram,
    looked_up: Looked,
}

impl LatencyHandles {
    fn new(now: Instant) -> Self {
        let looked_up = Looked::now(now);
        LatencyHandles {
            queue: histogram!(APPEND_QUEUE_SECONDS),
            total: histogram!(APPEND_LATENCY_SECONDS),
            looked_up,
        }
    }
}

thread_local! {
    static LATENCY: std::cell::RefCell<Option<LatencyHandles>> = const { std::cell::RefCell::new(None) };
}

/// Records an append's latencies, on the appender's thread once it has
/// its answer: submitted at `submitted`, taken into a transaction by the
/// writer at `taken`.
pub(crate) fn answered(submitted: Instant, taken: Instant) {
    let now = Instant::now();
    // Not recorded by a thread that is ending (its locals are gone).
    let _ = LATENCY.try_with(|cell| {
        let mut kept = cell.borrow_mut();
        let handles = match kept.take() {
            Some(h) if h.looked_up.fresh(now) => h,
            _ => LatencyHandles::new(now),
        };
        handles.queue.record(taken.saturating_duration_since(submitted).as_secs_f64());
        handles.total.record(now.saturating_duration_since(submitted).as_secs_f64());
        *kept = Some(handles);
    });
}

/// Counts a store poisoned.
pub(crate) fn poisoned() {
    counter!(POISONINGS_TOTAL).increment(1);
}

/// Records a subscription's read: `lag` committed positions left unread.
pub(crate) fn subscription_lag(lag: u64) {
    histogram!(SUBSCRIPTION_LAG_EVENTS).record(lag as f64);
}

/// A label value that clones without copying the name.
pub(crate) type Label = ::metrics::SharedString;

/// `name` as a label value: a durable consumer records its lag on every
/// ack, and cloning this copies no string.
pub(crate) fn label(name: &str) -> Label {
    Label::from_shared(std::sync::Arc::<str>::from(name))
}

/// Sets consumer `name`'s checkpoint lag.
pub(crate) fn consumer_lag(name: &Label, lag: u64) {
    gauge!(CONSUMER_LAG_EVENTS, "consumer" => name.clone()).set(lag as f64);
}

/// Records one batch of projection `name`.
pub(crate) fn projection_batch(name: &'static str, applied: usize, took: Duration) {
    counter!(PROJECTION_EVENTS_TOTAL, "projection" => name).increment(applied as u64);
    histogram!(PROJECTION_BATCH_SECONDS, "projection" => name).record(took.as_secs_f64());
}

/// Sets projection `name`'s lag.
pub(crate) fn projection_lag(name: &'static str, lag: u64) {
    gauge!(PROJECTION_LAG_EVENTS, "projection" => name).set(lag as f64);
}

/// Counts a failure of projection `name`.
pub(crate) fn projection_failed(name: &'static str) {
    counter!(PROJECTION_FAILURES_TOTAL, "projection" => name).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_reasons_are_a_fixed_set() {
        let wrong = Error::WrongExpectedVersion {
            stream: "a-1".into(),
            expected: crate::vocab::ExpectedVersion::NoStream,
            actual: 1,
        };
        assert_eq!(rejection_reason(&wrong), "wrong_expected_version");
        assert_eq!(rejection_reason(&Error::EmptyAppend), "invalid");
        assert_eq!(rejection_reason(&Error::Closed), "closed");
        assert_eq!(rejection_reason(&Error::Poisoned { reason: "x".into() }), "poisoned");
        assert_eq!(rejection_reason(&Error::corruption(3, "x")), "damaged");
        assert_eq!(rejection_reason(&Error::internal("x")), "other");
    }
}
