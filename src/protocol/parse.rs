//! The node's parser for request lines: field by field, so that an error
//! names the field, and with each field kept as the text the client sent, so
//! that an event's payload is stored exactly as it was spelled.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;
use serde_json::value::RawValue;

use super::wire::{
    AckRequest, AggregateRequest, AppendBatchRequest, AppendManyRequest, AppendRequest, AuthRequest,
    ConsumerRequest, EmptyRequest, Envelope, GetEventRequest, GetStateRequest, InitRequest,
    ListStreamsRequest, RawJson, ReadAllRequest, ReadStreamRequest, RejectedRequest, Request,
    SubscribeRequest, UnsubscribeRequest, WireNewEvent, WireStreamAppend, WireVersion, codes,
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
            event: self.new_event()?,
        }))
    }

    fn append_batch(&self, msg_id: Option<u64>) -> Result<Request, String> {
        let aggregate_id = self.req("aggregate_id")?;
        let (version, version_below) = self.expected()?;
        let events = self.events()?;
        Ok(Request::AppendBatch(AppendBatchRequest { msg_id, aggregate_id, version, version_below, events }))
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
        Ok(Request::AppendMany(AppendManyRequest { msg_id, streams, checkpoint: self.opt("checkpoint")? }))
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
        }))
    }

    fn unsubscribe(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::Unsubscribe(UnsubscribeRequest { msg_id, subscription_id: self.req("subscription_id")? }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::{Reply, WireMetadata, WireVersion};
    use crate::vocab::ExpectedVersion;
    use serde_json::json;
    use uuid::Uuid;

    fn parse(v: Value) -> Result<Request, Box<Reply>> {
        parse_request(v.to_string().as_bytes()).map(|e| e.body).map_err(|r| Box::new(r.reply()))
    }

    /// The node's field-by-field parser and serde's derive agree on every request.
    #[test]
    fn parser_agrees_with_serde() {
        let requests = vec![
            Request::Init(InitRequest { msg_id: Some(1), node_id: "n1".into(), node_ids: vec!["n1".into()] }),
            Request::Append(AppendRequest {
                msg_id: Some(2),
                aggregate_id: "user-1".into(),
                version: WireVersion(ExpectedVersion::Any),
                version_below: Some(4),
                event: WireNewEvent {
                    event_type: "E".into(),
                    event_data: RawJson::from(json!({"a": 1})),
                    event_id: Some(Uuid::now_v7()),
                    metadata: Some(WireMetadata {
                        user_id: Some("ann".into()),
                        extra: json!({"ip": "::1"}).as_object().cloned().unwrap_or_default(),
                        ..WireMetadata::default()
                    }),
                    schema_version: Some(2),
                },
            }),
            Request::AppendBatch(AppendBatchRequest {
                msg_id: None,
                aggregate_id: "a-1".into(),
                version: WireVersion(ExpectedVersion::Exact(3)),
                version_below: None,
                events: vec![WireNewEvent {
                    event_type: "E".into(),
                    event_data: RawJson::from(json!(null)),
                    event_id: None,
                    metadata: None,
                    schema_version: None,
                }],
            }),
            Request::ReadStream(ReadStreamRequest {
                msg_id: Some(4),
                aggregate_id: "a".into(),
                from_version: Some(2),
                limit: Some(3),
                backwards: true,
            }),
            Request::ReadAll(ReadAllRequest {
                msg_id: Some(5),
                from_sequence: Some(9),
                limit: None,
                event_types: vec!["X".into()],
                category: Some("user".into()),
                to_sequence: Some(20),
                backwards: true,
            }),
            Request::AppendMany(AppendManyRequest {
                msg_id: Some(9),
                streams: vec![WireStreamAppend {
                    aggregate_id: "b-1".into(),
                    version: WireVersion(ExpectedVersion::NoStream),
                    version_below: Some(1),
                    events: vec![WireNewEvent {
                        event_type: "E".into(),
                        event_data: RawJson::from(json!([1])),
                        event_id: None,
                        metadata: None,
                        schema_version: None,
                    }],
                }],
                checkpoint: Some(crate::protocol::wire::WireCheckpoint { consumer: "p".into(), position: 3 }),
            }),
            Request::GetCheckpoint(ConsumerRequest { msg_id: Some(10), consumer: "p".into() }),
            Request::Ack(AckRequest { msg_id: Some(11), consumer: "p".into(), sequence_number: 4 }),
            Request::ListStreams(ListStreamsRequest {
                msg_id: Some(12),
                prefix: Some("user-".into()),
                after: Some("user-1".into()),
                limit: Some(2),
            }),
            Request::GetEvent(GetEventRequest { msg_id: Some(13), event_id: None, sequence_number: Some(1) }),
            Request::Auth(AuthRequest { msg_id: Some(14), token: "s3cret".into() }),
            Request::Stats(EmptyRequest { msg_id: Some(6) }),
            Request::GetState(GetStateRequest {
                msg_id: Some(7),
                aggregate_id: "a".into(),
                as_of_version: Some(1),
                as_of_time: None,
            }),
            Request::Unsubscribe(UnsubscribeRequest { msg_id: Some(8), subscription_id: 3 }),
        ];
        for r in requests {
            let line =
                serde_json::to_string(&Envelope { src: "c".into(), dest: "n".into(), body: r.clone() })
                    .unwrap();
            let parsed = parse_request(line.as_bytes()).unwrap();
            assert_eq!(parsed.body, r, "{line}");
            let via_serde: Envelope<Request> = serde_json::from_str(&line).unwrap();
            assert_eq!(via_serde.body, r);
        }
    }

    #[test]
    fn new_fields_and_their_errors() {
        let r = parse(
            json!({"body": {"type": "append", "msg_id": 1, "aggregate_id": "a", "event_type": "E", "event_data": {}, "version_below": 3}}),
        );
        let Ok(Request::Append(a)) = r else { panic!("{r:?}") };
        assert_eq!((a.version.0, a.version_below), (ExpectedVersion::Any, Some(3)));
        let r = parse(json!({"body": {"type": "read_all", "msg_id": 2, "to_position": 7}}));
        let Ok(Request::ReadAll(a)) = r else { panic!("{r:?}") };
        assert_eq!(a.to_sequence, Some(7));
        for (body, field) in [
            (
                json!({"type": "read_all", "msg_id": 3, "to_position": 7, "to_sequence": 8}),
                "`to_sequence` (8) and `to_position` (7)",
            ),
            (json!({"type": "get_event", "msg_id": 3}), "exactly one of `event_id` and `sequence_number`"),
            (
                json!({"type": "append_many", "msg_id": 3, "streams": [{"aggregate_id": "a", "version": 0}]}),
                "in `streams[0]`: missing field `events`",
            ),
            (
                json!({"type": "append_many", "msg_id": 3, "streams": [], "checkpoint": {"consumer": "p"}}),
                "field `checkpoint`",
            ),
            (
                json!({"type": "append", "msg_id": 3, "aggregate_id": "a", "event_type": "E", "event_data": {}, "version": {"first": 0}}),
                "field `version`",
            ),
            (json!({"type": "auth", "msg_id": 3}), "missing field `token`"),
        ] {
            let Err(reply) = parse(json!({"body": body})) else { panic!("{body}") };
            let Reply::Error { in_reply_to: Some(3), code: 12, text } = *reply else { panic!("{reply:?}") };
            assert!(text.contains(field), "{text}");
        }
    }

    #[test]
    fn errors_name_the_field_and_keep_the_msg_id() {
        let r = parse(
            json!({"body": {"type": "append", "msg_id": 7, "aggregate_id": "a", "event_type": "E", "event_data": {}}}),
        );
        assert_eq!(r, Err(Box::new(Reply::error(Some(7), 12, "malformed request: missing field `version`"))));
        let r =
            parse(json!({"body": {"type": "read_stream", "msg_id": 8, "aggregate_id": "a", "limit": "x"}}));
        let Err(Reply::Error { in_reply_to: Some(8), code: 12, text }) = r.map_err(|b| *b) else { panic!() };
        assert!(text.contains("field `limit`"), "{text}");
        let r = parse(json!({"body": {"type": "teleport", "msg_id": 9}}));
        assert_eq!(
            r,
            Err(Box::new(Reply::error(Some(9), 10, "not supported: unknown message type \"teleport\"")))
        );
        let r = parse_request(b"{not json").map_err(|r| r.reply());
        let Err(Reply::Error { in_reply_to: None, code: 12, text }) = r else { panic!() };
        assert!(text.starts_with("malformed request: "), "{text}");
    }
}
