//! An audit trail: transfers between accounts where every event carries who
//! did it (user), which business transaction it belongs to (correlation) and
//! what directly caused it (causation: the command, or the event in another
//! account). It answers "why is this balance 237.50?" by printing the
//! account's full trail, and shows the balance at past moments.
//!
//! ```text
//! cargo run --release --example audit [-- DIR]
//! ```
//!
//! Without DIR it runs in a temporary directory. Every claim it prints is
//! checked; it exits non-zero if one does not hold.

// Amounts are cents, written `12_50` so they read as money.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use eventfold::{Aggregate, DomainEvent, EventMetadata, Repository, Store};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LedgerEvent {
    AccountOpened { owner: String },
    Deposited { amount: u64, reference: String },
    TransferSent { transfer_id: String, to: String, amount: u64 },
    TransferReceived { transfer_id: String, from: String, amount: u64 },
}

impl DomainEvent for LedgerEvent {
    fn event_type(&self) -> &'static str {
        match self {
            LedgerEvent::AccountOpened { .. } => "AccountOpened",
            LedgerEvent::Deposited { .. } => "Deposited",
            LedgerEvent::TransferSent { .. } => "TransferSent",
            LedgerEvent::TransferReceived { .. } => "TransferReceived",
        }
    }
}

impl LedgerEvent {
    /// The event's effect on the balance, in cents.
    fn delta(&self) -> i64 {
        match self {
            LedgerEvent::AccountOpened { .. } => 0,
            LedgerEvent::Deposited { amount, .. } | LedgerEvent::TransferReceived { amount, .. } => {
                *amount as i64
            }
            LedgerEvent::TransferSent { amount, .. } => -(*amount as i64),
        }
    }

    fn describe(&self) -> String {
        match self {
            LedgerEvent::AccountOpened { owner } => format!("account opened for {owner}"),
            LedgerEvent::Deposited { amount, reference } => {
                format!("+{} deposit ({reference})", money(*amount))
            }
            LedgerEvent::TransferSent { transfer_id, to, amount } => {
                format!("-{} sent to {to} ({transfer_id})", money(*amount))
            }
            LedgerEvent::TransferReceived { transfer_id, from, amount } => {
                format!("+{} received from {from} ({transfer_id})", money(*amount))
            }
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub owner: Option<String>,
    pub balance: u64,
}

#[derive(Debug, Clone)]
pub enum LedgerCommand {
    Open { owner: String },
    Deposit { amount: u64, reference: String },
    Send { transfer_id: String, to: String, amount: u64 },
    Receive { transfer_id: String, from: String, amount: u64 },
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum LedgerError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("insufficient funds: balance {}, asked {}", money(*balance), money(*amount))]
    InsufficientFunds { balance: u64, amount: u64 },
}

impl Aggregate for Ledger {
    const CATEGORY: &'static str = "account";
    type Event = LedgerEvent;
    type Command = LedgerCommand;
    type Error = LedgerError;

    fn apply(&mut self, event: &LedgerEvent) {
        match event {
            LedgerEvent::AccountOpened { owner } => self.owner = Some(owner.clone()),
            LedgerEvent::Deposited { amount, .. } | LedgerEvent::TransferReceived { amount, .. } => {
                self.balance += amount
            }
            LedgerEvent::TransferSent { amount, .. } => self.balance -= amount,
        }
    }

    fn handle(&self, command: LedgerCommand) -> Result<Vec<LedgerEvent>, LedgerError> {
        let event = match command {
            LedgerCommand::Open { owner } if self.owner.is_none() => LedgerEvent::AccountOpened { owner },
            LedgerCommand::Open { .. } => return Err(LedgerError::AlreadyOpen),
            _ if self.owner.is_none() => return Err(LedgerError::NotOpen),
            LedgerCommand::Deposit { amount, reference } => LedgerEvent::Deposited { amount, reference },
            LedgerCommand::Send { amount, .. } if amount > self.balance => {
                return Err(LedgerError::InsufficientFunds { balance: self.balance, amount });
            }
            LedgerCommand::Send { transfer_id, to, amount } => {
                LedgerEvent::TransferSent { transfer_id, to, amount }
            }
            LedgerCommand::Receive { transfer_id, from, amount } => {
                LedgerEvent::TransferReceived { transfer_id, from, amount }
            }
        };
        Ok(vec![event])
    }
}

pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn signed_money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}", money(cents.unsigned_abs()))
}

/// µs since the Unix epoch as `YYYY-MM-DD hh:mm:ss.ffffff` UTC.
fn timestamp(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        micros % 1_000_000
    )
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn check(label: &str, holds: bool) -> Result<(), BoxError> {
    if holds {
        println!("  [ok] {label}");
        Ok(())
    } else {
        println!("  [FAILED] {label}");
        Err(format!("invariant failed: {label}").into())
    }
}

/// The bank's front door: every command gets an id, and every business
/// transaction a correlation id, recorded on the events it causes.
struct Bank {
    accounts: Repository<Ledger>,
    /// Command id -> what the command was, to explain causations that are not events.
    commands: HashMap<Uuid, String>,
}

impl Bank {
    fn command(&mut self, user: &str, what: String) -> EventMetadata {
        let id = Uuid::now_v7();
        self.commands.insert(id, what);
        EventMetadata::new().user_id(user).correlation_id(Uuid::now_v7()).causation_id(id)
    }

    fn open(&mut self, account: &str, owner: &str, user: &str) -> Result<(), BoxError> {
        let meta = self.command(user, format!("open {account}"));
        self.accounts.execute(account, LedgerCommand::Open { owner: owner.into() }, meta)?;
        Ok(())
    }

    fn deposit(&mut self, account: &str, amount: u64, reference: &str, user: &str) -> Result<(), BoxError> {
        let meta = self.command(user, format!("deposit {} into {account}", money(amount)));
        self.accounts.execute(
            account,
            LedgerCommand::Deposit { amount, reference: reference.into() },
            meta,
        )?;
        Ok(())
    }

    /// Debits `from`, then credits `to` with the debit event as the cause.
    fn transfer(&mut self, id: &str, from: &str, to: &str, amount: u64, user: &str) -> Result<(), BoxError> {
        let meta = self.command(user, format!("transfer {id}: {} from {from} to {to}", money(amount)));
        let send = LedgerCommand::Send { transfer_id: id.into(), to: to.into(), amount };
        let sent = self.accounts.execute(from, send, meta.clone())?;
        let debit_id =
            sent.append.and_then(|a| a.event_ids.first().copied()).ok_or("the debit recorded no event")?;
        let credit_meta = meta.causation_id(debit_id);
        let receive = LedgerCommand::Receive { transfer_id: id.into(), from: from.into(), amount };
        self.accounts.execute(to, receive, credit_meta)?;
        Ok(())
    }
}

pub fn run(dir: &Path) -> Result<(), BoxError> {
    let store = Store::open(dir)?;
    let mut bank = Bank { accounts: Repository::new(store.clone()), commands: HashMap::new() };

    println!("== activity ==");
    bank.open("alice", "Alice", "clerk-ann")?;
    bank.open("bob", "Bob", "clerk-ann")?;
    bank.open("carol", "Carol", "clerk-joe")?;
    bank.deposit("alice", 500_00, "salary", "payroll")?;
    bank.deposit("bob", 20_00, "cash", "clerk-joe")?;
    bank.transfer("t-1", "alice", "bob", 300_00, "alice")?;
    bank.transfer("t-2", "bob", "alice", 50_00, "bob")?;
    bank.deposit("alice", 12_50, "cashback", "rewards-service")?;
    bank.transfer("t-3", "alice", "carol", 25_00, "alice")?;
    let refused = bank.transfer("t-4", "carol", "bob", 99_00, "carol");
    println!(
        "  transfer t-4 of 99.00 from carol: {}",
        refused.as_ref().err().map_or("accepted".to_string(), |e| e.to_string())
    );
    check("a transfer beyond the balance is refused", refused.is_err())?;

    let alice = bank.accounts.load("alice")?;
    println!("== why is alice's balance {}? ==", money(alice.state.balance));
    let reader = store.read()?;
    let history = bank.accounts.history("alice")?;
    let mut running: i64 = 0;
    let mut trail_ok = true;
    for e in &history {
        running += e.event.delta();
        let r = &e.recorded;
        // Every cause here is an event or a command, named by its UUID.
        let cause = match r.causation_id.as_deref().and_then(|c| Uuid::parse_str(c).ok()) {
            Some(id) => match reader.event_by_id(id)? {
                Some(c) => {
                    // An event caused by an event of the same transaction.
                    trail_ok &= c.correlation_id().as_deref() == r.correlation_id.as_deref();
                    format!(
                        "event {} on {} v{} by {}",
                        c.event_type(),
                        c.stream_id(),
                        c.version(),
                        c.user_id().unwrap_or("?")
                    )
                }
                None => match bank.commands.get(&id) {
                    Some(what) => format!("command \"{what}\""),
                    None => {
                        trail_ok = false;
                        format!("unknown cause {id}")
                    }
                },
            },
            None => {
                trail_ok = false;
                "no recorded cause".to_string()
            }
        };
        trail_ok &= r.user_id.is_some() && r.correlation_id.is_some();
        println!(
            "  v{} {} by {:<16} {:<40} balance {:>7}",
            r.version,
            timestamp(r.recorded_at),
            r.user_id.as_deref().unwrap_or("?"),
            e.event.describe(),
            signed_money(running)
        );
        println!("      correlation {} | caused by {cause}", r.correlation_id.as_deref().unwrap_or("-"));
    }
    drop(reader);
    check("alice's balance is 237.50", alice.state.balance == 237_50)?;
    check("the trail adds up to the balance", running == alice.state.balance as i64)?;
    check("every event names its user, correlation and a cause that resolves", trail_ok)?;
    let received = history.iter().filter(|e| matches!(e.event, LedgerEvent::TransferReceived { .. })).count();
    check("alice received one transfer", received == 1)?;

    println!("== alice's balance at past moments ==");
    let mut moments_ok = true;
    let before = bank.accounts.load_as_of("alice", history[0].recorded.recorded_at.saturating_sub(1))?;
    println!(
        "  {} (before the account existed): {} at version {}",
        timestamp(history[0].recorded.recorded_at.saturating_sub(1)),
        money(before.state.balance),
        before.version
    );
    moments_ok &= before.version == 0;
    for e in &history {
        let t = e.recorded.recorded_at;
        let past = bank.accounts.load_as_of("alice", t)?;
        // Every event recorded by `t` counts (commits can share a microsecond).
        let expected: i64 =
            history.iter().filter(|h| h.recorded.recorded_at <= t).map(|h| h.event.delta()).sum();
        moments_ok &= past.state.balance as i64 == expected;
        println!("  {}: {:>7} at version {}", timestamp(t), money(past.state.balance), past.version);
    }
    check("each past balance is the sum of the events recorded by then", moments_ok)?;
    store.close()?;
    Ok(())
}

fn main() -> ExitCode {
    let temp = tempfile::tempdir();
    let dir = match (std::env::args_os().nth(1), &temp) {
        (Some(a), _) => Path::new(&a).to_path_buf(),
        (None, Ok(t)) => t.path().to_path_buf(),
        (None, Err(e)) => {
            eprintln!("audit: cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("audit example in {}", dir.display());
    match run(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("audit: {e}");
            ExitCode::FAILURE
        }
    }
}
