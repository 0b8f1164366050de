//! The node's parser for request lines: field by field, so that an error
//! names the field, and with each field kept as the text the client sent, so
//! that an event's payload is stored exactly as it was spelled.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;
use serde_json::value::RawValue;

use super::wire::{
    AckRequest, AggregateRequest, AppendBatchRequest, AppendManyRequest, AppendRequest, AuthRequest,
    ConsumerRequest, DeleteStreamRequest, EmptyRequest, Envelope, GetEventRequest, GetStateRequest,
    InitRequest, ListStreamsRequest, RawJson, ReadAllRequest, ReadQueryRequest, ReadStreamRequest,
    RejectedRequest, Request, SetStreamRetentionRequest, SubscribeRequest, UnsubscribeRequest, WireNewEvent,
    WireStreamAppend, WireVersion, codes,
};
use crate::vocab::ExpectedVersion;

/// A JSON object's fields, each as its exact text.
type RawObject = BTreeMap<String, Box<RawValue>>;

/// A field's text as a JSON object, `None` when it is something else, or
/// why an object's keys do not parse (an escape of half a surrogate pair).
fn object(raw: &RawValue) -> Result<Option<RawObject>, serde_json::Error> {
    if raw.get().starts_with('{') { serde_json::from_str(raw.get()).map(Some) } else { Ok(None) }
}

/// Parses one request line. A line that is not a well-formed request comes
/// back as the `error` reply to send, with the `msg_id`, `src` and `dest`
/// when they could be read.
pub fn parse_request(line: &[u8]) -> Result<Envelope<Request>, RejectedRequest> {
    let malformed = |text: String| RejectedRequest {
        src: None,
        dest: None,
        in_reply_to: None,
        code: codes::MALFORMED_REQUEST,
        text: format!("malformed request: {text}"),
    };
    let mut message: RawObject = match serde_json::from_slice(line) {
        Ok(m) => m,
        Err(e) => {
            // Well-formed JSON that is not an object gets its own message.
            return Err(match serde_json::from_slice::<IgnoredAny>(line) {
                Ok(_) => malformed("a message must be a JSON object".into()),
                Err(_) => malformed(e.to_string()),
            });
        }
    };
    // An ill-typed `src` or `dest` is reported once the `msg_id` is known.
    let envelope = Fields(&message);
    let (src, src_problem) = name_field(&envelope, "src");
    let (dest, dest_problem) = name_field(&envelope, "dest");
    let reject = |in_reply_to: Option<u64>, code: u32, text: String| RejectedRequest {
        src: src.clone(),
        dest: dest.clone(),
        in_reply_to,
        code,
        text,
    };
    let body = match message.remove("body") {
        Some(raw) => match object(&raw) {
            Ok(Some(body)) => body,
            Err(e) => {
                return Err(reject(
                    None,
                    codes::MALFORMED_REQUEST,
                    format!("malformed request: {}", unreadable("body", &e)),
                ));
            }
            Ok(None) => {
                return Err(reject(
                    None,
                    codes::MALFORMED_REQUEST,
                    "malformed request: field `body` must be an object".into(),
                ));
            }
        },
        None => {
            return Err(reject(
                None,
                codes::MALFORMED_REQUEST,
                "malformed request: missing field `body`".into(),
            ));
        }
    };
    let f = Fields(&body);
    let msg_id = match f.value("msg_id") {
        Ok(None | Some(Value::Null)) => None,
        Ok(Some(v)) => match v.as_u64() {
            Some(id) => Some(id),
            None => {
                return Err(reject(
                    None,
                    codes::MALFORMED_REQUEST,
                    format!("malformed request: field `msg_id` must be a non-negative integer, got {v}"),
                ));
            }
        },
        Err(text) => {
            return Err(reject(None, codes::MALFORMED_REQUEST, format!("malformed request: {text}")));
        }
    };
    if let Some(text) = src_problem.or(dest_problem) {
        return Err(reject(msg_id, codes::MALFORMED_REQUEST, format!("malformed request: {text}")));
    }
    let kind = match f.value("type") {
        Ok(Some(Value::String(t))) => t,
        Err(text) => {
            return Err(reject(msg_id, codes::MALFORMED_REQUEST, format!("malformed request: {text}")));
        }
        Ok(Some(v)) => {
            return Err(reject(
                msg_id,
                codes::MALFORMED_REQUEST,
                format!("malformed request: field `type` must be a string, got {v}"),
            ));
        }
        Ok(None) => {
            return Err(reject(
                msg_id,
                codes::MALFORMED_REQUEST,
                "malformed request: missing field `type`".into(),
            ));
        }
    };
    let request = match kind.as_str() {
        "init" => f.init(msg_id),
        "append" => f.append(msg_id),
        "append_batch" => f.append_batch(msg_id),
        "read_stream" => f.read_stream(msg_id),
        "read_all" => f.read_all(msg_id),
        "stats" => Ok(Request::Stats(EmptyRequest { msg_id })),
        "create_snapshot" => f.aggregate(msg_id).map(Request::CreateSnapshot),
        "get_snapshot" => f.aggregate(msg_id).map(Request::GetSnapshot),
        "get_state" => f.get_state(msg_id),
        "subscribe" => f.subscribe(msg_id),
        "unsubscribe" => f.unsubscribe(msg_id),
        "append_many" => f.append_many(msg_id),
        "get_checkpoint" => {
            f.req("consumer").map(|consumer| Request::GetCheckpoint(ConsumerRequest { msg_id, consumer }))
        }
        "ack" => f.ack(msg_id),
        "list_streams" => f.list_streams(msg_id),
        "get_event" => f.get_event(msg_id),
        "read_query" => f.read_query(msg_id),
        "delete_stream" => f.delete_stream(msg_id),
        "set_stream_retention" => f.set_stream_retention(msg_id),
        "get_stream_lifecycle" => f.aggregate(msg_id).map(Request::GetStreamLifecycle),
        "scavenge" => Ok(Request::Scavenge(EmptyRequest { msg_id })),
        "auth" => f.req("token").map(|token| Request::Auth(AuthRequest { msg_id, token })),
        other => {
            return Err(reject(
                msg_id,
                codes::NOT_SUPPORTED,
                format!("not supported: unknown message type {other:?}"),
            ));
        }
    };
    match request {
        Ok(body) => Ok(Envelope { src: src.unwrap_or_default(), dest: dest.unwrap_or_default(), body }),
        Err(text) => Err(reject(msg_id, codes::MALFORMED_REQUEST, format!("malformed request: {text}"))),
    }
}

/// The envelope's `src` or `dest`: the name when it is a string, and what is
/// wrong with it when it is something else (`null` is as good as absent).
fn name_field(envelope: &Fields<'_>, name: &str) -> (Option<String>, Option<String>) {
    match envelope.value(name) {
        Ok(None | Some(Value::Null)) => (None, None),
        Ok(Some(Value::String(s))) => (Some(s), None),
        Ok(Some(v)) => (None, Some(format!("field `{name}` must be a string, got {v}"))),
        Err(text) => (None, Some(text)),
    }
}

/// Why a field's text (well-formed: it was read as part of the line) does
/// not parse into a value: a number beyond a 64-bit float, nesting deeper
/// than [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH), an escape of half a
/// surrogate pair.
fn unreadable(name: &str, e: &serde_json::Error) -> String {
    let at = if e.line() <= 1 {
        format!("at column {} of the field", e.column())
    } else {
        format!("at line {} column {} of the field", e.line(), e.column())
    };
    format!("field `{name}`: {}", crate::vocab::json_limits::explain_at(e, format_args!("{at}")))
}

/// Reads fields of a request body one by one, naming the field on failure.
struct Fields<'a>(&'a RawObject);

impl Fields<'_> {
    /// A field parsed into a `Value`. The text was checked when the line was
    /// read, so this fails only for what a `Value` cannot hold (see
    /// [`unreadable`]); that is an error naming the field, never a silent
    /// `null`.
    fn value(&self, name: &str) -> Result<Option<Value>, String> {
        match self.0.get(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw.get()).map(Some).map_err(|e| unreadable(name, &e)),
        }
    }

    fn opt<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, String> {
        // Through a `Value`, so that errors say what was wrong without a
        // line and column inside the field.
        match self.value(name)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| format!("field `{name}`: {e}")),
        }
    }

    fn req<T: DeserializeOwned>(&self, name: &str) -> Result<T, String> {
        self.opt(name)?.ok_or_else(|| format!("missing field `{name}`"))
    }

    fn new_event(&self) -> Result<WireNewEvent, String> {
        Ok(WireNewEvent {
            event_type: self.req("event_type")?,
            event_data: match self.0.get("event_data") {
                // Kept as sent, once it is known every reader can parse it.
                Some(raw) => match crate::vocab::json_limits::readable(raw.get().as_bytes()) {
                    Ok(()) => RawJson::from_checked(raw.clone()),
                    Err(e) => return Err(unreadable("event_data", &e)),
                },
                None => return Err("missing field `event_data`".into()),
            },
            event_id: self.opt("event_id")?,
            metadata: {
                // Stored, so held to the same limits as a payload.
                if let Some(raw) = self.0.get("metadata") {
                    crate::vocab::json_limits::readable(raw.get().as_bytes())
                        .map_err(|e| unreadable("metadata", &e))?;
                }
                self.opt("metadata")?
            },
            schema_version: self.opt("schema_version")?,
            tags: self.opt("tags")?.unwrap_or_default(),
        })
    }

    fn init(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::Init(InitRequest {
            msg_id,
            node_id: self.req("node_id")?,
            node_ids: self.opt("node_ids")?.unwrap_or_default(),
        }))
    }

    /// `version` and `version_below`; with `version_below` alone the
    /// version is `"any"`.
    fn expected(&self) -> Result<(WireVersion, Option<u64>), String> {
        let below = self.opt("version_below")?;
        let version = match (self.opt("version")?, below) {
            (Some(v), _) => v,
            (None, Some(_)) => WireVersion(ExpectedVersion::Any),
            (None, None) => return Err("missing field `version`".into()),
        };
        Ok((version, below))
    }

    fn append(&self, msg_id: Option<u64>) -> Result<Request, String> {
        let aggregate_id = self.req("aggregate_id")?;
        let (version, version_below) = self.expected()?;
        Ok(Request::Append(AppendRequest {
            msg_id,
            aggregate_id,
            version,
            version_below,
            condition: self.opt("condition")?,
            event: self.new_event()?,
        }))
    }

    fn append_batch(&self, msg_id: Option<u64>) -> Result<Request, String> {
        let aggregate_id = self.req("aggregate_id")?;
        let (version, version_below) = self.expected()?;
        let events = self.events()?;
        Ok(Request::AppendBatch(AppendBatchRequest {
            msg_id,
            aggregate_id,
            version,
            version_below,
            events,
            condition: self.opt("condition")?,
        }))
    }

    fn append_many(&self, msg_id: Option<u64>) -> Result<Request, String> {
        let raw: Vec<Box<RawValue>> = match self.0.get("streams") {
            None => return Err("missing field `streams`".into()),
            Some(raw) => serde_json::from_str(raw.get())
                .map_err(|_| "field `streams` must be an array of objects".to_string())?,
        };
        let mut streams = Vec::with_capacity(raw.len());
        for (i, v) in raw.iter().enumerate() {
            let m = match object(v) {
                Ok(Some(m)) => m,
                Ok(None) => return Err(format!("field `streams[{i}]` must be an object")),
                Err(e) => return Err(unreadable(&format!("streams[{i}]"), &e)),
            };
            let f = Fields(&m);
            let stream = (|| {
                let aggregate_id = f.req("aggregate_id")?;
                let (version, version_below) = f.expected()?;
                Ok::<_, String>(WireStreamAppend {
                    aggregate_id,
                    version,
                    version_below,
                    events: f.events()?,
                })
            })();
            streams.push(stream.map_err(|e| format!("in `streams[{i}]`: {e}"))?);
        }
        Ok(Request::AppendMany(AppendManyRequest {
            msg_id,
            streams,
            checkpoint: self.opt("checkpoint")?,
            condition: self.opt("condition")?,
        }))
    }

    fn ack(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::Ack(AckRequest {
            msg_id,
            consumer: self.req("consumer")?,
            sequence_number: self.req("sequence_number")?,
        }))
    }

    fn list_streams(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::ListStreams(ListStreamsRequest {
            msg_id,
            prefix: self.opt("prefix")?,
            after: self.opt("after")?,
            limit: self.opt("limit")?,
        }))
    }

    fn get_event(&self, msg_id: Option<u64>) -> Result<Request, String> {
        let r = GetEventRequest {
            msg_id,
            event_id: self.opt("event_id")?,
            sequence_number: self.opt("sequence_number")?,
        };
        if r.event_id.is_some() == r.sequence_number.is_some() {
            return Err("give exactly one of `event_id` and `sequence_number`".into());
        }
        Ok(Request::GetEvent(r))
    }

    /// The `events` array of an append, each event parsed field by field.
    fn events(&self) -> Result<Vec<WireNewEvent>, String> {
        let raw: Vec<Box<RawValue>> = match self.0.get("events") {
            None => return Err("missing field `events`".into()),
            Some(raw) => serde_json::from_str(raw.get())
                .map_err(|_| "field `events` must be an array of event objects".to_string())?,
        };
        let mut events = Vec::with_capacity(raw.len());
        for (i, v) in raw.iter().enumerate() {
            let m = match object(v) {
                Ok(Some(m)) => m,
                Ok(None) => return Err(format!("field `events[{i}]` must be an object")),
                Err(e) => return Err(unreadable(&format!("events[{i}]"), &e)),
            };
            events.push(Fields(&m).new_event().map_err(|e| format!("in `events[{i}]`: {e}"))?);
        }
        Ok(events)
    }

    fn read_stream(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::ReadStream(ReadStreamRequest {
            msg_id,
            aggregate_id: self.req("aggregate_id")?,
            from_version: self.opt("from_version")?,
            limit: self.opt("limit")?,
            backwards: self.opt("backwards")?.unwrap_or(false),
        }))
    }

    fn read_all(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::ReadAll(ReadAllRequest {
            msg_id,
            from_sequence: self.opt("from_sequence")?,
            limit: self.opt("limit")?,
            event_types: self.opt("event_types")?.unwrap_or_default(),
            category: self.opt("category")?,
            to_sequence: match (self.opt::<u64>("to_sequence")?, self.opt::<u64>("to_position")?) {
                (Some(a), Some(b)) if a != b => {
                    return Err(format!(
                        "`to_sequence` ({a}) and `to_position` ({b}) are the same field: give one"
                    ));
                }
                (a, b) => a.or(b),
            },
            backwards: self.opt("backwards")?.unwrap_or(false),
            tags: self.opt("tags")?.unwrap_or_default(),
        }))
    }

    fn read_query(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::ReadQuery(ReadQueryRequest {
            msg_id,
            query: self.opt("query")?.unwrap_or_default(),
            from_sequence: self.opt("from_sequence")?,
            limit: self.opt("limit")?,
            backwards: self.opt("backwards")?.unwrap_or(false),
        }))
    }

    fn delete_stream(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::DeleteStream(DeleteStreamRequest {
            msg_id,
            aggregate_id: self.req("aggregate_id")?,
            reason: self.req("reason")?,
            hard: self.opt("hard")?.unwrap_or(false),
            metadata: self.opt("metadata")?,
        }))
    }

    fn set_stream_retention(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::SetStreamRetention(SetStreamRetentionRequest {
            msg_id,
            aggregate_id: self.req("aggregate_id")?,
            reason: self.req("reason")?,
            truncate_before: self.opt("truncate_before")?,
            max_count: self.opt("max_count")?,
            max_age_seconds: self.opt("max_age_seconds")?,
            metadata: self.opt("metadata")?,
        }))
    }

    fn aggregate(&self, msg_id: Option<u64>) -> Result<AggregateRequest, String> {
        Ok(AggregateRequest { msg_id, aggregate_id: self.req("aggregate_id")? })
    }

    fn get_state(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::GetState(GetStateRequest {
            msg_id,
            aggregate_id: self.req("aggregate_id")?,
            as_of_version: self.opt("as_of_version")?,
            as_of_time: self.opt("as_of_time")?,
        }))
    }

    fn subscribe(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::Subscribe(SubscribeRequest {
            msg_id,
            from_sequence: self.opt("from_sequence")?,
            event_types: self.opt("event_types")?.unwrap_or_default(),
            category: self.opt("category")?,
            aggregate_id: self.opt("aggregate_id")?,
            consumer: self.opt("consumer")?,
            tags: self.opt("tags")?.unwrap_or_default(),
        }))
    }

    fn unsubscribe(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::Unsubscribe(UnsubscribeRequest { msg_id, subscription_id: self.req("subscription_id")? }))
    }
}

#[cfg(test)]
mod tests;
