//! Snapshots: a stream's folded state saved at a version, so a load reads the
//! latest snapshot and only the events after it.
//!
//! Snapshots live in the `snapshots` database of the main environment, keyed
//! by the stream's number and the snapshot's version (both big-endian, so a
//! stream's snapshots sort by version). They are written through the writer
//! thread like every other write.
//!
//! ## Value layout
//!
//! Fixed 24-byte header, little-endian, then the state bytes:
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0      | layout version, `1` |
//! | 1      | content type of the state (`0` JSON, `1` binary) |
//! | 2..4   | reserved, zero |
//! | 4..8   | state schema version, u32 |
//! | 8..16  | recorded_at: when the snapshot was saved, µs since the Unix epoch, u64 |
//! | 16..24 | xxh3-64 of the state bytes, u64 |
//! | 24..   | the state bytes |
//!
//! A snapshot is a cache of what the events already say: one that cannot be
//! read is never fatal to an aggregate load, which replays the stream instead.

use std::ops::Bound;

use crate::lmdb::env::{Dbs, Table};
use crate::lmdb::keys::{le_u64, parse_stream_version_key, stream_version_key};
use crate::read::Reader;
use crate::store::Store;
use crate::store::{Delete, Put, SideWrite, boxed};
use crate::vocab::ContentType;
use crate::vocab::{Error, Result};

/// The snapshot value layout this build writes and reads.
pub const SNAPSHOT_LAYOUT_VERSION: u8 = 1;

const HEADER_LEN: usize = 24;

/// A stream's state saved at one of its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The stream the state belongs to.
    pub stream_id: String,
    /// The stream version the state includes (events `1..=version`).
    pub version: u64,
    /// The schema version of the state's shape, compared with the code's on load.
    pub state_schema_version: u32,
    /// When the snapshot was saved, µs since the Unix epoch.
    pub recorded_at: u64,
    /// How the state bytes are encoded.
    pub content_type: ContentType,
    /// The state bytes.
    pub state: Vec<u8>,
}

/// A snapshot to save: see [`Store::save_snapshot`]. Build it with
/// [`NewSnapshot::json`] or [`NewSnapshot::binary`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewSnapshot {
    /// The stream version the state includes.
    pub version: u64,
    /// The schema version of the state's shape.
    pub state_schema_version: u32,
    /// How the state bytes are encoded.
    pub content_type: ContentType,
    /// The state bytes.
    pub state: Vec<u8>,
}

impl NewSnapshot {
    /// A JSON snapshot of `state` at `version`.
    pub fn json<T: serde::Serialize + ?Sized>(
        stream: &str,
        version: u64,
        state_schema_version: u32,
        state: &T,
    ) -> Result<Self> {
        let state = serde_json::to_vec(state)
            .map_err(|e| Error::StateEncode { stream: stream.to_string(), reason: e.to_string() })?;
        Ok(NewSnapshot { version, state_schema_version, content_type: ContentType::Json, state })
    }

    /// A snapshot at `version` whose state is already-encoded bytes, stored
    /// as they are (content type [`ContentType::Binary`]).
    pub fn binary(version: u64, state_schema_version: u32, state: impl Into<Vec<u8>>) -> Self {
        NewSnapshot { version, state_schema_version, content_type: ContentType::Binary, state: state.into() }
    }
}

pub(crate) fn encode(s: &NewSnapshot, recorded_at: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN.saturating_add(s.state.len()));
    v.push(SNAPSHOT_LAYOUT_VERSION);
    v.push(s.content_type.to_byte());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&s.state_schema_version.to_le_bytes());
    v.extend_from_slice(&recorded_at.to_le_bytes());
    v.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&s.state).to_le_bytes());
    v.extend_from_slice(&s.state);
    v
}

/// Parses a stored value; the error is the reason it is unreadable.
pub(crate) fn decode(stream: &str, version: u64, value: &[u8]) -> std::result::Result<Snapshot, String> {
    if value.len() < HEADER_LEN {
        return Err(format!("value of {} bytes is shorter than the {HEADER_LEN}-byte header", value.len()));
    }
    if value[0] != SNAPSHOT_LAYOUT_VERSION {
        return Err(format!(
            "snapshot layout version {} (this build reads {SNAPSHOT_LAYOUT_VERSION})",
            value[0]
        ));
    }
    let content_type =
        ContentType::from_byte(value[1]).ok_or_else(|| format!("unknown content type {}", value[1]))?;
    let mut schema = [0u8; 4];
    schema.copy_from_slice(&value[4..8]);
    let state = &value[HEADER_LEN..];
    if xxhash_rust::xxh3::xxh3_64(state) != le_u64(&value[16..24]) {
        return Err("checksum mismatch".to_string());
    }
    Ok(Snapshot {
        stream_id: stream.to_string(),
        version,
        state_schema_version: u32::from_le_bytes(schema),
        recorded_at: le_u64(&value[8..16]),
        content_type,
        state: state.to_vec(),
    })
}

/// The newest snapshot of a stream at or below `max_version`, decoded or with
/// the reason it could not be: `(version, snapshot or reason)`.
pub(crate) type FoundSnapshot = (u64, std::result::Result<Snapshot, String>);

impl Reader {
    pub(crate) fn snapshot_at_or_below(
        &self,
        stream: &str,
        max_version: u64,
    ) -> Result<Option<FoundSnapshot>> {
        let Some(head) = self.head_of(stream)? else { return Ok(None) };
        // A snapshot holds the state of every event up to it, served or
        // not: a stream whose retention hides events is replayed instead.
        if self.stream_hides_events(stream)? {
            return Ok(None);
        }
        let key = stream_version_key(head.stream_no, max_version.min(head.version));
        let (txn, db) = self.side_table(Table::Snapshots);
        let Some((k, v)) = db.get_lower_than_or_equal_to(txn, &key)? else {
            return Ok(None);
        };
        let (no, version) = parse_stream_version_key("snapshots", k)?;
        if no != head.stream_no || version == 0 {
            return Ok(None);
        }
        Ok(Some((version, decode(stream, version, v))))
    }

    /// The versions at which `stream` has snapshots, oldest first.
    pub fn snapshot_versions(&self, stream: &str) -> Result<Vec<u64>> {
        let Some(head) = self.head_of(stream)? else { return Ok(Vec::new()) };
        let from = stream_version_key(head.stream_no, 0);
        let to = stream_version_key(head.stream_no, u64::MAX);
        let range = (Bound::Included(&from[..]), Bound::Included(&to[..]));
        let mut out = Vec::new();
        let (txn, db) = self.side_table(Table::Snapshots);
        for item in db.range(txn, &range)? {
            let (k, _) = item?;
            out.push(parse_stream_version_key("snapshots", k)?.1);
        }
        Ok(out)
    }

    /// The newest snapshot of `stream` at or below `max_version` (`u64::MAX`
    /// for the latest). A stored snapshot that cannot be read is
    /// [`Error::SnapshotInvalid`].
    pub fn snapshot(&self, stream: &str, max_version: u64) -> Result<Option<Snapshot>> {
        match self.snapshot_at_or_below(stream, max_version)? {
            None => Ok(None),
            Some((_, Ok(s))) => Ok(Some(s)),
            Some((version, Err(reason))) => {
                Err(Error::SnapshotInvalid { stream: stream.to_string(), version, reason })
            }
        }
    }
}

impl Store {
    /// Saves a snapshot of `stream` and then keeps only its newest `keep`
    /// snapshots (`keep` of 0 is taken as 1: the one just saved stays).
    ///
    /// The snapshot's version must be one the stream has reached. Saving at a
    /// version that already has a snapshot replaces it.
    pub fn save_snapshot(&self, stream: &str, snapshot: NewSnapshot, keep: usize) -> Result<()> {
        let reader = self.read()?;
        let head =
            reader.head_of(stream)?.ok_or_else(|| Error::StreamNotFound { stream: stream.to_string() })?;
        if snapshot.version == 0 || snapshot.version > head.version {
            return Err(Error::VersionOutOfRange {
                stream: stream.to_string(),
                requested: snapshot.version,
                current: head.version,
            });
        }
        let mut writes = vec![boxed(Put {
            table: Table::Snapshots,
            key: stream_version_key(head.stream_no, snapshot.version).to_vec(),
            value: encode(&snapshot, crate::vocab::now_micros()),
        })];
        drop(reader);
        // The oldest go first; the one being saved always stays, even when it
        // is older than the rest (a snapshot saved for a past version). The
        // writer prunes inside its transaction, so concurrent saves of one
        // stream cannot leave more than `keep`.
        let key = stream_version_key(head.stream_no, snapshot.version).to_vec();
        writes.push(boxed(KeepNewest { prefix: head.stream_no.to_be_bytes().to_vec(), keep, protect: key }));
        self.send(Vec::new(), writes)?.wait_many().map(|_| ())
    }

    /// The newest snapshot of `stream`, if any; see [`Reader::snapshot`].
    pub fn latest_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        self.read()?.snapshot(stream, u64::MAX)
    }

    /// Deletes every snapshot of `stream`; returns how many there were.
    pub fn delete_snapshots(&self, stream: &str) -> Result<usize> {
        let reader = self.read()?;
        let Some(head) = reader.head_of(stream)? else { return Ok(0) };
        let versions = reader.snapshot_versions(stream)?;
        drop(reader);
        if versions.is_empty() {
            return Ok(0);
        }
        let writes = versions
            .iter()
            .map(|v| {
                boxed(Delete {
                    table: Table::Snapshots,
                    key: stream_version_key(head.stream_no, *v).to_vec(),
                })
            })
            .collect();
        self.send(Vec::new(), writes)?.wait_many()?;
        Ok(versions.len())
    }
}

/// Of one stream's snapshots (the keys that start with `prefix`), deletes
/// the oldest until `keep` remain, never `protect` (the one being saved).
/// Done inside the writer's transaction, so two concurrent saves cannot
/// both miss each other's snapshots.
#[derive(Debug)]
struct KeepNewest {
    prefix: Vec<u8>,
    keep: usize,
    protect: Vec<u8>,
}

impl SideWrite for KeepNewest {
    fn apply(&self, wtxn: &mut heed::RwTxn<'_>, dbs: &Dbs) -> heed::Result<()> {
        let db = dbs.table(Table::Snapshots);
        let mut keys = Vec::new();
        for item in db.prefix_iter(wtxn, &self.prefix)? {
            let (k, _) = item?;
            if k != &self.protect[..] {
                keys.push(k.to_vec());
            }
        }
        let excess = keys.len().saturating_add(1).saturating_sub(self.keep.max(1));
        for k in keys.iter().take(excess) {
            db.delete(wtxn, k)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips_and_detects_damage() {
        let s = NewSnapshot {
            version: 7,
            state_schema_version: 3,
            content_type: ContentType::Json,
            state: br#"{"balance":5}"#.to_vec(),
        };
        let bytes = encode(&s, 42);
        assert_eq!(bytes.len(), HEADER_LEN + s.state.len());
        let back = decode("a-1", 7, &bytes).unwrap();
        assert_eq!(back.state_schema_version, 3);
        assert_eq!(back.recorded_at, 42);
        assert_eq!(back.state, s.state);
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(decode("a-1", 7, &bad).unwrap_err(), "checksum mismatch");
        assert!(decode("a-1", 7, &bytes[..10]).is_err());
        let mut other_layout = bytes;
        other_layout[0] = 9;
        assert!(decode("a-1", 7, &other_layout).unwrap_err().contains("layout version 9"));
    }
}
