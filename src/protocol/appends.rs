//! The appends of the protocol (`append`, `append_batch`, `append_many`):
//! the `version_below` condition, and the consumer checkpoint an
//! `append_many` may set in the same commit.
//!
//! `version_below: X` ("the aggregate's version is below X") is no
//! `ExpectedVersion`: the node reads the aggregate's version V here, beside
//! the writer, and appends at `Exact(V)` when V < X. The writer checks V
//! inside its transaction, so the condition holds at the commit; when
//! another append lands in between, the node reads again and retries, a
//! few times, so the client never pays a round trip for the read.

use super::dispatch::error_reply;
use super::wire::{
    AppendBatchRequest, AppendManyRequest, AppendRequest, Reply, WireCheckpoint, WireNewEvent, WireVersion,
};
use crate::store::Store;
use crate::vocab::{AppendCondition, AppendResult, Error, ExpectedVersion, NewEvent};

/// Tries of an append with `version_below` whose aggregate another append
/// changed between the read of its version and the commit. Each retry
/// follows a commit by someone else, so the limit only ends a long run of
/// losses, answered as a `concurrency_error`.
const BELOW_ATTEMPTS: u32 = 16;

/// One aggregate's part of an append request.
struct Part<'a> {
    aggregate_id: &'a str,
    version: WireVersion,
    below: Option<u64>,
    events: &'a [WireNewEvent],
}

/// What an append request came to: its results, or the reply that refuses
/// it (a version that does not match, or an `error`).
type Outcome = Result<Vec<AppendResult>, Box<Reply>>;

/// Appends `parts` in one commit, with `checkpoint` when given. `named`
/// says whether a refusal names the aggregate (requests with several).
fn append_parts(
    store: &Store,
    in_reply_to: Option<u64>,
    parts: &[Part<'_>],
    checkpoint: Option<&WireCheckpoint>,
    condition: Option<&AppendCondition>,
    named: bool,
) -> Outcome {
    let refuse = |e: Error| -> Box<Reply> {
        let stream = match &e {
            Error::WrongExpectedVersion { stream, .. } if named => Some(stream.clone()),
            _ => None,
        };
        Box::new(match error_reply(in_reply_to, e) {
            Reply::ConcurrencyError { in_reply_to, error, current_version, .. } => {
                Reply::ConcurrencyError { in_reply_to, error, current_version, aggregate_id: stream }
            }
            other => other,
        })
    };
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let expected = resolve(store, in_reply_to, parts, named).map_err(|e| match e {
            Refusal::Reply(r) => r,
            Refusal::Error(e) => refuse(e),
        })?;
        let result = (|| {
            let mut appends = Vec::with_capacity(parts.len());
            for (p, e) in parts.iter().zip(expected) {
                let events = p.events.iter().map(new_event).collect::<crate::Result<Vec<NewEvent>>>()?;
                appends.push((p.aggregate_id, e, events));
            }
            match (checkpoint, appends.len()) {
                (Some(c), _) => {
                    store.append_with_checkpoint_if(&c.consumer, c.position, appends, condition.cloned())
                }
                (None, _) if condition.is_some() => match condition {
                    Some(cond) => store.append_many_conditional(appends, cond.clone()),
                    None => Err(Error::internal("a condition went missing")),
                },
                (None, 1) => match appends.pop() {
                    Some((stream, expected, events)) => {
                        store.append(stream, expected, events).map(|r| vec![r])
                    }
                    None => Err(Error::EmptyAppend),
                },
                (None, _) => store.append_many(appends),
            }
        })();
        match result {
            Err(Error::WrongExpectedVersion { stream, .. })
                if attempt < BELOW_ATTEMPTS
                    && parts.iter().any(|p| p.below.is_some() && p.aggregate_id == stream) => {}
            other => return other.map_err(refuse),
        }
    }
}

enum Refusal {
    Reply(Box<Reply>),
    Error(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Error(e)
    }
}

/// The expected version of each part: as sent, or, with `version_below`,
/// the aggregate's version now when it satisfies both conditions.
fn resolve(
    store: &Store,
    in_reply_to: Option<u64>,
    parts: &[Part<'_>],
    named: bool,
) -> Result<Vec<ExpectedVersion>, Refusal> {
    if parts.iter().all(|p| p.below.is_none()) {
        return Ok(parts.iter().map(|p| p.version.0).collect());
    }
    let reader = store.read()?;
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let Some(below) = p.below else {
            out.push(p.version.0);
            continue;
        };
        // A resend of events already stored in this aggregate: at `Any`
        // the writer recognises the retry and answers the original result
        // (or refuses ids stored elsewhere), and writes nothing.
        if let Some(id) = p.events.first().and_then(|e| e.event_id)
            && reader.event_by_id(id)?.is_some_and(|e| e.stream_id() == p.aggregate_id)
        {
            out.push(ExpectedVersion::Any);
            continue;
        }
        let actual = reader.stream_version(p.aggregate_id)?;
        if !p.version.0.matches(actual) || actual >= below {
            let error = if p.version.0.matches(actual) {
                format!("Expected a version below {below}, got {actual}")
            } else {
                Error::WrongExpectedVersion {
                    stream: p.aggregate_id.to_string(),
                    expected: p.version.0,
                    actual,
                }
                .to_string()
            };
            return Err(Refusal::Reply(Box::new(Reply::ConcurrencyError {
                in_reply_to,
                error,
                current_version: actual,
                aggregate_id: named.then(|| p.aggregate_id.to_string()),
            })));
        }
        out.push(ExpectedVersion::Exact(actual));
    }
    Ok(out)
}

pub(super) fn append(store: &Store, r: &AppendRequest) -> crate::Result<Reply> {
    let part = Part {
        aggregate_id: &r.aggregate_id,
        version: r.version,
        below: r.version_below,
        events: std::slice::from_ref(&r.event),
    };
    let res = match append_parts(store, r.msg_id, &[part], None, r.condition.as_ref(), false) {
        Ok(mut results) => results.pop().ok_or(Error::EmptyAppend)?,
        Err(reply) => return Ok(*reply),
    };
    let (event_id, sequence_number) = first(&res)?;
    Ok(Reply::Appended {
        in_reply_to: r.msg_id,
        event_id,
        sequence_number,
        version: res.stream_version,
        already_stored: res.already_stored,
    })
}

pub(super) fn append_batch(store: &Store, r: &AppendBatchRequest) -> crate::Result<Reply> {
    let part =
        Part { aggregate_id: &r.aggregate_id, version: r.version, below: r.version_below, events: &r.events };
    let res = match append_parts(store, r.msg_id, &[part], None, r.condition.as_ref(), false) {
        Ok(mut results) => results.pop().ok_or(Error::EmptyAppend)?,
        Err(reply) => return Ok(*reply),
    };
    Ok(Reply::AppendedBatch {
        in_reply_to: r.msg_id,
        first_sequence_number: res.first_position,
        last_sequence_number: res.last_position,
        version: res.stream_version,
        already_stored: res.already_stored,
        event_ids: res.event_ids,
    })
}

pub(super) fn append_many(store: &Store, r: &AppendManyRequest) -> crate::Result<Reply> {
    let parts: Vec<Part<'_>> = r
        .streams
        .iter()
        .map(|s| Part {
            aggregate_id: &s.aggregate_id,
            version: s.version,
            below: s.version_below,
            events: &s.events,
        })
        .collect();
    match append_parts(store, r.msg_id, &parts, r.checkpoint.as_ref(), r.condition.as_ref(), true) {
        Ok(results) => Ok(Reply::AppendedMany {
            in_reply_to: r.msg_id,
            streams: results.into_iter().map(Into::into).collect(),
            checkpoint: r.checkpoint.as_ref().map(|c| c.position),
        }),
        Err(reply) => Ok(*reply),
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
    Ok(event.with_tags(e.tags.iter().cloned()))
}

fn first(res: &AppendResult) -> crate::Result<(uuid::Uuid, u64)> {
    match res.event_ids.first() {
        Some(id) => Ok((*id, res.first_position)),
        // An append of one event always answers with one id.
        None => Err(Error::EmptyAppend),
    }
}
