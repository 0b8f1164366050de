//! The relay loop: follow the log as a durable consumer, publish with a
//! bounded window of unacknowledged messages, move the checkpoint in order.

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, stream};
use eventfold::{Consumer, Filter, Store, SubscribeFrom};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

use crate::error::RelayError;
use crate::headers::headers_for;
use crate::subject::{subject_for, validate_prefix};

const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";

/// How a relay runs. [`RelayConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// NATS server URLs, comma-separated (`nats://127.0.0.1:4222,nats://…`).
    pub url: String,
    /// The JetStream stream's name.
    pub stream: String,
    /// Subjects are `<subject_prefix>.<category>.<stream id>` (default `events`).
    pub subject_prefix: String,
    /// Replicas of the stream when the relay creates it (default 1).
    pub replicas: usize,
    /// The stream's deduplication window when the relay creates it
    /// (default 2 minutes, JetStream's own default).
    pub duplicate_window: Duration,
    /// The durable consumer's name in the store (default `nats-relay`).
    pub consumer: String,
    /// Which events to relay (default: all).
    pub filter: Filter,
    /// Most publishes awaiting their acknowledgement at once (default 1024).
    pub max_in_flight: usize,
    /// Save the checkpoint at least this often while events flow (default 5 s).
    pub checkpoint_interval: Duration,
    /// Also save it after this many acknowledged events (default 10,000).
    pub checkpoint_every: u64,
    /// How long to wait for a publish acknowledgement (default 10 s).
    pub ack_timeout: Duration,
    /// Longest pause between reconnection attempts (default 10 s).
    pub max_backoff: Duration,
    /// Stop once every event committed so far is relayed and checkpointed,
    /// instead of following the log (default false).
    pub exit_when_caught_up: bool,
}

impl RelayConfig {
    /// A configuration with the defaults for everything but the server and
    /// the stream.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        RelayConfig {
            url: url.into(),
            stream: stream.into(),
            subject_prefix: "events".to_string(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            consumer: "nats-relay".to_string(),
            filter: Filter::new(),
            max_in_flight: 1024,
            checkpoint_interval: Duration::from_secs(5),
            checkpoint_every: 10_000,
            ack_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(10),
            exit_when_caught_up: false,
        }
    }

    /// The longest time an acknowledged event can stay ahead of the saved
    /// checkpoint: one checkpoint interval plus one acknowledgement timeout.
    pub fn exposure(&self) -> Duration {
        self.checkpoint_interval + self.ack_timeout
    }

    /// Checks the settings that do not need the server, and that the
    /// exposure fits at least 4 times in `duplicate_window`.
    pub fn validate(&self, duplicate_window: Duration) -> Result<(), RelayError> {
        validate_prefix(&self.subject_prefix)?;
        server_addrs(&self.url)?;
        let bad = |m: String| Err(RelayError::Config(m));
        if self.stream.is_empty() || self.stream.contains(['.', '*', '>', ' ', '\t', '/', '\\']) {
            return bad(format!(
                "stream name {:?} must be non-empty, without `.`, `*`, `>`, `/` or spaces",
                self.stream
            ));
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1".into());
        }
        if !(1..=5).contains(&self.replicas) {
            return bad(format!("replicas must be 1 to 5, got {}", self.replicas));
        }
        if self.checkpoint_interval.is_zero() || self.ack_timeout.is_zero() {
            return bad("checkpoint interval and ack timeout must be above zero".into());
        }
        if self.exposure() * 4 > duplicate_window {
            return bad(format!(
                "checkpoint interval ({:?}) plus ack timeout ({:?}) must fit 4 times in the stream's duplicate \
                 window ({:?}), or a crash could republish events JetStream no longer recognises; \
                 lower --checkpoint-interval or raise --duplicate-window",
                self.checkpoint_interval, self.ack_timeout, duplicate_window
            ));
        }
        Ok(())
    }
}

/// A snapshot of the relay's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Messages acknowledged by JetStream since the relay started.
    pub published: u64,
    /// Of those, how many JetStream reported as duplicates (republished
    /// after a reconnect or restart, and not stored twice).
    pub duplicates: u64,
    /// The saved checkpoint.
    pub checkpoint: u64,
    /// The last log position acknowledged (may be ahead of the checkpoint).
    pub acked: u64,
    /// The head of the log when last looked at.
    pub head: u64,
    /// Reconnections after a failure.
    pub reconnects: u64,
    /// The last transient failure, if any.
    pub last_error: Option<String>,
}

impl RelayStats {
    /// Positions between the saved checkpoint and the head.
    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.checkpoint)
    }
}

type ProgressFn = Box<dyn FnMut(&RelayStats) + Send + Sync>;

/// The relay. See the crate docs.
pub struct Relay {
    store: Store,
    config: RelayConfig,
    consumer: Consumer,
    stats: RelayStats,
    progress: Option<(Duration, ProgressFn)>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

enum SessionEnd {
    CaughtUp,
    Shutdown,
}

impl Relay {
    /// Opens the durable consumer and checks the configuration (the duplicate
    /// window check is repeated against the real stream on connect).
    pub fn new(store: Store, config: RelayConfig) -> Result<Self, RelayError> {
        config.validate(config.duplicate_window)?;
        let consumer = store.consumer(&config.consumer)?;
        let stats = RelayStats {
            checkpoint: consumer.checkpoint(),
            acked: consumer.checkpoint(),
            ..Default::default()
        };
        Ok(Relay { store, config, consumer, stats, progress: None })
    }

    /// Calls `report` with the relay's progress about every `every`.
    pub fn on_progress(
        mut self,
        every: Duration,
        report: impl FnMut(&RelayStats) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some((every, Box::new(report)));
        self
    }

    /// The progress so far.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// Runs until `shutdown` completes (or, with
    /// [`exit_when_caught_up`](RelayConfig::exit_when_caught_up), until caught
    /// up), reconnecting with backoff after transient failures. Saves the
    /// checkpoint before returning. Needs a multi-threaded tokio runtime.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<RelayStats, RelayError> {
        let mut shutdown = pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        let mut connected_once = false;
        let result = loop {
            let attempt = self.session(shutdown.as_mut(), &mut connected_once).await;
            match attempt {
                Ok(SessionEnd::CaughtUp | SessionEnd::Shutdown) => break Ok(()),
                // Once the stream was seen fit, a refusal is the cluster
                // moving (leader election, a node away): retry.
                Err(e)
                    if e.is_transient()
                        || (connected_once && matches!(e, RelayError::StreamRefused { .. })) =>
                {
                    self.stats.reconnects += 1;
                    self.stats.last_error = Some(e.to_string());
                    self.report_now();
                    // Keep what is acknowledged: it is the restart point.
                    if let Err(e) = self.commit() {
                        break Err(e);
                    }
                    let progressed = self.stats.acked;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.as_mut() => break Ok(()),
                    }
                    backoff = if progressed > self.stats.checkpoint {
                        Duration::from_millis(100)
                    } else {
                        (backoff * 2).min(self.config.max_backoff)
                    };
                }
                Err(e) => break Err(e),
            }
        };
        self.commit()?;
        self.report_now();
        result.map(|()| self.stats.clone())
    }

    /// Like [`run`](Relay::run), on a runtime of its own, until interrupted
    /// (Ctrl-C) or caught up.
    pub fn run_blocking(self) -> Result<RelayStats, RelayError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| RelayError::Config(format!("cannot start the async runtime: {e}")))?;
        rt.block_on(self.run(async {
            // If the signal handler cannot be installed, run until caught up or killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }))
    }

    fn commit(&mut self) -> Result<(), RelayError> {
        tokio::task::block_in_place(|| self.consumer.commit())?;
        self.stats.checkpoint = self.consumer.checkpoint();
        Ok(())
    }

    fn report_now(&mut self) {
        if let Some((_, report)) = &mut self.progress {
            report(&self.stats);
        }
    }

    async fn connect(&mut self) -> Result<jetstream::Context, RelayError> {
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .name(format!("eventfold-relay {}", self.config.consumer));
        let client = options.connect(server_addrs(&self.config.url)?).await.map_err(RelayError::transient)?;
        let js = jetstream::ContextBuilder::new()
            .timeout(self.config.ack_timeout)
            .ack_timeout(self.config.ack_timeout)
            .max_ack_inflight(self.config.max_in_flight + 16)
            .build(client);
        self.ensure_stream(&js).await?;
        Ok(js)
    }

    /// Creates the stream, or checks that the existing one takes our subjects
    /// with the configured replicas and a duplicate window the checkpoint
    /// interval fits in.
    async fn ensure_stream(&mut self, js: &jetstream::Context) -> Result<(), RelayError> {
        let name = self.config.stream.clone();
        let subjects = format!("{}.>", self.config.subject_prefix);
        let wanted = stream::Config {
            name: name.clone(),
            subjects: vec![subjects.clone()],
            num_replicas: self.config.replicas,
            duplicate_window: self.config.duplicate_window,
            storage: stream::StorageType::File,
            description: Some("eventfold log relayed by eventfold-relay-nats".to_string()),
            ..Default::default()
        };
        let mut s = js.get_or_create_stream(wanted).await.map_err(|e| {
            use async_nats::jetstream::context::CreateStreamErrorKind as K;
            match e.kind() {
                K::JetStream(api) => {
                    RelayError::StreamRefused { stream: name.clone(), reason: api.to_string() }
                }
                K::EmptyStreamName | K::InvalidStreamName => {
                    RelayError::Config(format!("stream name {name:?} is invalid: {e}"))
                }
                _ => RelayError::transient(format!("creating or looking up stream {name:?}: {e}")),
            }
        })?;
        let info = s.info().await.map_err(RelayError::transient)?;
        let mismatch = |reason: String| RelayError::StreamMismatch { stream: name.clone(), reason };
        let covered = info.config.subjects.iter().any(|s| s == &subjects || s == ">");
        if !covered {
            return Err(mismatch(format!(
                "its subjects {:?} do not include {subjects:?}; add it with `nats stream edit` or pick another stream",
                info.config.subjects
            )));
        }
        if info.config.num_replicas != self.config.replicas {
            return Err(mismatch(format!(
                "it has {} replicas, the relay was asked for {}; pass --replicas {} or change the stream",
                info.config.num_replicas, self.config.replicas, info.config.num_replicas
            )));
        }
        self.config.validate(info.config.duplicate_window).map_err(|e| mismatch(e.to_string()))?;
        Ok(())
    }

    fn head(&self) -> Result<u64, RelayError> {
        Ok(self.store.read()?.head()?)
    }

    async fn session(
        &mut self,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
        connected_once: &mut bool,
    ) -> Result<SessionEnd, RelayError> {
        let js = tokio::select! {
            js = self.connect() => js?,
            _ = shutdown.as_mut() => return Ok(SessionEnd::Shutdown),
        };
        *connected_once = true;
        self.stats.last_error = None;
        // The stream holds a gapless prefix of what the relay publishes (see
        // `publish`): resume after its last message, or after the last
        // acknowledged position if that is further. Anything republished in
        // between is dropped by JetStream as a duplicate of its Nats-Msg-Id.
        let (stored_up_to, mut expect_last) = self.stream_tail(&js).await?;
        let head = self.head()?;
        if stored_up_to > head {
            return Err(RelayError::StreamMismatch {
                stream: self.config.stream.clone(),
                reason: format!(
                    "it holds position {stored_up_to} but this store's log ends at {head}: it was fed from \
                     another store (or this one was restored from an older copy); relay into a new stream"
                ),
            });
        }
        if stored_up_to > self.consumer.acked() {
            self.consumer.ack(stored_up_to)?;
            self.stats.acked = self.consumer.acked();
        }
        // Only durable events go out: a message in JetStream for an event a
        // power cut then takes back from the log could never be withdrawn.
        let mut sub = self
            .store
            .subscribe(SubscribeFrom::AfterPosition(self.consumer.acked()), self.config.filter.clone())?
            .durable_only();
        let mut inflight = FuturesOrdered::new();
        let mut last_commit = Instant::now();
        let mut last_report = Instant::now();
        let mut progress_tick = tokio::time::interval(Duration::from_millis(200));
        progress_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Fill the window from the log.
            let mut caught_up_to = None;
            if inflight.len() < self.config.max_in_flight {
                let head = self.head()?;
                self.stats.head = head;
                loop {
                    if inflight.len() >= self.config.max_in_flight {
                        break;
                    }
                    match sub.try_next()? {
                        Some(event) => inflight.push_back(self.publish(&js, event, &mut expect_last).await?),
                        None => {
                            caught_up_to = Some(head);
                            break;
                        }
                    }
                }
            }
            if inflight.is_empty() {
                // Everything up to `head` is relayed or filtered out.
                if let Some(head) = caught_up_to {
                    self.consumer.ack(head)?;
                    self.stats.acked = self.consumer.acked();
                    if self.config.exit_when_caught_up {
                        self.commit()?;
                        return Ok(SessionEnd::CaughtUp);
                    }
                }
                if self.consumer.acked() > self.consumer.checkpoint() {
                    self.commit()?;
                    last_commit = Instant::now();
                }
                self.maybe_report(&mut last_report);
                // Wait for the writer: the stream is woken by the commit (or,
                // for these durable-only events, the sync) that makes the
                // next event available; no thread waits and nothing polls.
                // Waking for the progress report only when one is wanted.
                let mut events = sub.into_stream();
                let waited = tokio::select! {
                    biased;
                    _ = shutdown.as_mut() => return Ok(SessionEnd::Shutdown),
                    event = events.next() => Some(event),
                    _ = progress_tick.tick(), if self.progress.is_some() => None,
                };
                // Cancelling `next` loses nothing: what was read stays
                // buffered in the subscription.
                sub = events.into_inner();
                match waited {
                    Some(Some(event)) => {
                        inflight.push_back(self.publish(&js, event?, &mut expect_last).await?)
                    }
                    // The store closed and everything committed was delivered.
                    Some(None) => return Err(eventfold::Error::Closed.into()),
                    None => {}
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => return Ok(SessionEnd::Shutdown),
                acked = inflight.next() => {
                    if let Some(acked) = acked {
                        self.acknowledged(acked?)?;
                        // Take every acknowledgement that is already there.
                        while let Some(Some(acked)) = futures_util::FutureExt::now_or_never(inflight.next()) {
                            self.acknowledged(acked?)?;
                            if inflight.is_empty() { break; }
                        }
                    }
                }
                _ = progress_tick.tick() => {}
            }
            let since = self.consumer.acked().saturating_sub(self.consumer.checkpoint());
            if since > 0
                && (since >= self.config.checkpoint_every
                    || last_commit.elapsed() >= self.config.checkpoint_interval)
            {
                self.commit()?;
                last_commit = Instant::now();
            }
            self.maybe_report(&mut last_report);
        }
    }

    /// The position of the stream's last message and its message id (`(0,
    /// None)` for an empty stream). Fails when the last message is not one
    /// the relay wrote: the stream must have no other publisher.
    async fn stream_tail(&self, js: &jetstream::Context) -> Result<(u64, Option<String>), RelayError> {
        let name = &self.config.stream;
        let mut stream = js.get_stream(name).await.map_err(RelayError::transient)?;
        let state = stream.info().await.map_err(RelayError::transient)?.state.clone();
        if state.messages == 0 {
            return Ok((0, None));
        }
        let last = stream.get_raw_message(state.last_sequence).await.map_err(RelayError::transient)?;
        let header = |h: &str| last.headers.get(h).map(|v| v.as_str().to_string());
        let position = header(crate::headers::POSITION).and_then(|p| p.parse::<u64>().ok());
        match (position, header(crate::headers::MSG_ID)) {
            (Some(position), Some(id)) => Ok((position, Some(id))),
            _ => Err(RelayError::StreamMismatch {
                stream: name.clone(),
                reason: format!(
                    "its last message (sequence {}, subject {}) was not written by an eventfold relay;                      give the relay a stream of its own",
                    state.last_sequence, last.subject
                ),
            }),
        }
    }

    /// Publishes `event` expecting `expect_last` to be the stream's last
    /// message id (`Nats-Expected-Last-Msg-Id`), then makes the event the
    /// expected last one. JetStream stores a message only if its predecessor
    /// is the stream's last, so a message lost in a failure makes every later
    /// one fail too: the stream never has gaps or reordered messages, and
    /// the relay republishes from the first failure. (Duplicates are
    /// recognised before that check, so republishing stored events is fine.)
    async fn publish(
        &self,
        js: &jetstream::Context,
        event: eventfold::RecordedEvent,
        expect_last: &mut Option<String>,
    ) -> Result<impl Future<Output = Result<(u64, bool), RelayError>> + use<>, RelayError> {
        let subject = subject_for(&self.config.subject_prefix, &event.stream_id);
        let mut headers = headers_for(&event);
        if let Some(last) = expect_last.as_deref() {
            headers.insert(EXPECTED_LAST_MSG_ID, last);
        }
        *expect_last = Some(event.event_id.to_string());
        let position = event.position;
        let stream = self.config.stream.clone();
        let ack: PublishAckFuture = js
            .publish_with_headers(subject, headers, event.payload.into())
            .await
            .map_err(|e| RelayError::transient(format!("publishing position {position}: {e}")))?;
        Ok(async move {
            let ack = ack
                .await
                .map_err(|e| RelayError::transient(format!("acknowledgement of position {position}: {e}")))?;
            if ack.stream != stream {
                return Err(RelayError::StreamMismatch {
                    stream,
                    reason: format!(
                        "position {position} was stored by stream {:?}, whose subjects overlap",
                        ack.stream
                    ),
                });
            }
            Ok((position, ack.duplicate))
        })
    }

    fn acknowledged(&mut self, (position, duplicate): (u64, bool)) -> Result<(), RelayError> {
        self.consumer.ack(position)?;
        self.stats.acked = self.consumer.acked();
        self.stats.published += 1;
        self.stats.duplicates += u64::from(duplicate);
        Ok(())
    }

    fn maybe_report(&mut self, last: &mut Instant) {
        let due = matches!(&self.progress, Some((every, _)) if last.elapsed() >= *every);
        if due {
            *last = Instant::now();
            if let Ok(head) = self.head() {
                self.stats.head = head;
            }
            self.report_now();
        }
    }
}

/// Parses a comma-separated list of server URLs.
pub(crate) fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, RelayError> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.parse().map_err(|e| RelayError::Config(format!("server URL {u:?} is invalid: {e}"))))
        .collect::<Result<Vec<async_nats::ServerAddr>, RelayError>>()?;
    if addrs.is_empty() {
        return Err(RelayError::Config("no server URL given; pass --url nats://host:port".into()));
    }
    Ok(addrs)
}
