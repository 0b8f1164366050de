//! `Store::verify`: walk the whole store and check that the log and its
//! indexes agree.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::record;
use crate::store::Store;
use crate::store::keys::{
    Run, StreamHead, le_u64, parse_position_key, parse_stream_version_key, position_key,
};

/// Most faults a report lists one by one; the rest are only counted.
const MAX_LISTED: usize = 1000;

/// One thing `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Which database or check: `events`, `streams`, `stream_index`, `event_ids`, `meta`.
    pub area: String,
    /// The position concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// The stream concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.area)?;
        if let Some(p) = self.position {
            write!(f, " position {p}")?;
        }
        if let Some(s) = &self.stream {
            write!(f, " stream {s:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What [`Store::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Records read from the log.
    pub events: u64,
    /// Stream heads read.
    pub streams: u64,
    /// Index runs read.
    pub index_runs: u64,
    /// Event-id entries read.
    pub event_ids: u64,
    /// Durable consumers' checkpoint and dedup entries read.
    #[serde(default)]
    pub checkpoints: u64,
    /// Read models (projections) whose checkpoint entry was read.
    #[serde(default)]
    pub read_models: u64,
    /// Read-model documents read (both slots of every projection).
    #[serde(default)]
    pub documents: u64,
    /// Faults found (at most 1000 listed; see `fault_count`).
    pub faults: Vec<Fault>,
    /// Number of faults found in all.
    pub fault_count: u64,
}

impl VerifyReport {
    /// Whether the store passed every check.
    pub fn is_ok(&self) -> bool {
        self.fault_count == 0
    }

    pub(crate) fn fault(
        &mut self,
        area: &str,
        position: Option<u64>,
        stream: Option<&str>,
        message: impl Into<String>,
    ) {
        self.fault_count += 1;
        if self.faults.len() < MAX_LISTED {
            self.faults.push(Fault {
                area: area.to_string(),
                position,
                stream: stream.map(str::to_string),
                message: message.into(),
            });
        }
    }
}

/// What the log walk learned about one stream.
#[derive(Default)]
struct Seen {
    count: u64,
    last_version: u64,
    last_position: u64,
}

impl Store {
    /// Walks the whole store in one read transaction and checks it: every
    /// record's checksum and archive, positions gapless, versions of each
    /// stream consecutive, every index run pointing at the right records and
    /// every record indexed exactly once, stream heads agreeing with the log,
    /// the event-id index complete. Faults are reported, not returned as
    /// errors; an `Err` means the walk itself could not run.
    ///
    /// When some records cannot be read, the checks of stream versions and
    /// heads against the log are skipped: without those records they would
    /// only report the same damage again under other names.
    ///
    /// It holds one read transaction for the whole walk, so run it when the
    /// store is quiet or accept that the file may grow meanwhile.
    pub fn verify(&self) -> Result<VerifyReport> {
        let reader = self.read()?;
        let (txn, dbs) = (&reader.txn, reader.dbs);
        let mut report = VerifyReport::default();
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut expected = 1u64;
        // Streams of unreadable records are unknown, so heads that disagree
        // with the log are then reported as a consequence, not a new fault.
        let mut unreadable = 0u64;

        for item in dbs.events.iter(txn)? {
            let (k, v) = item?;
            let position = match parse_position_key(k) {
                Ok(p) => p,
                Err(e) => {
                    report.fault("events", None, None, e.to_string());
                    continue;
                }
            };
            report.events += 1;
            if position != expected {
                report.fault(
                    "events",
                    Some(expected),
                    None,
                    format!("gap: the next stored position is {position}"),
                );
            }
            expected = position + 1;
            let event = match record::decode(position, v) {
                Ok(e) => e,
                Err(e) => {
                    report.fault("events", Some(position), None, e.to_string());
                    unreadable += 1;
                    continue;
                }
            };
            let s = seen.entry(event.stream_id().to_string()).or_default();
            if event.version() != s.last_version + 1 && unreadable == 0 {
                report.fault(
                    "events",
                    Some(position),
                    Some(event.stream_id()),
                    format!("version {} follows version {}", event.version(), s.last_version),
                );
            }
            s.count += 1;
            s.last_version = event.version();
            s.last_position = position;
            match dbs.event_ids.get(txn, event.event_id().as_bytes())? {
                Some(p) if p.len() == 8 && le_u64(p) == position => {}
                Some(p) if p.len() == 8 => report.fault(
                    "event_ids",
                    Some(position),
                    Some(event.stream_id()),
                    format!("id {} points at position {}", event.event_id(), le_u64(p)),
                ),
                Some(_) => report.fault("event_ids", Some(position), None, "malformed entry"),
                None => report.fault(
                    "event_ids",
                    Some(position),
                    Some(event.stream_id()),
                    format!("id {} is not indexed", event.event_id()),
                ),
            }
        }

        let mut by_number: HashMap<u64, (String, StreamHead)> = HashMap::new();
        for item in dbs.streams.iter(txn)? {
            let (k, v) = item?;
            report.streams += 1;
            let id = String::from_utf8_lossy(k).into_owned();
            let head = match StreamHead::decode(v) {
                Ok(h) => h,
                Err(e) => {
                    report.fault("streams", None, Some(&id), e.to_string());
                    continue;
                }
            };
            match seen.get(&id) {
                None => {
                    report.fault("streams", None, Some(&id), "head of a stream with no events in the log")
                }
                Some(s) if s.last_version != head.version || s.last_position != head.last_position => report
                    .fault(
                        "streams",
                        None,
                        Some(&id),
                        format!(
                            "head says version {} at position {}, the log says version {} at position {}",
                            head.version, head.last_position, s.last_version, s.last_position
                        ),
                    ),
                Some(_) => {}
            }
            if let Some((other, _)) = by_number.insert(head.stream_no, (id.clone(), head)) {
                report.fault(
                    "streams",
                    None,
                    Some(&id),
                    format!("stream number {} is also used by {other:?}", head.stream_no),
                );
            }
        }
        for id in seen.keys() {
            if dbs.streams.get(txn, id.as_bytes())?.is_none() {
                report.fault("streams", None, Some(id), "stream has events but no head");
            }
        }

        // Runs of each stream must tile versions 1..=head.version, each event
        // once, each pointing at a record of that stream and version.
        let mut next_version: HashMap<u64, u64> = HashMap::new();
        for item in dbs.stream_index.iter(txn)? {
            let (k, v) = item?;
            report.index_runs += 1;
            let ((no, first_version), run) =
                match (parse_stream_version_key("stream_index", k), Run::decode(v)) {
                    (Ok(key), Ok(run)) => (key, run),
                    (Err(e), _) | (_, Err(e)) => {
                        report.fault("stream_index", None, None, e.to_string());
                        continue;
                    }
                };
            let Some((id, _)) = by_number.get(&no) else {
                report.fault(
                    "stream_index",
                    Some(run.first_position),
                    None,
                    format!("run of unknown stream number {no}"),
                );
                continue;
            };
            let want = next_version.entry(no).or_insert(1);
            if first_version != *want {
                report.fault(
                    "stream_index",
                    Some(run.first_position),
                    Some(id),
                    format!("run starts at version {first_version}, expected {want}"),
                );
            }
            *want = first_version + run.count;
            for k in 0..run.count {
                let position = run.first_position + k;
                let version = first_version + k;
                match dbs.events.get(txn, &position_key(position))? {
                    None => report.fault(
                        "stream_index",
                        Some(position),
                        Some(id),
                        format!("version {version} points at a missing position"),
                    ),
                    Some(v) => match record::decode(position, v) {
                        Ok(e) if e.stream_id() == id && e.version() == version => {}
                        Ok(e) => report.fault(
                            "stream_index",
                            Some(position),
                            Some(id),
                            format!(
                                "version {version} points at {:?} version {}",
                                e.stream_id(),
                                e.version()
                            ),
                        ),
                        // Already reported by the log walk.
                        Err(_) => {}
                    },
                }
            }
        }
        for (no, (id, head)) in &by_number {
            let indexed_to = next_version.get(no).copied().unwrap_or(1) - 1;
            if indexed_to != head.version {
                report.fault(
                    "stream_index",
                    None,
                    Some(id),
                    format!("versions 1..={indexed_to} are indexed, the stream has {}", head.version),
                );
            }
        }

        report.event_ids = dbs.event_ids.len(txn)?;
        if report.event_ids > report.events {
            report.fault(
                "event_ids",
                None,
                None,
                format!("{} ids indexed for {} events", report.event_ids, report.events),
            );
        }
        crate::consumer::verify_checkpoints(&reader, &mut report);
        crate::projection::verify_read_models(self, &reader, &mut report)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::keys::{position_key, stream_version_key};
    use crate::{ExpectedVersion, NewEvent, Store};

    fn store_with_events() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..5u64 {
            store
                .append(
                    &format!("v-{}", i % 2),
                    ExpectedVersion::Any,
                    [NewEvent::json("E", &i), NewEvent::json("F", &i)],
                )
                .unwrap();
        }
        (dir, store)
    }

    #[test]
    fn a_healthy_store_verifies() {
        let (_d, store) = store_with_events();
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.faults);
        assert_eq!((report.events, report.streams, report.event_ids), (10, 2, 10));
    }

    #[test]
    fn verify_names_a_flipped_byte_and_a_removed_index_entry() {
        let (_d, store) = store_with_events();
        {
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            let mut v = dbs.events.get(&wtxn, &position_key(4)).unwrap().unwrap().to_vec();
            v[3] ^= 1;
            dbs.events.put(&mut wtxn, &position_key(4), &v).unwrap();
            assert!(dbs.stream_index.delete(&mut wtxn, &stream_version_key(1, 3)).unwrap());
            wtxn.commit().unwrap();
        }
        let report = store.verify().unwrap();
        assert!(!report.is_ok());
        let text: Vec<String> = report.faults.iter().map(|f| f.to_string()).collect();
        assert!(text.iter().any(|t| t.starts_with("events position 4") && t.contains("corrupt")), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("stream_index") && t.contains("expected 3")), "{text:?}");
    }
}
