//! The one error type of eventfold.
//!
//! Every failure a caller can see is a variant of [`Error`], with a message
//! written for the person who has to act on it: what went wrong, and where it
//! helps, what to do next.

use std::path::PathBuf;

use uuid::Uuid;

use crate::vocab::ExpectedVersion;

/// A `Result` whose error is eventfold's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in eventfold.
///
/// The enum is `#[non_exhaustive]`: match the variants you handle and keep a
/// catch-all arm for the rest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream is not at the version the appender expected. Nothing was
    /// written. Reload the stream and decide again.
    #[error("Expected version {expected}, got {actual}")]
    WrongExpectedVersion {
        /// The stream the append targeted.
        stream: String,
        /// What the appender said the version would be.
        expected: ExpectedVersion,
        /// The stream's version when the append was checked.
        actual: u64,
    },

    /// An event id is already stored somewhere other than where this append
    /// would put it (or it appears twice in one request). Nothing was written.
    #[error(
        "event id {event_id} is already used{}: give each event a new id, or resend exactly the original append to retry it",
        match (.stream, .position) {
            (Some(s), Some(p)) => format!(" by stream {s:?} at position {p}"),
            _ => " twice in the same request".to_string(),
        }
    )]
    DuplicateEventId {
        /// The reused id.
        event_id: Uuid,
        /// The stream that already holds it, if it is stored.
        stream: Option<String>,
        /// The position that already holds it, if it is stored.
        position: Option<u64>,
    },

    /// A stream id is empty, too long, or contains control characters.
    #[error("invalid stream id {stream:?}: {reason}")]
    InvalidStreamId {
        /// The rejected id (possibly shortened for display).
        stream: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A DCB append's condition failed: an event matching its query was
    /// written after the position it names. Nothing was written; read the
    /// query again and decide anew.
    #[error(
        "the append condition failed: the event at position {position} matches its query and is after position {after}"
    )]
    AppendConditionFailed {
        /// The first event that matches the condition's query.
        position: u64,
        /// The position the condition was made at (0: the start of the log).
        after: u64,
    },

    /// A tag is empty, too long, contains control characters or is listed
    /// twice, or an event carries too many (see [`MAX_TAGS`](crate::MAX_TAGS)).
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag {
        /// The rejected tag (shortened when long).
        tag: String,
        /// Why it was rejected.
        reason: String,
    },

    /// An event type is empty, too long, or contains control characters.
    #[error("invalid event type {event_type:?}: {reason}")]
    InvalidEventType {
        /// The rejected event type.
        event_type: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A payload declared as JSON is not valid JSON (or could not be serialized).
    #[error("invalid payload for event type {event_type:?}: {reason}")]
    InvalidPayload {
        /// The event type of the offending event.
        event_type: String,
        /// What the JSON parser or serializer said.
        reason: String,
    },

    /// Event metadata is not a JSON object, or a metadata field is invalid.
    #[error("invalid metadata: {reason}")]
    InvalidMetadata {
        /// What is wrong with it.
        reason: String,
    },

    /// A correlation, causation or user id is empty, too long or has control
    /// characters, or a `traceparent` is not a W3C trace-context header.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidMetadataField {
        /// Which field: "correlation id", "causation id", "user id" or "traceparent".
        field: &'static str,
        /// The rejected value (possibly shortened for display).
        value: String,
        /// Why it was rejected, and the rule.
        reason: String,
    },

    /// One encoded event is larger than the store's limit.
    #[error(
        "event of {size} bytes is over the limit of {limit} bytes: store large blobs elsewhere and append a reference, or raise the limit with StoreBuilder::max_event_size"
    )]
    EventTooLarge {
        /// Encoded size of the event.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// An append carried no events.
    #[error("an append needs at least one event")]
    EmptyAppend,

    /// The same stream appears twice in one `append_many`.
    #[error("stream {stream:?} appears twice in one append_many: merge its events into one entry")]
    DuplicateStreamInRequest {
        /// The repeated stream id.
        stream: String,
    },

    /// Another process holds the store's write lock.
    #[error(
        "store {} is locked by {}: stop it, or open the store read-only",
        .path.display(),
        match .pid { Some(p) => format!("pid {p}"), None => "another process".to_string() }
    )]
    Locked {
        /// The locked data directory.
        path: PathBuf,
        /// The pid written in the lock file, when it could be read.
        pid: Option<u32>,
    },

    /// This process already has the store open.
    #[error(
        "store {} is already open in this process: share the existing Store handle (it is cheap to clone) instead of opening it again",
        .path.display()
    )]
    AlreadyOpen {
        /// The data directory.
        path: PathBuf,
    },

    /// The directory holds no eventfold store (read-only opens never create one).
    #[error("no eventfold store at {}: create it with a writable open first", .path.display())]
    NotAStore {
        /// The directory that was opened.
        path: PathBuf,
    },

    /// The store was written with an on-disk format this build does not read.
    #[error(
        "store format version {found} is not supported by this build (which reads version {supported}): use a matching eventfold release"
    )]
    UnsupportedFormat {
        /// The version recorded in the store.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The store was written by a build whose rkyv archive format (endianness,
    /// alignment, pointer width) differs from this build's.
    #[error(
        "store was written with rkyv format {found}, but this build uses {expected}: build with the same rkyv format features, or export and import the events"
    )]
    ArchiveFormatMismatch {
        /// The format recorded in the store.
        found: String,
        /// This build's format.
        expected: String,
    },

    /// A stored record failed its checksum or archive validation.
    #[error(
        "record at position {position} is corrupt ({reason}): run `eventfold verify` and restore from a backup"
    )]
    Corruption {
        /// The position of the bad record.
        position: u64,
        /// What check failed.
        reason: String,
    },

    /// An index or bookkeeping entry is inconsistent with the log.
    #[error("index {index} is corrupt ({reason}): run `eventfold verify` and restore from a backup")]
    IndexCorruption {
        /// The database that holds the bad entry.
        index: &'static str,
        /// What check failed.
        reason: String,
    },

    /// A file of the store is damaged below the level of records: shorter
    /// than its own header says (an interrupted copy), or not an LMDB file.
    /// Found when the store opens, before anything is read from it.
    #[error(
        "the store file {} is damaged ({reason}): restore the store from a backup; `eventfold verify` shows what is wrong if it can read the store",
        .path.display()
    )]
    DamagedFile {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// LMDB found a damaged page while reading (a page of the wrong type,
    /// a page number past the end of the file, a database record of the
    /// wrong kind).
    #[error(
        "the store's file is damaged: LMDB reports {source}; restore the store from a backup, and run `eventfold verify` to see what is affected"
    )]
    DamagedPages {
        /// What LMDB reported: a [`heed::MdbError`].
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The store's map (its size limit) is full. Nothing of the failed request
    /// was written; reads still work.
    #[error(
        "store is full ({}): reopen it with a larger StoreBuilder::map_size",
        match .map_size {
            Some(size) => format!("map size {size} bytes"),
            None => "its map size is reached".to_string(),
        }
    )]
    StorageFull {
        /// The configured map size, when the operation that filled the map
        /// knew it.
        map_size: Option<usize>,
    },

    /// Every slot of LMDB's reader table is taken by an open read
    /// transaction (of this process or another). Nothing was read; the same
    /// call succeeds once other read transactions end.
    #[error(
        "too many read transactions are open at once (LMDB's reader table is full): end long-lived readers, or open the store with a larger StoreBuilder::max_readers"
    )]
    ReadersFull,

    /// Another process, opened with a larger map size, has grown the store
    /// past the map size of this handle. A reopen maps the whole file.
    #[error(
        "the store has grown past the map size of this handle (another process opened it with a larger StoreBuilder::map_size): close and reopen the store"
    )]
    MapResized,

    /// A commit or fsync failed earlier, or the writer thread panicked: the
    /// store refuses further writes. Reads still work; reopen to recover.
    #[error(
        "store is poisoned by an earlier write failure ({reason}): reads still work; close and reopen the store to write again"
    )]
    Poisoned {
        /// The failure that poisoned the store.
        reason: String,
    },

    /// The store was opened read-only.
    #[error("store is open read-only: open it with StoreBuilder::open to write")]
    ReadOnly,

    /// The store has been closed.
    #[error("store is closed")]
    Closed,

    /// A subscription polled as an async stream (`Subscription::into_stream`)
    /// caught up with a store opened read-only: another process writes that
    /// log, so no commit wakes this one, and the stream has no timer to look
    /// again. The stream ends after this error.
    #[error(
        "a subscription stream on a read-only store cannot wait for new events: another process writes them and no commit wakes this one; call Subscription::try_next on a timer of your runtime, or follow the store with the blocking iterator on a thread (it looks again every 50 ms)"
    )]
    ReadOnlyStream,

    /// A payload or metadata could not be decoded into the requested type.
    #[error("could not decode event at position {position} of stream {stream:?} ({event_type}): {reason}")]
    Decode {
        /// The event's stream.
        stream: String,
        /// Position of the event.
        position: u64,
        /// Its event type.
        event_type: String,
        /// What the decoder said.
        reason: String,
    },

    /// A consumer or projection name is empty, too long, or has control characters.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What was being named ("consumer", "projection").
        kind: &'static str,
        /// The rejected name (possibly shortened for display).
        name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A subscription handler or projection reported a failure of its own.
    #[error("handler failed: {reason}")]
    Handler {
        /// What the handler said.
        reason: String,
    },

    /// A read-model document could not be encoded or decoded as the type asked for.
    #[error(
        "document {key:?} of projection {projection:?} does not fit the requested type ({reason}): read it with the type the projection writes, or rebuild the projection"
    )]
    Document {
        /// The projection that owns the document.
        projection: String,
        /// The document key.
        key: String,
        /// What serde said.
        reason: String,
    },

    /// A read-model document or a projection's checkpoint entry failed its
    /// checksum, or cannot be read at all.
    #[error(
        "the read model of projection {projection:?} is damaged ({reason}): it is derived from the log, so rebuild it (ProjectionRunner::rebuild), or restore the store from a backup; `eventfold verify` shows what else is damaged"
    )]
    ReadModelDamaged {
        /// The projection.
        projection: String,
        /// What is wrong.
        reason: String,
    },

    /// A read model does not match the log it claims to be made from: its
    /// checkpoint is past the log's durable head, or names an event the log
    /// does not hold at that position (a power cut undid the end of the log,
    /// or the log was restored from an older copy under newer read models).
    #[error(
        "the read model of projection {projection:?} is ahead of the log ({reason}): it is not served; a writable open of the store rebuilds it when its runner starts"
    )]
    ReadModelAhead {
        /// The projection.
        projection: String,
        /// What does not match.
        reason: String,
    },

    /// The `projections/` directory belongs to another store.
    #[error(
        "the read models in {} were built from another store (store id {found}; this store is {expected}): move that directory away, and the projection runners rebuild the read models from this store's log", .path.display()
    )]
    ForeignReadModels {
        /// The `projections/` directory.
        path: std::path::PathBuf,
        /// The store id recorded in the read models.
        found: uuid::Uuid,
        /// This store's id.
        expected: uuid::Uuid,
    },

    /// A durable consumer's checkpoint is past the head of the log, or its
    /// entry failed its checksum.
    #[error(
        "the checkpoint of consumer {consumer:?} is damaged or ahead of the log ({reason}): run `eventfold verify`, and restore the store from a backup or start the consumer over from the log (Store::reset_consumer)"
    )]
    CheckpointInvalid {
        /// The consumer.
        consumer: String,
        /// What is wrong.
        reason: String,
    },

    /// An append with a consumer checkpoint
    /// ([`Store::append_with_checkpoint`](crate::Store::append_with_checkpoint))
    /// would not move the checkpoint forward: the events it tracks were
    /// processed already. Nothing was written.
    #[error(
        "consumer {consumer:?} is at checkpoint {checkpoint}, so a checkpoint of {position} would not advance it: nothing was written; the events up to {checkpoint} are processed already, so skip them and go on after it"
    )]
    CheckpointNotAdvanced {
        /// The consumer.
        consumer: String,
        /// Its committed checkpoint.
        checkpoint: u64,
        /// The checkpoint asked for.
        position: u64,
    },

    /// A consumer checkpoint was asked for a position the log has not
    /// reached: a checkpoint must never claim events the log does not hold.
    /// Nothing was written.
    #[error(
        "a checkpoint of {position} for consumer {consumer:?} is past the head of the log ({head}): give the position of an event the consumer has processed"
    )]
    CheckpointPastHead {
        /// The consumer.
        consumer: String,
        /// The checkpoint asked for.
        position: u64,
        /// The head of the log when it was checked.
        head: u64,
    },

    /// A projection's `apply` failed; the projection stopped there (the
    /// others go on). Returned by `ProjectionRunner::run_until_caught_up`.
    #[error(
        "projection {projection:?} failed at position {position}: {reason}; fix the projection and restart the runner (it resumes at its checkpoint) or rebuild it"
    )]
    ProjectionFailed {
        /// The projection.
        projection: String,
        /// The position of the event it could not apply.
        position: u64,
        /// The error `apply` returned.
        reason: String,
    },

    /// A runner was asked about a projection it does not run.
    #[error("no projection named {name:?} is registered with this runner: register it first")]
    UnknownProjection {
        /// The name asked for.
        name: String,
    },

    /// A wait ([`RunningProjections::wait_for`](crate::RunningProjections::wait_for),
    /// [`Store::wait_for_consumer`](crate::Store::wait_for_consumer)) did not
    /// see its position reached in the time it was given.
    #[error(
        "{what} did not reach position {position} within {waited:?}: wait longer, or check that it is running and not behind (RunningProjections::status, Store::consumers)"
    )]
    Timeout {
        /// What was waited for ("projection \"orders\"", "consumer \"mailer\"").
        what: String,
        /// The position it was to reach.
        position: u64,
        /// How long the call waited.
        waited: std::time::Duration,
    },

    /// A wait was asked for a position the log has not reached: it may
    /// never be written, so nothing would end the wait.
    #[error(
        "position {position} is past the head of the log ({head}): wait for a position an append returned (AppendResult::last_position)"
    )]
    PositionPastHead {
        /// The position asked for.
        position: u64,
        /// The head of the log when the wait began.
        head: u64,
    },

    /// A wait on a projection runner's thread that has ended (stopped, or
    /// the store closed), so the projection will not move again.
    #[error(
        "the projection thread of projection {projection:?} has ended (stopped, or the store closed) at checkpoint {checkpoint}: start a runner again to go on"
    )]
    ProjectionsStopped {
        /// The projection waited for.
        projection: String,
        /// Its checkpoint when the thread ended.
        checkpoint: u64,
    },

    /// The stream was deleted for good (a tombstone): it cannot be read or
    /// written again.
    #[error("stream {stream:?} was deleted for good (tombstoned): it can be neither read nor written")]
    StreamDeleted {
        /// The stream id.
        stream: String,
    },

    /// The operation needs a stream that has no events yet.
    #[error("stream {stream:?} has no events: append to it first")]
    StreamNotFound {
        /// The stream id.
        stream: String,
    },

    /// A version past the stream's end was asked for.
    #[error("stream {stream:?} is at version {current}, so version {requested} does not exist yet")]
    VersionOutOfRange {
        /// The stream id.
        stream: String,
        /// The version asked for.
        requested: u64,
        /// The stream's version.
        current: u64,
    },

    /// A stored snapshot does not follow the snapshot layout or fails its
    /// checksum. Aggregate loads ignore such a snapshot and replay instead.
    #[error(
        "snapshot of stream {stream:?} at version {version} is unreadable ({reason}): it is damaged; delete it with Store::delete_snapshots (loads replay the stream meanwhile), or restore from a backup"
    )]
    SnapshotInvalid {
        /// The stream id.
        stream: String,
        /// The snapshot's version.
        version: u64,
        /// What check failed.
        reason: String,
    },

    /// Aggregate state could not be serialized for a snapshot.
    #[error("could not serialize the state of stream {stream:?} for a snapshot: {reason}")]
    StateEncode {
        /// The stream id.
        stream: String,
        /// What the serializer said.
        reason: String,
    },

    /// An upcaster registration was refused.
    #[error("cannot register the upcaster from {event_type:?} schema version {from_version}: {reason}")]
    UpcasterRegistration {
        /// The event type the upcaster reads.
        event_type: String,
        /// The schema version it reads.
        from_version: u32,
        /// Why it was refused.
        reason: String,
    },

    /// An upcaster returned an error for a stored event.
    #[error(
        "upcasting event at position {position} of stream {stream:?} ({event_type} schema version {from_version}) failed: {reason}"
    )]
    UpcastFailed {
        /// The event's stream.
        stream: String,
        /// Position of the event.
        position: u64,
        /// The event type the failing step read.
        event_type: String,
        /// The schema version the failing step read.
        from_version: u32,
        /// What the upcaster said.
        reason: String,
    },

    /// A stored event is at an older schema version than the code reads, and
    /// no upcaster continues the chain from it.
    #[error(
        "event at position {position} of stream {stream:?} is {event_type} schema version {found}, but the code reads version {expected} and no upcaster is registered from ({event_type:?}, {found}): register one with Upcasters::register"
    )]
    MissingUpcaster {
        /// The event's stream.
        stream: String,
        /// Position of the event.
        position: u64,
        /// The event type after the upcasters that did run.
        event_type: String,
        /// The schema version the chain stopped at.
        found: u32,
        /// The schema version the code reads.
        expected: u32,
    },

    /// A command kept meeting writes to its stream from outside the
    /// repositories of this process until its retries ran out.
    #[error(
        "command on stream {stream:?} lost to concurrent writers {attempts} times in a row: retry later, or raise Repository::max_attempts or Repository::retry_deadline"
    )]
    RetriesExhausted {
        /// The stream id.
        stream: String,
        /// How many times the command was tried.
        attempts: u32,
    },

    /// The metrics endpoint (`eventfold::metrics`, feature `prometheus`)
    /// could not be set up: its address could not be bound, or the
    /// process has another metrics recorder installed.
    #[error("cannot serve metrics: {reason}")]
    Metrics {
        /// What went wrong.
        reason: String,
    },

    /// An LMDB operation failed in a way no other variant describes, or a
    /// step of the storage machinery did (encoding a bookkeeping entry,
    /// installing the damaged-file signal handler). For LMDB failures the
    /// source is the [`heed::Error`]; downcast it to look at the LMDB code.
    #[error(
        "storage error{}: {source}",
        if .context.is_empty() { String::new() } else { format!(" while {}", .context) }
    )]
    Storage {
        /// What was being done (for example "backing up to /srv/copy"), or
        /// empty when the failing call says nothing more than the source.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// eventfold broke one of its own rules (a helper thread stopped early,
    /// a request went unanswered). This is a bug in eventfold.
    #[error("internal error: {reason}; this is a bug in eventfold, report it with what led to it")]
    Internal {
        /// What went wrong.
        reason: String,
    },

    /// A file-system operation failed.
    #[error("file-system error on {}: {source}", .path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether making the identical call again, later, can succeed: the
    /// failure came from a condition that ends on its own, without the
    /// caller changing its request or reopening the store.
    ///
    /// True only for
    /// - [`Error::Locked`]: another process holds the write lock; the same
    ///   open succeeds once that process has stopped;
    /// - [`Error::ReadersFull`]: every reader slot is taken; the same read
    ///   succeeds once other read transactions have ended;
    /// - [`Error::RetriesExhausted`]: the command lost to concurrent writers;
    ///   `Repository::execute` loads the stream afresh on every call, so the
    ///   same call succeeds once the contention eases.
    /// - [`Error::Timeout`]: what was waited for may still get there; wait
    ///   again.
    ///
    /// Everything else is false. In particular
    /// [`Error::WrongExpectedVersion`] is not retryable: the stream has moved
    /// on and its version never goes back, so the same append fails again;
    /// reload the stream and decide again (which `execute` does).
    /// [`Error::StorageFull`], [`Error::Poisoned`] and [`Error::MapResized`]
    /// need a reopen, and damage needs a backup.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Locked { .. }
                | Error::ReadersFull
                | Error::RetriesExhausted { .. }
                | Error::Timeout { .. }
        )
    }

    /// A [`Error::Handler`] carrying `reason`: what a subscription handler or
    /// a projection's `apply` returns for a failure of its own.
    pub fn handler(reason: impl std::fmt::Display) -> Self {
        Error::Handler { reason: reason.to_string() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn corruption(position: u64, reason: impl Into<String>) -> Self {
        Error::Corruption { position, reason: reason.into() }
    }

    pub(crate) fn index(index: &'static str, reason: impl Into<String>) -> Self {
        Error::IndexCorruption { index, reason: reason.into() }
    }

    /// A [`Error::Storage`] for a failure that is not a heed error (heed
    /// errors go through [`From`], [`from_heed`] or [`from_heed_while`]).
    pub(crate) fn storage(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Storage { context: context.into(), source: Box::new(source) }
    }

    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        Error::Internal { reason: reason.into() }
    }

    /// Whether the error reports damage to the stored data: a corrupt
    /// record, index entry or snapshot, a damaged read model or consumer
    /// checkpoint, or a damaged file or page. Restoring from a backup is a
    /// way out of each (a read model can also be rebuilt).
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Error::Corruption { .. }
                | Error::IndexCorruption { .. }
                | Error::DamagedFile { .. }
                | Error::DamagedPages { .. }
                | Error::SnapshotInvalid { .. }
                | Error::ReadModelDamaged { .. }
                | Error::CheckpointInvalid { .. }
        )
    }
}

/// The message of a caught panic, for errors and status reports.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A heed error of a call that knows the store's map size, so that a full
/// map reports it.
pub(crate) fn from_heed(err: heed::Error, map_size: usize) -> Error {
    convert_heed(err, Some(map_size), String::new())
}

/// A heed error of a call that says what it was doing, for the message of
/// an [`Error::Storage`].
pub(crate) fn from_heed_while(err: heed::Error, context: impl Into<String>) -> Error {
    convert_heed(err, None, context.into())
}

/// The one conversion of a heed error: [`From`] (a bare `?`), [`from_heed`]
/// and [`from_heed_while`] all end here, so an LMDB condition reads the same
/// whichever way it arrives. A full map is always `StorageFull`, a full
/// reader table `ReadersFull`, a map grown by another process `MapResized`,
/// damaged pages `DamagedPages`; the rest is `Storage` with the heed error
/// as its source. Callers that know more map those cases first and hand
/// the rest here: an I/O error with the path it concerns (`Error::Io`), a
/// second open of the environment (`AlreadyOpen`), a bad header at open
/// (`DamagedFile`).
fn convert_heed(err: heed::Error, map_size: Option<usize>, context: String) -> Error {
    use heed::MdbError as M;
    match err {
        heed::Error::Mdb(M::MapFull) => Error::StorageFull { map_size },
        heed::Error::Mdb(M::ReadersFull) => Error::ReadersFull,
        heed::Error::Mdb(M::MapResized) => Error::MapResized,
        heed::Error::Mdb(e) if is_page_damage(&e) => Error::DamagedPages { source: Box::new(e) },
        other => Error::Storage { context, source: Box::new(other) },
    }
}

/// Whether an LMDB error means that the file's pages are damaged. eventfold
/// never changes a database's flags, so `Incompatible` (a database record
/// read as data, or data as a database) is damage too; `BadTxn` on a read
/// follows an earlier failure of the same transaction, which was damage.
fn is_page_damage(err: &heed::MdbError) -> bool {
    use heed::MdbError as M;
    matches!(err, M::PageNotFound | M::Corrupted | M::Invalid | M::Incompatible | M::BadTxn)
}

impl From<heed::Error> for Error {
    fn from(err: heed::Error) -> Self {
        convert_heed(err, None, String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_expected_version_reads_as_people_expect() {
        let err = Error::WrongExpectedVersion {
            stream: "user-1".into(),
            expected: ExpectedVersion::Exact(5),
            actual: 0,
        };
        assert_eq!(err.to_string(), "Expected version 5, got 0");
    }

    #[test]
    fn storage_and_io_errors_keep_their_source() {
        use std::error::Error as _;
        let err = Error::from(heed::Error::Mdb(heed::MdbError::BadValSize));
        assert!(matches!(err, Error::Storage { .. }), "{err:?}");
        let source = err.source().expect("a storage error has a source");
        assert!(
            matches!(
                source.downcast_ref::<heed::Error>(),
                Some(heed::Error::Mdb(heed::MdbError::BadValSize))
            ),
            "{source:?}"
        );
        assert_eq!(err.to_string(), format!("storage error: {source}"));

        let err = from_heed_while(heed::Error::Mdb(heed::MdbError::DbsFull), "creating a database");
        assert!(err.source().is_some());
        assert!(
            err.to_string().starts_with("storage error while creating a database: MDB_DBS_FULL"),
            "{err}"
        );

        let err = Error::io("/tmp/x", std::io::Error::from(std::io::ErrorKind::NotFound));
        let source = err.source().expect("an io error has a source");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );

        let err = Error::from(heed::Error::Mdb(heed::MdbError::Corrupted));
        assert!(err.source().is_some_and(|s| s.downcast_ref::<heed::MdbError>().is_some()), "{err:?}");
    }

    /// Every heed error goes through one conversion: a full map is
    /// `StorageFull` whether or not the caller knew the map size.
    #[test]
    fn every_way_from_heed_maps_the_same() {
        use heed::MdbError as M;
        let map_full = || heed::Error::Mdb(M::MapFull);
        let bare = Error::from(map_full());
        assert!(matches!(bare, Error::StorageFull { map_size: None }), "{bare:?}");
        assert!(bare.to_string().contains("StoreBuilder::map_size"), "{bare}");
        let sized = from_heed(map_full(), 1 << 20);
        assert!(matches!(sized, Error::StorageFull { map_size: Some(1_048_576) }), "{sized:?}");
        assert_eq!(
            sized.to_string(),
            "store is full (map size 1048576 bytes): reopen it with a larger StoreBuilder::map_size"
        );
        assert!(matches!(from_heed_while(map_full(), "x"), Error::StorageFull { map_size: None }));

        for damage in [M::PageNotFound, M::Corrupted, M::Invalid, M::Incompatible, M::BadTxn] {
            for err in [
                Error::from(heed::Error::Mdb(damage)),
                from_heed(heed::Error::Mdb(damage), 1 << 20),
                from_heed_while(heed::Error::Mdb(damage), "reading"),
            ] {
                assert!(matches!(err, Error::DamagedPages { .. }) && err.is_damage(), "{damage:?}: {err:?}");
            }
        }
        assert!(matches!(Error::from(heed::Error::Mdb(M::ReadersFull)), Error::ReadersFull));
        assert!(matches!(from_heed(heed::Error::Mdb(M::MapResized), 1), Error::MapResized));
    }

    #[test]
    fn only_conditions_that_pass_are_retryable() {
        let retryable = [
            Error::Locked { path: "/tmp/x".into(), pid: None },
            Error::ReadersFull,
            Error::RetriesExhausted { stream: "s-1".into(), attempts: 3 },
            Error::Timeout { what: "consumer \"c\"".into(), position: 3, waited: std::time::Duration::ZERO },
        ];
        for err in retryable {
            assert!(err.is_retryable(), "{err:?}");
        }
        let not_retryable = [
            Error::WrongExpectedVersion {
                stream: "s-1".into(),
                expected: ExpectedVersion::Exact(5),
                actual: 6,
            },
            Error::StorageFull { map_size: Some(1 << 20) },
            Error::Poisoned { reason: "commit failed".into() },
            Error::MapResized,
            Error::Closed,
            Error::ReadOnly,
            Error::AlreadyOpen { path: "/tmp/x".into() },
            Error::from(heed::Error::Mdb(heed::MdbError::Corrupted)),
            Error::from(heed::Error::Mdb(heed::MdbError::BadValSize)),
        ];
        for err in not_retryable {
            assert!(!err.is_retryable(), "{err:?}");
        }
    }

    #[test]
    fn locked_names_the_pid() {
        let err = Error::Locked { path: "/tmp/x".into(), pid: Some(4242) };
        assert_eq!(
            err.to_string(),
            "store /tmp/x is locked by pid 4242: stop it, or open the store read-only"
        );
    }
}
