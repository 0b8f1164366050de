//! [`Repository`]: load an aggregate (snapshot + the events after it,
//! upcasted), as of a version or a time, and execute commands against it
//! with optimistic concurrency.

mod replay;

use std::borrow::Cow;
use std::marker::PhantomData;

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
            .field("replay_threads", &self.replay_threads)
            .finish_non_exhaustive()
    }
}

/// Default bound on how often [`Repository::execute`] handles a command.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

impl<A: Aggregate> Repository<A> {
    /// A repository with no upcasters, snapshots on demand only, keeping the
    /// last 2 snapshots per stream, and up to [`DEFAULT_MAX_ATTEMPTS`] tries
    /// per command.
    pub fn new(store: Store) -> Self {
        Repository {
            store,
            upcasters: Upcasters::new(),
            policy: SnapshotPolicy::OnDemand,
            keep_snapshots: 2,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
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

    /// Handles a command at most `attempts` times (at least 1) when concurrent
    /// writers keep changing the stream between load and append.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
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
    /// it decides, expecting the version it was loaded at. When another
    /// writer changed the stream in between, reloads and handles the command
    /// again, up to the configured number of attempts
    /// ([`Error::RetriesExhausted`] after that).
    ///
    /// `metadata` (user, correlation, causation, extra fields) is stamped on
    /// every event. A snapshot due by the policy is saved after the append; a
    /// failure to save it is logged, not returned, since the events are stored.
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
        for attempt in 1..=self.max_attempts {
            let Loaded { mut state, version, .. } = self.load_stream(&stream, None, true)?;
            let events = state.handle(command.clone()).map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(Executed {
                    events,
                    version,
                    state,
                    append: None,
                    attempts: attempt,
                    snapshot_saved: None,
                });
            }
            let new_events = events
                .iter()
                .map(|e| to_new_event(e, &metadata))
                .collect::<Result<Vec<_>>>()
                .map_err(CommandError::Store)?;
            let expected =
                if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
            match self.store.append(&stream, expected, new_events) {
                Ok(append) => {
                    for e in &events {
                        state.apply(e);
                    }
                    let new_version = append.stream_version;
                    let snapshot_saved = self.snapshot_by_policy(&stream, version, new_version, &state);
                    return Ok(Executed {
                        events,
                        version: new_version,
                        state,
                        append: Some(append),
                        attempts: attempt,
                        snapshot_saved,
                    });
                }
                Err(Error::WrongExpectedVersion { .. }) => continue,
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
        Err(CommandError::Store(Error::RetriesExhausted { stream, attempts: self.max_attempts }))
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
}
