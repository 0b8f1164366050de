//! Forgetting, step one: deleting streams and limiting what of them is
//! served (see `docs/forgetting.md`). Every change is recorded as an event
//! of the system stream [`LIFECYCLE_STREAM`], committed with the change.

use std::time::Duration;

use super::Store;
use crate::read::served::meta_of;
use crate::vocab::{
    AppendResult, Error, EventMetadata, ExpectedVersion, NewEvent, Result, StreamLifecycle, StreamRetention,
};
use crate::writer::Lifecycle;

/// The stream that records every deletion and retention change: events
/// `$StreamDeleted`, `$StreamTombstoned` and `$StreamRetentionSet`, each
/// tagged `stream:<id>` and naming the stream and the reason in its payload.
pub const LIFECYCLE_STREAM: &str = "$streams";

impl Store {
    /// Soft-deletes `stream`: it disappears from reads and listings at once.
    /// Appending to it again brings it back, its versions going on from
    /// where they were; what was written before the deletion stays hidden.
    /// `reason` and `metadata` (who asked, the correlation of the request)
    /// go into the `$StreamDeleted` event that records it.
    ///
    /// ```
    /// use eventfold::{EventMetadata, ExpectedVersion, NewEvent, ReadStream, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("cart-1", ExpectedVersion::Any, [NewEvent::json("Added", &1)])?;
    /// store.delete_stream("cart-1", "abandoned", EventMetadata::new().user_id("ops"))?;
    /// assert_eq!(store.read()?.stream("cart-1", ReadStream::forward())?.count(), 0);
    /// let again = store.append("cart-1", ExpectedVersion::Any, [NewEvent::json("Added", &2)])?;
    /// assert_eq!(again.stream_version, 2);
    /// assert_eq!(store.read()?.stream("cart-1", ReadStream::forward())?.count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_stream(&self, stream: &str, reason: &str, metadata: EventMetadata) -> Result<AppendResult> {
        self.change_lifecycle(stream, "$StreamDeleted", Lifecycle::SoftDelete, reason, metadata, None)
    }

    /// Deletes `stream` for good: every later read of it is
    /// [`Error::StreamDeleted`], and so is every append. Recorded as a
    /// `$StreamTombstoned` event.
    pub fn tombstone_stream(
        &self,
        stream: &str,
        reason: &str,
        metadata: EventMetadata,
    ) -> Result<AppendResult> {
        self.change_lifecycle(stream, "$StreamTombstoned", Lifecycle::Tombstone, reason, metadata, None)
    }

    /// Sets limits on what of `stream` is served (truncation before a
    /// version, a maximum count, a maximum age): events outside them stop
    /// being served at once, by stream reads and reads of the global log
    /// alike. Truncation only moves forward. Recorded as a
    /// `$StreamRetentionSet` event.
    pub fn set_stream_retention(
        &self,
        stream: &str,
        retention: StreamRetention,
        reason: &str,
        metadata: EventMetadata,
    ) -> Result<AppendResult> {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let change = Lifecycle::Retention {
            truncate_before: retention.truncate_before,
            max_count: retention.max_count,
            max_age_us: retention.max_age.map(micros),
        };
        let detail = serde_json::json!({
            "truncate_before": retention.truncate_before,
            "max_count": retention.max_count,
            "max_age_us": retention.max_age.map(micros),
        });
        self.change_lifecycle(stream, "$StreamRetentionSet", change, reason, metadata, Some(detail))
    }

    /// Where `stream` is in its life, and its retention.
    pub fn stream_lifecycle(&self, stream: &str) -> Result<StreamLifecycle> {
        let reader = self.read()?;
        let meta = meta_of(&reader, stream)?.unwrap_or_default();
        Ok(StreamLifecycle {
            deleted: meta.deleted,
            tombstoned: meta.tombstoned,
            truncate_before: meta.truncate_before.max(1),
            max_count: (meta.max_count > 0).then_some(meta.max_count),
            max_age: (meta.max_age_us > 0).then(|| Duration::from_micros(meta.max_age_us)),
        })
    }

    fn change_lifecycle(
        &self,
        stream: &str,
        event_type: &str,
        change: Lifecycle,
        reason: &str,
        metadata: EventMetadata,
        detail: Option<serde_json::Value>,
    ) -> Result<AppendResult> {
        crate::vocab::validate_stream_id(stream)?;
        if stream.starts_with('$') {
            return Err(Error::InvalidStreamId {
                stream: stream.to_string(),
                reason: "the store's own streams cannot be deleted or limited".into(),
            });
        }
        let mut payload = serde_json::json!({ "stream": stream, "reason": reason });
        if let (Some(detail), Some(map)) = (detail, payload.as_object_mut()) {
            map.insert("retention".into(), detail);
        }
        let mut event =
            NewEvent::json(event_type, &payload).with_metadata(metadata).with_tag(format!("stream:{stream}"));
        event.system = true;
        let append = self.prepare(LIFECYCLE_STREAM, ExpectedVersion::Any, [event])?;
        let mut results = self
            .send_full(vec![append], Vec::new(), None, Some((stream.to_string(), change)))?
            .wait_many()?;
        results.pop().ok_or_else(|| Error::internal("a lifecycle change got no result"))
    }
}
