//! The DCB condition against a plain model, under concurrent appends.
//!
//! Threads append at once, each with a condition made from a read that may
//! be stale. Afterwards the log, in position order, is the serial history
//! the writer chose; the model replays it and checks every outcome against
//! it: a stored append had no event matching its query between its
//! condition's position and its own; a refused one named an event that
//! does match, after that position, and wrote nothing.

use std::collections::HashMap;

use eventfold::{
    AppendCondition, Error, ExpectedVersion, NewEvent, Query, QueryItem, ReadAll, ReadQuery, Store,
};
use proptest::prelude::*;
use uuid::Uuid;

const TYPES: [&str; 2] = ["A", "B"];
const TAGS: [&str; 3] = ["x:1", "x:2", "y:1"];

/// One generated append: the event's type and tags, the query of its
/// condition, and how stale the condition's position is.
#[derive(Debug, Clone)]
struct Op {
    event_type: usize,
    tags: Vec<usize>,
    query: Vec<(Vec<usize>, Vec<usize>)>,
    stale_by: u64,
}

fn op() -> impl Strategy<Value = Op> {
    let item = (proptest::collection::vec(0usize..2, 0..2), proptest::collection::vec(0usize..3, 0..2));
    (0usize..2, proptest::collection::vec(0usize..3, 0..3), proptest::collection::vec(item, 0..3), 0u64..4)
        .prop_map(|(event_type, tags, query, stale_by)| Op { event_type, tags, query, stale_by })
}

fn query_of(op: &Op) -> Query {
    op.query.iter().fold(Query::new(), |q, (types, tags)| {
        q.item(
            QueryItem::new().event_types(types.iter().map(|&t| TYPES[t])).tags(tags.iter().map(|&t| TAGS[t])),
        )
    })
}

fn tags_of(op: &Op) -> Vec<&'static str> {
    let mut tags: Vec<&str> = op.tags.iter().map(|&t| TAGS[t]).collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// What one append came to.
#[derive(Debug)]
enum Done {
    Stored { id: Uuid, after: u64, position: u64 },
    Refused { id: Uuid, after: u64, conflict: u64 },
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_conditional_appends_agree_with_the_serial_model(
        ops in proptest::collection::vec(proptest::collection::vec(op(), 1..12), 2..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut queries: HashMap<Uuid, (Query, usize, Vec<&str>)> = HashMap::new();
        for thread_ops in &ops {
            for o in thread_ops {
                // The ids are made here so the model can find each append.
                queries.insert(Uuid::now_v7(), (query_of(o), o.event_type, tags_of(o)));
            }
        }
        let mut ids: Vec<Uuid> = queries.keys().copied().collect();
        ids.sort_unstable();
        let mut chunks = Vec::new();
        let mut it = ids.into_iter();
        for thread_ops in &ops {
            chunks.push(thread_ops.iter().map(|o| (it.next().unwrap(), o.stale_by)).collect::<Vec<_>>());
        }
        let results: Vec<Done> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .iter()
                .enumerate()
                .map(|(t, chunk)| {
                    let (store, queries) = (store.clone(), &queries);
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        for &(id, stale_by) in chunk {
                            let (query, ty, tags) = &queries[&id];
                            let head = store.read_query(query, ReadQuery::forward()).unwrap().head;
                            let after = head.saturating_sub(stale_by);
                            let event = NewEvent::json(TYPES[*ty], &1).with_tags(tags.iter().copied()).with_id(id);
                            let cond = AppendCondition::new(query.clone(), Some(after));
                            match store.append_conditional(&format!("t-{t}"), ExpectedVersion::Any, [event], cond) {
                                Ok(r) => out.push(Done::Stored { id, after, position: r.first_position }),
                                Err(Error::AppendConditionFailed { position, after: named }) => {
                                    assert_eq!(named, after);
                                    out.push(Done::Refused { id, after, conflict: position });
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });

        // The model: the log in position order.
        let log: Vec<(u64, Uuid, String, Vec<String>)> = store
            .read()
            .unwrap()
            .all(ReadAll::new())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.position(), e.event_id(), e.event_type().to_string(), e.tags().map(str::to_string).collect())
            })
            .collect();
        let matches = |q: &Query, p: u64| {
            let (_, _, ty, tags) = &log[(p - 1) as usize];
            q.matches(ty, tags.iter().map(String::as_str))
        };
        for r in &results {
            match r {
                Done::Stored { id, after, position } => {
                    let (query, _, _) = &queries[id];
                    prop_assert_eq!(log[(*position - 1) as usize].1, *id);
                    for p in after + 1..*position {
                        prop_assert!(!matches(query, p), "{id} was stored at {position} over a match at {p} after {after}");
                    }
                }
                Done::Refused { id, after, conflict } => {
                    let (query, _, _) = &queries[id];
                    prop_assert!(*conflict > *after && *conflict as usize <= log.len());
                    prop_assert!(matches(query, *conflict), "{id} was refused on {conflict}, which does not match");
                    prop_assert!(log.iter().all(|(_, stored, _, _)| stored != id), "refused {id} was written");
                    // The conflict is the first match after `after`.
                    for p in after + 1..*conflict {
                        prop_assert!(!matches(query, p), "{id} named {conflict}, but {p} matches first");
                    }
                }
            }
        }
        prop_assert_eq!(log.len(), results.iter().filter(|r| matches!(r, Done::Stored { .. })).count());
    }
}
