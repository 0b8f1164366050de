//! What a read may serve: the events a stream's lifecycle and retention
//! (soft deletion, tombstone, truncation, max count, max age) have not
//! hidden. A store without any stream metadata pays one check per read.

use std::collections::HashMap;

use super::Reader;
use crate::lmdb::stream_meta::StreamMeta;
use crate::record::EventRef;
use crate::vocab::Result;

/// The prefix of the event types the store writes itself (deletions,
/// retention changes): always served in reads of the global log, so that
/// followers learn of what was removed.
pub(crate) const SYSTEM_TYPE_PREFIX: char = '$';

/// The rule for one stream, as a read applies it.
#[derive(Debug, Clone, Copy)]
struct Rule {
    first_version: u64,
    min_recorded_at: u64,
    tombstoned: bool,
}

/// Decides, event by event, what a read of the global log may serve.
pub(crate) struct Served {
    /// No stream has metadata: everything is served.
    everything: bool,
    now: u64,
    rules: HashMap<String, Option<Rule>>,
}

impl Served {
    pub(crate) fn new(reader: &Reader) -> Result<Self> {
        let (txn, dbs) = reader.raw();
        let everything = match dbs.stream_meta {
            None => true,
            Some(db) => db.is_empty(txn)?,
        };
        Ok(Served { everything, now: crate::vocab::now_micros(), rules: HashMap::new() })
    }

    /// Whether `event` is served.
    pub(crate) fn serves(&mut self, reader: &Reader, event: &EventRef<'_>) -> Result<bool> {
        if self.everything || event.event_type().starts_with(SYSTEM_TYPE_PREFIX) {
            return Ok(true);
        }
        let rule = match self.rules.get(event.stream_id()) {
            Some(rule) => *rule,
            None => {
                let rule = rule_of(reader, event.stream_id(), self.now)?;
                self.rules.insert(event.stream_id().to_string(), rule);
                rule
            }
        };
        Ok(match rule {
            None => true,
            Some(r) => {
                !r.tombstoned
                    && event.version() >= r.first_version
                    && event.recorded_at() >= r.min_recorded_at
            }
        })
    }
}

/// The stream's metadata, if it has any.
pub(crate) fn meta_of(reader: &Reader, stream: &str) -> Result<Option<StreamMeta>> {
    let (txn, dbs) = reader.raw();
    let Some(db) = dbs.stream_meta else { return Ok(None) };
    match db.get(txn, stream.as_bytes())? {
        Some(v) => StreamMeta::decode(stream.as_bytes(), v).map(Some),
        None => Ok(None),
    }
}

fn rule_of(reader: &Reader, stream: &str, now: u64) -> Result<Option<Rule>> {
    let Some(meta) = meta_of(reader, stream)?.filter(StreamMeta::hides_any) else { return Ok(None) };
    let version = reader.stream_version(stream)?;
    Ok(Some(Rule {
        first_version: meta.first_served_version(version),
        min_recorded_at: meta.min_recorded_at(now),
        tombstoned: meta.tombstoned,
    }))
}
