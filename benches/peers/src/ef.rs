//! eventfold, through its public API only, default durability (`Sync`).

use std::collections::VecDeque;
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventfold::{
    Aggregate, AppendCondition, AppendTicket, DomainEvent, Durability, Error, ExpectedVersion, Filter,
    NewEvent, Projection, ProjectionContext, ProjectionRunner, Query, QueryItem, ReadAll, ReadQuery,
    RecordedEvent, Repository, Store, StoreStats, SubscribeFrom,
};
use serde::{Deserialize, Serialize};

use crate::dcb::{self, Enrolment, Outcome, Tally, Verdict};
use crate::util::{self, Lat, R, Sizes, err, lat, payload, rate, share};

fn event(n: u64) -> NewEvent {
    NewEvent::json_bytes(util::event_type(n), payload(n))
}

fn open(dir: &Path) -> R<Store> {
    Store::builder(dir).open().map_err(err("eventfold open"))
}

/// How the writer grouped requests: requests and events per commit.
pub fn describe(stats: &StoreStats) -> String {
    let commits = stats.commits.max(1) as f64;
    format!(
        "{} commits, {:.1} requests/commit, {:.1} events/commit, largest batch {} requests",
        stats.commits,
        stats.requests as f64 / commits,
        stats.events_written as f64 / commits,
        stats.max_batch_requests
    )
}

/// What W1 measured: events/s, the writer's grouping, and the bytes per
/// event (record bytes the writer wrote, and the data file's size).
pub struct W1 {
    pub rate: f64,
    pub stats: String,
    pub record_bytes: f64,
    pub file_bytes: f64,
}

/// The tags of W1's events when it runs with `tags` of them: the account
/// (the stream's entity) and a customer, as a DCB application would tag
/// them.
fn w1_tags(stream: u64, tags: usize) -> Vec<String> {
    [format!("account:{stream}"), format!("customer:{}", stream % 100)].into_iter().take(tags).collect()
}

/// W1: producers each keep up to `WINDOW` requests in flight with `submit`;
/// every event carries `tags` tags (0 to 2).
pub fn w1(s: &Sizes, tags: usize) -> R<W1> {
    const WINDOW: usize = 16;
    let dir = util::tempdir()?;
    let store = if s.w1_nosync == 1 {
        Store::builder(dir.path()).durability(Durability::NoSync).open().map_err(err("eventfold open"))?
    } else {
        open(dir.path())?
    };
    let requests = s.w1_events / s.w1_batch;
    let t = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.w1_threads)
            .map(|p| {
                let store = store.clone();
                scope.spawn(move || -> R<()> {
                    let mine: Vec<u64> = (0..s.w1_streams).filter(|k| k % s.w1_threads == p).collect();
                    let mut versions = vec![0u64; mine.len()];
                    let mut inflight: VecDeque<AppendTicket> = VecDeque::new();
                    for r in 0..share(requests, s.w1_threads, p) {
                        let i = (r as usize) % mine.len();
                        let stream = format!("account-{}", mine[i]);
                        let tags = w1_tags(mine[i], tags);
                        let events: Vec<NewEvent> = (0..s.w1_batch)
                            .map(|j| event(r * s.w1_batch + j).with_tags(tags.iter().cloned()))
                            .collect();
                        let ticket = store
                            .submit(&stream, ExpectedVersion::Exact(versions[i]), events)
                            .map_err(err("eventfold submit"))?;
                        versions[i] += s.w1_batch;
                        inflight.push_back(ticket);
                        if inflight.len() >= WINDOW
                            && let Some(t) = inflight.pop_front()
                        {
                            t.wait().map_err(err("eventfold append"))?;
                        }
                    }
                    for t in inflight {
                        t.wait().map_err(err("eventfold append"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| "producer panicked".to_string())?)
    })?;
    let wall = t.elapsed();
    let stats = store.stats().map_err(err("eventfold stats"))?;
    let events = stats.events_written.max(1) as f64;
    Ok(W1 {
        rate: rate(s.w1_events, wall),
        stats: describe(&stats),
        record_bytes: stats.bytes_written as f64 / events,
        file_bytes: stats.size_on_disk as f64 / stats.head.max(1) as f64,
    })
}

/// W2's figures, W7's wake latency (p50, p99 in µs) when asked, and the
/// writer's statistics.
pub type W2 = (Lat, Option<(f64, f64)>, String);

/// Commit instants, by head, recorded by the store's commit hook.
type Marks = Arc<Mutex<Vec<(u64, Duration)>>>;

/// The store of W2 and W2a; when `subscribe`, with a commit hook that marks
/// when each commit finished (since the returned instant), for the wake
/// latency of W7 and W2a.
fn open_marked(dir: &Path, s: &Sizes, subscribe: bool) -> R<(Store, Instant, Marks)> {
    let base = Instant::now();
    let marks: Marks = Arc::new(Mutex::new(Vec::with_capacity(s.w2_events as usize)));
    let store = if subscribe {
        let marks = marks.clone();
        Store::builder(dir)
            .on_commit(move |head| {
                let at = base.elapsed();
                marks.lock().unwrap_or_else(|p| p.into_inner()).push((head, at));
            })
            .open()
            .map_err(err("eventfold open"))?
    } else {
        open(dir)?
    };
    Ok((store, base, marks))
}

/// W2 (and W7 when `subscribe`): one-event appends with exact versions from
/// many threads. W7's latency runs from the commit (the store's commit hook
/// records when the writer finished each one) to the subscriber holding the
/// event.
pub fn w2(s: &Sizes, subscribe: bool) -> R<W2> {
    let dir = util::tempdir()?;
    let (store, base, marks) = open_marked(dir.path(), s, subscribe)?;
    let sub = if subscribe {
        let mut sub = store.subscribe(SubscribeFrom::Start, Filter::new()).map_err(err("subscribe"))?;
        let n = s.w2_events;
        Some(std::thread::spawn(move || -> R<Vec<(u64, Duration)>> {
            let mut got = Vec::with_capacity(n as usize);
            while (got.len() as u64) < n {
                match sub.next_timeout(Duration::from_secs(60)).map_err(err("subscription"))? {
                    Some(e) => got.push((e.position, base.elapsed())),
                    None => return Err("subscription timed out".into()),
                }
            }
            Ok(got)
        }))
    } else {
        None
    };
    let t = Instant::now();
    let latencies = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.w2_threads)
            .map(|p| {
                let store = store.clone();
                scope.spawn(move || -> R<Vec<Duration>> {
                    let mine: Vec<u64> = (0..s.w2_streams).filter(|k| k % s.w2_threads == p).collect();
                    let mut versions = vec![0u64; mine.len()];
                    let n = share(s.w2_events, s.w2_threads, p);
                    let mut lats = Vec::with_capacity(n as usize);
                    for r in 0..n {
                        let i = (r as usize) % mine.len();
                        let stream = format!("account-{}", mine[i]);
                        let t0 = Instant::now();
                        store
                            .append(&stream, ExpectedVersion::Exact(versions[i]), [event(r)])
                            .map_err(err("eventfold append"))?;
                        lats.push(t0.elapsed());
                        versions[i] += 1;
                    }
                    Ok(lats)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| "appender panicked".to_string())??);
        }
        Ok::<_, String>(all)
    })?;
    let wall = t.elapsed();
    let stats = store.stats().map_err(err("eventfold stats"))?;
    let wake = match sub {
        None => None,
        Some(h) => {
            let got = h.join().map_err(|_| "subscriber panicked".to_string())??;
            let marks = std::mem::take(&mut *marks.lock().unwrap_or_else(|p| p.into_inner()));
            Some(util::wake_us(&got, &marks))
        }
    };
    Ok((lat(s.w2_events, wall, latencies), wake, describe(&stats)))
}

/// W2a's figures: the appends' [`Lat`], the async stream's wake latency
/// (p50, p99 in µs) when asked, the process's OS threads while the tasks
/// ran, and the writer's statistics.
pub type W2a = (Lat, Option<(f64, f64)>, u64, String);

/// W2a: W2's one-event appends with exact versions, from `w2a_tasks` tasks
/// on a 2-thread tokio runtime, each awaiting its append
/// (`Store::append_async`); no thread blocks per request. When `subscribe`,
/// a task follows the log with `Subscription::into_stream`, and the wake
/// latency is measured as in W7, from the commit hook to the task holding
/// the event.
pub fn w2a(s: &Sizes, subscribe: bool) -> R<W2a> {
    w2a_with(s, subscribe.then_some(false))
}

/// [`w2a`] with the subscriber on a current-thread runtime of its own (one
/// more OS thread), apart from the appending tasks' two workers.
pub fn w2a_own_runtime(s: &Sizes) -> R<W2a> {
    w2a_with(s, Some(true))
}

/// W2a; `subscribe` is `None` for no subscriber, `Some(own_runtime)`.
fn w2a_with(s: &Sizes, subscribe: Option<bool>) -> R<W2a> {
    use futures_util::StreamExt;
    let dir = util::tempdir()?;
    let (store, base, marks) = open_marked(dir.path(), s, subscribe.is_some())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(err("tokio runtime"))?;
    // Each task owns streams of its own, so versions are exact; no more
    // tasks than streams.
    let tasks = s.w2a_tasks.clamp(1, s.w2_streams.max(1));
    let (latencies, wall, got, threads) = runtime.block_on(async {
        let sub = match subscribe {
            None => None,
            Some(own_runtime) => {
                let mut events = store
                    .subscribe(SubscribeFrom::Start, Filter::new())
                    .map_err(err("subscribe"))?
                    .into_stream();
                let n = s.w2_events;
                // One deadline for the whole run, not one per event: a tokio
                // timer around each `next` spends the task's cooperative budget
                // and sends it to the back of the run queue, behind every
                // appender, every 128 events: that was most of the measured
                // wake latency, and is not the store's.
                let collect = async move {
                    let mut got = Vec::with_capacity(n as usize);
                    while (got.len() as u64) < n {
                        match events.next().await {
                            Some(Ok(e)) => got.push((e.position, base.elapsed())),
                            Some(Err(e)) => return Err(format!("subscription: {e}")),
                            None => return Err("the subscription ended".to_string()),
                        }
                    }
                    Ok(got)
                };
                let timed = async move {
                    tokio::time::timeout(Duration::from_secs(600), collect)
                        .await
                        .unwrap_or_else(|_| Err("subscription timed out".to_string()))
                };
                Some(if own_runtime {
                    let own = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(err("the subscriber's runtime"))?;
                    Sub::Own(std::thread::spawn(move || own.block_on(timed)))
                } else {
                    Sub::Shared(tokio::spawn(timed))
                })
            }
        };
        let t = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|p| {
                let store = store.clone();
                let (streams, events) = (s.w2_streams, s.w2_events);
                tokio::spawn(async move {
                    let mine: Vec<u64> = (0..streams).filter(|k| k % tasks == p).collect();
                    let mut versions = vec![0u64; mine.len()];
                    let n = share(events, tasks, p);
                    let mut lats = Vec::with_capacity(n as usize);
                    for r in 0..n {
                        let i = (r as usize) % mine.len();
                        let stream = format!("account-{}", mine[i]);
                        let t0 = Instant::now();
                        store
                            .append_async(&stream, ExpectedVersion::Exact(versions[i]), [event(r)])
                            .await
                            .map_err(err("eventfold append"))?;
                        lats.push(t0.elapsed());
                        versions[i] += 1;
                    }
                    Ok::<_, String>(lats)
                })
            })
            .collect();
        // Read while every task is in flight (they were all spawned above).
        let threads = util::os_threads().unwrap_or(0);
        let mut all = Vec::with_capacity(s.w2_events as usize);
        for h in handles {
            all.extend(h.await.map_err(|_| "appender task panicked".to_string())??);
        }
        let wall = t.elapsed();
        let got = match sub {
            Some(Sub::Shared(h)) => Some(h.await.map_err(|_| "subscriber task panicked".to_string())??),
            Some(Sub::Own(h)) => Some(h.join().map_err(|_| "subscriber thread panicked".to_string())??),
            None => None,
        };
        Ok::<_, String>((all, wall, got, threads))
    })?;
    drop(runtime);
    let stats = store.stats().map_err(err("eventfold stats"))?;
    let wake = got.map(|got| {
        let marks = std::mem::take(&mut *marks.lock().unwrap_or_else(|p| p.into_inner()));
        util::wake_us(&got, &marks)
    });
    Ok((lat(s.w2_events, wall, latencies), wake, threads, describe(&stats)))
}

/// W2a's subscriber: a task on the appenders' runtime, or a thread
/// running a runtime of its own.
enum Sub {
    Shared(tokio::task::JoinHandle<Result<Vec<(u64, Duration)>, String>>),
    Own(std::thread::JoinHandle<Result<Vec<(u64, Duration)>, String>>),
}

/// W3: one client, one-event appends in a row.
pub fn w3(s: &Sizes) -> R<Lat> {
    let dir = util::tempdir()?;
    let store = open(dir.path())?;
    let mut lats = Vec::with_capacity(s.w3_events as usize);
    let t = Instant::now();
    for v in 0..s.w3_events {
        let t0 = Instant::now();
        store.append("account-1", ExpectedVersion::Exact(v), [event(v)]).map_err(err("eventfold append"))?;
        lats.push(t0.elapsed());
    }
    Ok(lat(s.w3_events, t.elapsed(), lats))
}

/// The aggregate of W4: JSON-decoded payloads folded into a balance.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
    operations: u64,
}

/// The events of [`Account`]; the payload is [`util::Payload`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AccountEvent {
    /// Money in.
    Deposited(util::Payload),
    /// Money out.
    Withdrawn(util::Payload),
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Deposited(_) => "Deposited",
            AccountEvent::Withdrawn(_) => "Withdrawn",
        }
    }
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = ();
    type Error = std::convert::Infallible;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited(p) => self.balance += p.amount as i64,
            AccountEvent::Withdrawn(p) => self.balance -= p.amount as i64,
        }
        self.operations += 1;
    }

    fn handle(&self, _: ()) -> Result<Vec<AccountEvent>, Self::Error> {
        Ok(Vec::new())
    }
}

/// Appends positions `from..to` of the W4 layout: one event of `account-w4`
/// followed by nine of other streams, repeated.
fn fill_w4(store: &Store, s: &Sizes, from: u64, to: u64) -> R<()> {
    let ratio = (s.w4_others / s.w4_aggregate.max(1)).max(1);
    let mut inflight = VecDeque::new();
    for k in from..to {
        inflight.push_back(
            store.submit("account-w4", ExpectedVersion::Any, [event(k)]).map_err(err("eventfold submit"))?,
        );
        let others: Vec<NewEvent> = (0..ratio).map(|j| event(k * ratio + j)).collect();
        inflight.push_back(
            store
                .submit(&format!("other-{}", k % 1000), ExpectedVersion::Any, others)
                .map_err(err("eventfold submit"))?,
        );
        while inflight.len() > 512 {
            if let Some(t) = inflight.pop_front() {
                t.wait().map_err(err("eventfold append"))?;
            }
        }
    }
    for t in inflight {
        t.wait().map_err(err("eventfold append"))?;
    }
    Ok(())
}

/// W4: full replay of the aggregate (ms), and a load from a snapshot taken
/// `w4_tail` events before the end (ms), `runs` times each.
pub fn w4(s: &Sizes, runs: usize) -> R<(Vec<f64>, Vec<f64>)> {
    let dir = util::tempdir()?;
    {
        let store = Store::builder(dir.path()).durability(Durability::NoSync).open().map_err(err("open"))?;
        fill_w4(&store, s, 0, s.w4_aggregate - s.w4_tail)?;
        let repo = Repository::<Account>::new(store.clone());
        repo.take_snapshot("w4").map_err(err("snapshot"))?;
        fill_w4(&store, s, s.w4_aggregate - s.w4_tail, s.w4_aggregate)?;
        store.close().map_err(err("close"))?;
        settle(dir.path())?;
    }
    let store = open(dir.path())?;
    let repo = Repository::<Account>::new(store);
    let (mut full, mut snap) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let l = repo.replay("w4").map_err(err("replay"))?;
        full.push(t.elapsed().as_secs_f64() * 1e3);
        if l.version != s.w4_aggregate {
            return Err(format!("replay saw version {} of {}", l.version, s.w4_aggregate));
        }
        black_box(l.state);
        let t = Instant::now();
        let l = repo.load("w4").map_err(err("load"))?;
        snap.push(t.elapsed().as_secs_f64() * 1e3);
        if l.report.events_replayed != s.w4_tail {
            return Err(format!(
                "snapshot load replayed {} events, not {}",
                l.report.events_replayed, s.w4_tail
            ));
        }
        black_box(l.state);
    }
    Ok((full, snap))
}

/// Fills a store with `n` events over 1,000 streams, quickly (not durable).
pub fn populate(dir: &Path, n: u64) -> R<()> {
    let store = Store::builder(dir).durability(Durability::NoSync).open().map_err(err("open"))?;
    let mut inflight = VecDeque::new();
    let mut k = 0;
    while k < n {
        let m = (n - k).min(100);
        let events: Vec<NewEvent> = (k..k + m).map(event).collect();
        inflight.push_back(
            store
                .submit(&format!("account-{}", (k / 100) % 1000), ExpectedVersion::Any, events)
                .map_err(err("submit"))?,
        );
        if inflight.len() > 64
            && let Some(t) = inflight.pop_front()
        {
            t.wait().map_err(err("append"))?;
        }
        k += m;
    }
    for t in inflight {
        t.wait().map_err(err("append"))?;
    }
    store.close().map_err(err("close"))?;
    settle(dir)
}

/// Flushes a store filled without syncing, so that the kernel's write-back
/// of its pages does not run during the measurement that follows (the other
/// peers fill with durable commits, which leave nothing to write back).
fn settle(dir: &Path) -> R<()> {
    std::fs::File::open(dir.join("data.mdb")).and_then(|f| f.sync_all()).map_err(err("sync the filled store"))
}

/// One zero-copy scan touching every field; returns the events seen.
/// `Reader::scan_all` is eventfold's API for a whole-log pass: records are
/// checked on the machine's cores while this thread reads the fields.
pub fn scan_zero_copy(store: &Store) -> R<u64> {
    let reader = store.read().map_err(err("read"))?;
    let mut acc = 0u64;
    let n = reader
        .scan_all(ReadAll::new(), |e| -> eventfold::Result<()> {
            acc = acc
                .wrapping_add(e.position())
                .wrapping_add(e.version())
                .wrapping_add(e.recorded_at())
                .wrapping_add(e.stream_id().len() as u64)
                .wrapping_add(e.event_type().len() as u64)
                .wrapping_add(e.payload().len() as u64)
                .wrapping_add(e.event_id().as_u128() as u64);
            Ok(())
        })
        .map_err(err("scan"))?;
    black_box(acc);
    Ok(n)
}

/// W5: zero-copy and owned scans of a store of `w5_events`, in events/s,
/// `runs` times each. Also returns the directory for W6.
pub fn w5(s: &Sizes, runs: usize) -> R<(Vec<f64>, Vec<f64>, tempfile::TempDir)> {
    let dir = util::tempdir()?;
    populate(dir.path(), s.w5_events)?;
    let store = open(dir.path())?;
    let (mut zc, mut owned) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let n = scan_zero_copy(&store)?;
        zc.push(rate(n, t.elapsed()));
        let t = Instant::now();
        let reader = store.read().map_err(err("read"))?;
        let mut n = 0u64;
        for e in reader.all(ReadAll::new()).map_err(err("scan"))? {
            let e: RecordedEvent = e.and_then(|e| e.to_owned()).map_err(err("scan"))?;
            black_box(&e);
            n += 1;
        }
        owned.push(rate(n, t.elapsed()));
    }
    Ok((zc, owned, dir))
}

/// The W6 read model: one document per stream, updated by every event.
struct Totals;

/// A W6 document.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Doc {
    /// Events seen.
    pub count: u64,
    /// Sum of amounts.
    pub total: u64,
}

impl Projection for Totals {
    const NAME: &'static str = "totals";
    const VERSION: u32 = 1;

    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> eventfold::Result<()> {
        let p: util::Payload = event.payload_as()?;
        ctx.update(&event.stream_id, |d: &mut Doc| {
            d.count += 1;
            d.total += p.amount;
        })
    }
}

/// W6: a projection rebuilt from nothing over the W5 store, events/s.
pub fn w6(dir: &Path, events: u64, runs: usize) -> R<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let projections = dir.join("projections");
        if projections.exists() {
            std::fs::remove_dir_all(&projections).map_err(err("remove read models"))?;
        }
        let store = open(dir)?;
        let t = Instant::now();
        let runner = ProjectionRunner::new(&store).and_then(|r| r.register(Totals)).map_err(err("runner"))?;
        runner.run_until_caught_up().map_err(err("rebuild"))?;
        out.push(rate(events, t.elapsed()));
        let docs = store.projection::<Totals>().count().map_err(err("count"))?;
        if docs == 0 {
            return Err("projection wrote no document".into());
        }
        drop(runner);
        store.close().map_err(err("close"))?;
    }
    Ok(out)
}

/// The category that is one event in `w9_every` of W9's log.
pub const W9_RARE: &str = "rare";

/// Fills W9's log: of every `w9_every` events, one is in a `rare-*`
/// stream and the others in `account-*` streams (quickly, not durable).
fn fill_w9(dir: &Path, s: &Sizes) -> R<u64> {
    let store = Store::builder(dir).durability(Durability::NoSync).open().map_err(err("open"))?;
    let every = s.w9_every.max(2);
    let mut inflight = VecDeque::new();
    let (mut k, mut rare) = (0u64, 0u64);
    while k < s.w9_events {
        let m = (s.w9_events - k).min(every - 1);
        let block = k / every;
        let events: Vec<NewEvent> = (k..k + m).map(event).collect();
        inflight.push_back(
            store
                .submit(&format!("account-{}", block % 1000), ExpectedVersion::Any, events)
                .map_err(err("submit"))?,
        );
        k += m;
        if k < s.w9_events {
            inflight.push_back(
                store
                    .submit(&format!("{W9_RARE}-{}", block % 100), ExpectedVersion::Any, [event(k)])
                    .map_err(err("submit"))?,
            );
            k += 1;
            rare += 1;
        }
        while inflight.len() > 128 {
            if let Some(t) = inflight.pop_front() {
                t.wait().map_err(err("append"))?;
            }
        }
    }
    for t in inflight {
        t.wait().map_err(err("append"))?;
    }
    store.close().map_err(err("close"))?;
    settle(dir)?;
    Ok(rare)
}

/// One filtered read of the whole log with `Reader::scan_all`, every field
/// of each matching event read; returns the events seen.
fn filtered_read(store: &Store, filter: Filter) -> R<u64> {
    let reader = store.read().map_err(err("read"))?;
    let mut acc = 0u64;
    let n = reader
        .scan_all(ReadAll::new().filter(filter), |e| -> eventfold::Result<()> {
            acc = acc
                .wrapping_add(e.position())
                .wrapping_add(e.version())
                .wrapping_add(e.recorded_at())
                .wrapping_add(e.stream_id().len() as u64)
                .wrapping_add(e.event_type().len() as u64)
                .wrapping_add(e.payload().len() as u64)
                .wrapping_add(e.event_id().as_u128() as u64);
            Ok(())
        })
        .map_err(err("filtered read"))?;
    black_box(acc);
    Ok(n)
}

/// W9: the rare category read whole, through the category index
/// (`Filter::category`) and by walking the log (`Filter::stream_prefix`,
/// which no index serves), ms per read, `runs` times each; and the events
/// each read returned.
pub fn w9(s: &Sizes, runs: usize) -> R<(Vec<f64>, Vec<f64>, u64)> {
    let dir = util::tempdir()?;
    let rare = fill_w9(dir.path(), s)?;
    let store = open(dir.path())?;
    let indexed = Filter::new().category(W9_RARE);
    let scanned = Filter::new().stream_prefix(format!("{W9_RARE}-"));
    {
        let reader = store.read().map_err(err("read"))?;
        if !reader.uses_index(&indexed) || reader.uses_index(&scanned) {
            return Err("W9: the category filter does not use the index, or the prefix filter does".into());
        }
    }
    let (mut by_index, mut by_scan) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for (filter, out) in [(&indexed, &mut by_index), (&scanned, &mut by_scan)] {
            let t = Instant::now();
            let n = filtered_read(&store, filter.clone())?;
            out.push(t.elapsed().as_secs_f64() * 1e3);
            if n != rare {
                return Err(format!("W9 read {n} events of the category, not {rare}"));
            }
        }
    }
    Ok((by_index, by_scan, rare))
}

/// The DCB query of one enrolment decision: the course's definition and
/// enrolments, and the student's enrolments.
fn w10_query(want: Enrolment) -> Query {
    Query::new()
        .item(
            QueryItem::new()
                .event_types([dcb::COURSE_DEFINED, dcb::STUDENT_ENROLLED])
                .tag(dcb::course_tag(want.course)),
        )
        .item(QueryItem::new().event_type(dcb::STUDENT_ENROLLED).tag(dcb::student_tag(want.student)))
}

/// One client of W10: its decisions, each a DCB read, a decision and, to
/// enrol, an append with the read's condition, read and decided again when
/// the condition fails.
fn w10_client(store: &Store, s: &Sizes, p: u64) -> R<Tally> {
    let mut tally = Tally::default();
    for i in 0..share(s.w10_attempts, s.w10_clients, p) {
        let want = dcb::pair(s, p, i);
        let query = w10_query(want);
        let t0 = Instant::now();
        let mut tries = 0;
        loop {
            let seen = store.read_query(&query, ReadQuery::forward()).map_err(err("eventfold read_query"))?;
            let verdict = dcb::decide(
                want,
                seen.events.iter().map(|e| (e.event_type.as_str(), e.payload.as_slice())),
                s,
            )?;
            if verdict != Verdict::Enrol {
                tally.count(verdict)?;
                break;
            }
            let enrol = NewEvent::json_bytes(dcb::STUDENT_ENROLLED, dcb::enrolment_payload(want)?)
                .with_tags([dcb::student_tag(want.student), dcb::course_tag(want.course)]);
            match store.append_conditional(
                &format!("student-{}", want.student),
                ExpectedVersion::Any,
                [enrol],
                AppendCondition::new(query.clone(), Some(seen.head)),
            ) {
                Ok(_) => {
                    tally.count(Verdict::Enrol)?;
                    break;
                }
                Err(Error::AppendConditionFailed { .. }) => {
                    tally.retries += 1;
                    tries += 1;
                    if tries > dcb::MAX_RETRIES {
                        return Err("W10: a decision failed its condition too often".into());
                    }
                }
                Err(e) => return Err(format!("eventfold append_conditional: {e}")),
            }
        }
        tally.latencies.push(t0.elapsed());
    }
    Ok(tally)
}

/// W10: course enrolments from `w10_clients` threads with DCB reads and
/// conditional appends, durable; then every enrolment in the store checked
/// against both limits.
pub fn w10(s: &Sizes) -> R<Outcome> {
    let dir = util::tempdir()?;
    let store = open(dir.path())?;
    let mut inflight = VecDeque::new();
    for c in 0..s.w10_courses {
        let define = NewEvent::json_bytes(dcb::COURSE_DEFINED, dcb::course_payload(c, s)?)
            .with_tag(dcb::course_tag(c));
        inflight.push_back(
            store
                .submit(&format!("course-{c}"), ExpectedVersion::NoStream, [define])
                .map_err(err("submit"))?,
        );
    }
    for t in inflight {
        t.wait().map_err(err("define courses"))?;
    }
    let t = Instant::now();
    let tally = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.w10_clients)
            .map(|p| {
                let store = store.clone();
                scope.spawn(move || w10_client(&store, s, p))
            })
            .collect();
        let mut all = Tally::default();
        for h in handles {
            all.add(h.join().map_err(|_| "client panicked".to_string())??);
        }
        Ok::<_, String>(all)
    })?;
    let wall = t.elapsed();
    let reader = store.read().map_err(err("read"))?;
    let mut stored = Vec::new();
    for e in reader
        .all(ReadAll::new().filter(Filter::new().event_type(dcb::STUDENT_ENROLLED)))
        .map_err(err("read enrolments"))?
    {
        let e = e.map_err(err("read enrolments"))?;
        stored.push(serde_json::from_slice::<Enrolment>(e.payload()).map_err(err("json"))?);
    }
    let broken = dcb::verify(&stored, &tally, s);
    let writer = Some(describe(&store.stats().map_err(err("eventfold stats"))?));
    Ok(Outcome { tally, wall, broken, writer })
}
