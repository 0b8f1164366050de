//! The event types callers build and receive: [`NewEvent`] going in,
//! [`RecordedEvent`] coming out, and what an append answers.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// How a payload is encoded.
///
/// More encodings may be added: a `match` outside eventfold needs a
/// wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentType {
    /// UTF-8 JSON, validated on append.
    Json,
    /// Opaque bytes.
    Binary,
}

impl ContentType {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            ContentType::Json => 0,
            ContentType::Binary => 1,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(ContentType::Json),
            1 => Some(ContentType::Binary),
            _ => None,
        }
    }
}

/// Who and what an event relates to: correlation, causation, user, the W3C
/// trace context, and free extra fields (a JSON object).
///
/// Build it with [`EventMetadata::new`] (or [`caused_by`](Self::caused_by))
/// and the setters; more fields may be added, so it cannot be built with a
/// struct literal outside eventfold.
///
/// Correlation and causation ids are any string a service carries: an HTTP
/// request id (`req-7f3a`), a trace id, a UUID. Each is 1 to
/// [`MAX_METADATA_ID_LEN`](crate::MAX_METADATA_ID_LEN) bytes without
/// control characters, and comes back exactly as given. The user id is at
/// most as long, without control characters. The `traceparent` is a W3C
/// trace-context header (`00-<trace id>-<parent id>-<flags>`). Extra fields
/// may not be named like the fields (`correlation_id`, `causation_id`,
/// `user_id`, `traceparent`) nor take the names the record reserves
/// (`$correlation_id`, `$causation_id`, `$traceparent`); only an import
/// ([`Store::submit_recorded`](crate::Store::submit_recorded)) keeps an
/// extra field named like a field, which a store written before may hold.
/// The append checks all this: a violation is [`Error::InvalidMetadataField`](crate::Error::InvalidMetadataField)
/// (or [`Error::InvalidMetadata`](crate::Error::InvalidMetadata) for an
/// extra field's name), and nothing is written.
///
/// ```
/// use eventfold::EventMetadata;
/// let m = EventMetadata::new()
///     .correlation_id("req-7f3a")
///     .causation_id(uuid::Uuid::now_v7())
///     .user_id("ann")
///     .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
///     .extra("ip", "10.0.0.1");
/// assert_eq!(m.correlation_id.as_deref(), Some("req-7f3a"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventMetadata {
    /// Groups every event of one business transaction: any id string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The event (or command, or request) that directly caused this one: any
    /// id string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The user on whose behalf the event was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The W3C trace-context `traceparent` of the operation that recorded the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Any other fields.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl EventMetadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Metadata for an event caused by `cause`: causation is the cause's id
    /// (its hyphenated text), correlation is the cause's correlation id, or
    /// its id when it has none. The user id is carried over; the
    /// `traceparent` is not (it names the operation that records the new
    /// event: set it with [`traceparent`](Self::traceparent)).
    pub fn caused_by(cause: &RecordedEvent) -> Self {
        EventMetadata {
            correlation_id: Some(cause.correlation_id.clone().unwrap_or_else(|| cause.event_id.to_string())),
            causation_id: Some(cause.event_id.to_string()),
            user_id: cause.user_id.clone(),
            traceparent: None,
            extra: Map::new(),
        }
    }

    /// Sets the correlation id: any id string (`"req-7f3a"`, a trace id), or
    /// anything with a text form, such as a [`Uuid`] (stored as its
    /// hyphenated text).
    pub fn correlation_id(mut self, id: impl ToString) -> Self {
        self.correlation_id = Some(id.to_string());
        self
    }

    /// Sets the causation id: any id string, or anything with a text form,
    /// such as a [`Uuid`] (stored as its hyphenated text).
    pub fn causation_id(mut self, id: impl ToString) -> Self {
        self.causation_id = Some(id.to_string());
        self
    }

    /// Sets the user id.
    pub fn user_id(mut self, user: impl Into<String>) -> Self {
        self.user_id = Some(user.into());
        self
    }

    /// Sets the W3C trace-context `traceparent`
    /// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), as the
    /// service received it or made it for the operation that records the event.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Adds an extra field.
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Checks every field against the rules in the type's docs; `imported`
    /// metadata (see `NewEvent::imported`) may keep extra fields named like
    /// metadata fields.
    pub(crate) fn check(&self, imported: bool) -> super::Result<()> {
        use super::metadata::{check_extra_names, check_id, check_traceparent};
        if let Some(id) = &self.correlation_id {
            check_id("correlation id", id)?;
        }
        if let Some(id) = &self.causation_id {
            check_id("causation id", id)?;
        }
        // An empty user id has always been accepted.
        if let Some(user) = self.user_id.as_deref().filter(|u| !u.is_empty()) {
            check_id("user id", user)?;
        }
        if let Some(tp) = &self.traceparent {
            check_traceparent(tp)?;
        }
        check_extra_names(&self.extra, imported)
    }
}

/// An event to append. Build it with [`NewEvent::json`] or [`NewEvent::binary`]
/// and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub(crate) event_type: String,
    pub(crate) payload: Result<Vec<u8>, String>,
    pub(crate) content_type: ContentType,
    /// The payload came from serde_json's serializer, so it is valid JSON
    /// already and need not be parsed again.
    pub(crate) json_checked: bool,
    /// Read back from an export (`Store::submit_recorded`): its extra fields
    /// may be named like metadata fields, as a store written before those
    /// names were refused may hold.
    pub(crate) imported: bool,
    /// Written by the store itself (a deletion, a retention change): may
    /// use the reserved `$` names.
    pub(crate) system: bool,
    pub(crate) event_id: Option<Uuid>,
    pub(crate) schema_version: u32,
    pub(crate) metadata: EventMetadata,
    pub(crate) tags: Vec<String>,
}

impl NewEvent {
    /// An event whose payload is `payload` serialized as JSON. A payload that
    /// cannot be serialized is reported by the append as
    /// [`Error::InvalidPayload`](crate::Error::InvalidPayload).
    pub fn json<T: Serialize + ?Sized>(event_type: impl Into<String>, payload: &T) -> Self {
        let mut event = Self::with_payload(
            event_type.into(),
            serde_json::to_vec(payload).map_err(|e| e.to_string()),
            ContentType::Json,
        );
        event.json_checked = true;
        event
    }

    /// An event whose payload is already-encoded JSON text; it is validated on
    /// append and stored byte for byte.
    pub fn json_bytes(event_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self::with_payload(event_type.into(), Ok(payload.into()), ContentType::Json)
    }

    /// An event with an opaque binary payload.
    pub fn binary(event_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self::with_payload(event_type.into(), Ok(payload.into()), ContentType::Binary)
    }

    fn with_payload(event_type: String, payload: Result<Vec<u8>, String>, content_type: ContentType) -> Self {
        NewEvent {
            event_type,
            payload,
            content_type,
            json_checked: false,
            imported: false,
            system: false,
            event_id: None,
            schema_version: 1,
            metadata: EventMetadata::default(),
            tags: Vec::new(),
        }
    }

    /// Sets the event id (default: a new UUID v7). Resending an append with the
    /// same ids is idempotent.
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.event_id = Some(id);
        self
    }

    /// Sets the payload's schema version (default 1), read by upcasters.
    pub fn with_schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Replaces the metadata.
    pub fn with_metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Adds tags: the entities the event concerns (`student:42`,
    /// `course:7`), read back with the event and indexed, so that a
    /// [`Filter`](crate::Filter) or a DCB [`Query`](crate::Query) finds the
    /// events of an entity without reading the rest. At most
    /// [`MAX_TAGS`](crate::MAX_TAGS) tags, each 1 to
    /// [`MAX_TAG_LEN`](crate::MAX_TAG_LEN) bytes without control
    /// characters, none twice; anything else is refused by the append with
    /// [`Error::InvalidTag`](crate::Error::InvalidTag).
    ///
    /// ```
    /// use eventfold::NewEvent;
    /// let e = NewEvent::json("StudentEnrolled", &1).with_tags(["student:42", "course:7"]);
    /// assert_eq!(e.tags(), ["student:42", "course:7"]);
    /// ```
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Adds one tag; see [`with_tags`](Self::with_tags).
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// The event's tags, in the order given.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Sets causation and correlation from the event that caused this one.
    pub fn caused_by(mut self, cause: &RecordedEvent) -> Self {
        let chained = EventMetadata::caused_by(cause);
        self.metadata.correlation_id = chained.correlation_id;
        self.metadata.causation_id = chained.causation_id;
        if self.metadata.user_id.is_none() {
            self.metadata.user_id = chained.user_id;
        }
        self
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The event id, if one was set.
    pub fn event_id(&self) -> Option<Uuid> {
        self.event_id
    }

    /// The metadata.
    pub fn metadata(&self) -> &EventMetadata {
        &self.metadata
    }
}

/// What a successful append answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppendResult {
    /// The stream appended to.
    pub stream_id: String,
    /// Global position of the first event written.
    pub first_position: u64,
    /// Global position of the last event written.
    pub last_position: u64,
    /// The stream's version after the append (the last event's version).
    pub stream_version: u64,
    /// The ids of the events, in order.
    pub event_ids: Vec<Uuid>,
    /// True when the events were already stored (an idempotent retry) and
    /// nothing was written.
    pub already_stored: bool,
}

/// An event read back from the store, owned.
///
/// The store makes these; to build one elsewhere (a handler's test), start
/// from [`RecordedEvent::new`] and set the other fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedEvent {
    /// Global position: 1, 2, 3… gapless, in commit order.
    pub position: u64,
    /// The stream (aggregate id).
    pub stream_id: String,
    /// The event's version in its stream (1 for the first).
    pub version: u64,
    /// The event id.
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// Microseconds since the Unix epoch, set by the writer.
    pub recorded_at: u64,
    /// Correlation id, exactly as appended.
    pub correlation_id: Option<String>,
    /// Causation id, exactly as appended.
    pub causation_id: Option<String>,
    /// User id.
    pub user_id: Option<String>,
    /// The W3C trace-context `traceparent` it was appended with.
    pub traceparent: Option<String>,
    /// Extra metadata fields (a JSON object; empty when none).
    pub metadata: Map<String, Value>,
    /// The event's tags, in the order appended (none for events written
    /// before tags existed).
    pub tags: Vec<String>,
    /// How the payload is encoded.
    pub content_type: ContentType,
    /// The payload bytes as appended.
    pub payload: Vec<u8>,
}

impl RecordedEvent {
    /// An event as the store would hand it out, for tests of the code that
    /// consumes events: at `position`, version `version` of `stream_id`, with
    /// a new UUID v7 as its id, schema version 1, recorded now, and no
    /// metadata. The fields are public: set any other value on the result.
    ///
    /// ```
    /// use eventfold::{ContentType, RecordedEvent};
    /// let mut e = RecordedEvent::new(7, "order-1", 2, "Paid", ContentType::Json, br#"{"amount":5}"#.to_vec());
    /// e.user_id = Some("ann".into());
    /// assert_eq!((e.position, e.category(), e.version), (7, "order", 2));
    /// ```
    pub fn new(
        position: u64,
        stream_id: impl Into<String>,
        version: u64,
        event_type: impl Into<String>,
        content_type: ContentType,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        RecordedEvent {
            position,
            stream_id: stream_id.into(),
            version,
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            recorded_at: crate::vocab::now_micros(),
            correlation_id: None,
            causation_id: None,
            user_id: None,
            traceparent: None,
            metadata: Map::new(),
            tags: Vec::new(),
            content_type,
            payload: payload.into(),
        }
    }

    /// The stream's category: the part of the stream id before the first `-`.
    pub fn category(&self) -> &str {
        crate::vocab::category_of(&self.stream_id)
    }

    /// Decodes a JSON payload into `T`.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> super::Result<T> {
        serde_json::from_slice(&self.payload).map_err(|e| super::Error::Decode {
            stream: self.stream_id.clone(),
            position: self.position,
            event_type: self.event_type.clone(),
            reason: e.to_string(),
        })
    }

    /// The payload as a JSON value (binary payloads become a JSON string of hex digits).
    pub fn payload_json(&self) -> super::Result<Value> {
        match self.content_type {
            ContentType::Json => self.payload_as(),
            ContentType::Binary => Ok(Value::String(hex_encode(&self.payload))),
        }
    }

    /// The payload as JSON text, exactly as stored (binary payloads become a
    /// JSON string of hex digits); the error says why stored JSON does not parse.
    pub(crate) fn payload_raw(&self) -> Result<Box<serde_json::value::RawValue>, String> {
        match self.content_type {
            ContentType::Json => {
                std::str::from_utf8(&self.payload).map_err(|e| e.to_string()).and_then(|text| {
                    serde_json::value::RawValue::from_string(text.to_owned()).map_err(|e| e.to_string())
                })
            }
            ContentType::Binary => {
                serde_json::value::to_raw_value(&hex_encode(&self.payload)).map_err(|e| e.to_string())
            }
        }
    }

    /// The metadata as an [`EventMetadata`].
    pub fn event_metadata(&self) -> EventMetadata {
        EventMetadata {
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            user_id: self.user_id.clone(),
            traceparent: self.traceparent.clone(),
            extra: self.metadata.clone(),
        }
    }
}

/// The serialized shape of a [`RecordedEvent`]: JSON payloads are embedded as
/// JSON, binary payloads as a string of hex digits.
#[derive(Serialize, Deserialize)]
struct RecordedEventWire {
    position: u64,
    stream_id: String,
    version: u64,
    event_id: Uuid,
    event_type: String,
    schema_version: u32,
    recorded_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    content_type: ContentType,
    payload: Box<serde_json::value::RawValue>,
}

impl Serialize for RecordedEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let payload = self.payload_raw().map_err(S::Error::custom)?;
        RecordedEventWire {
            position: self.position,
            stream_id: self.stream_id.clone(),
            version: self.version,
            event_id: self.event_id,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            user_id: self.user_id.clone(),
            traceparent: self.traceparent.clone(),
            metadata: self.metadata.clone(),
            tags: self.tags.clone(),
            content_type: self.content_type,
            payload,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RecordedEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let w = RecordedEventWire::deserialize(deserializer)?;
        let payload = match w.content_type {
            ContentType::Json => w.payload.get().as_bytes().to_vec(),
            ContentType::Binary => {
                let hex: String = serde_json::from_str(w.payload.get()).map_err(D::Error::custom)?;
                hex_decode(&hex).ok_or_else(|| D::Error::custom("binary payload is not hex"))?
            }
        };
        Ok(RecordedEvent {
            position: w.position,
            stream_id: w.stream_id,
            version: w.version,
            event_id: w.event_id,
            event_type: w.event_type,
            schema_version: w.schema_version,
            recorded_at: w.recorded_at,
            correlation_id: w.correlation_id,
            causation_id: w.causation_id,
            user_id: w.user_id,
            traceparent: w.traceparent,
            metadata: w.metadata,
            tags: w.tags,
            content_type: w.content_type,
            payload,
        })
    }
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi << 4 | lo) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(hex_decode(&hex_encode(&bytes)), Some(bytes));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn recorded_event_serde_round_trip_keeps_payload_bytes() {
        let ev = RecordedEvent {
            position: 3,
            stream_id: "order-1".into(),
            version: 2,
            event_id: Uuid::now_v7(),
            event_type: "Placed".into(),
            schema_version: 1,
            recorded_at: 17,
            correlation_id: Some("req-7f3a".into()),
            causation_id: Some(Uuid::new_v4().to_string()),
            user_id: Some("ann".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            metadata: Map::new(),
            tags: Vec::new(),
            content_type: ContentType::Json,
            payload: br#"{"b":1,"a":2}"#.to_vec(),
        };
        let text = serde_json::to_string(&ev).unwrap();
        let back: RecordedEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ev);
        let bin = RecordedEvent { content_type: ContentType::Binary, payload: vec![0, 255], ..ev };
        let back: RecordedEvent = serde_json::from_str(&serde_json::to_string(&bin).unwrap()).unwrap();
        assert_eq!(back, bin);
    }

    #[test]
    fn caused_by_chains_correlation() {
        let mut cause = RecordedEvent {
            position: 1,
            stream_id: "a-1".into(),
            version: 1,
            event_id: Uuid::new_v4(),
            event_type: "T".into(),
            schema_version: 1,
            recorded_at: 0,
            correlation_id: None,
            causation_id: None,
            user_id: Some("u".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            metadata: Map::new(),
            tags: Vec::new(),
            content_type: ContentType::Json,
            payload: b"{}".to_vec(),
        };
        let m = EventMetadata::caused_by(&cause);
        assert_eq!(m.causation_id, Some(cause.event_id.to_string()));
        assert_eq!(m.correlation_id, Some(cause.event_id.to_string()));
        assert_eq!((m.user_id.as_deref(), m.traceparent), (Some("u"), None));
        cause.correlation_id = Some("req-7f3a".into());
        assert_eq!(EventMetadata::caused_by(&cause).correlation_id.as_deref(), Some("req-7f3a"));
    }

    #[test]
    fn builders_take_strings_and_uuids() {
        let id = Uuid::now_v7();
        let m = EventMetadata::new().correlation_id(id).causation_id("req-7f3a");
        assert_eq!(m.correlation_id, Some(id.hyphenated().to_string()));
        assert_eq!(m.causation_id.as_deref(), Some("req-7f3a"));
        assert!(m.check(false).is_ok());
        let long = EventMetadata::new().correlation_id("x".repeat(257));
        assert!(matches!(long.check(false), Err(super::super::Error::InvalidMetadataField { .. })));
        let reserved = EventMetadata::new().extra("correlation_id", "x");
        assert!(matches!(reserved.check(false), Err(super::super::Error::InvalidMetadata { .. })));
        assert!(reserved.check(true).is_ok(), "an import keeps what an old store holds");
        let reserved = EventMetadata::new().extra("$correlation_id", "x");
        assert!(matches!(reserved.check(true), Err(super::super::Error::InvalidMetadata { .. })));
        assert!(EventMetadata::new().user_id("").check(false).is_ok(), "an empty user id stays accepted");
    }

    /// Guards the export format: an export line written before ids were
    /// strings (UUID ids, no traceparent) reads back and is written again
    /// byte for byte.
    #[test]
    fn an_export_line_with_uuid_ids_is_read_and_written_as_before() {
        let line = r#"{"position":2,"stream_id":"order-1","version":2,"event_id":"0190a5b6-7c8d-7e9f-a0b1-000000000002","event_type":"Paid","schema_version":1,"recorded_at":1796171068755357,"correlation_id":"0190a5b6-7c8d-7e9f-a0b1-c2d3e4f50617","causation_id":"0190a5b6-7c8d-7e9f-a0b1-000000000001","user_id":"ann","content_type":"json","payload":{"amount":5}}"#;
        let e: RecordedEvent = serde_json::from_str(line).unwrap();
        assert_eq!(e.correlation_id.as_deref(), Some("0190a5b6-7c8d-7e9f-a0b1-c2d3e4f50617"));
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
    }
}
