//! A sequence of operations (appends with random expected versions and ids,
//! multi-stream appends, retries, reused ids, reads, reopens) against a
//! simple in-memory model; every read must agree with the model.

use std::collections::HashMap;

use eventfold::{Durability, Error, ExpectedVersion, NewEvent, ReadAll, ReadStream, Store};
use uuid::Uuid;

const MAX_OPS: usize = 48;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
}

#[derive(Default)]
struct Model {
    /// (stream, event id) per position - 1.
    log: Vec<(String, Uuid)>,
    versions: HashMap<String, u64>,
}

type Request = Vec<(String, ExpectedVersion, Vec<Uuid>)>;

impl Model {
    fn version(&self, s: &str) -> u64 {
        self.versions.get(s).copied().unwrap_or(0)
    }

    fn expected(&self, stream: &str, kind: u8) -> ExpectedVersion {
        let v = self.version(stream);
        match kind % 6 {
            0 => ExpectedVersion::Any,
            1 => ExpectedVersion::NoStream,
            2 => ExpectedVersion::StreamExists,
            3 | 4 => ExpectedVersion::Exact(v),
            _ => ExpectedVersion::Exact(v + 1),
        }
    }

    fn apply(&mut self, req: &Request) -> Option<Vec<u64>> {
        if req.iter().any(|(s, e, _)| !e.matches(self.version(s))) {
            return None;
        }
        let mut firsts = Vec::new();
        for (s, _, ids) in req {
            firsts.push(self.log.len() as u64 + 1);
            for id in ids {
                self.log.push((s.clone(), *id));
                *self.versions.entry(s.clone()).or_insert(0) += 1;
            }
        }
        Some(firsts)
    }
}

fn send(store: &Store, req: &Request) -> Result<Vec<(u64, bool)>, Error> {
    let parts = req.iter().map(|(s, e, ids)| {
        (
            s.as_str(),
            *e,
            ids.iter().map(|id| NewEvent::json("E", &serde_json::json!({})).with_id(*id)).collect(),
        )
    });
    store.append_many(parts).map(|rs| rs.iter().map(|r| (r.first_position, r.already_stored)).collect())
}

fn open(dir: &std::path::Path) -> Store {
    match Store::builder(dir).durability(Durability::NoSync).map_size(64 << 20).open() {
        Ok(s) => s,
        Err(e) => panic!("reopen failed: {e}"),
    }
}

fn check(store: &Store, model: &Model) {
    let r = store.read().expect("read");
    let log: Vec<(String, Uuid)> = r
        .all(ReadAll::new())
        .expect("all")
        .map(|e| e.map(|e| (e.stream_id().to_string(), e.event_id())).expect("event"))
        .collect();
    assert_eq!(log, model.log);
    for (s, v) in &model.versions {
        assert_eq!(r.stream_version(s).expect("version"), *v);
        let n = r.stream(s, ReadStream::backward()).expect("stream").count() as u64;
        assert_eq!(n, *v);
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let mut model = Model::default();
    let mut last_ok: Option<(Request, Vec<u64>)> = None;
    let mut bytes = Bytes(data);
    for _ in 0..MAX_OPS {
        let Some(op) = bytes.next() else { break };
        match op % 6 {
            0 | 1 => {
                let parts = if op % 6 == 0 { 1 } else { 1 + bytes.next().unwrap_or(0) % 3 };
                let mut req: Request = Vec::new();
                for _ in 0..parts {
                    let s = format!("s-{}", bytes.next().unwrap_or(0) % 4);
                    if req.iter().any(|(x, _, _)| *x == s) {
                        continue;
                    }
                    let e = model.expected(&s, bytes.next().unwrap_or(0));
                    let n = 1 + bytes.next().unwrap_or(0) % 3;
                    req.push((s, e, (0..n).map(|_| Uuid::now_v7()).collect()));
                }
                let want = model.apply(&req);
                match (want, send(&store, &req)) {
                    (Some(w), Ok(g)) => {
                        assert_eq!(g, w.iter().map(|p| (*p, false)).collect::<Vec<_>>());
                        last_ok = Some((req, w));
                    }
                    (None, Err(Error::WrongExpectedVersion { .. })) => {}
                    (w, g) => panic!("model says {w:?}, store says {g:?}"),
                }
            }
            2 => {
                if let Some((req, firsts)) = &last_ok {
                    let got = send(&store, req).expect("retry");
                    assert_eq!(got, firsts.iter().map(|p| (*p, true)).collect::<Vec<_>>());
                }
            }
            3 => {
                let s = format!("s-{}", bytes.next().unwrap_or(0) % 4);
                if let Some((_, id)) = model.log.iter().find(|(x, _)| *x != s) {
                    let req = vec![(s, ExpectedVersion::Any, vec![*id])];
                    assert!(matches!(send(&store, &req), Err(Error::DuplicateEventId { .. })));
                }
            }
            4 => check(&store, &model),
            _ => {
                drop(store);
                store = open(dir.path());
            }
        }
    }
    check(&store, &model);
    let report = store.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.faults);
}
