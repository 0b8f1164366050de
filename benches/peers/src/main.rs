//! `eventfold-bench`: eventfold against other event stores, side by side, on
//! the workloads W1–W10, W1t and W2a (see `docs/benchmarks.md`, "Comparison with peers").
//!
//! ```sh
//! cargo run --release -p eventfold-bench -- [--quick] [--json] [--only W1,W9,W10] [--runs N] [--scale F]
//!     [--set w2_events=6400] [--peers eventfold,sqlite]
//! ```

mod dcb;
mod ef;
mod naive;
mod pg;
mod scavenge;
mod sqlite;
mod util;
mod varve;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Value, json};

use crate::util::{Lat, R, Sizes};

/// The peers, in table order, with their JSON names.
const PEERS: [&str; 5] = ["eventfold", "lmdb_naive", "sqlite", "varvedb", "postgres"];

/// The peers chosen with `--peers` (all when unset).
static SELECTED: std::sync::OnceLock<Option<Vec<String>>> = std::sync::OnceLock::new();

/// The error of a peer left out with `--peers` (not reported).
const NOT_SELECTED: &str = "not selected";

/// Runs `f` if `peer` is selected.
fn run<T>(peer: &str, f: impl FnOnce() -> R<T>) -> R<T> {
    match SELECTED.get().and_then(|s| s.as_ref()) {
        Some(list) if !list.iter().any(|p| p == peer) => Err(NOT_SELECTED.into()),
        _ => f(),
    }
}

/// One line of the report: a figure per peer (every run's value).
struct Workload {
    name: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    runs: BTreeMap<&'static str, Vec<f64>>,
}

#[derive(Default)]
struct Report {
    workloads: Vec<Workload>,
    notes: Vec<String>,
    /// Invariants a run broke (W10): the harness fails when there are any.
    broken: Vec<String>,
}

impl Report {
    fn record(
        &mut self,
        name: &'static str,
        unit: &'static str,
        higher_is_better: bool,
        peer: &'static str,
        v: f64,
    ) {
        let i = match self.workloads.iter().position(|w| w.name == name) {
            Some(i) => i,
            None => {
                self.workloads.push(Workload { name, unit, higher_is_better, runs: BTreeMap::new() });
                self.workloads.len() - 1
            }
        };
        self.workloads[i].runs.entry(peer).or_default().push(v);
    }

    /// Declares a workload so that it is listed even if no peer ran it.
    fn declare(&mut self, name: &'static str, unit: &'static str, higher_is_better: bool) {
        if !self.workloads.iter().any(|w| w.name == name) {
            self.workloads.push(Workload { name, unit, higher_is_better, runs: BTreeMap::new() });
        }
    }

    fn note(&mut self, s: String) {
        eprintln!("  note: {s}");
        self.notes.push(s);
    }

    fn skip(&mut self, peer: &str, what: &str, why: &str) {
        if why == NOT_SELECTED {
            return;
        }
        self.note(format!("{peer} skipped on {what}: {why}"));
    }

    fn lat(&mut self, prefix: &'static [&'static str; 3], peer: &'static str, l: Lat) {
        self.record(prefix[0], "events/s", true, peer, l.rate);
        self.record(prefix[1], "µs", false, peer, l.p50);
        self.record(prefix[2], "µs", false, peer, l.p99);
    }
}

struct Options {
    quick: bool,
    json: bool,
    only: Option<Vec<String>>,
    runs: usize,
    scale: f64,
    set: Vec<String>,
    peers: Option<Vec<String>>,
}

fn parse() -> R<Options> {
    let mut o =
        Options { quick: false, json: false, only: None, runs: 3, scale: 1.0, set: Vec::new(), peers: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = true,
            "--only" => {
                let v = args.next().ok_or("--only needs a list, e.g. W1,W5")?;
                o.only = Some(v.split(',').map(|s| s.trim().to_uppercase()).collect());
            }
            "--runs" => {
                o.runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs needs a count")?;
            }
            "--scale" => {
                o.scale = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&f: &f64| f > 0.0)
                    .ok_or("--scale needs a factor")?;
            }
            "--peers" => {
                let v = args.next().ok_or("--peers needs a list, e.g. eventfold,sqlite")?;
                let list: Vec<String> = v.split(',').map(|s| s.trim().replace('-', "_")).collect();
                if let Some(bad) = list.iter().find(|p| !PEERS.contains(&p.as_str())) {
                    return Err(format!("unknown peer {bad:?}; the peers are {}", PEERS.join(", ")));
                }
                o.peers = Some(list);
            }
            "--set" => o.set.push(args.next().ok_or("--set needs NAME=COUNT")?),
            "-h" | "--help" => {
                println!(
                    "eventfold-bench [--quick] [--json] [--only W1,W1t,W2,W2a,W3,...,W11] [--runs N (default 3)] [--scale F (default 1)] [--set NAME=COUNT]... [--peers eventfold,sqlite]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if o.quick && o.runs == 3 {
        o.runs = 1;
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(W8_CHILD) {
        return match w8_child(args.get(2).map(String::as_str)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut sizes = if o.quick { Sizes::quick() } else { Sizes::full(o.scale) };
    for a in &o.set {
        if let Err(e) = sizes.set(a) {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }
    let want = |w: &str| o.only.as_ref().is_none_or(|l| l.iter().any(|x| x == w));
    let mut rep = Report::default();
    let started = Instant::now();
    let _ = SELECTED.set(o.peers.clone());
    let postgres = run("postgres", pg::Server::start);
    if let Err(why) = &postgres
        && why != NOT_SELECTED
    {
        rep.note(format!("postgres skipped: {why}"));
    }
    let postgres = postgres.ok();

    for round in 0..o.runs {
        eprintln!("run {} of {}", round + 1, o.runs);
        if want("W1") {
            w1(&mut rep, &sizes, postgres.as_ref(), round == 0);
        }
        if want("W2") {
            w2(&mut rep, &sizes, postgres.as_ref(), round == 0);
        }
        if want("W2A") && run("eventfold", || Ok(())).is_ok() {
            w2a(&mut rep, &sizes, round == 0);
        }
        if want("W3") {
            w3(&mut rep, &sizes, postgres.as_ref());
        }
        if want("W1T") && run("eventfold", || Ok(())).is_ok() {
            w1t(&mut rep, &sizes, round);
        }
        if want("W10") {
            w10(&mut rep, &sizes, postgres.as_ref(), round == 0);
        }
        if want("W7") && run("eventfold", || Ok(())).is_ok() {
            eprintln!("W7 subscription wake latency during W2");
            rep.declare("W7_wake_p50", "µs", false);
            rep.declare("W7_wake_p99", "µs", false);
            match run("eventfold", || ef::w2(&sizes, true)) {
                Ok((_, Some((p50, p99)), _)) => {
                    rep.record("W7_wake_p50", "µs", false, "eventfold", p50);
                    rep.record("W7_wake_p99", "µs", false, "eventfold", p99);
                }
                Ok(_) => rep.skip("eventfold", "W7", "no subscriber figures"),
                Err(e) => rep.skip("eventfold", "W7", &e),
            }
        }
    }
    if want("W4") {
        w4(&mut rep, &sizes, o.runs);
    }
    if want("W5") || want("W6") {
        w5_w6(&mut rep, &sizes, o.runs, postgres.as_ref());
    }
    if want("W8") && run("eventfold", || Ok(())).is_ok() {
        w8(&mut rep, &sizes, o.runs);
    }
    if want("W9") {
        w9(&mut rep, &sizes, o.runs);
    }
    if want("W11") && run("eventfold", || Ok(())).is_ok() {
        for _ in 0..o.runs {
            w11(&mut rep, &sizes);
        }
    }
    drop(postgres);
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());

    if o.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&rep, &o, &sizes)).unwrap_or_default());
    } else {
        print_tables(&rep, &o, &sizes);
    }
    if !rep.broken.is_empty() {
        eprintln!("\nFAILED: a run broke an invariant:");
        for b in &rep.broken {
            eprintln!("  {b}");
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn w1(rep: &mut Report, s: &Sizes, postgres: Option<&pg::Server>, first: bool) {
    const N: &str = "W1_bulk_append";
    eprintln!(
        "W1 bulk append: {} events, {} streams, {} per request, {} producers",
        s.w1_events, s.w1_streams, s.w1_batch, s.w1_threads
    );
    rep.declare(N, "events/s", true);
    match run("eventfold", || ef::w1(s, 0)) {
        Ok(w) => {
            rep.record(N, "events/s", true, "eventfold", w.rate);
            if first {
                rep.note(format!("eventfold W1 writer: {}", w.stats));
            }
        }
        Err(e) => rep.skip("eventfold", "W1", &e),
    }
    let peers: [(&'static str, R<f64>); 3] = [
        ("lmdb_naive", run("lmdb_naive", || naive::w1(s))),
        ("sqlite", run("sqlite", || sqlite::w1(s))),
        ("varvedb", run("varvedb", || varve::w1(s))),
    ];
    for (peer, r) in peers {
        match r {
            Ok(v) => rep.record(N, "events/s", true, peer, v),
            Err(e) => rep.skip(peer, "W1", &e),
        }
    }
    if let Some(pg) = postgres {
        match run("postgres", || pg.w1(s)) {
            Ok(v) => rep.record(N, "events/s", true, "postgres", v),
            Err(e) => rep.skip("postgres", "W1", &e),
        }
    }
}

/// W1t: W1 on eventfold with events that carry no tag and two tags, run
/// one after the other (which goes first alternates between rounds, so
/// that neither always follows the other's write-back), with the bytes
/// written per event.
fn w1t(rep: &mut Report, s: &Sizes, round: usize) {
    const ROWS: [[&str; 3]; 2] = [
        ["W1t_bulk_append_0_tags", "W1t_record_bytes_0_tags", "W1t_file_bytes_0_tags"],
        ["W1t_bulk_append_2_tags", "W1t_record_bytes_2_tags", "W1t_file_bytes_2_tags"],
    ];
    eprintln!("W1t bulk append with 0 and 2 tags per event: {} events", s.w1_events);
    let order = if round.is_multiple_of(2) { [0, 1] } else { [1, 0] };
    for i in order {
        let (tags, [rate, record, file]) = ([0, 2][i], ROWS[i]);
        rep.declare(rate, "events/s", true);
        rep.declare(record, "bytes", false);
        rep.declare(file, "bytes", false);
        match ef::w1(s, tags) {
            Ok(w) => {
                rep.record(rate, "events/s", true, "eventfold", w.rate);
                rep.record(record, "bytes", false, "eventfold", w.record_bytes);
                rep.record(file, "bytes", false, "eventfold", w.file_bytes);
                if round == 0 {
                    rep.note(format!("eventfold W1t ({tags} tags) writer: {}", w.stats));
                }
            }
            Err(e) => rep.skip("eventfold", "W1t", &e),
        }
    }
}

/// W9: one category of the log read whole, through eventfold's index and
/// SQLite's, and by eventfold walking the log.
const W11: [&str; 3] = ["W11_appends_during_scavenge", "W11_append_p50", "W11_append_p99"];

fn w11(rep: &mut Report, s: &Sizes) {
    eprintln!(
        "W11 scavenge: {} events in {} streams, half deleted, while {} threads append",
        s.w11_events, s.w11_streams, s.w2_threads
    );
    rep.declare("W11_scavenge", "events/s", true);
    rep.declare(W11[0], "events/s", true);
    rep.declare(W11[1], "µs", false);
    rep.declare(W11[2], "µs", false);
    match scavenge::w11(s) {
        Ok(w) => {
            rep.record("W11_scavenge", "events/s", true, "eventfold", w.removed_per_s);
            rep.lat(&W11, "eventfold", w.appends);
            rep.note(format!("W11: each scavenge removes {} events", w.removed));
        }
        Err(e) => rep.skip("eventfold", "W11", &e),
    }
}

fn w9(rep: &mut Report, s: &Sizes, runs: usize) {
    const READ: &str = "W9_filtered_read_indexed";
    const FIRST: &str = "W9_filtered_read_indexed_first";
    const SCAN: &str = "W9_filtered_read_scan";
    eprintln!(
        "W9 filtered read: one event in {} of {} in category {:?}",
        s.w9_every,
        s.w9_events,
        ef::W9_RARE
    );
    rep.declare(READ, "ms", false);
    rep.declare(FIRST, "ms", false);
    rep.declare(SCAN, "ms", false);
    // The first read of a freshly opened store also maps (eventfold) or
    // caches (SQLite) the pages it touches; it is reported on its own.
    let indexed = |peer: &'static str, v: Vec<f64>, rep: &mut Report| {
        if let Some(&first) = v.first() {
            rep.record(FIRST, "ms", false, peer, first);
        }
        v.into_iter().for_each(|v| rep.record(READ, "ms", false, peer, v));
    };
    match run("eventfold", || ef::w9(s, runs)) {
        Ok((by_index, scanned, n)) => {
            indexed("eventfold", by_index, rep);
            scanned.into_iter().for_each(|v| rep.record(SCAN, "ms", false, "eventfold", v));
            rep.note(format!("W9: each read returns {n} events"));
        }
        Err(e) => rep.skip("eventfold", "W9", &e),
    }
    match run("sqlite", || sqlite::w9(s, runs)) {
        Ok(v) => indexed("sqlite", v, rep),
        Err(e) => rep.skip("sqlite", "W9", &e),
    }
}

const W10: [&str; 5] =
    ["W10_dcb_enrolments", "W10_dcb_decisions", "W10_decision_p50", "W10_decision_p99", "W10_retries"];

/// W10: course enrolments with DCB reads and conditional appends from
/// concurrent clients; a peer whose store breaks a limit fails the run.
fn w10(rep: &mut Report, s: &Sizes, postgres: Option<&pg::Server>, first: bool) {
    eprintln!(
        "W10 DCB enrolments: {} decisions from {} clients, {} courses of {} seats, {} students of at most {} courses",
        s.w10_attempts, s.w10_clients, s.w10_courses, s.w10_capacity, s.w10_students, s.w10_max_courses
    );
    rep.declare(W10[0], "enrolments/s", true);
    rep.declare(W10[1], "decisions/s", true);
    rep.declare(W10[2], "µs", false);
    rep.declare(W10[3], "µs", false);
    rep.declare(W10[4], "count", false);
    let mut all: Vec<(&'static str, R<dcb::Outcome>)> =
        vec![("eventfold", run("eventfold", || ef::w10(s))), ("sqlite", run("sqlite", || sqlite::w10(s)))];
    if let Some(pg) = postgres {
        all.push(("postgres", run("postgres", || pg.w10(s))));
    }
    for (peer, r) in all {
        match r {
            Ok(mut o) => {
                let t = &mut o.tally;
                let decisions = t.enrolled + t.course_full + t.student_full + t.already;
                rep.record(W10[0], "enrolments/s", true, peer, util::rate(t.enrolled, o.wall));
                rep.record(W10[1], "decisions/s", true, peer, util::rate(decisions, o.wall));
                rep.record(W10[2], "µs", false, peer, util::quantile_us(&mut t.latencies, 0.5));
                rep.record(W10[3], "µs", false, peer, util::quantile_us(&mut t.latencies, 0.99));
                rep.record(W10[4], "count", false, peer, t.retries as f64);
                if first {
                    rep.note(format!("{peer} W10: {}", t.describe()));
                    if let Some(w) = &o.writer {
                        rep.note(format!("{peer} W10 writer: {w}"));
                    }
                }
                if o.broken.is_empty() {
                    eprintln!("  {peer} W10 checked: no course over capacity, no student over the maximum");
                } else {
                    for b in o.broken {
                        let b = format!("{peer} W10: {b}");
                        rep.note(format!("INVARIANT BROKEN: {b}"));
                        rep.broken.push(b);
                    }
                }
            }
            Err(e) => rep.skip(peer, "W10", &e),
        }
    }
}

const W2: [&str; 3] = ["W2_concurrent_append", "W2_p50_latency", "W2_p99_latency"];
const W2A: [&str; 3] = ["W2a_async_append", "W2a_p50_latency", "W2a_p99_latency"];

/// W2a: W2's appends from tasks on a 2-thread tokio runtime, then again
/// with an async subscription for its wake latency (W7's, measured the
/// same way, is the blocking subscription's).
fn w2a(rep: &mut Report, s: &Sizes, first: bool) {
    eprintln!(
        "W2a async appends: {} events, {} tasks on 2 runtime threads, {} streams",
        s.w2_events, s.w2a_tasks, s.w2_streams
    );
    rep.declare(W2A[0], "events/s", true);
    rep.declare(W2A[1], "µs", false);
    rep.declare(W2A[2], "µs", false);
    rep.declare("W2a_os_threads", "threads", false);
    rep.declare("W2a_wake_p50", "µs", false);
    rep.declare("W2a_wake_p99", "µs", false);
    match ef::w2a(s, false) {
        Ok((l, _, threads, stats)) => {
            rep.lat(&W2A, "eventfold", l);
            rep.record("W2a_os_threads", "threads", false, "eventfold", threads as f64);
            if first {
                rep.note(format!("eventfold W2a writer: {stats}"));
            }
        }
        Err(e) => rep.skip("eventfold", "W2a", &e),
    }
    match ef::w2a(s, true) {
        Ok((_, Some((p50, p99)), _, _)) => {
            rep.record("W2a_wake_p50", "µs", false, "eventfold", p50);
            rep.record("W2a_wake_p99", "µs", false, "eventfold", p99);
        }
        Ok(_) => rep.skip("eventfold", "W2a", "no subscriber figures"),
        Err(e) => rep.skip("eventfold", "W2a", &e),
    }
    rep.declare("W2a_own_runtime_wake_p50", "µs", false);
    rep.declare("W2a_own_runtime_wake_p99", "µs", false);
    match ef::w2a_own_runtime(s) {
        Ok((_, Some((p50, p99)), _, _)) => {
            rep.record("W2a_own_runtime_wake_p50", "µs", false, "eventfold", p50);
            rep.record("W2a_own_runtime_wake_p99", "µs", false, "eventfold", p99);
        }
        Ok(_) => rep.skip("eventfold", "W2a", "no subscriber figures"),
        Err(e) => rep.skip("eventfold", "W2a", &e),
    }
}

const W3: [&str; 3] = ["W3_throughput", "W3_p50_latency", "W3_p99_latency"];

fn w2(rep: &mut Report, s: &Sizes, postgres: Option<&pg::Server>, first: bool) {
    eprintln!(
        "W2 concurrent appends: {} events, {} threads, {} streams",
        s.w2_events, s.w2_threads, s.w2_streams
    );
    rep.declare(W2[0], "events/s", true);
    rep.declare(W2[1], "µs", false);
    rep.declare(W2[2], "µs", false);
    match run("eventfold", || ef::w2(s, false)) {
        Ok((l, _, stats)) => {
            rep.lat(&W2, "eventfold", l);
            if first {
                rep.note(format!("eventfold W2 writer: {stats}"));
            }
        }
        Err(e) => rep.skip("eventfold", "W2", &e),
    }
    for (peer, r) in
        [("lmdb_naive", run("lmdb_naive", || naive::w2(s))), ("sqlite", run("sqlite", || sqlite::w2(s)))]
    {
        match r {
            Ok(l) => rep.lat(&W2, peer, l),
            Err(e) => rep.skip(peer, "W2", &e),
        }
    }
    if let Some(pg) = postgres {
        match run("postgres", || pg.w2(s)) {
            Ok(l) => rep.lat(&W2, "postgres", l),
            Err(e) => rep.skip("postgres", "W2", &e),
        }
    }
}

fn w3(rep: &mut Report, s: &Sizes, postgres: Option<&pg::Server>) {
    eprintln!("W3 one client: {} single-event appends", s.w3_events);
    rep.declare(W3[0], "events/s", true);
    rep.declare(W3[1], "µs", false);
    rep.declare(W3[2], "µs", false);
    let mut all: Vec<(&'static str, R<Lat>)> = vec![
        ("eventfold", run("eventfold", || ef::w3(s))),
        ("lmdb_naive", run("lmdb_naive", || naive::w3(s))),
        ("sqlite", run("sqlite", || sqlite::w3(s))),
        ("varvedb", run("varvedb", || varve::w3(s))),
    ];
    if let Some(pg) = postgres {
        all.push(("postgres", run("postgres", || pg.w3(s))));
    }
    for (peer, r) in all {
        match r {
            Ok(l) => rep.lat(&W3, peer, l),
            Err(e) => rep.skip(peer, "W3", &e),
        }
    }
}

fn w4(rep: &mut Report, s: &Sizes, runs: usize) {
    const N: &str = "W4_aggregate_load";
    const SN: &str = "W4_snapshot_load";
    eprintln!("W4 aggregate load: {} events in one stream among {} others", s.w4_aggregate, s.w4_others);
    rep.declare(N, "ms", false);
    rep.declare(SN, "ms", false);
    match run("eventfold", || ef::w4(s, runs)) {
        Ok((full, snap)) => {
            full.into_iter().for_each(|v| rep.record(N, "ms", false, "eventfold", v));
            snap.into_iter().for_each(|v| rep.record(SN, "ms", false, "eventfold", v));
        }
        Err(e) => rep.skip("eventfold", "W4", &e),
    }
    for (peer, r) in [
        ("lmdb_naive", run("lmdb_naive", || naive::w4(s, runs))),
        ("sqlite", run("sqlite", || sqlite::w4(s, runs))),
    ] {
        match r {
            Ok(v) => v.into_iter().for_each(|v| rep.record(N, "ms", false, peer, v)),
            Err(e) => rep.skip(peer, "W4", &e),
        }
    }
}

fn w5_w6(rep: &mut Report, s: &Sizes, runs: usize, postgres: Option<&pg::Server>) {
    const ZC: &str = "W5_scan_zero_copy";
    const OW: &str = "W5_scan_owned";
    const W6: &str = "W6_projection_rebuild";
    eprintln!("W5 global scan and W6 projection rebuild: {} events", s.w5_events);
    rep.declare(ZC, "events/s", true);
    rep.declare(OW, "events/s", true);
    rep.declare(W6, "events/s", true);
    match run("eventfold", || ef::w5(s, runs)) {
        Ok((zc, owned, dir)) => {
            zc.into_iter().for_each(|v| rep.record(ZC, "events/s", true, "eventfold", v));
            owned.into_iter().for_each(|v| rep.record(OW, "events/s", true, "eventfold", v));
            match ef::w6(dir.path(), s.w5_events, runs) {
                Ok(v) => v.into_iter().for_each(|v| rep.record(W6, "events/s", true, "eventfold", v)),
                Err(e) => rep.skip("eventfold", "W6", &e),
            }
        }
        Err(e) => rep.skip("eventfold", "W5", &e),
    }
    for (peer, r) in [
        ("lmdb_naive", run("lmdb_naive", || naive::w5_w6(s, runs))),
        ("sqlite", run("sqlite", || sqlite::w5_w6(s, runs))),
    ] {
        match r {
            Ok((zc, owned, proj)) => {
                zc.into_iter().for_each(|v| rep.record(ZC, "events/s", true, peer, v));
                owned.into_iter().for_each(|v| rep.record(OW, "events/s", true, peer, v));
                proj.into_iter().for_each(|v| rep.record(W6, "events/s", true, peer, v));
            }
            Err(e) => rep.skip(peer, "W5/W6", &e),
        }
    }
    match run("varvedb", || varve::w5(s, runs)) {
        Ok(v) => v.into_iter().for_each(|v| rep.record(OW, "events/s", true, "varvedb", v)),
        Err(e) => rep.skip("varvedb", "W5", &e),
    }
    if let Some(pg) = postgres {
        match run("postgres", || pg.w5(s, runs)) {
            Ok((zc, owned)) => {
                zc.into_iter().for_each(|v| rep.record(ZC, "events/s", true, "postgres", v));
                owned.into_iter().for_each(|v| rep.record(OW, "events/s", true, "postgres", v));
            }
            Err(e) => rep.skip("postgres", "W5", &e),
        }
    }
}

/// The hidden subcommand that W8 runs in a child process.
const W8_CHILD: &str = "__w8-scan";

/// W8 child: a zero-copy scan of the store in `dir`; prints the peak
/// anonymous RSS (sampled), `VmHWM` and the events seen, in KiB.
fn w8_child(dir: Option<&str>) -> R<()> {
    let dir = dir.ok_or("usage: __w8-scan DIR")?;
    let store = eventfold::Store::builder(dir).open_read_only().map_err(util::err("open"))?;
    let reader = store.read().map_err(util::err("read"))?;
    let mut peak_anon = util::proc_status_kib("RssAnon").unwrap_or(0);
    let mut n = 0u64;
    let mut acc = 0u64;
    for e in reader.all(eventfold::ReadAll::new()).map_err(util::err("scan"))? {
        let e = e.map_err(util::err("scan"))?;
        acc = acc
            .wrapping_add(e.position())
            .wrapping_add(e.payload().len() as u64)
            .wrapping_add(e.stream_id().len() as u64);
        n += 1;
        if n.is_multiple_of(65_536) {
            peak_anon = peak_anon.max(util::proc_status_kib("RssAnon").unwrap_or(0));
        }
    }
    std::hint::black_box(acc);
    peak_anon = peak_anon.max(util::proc_status_kib("RssAnon").unwrap_or(0));
    let hwm = util::proc_status_kib("VmHWM").ok_or("no VmHWM in /proc/self/status")?;
    println!("{peak_anon} {hwm} {n}");
    Ok(())
}

fn w8(rep: &mut Report, s: &Sizes, runs: usize) {
    const PREFIX: [(&str, &str); 2] =
        [("W8_peak_anon_rss_small", "W8_vmhwm_small"), ("W8_peak_anon_rss_large", "W8_vmhwm_large")];
    eprintln!("W8 memory of a zero-copy scan: {} and {} events", s.w8_small, s.w8_large);
    for (k, n) in [s.w8_small, s.w8_large].into_iter().enumerate() {
        let (anon_name, hwm_name) = PREFIX[k];
        rep.declare(anon_name, "MiB", false);
        rep.declare(hwm_name, "MiB", false);
        let r = (|| -> R<Vec<(f64, f64)>> {
            let dir = util::tempdir()?;
            ef::populate(dir.path(), n)?;
            let exe = std::env::current_exe().map_err(util::err("current exe"))?;
            let mut out = Vec::new();
            for _ in 0..runs {
                let o = std::process::Command::new(&exe)
                    .arg(W8_CHILD)
                    .arg(dir.path())
                    .output()
                    .map_err(util::err("spawn W8 child"))?;
                let text = String::from_utf8_lossy(&o.stdout);
                let v: Vec<u64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                match v.as_slice() {
                    [anon, hwm, seen] if *seen == n => {
                        out.push((*anon as f64 / 1024.0, *hwm as f64 / 1024.0))
                    }
                    _ => {
                        return Err(format!("W8 child said {text:?} {}", String::from_utf8_lossy(&o.stderr)));
                    }
                }
            }
            Ok(out)
        })();
        match r {
            Ok(v) => {
                for (anon, hwm) in v {
                    rep.record(anon_name, "MiB", false, "eventfold", anon);
                    rep.record(hwm_name, "MiB", false, "eventfold", hwm);
                }
            }
            Err(e) => rep.skip("eventfold", "W8", &e),
        }
    }
}

fn machine(o: &Options, sizes: &Sizes) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines().find_map(|l| {
            l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
    });
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string())));
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory": mem,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        "mode": if o.quick { "quick" } else { "full" },
        "scale": if o.quick { Value::Null } else { json!(o.scale) },
        "runs": o.runs,
        "sizes": sizes,
    })
}

fn to_json(rep: &Report, o: &Options, sizes: &Sizes) -> Value {
    let workloads: Vec<Value> = rep
        .workloads
        .iter()
        .map(|w| {
            let results: serde_json::Map<String, Value> = PEERS
                .iter()
                .map(|p| {
                    let v = w.runs.get(p).map(|v| util::median(v.clone())).filter(|v| v.is_finite());
                    (p.to_string(), v.map_or(Value::Null, |v| json!(v)))
                })
                .collect();
            json!({"name": w.name, "unit": w.unit, "higher_is_better": w.higher_is_better, "results": results})
        })
        .collect();
    json!({"machine": machine(o, sizes), "workloads": workloads, "notes": rep.notes})
}

fn human(v: f64, unit: &str) -> String {
    let rate = unit.ends_with("/s");
    match unit {
        _ if rate && v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        _ if rate && v >= 1e3 => format!("{:.1} K/s", v / 1e3),
        _ if rate => format!("{v:.0} /s"),
        "bytes" => format!("{v:.0} B"),
        "count" => format!("{v:.0}"),
        "µs" if v < 10.0 => format!("{v:.1} µs"),
        "µs" => format!("{v:.0} µs"),
        "ms" if v < 10.0 => format!("{v:.3} ms"),
        "ms" => format!("{v:.1} ms"),
        "MiB" => format!("{v:.1} MiB"),
        "threads" => format!("{v:.0}"),
        _ => format!("{v:.3}"),
    }
}

fn print_tables(rep: &Report, o: &Options, sizes: &Sizes) {
    let m = machine(o, sizes);
    println!(
        "eventfold-bench: {} mode, median of {} run(s), {} cores, {}",
        m["mode"].as_str().unwrap_or("?"),
        o.runs,
        m["cores"],
        m["cpu"].as_str().unwrap_or("unknown CPU")
    );
    for w in &rep.workloads {
        let dir = if w.higher_is_better { "higher is better" } else { "lower is better" };
        println!("\n{} ({}, {dir})", w.name, w.unit);
        println!("  {:<12} {:>14} {:>18}", "peer", "median", "eventfold ÷ peer");
        let ef = w.runs.get("eventfold").map(|v| util::median(v.clone()));
        for p in PEERS {
            let Some(v) = w.runs.get(p).map(|v| util::median(v.clone())).filter(|v| v.is_finite()) else {
                println!("  {p:<12} {:>14} {:>18}", "-", "");
                continue;
            };
            let ratio = match ef {
                Some(e) if e.is_finite() && v != 0.0 => format!("{:.2}×", e / v),
                _ => String::new(),
            };
            println!("  {p:<12} {:>14} {:>18}", human(v, w.unit), ratio);
        }
    }
    if !rep.notes.is_empty() {
        println!("\nnotes:");
        for n in &rep.notes {
            println!("  - {n}");
        }
    }
}
