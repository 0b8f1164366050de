//! Scavenging: what is no longer served leaves the file, every read path
//! steps over the recorded holes, `verify` agrees, a hole that is not
//! recorded is still damage, and a scavenge killed half-way goes on.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use eventfold::{
    Error, EventMetadata, ExpectedVersion, Filter, NewEvent, Query, QueryItem, ReadAll, ReadStream, Store,
    StreamRetention,
};

fn ev(n: u64) -> NewEvent {
    NewEvent::json("E", &n).with_tag(format!("n:{n}"))
}

fn versions(store: &Store, id: &str) -> Vec<u64> {
    let reader = store.read().unwrap();
    reader.stream(id, ReadStream::forward()).unwrap().map(|e| e.unwrap().version()).collect()
}

fn positions(store: &Store, options: ReadAll) -> Vec<u64> {
    let reader = store.read().unwrap();
    reader.all(options).unwrap().map(|e| e.unwrap().position()).collect()
}

/// Three streams written interleaved, so scavenging one leaves holes
/// between the others' events; returns the store and each stream's
/// positions.
fn interleaved(dir: &std::path::Path, per_stream: u64) -> Store {
    let store = Store::open(dir).unwrap();
    for i in 0..per_stream {
        for s in ["keep-1", "gone-1", "trim-1"] {
            store.append(s, ExpectedVersion::Any, [ev(i)]).unwrap();
        }
    }
    store
}

#[test]
fn scavenging_removes_what_is_not_served_and_every_read_steps_over_the_holes() {
    let dir = tempfile::tempdir().unwrap();
    let store = interleaved(dir.path(), 50);
    let served_before = positions(&store, ReadAll::new());
    store.delete_stream("gone-1", "closed", EventMetadata::new()).unwrap();
    store
        .set_stream_retention(
            "trim-1",
            StreamRetention::new().max_count(10),
            "keep ten",
            EventMetadata::new(),
        )
        .unwrap();
    let served = positions(&store, ReadAll::new());
    assert_eq!(store.scavengeable().unwrap(), 50 + 40);

    let mut steps = Vec::new();
    let report = store.scavenge_with_progress(|p| steps.push(p)).unwrap();
    assert_eq!((report.streams, report.events_removed), (2, 90));
    assert_eq!(steps.last().map(|p| (p.removed, p.planned)), Some((90, 90)));
    assert_eq!(store.scavengeable().unwrap(), 0);

    // What was served is served still, and nothing else is stored.
    assert_eq!(positions(&store, ReadAll::new()), served);
    assert_eq!(positions(&store, ReadAll::new().threads(2)), served);
    let r = store.read().unwrap();
    let mut scanned = Vec::new();
    r.scan_all(ReadAll::new(), |e| {
        scanned.push(e.position());
        Ok::<_, Error>(())
    })
    .unwrap();
    assert_eq!(scanned, served);
    let removed: Vec<u64> = served_before.iter().copied().filter(|p| !served.contains(p)).collect();
    for &p in &removed {
        assert!(r.event(p).unwrap().is_none(), "position {p}");
        assert!(r.is_removed(p).unwrap(), "position {p}");
    }
    assert!(!r.is_removed(served[0]).unwrap());
    // Filtered reads through the indexes, DCB queries, time bounds.
    let trim = positions(&store, ReadAll::new().filter(Filter::new().category("trim")));
    assert_eq!(trim.len(), 10);
    let tagged = Query::new().item(QueryItem::new().tags(["n:45"]));
    let found = store.read_query(&tagged, eventfold::ReadQuery::default()).unwrap();
    assert_eq!(found.events.iter().map(|e| e.stream_id.as_str()).collect::<Vec<_>>(), ["keep-1", "trim-1"]);
    for &p in served.iter().step_by(7) {
        let t = r.event(p).unwrap().unwrap().recorded_at();
        let found = r.last_position_at(t).unwrap();
        assert!(found >= p && r.event(found).unwrap().is_some(), "{p}: {found}");
    }
    assert_eq!(r.last_position_at(u64::MAX).unwrap(), r.head().unwrap());
    drop(r);
    assert_eq!(versions(&store, "trim-1"), (41..=50).collect::<Vec<_>>());
    assert_eq!(versions(&store, "gone-1"), Vec::<u64>::new());

    // Lifting the limit does not bring back what is gone.
    store
        .set_stream_retention("trim-1", StreamRetention::new().max_count(0), "all", EventMetadata::new())
        .unwrap();
    assert_eq!(versions(&store, "trim-1"), (41..=50).collect::<Vec<_>>());
    assert_eq!(store.stream_lifecycle("trim-1").unwrap().truncate_before, 41);

    // A soft-deleted stream written again goes on from its version.
    let again = store.append("gone-1", ExpectedVersion::Exact(50), [ev(99)]).unwrap();
    assert_eq!(again.stream_version, 51);
    assert_eq!(versions(&store, "gone-1"), [51]);
    store.append("gone-1", ExpectedVersion::Exact(51), [ev(100)]).unwrap();
    assert_eq!(versions(&store, "gone-1"), [51, 52]);

    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.faults);
    assert_eq!(report.removed, 90);
    // Reopened, the same.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(versions(&store, "trim-1"), (41..=50).collect::<Vec<_>>());
}

#[test]
fn a_tombstoned_stream_is_removed_and_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = interleaved(dir.path(), 5);
    store.tombstone_stream("gone-1", "erased", EventMetadata::new()).unwrap();
    let report = store.scavenge().unwrap();
    assert_eq!(report.events_removed, 5);
    let r = store.read().unwrap();
    let read = r.stream("gone-1", ReadStream::forward()).map(|i| i.count());
    assert!(matches!(read, Err(Error::StreamDeleted { .. })), "{read:?}");
    drop(r);
    let refused = store.append("gone-1", ExpectedVersion::Any, [ev(1)]);
    assert!(matches!(refused, Err(Error::StreamDeleted { .. })), "{refused:?}");
    // The deletion itself stays in the log.
    let deletions = positions(&store, ReadAll::new().filter(Filter::new().event_type("$StreamTombstoned")));
    assert_eq!(deletions.len(), 1);
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(store.scavenge().unwrap(), eventfold::ScavengeReport::default(), "nothing left to do");
}

/// Guards the rule that the log's last event is never removed: it names
/// the log's next position, which must never be given out twice.
#[test]
fn the_last_event_of_the_log_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("old-1", ExpectedVersion::Any, (0..4).map(ev)).unwrap();
    store
        .set_stream_retention(
            "old-1",
            StreamRetention::new().max_age(std::time::Duration::from_micros(1)),
            "expire",
            EventMetadata::new(),
        )
        .unwrap();
    // The retention event is the head; all four events are old.
    let report = store.scavenge().unwrap();
    assert_eq!(report.events_removed, 4);
    store.append("old-1", ExpectedVersion::Any, [ev(5)]).unwrap();
    // Now old-1's last event is the head: kept, though it is expired.
    let head = store.read().unwrap().head().unwrap();
    std::thread::yield_now();
    let report = store.scavenge().unwrap();
    assert_eq!(report.events_removed, 0);
    assert!(store.read().unwrap().event(head).unwrap().is_some());
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let next = store.append("other-1", ExpectedVersion::Any, [ev(6)]).unwrap();
    assert_eq!(next.first_position, head + 1);
    assert!(store.verify().unwrap().is_ok());
}

/// Guards the difference between a hole scavenging recorded and damage: a
/// record missing where no removal was recorded is still corruption for
/// reads and for `verify`, in a store that has scavenged elsewhere.
#[test]
fn a_hole_that_was_not_recorded_is_still_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = interleaved(dir.path(), 5);
    store.delete_stream("gone-1", "closed", EventMetadata::new()).unwrap();
    store.scavenge().unwrap();
    let keep = versions(&store, "keep-1");
    assert_eq!(keep.len(), 5);
    let victim = {
        let r = store.read().unwrap();
        r.stream("keep-1", ReadStream::forward().from_version(3)).unwrap().next().unwrap().unwrap().position()
    };
    drop(store);
    crate::common::delete_record(dir.path(), victim);
    let store = Store::open(dir.path()).unwrap();
    let reader = store.read().unwrap();
    let read: Result<Vec<_>, _> =
        reader.all(ReadAll::new()).unwrap().map(|e| e.map(|e| e.position())).collect();
    assert!(matches!(read, Err(Error::Corruption { .. })), "{read:?}");
    drop(reader);
    assert!(matches!(store.read().unwrap().event(victim), Err(Error::Corruption { .. })));
    let report = store.verify().unwrap();
    assert!(!report.is_ok());
    assert!(report.faults.iter().any(|f| f.message.contains("gap")), "{:?}", report.faults);
}

/// Appends go on while a scavenge runs, and none is lost or touched.
#[test]
fn appends_go_on_during_a_scavenge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for s in 0..4 {
        store.append(&format!("old-{s}"), ExpectedVersion::Any, (0..1500).map(ev)).unwrap();
        store.delete_stream(&format!("old-{s}"), "closed", EventMetadata::new()).unwrap();
    }
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0..300 {
                acked.push(store.append("live-1", ExpectedVersion::Any, [ev(i)]).unwrap().first_position);
            }
            acked
        })
    };
    let report = store.scavenge().unwrap();
    let acked = writer.join().unwrap();
    assert_eq!(report.events_removed, 6000);
    assert!(report.steps >= 8, "{report:?}");
    let r = store.read().unwrap();
    for (i, p) in acked.iter().enumerate() {
        let e = r.event(*p).unwrap().unwrap();
        assert_eq!((e.stream_id(), e.version()), ("live-1", i as u64 + 1));
    }
    drop(r);
    assert!(store.verify().unwrap().is_ok());
}

/// The child of the crash test: scavenges the store it is given, printing
/// a line after each step, until it is killed.
#[test]
#[ignore = "the child process of the scavenge crash test, started by it"]
fn scavenge_crash_child() {
    let Ok(dir) = std::env::var("EVENTFOLD_SCAVENGE_CHILD_DIR") else { return };
    println!();
    let store = Store::open(&dir).unwrap();
    store
        .scavenge_with_progress(|p| {
            println!("STEP {} {}", p.removed, p.planned);
        })
        .unwrap();
    println!("DONE");
}

/// Guards resumability: a scavenge killed (SIGKILL) after some steps
/// leaves a sound store, with nothing served lost, and the next scavenge
/// removes the rest.
#[test]
fn a_scavenge_killed_half_way_goes_on_the_next_time() {
    for kill_after in [1usize, 3, 7] {
        let dir = tempfile::tempdir().unwrap();
        let served = {
            let store = Store::open(dir.path()).unwrap();
            for s in 0..3 {
                for chunk in 0..4 {
                    let events = (0..1000).map(|i| ev(chunk * 1000 + i));
                    store.append(&format!("old-{s}"), ExpectedVersion::Any, events).unwrap();
                    store.append("keep-1", ExpectedVersion::Any, [ev(chunk)]).unwrap();
                }
                store.delete_stream(&format!("old-{s}"), "closed", EventMetadata::new()).unwrap();
            }
            positions(&store, ReadAll::new())
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "scavenge::scavenge_crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("EVENTFOLD_SCAVENGE_CHILD_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut steps = 0;
        for line in lines.by_ref() {
            if line.unwrap().starts_with("STEP") {
                steps += 1;
                if steps >= kill_after {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(steps, kill_after, "the child stopped early");

        let store = Store::open(dir.path()).unwrap();
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "after {kill_after} steps: {:?}", report.faults);
        assert!(report.removed >= (kill_after as u64) * 1000, "{}", report.removed);
        assert_eq!(positions(&store, ReadAll::new()), served);
        let rest = store.scavenge().unwrap();
        assert_eq!(rest.events_removed + report.removed, 12_000);
        assert_eq!(positions(&store, ReadAll::new()), served);
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.faults);
        assert_eq!(report.removed, 12_000);
    }
}

struct Count;

impl eventfold::Projection for Count {
    const NAME: &'static str = "scavenge_count";
    const VERSION: u32 = 1;

    fn apply(
        &self,
        ctx: &mut eventfold::ProjectionContext<'_>,
        event: &eventfold::RecordedEvent,
    ) -> eventfold::Result<()> {
        ctx.update("count", |n: &mut u64| *n += 1)?;
        ctx.update(&event.stream_id, |n: &mut u64| *n += 1)
    }
}

/// Followers after a scavenge: a subscription catching up (by scan and
/// through the index), a projection rebuilt from the start, and a reindex
/// all see exactly what is left.
#[test]
fn followers_and_rebuilds_see_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = interleaved(dir.path(), 40);
    store.delete_stream("gone-1", "closed", EventMetadata::new()).unwrap();
    store
        .set_stream_retention(
            "trim-1",
            StreamRetention::new().truncate_before(31),
            "trim",
            EventMetadata::new(),
        )
        .unwrap();
    store.scavenge().unwrap();
    let served = positions(&store, ReadAll::new());
    for filter in [Filter::new(), Filter::new().category("trim"), Filter::new().category("keep")] {
        let want = positions(&store, ReadAll::new().filter(filter.clone()));
        let mut sub = store.subscribe(eventfold::SubscribeFrom::Start, filter).unwrap().with_batch_size(8);
        let mut got = Vec::new();
        while let Some(e) = sub.try_next().unwrap() {
            got.push(e.position);
        }
        assert_eq!(got, want);
    }
    let reindexed = store.reindex(&mut |_, _| {}).unwrap();
    assert_eq!(reindexed, served.len() as u64);
    assert_eq!(positions(&store, ReadAll::new().filter(Filter::new().category("trim"))).len(), 10);
    let runner =
        eventfold::ProjectionRunner::new(&store).unwrap().register(Count).unwrap().with_batch_size(16);
    runner.run_until_caught_up().unwrap();
    let model = store.projection::<Count>();
    assert_eq!(model.get::<u64>("count").unwrap(), Some(served.len() as u64));
    assert_eq!(model.get::<u64>("trim-1").unwrap(), Some(10));
    assert_eq!(model.get::<u64>("gone-1").unwrap(), None);
    runner.rebuild("scavenge_count").unwrap();
    assert_eq!(store.projection::<Count>().get::<u64>("count").unwrap(), Some(served.len() as u64));
    assert!(store.verify().unwrap().is_ok());
}
