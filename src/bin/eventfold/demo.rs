//! `eventfold demo`: a small bank-account scenario on the data directory,
//! printed step by step, ending with the commands to look further.

use std::io::Write;

use anyhow::bail;
use eventfold::{
    Error, ExpectedVersion, Filter, NewEvent, Projection, ProjectionContext, ProjectionRunner, ReadStream,
    RecordedEvent, Store,
};
use serde_json::json;
use uuid::Uuid;

use crate::{Ctx, Outcome, output};

/// Arguments of `demo`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<Outcome> {
    let store = ctx.open_write()?;
    let mut out = output::stdout();
    let o = &mut out;

    // Each run gets its own accounts, so the demo can be run again and again.
    let runs = store.read()?.stream_version("demo-runs")?;
    let run = runs.checked_add(1).ok_or_else(|| Error::IndexCorruption {
        index: "streams",
        reason: format!("stream \"demo-runs\" is at version {runs}, more events than a log can hold"),
    })?;
    store.append(
        "demo-runs",
        ExpectedVersion::Exact(runs),
        [NewEvent::json("DemoRun", &json!({"run": run}))],
    )?;
    let ann = format!("account-ann{run}");
    let bob = format!("account-bob{run}");
    let order = format!("order-{run}001");
    writeln!(o, "eventfold demo, run {run}, in {}\n", ctx.data.display())?;

    writeln!(o, "1. Open two accounts (expected version: no stream yet)")?;
    let r = store.append(
        &ann,
        ExpectedVersion::NoStream,
        [NewEvent::json("AccountOpened", &json!({"owner": "Ann"}))],
    )?;
    writeln!(o, "   {ann}: AccountOpened -> version {}, position {}", r.stream_version, r.first_position)?;
    let r = store.append(
        &bob,
        ExpectedVersion::NoStream,
        [NewEvent::json("AccountOpened", &json!({"owner": "Bob"}))],
    )?;
    writeln!(o, "   {bob}: AccountOpened -> version {}, position {}", r.stream_version, r.first_position)?;

    writeln!(o, "2. Deposits, two events in one atomic append")?;
    let r = store.append(
        &ann,
        ExpectedVersion::Exact(1),
        [
            NewEvent::json("Deposited", &json!({"amount": 100})),
            NewEvent::json("Deposited", &json!({"amount": 50})),
        ],
    )?;
    writeln!(
        o,
        "   {ann}: 2 x Deposited -> version {}, positions {}..={}",
        r.stream_version, r.first_position, r.last_position
    )?;
    let after_deposits = r.last_position;

    writeln!(o, "3. A transfer: both accounts change in one commit, or neither")?;
    let correlation = Uuid::now_v7();
    let meta = eventfold::EventMetadata::new().correlation_id(correlation).user_id("teller-7");
    let res = store.append_many([
        (
            ann.as_str(),
            ExpectedVersion::Exact(3),
            vec![NewEvent::json("Withdrawn", &json!({"amount": 30, "to": bob})).with_metadata(meta.clone())],
        ),
        (
            bob.as_str(),
            ExpectedVersion::Exact(1),
            vec![NewEvent::json("Deposited", &json!({"amount": 30, "from": ann})).with_metadata(meta)],
        ),
    ])?;
    writeln!(
        o,
        "   positions {} and {}, correlation id {correlation}",
        res[0].first_position, res[1].first_position
    )?;

    writeln!(o, "4. A stale writer is refused (optimistic concurrency)")?;
    match store.append(
        &ann,
        ExpectedVersion::Exact(1),
        [NewEvent::json("Withdrawn", &json!({"amount": 500}))],
    ) {
        Err(e @ Error::WrongExpectedVersion { .. }) => writeln!(o, "   refused: {e}; nothing was written")?,
        Err(e) => return Err(e.into()),
        Ok(_) => bail!("the stale append was accepted; the store did not check the expected version"),
    }

    writeln!(o, "5. A retried request with the same event id is stored once")?;
    let id = Uuid::now_v7();
    let place = || NewEvent::json("OrderPlaced", &json!({"account": ann, "total": 20})).with_id(id);
    let first = store.append(&order, ExpectedVersion::NoStream, [place()])?;
    let again = store.append(&order, ExpectedVersion::NoStream, [place()])?;
    writeln!(
        o,
        "   {order}: first at position {}, retry answered with position {} (already stored: {})",
        first.first_position, again.first_position, again.already_stored
    )?;

    writeln!(o, "6. A projection keeps a balances read model (in {}/projections)", ctx.data.display())?;
    let runner = ProjectionRunner::new(&store)?.register(Balances)?;
    for status in runner.run_until_caught_up()? {
        writeln!(
            o,
            "   projection {}: checkpoint {}, lag {} events",
            status.name, status.checkpoint, status.lag_events
        )?;
    }
    let model = store.projection::<Balances>();
    let now_ann = model.get::<i64>(&ann)?.unwrap_or(0);
    for account in [&ann, &bob] {
        writeln!(o, "   {account}: balance {}", model.get::<i64>(account)?.unwrap_or(0))?;
    }

    writeln!(o, "7. A snapshot of {ann}'s generic JSON-merge state (each field's latest value)")?;
    let snap = store.snapshot_json_state(&ann)?;
    writeln!(o, "   saved at version {}: {}", snap.version, snap.state)?;

    writeln!(o, "8. Temporal queries: {ann} as it was after the deposits (position {after_deposits})")?;
    let past = balances_of(&store, &ann, after_deposits)?;
    writeln!(o, "   balance then: {past} (now: {now_ann})")?;
    let at = store.read()?.event(after_deposits)?.map_or(0, |e| e.recorded_at());
    let then = store.json_state_as_of(&ann, None, Some(at))?;
    writeln!(o, "   state as of {}: version {}, {}", output::time(at), then.version, then.state)?;

    let stats = store.stats()?;
    writeln!(
        o,
        "\nThe store now holds {} events in {} streams ({}).",
        stats.head,
        stats.streams,
        output::size(stats.size_on_disk)
    )?;
    writeln!(o, "\nWhere to look next:")?;
    let data = ctx.data.display();
    for cmd in [
        format!("eventfold --data {data} read {ann}"),
        format!("eventfold --data {data} read --all --category account"),
        format!("eventfold --data {data} streams --prefix account-"),
        format!("eventfold --data {data} event {}", first.event_ids[0]),
        format!("eventfold --data {data} state {ann} --as-of-version 3"),
        format!("eventfold --data {data} snapshot list"),
        format!("eventfold --data {data} tail --category account   (then append from another shell)"),
        format!("eventfold --data {data} stats"),
        format!("eventfold --data {data} verify"),
        format!("eventfold --data {data} serve --stdio   (then type JSON requests, see docs/protocol.md)"),
    ] {
        writeln!(o, "  {cmd}")?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

/// One account's balance from its events up to a global position.
fn balances_of(store: &Store, account: &str, position: u64) -> anyhow::Result<i64> {
    let mut total = 0;
    for e in store.read_stream_batched(account, ReadStream::forward().up_to_position(position), 1024)? {
        let e = e?;
        total = after(total, &e)?;
    }
    Ok(total)
}

/// `balance` after `event`; an error when it does not fit in 64 bits.
fn after(balance: i64, event: &RecordedEvent) -> eventfold::Result<i64> {
    let data = event.payload_json()?;
    let amount = data.get("amount").and_then(serde_json::Value::as_i64).unwrap_or(0);
    let new = match event.event_type.as_str() {
        "Deposited" => balance.checked_add(amount),
        "Withdrawn" => balance.checked_sub(amount),
        _ => Some(balance),
    };
    new.ok_or_else(|| {
        Error::handler(format!(
            "the balance of {} does not fit in 64 bits after the event at position {}",
            event.stream_id, event.position
        ))
    })
}

/// The demo's read model: each account's balance, keyed by stream id.
pub struct Balances;

impl Projection for Balances {
    const NAME: &'static str = "demo_balances";
    const VERSION: u32 = 1;

    fn filter(&self) -> Filter {
        Filter::new().category("account")
    }

    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> eventfold::Result<()> {
        let balance = ctx.get::<i64>(&event.stream_id)?.unwrap_or(0);
        ctx.put(&event.stream_id, &after(balance, event)?)
    }
}
