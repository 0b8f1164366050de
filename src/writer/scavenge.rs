//! Scavenging inside the writer's transaction: removing the events of one
//! stream that its lifecycle and retention no longer serve — records, id
//! index entries, stream index runs, secondary index bits and snapshots —
//! and recording the removed positions (`lmdb/removed.rs`), all in the
//! batch's transaction, so a crash leaves either all of a step or none.
//!
//! What is not served is always a prefix of a stream's versions (a
//! truncation, a count, an age, a soft deletion, a tombstone), so a step
//! removes versions from the stream's first stored one up to a bound, and
//! raises the stream's truncation to that bound: what is gone can never be
//! served again, even if the limit that hid it is lifted.

use heed::RwTxn;

use super::apply::{BatchCtx, Step};
use super::batch::Writer;
use super::index::{IndexBuffer, terms};
use crate::lmdb::keys::{Run, le_u64, parse_stream_version_key, position_key, stream_version_key};
use crate::lmdb::removed;
use crate::record;
use crate::vocab::Error;

impl Writer {
    /// Removes the stored versions of `stream` below `below` (fewer when
    /// the stream's last event is the log's last: the head is never
    /// removed, so the log's next position stays known). Refused, having
    /// removed nothing, when any of them is still served. Returns how many
    /// events it removed (0 when they already were gone).
    pub(super) fn scavenge(
        &self,
        wtxn: &mut RwTxn,
        ctx: &mut BatchCtx,
        stream: &str,
        below: u64,
    ) -> Result<u64, Step> {
        let missing = || Step::Reject(Error::internal("the store has no database for removed positions"));
        let (Some(meta_db), Some(removed_db)) = (self.dbs.stream_meta, self.dbs.removed) else {
            return Err(missing());
        };
        let Some(mut head) = self.head(wtxn, ctx, stream)? else {
            return Err(Step::Reject(Error::StreamNotFound { stream: stream.to_string() }));
        };
        let meta = match meta_db.get(wtxn, stream.as_bytes())? {
            Some(v) => {
                crate::lmdb::stream_meta::StreamMeta::decode(stream.as_bytes(), v).map_err(Step::Reject)?
            }
            None => return Ok(0),
        };
        let mut below = below.min(head.version.saturating_add(1));
        if head.last_position == ctx.pos {
            below = below.min(head.version);
        }
        let runs = self.runs_below(wtxn, head.stream_no, below)?;
        let Some(&(first_version, _)) = runs.first() else { return Ok(0) };
        if first_version >= below {
            return Ok(0);
        }
        // Versions below the rules' first served one are hidden; so is
        // anything older than the age limit, and `recorded_at` never
        // decreases, so checking the last event removed checks them all.
        let last = below.saturating_sub(1);
        if !meta.tombstoned && last >= meta.first_served_version(head.version) {
            let at = self.recorded_at_version(wtxn, &runs, last)?;
            if at >= meta.min_recorded_at(ctx.now) {
                return Err(Step::Reject(Error::internal(format!(
                    "version {last} of {stream:?} is still served: the scavenge plan is out of date"
                ))));
            }
        }
        let mut index = IndexBuffer::default();
        let mut count = 0u64;
        for &(run_first, run) in &runs {
            let take = below.saturating_sub(run_first).min(run.count);
            let mut range: Option<(u64, u64)> = None;
            for k in 0..take {
                let position = run.first_position.saturating_add(k);
                self.remove_record(wtxn, position, &mut index)?;
                range = match range {
                    Some((f, l)) if l.checked_add(1) == Some(position) => Some((f, position)),
                    Some((f, l)) => {
                        removed::record(wtxn, removed_db, f, l).map_err(Step::Reject)?;
                        Some((position, position))
                    }
                    None => Some((position, position)),
                };
            }
            if let Some((f, l)) = range {
                removed::record(wtxn, removed_db, f, l).map_err(Step::Reject)?;
            }
            count = count.saturating_add(take);
            self.dbs.stream_index.delete(wtxn, &stream_version_key(head.stream_no, run_first))?;
            if take < run.count {
                let rest = Run {
                    first_position: run.first_position.saturating_add(take),
                    count: run.count.saturating_sub(take),
                };
                self.dbs.stream_index.put(
                    wtxn,
                    &stream_version_key(head.stream_no, below),
                    &rest.encode(),
                )?;
            }
            if head.run_first_version == run_first {
                // The latest run now starts at `below`, or is gone: then the
                // stream's next append starts a run of its own.
                head.run_first_version =
                    if take < run.count { below } else { head.version.saturating_add(1) };
            }
        }
        if let Some(db) = self.dbs.index {
            index.clear(wtxn, db)?;
        }
        self.remove_snapshots(wtxn, head.stream_no, below)?;
        let mut meta = meta;
        meta.truncate_before = meta.truncate_before.max(below);
        meta_db.put(wtxn, stream.as_bytes(), &meta.encode(stream.as_bytes()))?;
        ctx.heads.insert(stream.to_string(), (head, true));
        Ok(count)
    }

    /// The stream's runs `(first version, run)` that start below `below`,
    /// in version order.
    fn runs_below(&self, wtxn: &RwTxn, stream_no: u64, below: u64) -> Result<Vec<(u64, Run)>, Step> {
        let from = stream_version_key(stream_no, 0);
        let to = stream_version_key(stream_no, below);
        let bounds = (std::ops::Bound::Included(&from[..]), std::ops::Bound::Excluded(&to[..]));
        let mut runs = Vec::new();
        for entry in self.dbs.stream_index.range(wtxn, &bounds)? {
            let (k, v) = entry?;
            let (_, first_version) = parse_stream_version_key("stream_index", k).map_err(Step::Reject)?;
            let run = Run::decode(v).map_err(Step::Reject)?;
            run.last_version(first_version).map_err(Step::Reject)?;
            runs.push((first_version, run));
        }
        Ok(runs)
    }

    fn recorded_at_version(&self, wtxn: &RwTxn, runs: &[(u64, Run)], version: u64) -> Result<u64, Step> {
        let found =
            runs.iter().find(|(first, run)| version >= *first && version.saturating_sub(*first) < run.count);
        let Some(&(first, run)) = found else {
            return Err(Step::Reject(Error::index(
                "stream_index",
                format!("no run holds version {version}"),
            )));
        };
        let position = run.first_position.saturating_add(version.saturating_sub(first));
        match self.dbs.events.get(wtxn, &position_key(position))? {
            Some(v) => record::recorded_at(position, v).map_err(Step::Reject),
            None => {
                Err(Step::Reject(Error::corruption(position, "a stream's run points at a missing record")))
            }
        }
    }

    /// Deletes the record at `position` and its id entry, and gathers its
    /// index terms into `index`.
    fn remove_record(&self, wtxn: &mut RwTxn, position: u64, index: &mut IndexBuffer) -> Result<(), Step> {
        let key = position_key(position);
        let Some(value) = self.dbs.events.get(wtxn, &key)? else {
            return Err(Step::Reject(Error::corruption(
                position,
                "a stream's run points at a missing record",
            )));
        };
        let event = record::decode(position, value).map_err(Step::Reject)?;
        let id = event.event_id();
        index.add(position, terms(event.stream_id(), event.event_type(), event.tags()));
        if self.dbs.event_ids.get(wtxn, id.as_bytes())?.is_some_and(|p| p.len() == 8 && le_u64(p) == position)
        {
            self.dbs.event_ids.delete(wtxn, id.as_bytes())?;
        }
        self.dbs.events.delete(wtxn, &key)?;
        Ok(())
    }

    /// Deletes the stream's snapshots of versions below `below`: they hold
    /// the state of events that are gone.
    fn remove_snapshots(&self, wtxn: &mut RwTxn, stream_no: u64, below: u64) -> Result<(), Step> {
        let from = stream_version_key(stream_no, 0);
        let to = stream_version_key(stream_no, below);
        let bounds = (std::ops::Bound::Included(&from[..]), std::ops::Bound::Excluded(&to[..]));
        self.dbs.snapshots.delete_range(wtxn, &bounds)?;
        Ok(())
    }
}
