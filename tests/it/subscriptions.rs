//! Subscriptions and durable consumers.

use std::time::Duration;

use eventfold::{Error, ExpectedVersion, Filter, NewEvent, ReadAll, Store, SubscribeFrom};
use serde_json::json;

use crate::common::{ev, temp_store};

/// Long enough never to fire on a working store; only a hang trips it.
const PATIENCE: Duration = Duration::from_secs(60);

fn positions(sub: &mut eventfold::Subscription, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| sub.next_timeout(PATIENCE).unwrap().expect("an event within the patience window").position)
        .collect()
}

#[test]
fn catch_up_then_live_with_concurrent_writers_sees_each_position_once_in_order() {
    let (_dir, store) = temp_store();
    for i in 0..40 {
        store
            .append(&format!("seed-{}", i % 7), ExpectedVersion::Any, (0..50).map(|n| ev("Seeded", n)))
            .unwrap();
    }
    let mut sub = store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap().with_batch_size(64);
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    let n = 1 + i % 3;
                    store
                        .append(
                            &format!("w{w}-{}", i % 5),
                            ExpectedVersion::Any,
                            (0..n).map(|k| ev("Live", k)),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    let live: u64 = 3 * (0..100u64).map(|i| 1 + i % 3).sum::<u64>();
    let total = 2000 + live;
    let mut seen = Vec::with_capacity(total as usize);
    while (seen.len() as u64) < total {
        let e = sub.next_timeout(PATIENCE).unwrap().expect("writers are still appending");
        seen.push((e.position, e.event_id));
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(sub.try_next().unwrap(), None, "nothing beyond what was written");
    let all: Vec<_> = store
        .read_all_batched(ReadAll::new(), 500)
        .unwrap()
        .map(|e| e.map(|e| (e.position, e.event_id)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(seen, all);
    assert_eq!(seen.last().unwrap().0, total);
}

#[test]
fn filters_by_type_category_prefix_and_stream() {
    let (_dir, store) = temp_store();
    store.append("order-1", ExpectedVersion::Any, [ev("Placed", 1), ev("Paid", 2)]).unwrap();
    store.append("user-1", ExpectedVersion::Any, [ev("Registered", 3)]).unwrap();
    store.append("order-22", ExpectedVersion::Any, [ev("Placed", 4)]).unwrap();
    let got = |filter: Filter| {
        let mut sub = store.subscribe(SubscribeFrom::Start, filter).unwrap();
        let mut out = Vec::new();
        while let Some(e) = sub.try_next().unwrap() {
            out.push(e.position);
        }
        out
    };
    assert_eq!(got(Filter::new().event_type("Placed")), vec![1, 4]);
    assert_eq!(got(Filter::new().category("user")), vec![3]);
    assert_eq!(got(Filter::new().stream_prefix("order-2")), vec![4]);
    assert_eq!(got(Filter::new().stream("order-1")), vec![1, 2]);
    assert_eq!(got(Filter::new().category("order").event_type("Paid")), vec![2]);
}

#[test]
fn from_after_at_and_end_and_live_delivery() {
    let (_dir, store) = temp_store();
    store.append("a-1", ExpectedVersion::Any, (0..5).map(|n| ev("X", n))).unwrap();
    let mut after = store.subscribe(SubscribeFrom::AfterPosition(3), Filter::new()).unwrap();
    let mut at = store.subscribe(SubscribeFrom::AtPosition(3), Filter::new()).unwrap();
    let mut end = store.subscribe(SubscribeFrom::End, Filter::new()).unwrap();
    assert_eq!(end.next_timeout(Duration::ZERO).unwrap(), None);
    store.append("a-1", ExpectedVersion::Any, [ev("X", 6)]).unwrap();
    assert_eq!(positions(&mut after, 3), vec![4, 5, 6]);
    assert_eq!(positions(&mut at, 4), vec![3, 4, 5, 6]);
    assert_eq!(positions(&mut end, 1), vec![6]);
    assert_eq!(end.last_position(), 6);
}

#[test]
fn stream_subscription_starts_at_a_version_and_follows() {
    let (_dir, store) = temp_store();
    store.append("cart-1", ExpectedVersion::Any, (1..=3).map(|n| ev("Added", n))).unwrap();
    store.append("cart-2", ExpectedVersion::Any, [ev("Added", 9)]).unwrap();
    let mut from2 = store.subscribe_to_stream("cart-1", 2).unwrap();
    let mut later = store.subscribe_to_stream("cart-1", 5).unwrap();
    let mut fresh = store.subscribe_to_stream("cart-9", 1).unwrap();
    store.append("cart-1", ExpectedVersion::Any, (4..=5).map(|n| ev("Added", n))).unwrap();
    store.append("cart-9", ExpectedVersion::Any, [ev("Added", 1)]).unwrap();
    let versions = |s: &mut eventfold::Subscription, n: usize| -> Vec<u64> {
        (0..n).map(|_| s.next_timeout(PATIENCE).unwrap().unwrap().version).collect()
    };
    assert_eq!(versions(&mut from2, 4), vec![2, 3, 4, 5]);
    assert_eq!(versions(&mut later, 1), vec![5]);
    assert_eq!(versions(&mut fresh, 1), vec![1]);
    assert_eq!(from2.try_next().unwrap(), None);
}

#[test]
fn closing_the_store_ends_a_blocked_subscriber() {
    let (_dir, store) = temp_store();
    store.append("a-1", ExpectedVersion::Any, [ev("X", 1)]).unwrap();
    let sub = store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap();
    let reader = std::thread::spawn(move || sub.map(|e| e.unwrap().position).collect::<Vec<_>>());
    store.append("a-1", ExpectedVersion::Any, [ev("X", 2)]).unwrap();
    store.close().unwrap();
    assert_eq!(reader.join().unwrap(), vec![1, 2]);
}

#[test]
fn consumer_restarts_after_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append("a-1", ExpectedVersion::Any, (0..5).map(|n| ev("X", n))).unwrap();
        let mut c = store.consumer("indexer").unwrap();
        let mut sub = c.subscribe(Filter::new()).unwrap();
        for _ in 0..3 {
            let e = sub.try_next().unwrap().unwrap();
            c.ack(e.position).unwrap();
        }
        c.commit().unwrap();
        // Acked but never committed: delivered again after the restart.
        let e = sub.try_next().unwrap().unwrap();
        c.ack(e.position).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let c = store.consumer("indexer").unwrap();
    assert_eq!(c.checkpoint(), 3);
    let mut sub = c.subscribe(Filter::new()).unwrap();
    assert_eq!(positions(&mut sub, 2), vec![4, 5]);
    let list = store.consumers().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].name.as_str(), list[0].checkpoint, list[0].lag), ("indexer", 3, 2));
}

/// The handler's effect is done and marked, then the process dies before the
/// checkpoint is committed: after reopening, the events come again and the
/// dedup set stops the effect from running twice.
#[test]
fn dedup_set_prevents_double_effects_after_a_crash_between_effect_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut effects: Vec<u64> = Vec::new();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append("mail-1", ExpectedVersion::Any, (0..4).map(|n| ev("Send", n))).unwrap();
        let mut c = store.consumer("mailer").unwrap();
        let mut sub = c.subscribe(Filter::new()).unwrap();
        let first = sub.try_next().unwrap().unwrap();
        assert!(
            c.handle(&first, |e| {
                effects.push(e.position);
                Ok(())
            })
            .unwrap()
        );
        c.commit().unwrap();
        for _ in 0..2 {
            let e = sub.try_next().unwrap().unwrap();
            assert!(
                c.handle(&e, |e| {
                    effects.push(e.position);
                    Ok(())
                })
                .unwrap()
            );
        }
        // The crash: the handle goes away without its checkpoint commit.
        drop(sub);
        drop(c);
        store.close().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let info = &store.consumers().unwrap()[0];
    assert_eq!((info.checkpoint, info.pending_dedup), (1, 2));
    let mut c = store.consumer("mailer").unwrap();
    let mut sub = c.subscribe(Filter::new()).unwrap();
    let mut ran = Vec::new();
    while let Some(e) = sub.try_next().unwrap() {
        ran.push(
            c.handle(&e, |e| {
                effects.push(e.position);
                Ok(())
            })
            .unwrap(),
        );
    }
    assert_eq!(ran, vec![false, false, true], "positions 2 and 3 were already done");
    assert_eq!(effects, vec![1, 2, 3, 4]);
    c.commit().unwrap();
    let info = &store.consumers().unwrap()[0];
    assert_eq!((info.checkpoint, info.pending_dedup), (4, 0), "the checkpoint covers the dedup set");
}

#[test]
fn a_failing_effect_leaves_the_event_unprocessed() {
    let (_dir, store) = temp_store();
    store.append("mail-1", ExpectedVersion::Any, [ev("Send", 1)]).unwrap();
    let mut c = store.consumer("mailer").unwrap();
    let e = c.subscribe(Filter::new()).unwrap().try_next().unwrap().unwrap();
    let err = c.handle(&e, |_| Err(Error::handler("smtp down"))).unwrap_err();
    assert_eq!(err.to_string(), "handler failed: smtp down");
    assert!(!c.is_processed(&e));
    assert_eq!(c.acked(), 0);
}

#[test]
fn append_and_ack_moves_the_checkpoint_with_the_events_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append("order-1", ExpectedVersion::Any, [ev("Placed", 1), ev("Placed", 2)]).unwrap();
        let mut saga = store.consumer("shipping").unwrap();
        let mut sub = saga.subscribe(Filter::new().event_type("Placed")).unwrap();
        let e = sub.try_next().unwrap().unwrap();
        let out = NewEvent::json("ShipmentRequested", &json!({"order": e.stream_id})).caused_by(&e);
        saga.append_and_ack(e.position, [("shipment-1", ExpectedVersion::NoStream, vec![out])]).unwrap();
        assert_eq!(saga.checkpoint(), 1);
        // A conflicting append is refused and the checkpoint stays put.
        let e = sub.try_next().unwrap().unwrap();
        let again = NewEvent::json("ShipmentRequested", &json!({}));
        let err = saga
            .append_and_ack(e.position, [("shipment-1", ExpectedVersion::NoStream, vec![again])])
            .unwrap_err();
        assert!(matches!(err, Error::WrongExpectedVersion { .. }), "{err}");
        assert_eq!(saga.checkpoint(), 1);
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.consumer("shipping").unwrap().checkpoint(), 1);
    assert_eq!(store.read().unwrap().stream_version("shipment-1").unwrap(), 1);
}

#[test]
fn consumer_names_are_validated() {
    let (_dir, store) = temp_store();
    let err = store.consumer("").unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    assert!(store.consumer("bad\nname").is_err());
}

#[test]
fn an_idle_subscriber_never_holds_the_writer_back() {
    let (_dir, store) = temp_store();
    let mut idle: Vec<_> =
        (0..8).map(|_| store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap()).collect();
    // Every commit finds the subscribers' wake-up slots full after the first;
    // the writer must go on regardless.
    for n in 0..300 {
        store.append("a-1", ExpectedVersion::Exact(n), [ev("X", n)]).unwrap();
    }
    for sub in &mut idle {
        assert_eq!(positions(sub, 300), (1..=300).collect::<Vec<_>>());
        assert_eq!(sub.try_next().unwrap(), None);
    }
}

/// A durable-only subscription (what durable consumers and the relay use)
/// never hands out an event a power cut could undo: under `Relaxed` a
/// commit becomes durable with the next commit's sync or an explicit one.
#[test]
fn durable_only_subscriptions_wait_for_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(eventfold::Durability::Relaxed)
        .sync_interval(Duration::from_secs(3600))
        .open()
        .unwrap();
    let mut sub = store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap().durable_only();
    store.append("a-1", ExpectedVersion::Any, [ev("A", 1)]).unwrap();
    assert!(sub.try_next().unwrap().is_none(), "the first commit is not durable yet");
    store.append("a-1", ExpectedVersion::Any, [ev("A", 2)]).unwrap();
    assert_eq!(sub.try_next().unwrap().map(|e| e.position), Some(1));
    assert!(sub.try_next().unwrap().is_none());
    assert_eq!(store.sync().unwrap(), 2);
    assert_eq!(sub.try_next().unwrap().map(|e| e.position), Some(2));
    // A durable consumer's subscription is durable-only too.
    store.append("a-1", ExpectedVersion::Any, [ev("A", 3)]).unwrap();
    let consumer = store.consumer("c").unwrap();
    let mut csub = consumer.subscribe(Filter::new()).unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| csub.try_next().unwrap()).map(|e| e.position).collect();
    assert_eq!(got, vec![1, 2]);
}

/// With the default `sync_interval`, a follower that waits for durable
/// events gets them without anyone calling `sync`: the writer syncs for it.
#[test]
fn a_waiting_durable_follower_gets_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(eventfold::Durability::NoSync).open().unwrap();
    let mut sub = store.subscribe(SubscribeFrom::Start, Filter::new()).unwrap().durable_only();
    store.append("a-1", ExpectedVersion::Any, [ev("A", 1)]).unwrap();
    let e =
        sub.next_timeout(Duration::from_secs(60)).unwrap().expect("the writer syncs for a waiting follower");
    assert_eq!(e.position, 1);
    assert_eq!(store.durable_head().unwrap(), 1);
}

/// Read your writes through a durable consumer: a thread appends and waits
/// until the consumer, driven by another thread, has committed past it.
#[test]
fn wait_for_consumer_returns_once_the_consumer_committed_the_position() {
    let (_dir, store) = temp_store();
    let mut consumer = store.consumer("mailer").unwrap().commit_every(1);
    let mut sub = consumer.subscribe(Filter::new()).unwrap();
    let driver = std::thread::spawn(move || {
        for _ in 0..10 {
            let e = sub.next_timeout(PATIENCE).unwrap().expect("an event within the patience window");
            consumer.handle(&e, |_| Ok(())).unwrap();
        }
        consumer.checkpoint()
    });
    for n in 0..10 {
        let r = store.append("mail-1", ExpectedVersion::Any, [ev("Send", n)]).unwrap();
        store.wait_for_consumer("mailer", r.last_position, PATIENCE).unwrap();
        let info = store.consumers().unwrap();
        assert!(info[0].checkpoint >= r.last_position, "{info:?}");
    }
    assert_eq!(driver.join().unwrap(), 10);

    let err = store.wait_for_consumer("mailer", 11, PATIENCE).unwrap_err();
    assert!(matches!(err, Error::PositionPastHead { position: 11, head: 10 }), "{err:?}");
    store.append("mail-1", ExpectedVersion::Any, [ev("Send", 10)]).unwrap();
    let err = store.wait_for_consumer("mailer", 11, Duration::ZERO).unwrap_err();
    assert!(matches!(&err, Error::Timeout { position: 11, .. }), "{err:?}");
    assert!(err.to_string().contains("consumer \"mailer\""), "{err}");
    // A consumer that never committed is at 0.
    store.wait_for_consumer("new", 0, Duration::ZERO).unwrap();
}

/// A wait on a consumer ends with `Closed` when the store closes meanwhile.
#[test]
fn wait_for_consumer_ends_when_the_store_closes() {
    let (_dir, store) = temp_store();
    store.append("mail-1", ExpectedVersion::Any, [ev("Send", 1)]).unwrap();
    let waiter = {
        let store = store.clone();
        std::thread::spawn(move || store.wait_for_consumer("mailer", 1, PATIENCE))
    };
    store.close().unwrap();
    let err = waiter.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");
}
