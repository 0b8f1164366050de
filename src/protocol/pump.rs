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

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TryRecvError};

use super::dispatch::{SharedOutput, error_reply, to_line};
use super::wire::{Envelope, WireEvent};
use super::write_line;
use crate::read::ReadAll;
use crate::store::Store;
use crate::subscribe::DEFAULT_SUBSCRIPTION_BATCH;
use crate::vocab::Filter;
use crate::vocab::Result;

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
        let wake = store.commit_wakeups();
        let (control, commands) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let stop = Arc::new(AtomicBool::new(false));
        let runner = Runner {
            store,
            output,
            control: commands,
            wake: Some(wake),
            stop: stop.clone(),
            subs: Vec::new(),
            added: false,
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
    id: u64,
    /// False once removed; dropped from the list at the start of a round,
    /// so that positions in it stay valid during one.
    live: bool,
    filter: Filter,
    /// The next log position it needs.
    next: u64,
    from: String,
    to: String,
    /// `from` and `to` as JSON strings, for [`pushed_line`].
    src: String,
    dest: String,
}

/// How a round of reads ended.
enum Round {
    /// Some subscription got further but not to the head: there is more.
    Progress,
    /// Every subscription has read up to the head the round started from;
    /// a later commit leaves a wake-up.
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
    subs: Vec<Sub>,
    /// A subscription was added since the current round began (it is in no
    /// group of it, so the round cannot count it as caught up).
    added: bool,
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
                let sub = Sub {
                    id: s.id,
                    live: true,
                    filter: s.filter,
                    next: s.next,
                    src: json_string(&s.from),
                    dest: json_string(&s.to),
                    from: s.from,
                    to: s.to,
                };
                self.subs.push(sub);
                self.added = true;
            }
            Control::Remove(id, done) => {
                for s in self.subs.iter_mut().filter(|s| s.id == id) {
                    s.live = false;
                }
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
                Some(w) if self.subs.iter().any(|s| s.live) => Some((select.recv(w), w)),
                _ => None,
            };
            let op = if self.store.is_read_only() && wake.is_some() {
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
        self.subs.retain(|s| s.live);
        self.added = false;
        let head = match self.store.read().and_then(|r| r.head()) {
            Ok(h) => h,
            Err(e) => return self.fail(&(0..self.subs.len()).collect::<Vec<_>>(), e),
        };
        // The subscriptions behind the head, by the position they need; a
        // run of equal positions is a group that shares one read.
        let mut behind: Vec<(u64, usize)> =
            self.subs.iter().enumerate().filter(|(_, s)| s.next <= head).map(|(i, s)| (s.next, i)).collect();
        if behind.is_empty() {
            return Round::CaughtUp;
        }
        behind.sort_unstable();
        let groups: Vec<(u64, Vec<usize>)> = behind
            .chunk_by(|a, b| a.0 == b.0)
            .map(|run| (run[0].0, run.iter().map(|&(_, i)| i).collect()))
            .collect();
        let batch = DEFAULT_SUBSCRIPTION_BATCH as u64;
        let mut caught_up = true;
        for (next, group) in &groups {
            let (next, group) = (*next, group.as_slice());
            let window = head.min(next.saturating_add(batch.saturating_sub(1)));
            let read = match group {
                // A subscription of its own whose filter an index serves
                // reads a batch of its events, not of the log's positions.
                [one] if self.indexed(*one) => self.read_indexed(next, head, *one),
                _ => self.read(next, window, group).map(|events| (events, window)),
            };
            let (events, last) = match read {
                Ok(read) => read,
                Err(e) => {
                    if let Round::Stop = self.fail(group, e) {
                        return Round::Stop;
                    }
                    continue;
                }
            };
            caught_up &= last == head;
            for &i in group {
                self.subs[i].next = last.saturating_add(1);
            }
            for (event, matching) in events {
                // A removal or a stop does not wait for the whole batch.
                if !self.take_control() {
                    return Round::Stop;
                }
                // Encoded once, however many subscriptions it goes to.
                let event = to_line(&event);
                for i in matching {
                    let s = &self.subs[i];
                    if !s.live {
                        continue;
                    }
                    let line = pushed_line(&s.src, &s.dest, s.id, &event);
                    if self.stop.load(Ordering::Acquire) || self.write(line).is_err() {
                        return Round::Stop;
                    }
                }
            }
        }
        if caught_up && !self.added { Round::CaughtUp } else { Round::Progress }
    }

    /// Whether subscription `i`'s filter is served by an index.
    fn indexed(&self, i: usize) -> bool {
        self.store.read().is_ok_and(|r| r.uses_index(&self.subs[i].filter))
    }

    /// Up to a batch of subscription `i`'s events from `from` on, through
    /// the index, and the position the batch covers the log to: its last
    /// event when full, else `head`.
    fn read_indexed(&self, from: u64, head: u64, i: usize) -> Result<(Matched, u64)> {
        let reader = self.store.read()?;
        let batch = DEFAULT_SUBSCRIPTION_BATCH;
        let options = ReadAll::from_position(from)
            .up_to_position(head)
            .filter(self.subs[i].filter.clone())
            .limit(batch);
        let mut events = Vec::new();
        let mut last = head;
        for e in reader.all(options)? {
            let e = e?;
            last = e.position();
            events.push((WireEvent::from_recorded(e.to_owned()?, true)?, vec![i]));
        }
        if events.len() < batch {
            last = head;
        }
        Ok((events, last))
    }

    /// The events at positions `from..=to` that match any of the
    /// subscriptions at `group` (positions in the list), each with those it
    /// matches. The read transaction ends before any line is written, so a
    /// slow client never holds it open.
    fn read(&self, from: u64, to: u64, group: &[usize]) -> Result<Matched> {
        let reader = self.store.read()?;
        let mut events = Vec::new();
        for e in reader.all(ReadAll::from_position(from).up_to_position(to))? {
            let e = e?;
            let matching: Vec<usize> = group
                .iter()
                .copied()
                .filter(|&i| {
                    let f = &self.subs[i].filter;
                    e.passes(f)
                })
                .collect();
            if !matching.is_empty() {
                events.push((WireEvent::from_recorded(e.to_owned()?, true)?, matching));
            }
        }
        Ok(events)
    }

    /// Ends the subscriptions at `group` after the read for them failed:
    /// each gets one `error` line (none when the store has closed).
    fn fail(&mut self, group: &[usize], e: crate::Error) -> Round {
        let closed = matches!(e, crate::Error::Closed);
        let reply = error_reply(None, e);
        for &i in group {
            let s = &mut self.subs[i];
            if !s.live {
                continue;
            }
            s.live = false;
            if closed {
                continue;
            }
            let line = to_line(&Envelope { src: s.from.clone(), dest: s.to.clone(), body: reply.clone() });
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

/// A pushed `event` message, the same line as `Envelope<Reply::Event>`
/// serializes to, put together from the event's JSON (encoded once for all
/// the subscriptions it goes to) and the JSON strings `src` and `dest`.
fn pushed_line(src: &str, dest: &str, subscription_id: u64, event: &str) -> String {
    format!(
        r#"{{"src":{src},"dest":{dest},"body":{{"type":"event","subscription_id":{subscription_id},"event":{event}}}}}"#
    )
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Events read for a group of subscriptions, each with the subscriptions
/// (positions in the list) it matches.
type Matched = Vec<(WireEvent, Vec<usize>)>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::Reply;
    use crate::vocab::{ExpectedVersion, NewEvent};

    /// Guards a subscription added while a round pushes events (the
    /// session hands subscriptions over at any time): the round must not
    /// report "caught up", or the pump waits for a commit that may never
    /// come while the new subscription has events to catch up on. This hung
    /// a connection that made many subscriptions in a row.
    #[test]
    fn a_subscription_added_during_a_round_is_not_left_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("a-1", ExpectedVersion::Any, [NewEvent::json("E", &1)]).unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let output: SharedOutput = lines.clone();
        let (control, commands) = crossbeam_channel::unbounded();
        let mut runner = Runner {
            store: store.clone(),
            output,
            control: commands,
            wake: Some(store.commit_wakeups()),
            stop: Arc::new(AtomicBool::new(false)),
            subs: Vec::new(),
            added: false,
        };
        let sub = |id| NewSubscription {
            id,
            filter: Filter::new(),
            next: 1,
            from: "n".to_string(),
            to: "c".to_string(),
        };
        runner.apply(Control::Add(sub(1)));
        // Taken by the round as it pushes subscription 1's event.
        control.send(Control::Add(sub(2))).unwrap();
        assert!(matches!(runner.round(), Round::Progress), "subscription 2 is still behind");
        assert!(matches!(runner.round(), Round::CaughtUp));
        assert!(matches!(runner.round(), Round::CaughtUp));
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        let ids: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["body"]["subscription_id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, [1, 2], "each subscription got the event once");
    }

    /// A pushed event is the line of its reply type.
    #[test]
    fn pushed_events_are_event_replies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .append("a-1", ExpectedVersion::Any, [NewEvent::json_bytes("E", br#"{"n":1.50}"#.to_vec())])
            .unwrap();
        let e = store.read().unwrap().event(1).unwrap().unwrap().to_owned().unwrap();
        let event = WireEvent::from_recorded(e, true).unwrap();
        let (src, dest) = ("node \"n\"", "c\u{1}");
        let pushed = pushed_line(&json_string(src), &json_string(dest), 7, &to_line(&event));
        let reply = to_line(&Envelope {
            src: src.to_string(),
            dest: dest.to_string(),
            body: Reply::Event { subscription_id: 7, event },
        });
        assert_eq!(pushed, reply);
    }
}
