//! Importing events read back from an export: ids, metadata, versions and
//! times are kept, so an export imported into an empty store gives the same
//! store, and importing it twice writes nothing the second time.

use crate::store::AppendTicket;
use crate::store::Store;
use crate::vocab::{ContentType, ExpectedVersion, NewEvent, RecordedEvent};
use crate::vocab::{Error, Result};

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
            let mut event = match e.content_type {
                ContentType::Json => NewEvent::json_bytes(e.event_type, e.payload),
                ContentType::Binary => NewEvent::binary(e.event_type, e.payload),
            };
            event.imported = true;
            new_events.push(
                event
                    .with_id(e.event_id)
                    .with_schema_version(e.schema_version)
                    .with_metadata(metadata)
                    .with_tags(e.tags),
            );
        }
        let mut append = self.prepare(&stream, expected, new_events)?;
        // An export that names one id twice must not become two events, one
        // of them unreachable by id.
        crate::store::check_ids(std::slice::from_ref(&append))?;
        for (encoded, at) in append.events.iter_mut().zip(times) {
            encoded.recorded_at = Some(at);
        }
        self.send(vec![append], Vec::new())
    }
}

fn expected_version_at(expected: ExpectedVersion, k: usize) -> u64 {
    let before = match expected {
        ExpectedVersion::Exact(v) => v,
        _ => 0,
    };
    before.saturating_add(1).saturating_add(k as u64)
}

#[cfg(test)]
mod tests {
    use crate::{ExpectedVersion, NewEvent, ReadAll, Store};

    fn export(store: &Store) -> Vec<crate::RecordedEvent> {
        store.read_all_batched(ReadAll::new(), 100).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn imported_events_keep_their_times_unless_that_would_go_back() {
        let source_dir = tempfile::tempdir().unwrap();
        let source = Store::open(source_dir.path()).unwrap();
        source
            .append("a-1", ExpectedVersion::Any, [NewEvent::json("E", &1), NewEvent::json("E", &2)])
            .unwrap();
        let events = export(&source);

        let target_dir = tempfile::tempdir().unwrap();
        let target = Store::open(target_dir.path()).unwrap();
        target.submit_recorded(events.clone()).unwrap().wait().unwrap();
        assert_eq!(export(&target), events, "an import into an empty store is identical");

        // Into a store whose last event is newer, the times are raised to it.
        let later_dir = tempfile::tempdir().unwrap();
        let later = Store::open(later_dir.path()).unwrap();
        later.append("z-1", ExpectedVersion::Any, [NewEvent::json("E", &0)]).unwrap();
        let newest = export(&later)[0].recorded_at;
        later.submit_recorded(events.clone()).unwrap().wait().unwrap();
        let got = export(&later);
        assert!(got[1..].iter().all(|e| e.recorded_at == newest.max(e.recorded_at)));
        assert!(got.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));
        assert_eq!((got[2].event_id, got[2].version), (events[1].event_id, 2));
    }

    /// Guards the import's duplicate-id check: an export holding one id
    /// twice was written as two events, and one of them could not be
    /// reached by id.
    #[test]
    fn an_import_naming_one_id_twice_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .append("a-1", ExpectedVersion::Any, [NewEvent::json("E", &1), NewEvent::json("E", &2)])
            .unwrap();
        let mut events = export(&store);
        events[1].event_id = events[0].event_id;
        let target_dir = tempfile::tempdir().unwrap();
        let target = Store::open(target_dir.path()).unwrap();
        let err = target.submit_recorded(events).unwrap_err();
        assert!(matches!(err, crate::Error::DuplicateEventId { .. }), "{err}");
        assert_eq!(target.head().unwrap(), 0);
    }

    #[test]
    fn a_batch_must_be_one_stream_at_consecutive_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("a-1", ExpectedVersion::Any, [NewEvent::json("E", &1)]).unwrap();
        store.append("b-1", ExpectedVersion::Any, [NewEvent::json("E", &1)]).unwrap();
        let events = export(&store);
        assert!(store.submit_recorded(events).is_err(), "two streams in one batch");
        assert!(matches!(store.submit_recorded(Vec::new()), Err(crate::Error::EmptyAppend)));
    }
}
