//! Folding a stream's events into an aggregate: on the caller's thread, or,
//! for long replays, read and decoded by several threads and applied in
//! order on the caller's.
//!
//! Loading a long stream is bound by memory latency: in an interleaved log
//! nearly every event sits on a leaf page of its own, cold in the cache, and
//! the JSON decoding comes on top. Both parallelise; only `apply` has to be
//! sequential. Events are immutable and versions are never removed, so
//! reading version ranges in separate read transactions yields exactly the
//! events one transaction would (the target version is fixed before).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Aggregate, LoadReport, Repository};
use crate::read::ReadStream;
use crate::vocab::{Error, Result};

/// Versions one replay thread reads and decodes at a time.
const CHUNK: u64 = 2048;
/// Replays shorter than this stay on the caller's thread: starting threads
/// costs more than it saves.
pub(super) const PARALLEL_MIN_EVENTS: u64 = 4 * CHUNK;

/// A decoded chunk: each event with whether an upcaster ran.
type Decoded<E> = Result<Vec<(E, bool)>>;

impl<A: Aggregate> Repository<A> {
    /// Applies versions `from..=target` of `stream` to `state`.
    pub(super) fn fold_events(
        &self,
        stream: &str,
        from: u64,
        target: u64,
        state: &mut A,
        report: &mut LoadReport,
    ) -> Result<()> {
        if from > target {
            return Ok(());
        }
        let threads = self.replay_threads.max(1);
        if threads == 1 || target.saturating_sub(from).saturating_add(1) < PARALLEL_MIN_EVENTS {
            return self.fold_sequential(stream, from, target, state, report);
        }
        self.fold_parallel(stream, from, target, threads, state, report)
    }

    /// Decodes straight from the borrowed records (no owned copy per event),
    /// renewing the read transaction every `read_batch` events so a long
    /// replay does not pin LMDB pages.
    fn fold_sequential(
        &self,
        stream: &str,
        from: u64,
        target: u64,
        state: &mut A,
        report: &mut LoadReport,
    ) -> Result<()> {
        let mut next = from;
        while next <= target {
            let last = target.min(next.saturating_add((self.read_batch as u64).saturating_sub(1)));
            apply_decoded(self.decode_range(stream, next, last)?, state, report);
            // `last` is `u64::MAX` only when it is the target: done.
            let Some(after) = last.checked_add(1) else { break };
            next = after;
        }
        Ok(())
    }

    /// Threads take chunks in version order and send each decoded chunk
    /// back; the caller's thread applies them in order. The channel is
    /// bounded, so decoded events waiting to be applied stay a few chunks.
    fn fold_parallel(
        &self,
        stream: &str,
        from: u64,
        target: u64,
        threads: usize,
        state: &mut A,
        report: &mut LoadReport,
    ) -> Result<()> {
        let chunks: Vec<(u64, u64)> = (from..=target)
            .step_by(CHUNK as usize)
            .map(|a| (a, target.min(a.saturating_add(CHUNK - 1))))
            .collect();
        let next_chunk = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let (tx, rx) = crossbeam_channel::bounded::<(usize, Decoded<A::Event>)>(threads);
            for _ in 0..threads.min(chunks.len()) {
                let (tx, chunks, next_chunk) = (tx.clone(), &chunks, &next_chunk);
                scope.spawn(move || {
                    loop {
                        let i = next_chunk.fetch_add(1, Ordering::Relaxed);
                        let Some(&(a, b)) = chunks.get(i) else { break };
                        // The receiver is gone when the load already failed.
                        if tx.send((i, self.decode_range(stream, a, b))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut waiting = BTreeMap::new();
            let mut want = 0usize;
            for (i, chunk) in &rx {
                waiting.insert(i, chunk);
                while let Some(chunk) = waiting.remove(&want) {
                    apply_decoded(chunk?, state, report);
                    // At most the number of chunks.
                    want = want.saturating_add(1);
                }
            }
            if want != chunks.len() {
                return Err(Error::internal(format!(
                    "replaying stream {stream:?}: {} of {} chunks arrived",
                    want,
                    chunks.len()
                )));
            }
            Ok(())
        })
    }

    /// Versions `first..=last` of `stream`, decoded and upcasted, read in one
    /// transaction.
    fn decode_range(&self, stream: &str, first: u64, last: u64) -> Decoded<A::Event> {
        // Callers pass `first <= last`.
        let n = last.saturating_sub(first).saturating_add(1) as usize;
        let mut out = Vec::with_capacity(n);
        let reader = self.store.read()?;
        for e in reader.stream(stream, ReadStream::forward().from_version(first).limit(n))? {
            let e = e?;
            out.push(self.decode_parts(
                stream,
                e.position(),
                e.event_type(),
                e.schema_version(),
                e.content_type(),
                e.payload(),
            )?);
        }
        if out.len() != n {
            // Versions up to the target exist (checked before) and are never
            // removed, so a short read means the index is damaged.
            return Err(Error::index(
                "stream_index",
                format!("stream {stream:?} yielded {} of versions {first}..={last}", out.len()),
            ));
        }
        Ok(out)
    }
}

/// Applies decoded events in order and counts them in the report.
fn apply_decoded<A: Aggregate>(events: Vec<(A::Event, bool)>, state: &mut A, report: &mut LoadReport) {
    for (event, upcast) in events {
        state.apply(&event);
        report.events_replayed = report.events_replayed.saturating_add(1);
        report.events_upcast = report.events_upcast.saturating_add(u64::from(upcast));
    }
}
