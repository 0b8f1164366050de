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

use super::dispatch::{error_reply, new_event};
use super::wire::{Reply, WireCheckpoint, WireNewEvent, WireVersion};
use crate::store::Store;
use crate::vocab::{AppendResult, Error, ExpectedVersion, NewEvent};

/// Tries of an append with `version_below` whose aggregate another append
/// changed between the read of its version and the commit. Each retry
/// follows a commit by someone else, so the limit only ends a long run of
/// losses, answered as a `concurrency_error`.
const BELOW_ATTEMPTS: u32 = 16;

/// One aggregate's part of an append request.
pub(super) struct Part<'a> {
    pub aggregate_id: &'a str,
    pub version: WireVersion,
    pub below: Option<u64>,
    pub events: &'a [WireNewEvent],
}

/// What an append request came to: its results, or the reply that refuses
/// it (a version that does not match, or an `error`).
pub(super) type Outcome = Result<Vec<AppendResult>, Box<Reply>>;

/// Appends `parts` in one commit, with `checkpoint` when given. `named`
/// says whether a refusal names the aggregate (requests with several).
pub(super) fn append_parts(
    store: &Store,
    in_reply_to: Option<u64>,
    parts: &[Part<'_>],
    checkpoint: Option<&WireCheckpoint>,
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
                (Some(c), _) => store.append_with_checkpoint(&c.consumer, c.position, appends),
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
