//! State the writer thread shares with store handles: the head position,
//! counters for `stats()`, the poison flag and the subscriber notifier.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// Counters and flags shared between the writer and the handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Position of the last committed event.
    pub head: AtomicU64,
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
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    count: AtomicUsize,
    senders: Mutex<Vec<Sender<u64>>>,
}

impl Notifier {
    /// Registers a new subscriber and returns its wake-up channel.
    pub(crate) fn register(&self) -> Receiver<u64> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders.push(tx);
        self.count.store(senders.len(), Ordering::Release);
        rx
    }

    /// Tells every live subscriber that the head moved to `head`.
    pub(crate) fn notify(&self, head: u64) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders.retain(|tx| !matches!(tx.try_send(head), Err(TrySendError::Disconnected(_))));
        self.count.store(senders.len(), Ordering::Release);
    }

    /// Drops every subscriber's sender, so blocked subscribers wake and see the end.
    pub(crate) fn close(&self) {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders.clear();
        self.count.store(0, Ordering::Release);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

#[cfg(test)]
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
}
