//! Values of the `stream_meta` database: a stream's lifecycle and
//! retention, under the stream id (see `docs/forgetting.md`).
//!
//! `[format u8 = 1][flags u8][truncate_before u64 LE][max_count u64 LE]
//! [max_age µs u64 LE][checksum u64 LE]`, 34 bytes; a zero limit is no
//! limit; flags bit 0: soft-deleted, bit 1: tombstoned. The checksum is
//! `xxh3_64_with_seed(value before it, xxh3_64(key))`.

use crate::lmdb::keys::le_u64;
use crate::vocab::{Error, Result};

const LEN: usize = 34;
const FORMAT: u8 = 1;
const DELETED: u8 = 1;
const TOMBSTONED: u8 = 2;

/// A stream's lifecycle and retention, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamMeta {
    /// Soft-deleted: hidden from reads and listings until its next append.
    pub deleted: bool,
    /// Hard-deleted: never written again, reads say so.
    pub tombstoned: bool,
    /// Versions below this are not served (0: none hidden).
    pub truncate_before: u64,
    /// Only the newest this many events are served (0: no limit).
    pub max_count: u64,
    /// Only events younger than this many µs are served (0: no limit).
    pub max_age_us: u64,
}

impl StreamMeta {
    pub(crate) fn encode(&self, key: &[u8]) -> [u8; LEN] {
        let mut v = [0u8; LEN];
        v[0] = FORMAT;
        v[1] = (if self.deleted { DELETED } else { 0 }) | (if self.tombstoned { TOMBSTONED } else { 0 });
        v[2..10].copy_from_slice(&self.truncate_before.to_le_bytes());
        v[10..18].copy_from_slice(&self.max_count.to_le_bytes());
        v[18..26].copy_from_slice(&self.max_age_us.to_le_bytes());
        let sum = sum(key, &v[..26]);
        v[26..34].copy_from_slice(&sum.to_le_bytes());
        v
    }

    pub(crate) fn decode(key: &[u8], v: &[u8]) -> Result<Self> {
        let bad = |why: &str| {
            Error::index("stream_meta", format!("entry of {:?}: {why}", String::from_utf8_lossy(key)))
        };
        if v.len() != LEN || v[0] != FORMAT {
            return Err(bad("not a stream metadata entry"));
        }
        if le_u64(&v[26..34]) != sum(key, &v[..26]) {
            return Err(bad("checksum mismatch"));
        }
        if v[1] & !(DELETED | TOMBSTONED) != 0 {
            return Err(bad("unknown flags"));
        }
        Ok(StreamMeta {
            deleted: v[1] & DELETED != 0,
            tombstoned: v[1] & TOMBSTONED != 0,
            truncate_before: le_u64(&v[2..10]),
            max_count: le_u64(&v[10..18]),
            max_age_us: le_u64(&v[18..26]),
        })
    }

    /// The first version served of a stream at `version`, by the version
    /// rules (truncation, soft deletion, count).
    pub(crate) fn first_served_version(&self, version: u64) -> u64 {
        let by_count =
            if self.max_count == 0 { 1 } else { version.saturating_sub(self.max_count).saturating_add(1) };
        self.truncate_before.max(by_count).max(1)
    }

    /// The oldest `recorded_at` served at time `now` (0: any).
    pub(crate) fn min_recorded_at(&self, now: u64) -> u64 {
        if self.max_age_us == 0 { 0 } else { now.saturating_sub(self.max_age_us) }
    }

    /// Whether the rules may hide any event at all.
    pub(crate) fn hides_any(&self) -> bool {
        self.tombstoned
            || self.deleted
            || self.truncate_before > 1
            || self.max_count > 0
            || self.max_age_us > 0
    }
}

fn sum(key: &[u8], body: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(body, xxhash_rust::xxh3::xxh3_64(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_catches_damage() {
        let m =
            StreamMeta { deleted: true, tombstoned: false, truncate_before: 5, max_count: 3, max_age_us: 9 };
        let v = m.encode(b"s-1");
        assert_eq!(StreamMeta::decode(b"s-1", &v).unwrap(), m);
        assert!(StreamMeta::decode(b"s-2", &v).is_err());
        for i in 0..v.len() {
            let mut d = v;
            d[i] ^= 1;
            assert!(StreamMeta::decode(b"s-1", &d).is_err(), "byte {i}");
        }
        assert_eq!(m.first_served_version(10), 8);
        assert_eq!(StreamMeta::default().first_served_version(10), 1);
        assert!(!StreamMeta::default().hides_any());
    }
}
