//! lmdb-naive: the obvious event store on the same stack as eventfold (heed,
//! one write transaction per request, one stream-index entry per event,
//! rkyv records validated on read). The baseline for what the engine adds.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use heed::byteorder::BE;
use heed::types::{Bytes, Str, U64};
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, RwTxn};
use rkyv::rancor;

use crate::util::{self, Lat, R, Sizes, err, lat, payload, rate, share};

/// One stored event.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Rec {
    /// The stream.
    pub stream_id: String,
    /// Version in the stream (1-based).
    pub version: u64,
    /// Event id (UUID bytes).
    pub event_id: [u8; 16],
    /// Event type.
    pub event_type: String,
    /// Commit time, µs since the epoch.
    pub recorded_at: u64,
    /// JSON payload.
    pub payload: Vec<u8>,
}

/// An open naive store.
pub struct Naive {
    env: Env,
    events: Database<'static, U64<BE>, Bytes>,
    index: Database<'static, Bytes, U64<BE>>,
    heads: Database<'static, Str, U64<BE>>,
    docs: Database<'static, Str, Bytes>,
}

impl Naive {
    /// Opens (creating) the store in `dir`, durable commits.
    pub fn open(dir: &Path) -> R<Naive> {
        // SAFETY: the directory is this harness's own temporary directory,
        // opened once per process, and nothing truncates the file.
        let env = unsafe { EnvOpenOptions::new().map_size(64 << 30).max_dbs(8).max_readers(256).open(dir) }
            .map_err(err("lmdb open"))?;
        let w = env.write_txn().map_err(err("lmdb txn"))?;
        let dbs = env
            .create_databases_and_commit(w, |o, w| -> Result<_, heed::Error> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    o.create_database::<U64<BE>, Bytes>(w, Some("events"))?,
                    o.create_database::<Bytes, U64<BE>>(w, Some("stream_index"))?,
                    o.create_database::<Str, U64<BE>>(w, Some("heads"))?,
                    o.create_database::<Str, Bytes>(w, Some("docs"))?,
                )))
            })
            .map_err(err("lmdb databases"))?;
        let CommitOrAbort::Commit((events, index, heads, docs)) = dbs else {
            return Err("creating the databases was aborted".into());
        };
        Ok(Naive { env, events, index, heads, docs })
    }

    /// Appends `events` (numbers) to `stream` inside `w`, checking `expected`.
    fn append_in(&self, w: &mut RwTxn<'_>, stream: &str, expected: Option<u64>, events: &[u64]) -> R<u64> {
        let head = self.heads.get(w, stream).map_err(err("lmdb get"))?.unwrap_or(0);
        if let Some(e) = expected
            && e != head
        {
            return Err(format!("expected version {e}, got {head}"));
        }
        let mut pos = self.events.last(w).map_err(err("lmdb last"))?.map(|(k, _)| k).unwrap_or(0);
        let now = util::now_micros();
        let mut version = head;
        let mut key = Vec::with_capacity(stream.len() + 9);
        for &n in events {
            pos += 1;
            version += 1;
            let rec = Rec {
                stream_id: stream.to_string(),
                version,
                event_id: *uuid::Uuid::now_v7().as_bytes(),
                event_type: util::event_type(n).to_string(),
                recorded_at: now,
                payload: payload(n),
            };
            let bytes = rkyv::to_bytes::<rancor::Error>(&rec).map_err(err("rkyv"))?;
            self.events.put(w, &pos, &bytes).map_err(err("lmdb put"))?;
            key.clear();
            key.extend_from_slice(stream.as_bytes());
            key.push(0);
            key.extend_from_slice(&version.to_be_bytes());
            self.index.put(w, &key, &pos).map_err(err("lmdb put"))?;
        }
        self.heads.put(w, stream, &version).map_err(err("lmdb put"))?;
        Ok(version)
    }

    /// One request = one durable write transaction.
    pub fn append(&self, stream: &str, expected: Option<u64>, events: &[u64]) -> R<u64> {
        let mut w = self.env.write_txn().map_err(err("lmdb txn"))?;
        let v = self.append_in(&mut w, stream, expected, events)?;
        w.commit().map_err(err("lmdb commit"))?;
        Ok(v)
    }
}

/// Validates a stored record and calls `f` with the archived view.
fn with_archived<T>(bytes: &[u8], f: impl FnOnce(&ArchivedRec) -> T) -> R<T> {
    if (bytes.as_ptr() as usize).is_multiple_of(16) {
        let a = rkyv::access::<ArchivedRec, rancor::Error>(bytes).map_err(err("rkyv check"))?;
        Ok(f(a))
    } else {
        let mut v = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        let a = rkyv::access::<ArchivedRec, rancor::Error>(&v).map_err(err("rkyv check"))?;
        Ok(f(a))
    }
}

/// W1: producers each own streams; 100-event requests.
pub fn w1(s: &Sizes) -> R<f64> {
    let dir = util::tempdir()?;
    let store = Naive::open(dir.path())?;
    let requests = s.w1_events / s.w1_batch;
    let t = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.w1_threads)
            .map(|p| {
                let store = &store;
                scope.spawn(move || -> R<()> {
                    let mine: Vec<u64> = (0..s.w1_streams).filter(|k| k % s.w1_threads == p).collect();
                    let mut versions = vec![0u64; mine.len()];
                    for r in 0..share(requests, s.w1_threads, p) {
                        let i = (r as usize) % mine.len();
                        let events: Vec<u64> = (r * s.w1_batch..(r + 1) * s.w1_batch).collect();
                        versions[i] =
                            store.append(&format!("account-{}", mine[i]), Some(versions[i]), &events)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| "producer panicked".to_string())?)
    })?;
    Ok(rate(s.w1_events, t.elapsed()))
}

/// W2: single-event appends with exact versions from many threads.
pub fn w2(s: &Sizes) -> R<Lat> {
    let dir = util::tempdir()?;
    let store = Naive::open(dir.path())?;
    let t = Instant::now();
    let lats = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.w2_threads)
            .map(|p| {
                let store = &store;
                scope.spawn(move || -> R<Vec<std::time::Duration>> {
                    let mine: Vec<u64> = (0..s.w2_streams).filter(|k| k % s.w2_threads == p).collect();
                    let mut versions = vec![0u64; mine.len()];
                    let n = share(s.w2_events, s.w2_threads, p);
                    let mut lats = Vec::with_capacity(n as usize);
                    for r in 0..n {
                        let i = (r as usize) % mine.len();
                        let t0 = Instant::now();
                        versions[i] =
                            store.append(&format!("account-{}", mine[i]), Some(versions[i]), &[r])?;
                        lats.push(t0.elapsed());
                    }
                    Ok(lats)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| "appender panicked".to_string())??);
        }
        Ok::<_, String>(all)
    })?;
    Ok(lat(s.w2_events, t.elapsed(), lats))
}

/// W3: one client, one-event appends in a row.
pub fn w3(s: &Sizes) -> R<Lat> {
    let dir = util::tempdir()?;
    let store = Naive::open(dir.path())?;
    let mut lats = Vec::new();
    let t = Instant::now();
    for v in 0..s.w3_events {
        let t0 = Instant::now();
        store.append("account-1", Some(v), &[v])?;
        lats.push(t0.elapsed());
    }
    Ok(lat(s.w3_events, t.elapsed(), lats))
}

/// W4: full load (owned records, JSON-decoded payloads) of the aggregate, ms.
pub fn w4(s: &Sizes, runs: usize) -> R<Vec<f64>> {
    let dir = util::tempdir()?;
    let store = Naive::open(dir.path())?;
    let ratio = (s.w4_others / s.w4_aggregate.max(1)).max(1);
    let mut k = 0;
    while k < s.w4_aggregate {
        let mut w = store.env.write_txn().map_err(err("lmdb txn"))?;
        for k in k..(k + 500).min(s.w4_aggregate) {
            store.append_in(&mut w, "account-w4", None, &[k])?;
            let others: Vec<u64> = (k * ratio..(k + 1) * ratio).collect();
            store.append_in(&mut w, &format!("other-{}", k % 1000), None, &others)?;
        }
        w.commit().map_err(err("lmdb commit"))?;
        k += 500;
    }
    let mut out = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let r = store.env.read_txn().map_err(err("lmdb txn"))?;
        let mut from = b"account-w4".to_vec();
        from.push(0);
        let (mut balance, mut ops) = (0i64, 0u64);
        for item in store.index.prefix_iter(&r, &from).map_err(err("lmdb iter"))? {
            let (_, pos) = item.map_err(err("lmdb iter"))?;
            let bytes = store.events.get(&r, &pos).map_err(err("lmdb get"))?.ok_or("index points nowhere")?;
            let rec: Rec =
                with_archived(bytes, rkyv::deserialize::<Rec, rancor::Error>)?.map_err(err("rkyv"))?;
            let p: util::Payload = serde_json::from_slice(&rec.payload).map_err(err("json"))?;
            if rec.event_type == "Withdrawn" {
                balance -= p.amount as i64;
            } else {
                balance += p.amount as i64;
            }
            ops += 1;
        }
        out.push(t.elapsed().as_secs_f64() * 1e3);
        if ops != s.w4_aggregate {
            return Err(format!("loaded {ops} events of {}", s.w4_aggregate));
        }
        black_box(balance);
    }
    Ok(out)
}

/// W5: validated zero-copy scan and owned scan, events/s; then W6.
pub fn w5_w6(s: &Sizes, runs: usize) -> R<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let dir = util::tempdir()?;
    let store = Naive::open(dir.path())?;
    let mut k = 0;
    while k < s.w5_events {
        let mut w = store.env.write_txn().map_err(err("lmdb txn"))?;
        let end = (k + 10_000).min(s.w5_events);
        while k < end {
            let m = (end - k).min(100);
            let events: Vec<u64> = (k..k + m).collect();
            store.append_in(&mut w, &format!("account-{}", (k / 100) % 1000), None, &events)?;
            k += m;
        }
        w.commit().map_err(err("lmdb commit"))?;
    }
    let (mut zc, mut owned, mut proj) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let r = store.env.read_txn().map_err(err("lmdb txn"))?;
        let t = Instant::now();
        let (mut n, mut acc) = (0u64, 0u64);
        for item in store.events.iter(&r).map_err(err("lmdb iter"))? {
            let (pos, bytes) = item.map_err(err("lmdb iter"))?;
            acc = acc.wrapping_add(with_archived(bytes, |a| {
                pos.wrapping_add(a.version.to_native())
                    .wrapping_add(a.recorded_at.to_native())
                    .wrapping_add(a.stream_id.len() as u64)
                    .wrapping_add(a.event_type.len() as u64)
                    .wrapping_add(a.payload.len() as u64)
                    .wrapping_add(u64::from(a.event_id[0]))
            })?);
            n += 1;
        }
        black_box(acc);
        zc.push(rate(n, t.elapsed()));
        let t = Instant::now();
        let mut n = 0u64;
        for item in store.events.iter(&r).map_err(err("lmdb iter"))? {
            let (_, bytes) = item.map_err(err("lmdb iter"))?;
            let rec: Rec =
                with_archived(bytes, rkyv::deserialize::<Rec, rancor::Error>)?.map_err(err("rkyv"))?;
            black_box(&rec);
            n += 1;
        }
        owned.push(rate(n, t.elapsed()));
        drop(r);
        proj.push(w6(&store, s.w5_events)?);
    }
    Ok((zc, owned, proj))
}

/// W6: one JSON document per stream, updated by every event; batches of
/// 1,000 events per durable write transaction.
fn w6(store: &Naive, events: u64) -> R<f64> {
    let docs = store.docs;
    let mut w = store.env.write_txn().map_err(err("lmdb txn"))?;
    docs.clear(&mut w).map_err(err("lmdb clear"))?;
    w.commit().map_err(err("lmdb commit"))?;
    let t = Instant::now();
    let mut next = 1u64;
    loop {
        let mut w = store.env.write_txn().map_err(err("lmdb txn"))?;
        let batch: Vec<(u64, Rec)> = store
            .events
            .range(&w, &(next..next + 1_000))
            .map_err(err("lmdb iter"))?
            .map(|item| {
                let (pos, bytes) = item.map_err(err("lmdb iter"))?;
                let rec =
                    with_archived(bytes, rkyv::deserialize::<Rec, rancor::Error>)?.map_err(err("rkyv"))?;
                Ok((pos, rec))
            })
            .collect::<R<_>>()?;
        let Some(last) = batch.last().map(|(p, _)| *p) else { break };
        for (_, rec) in batch {
            let p: util::Payload = serde_json::from_slice(&rec.payload).map_err(err("json"))?;
            let mut doc: crate::ef::Doc = match docs.get(&w, &rec.stream_id).map_err(err("lmdb get"))? {
                Some(b) => serde_json::from_slice(b).map_err(err("json"))?,
                None => crate::ef::Doc::default(),
            };
            doc.count += 1;
            doc.total += p.amount;
            let bytes = serde_json::to_vec(&doc).map_err(err("json"))?;
            docs.put(&mut w, &rec.stream_id, &bytes).map_err(err("lmdb put"))?;
        }
        w.commit().map_err(err("lmdb commit"))?;
        next = last + 1;
    }
    Ok(rate(events, t.elapsed()))
}
