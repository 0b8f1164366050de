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
use std::path::Path;
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

/// The children, all of whose work on the FUSE mount happens in their own
/// process (an in-process store would leave the mount busy for an
/// unmount while other tests fork): `EVENTFOLD_PCS_MODE` is `fill`,
/// `scavenge` (until killed) or `check`.
#[test]
#[ignore = "the child process of the scavenge power-cut test, started by it"]
fn powercut_scavenge_child() {
    let (Ok(dir), Ok(mode)) = (std::env::var("EVENTFOLD_PCS_DIR"), std::env::var("EVENTFOLD_PCS_MODE"))
    else {
        return;
    };
    println!();
    match mode.as_str() {
        "fill" => {
            let kept = fill(Path::new(&dir));
            println!("KEPT {}", kept.iter().map(u64::to_string).collect::<Vec<_>>().join(","));
        }
        "scavenge" => scavenge(&dir),
        _ => check(&dir, &std::env::var("EVENTFOLD_PCS_EXPECT").unwrap()),
    }
}

fn scavenge(dir: &str) {
    let store = Store::open(dir).unwrap();
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

fn fill(dir: &Path) -> Vec<u64> {
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

/// What the check child is told: the kept stream's positions, the events
/// the acknowledged steps removed, and the acknowledged appends.
#[derive(serde::Serialize, serde::Deserialize)]
struct Expect {
    what: String,
    kept: Vec<u64>,
    removed: u64,
    acks: Vec<(u64, uuid::Uuid)>,
}

fn check(dir: &str, expect: &str) {
    let e: Expect = serde_json::from_str(&std::fs::read_to_string(expect).unwrap()).unwrap();
    let what = &e.what;
    let store = Store::open(dir).unwrap_or_else(|err| panic!("{what}: open: {err}"));
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{what}: {:?}", report.faults);
    assert!(report.removed >= e.removed, "{what}: {} removed, {} acknowledged", report.removed, e.removed);
    let r = store.read().unwrap();
    for &(p, id) in &e.acks {
        let ev = r.event(p).unwrap().unwrap_or_else(|| panic!("{what}: acked append at {p} lost"));
        assert_eq!(ev.event_id(), id, "{what}");
    }
    let now: Vec<u64> =
        r.stream(KEPT, ReadStream::forward()).unwrap().map(|e| e.unwrap().position()).collect();
    assert_eq!(now, e.kept, "{what}: the kept stream changed");
    let old = r.all(ReadAll::new()).unwrap().filter(|e| e.as_ref().unwrap().stream_id().starts_with("old-"));
    assert_eq!(old.count(), 0, "{what}: a deleted stream is served");
    drop(r);
    let rest = store.scavenge().unwrap();
    assert_eq!(rest.events_removed + report.removed, DELETED * PER_STREAM, "{what}");
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{what}: after the rest: {:?}", report.faults);
    let head = store.read().unwrap().head().unwrap();
    let next = store.append("live-1", ExpectedVersion::Any, [ev(0)]).unwrap();
    assert_eq!(next.first_position, head + 1, "{what}");
    store.close().unwrap();
    println!("CHECKED");
}

fn child(mode: &str, dir: &Path, expect: Option<&Path>) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "powercut_scavenge::powercut_scavenge_child", "--ignored", "--nocapture"])
        .env("EVENTFOLD_PCS_DIR", dir)
        .env("EVENTFOLD_PCS_MODE", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(e) = expect {
        cmd.env("EVENTFOLD_PCS_EXPECT", e);
    }
    cmd.spawn().unwrap()
}

/// Runs a child to its end; its stdout lines, or a panic with its stderr.
fn run_child(mode: &str, dir: &Path, expect: Option<&Path>) -> Vec<String> {
    let out = child(mode, dir, expect).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the {mode} child failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
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
    let lines = run_child("fill", &fs.path().join("store"), None);
    let kept: Vec<u64> = lines
        .iter()
        .find_map(|l| l.strip_prefix("KEPT "))
        .map(|l| l.split(',').map(|p| p.parse().unwrap()).collect())
        .unwrap();
    let filled = fs.unmount().unwrap();

    for cut in 0..cuts() {
        let mut rng = Rng::new(cut.wrapping_mul(0x9E37_79B9) + 17);
        let kill_after = 1 + rng.below(6) as usize;
        let mode = if cut % 2 == 0 { CutMode::DropAll } else { CutMode::RandomSubset { seed: rng.next() } };
        let fs = CutFs::mount(mountpoint(), &filled).unwrap();
        let mut scavenger = child("scavenge", &fs.path().join("store"), None);
        let mut lines = BufReader::new(scavenger.stdout.take().unwrap()).lines();
        let (mut steps, mut removed, mut acks) = (0usize, 0u64, Vec::new());
        let mut take = |line: &str, steps: &mut usize, removed: &mut u64| {
            let mut parts = line.split(' ');
            match parts.next() {
                Some("ACK") => {
                    let p: u64 = parts.next().unwrap().parse().unwrap();
                    acks.push((p, parts.next().unwrap().parse().unwrap()));
                }
                Some("STEP") => {
                    *steps += 1;
                    *removed = parts.next().unwrap().parse().unwrap();
                }
                _ => {}
            }
        };
        for line in lines.by_ref() {
            take(&line.unwrap(), &mut steps, &mut removed);
            if steps >= kill_after {
                break;
            }
        }
        scavenger.kill().unwrap();
        // What was already in the pipe was printed before the kill.
        let (mut late_steps, mut late_removed) = (0, 0);
        for line in lines.map_while(Result::ok) {
            take(&line, &mut late_steps, &mut late_removed);
        }
        scavenger.wait().unwrap();
        assert_eq!(steps, kill_after, "cut {cut}: the child stopped early");
        let removed = removed.max(late_removed);
        let (image, _) = fs.cut(mode).unwrap();
        let fs = CutFs::mount(mountpoint(), &image).unwrap();
        let what = format!("cut {cut} ({mode:?}, killed after {kill_after} steps)");
        let expect_file = base.path().join(format!("expect-{cut}.json"));
        let expect = Expect { what, kept: kept.clone(), removed, acks };
        std::fs::write(&expect_file, serde_json::to_vec(&expect).unwrap()).unwrap();
        let lines = run_child("check", &fs.path().join("store"), Some(&expect_file));
        assert!(lines.iter().any(|l| l == "CHECKED"), "{}: the check did not finish", expect.what);
        fs.unmount().unwrap();
    }
}
