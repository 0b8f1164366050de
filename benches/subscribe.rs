//! Subscription wake latency and projection rebuild throughput.
//!
//! `cargo bench --bench subscribe` prints the measured figures to stdout, then
//! runs a criterion benchmark of subscription catch-up. Without `--bench`
//! (as under `cargo test --all-targets`) every part runs once, small.
//! `EVENTFOLD_BENCH_EVENTS` sets the rebuild's event count (default 200 000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use eventfold::{
    Durability, ExpectedVersion, Filter, NewEvent, Projection, ProjectionContext, ProjectionRunner,
    RecordedEvent, Result, Store, SubscribeFrom,
};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Time from submitting a one-event append to a blocked subscriber holding
/// the event, one append at a time (the writer notifies subscribers right
/// after the commit, before it answers the appender).
fn wake_latency(durability: Durability, rounds: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path()).durability(durability).open().expect("open");
    let mut sub = store.subscribe(SubscribeFrom::End, Filter::new()).expect("subscribe");
    let (go_tx, go_rx) = crossbeam_channel::bounded::<Instant>(1);
    let (lat_tx, lat_rx) = crossbeam_channel::bounded::<Duration>(1);
    let waiter = std::thread::spawn(move || {
        while let Ok(t0) = go_rx.recv() {
            let e = sub.next_timeout(Duration::from_secs(30)).expect("read").expect("event");
            black_box(e);
            let _ = lat_tx.send(t0.elapsed());
        }
    });
    let mut wake = Vec::with_capacity(rounds);
    let mut append = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t0 = Instant::now();
        go_tx.send(t0).expect("waiter alive");
        store.append("bench-1", ExpectedVersion::Any, [NewEvent::json("Tick", &i)]).expect("append");
        append.push(t0.elapsed());
        wake.push(lat_rx.recv().expect("latency"));
    }
    drop(go_tx);
    waiter.join().expect("waiter");
    wake.sort();
    append.sort();
    println!(
        "wake latency {durability:?}, {rounds} rounds: submit -> subscriber has the event p50 {:?} p99 {:?}; append round trip p50 {:?} p99 {:?}",
        percentile(&wake, 0.5),
        percentile(&wake, 0.99),
        percentile(&append, 0.5),
        percentile(&append, 0.99),
    );
}

struct Analytics;

impl Projection for Analytics {
    const NAME: &'static str = "analytics";
    const VERSION: u32 = 1;

    fn filter(&self) -> Filter {
        Filter::new().category("order")
    }

    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()> {
        let amount: u64 = event.payload_as::<serde_json::Value>()?["amount"].as_u64().unwrap_or(0);
        ctx.update("totals", |t: &mut (u64, u64)| {
            t.0 += 1;
            t.1 += amount;
        })?;
        ctx.put(&event.stream_id, &amount)
    }
}

/// Loads `n` events over 1 000 order streams, then times a projection build
/// from position 1 (the same work as a rebuild) and a forced rebuild.
fn rebuild_throughput(n: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path()).durability(Durability::NoSync).open().expect("open");
    let t = Instant::now();
    let mut tickets = Vec::new();
    for chunk in 0..n.div_ceil(1000) {
        let events = (0..1000.min(n - chunk * 1000))
            .map(|i| NewEvent::json("OrderPlaced", &json!({"amount": i, "note": "x".repeat(150)})));
        tickets.push(store.submit(&format!("order-{chunk}"), ExpectedVersion::Any, events).expect("submit"));
    }
    for ticket in tickets {
        ticket.wait().expect("append");
    }
    let load = t.elapsed();
    let runner = ProjectionRunner::new(&store).expect("runner").register(Analytics).expect("register");
    let t = Instant::now();
    runner.run_until_caught_up().expect("build");
    let build = t.elapsed();
    runner.rebuild("analytics").expect("rebuild");
    let t = Instant::now();
    runner.run_until_caught_up().expect("rebuild");
    let rebuild = t.elapsed();
    let per_sec = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "projection over {n} events: load {:.0} ev/s; first build {:?} ({:.0} ev/s); shadow rebuild + swap {:?} ({:.0} ev/s)",
        per_sec(load),
        build,
        per_sec(build),
        rebuild,
        per_sec(rebuild),
    );
}

fn catch_up(c: &mut Criterion, n: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path()).durability(Durability::NoSync).open().expect("open");
    for chunk in 0..n / 1000 {
        store
            .append(&format!("s-{chunk}"), ExpectedVersion::Any, (0..1000).map(|i| NewEvent::json("E", &i)))
            .expect("append");
    }
    let mut g = c.benchmark_group("subscription");
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("catch_up_{n}"), |b| {
        b.iter(|| {
            let mut sub = store.subscribe(SubscribeFrom::Start, Filter::new()).expect("subscribe");
            let mut k = 0;
            while let Some(e) = sub.try_next().expect("read") {
                k += black_box(e.position) & 1;
            }
            k
        })
    });
    g.finish();
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let events = std::env::var("EVENTFOLD_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    if bench {
        wake_latency(Durability::NoSync, 2000);
        wake_latency(Durability::Sync, 300);
        rebuild_throughput(events);
    } else {
        wake_latency(Durability::NoSync, 20);
        rebuild_throughput(2000);
    }
    let mut c = Criterion::default().configure_from_args();
    catch_up(&mut c, if bench { 20_000 } else { 1000 });
    c.final_summary();
}
