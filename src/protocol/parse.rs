//! The node's parser for request lines: field by field, so that an error
//! names the field, and with each field kept as the text the client sent, so
//! that an event's payload is stored exactly as it was spelled.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;
use serde_json::value::RawValue;

use super::wire::{
    AggregateRequest, AppendBatchRequest, AppendRequest, EmptyRequest, Envelope, GetStateRequest,
    InitRequest, RawJson, ReadAllRequest, ReadStreamRequest, RejectedRequest, Request, SubscribeRequest,
    UnsubscribeRequest, WireNewEvent, codes,
};

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

    fn append(&self, msg_id: Option<u64>) -> Result<Request, String> {
        Ok(Request::Append(AppendRequest {
            msg_id,
            aggregate_id: self.req("aggregate_id")?,
            version: self.req("version")?,
            event: self.new_event()?,
        }))
    }

    fn append_batch(&self, msg_id: Option<u64>) -> Result<Request, String> {
        let aggregate_id = self.req("aggregate_id")?;
        let version = self.req("version")?;
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
        Ok(Request::AppendBatch(AppendBatchRequest { msg_id, aggregate_id, version, events }))
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
            }),
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
