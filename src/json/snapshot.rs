//! The JSON-merge state ([`JsonState`]) as of a version or a time, sped up by
//! snapshots of that state, for front ends without domain code (the CLI's
//! `state` and `snapshot` commands, the protocol's `get_state` and
//! `create_snapshot`).
//!
//! A JSON-merge snapshot is stored like any other snapshot, with the state
//! schema version [`JSON_STATE_SNAPSHOT_SCHEMA`], so an aggregate's
//! [`Repository`](crate::Repository) (whose schema versions are small
//! numbers) ignores it, and this module ignores the aggregates' snapshots.

use serde::{Deserialize, Serialize};

use crate::aggregate::snapshot::NewSnapshot;
use crate::json::state::{JsonFields, JsonState};
use crate::read::ReadStream;
use crate::store::Store;
use crate::vocab::ContentType;
use crate::vocab::{Error, Result};

/// State schema version that marks a snapshot as holding a [`JsonState`].
pub const JSON_STATE_SNAPSHOT_SCHEMA: u32 = u32::MAX;

/// How many JSON-merge snapshots of a stream [`Store::snapshot_json_state`] keeps.
pub const JSON_STATE_SNAPSHOTS_KEPT: usize = 3;

/// A JSON-merge snapshot's state bytes: the [`JsonState`]'s fields, and
/// `exact_numbers`, which says the values are the payloads' own text.
/// Snapshots saved before the state kept that text hold values re-encoded
/// through `serde_json::Value` (`1.50` saved as `1.5`, big integers
/// rounded); a fold does not start from those, so the state it reports
/// always spells values as the events do.
#[derive(Serialize)]
struct SavedState<'a> {
    state: &'a JsonFields,
    version: u64,
    position: u64,
    events: u64,
    skipped: u64,
    exact_numbers: bool,
}

#[derive(Deserialize)]
struct LoadedState {
    state: JsonFields,
    version: u64,
    position: u64,
    events: u64,
    skipped: u64,
    #[serde(default)]
    exact_numbers: bool,
}

impl LoadedState {
    fn parse(bytes: &[u8]) -> Option<LoadedState> {
        serde_json::from_slice(bytes).ok()
    }

    fn into_state(self) -> JsonState {
        let LoadedState { state, version, position, events, skipped, .. } = self;
        JsonState { state, version, position, events, skipped }
    }
}

impl Store {
    /// The JSON-merge state of `stream` folded up to `as_of_version` and up to
    /// `as_of_time` (microseconds since the Unix epoch; events recorded later
    /// are left out); `None` for no bound. Starts from the newest JSON-merge
    /// snapshot inside the bounds, when there is one, and folds the events
    /// after it.
    pub fn json_state_as_of(
        &self,
        stream: &str,
        as_of_version: Option<u64>,
        as_of_time: Option<u64>,
    ) -> Result<JsonState> {
        let reader = self.read()?;
        let up_to_position = match as_of_time {
            Some(t) => reader.last_position_at(t)?,
            None => u64::MAX,
        };
        let max_version = as_of_version.unwrap_or(u64::MAX);
        let mut start = JsonState::new();
        let mut snapshot_version = 0;
        if let Some((version, Ok(s))) = reader.snapshot_at_or_below(stream, max_version)?
            && s.state_schema_version == JSON_STATE_SNAPSHOT_SCHEMA
            && s.content_type == ContentType::Json
            && let Some(saved) = LoadedState::parse(&s.state)
            && saved.exact_numbers
            // A snapshot of a version recorded after the time bound is too new.
            && saved.position <= up_to_position
        {
            start = saved.into_state();
            snapshot_version = version;
        }
        drop(reader);
        let from_version = start.version.checked_add(1).ok_or_else(|| Error::SnapshotInvalid {
            stream: stream.to_string(),
            version: snapshot_version,
            reason: format!("its state is at version {}, more events than a log can hold", start.version),
        })?;
        let mut options = ReadStream::forward().from_version(from_version).up_to_position(up_to_position);
        if max_version != u64::MAX {
            if max_version <= start.version {
                return Ok(start);
            }
            // Above `start.version` (just checked).
            let left = max_version.saturating_sub(start.version);
            options = options.limit(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let mut state = start;
        for event in self.read_stream_batched(stream, options, 4096)? {
            state.apply(&event?)?;
        }
        Ok(state)
    }

    /// Saves the stream's current JSON-merge state as a snapshot (keeping the
    /// newest [`JSON_STATE_SNAPSHOTS_KEPT`]) and returns it.
    pub fn snapshot_json_state(&self, stream: &str) -> Result<JsonState> {
        let state = self.json_state_as_of(stream, None, None)?;
        if state.version == 0 {
            return Err(Error::StreamNotFound { stream: stream.to_string() });
        }
        let saved = SavedState {
            state: &state.state,
            version: state.version,
            position: state.position,
            events: state.events,
            skipped: state.skipped,
            exact_numbers: true,
        };
        let snapshot = NewSnapshot::json(stream, state.version, JSON_STATE_SNAPSHOT_SCHEMA, &saved)?;
        self.save_snapshot(stream, snapshot, JSON_STATE_SNAPSHOTS_KEPT)?;
        Ok(state)
    }

    /// The newest JSON-merge snapshot of `stream`, if any, as it was saved
    /// (one saved by an older build has its numbers re-encoded).
    pub fn latest_json_snapshot(&self, stream: &str) -> Result<Option<JsonState>> {
        let reader = self.read()?;
        for version in reader.snapshot_versions(stream)?.into_iter().rev() {
            match reader.snapshot_at_or_below(stream, version)? {
                Some((_, Ok(s))) if s.state_schema_version == JSON_STATE_SNAPSHOT_SCHEMA => {
                    if let Some(saved) = LoadedState::parse(&s.state) {
                        return Ok(Some(saved.into_state()));
                    }
                }
                // A damaged snapshot is not "no snapshot": say so.
                Some((version, Err(reason))) => {
                    return Err(Error::SnapshotInvalid { stream: stream.to_string(), version, reason });
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{ExpectedVersion, NewEvent};

    /// Guards the step from a JSON-merge snapshot to the events after it: a
    /// saved state at version u64::MAX (damage) is an error, not an overflow.
    #[test]
    fn a_saved_state_at_the_last_possible_version_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .append("s-1", ExpectedVersion::Any, [NewEvent::json("E", &serde_json::json!({"a": 1}))])
            .unwrap();
        let fields = JsonFields::new();
        let saved = SavedState {
            state: &fields,
            version: u64::MAX,
            position: 1,
            events: 1,
            skipped: 0,
            exact_numbers: true,
        };
        let snapshot = NewSnapshot::json("s-1", 1, JSON_STATE_SNAPSHOT_SCHEMA, &saved).unwrap();
        store.save_snapshot("s-1", snapshot, 1).unwrap();
        let err = store.json_state_as_of("s-1", None, None).unwrap_err();
        assert!(matches!(err, Error::SnapshotInvalid { version: 1, .. }), "{err}");
        assert!(err.to_string().contains("more events than a log can hold"), "{err}");
    }
}
