//! The durable record of removed positions (the `removed` database): the
//! ranges of the log that scavenging took out, written in the same
//! transaction as the removal. A read that meets a hole asks it: a hole it
//! names was removed on purpose, any other hole is damage.
//!
//! Key: the range's first position, u64 BE. Value, 17 bytes:
//! `[format u8 = 1][last position u64 LE][checksum u64 LE]`, the checksum
//! `xxh3_64_with_seed(the 9 bytes before it, first position)`. Ranges never
//! overlap and never touch: a removal next to a range extends it, so every
//! hole between two stored records is exactly one range.

use std::ops::Bound;

use heed::{RoTxn, RwTxn, WithoutTls};

use crate::lmdb::env::Db;
use crate::lmdb::keys::{le_u64, parse_position_key, position_key};
use crate::vocab::{Error, Result};

const LEN: usize = 17;
const FORMAT: u8 = 1;

/// The value stored under `first` for the range `first..=last`.
pub(crate) fn encode(first: u64, last: u64) -> [u8; LEN] {
    let mut v = [0u8; LEN];
    v[0] = FORMAT;
    v[1..9].copy_from_slice(&last.to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64_with_seed(&v[..9], first);
    v[9..17].copy_from_slice(&sum.to_le_bytes());
    v
}

/// The range `(first, last)` of a stored entry, checked.
pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<(u64, u64)> {
    let first = parse_position_key(key)?;
    let bad = |why: &str| Error::index("removed", format!("range from position {first}: {why}"));
    if value.len() != LEN || value[0] != FORMAT {
        return Err(bad("not a removed range"));
    }
    if le_u64(&value[9..17]) != xxhash_rust::xxh3::xxh3_64_with_seed(&value[..9], first) {
        return Err(bad("checksum mismatch"));
    }
    let last = le_u64(&value[1..9]);
    if last < first || first == 0 {
        return Err(bad(&format!("ends at {last}, before it starts")));
    }
    Ok((first, last))
}

/// Whether the hole `first..=last` (the positions missing between two
/// stored records, or before the first) is recorded as removed: one
/// recorded range holds it and ends where it ends. A store that has never
/// scavenged has no holes.
pub(crate) fn is_removed(txn: &RoTxn<'_, WithoutTls>, db: Option<Db>, first: u64, last: u64) -> Result<bool> {
    Ok(range_holding(txn, db, first)?.is_some_and(|(_, l)| l == last))
}

/// The recorded range that holds `position`, if one does.
pub(crate) fn range_holding(
    txn: &RoTxn<'_, WithoutTls>,
    db: Option<Db>,
    position: u64,
) -> Result<Option<(u64, u64)>> {
    let Some(db) = db else { return Ok(None) };
    let key = position_key(position);
    let bounds = (Bound::Unbounded, Bound::Included(&key[..]));
    match db.rev_range(txn, &bounds)?.next() {
        Some(entry) => {
            let (k, v) = entry?;
            let (first, last) = decode(k, v)?;
            Ok((first <= position && position <= last).then_some((first, last)))
        }
        None => Ok(None),
    }
}

/// Records that `first..=last` was removed, merging it with the ranges it
/// touches. The caller removes the records in the same transaction.
pub(crate) fn record(wtxn: &mut RwTxn<'_>, db: Db, first: u64, last: u64) -> Result<()> {
    let (mut from, mut to) = (first, last);
    if let Some(before) = first.checked_sub(1).filter(|&b| b > 0)
        && let Some((f, l)) = range_holding(wtxn, Some(db), before)?
    {
        if l >= first {
            return Err(Error::internal(format!(
                "positions {first}..={last} overlap the removed range {f}..={l}"
            )));
        }
        db.delete(wtxn, &position_key(f))?;
        from = f;
    }
    if let Some(after) = last.checked_add(1)
        && let Some(v) = db.get(wtxn, &position_key(after))?
    {
        let (_, l) = decode(&position_key(after), v)?;
        db.delete(wtxn, &position_key(after))?;
        to = l;
    }
    db.put(wtxn, &position_key(from), &encode(from, to))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_catches_damage() {
        let v = encode(5, 9);
        assert_eq!(decode(&position_key(5), &v).unwrap(), (5, 9));
        assert!(decode(&position_key(6), &v).is_err(), "a range moved to another key");
        for i in 0..v.len() {
            let mut d = v;
            d[i] ^= 1;
            assert!(decode(&position_key(5), &d).is_err(), "byte {i}");
        }
    }

    #[test]
    fn ranges_merge_with_their_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::lmdb::env::main_settings(1 << 20, 8, crate::lmdb::Durability::NoSync, false);
        let env = crate::lmdb::env::open_env(dir.path(), &settings).unwrap();
        let [db] = crate::lmdb::env::create_named(&env, ["removed"]).unwrap();
        let mut wtxn = env.write_txn().unwrap();
        record(&mut wtxn, db, 3, 4).unwrap();
        record(&mut wtxn, db, 8, 8).unwrap();
        record(&mut wtxn, db, 5, 7).unwrap();
        record(&mut wtxn, db, 10, 12).unwrap();
        assert!(record(&mut wtxn, db, 12, 13).is_err(), "an overlap is refused");
        wtxn.commit().unwrap();
        let rtxn = env.read_txn().unwrap();
        assert!(is_removed(&rtxn, Some(db), 3, 8).unwrap());
        assert!(is_removed(&rtxn, Some(db), 5, 8).unwrap(), "a read may start inside a range");
        assert!(!is_removed(&rtxn, Some(db), 3, 7).unwrap(), "a hole ends where its range does");
        assert!(!is_removed(&rtxn, Some(db), 9, 9).unwrap());
        assert_eq!(range_holding(&rtxn, Some(db), 11).unwrap(), Some((10, 12)));
        assert_eq!(range_holding(&rtxn, Some(db), 9).unwrap(), None);
    }
}
