//! The headers the relay sets on each message, and how to read an event back
//! from a JetStream message.
//!
//! String values that may hold any character (event type, correlation,
//! causation and user ids) are encoded like subject tokens (see
//! [`crate::subject`]), which leaves a hyphenated UUID as it is; the event
//! id is a hyphenated UUID, numbers are decimal, and the W3C `traceparent`
//! goes in the standard header of that name, as it is.

use async_nats::HeaderMap;
use bytes::Bytes;
use eventfold::{ContentType, RecordedEvent};
use uuid::Uuid;

use crate::error::RelayError;
use crate::subject::{decode_token, encode_token};

/// JetStream's deduplication header: the event id.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The event type (token-encoded).
pub const EVENT_TYPE: &str = "Eventfold-Event-Type";
/// The event's global position in the source store.
pub const POSITION: &str = "Eventfold-Position";
/// The event's version within its stream (1-based).
pub const STREAM_VERSION: &str = "Eventfold-Stream-Version";
/// When the event was recorded: µs since the Unix epoch.
pub const RECORDED_AT: &str = "Eventfold-Recorded-At";
/// Correlation id (token-encoded), when the event has one.
pub const CORRELATION_ID: &str = "Eventfold-Correlation-Id";
/// Causation id (token-encoded), when the event has one.
pub const CAUSATION_ID: &str = "Eventfold-Causation-Id";
/// The W3C trace-context header, when the event has one.
pub const TRACEPARENT: &str = "traceparent";
/// User id (token-encoded), when the event has one.
pub const USER_ID: &str = "Eventfold-User-Id";
/// The payload's schema version.
pub const SCHEMA_VERSION: &str = "Eventfold-Schema-Version";
/// Extra metadata as compact JSON, when there is any.
pub const METADATA: &str = "Eventfold-Metadata";
/// `application/json` or `application/octet-stream`.
pub const CONTENT_TYPE: &str = "Content-Type";

const JSON: &str = "application/json";
const BINARY: &str = "application/octet-stream";

/// The headers of the message relaying `event`.
pub fn headers_for(event: &RecordedEvent) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(MSG_ID, event.event_id.to_string().as_str());
    h.insert(EVENT_TYPE, encode_token(&event.event_type).as_str());
    h.insert(POSITION, event.position.to_string().as_str());
    h.insert(STREAM_VERSION, event.version.to_string().as_str());
    h.insert(RECORDED_AT, event.recorded_at.to_string().as_str());
    if let Some(id) = &event.correlation_id {
        h.insert(CORRELATION_ID, encode_token(id).as_str());
    }
    if let Some(id) = &event.causation_id {
        h.insert(CAUSATION_ID, encode_token(id).as_str());
    }
    if let Some(user) = &event.user_id {
        h.insert(USER_ID, encode_token(user).as_str());
    }
    if let Some(traceparent) = &event.traceparent {
        // Visible ASCII only (the store checks it): a header value as it is.
        h.insert(TRACEPARENT, traceparent.as_str());
    }
    h.insert(SCHEMA_VERSION, event.schema_version.to_string().as_str());
    if !event.metadata.is_empty() {
        // Compact JSON escapes control characters: one header line.
        if let Ok(json) = serde_json::to_string(&event.metadata) {
            h.insert(METADATA, json.as_str());
        }
    }
    let ct = match event.content_type {
        ContentType::Json => JSON,
        // Binary, and any encoding this relay does not know: opaque bytes.
        _ => BINARY,
    };
    h.insert(CONTENT_TYPE, ct);
    h
}

/// An event read back from a JetStream message published by the relay.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayedEvent {
    /// The JetStream subject it was stored under.
    pub subject: String,
    /// The event's stream id (decoded from the subject).
    pub stream_id: String,
    /// The event id (`Nats-Msg-Id`).
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// The global position in the source store.
    pub position: u64,
    /// The version within its stream.
    pub version: u64,
    /// When it was recorded (µs since the Unix epoch).
    pub recorded_at: u64,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Causation id.
    pub causation_id: Option<String>,
    /// User id.
    pub user_id: Option<String>,
    /// The W3C trace-context `traceparent`.
    pub traceparent: Option<String>,
    /// Payload schema version.
    pub schema_version: u32,
    /// Extra metadata (an empty object when none was set).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// How the payload is encoded.
    pub content_type: ContentType,
    /// The payload, as appended.
    pub payload: Bytes,
}

impl RelayedEvent {
    /// Reads an event from a message's subject, headers and payload. `prefix`
    /// is the subject prefix the relay used.
    pub fn from_message(
        prefix: &str,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: Bytes,
    ) -> Result<RelayedEvent, RelayError> {
        let fail = |reason: String| RelayError::Decode { subject: subject.to_string(), reason };
        let headers = headers.ok_or_else(|| fail("it has no headers".into()))?;
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
        let need = |name: &str| get(name).ok_or_else(|| fail(format!("header {name} is missing")));
        let num = |name: &str| -> Result<u64, RelayError> {
            need(name)?.parse().map_err(|_| fail(format!("header {name} is not a number")))
        };
        let uuid = |name: &str| -> Result<Option<Uuid>, RelayError> {
            get(name)
                .map(|v| Uuid::parse_str(&v).map_err(|_| fail(format!("header {name} is not a UUID"))))
                .transpose()
        };
        let token = |name: &str, v: String| {
            decode_token(&v).ok_or_else(|| fail(format!("header {name} is not encoded")))
        };
        let (_, stream_id) = crate::subject::parse_subject(prefix, subject)
            .ok_or_else(|| fail(format!("the subject is not <{prefix}>.<category>.<stream id>")))?;
        let event_id = uuid(MSG_ID)?.ok_or_else(|| fail(format!("header {MSG_ID} is missing")))?;
        let content_type = match need(CONTENT_TYPE)?.as_str() {
            JSON => ContentType::Json,
            BINARY => ContentType::Binary,
            other => return Err(fail(format!("content type {other:?} is unknown"))),
        };
        let metadata = match get(METADATA) {
            Some(json) => serde_json::from_str(&json).map_err(|e| fail(format!("header {METADATA}: {e}")))?,
            None => serde_json::Map::new(),
        };
        let schema_version = u32::try_from(num(SCHEMA_VERSION)?)
            .map_err(|_| fail(format!("header {SCHEMA_VERSION} is out of range")))?;
        Ok(RelayedEvent {
            subject: subject.to_string(),
            stream_id,
            event_id,
            event_type: token(EVENT_TYPE, need(EVENT_TYPE)?)?,
            position: num(POSITION)?,
            version: num(STREAM_VERSION)?,
            recorded_at: num(RECORDED_AT)?,
            correlation_id: get(CORRELATION_ID).map(|v| token(CORRELATION_ID, v)).transpose()?,
            causation_id: get(CAUSATION_ID).map(|v| token(CAUSATION_ID, v)).transpose()?,
            user_id: get(USER_ID).map(|v| token(USER_ID, v)).transpose()?,
            traceparent: get(TRACEPARENT),
            schema_version,
            metadata,
            content_type,
            payload,
        })
    }

    /// Reads an event from a message received from JetStream.
    pub fn from_jetstream(prefix: &str, message: &async_nats::Message) -> Result<RelayedEvent, RelayError> {
        Self::from_message(
            prefix,
            message.subject.as_str(),
            message.headers.as_ref(),
            message.payload.clone(),
        )
    }

    /// The payload parsed as JSON.
    pub fn payload_json(&self) -> Result<serde_json::Value, RelayError> {
        serde_json::from_slice(&self.payload).map_err(|e| RelayError::Decode {
            subject: self.subject.clone(),
            reason: format!("payload is not JSON: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> RecordedEvent {
        let mut e = RecordedEvent::new(
            42,
            "user.ann smith-7",
            3,
            "Renamed to é",
            ContentType::Json,
            br#"{"name":"x"}"#,
        );
        e.schema_version = 2;
        e.recorded_at = 1_700_000_000_000_000;
        e.correlation_id = Some("req 7f.3a é".into());
        e.causation_id = Some(Uuid::now_v7().to_string());
        e.user_id = Some("ann smith".into());
        e.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        e.metadata.insert("tenant".into(), serde_json::json!("t\n1"));
        e
    }

    #[test]
    fn headers_round_trip() {
        let e = event();
        let subject = crate::subject::subject_for("events", &e.stream_id);
        let h = headers_for(&e);
        assert_eq!(h.get(MSG_ID).map(|v| v.as_str().to_string()), Some(e.event_id.to_string()));
        let r =
            RelayedEvent::from_message("events", &subject, Some(&h), Bytes::from(e.payload.clone())).unwrap();
        assert_eq!(
            (r.stream_id.as_str(), r.event_type.as_str(), r.position, r.version, r.user_id.as_deref()),
            (e.stream_id.as_str(), e.event_type.as_str(), 42, 3, Some("ann smith"))
        );
        assert_eq!(
            (&r.correlation_id, &r.causation_id, &r.traceparent, r.schema_version),
            (&e.correlation_id, &e.causation_id, &e.traceparent, 2)
        );
        // A UUID id is its usual text in the header, as before ids were strings.
        let causation = h.get(CAUSATION_ID).map(|v| v.as_str().to_string());
        assert_eq!(causation, e.causation_id);
        assert_eq!(
            h.get(CORRELATION_ID).map(|v| v.as_str().to_string()).as_deref(),
            Some("req~207f~2E3a~20~C3~A9")
        );
        assert_eq!(
            (r.recorded_at, r.content_type, &r.metadata),
            (e.recorded_at, ContentType::Json, &e.metadata)
        );
        assert_eq!(r.payload_json().unwrap()["name"], "x");
    }

    #[test]
    fn foreign_messages_are_reported() {
        let e = event();
        let subject = crate::subject::subject_for("events", &e.stream_id);
        let err = RelayedEvent::from_message("events", &subject, None, Bytes::new()).unwrap_err();
        assert!(err.to_string().contains("no headers"), "{err}");
        let mut h = headers_for(&e);
        h.insert(POSITION, "x");
        let err = RelayedEvent::from_message("events", &subject, Some(&h), Bytes::new()).unwrap_err();
        assert!(err.to_string().contains(POSITION), "{err}");
        let err =
            RelayedEvent::from_message("other", &subject, Some(&headers_for(&e)), Bytes::new()).unwrap_err();
        assert!(err.to_string().contains("<other>"), "{err}");
    }
}
