//! Crash tests: a child process appends from several threads and reports each
//! acknowledged append; it is killed with SIGKILL at a random moment. The
//! parent reopens the store and checks that nothing acknowledged was lost,
//! that no request is half-applied, that the indexes agree with the log
//! (`verify`), and that appending goes on at the right version and position.
//!
//! CI runs a few seeded iterations per durability. For a soak run:
//! `EVENTFOLD_CRASH_ITERATIONS=1000 cargo test --release --test it crash -- --nocapture`

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use eventfold::{Durability, ExpectedVersion, NewEvent, ReadAll, Store};
use serde_json::json;
use uuid::Uuid;

use crate::common::Rng;

const STREAMS: u64 = 8;
const THREADS: u64 = 4;

fn durability_from_env() -> Durability {
    match std::env::var("EVENTFOLD_CRASH_DURABILITY").as_deref() {
        Ok("nosync") => Durability::NoSync,
        Ok("relaxed") => Durability::Relaxed,
        _ => Durability::Sync,
    }
}

/// The child: appends until it is killed. Started by `run_crash_iteration`
/// in a child process; ignored in a normal run.
#[test]
#[ignore = "the child process of the crash tests, started by them"]
fn crash_child() {
    let dir = std::env::var("EVENTFOLD_CRASH_CHILD_DIR").expect(
        "crash_child runs in a child process started by the crash tests, with EVENTFOLD_CRASH_CHILD_DIR set",
    );
    // End the test harness's "test … " line so every ACK line starts clean.
    println!();
    let seed: u64 = std::env::var("EVENTFOLD_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let store = Store::builder(&dir).durability(durability_from_env()).open().unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(seed.wrapping_mul(31).wrapping_add(t + 1) | 1);
                loop {
                    let stream = format!("crash-{}", rng.below(STREAMS));
                    let n = 1 + rng.below(3);
                    let req = Uuid::now_v7();
                    let events: Vec<NewEvent> = (0..n)
                        .map(|k| NewEvent::json("Tick", &json!({ "req": req, "k": k, "of": n, "pad": "x".repeat(rng.below(200) as usize) })))
                        .collect();
                    let r = store.append(&stream, ExpectedVersion::Any, events).unwrap();
                    let ids: Vec<String> = r.event_ids.iter().map(|i| i.to_string()).collect();
                    println!("ACK {} {} {} {} {}", r.stream_id, r.first_position, r.last_position, r.stream_version, ids.join(","));
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

struct Ack {
    stream: String,
    first: u64,
    last: u64,
    version: u64,
    ids: Vec<Uuid>,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    Some(Ack {
        stream: parts.next()?.to_string(),
        first: parts.next()?.parse().ok()?,
        last: parts.next()?.parse().ok()?,
        version: parts.next()?.parse().ok()?,
        ids: parts.next()?.split(',').map(|s| s.parse().ok()).collect::<Option<_>>()?,
    })
}

/// One kill-and-check round; returns how many acknowledged appends it checked.
fn run_crash_iteration(seed: u64, durability: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let kill_after = 5 + rng.below(200) as usize;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash::crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("EVENTFOLD_CRASH_CHILD_DIR", dir.path())
        .env("EVENTFOLD_CRASH_SEED", seed.to_string())
        .env("EVENTFOLD_CRASH_DURABILITY", durability)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acks = Vec::new();
    for line in lines.by_ref() {
        if let Some(a) = parse_ack(&line.unwrap()) {
            acks.push(a);
            if acks.len() >= kill_after {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    // Acknowledgements already in the pipe count too.
    for line in lines {
        if let Some(a) = line.ok().and_then(|l| parse_ack(&l)) {
            acks.push(a);
        }
    }
    child.wait().unwrap();
    assert!(acks.len() >= kill_after, "the child stopped early (seed {seed})");

    let store = Store::open(dir.path()).unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "seed {seed}: {:?}", report.faults);
    let r = store.read().unwrap();
    for a in &acks {
        for (k, id) in a.ids.iter().enumerate() {
            let e = r
                .event(a.first + k as u64)
                .unwrap()
                .unwrap_or_else(|| panic!("seed {seed}: acked position {} lost", a.first));
            assert_eq!(e.event_id(), *id, "seed {seed}");
            assert_eq!(e.stream_id(), a.stream);
            assert_eq!(e.version(), a.version - (a.last - a.first) + k as u64);
        }
    }
    // No request is half-applied.
    let mut requests: HashMap<String, (u64, u64)> = HashMap::new();
    for e in r.all(ReadAll::new()).unwrap() {
        let v: serde_json::Value = e.unwrap().payload_as().unwrap();
        let entry =
            requests.entry(v["req"].as_str().unwrap().to_string()).or_insert((0, v["of"].as_u64().unwrap()));
        entry.0 += 1;
    }
    assert!(requests.values().all(|(seen, of)| seen == of), "seed {seed}: a request was half-applied");
    // Appending goes on where the log ends.
    let head = r.head().unwrap();
    let version = r.stream_version("crash-0").unwrap();
    drop(r);
    let res = store
        .append("crash-0", ExpectedVersion::Exact(version), [NewEvent::json("After", &json!({}))])
        .unwrap();
    assert_eq!((res.first_position, res.stream_version), (head + 1, version + 1));
    acks.len()
}

fn iterations() -> u64 {
    std::env::var("EVENTFOLD_CRASH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(3)
}

#[test]
fn killed_writer_loses_nothing_acknowledged_sync() {
    for seed in 1..=iterations() {
        run_crash_iteration(seed, "sync");
    }
}

#[test]
fn killed_writer_loses_nothing_acknowledged_relaxed() {
    for seed in 1..=iterations() {
        run_crash_iteration(seed + 20_000, "relaxed");
    }
}

#[test]
fn killed_writer_loses_nothing_acknowledged_nosync() {
    for seed in 1..=iterations() {
        run_crash_iteration(seed + 10_000, "nosync");
    }
}
