//! Keys and values of the `index` database: the secondary indexes by event
//! type, by category and by tag (see `docs/format.md`).
//!
//! An entry is a run of consecutive positions whose events share a term:
//! key `[kind][term][0x00][first position u64 BE]`, value `[count u64 LE]
//! [checksum u64 LE]`. Terms are names and tags, which hold no control
//! character, so the `0x00` ends the term and a term's runs are one range
//! of keys in position order. A run instead of an entry per event keeps a
//! bulk load of one type to a few puts per commit.

use crate::lmdb::env::Db;
use crate::lmdb::keys::{be_u64, le_u64};
use crate::vocab::{Error, Result};

/// Which index an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum IndexKind {
    /// By event type.
    EventType,
    /// By the stream's category.
    Category,
    /// By tag.
    Tag,
}

impl IndexKind {
    /// The byte that starts the index's keys.
    pub(crate) fn byte(self) -> u8 {
        match self {
            IndexKind::EventType => 1,
            IndexKind::Category => 2,
            IndexKind::Tag => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(IndexKind::EventType),
            2 => Some(IndexKind::Category),
            3 => Some(IndexKind::Tag),
            _ => None,
        }
    }

    /// The name used in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            IndexKind::EventType => "event type",
            IndexKind::Category => "category",
            IndexKind::Tag => "tag",
        }
    }
}

/// The start of every key of one term: `[kind][term][0x00]`.
pub(crate) fn term_prefix(kind: IndexKind, term: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(term.len().saturating_add(10));
    write_prefix(&mut k, kind, term);
    k
}

/// [`term_prefix`] into `out`, replacing what it held.
pub(crate) fn write_prefix(out: &mut Vec<u8>, kind: IndexKind, term: &str) {
    out.clear();
    out.push(kind.byte());
    out.extend_from_slice(term.as_bytes());
    out.push(0);
}

/// The key of the run of `prefix`'s term that starts at `first`.
pub(crate) fn run_key(prefix: &[u8], first: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len().saturating_add(8));
    k.extend_from_slice(prefix);
    k.extend_from_slice(&first.to_be_bytes());
    k
}

/// Whether `key` is a run key of the term `prefix` starts.
pub(crate) fn is_run_of(key: &[u8], prefix: &[u8]) -> bool {
    key.len() == prefix.len().saturating_add(8) && key.starts_with(prefix)
}

/// A key taken apart: its index, its term and its run's first position.
pub(crate) fn parse_run_key(key: &[u8]) -> Result<(IndexKind, &str, u64)> {
    let bad = |why: &str| Error::index("index", format!("key {:?}: {why}", String::from_utf8_lossy(key)));
    let n = key.len();
    if n < 10 {
        return Err(bad("too short for a run key"));
    }
    let kind = IndexKind::from_byte(key[0]).ok_or_else(|| bad("unknown index kind"))?;
    let (head, first) = key.split_at(n.saturating_sub(8));
    if head.last() != Some(&0) {
        return Err(bad("the term is not followed by a zero byte"));
    }
    let term =
        std::str::from_utf8(&head[1..head.len().saturating_sub(1)]).map_err(|_| bad("term is not UTF-8"))?;
    if term.is_empty() || term.contains('\0') {
        return Err(bad("empty term, or a zero byte inside it"));
    }
    let first = be_u64(first);
    if first == 0 {
        return Err(bad("a run cannot start at position 0"));
    }
    Ok((kind, term, first))
}

/// The value of a run of `count` events under `key`: the count and a
/// checksum over both, so a damaged count (or a value found under another
/// key) is reported rather than served as a shorter or longer run.
pub(crate) fn run_value(key: &[u8], count: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&count.to_le_bytes());
    v[8..].copy_from_slice(&value_sum(key, count).to_le_bytes());
    v
}

fn value_sum(key: &[u8], count: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&count.to_le_bytes(), xxhash_rust::xxh3::xxh3_64(key))
}

/// The count of the run under `key`; damage when the value fails its
/// checksum or counts no event.
pub(crate) fn parse_run_value(key: &[u8], value: &[u8]) -> Result<u64> {
    let bad = |why: &str| Error::index("index", format!("run {:?}: {why}", String::from_utf8_lossy(key)));
    if value.len() != 16 {
        return Err(bad("value is not 16 bytes"));
    }
    let count = le_u64(&value[..8]);
    if le_u64(&value[8..]) != value_sum(key, count) {
        return Err(bad("checksum mismatch"));
    }
    if count == 0 {
        return Err(bad("a run of no events"));
    }
    Ok(count)
}

/// The terms whose runs hold every event a DCB `query` can match, or
/// `None` when it matches every event. An item with tags is found through
/// its first tag (the others are checked on the event), an item without
/// through its types.
pub(crate) fn query_prefixes(query: &crate::vocab::Query) -> Option<Vec<Vec<u8>>> {
    if query.matches_all() {
        return None;
    }
    let mut out = Vec::new();
    for item in &query.items {
        match item.tags.first() {
            Some(tag) => out.push(term_prefix(IndexKind::Tag, tag)),
            None => out.extend(item.types.iter().map(|t| term_prefix(IndexKind::EventType, t))),
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// The stored runs of one term from the run that covers position `from`
/// on, in position order: `(first position, count)`.
pub(crate) struct Runs<'t> {
    range: heed::RoRange<'t, heed::types::Bytes, heed::types::Bytes>,
    prefix: Vec<u8>,
    done: bool,
}

impl<'t> Runs<'t> {
    pub(crate) fn new(txn: &'t heed::RoTxn, db: Db, prefix: Vec<u8>, from: u64) -> Result<Self> {
        // The run that covers `from` starts at or before it.
        let start = match db.get_lower_than_or_equal_to(txn, &run_key(&prefix, from))? {
            Some((k, _)) if is_run_of(k, &prefix) => k.to_vec(),
            _ => run_key(&prefix, from),
        };
        let range = (std::ops::Bound::Included(&start[..]), std::ops::Bound::Unbounded);
        Ok(Runs { range: db.range(txn, &range)?, prefix, done: false })
    }
}

impl Iterator for Runs<'_> {
    type Item = Result<(u64, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = match self.range.next()? {
            Ok((k, v)) if is_run_of(k, &self.prefix) => {
                let first = be_u64(&k[self.prefix.len()..]);
                parse_run_value(k, v).and_then(|count| match first.checked_add(count) {
                    Some(_) => Ok(Some((first, count))),
                    None => Err(Error::index("index", "a run goes past the last position there can be")),
                })
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e.into()),
        };
        match step {
            Ok(Some(run)) => Some(Ok(run)),
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

/// One term's runs, walked position by position.
struct TermCursor<'t> {
    runs: Runs<'t>,
    /// The current run as `first..end`.
    current: Option<(u64, u64)>,
    exhausted: bool,
}

impl TermCursor<'_> {
    /// The first position at or after `from` that the term covers.
    fn peek_from(&mut self, from: u64) -> Result<Option<u64>> {
        loop {
            if let Some((first, end)) = self.current
                && end > from
            {
                return Ok(Some(first.max(from)));
            }
            if self.exhausted {
                return Ok(None);
            }
            match self.runs.next().transpose()? {
                // `Runs` checked that `first + count` fits.
                Some((first, count)) => self.current = Some((first, first.saturating_add(count))),
                None => {
                    self.exhausted = true;
                    self.current = None;
                }
            }
        }
    }
}

/// Positions of the union of some terms, ascending, each once.
pub(crate) struct IndexedPositions<'t> {
    terms: Vec<TermCursor<'t>>,
    next: u64,
    end: u64,
}

impl<'t> IndexedPositions<'t> {
    /// The positions in `from..=end` that any of the terms `prefixes`
    /// covers.
    pub(crate) fn new(
        txn: &'t heed::RoTxn,
        db: Db,
        prefixes: Vec<Vec<u8>>,
        from: u64,
        end: u64,
    ) -> Result<Self> {
        let from = from.max(1);
        let terms = prefixes
            .into_iter()
            .map(|p| Ok(TermCursor { runs: Runs::new(txn, db, p, from)?, current: None, exhausted: false }))
            .collect::<Result<_>>()?;
        Ok(IndexedPositions { terms, next: from, end })
    }

    /// The next position, or `None` past the end.
    pub(crate) fn next_position(&mut self) -> Result<Option<u64>> {
        if self.next > self.end {
            return Ok(None);
        }
        let mut best: Option<u64> = None;
        for t in &mut self.terms {
            if let Some(p) = t.peek_from(self.next)? {
                best = Some(best.map_or(p, |b| b.min(p)));
            }
        }
        match best {
            Some(p) if p <= self.end => {
                self.next = p.saturating_add(1);
                Ok(Some(p))
            }
            _ => {
                self.next = self.end.saturating_add(1);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_order_by_position() {
        let p = term_prefix(IndexKind::Tag, "student:42");
        let (a, b) = (run_key(&p, 7), run_key(&p, 300));
        assert!(a < b, "runs of one term sort by position");
        assert_eq!(parse_run_key(&a).unwrap(), (IndexKind::Tag, "student:42", 7));
        assert!(is_run_of(&a, &p));
        // A term that extends another is another range.
        assert!(!is_run_of(&run_key(&term_prefix(IndexKind::Tag, "student:420"), 7), &p));
        let v = run_value(&a, 5);
        assert_eq!(parse_run_value(&a, &v).unwrap(), 5);
        assert!(parse_run_value(&b, &v).is_err(), "a value under another key fails");
        let mut flipped = v;
        flipped[0] ^= 1;
        assert!(parse_run_value(&a, &flipped).is_err());
        assert!(parse_run_key(&[9, b'x', 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    }
}
