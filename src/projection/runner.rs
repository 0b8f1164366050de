//! The projection runner: catches projections up with the log, follows it
//! live on a background thread, rebuilds into the shadow slot, reports status.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

use super::context::ProjectionContext;
use super::read_model::{ProjEnv, ProjMeta, RebuildMeta};
use super::{Projection, ProjectionState, ProjectionStatus, RebuildProgress};
use crate::metrics;
use crate::store::Store;
use crate::subscribe::{Follow, read_log_batch};
use crate::vocab::Filter;
use crate::vocab::RecordedEvent;
use crate::vocab::validate_name;
use crate::vocab::{Error, Result};

/// Default number of log positions a projection applies per transaction.
pub const DEFAULT_PROJECTION_BATCH: usize = 1000;

type ApplyFn = Box<dyn Fn(&mut ProjectionContext<'_>, &RecordedEvent) -> Result<()> + Send + Sync>;
type ProgressFn = Arc<dyn Fn(RebuildProgress<'_>) + Send + Sync>;

pub(crate) struct Entry {
    name: &'static str,
    version: u32,
    filter: Filter,
    apply: ApplyFn,
    /// Set by [`RunningProjections::rebuild`]; taken by the next step.
    rebuild_requested: AtomicBool,
    runtime: Mutex<Runtime>,
}

#[derive(Debug, Clone)]
struct Runtime {
    state: ProjectionState,
    events_per_sec: f64,
    /// The checkpoint of the model readers see, as of the last step.
    checkpoint: u64,
}

impl Entry {
    fn runtime(&self) -> std::sync::MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self) -> bool {
        matches!(self.runtime().state, ProjectionState::Failed { .. })
    }
}

/// What one step of one projection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Applied a batch (there may be more).
    Worked,
    /// Nothing to do: caught up, or failed.
    Idle,
}

pub(crate) struct Core {
    store: Store,
    env: Arc<ProjEnv>,
    pub(crate) entries: Vec<Arc<Entry>>,
    batch: usize,
    progress: Option<ProgressFn>,
    /// What [`RunningProjections::wait_for`] waits on.
    signal: Signal,
}

/// Tells waiters for a checkpoint to look again: signalled after every step
/// (a batch committed, nothing to do, or a failure) and when the runner's
/// thread ends. A waiter looks at the projections' state while it holds
/// this lock, and the runner changes that state before it takes the lock,
/// so no step goes unnoticed between a look and the wait.
#[derive(Debug, Default)]
struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    /// The runner's thread has ended: nothing will move any more.
    ended: bool,
    /// Tasks awaiting a checkpoint, by the id of their future.
    #[cfg(feature = "async")]
    wakers: Vec<(u64, std::task::Waker)>,
    /// The id the next future gets.
    #[cfg(feature = "async")]
    next_id: u64,
}

impl Signal {
    /// The lock guards flags and wakers and never runs a caller's code, so
    /// a poisoned one still holds consistent data.
    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiter (`ended`: for good).
    fn notify(&self, ended: bool) {
        let mut s = self.lock();
        s.ended |= ended;
        #[cfg(feature = "async")]
        let woken = std::mem::take(&mut s.wakers);
        drop(s);
        self.changed.notify_all();
        // Outside the lock: a waker may run the task that polls again.
        #[cfg(feature = "async")]
        woken.into_iter().for_each(|(_, w)| w.wake());
    }
}

/// Marks the runner's thread ended when it returns (or unwinds).
struct Ended<'a>(&'a Signal);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.notify(true);
    }
}

/// Runs projections: [`run_until_caught_up`](ProjectionRunner::run_until_caught_up)
/// on the caller's thread, or [`start`](ProjectionRunner::start) a background
/// thread that follows the log live.
///
/// ```
/// use eventfold::{ExpectedVersion, NewEvent, Projection, ProjectionContext, ProjectionRunner, RecordedEvent, Result, Store};
/// # let dir = tempfile::tempdir()?;
/// struct Count;
/// impl Projection for Count {
///     const NAME: &'static str = "count";
///     const VERSION: u32 = 1;
///     fn apply(&self, ctx: &mut ProjectionContext<'_>, _: &RecordedEvent) -> Result<()> {
///         ctx.update("events", |n: &mut u64| *n += 1)
///     }
/// }
/// let store = Store::open(dir.path())?;
/// store.append("a-1", ExpectedVersion::Any, [NewEvent::json("X", &1)])?;
/// ProjectionRunner::new(&store)?.register(Count)?.run_until_caught_up()?;
/// assert_eq!(store.projection::<Count>().get::<u64>("events")?, Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProjectionRunner {
    pub(crate) core: Core,
}

impl std::fmt::Debug for ProjectionRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.core.entries.iter().map(|e| e.name).collect();
        f.debug_struct("ProjectionRunner").field("projections", &names).finish_non_exhaustive()
    }
}

impl ProjectionRunner {
    /// A runner for `store` (which must be writable: read models are written
    /// by the process that owns the store).
    pub fn new(store: &Store) -> Result<Self> {
        if store.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let env = ProjEnv::get(store)?.ok_or(Error::ReadOnly)?;
        Ok(ProjectionRunner {
            core: Core {
                store: store.clone(),
                env,
                entries: Vec::new(),
                batch: DEFAULT_PROJECTION_BATCH,
                progress: None,
                signal: Signal::default(),
            },
        })
    }

    /// Adds a projection. Its read model is created on first use.
    pub fn register<P: Projection>(mut self, projection: P) -> Result<Self> {
        validate_name("projection", P::NAME)?;
        if self.core.entries.iter().any(|e| e.name == P::NAME) {
            return Err(Error::InvalidName {
                kind: "projection",
                name: P::NAME.to_string(),
                reason: "a projection of this name is already registered with this runner".into(),
            });
        }
        self.core.env.slots(P::NAME, true)?;
        // Where the model stands, for a wait before the first step. A meta
        // entry that cannot be read fails the projection at that step.
        let checkpoint = match self.core.env.env.read_txn() {
            Ok(txn) => self.core.env.load_meta(&txn, P::NAME).ok().flatten().map_or(0, |m| m.checkpoint),
            Err(_) => 0,
        };
        let filter = projection.filter();
        self.core.entries.push(Arc::new(Entry {
            name: P::NAME,
            version: P::VERSION,
            filter,
            apply: Box::new(move |ctx, event| projection.apply(ctx, event)),
            rebuild_requested: AtomicBool::new(false),
            runtime: Mutex::new(Runtime { state: ProjectionState::Idle, events_per_sec: 0.0, checkpoint }),
        }));
        Ok(self)
    }

    /// Applies up to `batch` log positions per transaction (default
    /// [`DEFAULT_PROJECTION_BATCH`]).
    pub fn with_batch_size(mut self, batch: usize) -> Self {
        self.core.batch = batch.max(1);
        self
    }

    /// Calls `f` after every rebuild batch and once when the new model is
    /// swapped in.
    pub fn on_progress(mut self, f: impl Fn(RebuildProgress<'_>) + Send + Sync + 'static) -> Self {
        self.core.progress = Some(Arc::new(f));
        self
    }

    /// Rebuilds projection `name` from position 1 at its next step, even
    /// though its version did not change.
    pub fn rebuild(&self, name: &str) -> Result<()> {
        self.core.request_rebuild(name)
    }

    /// Applies events on this thread until every projection has reached the
    /// head of the log as it is now (and finished any rebuild), or failed,
    /// and returns their status.
    ///
    /// A failed projection does not stop the others, but it is an error:
    /// [`Error::ProjectionFailed`] naming the first projection that failed (in the
    /// order of registration, this run or an earlier one), the position it
    /// stopped at and its error. [`status`](Self::status) then shows every
    /// projection, the failed ones as [`ProjectionState::Failed`].
    ///
    /// Under `Relaxed` and `NoSync` this first makes the log durable
    /// ([`Store::sync`]), since read models only apply durable events.
    pub fn run_until_caught_up(&self) -> Result<Vec<ProjectionStatus>> {
        let store = &self.core.store;
        let head = store.head()?;
        let target = if store.durable_head()? < head { store.sync()? } else { head };
        loop {
            let mut worked = false;
            for e in &self.core.entries {
                worked |= self.core.step(e, target) == Step::Worked;
            }
            if !worked {
                break;
            }
        }
        let status = self.status()?;
        for s in &status {
            if let ProjectionState::Failed { position, error } = &s.state {
                return Err(Error::ProjectionFailed {
                    projection: s.name.clone(),
                    position: *position,
                    reason: error.clone(),
                });
            }
        }
        Ok(status)
    }

    /// The status of every registered projection.
    pub fn status(&self) -> Result<Vec<ProjectionStatus>> {
        self.core.status()
    }

    /// Starts a thread that catches up and then follows the log live. Stop it
    /// with [`RunningProjections::stop`] or by dropping the handle; closing
    /// the store also ends it.
    pub fn start(self) -> Result<RunningProjections> {
        let core = Arc::new(self.core);
        // Registered before the first step, so no commit goes unnoticed.
        let wake = core.store.commit_wakeups();
        let (ctl, ctl_rx) = crossbeam_channel::unbounded();
        let thread_core = core.clone();
        let join = std::thread::Builder::new()
            .name("eventfold-projections".into())
            .spawn(move || thread_core.follow(&wake, &ctl_rx))
            .map_err(|e| Error::io("eventfold-projections thread", e))?;
        Ok(RunningProjections { core, ctl, join: Some(join) })
    }
}

enum Ctl {
    Wake,
    Stop,
}

/// A background thread running projections. Made by [`ProjectionRunner::start`].
pub struct RunningProjections {
    core: Arc<Core>,
    ctl: Sender<Ctl>,
    join: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningProjections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProjections").finish_non_exhaustive()
    }
}

impl RunningProjections {
    /// The status of every projection.
    pub fn status(&self) -> Result<Vec<ProjectionStatus>> {
        self.core.status()
    }

    /// Rebuilds projection `name` from position 1 (readers keep the current
    /// model until the new one is caught up).
    pub fn rebuild(&self, name: &str) -> Result<()> {
        self.core.request_rebuild(name)?;
        let _ = self.ctl.send(Ctl::Wake);
        Ok(())
    }

    /// Blocks until every projection of this runner has applied the log up
    /// to `position` (its checkpoint, the one readers see, is at or past
    /// it), so that a read of its model sees the event there: read your
    /// own writes.
    ///
    /// ```
    /// # use eventfold::{ExpectedVersion, NewEvent, Projection, ProjectionContext, ProjectionRunner, RecordedEvent, Result, Store};
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// # struct Count;
    /// # impl Projection for Count {
    /// #     const NAME: &'static str = "count";
    /// #     const VERSION: u32 = 1;
    /// #     fn apply(&self, ctx: &mut ProjectionContext<'_>, _: &RecordedEvent) -> Result<()> {
    /// #         ctx.update("events", |n: &mut u64| *n += 1)
    /// #     }
    /// # }
    /// let store = Store::open(dir.path())?;
    /// let running = ProjectionRunner::new(&store)?.register(Count)?.start()?;
    /// let r = store.append("a-1", ExpectedVersion::Any, [NewEvent::json("X", &1)])?;
    /// running.wait_for(r.last_position, Duration::from_secs(5))?;
    /// assert_eq!(store.projection::<Count>().get::<u64>("events")?, Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// The runner's thread wakes the wait after each batch it commits.
    /// Read models apply only durable events: under `Relaxed` and `NoSync`
    /// the runner has the writer sync soon (`sync_interval`), so the wait
    /// ends then. While a projection rebuilds, readers see its old model,
    /// so the wait ends when the old one had already reached `position` or
    /// when the new one is swapped in.
    ///
    /// Errors: [`Error::PositionPastHead`] at once for a position the log
    /// has not reached (nothing would end that wait);
    /// [`Error::ProjectionFailed`] if a projection that has not reached
    /// `position` failed; [`Error::ProjectionsStopped`] if the thread has
    /// ended (stopped, or the store closed); [`Error::Timeout`] after
    /// `timeout` (the projections go on: wait again if you like).
    pub fn wait_for(&self, position: u64, timeout: Duration) -> Result<()> {
        self.core.wait(None, position, timeout)
    }

    /// [`wait_for`](Self::wait_for), for the one projection `name`
    /// ([`Error::UnknownProjection`] if this runner does not run it).
    pub fn wait_for_projection(&self, name: &str, position: u64, timeout: Duration) -> Result<()> {
        self.core.wait(Some(name), position, timeout)
    }

    /// [`wait_for`](Self::wait_for) as a future (feature `async`), woken by
    /// the runner's thread after each batch: it parks no thread. It takes
    /// no timeout (the library has no timer): wrap it in your runtime's,
    /// e.g. `tokio::time::timeout(d, running.wait_for_async(p))`. It holds
    /// no borrow of `self`, so it can be spawned; it ends with
    /// [`Error::ProjectionsStopped`] when the runner is stopped or dropped.
    #[cfg(feature = "async")]
    pub fn wait_for_async(&self, position: u64) -> impl Future<Output = Result<()>> + Send + 'static {
        WaitFuture::new(self.core.clone(), None, position)
    }

    /// [`wait_for_async`](Self::wait_for_async), for the one projection
    /// `name`.
    #[cfg(feature = "async")]
    pub fn wait_for_projection_async(
        &self,
        name: &str,
        position: u64,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        WaitFuture::new(self.core.clone(), Some(name), position)
    }

    /// Whether the thread has ended (stopped, or the store closed).
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the thread to end on its own, which it does when the store
    /// closes ([`Store::close`]).
    pub fn join(mut self) -> Result<()> {
        match self.join.take() {
            Some(j) => j.join().map_err(|_| Error::handler("the projection thread panicked")),
            None => Ok(()),
        }
    }

    /// Stops the thread after its current batch and waits for it.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let _ = self.ctl.send(Ctl::Stop);
        match self.join.take() {
            Some(j) => j.join().map_err(|_| Error::handler("the projection thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for RunningProjections {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A wait for checkpoints as a future: looks under the signal's lock and
/// leaves its waker there, so a step between the look and the wait wakes it.
#[cfg(feature = "async")]
struct WaitFuture {
    core: Arc<Core>,
    targets: Vec<usize>,
    position: u64,
    /// An error found when the wait was made, returned at the first poll.
    early: Option<Error>,
    /// This future's entry among the signal's wakers.
    id: Option<u64>,
}

#[cfg(feature = "async")]
impl WaitFuture {
    fn new(core: Arc<Core>, name: Option<&str>, position: u64) -> Self {
        let (targets, early) = match core.wait_targets(name, position) {
            Ok(t) => (t, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        WaitFuture { core, targets, position, early, id: None }
    }

    fn forget_waker(&self, s: &mut SignalState) {
        if let Some(id) = self.id {
            s.wakers.retain(|(i, _)| *i != id);
        }
    }
}

#[cfg(feature = "async")]
impl Future for WaitFuture {
    type Output = Result<()>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Some(e) = this.early.take() {
            return Poll::Ready(Err(e));
        }
        let core = this.core.clone();
        let mut s = core.signal.lock();
        match core.look(&s, &this.targets, this.position) {
            Ok(Some(_)) => {
                let id = match this.id {
                    Some(id) => id,
                    None => {
                        let id = s.next_id;
                        s.next_id = s.next_id.wrapping_add(1);
                        this.id = Some(id);
                        id
                    }
                };
                match s.wakers.iter_mut().find(|(i, _)| *i == id) {
                    Some((_, w)) if w.will_wake(cx.waker()) => {}
                    Some((_, w)) => *w = cx.waker().clone(),
                    None => s.wakers.push((id, cx.waker().clone())),
                }
                Poll::Pending
            }
            done => {
                this.forget_waker(&mut s);
                Poll::Ready(done.map(|_| ()))
            }
        }
    }
}

#[cfg(feature = "async")]
impl Drop for WaitFuture {
    fn drop(&mut self) {
        if self.id.is_some() {
            let mut s = self.core.signal.lock();
            self.forget_waker(&mut s);
        }
    }
}

impl Core {
    /// The projections a wait is for (all, or the one named), after
    /// refusing a position the log has not reached.
    fn wait_targets(&self, name: Option<&str>, position: u64) -> Result<Vec<usize>> {
        let targets = match name {
            Some(name) => match self.entries.iter().position(|e| e.name == name) {
                Some(i) => vec![i],
                None => return Err(Error::UnknownProjection { name: name.to_string() }),
            },
            None => (0..self.entries.len()).collect(),
        };
        let head = self.store.head()?;
        if position > head {
            return Err(Error::PositionPastHead { position, head });
        }
        Ok(targets)
    }

    /// Where a wait stands: `Ok(None)` when every target has reached
    /// `position`, `Ok(Some(name))` while `name` is still behind, an error
    /// when one behind failed or can no longer move. Called under the
    /// signal's lock (`s`).
    fn look(&self, s: &SignalState, targets: &[usize], position: u64) -> Result<Option<&'static str>> {
        let mut behind = None;
        for e in targets.iter().filter_map(|&i| self.entries.get(i)) {
            let rt = e.runtime();
            if rt.checkpoint >= position {
                continue;
            }
            if let ProjectionState::Failed { position: at, error } = &rt.state {
                return Err(Error::ProjectionFailed {
                    projection: e.name.to_string(),
                    position: *at,
                    reason: error.clone(),
                });
            }
            if s.ended {
                return Err(Error::ProjectionsStopped {
                    projection: e.name.to_string(),
                    checkpoint: rt.checkpoint,
                });
            }
            behind = behind.or(Some(e.name));
        }
        Ok(behind)
    }

    fn wait(&self, name: Option<&str>, position: u64, timeout: Duration) -> Result<()> {
        let targets = self.wait_targets(name, position)?;
        let started = Instant::now();
        let mut s = self.signal.lock();
        while let Some(behind) = self.look(&s, &targets, position)? {
            let Some(left) = timeout.checked_sub(started.elapsed()).filter(|l| !l.is_zero()) else {
                return Err(Error::Timeout {
                    what: format!("projection {behind:?}"),
                    position,
                    waited: timeout,
                });
            };
            s = match self.signal.changed.wait_timeout(s, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
        Ok(())
    }

    fn entry(&self, name: &str) -> Result<&Arc<Entry>> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| Error::UnknownProjection { name: name.to_string() })
    }

    fn request_rebuild(&self, name: &str) -> Result<()> {
        let e = self.entry(name)?;
        e.rebuild_requested.store(true, Ordering::Release);
        // A rebuild starts from nothing: an earlier failure no longer applies.
        let mut rt = e.runtime();
        if matches!(rt.state, ProjectionState::Failed { .. }) {
            rt.state = ProjectionState::Idle;
        }
        Ok(())
    }

    fn follow(&self, wake: &Receiver<u64>, ctl: &Receiver<Ctl>) {
        let _ended = Ended(&self.signal);
        loop {
            let mut worked = false;
            for e in &self.entries {
                worked |= self.step(e, u64::MAX) == Step::Worked;
                if let Ok(Ctl::Stop) | Err(crossbeam_channel::TryRecvError::Disconnected) = ctl.try_recv() {
                    return;
                }
            }
            if worked {
                continue;
            }
            // Caught up with what is durable: have the writer sync the rest.
            self.store.want_durable();
            select! {
                recv(ctl) -> msg => match msg {
                    Ok(Ctl::Wake) => {}
                    Ok(Ctl::Stop) | Err(_) => return,
                },
                recv(wake) -> msg => if msg.is_err() {
                    // The store closed.
                    return;
                },
            }
        }
    }

    /// Applies one batch of projection `e`, never past `up_to` unless
    /// rebuilding (a rebuild goes on to the head, where it swaps).
    pub(crate) fn step(&self, e: &Entry, up_to: u64) -> Step {
        let step = self.step_once(e, up_to);
        self.signal.notify(false);
        step
    }

    fn step_once(&self, e: &Entry, up_to: u64) -> Step {
        if e.failed() {
            return Step::Idle;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.try_step(e, up_to))) {
            Ok(Ok((step, scanned))) => {
                if scanned > 0 {
                    let secs = started.elapsed().as_secs_f64();
                    e.runtime().events_per_sec = if secs > 0.0 { scanned as f64 / secs } else { 0.0 };
                }
                step
            }
            Ok(Err((position, err))) => {
                metrics::projection_failed(e.name);
                e.runtime().state = ProjectionState::Failed { position, error: err.to_string() };
                Step::Idle
            }
            Err(panic) => {
                metrics::projection_failed(e.name);
                let msg = crate::vocab::panic_message(panic.as_ref());
                e.runtime().state =
                    ProjectionState::Failed { position: 0, error: format!("apply panicked: {msg}") };
                Step::Idle
            }
        }
    }

    /// One transaction of the projections environment: set up or go on with
    /// the model, apply a batch, move the checkpoint (or swap a finished
    /// rebuild in). Errors carry the position they happened at.
    fn try_step(&self, e: &Entry, up_to: u64) -> Result<(Step, u64), (u64, Error)> {
        let at = |p: u64| move |err: Error| (p, err);
        let slots = self.env.slots(e.name, true).map_err(at(0))?.ok_or((0, Error::ReadOnly))?;
        let mut wtxn = self.env.env.write_txn().map_err(|err| (0, self.env.heed_err(err)))?;
        let stored = self.env.load_meta(&wtxn, e.name).map_err(at(0))?;
        let mut meta = stored.clone().unwrap_or(ProjMeta { version: e.version, ..ProjMeta::default() });
        let forced = e.rebuild_requested.swap(false, Ordering::AcqRel);
        let wants_rebuild = meta.version != e.version || forced;
        let rebuild_matches = meta.rebuild.as_ref().is_some_and(|r| r.version == e.version);
        if wants_rebuild && (forced || !rebuild_matches) {
            let slot = (meta.active ^ 1) & 1;
            slots[usize::from(slot)].clear(&mut wtxn).map_err(|err| (0, self.env.heed_err(err)))?;
            meta.rebuild = Some(RebuildMeta {
                version: e.version,
                slot,
                checkpoint: 0,
                checkpoint_at: 0,
                checkpoint_id: None,
            });
        }
        let (slot, checkpoint) = match &meta.rebuild {
            Some(r) => (r.slot, r.checkpoint),
            None => (meta.active & 1, meta.checkpoint),
        };
        let rebuilding = meta.rebuild.is_some();
        let next = checkpoint.checked_add(1).ok_or_else(|| {
            (
                0,
                Error::ReadModelDamaged {
                    projection: e.name.to_string(),
                    reason: format!("its checkpoint {checkpoint} is past any position a log can hold"),
                },
            )
        })?;
        let limit = if rebuilding { u64::MAX } else { up_to };
        let started = Instant::now();
        let span = tracing::debug_span!(
            "projection_batch",
            projection = e.name,
            from = next,
            to = tracing::field::Empty,
            events = tracing::field::Empty,
            rebuilding,
        );
        let _entered = span.enter();
        // Only durable events: a read model commits on its own, so one made
        // of events a power cut then undoes would be ahead of the log.
        let batch = read_log_batch(&self.store, next, self.batch, limit, &e.filter, Follow::Durable)
            .map_err(at(next))?;
        // The batch ends at or after where it starts.
        let scanned = batch.next.saturating_sub(next);
        span.record("to", batch.next.saturating_sub(1)).record("events", batch.events.len());
        if scanned == 0 && !(rebuilding && checkpoint >= batch.head) {
            // Nothing new: keep any set-up (new meta, cleared shadow) we made.
            if stored.as_ref() != Some(&meta) {
                self.env.save_meta(&mut wtxn, e.name, &meta).map_err(at(next))?;
                wtxn.commit().map_err(|err| (next, self.env.heed_err(err)))?;
            } else {
                wtxn.abort();
            }
            self.settle(e, &meta, batch.head);
            return Ok((if stored.as_ref() != Some(&meta) { Step::Worked } else { Step::Idle }, 0));
        }
        let db = slots[usize::from(slot)];
        {
            let mut ctx = ProjectionContext::new(&mut wtxn, db, e.name, self.store.map_size());
            for event in &batch.events {
                (e.apply)(&mut ctx, event).map_err(at(event.position))?;
            }
            ctx.flush().map_err(at(batch.next.saturating_sub(1)))?;
        }
        // `batch.next` is at least `next`, which is at least 1.
        let last = batch.next.saturating_sub(1);
        let mut finished = false;
        match meta.rebuild.as_mut() {
            Some(r) => {
                if scanned > 0 {
                    r.checkpoint = last;
                    r.checkpoint_at = batch.last_recorded_at;
                    r.checkpoint_id = batch.last_event_id;
                }
                if r.checkpoint >= batch.head {
                    // Caught up: the shadow becomes the model, in this commit.
                    let old = meta.active & 1;
                    meta.active = r.slot;
                    meta.version = r.version;
                    meta.checkpoint = r.checkpoint;
                    meta.checkpoint_at = r.checkpoint_at;
                    meta.checkpoint_id = r.checkpoint_id;
                    meta.rebuild = None;
                    slots[usize::from(old)].clear(&mut wtxn).map_err(|err| (last, self.env.heed_err(err)))?;
                    finished = true;
                }
            }
            None => {
                meta.checkpoint = last;
                meta.checkpoint_at = batch.last_recorded_at;
                meta.checkpoint_id = batch.last_event_id;
            }
        }
        self.env.save_meta(&mut wtxn, e.name, &meta).map_err(at(last))?;
        wtxn.commit().map_err(|err| (last, self.env.heed_err(err)))?;
        metrics::projection_batch(e.name, batch.events.len(), started.elapsed());
        if rebuilding && let Some(progress) = &self.progress {
            let done = if finished { meta.checkpoint } else { last };
            progress(RebuildProgress { name: e.name, done, total: batch.head.max(done), finished });
        }
        self.settle(e, &meta, batch.head);
        Ok((Step::Worked, scanned))
    }

    /// Sets the in-memory state after a step.
    fn settle(&self, e: &Entry, meta: &ProjMeta, head: u64) {
        // The model readers see, against the committed head (which may be
        // ahead of the durable one the projection follows), as `status` has it.
        let committed = self.store.head().unwrap_or(head).max(head);
        metrics::projection_lag(e.name, committed.saturating_sub(meta.checkpoint));
        let state = match &meta.rebuild {
            Some(r) => ProjectionState::Rebuilding { done: r.checkpoint, total: head },
            None if meta.checkpoint >= head => ProjectionState::CaughtUp,
            None => ProjectionState::Running,
        };
        let mut rt = e.runtime();
        rt.state = state;
        rt.checkpoint = meta.checkpoint;
    }

    fn status(&self) -> Result<Vec<ProjectionStatus>> {
        let reader = self.store.read()?;
        let head = reader.head()?;
        let head_at = match reader.event(head)? {
            Some(ev) => ev.recorded_at(),
            None => 0,
        };
        drop(reader);
        let txn = self.env.env.read_txn()?;
        let mut out = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let meta = self.env.load_meta(&txn, e.name)?.unwrap_or_default();
            let rt = e.runtime().clone();
            let lag_events = head.saturating_sub(meta.checkpoint);
            let state = match (rt.state, &meta.rebuild) {
                (s @ ProjectionState::Failed { .. }, _) => s,
                (_, Some(r)) => ProjectionState::Rebuilding { done: r.checkpoint, total: head },
                (ProjectionState::Idle, None) => ProjectionState::Idle,
                (_, None) if lag_events == 0 => ProjectionState::CaughtUp,
                (_, None) => ProjectionState::Running,
            };
            out.push(ProjectionStatus {
                name: e.name.to_string(),
                version: meta.version,
                checkpoint: meta.checkpoint,
                head,
                lag_events,
                lag_micros: if lag_events == 0 { 0 } else { head_at.saturating_sub(meta.checkpoint_at) },
                events_per_sec: rt.events_per_sec,
                state,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{ExpectedVersion, NewEvent};

    struct Seen;
    impl Projection for Seen {
        const NAME: &'static str = "seen";
        const VERSION: u32 = 1;
        fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()> {
            ctx.put("last", &event.position)
        }
    }

    /// Guards the step from a read model's checkpoint to the next position:
    /// a checkpoint of u64::MAX (damage) fails the projection with
    /// `ReadModelDamaged`, not an overflow.
    #[test]
    fn a_checkpoint_at_the_last_possible_position_fails_the_projection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("s-1", ExpectedVersion::Any, [NewEvent::json("E", &1)]).unwrap();
        let runner = ProjectionRunner::new(&store).unwrap().register(Seen).unwrap();
        runner.run_until_caught_up().unwrap();
        let env = ProjEnv::get(&store).unwrap().unwrap();
        let mut wtxn = env.env.write_txn().unwrap();
        let meta = ProjMeta { version: 1, checkpoint: u64::MAX, ..ProjMeta::default() };
        env.save_meta(&mut wtxn, "seen", &meta).unwrap();
        wtxn.commit().unwrap();

        let err = runner.run_until_caught_up().unwrap_err();
        let Error::ProjectionFailed { projection, reason, .. } = &err else { panic!("{err:?}") };
        assert_eq!(projection, "seen");
        assert!(reason.contains("is damaged") && reason.contains("checkpoint 18446744073709551615"), "{err}");
    }

    /// Guards a wait on a runner whose thread has ended: it is an error
    /// naming the projection, not a wait until the timeout.
    #[test]
    fn a_wait_on_an_ended_runner_is_projections_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append("s-1", ExpectedVersion::Any, [NewEvent::json("E", &1)]).unwrap();
        let core = ProjectionRunner::new(&store).unwrap().register(Seen).unwrap().core;
        drop(Ended(&core.signal));
        let err = core.wait(None, 1, Duration::from_secs(60)).unwrap_err();
        assert!(
            matches!(&err, Error::ProjectionsStopped { projection, checkpoint: 0 } if projection == "seen"),
            "{err:?}"
        );
        core.wait(None, 0, Duration::ZERO).unwrap();
    }
}
