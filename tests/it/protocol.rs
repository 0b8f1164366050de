//! The JSON-lines protocol node, run as `eventfold serve` in a separate process.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::cli::{StdioNode, bin};

fn body(reply: &Value) -> &Value {
    &reply["body"]
}

/// Guards payload fidelity: the node stores an event's payload as the exact
/// text the client sent and sends it back the same way. Parsed into a
/// `serde_json::Value`, keys came back sorted, `1.50` as `1.5`, and integers
/// beyond 64 bits as rounded floats.
#[test]
fn payloads_are_stored_and_returned_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let one = r#"{"z":1,"a":123456789012345678901234567890,"f":1.50,"e":1e2,"s":"caf\u00e9"}"#;
    let two = r#"[3, {"b":true,"a":null}]"#;
    let mut node = StdioNode::start(dir.path(), &[]);
    let line = format!(
        r#"{{"body":{{"type":"append","msg_id":1,"aggregate_id":"raw-1","event_type":"E","event_data":{one},"version":0}}}}"#
    );
    assert_eq!(body(&node.send_raw(line.as_bytes()))["type"], "appended");
    let line = format!(
        r#"{{"body":{{"type":"append_batch","msg_id":2,"aggregate_id":"raw-1","version":1,"events":[{{"event_type":"E","event_data":{two}}}]}}}}"#
    );
    assert_eq!(body(&node.send_raw(line.as_bytes()))["type"], "appended_batch");
    node.write_line(br#"{"body":{"type":"read_stream","msg_id":3,"aggregate_id":"raw-1"}}"#);
    let reply = node.read_text();
    assert!(reply.contains(&format!(r#""event_data":{one}"#)), "{reply}");
    assert!(reply.contains(&format!(r#""event_data":{two}"#)), "{reply}");
    node.finish();

    let store = eventfold::Store::open(dir.path()).unwrap();
    let reader = store.read().unwrap();
    let stored: Vec<Vec<u8>> = reader
        .stream("raw-1", eventfold::ReadStream::forward())
        .unwrap()
        .map(|e| e.unwrap().payload().to_vec())
        .collect();
    assert_eq!(stored, vec![one.as_bytes().to_vec(), two.as_bytes().to_vec()]);
}

/// Guards against protocol input that was silently dropped or accepted but
/// unreadable. A field serde_json cannot parse into a value (a number
/// beyond a 64-bit float, nesting deeper than 100 levels, half a surrogate
/// pair) was read as absent: `metadata` stored as `{}`, `schema_version` as
/// 1, a `msg_id` answered without `in_reply_to`; such an `event_data` was
/// stored as it was, after which `get_state`, `create_snapshot` and
/// `eventfold state` failed for the aggregate forever. Each is now error 12
/// naming the field, nothing is stored, and what is accepted at the limits
/// is readable by all of them.
#[test]
fn unreadable_values_are_refused_by_name_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let append = |msg_id: &str, fields: &str| {
        format!(
            r#"{{"body":{{"type":"append","msg_id":{msg_id},"aggregate_id":"bad-1","event_type":"E","version":"any",{fields}}}}}"#
        )
    };
    let deep_metadata = format!(r#"{{"trace":{}0{}}}"#, "[".repeat(200), "]".repeat(200));
    let deep_payload = format!("{}{}", "[".repeat(500_000), "]".repeat(500_000));
    let cases = [
        (append("1", r#""event_data":{},"metadata":{"a":1e400}"#), Some(1), "field `metadata`: number out of range"),
        (
            append("2", &format!(r#""event_data":{{}},"metadata":{deep_metadata}"#)),
            Some(2),
            "field `metadata`: arrays and objects are nested more than 100 levels deep",
        ),
        (append("3", r#""event_data":{},"schema_version":1e400"#), Some(3), "field `schema_version`: number out of range"),
        (append("1e400", r#""event_data":{}"#), None, "field `msg_id`: number out of range"),
        (
            append("5", r#""event_data":{"x":1e999999}"#),
            Some(5),
            "field `event_data`: number out of range at column 13 of the field",
        ),
        (
            append("6", &format!(r#""event_data":{deep_payload}"#)),
            Some(6),
            "field `event_data`: arrays and objects are nested more than 100 levels deep",
        ),
        (append("7", r#""event_data":{"s":"\ud800"}"#), Some(7), "field `event_data`: "),
        (
            r#"{"body":{"type":"append_batch","msg_id":8,"aggregate_id":"bad-1","version":"any","events":[{"event_type":"E","event_data":1},{"event_type":"E","event_data":[1e400]}]}}"#.to_string(),
            Some(8),
            "in `events[1]`: field `event_data`: number out of range",
        ),
        (r#"{"src":7,"body":{"type":"stats","msg_id":9}}"#.to_string(), Some(9), "field `src` must be a string"),
    ];
    for (line, in_reply_to, text) in cases {
        let r = node.send_raw(line.as_bytes());
        let b = body(&r);
        assert_eq!((b["type"].as_str(), b["code"].as_u64()), (Some("error"), Some(12)), "{r}");
        assert_eq!(b["in_reply_to"].as_u64(), in_reply_to, "{r}");
        assert!(b["text"].as_str().unwrap().contains(text), "{text}: {r}");
    }
    let r = node.send(json!({"type": "read_all", "msg_id": 10}));
    assert_eq!((&body(&r)["events"], body(&r)["head"].as_u64()), (&json!([]), Some(0)), "nothing stored");

    // At the limits: accepted, and every reader of the aggregate works.
    let (open, close) =
        ("[".repeat(eventfold::MAX_JSON_DEPTH - 1), "]".repeat(eventfold::MAX_JSON_DEPTH - 1));
    let ok = format!(
        r#"{{"body":{{"type":"append","msg_id":11,"aggregate_id":"edge-1","event_type":"E","version":0,"event_data":{{"deep":{open}1{close},"max":1.7976931348623157e308,"tiny":-1e-400}},"metadata":{{"trace":{open}1{close}}}}}}}"#
    );
    assert_eq!(body(&node.send_raw(ok.as_bytes()))["type"], "appended");
    let r = node.send(json!({"type": "get_state", "msg_id": 12, "aggregate_id": "edge-1"}));
    assert_eq!((body(&r)["type"].as_str(), body(&r)["version"].as_u64()), (Some("state"), Some(1)), "{r}");
    let r = node.send(json!({"type": "create_snapshot", "msg_id": 13, "aggregate_id": "edge-1"}));
    assert_eq!(body(&r)["type"], "snapshot_created", "{r}");
    let r = node.send(json!({"type": "read_stream", "msg_id": 14, "aggregate_id": "edge-1"}));
    assert!(body(&r)["events"][0]["metadata"]["trace"].is_array(), "{r}");
    node.finish();
    let state = crate::cli::ok(crate::cli::run(dir.path(), &["state", "edge-1"]));
    assert!(state.contains("\"tiny\": -1e-400"), "{state}");
}

/// Guards exact numbers in `get_state` and `get_snapshot`: the state was a
/// `serde_json::Value`, so a 23-digit integer came back as
/// `1.2345678901234568e+22` and `1.50` as `1.5`.
#[test]
fn state_replies_spell_numbers_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let line = r#"{"body":{"type":"append","msg_id":1,"aggregate_id":"n-1","event_type":"E","version":0,"event_data":{"big":12345678901234567890123,"f":1.50,"n":{"e":1E2}}}}"#;
    assert_eq!(body(&node.send_raw(line.as_bytes()))["type"], "appended");
    let state = r#""state":{"big":12345678901234567890123,"f":1.50,"n":{"e":1E2}}"#;
    node.write_line(br#"{"body":{"type":"get_state","msg_id":2,"aggregate_id":"n-1"}}"#);
    let reply = node.read_text();
    assert!(reply.contains(state), "{reply}");
    node.write_line(br#"{"body":{"type":"create_snapshot","msg_id":3,"aggregate_id":"n-1"}}"#);
    node.read_text();
    node.write_line(br#"{"body":{"type":"get_snapshot","msg_id":4,"aggregate_id":"n-1"}}"#);
    let reply = node.read_text();
    assert!(reply.contains(state), "{reply}");
    node.write_line(br#"{"body":{"type":"get_state","msg_id":5,"aggregate_id":"n-1"}}"#);
    let reply = node.read_text();
    assert!(reply.contains(state), "folded from the snapshot: {reply}");
    node.finish();
}

#[test]
fn the_exchanges_of_the_spec_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let line = r#"{"src":"service","dest":"eventstore","body":{"type":"append","msg_id":1,"aggregate_id":"user-123","event_type":"UserCreated","event_data":{"name":"John"},"version":0}}"#;
    let r = node.send_raw(line.as_bytes());
    assert_eq!(r["src"], "eventstore");
    assert_eq!(r["dest"], "service");
    let b = body(&r);
    assert_eq!(b["type"], "appended");
    assert_eq!(b["in_reply_to"], 1);
    assert!(Uuid::parse_str(b["event_id"].as_str().unwrap()).is_ok(), "{r}");
    assert_eq!(b["sequence_number"], 1);
    assert_eq!(b["version"], 1);

    let line = r#"{"src":"service","dest":"eventstore","body":{"type":"append","msg_id":2,"aggregate_id":"user-123","event_type":"UserUpdated","event_data":{"name":"Jane"},"version":5}}"#;
    let r = node.send_raw(line.as_bytes());
    assert_eq!((r["src"].as_str(), r["dest"].as_str()), (Some("eventstore"), Some("service")));
    let b = body(&r);
    assert_eq!(b["type"], "concurrency_error");
    assert_eq!(b["in_reply_to"], 2);
    assert_eq!(b["error"], "Expected version 5, got 1");
    assert_eq!(b["current_version"], 1);

    // Each successful append makes the aggregate one higher and the sequence one further.
    let r = node.send(json!({"type": "append", "msg_id": 3, "aggregate_id": "user-456", "event_type": "UserCreated", "event_data": {}, "version": 0}));
    assert_eq!((body(&r)["sequence_number"].as_u64(), body(&r)["version"].as_u64()), (Some(2), Some(1)));
    let r = node.send(json!({"type": "append", "msg_id": 4, "aggregate_id": "user-123", "event_type": "UserUpdated", "event_data": {"name": "Jane"}, "version": 1}));
    assert_eq!((body(&r)["sequence_number"].as_u64(), body(&r)["version"].as_u64()), (Some(3), Some(2)));
    node.finish();
}

#[test]
fn bad_input_gets_an_error_and_the_node_reads_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &["--max-line-bytes", "4096"]);

    let r = node.send_raw(b"this is not json");
    let b = body(&r);
    assert_eq!((b["type"].as_str(), b["code"].as_u64()), (Some("error"), Some(12)));
    assert!(b["text"].as_str().unwrap().starts_with("malformed request: "), "{r}");
    assert!(b.get("in_reply_to").is_none(), "no msg_id could be read: {r}");

    let r = node.send(json!({"type": "teleport", "msg_id": 1}));
    assert_eq!(
        body(&r),
        &json!({"type": "error", "in_reply_to": 1, "code": 10, "text": "not supported: unknown message type \"teleport\""})
    );

    let r = node.send(
        json!({"type": "append", "msg_id": 2, "aggregate_id": "a-1", "event_type": "E", "event_data": {}}),
    );
    assert_eq!(
        body(&r),
        &json!({"type": "error", "in_reply_to": 2, "code": 12, "text": "malformed request: missing field `version`"})
    );

    let r = node.send(json!({"type": "read_stream", "msg_id": 3, "aggregate_id": 42}));
    let b = body(&r);
    assert_eq!((b["code"].as_u64(), b["in_reply_to"].as_u64()), (Some(12), Some(3)));
    assert!(b["text"].as_str().unwrap().contains("field `aggregate_id`"), "{r}");

    let r = node.send(json!({"type": "append", "msg_id": 4, "aggregate_id": "a-1", "event_type": "E", "event_data": {}, "version": "latest"}));
    assert!(body(&r)["text"].as_str().unwrap().contains("field `version`"), "{r}");

    let r = node.send_raw(br#"{"src":"c","dest":"eventstore","body":{"msg_id":5}}"#);
    assert_eq!(body(&r)["text"], "malformed request: missing field `type`");
    assert_eq!(r["dest"], "c");

    let r = node.send_raw(br#"[1,2,3]"#);
    assert_eq!(body(&r)["code"], 12);

    // A line over the limit is skipped and answered; the next line is read normally.
    let long = format!(r#"{{"body":{{"type":"stats","msg_id":6,"pad":"{}"}}}}"#, "x".repeat(10_000));
    let r = node.send_raw(long.as_bytes());
    let text = body(&r)["text"].as_str().unwrap().to_string();
    assert_eq!(body(&r)["code"], 12);
    assert!(text.contains("over the limit of 4096 bytes"), "{text}");

    // Invalid values are code 12 with the store's reason.
    let r = node.send(json!({"type": "append", "msg_id": 7, "aggregate_id": "", "event_type": "E", "event_data": {}, "version": "any"}));
    assert_eq!(body(&r)["code"], 12);
    assert!(body(&r)["text"].as_str().unwrap().contains("invalid stream id"), "{r}");

    // A duplicate event id elsewhere is a failed precondition, code 22.
    let id = Uuid::now_v7();
    let r = node.send(json!({"type": "append", "msg_id": 8, "aggregate_id": "a-1", "event_type": "E", "event_data": {}, "version": 0, "event_id": id}));
    assert_eq!(body(&r)["type"], "appended");
    let r = node.send(json!({"type": "append", "msg_id": 9, "aggregate_id": "b-1", "event_type": "E", "event_data": {}, "version": 0, "event_id": id}));
    assert_eq!((body(&r)["code"].as_u64(), body(&r)["in_reply_to"].as_u64()), (Some(22), Some(9)));
    // The same append resent is an idempotent retry.
    let r = node.send(json!({"type": "append", "msg_id": 10, "aggregate_id": "a-1", "event_type": "E", "event_data": {}, "version": 0, "event_id": id}));
    assert_eq!(body(&r)["already_stored"], true);
    assert_eq!(body(&r)["sequence_number"], 1);

    // After all that, the node still works.
    let r = node.send(json!({"type": "stats", "msg_id": 11}));
    assert_eq!(body(&r)["type"], "stats_ok");
    assert_eq!(body(&r)["head"], 1);
    node.finish();
}

#[test]
fn oversized_lines_at_the_default_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let pad = "y".repeat(9 << 20);
    let line = format!(
        r#"{{"body":{{"type":"append","msg_id":1,"aggregate_id":"a-1","event_type":"E","event_data":"{pad}","version":"any"}}}}"#
    );
    let r = node.send_raw(line.as_bytes());
    assert!(body(&r)["text"].as_str().unwrap().contains("over the limit of 8388608 bytes"), "{r}");
    let r = node.send(json!({"type": "read_all", "msg_id": 2}));
    assert_eq!(body(&r)["events"], json!([]), "nothing of the long line was written");
    node.finish();
}

#[test]
fn reads_batches_init_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let r = node.send(json!({"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1", "n2", "n3"]}));
    assert_eq!(
        body(&r),
        &json!({"type": "init_ok", "in_reply_to": 1, "node_id": "n1", "peers": ["n2", "n3"]})
    );

    let corr = Uuid::now_v7();
    let r = node.send(json!({"type": "append_batch", "msg_id": 2, "aggregate_id": "order-1", "version": "no_stream", "events": [
        {"event_type": "Placed", "event_data": {"total": 5}, "metadata": {"correlation_id": corr, "user_id": "ann", "channel": "web"}, "schema_version": 2},
        {"event_type": "Paid", "event_data": {"amount": 5}}
    ]}));
    let b = body(&r);
    assert_eq!(b["type"], "appended_batch");
    assert_eq!((b["first_sequence_number"].as_u64(), b["last_sequence_number"].as_u64()), (Some(1), Some(2)));
    assert_eq!(b["version"], 2);
    assert_eq!(b["event_ids"].as_array().unwrap().len(), 2);
    // All or nothing: one bad event fails the whole batch.
    let r = node.send(
        json!({"type": "append_batch", "msg_id": 3, "aggregate_id": "order-1", "version": 2, "events": [
            {"event_type": "Shipped", "event_data": {}}, {"event_type": "", "event_data": {}}
        ]}),
    );
    assert_eq!(body(&r)["code"], 12);
    let r = node.send(json!({"type": "append_batch", "msg_id": 4, "aggregate_id": "order-1", "version": 1, "events": [{"event_type": "Shipped", "event_data": {}}]}));
    assert_eq!(body(&r)["error"], "Expected version 1, got 2");
    node.send(json!({"type": "append", "msg_id": 5, "aggregate_id": "user-1", "event_type": "Created", "event_data": {}, "version": "any"}));

    let r = node.send(json!({"type": "read_stream", "msg_id": 6, "aggregate_id": "order-1"}));
    assert_eq!(r["src"], "eventstore", "a request's dest names the replying node");
    let b = body(&r);
    assert_eq!((b["type"].as_str(), b["version"].as_u64()), (Some("stream_events"), Some(2)));
    let e = &b["events"][0];
    assert_eq!(e["event_type"], "Placed");
    assert_eq!(e["event_data"], json!({"total": 5}));
    assert_eq!((e["version"].as_u64(), e["sequence_number"].as_u64()), (Some(1), Some(1)));
    assert_eq!(e["metadata"], json!({"correlation_id": corr, "user_id": "ann", "channel": "web"}));
    assert_eq!(e["schema_version"], 2);
    assert!(e["recorded_at"].as_u64().unwrap() > 0);
    assert!(e.get("aggregate_id").is_none());
    let r = node.send(
        json!({"type": "read_stream", "msg_id": 7, "aggregate_id": "order-1", "backwards": true, "limit": 1}),
    );
    assert_eq!(body(&r)["events"][0]["event_type"], "Paid");
    let r =
        node.send(json!({"type": "read_stream", "msg_id": 8, "aggregate_id": "order-1", "from_version": 2}));
    assert_eq!(body(&r)["events"].as_array().unwrap().len(), 1);
    let r = node.send(json!({"type": "read_stream", "msg_id": 9, "aggregate_id": "nobody-1"}));
    assert_eq!(
        (body(&r)["version"].as_u64(), body(&r)["events"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );

    let r = node.send(json!({"type": "read_all", "msg_id": 10, "from_sequence": 2}));
    let b = body(&r);
    assert_eq!(b["head"], 3);
    let seqs: Vec<u64> =
        b["events"].as_array().unwrap().iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(b["events"][1]["aggregate_id"], "user-1");
    let r =
        node.send(json!({"type": "read_all", "msg_id": 11, "category": "order", "event_types": ["Paid"]}));
    assert_eq!(body(&r)["events"].as_array().unwrap().len(), 1);
    let r = node.send(json!({"type": "read_all", "msg_id": 12, "limit": 1}));
    assert_eq!(body(&r)["events"].as_array().unwrap().len(), 1);

    let r = node.send(json!({"type": "stats", "msg_id": 13}));
    let b = body(&r);
    assert_eq!((b["head"].as_u64(), b["streams"].as_u64()), (Some(3), Some(2)));

    node.finish();
}

/// Guards string ids on the wire: a `correlation_id` that is not a UUID was
/// refused, and the `traceparent` had no place. A client sending UUIDs, as
/// before, gets them back as it sent them.
#[test]
fn metadata_ids_are_strings_and_traceparent_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (corr, cause) = (Uuid::now_v7(), Uuid::now_v7());
    let r = node.send(json!({"type": "append_batch", "msg_id": 1, "aggregate_id": "order-1", "version": "any", "events": [
        {"event_type": "Placed", "event_data": {}, "metadata": {"correlation_id": "req-7f3a", "causation_id": "4bf92f3577b34da6a3ce929d0e0e4736", "traceparent": tp, "channel": "web"}},
        {"event_type": "Paid", "event_data": {}, "metadata": {"correlation_id": corr, "causation_id": cause, "user_id": "ann"}}
    ]}));
    assert_eq!(body(&r)["type"], "appended_batch", "{r}");
    let r = node.send(json!({"type": "read_stream", "msg_id": 2, "aggregate_id": "order-1"}));
    let events = &body(&r)["events"];
    assert_eq!(
        events[0]["metadata"],
        json!({"correlation_id": "req-7f3a", "causation_id": "4bf92f3577b34da6a3ce929d0e0e4736", "traceparent": tp, "channel": "web"})
    );
    assert_eq!(
        events[1]["metadata"],
        json!({"correlation_id": corr, "causation_id": cause, "user_id": "ann"})
    );
    for (msg_id, metadata, says) in [
        (3, json!({"correlation_id": "a\nb"}), "invalid correlation id"),
        (4, json!({"causation_id": "x".repeat(257)}), "the limit is 256"),
        (
            5,
            json!({"traceparent": "00-abc"}),
            // As docs/protocol.md shows it.
            "invalid traceparent \"00-abc\": a traceparent is 00-<32 hex digits trace id>-<16 hex digits parent id>-<2 hex digits flags>, lower-case (W3C trace context)",
        ),
        (6, json!({"$correlation_id": "x"}), "reserves for its own use"),
    ] {
        let r = node.send(json!({"type": "append", "msg_id": msg_id, "aggregate_id": "order-1", "event_type": "E", "event_data": {}, "version": "any", "metadata": metadata}));
        assert_eq!(body(&r)["code"], 12, "{r}");
        assert!(body(&r)["text"].as_str().unwrap().contains(says), "{r}");
    }
    let r = node.send(json!({"type": "read_stream", "msg_id": 7, "aggregate_id": "order-1"}));
    assert_eq!(body(&r)["version"], 2, "nothing refused was stored");
    node.finish();
}

#[test]
fn a_restarted_node_continues_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    for (i, agg) in ["user-1", "user-2", "user-1"].iter().enumerate() {
        let r = node.send(json!({"type": "append", "msg_id": i, "aggregate_id": agg, "event_type": "E", "event_data": {}, "version": "any"}));
        assert_eq!(body(&r)["sequence_number"], i + 1);
    }
    node.finish();
    let mut node = StdioNode::start(dir.path(), &[]);
    let r = node.send(json!({"type": "append", "msg_id": 1, "aggregate_id": "user-1", "event_type": "E", "event_data": {}, "version": 2}));
    assert_eq!((body(&r)["sequence_number"].as_u64(), body(&r)["version"].as_u64()), (Some(4), Some(3)));
    node.finish();
}

/// A `serve --tcp 127.0.0.1:0` process and the address it bound.
struct TcpNode {
    child: Child,
    addr: String,
}

impl TcpNode {
    fn start(dir: &std::path::Path) -> TcpNode {
        TcpNode::start_on(dir, &["--tcp", "127.0.0.1:0"], "127.0.0.1:")
    }

    fn start_on(dir: &std::path::Path, args: &[&str], expect: &str) -> TcpNode {
        let mut child = bin()
            .arg("--data")
            .arg(dir)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve --tcp");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        // The node says where it listens once the socket is bound.
        let mut line = String::new();
        stderr.read_line(&mut line).expect("read stderr");
        let addr = line.rsplit("listening on ").next().unwrap_or_default().trim().to_string();
        assert!(addr.starts_with(expect), "{line:?}");
        // Keep draining the log so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        TcpNode { child, addr }
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(&self.addr).expect("connect");
        Client { reader: BufReader::new(stream.try_clone().expect("clone")), writer: stream }
    }
}

impl Drop for TcpNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn send(&mut self, body: Value) -> Value {
        let line = json!({"src": "client", "dest": "eventstore", "body": body}).to_string();
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).unwrap();
        let v: Value = serde_json::from_str(&reply).unwrap();
        v["body"].clone()
    }
}

#[test]
fn tcp_conflicts_are_reported_to_the_loser() {
    let dir = tempfile::tempdir().unwrap();
    let node = TcpNode::start(dir.path());
    let (mut a, mut b) = (node.connect(), node.connect());
    let r = a.send(json!({"type": "append", "msg_id": 1, "aggregate_id": "cart-1", "event_type": "Created", "event_data": {}, "version": 0}));
    assert_eq!(r["type"], "appended");
    // Both clients saw version 1 and both try to write version 2.
    let ra = a.send(json!({"type": "append", "msg_id": 2, "aggregate_id": "cart-1", "event_type": "Added", "event_data": {"by": "a"}, "version": 1}));
    let rb = b.send(json!({"type": "append", "msg_id": 2, "aggregate_id": "cart-1", "event_type": "Added", "event_data": {"by": "b"}, "version": 1}));
    assert_eq!(ra["type"], "appended");
    assert_eq!(
        rb,
        json!({"type": "concurrency_error", "in_reply_to": 2, "error": "Expected version 1, got 2", "current_version": 2})
    );
    let r = b.send(json!({"type": "read_stream", "msg_id": 3, "aggregate_id": "cart-1"}));
    assert_eq!(r["version"], 2);
    assert_eq!(r["events"][1]["event_data"], json!({"by": "a"}));
}

#[test]
fn tcp_concurrent_clients_lose_and_duplicate_nothing() {
    const SHARED: usize = 4;
    const OWN: usize = 4;
    const PER_CLIENT: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let node = TcpNode::start(dir.path());
    let mut threads = Vec::new();
    for c in 0..SHARED + OWN {
        let mut client = node.connect();
        threads.push(std::thread::spawn(move || {
            let shared = c < SHARED;
            let aggregate = if shared { "counter-shared".to_string() } else { format!("counter-{c}") };
            let mut version = 0u64;
            let mut appended = Vec::new();
            let mut conflicts = 0;
            let mut msg_id = 0u64;
            while appended.len() < PER_CLIENT {
                msg_id += 1;
                let r = client.send(json!({"type": "append", "msg_id": msg_id, "aggregate_id": aggregate,
                    "event_type": "Incremented", "event_data": {"client": c, "n": appended.len()}, "version": version}));
                assert_eq!(r["in_reply_to"], msg_id);
                match r["type"].as_str() {
                    Some("appended") => {
                        assert_eq!(r["version"], version + 1);
                        version += 1;
                        let id: Uuid = serde_json::from_value(r["event_id"].clone()).unwrap();
                        appended.push((id, r["sequence_number"].as_u64().unwrap(), aggregate.clone()));
                    }
                    Some("concurrency_error") => {
                        // Only the shared aggregate can conflict, and the
                        // message names both versions.
                        assert!(shared, "{r}");
                        let actual = r["current_version"].as_u64().unwrap();
                        assert!(actual > version, "{r}");
                        assert_eq!(r["error"], format!("Expected version {version}, got {actual}"));
                        version = actual;
                        conflicts += 1;
                    }
                    _ => panic!("unexpected reply {r}"),
                }
            }
            (appended, conflicts)
        }));
    }
    let mut all = Vec::new();
    for t in threads {
        let (appended, _conflicts) = t.join().expect("client thread");
        all.extend(appended);
    }
    let total = (SHARED + OWN) * PER_CLIENT;
    assert_eq!(all.len(), total);
    let seqs: HashSet<u64> = all.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<HashSet<u64>>(), "sequence numbers are gapless and unique");

    // The log holds exactly what was acknowledged, each aggregate at 1..=n.
    let mut reader = node.connect();
    let r = reader.send(json!({"type": "read_all", "msg_id": 1, "limit": total + 10}));
    assert_eq!(r["head"], total);
    let events = r["events"].as_array().unwrap();
    assert_eq!(events.len(), total);
    let acked: HashMap<Uuid, (u64, String)> = all.into_iter().map(|(id, s, a)| (id, (s, a))).collect();
    let mut versions: HashMap<String, u64> = HashMap::new();
    for e in events {
        let id: Uuid = serde_json::from_value(e["event_id"].clone()).unwrap();
        let (seq, agg) = &acked[&id];
        assert_eq!(e["sequence_number"], *seq);
        assert_eq!(e["aggregate_id"], agg.as_str());
        let v = versions.entry(agg.clone()).or_insert(0);
        *v += 1;
        assert_eq!(e["version"], *v, "versions of {agg} are consecutive");
    }
    assert_eq!(versions["counter-shared"], (SHARED * PER_CLIENT) as u64);
    for c in SHARED..SHARED + OWN {
        assert_eq!(versions[&format!("counter-{c}")], PER_CLIENT as u64);
    }
}

#[test]
fn state_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let r = node.send(json!({"type": "append", "msg_id": 1, "aggregate_id": "user-123", "event_type": "UserCreated", "event_data": {"name": "John", "plan": "free"}, "version": 0}));
    let t1 = {
        let r = node.send(json!({"type": "read_stream", "msg_id": 2, "aggregate_id": "user-123"}));
        body(&r)["events"][0]["recorded_at"].as_u64().unwrap()
    };
    assert_eq!(body(&r)["type"], "appended");
    // The exchange of the spec: a snapshot at the aggregate's version.
    let r = node.send(json!({"type": "create_snapshot", "msg_id": 3, "aggregate_id": "user-123"}));
    assert_eq!(
        body(&r),
        &json!({"type": "snapshot_created", "in_reply_to": 3, "aggregate_id": "user-123", "version": 1})
    );
    node.send(json!({"type": "append", "msg_id": 4, "aggregate_id": "user-123", "event_type": "UserUpdated", "event_data": {"name": "Jane"}, "version": 1}));

    let r = node.send(json!({"type": "get_snapshot", "msg_id": 5, "aggregate_id": "user-123"}));
    assert_eq!(
        body(&r),
        &json!({"type": "snapshot", "in_reply_to": 5, "aggregate_id": "user-123", "version": 1, "state": {"name": "John", "plan": "free"}})
    );
    let r = node.send(json!({"type": "get_state", "msg_id": 6, "aggregate_id": "user-123"}));
    assert_eq!(
        body(&r),
        &json!({"type": "state", "in_reply_to": 6, "aggregate_id": "user-123", "version": 2, "state": {"name": "Jane", "plan": "free"}})
    );
    let r =
        node.send(json!({"type": "get_state", "msg_id": 7, "aggregate_id": "user-123", "as_of_version": 1}));
    assert_eq!(body(&r)["state"], json!({"name": "John", "plan": "free"}));
    let r =
        node.send(json!({"type": "get_state", "msg_id": 8, "aggregate_id": "user-123", "as_of_time": t1}));
    assert_eq!(body(&r)["version"], 1);
    let r = node.send(json!({"type": "get_state", "msg_id": 9, "aggregate_id": "nobody-1"}));
    assert_eq!((body(&r)["version"].as_u64(), &body(&r)["state"]), (Some(0), &json!({})));

    let r = node.send(json!({"type": "get_snapshot", "msg_id": 10, "aggregate_id": "nobody-1"}));
    assert_eq!((body(&r)["code"].as_u64(), body(&r)["in_reply_to"].as_u64()), (Some(20), Some(10)));
    let r = node.send(json!({"type": "create_snapshot", "msg_id": 11, "aggregate_id": "nobody-1"}));
    assert_eq!(body(&r)["code"], 20);
    node.finish();
}

#[test]
fn subscriptions_push_events_in_order_until_unsubscribed() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    node.send(json!({"type": "append", "msg_id": 1, "aggregate_id": "a-1", "event_type": "E", "event_data": {"n": 1}, "version": 0}));
    node.send(json!({"type": "append", "msg_id": 2, "aggregate_id": "b-1", "event_type": "E", "event_data": {"n": 2}, "version": 0}));

    // The reply comes first, then the catch-up events, then live ones.
    let r = node.send(json!({"type": "subscribe", "msg_id": 3, "from_sequence": 1, "category": "a"}));
    assert_eq!(body(&r), &json!({"type": "subscribed", "in_reply_to": 3, "subscription_id": 1}));
    let pushed = node.read_message();
    assert_eq!((pushed["src"].as_str(), pushed["dest"].as_str()), (Some("eventstore"), Some("client")));
    let b = body(&pushed);
    assert_eq!((b["type"].as_str(), b["subscription_id"].as_u64()), (Some("event"), Some(1)));
    assert_eq!(
        (b["event"]["sequence_number"].as_u64(), b["event"]["aggregate_id"].as_str()),
        (Some(1), Some("a-1"))
    );

    // A live append: its reply and the pushed event may come in either order.
    node.write_line(json!({"body": {"type": "append", "msg_id": 4, "aggregate_id": "a-1", "event_type": "E", "event_data": {"n": 3}, "version": 1}}).to_string().as_bytes());
    let two = [node.read_message(), node.read_message()];
    let appended = two.iter().find(|m| body(m)["type"] == "appended").expect("the appended reply");
    let event = two.iter().find(|m| body(m)["type"] == "event").expect("the pushed event");
    assert_eq!(body(appended)["sequence_number"], 3);
    assert_eq!(body(event)["event"]["sequence_number"], 3);

    let r = node.send(json!({"type": "unsubscribe", "msg_id": 5, "subscription_id": 1}));
    assert_eq!(body(&r), &json!({"type": "unsubscribed", "in_reply_to": 5, "subscription_id": 1}));
    // After unsubscribed nothing more is pushed: the next line is the next reply.
    let r = node.send(json!({"type": "append", "msg_id": 6, "aggregate_id": "a-1", "event_type": "E", "event_data": {}, "version": 2}));
    assert_eq!(body(&r)["type"], "appended");
    let r = node.send(json!({"type": "unsubscribe", "msg_id": 7, "subscription_id": 1}));
    assert_eq!((body(&r)["code"].as_u64(), body(&r)["in_reply_to"].as_u64()), (Some(20), Some(7)));
    // A subscription still running when the input ends does not keep the node alive.
    let r = node.send(json!({"type": "subscribe", "msg_id": 8}));
    assert_eq!(body(&r)["subscription_id"], 2);
    node.finish();
}

#[test]
fn tcp_remote_addresses_need_allow_remote_and_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
    let data = dir.path().join("data");
    let token_arg = token.to_str().unwrap();
    let node = TcpNode::start_on(
        &data,
        &["--tcp", "0.0.0.0:0", "--allow-remote", "--token-file", token_arg],
        "0.0.0.0:",
    );
    let port = node.addr.rsplit(':').next().unwrap().to_string();
    let stream = TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
    let mut client = Client { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
    let r = client.send(json!({"type": "auth", "msg_id": 1, "token": "0123456789abcdef0123456789abcdef"}));
    assert_eq!(r["type"], "auth_ok");
    let r = client.send(json!({"type": "stats", "msg_id": 1}));
    assert_eq!(r["type"], "stats_ok");
}

/// The number of threads of this process.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}

/// A node in this process, on a free loopback port; it runs until the test
/// binary ends.
fn tcp_node_in_process(store: &eventfold::Store, options: eventfold::protocol::ServeOptions) -> String {
    let server = eventfold::protocol::TcpServer::bind(store.clone(), "127.0.0.1:0", false, options).unwrap();
    let addr = server.local_addr().unwrap().to_string();
    std::thread::spawn(move || server.run());
    addr
}

fn client(addr: &str) -> Client {
    let stream = TcpStream::connect(addr).expect("connect");
    // A node that stops answering fails the test instead of hanging it.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    Client { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream }
}

impl Client {
    fn write(&mut self, body: Value) {
        let line = json!({"src": "client", "dest": "eventstore", "body": body}).to_string();
        self.writer.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// The next line's body, or `None` at the end of the connection.
    fn next_body(&mut self) -> Option<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).unwrap() == 0 {
            return None;
        }
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        Some(v["body"].clone())
    }
}

/// Guards subscriptions that cost a thread each: one connection could open
/// 3,000 subscriptions and so 3,000 threads, each woken and reading the log
/// on every commit (other clients' appends ran 9x slower), and closing the
/// connection joined them one by one (152 s). Now one thread per connection
/// pushes all its subscriptions: 1,000 of them (the limit raised to that)
/// add a few threads, not 1,000; the 1,001st is refused with code 1000;
/// every subscription gets its catch-up and live events; and closing the
/// connection ends them all (the test only has to finish).
#[test]
fn a_thousand_subscriptions_on_one_connection_cost_no_thread_each() {
    const SUBS: u64 = 1000;
    let (_dir, store) = crate::common::temp_store();
    for n in 1..=3 {
        store.append("a-1", eventfold::ExpectedVersion::Any, [crate::common::ev("E", n)]).unwrap();
    }
    let options = eventfold::protocol::ServeOptions::default().with_max_subscriptions(SUBS as usize);
    let addr = tcp_node_in_process(&store, options);
    let before = threads();
    let mut c = client(&addr);
    for i in 1..=SUBS {
        c.write(json!({"type": "subscribe", "msg_id": i, "from_sequence": 1}));
    }
    let (mut subscribed, mut pushed) = (HashSet::new(), HashMap::<u64, Vec<u64>>::new());
    while subscribed.len() < SUBS as usize || pushed.values().map(Vec::len).sum::<usize>() < 3 * SUBS as usize
    {
        let b = c.next_body().expect("the node answers");
        match b["type"].as_str() {
            Some("subscribed") => assert!(subscribed.insert(b["subscription_id"].as_u64().unwrap())),
            Some("event") => pushed
                .entry(b["subscription_id"].as_u64().unwrap())
                .or_default()
                .push(b["event"]["sequence_number"].as_u64().unwrap()),
            _ => panic!("unexpected {b}"),
        }
    }
    assert_eq!(subscribed, (1..=SUBS).collect::<HashSet<u64>>());
    assert!(pushed.values().all(|seqs| seqs == &[1, 2, 3]), "each subscription caught up once, in order");

    c.write(json!({"type": "subscribe", "msg_id": SUBS + 1}));
    let b = c.next_body().unwrap();
    assert_eq!((b["code"].as_u64(), b["in_reply_to"].as_u64()), (Some(1000), Some(SUBS + 1)), "{b}");
    assert!(b["text"].as_str().unwrap().contains("--max-subscriptions"), "{b}");

    let during = threads();
    assert!(during < before + 50, "{SUBS} subscriptions took {} threads", during.saturating_sub(before));

    // A live event, appended by another client, reaches every subscription.
    let mut other = client(&addr);
    let r = other.send(json!({"type": "append", "msg_id": 1, "aggregate_id": "a-1", "event_type": "E", "event_data": {}, "version": 3}));
    assert_eq!(r["type"], "appended");
    let mut live = HashSet::new();
    while live.len() < SUBS as usize {
        let b = c.next_body().unwrap();
        assert_eq!(
            (b["type"].as_str(), b["event"]["sequence_number"].as_u64()),
            (Some("event"), Some(4)),
            "{b}"
        );
        assert!(live.insert(b["subscription_id"].as_u64().unwrap()));
    }

    // Closing the connection ends every subscription and then the connection.
    c.writer.shutdown(std::net::Shutdown::Write).unwrap();
    while let Some(b) = c.next_body() {
        assert_eq!(b["type"], "event", "{b}");
    }
    let r = other.send(json!({"type": "stats", "msg_id": 2}));
    assert_eq!(r["type"], "stats_ok");
}

/// Guards the connection limit: a node served any number of connections
/// (a thread, a socket and their buffers each). One more than
/// `max_connections` gets one `error` line with code 1000 naming the flag,
/// and is closed; once a served client's connection has ended, a new one is
/// served.
#[test]
fn connections_over_the_limit_get_one_error_line() {
    let (_dir, store) = crate::common::temp_store();
    let options = eventfold::protocol::ServeOptions::default().with_max_connections(2);
    let addr = tcp_node_in_process(&store, options);
    let (mut a, mut b) = (client(&addr), client(&addr));
    for c in [&mut a, &mut b] {
        assert_eq!(c.send(json!({"type": "stats", "msg_id": 1}))["type"], "stats_ok");
    }
    let mut refused = client(&addr);
    let r = refused.next_body().expect("one line");
    assert_eq!((r["type"].as_str(), r["code"].as_u64()), (Some("error"), Some(1000)), "{r}");
    assert!(r["text"].as_str().unwrap().contains("--max-connections"), "{r}");
    assert_eq!(refused.next_body(), None, "then the connection is closed");

    a.writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(a.next_body(), None);
    let mut again = client(&addr);
    assert_eq!(again.send(json!({"type": "stats", "msg_id": 2}))["type"], "stats_ok");
    assert_eq!(b.send(json!({"type": "stats", "msg_id": 3}))["type"], "stats_ok");
}

/// Guards the subscription limit on stdio (`--max-subscriptions`): past it
/// `subscribe` is error 1000, and an `unsubscribe` makes room again.
#[test]
fn subscriptions_over_the_limit_are_refused_until_one_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &["--max-subscriptions", "2"]);
    for i in 1..=2 {
        assert_eq!(body(&node.send(json!({"type": "subscribe", "msg_id": i})))["type"], "subscribed");
    }
    let r = node.send(json!({"type": "subscribe", "msg_id": 3}));
    assert_eq!((body(&r)["code"].as_u64(), body(&r)["in_reply_to"].as_u64()), (Some(1000), Some(3)), "{r}");
    assert!(body(&r)["text"].as_str().unwrap().contains("has 2 subscriptions"), "{r}");
    assert_eq!(
        body(&node.send(json!({"type": "unsubscribe", "msg_id": 4, "subscription_id": 1})))["type"],
        "unsubscribed"
    );
    let r = node.send(json!({"type": "subscribe", "msg_id": 5}));
    assert_eq!(body(&r), &json!({"type": "subscribed", "in_reply_to": 5, "subscription_id": 3}));
    node.finish();
}

/// Guards the accept loop at the file-descriptor limit. It retried a failing
/// `accept` at once: one core spun and stderr got 266 MB of `accept failed`
/// in 5 s. The node (a child process, its descriptor limit lowered with
/// `prlimit`) now logs at most about one line a second — a bound a correct
/// node cannot exceed however slow the machine, since it is counted against
/// the time that passed — and serves clients again once descriptors are free.
#[test]
fn at_the_descriptor_limit_the_node_backs_off_and_recovers() {
    if !std::process::Command::new("prlimit").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: needs prlimit (util-linux) to lower the node's descriptor limit");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let child = bin()
        .arg("--data")
        .arg(dir.path())
        .args(["serve", "--tcp", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed however the test ends.
    let mut node = TcpNode { child, addr: String::new() };
    let (tx, log) = std::sync::mpsc::channel();
    let stderr = BufReader::new(node.child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = log.recv().unwrap();
    let addr = first.rsplit("listening on ").next().unwrap().trim().to_string();
    let pid = node.child.id();
    let prlimit = |soft: usize| {
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    // Every descriptor number below the limit is in use, then clients queue.
    let fds: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    let top = fds.iter().max().unwrap() + 1;
    prlimit(top);
    let waiting: Vec<Client> = (0..top - fds.len() + 2).map(|_| client(&addr)).collect();
    let failed = log.iter().find(|l| l.contains("accept failed")).expect("accept fails at the limit");
    let since = std::time::Instant::now();

    prlimit(4096);
    let mut late = client(&addr);
    assert_eq!(late.send(json!({"type": "stats", "msg_id": 1}))["type"], "stats_ok");
    for mut c in waiting {
        // Served, or told why not when its accept took the last descriptor.
        c.write(json!({"type": "stats", "msg_id": 2}));
        let b = c.next_body().expect("a line");
        assert!(b["type"] == "stats_ok" || b["code"] == 11, "{b}");
    }
    let elapsed = since.elapsed().as_secs();
    drop(node);
    let failures = 1 + log.iter().filter(|l| l.contains("accept failed")).count() as u64;
    assert!(failures <= elapsed + 2, "{failures} accept lines in {elapsed} s");
    assert!(failed.contains("Too many open files") && failed.contains("retrying in"), "{failed}");
}
