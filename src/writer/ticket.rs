//! Tickets: the one-shot slot through which the writer answers a request.
//!
//! The appender keeps an [`AppendTicket`]; the request carries a
//! [`ReplySender`] to the writer. Both hold one [`Slot`]: the writer puts
//! the [`Reply`] in it, then wakes whoever waits, a thread blocked in
//! [`AppendTicket::wait_many`] (a condition variable) or a task that
//! awaits the ticket (its `Waker`). The appender takes the reply out, so its
//! buffers are freed on the appender's thread. A sender dropped without an
//! answer (the writer stopped, the request never reached it) closes the
//! slot, and the appender gets [`Error::Closed`] instead of waiting forever.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;

use super::Reply;
use crate::vocab::AppendResult;
use crate::vocab::{Error, Result};

/// What the writer and the appender share for one request.
struct Slot {
    state: Mutex<State>,
    /// Signalled once the slot is closed, for a blocked [`AppendTicket::wait_many`].
    answered: Condvar,
}

struct State {
    /// The writer's answer, until the appender takes it.
    reply: Option<Reply>,
    /// The sender is gone: no answer comes after the one in `reply` (if any).
    closed: bool,
    /// The task awaiting the ticket, woken when the slot closes.
    waker: Option<Waker>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts the answer in (when there is one), closes the slot and wakes
    /// the waiter. The waker is called after the lock is released, so a
    /// waker that polls at once finds the answer and no lock held.
    fn close(&self, reply: Option<Reply>) {
        let waker = {
            let mut state = self.lock();
            if reply.is_some() {
                state.reply = reply;
            }
            state.closed = true;
            state.waker.take()
        };
        self.answered.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Blocks until the slot is closed; the answer, or `None` when the
    /// sender went away without one.
    fn wait(&self) -> Option<Reply> {
        let mut state = self.lock();
        while !state.closed {
            state = self.answered.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.reply.take()
    }

    /// The answer when the slot is closed (`Some(None)`: closed without
    /// one); otherwise keeps `waker` to be woken at the close.
    #[cfg(feature = "async")]
    fn poll(&self, waker: &Waker) -> Option<Option<Reply>> {
        let mut state = self.lock();
        if state.closed {
            return Some(state.reply.take());
        }
        match &state.waker {
            Some(kept) if kept.will_wake(waker) => {}
            _ => state.waker = Some(waker.clone()),
        }
        None
    }
}

/// The writer's end of a ticket: answers the request once. Dropping it
/// without an answer tells the appender the store closed.
pub(crate) struct ReplySender {
    slot: Option<Arc<Slot>>,
}

impl ReplySender {
    /// Hands the reply to the appender and wakes it. Never blocks; when the
    /// appender has dropped its ticket the reply is dropped here.
    pub(crate) fn send(mut self, reply: Reply) {
        if let Some(slot) = self.slot.take() {
            slot.close(Some(reply));
        }
    }
}

impl Drop for ReplySender {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.close(None);
        }
    }
}

impl std::fmt::Debug for ReplySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplySender(..)")
    }
}

/// A new ticket and the sender the request carries to the writer.
pub(crate) fn ticket() -> (ReplySender, AppendTicket) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State { reply: None, closed: false, waker: None }),
        answered: Condvar::new(),
    });
    (ReplySender { slot: Some(slot.clone()) }, AppendTicket { slot })
}

/// The outcome a reply carries, its buffers freed here, on the appender's
/// thread; [`Error::Closed`] when the writer stopped without answering.
fn outcome(reply: Option<Reply>) -> Result<Vec<AppendResult>> {
    match reply {
        Some(reply) => {
            // Side writes alone (checkpoints, snapshots) are no appends.
            let appended = !reply.spent.is_empty();
            drop(reply.spent);
            if appended {
                crate::metrics::answered(reply.submitted, reply.taken);
            }
            reply.outcome
        }
        None => Err(Error::Closed),
    }
}

/// A submitted request whose result can be collected later.
///
/// Returned by [`Store::submit`](crate::Store::submit) and
/// [`Store::submit_many`](crate::Store::submit_many): one producer can keep
/// many requests in flight and let the writer fill large batches. Collect
/// the result by blocking ([`wait`](AppendTicket::wait),
/// [`wait_many`](AppendTicket::wait_many)) or, with the `async` feature, by
/// awaiting it: `ticket.await` is the async [`wait`](AppendTicket::wait),
/// `ticket.results().await` the async
/// [`wait_many`](AppendTicket::wait_many). The writer thread completes the
/// ticket when it answers: it wakes the blocked thread or the awaiting
/// task, so an awaited append parks no thread and polls nothing.
#[must_use = "an append ticket does nothing unless waited on; dropping it does not cancel the append"]
pub struct AppendTicket {
    slot: Arc<Slot>,
}

impl std::fmt::Debug for AppendTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendTicket").finish_non_exhaustive()
    }
}

impl AppendTicket {
    /// Waits for the request's result: one [`AppendResult`] per stream.
    /// [`Error::Closed`] when the store closed before the request reached
    /// the writer.
    pub fn wait_many(self) -> Result<Vec<AppendResult>> {
        outcome(self.slot.wait())
    }

    /// Waits for the result of a single-stream append (of a multi-stream
    /// one: its first stream's).
    pub fn wait(self) -> Result<AppendResult> {
        first(self.wait_many())
    }

    /// Whether the writer has answered (or dropped) the request.
    #[cfg(test)]
    pub(crate) fn is_answered(&self) -> bool {
        self.slot.lock().closed
    }

    /// The request's results, one per stream, as a future: the async form
    /// of [`wait_many`](AppendTicket::wait_many), for a ticket of
    /// [`Store::submit_many`](crate::Store::submit_many).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// use eventfold::{ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let e = || vec![NewEvent::json("Moved", &serde_json::json!({}))];
    /// let ticket =
    ///     store.submit_many([("from-1", ExpectedVersion::Any, e()), ("to-1", ExpectedVersion::Any, e())])?;
    /// let results = ticket.results().await?;
    /// assert_eq!(results.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "async")]
    pub fn results(self) -> AppendManyFuture {
        AppendManyFuture { slot: Some(self.slot) }
    }
}

/// The first stream's result of a request.
fn first(results: Result<Vec<AppendResult>>) -> Result<AppendResult> {
    results?.into_iter().next().ok_or(Error::EmptyAppend)
}

/// `ticket.await`: the result of a single-stream append, the async form of
/// [`AppendTicket::wait`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use eventfold::{ExpectedVersion, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let r = store.submit("order-1", ExpectedVersion::NoStream, [NewEvent::json("Placed", &serde_json::json!({}))])?.await?;
/// assert_eq!(r.first_position, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "async")]
impl std::future::IntoFuture for AppendTicket {
    type Output = Result<AppendResult>;
    type IntoFuture = AppendFuture;

    fn into_future(self) -> AppendFuture {
        AppendFuture { inner: self.results() }
    }
}

/// The results of a request, one per stream: made by
/// [`AppendTicket::results`]. Completed by the writer thread when it
/// answers. Dropping it does not cancel the append.
#[cfg(feature = "async")]
#[must_use = "futures do nothing unless awaited; dropping it does not cancel the append"]
pub struct AppendManyFuture {
    /// `None` once the result was handed out.
    slot: Option<Arc<Slot>>,
}

#[cfg(feature = "async")]
impl std::fmt::Debug for AppendManyFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendManyFuture").field("done", &self.slot.is_none()).finish()
    }
}

#[cfg(feature = "async")]
impl std::future::Future for AppendManyFuture {
    type Output = Result<Vec<AppendResult>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let Some(slot) = &self.slot else {
            return Poll::Ready(Err(Error::internal("an append future was polled after it completed")));
        };
        match slot.poll(cx.waker()) {
            None => Poll::Pending,
            Some(reply) => {
                self.slot = None;
                Poll::Ready(outcome(reply))
            }
        }
    }
}

/// The result of a single-stream append: what `ticket.await` waits on (see
/// [`AppendTicket`]). Completed by the writer thread when it answers.
/// Dropping it does not cancel the append.
#[cfg(feature = "async")]
#[must_use = "futures do nothing unless awaited; dropping it does not cancel the append"]
#[derive(Debug)]
pub struct AppendFuture {
    inner: AppendManyFuture,
}

#[cfg(feature = "async")]
impl std::future::Future for AppendFuture {
    type Output = Result<AppendResult>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.inner).poll(cx).map(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::AppendResult;

    fn reply(first_position: u64) -> Reply {
        let result = AppendResult {
            stream_id: "s-1".into(),
            first_position,
            last_position: first_position,
            stream_version: 1,
            event_ids: Vec::new(),
            already_stored: false,
        };
        let now = std::time::Instant::now();
        Reply { outcome: Ok(vec![result]), spent: Vec::new(), submitted: now, taken: now }
    }

    #[test]
    fn a_blocked_wait_gets_the_reply_sent_from_another_thread() {
        let (tx, ticket) = ticket();
        let writer = std::thread::spawn(move || tx.send(reply(7)));
        assert_eq!(ticket.wait().unwrap().first_position, 7);
        writer.join().unwrap();
    }

    /// Guards against an appender waiting forever when its request is
    /// dropped unanswered (the writer stopped).
    #[test]
    fn a_sender_dropped_unanswered_is_closed() {
        let (tx, ticket) = ticket();
        drop(tx);
        assert!(matches!(ticket.wait_many(), Err(Error::Closed)));
    }

    #[test]
    fn a_reply_to_a_dropped_ticket_is_dropped_quietly() {
        let (tx, ticket) = ticket();
        drop(ticket);
        tx.send(reply(1));
    }

    #[cfg(feature = "async")]
    mod futures {
        use std::future::{Future, IntoFuture};
        use std::pin::Pin;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Context, Poll, Wake, Waker};

        use super::*;

        /// A waker that counts its wake-ups.
        #[derive(Default)]
        struct Count(AtomicUsize);

        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }

        fn poll<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
            Pin::new(f).poll(&mut Context::from_waker(waker))
        }

        #[test]
        fn the_send_wakes_the_last_waker_once_and_completes_the_future() {
            let (tx, ticket) = ticket();
            let (first, second) = (Arc::new(Count::default()), Arc::new(Count::default()));
            let mut fut = ticket.into_future();
            assert!(poll(&mut fut, &Waker::from(first.clone())).is_pending());
            // A task that moved to another worker polls with another waker.
            assert!(poll(&mut fut, &Waker::from(second.clone())).is_pending());
            tx.send(reply(3));
            assert_eq!((first.0.load(Ordering::SeqCst), second.0.load(Ordering::SeqCst)), (0, 1));
            match poll(&mut fut, &Waker::from(second.clone())) {
                Poll::Ready(Ok(r)) => assert_eq!(r.first_position, 3),
                other => panic!("expected the result, got {other:?}"),
            }
            // Polled again after completing: an error, not a hang or a panic.
            assert!(matches!(poll(&mut fut, &Waker::from(second)), Poll::Ready(Err(Error::Internal { .. }))));
        }

        #[test]
        fn a_reply_sent_before_the_first_poll_is_ready_at_once() {
            let (tx, ticket) = ticket();
            tx.send(reply(5));
            let count = Arc::new(Count::default());
            match poll(&mut ticket.results(), &Waker::from(count.clone())) {
                Poll::Ready(Ok(r)) => assert_eq!(r.len(), 1),
                other => panic!("expected the results, got {other:?}"),
            }
            assert_eq!(count.0.load(Ordering::SeqCst), 0);
        }

        /// Guards against an awaited append hanging when the writer drops
        /// the request without an answer.
        #[test]
        fn a_dropped_sender_wakes_the_future_with_closed() {
            let (tx, ticket) = ticket();
            let count = Arc::new(Count::default());
            let waker = Waker::from(count.clone());
            let mut fut = ticket.into_future();
            assert!(poll(&mut fut, &waker).is_pending());
            drop(tx);
            assert_eq!(count.0.load(Ordering::SeqCst), 1);
            assert!(matches!(poll(&mut fut, &waker), Poll::Ready(Err(Error::Closed))));
        }
    }
}
