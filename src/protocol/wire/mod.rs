//! Every message of the JSON-lines protocol, as serde types, and the parser
//! the node uses for incoming lines.
//!
//! A message is `{"src": A, "dest": B, "body": {"type": …, "msg_id": …, …}}`.
//! Requests derive `Serialize` and `Deserialize` so a Rust client can build
//! and read them with serde; the node itself parses a request field by field
//! ([`parse_request`]) so that a missing or ill-typed field is reported by
//! name (serde's own errors for tagged enums do not say which field failed),
//! and so that an event's payload is kept as the exact text the client sent
//! ([`RawJson`]).
//!

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod reply;
mod request;

pub use super::parse::parse_request;
use crate::vocab::Error;
use crate::vocab::{EventMetadata, ExpectedVersion, RecordedEvent};
pub use reply::*;
pub use request::*;

/// Longest request line the node reads, in bytes (8 MiB, room for an atomic
/// batch of some 70,000 small events), not counting the newline. A line is
/// held in memory only while it is parsed, so the most a node holds for
/// request lines is this times its connections. A longer line is skipped without being held in memory and
/// answered with error code [`codes::MALFORMED_REQUEST`].
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 << 20;

/// The name a node answers as until an `init` gives it another, and when a
/// request has no `dest`.
pub const DEFAULT_NODE_ID: &str = "eventstore";

/// Error codes of `error` replies. The numbers follow the Maelstrom
/// conventions, so generic JSON-lines clients read them right.
pub mod codes {
    /// The message type is unknown, or this node does not offer it.
    pub const NOT_SUPPORTED: u32 = 10;
    /// The store cannot take writes now (full, poisoned by a failed fsync,
    /// closing); the same request may succeed later or after a restart.
    pub const TEMPORARILY_UNAVAILABLE: u32 = 11;
    /// The aggregate has no events (`create_snapshot`), or no snapshot (`get_snapshot`).
    pub const NOT_FOUND: u32 = 20;
    /// The line is not JSON, or a field is missing, ill-typed or invalid
    /// (bad stream id, event type, payload, metadata, size).
    pub const MALFORMED_REQUEST: u32 = 12;
    /// The store failed in a way the client cannot fix (corruption, I/O).
    pub const CRASH: u32 = 13;
    /// A precondition failed: an event id is already used elsewhere.
    pub const PRECONDITION_FAILED: u32 = 22;
    /// A limit of the node is reached: too many connections (the
    /// connection is then closed), or too many subscriptions on this
    /// connection. Nothing was done; the text names the limit and its flag.
    /// (Maelstrom leaves codes from 1000 on to applications.)
    pub const LIMIT_REACHED: u32 = 1000;
    /// The connection did not present the node's token (a wrong or missing
    /// `auth`), or spoke plain text to a node that requires TLS. It is the
    /// connection's one reply: the node then closes it.
    pub const UNAUTHORIZED: u32 = 1001;
}

/// One protocol message: who sent it, to whom, and its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<B> {
    /// The sender's name.
    #[serde(default)]
    pub src: String,
    /// The receiver's name.
    #[serde(default)]
    pub dest: String,
    /// The message itself.
    pub body: B,
}

/// The expected version of an append on the wire: a number, or `"any"`,
/// `"no_stream"`, `"stream_exists"`, or `{"first": F}`: the version the
/// append's first event is to get (F ≥ 1), so a client that numbers its
/// events itself needs no read first. `{"first": F}` is the number F − 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireVersion(pub ExpectedVersion);

impl Serialize for WireVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ExpectedVersion::Exact(n) => s.serialize_u64(n),
            ExpectedVersion::Any => s.serialize_str("any"),
            ExpectedVersion::NoStream => s.serialize_str("no_stream"),
            ExpectedVersion::StreamExists => s.serialize_str("stream_exists"),
        }
    }
}

impl<'de> Deserialize<'de> for WireVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match Value::deserialize(d)? {
            Value::Number(n) => n.as_u64().map(|v| WireVersion(ExpectedVersion::Exact(v))).ok_or_else(|| {
                D::Error::custom(format!("expected a version number (0 or more) or \"any\", got {n}"))
            }),
            Value::String(s) => match s.as_str() {
                "any" => Ok(WireVersion(ExpectedVersion::Any)),
                "no_stream" => Ok(WireVersion(ExpectedVersion::NoStream)),
                "stream_exists" => Ok(WireVersion(ExpectedVersion::StreamExists)),
                _ => Err(D::Error::custom(format!(
                    "expected a version number or \"any\", \"no_stream\", \"stream_exists\", got {s:?}"
                ))),
            },
            Value::Object(m) if m.len() == 1 && m.contains_key("first") => {
                match m.get("first").and_then(Value::as_u64) {
                    Some(first) if first >= 1 => {
                        Ok(WireVersion(ExpectedVersion::Exact(first.saturating_sub(1))))
                    }
                    _ => Err(D::Error::custom(format!(
                        "expected {{\"first\": N}} with N the version of the append's first event, 1 or more (the first event of an aggregate is version 1; add 1 to a count that starts at 0), got {}",
                        Value::Object(m)
                    ))),
                }
            }
            other => Err(D::Error::custom(format!(
                "expected a version number, \"any\", \"no_stream\", \"stream_exists\" or {{\"first\": N}}, got {other}"
            ))),
        }
    }
}

/// A JSON value kept as text: an event's payload on the wire.
///
/// The node stores the payload exactly as the client spelled it (key order,
/// number spelling, escapes) and sends stored payloads back the same way:
/// parsing into a [`Value`] would sort object keys and turn integers beyond
/// 64 bits into floats, and an audit log must not rewrite what it was given.
///
/// Serializing writes the text as it is. Deserializing through serde's
/// derive (a Rust client reading a [`Reply`]) goes through a parsed value,
/// because serde buffers tagged enums: there the text is re-encoded. The
/// node's own parser, [`parse_request`], keeps the exact text.
#[derive(Debug, Clone)]
pub struct RawJson {
    text: Box<RawValue>,
    /// The node's parser found that every reader can parse the text (see
    /// [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH)), so an append need not
    /// check it again.
    readable: bool,
}

impl RawJson {
    /// Checks that `text` is one JSON value and keeps it as it is.
    pub fn parse(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.into()).map(RawJson::from_raw)
    }

    /// The text.
    pub fn get(&self) -> &str {
        self.text.get()
    }

    /// Whether the text was found readable by every reader when it was parsed.
    pub(crate) fn is_readable(&self) -> bool {
        self.readable
    }

    /// The value, parsed.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.get())
    }

    /// The payload of a stored event: JSON as stored, binary as a string of
    /// hex digits.
    pub fn of_event(event: &RecordedEvent) -> crate::Result<Self> {
        event.payload_raw().map(RawJson::from_raw).map_err(|reason| {
            Error::corruption(event.position, format!("stored JSON payload does not parse: {reason}"))
        })
    }

    pub(crate) fn from_raw(text: Box<RawValue>) -> Self {
        RawJson { text, readable: false }
    }

    /// Text that passed the readability check of an append.
    pub(crate) fn from_checked(text: Box<RawValue>) -> Self {
        RawJson { text, readable: true }
    }
}

impl From<Value> for RawJson {
    fn from(value: Value) -> Self {
        // A `Value` always has a JSON text, and that text always parses back.
        let text = value.to_string();
        RawJson::from_raw(RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(RawJson::from)
    }
}

/// Event metadata on the wire: the four known fields and any others, flat.
/// The ids are strings: any id (`"req-7f3a"`, a trace id), a UUID as its text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WireMetadata {
    /// Groups every event of one business transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The event, command or request that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The user on whose behalf the event was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The W3C trace-context `traceparent` of the operation that recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Any other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl From<WireMetadata> for EventMetadata {
    fn from(m: WireMetadata) -> Self {
        let mut meta = EventMetadata::new();
        meta.correlation_id = m.correlation_id;
        meta.causation_id = m.causation_id;
        meta.user_id = m.user_id;
        meta.traceparent = m.traceparent;
        meta.extra = m.extra;
        meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_on_the_wire() {
        for (v, want) in [
            (json!(0), ExpectedVersion::Exact(0)),
            (json!("any"), ExpectedVersion::Any),
            (json!("no_stream"), ExpectedVersion::NoStream),
            (json!("stream_exists"), ExpectedVersion::StreamExists),
        ] {
            let parsed: WireVersion = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(parsed.0, want);
            assert_eq!(serde_json::to_value(parsed).unwrap(), v);
        }
        assert!(serde_json::from_value::<WireVersion>(json!(-1)).is_err());
        assert!(serde_json::from_value::<WireVersion>(json!("latest")).is_err());
        let first: WireVersion = serde_json::from_value(json!({"first": 4})).unwrap();
        assert_eq!(first.0, ExpectedVersion::Exact(3));
        assert_eq!(
            serde_json::from_value::<WireVersion>(json!({"first": 1})).unwrap().0,
            ExpectedVersion::Exact(0)
        );
        for bad in
            [json!({"first": 0}), json!({"first": -1}), json!({"first": 2, "x": 1}), json!({"last": 2})]
        {
            assert!(serde_json::from_value::<WireVersion>(bad.clone()).is_err(), "{bad}");
        }
    }
}
