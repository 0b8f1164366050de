//! How well the writer batches concurrent appenders: durable single-event
//! appends from N threads, each on its own stream, with the adaptive batch
//! window on (default) and off. Prints events/s and requests per commit.
//!
//! ```text
//! cargo bench --bench group_commit            # 1, 8, 32, 64 threads
//! cargo bench --bench group_commit -- 64      # one thread count
//! ```
//! (Run through `cargo test`, it does a tiny smoke run.)

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use eventfold::{ExpectedVersion, NewEvent, Store};

struct Outcome {
    events_per_sec: f64,
    requests_per_commit: f64,
}

fn run(threads: usize, per_thread: u64, delay: Duration) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path()).max_batch_delay(delay).open().expect("open");
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let stream = format!("writer-{t}");
                barrier.wait();
                for i in 0..per_thread {
                    let event =
                        NewEvent::json("Tick", &serde_json::json!({ "i": i, "note": "x".repeat(200) }));
                    store.append(&stream, ExpectedVersion::Exact(i), [event]).expect("append");
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("appender");
    }
    let elapsed = start.elapsed();
    let stats = store.stats().expect("stats");
    Outcome {
        events_per_sec: (threads as u64 * per_thread) as f64 / elapsed.as_secs_f64(),
        requests_per_commit: stats.requests as f64 / stats.commits.max(1) as f64,
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let only: Option<usize> = std::env::args().skip(1).find_map(|a| a.parse().ok());
    let thread_counts: Vec<usize> = match only {
        Some(n) => vec![n],
        None if bench => vec![1, 8, 32, 64],
        None => vec![4],
    };
    let per_thread = if bench { 200 } else { 5 };
    println!(
        "{:>8} {:>16} {:>14} {:>16} {:>14}",
        "threads", "window ev/s", "req/commit", "no-window ev/s", "req/commit"
    );
    for threads in thread_counts {
        let with = run(threads, per_thread, Duration::from_millis(1));
        let without = run(threads, per_thread, Duration::ZERO);
        println!(
            "{threads:>8} {:>16.0} {:>14.1} {:>16.0} {:>14.1}",
            with.events_per_sec,
            with.requests_per_commit,
            without.events_per_sec,
            without.requests_per_commit
        );
    }
}
