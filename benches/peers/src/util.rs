//! Shared pieces: sizes, payloads, latency percentiles, memory readings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A harness result: the figure, or why it could not be measured.
pub type R<T> = Result<T, String>;

/// Turns any displayable error into the harness's error text.
pub fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// The sizes of every workload (the sizes, scaled or tiny).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sizes {
    pub w1_events: u64,
    pub w1_streams: u64,
    pub w1_batch: u64,
    pub w1_threads: u64,
    /// 1: eventfold's W1 and W1t commit with `Durability::NoSync`, so that
    /// the writer's work is measured rather than the disk (0: durable).
    pub w1_nosync: u64,
    pub w2_events: u64,
    pub w2_threads: u64,
    pub w2_streams: u64,
    /// W2a: tasks on a 2-thread tokio runtime (W2's events and streams).
    pub w2a_tasks: u64,
    pub w3_events: u64,
    pub w4_aggregate: u64,
    pub w4_others: u64,
    pub w4_tail: u64,
    pub w5_events: u64,
    pub w8_small: u64,
    pub w8_large: u64,
    /// W9: events in the log; one in `w9_every` is in the rare category.
    pub w9_events: u64,
    pub w9_every: u64,
    /// W10: enrolment decisions, made by `w10_clients` threads.
    pub w10_attempts: u64,
    pub w10_clients: u64,
    pub w10_courses: u64,
    pub w10_students: u64,
    /// Seats of every course.
    pub w10_capacity: u64,
    /// Courses a student may take at most.
    pub w10_max_courses: u64,
    /// W11: events in the log before the scavenge, in `w11_streams`
    /// streams, of which every other one is deleted.
    pub w11_events: u64,
    pub w11_streams: u64,
}

impl Sizes {
    /// The sizes of the issue, multiplied by `scale` (threads, streams and
    /// request sizes stay as they are).
    pub fn full(scale: f64) -> Sizes {
        let s = |n: u64| ((n as f64 * scale).round() as u64).max(1);
        Sizes {
            w1_events: s(1_000_000),
            w1_streams: 1_000,
            w1_batch: 100,
            w1_threads: 4,
            w1_nosync: 0,
            w2_events: s(200_000),
            w2_threads: 64,
            w2_streams: 10_000,
            w2a_tasks: 1_000,
            w3_events: s(5_000),
            w4_aggregate: s(100_000),
            w4_others: s(900_000),
            w4_tail: 1_000.min(s(100_000) / 2),
            w5_events: s(2_000_000),
            w8_small: s(2_000_000),
            w8_large: s(8_000_000),
            w9_events: s(10_000_000),
            w9_every: 100,
            w10_attempts: s(100_000),
            w10_clients: 16,
            w10_courses: s(2_000),
            w10_students: s(12_500),
            w10_capacity: 40,
            w10_max_courses: 6,
            w11_events: s(1_000_000),
            w11_streams: 1_000,
        }
    }

    /// Sets one size by its name (`w2_events=6400`).
    pub fn set(&mut self, assignment: &str) -> R<()> {
        let (key, value) = assignment.split_once('=').ok_or("--set needs NAME=COUNT, e.g. w2_events=6400")?;
        let value: u64 = value.trim().parse().map_err(err("--set count"))?;
        let mut v = serde_json::to_value(&*self).map_err(err("sizes"))?;
        match v.get_mut(key.trim()) {
            Some(slot) => *slot = value.into(),
            None => return Err(format!("no size called {key:?}")),
        }
        *self = serde_json::from_value(v).map_err(err("sizes"))?;
        Ok(())
    }

    /// Tiny sizes: every workload runs, in seconds.
    pub fn quick() -> Sizes {
        Sizes {
            w1_events: 4_000,
            w1_streams: 40,
            w1_batch: 100,
            w1_threads: 4,
            w1_nosync: 0,
            w2_events: 640,
            w2_threads: 64,
            w2_streams: 1_000,
            w2a_tasks: 1_000,
            w3_events: 50,
            w4_aggregate: 1_000,
            w4_others: 4_000,
            w4_tail: 100,
            w5_events: 20_000,
            w8_small: 20_000,
            w8_large: 80_000,
            w9_events: 20_000,
            w9_every: 100,
            w10_attempts: 400,
            w10_clients: 16,
            w10_courses: 8,
            w10_students: 50,
            w10_capacity: 40,
            w10_max_courses: 6,
            w11_events: 10_000,
            w11_streams: 20,
        }
    }
}

/// The JSON payload of every event (~250 bytes), as stored by all peers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub amount: u64,
    pub reference: String,
    pub note: String,
}

/// The payload of event number `n`: 250 bytes of JSON that parse as
/// [`Payload`], written directly (the harness's own cost per event stays
/// small next to the stores').
pub fn payload(n: u64) -> Vec<u8> {
    use std::io::Write;
    const SIZE: usize = 250;
    let mut v = Vec::with_capacity(SIZE);
    let _ = write!(v, "{{\"amount\":{},\"reference\":\"ref-{n:016}\",\"note\":\"", n % 10_000);
    v.resize(SIZE.saturating_sub(2).max(v.len()), b'x');
    v.extend_from_slice(b"\"}");
    v
}

/// The event type of event number `n`.
pub fn event_type(n: u64) -> &'static str {
    if n.is_multiple_of(3) { "Withdrawn" } else { "Deposited" }
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Events per second of `n` events in `d`.
pub fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Throughput and latency of a write workload.
#[derive(Debug, Clone, Copy)]
pub struct Lat {
    /// Events per second over the whole run.
    pub rate: f64,
    /// Median request latency, µs.
    pub p50: f64,
    /// 99th percentile request latency, µs.
    pub p99: f64,
}

/// The `p` quantile (0..=1) of `v`, which is sorted in place, in µs.
pub fn quantile_us(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)].as_secs_f64() * 1e6
}

/// Wake latency (p50, p99 in µs) of a subscriber: for each commit, from
/// the moment the commit ended (`marks`: the head after each commit and
/// when its commit hook ran, in commit order) to the subscriber holding
/// the commit's first event (`got`: position and when it was held). The
/// first event is what a wake-up delivers; the later events of a large
/// commit follow at the subscriber's reading speed, which is not a wake-up.
pub fn wake_us(got: &[(u64, Duration)], marks: &[(u64, Duration)]) -> (f64, f64) {
    let mut first: Vec<Option<Duration>> = vec![None; marks.len()];
    for &(pos, at) in got {
        let i = marks.partition_point(|&(h, _)| h < pos);
        if let (Some(slot), Some(&(_, seen))) = (first.get_mut(i), marks.get(i)) {
            let wake = at.saturating_sub(seen);
            if slot.is_none_or(|w| wake < w) {
                *slot = Some(wake);
            }
        }
    }
    let mut wake: Vec<Duration> = first.into_iter().flatten().collect();
    (quantile_us(&mut wake, 0.5), quantile_us(&mut wake, 0.99))
}

/// Builds a [`Lat`] from per-request latencies and the wall time.
pub fn lat(events: u64, wall: Duration, mut latencies: Vec<Duration>) -> Lat {
    Lat {
        rate: rate(events, wall),
        p50: quantile_us(&mut latencies, 0.5),
        p99: quantile_us(&mut latencies, 0.99),
    }
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `RssAnon`, …).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The process's OS threads now (`Threads` of `/proc/self/status`).
pub fn os_threads() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// The median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Splits `0..n` into `parts` near-equal counts.
pub fn share(n: u64, parts: u64, i: u64) -> u64 {
    n / parts + u64::from(i < n % parts)
}

/// A fresh temporary directory.
pub fn tempdir() -> R<tempfile::TempDir> {
    tempfile::Builder::new().prefix("eventfold-bench").tempdir().map_err(err("temp dir"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_are_250_bytes_of_valid_json() {
        for n in [0, 7, 9_999, 123_456_789] {
            let p = super::payload(n);
            assert_eq!(p.len(), 250);
            let parsed: super::Payload = serde_json::from_slice(&p).expect("valid JSON");
            assert_eq!(parsed.amount, n % 10_000);
        }
    }
}
