//! Fixed-width keys and the small fixed-layout values of the index databases.
//!
//! Keys are big-endian so that LMDB's byte order is numeric order and range
//! scans are cursor walks. Values are little-endian, like the record trailer.

use crate::vocab::{Error, Result};

/// Key of the `events` database.
pub(crate) fn position_key(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

pub(crate) fn parse_position_key(key: &[u8]) -> Result<u64> {
    let arr: [u8; 8] =
        key.try_into().map_err(|_| Error::index("events", format!("key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(arr))
}

/// Key of the `stream_index` and `snapshots` databases: stream number ++ version.
pub(crate) fn stream_version_key(stream_no: u64, version: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&stream_no.to_be_bytes());
    k[8..].copy_from_slice(&version.to_be_bytes());
    k
}

pub(crate) fn parse_stream_version_key(index: &'static str, key: &[u8]) -> Result<(u64, u64)> {
    if key.len() != 16 {
        return Err(Error::index(index, format!("key of {} bytes", key.len())));
    }
    Ok((be_u64(&key[..8]), be_u64(&key[8..])))
}

/// The big-endian `u64` in the first eight bytes of `b` (a key's number).
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(first_eight(b))
}

/// The little-endian `u64` in the first eight bytes of `b` (a value's
/// number, or a field of the record trailer).
pub(crate) fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(first_eight(b))
}

/// The first eight bytes of `b`. Callers check a slice's length before
/// they read numbers from it; a shorter one, should a check be missed, is
/// padded with zeros rather than a panic on bytes from the disk.
fn first_eight(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    for (to, from) in a.iter_mut().zip(b) {
        *to = *from;
    }
    a
}

/// One entry of `stream_index`: a run of `count` events of one stream stored at
/// consecutive positions starting at `first_position`. The key holds the
/// stream number and the run's first version.
///
/// A run per append (extended while the stream's appends stay adjacent in the
/// log) instead of an entry per event keeps index writes per commit small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub first_position: u64,
    pub count: u64,
}

impl Run {
    pub(crate) const LEN: usize = 16;

    pub(crate) fn encode(&self) -> [u8; 16] {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&self.first_position.to_le_bytes());
        v[8..].copy_from_slice(&self.count.to_le_bytes());
        v
    }

    /// The version of the run's last event, for a run whose first event has
    /// `first_version`; damage when the run's versions or positions do not
    /// fit in 64 bits.
    pub(crate) fn last_version(&self, first_version: u64) -> Result<u64> {
        let span = self.count.saturating_sub(1);
        match (first_version.checked_add(span), self.first_position.checked_add(span)) {
            (Some(last), Some(_)) => Ok(last),
            _ => Err(Error::index(
                "stream_index",
                format!(
                    "a run of {} events from version {first_version} does not fit in 64 bits",
                    self.count
                ),
            )),
        }
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self> {
        if value.len() != Self::LEN {
            return Err(Error::index("stream_index", format!("value of {} bytes", value.len())));
        }
        let run = Run { first_position: le_u64(&value[..8]), count: le_u64(&value[8..]) };
        if run.count == 0 || run.first_position == 0 {
            return Err(Error::index("stream_index", "empty run"));
        }
        Ok(run)
    }
}

/// The value of `streams`: what the writer needs to append to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamHead {
    /// Dense number assigned at creation, used in index keys.
    pub stream_no: u64,
    /// Number of events in the stream.
    pub version: u64,
    /// Position of the stream's last event.
    pub last_position: u64,
    /// First version of the stream's latest run in `stream_index`.
    pub run_first_version: u64,
    /// When the stream's first event was recorded.
    pub created_at: u64,
    /// When the stream's last event was recorded.
    pub updated_at: u64,
}

impl StreamHead {
    pub(crate) const LEN: usize = 48;

    pub(crate) fn encode(&self) -> [u8; 48] {
        let mut v = [0u8; 48];
        let fields = [
            self.stream_no,
            self.version,
            self.last_position,
            self.run_first_version,
            self.created_at,
            self.updated_at,
        ];
        for (to, x) in v.chunks_exact_mut(8).zip(fields) {
            to.copy_from_slice(&x.to_le_bytes());
        }
        v
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self> {
        if value.len() != Self::LEN {
            return Err(Error::index("streams", format!("value of {} bytes", value.len())));
        }
        let mut fields = [0u64; 6];
        for (to, from) in fields.iter_mut().zip(value.chunks_exact(8)) {
            *to = le_u64(from);
        }
        let [stream_no, version, last_position, run_first_version, created_at, updated_at] = fields;
        Ok(StreamHead { stream_no, version, last_position, run_first_version, created_at, updated_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically() {
        assert!(position_key(255) < position_key(256));
        assert!(stream_version_key(1, u64::MAX) < stream_version_key(2, 0));
        assert_eq!(parse_stream_version_key("x", &stream_version_key(9, 4)).unwrap(), (9, 4));
        assert_eq!(parse_position_key(&position_key(77)).unwrap(), 77);
    }

    #[test]
    fn head_and_run_round_trip() {
        let h = StreamHead {
            stream_no: 1,
            version: 2,
            last_position: 3,
            run_first_version: 1,
            created_at: 5,
            updated_at: 6,
        };
        assert_eq!(StreamHead::decode(&h.encode()).unwrap(), h);
        let r = Run { first_position: 10, count: 3 };
        assert_eq!(Run::decode(&r.encode()).unwrap(), r);
        assert!(Run::decode(&[0u8; 3]).is_err());
    }

    /// Guards the number readers against a slice shorter than eight bytes
    /// (a length check missed on bytes from the disk): a number, not a panic.
    #[test]
    fn number_readers_are_total() {
        assert_eq!(le_u64(&7u64.to_le_bytes()), 7);
        assert_eq!(be_u64(&7u64.to_be_bytes()), 7);
        assert_eq!(le_u64(&[1, 2, 3, 4, 5, 6, 7, 8, 9]), u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(le_u64(&[1, 2]), 0x0201);
        assert_eq!(be_u64(&[1, 2]), 0x0102 << 48);
        assert_eq!((le_u64(&[]), be_u64(&[])), (0, 0));
    }
}
