//! Event metadata as services carry it: correlation and causation ids of
//! any text, the W3C `traceparent`, and stores written before ids were
//! strings.

use std::borrow::Cow;
use std::path::Path;

use eventfold::{Error, EventMetadata, ExpectedVersion, NewEvent, ReadAll, RecordedEvent, Store};
use serde_json::json;
use uuid::Uuid;

use crate::common::{ev, temp_store};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The fixture: a store written by eventfold before correlation and
/// causation ids were strings (UUID ids, extra fields, a binary event, and
/// the extra field `correlation_id` that `eventfold append --metadata`
/// stored then), and its export as that version wrote it.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metadata-v1");

/// A copy of the fixture's data file in a new directory, so no test
/// writes to the checked-in file.
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(FIXTURE).join("data.mdb"), dir.path().join("data.mdb")).unwrap();
    dir
}

fn all_owned(store: &Store) -> Vec<RecordedEvent> {
    store.read_all_batched(ReadAll::new(), 100).unwrap().map(Result::unwrap).collect()
}

/// Guards stores written before ids were strings: every event reads back
/// as that version exported it, byte for byte, UUID ids as their
/// hyphenated text and the old extra field `correlation_id` still an
/// extra field.
#[test]
fn a_store_written_before_string_ids_reads_as_before() {
    let dir = fixture_copy();
    let store = Store::builder(dir.path()).open_read_only().unwrap();
    let expected = std::fs::read_to_string(Path::new(FIXTURE).join("events.jsonl")).unwrap();
    let events = all_owned(&store);
    assert_eq!(events.len(), 6);
    let exported: Vec<String> = events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    assert_eq!(exported, expected.lines().collect::<Vec<_>>());

    let corr = "0190a5b6-7c8d-7e9f-a0b1-c2d3e4f50617";
    let reader = store.read().unwrap();
    let placed = reader.event(1).unwrap().unwrap();
    assert_eq!(placed.correlation_id().as_deref(), Some(corr));
    assert_eq!(placed.causation_id().as_deref(), Some("6f1e2d3c-4b5a-4968-8776-655443322110"));
    assert_eq!((placed.user_id(), placed.traceparent()), (Some("ann"), None));
    let paid = reader.event(2).unwrap().unwrap();
    assert_eq!(paid.causation_id().as_deref(), Some("0190a5b6-7c8d-7e9f-a0b1-000000000001"));
    assert_eq!(events[0].metadata.get("channel"), Some(&json!({"name": "web", "v": 2})));
    assert_eq!(events[3].causation_id.as_deref(), Some("0190a5b6-7c8d-7e9f-a0b1-000000000002"));
    assert_eq!(events[4].event_metadata(), EventMetadata::new());
    let noted = &events[5];
    assert_eq!(noted.correlation_id, None, "an old extra field is not promoted to the id");
    assert_eq!(noted.metadata.get("correlation_id"), Some(&json!("x")));
    assert!(store.verify().unwrap().is_ok());

    // Its export imports as it was, the old extra field included (the
    // streams come in runs, so an import in log order keeps the positions).
    let (_target_dir, target) = temp_store();
    for stream in ["order-1", "blob-1", "order-2"] {
        let batch: Vec<RecordedEvent> = events.iter().filter(|e| e.stream_id == stream).cloned().collect();
        target.submit_recorded(batch).unwrap().wait().unwrap();
    }
    assert_eq!(all_owned(&target), events);
}

/// The old store takes new events beside the old ones, and `caused_by` an
/// old event chains its UUID ids as before.
#[test]
fn a_store_written_before_string_ids_takes_string_ids() {
    let dir = fixture_copy();
    let store = Store::open(dir.path()).unwrap();
    let old = store.read().unwrap().event(1).unwrap().unwrap().to_owned().unwrap();
    let meta = EventMetadata::caused_by(&old).traceparent(TRACEPARENT);
    store
        .append(
            "order-1",
            ExpectedVersion::Exact(3),
            [
                NewEvent::json("Refunded", &json!({})).with_metadata(meta),
                NewEvent::json("Noted", &json!({}))
                    .with_metadata(EventMetadata::new().correlation_id("req-7f3a")),
            ],
        )
        .unwrap();
    let events = all_owned(&store);
    assert_eq!(events[6].correlation_id.as_deref(), Some("0190a5b6-7c8d-7e9f-a0b1-c2d3e4f50617"));
    assert_eq!(events[6].causation_id.as_deref(), Some("0190a5b6-7c8d-7e9f-a0b1-000000000001"));
    assert_eq!(events[6].traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(events[7].correlation_id.as_deref(), Some("req-7f3a"));
    assert!(store.verify().unwrap().is_ok());
}

/// The ids a service carries come back exactly as appended, whichever
/// way the event is read: in place, owned, by a subscription, through an
/// export and an import.
#[test]
fn string_ids_and_traceparent_round_trip_through_the_store() {
    let (_dir, store) = temp_store();
    let uuid = Uuid::now_v7();
    let ids = [
        "req-7f3a".to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
        uuid.to_string(),
        uuid.to_string().to_uppercase(),
        "ünïcødé ☃".to_string(),
        "with \"quotes\" and \\".to_string(),
    ];
    for (k, id) in ids.iter().enumerate() {
        let meta = EventMetadata::new()
            .correlation_id(id)
            .causation_id(format!("cmd-{k}"))
            .user_id("ann")
            .traceparent(TRACEPARENT)
            .extra("ip", "10.0.0.1");
        store.append("order-1", ExpectedVersion::Any, [ev("Placed", k as u64).with_metadata(meta)]).unwrap();
    }
    let reader = store.read().unwrap();
    for (k, id) in ids.iter().enumerate() {
        let e = reader.event(k as u64 + 1).unwrap().unwrap();
        assert_eq!(e.correlation_id().as_deref(), Some(id.as_str()));
        assert_eq!(e.causation_id().as_deref(), Some(format!("cmd-{k}").as_str()));
        assert_eq!(e.traceparent().as_deref(), Some(TRACEPARENT));
        if e.is_zero_copy() && k == 0 {
            assert!(matches!(e.correlation_id(), Some(Cow::Borrowed("req-7f3a"))), "read in place");
        }
        let owned = e.to_owned().unwrap();
        assert_eq!(owned.correlation_id.as_deref(), Some(id.as_str()));
        assert_eq!(owned.traceparent.as_deref(), Some(TRACEPARENT));
        assert_eq!(serde_json::Value::Object(owned.metadata.clone()), json!({"ip": "10.0.0.1"}));
        let line = serde_json::to_value(&owned).unwrap();
        assert_eq!(line["correlation_id"], id.as_str());
        assert_eq!(line["traceparent"], TRACEPARENT);
    }
    drop(reader);
    let exported = all_owned(&store);
    let mut sub = store.subscribe(eventfold::SubscribeFrom::Start, eventfold::Filter::new()).unwrap();
    for e in &exported {
        let got = sub.next_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(got.as_ref(), Some(e), "a subscription hands out the same metadata");
    }
    let (_target_dir, target) = temp_store();
    target.submit_recorded(exported.clone()).unwrap().wait().unwrap();
    assert_eq!(all_owned(&target), exported, "an import keeps every id as it was");
}

#[test]
fn invalid_ids_and_reserved_names_are_refused_and_nothing_is_written() {
    let (_dir, store) = temp_store();
    let refused = |meta: EventMetadata| {
        store.append("order-1", ExpectedVersion::Any, [ev("Placed", 1).with_metadata(meta)]).unwrap_err()
    };
    let err = refused(EventMetadata::new().correlation_id("x".repeat(eventfold::MAX_METADATA_ID_LEN + 1)));
    assert!(matches!(err, Error::InvalidMetadataField { field: "correlation id", .. }), "{err}");
    assert!(err.to_string().contains("is 257 bytes, the limit is 256"), "{err}");
    let err = refused(EventMetadata::new().causation_id("req\r\n7f3a"));
    assert_eq!(
        err.to_string(),
        "invalid causation id \"req\\r\\n7f3a\": must not contain control characters"
    );
    let err = refused(EventMetadata::new().traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736"));
    assert!(matches!(err, Error::InvalidMetadataField { field: "traceparent", .. }), "{err}");
    assert!(err.to_string().contains("W3C trace context"), "{err}");
    let err = refused(EventMetadata::new().extra("$correlation_id", "x"));
    assert!(err.to_string().contains("reserves for its own use"), "{err}");
    let err = refused(EventMetadata::new().extra("correlation_id", "x"));
    assert!(err.to_string().contains("set it with EventMetadata::correlation_id"), "{err}");
    assert_eq!(store.head().unwrap(), 0);
}
