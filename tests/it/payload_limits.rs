//! JSON that an append takes must be readable by every reader of the store,
//! and the views for people show it as stored.

use eventfold::{
    Error, EventMetadata, ExpectedVersion, Filter, JSON_STATE_SNAPSHOT_SCHEMA, MAX_JSON_DEPTH, NewEvent,
    NewSnapshot, ReadAll, ReadStream, SubscribeFrom,
};
use serde_json::{Value, json};

use crate::common::temp_store;

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_value(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

/// Guards the append's check against JSON that serde_json can skip over
/// but not parse into a value: a number beyond a 64-bit float (`1e400`, a
/// 400-digit integer), nesting deeper than 100 levels (also through
/// `NewEvent::json` of a deep `Value`, and in metadata), half a surrogate
/// pair. Such a payload used to be stored, after which the JSON-merge
/// state, snapshots and `eventfold state` failed for its stream forever.
/// Each is now `InvalidPayload` / `InvalidMetadata` saying what is wrong,
/// and nothing is written.
#[test]
fn unreadable_json_is_refused_at_append_and_nothing_is_stored() {
    let (_dir, store) = temp_store();
    let deep = nested(500_000);
    let cases: [(&str, &str); 7] = [
        (r#"{"x":1e400}"#, "number out of range at line 1 column 10"),
        (r#"{"x":1e999999}"#, "number out of range"),
        (r#"[-1.7976931348623159e308]"#, "number out of range"),
        (&"9".repeat(400), "number out of range"),
        (&deep, "nested more than 100 levels deep at line 1 column 101"),
        (r#"{"s":"\ud800"}"#, "hex escape"),
        (r#"{"a":1"#, "EOF while parsing an object"),
    ];
    for (text, problem) in cases {
        let err = store
            .append("s-1", ExpectedVersion::Any, [NewEvent::json_bytes("E", text.as_bytes().to_vec())])
            .unwrap_err();
        let Error::InvalidPayload { event_type, reason } = &err else { panic!("{err:?}") };
        assert_eq!(event_type, "E");
        assert!(reason.contains(problem), "{}: {reason}", &text[..text.len().min(40)]);
    }
    let err =
        store.append("s-1", ExpectedVersion::Any, [NewEvent::json("E", &nested_value(MAX_JSON_DEPTH + 1))]);
    assert!(
        matches!(&err, Err(Error::InvalidPayload { reason, .. }) if reason.contains("nested more than 100")),
        "{err:?}"
    );
    let mut deep_metadata = EventMetadata::new();
    deep_metadata.extra.insert("trace".into(), nested_value(MAX_JSON_DEPTH));
    let err = store.append(
        "s-1",
        ExpectedVersion::Any,
        [NewEvent::json("E", &json!({})).with_metadata(deep_metadata)],
    );
    assert!(
        matches!(&err, Err(Error::InvalidMetadata { reason }) if reason.contains("nested more than 100")),
        "{err:?}"
    );
    assert_eq!(store.read().unwrap().head().unwrap(), 0, "nothing was written");
}

/// Guards the other side of the rule: what the check lets through (the
/// deepest nesting, the largest float, underflow to zero, integers beyond
/// 64 bits, surrogate pairs) is read back by every reader — the JSON-merge
/// state, its snapshots, `payload_json`, export, subscriptions — and the
/// state keeps each value's text.
#[test]
fn what_is_accepted_is_readable_by_every_reader() {
    let (_dir, store) = temp_store();
    let payloads = [
        format!(r#"{{"deep":{}}}"#, nested(MAX_JSON_DEPTH - 1)),
        r#"{"max":1.7976931348623157e308,"tiny":-1e-400,"big":12345678901234567890123,"f":1.50}"#.to_string(),
        r#"{"smile":"\ud83d\ude00"}"#.to_string(),
        nested(MAX_JSON_DEPTH),
    ];
    let events = payloads.iter().map(|p| NewEvent::json_bytes("E", p.as_bytes().to_vec()));
    store.append("ok-1", ExpectedVersion::NoStream, events).unwrap();
    let mut metadata = EventMetadata::new();
    metadata.extra.insert("trace".into(), nested_value(MAX_JSON_DEPTH - 1));
    store
        .append(
            "ok-1",
            ExpectedVersion::Exact(4),
            [NewEvent::json("E", &json!({"last": 1})).with_metadata(metadata)],
        )
        .unwrap();

    let reader = store.read().unwrap();
    for e in reader.stream("ok-1", ReadStream::forward()).unwrap() {
        let e = e.unwrap().to_owned().unwrap();
        e.payload_json().unwrap();
        // An export line holds the payload one level down; it still parses.
        serde_json::from_str::<Value>(&serde_json::to_string(&e).unwrap()).unwrap();
    }
    drop(reader);
    let state = store.json_state("ok-1", ReadStream::forward()).unwrap();
    assert_eq!((state.version, state.events, state.skipped), (5, 4, 1));
    assert_eq!(state.state.get("big"), Some("12345678901234567890123"));
    assert_eq!(state.state.get("f"), Some("1.50"));
    assert_eq!(state.state.get("tiny"), Some("-1e-400"));
    state.state.to_value().unwrap();
    let saved = store.snapshot_json_state("ok-1").unwrap();
    let from_snapshot = store.json_state_as_of("ok-1", None, None).unwrap();
    assert_eq!(from_snapshot, saved);
    assert_eq!(store.latest_json_snapshot("ok-1").unwrap(), Some(saved));

    let mut sub = store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap();
    for _ in 0..5 {
        sub.try_next().unwrap().expect("committed").payload_json().unwrap();
    }
    assert_eq!(store.read().unwrap().all(ReadAll::from_position(1)).unwrap().count(), 5);
}

/// Guards exact numbers through snapshots: a JSON-merge snapshot saved by an
/// older build holds values re-encoded through `serde_json::Value` (`1.5`
/// for `1.50`). A fold must not start from it, or the state would show
/// numbers other than the events'; `get_snapshot` still serves it as saved.
#[test]
fn a_fold_does_not_start_from_a_snapshot_with_re_encoded_numbers() {
    let (_dir, store) = temp_store();
    store
        .append("n-1", ExpectedVersion::NoStream, [NewEvent::json_bytes("E", br#"{"f":1.50}"#.to_vec())])
        .unwrap();
    let legacy = json!({"state": {"f": 1.5}, "version": 1, "position": 1, "events": 1, "skipped": 0});
    let snapshot = NewSnapshot::json("n-1", 1, JSON_STATE_SNAPSHOT_SCHEMA, &legacy).unwrap();
    store.save_snapshot("n-1", snapshot, 3).unwrap();
    let state = store.json_state_as_of("n-1", None, None).unwrap();
    assert_eq!(state.state.to_string(), r#"{"f":1.50}"#);
    let served = store.latest_json_snapshot("n-1").unwrap().unwrap();
    assert_eq!(served.state.to_string(), r#"{"f":1.5}"#);
    // A snapshot made now keeps the text, and folds start from it.
    store.snapshot_json_state("n-1").unwrap();
    assert_eq!(store.latest_json_snapshot("n-1").unwrap().unwrap().state.to_string(), r#"{"f":1.50}"#);
}

#[cfg(feature = "cli")]
mod cli {
    use super::*;
    use crate::cli::{ok, run, stderr};

    /// Guards the CLI's writing commands: `append` and `import` refuse a
    /// payload no reader can parse with one line naming the problem, and
    /// write nothing.
    #[test]
    fn append_and_import_refuse_unreadable_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let o = run(dir.path(), &["append", "s-1", "E", "--payload", r#"{"x":1e400}"#]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("number out of range at line 1 column 10"), "{err}");

        let export = dir.path().join("events.jsonl");
        let line = json!({"position": 1, "stream_id": "s-1", "version": 1, "event_id": uuid::Uuid::now_v7(),
            "event_type": "E", "schema_version": 1, "recorded_at": 1, "content_type": "json", "payload": 0})
        .to_string()
        .replace(r#""payload":0"#, &format!(r#""payload":{}"#, nested(200)));
        std::fs::write(&export, format!("{line}\n")).unwrap();
        let o = run(dir.path(), &["import", export.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("line 1") && err.contains("nested more than 100 levels deep"), "{err}");
        assert_eq!(ok(run(dir.path(), &["read", "--all", "--json"])), "");
    }

    /// Guards exact numbers in the views for people: `read`, `event`,
    /// `state` and `snapshot show` printed payloads through
    /// `serde_json::Value`, so a 23-digit integer came out as
    /// `1.2345678901234568e+22` and `1.50` as `1.5`.
    #[test]
    fn views_show_numbers_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let payload = r#"{"big": 12345678901234567890123, "f": 1.50, "n": {"e": 1E2}}"#;
        ok(run(dir.path(), &["append", "n-1", "E", "--payload", payload]));
        let table = ok(run(dir.path(), &["read", "n-1"]));
        assert!(table.contains(r#"{"big":12345678901234567890123,"f":1.50,"n":{"e":1E2}}"#), "{table}");
        let shown = ok(run(dir.path(), &["event", "1"]));
        assert!(
            shown.contains("data:\n{\n  \"big\": 12345678901234567890123,\n  \"f\": 1.50,\n  \"n\": {\n    \"e\": 1E2\n  }\n}"),
            "{shown}"
        );
        let pretty =
            "{\n  \"big\": 12345678901234567890123,\n  \"f\": 1.50,\n  \"n\": {\n    \"e\": 1E2\n  }\n}";
        let state = ok(run(dir.path(), &["state", "n-1"]));
        assert!(state.contains(pretty), "{state}");
        let json = ok(run(dir.path(), &["--json", "state", "n-1"]));
        assert!(
            json.contains(r#""state":{"big":12345678901234567890123,"f":1.50,"n":{"e": 1E2}}"#),
            "{json}"
        );
        ok(run(dir.path(), &["snapshot", "create", "n-1"]));
        let snapshot = ok(run(dir.path(), &["snapshot", "show", "n-1"]));
        assert!(snapshot.contains(pretty), "{snapshot}");
        let state = ok(run(dir.path(), &["state", "n-1"]));
        assert!(state.contains(pretty), "from the snapshot: {state}");
    }
}
