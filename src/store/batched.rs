//! Long reads that renew their read transaction between bounded batches, so
//! a whole-log export or a whole-stream replay never pins LMDB pages for long.

use std::collections::VecDeque;

use super::Store;
use crate::read::{Direction, ReadAll, ReadStream};
use crate::vocab::Filter;
use crate::vocab::RecordedEvent;
use crate::vocab::Result;

/// The global log as owned events, read `batch` positions per transaction.
///
/// The read stops at the head as it was when the iterator was made (or at the
/// bound given), so it ends even while appends go on.
pub struct AllBatches {
    store: Store,
    next: u64,
    up_to: u64,
    filter: Filter,
    remaining: usize,
    batch: usize,
    buf: VecDeque<RecordedEvent>,
    failed: bool,
}

impl AllBatches {
    pub(crate) fn new(store: Store, o: ReadAll, batch: usize) -> Result<Self> {
        let reader = store.read()?;
        let mut up_to = reader.head()?;
        if let Some(u) = o.up_to_position {
            up_to = up_to.min(u);
        }
        if let Some(t) = o.up_to_time {
            up_to = up_to.min(reader.last_position_at(t)?);
        }
        Ok(AllBatches {
            store,
            next: o.from,
            up_to,
            filter: o.filter,
            remaining: o.limit.unwrap_or(usize::MAX),
            batch: batch.max(1),
            buf: VecDeque::new(),
            failed: false,
        })
    }

    fn refill(&mut self) -> Result<()> {
        let reader = self.store.read()?;
        let end = self.up_to.min(self.next.saturating_add((self.batch as u64).saturating_sub(1)));
        for event in reader.all(ReadAll::from_position(self.next).up_to_position(end))? {
            let event = event?;
            self.next = event.position().saturating_add(1);
            if self.filter.is_empty() || self.filter.matches(event.stream_id(), event.event_type()) {
                self.buf.push_back(event.to_owned()?);
            }
        }
        self.next = self.next.max(end.saturating_add(1));
        Ok(())
    }
}

impl Iterator for AllBatches {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.buf.is_empty() && !self.failed && self.remaining > 0 && self.next <= self.up_to {
            if let Err(e) = self.refill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        if self.remaining == 0 {
            return None;
        }
        let e = self.buf.pop_front()?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(Ok(e))
    }
}

/// One stream as owned events, read `batch` events per transaction.
pub struct StreamBatches {
    store: Store,
    stream: String,
    options: ReadStream,
    /// Next version to read; 0 or past `last` means done.
    next: u64,
    last: u64,
    remaining: usize,
    batch: usize,
    buf: VecDeque<RecordedEvent>,
    failed: bool,
}

impl StreamBatches {
    pub(crate) fn new(store: Store, stream: &str, mut o: ReadStream, batch: usize) -> Result<Self> {
        let reader = store.read()?;
        let mut last = reader.stream_version(stream)?;
        if let Some(v) = o.to_version {
            last = last.min(v);
        }
        if let Some(t) = o.up_to_time.take() {
            let p = reader.last_position_at(t)?;
            o.up_to_position = Some(o.up_to_position.map_or(p, |u| u.min(p)));
        }
        drop(reader);
        let next = match o.direction {
            Direction::Forward => o.from_version.unwrap_or(1).max(1),
            Direction::Backward => o.from_version.unwrap_or(last).min(last),
        };
        Ok(StreamBatches {
            store,
            stream: stream.to_string(),
            remaining: o.limit.unwrap_or(usize::MAX),
            options: o,
            next,
            last,
            batch: batch.max(1),
            buf: VecDeque::new(),
            failed: false,
        })
    }

    fn done(&self) -> bool {
        self.next == 0 || self.next > self.last
    }

    fn refill(&mut self) -> Result<()> {
        let reader = self.store.read()?;
        let mut o = self.options.clone();
        o.from_version = Some(self.next);
        o.limit = None;
        o.filter = Filter::default();
        let mut scanned = 0usize;
        for event in reader.stream(&self.stream, o)? {
            let event = event?;
            scanned = scanned.saturating_add(1);
            self.next = match self.options.direction {
                Direction::Forward => event.version().saturating_add(1),
                Direction::Backward => event.version().saturating_sub(1),
            };
            if self.options.filter.is_empty()
                || self.options.filter.matches(event.stream_id(), event.event_type())
            {
                self.buf.push_back(event.to_owned()?);
            }
            if scanned >= self.batch
                || (self.options.direction == Direction::Forward && self.next > self.last)
            {
                return Ok(());
            }
        }
        // The stream (or its bound) ended inside this batch.
        self.next = 0;
        Ok(())
    }
}

impl Iterator for StreamBatches {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.buf.is_empty() && !self.failed && self.remaining > 0 && !self.done() {
            if let Err(e) = self.refill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        if self.remaining == 0 {
            return None;
        }
        let e = self.buf.pop_front()?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(Ok(e))
    }
}
