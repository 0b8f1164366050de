//! Stream deletion and retention: what stops being served, what is
//! recorded, and what a tombstone refuses.

use std::time::Duration;

use eventfold::{
    Error, EventMetadata, ExpectedVersion, Filter, LIFECYCLE_STREAM, NewEvent, ReadAll, ReadStream,
    RecordedEvent, Store, StreamRetention,
};

fn ev(n: u64) -> NewEvent {
    NewEvent::json("E", &n)
}

fn stream(store: &Store, id: &str) -> eventfold::Result<Vec<u64>> {
    let reader = store.read()?;
    reader.stream(id, ReadStream::forward())?.map(|e| e.map(|e| e.version())).collect()
}

fn all(store: &Store, filter: Filter) -> Vec<RecordedEvent> {
    let reader = store.read().unwrap();
    reader.all(ReadAll::new().filter(filter)).unwrap().map(|e| e.unwrap().to_owned().unwrap()).collect()
}

#[test]
fn a_soft_deleted_stream_disappears_and_lives_again_without_its_past() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("cart-1", ExpectedVersion::Any, (0..3).map(ev)).unwrap();
    store.append("cart-2", ExpectedVersion::Any, [ev(9)]).unwrap();
    let recorded = store.delete_stream("cart-1", "abandoned", EventMetadata::new().user_id("ops")).unwrap();
    assert_eq!(recorded.stream_id, LIFECYCLE_STREAM);
    assert_eq!(stream(&store, "cart-1").unwrap(), Vec::<u64>::new());
    let listed: Vec<String> =
        store.read().unwrap().streams("cart-", None, 10).unwrap().into_iter().map(|s| s.stream_id).collect();
    assert_eq!(listed, ["cart-2"]);
    // The global log no longer serves its events, but serves the deletion.
    let global = all(&store, Filter::new());
    assert!(global.iter().all(|e| e.stream_id != "cart-1"));
    let deleted = global.iter().find(|e| e.event_type == "$StreamDeleted").unwrap();
    assert_eq!(deleted.user_id.as_deref(), Some("ops"));
    assert_eq!(deleted.tags, ["stream:cart-1"]);
    assert_eq!(deleted.payload_json().unwrap()["reason"], "abandoned");
    assert_eq!(all(&store, Filter::new().tag("stream:cart-1")).len(), 1);
    assert!(store.stream_lifecycle("cart-1").unwrap().deleted);
    // Appending brings it back; versions go on, the past stays hidden.
    let r = store.append("cart-1", ExpectedVersion::Exact(3), [ev(4)]).unwrap();
    assert_eq!(r.stream_version, 4);
    assert_eq!(stream(&store, "cart-1").unwrap(), [4]);
    assert!(!store.stream_lifecycle("cart-1").unwrap().deleted);
    assert_eq!(store.read().unwrap().streams("cart-", None, 10).unwrap().len(), 2);
    assert_eq!(
        all(&store, Filter::new().category("cart")).iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 4]
    );
}

#[test]
fn a_tombstone_refuses_reads_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("user-1", ExpectedVersion::Any, [ev(1)]).unwrap();
    store.tombstone_stream("user-1", "closed account", EventMetadata::new()).unwrap();
    assert!(matches!(stream(&store, "user-1"), Err(Error::StreamDeleted { .. })));
    let err = store.append("user-1", ExpectedVersion::Any, [ev(2)]).unwrap_err();
    assert!(matches!(err, Error::StreamDeleted { .. }), "{err}");
    let err = store.delete_stream("user-1", "again", EventMetadata::new()).unwrap_err();
    assert!(matches!(err, Error::StreamDeleted { .. }), "{err}");
    assert!(all(&store, Filter::new()).iter().all(|e| e.stream_id != "user-1"));
    assert!(store.stream_lifecycle("user-1").unwrap().tombstoned);
    // Survives a reopen.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.append("user-1", ExpectedVersion::Any, [ev(3)]),
        Err(Error::StreamDeleted { .. })
    ));
    let err = store.delete_stream("never-1", "x", EventMetadata::new()).unwrap_err();
    assert!(matches!(err, Error::StreamNotFound { .. }), "{err}");
}

#[test]
fn truncation_and_max_count_stop_serving_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("log-1", ExpectedVersion::Any, (1..=10).map(ev)).unwrap();
    store
        .set_stream_retention(
            "log-1",
            StreamRetention::new().truncate_before(4),
            "tidy",
            EventMetadata::new(),
        )
        .unwrap();
    assert_eq!(stream(&store, "log-1").unwrap(), (4..=10).collect::<Vec<_>>());
    // Truncation only moves forward.
    store
        .set_stream_retention("log-1", StreamRetention::new().truncate_before(2), "x", EventMetadata::new())
        .unwrap();
    assert_eq!(store.stream_lifecycle("log-1").unwrap().truncate_before, 4);
    store
        .set_stream_retention("log-1", StreamRetention::new().max_count(3), "keep 3", EventMetadata::new())
        .unwrap();
    assert_eq!(stream(&store, "log-1").unwrap(), [8, 9, 10]);
    store.append("log-1", ExpectedVersion::Any, [ev(11)]).unwrap();
    assert_eq!(stream(&store, "log-1").unwrap(), [9, 10, 11]);
    let back: Vec<u64> = store
        .read()
        .unwrap()
        .stream("log-1", ReadStream::backward())
        .unwrap()
        .map(|e| e.unwrap().version())
        .collect();
    assert_eq!(back, [11, 10, 9]);
    assert_eq!(
        all(&store, Filter::new().category("log")).iter().map(|e| e.version).collect::<Vec<_>>(),
        [9, 10, 11]
    );
    // Lifting the count limit serves what truncation left.
    store
        .set_stream_retention("log-1", StreamRetention::new().max_count(0), "all", EventMetadata::new())
        .unwrap();
    assert_eq!(stream(&store, "log-1").unwrap(), (4..=11).collect::<Vec<_>>());
    let changes = all(&store, Filter::new().event_type("$StreamRetentionSet"));
    assert_eq!(changes.len(), 4);
    assert_eq!(changes[2].payload_json().unwrap()["retention"]["max_count"], 3);
}

#[test]
fn max_age_hides_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // An imported event keeps its time: two hours ago.
    let mut old = RecordedEvent::new(1, "t-1", 1, "E", eventfold::ContentType::Json, b"1".to_vec());
    old.recorded_at = old.recorded_at.saturating_sub(2 * 3600 * 1_000_000);
    store.submit_recorded(vec![old]).unwrap().wait().unwrap();
    store.append("t-1", ExpectedVersion::Exact(1), [ev(2)]).unwrap();
    assert_eq!(stream(&store, "t-1").unwrap(), [1, 2]);
    let hour = StreamRetention::new().max_age(Duration::from_secs(3600));
    store.set_stream_retention("t-1", hour, "an hour", EventMetadata::new()).unwrap();
    assert_eq!(stream(&store, "t-1").unwrap(), [2]);
    assert_eq!(all(&store, Filter::new().category("t")).iter().map(|e| e.version).collect::<Vec<_>>(), [2]);
    let lifted = StreamRetention::new().max_age(Duration::ZERO);
    store.set_stream_retention("t-1", lifted, "all", EventMetadata::new()).unwrap();
    assert_eq!(stream(&store, "t-1").unwrap(), [1, 2]);
}

#[test]
fn reserved_names_are_refused_to_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = store.append("s-1", ExpectedVersion::Any, [NewEvent::json("$StreamDeleted", &1)]).unwrap_err();
    assert!(matches!(err, Error::InvalidEventType { .. }), "{err}");
    let err = store.append("$streams", ExpectedVersion::Any, [ev(1)]).unwrap_err();
    assert!(matches!(err, Error::InvalidStreamId { .. }), "{err}");
    let err = store.delete_stream("$streams", "x", EventMetadata::new()).unwrap_err();
    assert!(matches!(err, Error::InvalidStreamId { .. }), "{err}");
}

/// `verify` checks what is stored, served or not: deleting and limiting
/// streams leaves a store that verifies.
#[test]
fn a_store_with_deleted_and_limited_streams_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for s in ["a-1", "b-1", "c-1"] {
        store.append(s, ExpectedVersion::Any, (0..5).map(ev)).unwrap();
    }
    store.delete_stream("a-1", "x", EventMetadata::new()).unwrap();
    store.tombstone_stream("b-1", "y", EventMetadata::new()).unwrap();
    store
        .set_stream_retention("c-1", StreamRetention::new().max_count(2), "z", EventMetadata::new())
        .unwrap();
    store.append("a-1", ExpectedVersion::Any, [ev(9)]).unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.faults);
}

/// Guards DCB against hidden events: a registration in a deleted stream
/// is not served by `read_query`, so it must not fail a condition either,
/// or a decider that retries on conflict would retry forever.
#[test]
fn hidden_events_do_not_fail_a_dcb_condition() {
    use eventfold::{AppendCondition, Query, QueryItem, ReadQuery};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let register = || NewEvent::json("UserRegistered", &1).with_tag("username:ann");
    store.append("user-1", ExpectedVersion::Any, [register()]).unwrap();
    store.delete_stream("user-1", "account closed", EventMetadata::new()).unwrap();
    let q = Query::new().item(QueryItem::new().event_type("UserRegistered").tag("username:ann"));
    assert!(store.read_query(&q, ReadQuery::forward()).unwrap().events.is_empty());
    let cond = AppendCondition::new(q.clone(), Some(0));
    store.append_conditional("user-2", ExpectedVersion::NoStream, [register()], cond.clone()).unwrap();
    // The new registration is served, so it does fail the same condition.
    let err = store.append_conditional("user-3", ExpectedVersion::NoStream, [register()], cond).unwrap_err();
    assert!(matches!(err, Error::AppendConditionFailed { position: 3, .. }), "{err}");
}
