//! Durable consumers: named subscribers whose progress survives restarts.
//!
//! A consumer's checkpoint (the last position it has fully processed) lives in
//! the `checkpoints` database of the main environment and is written through
//! the group-commit writer, so it shares commits (and fsyncs) with appends.
//!
//! Keys in `checkpoints`:
//! - `name` → `[format 2][checkpoint u64 LE][updated_at µs u64 LE][checksum u64 LE]`
//!   (format 1, written before checksums, has no checksum and is still read)
//! - `name ++ 0x00 ++ position u64 BE` → `[event id, 16 bytes][checksum u64 LE]`
//!   (or the bare 16-byte id of format 1): the dedup set, the events past
//!   the checkpoint whose outside effect is already done.
//!
//! The checksum is xxh3 of the value's other bytes, seeded with xxh3 of the
//! key, so a flipped byte or a value under another key is caught.
//!
//! Names cannot hold control characters, so the `0x00` separator never
//! collides with a name, and a consumer's dedup entries sort right after it.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::lmdb::env::Table;
use crate::lmdb::keys::{be_u64, le_u64};
use crate::metrics;
use crate::store::Store;
use crate::store::{Delete, Put, SideWrite, boxed};
use crate::subscribe::{SubscribeFrom, Subscription};
use crate::vocab::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent};
use crate::vocab::{Error, Result};
use crate::vocab::{Filter, validate_name};

const VALUE_FORMAT: u8 = 2;
const LEGACY_FORMAT: u8 = 1;
const LEGACY_LEN: usize = 17;
const VALUE_LEN: usize = 25;
/// How often [`Store::wait_for_consumer`] reads the checkpoint on a store
/// opened read-only, where no commit wakes it.
const READ_ONLY_LOOK: std::time::Duration = std::time::Duration::from_millis(50);
pub(super) fn dedup_key(name: &str, position: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len().saturating_add(9));
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(&position.to_be_bytes());
    k
}

fn sum(key: &[u8], body: &[u8]) -> [u8; 8] {
    xxhash_rust::xxh3::xxh3_64_with_seed(body, xxhash_rust::xxh3::xxh3_64(key)).to_le_bytes()
}

pub(super) fn encode_checkpoint(name: &str, position: u64, updated_at: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(VALUE_LEN);
    v.push(VALUE_FORMAT);
    v.extend_from_slice(&position.to_le_bytes());
    v.extend_from_slice(&updated_at.to_le_bytes());
    let s = sum(name.as_bytes(), &v);
    v.extend_from_slice(&s);
    v
}

fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::CheckpointInvalid { consumer: name.to_string(), reason: reason.into() }
}

/// A checkpoint value: the position and when it was committed.
pub(crate) fn decode_checkpoint(name: &str, v: &[u8]) -> Result<(u64, u64)> {
    match (v.len(), v.first()) {
        (VALUE_LEN, Some(&VALUE_FORMAT)) => {
            if v[17..] != sum(name.as_bytes(), &v[..17]) {
                return Err(invalid(name, "checksum mismatch"));
            }
        }
        (LEGACY_LEN, Some(&LEGACY_FORMAT)) => {}
        (n, format) => return Err(invalid(name, format!("a value of {n} bytes, format {format:?}"))),
    }
    Ok((le_u64(&v[1..9]), le_u64(&v[9..17])))
}

fn encode_dedup(key: &[u8], id: Uuid) -> Vec<u8> {
    let mut v = id.as_bytes().to_vec();
    let s = sum(key, &v);
    v.extend_from_slice(&s);
    v
}

/// A dedup entry's event id.
pub(crate) fn decode_dedup(name: &str, key: &[u8], v: &[u8]) -> Result<Uuid> {
    let id = match v.len() {
        24 if v[16..] == sum(key, &v[..16]) => &v[..16],
        24 => return Err(invalid(name, "a dedup entry fails its checksum")),
        16 => v,
        n => return Err(invalid(name, format!("a dedup entry of {n} bytes"))),
    };
    Uuid::from_slice(id).map_err(|_| invalid(name, "a dedup entry is not an event id"))
}

/// What [`Store::consumers`] reports about one durable consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// The consumer's name.
    pub name: String,
    /// The last position it committed as processed.
    pub checkpoint: u64,
    /// The head of the log when this was read.
    pub head: u64,
    /// Positions between the checkpoint and the head (events of every kind,
    /// not only those the consumer's filter keeps).
    pub lag: u64,
    /// Events past the checkpoint already marked as processed (its dedup set).
    pub pending_dedup: u64,
    /// When the checkpoint was last committed (µs since the Unix epoch).
    pub updated_at: u64,
}

/// A named, durable consumer of the log. Made by [`Store::consumer`].
///
/// Processing guarantees, from weakest to strongest:
/// - **At least once**: [`subscribe`](Consumer::subscribe) resumes after the
///   committed checkpoint; [`ack`](Consumer::ack) records progress in memory
///   and [`commit`](Consumer::commit) writes it (batched with appends). A crash
///   replays what was acked but not committed.
/// - **Once per outside effect**: [`handle`](Consumer::handle) skips events
///   already marked, runs the effect, then marks the event id in the
///   consumer's persisted dedup set. A crash between effect and checkpoint
///   replays the event, and the mark makes the handler skip it. (A crash
///   between the effect and its mark still repeats it: make the outside
///   system idempotent on the event id to close that window.)
/// - **Exactly once into eventfold**: [`append_and_ack`](Consumer::append_and_ack)
///   appends the handler's events and moves the checkpoint in one commit.
///
/// Acks that are not committed are lost when the handle is dropped (the
/// events are then delivered again): commit before letting it go. Keep one
/// `Consumer` per name at a time.
#[derive(Debug)]
pub struct Consumer {
    store: Store,
    name: String,
    checkpoint: u64,
    acked: u64,
    dedup: BTreeMap<u64, Uuid>,
    dedup_ids: HashSet<Uuid>,
    commit_every: u64,
    acks_since_commit: u64,
    /// The name as a metrics label.
    label: metrics::Label,
}

impl Store {
    /// Opens the durable consumer `name`, loading its checkpoint and dedup set
    /// (a new consumer starts at checkpoint 0).
    pub fn consumer(&self, name: &str) -> Result<Consumer> {
        validate_name("consumer", name)?;
        let reader = self.read()?;
        let (txn, db) = reader.side_table(Table::Checkpoints);
        let checkpoint = match db.get(txn, name.as_bytes())? {
            Some(v) => decode_checkpoint(name, v)?.0,
            None => 0,
        };
        let head = self.head()?;
        if checkpoint > head {
            return Err(invalid(
                name,
                format!("its checkpoint is position {checkpoint}, the log's head is {head}"),
            ));
        }
        let mut dedup = BTreeMap::new();
        let lower = dedup_key(name, 0);
        let upper = dedup_key(name, u64::MAX);
        for item in db.range(txn, &(Bound::Included(&lower[..]), Bound::Included(&upper[..])))? {
            let (k, v) = item?;
            let id = decode_dedup(name, k, v)?;
            let position = be_u64(&k[k.len().saturating_sub(8)..]);
            dedup.insert(position, id);
        }
        let dedup_ids = dedup.values().copied().collect();
        let label = metrics::label(name);
        metrics::consumer_lag(&label, head.saturating_sub(checkpoint));
        Ok(Consumer {
            store: self.clone(),
            name: name.to_string(),
            checkpoint,
            acked: checkpoint,
            dedup,
            dedup_ids,
            commit_every: 0,
            acks_since_commit: 0,
            label,
        })
    }

    /// Removes consumer `name`'s checkpoint and dedup set in one commit, so
    /// that it starts over from position 1 the next time it is opened. For a
    /// checkpoint reported damaged or ahead of the log
    /// ([`Error::CheckpointInvalid`]); stop the consumer first.
    pub fn reset_consumer(&self, name: &str) -> Result<()> {
        validate_name("consumer", name)?;
        let mut writes = vec![boxed(Delete { table: Table::Checkpoints, key: name.as_bytes().to_vec() })];
        {
            let reader = self.read()?;
            let (txn, db) = reader.side_table(Table::Checkpoints);
            let lower = dedup_key(name, 0);
            let upper = dedup_key(name, u64::MAX);
            let range = (Bound::Included(&lower[..]), Bound::Included(&upper[..]));
            for item in db.range(txn, &range)? {
                let (k, _) = item?;
                writes.push(boxed(Delete { table: Table::Checkpoints, key: k.to_vec() }));
            }
        }
        self.send(Vec::new(), writes)?.wait_many()?;
        Ok(())
    }

    /// Blocks until durable consumer `name` has committed a checkpoint at or
    /// past `position`: for a thread that appended and wants to know that
    /// the consumer (driven elsewhere: another thread, task or process on a
    /// writable store's behalf) has handled the event there.
    ///
    /// Checkpoints are committed through the writer, and every commit wakes
    /// this wait, which then reads the checkpoint again; it parks the thread
    /// in between. On a store opened read-only (another process writes, so
    /// no commit wakes this one) it reads the checkpoint every 50 ms.
    ///
    /// Errors: [`Error::PositionPastHead`] at once for a position the log
    /// has not reached; [`Error::Closed`] if the store closes meanwhile;
    /// [`Error::Timeout`] after `timeout` (the consumer is not affected).
    /// A consumer that has never committed is at checkpoint 0.
    pub fn wait_for_consumer(&self, name: &str, position: u64, timeout: std::time::Duration) -> Result<()> {
        validate_name("consumer", name)?;
        // Registered before the first read, so no commit goes unnoticed.
        let wake = self.follow_commits();
        self.refuse_past_head(position)?;
        let started = std::time::Instant::now();
        loop {
            if self.committed_checkpoint(name)? >= position {
                return Ok(());
            }
            let Some(left) = timeout.checked_sub(started.elapsed()).filter(|l| !l.is_zero()) else {
                return Err(Error::Timeout { what: format!("consumer {name:?}"), position, waited: timeout });
            };
            let left = if self.is_read_only() { left.min(READ_ONLY_LOOK) } else { left };
            match wake.recv_timeout(left) {
                Ok(_) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Err(Error::Closed),
            }
        }
    }

    /// [`wait_for_consumer`](Self::wait_for_consumer) as a future (feature
    /// `async`), woken by the commit notifier: it parks no thread. It takes
    /// no timeout (the library has no timer): wrap it in your runtime's,
    /// e.g. `tokio::time::timeout(d, store.wait_for_consumer_async("mailer", p))`.
    /// On a store opened read-only it ends at once with [`Error::ReadOnly`]
    /// (no commit would wake it; use the blocking form there).
    #[cfg(feature = "async")]
    pub fn wait_for_consumer_async(
        &self,
        name: &str,
        position: u64,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let store = self.clone();
        let name = name.to_string();
        let wake = self.follow_commits();
        async move {
            validate_name("consumer", &name)?;
            if store.is_read_only() {
                return Err(Error::ReadOnly);
            }
            store.refuse_past_head(position)?;
            std::future::poll_fn(|cx| {
                use std::task::Poll;
                loop {
                    match store.committed_checkpoint(&name) {
                        Ok(at) if at >= position => return Poll::Ready(Ok(())),
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                    // The waker is kept before the channel is looked at, and
                    // the checkpoint is read again after every wake-up.
                    match wake.poll_wake(cx) {
                        Poll::Ready(Some(_)) => {}
                        Poll::Ready(None) => return Poll::Ready(Err(Error::Closed)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            })
            .await
        }
    }

    /// Refuses a wait for a position the log has not reached.
    fn refuse_past_head(&self, position: u64) -> Result<()> {
        let head = self.head()?;
        if position > head {
            return Err(Error::PositionPastHead { position, head });
        }
        Ok(())
    }

    /// Consumer `name`'s committed checkpoint (0 when it has none).
    pub(super) fn committed_checkpoint(&self, name: &str) -> Result<u64> {
        let reader = self.read()?;
        let (txn, db) = reader.side_table(Table::Checkpoints);
        Ok(match db.get(txn, name.as_bytes())? {
            Some(v) => decode_checkpoint(name, v)?.0,
            None => 0,
        })
    }

    /// Every durable consumer, with its checkpoint and lag.
    pub fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        let reader = self.read()?;
        let head = reader.head()?;
        let mut out: Vec<ConsumerInfo> = Vec::new();
        let (txn, db) = reader.side_table(Table::Checkpoints);
        for item in db.iter(txn)? {
            let (k, v) = item?;
            match k.iter().position(|b| *b == 0) {
                None => {
                    let name = String::from_utf8_lossy(k).into_owned();
                    let (checkpoint, updated_at) = decode_checkpoint(&name, v)?;
                    out.push(ConsumerInfo {
                        name,
                        checkpoint,
                        head,
                        lag: head.saturating_sub(checkpoint),
                        pending_dedup: 0,
                        updated_at,
                    });
                }
                // Dedup entries sort right after their consumer's own key.
                Some(i) => match out.last_mut().filter(|c| c.name.as_bytes() == &k[..i]) {
                    Some(last) => last.pending_dedup = last.pending_dedup.saturating_add(1),
                    // Marks made before the first checkpoint commit.
                    None => out.push(ConsumerInfo {
                        name: String::from_utf8_lossy(&k[..i]).into_owned(),
                        checkpoint: 0,
                        head,
                        lag: head,
                        pending_dedup: 1,
                        updated_at: 0,
                    }),
                },
            }
        }
        Ok(out)
    }
}

/// `verify` of the `checkpoints` database: every checkpoint and dedup entry
/// against its checksum, no checkpoint past the head, every dedup entry
/// naming the event at its position.
pub(crate) fn verify_checkpoints(reader: &crate::read::Reader, report: &mut crate::vocab::VerifyReport) {
    let Ok(head) = reader.head() else { return }; // the log walk reports why
    let mut walk = || -> Result<()> {
        let (txn, db) = reader.side_table(Table::Checkpoints);
        for item in db.iter(txn)? {
            let (k, v) = item?;
            report.checkpoints = report.checkpoints.saturating_add(1);
            let (name, dedup_position) = match k.iter().position(|b| *b == 0) {
                None => (String::from_utf8_lossy(k).into_owned(), None),
                Some(i) if k.len() == i.saturating_add(9) => {
                    (String::from_utf8_lossy(&k[..i]).into_owned(), Some(be_u64(&k[i.saturating_add(1)..])))
                }
                Some(_) => {
                    report.fault(
                        "checkpoints",
                        None,
                        None,
                        format!("malformed key {:?}", String::from_utf8_lossy(k)),
                    );
                    continue;
                }
            };
            let area = format!("checkpoints/{name}");
            match dedup_position {
                None => match decode_checkpoint(&name, v) {
                    Ok((checkpoint, _)) if checkpoint > head => report.fault(
                        &area,
                        Some(checkpoint),
                        None,
                        format!("the checkpoint is past the log's head {head}"),
                    ),
                    Ok(_) => {}
                    Err(e) => report.fault(&area, None, None, e.to_string()),
                },
                Some(position) => match decode_dedup(&name, k, v) {
                    Ok(id) => match reader.event(position) {
                        Ok(Some(e)) if e.event_id() == id => {}
                        // Scavenged since it was acknowledged.
                        Ok(None) if reader.is_removed(position).unwrap_or(false) => {}
                        Ok(_) => report.fault(
                            &area,
                            Some(position),
                            None,
                            format!("a dedup entry names event {id}, which the log does not hold there"),
                        ),
                        // A damaged record: the log walk reports it.
                        Err(_) => {}
                    },
                    Err(e) => report.fault(&area, Some(position), None, e.to_string()),
                },
            }
        }
        Ok(())
    };
    if let Err(e) = walk() {
        report.fault("checkpoints", None, None, format!("the walk stopped: {e}"));
    }
}

impl Consumer {
    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last committed position.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// The last acknowledged position (committed or not).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Commits automatically after every `n` acks (0, the default, means only
    /// on [`commit`](Consumer::commit)).
    pub fn commit_every(mut self, n: u64) -> Self {
        self.commit_every = n;
        self
    }

    /// Follows the log from just after the committed checkpoint, with only
    /// durable events ([`Subscription::durable_only`]): an outside effect is
    /// never done for an event a power cut could take back.
    pub fn subscribe(&self, filter: Filter) -> Result<Subscription> {
        Ok(self.store.subscribe(SubscribeFrom::AfterPosition(self.checkpoint), filter)?.durable_only())
    }

    /// Whether `event` is already processed: at or before the checkpoint, or
    /// in the dedup set.
    pub fn is_processed(&self, event: &RecordedEvent) -> bool {
        event.position <= self.checkpoint || self.dedup_ids.contains(&event.event_id)
    }

    /// Records that everything up to `position` is processed. Nothing is
    /// written until [`commit`](Consumer::commit) (or the
    /// [`commit_every`](Consumer::commit_every) threshold).
    ///
    /// A position past the head of the log is refused: a checkpoint must
    /// never claim events the log does not have.
    pub fn ack(&mut self, position: u64) -> Result<()> {
        if position > self.acked {
            let head = self.store.head()?;
            if position > head {
                return Err(invalid(
                    &self.name,
                    format!("position {position} is past the log's head {head}"),
                ));
            }
            self.acked = position;
            metrics::consumer_lag(&self.label, head.saturating_sub(self.checkpoint));
            self.acks_since_commit = self.acks_since_commit.saturating_add(1);
            if self.commit_every > 0 && self.acks_since_commit >= self.commit_every {
                self.commit()?;
            }
        }
        Ok(())
    }

    /// Writes the acknowledged position as the checkpoint, and drops the dedup
    /// entries it covers, in one commit of the writer.
    pub fn commit(&mut self) -> Result<()> {
        if self.acked <= self.checkpoint {
            return Ok(());
        }
        let writes = self.checkpoint_writes(self.acked);
        self.store.send(Vec::new(), writes)?.wait_many()?;
        self.committed(self.acked);
        Ok(())
    }

    /// Persists that `event`'s outside effect is done (one commit of the
    /// writer), so a replay skips it even before the checkpoint passes it.
    pub fn mark_processed(&mut self, event: &RecordedEvent) -> Result<()> {
        if self.is_processed(event) {
            return Ok(());
        }
        let key = dedup_key(&self.name, event.position);
        let value = encode_dedup(&key, event.event_id);
        let write = boxed(Put { table: Table::Checkpoints, key, value });
        self.store.send(Vec::new(), vec![write])?.wait_many()?;
        self.dedup.insert(event.position, event.event_id);
        self.dedup_ids.insert(event.event_id);
        Ok(())
    }

    /// Runs `effect` for `event` unless it is already processed, then marks it
    /// processed and acks it. Returns whether the effect ran. An error from
    /// `effect` is returned as is, and the event stays unprocessed.
    pub fn handle<F>(&mut self, event: &RecordedEvent, effect: F) -> Result<bool>
    where
        F: FnOnce(&RecordedEvent) -> Result<()>,
    {
        let span = tracing::debug_span!(
            "handle",
            consumer = self.name.as_str(),
            stream = event.stream_id.as_str(),
            position = event.position,
            skipped = tracing::field::Empty,
        );
        let _entered = span.enter();
        let skip = self.is_processed(event);
        span.record("skipped", skip);
        if skip {
            self.ack(event.position)?;
            return Ok(false);
        }
        effect(event)?;
        self.mark_processed(event)?;
        self.ack(event.position)?;
        Ok(true)
    }

    /// Appends events and moves the checkpoint to `position` in one atomic
    /// commit: either both happen or neither. This is exactly-once processing
    /// for handlers whose effect is to write events (sagas, process managers).
    ///
    /// A stream whose expected version does not match rejects the whole call.
    pub fn append_and_ack<S: AsRef<str>>(
        &mut self,
        position: u64,
        appends: impl IntoIterator<Item = (S, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<AppendResult>> {
        let prepared = self.store.prepare_many(appends)?;
        let target = position.max(self.checkpoint);
        let writes = self.checkpoint_writes(target);
        let results = self.store.send(prepared, writes)?.wait_many()?;
        self.acked = self.acked.max(target);
        self.committed(target);
        Ok(results)
    }

    fn checkpoint_writes(&self, position: u64) -> Vec<Box<dyn SideWrite>> {
        let now = crate::vocab::now_micros();
        let mut writes = vec![boxed(Put {
            table: Table::Checkpoints,
            key: self.name.as_bytes().to_vec(),
            value: encode_checkpoint(&self.name, position, now),
        })];
        // The checkpoint covers these now: the set stays bounded by the
        // distance between the checkpoint and the newest processed event.
        for p in self.dedup.range(..=position).map(|(p, _)| *p) {
            writes.push(boxed(Delete { table: Table::Checkpoints, key: dedup_key(&self.name, p) }));
        }
        writes
    }

    fn committed(&mut self, position: u64) {
        self.checkpoint = self.checkpoint.max(position);
        if let Ok(head) = self.store.head() {
            metrics::consumer_lag(&self.label, head.saturating_sub(self.checkpoint));
        }
        let keep = self.dedup.split_off(&(position.saturating_add(1)));
        for id in self.dedup.values() {
            self.dedup_ids.remove(id);
        }
        self.dedup = keep;
        self.acks_since_commit = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("consumer", "mailer").is_ok());
        assert!(validate_name("consumer", "").is_err());
        assert!(validate_name("consumer", "a\0b").is_err());
        let err = validate_name("consumer", &"x".repeat(201)).unwrap_err();
        assert!(err.to_string().contains("limit is 200"), "{err}");
    }

    #[test]
    fn checkpoint_value_round_trips_and_rejects_garbage() {
        assert_eq!(decode_checkpoint("c", &encode_checkpoint("c", 42, 7)).unwrap(), (42, 7));
        assert!(decode_checkpoint("c", &[1, 2, 3]).is_err());
        // The format before checksums still reads.
        let mut legacy = vec![1u8];
        legacy.extend_from_slice(&42u64.to_le_bytes());
        legacy.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(decode_checkpoint("c", &legacy).unwrap(), (42, 7));
    }

    /// Guards consumer checkpoints against a flipped byte: without a
    /// checksum, a checkpoint changed from 2025 to 1025 was trusted and the
    /// events between were handled twice.
    #[test]
    fn a_flipped_byte_in_a_checkpoint_or_dedup_entry_is_caught() {
        let value = encode_checkpoint("mailer", 2025, 7);
        for i in 0..value.len() {
            let mut damaged = value.clone();
            damaged[i] ^= 0x10;
            assert!(decode_checkpoint("mailer", &damaged).is_err(), "byte {i}");
        }
        assert!(decode_checkpoint("other", &value).is_err(), "a value under another name");
        let key = dedup_key("mailer", 9);
        let id = Uuid::now_v7();
        let entry = encode_dedup(&key, id);
        assert_eq!(decode_dedup("mailer", &key, &entry).unwrap(), id);
        for i in 0..entry.len() {
            let mut damaged = entry.clone();
            damaged[i] ^= 0x10;
            assert!(decode_dedup("mailer", &key, &damaged).is_err(), "dedup byte {i}");
        }
    }

    #[test]
    fn dedup_keys_sort_after_their_consumer_and_by_position() {
        assert!(b"mail".as_slice() < dedup_key("mail", 0).as_slice());
        assert!(dedup_key("mail", 255) < dedup_key("mail", 256));
        assert!(dedup_key("mail", u64::MAX).as_slice() < b"mail-2".as_slice());
    }
}
