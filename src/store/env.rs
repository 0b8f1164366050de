//! The LMDB environment and its named databases. This is where eventfold
//! talks to LMDB's unsafe open calls; nothing else in the crate does.

use std::path::Path;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};

use crate::error::{Error, Result};

/// Every database is raw bytes to raw bytes; the key and value layouts live in
/// `keys.rs` and `record/`.
pub(crate) type Db = Database<'static, Bytes, Bytes>;

/// How many named databases the main environment may hold.
const MAX_DBS: u32 = 16;

/// The named databases of the main environment (see `docs/format.md`).
#[derive(Clone, Copy)]
pub(crate) struct Dbs {
    pub events: Db,
    pub streams: Db,
    pub stream_index: Db,
    pub event_ids: Db,
    pub snapshots: Db,
    pub checkpoints: Db,
    pub meta: Db,
}

const NAMES: [&str; 7] =
    ["events", "streams", "stream_index", "event_ids", "snapshots", "checkpoints", "meta"];

impl Dbs {
    fn from_array(a: [Db; 7]) -> Self {
        let [events, streams, stream_index, event_ids, snapshots, checkpoints, meta] = a;
        Dbs { events, streams, stream_index, event_ids, snapshots, checkpoints, meta }
    }
}

/// Settings that decide how an environment is opened.
pub(crate) struct EnvSettings {
    pub max_dbs: u32,
    pub map_size: usize,
    pub max_readers: u32,
    pub no_sync: bool,
    pub no_meta_sync: bool,
    pub read_only: bool,
}

/// Settings of the main environment.
pub(crate) fn main_settings(
    map_size: usize,
    max_readers: u32,
    durability: crate::store::Durability,
    read_only: bool,
) -> EnvSettings {
    use crate::store::Durability;
    EnvSettings {
        max_dbs: MAX_DBS,
        map_size,
        max_readers,
        no_sync: durability == Durability::NoSync,
        no_meta_sync: durability == Durability::Relaxed,
        read_only,
    }
}

fn map_open_error(dir: &Path, err: heed::Error, read_only: bool) -> Error {
    match err {
        heed::Error::EnvAlreadyOpened => Error::AlreadyOpen { path: dir.to_path_buf() },
        heed::Error::Io(e) if read_only && e.kind() == std::io::ErrorKind::NotFound => {
            Error::NotAStore { path: dir.to_path_buf() }
        }
        heed::Error::Io(e) => Error::io(dir, e),
        other => Error::Storage(format!("could not open the LMDB environment in {}: {other}", dir.display())),
    }
}

/// Opens (and for writers, creates) an LMDB environment in `dir`: the main
/// one, or a side environment such as `projections/`.
pub(crate) fn open_env(dir: &Path, s: &EnvSettings) -> Result<Env<WithoutTls>> {
    if s.read_only && !dir.join("data.mdb").exists() {
        return Err(Error::NotAStore { path: dir.to_path_buf() });
    }
    let mut flags = EnvFlags::empty();
    if s.no_sync {
        flags |= EnvFlags::NO_SYNC;
    }
    if s.no_meta_sync {
        flags |= EnvFlags::NO_META_SYNC;
    }
    if s.read_only {
        flags |= EnvFlags::READ_ONLY;
    }
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(s.map_size).max_readers(s.max_readers).max_dbs(s.max_dbs);
    // SAFETY: heed marks NO_SYNC and NO_META_SYNC unsafe because they weaken
    // what a power cut can do to the file, not memory safety. They are only
    // set by the `Durability::NoSync` / `Durability::Relaxed` settings, whose
    // documentation states those consequences. READ_ONLY is always sound.
    unsafe { options.flags(flags) };
    // SAFETY: LMDB's memory map must not be modified behind its back. Within
    // this process heed refuses a second open of the same path, and across
    // processes eventfold admits one writer (the `LOCK` file) while LMDB's own
    // lock file coordinates readers. The store directory is eventfold's alone.
    unsafe { options.open(dir) }.map_err(|e| map_open_error(dir, e, s.read_only))
}

/// Creates the named databases that are missing and returns all of them.
pub(crate) fn create_dbs(env: &Env<WithoutTls>) -> Result<Dbs> {
    let wtxn = env.write_txn()?;
    let dbs = env.create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_, heed::Error> {
        let mut out = Vec::with_capacity(NAMES.len());
        for name in NAMES {
            out.push(opener.create_database::<Bytes, Bytes>(wtxn, Some(name))?);
        }
        let arr: [_; 7] = out.try_into().map_err(|_| heed::Error::Io(std::io::ErrorKind::Other.into()))?;
        Ok(CommitOrAbort::<_, ()>::Commit(arr))
    })?;
    match dbs {
        CommitOrAbort::Commit(arr) => Ok(Dbs::from_array(arr)),
        CommitOrAbort::Abort(()) => Err(Error::Storage("creating the databases was aborted".into())),
    }
}

/// Opens the named databases of an existing store; `None` when any is missing.
pub(crate) fn open_dbs(env: &Env<WithoutTls>) -> Result<Option<Dbs>> {
    let rtxn = env.read_txn()?;
    let dbs = env.open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_, heed::Error> {
        let mut out = Vec::with_capacity(NAMES.len());
        for name in NAMES {
            match opener.open_database::<Bytes, Bytes>(rtxn, Some(name))? {
                Some(db) => out.push(db),
                None => return Ok(CommitOrAbort::Abort(())),
            }
        }
        let arr: [_; 7] = out.try_into().map_err(|_| heed::Error::Io(std::io::ErrorKind::Other.into()))?;
        Ok(CommitOrAbort::Commit(arr))
    })?;
    Ok(match dbs {
        CommitOrAbort::Commit(arr) => Some(Dbs::from_array(arr)),
        CommitOrAbort::Abort(()) => None,
    })
}
