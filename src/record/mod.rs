//! The on-disk record: an rkyv archive of the event's body followed by a
//! fixed 40-byte trailer. See `docs/format.md` for the byte layout.
//!
//! Encoding happens on the appender's thread ([`encode`]); the writer thread
//! only patches the trailer's fixed-width fields and checksum ([`seal`]).
//! Every read goes through [`decode`], which checks length, format byte,
//! checksum and the archive itself before handing out a borrowed
//! [`EventRef`].

mod event_ref;
mod legacy;

pub use event_ref::{EventRef, Tags};

use std::borrow::Cow;

use rkyv::rancor;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::lmdb::keys::le_u64;
use crate::vocab::metadata::{CAUSATION_KEY, CORRELATION_KEY, TRACEPARENT_KEY};
use crate::vocab::{ContentType, EventMetadata, MAX_NAME_LEN, NewEvent, name_problem, shorten};
use crate::vocab::{Error, Result};

/// The record format this build writes: 3, a body whose UUID metadata
/// ids take no room when absent ([`StoredBody`]). Records of format 2
/// ([`EventBody`]'s archive) and 1 (without tags, `legacy.rs`) are still
/// read.
pub(crate) const RECORD_FORMAT: u8 = 3;
/// The format of records written with tags before format 3.
pub(crate) const RECORD_FORMAT_V2: u8 = 2;
/// The format of records written before tags.
pub(crate) const RECORD_FORMAT_V1: u8 = 1;
/// Size of the trailer that follows the archived body.
pub(crate) const TRAILER_LEN: usize = 40;
/// Alignment the archive needs to be read in place.
pub(crate) const ARCHIVE_ALIGN: usize = 8;

/// Everything the appender decides, in memory; archived as is, it is the
/// body of a format-2 record (its layout is frozen).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct EventBody {
    pub event_id: [u8; 16],
    pub schema_version: u32,
    pub content_type: u8,
    pub stream_id: String,
    pub event_type: String,
    /// A correlation id that is a UUID in canonical text; any other is in
    /// `metadata` under `$correlation_id`.
    pub correlation_id: Option<[u8; 16]>,
    /// A causation id that is a UUID in canonical text; any other is in
    /// `metadata` under `$causation_id`.
    pub causation_id: Option<[u8; 16]>,
    pub user_id: Option<String>,
    /// A JSON object's bytes: the extra fields and the reserved keys
    /// (`$correlation_id`, `$causation_id`, `$traceparent`); empty when
    /// there are none.
    pub metadata: Vec<u8>,
    pub payload: Vec<u8>,
    /// The event's tags (format 2 on).
    pub tags: Vec<String>,
}

/// The archived body of a format-3 record: [`EventBody`] with the two
/// 16-byte UUID id fields, 34 bytes in every record even when empty, folded
/// into one vector that is empty when neither id is a UUID.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct StoredBody {
    pub event_id: [u8; 16],
    pub schema_version: u32,
    pub content_type: u8,
    pub stream_id: String,
    pub event_type: String,
    /// Empty, or `[flags]` (bit 0: a correlation id, bit 1: a causation id)
    /// followed by the 16 bytes of each id the flags name, in that order.
    pub ids: Vec<u8>,
    pub user_id: Option<String>,
    pub metadata: Vec<u8>,
    pub payload: Vec<u8>,
    pub tags: Vec<String>,
}

/// A record's correlation and causation id fields (16-byte UUIDs).
pub(crate) type IdFields = (Option<[u8; 16]>, Option<[u8; 16]>);

const HAS_CORRELATION: u8 = 1;
const HAS_CAUSATION: u8 = 2;

/// The `ids` field of a format-3 body.
fn pack_ids(correlation: Option<[u8; 16]>, causation: Option<[u8; 16]>) -> Vec<u8> {
    let flags = (if correlation.is_some() { HAS_CORRELATION } else { 0 })
        | (if causation.is_some() { HAS_CAUSATION } else { 0 });
    if flags == 0 {
        return Vec::new();
    }
    let mut ids = Vec::with_capacity(33);
    ids.push(flags);
    ids.extend(correlation.iter().chain(causation.iter()).flatten());
    ids
}

/// The correlation and causation ids of a format-3 body's `ids`; `None`
/// when the bytes are not a valid `ids` field.
pub(crate) fn unpack_ids(ids: &[u8]) -> Option<IdFields> {
    let Some((&flags, rest)) = ids.split_first() else { return Some((None, None)) };
    if flags == 0 || flags & !(HAS_CORRELATION | HAS_CAUSATION) != 0 {
        return None;
    }
    let mut chunks = rest.chunks_exact(16);
    let mut take = |bit: u8| -> Option<Option<[u8; 16]>> {
        if flags & bit == 0 {
            return Some(None);
        }
        chunks.next().and_then(|c| <[u8; 16]>::try_from(c).ok()).map(Some)
    };
    let correlation = take(HAS_CORRELATION)?;
    let causation = take(HAS_CAUSATION)?;
    let expected = 1usize.saturating_add(16usize.saturating_mul(flags.count_ones() as usize));
    (ids.len() == expected).then_some((correlation, causation))
}

impl From<StoredBody> for EventBody {
    fn from(b: StoredBody) -> Self {
        let (correlation_id, causation_id) = unpack_ids(&b.ids).unwrap_or((None, None));
        EventBody {
            event_id: b.event_id,
            schema_version: b.schema_version,
            content_type: b.content_type,
            stream_id: b.stream_id,
            event_type: b.event_type,
            correlation_id,
            causation_id,
            user_id: b.user_id,
            metadata: b.metadata,
            payload: b.payload,
            tags: b.tags,
        }
    }
}

impl From<EventBody> for StoredBody {
    fn from(b: EventBody) -> Self {
        StoredBody {
            event_id: b.event_id,
            schema_version: b.schema_version,
            content_type: b.content_type,
            stream_id: b.stream_id,
            event_type: b.event_type,
            ids: pack_ids(b.correlation_id, b.causation_id),
            user_id: b.user_id,
            metadata: b.metadata,
            payload: b.payload,
            tags: b.tags,
        }
    }
}

/// An event encoded by the appender, waiting for the writer to seal it.
#[derive(Debug)]
pub(crate) struct EncodedEvent {
    pub event_id: Uuid,
    /// The caller chose the id (so it may be a retry); ids the store made
    /// are new by construction and skip the idempotency lookup.
    pub caller_id: bool,
    /// `[body][padding][trailer]`, trailer zeroed but for format and body length.
    pub value: Vec<u8>,
    /// xxh3 of the body, so the writer's checksum covers only the trailer.
    pub body_hash: u64,
    /// The time to record instead of the commit's, for events imported from
    /// an export (clamped so times never decrease along positions).
    pub recorded_at: Option<u64>,
    /// The event type and tags again, for the writer's secondary indexes
    /// (moved back out of the body after archiving, so no copy is made).
    pub event_type: String,
    pub tags: Vec<String>,
}

/// Validates `event` and encodes it as a record for `stream`.
pub(crate) fn encode(stream: &str, event: NewEvent, max_event_size: usize) -> Result<EncodedEvent> {
    if let Some(reason) = name_problem(&event.event_type, MAX_NAME_LEN) {
        return Err(Error::InvalidEventType { event_type: shorten(&event.event_type), reason });
    }
    if event.event_type.starts_with('$') && !event.system && !event.imported {
        return Err(Error::InvalidEventType {
            event_type: shorten(&event.event_type),
            reason: "names starting with `$` are reserved for the events the store writes itself".into(),
        });
    }
    let payload = event
        .payload
        .map_err(|reason| Error::InvalidPayload { event_type: event.event_type.clone(), reason })?;
    if payload.len() > max_event_size {
        return Err(Error::EventTooLarge { size: payload.len(), limit: max_event_size });
    }
    if event.content_type == ContentType::Json {
        // Serializer output is well-formed; only its depth can trip a reader.
        let readable = if event.json_checked {
            crate::vocab::json_limits::check_depth(&payload)
        } else {
            crate::vocab::json_limits::check_readable(&payload)
        };
        if let Err(reason) = readable {
            return Err(Error::InvalidPayload { event_type: event.event_type.clone(), reason });
        }
    }
    event.metadata.check(event.imported)?;
    crate::vocab::validate_tags(&event.tags)?;
    let EventMetadata { correlation_id, causation_id, user_id, traceparent, mut extra } = event.metadata;
    let correlation_id = place_id(correlation_id, CORRELATION_KEY, &mut extra);
    let causation_id = place_id(causation_id, CAUSATION_KEY, &mut extra);
    if let Some(traceparent) = traceparent {
        extra.insert(TRACEPARENT_KEY.to_string(), Value::String(traceparent));
    }
    let metadata = if extra.is_empty() {
        Vec::new()
    } else {
        let bytes =
            serde_json::to_vec(&extra).map_err(|e| Error::InvalidMetadata { reason: e.to_string() })?;
        crate::vocab::json_limits::check_depth(&bytes).map_err(|reason| Error::InvalidMetadata { reason })?;
        bytes
    };
    let caller_id = event.event_id.is_some();
    let event_id = event.event_id.unwrap_or_else(Uuid::now_v7);
    let body = EventBody {
        event_id: event_id.into_bytes(),
        schema_version: event.schema_version,
        content_type: event.content_type.to_byte(),
        stream_id: stream.to_string(),
        event_type: event.event_type,
        correlation_id,
        causation_id,
        user_id,
        metadata,
        payload,
        tags: event.tags,
    };
    let mut encoded = encode_body(body, event_id, max_event_size)?;
    encoded.caller_id = caller_id;
    Ok(encoded)
}

/// Where an id is stored (see `docs/format.md`): a UUID in canonical text
/// (lower-case, hyphenated) in the record's 16-byte field, from which it
/// reads back as the same text; any other id under `key` in the metadata
/// object, as given.
fn place_id(id: Option<String>, key: &str, extra: &mut Map<String, Value>) -> Option<[u8; 16]> {
    let id = id?;
    if let Some(uuid) = canonical_uuid(&id) {
        return Some(uuid.into_bytes());
    }
    extra.insert(key.to_string(), Value::String(id));
    None
}

/// The UUID whose canonical text (lower-case, hyphenated) is `text`
/// exactly; `None` for any other text, a UUID spelled otherwise included.
fn canonical_uuid(text: &str) -> Option<Uuid> {
    let uuid = Uuid::try_parse(text).ok()?;
    let mut buf = Uuid::encode_buffer();
    (uuid.hyphenated().encode_lower(&mut buf) == text).then_some(uuid)
}

/// The reserved keys of a record's metadata object, as raw JSON; every
/// other key is skipped.
#[derive(serde::Deserialize)]
struct ReservedKeys<'a> {
    #[serde(rename = "$correlation_id", borrow, default)]
    correlation_id: Option<&'a RawValue>,
    #[serde(rename = "$causation_id", borrow, default)]
    causation_id: Option<&'a RawValue>,
    #[serde(rename = "$traceparent", borrow, default)]
    traceparent: Option<&'a RawValue>,
}

/// The string under the reserved `key` of a record's metadata object, or
/// `None` when there is none (or its value is not a string: then it is an
/// extra field a store written before the key was reserved holds).
/// Borrowed from `metadata` unless the string has escapes.
pub(crate) fn reserved_string<'a>(metadata: &'a [u8], key: &str) -> Option<Cow<'a, str>> {
    // serde_json writes every key unescaped, and the metadata object is
    // always its output: a key that is not in the bytes is not in the object.
    if !metadata.windows(key.len()).any(|w| w == key.as_bytes()) {
        return None;
    }
    let keys: ReservedKeys<'a> = serde_json::from_slice(metadata).ok()?;
    let raw = match key {
        CORRELATION_KEY => keys.correlation_id,
        CAUSATION_KEY => keys.causation_id,
        TRACEPARENT_KEY => keys.traceparent,
        _ => None,
    }?;
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(text) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

pub(crate) fn encode_body(body: EventBody, event_id: Uuid, max_event_size: usize) -> Result<EncodedEvent> {
    let body = StoredBody::from(body);
    let capacity = body.payload.len().saturating_add(body.metadata.len()).saturating_add(256);
    let mut value = rkyv::api::high::to_bytes_in::<_, rancor::Error>(&body, Vec::with_capacity(capacity))
        .map_err(|e| Error::InvalidPayload {
            event_type: body.event_type.clone(),
            reason: format!("could not archive the event: {e}"),
        })?;
    let body_len = value.len();
    if body_len > max_event_size.saturating_add(1024) || body_len > u32::MAX as usize {
        return Err(Error::EventTooLarge { size: body_len, limit: max_event_size });
    }
    let body_hash = xxhash_rust::xxh3::xxh3_64(&value);
    value.resize(align_up(body_len), 0);
    let mut trailer = [0u8; TRAILER_LEN];
    trailer[24] = RECORD_FORMAT;
    trailer[28..32].copy_from_slice(&(body_len as u32).to_le_bytes());
    value.extend_from_slice(&trailer);
    Ok(EncodedEvent {
        event_id,
        caller_id: true,
        value,
        body_hash,
        recorded_at: None,
        event_type: body.event_type,
        tags: body.tags,
    })
}

fn align_up(n: usize) -> usize {
    n.div_ceil(ARCHIVE_ALIGN).saturating_mul(ARCHIVE_ALIGN)
}

/// The checksum over a body hash and the first 32 trailer bytes.
fn checksum(body_hash: u64, trailer_head: &[u8]) -> u64 {
    let mut buf = [0u8; 40];
    buf[..8].copy_from_slice(&body_hash.to_le_bytes());
    buf[8..40].copy_from_slice(trailer_head);
    xxhash_rust::xxh3::xxh3_64(&buf)
}

/// Writes the writer-assigned fields into the trailer and seals the checksum.
pub(crate) fn seal(event: &mut EncodedEvent, position: u64, version: u64, recorded_at: u64) {
    let n = event.value.len();
    let trailer = &mut event.value[n.saturating_sub(TRAILER_LEN)..];
    trailer[0..8].copy_from_slice(&position.to_le_bytes());
    trailer[8..16].copy_from_slice(&version.to_le_bytes());
    trailer[16..24].copy_from_slice(&recorded_at.to_le_bytes());
    let sum = checksum(event.body_hash, &trailer[..32]);
    trailer[32..40].copy_from_slice(&sum.to_le_bytes());
}

/// The trailer's fields, read without touching the archive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trailer {
    pub position: u64,
    pub version: u64,
    pub recorded_at: u64,
    pub body_len: usize,
    /// The record format: [`RECORD_FORMAT`], [`RECORD_FORMAT_V2`] or [`RECORD_FORMAT_V1`].
    pub format: u8,
}

/// Checks the record's length, format byte and checksum and returns its trailer.
pub(crate) fn check(position: u64, value: &[u8]) -> Result<Trailer> {
    let n = value.len();
    if n < TRAILER_LEN || !n.is_multiple_of(ARCHIVE_ALIGN) {
        return Err(Error::corruption(position, format!("record length {n} is not a valid record length")));
    }
    // At least TRAILER_LEN bytes, checked above.
    let body_end = n.saturating_sub(TRAILER_LEN);
    let trailer = &value[body_end..];
    let format = trailer[24];
    if !matches!(format, RECORD_FORMAT | RECORD_FORMAT_V2 | RECORD_FORMAT_V1) {
        return Err(Error::corruption(position, format!("unknown record format {format}")));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&trailer[28..32]);
    let body_len = u32::from_le_bytes(len) as usize;
    if align_up(body_len) != body_end {
        return Err(Error::corruption(
            position,
            format!("body length {body_len} does not fit a {n}-byte record"),
        ));
    }
    // The padding lies outside both hashes: it must be zeros, or a flipped
    // padding byte would pass unseen.
    if value[body_len..body_end].iter().any(|&b| b != 0) {
        return Err(Error::corruption(position, "the padding after the body is not zeros"));
    }
    let body_hash = xxhash_rust::xxh3::xxh3_64(&value[..body_len]);
    if checksum(body_hash, &trailer[..32]) != le_u64(&trailer[32..40]) {
        return Err(Error::corruption(position, "checksum mismatch"));
    }
    let t = Trailer {
        position: le_u64(&trailer[0..8]),
        version: le_u64(&trailer[8..16]),
        recorded_at: le_u64(&trailer[16..24]),
        body_len,
        format,
    };
    if t.position != position {
        return Err(Error::corruption(position, format!("record says position {}", t.position)));
    }
    Ok(t)
}

/// The position a record's trailer states, without checking the rest: the
/// cheap check that a key was not damaged (see `Reader::head`).
pub(crate) fn stated_position(position: u64, value: &[u8]) -> Result<u64> {
    let n = value.len();
    if n < TRAILER_LEN {
        return Err(Error::corruption(position, format!("record length {n} is not a valid record length")));
    }
    Ok(le_u64(&value[n.saturating_sub(TRAILER_LEN)..]))
}

/// Reads only the trailer's `recorded_at`, checked; used by time lookups.
pub(crate) fn recorded_at(position: u64, value: &[u8]) -> Result<u64> {
    check(position, value).map(|t| t.recorded_at)
}

/// Checks a raw value of the `events` database (see `docs/format.md`) and
/// returns a view of it: length, format byte, checksum, position and the
/// rkyv archive are all validated. Any failure is
/// [`Error::Corruption`]; no input makes it panic.
///
/// The archive is read in place when the value is suitably aligned (LMDB
/// usually hands out 8-aligned values for this layout) and copied into an
/// aligned buffer otherwise.
pub fn decode(position: u64, value: &[u8]) -> Result<EventRef<'_>> {
    let trailer = check(position, value)?;
    let body = &value[..trailer.body_len];
    let invalid = |e: rancor::Error| Error::corruption(position, format!("invalid archive: {e}"));
    let in_place = (body.as_ptr() as usize).is_multiple_of(ARCHIVE_ALIGN);
    let view = match (trailer.format, in_place) {
        (RECORD_FORMAT_V1, true) => event_ref::Body::V1(
            rkyv::access::<legacy::ArchivedEventBodyV1, rancor::Error>(body).map_err(invalid)?,
        ),
        (RECORD_FORMAT_V2, true) => {
            event_ref::Body::V2(rkyv::access::<ArchivedEventBody, rancor::Error>(body).map_err(invalid)?)
        }
        (_, true) => {
            let b = rkyv::access::<ArchivedStoredBody, rancor::Error>(body).map_err(invalid)?;
            if unpack_ids(b.ids.as_slice()).is_none() {
                return Err(Error::corruption(position, "invalid archive: the ids field is malformed"));
            }
            event_ref::Body::V3(b)
        }
        (format, false) => {
            let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
            aligned.extend_from_slice(body);
            let owned = match format {
                RECORD_FORMAT_V1 => {
                    rkyv::from_bytes::<legacy::EventBodyV1, rancor::Error>(&aligned).map_err(invalid)?.into()
                }
                RECORD_FORMAT_V2 => {
                    rkyv::from_bytes::<EventBody, rancor::Error>(&aligned).map_err(invalid)?
                }
                _ => {
                    let b = rkyv::from_bytes::<StoredBody, rancor::Error>(&aligned).map_err(invalid)?;
                    if unpack_ids(&b.ids).is_none() {
                        return Err(Error::corruption(
                            position,
                            "invalid archive: the ids field is malformed",
                        ));
                    }
                    b.into()
                }
            };
            event_ref::Body::Owned(Box::new(owned))
        }
    };
    EventRef::new(trailer, view)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::vocab::EventMetadata;

    fn sample() -> EncodedEvent {
        let ev = NewEvent::json("Deposited", &serde_json::json!({"amount": 5}))
            .with_metadata(EventMetadata::new().user_id("ann").extra("ip", "10.0.0.1"));
        let mut enc = encode("account-1", ev, 1 << 20).unwrap();
        seal(&mut enc, 7, 3, 1_000);
        enc
    }

    #[test]
    fn sealed_record_decodes_in_place() {
        let enc = sample();
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&enc.value);
        let ev = decode(7, &aligned).unwrap();
        assert!(ev.is_zero_copy());
        assert_eq!(ev.stream_id(), "account-1");
        assert_eq!(ev.event_type(), "Deposited");
        assert_eq!(ev.version(), 3);
        assert_eq!(ev.recorded_at(), 1_000);
        assert_eq!(ev.user_id(), Some("ann"));
        assert_eq!(ev.payload(), br#"{"amount":5}"#);
        assert_eq!(ev.value_len() % 8, 0);
    }

    /// Guards the copy path: a value LMDB hands out at an odd address must be
    /// read correctly, not rejected as unaligned.
    #[test]
    fn misaligned_value_is_read_through_the_copy_path() {
        let enc = sample();
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        buf.push(0);
        buf.extend_from_slice(&enc.value);
        let ev = decode(7, &buf[1..]).unwrap();
        assert!(!ev.is_zero_copy());
        assert_eq!(ev.stream_id(), "account-1");
        assert_eq!(ev.payload(), br#"{"amount":5}"#);
        let owned = ev.to_owned().unwrap();
        assert_eq!(owned.metadata.get("ip").and_then(|v| v.as_str()), Some("10.0.0.1"));
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let enc = sample();
        for i in 0..enc.value.len() {
            let mut buf = rkyv::util::AlignedVec::<16>::new();
            buf.extend_from_slice(&enc.value);
            buf[i] ^= 0x40;
            assert!(
                matches!(decode(7, &buf), Err(Error::Corruption { position: 7, .. })),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    /// Guards the padding between body and trailer: it is outside both
    /// hashes, so `check` requires zeros there; a flipped padding byte was
    /// served as good.
    #[test]
    fn a_flipped_padding_byte_is_caught() {
        let mut padded = 0;
        for len in 0..8 {
            let ev = NewEvent::binary("T", vec![7u8; len]);
            let mut enc = encode("s-1", ev, 1 << 20).unwrap();
            seal(&mut enc, 1, 1, 1);
            let n = enc.value.len();
            let body_len = u32::from_le_bytes(enc.value[n - 12..n - 8].try_into().unwrap()) as usize;
            for i in body_len..n - TRAILER_LEN {
                padded += 1;
                let mut buf = rkyv::util::AlignedVec::<16>::new();
                buf.extend_from_slice(&enc.value);
                buf[i] = 1;
                assert!(matches!(decode(1, &buf), Err(Error::Corruption { .. })), "padding byte {i} of {n}");
            }
        }
        assert!(padded > 0, "no record had padding");
    }

    #[test]
    fn truncated_and_wrong_position_are_corruption() {
        let enc = sample();
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        buf.extend_from_slice(&enc.value);
        assert!(matches!(decode(7, &buf[..buf.len() - 8]), Err(Error::Corruption { .. })));
        assert!(matches!(decode(8, &buf), Err(Error::Corruption { position: 8, .. })));
        assert!(matches!(decode(7, &[]), Err(Error::Corruption { .. })));
    }

    fn round_trip(meta: EventMetadata) -> (EventBody, crate::vocab::RecordedEvent) {
        let ev = NewEvent::json("T", &1).with_metadata(meta);
        let mut enc = encode("s-1", ev, 1 << 20).unwrap();
        seal(&mut enc, 1, 1, 1);
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        buf.extend_from_slice(&enc.value);
        let view = decode(1, &buf).unwrap();
        let owned = view.to_owned().unwrap();
        assert_eq!(view.correlation_id().as_deref(), owned.correlation_id.as_deref());
        assert_eq!(view.causation_id().as_deref(), owned.causation_id.as_deref());
        assert_eq!(view.traceparent().as_deref(), owned.traceparent.as_deref());
        let n = enc.value.len();
        let body_len = u32::from_le_bytes(enc.value[n - 12..n - 8].try_into().unwrap()) as usize;
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&enc.value[..body_len]);
        (rkyv::from_bytes::<StoredBody, rancor::Error>(&aligned).unwrap().into(), owned)
    }

    /// Each id comes back as the exact text appended; only a UUID in
    /// canonical text takes the 16-byte field, every other id the
    /// metadata object's reserved key.
    #[test]
    fn ids_round_trip_as_given() {
        let uuid = Uuid::now_v7();
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cases: Vec<(String, bool)> = vec![
            (uuid.hyphenated().to_string(), true),
            (uuid.hyphenated().to_string().to_uppercase(), false),
            (uuid.simple().to_string(), false),
            (trace.to_string(), false),
            (format!("{{{uuid}}}"), false),
            ("req-7f3a".to_string(), false),
            ("ünïcødé ☃ \"quoted\" \\ back".to_string(), false),
            ("x".repeat(MAX_NAME_LEN), false),
        ];
        for (id, in_field) in cases {
            let meta = EventMetadata::new().correlation_id(&id).causation_id(&id).extra("ip", "::1");
            let (body, owned) = round_trip(meta.traceparent(tp));
            assert_eq!(owned.correlation_id.as_deref(), Some(id.as_str()), "{id}");
            assert_eq!(owned.causation_id.as_deref(), Some(id.as_str()), "{id}");
            assert_eq!(owned.traceparent.as_deref(), Some(tp));
            assert_eq!(body.correlation_id.is_some(), in_field, "{id}");
            assert_eq!(body.causation_id.is_some(), in_field, "{id}");
            let stored: serde_json::Value = serde_json::from_slice(&body.metadata).unwrap();
            assert_eq!(stored.get("$correlation_id").is_some(), !in_field, "{id}");
            assert_eq!(stored["$traceparent"], tp);
            // The reserved keys never show as extra fields.
            assert_eq!(owned.metadata.keys().collect::<Vec<_>>(), ["ip"], "{id}");
            assert_eq!(owned.event_metadata().extra, meta_extra());
        }
        // Without extra fields, a UUID id keeps the metadata empty, as before.
        let (body, owned) = round_trip(EventMetadata::new().correlation_id(uuid));
        assert!(body.metadata.is_empty());
        assert_eq!(owned.correlation_id, Some(uuid.to_string()));
        let (body, owned) = round_trip(EventMetadata::new().causation_id("req-7f3a"));
        assert_eq!(body.metadata, br#"{"$causation_id":"req-7f3a"}"#);
        assert_eq!((owned.correlation_id, owned.causation_id.as_deref()), (None, Some("req-7f3a")));
    }

    fn meta_extra() -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("ip".into(), "::1".into());
        m
    }

    #[test]
    fn invalid_ids_and_reserved_extra_names_are_refused() {
        let refused =
            |meta: EventMetadata| encode("s-1", NewEvent::json("T", &1).with_metadata(meta), 1 << 20);
        for bad in [String::new(), "a\u{0}b".into(), "line\nbreak".into(), "x".repeat(MAX_NAME_LEN + 1)] {
            let err = refused(EventMetadata::new().correlation_id(&bad)).unwrap_err();
            assert!(matches!(err, Error::InvalidMetadataField { field: "correlation id", .. }), "{err}");
            let err = refused(EventMetadata::new().causation_id(&bad)).unwrap_err();
            assert!(matches!(err, Error::InvalidMetadataField { field: "causation id", .. }), "{err}");
        }
        let err = refused(EventMetadata::new().traceparent("00-abc")).unwrap_err();
        assert!(matches!(err, Error::InvalidMetadataField { field: "traceparent", .. }), "{err}");
        for name in ["$correlation_id", "$causation_id", "$traceparent", "correlation_id", "traceparent"] {
            let err = refused(EventMetadata::new().extra(name, "x")).unwrap_err();
            assert!(matches!(&err, Error::InvalidMetadata { reason } if reason.contains(name)), "{err}");
        }
    }

    /// A store written before the keys were reserved may hold an extra
    /// field of one of their names: a value that is not a string stays an
    /// extra field, and a UUID in the 16-byte field wins.
    #[test]
    fn a_reserved_name_without_a_string_stays_an_extra_field() {
        let id = Uuid::now_v7();
        let body = EventBody {
            event_id: Uuid::now_v7().into_bytes(),
            schema_version: 1,
            content_type: 0,
            stream_id: "s-1".into(),
            event_type: "T".into(),
            correlation_id: Some(id.into_bytes()),
            causation_id: None,
            user_id: None,
            metadata: br#"{"$causation_id":5,"$correlation_id":"old","ip":"::1"}"#.to_vec(),
            payload: b"1".to_vec(),
            tags: Vec::new(),
        };
        let event_id = Uuid::from_bytes(body.event_id);
        let mut enc = encode_body(body, event_id, 1 << 20).unwrap();
        seal(&mut enc, 1, 1, 1);
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        buf.extend_from_slice(&enc.value);
        let view = decode(1, &buf).unwrap();
        assert_eq!(view.correlation_id().as_deref(), Some(id.to_string().as_str()));
        assert_eq!(view.causation_id(), None);
        let owned = view.to_owned().unwrap();
        assert_eq!(owned.correlation_id, Some(id.to_string()));
        assert_eq!(owned.causation_id, None);
        assert_eq!(
            serde_json::Value::Object(owned.metadata),
            serde_json::json!({"$causation_id": 5, "ip": "::1"})
        );
    }

    /// Guards the reading of records written before tags (format 1): in
    /// place and through the copy path, they read with no tags, and a
    /// flipped byte is still caught.
    #[test]
    fn a_format_1_record_reads_without_tags() {
        let body = legacy::EventBodyV1 {
            event_id: Uuid::now_v7().into_bytes(),
            schema_version: 2,
            content_type: 0,
            stream_id: "old-1".into(),
            event_type: "Placed".into(),
            correlation_id: None,
            causation_id: None,
            user_id: Some("ann".into()),
            metadata: Vec::new(),
            payload: b"{}".to_vec(),
        };
        let value = legacy::encode_v1(&body);
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        buf.push(0);
        buf.extend_from_slice(&value);
        let copied = decode(1, &buf[1..]).unwrap();
        assert!(!copied.is_zero_copy());
        assert_eq!(
            (copied.stream_id(), copied.event_type(), copied.schema_version()),
            ("old-1", "Placed", 2)
        );
        assert_eq!(copied.tags().count(), 0);
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&value);
        let view = decode(1, &aligned).unwrap();
        assert!(view.is_zero_copy());
        assert_eq!(view.user_id(), Some("ann"));
        assert!(view.to_owned().unwrap().tags.is_empty());
        for i in 0..value.len() {
            let mut flipped = rkyv::util::AlignedVec::<16>::new();
            flipped.extend_from_slice(&value);
            flipped[i] ^= 0x40;
            assert!(decode(1, &flipped).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    /// Guards reading format-2 records (the body before the ids were
    /// folded): every field reads as it was written, in place and copied.
    #[test]
    fn a_format_2_record_reads_as_before() {
        let body = EventBody {
            event_id: [7; 16],
            schema_version: 2,
            content_type: 0,
            stream_id: "order-1".into(),
            event_type: "Placed".into(),
            correlation_id: Some([1; 16]),
            causation_id: None,
            user_id: Some("ann".into()),
            metadata: br#"{"ip":"10.0.0.1"}"#.to_vec(),
            payload: br#"{"total":5}"#.to_vec(),
            tags: vec!["customer:7".into()],
        };
        let value = legacy::encode_v2(&body);
        for offset in [0, 1] {
            let mut buf = rkyv::util::AlignedVec::<16>::new();
            buf.extend_from_slice(&vec![0u8; offset]);
            buf.extend_from_slice(&value);
            let ev = decode(1, &buf[offset..]).unwrap();
            assert_eq!(ev.is_zero_copy(), offset == 0);
            let owned = ev.to_owned().unwrap();
            assert_eq!(owned.correlation_id, Some(Uuid::from_bytes([1; 16]).to_string()));
            assert_eq!((owned.causation_id, owned.user_id.as_deref()), (None, Some("ann")));
            assert_eq!((owned.tags, owned.schema_version), (vec!["customer:7".to_string()], 2));
            assert_eq!(owned.payload, br#"{"total":5}"#);
        }
    }

    /// Guards the format-3 `ids` field: every combination round-trips, and
    /// a malformed one is refused, never read as no ids.
    #[test]
    fn the_ids_field_round_trips_and_refuses_damage() {
        for (c, k) in
            [(None, None), (Some([1; 16]), None), (None, Some([2; 16])), (Some([3; 16]), Some([4; 16]))]
        {
            let ids = pack_ids(c, k);
            assert_eq!(
                ids.len(),
                if c.is_none() && k.is_none() {
                    0
                } else {
                    1 + 16 * (c.is_some() as usize + k.is_some() as usize)
                }
            );
            assert_eq!(unpack_ids(&ids), Some((c, k)));
        }
        assert_eq!(unpack_ids(&[0]), None, "flags without ids");
        assert_eq!(unpack_ids(&[4; 17]), None, "an unknown flag");
        assert_eq!(unpack_ids(&[1; 16]), None, "an id cut short");
        assert_eq!(unpack_ids(&[1; 33]), None, "bytes left over");
        // Through a whole record: bytes that pass the checksum (a writer
        // bug, or a collision) but hold a malformed `ids` are corruption.
        let mut body = StoredBody::from(EventBody {
            event_id: [7; 16],
            schema_version: 1,
            content_type: 0,
            stream_id: "s-1".into(),
            event_type: "E".into(),
            correlation_id: None,
            causation_id: None,
            user_id: None,
            metadata: Vec::new(),
            payload: b"{}".to_vec(),
            tags: Vec::new(),
        });
        body.ids = vec![1, 2, 3];
        let bytes = rkyv::to_bytes::<rancor::Error>(&body).unwrap();
        let body_len = bytes.len();
        let mut value = bytes.to_vec();
        value.resize(align_up(body_len), 0);
        let mut trailer = [0u8; TRAILER_LEN];
        trailer[24] = RECORD_FORMAT;
        trailer[28..32].copy_from_slice(&(body_len as u32).to_le_bytes());
        value.extend_from_slice(&trailer);
        let mut enc = EncodedEvent {
            event_id: Uuid::from_bytes([7; 16]),
            caller_id: true,
            value,
            body_hash: xxhash_rust::xxh3::xxh3_64(&bytes),
            recorded_at: None,
            event_type: "E".into(),
            tags: Vec::new(),
        };
        seal(&mut enc, 1, 1, 1);
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        buf.extend_from_slice(&enc.value);
        let err = decode(1, &buf).unwrap_err();
        assert!(err.to_string().contains("ids field"), "{err}");
    }

    #[test]
    fn tags_round_trip_in_place() {
        let ev = NewEvent::json("T", &1).with_tags(["b:2", "a:1"]);
        let mut enc = encode("s-1", ev, 1 << 20).unwrap();
        seal(&mut enc, 1, 1, 1);
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        buf.extend_from_slice(&enc.value);
        let view = decode(1, &buf).unwrap();
        assert_eq!(view.tags().collect::<Vec<_>>(), ["b:2", "a:1"]);
        assert_eq!(view.tags().len(), 2);
    }

    #[test]
    fn invalid_names_and_payloads_are_rejected() {
        let bad = NewEvent::json_bytes("T", b"{not json".to_vec());
        assert!(matches!(encode("s-1", bad, 1 << 20), Err(Error::InvalidPayload { .. })));
        let bad = NewEvent::json_bytes("T", vec![0xff, 0xfe]);
        assert!(matches!(encode("s-1", bad, 1 << 20), Err(Error::InvalidPayload { .. })));
        let big = NewEvent::binary("T", vec![0u8; 100]);
        assert!(matches!(encode("s-1", big, 10), Err(Error::EventTooLarge { .. })));
        let empty_type = NewEvent::binary("", vec![]);
        assert!(matches!(encode("s-1", empty_type, 10), Err(Error::InvalidEventType { .. })));
    }
}
