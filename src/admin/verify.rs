//! `Store::verify`: walk the whole store and check that the log and its
//! indexes agree.

use crate::lmdb::keys::{
    Run, StreamHead, le_u64, parse_position_key, parse_stream_version_key, position_key,
};
use crate::read::Reader;
use crate::record;
use crate::store::Store;
use crate::vocab::{Result, VerifyReport};
use std::collections::HashMap;

/// What the log walk learned about one stream.
#[derive(Default)]
struct Seen {
    count: u64,
    /// The stream's first version in the log: 1, or the first one left
    /// after scavenging.
    first_version: u64,
    last_version: u64,
    last_position: u64,
    /// `recorded_at` of the stream's first and last events in the log.
    first_recorded_at: u64,
    last_recorded_at: u64,
}

/// What one section of the walk hands to the next.
#[derive(Default)]
struct Walk {
    seen: HashMap<String, Seen>,
    /// The greatest position read from the log.
    head: u64,
    /// Records that could not be read: the streams they belong to are
    /// unknown, so heads that disagree with the log are then a consequence,
    /// not a new fault.
    unreadable: u64,
    by_number: HashMap<u64, (String, StreamHead)>,
}

/// The parts of the walk, in order; each needs what the ones before learned.
#[derive(Clone, Copy)]
enum Section {
    Events,
    Streams,
    StreamIndex,
    EventIds,
    Snapshots,
    Indexes,
}

impl Section {
    fn area(self) -> &'static str {
        match self {
            Section::Events => "events",
            Section::Streams => "streams",
            Section::StreamIndex => "stream_index",
            Section::EventIds => "event_ids",
            Section::Snapshots => "snapshots",
            Section::Indexes => "index",
        }
    }
}

impl Store {
    /// Walks the whole store in one read transaction and checks it: every
    /// record's checksum and archive, positions gapless, versions of each
    /// stream consecutive, every index run pointing at the right records and
    /// every record indexed exactly once, stream heads agreeing with the log,
    /// the event-id index complete, every consumer checkpoint and dedup entry
    /// sound and not past the head, and every read model in `projections/`
    /// (checkpoint entries, documents of both slots, checkpoints against
    /// the log). Faults are reported, not returned as
    /// errors; an `Err` means the walk itself could not start.
    ///
    /// The walk always ends: every count read from disk is checked against
    /// the log before it bounds a loop, and when LMDB fails inside a part of
    /// the walk (a damaged page), that is a fault and the walk goes on with
    /// the next part in a new read transaction.
    ///
    /// When some records cannot be read, the checks of stream versions and
    /// heads against the log are skipped: without those records they would
    /// only report the same damage again under other names.
    ///
    /// It holds one read transaction for the whole walk, so run it when the
    /// store is quiet or accept that the file may grow meanwhile.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut reader = self.read()?;
        let mut report = VerifyReport::default();
        let mut walk = Walk::default();
        for section in [
            Section::Events,
            Section::Streams,
            Section::StreamIndex,
            Section::EventIds,
            Section::Snapshots,
            Section::Indexes,
        ] {
            let done = match section {
                Section::Events => walk_events(&reader, &mut walk, &mut report),
                Section::Streams => walk_streams(&reader, &mut walk, &mut report),
                Section::StreamIndex => walk_stream_index(&reader, &walk, &mut report),
                Section::EventIds => walk_event_ids(&reader, &mut report),
                Section::Snapshots => walk_snapshots(&reader, &walk, &mut report),
                Section::Indexes => super::verify_index::walk_indexes(&reader, &mut report),
            };
            if let Err(e) = done {
                report.fault(
                    section.area(),
                    None,
                    None,
                    format!("the walk of {} stopped: {e}", section.area()),
                );
                // LMDB fails the whole transaction after a damaged page.
                reader = self.read()?;
            }
        }
        crate::subscribe::verify_checkpoints(&reader, &mut report);
        crate::projection::verify_read_models(self, &reader, &mut report)?;
        Ok(report)
    }
}

/// The log: positions gapless, records sound, versions consecutive, ids indexed.
fn walk_events(reader: &Reader, w: &mut Walk, report: &mut VerifyReport) -> Result<()> {
    let (txn, dbs) = reader.raw();
    let mut expected = 1u64;
    let mut walked = 0u64;
    for item in dbs.events.iter(txn)? {
        walked = walked.saturating_add(1);
        let (k, v) = item?;
        let position = match parse_position_key(k) {
            Ok(p) => p,
            Err(e) => {
                report.fault("events", None, None, e.to_string());
                continue;
            }
        };
        report.events = report.events.saturating_add(1);
        let hole = position.saturating_sub(1);
        if position != expected && !(position > expected && reader.is_removed_range(expected, hole)?) {
            report.fault(
                "events",
                Some(expected),
                None,
                format!("gap: the next stored position is {position}"),
            );
        }
        expected = position.saturating_add(1);
        w.head = w.head.max(position);
        let event = match record::decode(position, v) {
            Ok(e) => e,
            Err(e) => {
                report.fault("events", Some(position), None, e.to_string());
                w.unreadable = w.unreadable.saturating_add(1);
                continue;
            }
        };
        let s = w.seen.entry(event.stream_id().to_string()).or_default();
        // Scavenging removes a prefix of a stream's versions, and raises
        // its truncation to the first version it left.
        let scavenged = s.count == 0
            && event.version() > 1
            && floor_of(reader, event.stream_id()).is_ok_and(|floor| event.version() <= floor);
        if event.version() != s.last_version.saturating_add(1) && w.unreadable == 0 && !scavenged {
            report.fault(
                "events",
                Some(position),
                Some(event.stream_id()),
                format!("version {} follows version {}", event.version(), s.last_version),
            );
        }
        if s.count == 0 {
            s.first_recorded_at = event.recorded_at();
            s.first_version = event.version();
        }
        s.count = s.count.saturating_add(1);
        s.last_version = event.version();
        s.last_position = position;
        s.last_recorded_at = event.recorded_at();
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
    check_count(report, "events", dbs.events.len(txn)?, walked);
    walk_removed(reader, w.head, report)
}

/// The record of removed positions: each range sound, within the log,
/// holding no record.
fn walk_removed(reader: &Reader, head: u64, report: &mut VerifyReport) -> Result<()> {
    let (txn, dbs) = reader.raw();
    let Some(db) = dbs.removed else { return Ok(()) };
    for item in db.iter(txn)? {
        let (k, v) = item?;
        let (first, last) = match crate::lmdb::removed::decode(k, v) {
            Ok(range) => range,
            Err(e) => {
                report.fault("removed", None, None, e.to_string());
                continue;
            }
        };
        report.removed = report.removed.saturating_add(last.saturating_sub(first).saturating_add(1));
        if last >= head {
            report.fault(
                "removed",
                Some(first),
                None,
                format!("positions {first}..={last} are recorded as removed, the log's last is {head}"),
            );
        }
        let (from, to) = (position_key(first), position_key(last));
        let bounds = (std::ops::Bound::Included(&from[..]), std::ops::Bound::Included(&to[..]));
        if let Some(entry) = dbs.events.range(txn, &bounds)?.next() {
            let (k, _) = entry?;
            let p = parse_position_key(k).unwrap_or(0);
            report.fault(
                "removed",
                Some(p),
                None,
                format!("position {p} holds a record, inside the removed range {first}..={last}"),
            );
        }
    }
    Ok(())
}

/// The version below which scavenging may have removed the stream's
/// events: its truncation (0 for a stream without metadata).
fn floor_of(reader: &Reader, stream: &str) -> Result<u64> {
    Ok(crate::read::served::meta_of(reader, stream)?.map_or(0, |m| m.truncate_before))
}

/// LMDB keeps each database's number of entries in the database's record
/// (no checksum; `eventfold stats` shows the count of streams from it): it
/// must be what the walk found.
fn check_count(report: &mut VerifyReport, area: &str, stored: u64, walked: u64) {
    if stored != walked {
        report.fault(
            area,
            None,
            None,
            format!("LMDB's record of the database counts {stored} entries, the walk found {walked}"),
        );
    }
}

/// Stream heads: each agrees with the log, each stream number used once.
fn walk_streams(reader: &Reader, w: &mut Walk, report: &mut VerifyReport) -> Result<()> {
    let (txn, dbs) = reader.raw();
    let mut walked = 0u64;
    for item in dbs.streams.iter(txn)? {
        let (k, v) = item?;
        walked = walked.saturating_add(1);
        report.streams = report.streams.saturating_add(1);
        let id = String::from_utf8_lossy(k).into_owned();
        let head = match StreamHead::decode(v) {
            Ok(h) => h,
            Err(e) => {
                report.fault("streams", None, Some(&id), e.to_string());
                continue;
            }
        };
        // A stream whose every event was scavenged keeps its head.
        let all_removed = floor_of(reader, &id).is_ok_and(|floor| floor > head.version);
        match w.seen.get(&id) {
            None if all_removed => {}
            None => report.fault("streams", None, Some(&id), "head of a stream with no events in the log"),
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
            // The writer sets a head's times from its first and last events.
            Some(s)
                if w.unreadable == 0
                    && ((s.first_version <= 1 && s.first_recorded_at != head.created_at)
                        || s.last_recorded_at != head.updated_at) =>
            {
                report.fault(
                    "streams",
                    None,
                    Some(&id),
                    format!(
                        "head says created at {} and updated at {}, the log says {} and {}",
                        head.created_at, head.updated_at, s.first_recorded_at, s.last_recorded_at
                    ),
                )
            }
            _ => {}
        }
        if let Some((other, _)) = w.by_number.insert(head.stream_no, (id.clone(), head)) {
            report.fault(
                "streams",
                None,
                Some(&id),
                format!("stream number {} is also used by {other:?}", head.stream_no),
            );
        }
    }
    for id in w.seen.keys() {
        if dbs.streams.get(txn, id.as_bytes())?.is_none() {
            report.fault("streams", None, Some(id), "stream has events but no head");
        }
    }
    check_count(report, "streams", dbs.streams.len(txn)?, walked);
    Ok(())
}

/// Runs of each stream must tile versions 1..=head.version, each event
/// once, each pointing at a record of that stream and version. A run's
/// count is checked against the log before it bounds the walk over the
/// run's records: its positions must lie in 1..=head, and all runs
/// together cover at most head positions, so the walk reads each position
/// at most once.
fn walk_stream_index(reader: &Reader, w: &Walk, report: &mut VerifyReport) -> Result<()> {
    let (txn, dbs) = reader.raw();
    let mut next_version: HashMap<u64, u64> = HashMap::new();
    let mut latest_run: HashMap<u64, u64> = HashMap::new();
    let mut positions_left = w.head;
    let mut over_budget_reported = false;
    let mut walked = 0u64;
    for item in dbs.stream_index.iter(txn)? {
        let (k, v) = item?;
        walked = walked.saturating_add(1);
        report.index_runs = report.index_runs.saturating_add(1);
        let ((no, first_version), run) = match (parse_stream_version_key("stream_index", k), Run::decode(v)) {
            (Ok(key), Ok(run)) => (key, run),
            (Err(e), _) | (_, Err(e)) => {
                report.fault("stream_index", None, None, e.to_string());
                continue;
            }
        };
        let Some((id, _)) = w.by_number.get(&no) else {
            report.fault(
                "stream_index",
                Some(run.first_position),
                None,
                format!("run of unknown stream number {no}"),
            );
            continue;
        };
        let first = w.seen.get(id).map_or(1, |s| s.first_version.max(1));
        let want = next_version.entry(no).or_insert(first);
        if first_version != *want {
            report.fault(
                "stream_index",
                Some(run.first_position),
                Some(id),
                format!("run starts at version {first_version}, expected {want}"),
            );
        }
        *want = first_version.saturating_add(run.count);
        let latest = latest_run.entry(no).or_insert(0);
        *latest = (*latest).max(first_version);
        let last_position =
            run.first_position.checked_add(run.count.saturating_sub(1)).filter(|&p| p <= w.head);
        let last_version = first_version.checked_add(run.count.saturating_sub(1));
        if last_position.is_none() || last_version.is_none() {
            report.fault(
                "stream_index",
                Some(run.first_position),
                Some(id),
                format!(
                    "run of {} events from version {first_version} reaches past the log's last position {}",
                    run.count, w.head
                ),
            );
            continue;
        }
        if run.count > positions_left {
            if !over_budget_reported {
                report.fault(
                    "stream_index",
                    Some(run.first_position),
                    Some(id),
                    format!("the runs cover more positions than the log's {} events", w.head),
                );
                over_budget_reported = true;
            }
            continue;
        }
        positions_left = positions_left.saturating_sub(run.count);
        for k in 0..run.count {
            let position = run.first_position.saturating_add(k);
            let version = first_version.saturating_add(k);
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
                        format!("version {version} points at {:?} version {}", e.stream_id(), e.version()),
                    ),
                    // Already reported by the log walk.
                    Err(_) => {}
                },
            }
        }
    }
    check_count(report, "stream_index", dbs.stream_index.len(txn)?, walked);
    for (no, (id, head)) in &w.by_number {
        let Some(&next) = next_version.get(no) else {
            // No runs: right only when scavenging removed every event.
            if w.seen.contains_key(id) || head.run_first_version != head.version.saturating_add(1) {
                report.fault(
                    "stream_index",
                    None,
                    Some(id),
                    format!("no versions are indexed, the stream has {}", head.version),
                );
            }
            continue;
        };
        let indexed_to = next.saturating_sub(1);
        if indexed_to != head.version {
            report.fault(
                "stream_index",
                None,
                Some(id),
                format!("versions 1..={indexed_to} are indexed, the stream has {}", head.version),
            );
        }
        let latest = latest_run.get(no).copied().unwrap_or(0);
        if indexed_to == head.version && latest != head.run_first_version {
            report.fault(
                "streams",
                None,
                Some(id),
                format!(
                    "head says the latest run starts at version {}, the index says {latest}",
                    head.run_first_version
                ),
            );
        }
    }
    Ok(())
}

/// Snapshots: each of a known stream, at a version it has reached, and
/// readable (header and checksum).
fn walk_snapshots(reader: &Reader, w: &Walk, report: &mut VerifyReport) -> Result<()> {
    let (txn, dbs) = reader.raw();
    for item in dbs.snapshots.iter(txn)? {
        let (k, v) = item?;
        let (no, version) = match parse_stream_version_key("snapshots", k) {
            Ok(key) => key,
            Err(e) => {
                report.fault("snapshots", None, None, e.to_string());
                continue;
            }
        };
        let Some((id, head)) = w.by_number.get(&no) else {
            report.fault("snapshots", None, None, format!("snapshot of unknown stream number {no}"));
            continue;
        };
        if version == 0 || version > head.version {
            report.fault(
                "snapshots",
                None,
                Some(id),
                format!("snapshot at version {version}, the stream has {}", head.version),
            );
        } else if let Err(reason) = crate::aggregate::snapshot::decode(id, version, v) {
            report.fault(
                "snapshots",
                None,
                Some(id),
                format!("snapshot at version {version} is unreadable: {reason}"),
            );
        }
    }
    Ok(())
}

/// The event-id index holds no more ids than the log has events.
fn walk_event_ids(reader: &Reader, report: &mut VerifyReport) -> Result<()> {
    let mut walked = 0u64;
    let (txn, dbs) = reader.raw();
    for item in dbs.event_ids.iter(txn)? {
        item?;
        walked = walked.saturating_add(1);
    }
    check_count(report, "event_ids", dbs.event_ids.len(txn)?, walked);
    report.event_ids = walked;
    if report.event_ids > report.events {
        report.fault(
            "event_ids",
            None,
            None,
            format!("{} ids indexed for {} events", report.event_ids, report.events),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::lmdb::keys::{position_key, stream_version_key};
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

    /// Replaces the stream-index run of (stream number 1, version 1).
    fn overwrite_first_run(store: &Store, first_position: u64, count: u64) {
        let (env, dbs) = store.env_and_dbs();
        let mut wtxn = env.write_txn().unwrap();
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&first_position.to_le_bytes());
        v[8..].copy_from_slice(&count.to_le_bytes());
        dbs.stream_index.put(&mut wtxn, &stream_version_key(1, 1), &v).unwrap();
        wtxn.commit().unwrap();
    }

    /// Guards the bound on a run's count: a count read from disk that
    /// reaches past the log (here u64::MAX, which walked forever) is a fault,
    /// and verify ends with its report.
    #[test]
    fn a_corrupted_run_count_is_a_fault_not_an_endless_walk() {
        for (first, count) in [(1, u64::MAX), (1, 1 << 40), (u64::MAX - 1, 5), (3, 9)] {
            let (_d, store) = store_with_events();
            overwrite_first_run(&store, first, count);
            let report = store.verify().unwrap();
            let text: Vec<String> = report.faults.iter().map(|f| f.to_string()).collect();
            assert!(
                text.iter().any(|t| t.starts_with("stream_index") && t.contains("reaches past the log")),
                "{first} {count}: {text:?}"
            );
        }
    }

    /// Guards the bound on all runs together: runs that each fit in the log
    /// but together cover more positions than it has are reported once and
    /// not walked, so the work stays bounded by the log's length.
    #[test]
    fn runs_covering_more_than_the_log_are_a_fault() {
        let (_d, store) = store_with_events();
        {
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            for version in [100u64, 200, 300] {
                let mut v = [0u8; 16];
                v[..8].copy_from_slice(&1u64.to_le_bytes());
                v[8..].copy_from_slice(&10u64.to_le_bytes());
                dbs.stream_index.put(&mut wtxn, &stream_version_key(2, version), &v).unwrap();
            }
            wtxn.commit().unwrap();
        }
        let report = store.verify().unwrap();
        let text: Vec<String> = report.faults.iter().map(|f| f.to_string()).collect();
        assert_eq!(text.iter().filter(|t| t.contains("cover more positions")).count(), 1, "{text:?}");
    }

    /// Guards the read-only open of a store whose last record is corrupt:
    /// it opens, and verify names the record. A writable open refuses with
    /// `Corruption`, which says to verify and restore: the writer needs the
    /// last record's time to go on.
    #[test]
    fn a_corrupt_last_record_opens_read_only_and_verify_names_it() {
        let (dir, store) = store_with_events();
        {
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            let mut v = dbs.events.get(&wtxn, &position_key(10)).unwrap().unwrap().to_vec();
            let n = v.len();
            v[n - 30] ^= 0x10; // the trailer's recorded_at
            dbs.events.put(&mut wtxn, &position_key(10), &v).unwrap();
            wtxn.commit().unwrap();
        }
        drop(store);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, crate::Error::Corruption { position: 10, .. }), "{err:?}");
        assert!(err.to_string().contains("eventfold verify"), "{err}");
        let store = Store::builder(dir.path()).open_read_only().unwrap();
        let report = store.verify().unwrap();
        let text: Vec<String> = report.faults.iter().map(|f| f.to_string()).collect();
        assert!(text.iter().any(|t| t.starts_with("events position 10")), "{text:?}");
    }

    /// Guards the check of a stream head's times and latest run against the
    /// log and the index: those fields carry no checksum, and `streams`
    /// shows them as they are, so verify is what finds them damaged.
    #[test]
    fn a_damaged_stream_head_time_or_run_is_a_fault() {
        use crate::lmdb::keys::StreamHead;
        for field in 3..6 {
            let (_d, store) = store_with_events();
            {
                let (env, dbs) = store.env_and_dbs();
                let mut wtxn = env.write_txn().unwrap();
                let mut head = StreamHead::decode(dbs.streams.get(&wtxn, b"v-0").unwrap().unwrap()).unwrap();
                match field {
                    3 => head.run_first_version += 1,
                    4 => head.created_at ^= 1 << 20,
                    _ => head.updated_at ^= 1,
                }
                dbs.streams.put(&mut wtxn, b"v-0", &head.encode()).unwrap();
                wtxn.commit().unwrap();
            }
            let report = store.verify().unwrap();
            let text: Vec<String> = report.faults.iter().map(|f| f.to_string()).collect();
            assert!(text.iter().any(|t| t.starts_with("streams stream \"v-0\"")), "field {field}: {text:?}");
        }
    }

    /// Guards the snapshot checks: a damaged JSON snapshot is named by
    /// verify, and the newest snapshot of its stream is `SnapshotInvalid`
    /// (it read as "no snapshot").
    #[test]
    fn a_damaged_snapshot_is_named_and_not_taken_for_none() {
        let (_d, store) = store_with_events();
        store.snapshot_json_state("v-0").unwrap();
        {
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            let key = stream_version_key(1, 6);
            let mut v = dbs.snapshots.get(&wtxn, &key).unwrap().unwrap().to_vec();
            let n = v.len();
            v[n - 2] ^= 0x20;
            dbs.snapshots.put(&mut wtxn, &key, &v).unwrap();
            wtxn.commit().unwrap();
        }
        let err = store.latest_json_snapshot("v-0").unwrap_err();
        assert!(matches!(err, crate::Error::SnapshotInvalid { version: 6, .. }), "{err:?}");
        assert!(err.is_damage());
        let report = store.verify().unwrap();
        let text: Vec<String> = report.faults.iter().map(|f| f.to_string()).collect();
        assert!(text.iter().any(|t| t.starts_with("snapshots stream \"v-0\"")), "{text:?}");
    }

    /// Guards the reads that check what has no checksum against the log:
    /// a position missing below the head is `Corruption` (it read as "no
    /// such event"), and a listed stream whose head its last record does
    /// not match is `IndexCorruption` (a damaged id was listed as is).
    #[test]
    fn a_missing_position_and_a_mismatched_head_are_reported() {
        let (_d, store) = store_with_events();
        {
            let (env, dbs) = store.env_and_dbs();
            let mut wtxn = env.write_txn().unwrap();
            assert!(dbs.events.delete(&mut wtxn, &position_key(3)).unwrap());
            let head = dbs.streams.get(&wtxn, b"v-1").unwrap().unwrap().to_vec();
            dbs.streams.put(&mut wtxn, b"v-9", &head).unwrap();
            wtxn.commit().unwrap();
        }
        let reader = store.read().unwrap();
        assert!(matches!(reader.event(3), Err(crate::Error::Corruption { position: 3, .. })));
        assert!(reader.event(11).unwrap().is_none());
        let err = reader.streams("", None, 100).unwrap_err();
        assert!(matches!(err, crate::Error::IndexCorruption { index: "streams", .. }), "{err:?}");
    }

    /// Guards the check of LMDB's entry counts, which carry no checksum
    /// (`stats` shows the count of streams from one): a damaged count in
    /// the record of `streams` is a fault.
    #[test]
    fn a_damaged_entry_count_is_a_fault() {
        let (dir, store) = store_with_events();
        drop(store);
        let data = dir.path().join("data.mdb");
        let mut bytes = std::fs::read(&data).unwrap();
        // The main B-tree's node for "streams": 8-byte header (size 48,
        // flags, key size 7), the key, then the database record, whose
        // entry count is at offset 32.
        let pattern = b"\x07\x00streams";
        let mut found = 0;
        for i in 0..bytes.len() - pattern.len() - 48 {
            if &bytes[i..i + pattern.len()] == pattern {
                let entries = i + pattern.len() + 32;
                bytes[entries] ^= 0x40;
                found += 1;
            }
        }
        assert!(found > 0);
        std::fs::write(&data, bytes).unwrap();
        let store = Store::builder(dir.path()).open_read_only().unwrap();
        let report = store.verify().unwrap();
        let text: Vec<String> = report.faults.iter().map(|f| f.to_string()).collect();
        assert!(text.iter().any(|t| t.starts_with("streams: LMDB's record")), "{text:?}");
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
