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
//! assert_eq!(s.state.to_string(), r#"{"name":"Ann","plan":"pro"}"#);
//! assert_eq!(s.version, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::read::ReadStream;
use crate::store::Store;
use crate::vocab::{ContentType, RecordedEvent};
use crate::vocab::{Error, Result};

/// A JSON object whose field values are kept as the exact text of the
/// payload they came from: the state of a [`JsonState`].
///
/// Numbers are never re-encoded (`1.50` stays `1.50`, an integer of any
/// length keeps its digits), nor are strings' escapes or the key order
/// inside a field's value. The fields themselves are sorted by key.
///
/// It serializes as that object. It deserializes only from JSON text
/// (`serde_json::from_str`, `from_slice`, `from_reader`), which is what keeps
/// the text; not from a `serde_json::Value`.
#[derive(Debug, Clone, Default)]
pub struct JsonFields(BTreeMap<String, Box<RawValue>>);

impl JsonFields {
    /// The empty object `{}`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text of field `key`'s value, as stored.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.get())
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the object has no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields in key order, each with its value's text.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.get()))
    }

    /// The object parsed into a `Value`. Numbers beyond 64 bits become
    /// floats there: use the text (`JsonFields::to_string`, [`JsonFields::get`])
    /// to keep them.
    pub fn to_value(&self) -> serde_json::Result<Value> {
        serde_json::from_str(&self.to_string())
    }

    /// The object's text as a `RawValue`.
    pub fn to_raw_value(&self) -> serde_json::Result<Box<RawValue>> {
        serde_json::value::to_raw_value(&self.0)
    }
}

impl fmt::Display for JsonFields {
    /// The object as compact JSON text, each value as stored.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(&self.0).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl PartialEq for JsonFields {
    /// The same keys with the same value texts.
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
    }
}

impl PartialEq<Value> for JsonFields {
    /// The object parsed equals `other` (numbers compared as a `Value`
    /// holds them).
    fn eq(&self, other: &Value) -> bool {
        self.to_value().is_ok_and(|v| v == *other)
    }
}

impl Serialize for JsonFields {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for JsonFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        BTreeMap::deserialize(d).map(JsonFields)
    }
}

/// A stream's state as a JSON merge fold of its events' payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JsonState {
    /// The merged object, each field's value as the payload that set it
    /// spelled it.
    pub state: JsonFields,
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
        JsonState { state: JsonFields::new(), version: 0, position: 0, events: 0, skipped: 0 }
    }
}

impl JsonState {
    /// The empty state `{}`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one payload value into the state; returns whether it was an
    /// object (and so merged). Prefer [`JsonState::merge_json`] for stored
    /// text: a `Value` has already rounded big numbers.
    pub fn merge(&mut self, payload: Value) -> bool {
        let Value::Object(fields) = payload else { return false };
        for (k, v) in fields {
            // Serializing a `Value` cannot fail.
            if let Ok(raw) = serde_json::value::to_raw_value(&v) {
                self.state.0.insert(k, raw);
            }
        }
        true
    }

    /// Merges one payload given as JSON text, keeping each field's value as
    /// it is spelled; returns whether it was an object (and so merged).
    /// Text that is not JSON is an error and changes nothing.
    pub fn merge_json(&mut self, payload: &str) -> serde_json::Result<bool> {
        if !payload.trim_start().starts_with('{') {
            serde_json::from_str::<serde::de::IgnoredAny>(payload)?;
            return Ok(false);
        }
        let fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(payload)?;
        // Later keys replace earlier ones, as in the payload itself.
        self.state.0.extend(fields);
        Ok(true)
    }

    /// Folds one stored event in. A JSON payload that does not parse is an
    /// error ([`Error::Decode`](crate::Error::Decode)); a binary or
    /// non-object one is skipped.
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<()> {
        let decode = |reason: String| Error::Decode {
            stream: event.stream_id.clone(),
            position: event.position,
            event_type: event.event_type.clone(),
            reason,
        };
        let merged = match event.content_type {
            ContentType::Json => {
                let text = std::str::from_utf8(&event.payload).map_err(|e| decode(e.to_string()))?;
                self.merge_json(text).map_err(|e| decode(e.to_string()))?
            }
            ContentType::Binary => false,
        };
        self.version = event.version;
        self.position = event.position;
        if merged {
            self.events = self.events.saturating_add(1);
        } else {
            self.skipped = self.skipped.saturating_add(1);
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

    /// The state keeps each value's text: numbers are not re-encoded, and a
    /// snapshot's JSON gives the same text back.
    #[test]
    fn merged_text_is_kept_through_a_round_trip() {
        let mut s = JsonState::new();
        assert!(
            s.merge_json(r#" {"big": 12345678901234567890123, "f": 1.50, "n": {"z": 1e2, "a": "\u00e9"}}"#)
                .unwrap()
        );
        assert!(s.merge_json(r#"{"f": 2.50, "f": 3.50}"#).unwrap());
        assert!(!s.merge_json("[1e400]").unwrap());
        assert!(s.merge_json("{").is_err());
        assert!(s.merge_json("[").is_err());
        assert_eq!(
            s.state.to_string(),
            r#"{"big":12345678901234567890123,"f":3.50,"n":{"z": 1e2, "a": "\u00e9"}}"#
        );
        assert_eq!(s.state.get("big"), Some("12345678901234567890123"));
        let text = serde_json::to_string(&s).unwrap();
        let back: JsonState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.state.to_string(), s.state.to_string());
    }
}
