//! Projections: incremental runs, restarts, rebuilds, failures, live following.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use eventfold::{
    Error, ExpectedVersion, Filter, NewEvent, Projection, ProjectionContext, ProjectionRunner,
    ProjectionState, RecordedEvent, Result, Store,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::common::{ev, temp_store};

// ---- an analytics projection: order totals and counts by status ----------

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    status: String,
    amount: u64,
    /// The upstream sequence number of the last message applied: messages
    /// delivered twice carry the same number and are ignored.
    seq: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Totals {
    orders: u64,
    amount: u64,
    by_status: BTreeMap<String, u64>,
}

fn apply_order(ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()> {
    #[derive(Deserialize)]
    struct Msg {
        seq: u64,
        #[serde(default)]
        amount: u64,
        #[serde(default)]
        status: String,
    }
    let msg: Msg = event.payload_as()?;
    let key = format!("order/{}", event.stream_id);
    let old: Option<Order> = ctx.get(&key)?;
    if old.as_ref().is_some_and(|o| o.seq >= msg.seq) {
        return Ok(());
    }
    let mut totals: Totals = ctx.get("totals")?.unwrap_or_default();
    let new = match (&old, event.event_type.as_str()) {
        (None, "OrderPlaced") => {
            totals.orders += 1;
            totals.amount += msg.amount;
            Order { status: "placed".into(), amount: msg.amount, seq: msg.seq }
        }
        (Some(o), "OrderStatusChanged") => Order { status: msg.status.clone(), seq: msg.seq, ..o.clone() },
        _ => return Err(Error::handler(format!("unexpected {} for {key}", event.event_type))),
    };
    if let Some(o) = &old {
        let left = totals.by_status.get(&o.status).map_or(0, |n| n.saturating_sub(1));
        if left == 0 {
            totals.by_status.remove(&o.status);
        } else {
            totals.by_status.insert(o.status.clone(), left);
        }
    }
    *totals.by_status.entry(new.status.clone()).or_default() += 1;
    ctx.put(&key, &new)?;
    ctx.put("totals", &totals)
}

macro_rules! order_projection {
    ($ty:ident, $name:literal, $version:literal) => {
        struct $ty;
        impl Projection for $ty {
            const NAME: &'static str = $name;
            const VERSION: u32 = $version;
            fn filter(&self) -> Filter {
                Filter::new().category("order")
            }
            fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()> {
                apply_order(ctx, event)
            }
        }
    };
}

order_projection!(Orders, "orders", 1);
order_projection!(OrdersV2, "orders", 2);
order_projection!(OrdersFresh, "orders_fresh", 1);

fn place(store: &Store, order: u64, seq: u64, amount: u64) {
    store
        .append(
            &format!("order-{order}"),
            ExpectedVersion::Any,
            [NewEvent::json("OrderPlaced", &json!({"seq": seq, "amount": amount}))],
        )
        .unwrap();
}

fn set_status(store: &Store, order: u64, seq: u64, status: &str) {
    store
        .append(
            &format!("order-{order}"),
            ExpectedVersion::Any,
            [NewEvent::json("OrderStatusChanged", &json!({"seq": seq, "status": status}))],
        )
        .unwrap();
}

/// The upstream feed of one order: placed, paid, and for odd ids shipped.
fn feed(store: &Store, order: u64) {
    place(store, order, 1, 10 * order);
    set_status(store, order, 2, "paid");
    if order % 2 == 1 {
        set_status(store, order, 3, "shipped");
    }
}

fn totals<P: Projection>(store: &Store) -> Totals {
    store.projection::<P>().get("totals").unwrap().unwrap_or_default()
}

#[test]
fn analytics_projection_is_incremental_and_idempotent_under_duplicate_delivery() {
    let (_dir, store) = temp_store();
    store.append("user-1", ExpectedVersion::Any, [ev("Registered", 1)]).unwrap();
    let runner = ProjectionRunner::new(&store).unwrap().register(Orders).unwrap();
    for order in 1..=4 {
        feed(&store, order);
    }
    runner.run_until_caught_up().unwrap();
    let once = totals::<Orders>(&store);
    assert_eq!(once.orders, 4);
    assert_eq!(once.amount, 100);
    assert_eq!(once.by_status, BTreeMap::from([("paid".into(), 2), ("shipped".into(), 2)]));
    // Upstream delivers every message again (new event ids, same sequence numbers).
    for order in 1..=4 {
        feed(&store, order);
    }
    runner.run_until_caught_up().unwrap();
    assert_eq!(totals::<Orders>(&store), once);
    // And goes on incrementally.
    feed(&store, 5);
    let status = runner.run_until_caught_up().unwrap();
    let t = totals::<Orders>(&store);
    assert_eq!((t.orders, t.by_status["shipped"]), (5, 3));
    assert_eq!(status[0].state, ProjectionState::CaughtUp);
    assert_eq!(status[0].checkpoint, store.head().unwrap());
    assert_eq!(store.projection::<Orders>().count().unwrap(), 6, "five orders and the totals");
    let first = store.projection::<Orders>().scan::<Order>("order/", None, 2).unwrap();
    assert_eq!(first.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["order/order-1", "order/order-2"]);
    let page = store.projection::<Orders>().scan::<Order>("order/", Some("order/order-2"), 10).unwrap();
    assert_eq!(
        page.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["order/order-3", "order/order-4", "order/order-5"]
    );
    assert_eq!(page[0].1, Order { status: "shipped".into(), amount: 30, seq: 3 });
}

/// Counts applications, so a re-application after a restart would show.
struct Applied;
impl Projection for Applied {
    const NAME: &'static str = "applied";
    const VERSION: u32 = 1;
    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()> {
        ctx.update("count", |n: &mut u64| *n += 1)?;
        ctx.put(&format!("seen/{:08}", event.position), &event.event_type)
    }
}

#[test]
fn restart_resumes_at_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append("a-1", ExpectedVersion::Any, (0..30).map(|n| ev("X", n))).unwrap();
        ProjectionRunner::new(&store)
            .unwrap()
            .register(Applied)
            .unwrap()
            .with_batch_size(7)
            .run_until_caught_up()
            .unwrap();
        store.append("a-1", ExpectedVersion::Any, (0..5).map(|n| ev("Y", n))).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.projection::<Applied>().checkpoint().unwrap(), 30);
    ProjectionRunner::new(&store).unwrap().register(Applied).unwrap().run_until_caught_up().unwrap();
    let model = store.projection::<Applied>();
    assert_eq!(model.get::<u64>("count").unwrap(), Some(35));
    assert_eq!(model.checkpoint().unwrap(), 35);
    assert_eq!(model.get::<String>("seen/00000031").unwrap().as_deref(), Some("Y"));
}

/// (done, total, finished, version readers saw)
type ProgressSeen = (u64, u64, bool, u32);

#[test]
fn version_bump_rebuilds_into_a_shadow_that_readers_do_not_see_until_the_swap() {
    let (_dir, store) = temp_store();
    for order in 1..=6 {
        feed(&store, order);
    }
    ProjectionRunner::new(&store).unwrap().register(Orders).unwrap().run_until_caught_up().unwrap();
    let before = totals::<Orders>(&store);
    let seen: Arc<Mutex<Vec<ProgressSeen>>> = Arc::default();
    let reader = store.clone();
    let log = seen.clone();
    let runner =
        ProjectionRunner::new(&store).unwrap().register(OrdersV2).unwrap().with_batch_size(4).on_progress(
            move |p| {
                // Runs after each rebuild commit: the application still reads v1.
                let version = reader.projection::<OrdersV2>().version().unwrap();
                log.lock().unwrap().push((p.done, p.total, p.finished, version));
            },
        );
    let status = runner.run_until_caught_up().unwrap();
    assert_eq!(status[0].version, 2);
    assert_eq!(status[0].state, ProjectionState::CaughtUp);
    let seen = seen.lock().unwrap().clone();
    let head = store.head().unwrap();
    assert!(seen.len() > 2, "several rebuild batches: {seen:?}");
    for (done, total, finished, version) in &seen {
        assert_eq!(*total, head);
        assert_eq!(*version, if *finished { 2 } else { 1 }, "{seen:?}");
        assert!(*done <= head);
    }
    assert_eq!(seen.last().unwrap(), &(head, head, true, 2));
    assert_eq!(totals::<OrdersV2>(&store), before);
}

#[test]
fn rebuild_while_appends_continue_ends_equal_to_a_build_from_scratch() {
    let (_dir, store) = temp_store();
    for order in 1..=50 {
        feed(&store, order);
    }
    ProjectionRunner::new(&store).unwrap().register(Orders).unwrap().run_until_caught_up().unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for order in 51..=150 {
                feed(&store, order);
            }
        })
    };
    let runner = ProjectionRunner::new(&store).unwrap().register(OrdersV2).unwrap().with_batch_size(16);
    runner.run_until_caught_up().unwrap();
    writer.join().unwrap();
    runner.run_until_caught_up().unwrap();
    ProjectionRunner::new(&store).unwrap().register(OrdersFresh).unwrap().run_until_caught_up().unwrap();
    let rebuilt = store.projection::<OrdersV2>().entries::<serde_json::Value>().unwrap();
    let fresh = store.projection::<OrdersFresh>().entries::<serde_json::Value>().unwrap();
    assert_eq!(rebuilt.len(), 151);
    assert_eq!(rebuilt, fresh);
    assert_eq!(store.projection::<OrdersV2>().version().unwrap(), 2);
}

struct Fragile;
impl Projection for Fragile {
    const NAME: &'static str = "fragile";
    const VERSION: u32 = 1;
    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()> {
        if event.event_type == "Poison" {
            return Err(Error::handler("cannot digest poison"));
        }
        ctx.update("count", |n: &mut u64| *n += 1)
    }
}

#[test]
fn a_failing_projection_stops_alone_with_its_position_and_error() {
    let (_dir, store) = temp_store();
    store.append("a-1", ExpectedVersion::Any, [ev("X", 1), ev("X", 2), ev("Poison", 3), ev("X", 4)]).unwrap();
    let runner = ProjectionRunner::new(&store)
        .unwrap()
        .register(Fragile)
        .unwrap()
        .register(Applied)
        .unwrap()
        .with_batch_size(2);
    runner.run_until_caught_up().unwrap_err();
    let status = runner.status().unwrap();
    let fragile = status.iter().find(|s| s.name == "fragile").unwrap();
    assert_eq!(
        fragile.state,
        ProjectionState::Failed { position: 3, error: "handler failed: cannot digest poison".into() }
    );
    assert_eq!(fragile.checkpoint, 2, "the batch with the poison was rolled back");
    assert_eq!(store.projection::<Fragile>().get::<u64>("count").unwrap(), Some(2));
    let applied = status.iter().find(|s| s.name == "applied").unwrap();
    assert_eq!((applied.checkpoint, &applied.state), (4, &ProjectionState::CaughtUp));
    assert!(matches!(runner.rebuild("nope"), Err(Error::UnknownProjection { .. })));
}

/// Guards `run_until_caught_up` against reporting success while a
/// projection has failed: the error names the projection, the position and
/// what `apply` said, in this run and in the next one (the projection stays
/// failed), while the projections that did not fail still catch up.
#[test]
fn run_until_caught_up_is_an_error_when_a_projection_failed() {
    let (_dir, store) = temp_store();
    store.append("a-1", ExpectedVersion::Any, [ev("X", 1), ev("Poison", 2), ev("X", 3)]).unwrap();
    let runner = ProjectionRunner::new(&store)
        .unwrap()
        .register(Applied)
        .unwrap()
        .register(Fragile)
        .unwrap()
        .with_batch_size(1);
    for run in 0..2 {
        let err = runner.run_until_caught_up().unwrap_err();
        assert!(matches!(err, Error::ProjectionFailed { position: 2, .. }), "run {run}: {err:?}");
        let text = err.to_string();
        assert!(
            text.contains("\"fragile\"")
                && text.contains("position 2")
                && text.contains("cannot digest poison"),
            "run {run}: {text}"
        );
    }
    assert_eq!(store.projection::<Applied>().checkpoint().unwrap(), 3);
    assert_eq!(store.projection::<Fragile>().checkpoint().unwrap(), 1);
    let ok = ProjectionRunner::new(&store).unwrap().register(Applied).unwrap().run_until_caught_up();
    assert_eq!(ok.unwrap()[0].state, ProjectionState::CaughtUp);
}

/// Tells the test which positions it applied (before its batch commits).
struct Signal(crossbeam_channel::Sender<u64>);
impl Projection for Signal {
    const NAME: &'static str = "signal";
    const VERSION: u32 = 1;
    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()> {
        ctx.put("last", &event.position)?;
        let _ = self.0.send(event.position);
        Ok(())
    }
}

#[test]
fn background_runner_follows_live_and_stops_cleanly() {
    let (_dir, store) = temp_store();
    store.append("a-1", ExpectedVersion::Any, [ev("X", 1)]).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let running = ProjectionRunner::new(&store).unwrap().register(Signal(tx)).unwrap().start().unwrap();
    assert_eq!(rx.recv().unwrap(), 1);
    store.append("a-1", ExpectedVersion::Any, [ev("X", 2), ev("X", 3)]).unwrap();
    assert_eq!((rx.recv().unwrap(), rx.recv().unwrap()), (2, 3));
    running.rebuild("signal").unwrap();
    assert_eq!((rx.recv().unwrap(), rx.recv().unwrap(), rx.recv().unwrap()), (1, 2, 3));
    running.stop().unwrap();
    assert_eq!(store.projection::<Signal>().get::<u64>("last").unwrap(), Some(3));
    assert_eq!(store.projection::<Signal>().checkpoint().unwrap(), 3);
}

#[test]
fn closing_the_store_ends_the_background_runner() {
    let (_dir, store) = temp_store();
    let (tx, _rx) = crossbeam_channel::unbounded();
    let running = ProjectionRunner::new(&store).unwrap().register(Signal(tx)).unwrap().start().unwrap();
    store.clone().close().unwrap();
    // No stop request: the thread ends because it saw the close.
    running.join().unwrap();
}

#[test]
fn read_models_are_readable_from_a_read_only_store_and_report_lag() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append("a-1", ExpectedVersion::Any, (0..10).map(|n| ev("X", n))).unwrap();
        let runner = ProjectionRunner::new(&store).unwrap().register(Applied).unwrap();
        assert_eq!(runner.status().unwrap()[0].state, ProjectionState::Idle);
        runner.run_until_caught_up().unwrap();
        store.append("a-1", ExpectedVersion::Any, [ev("Y", 1)]).unwrap();
        let status = &runner.status().unwrap()[0];
        assert_eq!((status.checkpoint, status.head, status.lag_events), (10, 11, 1));
        assert_eq!(status.state, ProjectionState::Running);
        assert!(status.events_per_sec > 0.0);
        // Never registered, so it reads as empty and nothing is created for it.
        assert_eq!(store.projection::<Fragile>().count().unwrap(), 0);
        store.close().unwrap();
    }
    let store = Store::builder(dir.path()).open_read_only().unwrap();
    let model = store.projection::<Applied>();
    assert_eq!((model.get::<u64>("count").unwrap(), model.checkpoint().unwrap()), (Some(10), 10));
    assert_eq!(model.version().unwrap(), 1);
    assert_eq!(store.projection::<Fragile>().get::<u64>("count").unwrap(), None);
    assert!(matches!(ProjectionRunner::new(&store), Err(Error::ReadOnly)));
}

// ---- the context's write-back cache ------------------------------------

/// Exercises every way `apply` can touch a document it updated earlier in
/// the same batch: read it back, update it as another type, scan it,
/// overwrite it, delete it.
struct CacheProbe;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Counter {
    n: u64,
}

impl Projection for CacheProbe {
    const NAME: &'static str = "cache_probe";
    const VERSION: u32 = 1;

    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()> {
        ctx.update("count", |c: &mut Counter| c.n += 1)?;
        let seen: Counter = ctx.get("count")?.unwrap_or_default();
        ctx.update("seen", |s: &mut Counter| s.n = seen.n)?;
        // The same document as another type: the counter must carry over.
        ctx.update("count", |v: &mut serde_json::Value| {
            v["last"] = json!(event.position);
        })?;
        ctx.update(&format!("tmp/{}", event.position), |c: &mut Counter| c.n = event.position)?;
        let tmp: Vec<(String, Counter)> = ctx.scan("tmp/", 100)?;
        if tmp.len() != 1 {
            return Err(Error::handler(format!("scan saw {} tmp documents, not 1", tmp.len())));
        }
        if !ctx.delete(&format!("tmp/{}", event.position))? {
            return Err(Error::handler("deleting a document updated in this batch said it did not exist"));
        }
        ctx.update("overwritten", |c: &mut Counter| c.n += 100)?;
        ctx.put("overwritten", &Counter { n: event.position })?;
        Ok(())
    }
}

/// Guards the projection context's write-back cache: reads inside a batch
/// see the batch's own updates, and what commits is what `apply` last wrote.
#[test]
fn documents_updated_in_a_batch_read_back_and_commit_as_last_written() {
    let (_dir, store) = temp_store();
    for i in 0..25u64 {
        store.append(&format!("s-{}", i % 3), ExpectedVersion::Any, [ev("E", i)]).unwrap();
    }
    let runner = ProjectionRunner::new(&store).unwrap().with_batch_size(10).register(CacheProbe).unwrap();
    runner.run_until_caught_up().unwrap();
    let model = store.projection::<CacheProbe>();
    let count: serde_json::Value = model.get("count").unwrap().unwrap();
    assert_eq!(count, json!({ "n": 25, "last": 25 }));
    assert_eq!(model.get::<Counter>("seen").unwrap(), Some(Counter { n: 25 }));
    assert_eq!(model.get::<Counter>("overwritten").unwrap(), Some(Counter { n: 25 }));
    assert!(model.scan::<Counter>("tmp/", None, 100).unwrap().is_empty());
    assert_eq!(model.count().unwrap(), 3);
}

/// Guards backups of read models: `backup_to` copies `projections/` before
/// the log, so in the copy a model's checkpoint is never past the log's head,
/// and a runner on the restored store catches up from that checkpoint.
#[test]
fn backup_copies_read_models_which_catch_up_on_the_copy() {
    let (dir, store) = temp_store();
    for i in 0..20u64 {
        store.append(&format!("s-{}", i % 4), ExpectedVersion::Any, [ev("E", i)]).unwrap();
    }
    let runner = ProjectionRunner::new(&store).unwrap().register(CacheProbe).unwrap();
    runner.run_until_caught_up().unwrap();
    let target = dir.path().join("backup");
    store.backup_to(&target, true).unwrap();
    drop(runner);
    store.close().unwrap();

    let copy = Store::open(&target).unwrap();
    let model = copy.projection::<CacheProbe>();
    assert_eq!(model.checkpoint().unwrap(), 20);
    assert!(model.checkpoint().unwrap() <= copy.head().unwrap());
    copy.append("s-9", ExpectedVersion::Any, [ev("E", 99)]).unwrap();
    ProjectionRunner::new(&copy).unwrap().register(CacheProbe).unwrap().run_until_caught_up().unwrap();
    let count: serde_json::Value = model.get("count").unwrap().unwrap();
    assert_eq!(count["n"], json!(21));
}

// ---- read models against the log they were made from ----------------------

/// Counts events per stream and remembers the ids it applied, so a model can
/// be compared with one recomputed from the log.
struct Seen;

impl Projection for Seen {
    const NAME: &'static str = "seen";
    const VERSION: u32 = 1;
    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()> {
        ctx.update(&event.stream_id, |ids: &mut Vec<String>| ids.push(event.event_id.to_string()))
    }
}

/// The `Seen` model recomputed from the log up to `checkpoint`.
fn seen_from_log(store: &Store, checkpoint: u64) -> BTreeMap<String, Vec<String>> {
    let mut model: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in store.read_all_batched(eventfold::ReadAll::new().up_to_position(checkpoint), 100).unwrap() {
        let e = e.unwrap();
        model.entry(e.stream_id).or_default().push(e.event_id.to_string());
    }
    model
}

fn copy_data_file(from: &std::path::Path, to: &std::path::Path) {
    std::fs::copy(from.join("data.mdb"), to.join("data.mdb")).unwrap();
}

/// Guards read models against a log that lost its end (a power cut under
/// `Relaxed`, or `data.mdb` restored from an older copy under newer
/// `projections/`): the checkpoint was trusted, the runner reported
/// `CaughtUp` with lag 0, the model kept events that no longer exist and
/// never applied the new events that took their positions. The model must
/// be refused by a read-only handle and rebuilt by the runner.
#[test]
fn a_read_model_ahead_of_its_log_is_refused_then_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..5 {
            store.append(&format!("a-{}", i % 2), ExpectedVersion::Any, [ev("E", i)]).unwrap();
        }
        store.close().unwrap();
    }
    // The log as a power cut would leave it: head 5.
    copy_data_file(dir.path(), saved.path());
    {
        let store = Store::open(dir.path()).unwrap();
        store.append("gone-1", ExpectedVersion::Any, [ev("E", 5), ev("E", 6), ev("E", 7)]).unwrap();
        ProjectionRunner::new(&store).unwrap().register(Seen).unwrap().run_until_caught_up().unwrap();
        assert_eq!(store.projection::<Seen>().checkpoint().unwrap(), 8);
        store.close().unwrap();
    }
    copy_data_file(saved.path(), dir.path());

    {
        let ro = Store::builder(dir.path()).open_read_only().unwrap();
        let err = ro.projection::<Seen>().get::<Vec<String>>("gone-1").unwrap_err();
        assert!(matches!(err, Error::ReadModelAhead { .. }), "{err}");
        let listed = ro.stored_projection("seen").unwrap().unwrap();
        assert!(listed.not_served.as_deref().unwrap_or("").contains("durable head is 5"), "{listed:?}");
        assert!(!ro.verify().unwrap().is_ok(), "verify reports the read model");
    }

    let store = Store::open(dir.path()).unwrap();
    // Three new events take positions 6–8 before the runner starts.
    store.append("new-1", ExpectedVersion::Any, [ev("E", 8), ev("E", 9), ev("E", 10)]).unwrap();
    let statuses =
        ProjectionRunner::new(&store).unwrap().register(Seen).unwrap().run_until_caught_up().unwrap();
    assert_eq!(statuses[0].checkpoint, 8);
    let model: BTreeMap<String, Vec<String>> =
        store.projection::<Seen>().entries().unwrap().into_iter().collect();
    assert_eq!(
        model,
        seen_from_log(&store, 8),
        "no event skipped, none applied twice, nothing from the lost log"
    );
    assert!(store.verify().unwrap().is_ok());
}

/// Guards the log identity: read models copied from another store were
/// served as this store's.
#[test]
fn read_models_of_another_store_are_refused() {
    let (a_dir, a) = temp_store();
    a.append("a-1", ExpectedVersion::Any, [ev("E", 1)]).unwrap();
    ProjectionRunner::new(&a).unwrap().register(Seen).unwrap().run_until_caught_up().unwrap();
    a.close().unwrap();
    let (b_dir, b) = temp_store();
    b.append("a-1", ExpectedVersion::Any, [ev("E", 1)]).unwrap();
    b.close().unwrap();
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::create_dir_all(to).unwrap();
        for f in ["data.mdb", "lock.mdb"] {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    };
    copy(&a_dir.path().join("projections"), &b_dir.path().join("projections"));
    let b = Store::open(b_dir.path()).unwrap();
    let err = ProjectionRunner::new(&b).unwrap_err();
    assert!(matches!(err, Error::ForeignReadModels { .. }), "{err}");
    assert!(err.to_string().contains("another store"), "{err}");
    let report = b.verify().unwrap();
    assert!(report.faults.iter().any(|f| f.area == "projections"), "{:?}", report.faults);
}

// ---- read your writes: waiting for a running projection ------------------

/// Long enough never to run out on a working runner; only a hang trips it.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// A wait that ends when the runner has applied the append: the model read
/// right after it holds the event, with no sleep in between.
#[test]
fn wait_for_returns_once_the_running_projection_applied_the_position() {
    let (_dir, store) = temp_store();
    let running = ProjectionRunner::new(&store)
        .unwrap()
        .register(Applied)
        .unwrap()
        .register(Orders)
        .unwrap()
        .start()
        .unwrap();
    for order in 1..=20 {
        place(&store, order, 1, 10);
        let last = store.head().unwrap();
        running.wait_for(last, PATIENCE).unwrap();
        assert_eq!(totals::<Orders>(&store).orders, order, "order {order}");
        assert_eq!(store.projection::<Applied>().get::<u64>("count").unwrap(), Some(order));
    }
    // One projection by name; a position already applied returns at once.
    running.wait_for_projection("orders", 1, std::time::Duration::ZERO).unwrap();
    let err = running.wait_for_projection("nope", 1, PATIENCE).unwrap_err();
    assert!(matches!(err, Error::UnknownProjection { .. }), "{err:?}");
    running.stop().unwrap();
}

#[test]
fn wait_for_a_failed_projection_is_projection_failed() {
    let (_dir, store) = temp_store();
    let running =
        ProjectionRunner::new(&store).unwrap().register(Fragile).unwrap().with_batch_size(1).start().unwrap();
    let r = store.append("a-1", ExpectedVersion::Any, [ev("X", 1), ev("Poison", 2)]).unwrap();
    let err = running.wait_for(r.last_position, PATIENCE).unwrap_err();
    assert!(
        matches!(&err, Error::ProjectionFailed { projection, position: 2, .. } if projection == "fragile"),
        "{err:?}"
    );
    // What it did apply (its own batch) can still be waited for.
    running.wait_for(1, PATIENCE).unwrap();
}

#[test]
fn wait_for_a_position_past_the_head_is_refused_at_once() {
    let (_dir, store) = temp_store();
    let running = ProjectionRunner::new(&store).unwrap().register(Applied).unwrap().start().unwrap();
    store.append("a-1", ExpectedVersion::Any, [ev("X", 1)]).unwrap();
    let err = running.wait_for(2, PATIENCE).unwrap_err();
    assert!(matches!(err, Error::PositionPastHead { position: 2, head: 1 }), "{err:?}");
    assert!(err.to_string().contains("last_position"), "{err}");
}

/// Blocks each `apply` until the test lets it through.
struct Gate(Mutex<crossbeam_channel::Receiver<()>>);
impl Projection for Gate {
    const NAME: &'static str = "gate";
    const VERSION: u32 = 1;
    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()> {
        let _ = self.0.lock().unwrap().recv();
        ctx.put("last", &event.position)
    }
}

#[test]
fn wait_for_times_out_on_a_position_not_applied_yet() {
    let (_dir, store) = temp_store();
    let (open, gate) = crossbeam_channel::unbounded();
    let running =
        ProjectionRunner::new(&store).unwrap().register(Gate(Mutex::new(gate))).unwrap().start().unwrap();
    let r = store.append("a-1", ExpectedVersion::Any, [ev("X", 1)]).unwrap();
    let err = running.wait_for(r.last_position, std::time::Duration::ZERO).unwrap_err();
    assert!(matches!(&err, Error::Timeout { position: 1, .. }), "{err:?}");
    assert!(err.is_retryable());
    open.send(()).unwrap();
    running.wait_for(r.last_position, PATIENCE).unwrap();
    assert_eq!(store.projection::<Gate>().get::<u64>("last").unwrap(), Some(1));
}

/// Read models apply only durable events: under `Relaxed` and `NoSync` the
/// wait still ends, because the runner asks the writer for a sync.
#[test]
fn wait_for_ends_under_relaxed_and_nosync() {
    for durability in [eventfold::Durability::Relaxed, eventfold::Durability::NoSync] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path()).durability(durability).open().unwrap();
        let running = ProjectionRunner::new(&store).unwrap().register(Applied).unwrap().start().unwrap();
        for n in 1..=5 {
            let r = store.append("a-1", ExpectedVersion::Any, [ev("X", n)]).unwrap();
            running.wait_for(r.last_position, PATIENCE).unwrap();
            assert_eq!(store.projection::<Applied>().get::<u64>("count").unwrap(), Some(n), "{durability:?}");
        }
    }
}
