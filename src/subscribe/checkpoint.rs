//! A durable consumer's checkpoint moved together with appends, for a
//! process that consumes the log and writes events of its own: its effect
//! (the events) and its tracking record (the checkpoint) commit in one
//! transaction, so processing is exactly once, and a checkpoint that would
//! not move forward refuses the whole write.
//!
//! The checkpoint is the one [`Consumer`](crate::Consumer) keeps (the
//! `checkpoints` database, written as a side write in the writer's batch),
//! so `Store::consumers`, `verify` and `Store::wait_for_consumer` see it.
//!
//! The committed checkpoint is compared with the new one under a lock per
//! consumer name, held until the commit is answered: two such writes for
//! one name cannot both pass the comparison. Only this process writes to
//! the store (one writer per directory), so the comparison is exact as long
//! as the name is written only through these calls; a [`Consumer`]
//! handle of the same name writes without the lock (keep one writer per
//! name, as for consumers).
//!
//! [`Consumer`]: crate::Consumer

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use super::consumer::{dedup_key, encode_checkpoint};
use crate::lmdb::env::Table;
use crate::store::{Delete, Put, SideWrite, Store, boxed};
use crate::vocab::{AppendResult, Error, ExpectedVersion, NewEvent, Result, validate_name};

/// The locks of the consumer names being written through this module, one
/// per name while a write of it is in flight.
#[derive(Default)]
struct NameLocks(Mutex<HashMap<String, Arc<Mutex<()>>>>);

impl NameLocks {
    fn get(&self, name: &str) -> Arc<Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string()).or_default().clone()
    }

    /// Forgets `name`'s lock when no other write holds or waits for it, so
    /// the table does not grow with every name a client ever sent.
    fn release(&self, name: &str, lock: Arc<Mutex<()>>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Clones are handed out only under the table's lock: two holders
        // (the table and `lock`) mean nobody else has one.
        if Arc::strong_count(&lock) == 2 {
            map.remove(name);
        }
    }
}

/// Whether a checkpoint that does not move forward refuses the write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Advance {
    /// It does: [`Error::CheckpointNotAdvanced`].
    Required,
    /// It does not: nothing is written and the committed checkpoint stays.
    IfAhead,
}

impl Store {
    /// Appends to several streams (as [`append_many`](Store::append_many):
    /// each stream's expected version checked, all or nothing) and moves
    /// durable consumer `consumer`'s checkpoint to `position`, in one
    /// commit. `appends` may be empty, to move the checkpoint alone.
    ///
    /// Refused, with nothing written: a `position` at or before the
    /// committed checkpoint ([`Error::CheckpointNotAdvanced`]: the events up
    /// to it were processed already), a `position` past the head of the log
    /// ([`Error::CheckpointPastHead`]), and every refusal of
    /// `append_many`.
    ///
    /// ```
    /// use eventfold::{Error, ExpectedVersion, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let placed = store.append("order-1", ExpectedVersion::NoStream, [NewEvent::json("Placed", &1)])?;
    /// let reserve = NewEvent::json("Reserved", &1);
    /// store.append_with_checkpoint("stock", placed.last_position, [("stock-1", ExpectedVersion::Any, vec![reserve])])?;
    /// assert_eq!(store.consumer_checkpoint("stock")?, placed.last_position);
    /// // The same event again: refused, nothing written.
    /// let again = NewEvent::json("Reserved", &1);
    /// let err = store
    ///     .append_with_checkpoint("stock", placed.last_position, [("stock-1", ExpectedVersion::Any, vec![again])])
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::CheckpointNotAdvanced { checkpoint: 1, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_with_checkpoint<S: AsRef<str>>(
        &self,
        consumer: &str,
        position: u64,
        appends: impl IntoIterator<Item = (S, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<AppendResult>> {
        self.checkpointed(consumer, position, appends, Advance::Required, None).map(|(results, _)| results)
    }

    /// [`append_with_checkpoint`](Store::append_with_checkpoint) with a
    /// DCB condition checked in the same commit.
    #[cfg(feature = "protocol")]
    pub(crate) fn append_with_checkpoint_if<S: AsRef<str>>(
        &self,
        consumer: &str,
        position: u64,
        appends: impl IntoIterator<Item = (S, ExpectedVersion, Vec<NewEvent>)>,
        condition: Option<crate::vocab::AppendCondition>,
    ) -> Result<Vec<AppendResult>> {
        self.checkpointed(consumer, position, appends, Advance::Required, condition)
            .map(|(results, _)| results)
    }

    /// Moves durable consumer `consumer`'s checkpoint forward to `position`
    /// and returns the checkpoint now committed: `position`, or the
    /// committed one when that is already at or past it (then nothing is
    /// written, so an acknowledgement sent twice is harmless). A position
    /// past the head of the log is [`Error::CheckpointPastHead`].
    pub fn advance_checkpoint(&self, consumer: &str, position: u64) -> Result<u64> {
        let no_appends: [(&str, ExpectedVersion, Vec<NewEvent>); 0] = [];
        self.checkpointed(consumer, position, no_appends, Advance::IfAhead, None).map(|(_, at)| at)
    }

    /// Durable consumer `consumer`'s committed checkpoint: the last position
    /// it has processed, 0 when it has none.
    pub fn consumer_checkpoint(&self, consumer: &str) -> Result<u64> {
        validate_name("consumer", consumer)?;
        self.committed_checkpoint(consumer)
    }

    fn checkpointed<S: AsRef<str>>(
        &self,
        name: &str,
        position: u64,
        appends: impl IntoIterator<Item = (S, ExpectedVersion, Vec<NewEvent>)>,
        advance: Advance,
        condition: Option<crate::vocab::AppendCondition>,
    ) -> Result<(Vec<AppendResult>, u64)> {
        validate_name("consumer", name)?;
        // Validated and encoded before the name is locked.
        let prepared = self.prepare_many(appends)?;
        let locks = self.extension(|| Ok(Some(NameLocks::default())))?.ok_or_else(|| Error::Internal {
            reason: "the store kept no table of checkpoint locks".to_string(),
        })?;
        let lock = locks.get(name);
        let outcome = {
            let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
            self.checkpoint_locked(name, position, prepared, advance, condition)
        };
        locks.release(name, lock);
        outcome
    }

    /// The comparison and the write, with the name's lock held.
    fn checkpoint_locked(
        &self,
        name: &str,
        position: u64,
        prepared: Vec<crate::store::StreamAppend>,
        advance: Advance,
        condition: Option<crate::vocab::AppendCondition>,
    ) -> Result<(Vec<AppendResult>, u64)> {
        let committed = self.committed_checkpoint(name)?;
        if position <= committed {
            return match advance {
                Advance::Required => Err(Error::CheckpointNotAdvanced {
                    consumer: name.to_string(),
                    checkpoint: committed,
                    position,
                }),
                Advance::IfAhead => Ok((Vec::new(), committed)),
            };
        }
        // The head only grows, so a position within it now is within it at
        // the commit.
        let head = self.head()?;
        if position > head {
            return Err(Error::CheckpointPastHead { consumer: name.to_string(), position, head });
        }
        let writes = self.checkpoint_writes_for(name, position)?;
        let results = self.send_request(prepared, writes, condition)?.wait_many()?;
        Ok((results, position))
    }

    /// The checkpoint's value, and the removal of the dedup entries it now
    /// covers (as `Consumer::commit` does), so the set stays bounded.
    fn checkpoint_writes_for(&self, name: &str, position: u64) -> Result<Vec<Box<dyn SideWrite>>> {
        let key = name.as_bytes().to_vec();
        let value = encode_checkpoint(name, position, crate::vocab::now_micros());
        let mut writes = vec![boxed(Put { table: Table::Checkpoints, key, value })];
        let reader = self.read()?;
        let (txn, db) = reader.side_table(Table::Checkpoints);
        let lower = dedup_key(name, 0);
        let upper = dedup_key(name, position);
        for item in db.range(txn, &(Bound::Included(&lower[..]), Bound::Included(&upper[..])))? {
            let (k, _) = item?;
            writes.push(boxed(Delete { table: Table::Checkpoints, key: k.to_vec() }));
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u64) -> NewEvent {
        NewEvent::json("E", &n)
    }

    #[test]
    fn a_checkpoint_that_does_not_advance_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("in-1", ExpectedVersion::Any, [ev(1), ev(2)]).unwrap();
        let r = store
            .append_with_checkpoint("p", 2, [("out-1", ExpectedVersion::NoStream, vec![ev(3)])])
            .unwrap();
        assert_eq!(r[0].first_position, 3);
        assert_eq!(store.consumer_checkpoint("p").unwrap(), 2);
        for position in [1, 2] {
            let err =
                store.append_with_checkpoint("p", position, [("out-2", ExpectedVersion::Any, vec![ev(4)])]);
            assert!(
                matches!(err, Err(Error::CheckpointNotAdvanced { checkpoint: 2, position: p, .. }) if p == position),
                "{err:?}"
            );
        }
        let err = store.append_with_checkpoint("p", 9, [("out-2", ExpectedVersion::Any, vec![ev(4)])]);
        assert!(matches!(err, Err(Error::CheckpointPastHead { position: 9, head: 3, .. })), "{err:?}");
        // A version conflict moves no checkpoint either.
        let err = store.append_with_checkpoint("p", 3, [("out-1", ExpectedVersion::NoStream, vec![ev(5)])]);
        assert!(matches!(err, Err(Error::WrongExpectedVersion { .. })), "{err:?}");
        assert_eq!((store.head().unwrap(), store.consumer_checkpoint("p").unwrap()), (3, 2));
        // The checkpoint alone, and acknowledgements that never move it back.
        let none: [(&str, ExpectedVersion, Vec<NewEvent>); 0] = [];
        store.append_with_checkpoint("p", 3, none).unwrap();
        assert_eq!(store.advance_checkpoint("p", 1).unwrap(), 3);
        assert_eq!(store.consumer_checkpoint("p").unwrap(), 3);
        assert_eq!(store.consumer("p").unwrap().checkpoint(), 3, "the consumer's own checkpoint");
    }

    /// Many threads racing to move one name's checkpoint to the same
    /// position: exactly one of them writes.
    #[test]
    fn racing_writes_of_one_checkpoint_commit_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("in-1", ExpectedVersion::Any, [ev(1)]).unwrap();
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.append_with_checkpoint(
                        "p",
                        1,
                        [(format!("out-{i}"), ExpectedVersion::Any, vec![ev(i)])],
                    )
                })
            })
            .collect();
        let ok = threads.into_iter().map(|t| t.join().unwrap()).filter(Result::is_ok).count();
        assert_eq!((ok, store.head().unwrap()), (1, 2));
    }
}
