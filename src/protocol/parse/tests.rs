//! The parser against serde's derive, and its errors.

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
                tags: vec!["user:1".into(), "team:7".into()],
            },
            condition: Some(crate::AppendCondition::new(
                crate::Query::new().item(crate::QueryItem::new().event_type("E").tag("user:1")),
                Some(3),
            )),
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
                tags: Vec::new(),
            }],
            condition: None,
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
            tags: vec!["t:1".into()],
        }),
        Request::ReadQuery(ReadQueryRequest {
            msg_id: Some(15),
            query: crate::Query::new().item(crate::QueryItem::new().tag("t:1")),
            from_sequence: Some(2),
            limit: Some(5),
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
                    tags: Vec::new(),
                }],
            }],
            checkpoint: Some(crate::protocol::wire::WireCheckpoint { consumer: "p".into(), position: 3 }),
            condition: None,
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
        Request::DeleteStream(DeleteStreamRequest {
            msg_id: Some(16),
            aggregate_id: "a-1".into(),
            reason: "gone".into(),
            hard: true,
            metadata: Some(WireMetadata { user_id: Some("ops".into()), ..WireMetadata::default() }),
        }),
        Request::SetStreamRetention(SetStreamRetentionRequest {
            msg_id: Some(17),
            aggregate_id: "a-1".into(),
            reason: "tidy".into(),
            truncate_before: Some(3),
            max_count: None,
            max_age_seconds: Some(60),
            metadata: None,
        }),
        Request::GetStreamLifecycle(AggregateRequest { msg_id: Some(18), aggregate_id: "a-1".into() }),
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
            serde_json::to_string(&Envelope { src: "c".into(), dest: "n".into(), body: r.clone() }).unwrap();
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
    let r = parse(json!({"body": {"type": "read_stream", "msg_id": 8, "aggregate_id": "a", "limit": "x"}}));
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
