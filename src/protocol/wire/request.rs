//! The request messages, one struct per message type, and [`Request`], the
//! body of every request.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RawJson, WireMetadata, WireVersion};
use crate::vocab::{AppendCondition, Query};

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
    /// The event's tags (see `docs/indexes.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
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
    /// Also require the aggregate's version to be below this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_below: Option<u64>,
    /// A DCB condition: refuse the append when an event matching its
    /// query was written after its position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<AppendCondition>,
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
    /// Also require the aggregate's version to be below this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_below: Option<u64>,
    /// The events, in order.
    pub events: Vec<WireNewEvent>,
    /// A DCB condition (see `append`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<AppendCondition>,
}

/// One aggregate's part of an `append_many`: the fields of `append_batch`
/// but `msg_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireStreamAppend {
    /// The stream to append to.
    pub aggregate_id: String,
    /// The version the client believes the aggregate is at.
    pub version: WireVersion,
    /// Also require the aggregate's version to be below this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_below: Option<u64>,
    /// The events, in order.
    pub events: Vec<WireNewEvent>,
}

/// A durable consumer's checkpoint to set in an `append_many`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireCheckpoint {
    /// The consumer's name.
    pub consumer: String,
    /// The last sequence number it has processed.
    pub position: u64,
}

/// `append_many`: events to several aggregates, each at its own expected
/// version, and optionally a consumer checkpoint, all in one commit or
/// nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendManyRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The aggregates, each at most once.
    pub streams: Vec<WireStreamAppend>,
    /// Moves this consumer's checkpoint forward in the same commit; a
    /// checkpoint that would not advance refuses the whole request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<WireCheckpoint>,
    /// A DCB condition over the whole request (see `append`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<AppendCondition>,
}

/// A request that names a durable consumer (`get_checkpoint`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The consumer's name.
    pub consumer: String,
}

/// `ack`: a durable consumer has processed everything up to a sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The consumer's name.
    pub consumer: String,
    /// The last sequence number processed.
    pub sequence_number: u64,
}

/// `list_streams`: the aggregates, in id order, a page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListStreamsRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// Keep only ids that start with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Start after this id (exclusive): the last id of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Most aggregates to return (default [`DEFAULT_READ_LIMIT`], at most [`MAX_READ_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `get_event`: one event, by its id or by its sequence number (exactly one of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetEventRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The event's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// The event's sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
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
    /// Last sequence number to return (inclusive, default the head);
    /// `to_position` is the same field.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "to_position")]
    pub to_sequence: Option<u64>,
    /// Newest first: the last `limit` events of the range, from its top down.
    #[serde(default)]
    pub backwards: bool,
    /// Keep only events that carry one of these tags (empty keeps all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `delete_stream`: stop serving a stream, soft or for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteStreamRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The stream to delete.
    pub aggregate_id: String,
    /// Why, recorded in the event that records the deletion.
    pub reason: String,
    /// For good (a tombstone).
    #[serde(default)]
    pub hard: bool,
    /// Who asked and the request's ids, for the recording event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<WireMetadata>,
}

/// `set_stream_retention`: limits on what of a stream is served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetStreamRetentionRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The stream to limit.
    pub aggregate_id: String,
    /// Why, recorded in the event that records the change.
    pub reason: String,
    /// Stop serving the versions below this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_before: Option<u64>,
    /// Serve only the newest this many events (0 lifts the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    /// Serve only events younger than this many seconds (0 lifts the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    /// Who asked and the request's ids, for the recording event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<WireMetadata>,
}

/// `read_query`: a DCB read, the events that match a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadQueryRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The query: `{"items": [{"types": [...], "tags": [...]}]}`.
    pub query: Query,
    /// First sequence number forwards, or last one backwards (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_sequence: Option<u64>,
    /// Most events to return (default [`DEFAULT_READ_LIMIT`], at most [`MAX_READ_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Newest first.
    #[serde(default)]
    pub backwards: bool,
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
    /// Subscribe as this durable consumer: from just after its checkpoint
    /// (so not with `from_sequence`); move the checkpoint with `ack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// Keep only events that carry one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `auth`: the connection's first message when the node requires a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// Request id, echoed as `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The shared secret.
    pub token: String,
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
    /// Appends to several aggregates (and sets a checkpoint) atomically;
    /// answered by `appended_many`.
    AppendMany(AppendManyRequest),
    /// A durable consumer's checkpoint; answered by `checkpoint`.
    GetCheckpoint(ConsumerRequest),
    /// Moves a durable consumer's checkpoint forward; answered by `acked`.
    Ack(AckRequest),
    /// Lists aggregates; answered by `streams`.
    ListStreams(ListStreamsRequest),
    /// One event by id or sequence number; answered by `event_found`.
    GetEvent(GetEventRequest),
    /// Presents the token; answered by `auth_ok`.
    Auth(AuthRequest),
    /// A DCB read; answered by `query_events`.
    ReadQuery(ReadQueryRequest),
    /// Deletes a stream; answered by `stream_deleted`.
    DeleteStream(DeleteStreamRequest),
    /// Limits what of a stream is served; answered by `stream_lifecycle`.
    SetStreamRetention(SetStreamRetentionRequest),
    /// A stream's lifecycle and retention; answered by `stream_lifecycle`.
    GetStreamLifecycle(AggregateRequest),
    /// Removes what is no longer served; answered by `scavenged`.
    Scavenge(EmptyRequest),
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
            Request::AppendMany(r) => r.msg_id,
            Request::GetCheckpoint(r) => r.msg_id,
            Request::Ack(r) => r.msg_id,
            Request::ListStreams(r) => r.msg_id,
            Request::GetEvent(r) => r.msg_id,
            Request::Auth(r) => r.msg_id,
            Request::ReadQuery(r) => r.msg_id,
            Request::DeleteStream(r) => r.msg_id,
            Request::SetStreamRetention(r) => r.msg_id,
            Request::GetStreamLifecycle(r) => r.msg_id,
            Request::Scavenge(r) => r.msg_id,
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
            Request::AppendMany(_) => "append_many",
            Request::GetCheckpoint(_) => "get_checkpoint",
            Request::Ack(_) => "ack",
            Request::ListStreams(_) => "list_streams",
            Request::GetEvent(_) => "get_event",
            Request::Auth(_) => "auth",
            Request::ReadQuery(_) => "read_query",
            Request::DeleteStream(_) => "delete_stream",
            Request::SetStreamRetention(_) => "set_stream_retention",
            Request::GetStreamLifecycle(_) => "get_stream_lifecycle",
            Request::Scavenge(_) => "scavenge",
        }
    }
}
