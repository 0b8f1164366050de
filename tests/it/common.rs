//! Helpers shared by the integration tests.

use eventfold::{NewEvent, Store};
use serde_json::json;
use tempfile::TempDir;

/// A fresh store in a temporary directory (removed when the `TempDir` drops).
pub fn temp_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

/// A small JSON event of type `ty` carrying `n`.
pub fn ev(ty: &str, n: u64) -> NewEvent {
    NewEvent::json(ty, &json!({ "n": n }))
}

/// A tiny deterministic generator (xorshift64*), so runs repeat by seed.
pub struct Rng(pub u64);

impl Rng {
    /// A generator for `seed` (any value; the state is never zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Flips a byte inside the record at `position` through LMDB, as a failing
/// disk could: its checksum no longer matches. Only while no process has
/// the store open.
pub fn flip_record_byte(dir: &std::path::Path, position: u64) {
    let (env, events) = events_db(dir);
    let mut wtxn = env.write_txn().unwrap();
    let key = position.to_be_bytes();
    let mut value = events.get(&wtxn, &key).unwrap().unwrap().to_vec();
    value[10] ^= 0x40;
    events.put(&mut wtxn, &key, &value).unwrap();
    wtxn.commit().unwrap();
}

/// Deletes the record at `position` through LMDB, as a lost page or a
/// flipped key could, without recording it as removed. Only while no
/// process has the store open.
pub fn delete_record(dir: &std::path::Path, position: u64) {
    let (env, events) = events_db(dir);
    let mut wtxn = env.write_txn().unwrap();
    assert!(events.delete(&mut wtxn, &position.to_be_bytes()).unwrap());
    wtxn.commit().unwrap();
}

type Events = heed::Database<'static, heed::types::Bytes, heed::types::Bytes>;

fn events_db(dir: &std::path::Path) -> (heed::Env, Events) {
    let mut options = heed::EnvOpenOptions::new();
    options.max_dbs(16).map_size(eventfold::DEFAULT_MAP_SIZE);
    // SAFETY: the test owns the directory and no other process has it open.
    let env = unsafe { options.open(dir) }.expect("open LMDB");
    let rtxn = env.read_txn().unwrap();
    let events = env
        .open_databases_and_commit(rtxn, |opener, rtxn| -> heed::Result<_> {
            let db = opener.open_database::<heed::types::Bytes, heed::types::Bytes>(rtxn, Some("events"))?;
            Ok(heed::CommitOrAbort::<_, ()>::Commit(db))
        })
        .unwrap()
        .unwrap_commit()
        .expect("the events database exists");
    (env, events)
}
