//! The `meta` database: what kind of store this is, checked at every open.

use heed::{RoTxn, RwTxn};
use uuid::Uuid;

use super::env::Dbs;
use crate::lmdb::keys::le_u64;
use crate::vocab::{Error, Result};

/// The on-disk format version this build writes: 3, a log with tags,
/// secondary indexes and record format 3. A store of format 2 or 1 is read
/// as it is, and is brought to format 3 by its first writable open (for
/// format 1, by building its indexes).
pub const FORMAT_VERSION: u32 = 3;

/// The format of stores written before tags and indexes.
pub(crate) const FORMAT_V1: u32 = 1;
/// A store written before record format 3: read as it is; its first
/// writable open marks it 3, since new records will be of format 3 and a
/// build before them must refuse the store rather than call them damage.
pub(crate) const FORMAT_V2: u32 = 2;

const KEY_FORMAT: &[u8] = b"format_version";
const KEY_ARCHIVE: &[u8] = b"archive_format";
const KEY_STORE_ID: &[u8] = b"store_id";
const KEY_CREATED: &[u8] = b"created_at";
/// xxh3 of the store id and the creation time: the store's identity is
/// what read models are checked against, so a damaged one must be seen.
const KEY_IDENTITY_SUM: &[u8] = b"identity_sum";
pub(crate) const KEY_NEXT_STREAM: &[u8] = b"next_stream_no";

/// This build's effective rkyv archive format: endianness, alignment of
/// primitives, pointer width. Cargo unifies rkyv's format features across a
/// whole build, so an application may change them under us; a store written
/// with one format cannot be read with another.
pub fn archive_format() -> String {
    let endian = match rkyv::to_bytes::<rkyv::rancor::Error>(&1u32) {
        Ok(bytes) if bytes.first() == Some(&1) => "le",
        Ok(_) => "be",
        Err(_) => "unknown",
    };
    let align = std::mem::align_of::<rkyv::Archived<u64>>();
    let ptr = const { std::mem::size_of::<rkyv::Archived<usize>>() * 8 };
    format!("rkyv0.8 {endian} align{align} ptr{ptr}")
}

/// The greatest `format_version` taken for a newer store rather than for a
/// damaged entry.
const MAX_PLAUSIBLE_FORMAT: u32 = 1000;

/// Whether `s` reads like what [`archive_format`] writes:
/// `rkyv<version> <le|be> align<n> ptr<n>`, or `unknown` in place of the
/// endianness.
fn is_archive_format(s: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(s) else { return false };
    let parts: Vec<&str> = s.split(' ').collect();
    let number = |p: &str, prefix: &str| {
        p.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    parts.len() == 4
        && parts[0]
            .strip_prefix("rkyv")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        && matches!(parts[1], "le" | "be" | "unknown")
        && number(parts[2], "align")
        && number(parts[3], "ptr")
}

/// What `meta` says about a store.
#[derive(Debug, Clone)]
pub(crate) struct MetaInfo {
    /// [`FORMAT_VERSION`], or [`FORMAT_V1`] for a store whose indexes are
    /// not built yet.
    pub format: u32,
    pub store_id: Uuid,
    pub created_at: u64,
    pub next_stream_no: u64,
}

/// Writes the meta entries of a new store, or checks those of an existing one.
pub(crate) fn init_or_check(wtxn: &mut RwTxn, dbs: &Dbs, now: u64) -> Result<MetaInfo> {
    if dbs.meta.get(wtxn, KEY_FORMAT)?.is_none() {
        // A new store has no events: a log without its format entry is a
        // damaged `meta`, not a store to initialise (and write into).
        if dbs.events.first(wtxn)?.is_some() {
            return Err(Error::index("meta", "format_version missing from a store that holds events"));
        }
        dbs.meta.put(wtxn, KEY_FORMAT, &FORMAT_VERSION.to_le_bytes())?;
        dbs.meta.put(wtxn, KEY_ARCHIVE, archive_format().as_bytes())?;
        dbs.meta.put(wtxn, KEY_STORE_ID, Uuid::now_v7().as_bytes())?;
        dbs.meta.put(wtxn, KEY_CREATED, &now.to_le_bytes())?;
        dbs.meta.put(wtxn, KEY_NEXT_STREAM, &1u64.to_le_bytes())?;
    }
    let mut info = check(wtxn, dbs)?;
    if info.format == FORMAT_V2 {
        dbs.meta.put(wtxn, KEY_FORMAT, &FORMAT_VERSION.to_le_bytes())?;
        info.format = FORMAT_VERSION;
    }
    // Stores made before the checksum get it at their first writable open.
    if dbs.meta.get(wtxn, KEY_IDENTITY_SUM)?.is_none() {
        dbs.meta.put(wtxn, KEY_IDENTITY_SUM, &identity_sum(info.store_id, info.created_at).to_le_bytes())?;
    }
    Ok(info)
}

fn identity_sum(store_id: Uuid, created_at: u64) -> u64 {
    let mut bytes = [0u8; 24];
    bytes[..16].copy_from_slice(store_id.as_bytes());
    bytes[16..].copy_from_slice(&created_at.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Checks the format of an existing store and reads its identity.
pub(crate) fn check(rtxn: &RoTxn, dbs: &Dbs) -> Result<MetaInfo> {
    let format =
        dbs.meta.get(rtxn, KEY_FORMAT)?.ok_or_else(|| Error::index("meta", "format_version missing"))?;
    let format: [u8; 4] =
        format.try_into().map_err(|_| Error::index("meta", "format_version is not 4 bytes"))?;
    let format = u32::from_le_bytes(format);
    // Format versions count up from 1: zero, or a number no release will
    // reach, is a damaged entry rather than a newer store.
    if format == 0 || format > MAX_PLAUSIBLE_FORMAT {
        return Err(Error::index("meta", format!("format_version {format} is not a format version")));
    }
    if format != FORMAT_VERSION && format != FORMAT_V2 && format != FORMAT_V1 {
        return Err(Error::UnsupportedFormat { found: format, supported: FORMAT_VERSION });
    }
    let archive =
        dbs.meta.get(rtxn, KEY_ARCHIVE)?.ok_or_else(|| Error::index("meta", "archive_format missing"))?;
    let expected = archive_format();
    if archive != expected.as_bytes() && !is_archive_format(archive) {
        return Err(Error::index(
            "meta",
            format!("archive_format {:?} is not a format description", String::from_utf8_lossy(archive)),
        ));
    }
    if archive != expected.as_bytes() {
        return Err(Error::ArchiveFormatMismatch {
            found: String::from_utf8_lossy(archive).into_owned(),
            expected,
        });
    }
    let id = dbs.meta.get(rtxn, KEY_STORE_ID)?.ok_or_else(|| Error::index("meta", "store_id missing"))?;
    let store_id = Uuid::from_slice(id).map_err(|_| Error::index("meta", "store_id is not a UUID"))?;
    let created = dbs.meta.get(rtxn, KEY_CREATED)?.filter(|v| v.len() == 8);
    let next = dbs.meta.get(rtxn, KEY_NEXT_STREAM)?.filter(|v| v.len() == 8);
    let created_at = created.map(le_u64).ok_or_else(|| Error::index("meta", "created_at missing"))?;
    match dbs.meta.get(rtxn, KEY_IDENTITY_SUM)? {
        Some(v) if v.len() == 8 && le_u64(v) == identity_sum(store_id, created_at) => {}
        Some(_) => return Err(Error::index("meta", "store_id or created_at fails its checksum")),
        None => {} // a store made before the checksum, opened read-only
    }
    Ok(MetaInfo {
        format,
        store_id,
        created_at,
        next_stream_no: next.map(le_u64).ok_or_else(|| Error::index("meta", "next_stream_no missing"))?,
    })
}

/// Marks the store as of the current format: its indexes are complete. Written in
/// the transaction that completes them.
pub(crate) fn set_indexed(wtxn: &mut RwTxn, dbs: &Dbs) -> Result<()> {
    dbs.meta.put(wtxn, KEY_FORMAT, &FORMAT_VERSION.to_le_bytes())?;
    Ok(())
}

#[cfg(test)]
pub(crate) fn overwrite_for_test(
    wtxn: &mut RwTxn,
    dbs: &Dbs,
    format: Option<u32>,
    archive: Option<&str>,
) -> Result<()> {
    if let Some(f) = format {
        dbs.meta.put(wtxn, KEY_FORMAT, &f.to_le_bytes())?;
    }
    if let Some(a) = archive {
        dbs.meta.put(wtxn, KEY_ARCHIVE, a.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExpectedVersion, NewEvent, Store};

    fn damaged_store(f: impl FnOnce(&mut RwTxn, &Dbs)) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("s-1", ExpectedVersion::Any, [NewEvent::json("E", &1)]).unwrap();
        {
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            f(&mut wtxn, &dbs);
            wtxn.commit().unwrap();
        }
        drop(store);
        dir
    }

    /// Guards the reading of damaged `meta` entries as damage: a format
    /// version no release writes, an archive format that is no format
    /// description, a missing creation time, a flipped bit in the store id.
    /// Each was taken for a newer store, shown as 0, or (the store id) made
    /// the read models look like another store's.
    #[test]
    fn damaged_meta_entries_are_index_corruption() {
        type Damage = fn(&mut RwTxn, &Dbs);
        let cases: [(&str, Damage); 5] = [
            ("format 0", |w, d| d.meta.put(w, KEY_FORMAT, &0u32.to_le_bytes()).unwrap()),
            ("format huge", |w, d| d.meta.put(w, KEY_FORMAT, &0x0100_0001u32.to_le_bytes()).unwrap()),
            ("archive", |w, d| d.meta.put(w, KEY_ARCHIVE, b"rkyv0.8 le alig\xf38 ptr32").unwrap()),
            ("created_at", |w, d| assert!(d.meta.delete(w, KEY_CREATED).unwrap())),
            ("store_id", |w, d| {
                let mut id = d.meta.get(w, KEY_STORE_ID).unwrap().unwrap().to_vec();
                id[15] ^= 0x04;
                d.meta.put(w, KEY_STORE_ID, &id).unwrap()
            }),
        ];
        for (name, damage) in cases {
            let dir = damaged_store(damage);
            let err = Store::builder(dir.path()).open_read_only().unwrap_err();
            assert!(matches!(err, Error::IndexCorruption { index: "meta", .. }), "{name}: {err:?}");
        }
    }

    /// Guards the writable open of a store whose `meta` lost its format
    /// entry: it refuses instead of initialising `meta` again over a log
    /// (a write into a damaged page made LMDB abort on an assertion).
    #[test]
    fn a_log_without_a_format_entry_is_not_initialised_again() {
        let dir = damaged_store(|w, d| assert!(d.meta.delete(w, KEY_FORMAT).unwrap()));
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, Error::IndexCorruption { index: "meta", .. }), "{err:?}");
        assert!(err.to_string().contains("format_version missing"), "{err}");
    }
}
