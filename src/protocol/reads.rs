//! The reads of the protocol beyond one aggregate: `read_all` (forward, or
//! backwards below an upper bound), `list_streams` and `get_event`.

use std::collections::VecDeque;

use super::wire::{
    DEFAULT_READ_LIMIT, GetEventRequest, ListStreamsRequest, MAX_READ_LIMIT, ReadAllRequest,
    ReadQueryRequest, Reply, WireEvent, codes,
};
use crate::read::{ReadAll, ReadQuery, Reader};
use crate::store::Store;
use crate::vocab::{Filter, Result};

/// Positions a backward read looks at first: a window of the log below its
/// upper bound. Each window that did not fill the reply is followed by one
/// twice as large below it, up to [`MAX_WINDOW`].
const FIRST_WINDOW: u64 = 256;

/// The largest window of a backward read, so that its bookkeeping stays
/// small however far below the bound the matching events are.
const MAX_WINDOW: u64 = 65_536;

pub(super) fn read_all(store: &Store, r: &ReadAllRequest) -> Result<Reply> {
    let reader = store.read()?;
    let mut filter = Filter::new().event_types(r.event_types.iter().cloned()).tags(r.tags.iter().cloned());
    if let Some(c) = &r.category {
        filter = filter.category(c.clone());
    }
    let limit = r.limit.unwrap_or(DEFAULT_READ_LIMIT).min(MAX_READ_LIMIT);
    let from = r.from_sequence.unwrap_or(1).max(1);
    let head = reader.head()?;
    let events = if r.backwards {
        backwards(&reader, filter, from, r.to_sequence.map_or(head, |to| to.min(head)), limit)?
    } else {
        let mut options = ReadAll::from_position(from).limit(limit).filter(filter);
        if let Some(to) = r.to_sequence {
            options = options.up_to_position(to);
        }
        let mut events = Vec::new();
        for e in reader.all(options)? {
            events.push(WireEvent::from_recorded(e?.to_owned()?, true)?);
        }
        events
    };
    Ok(Reply::AllEvents { in_reply_to: r.msg_id, events, head })
}

/// The last `limit` events of `from..=top` that pass `filter`, newest
/// first. The log is read forward (its checked, block-wise path) in windows
/// going down from `top`, keeping only the positions of each window's last
/// matches, until the reply is full or `from` is reached.
fn backwards(reader: &Reader, filter: Filter, from: u64, top: u64, limit: usize) -> Result<Vec<WireEvent>> {
    let mut positions: Vec<u64> = Vec::new();
    let mut hi = top;
    let mut window = FIRST_WINDOW.max(limit as u64).min(MAX_WINDOW);
    while positions.len() < limit && hi >= from && hi >= 1 {
        let lo = hi.saturating_sub(window.saturating_sub(1)).max(from);
        let need = limit.saturating_sub(positions.len());
        let mut found: VecDeque<u64> = VecDeque::new();
        for e in reader.all(ReadAll::from_position(lo).up_to_position(hi).filter(filter.clone()))? {
            let e = e?;
            if found.len() == need {
                found.pop_front();
            }
            found.push_back(e.position());
        }
        positions.extend(found.into_iter().rev());
        if lo <= from {
            break;
        }
        hi = lo.saturating_sub(1);
        window = window.saturating_mul(2).min(MAX_WINDOW);
    }
    let mut events = Vec::with_capacity(positions.len());
    for p in positions {
        // Read in this same snapshot a moment ago, so it is there.
        if let Some(e) = reader.event(p)? {
            events.push(WireEvent::from_recorded(e.to_owned()?, true)?);
        }
    }
    Ok(events)
}

/// `read_query`: the events that match a DCB query, and the head to make
/// an append's condition at.
pub(super) fn read_query(store: &Store, r: &ReadQueryRequest) -> Result<Reply> {
    let limit = r.limit.unwrap_or(DEFAULT_READ_LIMIT).min(MAX_READ_LIMIT);
    let mut options = if r.backwards { ReadQuery::backward() } else { ReadQuery::forward() }.limit(limit);
    if let Some(from) = r.from_sequence {
        options = options.from_position(from);
    }
    let found = store.read_query(&r.query, options)?;
    let events =
        found.events.into_iter().map(|e| WireEvent::from_recorded(e, true)).collect::<Result<Vec<_>>>()?;
    Ok(Reply::QueryEvents { in_reply_to: r.msg_id, events, head: found.head })
}

pub(super) fn list_streams(store: &Store, r: &ListStreamsRequest) -> Result<Reply> {
    let limit = r.limit.unwrap_or(DEFAULT_READ_LIMIT).min(MAX_READ_LIMIT);
    let streams = store.read()?.streams(r.prefix.as_deref().unwrap_or(""), r.after.as_deref(), limit)?;
    Ok(Reply::Streams { in_reply_to: r.msg_id, streams: streams.into_iter().map(Into::into).collect() })
}

pub(super) fn get_event(store: &Store, r: &GetEventRequest) -> Result<Reply> {
    let reader = store.read()?;
    let found = match (r.event_id, r.sequence_number) {
        (Some(id), _) => match reader.event_by_id(id)? {
            Some(e) => Ok(e.to_owned()?),
            None => Err(format!("no event has id {id}: check the id, or look it up with read_all")),
        },
        (None, Some(p)) => match reader.event(p)? {
            Some(e) => Ok(e.to_owned()?),
            None => Err(format!(
                "no event has sequence number {p}: sequence numbers go from 1 to the head, {}",
                reader.head()?
            )),
        },
        // The parser asks for exactly one of them.
        (None, None) => Err("give `event_id` or `sequence_number`".to_string()),
    };
    Ok(match found {
        Ok(e) => Reply::EventFound { in_reply_to: r.msg_id, event: WireEvent::from_recorded(e, true)? },
        Err(text) => Reply::error(r.msg_id, codes::NOT_FOUND, text),
    })
}
