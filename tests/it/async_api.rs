//! The async API (feature `async`): append tickets as futures, completed by
//! the writer thread's wake-up, and subscriptions as `Stream`s, woken by the
//! commit notifier.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use eventfold::{
    Durability, Error, ExpectedVersion, Filter, ReadAll, RecordedEvent, Store, SubscribeFrom,
    SubscriptionStream,
};
use futures_util::StreamExt;

use crate::common::{ev, temp_store};

/// Long enough never to fire on a working store; only a hang trips it.
const PATIENCE: Duration = Duration::from_secs(60);

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}

/// Awaits `f`, failing the test if it hangs.
async fn patiently<F: IntoFuture>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f).await.expect("hung: no wake-up came")
}

/// The next event of a stream, which must come.
async fn next_event(sub: &mut SubscriptionStream) -> RecordedEvent {
    patiently(sub.next()).await.expect("the stream ended early").unwrap()
}

/// A waker that counts its wake-ups, to poll by hand.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Count {
    fn woken(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One poll of the stream with `count`'s waker.
fn poll_next(
    sub: &mut SubscriptionStream,
    count: &Arc<Count>,
) -> Poll<Option<eventfold::Result<RecordedEvent>>> {
    sub.poll_next_unpin(&mut Context::from_waker(&Waker::from(count.clone())))
}

#[test]
fn an_awaited_ticket_completes_with_its_result() {
    let (_dir, store) = temp_store();
    current_thread().block_on(async {
        let r = store.submit("order-1", ExpectedVersion::NoStream, [ev("Placed", 1)]).unwrap().await.unwrap();
        assert_eq!((r.stream_id.as_str(), r.first_position, r.stream_version), ("order-1", 1, 1));
        let r = store
            .append_async("order-1", ExpectedVersion::Exact(1), [ev("Paid", 2), ev("Shipped", 3)])
            .await
            .unwrap();
        assert_eq!((r.first_position, r.last_position, r.stream_version), (2, 3, 3));
        // A stale expected version comes back through the future as it
        // does from `append`.
        match store.append_async("order-1", ExpectedVersion::Exact(1), [ev("Paid", 4)]).await {
            Err(Error::WrongExpectedVersion { actual: 3, .. }) => {}
            other => panic!("expected WrongExpectedVersion, got {other:?}"),
        }
        let many = store
            .submit_many([
                ("a-1", ExpectedVersion::NoStream, vec![ev("A", 1)]),
                ("b-1", ExpectedVersion::Any, vec![ev("B", 1)]),
            ])
            .unwrap()
            .results()
            .await
            .unwrap();
        assert_eq!(many.iter().map(|r| r.first_position).collect::<Vec<_>>(), vec![4, 5]);
        let many = store
            .append_many_async([
                ("a-1", ExpectedVersion::Exact(1), vec![ev("A", 2)]),
                ("c-1", ExpectedVersion::Any, vec![ev("C", 1)]),
            ])
            .await
            .unwrap();
        assert_eq!(many.iter().map(|r| r.stream_version).collect::<Vec<_>>(), vec![2, 1]);
        // The idempotent retry is recognised through the async path too.
        let e = ev("Once", 1).with_id(uuid::Uuid::now_v7());
        let first = store.append_async("once-1", ExpectedVersion::NoStream, [e.clone()]).await.unwrap();
        let again = store.append_async("once-1", ExpectedVersion::NoStream, [e]).await.unwrap();
        assert!(!first.already_stored && again.already_stored);
        assert_eq!(again.first_position, first.first_position);
    });
    // The blocking forms are untouched.
    assert_eq!(
        store
            .submit("order-1", ExpectedVersion::Exact(3), [ev("Closed", 5)])
            .unwrap()
            .wait()
            .unwrap()
            .stream_version,
        4
    );
}

/// Every awaiting task is woken by the writer thread when its commit is
/// answered: no task is lost, no append is answered twice, and positions
/// stay gapless however the tasks interleave on two worker threads.
#[test]
fn a_thousand_tasks_on_two_workers_each_await_their_append() {
    const TASKS: u64 = 1000;
    let (_dir, store) = temp_store();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store.append_async(&format!("task-{i}"), ExpectedVersion::NoStream, [ev("Done", i)]).await
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(patiently(task).await.unwrap().unwrap());
        }
        results
    });
    assert_eq!(results.len() as u64, TASKS);
    assert!(results.iter().all(|r| r.stream_version == 1 && !r.already_stored));
    let mut positions: Vec<u64> = results.iter().map(|r| r.first_position).collect();
    positions.sort_unstable();
    assert_eq!(positions, (1..=TASKS).collect::<Vec<_>>());
    assert_eq!(store.head().unwrap(), TASKS);
    let stats = store.stats().unwrap();
    assert_eq!((stats.requests, stats.rejected, stats.events_written), (TASKS, 0, TASKS));
}

#[test]
fn await_after_close_is_closed() {
    let (_dir, store) = temp_store();
    let queued = store.submit("a-1", ExpectedVersion::Any, [ev("A", 1)]).unwrap();
    store.clone().close().unwrap();
    current_thread().block_on(async {
        // Queued before the close: committed and answered.
        assert_eq!(patiently(queued).await.unwrap().first_position, 1);
        assert!(matches!(
            store.append_async("a-1", ExpectedVersion::Any, [ev("A", 2)]).await,
            Err(Error::Closed)
        ));
        assert!(matches!(
            store.append_many_async([("a-1", ExpectedVersion::Any, vec![ev("A", 3)])]).await,
            Err(Error::Closed)
        ));
    });
    assert!(matches!(store.submit("a-1", ExpectedVersion::Any, [ev("A", 4)]), Err(Error::Closed)));
}

/// The stream form of the catch-up/live rule: events committed before the
/// subscription, during its catch-up and after it went live each come
/// once, in position order.
#[test]
fn a_stream_catches_up_then_goes_live_with_a_concurrent_appender() {
    const SEEDED: u64 = 500;
    const LIVE: u64 = 300;
    let (_dir, store) = temp_store();
    for i in 0..SEEDED / 50 {
        store
            .append(&format!("seed-{}", i % 3), ExpectedVersion::Any, (0..50).map(|n| ev("Seeded", n)))
            .unwrap();
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let seen = runtime.block_on(async {
        let mut sub =
            store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap().with_batch_size(64).into_stream();
        let appender = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..LIVE {
                    store
                        .append_async(&format!("live-{}", i % 4), ExpectedVersion::Any, [ev("Live", i)])
                        .await
                        .unwrap();
                }
            })
        };
        let mut seen = Vec::new();
        while (seen.len() as u64) < SEEDED + LIVE {
            let e = next_event(&mut sub).await;
            seen.push((e.position, e.event_id));
        }
        patiently(appender).await.unwrap();
        seen
    });
    let all: Vec<_> = store
        .read()
        .unwrap()
        .all(ReadAll::new())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.position(), e.event_id())
        })
        .collect();
    assert_eq!(seen, all);
    assert_eq!(seen.len() as u64, SEEDED + LIVE);
}

/// Polled by hand: a caught-up stream is pending, a commit wakes its task
/// (the commit notifier, not a poll loop), and the next poll has the event.
#[test]
fn a_commit_wakes_a_pending_stream() {
    let (_dir, store) = temp_store();
    let mut sub =
        store.subscribe(SubscribeFrom::Start, Filter::new().category("order")).unwrap().into_stream();
    let count = Arc::new(Count::default());
    assert!(poll_next(&mut sub, &count).is_pending());
    store.append("order-1", ExpectedVersion::Any, [ev("Placed", 1)]).unwrap();
    assert_eq!(count.woken(), 1);
    match poll_next(&mut sub, &count) {
        Poll::Ready(Some(Ok(e))) => assert_eq!((e.position, e.event_type.as_str()), (1, "Placed")),
        other => panic!("expected the event, got {other:?}"),
    }
    assert!(poll_next(&mut sub, &count).is_pending());
}

/// Guards the durable-only path of a stream: a sync that makes events
/// durable without a commit must wake the stream, or a durable consumer's
/// stream would wait for the next commit (forever, on a quiet store).
#[test]
fn a_sync_without_a_commit_wakes_a_durable_only_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Relaxed)
        .sync_interval(Duration::from_secs(3600))
        .open()
        .unwrap();
    let consumer = store.consumer("mailer").unwrap();
    let mut sub = consumer.subscribe(Filter::new()).unwrap().into_stream();
    store.append("a-1", ExpectedVersion::Any, [ev("A", 1)]).unwrap();
    let count = Arc::new(Count::default());
    assert!(poll_next(&mut sub, &count).is_pending(), "the commit is not durable yet");
    let woken = count.woken();
    assert_eq!(store.sync().unwrap(), 1);
    assert!(count.woken() > woken, "the sync woke the stream");
    match poll_next(&mut sub, &count) {
        Poll::Ready(Some(Ok(e))) => assert_eq!(e.position, 1),
        other => panic!("expected the durable event, got {other:?}"),
    }
}

/// A durable consumer's stream under `Relaxed` and `NoSync` gets every
/// event without anyone calling `sync`: caught up, it asks the writer for
/// one, and the sync wakes it.
#[test]
fn a_durable_consumer_stream_delivers_under_relaxed_and_nosync() {
    for durability in [Durability::Relaxed, Durability::NoSync] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path()).durability(durability).open().unwrap();
        let consumer = store.consumer("mailer").unwrap();
        let mut sub = consumer.subscribe(Filter::new()).unwrap().into_stream();
        current_thread().block_on(async {
            for round in 1..=3u64 {
                // Appended while the stream waits, and then some before it looks.
                store.append_async("a-1", ExpectedVersion::Any, [ev("A", round)]).await.unwrap();
                let e = next_event(&mut sub).await;
                assert_eq!(e.position, round, "{durability:?}");
                assert!(store.durable_head().unwrap() >= round);
            }
        });
    }
}

#[test]
fn a_stream_ends_after_close_once_it_delivered_what_was_committed() {
    let (_dir, store) = temp_store();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    runtime.block_on(async {
        // One stream waits live when the store closes, one is behind.
        let live = store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap().into_stream();
        let behind =
            store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap().with_batch_size(2).into_stream();
        let collect = |sub: SubscriptionStream| {
            tokio::spawn(async move { sub.map(|e| e.unwrap().position).collect::<Vec<u64>>().await })
        };
        let live = collect(live);
        for i in 0..5 {
            store.append_async("a-1", ExpectedVersion::Any, [ev("A", i)]).await.unwrap();
        }
        store.clone().close().unwrap();
        let behind = collect(behind);
        assert_eq!(patiently(live).await.unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(patiently(behind).await.unwrap(), vec![1, 2, 3, 4, 5]);
        // Made after the close: the committed events, then the end.
        let late = store.subscribe(SubscribeFrom::AfterPosition(3), Filter::new()).unwrap().into_stream();
        assert_eq!(patiently(collect(late)).await.unwrap(), vec![4, 5]);
    });
}

/// On a read-only store no commit wakes the stream: it delivers what is
/// committed, then says so with an error and ends; it never spins.
#[test]
fn a_stream_on_a_read_only_store_ends_with_an_error_once_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append("a-1", ExpectedVersion::Any, [ev("A", 1), ev("A", 2)]).unwrap();
        store.close().unwrap();
    }
    let store = Store::builder(dir.path()).open_read_only().unwrap();
    let sub = store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap().into_stream();
    let items: Vec<_> = current_thread().block_on(sub.collect());
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap().position, 1);
    assert_eq!(items[1].as_ref().unwrap().position, 2);
    assert!(matches!(items[2], Err(Error::ReadOnlyStream)), "{:?}", items[2]);
}

/// Counts every event, for the async read-your-writes tests.
struct Counted;
impl eventfold::Projection for Counted {
    const NAME: &'static str = "counted";
    const VERSION: u32 = 1;
    fn apply(&self, ctx: &mut eventfold::ProjectionContext<'_>, _: &RecordedEvent) -> eventfold::Result<()> {
        ctx.update("count", |n: &mut u64| *n += 1)
    }
}

/// Read your writes from a task: the wait is woken by the runner's thread,
/// under `Sync` and under `Relaxed` (where the runner has the writer sync).
#[test]
fn wait_for_async_returns_once_the_projection_applied_the_position() {
    for durability in [Durability::Sync, Durability::Relaxed] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path()).durability(durability).open().unwrap();
        let running =
            eventfold::ProjectionRunner::new(&store).unwrap().register(Counted).unwrap().start().unwrap();
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
        runtime.block_on(async {
            for n in 1..=5u64 {
                let r = store.append_async("a-1", ExpectedVersion::Any, [ev("A", n)]).await.unwrap();
                patiently(running.wait_for_async(r.last_position)).await.unwrap();
                let count = store.projection::<Counted>().get::<u64>("count").unwrap();
                assert_eq!(count, Some(n), "{durability:?}");
            }
            patiently(running.wait_for_projection_async("counted", 5)).await.unwrap();
            let err = running.wait_for_async(6).await.unwrap_err();
            assert!(matches!(err, Error::PositionPastHead { position: 6, head: 5 }), "{err:?}");
            // Stopping the runner ends a wait it will never satisfy.
            store.append("a-1", ExpectedVersion::Any, [ev("A", 6)]).unwrap();
            let pending = running.wait_for_async(6);
            drop(running);
            match patiently(pending).await {
                Ok(()) | Err(Error::ProjectionsStopped { .. }) => {}
                Err(e) => panic!("{e:?}"),
            }
        });
    }
}

/// A task waits for a durable consumer that another task drives.
#[test]
fn wait_for_consumer_async_returns_once_the_consumer_committed() {
    let (_dir, store) = temp_store();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    runtime.block_on(async {
        let mut consumer = store.consumer("mailer").unwrap().commit_every(1);
        let mut sub = consumer.subscribe(Filter::new()).unwrap().into_stream();
        let driver = tokio::spawn(async move {
            for _ in 0..5 {
                let e = next_event(&mut sub).await;
                consumer.handle(&e, |_| Ok(())).unwrap();
            }
        });
        for n in 0..5u64 {
            let r = store.append_async("mail-1", ExpectedVersion::Any, [ev("Send", n)]).await.unwrap();
            patiently(store.wait_for_consumer_async("mailer", r.last_position)).await.unwrap();
            assert!(store.consumers().unwrap()[0].checkpoint >= r.last_position);
        }
        patiently(driver).await.unwrap();
        let err = store.wait_for_consumer_async("mailer", 6).await.unwrap_err();
        assert!(matches!(err, Error::PositionPastHead { position: 6, head: 5 }), "{err:?}");
        // Closing the store ends a wait that is still pending.
        store.append("mail-1", ExpectedVersion::Any, [ev("Send", 5)]).unwrap();
        let pending = tokio::spawn(store.wait_for_consumer_async("mailer", 6));
        tokio::task::yield_now().await;
        store.clone().close().unwrap();
        let err = patiently(pending).await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Closed), "{err:?}");
    });
}
