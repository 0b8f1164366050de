//! The `eventfold` command-line tool, run as a separate process.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};

use eventfold::{EventMetadata, ExpectedVersion, NewEvent, Store};
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

/// The binary under test.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eventfold"));
    c.env_remove("EVENTFOLD_DATA");
    c
}

/// Runs `eventfold --data DIR ARGS…` with no stdin.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    bin().arg("--data").arg(dir).args(args).stdin(Stdio::null()).output().expect("run eventfold")
}

/// Runs with `input` on stdin.
fn run_with_input(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = bin()
        .arg("--data")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn eventfold");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    child.wait_with_output().expect("wait")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", o.status, stdout(&o), stderr(&o));
    stdout(&o)
}

/// Asserts failure with exit code 1 and one line on stderr; returns that line.
#[track_caller]
fn fails(o: Output) -> String {
    assert_eq!(o.status.code(), Some(1), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line of error: {err:?}");
    err.trim_end().to_string()
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn store_dir() -> (TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("data");
    (t, d)
}

/// A `serve --stdio` process that holds the store's write lock while it lives.
pub struct StdioNode {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl StdioNode {
    pub fn start(dir: &Path, extra: &[&str]) -> StdioNode {
        let mut child = bin()
            .arg("--data")
            .arg(dir)
            .args(["serve", "--stdio"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        StdioNode { child, stdin, stdout }
    }

    /// Sends one raw line and reads the one reply line.
    pub fn send_raw(&mut self, line: &[u8]) -> Value {
        self.write_line(line);
        self.read_message()
    }

    /// Sends one line without waiting for anything.
    pub fn write_line(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line).expect("write");
        stdin.write_all(b"\n").expect("write");
        stdin.flush().expect("flush");
    }

    /// Reads the next message the node writes (a reply or a pushed event).
    pub fn read_message(&mut self) -> Value {
        let reply = self.read_text();
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {reply:?}"))
    }

    /// Reads the next line the node writes, as text.
    pub fn read_text(&mut self) -> String {
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).expect("read reply");
        reply
    }

    /// Sends a body from `client` to `eventstore` and returns the reply.
    pub fn send(&mut self, body: Value) -> Value {
        let msg = json!({"src": "client", "dest": "eventstore", "body": body});
        self.send_raw(msg.to_string().as_bytes())
    }

    /// Closes stdin and waits: the node exits 0 at end of input.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "serve --stdio exit {status:?}");
    }
}

#[test]
fn init_creates_once_and_says_so() {
    let (_t, dir) = store_dir();
    let out = ok(run(&dir, &["init"]));
    assert!(out.contains("created an empty store"), "{out}");
    let again = ok(run(&dir, &["init"]));
    assert!(again.contains("already exists (0 events)"), "{again}");
    let v: Value = serde_json::from_str(&ok(run(&dir, &["--json", "init"]))).unwrap();
    assert_eq!(v["created"], false);
    assert_eq!(v["head"], 0);
    assert!(Uuid::parse_str(v["store_id"].as_str().unwrap()).is_ok());
}

#[test]
fn data_dir_comes_from_the_environment() {
    let (_t, dir) = store_dir();
    let o = bin().env("EVENTFOLD_DATA", &dir).arg("init").output().unwrap();
    ok(o);
    assert!(dir.join("data.mdb").exists());
}

#[test]
fn read_commands_on_a_missing_store_say_what_to_do() {
    let (_t, dir) = store_dir();
    for args in [&["stats"][..], &["read", "--all"], &["streams"], &["verify"], &["export"], &["event", "1"]]
    {
        let err = fails(run(&dir, args));
        assert!(err.contains("no eventfold store at"), "{args:?}: {err}");
        assert!(err.contains("eventfold init"), "{err}");
        assert!(!dir.exists(), "a read command must not create the store");
    }
}

#[test]
fn append_reads_payload_from_flag_file_and_stdin() {
    let (t, dir) = store_dir();
    let out = ok(run(&dir, &["append", "account-1", "Opened", "--payload", r#"{"owner":"ann"}"#]));
    assert!(out.starts_with("appended: account-1 Opened version 1 at position 1, event id "), "{out}");
    let file = t.path().join("p.json");
    std::fs::write(&file, br#"{"amount":10}"#).unwrap();
    ok(run(&dir, &["append", "account-1", "Deposited", "--payload-file", file.to_str().unwrap()]));
    ok(run_with_input(
        &dir,
        &["append", "account-1", "Deposited", "--expected-version", "2"],
        br#"{"amount":5}"#,
    ));
    let events = json_lines(&ok(run(&dir, &["--json", "read", "account-1"])));
    let payloads: Vec<&Value> = events.iter().map(|e| &e["payload"]).collect();
    assert_eq!(payloads, [&json!({"owner": "ann"}), &json!({"amount": 10}), &json!({"amount": 5})]);
}

#[test]
fn append_json_metadata_and_idempotent_retry() {
    let (_t, dir) = store_dir();
    let id = Uuid::now_v7().to_string();
    let corr = Uuid::now_v7().to_string();
    let args = [
        "--json",
        "append",
        "order-7",
        "Placed",
        "--payload",
        r#"{"total":3}"#,
        "--expected-version",
        "no-stream",
        "--event-id",
        &id,
        "--correlation-id",
        &corr,
        "--user-id",
        "ann",
        "--metadata",
        r#"{"ip":"10.0.0.1"}"#,
        "--schema-version",
        "2",
    ];
    let r: Value = serde_json::from_str(&ok(run(&dir, &args))).unwrap();
    assert_eq!(r["stream_id"], "order-7");
    assert_eq!(r["first_position"], 1);
    assert_eq!(r["stream_version"], 1);
    assert_eq!(r["event_ids"], json!([id]));
    assert_eq!(r["already_stored"], false);
    // The same request again is a retry: answered, not written twice.
    let again: Value = serde_json::from_str(&ok(run(&dir, &args))).unwrap();
    assert_eq!(again["already_stored"], true);
    assert_eq!(again["first_position"], 1);
    let human = ok(run(&dir, &args[1..]));
    assert!(human.starts_with("already stored (a retry; nothing written)"), "{human}");

    let e: Value = serde_json::from_str(&ok(run(&dir, &["--json", "event", &id]))).unwrap();
    assert_eq!(e["correlation_id"], corr.as_str());
    assert_eq!(e["user_id"], "ann");
    assert_eq!(e["metadata"], json!({"ip": "10.0.0.1"}));
    assert_eq!(e["schema_version"], 2);
    let shown = ok(run(&dir, &["event", "1"]));
    assert!(shown.contains("user id:         ann"), "{shown}");
    assert!(shown.contains("\"total\": 3"), "{shown}");
}

/// Guards string ids in the CLI: `--correlation-id req-7f3a` was refused
/// (only UUIDs were), a 32-hex id came back as a UUID, and
/// `--metadata '{"correlation_id":"x"}'` was stored as an extra field.
#[test]
fn append_takes_any_ids_and_metadata_fields() {
    let (_t, dir) = store_dir();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    ok(run(
        &dir,
        &[
            "append",
            "order-1",
            "Placed",
            "--payload",
            "{}",
            "--correlation-id",
            "req-7f3a",
            "--causation-id",
            trace,
            "--traceparent",
            tp,
        ],
    ));
    let meta = format!(
        r#"{{"correlation_id":"x","causation_id":"cmd-1","user_id":"ann","traceparent":"{tp}","ip":"10.0.0.1"}}"#
    );
    ok(run(&dir, &["append", "order-1", "Paid", "--payload", "{}", "--metadata", &meta]));
    // An option and the same field of --metadata may say the same thing.
    ok(run(
        &dir,
        &[
            "append",
            "order-1",
            "Shipped",
            "--payload",
            "{}",
            "--user-id",
            "bob",
            "--metadata",
            r#"{"user_id":"bob"}"#,
        ],
    ));

    let lines = json_lines(&ok(run(&dir, &["--json", "read", "order-1"])));
    assert_eq!(lines[0]["correlation_id"], "req-7f3a");
    assert_eq!(lines[0]["causation_id"], trace, "a 32-hex id comes back as given, not as a UUID");
    assert_eq!(lines[0]["traceparent"], tp);
    assert!(lines[0].get("metadata").is_none());
    assert_eq!(lines[1]["correlation_id"], "x");
    assert_eq!(lines[1]["causation_id"], "cmd-1");
    assert_eq!(lines[1]["user_id"], "ann");
    assert_eq!(lines[1]["traceparent"], tp);
    assert_eq!(lines[1]["metadata"], json!({"ip": "10.0.0.1"}), "only other keys are extra fields");
    assert_eq!(lines[2]["user_id"], "bob");

    let one: Value = serde_json::from_str(&ok(run(&dir, &["--json", "event", "2"]))).unwrap();
    assert_eq!(one, lines[1]);
    let shown = ok(run(&dir, &["event", "1"]));
    assert!(shown.contains("correlation id:  req-7f3a\n"), "{shown}");
    assert!(shown.contains(&format!("causation id:    {trace}\n")), "{shown}");
    assert!(shown.contains(&format!("traceparent:     {tp}\n")), "{shown}");
    assert!(!shown.contains("metadata:"), "{shown}");

    let err = fails(run(
        &dir,
        &[
            "append",
            "order-1",
            "X",
            "--payload",
            "{}",
            "--correlation-id",
            "a",
            "--metadata",
            r#"{"correlation_id":"b"}"#,
        ],
    ));
    assert!(
        err.contains("--correlation-id \"a\" and the --metadata field \"correlation_id\" \"b\" disagree"),
        "{err}"
    );
    let err = fails(run(
        &dir,
        &["append", "order-1", "X", "--payload", "{}", "--metadata", r#"{"causation_id":7}"#],
    ));
    assert!(err.contains("--metadata field \"causation_id\" must be a string"), "{err}");
    let err = fails(run(&dir, &["append", "order-1", "X", "--payload", "{}", "--traceparent", "00-nope"]));
    assert!(err.contains("invalid traceparent \"00-nope\""), "{err}");
    let long = "x".repeat(300);
    let err = fails(run(&dir, &["append", "order-1", "X", "--payload", "{}", "--correlation-id", &long]));
    assert!(err.contains("invalid correlation id") && err.contains("the limit is 256"), "{err}");
    let err = fails(run(
        &dir,
        &["append", "order-1", "X", "--payload", "{}", "--metadata", r#"{"$traceparent":"x"}"#],
    ));
    assert!(err.contains("reserves for its own use"), "{err}");
    assert_eq!(
        json_lines(&ok(run(&dir, &["--json", "read", "order-1"]))).len(),
        3,
        "nothing else was written"
    );
}

#[test]
fn append_errors_are_one_line_with_a_way_out() {
    let (_t, dir) = store_dir();
    ok(run(&dir, &["append", "user-1", "Created", "--payload", "{}"]));
    let err =
        fails(run(&dir, &["append", "user-1", "Renamed", "--payload", "{}", "--expected-version", "5"]));
    assert_eq!(
        err,
        "eventfold: error: Expected version 5, got 1: stream user-1 is at version 1; read it again and retry with --expected-version 1"
    );
    let err = fails(run(&dir, &["append", "user-1", "Renamed", "--payload", "{nope"]));
    assert!(err.contains("invalid payload for event type \"Renamed\""), "{err}");
    let err = fails(run(&dir, &["append", "user-1", "Renamed", "--payload", "{}", "--metadata", "[1]"]));
    assert!(err.contains("--metadata must be a JSON object"), "{err}");
    let o = run(&dir, &["append", "user-1", "Renamed", "--payload", "{}", "--expected-version", "soon"]);
    assert_eq!(o.status.code(), Some(2), "a usage error is clap's exit 2");
    assert!(stderr(&o).contains("is not a version"), "{}", stderr(&o));
    let err = fails(run(&dir, &["append", "user-1", "Renamed", "--payload-file", "/no/such/file"]));
    assert!(err.contains("reading the payload file /no/such/file"), "{err}");
    assert_eq!(
        json_lines(&ok(run(&dir, &["--json", "read", "user-1"]))).len(),
        1,
        "nothing else was written"
    );
}

/// A store with a few streams, written through the library.
fn sample_store(dir: &Path) -> Vec<Uuid> {
    let store = Store::open(dir).unwrap();
    let mut ids = Vec::new();
    for i in 1..=3u64 {
        let r = store
            .append(
                "account-1",
                ExpectedVersion::Any,
                [NewEvent::json("Deposited", &json!({"amount": i * 10}))],
            )
            .unwrap();
        ids.extend(r.event_ids);
        let r = store
            .append(
                &format!("order-{i}"),
                ExpectedVersion::NoStream,
                [NewEvent::json("Placed", &json!({"n": i}))],
            )
            .unwrap();
        ids.extend(r.event_ids);
    }
    let meta = EventMetadata::new().correlation_id(Uuid::now_v7()).user_id("bob").extra("ip", "::1");
    let r = store
        .append(
            "account-2",
            ExpectedVersion::NoStream,
            [
                NewEvent::json("Opened", &json!({"owner": "bob"})).with_metadata(meta).with_schema_version(3),
                NewEvent::binary("Scan", vec![0u8, 1, 2, 255]),
            ],
        )
        .unwrap();
    ids.extend(r.event_ids);
    ids
}

#[test]
fn read_tables_and_json_lines() {
    let (_t, dir) = store_dir();
    sample_store(&dir);
    let table = ok(run(&dir, &["read", "account-1"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("POSITION  STREAM     VERSION  TYPE       RECORDED"), "{table}");
    assert!(lines[1].starts_with("1         account-1  1        Deposited  "), "{table}");
    assert!(lines[1].ends_with(r#"{"amount":10}"#), "{table}");
    // Columns line up: every row has its DATA at the header's offset.
    let data_col = lines[0].find("DATA").unwrap();
    assert!(lines[1..].iter().all(|l| l[data_col..].starts_with('{')), "{table}");

    let back = json_lines(&ok(run(&dir, &["--json", "read", "account-1", "--backwards", "--limit", "2"])));
    let versions: Vec<u64> = back.iter().map(|e| e["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [3, 2]);
    let from = json_lines(&ok(run(&dir, &["--json", "read", "account-1", "--from", "2"])));
    assert_eq!(from.len(), 2);

    let all = json_lines(&ok(run(&dir, &["--json", "read", "--all"])));
    assert_eq!(all.len(), 8);
    let positions: Vec<u64> = all.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, (1..=8).collect::<Vec<_>>());
    assert_eq!(all[7]["content_type"], "binary");
    assert_eq!(all[7]["payload"], "000102ff");
    let placed = json_lines(&ok(run(&dir, &["--json", "read", "--all", "--type", "Placed"])));
    assert_eq!(placed.len(), 3);
    let orders =
        json_lines(&ok(run(&dir, &["--json", "read", "--all", "--category", "order", "--from", "3"])));
    let streams: Vec<&str> = orders.iter().map(|e| e["stream_id"].as_str().unwrap()).collect();
    assert_eq!(streams, ["order-2", "order-3"]);
    // Until a time: everything recorded up to the third event's time.
    let t = all[2]["recorded_at"].as_u64().unwrap().to_string();
    let until = json_lines(&ok(run(&dir, &["--json", "read", "--all", "--until-time", &t])));
    assert!(
        until.len() >= 3 && until.iter().all(|e| e["recorded_at"].as_u64().unwrap() <= t.parse().unwrap())
    );
    let err = fails(run(&dir, &["read", "--all", "--until-time", "yesterday"]));
    assert!(err.contains("is not a time") && err.contains("2024-05-01T12:00:00Z"), "{err}");
    let rfc = ok(run(&dir, &["--json", "read", "--all", "--until-time", "2000-01-01T00:00:00Z"]));
    assert!(rfc.is_empty(), "nothing was recorded in 2000: {rfc}");

    let o = run(&dir, &["read"]);
    assert_eq!(o.status.code(), Some(2), "a stream or --all is required");
    let o = run(&dir, &["read", "nope-1"]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("stream \"nope-1\" has no events"), "{}", stderr(&o));
}

#[test]
fn streams_event_and_stats() {
    let (_t, dir) = store_dir();
    let ids = sample_store(&dir);
    let table = ok(run(&dir, &["streams", "--prefix", "order-"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("STREAM   VERSION  LAST POSITION  CREATED"), "{table}");
    assert!(lines[1].starts_with("order-1  1        2              "), "{table}");
    let all = json_lines(&ok(run(&dir, &["--json", "streams"])));
    let names: Vec<&str> = all.iter().map(|s| s["stream_id"].as_str().unwrap()).collect();
    assert_eq!(names, ["account-1", "account-2", "order-1", "order-2", "order-3"]);
    assert_eq!(all[0]["version"], 3);
    assert_eq!(all[0]["last_position"], 5);
    assert_eq!(json_lines(&ok(run(&dir, &["--json", "streams", "--limit", "2"]))).len(), 2);

    let by_id: Value =
        serde_json::from_str(&ok(run(&dir, &["--json", "event", &ids[1].to_string()]))).unwrap();
    assert_eq!(by_id["position"], 2);
    assert_eq!(by_id["stream_id"], "order-1");
    let err = fails(run(&dir, &["event", &Uuid::now_v7().to_string()]));
    assert!(err.contains("find ids and positions with `eventfold read`"), "{err}");
    let err = fails(run(&dir, &["event", "99"]));
    assert!(err.starts_with("eventfold: no event 99 in "), "{err}");
    let err = fails(run(&dir, &["event", "not-an-id"]));
    assert!(err.contains("neither an event id (a UUID) nor a position"), "{err}");

    let s: Value = serde_json::from_str(&ok(run(&dir, &["--json", "stats"]))).unwrap();
    assert_eq!(
        (s["events"].as_u64(), s["streams"].as_u64(), s["head"].as_u64()),
        (Some(8), Some(5), Some(8))
    );
    assert!(s["size_on_disk"].as_u64().unwrap() > 0);
    assert!(s["last_commit_at"].as_u64().unwrap() > 0);
    let human = ok(run(&dir, &["stats"]));
    for key in ["events:", "streams:", "head:", "last commit:", "size on disk:"] {
        assert!(human.contains(key), "{human}");
    }
}

/// A library error that wraps another (here an I/O error) names its cause
/// once: the CLI does not print the wrapped error again after it.
#[test]
fn an_error_names_its_cause_once() {
    let t = tempfile::tempdir().expect("tempdir");
    let file = t.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let err = fails(run(&file, &["init"]));
    let prefix = format!("eventfold: error: file-system error on {}: ", file.display());
    let cause = err.strip_prefix(&prefix).unwrap_or_else(|| panic!("{err}"));
    assert!(!cause.is_empty() && !cause.contains(": "), "{err}");
}

#[test]
fn a_writer_holds_the_lock_and_reads_go_on_beside_it() {
    let (_t, dir) = store_dir();
    sample_store(&dir);
    let mut node = StdioNode::start(&dir, &[]);
    // An answer means the node has the store open, and so holds its lock.
    let reply = node.send(json!({"type": "stats", "msg_id": 1}));
    assert_eq!(reply["body"]["type"], "stats_ok");
    let pid = node.child.id();
    let err = fails(run(&dir, &["append", "account-1", "Deposited", "--payload", "{}"]));
    assert_eq!(
        err,
        format!(
            "eventfold: error: store {} is locked by pid {pid}: stop it, or use a read-only command (read, stats, export, verify, backup)",
            dir.display()
        )
    );
    // Read-only commands work while the node writes.
    let r = node.send(json!({"type": "append", "msg_id": 2, "aggregate_id": "account-1", "event_type": "X", "event_data": {}, "version": 3}));
    assert_eq!(r["body"]["type"], "appended", "{r}");
    assert_eq!(json_lines(&ok(run(&dir, &["--json", "read", "account-1"]))).len(), 4);
    ok(run(&dir, &["stats"]));
    ok(run(&dir, &["verify"]));
    let (_b, backup) = store_dir();
    ok(run(&dir, &["backup", backup.to_str().unwrap()]));
    node.finish();
    assert_eq!(json_lines(&ok(run(&backup, &["--json", "read", "account-1"]))).len(), 4);
}

type RawDb = heed::Database<'static, heed::types::Bytes, heed::types::Bytes>;

/// Opens the store's LMDB environment directly and lets `f` change one of its
/// databases, the way a failing disk or a bug could. Only while no process
/// has the store open.
fn damage(dir: &Path, name: &str, f: impl FnOnce(&mut heed::RwTxn, RawDb)) {
    let mut options = heed::EnvOpenOptions::new();
    options.max_dbs(16).map_size(eventfold::DEFAULT_MAP_SIZE);
    // SAFETY: the test owns the directory and no other process has it open.
    let env = unsafe { options.open(dir) }.expect("open LMDB");
    let rtxn = env.read_txn().unwrap();
    let db = env
        .open_databases_and_commit(rtxn, |opener, rtxn| -> heed::Result<_> {
            let db = opener.open_database::<heed::types::Bytes, heed::types::Bytes>(rtxn, Some(name))?;
            Ok(heed::CommitOrAbort::<_, ()>::Commit(db))
        })
        .unwrap()
        .unwrap_commit()
        .expect("the database exists");
    let mut wtxn = env.write_txn().unwrap();
    f(&mut wtxn, db);
    wtxn.commit().unwrap();
}

#[test]
fn verify_names_a_flipped_record_byte() {
    let (_t, dir) = store_dir();
    sample_store(&dir);
    let out = ok(run(&dir, &["verify"]));
    assert_eq!(out.trim(), "checked 8 events, 5 streams, 7 index runs, 8 event ids, 6 term index blocks: ok");
    damage(&dir, "events", |wtxn, events| {
        let key = 2u64.to_be_bytes();
        let mut value = events.get(wtxn, &key).unwrap().unwrap().to_vec();
        value[10] ^= 0x40;
        events.put(wtxn, &key, &value).unwrap();
    });
    let o = run(&dir, &["verify"]);
    let out = stdout(&o);
    let err = fails(o);
    assert!(out.lines().any(|l| l.starts_with("FAULT events position 2") && l.contains("corrupt")), "{out}");
    // The damaged record also hides its stream from the log walk, so the
    // stream's head is reported too.
    assert!(out.contains("2 faults") && out.contains("FAULT streams stream \"order-1\""), "{out}");
    assert!(err.contains("verify found 2 faults") && err.contains("restore from a backup"), "{err}");
    let report: Value = serde_json::from_str(&stdout(&run(&dir, &["--json", "verify"]))).unwrap();
    assert_eq!(report["fault_count"], 2);
    assert_eq!(report["faults"][0]["area"], "events");
    assert_eq!(report["faults"][0]["position"], 2);
    // Reading the damaged record is an error that says what to do, not
    // garbage, with the exit code of damaged data.
    let o = run(&dir, &["read", "--all"]);
    assert_eq!(o.status.code(), Some(eventfold::DAMAGED_FILE_EXIT_CODE), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("record at position 2 is corrupt") && err.contains("eventfold verify"), "{err}");
}

#[test]
fn verify_names_a_removed_index_entry() {
    let (_t, dir) = store_dir();
    sample_store(&dir);
    damage(&dir, "stream_index", |wtxn, index| {
        // The first run of the first stream (stream number 1, version 1).
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&1u64.to_be_bytes());
        key[8..].copy_from_slice(&1u64.to_be_bytes());
        assert!(index.delete(wtxn, &key).unwrap(), "the entry existed");
    });
    let o = run(&dir, &["verify"]);
    let out = stdout(&o);
    fails(o);
    assert!(out.lines().any(|l| l.starts_with("FAULT stream_index") && l.contains("account-1")), "{out}");
}

#[test]
fn export_import_round_trip_is_identical_and_idempotent() {
    let (t, a) = store_dir();
    sample_store(&a);
    let file = t.path().join("events.jsonl");
    ok(run(&a, &["export", "--output", file.to_str().unwrap()]));
    let exported = std::fs::read_to_string(&file).unwrap();
    assert_eq!(exported, ok(run(&a, &["export"])), "--output and stdout write the same lines");
    assert_eq!(exported.lines().count(), 8);

    let b = t.path().join("copy");
    let out = ok(run(&b, &["import", file.to_str().unwrap()]));
    assert!(out.contains("imported 8 events") && out.contains("8 written, 0 already stored"), "{out}");
    // Same positions, versions, ids, metadata, times and payloads.
    assert_eq!(ok(run(&b, &["--json", "read", "--all"])), ok(run(&a, &["--json", "read", "--all"])));
    assert_eq!(ok(run(&b, &["--json", "streams"])), ok(run(&a, &["--json", "streams"])));
    ok(run(&b, &["verify"]));

    let again: Value =
        serde_json::from_str(&ok(run(&b, &["--json", "import", file.to_str().unwrap()]))).unwrap();
    assert_eq!(again, json!({"events": 8, "written": 0, "already_stored": 8}));
    assert_eq!(ok(run(&b, &["--json", "read", "--all"])), ok(run(&a, &["--json", "read", "--all"])));

    // From stdin, and a partial export (from a position) continues a copy.
    let c = t.path().join("partial");
    let first_half: String = exported.lines().take(4).map(|l| format!("{l}\n")).collect();
    ok(run_with_input(&c, &["import", "-"], first_half.as_bytes()));
    let tail = ok(run(&a, &["export", "--from", "5"]));
    ok(run_with_input(&c, &["import", "-"], tail.as_bytes()));
    assert_eq!(ok(run(&c, &["--json", "read", "--all"])), ok(run(&a, &["--json", "read", "--all"])));

    // A file that continues streams the store does not have is refused, naming the line.
    let d = t.path().join("gap");
    let err = fails(run_with_input(&d, &["import", "-"], tail.as_bytes()));
    assert!(err.contains("line 1: the file continues stream \"account-1\" after version 2"), "{err}");
    let err = fails(run_with_input(&d, &["import", "-"], b"{\"hello\":1}\n"));
    assert!(err.contains("line 1 is not an exported event"), "{err}");
}

#[test]
fn backup_is_a_store_and_refuses_to_overwrite() {
    let (t, a) = store_dir();
    sample_store(&a);
    for (name, compact) in [("plain", false), ("compact", true)] {
        let target = t.path().join(name);
        let mut args = vec!["backup", target.to_str().unwrap()];
        if compact {
            args.push("--compact");
        }
        let out = ok(run(&a, &args));
        assert!(out.contains("backed up"), "{out}");
        ok(run(&target, &["verify"]));
        assert_eq!(ok(run(&target, &["--json", "read", "--all"])), ok(run(&a, &["--json", "read", "--all"])));
        // The copy is a full store: it takes writes.
        ok(run(&target, &["append", "account-9", "Opened", "--payload", "{}"]));
        let err = fails(run(&a, &args));
        assert!(err.contains("already holds a store"), "{err}");
    }
}

#[test]
fn demo_runs_twice_and_leaves_a_healthy_store() {
    let (_t, dir) = store_dir();
    let out = ok(run(&dir, &["demo"]));
    for want in ["run 1", "refused: Expected version 1, got 4", "already stored: true", "Where to look next:"]
    {
        assert!(out.contains(want), "{want:?} in {out}");
    }
    let out = ok(run(&dir, &["demo"]));
    assert!(out.contains("run 2"), "{out}");
    ok(run(&dir, &["verify"]));
    let streams = json_lines(&ok(run(&dir, &["--json", "streams", "--prefix", "account-"])));
    assert_eq!(streams.len(), 4);

    // The demo's projection is visible without its code, with its lag.
    ok(run(&dir, &["append", "account-x", "Deposited", "--payload", r#"{"amount":1}"#]));
    let listed = json_lines(&ok(run(&dir, &["--json", "projection", "list"])));
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["name"].as_str(), listed[0]["lag_events"].as_u64()),
        (Some("demo_balances"), Some(1))
    );
    let table = ok(run(&dir, &["projection", "list"]));
    assert!(table.starts_with("NAME           VERSION  CHECKPOINT  HEAD  LAG"), "{table}");
    let status = ok(run(&dir, &["projection", "status", "demo_balances"]));
    assert!(status.contains("lag:              1 events"), "{status}");
    let out = ok(run(&dir, &["projection", "rebuild", "demo_balances"]));
    assert_eq!(out.trim(), "rebuilt projection demo_balances: checkpoint 17, lag 0 events");
    let err = fails(run(&dir, &["projection", "rebuild", "orders_by_day"]));
    assert!(err.contains("rebuild it in the service that defines it"), "{err}");
    let err = fails(run(&dir, &["projection", "status", "nope"]));
    assert!(
        err.contains("no projection named \"nope\"") && err.contains("eventfold projection list"),
        "{err}"
    );
    let stats: Value = serde_json::from_str(&ok(run(&dir, &["--json", "stats"]))).unwrap();
    assert_eq!(stats["projections"][0]["name"], "demo_balances");
    assert!(ok(run(&dir, &["stats"])).contains("projection demo_balances: checkpoint"));
}

#[test]
fn serve_refuses_a_remote_address_without_allow_remote() {
    let (_t, dir) = store_dir();
    let err = fails(run(&dir, &["serve", "--tcp", "0.0.0.0:0"]));
    assert!(err.contains("refusing to listen on 0.0.0.0:0") && err.contains("--allow-remote"), "{err}");
    let o = run(&dir, &["serve"]);
    assert_eq!(o.status.code(), Some(2), "serve needs --stdio or --tcp");
}

#[test]
fn state_now_and_in_the_past_with_snapshots() {
    let (_t, dir) = store_dir();
    ok(run(&dir, &["append", "user-1", "Registered", "--payload", r#"{"name":"Ann","plan":"free"}"#]));
    ok(run(&dir, &["append", "user-1", "Upgraded", "--payload", r#"{"plan":"pro"}"#]));
    let s: Value = serde_json::from_str(&ok(run(&dir, &["--json", "state", "user-1"]))).unwrap();
    assert_eq!(s["state"], json!({"name": "Ann", "plan": "pro"}));
    assert_eq!(s["version"], 2);
    let human = ok(run(&dir, &["state", "user-1", "--as-of-version", "1"]));
    assert!(human.starts_with("user-1 at version 1 (position 1): 1 events merged"), "{human}");
    assert!(human.contains("\"plan\": \"free\""), "{human}");

    let err = fails(run(&dir, &["snapshot", "show", "user-1"]));
    assert!(err.contains("eventfold snapshot create user-1"), "{err}");
    let out = ok(run(&dir, &["snapshot", "create", "user-1"]));
    assert_eq!(out.trim(), "saved a snapshot of user-1 at version 2");
    ok(run(&dir, &["append", "user-1", "Moved", "--payload", r#"{"city":"Oslo"}"#]));
    // The state starts from the snapshot and folds the event after it.
    let s: Value = serde_json::from_str(&ok(run(&dir, &["--json", "state", "user-1"]))).unwrap();
    assert_eq!(s["state"], json!({"name": "Ann", "plan": "pro", "city": "Oslo"}));
    assert_eq!((s["version"].as_u64(), s["events"].as_u64()), (Some(3), Some(3)));
    // A past time before the snapshot's events ignores the snapshot.
    let events = json_lines(&ok(run(&dir, &["--json", "read", "user-1"])));
    let t1 = events[0]["recorded_at"].as_u64().unwrap().to_string();
    let s: Value =
        serde_json::from_str(&ok(run(&dir, &["--json", "state", "user-1", "--as-of-time", &t1]))).unwrap();
    assert_eq!(s["version"], 1);
    assert_eq!(s["state"], json!({"name": "Ann", "plan": "free"}));

    let shown: Value =
        serde_json::from_str(&ok(run(&dir, &["--json", "snapshot", "show", "user-1"]))).unwrap();
    assert_eq!(shown["version"], 2);
    let list = ok(run(&dir, &["snapshot", "list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("STREAM  VERSION  KIND"), "{list}");
    assert!(lines[1].starts_with("user-1  2        json-state"), "{list}");
    let err = fails(run(&dir, &["snapshot", "create", "nobody-1"]));
    assert!(err.contains("has no events"), "{err}");
}

#[test]
fn consumers_and_tail() {
    let (_t, dir) = store_dir();
    sample_store(&dir);
    {
        let store = Store::open(&dir).unwrap();
        let mut c = store.consumer("billing").unwrap();
        c.ack(5).unwrap();
        c.commit().unwrap();
    }
    let listed = json_lines(&ok(run(&dir, &["--json", "consumers"])));
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0]["name"].as_str(), listed[0]["checkpoint"].as_u64()), (Some("billing"), Some(5)));
    assert_eq!(listed[0]["lag"], 3);
    let table = ok(run(&dir, &["consumers"]));
    assert!(table.lines().nth(1).unwrap().starts_with("billing  5           8     3"), "{table}");

    let tailed =
        json_lines(&ok(run(&dir, &["--json", "tail", "--from", "2", "--limit", "3", "--category", "order"])));
    let positions: Vec<u64> = tailed.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, [2, 4, 6]);

    // Live: a tail waiting past the head sees the next append, made by another process.
    let child = bin()
        .arg("--data")
        .arg(&dir)
        .args(["--json", "tail", "--from", "9", "--limit", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    ok(run(&dir, &["append", "order-9", "Placed", "--payload", "{}"]));
    let out = child.wait_with_output().unwrap();
    let e: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!((e["position"].as_u64(), e["stream_id"].as_str()), (Some(9), Some("order-9")));
}

#[test]
fn tags_are_appended_read_by_tag_and_reindexed() {
    let (_t, dir) = store_dir();
    for (stream, tags) in [("student-42", vec!["student:42", "course:7"]), ("student-43", vec!["student:43"])]
    {
        let mut args = vec!["append", stream, "Enrolled", "--payload", "{}"];
        for t in &tags {
            args.extend(["--tag", t]);
        }
        ok(run(&dir, &args));
    }
    let lines = json_lines(&ok(run(&dir, &["--json", "read", "--all", "--tag", "course:7"])));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["stream_id"], "student-42");
    assert_eq!(lines[0]["tags"], serde_json::json!(["student:42", "course:7"]));
    let shown = ok(run(&dir, &["event", "2"]));
    assert!(shown.contains("student:43"), "{shown}");
    let err = fails(run(&dir, &["append", "s-1", "E", "--payload", "{}", "--tag", "a", "--tag", "a"]));
    assert!(err.contains("invalid tag") && err.contains("listed twice"), "{err}");
    assert_eq!(ok(run(&dir, &["reindex"])).trim(), "indexed 2 events by type, category and tag");
    assert!(ok(run(&dir, &["verify"])).trim().ends_with(": ok"));
}

#[test]
fn delete_and_retention_from_the_command_line() {
    let (_t, dir) = store_dir();
    for i in 0..5 {
        ok(run(&dir, &["append", "log-1", "E", "--payload", &i.to_string()]));
    }
    ok(run(&dir, &["append", "cart-1", "E", "--payload", "{}"]));
    let out = ok(run(
        &dir,
        &["retention", "log-1", "--max-count", "2", "--reason", "keep two", "--user-id", "ops"],
    ));
    assert!(out.contains("max count 2"), "{out}");
    assert_eq!(json_lines(&ok(run(&dir, &["--json", "read", "log-1"]))).len(), 2);
    let out = ok(run(&dir, &["delete", "cart-1", "--reason", "abandoned"]));
    assert!(out.contains("deleted"), "{out}");
    assert!(json_lines(&ok(run(&dir, &["--json", "read", "cart-1"]))).is_empty());
    ok(run(&dir, &["delete", "log-1", "--reason", "gone", "--hard"]));
    let err = fails(run(&dir, &["read", "log-1"]));
    assert!(err.contains("deleted for good"), "{err}");
    let err = fails(run(&dir, &["append", "log-1", "E", "--payload", "{}"]));
    assert!(err.contains("deleted for good"), "{err}");
    let changes = json_lines(&ok(run(&dir, &["--json", "read", "$streams"])));
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[0]["user_id"], "ops");
    let out = ok(run(&dir, &["scavenge", "--dry-run"]));
    assert!(out.starts_with("6 events are no longer served"), "{out}");
    let out = ok(run(&dir, &["scavenge"]));
    assert!(out.starts_with("removed 6 events of 2 streams"), "{out}");
    let out = ok(run(&dir, &["verify"]));
    assert!(out.contains(": ok") && out.contains("6 positions were removed by scavenging"), "{out}");
    let report = json_lines(&ok(run(&dir, &["--json", "scavenge"])));
    assert_eq!(report[0]["events_removed"], 0);
}
