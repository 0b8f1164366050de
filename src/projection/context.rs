//! [`ProjectionContext`]: what a projection's `apply` reads and writes, with
//! a write-back cache of the documents it updates.
//!
//! A rebuild applies each event as read-modify-write of one document. Done
//! against LMDB every time, that was two B-tree searches, a JSON decode and a
//! JSON encode per event, even when a batch touches the same document a
//! hundred times in a row. [`ProjectionContext::update`] keeps the decoded
//! document in memory instead and writes each changed document once, in key
//! order, when the batch ends (or when another call needs the stored form).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;

use heed::{RoTxn, RwTxn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::read_model::{decode_doc, encode_doc, scan};
use crate::lmdb::env::Db;
use crate::vocab::{Result, from_heed};

/// Documents held decoded before the cache writes them all out.
const MAX_CACHED_DOCS: usize = 4096;

/// A write transaction of the projections environment, with its env
/// lifetime erased so [`ProjectionContext`] needs only one lifetime.
pub(crate) trait DocTxn {
    fn ro(&self) -> &RoTxn<'_>;
    fn put(&mut self, db: Db, key: &[u8], value: &[u8]) -> heed::Result<()>;
    fn delete(&mut self, db: Db, key: &[u8]) -> heed::Result<bool>;
}

impl DocTxn for RwTxn<'_> {
    fn ro(&self) -> &RoTxn<'_> {
        self
    }

    fn put(&mut self, db: Db, key: &[u8], value: &[u8]) -> heed::Result<()> {
        db.put(self, key, value)
    }

    fn delete(&mut self, db: Db, key: &[u8]) -> heed::Result<bool> {
        db.delete(self, key)
    }
}

/// A document changed in memory and not yet written.
trait CachedDoc {
    fn encode(&self, projection: &str, key: &str) -> Result<Vec<u8>>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Serialize + 'static> CachedDoc for T {
    fn encode(&self, projection: &str, key: &str) -> Result<Vec<u8>> {
        encode_doc(projection, key, self)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The read model a projection's `apply` reads and writes: JSON documents by
/// string key. Every write belongs to the batch's transaction and commits
/// with the projection's checkpoint.
///
/// Reads always see the batch's own writes, whether or not they have been
/// written to the transaction yet.
pub struct ProjectionContext<'t> {
    txn: RefCell<&'t mut (dyn DocTxn + 't)>,
    db: Db,
    name: &'t str,
    map_size: usize,
    cache: RefCell<HashMap<String, Box<dyn CachedDoc>>>,
}

impl<'t> ProjectionContext<'t> {
    pub(crate) fn new(txn: &'t mut (dyn DocTxn + 't), db: Db, name: &'t str, map_size: usize) -> Self {
        ProjectionContext { txn: RefCell::new(txn), db, name, map_size, cache: RefCell::new(HashMap::new()) }
    }

    /// The projection being applied.
    pub fn projection(&self) -> &str {
        self.name
    }

    /// The document at `key`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let cached = self.cache.borrow_mut().remove(key);
        if let Some(doc) = cached {
            self.write(key, doc.as_ref())?;
        }
        let txn = self.txn.borrow();
        match self.db.get(txn.ro(), key.as_bytes())? {
            Some(v) => decode_doc(self.name, key.as_bytes(), v).map(Some),
            None => Ok(None),
        }
    }

    /// Writes `value` as the document at `key`.
    pub fn put<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        self.cache.get_mut().remove(key);
        let bytes = encode_doc(self.name, key, value)?;
        self.txn.get_mut().put(self.db, key.as_bytes(), &bytes).map_err(|e| from_heed(e, self.map_size))
    }

    /// Removes the document at `key`; returns whether it existed.
    pub fn delete(&mut self, key: &str) -> Result<bool> {
        // A cached document exists in this batch even if it was never written.
        let cached = self.cache.get_mut().remove(key).is_some();
        let stored =
            self.txn.get_mut().delete(self.db, key.as_bytes()).map_err(|e| from_heed(e, self.map_size))?;
        Ok(cached || stored)
    }

    /// Reads the document at `key` (or `T::default()`), lets `f` change it,
    /// and keeps it for writing at the end of the batch.
    pub fn update<T, F>(&mut self, key: &str, f: F) -> Result<()>
    where
        T: DeserializeOwned + Serialize + Default + 'static,
        F: FnOnce(&mut T),
    {
        // A document cached as another type is written, then read back as `T`.
        if let Some(doc) = self.cache.get_mut().get_mut(key)
            && let Some(doc) = doc.as_any_mut().downcast_mut::<T>()
        {
            f(doc);
            return Ok(());
        }
        let mut doc = self.get::<T>(key)?.unwrap_or_default();
        f(&mut doc);
        if self.cache.get_mut().len() >= MAX_CACHED_DOCS {
            self.flush()?;
        }
        self.cache.get_mut().insert(key.to_string(), Box::new(doc));
        Ok(())
    }

    /// Documents whose key starts with `prefix`, in key order, at most `limit`.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str, limit: usize) -> Result<Vec<(String, T)>> {
        self.flush()?;
        let txn = self.txn.borrow();
        scan(txn.ro(), self.db, self.name, prefix, None, limit)
    }

    /// Writes every cached document to the transaction, in key order (the
    /// B-tree inserts then land next to each other).
    pub(crate) fn flush(&self) -> Result<()> {
        let mut docs: Vec<(String, Box<dyn CachedDoc>)> = self.cache.borrow_mut().drain().collect();
        docs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, doc) in docs {
            self.write(&key, doc.as_ref())?;
        }
        Ok(())
    }

    fn write(&self, key: &str, doc: &dyn CachedDoc) -> Result<()> {
        let bytes = doc.encode(self.name, key)?;
        self.txn.borrow_mut().put(self.db, key.as_bytes(), &bytes).map_err(|e| from_heed(e, self.map_size))
    }
}
