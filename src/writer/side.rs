//! Side writes: changes to a database other than the log's, committed in
//! the same transaction as a request's appends. Durable consumers' checkpoints
//! and aggregates' snapshots ride in the writer's batches this way; the
//! writer applies each change without knowing what it means.

use std::fmt;

use heed::RwTxn;

use crate::lmdb::env::{Dbs, Table};

/// One change to make inside the writer's transaction.
///
/// `apply` may run more than once for one request: when a batch fails, the
/// writer aborts it and retries each request alone. So it must only read and
/// write through `wtxn`, and give the same result each time it is given the
/// same transaction state.
pub(crate) trait SideWrite: Send + fmt::Debug {
    /// Makes the change in `wtxn`.
    fn apply(&self, wtxn: &mut RwTxn<'_>, dbs: &Dbs) -> heed::Result<()>;
}

/// Stores `value` under `key` in `table`.
#[derive(Debug)]
pub(crate) struct Put {
    pub table: Table,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl SideWrite for Put {
    fn apply(&self, wtxn: &mut RwTxn<'_>, dbs: &Dbs) -> heed::Result<()> {
        dbs.table(self.table).put(wtxn, &self.key, &self.value)
    }
}

/// Removes `key` from `table`, if it is there.
#[derive(Debug)]
pub(crate) struct Delete {
    pub table: Table,
    pub key: Vec<u8>,
}

impl SideWrite for Delete {
    fn apply(&self, wtxn: &mut RwTxn<'_>, dbs: &Dbs) -> heed::Result<()> {
        dbs.table(self.table).delete(wtxn, &self.key).map(|_| ())
    }
}

/// The boxed form requests carry.
pub(crate) fn boxed(w: impl SideWrite + 'static) -> Box<dyn SideWrite> {
    Box::new(w)
}
