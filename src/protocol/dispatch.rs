//! Turns one request into one reply against a [`Store`], and keeps the
//! connection's subscriptions, whose events one thread per connection pushes
//! between replies (see `pump.rs`).

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::DEFAULT_MAX_SUBSCRIPTIONS;
use super::appends;
use super::auth::Token;
use super::pump::{NewSubscription, Pump};
use super::wire::{
    self, DEFAULT_NODE_ID, DEFAULT_READ_LIMIT, Envelope, MAX_READ_LIMIT, RawJson, ReadStreamRequest, Reply,
    Request, WireEvent, codes,
};
use super::{lifecycle, reads};
use crate::json::JsonState;
use crate::read::ReadStream;
use crate::store::Store;
use crate::vocab::Error;
use crate::vocab::Filter;

/// Where a connection's lines go: replies from the request loop and pushed
/// events from the subscription thread, one whole line at a time.
pub type SharedOutput = Arc<Mutex<dyn Write + Send>>;

/// One client's conversation with the node: the name `init` gave the node,
/// and the client's subscriptions. Each TCP connection (and the stdio node)
/// has its own.
pub struct Session {
    store: Store,
    node_id: String,
    output: Option<SharedOutput>,
    /// The ids of the subscriptions running.
    subscriptions: HashSet<u64>,
    max_subscriptions: usize,
    next_subscription: u64,
    /// A subscription made by the last request, started once its
    /// `subscribed` reply is written, so no event overtakes the reply.
    pending: Option<NewSubscription>,
    /// The thread that pushes every subscription's events, started with the
    /// first subscription.
    pump: Option<Pump>,
    /// The token the client must present before anything else.
    token: Option<Token>,
    /// Whether it has (or none is needed).
    authorized: bool,
    /// The last reply refused the client: the connection ends after it.
    closing: bool,
}

impl Session {
    /// A session over `store`, answering as [`DEFAULT_NODE_ID`] until `init`.
    /// Without an output it cannot push events, so `subscribe` is not offered.
    pub fn new(store: Store) -> Self {
        Session {
            store,
            node_id: DEFAULT_NODE_ID.to_string(),
            output: None,
            subscriptions: HashSet::new(),
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            next_subscription: 1,
            pending: None,
            pump: None,
            token: None,
            authorized: true,
            closing: false,
        }
    }

    /// Requires the client to send `auth` with `token` before anything
    /// else (no token: nothing is required). A wrong or missing token is
    /// answered with error [`codes::UNAUTHORIZED`], after which
    /// [`is_closing`](Session::is_closing) is true.
    pub fn with_token(mut self, token: Option<Token>) -> Self {
        self.authorized = token.is_none();
        self.token = token;
        self
    }

    /// Whether the last reply refused the client (a wrong or missing
    /// token): write it, then end the connection.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The refusal of a client that has not presented the token.
    fn unauthorized(&mut self, in_reply_to: Option<u64>, what: &str) -> Reply {
        self.closing = true;
        Reply::error(
            in_reply_to,
            codes::UNAUTHORIZED,
            format!(
                "unauthorized: {what}; this node requires a token: send {{\"type\":\"auth\",\"token\":\"…\"}} (the contents of the node's --token-file) as the connection's first message; the connection is closed"
            ),
        )
    }

    fn auth(&mut self, r: &wire::AuthRequest) -> Reply {
        match &self.token {
            Some(t) if !t.matches(r.token.as_bytes()) => {
                self.authorized = false;
                self.unauthorized(r.msg_id, "wrong token")
            }
            _ => {
                self.authorized = true;
                Reply::AuthOk { in_reply_to: r.msg_id }
            }
        }
    }

    /// A session that pushes subscribed events to `output`.
    pub fn with_output(store: Store, output: SharedOutput) -> Self {
        let mut session = Session::new(store);
        session.output = Some(output);
        session
    }

    /// Sets the most subscriptions the session may hold at once (default
    /// [`DEFAULT_MAX_SUBSCRIPTIONS`]); a `subscribe` beyond it is answered
    /// with error [`codes::LIMIT_REACHED`].
    pub fn with_max_subscriptions(mut self, max: usize) -> Self {
        self.max_subscriptions = max;
        self
    }

    /// Handles one request line (without its newline) and returns the reply
    /// line (without its newline). Never fails: every problem is an `error`
    /// reply. After writing the reply, call [`Session::after_reply`].
    pub fn handle_line(&mut self, line: &[u8]) -> String {
        match wire::parse_request(line) {
            Ok(request) => {
                let reply = match &request.body {
                    Request::Auth(r) => self.auth(r),
                    body if !self.authorized => {
                        let what = format!("{} before auth", body.type_name());
                        self.unauthorized(body.msg_id(), &what)
                    }
                    Request::Subscribe(r) => self.subscribe(r, &request.src, &request.dest),
                    Request::Unsubscribe(r) => self.unsubscribe(r.msg_id, r.subscription_id),
                    body => self.handle(body),
                };
                self.envelope(Some(&request.src), Some(&request.dest), reply)
            }
            Err(rejected) if !self.authorized => {
                let reply = self.unauthorized(
                    rejected.in_reply_to,
                    &format!("the first message is not auth ({})", rejected.text),
                );
                self.envelope(rejected.src.as_deref(), rejected.dest.as_deref(), reply)
            }
            Err(rejected) => {
                self.envelope(rejected.src.as_deref(), rejected.dest.as_deref(), rejected.reply())
            }
        }
    }

    /// Starts the subscription the last request made, if any. Call it once
    /// the reply to that request is written.
    pub fn after_reply(&mut self) {
        let (Some(p), Some(pump)) = (self.pending.take(), &self.pump) else { return };
        self.subscriptions.insert(p.id);
        pump.add(p);
    }

    /// Stops every subscription of the session and waits for the thread
    /// that pushes them.
    pub fn close(&mut self) {
        self.close_with(None);
    }

    /// [`Session::close`], calling `unblock` (which cuts the connection) if
    /// the pushing thread is stuck writing to a client that does not read.
    pub(crate) fn close_with(&mut self, unblock: Option<&dyn Fn()>) {
        self.subscriptions.clear();
        self.pending = None;
        if let Some(pump) = self.pump.take() {
            pump.stop(unblock);
        }
    }

    fn subscribe(&mut self, r: &wire::SubscribeRequest, src: &str, dest: &str) -> Reply {
        let Some(output) = &self.output else {
            return Reply::error(
                r.msg_id,
                codes::NOT_SUPPORTED,
                "not supported: this session cannot push events",
            );
        };
        let held = self.subscriptions.len().saturating_add(usize::from(self.pending.is_some()));
        if held >= self.max_subscriptions {
            return Reply::error(
                r.msg_id,
                codes::LIMIT_REACHED,
                format!(
                    "limit reached: this connection has {held} subscriptions, the most it may hold (serve --max-subscriptions {}): unsubscribe one, combine their filters, or open another connection",
                    self.max_subscriptions
                ),
            );
        }
        let mut filter =
            Filter::new().event_types(r.event_types.iter().cloned()).tags(r.tags.iter().cloned());
        if let Some(c) = &r.category {
            filter = filter.category(c.clone());
        }
        if let Some(a) = &r.aggregate_id {
            filter = filter.stream(a.clone());
        }
        if self.pump.is_none() {
            match Pump::start(self.store.clone(), output.clone()) {
                Ok(pump) => self.pump = Some(pump),
                Err(e) => {
                    return Reply::error(
                        r.msg_id,
                        codes::TEMPORARILY_UNAVAILABLE,
                        format!(
                            "temporarily unavailable: could not start the thread that pushes events: {e}"
                        ),
                    );
                }
            }
        }
        // The pump's wake-up channel is registered (above, or with an
        // earlier subscription) before this read of the head, so a commit
        // after it is not missed.
        let next = match (&r.consumer, r.from_sequence) {
            (Some(_), Some(_)) => {
                return Reply::error(
                    r.msg_id,
                    codes::MALFORMED_REQUEST,
                    "malformed request: a consumer's subscription starts after its checkpoint: give `consumer` or `from_sequence`, not both",
                );
            }
            (Some(name), None) => match self.store.consumer_checkpoint(name) {
                Ok(checkpoint) => checkpoint.saturating_add(1),
                Err(e) => return error_reply(r.msg_id, e),
            },
            (None, Some(p)) => p.max(1),
            (None, None) => match self.store.read().and_then(|reader| reader.head()) {
                Ok(head) => head.saturating_add(1),
                Err(e) => return error_reply(r.msg_id, e),
            },
        };
        let id = self.next_subscription;
        self.next_subscription = self.next_subscription.saturating_add(1);
        self.pending = Some(NewSubscription {
            id,
            filter,
            next,
            from: if dest.is_empty() { self.node_id.clone() } else { dest.to_string() },
            to: if src.is_empty() { "client".to_string() } else { src.to_string() },
        });
        Reply::Subscribed { in_reply_to: r.msg_id, subscription_id: id }
    }

    fn unsubscribe(&mut self, msg_id: Option<u64>, id: u64) -> Reply {
        if self.subscriptions.remove(&id) {
            if let Some(pump) = &self.pump {
                // Returns once no event of it can follow `unsubscribed`.
                pump.remove(id);
            }
            Reply::Unsubscribed { in_reply_to: msg_id, subscription_id: id }
        } else {
            Reply::error(
                msg_id,
                codes::NOT_FOUND,
                format!("no subscription {id} on this connection: use the id from the subscribed reply"),
            )
        }
    }

    /// The reply to a line longer than `limit` bytes, which was skipped unread.
    pub fn oversized_line(&mut self, length: usize, limit: usize) -> String {
        if !self.authorized {
            let reply = self.unauthorized(None, "the first message is not auth (an oversized line)");
            return self.envelope(None, None, reply);
        }
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
        if let Request::Auth(r) = request {
            return self.auth(r);
        }
        if !self.authorized {
            let what = format!("{} before auth", request.type_name());
            return self.unauthorized(id, &what);
        }
        let result = match request {
            Request::Init(r) => {
                self.node_id = r.node_id.clone();
                let peers = r.node_ids.iter().filter(|n| **n != r.node_id).cloned().collect();
                Ok(Reply::InitOk { in_reply_to: id, node_id: r.node_id.clone(), peers })
            }
            Request::Append(r) => appends::append(&self.store, r),
            Request::AppendBatch(r) => appends::append_batch(&self.store, r),
            Request::ReadStream(r) => self.read_stream(r),
            Request::ReadAll(r) => reads::read_all(&self.store, r),
            Request::ReadQuery(r) => reads::read_query(&self.store, r),
            Request::DeleteStream(r) => lifecycle::delete_stream(&self.store, r),
            Request::SetStreamRetention(r) => lifecycle::set_stream_retention(&self.store, r),
            Request::GetStreamLifecycle(r) => {
                lifecycle::lifecycle(&self.store, &r.aggregate_id, r.msg_id, None)
            }
            Request::Scavenge(_) => self.store.scavenge().map(|r| Reply::Scavenged {
                in_reply_to: id,
                streams: r.streams,
                events_removed: r.events_removed,
                steps: r.steps,
            }),
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
            Request::AppendMany(r) => appends::append_many(&self.store, r),
            Request::GetCheckpoint(r) => self.store.consumer_checkpoint(&r.consumer).map(|position| {
                Reply::Checkpoint { in_reply_to: id, consumer: r.consumer.clone(), position }
            }),
            Request::Ack(r) => self
                .store
                .advance_checkpoint(&r.consumer, r.sequence_number)
                .map(|checkpoint| Reply::Acked { in_reply_to: id, consumer: r.consumer.clone(), checkpoint }),
            Request::ListStreams(r) => reads::list_streams(&self.store, r),
            Request::GetEvent(r) => reads::get_event(&self.store, r),
            Request::Auth(r) => return self.auth(r),
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
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// A JSON-merge state's object as wire text, each value as stored.
fn state_text(stream: &str, s: &JsonState) -> crate::Result<RawJson> {
    s.state
        .to_raw_value()
        .map(RawJson::from_raw)
        .map_err(|e| Error::StateEncode { stream: stream.to_string(), reason: e.to_string() })
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
                aggregate_id: None,
            };
        }
        Error::DuplicateEventId { .. }
        | Error::AppendConditionFailed { .. }
        | Error::CheckpointNotAdvanced { .. }
        | Error::CheckpointPastHead { .. } => codes::PRECONDITION_FAILED,
        Error::StreamNotFound { .. } | Error::StreamDeleted { .. } => codes::NOT_FOUND,
        Error::InvalidStreamId { .. }
        | Error::InvalidEventType { .. }
        | Error::InvalidPayload { .. }
        | Error::InvalidMetadata { .. }
        | Error::InvalidMetadataField { .. }
        | Error::InvalidTag { .. }
        | Error::EventTooLarge { .. }
        | Error::EmptyAppend
        | Error::DuplicateStreamInRequest { .. }
        | Error::InvalidName { .. }
        | Error::VersionOutOfRange { .. } => codes::MALFORMED_REQUEST,
        Error::StorageFull { .. }
        | Error::ReadersFull
        | Error::Poisoned { .. }
        | Error::Closed
        | Error::ReadOnly => codes::TEMPORARILY_UNAVAILABLE,
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
