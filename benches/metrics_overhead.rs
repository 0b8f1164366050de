//! What the metrics cost the writer thread: `NoSync` appends (so the
//! writer's own work is what is measured, not the disk), first with no
//! metrics recorder, then with the Prometheus recorder installed. Prints
//! the writer thread's CPU time per request, which depends far less on
//! other load than wall time does, and requests per second.
//!
//! ```text
//! cargo bench --bench metrics_overhead          # 7 runs of each case
//! cargo bench --bench metrics_overhead -- 15    # 15 runs
//! ```
//! (Run through `cargo test`, it does a tiny smoke run.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use eventfold::{Durability, ExpectedVersion, NewEvent, Store};

/// The calling thread's CPU time in nanoseconds (Linux), 0 elsewhere.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// The writer's CPU time, read on the writer thread by the commit hook of
/// the commit that follows a request for it.
#[derive(Default)]
struct WriterClock {
    wanted: AtomicBool,
    ns: AtomicU64,
}

fn read_writer(store: &Store, clock: &WriterClock) -> u64 {
    clock.wanted.store(true, Ordering::Release);
    store.append("clock", ExpectedVersion::Any, [NewEvent::json("Clock", &0)]).expect("append");
    clock.ns.load(Ordering::Acquire)
}

struct Run {
    requests_per_sec: f64,
    writer_ns_per_request: f64,
}

fn run(threads: usize, per_thread: u64, events_per_request: u64) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(WriterClock::default());
    let hook = clock.clone();
    let store = Store::builder(dir.path())
        .durability(Durability::NoSync)
        .on_commit(move |_| {
            if hook.wanted.swap(false, Ordering::AcqRel) {
                hook.ns.store(thread_cpu_ns(), Ordering::Release);
            }
        })
        .open()
        .expect("open");
    let start_cpu = read_writer(&store, &clock);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = store.clone();
            scope.spawn(move || {
                let stream = format!("writer-{t}");
                for i in 0..per_thread {
                    let events = (0..events_per_request).map(|j| {
                        NewEvent::json(
                            "Tick",
                            &serde_json::json!({ "i": i, "j": j, "note": "x".repeat(200) }),
                        )
                    });
                    store
                        .append(&stream, ExpectedVersion::Exact(i * events_per_request), events)
                        .expect("append");
                }
            });
        }
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu = read_writer(&store, &clock).saturating_sub(start_cpu);
    let requests = (threads as u64 * per_thread) as f64;
    Run { requests_per_sec: requests / wall, writer_ns_per_request: cpu as f64 / requests }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let runs: usize =
        std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(if bench { 7 } else { 1 });
    let scale = if bench { 1 } else { 100 };
    let cases = [
        ("1 thread, 1 event", 1, 20_000, 1),
        ("8 threads, 1 event", 8, 5_000, 1),
        ("4 threads, 100 events", 4, 200, 100),
    ];
    println!(
        "{:>10} {:>24} {:>14} {:>18}",
        "recorder", "appenders, per request", "requests/s", "writer ns/request"
    );
    for recorder in ["none", "prometheus"] {
        if recorder == "prometheus" {
            eventfold::metrics::install_prometheus_recorder().expect("install the recorder");
        }
        for (name, threads, per_thread, events) in cases {
            let results: Vec<Run> = (0..runs).map(|_| run(threads, per_thread / scale, events)).collect();
            let rate = median(results.iter().map(|r| r.requests_per_sec).collect());
            let cpu = median(results.iter().map(|r| r.writer_ns_per_request).collect());
            println!("{recorder:>10} {name:>24} {rate:>14.0} {cpu:>18.0}");
        }
    }
}
