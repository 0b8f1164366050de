//! Relay throughput and lag against real servers; not part of the default run.
//!
//! ```text
//! cargo test -p eventfold-nats --release --test bench -- --ignored --nocapture
//! ```
//!
//! Prints, for an R1 stream on one server and an R3 stream on a 3-node
//! loopback cluster: catch-up throughput over `EVENTFOLD_NATS_BENCH_EVENTS`
//! (default 100,000) events of ~60-byte JSON, then the relay's lag while
//! another thread appends at a steady `EVENTFOLD_NATS_BENCH_RATE` events/s
//! (default 10,000) for 10 s.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, TestResult, jetstream, skip_reason, wait_jetstream};
use eventfold::{ExpectedVersion, NewEvent, Store};
use eventfold_nats::{Relay, RelayConfig};
use serde_json::json;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn append(store: &Store, from: u64, n: u64) -> TestResult {
    let mut i = 0;
    while i < n {
        let batch = (n - i).min(100);
        let events: Vec<NewEvent> = (0..batch)
            .map(|k| {
                NewEvent::json(
                    "Measured",
                    &json!({ "seq": from + i + k, "sensor": "s-17", "value": 21.5, "unit": "C" }),
                )
            })
            .collect();
        store.append(&format!("sensor-{}", (from + i) % 1000), ExpectedVersion::Any, events)?;
        i += batch;
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(replicas: usize) -> TestResult {
    let root = tempfile::tempdir()?;
    let nodes = if replicas == 1 { 1 } else { 3 };
    let cluster = Cluster::start(&root.path().join("nats"), nodes)?;
    let store = Store::open(root.path().join("store"))?;
    let n = env("EVENTFOLD_NATS_BENCH_EVENTS", 100_000);
    append(&store, 0, n)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let js = jetstream(&cluster.urls()).await?;
        wait_jetstream(&js, Duration::from_secs(30)).await?;
        let mut config = RelayConfig::new(cluster.urls(), "BENCH");
        config.replicas = replicas;
        config.exit_when_caught_up = true;
        let started = Instant::now();
        let stats = Relay::new(store.clone(), config.clone())?.run(std::future::pending()).await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "R{replicas}: catch-up {} events in {secs:.2} s = {:.0} events/s",
            stats.published,
            stats.published as f64 / secs
        );

        // Steady load: append at a fixed rate while the relay follows.
        let rate = env("EVENTFOLD_NATS_BENCH_RATE", 10_000);
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        config.exit_when_caught_up = false;
        let relay = Relay::new(store.clone(), config)?.on_progress(Duration::from_millis(50), move |s| {
            if let Ok(mut v) = sink.lock() {
                v.push((s.head.saturating_sub(s.acked), s.lag()));
            }
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async {
            let _ = stop_rx.await;
        }));
        let writer = store.clone();
        let load = std::thread::spawn(move || -> TestResult {
            let per_tick = (rate / 100).max(1);
            let start = Instant::now();
            for tick in 0..1000u64 {
                append(&writer, n + tick * per_tick, per_tick)?;
                // Pacing the load generator, not synchronisation.
                let due = start + Duration::from_millis(10 * (tick + 1));
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            Ok(())
        });
        load.join().map_err(|_| "load thread panicked")?.map_err(|e| e.to_string())?;
        let _ = stop_tx.send(());
        let stats = task.await??;
        let mut unacked: Vec<u64> = Vec::new();
        let mut checkpoint_lag: Vec<u64> = Vec::new();
        for (a, c) in samples.lock().map_err(|_| "poisoned")?.iter() {
            unacked.push(*a);
            checkpoint_lag.push(*c);
        }
        unacked.sort_unstable();
        checkpoint_lag.sort_unstable();
        println!(
            "R{replicas}: steady {rate} events/s for 10 s: relayed {}, lag behind the head (events not yet acknowledged) \
             p50 {} p99 {} max {}; checkpoint lag p50 {} max {} ({} samples)",
            stats.published,
            percentile(&unacked, 0.5),
            percentile(&unacked, 0.99),
            unacked.last().copied().unwrap_or(0),
            percentile(&checkpoint_lag, 0.5),
            checkpoint_lag.last().copied().unwrap_or(0),
            unacked.len()
        );
        TestResult::Ok(())
    })
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn relay_throughput_and_lag() -> TestResult {
    if let Some(reason) = skip_reason() {
        eprintln!("{reason}");
        return Ok(());
    }
    run(1)?;
    run(3)?;
    Ok(())
}
