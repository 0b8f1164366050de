//! Turns one request into one reply against a [`Store`], and runs the
//! connection's subscriptions, which push events between replies.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use super::wire::{
    self, AppendBatchRequest, AppendRequest, DEFAULT_NODE_ID, DEFAULT_READ_LIMIT, Envelope, MAX_READ_LIMIT,
    RawJson, ReadAllRequest, ReadStreamRequest, Reply, Request, WireEvent, WireNewEvent, codes,
};
use crate::error::Error;
use crate::event::{AppendResult, NewEvent};
use crate::json_state::JsonState;
use crate::read::{Filter, ReadAll, ReadStream};
use crate::store::Store;
use crate::subscribe::{SubscribeFrom, Subscription};

/// Where a connection's lines go: replies from the request loop and pushed
/// events from subscription threads, one whole line at a time.
pub type SharedOutput = Arc<Mutex<dyn Write + Send>>;

/// How often a subscription thread looks at its stop flag while no event
/// comes; bounds how long `unsubscribe` and the end of a connection wait.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// One client's conversation with the node: the name `init` gave the node,
/// and the client's subscriptions. Each TCP connection (and the stdio node)
/// has its own.
pub struct Session {
    store: Store,
    node_id: String,
    output: Option<SharedOutput>,
    subscriptions: HashMap<u64, Running>,
    next_subscription: u64,
    /// A subscription made by the last request, started once its
    /// `subscribed` reply is written, so no event overtakes the reply.
    pending: Option<Pending>,
}

struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

struct Pending {
    id: u64,
    subscription: Subscription,
    src: String,
    dest: String,
}

impl Session {
    /// A session over `store`, answering as [`DEFAULT_NODE_ID`] until `init`.
    /// Without an output it cannot push events, so `subscribe` is not offered.
    pub fn new(store: Store) -> Self {
        Session {
            store,
            node_id: DEFAULT_NODE_ID.to_string(),
            output: None,
            subscriptions: HashMap::new(),
            next_subscription: 1,
            pending: None,
        }
    }

    /// A session that pushes subscribed events to `output`.
    pub fn with_output(store: Store, output: SharedOutput) -> Self {
        let mut session = Session::new(store);
        session.output = Some(output);
        session
    }

    /// Handles one request line (without its newline) and returns the reply
    /// line (without its newline). Never fails: every problem is an `error`
    /// reply. After writing the reply, call [`Session::after_reply`].
    pub fn handle_line(&mut self, line: &[u8]) -> String {
        match wire::parse_request(line) {
            Ok(request) => {
                let reply = match &request.body {
                    Request::Subscribe(r) => self.subscribe(r, &request.src, &request.dest),
                    Request::Unsubscribe(r) => self.unsubscribe(r.msg_id, r.subscription_id),
                    body => self.handle(body),
                };
                self.envelope(Some(&request.src), Some(&request.dest), reply)
            }
            Err(rejected) => {
                self.envelope(rejected.src.as_deref(), rejected.dest.as_deref(), rejected.reply())
            }
        }
    }

    /// Starts the subscription the last request made, if any. Call it once
    /// the reply to that request is written.
    pub fn after_reply(&mut self) {
        let (Some(p), Some(output)) = (self.pending.take(), self.output.clone()) else { return };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let from = if p.dest.is_empty() { self.node_id.clone() } else { p.dest };
        let to = if p.src.is_empty() { "client".to_string() } else { p.src };
        let (id, subscription) = (p.id, p.subscription);
        let spawned = std::thread::Builder::new()
            .name("eventfold-push".into())
            .spawn(move || push(id, subscription, &flag, &output, &from, &to));
        if let Ok(thread) = spawned {
            self.subscriptions.insert(id, Running { stop, thread });
        }
    }

    /// Stops every subscription of the session and waits for their threads.
    pub fn close(&mut self) {
        for (_, r) in self.subscriptions.drain() {
            r.stop.store(true, Ordering::Release);
            let _ = r.thread.join();
        }
    }

    fn subscribe(&mut self, r: &wire::SubscribeRequest, src: &str, dest: &str) -> Reply {
        if self.output.is_none() {
            return Reply::error(
                r.msg_id,
                codes::NOT_SUPPORTED,
                "not supported: this session cannot push events",
            );
        }
        let mut filter = Filter::new().event_types(r.event_types.iter().cloned());
        if let Some(c) = &r.category {
            filter = filter.category(c.clone());
        }
        if let Some(a) = &r.aggregate_id {
            filter = filter.stream(a.clone());
        }
        let from = r.from_sequence.map_or(SubscribeFrom::End, SubscribeFrom::AtPosition);
        match self.store.subscribe(from, filter) {
            Ok(subscription) => {
                let id = self.next_subscription;
                self.next_subscription += 1;
                self.pending =
                    Some(Pending { id, subscription, src: src.to_string(), dest: dest.to_string() });
                Reply::Subscribed { in_reply_to: r.msg_id, subscription_id: id }
            }
            Err(e) => error_reply(r.msg_id, e),
        }
    }

    fn unsubscribe(&mut self, msg_id: Option<u64>, id: u64) -> Reply {
        match self.subscriptions.remove(&id) {
            Some(r) => {
                r.stop.store(true, Ordering::Release);
                // Joined before the reply: no event of it follows `unsubscribed`.
                let _ = r.thread.join();
                Reply::Unsubscribed { in_reply_to: msg_id, subscription_id: id }
            }
            None => Reply::error(
                msg_id,
                codes::NOT_FOUND,
                format!("no subscription {id} on this connection: use the id from the subscribed reply"),
            ),
        }
    }

    /// The reply to a line longer than `limit` bytes, which was skipped unread.
    pub fn oversized_line(&self, length: usize, limit: usize) -> String {
        let text = format!(
            "malformed request: line of {length} bytes is over the limit of {limit} bytes; send large payloads in several events or store them elsewhere"
        );
        self.envelope(None, None, Reply::error(None, codes::MALFORMED_REQUEST, text))
    }

    /// Wraps a reply body, swapping the request's `src` and `dest`.
    fn envelope(&self, src: Option<&str>, dest: Option<&str>, body: Reply) -> String {
        let from = dest.filter(|d| !d.is_empty()).unwrap_or(&self.node_id).to_string();
        let to = src.filter(|s| !s.is_empty()).unwrap_or("client").to_string();
        to_line(&Envelope { src: from, dest: to, body })
    }

    /// Answers one parsed request.
    pub fn handle(&mut self, request: &Request) -> Reply {
        let id = request.msg_id();
        let result = match request {
            Request::Init(r) => {
                self.node_id = r.node_id.clone();
                let peers = r.node_ids.iter().filter(|n| **n != r.node_id).cloned().collect();
                Ok(Reply::InitOk { in_reply_to: id, node_id: r.node_id.clone(), peers })
            }
            Request::Append(r) => self.append(r),
            Request::AppendBatch(r) => self.append_batch(r),
            Request::ReadStream(r) => self.read_stream(r),
            Request::ReadAll(r) => self.read_all(r),
            Request::Stats(_) => self.store.stats().map(|stats| Reply::StatsOk { in_reply_to: id, stats }),
            Request::CreateSnapshot(r) => {
                self.store.snapshot_json_state(&r.aggregate_id).map(|s| Reply::SnapshotCreated {
                    in_reply_to: id,
                    aggregate_id: r.aggregate_id.clone(),
                    version: s.version,
                })
            }
            Request::GetSnapshot(r) => match self.store.latest_json_snapshot(&r.aggregate_id) {
                Ok(Some(s)) => state_text(&r.aggregate_id, &s).map(|state| Reply::Snapshot {
                    in_reply_to: id,
                    aggregate_id: r.aggregate_id.clone(),
                    version: s.version,
                    state,
                }),
                Ok(None) => {
                    return Reply::error(
                        id,
                        codes::NOT_FOUND,
                        format!(
                            "aggregate {:?} has no snapshot: make one with create_snapshot",
                            r.aggregate_id
                        ),
                    );
                }
                Err(e) => Err(e),
            },
            Request::GetState(r) => {
                self.store.json_state_as_of(&r.aggregate_id, r.as_of_version, r.as_of_time).and_then(|s| {
                    Ok(Reply::State {
                        in_reply_to: id,
                        aggregate_id: r.aggregate_id.clone(),
                        version: s.version,
                        state: state_text(&r.aggregate_id, &s)?,
                    })
                })
            }
            Request::Subscribe(_) | Request::Unsubscribe(_) => {
                return Reply::error(
                    id,
                    codes::NOT_SUPPORTED,
                    format!(
                        "not supported: {} needs a connection (Session::handle_line)",
                        request.type_name()
                    ),
                );
            }
        };
        result.unwrap_or_else(|e| error_reply(id, e))
    }

    fn append(&self, r: &AppendRequest) -> crate::Result<Reply> {
        let event = new_event(&r.event)?;
        let res = self.store.append(&r.aggregate_id, r.version.0, [event])?;
        let (event_id, sequence_number) = first(&res)?;
        Ok(Reply::Appended {
            in_reply_to: r.msg_id,
            event_id,
            sequence_number,
            version: res.stream_version,
            already_stored: res.already_stored,
        })
    }

    fn append_batch(&self, r: &AppendBatchRequest) -> crate::Result<Reply> {
        let events = r.events.iter().map(new_event).collect::<crate::Result<Vec<_>>>()?;
        let res = self.store.append(&r.aggregate_id, r.version.0, events)?;
        Ok(Reply::AppendedBatch {
            in_reply_to: r.msg_id,
            first_sequence_number: res.first_position,
            last_sequence_number: res.last_position,
            version: res.stream_version,
            already_stored: res.already_stored,
            event_ids: res.event_ids,
        })
    }

    fn read_stream(&self, r: &ReadStreamRequest) -> crate::Result<Reply> {
        let reader = self.store.read()?;
        let mut options = if r.backwards { ReadStream::backward() } else { ReadStream::forward() };
        if let Some(v) = r.from_version {
            options = options.from_version(v);
        }
        options = options.limit(r.limit.unwrap_or(DEFAULT_READ_LIMIT).min(MAX_READ_LIMIT));
        let mut events = Vec::new();
        for e in reader.stream(&r.aggregate_id, options)? {
            events.push(WireEvent::from_recorded(e?.to_owned()?, false)?);
        }
        Ok(Reply::StreamEvents {
            in_reply_to: r.msg_id,
            aggregate_id: r.aggregate_id.clone(),
            version: reader.stream_version(&r.aggregate_id)?,
            events,
        })
    }

    fn read_all(&self, r: &ReadAllRequest) -> crate::Result<Reply> {
        let reader = self.store.read()?;
        let mut filter = Filter::new().event_types(r.event_types.iter().cloned());
        if let Some(c) = &r.category {
            filter = filter.category(c.clone());
        }
        let options = ReadAll::from_position(r.from_sequence.unwrap_or(1))
            .limit(r.limit.unwrap_or(DEFAULT_READ_LIMIT).min(MAX_READ_LIMIT))
            .filter(filter);
        let mut events = Vec::new();
        for e in reader.all(options)? {
            events.push(WireEvent::from_recorded(e?.to_owned()?, true)?);
        }
        Ok(Reply::AllEvents { in_reply_to: r.msg_id, events, head: reader.head()? })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// A subscription thread: pushes each event as an `event` message until the
/// session stops it, the store closes, or the client goes away.
fn push(id: u64, mut sub: Subscription, stop: &AtomicBool, output: &SharedOutput, from: &str, to: &str) {
    while !stop.load(Ordering::Acquire) {
        let message = match sub.next_timeout(STOP_CHECK) {
            Ok(None) => continue,
            Ok(Some(e)) => match WireEvent::from_recorded(e, true) {
                Ok(event) => Reply::Event { subscription_id: id, event },
                Err(e) => error_reply(None, e),
            },
            // The store closed: nothing more will come.
            Err(Error::Closed) => return,
            Err(e) => error_reply(None, e),
        };
        let failed = matches!(message, Reply::Error { .. });
        let line = to_line(&Envelope { src: from.to_string(), dest: to.to_string(), body: message });
        if super::write_line(&mut *output.lock().unwrap_or_else(|p| p.into_inner()), line).is_err() || failed
        {
            return;
        }
    }
}

fn new_event(e: &WireNewEvent) -> crate::Result<NewEvent> {
    // The payload's exact text is stored, as the client spelled it. The
    // parser checked that every reader can parse it; text from elsewhere
    // is checked by the append.
    let mut event = NewEvent::json_bytes(e.event_type.clone(), e.event_data.get().as_bytes().to_vec());
    event.json_checked = e.event_data.is_readable();
    if let Some(id) = e.event_id {
        event = event.with_id(id);
    }
    if let Some(v) = e.schema_version {
        event = event.with_schema_version(v);
    }
    if let Some(m) = &e.metadata {
        event = event.with_metadata(m.clone().into());
    }
    Ok(event)
}

/// A JSON-merge state's object as wire text, each value as stored.
fn state_text(stream: &str, s: &JsonState) -> crate::Result<RawJson> {
    s.state
        .to_raw_value()
        .map(RawJson::from_raw)
        .map_err(|e| Error::StateEncode { stream: stream.to_string(), reason: e.to_string() })
}

fn first(res: &AppendResult) -> crate::Result<(uuid::Uuid, u64)> {
    match res.event_ids.first() {
        Some(id) => Ok((*id, res.first_position)),
        // An append of one event always answers with one id.
        None => Err(Error::EmptyAppend),
    }
}

/// The reply for a failed request: a concurrency error, or an `error` with
/// the code a client can act on.
pub fn error_reply(in_reply_to: Option<u64>, error: Error) -> Reply {
    let code = match &error {
        Error::WrongExpectedVersion { actual, .. } => {
            return Reply::ConcurrencyError {
                in_reply_to,
                error: error.to_string(),
                current_version: *actual,
            };
        }
        Error::DuplicateEventId { .. } => codes::PRECONDITION_FAILED,
        Error::StreamNotFound { .. } => codes::NOT_FOUND,
        Error::InvalidStreamId { .. }
        | Error::InvalidEventType { .. }
        | Error::InvalidPayload { .. }
        | Error::InvalidMetadata { .. }
        | Error::EventTooLarge { .. }
        | Error::EmptyAppend
        | Error::DuplicateStreamInRequest { .. }
        | Error::VersionOutOfRange { .. } => codes::MALFORMED_REQUEST,
        Error::StorageFull { .. } | Error::Poisoned { .. } | Error::Closed | Error::ReadOnly => {
            codes::TEMPORARILY_UNAVAILABLE
        }
        _ => codes::CRASH,
    };
    Reply::error(in_reply_to, code, error.to_string())
}

/// Serializes a message as one line. Serializing these types cannot fail
/// (string keys, no maps with other keys); should it ever, the client gets a
/// well-formed `error` rather than a broken line.
pub(crate) fn to_line<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).unwrap_or_else(|e| {
        format!(
            r#"{{"src":"{DEFAULT_NODE_ID}","dest":"client","body":{{"type":"error","code":{},"text":{}}}}}"#,
            codes::CRASH,
            serde_json::Value::String(format!("could not encode the reply: {e}"))
        )
    })
}
