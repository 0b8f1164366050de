//! An async append that finds the writer's queue full waits as a task.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crossbeam_channel::Sender;

use super::held_writer::HeldWriter;
use super::*;

struct Signal(Sender<()>);

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        let _ = self.0.send(());
    }
}

/// Guards the async back-pressure: with the queue full, `append_async`
/// used to block its executor thread in `send`; it must return `Pending`,
/// be woken when the writer takes requests off the queue, and then append.
#[test]
fn a_full_queue_parks_the_task_not_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).queue_capacity(1).open().unwrap();
    let held = HeldWriter::hold(&store);
    // The writer is held; this request fills the one-slot queue.
    let queued = store.submit("s-1", ExpectedVersion::Any, [NewEvent::json("E", &1)]).unwrap();

    let mut append =
        Box::pin(store.append_async("s-2", ExpectedVersion::NoStream, [NewEvent::json("E", &2)]));
    let (woken_tx, woken) = crossbeam_channel::unbounded();
    let waker = Waker::from(Arc::new(Signal(woken_tx)));
    let mut cx = Context::from_waker(&waker);
    assert!(append.as_mut().poll(&mut cx).is_pending(), "a full queue must not block the poll");
    assert!(woken.try_recv().is_err(), "woken before the writer made room");

    held.release();
    woken.recv().unwrap();
    queued.wait().unwrap();
    let done = loop {
        match append.as_mut().poll(&mut cx) {
            Poll::Ready(done) => break done.unwrap(),
            Poll::Pending => woken.recv().unwrap(),
        }
    };
    assert_eq!(done.stream_version, 1);
    assert_eq!(store.head().unwrap(), 2);
}

/// A task waiting for room when the store closes ends with `Closed`
/// instead of waiting forever.
#[test]
fn a_task_waiting_for_room_learns_of_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).queue_capacity(1).open().unwrap();
    let held = HeldWriter::hold(&store);
    let queued = store.submit("s-1", ExpectedVersion::Any, [NewEvent::json("E", &1)]).unwrap();
    let (woken_tx, woken) = crossbeam_channel::unbounded();
    let waker = Waker::from(Arc::new(Signal(woken_tx)));
    let mut cx = Context::from_waker(&waker);
    let mut append = Box::pin(store.append_async("s-2", ExpectedVersion::Any, [NewEvent::json("E", &2)]));
    assert!(append.as_mut().poll(&mut cx).is_pending());

    let closer = store.clone();
    let closing = std::thread::spawn(move || closer.close());
    held.release();
    queued.wait().unwrap();
    closing.join().unwrap().unwrap();
    let outcome = loop {
        match append.as_mut().poll(&mut cx) {
            Poll::Ready(outcome) => break outcome,
            Poll::Pending => woken.recv().unwrap(),
        }
    };
    // Either it found room before the close and was appended, or it
    // learnt of the close; it never waits forever.
    match outcome {
        Ok(r) => assert_eq!(r.stream_version, 1),
        Err(e) => assert!(matches!(e, Error::Closed), "{e}"),
    }
}
