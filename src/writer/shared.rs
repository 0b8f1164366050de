//! State the writer thread shares with store handles: the head position,
//! counters for `stats()`, the poison flag and the subscriber notifier.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::Waker;
use std::time::Duration;

#[cfg(feature = "async")]
use crossbeam_channel::TryRecvError;
use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, Sender, TrySendError};

/// Counters and flags shared between the writer and the handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Position of the last committed event.
    pub head: AtomicU64,
    /// Position of the last event known to be on disk: equal to `head`
    /// under `Durability::Sync`; behind it by up to one commit under
    /// `Relaxed`, and until the next sync under `NoSync`. Derived state
    /// (read models, durable consumers) never goes past it.
    pub durable: AtomicU64,
    /// A follower has asked the writer for a sync that has not happened yet;
    /// keeps followers from flooding the queue with requests.
    pub durable_requested: AtomicBool,
    pub commits: AtomicU64,
    pub batches: AtomicU64,
    pub requests: AtomicU64,
    pub rejected: AtomicU64,
    pub events_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub max_batch_requests: AtomicU64,
    pub poison: OnceLock<String>,
    pub notifier: Notifier,
    /// Tasks waiting for room in the writer's queue.
    pub queue_space: QueueSpace,
}

impl Shared {
    pub(crate) fn poisoned(&self) -> Option<&str> {
        self.poison.get().map(String::as_str)
    }

    pub(crate) fn poison(&self, reason: impl Into<String>) {
        let _ = self.poison.set(reason.into());
    }

    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// Wakes subscribers after each commit.
///
/// Each subscriber owns a bounded(1) channel; the writer `try_send`s the new
/// head and moves on when the slot is full (the subscriber has a wake-up
/// pending already and will read the log up to whatever the head is then).
/// So a slow subscriber never blocks the writer, and with no subscribers the
/// writer pays one relaxed atomic load. A subscriber registered through
/// [`follow`](Notifier::follow) also has a [`WakerSlot`]: a send that fills
/// its channel wakes the task that waits on it (an async `Stream`).
#[derive(Debug)]
pub(crate) struct Notifier {
    followers: Arc<Followers>,
}

#[derive(Debug)]
struct Followers {
    count: AtomicUsize,
    /// `None` once closed: a subscriber that registers after the store
    /// closed gets a channel that is already disconnected.
    list: Mutex<Option<Vec<Follower>>>,
}

#[derive(Debug)]
struct Follower {
    tx: Sender<u64>,
    /// The task to wake with the channel, for a [`CommitWakeups`].
    waker: Option<Arc<WakerSlot>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            followers: Arc::new(Followers { count: AtomicUsize::new(0), list: Mutex::new(Some(Vec::new())) }),
        }
    }
}

impl Followers {
    fn lock(&self) -> MutexGuard<'_, Option<Vec<Follower>>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, waker: Option<Arc<WakerSlot>>) -> Receiver<u64> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut guard = self.lock();
        if let Some(list) = guard.as_mut() {
            list.push(Follower { tx, waker });
            self.count.store(list.len(), Ordering::Release);
        }
        rx
    }
}

impl Notifier {
    /// Registers a new subscriber and returns its wake-up channel, for a
    /// thread that selects on it among other channels. The writer forgets
    /// the channel at the first commit after it is dropped.
    /// After [`close`](Notifier::close) the channel is disconnected at once,
    /// so the subscriber ends instead of waiting for a commit that cannot come.
    pub(crate) fn register(&self) -> Receiver<u64> {
        self.followers.add(None)
    }

    /// Registers a new subscriber that a thread can block on or a task can
    /// poll, and that is unregistered as soon as it is dropped. Disconnected
    /// at once after [`close`](Notifier::close), as [`register`](Notifier::register).
    pub(crate) fn follow(&self) -> CommitWakeups {
        let waker = Arc::new(WakerSlot::default());
        let rx = self.followers.add(Some(waker.clone()));
        CommitWakeups { rx, waker, followers: Arc::downgrade(&self.followers) }
    }

    /// Tells every live subscriber that the head moved to `head`.
    pub(crate) fn notify(&self, head: u64) {
        let f = &self.followers;
        if f.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut woken = Vec::new();
        {
            let mut guard = f.lock();
            if let Some(list) = guard.as_mut() {
                list.retain(|follower| match follower.tx.try_send(head) {
                    Ok(()) => {
                        woken.extend(follower.waker.as_ref().and_then(|w| w.take()));
                        true
                    }
                    // A wake-up is pending: its task was woken when it was sent.
                    Err(TrySendError::Full(_)) => true,
                    Err(TrySendError::Disconnected(_)) => false,
                });
                f.count.store(list.len(), Ordering::Release);
            }
        }
        // Outside the lock: a waker may run code that drops a subscription.
        woken.into_iter().for_each(Waker::wake);
    }

    /// Drops every subscriber's sender, so blocked subscribers wake and see
    /// the end, and wakes every waiting task. Later registrations get a
    /// disconnected channel.
    pub(crate) fn close(&self) {
        let f = &self.followers;
        let list = f.lock().take();
        f.count.store(0, Ordering::Release);
        for follower in list.into_iter().flatten() {
            drop(follower.tx);
            if let Some(waker) = follower.waker.and_then(|w| w.take()) {
                waker.wake();
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.followers.count.load(Ordering::Acquire)
    }
}

/// Where a task waiting for a commit leaves its `Waker`.
#[derive(Debug, Default)]
pub(crate) struct WakerSlot {
    waker: Mutex<Option<Waker>>,
}

impl WakerSlot {
    fn lock(&self) -> MutexGuard<'_, Option<Waker>> {
        self.waker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `waker` (in place of an earlier one), to be woken by the next
    /// [`take`](WakerSlot::take).
    #[cfg(feature = "async")]
    fn register(&self, waker: &Waker) {
        let mut kept = self.lock();
        match kept.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *kept = Some(waker.clone()),
        }
    }

    /// The waker left here, if any; the caller wakes it.
    fn take(&self) -> Option<Waker> {
        self.lock().take()
    }
}

/// One subscriber's wake-ups, registered by [`Notifier::follow`]. The
/// wake-up carries no data beyond the head at the time; it says "read the
/// log again". Dropping it unregisters the subscriber at once.
#[derive(Debug)]
pub(crate) struct CommitWakeups {
    rx: Receiver<u64>,
    waker: Arc<WakerSlot>,
    followers: Weak<Followers>,
}

impl CommitWakeups {
    /// Blocks for the next wake-up; `Err` once the store has closed.
    pub(crate) fn recv(&self) -> Result<u64, RecvError> {
        self.rx.recv()
    }

    /// Blocks for the next wake-up, at most `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<u64, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// `Ready(Some(head))` when a commit happened since the last wake-up,
    /// `Ready(None)` once the store has closed, otherwise `Pending` with
    /// the task's waker kept, to be woken by the next commit or the close.
    ///
    /// The waker is kept *before* the channel is looked at: a commit either
    /// left its wake-up in the channel before the look, or it finds the
    /// waker and wakes it. So no commit is missed between the two.
    #[cfg(feature = "async")]
    pub(crate) fn poll_wake(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<u64>> {
        use std::task::Poll;
        self.waker.register(cx.waker());
        match self.rx.try_recv() {
            Ok(head) => Poll::Ready(Some(head)),
            Err(TryRecvError::Empty) => Poll::Pending,
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
        }
    }
}

impl Drop for CommitWakeups {
    fn drop(&mut self) {
        let Some(f) = self.followers.upgrade() else { return };
        let mut guard = f.lock();
        if let Some(list) = guard.as_mut() {
            list.retain(|follower| !follower.waker.as_ref().is_some_and(|w| Arc::ptr_eq(w, &self.waker)));
            f.count.store(list.len(), Ordering::Release);
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn notify_coalesces_and_forgets_dropped_subscribers() {
        let n = Notifier::default();
        let a = n.register();
        let b = n.register();
        n.notify(1);
        n.notify(2); // a's slot is full: coalesced, not blocking
        assert_eq!(a.try_recv(), Ok(1));
        assert!(a.try_recv().is_err());
        drop(b);
        n.notify(3);
        assert_eq!(n.len(), 1);
        assert_eq!(a.try_recv(), Ok(3));
        n.close();
        assert!(a.recv().is_err());
    }

    /// Guards against a subscription made after `close` waiting forever: it
    /// must see the end at once.
    #[test]
    fn registering_after_close_is_disconnected() {
        let n = Notifier::default();
        n.close();
        let late = n.register();
        assert!(late.recv().is_err());
        let late = n.follow();
        assert!(late.recv().is_err());
        assert_eq!(n.len(), 0);
    }

    /// Guards that a dropped subscription stops costing the writer at once,
    /// not at the next commit.
    #[test]
    fn dropping_a_follower_unregisters_it_at_once() {
        let n = Notifier::default();
        let a = n.follow();
        let b = n.follow();
        let c = n.register();
        assert_eq!(n.len(), 3);
        drop(b);
        assert_eq!(n.len(), 2);
        n.notify(1);
        assert_eq!((a.recv(), c.try_recv()), (Ok(1), Ok(1)));
        drop(a);
        assert_eq!(n.len(), 1);
        // Dropped after the close, or after the notifier: nothing to do.
        let d = n.follow();
        n.close();
        drop(d);
        drop(n);
        drop(Notifier::default().follow());
    }

    #[test]
    fn close_wakes_a_blocked_follower() {
        let n = Arc::new(Notifier::default());
        let f = n.follow();
        let closer = {
            let n = n.clone();
            std::thread::spawn(move || n.close())
        };
        assert!(f.recv().is_err());
        closer.join().unwrap();
    }

    #[cfg(feature = "async")]
    mod polling {
        use std::sync::atomic::AtomicUsize;
        use std::task::{Context, Poll, Wake};

        use super::*;

        /// A waker that counts its wake-ups.
        #[derive(Default)]
        struct Count(AtomicUsize);

        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }

        fn poll(f: &CommitWakeups, count: &Arc<Count>) -> Poll<Option<u64>> {
            f.poll_wake(&mut Context::from_waker(&Waker::from(count.clone())))
        }

        fn woken(count: &Count) -> usize {
            count.0.load(Ordering::SeqCst)
        }

        #[test]
        fn a_commit_wakes_the_waiting_task_once_and_the_poll_sees_it() {
            let n = Notifier::default();
            let f = n.follow();
            let count = Arc::new(Count::default());
            assert_eq!(poll(&f, &count), Poll::Pending);
            n.notify(5);
            assert_eq!(woken(&count), 1);
            n.notify(6); // coalesced: a wake-up is pending, no second wake
            assert_eq!(woken(&count), 1);
            assert_eq!(poll(&f, &count), Poll::Ready(Some(5)));
            assert_eq!(poll(&f, &count), Poll::Pending);
            n.notify(7);
            assert_eq!(woken(&count), 2);
            assert_eq!(poll(&f, &count), Poll::Ready(Some(7)));
        }

        /// Guards the order inside `poll_wake`: a commit made before the
        /// task polls is found by that poll, with no wake needed.
        #[test]
        fn a_commit_before_the_first_poll_is_ready_at_once() {
            let n = Notifier::default();
            let f = n.follow();
            n.notify(1);
            let count = Arc::new(Count::default());
            assert_eq!(poll(&f, &count), Poll::Ready(Some(1)));
            assert_eq!(woken(&count), 0);
        }

        /// Guards against a stream on a closed store waiting forever.
        #[test]
        fn close_wakes_the_waiting_task_and_reports_the_end() {
            let n = Notifier::default();
            let f = n.follow();
            let count = Arc::new(Count::default());
            assert_eq!(poll(&f, &count), Poll::Pending);
            n.close();
            assert_eq!(woken(&count), 1);
            assert_eq!(poll(&f, &count), Poll::Ready(None));
            let late = n.follow();
            assert_eq!(poll(&late, &count), Poll::Ready(None));
        }
    }
}

/// Tasks that found the writer's queue full and wait for room, woken by
/// the writer each time it takes requests off the queue. An async append
/// waits here instead of blocking its executor thread on a full queue.
#[derive(Debug, Default)]
pub(crate) struct QueueSpace {
    /// How many wakers are kept, so the writer pays one load when none are.
    count: AtomicUsize,
    wakers: Mutex<Vec<Waker>>,
}

impl QueueSpace {
    fn lock(&self) -> MutexGuard<'_, Vec<Waker>> {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `waker` to be woken when the writer next drains the queue.
    /// The caller tries to queue again after this, so room made between
    /// its failed try and this call is not missed.
    #[cfg(feature = "async")]
    pub(crate) fn wait(&self, waker: &Waker) {
        let mut wakers = self.lock();
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
        self.count.store(wakers.len(), Ordering::SeqCst);
        // Pairs with the fence in `wake_all`: either the writer sees this
        // waker, or the caller's next try sees the room the writer made.
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Wakes every waiting task: the writer has taken requests off the
    /// queue (or stopped), so each may find room, or the queue closed.
    pub(crate) fn wake_all(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let wakers = {
            let mut kept = self.lock();
            self.count.store(0, Ordering::SeqCst);
            std::mem::take(&mut *kept)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}
