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
use uuid::Uuid;

pub use super::parse::parse_request;
use crate::store::StoreStats;
use crate::vocab::Error;
use crate::vocab::{ContentType, EventMetadata, ExpectedVersion, RecordedEvent};

/// Longest request line the node reads, in bytes (1 MiB), not counting the
/// newline. A longer line is skipped without being held in memory and
/// answered with error code [`codes::MALFORMED_REQUEST`].
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

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
/// `"no_stream"`, `"stream_exists"`.
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
            other => Err(D::Error::custom(format!("expected a version number or \"any\", got {other}"))),
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

/// `init`: names this node and its peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// This node's name.
    pub node_id: String,
    /// Every node's name, this one included.
    #[serde(default)]
    pub node_ids: Vec<String>,
}

/// One event of an `append` or `append_batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireNewEvent {
    /// The event type.
    pub event_type: String,
    /// The payload, any JSON value, kept as sent.
    pub event_data: RawJson,
    /// The event id (default: a new UUID v7). Resending with the same id is idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// Correlation, causation, user and other fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<WireMetadata>,
    /// The payload's schema version (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
}

/// `append`: one event to one aggregate, at an expected version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The stream to append to.
    pub aggregate_id: String,
    /// The version the client believes the aggregate is at.
    pub version: WireVersion,
    /// The event.
    #[serde(flatten)]
    pub event: WireNewEvent,
}

/// `append_batch`: several events to one aggregate, all or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendBatchRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The stream to append to.
    pub aggregate_id: String,
    /// The version the client believes the aggregate is at.
    pub version: WireVersion,
    /// The events, in order.
    pub events: Vec<WireNewEvent>,
}

/// `read_stream`: events of one aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadStreamRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The stream to read.
    pub aggregate_id: String,
    /// First version to return (inclusive; default: the first, or the last when backwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<u64>,
    /// Most events to return (default [`DEFAULT_READ_LIMIT`], at most [`MAX_READ_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Newest first.
    #[serde(default)]
    pub backwards: bool,
}

/// `read_all`: the global log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadAllRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// First sequence number to return (inclusive, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_sequence: Option<u64>,
    /// Most events to return (default [`DEFAULT_READ_LIMIT`], at most [`MAX_READ_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Keep only these event types (any of; empty keeps all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Keep only aggregates of this category (the part of the id before the first `-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// A request that names one aggregate and nothing else
/// (`create_snapshot`, `get_snapshot`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The aggregate.
    pub aggregate_id: String,
}

/// `get_state`: the JSON-merge state of an aggregate, now or as of a version or time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetStateRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The aggregate.
    pub aggregate_id: String,
    /// Fold events up to this version (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of_version: Option<u64>,
    /// Fold events recorded up to this time (microseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of_time: Option<u64>,
}

/// `subscribe`: push matching events from a sequence number on, then live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// First sequence number to push (inclusive; default: only new events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_sequence: Option<u64>,
    /// Keep only these event types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Keep only aggregates of this category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Keep only this aggregate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<String>,
}

/// `unsubscribe`: stop a subscription of this connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsubscribeRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The id from the `subscribed` reply.
    pub subscription_id: u64,
}

/// A request with no fields but its id (`stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmptyRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
}

/// Events a read returns in one reply when no `limit` is given.
pub const DEFAULT_READ_LIMIT: usize = 1000;

/// Most events a read returns in one reply, whatever `limit` says, so one
/// request cannot make the node build a reply of the whole log: page with
/// `from_sequence` / `from_version`.
pub const MAX_READ_LIMIT: usize = 10_000;

/// Every request body, tagged by `type`.
///
/// The protocol may gain message types: a `match` outside eventfold needs a
/// wildcard arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// Names the node; answered by `init_ok`.
    Init(InitRequest),
    /// Appends one event; answered by `appended` or `concurrency_error`.
    Append(AppendRequest),
    /// Appends several events to one aggregate; answered by `appended_batch`.
    AppendBatch(AppendBatchRequest),
    /// Reads one aggregate; answered by `stream_events`.
    ReadStream(ReadStreamRequest),
    /// Reads the global log; answered by `all_events`.
    ReadAll(ReadAllRequest),
    /// Store counters; answered by `stats_ok`.
    Stats(EmptyRequest),
    /// Saves a snapshot of the aggregate's state; answered by `snapshot_created`.
    CreateSnapshot(AggregateRequest),
    /// The latest snapshot; answered by `snapshot`.
    GetSnapshot(AggregateRequest),
    /// The aggregate's state; answered by `state`.
    GetState(GetStateRequest),
    /// Starts pushing events; answered by `subscribed`, then `event` messages.
    Subscribe(SubscribeRequest),
    /// Stops a subscription; answered by `unsubscribed`.
    Unsubscribe(UnsubscribeRequest),
}

impl Request {
    /// The request's `msg_id`, if it has one.
    pub fn msg_id(&self) -> Option<u64> {
        match self {
            Request::Init(r) => r.msg_id,
            Request::Append(r) => r.msg_id,
            Request::AppendBatch(r) => r.msg_id,
            Request::ReadStream(r) => r.msg_id,
            Request::ReadAll(r) => r.msg_id,
            Request::Stats(r) => r.msg_id,
            Request::CreateSnapshot(r) | Request::GetSnapshot(r) => r.msg_id,
            Request::GetState(r) => r.msg_id,
            Request::Subscribe(r) => r.msg_id,
            Request::Unsubscribe(r) => r.msg_id,
        }
    }

    /// The wire name of the request's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Request::Init(_) => "init",
            Request::Append(_) => "append",
            Request::AppendBatch(_) => "append_batch",
            Request::ReadStream(_) => "read_stream",
            Request::ReadAll(_) => "read_all",
            Request::Stats(_) => "stats",
            Request::CreateSnapshot(_) => "create_snapshot",
            Request::GetSnapshot(_) => "get_snapshot",
            Request::GetState(_) => "get_state",
            Request::Subscribe(_) => "subscribe",
            Request::Unsubscribe(_) => "unsubscribe",
        }
    }
}

/// An event in a reply (`stream_events`, `all_events`, pushed `event`).
/// The node builds it ([`WireEvent::from_recorded`]); more fields may be
/// added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WireEvent {
    /// The event id.
    pub event_id: Uuid,
    /// The aggregate (only in `all_events` and pushed events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<String>,
    /// The event type.
    pub event_type: String,
    /// The payload as stored; a binary payload is a string of hex digits.
    pub event_data: RawJson,
    /// The event's version in its aggregate.
    pub version: u64,
    /// The event's global position.
    pub sequence_number: u64,
    /// When it was recorded, in microseconds since the Unix epoch.
    pub recorded_at: u64,
    /// The payload's schema version.
    pub schema_version: u32,
    /// Correlation, causation, user and other fields (`{}` when none).
    pub metadata: WireMetadata,
    /// `"binary"` for a binary payload; absent for JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<ContentType>,
}

impl WireEvent {
    /// The wire form of a stored event; `with_aggregate` adds `aggregate_id`.
    pub fn from_recorded(e: RecordedEvent, with_aggregate: bool) -> crate::Result<Self> {
        let event_data = RawJson::of_event(&e)?;
        Ok(WireEvent {
            event_id: e.event_id,
            aggregate_id: with_aggregate.then_some(e.stream_id),
            event_type: e.event_type,
            event_data,
            version: e.version,
            sequence_number: e.position,
            recorded_at: e.recorded_at,
            schema_version: e.schema_version,
            metadata: WireMetadata {
                correlation_id: e.correlation_id,
                causation_id: e.causation_id,
                user_id: e.user_id,
                traceparent: e.traceparent,
                extra: e.metadata,
            },
            content_type: (e.content_type == ContentType::Binary).then_some(ContentType::Binary),
        })
    }
}

/// Every reply body, tagged by `type`.
///
/// The protocol may gain message types: a `match` outside eventfold needs a
/// wildcard arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reply {
    /// The answer to `init`.
    InitOk {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// This node's name.
        node_id: String,
        /// The other nodes' names.
        peers: Vec<String>,
    },
    /// The answer to a successful `append`.
    Appended {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The stored event's id.
        event_id: Uuid,
        /// Its global position.
        sequence_number: u64,
        /// The aggregate's version after the append.
        version: u64,
        /// True when the event was already stored (a retry) and nothing was written.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        already_stored: bool,
    },
    /// The answer to a successful `append_batch`.
    AppendedBatch {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The stored events' ids, in order.
        event_ids: Vec<Uuid>,
        /// Global position of the first event.
        first_sequence_number: u64,
        /// Global position of the last event.
        last_sequence_number: u64,
        /// The aggregate's version after the append.
        version: u64,
        /// True when the events were already stored (a retry) and nothing was written.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        already_stored: bool,
    },
    /// The answer to `read_stream`.
    StreamEvents {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The aggregate read.
        aggregate_id: String,
        /// The aggregate's current version (0 when it has no events).
        version: u64,
        /// The events.
        events: Vec<WireEvent>,
    },
    /// The answer to `read_all`.
    AllEvents {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The events, each with its `aggregate_id`.
        events: Vec<WireEvent>,
        /// The last sequence number in the store.
        head: u64,
    },
    /// The answer to `stats`.
    StatsOk {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The store's counters.
        #[serde(flatten)]
        stats: StoreStats,
    },
    /// An append's expected version did not match; nothing was written.
    ConcurrencyError {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// `Expected version E, got A`.
        error: String,
        /// The aggregate's actual version, to retry from.
        current_version: u64,
    },
    /// The answer to `create_snapshot`.
    SnapshotCreated {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The aggregate.
        aggregate_id: String,
        /// The version the snapshot was taken at.
        version: u64,
    },
    /// The answer to `get_snapshot`.
    Snapshot {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The aggregate.
        aggregate_id: String,
        /// The version the snapshot was taken at.
        version: u64,
        /// The saved state (see [`Reply::State`]).
        state: RawJson,
    },
    /// The answer to `get_state`.
    State {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The aggregate.
        aggregate_id: String,
        /// The version the state is as of.
        version: u64,
        /// The JSON-merge fold of the events: an object whose field values
        /// are spelled as in the payloads that set them.
        state: RawJson,
    },
    /// The answer to `subscribe`.
    Subscribed {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// Names the subscription in pushed events and `unsubscribe`.
        subscription_id: u64,
    },
    /// An event pushed to a subscriber.
    Event {
        /// The subscription it belongs to.
        subscription_id: u64,
        /// The event, with its `aggregate_id`.
        event: WireEvent,
    },
    /// The answer to `unsubscribe`.
    Unsubscribed {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The stopped subscription.
        subscription_id: u64,
    },
    /// The request failed; see [`codes`].
    Error {
        /// The request's `msg_id`, when it could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The error code.
        code: u32,
        /// What went wrong.
        text: String,
    },
}

impl Reply {
    /// An `error` reply.
    pub fn error(in_reply_to: Option<u64>, code: u32, text: impl Into<String>) -> Self {
        Reply::Error { in_reply_to, code, text: text.into() }
    }
}

/// A request line the node could not accept, with what it could read of it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RejectedRequest {
    /// The request's `src`, if readable.
    pub src: Option<String>,
    /// The request's `dest`, if readable.
    pub dest: Option<String>,
    /// The request's `msg_id`, when it could be read.
    pub in_reply_to: Option<u64>,
    /// The error code (see [`codes`]).
    pub code: u32,
    /// What is wrong with the line.
    pub text: String,
}

impl RejectedRequest {
    /// The `error` reply to send.
    pub fn reply(&self) -> Reply {
        Reply::error(self.in_reply_to, self.code, self.text.clone())
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
    }
}
