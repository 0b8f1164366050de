//! A first look at eventfold: open a store, append with optimistic
//! concurrency, read a stream and the global log, retry idempotently.
//!
//! ```text
//! cargo run --release --example quickstart [-- DATA_DIR]
//! ```
//! Without an argument it uses `./eventfold-data` (created if missing).

use eventfold::{Error, EventMetadata, ExpectedVersion, Filter, NewEvent, ReadAll, ReadStream, Store};
use serde_json::json;
use uuid::Uuid;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "eventfold-data".into());
    let store = Store::open(&dir)?;
    println!("store {} at {dir} (head position {})", store.store_id(), store.head()?);

    // A new account stream per run, so the example can run again and again.
    let account = format!("account-{}", &Uuid::now_v7().simple().to_string()[20..]);
    let user = EventMetadata::new().user_id("ann").correlation_id(Uuid::now_v7());
    let opened = store.append(
        &account,
        ExpectedVersion::NoStream,
        [
            NewEvent::json("AccountOpened", &json!({ "owner": "Ann" })).with_metadata(user.clone()),
            NewEvent::json("MoneyDeposited", &json!({ "amount": 100 })).with_metadata(user.clone()),
        ],
    )?;
    println!(
        "appended {account} v1..v{} at positions {}..{}",
        opened.stream_version, opened.first_position, opened.last_position
    );

    // Optimistic concurrency: a writer that read version 1 loses to the one above.
    match store.append(
        &account,
        ExpectedVersion::Exact(1),
        [NewEvent::json("MoneyWithdrawn", &json!({ "amount": 30 }))],
    ) {
        Err(e @ Error::WrongExpectedVersion { .. }) => println!("stale writer refused: {e}"),
        other => return Err(format!("expected a version conflict, got {other:?}").into()),
    }

    // Idempotency: resending an append with the same event ids writes nothing.
    let id = Uuid::now_v7();
    let withdraw =
        || NewEvent::json("MoneyWithdrawn", &json!({ "amount": 30 })).with_id(id).with_metadata(user.clone());
    let first = store.append(&account, ExpectedVersion::Exact(2), [withdraw()])?;
    let retry = store.append(&account, ExpectedVersion::Exact(2), [withdraw()])?;
    assert_eq!(first.first_position, retry.first_position);
    println!(
        "retry of position {} acknowledged without a second write: {}",
        retry.first_position, retry.already_stored
    );

    // Reads are snapshots, zero-copy and checksummed.
    let reader = store.read()?;
    let mut balance = 0i64;
    for event in reader.stream(&account, ReadStream::forward())? {
        let event = event?;
        let amount = event.payload_as::<serde_json::Value>()?["amount"].as_i64().unwrap_or(0);
        match event.event_type() {
            "MoneyDeposited" => balance += amount,
            "MoneyWithdrawn" => balance -= amount,
            _ => {}
        }
        println!(
            "  v{} @{} {:<15} by {}",
            event.version(),
            event.position(),
            event.event_type(),
            event.user_id().unwrap_or("-")
        );
    }
    println!("balance of {account}: {balance}");

    let deposits = reader.all(ReadAll::new().filter(Filter::new().event_type("MoneyDeposited")))?.count();
    let stats = store.stats()?;
    println!(
        "the log holds {} events in {} streams; {deposits} deposits in all; {} bytes on disk",
        stats.head, stats.streams, stats.size_on_disk
    );
    println!("run it again to add another account, or look at {dir}/ with the `eventfold` CLI");
    Ok(())
}
