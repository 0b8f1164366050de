//! Arbitrary bytes as a stored `events` value: decoding returns a record or
//! `Corruption`, never panics.

/// Runs one input.
pub fn run(data: &[u8]) {
    // The first 8 bytes pick the position the key would hold.
    let (position, value) = if data.len() >= 8 {
        let mut p = [0u8; 8];
        p.copy_from_slice(&data[..8]);
        (u64::from_le_bytes(p) % 1024, &data[8..])
    } else {
        (1, data)
    };
    match eventfold::decode_record(position, value) {
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
