//! The `meta` database: what kind of store this is, checked at every open.

use heed::{RoTxn, RwTxn};
use uuid::Uuid;

use super::env::Dbs;
use crate::error::{Error, Result};
use crate::store::keys::le_u64;

/// The on-disk format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const KEY_FORMAT: &[u8] = b"format_version";
const KEY_ARCHIVE: &[u8] = b"archive_format";
const KEY_STORE_ID: &[u8] = b"store_id";
const KEY_CREATED: &[u8] = b"created_at";
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
    let ptr = std::mem::size_of::<rkyv::Archived<usize>>() * 8;
    format!("rkyv0.8 {endian} align{align} ptr{ptr}")
}

/// What `meta` says about a store.
#[derive(Debug, Clone)]
pub(crate) struct MetaInfo {
    pub store_id: Uuid,
    pub created_at: u64,
    pub next_stream_no: u64,
}

/// Writes the meta entries of a new store, or checks those of an existing one.
pub(crate) fn init_or_check(wtxn: &mut RwTxn, dbs: &Dbs, now: u64) -> Result<MetaInfo> {
    if dbs.meta.get(wtxn, KEY_FORMAT)?.is_none() {
        dbs.meta.put(wtxn, KEY_FORMAT, &FORMAT_VERSION.to_le_bytes())?;
        dbs.meta.put(wtxn, KEY_ARCHIVE, archive_format().as_bytes())?;
        dbs.meta.put(wtxn, KEY_STORE_ID, Uuid::now_v7().as_bytes())?;
        dbs.meta.put(wtxn, KEY_CREATED, &now.to_le_bytes())?;
        dbs.meta.put(wtxn, KEY_NEXT_STREAM, &1u64.to_le_bytes())?;
    }
    check(wtxn, dbs)
}

/// Checks the format of an existing store and reads its identity.
pub(crate) fn check(rtxn: &RoTxn, dbs: &Dbs) -> Result<MetaInfo> {
    let format =
        dbs.meta.get(rtxn, KEY_FORMAT)?.ok_or_else(|| Error::index("meta", "format_version missing"))?;
    let format: [u8; 4] =
        format.try_into().map_err(|_| Error::index("meta", "format_version is not 4 bytes"))?;
    let format = u32::from_le_bytes(format);
    if format != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat { found: format, supported: FORMAT_VERSION });
    }
    let archive =
        dbs.meta.get(rtxn, KEY_ARCHIVE)?.ok_or_else(|| Error::index("meta", "archive_format missing"))?;
    let expected = archive_format();
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
    Ok(MetaInfo {
        store_id,
        created_at: created.map(le_u64).unwrap_or(0),
        next_stream_no: next.map(le_u64).ok_or_else(|| Error::index("meta", "next_stream_no missing"))?,
    })
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
