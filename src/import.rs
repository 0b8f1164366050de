//! Importing events read back from an export: ids, metadata, versions and
//! times are kept, so an export imported into an empty store gives the same
//! store, and importing it twice writes nothing the second time.

use crate::error::{Error, Result};
use crate::event::{ContentType, ExpectedVersion, NewEvent, RecordedEvent};
use crate::store::Store;
use crate::writer::AppendTicket;

impl Store {
    /// Queues events of one stream, read from an export (see
    /// [`RecordedEvent`]'s serde form), to be written as they were: the same
    /// event ids, metadata, schema versions and payloads, at the same
    /// versions (the append expects the stream to be at the first event's
    /// version minus one), with their original `recorded_at` unless that
    /// would be earlier than the store's last event (times never decrease
    /// along positions). Positions are assigned by this store as usual; into
    /// an empty store, a whole export imported in order gets its original
    /// positions back.
    ///
    /// Resending events that are already stored at the same place is an
    /// idempotent success, so an import can be repeated or resumed.
    pub fn submit_recorded(&self, events: Vec<RecordedEvent>) -> Result<AppendTicket> {
        let Some(first) = events.first() else { return Err(Error::EmptyAppend) };
        let stream = first.stream_id.clone();
        let expected = ExpectedVersion::Exact(first.version.saturating_sub(1));
        let mut times = Vec::with_capacity(events.len());
        let mut new_events = Vec::with_capacity(events.len());
        for (k, e) in events.into_iter().enumerate() {
            if e.stream_id != stream {
                return Err(Error::InvalidStreamId {
                    stream: e.stream_id,
                    reason: format!("one imported batch must hold events of one stream ({stream:?})"),
                });
            }
            let want = expected_version_at(expected, k);
            if e.version != want {
                return Err(Error::InvalidStreamId {
                    stream,
                    reason: format!(
                        "imported versions must be consecutive: expected {want}, got {}",
                        e.version
                    ),
                });
            }
            times.push(e.recorded_at);
            let metadata = e.event_metadata();
            let event = match e.content_type {
                ContentType::Json => NewEvent::json_bytes(e.event_type, e.payload),
                ContentType::Binary => NewEvent::binary(e.event_type, e.payload),
            };
            new_events.push(
                event.with_id(e.event_id).with_schema_version(e.schema_version).with_metadata(metadata),
            );
        }
        let mut append = self.prepare(&stream, expected, new_events)?;
        for (encoded, at) in append.events.iter_mut().zip(times) {
            encoded.recorded_at = Some(at);
        }
        self.send(vec![append], Vec::new())
    }
}

fn expected_version_at(expected: ExpectedVersion, k: usize) -> u64 {
    match expected {
        ExpectedVersion::Exact(v) => v + 1 + k as u64,
        _ => k as u64 + 1,
    }
}
