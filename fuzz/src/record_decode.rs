//! Arbitrary bytes as a stored `events` value: decoding returns a record or
//! `Corruption`, never panics.
//!
//! Random bytes almost never pass the checksum, which would leave the archive
//! validation unexercised; so for half of the inputs the harness first
//! rewrites the trailer (format byte, body length, position, checksum) to
//! match whatever body bytes it was given. Those inputs reach rkyv's
//! validation with arbitrary archives.

use xxhash_rust::xxh3::xxh3_64;

const TRAILER: usize = 40;

/// Makes `value`'s trailer consistent with its body, as a writer would.
fn seal(position: u64, value: &mut Vec<u8>) {
    let body_len = value.len();
    value.resize(body_len.div_ceil(8) * 8, 0);
    let mut trailer = [0u8; TRAILER];
    trailer[0..8].copy_from_slice(&position.to_le_bytes());
    trailer[24] = 1;
    trailer[28..32].copy_from_slice(&(body_len as u32).to_le_bytes());
    let mut head = [0u8; 40];
    head[..8].copy_from_slice(&xxh3_64(&value[..body_len]).to_le_bytes());
    head[8..].copy_from_slice(&trailer[..32]);
    trailer[32..].copy_from_slice(&xxh3_64(&head).to_le_bytes());
    value.extend_from_slice(&trailer);
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (position, body) = if rest.len() >= 8 {
        let mut p = [0u8; 8];
        p.copy_from_slice(&rest[..8]);
        (u64::from_le_bytes(p) % 1024, &rest[8..])
    } else {
        (1, rest)
    };
    // An 8-aligned buffer, like the ones LMDB hands out; an odd offset
    // exercises the copy path.
    let mut value = body.to_vec();
    if mode & 1 == 1 && body.len() < (1 << 20) {
        seal(position, &mut value);
    }
    let offset = usize::from(mode & 2 == 2);
    let mut buf = rkyv::util::AlignedVec::<16>::with_capacity(value.len() + 1);
    buf.extend_from_slice(&vec![0u8; offset]);
    buf.extend_from_slice(&value);
    let stored = &buf[offset..];
    match eventfold::decode_record(position, stored) {
        Ok(event) => {
            // Touch every field: validation must have made them all safe to read.
            let _ = (event.stream_id().len(), event.event_type().len(), event.payload().len());
            let _ = (event.metadata_bytes(), event.user_id(), event.correlation_id(), event.causation_id());
            let _ = event.to_owned();
        }
        Err(eventfold::Error::Corruption { .. }) => {}
        Err(other) => panic!("decode returned a non-corruption error: {other:?}"),
    }
}
