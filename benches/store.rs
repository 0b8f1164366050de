//! Micro-benchmarks of the core paths: durable appends (1, 10, 100 events per
//! request; 1 and 32 appending threads) and a zero-copy global scan.
//!
//! ```text
//! cargo bench --bench store
//! ```
//! The peer comparison (SQLite, PostgreSQL, a naive LMDB store) lives in the
//! separate benchmark harness; these benches track eventfold's own paths.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eventfold::{ExpectedVersion, NewEvent, ReadAll, Store};

/// About 250 bytes of JSON, like a typical domain event.
fn payload(i: u64) -> serde_json::Value {
    serde_json::json!({
        "order_id": format!("order-{i:08}"),
        "customer": "customer-000042",
        "amount_cents": 12_345 + i % 1000,
        "currency": "EUR",
        "items": [{"sku": "SKU-1", "qty": 2}, {"sku": "SKU-7", "qty": 1}],
        "note": "a short free-text note that pads the event to a realistic size",
    })
}

fn events(n: usize, base: u64) -> Vec<NewEvent> {
    (0..n as u64).map(|i| NewEvent::json("OrderPlaced", &payload(base + i))).collect()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for threads in [1usize, 32] {
        for per_request in [1usize, 10, 100] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("open");
            group.throughput(Throughput::Elements((per_request * threads) as u64));
            let id = BenchmarkId::new(format!("{threads}_threads"), format!("{per_request}_per_request"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let barrier = Arc::new(Barrier::new(threads + 1));
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let store = store.clone();
                            let barrier = barrier.clone();
                            std::thread::spawn(move || {
                                let stream = format!("bench-{t}");
                                barrier.wait();
                                for i in 0..iters {
                                    store
                                        .append(&stream, ExpectedVersion::Any, events(per_request, i))
                                        .expect("append");
                                }
                            })
                        })
                        .collect();
                    barrier.wait();
                    let start = Instant::now();
                    for h in handles {
                        h.join().expect("appender thread");
                    }
                    start.elapsed()
                });
            });
        }
    }
    group.finish();
}

fn scan(c: &mut Criterion) {
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path()).durability(eventfold::Durability::NoSync).open().expect("open");
    for chunk in 0..N / 1000 {
        let reqs: Vec<_> = (0..10)
            .map(|s| {
                (
                    format!("scan-{}", (chunk * 10 + s) % 1000),
                    ExpectedVersion::Any,
                    events(100, chunk * 1000 + s * 100),
                )
            })
            .collect();
        store.append_many(reqs).expect("load");
    }
    let mut group = c.benchmark_group("scan");
    group.sample_size(10).throughput(Throughput::Elements(N));
    group.bench_function("zero_copy_all_fields", |b| {
        b.iter(|| {
            let reader = store.read().expect("read");
            let mut acc = 0usize;
            for e in reader.all(ReadAll::new()).expect("iter") {
                let e = e.expect("event");
                acc += e.stream_id().len() + e.event_type().len() + e.payload().len() + e.version() as usize;
                acc += e.event_id().as_bytes()[0] as usize + e.recorded_at() as usize % 7;
            }
            assert!(acc > 0);
        })
    });
    group.bench_function("owned", |b| {
        b.iter(|| {
            let reader = store.read().expect("read");
            let n = reader
                .all(ReadAll::new())
                .expect("iter")
                .map(|e| e.and_then(|e| e.to_owned()).expect("event"))
                .fold(0usize, |n, e| n + usize::from(e.position > 0));
            assert_eq!(n as u64, N);
        })
    });
    group.finish();
}

criterion_group!(benches, append, scan);
criterion_main!(benches);
