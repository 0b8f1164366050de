//! Aggregates: rules, commands on one aggregate taking turns, retries,
//! snapshots, upcasters, temporal loads.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eventfold::protocol::{ServeOptions, TcpServer};
use eventfold::testing::AggregateTest;
use eventfold::{
    Aggregate, CommandError, DomainEvent, Durability, Error, EventMetadata, ExpectedVersion, NewEvent,
    NewSnapshot, ReadStream, Repository, SnapshotPolicy, Store, Upcasters,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::common::temp_store;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened { .. } => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
            AccountEvent::Withdrawn { .. } => "Withdrawn",
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    owner: Option<String>,
    balance: u64,
}

type Hook = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone)]
enum AccountCommand {
    Open(String),
    Deposit(u64),
    Withdraw(u64),
    /// Two deposits in one command (two events).
    DepositTwice(u64),
    /// A command whose decision first runs `hook` (between the command's
    /// load and its append).
    WithHook(Hook, Box<AccountCommand>),
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum AccountError {
    #[error("account is not open")]
    NotOpen,
    #[error("account is already open")]
    AlreadyOpen,
    #[error("insufficient funds: balance {balance}, asked {amount}")]
    Insufficient { balance: u64, amount: u64 },
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = AccountError;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        if let AccountCommand::WithHook(hook, command) = command {
            hook();
            return self.handle(*command);
        }
        if let AccountCommand::Open(owner) = command {
            return match self.owner {
                Some(_) => Err(AccountError::AlreadyOpen),
                None => Ok(vec![AccountEvent::Opened { owner }]),
            };
        }
        if self.owner.is_none() {
            return Err(AccountError::NotOpen);
        }
        Ok(match command {
            AccountCommand::Open(_) | AccountCommand::WithHook(..) => unreachable!(),
            AccountCommand::Deposit(amount) => vec![AccountEvent::Deposited { amount }],
            AccountCommand::DepositTwice(amount) => {
                vec![AccountEvent::Deposited { amount }, AccountEvent::Deposited { amount }]
            }
            AccountCommand::Withdraw(amount) if amount > self.balance => {
                return Err(AccountError::Insufficient { balance: self.balance, amount });
            }
            AccountCommand::Withdraw(amount) => vec![AccountEvent::Withdrawn { amount }],
        })
    }
}

fn opened() -> AccountEvent {
    AccountEvent::Opened { owner: "ann".into() }
}

fn fast_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::NoSync).open().unwrap();
    (dir, store)
}

#[test]
fn account_rules_given_when_then() {
    AggregateTest::<Account>::given_no_events()
        .when(AccountCommand::Open("ann".into()))
        .then_events([opened()]);
    AggregateTest::<Account>::given([opened()])
        .when(AccountCommand::Open("bob".into()))
        .then_error_is(&AccountError::AlreadyOpen);
    AggregateTest::<Account>::given_no_events()
        .when(AccountCommand::Deposit(5))
        .then_error_is(&AccountError::NotOpen);
    let state = AggregateTest::<Account>::given([opened(), AccountEvent::Deposited { amount: 10 }])
        .when(AccountCommand::Withdraw(4))
        .then_events([AccountEvent::Withdrawn { amount: 4 }]);
    assert_eq!(state.balance, 6);
    AggregateTest::<Account>::given([opened(), AccountEvent::Deposited { amount: 10 }])
        .when(AccountCommand::Withdraw(11))
        .then_error_message("insufficient funds: balance 10, asked 11");
}

#[test]
fn events_are_stored_by_type_with_the_variant_payload() {
    let (_d, store) = temp_store();
    let repo = Repository::<Account>::new(store.clone());
    repo.execute("1", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
    let reader = store.read().unwrap();
    let e = reader.stream("account-1", ReadStream::forward()).unwrap().next().unwrap().unwrap();
    assert_eq!(e.event_type(), "Opened");
    assert_eq!(e.schema_version(), 1);
    assert_eq!(e.payload_as::<serde_json::Value>().unwrap(), json!({"owner": "ann"}));
}

#[test]
fn execute_stamps_metadata_on_every_event_and_reports_rejections() {
    let (_d, store) = temp_store();
    let repo = Repository::<Account>::new(store.clone());
    let (corr, cause) = (Uuid::now_v7(), Uuid::now_v7());
    let meta =
        EventMetadata::new().user_id("ann").correlation_id(corr).causation_id(cause).extra("ip", "10.0.0.1");
    repo.execute("1", AccountCommand::Open("ann".into()), meta.clone()).unwrap();
    let done = repo.execute("1", AccountCommand::DepositTwice(5), meta).unwrap();
    assert_eq!((done.version, done.events.len(), done.state.balance), (3, 2, 10));
    for e in repo.history("1").unwrap() {
        assert_eq!(e.recorded.user_id.as_deref(), Some("ann"));
        assert_eq!(e.recorded.correlation_id, Some(corr.to_string()));
        assert_eq!(e.recorded.causation_id, Some(cause.to_string()));
        assert_eq!(e.recorded.metadata.get("ip"), Some(&json!("10.0.0.1")));
    }
    let err = repo.execute("1", AccountCommand::Withdraw(11), EventMetadata::new()).unwrap_err();
    assert!(matches!(err, CommandError::Rejected(AccountError::Insufficient { balance: 10, amount: 11 })));
    assert_eq!(store.read().unwrap().stream_version("account-1").unwrap(), 3);
}

/// A hook that, in each of the first `times` decisions it runs in, writes
/// `event` to account `id` with a plain append (a writer that bypasses the
/// repository), so it lands between the command's load and its append; and
/// the number of decisions it ran in.
fn outside_writer(store: &Store, id: &str, times: u32, event: fn() -> NewEvent) -> (Hook, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let hook: Hook = {
        let (store, stream, calls) = (store.clone(), format!("account-{id}"), calls.clone());
        Arc::new(move || {
            if calls.fetch_add(1, Ordering::SeqCst) < times {
                store.append(&stream, ExpectedVersion::Any, [event()]).unwrap();
            }
        })
    };
    (hook, calls)
}

fn deposit_of_1() -> NewEvent {
    NewEvent::json("Deposited", &json!({ "amount": 1 }))
}

/// Guards the retry of a conflict with a writer outside the repositories: a
/// plain append lands between the command's load and its append; the
/// command pauses, reloads and decides again on the fresh state.
#[test]
fn execute_retries_after_a_real_concurrent_conflict() {
    let (_d, store) = temp_store();
    let repo = Repository::<Account>::new(store.clone()).max_attempts(3);
    repo.execute("1", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
    let (hook, calls) = outside_writer(&store, "1", 1, deposit_of_1);
    let command = AccountCommand::WithHook(hook, Box::new(AccountCommand::Deposit(100)));
    let done = repo.execute("1", command, EventMetadata::new()).unwrap();
    assert_eq!((done.attempts, calls.load(Ordering::SeqCst)), (2, 2));
    assert_eq!((done.state.balance, done.version), (101, 3));
    let loaded = repo.load("1").unwrap();
    assert_eq!((loaded.state.balance, loaded.version), (101, 3));
}

/// Guards both bounds on retries: a command that meets an outside write on
/// every attempt gives up with `RetriesExhausted` after `max_attempts`
/// attempts, or after its first one when the deadline is zero, naming the
/// attempts it made; what the outside writer wrote stays.
#[test]
fn execute_gives_up_after_its_bound() {
    type Configure = fn(Repository<Account>) -> Repository<Account>;
    let bounded: [(Configure, u32); 3] =
        [(|r| r.max_attempts(1), 1), (|r| r.max_attempts(4), 4), (|r| r.retry_deadline(Duration::ZERO), 1)];
    for (configure, attempts) in bounded {
        let (_d, store) = temp_store();
        let repo = configure(Repository::<Account>::new(store.clone()));
        repo.execute("1", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
        let (hook, calls) = outside_writer(&store, "1", u32::MAX, deposit_of_1);
        let command = AccountCommand::WithHook(hook, Box::new(AccountCommand::Deposit(100)));
        let err = repo.execute("1", command, EventMetadata::new()).unwrap_err();
        assert!(
            matches!(&err, CommandError::Store(Error::RetriesExhausted { attempts: a, .. }) if *a == attempts),
            "{err}"
        );
        assert!(err.to_string().contains("retry later"), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), attempts);
        let loaded = repo.load("1").unwrap();
        assert_eq!((loaded.state.balance, loaded.version), (u64::from(attempts), 1 + u64::from(attempts)));
    }
}

/// Guards that the aggregate's refusal is final: after a conflict the
/// command decides again on the fresh state, which refuses it, and the
/// refusal is returned at once instead of being retried.
#[test]
fn a_command_refused_on_the_fresh_state_after_a_conflict_is_not_retried() {
    let (_d, store) = temp_store();
    let repo = Repository::<Account>::new(store.clone());
    repo.execute("1", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
    repo.execute("1", AccountCommand::Deposit(10), EventMetadata::new()).unwrap();
    let (hook, calls) =
        outside_writer(&store, "1", 1, || NewEvent::json("Withdrawn", &json!({ "amount": 5 })));
    let command = AccountCommand::WithHook(hook, Box::new(AccountCommand::Withdraw(8)));
    let err = repo.execute("1", command, EventMetadata::new()).unwrap_err();
    assert!(
        matches!(err, CommandError::Rejected(AccountError::Insufficient { balance: 5, amount: 8 })),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(repo.load("1").unwrap().state.balance, 5);
}

/// Guards commands on a hot aggregate: 16 threads with 50 deposits each on
/// one account, through two repositories on two clones of one store, used
/// to fail with `RetriesExhausted` (366 of 800). Now they take turns: every
/// command is decided once, on the state the one before it left, and the
/// balance is exact.
#[test]
fn sixteen_threads_with_fifty_commands_each_on_one_aggregate_all_succeed() {
    const THREADS: u64 = 16;
    const COMMANDS: u64 = 50;
    let (_d, store) = fast_store();
    let repos = [Repository::<Account>::new(store.clone()), Repository::<Account>::new(store.clone())];
    repos[0].execute("hot", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
    let attempts: Vec<u32> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let repo = repos[(t % 2) as usize].clone();
                scope.spawn(move || {
                    (0..COMMANDS)
                        .map(|k| {
                            let amount = t * COMMANDS + k + 1;
                            let meta = EventMetadata::new().user_id(format!("thread-{t}"));
                            repo.execute("hot", AccountCommand::Deposit(amount), meta).map(|d| d.attempts)
                        })
                        .collect::<Result<Vec<u32>, _>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap().unwrap()).collect()
    });
    let total = THREADS * COMMANDS;
    assert_eq!(attempts.len() as u64, total);
    assert!(attempts.iter().all(|a| *a == 1), "a command met a conflict: {attempts:?}");
    let loaded = repos[1].load("hot").unwrap();
    assert_eq!((loaded.state.balance, loaded.version), (total * (total + 1) / 2, total + 1));
    assert_eq!(repos[0].replay("hot").unwrap().state, loaded.state);
    // Each thread's deposits are stored once each, in the order it made them.
    let history = repos[0].history("hot").unwrap();
    for t in 0..THREADS {
        let user = format!("thread-{t}");
        let amounts: Vec<u64> = history
            .iter()
            .filter(|e| e.recorded.user_id.as_deref() == Some(user.as_str()))
            .map(|e| match e.event {
                AccountEvent::Deposited { amount } => amount,
                ref other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(amounts, (t * COMMANDS + 1..=(t + 1) * COMMANDS).collect::<Vec<_>>());
    }
}

const NODE_CLIENT_DEPOSITS: u64 = 200;

/// The other process of `an_aggregate_written_by_two_processes_at_once`: a
/// client of the parent's protocol node that deposits 1 into account `two`
/// `NODE_CLIENT_DEPOSITS` times, with optimistic concurrency of its own (it
/// appends at the version it believes, and after a `concurrency_error` at
/// the version the node reports). Ignored in a normal run.
#[test]
#[ignore = "the child process of an_aggregate_written_by_two_processes_at_once, started by it"]
fn node_client_child() {
    let addr = std::env::var("EVENTFOLD_AGGREGATE_NODE").expect(
        "started by an_aggregate_written_by_two_processes_at_once, with EVENTFOLD_AGGREGATE_NODE set",
    );
    // End the test harness's "test … " line so our lines start clean.
    println!();
    let stream = TcpStream::connect(&addr).unwrap();
    // A node that stops answering fails the test instead of hanging it.
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut replies = BufReader::new(stream).lines();
    println!("READY");
    let (mut version, mut done, mut conflicts, mut msg_id) = (0u64, 0u64, 0u64, 0u64);
    while done < NODE_CLIENT_DEPOSITS {
        msg_id += 1;
        let body = json!({
            "type": "append", "msg_id": msg_id, "aggregate_id": "account-two", "version": version,
            "event_type": "Deposited", "event_data": { "amount": 1 }, "metadata": { "user_id": "node-client" },
        });
        // One write per line, so no line waits for the ACK of its first part.
        writer.write_all(format!("{}\n", json!({ "body": body })).as_bytes()).unwrap();
        let line = replies.next().expect("the node answers").unwrap();
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
        let reply = &reply["body"];
        match reply["type"].as_str() {
            Some("appended") => {
                version = reply["version"].as_u64().unwrap();
                done += 1;
            }
            Some("concurrency_error") => {
                version = reply["current_version"].as_u64().unwrap();
                conflicts += 1;
            }
            _ => panic!("unexpected reply {line}"),
        }
    }
    println!("DONE {done} {conflicts}");
    std::io::stdout().flush().unwrap();
}

/// Guards commands on an aggregate that another process writes at the same
/// time. A store has one writing process (the `LOCK` file), so another
/// process writes through this one's protocol node, bypassing the
/// repository: each of its appends can land between a command's load and
/// append. The commands of four threads here (who take turns among
/// themselves) retry such conflicts with a backoff, the other process
/// retries its own, and both finish with every deposit stored once. The
/// bounds are raised so that the outcome does not depend on the machine's
/// speed: the other process's writes are finite, so every command wins in
/// the end.
#[test]
fn an_aggregate_written_by_two_processes_at_once() {
    const THREADS: u64 = 4;
    const COMMANDS: u64 = 50;
    let (_d, store) = fast_store();
    let repo = Repository::<Account>::new(store.clone())
        .max_attempts(u32::MAX)
        .retry_deadline(Duration::from_secs(3600));
    repo.execute("two", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
    let server = TcpServer::bind(store.clone(), "127.0.0.1:0", false, ServeOptions::default()).unwrap();
    let addr = server.local_addr().unwrap().to_string();
    // The node runs until the test binary ends.
    std::thread::spawn(move || server.run());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "aggregates::node_client_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("EVENTFOLD_AGGREGATE_NODE", &addr)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = || lines.next().expect("child output").expect("utf-8 line");
    while next_line() != "READY" {}
    let attempts: Vec<u32> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let repo = repo.clone();
                scope.spawn(move || {
                    (0..COMMANDS)
                        .map(|_| {
                            repo.execute("two", AccountCommand::Deposit(1000), EventMetadata::new())
                                .map(|d| d.attempts)
                        })
                        .collect::<Result<Vec<u32>, _>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap().unwrap()).collect()
    });
    let mut line = next_line();
    while !line.starts_with("DONE ") {
        line = next_line();
    }
    assert!(child.wait().unwrap().success());
    let child_done: Vec<u64> = line["DONE ".len()..].split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(child_done[0], NODE_CLIENT_DEPOSITS);
    let ours = THREADS * COMMANDS;
    assert_eq!(attempts.len() as u64, ours);
    let loaded = repo.load("two").unwrap();
    assert_eq!(
        (loaded.state.balance, loaded.version),
        (ours * 1000 + NODE_CLIENT_DEPOSITS, 1 + ours + NODE_CLIENT_DEPOSITS)
    );
    let retried: u64 = attempts.iter().map(|a| u64::from(a - 1)).sum();
    let most = attempts.iter().max().unwrap();
    println!(
        "two processes on one aggregate: {ours} commands here met {retried} conflicts (at most {most} attempts for one); the other process met {}",
        child_done[1]
    );
}

/// Guards keep-K under concurrent saves: the pruning runs inside the
/// writer's transaction, so saves racing on one stream still leave exactly
/// K snapshots, and an old version saved last stays with the newest others.
#[test]
fn concurrent_snapshot_saves_keep_exactly_k() {
    let (_d, store) = fast_store();
    let events: Vec<NewEvent> =
        (0..64).map(|n| NewEvent::json("Deposited", &json!({ "amount": n }))).collect();
    store.append("account-9", ExpectedVersion::NoStream, events).unwrap();
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let store = store.clone();
            scope.spawn(move || {
                for k in 0..8u64 {
                    let version = 1 + t * 8 + k;
                    let snap = NewSnapshot::json("account-9", version, 1, &json!({ "v": version })).unwrap();
                    store.save_snapshot("account-9", snap, 3).unwrap();
                }
            });
        }
    });
    let versions = store.read().unwrap().snapshot_versions("account-9").unwrap();
    assert_eq!(versions.len(), 3, "{versions:?}");
    let old = NewSnapshot::json("account-9", 2, 1, &json!({ "v": 2 })).unwrap();
    store.save_snapshot("account-9", old, 3).unwrap();
    let after = store.read().unwrap().snapshot_versions("account-9").unwrap();
    assert_eq!(after, [2, versions[1], versions[2]]);
}

#[test]
fn snapshot_policy_every_n_and_keep_k() {
    let (_d, store) = fast_store();
    let repo = Repository::<Account>::new(store.clone())
        .snapshot_policy(SnapshotPolicy::EveryNEvents(3))
        .keep_snapshots(2);
    repo.execute("1", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
    let mut saved = Vec::new();
    for i in 0..9 {
        if let Some(v) =
            repo.execute("1", AccountCommand::Deposit(i), EventMetadata::new()).unwrap().snapshot_saved
        {
            saved.push(v);
        }
    }
    assert_eq!(saved, [3, 6, 9]);
    assert_eq!(store.read().unwrap().snapshot_versions("account-1").unwrap(), [6, 9]);
    let loaded = repo.load("1").unwrap();
    assert_eq!(loaded.report.snapshot_version, Some(9));
    assert_eq!(loaded.report.events_replayed, 1);
    assert_eq!(loaded.state, repo.replay("1").unwrap().state);
    // Off by default.
    let plain = Repository::<Account>::new(store.clone());
    assert!(
        plain
            .execute("1", AccountCommand::Deposit(1), EventMetadata::new())
            .unwrap()
            .snapshot_saved
            .is_none()
    );
    // On demand.
    assert_eq!(plain.take_snapshot("1").unwrap(), Some(11));
    assert_eq!(plain.take_snapshot("nobody").unwrap(), None);
    assert_eq!(store.latest_snapshot("account-1").unwrap().unwrap().version, 11);
}

/// The same stream read by code whose state shape changed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AccountV2 {
    balance_cents: u64,
}

impl Aggregate for AccountV2 {
    const CATEGORY: &'static str = "account";
    const STATE_SCHEMA_VERSION: u32 = 2;
    type Event = AccountEvent;
    type Command = ();
    type Error = AccountError;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { .. } => {}
            AccountEvent::Deposited { amount } => self.balance_cents += amount * 100,
            AccountEvent::Withdrawn { amount } => self.balance_cents -= amount * 100,
        }
    }

    fn handle(&self, _: ()) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(Vec::new())
    }
}

#[test]
fn a_snapshot_of_another_state_schema_is_ignored_and_the_stream_replayed() {
    let (_d, store) = fast_store();
    let v1 = Repository::<Account>::new(store.clone());
    v1.execute("1", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
    v1.execute("1", AccountCommand::Deposit(7), EventMetadata::new()).unwrap();
    v1.take_snapshot("1").unwrap();
    assert_eq!(v1.load("1").unwrap().report.snapshot_version, Some(2));

    let v2 = Repository::<AccountV2>::new(store.clone());
    let loaded = v2.load("1").unwrap();
    assert_eq!(loaded.state.balance_cents, 700);
    assert_eq!(loaded.report.snapshot_version, None);
    assert_eq!(loaded.report.events_replayed, 2);
    let reason = loaded.report.snapshot_ignored.unwrap();
    assert!(reason.contains("schema version 1 differs from the code's 2"), "{reason}");
}

#[test]
fn a_snapshot_that_does_not_decode_is_ignored() {
    let (_d, store) = fast_store();
    let repo = Repository::<Account>::new(store.clone());
    repo.execute("1", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
    repo.execute("1", AccountCommand::Deposit(7), EventMetadata::new()).unwrap();
    let garbage = NewSnapshot::json("account-1", 2, 1, &json!({"balance": "lots"})).unwrap();
    store.save_snapshot("account-1", garbage, 1).unwrap();
    let loaded = repo.load("1").unwrap();
    assert_eq!(loaded.state.balance, 7);
    assert!(loaded.report.snapshot_ignored.unwrap().contains("does not decode"));
    // A snapshot past the stream's version is refused when saved.
    let ahead = NewSnapshot::json("account-1", 3, 1, &Account::default()).unwrap();
    assert!(matches!(store.save_snapshot("account-1", ahead, 1), Err(Error::VersionOutOfRange { .. })));
}

#[derive(Debug, Clone)]
enum Op {
    Deposit(u64),
    Withdraw(u64),
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..100).prop_map(Op::Deposit),
        2 => (1u64..150).prop_map(Op::Withdraw),
        1 => Just(Op::Snapshot),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_plus_tail_equals_full_replay(ops in proptest::collection::vec(op(), 1..40), every in 0u64..6) {
        let (_d, store) = fast_store();
        let policy = if every == 0 { SnapshotPolicy::OnDemand } else { SnapshotPolicy::EveryNEvents(every) };
        let repo = Repository::<Account>::new(store).snapshot_policy(policy).keep_snapshots(3);
        repo.execute("p", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
        for op in ops {
            match op {
                Op::Deposit(n) => { repo.execute("p", AccountCommand::Deposit(n), EventMetadata::new()).unwrap(); }
                Op::Withdraw(n) => { let _ = repo.execute("p", AccountCommand::Withdraw(n), EventMetadata::new()); }
                Op::Snapshot => { repo.take_snapshot("p").unwrap(); }
            }
        }
        let fast = repo.load("p").unwrap();
        let full = repo.replay("p").unwrap();
        prop_assert_eq!(&fast.state, &full.state);
        prop_assert_eq!(fast.version, full.version);
        prop_assert!(full.report.snapshot_version.is_none());
        // Every past version too, whatever snapshot it starts from.
        let history = repo.history("p").unwrap();
        let mut state = Account::default();
        for (i, e) in history.iter().enumerate() {
            state.apply(&e.event);
            let at = repo.load_at("p", i as u64 + 1).unwrap();
            prop_assert_eq!(&at.state, &state);
            prop_assert_eq!(at.version, i as u64 + 1);
        }
    }
}

/// Today's shape of a deposit: schema version 3, renamed from `Deposited`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum WalletEvent {
    MoneyDeposited { cents: u64, currency: String },
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> &'static str {
        "MoneyDeposited"
    }
    fn schema_version(&self) -> u32 {
        3
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Wallet {
    cents: u64,
    currencies: Vec<String>,
}

impl Aggregate for Wallet {
    const CATEGORY: &'static str = "wallet";
    type Event = WalletEvent;
    type Command = ();
    type Error = AccountError;

    fn apply(&mut self, WalletEvent::MoneyDeposited { cents, currency }: &WalletEvent) {
        self.cents += cents;
        if !self.currencies.contains(currency) {
            self.currencies.push(currency.clone());
        }
    }

    fn handle(&self, _: ()) -> Result<Vec<WalletEvent>, AccountError> {
        Ok(Vec::new())
    }
}

fn v1_to_v2(mut p: serde_json::Value) -> eventfold::UpcastResult {
    // v1 kept whole units under "amount"; v2 keeps cents.
    let units = p.get("amount").and_then(|a| a.as_u64()).ok_or("v1 Deposited without an integer amount")?;
    p = json!({ "cents": units * 100 });
    Ok(("Deposited".to_string(), p))
}

fn v2_to_v3(mut p: serde_json::Value) -> eventfold::UpcastResult {
    // v3 renames the event and adds the currency, which was always EUR before.
    p["currency"] = json!("EUR");
    Ok(("MoneyDeposited".to_string(), p))
}

#[test]
fn upcaster_chain_v1_v2_v3_with_a_rename() {
    let (_d, store) = temp_store();
    store
        .append(
            "wallet-1",
            ExpectedVersion::NoStream,
            [
                NewEvent::json("Deposited", &json!({"amount": 5})),
                NewEvent::json("Deposited", &json!({"cents": 250})).with_schema_version(2),
                NewEvent::json("MoneyDeposited", &json!({"cents": 1, "currency": "USD"}))
                    .with_schema_version(3),
            ],
        )
        .unwrap();
    let before: Vec<_> = store
        .read_stream_batched("wallet-1", ReadStream::forward(), 10)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();

    let upcasters =
        Upcasters::new().with("Deposited", 1, v1_to_v2).unwrap().with("Deposited", 2, v2_to_v3).unwrap();
    let repo = Repository::<Wallet>::new(store.clone()).with_upcasters(upcasters);
    let loaded = repo.load("1").unwrap();
    assert_eq!(loaded.state.cents, 500 + 250 + 1);
    assert_eq!(loaded.state.currencies, ["EUR", "USD"]);
    assert_eq!(loaded.report.events_upcast, 2);
    let history = repo.history("1").unwrap();
    assert_eq!(history[0].event, WalletEvent::MoneyDeposited { cents: 500, currency: "EUR".into() });

    // Stored events are never rewritten.
    let after: Vec<_> = store
        .read_stream_batched("wallet-1", ReadStream::forward(), 10)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(before, after);
    assert_eq!(after[0].event_type, "Deposited");
    assert_eq!(after[0].schema_version, 1);

    // A missing step is a clear error naming the event and the versions.
    let gap = Upcasters::new().with("Deposited", 2, v2_to_v3).unwrap();
    let err = Repository::<Wallet>::new(store.clone()).with_upcasters(gap).load("1").unwrap_err();
    assert!(matches!(err, Error::MissingUpcaster { position: 1, found: 1, .. }), "{err}");
    assert!(err.to_string().contains("no upcaster is registered from (\"Deposited\", 1)"), "{err}");
    // And with no upcasters at all.
    let err = Repository::<Wallet>::new(store).load("1").unwrap_err();
    assert!(matches!(err, Error::MissingUpcaster { .. } | Error::Decode { .. }), "{err}");
}

#[test]
fn temporal_loads_by_version_and_by_time() {
    let (_d, store) = temp_store();
    let repo = Repository::<Account>::new(store.clone());
    repo.execute("1", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
    repo.execute("1", AccountCommand::Deposit(10), EventMetadata::new()).unwrap();
    repo.execute("1", AccountCommand::Deposit(20), EventMetadata::new()).unwrap();
    repo.execute("1", AccountCommand::Withdraw(5), EventMetadata::new()).unwrap();
    repo.take_snapshot("1").unwrap();

    let times: Vec<u64> = repo.history("1").unwrap().iter().map(|e| e.recorded.recorded_at).collect();
    let balances = [0, 10, 30, 25];
    for (i, t) in times.iter().enumerate() {
        let at = repo.load_at("1", i as u64 + 1).unwrap();
        assert_eq!(at.state.balance, balances[i]);
        // recorded_at can repeat across commits (µs clock), so the state as
        // of a time is the state after the last event recorded by then.
        let last_at_t = times.iter().rposition(|x| x <= t).unwrap();
        let as_of = repo.load_as_of("1", *t).unwrap();
        assert_eq!(as_of.version, last_at_t as u64 + 1);
        assert_eq!(as_of.state.balance, balances[last_at_t]);
    }
    let before = repo.load_as_of("1", times[0] - 1).unwrap();
    assert_eq!((before.version, before.state.owner), (0, None));
    assert_eq!(repo.load_as_of("1", u64::MAX).unwrap().version, 4);
    assert_eq!(repo.load_at("1", 0).unwrap().state, Account::default());
    let err = repo.load_at("1", 5).unwrap_err();
    assert_eq!(err.to_string(), "stream \"account-1\" is at version 4, so version 5 does not exist yet");
}

#[test]
fn json_merge_state_as_of_a_position() {
    let (_d, store) = temp_store();
    store
        .append(
            "user-1",
            ExpectedVersion::NoStream,
            [
                NewEvent::json("Registered", &json!({"name": "Ann", "plan": "free"})),
                NewEvent::json("Noise", &json!([1, 2])),
                NewEvent::json("Upgraded", &json!({"plan": "pro"})),
            ],
        )
        .unwrap();
    let now = store.json_state("user-1", ReadStream::forward()).unwrap();
    assert_eq!(now.state, json!({"name": "Ann", "plan": "pro"}));
    assert_eq!((now.version, now.events, now.skipped), (3, 2, 1));
    let then = store.json_state("user-1", ReadStream::forward().up_to_position(1)).unwrap();
    assert_eq!(then.state, json!({"name": "Ann", "plan": "free"}));
}

// ---- long replays: read and decoded in parallel, applied in order --------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SeqEvent {
    Step { n: u64 },
}

impl DomainEvent for SeqEvent {
    fn event_type(&self) -> &'static str {
        "Step"
    }

    fn schema_version(&self) -> u32 {
        2
    }
}

/// Order-sensitive state: a step out of sequence is counted, and the hash
/// depends on the order of every step.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Sequence {
    count: u64,
    out_of_order: u64,
    hash: u64,
}

impl Aggregate for Sequence {
    const CATEGORY: &'static str = "seq";
    type Event = SeqEvent;
    type Command = ();
    type Error = std::convert::Infallible;

    fn apply(&mut self, SeqEvent::Step { n }: &SeqEvent) {
        if *n != self.count + 1 {
            self.out_of_order += 1;
        }
        self.count += 1;
        self.hash = self.hash.wrapping_mul(31).wrapping_add(*n);
    }

    fn handle(&self, _: ()) -> Result<Vec<SeqEvent>, Self::Error> {
        Ok(Vec::new())
    }
}

fn seq_upcasters() -> Upcasters {
    // Schema 1 called the field `k`.
    Upcasters::new()
        .with("Step", 1, |mut v| {
            let k = v["k"].take();
            Ok(("Step".to_string(), json!({ "n": k })))
        })
        .unwrap()
}

/// Guards the parallel replay of long streams: several threads read and
/// decode chunks of versions, and the state must be what applying every
/// event in order on one thread gives, with the same report, from the start,
/// from a snapshot and up to a version in the middle.
#[test]
fn long_replays_read_in_parallel_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::NoSync).open().unwrap();
    let total = 12_000u64;
    let mut n = 0u64;
    let mut round = 0u64;
    while n < total {
        // Runs of 1–7 events, interleaved with another stream, every 10th
        // event in the old schema (upcast on read).
        let len = (1 + round % 7).min(total - n);
        let events: Vec<NewEvent> = (n + 1..=n + len)
            .map(|k| {
                if k % 10 == 0 {
                    NewEvent::json("Step", &json!({ "k": k })).with_schema_version(1)
                } else {
                    NewEvent::json("Step", &json!({ "n": k })).with_schema_version(2)
                }
            })
            .collect();
        store.append("seq-1", ExpectedVersion::Any, events).unwrap();
        store
            .append("other-1", ExpectedVersion::Any, [NewEvent::json("Noise", &json!({ "r": round }))])
            .unwrap();
        n += len;
        round += 1;
    }
    let one = Repository::<Sequence>::new(store.clone()).with_upcasters(seq_upcasters()).replay_threads(1);
    let many = Repository::<Sequence>::new(store.clone()).with_upcasters(seq_upcasters()).replay_threads(3);
    let a = one.replay("1").unwrap();
    let b = many.replay("1").unwrap();
    assert_eq!((a.state.count, a.state.out_of_order), (total, 0));
    assert_eq!(b.state, a.state);
    assert_eq!(b.report, a.report);
    assert_eq!(b.report.events_upcast, total / 10);
    // Up to a version in the middle, and from a snapshot with a long tail.
    assert_eq!(many.load_at("1", 9_999).unwrap().state, one.load_at("1", 9_999).unwrap().state);
    let mut early = Sequence::default();
    for k in 1..=1_000 {
        early.apply(&SeqEvent::Step { n: k });
    }
    store.save_snapshot("seq-1", NewSnapshot::json("seq-1", 1_000, 1, &early).unwrap(), 2).unwrap();
    let c = many.load("1").unwrap();
    assert_eq!((c.report.snapshot_version, c.report.events_replayed), (Some(1_000), total - 1_000));
    assert_eq!(c.state, a.state);
}

/// Guards error handling in the parallel replay: a payload that does not
/// decode stops the load with the error of that event, whichever thread met it.
#[test]
fn a_bad_event_in_a_long_parallel_replay_is_reported_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::NoSync).open().unwrap();
    for chunk in 0..100u64 {
        let events: Vec<NewEvent> = (chunk * 100 + 1..=chunk * 100 + 100)
            .map(|k| {
                if k == 7_777 {
                    NewEvent::json("Step", &json!({ "n": "seven" })).with_schema_version(2)
                } else {
                    NewEvent::json("Step", &json!({ "n": k })).with_schema_version(2)
                }
            })
            .collect();
        store.append("seq-2", ExpectedVersion::Any, events).unwrap();
    }
    let repo = Repository::<Sequence>::new(store).replay_threads(4);
    let err = repo.replay("2").unwrap_err();
    assert!(matches!(err, Error::Decode { position: 7_777, .. }), "{err}");
}

// ---- execute_async -------------------------------------------------------

/// `Repository::execute_async` (feature `async`).
#[cfg(feature = "async")]
mod async_commands {
    use super::*;

    /// Long enough never to run out on a working store; only a hang trips it.
    const PATIENCE: Duration = Duration::from_secs(60);

    fn two_workers() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap()
    }

    /// Guards async commands on a hot aggregate: 1000 tasks with one deposit
    /// each on one account, on two worker threads, take turns without blocking
    /// the workers; every command is decided once and the balance is exact.
    #[test]
    fn a_thousand_async_commands_on_one_aggregate_all_succeed() {
        const TASKS: u64 = 1000;
        let (_d, store) = fast_store();
        let repo = Repository::<Account>::new(store.clone());
        repo.execute("hot", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
        let attempts: Vec<u32> = two_workers().block_on(async {
            let tasks: Vec<_> = (1..=TASKS)
                .map(|amount| {
                    let repo = repo.clone();
                    tokio::spawn(async move {
                        repo.execute_async("hot", AccountCommand::Deposit(amount), EventMetadata::new())
                            .await
                            .map(|d| d.attempts)
                    })
                })
                .collect();
            let mut attempts = Vec::new();
            for task in tasks {
                attempts.push(tokio::time::timeout(PATIENCE, task).await.expect("hung").unwrap().unwrap());
            }
            attempts
        });
        assert!(attempts.iter().all(|a| *a == 1), "a command met a conflict: {attempts:?}");
        let loaded = repo.load("hot").unwrap();
        assert_eq!((loaded.state.balance, loaded.version), (TASKS * (TASKS + 1) / 2, TASKS + 1));
    }

    /// The async form retries a conflict with an outside writer after an
    /// awaited pause, as `execute` does.
    #[test]
    fn execute_async_retries_after_a_real_concurrent_conflict() {
        let (_d, store) = temp_store();
        let repo = Repository::<Account>::new(store.clone()).max_attempts(3);
        repo.execute("1", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
        let (hook, calls) = outside_writer(&store, "1", 1, deposit_of_1);
        let command = AccountCommand::WithHook(hook, Box::new(AccountCommand::Deposit(100)));
        let done = two_workers().block_on(repo.execute_async("1", command, EventMetadata::new())).unwrap();
        assert_eq!((done.attempts, calls.load(Ordering::SeqCst)), (2, 2));
        assert_eq!((done.state.balance, done.version), (101, 3));
    }

    /// Guards the queue of turns against a cancelled waiter: an async command
    /// that times out while it waits for the turn gives its place up, and the
    /// next command gets the turn when the holder leaves.
    #[test]
    fn a_cancelled_waiting_async_command_does_not_stall_the_next_one() {
        let (_d, store) = temp_store();
        let repo = Repository::<Account>::new(store.clone());
        repo.execute("1", AccountCommand::Open("ann".into()), EventMetadata::new()).unwrap();
        let (inside_tx, inside) = crossbeam_channel::bounded::<()>(0);
        let (go, go_rx) = crossbeam_channel::bounded::<()>(0);
        let hook: Hook = Arc::new(move || {
            inside_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        });
        let holder = {
            let repo = repo.clone();
            std::thread::spawn(move || {
                let command = AccountCommand::WithHook(hook, Box::new(AccountCommand::Deposit(1)));
                repo.execute("1", command, EventMetadata::new()).map(|d| d.attempts)
            })
        };
        // The holder is deciding, inside the turn.
        inside.recv().unwrap();
        two_workers().block_on(async {
            let waiting = repo.execute_async("1", AccountCommand::Deposit(10), EventMetadata::new());
            // It cannot get the turn while the holder has it: the timeout drops it.
            assert!(tokio::time::timeout(Duration::from_millis(1), waiting).await.is_err());
            let next = tokio::spawn({
                let repo = repo.clone();
                async move { repo.execute_async("1", AccountCommand::Deposit(100), EventMetadata::new()).await }
            });
            tokio::task::yield_now().await;
            go.send(()).unwrap();
            assert_eq!(holder.join().unwrap().unwrap(), 1);
            let done = tokio::time::timeout(PATIENCE, next).await.expect("stalled").unwrap().unwrap();
            assert_eq!((done.state.balance, done.attempts), (101, 1));
        });
        assert_eq!(repo.load("1").unwrap().state.balance, 101);
    }
}
