//! One request inside the batch's transaction: check its expected versions
//! and event ids against the log and the batch so far, then write its
//! records, index runs, stream heads and side writes, or refuse it having
//! written nothing.

use std::collections::HashMap;

use heed::{PutFlags, RwTxn};
use uuid::Uuid;

use super::batch::Writer;
use super::{Request, StreamAppend};
use crate::lmdb::keys::{Run, StreamHead, le_u64, position_key, stream_version_key};
use crate::lmdb::stream_meta::StreamMeta;
use crate::record;
use crate::vocab::{AppendResult, Error, ExpectedVersion};

/// Why a request did not go through.
pub(super) enum Step {
    /// The request is refused on its own; nothing of it was written.
    Reject(Error),
    /// LMDB failed mid-write: the whole transaction must be aborted.
    Abort(heed::Error),
}

impl From<heed::Error> for Step {
    fn from(e: heed::Error) -> Self {
        Step::Abort(e)
    }
}

/// The batch's view of stream heads, on top of what the transaction holds.
pub(super) struct BatchCtx {
    pub heads: HashMap<String, (StreamHead, bool)>,
    pub pos: u64,
    pub next_stream_no: u64,
    /// The greatest key of `event_ids`, including this batch's.
    pub last_event_id: [u8; 16],
    pub now: u64,
    /// The last recorded_at given out, in this batch or before it.
    pub last_time: u64,
    pub events: u64,
    pub bytes: u64,
    pub side_writes: usize,
    /// The batch's secondary index entries, written by `finish`.
    pub index: super::index::IndexBuffer,
}

impl Writer {
    pub(super) fn head(
        &self,
        wtxn: &RwTxn,
        ctx: &mut BatchCtx,
        stream: &str,
    ) -> Result<Option<StreamHead>, Step> {
        if let Some((h, _)) = ctx.heads.get(stream) {
            return Ok(Some(*h));
        }
        match self.dbs.streams.get(wtxn, stream.as_bytes())? {
            Some(v) => {
                let h = StreamHead::decode(v).map_err(Step::Reject)?;
                ctx.heads.insert(stream.to_string(), (h, false));
                Ok(Some(h))
            }
            None => Ok(None),
        }
    }

    /// The stream's lifecycle and retention, if it has any.
    fn stream_meta(&self, wtxn: &RwTxn, stream: &str) -> Result<Option<StreamMeta>, Step> {
        let Some(db) = self.dbs.stream_meta else { return Ok(None) };
        match db.get(wtxn, stream.as_bytes())? {
            Some(v) => StreamMeta::decode(stream.as_bytes(), v).map(Some).map_err(Step::Reject),
            None => Ok(None),
        }
    }

    /// The stream's metadata after `change`, checked against the stream as
    /// this batch sees it: a tombstoned stream takes no change, a deletion
    /// needs events to delete.
    fn lifecycle_change(
        &self,
        wtxn: &RwTxn,
        ctx: &mut BatchCtx,
        stream: &str,
        change: super::Lifecycle,
    ) -> Result<StreamMeta, Step> {
        let mut meta = self.stream_meta(wtxn, stream)?.unwrap_or_default();
        if meta.tombstoned {
            return Err(Step::Reject(Error::StreamDeleted { stream: stream.to_string() }));
        }
        let version = self.head(wtxn, ctx, stream)?.map_or(0, |h| h.version);
        match change {
            super::Lifecycle::SoftDelete | super::Lifecycle::Tombstone if version == 0 => {
                return Err(Step::Reject(Error::StreamNotFound { stream: stream.to_string() }));
            }
            super::Lifecycle::SoftDelete => {
                meta.deleted = true;
                meta.truncate_before = meta.truncate_before.max(version.saturating_add(1));
            }
            super::Lifecycle::Tombstone => meta.tombstoned = true,
            super::Lifecycle::Scavenge { .. } => {
                return Err(Step::Reject(Error::internal("a scavenge step is not a lifecycle change")));
            }
            super::Lifecycle::Retention { truncate_before, max_count, max_age_us } => {
                if let Some(t) = truncate_before {
                    meta.truncate_before = meta.truncate_before.max(t);
                }
                if let Some(c) = max_count {
                    meta.max_count = c;
                }
                if let Some(a) = max_age_us {
                    meta.max_age_us = a;
                }
            }
        }
        Ok(meta)
    }

    /// Checks a request against the transaction's view and writes it, or
    /// rejects it having written nothing.
    pub(super) fn apply(
        &self,
        wtxn: &mut RwTxn,
        ctx: &mut BatchCtx,
        req: &mut Request,
    ) -> Result<Vec<AppendResult>, Step> {
        let mut plans = Vec::with_capacity(req.appends.len());
        let mut stored = Vec::new();
        for (i, a) in req.appends.iter().enumerate() {
            let meta = self.stream_meta(wtxn, &a.stream_id)?;
            if meta.is_some_and(|m| m.tombstoned) {
                return Err(Step::Reject(Error::StreamDeleted { stream: a.stream_id.clone() }));
            }
            let head = self.head(wtxn, ctx, &a.stream_id)?;
            if let Some(original) = self.already_stored(wtxn, a)? {
                stored.push(original);
                continue;
            }
            let actual = head.map_or(0, |h| h.version);
            if !a.expected.matches(actual) {
                return Err(Step::Reject(Error::WrongExpectedVersion {
                    stream: a.stream_id.clone(),
                    expected: a.expected,
                    actual,
                }));
            }
            plans.push((i, head, meta));
        }
        if !stored.is_empty() && !plans.is_empty() {
            let first = &stored[0];
            return Err(Step::Reject(Error::DuplicateEventId {
                event_id: first.event_ids[0],
                stream: Some(first.stream_id.clone()),
                position: Some(first.first_position),
            }));
        }
        if let Some(condition) = &req.condition
            && !plans.is_empty()
            && let Some(position) = self.conflict(wtxn, ctx, condition)?
        {
            let after = condition.after.unwrap_or(0);
            return Err(Step::Reject(Error::AppendConditionFailed { position, after }));
        }
        let lifecycle = match req.lifecycle.as_deref() {
            Some((stream, super::Lifecycle::Scavenge { below })) => {
                if self.scavenge(wtxn, ctx, stream, *below)? > 0 {
                    // Something to commit, though the head did not move.
                    ctx.side_writes = ctx.side_writes.saturating_add(1);
                }
                None
            }
            Some((stream, change)) => {
                Some((stream.as_str(), self.lifecycle_change(wtxn, ctx, stream, *change)?))
            }
            None => None,
        };
        let mut results = stored;
        for (i, head, meta) in plans {
            let a = &mut req.appends[i];
            results.push(self.write_append(wtxn, ctx, a, head)?);
            // A soft-deleted stream lives again with its next append; what
            // came before the deletion stays hidden. (A request names each
            // stream once, so the metadata read above is still current.)
            if let Some(mut meta) = meta
                && meta.deleted
                && let Some(db) = self.dbs.stream_meta
            {
                meta.deleted = false;
                db.put(wtxn, a.stream_id.as_bytes(), &meta.encode(a.stream_id.as_bytes()))?;
            }
        }
        if let Some((stream, meta)) = lifecycle
            && let Some(db) = self.dbs.stream_meta
        {
            db.put(wtxn, stream.as_bytes(), &meta.encode(stream.as_bytes()))?;
        }
        for w in &req.side_writes {
            w.apply(wtxn, &self.dbs)?;
            ctx.side_writes = ctx.side_writes.saturating_add(1);
        }
        Ok(results)
    }

    fn write_append(
        &self,
        wtxn: &mut RwTxn,
        ctx: &mut BatchCtx,
        a: &mut StreamAppend,
        head: Option<StreamHead>,
    ) -> Result<AppendResult, Step> {
        let n = a.events.len() as u64;
        // Positions and versions come from the disk: a damaged head must be
        // refused, never wrap around (or panic the writer in a debug build).
        let first_pos = checked(ctx.pos.checked_add(1), "the log's next position")?;
        let last_pos = checked(ctx.pos.checked_add(n), "the log's last position")?;
        let mut h = match head {
            Some(h) => h,
            None => {
                let stream_no = ctx.next_stream_no;
                ctx.next_stream_no = checked(stream_no.checked_add(1), "the next stream number")?;
                StreamHead {
                    stream_no,
                    version: 0,
                    last_position: 0,
                    run_first_version: 0,
                    created_at: first_time(a, ctx),
                    updated_at: first_time(a, ctx),
                }
            }
        };
        let last_version = checked(h.version.checked_add(n), "the stream's version")?;
        let mut ids = Vec::with_capacity(a.events.len());
        for (k, ev) in a.events.iter_mut().enumerate() {
            // Both bounds were checked above, so these cannot overflow.
            let k = k as u64;
            let pos = first_pos.saturating_add(k);
            let version = h.version.saturating_add(1).saturating_add(k);
            // Imported events keep their time unless that would go back in
            // time; everything else gets the batch's time.
            let at = ev.recorded_at.unwrap_or(ctx.now).max(ctx.last_time);
            ctx.last_time = at;
            record::seal(ev, pos, version, at);
            ctx.index.add(
                pos,
                super::index::terms(&a.stream_id, &ev.event_type, ev.tags.iter().map(String::as_str)),
            );
            self.dbs.events.put_with_flags(wtxn, PutFlags::APPEND, &position_key(pos), &ev.value)?;
            // Ids the store makes (UUID v7) grow with time, so most go after
            // the greatest key: appending skips the search from the root.
            let id = ev.event_id.as_bytes();
            if *id > ctx.last_event_id {
                self.dbs.event_ids.put_with_flags(wtxn, PutFlags::APPEND, id, &pos.to_le_bytes())?;
                ctx.last_event_id = *id;
            } else {
                self.dbs.event_ids.put(wtxn, id, &pos.to_le_bytes())?;
            }
            ctx.bytes = ctx.bytes.saturating_add(ev.value.len() as u64);
            ids.push(ev.event_id);
        }
        // A stream whose every event was scavenged has no run to extend
        // (its latest run's first version is past its version).
        let adjacent = h.version > 0
            && h.run_first_version <= h.version
            && h.last_position.checked_add(1) == Some(first_pos);
        let run = if adjacent {
            let in_run = h
                .version
                .checked_sub(h.run_first_version)
                .and_then(|d| d.checked_add(1))
                .filter(|&in_run| in_run <= h.last_position);
            let in_run = checked(in_run, "the stream's latest run")?;
            let count = checked(in_run.checked_add(n), "the stream's latest run")?;
            // `in_run <= last_position` was checked, so this stays ≥ 1.
            Run { first_position: first_pos.saturating_sub(in_run), count }
        } else {
            h.run_first_version = h.version.saturating_add(1);
            Run { first_position: first_pos, count: n }
        };
        self.dbs.stream_index.put(
            wtxn,
            &stream_version_key(h.stream_no, h.run_first_version),
            &run.encode(),
        )?;
        h.version = last_version;
        h.last_position = last_pos;
        h.updated_at = ctx.last_time;
        ctx.heads.insert(a.stream_id.clone(), (h, true));
        ctx.pos = last_pos;
        ctx.events = ctx.events.saturating_add(n);
        Ok(AppendResult {
            stream_id: a.stream_id.clone(),
            first_position: first_pos,
            last_position: last_pos,
            stream_version: last_version,
            event_ids: ids,
            already_stored: false,
        })
    }

    /// The original result when every event of `a` is already stored, in
    /// order, in the same stream; `None` when none of them is; a rejection
    /// when some id is stored anywhere else.
    fn already_stored(&self, wtxn: &RwTxn, a: &StreamAppend) -> Result<Option<AppendResult>, Step> {
        let lookup = |id: &Uuid| -> Result<Option<u64>, Step> {
            Ok(self.dbs.event_ids.get(wtxn, id.as_bytes())?.filter(|v| v.len() == 8).map(le_u64))
        };
        let duplicate = |id: Uuid, pos: u64| -> Step {
            let stream = self
                .dbs
                .events
                .get(wtxn, &position_key(pos))
                .ok()
                .flatten()
                .and_then(|v| record::decode(pos, v).ok().map(|e| e.stream_id().to_string()));
            Step::Reject(Error::DuplicateEventId { event_id: id, stream, position: Some(pos) })
        };
        // Ids made by the store are UUID v7 (a millisecond clock and 74
        // random bits): new by construction, so there is nothing to look up.
        if !a.events.iter().any(|e| e.caller_id) {
            return Ok(None);
        }
        let Some(first_ev) = a.events.first() else { return Ok(None) };
        let Some(first) = lookup(&first_ev.event_id)? else {
            for ev in &a.events[1..] {
                if let Some(pos) = lookup(&ev.event_id)? {
                    return Err(duplicate(ev.event_id, pos));
                }
            }
            return Ok(None);
        };
        let mut last_version = 0;
        // `Exact(u64::MAX)` names a version no stream can reach: no stored
        // event can be its retry.
        let required_first_version = match a.expected {
            ExpectedVersion::Exact(v) => match v.checked_add(1) {
                Some(first) => Some(first),
                None => return Err(duplicate(first_ev.event_id, first)),
            },
            ExpectedVersion::NoStream => Some(1),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        };
        for (k, ev) in a.events.iter().enumerate() {
            let expected = first.checked_add(k as u64);
            match lookup(&ev.event_id)? {
                Some(pos) if Some(pos) == expected => {
                    let value = self.dbs.events.get(wtxn, &position_key(pos))?.ok_or_else(|| {
                        Step::Reject(Error::index(
                            "event_ids",
                            format!("id {} points at missing position {pos}", ev.event_id),
                        ))
                    })?;
                    let stored = record::decode(pos, value).map_err(Step::Reject)?;
                    let misplaced = k == 0 && required_first_version.is_some_and(|v| v != stored.version());
                    if stored.stream_id() != a.stream_id || misplaced {
                        return Err(duplicate(ev.event_id, pos));
                    }
                    last_version = stored.version();
                }
                Some(pos) => return Err(duplicate(ev.event_id, pos)),
                None => return Err(duplicate(first_ev.event_id, first)),
            }
        }
        // Every id was found at `first + k`, so this cannot overflow.
        let last_position = first.saturating_add(a.events.len().saturating_sub(1) as u64);
        Ok(Some(AppendResult {
            stream_id: a.stream_id.clone(),
            first_position: first,
            last_position,
            stream_version: last_version,
            event_ids: a.events.iter().map(|e| e.event_id).collect(),
            already_stored: true,
        }))
    }
}

/// `value`, or a refusal naming what overflowed: values read from the disk
/// that do not fit are damage, never a reason to wrap around.
fn checked(value: Option<u64>, what: &str) -> Result<u64, Step> {
    value.ok_or_else(|| {
        Step::Reject(Error::index("streams", format!("{what} does not fit in 64 bits: the store is damaged")))
    })
}

/// The time the first event of `a` will be recorded at (see `write_append`).
fn first_time(a: &StreamAppend, ctx: &BatchCtx) -> u64 {
    a.events.first().and_then(|e| e.recorded_at).unwrap_or(ctx.now).max(ctx.last_time)
}
