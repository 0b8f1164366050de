//! Property test: random appends (random expected versions, retries, reused
//! ids, multi-stream appends) and reopens, checked against a simple in-memory
//! model after every step.

use std::collections::HashMap;

use eventfold::{Durability, Error, ExpectedVersion, NewEvent, ReadAll, ReadStream, Store};
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Exp {
    Any,
    NoStream,
    StreamExists,
    Right,
    Wrong(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Append { stream: usize, exp: Exp, n: usize },
    AppendMany { parts: Vec<(usize, Exp, usize)> },
    RetryLast,
    ReuseId { stream: usize },
    Reopen,
}

fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        1 => Just(Exp::Any),
        1 => Just(Exp::NoStream),
        1 => Just(Exp::StreamExists),
        3 => Just(Exp::Right),
        1 => (1u64..3).prop_map(Exp::Wrong),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..4, exp(), 1usize..4).prop_map(|(stream, exp, n)| Op::Append { stream, exp, n }),
        2 => proptest::collection::vec((0usize..4, exp(), 1usize..3), 1..3).prop_map(|parts| Op::AppendMany { parts }),
        1 => Just(Op::RetryLast),
        1 => (0usize..4).prop_map(|stream| Op::ReuseId { stream }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct Ev {
    stream: String,
    version: u64,
    id: Uuid,
    n: u64,
}

#[derive(Default)]
struct Model {
    log: Vec<Ev>,
    versions: HashMap<String, u64>,
}

type Request = Vec<(String, ExpectedVersion, Vec<(Uuid, u64)>)>;

impl Model {
    fn expected(&self, stream: &str, e: &Exp) -> ExpectedVersion {
        let v = self.versions.get(stream).copied().unwrap_or(0);
        match e {
            Exp::Any => ExpectedVersion::Any,
            Exp::NoStream => ExpectedVersion::NoStream,
            Exp::StreamExists => ExpectedVersion::StreamExists,
            Exp::Right => ExpectedVersion::Exact(v),
            Exp::Wrong(d) => ExpectedVersion::Exact(v + d),
        }
    }

    /// Applies a request of fresh ids; `Ok(positions)` or the error kind.
    fn apply(&mut self, req: &Request) -> Result<Vec<(u64, u64)>, &'static str> {
        for (stream, exp, _) in req {
            if !exp.matches(self.versions.get(stream).copied().unwrap_or(0)) {
                return Err("wrong_version");
            }
        }
        let mut out = Vec::new();
        for (stream, _, events) in req {
            let first = self.log.len() as u64 + 1;
            for (id, n) in events {
                let v = self.versions.entry(stream.clone()).or_insert(0);
                *v += 1;
                self.log.push(Ev { stream: stream.clone(), version: *v, id: *id, n: *n });
            }
            out.push((first, self.log.len() as u64));
        }
        Ok(out)
    }
}

fn send(store: &Store, req: &Request) -> Result<Vec<(u64, u64, bool)>, Error> {
    let parts = req.iter().map(|(s, e, evs)| {
        (
            s.as_str(),
            *e,
            evs.iter()
                .map(|(id, n)| NewEvent::json("E", &serde_json::json!({ "n": n })).with_id(*id))
                .collect(),
        )
    });
    store
        .append_many(parts)
        .map(|rs| rs.iter().map(|r| (r.first_position, r.last_position, r.already_stored)).collect())
}

fn check(store: &Store, model: &Model) {
    let r = store.read().unwrap();
    let got: Vec<Ev> = r
        .all(ReadAll::new())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let n = e.payload_as::<serde_json::Value>().unwrap()["n"].as_u64().unwrap();
            Ev { stream: e.stream_id().to_string(), version: e.version(), id: e.event_id(), n }
        })
        .collect();
    assert_eq!(got, model.log);
    for (stream, v) in &model.versions {
        assert_eq!(r.stream_version(stream).unwrap(), *v);
        let fwd: Vec<Uuid> =
            r.stream(stream, ReadStream::forward()).unwrap().map(|e| e.unwrap().event_id()).collect();
        let want: Vec<Uuid> = model.log.iter().filter(|e| &e.stream == stream).map(|e| e.id).collect();
        assert_eq!(fwd, want);
        let mut back: Vec<Uuid> =
            r.stream(stream, ReadStream::backward()).unwrap().map(|e| e.unwrap().event_id()).collect();
        back.reverse();
        assert_eq!(back, want);
    }
}

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir).durability(Durability::NoSync).open().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let mut model = Model::default();
        let mut last_ok: Option<(Request, Vec<(u64, u64)>)> = None;
        let mut counter = 0u64;
        let mut fresh = |n: usize| -> Vec<(Uuid, u64)> { (0..n).map(|_| { counter += 1; (Uuid::now_v7(), counter) }).collect() };
        for op in ops {
            match op {
                Op::Append { stream, exp, n } => {
                    let s = format!("s-{stream}");
                    let req = vec![(s.clone(), model.expected(&s, &exp), fresh(n))];
                    let want = model.apply(&req);
                    let got = send(&store, &req);
                    match (&want, &got) {
                        (Ok(w), Ok(g)) => {
                            prop_assert_eq!(w.iter().map(|x| (x.0, x.1, false)).collect::<Vec<_>>(), g.clone());
                            last_ok = Some((req, w.clone()));
                        }
                        (Err("wrong_version"), Err(Error::WrongExpectedVersion { .. })) => {}
                        _ => prop_assert!(false, "model {:?} store {:?}", want, got),
                    }
                }
                Op::AppendMany { parts } => {
                    let mut seen = std::collections::HashSet::new();
                    let parts: Vec<_> = parts.into_iter().filter(|p| seen.insert(p.0)).collect();
                    let req: Request = parts.iter().map(|(st, e, n)| {
                        let s = format!("s-{st}");
                        let x = model.expected(&s, e);
                        (s, x, fresh(*n))
                    }).collect();
                    let want = model.apply(&req);
                    let got = send(&store, &req);
                    match (&want, &got) {
                        (Ok(w), Ok(g)) => {
                            prop_assert_eq!(w.iter().map(|x| (x.0, x.1, false)).collect::<Vec<_>>(), g.clone());
                            last_ok = Some((req, w.clone()));
                        }
                        (Err("wrong_version"), Err(Error::WrongExpectedVersion { .. })) => {}
                        _ => prop_assert!(false, "model {:?} store {:?}", want, got),
                    }
                }
                Op::RetryLast => {
                    if let Some((req, positions)) = &last_ok {
                        let got = send(&store, req).unwrap();
                        prop_assert_eq!(got, positions.iter().map(|x| (x.0, x.1, true)).collect::<Vec<_>>());
                    }
                }
                Op::ReuseId { stream } => {
                    if let Some(taken) = model.log.iter().find(|e| e.stream != format!("s-{stream}")) {
                        let req = vec![(format!("s-{stream}"), ExpectedVersion::Any, vec![(taken.id, 0)])];
                        let got = send(&store, &req);
                        prop_assert!(matches!(got, Err(Error::DuplicateEventId { .. })), "{:?}", got);
                    }
                }
                Op::Reopen => {
                    drop(store);
                    store = open(dir.path());
                }
            }
            check(&store, &model);
        }
    }
}
