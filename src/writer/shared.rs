//! State the writer thread shares with store handles: the head position,
//! counters for `stats()`, the poison flag and the subscriber notifier.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender, TrySendError};

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
/// writer pays one relaxed atomic load.
#[derive(Debug)]
pub(crate) struct Notifier {
    count: AtomicUsize,
    /// `None` once closed: a subscriber that registers after the store
    /// closed gets a channel that is already disconnected.
    senders: Mutex<Option<Vec<Sender<u64>>>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier { count: AtomicUsize::new(0), senders: Mutex::new(Some(Vec::new())) }
    }
}

impl Notifier {
    /// Registers a new subscriber and returns its wake-up channel.
    /// After [`close`](Notifier::close) the channel is disconnected at once,
    /// so the subscriber ends instead of waiting for a commit that cannot come.
    pub(crate) fn register(&self) -> Receiver<u64> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut guard = self.lock();
        if let Some(senders) = guard.as_mut() {
            senders.push(tx);
            self.count.store(senders.len(), Ordering::Release);
        }
        rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Sender<u64>>>> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells every live subscriber that the head moved to `head`.
    pub(crate) fn notify(&self, head: u64) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut guard = self.lock();
        if let Some(senders) = guard.as_mut() {
            senders.retain(|tx| !matches!(tx.try_send(head), Err(TrySendError::Disconnected(_))));
            self.count.store(senders.len(), Ordering::Release);
        }
    }

    /// Drops every subscriber's sender, so blocked subscribers wake and see the end.
    /// Later registrations get a disconnected channel.
    pub(crate) fn close(&self) {
        *self.lock() = None;
        self.count.store(0, Ordering::Release);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
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
        assert_eq!(n.len(), 0);
    }
}
