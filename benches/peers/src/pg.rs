//! PostgreSQL, when a local server can be started: the harness runs
//! `initdb` and `pg_ctl` in a temporary directory, on a free loopback port,
//! and stops the server when done. Same table and expected-version check
//! as SQLite; `fsync` and `synchronous_commit` stay on (durable).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

use crate::dcb::{self, Enrolment, Outcome, Tally, Verdict};
use crate::util::{self, Lat, R, Sizes, err, lat, payload, rate, share};

/// A PostgreSQL server this harness started; stopped on drop.
pub struct Server {
    bin: PathBuf,
    data: PathBuf,
    run_as: Option<String>,
    port: u16,
    _dir: tempfile::TempDir,
}

fn find_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect();
        v.sort();
        dirs.extend(v.into_iter().rev());
    }
    dirs.into_iter().find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Uid:").map(|v| v.split_whitespace().next() == Some("0")))
        })
        .unwrap_or(false)
}

impl Server {
    fn cmd(&self, tool: &str) -> Command {
        command(&self.bin, self.run_as.as_deref(), tool)
    }

    /// Starts a server, or says why not.
    pub fn start() -> R<Server> {
        let bin = find_bin().ok_or(
            "no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin (install the server, e.g. `apt-get install postgresql`)",
        )?;
        // PostgreSQL refuses to run as root: run it as the `postgres` user.
        let run_as = if is_root() {
            let ok = Command::new("id")
                .arg("-u")
                .arg("postgres")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !ok {
                return Err("running as root and there is no `postgres` user to run the server as".into());
            }
            Some("postgres".to_string())
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("eventfold-bench-pg").tempdir().map_err(err("temp dir"))?;
        if let Some(user) = &run_as {
            let st = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .status()
                .map_err(err("chown"))?;
            if !st.success() {
                return Err("could not give the temporary directory to the postgres user".into());
            }
        }
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(err("free port"))?;
        let out = command(&bin, run_as.as_deref(), "initdb")
            .args(["-U", "bench", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .map_err(err("initdb"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let server = Server { bin, data, run_as, port, _dir: dir };
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=100 -c shared_buffers=256MB",
            server.data.display()
        );
        let out = server
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&server.data)
            .args(["-o", &opts, "-l"])
            .arg(server.data.join("log"))
            .args(["-w", "start"])
            .output()
            .map_err(err("pg_ctl start"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(server.data.join("log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl start failed: {} {log}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mut c = server.client()?;
        c.batch_execute("SELECT 1").map_err(err("postgres query"))?;
        Ok(server)
    }

    fn client(&self) -> R<Client> {
        Client::connect(&format!("host=127.0.0.1 port={} user=bench dbname=postgres", self.port), NoTls)
            .map_err(err("postgres connect"))
    }

    /// A fresh events table.
    fn reset(&self) -> R<()> {
        let mut c = self.client()?;
        c.batch_execute(
            "DROP TABLE IF EXISTS events;
             CREATE TABLE events(
                position BIGSERIAL PRIMARY KEY,
                stream_id TEXT NOT NULL,
                version BIGINT NOT NULL,
                event_id BYTEA NOT NULL,
                event_type TEXT NOT NULL,
                recorded_at BIGINT NOT NULL,
                payload BYTEA NOT NULL,
                UNIQUE(stream_id, version));",
        )
        .map_err(err("postgres schema"))
    }

    /// W1: one connection per producer, 100-event requests.
    pub fn w1(&self, s: &Sizes) -> R<f64> {
        self.reset()?;
        let requests = s.w1_events / s.w1_batch;
        let t = Instant::now();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..s.w1_threads)
                .map(|p| {
                    scope.spawn(move || -> R<()> {
                        let mut c = self.client()?;
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

    /// W2: one connection per thread, single-event appends.
    pub fn w2(&self, s: &Sizes) -> R<Lat> {
        self.reset()?;
        let t = Instant::now();
        let lats = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..s.w2_threads)
                .map(|p| {
                    scope.spawn(move || -> R<Vec<Duration>> {
                        let mut c = self.client()?;
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
    pub fn w3(&self, s: &Sizes) -> R<Lat> {
        self.reset()?;
        let mut c = self.client()?;
        let mut lats = Vec::new();
        let t = Instant::now();
        for v in 0..s.w3_events {
            let t0 = Instant::now();
            append(&mut c, "account-1", Some(v), &[v])?;
            lats.push(t0.elapsed());
        }
        Ok(lat(s.w3_events, t.elapsed(), lats))
    }

    /// W5: a streamed scan, borrowing column values (zero-copy on the client
    /// side) and building owned rows.
    pub fn w5(&self, s: &Sizes, runs: usize) -> R<(Vec<f64>, Vec<f64>)> {
        self.reset()?;
        let mut c = self.client()?;
        c.batch_execute("SET synchronous_commit = off").map_err(err("postgres set"))?;
        let mut k = 0;
        while k < s.w5_events {
            let m = (s.w5_events - k).min(100);
            let events: Vec<u64> = (k..k + m).collect();
            append(&mut c, &format!("account-{}", (k / 100) % 1000), None, &events)?;
            k += m;
        }
        let sql = "SELECT position, stream_id, version, event_id, event_type, recorded_at, payload FROM events ORDER BY position";
        let (mut zc, mut owned) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            for borrow in [true, false] {
                let t = Instant::now();
                let mut rows = c.query_raw(sql, std::iter::empty::<i32>()).map_err(err("postgres query"))?;
                let (mut n, mut acc) = (0u64, 0u64);
                while let Some(r) = rows.next().map_err(err("postgres row"))? {
                    if borrow {
                        let id: &[u8] = r.try_get(3).map_err(err("postgres column"))?;
                        let stream: &str = r.try_get(1).map_err(err("postgres column"))?;
                        let ty: &str = r.try_get(4).map_err(err("postgres column"))?;
                        let p: &[u8] = r.try_get(6).map_err(err("postgres column"))?;
                        let nums: (i64, i64, i64) = (
                            r.try_get(0).map_err(err("postgres column"))?,
                            r.try_get(2).map_err(err("postgres column"))?,
                            r.try_get(5).map_err(err("postgres column"))?,
                        );
                        acc = acc
                            .wrapping_add((id.len() + stream.len() + ty.len() + p.len()) as u64)
                            .wrapping_add((nums.0 + nums.1 + nums.2) as u64);
                    } else {
                        let row: (i64, String, i64, Vec<u8>, String, i64, Vec<u8>) = (
                            r.try_get(0).map_err(err("postgres column"))?,
                            r.try_get(1).map_err(err("postgres column"))?,
                            r.try_get(2).map_err(err("postgres column"))?,
                            r.try_get(3).map_err(err("postgres column"))?,
                            r.try_get(4).map_err(err("postgres column"))?,
                            r.try_get(5).map_err(err("postgres column"))?,
                            r.try_get(6).map_err(err("postgres column"))?,
                        );
                        black_box(row);
                    }
                    n += 1;
                }
                black_box(acc);
                let v = rate(n, t.elapsed());
                if borrow { zc.push(v) } else { owned.push(v) }
            }
        }
        Ok((zc, owned))
    }
}

/// W10's tables, as SQL implementations of DCB keep them: the events, and
/// one row per (tag, event).
const W10_SCHEMA: &str = "DROP TABLE IF EXISTS dcb_tags, dcb_events;
    CREATE TABLE dcb_events(
        position BIGSERIAL PRIMARY KEY,
        stream_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        payload BYTEA NOT NULL);
    CREATE TABLE dcb_tags(
        tag TEXT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY(tag, position));";

/// The DCB read of one decision: the course's definition and enrolments
/// ($1 = its tag), the student's enrolments ($2 = its tag).
const W10_READ: &str = "SELECT e.position, e.event_type, e.payload FROM dcb_events e
     WHERE e.position IN (SELECT position FROM dcb_tags WHERE tag = $1)
       AND e.event_type IN ('CourseDefined', 'StudentEnrolled')
   UNION
   SELECT e.position, e.event_type, e.payload FROM dcb_events e
     WHERE e.position IN (SELECT position FROM dcb_tags WHERE tag = $2)
       AND e.event_type = 'StudentEnrolled'
   ORDER BY 1";

fn insert_tagged(
    tx: &mut postgres::Transaction<'_>,
    stream: &str,
    ty: &str,
    payload: &[u8],
    tags: &[String],
) -> Result<(), postgres::Error> {
    let position: i64 = tx
        .query_one(
            "INSERT INTO dcb_events(stream_id, event_type, payload) VALUES ($1, $2, $3) RETURNING position",
            &[&stream, &ty, &payload],
        )?
        .try_get(0)?;
    for tag in tags {
        tx.execute("INSERT INTO dcb_tags(tag, position) VALUES ($1, $2)", &[tag, &position])?;
    }
    Ok(())
}

/// Whether PostgreSQL refused a transaction for a conflict with another:
/// a serialisation failure or a deadlock (the client retries).
fn is_conflict(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code()
        .is_some_and(|c| *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// One decision in one `SERIALIZABLE` transaction: the DCB read, the
/// decision and, to enrol, the insert of the event and its tags. The
/// transaction's read is the append condition: SSI refuses the commit
/// (40001) when a concurrent one wrote an event the read would have seen.
fn w10_decision(c: &mut Client, s: &Sizes, want: Enrolment) -> R<Result<Verdict, postgres::Error>> {
    let (course, student) = (dcb::course_tag(want.course), dcb::student_tag(want.student));
    let mut tx = match c.build_transaction().isolation_level(postgres::IsolationLevel::Serializable).start() {
        Ok(tx) => tx,
        Err(e) => return Ok(Err(e)),
    };
    let rows = match tx.query(W10_READ, &[&course, &student]) {
        Ok(rows) => rows,
        Err(e) => return Ok(Err(e)),
    };
    let mut events: Vec<(String, Vec<u8>)> = Vec::with_capacity(rows.len());
    for r in &rows {
        events.push((
            r.try_get(1).map_err(err("postgres column"))?,
            r.try_get(2).map_err(err("postgres column"))?,
        ));
    }
    let verdict = dcb::decide(want, events.iter().map(|(t, p)| (t.as_str(), p.as_slice())), s)?;
    if verdict == Verdict::Enrol {
        let payload = dcb::enrolment_payload(want)?;
        let stream = format!("student-{}", want.student);
        if let Err(e) = insert_tagged(&mut tx, &stream, dcb::STUDENT_ENROLLED, &payload, &[student, course]) {
            return Ok(Err(e));
        }
    }
    Ok(tx.commit().map(|()| verdict))
}

impl Server {
    /// W10: the enrolment workload from `w10_clients` threads, one
    /// connection each, every decision one `SERIALIZABLE` transaction
    /// retried on a serialisation failure; then every enrolment checked
    /// against both limits.
    pub fn w10(&self, s: &Sizes) -> R<Outcome> {
        let mut c = self.client()?;
        c.batch_execute(W10_SCHEMA).map_err(err("postgres schema"))?;
        {
            let mut tx = c.transaction().map_err(err("postgres begin"))?;
            for k in 0..s.w10_courses {
                let payload = dcb::course_payload(k, s)?;
                insert_tagged(
                    &mut tx,
                    &format!("course-{k}"),
                    dcb::COURSE_DEFINED,
                    &payload,
                    &[dcb::course_tag(k)],
                )
                .map_err(err("postgres insert"))?;
            }
            tx.commit().map_err(err("postgres commit"))?;
        }
        c.batch_execute("ANALYZE dcb_events; ANALYZE dcb_tags").map_err(err("postgres analyze"))?;
        let t = Instant::now();
        let tally = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..s.w10_clients)
                .map(|p| {
                    scope.spawn(move || -> R<Tally> {
                        let mut c = self.client()?;
                        // SSI locks what a plan reads: a sequential scan locks the
                        // whole table, so every pair of decisions would conflict.
                        c.batch_execute("SET enable_seqscan = off").map_err(err("postgres set"))?;
                        let mut tally = Tally::default();
                        for i in 0..share(s.w10_attempts, s.w10_clients, p) {
                            let want = dcb::pair(s, p, i);
                            let t0 = Instant::now();
                            let mut tries = 0;
                            loop {
                                match w10_decision(&mut c, s, want)? {
                                    Ok(v) => {
                                        tally.count(v)?;
                                        break;
                                    }
                                    Err(e) if is_conflict(&e) => {
                                        tally.retries += 1;
                                        tries += 1;
                                        if tries > dcb::MAX_RETRIES {
                                            return Err("W10: a decision conflicted too often".into());
                                        }
                                    }
                                    Err(e) => return Err(format!("postgres W10: {e}")),
                                }
                            }
                            tally.latencies.push(t0.elapsed());
                        }
                        Ok(tally)
                    })
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
            .query("SELECT payload FROM dcb_events WHERE event_type = 'StudentEnrolled'", &[])
            .map_err(err("postgres read enrolments"))?
            .iter()
            .map(|r| {
                let p: &[u8] = r.try_get(0).map_err(err("postgres column"))?;
                serde_json::from_slice(p).map_err(err("json"))
            })
            .collect::<R<_>>()?;
        let broken = dcb::verify(&stored, &tally, s);
        Ok(Outcome { tally, wall, broken, writer: None })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.cmd("pg_ctl").arg("-D").arg(&self.data).args(["-m", "fast", "-w", "stop"]).output();
    }
}

fn command(bin: &Path, run_as: Option<&str>, tool: &str) -> Command {
    match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(bin.join(tool));
            c
        }
        None => Command::new(bin.join(tool)),
    }
}

/// Appends events (numbers) in one transaction, checking the expected
/// version inside it.
fn append(c: &mut Client, stream: &str, expected: Option<u64>, events: &[u64]) -> R<u64> {
    let mut tx = c.transaction().map_err(err("postgres begin"))?;
    let head: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM events WHERE stream_id = $1", &[&stream])
        .and_then(|r| r.try_get(0))
        .map_err(err("postgres head"))?;
    let head = head as u64;
    if let Some(e) = expected
        && e != head
    {
        return Err(format!("expected version {e}, got {head}"));
    }
    let ins = tx
        .prepare(
            "INSERT INTO events(stream_id, version, event_id, event_type, recorded_at, payload) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .map_err(err("postgres prepare"))?;
    let now = util::now_micros() as i64;
    let mut version = head;
    for &n in events {
        version += 1;
        let id = uuid::Uuid::now_v7();
        tx.execute(
            &ins,
            &[&stream, &(version as i64), &&id.as_bytes()[..], &util::event_type(n), &now, &payload(n)],
        )
        .map_err(err("postgres insert"))?;
    }
    tx.commit().map_err(err("postgres commit"))?;
    Ok(version)
}
