//! Tags and DCB over the protocol: tags on appends and reads, `read_all`
//! and `subscribe` by tag, `read_query`, and appends with a `condition`.

use serde_json::{Value, json};

use crate::cli::StdioNode;

fn body(reply: &Value) -> &Value {
    &reply["body"]
}

fn registered(name: &str) -> Value {
    json!({"event_type": "UserRegistered", "event_data": {"name": name}, "tags": [format!("username:{name}")]})
}

fn username(name: &str) -> Value {
    json!({"items": [{"types": ["UserRegistered"], "tags": [format!("username:{name}")]}]})
}

#[test]
fn tags_go_in_and_come_back_and_filter_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let mut append = json!({"type": "append", "msg_id": 1, "aggregate_id": "user-1", "version": "no_stream"});
    for (k, v) in registered("ann").as_object().unwrap() {
        append[k] = v.clone();
    }
    let r = node.send(append);
    assert_eq!(body(&r)["type"], "appended", "{r}");
    let r = node
        .send(json!({"type": "append_batch", "msg_id": 2, "aggregate_id": "user-2", "version": "no_stream",
        "events": [registered("bob"), {"event_type": "Noted", "event_data": {}}]}));
    assert_eq!(body(&r)["type"], "appended_batch", "{r}");
    let r = node.send(json!({"type": "read_all", "msg_id": 3, "tags": ["username:bob"]}));
    let events = body(&r)["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{r}");
    assert_eq!(events[0]["tags"], json!(["username:bob"]));
    let r = node.send(json!({"type": "read_stream", "msg_id": 4, "aggregate_id": "user-2"}));
    assert!(body(&r)["events"][1].get("tags").is_none(), "an event without tags has no field: {r}");
    let r = node.send(json!({"type": "append", "msg_id": 5, "aggregate_id": "x-1", "version": "any",
        "event_type": "E", "event_data": {}, "tags": ["a", "a"]}));
    assert_eq!(body(&r)["code"], 12, "a repeated tag is a malformed request: {r}");
    assert!(body(&r)["text"].as_str().unwrap().contains("listed twice"), "{r}");
    node.finish();
}

#[test]
fn read_query_and_a_conditional_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let r = node.send(json!({"type": "read_query", "msg_id": 1, "query": username("ann")}));
    let b = body(&r);
    assert_eq!((b["type"].as_str(), b["head"].as_u64()), (Some("query_events"), Some(0)), "{r}");
    let condition = json!({"fail_if_events_match": username("ann"), "after": 0});
    let r = node
        .send(json!({"type": "append_batch", "msg_id": 2, "aggregate_id": "user-1", "version": "any",
        "events": [registered("ann")], "condition": condition}));
    assert_eq!(body(&r)["type"], "appended_batch", "{r}");
    // The same decision again fails on the event just written.
    let r = node.send(json!({"type": "append_many", "msg_id": 3, "condition": condition, "streams": [
        {"aggregate_id": "user-2", "version": "any", "events": [registered("ann")]}]}));
    let b = body(&r);
    assert_eq!((b["type"].as_str(), b["code"].as_u64()), (Some("error"), Some(22)), "{r}");
    assert!(b["text"].as_str().unwrap().contains("position 1"), "{r}");
    let r =
        node.send(json!({"type": "read_query", "msg_id": 4, "query": username("ann"), "backwards": true}));
    let b = body(&r);
    assert_eq!((b["events"].as_array().unwrap().len(), b["head"].as_u64()), (1, Some(1)), "{r}");
    assert_eq!(b["events"][0]["aggregate_id"], "user-1");
    node.finish();
}

/// A subscription by tag catches up through the index, in order, and
/// then gets live events: every matching event once.
#[test]
fn a_subscription_by_tag_catches_up_and_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let mut want = Vec::new();
    for i in 0..1200u64 {
        let hit = i % 97 == 0;
        let mut e = json!({"event_type": "E", "event_data": {"i": i}});
        if hit {
            e["tags"] = json!(["hit:1"]);
        }
        let r = node
            .send(json!({"type": "append_batch", "msg_id": i, "aggregate_id": format!("s-{}", i % 3),
            "version": "any", "events": [e]}));
        if hit {
            want.push(body(&r)["first_sequence_number"].as_u64().unwrap());
        }
    }
    let r = node.send(json!({"type": "subscribe", "msg_id": 5000, "from_sequence": 1, "tags": ["hit:1"]}));
    assert_eq!(body(&r)["type"], "subscribed", "{r}");
    let mut got = Vec::new();
    while got.len() < want.len() {
        let m = node.read_message();
        assert_eq!(body(&m)["type"], "event", "{m}");
        got.push(body(&m)["event"]["sequence_number"].as_u64().unwrap());
    }
    assert_eq!(got, want);
    // The reply and the pushed event may come in either order.
    let msg = json!({"src": "client", "dest": "eventstore", "body": {"type": "append", "msg_id": 6000,
        "aggregate_id": "s-9", "version": "any", "event_type": "E", "event_data": {}, "tags": ["hit:1"]}});
    node.write_line(msg.to_string().as_bytes());
    let two = [node.read_message(), node.read_message()];
    let reply = two.iter().find(|m| body(m)["type"] == "appended").expect("the reply");
    let pushed = two.iter().find(|m| body(m)["type"] == "event").expect("the live event");
    assert_eq!(body(pushed)["event"]["sequence_number"], body(reply)["sequence_number"]);
    node.finish();
}

/// Deleting and limiting streams over the protocol.
#[test]
fn delete_stream_and_retention_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let ev = |n: u64| json!({"event_type": "E", "event_data": {"n": n}});
    node.send(json!({"type": "append_batch", "msg_id": 1, "aggregate_id": "log-1", "version": "any",
        "events": [ev(1), ev(2), ev(3), ev(4)]}));
    let r = node.send(json!({"type": "set_stream_retention", "msg_id": 2, "aggregate_id": "log-1",
        "max_count": 2, "reason": "keep two", "metadata": {"user_id": "ops"}}));
    let b = body(&r);
    assert_eq!(
        (b["type"].as_str(), b["max_count"].as_u64(), b["sequence_number"].as_u64()),
        (Some("stream_lifecycle"), Some(2), Some(5)),
        "{r}"
    );
    let r = node.send(json!({"type": "read_stream", "msg_id": 3, "aggregate_id": "log-1"}));
    assert_eq!(body(&r)["events"].as_array().unwrap().len(), 2, "{r}");
    let r = node.send(json!({"type": "delete_stream", "msg_id": 4, "aggregate_id": "log-1", "reason": "gone", "hard": true}));
    assert_eq!(
        (body(&r)["type"].as_str(), body(&r)["hard"].as_bool()),
        (Some("stream_deleted"), Some(true)),
        "{r}"
    );
    let r = node.send(json!({"type": "read_stream", "msg_id": 5, "aggregate_id": "log-1"}));
    assert_eq!(body(&r)["code"], 20, "a tombstoned stream is not found: {r}");
    assert!(body(&r)["text"].as_str().unwrap().contains("deleted for good"), "{r}");
    let r = node.send(json!({"type": "get_stream_lifecycle", "msg_id": 6, "aggregate_id": "log-1"}));
    assert_eq!(body(&r)["tombstoned"], true, "{r}");
    let r = node.send(json!({"type": "delete_stream", "msg_id": 7, "aggregate_id": "none-1", "reason": "x"}));
    assert_eq!(body(&r)["code"], 20, "{r}");
    let r = node.send(json!({"type": "scavenge", "msg_id": 8}));
    assert_eq!(
        (body(&r)["type"].as_str(), body(&r)["in_reply_to"].as_u64()),
        (Some("scavenged"), Some(8)),
        "{r}"
    );
    assert!(body(&r)["events_removed"].as_u64().unwrap() > 0, "{r}");
    let r = node.send(json!({"type": "scavenge", "msg_id": 9}));
    assert_eq!(body(&r)["events_removed"], 0, "nothing left: {r}");
    node.finish();
}
