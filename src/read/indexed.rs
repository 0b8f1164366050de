//! Reads of the global log through the secondary indexes: a filter on
//! event types, categories or tags walks the runs of its terms instead of
//! every record, so its cost follows what it returns.
//!
//! The index only chooses which positions to read: every record read is
//! checked as any other and passed through the whole filter again, so an
//! index entry that names the wrong event cannot make a read return it.

use super::Reader;
use super::iter::WalkEnd;
use crate::lmdb::index_keys::{IndexKind, IndexedPositions, term_prefix};
use crate::lmdb::keys::position_key;
use crate::vocab::{Error, Filter, Result};

/// The terms whose runs hold every event `filter` can pass, or `None` when
/// the filter names none (a stream prefix or one stream only) and the log
/// must be walked. Tags are usually the most selective, then types.
pub(crate) fn driving_terms(filter: &Filter) -> Option<Vec<Vec<u8>>> {
    let (kind, terms) = if !filter.tags.is_empty() {
        (IndexKind::Tag, &filter.tags)
    } else if !filter.event_types.is_empty() {
        (IndexKind::EventType, &filter.event_types)
    } else if !filter.categories.is_empty() {
        (IndexKind::Category, &filter.categories)
    } else {
        return None;
    };
    let mut prefixes: Vec<Vec<u8>> = terms.iter().map(|t| term_prefix(kind, t)).collect();
    prefixes.sort();
    prefixes.dedup();
    Some(prefixes)
}

/// The records at the positions an index names, as raw values.
pub(super) struct IndexedRecords<'t> {
    reader: &'t Reader,
    positions: IndexedPositions<'t>,
    end_state: WalkEnd,
}

impl<'t> IndexedRecords<'t> {
    pub(super) fn new(reader: &'t Reader, prefixes: Vec<Vec<u8>>, from: u64, end: u64) -> Result<Self> {
        Ok(IndexedRecords {
            reader,
            positions: {
                let (txn, dbs) = reader.raw();
                let db =
                    dbs.index.ok_or_else(|| Error::internal("an indexed read of a store without indexes"))?;
                IndexedPositions::new(txn, db, prefixes, from, end)?
            },
            end_state: WalkEnd::default(),
        })
    }

    pub(super) fn done(&self) -> bool {
        self.end_state.done
    }

    pub(super) fn take_error(&mut self) -> Option<Error> {
        self.end_state.error.take()
    }

    pub(super) fn next(&mut self) -> Option<(u64, &'t [u8])> {
        if self.end_state.done {
            return None;
        }
        let step = self.positions.next_position().and_then(|p| match p {
            None => Ok(None),
            Some(p) => {
                let (txn, dbs) = self.reader.raw();
                match dbs.events.get(txn, &position_key(p))? {
                    Some(v) => Ok(Some((p, v))),
                    None => Err(Error::index(
                        "index",
                        format!("an index names position {p}, which is not in the log"),
                    )),
                }
            }
        });
        self.end_state.settle(step)
    }
}

/// The records a read of the global log walks: all of them in order, or
/// those the index names for its filter.
pub(super) enum Records<'t> {
    Scan(super::iter::RawRecords<'t>),
    Index(IndexedRecords<'t>),
}

impl<'t> Records<'t> {
    /// The walk for a read of `from..=up_to` (the head when unbounded)
    /// that keeps what passes `filter`.
    pub(super) fn new(reader: &'t Reader, from: u64, up_to: Option<u64>, filter: &Filter) -> Result<Self> {
        match reader.index_terms(filter) {
            Some(prefixes) => {
                let head = reader.head()?;
                let end = up_to.map_or(head, |u| u.min(head));
                Ok(Records::Index(IndexedRecords::new(reader, prefixes, from, end)?))
            }
            None => Ok(Records::Scan(super::iter::RawRecords::new(reader, from, up_to)?)),
        }
    }

    pub(super) fn done(&self) -> bool {
        match self {
            Records::Scan(r) => r.done(),
            Records::Index(r) => r.done(),
        }
    }

    pub(super) fn take_error(&mut self) -> Option<Error> {
        match self {
            Records::Scan(r) => r.take_error(),
            Records::Index(r) => r.take_error(),
        }
    }

    pub(super) fn next(&mut self) -> Option<(u64, &'t [u8])> {
        match self {
            Records::Scan(r) => r.next(),
            Records::Index(r) => r.next(),
        }
    }

    /// Up to `n` records.
    pub(super) fn chunk(&mut self, n: usize) -> Vec<(u64, &'t [u8])> {
        let mut out = Vec::with_capacity(n.min(4096));
        while out.len() < n {
            match self.next() {
                Some(record) => out.push(record),
                None => break,
            }
        }
        out
    }
}
