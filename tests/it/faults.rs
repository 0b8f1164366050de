//! Fault injection (feature `fault-injection`): a failed commit or fsync
//! fails every caller of its batch, poisons the store for writes, leaves
//! reads working, and a reopen recovers with nothing acknowledged lost.

use std::sync::{Arc, Barrier};

use eventfold::{Error, ExpectedVersion, Store};

use crate::common::ev;

fn run(builder: impl Fn(&std::path::Path) -> Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path());
    // Commits 1 and 2 succeed.
    let a = store.append("f-1", ExpectedVersion::NoStream, [ev("A", 1)]).unwrap();
    let b = store.append("f-1", ExpectedVersion::Exact(1), [ev("A", 2)]).unwrap();
    // Commit 3 fails: every appender waiting on it gets an error.
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let outcomes: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                store.append(&format!("g-{t}"), ExpectedVersion::Any, [ev("B", t as u64)])
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(
        outcomes.iter().all(|o| o.is_err()),
        "no append may be acknowledged once commit 3 failed: {outcomes:?}"
    );
    assert!(store.poisoned().is_some());
    assert!(matches!(store.append("f-1", ExpectedVersion::Any, [ev("C", 3)]), Err(Error::Poisoned { .. })));
    // Reads still work.
    assert_eq!(store.read().unwrap().stream_version("f-1").unwrap(), 2);
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    assert!(store.verify().unwrap().is_ok());
    let r = store.read().unwrap();
    assert_eq!(r.event(a.first_position).unwrap().unwrap().event_id(), a.event_ids[0]);
    assert_eq!(r.event(b.first_position).unwrap().unwrap().event_id(), b.event_ids[0]);
    let version = r.stream_version("f-1").unwrap();
    let head = r.head().unwrap();
    drop(r);
    let c = store.append("f-1", ExpectedVersion::Exact(version), [ev("C", 3)]).unwrap();
    assert_eq!(c.first_position, head + 1);
}

#[test]
fn failed_commit_poisons_and_reopen_recovers() {
    run(|dir| Store::builder(dir).fail_commit_at(3).open().unwrap());
}

#[test]
fn failed_fsync_poisons_and_reopen_recovers() {
    run(|dir| Store::builder(dir).fail_sync_at(3).open().unwrap());
}
