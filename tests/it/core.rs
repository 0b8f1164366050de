//! Core store tests: appends, expected versions, idempotency, validation,
//! reads, reopen, locking and concurrency.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use eventfold::{
    ContentType, Durability, Error, EventMetadata, ExpectedVersion, Filter, NewEvent, ReadAll, ReadStream,
    Store, SubscribeFrom,
};
use serde_json::json;
use uuid::Uuid;

use crate::common::{ev, temp_store};

#[test]
fn append_assigns_gapless_positions_and_versions() {
    let (_dir, store) = temp_store();
    let a = store.append("acc-1", ExpectedVersion::NoStream, [ev("Opened", 1), ev("Deposited", 2)]).unwrap();
    assert_eq!((a.first_position, a.last_position, a.stream_version), (1, 2, 2));
    assert_eq!(a.event_ids.len(), 2);
    assert!(!a.already_stored);
    let b = store.append("acc-2", ExpectedVersion::Any, [ev("Opened", 3)]).unwrap();
    assert_eq!((b.first_position, b.stream_version), (3, 1));
    let c = store.append("acc-1", ExpectedVersion::Exact(2), [ev("Deposited", 4)]).unwrap();
    assert_eq!((c.first_position, c.stream_version), (4, 3));

    let r = store.read().unwrap();
    assert_eq!(r.head().unwrap(), 4);
    let versions: Vec<(u64, u64)> = r
        .stream("acc-1", ReadStream::forward())
        .unwrap()
        .map(|e| e.map(|e| (e.version(), e.position())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, vec![(1, 1), (2, 2), (3, 4)]);
    let all: Vec<u64> = r.all(ReadAll::new()).unwrap().map(|e| e.unwrap().position()).collect();
    assert_eq!(all, vec![1, 2, 3, 4]);
}

#[test]
fn expected_version_rules() {
    let (_dir, store) = temp_store();
    let err = store.append("s-1", ExpectedVersion::StreamExists, [ev("A", 1)]).unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { actual: 0, .. }));
    store.append("s-1", ExpectedVersion::Exact(0), [ev("A", 1)]).unwrap();
    let err = store.append("s-1", ExpectedVersion::NoStream, [ev("A", 1)]).unwrap_err();
    assert!(matches!(
        err,
        Error::WrongExpectedVersion { expected: ExpectedVersion::NoStream, actual: 1, .. }
    ));
    let err = store.append("s-1", ExpectedVersion::Exact(5), [ev("A", 1)]).unwrap_err();
    assert_eq!(err.to_string(), "Expected version 5, got 1");
    match err {
        Error::WrongExpectedVersion { stream, expected, actual } => {
            assert_eq!((stream.as_str(), expected, actual), ("s-1", ExpectedVersion::Exact(5), 1));
        }
        other => panic!("unexpected {other:?}"),
    }
    store.append("s-1", ExpectedVersion::StreamExists, [ev("A", 2)]).unwrap();
    store.append("s-1", ExpectedVersion::Any, [ev("A", 3)]).unwrap();
    // Rejections consumed no positions.
    assert_eq!(store.read().unwrap().head().unwrap(), 3);
}

#[test]
fn append_many_is_all_or_nothing() {
    let (_dir, store) = temp_store();
    store.append("a-1", ExpectedVersion::Any, [ev("X", 0)]).unwrap();
    let err = store
        .append_many([
            ("a-1", ExpectedVersion::Exact(1), vec![ev("X", 1)]),
            ("b-1", ExpectedVersion::Exact(3), vec![ev("X", 2)]),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { ref stream, .. } if stream == "b-1"));
    assert_eq!(store.read().unwrap().head().unwrap(), 1);

    let res = store
        .append_many([
            ("a-1", ExpectedVersion::Exact(1), vec![ev("X", 1), ev("X", 2)]),
            ("b-1", ExpectedVersion::NoStream, vec![ev("X", 3)]),
        ])
        .unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!((res[0].first_position, res[0].last_position, res[0].stream_version), (2, 3, 3));
    assert_eq!((res[1].first_position, res[1].stream_version), (4, 1));

    let err = store
        .append_many([
            ("a-1", ExpectedVersion::Any, vec![ev("X", 1)]),
            ("a-1", ExpectedVersion::Any, vec![ev("X", 1)]),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateStreamInRequest { .. }));
    let none: Vec<(&str, ExpectedVersion, Vec<NewEvent>)> = vec![];
    assert!(matches!(store.append_many(none), Err(Error::EmptyAppend)));
}

#[test]
fn idempotent_retry_returns_the_original_result_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [Uuid::now_v7(), Uuid::now_v7()];
    let batch = || [ev("A", 1).with_id(ids[0]), ev("B", 2).with_id(ids[1])];
    let first = {
        let store = Store::open(dir.path()).unwrap();
        store.append("x-1", ExpectedVersion::Any, [ev("Z", 0)]).unwrap();
        let first = store.append("x-1", ExpectedVersion::Exact(1), batch()).unwrap();
        let again = store.append("x-1", ExpectedVersion::Exact(1), batch()).unwrap();
        assert!(again.already_stored);
        assert_eq!((again.first_position, again.last_position, again.stream_version), (2, 3, 3));
        assert_eq!(again.event_ids, first.event_ids);
        first
    };
    let store = Store::open(dir.path()).unwrap();
    let again = store.append("x-1", ExpectedVersion::Exact(1), batch()).unwrap();
    assert!(again.already_stored);
    assert_eq!(again.first_position, first.first_position);
    assert_eq!(store.read().unwrap().head().unwrap(), 3);

    // The same id in another stream, at another place, or mixed with new ids is an error.
    let err = store.append("y-1", ExpectedVersion::Any, [ev("A", 1).with_id(ids[0])]).unwrap_err();
    match err {
        Error::DuplicateEventId { event_id, stream, position } => {
            assert_eq!((event_id, stream.as_deref(), position), (ids[0], Some("x-1"), Some(2)));
        }
        other => panic!("unexpected {other:?}"),
    }
    // The same place includes the version when the appender names one.
    let err = store.append("x-1", ExpectedVersion::Exact(0), batch()).unwrap_err();
    assert!(matches!(err, Error::DuplicateEventId { .. }));
    let tail = store.append("x-1", ExpectedVersion::Any, [ev("B", 2).with_id(ids[1])]).unwrap();
    assert!(tail.already_stored);
    assert_eq!(tail.first_position, 3);
    let err =
        store.append("x-1", ExpectedVersion::Any, [ev("N", 1), ev("A", 1).with_id(ids[0])]).unwrap_err();
    assert!(matches!(err, Error::DuplicateEventId { .. }));
    let dup = Uuid::now_v7();
    let err = store
        .append("z-1", ExpectedVersion::Any, [ev("A", 1).with_id(dup), ev("A", 1).with_id(dup)])
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateEventId { position: None, .. }));
    assert_eq!(store.read().unwrap().head().unwrap(), 3);
}

/// Guards the writer's append path for event ids: ids below the greatest
/// stored one (caller-chosen, random v4, or from before a reopen) are still
/// indexed and found, and retries of them are still recognised.
#[test]
fn event_ids_below_the_greatest_are_indexed_after_appends_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let top = Uuid::from_bytes([0xff; 16]);
    let low = Uuid::from_bytes([0x01; 16]);
    let random = Uuid::new_v4();
    let mut made = Vec::new();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append("s-1", ExpectedVersion::Any, [ev("E", 1).with_id(top)]).unwrap();
        // Store-made v7 ids now sort below the greatest key.
        made.extend(store.append("s-1", ExpectedVersion::Any, [ev("E", 2), ev("E", 3)]).unwrap().event_ids);
        store
            .append("s-2", ExpectedVersion::Any, [ev("E", 4).with_id(low), ev("E", 5).with_id(random)])
            .unwrap();
        store.close().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    made.extend(store.append("s-3", ExpectedVersion::Any, [ev("E", 6)]).unwrap().event_ids);
    let r = store.read().unwrap();
    for (id, position) in [(top, 1), (made[0], 2), (made[1], 3), (low, 4), (random, 5), (made[2], 6)] {
        assert_eq!(r.event_by_id(id).unwrap().map(|e| e.position()), Some(position), "{id}");
    }
    let retry = store
        .append("s-2", ExpectedVersion::Any, [ev("E", 4).with_id(low), ev("E", 5).with_id(random)])
        .unwrap();
    assert!(retry.already_stored);
    let report = store.verify().unwrap();
    assert_eq!((report.event_ids, report.fault_count), (6, 0));
}

#[test]
fn validation_errors_are_typed_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).max_event_size(1024).open().unwrap();
    type Case<'a> = (&'a str, Vec<NewEvent>, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        ("", vec![ev("A", 1)], |e| matches!(e, Error::InvalidStreamId { .. })),
        ("bad\u{0}id", vec![ev("A", 1)], |e| matches!(e, Error::InvalidStreamId { .. })),
        ("s-1", vec![ev("", 1)], |e| matches!(e, Error::InvalidEventType { .. })),
        ("s-1", vec![ev(&"T".repeat(300), 1)], |e| matches!(e, Error::InvalidEventType { .. })),
        ("s-1", vec![NewEvent::json_bytes("A", b"{oops".to_vec())], |e| {
            matches!(e, Error::InvalidPayload { .. })
        }),
        ("s-1", vec![NewEvent::json_bytes("A", vec![0xc3, 0x28])], |e| {
            matches!(e, Error::InvalidPayload { .. })
        }),
        ("s-1", vec![NewEvent::binary("A", vec![0u8; 2048])], |e| matches!(e, Error::EventTooLarge { .. })),
        ("s-1", vec![], |e| matches!(e, Error::EmptyAppend)),
    ];
    let long = "s".repeat(300);
    for (stream, events, check) in cases {
        let err = store.append(stream, ExpectedVersion::Any, events).unwrap_err();
        assert!(check(&err), "unexpected error {err:?}");
        assert!(!err.to_string().is_empty());
    }
    assert!(matches!(
        store.append(&long, ExpectedVersion::Any, [ev("A", 1)]),
        Err(Error::InvalidStreamId { .. })
    ));
    let meta = EventMetadata::new().user_id("u\nser");
    let err = store.append("s-1", ExpectedVersion::Any, [ev("A", 1).with_metadata(meta)]).unwrap_err();
    assert!(matches!(err, Error::InvalidMetadataField { field: "user id", .. }), "{err}");
    assert_eq!(store.read().unwrap().head().unwrap(), 0);
}

#[test]
fn every_field_round_trips() {
    let (_dir, store) = temp_store();
    let (id, corr, cause) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let meta = EventMetadata::new()
        .correlation_id(corr)
        .causation_id(cause)
        .user_id("ann")
        .extra("ip", "10.1.2.3")
        .extra("tags", json!(["a", "b"]));
    let e = NewEvent::json("Deposited", &json!({"amount": 12.5, "cur": "EUR"}))
        .with_id(id)
        .with_schema_version(3)
        .with_metadata(meta);
    store
        .append("account-7", ExpectedVersion::NoStream, [e, NewEvent::binary("Blob", vec![0, 1, 254, 255])])
        .unwrap();
    let r = store.read().unwrap();
    let e = r.event_by_id(id).unwrap().unwrap();
    assert_eq!(e.stream_id(), "account-7");
    assert_eq!(e.category(), "account");
    assert_eq!(e.event_type(), "Deposited");
    assert_eq!(e.schema_version(), 3);
    assert_eq!(e.correlation_id().as_deref(), Some(corr.to_string().as_str()));
    assert_eq!(e.causation_id().as_deref(), Some(cause.to_string().as_str()));
    assert_eq!(e.user_id(), Some("ann"));
    assert_eq!(e.content_type(), ContentType::Json);
    let owned = e.to_owned().unwrap();
    assert_eq!(owned.payload_json().unwrap(), json!({"amount": 12.5, "cur": "EUR"}));
    assert_eq!(owned.metadata.get("tags"), Some(&json!(["a", "b"])));
    assert!(owned.recorded_at > 0);
    let blob = r.event(2).unwrap().unwrap();
    assert_eq!(blob.content_type(), ContentType::Binary);
    assert_eq!(blob.payload(), &[0, 1, 254, 255]);
    assert!(blob.is_zero_copy() || !blob.is_zero_copy());
    assert!(r.event(3).unwrap().is_none());
    assert!(r.event_by_id(Uuid::new_v4()).unwrap().is_none());

    // Chaining metadata from a causing event.
    let next = NewEvent::json("Audited", &json!({})).caused_by(&owned);
    let res = store.append("audit-1", ExpectedVersion::Any, [next]).unwrap();
    let audited = r.event_by_id(res.event_ids[0]).unwrap();
    assert!(audited.is_none(), "a reader is a snapshot: it does not see later commits");
    let fresh = store.read().unwrap();
    let audited = fresh.event_by_id(res.event_ids[0]).unwrap().unwrap();
    assert_eq!(audited.causation_id(), Some(id.to_string().into()));
    assert_eq!(audited.correlation_id(), Some(corr.to_string().into()));
    assert_eq!(audited.user_id(), Some("ann"));
}

#[test]
fn stream_reads_forward_backward_limited_filtered() {
    let (_dir, store) = temp_store();
    // Interleave so the stream is split into several index runs.
    for i in 1..=10u64 {
        store.append("s-1", ExpectedVersion::Any, [ev(if i % 2 == 0 { "Even" } else { "Odd" }, i)]).unwrap();
        if i % 3 == 0 {
            store.append("other-1", ExpectedVersion::Any, [ev("Noise", i)]).unwrap();
        }
    }
    store.append("s-1", ExpectedVersion::Exact(10), [ev("Odd", 11), ev("Even", 12)]).unwrap();
    let r = store.read().unwrap();
    let versions =
        |o: ReadStream| -> Vec<u64> { r.stream("s-1", o).unwrap().map(|e| e.unwrap().version()).collect() };
    assert_eq!(versions(ReadStream::forward()), (1..=12).collect::<Vec<_>>());
    assert_eq!(versions(ReadStream::backward()), (1..=12).rev().collect::<Vec<_>>());
    assert_eq!(versions(ReadStream::forward().from_version(5).limit(3)), vec![5, 6, 7]);
    assert_eq!(versions(ReadStream::backward().from_version(5).limit(3)), vec![5, 4, 3]);
    assert_eq!(versions(ReadStream::backward().from_version(50).limit(2)), vec![12, 11]);
    assert_eq!(versions(ReadStream::forward().from_version(13)), Vec::<u64>::new());
    assert_eq!(
        versions(ReadStream::forward().filter(Filter::new().event_type("Even"))),
        vec![2, 4, 6, 8, 10, 12]
    );
    // Point in time: the stream as of position 7.
    let upto = versions(ReadStream::forward().up_to_position(7));
    assert_eq!(upto, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(versions(ReadStream::backward().up_to_position(7)), vec![6, 5, 4, 3, 2, 1]);
    assert_eq!(versions(ReadStream::forward().to_version(3)), vec![1, 2, 3]);
    assert_eq!(versions(ReadStream::backward().to_version(3)), vec![3, 2, 1]);
    assert_eq!(versions(ReadStream::backward().from_version(9).to_version(3)), vec![3, 2, 1]);
    assert_eq!(r.stream("nope-1", ReadStream::forward()).unwrap().count(), 0);
    assert_eq!(r.stream_version("s-1").unwrap(), 12);
    assert_eq!(r.stream_version("nope-1").unwrap(), 0);
    let info = r.stream_info("s-1").unwrap().unwrap();
    assert_eq!((info.version, info.last_position), (12, 15));
    assert!(info.created_at <= info.updated_at);
}

/// Guards forward stream reads that walk one cursor across runs: they step
/// over a few records of other streams, search past long gaps, start from a
/// version in the middle of a run, and stop at a position bound, all alike.
#[test]
fn forward_stream_reads_step_over_short_gaps_and_search_past_long_ones() {
    let (_dir, store) = temp_store();
    let mut expected = Vec::new();
    for round in 0..40u64 {
        // 1–3 events of `mine`, then a gap of other streams' records that
        // grows past the stepping limit every few rounds.
        let mine: Vec<NewEvent> = (0..1 + round % 3).map(|k| ev("Mine", round * 10 + k)).collect();
        let r = store.append("mine", ExpectedVersion::Any, mine).unwrap();
        expected.extend(r.first_position..=r.last_position);
        let gap = if round % 5 == 4 { 50 } else { round % 7 };
        if gap > 0 {
            let others: Vec<NewEvent> = (0..gap).map(|k| ev("Other", k)).collect();
            store.append(&format!("other-{round}"), ExpectedVersion::Any, others).unwrap();
        }
    }
    let r = store.read().unwrap();
    let positions =
        |o: ReadStream| -> Vec<u64> { r.stream("mine", o).unwrap().map(|e| e.unwrap().position()).collect() };
    assert_eq!(positions(ReadStream::forward()), expected);
    assert_eq!(positions(ReadStream::forward().from_version(6)), expected[5..].to_vec());
    let cut = expected[30];
    assert_eq!(positions(ReadStream::forward().up_to_position(cut)), expected[..=30].to_vec());
    let mut backward = expected.clone();
    backward.reverse();
    assert_eq!(positions(ReadStream::backward()), backward);
}

/// Guards `stream_version_at`, which answers from the index runs alone:
/// for every position of a log with runs of several lengths, it must equal
/// counting the stream's events at or before that position.
#[test]
fn stream_version_at_every_position_matches_counting_events() {
    let (_dir, store) = temp_store();
    for round in 0..30u64 {
        let mine: Vec<NewEvent> = (0..1 + round % 4).map(|k| ev("Mine", k)).collect();
        store.append("mine", ExpectedVersion::Any, mine).unwrap();
        if round % 3 != 0 {
            store.append("other", ExpectedVersion::Any, [ev("Other", round)]).unwrap();
        }
    }
    let r = store.read().unwrap();
    let mine: Vec<u64> =
        r.stream("mine", ReadStream::forward()).unwrap().map(|e| e.unwrap().position()).collect();
    for position in 0..=r.head().unwrap() + 1 {
        let expected = mine.iter().filter(|&&p| p <= position).count() as u64;
        assert_eq!(r.stream_version_at("mine", position).unwrap(), expected, "at position {position}");
    }
    assert_eq!(r.stream_version_at("nobody", 10).unwrap(), 0);
}

#[test]
fn global_reads_filter_and_stop_at_bounds() {
    let (_dir, store) = temp_store();
    for i in 0..6u64 {
        store.append(&format!("order-{i}"), ExpectedVersion::Any, [ev("Placed", i)]).unwrap();
        store.append(&format!("user-{i}"), ExpectedVersion::Any, [ev("Joined", i)]).unwrap();
    }
    let r = store.read().unwrap();
    let positions = |o: ReadAll| -> Vec<u64> { r.all(o).unwrap().map(|e| e.unwrap().position()).collect() };
    assert_eq!(positions(ReadAll::from_position(10)), vec![10, 11, 12]);
    assert_eq!(positions(ReadAll::from_position(3).limit(2)), vec![3, 4]);
    assert_eq!(
        positions(ReadAll::new().filter(Filter::new().event_type("Joined"))),
        vec![2, 4, 6, 8, 10, 12]
    );
    assert_eq!(positions(ReadAll::new().filter(Filter::new().category("order")).limit(2)), vec![1, 3]);
    assert_eq!(positions(ReadAll::new().filter(Filter::new().stream_prefix("user-1"))), vec![4]);
    assert_eq!(positions(ReadAll::new().filter(Filter::new().stream("order-5"))), vec![11]);
    assert_eq!(positions(ReadAll::new().up_to_position(3)), vec![1, 2, 3]);
    assert_eq!(positions(ReadAll::from_position(100)), Vec::<u64>::new());
}

#[test]
fn recorded_at_never_decreases_and_time_reads_cut_there() {
    let (_dir, store) = temp_store();
    for i in 0..20u64 {
        store.append("t-1", ExpectedVersion::Any, [ev("E", i)]).unwrap();
    }
    let r = store.read().unwrap();
    let times: Vec<u64> = r.all(ReadAll::new()).unwrap().map(|e| e.unwrap().recorded_at()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let cut = times[9];
    let expected_last = times.iter().rposition(|t| *t <= cut).unwrap() as u64 + 1;
    assert_eq!(r.last_position_at(cut).unwrap(), expected_last);
    assert_eq!(r.last_position_at(0).unwrap(), 0);
    assert_eq!(r.last_position_at(u64::MAX).unwrap(), 20);
    let got: Vec<u64> =
        r.all(ReadAll::new().up_to_time(cut)).unwrap().map(|e| e.unwrap().position()).collect();
    assert_eq!(got, (1..=expected_last).collect::<Vec<_>>());
}

#[test]
fn streams_are_listed_by_prefix_with_paging() {
    let (_dir, store) = temp_store();
    for id in ["acc-1", "acc-2", "acc-3", "order-1", "zeta"] {
        store.append(id, ExpectedVersion::Any, [ev("E", 1)]).unwrap();
    }
    let r = store.read().unwrap();
    let ids = |p: &str, after: Option<&str>, n: usize| -> Vec<String> {
        r.streams(p, after, n).unwrap().into_iter().map(|s| s.stream_id).collect()
    };
    assert_eq!(ids("acc-", None, 10), vec!["acc-1", "acc-2", "acc-3"]);
    assert_eq!(ids("acc-", None, 2), vec!["acc-1", "acc-2"]);
    assert_eq!(ids("acc-", Some("acc-2"), 10), vec!["acc-3"]);
    assert_eq!(ids("", None, 100).len(), 5);
    assert_eq!(r.stream_count().unwrap(), 5);
}

#[test]
fn batched_reads_match_single_transaction_reads() {
    let (_dir, store) = temp_store();
    for i in 0..50u64 {
        store.append(&format!("b-{}", i % 3), ExpectedVersion::Any, [ev("E", i), ev("F", i)]).unwrap();
    }
    let direct: Vec<_> =
        store.read().unwrap().all(ReadAll::new()).unwrap().map(|e| e.unwrap().to_owned().unwrap()).collect();
    let batched: Vec<_> = store.read_all_batched(ReadAll::new(), 7).unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(direct, batched);
    let filtered: Vec<u64> = store
        .read_all_batched(ReadAll::from_position(5).filter(Filter::new().event_type("F")).limit(4), 3)
        .unwrap()
        .map(|e| e.unwrap().position)
        .collect();
    assert_eq!(filtered, vec![6, 8, 10, 12]);
    let s: Vec<u64> = store
        .read_stream_batched("b-1", ReadStream::forward(), 4)
        .unwrap()
        .map(|e| e.unwrap().version)
        .collect();
    assert_eq!(s, (1..=34).collect::<Vec<_>>());
    let back: Vec<u64> = store
        .read_stream_batched("b-1", ReadStream::backward().limit(5), 2)
        .unwrap()
        .map(|e| e.unwrap().version)
        .collect();
    assert_eq!(back, vec![34, 33, 32, 31, 30]);
}

#[test]
fn reopen_after_close_continues_positions_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("r-1", ExpectedVersion::NoStream, [ev("A", 1), ev("B", 2)]).unwrap();
    let id = store.store_id();
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.store_id(), id);
    assert_eq!(store.head().unwrap(), 2);
    let r = store.append("r-1", ExpectedVersion::Exact(2), [ev("C", 3)]).unwrap();
    assert_eq!((r.first_position, r.stream_version), (3, 3));
    let r = store.append("r-2", ExpectedVersion::NoStream, [ev("C", 3)]).unwrap();
    assert_eq!((r.first_position, r.stream_version), (4, 1));
}

#[test]
fn writes_after_close_fail_with_closed() {
    let (_dir, store) = temp_store();
    let other = store.clone();
    store.close().unwrap();
    assert!(matches!(other.append("a-1", ExpectedVersion::Any, [ev("A", 1)]), Err(Error::Closed)));
    assert_eq!(other.read().unwrap().head().unwrap(), 0);
}

/// Guards `close` with appends in flight: requests queued behind the
/// writer's last batch were left in the queue without an answer, and their
/// appenders waited forever. Every appender must end with a result or
/// `Error::Closed`, and every acknowledged event must be in the log.
#[test]
fn close_with_appends_in_flight_answers_every_appender() {
    use std::sync::mpsc;
    use std::time::Duration;
    for round in 0..5 {
        let (_dir, store) = temp_store();
        let (acks, acked) = mpsc::channel();
        let mut threads = Vec::new();
        for t in 0..8u64 {
            let store = store.clone();
            let acks = acks.clone();
            threads.push(std::thread::spawn(move || {
                let mut positions = Vec::new();
                for i in 0.. {
                    match store.append(&format!("s-{t}"), ExpectedVersion::Any, [ev("A", i)]) {
                        Ok(r) => {
                            positions.push(r.first_position);
                            let _ = acks.send(());
                        }
                        Err(Error::Closed) => break,
                        Err(e) => panic!("appender {t}: {e}"),
                    }
                }
                positions
            }));
        }
        drop(acks);
        // Close while the appenders are busy: after some acknowledgements,
        // not after some time.
        for _ in 0..(50 + round * 20) {
            acked.recv().unwrap();
        }
        let reader = store.clone();
        store.close().unwrap();
        let (done, finished) = mpsc::channel();
        for t in threads {
            let done = done.clone();
            std::thread::spawn(move || done.send(t.join().unwrap()));
        }
        drop(done);
        let mut acknowledged = Vec::new();
        for _ in 0..8 {
            // A generous bound that only a hang can reach.
            let positions = finished
                .recv_timeout(Duration::from_secs(60))
                .expect("an appender is still waiting after close");
            acknowledged.extend(positions);
        }
        let head = reader.read().unwrap().head().unwrap();
        acknowledged.sort_unstable();
        assert_eq!(acknowledged, (1..=head).collect::<Vec<_>>(), "round {round}");
    }
}

/// Guards subscriptions made after `close`: they waited forever for a
/// wake-up that could not come. They must deliver the log, then end.
#[test]
fn a_subscription_made_after_close_ends() {
    let (_dir, store) = temp_store();
    store.append("a-1", ExpectedVersion::Any, [ev("A", 1)]).unwrap();
    let other = store.clone();
    store.close().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sub = other.subscribe(SubscribeFrom::Start, Filter::new()).unwrap();
        let _ = tx.send(sub.map(|e| e.unwrap().position).collect::<Vec<_>>());
    });
    let seen = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the subscription did not end");
    assert_eq!(seen, vec![1]);
}

/// `NoSync` leaves commits to the operating system until a sync: the
/// durable head says how far a power cut cannot reach, `sync` moves it to
/// the head, and a clean close syncs everything.
#[test]
fn sync_and_close_make_no_sync_commits_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::NoSync).open().unwrap();
    store.append("a-1", ExpectedVersion::Any, [ev("A", 1), ev("A", 2)]).unwrap();
    assert_eq!(store.durable_head().unwrap(), 0, "nothing synced yet");
    assert_eq!(store.sync().unwrap(), 2);
    assert_eq!(store.durable_head().unwrap(), 2);
    store.append("a-1", ExpectedVersion::Any, [ev("A", 3)]).unwrap();
    assert_eq!(store.durable_head().unwrap(), 2);
    let other = store.clone();
    store.close().unwrap();
    assert_eq!(other.durable_head().unwrap(), 3, "close syncs");
    assert!(matches!(other.sync(), Err(Error::Closed)));

    // Under `Sync` every acknowledged commit is durable at once.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("a-1", ExpectedVersion::Any, [ev("A", 1)]).unwrap();
    assert_eq!(store.durable_head().unwrap(), 1);
    assert_eq!(store.sync().unwrap(), 1);
}

/// Guards the writer against client input that overflowed: an
/// `Exact(u64::MAX)` append of an id already stored computed `v + 1` and,
/// in a debug build, panicked the writer and poisoned the store.
#[test]
fn exact_u64_max_with_a_stored_id_is_a_duplicate_not_a_panic() {
    let (_dir, store) = temp_store();
    let id = Uuid::new_v4();
    store.append("a-1", ExpectedVersion::Any, [ev("A", 1).with_id(id)]).unwrap();
    let err = store.append("a-1", ExpectedVersion::Exact(u64::MAX), [ev("A", 1).with_id(id)]).unwrap_err();
    assert!(matches!(err, Error::DuplicateEventId { .. }), "{err}");
    let err = store.append("a-1", ExpectedVersion::Exact(u64::MAX), [ev("A", 2)]).unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }), "{err}");
    assert_eq!(store.poisoned(), None);
    store.append("a-1", ExpectedVersion::Exact(1), [ev("A", 2)]).unwrap();
}

#[test]
fn second_open_in_the_same_process_is_refused() {
    let (dir, _store) = temp_store();
    assert!(matches!(Store::open(dir.path()), Err(Error::AlreadyOpen { .. })));
    // A read-only open in the same process is refused with a clear reason:
    // LMDB allows one environment handle per process.
    assert!(matches!(Store::builder(dir.path()).open_read_only(), Err(Error::AlreadyOpen { .. })));
}

#[test]
fn read_only_open_needs_a_store_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(Store::builder(dir.path().join("none")).open_read_only(), Err(Error::NotAStore { .. })));
    {
        let s = Store::open(dir.path()).unwrap();
        s.append("a-1", ExpectedVersion::Any, [ev("A", 1)]).unwrap();
    }
    let ro = Store::builder(dir.path()).open_read_only().unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.head().unwrap(), 1);
    assert!(matches!(ro.append("a-1", ExpectedVersion::Any, [ev("A", 1)]), Err(Error::ReadOnly)));
}

/// Runs in a child process (see `read_only_beside_a_writer_in_another_process`):
/// opens the store read-only while the parent holds it for writing.
#[test]
#[ignore = "the child process of read_only_beside_a_writer_in_another_process, started by it"]
fn child_read_only_reader() {
    let dir = std::env::var("EVENTFOLD_TEST_CHILD_DIR")
        .expect("started by read_only_beside_a_writer_in_another_process, with EVENTFOLD_TEST_CHILD_DIR set");
    let ro = Store::builder(&dir).open_read_only().unwrap();
    let r = ro.read().unwrap();
    let n = r.all(ReadAll::new()).unwrap().count();
    println!("CHILD head={} events={}", r.head().unwrap(), n);
    match Store::open(&dir) {
        Err(Error::Locked { pid: Some(pid), .. }) => println!("CHILD locked-by={pid}"),
        other => println!("CHILD unexpected={other:?}"),
    }
}

#[test]
fn read_only_beside_a_writer_in_another_process() {
    let (dir, store) = temp_store();
    store.append("p-1", ExpectedVersion::Any, [ev("A", 1), ev("B", 2), ev("C", 3)]).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "core::child_read_only_reader", "--ignored", "--nocapture", "--test-threads=1"])
        .env("EVENTFOLD_TEST_CHILD_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CHILD head=3 events=3"), "child said: {stdout}");
    assert!(stdout.contains(&format!("CHILD locked-by={}", std::process::id())), "child said: {stdout}");
    // The writer goes on undisturbed.
    store.append("p-1", ExpectedVersion::Exact(3), [ev("D", 4)]).unwrap();
}

#[test]
fn nosync_store_reads_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::builder(dir.path()).durability(Durability::NoSync).open().unwrap();
        s.append("n-1", ExpectedVersion::Any, [ev("A", 1)]).unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.read().unwrap().stream_version("n-1").unwrap(), 1);
}

#[test]
fn storage_full_writes_nothing_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).map_size(1 << 20).open().unwrap();
    let big = || NewEvent::binary("Blob", vec![7u8; 60_000]);
    let mut written = 0u64;
    let err = loop {
        match store.append("big-1", ExpectedVersion::Exact(written), [big()]) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 100, "a 1 MiB map should fill up");
    };
    assert!(matches!(err, Error::StorageFull { map_size: Some(1_048_576) }), "got {err:?}");
    assert!(err.to_string().contains("StoreBuilder::map_size"), "{err}");
    assert!(!err.is_retryable());
    assert!(store.poisoned().is_none());
    assert_eq!(store.read().unwrap().head().unwrap(), written);
    drop(store);
    let store = Store::builder(dir.path()).map_size(8 << 20).open().unwrap();
    store.append("big-1", ExpectedVersion::Exact(written), [big()]).unwrap();
}

/// A full reader table is its own error, and retryable: the same read
/// succeeds once another read transaction has ended.
#[test]
fn a_full_reader_table_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).max_readers(2).open().unwrap();
    store.append("r-1", ExpectedVersion::NoStream, [ev("Opened", 1)]).unwrap();
    let mut readers = Vec::new();
    let err = loop {
        match store.read() {
            Ok(r) => readers.push(r),
            Err(e) => break e,
        }
        assert!(readers.len() < 1_000, "the reader table should fill up");
    };
    assert!(matches!(err, Error::ReadersFull), "got {err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("StoreBuilder::max_readers"), "{err}");
    readers.pop();
    assert_eq!(store.read().unwrap().stream_version("r-1").unwrap(), 1);
}

/// Guards optimistic concurrency under contention: exactly one appender wins
/// each version, and the stream has no gaps or duplicates.
#[test]
fn racing_appenders_on_one_stream_win_each_version_once() {
    let (_dir, store) = temp_store();
    let threads = 16;
    let per_thread = 20;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut wins = Vec::new();
                let mut attempts = 0;
                while wins.len() < per_thread {
                    attempts += 1;
                    assert!(attempts < 100_000);
                    let v = store.read().unwrap().stream_version("hot-1").unwrap();
                    match store.append("hot-1", ExpectedVersion::Exact(v), [ev("Tick", t as u64)]) {
                        Ok(r) => {
                            assert_eq!(r.stream_version, v + 1);
                            wins.push(r.stream_version);
                        }
                        Err(Error::WrongExpectedVersion { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                wins
            })
        })
        .collect();
    let mut all: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort_unstable();
    let total = (threads * per_thread) as u64;
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    let r = store.read().unwrap();
    let versions: Vec<u64> =
        r.stream("hot-1", ReadStream::forward()).unwrap().map(|e| e.unwrap().version()).collect();
    assert_eq!(versions, (1..=total).collect::<Vec<_>>());
    assert_eq!(r.head().unwrap(), total);
}

/// Guards group commit: concurrent appenders share commits.
#[test]
fn concurrent_appenders_share_commits() {
    let (_dir, store) = temp_store();
    let threads = 32;
    let per_thread = 25;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    store.append(&format!("own-{t}"), ExpectedVersion::Exact(i), [ev("E", i)]).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = store.stats().unwrap();
    let total = (threads as u64) * per_thread;
    assert_eq!(stats.head, total);
    assert_eq!(stats.events_written, total);
    assert_eq!(stats.requests, total);
    assert_eq!(stats.streams, threads as u64);
    assert!(stats.max_batch_requests > 1, "no batch held more than one request: {stats:?}");
    assert!(stats.commits < stats.requests, "{stats:?}");
    let ids: HashSet<Uuid> =
        store.read().unwrap().all(ReadAll::new()).unwrap().map(|e| e.unwrap().event_id()).collect();
    assert_eq!(ids.len() as u64, total);
}

#[test]
fn submit_keeps_many_requests_in_flight() {
    let (_dir, store) = temp_store();
    let tickets: Vec<_> =
        (0..200u64).map(|i| store.submit("bulk-1", ExpectedVersion::Any, [ev("E", i)]).unwrap()).collect();
    let results: Vec<_> = tickets.into_iter().map(|t| t.wait().unwrap()).collect();
    let positions: Vec<u64> = results.iter().map(|r| r.first_position).collect();
    assert_eq!(positions, (1..=200).collect::<Vec<_>>(), "submission order is commit order");
    let stats = store.stats().unwrap();
    assert!(stats.commits <= 200);
}

/// Guards the commit hook's contract: one call per commit, with the head
/// that commit made, before the append returns; and a hook that panics
/// does not turn a durable append into a reported failure.
#[test]
fn the_commit_hook_sees_every_commit_and_its_panics_do_not_fail_appends() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let store = Store::builder(dir.path())
        .on_commit(move |head| {
            hook_seen.lock().unwrap().push(head);
            if head == 3 {
                panic!("a probe that fails");
            }
        })
        .open()
        .unwrap();
    let mut heads = Vec::new();
    for n in [1, 2, 3] {
        let r = store.append("hooked-1", ExpectedVersion::Any, (0..n).map(|i| ev("E", i))).unwrap();
        heads.push(r.last_position);
        assert_eq!(
            seen.lock().unwrap().last(),
            Some(&r.last_position),
            "the hook ran before the append returned"
        );
    }
    assert_eq!(*seen.lock().unwrap(), heads);
    assert_eq!(heads, vec![1, 3, 6]);
    // The store is not poisoned by the panic: it goes on writing.
    store.append("hooked-1", ExpectedVersion::Exact(6), [ev("E", 9)]).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 4);
}

/// Flips bits of the `events` key of `position` in place in the data file,
/// as a damaged disk would: LMDB's B-tree is left out of order, the entry
/// where it was.
fn flip_events_key(dir: &std::path::Path, position: u64, mask: u64) {
    let path = dir.join("data.mdb");
    let mut bytes = std::fs::read(&path).unwrap();
    // A leaf node: flags (2 bytes, 0), key size 8 (LE), then the key.
    let mut pattern = vec![0u8, 0, 8, 0];
    pattern.extend_from_slice(&position.to_be_bytes());
    let at: Vec<usize> = bytes
        .windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| *w == &pattern[..])
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty(), "the key of position {position} is in the file");
    // Old copies of the leaf in free pages hold it too; flip them all.
    for i in at {
        bytes[i + 4..i + 12].copy_from_slice(&(position ^ mask).to_be_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
}

/// Guards the read paths against a flipped bit in an `events` key: `read
/// --all` and `export` ended early and exited 0 with a short log (the head
/// was taken from a damaged last key, and a bounded read stopped at a key
/// past its bound). Every read that expected a position and did not get it
/// must fail with `Error::Corruption`.
#[test]
fn a_flipped_bit_in_an_events_key_is_corruption_not_a_short_log() {
    let build = |dir: &std::path::Path| {
        let store = Store::open(dir).unwrap();
        for i in 0..20 {
            store.append("a-1", ExpectedVersion::Any, [ev("A", i)]).unwrap();
        }
        store.close().unwrap();
    };
    // The last key: 20 becomes 4, so the last key no longer names the head.
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    flip_events_key(dir.path(), 20, 16);
    // A read-only open tolerates a damaged tail (so `verify` can report it);
    // the reads that need the head fail.
    let store = Store::builder(dir.path()).open_read_only().unwrap();
    let reader = store.read().unwrap();
    assert!(matches!(reader.head(), Err(Error::Corruption { position: 4, .. })), "{:?}", reader.head());
    assert!(matches!(reader.all(ReadAll::new()), Err(Error::Corruption { .. })), "a full read fails");
    assert!(store.read_all_batched(ReadAll::new(), 7).is_err(), "an export fails");
    assert!(!store.verify().unwrap().is_ok());
    drop(reader);
    drop(store);

    // A key in the middle: 12 becomes 2^40 + 12, past any bound.
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    flip_events_key(dir.path(), 12, 1 << 40);
    let store = Store::builder(dir.path()).open_read_only().unwrap();
    let reader = store.read().unwrap();
    assert_eq!(reader.head().unwrap(), 20);
    let bounded: Vec<_> = reader.all(ReadAll::new().up_to_position(15)).unwrap().collect();
    assert_eq!(bounded.len(), 12, "11 events, then the error");
    assert!(matches!(bounded[11], Err(Error::Corruption { position: 12, .. })), "{:?}", bounded[11]);
    let mut seen = 0;
    let scanned =
        reader.scan_all(ReadAll::new().up_to_position(15).threads(1), |_| -> eventfold::Result<()> {
            seen += 1;
            Ok(())
        });
    assert!(matches!(scanned, Err(Error::Corruption { position: 12, .. })), "{scanned:?}");
    assert_eq!(seen, 11);
    assert!(matches!(reader.event(12), Err(Error::Corruption { position: 12, .. })));
    assert!(reader.event(21).unwrap().is_none());
}
