//! Two processes on one store: this one writes; a child opens the store
//! read-only and follows it with a subscription (which polls the log, since
//! the writer's in-process notify cannot cross the process boundary). The
//! child must see every event exactly once, in order, and a writable open in
//! the child must be refused with this process's pid.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use eventfold::{Error, ExpectedVersion, Filter, Store, SubscribeFrom};

use crate::common::ev;

const EVENTS: u64 = 300;

/// The follower: started by `reader_process_follows_the_writer_live` in a
/// child process; ignored in a normal run.
#[test]
#[ignore = "the child process of reader_process_follows_the_writer_live, started by it"]
fn child_follower() {
    let dir = std::env::var("EVENTFOLD_FOLLOWER_DIR")
        .expect("started by reader_process_follows_the_writer_live, with EVENTFOLD_FOLLOWER_DIR set");
    // End the test harness's "test … " line so our lines start clean.
    println!();
    match Store::open(&dir) {
        Err(Error::Locked { pid: Some(pid), .. }) => println!("LOCKED {pid}"),
        other => println!("UNEXPECTED {other:?}"),
    }
    let store = Store::builder(&dir).open_read_only().unwrap();
    let mut sub = store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap();
    println!("READY");
    let mut seen = 0;
    while seen < EVENTS {
        let e =
            sub.next_timeout(std::time::Duration::from_secs(60)).unwrap().expect("the writer stopped early");
        println!("EVENT {} {} {}", e.position, e.stream_id, e.version);
        seen += 1;
    }
    std::io::stdout().flush().unwrap();
}

#[test]
fn reader_process_follows_the_writer_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("mp-0", ExpectedVersion::Any, [ev("Before", 0)]).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "multiprocess::child_follower", "--ignored", "--nocapture", "--test-threads=1"])
        .env("EVENTFOLD_FOLLOWER_DIR", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = || lines.next().expect("child output").expect("utf-8 line");
    let mut line = next_line();
    while !line.starts_with("LOCKED") && !line.starts_with("UNEXPECTED") {
        line = next_line();
    }
    assert_eq!(line, format!("LOCKED {}", std::process::id()));
    while next_line() != "READY" {}
    // Append while the child follows: several requests, several streams.
    let mut written = 1;
    while written < EVENTS {
        let n = (EVENTS - written).min(7);
        let events: Vec<_> = (0..n).map(|i| ev("Live", written + i)).collect();
        store.append(&format!("mp-{}", written % 5), ExpectedVersion::Any, events).unwrap();
        written += n;
    }
    let mut positions = Vec::new();
    while positions.len() < EVENTS as usize {
        let line = next_line();
        if let Some(rest) = line.strip_prefix("EVENT ") {
            positions.push(rest.split(' ').next().unwrap().parse::<u64>().unwrap());
        }
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(positions, (1..=EVENTS).collect::<Vec<_>>());
}
