//! The protocol as a backend for other languages' frameworks: atomic
//! multi-aggregate appends, consumer checkpoints in the same commit,
//! conditional appends without a read, bounded and backward reads,
//! listings and lookups, durable consumers, large batches.

use serde_json::{Value, json};

use crate::cli::StdioNode;

fn body(reply: &Value) -> &Value {
    &reply["body"]
}

fn ev(n: u64) -> Value {
    json!({"event_type": "E", "event_data": {"n": n}})
}

fn head(node: &mut StdioNode) -> u64 {
    body(&node.send(json!({"type": "stats", "msg_id": 999})))["head"].as_u64().unwrap()
}

/// `append_many` commits every aggregate's events or none: one aggregate
/// at the wrong version refuses the whole request, naming that aggregate.
#[test]
fn append_many_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let r = node.send(json!({"type": "append_many", "msg_id": 1, "streams": [
        {"aggregate_id": "order-1", "version": "no_stream", "events": [ev(1), ev(2)]},
        {"aggregate_id": "stock-1", "version": 0, "events": [ev(3)]}]}));
    let b = body(&r);
    assert_eq!((b["type"].as_str(), b["in_reply_to"].as_u64()), (Some("appended_many"), Some(1)), "{r}");
    assert_eq!(b["streams"][0]["aggregate_id"], "order-1");
    assert_eq!(
        (b["streams"][0]["first_sequence_number"].as_u64(), b["streams"][0]["last_sequence_number"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        (b["streams"][1]["version"].as_u64(), b["streams"][1]["event_ids"].as_array().unwrap().len()),
        (Some(1), 1)
    );

    let r = node.send(json!({"type": "append_many", "msg_id": 2, "streams": [
        {"aggregate_id": "order-1", "version": 2, "events": [ev(4)]},
        {"aggregate_id": "stock-1", "version": 0, "events": [ev(5)]}]}));
    let b = body(&r);
    assert_eq!(b["type"], "concurrency_error", "{r}");
    assert_eq!((b["aggregate_id"].as_str(), b["current_version"].as_u64()), (Some("stock-1"), Some(1)));
    assert_eq!(head(&mut node), 3, "nothing of the refused request was written");

    let r = node.send(json!({"type": "append_many", "msg_id": 3, "streams": [
        {"aggregate_id": "a-1", "version": "any", "events": [ev(1)]},
        {"aggregate_id": "a-1", "version": "any", "events": [ev(2)]}]}));
    assert_eq!((body(&r)["code"].as_u64(), body(&r)["in_reply_to"].as_u64()), (Some(12), Some(3)), "{r}");
    let r = node.send(json!({"type": "append_many", "msg_id": 4, "streams": []}));
    assert_eq!(body(&r)["code"], 12, "{r}");
    node.finish();
}

/// A client that numbers its events itself appends without reading first:
/// `{"first": F}` is "the first event gets version F", and `version_below`
/// is "the aggregate's version is below X", checked at the commit.
#[test]
fn appends_conditional_on_the_first_version_or_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let append = |msg_id: u64, condition: Value, event_id: Option<&str>| {
        let mut b = json!({"type": "append", "msg_id": msg_id, "aggregate_id": "acc-1", "event_type": "E", "event_data": {}});
        for (k, v) in condition.as_object().unwrap() {
            b[k] = v.clone();
        }
        if let Some(id) = event_id {
            b["event_id"] = json!(id);
        }
        b
    };
    let r = node.send(append(1, json!({"version": {"first": 1}}), None));
    assert_eq!((body(&r)["type"].as_str(), body(&r)["version"].as_u64()), (Some("appended"), Some(1)), "{r}");
    let r = node.send(append(2, json!({"version": {"first": 1}}), None));
    assert_eq!(
        (body(&r)["type"].as_str(), body(&r)["current_version"].as_u64()),
        (Some("concurrency_error"), Some(1))
    );
    let r = node.send(append(3, json!({"version": {"first": 2}}), None));
    assert_eq!(body(&r)["version"], 2, "{r}");

    let id = uuid::Uuid::now_v7().to_string();
    let r = node.send(append(4, json!({"version_below": 3}), Some(&id)));
    assert_eq!((body(&r)["type"].as_str(), body(&r)["version"].as_u64()), (Some("appended"), Some(3)), "{r}");
    let r = node.send(append(5, json!({"version_below": 3}), None));
    assert_eq!(body(&r)["type"], "concurrency_error", "{r}");
    assert_eq!(body(&r)["error"], "Expected a version below 3, got 3");
    assert_eq!(body(&r)["current_version"], 3);
    // The resend of a stored event is an idempotent retry, whatever the bound says now.
    let r = node.send(append(6, json!({"version_below": 3}), Some(&id)));
    assert_eq!(
        (body(&r)["already_stored"].as_bool(), body(&r)["version"].as_u64()),
        (Some(true), Some(3)),
        "{r}"
    );
    // Both conditions at once: an exact version and a bound.
    let r = node.send(append(7, json!({"version": 3, "version_below": 3}), None));
    assert_eq!(body(&r)["type"], "concurrency_error", "{r}");
    let r = node.send(append(8, json!({"version": 3, "version_below": 10}), None));
    assert_eq!(body(&r)["version"], 4, "{r}");
    let r = node.send(append(9, json!({"version": {"first": 0}}), None));
    assert!(body(&r)["text"].as_str().unwrap().contains("add 1 to a count that starts at 0"), "{r}");
    // In append_many, per aggregate.
    let r = node.send(json!({"type": "append_many", "msg_id": 10, "streams": [
        {"aggregate_id": "acc-1", "version_below": 5, "events": [ev(1)]},
        {"aggregate_id": "acc-2", "version_below": 1, "events": [ev(2)]}]}));
    assert_eq!(body(&r)["type"], "appended_many", "{r}");
    let r = node.send(json!({"type": "append_many", "msg_id": 11, "streams": [
        {"aggregate_id": "acc-3", "version": "any", "events": [ev(1)]},
        {"aggregate_id": "acc-2", "version_below": 1, "events": [ev(2)]}]}));
    assert_eq!(
        (body(&r)["type"].as_str(), body(&r)["aggregate_id"].as_str()),
        (Some("concurrency_error"), Some("acc-2"))
    );
    assert_eq!(head(&mut node), 6);
    node.finish();
}

/// Events and a consumer's checkpoint in one commit: a checkpoint that
/// would not advance refuses the request and writes nothing, so a
/// process that replays an event cannot record its effect twice.
#[test]
fn events_and_a_checkpoint_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    node.send(json!({"type": "append_batch", "msg_id": 1, "aggregate_id": "in-1", "version": "any", "events": [ev(1), ev(2)]}));
    let r = node.send(json!({"type": "get_checkpoint", "msg_id": 2, "consumer": "proc"}));
    assert_eq!(
        (body(&r)["type"].as_str(), body(&r)["position"].as_u64()),
        (Some("checkpoint"), Some(0)),
        "{r}"
    );
    let tracked = |msg_id: u64, position: u64| {
        json!({"type": "append_many", "msg_id": msg_id, "checkpoint": {"consumer": "proc", "position": position},
               "streams": [{"aggregate_id": "out-1", "version": "any", "events": [ev(position)]}]})
    };
    let r = node.send(tracked(3, 1));
    assert_eq!(
        (body(&r)["type"].as_str(), body(&r)["checkpoint"].as_u64()),
        (Some("appended_many"), Some(1)),
        "{r}"
    );
    for (msg_id, position) in [(4, 1), (5, 0)] {
        let r = node.send(tracked(msg_id, position));
        assert_eq!(
            (body(&r)["code"].as_u64(), body(&r)["in_reply_to"].as_u64()),
            (Some(22), Some(msg_id)),
            "{r}"
        );
        assert!(body(&r)["text"].as_str().unwrap().contains("is at checkpoint 1"), "{r}");
    }
    let r = node.send(tracked(6, 99));
    assert_eq!(body(&r)["code"], 22, "{r}");
    assert!(body(&r)["text"].as_str().unwrap().contains("past the head of the log"), "{r}");
    assert_eq!(head(&mut node), 3, "no refused request wrote anything");
    // A version conflict leaves the checkpoint where it was.
    let r = node
        .send(json!({"type": "append_many", "msg_id": 7, "checkpoint": {"consumer": "proc", "position": 2},
        "streams": [{"aggregate_id": "out-1", "version": 0, "events": [ev(1)]}]}));
    assert_eq!(body(&r)["type"], "concurrency_error", "{r}");
    let r = node.send(json!({"type": "get_checkpoint", "msg_id": 8, "consumer": "proc"}));
    assert_eq!(body(&r)["position"], 1);
    // The checkpoint alone (an event that caused nothing).
    let r = node.send(json!({"type": "append_many", "msg_id": 9, "streams": [], "checkpoint": {"consumer": "proc", "position": 2}}));
    assert_eq!(
        (body(&r)["streams"].as_array().map(Vec::len), body(&r)["checkpoint"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );
    let r = node.send(json!({"type": "get_checkpoint", "msg_id": 10, "consumer": "proc"}));
    assert_eq!(body(&r)["position"], 2);
    let r = node.send(json!({"type": "get_checkpoint", "msg_id": 11, "consumer": ""}));
    assert_eq!(body(&r)["code"], 12, "{r}");
    node.finish();
    let store = eventfold::Store::open(dir.path()).unwrap();
    assert_eq!(store.consumer("proc").unwrap().checkpoint(), 2, "the durable consumer's own checkpoint");
}

/// `read_all` up to a sequence number, and backwards: the newest events
/// first, with a filter, paging down with `to_sequence`.
#[test]
fn read_all_with_an_upper_bound_and_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    for n in 1..=600u64 {
        let stream = if n % 100 == 0 { "rare-1" } else { "order-1" };
        node.send(json!({"type": "append", "msg_id": n, "aggregate_id": stream, "event_type": "E", "event_data": {"n": n}, "version": "any"}));
    }
    let seqs = |r: &Value| -> Vec<u64> {
        body(r)["events"].as_array().unwrap().iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect()
    };
    let r = node.send(json!({"type": "read_all", "msg_id": 1, "to_sequence": 3}));
    assert_eq!(seqs(&r), [1, 2, 3]);
    assert_eq!(body(&r)["head"], 600);
    let r = node.send(json!({"type": "read_all", "msg_id": 2, "backwards": true, "limit": 3}));
    assert_eq!(seqs(&r), [600, 599, 598]);
    let r =
        node.send(json!({"type": "read_all", "msg_id": 3, "backwards": true, "limit": 2, "to_position": 5}));
    assert_eq!(seqs(&r), [5, 4]);
    let r = node.send(
        json!({"type": "read_all", "msg_id": 4, "backwards": true, "from_sequence": 3, "to_sequence": 5}),
    );
    assert_eq!(seqs(&r), [5, 4, 3]);
    // "The last event of this category": far below the head, past several windows.
    let r = node.send(json!({"type": "read_all", "msg_id": 5, "backwards": true, "limit": 1, "category": "rare", "to_sequence": 499}));
    assert_eq!(seqs(&r), [400]);
    let r = node.send(json!({"type": "read_all", "msg_id": 6, "backwards": true, "category": "rare"}));
    assert_eq!(seqs(&r), [600, 500, 400, 300, 200, 100]);
    assert_eq!(body(&r)["events"][0]["aggregate_id"], "rare-1");
    let r = node.send(json!({"type": "read_all", "msg_id": 7, "backwards": true, "limit": 1000}));
    let all = seqs(&r);
    assert_eq!((all.len(), all[0], all[599]), (600, 600, 1));
    let r = node.send(
        json!({"type": "read_all", "msg_id": 8, "backwards": true, "from_sequence": 7, "to_sequence": 6}),
    );
    assert_eq!(seqs(&r), Vec::<u64>::new());
    node.finish();
}

/// Listing aggregates a page at a time, and one event by id or position.
#[test]
fn list_streams_and_get_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    for (n, stream) in ["user-1", "user-2", "order-1", "user-3"].iter().enumerate() {
        node.send(json!({"type": "append", "msg_id": n, "aggregate_id": stream, "event_type": "E", "event_data": {}, "version": "any"}));
    }
    let ids = |r: &Value| -> Vec<String> {
        body(r)["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["aggregate_id"].as_str().unwrap().to_string())
            .collect()
    };
    let r = node.send(json!({"type": "list_streams", "msg_id": 1}));
    assert_eq!(ids(&r), ["order-1", "user-1", "user-2", "user-3"], "{r}");
    assert_eq!(
        (body(&r)["streams"][0]["version"].as_u64(), body(&r)["streams"][0]["last_sequence_number"].as_u64()),
        (Some(1), Some(3))
    );
    let r = node.send(json!({"type": "list_streams", "msg_id": 2, "prefix": "user-", "limit": 2}));
    assert_eq!(ids(&r), ["user-1", "user-2"]);
    let r = node
        .send(json!({"type": "list_streams", "msg_id": 3, "prefix": "user-", "after": "user-2", "limit": 2}));
    assert_eq!(ids(&r), ["user-3"]);

    let r = node.send(json!({"type": "get_event", "msg_id": 4, "sequence_number": 2}));
    assert_eq!(
        (body(&r)["type"].as_str(), body(&r)["event"]["aggregate_id"].as_str()),
        (Some("event_found"), Some("user-2")),
        "{r}"
    );
    let id = body(&r)["event"]["event_id"].clone();
    let r = node.send(json!({"type": "get_event", "msg_id": 5, "event_id": id}));
    assert_eq!(body(&r)["event"]["sequence_number"], 2, "{r}");
    let r = node.send(json!({"type": "get_event", "msg_id": 6, "sequence_number": 9}));
    assert_eq!((body(&r)["code"].as_u64(), body(&r)["in_reply_to"].as_u64()), (Some(20), Some(6)), "{r}");
    let r = node.send(json!({"type": "get_event", "msg_id": 7, "event_id": uuid::Uuid::now_v7()}));
    assert_eq!(body(&r)["code"], 20, "{r}");
    node.finish();
}

/// A named consumer subscribes from just after its checkpoint, and `ack`
/// moves the checkpoint forward, never back.
#[test]
fn durable_consumers_subscribe_from_their_checkpoint_and_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    node.send(json!({"type": "append_batch", "msg_id": 1, "aggregate_id": "in-1", "version": "any", "events": [ev(1), ev(2), ev(3)]}));
    let r = node.send(json!({"type": "ack", "msg_id": 2, "consumer": "mailer", "sequence_number": 2}));
    assert_eq!((body(&r)["type"].as_str(), body(&r)["checkpoint"].as_u64()), (Some("acked"), Some(2)), "{r}");
    let r = node.send(json!({"type": "ack", "msg_id": 3, "consumer": "mailer", "sequence_number": 1}));
    assert_eq!(body(&r)["checkpoint"], 2, "an older ack is harmless: {r}");
    let r = node.send(json!({"type": "ack", "msg_id": 4, "consumer": "mailer", "sequence_number": 7}));
    assert_eq!(body(&r)["code"], 22, "{r}");
    let r = node.send(json!({"type": "subscribe", "msg_id": 5, "consumer": "mailer", "from_sequence": 1}));
    assert_eq!(body(&r)["code"], 12, "{r}");
    let r = node.send(json!({"type": "subscribe", "msg_id": 6, "consumer": "mailer"}));
    assert_eq!(body(&r)["type"], "subscribed", "{r}");
    let pushed = node.read_message();
    assert_eq!(body(&pushed)["event"]["sequence_number"], 3, "{pushed}");
    node.finish();
}

/// One aggregate's 10,000 events (1.1 MB, over the old 1 MiB line limit)
/// in one atomic append, at the default limit.
#[test]
fn a_ten_thousand_event_batch_is_one_atomic_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = StdioNode::start(dir.path(), &[]);
    let events: Vec<Value> = (0..10_000u64)
        .map(|n| json!({"event_type": "Ticked", "event_data": {"n": n, "pad": "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghij"}}))
        .collect();
    let line = json!({"body": {"type": "append_batch", "msg_id": 1, "aggregate_id": "big-1", "version": "no_stream", "events": events}}).to_string();
    assert!(line.len() > 1_100_000, "{}", line.len());
    let r = node.send_raw(line.as_bytes());
    assert_eq!(body(&r)["type"], "appended_batch", "{r}");
    assert_eq!(
        (body(&r)["last_sequence_number"].as_u64(), body(&r)["version"].as_u64()),
        (Some(10_000), Some(10_000))
    );
    // The same in append_many, beside another aggregate.
    let events: Vec<Value> = (0..10_000u64).map(ev).collect();
    let line = json!({"body": {"type": "append_many", "msg_id": 2, "streams": [
        {"aggregate_id": "big-2", "version": "no_stream", "events": events},
        {"aggregate_id": "big-1", "version": 10_000, "events": [ev(1)]}]}})
    .to_string();
    let r = node.send_raw(line.as_bytes());
    assert_eq!(body(&r)["streams"][1]["first_sequence_number"], 20_001, "{r}");
    node.finish();
}
