//! One thread per connection that pushes the events of all the connection's
//! subscriptions.
//!
//! A thread per subscription made one connection able to start thousands of
//! threads, each woken and reading the log on every commit, and made the
//! connection's teardown join them one by one. The pump instead keeps, for
//! each subscription, its filter and the next log position it needs, and
//! works in rounds: subscriptions that need the same position share one
//! read of a batch of the log, each matching event is sent to each
//! subscription it matches, and when every subscription is caught up the
//! thread waits for the store's next commit (one wake-up channel for the
//! whole connection) or for a message from the session.
//!
//! The rule that makes the switch from catch-up to live exact is the one of
//! `src/subscribe.rs`: the wake-up channel is registered before the first
//! read, every read starts at a subscription's own next position, and a
//! commit after a read always leaves a wake-up behind.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TryRecvError};
use serde::Serialize;

use super::dispatch::{SharedOutput, error_reply, to_line};
use super::wire::{Envelope, WireEvent};
use super::write_line;
use crate::error::Result;
use crate::read::{Filter, ReadAll};
use crate::store::Store;
use crate::subscribe::DEFAULT_SUBSCRIPTION_BATCH;

/// How often the pump of a read-only store looks at the log: another process
/// writes, so no wake-up reaches this one.
const READ_ONLY_POLL: Duration = Duration::from_millis(50);

/// How long closing a connection waits for its pump to stop by itself before
/// it cuts the connection (a pump can only be stuck writing to a client that
/// does not read).
const STOP_GRACE: Duration = Duration::from_millis(500);

/// A subscription to start: its id, what it keeps, where it starts, and the
/// `src` / `dest` of its pushed messages.
pub(crate) struct NewSubscription {
    pub id: u64,
    pub filter: Filter,
    pub next: u64,
    pub from: String,
    pub to: String,
}

enum Control {
    Add(NewSubscription),
    /// Stop a subscription; the pump answers on the channel once no line of
    /// it can follow.
    Remove(u64, Sender<()>),
}

/// The handle of a connection's pump thread.
pub(crate) struct Pump {
    control: Sender<Control>,
    stop: Arc<AtomicBool>,
    /// Disconnected when the thread has ended.
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

impl Pump {
    /// Starts the thread, with the store's wake-up channel registered here,
    /// before any subscription is read.
    pub(crate) fn start(store: Store, output: SharedOutput) -> io::Result<Pump> {
        let wake = store.shared().notifier.register();
        let (control, commands) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let stop = Arc::new(AtomicBool::new(false));
        let runner = Runner {
            store,
            output,
            control: commands,
            wake: Some(wake),
            stop: stop.clone(),
            subs: BTreeMap::new(),
        };
        let thread = std::thread::Builder::new().name("eventfold-subs".into()).spawn(move || {
            let _done = done_tx;
            runner.run();
        })?;
        Ok(Pump { control, stop, done, thread })
    }

    /// Starts pushing a subscription's events.
    pub(crate) fn add(&self, s: NewSubscription) {
        // A pump that has ended (its client went away) pushes nothing more.
        let _ = self.control.send(Control::Add(s));
    }

    /// Stops a subscription and returns once none of its lines can follow.
    pub(crate) fn remove(&self, id: u64) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.control.send(Control::Remove(id, tx)).is_ok() {
            // An answer, or the pump ended: either way nothing more of it comes.
            let _ = rx.recv();
        }
    }

    /// Stops the thread and waits for it. If it has not stopped within
    /// [`STOP_GRACE`] (it is blocked writing to a client that does not
    /// read), `unblock` is called to cut the connection first.
    pub(crate) fn stop(self, unblock: Option<&dyn Fn()>) {
        let Pump { control, stop, done, thread } = self;
        stop.store(true, Ordering::Release);
        // Disconnecting the control channel wakes a waiting pump.
        drop(control);
        if let Some(unblock) = unblock
            && matches!(done.recv_timeout(STOP_GRACE), Err(RecvTimeoutError::Timeout))
        {
            unblock();
        }
        let _ = thread.join();
    }
}

/// A running subscription.
struct Sub {
    filter: Filter,
    /// The next log position it needs.
    next: u64,
    from: String,
    to: String,
}

/// How a round of reads ended.
enum Round {
    /// Some subscription got further: there may be more.
    Progress,
    /// Every subscription has read up to the head.
    CaughtUp,
    /// Stop: asked to, or the client went away.
    Stop,
}

struct Runner {
    store: Store,
    output: SharedOutput,
    control: Receiver<Control>,
    /// The store's commits; `None` once the store has closed.
    wake: Option<Receiver<u64>>,
    stop: Arc<AtomicBool>,
    subs: BTreeMap<u64, Sub>,
}

impl Runner {
    fn run(mut self) {
        loop {
            if !self.take_control() {
                return;
            }
            match self.round() {
                Round::Progress => continue,
                Round::Stop => return,
                Round::CaughtUp => {}
            }
            if self.wake.is_none() {
                // The store closed and what it committed is delivered: the
                // subscriptions are over.
                self.subs.clear();
            }
            if !self.wait() {
                return;
            }
        }
    }

    /// Applies the session's messages that are waiting; false when the pump
    /// must stop.
    fn take_control(&mut self) -> bool {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            match self.control.try_recv() {
                Ok(c) => self.apply(c),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn apply(&mut self, c: Control) {
        match c {
            Control::Add(s) => {
                let sub = Sub { filter: s.filter, next: s.next, from: s.from, to: s.to };
                self.subs.insert(s.id, sub);
            }
            Control::Remove(id, done) => {
                self.subs.remove(&id);
                let _ = done.send(());
            }
        }
    }

    /// Waits for a commit (when a subscription could use one) or a message
    /// from the session; false when the pump must stop.
    fn wait(&mut self) -> bool {
        enum Woke {
            Commit,
            StoreClosed,
            Control(Control),
            SessionGone,
            Poll,
        }
        let woke = {
            let mut select = Select::new();
            let control = select.recv(&self.control);
            let wake = match &self.wake {
                Some(w) if !self.subs.is_empty() => Some((select.recv(w), w)),
                _ => None,
            };
            let op = if self.store.is_read_only() && !self.subs.is_empty() {
                select.select_timeout(READ_ONLY_POLL).ok()
            } else {
                Some(select.select())
            };
            match (op, wake) {
                (None, _) => Woke::Poll,
                (Some(op), Some((index, w))) if op.index() == index => match op.recv(w) {
                    Ok(_) => Woke::Commit,
                    Err(_) => Woke::StoreClosed,
                },
                (Some(op), _) => {
                    debug_assert_eq!(op.index(), control);
                    match op.recv(&self.control) {
                        Ok(c) => Woke::Control(c),
                        Err(_) => Woke::SessionGone,
                    }
                }
            }
        };
        match woke {
            Woke::Commit | Woke::Poll => {}
            // One more round delivers the store's last commits.
            Woke::StoreClosed => self.wake = None,
            Woke::Control(c) => self.apply(c),
            Woke::SessionGone => return false,
        }
        true
    }

    /// One batch of the log for each group of subscriptions that need the
    /// same position, pushed to the subscriptions each event matches.
    fn round(&mut self) -> Round {
        let head = match self.store.read().and_then(|r| r.head()) {
            Ok(h) => h,
            Err(e) => return self.fail(self.subs.keys().copied().collect(), e),
        };
        let mut groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (id, s) in &self.subs {
            if s.next <= head {
                groups.entry(s.next).or_default().push(*id);
            }
        }
        if groups.is_empty() {
            return Round::CaughtUp;
        }
        let batch = DEFAULT_SUBSCRIPTION_BATCH as u64;
        for (next, ids) in groups {
            let last = head.min(next.saturating_add(batch - 1));
            let events = match self.read(next, last, &ids) {
                Ok(events) => events,
                Err(e) => {
                    if let Round::Stop = self.fail(ids, e) {
                        return Round::Stop;
                    }
                    continue;
                }
            };
            for id in &ids {
                if let Some(s) = self.subs.get_mut(id) {
                    s.next = last.saturating_add(1);
                }
            }
            for (event, matching) in events {
                // A removal or a stop does not wait for the whole batch.
                if !self.take_control() {
                    return Round::Stop;
                }
                for id in matching {
                    let Some(s) = self.subs.get(&id) else { continue };
                    let line = to_line(&Pushed {
                        src: &s.from,
                        dest: &s.to,
                        body: PushedBody { kind: "event", subscription_id: id, event: &event },
                    });
                    if self.stop.load(Ordering::Acquire) || self.write(line).is_err() {
                        return Round::Stop;
                    }
                }
            }
        }
        Round::Progress
    }

    /// The events at positions `from..=to` that match any of `ids`, each with
    /// the subscriptions it matches. The read transaction ends before any
    /// line is written, so a slow client never holds it open.
    fn read(&self, from: u64, to: u64, ids: &[u64]) -> Result<Vec<(WireEvent, Vec<u64>)>> {
        let reader = self.store.read()?;
        let mut events = Vec::new();
        for e in reader.all(ReadAll::from_position(from).up_to_position(to))? {
            let e = e?;
            let matching: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|id| {
                    self.subs.get(id).is_some_and(|s| {
                        s.filter.is_empty() || s.filter.matches(e.stream_id(), e.event_type())
                    })
                })
                .collect();
            if !matching.is_empty() {
                events.push((WireEvent::from_recorded(e.to_owned()?, true)?, matching));
            }
        }
        Ok(events)
    }

    /// Ends subscriptions `ids` after the read for them failed: each gets
    /// one `error` line (none when the store has closed).
    fn fail(&mut self, ids: Vec<u64>, e: crate::Error) -> Round {
        let closed = matches!(e, crate::Error::Closed);
        let reply = error_reply(None, e);
        for id in ids {
            let Some(s) = self.subs.remove(&id) else { continue };
            if closed {
                continue;
            }
            let line = to_line(&Envelope { src: s.from, dest: s.to, body: reply.clone() });
            if self.write(line).is_err() {
                return Round::Stop;
            }
        }
        Round::Progress
    }

    fn write(&self, line: String) -> io::Result<()> {
        write_line(&mut *self.output.lock().unwrap_or_else(|p| p.into_inner()), line)
    }
}

/// A pushed `event` message, serialized like `Envelope<Reply::Event>`
/// without copying the event for each subscription it goes to.
#[derive(Serialize)]
struct Pushed<'a> {
    src: &'a str,
    dest: &'a str,
    body: PushedBody<'a>,
}

#[derive(Serialize)]
struct PushedBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    subscription_id: u64,
    event: &'a WireEvent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExpectedVersion, NewEvent};
    use crate::protocol::wire::Reply;

    /// The borrowed form of a pushed event is the same line as the reply type.
    #[test]
    fn pushed_events_are_event_replies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .append("a-1", ExpectedVersion::Any, [NewEvent::json_bytes("E", br#"{"n":1.50}"#.to_vec())])
            .unwrap();
        let e = store.read().unwrap().event(1).unwrap().unwrap().to_owned().unwrap();
        let event = WireEvent::from_recorded(e, true).unwrap();
        let pushed = to_line(&Pushed {
            src: "n",
            dest: "c",
            body: PushedBody { kind: "event", subscription_id: 7, event: &event },
        });
        let reply = to_line(&Envelope {
            src: "n".to_string(),
            dest: "c".to_string(),
            body: Reply::Event { subscription_id: 7, event },
        });
        assert_eq!(pushed, reply);
    }
}
