//! The corruption campaign: damage a store's files at random — single bytes,
//! 8-byte runs, truncation — anywhere in `data.mdb` and
//! `projections/data.mdb`, and run every read command on the damaged copy in
//! a child process with a time bound.
//!
//! Each run is classified:
//!
//! - exit 0 with the undamaged store's output: fine (the damage is in space
//!   nothing reads);
//! - a non-zero exit whose last stderr line says the store is damaged or a
//!   record corrupt (exit 3), or `verify` exit 1 with its faults: fine;
//! - exit 0 with other output: served damaged data as good — FAIL;
//! - death by a signal, or a failure without the damaged-store message —
//!   FAIL;
//! - no exit within the bound — a hang, FAIL.
//!
//! And across the commands of one damage: `verify` must not call the store
//! clean when another command served different data or reported damage.
//!
//! Each damaged offset is located in the undamaged file's LMDB pages (meta
//! page, free page, page header, node header, key or value of which
//! database), so a failure names what the damage hit. Damage that no read
//! path can notice — a value that carries no checksum and is shown as it is
//! (a stream head's times, a checkpoint, a projection's meta) — is counted
//! as such, not failed: see `docs/reliability.md`.
//!
//! CI runs a quick pass; `EVENTFOLD_CORRUPTION_TRIALS=3000` runs the long
//! one (and `EVENTFOLD_CORRUPTION_SEED` picks another seed).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use eventfold::{DAMAGED_FILE_EXIT_CODE, ExpectedVersion, NewEvent, Store};
use serde_json::{Value, json};

use crate::cli::{bin, run, stderr, stdout};

/// A run that has not ended after this long is a hang. Not a timing
/// assertion: every command here takes milliseconds on an undamaged store.
const HANG_BOUND: Duration = Duration::from_secs(60);

/// Trials in the quick pass (each runs every command once).
const QUICK_TRIALS: u64 = 60;

/// splitmix64: a small seeded generator, so every trial can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---------------------------------------------------------------------------
// The store and the commands.

/// Builds the store the campaign damages: the demo's streams and its
/// projection (so `projections/data.mdb` exists, with a checkpoint), a few
/// hundred events over several streams (so the `events` tree has branch
/// pages), one event large enough for overflow pages, a consumer's
/// checkpoint and a JSON snapshot.
fn build_store(dir: &Path) {
    let o = run(dir, &["demo"]);
    assert!(o.status.success(), "demo: {}", stderr(&o));
    let store = Store::open(dir).expect("open");
    for i in 0..240u64 {
        let stream = format!("order-{}", i % 6);
        let payload = json!({ "n": i, "note": "x".repeat((i % 7 * 40) as usize) });
        store.append(&stream, ExpectedVersion::Any, [NewEvent::json("Placed", &payload)]).expect("append");
    }
    let big = json!({ "blob": "b".repeat(9000) });
    store.append("order-0", ExpectedVersion::Any, [NewEvent::json("Attached", &big)]).expect("append big");
    let mut c = store.consumer("billing").expect("consumer");
    c.ack(100).expect("ack");
    c.commit().expect("commit");
    store.snapshot_json_state("order-1").expect("snapshot");
    store.close().expect("close");
}

/// One read command: its arguments, and for `serve` the lines it reads.
struct Cmd {
    name: &'static str,
    args: Vec<String>,
    stdin: Option<String>,
}

fn commands() -> Vec<Cmd> {
    let cmd =
        |name, args: &[&str]| Cmd { name, args: args.iter().map(|a| a.to_string()).collect(), stdin: None };
    let requests = [
        json!({"type": "read_stream", "msg_id": 1, "aggregate_id": "order-1"}),
        json!({"type": "read_all", "msg_id": 2, "from_sequence": 1, "limit": 1000}),
        json!({"type": "get_state", "msg_id": 3, "aggregate_id": "order-2"}),
        json!({"type": "get_snapshot", "msg_id": 4, "aggregate_id": "order-1"}),
        json!({"type": "read_stream", "msg_id": 5, "aggregate_id": "order-0", "backwards": true, "limit": 5}),
    ];
    let lines: String = requests
        .iter()
        .map(|b| format!("{}\n", json!({"src": "client", "dest": "eventstore", "body": b})))
        .collect();
    vec![
        cmd("read --all", &["--json", "read", "--all"]),
        cmd("read stream", &["--json", "read", "order-3"]),
        cmd("read backwards", &["--json", "read", "order-0", "--backwards", "--limit", "4"]),
        cmd("streams", &["--json", "streams"]),
        cmd("event", &["--json", "event", "150"]),
        cmd("stats", &["--json", "stats"]),
        cmd("export", &["export"]),
        cmd("state", &["--json", "state", "order-1"]),
        cmd("consumers", &["--json", "consumers"]),
        cmd("projection list", &["--json", "projection", "list"]),
        Cmd { name: "serve", args: vec!["serve".into(), "--stdio".into()], stdin: Some(lines) },
        // Last: verify is judged against what the others saw.
        cmd("verify", &["--json", "verify"]),
    ]
}

/// How a child process ended.
#[derive(Debug, Clone)]
enum Ended {
    Exit { code: i32, stdout: String, stderr: String },
    Signal { status: String, stderr: String },
    Hang,
}

/// Runs `eventfold --data DIR ARGS…` with its stdin, and kills it when it
/// has not ended within [`HANG_BOUND`].
fn run_bounded(dir: &Path, cmd: &Cmd) -> Ended {
    let mut child = bin()
        .arg("--data")
        .arg(dir)
        .args(&cmd.args)
        .stdin(if cmd.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn eventfold");
    let (tx, rx) = mpsc::channel();
    if let Some(mut input) = child.stdin.take() {
        let lines = cmd.stdin.clone().unwrap_or_default();
        // A node that died early closes its stdin: ignore the broken pipe.
        std::thread::spawn(move || input.write_all(lines.as_bytes()));
    }
    for (which, pipe) in [
        (0, Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>),
        (1, Box::new(child.stderr.take().expect("stderr"))),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((which, buf));
        });
    }
    drop(tx);
    let mut outputs = [Vec::new(), Vec::new()];
    let deadline = std::time::Instant::now() + HANG_BOUND;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((which, buf)) => outputs[which] = buf,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Ended::Hang;
            }
        }
    }
    let status: ExitStatus = child.wait().expect("wait");
    let text = |b: &[u8]| String::from_utf8_lossy(b).replace(&dir.display().to_string(), "<DATA>");
    let (out, err) = (text(&outputs[0]), text(&outputs[1]));
    match status.code() {
        Some(code) => Ended::Exit { code, stdout: out, stderr: err },
        None => Ended::Signal { status: format!("{status:?}"), stderr: err },
    }
}

/// Whether a line of stderr says the store is damaged, in the words of
/// `Error::Corruption`, `IndexCorruption`, `DamagedFile`, `DamagedPages`
/// or the signal handler.
fn says_damaged(line: &str) -> bool {
    (line.contains("is corrupt") || line.contains("is damaged")) && line.contains("backup")
}

// ---------------------------------------------------------------------------
// Where a damaged byte landed, read from the undamaged file's pages (the
// layout of LMDB's mdb.c on a 64-bit little-endian machine).

const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const F_BIGDATA: u16 = 0x01;
const F_SUBDATA: u16 = 0x02;
/// Page header: pgno u64, pad u16, flags u16, lower u16, upper u16 (or pages u32).
const PAGE_HEADER: usize = 16;
/// Node header: lo u16, hi u16, flags u16, ksize u16.
const NODE_HEADER: usize = 8;
/// The meta struct sits after the page header; offsets within it.
const META_PSIZE: usize = PAGE_HEADER + 24;
const META_FREE_ROOT: usize = PAGE_HEADER + 24 + 40;
const META_MAIN_ROOT: usize = PAGE_HEADER + 72 + 40;
const META_TXNID: usize = PAGE_HEADER + 128;

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap()))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(u64::MAX, |s| u64::from_le_bytes(s.try_into().unwrap()))
}

/// What each byte range of one LMDB file is.
pub struct PageMap {
    psize: usize,
    /// page number → (database name, page kind)
    pages: BTreeMap<u64, (String, &'static str)>,
    /// (start, end, what) of every node part on a leaf or branch page, and
    /// of the value bytes on overflow pages.
    parts: Vec<(usize, usize, String)>,
    file: Vec<u8>,
}

impl PageMap {
    pub fn read(path: &Path) -> PageMap {
        let file = std::fs::read(path).expect("read data file");
        let psize = u32_at(&file, META_PSIZE) as usize;
        assert!(psize >= 512, "page size {psize}");
        let meta = |i: usize| &file[i * psize..];
        let newest = if u64_at(meta(0), META_TXNID) >= u64_at(meta(1), META_TXNID) { 0 } else { 1 };
        let mut map = PageMap { psize, pages: BTreeMap::new(), parts: Vec::new(), file: Vec::new() };
        map.pages.insert(0, ("meta".into(), "meta page"));
        map.pages.insert(1, ("meta".into(), "meta page"));
        let (free_root, main_root) =
            (u64_at(meta(newest), META_FREE_ROOT), u64_at(meta(newest), META_MAIN_ROOT));
        let mut named = Vec::new();
        map.walk(&file, free_root, "(free list)", &mut Vec::new());
        map.walk(&file, main_root, "(main)", &mut named);
        for (name, root) in named {
            map.walk(&file, root, &name, &mut Vec::new());
        }
        map.file = file;
        map
    }

    /// Walks one B-tree from `pgno`, noting its pages and node parts;
    /// named databases found in the main tree go to `named`.
    fn walk(&mut self, file: &[u8], pgno: u64, db: &str, named: &mut Vec<(String, u64)>) {
        if pgno == u64::MAX || self.pages.contains_key(&pgno) {
            return;
        }
        let base = pgno as usize * self.psize;
        let Some(page) = file.get(base..base + self.psize) else { return };
        let flags = u16_at(page, 10);
        let kind = if flags & P_BRANCH != 0 { "branch page" } else { "leaf page" };
        self.pages.insert(pgno, (db.to_string(), kind));
        let lower = u16_at(page, 12) as usize;
        let n = lower.saturating_sub(PAGE_HEADER) / 2;
        self.parts.push((base, base + PAGE_HEADER, format!("{db} page header")));
        self.parts.push((base + PAGE_HEADER, base + lower, format!("{db} node offsets")));
        for i in 0..n {
            let at = u16_at(page, PAGE_HEADER + 2 * i) as usize;
            let node = base + at;
            let ksize = u16_at(page, at + 6) as usize;
            let nflags = u16_at(page, at + 4);
            let dsize = u16_at(page, at) as usize | (u16_at(page, at + 2) as usize) << 16;
            let key = (node + NODE_HEADER, node + NODE_HEADER + ksize);
            self.parts.push((node, node + NODE_HEADER, format!("{db} node header")));
            self.parts.push((key.0, key.1, format!("{db} key")));
            if flags & P_BRANCH != 0 {
                let child = dsize as u64 | u64::from(nflags) << 32;
                self.walk(file, child, db, named);
            } else if flags & P_LEAF != 0 {
                if nflags & F_BIGDATA != 0 {
                    let over = u64_at(file, key.1);
                    self.parts.push((key.1, key.1 + 8, format!("{db} overflow page number")));
                    let obase = over as usize * self.psize;
                    let pages = u32_at(file, obase + 12) as u64;
                    for p in over..over + pages.max(1) {
                        self.pages.insert(p, (db.to_string(), "overflow page"));
                    }
                    self.parts.push((obase, obase + PAGE_HEADER, format!("{db} overflow page header")));
                    self.parts.push((
                        obase + PAGE_HEADER,
                        obase + PAGE_HEADER + dsize,
                        format!("{db} value"),
                    ));
                } else if nflags & F_SUBDATA != 0 {
                    let name = String::from_utf8_lossy(&file[key.0..key.1]).into_owned();
                    let root = u64_at(file, key.1 + 40);
                    self.parts.push((key.1, key.1 + dsize, format!("{db} record of database {name}")));
                    named.push((name, root));
                } else {
                    self.parts.push((key.1, key.1 + dsize, format!("{db} value")));
                }
            }
        }
    }

    /// What the byte at `offset` is part of.
    pub fn locate(&self, offset: usize) -> String {
        let pgno = (offset / self.psize) as u64;
        let Some((db, kind)) = self.pages.get(&pgno) else { return "free or unused page".into() };
        if *kind == "meta page" {
            return "meta page".into();
        }
        match self.parts.iter().find(|(s, e, _)| *s <= offset && offset < *e) {
            Some((_, _, what)) => what.clone(),
            None => format!("{db} {kind}, unused space"),
        }
    }

    /// The start of the first node part described as `what` (for crafting
    /// damage in the regression tests).
    pub fn find(&self, what: &str) -> Vec<(usize, usize)> {
        self.parts.iter().filter(|(_, _, w)| w == what).map(|(s, e, _)| (*s, *e)).collect()
    }

    /// The undamaged file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.file
    }
}

// ---------------------------------------------------------------------------
// Damage.

#[derive(Debug, Clone)]
enum Damage {
    Flip { offset: usize, xor: u8 },
    Run { offset: usize, bytes: [u8; 8] },
    Truncate { len: usize },
}

impl Damage {
    fn random(rng: &mut Rng, len: usize) -> Damage {
        match rng.below(10) {
            0..=4 => Damage::Flip { offset: rng.below(len as u64) as usize, xor: (rng.below(255) + 1) as u8 },
            5..=8 => Damage::Run {
                offset: rng.below(len.saturating_sub(8) as u64) as usize,
                bytes: rng.next().to_le_bytes(),
            },
            _ => Damage::Truncate { len: rng.below(len as u64) as usize },
        }
    }

    fn apply(&self, path: &Path) {
        let mut bytes = std::fs::read(path).expect("read");
        match self {
            Damage::Flip { offset, xor } => bytes[*offset] ^= xor,
            Damage::Run { offset, bytes: run } => bytes[*offset..*offset + 8].copy_from_slice(run),
            Damage::Truncate { len } => bytes.truncate(*len),
        }
        std::fs::write(path, bytes).expect("write");
    }

    /// The bytes changed, or `None` for a truncation.
    fn range(&self) -> Option<std::ops::Range<usize>> {
        match self {
            Damage::Flip { offset, .. } => Some(*offset..*offset + 1),
            Damage::Run { offset, .. } => Some(*offset..*offset + 8),
            Damage::Truncate { .. } => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Damage::Flip { .. } => "byte",
            Damage::Run { .. } => "8 bytes",
            Damage::Truncate { .. } => "truncate",
        }
    }
}

/// Copies a store directory (its data files; LMDB makes new lock files).
fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("projections")).expect("mkdir");
    for f in ["data.mdb", "projections/data.mdb"] {
        std::fs::copy(from.join(f), to.join(f)).expect("copy");
    }
}

// ---------------------------------------------------------------------------
// Judging.

/// What one command did on a damaged copy, judged against the undamaged run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// Same output, exit 0.
    Same,
    /// Stopped with the damaged-store message (or verify's faults).
    Reported,
    /// Exit 0 with other output: damaged data served as good.
    Served,
    /// A signal death or a failure without the message.
    Crashed(String),
    Hang,
}

impl Verdict {
    fn failed(&self) -> bool {
        matches!(self, Verdict::Served | Verdict::Crashed(_) | Verdict::Hang)
    }
}

/// The replies of a `serve` run, each one either what the undamaged node
/// replied or an error reply that says the store is damaged.
fn judge_serve(want: &str, got: &str) -> Verdict {
    let (want, got): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    if want == got {
        return Verdict::Same;
    }
    if want.len() != got.len() {
        return Verdict::Served;
    }
    for (w, g) in want.iter().zip(&got) {
        if w == g {
            continue;
        }
        let reply: Value = serde_json::from_str(g).unwrap_or(Value::Null);
        let body = &reply["body"];
        if !(body["type"] == "error" && says_damaged(body["text"].as_str().unwrap_or(""))) {
            return Verdict::Served;
        }
    }
    Verdict::Reported
}

fn judge(cmd: &Cmd, want: &str, got: &Ended) -> Verdict {
    match got {
        Ended::Hang => Verdict::Hang,
        Ended::Signal { status, stderr } => Verdict::Crashed(format!("{status}: {}", stderr.trim())),
        Ended::Exit { code: 0, stdout, .. } if cmd.name == "serve" => judge_serve(want, stdout),
        Ended::Exit { code: 0, stdout, .. } if stdout == want => Verdict::Same,
        Ended::Exit { code: 0, .. } => Verdict::Served,
        Ended::Exit { code, stdout, stderr } => {
            let last = stderr.trim_end().lines().last().unwrap_or("");
            let verify_faults = cmd.name == "verify"
                && *code == 1
                && serde_json::from_str::<Value>(stdout.trim())
                    .is_ok_and(|r| r["fault_count"].as_u64() > Some(0));
            if verify_faults || (*code == DAMAGED_FILE_EXIT_CODE && says_damaged(last)) {
                Verdict::Reported
            } else {
                Verdict::Crashed(format!("exit {code}: {}", stderr.trim()))
            }
        }
    }
}

/// Damage that a read path cannot see, because it sits in a key or value
/// that has no checksum and is shown as it is: a command that prints it
/// differently and exits 0 is counted under this name, not failed.
/// Anything else that is served differently fails the campaign.
struct Unchecked {
    what: &'static str,
    /// Whether `verify` checks it against the log, so that `verify` must
    /// still not call the store clean.
    verify_sees: bool,
}

fn unchecked_value(file: &str, location: &str) -> Option<Unchecked> {
    let (what, verify_sees) = match (file, location) {
        // A head's times and versions are checked against the log by
        // verify; `read STREAM` shows whatever version the head says.
        ("data.mdb", "streams value") => ("stream head", true),
        // A damaged stream id: the stream reads as missing (verify: a
        // stream with events but no head).
        ("data.mdb", "streams key") => ("stream id", true),
        // LMDB's record of a database: its entry count is what `stats`
        // shows as the number of streams; verify compares every count with
        // its walk.
        ("data.mdb", l) if l.starts_with("(main) record of database ") => ("LMDB database record", true),
        _ => return None,
    };
    Some(Unchecked { what, verify_sees })
}

/// Everything one trial found.
struct Trial {
    file: &'static str,
    damage: Damage,
    location: String,
    verdicts: Vec<(&'static str, Verdict, String)>,
}

/// Runs `trials` damaged copies of the store; returns every trial.
fn campaign(seed: u64, trials: u64) -> Vec<Trial> {
    let root = tempfile::tempdir().expect("tempdir");
    let pristine = root.path().join("pristine");
    build_store(&pristine);
    let maps = [
        ("data.mdb", PageMap::read(&pristine.join("data.mdb"))),
        ("projections/data.mdb", PageMap::read(&pristine.join("projections/data.mdb"))),
    ];
    let cmds = commands();
    // The undamaged outputs, from a copy (so the paths match).
    let base = root.path().join("base");
    copy_store(&pristine, &base);
    let baseline: Vec<String> = cmds
        .iter()
        .map(|c| match run_bounded(&base, c) {
            Ended::Exit { code: 0, stdout, .. } => stdout,
            other => panic!("{} on the undamaged store: {other:?}", c.name),
        })
        .collect();
    // EVENTFOLD_CORRUPTION_KEEP=DIR keeps the damaged copy of every failed
    // trial there, to look at.
    let keep = std::env::var_os("EVENTFOLD_CORRUPTION_KEEP").map(PathBuf::from);
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for t in 0..trials {
        let (file, map) = if rng.below(10) < 7 { &maps[0] } else { &maps[1] };
        let damage = Damage::random(&mut rng, map.bytes().len());
        let location = match damage.range() {
            None => "truncation".to_string(),
            Some(range) => {
                let mut parts: Vec<String> = range.map(|o| map.locate(o)).collect();
                parts.dedup();
                parts.join(" + ")
            }
        };
        let dir = root.path().join(format!("t{t}"));
        copy_store(&pristine, &dir);
        damage.apply(&dir.join(file));
        let mut verdicts = Vec::new();
        for (c, want) in cmds.iter().zip(&baseline) {
            let got = run_bounded(&dir, c);
            let verdict = judge(c, want, &got);
            let detail = match &got {
                Ended::Exit { stderr, .. } | Ended::Signal { stderr, .. } => {
                    stderr.trim_end().lines().last().unwrap_or("").to_string()
                }
                Ended::Hang => String::new(),
            };
            verdicts.push((c.name, verdict, detail));
        }
        let trial = Trial { file, damage, location, verdicts };
        if keep.is_some() && !problems(&trial).is_empty() {
            let kept = keep.as_deref().unwrap_or(Path::new(".")).join(format!("trial-{t}"));
            let _ = std::fs::remove_dir_all(&kept);
            copy_store(&dir, &kept);
            eprintln!("kept trial {t} in {}", kept.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
        out.push(trial);
    }
    out
}

/// What is wrong with one trial, if anything: a failed command (unless the
/// damage is in an unchecked value and the command only showed it), or a
/// `verify` that called the store clean while another command saw damage.
fn problems(trial: &Trial) -> Vec<String> {
    let mut found = Vec::new();
    let unchecked = unchecked_value(trial.file, &trial.location);
    let mut others_saw_damage = false;
    for (name, verdict, detail) in &trial.verdicts {
        if *name == "verify" {
            let clean = *verdict == Verdict::Same;
            if clean && others_saw_damage && unchecked.as_ref().is_none_or(|u| u.verify_sees) {
                found.push("verify calls the store clean, but another command saw damage".to_string());
            }
        } else if *verdict != Verdict::Same {
            others_saw_damage = true;
        }
        let shown_unchecked = *verdict == Verdict::Served && unchecked.is_some();
        if verdict.failed() && !shown_unchecked {
            found.push(format!("{name}: {verdict:?} {detail}"));
        }
    }
    found
}

fn trials_from_env() -> (u64, u64) {
    let n = std::env::var("EVENTFOLD_CORRUPTION_TRIALS").ok().and_then(|v| v.parse().ok());
    let seed = std::env::var("EVENTFOLD_CORRUPTION_SEED").ok().and_then(|v| v.parse().ok());
    (seed.unwrap_or(0x00da_4a6e), n.unwrap_or(QUICK_TRIALS))
}

/// The campaign: random damage across both data files, every read command
/// on each damaged copy. Guards that no damage makes a command crash
/// without saying the store is damaged, hang, or serve damaged data as
/// good, and that `verify` never calls a store clean that another command
/// found damaged.
///
/// The campaign runs in a child process (this test binary again): it
/// starts hundreds of processes, and a process started while another
/// test's store is open holds that store's write lock (`flock`) from fork
/// to exec; from its own process, nothing of the other tests is open.
#[test]
fn random_damage_is_reported_never_served_or_crashed_on() {
    let exe = std::env::current_exe().expect("test binary");
    let o = Command::new(exe)
        .args([
            "--exact",
            "corruption::campaign_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("EVENTFOLD_CAMPAIGN_CHILD", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run the campaign");
    // The child's report (shown with --nocapture, or on failure).
    eprintln!("{}", stderr(&o));
    assert!(o.status.success(), "the campaign failed: {:?} (its report is above)", o.status);
    assert!(stderr(&o).contains("corruption campaign: seed"), "the campaign did not run");
}

/// The campaign itself, run as a child process by
/// [`random_damage_is_reported_never_served_or_crashed_on`].
#[test]
#[ignore = "run as a child process by random_damage_is_reported_never_served_or_crashed_on"]
fn campaign_child() {
    if std::env::var_os("EVENTFOLD_CAMPAIGN_CHILD").is_none() {
        return;
    }
    let (seed, trials) = trials_from_env();
    let results = campaign(seed, trials);
    let mut tally: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, t) in results.iter().enumerate() {
        for (name, verdict, _) in &t.verdicts {
            let v = match verdict {
                Verdict::Crashed(_) => "Crashed".to_string(),
                other => format!("{other:?}"),
            };
            *tally.entry(format!("{v:<9} {name}")).or_default() += 1;
        }
        if let Some(u) = unchecked_value(t.file, &t.location)
            && t.verdicts.iter().any(|(_, v, _)| *v == Verdict::Served)
        {
            *tally.entry(format!("trials shown unchecked: {}", u.what)).or_default() += 1;
        }
        for p in problems(t) {
            failures.push(format!(
                "trial {i} ({} {} in {}, {:?}): {p}",
                t.damage.kind(),
                t.file,
                t.location,
                t.damage
            ));
        }
    }
    let runs: u64 = results.iter().map(|t| t.verdicts.len() as u64).sum();
    eprintln!("corruption campaign: seed {seed}, {trials} trials, {runs} command runs");
    for (k, n) in &tally {
        eprintln!("  {n:>6}  {k}");
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} failures in {trials} trials (seed {seed}); see above", failures.len());
}

// ---------------------------------------------------------------------------
// Regression tests for the damage the campaign found.

fn small_store() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("data");
    build_store(&d);
    (t, d)
}

/// Guards the open-time file check from the command line: a `data.mdb` or
/// `projections/data.mdb` cut short makes every read command and the node
/// exit 3 with one line saying the file is damaged (it was `Bus error`,
/// exit 135, for every command).
#[test]
fn a_file_cut_short_is_refused_by_every_command() {
    let (_t, dir) = small_store();
    for (file, cmds) in [
        ("data.mdb", commands()),
        (
            "projections/data.mdb",
            commands()
                .into_iter()
                .filter(|c| ["stats", "projection list", "verify"].contains(&c.name))
                .collect(),
        ),
    ] {
        let path = dir.join(file);
        let saved = std::fs::read(&path).unwrap();
        std::fs::write(&path, &saved[..saved.len() / 2 + 100]).unwrap();
        for c in &cmds {
            match run_bounded(&dir, c) {
                // verify opens the read models itself, and names their
                // file's damage as a fault.
                Ended::Exit { code: 1, stdout, .. } if c.name == "verify" && file != "data.mdb" => {
                    assert!(
                        stdout.contains("\"area\":\"projections\"") && stdout.contains("cut short"),
                        "{stdout}"
                    );
                }
                Ended::Exit { code, stderr, .. } => {
                    assert_eq!(code, DAMAGED_FILE_EXIT_CODE, "{file} {}: {stderr}", c.name);
                    let line = stderr.trim_end().lines().last().unwrap_or("");
                    assert!(says_damaged(line) && line.contains("cut short"), "{file} {}: {stderr}", c.name);
                    if c.name != "serve" {
                        assert_eq!(stderr.trim_end().lines().count(), 1, "{}: {stderr}", c.name);
                    }
                }
                other => panic!("{file} {}: {other:?}", c.name),
            }
        }
        std::fs::write(&path, saved).unwrap();
    }
}

/// Guards the map-fault handler: a damaged page whose value size reaches
/// past the end of the file makes LMDB hand out a slice the file does not
/// back, and reading it raises `SIGBUS`. The command ends with the
/// handler's one line and exit 3, not `Bus error`.
#[test]
fn a_fault_in_the_memory_map_is_one_line_and_exit_3() {
    let (_t, dir) = small_store();
    let path = dir.join("data.mdb");
    let map = PageMap::read(&path);
    // The big event's leaf node: its data size (lo, hi) is the node
    // header's first four bytes; its overflow pages are at the end of the
    // value, so a size of 1 GiB reaches far past the file's end.
    let headers = map.find("events node header");
    let big = headers
        .iter()
        .find(|(s, _)| u16_at(map.bytes(), s + 4) & F_BIGDATA != 0)
        .expect("an events value on overflow pages");
    let mut bytes = map.bytes().to_vec();
    bytes[big.0..big.0 + 4].copy_from_slice(&(1u32 << 30).to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let o = run(&dir, &["--json", "read", "order-0", "--backwards", "--limit", "1"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(DAMAGED_FILE_EXIT_CODE), "{:?} {err} {}", o.status, stdout(&o));
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("is damaged") && err.contains("memory map") && err.contains("backup"), "{err}");
}

/// Guards verify's walk over a damaged B-tree: a branch page of `events`
/// pointing past the last page makes LMDB fail the read transaction
/// (MDB_PAGE_NOTFOUND). verify reports it as a fault, goes on with the
/// other databases in a new transaction, and exits 1 with its report.
#[test]
fn verify_reports_a_damaged_page_and_walks_on() {
    let (_t, dir) = small_store();
    let path = dir.join("data.mdb");
    let map = PageMap::read(&path);
    let mut bytes = map.bytes().to_vec();
    // The last child of the events tree's branch page: its page number is
    // the node header's lo and hi (and flags, the high bits).
    let branch = map
        .find("events node header")
        .into_iter()
        .rfind(|(s, _)| map.pages.get(&((*s / map.psize) as u64)).is_some_and(|(_, k)| *k == "branch page"))
        .expect("the events tree has a branch page");
    bytes[branch.0..branch.0 + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let o = run(&dir, &["--json", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report: Value = serde_json::from_str(stdout(&o).trim()).expect("a report");
    let faults = report["faults"].as_array().expect("faults");
    assert!(
        faults.iter().any(|f| f["area"] == "events" && f["message"].as_str().unwrap().contains("damaged")),
        "{report}"
    );
    assert!(report["streams"].as_u64() > Some(0) && report["index_runs"].as_u64() > Some(0), "{report}");
}

/// Guards that the damaged-file handler leaves a stack overflow to Rust's
/// own report ("has overflowed its stack", SIGABRT) even with a store open:
/// it runs this test binary again as a child that opens a store, installs
/// the handler and recurses without end.
#[test]
fn a_stack_overflow_is_still_reported_as_one() {
    if std::env::var_os("EVENTFOLD_OVERFLOW_CHILD").is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let o = Command::new(exe)
        .args([
            "--exact",
            "corruption::overflow_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("EVENTFOLD_OVERFLOW_CHILD", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run the child");
    let err = stderr(&o);
    assert!(err.contains("has overflowed its stack"), "{:?} {err}", o.status);
    assert!(!err.contains("is damaged"), "{err}");
    assert_ne!(o.status.code(), Some(DAMAGED_FILE_EXIT_CODE), "{err}");
}

/// The child of [`a_stack_overflow_is_still_reported_as_one`]; does nothing
/// unless run by it.
#[test]
#[ignore = "run as a child process by a_stack_overflow_is_still_reported_as_one"]
fn overflow_child() {
    if std::env::var_os("EVENTFOLD_OVERFLOW_CHILD").is_none() {
        return;
    }
    /// Recurses until the stack overflows (the depth is never reached).
    fn deeper(n: u64) -> u64 {
        let pad = std::hint::black_box([n; 64]);
        if pad[0] == u64::MAX { 0 } else { pad[(n % 64) as usize] + deeper(n + 1) }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    eventfold::install_damaged_file_handler().expect("install");
    let n = deeper(0);
    println!("{n}");
    drop(store);
}
