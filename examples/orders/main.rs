//! Orders: an order aggregate with its rules, an order read model and an
//! analytics projection (both `Projection`s, kept up to date incrementally by
//! a `ProjectionRunner`), snapshots every 5
//! events, and a saga (payment -> inventory -> shipping) that compensates
//! completed steps in reverse order when one fails and recovers from a crash.
//!
//! ```text
//! cargo run --release --example orders [-- DIR]
//! ```
//!
//! Without DIR it runs in a temporary directory. Every claim it prints is
//! checked; it exits non-zero if one does not hold.

// Amounts are cents, written `12_50` so they read as money.
#![allow(clippy::inconsistent_digit_grouping)]

#[path = "aggregate.rs"]
mod aggregate;
#[path = "read_model.rs"]
mod read_model;
#[path = "saga.rs"]
mod saga;

use std::path::Path;
use std::process::ExitCode;

use eventfold::{EventMetadata, Projection, ProjectionRunner, Repository, SnapshotPolicy, Store};

use aggregate::{Item, Order, OrderCommand, OrderError, Status};
use read_model::{Analytics, OrderAnalytics, OrderView, OrderViews, OrderViewsTwice};
use saga::{Faults, Orchestrator, RunOutcome, SagaEvent, SagaStatus, Step};

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

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn item(sku: &str, quantity: u32, unit_price: u64) -> Item {
    Item { sku: sku.to_string(), quantity, unit_price }
}

fn place(orders: &Repository<Order>, id: &str, customer: &str, items: &[Item]) -> Result<(), BoxError> {
    let meta = EventMetadata::new().user_id(customer);
    orders.execute(id, OrderCommand::PlaceOrder { customer_id: customer.to_string() }, meta.clone())?;
    for i in items {
        orders.execute(id, OrderCommand::AddItem { item: i.clone() }, meta.clone())?;
    }
    Ok(())
}

fn expect_rejected(
    orders: &Repository<Order>,
    id: &str,
    label: &str,
    command: OrderCommand,
    expected: OrderError,
) -> Result<(), BoxError> {
    let result = orders.execute(id, command, EventMetadata::new().user_id("clerk"));
    let shown = match &result {
        Ok(_) => "accepted".to_string(),
        Err(e) => e.to_string(),
    };
    println!("  {label} on {id}: {shown}");
    check(
        &format!("{label} is refused"),
        result.err().and_then(|e| e.rejection().map(|r| *r == expected)) == Some(true),
    )
}

pub fn run(dir: &Path) -> Result<(), BoxError> {
    let store = Store::open(dir)?;
    let orders = Repository::<Order>::new(store.clone()).snapshot_policy(SnapshotPolicy::EveryNEvents(5));
    let mut orchestrator = Orchestrator {
        orders: orders.clone(),
        sagas: Repository::new(store.clone()),
        reservations: Repository::new(store.clone()),
        log: Vec::new(),
    };
    let runner = ProjectionRunner::new(&store)?
        .register(OrderViews)?
        .register(OrderAnalytics)?
        .register(OrderViewsTwice)?;
    let basket = [item("book", 2, 12_50), item("pen", 3, 1_99), item("lamp", 1, 34_00)];

    println!("== sagas ==");
    let scenarios: [(&str, &str, Faults); 4] = [
        ("o-1", "succeeds", Faults::default()),
        ("o-2", "payment fails", Faults { fail_at: Some(Step::Payment), ..Faults::default() }),
        ("o-3", "inventory fails", Faults { fail_at: Some(Step::Inventory), ..Faults::default() }),
        ("o-4", "shipping fails", Faults { fail_at: Some(Step::Shipping), ..Faults::default() }),
    ];
    let mut outcomes = Vec::new();
    for (id, label, faults) in scenarios {
        println!("-- {id}: {label}");
        place(&orders, id, "cust-7", &basket)?;
        outcomes.push(orchestrator.run(id, faults)?);
        catch_up(&runner)?;
    }
    check(
        "o-1 completed, o-2 failed, o-3 and o-4 compensated",
        outcomes
            == [
                RunOutcome::Finished(SagaStatus::Completed),
                RunOutcome::Finished(SagaStatus::Failed),
                RunOutcome::Finished(SagaStatus::Compensated),
                RunOutcome::Finished(SagaStatus::Compensated),
            ],
    )?;
    let sagas = orchestrator.sagas.clone();
    let compensated = |id: &str| -> Result<Vec<Step>, BoxError> {
        Ok(sagas
            .history(id)?
            .into_iter()
            .filter_map(|e| match e.event {
                SagaEvent::StepCompensated { step } => Some(step),
                _ => None,
            })
            .collect())
    };
    check("o-2 compensated nothing", compensated("o-2")?.is_empty())?;
    check("o-3 refunded the payment", compensated("o-3")? == [Step::Payment])?;
    check(
        "o-4 released inventory, then refunded the payment",
        compensated("o-4")? == [Step::Inventory, Step::Payment],
    )?;

    println!("-- o-5: the process crashes after payment, then restarts");
    place(&orders, "o-5", "cust-8", &basket[..1])?;
    let first = orchestrator.run("o-5", Faults { crash_after: Some(Step::Payment), ..Faults::default() })?;
    let second = orchestrator.run("o-5", Faults::default())?;
    check(
        "o-5 crashed, then resumed and completed",
        (first, second) == (RunOutcome::Crashed, RunOutcome::Finished(SagaStatus::Completed)),
    )?;

    println!("-- o-6: shipping fails, the process crashes while compensating, then restarts");
    place(&orders, "o-6", "cust-8", &basket[1..])?;
    let faults =
        Faults { fail_at: Some(Step::Shipping), crash_while_compensating: true, ..Faults::default() };
    let first = orchestrator.run("o-6", faults)?;
    let second = orchestrator.run("o-6", Faults::default())?;
    check(
        "o-6 crashed, then finished compensating",
        (first, second) == (RunOutcome::Crashed, RunOutcome::Finished(SagaStatus::Compensated)),
    )?;
    check(
        "o-6 released inventory, then refunded the payment",
        compensated("o-6")? == [Step::Inventory, Step::Payment],
    )?;
    check("o-6's reservation is released", orchestrator.reservations.load("o-6")?.state.released)?;

    println!("-- o-7: an order left pending");
    place(&orders, "o-7", "cust-9", &[item("mug", 4, 6_00)])?;

    println!("== order rules ==");
    expect_rejected(
        &orders,
        "o-1",
        "adding an item to a shipped order",
        OrderCommand::AddItem { item: item("x", 1, 1) },
        OrderError::ItemsClosed(Status::Shipped),
    )?;
    expect_rejected(
        &orders,
        "o-2",
        "adding an item to a cancelled order",
        OrderCommand::AddItem { item: item("x", 1, 1) },
        OrderError::ItemsClosed(Status::Cancelled),
    )?;
    expect_rejected(
        &orders,
        "o-2",
        "paying for a cancelled order",
        OrderCommand::ProcessPayment { payment_id: "p".into() },
        OrderError::PaymentOnCancelled,
    )?;
    expect_rejected(
        &orders,
        "o-7",
        "shipping before payment",
        OrderCommand::ShipOrder,
        OrderError::ShipBeforePayment,
    )?;
    expect_rejected(
        &orders,
        "o-1",
        "cancelling a shipped order",
        OrderCommand::CancelOrder { reason: "late".into() },
        OrderError::CancelShipped,
    )?;

    println!("== snapshots every 5 events ==");
    let o1 = orders.load("o-1")?;
    let versions = store.read()?.snapshot_versions("order-o-1")?;
    println!(
        "  order-o-1: version {}, snapshots at {versions:?}, load used snapshot {:?} + {} events",
        o1.version, o1.report.snapshot_version, o1.report.events_replayed
    );
    check("o-1 has a snapshot at version 5", versions.contains(&5))?;
    check("o-1 loads from its snapshot", o1.report.snapshot_version.is_some())?;
    check("snapshot + tail equals a full replay", o1.state == orders.replay("o-1")?.state)?;

    println!("== read model and analytics ==");
    let checkpoint = catch_up(&runner)?;
    println!("  projections caught up to position {checkpoint}");
    let views = order_views(&store)?;
    println!(
        "  {:<5} {:<7} {:<10} {:>5} {:>9} {:<9} {:>7} {:>9} {:>3}",
        "order", "cust", "status", "items", "total", "payment", "shipped", "cancelled", "v"
    );
    for v in &views {
        println!(
            "  {:<5} {:<7} {:<10} {:>5} {:>9} {:<9} {:>7} {:>9} {:>3}",
            v.order_id,
            v.customer_id,
            v.status.name(),
            v.items.len(),
            money(v.total_amount),
            v.payment_id.as_deref().unwrap_or("-"),
            if v.shipped_at.is_some() { "yes" } else { "-" },
            if v.cancelled_at.is_some() { "yes" } else { "-" },
            v.version
        );
    }
    let a = analytics(&store)?;
    println!(
        "  revenue {} | orders {} | paid {} | average {} | cancelled revenue {} | by status {:?}",
        money(a.total_revenue),
        a.total_orders,
        a.paid_orders,
        money(a.average_order_value()),
        money(a.cancelled_revenue),
        a.orders_by_status.iter().map(|(s, n)| format!("{}={n}", s.name())).collect::<Vec<_>>()
    );
    let status_of = |id: &str| views.iter().find(|v| v.order_id == id).map(|v| v.status);
    check(
        "statuses: o-1 o-5 shipped; o-2 o-3 o-4 o-6 cancelled; o-7 pending",
        ["o-1", "o-5"].iter().all(|id| status_of(id) == Some(Status::Shipped))
            && ["o-2", "o-3", "o-4", "o-6"].iter().all(|id| status_of(id) == Some(Status::Cancelled))
            && status_of("o-7") == Some(Status::Pending),
    )?;
    check(
        "refunded orders carry no payment id; shipped ones do",
        views.iter().all(|v| (v.status == Status::Shipped) == v.payment_id.is_some()),
    )?;
    for v in &views {
        let o = orders.load(&v.order_id)?;
        if o.state.status != v.status || o.state.total() != v.total_amount || o.version != v.version {
            return check(&format!("read model of {} matches the aggregate", v.order_id), false);
        }
    }
    check("every order view matches its aggregate", true)?;
    check("analytics equal a recomputation from the views", a == Analytics::recompute(&views))?;
    let basket_total: u64 = basket.iter().map(Item::total).sum();
    check(
        "revenue is o-1 + o-5",
        a.total_revenue == basket_total + basket[0].total() && a.paid_orders == 2 && a.total_orders == 7,
    )?;

    runner.rebuild(OrderViews::NAME)?;
    runner.rebuild(OrderAnalytics::NAME)?;
    catch_up(&runner)?;
    check(
        "a rebuild from position 1 equals the incremental model",
        order_views(&store)? == views && analytics(&store)? == a,
    )?;
    let twice: Vec<OrderView> =
        store.projection::<OrderViewsTwice>().entries()?.into_iter().map(|(_, v)| v).collect();
    check("applying every event twice gives the same model", twice == views)?;
    check(
        "catching up again finds nothing new",
        catch_up(&runner)? == checkpoint && order_views(&store)? == views,
    )?;

    println!("== saga log ({} lines) ==", orchestrator.log.len());
    check(
        "the log names every saga state reached",
        ["completed", "failed", "compensated"]
            .iter()
            .all(|s| orchestrator.log.iter().any(|l| l.ends_with(&format!("state {s}")))),
    )?;
    store.close()?;
    Ok(())
}

/// Runs every projection to the head; fails if one of them failed.
/// Returns the order views' checkpoint.
fn catch_up(runner: &ProjectionRunner) -> Result<u64, BoxError> {
    let mut checkpoint = 0;
    for status in runner.run_until_caught_up()? {
        if status.name == OrderViews::NAME {
            checkpoint = status.checkpoint;
        }
    }
    Ok(checkpoint)
}

/// Every order's view, in order id order.
fn order_views(store: &Store) -> Result<Vec<OrderView>, BoxError> {
    Ok(store.projection::<OrderViews>().entries()?.into_iter().map(|(_, v)| v).collect())
}

fn analytics(store: &Store) -> Result<Analytics, BoxError> {
    Ok(store.projection::<OrderAnalytics>().get("totals")?.unwrap_or_default())
}

fn main() -> ExitCode {
    let temp = tempfile::tempdir();
    let dir = match (std::env::args_os().nth(1), &temp) {
        (Some(a), _) => Path::new(&a).to_path_buf(),
        (None, Ok(t)) => t.path().to_path_buf(),
        (None, Err(e)) => {
            eprintln!("orders: cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("orders example in {}", dir.display());
    match run(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orders: {e}");
            ExitCode::FAILURE
        }
    }
}
