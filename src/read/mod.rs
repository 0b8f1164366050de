//! Reading: a [`Reader`] is one LMDB read transaction, a consistent snapshot
//! of the store that runs beside the writer and can move between threads.

mod block;
pub(crate) mod indexed;
mod iter;
mod query;

pub use query::{QueryIter, ReadQuery};
mod scan;
pub(crate) mod served;

pub use iter::{AllIter, StreamIter};
pub(crate) use scan::default_threads;

use std::ops::Bound;

use heed::{RoTxn, WithoutTls};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::lmdb::env::{Db, Dbs, Table};
use crate::lmdb::keys::{
    Run, StreamHead, le_u64, parse_position_key, parse_stream_version_key, position_key, stream_version_key,
};
use crate::record::{self, EventRef};
use crate::vocab::Filter;
use crate::vocab::{Error, Result};

/// Which way a stream read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

impl Direction {
    /// The version a read in this direction goes to after `version`: 0,
    /// which no stream holds, after a backward read's version 1.
    pub(crate) fn after(self, version: u64) -> u64 {
        match self {
            Direction::Forward => version.saturating_add(1),
            Direction::Backward => version.saturating_sub(1),
        }
    }
}

/// The builder methods that the options of a stream read and of a read of
/// the global log share (a limit, a filter, bounds by position and by
/// time), each with the documentation its type gives it.
macro_rules! shared_options {
    (
        $(#[$limit:meta])* limit;
        $(#[$filter:meta])* filter;
        $(#[$position:meta])* up_to_position;
        $(#[$time:meta])* up_to_time;
    ) => {
        $(#[$limit])*
        pub fn limit(mut self, limit: usize) -> Self {
            self.limit = Some(limit);
            self
        }

        $(#[$filter])*
        pub fn filter(mut self, filter: Filter) -> Self {
            self.filter = filter;
            self
        }

        $(#[$position])*
        pub fn up_to_position(mut self, position: u64) -> Self {
            self.up_to_position = Some(position);
            self
        }

        $(#[$time])*
        pub fn up_to_time(mut self, micros: u64) -> Self {
            self.up_to_time = Some(micros);
            self
        }
    };
}

/// Options of a stream read: direction, start version, limit, filter, bound.
#[derive(Debug, Clone, Default)]
pub struct ReadStream {
    pub(crate) direction: Direction,
    pub(crate) from_version: Option<u64>,
    pub(crate) limit: Option<usize>,
    pub(crate) filter: Filter,
    pub(crate) up_to_position: Option<u64>,
    pub(crate) up_to_time: Option<u64>,
    pub(crate) to_version: Option<u64>,
    /// The first version the stream's retention serves (set by the reader).
    pub(crate) served_from: u64,
    /// The oldest `recorded_at` the stream's retention serves.
    pub(crate) served_since: u64,
}

impl ReadStream {
    /// Oldest first, from version 1.
    pub fn forward() -> Self {
        Self::default()
    }

    /// Newest first, from the stream's current version.
    pub fn backward() -> Self {
        ReadStream { direction: Direction::Backward, ..Self::default() }
    }

    /// Start at this version (inclusive).
    pub fn from_version(mut self, version: u64) -> Self {
        self.from_version = Some(version);
        self
    }

    shared_options! {
        /// Yield at most `limit` events.
        limit;
        /// Yield only events that pass `filter` (usually by event type).
        filter;
        /// Ignore events after this global position (a point-in-time read).
        up_to_position;
        /// Ignore events recorded after this time (microseconds since the Unix
        /// epoch): the stream as it was then.
        up_to_time;
    }

    /// Ignore versions after this one (inclusive bound): the stream as it was
    /// at that version.
    pub fn to_version(mut self, version: u64) -> Self {
        self.to_version = Some(version);
        self
    }

    /// The versions a read of a stream at `stream_version` walks: the one it
    /// starts at (forward from `from_version` or 1, backward from
    /// `from_version` or the end, whichever is lower) and the last one it may
    /// reach (`to_version` bounds it). A start of 0 or past the last version
    /// reads nothing.
    pub(crate) fn versions(&self, stream_version: u64) -> (u64, u64) {
        let last = self.to_version.map_or(stream_version, |v| stream_version.min(v));
        let start = match self.direction {
            Direction::Forward => self.from_version.unwrap_or(1).max(1),
            Direction::Backward => self.from_version.unwrap_or(last).min(last),
        };
        (start, last)
    }
}

/// Options of a read of the global log.
#[derive(Debug, Clone)]
pub struct ReadAll {
    pub(crate) from: u64,
    pub(crate) limit: Option<usize>,
    pub(crate) filter: Filter,
    pub(crate) up_to_position: Option<u64>,
    pub(crate) up_to_time: Option<u64>,
    pub(crate) threads: Option<usize>,
}

impl Default for ReadAll {
    fn default() -> Self {
        ReadAll {
            from: 1,
            limit: None,
            filter: Filter::default(),
            up_to_position: None,
            up_to_time: None,
            threads: None,
        }
    }
}

impl ReadAll {
    /// The whole log from position 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start at this position (inclusive).
    pub fn from_position(position: u64) -> Self {
        ReadAll { from: position.max(1), ..Self::default() }
    }

    shared_options! {
        /// Yield at most `limit` events.
        limit;
        /// Yield only events that pass `filter`.
        filter;
        /// Stop after this position (inclusive).
        up_to_position;
        /// Stop after the last event recorded at or before this time
        /// (microseconds since the Unix epoch).
        up_to_time;
    }

    /// How many threads [`Reader::scan_all`] checks records on, the
    /// caller's included (at least 1; default: the machine's cores, at most
    /// 4). [`Reader::all`] always checks on the caller's thread.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }
}

/// What the store knows about one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamInfo {
    /// The stream id.
    pub stream_id: String,
    /// Number of events (the version of the last one).
    pub version: u64,
    /// Global position of the last event.
    pub last_position: u64,
    /// When the first event was recorded (µs since the epoch).
    pub created_at: u64,
    /// When the last event was recorded (µs since the epoch).
    pub updated_at: u64,
}

/// A consistent read-only view of the store.
///
/// It holds one LMDB read transaction: everything it reads is as of the
/// moment it was made, while the writer goes on. It can be sent to another
/// thread. Keep it short-lived: an open read transaction stops LMDB from
/// reusing pages, so the file grows while it lives. For whole-log or
/// whole-stream work use [`Store::read_all_batched`](crate::Store::read_all_batched)
/// and [`Store::read_stream_batched`](crate::Store::read_stream_batched),
/// which renew their transaction between batches.
pub struct Reader {
    txn: RoTxn<'static, WithoutTls>,
    dbs: Dbs,
}

impl Reader {
    pub(crate) fn new(txn: RoTxn<'static, WithoutTls>, dbs: Dbs) -> Self {
        Reader { txn, dbs }
    }

    /// One of the databases beside the log, for the feature that keeps its
    /// data there, read in this snapshot.
    pub(crate) fn side_table(&self, table: Table) -> (&RoTxn<'static, WithoutTls>, Db) {
        (&self.txn, self.dbs.table(table))
    }

    /// Every database of the store in this snapshot, for `verify`, which
    /// checks them all against each other.
    pub(crate) fn raw(&self) -> (&RoTxn<'static, WithoutTls>, Dbs) {
        (&self.txn, self.dbs)
    }

    /// The index terms a read with `filter` walks, or `None` when it walks
    /// the log: the filter names no type, category or tag, or the store's
    /// indexes are not built (a format-1 store opened read-only).
    pub(crate) fn index_terms(&self, filter: &Filter) -> Option<Vec<Vec<u8>>> {
        self.dbs.index?;
        indexed::driving_terms(filter)
    }

    /// Whether the stream's lifecycle or retention hides any of its events.
    pub(crate) fn stream_hides_events(&self, stream: &str) -> Result<bool> {
        Ok(served::meta_of(self, stream)?.is_some_and(|m| m.hides_any()))
    }

    /// Whether a read with `filter` walks the indexes (see
    /// [`ReadAll::filter`]).
    pub fn uses_index(&self, filter: &Filter) -> bool {
        self.index_terms(filter).is_some()
    }

    /// Position of the last event (0 for an empty store).
    ///
    /// It is the last key of `events`, checked against the position its
    /// record states: a flipped bit in that key would otherwise move the
    /// head, and every read bounded by it would end early without a word.
    pub fn head(&self) -> Result<u64> {
        match self.dbs.events.last(&self.txn)? {
            Some((k, v)) => {
                let position = parse_position_key(k)?;
                let stated = record::stated_position(position, v)?;
                if stated != position {
                    return Err(Error::corruption(
                        position,
                        format!("the last key of the log says position {position}, its record says {stated}"),
                    ));
                }
                Ok(position)
            }
            None => Ok(0),
        }
    }

    /// The event at `position`, if any (`None` past the head, for 0, and
    /// for a position scavenging removed: [`Reader::is_removed`] tells).
    /// Any other position within the log that is not stored is damage:
    /// [`Error::Corruption`], never `None`.
    pub fn event(&self, position: u64) -> Result<Option<EventRef<'_>>> {
        match self.dbs.events.get(&self.txn, &position_key(position))? {
            Some(v) => record::decode(position, v).map(Some),
            None if position >= 1 && position <= self.head()? && !self.is_removed(position)? => {
                Err(Error::corruption(position, "position missing from the log and not recorded as removed"))
            }
            None => Ok(None),
        }
    }

    /// Whether scavenging removed the event at `position` (see
    /// `docs/forgetting.md`): positions are never reused, and the store
    /// keeps a durable record of the ones it removed, so that a removed
    /// event is never taken for a damaged one.
    pub fn is_removed(&self, position: u64) -> Result<bool> {
        Ok(crate::lmdb::removed::range_holding(&self.txn, self.dbs.removed, position)?.is_some())
    }

    /// Whether the hole `first..=last` between stored records is exactly
    /// what scavenging removed.
    pub(crate) fn is_removed_range(&self, first: u64, last: u64) -> Result<bool> {
        crate::lmdb::removed::is_removed(&self.txn, self.dbs.removed, first, last)
    }

    /// The event with this id, if any.
    pub fn event_by_id(&self, id: Uuid) -> Result<Option<EventRef<'_>>> {
        let Some(v) = self.dbs.event_ids.get(&self.txn, id.as_bytes())? else { return Ok(None) };
        if v.len() != 8 {
            return Err(Error::index("event_ids", format!("value of {} bytes for {id}", v.len())));
        }
        let position = le_u64(v);
        match self.event(position)? {
            Some(e) if e.event_id() == id => Ok(Some(e)),
            _ => Err(Error::index(
                "event_ids",
                format!("{id} points at position {position}, which does not hold it"),
            )),
        }
    }

    pub(crate) fn head_of(&self, stream: &str) -> Result<Option<StreamHead>> {
        match self.dbs.streams.get(&self.txn, stream.as_bytes())? {
            Some(v) => StreamHead::decode(v).map(Some),
            None => Ok(None),
        }
    }

    /// The stream's version: its number of events, 0 when it does not exist.
    pub fn stream_version(&self, stream: &str) -> Result<u64> {
        Ok(self.head_of(stream)?.map_or(0, |h| h.version))
    }

    /// The stream's version as of log position `position`: how many of its
    /// events are at or before that position (0 when none). Walks the
    /// stream's index runs from the newest and reads no record, so it costs
    /// one index entry per run after `position`.
    pub fn stream_version_at(&self, stream: &str, position: u64) -> Result<u64> {
        let Some(h) = self.head_of(stream)? else { return Ok(0) };
        if h.last_position <= position {
            return Ok(h.version);
        }
        let start = stream_version_key(h.stream_no, 0);
        let end = stream_version_key(h.stream_no, u64::MAX);
        let range = (Bound::Included(&start[..]), Bound::Included(&end[..]));
        for item in self.dbs.stream_index.rev_range(&self.txn, &range)? {
            let (k, v) = item?;
            let (_, first_version) = parse_stream_version_key("stream_index", k)?;
            let run = Run::decode(v)?;
            if run.first_position <= position {
                // A run's events sit at consecutive positions.
                let last = run.last_version(first_version)?;
                let in_run = position.saturating_sub(run.first_position).min(run.count.saturating_sub(1));
                return Ok(first_version.saturating_add(in_run).min(last));
            }
        }
        Ok(0)
    }

    /// What the store knows about `stream`, or `None` when it has no events.
    pub fn stream_info(&self, stream: &str) -> Result<Option<StreamInfo>> {
        Ok(self.head_of(stream)?.map(|h| info(stream.to_string(), h)))
    }

    /// Streams whose id starts with `prefix`, in id order, after `after`
    /// (exclusive; for paging), at most `limit`.
    pub fn streams(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<StreamInfo>> {
        let lower = match after {
            Some(a) if a.as_bytes() >= prefix.as_bytes() && !a.is_empty() => Bound::Excluded(a.as_bytes()),
            // LMDB rejects an empty key, so "from the start" is unbounded.
            _ if prefix.is_empty() => Bound::Unbounded,
            _ => Bound::Included(prefix.as_bytes()),
        };
        let mut out = Vec::new();
        for item in self.dbs.streams.range(&self.txn, &(lower, Bound::Unbounded))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            let id = std::str::from_utf8(k).map_err(|_| Error::index("streams", "stream id is not UTF-8"))?;
            let head = StreamHead::decode(v)?;
            self.check_head(id, &head)?;
            // A deleted stream is not listed (a soft-deleted one again after
            // its next append).
            if served::meta_of(self, id)?.is_some_and(|m| m.deleted || m.tombstoned) {
                continue;
            }
            out.push(info(id.to_string(), head));
        }
        Ok(out)
    }

    /// Checks a listed head against the log: its last event must be this
    /// stream's, at the head's version and time. Heads and stream ids carry
    /// no checksum; the record does, so a damaged head or id is
    /// `IndexCorruption` instead of a listing that looks right.
    fn check_head(&self, id: &str, head: &StreamHead) -> Result<()> {
        let last = self.event(head.last_position)?;
        match last {
            Some(e)
                if e.stream_id() == id
                    && e.version() == head.version
                    && e.recorded_at() == head.updated_at =>
            {
                Ok(())
            }
            // Every event of the stream was scavenged: nothing to check
            // the head against but the record of what was removed.
            None if self.is_removed(head.last_position)? => Ok(()),
            _ => Err(Error::index(
                "streams",
                format!(
                    "the head of {id:?} says version {} at position {}, which the log does not hold",
                    head.version, head.last_position
                ),
            )),
        }
    }

    /// Number of streams.
    pub fn stream_count(&self) -> Result<u64> {
        Ok(self.dbs.streams.len(&self.txn)?)
    }

    /// Events of one stream.
    ///
    /// The stream's head is checked against its last record first: the head
    /// carries no checksum, and a damaged version or position in it would
    /// otherwise end the read early without a word.
    pub fn stream(&self, stream: &str, mut options: ReadStream) -> Result<StreamIter<'_>> {
        let head = self.head_of(stream)?;
        if let Some(h) = &head {
            self.check_head(stream, h)?;
        }
        options.up_to_position = self.position_bound(options.up_to_position, options.up_to_time.take())?;
        if let Some(meta) = served::meta_of(self, stream)? {
            if meta.tombstoned {
                return Err(Error::StreamDeleted { stream: stream.to_string() });
            }
            options.served_from = meta.first_served_version(head.map_or(0, |h| h.version));
            options.served_since = meta.min_recorded_at(crate::vocab::now_micros());
        }
        StreamIter::new(self, stream, head, options)
    }

    /// The events that match a DCB `query` (see [`Query`](crate::Query)),
    /// in position order or, with [`ReadQuery::backward`], newest first. A
    /// query on tags or types walks the indexes, so the read costs what it
    /// returns. [`Store::read_query`](crate::Store::read_query) also
    /// answers the position to make an [`AppendCondition`](crate::AppendCondition) at.
    pub fn query(&self, query: &crate::vocab::Query, options: ReadQuery) -> Result<QueryIter<'_>> {
        QueryIter::new(self, query, options)
    }

    /// Events of the global log.
    pub fn all(&self, options: ReadAll) -> Result<AllIter<'_>> {
        let up_to = self.position_bound(options.up_to_position, options.up_to_time)?;
        AllIter::new(self, options, up_to)
    }

    /// Calls `f` with the events of the global log in position order, like
    /// [`Reader::all`], but checks the records (checksum and archive) on
    /// several threads while `f` runs on the caller's: the fastest way
    /// through a large part of the log. Returns how many events `f` saw.
    ///
    /// The first error stops the scan: a damaged record (after the events
    /// before it) or whatever `f` returns. Threads are used only when the
    /// scan is longer than one chunk of records; [`ReadAll::threads`] sets
    /// how many.
    ///
    /// ```
    /// use eventfold::{ExpectedVersion, NewEvent, ReadAll, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let events = (0..3).map(|i| NewEvent::json("Deposited", &serde_json::json!({ "amount": i })));
    /// store.append("account-1", ExpectedVersion::Any, events)?;
    ///
    /// let reader = store.read()?;
    /// let mut bytes = 0;
    /// let seen = reader.scan_all(ReadAll::new(), |event| -> eventfold::Result<()> {
    ///     bytes += event.payload().len();
    ///     Ok(())
    /// })?;
    /// assert_eq!(seen, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scan_all<'t, E, F>(&'t self, options: ReadAll, f: F) -> std::result::Result<u64, E>
    where
        E: From<Error>,
        F: FnMut(EventRef<'t>) -> std::result::Result<(), E>,
    {
        let threads = options.threads.unwrap_or_else(scan::default_threads);
        scan::scan_all(self, options, threads, f)
    }

    /// The last position a read bounded by `up_to_position` and by
    /// `up_to_time` may yield: the lower of the position and the last
    /// position recorded by the time; `None` when neither bounds the read.
    pub(crate) fn position_bound(
        &self,
        up_to_position: Option<u64>,
        up_to_time: Option<u64>,
    ) -> Result<Option<u64>> {
        match up_to_time {
            Some(t) => {
                let p = self.last_position_at(t)?;
                Ok(Some(up_to_position.map_or(p, |u| u.min(p))))
            }
            None => Ok(up_to_position),
        }
    }

    /// The position of the last event recorded at or before `micros`
    /// (0 when every event is later). `recorded_at` never decreases along
    /// positions, so this is a binary search.
    pub fn last_position_at(&self, micros: u64) -> Result<u64> {
        let (mut lo, mut hi) = (0u64, self.head()?);
        while lo < hi {
            let mid = lo.saturating_add(hi.saturating_sub(lo).div_ceil(2));
            // A removed position has no time: the first stored record at
            // or after it stands in for it (times never decrease, and the
            // head is never removed, so there is one at or below `hi`).
            let (at, v) = self.stored_from(mid)?;
            if record::recorded_at(at, v)? <= micros {
                lo = at;
            } else {
                hi = mid.saturating_sub(1);
            }
        }
        Ok(lo)
    }
}

impl Reader {
    /// The first stored record at or after `position`, which must be
    /// within the log: `position` itself, or the first after the removed
    /// range that holds it.
    fn stored_from(&self, position: u64) -> Result<(u64, &[u8])> {
        if let Some(v) = self.dbs.events.get(&self.txn, &position_key(position))? {
            return Ok((position, v));
        }
        let missing =
            || Error::corruption(position, "position missing from the log and not recorded as removed");
        let Some((_, last)) = crate::lmdb::removed::range_holding(&self.txn, self.dbs.removed, position)?
        else {
            return Err(missing());
        };
        let next = last.saturating_add(1);
        match self.dbs.events.get(&self.txn, &position_key(next))? {
            Some(v) => Ok((next, v)),
            None => Err(missing()),
        }
    }
}

fn info(stream_id: String, h: StreamHead) -> StreamInfo {
    StreamInfo {
        stream_id,
        version: h.version,
        last_position: h.last_position,
        created_at: h.created_at,
        updated_at: h.updated_at,
    }
}
