//! [`EventRef`]: a checked, borrowed view of one stored event.

use std::borrow::Cow;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::legacy::ArchivedEventBodyV1;
use super::{ArchivedEventBody, ArchivedStoredBody, EventBody, Trailer, reserved_string, unpack_ids};
use crate::vocab::metadata::{CAUSATION_KEY, CORRELATION_KEY, TRACEPARENT_KEY};
use crate::vocab::{ContentType, RecordedEvent};
use crate::vocab::{Error, Result};

/// Where the body's fields are read from.
pub(crate) enum Body<'a> {
    /// A format-1 record (no tags), read in place from the memory map.
    V1(&'a ArchivedEventBodyV1),
    /// A format-2 record, read in place.
    V2(&'a ArchivedEventBody),
    /// A format-3 record, read in place: no copy, no allocation.
    V3(&'a ArchivedStoredBody),
    /// Copied out because the stored bytes were not aligned for in-place access.
    Owned(Box<EventBody>),
}

/// A field read the same way from every archived body (their common
/// fields have the same names and types), or from the owned copy.
macro_rules! field {
    ($body:expr, $b:ident => $archived:expr, $o:ident => $owned:expr) => {
        match $body {
            Body::V1($b) => $archived,
            Body::V2($b) => $archived,
            Body::V3($b) => $archived,
            Body::Owned($o) => $owned,
        }
    };
}

/// The tags of an event, borrowed from its record.
#[derive(Debug, Clone)]
pub struct Tags<'a> {
    inner: TagsInner<'a>,
}

#[derive(Debug, Clone)]
enum TagsInner<'a> {
    Archived(std::slice::Iter<'a, rkyv::string::ArchivedString>),
    Owned(std::slice::Iter<'a, String>),
}

impl<'a> Iterator for Tags<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match &mut self.inner {
            TagsInner::Archived(it) => it.next().map(|t| t.as_str()),
            TagsInner::Owned(it) => it.next().map(String::as_str),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            TagsInner::Archived(it) => it.size_hint(),
            TagsInner::Owned(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for Tags<'_> {}

/// A stored event, borrowed from the read transaction that produced it.
///
/// Reading fields allocates nothing; [`EventRef::to_owned`] copies the event
/// into a [`RecordedEvent`]. The record's checksum and archive were validated
/// when the view was made.
pub struct EventRef<'a> {
    trailer: Trailer,
    body: Body<'a>,
    content_type: ContentType,
}

impl std::fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRef")
            .field("position", &self.position())
            .field("stream_id", &self.stream_id())
            .field("version", &self.version())
            .field("event_type", &self.event_type())
            .finish_non_exhaustive()
    }
}

impl<'a> EventRef<'a> {
    pub(crate) fn new(trailer: Trailer, body: Body<'a>) -> Result<Self> {
        let byte = field!(&body, b => b.content_type, b => b.content_type);
        let content_type = ContentType::from_byte(byte)
            .ok_or_else(|| Error::corruption(trailer.position, format!("unknown content type {byte}")))?;
        Ok(EventRef { trailer, body, content_type })
    }

    /// Global position.
    pub fn position(&self) -> u64 {
        self.trailer.position
    }

    /// Version within the stream.
    pub fn version(&self) -> u64 {
        self.trailer.version
    }

    /// Microseconds since the Unix epoch, set by the writer.
    pub fn recorded_at(&self) -> u64 {
        self.trailer.recorded_at
    }

    /// The stream id.
    pub fn stream_id(&self) -> &str {
        field!(&self.body, b => b.stream_id.as_str(), b => &b.stream_id)
    }

    /// The stream's category (the part before the first `-`).
    pub fn category(&self) -> &str {
        crate::vocab::category_of(self.stream_id())
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        field!(&self.body, b => b.event_type.as_str(), b => &b.event_type)
    }

    /// The event id.
    pub fn event_id(&self) -> Uuid {
        field!(&self.body, b => Uuid::from_bytes(b.event_id), b => Uuid::from_bytes(b.event_id))
    }

    /// The payload's schema version.
    pub fn schema_version(&self) -> u32 {
        field!(&self.body, b => b.schema_version.to_native(), b => b.schema_version)
    }

    /// How the payload is encoded.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        field!(&self.body, b => b.payload.as_slice(), b => &b.payload)
    }

    /// The stored metadata object's JSON bytes (empty when there is none):
    /// the extra fields, and the reserved keys that hold a correlation or
    /// causation id that is not a UUID and the `traceparent` (see
    /// `docs/format.md`). [`to_owned`](Self::to_owned) and the accessors
    /// take those apart.
    pub fn metadata_bytes(&self) -> &[u8] {
        field!(&self.body, b => b.metadata.as_slice(), b => &b.metadata)
    }

    /// The correlation id, exactly as appended: borrowed from the record,
    /// or made from its 16 bytes when it is a UUID (then its hyphenated
    /// text, as it was appended).
    pub fn correlation_id(&self) -> Option<Cow<'_, str>> {
        match self.id_fields().0 {
            Some(bytes) => Some(Cow::Owned(Uuid::from_bytes(bytes).hyphenated().to_string())),
            None => reserved_string(self.metadata_bytes(), CORRELATION_KEY),
        }
    }

    /// The causation id, exactly as appended (see [`correlation_id`](Self::correlation_id)).
    pub fn causation_id(&self) -> Option<Cow<'_, str>> {
        match self.id_fields().1 {
            Some(bytes) => Some(Cow::Owned(Uuid::from_bytes(bytes).hyphenated().to_string())),
            None => reserved_string(self.metadata_bytes(), CAUSATION_KEY),
        }
    }

    /// The 16-byte correlation and causation id fields (set for ids that
    /// are UUIDs in canonical text).
    fn id_fields(&self) -> super::IdFields {
        match &self.body {
            Body::V1(b) => (b.correlation_id.as_ref().copied(), b.causation_id.as_ref().copied()),
            Body::V2(b) => (b.correlation_id.as_ref().copied(), b.causation_id.as_ref().copied()),
            // Checked by `decode`.
            Body::V3(b) => unpack_ids(b.ids.as_slice()).unwrap_or((None, None)),
            Body::Owned(b) => (b.correlation_id, b.causation_id),
        }
    }

    /// The W3C trace-context `traceparent` the event was appended with.
    pub fn traceparent(&self) -> Option<Cow<'_, str>> {
        reserved_string(self.metadata_bytes(), TRACEPARENT_KEY)
    }

    /// The user id.
    pub fn user_id(&self) -> Option<&str> {
        field!(&self.body, b => b.user_id.as_ref().map(|u| u.as_str()), b => b.user_id.as_deref())
    }

    /// The event's tags, in the order appended; none for a record written
    /// before tags existed.
    pub fn tags(&self) -> Tags<'_> {
        let inner = match &self.body {
            Body::V1(_) => TagsInner::Owned([].iter()),
            Body::V2(b) => TagsInner::Archived(b.tags.iter()),
            Body::V3(b) => TagsInner::Archived(b.tags.iter()),
            Body::Owned(b) => TagsInner::Owned(b.tags.iter()),
        };
        Tags { inner }
    }

    /// Whether the event passes `filter` (its type, stream and tags).
    pub fn passes(&self, filter: &crate::vocab::Filter) -> bool {
        filter.is_empty() || filter.matches_tagged(self.stream_id(), self.event_type(), self.tags())
    }

    /// Whether the event carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags().any(|t| t == tag)
    }

    /// Whether the fields are read in place from the memory map (true) or from
    /// a copy made because the stored bytes were misaligned (false).
    pub fn is_zero_copy(&self) -> bool {
        !matches!(self.body, Body::Owned(_))
    }

    #[cfg(test)]
    pub(crate) fn value_len(&self) -> usize {
        super::align_up(self.trailer.body_len).saturating_add(super::TRAILER_LEN)
    }

    /// Decodes a JSON payload into `T`.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(self.payload()).map_err(|e| Error::Decode {
            stream: self.stream_id().to_string(),
            position: self.position(),
            event_type: self.event_type().to_string(),
            reason: e.to_string(),
        })
    }

    /// Copies the event into an owned [`RecordedEvent`].
    pub fn to_owned(&self) -> Result<RecordedEvent> {
        let meta = self.metadata_bytes();
        let mut metadata = if meta.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(meta) {
                Ok(Value::Object(m)) => m,
                _ => return Err(Error::corruption(self.position(), "metadata is not a JSON object")),
            }
        };
        // A reserved key with a string value is eventfold's; any other value
        // is an extra field of a store written before the key was reserved.
        let mut take = |key: &str| match metadata.get(key) {
            Some(Value::String(_)) => match metadata.remove(key) {
                Some(Value::String(s)) => Some(s),
                _ => None,
            },
            _ => None,
        };
        let correlation_key = take(CORRELATION_KEY);
        let causation_key = take(CAUSATION_KEY);
        let traceparent = take(TRACEPARENT_KEY);
        let uuid_text = |field: Option<[u8; 16]>| field.map(|b| Uuid::from_bytes(b).hyphenated().to_string());
        let (correlation_field, causation_field) = self.id_fields();
        Ok(RecordedEvent {
            position: self.position(),
            stream_id: self.stream_id().to_string(),
            version: self.version(),
            event_id: self.event_id(),
            event_type: self.event_type().to_string(),
            schema_version: self.schema_version(),
            recorded_at: self.recorded_at(),
            correlation_id: uuid_text(correlation_field).or(correlation_key),
            causation_id: uuid_text(causation_field).or(causation_key),
            user_id: self.user_id().map(str::to_string),
            traceparent,
            metadata,
            tags: self.tags().map(str::to_string).collect(),
            content_type: self.content_type,
            payload: self.payload().to_vec(),
        })
    }
}
