//! Tags, the secondary indexes and DCB: filtered reads through the indexes
//! against a plain model, conditional appends, and stores written before
//! indexes.

use std::collections::HashSet;
use std::path::Path;

use eventfold::{
    AppendCondition, Error, ExpectedVersion, Filter, NewEvent, Query, QueryItem, ReadAll, ReadQuery,
    RecordedEvent, Store,
};
use proptest::prelude::*;

fn tagged(event_type: &str, tags: &[&str]) -> NewEvent {
    NewEvent::json(event_type, &serde_json::json!({ "t": event_type })).with_tags(tags.iter().copied())
}

fn all(store: &Store) -> Vec<RecordedEvent> {
    let reader = store.read().unwrap();
    reader.all(ReadAll::new()).unwrap().map(|e| e.unwrap().to_owned().unwrap()).collect()
}

fn positions(store: &Store, filter: Filter) -> Vec<u64> {
    let reader = store.read().unwrap();
    assert!(reader.uses_index(&filter) || filter.event_types.is_empty() && filter.tags.is_empty());
    reader.all(ReadAll::new().filter(filter)).unwrap().map(|e| e.unwrap().position()).collect()
}

#[test]
fn tags_are_stored_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("course-7", ExpectedVersion::NoStream, [tagged("CourseDefined", &["course:7"])]).unwrap();
    store
        .append("student-42", ExpectedVersion::NoStream, [tagged("Enrolled", &["student:42", "course:7"])])
        .unwrap();
    let events = all(&store);
    assert_eq!(events[0].tags, ["course:7"]);
    assert_eq!(events[1].tags, ["student:42", "course:7"]);
    let reader = store.read().unwrap();
    let view = reader.event(2).unwrap().unwrap();
    assert_eq!(view.tags().collect::<Vec<_>>(), ["student:42", "course:7"]);
    assert!(view.has_tag("course:7") && !view.has_tag("course:8"));
    // The export form keeps them, and an event without tags has none.
    let line = serde_json::to_value(&events[1]).unwrap();
    assert_eq!(line["tags"], serde_json::json!(["student:42", "course:7"]));
    store.append("plain-1", ExpectedVersion::Any, [NewEvent::json("P", &1)]).unwrap();
    assert!(serde_json::to_value(all(&store).pop().unwrap()).unwrap().get("tags").is_none());
}

#[test]
fn invalid_tags_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let too_many: Vec<String> = (0..=eventfold::MAX_TAGS).map(|i| format!("t:{i}")).collect();
    let long = "x".repeat(eventfold::MAX_TAG_LEN + 1);
    let cases: Vec<Vec<String>> = vec![
        vec![String::new()],
        vec!["a\u{0}b".into()],
        vec!["line\nbreak".into()],
        vec![long],
        vec!["dup".into(), "dup".into()],
        too_many,
    ];
    for tags in cases {
        let good = NewEvent::json("E", &1);
        let bad = NewEvent::json("E", &2).with_tags(tags.clone());
        let err = store.append("s-1", ExpectedVersion::Any, [good, bad]).unwrap_err();
        assert!(matches!(err, Error::InvalidTag { .. }), "{tags:?}: {err}");
    }
    assert_eq!(store.head().unwrap(), 0);
    let ok: Vec<String> = (0..eventfold::MAX_TAGS).map(|i| format!("t:{i}")).collect();
    store.append("s-1", ExpectedVersion::Any, [NewEvent::json("E", &1).with_tags(ok)]).unwrap();
}

/// Guards that a filtered read walks the index, not the log: a damaged
/// record that the filter does not match is never read, so the read of
/// the matching events succeeds where a walk of the log fails.
#[test]
fn a_filtered_read_reads_only_what_matches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("noise-1", ExpectedVersion::Any, (0..50).map(|i| NewEvent::json("Noise", &i))).unwrap();
    store.append("quiet-1", ExpectedVersion::Any, [tagged("Rare", &["x:1"])]).unwrap();
    store.append("noise-1", ExpectedVersion::Any, (0..50).map(|i| NewEvent::json("Noise", &i))).unwrap();
    drop(store);
    crate::common::flip_record_byte(dir.path(), 10);
    let store = Store::builder(dir.path()).open_read_only().unwrap();
    let reader = store.read().unwrap();
    assert!(reader.all(ReadAll::new()).unwrap().any(|e| e.is_err()), "the damage is there");
    for filter in
        [Filter::new().event_type("Rare"), Filter::new().tag("x:1"), Filter::new().category("quiet")]
    {
        assert!(reader.uses_index(&filter));
        let got: Vec<u64> =
            reader.all(ReadAll::new().filter(filter)).unwrap().map(|e| e.unwrap().position()).collect();
        assert_eq!(got, [51]);
    }
}

/// One generated event: stream, type and tags drawn from small sets so
/// that filters match some of them.
fn event_strategy() -> impl Strategy<Value = (usize, usize, Vec<usize>)> {
    (0usize..4, 0usize..3, proptest::collection::vec(0usize..4, 0..3))
}

const STREAMS: [&str; 4] = ["account-1", "account-2", "order-1", "user-1"];
const TYPES: [&str; 3] = ["Opened", "Deposited", "Closed"];
const TAGS: [&str; 4] = ["a:1", "a:2", "b:1", "b:2"];

fn append_generated(store: &Store, batches: &[Vec<(usize, usize, Vec<usize>)>]) {
    for batch in batches {
        // Each batch is one atomic append of several streams, so index runs
        // are built inside a commit and across commits.
        let mut per_stream: Vec<(String, ExpectedVersion, Vec<NewEvent>)> = Vec::new();
        for (s, t, tags) in batch {
            let mut tags: Vec<&str> = tags.iter().map(|&i| TAGS[i]).collect();
            tags.sort_unstable();
            tags.dedup();
            let e = tagged(TYPES[*t], &tags);
            match per_stream.iter_mut().find(|(name, _, _)| name == STREAMS[*s]) {
                Some((_, _, events)) => events.push(e),
                None => per_stream.push((STREAMS[*s].to_string(), ExpectedVersion::Any, vec![e])),
            }
        }
        if !per_stream.is_empty() {
            store.append_many(per_stream).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Indexed reads give exactly what filtering every event gives.
    #[test]
    fn indexed_filters_match_the_model(
        batches in proptest::collection::vec(proptest::collection::vec(event_strategy(), 0..6), 1..12),
        want_types in proptest::collection::vec(0usize..3, 0..3),
        want_tags in proptest::collection::vec(0usize..4, 0..3),
        want_category in proptest::option::of(0usize..3),
        from in 1u64..20,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        append_generated(&store, &batches);
        let mut filter = Filter::new()
            .event_types(want_types.iter().map(|&i| TYPES[i]))
            .tags(want_tags.iter().map(|&i| TAGS[i]));
        if let Some(c) = want_category {
            filter = filter.category(["account", "order", "user"][c]);
        }
        let model: Vec<u64> = all(&store)
            .iter()
            .filter(|e| e.position >= from)
            .filter(|e| filter.matches_tagged(&e.stream_id, &e.event_type, e.tags.iter().map(String::as_str)))
            .map(|e| e.position)
            .collect();
        let reader = store.read().unwrap();
        let got: Vec<u64> = reader
            .all(ReadAll::from_position(from).filter(filter.clone()))
            .unwrap()
            .map(|e| e.unwrap().position())
            .collect();
        prop_assert_eq!(&got, &model);
        let mut scanned = Vec::new();
        reader
            .scan_all(ReadAll::from_position(from).filter(filter.clone()).threads(2), |e| -> eventfold::Result<()> {
                scanned.push(e.position());
                Ok(())
            })
            .unwrap();
        prop_assert_eq!(&scanned, &model);

        // A DCB query over the same terms, forwards and backwards.
        let query = Query::new()
            .item(QueryItem::new().event_types(want_types.iter().map(|&i| TYPES[i])).tags(want_tags.iter().map(|&i| TAGS[i])));
        let qmodel: Vec<u64> = all(&store)
            .iter()
            .filter(|e| query.matches(&e.event_type, e.tags.iter().map(String::as_str)))
            .map(|e| e.position)
            .collect();
        let forward = store.read_query(&query, ReadQuery::forward()).unwrap();
        prop_assert_eq!(forward.events.iter().map(|e| e.position).collect::<Vec<_>>(), qmodel.clone());
        prop_assert_eq!(forward.head, store.head().unwrap());
        let backward = store.read_query(&query, ReadQuery::backward().limit(2)).unwrap();
        let newest: Vec<u64> = qmodel.iter().rev().take(2).copied().collect();
        prop_assert_eq!(backward.events.iter().map(|e| e.position).collect::<Vec<_>>(), newest);
        let first = store.read_query(&query, ReadQuery::forward().limit(1)).unwrap();
        match qmodel.first() {
            Some(&p) => prop_assert_eq!(first.head, p),
            None => prop_assert_eq!(first.head, store.head().unwrap()),
        }
    }
}

fn username(name: &str) -> Query {
    Query::new().item(QueryItem::new().event_type("UserRegistered").tag(format!("username:{name}")))
}

#[test]
fn a_condition_fails_on_a_later_match_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let register = |name: &str| NewEvent::json("UserRegistered", &name).with_tag(format!("username:{name}"));
    let seen = store.read_query(&username("ann"), ReadQuery::forward()).unwrap();
    assert_eq!((seen.events.len(), seen.head), (0, 0));
    store.append("noise-1", ExpectedVersion::Any, [tagged("Other", &["username:ann"])]).unwrap();
    let cond = AppendCondition::new(username("ann"), Some(seen.head));
    // An event with the tag but another type does not match.
    store.append_conditional("user-1", ExpectedVersion::NoStream, [register("ann")], cond.clone()).unwrap();
    let err =
        store.append_conditional("user-2", ExpectedVersion::NoStream, [register("ann")], cond).unwrap_err();
    assert!(matches!(err, Error::AppendConditionFailed { position: 2, after: 0 }), "{err}");
    assert_eq!(store.head().unwrap(), 2);
    assert_eq!(store.read().unwrap().stream_version("user-2").unwrap(), 0);
    // Decided at the newer head, another name goes through; `None` means
    // "anywhere in the log".
    let at = store.head().unwrap();
    store
        .append_conditional(
            "user-3",
            ExpectedVersion::NoStream,
            [register("bob")],
            AppendCondition::new(username("ann"), Some(at)),
        )
        .unwrap();
    let err = store
        .append_conditional(
            "user-4",
            ExpectedVersion::Any,
            [register("cy")],
            AppendCondition::new(username("bob"), None),
        )
        .unwrap_err();
    assert!(matches!(err, Error::AppendConditionFailed { position: 3, .. }), "{err}");
    // The stream's expected version is checked as well.
    let err = store
        .append_conditional(
            "user-1",
            ExpectedVersion::NoStream,
            [register("dee")],
            AppendCondition::new(username("dee"), None),
        )
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }), "{err}");
    // A query that matches everything fails on any later event.
    let err = store
        .append_conditional(
            "user-5",
            ExpectedVersion::Any,
            [register("eve")],
            AppendCondition::new(Query::all(), Some(2)),
        )
        .unwrap_err();
    assert!(matches!(err, Error::AppendConditionFailed { position: 3, after: 2 }), "{err}");
}

/// Guards the batch: conditions are checked against the requests
/// committed before them in the same batch, so of two registrations of a
/// name decided on the same read, exactly one is stored, whether the
/// writer took them in one batch or in two.
#[test]
fn of_two_registrations_decided_together_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..40 {
        let name = format!("n{round}");
        let seen = store.read_query(&username(&name), ReadQuery::forward()).unwrap();
        let cond = AppendCondition::new(username(&name), Some(seen.head));
        let ev = || NewEvent::json("UserRegistered", &1).with_tag(format!("username:{name}"));
        let a = store
            .submit_conditional([(format!("u-{round}-a"), ExpectedVersion::Any, vec![ev()])], cond.clone())
            .unwrap();
        let b = store
            .submit_conditional([(format!("u-{round}-b"), ExpectedVersion::Any, vec![ev()])], cond)
            .unwrap();
        let outcomes = [a.wait_many(), b.wait_many()];
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {outcomes:?}");
        assert!(outcomes.iter().any(|o| matches!(o, Err(Error::AppendConditionFailed { .. }))));
        assert_eq!(store.read_query(&username(&name), ReadQuery::forward()).unwrap().events.len(), 1);
    }
}

/// A conditional append retried with the same event ids answers the
/// first one's result instead of failing on its own events.
#[test]
fn a_retried_conditional_append_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = uuid::Uuid::now_v7();
    let ev = || NewEvent::json("UserRegistered", &1).with_tag("username:ann").with_id(id);
    let cond = AppendCondition::new(username("ann"), Some(0));
    let first = store.append_conditional("user-1", ExpectedVersion::NoStream, [ev()], cond.clone()).unwrap();
    let again = store.append_conditional("user-1", ExpectedVersion::NoStream, [ev()], cond).unwrap();
    assert!(again.already_stored);
    assert_eq!(again.first_position, first.first_position);
    assert_eq!(store.head().unwrap(), 1);
}

/// Concurrent deciders, each reading and appending on its own thread: a
/// name is registered once, however the writer batches them.
#[test]
fn concurrent_deciders_register_each_name_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("name{i}")).collect();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (store, names) = (store.clone(), names.clone());
            scope.spawn(move || {
                for name in &names {
                    loop {
                        let seen = store.read_query(&username(name), ReadQuery::forward()).unwrap();
                        if !seen.events.is_empty() {
                            break;
                        }
                        let ev = NewEvent::json("UserRegistered", &t).with_tag(format!("username:{name}"));
                        let cond = AppendCondition::new(username(name), Some(seen.head));
                        match store.append_conditional(
                            &format!("user-{t}-{name}"),
                            ExpectedVersion::Any,
                            [ev],
                            cond,
                        ) {
                            Ok(_) => break,
                            Err(Error::AppendConditionFailed { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let mut seen = HashSet::new();
    for e in all(&store) {
        assert!(seen.insert(e.tags[0].clone()), "{} registered twice", e.tags[0]);
    }
    assert_eq!(seen.len(), names.len());
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metadata-v1");

/// Guards stores written before indexes (format 1): read-only they are
/// read by walking the log; the first writable open builds their indexes
/// and filtered reads give the same events.
#[test]
fn a_format_1_store_gets_its_indexes_at_its_first_writable_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(FIXTURE).join("data.mdb"), dir.path().join("data.mdb")).unwrap();
    let filter = Filter::new().event_type("Placed").category("order");
    let before: Vec<u64> = {
        let store = Store::builder(dir.path()).open_read_only().unwrap();
        let reader = store.read().unwrap();
        assert!(!reader.uses_index(&filter), "no indexes yet");
        reader.all(ReadAll::new().filter(filter.clone())).unwrap().map(|e| e.unwrap().position()).collect()
    };
    assert!(!before.is_empty());
    let store = Store::builder(dir.path()).map_size(1 << 20).open().unwrap();
    assert!(store.read().unwrap().uses_index(&filter));
    assert_eq!(positions(&store, filter.clone()), before);
    // Old records read without tags; new ones carry theirs.
    assert!(all(&store).iter().all(|e| e.tags.is_empty()));
    store.append("order-3", ExpectedVersion::Any, [tagged("Placed", &["customer:9"])]).unwrap();
    assert_eq!(positions(&store, Filter::new().tag("customer:9")), [7]);
    assert!(store.verify().unwrap().is_ok());
    drop(store);
    // Read-only again: now through the indexes.
    let store = Store::builder(dir.path()).open_read_only().unwrap();
    assert!(store.read().unwrap().uses_index(&filter));
    assert_eq!(positions(&store, filter).len(), before.len() + 1);
}

#[test]
fn reindex_rebuilds_what_the_writer_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append_generated(
        &store,
        &[vec![(0, 0, vec![0]), (1, 1, vec![1, 2])], vec![(0, 2, vec![]), (3, 0, vec![0])]],
    );
    let filters =
        [Filter::new().tag("a:1"), Filter::new().event_type("Opened"), Filter::new().category("account")];
    let before: Vec<Vec<u64>> = filters.iter().map(|f| positions(&store, f.clone())).collect();
    let mut calls = Vec::new();
    let n = store.reindex(&mut |done, total| calls.push((done, total))).unwrap();
    assert_eq!(n, 4);
    assert_eq!(calls.last(), Some(&(4, 4)));
    let after: Vec<Vec<u64>> = filters.iter().map(|f| positions(&store, f.clone())).collect();
    assert_eq!(before, after);
    assert!(store.verify().unwrap().is_ok());
}

/// A subscription to a tag catches up through the index in small batches
/// and goes live: every matching event once, in order, none other.
#[test]
fn a_tag_subscription_catches_up_and_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut want = Vec::new();
    for i in 0..300u64 {
        let e = if i % 7 == 0 { tagged("Hit", &["x:1"]) } else { NewEvent::json("Miss", &i) };
        let r = store.append(&format!("s-{}", i % 5), ExpectedVersion::Any, [e]).unwrap();
        if i % 7 == 0 {
            want.push(r.first_position);
        }
    }
    let mut sub = store
        .subscribe(eventfold::SubscribeFrom::Start, Filter::new().tag("x:1"))
        .unwrap()
        .with_batch_size(4);
    let mut got = Vec::new();
    while got.len() < want.len() {
        got.push(sub.next_timeout(std::time::Duration::from_secs(30)).unwrap().unwrap().position);
    }
    assert_eq!(got, want);
    store.append("s-9", ExpectedVersion::Any, [NewEvent::json("Miss", &1)]).unwrap();
    let live = store.append("s-9", ExpectedVersion::Any, [tagged("Hit", &["x:1"])]).unwrap();
    assert_eq!(
        sub.next_timeout(std::time::Duration::from_secs(30)).unwrap().unwrap().position,
        live.first_position
    );
    let batched: Vec<u64> = store
        .read_all_batched(ReadAll::new().filter(Filter::new().tag("x:1")), 3)
        .unwrap()
        .map(|e| e.unwrap().position)
        .collect();
    assert_eq!(batched.len(), want.len() + 1);
}

/// An export line keeps the tags, and importing it indexes them again.
#[test]
fn export_and_import_keep_tags() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("course-7", ExpectedVersion::NoStream, [tagged("CourseDefined", &["course:7", "term:fall"])])
        .unwrap();
    let lines: Vec<String> = all(&store).iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    let copy = tempfile::tempdir().unwrap();
    let target = Store::open(copy.path()).unwrap();
    let events: Vec<RecordedEvent> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    target.submit_recorded(events).unwrap().wait().unwrap();
    assert_eq!(all(&target)[0].tags, ["course:7", "term:fall"]);
    assert_eq!(positions(&target, Filter::new().tag("term:fall")), [1]);
}
