//! The `projections/` environment: per projection, two document slots and a
//! `meta` entry; the context `apply` writes through; and [`ReadModel`], the
//! application's read side.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use heed::{Env, RoTxn, RwTxn, WithoutTls};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use uuid::Uuid;

use super::Projection;
use super::sealed::{seal, unseal};
use crate::lmdb::env::{Db, EnvSettings, create_named, open_env, open_named};
use crate::store::Store;
use crate::vocab::{Error, Result, from_heed, from_heed_while};

/// Named databases the projections environment may hold: `meta` plus two
/// slots per projection, so up to 127 projections.
const MAX_DBS: u32 = 256;

/// What the projections environment records about one projection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProjMeta {
    /// Version of the model in the active slot.
    pub version: u32,
    /// Last position applied to the active slot.
    pub checkpoint: u64,
    /// `recorded_at` of that event.
    pub checkpoint_at: u64,
    /// The id of the event at the checkpoint: the log this model was made
    /// from holds it there (see `identity.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_id: Option<Uuid>,
    /// The slot readers see (0 or 1).
    pub active: u8,
    /// A rebuild in progress into the other slot.
    pub rebuild: Option<RebuildMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RebuildMeta {
    pub version: u32,
    pub slot: u8,
    pub checkpoint: u64,
    pub checkpoint_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_id: Option<Uuid>,
}

/// The open `projections/` environment of a store.
pub(crate) struct ProjEnv {
    pub env: Env<WithoutTls>,
    pub meta: Db,
    slots: Mutex<HashMap<String, [Db; 2]>>,
    pub(crate) read_only: bool,
    map_size: usize,
    /// Read models that do not match the log and are not served, with the
    /// reason (a read-only handle cannot rebuild them; a writable one resets
    /// them when the environment is opened).
    pub(crate) stale: HashMap<String, String>,
}

impl ProjEnv {
    /// The store's projections environment, opened (and for a writable
    /// store created) on first use. `None` for a read-only store that has
    /// no projections yet.
    pub(crate) fn get(store: &Store) -> Result<Option<Arc<ProjEnv>>> {
        store.extension(|| ProjEnv::open(store))
    }

    fn open(store: &Store) -> Result<Option<ProjEnv>> {
        let dir = store.path().join("projections");
        let read_only = store.is_read_only();
        if read_only && !dir.join("data.mdb").exists() {
            return Ok(None);
        }
        if !read_only {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let settings = EnvSettings {
            max_dbs: MAX_DBS,
            map_size: store.map_size(),
            max_readers: 1024,
            // Never `NoSync`, even for a `NoSync` store: out-of-order write-back
            // can damage an LMDB file that is never synced, and a damaged
            // read model may pass for a good one. With one sync per batch
            // (`Relaxed`), a power cut only undoes the last batch, which the
            // runner then applies again.
            no_sync: false,
            no_meta_sync: store.durability() != crate::lmdb::Durability::Sync,
            read_only,
        };
        let env = open_env(&dir, &settings)?;
        let [meta] = if read_only {
            match open_named(&env, ["meta"])? {
                Ok(db) => db,
                // `meta` is made with the environment: read models without
                // it mean a damaged name or page in the main B-tree.
                Err(_) if env.unnamed_database_stat().entries > 0 => {
                    return Err(Error::DamagedFile {
                        path: dir.join("data.mdb"),
                        reason: "it holds read models but no meta database".into(),
                    });
                }
                Err(_) => return Ok(None),
            }
        } else {
            create_named(&env, ["meta"])?
        };
        let mut env = ProjEnv {
            env,
            meta,
            slots: Mutex::new(HashMap::new()),
            read_only,
            map_size: store.map_size(),
            stale: HashMap::new(),
        };
        env.stale = super::identity::check_against_log(&env, store, &dir)?;
        Ok(Some(env))
    }

    pub(crate) fn heed_err(&self, e: heed::Error) -> Error {
        from_heed(e, self.map_size)
    }

    /// The two document slots of projection `name`; with `create` (runners
    /// of a writable store) they are created when missing, which must not
    /// happen while this thread holds a write transaction of the
    /// environment. Readers never create: a missing model is `None`.
    pub(crate) fn slots(&self, name: &str, create: bool) -> Result<Option<[Db; 2]>> {
        let mut cache = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cache.get(name) {
            return Ok(Some(*s));
        }
        let names = [format!("docs/{name}/0"), format!("docs/{name}/1")];
        let names = names.each_ref().map(String::as_str);
        let dbs = if self.read_only || !create {
            match open_named(&self.env, names)? {
                Ok(dbs) => dbs,
                Err(_) => return Ok(None),
            }
        } else {
            create_named(&self.env, names).map_err(|e| match e {
                e @ heed::Error::Mdb(heed::MdbError::DbsFull) => from_heed_while(
                    e,
                    format!(
                        "creating the read model of projection {name:?} (the projections environment holds at most {} projections)",
                        (MAX_DBS - 1) / 2
                    ),
                ),
                other => self.heed_err(other),
            })?
        };
        cache.insert(name.to_string(), dbs);
        Ok(Some(dbs))
    }

    pub(crate) fn load_meta(&self, txn: &RoTxn<'_, WithoutTls>, name: &str) -> Result<Option<ProjMeta>> {
        match self.meta.get(txn, name.as_bytes())? {
            Some(v) => decode_meta(name, v).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn save_meta(&self, txn: &mut RwTxn<'_>, name: &str, meta: &ProjMeta) -> Result<()> {
        let v = serde_json::to_vec(meta)
            .map_err(|e| Error::storage(format!("encoding the checkpoint of projection {name:?}"), e))?;
        self.meta.put(txn, name.as_bytes(), &seal(name.as_bytes(), v)).map_err(|e| self.heed_err(e))
    }

    /// Refuses to serve a read model that does not match the log.
    pub(crate) fn check_served(&self, name: &str) -> Result<()> {
        match self.stale.get(name) {
            Some(reason) => {
                Err(Error::ReadModelAhead { projection: name.to_string(), reason: reason.clone() })
            }
            None => Ok(()),
        }
    }
}

/// A projection's checkpoint entry: checksum, then JSON.
pub(crate) fn decode_meta(name: &str, value: &[u8]) -> Result<ProjMeta> {
    let damaged = |reason: String| Error::ReadModelDamaged { projection: name.to_string(), reason };
    let body = unseal(name.as_bytes(), value).map_err(|r| damaged(format!("its checkpoint entry: {r}")))?;
    serde_json::from_slice(body).map_err(|e| damaged(format!("its checkpoint entry is unreadable: {e}")))
}

pub(super) fn encode_doc<T: Serialize + ?Sized>(projection: &str, key: &str, value: &T) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(value).map_err(|e| Error::Document {
        projection: projection.to_string(),
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    Ok(seal(key.as_bytes(), json))
}

pub(super) fn decode_doc<T: DeserializeOwned>(projection: &str, key: &[u8], bytes: &[u8]) -> Result<T> {
    let body = unseal(key, bytes).map_err(|reason| Error::ReadModelDamaged {
        projection: projection.to_string(),
        reason: format!("document {:?}: {reason}", String::from_utf8_lossy(key)),
    })?;
    serde_json::from_slice(body).map_err(|e| Error::Document {
        projection: projection.to_string(),
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn key_string(projection: &str, key: &[u8]) -> Result<String> {
    String::from_utf8(key.to_vec()).map_err(|_| Error::Document {
        projection: projection.to_string(),
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "the key is not UTF-8".into(),
    })
}

/// Scans documents whose key starts with `prefix`, after `after`, at most `limit`.
pub(super) fn scan<T: DeserializeOwned>(
    txn: &RoTxn<'_>,
    db: Db,
    projection: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, T)>> {
    // LMDB refuses an empty key as a bound: an empty prefix is no bound.
    let lower = match after {
        Some(a) if a.as_bytes() >= prefix.as_bytes() && !a.is_empty() => Bound::Excluded(a.as_bytes()),
        _ if prefix.is_empty() => Bound::Unbounded,
        _ => Bound::Included(prefix.as_bytes()),
    };
    let mut out = Vec::new();
    for item in db.range(txn, &(lower, Bound::Unbounded))? {
        let (k, v) = item?;
        if out.len() >= limit || !k.starts_with(prefix.as_bytes()) {
            break;
        }
        out.push((key_string(projection, k)?, decode_doc(projection, k, v)?));
    }
    Ok(out)
}

/// The application's read side of projection `P`'s model: always the active
/// (fully built) slot, even while a rebuild runs.
///
/// Each call reads in its own short transaction. Made by [`Store::projection`].
pub struct ReadModel<P> {
    store: Store,
    name: &'static str,
    _p: PhantomData<fn() -> P>,
}

impl<P> std::fmt::Debug for ReadModel<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModel").field("projection", &self.name).finish()
    }
}

impl Store {
    /// The read model of projection `P`. A projection that never ran reads
    /// as empty.
    pub fn projection<P: Projection>(&self) -> ReadModel<P> {
        ReadModel { store: self.clone(), name: P::NAME, _p: PhantomData }
    }
}

impl<P: Projection> ReadModel<P> {
    /// Runs `f` on a read transaction, the active slot and the meta entry;
    /// `Ok(None)` when the model does not exist yet.
    fn with<R>(
        &self,
        f: impl FnOnce(&RoTxn<'_, WithoutTls>, Db, &ProjMeta) -> Result<R>,
    ) -> Result<Option<R>> {
        let Some(env) = ProjEnv::get(&self.store)? else { return Ok(None) };
        env.check_served(self.name)?;
        let slots = env.slots(self.name, false)?;
        let txn = env.env.read_txn()?;
        let Some(meta) = env.load_meta(&txn, self.name)? else { return Ok(None) };
        // A checkpoint without its documents is damage, not an empty model.
        let slots = slots.ok_or_else(|| Error::ReadModelDamaged {
            projection: self.name.to_string(),
            reason: "its checkpoint entry is there, its document databases are not".into(),
        })?;
        let db = slots[usize::from(meta.active & 1)];
        f(&txn, db, &meta).map(Some)
    }

    /// The document at `key`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let name = self.name;
        Ok(self
            .with(|txn, db, _| match db.get(txn, key.as_bytes())? {
                Some(v) => decode_doc(name, key.as_bytes(), v).map(Some),
                None => Ok(None),
            })?
            .flatten())
    }

    /// Number of documents.
    pub fn count(&self) -> Result<u64> {
        Ok(self.with(|txn, db, _| Ok(db.len(txn)?))?.unwrap_or(0))
    }

    /// Every document, in key order.
    pub fn entries<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>> {
        self.scan("", None, usize::MAX)
    }

    /// Documents whose key starts with `prefix`, in key order, after the key
    /// `after` (exclusive; for paging), at most `limit`.
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, T)>> {
        let name = self.name;
        Ok(self.with(|txn, db, _| scan(txn, db, name, prefix, after, limit))?.unwrap_or_default())
    }

    /// The last position applied to the model readers see (0 when none).
    pub fn checkpoint(&self) -> Result<u64> {
        Ok(self.with(|_, _, m| Ok(m.checkpoint))?.unwrap_or(0))
    }

    /// The projection version of the model readers see (0 when none).
    pub fn version(&self) -> Result<u32> {
        Ok(self.with(|_, _, m| Ok(m.version))?.unwrap_or(0))
    }
}
