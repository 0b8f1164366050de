//! Checksummed values of the `projections/` environment: every document and
//! every checkpoint entry is stored as its bytes followed by an xxh3 of
//! them, seeded with an xxh3 of the key, so a flipped byte in the value, or
//! a value found under another key, is caught when it is read.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Layout of the `projections/` environment this build reads and writes:
/// 2 adds the checksums, the log identity and the checkpoint's event id.
pub(crate) const FORMAT: u32 = 2;
/// `meta` key of the environment's format (names cannot hold a NUL byte).
pub(crate) const KEY_FORMAT: &[u8] = b"\0format";
/// `meta` key of the id of the store whose log the read models come from.
pub(crate) const KEY_STORE_ID: &[u8] = b"\0store_id";

const SUM_LEN: usize = 8;

fn sum(key: &[u8], body: &[u8]) -> [u8; SUM_LEN] {
    xxh3_64_with_seed(body, xxh3_64(key)).to_le_bytes()
}

/// `body` followed by its checksum.
pub(crate) fn seal(key: &[u8], mut body: Vec<u8>) -> Vec<u8> {
    let s = sum(key, &body);
    body.extend_from_slice(&s);
    body
}

/// The body of a sealed value, or why it is damaged.
pub(crate) fn unseal<'a>(key: &[u8], value: &'a [u8]) -> Result<&'a [u8], &'static str> {
    let Some(split) = value.len().checked_sub(SUM_LEN) else {
        return Err("the value is shorter than its checksum");
    };
    let (body, stored) = value.split_at(split);
    if stored != sum(key, body) {
        return Err("checksum mismatch");
    }
    Ok(body)
}

/// Whether a `meta` key is one of the environment's own, not a projection's.
pub(crate) fn is_env_key(key: &[u8]) -> bool {
    key.first() == Some(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flipped_byte_and_a_moved_value_are_caught() {
        let sealed = seal(b"total", br#"{"n":2025}"#.to_vec());
        assert_eq!(unseal(b"total", &sealed), Ok(&br#"{"n":2025}"#[..]));
        for i in 0..sealed.len() {
            let mut damaged = sealed.clone();
            damaged[i] ^= 0x04;
            assert!(unseal(b"total", &damaged).is_err(), "byte {i}");
        }
        assert!(unseal(b"other", &sealed).is_err(), "a value under another key");
        assert!(unseal(b"total", &sealed[..3]).is_err());
    }
}
