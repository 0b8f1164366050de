//! W11, eventfold only: scavenging while appends go on. A log of
//! `w11_events` in `w11_streams` streams, every other stream soft-deleted;
//! one thread runs `Store::scavenge` while W2's appenders (one-event
//! appends with exact versions, `w2_threads` threads) append until it is
//! done. Figures: events removed per second, and the appends' rate and
//! latency during the scavenge (to set beside W2's).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventfold::{EventMetadata, ExpectedVersion, NewEvent, Store};

use crate::util::{self, Lat, R, Sizes, err, lat, payload, rate};

/// W11's figures: removals per second, and the appends' [`Lat`] meanwhile.
pub struct W11 {
    pub removed_per_s: f64,
    pub appends: Lat,
    pub removed: u64,
}

fn event(n: u64) -> NewEvent {
    NewEvent::json_bytes(util::event_type(n), payload(n))
}

pub fn w11(s: &Sizes) -> R<W11> {
    let dir = util::tempdir()?;
    let store = Store::builder(dir.path()).open().map_err(err("eventfold open"))?;
    let streams = s.w11_streams.max(2);
    let per_stream = (s.w11_events / streams).max(1);
    for k in 0..streams {
        let stream = format!("old-{k}");
        for chunk in (0..per_stream).step_by(100) {
            let n = 100.min(per_stream - chunk);
            store
                .append(&stream, ExpectedVersion::Any, (chunk..chunk + n).map(event))
                .map_err(err("eventfold fill"))?;
        }
        if k % 2 == 0 {
            store.delete_stream(&stream, "closed", EventMetadata::new()).map_err(err("delete"))?;
        }
    }
    let done = AtomicBool::new(false);
    let (removed, wall, latencies) = std::thread::scope(|scope| -> R<_> {
        let appenders: Vec<_> = (0..s.w2_threads)
            .map(|p| {
                let (store, done) = (&store, &done);
                scope.spawn(move || -> R<Vec<Duration>> {
                    let stream = format!("live-{p}");
                    let mut lats = Vec::new();
                    let mut version = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        store
                            .append(&stream, ExpectedVersion::Exact(version), [event(version)])
                            .map_err(err("eventfold append"))?;
                        lats.push(t0.elapsed());
                        version += 1;
                    }
                    Ok(lats)
                })
            })
            .collect();
        let t = Instant::now();
        let report = store.scavenge();
        let wall = t.elapsed();
        done.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for h in appenders {
            all.extend(h.join().map_err(|_| "appender panicked".to_string())??);
        }
        Ok((report.map_err(err("scavenge"))?.events_removed, wall, all))
    })?;
    let expected = per_stream * streams.div_ceil(2);
    if removed != expected {
        return Err(format!("the scavenge removed {removed} events, {expected} were deleted"));
    }
    let report = store.verify().map_err(err("verify"))?;
    if !report.is_ok() {
        return Err(format!("verify after the scavenge: {:?}", report.faults.first()));
    }
    let appended = latencies.len() as u64;
    Ok(W11 { removed_per_s: rate(removed, wall), appends: lat(appended, wall, latencies), removed })
}
