//! Scavenging: taking out of the file what the streams' lifecycle and
//! retention no longer serve, in bounded steps that ride in the writer's
//! batches beside the appends (see `writer/scavenge.rs` and
//! `docs/forgetting.md`).
//!
//! Each step is planned from a fresh snapshot and checked again by the
//! writer in its transaction, so a plan made stale by a concurrent change
//! (a limit lifted) removes nothing. Progress is in the store itself — each
//! scavenged stream's truncation and first run — so a scavenge stopped by
//! a crash or a close goes on where it was the next time it runs.

use serde::Serialize;

use super::Store;
use crate::lmdb::keys::{Run, parse_stream_version_key, position_key, stream_version_key};
use crate::lmdb::stream_meta::StreamMeta;
use crate::read::Reader;
use crate::record;
use crate::vocab::Result;
use crate::writer::Lifecycle;

/// The most events one scavenge step removes: one step is one request in
/// a writer batch, so appends wait for at most this much removal.
pub const SCAVENGE_STEP: u64 = 1000;

/// What a scavenge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScavengeReport {
    /// Streams with events removed.
    pub streams: u64,
    /// Events removed.
    pub events_removed: u64,
    /// Steps committed (each at most [`SCAVENGE_STEP`] events).
    pub steps: u64,
}

/// How far a running scavenge is, for a progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScavengeProgress {
    /// Events removed so far.
    pub removed: u64,
    /// Events the scavenge found to remove when it started (a concurrent
    /// change may add to or take from it).
    pub planned: u64,
}

/// What of one stream can go: versions `first..below` are stored and not
/// served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Removable {
    first: u64,
    below: u64,
}

impl Store {
    /// Removes from the file every event that is no longer served (see
    /// [`Store::delete_stream`], [`Store::tombstone_stream`],
    /// [`Store::set_stream_retention`]): records, id index entries, stream
    /// index runs, secondary index entries and snapshots, in steps of at
    /// most [`SCAVENGE_STEP`] events that commit beside the appends. The
    /// positions removed are recorded, so reads and
    /// [`verify`](Store::verify) tell them from damage; they are never
    /// reused. The log's last event is never removed (it names the log's
    /// next position). Space goes back to LMDB's free pages, which later
    /// commits reuse; `eventfold backup --compact` writes a smaller copy.
    ///
    /// ```
    /// use eventfold::{EventMetadata, ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// for i in 0..5 {
    ///     store.append("cart-1", ExpectedVersion::Any, [NewEvent::json("Added", &i)])?;
    /// }
    /// store.delete_stream("cart-1", "abandoned", EventMetadata::new())?;
    /// let report = store.scavenge()?;
    /// assert_eq!(report.events_removed, 5);
    /// assert!(store.read()?.is_removed(1)?);
    /// assert!(store.verify()?.is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scavenge(&self) -> Result<ScavengeReport> {
        self.scavenge_with_progress(|_| {})
    }

    /// [`Store::scavenge`], calling `progress` after each step.
    pub fn scavenge_with_progress(
        &self,
        mut progress: impl FnMut(ScavengeProgress),
    ) -> Result<ScavengeReport> {
        let streams = {
            let reader = self.read()?;
            let mut out = Vec::new();
            for stream in streams_with_rules(&reader)? {
                if let Some(r) = removable(&reader, &stream)? {
                    out.push((stream, r));
                }
            }
            out
        };
        let planned = streams.iter().map(|(_, r)| r.below.saturating_sub(r.first)).sum::<u64>();
        let mut report = ScavengeReport::default();
        let mut done = ScavengeProgress { removed: 0, planned };
        for (stream, _) in streams {
            let mut removed_here = 0u64;
            loop {
                let Some(r) = removable(&self.read()?, &stream)? else { break };
                let below = r.below.min(r.first.saturating_add(SCAVENGE_STEP));
                let change = Lifecycle::Scavenge { below };
                self.send_full(Vec::new(), Vec::new(), None, Some((stream.clone(), change)))?.wait_many()?;
                // The writer may have removed less than planned (the head,
                // or a limit lifted meanwhile): progress is what is gone.
                let first_now = removable(&self.read()?, &stream)?.map_or(below, |r| r.first);
                let gone = first_now.saturating_sub(r.first);
                if gone == 0 {
                    break;
                }
                removed_here = removed_here.saturating_add(gone);
                report.steps = report.steps.saturating_add(1);
                done.removed = done.removed.saturating_add(gone);
                progress(done);
            }
            if removed_here > 0 {
                report.streams = report.streams.saturating_add(1);
                report.events_removed = report.events_removed.saturating_add(removed_here);
            }
        }
        Ok(report)
    }

    /// How many events a scavenge would remove now.
    pub fn scavengeable(&self) -> Result<u64> {
        let reader = self.read()?;
        let mut total = 0u64;
        for stream in streams_with_rules(&reader)? {
            if let Some(r) = removable(&reader, &stream)? {
                total = total.saturating_add(r.below.saturating_sub(r.first));
            }
        }
        Ok(total)
    }
}

/// The streams that have lifecycle or retention rules.
fn streams_with_rules(reader: &Reader) -> Result<Vec<String>> {
    let (txn, dbs) = reader.raw();
    let Some(db) = dbs.stream_meta else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in db.iter(txn)? {
        let (k, v) = entry?;
        if StreamMeta::decode(k, v)?.hides_any() {
            out.push(String::from_utf8_lossy(k).into_owned());
        }
    }
    Ok(out)
}

/// The stored versions of `stream` that are not served, if any: from its
/// first stored version to the first served one (by version, then by
/// age), all of it for a tombstoned stream.
fn removable(reader: &Reader, stream: &str) -> Result<Option<Removable>> {
    let Some(meta) = crate::read::served::meta_of(reader, stream)?.filter(StreamMeta::hides_any) else {
        return Ok(None);
    };
    let Some(head) = reader.head_of(stream)? else { return Ok(None) };
    let runs = runs_of(reader, head.stream_no)?;
    let Some(&(first, _)) = runs.first() else { return Ok(None) };
    let below = if meta.tombstoned {
        head.version.saturating_add(1)
    } else {
        let by_version = meta.first_served_version(head.version);
        match meta.min_recorded_at(crate::vocab::now_micros()) {
            0 => by_version,
            oldest => first_young(reader, &runs, first.max(by_version), head.version, oldest)?,
        }
    };
    Ok((below > first).then_some(Removable { first, below }))
}

/// The first version in `from..=last` recorded at or after `oldest`
/// (`last + 1` when none is): times never decrease along a stream.
fn first_young(reader: &Reader, runs: &[(u64, Run)], from: u64, last: u64, oldest: u64) -> Result<u64> {
    let (mut lo, mut hi) = (from, last.saturating_add(1));
    while lo < hi {
        let mid = lo.saturating_add(hi.saturating_sub(lo) / 2);
        if recorded_at(reader, runs, mid)? >= oldest {
            hi = mid;
        } else {
            lo = mid.saturating_add(1);
        }
    }
    Ok(lo)
}

fn recorded_at(reader: &Reader, runs: &[(u64, Run)], version: u64) -> Result<u64> {
    let run = runs.iter().rev().find(|(first, _)| *first <= version);
    let position = match run {
        Some(&(first, run)) if version.saturating_sub(first) < run.count => {
            run.first_position.saturating_add(version.saturating_sub(first))
        }
        _ => {
            return Err(crate::Error::index("stream_index", format!("no run holds version {version}")));
        }
    };
    let (txn, dbs) = reader.raw();
    match dbs.events.get(txn, &position_key(position))? {
        Some(v) => record::recorded_at(position, v),
        None => Err(crate::Error::corruption(position, "a stream's run points at a missing record")),
    }
}

/// The stream's runs `(first version, run)`, in version order.
fn runs_of(reader: &Reader, stream_no: u64) -> Result<Vec<(u64, Run)>> {
    let (txn, dbs) = reader.raw();
    let from = stream_version_key(stream_no, 0);
    let to = stream_version_key(stream_no, u64::MAX);
    let bounds = (std::ops::Bound::Included(&from[..]), std::ops::Bound::Included(&to[..]));
    let mut runs = Vec::new();
    for entry in dbs.stream_index.range(txn, &bounds)? {
        let (k, v) = entry?;
        let (_, first_version) = parse_stream_version_key("stream_index", k)?;
        runs.push((first_version, Run::decode(v)?));
    }
    Ok(runs)
}
