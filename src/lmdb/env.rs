//! The LMDB environment and its named databases. This is where eventfold
//! talks to LMDB's unsafe open calls; nothing else in the crate does.

use std::convert::Infallible;
use std::path::Path;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};

use crate::vocab::{Error, Result, from_heed_while};

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
    /// The secondary indexes (`index_keys.rs`); `None` only in a store of
    /// format 1 opened read-only, which has none yet.
    pub index: Option<Db>,
    /// Streams' lifecycle and retention (`stream_meta.rs`); `None` only in
    /// a store opened read-only that has never had any.
    pub stream_meta: Option<Db>,
    /// The ranges of positions scavenging removed (`removed.rs`); `None`
    /// only in a store opened read-only that has never scavenged.
    pub removed: Option<Db>,
}

/// The secondary indexes' database, added by format 2.
const INDEX_NAME: &str = "index";

/// The streams' lifecycle database, added with stream deletion.
const STREAM_META_NAME: &str = "stream_meta";

/// The removed positions' database, added with scavenging.
const REMOVED_NAME: &str = "removed";

const NAMES: [&str; 7] =
    ["events", "streams", "stream_index", "event_ids", "snapshots", "checkpoints", "meta"];

/// The databases beside the log that features above the writer keep their
/// data in, written through the writer's side writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// Durable consumers' checkpoints and dedup entries.
    Checkpoints,
    /// Aggregates' snapshots.
    Snapshots,
}

impl Dbs {
    /// The database behind `table`.
    pub(crate) fn table(&self, table: Table) -> Db {
        match table {
            Table::Checkpoints => self.checkpoints,
            Table::Snapshots => self.snapshots,
        }
    }

    fn from_array(a: [Db; 7]) -> Self {
        let [events, streams, stream_index, event_ids, snapshots, checkpoints, meta] = a;
        Dbs {
            events,
            streams,
            stream_index,
            event_ids,
            snapshots,
            checkpoints,
            meta,
            index: None,
            stream_meta: None,
            removed: None,
        }
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
    durability: crate::lmdb::Durability,
    read_only: bool,
) -> EnvSettings {
    use crate::lmdb::Durability;
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
        // LMDB reads both meta pages with plain reads: a file too short to
        // hold them, or with a bad magic number, is `MDB_INVALID`.
        heed::Error::Mdb(heed::MdbError::Invalid) => Error::DamagedFile {
            path: dir.join("data.mdb"),
            reason: "its header pages are missing or are not LMDB meta pages".into(),
        },
        // Every eventfold store is written by this LMDB: another data
        // version in a header page is damage.
        heed::Error::Mdb(heed::MdbError::VersionMismatch) => Error::DamagedFile {
            path: dir.join("data.mdb"),
            reason: "a header page names an LMDB data version this build does not write".into(),
        },
        other => from_heed_while(other, format!("opening the LMDB environment in {}", dir.display())),
    }
}

/// Checks that the data file holds every page its newest meta page counts
/// (pages `0..=last_page_number`). A file cut short, by an interrupted copy
/// or a failing disk, would otherwise raise `SIGBUS` at the first read of a
/// missing page through the memory map.
///
/// LMDB read both meta pages with plain reads while opening, so reading
/// them through [`Env::info`] touches only pages that are in the file. The
/// meta page is read before the file's length: a writer writes a commit's
/// pages before the meta page that makes them current, so a length taken
/// after the meta page covers that meta page's pages.
fn check_file(env: &Env<WithoutTls>, dir: &Path) -> Result<()> {
    let path = dir.join("data.mdb");
    let last_page = env.info().last_page_number as u64;
    let page_size = u64::from(env.unnamed_database_stat().page_size);
    let len = env.real_disk_size().map_err(|e| match e {
        heed::Error::Io(e) => Error::io(&path, e),
        other => Error::from(other),
    })?;
    check_meta_pages(&path, page_size)?;
    let needed = last_page.checked_add(1).and_then(|pages| pages.checked_mul(page_size));
    match needed {
        Some(needed) if page_size > 0 && len >= needed => Ok(()),
        Some(needed) => Err(Error::DamagedFile {
            path,
            reason: format!(
                "it is {len} bytes long, but its header counts {} pages of {page_size} bytes ({needed} bytes): it was cut short, as by an interrupted copy",
                last_page.saturating_add(1)
            ),
        }),
        None => Err(Error::DamagedFile {
            path,
            reason: format!(
                "its header counts {last_page} pages of {page_size} bytes, more than a file can hold"
            ),
        }),
    }
}

/// Opens (and for writers, creates) an LMDB environment in `dir`: the main
/// one, or a side environment such as `projections/`.
pub(crate) fn open_env(dir: &Path, s: &EnvSettings) -> Result<Env<WithoutTls>> {
    let data = dir.join("data.mdb");
    if s.read_only {
        match std::fs::metadata(&data) {
            Err(_) => return Err(Error::NotAStore { path: dir.to_path_buf() }),
            // LMDB takes an empty file for a new environment; only a writer
            // may make one (a writer that died before its first commit
            // leaves an empty file, and the next writable open starts over).
            Ok(m) if m.len() == 0 => {
                return Err(Error::DamagedFile {
                    path: data,
                    reason: "it is empty, so it holds no store".into(),
                });
            }
            Ok(_) => {}
        }
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
    let env = unsafe { options.open(dir) }.map_err(|e| map_open_error(dir, e, s.read_only))?;
    check_file(&env, dir)?;
    super::map_fault::register_map(&data);
    Ok(env)
}

/// Where the transaction id sits in a meta page (64-bit layout of LMDB's
/// `MDB_meta`, after the 16-byte page header: magic, version, address,
/// map size, two 48-byte database records, last page, txnid).
#[cfg(target_pointer_width = "64")]
const META_TXNID_OFFSET: u64 = 16 + 128;

/// Checks that the two meta pages hold consecutive transaction ids, the
/// newer one in page `txnid % 2`: LMDB writes the meta page of commit `n`
/// into page `n % 2`, so the other page holds commit `n - 1` (a new file
/// has 0 in both; a compacting copy writes 0 and 1). A damaged id would
/// make LMDB open an older commit, whose pages may have been reused since,
/// without a word.
#[cfg(target_pointer_width = "64")]
fn check_meta_pages(path: &Path, page_size: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut txnids = [0u64; 2];
    for (i, txnid) in txnids.iter_mut().enumerate() {
        let mut buf = [0u8; 8];
        let at = (i as u64).saturating_mul(page_size).saturating_add(META_TXNID_OFFSET);
        file.read_exact_at(&mut buf, at).map_err(|e| Error::io(path, e))?;
        *txnid = u64::from_le_bytes(buf);
    }
    let newer = usize::from(txnids[1] > txnids[0]);
    let (new, old) = (txnids[newer], txnids[newer ^ 1]);
    let consecutive = new == 0 || (new % 2 == newer as u64 && old.checked_add(1) == Some(new));
    if consecutive {
        Ok(())
    } else {
        Err(Error::DamagedFile {
            path: path.to_path_buf(),
            reason: format!(
                "its two header pages name transactions {} and {}, which no sequence of commits leaves",
                txnids[0], txnids[1]
            ),
        })
    }
}

#[cfg(not(target_pointer_width = "64"))]
fn check_meta_pages(_path: &Path, _page_size: u64) -> Result<()> {
    Ok(())
}

/// Opens the named databases `names` of `env` in one read transaction,
/// committed so that they stay open. When any of them is missing, the
/// transaction is aborted and the missing names are the answer instead.
pub(crate) fn open_named<'n, const N: usize>(
    env: &Env<WithoutTls>,
    names: [&'n str; N],
) -> heed::Result<std::result::Result<[Db; N], Vec<&'n str>>> {
    let rtxn = env.read_txn()?;
    let opened = env.open_databases_and_commit(rtxn, |opener, rtxn| -> heed::Result<_> {
        let mut out = Vec::with_capacity(N);
        let mut missing = Vec::new();
        for name in names {
            match opener.open_database::<Bytes, Bytes>(rtxn, Some(name))? {
                Some(db) => out.push(db),
                None => missing.push(name),
            }
        }
        // All `N` are there exactly when none is missing.
        Ok(match <[_; N]>::try_from(out) {
            Ok(dbs) => CommitOrAbort::Commit(dbs),
            Err(_) => CommitOrAbort::Abort(missing),
        })
    })?;
    Ok(opened.into())
}

/// Creates those of the named databases `names` of `env` that are missing,
/// in one write transaction, and returns all of them.
pub(crate) fn create_named<const N: usize>(env: &Env<WithoutTls>, names: [&str; N]) -> heed::Result<[Db; N]> {
    let wtxn = env.write_txn()?;
    let created = env.create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
        let mut out = Vec::with_capacity(N);
        for name in names {
            out.push(opener.create_database::<Bytes, Bytes>(wtxn, Some(name))?);
        }
        let dbs: [_; N] = out.try_into().map_err(|_| heed::Error::Io(std::io::ErrorKind::Other.into()))?;
        Ok(CommitOrAbort::<_, Infallible>::Commit(dbs))
    })?;
    match created {
        CommitOrAbort::Commit(dbs) => Ok(dbs),
        CommitOrAbort::Abort(never) => match never {},
    }
}

/// Creates the named databases that are missing and returns all of them.
/// A store that has some of them but not all is damaged (they are created
/// together), and is refused rather than filled in.
pub(crate) fn create_dbs(env: &Env<WithoutTls>) -> Result<Dbs> {
    let mut dbs = match open_dbs(env)? {
        Some(dbs) => dbs,
        None => Dbs::from_array(create_named(env, NAMES)?),
    };
    if dbs.index.is_none() {
        let [index] = create_named(env, [INDEX_NAME])?;
        dbs.index = Some(index);
    }
    if dbs.stream_meta.is_none() {
        let [stream_meta] = create_named(env, [STREAM_META_NAME])?;
        dbs.stream_meta = Some(stream_meta);
    }
    if dbs.removed.is_none() {
        let [removed] = create_named(env, [REMOVED_NAME])?;
        dbs.removed = Some(removed);
    }
    Ok(dbs)
}

/// Opens the named databases of an existing store; `None` when there are
/// none (no store yet). Some but not all of them is `DamagedFile`: they are
/// created together, so a missing one means a damaged name or page in the
/// main B-tree.
pub(crate) fn open_dbs(env: &Env<WithoutTls>) -> Result<Option<Dbs>> {
    match open_named(env, NAMES)? {
        Ok(arr) => {
            let mut dbs = Dbs::from_array(arr);
            dbs.index = open_named(env, [INDEX_NAME])?.ok().map(|[index]| index);
            dbs.stream_meta = open_named(env, [STREAM_META_NAME])?.ok().map(|[db]| db);
            dbs.removed = open_named(env, [REMOVED_NAME])?.ok().map(|[db]| db);
            Ok(Some(dbs))
        }
        Err(missing) if missing.len() == NAMES.len() => Ok(None),
        Err(missing) => Err(Error::DamagedFile {
            path: env.path().join("data.mdb"),
            reason: format!(
                "its databases {} are missing: a name or page of its main B-tree is damaged",
                missing.join(", ")
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Error, ExpectedVersion, NewEvent, Store};

    fn store_with_pages() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..200u64 {
            store.append(&format!("s-{}", i % 7), ExpectedVersion::Any, [NewEvent::json("E", &i)]).unwrap();
        }
        drop(store);
        dir
    }

    /// Guards the open-time file check: a `data.mdb` cut short (an
    /// interrupted copy) is refused with `DamagedFile` by read-only and
    /// writable opens alike, before any page is read (which would be
    /// `SIGBUS`).
    #[test]
    fn a_file_cut_short_is_refused_at_open() {
        let dir = store_with_pages();
        let data = dir.path().join("data.mdb");
        let len = std::fs::metadata(&data).unwrap().len();
        for cut in [len - 1, len - 4096, len / 2, 8192 + 100] {
            let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            let err = Store::builder(dir.path()).open_read_only().unwrap_err();
            assert!(matches!(err, Error::DamagedFile { .. }), "{cut}: {err:?}");
            let text = err.to_string();
            assert!(text.contains("cut short") && text.contains("restore the store from a backup"), "{text}");
            let err = Store::open(dir.path()).unwrap_err();
            assert!(matches!(err, Error::DamagedFile { .. }), "{cut}: {err:?}");
        }
    }

    /// Guards the meta-page check: a transaction id damaged in either meta
    /// page (which would make LMDB open an older commit without a word) is
    /// `DamagedFile` at open.
    #[test]
    fn a_damaged_meta_transaction_id_is_refused() {
        let dir = store_with_pages();
        let data = dir.path().join("data.mdb");
        let saved = std::fs::read(&data).unwrap();
        // The page size is in the meta struct, 24 bytes after the page header.
        let page_size = u32::from_le_bytes(saved[40..44].try_into().unwrap()) as usize;
        for page in [0usize, 1] {
            let mut bytes = saved.clone();
            bytes[page * page_size + super::META_TXNID_OFFSET as usize + 4] ^= 0x08;
            std::fs::write(&data, &bytes).unwrap();
            let err = Store::builder(dir.path()).open_read_only().unwrap_err();
            assert!(matches!(err, Error::DamagedFile { .. }), "page {page}: {err:?}");
            assert!(err.to_string().contains("header pages name transactions"), "{err}");
        }
        std::fs::write(&data, &saved).unwrap();
        Store::builder(dir.path()).open_read_only().unwrap();
    }

    /// Guards the check that the named databases come together: one
    /// missing (a damaged name in the main B-tree) is `DamagedFile` for
    /// read-only and writable opens, and a writable open does not create
    /// it afresh.
    #[test]
    fn a_missing_database_is_damage_not_a_new_store() {
        let dir = store_with_pages();
        // Rename "streams" as damage would: a changed byte in its key in
        // the main B-tree (a node with a 7-byte key, then the key).
        let data = dir.path().join("data.mdb");
        let mut bytes = std::fs::read(&data).unwrap();
        let pattern = b"\x07\x00streams";
        let mut found = 0;
        for i in 0..bytes.len() - pattern.len() {
            if &bytes[i..i + pattern.len()] == pattern {
                bytes[i + pattern.len() - 1] = b'z';
                found += 1;
            }
        }
        assert!(found > 0);
        std::fs::write(&data, bytes).unwrap();
        for writable in [false, true] {
            let err = if writable {
                Store::open(dir.path()).unwrap_err()
            } else {
                Store::builder(dir.path()).open_read_only().unwrap_err()
            };
            assert!(matches!(err, Error::DamagedFile { .. }), "{err:?}");
            assert!(err.to_string().contains("databases streams are missing"), "{err}");
        }
    }

    /// Guards the files too short for LMDB's two header pages, and an empty
    /// file under a read-only open: `DamagedFile`, not "no store here".
    #[test]
    fn a_file_without_its_header_is_damaged() {
        let dir = store_with_pages();
        let data = dir.path().join("data.mdb");
        for cut in [4096 + 10, 100, 0] {
            let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            let err = Store::builder(dir.path()).open_read_only().unwrap_err();
            assert!(matches!(err, Error::DamagedFile { .. }), "{cut}: {err:?}");
        }
    }
}
