//! The DCB side of the facade: reads by [`Query`] and appends with an
//! [`AppendCondition`] (see `docs/indexes.md`).

use super::{Store, StreamEvents, check_ids};
use crate::metrics;
use crate::read::ReadQuery;
use crate::vocab::{
    AppendCondition, AppendResult, Error, ExpectedVersion, NewEvent, Query, RecordedEvent, Result,
};
use crate::writer::AppendTicket;

/// What a DCB read answers: the matching events and the position the
/// decision is made at, to put in the [`AppendCondition`] of the append
/// that follows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryResult {
    /// The matching events, in the read's order.
    pub events: Vec<RecordedEvent>,
    /// The position through which the query was answered: the log's head
    /// when the read was not cut short by its limit, else the position of
    /// the last event of a forward read. Every matching event up to it is
    /// in `events` (forwards) or newer than what a limit cut off
    /// (backwards).
    pub head: u64,
}

impl Store {
    /// Reads the events that match `query` (see [`Reader::query`](crate::Reader::query)).
    ///
    /// ```
    /// use eventfold::{AppendCondition, ExpectedVersion, NewEvent, Query, QueryItem, ReadQuery, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// // A username must be unique: decide on the events tagged with it.
    /// let taken = Query::new().item(QueryItem::new().event_type("UserRegistered").tag("username:ann"));
    /// let seen = store.read_query(&taken, ReadQuery::forward())?;
    /// assert!(seen.events.is_empty());
    /// let register = NewEvent::json("UserRegistered", &1).with_tag("username:ann");
    /// let condition = AppendCondition::new(taken.clone(), Some(seen.head));
    /// store.append_conditional("user-1", ExpectedVersion::NoStream, [register], condition.clone())?;
    /// // A second registration decided on the same read is refused.
    /// let again = NewEvent::json("UserRegistered", &2).with_tag("username:ann");
    /// let err = store.append_conditional("user-2", ExpectedVersion::NoStream, [again], condition).unwrap_err();
    /// assert!(matches!(err, eventfold::Error::AppendConditionFailed { position: 1, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_query(&self, query: &Query, options: ReadQuery) -> Result<QueryResult> {
        let limit = options.limit;
        let forward = options.direction == crate::read::Direction::Forward;
        let reader = self.read()?;
        let head = reader.head()?;
        let mut events = Vec::new();
        for event in reader.query(query, options)? {
            events.push(event?.to_owned()?);
        }
        let cut_short = limit.is_some_and(|l| events.len() >= l);
        let head = match events.last() {
            Some(last) if cut_short && forward => last.position,
            _ => head,
        };
        Ok(QueryResult { events, head })
    }

    /// [`append`](Store::append) with a DCB condition: refused with
    /// [`Error::AppendConditionFailed`], writing nothing, when an event
    /// that matches the condition's query is in the log after its
    /// position. The stream's expected version is checked as well. A
    /// retry with the same event ids answers the first append's result.
    pub fn append_conditional(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = NewEvent>,
        condition: AppendCondition,
    ) -> Result<AppendResult> {
        let mut results = self
            .submit_conditional([(stream, expected, events.into_iter().collect())], condition)?
            .wait_many()?;
        results.pop().ok_or_else(|| Error::internal("an append got no result"))
    }

    /// [`append_many`](Store::append_many) with a DCB condition: all the
    /// streams or none, and none when the condition fails.
    pub fn append_many_conditional<S: AsRef<str>>(
        &self,
        appends: impl IntoIterator<Item = StreamEvents<S>>,
        condition: AppendCondition,
    ) -> Result<Vec<AppendResult>> {
        self.submit_conditional(appends, condition)?.wait_many()
    }

    /// Queues a conditional append and returns its ticket (to wait on or,
    /// with the `async` feature, to await with `results()`).
    pub fn submit_conditional<S: AsRef<str>>(
        &self,
        appends: impl IntoIterator<Item = StreamEvents<S>>,
        condition: AppendCondition,
    ) -> Result<AppendTicket> {
        let prepared = metrics::count_refusal(self.prepare_many(appends))?;
        if prepared.is_empty() {
            return metrics::count_refusal(Err(Error::EmptyAppend));
        }
        metrics::count_refusal(check_ids(&prepared))?;
        metrics::count_refusal(self.send_request(prepared, Vec::new(), Some(condition)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::held_writer::HeldWriter;
    use crate::{AppendCondition, Error, ExpectedVersion, NewEvent, Query, QueryItem, Store};

    /// Guards the check against the batch: two conditional appends taken in
    /// one batch, the second conflicting with the first, which the stored
    /// index does not hold yet.
    #[test]
    fn a_condition_sees_the_earlier_requests_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let held = HeldWriter::hold(&store);
        let q = Query::new().item(QueryItem::new().tag("seat:1"));
        let take = || vec![NewEvent::json("SeatTaken", &1).with_tag("seat:1")];
        let cond = AppendCondition::new(q, Some(0));
        let a = store.submit_conditional([("guest-a", ExpectedVersion::Any, take())], cond.clone()).unwrap();
        let b = store.submit_conditional([("guest-b", ExpectedVersion::Any, take())], cond).unwrap();
        let batches = store.stats().unwrap().batches;
        held.release();
        assert_eq!(a.wait_many().unwrap()[0].first_position, 1);
        assert!(matches!(b.wait_many(), Err(Error::AppendConditionFailed { position: 1, after: 0 })));
        assert_eq!(store.stats().unwrap().batches, batches + 1, "both were in one batch");
        assert_eq!(store.head().unwrap(), 1);
    }
}
