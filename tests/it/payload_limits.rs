//! JSON that an append takes must be readable by every reader of the store.

use eventfold::{Error, EventMetadata, ExpectedVersion, MAX_JSON_DEPTH, NewEvent};
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
}
