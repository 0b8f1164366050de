//! Opening a store: the lock, the environment, the meta checks, the writer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use heed::{Env, WithoutTls};

use super::{Inner, Store, StoreBuilder};
use crate::lmdb::env::{self, Dbs};
use crate::lmdb::keys::parse_position_key;
use crate::lmdb::{lock, meta};
use crate::record;
use crate::vocab::{Error, Result};
use crate::writer::shared::Shared;
use crate::writer::{StartState, WriterConfig, WriterHandle};

impl Store {
    pub(crate) fn open_with(b: StoreBuilder, read_only: bool) -> Result<Store> {
        let dir = b.dir.clone();
        let lock = if read_only {
            None
        } else {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            Some(lock::acquire(&dir)?)
        };
        let map_size = b.page_rounded_map_size();
        let settings = env::main_settings(map_size, b.max_readers, b.durability, read_only);
        let env = env::open_env(&dir, &settings)?;
        let now = crate::vocab::now_micros();
        let (dbs, info) = if read_only {
            let mut dbs = env::open_dbs(&env)?.ok_or_else(|| Error::NotAStore { path: dir.clone() })?;
            let rtxn = env.read_txn()?;
            let info = meta::check(&rtxn, &dbs)?;
            if info.format == meta::FORMAT_V1 {
                // Its indexes are not built (or not complete): filtered
                // reads walk the log.
                dbs.index = None;
            }
            (dbs, info)
        } else {
            let dbs = env::create_dbs(&env)?;
            let mut wtxn = env.write_txn()?;
            let info = meta::init_or_check(&mut wtxn, &dbs, now)?;
            wtxn.commit().map_err(|e| crate::vocab::from_heed(e, map_size))?;
            // What an earlier process left unsynced (it ran with `Relaxed`
            // or `NoSync` and stopped without a close) may still be only in
            // the page cache: make it durable before anything is derived
            // from it.
            env.force_sync().map_err(|e| crate::vocab::from_heed_while(e, "syncing the store at open"))?;
            if info.format == meta::FORMAT_V1 {
                // A store written before indexes: build them before the
                // writer starts keeping them.
                let mut report = |done: u64, total: u64| {
                    tracing::info!(done, total, "building the secondary indexes of a format-1 store");
                };
                crate::writer::rebuild_indexes(&env, &dbs, &mut report)?;
            }
            (dbs, info)
        };
        let shared = Arc::new(Shared::default());
        let (head, last_recorded_at) = match last_record(&env, dbs) {
            Ok(last) => last,
            // Only the writer needs the last record (its time, for the next
            // one's): a read-only open goes on, so `verify` can report it.
            Err(e) if read_only && e.is_damage() => (0, 0),
            Err(e) => return Err(e),
        };
        shared.head.store(head, Ordering::Release);
        shared.durable.store(head, Ordering::Release);
        let writer = if read_only {
            None
        } else {
            let config = WriterConfig {
                durability: b.durability,
                sync_interval: b.sync_interval,
                max_batch_events: b.max_batch_events,
                max_batch_bytes: b.max_batch_bytes,
                max_batch_delay: b.max_batch_delay,
                map_size,
                on_commit: b.on_commit.clone(),
                faults: b.faults,
            };
            // The writer appends ids greater than this one. A damaged key
            // must not stop the store from opening (`verify` reports it):
            // all ones turns the append path off, and every id is inserted
            // the ordinary way.
            let rtxn = env.read_txn()?;
            let last_event_id = match dbs.event_ids.last(&rtxn)? {
                Some((k, _)) => <[u8; 16]>::try_from(k).unwrap_or([0xff; 16]),
                None => [0u8; 16],
            };
            drop(rtxn);
            let start =
                StartState { head, last_recorded_at, next_stream_no: info.next_stream_no, last_event_id };
            Some(WriterHandle::spawn(env.clone(), dbs, shared.clone(), config, b.queue_capacity, start)?)
        };
        let (writer, tx) = match writer {
            Some((w, tx)) => (Some(w), Some(tx)),
            None => (None, None),
        };
        Ok(Store {
            inner: Arc::new(Inner {
                dir,
                tx: RwLock::new(tx),
                read_only,
                writer: Mutex::new(writer),
                env,
                dbs,
                shared,
                max_event_size: b.max_event_size,
                map_size,
                durability: b.durability,
                store_id: info.store_id,
                created_at: info.created_at,
                extensions: Mutex::new(Vec::new()),
                _lock: lock,
            }),
        })
    }
}

/// The position and `recorded_at` of the log's last record, `(0, 0)` when
/// the log is empty. A damaged last record is an error: a writer cannot go
/// on from it.
fn last_record(env: &Env<WithoutTls>, dbs: Dbs) -> Result<(u64, u64)> {
    let rtxn = env.read_txn()?;
    match dbs.events.last(&rtxn)? {
        Some((k, v)) => {
            let p = parse_position_key(k)?;
            Ok((p, record::recorded_at(p, v)?))
        }
        None => Ok((0, 0)),
    }
}
