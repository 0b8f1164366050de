//! SQLite (bundled): WAL, `synchronous=FULL`, one table, the expected
//! version checked inside each write transaction.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::dcb::{self, Enrolment, Outcome, Tally, Verdict};
use crate::util::{self, Lat, R, Sizes, err, lat, payload, rate, share};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events(
    position INTEGER PRIMARY KEY,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    payload BLOB NOT NULL,
    UNIQUE(stream_id, version));
CREATE TABLE IF NOT EXISTS docs(key TEXT PRIMARY KEY, doc BLOB NOT NULL);";

/// A connection to the database in `dir`, WAL, synchronous=FULL.
pub fn connect(dir: &Path) -> R<Connection> {
    let c = Connection::open(dir.join("events.db")).map_err(err("sqlite open"))?;
    c.busy_timeout(Duration::from_secs(120)).map_err(err("sqlite busy_timeout"))?;
    c.pragma_update(None, "journal_mode", "WAL").map_err(err("sqlite WAL"))?;
    c.pragma_update(None, "synchronous", "FULL").map_err(err("sqlite synchronous"))?;
    c.execute_batch(SCHEMA).map_err(err("sqlite schema"))?;
    Ok(c)
}

/// Appends events (numbers) to `stream` in one transaction, checking the
/// expected version inside it.
pub fn append(c: &mut Connection, stream: &str, expected: Option<u64>, events: &[u64]) -> R<u64> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("sqlite begin"))?;
    let head: u64 = tx
        .prepare_cached("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?1")
        .and_then(|mut s| s.query_row([stream], |r| r.get::<_, i64>(0)))
        .map_err(err("sqlite head"))? as u64;
    if let Some(e) = expected
        && e != head
    {
        return Err(format!("expected version {e}, got {head}"));
    }
    let now = util::now_micros() as i64;
    let mut version = head;
    {
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO events(stream_id, version, event_id, event_type, recorded_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(err("sqlite prepare"))?;
        for &n in events {
            version += 1;
            ins.execute(params![
                stream,
                version as i64,
                &uuid::Uuid::now_v7().as_bytes()[..],
                util::event_type(n),
                now,
                payload(n)
            ])
            .map_err(err("sqlite insert"))?;
        }
    }
    tx.commit().map_err(err("sqlite commit"))?;
    Ok(version)
}

/// W1: producers each own streams and a connection; 100-event requests.
pub fn w1(s: &Sizes) -> R<f64> {
    let dir = util::tempdir()?;
    drop(connect(dir.path())?);
    let requests = s.w1_events / s.w1_batch;
    let t = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.w1_threads)
            .map(|p| {
                let dir = dir.path();
                scope.spawn(move || -> R<()> {
                    let mut c = connect(dir)?;
                    let mine: Vec<u64> = (0..s.w1_streams).filter(|k| k % s.w1_threads == p).collect();
                    let mut versions = vec![0u64; mine.len()];
                    for r in 0..share(requests, s.w1_threads, p) {
                        let i = (r as usize) % mine.len();
                        let events: Vec<u64> = (r * s.w1_batch..(r + 1) * s.w1_batch).collect();
                        versions[i] =
                            append(&mut c, &format!("account-{}", mine[i]), Some(versions[i]), &events)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| "producer panicked".to_string())?)
    })?;
    Ok(rate(s.w1_events, t.elapsed()))
}

/// W2: single-event appends with exact versions, one connection per thread.
pub fn w2(s: &Sizes) -> R<Lat> {
    let dir = util::tempdir()?;
    drop(connect(dir.path())?);
    let t = Instant::now();
    let lats = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.w2_threads)
            .map(|p| {
                let dir = dir.path();
                scope.spawn(move || -> R<Vec<Duration>> {
                    let mut c = connect(dir)?;
                    let mine: Vec<u64> = (0..s.w2_streams).filter(|k| k % s.w2_threads == p).collect();
                    let mut versions = vec![0u64; mine.len()];
                    let n = share(s.w2_events, s.w2_threads, p);
                    let mut lats = Vec::with_capacity(n as usize);
                    for r in 0..n {
                        let i = (r as usize) % mine.len();
                        let t0 = Instant::now();
                        versions[i] =
                            append(&mut c, &format!("account-{}", mine[i]), Some(versions[i]), &[r])?;
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
    let mut c = connect(dir.path())?;
    let mut lats = Vec::new();
    let t = Instant::now();
    for v in 0..s.w3_events {
        let t0 = Instant::now();
        append(&mut c, "account-1", Some(v), &[v])?;
        lats.push(t0.elapsed());
    }
    Ok(lat(s.w3_events, t.elapsed(), lats))
}

/// An owned event row.
#[derive(Debug)]
#[allow(dead_code)] // read through black_box only
struct Row {
    position: i64,
    stream_id: String,
    version: i64,
    event_id: Vec<u8>,
    event_type: String,
    recorded_at: i64,
    payload: Vec<u8>,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        position: r.get(0)?,
        stream_id: r.get(1)?,
        version: r.get(2)?,
        event_id: r.get(3)?,
        event_type: r.get(4)?,
        recorded_at: r.get(5)?,
        payload: r.get(6)?,
    })
}

const SELECT: &str =
    "SELECT position, stream_id, version, event_id, event_type, recorded_at, payload FROM events";

/// W4: full load of the aggregate (owned rows, JSON-decoded), ms.
pub fn w4(s: &Sizes, runs: usize) -> R<Vec<f64>> {
    let dir = util::tempdir()?;
    let mut c = connect(dir.path())?;
    c.pragma_update(None, "synchronous", "OFF").map_err(err("sqlite pragma"))?;
    let ratio = (s.w4_others / s.w4_aggregate.max(1)).max(1);
    for k in 0..s.w4_aggregate {
        append(&mut c, "account-w4", None, &[k])?;
        let others: Vec<u64> = (k * ratio..(k + 1) * ratio).collect();
        append(&mut c, &format!("other-{}", k % 1000), None, &others)?;
    }
    let c = connect(dir.path())?;
    let mut out = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut stmt = c
            .prepare_cached(&format!("{SELECT} WHERE stream_id = ?1 ORDER BY version"))
            .map_err(err("sqlite prepare"))?;
        let (mut balance, mut ops) = (0i64, 0u64);
        for r in stmt.query_map(["account-w4"], row).map_err(err("sqlite query"))? {
            let r = r.map_err(err("sqlite row"))?;
            let p: util::Payload = serde_json::from_slice(&r.payload).map_err(err("json"))?;
            if r.event_type == "Withdrawn" {
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

/// W5 (zero-copy: column references; owned: rows of Strings and Vecs) and
/// W6 (one JSON document per stream, 1,000 events per transaction).
pub fn w5_w6(s: &Sizes, runs: usize) -> R<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let dir = util::tempdir()?;
    let mut c = connect(dir.path())?;
    c.pragma_update(None, "synchronous", "OFF").map_err(err("sqlite pragma"))?;
    let mut k = 0;
    while k < s.w5_events {
        let m = (s.w5_events - k).min(100);
        let events: Vec<u64> = (k..k + m).collect();
        append(&mut c, &format!("account-{}", (k / 100) % 1000), None, &events)?;
        k += m;
    }
    let mut c = connect(dir.path())?;
    let (mut zc, mut owned, mut proj) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let (mut n, mut acc) = (0u64, 0u64);
        {
            let mut stmt =
                c.prepare(&format!("{SELECT} ORDER BY position")).map_err(err("sqlite prepare"))?;
            let mut rows = stmt.query([]).map_err(err("sqlite query"))?;
            while let Some(r) = rows.next().map_err(err("sqlite row"))? {
                let f = |i: usize| r.get_ref(i).map_err(err("sqlite column"));
                acc = acc
                    .wrapping_add(f(0)?.as_i64().map_err(err("sqlite type"))? as u64)
                    .wrapping_add(f(1)?.as_str().map_err(err("sqlite type"))?.len() as u64)
                    .wrapping_add(f(2)?.as_i64().map_err(err("sqlite type"))? as u64)
                    .wrapping_add(f(3)?.as_blob().map_err(err("sqlite type"))?.len() as u64)
                    .wrapping_add(f(4)?.as_str().map_err(err("sqlite type"))?.len() as u64)
                    .wrapping_add(f(5)?.as_i64().map_err(err("sqlite type"))? as u64)
                    .wrapping_add(f(6)?.as_blob().map_err(err("sqlite type"))?.len() as u64);
                n += 1;
            }
        }
        black_box(acc);
        zc.push(rate(n, t.elapsed()));
        let t = Instant::now();
        let mut n = 0u64;
        {
            let mut stmt =
                c.prepare(&format!("{SELECT} ORDER BY position")).map_err(err("sqlite prepare"))?;
            for r in stmt.query_map([], row).map_err(err("sqlite query"))? {
                black_box(r.map_err(err("sqlite row"))?);
                n += 1;
            }
        }
        owned.push(rate(n, t.elapsed()));
        proj.push(w6(&mut c, s.w5_events)?);
    }
    Ok((zc, owned, proj))
}

fn w6(c: &mut Connection, events: u64) -> R<f64> {
    c.execute("DELETE FROM docs", []).map_err(err("sqlite delete"))?;
    let t = Instant::now();
    let mut next = 1i64;
    loop {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("sqlite begin"))?;
        let batch: Vec<(i64, String, Vec<u8>)> = {
            let mut stmt = tx
                .prepare_cached("SELECT position, stream_id, payload FROM events WHERE position >= ?1 ORDER BY position LIMIT 1000")
                .map_err(err("sqlite prepare"))?;
            stmt.query_map([next], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(err("sqlite query"))?
                .collect::<rusqlite::Result<_>>()
                .map_err(err("sqlite row"))?
        };
        let Some(last) = batch.last().map(|b| b.0) else { break };
        {
            let mut get =
                tx.prepare_cached("SELECT doc FROM docs WHERE key = ?1").map_err(err("sqlite prepare"))?;
            let mut put = tx
                .prepare_cached("INSERT OR REPLACE INTO docs(key, doc) VALUES (?1, ?2)")
                .map_err(err("sqlite prepare"))?;
            for (_, stream, payload) in batch {
                let p: util::Payload = serde_json::from_slice(&payload).map_err(err("json"))?;
                let old: Option<Vec<u8>> =
                    get.query_row([&stream], |r| r.get(0)).optional().map_err(err("sqlite get"))?;
                let mut doc: crate::ef::Doc = match old {
                    Some(b) => serde_json::from_slice(&b).map_err(err("json"))?,
                    None => crate::ef::Doc::default(),
                };
                doc.count += 1;
                doc.total += p.amount;
                let bytes = serde_json::to_vec(&doc).map_err(err("json"))?;
                put.execute(params![stream, bytes]).map_err(err("sqlite put"))?;
            }
        }
        tx.commit().map_err(err("sqlite commit"))?;
        next = last + 1;
    }
    Ok(rate(events, t.elapsed()))
}

/// A connection to `file` in `dir` with `schema`, WAL, synchronous=FULL.
fn connect_with(dir: &Path, file: &str, schema: &str) -> R<Connection> {
    let c = Connection::open(dir.join(file)).map_err(err("sqlite open"))?;
    c.busy_timeout(Duration::from_secs(120)).map_err(err("sqlite busy_timeout"))?;
    c.pragma_update(None, "journal_mode", "WAL").map_err(err("sqlite WAL"))?;
    c.pragma_update(None, "synchronous", "FULL").map_err(err("sqlite synchronous"))?;
    c.execute_batch(schema).map_err(err("sqlite schema"))?;
    Ok(c)
}

/// W9's table: the events with their category, and an index on
/// (category, position).
const W9_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events(
    position INTEGER PRIMARY KEY,
    stream_id TEXT NOT NULL,
    category TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_category ON events(category, position);";

/// W9: W9's log (one event in `w9_every` in category `rare`), then the
/// category read whole through the index on (category, position), ms per
/// read, `runs` times.
pub fn w9(s: &Sizes, runs: usize) -> R<Vec<f64>> {
    let dir = util::tempdir()?;
    let mut c = connect_with(dir.path(), "w9.db", W9_SCHEMA)?;
    c.pragma_update(None, "synchronous", "OFF").map_err(err("sqlite pragma"))?;
    let every = s.w9_every.max(2);
    let mut versions = std::collections::HashMap::<String, i64>::new();
    let mut rare = 0u64;
    let mut k = 0u64;
    while k < s.w9_events {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("sqlite begin"))?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO events(stream_id, category, version, event_id, event_type, recorded_at, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err("sqlite prepare"))?;
            let end = (k + 10_000).min(s.w9_events);
            let now = util::now_micros() as i64;
            while k < end {
                let block = k / every;
                let (stream, category) = if k % every == every - 1 {
                    rare += 1;
                    (format!("{}-{}", crate::ef::W9_RARE, block % 100), crate::ef::W9_RARE)
                } else {
                    (format!("account-{}", block % 1000), "account")
                };
                let v = versions.entry(stream.clone()).or_default();
                *v += 1;
                ins.execute(params![
                    stream,
                    category,
                    *v,
                    &uuid::Uuid::now_v7().as_bytes()[..],
                    util::event_type(k),
                    now,
                    payload(k)
                ])
                .map_err(err("sqlite insert"))?;
                k += 1;
            }
        }
        tx.commit().map_err(err("sqlite commit"))?;
    }
    drop(c);
    let c = connect_with(dir.path(), "w9.db", W9_SCHEMA)?;
    let mut out = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let (mut n, mut acc) = (0u64, 0u64);
        {
            let mut stmt = c
                .prepare_cached(
                    "SELECT position, stream_id, version, event_id, event_type, recorded_at, payload
                     FROM events WHERE category = ?1 ORDER BY position",
                )
                .map_err(err("sqlite prepare"))?;
            let mut rows = stmt.query([crate::ef::W9_RARE]).map_err(err("sqlite query"))?;
            while let Some(r) = rows.next().map_err(err("sqlite row"))? {
                let f = |i: usize| r.get_ref(i).map_err(err("sqlite column"));
                acc = acc
                    .wrapping_add(f(0)?.as_i64().map_err(err("sqlite type"))? as u64)
                    .wrapping_add(f(1)?.as_str().map_err(err("sqlite type"))?.len() as u64)
                    .wrapping_add(f(2)?.as_i64().map_err(err("sqlite type"))? as u64)
                    .wrapping_add(f(3)?.as_blob().map_err(err("sqlite type"))?.len() as u64)
                    .wrapping_add(f(4)?.as_str().map_err(err("sqlite type"))?.len() as u64)
                    .wrapping_add(f(5)?.as_i64().map_err(err("sqlite type"))? as u64)
                    .wrapping_add(f(6)?.as_blob().map_err(err("sqlite type"))?.len() as u64);
                n += 1;
            }
        }
        black_box(acc);
        out.push(t.elapsed().as_secs_f64() * 1e3);
        if n != rare {
            return Err(format!("W9 read {n} events of the category, not {rare}"));
        }
    }
    Ok(out)
}

/// W10's tables, as SQL implementations of DCB keep them: the events, and
/// one row per (tag, event).
const W10_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events(
    position INTEGER PRIMARY KEY,
    stream_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tags(
    tag TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY(tag, position)) WITHOUT ROWID;";

/// The DCB read of one decision: the course's definition and enrolments
/// (?1 = its tag), the student's enrolments (?2 = its tag).
pub const W10_READ: &str = "SELECT e.position, e.event_type, e.payload FROM events e
     WHERE e.position IN (SELECT position FROM tags WHERE tag = ?1)
       AND e.event_type IN ('CourseDefined', 'StudentEnrolled')
   UNION
   SELECT e.position, e.event_type, e.payload FROM events e
     WHERE e.position IN (SELECT position FROM tags WHERE tag = ?2)
       AND e.event_type = 'StudentEnrolled'
   ORDER BY 1";

/// The append condition: an event matching the query after position ?3.
const W10_CONDITION: &str = "SELECT EXISTS(SELECT 1 FROM tags t JOIN events e ON e.position = t.position
         WHERE t.tag = ?1 AND t.position > ?3 AND e.event_type IN ('CourseDefined', 'StudentEnrolled'))
     OR EXISTS(SELECT 1 FROM tags t JOIN events e ON e.position = t.position
         WHERE t.tag = ?2 AND t.position > ?3 AND e.event_type = 'StudentEnrolled')";

fn insert_tagged(
    tx: &rusqlite::Transaction<'_>,
    stream: &str,
    ty: &str,
    payload: &[u8],
    tags: &[String],
) -> R<()> {
    tx.prepare_cached("INSERT INTO events(stream_id, event_type, payload) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![stream, ty, payload]))
        .map_err(err("sqlite insert"))?;
    let position = tx.last_insert_rowid();
    let mut ins = tx
        .prepare_cached("INSERT INTO tags(tag, position) VALUES (?1, ?2)")
        .map_err(err("sqlite prepare"))?;
    for tag in tags {
        ins.execute(params![tag, position]).map_err(err("sqlite insert tag"))?;
    }
    Ok(())
}

/// One W10 client: each decision reads the query's events and the head in
/// one read transaction, decides, and appends in a `BEGIN IMMEDIATE`
/// transaction that first checks the condition (no matching event after
/// the head); when it fails, reads and decides again.
fn w10_client(dir: &Path, s: &Sizes, p: u64) -> R<Tally> {
    let mut c = connect_with(dir, "w10.db", W10_SCHEMA)?;
    let mut tally = Tally::default();
    for i in 0..share(s.w10_attempts, s.w10_clients, p) {
        let want = dcb::pair(s, p, i);
        let (course, student) = (dcb::course_tag(want.course), dcb::student_tag(want.student));
        let t0 = Instant::now();
        let mut tries = 0;
        loop {
            let (events, head) = {
                let tx = c.transaction().map_err(err("sqlite begin"))?;
                let events: Vec<(String, Vec<u8>)> = tx
                    .prepare_cached(W10_READ)
                    .and_then(|mut st| {
                        st.query_map(params![course, student], |r| Ok((r.get(1)?, r.get(2)?)))?.collect()
                    })
                    .map_err(err("sqlite read"))?;
                let head: i64 = tx
                    .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")
                    .and_then(|mut st| st.query_row([], |r| r.get(0)))
                    .map_err(err("sqlite head"))?;
                tx.commit().map_err(err("sqlite end read"))?;
                (events, head)
            };
            let verdict = dcb::decide(want, events.iter().map(|(t, p)| (t.as_str(), p.as_slice())), s)?;
            if verdict != Verdict::Enrol {
                tally.count(verdict)?;
                break;
            }
            let tx =
                c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("sqlite begin"))?;
            let conflict: bool = tx
                .prepare_cached(W10_CONDITION)
                .and_then(|mut st| st.query_row(params![course, student, head], |r| r.get(0)))
                .map_err(err("sqlite condition"))?;
            if conflict {
                drop(tx);
                tally.retries += 1;
                tries += 1;
                if tries > dcb::MAX_RETRIES {
                    return Err("W10: a decision failed its condition too often".into());
                }
                continue;
            }
            insert_tagged(
                &tx,
                &format!("student-{}", want.student),
                dcb::STUDENT_ENROLLED,
                &dcb::enrolment_payload(want)?,
                &[student.clone(), course.clone()],
            )?;
            tx.commit().map_err(err("sqlite commit"))?;
            tally.count(Verdict::Enrol)?;
            break;
        }
        tally.latencies.push(t0.elapsed());
    }
    Ok(tally)
}

/// W10: the enrolment workload from `w10_clients` threads, one connection
/// each; then every enrolment checked against both limits.
pub fn w10(s: &Sizes) -> R<Outcome> {
    let dir = util::tempdir()?;
    let mut c = connect_with(dir.path(), "w10.db", W10_SCHEMA)?;
    {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("sqlite begin"))?;
        for k in 0..s.w10_courses {
            insert_tagged(
                &tx,
                &format!("course-{k}"),
                dcb::COURSE_DEFINED,
                &dcb::course_payload(k, s)?,
                &[dcb::course_tag(k)],
            )?;
        }
        tx.commit().map_err(err("sqlite commit"))?;
    }
    let t = Instant::now();
    let tally = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.w10_clients)
            .map(|p| {
                let dir = dir.path();
                scope.spawn(move || w10_client(dir, s, p))
            })
            .collect();
        let mut all = Tally::default();
        for h in handles {
            all.add(h.join().map_err(|_| "client panicked".to_string())??);
        }
        Ok::<_, String>(all)
    })?;
    let wall = t.elapsed();
    let stored: Vec<Enrolment> = c
        .prepare("SELECT payload FROM events WHERE event_type = 'StudentEnrolled'")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, Vec<u8>>(0))?.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(err("sqlite read enrolments"))?
        .iter()
        .map(|p| serde_json::from_slice(p).map_err(err("json")))
        .collect::<R<_>>()?;
    let broken = dcb::verify(&stored, &tally, s);
    Ok(Outcome { tally, wall, broken, writer: None })
}
