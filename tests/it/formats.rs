//! Record formats: a store written with record format 2 reads, exports and
//! filters as that build wrote it, and takes format-3 records beside its
//! own (`tests/fixtures/records-v2`, `docs/format.md`).

use std::path::Path;

use eventfold::{EventMetadata, ExpectedVersion, Filter, NewEvent, ReadAll, RecordedEvent, Store};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/records-v2");

fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(FIXTURE).join("data.mdb"), dir.path().join("data.mdb")).unwrap();
    dir
}

fn all_owned(store: &Store) -> Vec<RecordedEvent> {
    store.read_all_batched(ReadAll::new(), 100).unwrap().map(Result::unwrap).collect()
}

/// Guards reading record format 2 after the format-3 change: every event
/// exports exactly as the build that wrote it exported it (ids, user,
/// extra fields, traceparent, tags), and the tag index still serves it.
#[test]
fn a_format_2_store_reads_as_it_was_written() {
    let dir = fixture_copy();
    let store = Store::builder(dir.path()).open_read_only().unwrap();
    let expected = std::fs::read_to_string(Path::new(FIXTURE).join("events.jsonl")).unwrap();
    let exported: Vec<String> = all_owned(&store).iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    assert_eq!(exported, expected.lines().collect::<Vec<_>>());
    let tagged: Vec<u64> = store
        .read()
        .unwrap()
        .all(ReadAll::new().filter(Filter::new().tag("customer:7")))
        .unwrap()
        .map(|e| e.unwrap().position())
        .collect();
    assert_eq!(tagged, [1, 2]);
    assert!(store.verify().unwrap().is_ok());
}

/// New events of record format 3 go beside format-2 ones: both read back
/// with every field, and the store verifies.
#[test]
fn a_format_2_store_takes_format_3_records() {
    let dir = fixture_copy();
    let store = Store::open(dir.path()).unwrap();
    let old = store.read().unwrap().event(1).unwrap().unwrap().to_owned().unwrap();
    let meta = EventMetadata::new()
        .correlation_id("0190a5b6-7c8d-7e9f-a0b1-c2d3e4f50617")
        .causation_id("req-1")
        .user_id("bo");
    let new = NewEvent::json("Refunded", &serde_json::json!({"amount": 5}))
        .with_metadata(meta)
        .with_tag("customer:7");
    store.append("order-1", ExpectedVersion::Exact(3), [new]).unwrap();
    let plain = NewEvent::json("Closed", &serde_json::json!({}));
    store.append("order-1", ExpectedVersion::Exact(4), [plain]).unwrap();
    let events = all_owned(&store);
    assert_eq!(events[0], old);
    let refunded = &events[5];
    assert_eq!(refunded.correlation_id.as_deref(), Some("0190a5b6-7c8d-7e9f-a0b1-c2d3e4f50617"));
    assert_eq!(refunded.causation_id.as_deref(), Some("req-1"));
    assert_eq!(refunded.user_id.as_deref(), Some("bo"));
    assert_eq!(refunded.tags, ["customer:7"]);
    assert_eq!((events[6].correlation_id.as_ref(), events[6].user_id.as_ref()), (None, None));
    let tagged = store
        .read()
        .unwrap()
        .all(ReadAll::new().filter(Filter::new().tag("customer:7")))
        .unwrap()
        .map(|e| e.unwrap().position())
        .collect::<Vec<_>>();
    assert_eq!(tagged, [1, 2, 6]);
    assert!(store.verify().unwrap().is_ok());
}
