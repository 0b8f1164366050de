//! The store against a simple in-memory model: appends with every kind of
//! expected version, multi-stream appends, resent requests, reused ids,
//! requests too large for the map, reads and reopens.
//!
//! Requests go one at a time, or in **rounds**: several requests submitted
//! while the writer is held (in its commit hook), so they reach it together
//! and share one batch. That is where the writer keeps state across
//! requests — the batch's view of stream heads, runs extended by a later
//! request, the greatest event id for the append fast path, a retry that
//! finds the ids an earlier request of the same batch wrote, and the
//! retry-alone path after a request makes the whole batch fail. Requests are
//! committed in submission order, so the model applies a round's requests
//! one after another and every outcome must match exactly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use eventfold::{AppendTicket, Durability, Error, ExpectedVersion, NewEvent, ReadAll, ReadStream, Store};
use uuid::Uuid;

const MAX_OPS: usize = 48;
/// The map is this small so that one request ([`PartSpec::big`]) cannot fit.
const MAP_SIZE: usize = 4 << 20;
const BIG_PAYLOAD: usize = 5 << 20;

/// How a request names the version it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exp {
    /// `Any`.
    Any,
    /// `NoStream`.
    NoStream,
    /// `StreamExists`.
    StreamExists,
    /// `Exact` of the version the stream will have when the request is applied.
    Right,
    /// `Exact` of a version that is `n` too high.
    Wrong(u64),
    /// `Exact(u64::MAX)`, which no stream can reach.
    Max,
}

/// How a request's event ids are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// Time-ordered ids, which the writer inserts by append.
    V7,
    /// Random ids, inserted the ordinary way.
    V4,
}

/// One stream's part of a request.
#[derive(Debug, Clone)]
pub struct PartSpec {
    /// Stream `s-{stream % 4}`.
    pub stream: u8,
    /// The expected version.
    pub exp: Exp,
    /// Events, 1 to 3.
    pub n: u8,
    /// How ids are made.
    pub ids: Ids,
    /// One event too large for the map: the request fails with
    /// `StorageFull`, and the batch it is in is retried request by request.
    pub big: bool,
}

/// A request to build from the model's state.
#[derive(Debug, Clone)]
pub enum ReqSpec {
    /// New events for one or more streams (each stream once).
    New(Vec<PartSpec>),
    /// The same request again (`index` into the requests sent so far, modulo
    /// their number): an idempotent retry when it was stored.
    Resend(usize),
    /// An id the store already holds, appended to another stream.
    ReuseId(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    stream: String,
    version: u64,
    id: Uuid,
}

/// One stream's part of a request as sent.
#[derive(Debug, Clone)]
pub struct Part {
    stream: String,
    expected: ExpectedVersion,
    ids: Vec<Uuid>,
    big: bool,
}

/// A request as sent.
pub type Request = Vec<Part>;

/// What a request must come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Per stream: first and last position, stream version, already stored.
    Ok(Vec<(u64, u64, u64, bool)>),
    WrongVersion,
    Duplicate,
    Full,
}

fn outcome(result: Result<Vec<eventfold::AppendResult>, Error>) -> Result<Outcome, Error> {
    match result {
        Ok(rs) => Ok(Outcome::Ok(
            rs.iter()
                .map(|r| (r.first_position, r.last_position, r.stream_version, r.already_stored))
                .collect(),
        )),
        Err(Error::WrongExpectedVersion { .. }) => Ok(Outcome::WrongVersion),
        Err(Error::DuplicateEventId { .. }) => Ok(Outcome::Duplicate),
        Err(Error::StorageFull { .. }) => Ok(Outcome::Full),
        Err(e) => Err(e),
    }
}

/// The log as it must be: what the writer does, one request at a time.
#[derive(Default)]
pub struct Model {
    log: Vec<Ev>,
    versions: HashMap<String, u64>,
    ids: HashMap<Uuid, u64>,
}

impl Model {
    fn version(&self, s: &str) -> u64 {
        self.versions.get(s).copied().unwrap_or(0)
    }

    fn expected(&self, stream: &str, exp: Exp) -> ExpectedVersion {
        let v = self.version(stream);
        match exp {
            Exp::Any => ExpectedVersion::Any,
            Exp::NoStream => ExpectedVersion::NoStream,
            Exp::StreamExists => ExpectedVersion::StreamExists,
            Exp::Right => ExpectedVersion::Exact(v),
            Exp::Wrong(d) => ExpectedVersion::Exact(v + d.max(1)),
            Exp::Max => ExpectedVersion::Exact(u64::MAX),
        }
    }

    /// The original result when every id of `part` is stored, in order, in
    /// its stream (at the version it names); `Err` when some id is stored
    /// anywhere else; `None` when none is.
    fn stored(&self, part: &Part) -> Result<Option<(u64, u64, u64, bool)>, Outcome> {
        let Some(&first) = part.ids.first().and_then(|id| self.ids.get(id)) else {
            return match part.ids.iter().any(|id| self.ids.contains_key(id)) {
                true => Err(Outcome::Duplicate),
                false => Ok(None),
            };
        };
        let required = match part.expected {
            ExpectedVersion::Exact(v) => Some(v.checked_add(1).ok_or(Outcome::Duplicate)?),
            ExpectedVersion::NoStream => Some(1),
            _ => None,
        };
        let mut version = 0;
        for (k, id) in part.ids.iter().enumerate() {
            let at = first + k as u64;
            if self.ids.get(id) != Some(&at) {
                return Err(Outcome::Duplicate);
            }
            let ev = &self.log[(at - 1) as usize];
            if ev.stream != part.stream {
                return Err(Outcome::Duplicate);
            }
            if k == 0 && required.is_some_and(|r| r != ev.version) {
                return Err(Outcome::Duplicate);
            }
            version = ev.version;
        }
        Ok(Some((first, first + part.ids.len() as u64 - 1, version, true)))
    }

    /// Applies `req` as the writer does and says what it comes to.
    fn apply(&mut self, req: &Request) -> Outcome {
        let mut all = std::collections::HashSet::new();
        if !req.iter().flat_map(|p| &p.ids).all(|id| all.insert(*id)) {
            return Outcome::Duplicate;
        }
        let (mut stored, mut plans) = (Vec::new(), Vec::new());
        for part in req {
            match self.stored(part) {
                Err(o) => return o,
                Ok(Some(r)) => stored.push(r),
                Ok(None) if !part.expected.matches(self.version(&part.stream)) => {
                    return Outcome::WrongVersion;
                }
                Ok(None) => plans.push(part),
            }
        }
        if !stored.is_empty() && !plans.is_empty() {
            return Outcome::Duplicate;
        }
        if !stored.is_empty() {
            return Outcome::Ok(stored);
        }
        if plans.iter().any(|p| p.big) {
            return Outcome::Full;
        }
        let mut out = Vec::new();
        for part in plans {
            let first = self.log.len() as u64 + 1;
            let v = self.versions.entry(part.stream.clone()).or_insert(0);
            for id in &part.ids {
                *v += 1;
                self.log.push(Ev { stream: part.stream.clone(), version: *v, id: *id });
                self.ids.insert(*id, self.log.len() as u64);
            }
            out.push((first, self.log.len() as u64, *v, false));
        }
        Outcome::Ok(out)
    }
}

/// Holds the writer in its commit hook until released, so that requests
/// submitted meanwhile queue up and reach it as one batch.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    entered: Mutex<Option<Sender<()>>>,
    release: Mutex<Option<Receiver<()>>>,
}

impl Gate {
    fn hold(&self) {
        if self.armed.swap(false, Ordering::AcqRel) {
            if let Some(tx) = self.entered.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                let _ = tx.send(());
            }
            if let Some(rx) = self.release.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                let _ = rx.recv();
            }
        }
    }
}

/// A store, its model and the requests sent so far.
pub struct Harness {
    dir: tempfile::TempDir,
    store: Option<Store>,
    gate: Arc<Gate>,
    model: Model,
    sent: Vec<Request>,
}

fn open(dir: &std::path::Path, gate: Arc<Gate>) -> Store {
    let opened = Store::builder(dir)
        .durability(Durability::NoSync)
        .map_size(MAP_SIZE)
        .max_event_size(BIG_PAYLOAD * 2)
        .on_commit(move |_| gate.hold())
        .open();
    match opened {
        Ok(s) => s,
        Err(e) => panic!("open failed: {e}"),
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// An empty store in a temporary directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = Arc::new(Gate::default());
        let store = open(dir.path(), gate.clone());
        Harness { dir, store: Some(store), gate, model: Model::default(), sent: Vec::new() }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }

    fn build(&mut self, spec: &ReqSpec) -> Option<Request> {
        match spec {
            ReqSpec::New(parts) => {
                let mut req: Request = Vec::new();
                for p in parts {
                    let stream = format!("s-{}", p.stream % 4);
                    if req.iter().any(|x| x.stream == stream) {
                        continue;
                    }
                    let n = 1 + p.n % 3;
                    let ids = (0..n)
                        .map(|_| match p.ids {
                            Ids::V7 => Uuid::now_v7(),
                            Ids::V4 => Uuid::new_v4(),
                        })
                        .collect();
                    req.push(Part { expected: self.model.expected(&stream, p.exp), stream, ids, big: p.big });
                }
                (!req.is_empty()).then_some(req)
            }
            ReqSpec::Resend(i) => (!self.sent.is_empty()).then(|| self.sent[i % self.sent.len()].clone()),
            ReqSpec::ReuseId(s) => {
                let stream = format!("s-{}", s % 4);
                let taken = self.model.log.iter().find(|e| e.stream != stream)?;
                Some(vec![Part { stream, expected: ExpectedVersion::Any, ids: vec![taken.id], big: false }])
            }
        }
    }

    fn submit(&self, req: &Request) -> Result<AppendTicket, Error> {
        let parts = req.iter().map(|p| {
            let events = p
                .ids
                .iter()
                .enumerate()
                .map(|(k, id)| {
                    let e = if p.big && k == 0 {
                        NewEvent::binary("Big", vec![0u8; BIG_PAYLOAD])
                    } else {
                        NewEvent::json("E", &serde_json::json!({}))
                    };
                    e.with_id(*id)
                })
                .collect();
            (p.stream.as_str(), p.expected, events)
        });
        self.store().submit_many(parts)
    }

    /// Sends one request alone and compares its outcome with the model's.
    pub fn one(&mut self, spec: &ReqSpec) {
        self.round(std::slice::from_ref(spec));
    }

    /// Sends the requests of `specs` into one batch of the writer and
    /// compares each outcome with the model's.
    pub fn round(&mut self, specs: &[ReqSpec]) {
        if specs.is_empty() {
            return;
        }
        // Hold the writer after a commit of its own, then queue the round.
        let (entered_tx, entered) = channel();
        let (release, release_rx) = channel();
        *self.gate.entered.lock().unwrap_or_else(|p| p.into_inner()) = Some(entered_tx);
        *self.gate.release.lock().unwrap_or_else(|p| p.into_inner()) = Some(release_rx);
        self.gate.armed.store(true, Ordering::Release);
        let gate_req = vec![Part {
            stream: "gate-1".into(),
            expected: ExpectedVersion::Any,
            ids: vec![Uuid::now_v7()],
            big: false,
        }];
        let gate_want = self.model.apply(&gate_req);
        let gate_ticket = self.submit(&gate_req).expect("gate request");
        entered.recv().expect("the writer reaches the gate");
        let mut reqs = Vec::new();
        for spec in specs {
            if let Some(req) = self.build(spec) {
                let want = self.model.apply(&req);
                let ticket = self.submit(&req);
                // A later request of this round may resend it: the writer
                // must find its ids in the batch's own transaction.
                self.sent.push(req.clone());
                reqs.push((req, want, ticket));
            }
        }
        let _ = release.send(());
        let gate_got = outcome(gate_ticket.wait_many()).expect("gate outcome");
        assert_eq!(gate_got, gate_want, "the gate request");
        for (req, want, ticket) in reqs {
            let got = match ticket {
                Ok(t) => outcome(t.wait_many()),
                Err(e) => outcome(Err(e)),
            };
            let got = got.unwrap_or_else(|e| panic!("request {req:?}: unexpected error {e}"));
            assert_eq!(got, want, "request {req:?}");
        }
    }

    /// Closes the store and opens it again.
    pub fn reopen(&mut self) {
        if let Some(store) = self.store.take() {
            store.close().expect("close");
        }
        self.gate = Arc::new(Gate::default());
        self.store = Some(open(self.dir.path(), self.gate.clone()));
    }

    /// Every read agrees with the model.
    pub fn check(&self) {
        let model = &self.model;
        let r = self.store().read().expect("read");
        let log: Vec<Ev> = r
            .all(ReadAll::new())
            .expect("all")
            .map(|e| {
                e.map(|e| Ev { stream: e.stream_id().to_string(), version: e.version(), id: e.event_id() })
                    .expect("event")
            })
            .collect();
        assert_eq!(log, model.log);
        for (s, v) in &model.versions {
            assert_eq!(r.stream_version(s).expect("version"), *v);
            let want: Vec<Uuid> = model.log.iter().filter(|e| &e.stream == s).map(|e| e.id).collect();
            let fwd: Vec<Uuid> = r
                .stream(s, ReadStream::forward())
                .expect("stream")
                .map(|e| e.expect("event").event_id())
                .collect();
            assert_eq!(fwd, want);
            let mut back: Vec<Uuid> = r
                .stream(s, ReadStream::backward())
                .expect("stream")
                .map(|e| e.expect("event").event_id())
                .collect();
            back.reverse();
            assert_eq!(back, want);
        }
        for (id, p) in &model.ids {
            let e = r.event_by_id(*id).expect("by id").expect("stored");
            assert_eq!(e.position(), *p);
        }
    }

    /// Checks everything once more and verifies the store.
    pub fn finish(self) {
        self.check();
        let report = self.store().verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.faults);
    }
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn exp(&mut self) -> Exp {
        match self.next() % 8 {
            0 => Exp::Any,
            1 => Exp::NoStream,
            2 => Exp::StreamExists,
            3..=5 => Exp::Right,
            6 => Exp::Wrong(1),
            _ => Exp::Max,
        }
    }

    fn request(&mut self) -> ReqSpec {
        let op = self.next();
        match op % 8 {
            0..=4 => {
                let parts = 1 + usize::from(self.next() % 3);
                let specs = (0..parts)
                    .map(|_| {
                        let stream = self.next();
                        let exp = self.exp();
                        let b = self.next();
                        PartSpec {
                            stream,
                            exp,
                            n: b % 3,
                            ids: if b & 0x10 == 0 { Ids::V7 } else { Ids::V4 },
                            big: b == 0xff,
                        }
                    })
                    .collect();
                ReqSpec::New(specs)
            }
            5 | 6 => ReqSpec::Resend(usize::from(self.next())),
            _ => ReqSpec::ReuseId(self.next()),
        }
    }
}

/// Runs one input: a byte string read as operations.
pub fn run(data: &[u8]) {
    let mut h = Harness::new();
    let mut bytes = Bytes(data);
    for _ in 0..MAX_OPS {
        if bytes.is_empty() {
            break;
        }
        match bytes.next() % 8 {
            0..=2 => {
                let spec = bytes.request();
                h.one(&spec);
            }
            3..=5 => {
                let n = 2 + usize::from(bytes.next() % 6);
                let specs: Vec<ReqSpec> = (0..n).map(|_| bytes.request()).collect();
                h.round(&specs);
            }
            6 => h.check(),
            _ => h.reopen(),
        }
    }
    h.finish();
}
