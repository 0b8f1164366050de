//! # eventfold
//!
//! An embedded event store for Rust services, on LMDB. Every change is kept
//! as an immutable event; state is rebuilt by replaying them.
//!
//! - An append-only log with gapless global positions, a per-stream index and
//!   an index of event ids (for idempotent retries), in one LMDB environment.
//! - A group-commit writer thread: concurrent appends share one transaction
//!   and one fsync; expected versions are checked inside the batch.
//! - Zero-copy, checksummed reads that run beside the writer.
//! - Subscriptions, durable consumers with checkpoints, and projections
//!   into JSON read models that rebuild in the background
//!   (see `docs/subscriptions.md`).
//! - Aggregates with a repository (snapshots, upcasters, bounded retries on
//!   conflicts, temporal loads) and given/when/then test helpers
//!   (see `docs/aggregates.md`).
//!
//! Cargo features, all off by default: `async` (the async API for any
//! runtime: an [`AppendTicket`] is awaited, `store.submit(..)?.await` or
//! `Store::append_async`, and a [`Subscription`] becomes a
//! `futures_core::Stream` with `into_stream`; the writer thread and the
//! commit notifier wake the waiting task, no thread per waiter, no
//! polling), `protocol` (the JSON-lines node, `eventfold::protocol`),
//! `prometheus` (a Prometheus endpoint for the metrics,
//! `eventfold::metrics::serve_prometheus`; the metrics themselves need no
//! feature, see `docs/metrics.md`), `testing` (the test helpers,
//! `eventfold::testing`, for dev-dependencies), `cli` (the `eventfold`
//! binary; implies `protocol` and `prometheus`), `fault-injection` (hooks
//! that fail the Nth commit or fsync), `fuzzing` (a hook for the fuzz
//! targets, not supported API) and `tracing-span`
//! (`EventMetadata::from_current_span` and its `SpanMetadataLayer`). See the
//! README.
//!
//! ```
//! use eventfold::{ExpectedVersion, NewEvent, ReadStream, Store};
//! use serde_json::json;
//!
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let r = store.append(
//!     "account-42",
//!     ExpectedVersion::NoStream,
//!     [NewEvent::json("AccountOpened", &json!({"owner": "ann"})),
//!      NewEvent::json("Deposited", &json!({"amount": 100}))],
//! )?;
//! assert_eq!((r.first_position, r.stream_version), (1, 2));
//!
//! // A stale expected version is refused, with both numbers.
//! let err = store
//!     .append("account-42", ExpectedVersion::Exact(1), [NewEvent::json("Deposited", &json!({"amount": 5}))])
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "Expected version 1, got 2");
//!
//! let reader = store.read()?;
//! for event in reader.stream("account-42", ReadStream::forward())? {
//!     let event = event?; // borrowed from the memory map, checksum verified
//!     println!("{} v{} {}", event.stream_id(), event.version(), event.event_type());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `docs/design.md` for how it works and `docs/format.md` for the bytes
//! on disk.

#![deny(unsafe_code)]
#![deny(clippy::arithmetic_side_effects)]
#![warn(missing_docs)]

// Each module is a layer or a feature; docs/design.md has the table of which
// may use which, and tests/it/layers.rs checks it.
mod admin;
mod aggregate;
mod json;
mod lmdb;
pub mod metrics;
mod projection;
#[cfg(feature = "protocol")]
pub mod protocol;
mod read;
mod record;
mod store;
mod subscribe;
mod vocab;
mod writer;

pub use aggregate::DEFAULT_RETRY_DEADLINE;
#[cfg(feature = "testing")]
pub use aggregate::testing;
pub use aggregate::{
    Aggregate, CommandError, DEFAULT_MAX_ATTEMPTS, DomainEvent, Envelope, Executed, LoadReport, Loaded,
    NewSnapshot, Repository, SNAPSHOT_LAYOUT_VERSION, Snapshot, SnapshotPolicy, UpcastResult, Upcasted,
    Upcasters,
};
pub use json::{JSON_STATE_SNAPSHOT_SCHEMA, JSON_STATE_SNAPSHOTS_KEPT, JsonFields, JsonState};
pub use lmdb::{
    DAMAGED_FILE_EXIT_CODE, Durability, FORMAT_VERSION, archive_format, install_damaged_file_handler,
};
pub use projection::runner::DEFAULT_PROJECTION_BATCH;
pub use projection::{
    Projection, ProjectionContext, ProjectionRunner, ProjectionState, ProjectionStatus, ReadModel,
    RebuildProgress, RunningProjections, StoredProjection,
};
pub use read::{
    AllIter, Direction, QueryIter, ReadAll, ReadQuery, ReadStream, Reader, StreamInfo, StreamIter,
};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use record::decode as decode_record;
pub use record::{EventRef, Tags};
pub use store::{
    AllBatches, AppendTicket, DEFAULT_MAP_SIZE, LIFECYCLE_STREAM, QueryResult, SCAVENGE_STEP,
    ScavengeProgress, ScavengeReport, Store, StoreBuilder, StoreStats, StreamBatches,
};
#[cfg(feature = "async")]
pub use store::{AppendFuture, AppendManyFuture};
#[cfg(feature = "async")]
pub use subscribe::SubscriptionStream;
pub use subscribe::{Consumer, ConsumerInfo, DEFAULT_SUBSCRIPTION_BATCH, SubscribeFrom, Subscription};
#[cfg(feature = "tracing-span")]
pub use vocab::SpanMetadataLayer;
pub use vocab::{
    AppendCondition, AppendResult, ContentType, Error, EventMetadata, ExpectedVersion, Fault, Filter,
    MAX_CONSUMER_NAME_LEN, MAX_JSON_DEPTH, MAX_METADATA_ID_LEN, MAX_NAME_LEN, MAX_TAG_LEN, MAX_TAGS,
    MAX_TRACEPARENT_LEN, NewEvent, Query, QueryItem, RecordedEvent, Result, StreamLifecycle, StreamRetention,
    VerifyReport, category_of,
};
