//! The reply messages: [`Reply`], the body of every reply and pushed event,
//! the events they carry, and what the node answers to a line it cannot
//! accept.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RawJson, WireMetadata};
use crate::store::StoreStats;
use crate::vocab::{ContentType, RecordedEvent};

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
    /// The event's tags; absent when it has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
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
            tags: e.tags,
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
    /// The answer to `delete_stream`.
    StreamDeleted {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The stream deleted.
        aggregate_id: String,
        /// Deleted for good.
        hard: bool,
        /// Where the event that records the deletion is.
        sequence_number: u64,
    },
    /// The answer to `scavenge`: what it removed.
    Scavenged {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// Streams with events removed.
        streams: u64,
        /// Events removed.
        events_removed: u64,
        /// Steps committed.
        steps: u64,
    },
    /// The answer to `set_stream_retention` and `get_stream_lifecycle`.
    StreamLifecycle {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The stream.
        aggregate_id: String,
        /// Soft-deleted and not appended to since.
        deleted: bool,
        /// Deleted for good.
        tombstoned: bool,
        /// The first version served by truncation.
        truncate_before: u64,
        /// Only the newest this many events are served.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_count: Option<u64>,
        /// Only events younger than this many seconds are served.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_age_seconds: Option<u64>,
        /// Where the event that records the change is (`set_stream_retention`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence_number: Option<u64>,
    },
    /// The answer to `read_query`.
    QueryEvents {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The matching events, each with its `aggregate_id`.
        events: Vec<WireEvent>,
        /// The sequence number to put in the `after` of the condition of
        /// an append decided on these events.
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
        /// The aggregate whose version did not match (in replies to
        /// requests that name several).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aggregate_id: Option<String>,
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
    /// The answer to `append_many`.
    AppendedMany {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// One result per aggregate, in the request's order.
        streams: Vec<WireAppended>,
        /// The consumer's checkpoint after the commit, when one was set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkpoint: Option<u64>,
    },
    /// The answer to `get_checkpoint`.
    Checkpoint {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The consumer.
        consumer: String,
        /// Its committed checkpoint: the last sequence number it has
        /// processed (0 when it has none).
        position: u64,
    },
    /// The answer to `ack`.
    Acked {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The consumer.
        consumer: String,
        /// Its committed checkpoint now (never lower than before).
        checkpoint: u64,
    },
    /// The answer to `list_streams`.
    Streams {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The aggregates, in id order.
        streams: Vec<WireStream>,
    },
    /// The answer to `get_event`.
    EventFound {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The event, with its `aggregate_id`.
        event: WireEvent,
    },
    /// The answer to a good `auth`.
    AuthOk {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
    },
    /// The answer to `unsubscribe`.
    Unsubscribed {
        /// The request's `msg_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<u64>,
        /// The stopped subscription.
        subscription_id: u64,
    },
    /// The request failed; see [`codes`](super::codes).
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

/// One aggregate's result in `appended_many`: the fields of `appended_batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WireAppended {
    /// The aggregate.
    pub aggregate_id: String,
    /// The stored events' ids, in order.
    pub event_ids: Vec<Uuid>,
    /// Global position of the first event.
    pub first_sequence_number: u64,
    /// Global position of the last event.
    pub last_sequence_number: u64,
    /// The aggregate's version after the append.
    pub version: u64,
    /// True when the events were already stored (a retry) and nothing was written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_stored: bool,
}

impl From<crate::vocab::AppendResult> for WireAppended {
    fn from(r: crate::vocab::AppendResult) -> Self {
        WireAppended {
            aggregate_id: r.stream_id,
            event_ids: r.event_ids,
            first_sequence_number: r.first_position,
            last_sequence_number: r.last_position,
            version: r.stream_version,
            already_stored: r.already_stored,
        }
    }
}

/// One aggregate in `streams`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WireStream {
    /// The aggregate.
    pub aggregate_id: String,
    /// Its version (number of events).
    pub version: u64,
    /// Sequence number of its last event.
    pub last_sequence_number: u64,
    /// When its first event was recorded (µs since the Unix epoch).
    pub created_at: u64,
    /// When its last event was recorded (µs since the Unix epoch).
    pub updated_at: u64,
}

impl From<crate::read::StreamInfo> for WireStream {
    fn from(i: crate::read::StreamInfo) -> Self {
        WireStream {
            aggregate_id: i.stream_id,
            version: i.version,
            last_sequence_number: i.last_position,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
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
    /// The error code (see [`codes`](super::codes)).
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
