//! varvedb (crates.io): heed + rkyv event store. Its API has no expected
//! version check and no subscription or projection, so it runs W1, W3 and
//! W5 (owned) only.

use std::hint::black_box;
use std::time::Instant;

use rkyv::rancor;
use varvedb::{GlobalSequence, StreamId, Varve, VarveConfig};

use crate::util::{self, Lat, R, Sizes, err, lat, payload, rate, share};

/// The event varvedb stores (its payload type).
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct VEvent {
    /// Event id (UUID bytes).
    pub event_id: [u8; 16],
    /// Event type.
    pub event_type: String,
    /// Append time, µs since the epoch.
    pub recorded_at: u64,
    /// JSON payload.
    pub payload: Vec<u8>,
}

fn event(n: u64) -> VEvent {
    VEvent {
        event_id: *uuid::Uuid::now_v7().as_bytes(),
        event_type: util::event_type(n).to_string(),
        recorded_at: util::now_micros(),
        payload: payload(n),
    }
}

type VStream = varvedb::Stream<VEvent, 1024>;

fn open(dir: &std::path::Path) -> R<Varve> {
    Varve::with_config(dir, VarveConfig { max_dbs: 64, map_size: 64 << 30 }).map_err(err("varvedb open"))
}

/// W1: producers each with their own stream handle, 100-event batches.
pub fn w1(s: &Sizes) -> R<f64> {
    let dir = util::tempdir()?;
    let mut db = open(dir.path())?;
    let mut handles: Vec<VStream> =
        (0..s.w1_threads).map(|_| db.stream("events").map_err(err("varvedb stream"))).collect::<R<_>>()?;
    let requests = s.w1_events / s.w1_batch;
    let t = Instant::now();
    std::thread::scope(|scope| {
        let joins: Vec<_> = handles
            .iter_mut()
            .enumerate()
            .map(|(p, stream)| {
                let p = p as u64;
                scope.spawn(move || -> R<()> {
                    let mine: Vec<u64> = (0..s.w1_streams).filter(|k| k % s.w1_threads == p).collect();
                    for r in 0..share(requests, s.w1_threads, p) {
                        let i = (r as usize) % mine.len();
                        let events: Vec<VEvent> = (r * s.w1_batch..(r + 1) * s.w1_batch).map(event).collect();
                        stream
                            .append_batch_alloc(StreamId(mine[i]), &events)
                            .map_err(err("varvedb append"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        joins.into_iter().try_for_each(|h| h.join().map_err(|_| "producer panicked".to_string())?)
    })?;
    Ok(rate(s.w1_events, t.elapsed()))
}

/// W3: one client, one-event appends in a row (no version check: the API
/// has none).
pub fn w3(s: &Sizes) -> R<Lat> {
    let dir = util::tempdir()?;
    let mut db = open(dir.path())?;
    let mut stream: VStream = db.stream("events").map_err(err("varvedb stream"))?;
    let mut lats = Vec::new();
    let t = Instant::now();
    for v in 0..s.w3_events {
        let t0 = Instant::now();
        stream.append_alloc(StreamId(1), &event(v)).map_err(err("varvedb append"))?;
        lats.push(t0.elapsed());
    }
    Ok(lat(s.w3_events, t.elapsed(), lats))
}

/// W5 owned: the global log read through `GlobalReader` (which copies every
/// record), each payload deserialized.
pub fn w5(s: &Sizes, runs: usize) -> R<Vec<f64>> {
    let dir = util::tempdir()?;
    let mut db = open(dir.path())?;
    let mut stream: VStream = db.stream("events").map_err(err("varvedb stream"))?;
    let mut k = 0;
    while k < s.w5_events {
        let m = (s.w5_events - k).min(1_000);
        let events: Vec<VEvent> = (k..k + m).map(event).collect();
        stream.append_batch_alloc(StreamId((k / 1_000) % 1_000), &events).map_err(err("varvedb append"))?;
        k += m;
    }
    let reader = db.global_reader();
    let mut out = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let all =
            reader.iter_from(GlobalSequence(0)).and_then(|i| i.collect_all()).map_err(err("varvedb scan"))?;
        let mut n = 0u64;
        for e in &all {
            let mut buf = rkyv::util::AlignedVec::<16>::with_capacity(e.payload.len());
            buf.extend_from_slice(&e.payload);
            let ev = rkyv::from_bytes::<VEvent, rancor::Error>(&buf).map_err(err("rkyv"))?;
            black_box((&ev, e.stream_id, e.stream_seq, e.global_seq));
            n += 1;
        }
        out.push(rate(n, t.elapsed()));
        if n != s.w5_events {
            return Err(format!("scanned {n} events of {}", s.w5_events));
        }
    }
    Ok(out)
}
