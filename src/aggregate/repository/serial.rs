//! One command at a time per aggregate, across every [`Repository`] of one
//! open store, and the pause between two attempts after a conflict.
//!
//! [`Repository::execute`] takes its aggregate's turn before it loads and
//! keeps it until it has appended (or given up), so the next command on the
//! same aggregate waits and then decides on a state that includes the one
//! before. Commands of one process then never conflict with each other;
//! what is left are writes that do not go through a repository (plain
//! appends, the protocol node's clients, imports), which `execute` retries
//! after a pause from [`Backoff`].
//!
//! The table of turns lives in the store's per-store slot
//! ([`Store::extension`](crate::store::Store)), so clones of one `Store`, and
//! repositories of different aggregate types on one stream, share it. An
//! entry exists only while a command holds or waits for its aggregate's
//! turn: the table does not grow with every aggregate ever touched.
//!
//! [`Repository`]: super::Repository
//! [`Repository::execute`]: super::Repository::execute

#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

/// Turns of the aggregates that commands hold or wait for, by stream id.
#[derive(Debug, Default)]
pub(super) struct Turns {
    streams: Mutex<HashMap<String, Arc<Queue>>>,
}

/// The commands waiting for one aggregate, served in the order they came.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    /// The ticket the next command to come gets.
    next: u64,
    /// The ticket whose turn it is.
    serving: u64,
    /// The thread whose turn it is, and how many turns it took (a command
    /// handler that executes a command on its own aggregate nests a turn).
    holder: Option<(ThreadId, u32)>,
}

/// The locks here guard a few counters and never run a caller's code, so a
/// poisoned one still holds consistent data.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Turns {
    /// Waits until it is this command's turn on `stream`: after every
    /// command that came before it, in this process, has finished. A thread
    /// that already holds the turn (a handler executing a command on its own
    /// aggregate) gets it again at once instead of waiting for itself.
    pub(super) fn wait_turn(self: &Arc<Self>, stream: &str) -> Turn {
        let queue = {
            let mut streams = lock(&self.streams);
            match streams.get(stream) {
                Some(queue) => queue.clone(),
                None => {
                    let queue = Arc::new(Queue::default());
                    streams.insert(stream.to_string(), queue.clone());
                    queue
                }
            }
        };
        queue.enter();
        Turn { turns: self.clone(), stream: stream.to_string(), queue: Some(queue) }
    }

    /// How many aggregates have a command holding or waiting for their turn.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.streams).len()
    }

    /// How many commands hold or wait for the turn of `stream`.
    #[cfg(test)]
    pub(super) fn queued(&self, stream: &str) -> u64 {
        lock(&self.streams).get(stream).map_or(0, |q| {
            let s = lock(&q.state);
            s.next.wrapping_sub(s.serving)
        })
    }
}

impl Queue {
    fn enter(&self) {
        let me = std::thread::current().id();
        let mut s = lock(&self.state);
        if let Some((holder, depth)) = &mut s.holder
            && *holder == me
        {
            *depth = depth.saturating_add(1);
            return;
        }
        let ticket = s.next;
        s.next = s.next.wrapping_add(1);
        while s.serving != ticket {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.holder = Some((me, 1));
    }

    fn leave(&self) {
        let mut s = lock(&self.state);
        if let Some((_, depth)) = &mut s.holder
            && *depth > 1
        {
            *depth = depth.saturating_sub(1);
            return;
        }
        s.holder = None;
        s.serving = s.serving.wrapping_add(1);
        drop(s);
        // Every waiter checks whether its ticket is served; one of them is.
        self.changed.notify_all();
    }
}

/// A command's turn on its aggregate, given to the next command when
/// dropped (also when the command's handler panics).
#[derive(Debug)]
pub(super) struct Turn {
    turns: Arc<Turns>,
    stream: String,
    queue: Option<Arc<Queue>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(queue) = self.queue.take() else { return };
        queue.leave();
        let mut streams = lock(&self.turns.streams);
        // Every clone of a queue's `Arc` is made, and dropped, under the
        // table's lock, so the count is exact here: 2 is the table's and
        // this turn's, so no one else holds or waits for this aggregate.
        if Arc::strong_count(&queue) == 2 {
            streams.remove(&self.stream);
        }
        drop(queue);
        drop(streams);
    }
}

/// The first pause after a conflict.
pub(super) const BACKOFF_FIRST: Duration = Duration::from_millis(1);
/// The longest pause between two attempts.
pub(super) const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Pauses between the attempts of one command: exponential (1 ms, doubling
/// up to 100 ms) with full jitter (each pause is uniform between zero and
/// that bound), so writers that met each other do not meet again in step.
#[derive(Debug)]
pub(super) struct Backoff {
    bound: Duration,
    rng: u64,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        // A seed of its own for each command: std's hasher keys are random
        // per process and differ per thread; the thread and the moment are
        // mixed in too.
        let seed = std::collections::hash_map::RandomState::new()
            .hash_one((std::thread::current().id(), std::time::Instant::now()));
        Backoff { bound: BACKOFF_FIRST, rng: seed }
    }

    /// The next pause.
    pub(super) fn next_pause(&mut self) -> Duration {
        let bound = self.bound;
        self.bound = bound.saturating_mul(2).min(BACKOFF_MAX);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        let jittered = self.next_random().checked_rem(nanos.saturating_add(1)).unwrap_or(0);
        Duration::from_nanos(jittered)
    }

    /// splitmix64.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49EB_133A_1CEB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_bound_and_stay_within_it() {
        let mut b = Backoff::new();
        let mut bound = BACKOFF_FIRST;
        for _ in 0..20 {
            assert!(b.next_pause() <= bound);
            bound = bound.saturating_mul(2).min(BACKOFF_MAX);
        }
        // Full jitter: pauses vary (20 draws at the 100 ms bound are not all equal).
        let pauses: Vec<_> = (0..20).map(|_| b.next_pause()).collect();
        assert!(pauses.iter().any(|p| *p != pauses[0]), "{pauses:?}");
    }

    /// Guards the table's size: an entry is removed when its last command
    /// leaves, so the table does not grow with every aggregate ever used,
    /// and a nested turn of the holder's thread does not wait for itself.
    #[test]
    fn an_entry_lives_while_a_command_holds_or_waits() {
        let turns = Arc::new(Turns::default());
        let a = turns.wait_turn("a-1");
        let b = turns.wait_turn("b-1");
        assert_eq!(turns.len(), 2);
        let nested = turns.wait_turn("a-1");
        assert_eq!(turns.queued("a-1"), 1);
        drop(nested);
        assert_eq!(turns.len(), 2);
        drop(a);
        assert_eq!((turns.len(), turns.queued("a-1")), (1, 0));
        drop(b);
        assert_eq!(turns.len(), 0);
    }
}
