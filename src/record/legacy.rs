//! Record format 1: the body written before events carried tags. Stores
//! keep such records; they read as events without tags. (Format 2 is
//! [`EventBody`]'s own archive.)

use super::EventBody;

/// The archived body of a format-1 record. Its layout is frozen: the
/// fields, their order and their types are what format-1 records hold.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct EventBodyV1 {
    pub event_id: [u8; 16],
    pub schema_version: u32,
    pub content_type: u8,
    pub stream_id: String,
    pub event_type: String,
    pub correlation_id: Option<[u8; 16]>,
    pub causation_id: Option<[u8; 16]>,
    pub user_id: Option<String>,
    pub metadata: Vec<u8>,
    pub payload: Vec<u8>,
}

impl From<EventBodyV1> for EventBody {
    fn from(b: EventBodyV1) -> Self {
        EventBody {
            event_id: b.event_id,
            schema_version: b.schema_version,
            content_type: b.content_type,
            stream_id: b.stream_id,
            event_type: b.event_type,
            correlation_id: b.correlation_id,
            causation_id: b.causation_id,
            user_id: b.user_id,
            metadata: b.metadata,
            payload: b.payload,
            tags: Vec::new(),
        }
    }
}

/// Encodes a format-1 record, as a build before tags wrote it, for tests
/// of reading old stores.
#[cfg(test)]
pub(crate) fn encode_v1(body: &EventBodyV1) -> Vec<u8> {
    use rkyv::rancor;
    let value = rkyv::to_bytes::<rancor::Error>(body).map(|v| v.to_vec()).unwrap_or_default();
    seal_old(value, super::RECORD_FORMAT_V1, body.event_id, &body.event_type)
}

/// Encodes a format-2 record ([`EventBody`]'s archive), as a build before
/// format 3 wrote it, for tests of reading old stores.
#[cfg(test)]
pub(crate) fn encode_v2(body: &EventBody) -> Vec<u8> {
    use rkyv::rancor;
    let value = rkyv::to_bytes::<rancor::Error>(body).map(|v| v.to_vec()).unwrap_or_default();
    seal_old(value, super::RECORD_FORMAT_V2, body.event_id, &body.event_type)
}

/// An archived body made into a record of `format` at position 1.
#[cfg(test)]
fn seal_old(mut value: Vec<u8>, format: u8, event_id: [u8; 16], event_type: &str) -> Vec<u8> {
    let body_len = value.len();
    let body_hash = xxhash_rust::xxh3::xxh3_64(&value);
    value.resize(super::align_up(body_len), 0);
    let mut trailer = [0u8; super::TRAILER_LEN];
    trailer[24] = format;
    trailer[28..32].copy_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    value.extend_from_slice(&trailer);
    let mut enc = super::EncodedEvent {
        event_id: uuid::Uuid::from_bytes(event_id),
        caller_id: true,
        value,
        body_hash,
        recorded_at: None,
        event_type: event_type.to_string(),
        tags: Vec::new(),
    };
    super::seal(&mut enc, 1, 1, 1);
    enc.value
}
