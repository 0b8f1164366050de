//! Power cuts: the store lives on `cutfs` (testing/cutfs), a FUSE file
//! system that holds unsynced writes in memory and, at a cut, keeps none or a
//! random subset of them. A child process runs appenders, two live
//! projections and a durable consumer on it; the parent kills it, cuts,
//! mounts what survived on a fresh FUSE session, and a second child reopens
//! the store and checks it:
//!
//! - every acknowledged append is there, at its position, with its id,
//!   stream and version. `Sync`: all of them. `Relaxed`: all but those of the
//!   child's last commit (the child prints each commit's head from
//!   `StoreBuilder::on_commit`; an append belongs to the first commit whose
//!   head reaches its last position, and everything up to the head of the
//!   commit before the last one must survive). `NoSync`: any may be lost;
//!   what is served must be what was acknowledged;
//! - `verify` is clean, and no request is half there;
//! - the consumer's checkpoint is at most the head and not behind the last
//!   acknowledged checkpoint (`Relaxed`: the one before it); its audit events
//!   (written with `append_and_ack`) are exactly one per qualifying event up
//!   to its checkpoint: nothing skipped, nothing handled twice;
//! - each projection's checkpoint is at most the head, and its model equals
//!   the model recomputed from the log up to that checkpoint;
//! - appends continue at head + 1; the projections and the consumer catch up
//!   and the same checks hold again.
//!
//! `NoSync` promises less (docs/reliability.md): recent commits may be lost,
//! and a cut that keeps a random subset of pages may damage the file. There
//! the checks are that damage is reported (by `open` or `verify`) and never
//! served as good (a wrong event, a consumer checkpoint out of step with its
//! own effects), and that nothing crashes or hangs, including later writes
//! on a store that passed the checks. Read models out of step with the log
//! are recorded as notes: the two files lose their recent commits
//! independently, and nothing is promised across them.
//!
//! Rounds on one store form a chain of up to three cuts (each round starts
//! from what the previous one recovered); a failed round ends its chain and
//! the next cut starts on a fresh store. Half the cuts kill the child under
//! load (after a seeded number of acknowledgements), half once it settled
//! (appenders stopped, consumer caught up, one last append that both
//! projections have applied): the power cut of a quiet service after a burst.
//! Cuts alternate `DropAll` and `RandomSubset`. Halfway to the kill the
//! kernel writes back everything it holds (`CutFs::write_back`), so a cut
//! does not always fall back to the last sync.
//!
//! CI runs 24 cuts for `Sync` and `Relaxed` and 96 for `NoSync` (whose
//! faults show in a few cuts in a hundred); seconds in all. The soak:
//! `EVENTFOLD_POWERCUT_CUTS=300 cargo test --release --test it powercut -- --nocapture`
//! (`EVENTFOLD_POWERCUT_SEED` picks another series of seeds).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use cutfs::{CutFs, CutMode, CutReport, Image};
use eventfold::{
    AppendResult, Consumer, Durability, ExpectedVersion, Filter, NewEvent, Projection, ProjectionContext,
    ProjectionRunner, ProjectionState, ReadAll, RecordedEvent, Store,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::common::Rng;

const APPENDERS: u64 = 3;
/// Streams `acct-0..5` (read by `PcAcct` and the consumer) and `misc-0..2`.
const ACCT_STREAMS: u64 = 6;
const MISC_STREAMS: u64 = 3;
const PROJECTION_BATCH: usize = 32;
const CONSUMER: &str = "pc-audit";
const CONSUMER_COMMIT_EVERY: u64 = 4;
/// Rounds on one store before the next cut starts a fresh one.
const CHAIN_ROUNDS: u32 = 3;
/// A child that prints nothing for this long hangs: it is killed and the
/// test fails. Only a guard against hangs; no result depends on time.
const WATCHDOG: Duration = Duration::from_secs(300);

/// Cuts of the quick pass (CI), per durability. What `NoSync` may get wrong
/// shows in a fraction of its random-subset cuts, so it gets more.
const QUICK_CUTS: u64 = 24;
const QUICK_CUTS_NOSYNC: u64 = 96;

const WORKLOAD_CHILD: &str = "powercut::powercut_workload_child";
const CHECK_CHILD: &str = "powercut::powercut_check_child";

// ---------------------------------------------------------------------------
// The read models, and the same folds computed from the log.

/// One document: how many events were folded in, the sum and an
/// order-sensitive hash of their positions, and the last one. A skipped,
/// repeated or reordered event changes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Fold {
    n: u64,
    sum: u64,
    hash: u64,
    last: u64,
}

impl Fold {
    fn add(&mut self, position: u64) {
        self.n += 1;
        self.sum += position;
        self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01B3).wrapping_add(position);
        self.last = position;
    }
}

/// Every event: per stream and in total.
struct PcAll;
/// `acct` events only, so its checkpoint passes positions it does not keep.
struct PcAcct;

fn all_keys(stream: &str) -> [String; 2] {
    ["all".to_string(), format!("s/{stream}")]
}

fn acct_keys(stream: &str) -> [String; 2] {
    ["acct".to_string(), format!("a/{stream}")]
}

fn is_acct(stream: &str) -> bool {
    stream.starts_with("acct-")
}

impl Projection for PcAll {
    const NAME: &'static str = "pc_all";
    const VERSION: u32 = 1;

    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> eventfold::Result<()> {
        for key in all_keys(&event.stream_id) {
            ctx.update(&key, |d: &mut Fold| d.add(event.position))?;
        }
        Ok(())
    }
}

impl Projection for PcAcct {
    const NAME: &'static str = "pc_acct";
    const VERSION: u32 = 1;

    fn filter(&self) -> Filter {
        Filter::new().category("acct")
    }

    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> eventfold::Result<()> {
        for key in acct_keys(&event.stream_id) {
            ctx.update(&key, |d: &mut Fold| d.add(event.position))?;
        }
        Ok(())
    }
}

fn runner(store: &Store) -> eventfold::Result<ProjectionRunner> {
    Ok(ProjectionRunner::new(store)?.register(PcAll)?.register(PcAcct)?.with_batch_size(PROJECTION_BATCH))
}

// ---------------------------------------------------------------------------
// What the children print, one line each.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Ack {
    stream: String,
    first: u64,
    last: u64,
    version: u64,
    ids: Vec<Uuid>,
}

fn ack_line(r: &AppendResult) -> String {
    let ids: Vec<String> = r.event_ids.iter().map(Uuid::to_string).collect();
    format!(
        "ACK {} {} {} {} {}",
        r.stream_id,
        r.first_position,
        r.last_position,
        r.stream_version,
        ids.join(",")
    )
}

enum Line {
    /// An acknowledged append.
    Ack(Ack),
    /// A commit of the writer, with the head after it (`on_commit`).
    Commit(u64),
    /// An acknowledged consumer checkpoint.
    Checkpoint(u64),
    /// The workload child settled, at this head.
    Settled(u64),
    /// The workload child closed the store after settling.
    Closed,
    /// A check failed (kind, message).
    Fail(String, String),
    /// Something seen that the durability does not rule out (kind, message).
    Note(String, String),
    /// The checker's head after reopening.
    Head(u64),
    /// The checker finished: head and consumer checkpoint at the end.
    Done(u64, u64),
}

fn parse_line(line: &str) -> Option<Line> {
    if line == "CLOSED" {
        return Some(Line::Closed);
    }
    let (tag, rest) = line.split_once(' ')?;
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let kind_msg = |s: &str| {
        let (k, m) = s.split_once(": ").unwrap_or((s, ""));
        (k.to_string(), m.to_string())
    };
    Some(match tag {
        "ACK" => {
            let mut p = rest.split(' ');
            Line::Ack(Ack {
                stream: p.next()?.to_string(),
                first: p.next()?.parse().ok()?,
                last: p.next()?.parse().ok()?,
                version: p.next()?.parse().ok()?,
                ids: p.next()?.split(',').map(|s| s.parse().ok()).collect::<Option<_>>()?,
            })
        }
        "COMMIT" => Line::Commit(num(rest)?),
        "CKPT" => Line::Checkpoint(num(rest)?),
        "SETTLED" => Line::Settled(num(rest)?),
        "HEAD" => Line::Head(num(rest)?),
        "DONE" => {
            let (h, c) = rest.split_once(' ')?;
            Line::Done(num(h)?, num(c)?)
        }
        "FAIL" => {
            let (k, m) = kind_msg(rest);
            Line::Fail(k, m)
        }
        "NOTE" => {
            let (k, m) = kind_msg(rest);
            Line::Note(k, m)
        }
        _ => return None,
    })
}

fn durability_of(name: &str) -> Durability {
    match name {
        "sync" => Durability::Sync,
        "relaxed" => Durability::Relaxed,
        "nosync" => Durability::NoSync,
        other => panic!("unknown durability {other:?}"),
    }
}

/// A child's setting; a child run without it is a mistake, not a pass.
fn child_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this is a child process of the power-cut tests (powercut::power_cuts_*), \
             which start it; it does not run alone"
        )
    })
}

fn die(what: &str, err: impl std::fmt::Display) -> ! {
    eprintln!("workload child: {what}: {err}");
    std::process::exit(3)
}

// ---------------------------------------------------------------------------
// The consumer: an audit event per third `acct` position, written with its
// checkpoint in one commit; other events are only acknowledged.

fn consume(consumer: &mut Consumer, event: &RecordedEvent) -> eventfold::Result<()> {
    if event.position.is_multiple_of(3) {
        let audit = NewEvent::json("Audited", &json!({ "src": event.position, "src_id": event.event_id }));
        let results =
            consumer.append_and_ack(event.position, [("audit-1", ExpectedVersion::Any, vec![audit])])?;
        for r in &results {
            println!("{}", ack_line(r));
        }
        println!("CKPT {}", consumer.checkpoint());
    } else {
        let before = consumer.checkpoint();
        consumer.ack(event.position)?;
        if consumer.checkpoint() != before {
            println!("CKPT {}", consumer.checkpoint());
        }
    }
    Ok(())
}

fn commit_consumer(consumer: &mut Consumer) -> eventfold::Result<()> {
    let before = consumer.checkpoint();
    consumer.commit()?;
    if consumer.checkpoint() != before {
        println!("CKPT {}", consumer.checkpoint());
    }
    Ok(())
}

/// The workload's consumer thread: follows the log; each time it has
/// nothing left, commits and reports the head it had seen before looking.
fn follow_consumer(store: Store, idle: mpsc::Sender<u64>) {
    let mut consumer =
        store.consumer(CONSUMER).unwrap_or_else(|e| die("consumer", e)).commit_every(CONSUMER_COMMIT_EVERY);
    let mut sub = consumer.subscribe(Filter::new().category("acct")).unwrap_or_else(|e| die("subscribe", e));
    // The consumer reads only durable events: "caught up" is with the
    // durable head. A clean close of the store ends the thread.
    let closed = |r: eventfold::Result<()>, what: &str| match r {
        Ok(()) => false,
        Err(eventfold::Error::Closed) => true,
        Err(e) => die(what, e),
    };
    loop {
        let seen = store.durable_head().unwrap_or_else(|e| die("durable head", e));
        let event = match sub.try_next().unwrap_or_else(|e| die("consumer read", e)) {
            Some(e) => e,
            None => {
                if closed(commit_consumer(&mut consumer), "consumer commit") {
                    return;
                }
                let _ = idle.send(seen);
                match sub.next_blocking() {
                    Ok(Some(e)) => e,
                    Ok(None) | Err(_) => return,
                }
            }
        };
        if closed(consume(&mut consumer, &event), "consume") {
            return;
        }
    }
}

fn tick_request(rng: &mut Rng) -> (String, Vec<NewEvent>) {
    let s = rng.below(ACCT_STREAMS + MISC_STREAMS);
    let stream = if s < ACCT_STREAMS { format!("acct-{s}") } else { format!("misc-{}", s - ACCT_STREAMS) };
    let n = 1 + rng.below(3);
    let req = Uuid::now_v7();
    let pad = rng.below(300) as usize;
    let events = (0..n)
        .map(|k| NewEvent::json("Tick", &json!({ "req": req, "k": k, "of": n, "pad": "x".repeat(pad) })))
        .collect();
    (stream, events)
}

/// The workload: appenders, the two projections live, the consumer. Runs
/// until killed. With `EVENTFOLD_POWERCUT_SETTLE_AFTER=n` the appenders stop
/// after `n` acknowledgements; once the consumer has caught up (past one
/// more `acct` event) and committed, one last append goes in, and when both
/// projections have applied it the child prints `SETTLED` and waits to be
/// killed. Nothing commits to the log after that last append.
#[test]
#[ignore = "a child process of the power-cut tests, which run it"]
fn powercut_workload_child() {
    let dir = child_var("EVENTFOLD_POWERCUT_DIR");
    let durability = durability_of(&child_var("EVENTFOLD_POWERCUT_DURABILITY"));
    let seed: u64 = child_var("EVENTFOLD_POWERCUT_CHILD_SEED").parse().expect("seed");
    let settle_after: Option<u64> =
        std::env::var("EVENTFOLD_POWERCUT_SETTLE_AFTER").ok().map(|s| s.parse().unwrap());
    // End the test harness's "test … " line so every line we print starts clean.
    println!();
    let store = Store::builder(&dir)
        .durability(durability)
        .on_commit(|head| println!("COMMIT {head}"))
        .open()
        .unwrap_or_else(|e| die("open", e));
    let projections =
        runner(&store).and_then(ProjectionRunner::start).unwrap_or_else(|e| die("projections", e));
    let (idle_tx, idle_rx) = mpsc::channel();
    {
        let store = store.clone();
        std::thread::spawn(move || follow_consumer(store, idle_tx));
    }
    let acked = Arc::new(AtomicU64::new(0));
    let appenders: Vec<_> = (0..APPENDERS)
        .map(|t| {
            let store = store.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(t + 1));
                while settle_after.is_none_or(|n| acked.load(Ordering::Relaxed) < n) {
                    let (stream, events) = tick_request(&mut rng);
                    let r = store
                        .append(&stream, ExpectedVersion::Any, events)
                        .unwrap_or_else(|e| die("append", e));
                    println!("{}", ack_line(&r));
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for a in appenders {
        a.join().unwrap_or_else(|_| die("appender", "panicked"));
    }
    // Settle: one `acct` event the consumer must see (so it wakes even if
    // the last appends were all `misc`), then wait until it has caught up
    // past it and committed, then one last commit.
    let drain = store
        .append("acct-0", ExpectedVersion::Any, [NewEvent::json("Drain", &json!({}))])
        .unwrap_or_else(|e| die("drain append", e));
    println!("{}", ack_line(&drain));
    while idle_rx.recv().unwrap_or_else(|e| die("consumer thread", e)) < drain.last_position {}
    let last = store
        .append(
            "settle-1",
            ExpectedVersion::Any,
            [NewEvent::json("Settle", &json!({ "after": drain.last_position }))],
        )
        .unwrap_or_else(|e| die("settle append", e));
    println!("{}", ack_line(&last));
    // Wait for both read models to have committed it. The runner has no
    // notification, so this polls the committed checkpoints.
    loop {
        let status = projections.status().unwrap_or_else(|e| die("status", e));
        if let Some(failed) = status.iter().find(|s| matches!(s.state, ProjectionState::Failed { .. })) {
            die("projection", format!("{failed:?}"));
        }
        if status.iter().all(|s| s.checkpoint >= last.last_position) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("SETTLED {}", last.last_position);
    if std::env::var_os("EVENTFOLD_POWERCUT_CLOSE").is_some() {
        // A clean stop: the runner first, then the store (the consumer's
        // subscription ends with it). `close` syncs, whatever the durability.
        projections.stop().unwrap_or_else(|e| die("stop projections", e));
        store.close().unwrap_or_else(|e| die("close", e));
        println!("CLOSED");
    }
    loop {
        std::thread::park();
    }
}

// ---------------------------------------------------------------------------
// The checker: reopens the cut store and checks it.

/// What the checker is told: every acknowledged append so far, how far the
/// log must have survived, and the lowest checkpoint the consumer may have.
#[derive(Debug, Serialize, Deserialize)]
struct Expect {
    acks: Vec<Ack>,
    /// Acknowledged appends whose last position is at most this must be
    /// there (`u64::MAX`: all; 0: none).
    keep_up_to: u64,
    min_consumer_checkpoint: u64,
    /// Every check must hold. Otherwise (`NoSync` cut while writing, which
    /// promises nothing) findings are notes, and only a hang or a crash
    /// without the damaged-file report fails.
    strict: bool,
}

/// Prints the checker's findings. Under `NoSync` damage that open or
/// verify reports, and read models out of step with the log (the two files
/// lose their recent commits independently; nothing is promised across
/// them), are allowed: they become notes. What no sequence of whole commits
/// of one file can produce, served without a report (a wrong event, a
/// consumer checkpoint out of step with its own effects), and any crash,
/// stay failures.
struct Findings {
    nosync: bool,
    /// When not strict, every finding is a note (see `Expect::strict`).
    strict: bool,
}

impl Findings {
    fn fail(&mut self, kind: &str, msg: impl std::fmt::Display) {
        if self.strict { println!("FAIL {kind}: {msg}") } else { self.note(kind, msg) }
    }

    fn note(&mut self, kind: &str, msg: impl std::fmt::Display) {
        println!("NOTE {kind}: {msg}");
    }

    /// A fault `Sync` and `Relaxed` must not have, and `NoSync` may.
    fn fault(&mut self, kind: &str, msg: impl std::fmt::Display) {
        if self.nosync { self.note(kind, msg) } else { self.fail(kind, msg) }
    }
}

/// Checks the log against the acknowledgements; returns the number of
/// acknowledged appends found.
fn check_log(store: &Store, expect: &Expect, head: u64, f: &mut Findings) -> eventfold::Result<usize> {
    let r = store.read()?;
    let mut found = 0;
    let mut lost: Vec<&Ack> = Vec::new();
    for a in &expect.acks {
        if a.first > head {
            if a.last <= expect.keep_up_to {
                f.fail(
                    "ack-lost",
                    format!(
                        "the acknowledged append at positions {}..={} ({}) is gone: the log ends at {head}, \
                         and everything up to {} had to survive",
                        a.first,
                        a.last,
                        a.stream,
                        if expect.keep_up_to == u64::MAX {
                            "the last acknowledgement".to_string()
                        } else {
                            expect.keep_up_to.to_string()
                        }
                    ),
                );
            } else {
                lost.push(a);
            }
            continue;
        }
        if a.last > head {
            f.fail("ack-torn", format!("append {}..={} is cut at head {head}", a.first, a.last));
            continue;
        }
        found += 1;
        for (k, id) in a.ids.iter().enumerate() {
            let p = a.first + k as u64;
            let version = a.version - (a.last - a.first) + k as u64;
            match r.event(p)? {
                Some(e) if e.event_id() == *id && e.stream_id() == a.stream && e.version() == version => {}
                Some(e) => f.fail(
                    "ack-mismatch",
                    format!(
                        "position {p} holds {} ({} v{}), but {id} ({} v{version}) was acknowledged there",
                        e.event_id(),
                        e.stream_id(),
                        e.version(),
                        a.stream
                    ),
                ),
                None => f.fail(
                    "ack-missing",
                    format!("position {p} (of an acknowledged append) is missing below head {head}"),
                ),
            }
        }
    }
    if !lost.is_empty() {
        let from = lost.iter().map(|a| a.first).min().unwrap_or(0);
        f.note(
            "lost-allowed",
            format!(
                "{} acknowledged appends from position {from} on are gone (allowed past {})",
                lost.len(),
                expect.keep_up_to
            ),
        );
    }
    // No request is half there.
    let mut requests: HashMap<String, (u64, u64)> = HashMap::new();
    for e in r.all(ReadAll::new())? {
        let e = e?;
        if e.event_type() != "Tick" {
            continue;
        }
        let v: serde_json::Value = e.payload_as()?;
        let (Some(req), Some(of)) = (v["req"].as_str(), v["of"].as_u64()) else {
            f.fail("payload", format!("position {} has a Tick without req/of: {v}", e.position()));
            continue;
        };
        requests.entry(req.to_string()).or_insert((0, of)).0 += 1;
    }
    for (req, (seen, of)) in requests {
        if seen != of {
            f.fail("half-request", format!("request {req} has {seen} of its {of} events"));
        }
    }
    Ok(found)
}

/// The consumer's checkpoint and its audit events agree with the log.
fn check_consumer(
    store: &Store,
    head: u64,
    min: u64,
    stage: &str,
    f: &mut Findings,
) -> eventfold::Result<u64> {
    let checkpoint = store.consumers()?.into_iter().find(|c| c.name == CONSUMER).map_or(0, |c| c.checkpoint);
    if checkpoint > head {
        f.fail(
            &format!("{stage}consumer-ahead"),
            format!("consumer checkpoint {checkpoint} is past the head {head}"),
        );
    }
    if checkpoint < min {
        f.fail(
            &format!("{stage}consumer-behind"),
            format!(
                "consumer checkpoint {checkpoint}, but checkpoint {min} was acknowledged and had to survive"
            ),
        );
    }
    let r = store.read()?;
    let mut qualifying: BTreeMap<u64, Uuid> = BTreeMap::new();
    let mut audits: BTreeMap<u64, Vec<(u64, Option<Uuid>)>> = BTreeMap::new();
    for e in r.all(ReadAll::new())? {
        let e = e?;
        if is_acct(e.stream_id()) && e.position().is_multiple_of(3) && e.position() <= checkpoint {
            qualifying.insert(e.position(), e.event_id());
        }
        if e.event_type() == "Audited" {
            let v: serde_json::Value = e.payload_as()?;
            let src = v["src"].as_u64().unwrap_or(0);
            let src_id = v["src_id"].as_str().and_then(|s| s.parse().ok());
            audits.entry(src).or_default().push((e.position(), src_id));
        }
    }
    for (src, at) in &audits {
        if at.len() > 1 {
            let positions: Vec<u64> = at.iter().map(|a| a.0).collect();
            f.fail(
                &format!("{stage}consumer-twice"),
                format!("event {src} was handled {} times (audits at {positions:?})", at.len()),
            );
        }
        match qualifying.get(src) {
            Some(id) if at.iter().all(|a| a.1 == Some(*id)) => {}
            Some(id) => f.fail(
                &format!("{stage}consumer-wrong"),
                format!("audit of {src} names another event than {id}"),
            ),
            None if *src > checkpoint => f.fail(
                &format!("{stage}consumer-audit-ahead"),
                format!(
                    "event {src} has an audit but the checkpoint is {checkpoint}: effect without checkpoint"
                ),
            ),
            None => f.fail(
                &format!("{stage}consumer-wrong"),
                format!("audit of {src}, which is no acct event at a third position"),
            ),
        }
    }
    let missing: Vec<u64> = qualifying.keys().filter(|p| !audits.contains_key(p)).copied().collect();
    if !missing.is_empty() {
        f.fail(
            &format!("{stage}consumer-skipped"),
            format!(
                "{} events up to checkpoint {checkpoint} were never handled: {:?}",
                missing.len(),
                &missing[..missing.len().min(8)]
            ),
        );
    }
    Ok(checkpoint)
}

fn recompute(store: &Store, up_to: u64, acct_only: bool) -> eventfold::Result<BTreeMap<String, Fold>> {
    let r = store.read()?;
    let mut model: BTreeMap<String, Fold> = BTreeMap::new();
    for e in r.all(ReadAll::new())? {
        let e = e?;
        if e.position() > up_to {
            break;
        }
        if acct_only && !is_acct(e.stream_id()) {
            continue;
        }
        let keys = if acct_only { acct_keys(e.stream_id()) } else { all_keys(e.stream_id()) };
        for key in keys {
            model.entry(key).or_default().add(e.position());
        }
    }
    Ok(model)
}

fn describe_diff(stored: &BTreeMap<String, Fold>, expected: &BTreeMap<String, Fold>) -> String {
    let mut out = String::new();
    let keys: std::collections::BTreeSet<&String> = stored.keys().chain(expected.keys()).collect();
    let mut shown = 0;
    for k in keys {
        let (s, e) = (stored.get(k), expected.get(k));
        if s != e {
            if shown == 3 {
                out.push_str(", …");
                break;
            }
            let _ = write!(out, "{}{k}: stored {s:?}, from the log {e:?}", if shown > 0 { "; " } else { "" });
            shown += 1;
        }
    }
    out
}

/// One projection's checkpoint and model against the log.
fn check_projection<P: Projection>(store: &Store, head: u64, acct_only: bool, stage: &str, f: &mut Findings) {
    let model = store.projection::<P>();
    let read = model
        .checkpoint()
        .and_then(|c| Ok((c, model.entries::<Fold>()?.into_iter().collect::<BTreeMap<_, _>>())));
    let (checkpoint, stored) = match read {
        Ok(x) => x,
        Err(e) => {
            return f.fault(&format!("{stage}projection-unreadable"), format!("read model {}: {e}", P::NAME));
        }
    };
    if checkpoint > head {
        return f.fault(
            &format!("{stage}projection-ahead"),
            format!(
                "read model {} has checkpoint {checkpoint}, but the log ends at {head}: it folded events the log lost",
                P::NAME
            ),
        );
    }
    match recompute(store, checkpoint, acct_only) {
        Ok(expected) if expected == stored => {}
        Ok(expected) => f.fault(
            &format!("{stage}projection-model"),
            format!(
                "read model {} at checkpoint {checkpoint} differs from the log's fold: {}",
                P::NAME,
                describe_diff(&stored, &expected)
            ),
        ),
        Err(e) => {
            f.fault(&format!("{stage}projection-recompute"), format!("reading the log for {}: {e}", P::NAME))
        }
    }
}

/// Reopens the store after a cut and checks it; then appends, lets the
/// projections and the consumer catch up, and checks again. Prints `FAIL`
/// and `NOTE` lines, `ACK`s of its own appends, and `DONE head checkpoint`.
#[test]
#[ignore = "a child process of the power-cut tests, which run it"]
fn powercut_check_child() {
    let dir = child_var("EVENTFOLD_POWERCUT_DIR");
    let durability = durability_of(&child_var("EVENTFOLD_POWERCUT_DURABILITY"));
    let expect_path = child_var("EVENTFOLD_POWERCUT_EXPECT");
    let expect: Expect =
        serde_json::from_slice(&std::fs::read(&expect_path).expect("expectations")).expect("expectations");
    println!();
    // A map fault from damage ends the process with one line and exit 3.
    eventfold::install_damaged_file_handler().expect("install the damaged-file handler");
    let mut f = Findings { nosync: durability == Durability::NoSync, strict: expect.strict };
    if let Err(e) = check_store(&dir, durability, &expect, &mut f) {
        f.fault("error", format!("an operation failed: {e}"));
    }
}

fn check_store(
    dir: &str,
    durability: Durability,
    expect: &Expect,
    f: &mut Findings,
) -> eventfold::Result<()> {
    let store = match Store::builder(dir).durability(durability).open() {
        Ok(s) => s,
        Err(e) => {
            f.fault("open", format!("the store does not open: {e}"));
            return Ok(());
        }
    };
    let report = store.verify()?;
    if !report.is_ok() {
        let first: Vec<String> = report.faults.iter().take(3).map(ToString::to_string).collect();
        f.fault("verify", format!("{} faults, first: {}", report.fault_count, first.join("; ")));
        return Ok(());
    }
    let head = store.head()?;
    println!("HEAD {head}");
    check_log(&store, expect, head, f)?;
    let min = expect.min_consumer_checkpoint;
    check_consumer(&store, head, min, "", f)?;
    check_projection::<PcAll>(&store, head, false, "", f);
    check_projection::<PcAcct>(&store, head, true, "", f);

    // Appends continue where the log ends.
    let r = store.read()?;
    let mut expected_position = head + 1;
    for (i, stream) in ["acct-0", "misc-0", "acct-1"].into_iter().enumerate() {
        let version = r.stream_version(stream)?;
        let req = Uuid::now_v7();
        let res = store.append(
            stream,
            ExpectedVersion::Exact(version),
            [NewEvent::json("Tick", &json!({ "req": req, "k": 0, "of": 1, "after_cut": i }))],
        )?;
        println!("{}", ack_line(&res));
        if (res.first_position, res.stream_version) != (expected_position, version + 1) {
            f.fail(
                "continue",
                format!(
                    "append to {stream} went to position {} version {}, not {expected_position} version {}",
                    res.first_position,
                    res.stream_version,
                    version + 1
                ),
            );
        }
        expected_position = res.last_position + 1;
    }
    drop(r);
    // The read models and the consumer go on from their checkpoints.
    // A failed projection makes the run an error; its status says where and why.
    let projections = runner(&store)?;
    let caught_up = projections.run_until_caught_up();
    let mut failed = false;
    for s in projections.status()? {
        if let ProjectionState::Failed { position, error } = &s.state {
            failed = true;
            f.fault("after-projection-failed", format!("{} failed at {position}: {error}", s.name));
        }
    }
    if !failed {
        caught_up?;
    }
    let mut consumer = store.consumer(CONSUMER)?.commit_every(CONSUMER_COMMIT_EVERY);
    let mut sub = consumer.subscribe(Filter::new().category("acct"))?;
    while let Some(event) = sub.try_next()? {
        consume(&mut consumer, &event)?;
    }
    commit_consumer(&mut consumer)?;
    drop(sub);
    let head = store.head()?;
    let report = store.verify()?;
    if !report.is_ok() {
        f.fail("after-verify", format!("{} faults after appending on", report.fault_count));
    }
    let checkpoint = check_consumer(&store, head, consumer.checkpoint(), "after-", f)?;
    check_projection::<PcAll>(&store, head, false, "after-", f);
    check_projection::<PcAcct>(&store, head, true, "after-", f);
    store.close()?;
    println!("DONE {head} {checkpoint}");
    Ok(())
}

// ---------------------------------------------------------------------------
// The parent: runs the children, cuts, remounts, tallies.

fn spawn_child(test: &str, envs: &[(&str, String)], stderr: &Path) -> Child {
    let log = std::fs::File::create(stderr).expect("child's stderr file");
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", test, "--nocapture", "--test-threads=1"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn a child process")
}

/// The child's stdout, line by line, read on a thread so the parent can
/// notice a child that hangs.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(8)..].join(" | ")
}

/// The next line, `None` at the end; a child silent for `WATCHDOG` is
/// killed and the test fails.
fn next_line(rx: &mpsc::Receiver<String>, child: &mut Child, what: &str, stderr: &Path) -> Option<String> {
    match rx.recv_timeout(WATCHDOG) {
        Ok(line) => Some(line),
        Err(mpsc::RecvTimeoutError::Disconnected) => None,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: nothing printed for {WATCHDOG:?}, it hangs; killed. Its stderr: {}", tail(stderr))
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kill {
    /// SIGKILL after this many acknowledgements, under load.
    AfterAcks(usize),
    /// Appenders stop after this many acknowledgements; SIGKILL once settled
    /// (with `true`: once the store is closed, too).
    Settled(u64, bool),
}

impl Kill {
    fn kind(&self) -> &'static str {
        match self {
            Kill::AfterAcks(_) => "load",
            Kill::Settled(_, false) => "settled",
            Kill::Settled(_, true) => "closed",
        }
    }
}

fn cut_kind(mode: CutMode) -> &'static str {
    match mode {
        CutMode::DropAll => "drop-all",
        CutMode::KeepAll => "keep-all",
        CutMode::RandomSubset { .. } => "random-subset",
    }
}

impl std::fmt::Display for Kill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kill::AfterAcks(n) => write!(f, "kill under load after {n} acks"),
            Kill::Settled(n, false) => write!(f, "kill settled after {n} appends"),
            Kill::Settled(n, true) => write!(f, "kill settled and closed after {n} appends"),
        }
    }
}

struct Plan {
    seed: u64,
    kill: Kill,
    cut: CutMode,
}

impl Plan {
    /// Cut `i` of a run: kill kind and cut mode cycle through all four
    /// pairs; the counts and the random subset come from the seed.
    fn new(seed: u64, i: u64) -> Plan {
        let mut rng = Rng::new(seed);
        let settled = matches!(i % 4, 0 | 3);
        let kill = if settled {
            Kill::Settled(10 + rng.below(120), i.is_multiple_of(4))
        } else {
            Kill::AfterAcks(10 + rng.below(200) as usize)
        };
        // Each kind of kill meets both kinds of cut, in turn.
        let cut = if (i + i / 4).is_multiple_of(2) {
            CutMode::DropAll
        } else {
            CutMode::RandomSubset { seed: rng.next() }
        };
        Plan { seed, kill, cut }
    }
}

#[derive(Default)]
struct Workload {
    acks: Vec<Ack>,
    commits: Vec<u64>,
    checkpoints: Vec<u64>,
    settled: Option<u64>,
    closed: bool,
}

/// Runs the workload child on `fs` until the plan's kill point. Halfway
/// there (by acknowledgements) the kernel writes back everything it holds,
/// so the durable state a cut falls back to is not always the last sync.
/// A child that dies before the kill point is an error, with its exit status
/// and the end of its stderr.
fn run_workload(fs: &CutFs, durability: &str, plan: &Plan, stderr: &Path) -> Result<Workload, String> {
    let dir = fs.path().join("store");
    let mut envs = vec![
        ("EVENTFOLD_POWERCUT_DIR", dir.display().to_string()),
        ("EVENTFOLD_POWERCUT_DURABILITY", durability.to_string()),
        ("EVENTFOLD_POWERCUT_CHILD_SEED", plan.seed.to_string()),
    ];
    if let Kill::Settled(n, close) = plan.kill {
        envs.push(("EVENTFOLD_POWERCUT_SETTLE_AFTER", n.to_string()));
        if close {
            envs.push(("EVENTFOLD_POWERCUT_CLOSE", "1".to_string()));
        }
    }
    let mut child = spawn_child(WORKLOAD_CHILD, &envs, stderr);
    let rx = lines_of(&mut child);
    let mut w = Workload::default();
    let take = |w: &mut Workload, line: &str| match parse_line(line) {
        Some(Line::Ack(a)) => w.acks.push(a),
        Some(Line::Commit(h)) => w.commits.push(h),
        Some(Line::Checkpoint(c)) => w.checkpoints.push(c),
        Some(Line::Settled(h)) => w.settled = Some(h),
        Some(Line::Closed) => w.closed = true,
        _ => {}
    };
    let mut reached = false;
    let write_back_at = match plan.kill {
        Kill::AfterAcks(n) => n / 2,
        Kill::Settled(n, _) => n as usize / 2,
    };
    let mut written_back = false;
    while let Some(line) = next_line(&rx, &mut child, "the workload child", stderr) {
        take(&mut w, &line);
        if !written_back && w.acks.len() >= write_back_at {
            fs.write_back();
            written_back = true;
        }
        reached = match plan.kill {
            Kill::AfterAcks(n) => w.acks.len() >= n,
            Kill::Settled(_, close) => w.settled.is_some() && (w.closed || !close),
        };
        if reached {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    // What was already in the pipe was printed before the kill: it counts.
    while let Some(line) = next_line(&rx, &mut child, "the workload child", stderr) {
        take(&mut w, &line);
    }
    let status = child.wait().unwrap();
    if !reached {
        return Err(format!(
            "the workload child died before the kill point ({}, {} acks in): {status}; its stderr: {}",
            plan.kill,
            w.acks.len(),
            tail(stderr)
        ));
    }
    Ok(w)
}

#[derive(Default)]
struct Check {
    fails: Vec<(String, String)>,
    notes: Vec<(String, String)>,
    head: Option<u64>,
    done: Option<(u64, u64)>,
    acks: Vec<Ack>,
}

fn run_check(dir: &Path, durability: &str, expect: &Path, stderr: &Path, strict: bool) -> Check {
    let envs = [
        ("EVENTFOLD_POWERCUT_DIR", dir.display().to_string()),
        ("EVENTFOLD_POWERCUT_DURABILITY", durability.to_string()),
        ("EVENTFOLD_POWERCUT_EXPECT", expect.display().to_string()),
    ];
    let mut child = spawn_child(CHECK_CHILD, &envs, stderr);
    let rx = lines_of(&mut child);
    let mut c = Check::default();
    while let Some(line) = next_line(&rx, &mut child, "the checking child", stderr) {
        match parse_line(&line) {
            Some(Line::Fail(k, m)) => c.fails.push((k, m)),
            Some(Line::Note(k, m)) => c.notes.push((k, m)),
            Some(Line::Head(h)) => c.head = Some(h),
            Some(Line::Done(h, ck)) => c.done = Some((h, ck)),
            Some(Line::Ack(a)) => c.acks.push(a),
            _ => {}
        }
    }
    let status: ExitStatus = child.wait().unwrap();
    let reported = status.code() == Some(eventfold::DAMAGED_FILE_EXIT_CODE)
        && std::fs::read_to_string(stderr).is_ok_and(|e| e.contains("damaged"));
    if reported {
        // The map-fault handler reported damage and ended the process:
        // allowed where damage is (a `NoSync` cut while writing).
        let what = ("fault-handler".to_string(), format!("the damaged-file report: {}", tail(stderr)));
        if strict { c.fails.push(what) } else { c.notes.push(what) }
    } else if !status.success() {
        // A panic, a bare signal (SIGBUS, SIGSEGV) or an abort: never
        // allowed, whatever the durability.
        c.fails.push((
            "crash".into(),
            format!("the reopened store crashed the checking process ({status}): {}", tail(stderr)),
        ));
    }
    c
}

/// One chain of rounds on the same store.
struct Chain {
    fs: CutFs,
    acks: Vec<Ack>,
    head: u64,
    checkpoint: u64,
    rounds: u32,
}

#[derive(Default)]
struct Tally {
    cuts: u64,
    acked: u64,
    lost_allowed: u64,
    /// Cuts per kind of failure, and per kind of note.
    fails: BTreeMap<String, u64>,
    notes: BTreeMap<String, u64>,
    /// Per kind of kill and cut: cuts, and cuts that failed.
    patterns: BTreeMap<String, (u64, u64)>,
    /// The first message of each kind of note.
    note_samples: BTreeMap<String, String>,
    first_fails: Vec<String>,
    log: Vec<String>,
    kept_image: Option<PathBuf>,
}

/// Keeps the first failing image of a run in the target directory, as
/// plain files, to look at with `eventfold verify` or `mdb_stat`.
fn keep_image(tally: &mut Tally, image: &Image, durability: &str, cut: u64) {
    if tally.kept_image.is_some() {
        return;
    }
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("powercut-{durability}-cut{cut}"));
    let _ = std::fs::remove_dir_all(&keep);
    if std::fs::create_dir_all(&keep).is_ok() && image.materialize(&keep).is_ok() {
        tally.kept_image = Some(keep);
    }
}

/// Cuts per durability: `EVENTFOLD_POWERCUT_CUTS`, or the quick pass's.
fn cuts_per_run(quick: u64) -> u64 {
    std::env::var("EVENTFOLD_POWERCUT_CUTS").ok().and_then(|s| s.parse().ok()).unwrap_or(quick)
}

fn base_seed() -> u64 {
    std::env::var("EVENTFOLD_POWERCUT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

/// The directory a mount of the run uses; mountpoints are never reused, so
/// an unmount can never hit a newer mount.
fn mountpoint(base: &Path, n: &mut u32) -> PathBuf {
    *n += 1;
    let p = base.join(format!("m{n}"));
    std::fs::create_dir(&p).unwrap();
    p
}

fn power_cuts(durability: &str, salt: u64, quick_cuts: u64) {
    if let Err(why) = cutfs::check_support() {
        eprintln!("skipped: power-cut tests need FUSE: {why}");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let mut mounts = 0;
    // Probe: a machine where mounting fails skips, with the reason.
    match CutFs::mount(mountpoint(base.path(), &mut mounts), &Image::empty()) {
        Ok(fs) => drop(fs),
        Err(e) => {
            eprintln!("skipped: power-cut tests cannot mount their FUSE file system: {e}");
            return;
        }
    }
    let cuts = cuts_per_run(quick_cuts);
    let mut tally = Tally::default();
    let mut chain: Option<Chain> = None;
    for i in 0..cuts {
        let plan = Plan::new(base_seed().wrapping_mul(1_000_003).wrapping_add(salt * 100_000 + i), i);
        let c = match chain.take() {
            Some(c) => c,
            None => {
                let fs = CutFs::mount(mountpoint(base.path(), &mut mounts), &Image::empty()).expect("mount");
                Chain { fs, acks: Vec::new(), head: 0, checkpoint: 0, rounds: 0 }
            }
        };
        let stderr = base.path().join(format!("workload-{i}.stderr"));
        let w = match run_workload(&c.fs, durability, &plan, &stderr) {
            Ok(w) => w,
            Err(why) => {
                // On a fresh store this is a plain bug; after a cut, the
                // recovered store passed every check and then broke: damage
                // that open and verify did not report.
                let kind = if c.rounds == 0 { "workload-crash" } else { "broke-after-recovery" };
                tally.cuts += 1;
                *tally.fails.entry(kind.to_string()).or_default() += 1;
                let pattern =
                    tally.patterns.entry(format!("{}/{}", plan.kill.kind(), cut_kind(plan.cut))).or_default();
                pattern.0 += 1;
                pattern.1 += 1;
                let line = format!("cut {i} (seed {}): {}, not cut: {kind}: {why}", plan.seed, plan.kill);
                if tally.first_fails.len() < 12 {
                    tally.first_fails.push(line.clone());
                }
                tally.log.push(line);
                let image = c.fs.unmount().expect("unmount");
                keep_image(&mut tally, &image, durability, i);
                continue;
            }
        };

        // What must survive: after a clean close, everything, whatever the
        // durability.
        let last_checkpoint = w.checkpoints.last().copied().unwrap_or(c.checkpoint);
        let (keep_up_to, min_checkpoint) = match durability {
            _ if w.closed => (u64::MAX, last_checkpoint),
            "sync" => (u64::MAX, last_checkpoint),
            "relaxed" => {
                let before_last = |v: &[u64]| if v.len() >= 2 { Some(v[v.len() - 2]) } else { None };
                (
                    before_last(&w.commits).unwrap_or(0).max(c.head),
                    before_last(&w.checkpoints).unwrap_or(0).max(c.checkpoint),
                )
            }
            _ => (0, 0),
        };
        let mut acks = c.acks;
        let round_acks = w.acks.len() as u64;
        acks.extend(w.acks);
        let (image, cut): (Image, CutReport) = c.fs.cut(plan.cut).expect("cut");
        let fs = CutFs::mount(mountpoint(base.path(), &mut mounts), &image).expect("mount after the cut");
        let strict = durability != "nosync" || w.closed;
        let expect = Expect { acks, keep_up_to, min_consumer_checkpoint: min_checkpoint, strict };
        let expect_path = base.path().join(format!("expect-{i}.json"));
        std::fs::write(&expect_path, serde_json::to_vec(&expect).unwrap()).unwrap();
        let stderr = base.path().join(format!("check-{i}.stderr"));
        let check = run_check(&fs.path().join("store"), durability, &expect_path, &stderr, strict);

        // Tally.
        tally.cuts += 1;
        tally.acked += round_acks + check.acks.len() as u64;
        if let Some(h) = check.head {
            tally.lost_allowed +=
                expect.acks.iter().filter(|a| a.first > h && a.last > expect.keep_up_to).count() as u64;
        }
        let kinds: std::collections::BTreeSet<&String> = check.fails.iter().map(|(k, _)| k).collect();
        for k in kinds {
            *tally.fails.entry(k.clone()).or_default() += 1;
        }
        let kinds: std::collections::BTreeSet<&String> = check.notes.iter().map(|(k, _)| k).collect();
        for k in kinds {
            *tally.notes.entry(k.clone()).or_default() += 1;
        }
        let pattern =
            tally.patterns.entry(format!("{}/{}", plan.kill.kind(), cut_kind(plan.cut))).or_default();
        pattern.0 += 1;
        pattern.1 += u64::from(!check.fails.is_empty());
        for (k, m) in &check.notes {
            tally
                .note_samples
                .entry(k.clone())
                .or_insert_with(|| format!("cut {i} ({}, {}): {m}", plan.kill, plan.cut));
        }
        let verdict = if check.fails.is_empty() {
            "ok".to_string()
        } else {
            check.fails.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
        };
        let notes: Vec<&str> = check.notes.iter().map(|(k, _)| k.as_str()).collect();
        tally.log.push(format!(
            "cut {i} (seed {}): {}, {}; {round_acks} acks, {} commits; {}; head after {:?}{}: {verdict}",
            plan.seed,
            plan.kill,
            plan.cut,
            w.commits.len(),
            cut,
            check.head,
            if notes.is_empty() { String::new() } else { format!(", notes {notes:?}") },
        ));
        for (k, m) in check.fails.iter().take(3) {
            if tally.first_fails.len() < 12 {
                tally.first_fails.push(format!("cut {i} ({}, {}): {k}: {m}", plan.kill, plan.cut));
            }
        }
        if !check.fails.is_empty() {
            keep_image(&mut tally, &image, durability, i);
        }
        // Go on with this store, or start a fresh one.
        match check.done {
            // A store that may hold damage no check saw starts no new round.
            Some((head, checkpoint)) if check.fails.is_empty() && strict && c.rounds + 1 < CHAIN_ROUNDS => {
                let mut acks: Vec<Ack> =
                    expect.acks.into_iter().filter(|a| a.last <= check.head.unwrap_or(0)).collect();
                acks.extend(check.acks);
                chain = Some(Chain { fs, acks, head, checkpoint, rounds: c.rounds + 1 });
            }
            _ => fs.unmount().map(drop).expect("unmount"),
        }
    }
    let mut summary = format!(
        "power cuts, {durability}: {} cuts, {} acknowledged appends, {} of them lost where allowed; \
         cuts failing per check {:?}; cuts with notes {:?}; (cuts, failed) per kill/cut {:?}",
        tally.cuts, tally.acked, tally.lost_allowed, tally.fails, tally.notes, tally.patterns
    );
    for line in &tally.log {
        let _ = write!(summary, "\n  {line}");
    }
    for (kind, sample) in &tally.note_samples {
        let _ = write!(summary, "\n  first note {kind}: {sample}");
    }
    eprintln!("{summary}");
    if !tally.fails.is_empty() {
        let kept = tally
            .kept_image
            .as_ref()
            .map_or(String::new(), |p| format!("\nthe first failing cut's image is kept in {}", p.display()));
        let headline = summary.lines().next().unwrap_or_default();
        panic!("{headline}\nfirst failures:\n  {}{kept}", tally.first_fails.join("\n  "));
    }
}

#[test]
fn power_cuts_sync() {
    power_cuts("sync", 1, QUICK_CUTS);
}

#[test]
fn power_cuts_relaxed() {
    power_cuts("relaxed", 2, QUICK_CUTS);
}

#[test]
fn power_cuts_nosync() {
    power_cuts("nosync", 3, QUICK_CUTS_NOSYNC);
}
