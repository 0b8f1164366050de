//! The generic state of a stream, for front ends that have no domain code
//! (the command line, the network protocol): a **JSON merge fold**.
//!
//! The state starts as the empty object `{}`. Each event whose payload is a
//! JSON object is merged into it key by key: every top-level key of the
//! payload replaces the state's value for that key (a `null` value is stored
//! as `null`, it does not remove the key). Nested objects are replaced whole,
//! not merged. Events whose payload is not a JSON object (arrays, scalars,
//! binary payloads) leave the state unchanged and are counted as skipped.
//!
//! ```
//! use eventfold::{ExpectedVersion, JsonState, NewEvent, ReadStream, Store};
//! use serde_json::json;
//!
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! store.append("user-1", ExpectedVersion::NoStream, [
//!     NewEvent::json("Registered", &json!({"name": "Ann", "plan": "free"})),
//!     NewEvent::json("Upgraded", &json!({"plan": "pro"})),
//! ])?;
//! let s = store.json_state("user-1", ReadStream::forward())?;
//! assert_eq!(s.state, json!({"name": "Ann", "plan": "pro"}));
//! assert_eq!(s.version, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::event::{ContentType, RecordedEvent};
use crate::read::ReadStream;
use crate::store::Store;

/// A stream's state as a JSON merge fold of its events' payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonState {
    /// The merged object.
    pub state: Value,
    /// The version of the last event folded (0: none).
    pub version: u64,
    /// The global position of the last event folded (0: none).
    pub position: u64,
    /// Events folded in.
    pub events: u64,
    /// Events left out because their payload is not a JSON object.
    pub skipped: u64,
}

impl Default for JsonState {
    fn default() -> Self {
        JsonState { state: Value::Object(Map::new()), version: 0, position: 0, events: 0, skipped: 0 }
    }
}

impl JsonState {
    /// The empty state `{}`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one payload value into the state; returns whether it was an
    /// object (and so merged).
    pub fn merge(&mut self, payload: Value) -> bool {
        let Value::Object(fields) = payload else { return false };
        if !self.state.is_object() {
            self.state = Value::Object(Map::new());
        }
        if let Value::Object(state) = &mut self.state {
            for (k, v) in fields {
                state.insert(k, v);
            }
        }
        true
    }

    /// Folds one stored event in. A JSON payload that does not parse is an
    /// error ([`Error::Decode`](crate::Error::Decode)); a binary or
    /// non-object one is skipped.
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<()> {
        self.version = event.version;
        self.position = event.position;
        let merged = event.content_type == ContentType::Json && self.merge(event.payload_as::<Value>()?);
        if merged {
            self.events += 1;
        } else {
            self.skipped += 1;
        }
        Ok(())
    }
}

impl Store {
    /// The JSON merge fold of `stream` (see [`JsonState`]), read in bounded
    /// batches. `options` can bound it to a version range or a position
    /// (`up_to_position`) for a past state.
    pub fn json_state(&self, stream: &str, options: ReadStream) -> Result<JsonState> {
        let mut s = JsonState::new();
        for event in self.read_stream_batched(stream, options, 4096)? {
            s.apply(&event?)?;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_top_level_keys_and_skips_non_objects() {
        let mut s = JsonState::new();
        assert!(s.merge(json!({"a": 1, "n": {"x": 1}})));
        assert!(s.merge(json!({"b": 2, "n": {"y": 2}, "a": null})));
        assert!(!s.merge(json!([1, 2])));
        assert!(!s.merge(json!(7)));
        assert_eq!(s.state, json!({"a": null, "b": 2, "n": {"y": 2}}));
    }
}
