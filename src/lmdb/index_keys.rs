//! Keys and values of the `index` database: the secondary indexes by event
//! type, by category and by tag (see `docs/format.md`).
//!
//! An entry is a block of 64 positions and which of them have a term: key
//! `[kind][term][0x00][block u64 BE]` (block = position / 64), value
//! `[bits u64 LE][checksum u64 LE]` (bit `i`: position `64 × block + i`).
//! Terms are names and tags, which hold no control character, so the
//! `0x00` ends the term and a term's blocks are one range of keys in
//! position order. A block instead of an entry per event keeps a log of
//! interleaved types to one put per term and 64 positions, and a sparse
//! tag to one entry per event, as small as a count would be.

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

/// Positions per block.
pub(crate) const BLOCK: u64 = 64;

/// The block that holds `position`, and its bit in the block.
pub(crate) fn block_of(position: u64) -> (u64, u64) {
    (position / BLOCK, position % BLOCK)
}

/// The key of block `block` of `prefix`'s term.
pub(crate) fn block_key(prefix: &[u8], block: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len().saturating_add(8));
    k.extend_from_slice(prefix);
    k.extend_from_slice(&block.to_be_bytes());
    k
}

/// Whether `key` is a block key of the term `prefix` starts.
pub(crate) fn is_block_of(key: &[u8], prefix: &[u8]) -> bool {
    key.len() == prefix.len().saturating_add(8) && key.starts_with(prefix)
}

/// A key taken apart: its index, its term and its block.
pub(crate) fn parse_block_key(key: &[u8]) -> Result<(IndexKind, &str, u64)> {
    let bad = |why: &str| Error::index("index", format!("key {:?}: {why}", String::from_utf8_lossy(key)));
    let n = key.len();
    if n < 11 {
        return Err(bad("too short for a block key"));
    }
    let kind = IndexKind::from_byte(key[0]).ok_or_else(|| bad("unknown index kind"))?;
    let (head, block) = key.split_at(n.saturating_sub(8));
    if head.last() != Some(&0) {
        return Err(bad("the term is not followed by a zero byte"));
    }
    let term =
        std::str::from_utf8(&head[1..head.len().saturating_sub(1)]).map_err(|_| bad("term is not UTF-8"))?;
    if term.is_empty() || term.contains('\0') {
        return Err(bad("empty term, or a zero byte inside it"));
    }
    Ok((kind, term, be_u64(block)))
}

/// The value of a block under `key`: its bits and a checksum over both,
/// so a flipped bit (or a value found under another key) is reported
/// rather than served as another set of positions.
pub(crate) fn block_value(key: &[u8], bits: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&bits.to_le_bytes());
    v[8..].copy_from_slice(&value_sum(key, bits).to_le_bytes());
    v
}

fn value_sum(key: &[u8], bits: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&bits.to_le_bytes(), xxhash_rust::xxh3::xxh3_64(key))
}

/// The bits of the block under `key`; damage when the value fails its
/// checksum, names no position, or names position 0 (never a position).
pub(crate) fn parse_block_value(key: &[u8], value: &[u8]) -> Result<u64> {
    let bad = |why: &str| Error::index("index", format!("block {:?}: {why}", String::from_utf8_lossy(key)));
    if value.len() != 16 {
        return Err(bad("value is not 16 bytes"));
    }
    let bits = le_u64(&value[..8]);
    if le_u64(&value[8..]) != value_sum(key, bits) {
        return Err(bad("checksum mismatch"));
    }
    if bits == 0 {
        return Err(bad("a block of no positions"));
    }
    let block = be_u64(&key[key.len().saturating_sub(8)..]);
    if block == 0 && bits & 1 != 0 {
        return Err(bad("position 0 is no position"));
    }
    if block.checked_mul(BLOCK).and_then(|p| p.checked_add(BLOCK - 1)).is_none() {
        return Err(bad("a block past the last position there can be"));
    }
    Ok(bits)
}

/// The runs of consecutive positions a block's bits name, in order.
pub(crate) fn block_runs(block: u64, mut bits: u64) -> Vec<(u64, u64)> {
    let base = block.saturating_mul(BLOCK);
    let mut out = Vec::new();
    while bits != 0 {
        let start = u64::from(bits.trailing_zeros());
        let ones = u64::from((bits >> start).trailing_ones());
        out.push((base.saturating_add(start), ones));
        // `start + ones` ≤ 64; a shift by 64 would overflow.
        let end = start.saturating_add(ones);
        bits = if end >= BLOCK { 0 } else { bits & (u64::MAX << end) };
    }
    out
}

/// The terms whose blocks hold every event a DCB `query` can match, or
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

/// The stored runs of one term from the block that holds position `from`
/// on, in position order: `(first position, count)`.
pub(crate) struct Runs<'t> {
    range: heed::RoRange<'t, heed::types::Bytes, heed::types::Bytes>,
    prefix: Vec<u8>,
    pending: std::vec::IntoIter<(u64, u64)>,
    done: bool,
}

impl<'t> Runs<'t> {
    pub(crate) fn new(txn: &'t heed::RoTxn, db: Db, prefix: Vec<u8>, from: u64) -> Result<Self> {
        let start = block_key(&prefix, block_of(from).0);
        let range = (std::ops::Bound::Included(&start[..]), std::ops::Bound::Unbounded);
        Ok(Runs { range: db.range(txn, &range)?, prefix, pending: Vec::new().into_iter(), done: false })
    }
}

impl Iterator for Runs<'_> {
    type Item = Result<(u64, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(run) = self.pending.next() {
                return Some(Ok(run));
            }
            if self.done {
                return None;
            }
            let step = match self.range.next() {
                None => Ok(None),
                Some(Ok((k, v))) if is_block_of(k, &self.prefix) => {
                    let block = be_u64(&k[self.prefix.len()..]);
                    parse_block_value(k, v).map(|bits| Some(block_runs(block, bits)))
                }
                Some(Ok(_)) => Ok(None),
                Some(Err(e)) => Err(e.into()),
            };
            match step {
                Ok(Some(runs)) => self.pending = runs.into_iter(),
                Ok(None) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
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
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_order_by_position() {
        let p = term_prefix(IndexKind::Tag, "student:42");
        let (a, b) = (block_key(&p, 0), block_key(&p, 4));
        assert!(a < b, "blocks of one term sort by position");
        assert_eq!(parse_block_key(&b).unwrap(), (IndexKind::Tag, "student:42", 4));
        assert!(is_block_of(&a, &p));
        // A term that extends another is another range.
        assert!(!is_block_of(&block_key(&term_prefix(IndexKind::Tag, "student:420"), 0), &p));
        let v = block_value(&b, 0b1011);
        assert_eq!(parse_block_value(&b, &v).unwrap(), 0b1011);
        assert!(parse_block_value(&a, &v).is_err(), "a value under another key fails");
        let mut flipped = v;
        flipped[0] ^= 1;
        assert!(parse_block_value(&b, &flipped).is_err());
        assert!(parse_block_value(&a, &block_value(&a, 1)).is_err(), "position 0 is none");
        assert!(parse_block_key(&[9, b'x', 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn a_block_names_its_runs() {
        assert_eq!(block_runs(2, 0b1011), [(128, 2), (131, 1)]);
        assert_eq!(block_runs(0, u64::MAX << 1), [(1, 63)]);
        assert_eq!(block_runs(1, 1 << 63), [(127, 1)]);
        assert_eq!(block_runs(1, u64::MAX), [(64, 64)]);
        assert!(block_runs(5, 0).is_empty());
    }
}
