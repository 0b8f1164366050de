//! Read models against the log they were made from, checked when the
//! `projections/` environment is opened.
//!
//! A read model commits in its own environment, so after a power cut, or a
//! `data.mdb` restored from an older copy, it could claim events the log no
//! longer has: its checkpoint would then be trusted and the events that
//! take those positions next would never be applied. Three things tell:
//! the environment records the id of the store it belongs to (a read model
//! made from another log is refused), each checkpoint must not be past the
//! log's durable head, and each checkpoint records the id of the event at
//! its position, which the log must still hold there. A writable handle
//! resets a read model that fails (its runner rebuilds it from position
//! 1); a read-only handle refuses to serve it.

use std::collections::HashMap;
use std::path::Path;

use uuid::Uuid;

use super::read_model::{ProjEnv, ProjMeta, decode_meta};
use super::sealed::{FORMAT, KEY_FORMAT, KEY_STORE_ID, is_env_key};
use crate::read::Reader;
use crate::store::Store;
use crate::vocab::{Error, Result};

/// Why a checkpoint (position and the id of its event) does not belong to
/// this log, or `None` when it does.
pub(crate) fn checkpoint_mismatch(
    reader: &Reader,
    durable: u64,
    checkpoint: u64,
    id: Option<Uuid>,
) -> Result<Option<String>> {
    if checkpoint == 0 {
        return Ok(None);
    }
    if checkpoint > durable {
        return Ok(Some(format!(
            "its checkpoint is position {checkpoint}, the log's durable head is {durable}"
        )));
    }
    if reader.is_removed(checkpoint)? {
        // Scavenged since: the log keeps the record that it was there.
        return Ok(None);
    }
    let Some(id) = id else {
        return Ok(Some(format!("its checkpoint {checkpoint} names no event")));
    };
    Ok(match reader.event(checkpoint)? {
        Some(e) if e.event_id() == id => None,
        Some(e) => Some(format!(
            "its checkpoint {checkpoint} was event {id}, the log holds {} there: the log lost events it was made from",
            e.event_id()
        )),
        None => Some(format!("its checkpoint {checkpoint} is not in the log")),
    })
}

/// Every projection's checkpoint entry, decoded (or why it cannot be).
pub(crate) fn meta_entries(env: &ProjEnv) -> Result<Vec<(String, Result<ProjMeta>)>> {
    let txn = env.env.read_txn()?;
    let mut out = Vec::new();
    for item in env.meta.iter(&txn)? {
        let (k, v) = item?;
        if is_env_key(k) {
            continue;
        }
        let name = String::from_utf8_lossy(k).into_owned();
        let meta = decode_meta(&name, v);
        out.push((name, meta));
    }
    Ok(out)
}

/// Why `meta` does not match the log (active model or rebuild), or `None`.
pub(crate) fn meta_mismatch(reader: &Reader, durable: u64, meta: &ProjMeta) -> Result<Option<String>> {
    if let Some(why) = checkpoint_mismatch(reader, durable, meta.checkpoint, meta.checkpoint_id)? {
        return Ok(Some(why));
    }
    match &meta.rebuild {
        Some(r) => checkpoint_mismatch(reader, durable, r.checkpoint, r.checkpoint_id)
            .map(|why| why.map(|w| format!("its rebuild: {w}"))),
        None => Ok(None),
    }
}

/// The environment's format and store id as stored.
pub(crate) struct EnvIdentity {
    pub format: Option<u32>,
    pub store_id: Option<Result<Uuid, String>>,
}

pub(crate) fn read_identity(env: &ProjEnv) -> Result<EnvIdentity> {
    let txn = env.env.read_txn()?;
    let format = env.meta.get(&txn, KEY_FORMAT)?.map(|v| match <[u8; 4]>::try_from(v) {
        Ok(b) => u32::from_le_bytes(b),
        Err(_) => 0,
    });
    let store_id = env
        .meta
        .get(&txn, KEY_STORE_ID)?
        .map(|v| Uuid::from_slice(v).map_err(|_| format!("a store id of {} bytes", v.len())));
    Ok(EnvIdentity { format, store_id })
}

/// Checks the environment against `store`'s log; returns the read models
/// that must not be served (always empty for a writable store, which resets
/// them instead). A read model made from another store is an error.
pub(crate) fn check_against_log(env: &ProjEnv, store: &Store, dir: &Path) -> Result<HashMap<String, String>> {
    let identity = read_identity(env)?;
    let metas = meta_entries(env)?;
    let mut stale = HashMap::new();
    match identity.format {
        None if metas.is_empty() => {}
        // Entries of the earlier layout are plain JSON; entries with a
        // checksum under a missing format key mean the key was damaged.
        None if metas.iter().any(|(_, m)| m.is_ok()) || identity.store_id.is_some() => {
            return Err(Error::ReadModelDamaged {
                projection: "*".into(),
                reason: "the environment's format entry is missing".into(),
            });
        }
        None => {
            for (name, _) in &metas {
                stale.insert(
                    name.clone(),
                    "it was written by an earlier eventfold, without checksums or the log's identity"
                        .to_string(),
                );
            }
        }
        Some(FORMAT) => match identity.store_id {
            Some(Ok(found)) if found != store.store_id() => {
                return Err(Error::ForeignReadModels {
                    path: dir.to_path_buf(),
                    found,
                    expected: store.store_id(),
                });
            }
            Some(Ok(_)) => {}
            Some(Err(why)) => {
                return Err(Error::ReadModelDamaged {
                    projection: "*".into(),
                    reason: format!("the environment holds {why}"),
                });
            }
            None => {
                return Err(Error::ReadModelDamaged {
                    projection: "*".into(),
                    reason: "the environment does not say which store it belongs to".into(),
                });
            }
        },
        Some(found) => return Err(Error::UnsupportedFormat { found, supported: FORMAT }),
    }
    if identity.format.is_some() || !metas.is_empty() {
        let durable = store.durable_head()?;
        let reader = store.read()?;
        for (name, meta) in &metas {
            if stale.contains_key(name) {
                continue;
            }
            let why = match meta {
                Err(e) => Some(e.to_string()),
                Ok(meta) => meta_mismatch(&reader, durable, meta)?,
            };
            if let Some(why) = why {
                stale.insert(name.clone(), why);
            }
        }
    }
    if env.read_only {
        return Ok(stale);
    }
    reset(env, store, &metas, &stale, identity.format.is_none())?;
    Ok(HashMap::new())
}

/// Resets the read models in `stale` to empty (their runners rebuild them
/// from position 1) and records the environment's format and store id.
fn reset(
    env: &ProjEnv,
    store: &Store,
    metas: &[(String, Result<ProjMeta>)],
    stale: &HashMap<String, String>,
    write_identity: bool,
) -> Result<()> {
    if stale.is_empty() && !write_identity {
        return Ok(());
    }
    // Slots are created before the write transaction (see `ProjEnv::slots`).
    let mut slots = Vec::new();
    for (name, meta) in metas.iter().filter(|(n, _)| stale.contains_key(n)) {
        let version = meta.as_ref().map_or(0, |m| m.version);
        slots.push((name, version, env.slots(name, true)?));
    }
    let mut wtxn = env.env.write_txn().map_err(|e| env.heed_err(e))?;
    for (name, version, dbs) in slots {
        if let Some(dbs) = dbs {
            for db in dbs {
                db.clear(&mut wtxn).map_err(|e| env.heed_err(e))?;
            }
        }
        env.save_meta(&mut wtxn, name, &ProjMeta { version, ..ProjMeta::default() })?;
        tracing::warn!(
            projection = name.as_str(),
            reason = stale.get(name.as_str()).map_or("", String::as_str),
            "read model does not match the log; reset, its runner rebuilds it from position 1"
        );
    }
    if write_identity {
        env.meta.put(&mut wtxn, KEY_FORMAT, &FORMAT.to_le_bytes()).map_err(|e| env.heed_err(e))?;
        env.meta.put(&mut wtxn, KEY_STORE_ID, store.store_id().as_bytes()).map_err(|e| env.heed_err(e))?;
    }
    wtxn.commit().map_err(|e| env.heed_err(e))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use std::time::Duration;

    use super::super::{Projection, ProjectionContext, ProjectionRunner};
    use super::*;
    use crate::lmdb::Durability;
    use crate::vocab::{ExpectedVersion, NewEvent, RecordedEvent};

    struct Count;
    impl Projection for Count {
        const NAME: &'static str = "count";
        const VERSION: u32 = 1;
        fn apply(&self, ctx: &mut ProjectionContext<'_>, _: &RecordedEvent) -> Result<()> {
            ctx.update("events", |n: &mut u64| *n += 1)
        }
    }

    fn append(store: &Store, n: u64) {
        let events = (0..n).map(|i| NewEvent::json("E", &i));
        store.append("s-1", ExpectedVersion::Any, events).unwrap();
    }

    /// Guards read models under `Relaxed`: the runner applied events whose
    /// commit a power cut could still undo, so the read model's checkpoint
    /// was durable ahead of the log. It must stop at the durable head.
    #[test]
    fn a_runner_applies_only_durable_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path())
            .durability(Durability::Relaxed)
            .sync_interval(Duration::from_secs(3600))
            .open()
            .unwrap();
        append(&store, 3);
        append(&store, 2); // its data sync makes the first commit durable
        assert_eq!((store.head().unwrap(), store.durable_head().unwrap()), (5, 3));
        let runner = ProjectionRunner::new(&store).unwrap().register(Count).unwrap();
        let entry = runner.core.entries[0].clone();
        while runner.core.step(&entry, u64::MAX) == super::super::runner::Step::Worked {}
        assert_eq!(store.projection::<Count>().checkpoint().unwrap(), 3, "not past the durable head");
        assert_eq!(store.projection::<Count>().get::<u64>("events").unwrap(), Some(3));
        // `run_until_caught_up` syncs first, then applies the rest.
        runner.run_until_caught_up().unwrap();
        assert_eq!(store.projection::<Count>().get::<u64>("events").unwrap(), Some(5));
    }

    /// Guards read-model documents and checkpoint entries against flipped
    /// bytes: without a checksum a checkpoint changed from 2025 to 1025 made
    /// the runner apply events twice while `verify` found nothing.
    #[test]
    fn damaged_documents_and_checkpoints_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        append(&store, 4);
        ProjectionRunner::new(&store).unwrap().register(Count).unwrap().run_until_caught_up().unwrap();
        let env = ProjEnv::get(&store).unwrap().unwrap();
        let slots = env.slots("count", false).unwrap().unwrap();
        let flip = |db: crate::lmdb::env::Db, key: &[u8]| {
            let mut wtxn = env.env.write_txn().unwrap();
            let mut v = db.get(&wtxn, key).unwrap().unwrap().to_vec();
            v[0] ^= 0x01;
            db.put(&mut wtxn, key, &v).unwrap();
            wtxn.commit().unwrap();
        };
        flip(slots[0], b"events");
        let err = store.projection::<Count>().get::<u64>("events").unwrap_err();
        assert!(matches!(err, Error::ReadModelDamaged { .. }), "{err}");
        let report = store.verify().unwrap();
        assert!(report.faults.iter().any(|f| f.area == "projections/count" && f.message.contains("events")));
        flip(env.meta, b"count");
        assert!(matches!(store.projection::<Count>().checkpoint(), Err(Error::ReadModelDamaged { .. })));
        let report = store.verify().unwrap();
        assert!(report.faults.iter().any(|f| f.message.contains("checkpoint entry")), "{:?}", report.faults);
    }

    /// Read models written before checksums and the log identity are reset
    /// by a writable open (their runners rebuild them) and not served by a
    /// read-only one.
    #[test]
    fn read_models_of_the_format_before_checksums_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            append(&store, 2);
            ProjectionRunner::new(&store).unwrap().register(Count).unwrap().run_until_caught_up().unwrap();
            // Rewrite the environment as the earlier format had it.
            let env = ProjEnv::get(&store).unwrap().unwrap();
            let slots = env.slots("count", false).unwrap().unwrap();
            let mut wtxn = env.env.write_txn().unwrap();
            env.meta.delete(&mut wtxn, KEY_FORMAT).unwrap();
            env.meta.delete(&mut wtxn, KEY_STORE_ID).unwrap();
            let meta = ProjMeta { version: 1, checkpoint: 2, ..ProjMeta::default() };
            env.meta.put(&mut wtxn, b"count", &serde_json::to_vec(&meta).unwrap()).unwrap();
            slots[0].put(&mut wtxn, b"events", b"2").unwrap();
            wtxn.commit().unwrap();
            store.close().unwrap();
        }
        {
            let ro = Store::builder(dir.path()).open_read_only().unwrap();
            let err = ro.projection::<Count>().get::<u64>("events").unwrap_err();
            assert!(matches!(err, Error::ReadModelAhead { .. }), "{err}");
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.projection::<Count>().checkpoint().unwrap(), 0, "reset");
        ProjectionRunner::new(&store).unwrap().register(Count).unwrap().run_until_caught_up().unwrap();
        assert_eq!(store.projection::<Count>().get::<u64>("events").unwrap(), Some(2));
        assert!(store.verify().unwrap().is_ok());
    }
}
