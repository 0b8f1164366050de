//! DCB reads: the events of the log that match a [`Query`], forwards or
//! backwards, through the tag and type indexes.

use super::{Direction, Reader};
use crate::lmdb::index_keys::{IndexedPositions, query_prefixes};
use crate::record::EventRef;
use crate::vocab::{Error, Query, Result};

/// Options of a DCB read ([`Reader::query`]): where it starts, which way
/// it goes, how many events it yields.
#[derive(Debug, Clone, Default)]
pub struct ReadQuery {
    pub(crate) direction: Direction,
    pub(crate) from: Option<u64>,
    pub(crate) limit: Option<usize>,
}

impl ReadQuery {
    /// Oldest first, from position 1.
    pub fn forward() -> Self {
        Self::default()
    }

    /// Newest first, from the head.
    pub fn backward() -> Self {
        ReadQuery { direction: Direction::Backward, ..Self::default() }
    }

    /// Start at this position (inclusive): the first yielded forwards, the
    /// last considered backwards.
    pub fn from_position(mut self, position: u64) -> Self {
        self.from = Some(position);
        self
    }

    /// Yield at most `limit` events.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// The events of one DCB read, borrowed from the reader's snapshot.
pub struct QueryIter<'t> {
    reader: &'t Reader,
    query: Query,
    positions: Positions<'t>,
    remaining: usize,
    done: bool,
    served: super::served::Served,
}

enum Positions<'t> {
    /// Positions an index names, ascending.
    Index(IndexedPositions<'t>),
    /// Positions an index names, collected, yielded from the back.
    IndexBackward(Vec<u64>),
    /// Every position of a range, ascending or descending.
    Walk { next: u64, last: u64, direction: Direction },
}

impl<'t> QueryIter<'t> {
    pub(crate) fn new(reader: &'t Reader, query: &Query, options: ReadQuery) -> Result<Self> {
        let head = reader.head()?;
        let prefixes = match reader.raw().1.index {
            Some(_) => query_prefixes(query),
            None => None,
        };
        let positions = match (prefixes, options.direction) {
            (Some(prefixes), direction) => {
                let (txn, dbs) = reader.raw();
                let db = dbs.index.ok_or_else(|| Error::internal("the index database is not open"))?;
                match direction {
                    Direction::Forward => Positions::Index(IndexedPositions::new(
                        txn,
                        db,
                        prefixes,
                        options.from.unwrap_or(1),
                        head,
                    )?),
                    Direction::Backward => {
                        let last = options.from.map_or(head, |f| f.min(head));
                        let mut all = IndexedPositions::new(txn, db, prefixes, 1, last)?;
                        let mut found = Vec::new();
                        while let Some(p) = all.next_position()? {
                            found.push(p);
                        }
                        Positions::IndexBackward(found)
                    }
                }
            }
            (None, Direction::Forward) => Positions::Walk {
                next: options.from.unwrap_or(1).max(1),
                last: head,
                direction: Direction::Forward,
            },
            (None, Direction::Backward) => Positions::Walk {
                next: options.from.map_or(head, |f| f.min(head)),
                last: 1,
                direction: Direction::Backward,
            },
        };
        Ok(QueryIter {
            reader,
            query: query.clone(),
            positions,
            remaining: options.limit.unwrap_or(usize::MAX),
            done: false,
            served: super::served::Served::new(reader)?,
        })
    }

    fn next_position(&mut self) -> Result<Option<u64>> {
        match &mut self.positions {
            Positions::Index(p) => p.next_position(),
            Positions::IndexBackward(found) => Ok(found.pop()),
            Positions::Walk { next, last, direction } => {
                let p = *next;
                match direction {
                    Direction::Forward if p <= *last => *next = p.saturating_add(1),
                    Direction::Backward if p >= *last && p > 0 => *next = p.saturating_sub(1),
                    _ => return Ok(None),
                }
                Ok(Some(p))
            }
        }
    }

    fn step(&mut self) -> Result<Option<EventRef<'t>>> {
        while self.remaining > 0 {
            let Some(p) = self.next_position()? else { return Ok(None) };
            let event = self.reader.event(p)?.ok_or_else(|| {
                Error::index("index", format!("an index names position {p}, which is not in the log"))
            })?;
            if self.query.matches(event.event_type(), event.tags())
                && self.served.serves(self.reader, &event)?
            {
                self.remaining = self.remaining.saturating_sub(1);
                return Ok(Some(event));
            }
        }
        Ok(None)
    }
}

impl<'t> Iterator for QueryIter<'t> {
    type Item = Result<EventRef<'t>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
