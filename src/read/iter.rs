//! Iterators over a [`Reader`]'s snapshot: one stream, or the global log.
//!
//! Both walk LMDB cursors and yield borrowed [`EventRef`]s: no allocation per
//! event beyond what a filter needs (none).

use std::ops::Bound;

use heed::types::Bytes;
use heed::{RoRange, RoRevRange};

use super::block::{Block, MAX_BLOCK};
use super::{Direction, ReadAll, ReadStream, Reader};
use crate::lmdb::keys::{
    Run, StreamHead, parse_position_key, parse_stream_version_key, position_key, stream_version_key,
};
use crate::record::{self, EventRef};
use crate::vocab::Filter;
use crate::vocab::{Error, Result};

/// An `events` cursor item with its key parsed as a position.
fn keyed<'t>(item: Option<heed::Result<(&'t [u8], &'t [u8])>>) -> Result<Option<(u64, &'t [u8])>> {
    item.transpose()?.map(|(k, v)| parse_position_key(k).map(|p| (p, v))).transpose()
}

/// What [`StreamIter`] and [`AllIter`] share as iterators: a walk that
/// yields one event per `step`, and ends for good at its end or at its
/// first error.
trait Walk<'t> {
    /// The next event, or `None` at the end of the walk.
    fn step(&mut self) -> Result<Option<EventRef<'t>>>;

    /// Set once the walk has ended.
    fn done(&mut self) -> &mut bool;

    /// The iterator's `next`: once the walk has ended or failed, it is not
    /// stepped again.
    fn next_event(&mut self) -> Option<Result<EventRef<'t>>> {
        if *self.done() {
            return None;
        }
        let item = self.step().transpose();
        *self.done() = !matches!(item, Some(Ok(_)));
        item
    }
}

/// A backward read's cursor over the part of one run it walks.
enum Cursor<'t> {
    None,
    /// One event: a point lookup is cheaper than setting up a range.
    Single(u64),
    Backward(RoRevRange<'t, Bytes, Bytes>),
}

/// A walk over the stream's index runs, opened at the first run needed.
enum Runs<'t> {
    NotStarted,
    Forward(RoRange<'t, Bytes, Bytes>),
    Backward(RoRevRange<'t, Bytes, Bytes>),
}

/// Events of one stream, in version order (or reverse).
pub struct StreamIter<'t> {
    reader: &'t Reader,
    /// The stream's id: every record read must be this stream's, so a
    /// damaged stream number in its head cannot serve another stream.
    stream: Box<str>,
    stream_no: u64,
    direction: Direction,
    /// The next version to yield; outside `1..=last_version` means done.
    next: u64,
    last_version: u64,
    remaining: usize,
    filter: Filter,
    up_to: Option<u64>,
    cursor: Cursor<'t>,
    /// Versions covered by the open run.
    cursor_versions: (u64, u64),
    /// The position of the open run's first event (its version is
    /// `cursor_versions.0`).
    run_position: u64,
    /// Forward reads: one events cursor walked across runs.
    walker: Option<Walker<'t>>,
    /// What the stream's retention serves: versions from, times since.
    served_from: u64,
    served_since: u64,
    runs: Runs<'t>,
    /// The read has ended or failed.
    done: bool,
}

/// A forward read's cursor over the events database. The next run of a
/// stream usually starts a few records further on (other streams' events in
/// between): stepping over those is cheaper than a fresh search from the
/// B-tree's root, which was most of the time of loading an interleaved
/// stream.
struct Walker<'t> {
    range: RoRange<'t, Bytes, Bytes>,
    /// The position the cursor yields next.
    next: u64,
}

/// How many records a forward read steps over before it searches instead.
const MAX_SKIP: u64 = 32;

impl<'t> StreamIter<'t> {
    pub(crate) fn new(
        reader: &'t Reader,
        stream: &str,
        head: Option<StreamHead>,
        o: ReadStream,
    ) -> Result<Self> {
        let (stream_no, version) = head.map_or((0, 0), |h| (h.stream_no, h.version));
        let (mut next, last_version) = o.versions(version);
        if o.direction == Direction::Forward && next > 0 {
            next = next.max(o.served_from);
        }
        Ok(StreamIter {
            served_from: o.served_from,
            served_since: o.served_since,
            reader,
            stream: stream.into(),
            stream_no,
            direction: o.direction,
            next,
            last_version,
            remaining: o.limit.unwrap_or(usize::MAX),
            filter: o.filter,
            up_to: o.up_to_position,
            cursor: Cursor::None,
            cursor_versions: (1, 0),
            run_position: 0,
            walker: None,
            runs: Runs::NotStarted,
            done: false,
        })
    }

    /// The last version this read can reach: the stream's version in this
    /// snapshot, or the `to_version` bound when that is lower.
    pub fn stream_version(&self) -> u64 {
        self.last_version
    }

    /// The index run that holds `self.next`: found by one seek the first
    /// time, then by walking the index (runs of a stream are adjacent keys).
    fn next_run(&mut self) -> Result<(u64, Run)> {
        let dbs = &self.reader.dbs;
        let txn: &'t _ = &self.reader.txn;
        let item = match &mut self.runs {
            Runs::Forward(c) => c.next().transpose()?,
            Runs::Backward(c) => c.next().transpose()?,
            Runs::NotStarted => {
                let key = stream_version_key(self.stream_no, self.next);
                let found = dbs.stream_index.get_lower_than_or_equal_to(txn, &key)?;
                if let Some((k, _)) = found {
                    let (no, first_version) = parse_stream_version_key("stream_index", k)?;
                    if no == self.stream_no {
                        let at = stream_version_key(no, first_version);
                        self.runs = match self.direction {
                            Direction::Forward => {
                                let end = stream_version_key(no, u64::MAX);
                                let range = (Bound::Included(&at[..]), Bound::Included(&end[..]));
                                let mut c = dbs.stream_index.range(txn, &range)?;
                                c.next().transpose()?; // the run just found
                                Runs::Forward(c)
                            }
                            Direction::Backward => {
                                let start = stream_version_key(no, 0);
                                let range = (Bound::Included(&start[..]), Bound::Included(&at[..]));
                                let mut c = dbs.stream_index.rev_range(txn, &range)?;
                                c.next().transpose()?;
                                Runs::Backward(c)
                            }
                        };
                    }
                }
                found
            }
        };
        let missing = || {
            Error::index(
                "stream_index",
                format!("version {} of stream number {} is not indexed", self.next, self.stream_no),
            )
        };
        let (k, v) = item.ok_or_else(missing)?;
        let (no, first_version) = parse_stream_version_key("stream_index", k)?;
        let run = Run::decode(v)?;
        let run_last = run.last_version(first_version)?;
        if no != self.stream_no || self.next < first_version || self.next > run_last {
            return Err(missing());
        }
        Ok((first_version, run))
    }

    /// Opens a cursor over the part of the run holding `self.next` that this
    /// read will walk.
    fn open_run(&mut self) -> Result<()> {
        let (first_version, run) = self.next_run()?;
        // `next_run` checked that the run's versions and positions fit.
        let last_version = run.last_version(first_version)?;
        let pos_of = |version: u64| run.first_position.saturating_add(version.saturating_sub(first_version));
        let txn: &'t _ = &self.reader.txn;
        self.cursor_versions = (first_version, last_version);
        self.run_position = run.first_position;
        if self.direction == Direction::Forward {
            return Ok(()); // forward reads go through the walker
        }
        let (lo, hi) = (first_version, self.next);
        self.cursor = if lo == hi {
            Cursor::Single(pos_of(lo))
        } else {
            let from = position_key(pos_of(lo));
            let to = position_key(pos_of(hi));
            let range = (Bound::Included(&from[..]), Bound::Included(&to[..]));
            Cursor::Backward(self.reader.dbs.events.rev_range(txn, &range)?)
        };
        Ok(())
    }

    /// The record at `position`, for a forward read: stepped to when it is a
    /// little ahead of the walker, searched for otherwise.
    fn walk_to(&mut self, position: u64) -> Result<Option<(u64, &'t [u8])>> {
        if let Some(w) = &mut self.walker
            && w.next <= position
            && position.saturating_sub(w.next) <= MAX_SKIP
        {
            // Stepped by key, not by count: scavenging leaves holes
            // between a stream's events.
            loop {
                let Some(item) = keyed(w.range.next())? else { return Ok(None) };
                if item.0 >= position {
                    w.next = item.0.saturating_add(1);
                    return Ok(Some(item));
                }
            }
        }
        let from = position_key(position);
        let bounds = (Bound::Included(&from[..]), Bound::Unbounded);
        let mut range = self.reader.dbs.events.range(&self.reader.txn, &bounds)?;
        let item = keyed(range.next())?;
        self.walker = Some(Walker { range, next: position.saturating_add(1) });
        Ok(item)
    }
}

impl<'t> Walk<'t> for StreamIter<'t> {
    fn done(&mut self) -> &mut bool {
        &mut self.done
    }

    fn step(&mut self) -> Result<Option<EventRef<'t>>> {
        loop {
            if self.remaining == 0 || self.next == 0 || self.next > self.last_version {
                return Ok(None);
            }
            if self.next < self.cursor_versions.0 || self.next > self.cursor_versions.1 {
                self.open_run()?;
            }
            let txn: &'t _ = &self.reader.txn;
            let item: Option<(u64, &'t [u8])> = match &mut self.cursor {
                _ if self.direction == Direction::Forward => {
                    let position =
                        self.run_position.saturating_add(self.next.saturating_sub(self.cursor_versions.0));
                    match self.walk_to(position)? {
                        // The log is gapless: any other key means the index is wrong.
                        Some((p, _)) if p != position => None,
                        item => item,
                    }
                }
                Cursor::Backward(c) => keyed(c.next())?,
                Cursor::Single(p) => {
                    let p = *p;
                    self.cursor = Cursor::None;
                    self.reader.dbs.events.get(txn, &position_key(p))?.map(|v| (p, v))
                }
                Cursor::None => None,
            };
            let Some((position, v)) = item else {
                return Err(Error::index(
                    "stream_index",
                    format!("run of stream number {} points past the log", self.stream_no),
                ));
            };
            let event = record::decode(position, v)?;
            if event.stream_id() != &*self.stream {
                return Err(Error::index(
                    "stream_index",
                    format!(
                        "version {} of stream {:?} resolved to position {position}, which holds an event of {:?}",
                        self.next,
                        self.stream,
                        event.stream_id()
                    ),
                ));
            }
            if event.version() != self.next {
                return Err(Error::index(
                    "stream_index",
                    format!(
                        "version {} resolved to position {position}, which holds version {}",
                        self.next,
                        event.version()
                    ),
                ));
            }
            self.next = self.direction.after(self.next);
            if event.version() < self.served_from || event.recorded_at() < self.served_since {
                match self.direction {
                    // Times grow with versions: what is past retention is a prefix.
                    Direction::Forward => continue,
                    Direction::Backward => {
                        self.next = 0;
                        return Ok(None);
                    }
                }
            }
            if self.up_to.is_some_and(|u| position > u) {
                match self.direction {
                    Direction::Forward => {
                        self.next = self.last_version.saturating_add(1);
                        return Ok(None);
                    }
                    Direction::Backward => continue,
                }
            }
            if !event.passes(&self.filter) {
                continue;
            }
            self.remaining = self.remaining.saturating_sub(1);
            return Ok(Some(event));
        }
    }
}

impl<'t> Iterator for StreamIter<'t> {
    type Item = Result<EventRef<'t>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event()
    }
}

/// The global log's raw records from a position on, with the log's gap and
/// bound checks: the cursor walk that [`AllIter`] and
/// [`Reader::scan_all`](super::Reader::scan_all) share.
///
/// Every position from `from` to the end (the head, or the bound when it is
/// lower) must be there, in order, but for the ranges scavenging removed
/// and recorded (`lmdb/removed.rs`): any other missing key, or a cursor
/// that ends early, is damage (a flipped bit in a key), never the end of
/// the log.
pub(crate) struct RawRecords<'t> {
    reader: &'t Reader,
    cursor: RoRange<'t, Bytes, Bytes>,
    /// The last position this walk must yield.
    end: u64,
    expected: u64,
    end_state: WalkEnd,
}

impl<'t> RawRecords<'t> {
    pub(super) fn new(reader: &'t Reader, from: u64, up_to: Option<u64>) -> Result<Self> {
        let head = reader.head()?;
        let end = up_to.map_or(head, |u| u.min(head));
        let key = position_key(from);
        let range = (Bound::Included(&key[..]), Bound::Unbounded);
        Ok(RawRecords {
            reader,
            cursor: reader.dbs.events.range(&reader.txn, &range)?,
            end,
            expected: from,
            end_state: WalkEnd::default(),
        })
    }
    /// Whether the walk has ended (at the log's end, the bound, or an error).
    pub(super) fn done(&self) -> bool {
        self.end_state.done
    }

    /// The error that ended the walk, if one did.
    pub(super) fn take_error(&mut self) -> Option<Error> {
        self.end_state.error.take()
    }

    /// The next raw record, or `None` once the walk has ended.
    pub(super) fn next(&mut self) -> Option<(u64, &'t [u8])> {
        if self.end_state.done {
            return None;
        }
        let step = self.advance();
        self.end_state.settle(step)
    }

    fn advance(&mut self) -> Result<Option<(u64, &'t [u8])>> {
        if self.expected > self.end {
            return Ok(None);
        }
        let Some(item) = self.cursor.next() else {
            return Err(Error::corruption(
                self.expected,
                format!("position {} is missing: the log ends before its head {}", self.expected, self.end),
            ));
        };
        let (k, v) = item?;
        let position = parse_position_key(k)?;
        if position != self.expected {
            // A hole scavenging made is recorded; any other is damage.
            let last = position.saturating_sub(1);
            if position < self.expected || !self.reader.is_removed_range(self.expected, last)? {
                return Err(Error::corruption(
                    self.expected,
                    format!("log has a gap: next stored position is {position}"),
                ));
            }
            if position > self.end {
                return Ok(None);
            }
        }
        self.expected = position.saturating_add(1);
        Ok(Some((position, v)))
    }
}

/// How a walk of raw records ended: it ends for good at its end or at its
/// first error, which the caller raises after the records read before it.
#[derive(Debug, Default)]
pub(super) struct WalkEnd {
    pub(super) done: bool,
    pub(super) error: Option<Error>,
}

impl WalkEnd {
    /// The item of a step, ending the walk when the step had none or failed.
    pub(super) fn settle<T>(&mut self, step: Result<Option<T>>) -> Option<T> {
        match step {
            Ok(Some(item)) => Some(item),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.error = Some(e);
                self.done = true;
                None
            }
        }
    }
}

/// Events of the global log in position order.
///
/// Records are read ahead and checked in blocks (see `block.rs` for why),
/// starting small so a short read stays cheap.
pub struct AllIter<'t> {
    reader: &'t Reader,
    served: super::served::Served,
    raw: super::indexed::Records<'t>,
    remaining: usize,
    filter: Filter,
    block: Block<'t>,
    block_size: usize,
    done: bool,
}

impl<'t> AllIter<'t> {
    pub(crate) fn new(reader: &'t Reader, o: ReadAll, up_to: Option<u64>) -> Result<Self> {
        Ok(AllIter {
            reader,
            served: super::served::Served::new(reader)?,
            raw: super::indexed::Records::new(reader, o.from, up_to, &o.filter)?,
            remaining: o.limit.unwrap_or(usize::MAX),
            filter: o.filter,
            block: Block::new(),
            block_size: 4,
            done: false,
        })
    }

    fn fill(&mut self) {
        // Without a filter, every record read is yielded: read no more than the limit.
        let want = if self.filter.is_empty() { self.block_size.min(self.remaining) } else { self.block_size };
        while self.block.pending() < want {
            match self.raw.next() {
                Some((position, value)) => self.block.push(position, value),
                None => break,
            }
        }
        self.block.check();
        self.block_size = self.block_size.saturating_mul(2).min(MAX_BLOCK);
    }
}

impl<'t> Walk<'t> for AllIter<'t> {
    fn done(&mut self) -> &mut bool {
        &mut self.done
    }

    fn step(&mut self) -> Result<Option<EventRef<'t>>> {
        loop {
            if self.remaining == 0 {
                return Ok(None);
            }
            let event = match self.block.pop() {
                Some(event) => event?,
                None => {
                    if let Some(e) = self.raw.take_error() {
                        return Err(e);
                    }
                    if self.raw.done() {
                        return Ok(None);
                    }
                    self.fill();
                    continue;
                }
            };
            if !event.passes(&self.filter) || !self.served.serves(self.reader, &event)? {
                continue;
            }
            self.remaining = self.remaining.saturating_sub(1);
            return Ok(Some(event));
        }
    }
}

impl<'t> Iterator for AllIter<'t> {
    type Item = Result<EventRef<'t>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event()
    }
}
