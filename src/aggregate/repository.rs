//! [`Repository`]: load an aggregate (snapshot + the events after it,
//! upcasted), as of a version or a time, and execute commands against it
//! with optimistic concurrency: one command at a time per aggregate in this
//! process, and retries with a jittered backoff when a write from elsewhere
//! got in between.

mod replay;
mod serial;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serial::{Backoff, Turns};

use super::{Aggregate, CommandError, DomainEvent};
use crate::aggregate::snapshot::NewSnapshot;
use crate::aggregate::upcast::Upcasters;
use crate::read::ReadStream;
use crate::store::Store;
use crate::vocab::{AppendResult, ContentType, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent};
use crate::vocab::{Error, Result};

/// When [`Repository::execute`] saves a snapshot by itself.
///
/// More policies may be added: a `match` outside eventfold needs a wildcard
/// arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SnapshotPolicy {
    /// Only on demand, with [`Repository::take_snapshot`] (the default).
    #[default]
    OnDemand,
    /// Whenever a command takes the stream's version past a multiple of N.
    EveryNEvents(u64),
}

/// An aggregate's state at a version, and how it was rebuilt.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Loaded<A> {
    /// The folded state.
    pub state: A,
    /// The stream version the state includes (0: no events).
    pub version: u64,
    /// How the state was rebuilt.
    pub report: LoadReport,
}

/// How a load rebuilt the state: from which snapshot, with how many events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadReport {
    /// The version of the snapshot the load started from, if one was used.
    pub snapshot_version: Option<u64>,
    /// Why a stored snapshot was passed over (another state schema version,
    /// or it could not be decoded); the state was then replayed from the start.
    pub snapshot_ignored: Option<String>,
    /// Events applied on top of the snapshot (or of the default state).
    pub events_replayed: u64,
    /// How many of them went through at least one upcaster step.
    pub events_upcast: u64,
}

/// What [`Repository::execute`] recorded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Executed<A: Aggregate> {
    /// The events the command produced, now stored (empty when the command
    /// decided nothing needed to happen).
    pub events: Vec<A::Event>,
    /// The stream's version after them.
    pub version: u64,
    /// The state after them.
    pub state: A,
    /// The store's answer to the append (`None` when there were no events).
    pub append: Option<AppendResult>,
    /// How many times the command was handled (more than 1 after conflicts).
    pub attempts: u32,
    /// The version a snapshot was saved at by the snapshot policy, if any.
    pub snapshot_saved: Option<u64>,
}

/// A stored event decoded into the aggregate's event type, with the record
/// it came from (ids, time, metadata, the stored payload).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Envelope<E> {
    /// The decoded (and upcasted) event.
    pub event: E,
    /// The stored record.
    pub recorded: RecordedEvent,
}

/// Loads and saves aggregates of type `A` in a [`Store`]. Cheap to clone.
pub struct Repository<A: Aggregate> {
    store: Store,
    upcasters: Upcasters,
    policy: SnapshotPolicy,
    keep_snapshots: usize,
    max_attempts: u32,
    retry_deadline: Duration,
    read_batch: usize,
    replay_threads: usize,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            upcasters: self.upcasters.clone(),
            policy: self.policy,
            keep_snapshots: self.keep_snapshots,
            max_attempts: self.max_attempts,
            retry_deadline: self.retry_deadline,
            read_batch: self.read_batch,
            replay_threads: self.replay_threads,
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("category", &A::CATEGORY)
            .field("policy", &self.policy)
            .field("keep_snapshots", &self.keep_snapshots)
            .field("max_attempts", &self.max_attempts)
            .field("retry_deadline", &self.retry_deadline)
            .field("replay_threads", &self.replay_threads)
            .finish_non_exhaustive()
    }
}

/// Default bound on how often [`Repository::execute`] handles one command
/// that keeps meeting writes from outside the repositories of this process.
/// With the pauses between attempts (1 ms doubling to 100 ms, jittered), 100
/// attempts take about as long as the default deadline,
/// [`DEFAULT_RETRY_DEADLINE`]; whichever is reached first ends the retries.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 100;

/// Default time [`Repository::execute`] goes on retrying one command that
/// keeps meeting writes from outside the repositories of this process,
/// counted from its first attempt; see [`Repository::retry_deadline`].
pub const DEFAULT_RETRY_DEADLINE: Duration = Duration::from_secs(5);

impl<A: Aggregate> Repository<A> {
    /// A repository with no upcasters, snapshots on demand only, keeping the
    /// last 2 snapshots per stream, and retrying a command's conflicts up to
    /// [`DEFAULT_MAX_ATTEMPTS`] attempts or [`DEFAULT_RETRY_DEADLINE`],
    /// whichever comes first.
    pub fn new(store: Store) -> Self {
        Repository {
            store,
            upcasters: Upcasters::new(),
            policy: SnapshotPolicy::OnDemand,
            keep_snapshots: 2,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_deadline: DEFAULT_RETRY_DEADLINE,
            read_batch: 4096,
            replay_threads: crate::read::default_threads(),
            _aggregate: PhantomData,
        }
    }

    /// Uses these upcasters when decoding events.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Sets when snapshots are saved by [`execute`](Self::execute).
    pub fn snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Keeps the newest `k` snapshots per stream (at least 1).
    pub fn keep_snapshots(mut self, k: usize) -> Self {
        self.keep_snapshots = k.max(1);
        self
    }

    /// Handles a command at most `attempts` times (at least 1) when writers
    /// from outside this process's repositories keep changing the stream
    /// between load and append (default [`DEFAULT_MAX_ATTEMPTS`]). `1`
    /// never retries; `u32::MAX` leaves the bound to the
    /// [deadline](Self::retry_deadline).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Retries a command that met a conflict only while less than
    /// `deadline` has passed since its first attempt (default
    /// [`DEFAULT_RETRY_DEADLINE`]). The time a command waits for the
    /// commands on its aggregate that came before it, in this process, does
    /// not count: the deadline starts when its turn comes. The last pause is
    /// cut short at the deadline, and one more attempt follows it.
    /// `Duration::ZERO` never retries.
    ///
    /// Retries end at whichever comes first, this deadline or
    /// [`max_attempts`](Self::max_attempts).
    pub fn retry_deadline(mut self, deadline: Duration) -> Self {
        self.retry_deadline = deadline;
        self
    }

    /// Events read per read transaction during a load.
    pub fn read_batch(mut self, events: usize) -> Self {
        self.read_batch = events.max(1);
        self
    }

    /// Threads that read and decode a long replay (8,192 events or more
    /// after the snapshot); the events are still applied one by one, in
    /// order, on the caller's thread. Default: the machine's parallelism, at
    /// most 4. `1` keeps every load on the caller's thread.
    pub fn replay_threads(mut self, threads: usize) -> Self {
        self.replay_threads = threads.max(1);
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The upcasters.
    pub fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    /// The stream of aggregate `id`: `{CATEGORY}-{id}`.
    pub fn stream_id(&self, id: &str) -> String {
        format!("{}-{id}", A::CATEGORY)
    }

    /// The current state: the latest usable snapshot plus the events after it.
    pub fn load(&self, id: &str) -> Result<Loaded<A>> {
        self.load_stream(&self.stream_id(id), None, true)
    }

    /// The current state from a full replay, ignoring snapshots.
    pub fn replay(&self, id: &str) -> Result<Loaded<A>> {
        self.load_stream(&self.stream_id(id), None, false)
    }

    /// The state as it was at `version` (0: the default state). A snapshot at
    /// or below `version` is used when there is one.
    pub fn load_at(&self, id: &str, version: u64) -> Result<Loaded<A>> {
        self.load_stream(&self.stream_id(id), Some(version), true)
    }

    /// The state as it was at `micros` (µs since the Unix epoch): every event
    /// recorded at or before that moment, none after.
    pub fn load_as_of(&self, id: &str, micros: u64) -> Result<Loaded<A>> {
        let stream = self.stream_id(id);
        let version = {
            let reader = self.store.read()?;
            let position = reader.last_position_at(micros)?;
            reader.stream_version_at(&stream, position)?
        };
        self.load_stream(&stream, Some(version), true)
    }

    /// Every event of aggregate `id`, decoded and upcasted, with its record.
    pub fn history(&self, id: &str) -> Result<Vec<Envelope<A::Event>>> {
        let mut out = Vec::new();
        for recorded in
            self.store.read_stream_batched(&self.stream_id(id), ReadStream::forward(), self.read_batch)?
        {
            let recorded = recorded?;
            let (event, _) = self.decode_event(&recorded)?;
            out.push(Envelope { event, recorded });
        }
        Ok(out)
    }

    /// Decodes one stored event into `A::Event`, running its upcaster chain.
    /// Returns the event and whether an upcaster ran.
    ///
    /// The chain must end at the schema version the decoded event reports
    /// ([`DomainEvent::schema_version`]); when it ends below, a step is
    /// missing and this is [`Error::MissingUpcaster`].
    pub fn decode_event(&self, recorded: &RecordedEvent) -> Result<(A::Event, bool)> {
        self.decode_parts(
            &recorded.stream_id,
            recorded.position,
            &recorded.event_type,
            recorded.schema_version,
            recorded.content_type,
            &recorded.payload,
        )
    }

    fn decode_parts(
        &self,
        stream: &str,
        position: u64,
        stored_type: &str,
        stored_schema: u32,
        content_type: ContentType,
        payload: &[u8],
    ) -> Result<(A::Event, bool)> {
        let decode_error = |event_type: &str, reason: String| Error::Decode {
            stream: stream.to_string(),
            position,
            event_type: event_type.to_string(),
            reason,
        };
        if content_type != ContentType::Json {
            return Err(decode_error(
                stored_type,
                "the payload is binary; aggregate events are JSON".to_string(),
            ));
        }
        let has_step = self.upcasters.has_step(stored_type, stored_schema);
        let (event, event_type, schema_version) = if has_step {
            let value: serde_json::Value =
                serde_json::from_slice(payload).map_err(|e| decode_error(stored_type, e.to_string()))?;
            let up = self.upcasters.upcast(stream, position, stored_type, stored_schema, value)?;
            let bytes =
                serde_json::to_vec(&up.payload).map_err(|e| decode_error(&up.event_type, e.to_string()))?;
            let event = <A::Event as DomainEvent>::decode(&up.event_type, &bytes);
            (event, Cow::Owned(up.event_type), up.schema_version)
        } else {
            let event = <A::Event as DomainEvent>::decode(stored_type, payload);
            (event, Cow::Borrowed(stored_type), stored_schema)
        };
        let event = match event {
            Ok(e) => e,
            Err(reason) => {
                // A decode failure of an old payload is most often a missing
                // upcaster step: say so when the chain visibly stopped short.
                if let Some(highest) = self.upcasters.highest_from_version(&event_type)
                    && highest >= schema_version
                {
                    return Err(Error::MissingUpcaster {
                        stream: stream.to_string(),
                        position,
                        event_type: event_type.into_owned(),
                        found: schema_version,
                        // No step is registered from u32::MAX.
                        expected: highest.saturating_add(1),
                    });
                }
                return Err(decode_error(&event_type, reason));
            }
        };
        let code_version = event.schema_version();
        if schema_version < code_version {
            return Err(Error::MissingUpcaster {
                stream: stream.to_string(),
                position,
                event_type: event_type.into_owned(),
                found: schema_version,
                expected: code_version,
            });
        }
        if schema_version > code_version {
            return Err(decode_error(
                &event_type,
                format!(
                    "stored at schema version {schema_version}, newer than this code's version {code_version}: run a newer build"
                ),
            ));
        }
        Ok((event, has_step))
    }

    fn load_stream(&self, stream: &str, target: Option<u64>, use_snapshots: bool) -> Result<Loaded<A>> {
        let mut report = LoadReport::default();
        let (target, snapshot) = {
            let reader = self.store.read()?;
            let current = reader.stream_version(stream)?;
            let target = match target {
                Some(t) if t > current => {
                    return Err(Error::VersionOutOfRange {
                        stream: stream.to_string(),
                        requested: t,
                        current,
                    });
                }
                Some(t) => t,
                None => current,
            };
            let snapshot =
                if use_snapshots && target > 0 { reader.snapshot_at_or_below(stream, target)? } else { None };
            (target, snapshot)
        };
        let mut state = A::default();
        let mut from = 1;
        if let Some((version, found)) = snapshot {
            match found.and_then(|s| self.snapshot_state(&s)) {
                Ok(s) => {
                    // The snapshot is at or below the head's version.
                    from = version.checked_add(1).ok_or_else(|| {
                        Error::index(
                            "streams",
                            format!(
                                "stream {stream:?} is at version {version}, more events than a log can hold"
                            ),
                        )
                    })?;
                    state = s;
                    report.snapshot_version = Some(version);
                }
                Err(reason) => {
                    tracing::warn!(
                        stream,
                        snapshot_version = version,
                        reason = reason.as_str(),
                        "ignoring snapshot; replaying the stream from the start"
                    );
                    report.snapshot_ignored = Some(reason);
                }
            }
        }
        self.fold_events(stream, from, target, &mut state, &mut report)?;
        Ok(Loaded { state, version: target, report })
    }

    fn snapshot_state(&self, s: &crate::aggregate::snapshot::Snapshot) -> std::result::Result<A, String> {
        if s.state_schema_version != A::STATE_SCHEMA_VERSION {
            return Err(format!(
                "snapshot state schema version {} differs from the code's {}",
                s.state_schema_version,
                A::STATE_SCHEMA_VERSION
            ));
        }
        if s.content_type != ContentType::Json {
            return Err("snapshot state is binary; aggregate snapshots are JSON".to_string());
        }
        serde_json::from_slice(&s.state).map_err(|e| format!("snapshot state does not decode: {e}"))
    }

    /// Saves a snapshot of aggregate `id` at its current version, now;
    /// returns that version, or `None` when the aggregate has no events.
    pub fn take_snapshot(&self, id: &str) -> Result<Option<u64>> {
        let stream = self.stream_id(id);
        let loaded = self.load_stream(&stream, None, true)?;
        if loaded.version == 0 {
            return Ok(None);
        }
        self.save_state(&stream, loaded.version, &loaded.state)?;
        Ok(Some(loaded.version))
    }

    fn save_state(&self, stream: &str, version: u64, state: &A) -> Result<()> {
        let snapshot = NewSnapshot::json(stream, version, A::STATE_SCHEMA_VERSION, state)?;
        self.store.save_snapshot(stream, snapshot, self.keep_snapshots)
    }

    /// Loads aggregate `id`, lets it handle `command`, and appends the events
    /// it decides, expecting the version it was loaded at.
    ///
    /// Commands on one aggregate run one at a time across every repository
    /// of this open store (clones of one [`Store`] included), in the order
    /// they came: this one first waits for those before it, so it decides on
    /// a state that includes theirs, and commands of this process never
    /// conflict with each other. Only a write that bypasses the repositories
    /// (a plain [`Store::append`], a client of the protocol node, an import)
    /// can change the stream between load and append; then `execute` pauses
    /// (1 ms doubling to 100 ms, jittered), reloads and handles the command
    /// again, still holding the aggregate's turn, until
    /// [`max_attempts`](Self::max_attempts) or the
    /// [`retry_deadline`](Self::retry_deadline) is reached
    /// ([`Error::RetriesExhausted`] after that). The aggregate's own
    /// rejection ([`CommandError::Rejected`]) is returned at once, never
    /// retried.
    ///
    /// `metadata` (user, correlation, causation, extra fields) is stamped on
    /// every event. A snapshot due by the policy is saved after the append; a
    /// failure to save it is logged, not returned, since the events are stored.
    ///
    /// The aggregate's turn is held while `handle` runs: a handler that waits
    /// for another thread's command on the same aggregate waits forever. (A
    /// handler that executes a command on its own aggregate on its own
    /// thread is let through; the outer command then meets a conflict and
    /// decides again.)
    pub fn execute(
        &self,
        id: &str,
        command: A::Command,
        metadata: EventMetadata,
    ) -> std::result::Result<Executed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let stream = self.stream_id(id);
        let turn = self.turns()?.wait_turn(&stream);
        let started = Instant::now();
        let mut backoff = Backoff::new();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let decided = match self.decide(&stream, command.clone(), &metadata, attempt)? {
                Decided::Nothing(done) => return Ok(done),
                Decided::Append(decided) => decided,
            };
            match self.store.append(&stream, decided.expected, decided.new_events) {
                Ok(append) => {
                    // The next command's load sees these events now; the
                    // snapshot below need not hold it up.
                    drop(turn);
                    return Ok(self.appended(
                        &stream,
                        decided.version,
                        decided.state,
                        decided.events,
                        append,
                        attempt,
                    ));
                }
                Err(Error::WrongExpectedVersion { .. }) => {
                    let pause = self.pause_after_conflict(&stream, started, attempt, &mut backoff)?;
                    std::thread::sleep(pause);
                }
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
    }

    /// [`execute`](Self::execute) for async code (feature `async`), on any
    /// runtime: the same turns (shared with `execute` on this store), the
    /// same retries within the same deadline, and the same result.
    ///
    /// The command waits for its aggregate's turn without blocking a
    /// thread: its task is woken when the command before it leaves.
    /// Dropping the future (a timeout, a cancelled task) gives its place up,
    /// so the commands after it go on. Loading, handling and the snapshot
    /// run on the task (short LMDB reads and the aggregate's own code); the
    /// append is awaited ([`AppendTicket`](crate::AppendTicket) as a
    /// future). The pause after a conflict is awaited too, on a timer
    /// thread of the library (one per process, started at the first pause),
    /// since the library uses no runtime's timer.
    ///
    /// A command handler must not await another command on the same
    /// aggregate (it cannot: `handle` is not async), and async code should
    /// not call the blocking [`execute`](Self::execute) on an aggregate
    /// that async commands use: it would block the runtime's thread while
    /// it waits for their turns.
    ///
    /// ```
    /// # use eventfold::{Aggregate, DomainEvent, EventMetadata, Repository, Store};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, Serialize, Deserialize)]
    /// # enum Ev { Added { n: u64 } }
    /// # impl DomainEvent for Ev { fn event_type(&self) -> &'static str { "Added" } }
    /// # #[derive(Debug, Default, Serialize, Deserialize)]
    /// # struct Counter { total: u64 }
    /// # impl Aggregate for Counter {
    /// #     const CATEGORY: &'static str = "counter";
    /// #     type Event = Ev;
    /// #     type Command = u64;
    /// #     type Error = std::convert::Infallible;
    /// #     fn apply(&mut self, Ev::Added { n }: &Ev) { self.total += n; }
    /// #     fn handle(&self, n: u64) -> Result<Vec<Ev>, Self::Error> { Ok(vec![Ev::Added { n }]) }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// let repo = Repository::<Counter>::new(Store::open(dir.path())?);
    /// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    /// let done = runtime.block_on(repo.execute_async("c-1", 5, EventMetadata::default()))?;
    /// assert_eq!(done.state.total, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "async")]
    pub async fn execute_async(
        &self,
        id: &str,
        command: A::Command,
        metadata: EventMetadata,
    ) -> std::result::Result<Executed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let stream = self.stream_id(id);
        let turn = self.turns()?.turn_async(&stream).await;
        let started = Instant::now();
        let mut backoff = Backoff::new();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let decided = match self.decide(&stream, command.clone(), &metadata, attempt)? {
                Decided::Nothing(done) => return Ok(done),
                Decided::Append(decided) => decided,
            };
            match self.store.append_async(&stream, decided.expected, decided.new_events).await {
                Ok(append) => {
                    drop(turn);
                    return Ok(self.appended(
                        &stream,
                        decided.version,
                        decided.state,
                        decided.events,
                        append,
                        attempt,
                    ));
                }
                Err(Error::WrongExpectedVersion { .. }) => {
                    let pause = self.pause_after_conflict(&stream, started, attempt, &mut backoff)?;
                    serial::Sleep::new(pause)?.await;
                }
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
    }

    /// The store's table of aggregate turns.
    fn turns(&self) -> Result<std::sync::Arc<Turns>> {
        self.store.extension(|| Ok(Some(Turns::default())))?.ok_or_else(|| Error::Internal {
            reason: "the store kept no table of aggregate turns".to_string(),
        })
    }

    /// One attempt of a command, up to the append: load, handle, encode.
    fn decide(
        &self,
        stream: &str,
        command: A::Command,
        metadata: &EventMetadata,
        attempt: u32,
    ) -> std::result::Result<Decided<A>, CommandError<A::Error>> {
        let Loaded { state, version, .. } = self.load_stream(stream, None, true)?;
        let events = state.handle(command).map_err(CommandError::Rejected)?;
        if events.is_empty() {
            return Ok(Decided::Nothing(Executed {
                events,
                version,
                state,
                append: None,
                attempts: attempt,
                snapshot_saved: None,
            }));
        }
        let new_events = events
            .iter()
            .map(|e| to_new_event(e, metadata))
            .collect::<Result<Vec<_>>>()
            .map_err(CommandError::Store)?;
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        Ok(Decided::Append(ToAppend { state, version, events, new_events, expected }))
    }

    /// What a command that appended returns: the state after its events,
    /// and the snapshot due by the policy.
    fn appended(
        &self,
        stream: &str,
        version: u64,
        mut state: A,
        events: Vec<A::Event>,
        append: AppendResult,
        attempt: u32,
    ) -> Executed<A> {
        for e in &events {
            state.apply(e);
        }
        let new_version = append.stream_version;
        let snapshot_saved = self.snapshot_by_policy(stream, version, new_version, &state);
        Executed {
            events,
            version: new_version,
            state,
            append: Some(append),
            attempts: attempt,
            snapshot_saved,
        }
    }

    /// The pause before the next attempt after a conflict, or
    /// [`Error::RetriesExhausted`] when the attempts or the deadline are
    /// used up.
    fn pause_after_conflict(
        &self,
        stream: &str,
        started: Instant,
        attempt: u32,
        backoff: &mut Backoff,
    ) -> std::result::Result<Duration, CommandError<A::Error>> {
        let left = self.retry_deadline.checked_sub(started.elapsed()).filter(|l| !l.is_zero());
        let Some(left) = left.filter(|_| attempt < self.max_attempts) else {
            return Err(CommandError::Store(Error::RetriesExhausted {
                stream: stream.to_string(),
                attempts: attempt,
            }));
        };
        let pause = backoff.next_pause().min(left);
        tracing::debug!(
            stream,
            attempt,
            pause_us = u64::try_from(pause.as_micros()).unwrap_or(u64::MAX),
            "the stream changed between load and append; deciding again after a pause"
        );
        Ok(pause)
    }

    /// Appends `events` to aggregate `id` directly, without handling a
    /// command: for imports, migrations and seeding test data. The
    /// aggregate's rules are not consulted; `expected` is checked as usual and
    /// `metadata` is stamped on every event. No snapshot is taken.
    pub fn append(
        &self,
        id: &str,
        expected: ExpectedVersion,
        events: &[A::Event],
        metadata: &EventMetadata,
    ) -> Result<AppendResult> {
        let new_events = events.iter().map(|e| to_new_event(e, metadata)).collect::<Result<Vec<_>>>()?;
        self.store.append(&self.stream_id(id), expected, new_events)
    }

    fn snapshot_by_policy(&self, stream: &str, old: u64, new: u64, state: &A) -> Option<u64> {
        let SnapshotPolicy::EveryNEvents(n) = self.policy else { return None };
        if n == 0 || new.checked_div(n) == old.checked_div(n) {
            return None;
        }
        match self.save_state(stream, new, state) {
            Ok(()) => Some(new),
            Err(e) => {
                tracing::warn!(stream, version = new, error = %e, "could not save the snapshot due by policy");
                None
            }
        }
    }
}

/// One attempt of a command, decided.
enum Decided<A: Aggregate> {
    /// The command decided no events: done.
    Nothing(Executed<A>),
    /// Events to append.
    Append(ToAppend<A>),
}

/// The events a command decided, and what it decided them on.
struct ToAppend<A: Aggregate> {
    state: A,
    version: u64,
    events: Vec<A::Event>,
    new_events: Vec<NewEvent>,
    expected: ExpectedVersion,
}

/// The stored form of a domain event with the command's metadata.
pub(crate) fn to_new_event<E: DomainEvent>(event: &E, metadata: &EventMetadata) -> Result<NewEvent> {
    let payload = event
        .encode()
        .map_err(|reason| Error::InvalidPayload { event_type: event.event_type().to_string(), reason })?;
    Ok(NewEvent::json_bytes(event.event_type(), payload)
        .with_schema_version(event.schema_version())
        .with_metadata(metadata.clone()))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::lmdb::env::Table;
    use crate::lmdb::keys::stream_version_key;
    use crate::store::{Put, boxed};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Ev {
        Added { n: u64 },
    }

    impl DomainEvent for Ev {
        fn event_type(&self) -> &'static str {
            "Added"
        }
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Counter {
        total: u64,
    }

    impl Aggregate for Counter {
        const CATEGORY: &'static str = "counter";
        type Event = Ev;
        type Command = u64;
        type Error = std::convert::Infallible;

        fn apply(&mut self, Ev::Added { n }: &Ev) {
            self.total += n;
        }

        fn handle(&self, n: u64) -> Result<Vec<Ev>, Self::Error> {
            Ok(vec![Ev::Added { n }])
        }
    }

    #[test]
    fn a_snapshot_with_a_bad_checksum_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let repo = Repository::<Counter>::new(store.clone());
        repo.execute("1", 4, EventMetadata::new()).unwrap();
        repo.execute("1", 5, EventMetadata::new()).unwrap();
        repo.take_snapshot("1").unwrap();
        let stream_no = store.read().unwrap().head_of("counter-1").unwrap().unwrap().stream_no;
        let mut value = crate::aggregate::snapshot::encode(
            &NewSnapshot::json("counter-1", 2, 1, &Counter { total: 1000 }).unwrap(),
            0,
        );
        *value.last_mut().unwrap() ^= 0x20;
        let w = boxed(Put { table: Table::Snapshots, key: stream_version_key(stream_no, 2).to_vec(), value });
        store.send(Vec::new(), vec![w]).unwrap().wait_many().unwrap();

        let loaded = repo.load("1").unwrap();
        assert_eq!(loaded.state.total, 9);
        assert_eq!(loaded.report.snapshot_version, None);
        assert_eq!(loaded.report.snapshot_ignored.as_deref(), Some("checksum mismatch"));
        assert!(matches!(store.latest_snapshot("counter-1"), Err(Error::SnapshotInvalid { version: 2, .. })));
    }

    /// Guards the step from a snapshot to the events after it: a head and a
    /// snapshot at version u64::MAX (damage) are an error, not an overflow.
    #[test]
    fn a_snapshot_at_the_last_possible_version_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let repo = Repository::<Counter>::new(store.clone());
        repo.execute("1", 4, EventMetadata::new()).unwrap();
        let head = store.read().unwrap().head_of("counter-1").unwrap().unwrap();
        let value = crate::aggregate::snapshot::encode(
            &NewSnapshot::json("counter-1", u64::MAX, 1, &Counter { total: 4 }).unwrap(),
            0,
        );
        let (env, dbs) = store.env_and_dbs();
        let mut wtxn = env.write_txn().unwrap();
        let forged = crate::lmdb::keys::StreamHead { version: u64::MAX, ..head };
        dbs.streams.put(&mut wtxn, b"counter-1", &forged.encode()).unwrap();
        dbs.snapshots.put(&mut wtxn, &stream_version_key(head.stream_no, u64::MAX), &value).unwrap();
        wtxn.commit().unwrap();

        let err = repo.load("1").unwrap_err();
        assert!(matches!(err, Error::IndexCorruption { index: "streams", .. }), "{err}");
        assert!(err.to_string().contains("more events than a log can hold"), "{err}");
    }

    /// A hook run when a [`Gated`] command is decided, with the total the
    /// decision sees.
    type Hook = Arc<dyn Fn(u64) + Send + Sync>;

    #[derive(Clone)]
    struct Add {
        n: u64,
        hook: Option<Hook>,
    }

    /// A counter whose commands can run a hook while they are decided, to
    /// hold a command inside its aggregate's turn.
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Gated {
        total: u64,
    }

    impl Aggregate for Gated {
        const CATEGORY: &'static str = "gated";
        type Event = Ev;
        type Command = Add;
        type Error = std::convert::Infallible;

        fn apply(&mut self, Ev::Added { n }: &Ev) {
            self.total += n;
        }

        fn handle(&self, Add { n, hook }: Add) -> Result<Vec<Ev>, Self::Error> {
            if let Some(hook) = hook {
                hook(self.total);
            }
            Ok(vec![Ev::Added { n }])
        }
    }

    fn add(n: u64, hook: impl Fn(u64) + Send + Sync + 'static) -> Add {
        Add { n, hook: Some(Arc::new(hook)) }
    }

    fn turns_of(store: &Store) -> Arc<Turns> {
        store.extension::<Turns>(|| Ok(None)).unwrap().expect("execute made the table")
    }

    /// Waits until `n` commands hold or wait for the turn of `stream` (and
    /// fails after a minute instead of hanging when they never do).
    fn until_queued(store: &Store, stream: &str, n: u64) {
        let started = std::time::Instant::now();
        while store.extension::<Turns>(|| Ok(None)).unwrap().is_none_or(|t| t.queued(stream) < n) {
            assert!(started.elapsed() < Duration::from_secs(60), "{n} commands never queued on {stream}");
            std::thread::yield_now();
        }
    }

    /// Guards the serialisation of commands on one aggregate across
    /// repositories made from clones of one store: while one command is
    /// being decided, the other waits (it has not decided yet), then decides
    /// on the state that includes the first, so neither meets a conflict.
    /// The table of turns holds the aggregate only meanwhile.
    #[test]
    fn commands_on_one_aggregate_take_turns_across_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = Repository::<Gated>::new(store.clone());
        let second = Repository::<Gated>::new(store.clone());
        let (inside_tx, inside_rx) = crossbeam_channel::bounded::<()>(1);
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
        let (seen_tx, seen_rx) = crossbeam_channel::unbounded::<u64>();
        let a = std::thread::spawn(move || {
            let hook = move |_| {
                inside_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            };
            first.execute("1", add(1, hook), EventMetadata::new()).unwrap()
        });
        inside_rx.recv().unwrap();
        let b = std::thread::spawn(move || {
            second
                .execute("1", add(10, move |total| seen_tx.send(total).unwrap()), EventMetadata::new())
                .unwrap()
        });
        until_queued(&store, "gated-1", 2);
        assert!(seen_rx.try_recv().is_err(), "the second command was decided while the first held the turn");
        assert_eq!(turns_of(&store).len(), 1);
        go_tx.send(()).unwrap();
        let a = a.join().unwrap();
        let b = b.join().unwrap();
        assert_eq!((a.attempts, a.version), (1, 1));
        assert_eq!((b.attempts, b.version, b.state.total), (1, 2, 11));
        assert_eq!(seen_rx.recv().unwrap(), 1, "the second command decided on the first one's state");
        assert_eq!(turns_of(&store).len(), 0);
    }

    /// Guards the table of turns against growing with every aggregate ever
    /// touched: many commands on many aggregates from several threads, some
    /// sharing aggregates, leave it empty.
    #[test]
    fn the_table_of_turns_shrinks_back_when_commands_finish() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path()).durability(crate::Durability::NoSync).open().unwrap();
        let repo = Repository::<Counter>::new(store.clone());
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let repo = repo.clone();
                scope.spawn(move || {
                    for k in 0..40u64 {
                        // Half the ids are this thread's own, half shared.
                        let id =
                            if k % 2 == 0 { format!("own-{t}-{k}") } else { format!("shared-{}", k % 5) };
                        assert_eq!(repo.execute(&id, 1, EventMetadata::new()).unwrap().attempts, 1);
                    }
                });
            }
        });
        assert_eq!(turns_of(&store).len(), 0);
        // Each thread added 1 to each shared id 4 times.
        assert_eq!(repo.load("shared-1").unwrap().state.total, 4 * 4);
    }

    /// Guards against a panicking handler keeping its aggregate: the turn is
    /// given back as the panic unwinds, so the command waiting behind it
    /// runs, and later commands too.
    #[test]
    fn a_handler_that_panics_gives_the_turn_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let repo = Repository::<Gated>::new(store.clone());
        let (inside_tx, inside_rx) = crossbeam_channel::bounded::<()>(1);
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
        let a = {
            let repo = repo.clone();
            std::thread::spawn(move || {
                let hook = move |_| {
                    inside_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    panic!("the handler fails");
                };
                let _ = repo.execute("1", add(1, hook), EventMetadata::new());
            })
        };
        inside_rx.recv().unwrap();
        let b = {
            let repo = repo.clone();
            std::thread::spawn(move || {
                repo.execute("1", Add { n: 2, hook: None }, EventMetadata::new()).unwrap()
            })
        };
        until_queued(&store, "gated-1", 2);
        go_tx.send(()).unwrap();
        assert!(a.join().is_err());
        assert_eq!((b.join().unwrap().attempts, repo.load("1").unwrap().state.total), (1, 2));
        assert_eq!(repo.execute("1", Add { n: 3, hook: None }, EventMetadata::new()).unwrap().version, 2);
        assert_eq!(turns_of(&store).len(), 0);
    }

    /// Guards against a command waiting for itself: a handler that executes
    /// a command on its own aggregate, on its own thread, is let through;
    /// the outer command then meets that write as a conflict and decides
    /// again on the state that includes it.
    #[test]
    fn a_handler_executing_on_its_own_aggregate_does_not_wait_for_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let repo = Repository::<Gated>::new(store.clone());
        let nested_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hook = {
            let (repo, nested_done) = (repo.clone(), nested_done.clone());
            move |_| {
                if !nested_done.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    repo.execute("1", Add { n: 5, hook: None }, EventMetadata::new()).unwrap();
                }
            }
        };
        let done = repo.execute("1", add(1, hook), EventMetadata::new()).unwrap();
        assert_eq!((done.attempts, done.version, done.state.total), (2, 2, 6));
        assert_eq!(turns_of(&store).len(), 0);
    }
}
