//! The secondary indexes, written by the writer in the same transaction as
//! the events (see `lmdb/index_keys.rs` for the layout).
//!
//! A batch gathers its index entries in an [`IndexBuffer`]: a run of
//! consecutive positions per term. At the end of the batch each term's
//! first run is merged into the term's last stored run when the two touch,
//! and the runs are written: a few puts per term and commit, however many
//! events share the term. A DCB condition checked in the batch reads the
//! stored runs and the buffer together ([`IndexBuffer::positions_after`]).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use heed::RwTxn;

use crate::lmdb::env::Db;
use crate::lmdb::index_keys::{
    IndexKind, block_key, block_of, block_runs, block_value, parse_block_value, write_prefix,
};
use crate::vocab::category_of;

/// A term's prefix and its blocks `(block, bits)`.
type Term = (Vec<u8>, Vec<(u64, u64)>);

/// The index entries of one batch, not yet written.
#[derive(Debug, Default)]
pub(crate) struct IndexBuffer {
    /// Each term's prefix and its blocks `(block, bits)`, in position
    /// order.
    entries: Vec<Term>,
    /// Term prefix → its place in `entries`.
    lookup: HashMap<Vec<u8>, usize, BuildHasherDefault<Fnv>>,
    /// The entry the previous event used for each of its terms (type,
    /// category, tags in order): the events of a request mostly share
    /// them, and a hit costs one comparison instead of a hash lookup.
    recent: Vec<usize>,
    /// Where a term's prefix is built for a lookup, so that only a term
    /// new to the batch allocates.
    scratch: Vec<u8>,
}

/// FNV-1a for the batch's term lookups: short keys, looked up for every
/// term of every event on the writer thread, where SipHash's resistance
/// to chosen keys buys nothing.
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Whether `prefix` is `[kind][term][0x00]`, compared in place.
fn is_prefix_of(prefix: &[u8], kind: IndexKind, term: &str) -> bool {
    prefix.len() == term.len().saturating_add(2)
        && prefix.first() == Some(&kind.byte())
        && prefix.last() == Some(&0)
        && prefix.get(1..prefix.len().saturating_sub(1)) == Some(term.as_bytes())
}

/// The terms an event is indexed under: its type, its stream's category
/// and each of its tags.
pub(crate) fn terms<'a>(
    stream_id: &'a str,
    event_type: &'a str,
    tags: impl Iterator<Item = &'a str> + 'a,
) -> impl Iterator<Item = (IndexKind, &'a str)> + 'a {
    [(IndexKind::EventType, event_type), (IndexKind::Category, category_of(stream_id))]
        .into_iter()
        .chain(tags.map(|t| (IndexKind::Tag, t)))
}

impl IndexBuffer {
    /// Records that the event at `position` has the given terms.
    pub(crate) fn add<'a>(&mut self, position: u64, terms: impl Iterator<Item = (IndexKind, &'a str)>) {
        for (slot, (kind, term)) in terms.enumerate() {
            let cached =
                self.recent.get(slot).copied().filter(|&i| {
                    self.entries.get(i).is_some_and(|(prefix, _)| is_prefix_of(prefix, kind, term))
                });
            let i = match cached {
                Some(i) => i,
                None => {
                    write_prefix(&mut self.scratch, kind, term);
                    match self.lookup.get(self.scratch.as_slice()) {
                        Some(&i) => i,
                        None => {
                            self.entries.push((self.scratch.clone(), Vec::new()));
                            let i = self.entries.len().saturating_sub(1);
                            self.lookup.insert(self.scratch.clone(), i);
                            i
                        }
                    }
                }
            };
            match self.recent.get_mut(slot) {
                Some(r) => *r = i,
                None => self.recent.push(i),
            }
            let Some((_, blocks)) = self.entries.get_mut(i) else { continue };
            let (block, bit) = block_of(position);
            match blocks.last_mut() {
                Some((b, bits)) if *b == block => *bits |= 1 << bit,
                _ => blocks.push((block, 1 << bit)),
            }
        }
    }

    /// Writes the buffered blocks into `db`, merging a term's first one
    /// with the stored block it shares (the last commit's positions).
    pub(crate) fn flush(&self, wtxn: &mut RwTxn, db: Db) -> heed::Result<()> {
        // In key order, so the puts walk the B-tree's pages in order.
        let mut terms: Vec<&Term> = self.entries.iter().collect();
        terms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (prefix, blocks) in terms {
            for (k, &(block, bits)) in blocks.iter().enumerate() {
                let key = block_key(prefix, block);
                let mut bits = bits;
                if k == 0
                    && let Some(stored) = db.get(wtxn, &key)?
                {
                    // Rewriting a damaged block would drop its positions
                    // from every filtered read without a word: refuse, so
                    // the appends fail until `eventfold reindex`.
                    bits |= parse_block_value(&key, stored).map_err(|e| {
                        heed::Error::Io(std::io::Error::other(format!(
                            "{e}: run `eventfold verify`, then `eventfold reindex`"
                        )))
                    })?;
                }
                db.put(wtxn, &key, &block_value(&key, bits))?;
            }
        }
        Ok(())
    }

    /// Clears the buffered positions from the blocks stored in `db`
    /// (scavenging), deleting a block left empty. Every position must be
    /// in its stored block: one that is not means the index is damaged,
    /// and the step is refused rather than leaving it so.
    pub(crate) fn clear(&self, wtxn: &mut RwTxn, db: Db) -> Result<(), super::apply::Step> {
        use crate::vocab::Error;
        let refuse = |why: String| super::apply::Step::Reject(Error::index("index", why));
        for (prefix, blocks) in &self.entries {
            for &(block, bits) in blocks {
                let key = block_key(prefix, block);
                let stored = match db.get(wtxn, &key)? {
                    Some(v) => parse_block_value(&key, v).map_err(|e| refuse(e.to_string()))?,
                    None => 0,
                };
                if stored & bits != bits {
                    return Err(refuse(format!(
                        "block {block} of a term lacks positions being removed: run `eventfold verify`, then `eventfold reindex`"
                    )));
                }
                match stored & !bits {
                    0 => {
                        db.delete(wtxn, &key)?;
                    }
                    left => db.put(wtxn, &key, &block_value(&key, left))?,
                }
            }
        }
        Ok(())
    }

    /// The buffered runs of the term `prefix`, in position order.
    pub(crate) fn runs_of(&self, prefix: &[u8]) -> Vec<(u64, u64)> {
        match self.lookup.get(prefix).and_then(|&i| self.entries.get(i)) {
            Some((_, blocks)) => blocks.iter().flat_map(|&(block, bits)| block_runs(block, bits)).collect(),
            None => Vec::new(),
        }
    }
}

/// How many events the rebuild gathers before it writes their runs.
const REBUILD_CHUNK: u64 = 100_000;

/// Builds the secondary indexes of the whole log anew, in one write
/// transaction (LMDB serialises it with the writer's), and marks the store
/// as of format 2. A crash part-way leaves the store as it was; the next
/// open starts again. `progress` is called with the events indexed so far
/// and the log's head. Returns how many events were indexed.
pub(crate) fn rebuild(
    env: &heed::Env<heed::WithoutTls>,
    dbs: &crate::lmdb::env::Dbs,
    progress: &mut dyn FnMut(u64, u64),
) -> crate::vocab::Result<u64> {
    use crate::lmdb::keys::parse_position_key;
    let Some(db) = dbs.index else {
        return Err(crate::vocab::Error::internal("the index database is not open"));
    };
    let mut wtxn = env.write_txn()?;
    db.clear(&mut wtxn)?;
    let head = match dbs.events.last(&wtxn)? {
        Some((k, _)) => parse_position_key(k)?,
        None => 0,
    };
    let mut done = 0u64;
    let mut expected = 1u64;
    while expected <= head {
        // A chunk is gathered while a cursor borrows the transaction, then
        // written: the runs in memory stay bounded by the chunk.
        let mut buffer = IndexBuffer::default();
        let from = crate::lmdb::keys::position_key(expected);
        let range = (std::ops::Bound::Included(&from[..]), std::ops::Bound::Unbounded);
        for entry in dbs.events.range(&wtxn, &range)? {
            let (k, v) = entry?;
            let p = parse_position_key(k)?;
            if p != expected && !removed_hole(&wtxn, dbs, expected, p)? {
                return Err(crate::vocab::Error::corruption(
                    expected,
                    format!(
                        "position missing from the log and not recorded as removed (the next record is at {p})"
                    ),
                ));
            }
            expected = p.saturating_add(1);
            let e = crate::record::decode(p, v)?;
            buffer.add(p, terms(e.stream_id(), e.event_type(), e.tags()));
            done = done.saturating_add(1);
            if done.is_multiple_of(REBUILD_CHUNK) {
                break;
            }
        }
        buffer.flush(&mut wtxn, db)?;
        progress(done, head);
    }
    crate::lmdb::meta::set_indexed(&mut wtxn, dbs)?;
    wtxn.commit()?;
    Ok(done)
}

/// Whether the positions `expected..next` missing from the log are a
/// range scavenging removed.
fn removed_hole(
    txn: &heed::RoTxn<'_, heed::WithoutTls>,
    dbs: &crate::lmdb::env::Dbs,
    expected: u64,
    next: u64,
) -> crate::vocab::Result<bool> {
    Ok(next > expected
        && crate::lmdb::removed::is_removed(txn, dbs.removed, expected, next.saturating_sub(1))?)
}

impl super::batch::Writer {
    /// The first event after the condition's position that matches its
    /// query, among the committed events and those of this batch so far;
    /// `None` when there is none and the request may go on.
    pub(super) fn conflict(
        &self,
        wtxn: &RwTxn,
        ctx: &super::apply::BatchCtx,
        condition: &crate::vocab::AppendCondition,
    ) -> Result<Option<u64>, super::apply::Step> {
        use super::apply::Step;
        use crate::lmdb::index_keys::{IndexedPositions, query_prefixes};
        let after = condition.after.unwrap_or(0);
        if ctx.pos <= after {
            return Ok(None);
        }
        let query = &condition.fail_if_events_match;
        // A query that matches everything meets the first event after it.
        let Some(prefixes) = query_prefixes(query) else { return Ok(Some(after.saturating_add(1))) };
        let db = self
            .dbs
            .index
            .ok_or_else(|| Step::Reject(crate::vocab::Error::internal("the index database is not open")))?;
        let matches_at = |p: u64| -> Result<bool, Step> {
            let value = self.dbs.events.get(wtxn, &crate::lmdb::keys::position_key(p))?.ok_or_else(|| {
                Step::Reject(crate::vocab::Error::index(
                    "index",
                    format!("an index names position {p}, which is not in the log"),
                ))
            })?;
            let event = crate::record::decode(p, value).map_err(Step::Reject)?;
            // An event that reads no longer serve (a deleted stream, one
            // past its retention) does not conflict: a decider that read
            // the query could not have seen it, and would retry forever.
            Ok(query.matches(event.event_type(), event.tags()) && self.served(wtxn, ctx, &event)?)
        };
        // Positions up to the last commit are in the stored runs; the
        // batch's own are in its buffer.
        let committed = self.state.head;
        if committed > after {
            let mut positions =
                IndexedPositions::new(wtxn, db, prefixes.clone(), after.saturating_add(1), committed)
                    .map_err(Step::Reject)?;
            while let Some(p) = positions.next_position().map_err(Step::Reject)? {
                if matches_at(p)? {
                    return Ok(Some(p));
                }
            }
        }
        let mut in_batch: Vec<u64> = prefixes
            .iter()
            .flat_map(|prefix| ctx.index.runs_of(prefix))
            .flat_map(|(first, count)| first..first.saturating_add(count))
            .filter(|&p| p > after)
            .collect();
        in_batch.sort_unstable();
        in_batch.dedup();
        for p in in_batch {
            if matches_at(p)? {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// Whether reads serve `event`, by its stream's lifecycle and retention
    /// as this batch sees them (`read/served.rs` applies the same rules).
    fn served(
        &self,
        wtxn: &RwTxn,
        ctx: &super::apply::BatchCtx,
        event: &crate::record::EventRef<'_>,
    ) -> Result<bool, super::apply::Step> {
        use super::apply::Step;
        use crate::lmdb::stream_meta::StreamMeta;
        let Some(db) = self.dbs.stream_meta else { return Ok(true) };
        if event.event_type().starts_with('$') {
            return Ok(true);
        }
        let stream = event.stream_id();
        let meta = match db.get(wtxn, stream.as_bytes())? {
            Some(v) => StreamMeta::decode(stream.as_bytes(), v).map_err(Step::Reject)?,
            None => return Ok(true),
        };
        if !meta.hides_any() {
            return Ok(true);
        }
        let version = match ctx.heads.get(stream) {
            Some((h, _)) => h.version,
            None => match self.dbs.streams.get(wtxn, stream.as_bytes())? {
                Some(v) => crate::lmdb::keys::StreamHead::decode(v).map_err(Step::Reject)?.version,
                None => 0,
            },
        };
        Ok(!meta.tombstoned
            && event.version() >= meta.first_served_version(version)
            && event.recorded_at() >= meta.min_recorded_at(ctx.now))
    }
}
