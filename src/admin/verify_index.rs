//! `verify`'s check of the secondary indexes, both ways: every event is
//! covered by the runs of each of its terms, and the runs cover nothing
//! else.
//!
//! The first direction looks up each event's terms; the second needs no
//! record read when the counts agree: a position is named at most once
//! per term (one bit of one block), so if the blocks name exactly as many
//! positions as the events have terms, and every term of every event is
//! named, they name nothing else. Only when the counts disagree are the
//! blocks walked against the events, to name the entries that are wrong.

use crate::lmdb::index_keys::{
    BLOCK, IndexKind, block_key, block_of, block_runs, parse_block_key, parse_block_value, term_prefix,
};
use crate::read::Reader;
use crate::record::EventRef;
use crate::vocab::{Result, VerifyReport, category_of};

/// The area faults of the indexes are reported under.
const AREA: &str = "index";

/// Whether `event` has `term` of `kind`.
fn has_term(event: &EventRef<'_>, kind: IndexKind, term: &str) -> bool {
    match kind {
        IndexKind::EventType => event.event_type() == term,
        IndexKind::Category => category_of(event.stream_id()) == term,
        IndexKind::Tag => event.has_tag(term),
    }
}

/// Checks the indexes of a store that has them (format 2).
pub(super) fn walk_indexes(reader: &Reader, report: &mut VerifyReport) -> Result<()> {
    let (txn, dbs) = reader.raw();
    let Some(db) = dbs.index else { return Ok(()) };
    let head = reader.head()?;

    // The blocks: well formed, within the log; how many positions they name.
    let mut covered = 0u64;
    for entry in db.iter(txn)? {
        let (k, v) = entry?;
        report.term_blocks = report.term_blocks.saturating_add(1);
        let (kind, term, block) = match parse_block_key(k) {
            Ok(parsed) => parsed,
            Err(e) => {
                report.fault(AREA, None, None, e.to_string());
                continue;
            }
        };
        let bits = match parse_block_value(k, v) {
            Ok(bits) => bits,
            Err(e) => {
                report.fault(AREA, Some(block.saturating_mul(BLOCK)), None, e.to_string());
                continue;
            }
        };
        let last =
            block.saturating_mul(BLOCK).saturating_add(63u64.saturating_sub(u64::from(bits.leading_zeros())));
        if last > head {
            report.fault(
                AREA,
                Some(last),
                None,
                format!(
                    "the {} index names position {last} under {term:?}, past the head {head}",
                    kind.name()
                ),
            );
        }
        covered = covered.saturating_add(u64::from(bits.count_ones()));
    }

    // Every event, under each of its terms.
    let mut needed = 0u64;
    let mut unreadable = 0u64;
    for p in 1..=head {
        let event = match reader.event(p) {
            Ok(Some(event)) => event,
            // Scavenged, and recorded as removed: nothing to index.
            Ok(None) => continue,
            // A damaged or missing record is the log walk's fault to report;
            // its terms are unknown, so the counts below cannot agree.
            Err(_) => {
                unreadable = unreadable.saturating_add(1);
                continue;
            }
        };
        let terms = [(IndexKind::EventType, event.event_type()), (IndexKind::Category, event.category())];
        for (kind, term) in terms.into_iter().chain(event.tags().map(|t| (IndexKind::Tag, t))) {
            needed = needed.saturating_add(1);
            let (block, bit) = block_of(p);
            let key = block_key(&term_prefix(kind, term), block);
            let found = match db.get(txn, &key)? {
                Some(v) => parse_block_value(&key, v).is_ok_and(|bits| bits & (1 << bit) != 0),
                None => false,
            };
            if !found {
                report.fault(
                    AREA,
                    Some(p),
                    Some(event.stream_id()),
                    format!("the event is missing from the {} index under {term:?}", kind.name()),
                );
            }
        }
    }
    if covered != needed && unreadable == 0 {
        report.fault(
            AREA,
            None,
            None,
            format!("the index blocks name {covered} positions, the events' terms need {needed}"),
        );
        name_wrong_entries(reader, report)?;
    }
    Ok(())
}

/// Walks every block against the events it names and reports each position
/// whose event does not have the block's term.
fn name_wrong_entries(reader: &Reader, report: &mut VerifyReport) -> Result<()> {
    let (txn, dbs) = reader.raw();
    let Some(db) = dbs.index else { return Ok(()) };
    for entry in db.iter(txn)? {
        let (k, v) = entry?;
        let (Ok((kind, term, block)), Ok(bits)) = (parse_block_key(k), parse_block_value(k, v)) else {
            continue;
        };
        for (first, count) in block_runs(block, bits) {
            for p in first..first.saturating_add(count) {
                match reader.event(p) {
                    Ok(Some(e)) if has_term(&e, kind, term) => {}
                    Ok(Some(e)) => report.fault(
                        AREA,
                        Some(p),
                        Some(e.stream_id()),
                        format!(
                            "the {} index lists the event under {term:?}, which it does not have",
                            kind.name()
                        ),
                    ),
                    Ok(None) => report.fault(
                        AREA,
                        Some(p),
                        None,
                        format!(
                            "the {} index lists position {p} under {term:?}, which holds no event",
                            kind.name()
                        ),
                    ),
                    Err(_) => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use crate::lmdb::index_keys::{IndexKind, block_key, block_value, term_prefix};
    use crate::{ExpectedVersion, NewEvent, Store};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("a-1", ExpectedVersion::Any, [NewEvent::json("X", &1).with_tag("t:1")]).unwrap();
        store.append("b-1", ExpectedVersion::Any, [NewEvent::json("Y", &2)]).unwrap();
        store.append("a-2", ExpectedVersion::Any, [NewEvent::json("X", &3).with_tag("t:1")]).unwrap();
        (dir, store)
    }

    fn faults(store: &Store) -> Vec<String> {
        let report = store.verify().unwrap();
        report.faults.iter().filter(|f| f.area == "index").map(|f| f.to_string()).collect()
    }

    fn damage(store: &Store, f: impl FnOnce(&mut heed::RwTxn, crate::lmdb::env::Db)) {
        let (env, dbs) = store.env_and_dbs();
        let mut wtxn = env.write_txn().unwrap();
        f(&mut wtxn, dbs.index.unwrap());
        wtxn.commit().unwrap();
    }

    #[test]
    fn a_sound_store_has_sound_indexes() {
        let (_d, store) = store();
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.faults);
        // One block each: X, Y, categories a and b, tag t:1.
        assert_eq!(report.term_blocks, 5);
    }

    /// Guards both directions of the index check: a missing entry (an
    /// event a filtered read would skip) and an entry for the wrong event
    /// (which a read filters out again, but which says the index is not
    /// what the writer wrote) are both faults.
    #[test]
    fn missing_extra_and_damaged_entries_are_faults() {
        let (_d, store) = store();
        damage(&store, |w, db| {
            let key = block_key(&term_prefix(IndexKind::Tag, "t:1"), 0);
            db.put(w, &key, &block_value(&key, 1 << 1)).unwrap();
        });
        let text = faults(&store);
        assert!(
            text.iter().any(|f| f.contains("position 3") && f.contains("missing from the tag index")),
            "{text:?}"
        );

        let (_d, store) = self::store();
        damage(&store, |w, db| {
            let key = block_key(&term_prefix(IndexKind::EventType, "Y"), 0);
            db.put(w, &key, &block_value(&key, (1 << 2) | (1 << 3))).unwrap();
        });
        let text = faults(&store);
        assert!(text.iter().any(|f| f.contains("position 3") && f.contains("does not have")), "{text:?}");

        let (_d, store) = self::store();
        damage(&store, |w, db| {
            let key = block_key(&term_prefix(IndexKind::Category, "b"), 0);
            let mut v = block_value(&key, 1 << 2);
            v[0] = 9;
            db.put(w, &key, &v).unwrap();
        });
        let text = faults(&store);
        assert!(text.iter().any(|f| f.contains("checksum")), "{text:?}");
        // A filtered read meets the damaged run and says so.
        let reader = store.read().unwrap();
        let read: Vec<_> =
            reader.all(crate::ReadAll::new().filter(crate::Filter::new().category("b"))).unwrap().collect();
        assert!(read.iter().any(|r| matches!(r, Err(crate::Error::IndexCorruption { index: "index", .. }))));
    }
}
