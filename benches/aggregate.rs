//! Loading a 100,000-event aggregate: a full replay against a load from a
//! snapshot (with no tail, and with a 1,000-event tail).
//!
//! `cargo bench --bench aggregate`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use eventfold::{Aggregate, DomainEvent, Durability, EventMetadata, ExpectedVersion, Repository, Store};
use serde::{Deserialize, Serialize};

const EVENTS: u64 = 100_000;
const TAIL: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Deposited { amount: u64, reference: String },
    Withdrawn { amount: u64, reference: String },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Deposited { .. } => "Deposited",
            AccountEvent::Withdrawn { .. } => "Withdrawn",
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
    operations: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = ();
    type Error = std::convert::Infallible;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited { amount, .. } => self.balance += *amount as i64,
            AccountEvent::Withdrawn { amount, .. } => self.balance -= *amount as i64,
        }
        self.operations += 1;
    }

    fn handle(&self, _: ()) -> Result<Vec<AccountEvent>, Self::Error> {
        Ok(Vec::new())
    }
}

fn fill(repo: &Repository<Account>, id: &str, from: u64, to: u64) {
    let meta = EventMetadata::new().user_id("bench");
    let mut v = from;
    while v < to {
        let n = (to - v).min(5_000);
        let events: Vec<AccountEvent> = (v..v + n)
            .map(|i| {
                let reference = format!("ref-{i}");
                if i % 3 == 2 {
                    AccountEvent::Withdrawn { amount: i % 50, reference }
                } else {
                    AccountEvent::Deposited { amount: i % 100, reference }
                }
            })
            .collect();
        repo.append(id, ExpectedVersion::Exact(v), &events, &meta).unwrap();
        v += n;
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::NoSync).open().unwrap();
    let repo = Repository::<Account>::new(store);
    fill(&repo, "long", 0, EVENTS);
    fill(&repo, "tail", 0, EVENTS - TAIL);
    repo.take_snapshot("tail").unwrap();
    fill(&repo, "tail", EVENTS - TAIL, EVENTS);

    let mut g = c.benchmark_group("load_100k_event_aggregate");
    g.sample_size(10);
    g.bench_function("full_replay", |b| {
        b.iter(|| {
            let l = repo.replay(black_box("long")).unwrap();
            assert_eq!(l.report.events_replayed, EVENTS);
        })
    });
    g.bench_function("snapshot_plus_1000_tail", |b| {
        b.iter(|| {
            let l = repo.load(black_box("tail")).unwrap();
            assert_eq!(l.report.events_replayed, TAIL);
        })
    });
    repo.take_snapshot("long").unwrap();
    g.bench_function("snapshot_no_tail", |b| {
        b.iter(|| {
            let l = repo.load(black_box("long")).unwrap();
            assert_eq!((l.report.events_replayed, l.version), (0, EVENTS));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
