//! Long reads that renew their read transaction between bounded batches, so
//! a whole-log export or a whole-stream replay never pins LMDB pages for long.

use std::collections::VecDeque;

use super::Store;
use crate::read::{Direction, ReadAll, ReadStream};
use crate::vocab::Filter;
use crate::vocab::RecordedEvent;
use crate::vocab::Result;

/// What a batched read keeps between its batches: the events read and not
/// yet yielded, how many more it may yield, and whether a batch failed.
struct Buffered {
    buf: VecDeque<RecordedEvent>,
    remaining: usize,
    failed: bool,
}

impl Buffered {
    fn new(limit: Option<usize>) -> Self {
        Buffered { buf: VecDeque::new(), remaining: limit.unwrap_or(usize::MAX), failed: false }
    }
}

/// A read that fills its buffer one batch (one read transaction) at a time.
trait Batched {
    fn buffered(&mut self) -> &mut Buffered;
    /// Whether the read has nothing more to read.
    fn ended(&self) -> bool;
    /// Reads the next batch into the buffer.
    fn refill(&mut self) -> Result<()>;
}

/// The `next` of a batched read: reads batches until one yields an event,
/// the read ends or the limit is reached; the first failed batch is yielded
/// as the error, after which the read yields what it holds and stops.
fn next_event(read: &mut impl Batched) -> Option<Result<RecordedEvent>> {
    loop {
        let b = read.buffered();
        if !b.buf.is_empty() || b.failed || b.remaining == 0 || read.ended() {
            break;
        }
        if let Err(e) = read.refill() {
            read.buffered().failed = true;
            return Some(Err(e));
        }
    }
    let b = read.buffered();
    if b.remaining == 0 {
        return None;
    }
    let e = b.buf.pop_front()?;
    b.remaining = b.remaining.saturating_sub(1);
    Some(Ok(e))
}

/// The global log as owned events, read `batch` positions per transaction.
///
/// The read stops at the head as it was when the iterator was made (or at the
/// bound given), so it ends even while appends go on.
pub struct AllBatches {
    store: Store,
    next: u64,
    up_to: u64,
    filter: Filter,
    batch: usize,
    out: Buffered,
}

impl AllBatches {
    pub(crate) fn new(store: Store, o: ReadAll, batch: usize) -> Result<Self> {
        let reader = store.read()?;
        let head = reader.head()?;
        let up_to = reader.position_bound(o.up_to_position, o.up_to_time)?.map_or(head, |u| head.min(u));
        Ok(AllBatches {
            store,
            next: o.from,
            up_to,
            filter: o.filter,
            batch: batch.max(1),
            out: Buffered::new(o.limit),
        })
    }
}

impl Batched for AllBatches {
    fn buffered(&mut self) -> &mut Buffered {
        &mut self.out
    }

    fn ended(&self) -> bool {
        self.next > self.up_to
    }

    fn refill(&mut self) -> Result<()> {
        let reader = self.store.read()?;
        if reader.uses_index(&self.filter) {
            // Through the index: a batch of matching events, not of positions.
            let o = ReadAll::from_position(self.next).up_to_position(self.up_to).filter(self.filter.clone());
            let mut taken = 0usize;
            for event in reader.all(o.limit(self.batch))? {
                let event = event?;
                self.next = event.position().saturating_add(1);
                self.out.buf.push_back(event.to_owned()?);
                taken = taken.saturating_add(1);
            }
            if taken < self.batch {
                self.next = self.up_to.saturating_add(1);
            }
            return Ok(());
        }
        let end = self.up_to.min(self.next.saturating_add((self.batch as u64).saturating_sub(1)));
        for event in reader.all(ReadAll::from_position(self.next).up_to_position(end))? {
            let event = event?;
            self.next = event.position().saturating_add(1);
            if event.passes(&self.filter) {
                self.out.buf.push_back(event.to_owned()?);
            }
        }
        self.next = self.next.max(end.saturating_add(1));
        Ok(())
    }
}

impl Iterator for AllBatches {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        next_event(self)
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
    batch: usize,
    out: Buffered,
}

impl StreamBatches {
    pub(crate) fn new(store: Store, stream: &str, mut o: ReadStream, batch: usize) -> Result<Self> {
        let reader = store.read()?;
        let (next, last) = o.versions(reader.stream_version(stream)?);
        o.up_to_position = reader.position_bound(o.up_to_position, o.up_to_time.take())?;
        drop(reader);
        Ok(StreamBatches {
            store,
            stream: stream.to_string(),
            out: Buffered::new(o.limit),
            options: o,
            next,
            last,
            batch: batch.max(1),
        })
    }
}

impl Batched for StreamBatches {
    fn buffered(&mut self) -> &mut Buffered {
        &mut self.out
    }

    fn ended(&self) -> bool {
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
            self.next = self.options.direction.after(event.version());
            if event.passes(&self.options.filter) {
                self.out.buf.push_back(event.to_owned()?);
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
        next_event(self)
    }
}
