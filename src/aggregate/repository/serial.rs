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
//! [`Repository::execute_async`] (feature `async`) takes a ticket in the
//! same queue and awaits it: the task leaves its `Waker` with its ticket,
//! and the command that leaves wakes the task whose ticket comes next.
//! Dropping a future that waits gives up its ticket, so the queue skips it
//! and does not stall. The pause between two attempts of an async command
//! is a [`Sleep`]: one timer thread per process, started on the first
//! pause, wakes the tasks whose pause is over (the library depends on no
//! runtime, so it cannot use one's timer).
//!
//! [`Repository`]: super::Repository
//! [`Repository::execute`]: super::Repository::execute
//! [`Repository::execute_async`]: super::Repository::execute_async

#![deny(clippy::arithmetic_side_effects)]

use std::collections::{BTreeSet, HashMap};
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
    /// The thread whose turn it is (`None`: a task, which never nests),
    /// and how many turns it took (a command handler that executes a
    /// command on its own aggregate nests a turn).
    holder: Option<(Option<ThreadId>, u32)>,
    /// Tickets whose futures were dropped while waiting: skipped when
    /// their turn comes.
    abandoned: BTreeSet<u64>,
    /// Tasks waiting for their ticket.
    #[cfg(feature = "async")]
    wakers: Vec<(u64, std::task::Waker)>,
}

impl QueueState {
    /// Ends the holder's turn and serves the next ticket not given up;
    /// returns the waker of the task holding that ticket, if a task does.
    fn pass_on(&mut self) -> Option<std::task::Waker> {
        self.holder = None;
        self.serving = self.serving.wrapping_add(1);
        while self.abandoned.remove(&self.serving) {
            self.serving = self.serving.wrapping_add(1);
        }
        #[cfg(feature = "async")]
        {
            let serving = self.serving;
            let at = self.wakers.iter().position(|(ticket, _)| *ticket == serving)?;
            Some(self.wakers.swap_remove(at).1)
        }
        #[cfg(not(feature = "async"))]
        None
    }

    /// Takes a ticket.
    fn take_ticket(&mut self) -> u64 {
        let ticket = self.next;
        self.next = self.next.wrapping_add(1);
        ticket
    }
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
        let queue = self.queue_of(stream);
        queue.enter();
        Turn { turns: self.clone(), stream: stream.to_string(), queue: Some(queue) }
    }

    /// A ticket for the turn of `stream`, taken now (so commands are served
    /// in the order they came), to be awaited.
    #[cfg(feature = "async")]
    pub(super) fn turn_async(self: &Arc<Self>, stream: &str) -> TurnFuture {
        let queue = self.queue_of(stream);
        let ticket = lock(&queue.state).take_ticket();
        TurnFuture {
            turn: Some(Turn { turns: self.clone(), stream: stream.to_string(), queue: Some(queue) }),
            ticket,
        }
    }

    /// The queue of `stream`, made if no command holds or waits for it.
    fn queue_of(&self, stream: &str) -> Arc<Queue> {
        let mut streams = lock(&self.streams);
        match streams.get(stream) {
            Some(queue) => queue.clone(),
            None => {
                let queue = Arc::new(Queue::default());
                streams.insert(stream.to_string(), queue.clone());
                queue
            }
        }
    }

    /// Drops a command's hold on `queue`, and the table's entry with the
    /// last one.
    fn release(&self, stream: &str, queue: Arc<Queue>) {
        let mut streams = lock(&self.streams);
        // Every clone of a queue's `Arc` is made, and dropped, under the
        // table's lock, so the count is exact here: 2 is the table's and
        // this command's, so no one else holds or waits for this aggregate.
        if Arc::strong_count(&queue) == 2 {
            streams.remove(stream);
        }
        drop(queue);
        drop(streams);
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
            && *holder == Some(me)
        {
            *depth = depth.saturating_add(1);
            return;
        }
        let ticket = s.take_ticket();
        while s.serving != ticket {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.holder = Some((Some(me), 1));
    }

    fn leave(&self) {
        let mut s = lock(&self.state);
        if let Some((_, depth)) = &mut s.holder
            && *depth > 1
        {
            *depth = depth.saturating_sub(1);
            return;
        }
        let task = s.pass_on();
        drop(s);
        // Every waiting thread checks whether its ticket is served; one of
        // them is, unless a task's is.
        self.changed.notify_all();
        if let Some(task) = task {
            task.wake();
        }
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
        self.turns.release(&self.stream, queue);
    }
}

/// A ticket for an aggregate's turn, awaited by
/// [`Repository::execute_async`](super::Repository::execute_async): ready
/// with the [`Turn`] when the ticket is served. Dropped before that, it
/// gives the ticket up (or, if its turn had come, passes it on).
#[cfg(feature = "async")]
#[derive(Debug)]
pub(super) struct TurnFuture {
    /// The turn to hand out; its queue holds the ticket.
    turn: Option<Turn>,
    ticket: u64,
}

#[cfg(feature = "async")]
impl std::future::Future for TurnFuture {
    type Output = Turn;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Turn> {
        use std::task::Poll;
        let ticket = self.ticket;
        // Polled again after it was ready: nothing more will come.
        let Some(queue) = self.turn.as_ref().and_then(|t| t.queue.clone()) else { return Poll::Pending };
        let mut s = lock(&queue.state);
        if s.serving == ticket {
            s.holder = Some((None, 1));
            s.wakers.retain(|(t, _)| *t != ticket);
            drop(s);
            return match self.turn.take() {
                Some(turn) => Poll::Ready(turn),
                None => Poll::Pending,
            };
        }
        match s.wakers.iter_mut().find(|(t, _)| *t == ticket) {
            Some((_, w)) if w.will_wake(cx.waker()) => {}
            Some((_, w)) => *w = cx.waker().clone(),
            None => s.wakers.push((ticket, cx.waker().clone())),
        }
        Poll::Pending
    }
}

#[cfg(feature = "async")]
impl Drop for TurnFuture {
    fn drop(&mut self) {
        let Some(mut turn) = self.turn.take() else { return };
        let Some(queue) = turn.queue.take() else { return };
        let mut s = lock(&queue.state);
        s.wakers.retain(|(t, _)| *t != self.ticket);
        let task = if s.serving == self.ticket {
            // Its turn came but was never taken: the next command's now.
            let task = s.pass_on();
            drop(s);
            queue.changed.notify_all();
            task
        } else {
            s.abandoned.insert(self.ticket);
            drop(s);
            None
        };
        if let Some(task) = task {
            task.wake();
        }
        turn.turns.release(&turn.stream, queue);
    }
}

/// A pause of an async command between two attempts: ready once its
/// instant has passed, woken by the process's backoff timer thread.
#[cfg(feature = "async")]
#[derive(Debug)]
pub(super) struct Sleep {
    until: std::time::Instant,
}

#[cfg(feature = "async")]
impl Sleep {
    /// A pause of `pause`, from now. Starts the timer thread on first use.
    pub(super) fn new(pause: Duration) -> crate::vocab::Result<Sleep> {
        static STARTED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        let started = STARTED.get_or_init(|| {
            std::thread::Builder::new()
                .name("eventfold-backoff".into())
                .spawn(|| TIMER.run())
                .map(drop)
                .map_err(|e| e.to_string())
        });
        if let Err(reason) = started {
            return Err(crate::vocab::Error::io(
                "eventfold-backoff thread",
                std::io::Error::other(reason.clone()),
            ));
        }
        let now = std::time::Instant::now();
        Ok(Sleep { until: now.checked_add(pause).unwrap_or(now) })
    }
}

#[cfg(feature = "async")]
impl std::future::Future for Sleep {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if std::time::Instant::now() >= self.until {
            return std::task::Poll::Ready(());
        }
        lock(&TIMER.due).push((self.until, cx.waker().clone()));
        TIMER.changed.notify_one();
        std::task::Poll::Pending
    }
}

/// The instants async commands pause until, and the wakers of their tasks.
#[cfg(feature = "async")]
struct Timer {
    due: Mutex<Vec<(std::time::Instant, std::task::Waker)>>,
    changed: Condvar,
}

#[cfg(feature = "async")]
static TIMER: Timer = Timer { due: Mutex::new(Vec::new()), changed: Condvar::new() };

#[cfg(feature = "async")]
impl Timer {
    /// The timer thread: wakes every task whose instant has passed, then
    /// sleeps until the next instant or a new pause. It idles on a
    /// condition variable when no pause is pending.
    fn run(&self) {
        let mut due = lock(&self.due);
        loop {
            let now = std::time::Instant::now();
            let mut woken = Vec::new();
            due.retain(|(at, w)| {
                let over = *at <= now;
                if over {
                    woken.push(w.clone());
                }
                !over
            });
            if !woken.is_empty() {
                // Outside the lock: a waker may poll the task at once.
                drop(due);
                woken.into_iter().for_each(std::task::Waker::wake);
                due = lock(&self.due);
                continue;
            }
            due = match due.iter().map(|(at, _)| *at).min() {
                None => self.changed.wait(due).unwrap_or_else(PoisonError::into_inner),
                Some(at) => match self.changed.wait_timeout(due, at.saturating_duration_since(now)) {
                    Ok((due, _)) => due,
                    Err(p) => p.into_inner().0,
                },
            };
        }
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

    /// A waker that counts its wake-ups.
    #[cfg(feature = "async")]
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    #[cfg(feature = "async")]
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Guards the queue against futures dropped while they wait: one whose
    /// ticket is not served yet is skipped, one whose turn came but was
    /// never taken passes it on; either way the next waiter is woken and
    /// gets the turn, and the table empties.
    #[cfg(feature = "async")]
    #[test]
    fn a_dropped_waiting_future_gives_its_place_up() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let turns = Arc::new(Turns::default());
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || count.0.load(std::sync::atomic::Ordering::SeqCst);

        let held = turns.wait_turn("a-1");
        let mut skipped = Box::pin(turns.turn_async("a-1"));
        let mut passed = Box::pin(turns.turn_async("a-1"));
        let mut last = Box::pin(turns.turn_async("a-1"));
        for f in [&mut skipped, &mut passed, &mut last] {
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        drop(skipped);
        drop(held);
        assert_eq!(woken(), 1, "the ticket after the dropped one is served");
        // `passed`'s turn came; dropped untaken, it goes to `last`.
        drop(passed);
        assert_eq!(woken(), 2);
        let Poll::Ready(turn) = last.as_mut().poll(&mut cx) else {
            panic!("the last waiter did not get the turn")
        };
        assert_eq!(turns.queued("a-1"), 1);
        drop(turn);
        drop(last);
        assert_eq!(turns.len(), 0);
    }
}
