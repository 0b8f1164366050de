//! A bank account aggregate: open, deposit, withdraw (no overdraft), a full
//! replay that gives exactly the current state, the balance as it was at a
//! given time and at a given version, and the load time of a long account
//! with and without a snapshot.
//!
//! ```text
//! cargo run --release --example bank [-- DIR]
//! ```
//!
//! Without DIR it runs in a temporary directory. Every claim it prints is
//! checked; it exits non-zero if one does not hold.

// Amounts are cents, written `12_50` so they read as money.
#![allow(clippy::inconsistent_digit_grouping)]

use std::error::Error as StdError;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use eventfold::{Aggregate, DomainEvent, EventMetadata, ExpectedVersion, Repository, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountOpened { owner: String },
    MoneyDeposited { amount: u64 },
    MoneyWithdrawn { amount: u64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::AccountOpened { .. } => "AccountOpened",
            AccountEvent::MoneyDeposited { .. } => "MoneyDeposited",
            AccountEvent::MoneyWithdrawn { .. } => "MoneyWithdrawn",
        }
    }
}

/// Amounts are in cents.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub owner: Option<String>,
    pub balance: u64,
    pub deposits: u64,
    pub withdrawals: u64,
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    Open { owner: String },
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AccountError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("amounts must be positive")]
    ZeroAmount,
    #[error("insufficient funds: balance {}, withdrawal {}", money(*balance), money(*amount))]
    Overdraft { balance: u64, amount: u64 },
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = AccountError;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::MoneyDeposited { amount } => {
                self.balance += amount;
                self.deposits += 1;
            }
            AccountEvent::MoneyWithdrawn { amount } => {
                self.balance -= amount;
                self.withdrawals += 1;
            }
        }
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { owner } if self.owner.is_none() => {
                Ok(vec![AccountEvent::AccountOpened { owner }])
            }
            AccountCommand::Open { .. } => Err(AccountError::AlreadyOpen),
            _ if self.owner.is_none() => Err(AccountError::NotOpen),
            AccountCommand::Deposit { amount: 0 } | AccountCommand::Withdraw { amount: 0 } => {
                Err(AccountError::ZeroAmount)
            }
            AccountCommand::Deposit { amount } => Ok(vec![AccountEvent::MoneyDeposited { amount }]),
            AccountCommand::Withdraw { amount } if amount > self.balance => {
                Err(AccountError::Overdraft { balance: self.balance, amount })
            }
            AccountCommand::Withdraw { amount } => Ok(vec![AccountEvent::MoneyWithdrawn { amount }]),
        }
    }
}

pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// Prints a checked claim; an unmet one is an error.
fn check(label: &str, holds: bool) -> Result<(), BoxError> {
    if holds {
        println!("  [ok] {label}");
        Ok(())
    } else {
        println!("  [FAILED] {label}");
        Err(format!("invariant failed: {label}").into())
    }
}

/// What the run measured, for callers that want the numbers.
#[derive(Debug)]
pub struct BankReport {
    pub long_account_events: u64,
    pub load_without_snapshot_ms: f64,
    pub load_with_snapshot_ms: f64,
}

/// Runs the whole example in `dir`, with `long_events` events on the long account.
pub fn run(dir: &Path, long_events: u64) -> Result<BankReport, BoxError> {
    let store = Store::open(dir)?;
    let accounts = Repository::<Account>::new(store.clone());
    let teller = EventMetadata::new().user_id("teller-1");

    println!("== 1. open, deposit, withdraw ==");
    accounts.execute("alice", AccountCommand::Open { owner: "Alice".into() }, teller.clone())?;
    accounts.execute("alice", AccountCommand::Deposit { amount: 100_00 }, teller.clone())?;
    accounts.execute("alice", AccountCommand::Withdraw { amount: 30_00 }, teller.clone())?;
    let last = accounts.execute("alice", AccountCommand::Deposit { amount: 12_50 }, teller.clone())?;
    println!("  alice: balance {} at version {}", money(last.state.balance), last.version);
    let refused = accounts.execute("alice", AccountCommand::Withdraw { amount: 500_00 }, teller.clone());
    match &refused {
        Err(e) => println!("  withdraw 500.00 -> refused: {e}"),
        Ok(_) => println!("  withdraw 500.00 -> accepted"),
    }
    check(
        "an overdraft is refused",
        matches!(refused, Err(eventfold::CommandError::Rejected(AccountError::Overdraft { .. }))),
    )?;
    check("balance is 82.50", last.state.balance == 82_50)?;

    println!("== 2. a full replay gives exactly the current state ==");
    let replayed = accounts.replay("alice")?;
    println!("  replayed {} events: {:?}", replayed.report.events_replayed, replayed.state);
    check(
        "replay == state after the last command",
        replayed.state == last.state && replayed.version == last.version,
    )?;

    println!("== 3. temporal queries ==");
    let history = accounts.history("alice")?;
    let second = history.get(1).ok_or("alice has fewer than 2 events")?;
    let as_of = accounts.load_as_of("alice", second.recorded.recorded_at)?;
    println!(
        "  balance as of {} µs (when event v2 was recorded): {} (version {})",
        second.recorded.recorded_at,
        money(as_of.state.balance),
        as_of.version
    );
    let at_v3 = accounts.load_at("alice", 3)?;
    println!("  balance at version 3: {}", money(at_v3.state.balance));
    let before = accounts.load_as_of("alice", history[0].recorded.recorded_at.saturating_sub(1))?;
    println!(
        "  balance before the account existed: {} (version {})",
        money(before.state.balance),
        before.version
    );
    // Two commits can share a microsecond, so the state as of a time is the
    // state after the last event recorded by then.
    let t2 = second.recorded.recorded_at;
    let k = history.iter().filter(|e| e.recorded.recorded_at <= t2).count() as u64;
    check(
        "as of event 2's time the state is the state after the last event recorded by then",
        as_of.version == k && as_of.state == accounts.load_at("alice", k)?.state,
    )?;
    check("as of event 2's time the balance was 100.00", k != 2 || as_of.state.balance == 100_00)?;
    check("at version 3 the balance was 70.00", at_v3.state.balance == 70_00)?;
    check(
        "before the first event the account did not exist",
        before.version == 0 && before.state.owner.is_none(),
    )?;

    println!("== 4. {long_events} events on one account: load with and without a snapshot ==");
    accounts.execute("bob", AccountCommand::Open { owner: "Bob".into() }, teller.clone())?;
    let mut written = 1;
    while written < long_events {
        let n = (long_events - written).min(1000);
        let batch: Vec<AccountEvent> =
            (0..n).map(|i| AccountEvent::MoneyDeposited { amount: 1 + i % 7 }).collect();
        accounts.append("bob", ExpectedVersion::Exact(written), &batch, &teller)?;
        written += n;
    }
    let t = Instant::now();
    let full = accounts.replay("bob")?;
    let without_ms = t.elapsed().as_secs_f64() * 1e3;
    accounts.take_snapshot("bob")?;
    let t = Instant::now();
    let fast = accounts.load("bob")?;
    let with_ms = t.elapsed().as_secs_f64() * 1e3;
    println!("  {:<28} {:>12} {:>16}", "", "without", "with snapshot");
    println!(
        "  {:<28} {:>12} {:>16}",
        "events replayed", full.report.events_replayed, fast.report.events_replayed
    );
    println!("  {:<28} {:>10.2}ms {:>14.2}ms", "load time", without_ms, with_ms);
    check(
        "both loads give the same state and version",
        full.state == fast.state && full.version == fast.version,
    )?;
    check("the snapshot load replayed no events", fast.report.events_replayed == 0)?;
    check("the account holds every event", full.version == long_events)?;

    store.close()?;
    Ok(BankReport {
        long_account_events: long_events,
        load_without_snapshot_ms: without_ms,
        load_with_snapshot_ms: with_ms,
    })
}

fn main() -> ExitCode {
    let arg = std::env::args_os().nth(1);
    let temp = match &arg {
        Some(_) => None,
        None => match tempfile::tempdir() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("bank: cannot create a temporary directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let dir = match (&arg, &temp) {
        (Some(a), _) => Path::new(a).to_path_buf(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => return ExitCode::FAILURE,
    };
    println!("bank example in {}", dir.display());
    match run(&dir, 10_000) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bank: {e}");
            ExitCode::FAILURE
        }
    }
}
