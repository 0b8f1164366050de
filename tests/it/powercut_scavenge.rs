//! Power cuts in the middle of a scavenge: the store lives on `cutfs`
//! (see `powercut.rs`); a child scavenges deleted streams while a thread
//! appends to a live one, printing each acknowledged append and each
//! committed step; the parent kills it after a seeded number of steps,
//! cuts the power (dropping every unsynced write, or a random subset of
//! them), mounts what survived and checks, under `Sync`:
//!
//! - the store opens and `verify` is clean: every hole is a recorded
//!   removal, every recorded removal is a hole;
//! - every acknowledged append is there; every event of the kept streams
//!   is there; the deleted streams serve nothing;
//! - at least the acknowledged steps' events are gone, and a new scavenge
//!   removes exactly the rest; appends go on at head + 1.
//!
//! The soak: `EVENTFOLD_POWERCUT_SCAVENGE_CUTS=100 cargo test --release --test it powercut_scavenge -- --nocapture`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use cutfs::{CutFs, CutMode, Image};
use eventfold::{EventMetadata, ExpectedVersion, NewEvent, ReadAll, ReadStream, Store};

use crate::common::Rng;

const DELETED: u64 = 3;
const PER_STREAM: u64 = 2_500;
const KEPT: &str = "keep-1";
const QUICK_CUTS: u64 = 6;

fn ev(n: u64) -> NewEvent {
    NewEvent::json("E", &n).with_tag(format!("n:{}", n % 7))
}

/// The child: scavenges the store at `EVENTFOLD_PCS_DIR` while appending
/// to `live-1`, until it is killed.
#[test]
#[ignore = "the child process of the scavenge power-cut test, started by it"]
fn powercut_scavenge_child() {
    let Ok(dir) = std::env::var("EVENTFOLD_PCS_DIR") else { return };
    println!();
    let store = Store::open(&dir).unwrap();
    let appender = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0.. {
                let Ok(r) = store.append("live-1", ExpectedVersion::Any, [ev(i)]) else { return };
                println!("ACK {} {}", r.first_position, r.event_ids[0]);
            }
        })
    };
    store.scavenge_with_progress(|p| println!("STEP {}", p.removed)).unwrap();
    println!("DONE");
    let _ = appender.join();
}

fn fill(dir: &std::path::Path) -> Vec<u64> {
    let store = Store::open(dir).unwrap();
    for chunk in 0..(PER_STREAM / 500) {
        for s in 0..DELETED {
            let events = (0..500).map(|i| ev(chunk * 500 + i));
            store.append(&format!("old-{s}"), ExpectedVersion::Any, events).unwrap();
        }
        store.append(KEPT, ExpectedVersion::Any, (0..10).map(|i| ev(chunk * 10 + i))).unwrap();
    }
    for s in 0..DELETED {
        store.delete_stream(&format!("old-{s}"), "closed", EventMetadata::new()).unwrap();
    }
    let kept = store.read().unwrap();
    let positions =
        kept.stream(KEPT, ReadStream::forward()).unwrap().map(|e| e.unwrap().position()).collect();
    drop(kept);
    store.close().unwrap();
    positions
}

fn cuts() -> u64 {
    std::env::var("EVENTFOLD_POWERCUT_SCAVENGE_CUTS").ok().and_then(|s| s.parse().ok()).unwrap_or(QUICK_CUTS)
}

#[test]
fn a_power_cut_during_a_scavenge_loses_nothing_served() {
    if let Err(why) = cutfs::check_support() {
        eprintln!("skipped: power-cut tests need FUSE: {why}");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut mountpoint = || {
        n += 1;
        let p = base.path().join(format!("m{n}"));
        std::fs::create_dir(&p).unwrap();
        p
    };
    let fs = match CutFs::mount(mountpoint(), &Image::empty()) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped: power-cut tests cannot mount their FUSE file system: {e}");
            return;
        }
    };
    let dir = fs.path().join("store");
    let kept = fill(&dir);
    let filled = fs.unmount().unwrap();
    let total = DELETED * PER_STREAM;

    for cut in 0..cuts() {
        let mut rng = Rng::new(cut.wrapping_mul(0x9E37_79B9) + 17);
        let kill_after = 1 + rng.below(6) as usize;
        let mode = if cut % 2 == 0 { CutMode::DropAll } else { CutMode::RandomSubset { seed: rng.next() } };
        let fs = CutFs::mount(mountpoint(), &filled).unwrap();
        let dir = fs.path().join("store");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "powercut_scavenge::powercut_scavenge_child", "--ignored", "--nocapture"])
            .env("EVENTFOLD_PCS_DIR", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut steps, mut removed, mut acks) = (0usize, 0u64, Vec::new());
        for line in lines.by_ref() {
            let line = line.unwrap();
            let mut parts = line.split(' ');
            match parts.next() {
                Some("ACK") => {
                    let p: u64 = parts.next().unwrap().parse().unwrap();
                    let id: uuid::Uuid = parts.next().unwrap().parse().unwrap();
                    acks.push((p, id));
                }
                Some("STEP") => {
                    steps += 1;
                    removed = parts.next().unwrap().parse().unwrap();
                    if steps >= kill_after {
                        break;
                    }
                }
                _ => {}
            }
        }
        child.kill().unwrap();
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (p, id) = rest.split_once(' ').unwrap();
                acks.push((p.parse().unwrap(), id.parse().unwrap()));
            }
        }
        child.wait().unwrap();
        assert_eq!(steps, kill_after, "cut {cut}: the child stopped early");
        let (image, _) = fs.cut(mode).unwrap();
        let fs = CutFs::mount(mountpoint(), &image).unwrap();
        let dir = fs.path().join("store");
        let what = format!("cut {cut} ({mode:?}, killed after {kill_after} steps)");
        {
            let store = Store::open(&dir).unwrap_or_else(|e| panic!("{what}: open: {e}"));
            let report = store.verify().unwrap();
            assert!(report.is_ok(), "{what}: {:?}", report.faults);
            assert!(report.removed >= removed, "{what}: {} removed, {removed} acknowledged", report.removed);
            let r = store.read().unwrap();
            for &(p, id) in &acks {
                let e = r.event(p).unwrap().unwrap_or_else(|| panic!("{what}: acked append at {p} lost"));
                assert_eq!(e.event_id(), id, "{what}");
            }
            let now: Vec<u64> =
                r.stream(KEPT, ReadStream::forward()).unwrap().map(|e| e.unwrap().position()).collect();
            assert_eq!(now, kept, "{what}: the kept stream changed");
            let old = r
                .all(ReadAll::new())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().stream_id().starts_with("old-"));
            assert_eq!(old.count(), 0, "{what}: a deleted stream is served");
            drop(r);
            let rest = store.scavenge().unwrap();
            assert_eq!(rest.events_removed + report.removed, total, "{what}");
            let report = store.verify().unwrap();
            assert!(report.is_ok(), "{what}: after the rest: {:?}", report.faults);
            let head = store.read().unwrap().head().unwrap();
            let next = store.append("live-1", ExpectedVersion::Any, [ev(0)]).unwrap();
            assert_eq!(next.first_position, head + 1, "{what}");
            store.close().unwrap();
        }
        fs.unmount().unwrap();
    }
}
