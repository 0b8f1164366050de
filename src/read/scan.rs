//! A scan of the global log with the records checked on several threads.
//!
//! A zero-copy scan spends most of its time checking records: the checksum
//! reads every byte, and the archive check follows the body's pointers. The
//! cursor walk that finds the records is a fraction of that. So the caller's
//! thread walks the cursor and cuts the log into chunks, helper threads
//! check chunks, and the caller's thread hands the events to the callback in
//! position order. While it waits for the next chunk in order, the caller's
//! thread checks a queued chunk itself, so no core idles while work is left.
//!
//! The helpers only read records through `&[u8]` slices of the caller's read
//! transaction, which lives until they are joined (`std::thread::scope`), so
//! every event handed out is the very bytes that were checked.

use std::collections::BTreeMap;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::block::{Block, MAX_BLOCK};
use super::indexed::Records;
use super::{ReadAll, Reader};
use crate::record::EventRef;
use crate::vocab::Filter;
use crate::vocab::{Error, Result};

/// Records in one chunk: enough that a chunk's hand-offs cost little beside
/// checking it, few enough that a short scan still spreads.
const CHUNK: usize = 512;
/// Chunks read ahead of the one the callback waits for. Both channels hold
/// at least this many, so neither side ever blocks on a full channel.
const IN_FLIGHT: usize = 8;

/// Raw records of one chunk, as the cursor found them.
type Raw<'t> = Vec<(u64, &'t [u8])>;
/// A checked chunk: the events that pass the filter, or a record's error, in
/// position order.
type Checked<'t> = Vec<Result<EventRef<'t>>>;

/// The threads [`Reader::scan_all`] and long aggregate replays use by
/// default: the machine's cores, at most 4 (more than that only wait on the
/// caller's thread).
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// See [`Reader::scan_all`].
pub(super) fn scan_all<'t, E, F>(
    reader: &'t Reader,
    options: ReadAll,
    threads: usize,
    mut f: F,
) -> Result<u64, E>
where
    E: From<Error>,
    F: FnMut(EventRef<'t>) -> Result<(), E>,
{
    let up_to = reader.position_bound(options.up_to_position, options.up_to_time)?;
    let filter = options.filter;
    let mut raw = Records::new(reader, options.from, up_to, &filter)?;
    let limit = options.limit.unwrap_or(usize::MAX);
    let mut remaining = limit;
    let mut served = super::served::Served::new(reader)?;
    let mut deliver = |chunk: Checked<'t>, remaining: &mut usize| -> Result<bool, E> {
        for event in chunk {
            if *remaining == 0 {
                return Ok(false);
            }
            let event = event?;
            if !served.serves(reader, &event)? {
                continue;
            }
            f(event)?;
            *remaining = remaining.saturating_sub(1);
        }
        Ok(*remaining > 0)
    };

    // A scan that fits in one chunk, or a caller that wants one thread,
    // starts no threads.
    let first = raw.chunk(CHUNK);
    if threads <= 1 || raw.done() || remaining <= CHUNK && filter.is_empty() {
        let mut chunk = first;
        loop {
            if !deliver(check(chunk, &filter), &mut remaining)? {
                break;
            }
            if raw.done() {
                if let Some(e) = raw.take_error() {
                    return Err(e.into());
                }
                break;
            }
            chunk = raw.chunk(CHUNK);
        }
        return Ok(limit.saturating_sub(remaining) as u64);
    }

    std::thread::scope(|scope| -> Result<u64, E> {
        let (work_tx, work_rx) = crossbeam_channel::bounded::<(usize, Raw<'t>)>(IN_FLIGHT);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<(usize, Checked<'t>)>(IN_FLIGHT);
        for _ in 1..threads {
            let (work_rx, done_tx, filter) = (work_rx.clone(), done_tx.clone(), &filter);
            scope.spawn(move || help(&work_rx, &done_tx, filter));
        }
        drop(done_tx);
        let mut queue = Queue { work_tx, work_rx, done_rx, waiting: BTreeMap::new(), sent: 0, want: 0 };
        queue.send(first, &filter);
        loop {
            if let Some(chunk) = queue.waiting.remove(&queue.want) {
                queue.want = queue.want.saturating_add(1);
                if !deliver(chunk, &mut remaining)? {
                    break;
                }
                continue;
            }
            if queue.want == queue.sent {
                // Every chunk read so far is delivered: a cursor error comes
                // after the records read before it.
                if let Some(e) = raw.take_error() {
                    return Err(e.into());
                }
                if raw.done() {
                    break;
                }
            }
            if !raw.done() && queue.sent.saturating_sub(queue.want) < IN_FLIGHT {
                let chunk = raw.chunk(CHUNK);
                queue.send(chunk, &filter);
                continue;
            }
            queue.help_or_wait(&filter)?;
        }
        // Dropping the queue closes the work channel; the helpers finish
        // the chunk in hand and stop, and the scope joins them.
        Ok(limit.saturating_sub(remaining) as u64)
    })
}

/// The chunks between the caller's thread and the helpers.
struct Queue<'t> {
    work_tx: Sender<(usize, Raw<'t>)>,
    work_rx: Receiver<(usize, Raw<'t>)>,
    done_rx: Receiver<(usize, Checked<'t>)>,
    /// Checked chunks that arrived before the one the callback waits for.
    waiting: BTreeMap<usize, Checked<'t>>,
    /// Chunks sent, and the sequence number of the next one to deliver.
    sent: usize,
    want: usize,
}

impl<'t> Queue<'t> {
    fn send(&mut self, chunk: Raw<'t>, filter: &Filter) {
        if chunk.is_empty() {
            return;
        }
        let seq = self.sent;
        self.sent = self.sent.saturating_add(1);
        // Never blocks (at most IN_FLIGHT chunks are out) and never fails
        // (this queue holds a receiver): if it did, the chunk comes back
        // and is checked here.
        if let Err(e) = self.work_tx.try_send((seq, chunk)) {
            let (seq, chunk) = e.into_inner();
            self.waiting.insert(seq, check(chunk, filter));
        }
    }

    /// Checks a queued chunk on this thread, or waits for a helper's.
    fn help_or_wait(&mut self, filter: &Filter) -> Result<()> {
        match self.work_rx.try_recv() {
            Ok((seq, chunk)) => {
                self.waiting.insert(seq, check(chunk, filter));
                Ok(())
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => match self.done_rx.recv() {
                Ok((seq, chunk)) => {
                    self.waiting.insert(seq, chunk);
                    Ok(())
                }
                Err(_) => Err(Error::internal("a scan's checking threads stopped before the scan ended")),
            },
        }
    }
}

/// A helper thread: checks chunks until the work channel closes or the
/// scan stops listening.
fn help<'t>(work: &Receiver<(usize, Raw<'t>)>, done: &Sender<(usize, Checked<'t>)>, filter: &Filter) {
    for (seq, chunk) in work {
        if done.send((seq, check(chunk, filter))).is_err() {
            break;
        }
    }
}

/// Checks a chunk's records a block at a time (in address order, see
/// `block.rs`) and keeps those that pass `filter`, errors in their place.
fn check<'t>(chunk: Raw<'t>, filter: &Filter) -> Checked<'t> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut block = Block::new();
    for part in chunk.chunks(MAX_BLOCK) {
        for &(position, value) in part {
            block.push(position, value);
        }
        block.check();
        while let Some(event) = block.pop() {
            match event {
                Ok(e) if !e.passes(filter) => {}
                other => out.push(other),
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::CHUNK;
    use crate::lmdb::keys::position_key;
    use crate::vocab::Error;
    use crate::{ExpectedVersion, Filter, NewEvent, ReadAll, Store};

    /// Long enough for many chunks in flight at once.
    const EVENTS: u64 = (CHUNK * 12 + 7) as u64;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut n = 0;
        while n < EVENTS {
            let batch: Vec<_> = (n..(n + 100).min(EVENTS))
                .map(|i| NewEvent::json(if i % 3 == 0 { "Opened" } else { "Moved" }, &i))
                .collect();
            n += batch.len() as u64;
            store.append(&format!("s-{}", n % 7), ExpectedVersion::Any, batch).unwrap();
        }
        (dir, store)
    }

    fn positions_by_scan(store: &Store, options: ReadAll) -> Vec<u64> {
        let reader = store.read().unwrap();
        let mut out = Vec::new();
        let n = reader
            .scan_all(options, |e| -> crate::Result<()> {
                out.push(e.position());
                Ok(())
            })
            .unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    fn positions_by_iter(store: &Store, options: ReadAll) -> Vec<u64> {
        let reader = store.read().unwrap();
        reader.all(options).unwrap().map(|e| e.unwrap().position()).collect()
    }

    /// Guards the scan's contract: on any number of threads it yields
    /// exactly what `Reader::all` yields, in the same order, for every
    /// option that shapes a read.
    #[test]
    fn yields_what_the_iterator_yields() {
        let (_d, store) = store();
        let shapes = [
            ReadAll::new(),
            ReadAll::from_position(1000),
            ReadAll::new().limit(CHUNK * 3 + 1),
            ReadAll::new().limit(5),
            ReadAll::from_position(10).up_to_position(EVENTS - 100),
            ReadAll::new().filter(Filter::new().event_type("Opened")),
            ReadAll::new().filter(Filter::new().stream("s-3")).limit(40),
            ReadAll::from_position(EVENTS + 1),
        ];
        for shape in shapes {
            let want = positions_by_iter(&store, shape.clone());
            for threads in [1, 2, 4] {
                let got = positions_by_scan(&store, shape.clone().threads(threads));
                assert_eq!(got, want, "{shape:?} on {threads} threads");
            }
        }
        assert_eq!(positions_by_scan(&store, ReadAll::new()).len() as u64, EVENTS);
    }

    /// Guards that a damaged record deep in the log stops a parallel scan
    /// with `Corruption` for that position, after every event before it.
    #[test]
    fn a_damaged_record_stops_the_scan_after_the_events_before_it() {
        let (_d, store) = store();
        let bad = (CHUNK * 5 + 3) as u64;
        {
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            let mut v = dbs.events.get(&wtxn, &position_key(bad)).unwrap().unwrap().to_vec();
            v[20] ^= 0x40;
            dbs.events.put(&mut wtxn, &position_key(bad), &v).unwrap();
            wtxn.commit().unwrap();
        }
        for threads in [1, 2, 3] {
            let reader = store.read().unwrap();
            let mut seen = Vec::new();
            let err = reader
                .scan_all(ReadAll::new().threads(threads), |e| -> crate::Result<()> {
                    seen.push(e.position());
                    Ok(())
                })
                .unwrap_err();
            assert!(matches!(err, Error::Corruption { position, .. } if position == bad), "{err}");
            assert_eq!(seen, (1..bad).collect::<Vec<_>>(), "{threads} threads");
        }
    }

    /// Guards that the callback's error ends the scan at once and comes
    /// back unchanged, with the helper threads joined.
    #[test]
    fn the_callbacks_error_stops_the_scan() {
        #[derive(Debug)]
        enum Mine {
            Enough(u64),
            Store(Error),
        }
        impl From<Error> for Mine {
            fn from(e: Error) -> Self {
                Mine::Store(e)
            }
        }
        let (_d, store) = store();
        let reader = store.read().unwrap();
        let mut calls = 0;
        let got = reader.scan_all(ReadAll::new().threads(2), |e| {
            calls += 1;
            if e.position() == 2000 { Err(Mine::Enough(e.position())) } else { Ok(()) }
        });
        match got {
            Err(Mine::Enough(p)) => assert_eq!(p, 2000),
            Err(Mine::Store(e)) => panic!("the store failed: {e}"),
            Ok(n) => panic!("the scan went on to the end ({n} events)"),
        }
        assert_eq!(calls, 2000);
    }
}
